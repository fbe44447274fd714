/* engine.c — the divert engine: sorts captured packets, NATs session flows to the listeners. */
#include "divert/engine.h"
#include "divert/nat_table.h"

#include "base/hash.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* A TCP flow's state bits in nat_entry.flags (engine.h, "Flows"). */
enum {
	FLOW_FIN_CLIENT = 0x01,   /* a FIN passed from the client */
	FLOW_FIN_LISTENER = 0x02, /* a FIN passed from the listener */
	FLOW_ESTABLISHED = 0x04,  /* the client's ACK or the listener's SYN|ACK passed */
	FLOW_CLOSED = 0x08,       /* RST, or FINs both ways: lingering, then removed */
};
#define FLOW_FINS (FLOW_FIN_CLIENT | FLOW_FIN_LISTENER)

/* Protocol indexes of the per-protocol arrays. */
enum { P_TCP = 0, P_UDP = 1, P_COUNT = 2 };

/* Mapped ports are drawn from [PORT_FIRST, 65535], PORT_PROBES tries per new flow. */
#define PORT_FIRST 1024u
#define PORT_PROBES 64

/* The session PID set: open addressing over a power of two of slots holding the pid itself (0 is
 * never a member, so it marks an empty slot); load <= 0.5. */
#define PID_SLOTS (2u * ENGINE_MAX_SESSION_PIDS)
/* TCP flags of a client's opening SYN, as opposed to a SYN|ACK. */
#define SYN_ONLY(flags) (((flags) & (PKT_TCP_SYN | PKT_TCP_ACK)) == PKT_TCP_SYN)
_Static_assert((PID_SLOTS & (PID_SLOTS - 1)) == 0, "PID_SLOTS must be a power of two");
_Static_assert(ENGINE_MAX_CLIENT_ADDRS <= UINT8_MAX, "client slots are uint8_t, 0 = none");

/* A closed TCP flow waiting out its linger: its key and what identifies the flow there, so
 * that engine_tick removes it only if that key still holds it (it may have been evicted,
 * replaced or removed by pid in the meantime). */
struct linger {
	struct nat_key key;
	struct addr orig_dst;
	uint16_t orig_port, client_port;
	uint8_t client_slot;
	uint64_t closed_ms;
};

struct engine {
	struct engine_config cfg; /* defaults applied */

	/* Per protocol: the flows, keyed (proto, C or L, m), and the remap index, keyed (proto,
	 * digest of C, D, d, port c) -> orig_port = m, holding only flows with m != c. */
	struct nat_table *flows[P_COUNT];
	struct nat_table *remaps[P_COUNT];
	uint64_t idle_ms[P_COUNT];

	/* Per family and protocol, the two listener ports a reply may come from. */
	uint16_t reply_port[ENGINE_FAMILIES][P_COUNT][2];
	/* Every configured listener port: never used as a mapped port. */
	uint16_t listener_ports[ENGINE_KINDS * ENGINE_FAMILIES];
	unsigned n_listener_ports;

	/* The lingering TCP flows in the order they closed: a ring of ENGINE_LINGER_MAX items,
	 * linger_len of them from linger_head on. */
	struct linger *linger;
	uint32_t linger_head, linger_len;

	uint32_t *pids; /* PID_SLOTS */
	uint32_t n_pids;
	uint64_t pid_key;

	struct addr clients[ENGINE_MAX_CLIENT_ADDRS]; /* rewrite_source: slot i + 1 is clients[i] */
	unsigned n_clients;

	uint64_t digest_key[2];
	uint64_t rng;
	uint64_t now_ms; /* the largest now_ms seen */

	unsigned consecutive_errors;
	struct engine_stats stats;
};

static const char *const error_names[ENGINE_ERRORS] = {
	[ENGINE_ERR_MALFORMED] = "malformed",
	[ENGINE_ERR_TABLE_FULL] = "table_full",
	[ENGINE_ERR_NO_PORT] = "no_port",
	[ENGINE_ERR_STRAY] = "stray",
	[ENGINE_ERR_UNKNOWN_REPLY] = "unknown_reply",
	[ENGINE_ERR_NO_FAMILY] = "no_family",
	[ENGINE_ERR_BACKEND] = "backend",
};

const char *engine_error_name(enum engine_error what)
{
	if ((unsigned)what >= ENGINE_ERRORS)
		return "unknown";
	return error_names[what];
}

/* ---- small helpers ---- */

/* SplitMix64: turns the one hash_seed into independent keys and seeds. */
static uint64_t splitmix(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

/* xorshift64*: the mapped-port probes. */
static uint64_t rng_next(struct engine *e)
{
	e->rng ^= e->rng >> 12;
	e->rng ^= e->rng << 25;
	e->rng ^= e->rng >> 27;
	return e->rng * 0x2545f4914f6cdd1du;
}

static int proto_index(uint8_t l4_proto)
{
	return l4_proto == PKT_PROTO_TCP ? P_TCP : P_UDP;
}

static enum engine_kind kind_of(int pi, uint16_t orig_port)
{
	if (pi == P_TCP)
		return orig_port == 53 ? ENGINE_DNS_TCP : ENGINE_TCP;
	return orig_port == 53 ? ENGINE_DNS_UDP : ENGINE_UDP;
}

static bool is_loopback(const struct addr *a)
{
	static const uint8_t v6_loopback[16] = {[15] = 1};
	if (a->family == ADDR_V4)
		return a->bytes[0] == 127;
	return a->family == ADDR_V6 && memcmp(a->bytes, v6_loopback, 16) == 0;
}

static bool is_listener_port(const struct engine *e, uint16_t port)
{
	for (unsigned i = 0; i < e->n_listener_ports; i++)
		if (e->listener_ports[i] == port)
			return true;
	return false;
}

/* Whether a:port is one of family f's listeners for pkt's protocol. */
static bool is_listener(const struct engine *e, int f, const struct pkt *pkt, const struct addr *a,
			uint16_t port)
{
	int pi = proto_index(pkt->l4_proto);
	return e->cfg.listen[f].family != ADDR_NONE &&
	       (port == e->reply_port[f][pi][0] || port == e->reply_port[f][pi][1]) &&
	       addr_equal(a, &e->cfg.listen[f]);
}

static void key_set(struct nat_key *k, uint8_t proto, const struct addr *a, uint16_t port)
{
	memset(k, 0, sizeof *k);
	k->addr = *a;
	k->protocol = proto;
	k->port = port;
}

/* The remap index's key of flow (proto, client C:c -> D:d): a 128-bit keyed digest of C, D and d
 * in the address bytes (family ADDR_V6, so that every byte counts) and c as the port. A hit is
 * always verified against the flow it names, so a collision can only cost a new mapping. */
static void remap_key(const struct engine *e, struct nat_key *k, uint8_t proto,
		      const struct addr *client, const struct addr *dst, uint16_t dport,
		      uint16_t cport)
{
	uint64_t w[5], h0 = e->digest_key[0], h1 = e->digest_key[1];
	memcpy(&w[0], client->bytes, 8);
	memcpy(&w[1], client->bytes + 8, 8);
	memcpy(&w[2], dst->bytes, 8);
	memcpy(&w[3], dst->bytes + 8, 8);
	w[4] = (uint64_t)client->family << 40 | (uint64_t)dst->family << 32 |
	       (uint64_t)proto << 16 | dport;
	for (int i = 0; i < 5; i++) {
		h0 = hash_mix64(h0 ^ w[i]);
		h1 = hash_mix64((h1 ^ w[i]) + 0x9e3779b97f4a7c15u);
	}
	memset(k, 0, sizeof *k);
	k->addr.family = ADDR_V6;
	memcpy(k->addr.bytes, &h0, 8);
	memcpy(k->addr.bytes + 8, &h1, 8);
	k->protocol = proto;
	k->port = cport;
}

static uint64_t advance_clock(struct engine *e, uint64_t now_ms)
{
	if (now_ms > e->now_ms)
		e->now_ms = now_ms;
	return e->now_ms;
}

/* ---- verdicts, errors and fail mode ---- */

static enum engine_verdict pass(struct engine *e, uint64_t *why)
{
	(*why)++;
	e->stats.passed++;
	return ENGINE_PASS;
}

static enum engine_verdict drop(struct engine *e, uint64_t *why)
{
	(*why)++;
	e->stats.dropped++;
	return ENGINE_DROP;
}

static void count_error(struct engine *e, enum engine_error what)
{
	e->stats.errors[what]++;
	if (e->consecutive_errors < UINT_MAX)
		e->consecutive_errors++;
	if (!e->stats.in_fail_mode && e->consecutive_errors >= e->cfg.fail_threshold) {
		e->stats.in_fail_mode = true;
		e->stats.fail_mode_entered++;
		if (e->cfg.on_fail_mode)
			e->cfg.on_fail_mode(e->cfg.ctx, true, engine_error_name(what));
	}
}

static enum engine_verdict fail(struct engine *e, enum engine_error what)
{
	count_error(e, what);
	if (e->cfg.fail_open) {
		e->stats.passed++;
		return ENGINE_PASS;
	}
	e->stats.dropped++;
	return ENGINE_DROP;
}

static void note_success(struct engine *e)
{
	e->consecutive_errors = 0;
	if (e->stats.in_fail_mode) {
		e->stats.in_fail_mode = false;
		if (e->cfg.on_fail_mode)
			e->cfg.on_fail_mode(e->cfg.ctx, false, NULL);
	}
}

/* ---- the session PID set ---- */

static uint32_t pid_home(const struct engine *e, uint32_t pid)
{
	uint64_t h = ((uint64_t)pid ^ e->pid_key) * 0x9e3779b97f4a7c15u;
	return (uint32_t)(h >> 32) & (PID_SLOTS - 1);
}

/* The slot holding pid, or the empty slot where it belongs (*found says which). */
static uint32_t pid_find(const struct engine *e, uint32_t pid, bool *found)
{
	uint32_t i = pid_home(e, pid);
	while (e->pids[i] != 0) {
		if (e->pids[i] == pid) {
			*found = true;
			return i;
		}
		i = (i + 1) & (PID_SLOTS - 1);
	}
	*found = false;
	return i;
}

bool engine_is_session_pid(const struct engine *e, uint32_t pid)
{
	bool found;
	if (!e || pid == 0)
		return false;
	pid_find(e, pid, &found);
	return found;
}

int engine_add_pid(struct engine *e, uint32_t pid)
{
	bool found;
	uint32_t i;

	if (!e || pid == 0)
		return -EINVAL;
	i = pid_find(e, pid, &found);
	if (found)
		return 0;
	if (e->n_pids >= ENGINE_MAX_SESSION_PIDS)
		return -ENOSPC;
	e->pids[i] = pid;
	e->n_pids++;
	return 0;
}

/* Backward-shift deletion: no tombstones, so probes stay short however pids come and go. */
static void pid_delete(struct engine *e, uint32_t i)
{
	uint32_t j = i;
	for (;;) {
		uint32_t home;
		j = (j + 1) & (PID_SLOTS - 1);
		if (e->pids[j] == 0)
			break;
		home = pid_home(e, e->pids[j]);
		if (((j - home) & (PID_SLOTS - 1)) >= ((j - i) & (PID_SLOTS - 1))) {
			e->pids[i] = e->pids[j];
			i = j;
		}
	}
	e->pids[i] = 0;
	e->n_pids--;
}

void engine_remove_pid(struct engine *e, uint32_t pid)
{
	bool found;
	uint32_t i;

	if (!e || pid == 0)
		return;
	i = pid_find(e, pid, &found);
	if (found)
		pid_delete(e, i);
	for (int pi = 0; pi < P_COUNT; pi++) {
		nat_remove_by_pid(e->flows[pi], pid);
		nat_remove_by_pid(e->remaps[pi], pid);
	}
}

/* A pid the platform named that is neither the session's nor the proxy's. */
static bool is_foreign_pid(const struct engine *e, uint32_t pid)
{
	return e->cfg.session_by_pid && pid != 0 && pid != e->cfg.proxy_pid &&
	       !engine_is_session_pid(e, pid);
}

/* ---- flows ---- */

/* The client table's slot of address a (rewrite_source), adding it; 0 when the table is full. */
static uint8_t client_slot(struct engine *e, const struct addr *a)
{
	for (unsigned i = 0; i < e->n_clients; i++)
		if (addr_equal(&e->clients[i], a))
			return (uint8_t)(i + 1);
	if (e->n_clients == ENGINE_MAX_CLIENT_ADDRS)
		return 0;
	e->clients[e->n_clients] = *a;
	return (uint8_t)++e->n_clients;
}

/* The client address of a flow whose key address is key_addr; NULL when its slot is invalid. */
static const struct addr *flow_client(const struct engine *e, const struct nat_entry *x,
				      const struct addr *key_addr)
{
	if (!e->cfg.rewrite_source)
		return key_addr;
	if (x->client_slot == 0 || x->client_slot > e->n_clients)
		return NULL;
	return &e->clients[x->client_slot - 1];
}

/* Whether entry x (found under the packet's key address) is the flow of session packet pkt. */
static bool flow_is(const struct engine *e, const struct nat_entry *x, const struct pkt *pkt)
{
	const struct addr *client;
	if (x->client_port != pkt->sport || x->orig_port != pkt->dport ||
	    !addr_equal(&x->orig_dst, &pkt->dst))
		return false;
	client = flow_client(e, x, &pkt->src);
	return client && addr_equal(client, &pkt->src);
}

/* Whether entry x has been idle past its protocol's time (nat_lookup would remove it). */
static bool flow_expired(const struct engine *e, int pi, const struct nat_entry *x)
{
	return x->last_used_ms < e->now_ms && e->now_ms - x->last_used_ms > e->idle_ms[pi];
}

/* Whether key (proto, K, m) can take a new flow: free, or holding an expired one. A closed flow
 * still lingering holds its key: the listener's socket of it may be in TIME_WAIT. */
static bool mapped_port_free(const struct engine *e, int pi, const struct nat_key *k)
{
	const struct nat_entry *x = nat_peek(e->flows[pi], k);
	return !x || flow_expired(e, pi, x);
}

/* A free mapped port other than `avoid` for key address k->addr, or 0. k->port is
 * overwritten. */
static uint16_t pick_port(struct engine *e, int pi, struct nat_key *k, uint16_t avoid)
{
	for (int i = 0; i < PORT_PROBES; i++) {
		uint64_t r = rng_next(e) >> 32;
		uint16_t m = (uint16_t)(PORT_FIRST + ((r * (65536u - PORT_FIRST)) >> 32));
		if (m == avoid || is_listener_port(e, m))
			continue;
		k->port = m;
		if (mapped_port_free(e, pi, k))
			return m;
	}
	return 0;
}

/* The flow of session packet pkt at key k, refreshed; NULL when k holds no live flow or another
 * one, which is left untouched (its idle time and LRU place are its own packets' business).
 * *held says whether k holds a live flow at all, whoever's. */
static struct nat_entry *flow_at(struct engine *e, int pi, const struct nat_key *k,
				 const struct pkt *pkt, bool *held)
{
	const struct nat_entry *x = nat_peek(e->flows[pi], k);
	*held = x && !flow_expired(e, pi, x);
	if (!*held || !flow_is(e, x, pkt))
		return NULL;
	return nat_lookup(e->flows[pi], k, e->now_ms);
}

/* Refreshes the remap entry of a flow with m != c. */
static void remap_touch(struct engine *e, int pi, uint8_t proto, const struct addr *client,
			const struct addr *dst, uint16_t dport, uint16_t cport)
{
	struct nat_key rk;
	remap_key(e, &rk, proto, client, dst, dport, cport);
	nat_lookup(e->remaps[pi], &rk, e->now_ms);
}

/* Removes flow x at key k, and its remap entry when m != c and that entry still names k. */
static void flow_remove(struct engine *e, int pi, const struct nat_key *k,
			const struct nat_entry *x)
{
	if (x->client_port != k->port) {
		const struct addr *client = flow_client(e, x, &k->addr);
		if (client) {
			struct nat_key rk;
			const struct nat_entry *r;
			remap_key(e, &rk, k->protocol, client, &x->orig_dst, x->orig_port,
				  x->client_port);
			r = nat_peek(e->remaps[pi], &rk);
			if (r && r->orig_port == k->port)
				nat_remove(e->remaps[pi], &rk);
		}
	}
	nat_remove(e->flows[pi], k);
}

/* Pops the oldest lingering item and removes its flow if key still holds that closed flow.
 * Returns 1 when a flow was removed, else 0. A later incarnation of the very same flow (same
 * key and tuple, closed again) would be taken for it; that needs the client to reuse the tuple
 * twice within the linger and a random mapped port to come back, and only shortens its linger. */
static size_t linger_pop(struct engine *e)
{
	const struct linger *l = &e->linger[e->linger_head];
	const struct nat_entry *x = nat_peek(e->flows[P_TCP], &l->key);
	size_t removed = 0;

	if (x && (x->flags & FLOW_CLOSED) && x->client_port == l->client_port &&
	    x->orig_port == l->orig_port && x->client_slot == l->client_slot &&
	    addr_equal(&x->orig_dst, &l->orig_dst)) {
		flow_remove(e, P_TCP, &l->key, x);
		removed = 1;
	}
	e->linger_head = (e->linger_head + 1) % ENGINE_LINGER_MAX;
	e->linger_len--;
	return removed;
}

/* Queues flow x at key k, just closed, for removal after its linger. With the queue full, the
 * oldest lingering flow is removed at once (which may be x itself, see linger_pop: x is not
 * used after this). */
static void linger_push(struct engine *e, const struct nat_key *k, const struct nat_entry *x)
{
	struct linger l = {
		.key = *k,
		.orig_dst = x->orig_dst,
		.orig_port = x->orig_port,
		.client_port = x->client_port,
		.client_slot = x->client_slot,
		.closed_ms = e->now_ms,
	};
	if (e->linger_len == ENGINE_LINGER_MAX)
		e->stats.linger_overflow += linger_pop(e);
	e->linger[(e->linger_head + e->linger_len) % ENGINE_LINGER_MAX] = l;
	e->linger_len++;
}

/* What a packet of TCP flow x does to its state; true when the flow closes with this packet
 * (once: a closed flow stays closed). */
static bool tcp_advance(struct nat_entry *x, uint8_t tcp_flags, bool from_listener)
{
	if (x->flags & FLOW_CLOSED)
		return false;
	if (tcp_flags & PKT_TCP_RST) {
		x->flags |= FLOW_CLOSED;
		return true;
	}
	if (from_listener ? (tcp_flags & (PKT_TCP_SYN | PKT_TCP_ACK)) == (PKT_TCP_SYN | PKT_TCP_ACK)
			  : (tcp_flags & PKT_TCP_ACK) != 0)
		x->flags |= FLOW_ESTABLISHED;
	if (tcp_flags & PKT_TCP_FIN) {
		x->flags |= from_listener ? FLOW_FIN_LISTENER : FLOW_FIN_CLIENT;
		if ((x->flags & FLOW_FINS) == FLOW_FINS) {
			x->flags |= FLOW_CLOSED;
			return true;
		}
	}
	return false;
}

/* Session packet C:c -> D:d of family f: found or new flow, rewritten to (C or L):m -> L:P. */
static enum engine_verdict divert(struct engine *e, uint8_t *buf, struct pkt *pkt, uint32_t pid,
				  int f)
{
	const int pi = proto_index(pkt->l4_proto);
	const uint8_t proto = pkt->l4_proto;
	const struct addr *listen = &e->cfg.listen[f];
	const struct addr *src = e->cfg.rewrite_source ? listen : &pkt->src;
	const uint16_t c = pkt->sport;
	const bool syn_only = pi == P_TCP && SYN_ONLY(pkt->tcp_flags);
	struct nat_key key, rkey;
	struct nat_entry *x, *r;
	uint8_t slot = 0;
	bool busy, held, end = false;
	int rc;

	key_set(&key, proto, src, c);
	x = flow_at(e, pi, &key, pkt, &busy);
	if (!x) {
		remap_key(e, &rkey, proto, &pkt->src, &pkt->dst, pkt->dport, c);
		r = nat_lookup(e->remaps[pi], &rkey, e->now_ms);
		if (r) {
			key.port = r->orig_port;
			x = flow_at(e, pi, &key, pkt, &held);
			if (!x) {
				key.port = c;
				/* Its flow was evicted or replaced: drop it rather than keep it. */
				nat_remove(e->remaps[pi], &rkey);
			}
		}
	}
	/* A SYN on the tuple of a flow in its handshake is a retransmit; on an established or
	 * closed one, a new connection reusing the tuple: it gets a new flow and a fresh mapped
	 * port, never c nor the old one, whose listener socket may be in TIME_WAIT. */
	if (x && !(syn_only && (x->flags & (FLOW_ESTABLISHED | FLOW_CLOSED))))
		goto found;
	if (pi == P_TCP && !syn_only)
		return fail(e, ENGINE_ERR_STRAY);
	if (e->cfg.rewrite_source) {
		slot = client_slot(e, &pkt->src);
		if (slot == 0)
			return fail(e, ENGINE_ERR_TABLE_FULL);
	}
	remap_key(e, &rkey, proto, &pkt->src, &pkt->dst, pkt->dport, c);
	if (x) {
		struct nat_key old = key;
		if (pick_port(e, pi, &key, c) == 0)
			return fail(e, ENGINE_ERR_NO_PORT);
		flow_remove(e, pi, &old, x);
		e->stats.flows_reused++;
	} else if (busy || c == 0 || is_listener_port(e, c)) {
		if (pick_port(e, pi, &key, 0) == 0)
			return fail(e, ENGINE_ERR_NO_PORT);
	}
	rc = nat_insert(e->flows[pi], &key, &pkt->dst, pkt->dport, pid, e->now_ms, NULL);
	if (rc < 0)
		return fail(e, ENGINE_ERR_TABLE_FULL);
	if (rc == 1)
		e->stats.flows_evicted++;
	if (key.port != c) {
		/* Not expected to fail: a remap entry lives no longer than its flow, and both
		 * tables have the same capacity. */
		if (nat_insert(e->remaps[pi], &rkey, &pkt->dst, key.port, pid, e->now_ms, NULL) <
		    0) {
			nat_remove(e->flows[pi], &key);
			return fail(e, ENGINE_ERR_TABLE_FULL);
		}
		e->stats.flows_remapped++;
	}
	e->stats.flows_created++;
	x = nat_lookup(e->flows[pi], &key, e->now_ms);
	if (!x)
		return fail(e, ENGINE_ERR_TABLE_FULL); /* cannot happen: just inserted */
	x->client_port = c;
	x->client_slot = slot;

found:
	if (pi == P_TCP)
		end = tcp_advance(x, pkt->tcp_flags, false);
	{
		const uint16_t lport = e->cfg.port[kind_of(pi, pkt->dport)][f];
		if (pkt_rewrite(buf, pkt, src, key.port, listen, lport) != 0)
			return fail(e, ENGINE_ERR_MALFORMED); /* cannot happen: a PKT_OK view */
	}
	if (end) {
		linger_push(e, &key, x);
		e->stats.flows_ended++;
	}
	e->stats.diverted++;
	note_success(e);
	return ENGINE_REWRITE;
}

/* Listener reply L:P -> (C or L):m of family f, rewritten to D:d -> C:c. */
static enum engine_verdict reply(struct engine *e, uint8_t *buf, struct pkt *pkt, int f)
{
	const int pi = proto_index(pkt->l4_proto);
	const uint8_t proto = pkt->l4_proto;
	struct nat_key key;
	struct nat_entry *x;
	const struct addr *client_at;
	struct addr client, dst;
	uint16_t dport, c;
	bool end = false;

	key_set(&key, proto, &pkt->dst, pkt->dport);
	x = nat_lookup(e->flows[pi], &key, e->now_ms);
	if (!x || pkt->sport != e->cfg.port[kind_of(pi, x->orig_port)][f])
		return fail(e, ENGINE_ERR_UNKNOWN_REPLY);
	client_at = flow_client(e, x, &pkt->dst);
	if (!client_at || client_at->family != pkt->ip_version)
		return fail(e, ENGINE_ERR_UNKNOWN_REPLY);
	client = *client_at;
	dst = x->orig_dst;
	dport = x->orig_port;
	c = x->client_port;
	if (pi == P_TCP)
		end = tcp_advance(x, pkt->tcp_flags, true);
	if (pkt_rewrite(buf, pkt, &dst, dport, &client, c) != 0)
		return fail(e, ENGINE_ERR_MALFORMED); /* cannot happen: a PKT_OK view */
	if (key.port != c)
		remap_touch(e, pi, proto, &client, &dst, dport, c);
	if (end) {
		linger_push(e, &key, x);
		e->stats.flows_ended++;
	}
	e->stats.replies++;
	note_success(e);
	return ENGINE_REWRITE;
}

enum engine_verdict engine_process(struct engine *e, struct engine_packet *p, uint64_t now_ms)
{
	struct pkt pkt;
	int rc, f;

	if (!e)
		return ENGINE_DROP;
	e->stats.packets++;
	advance_clock(e, now_ms);
	if (!p || !p->buf) {
		e->stats.malformed[-PKT_ERR_TRUNCATED]++;
		return fail(e, ENGINE_ERR_MALFORMED);
	}
	rc = pkt_parse(p->buf, p->len, &pkt);
	if (!pkt_result_has_ip(rc)) {
		if (is_foreign_pid(e, p->pid))
			return pass(e, &e->stats.not_session);
		e->stats.malformed[-rc]++;
		return fail(e, ENGINE_ERR_MALFORMED);
	}
	f = pkt.ip_version == 6 ? ENGINE_IPV6 : ENGINE_IPV4;
	if (rc == PKT_OK && is_listener(e, f, &pkt, &pkt.src, pkt.sport))
		return reply(e, p->buf, &pkt, f);
	if (e->cfg.proxy_pid != 0 && p->pid == e->cfg.proxy_pid)
		return pass(e, &e->stats.not_session);
	if (e->cfg.session_by_pid && !engine_is_session_pid(e, p->pid))
		return pass(e, &e->stats.not_session);

	if (pkt.has_l4 && is_listener(e, f, &pkt, &pkt.dst, pkt.dport))
		return drop(e, &e->stats.to_listener);
	if (is_loopback(&pkt.dst) && !(pkt.has_l4 && pkt.dport == 53))
		return pass(e, &e->stats.loopback);
	if (e->cfg.listen[f].family == ADDR_NONE)
		return fail(e, ENGINE_ERR_NO_FAMILY);
	if (rc == PKT_ERR_FRAGMENT)
		return drop(e, &e->stats.fragments);
	if (rc == PKT_ERR_UNSUPPORTED)
		return drop(e, &e->stats.other_proto);
	return divert(e, p->buf, &pkt, p->pid, f);
}

int engine_lookup(struct engine *e, int proto, const struct addr *peer, uint16_t port,
		  uint64_t now_ms, struct engine_flow *out)
{
	struct nat_key key;
	const struct nat_entry *peek, *x;
	const struct addr *client;
	int pi;

	if (!e || !peer || !out || (proto != NAT_PROTO_TCP && proto != NAT_PROTO_UDP) ||
	    (peer->family != ADDR_V4 && peer->family != ADDR_V6))
		return -EINVAL;
	pi = proto == NAT_PROTO_TCP ? P_TCP : P_UDP;
	advance_clock(e, now_ms);
	key_set(&key, (uint8_t)proto, peer, port);
	addr_from_bytes(&key.addr, (enum addr_family)peer->family, peer->bytes);
	peek = nat_peek(e->flows[pi], &key);
	if (!peek || (peek->flags & FLOW_CLOSED) || flow_expired(e, pi, peek))
		return -ENOENT;
	x = nat_lookup(e->flows[pi], &key, e->now_ms);
	if (!x)
		return -ENOENT; /* cannot happen: just peeked, live */
	client = flow_client(e, x, &key.addr);
	if (!client)
		return -ENOENT;
	memset(out, 0, sizeof *out);
	out->client = *client;
	out->client_port = x->client_port;
	out->mapped_port = port;
	out->orig_dst = x->orig_dst;
	out->orig_port = x->orig_port;
	out->pid = x->pid;
	if (port != out->client_port)
		remap_touch(e, pi, (uint8_t)proto, &out->client, &out->orig_dst, out->orig_port,
			    out->client_port);
	return 0;
}

void engine_note_error(struct engine *e, enum engine_error what)
{
	if (!e)
		return;
	if ((unsigned)what >= ENGINE_ERRORS)
		what = ENGINE_ERR_BACKEND;
	count_error(e, what);
}

size_t engine_tick(struct engine *e, uint64_t now_ms)
{
	size_t ended = 0, expired = 0;
	if (!e)
		return 0;
	advance_clock(e, now_ms);
	while (e->linger_len > 0 &&
	       e->now_ms - e->linger[e->linger_head].closed_ms > ENGINE_TCP_LINGER_MS)
		ended += linger_pop(e);
	for (int pi = 0; pi < P_COUNT; pi++) {
		expired += nat_sweep(e->flows[pi], e->now_ms);
		nat_sweep(e->remaps[pi], e->now_ms);
	}
	e->stats.flows_expired += expired;
	return ended + expired;
}

void engine_get_stats(const struct engine *e, struct engine_stats *out)
{
	if (!out)
		return;
	if (!e) {
		memset(out, 0, sizeof *out);
		return;
	}
	*out = e->stats;
	out->tcp_flows = (uint32_t)nat_count(e->flows[P_TCP]);
	out->udp_flows = (uint32_t)nat_count(e->flows[P_UDP]);
}

size_t engine_counters(const struct engine_stats *s, struct engine_counter *out, size_t max)
{
	if (!s || !out)
		return 0;
	const struct engine_counter all[] = {
		{"divert_packets", s->packets},
		{"divert_diverted", s->diverted},
		{"divert_replies", s->replies},
		{"divert_passed", s->passed},
		{"divert_dropped", s->dropped},
		{"divert_not_session", s->not_session},
		{"divert_loopback", s->loopback},
		{"divert_to_listener", s->to_listener},
		{"divert_other_proto", s->other_proto},
		{"divert_fragments", s->fragments},
		{"divert_flows_created", s->flows_created},
		{"divert_flows_remapped", s->flows_remapped},
		{"divert_flows_ended", s->flows_ended},
		{"divert_flows_expired", s->flows_expired},
		{"divert_flows_evicted", s->flows_evicted},
		{"divert_flows_reused", s->flows_reused},
		{"divert_linger_overflow", s->linger_overflow},
		{"divert_err_malformed", s->errors[ENGINE_ERR_MALFORMED]},
		{"divert_err_table_full", s->errors[ENGINE_ERR_TABLE_FULL]},
		{"divert_err_no_port", s->errors[ENGINE_ERR_NO_PORT]},
		{"divert_err_stray", s->errors[ENGINE_ERR_STRAY]},
		{"divert_err_unknown_reply", s->errors[ENGINE_ERR_UNKNOWN_REPLY]},
		{"divert_err_no_family", s->errors[ENGINE_ERR_NO_FAMILY]},
		{"divert_err_backend", s->errors[ENGINE_ERR_BACKEND]},
		{"divert_fail_mode_entered", s->fail_mode_entered},
	};
	size_t n = sizeof all / sizeof all[0];

	if (n > max)
		n = max;
	memcpy(out, all, n * sizeof *out);
	return n;
}

/* ---- creation ---- */

/* Applies the defaults to *c and checks it; 0 or -EINVAL. */
static int config_apply(struct engine_config *c)
{
	static const uint8_t family_of[ENGINE_FAMILIES] = {ADDR_V4, ADDR_V6};
	bool any = false;

	for (int f = 0; f < ENGINE_FAMILIES; f++) {
		const struct addr *l = &c->listen[f];
		if (l->family == ADDR_NONE)
			continue;
		if (l->family != family_of[f] || !is_loopback(l))
			return -EINVAL;
		for (int k = 0; k < ENGINE_KINDS; k++)
			if (c->port[k][f] == 0)
				return -EINVAL;
		any = true;
	}
	if (!any)
		return -EINVAL;
	if (c->fail_threshold == 0)
		c->fail_threshold = ENGINE_DEFAULT_FAIL_THRESHOLD;
	if (c->tcp_capacity == 0)
		c->tcp_capacity = ENGINE_DEFAULT_TCP_CAPACITY;
	if (c->udp_capacity == 0)
		c->udp_capacity = ENGINE_DEFAULT_UDP_CAPACITY;
	if (c->tcp_capacity > NAT_CAPACITY_MAX || c->udp_capacity > NAT_CAPACITY_MAX)
		return -EINVAL;
	if (c->tcp_idle_ms == 0)
		c->tcp_idle_ms = ENGINE_DEFAULT_TCP_IDLE_MS;
	if (c->udp_idle_ms == 0)
		c->udp_idle_ms = ENGINE_DEFAULT_UDP_IDLE_MS;
	if (c->min_evict_idle_ms == 0) {
		c->min_evict_idle_ms = ENGINE_DEFAULT_MIN_EVICT_IDLE_MS;
		if (c->min_evict_idle_ms > c->tcp_idle_ms)
			c->min_evict_idle_ms = c->tcp_idle_ms;
		if (c->min_evict_idle_ms > c->udp_idle_ms)
			c->min_evict_idle_ms = c->udp_idle_ms;
	}
	if (c->min_evict_idle_ms > c->tcp_idle_ms || c->min_evict_idle_ms > c->udp_idle_ms)
		return -EINVAL;
	return 0;
}

static void collect_ports(struct engine *e)
{
	static const int kinds[P_COUNT][2] = {
		[P_TCP] = {ENGINE_TCP, ENGINE_DNS_TCP},
		[P_UDP] = {ENGINE_UDP, ENGINE_DNS_UDP},
	};
	for (int f = 0; f < ENGINE_FAMILIES; f++) {
		if (e->cfg.listen[f].family == ADDR_NONE)
			continue;
		for (int pi = 0; pi < P_COUNT; pi++)
			for (int i = 0; i < 2; i++)
				e->reply_port[f][pi][i] = e->cfg.port[kinds[pi][i]][f];
		for (int k = 0; k < ENGINE_KINDS; k++) {
			uint16_t port = e->cfg.port[k][f];
			if (!is_listener_port(e, port))
				e->listener_ports[e->n_listener_ports++] = port;
		}
	}
}

int engine_new(struct engine **out, const struct engine_config *cfg)
{
	struct engine *e;
	uint64_t seed;
	int rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!cfg)
		return -EINVAL;
	e = calloc(1, sizeof *e);
	if (!e)
		return -ENOMEM;
	e->cfg = *cfg;
	rc = config_apply(&e->cfg);
	if (rc < 0)
		goto fail;
	collect_ports(e);

	seed = e->cfg.hash_seed;
	e->idle_ms[P_TCP] = e->cfg.tcp_idle_ms;
	e->idle_ms[P_UDP] = e->cfg.udp_idle_ms;
	for (int pi = 0; pi < P_COUNT; pi++) {
		struct nat_config nc = {
			.capacity = pi == P_TCP ? e->cfg.tcp_capacity : e->cfg.udp_capacity,
			.ttl_ms = e->idle_ms[pi],
			.min_evict_idle_ms = e->cfg.min_evict_idle_ms,
		};
		nc.hash_seed = splitmix(&seed);
		rc = nat_new(&e->flows[pi], &nc);
		if (rc < 0)
			goto fail;
		nc.hash_seed = splitmix(&seed);
		rc = nat_new(&e->remaps[pi], &nc);
		if (rc < 0)
			goto fail;
	}
	e->digest_key[0] = splitmix(&seed);
	e->digest_key[1] = splitmix(&seed);
	e->pid_key = splitmix(&seed);
	e->rng = splitmix(&seed) | 1;

	rc = -ENOMEM;
	e->pids = calloc(PID_SLOTS, sizeof *e->pids);
	e->linger = calloc(ENGINE_LINGER_MAX, sizeof *e->linger);
	if (!e->pids || !e->linger)
		goto fail;
	*out = e;
	return 0;
fail:
	engine_free(e);
	return rc;
}

void engine_free(struct engine *e)
{
	if (!e)
		return;
	for (int pi = 0; pi < P_COUNT; pi++) {
		nat_free(e->flows[pi]);
		nat_free(e->remaps[pi]);
	}
	free(e->pids);
	free(e->linger);
	free(e);
}
