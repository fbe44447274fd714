/* test_nat_table.c — the NAT table: the seed's tests, the full-table rule, TTL, a model check. */
#include "divert/nat_table.h"
#include "check.h"

#include <errno.h>

#define TCP NAT_PROTO_TCP
#define UDP NAT_PROTO_UDP

static struct addr ip(const char *text)
{
	struct addr a;
	memset(&a, 0, sizeof a);
	if (addr_parse(&a, text, strlen(text)) != 0) {
		fprintf(stderr, "test bug: bad address %s\n", text);
		exit(2);
	}
	return a;
}

static struct nat_key key(uint8_t protocol, const char *text, uint16_t port)
{
	struct nat_key k;
	memset(&k, 0, sizeof k);
	k.addr = ip(text);
	k.protocol = protocol;
	k.port = port;
	return k;
}

static struct nat_table *table_with(uint32_t capacity, uint64_t ttl, uint64_t min_evict, bool flat)
{
	struct nat_config cfg = {
		.capacity = capacity,
		.ttl_ms = ttl,
		.min_evict_idle_ms = min_evict,
		.hash_seed = 0x5eed5eed1234abcdu,
		.test_constant_hash = flat,
	};
	struct nat_table *t = NULL;
	int rc = nat_new(&t, &cfg);
	if (rc != 0 || !t) {
		fprintf(stderr, "test bug: nat_new(%u) = %d\n", capacity, rc);
		exit(2);
	}
	return t;
}

static struct nat_table *table(uint32_t capacity, uint64_t ttl, uint64_t min_evict)
{
	return table_with(capacity, ttl, min_evict, false);
}

static bool same_key(const struct nat_key *a, const struct nat_key *b)
{
	return a->protocol == b->protocol && a->port == b->port && addr_equal(&a->addr, &b->addr);
}

#define CHECK_INVARIANTS(t)                                                        \
	do {                                                                       \
		const char *inv_ = nat_check_invariants(t);                        \
		if (inv_)                                                          \
			check_fail(__FILE__, __LINE__, "invariant broken: %s", inv_); \
	} while (0)

/* Seed: TestNATTable_InsertAndLookup. */
static void test_insert_and_lookup(void)
{
	struct nat_table *t = table(64, 300000, 1000);
	struct nat_key k = key(TCP, "127.0.0.1", 54321);
	struct addr dst = ip("140.82.114.4");
	struct nat_entry *e;

	CHECK_EQ(nat_insert(t, &k, &dst, 443, 1234, 1000, NULL), 0);
	CHECK_EQ(nat_count(t), 1);
	e = nat_lookup(t, &k, 1500);
	CHECK(e != NULL);
	if (e) {
		CHECK(addr_equal(&e->orig_dst, &dst));
		CHECK_EQ(e->orig_port, 443);
		CHECK_EQ(e->pid, 1234);
		CHECK_EQ(e->last_used_ms, 1500);
		CHECK_EQ(e->flags, 0);
		CHECK_EQ(e->client_port, 0);
		CHECK_EQ(e->client_slot, 0);
		CHECK(same_key(&e->key, &k));
	}
	CHECK_INVARIANTS(t);
	nat_free(t);
}

/* Seed: TestNATTable_LookupMissing, plus near misses of a stored key. */
static void test_lookup_missing(void)
{
	struct nat_table *t = table(64, 300000, 1000);
	struct nat_key stored = key(TCP, "127.0.0.1", 54321);
	struct addr dst = ip("140.82.114.4");
	const struct nat_key misses[] = {
		key(TCP, "127.0.0.1", 54322),
		key(TCP, "127.0.0.2", 54321),
		key(UDP, "127.0.0.1", 54321),
		key(TCP, "::1", 54321),
	};

	CHECK(nat_lookup(t, &stored, 0) == NULL);
	CHECK_EQ(nat_insert(t, &stored, &dst, 443, 1, 0, NULL), 0);
	for (size_t i = 0; i < sizeof misses / sizeof misses[0]; i++) {
		check_case("miss %zu", i);
		CHECK(nat_lookup(t, &misses[i], 1) == NULL);
		CHECK(nat_peek(t, &misses[i]) == NULL);
	}
	check_case("%s", "");
	CHECK_EQ(nat_count(t), 1);
	CHECK_INVARIANTS(t);
	nat_free(t);
}

/* Seed: TestNATTable_RemoveByPID. */
static void test_remove_by_pid(void)
{
	struct nat_table *t = table(64, 300000, 1000);
	struct nat_key k1 = key(TCP, "127.0.0.1", 1001), k2 = key(TCP, "127.0.0.1", 1002),
		       k3 = key(TCP, "127.0.0.1", 1003);
	struct addr dst = ip("198.51.100.7");

	CHECK_EQ(nat_insert(t, &k1, &dst, 80, 100, 0, NULL), 0);
	CHECK_EQ(nat_insert(t, &k2, &dst, 443, 100, 0, NULL), 0);
	CHECK_EQ(nat_insert(t, &k3, &dst, 80, 200, 0, NULL), 0);
	CHECK_EQ(nat_remove_by_pid(t, 100), 2);
	CHECK(nat_lookup(t, &k1, 1) == NULL);
	CHECK(nat_lookup(t, &k2, 1) == NULL);
	CHECK(nat_lookup(t, &k3, 1) != NULL);
	CHECK_EQ(nat_count(t), 1);
	CHECK_EQ(nat_remove_by_pid(t, 100), 0);
	CHECK_EQ(nat_remove_by_pid(t, 999), 0);
	CHECK_EQ(nat_remove_by_pid(t, 0), -EINVAL);
	CHECK_INVARIANTS(t);
	CHECK_EQ(nat_remove_by_pid(t, 200), 1);
	CHECK_EQ(nat_count(t), 0);
	CHECK_INVARIANTS(t);
	nat_free(t);
}

/* Seed: TestNATTable_TTLExpiry, with time passed in instead of slept. Idle exactly ttl is
 * still alive; one millisecond more is expired. */
static void test_ttl_expiry(void)
{
	struct nat_table *t = table(8, 50, 10);
	struct nat_key k = key(TCP, "127.0.0.1", 1001);
	struct addr dst = ip("198.51.100.7");

	CHECK_EQ(nat_insert(t, &k, &dst, 80, 100, 1000, NULL), 0);
	CHECK(nat_lookup(t, &k, 1000) != NULL);
	CHECK_EQ(nat_sweep(t, 1050), 0);
	CHECK_EQ(nat_count(t), 1);
	CHECK_EQ(nat_sweep(t, 1051), 1);
	CHECK_EQ(nat_count(t), 0);
	CHECK(nat_lookup(t, &k, 1051) == NULL);
	CHECK_EQ(nat_remove_by_pid(t, 100), 0);
	CHECK_INVARIANTS(t);
	nat_free(t);
}

/* Defect 7 of the seed: a flow in use must not expire ttl after its creation. */
static void test_ttl_refreshed_by_use(void)
{
	struct nat_table *t = table(8, 100, 10);
	struct nat_key k = key(TCP, "127.0.0.1", 40000);
	struct addr dst = ip("203.0.113.5");

	CHECK_EQ(nat_insert(t, &k, &dst, 443, 7, 0, NULL), 0);
	for (uint64_t now = 90; now <= 900; now += 90) {
		check_case("now %llu", (unsigned long long)now);
		CHECK(nat_lookup(t, &k, now) != NULL);
		CHECK_EQ(nat_sweep(t, now), 0);
	}
	check_case("%s", "");
	CHECK_EQ(nat_sweep(t, 1000), 0);
	CHECK(nat_peek(t, &k) != NULL);
	CHECK_EQ(nat_sweep(t, 1001), 1);
	CHECK(nat_peek(t, &k) == NULL);

	/* An insert of the same key refreshes too; a peek does not. */
	CHECK_EQ(nat_insert(t, &k, &dst, 443, 7, 2000, NULL), 0);
	CHECK_EQ(nat_insert(t, &k, &dst, 443, 7, 2080, NULL), 0);
	CHECK(nat_peek(t, &k) != NULL);
	CHECK_EQ(nat_sweep(t, 2180), 0);
	CHECK(nat_peek(t, &k) != NULL);
	CHECK_EQ(nat_sweep(t, 2181), 1);
	CHECK_INVARIANTS(t);
	nat_free(t);
}

/* What callers see does not depend on when they sweep: a lookup never returns an expired
 * entry, and removes it. */
static void test_lookup_removes_expired(void)
{
	struct nat_table *t = table(8, 100, 10);
	struct nat_key k = key(UDP, "10.0.0.2", 5353);
	struct addr dst = ip("192.0.2.53");

	CHECK_EQ(nat_insert(t, &k, &dst, 53, 0, 0, NULL), 0);
	CHECK(nat_lookup(t, &k, 100) != NULL);
	CHECK(nat_lookup(t, &k, 201) == NULL);
	CHECK_EQ(nat_count(t), 0);
	CHECK(nat_peek(t, &k) == NULL);
	CHECK_EQ(nat_remove(t, &k), -ENOENT);
	CHECK_INVARIANTS(t);
	nat_free(t);
}

/* The table keeps its own "now": an earlier now_ms counts as the latest seen. */
static void test_time_never_runs_backwards(void)
{
	struct nat_table *t = table(8, 100, 10);
	struct nat_key k = key(TCP, "10.0.0.2", 1234);
	struct addr dst = ip("192.0.2.80");
	struct nat_entry *e;

	CHECK_EQ(nat_insert(t, &k, &dst, 80, 0, 1000, NULL), 0);
	e = nat_lookup(t, &k, 500);
	CHECK(e != NULL);
	if (e)
		CHECK_EQ(e->last_used_ms, 1000);
	CHECK(nat_lookup(t, &k, 1050) != NULL);
	CHECK_EQ(nat_sweep(t, 10), 0);
	CHECK(nat_lookup(t, &k, 1150) != NULL);
	CHECK(nat_lookup(t, &k, 1251) == NULL);
	CHECK_INVARIANTS(t);
	nat_free(t);
}

/* Full table, first path: the LRU entry has been idle long enough, so it gives way. */
static void test_full_table_evicts_idle(void)
{
	struct nat_table *t = table(2, 1000, 100);
	struct nat_key a = key(TCP, "10.0.0.1", 1), b = key(TCP, "10.0.0.1", 2),
		       c = key(TCP, "10.0.0.1", 3), evicted;
	struct addr dst = ip("192.0.2.1");

	CHECK_EQ(nat_insert(t, &a, &dst, 80, 1, 0, NULL), 0);
	CHECK_EQ(nat_insert(t, &b, &dst, 80, 1, 10, NULL), 0);
	memset(&evicted, 0, sizeof evicted);
	CHECK_EQ(nat_insert(t, &c, &dst, 80, 1, 99, &evicted), -ENOSPC);
	CHECK_EQ(evicted.addr.family, ADDR_NONE);
	CHECK_EQ(nat_count(t), 2);
	CHECK(nat_peek(t, &a) != NULL);
	CHECK(nat_peek(t, &c) == NULL);
	CHECK_EQ(nat_insert(t, &c, &dst, 80, 1, 100, &evicted), 1);
	CHECK(same_key(&evicted, &a));
	CHECK_EQ(nat_count(t), 2);
	CHECK(nat_peek(t, &a) == NULL);
	CHECK(nat_peek(t, &b) != NULL);
	CHECK(nat_peek(t, &c) != NULL);
	CHECK_INVARIANTS(t);
	nat_free(t);
}

/* Full table, second path: a flood of new flows while every stored flow carries traffic is
 * refused and changes nothing; once the traffic stops, the flood recycles the idle flows. */
static void test_full_table_refuses_live_flows(void)
{
	enum { LIVE = 4 };
	struct nat_table *t = table(LIVE, 1000, 500);
	struct nat_key live[LIVE], flood;
	struct addr dst = ip("192.0.2.1");
	uint64_t now = 0;
	int refused = 0;

	for (int i = 0; i < LIVE; i++) {
		live[i] = key(TCP, "10.0.0.1", (uint16_t)(100 + i));
		CHECK_EQ(nat_insert(t, &live[i], &dst, 443, 9, 0, NULL), 0);
	}
	for (now = 0; now <= 3000; now += 10) {
		for (int i = 0; i < LIVE; i++)
			CHECK(nat_lookup(t, &live[i], now) != NULL);
		flood = key(TCP, "10.0.0.66", (uint16_t)(1000 + now / 10));
		if (nat_insert(t, &flood, &dst, 443, 66, now, NULL) == -ENOSPC)
			refused++;
	}
	CHECK_EQ(refused, 301);
	CHECK_EQ(nat_count(t), LIVE);
	for (int i = 0; i < LIVE; i++)
		CHECK(nat_peek(t, &live[i]) != NULL);
	CHECK_EQ(nat_remove_by_pid(t, 66), 0);

	flood = key(TCP, "10.0.0.66", 9);
	CHECK_EQ(nat_insert(t, &flood, &dst, 443, 66, 3000 + 499, NULL), -ENOSPC);
	CHECK_EQ(nat_insert(t, &flood, &dst, 443, 66, 3000 + 500, NULL), 1);
	CHECK(nat_peek(t, &flood) != NULL);
	CHECK_EQ(nat_count(t), LIVE);
	CHECK_INVARIANTS(t);
	nat_free(t);
}

/* With a TTL under 16 ms the LRU resolution is 1 ms, so the victim is the exact LRU entry. */
static void test_eviction_picks_lru(void)
{
	struct nat_table *t = table(3, 15, 0);
	struct nat_key a = key(TCP, "10.0.0.1", 1), b = key(TCP, "10.0.0.1", 2),
		       c = key(TCP, "10.0.0.1", 3), d = key(TCP, "10.0.0.1", 4),
		       e = key(TCP, "10.0.0.1", 5), f = key(TCP, "10.0.0.1", 6), evicted;
	struct addr dst = ip("192.0.2.1");

	CHECK_EQ(nat_lru_resolution_ms(t), 1);
	CHECK_EQ(nat_insert(t, &a, &dst, 80, 0, 0, NULL), 0);
	CHECK_EQ(nat_insert(t, &b, &dst, 80, 0, 1, NULL), 0);
	CHECK_EQ(nat_insert(t, &c, &dst, 80, 0, 2, NULL), 0);
	CHECK(nat_lookup(t, &a, 3) != NULL);
	CHECK_EQ(nat_insert(t, &d, &dst, 80, 0, 4, &evicted), 1);
	CHECK(same_key(&evicted, &b));
	CHECK_EQ(nat_insert(t, &e, &dst, 80, 0, 5, &evicted), 1);
	CHECK(same_key(&evicted, &c));
	CHECK_EQ(nat_insert(t, &f, &dst, 80, 0, 6, &evicted), 1);
	CHECK(same_key(&evicted, &a));
	CHECK(nat_peek(t, &d) && nat_peek(t, &e) && nat_peek(t, &f));
	CHECK_INVARIANTS(t);
	nat_free(t);
}

static void test_capacity_one(void)
{
	struct nat_table *t = table(1, 100, 10);
	struct nat_key a = key(TCP, "10.0.0.1", 1), b = key(UDP, "10.0.0.1", 1), evicted;
	struct addr dst = ip("192.0.2.1");

	CHECK_EQ(nat_capacity(t), 1);
	CHECK_EQ(nat_insert(t, &a, &dst, 80, 5, 0, NULL), 0);
	CHECK_EQ(nat_insert(t, &b, &dst, 53, 5, 5, NULL), -ENOSPC);
	CHECK(nat_lookup(t, &a, 5) != NULL);
	CHECK_EQ(nat_insert(t, &b, &dst, 53, 5, 14, NULL), -ENOSPC);
	CHECK_EQ(nat_insert(t, &a, &dst, 81, 5, 14, NULL), 0);
	CHECK_EQ(nat_insert(t, &b, &dst, 53, 6, 24, &evicted), 1);
	CHECK(same_key(&evicted, &a));
	CHECK(nat_lookup(t, &a, 24) == NULL);
	CHECK(nat_lookup(t, &b, 24) != NULL);
	CHECK_EQ(nat_remove_by_pid(t, 5), 0);
	CHECK_EQ(nat_remove(t, &b), 0);
	CHECK_EQ(nat_count(t), 0);
	CHECK_EQ(nat_insert(t, &a, &dst, 80, 5, 25, NULL), 0);
	CHECK_EQ(nat_count(t), 1);
	CHECK_INVARIANTS(t);
	nat_free(t);
}

static uint32_t pid_of(int i)
{
	return (uint32_t)(i % 4 + 1);
}

/* Every key in one probe cluster and every pid in one bucket: backward-shift deletion from
 * the middle, the front and the end of a long cluster, and pid chains shared by many pids. */
static void test_hash_collisions(void)
{
	enum { N = 64 };
	struct nat_table *t = table_with(N, 100000, 1000, true);
	struct nat_key k[N];
	struct addr dst = ip("192.0.2.1");

	for (int i = 0; i < N; i++) {
		char text[32];
		snprintf(text, sizeof text, "%s%d", i % 2 ? "2001:db8::" : "10.1.0.", i);
		k[i] = key(i % 3 ? TCP : UDP, text, (uint16_t)(2000 + i));
		CHECK_EQ(nat_insert(t, &k[i], &dst, (uint16_t)i, pid_of(i), 1, NULL), 0);
	}
	CHECK_INVARIANTS(t);
	for (int i = 0; i < N; i++) {
		const struct nat_entry *e = nat_lookup(t, &k[i], 2);
		check_case("key %d", i);
		CHECK(e != NULL);
		if (e)
			CHECK_EQ(e->orig_port, i);
	}
	for (int i = 0; i < N; i += 2) {
		check_case("remove %d", i);
		CHECK_EQ(nat_remove(t, &k[i]), 0);
		CHECK_INVARIANTS(t);
	}
	for (int i = 0; i < N; i++) {
		check_case("after removals, key %d", i);
		CHECK((nat_lookup(t, &k[i], 3) != NULL) == (i % 2 == 1));
	}
	for (int i = 0; i < N; i += 2) {
		check_case("reinsert %d", i);
		CHECK_EQ(nat_insert(t, &k[i], &dst, (uint16_t)i, pid_of(i), 4, NULL), 0);
	}
	check_case("%s", "");
	CHECK_EQ(nat_count(t), N);
	CHECK_INVARIANTS(t);
	CHECK_EQ(nat_remove_by_pid(t, 2), N / 4);
	CHECK_EQ(nat_count(t), N - N / 4);
	for (int i = 0; i < N; i++) {
		check_case("after remove_by_pid, key %d", i);
		CHECK((nat_peek(t, &k[i]) != NULL) == (i % 4 != 1));
	}
	check_case("%s", "");
	CHECK_INVARIANTS(t);
	CHECK_EQ(nat_remove(t, &k[N - 1]), 0);
	CHECK_EQ(nat_remove(t, &k[0]), 0);
	CHECK_INVARIANTS(t);
	nat_free(t);
}

/* Key i of many distinct ones: mixed protocols and families, scattered addresses and ports. */
static struct nat_key many_key(uint32_t i)
{
	struct nat_key k;
	uint32_t scattered = i * 2654435761u;
	memset(&k, 0, sizeof k);
	k.protocol = i % 5 ? TCP : UDP;
	k.addr.family = i % 3 ? ADDR_V4 : ADDR_V6;
	memcpy(k.addr.bytes, &scattered, 4);
	k.port = (uint16_t)(i * 7919u);
	return k;
}

static uint32_t many_pid(uint32_t i)
{
	return i % 50 + 1;
}

/* A full table of distinct keys with the real hash. */
static void test_many_keys(void)
{
	enum { N = 4096 };
	struct nat_table *t = table(N, 100000, 1000);
	struct addr dst = ip("192.0.2.1");
	uint32_t found = 0, removed = 0, pid2_left = 0;

	for (uint32_t i = 0; i < N; i++) {
		struct nat_key k = many_key(i);
		if (nat_insert(t, &k, &dst, (uint16_t)i, many_pid(i), 0, NULL) != 0)
			check_fail(__FILE__, __LINE__, "insert %u failed", i);
	}
	CHECK_EQ(nat_count(t), N);
	CHECK_INVARIANTS(t);
	for (uint32_t i = 0; i < N; i++) {
		struct nat_key k = many_key(i);
		const struct nat_entry *e = nat_lookup(t, &k, 1);
		if (e && e->orig_port == (uint16_t)i)
			found++;
		if (i % 2 == 0 && nat_remove(t, &k) == 0)
			removed++;
		else if (many_pid(i) == 2)
			pid2_left++;
	}
	CHECK_EQ(found, N);
	CHECK_EQ(removed, N / 2);
	CHECK_EQ(nat_count(t), N / 2);
	CHECK(pid2_left > 0);
	CHECK_EQ(nat_remove_by_pid(t, 2), pid2_left);
	CHECK_EQ(nat_count(t), N / 2 - pid2_left);
	CHECK_INVARIANTS(t);
	nat_free(t);
}

static void test_ipv6_keys(void)
{
	struct nat_table *t = table(16, 100000, 1000);
	struct nat_key k6 = key(TCP, "2001:db8::1", 50000), k6b = key(TCP, "2001:db8::2", 50000);
	struct addr dst6 = ip("2001:db8:ffff::443"), dst4 = ip("198.51.100.1");
	const struct nat_entry *e;

	CHECK_EQ(nat_insert(t, &k6, &dst6, 443, 42, 0, NULL), 0);
	CHECK_EQ(nat_insert(t, &k6b, &dst4, 80, 42, 0, NULL), 0);
	e = nat_lookup(t, &k6, 1);
	CHECK(e != NULL);
	if (e) {
		CHECK(addr_equal(&e->orig_dst, &dst6));
		CHECK_EQ(e->key.addr.family, ADDR_V6);
	}
	e = nat_lookup(t, &k6b, 1);
	CHECK(e != NULL);
	if (e)
		CHECK(addr_equal(&e->orig_dst, &dst4));
	CHECK_EQ(nat_remove_by_pid(t, 42), 2);
	CHECK_INVARIANTS(t);
	nat_free(t);
}

/* Keys that share bytes but not meaning are different flows. */
static void test_distinct_keys(void)
{
	const struct nat_key keys[] = {
		key(TCP, "192.0.2.1", 443),
		key(TCP, "c000:201::", 443),       /* the same first four bytes, as IPv6 */
		key(TCP, "::ffff:192.0.2.1", 443), /* IPv4-mapped is not unmapped by the table */
		key(UDP, "192.0.2.1", 443),
		key(UDP, "c000:201::", 443),
		key(TCP, "192.0.2.1", 444),
	};
	enum { N = sizeof keys / sizeof keys[0] };
	struct nat_table *t = table(N, 100000, 1000);
	struct addr dst = ip("203.0.113.9");

	for (int i = 0; i < N; i++)
		CHECK_EQ(nat_insert(t, &keys[i], &dst, (uint16_t)(100 + i), 0, 0, NULL), 0);
	CHECK_EQ(nat_count(t), N);
	for (int i = 0; i < N; i++) {
		const struct nat_entry *e = nat_lookup(t, &keys[i], 1);
		check_case("key %d", i);
		CHECK(e != NULL);
		if (e)
			CHECK_EQ(e->orig_port, 100 + i);
	}
	check_case("%s", "");
	CHECK_EQ(nat_remove(t, &keys[0]), 0);
	CHECK_EQ(nat_count(t), N - 1);
	for (int i = 1; i < N; i++)
		CHECK(nat_peek(t, &keys[i]) != NULL);
	CHECK_INVARIANTS(t);
	nat_free(t);
}

/* addr.h says IPv4 keeps zeros after its four bytes; the table does not rely on callers for it. */
static void test_ipv4_tail_bytes_ignored(void)
{
	struct nat_table *t = table(4, 100000, 1000);
	struct nat_key clean = key(TCP, "10.0.0.7", 999), dirty = clean;
	struct addr dst = ip("192.0.2.1");
	const struct nat_entry *e;

	memset(dirty.addr.bytes + 4, 0xa5, 12);
	CHECK_EQ(nat_insert(t, &dirty, &dst, 80, 0, 0, NULL), 0);
	e = nat_lookup(t, &clean, 1);
	CHECK(e != NULL);
	if (e)
		CHECK_MEM_EQ(&e->key, &clean, sizeof clean);
	CHECK_EQ(nat_insert(t, &clean, &dst, 81, 0, 2, NULL), 0);
	CHECK_EQ(nat_count(t), 1);
	CHECK_EQ(nat_remove(t, &dirty), 0);
	CHECK_INVARIANTS(t);
	nat_free(t);
}

static void test_key_reuse_after_remove(void)
{
	struct nat_table *t = table(4, 100000, 1000);
	struct nat_key k = key(TCP, "127.0.0.1", 54321);
	struct addr first = ip("192.0.2.1"), second = ip("198.51.100.2");
	const struct nat_entry *e;

	CHECK_EQ(nat_insert(t, &k, &first, 80, 10, 0, NULL), 0);
	CHECK_EQ(nat_remove(t, &k), 0);
	CHECK_EQ(nat_remove(t, &k), -ENOENT);
	CHECK(nat_lookup(t, &k, 1) == NULL);
	CHECK_EQ(nat_insert(t, &k, &second, 8080, 11, 2, NULL), 0);
	e = nat_lookup(t, &k, 3);
	CHECK(e != NULL);
	if (e) {
		CHECK(addr_equal(&e->orig_dst, &second));
		CHECK_EQ(e->orig_port, 8080);
		CHECK_EQ(e->pid, 11);
	}
	CHECK_EQ(nat_remove_by_pid(t, 10), 0);
	CHECK_EQ(nat_count(t), 1);
	CHECK_INVARIANTS(t);
	nat_free(t);
}

/* A new flow reusing a client port replaces the old entry: new destination, pid, and the
 * caller-owned fields back to 0. */
static void test_replace_existing_key(void)
{
	struct nat_table *t = table(4, 100000, 1000);
	struct nat_key k = key(TCP, "127.0.0.1", 54321);
	struct addr first = ip("192.0.2.1"), second = ip("2001:db8::5");
	struct nat_entry *e;

	CHECK_EQ(nat_insert(t, &k, &first, 80, 100, 0, NULL), 0);
	e = nat_lookup(t, &k, 1);
	CHECK(e != NULL);
	if (e) {
		CHECK_EQ(e->client_port, 0);
		CHECK_EQ(e->client_slot, 0);
		e->flags = 3;
		e->client_port = 40000;
		e->client_slot = 7;
	}
	e = nat_lookup(t, &k, 2);
	CHECK(e && e->flags == 3 && e->client_port == 40000 && e->client_slot == 7);
	CHECK_EQ(nat_insert(t, &k, &second, 443, 200, 3, NULL), 0);
	CHECK_EQ(nat_count(t), 1);
	e = nat_lookup(t, &k, 4);
	CHECK(e != NULL);
	if (e) {
		CHECK(addr_equal(&e->orig_dst, &second));
		CHECK_EQ(e->orig_port, 443);
		CHECK_EQ(e->pid, 200);
		CHECK_EQ(e->flags, 0);
		CHECK_EQ(e->client_port, 0);
		CHECK_EQ(e->client_slot, 0);
	}
	CHECK_INVARIANTS(t);
	CHECK_EQ(nat_insert(t, &k, &second, 443, 0, 5, NULL), 0); /* pid now unknown */
	CHECK_INVARIANTS(t);
	CHECK_EQ(nat_insert(t, &k, &second, 443, 200, 6, NULL), 0);
	CHECK_EQ(nat_remove_by_pid(t, 100), 0);
	CHECK_EQ(nat_remove_by_pid(t, 200), 1);
	CHECK_EQ(nat_count(t), 0);
	CHECK_INVARIANTS(t);
	nat_free(t);
}

/* Entries leaving by eviction or sweep leave the pid index too. */
static void test_pid_index_after_evict_and_sweep(void)
{
	struct nat_table *t = table(2, 100, 10);
	struct nat_key a = key(TCP, "10.0.0.1", 1), b = key(TCP, "10.0.0.1", 2),
		       c = key(TCP, "10.0.0.1", 3), d = key(TCP, "10.0.0.1", 4);
	struct addr dst = ip("192.0.2.1");

	CHECK_EQ(nat_insert(t, &a, &dst, 80, 7, 0, NULL), 0);
	CHECK_EQ(nat_insert(t, &b, &dst, 80, 7, 5, NULL), 0);
	CHECK_EQ(nat_insert(t, &c, &dst, 80, 8, 10, NULL), 1);
	CHECK_INVARIANTS(t);
	CHECK_EQ(nat_remove_by_pid(t, 7), 1);
	CHECK_EQ(nat_insert(t, &d, &dst, 80, 9, 20, NULL), 0);
	CHECK_EQ(nat_sweep(t, 111), 1); /* c, idle 101 */
	CHECK_INVARIANTS(t);
	CHECK_EQ(nat_remove_by_pid(t, 8), 0);
	CHECK_EQ(nat_remove_by_pid(t, 9), 1);
	CHECK_EQ(nat_count(t), 0);
	CHECK_INVARIANTS(t);
	nat_free(t);
}

/* Sweeps remove exactly the expired entries, also with an LRU resolution above 1 ms. */
static void test_sweep_exact(void)
{
	enum { N = 200 };
	struct nat_table *t = table(N, 3200, 100);
	struct addr dst = ip("192.0.2.1");
	struct nat_key k[N];

	CHECK_EQ(nat_lru_resolution_ms(t), 128);
	CHECK_EQ(nat_sweep(t, 0), 0);
	/* Some entries are used again 10 ms after their insert, mostly inside the same 128 ms
	 * window: they stay at their old queue place, behind which others expire first. */
	for (int i = 0; i < N; i++) {
		k[i] = key(TCP, "10.9.9.9", (uint16_t)(1 + i));
		CHECK_EQ(nat_insert(t, &k[i], &dst, 80, 1, (uint64_t)i * 10, NULL), 0);
		if (i % 4 == 1)
			CHECK(nat_lookup(t, &k[i - 1], (uint64_t)i * 10) != NULL);
	}
	/* Every third entry is used again at 2000, which moves it to the queue's tail. */
	for (int i = 0; i < N; i += 3)
		CHECK(nat_lookup(t, &k[i], 2000) != NULL);
	for (uint64_t now = 2000; now <= 5500; now += 7) {
		size_t expected = 0;
		for (int i = 0; i < N; i++) {
			const struct nat_entry *e = nat_peek(t, &k[i]);
			if (e && now - e->last_used_ms > 3200)
				expected++;
		}
		check_case("now %llu", (unsigned long long)now);
		CHECK_EQ(nat_sweep(t, now), expected);
		CHECK_INVARIANTS(t);
	}
	check_case("%s", "");
	CHECK_EQ(nat_count(t), 0);
	nat_free(t);
}

struct config_case {
	const char *name;
	struct nat_config cfg;
	int rc;
};

static void test_invalid_arguments(void)
{
	static const struct config_case cases[] = {
		{"ok", {.capacity = 1, .ttl_ms = 1, .min_evict_idle_ms = 1}, 0},
		{"capacity 0", {.capacity = 0, .ttl_ms = 1000, .min_evict_idle_ms = 0}, -EINVAL},
		{"capacity too big",
		 {.capacity = NAT_CAPACITY_MAX + 1, .ttl_ms = 1000, .min_evict_idle_ms = 0},
		 -EINVAL},
		{"ttl 0", {.capacity = 4, .ttl_ms = 0, .min_evict_idle_ms = 0}, -EINVAL},
		{"min evict above ttl",
		 {.capacity = 4, .ttl_ms = 10, .min_evict_idle_ms = 11},
		 -EINVAL},
	};
	struct nat_table *t = NULL;
	struct nat_key good = key(TCP, "10.0.0.1", 1), bad;
	struct addr dst = ip("192.0.2.1"), bad_dst = dst;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		check_case("%s", cases[i].name);
		CHECK_EQ(nat_new(&t, &cases[i].cfg), cases[i].rc);
		CHECK((t != NULL) == (cases[i].rc == 0));
		nat_free(t);
	}
	check_case("%s", "");
	CHECK_EQ(nat_new(NULL, &cases[0].cfg), -EINVAL);
	CHECK_EQ(nat_new(&t, NULL), -EINVAL);
	CHECK(t == NULL);
	nat_free(NULL);
	CHECK_EQ(nat_count(NULL), 0);
	CHECK_EQ(nat_sweep(NULL, 5), 0);
	CHECK_EQ(nat_remove_by_pid(NULL, 5), -EINVAL);
	CHECK(nat_lookup(NULL, &good, 0) == NULL);
	CHECK_EQ(nat_insert(NULL, &good, &dst, 1, 1, 0, NULL), -EINVAL);
	CHECK(nat_check_invariants(NULL) != NULL);

	t = table(4, 1000, 10);
	CHECK_EQ(nat_insert(t, NULL, &dst, 1, 1, 0, NULL), -EINVAL);
	CHECK_EQ(nat_insert(t, &good, NULL, 1, 1, 0, NULL), -EINVAL);
	CHECK(nat_lookup(t, NULL, 0) == NULL);
	CHECK_EQ(nat_remove(t, NULL), -EINVAL);
	CHECK(nat_peek(t, NULL) == NULL);
	bad_dst.family = ADDR_NONE;
	CHECK_EQ(nat_insert(t, &good, &bad_dst, 1, 1, 0, NULL), -EINVAL);
	bad_dst.family = 5;
	CHECK_EQ(nat_insert(t, &good, &bad_dst, 1, 1, 0, NULL), -EINVAL);

	static const struct {
		const char *name;
		uint8_t protocol;
		uint8_t family;
	} bad_keys[] = {
		{"protocol 0", 0, ADDR_V4},   {"ICMP", 1, ADDR_V4},  {"ICMPv6", 58, ADDR_V6},
		{"family none", TCP, ADDR_NONE}, {"family 5", UDP, 5},
	};
	for (size_t i = 0; i < sizeof bad_keys / sizeof bad_keys[0]; i++) {
		check_case("%s", bad_keys[i].name);
		bad = good;
		bad.protocol = bad_keys[i].protocol;
		bad.addr.family = bad_keys[i].family;
		CHECK_EQ(nat_insert(t, &bad, &dst, 1, 1, 0, NULL), -EINVAL);
		CHECK(nat_lookup(t, &bad, 0) == NULL);
		CHECK(nat_peek(t, &bad) == NULL);
		CHECK_EQ(nat_remove(t, &bad), -EINVAL);
	}
	check_case("%s", "");
	CHECK_EQ(nat_count(t), 0);
	CHECK_INVARIANTS(t);
	nat_free(t);
}

/* The memory target: at most 64 bytes per entry beyond the 20-byte key when the capacity fills
 * most of a power of two, and the documented 72 at worst (just above one). */
static void test_memory_per_entry(void)
{
	static const struct {
		uint32_t capacity;
		double max_beyond_key;
	} cases[] = {{1000, 64}, {65536, 64}, {100000, 64}, {1000000, 64}, {65537, 72}, {1, 1000}};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct nat_table *t = table(cases[i].capacity, 300000, 1000);
		double per_entry = (double)nat_memory_bytes(t) / cases[i].capacity;
		check_case("capacity %u: %.1f bytes per entry", cases[i].capacity, per_entry);
		CHECK(per_entry >= sizeof(struct nat_entry));
		CHECK(per_entry - sizeof(struct nat_key) <= cases[i].max_beyond_key);
		nat_free(t);
	}
}

/* ---- The model check: random operations against a trivially correct reference. ---- */

enum { MODEL_KEYS = 64 };

struct model_entry {
	bool present;
	struct nat_key key;
	struct addr dst;
	uint16_t port;
	uint32_t pid;
	uint64_t used;
};

struct model {
	struct model_entry e[MODEL_KEYS];
	size_t count;
	uint64_t now;
	uint64_t ttl;
	uint64_t min_evict;
	uint64_t resolution;
	uint32_t capacity;
};

struct model_case {
	const char *name;
	uint32_t capacity;
	uint64_t ttl;
	uint64_t min_evict;
	uint64_t max_step; /* time advances by 0..max_step-1 ms per operation */
	bool flat;
};

static uint64_t rng_state;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* 64 keys that differ in protocol, family, address and port, with IPv4 and IPv6 sharing bytes. */
static struct nat_key model_key(unsigned i)
{
	struct nat_key k;
	memset(&k, 0, sizeof k);
	k.protocol = i & 1 ? UDP : TCP;
	k.addr.family = i & 2 ? ADDR_V6 : ADDR_V4;
	k.addr.bytes[0] = 10;
	k.addr.bytes[3] = (uint8_t)((i >> 2) & 3);
	k.port = (uint16_t)(1000 + (i >> 4));
	return k;
}

static int model_index(const struct nat_key *k)
{
	for (int i = 0; i < MODEL_KEYS; i++) {
		struct nat_key candidate = model_key((unsigned)i);
		if (same_key(&candidate, k))
			return i;
	}
	return -1;
}

static bool model_expired(const struct model *m, const struct model_entry *e)
{
	return m->now - e->used > m->ttl;
}

static void model_drop(struct model *m, int i)
{
	m->e[i].present = false;
	m->count--;
}

static void model_insert(struct nat_table *t, struct model *m, unsigned i)
{
	struct model_entry *me = &m->e[i];
	struct nat_key k = model_key(i), evicted;
	struct addr dst;
	uint16_t port = (uint16_t)rng();
	uint32_t pid = (uint32_t)(rng() % 4);
	uint64_t min_used = UINT64_MAX, max_idle = 0;
	int rc;

	memset(&dst, 0, sizeof dst);
	dst.family = rng() % 2 ? ADDR_V4 : ADDR_V6;
	dst.bytes[0] = 192;
	dst.bytes[3] = (uint8_t)rng();
	memset(&evicted, 0, sizeof evicted);
	rc = nat_insert(t, &k, &dst, port, pid, m->now, &evicted);
	for (int j = 0; j < MODEL_KEYS; j++) {
		if (!m->e[j].present)
			continue;
		if (m->e[j].used < min_used)
			min_used = m->e[j].used;
		if (m->now - m->e[j].used > max_idle)
			max_idle = m->now - m->e[j].used;
	}
	if (me->present || m->count < m->capacity) {
		CHECK_EQ(rc, 0);
	} else if (rc == 1) {
		int v = model_index(&evicted);
		CHECK(v >= 0 && m->e[v].present);
		if (v < 0 || !m->e[v].present)
			return;
		/* Never a flow used within min_evict; at most R - 1 ms newer than the true LRU. */
		CHECK(m->now - m->e[v].used >= m->min_evict);
		CHECK(m->e[v].used - min_used <= m->resolution - 1);
		model_drop(m, v);
	} else {
		CHECK_EQ(rc, -ENOSPC);
		/* Refused: even the oldest entry was used within min_evict (+ R - 1). */
		CHECK(max_idle + 1 < m->min_evict + m->resolution);
		return;
	}
	if (!me->present)
		m->count++;
	me->present = true;
	me->key = k;
	me->dst = dst;
	me->port = port;
	me->pid = pid;
	me->used = m->now;
}

static void model_lookup(struct nat_table *t, struct model *m, unsigned i)
{
	struct model_entry *me = &m->e[i];
	struct nat_key k = model_key(i);
	const struct nat_entry *e = nat_lookup(t, &k, m->now);

	if (me->present && model_expired(m, me))
		model_drop(m, (int)i);
	if (!me->present) {
		CHECK(e == NULL);
		return;
	}
	CHECK(e != NULL);
	if (!e)
		return;
	CHECK(addr_equal(&e->orig_dst, &me->dst));
	CHECK_EQ(e->orig_port, me->port);
	CHECK_EQ(e->pid, me->pid);
	CHECK_EQ(e->last_used_ms, m->now);
	me->used = m->now;
}

static void model_step(struct nat_table *t, struct model *m, uint64_t max_step)
{
	unsigned i = (unsigned)(rng() % MODEL_KEYS), op = (unsigned)(rng() % 100);

	m->now += rng() % max_step;
	if (op < 2)
		m->now += m->ttl + rng() % m->ttl; /* a quiet spell: everything may expire */
	if (op < 35) {
		model_insert(t, m, i);
	} else if (op < 75) {
		model_lookup(t, m, i);
	} else if (op < 85) {
		struct nat_key k = model_key(i);
		CHECK_EQ(nat_remove(t, &k), m->e[i].present ? 0 : -ENOENT);
		if (m->e[i].present)
			model_drop(m, (int)i);
	} else if (op < 90) {
		uint32_t pid = (uint32_t)(rng() % 4);
		int expected = 0;
		for (int j = 0; j < MODEL_KEYS; j++) {
			if (pid != 0 && m->e[j].present && m->e[j].pid == pid) {
				model_drop(m, j);
				expected++;
			}
		}
		CHECK_EQ(nat_remove_by_pid(t, pid), pid == 0 ? -EINVAL : expected);
	} else {
		size_t expected = 0;
		for (int j = 0; j < MODEL_KEYS; j++) {
			if (m->e[j].present && model_expired(m, &m->e[j])) {
				model_drop(m, j);
				expected++;
			}
		}
		CHECK_EQ(nat_sweep(t, m->now), expected);
	}
}

/* The table holds exactly the model's entries, field for field. */
static void model_compare(const struct nat_table *t, const struct model *m)
{
	CHECK_EQ(nat_count(t), m->count);
	CHECK_INVARIANTS(t);
	for (unsigned i = 0; i < MODEL_KEYS; i++) {
		struct nat_key k = model_key(i);
		const struct nat_entry *e = nat_peek(t, &k);
		const struct model_entry *me = &m->e[i];
		CHECK((e != NULL) == me->present);
		if (!e || !me->present)
			continue;
		CHECK(addr_equal(&e->orig_dst, &me->dst));
		CHECK_EQ(e->orig_port, me->port);
		CHECK_EQ(e->pid, me->pid);
		CHECK_EQ(e->last_used_ms, me->used);
	}
}

static void test_model_random(void)
{
	static const struct model_case cases[] = {
		{"exact LRU", 16, 12, 5, 3, false},
		{"plain LRU cache (min evict 0)", 16, 12, 0, 3, false},
		{"LRU resolution 32 ms", 8, 640, 200, 60, false},
		{"capacity 1", 1, 10, 3, 4, false},
		{"every key in one cluster", 24, 12, 5, 3, true},
		{"never full", MODEL_KEYS, 100, 50, 20, false},
		{"coarse, flat", 12, 5000, 5000, 400, true},
	};
	enum { STEPS = 20000 };

	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		const struct model_case *mc = &cases[c];
		struct nat_table *t = table_with(mc->capacity, mc->ttl, mc->min_evict, mc->flat);
		struct model m;
		memset(&m, 0, sizeof m);
		m.ttl = mc->ttl;
		m.min_evict = mc->min_evict;
		m.capacity = mc->capacity;
		m.resolution = nat_lru_resolution_ms(t);
		rng_state = 0x9e3779b97f4a7c15u + c;
		for (int step = 0; step < STEPS; step++) {
			int failures_before = check_failures_in_test;
			check_case("%s, step %d", mc->name, step);
			model_step(t, &m, mc->max_step);
			model_compare(t, &m);
			if (check_failures_in_test != failures_before)
				break;
		}
		nat_free(t);
	}
}

static const struct check_test tests[] = {
	{"insert_and_lookup", test_insert_and_lookup},
	{"lookup_missing", test_lookup_missing},
	{"remove_by_pid", test_remove_by_pid},
	{"ttl_expiry", test_ttl_expiry},
	{"ttl_refreshed_by_use", test_ttl_refreshed_by_use},
	{"lookup_removes_expired", test_lookup_removes_expired},
	{"time_never_runs_backwards", test_time_never_runs_backwards},
	{"full_table_evicts_idle", test_full_table_evicts_idle},
	{"full_table_refuses_live_flows", test_full_table_refuses_live_flows},
	{"eviction_picks_lru", test_eviction_picks_lru},
	{"capacity_one", test_capacity_one},
	{"hash_collisions", test_hash_collisions},
	{"many_keys", test_many_keys},
	{"ipv6_keys", test_ipv6_keys},
	{"distinct_keys", test_distinct_keys},
	{"ipv4_tail_bytes_ignored", test_ipv4_tail_bytes_ignored},
	{"key_reuse_after_remove", test_key_reuse_after_remove},
	{"replace_existing_key", test_replace_existing_key},
	{"pid_index_after_evict_and_sweep", test_pid_index_after_evict_and_sweep},
	{"sweep_exact", test_sweep_exact},
	{"invalid_arguments", test_invalid_arguments},
	{"memory_per_entry", test_memory_per_entry},
	{"model_random", test_model_random},
};

CHECK_MAIN(tests)
