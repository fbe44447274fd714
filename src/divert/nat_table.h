/* nat_table.h — the divert engine's NAT table: a diverted flow's client side -> its destination.
 *
 * When a session process's packet (say TCP 127.0.0.1:54321 -> 140.82.114.4:443) is diverted to
 * the local proxy, the engine inserts an entry keyed by the flow's client side (protocol, family,
 * address, port) that records the original destination, the pid (0 when unknown) and when the
 * flow was last used. The proxy asks "where was the connection from this address:port going?",
 * and the engine asks the same question to rewrite the proxy's replies back.
 *
 * Design decisions, for the next engineer:
 *
 * - Fixed capacity, allocated once. Every byte is allocated by nat_new(); insert, lookup and
 *   remove never allocate, and entries never move, so an entry pointer stays valid until that
 *   entry is removed. The capacity bounds what the network can make us remember (STYLE.md,
 *   practice 6). Keys are binary (struct nat_key), never strings: TCP and UDP, IPv4 and IPv6
 *   keys are distinct even when their bytes agree, and an IPv4-mapped IPv6 address is not
 *   unmapped here (callers that want that unmap first).
 *
 * - Full table: insert of a new key into a full table evicts the least-recently-used entry, but
 *   only when that entry has been idle for at least min_evict_idle_ms; otherwise it refuses with
 *   -ENOSPC and stores nothing. A flood of new flows (a SYN flood from a runaway session) thus
 *   recycles dead flows yet can never push out a flow that is still carrying traffic. The engine
 *   drops the packet of a refused flow; TCP retries. min_evict_idle_ms <= ttl_ms is required, so
 *   an expired entry is always evictable.
 *
 * - TTL is idle time, refreshed by use. An entry expires when `now - last_used_ms > ttl_ms`. Every
 *   nat_lookup() that finds the entry (both directions of traffic go through it) and every
 *   nat_insert() of its key refresh it. (The seed expired entries ttl after creation even while
 *   the connection was alive.) An expired entry is never returned: nat_lookup() removes it when it
 *   meets it, and nat_sweep() removes all of them, so what callers observe does not depend on how
 *   often they sweep; sweeping only returns memory sooner. TCP entries should also be removed
 *   explicitly when the flow ends (FIN from both sides, or RST), and all of a process's entries
 *   with nat_remove_by_pid() when it exits.
 *
 * - Time is an argument. Callers pass `now_ms`, a monotonic millisecond clock; the table never
 *   reads a clock, so tests need no sleeps. A `now_ms` smaller than one seen before is treated as
 *   the largest seen so far (time never runs backwards inside the table).
 *
 * - LRU order is kept lazily, to a resolution of R = nat_lru_resolution_ms() (the largest power of
 *   two <= max(1, ttl_ms / 16); 16384 ms for a 5-minute TTL). A lookup always stores
 *   last_used_ms (one field of the cache line it has just read); it moves the entry to the tail
 *   of the LRU queue only when its previous use was in an earlier R-long window of time. So a
 *   busy flow costs one queue move per R, not one per packet. Consequences: the victim of an
 *   eviction is at most R - 1 ms more recently used than the true LRU entry, and an entry is
 *   never evicted unless it has itself been idle for min_evict_idle_ms. Sweeping stays exact
 *   and costs O(entries removed + entries last used in one R-window near the TTL boundary).
 *
 * - Threading: none. The divert engine runs on one event-loop thread, and so does this table: no
 *   locks, no atomics. Callers on other threads must hand work to the loop, not share the table.
 *
 * - Index: open addressing with linear probing and backward-shift deletion (no tombstones), over
 *   a power-of-two array of 32-bit slots (at least 2 x capacity, so load <= 0.5). A slot holds
 *   the entry's index plus the top bits of its hash as a tag, so most non-matching probes are
 *   rejected without touching the entry. Keys are hashed with multiply/xor-shift rounds and a
 *   per-table seed that the caller should draw from the OS's random source.
 *
 * - Per-pid index: entries with a non-zero pid are linked into a per-pid-hash chain, so
 *   nat_remove_by_pid() costs O(entries of that pid + a few of other pids sharing the bucket).
 *   pid 0 ("unknown") is not indexed.
 *
 * - Memory: one 64-byte-aligned 64-byte record per entry (struct nat_entry plus LRU links; the
 *   caller-owned flags, client_port and client_slot fill what would otherwise be padding), 8
 *   bytes of pid links, 4 bytes per index slot and 4 per pid bucket (one bucket per 4 entries,
 *   rounded up to a power of two). With a capacity that fills most of a power of two (1000,
 *   65536, 1e6) that is about 82 bytes per entry, 62 beyond the 20-byte key; just above a power
 *   of two (65537) the index doubles and it is about 90 (70 beyond the key). nat_memory_bytes()
 *   reports the total.
 */
#ifndef SLUICE_DIVERT_NAT_TABLE_H
#define SLUICE_DIVERT_NAT_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/addr.h"

enum {
	NAT_PROTO_TCP = 6,
	NAT_PROTO_UDP = 17,
};

/* Largest capacity nat_new() accepts (about 1.3 GiB of table). */
#define NAT_CAPACITY_MAX (1u << 24)

/* The client side of a flow. For ADDR_V4, bytes[4..15] are ignored (treated as zero). */
struct nat_key {
	struct addr addr;
	uint8_t protocol; /* NAT_PROTO_TCP or NAT_PROTO_UDP */
	uint16_t port;    /* host byte order */
};

/* What the table remembers about a flow. The table owns it; callers may read every field and
 * write only the caller-owned ones (`flags`, `client_port`, `client_slot`), which the table
 * stores and never interprets; an insert sets them to 0. */
struct nat_entry {
	struct nat_key key;
	uint32_t pid;          /* 0 when unknown */
	uint64_t last_used_ms; /* the `now_ms` of the last insert or lookup */
	struct addr orig_dst;
	uint8_t flags;        /* caller-owned: the engine's per-flow bits (e.g. FIN seen) */
	uint16_t orig_port;   /* host byte order */
	uint16_t client_port; /* caller-owned: the engine's client port (c) */
	uint8_t client_slot;  /* caller-owned: the engine's index of the client's address */
};

struct nat_config {
	uint32_t capacity;          /* 1 .. NAT_CAPACITY_MAX entries */
	uint64_t ttl_ms;            /* idle timeout, >= 1 (the seed used 5 minutes) */
	uint64_t min_evict_idle_ms; /* full-table eviction threshold, <= ttl_ms */
	uint64_t hash_seed;         /* per-table secret; draw it from the OS random source */
	bool test_constant_hash;    /* tests only: every key and pid hashes alike (one cluster) */
};

struct nat_table;

/* Creates a table sized for cfg->capacity entries; all memory is allocated here.
 * Returns 0 with *out set (free it with nat_free), -EINVAL for a NULL argument, a capacity of 0
 * or above NAT_CAPACITY_MAX, a ttl of 0 or min_evict_idle_ms > ttl_ms, or -ENOMEM. */
int nat_new(struct nat_table **out, const struct nat_config *cfg);

/* Frees the table and every entry; entry pointers become invalid. Accepts NULL. */
void nat_free(struct nat_table *t);

/* Stores key -> (orig_dst, orig_port, pid), last used at now_ms, flags 0. An existing entry of
 * the same key (expired or not) is replaced. A new key in a full table evicts the least recently
 * used entry if it has been idle >= min_evict_idle_ms (copying its key to *evicted when evicted
 * is not NULL). Returns 0 when stored, 1 when stored by evicting, -ENOSPC when full and nothing
 * may be evicted (the table is unchanged), -EINVAL for NULL pointers, a protocol other than TCP
 * or UDP, or a key or destination family other than ADDR_V4 or ADDR_V6. */
int nat_insert(struct nat_table *t, const struct nat_key *key, const struct addr *orig_dst,
	       uint16_t orig_port, uint32_t pid, uint64_t now_ms, struct nat_key *evicted);

/* Finds the live entry of key and refreshes its idle time to now_ms. Returns it, or NULL when
 * absent, expired (the expired entry is removed) or the key is invalid. The pointer stays valid
 * until the entry is removed (by nat_remove, nat_remove_by_pid, nat_sweep, an eviction or a
 * lookup finding it expired) or the table is freed; do not keep it across such calls. */
struct nat_entry *nat_lookup(struct nat_table *t, const struct nat_key *key, uint64_t now_ms);

/* Finds key's entry, expired or not, without refreshing it or changing anything: for
 * diagnostics and tests. Returns NULL when absent. */
const struct nat_entry *nat_peek(const struct nat_table *t, const struct nat_key *key);

/* Removes key's entry (e.g. on RST, or FIN from both sides). Returns 0, -ENOENT when absent,
 * -EINVAL for a NULL or invalid key. */
int nat_remove(struct nat_table *t, const struct nat_key *key);

/* Removes every entry of pid (e.g. when the process exits), in O(entries of pid).
 * Returns the number removed, or -EINVAL for pid 0 (unknown pids are not indexed). */
int nat_remove_by_pid(struct nat_table *t, uint32_t pid);

/* Removes every entry idle for more than ttl_ms at now_ms; returns how many. Costs time in
 * proportion to the entries removed, not to the table's size (see the LRU note above). */
size_t nat_sweep(struct nat_table *t, uint64_t now_ms);

/* Number of stored entries, including expired ones not yet removed. */
size_t nat_count(const struct nat_table *t);

size_t nat_capacity(const struct nat_table *t);

/* Bytes allocated by nat_new for this table (all of it; nothing is allocated later). */
size_t nat_memory_bytes(const struct nat_table *t);

/* The LRU resolution R described above, in milliseconds. */
uint64_t nat_lru_resolution_ms(const struct nat_table *t);

/* Checks every internal invariant (index <-> entries, LRU queue, pid index, free list, count).
 * Returns NULL when all hold, else a static string naming the first broken one. O(capacity):
 * for tests and debugging. */
const char *nat_check_invariants(const struct nat_table *t);

#endif
