/* net_linux.c — net.h on Linux: non-blocking sockets, and a pump that splices through a pipe. */
#define _GNU_SOURCE
#include "base/net.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* Pipe capacity of a pump: large enough that one splice round moves a good share of a socket
 * buffer, small enough that ten thousand idle connections cost little (pages are allocated
 * only while bytes sit in the pipe). */
#define PUMP_PIPE_BYTES (256 * 1024)
/* splice rounds per net_pump_run, so that one busy connection cannot starve the others. */
#define PUMP_ROUNDS 8

static int reserve_fd = -1;

static void addr_from_sockaddr(const struct sockaddr_storage *ss, struct addr *a, uint16_t *port)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
		addr_from_bytes(a, ADDR_V4, (const uint8_t *)&sin->sin_addr);
		*port = ntohs(sin->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
		addr_from_bytes(a, ADDR_V6, (const uint8_t *)&sin6->sin6_addr);
		*port = ntohs(sin6->sin6_port);
	} else {
		memset(a, 0, sizeof *a);
		*port = 0;
	}
}

static socklen_t sockaddr_from_addr(const struct addr *a, uint16_t port,
				    struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof *ss);
	if (a->family == ADDR_V4) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		memcpy(&sin->sin_addr, a->bytes, 4);
		return sizeof *sin;
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	memcpy(&sin6->sin6_addr, a->bytes, 16);
	return sizeof *sin6;
}

static void set_nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* At the descriptor limit: frees the reserve descriptor, accepts the oldest waiting
 * connection with it and resets it, then takes the reserve back. */
static void accept_shed(int listener)
{
	if (reserve_fd >= 0) {
		close(reserve_fd);
		reserve_fd = -1;
	}
	int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
	if (fd >= 0)
		net_reset(fd);
	reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

loop_sock net_accept(loop_sock listener, struct addr *peer, uint16_t *peer_port)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	int fd = accept4((int)listener, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		int err = errno;
		if (err == EWOULDBLOCK || err == EINTR || err == ECONNABORTED)
			return -EAGAIN;
		if (err == EMFILE || err == ENFILE)
			accept_shed((int)listener);
		return -err;
	}
	addr_from_sockaddr(&ss, peer, peer_port);
	set_nodelay(fd);
	return fd;
}

loop_sock net_connect_start(const struct addr *dst, uint16_t port, bool *done)
{
	struct sockaddr_storage ss;
	socklen_t len = sockaddr_from_addr(dst, port, &ss);
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	set_nodelay(fd);
	*done = false;
	if (connect(fd, (struct sockaddr *)&ss, len) == 0) {
		*done = true;
	} else if (errno != EINPROGRESS) {
		int err = errno;
		close(fd);
		return -err;
	}
	return fd;
}

loop_sock net_udp_connect(const struct addr *dst, uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t len = sockaddr_from_addr(dst, port, &ss);
	int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
		int err = errno;
		close(fd);
		return -err;
	}
	return fd;
}

long net_send(loop_sock sock, const void *buf, size_t len)
{
	ssize_t n = send((int)sock, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return (long)n;
}

long net_recv(loop_sock sock, void *buf, size_t cap)
{
	ssize_t n = recv((int)sock, buf, cap, MSG_DONTWAIT);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return (long)n;
}

int net_connect_result(loop_sock sock)
{
	int err = 0;
	socklen_t len = sizeof err;
	if (getsockopt((int)sock, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return -errno;
	return -err;
}

int net_shutdown_write(loop_sock sock)
{
	return shutdown((int)sock, SHUT_WR) == 0 ? 0 : -errno;
}

int net_set_nonblocking(loop_sock sock)
{
	int flags = fcntl((int)sock, F_GETFL);
	if (flags < 0 || fcntl((int)sock, F_SETFL, flags | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

void net_close(loop_sock sock)
{
	if (sock >= 0)
		close((int)sock);
}

void net_reset(loop_sock sock)
{
	if (sock < 0)
		return;
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	setsockopt((int)sock, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	close((int)sock);
}

long net_prepare_process(void)
{
	struct rlimit rl;
	signal(SIGPIPE, SIG_IGN);
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (reserve_fd < 0)
		reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return rl.rlim_cur == RLIM_INFINITY ? (long)1 << 30 : (long)rl.rlim_cur;
}

struct net_pump {
	int pipe_read, pipe_write;
	size_t queued;
	bool eof;
};

int net_pump_new(struct net_pump **out)
{
	struct net_pump *p = calloc(1, sizeof *p);
	int fds[2];
	if (!p)
		return -ENOMEM;
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
		int err = errno;
		free(p);
		return -err;
	}
	fcntl(fds[1], F_SETPIPE_SZ, PUMP_PIPE_BYTES); /* best effort: pipe-max-size may be lower */
	p->pipe_read = fds[0];
	p->pipe_write = fds[1];
	*out = p;
	return 0;
}

void net_pump_free(struct net_pump *p)
{
	if (!p)
		return;
	close(p->pipe_read);
	close(p->pipe_write);
	free(p);
}

void net_pump_run(struct net_pump *p, loop_sock from, loop_sock to, struct net_pump_status *st)
{
	const unsigned flags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
	bool pipe_full = false;

	memset(st, 0, sizeof *st);
	for (int round = 0; round < PUMP_ROUNDS; round++) {
		bool progress = false;
		if (!p->eof && !pipe_full) {
			ssize_t n = splice((int)from, NULL, p->pipe_write, NULL, PUMP_PIPE_BYTES,
					   flags);
			if (n > 0) {
				p->queued += (size_t)n;
				progress = true;
			} else if (n == 0) {
				p->eof = true;
			} else if (errno == EAGAIN) {
				/* Either the socket is empty or the pipe has no free slot; with
				 * bytes queued, draining comes first and tells which. */
				pipe_full = p->queued > 0;
			} else if (errno != EINTR) {
				st->error = -errno;
				st->error_on_from = true;
				break;
			}
		}
		if (p->queued > 0) {
			ssize_t n = splice(p->pipe_read, NULL, (int)to, NULL, p->queued, flags);
			if (n > 0) {
				p->queued -= (size_t)n;
				st->moved += (uint64_t)n;
				pipe_full = false;
				progress = true;
			} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
				st->error = -errno;
				st->error_on_from = false;
				break;
			}
		}
		if (!progress)
			break;
	}
	st->from_eof = p->eof;
	st->buffered = p->queued;
	st->want_write = p->queued > 0;
	st->want_read = !p->eof && p->queued == 0;
}
