/* engine.h — the divert engine: userspace NAT that turns a session's packets into proxy flows.
 *
 * Platform-neutral: no OS calls. A capture backend (NFQUEUE on Linux, WinDivert on Windows)
 * hands every packet it captured to engine_process() and applies the verdict: pass it unchanged,
 * reinject it as rewritten in place, or drop it. The engine owns the flows (two NAT tables, TCP
 * and UDP), the session PID set, the fail mode and the counters. One thread owns an engine.
 *
 * What it does with a packet (DESIGN.md, "The divert engine"; notes/windivert.md §6, the
 * "loopback" variant, which is also what works on Linux):
 *
 *   session packet C:c -> D:d  (TCP, or UDP)    becomes   C:m -> L:P
 *   listener reply L:P -> C:m                   becomes   D:d -> C:c
 *
 * where L is the listeners' loopback address of the family (cfg.listen), P the listener port
 * for the packet's kind (TCP, TCP/53, UDP/53, other UDP), and m the flow's *mapped port*: c
 * itself, unless another flow already holds (C, c) — a live one or a closed one lingering (see
 * Flows) — the kernel may reuse one source port for connections to different destinations, and
 * an unconnected UDP socket talks to many — in which case the engine picks a free port m and
 * rewrites the source port too (also when c is 0 or one of the listener ports: m never is). The
 * proxy sees the peer C:m on its listener and asks engine_lookup() where it was going.
 *
 * With cfg.rewrite_source (Windows: WinDivert only loops a packet back when both of its
 * addresses are loopback ones) the source address becomes L as well — C:c -> D:d becomes
 * L:m -> L:P, and the reply L:P -> L:m becomes D:d -> C:c — so mapped ports are unique per
 * family rather than per client address, and each flow remembers C through a small table of the
 * client addresses seen (at most ENGINE_MAX_CLIENT_ADDRS over the engine's life, the machine's
 * own addresses; a new flow from one more is refused as ENGINE_ERR_TABLE_FULL). On Linux the
 * client already is a loopback address of the session namespace and the source is left alone.
 *
 * Flows: a TCP flow starts with a SYN (without ACK); a UDP flow with any datagram. The TCP
 * table is keyed by (TCP, C, m) and records D:d, the pid and c; so is the UDP table. Flows whose
 * mapped port differs from the client port are also found from the client side through a
 * second key (a keyed digest of C, D and d with port c), always verified against the flow.
 * Every flow is removed after cfg idle time without packets. A TCP flow is *established* once
 * an ACK from the client or the listener's SYN|ACK passed, and *closed* (it ends: counted once
 * in flows_ended) when a RST passes either way or when FINs have gone both ways (at the second
 * FIN). A closed flow *lingers*: for ENGINE_TCP_LINGER_MS its packets are still rewritten both
 * ways, so that the last ACKs, retransmitted FINs and RSTs of the connection (a simultaneous
 * close, a reordered ACK) reach the peer, and its mapped port stays taken, because the
 * listener's socket of it may sit in TIME_WAIT (60 s on Linux); engine_lookup() no longer
 * reports it. engine_tick() then removes it. At most ENGINE_LINGER_MAX flows linger: when one
 * more closes, the one that closed first is removed at once (counted in linger_overflow).
 * A SYN (without ACK) on a flow's four-tuple is a retransmit while the flow is neither
 * established nor closed, and keeps the mapping; otherwise it is a new connection reusing the
 * tuple: the old flow is removed (flows_reused) and the new one gets a fresh mapped port, never
 * c nor the old flow's, whose listener sockets may be in TIME_WAIT.
 *
 * Which packets are whose, in this order:
 *   - a *listener reply*: source address == cfg.listen[family] and source port is one of that
 *     family's listener ports (for its protocol), whatever its pid; it must come from its flow's
 *     own listener port, else it is an unknown reply;
 *   - packets of cfg.proxy_pid (when non-zero) pass unchanged: sluice's own upstream flows
 *     are never diverted (on Linux they are in another namespace and never captured at all);
 *   - a *session packet*: everything else, when cfg.session_by_pid is false (Linux: the
 *     namespace is the session); when it is true (Windows), only packets whose pid is in the
 *     session PID set — the others pass unchanged;
 *   - session packets addressed to a listener itself (L:P, not through the engine) are
 *     dropped; other session packets to a loopback destination (127.0.0.0/8, ::1) pass
 *     unchanged (traffic inside the machine / namespace is not captured), except DNS
 *     (destination port 53, TCP and UDP) which is diverted whatever its destination;
 *   - the other session packets of a family without a listener get the fail verdict
 *     (ENGINE_ERR_NO_FAMILY);
 *   - other IP protocols (ICMP, ...) and fragments of session packets are dropped: only TCP and
 *     UDP are relayed (counted; not errors).
 * A malformed packet cannot be sorted, so it gets the fail verdict (below) — unless
 * cfg.session_by_pid and its pid is known and neither a session pid nor cfg.proxy_pid: another
 * program's packet passes unchanged, counted in not_session.
 *
 * Errors and fail mode: a packet the engine cannot handle — malformed or truncated (never
 * rewritten), a new flow refused because the table is full and nothing may be evicted, no free
 * mapped port, a TCP packet of no known flow that is not a SYN ("stray"), a listener reply of no
 * known flow ("unknown reply") — gets the *fail verdict*: ENGINE_DROP with cfg.fail_open false
 * (the default, `--fail closed`), ENGINE_PASS with fail_open true. Each such packet, and each
 * error the backend reports with engine_note_error(), is one error; cfg.fail_threshold
 * consecutive errors enter *fail mode*, and the next packet handled successfully (rewritten)
 * leaves it; packets passed or dropped by the rules above are neither errors nor successes. Fail
 * mode changes no verdict (the fail verdict applies to every unhandled packet already); it is
 * the alarm the user sees: entering and leaving call cfg.on_fail_mode once each (the session
 * turns them into an audit event and a stderr line).
 *
 * Checksums: pkt_rewrite's incremental update (RFC 1624) — exact when the captured checksums
 * were complete. Backends whose packets carry partial checksums must complete them first.
 *
 * Time is an argument (now_ms, monotonic milliseconds), as in the NAT table.
 */
#ifndef SLUICE_DIVERT_ENGINE_H
#define SLUICE_DIVERT_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/addr.h"
#include "divert/packet.h"

enum engine_verdict {
	ENGINE_PASS = 0,    /* reinject unchanged */
	ENGINE_REWRITE = 1, /* reinject the buffer as rewritten (same length) */
	ENGINE_DROP = 2,
};

/* Which listener a diverted packet goes to. */
enum engine_kind {
	ENGINE_TCP = 0,     /* TCP, destination port != 53 */
	ENGINE_DNS_TCP = 1, /* TCP to port 53 */
	ENGINE_DNS_UDP = 2, /* UDP to port 53 */
	ENGINE_UDP = 3,     /* other UDP */
	ENGINE_KINDS = 4,
};

enum engine_family {
	ENGINE_IPV4 = 0,
	ENGINE_IPV6 = 1,
	ENGINE_FAMILIES = 2,
};

/* Defaults applied for zero fields of struct engine_config. */
#define ENGINE_DEFAULT_FAIL_THRESHOLD 10
#define ENGINE_DEFAULT_TCP_CAPACITY 65536
#define ENGINE_DEFAULT_UDP_CAPACITY 8192
#define ENGINE_DEFAULT_TCP_IDLE_MS (2 * 3600 * 1000ull + 4 * 60 * 1000ull) /* RFC 5382: 2h4m */
#define ENGINE_DEFAULT_UDP_IDLE_MS (120 * 1000ull)                         /* RFC 4787: 2 min */
#define ENGINE_DEFAULT_MIN_EVICT_IDLE_MS (30 * 1000ull)
/* A closed TCP flow lingers this long (Linux's TIME_WAIT is 60 s, plus margin; see Flows). */
#define ENGINE_TCP_LINGER_MS (65 * 1000ull)
/* At most this many closed TCP flows linger at once (the queue is allocated by engine_new). */
#define ENGINE_LINGER_MAX 16384
#define ENGINE_MAX_SESSION_PIDS 65536
#define ENGINE_MAX_CLIENT_ADDRS 255

struct engine_config {
	/* The listeners: per family, their loopback address (family ADDR_NONE: that family is
	 * not diverted; its session packets get the fail verdict) and per kind their port. */
	struct addr listen[ENGINE_FAMILIES];
	uint16_t port[ENGINE_KINDS][ENGINE_FAMILIES];

	bool fail_open;          /* --fail open: unhandled packets pass instead of being dropped */
	unsigned fail_threshold; /* consecutive errors that enter fail mode; 0: the default */

	bool rewrite_source; /* also rewrite the source address to listen[family] (see above) */
	bool session_by_pid; /* only packets of pids in the session set are session packets */
	uint32_t proxy_pid;  /* packets of this pid pass unchanged; 0: none */

	uint32_t tcp_capacity, udp_capacity; /* flows; 0: the defaults */
	uint64_t tcp_idle_ms, udp_idle_ms;   /* 0: the defaults */
	uint64_t min_evict_idle_ms;          /* 0: the default (capped at the idle times) */
	uint64_t hash_seed;                  /* draw it from the OS random source */

	/* Called when fail mode is entered (entered = true) or left, with the error that
	 * entered it (an engine_error_name()) or NULL when leaving. May be NULL. */
	void (*on_fail_mode)(void *ctx, bool entered, const char *reason);
	void *ctx;
};

/* One captured packet. buf is rewritten in place for ENGINE_REWRITE (the length never
 * changes). */
struct engine_packet {
	uint8_t *buf;
	size_t len;
	uint32_t pid; /* the sending process when the platform knows it, else 0 */
};

/* Errors counted (engine_note_error's `what` too). */
enum engine_error {
	ENGINE_ERR_MALFORMED = 0,     /* pkt_parse failed (stats.malformed says why) */
	ENGINE_ERR_TABLE_FULL = 1,    /* a new flow refused: table full, nothing evictable */
	ENGINE_ERR_NO_PORT = 2,       /* a new flow needed a mapped port and none was free */
	ENGINE_ERR_STRAY = 3,         /* a session TCP packet of no flow, not a SYN */
	ENGINE_ERR_UNKNOWN_REPLY = 4, /* a listener reply of no flow */
	ENGINE_ERR_NO_FAMILY = 5,     /* a session packet of a family with no listener */
	ENGINE_ERR_BACKEND = 6,       /* reported by the backend (receive, verdict, reinject) */
	ENGINE_ERRORS = 7,
};

struct engine_stats {
	uint64_t packets;            /* every engine_process call */
	uint64_t diverted;           /* session packets rewritten towards a listener */
	uint64_t replies;            /* listener replies rewritten back to the application */
	uint64_t passed;             /* ENGINE_PASS verdicts, fail verdicts included */
	uint64_t dropped;            /* ENGINE_DROP verdicts, fail verdicts included */
	uint64_t not_session;        /* passed: pid not in the session set, or the proxy's own */
	uint64_t loopback;           /* passed: session packets to loopback destinations */
	uint64_t to_listener;        /* dropped: session packets straight to a listener */
	uint64_t other_proto;        /* dropped: session packets neither TCP nor UDP */
	uint64_t fragments;          /* dropped: fragments of session packets */
	uint64_t flows_created;      /* TCP and UDP */
	uint64_t flows_remapped;     /* of which the mapped port differs from the client's */
	uint64_t flows_ended;        /* TCP flows closed by a RST or FINs both ways (once each) */
	uint64_t flows_expired;      /* removed by engine_tick after their idle time */
	uint64_t flows_evicted;      /* replaced by a new flow in a full table */
	uint64_t flows_reused;       /* TCP flows replaced by a new connection on their tuple */
	uint64_t linger_overflow;    /* closed flows removed before their linger: queue full */
	uint64_t errors[ENGINE_ERRORS];
	uint64_t malformed[PKT_RESULT_COUNT]; /* by pkt_parse result (index -rc), malformed only */
	uint64_t fail_mode_entered;  /* times fail mode was entered */
	bool in_fail_mode;
	/* Entries now: live, lingering and expired-but-not-yet-swept ones. */
	uint32_t tcp_flows, udp_flows;
};

/* What the engine knows about a flow, for the proxy. */
struct engine_flow {
	struct addr client;   /* the application's socket: address ... */
	uint16_t client_port; /* ... and port, as the application sees it (c) */
	uint16_t mapped_port; /* the port the listener sees as its peer's (m) */
	struct addr orig_dst; /* where the application was going */
	uint16_t orig_port;
	uint32_t pid; /* 0 when unknown */
};

struct engine;

/* Creates an engine; all memory is allocated here (per protocol a flow table and a remap table
 * of the same capacity, the PID set, the linger queue). Returns 0 and *out (free with
 * engine_free); -EINVAL for an invalid config (no listener family, a listen address that is not
 * a loopback address of its family — 127.0.0.0/8 in listen[ENGINE_IPV4], ::1 in
 * listen[ENGINE_IPV6] — a zero port of a configured family, idle times below
 * min_evict_idle_ms, a capacity above NAT_CAPACITY_MAX); -ENOMEM. */
int engine_new(struct engine **out, const struct engine_config *cfg);

/* Frees everything; accepts NULL. */
void engine_free(struct engine *e);

/* Decides one packet (see the top of this file) and rewrites it in place for ENGINE_REWRITE.
 * Never reads or writes beyond p->len. */
enum engine_verdict engine_process(struct engine *e, struct engine_packet *p, uint64_t now_ms);

/* The flow whose listener-side peer is peer:port (proto 6 or 17): what the proxy asks for an
 * accepted connection or a received datagram. Refreshes the flow's idle time. Returns 0 and
 * *out; -ENOENT when no live flow has that peer (a closed, lingering TCP flow is not live);
 * -EINVAL for a bad argument. */
int engine_lookup(struct engine *e, int proto, const struct addr *peer, uint16_t port,
		  uint64_t now_ms, struct engine_flow *out);

/* Counts one backend error (recv, verdict or reinject failed) towards fail mode; a `what`
 * outside the enum counts as ENGINE_ERR_BACKEND. */
void engine_note_error(struct engine *e, enum engine_error what);

/* Removes flows idle past their time and closed TCP flows past their linger; call about once a
 * second. Returns how many flows it removed. */
size_t engine_tick(struct engine *e, uint64_t now_ms);

/* The session PID set (used when cfg.session_by_pid). Adding a present pid is a no-op;
 * removing a pid also removes its flows. add returns 0, or -ENOSPC beyond
 * ENGINE_MAX_SESSION_PIDS, -EINVAL for pid 0. */
int engine_add_pid(struct engine *e, uint32_t pid);
void engine_remove_pid(struct engine *e, uint32_t pid);
bool engine_is_session_pid(const struct engine *e, uint32_t pid);

void engine_get_stats(const struct engine *e, struct engine_stats *out);

/* One counter of struct engine_stats by its report name ("divert_packets", ...). */
struct engine_counter {
	const char *name; /* static */
	uint64_t value;
};

/* Lists the counters of *s under the names both divert backends report (`--stats`,
 * session_end): up to max into out (ENGINE_COUNTERS_MAX holds them all); returns how many
 * were written. */
#define ENGINE_COUNTERS_MAX 32
size_t engine_counters(const struct engine_stats *s, struct engine_counter *out, size_t max);

/* "malformed", "table_full", ... ; "unknown" outside the enum. Never NULL. */
const char *engine_error_name(enum engine_error what);

#endif
