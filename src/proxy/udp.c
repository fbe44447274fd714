/* udp.c — per-flow decisions and relaying for UDP other than DNS. */
#include "proxy/udp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "base/log.h"
#include "base/net.h"
#include "capture/capture.h"
#include "policy/dns_map.h"
#include "policy/policy.h"

#define BUCKETS 1024 /* power of two */
#define BURST 32
#define EXE_MAX 512

struct flow {
	struct udp_relay *relay;
	struct flow *next;     /* in its bucket */
	struct capture_endpoint client, dst;
	bool allowed;
	loop_sock sock;        /* allowed flows: connected to dst */
	struct loop_io io;
	struct loop_timer idle;
};

struct udp_listener {
	struct udp_relay *relay;
	struct loop_io io;
};

struct udp_relay {
	struct udp_relay_config cfg;
	struct udp_listener listeners[CAPTURE_FAMILIES];
	struct flow *buckets[BUCKETS];
	size_t n_flows;
	struct udp_relay_stats stats;
	uint8_t buf[65536];
};

static size_t endpoint_hash(const struct capture_endpoint *a, const struct capture_endpoint *b)
{
	uint64_t h = 1469598103934665603ull;
	const struct capture_endpoint *ends[2] = {a, b};
	for (int e = 0; e < 2; e++) {
		for (size_t i = 0; i < sizeof ends[e]->addr.bytes; i++)
			h = (h ^ ends[e]->addr.bytes[i]) * 1099511628211ull;
		h = (h ^ ends[e]->port) * 1099511628211ull;
	}
	return (size_t)(h ^ (h >> 29)) & (BUCKETS - 1);
}

static bool endpoint_equal(const struct capture_endpoint *a, const struct capture_endpoint *b)
{
	return a->port == b->port && addr_equal(&a->addr, &b->addr);
}

static void flow_free(struct flow *f)
{
	struct udp_relay *u = f->relay;
	struct flow **link = &u->buckets[endpoint_hash(&f->client, &f->dst)];
	while (*link != f)
		link = &(*link)->next;
	*link = f->next;
	loop_io_stop(u->cfg.loop, &f->io);
	loop_timer_stop(u->cfg.loop, &f->idle);
	net_close(f->sock);
	u->n_flows--;
	free(f);
}

static void on_idle(struct loop *loop, struct loop_timer *timer)
{
	(void)loop;
	flow_free(timer->arg);
}

static void touch(struct flow *f)
{
	struct udp_relay *u = f->relay;
	loop_timer_start(u->cfg.loop, &f->idle, u->cfg.idle_ms ? u->cfg.idle_ms : UDP_IDLE_MS);
}

/* Replies from the destination go back to the application, from the destination's address. */
static void on_reply(struct loop *loop, struct loop_io *io, unsigned events)
{
	(void)loop;
	(void)events;
	struct flow *f = io->arg;
	struct udp_relay *u = f->relay;
	for (int i = 0; i < BURST; i++) {
		long n = net_recv(f->sock, u->buf, sizeof u->buf);
		if (n == -EAGAIN)
			return;
		if (n < 0) {
			u->stats.errors++; /* e.g. ECONNREFUSED: the application sees silence */
			return;
		}
		if (u->cfg.capture->ops->udp_send(u->cfg.capture, &f->dst, &f->client, u->buf,
						  (size_t)n) == 0)
			u->stats.datagrams_in++;
		else
			u->stats.datagrams_dropped++;
		touch(f);
	}
}

/* The first datagram of a flow: decide, record, and set the flow up. */
static struct flow *flow_new(struct udp_relay *u, const struct capture_endpoint *client,
			     const struct capture_endpoint *dst)
{
	if (u->n_flows >= UDP_MAX_FLOWS) {
		u->stats.shed++;
		return NULL;
	}
	struct flow *f = calloc(1, sizeof *f);
	if (!f) {
		u->stats.shed++;
		return NULL;
	}
	f->relay = u;
	f->client = *client;
	f->dst = *dst;
	f->sock = NET_INVALID;
	size_t b = endpoint_hash(client, dst);
	f->next = u->buckets[b];
	u->buckets[b] = f;
	u->n_flows++;
	loop_io_init(&f->io, NET_INVALID, on_reply, f);
	loop_timer_init(&f->idle, on_idle, f);

	const char *const *names = NULL;
	size_t n_names = 0;
	if (u->cfg.map)
		n_names = dns_map_lookup(u->cfg.map, &dst->addr, loop_now(u->cfg.loop), &names);
	struct policy_conn q = {
		.proto = POLICY_UDP, .dst = dst->addr, .port = dst->port,
		.names = names, .n_names = n_names,
	};
	struct policy_verdict v = policy_decide_connect_guarded(u->cfg.policy, &q);
	char rule[POLICY_RULE_LABEL_MAX], exe[EXE_MAX] = "";
	policy_verdict_label(&v, rule, sizeof rule);
	f->allowed = v.action == POLICY_ALLOW;

	struct audit_udp ev = {
		.meta.time_ms = u->cfg.wall_ms ? u->cfg.wall_ms(u->cfg.ctx) : 0,
		.dst = dst->addr,
		.dport = dst->port,
		.decision = f->allowed ? AUDIT_ALLOW : AUDIT_DENY,
		.rule = rule,
	};
	if (u->cfg.peer_process) {
		int64_t pid = u->cfg.peer_process(u->cfg.ctx, 17, &client->addr, client->port,
						  &dst->addr, dst->port, exe, sizeof exe);
		ev.meta.pid = pid > 0 ? pid : 0;
		ev.meta.exe = pid > 0 && exe[0] ? exe : NULL;
	}
	if (u->cfg.audit)
		audit_log_udp(u->cfg.audit, &ev);

	if (!f->allowed) {
		u->stats.flows_denied++;
		if (v.guard)
			u->stats.flows_guarded++;
		if (!u->cfg.quiet) {
			char text[ADDR_PORT_STRLEN];
			addr_format_port(&dst->addr, dst->port, text, sizeof text);
			if (n_names)
				log_error("denied udp %s (%s) by %s", text, names[0], rule);
			else
				log_error("denied udp %s by %s", text, rule);
		}
		return f;
	}
	u->stats.flows_allowed++;
	f->sock = net_udp_connect(&dst->addr, dst->port);
	if (f->sock < 0) {
		u->stats.errors++;
		f->sock = NET_INVALID;
		return f; /* datagrams of this flow are dropped until it idles out */
	}
	loop_io_init(&f->io, f->sock, on_reply, f);
	if (loop_io_start(u->cfg.loop, &f->io, LOOP_READ) < 0) {
		net_close(f->sock);
		f->sock = NET_INVALID;
		u->stats.errors++;
	}
	return f;
}

static void on_datagram(struct loop *loop, struct loop_io *io, unsigned events)
{
	(void)loop;
	(void)events;
	struct udp_listener *l = io->arg;
	struct udp_relay *u = l->relay;
	struct capture *cap = u->cfg.capture;

	for (int i = 0; i < BURST; i++) {
		struct capture_endpoint client, dst;
		int n = cap->ops->udp_recv(cap, io->sock, u->buf, sizeof u->buf, &client, &dst);
		if (n == -EAGAIN)
			return;
		if (n < 0) {
			u->stats.datagrams_dropped++;
			continue;
		}
		struct flow *f = u->buckets[endpoint_hash(&client, &dst)];
		while (f && !(endpoint_equal(&f->client, &client) && endpoint_equal(&f->dst, &dst)))
			f = f->next;
		if (!f)
			f = flow_new(u, &client, &dst);
		if (!f) {
			u->stats.datagrams_dropped++;
			continue;
		}
		touch(f);
		if (!f->allowed || f->sock == NET_INVALID) {
			u->stats.datagrams_dropped++;
			continue;
		}
		if (net_send(f->sock, u->buf, (size_t)n) < 0)
			u->stats.datagrams_dropped++;
		else
			u->stats.datagrams_out++;
	}
}

int udp_relay_new(struct udp_relay **out, const struct udp_relay_config *cfg)
{
	struct udp_relay *u = calloc(1, sizeof *u);
	if (!u)
		return -ENOMEM;
	u->cfg = *cfg;
	for (int f = 0; f < CAPTURE_FAMILIES; f++) {
		loop_sock s = cfg->capture->listeners[CAPTURE_UDP][f].sock;
		u->listeners[f].relay = u;
		loop_io_init(&u->listeners[f].io, s, on_datagram, &u->listeners[f]);
		if (s == CAPTURE_NO_SOCK)
			continue;
		int rc = loop_io_start(cfg->loop, &u->listeners[f].io, LOOP_READ);
		if (rc < 0) {
			udp_relay_free(u);
			return rc;
		}
	}
	*out = u;
	return 0;
}

void udp_relay_free(struct udp_relay *u)
{
	if (!u)
		return;
	for (size_t b = 0; b < BUCKETS; b++)
		while (u->buckets[b])
			flow_free(u->buckets[b]);
	for (int f = 0; f < CAPTURE_FAMILIES; f++)
		loop_io_stop(u->cfg.loop, &u->listeners[f].io);
	free(u);
}

void udp_relay_get_stats(const struct udp_relay *u, struct udp_relay_stats *out)
{
	*out = u->stats;
}
