/* windivert.c — the divert backend on Windows: the divert engine fed by WinDivert 2.2.
 *
 * Two WinDivert handles (notes/windivert.md §5, §6, §12):
 *   - a SOCKET-layer handle (SNIFF|RECV_ONLY) whose CONNECT and CLOSE events, read by the socket
 *     thread, keep a bounded map (protocol, local address:port, remote address:port) -> pid,
 *     because NETWORK-layer packets carry no process id;
 *   - a NETWORK-layer handle diverting outbound non-loopback TCP/UDP, loopback DNS and the
 *     listeners' loopback replies (divert_filter), read by the packet thread in batches.
 * Each packet gets the pid of its tuple (an outbound packet's local end is its source) and goes
 * through engine_process() under `lock`. There is no ordering between a CONNECT event and its
 * first packet: a TCP SYN or a UDP datagram whose tuple has no pid yet is held (at most
 * WDC_HOLD_MAX packets, hold_ms each) until the CONNECT arrives, then handled; when none comes
 * it is handled with pid 0, as no session's (passed). Listener replies never wait.
 *
 * Reinjection follows the "loopback" variant (§6): a packet rewritten towards a listener has
 * both addresses loopback and is sent Outbound with the Loopback flag, as WinDivert only loops
 * such packets back; a reply rewritten back to the application is sent Outbound as well, the way
 * Tallow and mitmproxy_rs do on 2.2 (the documentation calls an inbound packet injected on the
 * outbound path undocumented behaviour that may change; it works in 2.2.x and is the only path
 * that works for loopback). Rewritten packets get whole new checksums (captured outbound packets
 * often carry offloaded, invalid ones, §7) and their checksum-valid flags cleared so that the
 * driver computes them too. Passed packets go back unchanged with their captured address.
 *
 * DNS: a session process's own DNS (destination port 53, any destination, loopback resolvers
 * included) is diverted to the DNS listeners. Most programs, though, resolve through the DNS
 * Client service, whose packets carry that service's pid: they are no session's and pass. So
 * that the session's DNS map still learns what the system resolver was told, a third handle
 * (NETWORK, SNIFF|RECV_ONLY, read by the DNS thread) sees inbound UDP from port 53, and the
 * packet thread remembers each non-loopback UDP query to port 53 it passes for the DNS Client
 * service (its pid found at open; when it cannot be found, for any process that is neither the
 * session's nor sluice's: the DNS proxy's own queries are never watched, what it records went
 * through the policy); an answer with a valid checksum that matches a remembered query
 * (dns_watch.h: flow, id, question) is handed to the loop's thread (on_dns_answer), which
 * records it only for a name the policy allows. Loopback resolvers are not watched: any local
 * process, the session's included, could answer in their place.
 *
 * Threads: the socket thread and the packet thread never wait for the loop's thread. The engine
 * is shared with the loop's thread (lookups, the PID set) under `lock`; the pid map is shared by
 * the two threads under `map_lock`. Fail-mode transitions are queued under `lock` and reported
 * on the loop's thread through a loopback UDP datagram, because the audit trail belongs there.
 */
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/addr.h"
#include "base/hash.h"
#include "base/log.h"
#include "base/net.h"
#include "base/os.h"
#include "base/wsa_windows.h"
#include "capture/capture.h"
#include "capture/capture_windivert.h"
#include "capture/windivert_api.h"
#include "divert/engine.h"
#include "divert/packet.h"
#include "proxy/dns_watch.h"

#ifndef SIO_UDP_CONNRESET
#define SIO_UDP_CONNRESET _WSAIOW(IOC_VENDOR, 12)
#endif

#define WDC_PRIORITY 0
#define WDC_DNS_PRIORITY (-1)        /* the DNS watch: after the diverting handle */
#define WDC_ADDR_SIZE ((UINT)sizeof(struct wd_address))
#define WDC_BATCH 64                 /* packets per RecvEx / SendEx */
#define WDC_RX_SIZE (4 * WD_MTU_MAX) /* a whole packet of any size always fits */
#define WDC_SOCK_BATCH 64            /* socket events per RecvEx */
#define WDC_HOLD_MAX 256             /* packets waiting for their CONNECT */
#define WDC_HOLD_BYTES (4u << 20)
#define WDC_MAP_CAPACITY 65536       /* tuples -> pid */
#define WDC_MAP_BUCKETS 65536
#define WDC_CLOSED_GRACE_MS (70 * 1000ull) /* a closed socket's tuple still has its pid */
#define WDC_TICK_MS 1000
#define WDC_MAX_ERRORS 1000          /* consecutive receive errors that end a thread */
#define WDC_QUEUE_LENGTH 8192
#define WDC_QUEUE_SIZE (16u << 20)
#define WDC_FILTER_MAX 1024
#define WDC_EVENTS 16
#define WDC_ANSWERS 64               /* matched answers waiting for the loop's thread */

/* ---- the pid map ---- */

struct tuple {
	struct addr local, remote;
	uint16_t lport, rport;
	uint8_t proto;
};

struct pid_entry {
	struct tuple t;
	uint32_t pid;
	bool used, closed, checked;
	uint64_t closed_ms;
	uint32_t hnext;      /* bucket chain: index + 1, 0 ends */
	uint32_t prev, next; /* the live or the closed list: index + 1, 0 ends */
};

struct pid_list {
	uint32_t head, tail; /* index + 1 */
};

/* Entries are on the live list (oldest CONNECT first) or, once closed, on the closed list
 * (oldest CLOSE first); a full map evicts the oldest closed entry, else the oldest live one. */
struct pid_map {
	struct pid_entry *e;
	uint32_t *buckets;
	uint32_t free_head; /* chained through hnext */
	uint32_t count;
	struct pid_list live, closed;
	uint64_t seed;
	uint64_t evicted;
};

struct held {
	uint8_t *buf;
	UINT len;
	struct wd_address addr;
	struct tuple t;
	uint64_t deadline;
};

struct wdc_counters {
	uint64_t received;      /* packets from the NETWORK handle */
	uint64_t recv_calls;
	uint64_t recv_errors;
	uint64_t sent;
	uint64_t send_errors;   /* packets a SendEx failed for */
	uint64_t held;
	uint64_t hold_timeouts; /* held packets whose CONNECT never came */
	uint64_t hold_overflow; /* not held: the hold was full */
	uint64_t socket_events;
	uint64_t socket_errors;
	uint64_t owner_checks;
	uint64_t dns_answers_dropped; /* matched, but the loop's thread was WDC_ANSWERS behind */
	uint64_t dns_bad_checksums;   /* sniffed answers with a wrong UDP checksum: ignored */
	uint64_t dns_recv_errors;
};

struct wdc_answer {
	uint8_t *msg;
	size_t len;
};

struct wdc_event {
	bool entered;
	const char *reason; /* static */
};

struct wdc_capture {
	struct capture base;
	struct wd_api api;
	HANDLE sock_h, net_h, dns_h;
	struct engine *engine;
	bool fail_open;
	bool have_ipv6;
	unsigned hold_ms;

	CRITICAL_SECTION lock; /* the engine, n, events */
	CRITICAL_SECTION map_lock;
	bool locks_made;
	struct pid_map map; /* under map_lock */
	volatile LONG holding; /* packets held: the socket thread wakes the packet thread */

	HANDLE sock_thread, pkt_thread, dns_thread;
	struct wd_address sock_ev[WDC_SOCK_BATCH]; /* the socket thread's */
	HANDLE recv_event, wake_event;
	volatile LONG stopping;

	/* the packet thread's */
	uint8_t *rx, *tx;
	struct wd_address rx_addr[WDC_BATCH], tx_addr[WDC_BATCH];
	UINT rx_alen;
	UINT tx_used, tx_n;
	struct held hold[WDC_HOLD_MAX];
	unsigned n_held;
	size_t held_bytes;

	struct wdc_counters n; /* under lock */

	bool (*owner_check)(void *ctx, uint32_t pid);
	void *owner_ctx;

	/* fail-mode events, reported on the loop's thread */
	struct loop *loop;
	struct loop_io notify_io;
	SOCKET notify_rx, notify_tx;
	struct wdc_event events[WDC_EVENTS];
	unsigned n_events;
	void (*on_fail_mode)(void *ctx, bool entered, const char *reason);
	void *ctx;

	/* the DNS watch: queries remembered by the packet thread, answers checked by the DNS
	 * thread, both under dns_lock; matched answers queued under lock for the loop's thread */
	CRITICAL_SECTION dns_lock;
	struct dns_watch *watch; /* NULL: not watching */
	uint32_t resolver_pid;   /* the DNS Client service's; 0: unknown, any other process */
	struct dns_message dns_scratch;
	uint8_t *dns_rx;
	struct wd_address dns_addr[WDC_BATCH];
	struct wdc_answer answers[WDC_ANSWERS];
	unsigned n_answers;
	void (*on_dns_answer)(void *ctx, const uint8_t *msg, size_t len);
};

static struct wdc_capture *wdc_of(struct capture *cap)
{
	return (struct wdc_capture *)cap;
}

static uint64_t now_ms(void)
{
	return GetTickCount64();
}

static bool addr_is_loopback(const struct addr *a)
{
	static const uint8_t v6_loopback[16] = { [15] = 1 };

	if (a->family == ADDR_V4)
		return a->bytes[0] == 127;
	return a->family == ADDR_V6 && memcmp(a->bytes, v6_loopback, 16) == 0;
}

static bool addr_is_zero(const struct addr *a)
{
	for (size_t i = 0; i < sizeof a->bytes; i++)
		if (a->bytes[i])
			return false;
	return true;
}

/* A socket bound to the unspecified address is keyed by the zero address of its remote's
 * family; a packet not found under its source address is looked up that way too. */
static void zero_addr(struct addr *a, int family)
{
	memset(a, 0, sizeof *a);
	a->family = (uint8_t)family;
}

static bool tuple_equal(const struct tuple *a, const struct tuple *b)
{
	return a->proto == b->proto && a->lport == b->lport && a->rport == b->rport &&
	       addr_equal(&a->local, &b->local) && addr_equal(&a->remote, &b->remote);
}

static uint32_t tuple_hash(const struct pid_map *m, const struct tuple *t)
{
	uint64_t h = m->seed ^ ((uint64_t)t->proto << 32 | (uint64_t)t->lport << 16 | t->rport);

	for (int i = 0; i < 16; i += 8) {
		uint64_t a, b;

		memcpy(&a, t->local.bytes + i, 8);
		memcpy(&b, t->remote.bytes + i, 8);
		h = hash_mix64(h ^ a) + b;
	}
	h = hash_mix64(h ^ ((uint64_t)t->local.family << 8) ^ t->remote.family);
	return (uint32_t)h & (WDC_MAP_BUCKETS - 1);
}

static int map_init(struct pid_map *m, uint64_t seed)
{
	memset(m, 0, sizeof *m);
	m->e = calloc(WDC_MAP_CAPACITY, sizeof *m->e);
	m->buckets = calloc(WDC_MAP_BUCKETS, sizeof *m->buckets);
	if (!m->e || !m->buckets)
		return -ENOMEM;
	for (uint32_t i = 0; i < WDC_MAP_CAPACITY; i++)
		m->e[i].hnext = i + 2 <= WDC_MAP_CAPACITY ? i + 2 : 0;
	m->free_head = 1;
	m->seed = seed;
	return 0;
}

static void map_free(struct pid_map *m)
{
	free(m->e);
	free(m->buckets);
	memset(m, 0, sizeof *m);
}

static void list_unlink(struct pid_map *m, struct pid_list *l, uint32_t x)
{
	struct pid_entry *e = &m->e[x - 1];

	if (e->prev)
		m->e[e->prev - 1].next = e->next;
	else
		l->head = e->next;
	if (e->next)
		m->e[e->next - 1].prev = e->prev;
	else
		l->tail = e->prev;
	e->prev = e->next = 0;
}

static void list_push(struct pid_map *m, struct pid_list *l, uint32_t x)
{
	struct pid_entry *e = &m->e[x - 1];

	e->prev = l->tail;
	e->next = 0;
	if (l->tail)
		m->e[l->tail - 1].next = x;
	else
		l->head = x;
	l->tail = x;
}

static uint32_t map_find(const struct pid_map *m, const struct tuple *t)
{
	for (uint32_t x = m->buckets[tuple_hash(m, t)]; x; x = m->e[x - 1].hnext)
		if (tuple_equal(&m->e[x - 1].t, t))
			return x;
	return 0;
}

static void map_remove(struct pid_map *m, uint32_t x)
{
	struct pid_entry *e = &m->e[x - 1];
	uint32_t *link = &m->buckets[tuple_hash(m, &e->t)];

	while (*link != x)
		link = &m->e[*link - 1].hnext;
	*link = e->hnext;
	list_unlink(m, e->closed ? &m->closed : &m->live, x);
	memset(e, 0, sizeof *e);
	e->hnext = m->free_head;
	m->free_head = x;
	m->count--;
}

/* A CONNECT: the tuple is (again) live with this pid. */
static void map_connect(struct pid_map *m, const struct tuple *t, uint32_t pid)
{
	uint32_t x = map_find(m, t);

	if (x) {
		struct pid_entry *e = &m->e[x - 1];

		list_unlink(m, e->closed ? &m->closed : &m->live, x);
		e->closed = false;
	} else {
		if (!m->free_head) {
			map_remove(m, m->closed.head ? m->closed.head : m->live.head);
			m->evicted++;
		}
		x = m->free_head;
		m->free_head = m->e[x - 1].hnext;
		uint32_t b = tuple_hash(m, t);
		m->e[x - 1].t = *t;
		m->e[x - 1].hnext = m->buckets[b];
		m->buckets[b] = x;
		m->count++;
	}
	struct pid_entry *e = &m->e[x - 1];
	e->used = true;
	e->pid = pid;
	e->checked = false;
	list_push(m, &m->live, x);
}

/* A CLOSE: packets of the tuple may still follow (the last ACKs and FINs of the connection),
 * so its pid is kept for WDC_CLOSED_GRACE_MS. */
static void map_close(struct pid_map *m, const struct tuple *t, uint64_t now)
{
	uint32_t x = map_find(m, t);

	if (!x || m->e[x - 1].closed)
		return;
	list_unlink(m, &m->live, x);
	m->e[x - 1].closed = true;
	m->e[x - 1].closed_ms = now;
	list_push(m, &m->closed, x);
}

static void map_sweep(struct pid_map *m, uint64_t now)
{
	while (m->closed.head && now - m->e[m->closed.head - 1].closed_ms > WDC_CLOSED_GRACE_MS)
		map_remove(m, m->closed.head);
}

/* The pid of a packet's tuple (exact, else with the unspecified local address), 0 when none.
 * *first is set when this is the first time the entry is asked about (owner check). */
static uint32_t map_pid(struct pid_map *m, const struct tuple *t, bool *first)
{
	uint32_t x = map_find(m, t);

	if (!x) {
		struct tuple w = *t;

		zero_addr(&w.local, t->remote.family);
		x = map_find(m, &w);
	}
	if (!x) {
		*first = false;
		return 0;
	}
	*first = !m->e[x - 1].checked;
	m->e[x - 1].checked = true;
	return m->e[x - 1].pid;
}

/* ---- the filter ---- */

/* The NETWORK handle's filter (WinDivert filter language, notes/windivert.md §4): every
 * outbound non-loopback TCP and UDP packet (whose pid decides; the others are reinjected at
 * once), loopback DNS (destination port 53: a session process asking a loopback resolver), and
 * the listeners' replies (loopback, source address L, source port a listener's). WinDivert sees
 * loopback packets only outbound, both directions of a loopback connection included. */
static int divert_filter(const struct wdc_capture *c, char *buf, size_t size)
{
	const struct capture_listener(*l)[CAPTURE_FAMILIES] = c->base.listeners;
	static const char *const src[CAPTURE_FAMILIES] = { "ip.SrcAddr == 127.0.0.1",
							    "ipv6.SrcAddr == ::1" };
	size_t len;
	int n;

	n = snprintf(buf, size,
		     "outbound and ((!loopback and (tcp or udp)) or "
		     "(loopback and (tcp.DstPort == 53 or udp.DstPort == 53))");
	for (int f = 0; f < CAPTURE_FAMILIES && n >= 0 && (size_t)n < size; f++) {
		if (l[CAPTURE_TCP][f].sock == CAPTURE_NO_SOCK)
			continue;
		len = (size_t)n;
		n = snprintf(buf + len, size - len,
			     " or (loopback and %s and (tcp.SrcPort == %u or tcp.SrcPort == %u or "
			     "udp.SrcPort == %u or udp.SrcPort == %u))",
			     src[f], (unsigned)l[CAPTURE_TCP][f].port,
			     (unsigned)l[CAPTURE_DNS_TCP][f].port,
			     (unsigned)l[CAPTURE_DNS_UDP][f].port, (unsigned)l[CAPTURE_UDP][f].port);
		n = n < 0 ? n : (int)(len + (size_t)n);
	}
	if (n >= 0 && (size_t)n + 1 < size) {
		buf[n] = ')';
		buf[n + 1] = '\0';
		return 0;
	}
	return -ENOSPC;
}

#define SOCKET_FILTER "(tcp or udp) and (event == CONNECT or event == CLOSE)"

/* ---- sending ---- */

static void note_backend_errors(struct wdc_capture *c, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		engine_note_error(c->engine, ENGINE_ERR_BACKEND);
}

static void tx_flush(struct wdc_capture *c)
{
	UINT sent = 0;

	if (c->tx_n == 0)
		return;
	BOOL ok = c->api.send_ex(c->net_h, c->tx, c->tx_used, &sent, 0, c->tx_addr,
				 c->tx_n * WDC_ADDR_SIZE, NULL);
	EnterCriticalSection(&c->lock);
	if (ok) {
		c->n.sent += c->tx_n;
	} else {
		c->n.send_errors += c->tx_n;
		note_backend_errors(c, 1);
	}
	LeaveCriticalSection(&c->lock);
	if (!ok)
		log_debug("windivert: WinDivertSendEx of %u packets: Windows error %lu",
			  (unsigned)c->tx_n, (unsigned long)GetLastError());
	c->tx_n = 0;
	c->tx_used = 0;
}

static void tx_add(struct wdc_capture *c, const uint8_t *buf, UINT len,
		   const struct wd_address *addr)
{
	if (c->tx_n == WDC_BATCH || c->tx_used + len > WDC_RX_SIZE)
		tx_flush(c);
	memcpy(c->tx + c->tx_used, buf, len);
	c->tx_addr[c->tx_n++] = *addr;
	c->tx_used += len;
}

/* A rewritten packet's address: Outbound always (see the top), Loopback when it now goes to a
 * loopback address, checksums recomputed here and marked for the driver to compute. */
static void finish_rewrite(uint8_t *buf, UINT len, struct wd_address *addr)
{
	struct pkt p;

	addr->flags |= WD_ADDR_OUTBOUND;
	addr->flags &= (uint8_t) ~(WD_ADDR_IP_CHECKSUM | WD_ADDR_TCP_CHECKSUM |
				   WD_ADDR_UDP_CHECKSUM | WD_ADDR_LOOPBACK);
	if (pkt_parse(buf, len, &p) != PKT_OK)
		return;
	pkt_checksum_fill(buf, &p, true);
	if (addr_is_loopback(&p.dst))
		addr->flags |= WD_ADDR_LOOPBACK;
}

/* Whether the packet may be UDP to port 53, from its first bytes only (no extension headers:
 * the DNS Client service sends none); pkt_parse then checks it all. */
static bool maybe_dns_query(const uint8_t *buf, UINT len)
{
	UINT l4;

	if (len >= 28 && buf[0] >> 4 == 4 && buf[9] == PKT_PROTO_UDP)
		l4 = (UINT)(buf[0] & 15) * 4;
	else if (len >= 48 && buf[0] >> 4 == 6 && buf[6] == PKT_PROTO_UDP)
		l4 = 40;
	else
		return false;
	return l4 + 8 <= len && buf[l4 + 2] == 0 && buf[l4 + 3] == 53;
}

/* A passed packet of the resolver (see the top): when it is a DNS query over UDP to a
 * non-loopback resolver, the DNS watch remembers it (the packet itself is not touched). */
static void watch_query(struct wdc_capture *c, const uint8_t *buf, UINT len)
{
	struct pkt p;

	if (!maybe_dns_query(buf, len) || pkt_parse(buf, len, &p) != PKT_OK ||
	    p.l4_proto != PKT_PROTO_UDP || p.dport != 53 || addr_is_loopback(&p.dst))
		return;
	struct dns_watch_flow f = { .client = p.src, .client_port = p.sport,
				    .server = p.dst, .server_port = p.dport };
	EnterCriticalSection(&c->dns_lock);
	dns_watch_query(c->watch, &f, buf + p.payload_off, p.payload_len, now_ms());
	LeaveCriticalSection(&c->dns_lock);
}

/* The engine decides one packet (under the lock); the verdict is applied. */
static void handle_packet(struct wdc_capture *c, uint8_t *buf, UINT len,
			  const struct wd_address *captured, uint32_t pid)
{
	struct engine_packet p = { .buf = buf, .len = len, .pid = pid };
	struct wd_address addr = *captured;
	bool other;

	EnterCriticalSection(&c->lock);
	enum engine_verdict v = engine_process(c->engine, &p, now_ms());
	other = pid && pid != GetCurrentProcessId() && !engine_is_session_pid(c->engine, pid) &&
		(c->resolver_pid == 0 || pid == c->resolver_pid);
	LeaveCriticalSection(&c->lock);
	if (v == ENGINE_DROP)
		return;
	if (v == ENGINE_REWRITE)
		finish_rewrite(buf, len, &addr);
	else if (other && c->watch && !(captured->flags & WD_ADDR_LOOPBACK))
		watch_query(c, buf, len);
	tx_add(c, buf, len, &addr);
}

/* ---- the packet thread ---- */

/* The length of the packet at buf (its IP header's), at most left; 0 when unreadable. */
static UINT packet_length(const uint8_t *buf, UINT left)
{
	UINT len;

	if (left < 1)
		return 0;
	if (buf[0] >> 4 == 4 && left >= 20)
		len = (UINT)buf[2] << 8 | buf[3];
	else if (buf[0] >> 4 == 6 && left >= 40)
		len = 40 + ((UINT)buf[4] << 8 | buf[5]);
	else
		return left;
	return len == 0 || len > left ? left : len;
}

/* Whether the packet must know its pid before the engine sees it (a flow's first packet: a TCP
 * SYN, any UDP datagram), and its tuple (an outbound packet: local = source). Listener replies
 * never wait. */
static bool packet_tuple(const struct wdc_capture *c, const uint8_t *buf, UINT len,
			 struct tuple *t, bool *needs_pid)
{
	struct pkt p;
	int f;

	*needs_pid = false;
	if (pkt_parse(buf, len, &p) != PKT_OK || !p.has_l4)
		return false;
	memset(t, 0, sizeof *t);
	t->proto = p.l4_proto;
	t->local = p.src;
	t->lport = p.sport;
	t->remote = p.dst;
	t->rport = p.dport;
	f = p.ip_version == 6 ? CAPTURE_IPV6 : CAPTURE_IPV4;
	if (addr_is_loopback(&p.src)) {
		for (int k = 0; k < CAPTURE_KINDS; k++) {
			bool tcp_kind = k == CAPTURE_TCP || k == CAPTURE_DNS_TCP;

			if (c->base.listeners[k][f].sock != CAPTURE_NO_SOCK &&
			    c->base.listeners[k][f].port == p.sport &&
			    tcp_kind == (p.l4_proto == PKT_PROTO_TCP))
				return true; /* a listener reply */
		}
	}
	if (p.l4_proto == PKT_PROTO_UDP)
		*needs_pid = true;
	else if (p.l4_proto == PKT_PROTO_TCP)
		*needs_pid = (p.tcp_flags & (PKT_TCP_SYN | PKT_TCP_ACK)) == PKT_TCP_SYN;
	return true;
}

/* The pid of a tuple; a pid that is no session's yet is asked about once (owner_check). */
static uint32_t pid_of(struct wdc_capture *c, const struct tuple *t)
{
	bool first;

	EnterCriticalSection(&c->map_lock);
	uint32_t pid = map_pid(&c->map, t, &first);
	LeaveCriticalSection(&c->map_lock);
	if (pid && first) {
		EnterCriticalSection(&c->lock);
		bool (*check)(void *, uint32_t) = c->owner_check;
		void *check_ctx = c->owner_ctx;
		bool known = pid == GetCurrentProcessId() || engine_is_session_pid(c->engine, pid);
		if (!known && check)
			c->n.owner_checks++;
		LeaveCriticalSection(&c->lock);
		if (!known && check && check(check_ctx, pid)) {
			EnterCriticalSection(&c->lock);
			engine_add_pid(c->engine, pid);
			LeaveCriticalSection(&c->lock);
		}
	}
	return pid;
}

static void set_holding(struct wdc_capture *c)
{
	InterlockedExchange(&c->holding, (LONG)c->n_held);
}

/* Holds a copy of the packet; false when the hold is full (then it is handled at once). */
static bool hold_packet(struct wdc_capture *c, const uint8_t *buf, UINT len,
			const struct wd_address *addr, const struct tuple *t, uint64_t now)
{
	if (c->n_held == WDC_HOLD_MAX || c->held_bytes + len > WDC_HOLD_BYTES)
		return false;
	struct held *h = &c->hold[c->n_held];
	h->buf = malloc(len);
	if (!h->buf)
		return false;
	memcpy(h->buf, buf, len);
	h->len = len;
	h->addr = *addr;
	h->t = *t;
	h->deadline = now + c->hold_ms;
	c->n_held++;
	c->held_bytes += len;
	set_holding(c);
	EnterCriticalSection(&c->lock);
	c->n.held++;
	LeaveCriticalSection(&c->lock);
	return true;
}

/* Handles the held packets whose CONNECT came, and (all, with force) those past their time, in
 * the order they arrived. */
static void release_held(struct wdc_capture *c, uint64_t now, bool force)
{
	uint64_t timeouts = 0;
	unsigned kept = 0;

	for (unsigned i = 0; i < c->n_held; i++) {
		struct held *h = &c->hold[i];
		uint32_t pid = pid_of(c, &h->t);

		if (pid || force || now >= h->deadline) {
			if (!pid)
				timeouts++;
			handle_packet(c, h->buf, h->len, &h->addr, pid);
			c->held_bytes -= h->len;
			free(h->buf);
			continue;
		}
		c->hold[kept++] = *h;
	}
	c->n_held = kept;
	set_holding(c);
	if (timeouts) {
		EnterCriticalSection(&c->lock);
		c->n.hold_timeouts += timeouts;
		LeaveCriticalSection(&c->lock);
	}
}

/* One received batch: rx_alen / 80 addresses for the packets packed in rx[0..len). */
static void handle_batch(struct wdc_capture *c, UINT len, uint64_t now)
{
	UINT n = c->rx_alen / WDC_ADDR_SIZE, off = 0;
	uint64_t overflow = 0;

	if (n > WDC_BATCH)
		n = WDC_BATCH;
	for (UINT i = 0; i < n && off < len; i++) {
		uint8_t *buf = c->rx + off;
		UINT plen = packet_length(buf, len - off);
		struct tuple t;
		bool needs_pid;
		uint32_t pid = 0;

		off += plen;
		if (packet_tuple(c, buf, plen, &t, &needs_pid)) {
			pid = pid_of(c, &t);
			if (!pid && needs_pid) {
				if (hold_packet(c, buf, plen, &c->rx_addr[i], &t, now))
					continue;
				overflow++;
			}
		}
		handle_packet(c, buf, plen, &c->rx_addr[i], pid);
	}
	EnterCriticalSection(&c->lock);
	c->n.received += n;
	c->n.recv_calls++;
	c->n.hold_overflow += overflow;
	LeaveCriticalSection(&c->lock);
}

static void count_recv_error(struct wdc_capture *c)
{
	EnterCriticalSection(&c->lock);
	c->n.recv_errors++;
	note_backend_errors(c, 1);
	LeaveCriticalSection(&c->lock);
}

static uint64_t next_deadline(const struct wdc_capture *c)
{
	uint64_t next = UINT64_MAX;

	for (unsigned i = 0; i < c->n_held; i++)
		if (c->hold[i].deadline < next)
			next = c->hold[i].deadline;
	return next;
}

static bool recv_ended(DWORD err)
{
	return err == ERROR_NO_DATA || err == ERROR_OPERATION_ABORTED ||
	       err == ERROR_INVALID_HANDLE;
}

/* Overlapped RecvEx on the NETWORK handle, waiting also for wake_event (a CONNECT while packets
 * are held) and for the next hold deadline or engine tick. Ends when the handle is shut down
 * (ERROR_NO_DATA once drained): held packets are then handled, nothing stays behind. */
static DWORD WINAPI packet_thread(void *arg)
{
	struct wdc_capture *c = arg;
	OVERLAPPED ov;
	bool pending = false, running = true;
	unsigned errors = 0;
	uint64_t next_tick = now_ms() + WDC_TICK_MS;

	while (running) {
		uint64_t now = now_ms();
		bool got_batch = false;
		DWORD err = 0, bytes = 0;

		if (!pending) {
			UINT got = 0;

			memset(&ov, 0, sizeof ov);
			ov.hEvent = c->recv_event;
			ResetEvent(c->recv_event);
			c->rx_alen = WDC_BATCH * WDC_ADDR_SIZE;
			if (c->api.recv_ex(c->net_h, c->rx, WDC_RX_SIZE, &got, 0, c->rx_addr,
					   &c->rx_alen, &ov)) {
				got_batch = true;
				bytes = got;
			} else if ((err = GetLastError()) == ERROR_IO_PENDING) {
				pending = true;
				err = 0;
			}
		}
		if (pending) {
			uint64_t hold = next_deadline(c);
			uint64_t due = next_tick < hold ? next_tick : hold;
			DWORD timeout = due <= now ? 0 : (DWORD)(due - now);
			HANDLE waits[2] = { c->recv_event, c->wake_event };

			if (WaitForMultipleObjects(2, waits, FALSE, timeout) == WAIT_OBJECT_0) {
				pending = false;
				if (GetOverlappedResult(c->net_h, &ov, &bytes, FALSE))
					got_batch = true;
				else
					err = GetLastError();
			}
		}
		if (err) {
			if (recv_ended(err) || ++errors > WDC_MAX_ERRORS) {
				if (err != ERROR_NO_DATA && !c->stopping)
					log_error("windivert: receiving packets failed (Windows error "
						  "%lu); no longer diverting", (unsigned long)err);
				running = false;
			} else {
				count_recv_error(c);
			}
		}
		now = now_ms();
		if (c->n_held)
			release_held(c, now, false);
		if (got_batch) {
			errors = 0;
			handle_batch(c, (UINT)bytes, now);
		}
		if (now >= next_tick) {
			EnterCriticalSection(&c->lock);
			engine_tick(c->engine, now);
			LeaveCriticalSection(&c->lock);
			next_tick = now + WDC_TICK_MS;
		}
		tx_flush(c);
	}
	release_held(c, now_ms(), true);
	tx_flush(c);
	return 0;
}

/* ---- the socket thread ---- */

static void socket_event(struct wdc_capture *c, const struct wd_address *a, uint64_t now,
			 bool *connected)
{
	struct tuple t;

	if (a->event != WD_EVENT_SOCKET_CONNECT && a->event != WD_EVENT_SOCKET_CLOSE)
		return;
	memset(&t, 0, sizeof t);
	t.proto = a->u.socket.protocol;
	wd_socket_addr_decode(a->u.socket.local_addr, &t.local);
	wd_socket_addr_decode(a->u.socket.remote_addr, &t.remote);
	t.lport = a->u.socket.local_port;
	t.rport = a->u.socket.remote_port;
	if (addr_is_zero(&t.local))
		zero_addr(&t.local, t.remote.family);
	if (a->event == WD_EVENT_SOCKET_CONNECT) {
		map_connect(&c->map, &t, a->u.socket.process_id);
		*connected = true;
	} else {
		map_close(&c->map, &t, now);
	}
}

static DWORD WINAPI socket_thread(void *arg)
{
	struct wdc_capture *c = arg;
	struct wd_address *ev = c->sock_ev;
	uint8_t none[64];
	unsigned errors = 0;

	for (;;) {
		UINT got = 0, alen = sizeof c->sock_ev;

		if (!c->api.recv_ex(c->sock_h, none, sizeof none, &got, 0, ev, &alen, NULL)) {
			DWORD err = GetLastError();

			if (err == ERROR_NO_DATA || err == ERROR_OPERATION_ABORTED ||
			    err == ERROR_INVALID_HANDLE || ++errors > WDC_MAX_ERRORS) {
				if (err != ERROR_NO_DATA && !c->stopping)
					log_error("windivert: receiving socket events failed "
						  "(Windows error %lu)", (unsigned long)err);
				break;
			}
			EnterCriticalSection(&c->lock);
			c->n.socket_errors++;
			LeaveCriticalSection(&c->lock);
			continue;
		}
		errors = 0;
		UINT n = alen / WDC_ADDR_SIZE;
		uint64_t now = now_ms();
		bool connected = false;

		if (n > WDC_SOCK_BATCH)
			n = WDC_SOCK_BATCH;
		EnterCriticalSection(&c->map_lock);
		for (UINT i = 0; i < n; i++)
			socket_event(c, &ev[i], now, &connected);
		map_sweep(&c->map, now);
		LeaveCriticalSection(&c->map_lock);
		EnterCriticalSection(&c->lock);
		c->n.socket_events += n;
		LeaveCriticalSection(&c->lock);
		if (connected && InterlockedCompareExchange(&c->holding, 0, 0) > 0)
			SetEvent(c->wake_event);
	}
	return 0;
}

/* ---- the DNS thread ---- */

static void notify_loop(struct wdc_capture *c)
{
	char one = 1;

	if (c->notify_tx != INVALID_SOCKET)
		send(c->notify_tx, &one, 1, 0); /* a full buffer: a wake-up is pending anyway */
}

/* One sniffed inbound datagram from port 53: queued for the loop's thread when it answers a
 * query the packet thread remembered. A datagram the stack would drop for its checksum is not
 * believed either. */
static void dns_inbound(struct wdc_capture *c, const uint8_t *buf, UINT len,
			const struct wd_address *addr, uint64_t now)
{
	struct pkt p;
	int rc;

	if (pkt_parse(buf, len, &p) != PKT_OK || p.l4_proto != PKT_PROTO_UDP || p.sport != 53 ||
	    addr_is_loopback(&p.src) || (addr->flags & WD_ADDR_LOOPBACK))
		return;
	if (!(addr->flags & WD_ADDR_UDP_CHECKSUM) && !pkt_checksum_ok(buf, &p)) {
		EnterCriticalSection(&c->lock);
		c->n.dns_bad_checksums++;
		LeaveCriticalSection(&c->lock);
		return;
	}
	struct dns_watch_flow f = { .client = p.dst, .client_port = p.dport,
				    .server = p.src, .server_port = p.sport };
	EnterCriticalSection(&c->dns_lock);
	rc = dns_watch_answer(c->watch, &f, buf + p.payload_off, p.payload_len, now,
			      &c->dns_scratch);
	LeaveCriticalSection(&c->dns_lock);
	if (rc != 0)
		return;
	uint8_t *copy = malloc(p.payload_len);
	bool queued = false;

	if (copy)
		memcpy(copy, buf + p.payload_off, p.payload_len);
	EnterCriticalSection(&c->lock);
	if (copy && c->n_answers < WDC_ANSWERS) {
		c->answers[c->n_answers++] = (struct wdc_answer){ copy, p.payload_len };
		queued = true;
	} else {
		c->n.dns_answers_dropped++;
	}
	LeaveCriticalSection(&c->lock);
	if (queued)
		notify_loop(c);
	else
		free(copy);
}

/* Reads the DNS watch handle in batches until it is shut down. */
static DWORD WINAPI dns_thread(void *arg)
{
	struct wdc_capture *c = arg;
	unsigned errors = 0;

	for (;;) {
		UINT got = 0, alen = sizeof c->dns_addr;

		if (!c->api.recv_ex(c->dns_h, c->dns_rx, WDC_RX_SIZE, &got, 0, c->dns_addr, &alen,
				    NULL)) {
			DWORD err = GetLastError();

			if (recv_ended(err) || ++errors > WDC_MAX_ERRORS) {
				if (err != ERROR_NO_DATA && !c->stopping)
					log_error("windivert: watching DNS answers failed (Windows "
						  "error %lu)", (unsigned long)err);
				break;
			}
			EnterCriticalSection(&c->lock);
			c->n.dns_recv_errors++;
			LeaveCriticalSection(&c->lock);
			continue;
		}
		errors = 0;
		UINT n = alen / WDC_ADDR_SIZE, off = 0;
		uint64_t now = now_ms();

		if (n > WDC_BATCH)
			n = WDC_BATCH;
		for (UINT i = 0; i < n && off < got; i++) {
			UINT plen = packet_length(c->dns_rx + off, got - off);

			dns_inbound(c, c->dns_rx + off, plen, &c->dns_addr[i], now);
			off += plen;
		}
	}
	return 0;
}

/* ---- fail mode ---- */

/* Called by the engine with the lock held, on whichever thread made the transition; when more
 * wait than fit, the last slot takes the newest (as in nfqueue.c). */
static void on_engine_fail_mode(void *ctx, bool entered, const char *reason)
{
	struct wdc_capture *c = ctx;

	if (c->n_events < WDC_EVENTS)
		c->events[c->n_events++] = (struct wdc_event){ entered, reason };
	else
		c->events[WDC_EVENTS - 1] = (struct wdc_event){ entered, reason };
	notify_loop(c);
}

static void on_notify(struct loop *loop, struct loop_io *io, unsigned events)
{
	struct wdc_capture *c = io->arg;
	struct wdc_event ev[WDC_EVENTS];
	struct wdc_answer answers[WDC_ANSWERS];
	char drain[64];
	unsigned n, n_answers;

	(void)loop;
	(void)events;
	while (recv(c->notify_rx, drain, sizeof drain, 0) > 0)
		;
	EnterCriticalSection(&c->lock);
	n = c->n_events;
	memcpy(ev, c->events, n * sizeof ev[0]);
	c->n_events = 0;
	n_answers = c->n_answers;
	memcpy(answers, c->answers, n_answers * sizeof answers[0]);
	c->n_answers = 0;
	LeaveCriticalSection(&c->lock);
	for (unsigned i = 0; i < n; i++)
		if (c->on_fail_mode)
			c->on_fail_mode(c->ctx, ev[i].entered, ev[i].reason);
	for (unsigned i = 0; i < n_answers; i++) {
		c->on_dns_answer(c->ctx, answers[i].msg, answers[i].len);
		free(answers[i].msg);
	}
}

/* A connected pair of loopback UDP sockets: the packet thread sends, the loop reads. Its port
 * is no listener's, so the NETWORK filter never sees it. */
static int make_notify(struct wdc_capture *c)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	int alen = sizeof a;
	u_long one = 1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c->notify_rx = WSASocketW(AF_INET, SOCK_DGRAM, IPPROTO_UDP, NULL, 0,
				  WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
	c->notify_tx = WSASocketW(AF_INET, SOCK_DGRAM, IPPROTO_UDP, NULL, 0,
				  WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
	if (c->notify_rx == INVALID_SOCKET || c->notify_tx == INVALID_SOCKET ||
	    bind(c->notify_rx, (struct sockaddr *)&a, sizeof a) != 0 ||
	    getsockname(c->notify_rx, (struct sockaddr *)&a, &alen) != 0 ||
	    connect(c->notify_tx, (struct sockaddr *)&a, sizeof a) != 0 ||
	    ioctlsocket(c->notify_rx, FIONBIO, &one) != 0 ||
	    ioctlsocket(c->notify_tx, FIONBIO, &one) != 0)
		return wsa_last_error();
	return 0;
}

/* ---- listeners ---- */

static int sockaddr_of(const struct capture_endpoint *ep, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof *ss);
	if (ep->addr.family == ADDR_V4) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(ep->port);
		memcpy(&sin->sin_addr, ep->addr.bytes, 4);
		return sizeof *sin;
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(ep->port);
	memcpy(&sin6->sin6_addr, ep->addr.bytes, 16);
	return sizeof *sin6;
}

static int endpoint_of(const struct sockaddr_storage *ss, struct capture_endpoint *ep)
{
	struct addr a;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

		addr_from_bytes(&a, ADDR_V4, (const uint8_t *)&sin->sin_addr);
		ep->port = ntohs(sin->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

		addr_from_bytes(&a, ADDR_V6, (const uint8_t *)&sin6->sin6_addr);
		ep->port = ntohs(sin6->sin6_port);
	} else {
		return -EAFNOSUPPORT;
	}
	addr_unmap_v4(&a, &ep->addr);
	return 0;
}

/* One listener on 127.0.0.1 or ::1: the preferred port, or any free one where it is taken.
 * SO_EXCLUSIVEADDRUSE keeps other programs from binding over it. */
static int make_listener(int kind, int family, uint16_t preferred, struct capture_listener *out)
{
	bool tcp = kind == CAPTURE_TCP || kind == CAPTURE_DNS_TCP;
	struct capture_endpoint ep = { .port = preferred };
	struct sockaddr_storage ss;
	int sslen = sizeof ss, len, err;
	BOOL yes = TRUE, no = FALSE;
	DWORD ignored;

	if (family == CAPTURE_IPV4)
		addr_from_bytes(&ep.addr, ADDR_V4, (const uint8_t[4]){ 127, 0, 0, 1 });
	else
		addr_from_bytes(&ep.addr, ADDR_V6, (const uint8_t[16]){ [15] = 1 });
	SOCKET s = WSASocketW(family == CAPTURE_IPV4 ? AF_INET : AF_INET6,
			      tcp ? SOCK_STREAM : SOCK_DGRAM, tcp ? IPPROTO_TCP : IPPROTO_UDP, NULL,
			      0, WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
	if (s == INVALID_SOCKET)
		return wsa_last_error();
	setsockopt(s, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, (const char *)&yes, sizeof yes);
	if (family == CAPTURE_IPV6)
		setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, (const char *)&yes, sizeof yes);
	len = sockaddr_of(&ep, &ss);
	if (bind(s, (struct sockaddr *)&ss, len) != 0) {
		int e = WSAGetLastError();

		if (e != WSAEADDRINUSE && e != WSAEACCES)
			goto fail;
		ep.port = 0;
		len = sockaddr_of(&ep, &ss);
		if (bind(s, (struct sockaddr *)&ss, len) != 0)
			goto fail;
	}
	if (getsockname(s, (struct sockaddr *)&ss, &sslen) != 0 || endpoint_of(&ss, &ep) < 0)
		goto fail;
	if (tcp && listen(s, SOMAXCONN) != 0)
		goto fail;
	if (!tcp) /* an ICMP port unreachable must not fail the next recvfrom */
		WSAIoctl(s, SIO_UDP_CONNRESET, &no, sizeof no, NULL, 0, &ignored, NULL, NULL);
	err = net_set_nonblocking((loop_sock)s);
	if (err < 0) {
		closesocket(s);
		return err;
	}
	out->sock = (loop_sock)s;
	out->port = ep.port;
	return 0;
fail:
	err = wsa_last_error();
	closesocket(s);
	return err;
}

static void close_listeners(struct wdc_capture *c, int family)
{
	for (int k = 0; k < CAPTURE_KINDS; k++) {
		struct capture_listener *l = &c->base.listeners[k][family];

		if (l->sock != CAPTURE_NO_SOCK)
			closesocket((SOCKET)l->sock);
		l->sock = CAPTURE_NO_SOCK;
		l->port = 0;
	}
}

/* IPv4 listeners are required; IPv6 ones are made when ::1 can be bound. */
static int make_listeners(struct wdc_capture *c, const struct capture_config *cfg)
{
	const uint16_t pref[CAPTURE_KINDS] = {
		[CAPTURE_TCP] = cfg->tcp_port ? cfg->tcp_port : CAPTURE_TCP_PORT,
		[CAPTURE_DNS_TCP] = cfg->dns_port ? cfg->dns_port : CAPTURE_DNS_PORT,
		[CAPTURE_DNS_UDP] = cfg->dns_port ? cfg->dns_port : CAPTURE_DNS_PORT,
		[CAPTURE_UDP] = cfg->udp_port ? cfg->udp_port : CAPTURE_UDP_PORT,
	};
	int err;

	for (int f = 0; f < CAPTURE_FAMILIES; f++) {
		for (int k = 0; k < CAPTURE_KINDS; k++) {
			err = make_listener(k, f, pref[k], &c->base.listeners[k][f]);
			if (err && f == CAPTURE_IPV4) {
				log_errno(err, "windivert: listener on 127.0.0.1");
				return err;
			}
			if (err) {
				log_debug("windivert: no IPv6 listeners (::1): %s", strerror(-err));
				close_listeners(c, f);
				break;
			}
		}
	}
	c->have_ipv6 = c->base.listeners[CAPTURE_TCP][CAPTURE_IPV6].sock != CAPTURE_NO_SOCK;
	return 0;
}

/* ---- the engine ---- */

static int make_engine(struct wdc_capture *c)
{
	struct engine_config ec = {
		.fail_open = c->fail_open,
		.rewrite_source = true,
		.session_by_pid = true,
		.proxy_pid = GetCurrentProcessId(),
		.on_fail_mode = on_engine_fail_mode,
		.ctx = c,
	};
	static const enum engine_kind kinds[CAPTURE_KINDS] = {
		[CAPTURE_TCP] = ENGINE_TCP,
		[CAPTURE_DNS_TCP] = ENGINE_DNS_TCP,
		[CAPTURE_DNS_UDP] = ENGINE_DNS_UDP,
		[CAPTURE_UDP] = ENGINE_UDP,
	};

	addr_from_bytes(&ec.listen[ENGINE_IPV4], ADDR_V4, (const uint8_t[4]){ 127, 0, 0, 1 });
	if (c->have_ipv6)
		addr_from_bytes(&ec.listen[ENGINE_IPV6], ADDR_V6, (const uint8_t[16]){ [15] = 1 });
	for (int k = 0; k < CAPTURE_KINDS; k++)
		for (int f = 0; f < CAPTURE_FAMILIES; f++)
			ec.port[kinds[k]][f] = c->base.listeners[k][f].port;
	if (os_random(&ec.hash_seed, sizeof ec.hash_seed) < 0)
		ec.hash_seed = now_ms() * 0x9e3779b97f4a7c15u;
	return engine_new(&c->engine, &ec);
}

/* ---- the ops ---- */

static HANDLE open_handle(struct wdc_capture *c, const char *filter, enum wd_layer layer,
			  int16_t priority, uint64_t flags, const char *what, int *err)
{
	enum wd_failure failure;
	DWORD win_error;
	HANDLE h = wd_open(&c->api, filter, layer, priority, flags, &failure, &win_error);

	if (!h) {
		log_error("windivert: %s handle: %s (Windows error %lu)", what,
			  wd_failure_message(failure), (unsigned long)win_error);
		*err = failure == WD_NOT_ADMIN ? -EPERM : failure == WD_BAD_ARGUMENT ? -EINVAL
										   : -ENODEV;
	}
	return h;
}

static void wdc_close(struct capture *cap)
{
	struct wdc_capture *c = wdc_of(cap);

	if (!c)
		return;
	InterlockedExchange(&c->stopping, 1);
	/* Receiving ends first: the threads drain what is queued and handle every held packet
	 * while sending still works; then both directions end. */
	if (c->sock_h)
		c->api.shutdown(c->sock_h, WD_SHUTDOWN_RECV);
	if (c->net_h)
		c->api.shutdown(c->net_h, WD_SHUTDOWN_RECV);
	if (c->dns_h)
		c->api.shutdown(c->dns_h, WD_SHUTDOWN_RECV);
	if (c->dns_thread) {
		WaitForSingleObject(c->dns_thread, INFINITE);
		CloseHandle(c->dns_thread);
	}
	if (c->sock_thread) {
		WaitForSingleObject(c->sock_thread, INFINITE);
		CloseHandle(c->sock_thread);
	}
	if (c->pkt_thread) {
		WaitForSingleObject(c->pkt_thread, INFINITE);
		CloseHandle(c->pkt_thread);
	}
	if (c->sock_h) {
		c->api.shutdown(c->sock_h, WD_SHUTDOWN_BOTH);
		c->api.close(c->sock_h);
	}
	if (c->net_h) {
		c->api.shutdown(c->net_h, WD_SHUTDOWN_BOTH);
		c->api.close(c->net_h); /* the driver reinjects what it still queued */
	}
	if (c->dns_h)
		c->api.close(c->dns_h);
	wd_unload(&c->api);
	if (c->loop)
		loop_io_stop(c->loop, &c->notify_io);
	if (c->notify_rx != INVALID_SOCKET)
		closesocket(c->notify_rx);
	if (c->notify_tx != INVALID_SOCKET)
		closesocket(c->notify_tx);
	if (c->recv_event)
		CloseHandle(c->recv_event);
	if (c->wake_event)
		CloseHandle(c->wake_event);
	for (int f = 0; f < CAPTURE_FAMILIES; f++)
		close_listeners(c, f);
	for (unsigned i = 0; i < c->n_held; i++)
		free(c->hold[i].buf);
	for (unsigned i = 0; i < c->n_answers; i++)
		free(c->answers[i].msg);
	if (c->locks_made) {
		DeleteCriticalSection(&c->lock);
		DeleteCriticalSection(&c->map_lock);
		DeleteCriticalSection(&c->dns_lock);
	}
	dns_watch_free(c->watch);
	free(c->dns_rx);
	map_free(&c->map);
	engine_free(c->engine);
	free(c->rx);
	free(c->tx);
	free(c);
}

#define DNS_WATCH_FILTER "inbound and !loopback and udp.SrcPort == 53"

/* Empties the DNS Client service's cache, as `ipconfig /flushdns` does, so that the names the
 * session looks up go out as queries the watch can see (a cached name makes no packet). Other
 * programs only pay a fresh lookup. dnsapi.dll exports the function without declaring it in the
 * SDK headers, so it is looked up; without it, nothing is flushed. */
static void flush_dns_cache(void)
{
	HMODULE dnsapi = LoadLibraryExW(L"dnsapi.dll", NULL, LOAD_LIBRARY_SEARCH_SYSTEM32);
	BOOL(WINAPI * flush)(void) = NULL;
	FARPROC fn;

	if (!dnsapi)
		return;
	fn = GetProcAddress(dnsapi, "DnsFlushResolverCache");
	memcpy(&flush, &fn, sizeof flush < sizeof fn ? sizeof flush : sizeof fn);
	if (!flush || !flush())
		log_debug("windivert: the DNS Client cache was not flushed");
	FreeLibrary(dnsapi);
}

/* The DNS Client service's process id, 0 when it is not running or cannot be asked. */
static uint32_t dns_client_pid(void)
{
	SC_HANDLE scm = OpenSCManagerW(NULL, NULL, SC_MANAGER_CONNECT), svc = NULL;
	SERVICE_STATUS_PROCESS st;
	DWORD need = 0;
	uint32_t pid = 0;

	if (scm)
		svc = OpenServiceW(scm, L"Dnscache", SERVICE_QUERY_STATUS);
	if (svc && QueryServiceStatusEx(svc, SC_STATUS_PROCESS_INFO, (BYTE *)&st, sizeof st,
					&need) &&
	    st.dwCurrentState == SERVICE_RUNNING)
		pid = st.dwProcessId;
	if (svc)
		CloseServiceHandle(svc);
	if (scm)
		CloseServiceHandle(scm);
	return pid;
}

/* The DNS watch (see the top): its table, buffer and sniffing handle. A handle the driver
 * refuses is not fatal: the session runs, its DNS map only lacks the system resolver's answers
 * (connections are then decided on fewer names, never on more). */
static int open_dns_watch(struct wdc_capture *c, const struct capture_config *cfg)
{
	uint64_t seed = 0;
	int err;

	os_random(&seed, sizeof seed);
	c->dns_rx = malloc(WDC_RX_SIZE);
	err = c->dns_rx ? dns_watch_new(&c->watch, 0, seed) : -ENOMEM;
	if (err)
		return err;
	c->dns_h = open_handle(c, DNS_WATCH_FILTER, WD_LAYER_NETWORK, WDC_DNS_PRIORITY,
			       WD_FLAG_SNIFF | WD_FLAG_RECV_ONLY, "DNS watch", &err);
	if (!c->dns_h) {
		log_warn("windivert: not watching the system resolver: names it finds for the "
			 "session are not in the DNS map");
		dns_watch_free(c->watch);
		c->watch = NULL;
		return 0;
	}
	c->on_dns_answer = cfg->on_dns_answer;
	c->resolver_pid = dns_client_pid();
	if (!c->resolver_pid)
		log_debug("windivert: the DNS Client service's process is unknown: watching the "
			  "queries of every process outside the session");
	flush_dns_cache();
	return 0;
}

static int wdc_open(struct capture **out, const struct capture_config *cfg)
{
	static const struct capture_config defaults;
	char filter[WDC_FILTER_MAX];
	struct wdc_capture *c;
	uint64_t seed = 0;
	DWORD win_error;
	int err;

	if (!cfg)
		cfg = &defaults;
	c = calloc(1, sizeof *c);
	if (!c)
		return -ENOMEM;
	capture_init(&c->base, &capture_windivert);
	c->notify_rx = c->notify_tx = INVALID_SOCKET;
	c->fail_open = cfg->fail_open;
	c->on_fail_mode = cfg->on_fail_mode;
	c->ctx = cfg->ctx;
	c->hold_ms = CAPTURE_WINDIVERT_HOLD_MS;
	InitializeCriticalSection(&c->lock);
	InitializeCriticalSection(&c->map_lock);
	InitializeCriticalSection(&c->dns_lock);
	c->locks_made = true;

	enum wd_failure failure = wd_load(&c->api, &win_error);
	if (failure != WD_OK) {
		log_error("%s (Windows error %lu)", wd_failure_message(failure),
			  (unsigned long)win_error);
		err = failure == WD_NO_DLL ? -ENOENT : -ENOEXEC;
		goto fail;
	}
	err = wsa_start();
	if (err < 0)
		goto fail;
	c->rx = malloc(WDC_RX_SIZE);
	c->tx = malloc(WDC_RX_SIZE);
	os_random(&seed, sizeof seed);
	err = !c->rx || !c->tx ? -ENOMEM : map_init(&c->map, seed);
	if (err)
		goto fail;
	c->recv_event = CreateEventW(NULL, TRUE, FALSE, NULL);
	c->wake_event = CreateEventW(NULL, FALSE, FALSE, NULL);
	if (!c->recv_event || !c->wake_event) {
		err = -ENOMEM;
		goto fail;
	}
	err = make_notify(c);
	if (err) {
		log_errno(err, "windivert: notification socket");
		goto fail;
	}
	err = make_listeners(c, cfg);
	if (err)
		goto fail;
	err = make_engine(c);
	if (err) {
		log_errno(err, "windivert: cannot create the engine");
		goto fail;
	}
	err = divert_filter(c, filter, sizeof filter);
	if (err) {
		log_errno(err, "windivert: filter text");
		goto fail;
	}
	/* The socket handle first: no CONNECT of a diverted flow may be missed. */
	c->sock_h = open_handle(c, SOCKET_FILTER, WD_LAYER_SOCKET, WDC_PRIORITY,
				WD_FLAG_SNIFF | WD_FLAG_RECV_ONLY, "socket-layer", &err);
	if (!c->sock_h)
		goto fail;
	c->net_h = open_handle(c, filter, WD_LAYER_NETWORK, WDC_PRIORITY, 0, "network-layer", &err);
	if (!c->net_h)
		goto fail;
	if (cfg->on_dns_answer) {
		err = open_dns_watch(c, cfg);
		if (err)
			goto fail;
	}
	if (!c->api.set_param(c->net_h, WD_PARAM_QUEUE_LENGTH, WDC_QUEUE_LENGTH) ||
	    !c->api.set_param(c->net_h, WD_PARAM_QUEUE_SIZE, WDC_QUEUE_SIZE))
		log_debug("windivert: queue parameters: Windows error %lu",
			  (unsigned long)GetLastError());
	*out = &c->base;
	return 0;
fail:
	wdc_close(&c->base);
	return err;
}

static int wdc_attach(struct capture *cap, struct loop *loop)
{
	struct wdc_capture *c = wdc_of(cap);
	int err;

	c->loop = loop;
	loop_io_init(&c->notify_io, (loop_sock)c->notify_rx, on_notify, c);
	err = loop_io_start(loop, &c->notify_io, LOOP_READ);
	if (err)
		return err;
	c->sock_thread = CreateThread(NULL, 0, socket_thread, c, 0, NULL);
	if (!c->sock_thread)
		return -EAGAIN;
	c->pkt_thread = CreateThread(NULL, 0, packet_thread, c, 0, NULL);
	if (!c->pkt_thread)
		return -EAGAIN;
	if (c->dns_h) {
		c->dns_thread = CreateThread(NULL, 0, dns_thread, c, 0, NULL);
		if (!c->dns_thread)
			return -EAGAIN;
	}
	return 0;
}

void capture_windivert_process(struct capture *cap, uint32_t pid, bool started)
{
	struct wdc_capture *c = wdc_of(cap);
	int err = 0;

	EnterCriticalSection(&c->lock);
	if (started)
		err = engine_add_pid(c->engine, pid);
	else
		engine_remove_pid(c->engine, pid);
	LeaveCriticalSection(&c->lock);
	if (err)
		log_warn_errno(err, "windivert: process %lu not added to the session's set",
			       (unsigned long)pid);
}

void capture_windivert_set_owner_check(struct capture *cap,
				       bool (*fn)(void *ctx, uint32_t pid), void *ctx)
{
	struct wdc_capture *c = wdc_of(cap);

	EnterCriticalSection(&c->lock);
	c->owner_check = fn;
	c->owner_ctx = ctx;
	LeaveCriticalSection(&c->lock);
}

void capture_windivert_set_resolver_pid(struct capture *cap, uint32_t pid)
{
	struct wdc_capture *c = wdc_of(cap);

	EnterCriticalSection(&c->lock);
	c->resolver_pid = pid;
	LeaveCriticalSection(&c->lock);
}

void capture_windivert_set_hold_ms(struct capture *cap, unsigned ms)
{
	wdc_of(cap)->hold_ms = ms;
}

/* The engine's flow behind a peer seen on a listener. */
static int flow_of(struct wdc_capture *c, int proto, const struct capture_endpoint *peer,
		   struct engine_flow *flow)
{
	struct addr a;
	int err;

	addr_unmap_v4(&peer->addr, &a);
	EnterCriticalSection(&c->lock);
	err = engine_lookup(c->engine, proto, &a, peer->port, now_ms(), flow);
	LeaveCriticalSection(&c->lock);
	return err;
}

static int wdc_tcp_original_dst(struct capture *cap, loop_sock accepted,
				struct capture_endpoint *dst)
{
	struct sockaddr_storage ss;
	struct capture_endpoint peer;
	struct engine_flow flow;
	int len = sizeof ss, err;

	if (getpeername((SOCKET)accepted, (struct sockaddr *)&ss, &len) != 0)
		return wsa_last_error();
	err = endpoint_of(&ss, &peer);
	if (err)
		return err;
	err = flow_of(wdc_of(cap), IPPROTO_TCP, &peer, &flow);
	if (err)
		return err;
	dst->addr = flow.orig_dst;
	dst->port = flow.orig_port;
	return 0;
}

static int wdc_udp_recv(struct capture *cap, loop_sock listener, void *buf, size_t size,
			struct capture_endpoint *src, struct capture_endpoint *orig_dst)
{
	struct sockaddr_storage from;
	struct engine_flow flow;
	int fromlen = sizeof from;
	int cap_len = size > INT_MAX ? INT_MAX : (int)size;

	int n = recvfrom((SOCKET)listener, buf, cap_len, 0, (struct sockaddr *)&from, &fromlen);
	if (n == SOCKET_ERROR) {
		int e = WSAGetLastError();

		if (e == WSAEMSGSIZE)
			return -EMSGSIZE;
		if (e == WSAECONNRESET)
			return -EAGAIN;
		return -wsa_errno(e);
	}
	if (endpoint_of(&from, src) < 0)
		return -EPROTO;
	if (flow_of(wdc_of(cap), IPPROTO_UDP, src, &flow) < 0)
		return -ENOENT; /* sent straight to the listener: not diverted */
	orig_dst->addr = flow.orig_dst;
	orig_dst->port = flow.orig_port;
	return n;
}

/* The reply leaves from a listener socket towards the flow's mapped peer; the engine rewrites
 * its source to the flow's original destination, which must be `from`. */
static int wdc_udp_send(struct capture *cap, const struct capture_endpoint *from,
			const struct capture_endpoint *to, const void *buf, size_t len)
{
	struct wdc_capture *c = wdc_of(cap);
	struct sockaddr_storage ss;
	struct engine_flow flow;
	int f, err;

	if (from->addr.family != to->addr.family ||
	    (to->addr.family != ADDR_V4 && to->addr.family != ADDR_V6))
		return -EAFNOSUPPORT;
	if (len > INT_MAX)
		return -EMSGSIZE;
	f = to->addr.family == ADDR_V4 ? CAPTURE_IPV4 : CAPTURE_IPV6;
	err = flow_of(c, IPPROTO_UDP, to, &flow);
	if (err)
		return err;
	if (flow.orig_port != from->port || !addr_equal(&flow.orig_dst, &from->addr))
		return -EADDRNOTAVAIL;
	loop_sock s = c->base.listeners[from->port == 53 ? CAPTURE_DNS_UDP : CAPTURE_UDP][f].sock;
	if (s == CAPTURE_NO_SOCK)
		return -EAFNOSUPPORT;
	int sslen = sockaddr_of(to, &ss);
	if (sendto((SOCKET)s, buf, (int)len, 0, (struct sockaddr *)&ss, sslen) == SOCKET_ERROR)
		return wsa_last_error();
	return 0;
}

static int wdc_app_endpoint(struct capture *cap, int proto, const struct capture_endpoint *seen,
			    struct capture_endpoint *app)
{
	struct engine_flow flow;
	int err = flow_of(wdc_of(cap), proto, seen, &flow);

	if (err)
		return err;
	app->addr = flow.client;
	app->port = flow.client_port;
	return 0;
}

static uint32_t wdc_flow_pid(struct capture *cap, int proto, const struct capture_endpoint *seen)
{
	struct engine_flow flow;

	return flow_of(wdc_of(cap), proto, seen, &flow) == 0 ? flow.pid : 0;
}

static size_t wdc_stats(struct capture *cap, struct capture_stat *out, size_t max)
{
	struct wdc_capture *c = wdc_of(cap);
	struct engine_stats s;
	struct wdc_counters q;
	struct dns_watch_stats w = { 0 };
	uint64_t evicted;

	EnterCriticalSection(&c->lock);
	engine_get_stats(c->engine, &s);
	q = c->n;
	LeaveCriticalSection(&c->lock);
	EnterCriticalSection(&c->map_lock);
	evicted = c->map.evicted;
	LeaveCriticalSection(&c->map_lock);
	if (c->watch) {
		EnterCriticalSection(&c->dns_lock);
		dns_watch_get_stats(c->watch, &w);
		LeaveCriticalSection(&c->dns_lock);
	}
	const struct capture_stat all[] = {
		{ "windivert_received", q.received },
		{ "windivert_recv_calls", q.recv_calls },
		{ "windivert_recv_errors", q.recv_errors },
		{ "windivert_sent", q.sent },
		{ "windivert_send_errors", q.send_errors },
		{ "windivert_held", q.held },
		{ "windivert_hold_timeouts", q.hold_timeouts },
		{ "windivert_hold_overflow", q.hold_overflow },
		{ "windivert_socket_events", q.socket_events },
		{ "windivert_socket_errors", q.socket_errors },
		{ "windivert_owner_checks", q.owner_checks },
		{ "windivert_pid_map_evicted", evicted },
		{ "windivert_dns_queries_watched", w.queries },
		{ "windivert_dns_answers_matched", w.matched },
		{ "windivert_dns_answers_unmatched", w.unmatched + w.late },
		{ "windivert_dns_answers_malformed", w.malformed },
		{ "windivert_dns_answers_dropped", q.dns_answers_dropped },
		{ "windivert_dns_bad_checksums", q.dns_bad_checksums },
		{ "windivert_dns_recv_errors", q.dns_recv_errors },
	};
	struct engine_counter ec[ENGINE_COUNTERS_MAX];
	size_t k = engine_counters(&s, ec, ENGINE_COUNTERS_MAX), n = 0;

	for (size_t i = 0; i < k && n < max; i++)
		out[n++] = (struct capture_stat){ ec[i].name, ec[i].value };
	for (size_t i = 0; i < sizeof all / sizeof all[0] && n < max; i++)
		out[n++] = all[i];
	return n;
}

/* Nothing to join on Windows: the session's processes are chosen by pid. */
static int wdc_join(struct capture *cap)
{
	(void)cap;
	return 0;
}

const struct capture_ops capture_windivert = {
	.name = "windivert",
	.open = wdc_open,
	.tcp_original_dst = wdc_tcp_original_dst,
	.udp_recv = wdc_udp_recv,
	.udp_send = wdc_udp_send,
	.app_endpoint = wdc_app_endpoint,
	.flow_pid = wdc_flow_pid,
	.attach = wdc_attach,
	.stats = wdc_stats,
	.join = wdc_join,
	.close = wdc_close,
};
