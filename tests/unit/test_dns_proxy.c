/* test_dns_proxy.c — the DNS proxy over real loopback UDP sockets, on Linux and (under Wine) on
 * Winsock: a test capture hands it the queries a client sends, a test resolver answers what it
 * forwards. Denied names are answered NXDOMAIN without reaching the resolver; allowed ones are
 * forwarded, answered with the resolver's address, and recorded in the DNS map. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "audit/audit.h"
#include "base/loop.h"
#include "capture/capture.h"
#include "check.h"
#include "policy/dns_map.h"
#include "policy/policy.h"
#include "proxy/dns_msg.h"
#include "proxy/dns_proxy.h"
#include "testsock.h"

/* A capture whose DNS listener is a plain UDP socket: every datagram on it was "going to"
 * 127.0.0.1:resolver_port, and replies leave from the same socket. */
struct test_capture {
	struct capture base;
	uint16_t resolver_port;
};

static int tc_udp_recv(struct capture *cap, loop_sock listener, void *buf, size_t size,
		       struct capture_endpoint *src, struct capture_endpoint *orig_dst)
{
	struct test_capture *c = (struct test_capture *)cap;
	const uint8_t lo[4] = {127, 0, 0, 1};
	uint16_t port = 0;
	long n = testsock_udp_recv(listener, buf, size, &port);

	if (n < 0)
		return (int)n;
	addr_from_bytes(&src->addr, ADDR_V4, lo);
	src->port = port;
	addr_from_bytes(&orig_dst->addr, ADDR_V4, lo);
	orig_dst->port = c->resolver_port;
	return (int)n;
}

static int tc_udp_send(struct capture *cap, const struct capture_endpoint *from,
		       const struct capture_endpoint *to, const void *buf, size_t len)
{
	(void)from;
	long n = testsock_udp_send(cap->listeners[CAPTURE_DNS_UDP][CAPTURE_IPV4].sock, buf, len,
				   to->port);
	return n < 0 ? (int)n : 0;
}

static int tc_no_tcp(struct capture *cap, loop_sock accepted, struct capture_endpoint *dst)
{
	(void)cap;
	(void)accepted;
	(void)dst;
	return -ENOENT;
}

static const struct capture_ops test_capture_ops = {
	.name = "test",
	.tcp_original_dst = tc_no_tcp,
	.udp_recv = tc_udp_recv,
	.udp_send = tc_udp_send,
};

/* A query for name (type A) with id. Returns its length. */
static size_t make_query(uint8_t *out, uint16_t id, const char *name)
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
	out[n++] = 0;
	out[n++] = 1; /* A */
	out[n++] = 0;
	out[n++] = 1; /* IN */
	return n;
}

/* The resolver's answer to query q: the question, one A record 192.0.2.77, TTL 300. */
static size_t make_answer(uint8_t *out, const uint8_t *q, size_t qlen)
{
	static const uint8_t rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x01, 0x2c, 0, 4, 192, 0, 2, 77};

	memcpy(out, q, qlen);
	out[2] |= 0x80; /* QR */
	out[3] = 0x80;  /* RA, NOERROR */
	out[7] = 1;     /* ANCOUNT */
	memcpy(out + qlen, rr, sizeof rr);
	return qlen + sizeof rr;
}

struct rig {
	struct loop *loop;
	struct policy *policy;
	struct dns_map *map;
	struct dns_proxy *proxy;
	struct test_capture cap;
	loop_sock client, resolver;
	uint16_t proxy_port, resolver_port;
};

static bool rig_open(struct rig *r)
{
	static const char text[] = "deny domain evil.test\n"
				   "allow domain *.test\n"
				   "default deny\n";
	struct dns_map_config mc;

	memset(r, 0, sizeof *r);
	capture_init(&r->cap.base, &test_capture_ops);
	r->cap.base.listeners[CAPTURE_DNS_UDP][CAPTURE_IPV4].sock =
		testsock_udp_bound(&r->proxy_port);
	r->cap.base.listeners[CAPTURE_DNS_UDP][CAPTURE_IPV4].port = r->proxy_port;
	r->resolver = testsock_udp_bound(&r->resolver_port);
	r->cap.resolver_port = r->resolver_port;
	r->client = testsock_udp_bound(&(uint16_t){0});
	dns_map_config_default(&mc);
	mc.hash_seed = 42;
	CHECK_EQ(policy_parse(&r->policy, "dns.policy", text, strlen(text), NULL), 0);
	CHECK_EQ(dns_map_new(&r->map, &mc), 0);
	CHECK_EQ(loop_new(&r->loop, 0), 0);
	struct dns_proxy_config cfg = {
		.loop = r->loop,
		.policy = r->policy,
		.map = r->map,
		.capture = &r->cap.base,
		.quiet = true,
	};
	CHECK_EQ(dns_proxy_new(&r->proxy, &cfg), 0);
	return r->proxy != NULL;
}

static void rig_close(struct rig *r)
{
	dns_proxy_free(r->proxy);
	loop_free(r->loop);
	dns_map_free(r->map);
	policy_free(r->policy);
	testsock_close(r->cap.base.listeners[CAPTURE_DNS_UDP][CAPTURE_IPV4].sock);
	testsock_close(r->resolver);
	testsock_close(r->client);
}

/* Runs the loop until a datagram waits on s (read into buf), at most about 5 s. */
static long pump_until(struct rig *r, loop_sock s, uint8_t *buf, size_t n, uint16_t *from)
{
	for (int i = 0; i < 5000; i++) {
		long got = testsock_udp_recv(s, buf, n, from);
		if (got != -EAGAIN)
			return got;
		loop_run_once(r->loop, 1);
	}
	return -ETIMEDOUT;
}

/* Allowed: forwarded to the resolver the client asked, answered, recorded in the map. */
static void test_allowed_forwarded(void)
{
	struct rig r;
	uint8_t q[512], fwd[512], ans[512], got[512];
	uint16_t proxy_side = 0;
	struct dns_message m;

	if (!rig_open(&r))
		return;
	size_t qlen = make_query(q, 0x1234, "a.test");
	CHECK_EQ(testsock_udp_send(r.client, q, qlen, r.proxy_port), (long)qlen);
	long n = pump_until(&r, r.resolver, fwd, sizeof fwd, &proxy_side);
	CHECK(n > 12);
	if (n > 12) {
		CHECK_EQ(dns_parse_query(fwd, (size_t)n, &m), 0);
		size_t alen = make_answer(ans, fwd, (size_t)n);
		CHECK_EQ(testsock_udp_send(r.resolver, ans, alen, proxy_side), (long)alen);
	}
	n = pump_until(&r, r.client, got, sizeof got, NULL);
	CHECK(n > 12);
	if (n > 12) {
		CHECK_EQ(got[0], 0x12); /* the client's own id */
		CHECK_EQ(got[1], 0x34);
		CHECK_EQ(got[3] & 0x0f, 0); /* NOERROR */
		CHECK_EQ(got[7], 1);       /* one answer */
	}
	const uint8_t want[4] = {192, 0, 2, 77};
	struct addr a;
	const char *const *names = NULL;
	addr_from_bytes(&a, ADDR_V4, want);
	CHECK_EQ(dns_map_lookup(r.map, &a, loop_now(r.loop), &names), 1);
	if (names)
		CHECK_STR_EQ(names[0], "a.test");
	struct dns_proxy_stats st;
	dns_proxy_get_stats(r.proxy, &st);
	CHECK_EQ(st.queries, 1);
	CHECK_EQ(st.forwarded, 1);
	CHECK_EQ(st.denied, 0);
	rig_close(&r);
}

/* Denied: NXDOMAIN at once, and the resolver never hears of it. */
static void test_denied_nxdomain(void)
{
	struct rig r;
	uint8_t q[512], got[512];

	if (!rig_open(&r))
		return;
	size_t qlen = make_query(q, 0x4321, "evil.test");
	CHECK_EQ(testsock_udp_send(r.client, q, qlen, r.proxy_port), (long)qlen);
	long n = pump_until(&r, r.client, got, sizeof got, NULL);
	CHECK(n >= 12);
	if (n >= 12) {
		CHECK_EQ(got[0], 0x43);
		CHECK_EQ(got[1], 0x21);
		CHECK_EQ(got[3] & 0x0f, 3); /* NXDOMAIN */
	}
	for (int i = 0; i < 50; i++)
		loop_run_once(r.loop, 1);
	CHECK_EQ(testsock_udp_recv(r.resolver, got, sizeof got, NULL), -EAGAIN);
	struct dns_proxy_stats st;
	dns_proxy_get_stats(r.proxy, &st);
	CHECK_EQ(st.denied, 1);
	CHECK_EQ(st.forwarded, 0);
	rig_close(&r);
}

static const struct check_test tests[] = {
	{"allowed_forwarded", test_allowed_forwarded},
	{"denied_nxdomain", test_denied_nxdomain},
};

CHECK_MAIN(tests)
