/* relay.c — one captured TCP connection, from accept to its close event. */
#include "proxy/relay.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "base/err_text.h"
#include "base/log.h"
#include "base/net.h"
#include "policy/policy.h"
#include "proxy/peek.h"

/* Connections accepted per listener wake-up, so that a flood cannot starve relaying. */
#define ACCEPT_BURST 64
/* Longest exe path asked of the peer_process hook. */
#define EXE_MAX 512

enum conn_state {
	CONN_PEEKING, /* waiting for the client's first bytes (a TLS SNI or HTTP Host) */
	CONN_DIALING,
	CONN_RELAYING,
};

/* The two directions of a relayed connection. */
enum { OUT = 0, IN = 1 }; /* OUT: session to destination; IN: destination to session */

struct conn {
	struct relay *relay;
	struct conn *prev, *next;
	enum conn_state state;

	loop_sock client, upstream;
	struct loop_io client_io, upstream_io;
	struct loop_timer timer;
	struct net_pump *pump[2];
	bool shut[2]; /* FIN forwarded for the direction */
	uint64_t bytes[2];

	struct addr peer, dst;
	uint16_t peer_port, dport;
	int64_t pid;
	char *exe;    /* or NULL */
	char *domain; /* the name the decision saw first, or NULL */
	enum audit_domain_src domain_src;
	bool unverified; /* denied because the stream's name alone could not allow */
	uint8_t *early;   /* the client's first bytes, read while peeking: sent upstream first */
	size_t early_len, early_sent;
	struct policy_verdict verdict;
	uint64_t started_ms; /* loop time at accept */
};

struct listener {
	struct relay *relay;
	struct loop_io io;
};

struct relay {
	struct relay_config cfg;
	struct conn *conns;
	struct listener listeners[RELAY_MAX_LISTENERS];
	size_t n_listeners;
	struct relay_stats stats;
	bool warned_shed;
};

/* A copy of text, or NULL when memory is short (the event then lacks the field). */
static char *dup_text(const char *text)
{
	size_t n = strlen(text) + 1;
	char *copy = malloc(n);
	if (copy)
		memcpy(copy, text, n);
	return copy;
}

static int64_t wall_ms(struct relay *r)
{
	return r->cfg.hooks.wall_ms ? r->cfg.hooks.wall_ms(r->cfg.hooks.ctx) : 0;
}

static struct audit_meta conn_meta(struct conn *c)
{
	struct audit_meta m = {
		.time_ms = wall_ms(c->relay),
		.pid = c->pid,
		.exe = c->exe,
	};
	return m;
}

static void conn_free(struct conn *c)
{
	struct relay *r = c->relay;
	loop_io_stop(r->cfg.loop, &c->client_io);
	loop_io_stop(r->cfg.loop, &c->upstream_io);
	loop_timer_stop(r->cfg.loop, &c->timer);
	net_pump_free(c->pump[OUT]);
	net_pump_free(c->pump[IN]);
	free(c->exe);
	free(c->domain);
	free(c->early);
	if (c->prev)
		c->prev->next = c->next;
	else
		r->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	r->stats.active--;
	free(c);
}

/* The one way a dialed connection ends: close event, sockets closed (reset when `reset`, so the
 * peers see the failure at once), memory freed. */
static void relay_close(struct conn *c, const char *reason, bool reset)
{
	struct relay *r = c->relay;
	log_debug("close %s: %s", c->exe ? c->exe : "connection", reason);
	if (c->state == CONN_RELAYING) {
		struct audit_close ev = {
			.meta = conn_meta(c),
			.dst = c->dst,
			.dport = c->dport,
			.bytes_out = c->bytes[OUT],
			.bytes_in = c->bytes[IN],
			.duration_ms = loop_now(r->cfg.loop) - c->started_ms,
		};
		if (r->cfg.audit)
			audit_log_close(r->cfg.audit, &ev);
		r->stats.bytes_out += c->bytes[OUT];
		r->stats.bytes_in += c->bytes[IN];
	}
	loop_io_stop(r->cfg.loop, &c->client_io);
	loop_io_stop(r->cfg.loop, &c->upstream_io);
	if (reset) {
		net_reset(c->client);
		net_reset(c->upstream);
	} else {
		net_close(c->client);
		net_close(c->upstream);
	}
	conn_free(c);
}

static void log_connect(struct conn *c, const char *error)
{
	struct relay *r = c->relay;
	const struct policy_verdict *v = &c->verdict;
	char rule[POLICY_RULE_LABEL_MAX];
	if (!r->cfg.audit)
		return;
	policy_verdict_label(v, rule, sizeof rule);
	struct audit_connect ev = {
		.meta = conn_meta(c),
		.proto = AUDIT_TCP,
		.dst = c->dst,
		.dport = c->dport,
		.domain = c->domain,
		.domain_src = c->domain ? c->domain_src : AUDIT_SRC_NONE,
		.decision = v->action == POLICY_ALLOW ? AUDIT_ALLOW : AUDIT_DENY,
		.rule = rule,
		.audit = v->audit,
		.error = error,
	};
	audit_log_connect(r->cfg.audit, &ev);
}

/* Runs both pumps, forwards half-closes, and sets what each socket waits for. */
static void conn_relay(struct conn *c)
{
	struct relay *r = c->relay;
	struct net_pump_status st[2];
	const loop_sock from[2] = {c->client, c->upstream};
	const loop_sock to[2] = {c->upstream, c->client};

	/* What was read while peeking goes first. */
	if (c->early_sent < c->early_len) {
		long n = net_send(c->upstream, c->early + c->early_sent, c->early_len - c->early_sent);
		if (n < 0 && n != -EAGAIN) {
			char reason[96];
			snprintf(reason, sizeof reason, "destination side: %s", err_text((int)-n));
			relay_close(c, reason, true);
			return;
		}
		if (n > 0) {
			c->early_sent += (size_t)n;
			c->bytes[OUT] += (uint64_t)n;
		}
	}
	bool early_pending = c->early_sent < c->early_len;
	if (!early_pending && c->early) {
		free(c->early);
		c->early = NULL;
	}

	for (int d = OUT; d <= IN; d++) {
		if (d == OUT && early_pending) {
			st[d] = (struct net_pump_status){.want_write = true, .buffered = 1};
			continue;
		}
		net_pump_run(c->pump[d], from[d], to[d], &st[d]);
		c->bytes[d] += st[d].moved;
		if (st[d].error) {
			const char *side = (d == OUT) == st[d].error_on_from ? "session" : "destination";
			char reason[96];
			snprintf(reason, sizeof reason, "%s side: %s", side, err_text(-st[d].error));
			relay_close(c, reason, true);
			return;
		}
		if (st[d].from_eof && st[d].buffered == 0 && !c->shut[d]) {
			net_shutdown_write(to[d]);
			c->shut[d] = true;
		}
	}
	if (c->shut[OUT] && c->shut[IN]) {
		relay_close(c, "done", false);
		return;
	}
	unsigned client_events = (st[OUT].want_read ? LOOP_READ : 0) |
				 (st[IN].want_write ? LOOP_WRITE : 0);
	unsigned upstream_events = (st[IN].want_read ? LOOP_READ : 0) |
				   (st[OUT].want_write ? LOOP_WRITE : 0);
	if (loop_io_start(r->cfg.loop, &c->client_io, client_events) < 0 ||
	    loop_io_start(r->cfg.loop, &c->upstream_io, upstream_events) < 0)
		relay_close(c, "cannot watch sockets", true);
}

static void on_relay_io(struct loop *loop, struct loop_io *io, unsigned events)
{
	(void)loop;
	(void)events;
	conn_relay(io->arg);
}

/* The dial finished (successfully or not) or timed out (err -ETIMEDOUT). */
static void conn_dialed(struct conn *c, int err)
{
	struct relay *r = c->relay;
	loop_timer_stop(r->cfg.loop, &c->timer);

	if (err < 0) {
		r->stats.dial_failed++;
		log_connect(c, err_text(-err));
		loop_io_stop(r->cfg.loop, &c->upstream_io);
		net_close(c->upstream);
		c->upstream = NET_INVALID;
		/* The client already finished its handshake with us: a reset is the closest
		 * thing to the refusal or timeout it would have seen. */
		net_reset(c->client);
		c->client = NET_INVALID;
		conn_free(c);
		return;
	}
	log_connect(c, NULL);
	int rc = net_pump_new(&c->pump[OUT]);
	if (rc == 0)
		rc = net_pump_new(&c->pump[IN]);
	c->state = CONN_RELAYING;
	if (rc < 0) {
		relay_close(c, "cannot create pipes", true);
		return;
	}
	/* Both sockets now belong to the relay pumps. */
	loop_io_stop(r->cfg.loop, &c->upstream_io);
	loop_io_init(&c->upstream_io, c->upstream, on_relay_io, c);
	loop_io_init(&c->client_io, c->client, on_relay_io, c);
	conn_relay(c);
}

static void on_dial_io(struct loop *loop, struct loop_io *io, unsigned events)
{
	(void)loop;
	(void)events;
	struct conn *c = io->arg;
	conn_dialed(c, net_connect_result(c->upstream));
}

static void on_dial_timeout(struct loop *loop, struct loop_timer *timer)
{
	(void)loop;
	conn_dialed(timer->arg, -ETIMEDOUT);
}

static void print_denial(struct relay *r, struct conn *c)
{
	char dst[ADDR_PORT_STRLEN], rule[POLICY_RULE_LABEL_MAX];
	if (r->cfg.quiet)
		return;
	addr_format_port(&c->dst, c->dport, dst, sizeof dst);
	policy_verdict_label(&c->verdict, rule, sizeof rule);
	if (c->domain && c->unverified)
		log_error("denied tcp %s (%s, not resolved by the session) by %s", dst, c->domain,
			  rule);
	else if (c->domain)
		log_error("denied tcp %s (%s) by %s", dst, c->domain, rule);
	else
		log_error("denied tcp %s by %s", dst, rule);
}

/* The decision on a name the client itself sent (TLS SNI, HTTP Host), which it may have made
 * up. A name the policy denies is denied whatever the address (policy_name_denied). Otherwise
 * the name decides with the address, but it can only deny on its own: when it would allow and
 * the session's DNS answers did not give this address that name (an IP literal dressed up with
 * an allowed name, `curl --resolve`, a fronted connection), the decision is taken again on the
 * names the DNS answers gave the address, if any, and the address. */
static void decide_on_stream_name(struct conn *c, const char *stream_name,
				  const char *const *dns, size_t n_dns)
{
	const struct policy *p = c->relay->cfg.policy;
	bool confirmed = false;

	for (size_t i = 0; i < n_dns; i++)
		if (strcmp(dns[i], stream_name) == 0)
			confirmed = true;
	if (confirmed)
		c->domain_src = AUDIT_SRC_DNS; /* both agree */
	if (policy_name_denied(p, POLICY_TCP, c->dport, stream_name, &c->verdict))
		return;
	struct policy_conn q = {
		.proto = POLICY_TCP, .dst = c->dst, .port = c->dport,
		.names = &stream_name, .n_names = 1,
	};
	c->verdict = policy_decide_connect_guarded(p, &q);
	if (confirmed || c->verdict.action != POLICY_ALLOW)
		return;
	q.names = dns;
	q.n_names = n_dns;
	c->verdict = policy_decide_connect_guarded(p, &q);
	c->unverified = c->verdict.action != POLICY_ALLOW;
}

/* The verdict, on the stream's name if one was found (decide_on_stream_name), else on the
 * session's DNS answers for the destination: c->verdict, c->domain, c->domain_src. */
static void conn_verdict(struct conn *c, const char *stream_name, enum audit_domain_src src)
{
	struct relay *r = c->relay;
	const char *names[RELAY_MAX_NAMES];
	size_t n_names = 0;

	if (r->cfg.hooks.dns_names)
		n_names = r->cfg.hooks.dns_names(r->cfg.hooks.ctx, &c->dst, names, RELAY_MAX_NAMES);
	if (stream_name) {
		c->domain_src = src;
		decide_on_stream_name(c, stream_name, names, n_names);
		c->domain = dup_text(stream_name);
	} else {
		struct policy_conn q = {
			.proto = POLICY_TCP, .dst = c->dst, .port = c->dport,
			.names = names, .n_names = n_names,
		};
		c->verdict = policy_decide_connect_guarded(r->cfg.policy, &q);
		c->domain_src = AUDIT_SRC_DNS;
		c->domain = n_names ? dup_text(names[0]) : NULL;
	}
}

/* A connection that ends before its decision (the client went away while sluice waited for its
 * first bytes, or the session ended): still one `connect` event, with what the decision would
 * have been without a name from the stream, and why nothing was relayed. */
static void conn_abandon(struct conn *c, const char *why)
{
	loop_timer_stop(c->relay->cfg.loop, &c->timer);
	loop_io_stop(c->relay->cfg.loop, &c->client_io);
	conn_verdict(c, NULL, AUDIT_SRC_NONE);
	log_connect(c, why);
	net_reset(c->client);
	conn_free(c);
}

/* The decision (conn_verdict); then deny, or dial. */
static void conn_decide(struct conn *c, const char *stream_name, enum audit_domain_src src)
{
	struct relay *r = c->relay;

	loop_timer_stop(r->cfg.loop, &c->timer);
	loop_io_stop(r->cfg.loop, &c->client_io);
	conn_verdict(c, stream_name, src);
	if (c->verdict.action != POLICY_ALLOW) {
		r->stats.denied++;
		if (c->verdict.guard)
			r->stats.guarded++;
		log_connect(c, NULL);
		print_denial(r, c);
		net_reset(c->client);
		conn_free(c);
		return;
	}
	r->stats.allowed++;
	c->state = CONN_DIALING;
	bool done = false;
	loop_sock up = net_connect_start(&c->dst, c->dport, &done);
	if (up < 0) {
		conn_dialed(c, (int)up);
		return;
	}
	c->upstream = up;
	loop_io_init(&c->upstream_io, up, on_dial_io, c);
	if (done) {
		conn_dialed(c, 0);
		return;
	}
	uint32_t timeout = r->cfg.dial_timeout_ms ? r->cfg.dial_timeout_ms : RELAY_DIAL_TIMEOUT_MS;
	loop_timer_init(&c->timer, on_dial_timeout, c);
	if (loop_io_start(r->cfg.loop, &c->upstream_io, LOOP_WRITE) < 0 ||
	    loop_timer_start(r->cfg.loop, &c->timer, timeout) < 0)
		conn_dialed(c, -ENOMEM);
}

/* Reads what the client sent first and looks for a TLS SNI or HTTP Host in it. */
static void on_peek_io(struct loop *loop, struct loop_io *io, unsigned events)
{
	(void)loop;
	(void)events;
	struct conn *c = io->arg;
	struct relay *r = c->relay;

	if (!c->early) {
		c->early = malloc(PEEK_MAX_BYTES);
		if (!c->early) {
			conn_decide(c, NULL, AUDIT_SRC_NONE);
			return;
		}
	}
	long n = net_recv(c->client, c->early + c->early_len, PEEK_MAX_BYTES - c->early_len);
	if (n == -EAGAIN)
		return;
	if (n < 0) {
		/* The client reset or failed before saying anything useful: nothing to relay. */
		conn_abandon(c, "closed by the client before the decision");
		return;
	}
	c->early_len += (size_t)n;
	char name[PEEK_NAME_MAX];
	enum peek_source src;
	int found = peek_name(c->early, c->early_len, name, sizeof name, &src);
	if (found == PEEK_FOUND) {
		r->stats.peeked++;
		conn_decide(c, name, src == PEEK_SRC_SNI ? AUDIT_SRC_SNI : AUDIT_SRC_HOST);
	} else if (found != PEEK_NEED_MORE || n == 0 || c->early_len == PEEK_MAX_BYTES) {
		conn_decide(c, NULL, AUDIT_SRC_NONE);
	}
}

/* The client said nothing naming its destination in time (SSH, SMTP: servers speak first). */
static void on_peek_timeout(struct loop *loop, struct loop_timer *timer)
{
	(void)loop;
	conn_decide(timer->arg, NULL, AUDIT_SRC_NONE);
}

/* A new connection from the session: origin, process, then the decision — after looking at the
 * client's first bytes when a name could change it. */
static void conn_start(struct relay *r, loop_sock client, const struct addr *peer, uint16_t port)
{
	struct conn *c = calloc(1, sizeof *c);
	if (!c) {
		net_reset(client);
		r->stats.shed++;
		return;
	}
	c->relay = r;
	c->client = client;
	c->upstream = NET_INVALID;
	c->peer = *peer;
	c->peer_port = port;
	c->started_ms = loop_now(r->cfg.loop);
	c->next = r->conns;
	if (r->conns)
		r->conns->prev = c;
	r->conns = c;
	r->stats.active++;
	r->stats.accepted++;
	loop_io_init(&c->client_io, client, on_peek_io, c);
	loop_io_init(&c->upstream_io, NET_INVALID, on_dial_io, c);
	loop_timer_init(&c->timer, on_peek_timeout, c);

	if (r->cfg.hooks.original_dst(r->cfg.hooks.ctx, client, &c->dst, &c->dport) < 0) {
		char from[ADDR_PORT_STRLEN];
		addr_format_port(peer, port, from, sizeof from);
		log_warn("connection from %s has no original destination; reset", from);
		r->stats.no_origin++;
		net_reset(client);
		conn_free(c);
		return;
	}
	if (r->cfg.hooks.peer_process) {
		char exe[EXE_MAX] = "";
		int64_t pid = r->cfg.hooks.peer_process(r->cfg.hooks.ctx, 6, peer, port, &c->dst,
							c->dport, exe, sizeof exe);
		c->pid = pid > 0 ? pid : 0;
		c->exe = pid > 0 && exe[0] ? dup_text(exe) : NULL;
	}
	struct policy_conn q = {.proto = POLICY_TCP, .dst = c->dst, .port = c->dport};
	if (!policy_names_matter(r->cfg.policy, &q)) {
		conn_decide(c, NULL, AUDIT_SRC_NONE);
		return;
	}
	uint32_t timeout = r->cfg.peek_timeout_ms ? r->cfg.peek_timeout_ms : RELAY_PEEK_TIMEOUT_MS;
	if (loop_io_start(r->cfg.loop, &c->client_io, LOOP_READ) < 0 ||
	    loop_timer_start(r->cfg.loop, &c->timer, timeout) < 0)
		conn_decide(c, NULL, AUDIT_SRC_NONE);
}

static void on_accept(struct loop *loop, struct loop_io *io, unsigned events)
{
	(void)loop;
	(void)events;
	struct listener *l = io->arg;
	struct relay *r = l->relay;

	for (int i = 0; i < ACCEPT_BURST; i++) {
		struct addr peer;
		uint16_t port;
		loop_sock fd = net_accept(io->sock, &peer, &port);
		if (fd == -EAGAIN)
			return;
		if (fd < 0) {
			/* At the descriptor limit: one was refused, the others keep flowing. */
			r->stats.shed++;
			if (!r->warned_shed)
				log_warn_errno((int)fd, "refusing new connections");
			r->warned_shed = true;
			return;
		}
		if (r->cfg.max_conns && r->stats.active >= r->cfg.max_conns) {
			net_reset(fd);
			r->stats.shed++;
			continue;
		}
		r->warned_shed = false;
		conn_start(r, fd, &peer, port);
	}
}

int relay_new(struct relay **out, const struct relay_config *cfg)
{
	struct relay *r = calloc(1, sizeof *r);
	if (!r)
		return -ENOMEM;
	r->cfg = *cfg;
	*out = r;
	return 0;
}

int relay_listen(struct relay *r, loop_sock listener)
{
	if (r->n_listeners == RELAY_MAX_LISTENERS)
		return -ENOSPC;
	int err = net_set_nonblocking(listener);
	if (err < 0)
		return err;
	struct listener *l = &r->listeners[r->n_listeners];
	l->relay = r;
	loop_io_init(&l->io, listener, on_accept, l);
	err = loop_io_start(r->cfg.loop, &l->io, LOOP_READ);
	if (err == 0)
		r->n_listeners++;
	return err;
}

void relay_free(struct relay *r)
{
	if (!r)
		return;
	while (r->conns) {
		struct conn *c = r->conns;
		if (c->state == CONN_RELAYING) {
			relay_close(c, "session ended", true);
		} else if (c->state == CONN_PEEKING) {
			conn_abandon(c, "session ended");
		} else {
			if (c->state == CONN_DIALING)
				log_connect(c, "session ended");
			net_reset(c->client);
			net_close(c->upstream);
			conn_free(c);
		}
	}
	for (size_t i = 0; i < r->n_listeners; i++)
		loop_io_stop(r->cfg.loop, &r->listeners[i].io);
	free(r);
}

void relay_get_stats(const struct relay *r, struct relay_stats *out)
{
	*out = r->stats;
}
