/* session_net.c — the session namespace, its listeners and ruleset loading (session_net.h). */
#define _GNU_SOURCE

#include "capture/session_net.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>

#include <linux/rtnetlink.h>

#include <libmnl/libmnl.h>
#include <nftables/libnftables.h>

/* An rtnetlink request or acknowledgement (libmnl's MNL_SOCKET_BUFFER_SIZE is not a constant). */
#define RTNL_BUFFER_SIZE 8192

/* ---- the namespace ---- */

void session_net_init(struct session_net *n)
{
	n->host_ns = -1;
	n->session_ns = -1;
	n->have_ipv6 = false;
}

int session_net_enter(const struct session_net *n)
{
	if (setns(n->session_ns, CLONE_NEWNET) < 0)
		return -errno;
	return 0;
}

void session_net_leave(const struct session_net *n)
{
	if (setns(n->host_ns, CLONE_NEWNET) < 0)
		fatal_errno(errno, "cannot return to sluice's own network namespace");
}

void session_net_close(struct session_net *n)
{
	if (n->session_ns >= 0)
		close(n->session_ns);
	if (n->host_ns >= 0)
		close(n->host_ns);
	n->session_ns = -1;
	n->host_ns = -1;
}

static int open_own_netns(void)
{
	int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static bool ipv6_available(void)
{
	int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return false;
	close(fd);
	return true;
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
static int setup_network(unsigned lo_mtu, bool have_ipv6)
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
	err = link_up(nl, &seq, lo, lo_mtu);
	if (err) {
		log_errno(err, "session network: bringing lo up (mtu %u)", lo_mtu);
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


int session_net_open(struct session_net *n, unsigned lo_mtu)
{
	int fd, err;

	n->host_ns = open_own_netns();
	if (n->host_ns < 0) {
		err = n->host_ns;
		log_errno(err, "session network: cannot open sluice's own network namespace");
		return err;
	}
	if (unshare(CLONE_NEWNET) < 0) {
		err = -errno;
		log_errno(err, "session network: cannot create a network namespace%s",
			  err == -EPERM ? " (needs root or CAP_SYS_ADMIN)" : "");
		return err;
	}
	fd = open_own_netns();
	if (fd < 0) {
		err = fd;
		log_errno(err, "session network: cannot open the new network namespace");
		session_net_leave(n);
		return err;
	}
	n->session_ns = fd;
	n->have_ipv6 = ipv6_available();
	err = setup_network(lo_mtu, n->have_ipv6);
	if (err)
		session_net_leave(n);
	return err;
}

/* ---- listeners ---- */


void capture_endpoint_to_sockaddr(const struct capture_endpoint *ep, struct sockaddr_storage *ss,
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

int capture_endpoint_from_sockaddr(const struct sockaddr *sa, socklen_t len,
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

int session_net_set_int(int fd, int level, int name, int value)
{
	if (setsockopt(fd, level, name, &value, sizeof value) < 0)
		return -errno;
	return 0;
}

/* Lets a UDP socket bind a non-local address (reply sockets) and receive tproxy'd datagrams
 * (listeners). */
int session_net_set_transparent(int fd, int family)
{
	if (family == AF_INET)
		return session_net_set_int(fd, SOL_IP, IP_TRANSPARENT, 1);
	return session_net_set_int(fd, SOL_IPV6, IPV6_TRANSPARENT, 1);
}

bool capture_endpoint_equal(const struct capture_endpoint *a, const struct capture_endpoint *b)
{
	return a->port == b->port && addr_equal(&a->addr, &b->addr);
}

/* Binds ep, or the same address with any free port when ep's port is taken. */
static int bind_preferred(int fd, struct capture_endpoint *ep)
{
	struct sockaddr_storage ss;
	socklen_t len;

	capture_endpoint_to_sockaddr(ep, &ss, &len);
	if (bind(fd, (struct sockaddr *)&ss, len) == 0)
		return 0;
	if (errno != EADDRINUSE)
		return -errno;
	ep->port = 0;
	capture_endpoint_to_sockaddr(ep, &ss, &len);
	if (bind(fd, (struct sockaddr *)&ss, len) < 0)
		return -errno;
	return 0;
}

/* Creates one listener of `kind` on the loopback address of `family`, in the namespace the
 * caller is in. */
static int make_listener(enum capture_kind kind, enum capture_family family, uint16_t port,
			 bool transparent_udp, struct capture_listener *out)
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
	if (af == AF_INET6 && (err = session_net_set_int(fd, SOL_IPV6, IPV6_V6ONLY, 1)))
		goto fail;
	if (tcp && (err = session_net_set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1)))
		goto fail;
	if (!tcp && transparent_udp) {
		err = session_net_set_transparent(fd, af);
		if (!err && af == AF_INET)
			err = session_net_set_int(fd, SOL_IP, IP_RECVORIGDSTADDR, 1);
		if (!err && af == AF_INET6)
			err = session_net_set_int(fd, SOL_IPV6, IPV6_RECVORIGDSTADDR, 1);
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
	    capture_endpoint_from_sockaddr((struct sockaddr *)&ss, len, &ep) < 0) {
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

int session_net_make_listeners(struct capture *cap, const struct session_net *n,
			       const struct capture_config *cfg, bool transparent_udp)
{
	const uint16_t ports[CAPTURE_KINDS] = {
		[CAPTURE_TCP] = cfg->tcp_port ? cfg->tcp_port : CAPTURE_TCP_PORT,
		[CAPTURE_DNS_TCP] = cfg->dns_port ? cfg->dns_port : CAPTURE_DNS_PORT,
		[CAPTURE_DNS_UDP] = cfg->dns_port ? cfg->dns_port : CAPTURE_DNS_PORT,
		[CAPTURE_UDP] = cfg->udp_port ? cfg->udp_port : CAPTURE_UDP_PORT,
	};
	int families = n->have_ipv6 ? CAPTURE_FAMILIES : 1;

	for (int kind = 0; kind < CAPTURE_KINDS; kind++) {
		for (int family = 0; family < families; family++) {
			struct capture_listener *l = &cap->listeners[kind][family];
			int err = make_listener(kind, family, ports[kind], transparent_udp, l);

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


void session_net_close_listeners(struct capture *cap)
{
	for (int kind = 0; kind < CAPTURE_KINDS; kind++) {
		for (int family = 0; family < CAPTURE_FAMILIES; family++) {
			struct capture_listener *l = &cap->listeners[kind][family];

			if (l->sock != CAPTURE_NO_SOCK)
				close((int)l->sock);
			l->sock = CAPTURE_NO_SOCK;
		}
	}
}

/* ---- nftables ---- */

void ruleset_add(struct ruleset_text *t, const char *fmt, ...)
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

/* Loads the ruleset into the namespace the caller is in. */
int session_net_load_ruleset(const char *text, bool log_failure)
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

		if (log_failure)
			log_error("session network: loading the nftables ruleset failed: %.*s",
				  (int)len, msg ? msg : "");
		err = -EINVAL;
	}
	nft_ctx_free(nft);
	return err;
}

