/* dns_proxy.c — DNS queries of the session: parse, decide, answer NXDOMAIN or forward; the
 * rebinding guard on what comes back. */
#include "proxy/dns_proxy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "base/err_text.h"
#include "base/log.h"
#include "base/net.h"
#include "capture/capture.h"
#include "policy/dns_map.h"
#include "policy/policy.h"
#include "policy/ranges.h"
#include "proxy/dns_msg.h"

/* Datagrams read per listener wake-up. */
#define UDP_BURST 32
/* Longest exe path asked of the peer_process hook. */
#define EXE_MAX 512
/* A TCP frame: the 2-byte length and the largest message. */
#define FRAME_MAX (2 + DNS_MESSAGE_MAX)
/* Dropped addresses named on one stderr line; the event lists them all (up to DNS_MAX_ANSWERS). */
#define GUARD_LINE_MAX 4
/* "guard:" and the longest range name, with the NUL. */
#define GUARD_RULE_MAX 24

/* Why a query was refused before the policy looked at its name: the event's rule, the answer's
 * rcode, and the words of the event's error and the stderr line. */
struct refusal {
	const char *rule;
	uint8_t rcode;
	const char *why;
};

static const struct refusal refuse_opcode = {"opcode", DNS_RCODE_NOTIMP, "opcode not forwarded"};
static const struct refusal refuse_qclass = {"qclass", DNS_RCODE_REFUSED, "class not forwarded"};
static const struct refusal refuse_qname = {"qname", DNS_RCODE_REFUSED, "not a host name"};
static const struct refusal refuse_qtype = {"qtype", DNS_RCODE_REFUSED,
					    "query type not forwarded"};
static const struct refusal refuse_names = {"names", DNS_RCODE_REFUSED,
					    "too many distinct names in this session"};

/* What one query became; filled in as it goes, written as its `dns` event once. */
struct query_info {
	char *qname;         /* presentation form, owned */
	uint16_t qtype;
	struct policy_verdict verdict;
	const struct refusal *refused; /* refused before policy, or NULL */
	struct addr resolver;
	uint16_t resolver_port;
	int64_t pid;
	char *exe;           /* owned, or NULL */
};

/* A UDP query forwarded upstream, waiting for its answer. */
struct pending {
	struct dns_proxy *proxy;
	struct pending *prev, *next;
	loop_sock sock; /* connected to the resolver */
	struct loop_io io;
	struct loop_timer timer;
	struct capture_endpoint client, asked;
	struct dns_question question;
	uint16_t id;
	uint16_t udp_max; /* the largest answer the client takes over UDP */
	struct query_info info;
};

enum tcp_state {
	TCP_READ_QUERY,
	TCP_FORWARD,     /* the query is going to, and the answer coming from, the resolver */
	TCP_WRITE_REPLY,
};

/* A DNS-over-TCP connection from the session; one query at a time. */
struct tcp_conn {
	struct dns_proxy *proxy;
	struct tcp_conn *prev, *next;
	enum tcp_state state;
	loop_sock client, upstream;
	struct loop_io client_io, upstream_io;
	struct loop_timer timer;
	struct capture_endpoint peer, asked;
	bool upstream_connected;
	struct dns_question question;
	uint16_t id; /* of the query being forwarded */
	struct query_info info;
	size_t in_len;           /* bytes in `in` (from the client) */
	size_t up_out_len, up_out_off;
	size_t up_in_len;
	size_t out_len, out_off; /* reply to the client */
	uint8_t in[FRAME_MAX];
	uint8_t up_out[FRAME_MAX];
	uint8_t up_in[FRAME_MAX];
	uint8_t out[FRAME_MAX];
};

struct udp_listener {
	struct dns_proxy *proxy;
	struct loop_io io;
};

struct tcp_listener {
	struct dns_proxy *proxy;
	struct loop_io io;
};

/* What the guard removed from the answer being handled. */
struct guard_run {
	const struct policy *policy;
	size_t n;     /* entries in dropped[] */
	size_t total; /* addresses removed, listed or not */
	struct audit_dns_dropped dropped[DNS_MAX_ANSWERS];
	char rules[DNS_MAX_ANSWERS][GUARD_RULE_MAX];
};

/* Hashes of the names sent upstream (open addressing, 0 = empty), for max_names. */
struct name_set {
	uint64_t *slots;
	size_t cap; /* a power of two, or 0 */
	size_t count;
};

struct dns_proxy {
	struct dns_proxy_config cfg;
	struct udp_listener udp[CAPTURE_FAMILIES];
	struct tcp_listener tcp[CAPTURE_FAMILIES];
	struct pending *pending;
	size_t n_pending;
	struct tcp_conn *tcp_conns;
	size_t n_tcp;
	struct dns_proxy_stats stats;
	struct name_set names;
	struct guard_run guard;        /* scratch for the answer being handled */
	uint8_t buf[DNS_MESSAGE_MAX];
	uint8_t filtered[DNS_MESSAGE_MAX]; /* an answer rebuilt without guarded addresses */
	struct dns_message msg; /* scratch: large, so not on the stack */
	struct dns_message reply;
	struct addr trusted[DNS_PROXY_MAX_TRUSTED];
};

static char *dup_text(const char *text)
{
	size_t n = strlen(text) + 1;
	char *copy = malloc(n);
	if (copy)
		memcpy(copy, text, n);
	return copy;
}

static uint32_t timeout_ms(const struct dns_proxy *p)
{
	return p->cfg.timeout_ms ? p->cfg.timeout_ms : DNS_PROXY_TIMEOUT_MS;
}

static void info_free(struct query_info *info)
{
	free(info->qname);
	free(info->exe);
	memset(info, 0, sizeof *info);
}

bool dns_proxy_qtype_forwarded(uint16_t qtype)
{
	switch (qtype) {
	case DNS_TYPE_A:
	case DNS_TYPE_AAAA:
	case DNS_TYPE_CNAME:
	case DNS_TYPE_MX:
	case DNS_TYPE_TXT:
	case DNS_TYPE_PTR:
	case DNS_TYPE_SRV:
	case DNS_TYPE_SVCB:
	case DNS_TYPE_HTTPS:
		return true;
	default:
		return false;
	}
}

/* Reads n decimal digits (1..3, no leading zero) of a reverse-name label as a byte. */
static bool reverse_octet(const char *s, size_t n, uint8_t *out)
{
	unsigned v = 0;
	if (n == 0 || n > 3 || (n > 1 && s[0] == '0'))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*out = (uint8_t)v;
	return v <= 255;
}

static int hex_digit(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The address a complete reverse name stands for: "d.c.b.a.in-addr.arpa" or 32 nibble labels
 * and "ip6.arpa" (name lowercase, no trailing dot). Shorter reverse names name networks, not
 * addresses: false. */
static bool reverse_name_addr(const char *name, struct addr *out)
{
	static const char v4_suffix[] = "in-addr.arpa", v6_suffix[] = "ip6.arpa";
	size_t len = strlen(name);
	uint8_t bytes[16];
	if (len > sizeof v4_suffix - 1 &&
	    strcmp(name + len - (sizeof v4_suffix - 1), v4_suffix) == 0) {
		const char *p = name;
		for (int i = 3; i >= 0; i--) {
			const char *dot = strchr(p, '.');
			if (!dot || !reverse_octet(p, (size_t)(dot - p), &bytes[i]))
				return false;
			p = dot + 1;
		}
		if (strcmp(p, v4_suffix) != 0)
			return false;
		addr_from_bytes(out, ADDR_V4, bytes);
		return true;
	}
	if (len != 64 + sizeof v6_suffix - 1 || strcmp(name + 64, v6_suffix) != 0)
		return false;
	for (int i = 0; i < 32; i++) {
		int v = hex_digit(name[2 * i]);
		if (v < 0 || name[2 * i + 1] != '.')
			return false;
		if (i % 2 == 0)
			bytes[15 - i / 2] = (uint8_t)v;
		else
			bytes[15 - i / 2] |= (uint8_t)(v << 4);
	}
	addr_from_bytes(out, ADDR_V6, bytes);
	return true;
}

static uint64_t name_hash(uint64_t seed, const char *name)
{
	uint64_t h = 0xcbf29ce484222325ull ^ seed;
	for (const char *c = name; *c; c++)
		h = (h ^ (uint8_t)*c) * 0x100000001b3ull;
	h ^= h >> 31;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 29;
	return h ? h : 1;
}

/* Whether `name` may go upstream under max_names: true when it went before or is added now. When
 * memory runs short the name passes unrecorded: the bound is against tunnels, not a reason to
 * fail a session's lookups. */
static bool names_admit(struct dns_proxy *p, const char *name)
{
	struct name_set *set = &p->names;
	size_t max = p->cfg.max_names ? p->cfg.max_names : DNS_PROXY_MAX_NAMES;
	uint64_t h = name_hash(p->cfg.hash_seed, name);
	if (set->cap) {
		for (size_t i = h & (set->cap - 1); set->slots[i]; i = (i + 1) & (set->cap - 1))
			if (set->slots[i] == h)
				return true;
	}
	if (set->count >= max)
		return false;
	if (2 * (set->count + 1) > set->cap) {
		size_t cap = set->cap ? 2 * set->cap : 64;
		uint64_t *slots = calloc(cap, sizeof *slots);
		if (!slots)
			return true;
		for (size_t k = 0; k < set->cap; k++) {
			uint64_t v = set->slots[k];
			size_t i = v & (cap - 1);
			while (v && slots[i])
				i = (i + 1) & (cap - 1);
			slots[i] = v;
		}
		free(set->slots);
		set->slots = slots;
		set->cap = cap;
	}
	size_t i = h & (set->cap - 1);
	while (set->slots[i])
		i = (i + 1) & (set->cap - 1);
	set->slots[i] = h;
	set->count++;
	return true;
}

/* Fills info from a parsed query: name, type, process, decision. */
static void decide(struct dns_proxy *p, const struct dns_message *q, int proto,
		   const struct capture_endpoint *src, const struct capture_endpoint *asked,
		   struct query_info *info)
{
	char lower[DNS_NAME_TEXT_MAX], shown[DNS_NAME_TEXT_MAX];
	dns_name_format(&q->question.name, DNS_NAME_LOWER, lower, sizeof lower);
	dns_name_format(&q->question.name, DNS_NAME_PRESENTATION, shown, sizeof shown);
	info->qname = dup_text(shown);
	info->qtype = q->question.qtype;
	if (p->cfg.peer_process) {
		char exe[EXE_MAX] = "";
		int64_t pid = p->cfg.peer_process(p->cfg.ctx, proto, &src->addr, src->port,
						  &asked->addr, asked->port, exe, sizeof exe);
		info->pid = pid > 0 ? pid : 0;
		info->exe = pid > 0 && exe[0] ? dup_text(exe) : NULL;
	}
	if (q->header.opcode != DNS_OPCODE_QUERY)
		info->refused = &refuse_opcode;
	else if (q->question.qclass != DNS_CLASS_IN)
		info->refused = &refuse_qclass;
	else if (!q->question.name.hostname)
		info->refused = &refuse_qname;
	else if (!dns_proxy_qtype_forwarded(q->question.qtype))
		info->refused = &refuse_qtype;
	if (info->refused) {
		info->verdict.action = POLICY_DENY;
		return;
	}
	info->verdict = policy_decide_dns(p->cfg.policy, lower);
	if (info->verdict.action != POLICY_ALLOW)
		return;
	struct addr reverse;
	if (reverse_name_addr(lower, &reverse)) {
		enum range_class cls = policy_guard_address(p->cfg.policy, &reverse, 0, 0);
		if (cls != RANGE_PUBLIC) {
			info->verdict.action = POLICY_DENY;
			info->verdict.audit = false;
			info->verdict.line = 0;
			info->verdict.guard = range_class_name(cls);
			return;
		}
	}
	if (!names_admit(p, lower)) {
		info->refused = &refuse_names;
		info->verdict.action = POLICY_DENY;
	}
}

/* The answer's reply code for a query that is not forwarded. */
static uint8_t local_rcode(const struct query_info *info)
{
	return info->refused ? info->refused->rcode : DNS_RCODE_NXDOMAIN;
}

static void count_local(struct dns_proxy *p, const struct query_info *info)
{
	if (!info->refused)
		p->stats.denied++;
	else if (info->refused == &refuse_qtype || info->refused == &refuse_opcode)
		p->stats.refused_type++;
	else if (info->refused == &refuse_names)
		p->stats.refused_names++;
	else
		p->stats.refused++;
}

static bool guard_drop(const struct addr *address, void *ctx)
{
	struct guard_run *g = ctx;
	enum range_class cls = policy_guard_address(g->policy, address, 0, 0);
	if (cls == RANGE_PUBLIC)
		return false;
	if (g->n < DNS_MAX_ANSWERS) {
		snprintf(g->rules[g->n], GUARD_RULE_MAX, "guard:%s", range_class_name(cls));
		g->dropped[g->n].address = *address;
		g->dropped[g->n].rule = g->rules[g->n];
		g->n++;
	}
	g->total++;
	return true;
}

/* The rebinding guard on an upstream answer (msg, len), already parsed into p->reply: sets *out
 * to msg itself when it holds no guarded address, else to the answer rebuilt without them (at
 * most cap bytes, else a TC reply), parsed again into p->reply for the DNS map; p->guard says
 * what went. Returns 0, or -EBADMSG for a message the filter cannot rebuild. */
static int guard_answer(struct dns_proxy *p, const uint8_t *msg, size_t len, size_t cap,
			const uint8_t **out, size_t *out_len)
{
	struct dns_filter_result result;
	p->guard.policy = p->cfg.policy;
	p->guard.n = 0;
	p->guard.total = 0;
	int n = dns_filter_addresses(msg, len, guard_drop, &p->guard, p->filtered,
				     cap < sizeof p->filtered ? cap : sizeof p->filtered, &result);
	if (n < 0)
		return -EBADMSG;
	if (result.dropped == 0) {
		*out = msg;
		*out_len = len;
		return 0;
	}
	if (dns_parse_response(p->filtered, (size_t)n, &p->reply) < 0)
		return -EBADMSG;
	p->stats.guarded_answers++;
	p->stats.guarded_addresses += result.dropped;
	*out = p->filtered;
	*out_len = (size_t)n;
	return 0;
}

/* One stderr line for an answer the guard changed, naming the first few addresses. */
static void print_guard(struct dns_proxy *p, const struct query_info *info)
{
	char line[LOG_LINE_MAX], type[16];
	size_t o = 0;
	if (p->cfg.quiet || p->guard.total == 0)
		return;
	line[0] = '\0';
	for (size_t i = 0; i < p->guard.n && i < GUARD_LINE_MAX; i++) {
		char a[ADDR_STRLEN];
		addr_format(&p->guard.dropped[i].address, a, sizeof a);
		int w = snprintf(line + o, sizeof line - o, "%s%s by %s", i ? ", " : "", a,
				 p->guard.dropped[i].rule);
		if (w > 0 && (size_t)w < sizeof line - o)
			o += (size_t)w;
	}
	if (p->guard.total > GUARD_LINE_MAX)
		snprintf(line + o, sizeof line - o, " and %zu more",
			 p->guard.total - GUARD_LINE_MAX);
	dns_type_format(info->qtype, type, sizeof type);
	log_error("dropped from dns %s (%s): %s", info->qname ? info->qname : "?", type, line);
}

/* Writes the query's `dns` event; `answer` is the parsed upstream answer (as the application
 * received it) or NULL; `guard` what the guard removed from it, or NULL. */
static void log_query(struct dns_proxy *p, const struct query_info *info,
		      const struct dns_message *answer, const struct guard_run *guard,
		      const char *error)
{
	char rule[POLICY_RULE_LABEL_MAX];
	struct addr addrs[DNS_MAX_ANSWERS];
	size_t n = 0;

	if (!p->cfg.audit)
		return;
	if (answer)
		for (size_t i = 0; i < answer->n_answers; i++)
			if (answer->answers[i].type != DNS_TYPE_CNAME)
				addrs[n++] = answer->answers[i].address;
	policy_verdict_label(&info->verdict, rule, sizeof rule);
	struct audit_dns ev = {
		.meta = {
			.time_ms = p->cfg.wall_ms ? p->cfg.wall_ms(p->cfg.ctx) : 0,
			.pid = info->pid,
			.exe = info->exe,
		},
		.qname = info->qname ? info->qname : "?",
		.qtype = info->qtype,
		.decision = info->verdict.action == POLICY_ALLOW ? AUDIT_ALLOW : AUDIT_DENY,
		.rule = info->refused ? info->refused->rule : rule,
		.answers = addrs,
		.n_answers = n,
		.dropped = guard ? guard->dropped : NULL,
		.n_dropped = guard ? guard->n : 0,
		.resolver = info->resolver,
		.resolver_port = info->resolver_port,
		.error = info->refused ? info->refused->why : error,
	};
	audit_log_dns(p->cfg.audit, &ev);
}

static void print_denial(struct dns_proxy *p, const struct query_info *info)
{
	char rule[POLICY_RULE_LABEL_MAX], type[16];
	if (p->cfg.quiet)
		return;
	dns_type_format(info->qtype, type, sizeof type);
	if (info->refused) {
		log_error("refused dns %s (%s): %s", info->qname ? info->qname : "?", type,
			  info->refused->why);
		return;
	}
	policy_verdict_label(&info->verdict, rule, sizeof rule);
	log_error("denied dns %s (%s) by %s", info->qname ? info->qname : "?", type, rule);
}

/* The resolver a query goes to: the configured upstream, or the one the application asked. */
static void pick_resolver(const struct dns_proxy *p, const struct capture_endpoint *asked,
			  struct addr *addr, uint16_t *port)
{
	if (p->cfg.has_upstream) {
		*addr = p->cfg.upstream;
		*port = p->cfg.upstream_port;
	} else {
		*addr = asked->addr;
		*port = asked->port;
	}
}

/* Records the parsed answer p->reply in the DNS map, when the resolver it came from is trusted
 * (see dns_proxy_config.trusted). */
static void record_answer(struct dns_proxy *p, const struct query_info *info)
{
	bool trusted = p->cfg.has_upstream;
	struct addr resolver;

	if (!p->cfg.map)
		return;
	addr_unmap_v4(&info->resolver, &resolver);
	for (size_t i = 0; i < p->cfg.n_trusted && !trusted; i++)
		trusted = addr_equal(&p->trusted[i], &resolver);
	if (trusted)
		dns_map_record_response(p->cfg.map, &p->reply, loop_now(p->cfg.loop));
	else
		p->stats.untrusted++;
}

/* ---- UDP ---- */

static void pending_free(struct pending *q)
{
	struct dns_proxy *p = q->proxy;
	loop_io_stop(p->cfg.loop, &q->io);
	loop_timer_stop(p->cfg.loop, &q->timer);
	net_close(q->sock);
	info_free(&q->info);
	if (q->prev)
		q->prev->next = q->next;
	else
		p->pending = q->next;
	if (q->next)
		q->next->prev = q->prev;
	p->n_pending--;
	free(q);
}

static void on_pending_timeout(struct loop *loop, struct loop_timer *timer)
{
	(void)loop;
	struct pending *q = timer->arg;
	q->proxy->stats.timeouts++;
	log_query(q->proxy, &q->info, NULL, NULL, "resolver did not answer");
	pending_free(q);
}

static void on_pending_answer(struct loop *loop, struct loop_io *io, unsigned events)
{
	(void)loop;
	(void)events;
	struct pending *q = io->arg;
	struct dns_proxy *p = q->proxy;

	for (int i = 0; i < 8; i++) {
		long n = net_recv(q->sock, p->buf, sizeof p->buf);
		if (n == -EAGAIN)
			return;
		if (n < 0) {
			/* e.g. ECONNREFUSED from an ICMP port unreachable: the resolver is not
			 * there; let the application time out as it would. */
			p->stats.upstream_errors++;
			log_query(p, &q->info, NULL, NULL, err_text((int)-n));
			pending_free(q);
			return;
		}
		const uint8_t *reply;
		size_t reply_len;
		if (dns_parse_response(p->buf, (size_t)n, &p->reply) < 0 ||
		    p->reply.header.id != q->id || !p->reply.has_question ||
		    !dns_question_match(&p->reply.question, &q->question) ||
		    guard_answer(p, p->buf, (size_t)n, q->udp_max, &reply, &reply_len) < 0) {
			p->stats.malformed++; /* not the answer: keep waiting for it */
			continue;
		}
		record_answer(p, &q->info);
		int rc = p->cfg.capture->ops->udp_send(p->cfg.capture, &q->asked, &q->client, reply,
							reply_len);
		p->stats.answered++;
		log_query(p, &q->info, &p->reply, &p->guard,
			  rc < 0 ? "cannot deliver the answer" : NULL);
		print_guard(p, &q->info);
		pending_free(q);
		return;
	}
}

static void udp_forward(struct dns_proxy *p, const struct capture_endpoint *client,
			const struct capture_endpoint *asked, const uint8_t *msg, size_t len,
			struct query_info *info)
{
	if (p->n_pending >= DNS_PROXY_MAX_PENDING) {
		p->stats.shed++;
		log_query(p, info, NULL, NULL, "too many queries pending");
		info_free(info);
		return;
	}
	struct pending *q = calloc(1, sizeof *q);
	if (!q) {
		p->stats.shed++;
		info_free(info);
		return;
	}
	q->proxy = p;
	q->client = *client;
	q->asked = *asked;
	q->question = p->msg.question;
	q->id = p->msg.header.id;
	q->udp_max = DNS_UDP_CLASSIC_MAX;
	if (p->msg.edns.present && p->msg.edns.udp_size > DNS_UDP_CLASSIC_MAX)
		q->udp_max = p->msg.edns.udp_size;
	q->info = *info;
	memset(info, 0, sizeof *info);
	pick_resolver(p, asked, &q->info.resolver, &q->info.resolver_port);
	q->next = p->pending;
	if (p->pending)
		p->pending->prev = q;
	p->pending = q;
	p->n_pending++;
	loop_timer_init(&q->timer, on_pending_timeout, q);

	q->sock = net_udp_connect(&q->info.resolver, q->info.resolver_port);
	if (q->sock < 0) {
		p->stats.upstream_errors++;
		log_query(p, &q->info, NULL, NULL, err_text((int)-q->sock));
		q->sock = NET_INVALID;
		pending_free(q);
		return;
	}
	loop_io_init(&q->io, q->sock, on_pending_answer, q);
	long sent = net_send(q->sock, msg, len);
	if (sent < 0 || loop_io_start(p->cfg.loop, &q->io, LOOP_READ) < 0 ||
	    loop_timer_start(p->cfg.loop, &q->timer, timeout_ms(p)) < 0) {
		p->stats.upstream_errors++;
		log_query(p, &q->info, NULL, NULL,
			  sent < 0 ? err_text((int)-sent) : "out of resources");
		pending_free(q);
		return;
	}
	p->stats.forwarded++;
}

/* One datagram from the session. */
static void udp_query(struct dns_proxy *p, const struct capture_endpoint *client,
		      const struct capture_endpoint *asked, size_t len)
{
	struct capture *cap = p->cfg.capture;
	uint8_t reply[DNS_NAME_WIRE_MAX + 64];

	if (dns_parse_query(p->buf, len, &p->msg) < 0) {
		p->stats.malformed++;
		int n = dns_build_formerr(p->buf, len, reply, sizeof reply);
		if (n > 0)
			cap->ops->udp_send(cap, asked, client, reply, (size_t)n);
		return;
	}
	p->stats.queries++;
	struct query_info info = {0};
	decide(p, &p->msg, 17, client, asked, &info);
	if (info.verdict.action != POLICY_ALLOW) {
		int n = dns_build_reply(&p->msg, local_rcode(&info), reply, sizeof reply);
		if (n > 0)
			cap->ops->udp_send(cap, asked, client, reply, (size_t)n);
		count_local(p, &info);
		log_query(p, &info, NULL, NULL, NULL);
		print_denial(p, &info);
		info_free(&info);
		return;
	}
	udp_forward(p, client, asked, p->buf, len, &info);
}

static void on_udp_readable(struct loop *loop, struct loop_io *io, unsigned events)
{
	(void)loop;
	(void)events;
	struct udp_listener *l = io->arg;
	struct dns_proxy *p = l->proxy;
	struct capture *cap = p->cfg.capture;

	for (int i = 0; i < UDP_BURST; i++) {
		struct capture_endpoint client, asked;
		int n = cap->ops->udp_recv(cap, io->sock, p->buf, sizeof p->buf, &client, &asked);
		if (n == -EAGAIN)
			return;
		if (n < 0) {
			p->stats.malformed++; /* oversize, not captured, or a socket error */
			continue;
		}
		udp_query(p, &client, &asked, (size_t)n);
	}
}

/* ---- TCP ---- */

static void tcp_free(struct tcp_conn *c)
{
	struct dns_proxy *p = c->proxy;
	loop_io_stop(p->cfg.loop, &c->client_io);
	loop_io_stop(p->cfg.loop, &c->upstream_io);
	loop_timer_stop(p->cfg.loop, &c->timer);
	net_close(c->client);
	net_close(c->upstream);
	info_free(&c->info);
	if (c->prev)
		c->prev->next = c->next;
	else
		p->tcp_conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	p->n_tcp--;
	free(c);
}

/* Ends the connection; a query in flight gets its event with `error`. */
static void tcp_close(struct tcp_conn *c, const char *error)
{
	if (c->state == TCP_FORWARD)
		log_query(c->proxy, &c->info, NULL, NULL, error);
	tcp_free(c);
}

static void tcp_step(struct tcp_conn *c);

/* Frames msg (len bytes) into out for the client and switches to writing it. */
static void tcp_reply(struct tcp_conn *c, const uint8_t *msg, size_t len)
{
	dns_tcp_prefix(c->out, len);
	memcpy(c->out + 2, msg, len);
	c->out_len = len + 2;
	c->out_off = 0;
	c->state = TCP_WRITE_REPLY;
}

/* A complete query (msg, len) came from the client: decide it, answer or forward it.
 * Returns false when the connection was closed (c is then gone). */
static bool tcp_query(struct tcp_conn *c, const uint8_t *msg, size_t len)
{
	struct dns_proxy *p = c->proxy;
	uint8_t reply[DNS_NAME_WIRE_MAX + 64];

	if (dns_parse_query(msg, len, &p->msg) < 0) {
		p->stats.malformed++;
		int n = dns_build_formerr(msg, len, reply, sizeof reply);
		if (n <= 0) {
			tcp_close(c, NULL);
			return false;
		}
		tcp_reply(c, reply, (size_t)n);
		return true;
	}
	p->stats.queries++;
	info_free(&c->info);
	decide(p, &p->msg, 6, &c->peer, &c->asked, &c->info);
	if (c->info.verdict.action != POLICY_ALLOW) {
		int n = dns_build_reply(&p->msg, local_rcode(&c->info), reply, sizeof reply);
		count_local(p, &c->info);
		log_query(p, &c->info, NULL, NULL, NULL);
		print_denial(p, &c->info);
		if (n <= 0) {
			tcp_close(c, NULL);
			return false;
		}
		tcp_reply(c, reply, (size_t)n);
		return true;
	}
	c->question = p->msg.question;
	c->id = p->msg.header.id;
	pick_resolver(p, &c->asked, &c->info.resolver, &c->info.resolver_port);
	dns_tcp_prefix(c->up_out, len);
	memcpy(c->up_out + 2, msg, len);
	c->up_out_len = len + 2;
	c->up_out_off = 0;
	c->up_in_len = 0;
	c->state = TCP_FORWARD;
	p->stats.forwarded++;
	if (c->upstream == NET_INVALID) {
		bool done = false;
		loop_sock s = net_connect_start(&c->info.resolver, c->info.resolver_port, &done);
		if (s < 0) {
			p->stats.upstream_errors++;
			tcp_close(c, err_text((int)-s));
			return false;
		}
		c->upstream = s;
		c->upstream_connected = done;
		loop_io_init(&c->upstream_io, s, c->upstream_io.fn, c);
	}
	return true;
}

/* Reads what the client sent; returns false when the connection was closed. */
static bool tcp_read_client(struct tcp_conn *c)
{
	long n = net_recv(c->client, c->in + c->in_len, sizeof c->in - c->in_len);
	if (n == -EAGAIN)
		return true;
	if (n <= 0) {
		tcp_close(c, n == 0 ? "client closed" : err_text((int)-n));
		return false;
	}
	c->in_len += (size_t)n;
	return true;
}

/* Moves the forwarded query out and the answer in; returns false when closed. */
static bool tcp_forward_io(struct tcp_conn *c)
{
	struct dns_proxy *p = c->proxy;
	if (!c->upstream_connected) {
		int err = net_connect_result(c->upstream);
		if (err < 0) {
			p->stats.upstream_errors++;
			tcp_close(c, err_text(-err));
			return false;
		}
		c->upstream_connected = true;
	}
	while (c->up_out_off < c->up_out_len) {
		long n = net_send(c->upstream, c->up_out + c->up_out_off,
				  c->up_out_len - c->up_out_off);
		if (n == -EAGAIN)
			return true;
		if (n < 0) {
			p->stats.upstream_errors++;
			tcp_close(c, err_text((int)-n));
			return false;
		}
		c->up_out_off += (size_t)n;
	}
	long n = net_recv(c->upstream, c->up_in + c->up_in_len, sizeof c->up_in - c->up_in_len);
	if (n == -EAGAIN)
		return true;
	if (n <= 0) {
		p->stats.upstream_errors++;
		tcp_close(c, n == 0 ? "resolver closed the connection" : err_text((int)-n));
		return false;
	}
	c->up_in_len += (size_t)n;
	const uint8_t *msg;
	size_t len;
	int used = dns_tcp_next(c->up_in, c->up_in_len, &msg, &len);
	if (used == 0)
		return true;
	const uint8_t *reply;
	size_t reply_len;
	if (used < 0 || dns_parse_response(msg, len, &p->reply) < 0 ||
	    p->reply.header.id != c->id || !p->reply.has_question ||
	    !dns_question_match(&p->reply.question, &c->question) ||
	    guard_answer(p, msg, len, DNS_MESSAGE_MAX, &reply, &reply_len) < 0) {
		p->stats.malformed++;
		tcp_close(c, "unreadable answer");
		return false;
	}
	record_answer(p, &c->info);
	p->stats.answered++;
	log_query(p, &c->info, &p->reply, &p->guard, NULL);
	print_guard(p, &c->info);
	tcp_reply(c, reply, reply_len);
	/* Bytes after the answer are not expected (one query at a time): drop them. */
	c->up_in_len = 0;
	return true;
}

/* Writes the pending reply; returns false when closed. */
static bool tcp_write_client(struct tcp_conn *c)
{
	while (c->out_off < c->out_len) {
		long n = net_send(c->client, c->out + c->out_off, c->out_len - c->out_off);
		if (n == -EAGAIN)
			return true;
		if (n < 0) {
			tcp_close(c, err_text((int)-n));
			return false;
		}
		c->out_off += (size_t)n;
	}
	c->state = TCP_READ_QUERY;
	return true;
}

/* True when a complete query waits in `in` for its turn. */
static bool tcp_query_waiting(const struct tcp_conn *c)
{
	const uint8_t *msg;
	size_t len;
	return c->state == TCP_READ_QUERY && dns_tcp_next(c->in, c->in_len, &msg, &len) != 0;
}

/* Advances the connection as far as it can go, then sets what each socket waits for. */
static void tcp_step(struct tcp_conn *c)
{
	struct dns_proxy *p = c->proxy;
	for (int round = 0; round < 8; round++) {
		enum tcp_state before = c->state;
		bool took_query = false; /* READ -> ... -> READ is progress: a pipelined query */
		if (c->state == TCP_READ_QUERY) {
			const uint8_t *msg;
			size_t len;
			int used = dns_tcp_next(c->in, c->in_len, &msg, &len);
			if (used < 0) {
				p->stats.malformed++;
				tcp_close(c, NULL);
				return;
			}
			if (used > 0) {
				if (!tcp_query(c, msg, len))
					return;
				memmove(c->in, c->in + used, c->in_len - (size_t)used);
				c->in_len -= (size_t)used;
				took_query = true;
			}
		}
		if (c->state == TCP_FORWARD && c->upstream_connected && !tcp_forward_io(c))
			return;
		if (c->state == TCP_WRITE_REPLY && !tcp_write_client(c))
			return;
		if (c->state == before && !took_query)
			break;
	}
	unsigned client_events = c->state == TCP_READ_QUERY ? LOOP_READ
				  : c->state == TCP_WRITE_REPLY ? LOOP_WRITE : 0;
	unsigned upstream_events = 0;
	if (c->state == TCP_FORWARD)
		upstream_events = !c->upstream_connected || c->up_out_off < c->up_out_len
					  ? LOOP_WRITE : LOOP_READ;
	if (loop_io_start(p->cfg.loop, &c->client_io, client_events) < 0 ||
	    (c->upstream != NET_INVALID &&
	     loop_io_start(p->cfg.loop, &c->upstream_io, upstream_events) < 0)) {
		tcp_close(c, "out of resources");
		return;
	}
	/* Queries still waiting in `in` (a long pipeline) continue on the next iteration, so that
	 * one connection cannot hold the loop; otherwise the timer is the idle timeout. */
	loop_timer_start(p->cfg.loop, &c->timer, tcp_query_waiting(c) ? 0 : timeout_ms(p));
}

static void on_tcp_client(struct loop *loop, struct loop_io *io, unsigned events)
{
	(void)loop;
	struct tcp_conn *c = io->arg;
	if ((events & LOOP_READ) && c->state == TCP_READ_QUERY && !tcp_read_client(c))
		return;
	tcp_step(c);
}

static void on_tcp_upstream(struct loop *loop, struct loop_io *io, unsigned events)
{
	(void)loop;
	(void)events;
	struct tcp_conn *c = io->arg;
	if (c->state == TCP_FORWARD && !tcp_forward_io(c))
		return;
	tcp_step(c);
}

static void on_tcp_timeout(struct loop *loop, struct loop_timer *timer)
{
	(void)loop;
	struct tcp_conn *c = timer->arg;
	if (tcp_query_waiting(c)) {
		tcp_step(c);
		return;
	}
	if (c->state == TCP_FORWARD)
		c->proxy->stats.timeouts++;
	tcp_close(c, "resolver did not answer");
}

static void on_tcp_accept(struct loop *loop, struct loop_io *io, unsigned events)
{
	(void)loop;
	(void)events;
	struct tcp_listener *l = io->arg;
	struct dns_proxy *p = l->proxy;
	struct capture *cap = p->cfg.capture;

	for (int i = 0; i < 16; i++) {
		struct addr peer;
		uint16_t port;
		loop_sock s = net_accept(io->sock, &peer, &port);
		if (s == -EAGAIN)
			return;
		if (s < 0) {
			p->stats.shed++; /* at the descriptor limit: net_accept shed one */
			return;
		}
		struct tcp_conn *c = p->n_tcp < DNS_PROXY_MAX_TCP ? calloc(1, sizeof *c) : NULL;
		if (!c) {
			net_reset(s);
			p->stats.shed++;
			continue;
		}
		c->proxy = p;
		c->client = s;
		c->upstream = NET_INVALID;
		c->peer.addr = peer;
		c->peer.port = port;
		c->next = p->tcp_conns;
		if (p->tcp_conns)
			p->tcp_conns->prev = c;
		p->tcp_conns = c;
		p->n_tcp++;
		loop_io_init(&c->client_io, s, on_tcp_client, c);
		loop_io_init(&c->upstream_io, NET_INVALID, on_tcp_upstream, c);
		loop_timer_init(&c->timer, on_tcp_timeout, c);
		if (cap->ops->tcp_original_dst(cap, s, &c->asked) < 0) {
			tcp_free(c);
			continue;
		}
		tcp_step(c);
	}
}

int dns_proxy_new(struct dns_proxy **out, const struct dns_proxy_config *cfg)
{
	struct dns_proxy *p = calloc(1, sizeof *p);
	if (!p)
		return -ENOMEM;
	p->cfg = *cfg;
	if (cfg->n_trusted > DNS_PROXY_MAX_TRUSTED) {
		free(p);
		return -EINVAL;
	}
	for (size_t i = 0; i < cfg->n_trusted; i++)
		addr_unmap_v4(&cfg->trusted[i], &p->trusted[i]);
	p->cfg.trusted = p->trusted;
	for (int f = 0; f < CAPTURE_FAMILIES; f++) {
		loop_sock u = cfg->capture->listeners[CAPTURE_DNS_UDP][f].sock;
		loop_sock t = cfg->capture->listeners[CAPTURE_DNS_TCP][f].sock;
		p->udp[f].proxy = p;
		p->tcp[f].proxy = p;
		loop_io_init(&p->udp[f].io, u, on_udp_readable, &p->udp[f]);
		loop_io_init(&p->tcp[f].io, t, on_tcp_accept, &p->tcp[f]);
		int rc = 0;
		if (u != CAPTURE_NO_SOCK)
			rc = loop_io_start(cfg->loop, &p->udp[f].io, LOOP_READ);
		if (rc == 0 && t != CAPTURE_NO_SOCK)
			rc = loop_io_start(cfg->loop, &p->tcp[f].io, LOOP_READ);
		if (rc < 0) {
			dns_proxy_free(p);
			return rc;
		}
	}
	*out = p;
	return 0;
}

void dns_proxy_free(struct dns_proxy *p)
{
	if (!p)
		return;
	while (p->pending) {
		log_query(p, &p->pending->info, NULL, NULL, "session ended");
		pending_free(p->pending);
	}
	while (p->tcp_conns)
		tcp_close(p->tcp_conns, "session ended");
	for (int f = 0; f < CAPTURE_FAMILIES; f++) {
		loop_io_stop(p->cfg.loop, &p->udp[f].io);
		loop_io_stop(p->cfg.loop, &p->tcp[f].io);
	}
	free(p->names.slots);
	free(p);
}

void dns_proxy_get_stats(const struct dns_proxy *p, struct dns_proxy_stats *out)
{
	*out = p->stats;
}

size_t dns_proxy_guard_parsed(const struct policy *p, struct dns_message *m)
{
	size_t kept = 0, removed = 0;
	for (size_t i = 0; i < m->n_answers; i++) {
		const struct dns_record *r = &m->answers[i];
		if (r->type != DNS_TYPE_CNAME &&
		    policy_guard_address(p, &r->address, 0, 0) != RANGE_PUBLIC) {
			removed++;
			continue;
		}
		if (kept != i)
			m->answers[kept] = *r;
		kept++;
	}
	m->n_answers = kept;
	return removed;
}
