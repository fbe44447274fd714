/* dns_watch.c — pairs DNS queries seen leaving with the answers seen arriving (dns_watch.h). */
#include "proxy/dns_watch.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"

struct watch_entry {
	struct dns_watch_flow flow;
	struct dns_question question;
	uint64_t deadline_ms;
	uint32_t hnext; /* bucket chain: index + 1, 0 ends */
	uint16_t id;
	bool used;
};

/* Entries are reused in arrival order: slot `next` holds the query remembered `capacity`
 * queries ago (or nothing), so a full table forgets its oldest query. */
struct dns_watch {
	struct watch_entry *e;
	uint32_t *buckets; /* index + 1, 0 empty */
	uint32_t capacity, n_buckets, next, count;
	uint64_t seed;
	struct dns_watch_stats stats;
	struct dns_message scratch; /* the parsed query */
};

int dns_watch_new(struct dns_watch **out, size_t capacity, uint64_t seed)
{
	struct dns_watch *w;

	*out = NULL;
	if (capacity == 0)
		capacity = DNS_WATCH_DEFAULT_CAPACITY;
	if (capacity > DNS_WATCH_CAPACITY_MAX)
		return -EINVAL;
	w = calloc(1, sizeof *w);
	if (!w)
		return -ENOMEM;
	w->capacity = (uint32_t)capacity;
	w->n_buckets = 1;
	while (w->n_buckets < w->capacity)
		w->n_buckets <<= 1;
	w->seed = seed;
	w->e = calloc(w->capacity, sizeof *w->e);
	w->buckets = calloc(w->n_buckets, sizeof *w->buckets);
	if (!w->e || !w->buckets) {
		dns_watch_free(w);
		return -ENOMEM;
	}
	*out = w;
	return 0;
}

void dns_watch_free(struct dns_watch *w)
{
	if (!w)
		return;
	free(w->e);
	free(w->buckets);
	free(w);
}

/* Folds the bytes addr_equal compares (addr_len of them) into h. */
static uint64_t fold_addr(uint64_t h, const struct addr *a)
{
	size_t n = addr_len(a);

	for (size_t i = 0; i < n; i += 4) {
		uint64_t v = (uint64_t)a->bytes[i] << 24 | (uint64_t)a->bytes[i + 1] << 16 |
			     (uint64_t)a->bytes[i + 2] << 8 | a->bytes[i + 3];
		h = hash_mix64(h ^ v);
	}
	return hash_mix64(h ^ a->family);
}

static uint32_t bucket_of(const struct dns_watch *w, const struct dns_watch_flow *f, uint16_t id)
{
	uint64_t h = w->seed ^ ((uint64_t)id << 32 | (uint64_t)f->client_port << 16 | f->server_port);
	h = fold_addr(hash_mix64(h), &f->client);
	h = fold_addr(h, &f->server);
	return (uint32_t)h & (w->n_buckets - 1);
}

static bool flow_equal(const struct dns_watch_flow *a, const struct dns_watch_flow *b)
{
	return a->client_port == b->client_port && a->server_port == b->server_port &&
	       addr_equal(&a->client, &b->client) && addr_equal(&a->server, &b->server);
}

/* The entry (index + 1) remembered for (f, id), 0 when none. */
static uint32_t find(const struct dns_watch *w, const struct dns_watch_flow *f, uint16_t id)
{
	for (uint32_t x = w->buckets[bucket_of(w, f, id)]; x; x = w->e[x - 1].hnext) {
		const struct watch_entry *e = &w->e[x - 1];
		if (e->id == id && flow_equal(&e->flow, f))
			return x;
	}
	return 0;
}

static void forget(struct dns_watch *w, uint32_t x)
{
	struct watch_entry *e = &w->e[x - 1];
	uint32_t *link = &w->buckets[bucket_of(w, &e->flow, e->id)];

	while (*link && *link != x)
		link = &w->e[*link - 1].hnext;
	if (*link)
		*link = e->hnext;
	e->used = false;
	e->hnext = 0;
	w->count--;
}

int dns_watch_query(struct dns_watch *w, const struct dns_watch_flow *f, const uint8_t *msg,
		    size_t len, uint64_t now_ms)
{
	struct dns_message *q = &w->scratch;
	uint32_t x;

	if (dns_parse_query(msg, len, q) != 0 || q->header.opcode != DNS_OPCODE_QUERY) {
		w->stats.bad_queries++;
		return -EBADMSG;
	}
	w->stats.queries++;
	x = find(w, f, q->header.id);
	if (x) /* a retransmission, or the id reused for another question: the newest counts, */
		forget(w, x); /* in the newest slot */
	x = w->next + 1;
	w->next = (w->next + 1) % w->capacity;
	if (w->e[x - 1].used) {
		if (w->e[x - 1].deadline_ms > now_ms)
			w->stats.evicted++;
		forget(w, x);
	}
	struct watch_entry *e = &w->e[x - 1];
	uint32_t b = bucket_of(w, f, q->header.id);
	*e = (struct watch_entry){
		.flow = *f,
		.question = q->question,
		.deadline_ms = now_ms + DNS_WATCH_TIMEOUT_MS,
		.hnext = w->buckets[b],
		.id = q->header.id,
		.used = true,
	};
	w->buckets[b] = x;
	w->count++;
	return 0;
}

int dns_watch_answer(struct dns_watch *w, const struct dns_watch_flow *f, const uint8_t *msg,
		     size_t len, uint64_t now_ms, struct dns_message *out)
{
	uint32_t x;

	if (dns_parse_response(msg, len, out) != 0) {
		w->stats.malformed++;
		return -EBADMSG;
	}
	x = find(w, f, out->header.id);
	if (!x || out->header.opcode != DNS_OPCODE_QUERY || !out->has_question ||
	    !dns_question_match(&w->e[x - 1].question, &out->question)) {
		w->stats.unmatched++;
		return -ENOENT;
	}
	if (w->e[x - 1].deadline_ms <= now_ms) {
		forget(w, x);
		w->stats.late++;
		return -ENOENT;
	}
	forget(w, x);
	w->stats.matched++;
	return 0;
}

size_t dns_watch_count(const struct dns_watch *w)
{
	return w->count;
}

void dns_watch_get_stats(const struct dns_watch *w, struct dns_watch_stats *out)
{
	*out = w->stats;
}
