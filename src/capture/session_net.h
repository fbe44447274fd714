/* session_net.h — the parts of a Linux session network that every Linux capture backend shares.
 *
 * Both Linux backends (netns.c: kernel NAT; nfqueue.c: the divert engine) run the session in an
 * anonymous network namespace holding only `lo`, routed so that every destination stays on lo
 * (capture.h), with sluice's listeners inside and an nftables table `inet sluice` that differs
 * per backend. This module creates that namespace, moves the calling thread in and out of it,
 * makes the listeners and loads a ruleset. Linux only; one thread at a time.
 */
#ifndef SLUICE_CAPTURE_SESSION_NET_H
#define SLUICE_CAPTURE_SESSION_NET_H

#include <stdbool.h>
#include <stddef.h>

#include <sys/socket.h>

#include "base/log.h"
#include "capture/capture.h"

/* Longest nftables ruleset text a backend writes. */
#define SESSION_NET_RULESET_MAX 8192

struct session_net {
	int host_ns;    /* the namespace sluice lives in, to come back to; -1 when not open */
	int session_ns; /* the session's namespace; this fd keeps it alive; -1 when not open */
	bool have_ipv6;
};

/* Marks n as holding nothing, so that session_net_close is safe on it. */
void session_net_init(struct session_net *n);

/* Creates the session namespace, brings lo up (lo_mtu when non-zero), adds the routes, and
 * leaves the calling thread INSIDE it, so that the backend can make its listeners and rules
 * there; the caller then calls session_net_leave. Must run while the process is
 * single-threaded. On failure the thread is back in its own namespace, the step is logged and a
 * negative errno is returned (-EPERM: not privileged). */
int session_net_open(struct session_net *n, unsigned lo_mtu);

/* Moves the calling thread into the session namespace. Returns 0 or -errno. */
int session_net_enter(const struct session_net *n);

/* Moves the calling thread back to sluice's own namespace (fatal if impossible: every later
 * upstream dial would loop back into the session). */
void session_net_leave(const struct session_net *n);

/* Closes the namespace descriptors; accepts a never-opened n. */
void session_net_close(struct session_net *n);

/* Makes every listener of cap (kinds x families; IPv6 only when n->have_ipv6) on 127.0.0.1 and
 * ::1 at cfg's ports (any free port where one is taken), in the namespace the caller is in.
 * transparent_udp: UDP listeners get IP(V6)_TRANSPARENT and RECVORIGDSTADDR (tproxy). Logs and
 * returns a negative errno on failure (listeners made so far stay in cap for the caller's
 * close). */
int session_net_make_listeners(struct capture *cap, const struct session_net *n,
			       const struct capture_config *cfg, bool transparent_udp);

/* Closes every listener of cap and marks it CAPTURE_NO_SOCK. */
void session_net_close_listeners(struct capture *cap);

/* Loads an nftables ruleset text into the namespace the caller is in (all or nothing). Returns
 * -EINVAL when it is refused, after logging the first line of nft's error if log_failure. */
int session_net_load_ruleset(const char *text, bool log_failure);

/* Bounded text building for rulesets: a write past `size` marks the text as overflowed. */
struct ruleset_text {
	char *buf;
	size_t size, len;
	bool overflow;
};

void ruleset_add(struct ruleset_text *t, const char *fmt, ...) LOG_PRINTF(2, 3);

/* Conversions between endpoints and socket addresses. */
void capture_endpoint_to_sockaddr(const struct capture_endpoint *ep, struct sockaddr_storage *ss,
				  socklen_t *len);
int capture_endpoint_from_sockaddr(const struct sockaddr *sa, socklen_t len,
				   struct capture_endpoint *ep);
bool capture_endpoint_equal(const struct capture_endpoint *a, const struct capture_endpoint *b);

/* setsockopt of an int; returns 0 or -errno. */
int session_net_set_int(int fd, int level, int name, int value);

/* IP_TRANSPARENT or IPV6_TRANSPARENT (family AF_INET or AF_INET6): lets a UDP socket bind a
 * non-local address and receive tproxy'd datagrams. Returns 0 or -errno. */
int session_net_set_transparent(int fd, int family);

#endif
