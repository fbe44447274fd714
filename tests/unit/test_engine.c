/* test_engine.c — the divert engine, driven by tables of built packets and a randomized model. */
#include "divert/engine.h"
#include "check.h"

#include <errno.h>
#include <stdbool.h>

#define TCP 6
#define UDP 17
#define ICMP 1
#define ICMPV6 58

#define SYN PKT_TCP_SYN
#define ACK PKT_TCP_ACK
#define FIN PKT_TCP_FIN
#define RST PKT_TCP_RST
#define PSH PKT_TCP_PSH

/* The listeners of every test engine. */
#define L4 "127.0.0.1"
#define L6 "::1"
enum {
	P4_TCP = 9080,
	P4_DNS_TCP = 9053,
	P4_DNS_UDP = 5353,
	P4_UDP = 9081,
	P6_TCP = 9180,
	P6_DNS_TCP = 9153,
	P6_DNS_UDP = 5453,
	P6_UDP = 9181,
};

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

/* ---- building packets ---- */

/* One packet to build: IPv4 or IPv6 by the addresses' family. */
struct pk {
	uint8_t proto; /* TCP, UDP, ICMP or ICMPV6 */
	uint8_t flags; /* TCP flags */
	const char *src;
	uint16_t sport;
	const char *dst;
	uint16_t dport;
	uint16_t payload; /* bytes after the transport header */
};

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* The test's own one's-complement sum (RFC 1071), independent of packet.c. */
static uint32_t sum16(const uint8_t *d, size_t n, uint32_t acc)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		acc += get16(d + i);
	if (n & 1)
		acc += (uint32_t)d[n - 1] << 8;
	return acc;
}

static uint16_t fold_not(uint32_t acc)
{
	while (acc >> 16)
		acc = (acc & 0xffff) + (acc >> 16);
	return (uint16_t)~acc;
}

/* Writes correct IPv4 header and TCP/UDP/ICMP checksums of a packet laid out by build(). */
static void fill_checksums(uint8_t *b, bool v6, uint8_t proto, size_t l4_off, size_t len)
{
	size_t seg = len - l4_off, csum_at;
	uint32_t acc = 0;

	if (!v6) {
		put16(b + 10, 0);
		put16(b + 10, fold_not(sum16(b, 20, 0)));
	}
	if (proto == TCP)
		csum_at = l4_off + 16;
	else if (proto == UDP)
		csum_at = l4_off + 6;
	else
		csum_at = l4_off + 2;
	put16(b + csum_at, 0);
	if (proto != ICMP) {
		acc = v6 ? sum16(b + 8, 32, 0) : sum16(b + 12, 8, 0);
		acc += proto + (uint32_t)(seg >> 16) + (uint32_t)(seg & 0xffff);
	}
	uint16_t c = fold_not(sum16(b + l4_off, seg, acc));
	if (c == 0 && proto == UDP)
		c = 0xffff;
	put16(b + csum_at, c);
}

/* Builds k into b (at least 1600 bytes) with correct checksums; returns the length. */
static size_t build(uint8_t *b, const struct pk *k)
{
	struct addr s = ip(k->src), d = ip(k->dst);
	bool v6 = s.family == ADDR_V6;
	size_t ip_hdr = v6 ? 40 : 20;
	size_t l4_hdr = k->proto == TCP ? 20 : 8;
	size_t len = ip_hdr + l4_hdr + k->payload;

	memset(b, 0, len);
	if (v6) {
		b[0] = 0x60;
		put16(b + 4, (uint16_t)(len - 40));
		b[6] = k->proto;
		b[7] = 64;
		memcpy(b + 8, s.bytes, 16);
		memcpy(b + 24, d.bytes, 16);
	} else {
		b[0] = 0x45;
		put16(b + 2, (uint16_t)len);
		put16(b + 4, 0x1234);
		put16(b + 6, 0x4000); /* DF */
		b[8] = 64;
		b[9] = k->proto;
		memcpy(b + 12, s.bytes, 4);
		memcpy(b + 16, d.bytes, 4);
	}
	uint8_t *l4 = b + ip_hdr;
	if (k->proto == TCP) {
		put16(l4, k->sport);
		put16(l4 + 2, k->dport);
		put16(l4 + 4, 0x0102);
		put16(l4 + 6, 0x0304);
		if (k->flags & ACK)
			put16(l4 + 10, 0x0a0b);
		l4[12] = 5 << 4;
		l4[13] = k->flags;
		put16(l4 + 14, 0xffff);
	} else if (k->proto == UDP) {
		put16(l4, k->sport);
		put16(l4 + 2, k->dport);
		put16(l4 + 4, (uint16_t)(l4_hdr + k->payload));
	} else {
		l4[0] = k->proto == ICMP ? 8 : 128; /* echo request */
		put16(l4 + 4, 0x4242);
	}
	for (size_t i = 0; i < k->payload; i++)
		l4[l4_hdr + i] = (uint8_t)(i * 7 + 1);
	fill_checksums(b, v6, k->proto, ip_hdr, len);
	return len;
}

/* ---- engines and running packets ---- */

struct fail_log {
	int entered, left;
	char reason[32];
};

static void on_fail(void *ctx, bool entered, const char *reason)
{
	struct fail_log *log = ctx;
	if (entered) {
		log->entered++;
		snprintf(log->reason, sizeof log->reason, "%s", reason ? reason : "(null)");
	} else {
		log->left++;
		if (reason)
			snprintf(log->reason, sizeof log->reason, "left with a reason");
	}
}

static struct engine_config base_config(void)
{
	struct engine_config c;
	memset(&c, 0, sizeof c);
	c.listen[ENGINE_IPV4] = ip(L4);
	c.listen[ENGINE_IPV6] = ip(L6);
	c.port[ENGINE_TCP][ENGINE_IPV4] = P4_TCP;
	c.port[ENGINE_DNS_TCP][ENGINE_IPV4] = P4_DNS_TCP;
	c.port[ENGINE_DNS_UDP][ENGINE_IPV4] = P4_DNS_UDP;
	c.port[ENGINE_UDP][ENGINE_IPV4] = P4_UDP;
	c.port[ENGINE_TCP][ENGINE_IPV6] = P6_TCP;
	c.port[ENGINE_DNS_TCP][ENGINE_IPV6] = P6_DNS_TCP;
	c.port[ENGINE_DNS_UDP][ENGINE_IPV6] = P6_DNS_UDP;
	c.port[ENGINE_UDP][ENGINE_IPV6] = P6_UDP;
	c.tcp_capacity = 1024;
	c.udp_capacity = 1024;
	c.hash_seed = 0x0123456789abcdefu;
	return c;
}

static struct engine *engine_with(const struct engine_config *c)
{
	struct engine *e = NULL;
	int rc = engine_new(&e, c);
	if (rc != 0 || !e) {
		fprintf(stderr, "test bug: engine_new = %d\n", rc);
		exit(2);
	}
	return e;
}

static struct engine_stats stats_of(const struct engine *e)
{
	struct engine_stats s;
	engine_get_stats(e, &s);
	return s;
}

#define CHECK_STATS_ADD_UP(e)                                                            \
	do {                                                                             \
		struct engine_stats s_ = stats_of(e);                                    \
		CHECK_EQ(s_.packets, s_.passed + s_.dropped + s_.diverted + s_.replies); \
	} while (0)

/* Runs buf through e and checks what holds for every packet: the length never changes,
 * PASS/DROP leave the bytes alone, REWRITE keeps a PKT_OK packet with exact checksums. The
 * rewritten packet's view goes to *out (zeroed otherwise). */
static enum engine_verdict run_buf(struct engine *e, uint8_t *buf, size_t len, uint32_t pid,
				   uint64_t now, struct pkt *out)
{
	uint8_t before[1600];
	struct engine_packet p = {.buf = buf, .len = len, .pid = pid};
	struct pkt view;
	enum engine_verdict v;

	memcpy(before, buf, len);
	v = engine_process(e, &p, now);
	CHECK_EQ(p.len, len);
	CHECK(v == ENGINE_PASS || v == ENGINE_REWRITE || v == ENGINE_DROP);
	memset(&view, 0, sizeof view);
	if (v == ENGINE_REWRITE) {
		CHECK_EQ(pkt_parse(buf, len, &view), PKT_OK);
		CHECK(pkt_checksum_ok(buf, &view));
	} else {
		CHECK_MEM_EQ(buf, before, len);
	}
	if (out)
		*out = view;
	return v;
}

static enum engine_verdict run(struct engine *e, const struct pk *k, uint32_t pid, uint64_t now,
			       struct pkt *out)
{
	uint8_t buf[1600];
	size_t len = build(buf, k);
	return run_buf(e, buf, len, pid, now, out);
}

static bool tuple_is(const struct pkt *p, const char *src, uint16_t sport, const char *dst,
		     uint16_t dport)
{
	struct addr s = ip(src), d = ip(dst);
	return addr_equal(&p->src, &s) && p->sport == sport && addr_equal(&p->dst, &d) &&
	       p->dport == dport;
}

#define CHECK_TUPLE(view, want_src, want_sport, want_dst, want_dport)                     \
	do {                                                                                \
		if (!tuple_is(&(view), want_src, want_sport, want_dst, want_dport)) {       \
			char s_[ADDR_PORT_STRLEN], d_[ADDR_PORT_STRLEN];                    \
			addr_format_port(&(view).src, (view).sport, s_, sizeof s_);         \
			addr_format_port(&(view).dst, (view).dport, d_, sizeof d_);         \
			check_fail(__FILE__, __LINE__, "tuple %s -> %s, expected %s:%d -> %s:%d", \
				   s_, d_, want_src, (int)(want_sport), want_dst,           \
				   (int)(want_dport));                                      \
		}                                                                           \
	} while (0)

static int lookup(struct engine *e, int proto, const char *peer, uint16_t port, uint64_t now,
		  struct engine_flow *out)
{
	struct addr a = ip(peer);
	return engine_lookup(e, proto, &a, port, now, out);
}

/* A whole TCP handshake C:c -> D:d through e, checking each rewrite (mapped port c). */
static void handshake(struct engine *e, const char *c, uint16_t cport, const char *d,
		      uint16_t dport, const char *l, uint16_t lport, uint64_t now)
{
	struct pkt out;
	struct pk syn = {TCP, SYN, c, cport, d, dport, 0};
	struct pk synack = {TCP, SYN | ACK, l, lport, c, cport, 0};
	struct pk ack = {TCP, ACK, c, cport, d, dport, 0};

	CHECK_EQ(run(e, &syn, 0, now, &out), ENGINE_REWRITE);
	CHECK_TUPLE(out, c, cport, l, lport);
	CHECK_EQ(run(e, &synack, 0, now, &out), ENGINE_REWRITE);
	CHECK_TUPLE(out, d, dport, c, cport);
	CHECK_EQ(run(e, &ack, 0, now, &out), ENGINE_REWRITE);
	CHECK_TUPLE(out, c, cport, l, lport);
}

/* ---- the tests ---- */

/* The first packet of a flow goes to the listener of its kind and family. */
static void test_new_flow_by_kind(void)
{
	static const struct {
		const char *name;
		struct pk k;
		const char *l;
		uint16_t lport;
	} rows[] = {
		{"tcp", {TCP, SYN, "10.0.0.2", 40001, "93.184.216.34", 443, 0}, L4, P4_TCP},
		{"tcp/53", {TCP, SYN, "10.0.0.2", 40002, "192.0.2.53", 53, 0}, L4, P4_DNS_TCP},
		{"udp/53", {UDP, 0, "10.0.0.2", 40003, "192.0.2.53", 53, 33}, L4, P4_DNS_UDP},
		{"udp", {UDP, 0, "10.0.0.2", 40004, "192.0.2.9", 443, 1200}, L4, P4_UDP},
		{"tcp6", {TCP, SYN, "fd00::2", 40001, "2001:db8::1", 443, 0}, L6, P6_TCP},
		{"tcp6/53", {TCP, SYN, "fd00::2", 40002, "2001:db8::53", 53, 0}, L6, P6_DNS_TCP},
		{"udp6/53", {UDP, 0, "fd00::2", 40003, "2001:db8::53", 53, 40}, L6, P6_DNS_UDP},
		{"udp6", {UDP, 0, "fd00::2", 40004, "2001:db8::9", 4433, 1400}, L6, P6_UDP},
		{"tcp with data", {TCP, SYN, "10.0.0.3", 1, "198.51.100.1", 80, 100}, L4, P4_TCP},
	};
	struct engine_config c = base_config();
	struct engine *e = engine_with(&c);
	struct engine_flow fl;

	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct pkt out;
		check_case("%s", rows[i].name);
		CHECK_EQ(run(e, &rows[i].k, 77, 1000, &out), ENGINE_REWRITE);
		CHECK_TUPLE(out, rows[i].k.src, rows[i].k.sport, rows[i].l, rows[i].lport);
		CHECK_EQ(out.payload_len, rows[i].k.payload);
		CHECK_EQ(lookup(e, rows[i].k.proto, rows[i].k.src, rows[i].k.sport, 1000, &fl), 0);
		struct addr d = ip(rows[i].k.dst), s = ip(rows[i].k.src);
		CHECK(addr_equal(&fl.orig_dst, &d));
		CHECK_EQ(fl.orig_port, rows[i].k.dport);
		CHECK(addr_equal(&fl.client, &s));
		CHECK_EQ(fl.client_port, rows[i].k.sport);
		CHECK_EQ(fl.mapped_port, rows[i].k.sport);
		CHECK_EQ(fl.pid, 77);
	}
	check_case("%s", "");
	struct engine_stats s = stats_of(e);
	CHECK_EQ(s.flows_created, 9);
	CHECK_EQ(s.flows_remapped, 0);
	CHECK_EQ(s.diverted, 9);
	CHECK_EQ(s.tcp_flows, 5);
	CHECK_EQ(s.udp_flows, 4);
	CHECK_STATS_ADD_UP(e);
	engine_free(e);
}

/* Replies from the listener go back as if from the original destination, in both families. */
static void test_reply_reverse(void)
{
	static const struct {
		const char *name;
		uint8_t proto;
		const char *c, *d, *l;
		uint16_t dport, lport;
	} rows[] = {
		{"tcp4", TCP, "10.0.0.2", "93.184.216.34", L4, 443, P4_TCP},
		{"tcp6", TCP, "fd00::2", "2001:db8::1", L6, 443, P6_TCP},
		{"udp4 dns", UDP, "10.0.0.2", "192.0.2.53", L4, 53, P4_DNS_UDP},
		{"udp6 dns", UDP, "fd00::2", "2001:db8::53", L6, 53, P6_DNS_UDP},
		{"udp6", UDP, "fd00::2", "2001:db8::9", L6, 443, P6_UDP},
		{"tcp4 dns", TCP, "10.0.0.2", "192.0.2.53", L4, 53, P4_DNS_TCP},
	};
	struct engine_config c = base_config();
	struct engine *e = engine_with(&c);

	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct pkt out;
		uint16_t cport = (uint16_t)(50000 + i);
		struct pk fwd = {rows[i].proto, SYN, rows[i].c, cport, rows[i].d, rows[i].dport,
				 20};
		struct pk back = {rows[i].proto, SYN | ACK, rows[i].l, rows[i].lport, rows[i].c,
				  cport, 300};
		check_case("%s", rows[i].name);
		CHECK_EQ(run(e, &fwd, 0, 10, &out), ENGINE_REWRITE);
		CHECK_TUPLE(out, rows[i].c, cport, rows[i].l, rows[i].lport);
		CHECK_EQ(run(e, &back, 0, 11, &out), ENGINE_REWRITE);
		CHECK_TUPLE(out, rows[i].d, rows[i].dport, rows[i].c, cport);
		CHECK_EQ(out.payload_len, 300);
	}
	check_case("%s", "");
	CHECK_EQ(stats_of(e).replies, 6);
	CHECK_STATS_ADD_UP(e);
	engine_free(e);
}

/* engine_lookup answers for the listener-side peer only; bad arguments are refused. */
static void test_lookup(void)
{
	struct engine_config c = base_config();
	struct engine *e = engine_with(&c);
	struct engine_flow fl;
	struct addr a = ip("10.0.0.2"), none;

	memset(&none, 0, sizeof none);
	handshake(e, "10.0.0.2", 41000, "192.0.2.80", 80, L4, P4_TCP, 5);
	CHECK_EQ(lookup(e, TCP, "10.0.0.2", 41000, 6, &fl), 0);
	CHECK_EQ(lookup(e, UDP, "10.0.0.2", 41000, 6, &fl), -ENOENT);
	CHECK_EQ(lookup(e, TCP, "10.0.0.2", 41001, 6, &fl), -ENOENT);
	CHECK_EQ(lookup(e, TCP, "10.0.0.3", 41000, 6, &fl), -ENOENT);
	CHECK_EQ(lookup(e, TCP, "::ffff:10.0.0.2", 41000, 6, &fl), -ENOENT);
	CHECK_EQ(engine_lookup(e, 1, &a, 41000, 6, &fl), -EINVAL);
	CHECK_EQ(engine_lookup(e, TCP, &none, 41000, 6, &fl), -EINVAL);
	CHECK_EQ(engine_lookup(e, TCP, NULL, 41000, 6, &fl), -EINVAL);
	CHECK_EQ(engine_lookup(e, TCP, &a, 41000, 6, NULL), -EINVAL);
	CHECK_EQ(engine_lookup(NULL, TCP, &a, 41000, 6, &fl), -EINVAL);
	engine_free(e);
}

enum { C_SIDE, L_SIDE };

/* One packet of flow C:c -> D:d (mapped port m) from either side, with flags; returns the
 * verdict and checks the rewrite when it is one. */
static enum engine_verdict flow_packet(struct engine *e, int side, uint8_t flags, const char *cl,
				       uint16_t cport, uint16_t m, const char *d, uint16_t dport,
				       uint64_t now)
{
	struct pkt out;
	enum engine_verdict v;
	if (side == C_SIDE) {
		struct pk k = {TCP, flags, cl, cport, d, dport, 0};
		v = run(e, &k, 0, now, &out);
		if (v == ENGINE_REWRITE)
			CHECK_TUPLE(out, cl, m, L4, P4_TCP);
	} else {
		struct pk k = {TCP, flags, L4, P4_TCP, cl, m, 0};
		v = run(e, &k, 0, now, &out);
		if (v == ENGINE_REWRITE)
			CHECK_TUPLE(out, d, dport, cl, cport);
	}
	return v;
}

/* A flow closes at a RST either way or at the second FIN, once; every packet of it is still
 * rewritten both ways for ENGINE_TCP_LINGER_MS after that (however many arrive), and then
 * engine_tick removes it. Each row runs with a flow whose mapped port is c, and with a remapped
 * one (another flow holds c). */
static void test_flow_end(void)
{
	static const struct {
		const char *name;
		struct {
			int side;
			uint8_t flags;
		} steps[5];
		int n;
		int closed_after[5]; /* is the flow closed after step i */
	} rows[] = {
		{"client closes first", {{C_SIDE, FIN | ACK}, {L_SIDE, FIN | ACK}, {C_SIDE, ACK}},
		 3, {0, 1, 1}},
		{"listener closes first",
		 {{L_SIDE, FIN | ACK}, {C_SIDE, ACK}, {C_SIDE, FIN | ACK}, {L_SIDE, ACK}},
		 4, {0, 0, 1, 1}},
		{"simultaneous close",
		 {{C_SIDE, FIN | ACK}, {L_SIDE, FIN | ACK}, {C_SIDE, ACK}, {L_SIDE, ACK}},
		 4, {0, 1, 1, 1}},
		{"half close with data",
		 {{C_SIDE, FIN | ACK}, {L_SIDE, PSH | ACK}, {L_SIDE, FIN | ACK}, {C_SIDE, ACK}},
		 4, {0, 0, 1, 1}},
		{"fin retransmitted",
		 {{C_SIDE, FIN | ACK}, {C_SIDE, FIN | ACK}, {L_SIDE, FIN | ACK}, {L_SIDE, ACK},
		  {C_SIDE, FIN | ACK}},
		 5, {0, 0, 1, 1, 1}},
		{"reordered ack before the listener's fin",
		 {{C_SIDE, FIN | ACK}, {L_SIDE, FIN | ACK}, {L_SIDE, ACK}, {C_SIDE, ACK}},
		 4, {0, 1, 1, 1}},
		{"reordered ack after both fins",
		 {{L_SIDE, FIN | ACK}, {C_SIDE, FIN | ACK}, {C_SIDE, ACK}, {L_SIDE, ACK},
		  {C_SIDE, ACK}},
		 5, {0, 1, 1, 1, 1}},
		{"rst from client", {{C_SIDE, RST}, {L_SIDE, RST}}, 2, {1, 1}},
		{"rst from listener", {{L_SIDE, RST | ACK}, {C_SIDE, ACK}}, 2, {1, 1}},
		{"rst after one fin", {{C_SIDE, FIN | ACK}, {L_SIDE, RST}, {C_SIDE, FIN | ACK}}, 3,
		 {0, 1, 1}},
		{"rst after both fins",
		 {{C_SIDE, FIN | ACK}, {L_SIDE, FIN | ACK}, {C_SIDE, RST}}, 3, {0, 1, 1}},
	};
	const char *cl = "10.0.0.2", *d = "192.0.2.80", *other = "192.0.2.81";
	const uint16_t cport = 42000;

	for (int remapped = 0; remapped < 2; remapped++) {
		for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
			struct engine_config c = base_config();
			struct engine *e = engine_with(&c);
			struct engine_flow fl;
			struct pkt out;
			uint64_t now = 100, closed_at = 0;
			uint16_t m = cport;

			check_case("%s, remapped %d", rows[i].name, remapped);
			if (remapped)
				handshake(e, cl, cport, other, 80, L4, P4_TCP, now);
			struct pk syn = {TCP, SYN, cl, cport, d, 80, 0};
			CHECK_EQ(run(e, &syn, 0, now, &out), ENGINE_REWRITE);
			m = out.sport;
			CHECK(remapped ? m != cport : m == cport);
			CHECK_EQ(flow_packet(e, L_SIDE, SYN | ACK, cl, cport, m, d, 80, now),
				 ENGINE_REWRITE);
			CHECK_EQ(flow_packet(e, C_SIDE, ACK, cl, cport, m, d, 80, now),
				 ENGINE_REWRITE);
			for (int s = 0; s < rows[i].n; s++) {
				check_case("%s, remapped %d, step %d", rows[i].name, remapped, s);
				now++;
				CHECK_EQ(flow_packet(e, rows[i].steps[s].side,
						     rows[i].steps[s].flags, cl, cport, m, d, 80,
						     now),
					 ENGINE_REWRITE);
				if (rows[i].closed_after[s] && !closed_at)
					closed_at = now;
				CHECK_EQ(stats_of(e).flows_ended,
					 (uint64_t)rows[i].closed_after[s]);
				CHECK_EQ(lookup(e, TCP, cl, m, now, &fl),
					 rows[i].closed_after[s] ? -ENOENT : 0);
			}
			check_case("%s, remapped %d", rows[i].name, remapped);
			/* Lingering: every straggler still goes through, to the end of the linger,
			 * which none of them extends. */
			CHECK_EQ(engine_tick(e, closed_at + ENGINE_TCP_LINGER_MS - 1), 0);
			CHECK_EQ(stats_of(e).tcp_flows, 1 + remapped);
			now = closed_at + ENGINE_TCP_LINGER_MS;
			CHECK_EQ(flow_packet(e, C_SIDE, ACK, cl, cport, m, d, 80, now),
				 ENGINE_REWRITE);
			CHECK_EQ(flow_packet(e, L_SIDE, FIN | ACK, cl, cport, m, d, 80, now),
				 ENGINE_REWRITE);
			CHECK_EQ(flow_packet(e, L_SIDE, RST, cl, cport, m, d, 80, now),
				 ENGINE_REWRITE);
			CHECK_EQ(engine_tick(e, now), 0);
			CHECK_EQ(stats_of(e).tcp_flows, 1 + remapped);
			CHECK_EQ(engine_tick(e, now + 1), 1);
			struct engine_stats s = stats_of(e);
			CHECK_EQ(s.tcp_flows, (uint32_t)remapped);
			CHECK_EQ(s.flows_ended, 1);
			CHECK_EQ(s.flows_expired, 0);
			/* Gone: its next packets are a stray and an unknown reply; another flow
			 * holding c is untouched. */
			CHECK_EQ(flow_packet(e, C_SIDE, ACK, cl, cport, m, d, 80, now + 1),
				 ENGINE_DROP);
			CHECK_EQ(flow_packet(e, L_SIDE, ACK, cl, cport, m, d, 80, now + 1),
				 ENGINE_DROP);
			s = stats_of(e);
			CHECK_EQ(s.errors[ENGINE_ERR_STRAY], 1);
			CHECK_EQ(s.errors[ENGINE_ERR_UNKNOWN_REPLY], 1);
			if (remapped) {
				CHECK_EQ(flow_packet(e, C_SIDE, ACK, cl, cport, cport, other, 80,
						     now + 1),
					 ENGINE_REWRITE);
				CHECK_EQ(lookup(e, TCP, cl, cport, now + 1, &fl), 0);
			}
			CHECK_STATS_ADD_UP(e);
			engine_free(e);
		}
	}
}

/* A client SYN on a flow's tuple: a retransmit during the handshake keeps the mapping; on an
 * established or closed flow it is a new connection, which gets a new flow with a fresh mapped
 * port (never c nor the old one), and the old flow is gone. With and without a remapped flow. */
static void test_syn_on_known_tuple(void)
{
	static const struct {
		const char *name;
		struct {
			int side;
			uint8_t flags;
		} steps[4];
		int n;
		bool new_flow;
	} rows[] = {
		{"syn retransmitted", {{C_SIDE, SYN}}, 1, false},
		{"syn retransmitted twice", {{C_SIDE, SYN}, {C_SIDE, SYN}}, 2, false},
		{"after the listener's syn-ack", {{L_SIDE, SYN | ACK}}, 1, true},
		{"established", {{L_SIDE, SYN | ACK}, {C_SIDE, ACK}}, 2, true},
		{"client's fin only", {{L_SIDE, SYN | ACK}, {C_SIDE, ACK}, {C_SIDE, FIN | ACK}}, 3,
		 true},
		{"closed by fins",
		 {{L_SIDE, SYN | ACK}, {C_SIDE, ACK}, {C_SIDE, FIN | ACK}, {L_SIDE, FIN | ACK}}, 4,
		 true},
		{"closed by rst", {{L_SIDE, SYN | ACK}, {C_SIDE, ACK}, {L_SIDE, RST}}, 3, true},
		{"rst in the handshake", {{C_SIDE, RST}}, 1, true},
	};
	const char *cl = "10.0.0.2", *d = "192.0.2.80", *other = "192.0.2.81";
	const uint16_t cport = 43000;

	for (int remapped = 0; remapped < 2; remapped++) {
		for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
			struct engine_config c = base_config();
			struct engine *e = engine_with(&c);
			struct engine_flow fl;
			struct pkt out;
			struct pk syn = {TCP, SYN, cl, cport, d, 80, 0};
			uint16_t m0, m1;

			check_case("%s, remapped %d", rows[i].name, remapped);
			if (remapped)
				handshake(e, cl, cport, other, 80, L4, P4_TCP, 1);
			CHECK_EQ(run(e, &syn, 0, 2, &out), ENGINE_REWRITE);
			m0 = out.sport;
			CHECK(remapped ? m0 != cport : m0 == cport);
			for (int s = 0; s < rows[i].n; s++) {
				uint8_t flags = rows[i].steps[s].flags;
				CHECK_EQ(flow_packet(e, rows[i].steps[s].side, flags, cl, cport, m0,
						     d, 80, 3),
					 ENGINE_REWRITE);
			}
			CHECK_EQ(run(e, &syn, 0, 4, &out), ENGINE_REWRITE);
			m1 = out.sport;
			CHECK_TUPLE(out, cl, m1, L4, P4_TCP);
			struct engine_stats s = stats_of(e);
			CHECK_EQ(s.tcp_flows, 1 + remapped);
			if (!rows[i].new_flow) {
				CHECK_EQ(m1, m0);
				CHECK_EQ(s.flows_created, 1 + remapped);
				CHECK_EQ(s.flows_reused, 0);
			} else {
				CHECK(m1 != cport && m1 != m0 && m1 >= 1024);
				CHECK_EQ(s.flows_created, 2 + remapped);
				CHECK_EQ(s.flows_reused, 1);
				/* The old mapping is gone; a reply to it is an unknown reply. */
				CHECK_EQ(lookup(e, TCP, cl, m0, 4, &fl), -ENOENT);
				CHECK_EQ(flow_packet(e, L_SIDE, ACK, cl, cport, m0, d, 80, 4),
					 ENGINE_DROP);
				CHECK_EQ(stats_of(e).errors[ENGINE_ERR_UNKNOWN_REPLY], 1);
			}
			/* The new connection works both ways through m1, and is live. */
			CHECK_EQ(flow_packet(e, L_SIDE, SYN | ACK, cl, cport, m1, d, 80, 5),
				 ENGINE_REWRITE);
			CHECK_EQ(flow_packet(e, C_SIDE, ACK, cl, cport, m1, d, 80, 5),
				 ENGINE_REWRITE);
			CHECK_EQ(lookup(e, TCP, cl, m1, 5, &fl), 0);
			CHECK_EQ(fl.client_port, cport);
			CHECK_EQ(fl.orig_port, 80);
			if (remapped) {
				CHECK_EQ(flow_packet(e, C_SIDE, ACK, cl, cport, cport, other, 80,
						     5),
					 ENGINE_REWRITE);
				CHECK_EQ(lookup(e, TCP, cl, cport, 5, &fl), 0);
				CHECK_EQ(fl.orig_port, 80);
			}
			CHECK_STATS_ADD_UP(e);
			engine_free(e);
		}
	}
}

/* A lingering flow keeps its mapped port: a new flow from the same c to another destination
 * gets another one, until the linger is over. */
static void test_lingering_flow_holds_port(void)
{
	struct engine_config c = base_config();
	struct engine *e = engine_with(&c);
	struct engine_flow fl;
	struct pkt out;
	const char *cl = "10.0.0.2";
	const uint16_t cport = 44100;
	struct pk to2 = {TCP, SYN, cl, cport, "192.0.2.2", 443, 0};
	struct pk to3 = {TCP, SYN, cl, cport, "192.0.2.3", 443, 0};

	handshake(e, cl, cport, "192.0.2.1", 443, L4, P4_TCP, 10);
	CHECK_EQ(flow_packet(e, L_SIDE, FIN | ACK, cl, cport, cport, "192.0.2.1", 443, 11),
		 ENGINE_REWRITE);
	CHECK_EQ(flow_packet(e, C_SIDE, FIN | ACK, cl, cport, cport, "192.0.2.1", 443, 11),
		 ENGINE_REWRITE);
	CHECK_EQ(lookup(e, TCP, cl, cport, 11, &fl), -ENOENT);
	CHECK_EQ(run(e, &to2, 0, 12, &out), ENGINE_REWRITE);
	CHECK(out.sport != cport && out.sport >= 1024);
	CHECK_EQ(stats_of(e).flows_remapped, 1);
	/* The last ACK of the old connection still reaches the listener as from c. */
	CHECK_EQ(flow_packet(e, L_SIDE, ACK, cl, cport, cport, "192.0.2.1", 443, 12),
		 ENGINE_REWRITE);
	CHECK_EQ(engine_tick(e, 11 + ENGINE_TCP_LINGER_MS + 1), 1);
	CHECK_EQ(run(e, &to3, 0, 11 + ENGINE_TCP_LINGER_MS + 1, &out), ENGINE_REWRITE);
	CHECK_EQ(out.sport, cport);
	CHECK_EQ(stats_of(e).flows_remapped, 1);
	engine_free(e);
}

/* At most ENGINE_LINGER_MAX flows linger: one more closing removes the oldest at once. */
static void test_linger_overflow(void)
{
	struct engine_config c = base_config();
	c.tcp_capacity = ENGINE_LINGER_MAX + 16;
	struct engine *e = engine_with(&c);
	char cl[32];
	const uint32_t n = ENGINE_LINGER_MAX + 1;

	for (uint32_t i = 0; i < n; i++) {
		uint16_t cport = (uint16_t)(20000 + i % 40000);
		snprintf(cl, sizeof cl, "10.2.%u.1", i / 40000);
		struct pk syn = {TCP, SYN, cl, cport, "192.0.2.1", 443, 0};
		struct pk rst = {TCP, RST, cl, cport, "192.0.2.1", 443, 0};
		check_case("flow %u", i);
		if (run(e, &syn, 0, 1 + i, NULL) != ENGINE_REWRITE ||
		    run(e, &rst, 0, 1 + i, NULL) != ENGINE_REWRITE)
			break;
		if (i + 1 < n)
			CHECK_EQ(stats_of(e).linger_overflow, 0);
	}
	check_case("%s", "");
	struct engine_stats s = stats_of(e);
	CHECK_EQ(s.flows_ended, n);
	CHECK_EQ(s.linger_overflow, 1);
	CHECK_EQ(s.tcp_flows, ENGINE_LINGER_MAX);
	/* The first one is gone, the second one still lingers. */
	CHECK_EQ(flow_packet(e, L_SIDE, ACK, "10.2.0.1", 20000, 20000, "192.0.2.1", 443, n),
		 ENGINE_DROP);
	CHECK_EQ(flow_packet(e, L_SIDE, ACK, "10.2.0.1", 20001, 20001, "192.0.2.1", 443, n),
		 ENGINE_REWRITE);
	/* Each of the others goes at the end of its own linger. */
	CHECK_EQ(engine_tick(e, 2 + ENGINE_TCP_LINGER_MS), 0);
	CHECK_EQ(engine_tick(e, 3 + ENGINE_TCP_LINGER_MS), 1);
	CHECK_EQ(engine_tick(e, n + ENGINE_TCP_LINGER_MS + 1), ENGINE_LINGER_MAX - 1);
	CHECK_EQ(stats_of(e).tcp_flows, 0);
	CHECK_EQ(stats_of(e).flows_expired, 0);
	engine_free(e);
}

/* Flows that linger and then are removed otherwise (by pid, replaced by a new flow on their
 * key) leave their queue items behind; those must not remove whatever holds the key later. */
static void test_linger_stale_items(void)
{
	struct engine_config c = base_config();
	struct engine *e = engine_with(&c);
	struct engine_flow fl;
	struct pkt out;
	const char *cl = "10.0.0.2";
	struct pk syn_a = {TCP, SYN, cl, 45100, "192.0.2.1", 443, 0};
	struct pk rst_a = {TCP, RST, cl, 45100, "192.0.2.1", 443, 0};
	struct pk syn_b = {TCP, SYN, cl, 45101, "192.0.2.1", 443, 0};
	struct pk rst_b = {TCP, RST, cl, 45101, "192.0.2.1", 443, 0};
	struct pk syn_b2 = {TCP, SYN, cl, 45101, "192.0.2.2", 443, 0};

	/* a: closed by pid 7's exit, then the same key taken by a live flow of another pid. */
	CHECK_EQ(run(e, &syn_a, 7, 1, NULL), ENGINE_REWRITE);
	CHECK_EQ(run(e, &rst_a, 7, 1, NULL), ENGINE_REWRITE);
	engine_remove_pid(e, 7);
	CHECK_EQ(run(e, &syn_a, 8, 2, &out), ENGINE_REWRITE);
	CHECK_EQ(out.sport, 45100);
	/* b: closed, reused for a new connection (another port), its key then taken by a new
	 * flow to another destination, which closes too. */
	CHECK_EQ(run(e, &syn_b, 0, 3, NULL), ENGINE_REWRITE);
	CHECK_EQ(run(e, &rst_b, 0, 3, NULL), ENGINE_REWRITE);
	CHECK_EQ(run(e, &syn_b, 0, 4, &out), ENGINE_REWRITE);
	CHECK(out.sport != 45101);
	CHECK_EQ(run(e, &syn_b2, 0, 5, &out), ENGINE_REWRITE);
	CHECK_EQ(out.sport, 45101);
	syn_b2.flags = RST;
	CHECK_EQ(run(e, &syn_b2, 0, 6, NULL), ENGINE_REWRITE);

	CHECK_EQ(engine_tick(e, 4 + ENGINE_TCP_LINGER_MS), 0);
	CHECK_EQ(lookup(e, TCP, cl, 45100, 4 + ENGINE_TCP_LINGER_MS, &fl), 0);
	CHECK_EQ(fl.pid, 8);
	CHECK_EQ(flow_packet(e, L_SIDE, ACK, cl, 45101, 45101, "192.0.2.2", 443,
			     4 + ENGINE_TCP_LINGER_MS),
		 ENGINE_REWRITE);
	CHECK_EQ(engine_tick(e, 7 + ENGINE_TCP_LINGER_MS), 1);
	CHECK_EQ(stats_of(e).tcp_flows, 2); /* a's successor, b's new connection */
	engine_free(e);
}

/* Looking for a free mapped port never refreshes the flow that holds c: a flow whose only
 * traffic is that of another flow from the same c still expires. */
static void test_busy_probe_leaves_holder_alone(void)
{
	struct engine_config c = base_config();
	c.udp_idle_ms = 1000;
	c.min_evict_idle_ms = 100;
	struct engine *e = engine_with(&c);
	struct engine_flow fl;
	struct pkt out;
	struct pk a = {UDP, 0, "10.0.0.2", 46100, "192.0.2.1", 1000, 0};
	struct pk b = {UDP, 0, "10.0.0.2", 46100, "192.0.2.2", 1000, 0};
	uint64_t now = 0;

	CHECK_EQ(run(e, &a, 0, now, NULL), ENGINE_REWRITE);
	CHECK_EQ(run(e, &b, 0, now, &out), ENGINE_REWRITE);
	uint16_t m = out.sport;
	CHECK(m != 46100);
	for (int i = 0; i < 4; i++) {
		now += 400;
		CHECK_EQ(run(e, &b, 0, now, &out), ENGINE_REWRITE);
		CHECK_TUPLE(out, "10.0.0.2", m, L4, P4_UDP);
	}
	CHECK_EQ(engine_tick(e, now), 1);
	CHECK_EQ(lookup(e, UDP, "10.0.0.2", 46100, now, &fl), -ENOENT);
	CHECK_EQ(lookup(e, UDP, "10.0.0.2", m, now, &fl), 0);
	CHECK_EQ(stats_of(e).flows_expired, 1);
	engine_free(e);
}

/* Packets the engine cannot place get the fail verdict: drop when closed, pass when open. */
static void test_fail_verdicts(void)
{
	static const struct {
		const char *name;
		struct pk k;
		enum engine_error err;
	} rows[] = {
		{"stray ack", {TCP, ACK, "10.0.0.2", 44000, "192.0.2.80", 80, 0}, ENGINE_ERR_STRAY},
		{"stray syn-ack", {TCP, SYN | ACK, "10.0.0.2", 44000, "192.0.2.80", 80, 0},
		 ENGINE_ERR_STRAY},
		{"stray fin", {TCP, FIN, "fd00::2", 44000, "2001:db8::1", 80, 0}, ENGINE_ERR_STRAY},
		{"unknown reply tcp", {TCP, ACK, L4, P4_TCP, "10.0.0.2", 44000, 0},
		 ENGINE_ERR_UNKNOWN_REPLY},
		{"unknown reply dns-tcp", {TCP, ACK, L4, P4_DNS_TCP, "10.0.0.2", 44000, 0},
		 ENGINE_ERR_UNKNOWN_REPLY},
		{"unknown reply udp6", {UDP, 0, L6, P6_DNS_UDP, "fd00::2", 44000, 10},
		 ENGINE_ERR_UNKNOWN_REPLY},
		{"unknown reply udp", {UDP, 0, L4, P4_UDP, "10.0.0.2", 44000, 10},
		 ENGINE_ERR_UNKNOWN_REPLY},
	};
	for (int open = 0; open < 2; open++) {
		struct engine_config c = base_config();
		c.fail_open = open;
		c.fail_threshold = 1000;
		struct engine *e = engine_with(&c);
		for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
			check_case("%s, fail %s", rows[i].name, open ? "open" : "closed");
			uint64_t before = stats_of(e).errors[rows[i].err];
			CHECK_EQ(run(e, &rows[i].k, 0, 1, NULL), open ? ENGINE_PASS : ENGINE_DROP);
			CHECK_EQ(stats_of(e).errors[rows[i].err], before + 1);
		}
		check_case("fail %s", open ? "open" : "closed");
		struct engine_stats s = stats_of(e);
		CHECK_EQ(open ? s.passed : s.dropped, 7);
		CHECK_EQ(s.flows_created, 0);
		CHECK_STATS_ADD_UP(e);
		engine_free(e);
	}
}

/* A reply from a listener port other than the flow's own is not the flow's. */
static void test_reply_from_wrong_listener(void)
{
	struct engine_config c = base_config();
	struct engine *e = engine_with(&c);
	struct pk q = {UDP, 0, "10.0.0.2", 45000, "192.0.2.53", 53, 30};
	struct pk wrong = {UDP, 0, L4, P4_UDP, "10.0.0.2", 45000, 30};
	struct pk right = {UDP, 0, L4, P4_DNS_UDP, "10.0.0.2", 45000, 30};

	CHECK_EQ(run(e, &q, 0, 1, NULL), ENGINE_REWRITE);
	CHECK_EQ(run(e, &wrong, 0, 1, NULL), ENGINE_DROP);
	CHECK_EQ(run(e, &right, 0, 1, NULL), ENGINE_REWRITE);
	CHECK_EQ(stats_of(e).errors[ENGINE_ERR_UNKNOWN_REPLY], 1);
	engine_free(e);
}

/* N consecutive errors enter fail mode (one callback); the next success leaves it (one more). */
static void test_fail_mode(void)
{
	struct fail_log log = {0};
	struct engine_config c = base_config();
	c.fail_threshold = 3;
	c.on_fail_mode = on_fail;
	c.ctx = &log;
	struct engine *e = engine_with(&c);
	struct pk stray = {TCP, ACK, "10.0.0.2", 46000, "192.0.2.80", 80, 0};
	struct pk icmp = {ICMP, 0, "10.0.0.2", 0, "192.0.2.80", 0, 8};
	struct pk syn = {TCP, SYN, "10.0.0.2", 46001, "192.0.2.80", 80, 0};
	struct pk syn2 = {TCP, SYN, "10.0.0.2", 46002, "192.0.2.80", 80, 0};

	CHECK_EQ(run(e, &stray, 0, 1, NULL), ENGINE_DROP);
	engine_note_error(e, ENGINE_ERR_BACKEND);
	CHECK(!stats_of(e).in_fail_mode);
	CHECK_EQ(log.entered, 0);
	/* A packet dropped by rule is neither an error nor a success. */
	CHECK_EQ(run(e, &icmp, 0, 1, NULL), ENGINE_DROP);
	CHECK_EQ(run(e, &stray, 0, 1, NULL), ENGINE_DROP);
	CHECK(stats_of(e).in_fail_mode);
	CHECK_EQ(log.entered, 1);
	CHECK_STR_EQ(log.reason, "stray");
	engine_note_error(e, ENGINE_ERR_BACKEND);
	CHECK_EQ(run(e, &stray, 0, 1, NULL), ENGINE_DROP);
	CHECK_EQ(log.entered, 1);
	CHECK_EQ(log.left, 0);
	CHECK_EQ(run(e, &syn, 0, 1, NULL), ENGINE_REWRITE);
	CHECK(!stats_of(e).in_fail_mode);
	CHECK_EQ(log.left, 1);
	CHECK_EQ(run(e, &syn2, 0, 1, NULL), ENGINE_REWRITE);
	CHECK_EQ(log.left, 1);

	/* The count starts over after a success; backend errors alone enter it too. */
	CHECK_EQ(run(e, &stray, 0, 1, NULL), ENGINE_DROP);
	CHECK_EQ(run(e, &stray, 0, 1, NULL), ENGINE_DROP);
	CHECK_EQ(log.entered, 1);
	engine_note_error(e, ENGINE_ERR_BACKEND);
	CHECK_EQ(log.entered, 2);
	CHECK_STR_EQ(log.reason, "backend");
	engine_note_error(e, (enum engine_error)99); /* counted as a backend error */

	struct engine_stats s = stats_of(e);
	CHECK_EQ(s.fail_mode_entered, 2);
	CHECK(s.in_fail_mode);
	CHECK_EQ(s.errors[ENGINE_ERR_BACKEND], 4);
	CHECK_EQ(s.errors[ENGINE_ERR_STRAY], 5);
	CHECK_STATS_ADD_UP(e);
	engine_note_error(NULL, ENGINE_ERR_BACKEND);
	engine_free(e);
}

/* One client port to two destinations: the second flow gets its own mapped port, and both
 * work both ways, for TCP (port reuse) and UDP (an unconnected socket). */
static void test_same_client_port_two_destinations(void)
{
	static const struct {
		const char *name;
		uint8_t proto;
		const char *c, *d1, *d2, *l;
		uint16_t lport;
	} rows[] = {
		{"tcp4", TCP, "10.0.0.2", "192.0.2.1", "192.0.2.2", L4, P4_TCP},
		{"udp4", UDP, "10.0.0.2", "192.0.2.1", "192.0.2.2", L4, P4_UDP},
		{"tcp6", TCP, "fd00::2", "2001:db8::1", "2001:db8::2", L6, P6_TCP},
		{"udp6", UDP, "fd00::2", "2001:db8::1", "2001:db8::2", L6, P6_UDP},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct engine_config c = base_config();
		struct engine *e = engine_with(&c);
		struct engine_flow f1, f2;
		struct pkt out;
		const uint16_t cp = 47000;
		bool tcp = rows[i].proto == TCP;
		uint8_t first = tcp ? SYN : 0, next = tcp ? ACK : 0;
		struct pk a = {rows[i].proto, first, rows[i].c, cp, rows[i].d1, 443, 10};
		struct pk b = {rows[i].proto, first, rows[i].c, cp, rows[i].d2, 443, 10};
		uint16_t m;

		check_case("%s", rows[i].name);
		CHECK_EQ(run(e, &a, 11, 1, &out), ENGINE_REWRITE);
		CHECK_TUPLE(out, rows[i].c, cp, rows[i].l, rows[i].lport);
		CHECK_EQ(run(e, &b, 12, 2, &out), ENGINE_REWRITE);
		m = out.sport;
		CHECK(m != cp);
		CHECK(m >= 1024);
		CHECK_TUPLE(out, rows[i].c, m, rows[i].l, rows[i].lport);

		/* Both flows, both directions, in turn. */
		for (int round = 0; round < 2; round++) {
			a.flags = b.flags = next;
			CHECK_EQ(run(e, &a, 11, 3, &out), ENGINE_REWRITE);
			CHECK_TUPLE(out, rows[i].c, cp, rows[i].l, rows[i].lport);
			CHECK_EQ(run(e, &b, 12, 3, &out), ENGINE_REWRITE);
			CHECK_TUPLE(out, rows[i].c, m, rows[i].l, rows[i].lport);
			struct pk ra = {rows[i].proto, next, rows[i].l, rows[i].lport, rows[i].c,
					cp, 5};
			struct pk rb = {rows[i].proto, next, rows[i].l, rows[i].lport, rows[i].c,
					m, 5};
			CHECK_EQ(run(e, &ra, 0, 4, &out), ENGINE_REWRITE);
			CHECK_TUPLE(out, rows[i].d1, 443, rows[i].c, cp);
			CHECK_EQ(run(e, &rb, 0, 4, &out), ENGINE_REWRITE);
			CHECK_TUPLE(out, rows[i].d2, 443, rows[i].c, cp);
		}

		struct addr d1 = ip(rows[i].d1), d2 = ip(rows[i].d2), ca = ip(rows[i].c);
		CHECK_EQ(lookup(e, rows[i].proto, rows[i].c, cp, 5, &f1), 0);
		CHECK_EQ(lookup(e, rows[i].proto, rows[i].c, m, 5, &f2), 0);
		CHECK(addr_equal(&f1.orig_dst, &d1));
		CHECK(addr_equal(&f2.orig_dst, &d2));
		CHECK(addr_equal(&f2.client, &ca));
		CHECK_EQ(f1.pid, 11);
		CHECK_EQ(f2.pid, 12);
		CHECK_EQ(f2.client_port, cp);
		CHECK_EQ(f2.mapped_port, m);

		struct engine_stats s = stats_of(e);
		CHECK_EQ(s.flows_created, 2);
		CHECK_EQ(s.flows_remapped, 1);

		if (rows[i].proto == TCP) {
			/* A RST ends the remapped flow: the proxy no longer sees it, its stragglers
			 * still go through m while it lingers, and then it cannot be reached. */
			b.flags = RST;
			CHECK_EQ(run(e, &b, 12, 6, &out), ENGINE_REWRITE);
			CHECK_TUPLE(out, rows[i].c, m, rows[i].l, rows[i].lport);
			CHECK_EQ(lookup(e, TCP, rows[i].c, m, 6, &f2), -ENOENT);
			b.flags = ACK;
			CHECK_EQ(run(e, &b, 12, 6, &out), ENGINE_REWRITE);
			CHECK_TUPLE(out, rows[i].c, m, rows[i].l, rows[i].lport);
			CHECK_EQ(engine_tick(e, 7 + ENGINE_TCP_LINGER_MS), 1);
			CHECK_EQ(run(e, &b, 12, 7 + ENGINE_TCP_LINGER_MS, NULL), ENGINE_DROP);
			a.flags = ACK;
			CHECK_EQ(run(e, &a, 11, 7 + ENGINE_TCP_LINGER_MS, &out), ENGINE_REWRITE);
			CHECK_TUPLE(out, rows[i].c, cp, rows[i].l, rows[i].lport);
		}
		CHECK_STATS_ADD_UP(e);
		engine_free(e);
	}
}

/* A client port that is a listener port, or 0, is never used as a mapped port. */
static void test_client_port_is_listener_port(void)
{
	static const uint16_t ports[] = {P4_TCP, P6_UDP, P4_DNS_UDP, 0};
	struct engine_config c = base_config();
	struct engine *e = engine_with(&c);

	for (size_t i = 0; i < sizeof ports / sizeof ports[0]; i++) {
		struct pkt out;
		struct pk k = {UDP, 0, "10.0.0.2", ports[i], "192.0.2.7", 1000, 4};
		check_case("port %u", ports[i]);
		CHECK_EQ(run(e, &k, 0, 1, &out), ENGINE_REWRITE);
		CHECK(out.sport >= 1024 && out.sport != ports[i]);
		for (int f = 0; f < ENGINE_FAMILIES; f++)
			for (int kind = 0; kind < ENGINE_KINDS; kind++)
				CHECK(out.sport != c.port[kind][f]);
		struct pk back = {UDP, 0, L4, P4_UDP, "10.0.0.2", out.sport, 4};
		CHECK_EQ(run(e, &back, 0, 1, &out), ENGINE_REWRITE);
		CHECK_TUPLE(out, "192.0.2.7", 1000, "10.0.0.2", ports[i]);
	}
	engine_free(e);
}

/* rewrite_source: the source becomes L as well, and replies restore the client's address. */
static void test_rewrite_source(void)
{
	struct engine_config c = base_config();
	c.rewrite_source = true;
	struct engine *e = engine_with(&c);
	struct engine_flow fl;
	struct pkt out;
	struct addr c1 = ip("192.168.1.5"), c2 = ip("10.9.9.9"), c6 = ip("2001:db8:1::5");

	struct pk a = {TCP, SYN, "192.168.1.5", 48000, "192.0.2.1", 443, 0};
	CHECK_EQ(run(e, &a, 0, 1, &out), ENGINE_REWRITE);
	CHECK_TUPLE(out, L4, 48000, L4, P4_TCP);
	struct pk ra = {TCP, SYN | ACK, L4, P4_TCP, L4, 48000, 0};
	CHECK_EQ(run(e, &ra, 0, 1, &out), ENGINE_REWRITE);
	CHECK_TUPLE(out, "192.0.2.1", 443, "192.168.1.5", 48000);
	CHECK_EQ(lookup(e, TCP, L4, 48000, 1, &fl), 0);
	CHECK(addr_equal(&fl.client, &c1));
	CHECK_EQ(fl.client_port, 48000);
	CHECK_EQ(lookup(e, TCP, "192.168.1.5", 48000, 1, &fl), -ENOENT);

	/* Another client address with the same port, even to the same destination: another m. */
	struct pk b = {TCP, SYN, "10.9.9.9", 48000, "192.0.2.1", 443, 0};
	CHECK_EQ(run(e, &b, 0, 2, &out), ENGINE_REWRITE);
	uint16_t m = out.sport;
	CHECK(m != 48000);
	CHECK_TUPLE(out, L4, m, L4, P4_TCP);
	struct pk rb = {TCP, SYN | ACK, L4, P4_TCP, L4, m, 0};
	CHECK_EQ(run(e, &rb, 0, 2, &out), ENGINE_REWRITE);
	CHECK_TUPLE(out, "192.0.2.1", 443, "10.9.9.9", 48000);
	CHECK_EQ(lookup(e, TCP, L4, m, 2, &fl), 0);
	CHECK(addr_equal(&fl.client, &c2));

	/* The first flow still works both ways. */
	a.flags = ACK;
	CHECK_EQ(run(e, &a, 0, 3, &out), ENGINE_REWRITE);
	CHECK_TUPLE(out, L4, 48000, L4, P4_TCP);
	ra.flags = ACK;
	CHECK_EQ(run(e, &ra, 0, 3, &out), ENGINE_REWRITE);
	CHECK_TUPLE(out, "192.0.2.1", 443, "192.168.1.5", 48000);
	b.flags = ACK;
	CHECK_EQ(run(e, &b, 0, 3, &out), ENGINE_REWRITE);
	CHECK_TUPLE(out, L4, m, L4, P4_TCP);

	/* IPv6 and UDP. */
	struct pk u = {UDP, 0, "2001:db8:1::5", 48001, "2001:db8::53", 53, 30};
	CHECK_EQ(run(e, &u, 0, 4, &out), ENGINE_REWRITE);
	CHECK_TUPLE(out, L6, 48001, L6, P6_DNS_UDP);
	struct pk ru = {UDP, 0, L6, P6_DNS_UDP, L6, 48001, 90};
	CHECK_EQ(run(e, &ru, 0, 4, &out), ENGINE_REWRITE);
	CHECK_TUPLE(out, "2001:db8::53", 53, "2001:db8:1::5", 48001);
	CHECK_EQ(lookup(e, UDP, L6, 48001, 4, &fl), 0);
	CHECK(addr_equal(&fl.client, &c6));
	CHECK_STATS_ADD_UP(e);
	engine_free(e);
}

/* rewrite_source remembers at most ENGINE_MAX_CLIENT_ADDRS client addresses. */
static void test_client_table_full(void)
{
	struct engine_config c = base_config();
	c.rewrite_source = true;
	c.fail_threshold = 1000;
	struct engine *e = engine_with(&c);
	char text[32];

	for (int i = 0; i <= ENGINE_MAX_CLIENT_ADDRS; i++) {
		snprintf(text, sizeof text, "10.1.%d.%d", i / 200, i % 200 + 1);
		struct pk k = {UDP, 0, text, 30000, "192.0.2.1", 9999, 0};
		check_case("client %d", i);
		CHECK_EQ(run(e, &k, 0, 1, NULL),
			 i < ENGINE_MAX_CLIENT_ADDRS ? ENGINE_REWRITE : ENGINE_DROP);
	}
	check_case("%s", "");
	CHECK_EQ(stats_of(e).errors[ENGINE_ERR_TABLE_FULL], 1);
	CHECK_EQ(stats_of(e).udp_flows, ENGINE_MAX_CLIENT_ADDRS);
	engine_free(e);
}

/* session_by_pid: only the session's pids are diverted; removing a pid removes its flows. */
static void test_session_by_pid(void)
{
	struct engine_config c = base_config();
	c.session_by_pid = true;
	struct engine *e = engine_with(&c);
	struct engine_flow fl;
	struct pkt out;
	struct pk syn = {TCP, SYN, "10.0.0.2", 49000, "192.0.2.1", 443, 0};
	struct pk syn2 = {TCP, SYN, "10.0.0.2", 49001, "192.0.2.1", 443, 0};
	struct pk udp = {UDP, 0, "10.0.0.2", 49002, "192.0.2.53", 53, 20};
	struct pk other = {TCP, SYN, "10.0.0.2", 49003, "192.0.2.1", 443, 0};

	CHECK_EQ(run(e, &syn, 500, 1, NULL), ENGINE_PASS);
	CHECK_EQ(run(e, &syn, 0, 1, NULL), ENGINE_PASS);
	CHECK_EQ(stats_of(e).not_session, 2);
	CHECK(!engine_is_session_pid(e, 500));
	CHECK_EQ(engine_add_pid(e, 500), 0);
	CHECK_EQ(engine_add_pid(e, 500), 0);
	CHECK_EQ(engine_add_pid(e, 501), 0);
	CHECK_EQ(engine_add_pid(e, 0), -EINVAL);
	CHECK(engine_is_session_pid(e, 500));
	CHECK(!engine_is_session_pid(e, 0));
	CHECK_EQ(run(e, &syn, 500, 2, &out), ENGINE_REWRITE);
	CHECK_EQ(run(e, &syn2, 500, 2, &out), ENGINE_REWRITE);
	CHECK_EQ(run(e, &udp, 500, 2, &out), ENGINE_REWRITE);
	CHECK_EQ(run(e, &other, 501, 2, &out), ENGINE_REWRITE);
	CHECK_EQ(run(e, &other, 502, 2, NULL), ENGINE_PASS);
	/* A listener reply is the engine's whatever pid the platform gives it. */
	struct pk reply = {TCP, SYN | ACK, L4, P4_TCP, "10.0.0.2", 49000, 0};
	CHECK_EQ(run(e, &reply, 0, 2, &out), ENGINE_REWRITE);
	CHECK_EQ(lookup(e, TCP, "10.0.0.2", 49000, 2, &fl), 0);
	CHECK_EQ(fl.pid, 500);

	engine_remove_pid(e, 500);
	CHECK(!engine_is_session_pid(e, 500));
	CHECK(engine_is_session_pid(e, 501));
	CHECK_EQ(lookup(e, TCP, "10.0.0.2", 49000, 3, &fl), -ENOENT);
	CHECK_EQ(lookup(e, TCP, "10.0.0.2", 49001, 3, &fl), -ENOENT);
	CHECK_EQ(lookup(e, UDP, "10.0.0.2", 49002, 3, &fl), -ENOENT);
	CHECK_EQ(lookup(e, TCP, "10.0.0.2", 49003, 3, &fl), 0);
	CHECK_EQ(stats_of(e).tcp_flows, 1);
	CHECK_EQ(stats_of(e).udp_flows, 0);
	syn.flags = ACK;
	CHECK_EQ(run(e, &syn, 500, 3, NULL), ENGINE_PASS);
	engine_remove_pid(e, 500);
	engine_remove_pid(e, 0);
	CHECK_STATS_ADD_UP(e);
	engine_free(e);
}

/* The PID set holds ENGINE_MAX_SESSION_PIDS pids and survives heavy churn. */
static void test_pid_set_bounds(void)
{
	struct engine_config c = base_config();
	struct engine *e = engine_with(&c);
	uint32_t i;

	for (i = 1; i <= ENGINE_MAX_SESSION_PIDS; i++)
		if (engine_add_pid(e, i * 7919u) != 0)
			break;
	CHECK_EQ(i, ENGINE_MAX_SESSION_PIDS + 1);
	CHECK_EQ(engine_add_pid(e, 3), -ENOSPC);
	CHECK_EQ(engine_add_pid(e, 7919u), 0); /* present: no-op */
	for (i = 1; i <= ENGINE_MAX_SESSION_PIDS; i += 2)
		engine_remove_pid(e, i * 7919u);
	for (i = 1; i <= ENGINE_MAX_SESSION_PIDS; i++)
		if (engine_is_session_pid(e, i * 7919u) != (i % 2 == 0))
			break;
	CHECK_EQ(i, ENGINE_MAX_SESSION_PIDS + 1);
	CHECK_EQ(engine_add_pid(e, 3), 0);
	CHECK(engine_is_session_pid(e, 3));
	engine_free(e);
}

/* The proxy's own packets pass, except its listeners' replies. */
static void test_proxy_pid(void)
{
	static const uint32_t modes[] = {0, 1}; /* session_by_pid */
	for (size_t i = 0; i < 2; i++) {
		struct engine_config c = base_config();
		c.proxy_pid = 900;
		c.session_by_pid = modes[i];
		struct engine *e = engine_with(&c);
		struct pk up = {TCP, SYN, "10.0.0.2", 50000, "192.0.2.1", 443, 0};
		struct pk syn = {TCP, SYN, "10.0.0.2", 50001, "192.0.2.1", 443, 0};
		struct pk reply = {TCP, SYN | ACK, L4, P4_TCP, "10.0.0.2", 50001, 0};

		check_case("session_by_pid %u", modes[i]);
		engine_add_pid(e, 100);
		CHECK_EQ(run(e, &up, 900, 1, NULL), ENGINE_PASS);
		CHECK_EQ(stats_of(e).not_session, 1);
		CHECK_EQ(run(e, &syn, 100, 1, NULL), ENGINE_REWRITE);
		CHECK_EQ(run(e, &reply, 900, 1, NULL), ENGINE_REWRITE);
		CHECK_EQ(stats_of(e).flows_created, 1);
		engine_free(e);
	}
}

/* Loopback destinations pass, except DNS; a packet straight to a listener is dropped. */
static void test_loopback_and_listener(void)
{
	static const struct {
		const char *name;
		struct pk k;
		enum engine_verdict v;
		const char *l;
		uint16_t lport;
	} rows[] = {
		{"tcp to 127.0.0.1", {TCP, SYN, "127.0.0.1", 51000, "127.0.0.1", 8080, 0},
		 ENGINE_PASS, NULL, 0},
		{"tcp to 127.1.2.3", {TCP, ACK, "10.0.0.2", 51000, "127.1.2.3", 8080, 0},
		 ENGINE_PASS, NULL, 0},
		{"udp to ::1", {UDP, 0, "::1", 51000, "::1", 9999, 3}, ENGINE_PASS, NULL, 0},
		{"udp to 127.0.0.53:53", {UDP, 0, "127.0.0.1", 51001, "127.0.0.53", 53, 30},
		 ENGINE_REWRITE, L4, P4_DNS_UDP},
		{"tcp to 127.0.0.1:53", {TCP, SYN, "127.0.0.1", 51002, "127.0.0.1", 53, 0},
		 ENGINE_REWRITE, L4, P4_DNS_TCP},
		{"udp to [::1]:53", {UDP, 0, "::1", 51003, "::1", 53, 30}, ENGINE_REWRITE, L6,
		 P6_DNS_UDP},
		{"icmp to loopback", {ICMP, 0, "127.0.0.1", 0, "127.0.0.1", 0, 8}, ENGINE_PASS,
		 NULL, 0},
		{"to tcp listener", {TCP, SYN, "127.0.0.1", 51004, L4, P4_TCP, 0}, ENGINE_DROP,
		 NULL, 0},
		{"to udp listener", {UDP, 0, "127.0.0.1", 51005, L4, P4_UDP, 3}, ENGINE_DROP,
		 NULL, 0},
		{"to dns listener 6", {UDP, 0, "::1", 51006, L6, P6_DNS_UDP, 3}, ENGINE_DROP,
		 NULL, 0},
		{"to the v6 port on v4", {TCP, SYN, "127.0.0.1", 51007, L4, P6_TCP, 0}, ENGINE_PASS,
		 NULL, 0},
		{"not listener: 127.0.0.2", {TCP, SYN, "127.0.0.1", 51008, "127.0.0.2", P4_TCP, 0},
		 ENGINE_PASS, NULL, 0},
	};
	struct engine_config c = base_config();
	struct engine *e = engine_with(&c);
	uint64_t loop = 0, to_listener = 0;

	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct pkt out;
		check_case("%s", rows[i].name);
		CHECK_EQ(run(e, &rows[i].k, 0, 1, &out), rows[i].v);
		if (rows[i].v == ENGINE_REWRITE)
			CHECK_TUPLE(out, rows[i].k.src, rows[i].k.sport, rows[i].l, rows[i].lport);
		loop += rows[i].v == ENGINE_PASS;
		to_listener += rows[i].v == ENGINE_DROP;
	}
	check_case("%s", "");
	struct engine_stats s = stats_of(e);
	CHECK_EQ(s.loopback, loop);
	CHECK_EQ(s.to_listener, to_listener);
	CHECK_EQ(s.errors[ENGINE_ERR_STRAY], 0);
	CHECK_STATS_ADD_UP(e);
	engine_free(e);
}

/* Builds an IPv4 UDP fragment (first or later) or IPv6 one with a fragment header. */
static size_t build_fragment(uint8_t *b, bool v6, bool first)
{
	struct pk k = {UDP, 0, v6 ? "fd00::2" : "10.0.0.2", 52000, v6 ? "2001:db8::1" : "192.0.2.1",
		       4000, 64};
	size_t len = build(b, &k);
	if (!v6) {
		put16(b + 6, first ? 0x2000 : 0x0010); /* MF, or offset 128 */
		fill_checksums(b, false, UDP, 20, len);
		return len;
	}
	/* Insert an 8-byte fragment header after the IPv6 header. */
	memmove(b + 48, b + 40, len - 40);
	b[40] = UDP;
	b[41] = 0;
	put16(b + 42, first ? 0x0001 : 0x0100); /* M, or offset 256 */
	put16(b + 44, 0);
	put16(b + 46, 0x4242);
	b[6] = PKT_PROTO_FRAGMENT;
	put16(b + 4, (uint16_t)(len + 8 - 40));
	return len + 8;
}

/* Other protocols and fragments of session packets are dropped, counted, not errors. */
static void test_other_protocols_and_fragments(void)
{
	struct engine_config c = base_config();
	struct engine *e = engine_with(&c);
	uint8_t buf[1600];
	struct pk icmp = {ICMP, 0, "10.0.0.2", 0, "192.0.2.1", 0, 16};
	struct pk icmp6 = {ICMPV6, 0, "fd00::2", 0, "2001:db8::1", 0, 16};

	CHECK_EQ(run(e, &icmp, 0, 1, NULL), ENGINE_DROP);
	CHECK_EQ(run(e, &icmp6, 0, 1, NULL), ENGINE_DROP);
	for (int v6 = 0; v6 < 2; v6++) {
		for (int first = 0; first < 2; first++) {
			check_case("fragment v6=%d first=%d", v6, first);
			size_t len = build_fragment(buf, v6, first);
			struct pkt view;
			CHECK_EQ(pkt_parse(buf, len, &view), PKT_ERR_FRAGMENT);
			CHECK_EQ(run_buf(e, buf, len, 0, 1, NULL), ENGINE_DROP);
		}
	}
	check_case("%s", "");
	struct engine_stats s = stats_of(e);
	CHECK_EQ(s.other_proto, 2);
	CHECK_EQ(s.fragments, 4);
	for (int i = 0; i < ENGINE_ERRORS; i++)
		CHECK_EQ(s.errors[i], 0);
	CHECK_STATS_ADD_UP(e);
	engine_free(e);
}

/* A family without a listener: its session packets get the fail verdict, loopback still passes. */
static void test_family_without_listener(void)
{
	struct engine_config c = base_config();
	memset(&c.listen[ENGINE_IPV6], 0, sizeof c.listen[ENGINE_IPV6]);
	struct engine *e = engine_with(&c);
	struct pk syn6 = {TCP, SYN, "fd00::2", 53000, "2001:db8::1", 443, 0};
	struct pk lo6 = {TCP, SYN, "::1", 53000, "::1", 443, 0};
	struct pk syn4 = {TCP, SYN, "10.0.0.2", 53000, "192.0.2.1", 443, 0};
	struct pk fake_reply = {TCP, ACK, "::1", P6_TCP, "fd00::2", 53000, 0};

	CHECK_EQ(run(e, &syn6, 0, 1, NULL), ENGINE_DROP);
	CHECK_EQ(run(e, &fake_reply, 0, 1, NULL), ENGINE_DROP);
	CHECK_EQ(run(e, &lo6, 0, 1, NULL), ENGINE_PASS);
	CHECK_EQ(run(e, &syn4, 0, 1, NULL), ENGINE_REWRITE);
	CHECK_EQ(stats_of(e).errors[ENGINE_ERR_NO_FAMILY], 2);
	engine_free(e);
}

/* Every malformed class gets the fail verdict, is counted by kind, and is never rewritten. */
static void test_malformed(void)
{
	enum mut {
		CUT, VERSION, IHL, TOTAL, TCP_OFF, TCP_SHORT, UDP_LEN, JUMBO, EXT_RUN, EXT_MANY,
	};
	static const struct {
		const char *name;
		bool v6;
		uint8_t proto;
		enum mut mut;
		size_t keep; /* CUT: bytes kept */
		int rc;
	} rows[] = {
		{"empty", false, TCP, CUT, 0, PKT_ERR_TRUNCATED},
		{"v4 header cut", false, TCP, CUT, 19, PKT_ERR_TRUNCATED},
		{"v4 datagram cut", false, TCP, CUT, 50, PKT_ERR_TRUNCATED},
		{"v6 header cut", true, UDP, CUT, 39, PKT_ERR_TRUNCATED},
		{"v6 datagram cut", true, UDP, CUT, 60, PKT_ERR_TRUNCATED},
		{"version 5", false, TCP, VERSION, 0, PKT_ERR_VERSION},
		{"ihl 4", false, TCP, IHL, 0, PKT_ERR_IP_HEADER_LEN},
		{"total length 19", false, TCP, TOTAL, 0, PKT_ERR_IP_TOTAL_LEN},
		{"tcp offset 4", false, TCP, TCP_OFF, 0, PKT_ERR_TCP_HEADER},
		{"tcp 12 bytes", true, TCP, TCP_SHORT, 0, PKT_ERR_TCP_HEADER},
		{"udp length", false, UDP, UDP_LEN, 0, PKT_ERR_UDP_HEADER},
		{"jumbogram", true, UDP, JUMBO, 0, PKT_ERR_JUMBOGRAM},
		{"extension header overruns", true, UDP, EXT_RUN, 0, PKT_ERR_EXT_HEADER},
		{"too many extension headers", true, UDP, EXT_MANY, 0, PKT_ERR_EXT_LIMIT},
	};
	for (int mode = 0; mode < 3; mode++) { /* fail closed, fail open, foreign pid */
		struct engine_config c = base_config();
		c.fail_open = mode == 1;
		c.session_by_pid = mode == 2;
		c.fail_threshold = 1000;
		struct engine *e = engine_with(&c);
		engine_add_pid(e, 10);
		for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
			uint8_t buf[1600];
			const char *src = rows[i].v6 ? "fd00::2" : "10.0.0.2";
			const char *dst = rows[i].v6 ? "2001:db8::1" : "192.0.2.1";
			struct pk k = {rows[i].proto, ACK, src, 54000, dst, 80, 100};
			size_t len = build(buf, &k);
			struct pkt view;
			switch (rows[i].mut) {
			case CUT:
				len = rows[i].keep;
				break;
			case VERSION:
				buf[0] = 0x55;
				break;
			case IHL:
				buf[0] = 0x44;
				break;
			case TOTAL:
				put16(buf + 2, 19);
				break;
			case TCP_OFF:
				buf[20 + 12] = 4 << 4;
				break;
			case TCP_SHORT:
				put16(buf + 4, 12);
				len = 52;
				break;
			case UDP_LEN:
				put16(buf + 20 + 4, 9);
				break;
			case JUMBO:
				put16(buf + 4, 0);
				buf[6] = PKT_PROTO_HOPOPTS;
				break;
			case EXT_RUN:
				buf[6] = PKT_PROTO_DSTOPTS;
				buf[40] = UDP;
				buf[41] = 200;
				break;
			case EXT_MANY:
				put16(buf + 4, 80);
				buf[6] = PKT_PROTO_DSTOPTS;
				for (int h = 0; h < 10; h++) {
					buf[40 + 8 * h] = PKT_PROTO_DSTOPTS;
					buf[41 + 8 * h] = 0;
				}
				len = 120;
				break;
			}
			check_case("%s, mode %d", rows[i].name, mode);
			CHECK_EQ(pkt_parse(buf, len, &view), rows[i].rc);
			uint32_t pid = mode == 2 ? 11 : 10;
			enum engine_verdict want = mode == 0 ? ENGINE_DROP : ENGINE_PASS;
			CHECK_EQ(run_buf(e, buf, len, pid, 1, NULL), want);
		}
		check_case("mode %d", mode);
		struct engine_stats s = stats_of(e);
		uint64_t total = 0;
		for (int r = 0; r < PKT_RESULT_COUNT; r++)
			total += s.malformed[r];
		if (mode == 2) {
			CHECK_EQ(total, 0);
			CHECK_EQ(s.not_session, 14);
		} else {
			CHECK_EQ(total, 14);
			CHECK_EQ(s.errors[ENGINE_ERR_MALFORMED], 14);
			CHECK_EQ(s.malformed[-PKT_ERR_TRUNCATED], 5);
			CHECK_EQ(s.malformed[-PKT_ERR_TCP_HEADER], 2);
			CHECK_EQ(s.malformed[-PKT_ERR_EXT_LIMIT], 1);
		}
		CHECK_EQ(s.diverted + s.replies, 0);
		CHECK_STATS_ADD_UP(e);
		engine_free(e);
	}
}

/* A full table refuses new flows while nothing may be evicted, then evicts idle ones. */
static void test_table_full(void)
{
	struct engine_config c = base_config();
	c.tcp_capacity = 4;
	c.udp_capacity = 2;
	c.min_evict_idle_ms = 10000;
	c.fail_threshold = 1000;
	struct engine *e = engine_with(&c);
	struct pkt out;

	for (uint16_t i = 0; i < 4; i++) {
		struct pk k = {TCP, SYN, "10.0.0.2", (uint16_t)(55000 + i), "192.0.2.1", 443, 0};
		CHECK_EQ(run(e, &k, 0, 1000, NULL), ENGINE_REWRITE);
	}
	struct pk fifth = {TCP, SYN, "10.0.0.2", 55010, "192.0.2.1", 443, 0};
	CHECK_EQ(run(e, &fifth, 0, 2000, NULL), ENGINE_DROP);
	CHECK_EQ(stats_of(e).errors[ENGINE_ERR_TABLE_FULL], 1);
	/* Existing flows keep working. */
	struct pk old = {TCP, ACK, "10.0.0.2", 55001, "192.0.2.1", 443, 0};
	CHECK_EQ(run(e, &old, 0, 2000, NULL), ENGINE_REWRITE);
	/* Once idle long enough, the least recently used one gives way. */
	CHECK_EQ(run(e, &fifth, 0, 11001, &out), ENGINE_REWRITE);
	CHECK_TUPLE(out, "10.0.0.2", 55010, L4, P4_TCP);
	CHECK_EQ(stats_of(e).flows_evicted, 1);
	struct engine_flow fl;
	CHECK_EQ(lookup(e, TCP, "10.0.0.2", 55000, 11001, &fl), -ENOENT);
	CHECK_EQ(lookup(e, TCP, "10.0.0.2", 55001, 11001, &fl), 0);

	/* UDP: a remapped flow needs the remap index too; a refusal leaves nothing behind. */
	struct pk u1 = {UDP, 0, "10.0.0.2", 56000, "192.0.2.1", 1000, 0};
	struct pk u2 = {UDP, 0, "10.0.0.2", 56000, "192.0.2.2", 1000, 0};
	struct pk u3 = {UDP, 0, "10.0.0.2", 56000, "192.0.2.3", 1000, 0};
	CHECK_EQ(run(e, &u1, 0, 20000, NULL), ENGINE_REWRITE);
	CHECK_EQ(run(e, &u2, 0, 20000, NULL), ENGINE_REWRITE);
	CHECK_EQ(run(e, &u3, 0, 20000, NULL), ENGINE_DROP);
	CHECK_EQ(stats_of(e).errors[ENGINE_ERR_TABLE_FULL], 2);
	CHECK_EQ(stats_of(e).udp_flows, 2);
	CHECK_STATS_ADD_UP(e);
	engine_free(e);
}

static bool is_listener_port(uint16_t port)
{
	return port == P4_TCP || port == P4_DNS_TCP || port == P4_DNS_UDP || port == P4_UDP ||
	       port == P6_TCP || port == P6_DNS_TCP || port == P6_DNS_UDP || port == P6_UDP;
}

/* With every mapped port taken, a flow that needs one is refused with ENGINE_ERR_NO_PORT. */
static void test_no_free_port(void)
{
	struct engine_config c = base_config();
	c.udp_capacity = 70000;
	c.fail_threshold = 1000000;
	struct engine *e = engine_with(&c);
	static bool used[65536];
	static uint16_t owner[65536]; /* mapped port -> client port, and in which pass */
	static bool owner_pass[65536];
	uint8_t buf[1600];
	uint32_t n_used = 0;
	struct pkt view;

	memset(used, 0, sizeof used);
	/* Every client port once: mostly m = c; listener ports, and then the ports their flows
	 * took, are mapped elsewhere, and the last few find nothing free in 64 probes. */
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t port = 1024; port <= 65535; port++) {
			struct pk k = {UDP, 0, "10.0.0.2", (uint16_t)port,
				       pass ? "192.0.2.2" : "192.0.2.1", 1000, 0};
			struct engine_packet p = {.buf = buf, .len = build(buf, &k)};
			if (pass == 1 && (used[port] || is_listener_port((uint16_t)port)))
				continue;
			if (engine_process(e, &p, 1) != ENGINE_REWRITE)
				continue;
			if (pkt_parse(buf, p.len, &view) != PKT_OK || used[view.sport])
				CHECK(!"mapped port taken twice");
			CHECK(pass == 0 || view.sport == port); /* the second pass fills the gaps */
			used[view.sport] = true;
			owner[view.sport] = (uint16_t)port;
			owner_pass[view.sport] = pass;
			n_used++;
		}
	}
	CHECK_EQ(n_used, 64512 - 8);
	CHECK(!used[P4_TCP] && !used[P4_DNS_UDP] && !used[P6_UDP] && !used[0]);
	CHECK(stats_of(e).errors[ENGINE_ERR_NO_PORT] >= 1);
	struct pk k = {UDP, 0, "10.0.0.2", 2000, "192.0.2.99", 1000, 0};
	uint64_t before = stats_of(e).errors[ENGINE_ERR_NO_PORT];
	CHECK_EQ(run(e, &k, 0, 2, NULL), ENGINE_DROP);
	CHECK_EQ(stats_of(e).errors[ENGINE_ERR_NO_PORT], before + 1);

	/* Once the others have expired (not yet swept), their ports may be taken again. */
	uint64_t later = 2 + ENGINE_DEFAULT_UDP_IDLE_MS + 1;
	struct pk holder = {UDP, 0, "10.0.0.2", owner[2000], owner_pass[2000] ? "192.0.2.2" :
								"192.0.2.1", 1000, 0};
	CHECK_EQ(run(e, &holder, 0, later, &view), ENGINE_REWRITE);
	CHECK_EQ(view.sport, 2000);
	CHECK_EQ(run(e, &k, 0, later, &view), ENGINE_REWRITE);
	CHECK(view.sport != 2000 && view.sport >= 1024);
	CHECK_STATS_ADD_UP(e);
	engine_free(e);
}

/* Flows expire after their idle time (explicit clock), and traffic keeps them alive. */
static void test_idle_expiry(void)
{
	struct engine_config c = base_config();
	c.udp_idle_ms = 1000;
	c.tcp_idle_ms = 5000;
	c.min_evict_idle_ms = 500;
	struct engine *e = engine_with(&c);
	struct engine_flow fl;
	struct pk u = {UDP, 0, "10.0.0.2", 57000, "192.0.2.1", 1000, 0};
	struct pk u2 = {UDP, 0, "10.0.0.2", 57000, "192.0.2.2", 1000, 0};
	struct pk reply = {UDP, 0, L4, P4_UDP, "10.0.0.2", 57000, 0};

	handshake(e, "10.0.0.2", 57001, "192.0.2.1", 443, L4, P4_TCP, 0);
	CHECK_EQ(run(e, &u, 0, 0, NULL), ENGINE_REWRITE);
	CHECK_EQ(run(e, &u2, 0, 0, NULL), ENGINE_REWRITE);
	CHECK_EQ(engine_tick(e, 900), 0);
	CHECK_EQ(run(e, &reply, 0, 900, NULL), ENGINE_REWRITE); /* keeps the first one alive */
	CHECK_EQ(engine_tick(e, 1500), 1);                      /* the second one goes */
	CHECK_EQ(lookup(e, UDP, "10.0.0.2", 57000, 1500, &fl), 0); /* and so does a lookup */
	CHECK_EQ(engine_tick(e, 2400), 0);
	CHECK_EQ(engine_tick(e, 2501), 1);
	CHECK_EQ(lookup(e, UDP, "10.0.0.2", 57000, 2501, &fl), -ENOENT);
	CHECK_EQ(stats_of(e).tcp_flows, 1);
	CHECK_EQ(engine_tick(e, 5001), 1);
	CHECK_EQ(engine_tick(e, 100), 0); /* time never runs backwards */
	struct engine_stats s = stats_of(e);
	CHECK_EQ(s.flows_expired, 3);
	CHECK_EQ(s.tcp_flows, 0);
	CHECK_EQ(s.udp_flows, 0);
	/* A remapped flow that expired leaves nothing that could misroute its successor. */
	CHECK_EQ(run(e, &u2, 0, 6000, NULL), ENGINE_REWRITE);
	struct pkt out;
	CHECK_EQ(run(e, &u2, 0, 6001, &out), ENGINE_REWRITE);
	CHECK_TUPLE(out, "10.0.0.2", 57000, L4, P4_UDP);
	engine_free(e);
}

/* A remapped flow stays reachable from the client while only replies or lookups use it. */
static void test_remapped_flow_kept_alive(void)
{
	struct engine_config c = base_config();
	c.udp_idle_ms = 1000;
	c.min_evict_idle_ms = 100;
	struct engine *e = engine_with(&c);
	struct engine_flow fl;
	struct pkt out;
	struct pk a = {UDP, 0, "10.0.0.2", 58000, "192.0.2.1", 1000, 0};
	struct pk b = {UDP, 0, "10.0.0.2", 58000, "192.0.2.2", 1000, 0};
	uint64_t now = 0;

	CHECK_EQ(run(e, &a, 0, now, NULL), ENGINE_REWRITE);
	CHECK_EQ(run(e, &b, 0, now, &out), ENGINE_REWRITE);
	uint16_t m = out.sport;
	struct pk back_a = {UDP, 0, L4, P4_UDP, "10.0.0.2", 58000, 0};
	struct pk back_b = {UDP, 0, L4, P4_UDP, "10.0.0.2", m, 0};
	for (int i = 0; i < 6; i++) {
		now += 600;
		check_case("step %d", i);
		CHECK_EQ(run(e, &back_a, 0, now, NULL), ENGINE_REWRITE);
		if (i < 3)
			CHECK_EQ(run(e, &back_b, 0, now, NULL), ENGINE_REWRITE);
		else
			CHECK_EQ(lookup(e, UDP, "10.0.0.2", m, now, &fl), 0);
		engine_tick(e, now);
	}
	check_case("%s", "");
	CHECK_EQ(run(e, &b, 0, now, &out), ENGINE_REWRITE);
	CHECK_TUPLE(out, "10.0.0.2", m, L4, P4_UDP);
	CHECK_EQ(stats_of(e).flows_created, 2);
	CHECK_EQ(stats_of(e).flows_expired, 0);
	engine_free(e);
}

/* Removing a pid gives back all the room its flows took, remap entries included. */
static void test_remove_pid_frees_room(void)
{
	struct engine_config c = base_config();
	c.udp_capacity = 2;
	c.min_evict_idle_ms = 100000;
	struct engine *e = engine_with(&c);

	for (uint32_t pid = 1; pid <= 4; pid++) {
		uint16_t port = (uint16_t)(59000 + pid);
		struct pk a = {UDP, 0, "10.0.0.2", port, "192.0.2.1", 1000, 0};
		struct pk b = {UDP, 0, "10.0.0.2", port, "192.0.2.2", 1000, 0};
		check_case("pid %u", pid);
		CHECK_EQ(run(e, &a, pid, pid, NULL), ENGINE_REWRITE);
		CHECK_EQ(run(e, &b, pid, pid, NULL), ENGINE_REWRITE);
		engine_remove_pid(e, pid);
		CHECK_EQ(stats_of(e).udp_flows, 0);
	}
	check_case("%s", "");
	CHECK_EQ(stats_of(e).errors[ENGINE_ERR_TABLE_FULL], 0);
	CHECK_EQ(stats_of(e).flows_remapped, 4);
	engine_free(e);
}

/* engine_new refuses what it cannot run with. */
static void test_config_checks(void)
{
	enum {
		OK, NO_LISTENER, V6_IN_V4, NOT_LOOPBACK, V6_NOT_LOOPBACK, ZERO_PORT,
		EVICT_ABOVE_IDLE, CAPACITY, SMALL_IDLE_OK, ONLY_V6,
	};
	static const struct {
		const char *name;
		int what;
		int rc;
	} rows[] = {
		{"defaults", OK, 0},
		{"no listener", NO_LISTENER, -EINVAL},
		{"v6 address as the v4 listener", V6_IN_V4, -EINVAL},
		{"v4 listener not loopback", NOT_LOOPBACK, -EINVAL},
		{"v6 listener not loopback", V6_NOT_LOOPBACK, -EINVAL},
		{"zero port", ZERO_PORT, -EINVAL},
		{"min_evict above an idle time", EVICT_ABOVE_IDLE, -EINVAL},
		{"capacity above the NAT maximum", CAPACITY, -EINVAL},
		{"idle times below the default min_evict", SMALL_IDLE_OK, 0},
		{"only v6", ONLY_V6, 0},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct engine_config c = base_config();
		static char sentinel;
		struct engine *e = (struct engine *)&sentinel; /* engine_new must reset it */
		switch (rows[i].what) {
		case NO_LISTENER:
			memset(c.listen, 0, sizeof c.listen);
			break;
		case V6_IN_V4:
			c.listen[ENGINE_IPV4] = ip("::1");
			break;
		case NOT_LOOPBACK:
			c.listen[ENGINE_IPV4] = ip("10.0.0.1");
			break;
		case V6_NOT_LOOPBACK:
			c.listen[ENGINE_IPV6] = ip("::2");
			break;
		case ZERO_PORT:
			c.port[ENGINE_DNS_UDP][ENGINE_IPV6] = 0;
			break;
		case EVICT_ABOVE_IDLE:
			c.udp_idle_ms = 1000;
			c.min_evict_idle_ms = 2000;
			break;
		case CAPACITY:
			c.tcp_capacity = 1u << 30;
			break;
		case SMALL_IDLE_OK:
			c.udp_idle_ms = 10;
			c.tcp_idle_ms = 20;
			break;
		case ONLY_V6:
			memset(&c.listen[ENGINE_IPV4], 0, sizeof c.listen[0]);
			memset(c.port, 0, sizeof c.port);
			for (int k = 0; k < ENGINE_KINDS; k++)
				c.port[k][ENGINE_IPV6] = (uint16_t)(7000 + k);
			break;
		}
		check_case("%s", rows[i].name);
		int rc = engine_new(&e, &c);
		CHECK_EQ(rc, rows[i].rc);
		CHECK(rc == 0 ? e != NULL && e != (struct engine *)&sentinel : e == NULL);
		if (rc == 0)
			engine_free(e);
	}
	struct engine *e = NULL;
	struct engine_config c = base_config();
	CHECK_EQ(engine_new(&e, NULL), -EINVAL);
	CHECK_EQ(engine_new(NULL, &c), -EINVAL);
	engine_free(NULL);
}

static void test_error_names(void)
{
	static const char *const want[ENGINE_ERRORS] = {
		"malformed",     "table_full", "no_port", "stray",
		"unknown_reply", "no_family",  "backend",
	};
	for (int i = 0; i < ENGINE_ERRORS; i++)
		CHECK_STR_EQ(engine_error_name((enum engine_error)i), want[i]);
	CHECK_STR_EQ(engine_error_name(ENGINE_ERRORS), "unknown");
	CHECK_STR_EQ(engine_error_name((enum engine_error)-1), "unknown");
}

/* ---- the model test ---- */

struct mflow {
	bool live; /* in the engine's table: open, or closed and lingering */
	uint8_t proto;
	int client, dst;
	uint16_t c, d, m;
	uint8_t fins; /* 1: client's FIN passed, 2: listener's */
	bool established, closed;
	uint64_t closed_at;
	uint32_t pid;
};

#define MODEL_MAX 512

static const char *const model_clients[] = {"10.0.0.2", "10.0.0.3", "fd00::2", "fd00::3"};
static const char *const model_dsts[2][3] = {
	{"192.0.2.1", "192.0.2.2", "198.51.100.7"},
	{"2001:db8::1", "2001:db8::2", "2001:db8::53"},
};
static const uint16_t model_cports[] = {40000, 40001, 40002, P4_TCP};
static const uint16_t model_dports[] = {53, 80, 443};

static uint64_t model_rng = 1;

static uint32_t rnd(uint32_t n)
{
	model_rng ^= model_rng << 13;
	model_rng ^= model_rng >> 7;
	model_rng ^= model_rng << 17;
	return (uint32_t)((model_rng >> 32) % n);
}

struct model {
	struct engine *e;
	bool rewrite_source;
	struct mflow f[MODEL_MAX];
	uint64_t now;
	uint64_t ended; /* flows closed */
};

static bool mv6(const struct mflow *f)
{
	return f->client >= 2;
}

static const char *mclient(const struct mflow *f)
{
	return model_clients[f->client];
}

static const char *mdst(const struct mflow *f)
{
	return model_dsts[mv6(f)][f->dst];
}

/* The listener-side peer address of a flow. */
static const char *mkey_addr(const struct model *md, const struct mflow *f)
{
	return md->rewrite_source ? (mv6(f) ? L6 : L4) : mclient(f);
}

static void mlistener(const struct mflow *f, const char **l, uint16_t *lport)
{
	bool v6 = mv6(f);
	*l = v6 ? L6 : L4;
	if (f->proto == TCP)
		*lport = f->d == 53 ? (v6 ? P6_DNS_TCP : P4_DNS_TCP) : (v6 ? P6_TCP : P4_TCP);
	else
		*lport = f->d == 53 ? (v6 ? P6_DNS_UDP : P4_DNS_UDP) : (v6 ? P6_UDP : P4_UDP);
}

/* The live flow holding listener-side peer (proto, key address of family, m), or NULL. */
static struct mflow *model_at(struct model *md, uint8_t proto, bool v6, const char *kaddr,
			      uint16_t m)
{
	for (int i = 0; i < MODEL_MAX; i++) {
		struct mflow *g = &md->f[i];
		if (g->live && g->proto == proto && mv6(g) == v6 && g->m == m &&
		    strcmp(mkey_addr(md, g), kaddr) == 0)
			return g;
	}
	return NULL;
}

static struct mflow *model_find(struct model *md, const struct mflow *k)
{
	for (int i = 0; i < MODEL_MAX; i++) {
		struct mflow *g = &md->f[i];
		if (g->live && g->proto == k->proto && g->client == k->client && g->c == k->c &&
		    g->dst == k->dst && g->d == k->d)
			return g;
	}
	return NULL;
}

static void model_open(struct model *md)
{
	struct mflow k = {
		.live = true,
		.proto = rnd(2) ? TCP : UDP,
		.client = (int)rnd(4),
		.dst = (int)rnd(3),
		.c = model_cports[rnd(4)],
		.d = model_dports[rnd(3)],
		.pid = 1 + rnd(3),
	};
	struct mflow *slot = NULL, *old = model_find(md, &k);
	struct pk p = {k.proto, k.proto == TCP ? SYN : 0, mclient(&k), k.c, mdst(&k), k.d, 8};
	const char *l;
	uint16_t lport;
	struct pkt out;

	mlistener(&k, &l, &lport);
	for (int i = 0; i < MODEL_MAX && !old; i++)
		if (!md->f[i].live)
			slot = &md->f[i];
	if (!old && !slot)
		return;
	CHECK_EQ(run(md->e, &p, k.pid, md->now, &out), ENGINE_REWRITE);
	if (old && (old->proto == UDP || !(old->established || old->closed))) {
		/* A datagram of the flow, or a SYN retransmitted in the handshake. */
		CHECK_TUPLE(out, mkey_addr(md, old), old->m, l, lport);
		return;
	}
	k.m = out.sport;
	CHECK_TUPLE(out, mkey_addr(md, &k), k.m, l, lport);
	if (old) {
		/* A new connection on the tuple: the old flow goes, never its port nor c. */
		CHECK(k.m != k.c && k.m != old->m && k.m >= 1024);
		old->live = false;
		slot = old;
	} else {
		bool c_free = k.c != P4_TCP &&
			      !model_at(md, k.proto, mv6(&k), mkey_addr(md, &k), k.c);
		if (c_free)
			CHECK_EQ(k.m, k.c);
		else
			CHECK(k.m != k.c && k.m >= 1024);
	}
	CHECK(model_at(md, k.proto, mv6(&k), mkey_addr(md, &k), k.m) == NULL);
	*slot = k;
}

static struct mflow *model_pick(struct model *md)
{
	int start = (int)rnd(MODEL_MAX);
	for (int i = 0; i < MODEL_MAX; i++) {
		struct mflow *g = &md->f[(start + i) % MODEL_MAX];
		if (g->live)
			return g;
	}
	return NULL;
}

/* One packet of flow g from the client (or the listener), with TCP flags. */
static void model_packet(struct model *md, struct mflow *g, bool from_listener, uint8_t flags)
{
	const char *l;
	uint16_t lport;
	struct pkt out;

	mlistener(g, &l, &lport);
	if (g->proto == UDP) {
		flags = 0;
	} else if (!g->closed) {
		if (from_listener ? (flags & (SYN | ACK)) == (SYN | ACK) : (flags & ACK) != 0)
			g->established = true;
		if (flags & FIN)
			g->fins |= from_listener ? 2 : 1;
		if ((flags & RST) || g->fins == 3) {
			g->closed = true;
			g->closed_at = md->now;
			md->ended++;
		}
	}
	if (from_listener) {
		struct pk p = {g->proto, flags, l, lport, mkey_addr(md, g), g->m, 20};
		CHECK_EQ(run(md->e, &p, 0, md->now, &out), ENGINE_REWRITE);
		CHECK_TUPLE(out, mdst(g), g->d, mclient(g), g->c);
	} else {
		struct pk p = {g->proto, flags, mclient(g), g->c, mdst(g), g->d, 20};
		CHECK_EQ(run(md->e, &p, g->pid, md->now, &out), ENGINE_REWRITE);
		CHECK_TUPLE(out, mkey_addr(md, g), g->m, l, lport);
	}
}

/* Time passes (less than the idle times, more than the linger at times) and engine_tick
 * removes exactly the closed flows whose linger is over. */
static void model_leap(struct model *md)
{
	size_t gone = 0;
	md->now += 1000 + rnd(60000);
	for (int i = 0; i < MODEL_MAX; i++) {
		struct mflow *g = &md->f[i];
		if (g->live && g->closed && md->now - g->closed_at > ENGINE_TCP_LINGER_MS) {
			g->live = false;
			gone++;
		}
	}
	CHECK_EQ(engine_tick(md->e, md->now), gone);
}

static void model_check_all(struct model *md)
{
	uint32_t tcp = 0, udp = 0;
	for (int i = 0; i < MODEL_MAX; i++) {
		struct mflow *g = &md->f[i];
		struct engine_flow fl;
		if (!g->live)
			continue;
		tcp += g->proto == TCP;
		udp += g->proto == UDP;
		if (g->closed) {
			CHECK_EQ(lookup(md->e, TCP, mkey_addr(md, g), g->m, md->now, &fl), -ENOENT);
			continue;
		}
		CHECK_EQ(lookup(md->e, g->proto, mkey_addr(md, g), g->m, md->now, &fl), 0);
		struct addr c = ip(mclient(g)), d = ip(mdst(g));
		CHECK(addr_equal(&fl.client, &c));
		CHECK(addr_equal(&fl.orig_dst, &d));
		CHECK_EQ(fl.client_port, g->c);
		CHECK_EQ(fl.orig_port, g->d);
		CHECK_EQ(fl.pid, g->pid);
	}
	struct engine_stats s = stats_of(md->e);
	CHECK_EQ(s.tcp_flows, tcp);
	CHECK_EQ(s.udp_flows, udp);
	CHECK_EQ(s.flows_ended, md->ended);
	CHECK_EQ(s.linger_overflow, 0);
	CHECK_EQ(s.packets, s.passed + s.dropped + s.diverted + s.replies);
	CHECK_EQ(s.dropped + s.passed, 0);
}

static void model_run(bool rewrite_source, uint64_t seed)
{
	static struct model md;
	struct engine_config c = base_config();
	c.rewrite_source = rewrite_source;
	c.tcp_idle_ms = c.udp_idle_ms = 1000ull * 1000 * 1000; /* only the linger removes flows */
	memset(&md, 0, sizeof md);
	md.e = engine_with(&c);
	md.rewrite_source = rewrite_source;
	model_rng = seed;

	for (int step = 0; step < 6000; step++) {
		uint32_t op = rnd(100);
		struct mflow *g = model_pick(&md);
		md.now++;
		if (op < 25 || !g) {
			model_open(&md);
		} else if (op < 55) {
			model_packet(&md, g, false, ACK | PSH);
		} else if (op < 82) {
			model_packet(&md, g, true, ACK | PSH);
		} else if (op < 85) {
			model_packet(&md, g, true, SYN | ACK);
		} else if (op < 94) {
			model_packet(&md, g, rnd(2), FIN | ACK);
		} else if (op < 96) {
			model_packet(&md, g, rnd(2), RST);
		} else if (op < 98) {
			model_leap(&md);
		} else {
			uint32_t pid = 1 + rnd(3);
			engine_remove_pid(md.e, pid);
			for (int i = 0; i < MODEL_MAX; i++)
				if (md.f[i].pid == pid)
					md.f[i].live = false;
		}
		if (step % 500 == 0)
			model_check_all(&md);
		if (check_failures_in_test)
			break;
	}
	model_check_all(&md);
	engine_free(md.e);
}

/* Random opens (new tuples, retransmitted SYNs, tuples reused), packets both ways, closes,
 * lingers running out and pid removals against a model of the flows. */
static void test_model(void)
{
	static const uint64_t seeds[] = {0x9e3779b97f4a7c15u, 12345, 0xdeadbeefcafef00du};
	for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
		for (int rs = 0; rs < 2; rs++) {
			check_case("seed %zu, rewrite_source %d", i, rs);
			model_run(rs, seeds[i]);
		}
	}
}

/* The report names: one per counter, distinct, each carrying its own field; truncated at max. */
static void test_counters(void)
{
	struct engine_stats st;
	struct engine_counter c[ENGINE_COUNTERS_MAX];
	static const struct {
		const char *name;
		uint64_t want;
	} rows[] = {
		{"divert_packets", 101},
		{"divert_replies", 102},
		{"divert_flows_remapped", 103},
		{"divert_err_stray", 104},
		{"divert_err_backend", 105},
		{"divert_fail_mode_entered", 106},
	};

	memset(&st, 0, sizeof st);
	st.packets = 101;
	st.replies = 102;
	st.flows_remapped = 103;
	st.errors[ENGINE_ERR_STRAY] = 104;
	st.errors[ENGINE_ERR_BACKEND] = 105;
	st.fail_mode_entered = 106;
	size_t n = engine_counters(&st, c, ENGINE_COUNTERS_MAX);
	CHECK(n > 20 && n <= ENGINE_COUNTERS_MAX);
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			CHECK(strcmp(c[i].name, c[j].name) != 0);
	for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
		check_case("%s", rows[r].name);
		size_t found = 0;
		for (size_t i = 0; i < n; i++)
			if (strcmp(c[i].name, rows[r].name) == 0) {
				CHECK_EQ(c[i].value, rows[r].want);
				found++;
			}
		CHECK_EQ(found, 1);
	}
	check_case("truncated");
	CHECK_EQ(engine_counters(&st, c, 3), 3);
	CHECK_STR_EQ(c[0].name, "divert_packets");
	CHECK_EQ(engine_counters(&st, c, 0), 0);
}

static const struct check_test tests[] = {
	{"new_flow_by_kind", test_new_flow_by_kind},
	{"reply_reverse", test_reply_reverse},
	{"lookup", test_lookup},
	{"flow_end", test_flow_end},
	{"syn_on_known_tuple", test_syn_on_known_tuple},
	{"lingering_flow_holds_port", test_lingering_flow_holds_port},
	{"linger_overflow", test_linger_overflow},
	{"linger_stale_items", test_linger_stale_items},
	{"busy_probe_leaves_holder_alone", test_busy_probe_leaves_holder_alone},
	{"fail_verdicts", test_fail_verdicts},
	{"reply_from_wrong_listener", test_reply_from_wrong_listener},
	{"fail_mode", test_fail_mode},
	{"same_client_port_two_destinations", test_same_client_port_two_destinations},
	{"client_port_is_listener_port", test_client_port_is_listener_port},
	{"rewrite_source", test_rewrite_source},
	{"client_table_full", test_client_table_full},
	{"session_by_pid", test_session_by_pid},
	{"pid_set_bounds", test_pid_set_bounds},
	{"proxy_pid", test_proxy_pid},
	{"loopback_and_listener", test_loopback_and_listener},
	{"other_protocols_and_fragments", test_other_protocols_and_fragments},
	{"family_without_listener", test_family_without_listener},
	{"malformed", test_malformed},
	{"table_full", test_table_full},
	{"no_free_port", test_no_free_port},
	{"idle_expiry", test_idle_expiry},
	{"remapped_flow_kept_alive", test_remapped_flow_kept_alive},
	{"remove_pid_frees_room", test_remove_pid_frees_room},
	{"config_checks", test_config_checks},
	{"error_names", test_error_names},
	{"model", test_model},
	{"counters", test_counters},
};

CHECK_MAIN(tests)
