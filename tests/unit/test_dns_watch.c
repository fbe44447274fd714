/* test_dns_watch.c — answers believed only when they answer a query seen leaving (dns_watch.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "proxy/dns_watch.h"

static struct addr ip(const char *text)
{
	struct addr a;
	if (addr_parse(&a, text, strlen(text)) != 0)
		memset(&a, 0, sizeof a);
	return a;
}

static struct dns_watch_flow flow(const char *client, uint16_t cport, const char *server,
				  uint16_t sport)
{
	return (struct dns_watch_flow){ .client = ip(client), .server = ip(server),
					.client_port = cport, .server_port = sport };
}

/* A query for name and qtype with id. Returns its length. */
static size_t make_query(uint8_t *out, uint16_t id, const char *name, uint16_t qtype)
{
	size_t n = 12;

	memset(out, 0, 12);
	out[0] = (uint8_t)(id >> 8);
	out[1] = (uint8_t)id;
	out[2] = 0x01; /* RD */
	out[5] = 1;    /* QDCOUNT */
	for (const char *p = name; *p;) {
		const char *dot = strchr(p, '.');
		size_t len = dot ? (size_t)(dot - p) : strlen(p);
		out[n++] = (uint8_t)len;
		memcpy(out + n, p, len);
		n += len;
		p += len + (dot ? 1 : 0);
	}
	out[n++] = 0;
	out[n++] = (uint8_t)(qtype >> 8);
	out[n++] = (uint8_t)qtype;
	out[n++] = 0;
	out[n++] = 1; /* IN */
	return n;
}

/* The answer to query q: the question and one A record 192.0.2.77, TTL 300. */
static size_t make_answer(uint8_t *out, const uint8_t *q, size_t qlen)
{
	static const uint8_t rr[] = { 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x01, 0x2c, 0, 4, 192, 0, 2, 77 };

	memcpy(out, q, qlen);
	out[2] |= 0x80; /* QR */
	out[3] = 0x80;  /* RA, NOERROR */
	out[7] = 1;     /* ANCOUNT */
	memcpy(out + qlen, rr, sizeof rr);
	return qlen + sizeof rr;
}

static struct dns_message scratch;

static struct dns_watch *new_watch(size_t capacity)
{
	struct dns_watch *w = NULL;
	CHECK_EQ(dns_watch_new(&w, capacity, 0x1234567890abcdefu), 0);
	return w;
}

static void test_new(void)
{
	struct dns_watch *w = NULL;

	CHECK_EQ(dns_watch_new(&w, DNS_WATCH_CAPACITY_MAX + 1, 1), -EINVAL);
	CHECK(w == NULL);
	CHECK_EQ(dns_watch_new(&w, 0, 1), 0);
	CHECK(w != NULL);
	if (w)
		CHECK_EQ(dns_watch_count(w), 0);
	dns_watch_free(w);
	dns_watch_free(NULL);
}

static void test_matched_once(void)
{
	struct dns_watch *w = new_watch(16);
	struct dns_watch_flow f = flow("10.0.0.2", 50001, "192.0.2.53", 53);
	uint8_t q[300], a[400];
	size_t qn = make_query(q, 0x4242, "allowed.test", 1);
	size_t an = make_answer(a, q, qn);
	struct dns_watch_stats s;
	struct addr want = ip("192.0.2.77");

	if (!w)
		return;
	CHECK_EQ(dns_watch_query(w, &f, q, qn, 1000), 0);
	CHECK_EQ(dns_watch_count(w), 1);
	CHECK_EQ(dns_watch_answer(w, &f, a, an, 1500, &scratch), 0);
	CHECK_EQ(scratch.header.id, 0x4242);
	CHECK_EQ(scratch.n_answers, 1);
	CHECK(addr_equal(&scratch.answers[0].address, &want));
	CHECK_EQ(dns_watch_count(w), 0);
	/* the same answer again (a duplicate, or a forger replaying it) answers nothing */
	CHECK_EQ(dns_watch_answer(w, &f, a, an, 1600, &scratch), -ENOENT);
	dns_watch_get_stats(w, &s);
	CHECK_EQ(s.queries, 1);
	CHECK_EQ(s.matched, 1);
	CHECK_EQ(s.unmatched, 1);
	dns_watch_free(w);
}

/* Each row changes one thing in the answer or its flow: it must not be believed, and the query
 * must still be waiting for its real answer. */
static void test_mismatches(void)
{
	enum change {
		C_NONE, C_ID, C_CLIENT_PORT, C_CLIENT, C_SERVER, C_SERVER_PORT, C_NAME, C_NAME_CASE,
		C_QTYPE, C_QCLASS, C_NO_QUESTION, C_OPCODE, C_NOT_RESPONSE, C_CUT, C_FAMILY,
	};
	static const struct {
		const char *name;
		enum change change;
		int want;
	} rows[] = {
		{ "the real answer", C_NONE, 0 },
		{ "another id", C_ID, -ENOENT },
		{ "to another client port", C_CLIENT_PORT, -ENOENT },
		{ "to another client address", C_CLIENT, -ENOENT },
		{ "from another resolver", C_SERVER, -ENOENT },
		{ "from another port", C_SERVER_PORT, -ENOENT },
		{ "another name", C_NAME, -ENOENT },
		{ "the name in other case (0x20)", C_NAME_CASE, 0 },
		{ "another type", C_QTYPE, -ENOENT },
		{ "another class", C_QCLASS, -ENOENT },
		{ "no question", C_NO_QUESTION, -ENOENT },
		{ "opcode not QUERY", C_OPCODE, -ENOENT },
		{ "QR clear (a query)", C_NOT_RESPONSE, -EBADMSG },
		{ "cut in its record", C_CUT, -EBADMSG },
		{ "from the resolver's IPv6", C_FAMILY, -ENOENT },
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct dns_watch *w = new_watch(16);
		struct dns_watch_flow f = flow("10.0.0.2", 50001, "192.0.2.53", 53), af = f;
		uint8_t q[300], a[400], real[400];
		size_t qn = make_query(q, 0x0101, "pkg.example.test", 28), an, rn;

		check_case("%s", rows[i].name);
		if (!w)
			return;
		CHECK_EQ(dns_watch_query(w, &f, q, qn, 0), 0);
		rn = make_answer(real, q, qn);
		an = rn;
		memcpy(a, real, rn);
		switch (rows[i].change) {
		case C_NONE:
			break;
		case C_ID:
			a[1] ^= 1;
			break;
		case C_CLIENT_PORT:
			af.client_port++;
			break;
		case C_CLIENT:
			af.client = ip("10.0.0.3");
			break;
		case C_SERVER:
			af.server = ip("192.0.2.54");
			break;
		case C_SERVER_PORT:
			af.server_port = 5353;
			break;
		case C_NAME:
			a[13] = 'q'; /* "pkg" -> "qkg" */
			break;
		case C_NAME_CASE:
			a[13] = 'P';
			a[14] = 'K';
			break;
		case C_QTYPE:
			a[qn - 3] = 1; /* AAAA -> A */
			break;
		case C_QCLASS:
			a[qn - 1] = 3; /* CH */
			break;
		case C_NO_QUESTION:
			a[5] = 0; /* QDCOUNT 0, ANCOUNT 0: the header alone */
			a[7] = 0;
			an = 12;
			break;
		case C_OPCODE:
			a[2] |= 0x10; /* opcode 2 (STATUS) */
			break;
		case C_NOT_RESPONSE:
			a[2] &= 0x7f;
			break;
		case C_CUT:
			an = rn - 3;
			break;
		case C_FAMILY:
			af.server = ip("2001:db8::53");
			break;
		}
		CHECK_EQ(dns_watch_answer(w, &af, a, an, 10, &scratch), rows[i].want);
		if (rows[i].want != 0) /* the query still waits for the real answer */
			CHECK_EQ(dns_watch_answer(w, &f, real, rn, 20, &scratch), 0);
		CHECK_EQ(dns_watch_count(w), 0);
		dns_watch_free(w);
	}
}

static void test_timeout_and_refresh(void)
{
	struct dns_watch *w = new_watch(16);
	struct dns_watch_flow f = flow("2001:db8::2", 61000, "2001:db8::53", 53);
	uint8_t q[300], a[400];
	size_t qn = make_query(q, 7, "late.test", 1), an = make_answer(a, q, qn);
	struct dns_watch_stats s;

	if (!w)
		return;
	CHECK_EQ(dns_watch_query(w, &f, q, qn, 1000), 0);
	CHECK_EQ(dns_watch_answer(w, &f, a, an, 1000 + DNS_WATCH_TIMEOUT_MS, &scratch), -ENOENT);
	CHECK_EQ(dns_watch_count(w), 0);

	/* a retransmission restarts the wait, and is not remembered twice */
	CHECK_EQ(dns_watch_query(w, &f, q, qn, 2000), 0);
	CHECK_EQ(dns_watch_query(w, &f, q, qn, 2000 + DNS_WATCH_TIMEOUT_MS - 1), 0);
	CHECK_EQ(dns_watch_count(w), 1);
	CHECK_EQ(dns_watch_answer(w, &f, a, an, 2000 + DNS_WATCH_TIMEOUT_MS + 5, &scratch), 0);
	dns_watch_get_stats(w, &s);
	CHECK_EQ(s.late, 1);
	CHECK_EQ(s.matched, 1);
	CHECK_EQ(s.queries, 3);
	dns_watch_free(w);
}

static void test_bad_queries(void)
{
	struct dns_watch *w = new_watch(16);
	struct dns_watch_flow f = flow("10.0.0.2", 50001, "192.0.2.53", 53);
	uint8_t q[300], a[400];
	size_t qn = make_query(q, 9, "x.test", 1), an = make_answer(a, q, qn);
	struct dns_watch_stats s;

	if (!w)
		return;
	CHECK_EQ(dns_watch_query(w, &f, a, an, 0), -EBADMSG);    /* a response */
	CHECK_EQ(dns_watch_query(w, &f, q, 11, 0), -EBADMSG);    /* shorter than a header */
	CHECK_EQ(dns_watch_query(w, &f, q, qn - 1, 0), -EBADMSG); /* cut question */
	q[2] |= 0x28;                                             /* opcode 5 (UPDATE) */
	CHECK_EQ(dns_watch_query(w, &f, q, qn, 0), -EBADMSG);
	CHECK_EQ(dns_watch_count(w), 0);
	dns_watch_get_stats(w, &s);
	CHECK_EQ(s.bad_queries, 4);
	CHECK_EQ(s.queries, 0);
	dns_watch_free(w);
}

static void test_full_forgets_oldest(void)
{
	enum { CAP = 4, N = 6 };
	struct dns_watch *w = new_watch(CAP);
	uint8_t q[N][300];
	size_t qn[N];
	struct dns_watch_stats s;

	if (!w)
		return;
	for (int i = 0; i < N; i++) {
		struct dns_watch_flow f = flow("10.0.0.2", (uint16_t)(50000 + i), "192.0.2.53", 53);
		qn[i] = make_query(q[i], (uint16_t)i, "many.test", 1);
		CHECK_EQ(dns_watch_query(w, &f, q[i], qn[i], 0), 0);
		CHECK(dns_watch_count(w) <= CAP);
	}
	for (int i = 0; i < N; i++) {
		struct dns_watch_flow f = flow("10.0.0.2", (uint16_t)(50000 + i), "192.0.2.53", 53);
		uint8_t a[400];
		size_t an = make_answer(a, q[i], qn[i]);
		check_case("query %d", i);
		CHECK_EQ(dns_watch_answer(w, &f, a, an, 1, &scratch), i < N - CAP ? -ENOENT : 0);
	}
	dns_watch_get_stats(w, &s);
	CHECK_EQ(s.evicted, N - CAP);
	dns_watch_free(w);
}

/* A retransmitted query takes the newest slot: it outlives queries sent after it the first time. */
static void test_retransmission_is_newest(void)
{
	enum { CAP = 3 };
	struct dns_watch *w = new_watch(CAP);
	uint8_t q[4][300], a[400];
	size_t qn[4], an;
	struct dns_watch_flow f[4];

	if (!w)
		return;
	for (int i = 0; i < 4; i++) {
		f[i] = flow("10.0.0.2", (uint16_t)(50000 + i), "192.0.2.53", 53);
		qn[i] = make_query(q[i], (uint16_t)(100 + i), "retry.test", 1);
	}
	for (int i = 0; i < CAP; i++)
		CHECK_EQ(dns_watch_query(w, &f[i], q[i], qn[i], 0), 0);
	CHECK_EQ(dns_watch_query(w, &f[0], q[0], qn[0], 1), 0); /* query 0 again */
	CHECK_EQ(dns_watch_query(w, &f[3], q[3], qn[3], 2), 0); /* forgets query 1, not 0 */
	an = make_answer(a, q[0], qn[0]);
	CHECK_EQ(dns_watch_answer(w, &f[0], a, an, 3, &scratch), 0);
	an = make_answer(a, q[1], qn[1]);
	CHECK_EQ(dns_watch_answer(w, &f[1], a, an, 3, &scratch), -ENOENT);
	an = make_answer(a, q[2], qn[2]);
	CHECK_EQ(dns_watch_answer(w, &f[2], a, an, 3, &scratch), 0);
	dns_watch_free(w);
}

/* A simple model: a query is remembered while unanswered, younger than the timeout, and fewer
 * than `capacity` queries (retransmissions counted) came after it. Random queries and
 * answers over few ports, ids and names, so that collisions and reuse are frequent. */
struct model_query {
	bool live;
	uint16_t port, id;
	int name;
	uint64_t deadline, seq;
};

static uint32_t rng_state = 12345;

static uint32_t rng(uint32_t n)
{
	rng_state = rng_state * 1103515245u + 12345u;
	return (rng_state >> 8) % n;
}

static void test_against_model(void)
{
	enum { CAP = 8, PORTS = 3, IDS = 4, NAMES = 2, STEPS = 20000 };
	static const char *const names[NAMES] = { "a.test", "b.test" };
	struct model_query m[PORTS][IDS];
	struct dns_watch *w = new_watch(CAP);
	uint64_t now = 0, seq = 0;

	if (!w)
		return;
	memset(m, 0, sizeof m);
	for (int step = 0; step < STEPS; step++) {
		uint16_t port = (uint16_t)rng(PORTS), id = (uint16_t)rng(IDS);
		int name = (int)rng(NAMES);
		struct dns_watch_flow f = flow("10.0.0.2", (uint16_t)(40000 + port), "192.0.2.1", 53);
		struct model_query *e = &m[port][id];
		uint8_t q[300], a[400];
		size_t qn = make_query(q, id, names[name], 1);

		now += rng(3000);
		check_case("step %d", step);
		if (rng(2)) {
			CHECK_EQ(dns_watch_query(w, &f, q, qn, now), 0);
			e->seq = ++seq;
			e->live = true;
			e->name = name;
			e->id = id;
			e->deadline = now + DNS_WATCH_TIMEOUT_MS;
		} else {
			size_t an = make_answer(a, q, qn);
			bool alive = e->live && seq - e->seq < CAP;
			int want = alive && e->name == name && e->deadline > now ? 0 : -ENOENT;
			CHECK_EQ(dns_watch_answer(w, &f, a, an, now, &scratch), want);
			if (alive && e->name == name)
				e->live = false;
		}
		CHECK(dns_watch_count(w) <= CAP);
	}
	dns_watch_free(w);
}

static const struct check_test tests[] = {
	{ "new", test_new },
	{ "matched_once", test_matched_once },
	{ "mismatches", test_mismatches },
	{ "timeout_and_refresh", test_timeout_and_refresh },
	{ "bad_queries", test_bad_queries },
	{ "full_forgets_oldest", test_full_forgets_oldest },
	{ "retransmission_is_newest", test_retransmission_is_newest },
	{ "against_model", test_against_model },
};

CHECK_MAIN(tests)
