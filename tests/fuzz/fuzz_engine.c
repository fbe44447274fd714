/* fuzz_engine.c — the divert engine: verdicts stay in range, rewrites stay valid, stats add up.
 *
 * Also checked: a RST that passes closes its flow (engine_lookup stops reporting it) while a
 * plain SYN that passes leaves a live one; mapped ports are the client's or >= 1024 and never a
 * listener port; a flow ends at most once. The time steps reach both the idle times and the
 * TCP linger (ENGINE_TCP_LINGER_MS), so lingering flows run out under engine_tick too.
 *
 * Input: one config byte, then records [ctl][len_hi][len_lo][len bytes of packet]. The config
 * byte chooses fail_open, rewrite_source, session_by_pid and a proxy pid; each ctl byte chooses
 * the packet's pid, whether its checksums are completed first, whether the record's bytes are
 * ignored for the listener's reply to the last packet the engine diverted, and ticks, pid churn
 * and time.
 * A fresh engine per input, so every crash reproduces from its input alone.
 */
#include "divert/engine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PACKET 2048
#define SESSION_PID 100
#define PROXY_PID 900
#define FOREIGN_PID 555

enum {
	CFG_FAIL_OPEN = 0x01,
	CFG_REWRITE_SOURCE = 0x02,
	CFG_BY_PID = 0x04,
	CFG_PROXY = 0x08,
};

enum {
	CTL_PID_MASK = 0x03,  /* 0, the session's, the proxy's, a foreign one */
	CTL_FIX_CSUM = 0x04,  /* complete the checksums of a PKT_OK packet first */
	CTL_REFLECT = 0x08,   /* instead: the reply to the last diverted packet */
	CTL_TICK = 0x10,      /* engine_tick afterwards */
	CTL_ADD_PID = 0x20,   /* engine_add_pid(SESSION_PID) first */
	CTL_DROP_PID = 0x40,  /* engine_remove_pid(SESSION_PID) afterwards */
	CTL_LEAP = 0x80,      /* time jumps by more than every idle time */
};

static const uint16_t ports[ENGINE_KINDS][ENGINE_FAMILIES] = {
	[ENGINE_TCP] = {9080, 9180},
	[ENGINE_DNS_TCP] = {9053, 9153},
	[ENGINE_DNS_UDP] = {5353, 5453},
	[ENGINE_UDP] = {9081, 9181},
};

static void make_config(struct engine_config *c, uint8_t bits)
{
	memset(c, 0, sizeof *c);
	c->listen[ENGINE_IPV4].family = ADDR_V4;
	c->listen[ENGINE_IPV4].bytes[0] = 127;
	c->listen[ENGINE_IPV4].bytes[3] = 1;
	c->listen[ENGINE_IPV6].family = ADDR_V6;
	c->listen[ENGINE_IPV6].bytes[15] = 1;
	memcpy(c->port, ports, sizeof ports);
	c->fail_open = bits & CFG_FAIL_OPEN;
	c->rewrite_source = bits & CFG_REWRITE_SOURCE;
	c->session_by_pid = bits & CFG_BY_PID;
	c->proxy_pid = (bits & CFG_PROXY) ? PROXY_PID : 0;
	c->fail_threshold = 3;
	c->tcp_capacity = 16;
	c->udp_capacity = 16;
	c->tcp_idle_ms = 70000; /* just above the linger: closed flows mostly go by it */
	c->udp_idle_ms = 2000;
	c->min_evict_idle_ms = 500;
	c->hash_seed = 42;
}

static bool listener_port(int f, uint8_t proto, uint16_t port)
{
	if (proto == PKT_PROTO_TCP)
		return port == ports[ENGINE_TCP][f] || port == ports[ENGINE_DNS_TCP][f];
	return port == ports[ENGINE_UDP][f] || port == ports[ENGINE_DNS_UDP][f];
}

/* Whether port is one of the listeners', whatever its kind and family: never a mapped port. */
static bool any_listener_port(uint16_t port)
{
	for (int k = 0; k < ENGINE_KINDS; k++)
		for (int f = 0; f < ENGINE_FAMILIES; f++)
			if (ports[k][f] == port)
				return true;
	return false;
}

/* Zeroes what a NAT rewrite may change (addresses, ports, checksums), so that the rest of two
 * versions of one packet compares equal. */
static void blank_nat_fields(uint8_t *b, const struct pkt *p)
{
	if (p->ip_version == 4) {
		memset(b + 10, 0, 2);
		memset(b + 12, 0, 8);
	} else {
		memset(b + 8, 0, 32);
	}
	memset(b + p->l4_off, 0, 4);
	memset(b + p->l4_off + (p->l4_proto == PKT_PROTO_TCP ? 16 : 6), 0, 2);
}

static void check_stats(const struct engine *e)
{
	struct engine_stats s;
	engine_get_stats(e, &s);
	if (s.packets != s.passed + s.dropped + s.diverted + s.replies)
		abort();
	if (s.tcp_flows > 16 || s.udp_flows > 16)
		abort();
	if (s.flows_ended > s.flows_created || s.flows_reused > s.flows_created ||
	    s.linger_overflow > s.flows_ended)
		abort();
}

/* After a rewritten TCP packet of the flow whose listener-side peer is peer:port: a RST has
 * closed it, a plain SYN (no RST, no FIN) has left it live. */
static void check_tcp_state(struct engine *e, uint8_t flags, const struct addr *peer,
			    uint16_t port, uint64_t now)
{
	struct engine_flow fl;
	int rc = engine_lookup(e, PKT_PROTO_TCP, peer, port, now, &fl);
	if ((flags & PKT_TCP_RST) && rc != -ENOENT)
		abort();
	if ((flags & (PKT_TCP_SYN | PKT_TCP_ACK | PKT_TCP_RST | PKT_TCP_FIN)) == PKT_TCP_SYN &&
	    rc != 0)
		abort();
}

/* The last packet the engine diverted: enough to build the listener's reply to it. */
struct last {
	bool valid;
	uint8_t buf[MAX_PACKET];
	size_t len;
	struct pkt before; /* its view as the application sent it */
};

/* Builds into buf the reply L:P -> K:m to the diverted packet in last (its addresses and ports
 * swapped, checksums completed). Returns the length, 0 when there is none. */
static size_t make_reply(uint8_t *buf, const struct last *last)
{
	struct pkt p;
	if (!last->valid)
		return 0;
	memcpy(buf, last->buf, last->len);
	if (pkt_parse(buf, last->len, &p) != PKT_OK)
		abort();
	struct addr s = p.src, d = p.dst;
	uint16_t sp = p.sport, dp = p.dport;
	if (pkt_rewrite(buf, &p, &d, dp, &s, sp) != 0)
		abort();
	pkt_checksum_fill(buf, &p, true);
	return last->len;
}

static void run_one(struct engine *e, const struct engine_config *cfg, uint8_t *buf, size_t len,
		    uint32_t pid, uint64_t now, bool reflect, struct last *last)
{
	static uint8_t before[MAX_PACKET], a[MAX_PACKET], b[MAX_PACKET];
	struct engine_packet p = {.buf = buf, .len = len, .pid = pid};
	struct pkt in, out;
	int rc_in = pkt_parse(buf, len, &in);
	bool csum_in = rc_in == PKT_OK && pkt_checksum_ok(buf, &in);
	int f = in.ip_version == 6 ? ENGINE_IPV6 : ENGINE_IPV4;
	bool is_reply = rc_in == PKT_OK && addr_equal(&in.src, &cfg->listen[f]) &&
			listener_port(f, in.l4_proto, in.sport);
	struct engine_flow fl;
	int known = -1;

	if (reflect)
		known = engine_lookup(e, in.l4_proto, &in.dst, in.dport, now, &fl);
	memcpy(before, buf, len);
	enum engine_verdict v = engine_process(e, &p, now);
	if (p.len != len || p.buf != buf)
		abort();
	check_stats(e);
	if (v == ENGINE_PASS || v == ENGINE_DROP) {
		if (memcmp(before, buf, len) != 0)
			abort();
		if (reflect && known == 0)
			abort(); /* a reply to a live flow is always rewritten */
		return;
	}
	if (v != ENGINE_REWRITE || rc_in != PKT_OK)
		abort();
	if (pkt_parse(buf, len, &out) != PKT_OK)
		abort();
	if (csum_in && !pkt_checksum_ok(buf, &out))
		abort();
	if (out.ip_len != in.ip_len || out.l4_proto != in.l4_proto)
		abort();
	memcpy(a, before, len);
	memcpy(b, buf, len);
	blank_nat_fields(a, &in);
	blank_nat_fields(b, &out);
	if (memcmp(a, b, len) != 0)
		abort();

	if (is_reply) {
		/* D:d -> C:c: the flow's destination and client. */
		if (known == 0 &&
		    (!addr_equal(&out.src, &fl.orig_dst) || out.sport != fl.orig_port ||
		     !addr_equal(&out.dst, &fl.client) || out.dport != fl.client_port))
			abort();
		if (reflect && (!addr_equal(&out.src, &last->before.dst) ||
				out.sport != last->before.dport ||
				!addr_equal(&out.dst, &last->before.src) ||
				out.dport != last->before.sport))
			abort();
		if (in.l4_proto == PKT_PROTO_TCP && (in.tcp_flags & PKT_TCP_RST))
			check_tcp_state(e, in.tcp_flags, &in.dst, in.dport, now);
		return;
	}
	/* C:m -> L:P (or L:m -> L:P): the listener sees a flow that leads back to the input. */
	if (!addr_equal(&out.dst, &cfg->listen[f]) || !listener_port(f, out.l4_proto, out.dport))
		abort();
	if (!cfg->rewrite_source && !addr_equal(&out.src, &in.src))
		abort();
	if (cfg->rewrite_source && !addr_equal(&out.src, &cfg->listen[f]))
		abort();
	if (out.sport != in.sport && (out.sport < 1024 || any_listener_port(out.sport)))
		abort();
	if (engine_lookup(e, out.l4_proto, &out.src, out.sport, now, &fl) == 0) {
		if (!addr_equal(&fl.client, &in.src) || fl.client_port != in.sport ||
		    !addr_equal(&fl.orig_dst, &in.dst) || fl.orig_port != in.dport)
			abort();
	} else if (out.l4_proto == PKT_PROTO_UDP) {
		abort(); /* only TCP flows end on a packet */
	}
	if (out.l4_proto == PKT_PROTO_TCP)
		check_tcp_state(e, in.tcp_flags, &out.src, out.sport, now);
	last->valid = true;
	memcpy(last->buf, buf, len);
	last->len = len;
	last->before = in;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[MAX_PACKET];
	static struct last last;
	struct engine_config cfg;
	struct engine *e;
	uint64_t now = 1;

	if (size < 1)
		return 0;
	make_config(&cfg, data[0]);
	if (engine_new(&e, &cfg) != 0)
		abort();
	last.valid = false;
	data++;
	size--;
	while (size >= 3) {
		uint8_t ctl = data[0];
		size_t len = (size_t)data[1] << 8 | data[2];
		static const uint32_t pids[4] = {0, SESSION_PID, PROXY_PID, FOREIGN_PID};
		data += 3;
		size -= 3;
		if (len > size)
			len = size;
		if (len > MAX_PACKET)
			len = MAX_PACKET;
		now += (ctl & CTL_LEAP) ? 10000 : (ctl & 7);
		if (ctl & CTL_ADD_PID)
			engine_add_pid(e, SESSION_PID);
		if (ctl & CTL_REFLECT) {
			size_t n = make_reply(buf, &last);
			if (n)
				run_one(e, &cfg, buf, n, PROXY_PID, now, true, &last);
		} else {
			struct pkt view;
			memcpy(buf, data, len);
			if ((ctl & CTL_FIX_CSUM) && pkt_parse(buf, len, &view) == PKT_OK)
				pkt_checksum_fill(buf, &view, true);
			run_one(e, &cfg, buf, len, pids[ctl & CTL_PID_MASK], now, false, &last);
		}
		data += len;
		size -= len;
		if (ctl & CTL_TICK)
			engine_tick(e, now);
		if (ctl & CTL_DROP_PID)
			engine_remove_pid(e, SESSION_PID);
		if ((ctl & 0x0f) == 0x0f)
			engine_note_error(e, ENGINE_ERR_BACKEND);
	}
	engine_free(e);
	return 0;
}
