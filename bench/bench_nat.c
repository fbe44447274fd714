/* bench_nat.c — NAT table lookups/s, inserts/s and bytes per entry, against the seed's string map.
 *
 * The baseline is the seed plan's design, written here in C: a chained hash map keyed by the
 * string "ip:port" (built with snprintf for every operation), one malloc'd node and key per
 * entry. Keys are random IPv4 client addresses and ports; lookups hit present keys in a random
 * order. Run a Release build (-DCMAKE_BUILD_TYPE=Release) for meaningful numbers.
 */
#define _POSIX_C_SOURCE 200809L

#include "divert/nat_table.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const uint64_t TTL_MS = 5 * 60 * 1000;
/* Each figure is the best of TRIALS trials of at least TRIAL_SECONDS each: on a shared machine
 * the best trial is the one least disturbed by other work. */
enum { TRIALS = 3 };
static const double TRIAL_SECONDS = 0.15;

static double seconds_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng_state = 0x243f6a8885a308d3u;

static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1du;
}

static void fail(const char *what)
{
	fprintf(stderr, "bench_nat: %s\n", what);
	exit(1);
}

/* ---- The baseline: the seed's map[string]*NATEntry ---- */

struct seed_entry {
	struct addr orig_dst;
	uint16_t orig_port;
	char protocol[4]; /* "tcp" */
	uint32_t pid;
	uint64_t created_ms;
};

struct seed_node {
	struct seed_node *next;
	char *key;
	struct seed_entry *entry;
};

struct seed_map {
	struct seed_node **buckets;
	size_t mask;
	size_t bytes;
};

static void seed_key(char *buf, size_t n, const struct nat_key *k)
{
	const uint8_t *b = k->addr.bytes;
	snprintf(buf, n, "%u.%u.%u.%u:%u", b[0], b[1], b[2], b[3], k->port);
}

static size_t seed_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325u;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3u;
	return (size_t)h;
}

static void seed_new(struct seed_map *m, size_t n)
{
	size_t nb = 1;
	while (nb < n)
		nb <<= 1;
	m->buckets = calloc(nb, sizeof *m->buckets);
	if (!m->buckets)
		fail("out of memory");
	m->mask = nb - 1;
	m->bytes = nb * sizeof *m->buckets;
}

static void seed_free(struct seed_map *m)
{
	for (size_t i = 0; i <= m->mask; i++) {
		struct seed_node *n = m->buckets[i], *next;
		for (; n; n = next) {
			next = n->next;
			free(n->key);
			free(n->entry);
			free(n);
		}
	}
	free(m->buckets);
}

static void seed_insert(struct seed_map *m, const struct nat_key *k, const struct seed_entry *e)
{
	char key[64];
	struct seed_node *n;
	size_t b, len;

	seed_key(key, sizeof key, k);
	b = seed_hash(key) & m->mask;
	for (n = m->buckets[b]; n; n = n->next) {
		if (strcmp(n->key, key) == 0) {
			*n->entry = *e;
			return;
		}
	}
	len = strlen(key) + 1;
	n = malloc(sizeof *n);
	if (!n || !(n->key = malloc(len)) || !(n->entry = malloc(sizeof *n->entry)))
		fail("out of memory");
	memcpy(n->key, key, len);
	*n->entry = *e;
	n->next = m->buckets[b];
	m->buckets[b] = n;
	m->bytes += sizeof *n + len + sizeof *n->entry;
}

static const struct seed_entry *seed_lookup(const struct seed_map *m, const struct nat_key *k)
{
	char key[64];
	seed_key(key, sizeof key, k);
	for (const struct seed_node *n = m->buckets[seed_hash(key) & m->mask]; n; n = n->next)
		if (strcmp(n->key, key) == 0)
			return n->entry;
	return NULL;
}

/* ---- Measurements ---- */

struct figures {
	double lookups;
	double inserts;
	double bytes_per_entry;
};

static struct nat_key *make_keys(size_t n)
{
	struct nat_key *keys = calloc(n, sizeof *keys);
	uint32_t offset = (uint32_t)rng();
	if (!keys)
		fail("out of memory");
	for (size_t i = 0; i < n; i++) {
		/* An odd multiplier permutes 32-bit values: distinct, random-looking addresses. */
		uint32_t a = ((uint32_t)i + offset) * 2654435761u;
		keys[i].addr.family = ADDR_V4;
		memcpy(keys[i].addr.bytes, &a, 4);
		keys[i].protocol = NAT_PROTO_TCP;
		keys[i].port = (uint16_t)(1024 + rng() % 64512);
	}
	return keys;
}

static void shuffle(struct nat_key *keys, size_t n)
{
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = (size_t)(rng() % (i + 1));
		struct nat_key tmp = keys[i];
		keys[i] = keys[j];
		keys[j] = tmp;
	}
}

static struct nat_table *sluice_new(size_t n)
{
	struct nat_config cfg = {
		.capacity = (uint32_t)n,
		.ttl_ms = TTL_MS,
		.min_evict_idle_ms = 1000,
		.hash_seed = rng(),
	};
	struct nat_table *t;
	if (nat_new(&t, &cfg) != 0)
		fail("nat_new failed");
	return t;
}

/* Inserts every key into an empty table; returns the seconds it took. */
static double sluice_fill(struct nat_table *t, const struct nat_key *keys, size_t n)
{
	struct addr dst = {.family = ADDR_V4, .bytes = {140, 82, 114, 4}};
	double start = seconds_now();
	for (size_t i = 0; i < n; i++)
		if (nat_insert(t, &keys[i], &dst, (uint16_t)i, (uint32_t)(i % 97 + 1), 1000, NULL))
			fail("nat_insert failed");
	return seconds_now() - start;
}

/* Looks every key up once, in the given order; returns the seconds it took. */
static double sluice_pass(struct nat_table *t, const struct nat_key *order, size_t n,
			  uint64_t now, uint64_t *sum)
{
	double start = seconds_now();
	for (size_t i = 0; i < n; i++) {
		const struct nat_entry *e = nat_lookup(t, &order[i], now);
		if (!e)
			fail("nat_lookup missed a present key");
		*sum += e->orig_port;
	}
	return seconds_now() - start;
}

static struct figures measure_sluice(const struct nat_key *keys, const struct nat_key *order,
				     size_t n)
{
	struct figures f = {0};
	struct nat_table *t = NULL;
	uint64_t now = 1000, sum = 0;

	for (int trial = 0; trial < TRIALS; trial++) {
		double elapsed = 0;
		size_t rounds = 0;
		do {
			nat_free(t);
			t = sluice_new(n);
			elapsed += sluice_fill(t, keys, n);
			rounds++;
		} while (elapsed < TRIAL_SECONDS);
		if ((double)(rounds * n) / elapsed > f.inserts)
			f.inserts = (double)(rounds * n) / elapsed;
	}
	f.bytes_per_entry = (double)nat_memory_bytes(t) / (double)n;
	for (int trial = 0; trial < TRIALS; trial++) {
		double elapsed = 0;
		size_t passes = 0;
		do {
			elapsed += sluice_pass(t, order, n, ++now, &sum);
			passes++;
		} while (elapsed < TRIAL_SECONDS);
		if ((double)(passes * n) / elapsed > f.lookups)
			f.lookups = (double)(passes * n) / elapsed;
	}
	if (sum == 0 && n > 1)
		fail("checksum is zero");
	nat_free(t);
	return f;
}

static struct figures measure_seed(const struct nat_key *keys, const struct nat_key *order,
				   size_t n)
{
	struct figures f = {0};
	struct seed_map m = {0};
	struct seed_entry e = {.orig_dst = {.family = ADDR_V4, .bytes = {140, 82, 114, 4}},
			       .protocol = "tcp"};
	uint64_t sum = 0;

	for (int trial = 0; trial < TRIALS; trial++) {
		double elapsed = 0;
		size_t rounds = 0;
		do {
			double start;
			if (m.buckets)
				seed_free(&m);
			seed_new(&m, n);
			start = seconds_now();
			for (size_t i = 0; i < n; i++) {
				e.orig_port = (uint16_t)i;
				e.pid = (uint32_t)(i % 97 + 1);
				e.created_ms = 1000;
				seed_insert(&m, &keys[i], &e);
			}
			elapsed += seconds_now() - start;
			rounds++;
		} while (elapsed < TRIAL_SECONDS);
		if ((double)(rounds * n) / elapsed > f.inserts)
			f.inserts = (double)(rounds * n) / elapsed;
	}
	f.bytes_per_entry = (double)m.bytes / (double)n;
	for (int trial = 0; trial < TRIALS; trial++) {
		double elapsed = 0;
		size_t passes = 0;
		do {
			double start = seconds_now();
			for (size_t i = 0; i < n; i++) {
				const struct seed_entry *found = seed_lookup(&m, &order[i]);
				if (!found)
					fail("baseline lookup missed a present key");
				sum += found->orig_port;
			}
			elapsed += seconds_now() - start;
			passes++;
		} while (elapsed < TRIAL_SECONDS);
		if ((double)(passes * n) / elapsed > f.lookups)
			f.lookups = (double)(passes * n) / elapsed;
	}
	if (sum == 0 && n > 1)
		fail("checksum is zero");
	seed_free(&m);
	return f;
}

static void row(const char *figure, double value, const char *unit, double baseline,
		const char *target_text, bool ok)
{
	printf("%-34s %10.2f %-14s %10.2f %8.2fx   %-14s %s\n", figure, value, unit, baseline,
	       value / baseline, target_text, ok ? "ok" : "MISS");
}

int main(void)
{
	static const struct {
		size_t n;
		const char *label;
		double lookup_target; /* M lookups/s */
	} sizes[] = {{1000, "1k", 40}, {1000000, "1M", 10}};
	const double key_bytes = (double)sizeof(struct nat_key);
	int misses = 0;

	printf("bench_nat: sluice NAT table vs the seed's string-keyed chained map (baseline)\n");
	printf("%-34s %10s %-14s %10s %9s   %-14s %s\n", "figure", "value", "unit", "baseline",
	       "ratio", "target", "");
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
		size_t n = sizes[s].n;
		struct nat_key *keys = make_keys(n), *order = malloc(n * sizeof *order);
		struct figures mine, seed;
		char name[64], target[32];
		bool ok;

		if (!order)
			fail("out of memory");
		memcpy(order, keys, n * sizeof *order);
		shuffle(order, n);
		mine = measure_sluice(keys, order, n);
		seed = measure_seed(keys, order, n);

		snprintf(name, sizeof name, "lookups/s, %s entries", sizes[s].label);
		snprintf(target, sizeof target, ">= %.0f M", sizes[s].lookup_target);
		ok = mine.lookups >= sizes[s].lookup_target * 1e6;
		misses += !ok;
		row(name, mine.lookups / 1e6, "M lookups/s", seed.lookups / 1e6, target, ok);

		snprintf(name, sizeof name, "inserts/s, %s entries", sizes[s].label);
		row(name, mine.inserts / 1e6, "M inserts/s", seed.inserts / 1e6, "(report)", true);

		snprintf(name, sizeof name, "bytes/entry beyond key, %s", sizes[s].label);
		ok = mine.bytes_per_entry - key_bytes <= 64.0;
		misses += !ok;
		row(name, mine.bytes_per_entry - key_bytes, "bytes",
		    seed.bytes_per_entry - key_bytes, "<= 64", ok);
		snprintf(name, sizeof name, "bytes/entry total, %s", sizes[s].label);
		row(name, mine.bytes_per_entry, "bytes", seed.bytes_per_entry, "(report)", true);
		free(keys);
		free(order);
	}
	printf("baseline bytes count what it asks malloc for (no allocator overhead); "
	       "the key is %.0f bytes\n", key_bytes);
	/* A MISS is reported, not fatal: scripts/bench.sh runs every bench under set -e. */
	if (misses)
		printf("%d figure(s) missed their target\n", misses);
	return 0;
}
