/* test_dns_map.c — the DNS map: insert, lookup, TTL clamps, expiry, bounds, eviction, and
 * attribution of parsed answers through CNAME chains. */
#include "check.h"
#include "policy/dns_map.h"

#include <errno.h>

static struct addr ip(const char *text)
{
	struct addr a;
	if (addr_parse(&a, text, strlen(text)) != 0)
		abort();
	return a;
}

static void check_map(const struct dns_map *m)
{
	const char *broken = dns_map_check_invariants(m);
	CHECK_STR_EQ(broken ? broken : "ok", "ok");
}

static struct dns_map *new_map(uint32_t capacity, uint32_t names, uint32_t min_ttl,
			       uint32_t max_ttl)
{
	struct dns_map_config cfg;
	dns_map_config_default(&cfg);
	cfg.capacity = capacity;
	cfg.names_per_addr = names;
	cfg.min_ttl_s = min_ttl;
	cfg.max_ttl_s = max_ttl;
	cfg.hash_seed = 0x5eed;
	struct dns_map *m = NULL;
	if (dns_map_new(&m, &cfg) != 0)
		abort();
	return m;
}

/* The names of a, joined with spaces ("" when none). */
static const char *names_of(struct dns_map *m, const char *addr_text, uint64_t now_ms)
{
	static char out[4096];
	struct addr a = ip(addr_text);
	const char *const *names;
	size_t n = dns_map_lookup(m, &a, now_ms, &names);
	size_t k = 0;
	out[0] = '\0';
	for (size_t i = 0; i < n; i++)
		k += (size_t)snprintf(out + k, sizeof out - k, "%s%s", i ? " " : "", names[i]);
	if (n == 0 && names != NULL)
		return "(names not NULL)";
	return out;
}

static void test_config(void)
{
	struct dns_map_config cfg;
	dns_map_config_default(&cfg);
	CHECK_EQ(cfg.capacity, DNS_MAP_DEFAULT_CAPACITY);
	CHECK_EQ(cfg.names_per_addr, DNS_MAP_DEFAULT_NAMES);
	struct {
		const char *name;
		uint32_t capacity, names, min_ttl, max_ttl;
		int rc;
	} cases[] = {
		{"defaults", DNS_MAP_DEFAULT_CAPACITY, DNS_MAP_DEFAULT_NAMES, 60, 86400, 0},
		{"capacity 0", 0, 8, 60, 86400, -EINVAL},
		{"capacity 1", 1, 8, 60, 86400, 0},
		{"capacity above max", DNS_MAP_CAPACITY_MAX + 1, 8, 60, 86400, -EINVAL},
		{"no names", 16, 0, 60, 86400, -EINVAL},
		{"too many names", 16, DNS_MAP_NAMES_MAX + 1, 60, 86400, -EINVAL},
		{"max names", 16, DNS_MAP_NAMES_MAX, 60, 86400, 0},
		{"min above max", 16, 8, 61, 60, -EINVAL},
		{"max ttl 0", 16, 8, 0, 0, -EINVAL},
		{"min ttl 0", 16, 8, 0, 1, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		check_case("%s", cases[i].name);
		cfg.capacity = cases[i].capacity;
		cfg.names_per_addr = cases[i].names;
		cfg.min_ttl_s = cases[i].min_ttl;
		cfg.max_ttl_s = cases[i].max_ttl;
		struct dns_map *m = NULL;
		CHECK_EQ(dns_map_new(&m, &cfg), cases[i].rc);
		CHECK_EQ(m != NULL, cases[i].rc == 0);
		if (m) {
			CHECK_EQ(dns_map_capacity(m), cases[i].capacity);
			CHECK_EQ(dns_map_count(m), 0);
			size_t slots = (size_t)cases[i].capacity * cases[i].names;
			CHECK(dns_map_memory_bytes(m) >= slots * (DNS_MAP_NAME_MAX + 1));
			check_map(m);
		}
		dns_map_free(m);
	}
	dns_map_free(NULL);
}

static void test_insert_lookup(void)
{
	struct dns_map *m = new_map(16, 8, 60, 86400);
	struct addr v4 = ip("192.0.2.1"), v6 = ip("2001:db8::1");
	CHECK_EQ(dns_map_insert(m, &v4, "WWW.Example.COM.", 300, 1000), 0);
	CHECK_EQ(dns_map_insert(m, &v6, "www.example.com", 300, 1000), 0);
	CHECK_EQ(dns_map_count(m), 2);
	CHECK_STR_EQ(names_of(m, "192.0.2.1", 1000), "www.example.com");
	CHECK_STR_EQ(names_of(m, "2001:db8::1", 1000), "www.example.com");
	CHECK_STR_EQ(names_of(m, "192.0.2.2", 1000), "");
	CHECK_STR_EQ(names_of(m, "2001:db8::2", 1000), "");

	check_case("IPv4-mapped IPv6 is IPv4");
	CHECK_STR_EQ(names_of(m, "::ffff:192.0.2.1", 1000), "www.example.com");
	struct addr mapped = ip("::ffff:198.51.100.7");
	CHECK_EQ(dns_map_insert(m, &mapped, "mapped.test", 300, 1000), 0);
	CHECK_STR_EQ(names_of(m, "198.51.100.7", 1000), "mapped.test");

	check_case("an IPv4 address with junk in its unused bytes");
	struct addr junk = ip("203.0.113.9");
	junk.bytes[15] = 0x55;
	CHECK_EQ(dns_map_insert(m, &junk, "junk.test", 300, 1000), 0);
	CHECK_STR_EQ(names_of(m, "203.0.113.9", 1000), "junk.test");

	check_case("same name twice is one name");
	CHECK_EQ(dns_map_insert(m, &v4, "www.EXAMPLE.com", 300, 2000), 0);
	CHECK_STR_EQ(names_of(m, "192.0.2.1", 2000), "www.example.com");
	CHECK_EQ(dns_map_count(m), 4);
	check_map(m);
	dns_map_free(m);
}

static void test_invalid_names(void)
{
	const char *bad[] = {
		"", ".", "..", "a..b", ".a", "a b", "a\\032b", "a\\.b.com", "caf\xc3\xa9.test",
		"a*b.test", "a/b", "a:b",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.test", /* 64 */
	};
	struct dns_map *m = new_map(4, 2, 60, 86400);
	struct addr a = ip("192.0.2.1");
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		check_case("\"%s\"", bad[i]);
		CHECK_EQ(dns_map_insert(m, &a, bad[i], 300, 0), -EINVAL);
	}
	CHECK_EQ(dns_map_count(m), 0);

	check_case("253 characters are fine, 254 are not");
	char name[300];
	memset(name, 'a', sizeof name);
	for (size_t i = 63; i < sizeof name; i += 64)
		name[i] = '.';
	name[253] = '\0';
	CHECK_EQ(dns_map_insert(m, &a, name, 300, 0), 0);
	CHECK_EQ(strlen(names_of(m, "192.0.2.1", 0)), 253);
	name[253] = 'a';
	name[254] = '\0';
	CHECK_EQ(dns_map_insert(m, &a, name, 300, 0), -EINVAL);
	name[253] = '.';
	CHECK_EQ(dns_map_insert(m, &a, name, 300, 0), 0); /* trailing dot */

	check_case("bad addresses and arguments");
	struct addr none = {.family = ADDR_NONE};
	CHECK_EQ(dns_map_insert(m, &none, "a.test", 300, 0), -EINVAL);
	CHECK_EQ(dns_map_insert(m, NULL, "a.test", 300, 0), -EINVAL);
	CHECK_EQ(dns_map_insert(m, &a, NULL, 300, 0), -EINVAL);
	CHECK_EQ(dns_map_insert(NULL, &a, "a.test", 300, 0), -EINVAL);
	const char *const *names = (const char *const *)&names;
	CHECK_EQ(dns_map_lookup(m, &none, 0, &names), 0);
	CHECK(names == NULL);
	CHECK_EQ(dns_map_count(m), 1);
	check_map(m);
	dns_map_free(m);
}

struct ttl_case {
	const char *name;
	uint32_t min_ttl, max_ttl, ttl;
	uint64_t lifetime_ms; /* live at now + lifetime - 1, gone at now + lifetime */
};

static const struct ttl_case ttl_cases[] = {
	{"TTL 300", 60, 86400, 300, 300000},
	{"TTL 0 kept for the minimum", 60, 86400, 0, 60000},
	{"TTL below the minimum", 60, 86400, 59, 60000},
	{"TTL at the minimum", 60, 86400, 60, 60000},
	{"TTL above the maximum", 60, 86400, 604800, 86400000},
	{"largest TTL", 60, 86400, UINT32_MAX, 86400000},
	{"minimum 1 s", 1, 10, 0, 1000},
	{"no maximum to speak of", 0, UINT32_MAX, UINT32_MAX, (uint64_t)UINT32_MAX * 1000},
};

static void test_ttl(void)
{
	const uint64_t now = 5000000;
	for (size_t i = 0; i < sizeof ttl_cases / sizeof ttl_cases[0]; i++) {
		const struct ttl_case *c = &ttl_cases[i];
		check_case("%s", c->name);
		struct dns_map *m = new_map(4, 2, c->min_ttl, c->max_ttl);
		struct addr a = ip("192.0.2.1");
		CHECK_EQ(dns_map_insert(m, &a, "a.test", c->ttl, now), 0);
		CHECK_STR_EQ(names_of(m, "192.0.2.1", now + c->lifetime_ms - 1), "a.test");
		CHECK_STR_EQ(names_of(m, "192.0.2.1", now + c->lifetime_ms), "");
		CHECK_EQ(dns_map_count(m), 0); /* the lookup removed the expired entry */
		check_map(m);
		dns_map_free(m);
	}

	check_case("minimum 0: TTL 0 is already expired");
	struct dns_map *m = new_map(4, 2, 0, 10);
	struct addr a = ip("192.0.2.1");
	CHECK_EQ(dns_map_insert(m, &a, "a.test", 0, 100), 0);
	CHECK_STR_EQ(names_of(m, "192.0.2.1", 100), "");
	dns_map_free(m);

	check_case("expiry saturates near the end of time");
	m = new_map(4, 2, 60, 86400);
	CHECK_EQ(dns_map_insert(m, &a, "a.test", 300, UINT64_MAX - 10), 0);
	CHECK_STR_EQ(names_of(m, "192.0.2.1", UINT64_MAX - 1), "a.test");
	check_map(m);
	dns_map_free(m);
}

static void test_refresh(void)
{
	struct dns_map *m = new_map(4, 4, 60, 86400);
	struct addr a = ip("192.0.2.1");

	check_case("recording again extends");
	CHECK_EQ(dns_map_insert(m, &a, "a.test", 60, 0), 0);
	CHECK_EQ(dns_map_insert(m, &a, "a.test", 60, 50000), 0);
	CHECK_STR_EQ(names_of(m, "192.0.2.1", 109999), "a.test");
	CHECK_STR_EQ(names_of(m, "192.0.2.1", 110000), "");

	check_case("a shorter TTL later does not shorten");
	CHECK_EQ(dns_map_insert(m, &a, "b.test", 3600, 200000), 0);
	CHECK_EQ(dns_map_insert(m, &a, "b.test", 60, 201000), 0);
	CHECK_STR_EQ(names_of(m, "192.0.2.1", 200000 + 3599999), "b.test");

	check_case("names expire one by one");
	struct addr c = ip("198.51.100.1");
	CHECK_EQ(dns_map_insert(m, &c, "long.test", 600, 10000000), 0);
	CHECK_EQ(dns_map_insert(m, &c, "short.test", 60, 10000000), 0);
	CHECK_STR_EQ(names_of(m, "198.51.100.1", 10059999), "short.test long.test");
	CHECK_STR_EQ(names_of(m, "198.51.100.1", 10060000), "long.test");
	CHECK_EQ(dns_map_count(m), 2);
	CHECK_EQ(dns_map_sweep(m, 10060000), 1); /* 192.0.2.1, expired at 3800 s */
	CHECK_EQ(dns_map_count(m), 1);
	check_map(m);
	dns_map_free(m);
}

static void test_names_per_address(void)
{
	struct dns_map *m = new_map(4, 3, 60, 86400);
	struct addr a = ip("203.0.113.5");
	CHECK_EQ(dns_map_insert(m, &a, "a.cdn.test", 300, 0), 0);
	CHECK_EQ(dns_map_insert(m, &a, "b.cdn.test", 300, 1), 0);
	CHECK_EQ(dns_map_insert(m, &a, "c.cdn.test", 300, 2), 0);
	CHECK_STR_EQ(names_of(m, "203.0.113.5", 3), "c.cdn.test b.cdn.test a.cdn.test");

	check_case("a fourth name pushes out the least recent");
	CHECK_EQ(dns_map_insert(m, &a, "d.cdn.test", 300, 4), 0);
	CHECK_STR_EQ(names_of(m, "203.0.113.5", 5), "d.cdn.test c.cdn.test b.cdn.test");

	check_case("recording a name again makes it the most recent");
	CHECK_EQ(dns_map_insert(m, &a, "b.cdn.test", 300, 6), 0);
	CHECK_STR_EQ(names_of(m, "203.0.113.5", 7), "b.cdn.test d.cdn.test c.cdn.test");
	CHECK_EQ(dns_map_insert(m, &a, "e.cdn.test", 300, 8), 0);
	CHECK_STR_EQ(names_of(m, "203.0.113.5", 9), "e.cdn.test b.cdn.test d.cdn.test");

	check_case("an expired name makes room before a live one is pushed out");
	struct addr b = ip("203.0.113.6");
	CHECK_EQ(dns_map_insert(m, &b, "old.test", 60, 0), 0);
	CHECK_EQ(dns_map_insert(m, &b, "x.test", 600, 1), 0);
	CHECK_EQ(dns_map_insert(m, &b, "y.test", 600, 2), 0);
	CHECK_EQ(dns_map_insert(m, &b, "z.test", 600, 70000), 0);
	CHECK_STR_EQ(names_of(m, "203.0.113.6", 70000), "z.test y.test x.test");

	check_case("the pushed-out name had the latest expiry");
	struct addr c = ip("203.0.113.7");
	CHECK_EQ(dns_map_insert(m, &c, "long.test", 86400, 100000), 0);
	CHECK_EQ(dns_map_insert(m, &c, "p.test", 60, 100000), 0);
	CHECK_EQ(dns_map_insert(m, &c, "q.test", 60, 100000), 0);
	CHECK_EQ(dns_map_insert(m, &c, "r.test", 60, 100000), 0);
	check_map(m);
	CHECK_EQ(dns_map_sweep(m, 160000), 1); /* c's remaining names all expire at 160 s */
	CHECK_STR_EQ(names_of(m, "203.0.113.7", 160000), "");
	CHECK_STR_EQ(names_of(m, "203.0.113.5", 160000), "e.cdn.test b.cdn.test d.cdn.test");
	check_map(m);
	dns_map_free(m);
}

static void test_eviction(void)
{
	check_case("the entry expiring soonest goes");
	struct dns_map *m = new_map(3, 2, 60, 86400);
	struct addr a = ip("192.0.2.1"), b = ip("192.0.2.2"), c = ip("192.0.2.3"),
		    d = ip("192.0.2.4");
	CHECK_EQ(dns_map_insert(m, &a, "a.test", 300, 0), 0);
	CHECK_EQ(dns_map_insert(m, &b, "b.test", 100, 0), 0);
	CHECK_EQ(dns_map_insert(m, &c, "c.test", 200, 0), 0);
	CHECK_EQ(dns_map_count(m), 3);
	CHECK_EQ(dns_map_insert(m, &d, "d.test", 60, 0), 1);
	CHECK_EQ(dns_map_count(m), 3);
	CHECK_STR_EQ(names_of(m, "192.0.2.2", 0), "");
	CHECK_STR_EQ(names_of(m, "192.0.2.1", 0), "a.test");
	CHECK_STR_EQ(names_of(m, "192.0.2.3", 0), "c.test");
	CHECK_STR_EQ(names_of(m, "192.0.2.4", 0), "d.test");
	check_map(m);

	check_case("a name on an existing address never evicts");
	CHECK_EQ(dns_map_insert(m, &d, "d2.test", 60, 0), 0);
	CHECK_EQ(dns_map_count(m), 3);

	check_case("an entry's expiry is its latest name's");
	CHECK_EQ(dns_map_insert(m, &d, "d3.test", 1000, 0), 0); /* d now outlives c */
	CHECK_EQ(dns_map_insert(m, &b, "b.test", 100, 0), 1);
	CHECK_STR_EQ(names_of(m, "192.0.2.3", 0), "");
	CHECK_STR_EQ(names_of(m, "192.0.2.4", 0), "d3.test d2.test");
	dns_map_free(m);

	check_case("equal expiry: the one recorded longest ago goes");
	m = new_map(2, 2, 60, 86400);
	CHECK_EQ(dns_map_insert(m, &a, "a.test", 100, 0), 0);
	CHECK_EQ(dns_map_insert(m, &b, "b.test", 100, 0), 0);
	CHECK_EQ(dns_map_insert(m, &c, "c.test", 100, 0), 1);
	CHECK_STR_EQ(names_of(m, "192.0.2.1", 0), "");
	CHECK_EQ(dns_map_insert(m, &b, "b.test", 100, 0), 0); /* b recorded again: c is older */
	CHECK_EQ(dns_map_insert(m, &a, "a.test", 100, 0), 1);
	CHECK_STR_EQ(names_of(m, "192.0.2.3", 0), "");
	CHECK_STR_EQ(names_of(m, "192.0.2.2", 0), "b.test");
	dns_map_free(m);

	check_case("expired entries go first");
	m = new_map(2, 2, 60, 86400);
	CHECK_EQ(dns_map_insert(m, &a, "a.test", 1000, 0), 0);
	CHECK_EQ(dns_map_insert(m, &b, "b.test", 100, 0), 0);
	CHECK_EQ(dns_map_insert(m, &c, "c.test", 60, 200000), 1);
	CHECK_STR_EQ(names_of(m, "192.0.2.1", 200000), "a.test");
	CHECK_STR_EQ(names_of(m, "192.0.2.3", 200000), "c.test");
	check_map(m);
	dns_map_free(m);

	check_case("capacity 1");
	m = new_map(1, 1, 60, 86400);
	CHECK_EQ(dns_map_insert(m, &a, "a.test", 100, 0), 0);
	CHECK_EQ(dns_map_insert(m, &b, "b.test", 100, 0), 1);
	CHECK_EQ(dns_map_insert(m, &b, "b2.test", 100, 0), 0);
	CHECK_STR_EQ(names_of(m, "192.0.2.2", 0), "b2.test");
	CHECK_EQ(dns_map_count(m), 1);
	check_map(m);
	dns_map_free(m);
}

static void test_sweep_and_clock(void)
{
	struct dns_map *m = new_map(8, 2, 1, 86400);
	const char *addrs[] = {"192.0.2.1", "192.0.2.2", "192.0.2.3", "2001:db8::1", "2001:db8::2"};
	const uint32_t ttls[] = {10, 20, 30, 40, 50};
	for (size_t i = 0; i < 5; i++) {
		struct addr a = ip(addrs[i]);
		CHECK_EQ(dns_map_insert(m, &a, "x.test", ttls[i], 0), 0);
	}
	CHECK_EQ(dns_map_sweep(m, 9999), 0);
	CHECK_EQ(dns_map_sweep(m, 10000), 1);
	CHECK_EQ(dns_map_sweep(m, 35000), 2);
	CHECK_EQ(dns_map_count(m), 2);
	check_map(m);

	check_case("time does not run backwards");
	CHECK_EQ(dns_map_sweep(m, 0), 0);
	CHECK_STR_EQ(names_of(m, "2001:db8::1", 0), "x.test");
	struct addr a = ip("198.51.100.1");
	CHECK_EQ(dns_map_insert(m, &a, "late.test", 10, 0), 0); /* counts from 35 s */
	CHECK_STR_EQ(names_of(m, "198.51.100.1", 44999), "late.test");
	CHECK_STR_EQ(names_of(m, "198.51.100.1", 45000), "");
	CHECK_EQ(dns_map_sweep(m, 1000000), 2);
	CHECK_EQ(dns_map_count(m), 0);
	check_map(m);
	dns_map_free(m);
}

/* A response built for these tests: uncompressed names (compression is the parser's business,
 * tested in test_dns_msg). */
struct builder {
	uint8_t b[8192];
	size_t n;
	uint16_t ancount;
};

static void b_bytes(struct builder *b, const void *p, size_t n)
{
	memcpy(b->b + b->n, p, n);
	b->n += n;
}

static void b_u16(struct builder *b, uint16_t v)
{
	uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	b_bytes(b, x, 2);
}

static void b_name(struct builder *b, const char *text)
{
	struct dns_name n;
	if (dns_name_from_text(&n, text, strlen(text)) != 0)
		abort();
	b_bytes(b, n.wire, n.len);
}

static void b_start(struct builder *b, const char *qname, uint8_t rcode)
{
	b->n = 0;
	b->ancount = 0;
	b_bytes(b, "\x42\x42\x81", 3);
	b->b[b->n++] = (uint8_t)(0x80 | rcode);
	b_bytes(b, "\x00\x01\x00\x00\x00\x00\x00\x00", 8);
	b_name(b, qname);
	b_bytes(b, "\x00\x01\x00\x01", 4);
}

static void b_record(struct builder *b, const char *owner, uint16_t type, uint32_t ttl)
{
	b_name(b, owner);
	b_u16(b, type);
	b_u16(b, DNS_CLASS_IN);
	b_u16(b, (uint16_t)(ttl >> 16));
	b_u16(b, (uint16_t)ttl);
	b->ancount++;
}

static void b_cname(struct builder *b, const char *owner, const char *target, uint32_t ttl)
{
	struct dns_name n;
	if (dns_name_from_text(&n, target, strlen(target)) != 0)
		abort();
	b_record(b, owner, DNS_TYPE_CNAME, ttl);
	b_u16(b, n.len);
	b_bytes(b, n.wire, n.len);
}

static void b_addr(struct builder *b, const char *owner, const char *address, uint32_t ttl)
{
	struct addr a = ip(address);
	b_record(b, owner, a.family == ADDR_V4 ? DNS_TYPE_A : DNS_TYPE_AAAA, ttl);
	b_u16(b, (uint16_t)addr_len(&a));
	b_bytes(b, a.bytes, addr_len(&a));
}

static struct dns_message parsed;

static const struct dns_message *b_parse(struct builder *b)
{
	b->b[6] = (uint8_t)(b->ancount >> 8);
	b->b[7] = (uint8_t)b->ancount;
	if (dns_parse_response(b->b, b->n, &parsed) != 0)
		abort();
	return &parsed;
}

static void test_record_response(void)
{
	struct builder b;
	struct dns_map *m = new_map(64, 8, 60, 86400);

	check_case("CNAME chain: question first, then the chain");
	b_start(&b, "WWW.Example.COM", 0);
	b_cname(&b, "www.example.com", "www.example.com.cdn.test", 60);
	b_cname(&b, "www.example.com.cdn.test", "edge7.cdn.test", 60);
	b_addr(&b, "edge7.cdn.test", "192.0.2.10", 300);
	b_addr(&b, "edge7.cdn.test", "2001:db8::10", 300);
	CHECK_EQ(dns_map_record_response(m, b_parse(&b), 0), 6);
	CHECK_STR_EQ(names_of(m, "192.0.2.10", 0),
		     "www.example.com www.example.com.cdn.test edge7.cdn.test");
	CHECK_STR_EQ(names_of(m, "2001:db8::10", 0),
		     "www.example.com www.example.com.cdn.test edge7.cdn.test");

	check_case("the address record's TTL counts");
	CHECK_STR_EQ(names_of(m, "192.0.2.10", 299999), "www.example.com www.example.com.cdn.test "
							 "edge7.cdn.test");
	CHECK_STR_EQ(names_of(m, "192.0.2.10", 300000), "");

	check_case("records off the chain are ignored");
	b_start(&b, "a.example.com", 0);
	b_addr(&b, "bank.test", "198.51.100.66", 300);
	b_cname(&b, "other.test", "bank.test", 300);
	b_addr(&b, "a.example.com", "198.51.100.1", 300);
	CHECK_EQ(dns_map_record_response(m, b_parse(&b), 400000), 1);
	CHECK_STR_EQ(names_of(m, "198.51.100.66", 400000), "");
	CHECK_STR_EQ(names_of(m, "198.51.100.1", 400000), "a.example.com");

	check_case("an address on the middle of the chain gets the names above it");
	b_start(&b, "q.test", 0);
	b_cname(&b, "q.test", "mid.test", 300);
	b_cname(&b, "mid.test", "end.test", 300);
	b_addr(&b, "mid.test", "198.51.100.2", 300);
	CHECK_EQ(dns_map_record_response(m, b_parse(&b), 400000), 2);
	CHECK_STR_EQ(names_of(m, "198.51.100.2", 400000), "q.test mid.test");

	check_case("records in any order");
	b_start(&b, "q2.test", 0);
	b_addr(&b, "end2.test", "198.51.100.3", 300);
	b_cname(&b, "mid2.test", "end2.test", 300);
	b_cname(&b, "q2.test", "mid2.test", 300);
	CHECK_EQ(dns_map_record_response(m, b_parse(&b), 400000), 3);
	CHECK_STR_EQ(names_of(m, "198.51.100.3", 400000), "q2.test mid2.test end2.test");

	check_case("a CNAME loop ends the chain");
	b_start(&b, "loop.test", 0);
	b_cname(&b, "loop.test", "pool.test", 300);
	b_cname(&b, "pool.test", "LOOP.test", 300);
	b_addr(&b, "pool.test", "198.51.100.4", 300);
	CHECK_EQ(dns_map_record_response(m, b_parse(&b), 400000), 2);
	CHECK_STR_EQ(names_of(m, "198.51.100.4", 400000), "loop.test pool.test");

	check_case("a name that is not a host name is skipped, the chain followed");
	b_start(&b, "odd.test", 0);
	b_cname(&b, "odd.test", "we\\032ird.test", 300);
	b_cname(&b, "we\\032ird.test", "fine.test", 300);
	b_addr(&b, "fine.test", "198.51.100.5", 300);
	CHECK_EQ(dns_map_record_response(m, b_parse(&b), 400000), 2);
	CHECK_STR_EQ(names_of(m, "198.51.100.5", 400000), "odd.test fine.test");

	check_case("nothing recorded");
	b_start(&b, "nx.test", DNS_RCODE_NXDOMAIN);
	b_addr(&b, "nx.test", "198.51.100.6", 300);
	CHECK_EQ(dns_map_record_response(m, b_parse(&b), 400000), 0);
	b_start(&b, "servfail.test", DNS_RCODE_SERVFAIL);
	CHECK_EQ(dns_map_record_response(m, b_parse(&b), 400000), 0);
	static const uint8_t no_question[] = "\x12\x34\x81\x80\x00\x00\x00\x00\x00\x00\x00\x00";
	CHECK_EQ(dns_parse_response(no_question, sizeof no_question - 1, &parsed), 0);
	CHECK_EQ(dns_map_record_response(m, &parsed, 400000), 0);
	b_start(&b, "chaos.test", 0);
	b.b[b.n - 1] = 3; /* question class CH */
	b_addr(&b, "chaos.test", "198.51.100.8", 300);
	CHECK_EQ(dns_map_record_response(m, b_parse(&b), 400000), 0);
	b_start(&b, "we\\032ird.test", 0);
	b_cname(&b, "we\\032ird.test", "fine2.test", 300);
	b_addr(&b, "fine2.test", "198.51.100.9", 300);
	CHECK_EQ(dns_map_record_response(m, b_parse(&b), 400000), 0);
	CHECK_STR_EQ(names_of(m, "198.51.100.9", 400000), "");
	CHECK_STR_EQ(names_of(m, "198.51.100.6", 400000), "");
	CHECK_STR_EQ(names_of(m, "198.51.100.8", 400000), "");
	CHECK_EQ(dns_map_record_response(m, NULL, 0), 0);
	check_map(m);
	dns_map_free(m);
}

static void test_record_bounds(void)
{
	struct builder b;
	char owner[32], target[32];

	check_case("chain longer than DNS_MAP_CHAIN_MAX");
	struct dns_map *m = new_map(8, DNS_MAP_NAMES_MAX, 60, 86400);
	for (int len = DNS_MAP_CHAIN_MAX; len <= DNS_MAP_CHAIN_MAX + 1; len++) {
		b_start(&b, "c0.test", 0);
		for (int i = 0; i < len; i++) {
			snprintf(owner, sizeof owner, "c%d.test", i);
			snprintf(target, sizeof target, "c%d.test", i + 1);
			b_cname(&b, owner, target, 300);
		}
		b_addr(&b, target, len == DNS_MAP_CHAIN_MAX ? "192.0.2.1" : "192.0.2.2", 300);
		size_t recorded = dns_map_record_response(m, b_parse(&b), 0);
		CHECK_EQ(recorded, len == DNS_MAP_CHAIN_MAX ? (size_t)DNS_MAP_CHAIN_MAX + 1 : 0);
	}
	const char *const *names;
	struct addr a = ip("192.0.2.1");
	CHECK_EQ(dns_map_lookup(m, &a, 0, &names), DNS_MAP_CHAIN_MAX + 1);
	CHECK_STR_EQ(names[0], "c0.test");
	CHECK_STR_EQ(names[DNS_MAP_CHAIN_MAX], "c16.test");
	dns_map_free(m);

	check_case("names per address bound keeps the question's name");
	m = new_map(8, 2, 60, 86400);
	b_start(&b, "q.test", 0);
	b_cname(&b, "q.test", "a.test", 300);
	b_cname(&b, "a.test", "b.test", 300);
	b_addr(&b, "b.test", "192.0.2.3", 300);
	CHECK_EQ(dns_map_record_response(m, b_parse(&b), 0), 3);
	CHECK_STR_EQ(names_of(m, "192.0.2.3", 0), "q.test a.test");
	dns_map_free(m);

	check_case("many addresses, small map");
	m = new_map(4, 2, 60, 86400);
	b_start(&b, "many.test", 0);
	for (int i = 0; i < 10; i++) {
		snprintf(target, sizeof target, "192.0.2.%d", 100 + i);
		b_addr(&b, "many.test", target, (uint32_t)(300 + i));
	}
	CHECK_EQ(dns_map_record_response(m, b_parse(&b), 0), 10);
	CHECK_EQ(dns_map_count(m), 4);
	CHECK_STR_EQ(names_of(m, "192.0.2.109", 0), "many.test");
	CHECK_STR_EQ(names_of(m, "192.0.2.105", 0), "");
	check_map(m);
	dns_map_free(m);
}

/* Random operations against a plain model of the documented behaviour. */
#define MODEL_ADDRS 12
#define MODEL_NAMES 6
#define MODEL_CAP 5
#define MODEL_K 3

struct model_entry {
	bool present;
	size_t n;
	int names[MODEL_K]; /* most recent first */
	uint64_t expires[MODEL_K];
	uint64_t seq;
};

struct model {
	struct model_entry e[MODEL_ADDRS];
	uint64_t now, seq;
};

static uint64_t model_expiry(const struct model_entry *e)
{
	uint64_t latest = 0;
	for (size_t i = 0; i < e->n; i++)
		latest = e->expires[i] > latest ? e->expires[i] : latest;
	return latest;
}

static void model_purge(struct model *m, struct model_entry *e)
{
	size_t kept = 0;
	for (size_t i = 0; i < e->n; i++) {
		if (e->expires[i] > m->now) {
			e->names[kept] = e->names[i];
			e->expires[kept++] = e->expires[i];
		}
	}
	e->n = kept;
}

static int model_insert(struct model *m, int a, int name, uint32_t ttl_s)
{
	int rc = 0;
	struct model_entry *e = &m->e[a];
	if (!e->present) {
		int count = 0, victim = -1;
		for (int i = 0; i < MODEL_ADDRS; i++) {
			if (!m->e[i].present)
				continue;
			count++;
			if (victim < 0 || model_expiry(&m->e[i]) < model_expiry(&m->e[victim]) ||
			    (model_expiry(&m->e[i]) == model_expiry(&m->e[victim]) &&
			     m->e[i].seq < m->e[victim].seq))
				victim = i;
		}
		if (count == MODEL_CAP) {
			m->e[victim].present = false;
			rc = 1;
		}
		memset(e, 0, sizeof *e);
		e->present = true;
	} else {
		model_purge(m, e);
	}
	uint32_t ttl = ttl_s < 1 ? 1 : ttl_s > 50 ? 50 : ttl_s;
	uint64_t expires = m->now + ttl * 1000ull;
	size_t at = e->n;
	for (size_t i = 0; i < e->n; i++) {
		if (e->names[i] == name)
			at = i;
	}
	if (at < e->n) {
		expires = e->expires[at] > expires ? e->expires[at] : expires;
	} else {
		if (e->n < MODEL_K)
			e->n++;
		at = e->n - 1;
	}
	for (size_t i = at; i > 0; i--) {
		e->names[i] = e->names[i - 1];
		e->expires[i] = e->expires[i - 1];
	}
	e->names[0] = name;
	e->expires[0] = expires;
	e->seq = ++m->seq;
	return rc;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rng(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state % n);
}

static void test_against_model(void)
{
	static struct model model;
	memset(&model, 0, sizeof model);
	struct dns_map *m = new_map(MODEL_CAP, MODEL_K, 1, 50);
	struct addr addrs[MODEL_ADDRS];
	char names[MODEL_NAMES][16];
	for (int i = 0; i < MODEL_ADDRS; i++) {
		char text[32];
		snprintf(text, sizeof text, i % 2 ? "2001:db8::%d" : "192.0.2.%d", i);
		addrs[i] = ip(text);
	}
	for (int i = 0; i < MODEL_NAMES; i++)
		snprintf(names[i], sizeof names[i], "n%d.test", i);

	for (int step = 0; step < 20000; step++) {
		check_case("step %d", step);
		model.now += rng(4) == 0 ? rng(20000) : 0;
		int a = (int)rng(MODEL_ADDRS);
		switch (rng(4)) {
		case 0:
		case 1: {
			int name = (int)rng(MODEL_NAMES);
			uint32_t ttl = rng(60);
			int want = model_insert(&model, a, name, ttl);
			CHECK_EQ(dns_map_insert(m, &addrs[a], names[name], ttl, model.now), want);
			break;
		}
		case 2: {
			struct model_entry *e = &model.e[a];
			if (e->present) {
				model_purge(&model, e);
				if (e->n == 0)
					e->present = false;
			}
			const char *const *got;
			size_t n = dns_map_lookup(m, &addrs[a], model.now, &got);
			CHECK_EQ(n, e->present ? e->n : 0);
			for (size_t i = 0; i < n && i < e->n; i++)
				CHECK_STR_EQ(got[i], names[e->names[i]]);
			break;
		}
		default: {
			size_t want = 0;
			for (int i = 0; i < MODEL_ADDRS; i++) {
				if (model.e[i].present && model_expiry(&model.e[i]) <= model.now) {
					model.e[i].present = false;
					want++;
				}
			}
			CHECK_EQ(dns_map_sweep(m, model.now), want);
			break;
		}
		}
		size_t present = 0;
		for (int i = 0; i < MODEL_ADDRS; i++)
			present += model.e[i].present;
		CHECK_EQ(dns_map_count(m), present);
		check_map(m);
		if (check_failures_in_test)
			break;
	}
	dns_map_free(m);
}

static const struct check_test tests[] = {
	{"config", test_config},
	{"insert_lookup", test_insert_lookup},
	{"invalid_names", test_invalid_names},
	{"ttl", test_ttl},
	{"refresh", test_refresh},
	{"names_per_address", test_names_per_address},
	{"eviction", test_eviction},
	{"sweep_and_clock", test_sweep_and_clock},
	{"record_response", test_record_response},
	{"record_bounds", test_record_bounds},
	{"against_model", test_against_model},
};

CHECK_MAIN(tests)
