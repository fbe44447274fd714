/* run.c — `sluice run`: wires capture → relay / DNS proxy / UDP → audit around one session. */
#include "session/run.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "base/log.h"
#include "base/loop.h"
#include "base/net.h"
#include "base/os.h"
#include "capture/capture.h"
#include "policy/dns_map.h"
#include "policy/policy.h"
#include "proxy/dns_proxy.h"
#include "proxy/relay.h"
#include "proxy/udp.h"
#include "session/run_platform.h"
#include "session/session.h"

#define STATUS_FAILED SESSION_STATUS_FAILED
/* Loop iterations after COMMAND ended, to let connections it closed finish their close path. */
#define DRAIN_ITERATIONS 64

/* Everything one session holds; the hooks of the proxies get a pointer to it. */
struct run {
	const struct run_options *opts;
	const struct policy *policy;
	struct audit *audit;
	struct capture *capture;
	struct loop *loop;
	struct dns_map *map;
	struct relay *relay;
	struct dns_proxy *dns;
	struct udp_relay *udp;
	struct session *session;
	struct run_platform *platform;
	struct loop_io session_io;
	char id[33];
	struct dns_message *system_answer; /* scratch for hook_system_dns_answer */
	uint64_t system_answers, system_names, system_denied, system_guarded;
};

static int64_t hook_wall_ms(void *ctx)
{
	(void)ctx;
	return os_wall_ms();
}

static int hook_original_dst(void *ctx, loop_sock accepted, struct addr *dst, uint16_t *port)
{
	struct run *r = ctx;
	struct capture_endpoint ep;
	int rc = r->capture->ops->tcp_original_dst(r->capture, accepted, &ep);
	if (rc < 0)
		return rc;
	*dst = ep.addr;
	*port = ep.port;
	return 0;
}

/* The process behind a flow, for the audit trail only: without one, the hook is not given to
 * the proxies at all (on Linux a lookup reads the session processes' descriptors, the largest
 * per-connection cost; docs/performance.md). */
static int64_t hook_peer_process(void *ctx, int proto, const struct addr *peer, uint16_t port,
				 const struct addr *dst, uint16_t dport, char *exe, size_t n)
{
	struct run *r = ctx;
	struct capture_endpoint seen = {.addr = *peer, .port = port};
	return run_platform_peer_process(r->platform, r->capture, proto, &seen, dst, dport, exe, n);
}

static size_t hook_dns_names(void *ctx, const struct addr *dst, const char **names, size_t max)
{
	struct run *r = ctx;
	const char *const *found = NULL;
	size_t n = dns_map_lookup(r->map, dst, loop_now(r->loop), &found);
	if (n > max)
		n = max;
	for (size_t i = 0; i < n; i++)
		names[i] = found[i];
	return n;
}

/* The divert engine entered or left fail mode: an audit event and one stderr line each. */
static void hook_fail_mode(void *ctx, bool entered, const char *reason)
{
	struct run *r = ctx;
	bool open = r->opts->fail == RUN_FAIL_OPEN;
	struct audit_fail_mode ev = {
		.meta.time_ms = os_wall_ms(),
		.state = entered ? AUDIT_FAIL_ENTERED : AUDIT_FAIL_LEFT,
		.fail = open ? AUDIT_FAIL_OPEN : AUDIT_FAIL_CLOSED,
		.reason = reason,
	};
	audit_log_fail_mode(r->audit, &ev);
	if (entered)
		log_warn("divert engine in fail mode (%s) after repeated errors, last: %s; packets it "
			 "cannot handle are %s",
			 open ? "open" : "closed", reason ? reason : "unknown",
			 open ? "passed unchanged" : "dropped");
	else
		log_warn("divert engine left fail mode");
}

/* An answer the system resolver received (Windows: the DNS Client service resolves for the
 * session's programs out of sluice's sight; the capture matched the answer to its query): the
 * DNS map learns from it as from the DNS proxy's answers, and on the same condition, that the
 * policy allows the question's name. The condition matters more here: the session can make
 * the service ask about any name (nothing denies it on the way), and an answer for a name of
 * the attacker's would otherwise vouch, through its CNAME chain, for any name at any address;
 * and other programs' lookups must not change the session's decisions. */
static void hook_system_dns_answer(void *ctx, const uint8_t *msg, size_t len)
{
	struct run *r = ctx;
	char name[DNS_NAME_TEXT_MAX];
	if (!r->system_answer) {
		r->system_answer = malloc(sizeof *r->system_answer);
		if (!r->system_answer)
			return;
	}
	struct dns_message *a = r->system_answer;
	if (dns_parse_response(msg, len, a) != 0 || !a->has_question ||
	    dns_name_format(&a->question.name, DNS_NAME_LOWER, name, sizeof name) < 0)
		return;
	r->system_answers++;
	if (policy_decide_dns(r->policy, name).action != POLICY_ALLOW) {
		r->system_denied++;
		return;
	}
	/* the rebinding guard, as in the DNS proxy: the program has the answer already, but the
	 * guarded addresses do not enter the map (connections to them are denied anyway) */
	r->system_guarded += dns_proxy_guard_parsed(r->policy, a);
	r->system_names += dns_map_record_response(r->map, a, loop_now(r->loop));
}

static void on_session(struct loop *loop, struct loop_io *io, unsigned events)
{
	(void)events;
	struct run *r = io->arg;
	int rc = session_handle_readable(r->session);
	if (rc != 0) {
		if (rc < 0)
			log_errno(rc, "run: lost track of the session");
		loop_io_stop(loop, io);
		loop_stop(loop);
	}
}

static void make_session_id(char *out, size_t n)
{
	uint8_t bytes[12];
	if (os_random(bytes, sizeof bytes) < 0)
		memset(bytes, 0, sizeof bytes);
	for (size_t i = 0; i < sizeof bytes && 2 * i + 2 < n; i++)
		snprintf(out + 2 * i, 3, "%02x", bytes[i]);
}

/* Sets up everything before COMMAND starts. Returns 0 or a negative errno after logging. */
static int setup(struct run *r)
{
	const struct run_options *o = r->opts;
	int rc;

	make_session_id(r->id, sizeof r->id);
	if (o->audit_path) {
		/* the trail lists every host the session reached: a new one is the owner's only */
		if (strcmp(o->audit_path, "-") != 0)
			os_create_private_file(o->audit_path);
		rc = audit_open(&r->audit, o->audit_path, r->id);
		if (rc < 0) {
			log_errno(rc, "run: cannot open the audit trail %s", o->audit_path);
			return rc;
		}
	}
	long fds = net_prepare_process();
	if (fds < 0)
		log_warn_errno((int)fds, "run: cannot raise the descriptor limit");

	const struct capture_ops *backend = run_platform_capture(o->mode);
	if (!backend)
		return -ENOTSUP;
	struct capture_config cap_cfg = {
		.fail_open = o->fail == RUN_FAIL_OPEN,
		.on_fail_mode = hook_fail_mode,
		.on_dns_answer = hook_system_dns_answer,
		.ctx = r,
	};
	rc = backend->open(&r->capture, &cap_cfg);
	if (rc < 0) {
		if (rc == -EPERM)
			log_error("run: sessions need root on Linux, administrator rights on Windows");
		else
			log_errno(rc, "run: cannot set up the session network (%s)", backend->name);
		return rc;
	}

	struct dns_map_config map_cfg;
	dns_map_config_default(&map_cfg);
	os_random(&map_cfg.hash_seed, sizeof map_cfg.hash_seed);
	rc = dns_map_new(&r->map, &map_cfg);
	if (rc == 0)
		rc = loop_new(&r->loop, 0);
	if (rc == 0 && r->capture->ops->attach)
		rc = r->capture->ops->attach(r->capture, r->loop);
	if (rc < 0) {
		log_errno(rc, "run: cannot allocate the session's state");
		return rc;
	}

	struct relay_config relay_cfg = {
		.loop = r->loop,
		.policy = r->policy,
		.audit = r->audit,
		.quiet = o->quiet,
		.max_conns = fds > 64 ? (size_t)(fds - 64) / 6 : 0,
		.hooks = {
			.ctx = r,
			.original_dst = hook_original_dst,
			.peer_process = r->audit ? hook_peer_process : NULL,
			.dns_names = hook_dns_names,
			.wall_ms = hook_wall_ms,
		},
	};
	rc = relay_new(&r->relay, &relay_cfg);
	for (int f = 0; rc == 0 && f < CAPTURE_FAMILIES; f++) {
		loop_sock s = r->capture->listeners[CAPTURE_TCP][f].sock;
		if (s != CAPTURE_NO_SOCK)
			rc = relay_listen(r->relay, s);
	}
	if (rc < 0) {
		log_errno(rc, "run: cannot start the TCP relay");
		return rc;
	}

	struct dns_proxy_config dns_cfg = {
		.loop = r->loop,
		.policy = r->policy,
		.audit = r->audit,
		.map = r->map,
		.capture = r->capture,
		.has_upstream = o->has_dns_upstream,
		.upstream = o->dns_upstream,
		.upstream_port = o->dns_upstream_port,
		.quiet = o->quiet,
		.ctx = r,
		.wall_ms = hook_wall_ms,
		.peer_process = r->audit ? hook_peer_process : NULL,
	};
	os_random(&dns_cfg.hash_seed, sizeof dns_cfg.hash_seed);
	struct addr trusted[DNS_PROXY_MAX_TRUSTED];
	if (!o->has_dns_upstream) {
		dns_cfg.n_trusted = run_platform_resolvers(trusted, DNS_PROXY_MAX_TRUSTED);
		dns_cfg.trusted = trusted;
	}
	rc = dns_proxy_new(&r->dns, &dns_cfg);
	if (rc < 0) {
		log_errno(rc, "run: cannot start the DNS proxy");
		return rc;
	}

	struct udp_relay_config udp_cfg = {
		.loop = r->loop,
		.policy = r->policy,
		.audit = r->audit,
		.map = r->map,
		.capture = r->capture,
		.quiet = o->quiet,
		.ctx = r,
		.wall_ms = hook_wall_ms,
		.peer_process = r->audit ? hook_peer_process : NULL,
	};
	rc = udp_relay_new(&r->udp, &udp_cfg);
	if (rc < 0) {
		log_errno(rc, "run: cannot start the UDP relay");
		return rc;
	}
	return 0;
}

static void log_session_start(struct run *r)
{
	struct audit_session_start ev = {
		.meta.time_ms = os_wall_ms(),
		.argv = (const char *const *)r->opts->command,
		.argc = (size_t)r->opts->command_argc,
		.mode = r->capture->ops->name,
	};
	audit_log_session_start(r->audit, &ev);
}

#define RUN_MAX_STATS 128

/* Every counter of the session: the proxies' and the capture backend's. Returns how many. */
static size_t collect_stats(struct run *r, struct audit_stat *out, size_t max)
{
	struct relay_stats rs = {0};
	struct dns_proxy_stats ds = {0};
	struct udp_relay_stats us = {0};
	if (r->relay)
		relay_get_stats(r->relay, &rs);
	if (r->dns)
		dns_proxy_get_stats(r->dns, &ds);
	if (r->udp)
		udp_relay_get_stats(r->udp, &us);
	const struct audit_stat proxy_stats[] = {
		{"tcp_accepted", (int64_t)rs.accepted},
		{"tcp_allowed", (int64_t)rs.allowed},
		{"tcp_denied", (int64_t)rs.denied},
		{"tcp_dial_failed", (int64_t)rs.dial_failed},
		{"tcp_shed", (int64_t)rs.shed},
		{"tcp_no_origin", (int64_t)rs.no_origin},
		{"tcp_named_by_stream", (int64_t)rs.peeked},
		{"tcp_bytes_out", (int64_t)rs.bytes_out},
		{"tcp_bytes_in", (int64_t)rs.bytes_in},
		{"dns_queries", (int64_t)ds.queries},
		{"dns_denied", (int64_t)ds.denied},
		{"dns_refused", (int64_t)ds.refused},
		{"dns_forwarded", (int64_t)ds.forwarded},
		{"dns_malformed", (int64_t)ds.malformed},
		{"dns_timeouts", (int64_t)ds.timeouts},
		{"dns_answered", (int64_t)ds.answered},
		{"dns_upstream_errors", (int64_t)ds.upstream_errors},
		{"dns_shed", (int64_t)ds.shed},
		{"udp_flows_allowed", (int64_t)us.flows_allowed},
		{"udp_flows_denied", (int64_t)us.flows_denied},
		{"udp_dropped", (int64_t)us.datagrams_dropped},
		{"udp_datagrams_out", (int64_t)us.datagrams_out},
		{"udp_datagrams_in", (int64_t)us.datagrams_in},
		{"udp_errors", (int64_t)us.errors},
		{"udp_shed", (int64_t)us.shed},
		{"dns_system_answers", (int64_t)r->system_answers},
		{"dns_system_names", (int64_t)r->system_names},
		{"dns_system_denied", (int64_t)r->system_denied},
		{"dns_system_guarded", (int64_t)r->system_guarded},
		{"dns_refused_type", (int64_t)ds.refused_type},
		{"dns_refused_names", (int64_t)ds.refused_names},
		{"dns_guarded_answers", (int64_t)ds.guarded_answers},
		{"dns_guarded_addresses", (int64_t)ds.guarded_addresses},
		{"dns_untrusted_answers", (int64_t)ds.untrusted},
		{"tcp_guarded", (int64_t)rs.guarded},
		{"udp_flows_guarded", (int64_t)us.flows_guarded},
	};
	size_t n = 0;
	for (size_t i = 0; i < sizeof proxy_stats / sizeof proxy_stats[0] && n < max; i++)
		out[n++] = proxy_stats[i];
	if (r->capture && r->capture->ops->stats) {
		struct capture_stat cs[RUN_MAX_STATS];
		size_t k = r->capture->ops->stats(r->capture, cs, RUN_MAX_STATS);
		for (size_t i = 0; i < k && n < max; i++)
			out[n++] = (struct audit_stat){cs[i].name, (int64_t)cs[i].value};
	}
	return n;
}

static void log_session_end(struct run *r, int status, const struct audit_stat *stats, size_t n)
{
	if (r->opts->stats) {
		fprintf(stderr, "sluice: session counters (%s mode):\n",
			r->capture ? r->capture->ops->name : "no capture");
		for (size_t i = 0; i < n; i++)
			fprintf(stderr, "sluice:   %-32s %lld\n", stats[i].name,
				(long long)stats[i].value);
	}
	if (!r->audit)
		return;
	struct audit_session_end ev = {
		.meta.time_ms = os_wall_ms(),
		.exit_status = status,
		.stats = stats,
		.n_stats = n,
	};
	audit_log_session_end(r->audit, &ev);
}

/* Ends the proxies: what is still open or pending is reported (close events, "session ended")
 * and freed. Accepts what was never made, and being called twice. */
static void end_proxies(struct run *r)
{
	udp_relay_free(r->udp);
	dns_proxy_free(r->dns);
	relay_free(r->relay);
	r->udp = NULL;
	r->dns = NULL;
	r->relay = NULL;
}

/* Frees in about the reverse order of setup; every step accepts what was never made. */
static void teardown(struct run *r)
{
	end_proxies(r);
	if (r->capture) /* first: its threads may call into the session and platform part */
		r->capture->ops->close(r->capture); /* and before the loop it may watch on */
	session_free(r->session); /* before the platform part its callbacks use */
	run_platform_free(r->platform);
	loop_free(r->loop);
	dns_map_free(r->map);
	free(r->system_answer);
	audit_close(r->audit);
}

int session_run(const struct run_options *opts, const struct policy *policy)
{
	struct run r = {.opts = opts, .policy = policy};
	int status = STATUS_FAILED;

	if (setup(&r) < 0)
		goto done;

	log_session_start(&r);
	int rc = session_spawn(&r.session, opts->command, r.capture);
	if (rc < 0) {
		log_errno(rc, "run: cannot start %s", opts->command[0]);
		goto done;
	}
	run_platform_start(&r.platform, r.session, r.capture);
	loop_io_init(&r.session_io, session_fd(r.session), on_session, &r);
	rc = loop_io_start(r.loop, &r.session_io, LOOP_READ);
	if (rc == 0)
		rc = loop_run(r.loop);
	if (rc < 0) {
		log_errno(rc, "run: event loop failed");
		goto done;
	}
	const struct session_result *result = session_result(r.session);
	if (!result) {
		log_error("run: the session ended without a result");
		goto done;
	}
	status = result->exit_status;
	for (int i = 0; i < DRAIN_ITERATIONS && loop_run_once(r.loop, 0) > 0; i++)
		;
done:;
	/* The counters are taken when COMMAND has ended; the events of what the end of the session
	 * cut short come next; session_end is the trail's last line. */
	struct audit_stat stats[RUN_MAX_STATS];
	size_t n_stats = collect_stats(&r, stats, RUN_MAX_STATS);
	end_proxies(&r);
	log_session_end(&r, status, stats, n_stats);
	teardown(&r);
	return status;
}
