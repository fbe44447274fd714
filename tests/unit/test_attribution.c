/* test_attribution.c — flows in a private network + PID namespace traced to their processes.
 *
 * Each test builds a small session world, shaped like sluice's (session.h):
 *
 *   test process (host namespaces)
 *     └─ middle: unshare(CLONE_NEWNET | CLONE_NEWPID), fork, wait
 *          └─ init: pid 1 of the new PID namespace, in the new network namespace (lo up)
 *               ├─ child: pid 2
 *               ├─ later: forked on command after the first lookups
 *               ├─ nested: unshare(CLONE_NEWPID) ─ nested init: pid 1 of a nested namespace
 *               └─ sharer: keeps the sockets it inherited from init
 *
 * Every process of the world opens the same set of sockets (TCP and UDP, IPv4 and IPv6, v6
 * sockets carrying v4, wildcard-bound UDP), connected to listeners of its own on loopback, and
 * reports their ports over a unix socket; SCM_CREDENTIALS gives the test each reporter's pid
 * as the test sees it. Nothing leaves loopback; the host namespace's configuration is never
 * touched. The test itself also holds sockets in the world's network namespace (as sluice
 * holds its listeners there): those belong to no session process until it hands them to init.
 * Needs root: otherwise prints "skipped: needs root" and exits 77 (CTest: skipped).
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>

#include "base/addr.h"
#include "check.h"
#include "session/attribution.h"

/* The sockets each world process opens. */
enum sock_case {
	TCP4,          /* AF_INET TCP, 127.0.0.1 -> its v4 listener */
	TCP6,          /* AF_INET6 TCP, ::1 -> its v6 listener */
	TCP6_V4,       /* AF_INET6 TCP connected to ::ffff:127.0.0.1 (carries IPv4) */
	UDP4,          /* AF_INET UDP bound to 127.0.0.1, connected to its v4 receiver */
	UDP6,          /* AF_INET6 UDP bound to ::1, connected to its v6 receiver */
	UDP4_ANY,      /* AF_INET UDP bound to 0.0.0.0, not connected */
	UDP6_ANY,      /* AF_INET6 UDP bound to :: (dual-stack), not connected */
	TCP4_HOSTPORT, /* like TCP4, bound to a port the test also holds in the host namespace */
	UDP4_HOSTPORT, /* like UDP4, bound to a port the test also holds in the host namespace */
	SOCK_CASES,
};

struct report {
	char role; /* 'i' init, 'c' its child, then as in world_command, 'r' an acknowledgement */
	int err;   /* errno of the step that failed, or 0 */
	int line;  /* where it failed */
	bool have_v6;
	bool host_ports; /* holds TCP4_HOSTPORT and UDP4_HOSTPORT (init's first report only) */
	uint16_t local_port[SOCK_CASES];
	uint16_t remote_port[SOCK_CASES];
};

struct world {
	pid_t middle;   /* the test's child */
	pid_t init;     /* pid 1 of the session, as the test sees it */
	int reports;    /* test's end of the report socket (SO_PASSCRED) */
	int commands;   /* write end of init's command pipe */
	int init_pidfd; /* to kill init without racing its pid's reuse */
	struct report init_report, child_report;
	pid_t child;
};

/* Ports the test holds in the host namespace; init binds the same numbers in the session. */
static uint16_t host_tcp_port, host_udp_port;

/* ---- inside the world ---- */

/* In open_sockets: a failed step records errno and its line in *r, and gives up. */
#define TRY(expr)                                \
	do {                                     \
		if ((expr) < 0) {                \
			r->err = errno;          \
			r->line = __LINE__;      \
			return;                  \
		}                                \
	} while (0)

static int lo_up(void)
{
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int rc;

	if (s < 0)
		return -1;
	memset(&ifr, 0, sizeof ifr);
	strcpy(ifr.ifr_name, "lo");
	rc = ioctl(s, SIOCGIFFLAGS, &ifr);
	if (rc == 0) {
		ifr.ifr_flags |= IFF_UP;
		rc = ioctl(s, SIOCSIFFLAGS, &ifr);
	}
	close(s);
	return rc;
}

static struct sockaddr_in v4(const char *text, uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };

	inet_pton(AF_INET, text, &sa.sin_addr);
	return sa;
}

static struct sockaddr_in6 v6(const char *text, uint16_t port)
{
	struct sockaddr_in6 sa = { .sin6_family = AF_INET6, .sin6_port = htons(port) };

	inet_pton(AF_INET6, text, &sa.sin6_addr);
	return sa;
}

static int port_of(int s, uint16_t *port)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;

	if (getsockname(s, (struct sockaddr *)&ss, &len) < 0)
		return -1;
	*port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
					      : ((struct sockaddr_in6 *)&ss)->sin6_port);
	return 0;
}

/* A socket bound to sa (and listening, for TCP); its port in *port. */
static int server(int family, int type, const void *sa, socklen_t len, uint16_t *port)
{
	int s = socket(family, type | SOCK_CLOEXEC, 0);

	if (s < 0)
		return -1;
	if (bind(s, sa, len) < 0 || (type == SOCK_STREAM && listen(s, 16) < 0) ||
	    port_of(s, port) < 0) {
		close(s);
		return -1;
	}
	return s;
}

/* Closes s, keeping errno (the cause of the failure being reported). */
static int close_failed(int s)
{
	int saved = errno;

	close(s);
	errno = saved;
	return -1;
}

/* A client socket (IPv6: carrying IPv4 too), bound to `bind_sa` if given; -1 on failure. */
static int client_socket(int family, int type, const void *bind_sa, socklen_t bind_len)
{
	int s = socket(family, type | SOCK_CLOEXEC, 0);
	int off = 0;

	if (s < 0)
		return -1;
	if (family == AF_INET6 && setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off) < 0)
		return close_failed(s);
	if (bind_sa && bind(s, bind_sa, bind_len) < 0)
		return close_failed(s);
	return s;
}

/* Connects client socket s to `to` if given; returns s, its port in *port (s is closed and -1
 * returned on failure). */
static int client_connect(int s, const void *to, socklen_t to_len, uint16_t *port)
{
	if (to && connect(s, to, to_len) < 0)
		return close_failed(s);
	return port_of(s, port) < 0 ? close_failed(s) : s;
}

/* A client socket, bound to `bind_sa` if given, connected to `to` if given; returns it. It is
 * left open on purpose: the process holds it until the world ends. */
static int client(int family, int type, const void *bind_sa, socklen_t bind_len, const void *to,
		  socklen_t to_len, uint16_t *port)
{
	int s = client_socket(family, type, bind_sa, bind_len);

	return s < 0 ? -1 : client_connect(s, to, to_len, port);
}

static void open_sockets(struct report *r)
{
	struct sockaddr_in lo4 = v4("127.0.0.1", 0), any4 = v4("0.0.0.0", 0);
	struct sockaddr_in6 lo6 = v6("::1", 0), any6 = v6("::", 0);
	struct sockaddr_in t4, u4, host_t = v4("127.0.0.1", host_tcp_port);
	struct sockaddr_in host_u = v4("127.0.0.1", host_udp_port);
	struct sockaddr_in6 t6, u6, t4_mapped;
	uint16_t tcp4_port, udp4_port, tcp6_port = 0, udp6_port = 0;
	int probe, host_tcp_sock = -1, host_udp_sock = -1;

	/* The host's port numbers are bound first: only init holds them, and this is its first
	 * step in a new network namespace, so no ephemeral port of this world can be on them. */
	if (r->host_ports) {
		TRY(host_tcp_sock = client_socket(AF_INET, SOCK_STREAM, &host_t, sizeof host_t));
		TRY(host_udp_sock = client_socket(AF_INET, SOCK_DGRAM, &host_u, sizeof host_u));
	}
	TRY(server(AF_INET, SOCK_STREAM, &lo4, sizeof lo4, &tcp4_port));
	TRY(server(AF_INET, SOCK_DGRAM, &lo4, sizeof lo4, &udp4_port));
	t4 = v4("127.0.0.1", tcp4_port);
	u4 = v4("127.0.0.1", udp4_port);
	t4_mapped = v6("::ffff:127.0.0.1", tcp4_port);

	probe = server(AF_INET6, SOCK_STREAM, &lo6, sizeof lo6, &tcp6_port);
	r->have_v6 = probe >= 0;
	if (probe < 0 && errno != EADDRNOTAVAIL && errno != EAFNOSUPPORT)
		TRY(probe);
	if (r->have_v6)
		TRY(server(AF_INET6, SOCK_DGRAM, &lo6, sizeof lo6, &udp6_port));
	t6 = v6("::1", tcp6_port);
	u6 = v6("::1", udp6_port);

	TRY(client(AF_INET, SOCK_STREAM, NULL, 0, &t4, sizeof t4, &r->local_port[TCP4]));
	r->remote_port[TCP4] = tcp4_port;
	TRY(client(AF_INET, SOCK_DGRAM, &lo4, sizeof lo4, &u4, sizeof u4, &r->local_port[UDP4]));
	r->remote_port[UDP4] = udp4_port;
	TRY(client(AF_INET, SOCK_DGRAM, &any4, sizeof any4, NULL, 0, &r->local_port[UDP4_ANY]));
	r->remote_port[UDP4_ANY] = udp4_port;
	if (r->host_ports) {
		TRY(client_connect(host_tcp_sock, &t4, sizeof t4, &r->local_port[TCP4_HOSTPORT]));
		r->remote_port[TCP4_HOSTPORT] = tcp4_port;
		TRY(client_connect(host_udp_sock, &u4, sizeof u4, &r->local_port[UDP4_HOSTPORT]));
		r->remote_port[UDP4_HOSTPORT] = udp4_port;
	}
	if (!r->have_v6)
		return;
	TRY(client(AF_INET6, SOCK_STREAM, NULL, 0, &t6, sizeof t6, &r->local_port[TCP6]));
	r->remote_port[TCP6] = tcp6_port;
	TRY(client(AF_INET6, SOCK_STREAM, NULL, 0, &t4_mapped, sizeof t4_mapped,
		   &r->local_port[TCP6_V4]));
	r->remote_port[TCP6_V4] = tcp4_port;
	TRY(client(AF_INET6, SOCK_DGRAM, &lo6, sizeof lo6, &u6, sizeof u6, &r->local_port[UDP6]));
	r->remote_port[UDP6] = udp6_port;
	TRY(client(AF_INET6, SOCK_DGRAM, &any6, sizeof any6, NULL, 0, &r->local_port[UDP6_ANY]));
	r->remote_port[UDP6_ANY] = udp4_port;
}

/* Opens the sockets and reports their ports. */
static void open_and_report(int reports, char role)
{
	struct report r;

	memset(&r, 0, sizeof r);
	r.role = role;
	r.host_ports = role == 'i';
	open_sockets(&r);
	if (send(reports, &r, sizeof r, 0) != (ssize_t)sizeof r)
		_exit(1);
}

_Noreturn static void hold_forever(void)
{
	for (;;)
		pause();
}

/* Forks a process that closes the descriptors it inherited (all but stdio and `reports`),
 * opens its own sockets, reports, and waits to be killed. */
static pid_t spawn_holder(int reports, char role)
{
	pid_t pid = fork();

	if (pid == 0) {
		if (close_range(3, (unsigned)reports - 1, 0) < 0 ||
		    close_range((unsigned)reports + 1, ~0u, 0) < 0)
			_exit(1);
		open_and_report(reports, role);
		hold_forever();
	}
	return pid;
}

/* Forks a process that keeps what it inherited from init (init's sockets) and opens nothing. */
static void spawn_sharer(int reports)
{
	pid_t pid = fork();

	if (pid == 0) {
		struct report r = { .role = 'k' };

		if (send(reports, &r, sizeof r, 0) < 0)
			_exit(1);
		hold_forever();
	}
}

/* Forks a process that makes a nested PID namespace whose init opens sockets and reports. */
static void spawn_nested(int reports)
{
	pid_t pid = fork();

	if (pid != 0)
		return;
	if (unshare(CLONE_NEWPID) < 0 || spawn_holder(reports, 'n') < 0) {
		struct report r = { .role = 'n', .err = errno, .line = __LINE__ };

		if (send(reports, &r, sizeof r, 0) < 0)
			_exit(1);
	}
	hold_forever();
}

/* Takes a descriptor the test sends (SCM_RIGHTS), keeps it, and acknowledges with a report. */
static void adopt_descriptor(int reports)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} control;
	struct report r = { .role = 'r' };
	char byte;
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control.buf,
		.msg_controllen = sizeof control.buf,
	};
	struct cmsghdr *c;

	if (recvmsg(reports, &msg, 0) != 1 || !(c = CMSG_FIRSTHDR(&msg)) ||
	    c->cmsg_type != SCM_RIGHTS) {
		r.err = EPROTO;
		r.line = __LINE__;
	}
	if (send(reports, &r, sizeof r, 0) < 0)
		_exit(1);
}

_Noreturn static void init_main(int reports, int commands)
{
	char command;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (lo_up() < 0) {
		struct report r = { .role = 'i', .err = errno, .line = __LINE__ };

		if (send(reports, &r, sizeof r, 0) < 0)
			_exit(1);
		_exit(1);
	}
	open_and_report(reports, 'i');
	spawn_holder(reports, 'c');
	while (read(commands, &command, 1) == 1) {
		if (command == 's')
			open_and_report(reports, 's');
		else if (command == 'l')
			spawn_holder(reports, 'l');
		else if (command == 'n')
			spawn_nested(reports);
		else if (command == 'r')
			adopt_descriptor(reports);
		else if (command == 'k')
			spawn_sharer(reports);
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
	}
	_exit(0);
}

_Noreturn static void middle_main(int reports, int commands)
{
	pid_t init;
	int status;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (unshare(CLONE_NEWNET | CLONE_NEWPID) < 0) {
		struct report r = { .role = 'i', .err = errno, .line = __LINE__ };

		if (send(reports, &r, sizeof r, 0) < 0)
			_exit(1);
		_exit(1);
	}
	init = fork();
	if (init == 0)
		init_main(reports, commands);
	if (init > 0)
		waitpid(init, &status, 0);
	_exit(0);
}

/* ---- the test's side ---- */

/* Receives one report; *pid is its sender as the test sees it (0 if unknown). */
static bool receive(struct world *w, struct report *r, pid_t *pid)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(struct ucred))];
	} control;
	struct iovec iov = { .iov_base = r, .iov_len = sizeof *r };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control.buf,
		.msg_controllen = sizeof control.buf,
	};
	ssize_t n = recvmsg(w->reports, &msg, 0);

	*pid = 0;
	if (n != (ssize_t)sizeof *r) {
		fprintf(stderr, "  no report from the world (%s)\n",
			n < 0 ? strerror(errno) : "short");
		return false;
	}
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
			struct ucred cred;

			memcpy(&cred, CMSG_DATA(c), sizeof cred);
			*pid = cred.pid;
		}
	}
	if (r->err) {
		fprintf(stderr, "  world process '%c' failed at line %d: %s\n", r->role, r->line,
			strerror(r->err));
		return false;
	}
	return *pid > 0;
}

/* Sends fd to init, which keeps a copy: the socket then has a session process as holder. */
static bool world_give(struct world *w, int fd, struct report *r, pid_t *pid)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} control;
	char byte = 'r';
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control.buf,
		.msg_controllen = sizeof control.buf,
	};
	struct cmsghdr *c;

	memset(control.buf, 0, sizeof control.buf);
	c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof fd);
	if (write(w->commands, &byte, 1) != 1 || sendmsg(w->reports, &msg, 0) != 1)
		return false;
	return receive(w, r, pid);
}

/* Kills init (the kernel then kills the whole PID namespace) and reaps the middle process,
 * which returns only once init, and so every world process, is gone. */
static void world_stop(struct world *w)
{
	if (w->init_pidfd >= 0) {
		syscall(SYS_pidfd_send_signal, w->init_pidfd, SIGKILL, NULL, 0);
		close(w->init_pidfd);
	}
	if (w->commands >= 0)
		close(w->commands);
	if (w->middle > 0) {
		if (w->init_pidfd < 0)
			kill(w->middle, SIGKILL);
		waitpid(w->middle, NULL, 0);
	}
	if (w->reports >= 0)
		close(w->reports);
	w->commands = w->reports = w->init_pidfd = -1;
	w->init = w->middle = 0;
}

static bool world_start(struct world *w)
{
	int pair[2], pipefd[2], on = 1;
	struct timeval timeout = { .tv_sec = 20 };
	struct report r;
	pid_t pid;

	memset(w, 0, sizeof *w);
	w->reports = w->commands = w->init_pidfd = -1;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0)
		return false;
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		close(pair[0]);
		close(pair[1]);
		return false;
	}
	w->reports = pair[0];
	w->commands = pipefd[1];
	setsockopt(w->reports, SOL_SOCKET, SO_PASSCRED, &on, sizeof on);
	setsockopt(w->reports, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
	w->middle = fork();
	if (w->middle == 0) {
		close(pair[0]);
		close(pipefd[1]);
		middle_main(pair[1], pipefd[0]);
	}
	close(pair[1]);
	close(pipefd[0]);
	if (w->middle < 0) {
		w->middle = 0;
		world_stop(w);
		return false;
	}
	/* init reports first, then forks the child, which reports second */
	for (int i = 0; i < 2; i++) {
		if (!receive(w, &r, &pid)) {
			world_stop(w);
			return false;
		}
		if (r.role == 'i') {
			w->init = pid;
			w->init_report = r;
			w->init_pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
		} else {
			w->child = pid;
			w->child_report = r;
		}
	}
	if (w->init_pidfd < 0 || w->child <= 0) {
		world_stop(w);
		return false;
	}
	return true;
}

/* Asks init for one more report: 's' init opens more sockets; 'l' a new child does; 'n' the
 * init of a nested PID namespace does; 'k' a new child keeps init's sockets, opens none. */
static bool world_command(struct world *w, char command, struct report *r, pid_t *pid)
{
	if (write(w->commands, &command, 1) != 1)
		return false;
	return receive(w, r, pid);
}

static char own_exe[ATTRIBUTION_EXE_MAX];

static struct attribution_flow flow_of(int proto, const char *local, uint16_t local_port,
				       const char *remote, uint16_t remote_port)
{
	struct attribution_flow f;

	memset(&f, 0, sizeof f);
	f.proto = proto;
	f.local_port = local_port;
	f.remote_port = remote_port;
	if (addr_parse(&f.local, local, strlen(local)) < 0)
		abort();
	if (remote && addr_parse(&f.remote, remote, strlen(remote)) < 0)
		abort();
	return f;
}

struct lookup_case {
	const char *name;
	enum sock_case sock;
	int proto;
	const char *local;  /* the application's address, as sluice would see it */
	const char *remote; /* where it was going */
	bool v6;            /* needs IPv6 on the session's lo */
	bool host_port;     /* only in the report that holds the host's ports */
};

#define TCP ATTRIBUTION_TCP
#define UDP ATTRIBUTION_UDP
#define LO4 "127.0.0.1"

static const struct lookup_case lookup_cases[] = {
	/* name                                 socket      proto local  remote  v6     host */
	{"tcp4",                                TCP4,       TCP, LO4,    LO4,    false, false},
	{"tcp4 written as ::ffff:",             TCP4,       TCP, "::ffff:127.0.0.1",
	                                                         "::ffff:127.0.0.1", false, false},
	{"tcp6",                                TCP6,       TCP, "::1",  "::1",  true,  false},
	{"tcp6 socket carrying v4",             TCP6_V4,    TCP, LO4,    LO4,    true,  false},
	{"udp4 connected",                      UDP4,       UDP, LO4,    LO4,    false, false},
	{"udp6 connected",                      UDP6,       UDP, "::1",  "::1",  true,  false},
	{"udp4 bound to 0.0.0.0",               UDP4_ANY,   UDP, LO4,    LO4,    false, false},
	{"udp6 dual-stack carrying v4",         UDP6_ANY,   UDP, LO4,    LO4,    true,  false},
	{"tcp4 on a port the host also holds",  TCP4_HOSTPORT, TCP, LO4, LO4,    false, true},
	{"udp4 on a port the host also holds",  UDP4_HOSTPORT, UDP, LO4, LO4,    false, true},
};

/* Every socket of the process that sent r is found, with and without the destination. */
static void check_owner(struct attribution *at, const struct report *r, pid_t pid,
			const char *who)
{
	for (size_t i = 0; i < sizeof lookup_cases / sizeof lookup_cases[0]; i++) {
		const struct lookup_case *c = &lookup_cases[i];

		if ((c->v6 && !r->have_v6) || (c->host_port && !r->host_ports))
			continue;
		for (int with_remote = 1; with_remote >= 0; with_remote--) {
			struct attribution_flow f =
				flow_of(c->proto, c->local, r->local_port[c->sock],
					with_remote ? c->remote : NULL, r->remote_port[c->sock]);
			char exe[ATTRIBUTION_EXE_MAX] = "unset";

			check_case("%s: %s, %s", who, c->name,
				   with_remote ? "destination known" : "destination unknown");
			CHECK_EQ(attribution_lookup(at, &f, exe, sizeof exe), pid);
			CHECK_STR_EQ(exe, own_exe);
		}
	}
}

/* init's sockets, also held by `sharer` (forked after they were opened): either is the owner. */
static void check_shared(struct attribution *at, const struct report *r, pid_t init,
			 pid_t sharer)
{
	for (size_t i = 0; i < sizeof lookup_cases / sizeof lookup_cases[0]; i++) {
		const struct lookup_case *c = &lookup_cases[i];
		struct attribution_flow f;
		int64_t got;

		if ((c->v6 && !r->have_v6) || (c->host_port && !r->host_ports))
			continue;
		f = flow_of(c->proto, c->local, r->local_port[c->sock], c->remote,
			    r->remote_port[c->sock]);
		check_case("shared by init and a child: %s", c->name);
		got = attribution_lookup(at, &f, NULL, 0);
		CHECK(got == init || got == sharer);
	}
}

static void test_finds_the_owner(void)
{
	struct world w;
	struct attribution *at = NULL;

	CHECK(world_start(&w));
	if (!w.init)
		return;
	if (!w.init_report.have_v6)
		printf("  note: no IPv6 on the session's lo; IPv6 rows skipped\n");
	CHECK_EQ(attribution_new(&at, w.init), 0);
	if (at) {
		/* the child first: it is not yet known, so this is a full scan */
		check_owner(at, &w.child_report, w.child, "pid 2");
		check_owner(at, &w.init_report, w.init, "pid 1");
		check_owner(at, &w.child_report, w.child, "pid 2 again");
	}
	attribution_free(at);
	world_stop(&w);
}

struct absent_case {
	const char *name;
	struct attribution_flow flow;
};

static void check_absent(struct attribution *at, const struct absent_case *cases, size_t n)
{
	char exe[64];

	for (size_t i = 0; i < n; i++) {
		check_case("%s", cases[i].name);
		strcpy(exe, "unset");
		CHECK_EQ(attribution_lookup(at, &cases[i].flow, exe, sizeof exe), 0);
		CHECK_STR_EQ(exe, "");
	}
}

/* Sockets client_off_world opens, at most, to find one whose port the world does not use. */
#define OFF_WORLD_TRIES 8

/* Whether port is one that a socket of init or its child (every socket of the world before
 * world_command) has as its own: its local port, or its listener's or receiver's. */
static bool world_uses(const struct world *w, uint16_t port)
{
	const struct report *reports[] = { &w->init_report, &w->child_report };

	for (size_t i = 0; i < sizeof reports / sizeof reports[0]; i++)
		for (int c = 0; c < SOCK_CASES; c++)
			if (reports[i]->local_port[c] == port || reports[i]->remote_port[c] == port)
				return true;
	return false;
}

/* Like client(), for the test's own sockets that no session process holds: their port must be
 * one no world socket uses (namespaces have their own port numbers, and a TCP port picked by
 * connect is shared by connections to different destinations), or a lookup without the
 * destination rightly finds the session's socket. Up to OFF_WORLD_TRIES sockets are opened
 * until one qualifies (those rejected are held meanwhile, so each try gets another port);
 * returns it, or -1. */
static int client_off_world(const struct world *w, int family, int type, const void *bind_sa,
			    socklen_t bind_len, const void *to, socklen_t to_len, uint16_t *port)
{
	int rejected[OFF_WORLD_TRIES], n = 0, s = -1;

	while (n < OFF_WORLD_TRIES) {
		s = client(family, type, bind_sa, bind_len, to, to_len, port);
		if (s < 0 || !world_uses(w, *port))
			break;
		rejected[n++] = s;
		s = -1;
	}
	while (n > 0)
		close(rejected[--n]);
	return s;
}

/* Opens, inside the world's network namespace, sockets that the test (outside the session)
 * holds, as sluice holds its listeners there: a TCP connection to init's listener and a UDP
 * socket, on ports no session socket uses. Returns false if that failed. */
static bool open_in_world_netns(const struct world *w, int *tcp, uint16_t *tcp_port, int *udp,
				uint16_t *udp_port)
{
	struct sockaddr_in lo4 = v4("127.0.0.1", 0);
	struct sockaddr_in t4 = v4("127.0.0.1", w->init_report.remote_port[TCP4]);
	struct sockaddr_in u4 = v4("127.0.0.1", w->init_report.remote_port[UDP4]);
	char path[64];
	int own_ns, session_ns;
	bool ok = false;

	*tcp = *udp = -1;
	snprintf(path, sizeof path, "/proc/%d/ns/net", (int)w->init);
	own_ns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	session_ns = open(path, O_RDONLY | O_CLOEXEC);
	if (own_ns >= 0 && session_ns >= 0 && setns(session_ns, CLONE_NEWNET) == 0) {
		*tcp = client_off_world(w, AF_INET, SOCK_STREAM, NULL, 0, &t4, sizeof t4,
					tcp_port);
		*udp = client_off_world(w, AF_INET, SOCK_DGRAM, &lo4, sizeof lo4, &u4, sizeof u4,
					udp_port);
		if (setns(own_ns, CLONE_NEWNET) < 0)
			abort();
		ok = *tcp >= 0 && *udp >= 0;
	}
	if (own_ns >= 0)
		close(own_ns);
	if (session_ns >= 0)
		close(session_ns);
	return ok;
}

static void test_unknown_and_outside(void)
{
	struct world w;
	struct attribution *at = NULL;
	struct sockaddr_in lo4 = v4("127.0.0.1", 0), to = v4("127.0.0.1", host_tcp_port);
	uint16_t host_tcp = 0, host_udp = 0, ns_tcp_port = 0, ns_udp_port = 0;
	int host_tcp_sock, host_udp_sock, ns_tcp = -1, ns_udp = -1;
	struct report r;
	pid_t pid;

	CHECK(world_start(&w));
	if (!w.init)
		return;
	CHECK_EQ(attribution_new(&at, w.init), 0);
	host_tcp_sock = client_off_world(&w, AF_INET, SOCK_STREAM, NULL, 0, &to, sizeof to,
					 &host_tcp);
	host_udp_sock = client_off_world(&w, AF_INET, SOCK_DGRAM, &lo4, sizeof lo4, NULL, 0,
					 &host_udp);
	CHECK(host_tcp_sock >= 0 && host_udp_sock >= 0);
	CHECK(open_in_world_netns(&w, &ns_tcp, &ns_tcp_port, &ns_udp, &ns_udp_port));
	if (at) {
		uint16_t t4 = w.init_report.remote_port[TCP4], u4 = w.init_report.remote_port[UDP4];
		uint16_t mine = w.init_report.local_port[TCP4];
		const struct absent_case cases[] = {
			{"tcp port 1", flow_of(ATTRIBUTION_TCP, "127.0.0.1", 1, "127.0.0.1", t4)},
			{"tcp port 1, destination unknown",
			 flow_of(ATTRIBUTION_TCP, "127.0.0.1", 1, NULL, 0)},
			{"udp port 1", flow_of(ATTRIBUTION_UDP, "127.0.0.1", 1, "127.0.0.1", 53)},
			{"udp port 1, destination unknown",
			 flow_of(ATTRIBUTION_UDP, "127.0.0.1", 1, NULL, 0)},
			{"tcp6 port 1", flow_of(ATTRIBUTION_TCP, "::1", 1, "::1", 80)},
			{"a session port, another destination port",
			 flow_of(ATTRIBUTION_TCP, "127.0.0.1", mine, "127.0.0.1", 1)},
			{"a session port, another address",
			 flow_of(ATTRIBUTION_TCP, "127.0.0.2", mine, NULL, 0)},
			{"tcp in the host namespace",
			 flow_of(ATTRIBUTION_TCP, LO4, host_tcp, LO4, host_tcp_port)},
			{"tcp in the host namespace, destination unknown",
			 flow_of(ATTRIBUTION_TCP, "127.0.0.1", host_tcp, NULL, 0)},
			{"udp in the host namespace",
			 flow_of(ATTRIBUTION_UDP, "127.0.0.1", host_udp, NULL, 0)},
			{"tcp in the session's network, held outside the session",
			 flow_of(ATTRIBUTION_TCP, "127.0.0.1", ns_tcp_port, "127.0.0.1", t4)},
			{"tcp in the session's network, held outside, destination unknown",
			 flow_of(ATTRIBUTION_TCP, "127.0.0.1", ns_tcp_port, NULL, 0)},
			{"udp in the session's network, held outside the session",
			 flow_of(ATTRIBUTION_UDP, "127.0.0.1", ns_udp_port, "127.0.0.1", u4)},
		};
		struct attribution_flow tcp_flow = cases[10].flow, udp_flow = cases[12].flow;

		check_absent(at, cases, sizeof cases / sizeof cases[0]);

		/* control: once init holds them too, the very same sockets are found */
		check_case("the test's sockets handed to init");
		CHECK(world_give(&w, ns_tcp, &r, &pid) && world_give(&w, ns_udp, &r, &pid));
		CHECK_EQ(attribution_lookup(at, &tcp_flow, NULL, 0), w.init);
		CHECK_EQ(attribution_lookup(at, &udp_flow, NULL, 0), w.init);
	}
	if (host_tcp_sock >= 0)
		close(host_tcp_sock);
	if (host_udp_sock >= 0)
		close(host_udp_sock);
	if (ns_tcp >= 0)
		close(ns_tcp);
	if (ns_udp >= 0)
		close(ns_udp);
	attribution_free(at);
	world_stop(&w);
}

static void test_processes_after_the_cache(void)
{
	struct world w;
	struct attribution *at = NULL;
	struct report r;
	pid_t pid;

	CHECK(world_start(&w));
	if (!w.init)
		return;
	CHECK_EQ(attribution_new(&at, w.init), 0);
	if (!at)
		goto out;
	check_owner(at, &w.init_report, w.init, "pid 1, builds the cache");
	check_owner(at, &w.child_report, w.child, "pid 2, builds the cache");

	CHECK(world_command(&w, 's', &r, &pid));
	CHECK_EQ(pid, w.init);
	check_owner(at, &r, w.init, "new sockets of a known process");

	CHECK(world_command(&w, 'l', &r, &pid));
	CHECK(pid != w.init && pid != w.child);
	check_owner(at, &r, pid, "a process started after the cache");

	CHECK(world_command(&w, 'n', &r, &pid));
	CHECK(pid != w.init && pid != w.child);
	check_owner(at, &r, pid, "pid 1 of a nested PID namespace");

	CHECK(world_command(&w, 'k', &r, &pid));
	CHECK(pid != w.init && pid != w.child);
	check_shared(at, &w.init_report, w.init, pid);
out:
	attribution_free(at);
	world_stop(&w);
}

static void test_rejects(void)
{
	struct world w;
	struct attribution *at = NULL;
	char exe[8];
	struct {
		const char *name;
		struct attribution_flow flow;
	} cases[] = {
		{"protocol 1", flow_of(1, "127.0.0.1", 1000, NULL, 0)},
		{"no address", { .proto = ATTRIBUTION_TCP, .local_port = 1000 }},
		{"port 0", flow_of(ATTRIBUTION_TCP, "127.0.0.1", 0, NULL, 0)},
		{"v4 to v6", flow_of(ATTRIBUTION_TCP, "127.0.0.1", 1000, "::1", 80)},
		{"v6 to v4", flow_of(ATTRIBUTION_UDP, "::1", 1000, "127.0.0.1", 53)},
	};

	check_case("a pid that cannot exist");
	CHECK_EQ(attribution_new(&at, INT_MAX), -ESRCH);
	check_case("the caller's own PID namespace");
	CHECK_EQ(attribution_new(&at, (int)getpid()), -EINVAL);
	check_case("pid 0");
	CHECK_EQ(attribution_new(&at, 0), -ESRCH);
	attribution_free(NULL);

	CHECK(world_start(&w));
	if (!w.init)
		return;
	CHECK_EQ(attribution_new(&at, w.init), 0);
	for (size_t i = 0; at && i < sizeof cases / sizeof cases[0]; i++) {
		check_case("%s", cases[i].name);
		strcpy(exe, "unset");
		CHECK_EQ(attribution_lookup(at, &cases[i].flow, exe, sizeof exe), -EINVAL);
		CHECK_STR_EQ(exe, "");
	}
	if (at) {
		struct attribution_flow f = flow_of(ATTRIBUTION_TCP, "127.0.0.1",
						    w.init_report.local_port[TCP4], "127.0.0.1",
						    w.init_report.remote_port[TCP4]);

		check_case("NULL exe with a length");
		CHECK_EQ(attribution_lookup(at, &f, NULL, 10), -EINVAL);
		check_case("NULL exe, length 0");
		CHECK_EQ(attribution_lookup(at, &f, NULL, 0), w.init);
		check_case("exe buffer too small for the path");
		strcpy(exe, "unset");
		CHECK_EQ(attribution_lookup(at, &f, exe, 2), w.init);
		CHECK_STR_EQ(exe, "");
	}
	attribution_free(at);
	world_stop(&w);
}

static const struct check_test tests[] = {
	{"finds_the_owner", test_finds_the_owner},
	{"unknown_and_outside", test_unknown_and_outside},
	{"processes_after_the_cache", test_processes_after_the_cache},
	{"rejects", test_rejects},
};

/* The host-namespace sockets whose ports the world reuses: a TCP listener and a UDP socket. */
static bool hold_host_ports(void)
{
	struct sockaddr_in lo4 = v4("127.0.0.1", 0);

	return server(AF_INET, SOCK_STREAM, &lo4, sizeof lo4, &host_tcp_port) >= 0 &&
	       server(AF_INET, SOCK_DGRAM, &lo4, sizeof lo4, &host_udp_port) >= 0;
}

int main(int argc, char **argv)
{
	ssize_t n;

	if (geteuid() != 0) {
		printf("skipped: needs root (network and PID namespaces)\n");
		return 77;
	}
	signal(SIGPIPE, SIG_IGN);
	n = readlink("/proc/self/exe", own_exe, sizeof own_exe - 1);
	if (n <= 0 || !hold_host_ports()) {
		fprintf(stderr, "cannot set up: %s\n", strerror(errno));
		return 1;
	}
	own_exe[n] = '\0';
	return check_run(tests, sizeof tests / sizeof tests[0], argc, argv);
}
