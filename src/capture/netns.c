/* netns.c — the netns capture backend: a private network namespace feeding sluice's listeners.
 *
 * capture.h describes the routes, the nftables rules and how UDP replies get their source;
 * notes/linux-interception.md (A, B and the TPROXY extra) has the measurements behind them.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include <linux/netfilter_ipv4.h>

#include "base/log.h"
#include "capture/capture.h"
#include "capture/session_net.h"

/* From <linux/netfilter_ipv6/ip6_tables.h>, whose x_tables structures do not pass -Wpedantic. */
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

/* Reply sockets kept open at once (one per original destination recently answered for). */
#define NETNS_REPLY_SOCKETS 64

struct reply_socket {
	struct capture_endpoint from;
	int fd; /* -1: slot empty */
	uint64_t last_use;
};

struct netns_capture {
	struct capture base;
	struct session_net net;
	uint64_t use_clock;
	struct reply_socket replies[NETNS_REPLY_SOCKETS];
};

static struct netns_capture *netns_of(struct capture *cap)
{
	return (struct netns_capture *)cap;
}

/* ---- nftables ---- */

/* Writes the ruleset (see capture.h) for the listeners' actual ports. tproxy is not a
 * terminal statement: each one is followed by accept, or a later rule would override its
 * target. Returns 0 or -ENOSPC. */
static int generate_ruleset(const struct netns_capture *c, char *buf, size_t size)
{
	static const char *const nfproto[CAPTURE_FAMILIES] = { "ipv4", "ipv6" };
	static const char *const tproxy_to[CAPTURE_FAMILIES] = {
		"ip to 127.0.0.1",
		"ip6 to [::1]",
	};
	const struct capture_listener(*l)[CAPTURE_FAMILIES] = c->base.listeners;
	int families = c->net.have_ipv6 ? CAPTURE_FAMILIES : 1;
	struct ruleset_text t = { .buf = buf, .size = size };

	/* DNS is captured whatever the resolver's address, loopback included (a resolver on
	 * 127.0.0.53 is then asked from sluice's own namespace); other loopback traffic stays
	 * inside the session untouched. */
	ruleset_add(&t, "table inet sluice {\n"
		     "\tchain output {\n"
		     "\t\ttype nat hook output priority -100; policy accept;\n");
	for (int f = 0; f < families; f++)
		ruleset_add(&t, "\t\tmeta nfproto %s tcp dport 53 redirect to :%u\n", nfproto[f],
			 (unsigned)l[CAPTURE_DNS_TCP][f].port);
	ruleset_add(&t, "\t\tip daddr 127.0.0.0/8 return\n"
		     "\t\tip6 daddr ::1 return\n");
	for (int f = 0; f < families; f++)
		ruleset_add(&t, "\t\tmeta nfproto %s meta l4proto tcp redirect to :%u\n", nfproto[f],
			 (unsigned)l[CAPTURE_TCP][f].port);
	ruleset_add(&t, "\t}\n"
		     "\tchain prerouting {\n"
		     "\t\ttype filter hook prerouting priority mangle; policy accept;\n");
	for (int f = 0; f < families; f++)
		ruleset_add(&t, "\t\tmeta nfproto %s udp dport 53 tproxy %s:%u accept\n", nfproto[f],
			 tproxy_to[f], (unsigned)l[CAPTURE_DNS_UDP][f].port);
	ruleset_add(&t, "\t\tip daddr 127.0.0.0/8 return\n"
		     "\t\tip6 daddr ::1 return\n");
	for (int f = 0; f < families; f++)
		ruleset_add(&t, "\t\tmeta nfproto %s meta l4proto udp tproxy %s:%u accept\n",
			 nfproto[f], tproxy_to[f], (unsigned)l[CAPTURE_UDP][f].port);
	ruleset_add(&t, "\t}\n}\n");
	return t.overflow ? -ENOSPC : 0;
}

/* ---- the ops ---- */

static void netns_close(struct capture *cap)
{
	struct netns_capture *c = netns_of(cap);

	if (!c)
		return;
	session_net_close_listeners(&c->base);
	for (size_t i = 0; i < NETNS_REPLY_SOCKETS; i++)
		if (c->replies[i].fd >= 0)
			close(c->replies[i].fd);
	session_net_close(&c->net);
	free(c);
}

/* Everything done inside the new namespace; the caller leaves it afterwards. */
static int setup_inside(struct netns_capture *c, const struct capture_config *cfg)
{
	char ruleset[SESSION_NET_RULESET_MAX];
	int err;

	err = session_net_make_listeners(&c->base, &c->net, cfg, true);
	if (err)
		return err;
	err = generate_ruleset(c, ruleset, sizeof ruleset);
	if (err) {
		log_errno(err, "session network: ruleset text");
		return err;
	}
	return session_net_load_ruleset(ruleset, true);
}

static int netns_open(struct capture **out, const struct capture_config *cfg)
{
	static const struct capture_config defaults;
	struct netns_capture *c;
	int err;

	if (!cfg)
		cfg = &defaults;
	c = calloc(1, sizeof *c);
	if (!c)
		return -ENOMEM;
	capture_init(&c->base, &capture_netns);
	session_net_init(&c->net);
	for (size_t i = 0; i < NETNS_REPLY_SOCKETS; i++)
		c->replies[i].fd = -1;

	err = session_net_open(&c->net, cfg->lo_mtu);
	if (err)
		goto fail;
	err = setup_inside(c, cfg);
	session_net_leave(&c->net);
	if (err)
		goto fail;
	*out = &c->base;
	return 0;
fail:
	netns_close(&c->base);
	return err;
}

static int netns_tcp_original_dst(struct capture *cap, loop_sock accepted,
				  struct capture_endpoint *dst)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	int fd = (int)accepted;
	int err;

	(void)cap;
	struct capture_endpoint local;

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	err = capture_endpoint_from_sockaddr((struct sockaddr *)&ss, len, &local);
	if (err)
		return err;
	len = sizeof ss;
	if (ss.ss_family == AF_INET) {
		if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &ss, &len) < 0)
			return -errno;
	} else if (ss.ss_family == AF_INET6) {
		if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &ss, &len) < 0)
			return -errno;
	} else {
		return -EAFNOSUPPORT;
	}
	err = capture_endpoint_from_sockaddr((struct sockaddr *)&ss, len, dst);
	if (err)
		return err;
	/* A connection made straight to the listener is tracked but not NATed: its "original"
	 * destination is the listener itself. */
	return capture_endpoint_equal(dst, &local) ? -ENOENT : 0;
}

static int netns_udp_recv(struct capture *cap, loop_sock listener, void *buf, size_t size,
			  struct capture_endpoint *src, struct capture_endpoint *orig_dst)
{
	union {
		char buf[CMSG_SPACE(sizeof(struct sockaddr_in6)) * 2];
		struct cmsghdr align;
	} control;
	struct sockaddr_storage from;
	struct iovec iov = { .iov_base = buf, .iov_len = size };
	struct msghdr msg = {
		.msg_name = &from,
		.msg_namelen = sizeof from,
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control.buf,
		.msg_controllen = sizeof control.buf,
	};
	bool found = false;
	ssize_t n;

	(void)cap;
	n = recvmsg((int)listener, &msg, MSG_DONTWAIT);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	if (msg.msg_flags & MSG_TRUNC)
		return -EMSGSIZE;
	if (capture_endpoint_from_sockaddr((struct sockaddr *)&from, msg.msg_namelen, src) < 0)
		return -EPROTO;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
		struct sockaddr_storage od;
		size_t len = cm->cmsg_len - CMSG_LEN(0);

		if (!((cm->cmsg_level == SOL_IP && cm->cmsg_type == IP_ORIGDSTADDR) ||
		      (cm->cmsg_level == SOL_IPV6 && cm->cmsg_type == IPV6_ORIGDSTADDR)))
			continue;
		if (len > sizeof od)
			continue;
		memcpy(&od, CMSG_DATA(cm), len);
		if (capture_endpoint_from_sockaddr((struct sockaddr *)&od, (socklen_t)len, orig_dst) == 0)
			found = true;
	}
	/* A datagram sent straight to the listener was not captured: its original destination
	 * is the listener's own address. */
	struct sockaddr_storage own;
	socklen_t own_len = sizeof own;
	struct capture_endpoint self;
	if (!found)
		return -ENOENT;
	if (getsockname((int)listener, (struct sockaddr *)&own, &own_len) == 0 &&
	    capture_endpoint_from_sockaddr((struct sockaddr *)&own, own_len, &self) == 0 &&
	    capture_endpoint_equal(orig_dst, &self))
		return -ENOENT;
	return (int)n;
}


/* Creates a reply socket bound to `from` inside the session namespace. */
static int make_reply_socket(struct netns_capture *c, const struct capture_endpoint *from)
{
	int af = from->addr.family == ADDR_V4 ? AF_INET : AF_INET6;
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, err;

	err = session_net_enter(&c->net);
	if (err)
		return err;
	fd = socket(af, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	session_net_leave(&c->net);
	if (fd < 0)
		return -errno;
	if (af == AF_INET6 && (err = session_net_set_int(fd, SOL_IPV6, IPV6_V6ONLY, 1)))
		goto fail;
	err = session_net_set_transparent(fd, af);
	if (!err)
		err = session_net_set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
	if (err)
		goto fail;
	capture_endpoint_to_sockaddr(from, &ss, &len);
	if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
		err = -errno;
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return err;
}

/* The cached reply socket for `from`, made (evicting the least recently used) if needed. */
static int reply_socket(struct netns_capture *c, const struct capture_endpoint *from)
{
	struct reply_socket *victim = &c->replies[0];
	int fd;

	for (size_t i = 0; i < NETNS_REPLY_SOCKETS; i++) {
		struct reply_socket *r = &c->replies[i];

		if (r->fd >= 0 && capture_endpoint_equal(&r->from, from)) {
			r->last_use = ++c->use_clock;
			return r->fd;
		}
		if (victim->fd >= 0 && (r->fd < 0 || r->last_use < victim->last_use))
			victim = r;
	}
	fd = make_reply_socket(c, from);
	if (fd < 0)
		return fd;
	if (victim->fd >= 0)
		close(victim->fd);
	victim->from = *from;
	victim->fd = fd;
	victim->last_use = ++c->use_clock;
	return fd;
}

static int netns_udp_send(struct capture *cap, const struct capture_endpoint *from,
			  const struct capture_endpoint *to, const void *buf, size_t len)
{
	struct netns_capture *c = netns_of(cap);
	struct sockaddr_storage ss;
	socklen_t sslen;
	int fd;

	if (from->addr.family != to->addr.family ||
	    (from->addr.family != ADDR_V4 && from->addr.family != ADDR_V6))
		return -EAFNOSUPPORT;
	if (from->addr.family == ADDR_V6 && !c->net.have_ipv6)
		return -EAFNOSUPPORT;
	fd = reply_socket(c, from);
	if (fd < 0)
		return fd;
	capture_endpoint_to_sockaddr(to, &ss, &sslen);
	if (sendto(fd, buf, len, MSG_DONTWAIT, (struct sockaddr *)&ss, sslen) < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return 0;
}

static int netns_app_endpoint(struct capture *cap, int proto, const struct capture_endpoint *seen,
			      struct capture_endpoint *app)
{
	(void)cap;
	(void)proto;
	*app = *seen;
	return 0;
}

static int netns_join(struct capture *cap)
{
	return session_net_enter(&netns_of(cap)->net);
}

const struct capture_ops capture_netns = {
	.name = "netns",
	.open = netns_open,
	.tcp_original_dst = netns_tcp_original_dst,
	.udp_recv = netns_udp_recv,
	.udp_send = netns_udp_send,
	.app_endpoint = netns_app_endpoint,
	.join = netns_join,
	.close = netns_close,
};
