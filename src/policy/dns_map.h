/* dns_map.h — the session's DNS map: which names the session's own DNS answers gave an address.
 *
 * When the DNS proxy forwards an allowed query, the A and AAAA records of the answer enter this
 * map; when a session process later connects to one of those addresses, the names found here are
 * the `names` of policy_decide_connect and the `domain` of the audit event.
 *
 * Design decisions, for the next engineer:
 *
 * - Fixed capacity, allocated up front. Everything is allocated by dns_map_new(); inserting never
 *   allocates and never fails for lack of memory. Each address keeps up to names_per_addr names
 *   of up to 253 characters in place, about 270 bytes per name slot (about 2.2 KB per address at
 *   8 names; dns_map_memory_bytes() tells).
 *
 * - Time is an argument: callers pass `now_ms` from a monotonic clock; the map never reads one.
 *   A `now_ms` below one seen before counts as the largest seen (time never runs backwards).
 *
 * - TTL, clamped. A name stays attributed until now + clamp(ttl) where clamp keeps the TTL within
 *   [min_ttl_s, max_ttl_s] (defaults 5 min and 1 day). The minimum exists because applications
 *   keep answers longer than their TTL (a TTL of 0 is common at CDNs; the JVM caches for 30 s,
 *   Chromium caches getaddrinfo results for 60 s, package managers reuse one lookup across a
 *   long download queue), and a connection that follows such an answer must still find its
 *   name: a TLS SNI or Host name allows only when the map confirms it (relay.c). The maximum bounds how long a stale answer can vouch for an
 *   address. Recording a name again keeps the later of the two expiry times.
 *
 * - Several names per address (CDNs serve many names from one address), at most names_per_addr,
 *   most recently recorded first; recording a name moves it to the front, and a new name beyond
 *   the bound pushes out the least recently recorded one.
 *
 * - Full map: a new address replaces the entry that expires soonest (an entry expires with its
 *   last live name); among equal expiry times, the one recorded longest ago. Expired entries thus
 *   go first, and what is evicted is what would have been forgotten soonest anyway. A min-heap on
 *   (expiry, sequence) finds it in O(log n); the same heap makes dns_map_sweep() cost
 *   O(removed * log n).
 *
 * - Names are stored lowercase, without a trailing dot, and only when they are host names (letters,
 *   digits, '-', '_', labels of 1..63, at most 253 characters): the policy ignores anything else.
 *   IPv4-mapped IPv6 addresses are stored and looked up as IPv4.
 *
 * - Which names an answer attributes (dns_map_record_response): the question's name — what the
 *   policy decided — and every name of the CNAME chain from it down to the owner of the address
 *   record, so that a rule about the canonical name (say `deny domain *.tracker.example` against
 *   CNAME cloaking) also sees the connection. Address records whose owner is not on the chain
 *   that starts at the question are ignored: an answer cannot vouch for names nobody asked about.
 *   The question's name is recorded last, so it is listed first. The TTL is the address record's.
 *   A question whose name is not a host name records nothing (the proxy refuses such queries).
 *   The map believes what it is given: one answer "allowed.example A 203.0.113.66" makes that
 *   address pass for allowed.example. So callers record only answers of resolvers sluice
 *   trusts (the system's, or --dns-upstream; dns_proxy_config.trusted), never of a resolver
 *   the session chose, and the rebinding guard filters private answers first.
 *
 * - Threading: none; the map belongs to the event-loop thread.
 */
#ifndef SLUICE_POLICY_DNS_MAP_H
#define SLUICE_POLICY_DNS_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/addr.h"
#include "proxy/dns_msg.h"

/* Longest name stored, in characters. */
#define DNS_MAP_NAME_MAX 253
#define DNS_MAP_CAPACITY_MAX (1u << 20)
#define DNS_MAP_NAMES_MAX 64
/* CNAMEs followed from the question's name. */
#define DNS_MAP_CHAIN_MAX 16

#define DNS_MAP_DEFAULT_CAPACITY 4096
#define DNS_MAP_DEFAULT_NAMES 8
#define DNS_MAP_DEFAULT_MIN_TTL_S 300
#define DNS_MAP_DEFAULT_MAX_TTL_S 86400

struct dns_map_config {
	uint32_t capacity;       /* addresses, 1..DNS_MAP_CAPACITY_MAX */
	uint32_t names_per_addr; /* 1..DNS_MAP_NAMES_MAX */
	uint32_t min_ttl_s;      /* <= max_ttl_s */
	uint32_t max_ttl_s;      /* >= 1 */
	uint64_t hash_seed;      /* per-map secret; draw it from the OS random source */
};

struct dns_map;

/* Fills cfg with the defaults above and a zero seed. */
void dns_map_config_default(struct dns_map_config *cfg);

/* Creates a map; all its memory is allocated here. Returns 0 with *out set (free it with
 * dns_map_free), -EINVAL for a configuration outside the bounds above, or -ENOMEM. */
int dns_map_new(struct dns_map **out, const struct dns_map_config *cfg);

/* Frees the map; accepts NULL. */
void dns_map_free(struct dns_map *m);

/* Records that `name` (any case, optional trailing dot) resolved to `a` with `ttl_s`, at now_ms.
 * Returns 0 when stored (or refreshed), 1 when stored by evicting another address, -EINVAL for
 * NULL arguments, an address family other than ADDR_V4/ADDR_V6, or a name that is not a host
 * name (the map is then unchanged). */
int dns_map_insert(struct dns_map *m, const struct addr *a, const char *name, uint32_t ttl_s,
		   uint64_t now_ms);

/* Records the A/AAAA answers of a parsed response (dns_parse_response) under the names described
 * above; names on the chain that are not host names are skipped. Records nothing for a response
 * without a question, with an rcode other than NOERROR, or whose question is not class IN or not
 * a host name. Returns the number of (address, name) pairs recorded. */
size_t dns_map_record_response(struct dns_map *m, const struct dns_message *response,
			       uint64_t now_ms);

/* The live names of `a` at now_ms, most recently recorded first: stores a pointer to an array of
 * NUL-terminated names in *names and returns their count (0, with *names NULL, when there are
 * none). Drops the names of `a` that have expired. The array and the strings are borrowed: valid
 * until the next call that changes the map (insert, record, lookup, sweep, free). */
size_t dns_map_lookup(struct dns_map *m, const struct addr *a, uint64_t now_ms,
		      const char *const **names);

/* Removes every entry whose names have all expired at now_ms; returns how many. */
size_t dns_map_sweep(struct dns_map *m, uint64_t now_ms);

/* Addresses stored, including expired ones not yet removed. */
size_t dns_map_count(const struct dns_map *m);

size_t dns_map_capacity(const struct dns_map *m);

/* Bytes allocated by dns_map_new (all there will ever be). */
size_t dns_map_memory_bytes(const struct dns_map *m);

/* Checks every internal invariant (index, heap, name lists, count). Returns NULL when all hold,
 * else a static string naming the first broken one. O(capacity): for tests and fuzzing. */
const char *dns_map_check_invariants(const struct dns_map *m);

#endif
