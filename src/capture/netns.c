/* netns.c — the netns capture backend: a private network namespace feeding sluice's listeners.
 *
 * capture.h describes the routes, the nftables rules and how UDP replies get their source;
 * notes/linux-interception.md (A, B and the TPROXY extra) has the measurements behind them.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <linux/netfilter_ipv4.h>
#include <linux/rtnetlink.h>

#include <libmnl/libmnl.h>
#include <nftables/libnftables.h>

#include "base/log.h"
#include "capture/capture.h"

/* From <linux/netfilter_ipv6/ip6_tables.h>, whose x_tables structures do not pass -Wpedantic. */
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

/* Reply sockets kept open at once (one per original destination recently answered for). */
#define NETNS_REPLY_SOCKETS 64

/* An rtnetlink request or acknowledgement (libmnl's MNL_SOCKET_BUFFER_SIZE is not a constant). */
#define RTNL_BUFFER_SIZE 8192

/* Longest nftables ruleset text generate_ruleset writes. */
#define NETNS_RULESET_MAX 4096

struct reply_socket {
	struct capture_endpoint from;
	int fd; /* -1: slot empty */
	uint64_t last_use;
};

struct netns_capture {
	struct capture base;
	int host_ns;    /* the namespace sluice lives in, to come back to */
	int session_ns; /* the session's namespace; this fd keeps it alive */
	bool have_ipv6;
	uint64_t use_clock;
	struct reply_socket replies[NETNS_REPLY_SOCKETS];
};

static struct netns_capture *netns_of(struct capture *cap)
{
	return (struct netns_capture *)cap;
}

static int netns_enter(struct netns_capture *c)
{
	if (setns(c->session_ns, CLONE_NEWNET) < 0)
		return -errno;
	return 0;
}

/* Staying in the session namespace would make every later upstream dial loop back into the
 * session: that is a broken invariant, not an error to report. */
static void netns_leave(struct netns_capture *c)
{
	if (setns(c->host_ns, CLONE_NEWNET) < 0)
		fatal_errno(errno, "cannot return to sluice's own network namespace");
}

static int open_own_netns(void)
{
	int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* ---- rtnetlink: lo up, default routes ---- */

/* Sends one request and reads its acknowledgement. Returns 0 or the kernel's -errno. */
static int rtnl_talk(struct mnl_socket *nl, struct nlmsghdr *nlh, unsigned *seq)
{
	char buf[RTNL_BUFFER_SIZE];
	ssize_t n;

	nlh->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	nlh->nlmsg_seq = ++*seq;
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	n = mnl_socket_recvfrom(nl, buf, sizeof buf);
	if (n < 0)
		return -errno;
	if (mnl_cb_run(buf, (size_t)n, *seq, mnl_socket_get_portid(nl), NULL, NULL) < 0)
		return -errno;
	return 0;
}

static int link_up(struct mnl_socket *nl, unsigned *seq, unsigned ifindex, unsigned mtu)
{
	char buf[RTNL_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifinfomsg *ifm;

	nlh->nlmsg_type = RTM_NEWLINK;
	ifm = mnl_nlmsg_put_extra_header(nlh, sizeof *ifm);
	ifm->ifi_family = AF_UNSPEC;
	ifm->ifi_index = (int)ifindex;
	ifm->ifi_flags = IFF_UP;
	ifm->ifi_change = IFF_UP;
	if (mtu)
		mnl_attr_put_u32(nlh, IFLA_MTU, mtu);
	return rtnl_talk(nl, nlh, seq);
}

/* IPv4: `default dev lo src 127.0.0.1`. Without `src` the source becomes 0.0.0.0 and replies
 * miss the conntrack entry (notes/linux-interception.md, A, pitfall 2). */
static int route_v4(struct mnl_socket *nl, unsigned *seq, unsigned ifindex)
{
	char buf[RTNL_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct rtmsg *rtm;
	struct in_addr src = { .s_addr = htonl(INADDR_LOOPBACK) };

	nlh->nlmsg_type = RTM_NEWROUTE;
	nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
	rtm = mnl_nlmsg_put_extra_header(nlh, sizeof *rtm);
	rtm->rtm_family = AF_INET;
	rtm->rtm_table = RT_TABLE_MAIN;
	rtm->rtm_protocol = RTPROT_BOOT;
	rtm->rtm_scope = RT_SCOPE_LINK;
	rtm->rtm_type = RTN_UNICAST;
	mnl_attr_put_u32(nlh, RTA_OIF, ifindex);
	mnl_attr_put(nlh, RTA_PREFSRC, sizeof src, &src);
	return rtnl_talk(nl, nlh, seq);
}

/* IPv6: `local default dev lo table local`. A plain `default dev lo` is enough for the nat
 * redirect, but an IPv6 datagram looped back on such a route is handed to ip6_forward and
 * dropped, so tproxy never sees it; a local route makes it delivered like IPv4's. */
static int route_v6(struct mnl_socket *nl, unsigned *seq, unsigned ifindex)
{
	char buf[RTNL_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct rtmsg *rtm;

	nlh->nlmsg_type = RTM_NEWROUTE;
	nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
	rtm = mnl_nlmsg_put_extra_header(nlh, sizeof *rtm);
	rtm->rtm_family = AF_INET6;
	rtm->rtm_table = RT_TABLE_LOCAL;
	rtm->rtm_protocol = RTPROT_BOOT;
	rtm->rtm_scope = RT_SCOPE_HOST;
	rtm->rtm_type = RTN_LOCAL;
	mnl_attr_put_u32(nlh, RTA_OIF, ifindex);
	return rtnl_talk(nl, nlh, seq);
}

/* Configures lo and the routes of the namespace the caller is in. */
static int setup_network(const struct capture_config *cfg, bool have_ipv6)
{
	struct mnl_socket *nl = NULL;
	unsigned seq = 0;
	unsigned lo;
	int err;

	lo = if_nametoindex("lo");
	if (lo == 0) {
		err = -errno;
		log_errno(err, "session network: no lo interface");
		return err;
	}
	nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
	if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		err = -errno;
		log_errno(err, "session network: rtnetlink socket");
		goto out;
	}
	err = link_up(nl, &seq, lo, cfg->lo_mtu);
	if (err) {
		log_errno(err, "session network: bringing lo up (mtu %u)", cfg->lo_mtu);
		goto out;
	}
	err = route_v4(nl, &seq, lo);
	if (err) {
		log_errno(err, "session network: route 'default dev lo src 127.0.0.1'");
		goto out;
	}
	if (have_ipv6) {
		err = route_v6(nl, &seq, lo);
		if (err) {
			log_errno(err, "session network: route 'local default dev lo table local'");
			goto out;
		}
	}
out:
	if (nl)
		mnl_socket_close(nl);
	return err;
}

/* ---- listeners ---- */

static void endpoint_to_sockaddr(const struct capture_endpoint *ep, struct sockaddr_storage *ss,
				 socklen_t *len)
{
	memset(ss, 0, sizeof *ss);
	if (ep->addr.family == ADDR_V4) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(ep->port);
		memcpy(&sin->sin_addr, ep->addr.bytes, 4);
		*len = sizeof *sin;
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(ep->port);
		memcpy(&sin6->sin6_addr, ep->addr.bytes, 16);
		*len = sizeof *sin6;
	}
}

static int sockaddr_to_endpoint(const struct sockaddr *sa, socklen_t len,
				struct capture_endpoint *ep)
{
	if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		addr_from_bytes(&ep->addr, ADDR_V4, (const uint8_t *)&sin->sin_addr);
		ep->port = ntohs(sin->sin_port);
		return 0;
	}
	if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		addr_from_bytes(&ep->addr, ADDR_V6, (const uint8_t *)&sin6->sin6_addr);
		ep->port = ntohs(sin6->sin6_port);
		return 0;
	}
	return -EAFNOSUPPORT;
}

static int set_int_option(int fd, int level, int name, int value)
{
	if (setsockopt(fd, level, name, &value, sizeof value) < 0)
		return -errno;
	return 0;
}

/* Lets a UDP socket bind a non-local address (reply sockets) and receive tproxy'd datagrams
 * (listeners). */
static int set_transparent(int fd, int family)
{
	if (family == AF_INET)
		return set_int_option(fd, SOL_IP, IP_TRANSPARENT, 1);
	return set_int_option(fd, SOL_IPV6, IPV6_TRANSPARENT, 1);
}

static bool endpoint_equal(const struct capture_endpoint *a, const struct capture_endpoint *b)
{
	return a->port == b->port && addr_equal(&a->addr, &b->addr);
}

/* Binds ep, or the same address with any free port when ep's port is taken. */
static int bind_preferred(int fd, struct capture_endpoint *ep)
{
	struct sockaddr_storage ss;
	socklen_t len;

	endpoint_to_sockaddr(ep, &ss, &len);
	if (bind(fd, (struct sockaddr *)&ss, len) == 0)
		return 0;
	if (errno != EADDRINUSE)
		return -errno;
	ep->port = 0;
	endpoint_to_sockaddr(ep, &ss, &len);
	if (bind(fd, (struct sockaddr *)&ss, len) < 0)
		return -errno;
	return 0;
}

/* Creates one listener of `kind` on the loopback address of `family`, in the namespace the
 * caller is in. */
static int make_listener(enum capture_kind kind, enum capture_family family, uint16_t port,
			 struct capture_listener *out)
{
	bool tcp = kind == CAPTURE_TCP || kind == CAPTURE_DNS_TCP;
	int af = family == CAPTURE_IPV4 ? AF_INET : AF_INET6;
	struct capture_endpoint ep = { .port = port };
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	int fd, err;

	if (family == CAPTURE_IPV4) {
		const uint8_t lo4[4] = { 127, 0, 0, 1 };

		addr_from_bytes(&ep.addr, ADDR_V4, lo4);
	} else {
		const uint8_t lo6[16] = { [15] = 1 };

		addr_from_bytes(&ep.addr, ADDR_V6, lo6);
	}
	fd = socket(af, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (af == AF_INET6 && (err = set_int_option(fd, SOL_IPV6, IPV6_V6ONLY, 1)))
		goto fail;
	if (tcp && (err = set_int_option(fd, SOL_SOCKET, SO_REUSEADDR, 1)))
		goto fail;
	if (!tcp) {
		err = set_transparent(fd, af);
		if (!err && af == AF_INET)
			err = set_int_option(fd, SOL_IP, IP_RECVORIGDSTADDR, 1);
		if (!err && af == AF_INET6)
			err = set_int_option(fd, SOL_IPV6, IPV6_RECVORIGDSTADDR, 1);
		if (err)
			goto fail;
	}
	err = bind_preferred(fd, &ep);
	if (err)
		goto fail;
	if (tcp && listen(fd, SOMAXCONN) < 0) {
		err = -errno;
		goto fail;
	}
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
	    sockaddr_to_endpoint((struct sockaddr *)&ss, len, &ep) < 0) {
		err = -EPROTO;
		goto fail;
	}
	out->sock = fd;
	out->port = ep.port;
	return 0;
fail:
	close(fd);
	return err;
}

static const char *const kind_names[CAPTURE_KINDS] = {
	[CAPTURE_TCP] = "TCP",
	[CAPTURE_DNS_TCP] = "DNS TCP",
	[CAPTURE_DNS_UDP] = "DNS UDP",
	[CAPTURE_UDP] = "UDP",
};

static int make_listeners(struct netns_capture *c, const struct capture_config *cfg)
{
	const uint16_t ports[CAPTURE_KINDS] = {
		[CAPTURE_TCP] = cfg->tcp_port ? cfg->tcp_port : CAPTURE_TCP_PORT,
		[CAPTURE_DNS_TCP] = cfg->dns_port ? cfg->dns_port : CAPTURE_DNS_PORT,
		[CAPTURE_DNS_UDP] = cfg->dns_port ? cfg->dns_port : CAPTURE_DNS_PORT,
		[CAPTURE_UDP] = cfg->udp_port ? cfg->udp_port : CAPTURE_UDP_PORT,
	};
	int families = c->have_ipv6 ? CAPTURE_FAMILIES : 1;

	for (int kind = 0; kind < CAPTURE_KINDS; kind++) {
		for (int family = 0; family < families; family++) {
			struct capture_listener *l = &c->base.listeners[kind][family];
			int err = make_listener(kind, family, ports[kind], l);

			if (err) {
				log_errno(err, "session network: %s listener on %s port %u",
					  kind_names[kind],
					  family == CAPTURE_IPV4 ? "127.0.0.1" : "::1",
					  (unsigned)ports[kind]);
				return err;
			}
		}
	}
	return 0;
}

/* ---- nftables ---- */

/* Bounded text building for the ruleset: a write past `size` marks the text as overflowed. */
struct text {
	char *buf;
	size_t size, len;
	bool overflow;
};

LOG_PRINTF(2, 3) static void text_add(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->overflow)
		return;
	va_start(ap, fmt);
	n = vsnprintf(t->buf + t->len, t->size - t->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= t->size - t->len)
		t->overflow = true;
	else
		t->len += (size_t)n;
}

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
	int families = c->have_ipv6 ? CAPTURE_FAMILIES : 1;
	struct text t = { .buf = buf, .size = size };

	/* DNS is captured whatever the resolver's address, loopback included (a resolver on
	 * 127.0.0.53 is then asked from sluice's own namespace); other loopback traffic stays
	 * inside the session untouched. */
	text_add(&t, "table inet sluice {\n"
		     "\tchain output {\n"
		     "\t\ttype nat hook output priority -100; policy accept;\n");
	for (int f = 0; f < families; f++)
		text_add(&t, "\t\tmeta nfproto %s tcp dport 53 redirect to :%u\n", nfproto[f],
			 (unsigned)l[CAPTURE_DNS_TCP][f].port);
	text_add(&t, "\t\tip daddr 127.0.0.0/8 return\n"
		     "\t\tip6 daddr ::1 return\n");
	for (int f = 0; f < families; f++)
		text_add(&t, "\t\tmeta nfproto %s meta l4proto tcp redirect to :%u\n", nfproto[f],
			 (unsigned)l[CAPTURE_TCP][f].port);
	text_add(&t, "\t}\n"
		     "\tchain prerouting {\n"
		     "\t\ttype filter hook prerouting priority mangle; policy accept;\n");
	for (int f = 0; f < families; f++)
		text_add(&t, "\t\tmeta nfproto %s udp dport 53 tproxy %s:%u accept\n", nfproto[f],
			 tproxy_to[f], (unsigned)l[CAPTURE_DNS_UDP][f].port);
	text_add(&t, "\t\tip daddr 127.0.0.0/8 return\n"
		     "\t\tip6 daddr ::1 return\n");
	for (int f = 0; f < families; f++)
		text_add(&t, "\t\tmeta nfproto %s meta l4proto udp tproxy %s:%u accept\n",
			 nfproto[f], tproxy_to[f], (unsigned)l[CAPTURE_UDP][f].port);
	text_add(&t, "\t}\n}\n");
	return t.overflow ? -ENOSPC : 0;
}

/* Loads the ruleset into the namespace the caller is in. */
static int load_ruleset(const char *text)
{
	struct nft_ctx *nft = nft_ctx_new(NFT_CTX_DEFAULT);
	int err = 0;

	if (!nft) {
		log_error("session network: cannot create an nftables context");
		return -ENOMEM;
	}
	nft_ctx_buffer_output(nft);
	nft_ctx_buffer_error(nft);
	if (nft_run_cmd_from_buffer(nft, text) != 0) {
		const char *msg = nft_ctx_get_error_buffer(nft);
		size_t len = msg ? strcspn(msg, "\n") : 0;

		log_error("session network: loading the nftables ruleset failed: %.*s", (int)len,
			  msg ? msg : "");
		err = -EINVAL;
	}
	nft_ctx_free(nft);
	return err;
}

/* ---- the ops ---- */

static void netns_close(struct capture *cap)
{
	struct netns_capture *c = netns_of(cap);

	if (!c)
		return;
	for (int kind = 0; kind < CAPTURE_KINDS; kind++)
		for (int family = 0; family < CAPTURE_FAMILIES; family++)
			if (c->base.listeners[kind][family].sock != CAPTURE_NO_SOCK)
				close((int)c->base.listeners[kind][family].sock);
	for (size_t i = 0; i < NETNS_REPLY_SOCKETS; i++)
		if (c->replies[i].fd >= 0)
			close(c->replies[i].fd);
	if (c->session_ns >= 0)
		close(c->session_ns);
	if (c->host_ns >= 0)
		close(c->host_ns);
	free(c);
}

static bool ipv6_available(void)
{
	int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

/* Everything done inside the new namespace; the caller leaves it afterwards. */
static int setup_inside(struct netns_capture *c, const struct capture_config *cfg)
{
	char ruleset[NETNS_RULESET_MAX];
	int err;

	c->have_ipv6 = ipv6_available();
	err = setup_network(cfg, c->have_ipv6);
	if (err)
		return err;
	err = make_listeners(c, cfg);
	if (err)
		return err;
	err = generate_ruleset(c, ruleset, sizeof ruleset);
	if (err) {
		log_errno(err, "session network: ruleset text");
		return err;
	}
	return load_ruleset(ruleset);
}

static int netns_open(struct capture **out, const struct capture_config *cfg)
{
	static const struct capture_config defaults;
	struct netns_capture *c;
	int fd, err;

	if (!cfg)
		cfg = &defaults;
	c = calloc(1, sizeof *c);
	if (!c)
		return -ENOMEM;
	c->base.ops = &capture_netns;
	c->session_ns = -1;
	for (int kind = 0; kind < CAPTURE_KINDS; kind++)
		for (int family = 0; family < CAPTURE_FAMILIES; family++)
			c->base.listeners[kind][family].sock = CAPTURE_NO_SOCK;
	for (size_t i = 0; i < NETNS_REPLY_SOCKETS; i++)
		c->replies[i].fd = -1;

	c->host_ns = open_own_netns();
	if (c->host_ns < 0) {
		err = c->host_ns;
		log_errno(err, "session network: cannot open sluice's own network namespace");
		goto fail;
	}
	if (unshare(CLONE_NEWNET) < 0) {
		err = -errno;
		log_errno(err, "session network: cannot create a network namespace%s",
			  err == -EPERM ? " (needs root or CAP_SYS_ADMIN)" : "");
		goto fail;
	}
	fd = open_own_netns();
	if (fd < 0) {
		err = fd;
		log_errno(err, "session network: cannot open the new network namespace");
		netns_leave(c);
		goto fail;
	}
	c->session_ns = fd;
	err = setup_inside(c, cfg);
	netns_leave(c);
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
	err = sockaddr_to_endpoint((struct sockaddr *)&ss, len, &local);
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
	err = sockaddr_to_endpoint((struct sockaddr *)&ss, len, dst);
	if (err)
		return err;
	/* A connection made straight to the listener is tracked but not NATed: its "original"
	 * destination is the listener itself. */
	return endpoint_equal(dst, &local) ? -ENOENT : 0;
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
	if (sockaddr_to_endpoint((struct sockaddr *)&from, msg.msg_namelen, src) < 0)
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
		if (sockaddr_to_endpoint((struct sockaddr *)&od, (socklen_t)len, orig_dst) == 0)
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
	    sockaddr_to_endpoint((struct sockaddr *)&own, own_len, &self) == 0 &&
	    endpoint_equal(orig_dst, &self))
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

	err = netns_enter(c);
	if (err)
		return err;
	fd = socket(af, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	netns_leave(c);
	if (fd < 0)
		return -errno;
	if (af == AF_INET6 && (err = set_int_option(fd, SOL_IPV6, IPV6_V6ONLY, 1)))
		goto fail;
	err = set_transparent(fd, af);
	if (!err)
		err = set_int_option(fd, SOL_SOCKET, SO_REUSEADDR, 1);
	if (err)
		goto fail;
	endpoint_to_sockaddr(from, &ss, &len);
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

		if (r->fd >= 0 && endpoint_equal(&r->from, from)) {
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
	if (from->addr.family == ADDR_V6 && !c->have_ipv6)
		return -EAFNOSUPPORT;
	fd = reply_socket(c, from);
	if (fd < 0)
		return fd;
	endpoint_to_sockaddr(to, &ss, &sslen);
	if (sendto(fd, buf, len, MSG_DONTWAIT, (struct sockaddr *)&ss, sslen) < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return 0;
}

static int netns_join(struct capture *cap)
{
	if (setns(netns_of(cap)->session_ns, CLONE_NEWNET) < 0)
		return -errno;
	return 0;
}

const struct capture_ops capture_netns = {
	.name = "netns",
	.open = netns_open,
	.tcp_original_dst = netns_tcp_original_dst,
	.udp_recv = netns_udp_recv,
	.udp_send = netns_udp_send,
	.join = netns_join,
	.close = netns_close,
};
