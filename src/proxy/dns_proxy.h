/* dns_proxy.h — the session's DNS: every query decided by policy, allowed ones forwarded.
 *
 * Queries arrive on the capture backend's DNS listeners (UDP and TCP, IPv4 and IPv6). Each is
 * parsed (a malformed one is dropped and counted, or answered FORMERR when its header is
 * readable), its name decided by policy_decide_dns: a denied name is answered NXDOMAIN locally
 * and never sent upstream; an allowed one is forwarded to the resolver the application asked
 * (its original destination) or to the configured upstream, and the answer goes back to the
 * application as the resolver sent it, its A/AAAA records entering the session's DNS map when
 * the resolver is a trusted one (dns_proxy_config.trusted).
 * A resolver that does not answer leaves the application's query unanswered, so it times out
 * as it would without sluice. One `dns` event per query.
 *
 * Side channels (docs/policy.md, "What the DNS proxy forwards"): only the query types in
 * dns_proxy_qtype_forwarded() go upstream, only opcode QUERY and class IN, and at most
 * max_names distinct names per session; anything else is answered REFUSED (NOTIMP for another
 * opcode) without reaching a resolver, and recorded as denied with the rule "qtype", "opcode",
 * "qclass", "qname" (not a host name) or "names". Names over the DNS limits (a label over 63
 * bytes, a name over 255 wire bytes, so over 253 characters and 127 labels) do not parse: the
 * query is answered FORMERR and counted as malformed.
 *
 * The rebinding guard: an upstream answer's A and AAAA records (every section) whose address
 * policy_guard_address() keeps out are removed before the application sees the answer (the
 * message is rebuilt by dns_filter_addresses; one too large for the client's UDP size becomes
 * a TC reply, so it retries over TCP), are not recorded in the DNS map, are listed in the
 * event's "dropped", and make one stderr line. A reverse name (in-addr.arpa, ip6.arpa) of a
 * guarded address is denied like a name the policy denies, with the rule "guard:RANGE".
 */
#ifndef SLUICE_PROXY_DNS_PROXY_H
#define SLUICE_PROXY_DNS_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/addr.h"
#include "base/loop.h"

struct audit;
struct capture;
struct dns_map;
struct policy;
struct dns_proxy;

#define DNS_PROXY_TIMEOUT_MS 5000
#define DNS_PROXY_MAX_PENDING 1024 /* UDP queries waiting for their resolver */
#define DNS_PROXY_MAX_TCP 64       /* DNS-over-TCP connections at once */
/* Distinct names a session may send upstream (the bound on DNS tunnelling, docs/policy.md). */
#define DNS_PROXY_MAX_NAMES 10000
#define DNS_PROXY_MAX_TRUSTED 8

struct dns_proxy_config {
	struct loop *loop;           /* borrowed */
	const struct policy *policy; /* borrowed */
	struct audit *audit;         /* borrowed; NULL: no trail */
	struct dns_map *map;         /* borrowed; NULL: answers are not recorded */
	struct capture *capture;     /* borrowed: receives queries and sends replies */
	bool has_upstream;           /* forward to `upstream` instead of the resolver asked */
	struct addr upstream;
	uint16_t upstream_port;
	bool quiet;                  /* no stderr line per denied query */
	uint32_t timeout_ms;         /* 0: DNS_PROXY_TIMEOUT_MS */
	uint32_t max_names;          /* 0: DNS_PROXY_MAX_NAMES */
	/* The resolvers whose answers the DNS map learns from (copied): the system's (sluice's own
	 * resolv.conf); with has_upstream, every answer counts. An answer from any other resolver
	 * the application asked is still passed back to it, but not recorded: a resolver of the
	 * session's choosing could otherwise make any address pass for an allowed name. */
	const struct addr *trusted;
	size_t n_trusted;            /* at most DNS_PROXY_MAX_TRUSTED */
	uint64_t hash_seed;          /* keys the set of names sent; draw it from the OS */
	void *ctx;                   /* for the hooks */
	int64_t (*wall_ms)(void *ctx);
	/* The process that owns the socket src:port (0 unknown) and its exe, as in relay.h. */
	int64_t (*peer_process)(void *ctx, int proto, const struct addr *src, uint16_t port,
				const struct addr *dst, uint16_t dport, char *exe,
				size_t n);
};

struct dns_proxy_stats {
	uint64_t queries;   /* parsed queries */
	uint64_t denied;    /* by the policy, or by the guard (reverse names of guarded ranges) */
	uint64_t refused;   /* names that are not host names, or not class IN */
	uint64_t forwarded;
	uint64_t answered;  /* upstream answers passed back */
	uint64_t malformed; /* queries and answers dropped as unreadable */
	uint64_t timeouts;
	uint64_t upstream_errors;
	uint64_t shed;      /* dropped at the pending or connection bound */
	uint64_t refused_type;      /* query types not forwarded, opcodes other than QUERY */
	uint64_t refused_names;     /* new names past max_names */
	uint64_t guarded_answers;   /* answers the guard removed addresses from */
	uint64_t guarded_addresses; /* addresses it removed */
	uint64_t untrusted;         /* answers of a resolver not trusted: passed, not recorded */
};

/* Creates the proxy and starts serving the capture's DNS listeners. Returns 0 and *out (free
 * with dns_proxy_free), or a negative errno (-EINVAL: more than DNS_PROXY_MAX_TRUSTED). */
int dns_proxy_new(struct dns_proxy **out, const struct dns_proxy_config *cfg);

/* Stops serving, ends pending queries (their events say "session ended") and frees; NULL ok. */
void dns_proxy_free(struct dns_proxy *p);

void dns_proxy_get_stats(const struct dns_proxy *p, struct dns_proxy_stats *out);

/* Whether queries of this type are forwarded: A, AAAA, CNAME, MX, TXT, PTR, SRV, SVCB, HTTPS. */
bool dns_proxy_qtype_forwarded(uint16_t qtype);

struct dns_message;

/* The rebinding guard on an answer that was parsed but cannot be changed any more (Windows: what
 * the system resolver received): removes from m->answers the A and AAAA records whose address
 * policy_guard_address(p, address, 0, 0) keeps out, so that dns_map_record_response() leaves
 * them out. Returns how many were removed. */
size_t dns_proxy_guard_parsed(const struct policy *p, struct dns_message *m);

#endif
