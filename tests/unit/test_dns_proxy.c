/* test_dns_proxy.c — the DNS proxy over real loopback UDP sockets, on Linux and (under Wine) on
 * Winsock: a test capture hands it the queries a client sends, a test resolver answers what it
 * forwards. Denied names are answered NXDOMAIN without reaching the resolver; allowed ones are
 * forwarded, answered with the resolver's address, and recorded in the DNS map. A table of
 * queries and answers covers the rebinding guard (what the client, the map, the audit trail and
 * stderr see) and the side channels (query types, opcodes, classes, name limits, reverse names);
 * a sequence covers the bound on distinct names. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "base/log.h"
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

/* Query options: type, opcode, class, and an EDNS OPT record announcing udp_size (0: none). */
struct query_opts {
	uint16_t qtype;  /* 0: A */
	uint8_t opcode;
	uint16_t qclass; /* 0: IN */
	uint16_t udp_size;
};

/* Writes name's labels (text, dot-separated; no escapes) at out. Returns the bytes written. */
static size_t put_name(uint8_t *out, const char *name)
{
	size_t n = 0;
	for (const char *p = name; *p;) {
		const char *dot = strchr(p, '.');
		size_t len = dot ? (size_t)(dot - p) : strlen(p);
		out[n++] = (uint8_t)len;
		memcpy(out + n, p, len);
		n += len;
		p += len + (dot ? 1 : 0);
	}
	out[n++] = 0;
	return n;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* A query for name with id. Returns its length (out holds 1024 bytes). */
static size_t make_query_opts(uint8_t *out, uint16_t id, const char *name,
			      const struct query_opts *o)
{
	memset(out, 0, 12);
	put16(out, id);
	out[2] = (uint8_t)(0x01 | (o->opcode & 15) << 3); /* RD, opcode */
	out[5] = 1;                                         /* QDCOUNT */
	size_t n = 12 + put_name(out + 12, name);
	put16(out + n, o->qtype ? o->qtype : 1);
	put16(out + n + 2, o->qclass ? o->qclass : 1);
	n += 4;
	if (o->udp_size) {
		static const uint8_t opt[] = {0, 0, 41, 0, 0, 0, 0, 0, 0, 0, 0};
		memcpy(out + n, opt, sizeof opt);
		put16(out + n + 3, o->udp_size);
		out[11] = 1; /* ARCOUNT */
		n += sizeof opt;
	}
	return n;
}

/* A query for name (type A) with id. Returns its length. */
static size_t make_query(uint8_t *out, uint16_t id, const char *name)
{
	struct query_opts o = {0};
	return make_query_opts(out, id, name, &o);
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

/* Appends one A or AAAA record for the question's name (a pointer to offset 12), TTL 300. */
static size_t put_address_record(uint8_t *out, const char *text)
{
	struct addr a;
	if (addr_parse(&a, text, strlen(text)) != 0) {
		check_fail(__FILE__, __LINE__, "bad address %s", text);
		return 0;
	}
	size_t len = addr_len(&a);
	uint8_t rr[12] = {0xc0, 0x0c, 0, a.family == ADDR_V4 ? 1 : 28, 0, 1, 0, 0, 0x01, 0x2c};
	put16(rr + 10, (uint16_t)len);
	memcpy(out, rr, sizeof rr);
	memcpy(out + sizeof rr, a.bytes, len);
	return sizeof rr + len;
}

/* The resolver's answer to query q (without its OPT record): the question, then an A/AAAA record
 * for each address of `answers` and of `additional` (space-separated, NULL for none). */
static size_t make_answer_with(uint8_t *out, const uint8_t *q, size_t qlen, const char *answers,
			       const char *additional)
{
	struct dns_message m;
	size_t n = qlen;
	if (dns_parse_query(q, qlen, &m) == 0)
		n = 12 + m.question.name.len + 4; /* the OPT record is not echoed */
	memcpy(out, q, n);
	out[2] |= 0x80;
	out[3] = 0x80;
	memset(out + 6, 0, 6);
	const char *lists[2] = {answers, additional};
	for (int s = 0; s < 2; s++) {
		char buf[512];
		uint16_t count = 0;
		snprintf(buf, sizeof buf, "%s", lists[s] ? lists[s] : "");
		for (char *t = strtok(buf, " "); t; t = strtok(NULL, " ")) {
			n += put_address_record(out + n, t);
			count++;
		}
		put16(out + (s == 0 ? 6 : 10), count);
	}
	return n;
}

struct rig {
	struct loop *loop;
	struct policy *policy;
	struct dns_map *map;
	struct dns_proxy *proxy;
	struct audit *audit;
	FILE *trail, *log;
	struct test_capture cap;
	loop_sock client, resolver;
	uint16_t proxy_port, resolver_port;
};

/* With trust, the test resolver (127.0.0.1) is one the proxy trusts, as the system's would be. */
static bool rig_open_trusting(struct rig *r, const char *policy, uint32_t max_names, bool trust)
{
	struct dns_map_config mc;
	static const uint8_t lo[4] = {127, 0, 0, 1};
	struct addr trusted[2];

	memset(r, 0, sizeof *r);
	capture_init(&r->cap.base, &test_capture_ops);
	r->cap.base.listeners[CAPTURE_DNS_UDP][CAPTURE_IPV4].sock =
		testsock_udp_bound(&r->proxy_port);
	r->cap.base.listeners[CAPTURE_DNS_UDP][CAPTURE_IPV4].port = r->proxy_port;
	r->resolver = testsock_udp_bound(&r->resolver_port);
	r->cap.resolver_port = r->resolver_port;
	r->client = testsock_udp_bound(&(uint16_t){0});
	r->trail = tmpfile();
	r->log = tmpfile();
	CHECK(r->trail && r->log);
	if (!r->trail || !r->log)
		return false;
	log_set_stream(r->log);
	dns_map_config_default(&mc);
	mc.hash_seed = 42;
	CHECK_EQ(policy_parse(&r->policy, "dns.policy", policy, strlen(policy), NULL), 0);
	CHECK_EQ(dns_map_new(&r->map, &mc), 0);
	CHECK_EQ(loop_new(&r->loop, 0), 0);
	CHECK_EQ(audit_open_stream(&r->audit, r->trail, "test"), 0);
	struct dns_proxy_config cfg = {
		.loop = r->loop,
		.policy = r->policy,
		.audit = r->audit,
		.map = r->map,
		.capture = &r->cap.base,
		.max_names = max_names,
		.hash_seed = 7,
	};
	addr_from_bytes(&trusted[0], ADDR_V4, (const uint8_t[4]){192, 0, 2, 53});
	addr_from_bytes(&trusted[1], ADDR_V4, lo);
	cfg.trusted = trusted;
	cfg.n_trusted = trust ? 2 : 1;
	CHECK_EQ(dns_proxy_new(&r->proxy, &cfg), 0);
	return r->proxy != NULL;
}

static bool rig_open_with(struct rig *r, const char *policy, uint32_t max_names)
{
	return rig_open_trusting(r, policy, max_names, true);
}

static bool rig_open(struct rig *r)
{
	return rig_open_with(r, "deny domain evil.test\n"
				"allow domain *.test\n"
				"default deny\n", 0);
}

static void rig_close(struct rig *r)
{
	dns_proxy_free(r->proxy);
	audit_close(r->audit);
	loop_free(r->loop);
	dns_map_free(r->map);
	policy_free(r->policy);
	testsock_close(r->cap.base.listeners[CAPTURE_DNS_UDP][CAPTURE_IPV4].sock);
	testsock_close(r->resolver);
	testsock_close(r->client);
	log_set_stream(NULL);
	if (r->trail)
		fclose(r->trail);
	if (r->log)
		fclose(r->log);
}

/* The whole of f (rewound) into buf, NUL-terminated. */
static const char *slurp(FILE *f, char *buf, size_t n)
{
	fflush(f);
	rewind(f);
	size_t got = fread(buf, 1, n - 1, f);
	buf[got] = '\0';
	fseek(f, 0, SEEK_END);
	return buf;
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
		CHECK_EQ(n, (long)make_answer(ans, q, qlen)); /* passed on as it came */
		CHECK(memcmp(got, ans, (size_t)n) == 0);
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
	CHECK_EQ(st.guarded_answers, 0);
	CHECK_EQ(st.untrusted, 0);
	rig_close(&r);
}

/* A resolver the system is not configured with (the session asked it): its answer reaches the
 * application, but does not enter the DNS map, and is counted. */
static void test_untrusted_resolver_not_recorded(void)
{
	struct rig r;
	uint8_t q[512], fwd[512], ans[600], got[600];
	uint16_t proxy_side = 0;

	if (!rig_open_trusting(&r, "allow domain a.test\n", 0, false))
		return;
	size_t qlen = make_query(q, 0x4321, "a.test");
	CHECK_EQ(testsock_udp_send(r.client, q, qlen, r.proxy_port), (long)qlen);
	long n = pump_until(&r, r.resolver, fwd, sizeof fwd, &proxy_side);
	CHECK(n > 12);
	if (n > 12) {
		size_t alen = make_answer(ans, fwd, (size_t)n);
		CHECK_EQ(testsock_udp_send(r.resolver, ans, alen, proxy_side), (long)alen);
	}
	n = pump_until(&r, r.client, got, sizeof got, NULL);
	CHECK_EQ(n, (long)make_answer(ans, q, qlen)); /* the application has its answer */
	struct addr a;
	const char *const *names = NULL;
	addr_from_bytes(&a, ADDR_V4, (const uint8_t[4]){192, 0, 2, 77});
	CHECK_EQ(dns_map_lookup(r.map, &a, loop_now(r.loop), &names), 0);
	struct dns_proxy_stats st;
	dns_proxy_get_stats(r.proxy, &st);
	CHECK_EQ(st.answered, 1);
	CHECK_EQ(st.untrusted, 1);
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

/* ---- The table: one query, what the resolver answers, what everybody sees ---- */

#define LONG63 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define LONG61 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define LABELS16 "a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a."
#define LABELS128 LABELS16 LABELS16 LABELS16 LABELS16 LABELS16 LABELS16 LABELS16 LABELS16
#define REV6_LOOPBACK "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa"
#define LONG_NAME LONG63 "." LONG63 "." LONG63 ".test"

static const char open_policy[] = "default allow\n";

struct proxy_case {
	const char *name;
	const char *policy;
	const char *qname;
	struct query_opts q;
	bool forwarded;
	const char *answers;    /* the resolver's answer section (space-separated addresses) */
	const char *additional; /* and its additional section */
	/* expectations */
	int rcode;
	bool tc;
	const char *client_sees; /* addresses of the reply's answer section, in order */
	uint16_t arcount;        /* the reply's additional records */
	const char *event_part;  /* a substring of the dns event; "" for no event at all */
	const char *log_part;    /* a substring of stderr; NULL: nothing on stderr */
};

static const struct proxy_case proxy_cases[] = {
	{"a public answer passes unchanged", open_policy, "a.test", {0}, true, "192.0.2.77", NULL,
	 0, false, "192.0.2.77", 0,
	 "\"decision\":\"allow\",\"rule\":\"default\",\"answers\":[\"192.0.2.77\"],\"resolver\"",
	 NULL},
	{"a private answer is dropped", open_policy, "rebind.test", {0}, true, "10.0.0.5", NULL, 0,
	 false, "", 0,
	 "\"answers\":[],\"dropped\":[{\"address\":\"10.0.0.5\",\"rule\":\"guard:private\"}]",
	 "sluice: dropped from dns rebind.test (A): 10.0.0.5 by guard:private\n"},
	{"public kept, metadata and loopback dropped", open_policy, "mixed.test", {0}, true,
	 "198.51.100.10 169.254.169.254 127.0.0.1", NULL, 0, false, "198.51.100.10", 0,
	 "\"answers\":[\"198.51.100.10\"],\"dropped\":[{\"address\":\"169.254.169.254\","
	 "\"rule\":\"guard:metadata\"},{\"address\":\"127.0.0.1\",\"rule\":\"guard:loopback\"}]",
	 "(A): 169.254.169.254 by guard:metadata, 127.0.0.1 by guard:loopback\n"},
	{"IPv4-mapped loopback in AAAA", open_policy, "mapped.test", {.qtype = 28}, true,
	 "::ffff:127.0.0.1", NULL, 0, false, "", 0,
	 "\"dropped\":[{\"address\":\"::ffff:127.0.0.1\",\"rule\":\"guard:loopback\"}]",
	 "(AAAA): ::ffff:127.0.0.1 by guard:loopback"},
	{"NAT64 form of a private address", open_policy, "nat64.test", {.qtype = 28}, true,
	 "64:ff9b::a00:5 2001:db8::1", NULL, 0, false, "2001:db8::1", 0,
	 "\"dropped\":[{\"address\":\"64:ff9b::a00:5\",\"rule\":\"guard:private\"}]", "nat64.test"},
	{"ULA and link-local IPv6", open_policy, "v6.test", {.qtype = 28}, true,
	 "fd12::1 fe80::1 fd00:ec2::254", NULL, 0, false, "", 0,
	 "{\"address\":\"fd00:ec2::254\",\"rule\":\"guard:metadata\"}",
	 "fe80::1 by guard:link-local"},
	{"more than four dropped: the line says how many more", open_policy, "many.test", {0},
	 true, "10.0.0.1 10.0.0.2 10.0.0.3 10.0.0.4 10.0.0.5 10.0.0.6", NULL, 0, false, "", 0,
	 "{\"address\":\"10.0.0.6\",\"rule\":\"guard:private\"}]",
	 "10.0.0.4 by guard:private and 2 more\n"},
	{"allow cidr lets the private answer pass", "allow cidr 10.0.0.0/8\ndefault allow\n",
	 "rebind.test", {0}, true, "10.0.0.5", NULL, 0, false, "10.0.0.5", 0,
	 "\"answers\":[\"10.0.0.5\"],\"resolver\"", NULL},
	{"a cidr rule for one port is enough for the answer",
	 "allow cidr 10.0.0.0/8 port 443\nallow domain *.test\n", "rebind.test", {0}, true,
	 "10.0.0.5", NULL, 0, false, "10.0.0.5", 0, "\"answers\":[\"10.0.0.5\"]", NULL},
	{"an earlier deny cidr wins", "deny cidr 10.0.0.5\nallow cidr 10.0.0.0/8\ndefault allow\n",
	 "rebind.test", {0}, true, "10.0.0.5 10.0.0.6", NULL, 0, false, "10.0.0.6", 0,
	 "\"answers\":[\"10.0.0.6\"],\"dropped\":[{\"address\":\"10.0.0.5\"", "10.0.0.5 by"},
	{"a domain rule is not enough", "allow domain rebind.test\n", "rebind.test", {0}, true,
	 "10.0.0.5", NULL, 0, false, "", 0, "\"rule\":\"dns.policy:1\",\"answers\":[],\"dropped\"",
	 "guard:private"},
	{"additional-section addresses are dropped too", open_policy, "glue.test", {.qtype = 15},
	 true, NULL, "10.0.0.9 192.0.2.9", 0, false, "", 1,
	 "\"dropped\":[{\"address\":\"10.0.0.9\"",
	 "(MX): 10.0.0.9 by guard:private"},
	{"rebuilt over the client's UDP size: TC, retry over TCP", open_policy,
	 LONG63 "." LONG63 "." LONG63 ".test", {0}, true, "198.51.100.1 198.51.100.2 10.0.0.5",
	 NULL, 0, true, "", 0, "\"answers\":[],\"dropped\":[{\"address\":\"10.0.0.5\"", "10.0.0.5"},
	{"the client's EDNS size is kept", open_policy, LONG63 "." LONG63 "." LONG63 ".test",
	 {.udp_size = 1232}, true, "198.51.100.1 198.51.100.2 10.0.0.5", NULL, 0, false,
	 "198.51.100.1 198.51.100.2", 0, "\"answers\":[\"198.51.100.1\",\"198.51.100.2\"]",
	 "10.0.0.5"},

	/* query types */
	{"TXT forwarded", open_policy, "t.test", {.qtype = 16}, true, NULL, NULL, 0, false, "", 0,
	 "\"qtype\":\"TXT\",\"decision\":\"allow\"", NULL},
	{"HTTPS forwarded", open_policy, "t.test", {.qtype = 65}, true, NULL, NULL, 0, false, "",
	 0, "\"qtype\":\"HTTPS\",\"decision\":\"allow\"", NULL},
	{"SVCB forwarded", open_policy, "_dns.t.test", {.qtype = 64}, true, NULL, NULL, 0, false,
	 "", 0, "\"qtype\":\"SVCB\",\"decision\":\"allow\"", NULL},
	{"SRV forwarded", open_policy, "_x._tcp.t.test", {.qtype = 33}, true, NULL, NULL, 0, false,
	 "", 0, "\"qtype\":\"SRV\",\"decision\":\"allow\"", NULL},
	{"CNAME forwarded", open_policy, "t.test", {.qtype = 5}, true, NULL, NULL, 0, false, "", 0,
	 "\"qtype\":\"CNAME\",\"decision\":\"allow\"", NULL},
	{"PTR forwarded", open_policy, "7.2.0.192.in-addr.arpa", {.qtype = 12}, true, NULL, NULL,
	 0, false, "", 0, "\"qtype\":\"PTR\",\"decision\":\"allow\"", NULL},
	{"ANY refused", open_policy, "t.test", {.qtype = 255}, false, NULL, NULL, 5, false, "", 0,
	 "\"qtype\":\"ANY\",\"decision\":\"deny\",\"rule\":\"qtype\","
	 "\"error\":\"query type not forwarded\"}",
	 "sluice: refused dns t.test (ANY): query type not forwarded\n"},
	{"AXFR refused", open_policy, "t.test", {.qtype = 252}, false, NULL, NULL, 5, false, "", 0,
	 "\"qtype\":\"AXFR\",\"decision\":\"deny\",\"rule\":\"qtype\"", "(AXFR)"},
	{"IXFR refused", open_policy, "t.test", {.qtype = 251}, false, NULL, NULL, 5, false, "", 0,
	 "\"qtype\":\"IXFR\",\"decision\":\"deny\",\"rule\":\"qtype\"", "(IXFR)"},
	{"NULL refused", open_policy, "t.test", {.qtype = 10}, false, NULL, NULL, 5, false, "", 0,
	 "\"qtype\":\"NULL\",\"decision\":\"deny\",\"rule\":\"qtype\"", "(TYPE10)"},
	{"NS refused", open_policy, "t.test", {.qtype = 2}, false, NULL, NULL, 5, false, "", 0,
	 "\"qtype\":\"NS\",\"decision\":\"deny\",\"rule\":\"qtype\"", "(NS)"},
	{"unknown type refused", open_policy, "t.test", {.qtype = 65280}, false, NULL, NULL, 5,
	 false, "", 0, "\"qtype\":65280,\"decision\":\"deny\",\"rule\":\"qtype\"", "(TYPE65280)"},
	{"a refused type of a denied name: the type decides", "default deny\n", "t.test",
	 {.qtype = 255}, false, NULL, NULL, 5, false, "", 0, "\"rule\":\"qtype\"", "(ANY)"},
	{"opcode STATUS: NOTIMP", open_policy, "t.test", {.opcode = 2}, false, NULL, NULL, 4,
	 false, "", 0, "\"decision\":\"deny\",\"rule\":\"opcode\"", "opcode not forwarded"},
	{"opcode UPDATE: NOTIMP", open_policy, "t.test", {.qtype = 6, .opcode = 5}, false, NULL,
	 NULL, 4, false, "", 0, "\"rule\":\"opcode\"", "opcode not forwarded"},
	{"class CH refused", open_policy, "version.bind", {.qtype = 16, .qclass = 3}, false, NULL,
	 NULL, 5, false, "", 0, "\"rule\":\"qclass\",\"error\":\"class not forwarded\"",
	 "class not forwarded"},
	{"not a host name refused", open_policy, "a!b.test", {0}, false, NULL, NULL, 5, false, "",
	 0, "\"qname\":\"a\\\\033b.test\",\"qtype\":\"A\",\"decision\":\"deny\",\"rule\":\"qname\"",
	 "not a host name"},

	/* names at and over the DNS limits */
	{"a 63-byte label is fine", open_policy, LONG63 ".test", {0}, true, NULL, NULL, 0, false,
	 "", 0, "\"decision\":\"allow\"", NULL},
	{"a 253-character name is fine", open_policy, LONG63 "." LONG63 "." LONG63 "." LONG61, {0},
	 true, NULL, NULL, 0, false, "", 0, "\"decision\":\"allow\"", NULL},
	{"a 64-byte label: FORMERR", open_policy, "a" LONG63 ".test", {0}, false, NULL, NULL, 1,
	 false, "", 0, "", NULL},
	{"a 254-character name: FORMERR", open_policy, LONG63 "." LONG63 "." LONG63 ".a" LONG61,
	 {0}, false, NULL, NULL, 1, false, "", 0, "", NULL},
	{"128 labels: FORMERR", open_policy, LABELS128 "test", {0}, false, NULL, NULL, 1, false, "",
	 0, "", NULL},

	/* reverse names */
	{"reverse name of a private address", "allow domain *.in-addr.arpa\n",
	 "5.0.0.10.in-addr.arpa", {.qtype = 12}, false, NULL, NULL, 3, false, "", 0,
	 "\"qtype\":\"PTR\",\"decision\":\"deny\",\"rule\":\"guard:private\"}",
	 "sluice: denied dns 5.0.0.10.in-addr.arpa (PTR) by guard:private\n"},
	{"reverse name of loopback, IPv6", open_policy, REV6_LOOPBACK, {.qtype = 12}, false, NULL,
	 NULL, 3, false, "", 0, "\"rule\":\"guard:loopback\"", "by guard:loopback"},
	{"reverse name of an allowed private address", "allow cidr 10.0.0.0/8\n"
	 "allow domain *.in-addr.arpa\n", "5.0.0.10.in-addr.arpa", {.qtype = 12}, true, NULL, NULL,
	 0, false, "", 0, "\"decision\":\"allow\",\"rule\":\"dns.policy:2\"", NULL},
	{"a network's reverse name is a name", open_policy, "10.in-addr.arpa", {.qtype = 12}, true,
	 NULL, NULL, 0, false, "", 0, "\"decision\":\"allow\"", NULL},
	{"a reverse-looking name with a leading zero is a name", open_policy,
	 "05.0.0.10.in-addr.arpa", {.qtype = 12}, true, NULL, NULL, 0, false, "", 0,
	 "\"decision\":\"allow\"", NULL},
	{"reverse names are denied like names", "default deny\n", "5.0.0.10.in-addr.arpa",
	 {.qtype = 12}, false, NULL, NULL, 3, false, "", 0, "\"rule\":\"default\"}",
	 "by default\n"},
};

/* Whether a's answer section (a parsed reply) lists exactly the addresses of `want`. */
static void check_addresses(const struct dns_message *m, const char *want)
{
	char got[512] = "";
	for (size_t i = 0; i < m->n_answers; i++) {
		char a[ADDR_STRLEN];
		if (m->answers[i].type == DNS_TYPE_CNAME)
			continue;
		addr_format(&m->answers[i].address, a, sizeof a);
		snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", got[0] ? " " : "", a);
	}
	CHECK_STR_EQ(got, want);
}

/* Each address of `list` is (or is not) attributed to name in the map. */
static void check_map(struct rig *r, const char *list, const char *name, bool present)
{
	char buf[512];
	snprintf(buf, sizeof buf, "%s", list ? list : "");
	for (char *t = strtok(buf, " "); t; t = strtok(NULL, " ")) {
		struct addr a;
		const char *const *names = NULL;
		addr_parse(&a, t, strlen(t));
		size_t n = dns_map_lookup(r->map, &a, loop_now(r->loop), &names);
		if (present) {
			CHECK_EQ(n, 1);
			if (n)
				CHECK_STR_EQ(names[0], name);
		} else {
			CHECK_EQ(n, 0);
		}
	}
}

static void run_proxy_case(const struct proxy_case *c)
{
	static uint8_t q[1024], fwd[2048], ans[4096], got[4096];
	static char trail[32768], log[8192];
	struct rig r;
	uint16_t proxy_side = 0;
	struct dns_message m;

	if (!rig_open_with(&r, c->policy, 0))
		return;
	size_t qlen = make_query_opts(q, 0x5151, c->qname, &c->q);
	CHECK_EQ(testsock_udp_send(r.client, q, qlen, r.proxy_port), (long)qlen);
	if (c->forwarded) {
		long n = pump_until(&r, r.resolver, fwd, sizeof fwd, &proxy_side);
		CHECK(n > 12);
		if (n > 12) {
			size_t alen = make_answer_with(ans, fwd, (size_t)n, c->answers,
						       c->additional);
			CHECK_EQ(testsock_udp_send(r.resolver, ans, alen, proxy_side),
				 (long)alen);
		}
	}
	long n = pump_until(&r, r.client, got, sizeof got, NULL);
	CHECK(n >= 12);
	if (n >= 12) {
		CHECK_EQ(got[0], 0x51);
		CHECK_EQ(got[1], 0x51);
		CHECK_EQ(got[3] & 0x0f, c->rcode);
		CHECK_EQ((got[2] & 0x02) != 0, c->tc);
		if (c->rcode == 0 && c->q.udp_size == 0)
			CHECK(n <= 512);
		if (c->rcode == 0 && dns_parse_response(got, (size_t)n, &m) == 0) {
			check_addresses(&m, c->client_sees);
			CHECK_EQ(m.header.arcount, c->arcount);
		} else if (c->rcode == 0) {
			check_fail(__FILE__, __LINE__, "the reply does not parse");
		}
	}
	if (!c->forwarded) {
		for (int i = 0; i < 20; i++)
			loop_run_once(r.loop, 1);
		CHECK_EQ(testsock_udp_recv(r.resolver, fwd, sizeof fwd, NULL), -EAGAIN);
	}
	char lower[300];
	snprintf(lower, sizeof lower, "%s", c->qname);
	check_map(&r, c->client_sees, lower, true);
	if (c->answers && strcmp(c->client_sees, c->answers) != 0 && !c->tc) {
		/* what was dropped is not in the map */
		char buf[512];
		snprintf(buf, sizeof buf, "%s", c->answers);
		for (char *t = strtok(buf, " "); t; t = strtok(NULL, " "))
			if (!strstr(c->client_sees, t))
				check_map(&r, t, lower, false);
	}
	struct dns_proxy_stats st;
	dns_proxy_get_stats(r.proxy, &st);
	CHECK_EQ(st.forwarded, c->forwarded);
	CHECK_EQ(st.guarded_answers, c->log_part && c->forwarded ? 1 : 0);
	audit_counts(r.audit, &(struct audit_counts){0});
	slurp(r.trail, trail, sizeof trail);
	slurp(r.log, log, sizeof log);
	if (c->event_part[0] == '\0')
		CHECK_STR_EQ(trail, "");
	else if (!strstr(trail, "\"event\":\"dns\"") || !strstr(trail, c->event_part))
		check_fail(__FILE__, __LINE__, "trail lacks %s:\n%s", c->event_part, trail);
	if (!c->log_part)
		CHECK_STR_EQ(log, "");
	else if (!strstr(log, c->log_part))
		check_fail(__FILE__, __LINE__, "stderr lacks %s:\n%s", c->log_part, log);
	CHECK(strchr(log, '\n') == NULL || strchr(log, '\n') == log + strlen(log) - 1);
	rig_close(&r);
}

static void test_cases(void)
{
	for (size_t i = 0; i < sizeof proxy_cases / sizeof proxy_cases[0]; i++) {
		check_case("%s", proxy_cases[i].name);
		run_proxy_case(&proxy_cases[i]);
	}
}

/* The bound on distinct names: the first max_names go, a name seen before still goes, a new one
 * past the bound is refused without reaching the resolver. */
static void test_name_budget(void)
{
	static const struct {
		const char *name;
		bool forwarded;
	} steps[] = {
		{"n1.test", true}, {"n2.test", true}, {"N1.test", true}, {"n3.test", true},
		{"n4.test", false}, {"n2.test.", true}, {"n5.test", false},
	};
	uint8_t q[512], fwd[512], ans[512], got[512];
	char log[4096];
	struct rig r;

	if (!rig_open_with(&r, open_policy, 3))
		return;
	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		uint16_t proxy_side = 0;
		check_case("%s", steps[i].name);
		size_t qlen = make_query(q, (uint16_t)(0x100 + i), steps[i].name);
		CHECK_EQ(testsock_udp_send(r.client, q, qlen, r.proxy_port), (long)qlen);
		if (steps[i].forwarded) {
			long n = pump_until(&r, r.resolver, fwd, sizeof fwd, &proxy_side);
			CHECK(n > 12);
			if (n > 12) {
				size_t alen = make_answer(ans, fwd, (size_t)n);
				testsock_udp_send(r.resolver, ans, alen, proxy_side);
			}
		}
		long n = pump_until(&r, r.client, got, sizeof got, NULL);
		CHECK(n >= 12);
		if (n >= 12)
			CHECK_EQ(got[3] & 0x0f, steps[i].forwarded ? 0 : 5);
	}
	check_case("totals");
	struct dns_proxy_stats st;
	dns_proxy_get_stats(r.proxy, &st);
	CHECK_EQ(st.forwarded, 5);
	CHECK_EQ(st.refused_names, 2);
	slurp(r.log, log, sizeof log);
	CHECK(strstr(log, "sluice: refused dns n4.test (A): too many distinct names in this "
			  "session\n") != NULL);
	rig_close(&r);
}

/* The helper for answers sluice only watches: guarded addresses leave the parsed message. */
static void test_guard_parsed(void)
{
	static const char policy[] = "allow cidr 10.1.0.0/16\ndefault allow\n";
	uint8_t q[512], ans[1024];
	struct policy *p = NULL;
	struct dns_message m;

	CHECK_EQ(policy_parse(&p, "p", policy, strlen(policy), NULL), 0);
	if (!p)
		return;
	size_t qlen = make_query(q, 1, "x.test");
	size_t alen = make_answer_with(ans, q, qlen, "10.0.0.5 192.0.2.1 10.1.2.3 127.0.0.1", NULL);
	CHECK_EQ(dns_parse_response(ans, alen, &m), 0);
	CHECK_EQ(dns_proxy_guard_parsed(p, &m), 2);
	check_addresses(&m, "192.0.2.1 10.1.2.3");
	CHECK_EQ(dns_proxy_guard_parsed(p, &m), 0);
	policy_free(p);
}

static const struct check_test tests[] = {
	{"allowed_forwarded", test_allowed_forwarded},
	{"untrusted_resolver_not_recorded", test_untrusted_resolver_not_recorded},
	{"denied_nxdomain", test_denied_nxdomain},
	{"cases", test_cases},
	{"name_budget", test_name_budget},
	{"guard_parsed", test_guard_parsed},
};

CHECK_MAIN(tests)
