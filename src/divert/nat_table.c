/* nat_table.c — the NAT table: fixed entry storage, an open-addressing index, a lazy LRU queue. */
#include "divert/nat_table.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NIL UINT32_MAX

/* One entry and its place in the LRU queue: 64 bytes on 64-bit ABIs, allocated 64-byte aligned,
 * so that a lookup reads and writes a single cache line per entry. */
struct nat_node {
	struct nat_entry e;
	uint32_t lru_prev; /* towards the head (least recently used); NIL at the head */
	uint32_t lru_next; /* towards the tail; on a free node, the next free node */
};

_Static_assert(sizeof(struct nat_key) == 20, "nat_key must have no padding: it is hashed as bytes");
_Static_assert(sizeof(struct nat_node) <= 64, "nat_node must fit one cache line");

/* A key as three words, normalized: what is hashed, compared and stored. Keys are read and
 * built as whole words, never byte by byte, so that no load waits on narrower stores. */
struct packed_key {
	uint64_t w0;
	uint64_t w1;
	uint32_t w2;
};

/* Kept apart from the nodes: only insert and remove touch them. */
struct nat_pid_link {
	uint32_t prev;
	uint32_t next;
};

struct nat_table {
	struct nat_node *nodes; /* capacity of them, 64-byte aligned inside node_block */
	struct nat_pid_link *pid_links;
	uint32_t *slots;     /* slot_mask + 1; 0 = empty, else tag | (node index + 1) */
	uint32_t *pid_heads; /* pid_mask + 1 chain heads, NIL when empty */
	void *node_block;

	uint32_t capacity;
	uint32_t count;
	uint32_t slot_mask;
	uint32_t pid_mask;
	uint32_t index_mask; /* the low bits of a slot; the bits above hold the hash tag */
	uint32_t lru_head;
	uint32_t lru_tail;
	uint32_t free_head;
	unsigned lru_shift; /* log2 of the LRU resolution R */

	uint64_t ttl_ms;
	uint64_t min_evict_idle_ms;
	uint64_t seed;
	uint64_t hash_keep; /* all ones, or 0 under test_constant_hash */
	uint64_t now_ms;    /* the largest now_ms seen */
	struct packed_key v4_mask; /* keeps an IPv4 key's family, 4 bytes, protocol, port */
	size_t memory_bytes;
};

static const uint64_t MUL1 = 0x9e3779b97f4a7c15u;
static const uint64_t MUL2 = 0xc2b2ae3d27d4eb4fu;
static const uint64_t MUL3 = 0x165667b19e3779f9u;
static const uint64_t MUL4 = 0xd6e8feb86659fd93u;

static bool family_valid(uint8_t family)
{
	return family == ADDR_V4 || family == ADDR_V6;
}

/* Copies a into out with the bytes beyond the family's length zeroed. */
static bool normalize_addr(struct addr *out, const struct addr *a)
{
	if (!family_valid(a->family))
		return false;
	memset(out, 0, sizeof *out);
	out->family = a->family;
	memcpy(out->bytes, a->bytes, a->family == ADDR_V4 ? 4 : 16);
	return true;
}

static void key_words(const struct nat_key *k, struct packed_key *p)
{
	const unsigned char *b = (const unsigned char *)k;
	memcpy(&p->w0, b, 8);
	memcpy(&p->w1, b + 8, 8);
	memcpy(&p->w2, b + 16, 4);
}

static void key_store(struct nat_key *k, const struct packed_key *p)
{
	unsigned char *b = (unsigned char *)k;
	memcpy(b, &p->w0, 8);
	memcpy(b + 8, &p->w1, 8);
	memcpy(b + 16, &p->w2, 4);
}

/* Every probed and stored key goes through here, so that equal flows are equal words. */
static bool key_pack(const struct nat_table *t, const struct nat_key *k, struct packed_key *p)
{
	if (k->protocol != NAT_PROTO_TCP && k->protocol != NAT_PROTO_UDP)
		return false;
	key_words(k, p);
	if (k->addr.family == ADDR_V4) {
		p->w0 &= t->v4_mask.w0;
		p->w1 &= t->v4_mask.w1;
		p->w2 &= t->v4_mask.w2;
		return true;
	}
	return k->addr.family == ADDR_V6;
}

static bool key_equal(const struct nat_key *stored, const struct packed_key *p)
{
	struct packed_key s;
	key_words(stored, &s);
	return ((s.w0 ^ p->w0) | (s.w1 ^ p->w1) | (uint64_t)(s.w2 ^ p->w2)) == 0;
}

/* The low bits choose the home slot, the top 32 bits give the tag. */
static uint64_t hash_key(const struct nat_table *t, const struct packed_key *p)
{
	uint64_t h = (t->seed ^ p->w0) * MUL1;
	h = (h ^ (h >> 32) ^ p->w1) * MUL2;
	h = (h ^ (h >> 32) ^ p->w2) * MUL3;
	h ^= h >> 29;
	h *= MUL4;
	h ^= h >> 32;
	return h & t->hash_keep;
}

static uint64_t hash_stored(const struct nat_table *t, uint32_t idx)
{
	struct packed_key p;
	key_words(&t->nodes[idx].e.key, &p);
	return hash_key(t, &p);
}

static uint32_t pid_bucket(const struct nat_table *t, uint32_t pid)
{
	uint64_t h = (t->seed ^ pid) * MUL2;
	h ^= h >> 32;
	h *= MUL3;
	h ^= h >> 29;
	return (uint32_t)(h & t->hash_keep) & t->pid_mask;
}

static uint32_t slot_tag(const struct nat_table *t, uint64_t h)
{
	return (uint32_t)(h >> 32) & ~t->index_mask;
}

static uint32_t slot_node(const struct nat_table *t, uint32_t slot_value)
{
	return (slot_value & t->index_mask) - 1;
}

/* Returns the slot holding k (hashing to h), or NIL; then *empty, when not NULL, receives the
 * empty slot that ended the probe, where k belongs. Inlined: the lookup's whole hot path is
 * one short stretch of code, which lets the processor overlap the cache misses of several
 * lookups. */
static inline uint32_t find_slot(const struct nat_table *t, const struct packed_key *k,
				 uint64_t h, uint32_t *empty)
{
	uint32_t i = (uint32_t)h & t->slot_mask;
	uint32_t tag = slot_tag(t, h);
	for (;;) {
		uint32_t s = t->slots[i];
		if (s == 0) {
			if (empty)
				*empty = i;
			return NIL;
		}
		if ((s & ~t->index_mask) == tag && key_equal(&t->nodes[slot_node(t, s)].e.key, k))
			return i;
		i = (i + 1) & t->slot_mask;
	}
}

/* The slot pointing at in-use node idx. */
static uint32_t slot_of_node(const struct nat_table *t, uint32_t idx)
{
	uint32_t i = (uint32_t)hash_stored(t, idx) & t->slot_mask;
	while ((t->slots[i] & t->index_mask) != idx + 1)
		i = (i + 1) & t->slot_mask;
	return i;
}

/* Empties slot i and shifts later members of its cluster back, so that no probe sequence
 * crosses a hole (deletion without tombstones). */
static void index_delete(struct nat_table *t, uint32_t i)
{
	uint32_t j = i;
	for (;;) {
		uint32_t s, home;
		j = (j + 1) & t->slot_mask;
		s = t->slots[j];
		if (s == 0)
			break;
		home = (uint32_t)hash_stored(t, slot_node(t, s)) & t->slot_mask;
		/* s may fill the hole unless its home lies (cyclically) in (i, j]. */
		if (((j - home) & t->slot_mask) >= ((j - i) & t->slot_mask)) {
			t->slots[i] = s;
			i = j;
		}
	}
	t->slots[i] = 0;
}

static void lru_unlink(struct nat_table *t, uint32_t idx)
{
	struct nat_node *n = &t->nodes[idx];
	if (n->lru_prev != NIL)
		t->nodes[n->lru_prev].lru_next = n->lru_next;
	else
		t->lru_head = n->lru_next;
	if (n->lru_next != NIL)
		t->nodes[n->lru_next].lru_prev = n->lru_prev;
	else
		t->lru_tail = n->lru_prev;
}

static void lru_push_tail(struct nat_table *t, uint32_t idx)
{
	struct nat_node *n = &t->nodes[idx];
	n->lru_prev = t->lru_tail;
	n->lru_next = NIL;
	if (t->lru_tail != NIL)
		t->nodes[t->lru_tail].lru_next = idx;
	else
		t->lru_head = idx;
	t->lru_tail = idx;
}

static void lru_move_tail(struct nat_table *t, uint32_t idx)
{
	if (t->lru_tail == idx)
		return;
	lru_unlink(t, idx);
	lru_push_tail(t, idx);
}

static void pid_link(struct nat_table *t, uint32_t idx)
{
	uint32_t pid = t->nodes[idx].e.pid, b, head;
	if (pid == 0)
		return;
	b = pid_bucket(t, pid);
	head = t->pid_heads[b];
	t->pid_links[idx].prev = NIL;
	t->pid_links[idx].next = head;
	if (head != NIL)
		t->pid_links[head].prev = idx;
	t->pid_heads[b] = idx;
}

static void pid_unlink(struct nat_table *t, uint32_t idx)
{
	struct nat_pid_link *l = &t->pid_links[idx];
	if (t->nodes[idx].e.pid == 0)
		return;
	if (l->prev != NIL)
		t->pid_links[l->prev].next = l->next;
	else
		t->pid_heads[pid_bucket(t, t->nodes[idx].e.pid)] = l->next;
	if (l->next != NIL)
		t->pid_links[l->next].prev = l->prev;
}

/* Removes in-use node idx, whose index slot is slot, from every structure. */
static void remove_node(struct nat_table *t, uint32_t slot, uint32_t idx)
{
	struct nat_node *n = &t->nodes[idx];
	index_delete(t, slot);
	lru_unlink(t, idx);
	pid_unlink(t, idx);
	n->e.key.addr.family = ADDR_NONE;
	n->lru_prev = NIL;
	n->lru_next = t->free_head;
	t->free_head = idx;
	t->count--;
}

static uint64_t advance_clock(struct nat_table *t, uint64_t now_ms)
{
	if (now_ms > t->now_ms)
		t->now_ms = now_ms;
	return t->now_ms;
}

static uint32_t pow2_at_least(uint64_t n)
{
	uint32_t p = 1;
	while (p < n)
		p <<= 1;
	return p;
}

int nat_new(struct nat_table **out, const struct nat_config *cfg)
{
	struct nat_table *t;
	struct nat_key mask;
	uint32_t nslots, npids, bits;
	size_t node_bytes;
	uint64_t r;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!cfg || cfg->capacity == 0 || cfg->capacity > NAT_CAPACITY_MAX || cfg->ttl_ms == 0 ||
	    cfg->min_evict_idle_ms > cfg->ttl_ms)
		return -EINVAL;

	t = calloc(1, sizeof *t);
	if (!t)
		return -ENOMEM;
	t->capacity = cfg->capacity;
	t->ttl_ms = cfg->ttl_ms;
	t->min_evict_idle_ms = cfg->min_evict_idle_ms;
	t->seed = cfg->hash_seed;
	t->hash_keep = cfg->test_constant_hash ? 0 : UINT64_MAX;
	for (bits = 0; (cfg->capacity >> bits) != 0; bits++)
		;
	t->index_mask = (1u << bits) - 1;
	nslots = pow2_at_least(2 * (uint64_t)cfg->capacity);
	npids = pow2_at_least(cfg->capacity / 4);
	t->slot_mask = nslots - 1;
	t->pid_mask = npids - 1;
	for (r = cfg->ttl_ms / 16; r > 1; r >>= 1)
		t->lru_shift++;
	memset(&mask, 0, sizeof mask);
	mask.addr.family = 0xff;
	memset(mask.addr.bytes, 0xff, 4);
	mask.protocol = 0xff;
	mask.port = 0xffff;
	key_words(&mask, &t->v4_mask);

	node_bytes = (size_t)cfg->capacity * sizeof(struct nat_node) + 63;
	t->node_block = malloc(node_bytes);
	t->pid_links = malloc((size_t)cfg->capacity * sizeof *t->pid_links);
	t->slots = calloc(nslots, sizeof *t->slots);
	t->pid_heads = malloc((size_t)npids * sizeof *t->pid_heads);
	if (!t->node_block || !t->pid_links || !t->slots || !t->pid_heads)
		goto fail;
	t->nodes = (struct nat_node *)(((uintptr_t)t->node_block + 63) & ~(uintptr_t)63);
	t->memory_bytes = sizeof *t + node_bytes + (size_t)cfg->capacity * sizeof *t->pid_links +
			  (size_t)nslots * sizeof *t->slots + (size_t)npids * sizeof *t->pid_heads;

	memset(t->nodes, 0, (size_t)cfg->capacity * sizeof *t->nodes);
	for (uint32_t i = 0; i < cfg->capacity; i++) {
		t->nodes[i].lru_prev = NIL;
		t->nodes[i].lru_next = i + 1 < cfg->capacity ? i + 1 : NIL;
	}
	memset(t->pid_heads, 0xff, (size_t)npids * sizeof *t->pid_heads);
	t->free_head = 0;
	t->lru_head = NIL;
	t->lru_tail = NIL;
	*out = t;
	return 0;
fail:
	nat_free(t);
	return -ENOMEM;
}

void nat_free(struct nat_table *t)
{
	if (!t)
		return;
	free(t->node_block);
	free(t->pid_links);
	free(t->slots);
	free(t->pid_heads);
	free(t);
}

int nat_insert(struct nat_table *t, const struct nat_key *key, const struct addr *orig_dst,
	       uint16_t orig_port, uint32_t pid, uint64_t now_ms, struct nat_key *evicted)
{
	struct packed_key k;
	struct addr dst;
	struct nat_node *n;
	uint32_t slot, empty = 0, idx;
	uint64_t h, now;
	int rc = 0;

	if (!t || !key || !orig_dst || !key_pack(t, key, &k) || !normalize_addr(&dst, orig_dst))
		return -EINVAL;
	now = advance_clock(t, now_ms);
	h = hash_key(t, &k);
	slot = find_slot(t, &k, h, &empty);
	if (slot != NIL) {
		idx = slot_node(t, t->slots[slot]);
		n = &t->nodes[idx];
		if (n->e.pid != pid) {
			pid_unlink(t, idx);
			n->e.pid = pid;
			pid_link(t, idx);
		}
		lru_move_tail(t, idx);
	} else {
		if (t->count == t->capacity) {
			uint32_t victim = t->lru_head;
			if (now - t->nodes[victim].e.last_used_ms < t->min_evict_idle_ms)
				return -ENOSPC;
			if (evicted)
				*evicted = t->nodes[victim].e.key;
			remove_node(t, slot_of_node(t, victim), victim);
			/* The deletion may have shifted the cluster k probes through. */
			find_slot(t, &k, h, &empty);
			rc = 1;
		}
		idx = t->free_head;
		n = &t->nodes[idx];
		t->free_head = n->lru_next;
		key_store(&n->e.key, &k);
		n->e.pid = pid;
		pid_link(t, idx);
		lru_push_tail(t, idx);
		t->slots[empty] = slot_tag(t, h) | (idx + 1);
		t->count++;
	}
	n->e.last_used_ms = now;
	n->e.orig_dst = dst;
	n->e.orig_port = orig_port;
	n->e.flags = 0;
	n->e.client_port = 0;
	n->e.client_slot = 0;
	return rc;
}

struct nat_entry *nat_lookup(struct nat_table *t, const struct nat_key *key, uint64_t now_ms)
{
	struct packed_key k;
	struct nat_node *n;
	uint32_t slot, idx;
	uint64_t now;

	if (!t || !key || !key_pack(t, key, &k))
		return NULL;
	now = advance_clock(t, now_ms);
	slot = find_slot(t, &k, hash_key(t, &k), NULL);
	if (slot == NIL)
		return NULL;
	idx = slot_node(t, t->slots[slot]);
	n = &t->nodes[idx];
	if (now - n->e.last_used_ms > t->ttl_ms) {
		remove_node(t, slot, idx);
		return NULL;
	}
	/* Lazy LRU: requeue only when the previous use was in an earlier R-window. */
	if ((now >> t->lru_shift) != (n->e.last_used_ms >> t->lru_shift))
		lru_move_tail(t, idx);
	n->e.last_used_ms = now;
	return &n->e;
}

const struct nat_entry *nat_peek(const struct nat_table *t, const struct nat_key *key)
{
	struct packed_key k;
	uint32_t slot;

	if (!t || !key || !key_pack(t, key, &k))
		return NULL;
	slot = find_slot(t, &k, hash_key(t, &k), NULL);
	return slot == NIL ? NULL : &t->nodes[slot_node(t, t->slots[slot])].e;
}

int nat_remove(struct nat_table *t, const struct nat_key *key)
{
	struct packed_key k;
	uint32_t slot;

	if (!t || !key || !key_pack(t, key, &k))
		return -EINVAL;
	slot = find_slot(t, &k, hash_key(t, &k), NULL);
	if (slot == NIL)
		return -ENOENT;
	remove_node(t, slot, slot_node(t, t->slots[slot]));
	return 0;
}

int nat_remove_by_pid(struct nat_table *t, uint32_t pid)
{
	uint32_t idx, next;
	int removed = 0;

	if (!t || pid == 0)
		return -EINVAL;
	for (idx = t->pid_heads[pid_bucket(t, pid)]; idx != NIL; idx = next) {
		next = t->pid_links[idx].next;
		if (t->nodes[idx].e.pid != pid)
			continue;
		remove_node(t, slot_of_node(t, idx), idx);
		removed++;
	}
	return removed;
}

/* The LRU queue is ordered by each entry's queueing time q, and an entry's q lies in
 * [start of the R-window of last_used, last_used]. So once an entry's window starts at or after
 * the cutoff, it and every entry behind it are alive; before that, alive entries are skipped. */
size_t nat_sweep(struct nat_table *t, uint64_t now_ms)
{
	uint64_t now, cutoff, window_mask;
	uint32_t idx, next;
	size_t removed = 0;

	if (!t)
		return 0;
	now = advance_clock(t, now_ms);
	if (now <= t->ttl_ms)
		return 0;
	cutoff = now - t->ttl_ms;
	window_mask = ~(((uint64_t)1 << t->lru_shift) - 1);
	for (idx = t->lru_head; idx != NIL; idx = next) {
		uint64_t used = t->nodes[idx].e.last_used_ms;
		next = t->nodes[idx].lru_next;
		if (used < cutoff) {
			remove_node(t, slot_of_node(t, idx), idx);
			removed++;
		} else if ((used & window_mask) >= cutoff) {
			break;
		}
	}
	return removed;
}

size_t nat_count(const struct nat_table *t)
{
	return t ? t->count : 0;
}

size_t nat_capacity(const struct nat_table *t)
{
	return t ? t->capacity : 0;
}

size_t nat_memory_bytes(const struct nat_table *t)
{
	return t ? t->memory_bytes : 0;
}

uint64_t nat_lru_resolution_ms(const struct nat_table *t)
{
	return t ? (uint64_t)1 << t->lru_shift : 0;
}

static const char *check_nodes(const struct nat_table *t)
{
	uint32_t in_use = 0, free_count = 0;
	for (uint32_t i = 0; i < t->capacity; i++) {
		const struct nat_entry *e = &t->nodes[i].e;
		struct packed_key k;
		if (e->key.addr.family == ADDR_NONE)
			continue;
		in_use++;
		if (!key_pack(t, &e->key, &k) || !key_equal(&e->key, &k))
			return "stored key is invalid or not normalized";
		if (e->last_used_ms > t->now_ms)
			return "last_used_ms is in the future";
	}
	if (in_use != t->count)
		return "count differs from the number of in-use entries";
	for (uint32_t i = t->free_head; i != NIL; i = t->nodes[i].lru_next) {
		if (i >= t->capacity || t->nodes[i].e.key.addr.family != ADDR_NONE)
			return "free list holds an in-use or out-of-range entry";
		if (++free_count > t->capacity)
			return "free list loops";
	}
	if (free_count + t->count != t->capacity)
		return "free entries + count != capacity";
	return NULL;
}

static const char *check_index(const struct nat_table *t)
{
	uint32_t occupied = 0;
	for (uint32_t i = 0; i <= t->slot_mask; i++) {
		uint32_t s = t->slots[i], idx;
		struct packed_key k;
		uint64_t h;
		if (s == 0)
			continue;
		occupied++;
		idx = slot_node(t, s);
		if (idx >= t->capacity || t->nodes[idx].e.key.addr.family == ADDR_NONE)
			return "index slot points at a free or out-of-range entry";
		key_words(&t->nodes[idx].e.key, &k);
		h = hash_key(t, &k);
		if ((s & ~t->index_mask) != slot_tag(t, h))
			return "index slot tag does not match the entry's hash";
		if (find_slot(t, &k, h, NULL) != i)
			return "entry is unreachable from its home slot, or its key is duplicated";
	}
	if (occupied != t->count)
		return "occupied index slots != count";
	if (occupied > (t->slot_mask + 1) / 2)
		return "index load factor above 0.5";
	return NULL;
}

static const char *check_lru(const struct nat_table *t)
{
	uint32_t steps = 0, prev = NIL;
	uint64_t window_mask = ~(((uint64_t)1 << t->lru_shift) - 1);
	for (uint32_t i = t->lru_head; i != NIL; i = t->nodes[i].lru_next) {
		if (i >= t->capacity || t->nodes[i].e.key.addr.family == ADDR_NONE)
			return "LRU queue holds a free or out-of-range entry";
		if (t->nodes[i].lru_prev != prev)
			return "LRU queue back link is wrong";
		if (++steps > t->count)
			return "LRU queue is longer than count (or loops)";
		if (prev != NIL && (t->nodes[prev].e.last_used_ms & window_mask) >
					   t->nodes[i].e.last_used_ms)
			return "LRU queue order is broken";
		prev = i;
	}
	if (steps != t->count)
		return "LRU queue is shorter than count";
	if (prev != t->lru_tail)
		return "LRU tail is wrong";
	return NULL;
}

static const char *check_pids(const struct nat_table *t)
{
	uint32_t linked = 0, with_pid = 0;
	for (uint32_t i = 0; i < t->capacity; i++)
		if (t->nodes[i].e.key.addr.family != ADDR_NONE && t->nodes[i].e.pid != 0)
			with_pid++;
	for (uint32_t b = 0; b <= t->pid_mask; b++) {
		uint32_t prev = NIL;
		for (uint32_t i = t->pid_heads[b]; i != NIL; i = t->pid_links[i].next) {
			const struct nat_entry *e;
			if (i >= t->capacity)
				return "pid chain holds an out-of-range entry";
			e = &t->nodes[i].e;
			if (e->key.addr.family == ADDR_NONE || e->pid == 0)
				return "pid chain holds a free or pid-0 entry";
			if (pid_bucket(t, e->pid) != b)
				return "entry is chained in the wrong pid bucket";
			if (t->pid_links[i].prev != prev)
				return "pid chain back link is wrong";
			if (++linked > with_pid)
				return "pid chains hold more entries than have a pid (or loop)";
			prev = i;
		}
	}
	if (linked != with_pid)
		return "an entry with a pid is missing from the pid index";
	return NULL;
}

const char *nat_check_invariants(const struct nat_table *t)
{
	const char *err;
	if (!t)
		return "table is NULL";
	if (t->count > t->capacity)
		return "count above capacity";
	if ((err = check_nodes(t)) || (err = check_index(t)) || (err = check_lru(t)) ||
	    (err = check_pids(t)))
		return err;
	return NULL;
}
