/* dns_map.c — address -> names from the session's DNS answers: a chained hash index over a fixed
 * pool of entries, and a min-heap on expiry for eviction and sweeping. */
#include "policy/dns_map.h"

#include "base/hash.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NONE UINT32_MAX

struct map_name {
	uint64_t expires_ms; /* live while now < expires_ms */
	uint8_t len;
	char text[DNS_MAP_NAME_MAX + 1];
};

struct map_entry {
	struct addr addr;
	uint8_t n_names;
	uint32_t next;       /* next entry of the same bucket, or of the free list */
	uint32_t heap_pos;
	uint64_t expires_ms; /* the latest of its names' */
	uint64_t seq;        /* when a name was last recorded into it */
};

struct dns_map {
	struct dns_map_config cfg;
	uint64_t now_ms;
	uint64_t seq;
	uint32_t count;
	uint32_t free_head;
	uint32_t bucket_mask;
	uint32_t *buckets;
	uint32_t *heap; /* entry indices; heap[0] is the next to expire */
	struct map_entry *entries;
	struct map_name *names; /* names_per_addr slots per entry, most recent first */
	const char **texts;     /* texts[i] == names[i].text, handed out by dns_map_lookup */
};

void dns_map_config_default(struct dns_map_config *cfg)
{
	cfg->capacity = DNS_MAP_DEFAULT_CAPACITY;
	cfg->names_per_addr = DNS_MAP_DEFAULT_NAMES;
	cfg->min_ttl_s = DNS_MAP_DEFAULT_MIN_TTL_S;
	cfg->max_ttl_s = DNS_MAP_DEFAULT_MAX_TTL_S;
	cfg->hash_seed = 0;
}

int dns_map_new(struct dns_map **out, const struct dns_map_config *cfg)
{
	if (!out || !cfg || cfg->capacity == 0 || cfg->capacity > DNS_MAP_CAPACITY_MAX ||
	    cfg->names_per_addr == 0 || cfg->names_per_addr > DNS_MAP_NAMES_MAX ||
	    cfg->max_ttl_s == 0 || cfg->min_ttl_s > cfg->max_ttl_s)
		return -EINVAL;

	struct dns_map *m = calloc(1, sizeof *m);
	if (!m)
		return -ENOMEM;
	m->cfg = *cfg;
	size_t cap = cfg->capacity, slots = cap * cfg->names_per_addr;
	uint32_t buckets = 1;
	while (buckets < cfg->capacity)
		buckets <<= 1;
	m->bucket_mask = buckets - 1;
	m->buckets = malloc(buckets * sizeof *m->buckets);
	m->heap = malloc(cap * sizeof *m->heap);
	m->entries = calloc(cap, sizeof *m->entries);
	m->names = calloc(slots, sizeof *m->names);
	m->texts = malloc(slots * sizeof *m->texts);
	if (!m->buckets || !m->heap || !m->entries || !m->names || !m->texts)
		goto fail;

	memset(m->buckets, 0xff, buckets * sizeof *m->buckets);
	for (size_t i = 0; i < slots; i++)
		m->texts[i] = m->names[i].text;
	for (uint32_t i = 0; i < cfg->capacity; i++)
		m->entries[i].next = i + 1 < cfg->capacity ? i + 1 : NONE;
	m->free_head = 0;
	*out = m;
	return 0;
fail:
	dns_map_free(m);
	return -ENOMEM;
}

void dns_map_free(struct dns_map *m)
{
	if (!m)
		return;
	free(m->buckets);
	free(m->heap);
	free(m->entries);
	free(m->names);
	free(m->texts);
	free(m);
}

static uint32_t bucket_of(const struct dns_map *m, const struct addr *a)
{
	uint64_t lo, hi;
	memcpy(&lo, a->bytes, 8);
	memcpy(&hi, a->bytes + 8, 8);
	uint64_t h = hash_mix64(m->cfg.hash_seed ^ lo ^ a->family);
	h = hash_mix64(h ^ hi);
	return (uint32_t)h & m->bucket_mask;
}

static struct map_name *names_of(const struct dns_map *m, uint32_t e)
{
	return m->names + (size_t)e * m->cfg.names_per_addr;
}

/* Normalises `a` for a key: IPv4-mapped becomes IPv4, IPv4's unused bytes zero. */
static bool key_of(const struct addr *a, struct addr *key)
{
	if (a->family != ADDR_V4 && a->family != ADDR_V6)
		return false;
	addr_unmap_v4(a, key);
	if (key->family == ADDR_V4)
		memset(key->bytes + 4, 0, 12);
	return true;
}

static uint32_t find(const struct dns_map *m, const struct addr *key)
{
	for (uint32_t e = m->buckets[bucket_of(m, key)]; e != NONE; e = m->entries[e].next) {
		if (addr_equal(&m->entries[e].addr, key))
			return e;
	}
	return NONE;
}

/* Heap order: sooner expiry first, then older sequence. */
static bool heap_less(const struct dns_map *m, uint32_t a, uint32_t b)
{
	const struct map_entry *x = &m->entries[a], *y = &m->entries[b];
	return x->expires_ms != y->expires_ms ? x->expires_ms < y->expires_ms : x->seq < y->seq;
}

static void heap_set(struct dns_map *m, uint32_t pos, uint32_t e)
{
	m->heap[pos] = e;
	m->entries[e].heap_pos = pos;
}

static void heap_fix(struct dns_map *m, uint32_t pos)
{
	uint32_t e = m->heap[pos];
	while (pos > 0) {
		uint32_t parent = (pos - 1) / 2;
		if (!heap_less(m, e, m->heap[parent]))
			break;
		heap_set(m, pos, m->heap[parent]);
		pos = parent;
	}
	for (;;) {
		uint32_t child = 2 * pos + 1;
		if (child >= m->count)
			break;
		if (child + 1 < m->count && heap_less(m, m->heap[child + 1], m->heap[child]))
			child++;
		if (!heap_less(m, m->heap[child], e))
			break;
		heap_set(m, pos, m->heap[child]);
		pos = child;
	}
	heap_set(m, pos, e);
}

static void remove_entry(struct dns_map *m, uint32_t e)
{
	struct map_entry *entry = &m->entries[e];
	uint32_t *link = &m->buckets[bucket_of(m, &entry->addr)];
	while (*link != e)
		link = &m->entries[*link].next;
	*link = entry->next;

	uint32_t pos = entry->heap_pos;
	m->count--;
	if (pos != m->count) {
		heap_set(m, pos, m->heap[m->count]);
		heap_fix(m, pos);
	}
	entry->n_names = 0;
	entry->next = m->free_head;
	m->free_head = e;
}

/* Drops the expired names of e, keeping the order of the others; updates its expiry. */
static void purge_names(struct dns_map *m, uint32_t e)
{
	struct map_entry *entry = &m->entries[e];
	struct map_name *names = names_of(m, e);
	size_t kept = 0;
	uint64_t latest = 0;
	for (size_t i = 0; i < entry->n_names; i++) {
		if (names[i].expires_ms <= m->now_ms)
			continue;
		if (kept != i)
			names[kept] = names[i];
		if (names[kept].expires_ms > latest)
			latest = names[kept].expires_ms;
		kept++;
	}
	if (kept == entry->n_names)
		return;
	entry->n_names = (uint8_t)kept;
	entry->expires_ms = latest;
	heap_fix(m, entry->heap_pos);
}

/* Lowercases a host name into out (DNS_MAP_NAME_MAX + 1 bytes) without its trailing dot.
 * Returns its length, or 0 when it is not a host name. */
static size_t normalize(const char *name, char *out)
{
	size_t n = 0;
	while (n <= DNS_MAP_NAME_MAX + 1 && name[n])
		n++;
	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n == 0 || n > DNS_MAP_NAME_MAX)
		return 0;
	size_t label = 0;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
		} else {
			if (c >= 'A' && c <= 'Z')
				c = (char)(c - 'A' + 'a');
			else if (!(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') && c != '-' &&
				 c != '_')
				return 0;
			if (++label > DNS_LABEL_MAX)
				return 0;
		}
		out[i] = c;
	}
	if (label == 0)
		return 0;
	out[n] = '\0';
	return n;
}

static void advance_clock(struct dns_map *m, uint64_t now_ms)
{
	if (now_ms > m->now_ms)
		m->now_ms = now_ms;
}

int dns_map_insert(struct dns_map *m, const struct addr *a, const char *name, uint32_t ttl_s,
		   uint64_t now_ms)
{
	char text[DNS_MAP_NAME_MAX + 1];
	struct addr key;
	size_t len;
	if (!m || !a || !name || !key_of(a, &key) || (len = normalize(name, text)) == 0)
		return -EINVAL;
	advance_clock(m, now_ms);

	uint32_t ttl = ttl_s < m->cfg.min_ttl_s ? m->cfg.min_ttl_s
		       : ttl_s > m->cfg.max_ttl_s ? m->cfg.max_ttl_s : ttl_s;
	uint64_t lifetime = (uint64_t)ttl * 1000;
	uint64_t expires = m->now_ms > UINT64_MAX - lifetime ? UINT64_MAX : m->now_ms + lifetime;

	int rc = 0;
	uint32_t e = find(m, &key);
	if (e == NONE) {
		if (m->count == m->cfg.capacity) {
			remove_entry(m, m->heap[0]);
			rc = 1;
		}
		e = m->free_head;
		struct map_entry *entry = &m->entries[e];
		m->free_head = entry->next;
		entry->addr = key;
		entry->n_names = 0;
		entry->expires_ms = 0;
		uint32_t *bucket = &m->buckets[bucket_of(m, &key)];
		entry->next = *bucket;
		*bucket = e;
		heap_set(m, m->count++, e);
	} else {
		purge_names(m, e);
	}

	struct map_entry *entry = &m->entries[e];
	struct map_name *names = names_of(m, e);
	size_t at = entry->n_names;
	for (size_t i = 0; i < entry->n_names; i++) {
		if (names[i].len == len && memcmp(names[i].text, text, len) == 0) {
			at = i;
			break;
		}
	}
	struct map_name fresh;
	if (at < entry->n_names) {
		fresh = names[at];
		if (expires > fresh.expires_ms)
			fresh.expires_ms = expires;
	} else {
		if (entry->n_names < m->cfg.names_per_addr)
			entry->n_names++;
		at = entry->n_names - 1u;
		fresh.expires_ms = expires;
		fresh.len = (uint8_t)len;
		memcpy(fresh.text, text, len + 1);
	}
	memmove(names + 1, names, at * sizeof *names);
	names[0] = fresh;

	entry->expires_ms = 0;
	for (size_t i = 0; i < entry->n_names; i++) {
		if (names[i].expires_ms > entry->expires_ms)
			entry->expires_ms = names[i].expires_ms;
	}
	entry->seq = ++m->seq;
	heap_fix(m, entry->heap_pos);
	return rc;
}

size_t dns_map_record_response(struct dns_map *m, const struct dns_message *r, uint64_t now_ms)
{
	if (!m || !r || !r->has_question || r->header.rcode != DNS_RCODE_NOERROR ||
	    r->question.qclass != DNS_CLASS_IN || !r->question.name.hostname)
		return 0;

	const struct dns_name *chain[DNS_MAP_CHAIN_MAX + 1];
	size_t n_chain = 1;
	chain[0] = &r->question.name;
	while (n_chain <= DNS_MAP_CHAIN_MAX) {
		const struct dns_name *target = NULL;
		for (size_t i = 0; i < r->n_answers && !target; i++) {
			const struct dns_record *rec = &r->answers[i];
			if (rec->type == DNS_TYPE_CNAME &&
			    dns_name_equal(&rec->owner, chain[n_chain - 1]))
				target = &rec->target;
		}
		for (size_t i = 0; i < n_chain && target; i++) {
			if (dns_name_equal(chain[i], target))
				target = NULL; /* a CNAME loop */
		}
		if (!target)
			break;
		chain[n_chain++] = target;
	}

	char texts[DNS_MAP_CHAIN_MAX + 1][DNS_MAP_NAME_MAX + 1];
	for (size_t i = 0; i < n_chain; i++) {
		if (!chain[i]->hostname ||
		    dns_name_format(chain[i], DNS_NAME_LOWER, texts[i], sizeof texts[i]) < 0)
			texts[i][0] = '\0';
	}

	size_t recorded = 0;
	for (size_t i = 0; i < r->n_answers; i++) {
		const struct dns_record *rec = &r->answers[i];
		if (rec->type != DNS_TYPE_A && rec->type != DNS_TYPE_AAAA)
			continue;
		size_t depth = n_chain;
		for (size_t k = 0; k < n_chain && depth == n_chain; k++) {
			if (dns_name_equal(&rec->owner, chain[k]))
				depth = k;
		}
		if (depth == n_chain)
			continue;
		for (size_t k = depth + 1; k-- > 0;) {
			if (texts[k][0] && dns_map_insert(m, &rec->address, texts[k], rec->ttl,
							  now_ms) >= 0)
				recorded++;
		}
	}
	return recorded;
}

size_t dns_map_lookup(struct dns_map *m, const struct addr *a, uint64_t now_ms,
		      const char *const **names)
{
	struct addr key;
	*names = NULL;
	if (!m || !a || !key_of(a, &key))
		return 0;
	advance_clock(m, now_ms);
	uint32_t e = find(m, &key);
	if (e == NONE)
		return 0;
	purge_names(m, e);
	if (m->entries[e].n_names == 0) {
		remove_entry(m, e);
		return 0;
	}
	*names = m->texts + (size_t)e * m->cfg.names_per_addr;
	return m->entries[e].n_names;
}

size_t dns_map_sweep(struct dns_map *m, uint64_t now_ms)
{
	size_t removed = 0;
	advance_clock(m, now_ms);
	while (m->count > 0 && m->entries[m->heap[0]].expires_ms <= m->now_ms) {
		remove_entry(m, m->heap[0]);
		removed++;
	}
	return removed;
}

size_t dns_map_count(const struct dns_map *m)
{
	return m->count;
}

size_t dns_map_capacity(const struct dns_map *m)
{
	return m->cfg.capacity;
}

size_t dns_map_memory_bytes(const struct dns_map *m)
{
	size_t cap = m->cfg.capacity, slots = cap * m->cfg.names_per_addr;
	return sizeof *m + ((size_t)m->bucket_mask + 1) * sizeof *m->buckets +
	       cap * (sizeof *m->heap + sizeof *m->entries) +
	       slots * (sizeof *m->names + sizeof *m->texts);
}

const char *dns_map_check_invariants(const struct dns_map *m)
{
	size_t indexed = 0;
	for (uint32_t b = 0; b <= m->bucket_mask; b++) {
		for (uint32_t e = m->buckets[b]; e != NONE; e = m->entries[e].next) {
			if (e >= m->cfg.capacity || ++indexed > m->count)
				return "bucket chain leaves the pool or is longer than the count";
			const struct map_entry *entry = &m->entries[e];
			if (bucket_of(m, &entry->addr) != b)
				return "entry in the wrong bucket";
			if (entry->heap_pos >= m->count || m->heap[entry->heap_pos] != e)
				return "entry and heap disagree";
			if (entry->n_names == 0 || entry->n_names > m->cfg.names_per_addr)
				return "entry with no names or too many";
			const struct map_name *names = names_of(m, e);
			uint64_t latest = 0;
			for (size_t i = 0; i < entry->n_names; i++) {
				char text[DNS_MAP_NAME_MAX + 1];
				if (normalize(names[i].text, text) != names[i].len ||
				    strcmp(text, names[i].text) != 0)
					return "stored name not normalised";
				for (size_t j = 0; j < i; j++) {
					if (strcmp(names[i].text, names[j].text) == 0)
						return "name stored twice for one address";
				}
				if (names[i].expires_ms > latest)
					latest = names[i].expires_ms;
			}
			if (latest != entry->expires_ms)
				return "entry expiry is not its latest name's";
		}
	}
	if (indexed != m->count)
		return "count does not match the index";
	for (uint32_t pos = 1; pos < m->count; pos++) {
		if (heap_less(m, m->heap[pos], m->heap[(pos - 1) / 2]))
			return "heap order broken";
	}
	size_t free_entries = 0;
	for (uint32_t e = m->free_head; e != NONE; e = m->entries[e].next) {
		if (e >= m->cfg.capacity || ++free_entries > m->cfg.capacity - m->count)
			return "free list leaves the pool or is too long";
	}
	if (free_entries != m->cfg.capacity - m->count)
		return "free list too short";
	return NULL;
}
