/* attribution_linux.c — socket inode by NETLINK_SOCK_DIAG, owner by the session's /proc fds.
 *
 * attribution.h explains the two steps and the measurements behind them.
 */
#define _GNU_SOURCE

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/nsfs.h>
#include <linux/sock_diag.h>

#include "session/attribution.h"

/* Largest netlink datagram the kernel sends a reader who offers 32 KiB (it never exceeds that). */
#define DIAG_BUFFER_SIZE 32768

/* PID namespaces whose place (inside the session or not) is remembered; each holds an fd so
 * that its inode number cannot be reused by another namespace while it is remembered. */
#define NS_VERDICTS 16

/* Deepest nesting of PID namespaces the kernel allows (MAX_PID_NS_LEVEL), plus one. */
#define NS_MAX_DEPTH 33

struct ns_id {
	dev_t dev;
	ino_t ino;
};

struct ns_verdict {
	struct ns_id ns;
	int fd; /* -1: slot empty */
	bool in_session;
};

struct candidates {
	uint64_t inode[ATTRIBUTION_MAX_CANDIDATES];
	size_t n;
};

/* The flow reduced to what the kernel compares: unmapped addresses, network-order ports. */
struct flow_key {
	int proto;
	int family; /* AF_INET or AF_INET6 */
	uint8_t local[16];
	uint16_t local_port;
	bool has_remote;
	uint8_t remote[16];
	uint16_t remote_port;
};

/* Socket inodes read from session processes' descriptors, and who held them: a scan reads
 * every descriptor of a process (not only up to the one it looks for) and remembers its
 * sockets, so that the other connections made before the scan (those accepted in the same
 * burst) are found without reading /proc again. Inode numbers of sockets are not reused
 * while the machine runs (a 32-bit counter would have to wrap), so an entry stays true for as
 * long as its process holds the socket; a process that exited is checked for at each hit.
 * Open addressing, cleared whole when three quarters full. */
#define SEEN_SOCKETS 16384

struct seen_socket {
	uint64_t inode; /* 0: empty */
	int pid;
};

struct attribution {
	int root_pid;
	int diag; /* NETLINK_SOCK_DIAG socket in the session's network namespace; -1 until needed */
	uint32_t seq;
	struct ns_id own_pidns;
	struct ns_id session_pidns;
	int session_pidns_fd; /* pins the session's PID namespace (and so its inode number) */
	struct ns_verdict verdicts[NS_VERDICTS];
	unsigned next_verdict;
	int pids[ATTRIBUTION_MAX_CACHED_PIDS]; /* session processes, most recently matched first */
	size_t n_pids;
	int *proc_pids; /* scratch: ATTRIBUTION_MAX_PROC_ENTRIES */
	int *fds;       /* scratch: ATTRIBUTION_MAX_FDS */
	struct seen_socket *seen; /* SEEN_SOCKETS slots: socket inode -> session pid */
	size_t n_seen;
	uint32_t buf[DIAG_BUFFER_SIZE / sizeof(uint32_t)];
};

static const uint8_t v4_mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

static int ns_id_of(const char *path, struct ns_id *out)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return -errno;
	out->dev = st.st_dev;
	out->ino = st.st_ino;
	return 0;
}

static int ns_id_of_fd(int fd, struct ns_id *out)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	out->dev = st.st_dev;
	out->ino = st.st_ino;
	return 0;
}

static bool ns_equal(const struct ns_id *a, const struct ns_id *b)
{
	return a->dev == b->dev && a->ino == b->ino;
}

int attribution_new(struct attribution **out, int root_pid)
{
	struct attribution *a;
	char path[64];
	int err;

	if (root_pid <= 0)
		return -ESRCH;
	a = calloc(1, sizeof *a);
	if (!a)
		return -ENOMEM;
	a->root_pid = root_pid;
	a->diag = -1;
	a->session_pidns_fd = -1;
	for (size_t i = 0; i < NS_VERDICTS; i++)
		a->verdicts[i].fd = -1;
	a->proc_pids = malloc(ATTRIBUTION_MAX_PROC_ENTRIES * sizeof *a->proc_pids);
	a->fds = malloc(ATTRIBUTION_MAX_FDS * sizeof *a->fds);
	a->seen = calloc(SEEN_SOCKETS, sizeof *a->seen);
	if (!a->proc_pids || !a->fds || !a->seen) {
		err = -ENOMEM;
		goto fail;
	}
	if ((err = ns_id_of("/proc/self/ns/pid", &a->own_pidns)) < 0)
		goto fail;
	snprintf(path, sizeof path, "/proc/%d/ns/pid", root_pid);
	a->session_pidns_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (a->session_pidns_fd < 0) {
		err = errno == ENOENT ? -ESRCH : -errno;
		goto fail;
	}
	if ((err = ns_id_of_fd(a->session_pidns_fd, &a->session_pidns)) < 0)
		goto fail;
	if (ns_equal(&a->session_pidns, &a->own_pidns)) {
		err = -EINVAL;
		goto fail;
	}
	a->pids[a->n_pids++] = root_pid;
	*out = a;
	return 0;
fail:
	attribution_free(a);
	return err;
}

void attribution_free(struct attribution *a)
{
	if (!a)
		return;
	if (a->diag >= 0)
		close(a->diag);
	if (a->session_pidns_fd >= 0)
		close(a->session_pidns_fd);
	for (size_t i = 0; i < NS_VERDICTS; i++)
		if (a->verdicts[i].fd >= 0)
			close(a->verdicts[i].fd);
	free(a->proc_pids);
	free(a->fds);
	free(a->seen);
	free(a);
}

/* ---- step 1: the socket's inode ---- */

/* Makes the NETLINK_SOCK_DIAG socket inside root_pid's network namespace. The calling thread
 * enters that namespace and returns; not coming back would leave sluice's own dials inside
 * the session, so that failure (which needs a kernel bug) aborts. */
static int diag_open(struct attribution *a)
{
	char path[64];
	struct ns_id target_id = {0}, own_id = {0};
	int target, own, sock, err = 0;

	snprintf(path, sizeof path, "/proc/%d/ns/net", a->root_pid);
	target = open(path, O_RDONLY | O_CLOEXEC);
	if (target < 0)
		return -errno;
	own = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (own < 0) {
		err = -errno;
		goto out;
	}
	if ((err = ns_id_of_fd(target, &target_id)) < 0 || (err = ns_id_of_fd(own, &own_id)) < 0)
		goto out;
	if (!ns_equal(&target_id, &own_id) && setns(target, CLONE_NEWNET) < 0) {
		err = -errno;
		goto out;
	}
	sock = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (sock < 0)
		err = -errno;
	if (!ns_equal(&target_id, &own_id) && setns(own, CLONE_NEWNET) < 0)
		abort();
	if (sock >= 0)
		a->diag = sock;
out:
	if (own >= 0)
		close(own);
	close(target);
	return err;
}

/* Forgets the netlink socket (with whatever reply is left in it); the next lookup makes one. */
static void diag_reset(struct attribution *a)
{
	if (a->diag >= 0)
		close(a->diag);
	a->diag = -1;
}

static void candidates_add(struct candidates *c, uint64_t inode)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->inode[i] == inode)
			return;
	if (c->n < ATTRIBUTION_MAX_CANDIDATES)
		c->inode[c->n++] = inode;
}

static bool is_wildcard(const uint8_t *bytes, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (bytes[i])
			return false;
	return true;
}

/* Whether a dumped socket's local address is the flow's: exactly, IPv4 inside an IPv6 socket,
 * or (UDP, unconnected sockets bound to any address) the wildcard. */
static bool dump_matches(const struct flow_key *k, const struct inet_diag_msg *m)
{
	const uint8_t *src = (const uint8_t *)m->id.idiag_src;

	if (m->id.idiag_sport != k->local_port)
		return false;
	if (m->idiag_family == AF_INET && k->family == AF_INET)
		return memcmp(src, k->local, 4) == 0 ||
		       (k->proto == IPPROTO_UDP && is_wildcard(src, 4));
	if (m->idiag_family != AF_INET6)
		return false;
	if (k->proto == IPPROTO_UDP && is_wildcard(src, 16))
		return true;
	if (k->family == AF_INET6)
		return memcmp(src, k->local, 16) == 0;
	return memcmp(src, v4_mapped_prefix, 12) == 0 && memcmp(src + 12, k->local, 4) == 0;
}

static void consider(const struct flow_key *k, bool dump, const struct inet_diag_msg *m,
		     struct candidates *c)
{
	if (m->idiag_inode == 0) /* TIME_WAIT, or a socket no descriptor refers to any more */
		return;
	if (k->proto == IPPROTO_TCP && m->idiag_state == TCP_LISTEN)
		return;
	if (dump ? dump_matches(k, m) : m->id.idiag_sport == k->local_port)
		candidates_add(c, m->idiag_inode);
}

/* Reads the answer to request a->seq: one socket or an error (exact), or a dump up to
 * NLMSG_DONE. Returns 0 (candidates added, possibly none) or a negative errno code. */
static int diag_read(struct attribution *a, const struct flow_key *k, bool dump,
		     struct candidates *c)
{
	size_t sockets = 0;

	for (;;) {
		ssize_t n = recv(a->diag, a->buf, sizeof a->buf, MSG_DONTWAIT);
		const uint8_t *p = (const uint8_t *)a->buf;
		size_t left;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? -EIO : -errno;
		left = (size_t)n;
		while (left >= sizeof(struct nlmsghdr)) {
			const struct nlmsghdr *h = (const struct nlmsghdr *)p;
			size_t len = h->nlmsg_len, step = NLMSG_ALIGN(len);
			const void *body = p + NLMSG_HDRLEN;

			if (len < NLMSG_HDRLEN || len > left)
				return -EIO;
			if (h->nlmsg_seq != a->seq)
				goto next;
			if (h->nlmsg_type == NLMSG_DONE)
				return 0;
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = body;

				if (len < NLMSG_LENGTH(sizeof *e))
					return -EIO;
				return e->error == -ENOENT ? 0 : (e->error < 0 ? e->error : -EIO);
			}
			if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY) {
				if (len < NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
					return -EIO;
				consider(k, dump, body, c);
				if (!dump)
					return 0;
				if (++sockets >= ATTRIBUTION_MAX_DIAG_SOCKETS)
					return -E2BIG;
			}
next:
			if (step >= left)
				break;
			p += step;
			left -= step;
		}
	}
}

/* Sends one inet_diag request for k (exact: one socket by its addresses; dump: every socket of
 * `family`) and collects the candidates. */
static int diag_query(struct attribution *a, const struct flow_key *k, int family, bool dump,
		      struct candidates *c)
{
	struct {
		struct nlmsghdr header;
		struct inet_diag_req_v2 body;
	} req;
	size_t len = family == AF_INET ? 4 : 16;
	int err;

	memset(&req, 0, sizeof req);
	req.header.nlmsg_len = sizeof req;
	req.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	req.header.nlmsg_flags = NLM_F_REQUEST | (dump ? NLM_F_DUMP : 0);
	req.header.nlmsg_seq = ++a->seq;
	req.body.sdiag_family = (uint8_t)family;
	req.body.sdiag_protocol = (uint8_t)k->proto;
	req.body.idiag_states = ~0u;
	req.body.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
	req.body.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	if (!dump && k->proto == IPPROTO_TCP) {
		/* TCP: src is the socket's local end, dst its peer. */
		memcpy(req.body.id.idiag_src, k->local, len);
		req.body.id.idiag_sport = k->local_port;
		memcpy(req.body.id.idiag_dst, k->remote, len);
		req.body.id.idiag_dport = k->remote_port;
	} else if (!dump) {
		/* UDP: src is a datagram's source (the peer), dst the receiving socket's end; an
		 * all-zero source finds only sockets that are not connected. */
		memcpy(req.body.id.idiag_src, k->remote, len);
		req.body.id.idiag_sport = k->remote_port;
		memcpy(req.body.id.idiag_dst, k->local, len);
		req.body.id.idiag_dport = k->local_port;
	}
	for (;;) {
		if (send(a->diag, &req, sizeof req, 0) >= 0)
			break;
		if (errno != EINTR) {
			err = -errno;
			diag_reset(a);
			return err;
		}
	}
	err = diag_read(a, k, dump, c);
	if (err < 0)
		diag_reset(a);
	return err;
}

static int find_candidates(struct attribution *a, const struct flow_key *k, struct candidates *c)
{
	int err;

	if (a->diag < 0 && (err = diag_open(a)) < 0)
		return err;
	if (k->has_remote || k->proto == IPPROTO_UDP) {
		err = diag_query(a, k, k->family, false, c);
		if (err < 0 || k->has_remote || c->n)
			return err;
	}
	if ((err = diag_query(a, k, k->family, true, c)) < 0)
		return err;
	if (k->family == AF_INET)
		err = diag_query(a, k, AF_INET6, true, c);
	return err;
}

/* ---- step 2: the session process holding one of the candidates ---- */

/* 1 when the PID namespace behind ns_fd (taken) is the session's or nested below it, else 0. */
static int nested_in_session(const struct attribution *a, int ns_fd)
{
	for (int depth = 0; depth < NS_MAX_DEPTH; depth++) {
		int parent = ioctl(ns_fd, NS_GET_PARENT);
		struct ns_id id = {0};

		close(ns_fd);
		if (parent < 0) /* EPERM: above sluice's own namespace */
			return 0;
		if (ns_id_of_fd(parent, &id) < 0) {
			close(parent);
			return 0;
		}
		if (ns_equal(&id, &a->session_pidns)) {
			close(parent);
			return 1;
		}
		if (ns_equal(&id, &a->own_pidns)) {
			close(parent);
			return 0;
		}
		ns_fd = parent;
	}
	close(ns_fd);
	return 0;
}

/* 1 when pid is a session process, 0 when not, -ESRCH when it is gone. */
static int in_session(struct attribution *a, int pid)
{
	char path[64];
	struct ns_id id = {0}, opened = {0};
	struct ns_verdict *v;
	int fd;

	snprintf(path, sizeof path, "/proc/%d/ns/pid", pid);
	if (ns_id_of(path, &id) < 0)
		return -ESRCH;
	if (ns_equal(&id, &a->session_pidns))
		return 1;
	if (ns_equal(&id, &a->own_pidns))
		return 0;
	for (size_t i = 0; i < NS_VERDICTS; i++)
		if (a->verdicts[i].fd >= 0 && ns_equal(&a->verdicts[i].ns, &id))
			return a->verdicts[i].in_session;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -ESRCH;
	if (ns_id_of_fd(fd, &opened) < 0 || !ns_equal(&opened, &id)) {
		close(fd); /* the pid was reused meanwhile */
		return -ESRCH;
	}
	v = &a->verdicts[a->next_verdict++ % NS_VERDICTS];
	if (v->fd >= 0)
		close(v->fd);
	v->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	v->ns = id;
	v->in_session = nested_in_session(a, fd) == 1;
	return v->in_session;
}

/* The inode in a descriptor's link text "socket:[12345]", or 0. */
static uint64_t socket_inode(const char *link, size_t len)
{
	uint64_t inode = 0;

	if (len < 10 || memcmp(link, "socket:[", 8) != 0 || link[len - 1] != ']')
		return 0;
	for (size_t i = 8; i < len - 1; i++) {
		if (link[i] < '0' || link[i] > '9' || inode > (UINT64_MAX - 9) / 10)
			return 0;
		inode = inode * 10 + (uint64_t)(link[i] - '0');
	}
	return inode;
}

/* A decimal /proc entry name (a pid, a descriptor number) as a number, or -1. */
static int parse_number(const char *name)
{
	int value = 0;

	if (!*name)
		return -1;
	for (; *name; name++) {
		if (*name < '0' || *name > '9' || value > (INT_MAX - 9) / 10)
			return -1;
		value = value * 10 + (*name - '0');
	}
	return value;
}

static size_t seen_slot(uint64_t inode)
{
	return (size_t)((inode * 0x9e3779b97f4a7c15u) >> 50) & (SEEN_SOCKETS - 1);
}

static void seen_add(struct attribution *a, uint64_t inode, int pid)
{
	size_t i = seen_slot(inode);

	if (a->n_seen >= SEEN_SOCKETS / 4 * 3) {
		memset(a->seen, 0, SEEN_SOCKETS * sizeof *a->seen);
		a->n_seen = 0;
	}
	while (a->seen[i].inode && a->seen[i].inode != inode)
		i = (i + 1) & (SEEN_SOCKETS - 1);
	if (!a->seen[i].inode)
		a->n_seen++;
	a->seen[i] = (struct seen_socket){ inode, pid };
}

/* The pid a scan saw holding inode, 0 when none. */
static int seen_pid(const struct attribution *a, uint64_t inode)
{
	for (size_t i = seen_slot(inode); a->seen[i].inode; i = (i + 1) & (SEEN_SOCKETS - 1))
		if (a->seen[i].inode == inode)
			return a->seen[i].pid;
	return 0;
}

/* Whether pid holds a descriptor to one of the candidates, newest descriptors first; every
 * socket read on the way is remembered (seen_add), the whole table of descriptors read even
 * after a match while the budget lasts. Returns 1 or 0; -ESRCH when the process is gone. Uses
 * up *budget (descriptors examined). */
static int holds_candidate(struct attribution *a, int pid, const struct candidates *c,
			   size_t *budget)
{
	char path[64], link[64];
	struct dirent *e;
	size_t n = 0;
	int dfd, found = 0;
	DIR *dir;

	snprintf(path, sizeof path, "/proc/%d/fd", pid);
	dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return errno == ENOENT || errno == ESRCH ? -ESRCH : 0;
	dir = fdopendir(dfd);
	if (!dir) {
		close(dfd);
		return 0;
	}
	while (n < ATTRIBUTION_MAX_FDS && (e = readdir(dir)) != NULL) {
		int fd = parse_number(e->d_name);

		if (fd >= 0)
			a->fds[n++] = fd;
	}
	while (n > 0 && *budget > 0) {
		char name[16];
		ssize_t len;
		uint64_t inode;

		snprintf(name, sizeof name, "%d", a->fds[--n]);
		(*budget)--;
		len = readlinkat(dfd, name, link, sizeof link);
		if (len <= 0 || (size_t)len >= sizeof link)
			continue;
		inode = socket_inode(link, (size_t)len);
		if (!inode)
			continue;
		seen_add(a, inode, pid);
		for (size_t i = 0; i < c->n; i++)
			if (c->inode[i] == inode)
				found = 1;
	}
	closedir(dir);
	return found;
}

static void cache_remove(struct attribution *a, size_t i)
{
	memmove(&a->pids[i], &a->pids[i + 1], (a->n_pids - i - 1) * sizeof a->pids[0]);
	a->n_pids--;
}

static void cache_to_front(struct attribution *a, size_t i, int pid)
{
	if (i == a->n_pids) {
		if (a->n_pids < ATTRIBUTION_MAX_CACHED_PIDS)
			a->n_pids++;
		i = a->n_pids - 1;
	}
	memmove(&a->pids[1], &a->pids[0], i * sizeof a->pids[0]);
	a->pids[0] = pid;
}

static bool cache_has(const struct attribution *a, int pid)
{
	for (size_t i = 0; i < a->n_pids; i++)
		if (a->pids[i] == pid)
			return true;
	return false;
}

/* The session processes seen before, most recently matched first. */
static int search_cached(struct attribution *a, const struct candidates *c, size_t *budget)
{
	size_t i = 0;

	while (i < a->n_pids && *budget > 0) {
		int pid = a->pids[i];
		int r = in_session(a, pid);

		if (r == 1)
			r = holds_candidate(a, pid, c, budget);
		else if (r == 0)
			r = -ESRCH; /* the pid now names a process outside the session */
		if (r < 0) {
			cache_remove(a, i);
			continue;
		}
		if (r == 1) {
			cache_to_front(a, i, pid);
			return pid;
		}
		i++;
	}
	return 0;
}

/* Every other process in /proc, newest pid first; the session processes met are remembered. */
static int search_all(struct attribution *a, const struct candidates *c, size_t *budget)
{
	struct dirent *e;
	size_t n = 0;
	DIR *dir = opendir("/proc");

	if (!dir)
		return 0;
	while (n < ATTRIBUTION_MAX_PROC_ENTRIES && (e = readdir(dir)) != NULL) {
		int pid = parse_number(e->d_name);

		if (pid > 0)
			a->proc_pids[n++] = pid;
	}
	closedir(dir);
	while (n > 0 && *budget > 0) {
		int pid = a->proc_pids[--n];

		if (in_session(a, pid) != 1 || cache_has(a, pid))
			continue;
		cache_to_front(a, a->n_pids, pid);
		if (holds_candidate(a, pid, c, budget) == 1)
			return pid;
	}
	return 0;
}

/* ---- the lookup ---- */

static int flow_key_of(const struct attribution_flow *flow, struct flow_key *k)
{
	struct addr local, remote;

	if (flow->proto != ATTRIBUTION_TCP && flow->proto != ATTRIBUTION_UDP)
		return -EINVAL;
	if (flow->local.family != ADDR_V4 && flow->local.family != ADDR_V6)
		return -EINVAL;
	if (flow->local_port == 0)
		return -EINVAL;
	memset(k, 0, sizeof *k);
	addr_unmap_v4(&flow->local, &local);
	k->proto = flow->proto == ATTRIBUTION_TCP ? IPPROTO_TCP : IPPROTO_UDP;
	k->family = local.family == ADDR_V4 ? AF_INET : AF_INET6;
	memcpy(k->local, local.bytes, addr_len(&local));
	k->local_port = htons(flow->local_port);
	if (flow->remote.family == ADDR_NONE)
		return 0;
	addr_unmap_v4(&flow->remote, &remote);
	if (remote.family != local.family)
		return -EINVAL;
	k->has_remote = true;
	memcpy(k->remote, remote.bytes, addr_len(&remote));
	k->remote_port = htons(flow->remote_port);
	return 0;
}

static void read_exe(int pid, char *exe, size_t exe_len)
{
	char path[64];
	ssize_t n;

	if (exe_len == 0)
		return;
	snprintf(path, sizeof path, "/proc/%d/exe", pid);
	n = readlink(path, exe, exe_len);
	if (n < 0 || (size_t)n >= exe_len)
		n = 0;
	exe[n] = '\0';
}

int64_t attribution_lookup(struct attribution *a, const struct attribution_flow *flow, char *exe,
			   size_t exe_len)
{
	struct candidates c = { .n = 0 };
	struct flow_key k;
	size_t budget = ATTRIBUTION_MAX_FD_CHECKS;
	int err, pid;

	if (!exe && exe_len)
		return -EINVAL;
	if (exe_len)
		exe[0] = '\0';
	if (!a || !flow)
		return -EINVAL;
	if ((err = flow_key_of(flow, &k)) < 0)
		return err;
	if ((err = find_candidates(a, &k, &c)) < 0)
		return err;
	if (c.n == 0)
		return 0;
	pid = 0;
	for (size_t i = 0; i < c.n && !pid; i++) {
		pid = seen_pid(a, c.inode[i]);
		if (pid && in_session(a, pid) != 1)
			pid = 0;
	}
	if (pid == 0)
		pid = search_cached(a, &c, &budget);
	if (pid == 0)
		pid = search_all(a, &c, &budget);
	if (pid > 0)
		read_exe(pid, exe, exe_len);
	return pid;
}
