/* dns_watch.h — DNS answers seen on the wire, believed only when they answer a query seen leaving.
 *
 * On Windows most programs resolve names through the DNS Client service: its queries carry the
 * service's process id, not the session's, so they never reach sluice's DNS proxy. sluice still
 * sees them leave (the packet thread passes them) and sees the resolver's answers arrive (a
 * sniffing handle); this table pairs the two so that the session's DNS map can learn from what
 * the system resolver was told, without believing a datagram merely because it came from port 53.
 *
 * - A query is remembered by its flow (client address and port, resolver address and port), its
 *   id and its question, for DNS_WATCH_TIMEOUT_MS; a retransmission of the same query refreshes
 *   it (as a new query would). An answer is accepted when it comes from that resolver address and port, to that client
 *   address and port, with that id and the same question (name compared case-insensitively, type
 *   and class equal), QR set and opcode QUERY, and parses as a response (dns_parse_response). The
 *   query is then forgotten: one answer per query, a duplicate is unmatched. This is the check
 *   the system resolver makes itself, so an off-path sender must guess what it must guess.
 * - Fixed capacity, allocated up front; a query is forgotten once `capacity` newer queries (or
 *   retransmissions) came after it, before its timeout only when the table was full (counted).
 *   Lookups hash (flow, id) with a per-table secret seed, so chains stay short whatever ids and
 *   ports the network chooses.
 * - Threading: none; callers serialise (the Windows backend holds a lock).
 */
#ifndef SLUICE_PROXY_DNS_WATCH_H
#define SLUICE_PROXY_DNS_WATCH_H

#include <stddef.h>
#include <stdint.h>

#include "base/addr.h"
#include "proxy/dns_msg.h"

/* How long a query waits for its answer (the DNS Client service gives up well before). */
#define DNS_WATCH_TIMEOUT_MS 15000u
#define DNS_WATCH_CAPACITY_MAX 65536u
#define DNS_WATCH_DEFAULT_CAPACITY 1024u

/* Both ends of a query as it left: the client (the resolving process's socket) and the server
 * (the resolver). An answer's flow is written the same way: client = its destination. */
struct dns_watch_flow {
	struct addr client, server;
	uint16_t client_port, server_port;
};

struct dns_watch_stats {
	uint64_t queries;     /* queries remembered (retransmissions included) */
	uint64_t bad_queries; /* not a query dns_parse_query accepts: not remembered */
	uint64_t matched;     /* answers accepted */
	uint64_t unmatched;   /* answers to no remembered query (wrong flow, id or question) */
	uint64_t late;        /* answers to a query remembered but past its timeout */
	uint64_t malformed;   /* answers dns_parse_response refuses */
	uint64_t evicted;     /* queries forgotten before their timeout because the table was full */
};

struct dns_watch;

/* Allocates a table of `capacity` queries (1..DNS_WATCH_CAPACITY_MAX; 0 means the default);
 * seed keys its hash. Returns 0 and *out (release with dns_watch_free), -EINVAL or -ENOMEM. */
int dns_watch_new(struct dns_watch **out, size_t capacity, uint64_t seed);

/* Frees everything; accepts NULL. */
void dns_watch_free(struct dns_watch *w);

/* Remembers the query msg[0..len) sent on flow f at now_ms. Returns 0, or -EBADMSG when it is
 * not a query (nothing remembered). */
int dns_watch_query(struct dns_watch *w, const struct dns_watch_flow *f, const uint8_t *msg,
		    size_t len, uint64_t now_ms);

/* Checks the answer msg[0..len) received on flow f at now_ms. Returns 0 with *out parsed when
 * it answers a remembered query (which is then forgotten); -ENOENT when it answers none (or
 * one past its timeout); -EBADMSG when it does not parse as a response. *out is scratch space
 * in every case (it is large: the caller provides it). */
int dns_watch_answer(struct dns_watch *w, const struct dns_watch_flow *f, const uint8_t *msg,
		     size_t len, uint64_t now_ms, struct dns_message *out);

/* Queries remembered now (expired ones included until they are reused or forgotten). */
size_t dns_watch_count(const struct dns_watch *w);

void dns_watch_get_stats(const struct dns_watch *w, struct dns_watch_stats *out);

#endif
