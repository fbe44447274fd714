/* fake_windivert.c — a test double of WinDivert.dll 2.2: replays a script, logs what is sent.
 *
 * Built as WinDivert.dll (exports in fake_windivert.def) and, without WinDivertGetParam, as
 * WinDivertIncomplete.dll (fake_windivert_incomplete.def). It exports the seven functions sluice
 * binds (src/capture/windivert_api.h) and the test-only functions of fake_windivert.h. It writes
 * WINDIVERT_ADDRESS byte by byte at the offsets of notes/windivert.md §3 and does not include
 * windivert_api.h, so that a mistake in either is caught by tests reading one with the other.
 *
 * THE SCRIPT. The file named by the environment variable FAKE_WINDIVERT_SCRIPT is read at the
 * first WinDivertOpen (again after FakeWinDivertReset, or when the DLL is loaded anew). Without
 * the variable every open succeeds with nothing to receive. One directive a line (a line ending in
 * `\` goes on on the next), words separated by blanks, `#` starts a comment to the end of the
 * line, numbers are decimal or 0x-hex.
 *
 *   version MAJOR [MINOR]       VERSION_MAJOR / VERSION_MINOR reported by WinDivertGetParam (2 2)
 *   open-fail CODE [null]       every WinDivertOpen fails with GetLastError() CODE, returning
 *                               INVALID_HANDLE_VALUE, or NULL with `null` (5 = not administrator,
 *                               2 = driver missing, 577 = bad signature, ...)
 *   handle LAYER [fail=CODE] [null]
 *                               starts the script of one handle. A WinDivertOpen at LAYER
 *                               (network, network-forward, flow, socket, reflect) takes the first
 *                               block of that layer not yet taken, in file order; with fail= that
 *                               open fails instead (returning NULL with `null`). An open with no
 *                               block left gets an empty one.
 *
 * The lines under `handle` are what WinDivertRecvEx returns on that handle, in order:
 *
 *   EVENT [pid=N] [proto=tcp|udp|icmp|icmpv6|N] [local=A:P] [remote=A:P] [endpoint=N]
 *         [parent=N] [ts=N] [FLAGS]
 *                               SOCKET layer: bind connect listen accept close; FLOW layer:
 *                               established deleted. A is a.b.c.d or [IPv6]. Encoded as the
 *                               driver does: host order, IPv4 as ::ffff:a.b.c.d, the IPv6 flag set
 *                               for IPv6 addresses. connect is `out` unless `in` is given.
 *   packet [FLAGS] [if=N] [sub=N] [ts=N] hex HEX...
 *                               a NETWORK-layer packet; everything after `hex` is its bytes (blanks
 *                               allowed). The IPv6 flag follows the version nibble. The bytes are
 *                               not checked: malformed packets are allowed on purpose.
 *   error CODE                  that RecvEx call fails with GetLastError() CODE
 *   signal NAME                 raises NAME when RecvEx reaches it, that is when the caller came
 *                               back for more after taking everything before it (a test driving
 *                               handles from one thread calls RecvEx once more, e.g. overlapped)
 *   wait NAME                   nothing past this point is returned until NAME is raised (by a
 *                               `signal` in another handle's script): orders events across handles
 *
 *   FLAGS: out in loopback impostor ipcsum tcpcsum udpcsum (address flag bits; Sniffed is set when
 *   the handle was opened with SNIFF). ts= is the Timestamp (default QueryPerformanceCounter at
 *   delivery).
 *
 * Example: a SYN that arrives before its CONNECT event.
 *
 *   handle socket
 *   wait syn-taken
 *   connect pid=4242 proto=tcp local=10.0.0.2:50000 remote=198.51.100.7:443
 *   handle network
 *   packet out if=7 hex 45000028 00010000 40060000 0a000002 c6336407 c35001bb 00000000 \
 *                       00000000 50020000 00000000
 *   signal syn-taken
 *
 * BEHAVIOUR, as the real DLL and driver (notes/windivert.md, v2.2.2 sources):
 * - WinDivertOpen fails with ERROR_INVALID_PARAMETER (87) for a NULL filter, a bad layer, priority
 *   or flags combination, or a layer without the flags it needs (SOCKET: RECV_ONLY; FLOW and
 *   REFLECT: SNIFF|RECV_ONLY), before any failure the script asks for. The filter is recorded, not
 *   evaluated. The handle is a real kernel handle (an event).
 * - RecvEx returns consecutive events/packets while each fits whole in the buffer and the address
 *   array (*pAddrLen / 80, at most 255; one address without pAddrLen); a first packet that does not
 *   fit is truncated, consumed, and the call fails with 122. flags != 0, *pAddrLen outside
 *   80..20400, or a SEND_ONLY handle: 87. With nothing left to return (end of the block or a wait
 *   not raised) it blocks; after WinDivertShutdown(RECV) it fails with ERROR_NO_DATA (232) instead;
 *   a call blocked when the handle is closed fails with ERROR_OPERATION_ABORTED (995).
 * - OVERLAPPED: what is ready completes at once (TRUE, *recv_len set, Internal/InternalHigh set,
 *   the event signalled). Otherwise FALSE with ERROR_IO_PENDING, and the request completes when a
 *   `signal` makes data available, on Shutdown(RECV) (232) or on Close (995), through
 *   Internal/InternalHigh and hEvent (the handle itself when hEvent is NULL), so that
 *   GetOverlappedResult works. At most 8 pending per handle. Not supported: I/O completion ports,
 *   CancelIo/CancelIoEx.
 * - SendEx takes addrLen / 80 packets from the buffer, each as long as its IP header says, and logs
 *   each with its address and handle. Errors: 87 (flags, addrLen, a RECV_ONLY or non-NETWORK
 *   handle, not IPv4/IPv6), 122 (buffer shorter than the packets), 232 after Shutdown(SEND).
 *   Checksums are neither checked nor fixed and Impostor TTLs are not decremented. OVERLAPPED
 *   sends always complete at once.
 * - SetParam checks the ranges of QUEUE_LENGTH/TIME/SIZE (87 outside, and for the read-only
 *   VERSION_*); GetParam returns them (defaults 4096, 2000, 4194304) and the script's version.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <windows.h>

#include "base/addr.h"
#include "fake_windivert.h"

HANDLE WinDivertOpen(const char *filter, int layer, INT16 priority, UINT64 flags);
BOOL WinDivertRecvEx(HANDLE handle, void *packet, UINT packet_len, UINT *recv_len, UINT64 flags,
		     void *addr, UINT *addr_len, LPOVERLAPPED overlapped);
BOOL WinDivertSendEx(HANDLE handle, const void *packet, UINT packet_len, UINT *send_len,
		     UINT64 flags, const void *addr, UINT addr_len, LPOVERLAPPED overlapped);
BOOL WinDivertShutdown(HANDLE handle, int how);
BOOL WinDivertClose(HANDLE handle);
BOOL WinDivertSetParam(HANDLE handle, int param, UINT64 value);
BOOL WinDivertGetParam(HANDLE handle, int param, UINT64 *value);

enum {
	ADDR_SIZE = 80,
	BATCH_MAX = 255,
	PACKET_MAX = 40 + 0xFFFF,
	MAX_HANDLES = 64,
	MAX_PENDING = 8,
	MAX_SIGNALS = 64,
	NAME_MAX_LEN = 32,
	SCRIPT_MAX = 16 << 20,
};

enum layer { L_NETWORK, L_NETWORK_FORWARD, L_FLOW, L_SOCKET, L_REFLECT, L_COUNT };

enum {
	F_SNIFF = 0x1,
	F_DROP = 0x2,
	F_RECV_ONLY = 0x4,
	F_SEND_ONLY = 0x8,
	F_NO_INSTALL = 0x10,
	F_FRAGMENTS = 0x20,
};

enum { A_SNIFFED = 0x01, A_OUTBOUND = 0x02, A_IPV6 = 0x10 };

enum item_kind { ITEM_EVENT, ITEM_PACKET, ITEM_ERROR, ITEM_SIGNAL, ITEM_WAIT };

struct item {
	enum item_kind kind;
	bool has_ts;
	uint8_t addr[ADDR_SIZE]; /* all but the timestamp and Sniffed */
	uint8_t *packet;
	UINT packet_len;
	DWORD error;
	char name[NAME_MAX_LEN];
};

struct block {
	int layer;
	DWORD fail;
	bool fail_null;
	bool taken;
	struct item *items;
	size_t n, cap;
};

struct recv_request {
	uint8_t *packet;
	UINT packet_len;
	uint8_t *addr;
	UINT *addr_len;
	UINT max_addrs;
	OVERLAPPED *overlapped;
};

struct slot {
	HANDLE h;
	bool open;
	int layer;
	INT16 priority;
	UINT64 flags;
	char filter[FAKE_WD_FILTER_MAX];
	int shutdown_how;
	uint64_t params[3];
	struct block *block; /* NULL: nothing to receive */
	size_t pos;
	int blocked; /* synchronous RecvEx calls waiting */
	struct recv_request pending[MAX_PENDING];
	int n_pending;
};

struct sent {
	uint8_t *packet;
	UINT len;
	uint8_t addr[ADDR_SIZE];
	int handle;
};

static SRWLOCK lock = SRWLOCK_INIT;
static CONDITION_VARIABLE changed = CONDITION_VARIABLE_INIT;

static bool loaded;
static char script_error[512];
static unsigned version_major = 2, version_minor = 2;
static DWORD open_fail;
static bool open_fail_null;
static struct block *blocks;
static size_t n_blocks;
static char signals[MAX_SIGNALS][NAME_MAX_LEN];
static int n_signals;
static struct slot slots[MAX_HANDLES];
static int n_slots;
static struct sent *sent_log;
static int n_sent, cap_sent;

/* ---- writing the 80-byte address ---- */

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

/* The driver's SOCKET/FLOW address: ::ffff:a.b.c.d or the IPv6 address as a little-endian
 * 128-bit integer, i.e. the 16 network-order bytes reversed. */
static void put_socket_addr(uint8_t *p, const struct addr *a)
{
	uint8_t net[16] = {0};

	if (a->family == ADDR_V4) {
		net[10] = net[11] = 0xff;
		memcpy(net + 12, a->bytes, 4);
	} else {
		memcpy(net, a->bytes, 16);
	}
	for (int i = 0; i < 16; i++)
		p[i] = net[15 - i];
}

/* ---- the script parser ---- */

struct parser {
	const char *file;
	int line;
	struct block *cur;
};

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int parse_error(const struct parser *ps, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(script_error, sizeof script_error, "%s:%d: ", ps->file, ps->line);
	if (n < 0 || (size_t)n >= sizeof script_error)
		n = 0;
	va_start(ap, fmt);
	vsnprintf(script_error + n, sizeof script_error - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	int base = 10;
	char *end;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	if (!*s || *s == '-' || *s == '+' || *s == ' ')
		return -1;
	errno = 0;
	unsigned long long v = strtoull(s, &end, base);
	if (errno || *end || v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse_num(const struct parser *ps, const char *what, const char *s, uint64_t max,
		     uint64_t *out)
{
	if (parse_u64(s, max, out) < 0)
		return parse_error(ps, "bad %s \"%s\"", what, s);
	return 0;
}

/* "a.b.c.d:P" or "[v6]:P" */
static int parse_endpoint(const struct parser *ps, const char *s, struct addr *a, uint16_t *port)
{
	const char *colon, *text = s;
	size_t len;
	uint64_t p;

	if (*s == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':')
			return parse_error(ps, "bad endpoint \"%s\" (want [IPv6]:PORT)", s);
		text = s + 1;
		len = (size_t)(close - text);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return parse_error(ps, "bad endpoint \"%s\" (want a.b.c.d:PORT)", s);
		len = (size_t)(colon - s);
	}
	if (addr_parse(a, text, len) < 0 || a->family != (*s == '[' ? ADDR_V6 : ADDR_V4))
		return parse_error(ps, "bad address in \"%s\"", s);
	if (parse_u64(colon + 1, 65535, &p) < 0)
		return parse_error(ps, "bad port in \"%s\"", s);
	*port = (uint16_t)p;
	return 0;
}

static int parse_flag(const char *w, uint8_t *flags)
{
	static const struct {
		const char *name;
		uint8_t bit;
	} names[] = {
		{"out", 0x02}, {"loopback", 0x04}, {"impostor", 0x08},
		{"ipcsum", 0x20}, {"tcpcsum", 0x40}, {"udpcsum", 0x80},
	};
	if (strcmp(w, "in") == 0) {
		*flags &= (uint8_t)~A_OUTBOUND;
		return 0;
	}
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		if (strcmp(w, names[i].name) == 0) {
			*flags |= names[i].bit;
			return 0;
		}
	}
	return -1;
}

static int layer_by_name(const char *w)
{
	static const char *const names[L_COUNT] = {"network", "network-forward", "flow", "socket",
						   "reflect"};
	for (int i = 0; i < L_COUNT; i++)
		if (strcmp(w, names[i]) == 0)
			return i;
	return -1;
}

static int event_by_name(const char *w, int *layer)
{
	static const char *const names[] = {"established", "deleted", "bind",  "connect",
					    "listen",      "accept",  "close"};
	for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++) {
		if (strcmp(w, names[i]) == 0) {
			*layer = i < 2 ? L_FLOW : L_SOCKET;
			return i + 1;
		}
	}
	return -1;
}

static struct item *new_item(const struct parser *ps, enum item_kind kind)
{
	struct block *b = ps->cur;

	if (!b) {
		parse_error(ps, "an item before any `handle` line");
		return NULL;
	}
	if (b->n == b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 16;
		struct item *items = realloc(b->items, cap * sizeof *items);
		if (!items) {
			parse_error(ps, "out of memory");
			return NULL;
		}
		b->items = items;
		b->cap = cap;
	}
	struct item *it = &b->items[b->n++];
	memset(it, 0, sizeof *it);
	it->kind = kind;
	return it;
}

static int parse_name(const struct parser *ps, char **w, int nw, char *name)
{
	if (nw != 2 || strlen(w[1]) >= NAME_MAX_LEN)
		return parse_error(ps, "`%s` takes one NAME (shorter than %d)", w[0], NAME_MAX_LEN);
	strcpy(name, w[1]);
	return 0;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int parse_packet(struct parser *ps, char **w, int nw, const char *hex)
{
	uint8_t flags = 0;
	uint64_t ts = 0, if_idx = 0, sub = 0;
	bool has_ts = false;

	if (ps->cur && ps->cur->layer != L_NETWORK && ps->cur->layer != L_NETWORK_FORWARD)
		return parse_error(ps, "`packet` outside a network or network-forward block");
	for (int i = 1; i < nw; i++) {
		if (strncmp(w[i], "if=", 3) == 0) {
			if (parse_num(ps, "if", w[i] + 3, UINT32_MAX, &if_idx) < 0)
				return -1;
		} else if (strncmp(w[i], "sub=", 4) == 0) {
			if (parse_num(ps, "sub", w[i] + 4, UINT32_MAX, &sub) < 0)
				return -1;
		} else if (strncmp(w[i], "ts=", 3) == 0) {
			if (parse_num(ps, "ts", w[i] + 3, INT64_MAX, &ts) < 0)
				return -1;
			has_ts = true;
		} else if (parse_flag(w[i], &flags) < 0) {
			return parse_error(ps, "unknown word \"%s\" in `packet`", w[i]);
		}
	}
	if (!hex)
		return parse_error(ps, "`packet` without `hex BYTES`");

	size_t digits = 0;
	for (const char *p = hex; *p; p++) {
		if (*p == ' ' || *p == '\t' || *p == '\r')
			continue;
		if (hex_digit(*p) < 0)
			return parse_error(ps, "bad hex digit '%c'", *p);
		digits++;
	}
	if (digits == 0 || digits % 2)
		return parse_error(ps, "`hex` needs an even, non-zero number of digits");
	if (digits / 2 > PACKET_MAX)
		return parse_error(ps, "packet longer than %d bytes", PACKET_MAX);

	struct item *it = new_item(ps, ITEM_PACKET);
	if (!it)
		return -1;
	it->packet = malloc(digits / 2);
	if (!it->packet)
		return parse_error(ps, "out of memory");
	it->packet_len = (UINT)(digits / 2);
	size_t k = 0;
	int hi = -1;
	for (const char *p = hex; *p; p++) {
		int d = hex_digit(*p);
		if (d < 0)
			continue;
		if (hi < 0) {
			hi = d;
		} else {
			it->packet[k++] = (uint8_t)(hi << 4 | d);
			hi = -1;
		}
	}
	if (it->packet[0] >> 4 == 6)
		flags |= A_IPV6;
	it->has_ts = has_ts;
	put64(it->addr, ts);
	it->addr[8] = (uint8_t)ps->cur->layer;
	it->addr[9] = 0;
	it->addr[10] = flags;
	put32(it->addr + 16, (uint32_t)if_idx);
	put32(it->addr + 20, (uint32_t)sub);
	return 0;
}

static int parse_event(struct parser *ps, char **w, int nw, int event, int layer)
{
	uint8_t flags = event == 4 ? A_OUTBOUND : 0;
	uint64_t pid = 0, proto = 6, endpoint = 0, parent = 0, ts = 0;
	bool has_ts = false;
	struct addr local = {.family = ADDR_NONE}, remote = {.family = ADDR_NONE};
	uint16_t lport = 0, rport = 0;

	if (!ps->cur)
		return parse_error(ps, "an item before any `handle` line");
	if (ps->cur->layer != layer)
		return parse_error(ps, "`%s` belongs in a %s block", w[0],
				   layer == L_FLOW ? "flow" : "socket");
	for (int i = 1; i < nw; i++) {
		char *eq = strchr(w[i], '=');
		const char *val = eq ? eq + 1 : "";
		size_t klen = eq ? (size_t)(eq - w[i]) : 0;
		int r = 0;
		if (!eq) {
			if (parse_flag(w[i], &flags) < 0)
				return parse_error(ps, "unknown word \"%s\" in `%s`", w[i], w[0]);
		} else if (klen == 3 && strncmp(w[i], "pid", 3) == 0) {
			r = parse_num(ps, "pid", val, UINT32_MAX, &pid);
		} else if (klen == 5 && strncmp(w[i], "proto", 5) == 0) {
			if (strcmp(val, "tcp") == 0)
				proto = 6;
			else if (strcmp(val, "udp") == 0)
				proto = 17;
			else if (strcmp(val, "icmp") == 0)
				proto = 1;
			else if (strcmp(val, "icmpv6") == 0)
				proto = 58;
			else
				r = parse_num(ps, "proto", val, 255, &proto);
		} else if (klen == 5 && strncmp(w[i], "local", 5) == 0) {
			r = parse_endpoint(ps, val, &local, &lport);
		} else if (klen == 6 && strncmp(w[i], "remote", 6) == 0) {
			r = parse_endpoint(ps, val, &remote, &rport);
		} else if (klen == 8 && strncmp(w[i], "endpoint", 8) == 0) {
			r = parse_num(ps, "endpoint", val, UINT64_MAX, &endpoint);
		} else if (klen == 6 && strncmp(w[i], "parent", 6) == 0) {
			r = parse_num(ps, "parent", val, UINT64_MAX, &parent);
		} else if (klen == 2 && strncmp(w[i], "ts", 2) == 0) {
			r = parse_num(ps, "ts", val, INT64_MAX, &ts);
			has_ts = true;
		} else {
			return parse_error(ps, "unknown field \"%s\" in `%s`", w[i], w[0]);
		}
		if (r < 0)
			return -1;
	}
	if (local.family != ADDR_NONE && remote.family != ADDR_NONE &&
	    local.family != remote.family)
		return parse_error(ps, "local and remote of different families");
	enum addr_family fam = local.family != ADDR_NONE ? local.family : remote.family;
	if (fam == ADDR_NONE)
		fam = ADDR_V4;
	if (local.family == ADDR_NONE)
		local.family = (uint8_t)fam;
	if (remote.family == ADDR_NONE)
		remote.family = (uint8_t)fam;
	if (fam == ADDR_V6)
		flags |= A_IPV6;

	struct item *it = new_item(ps, ITEM_EVENT);
	if (!it)
		return -1;
	it->has_ts = has_ts;
	put64(it->addr, ts);
	it->addr[8] = (uint8_t)layer;
	it->addr[9] = (uint8_t)event;
	it->addr[10] = flags;
	put64(it->addr + 16, endpoint);
	put64(it->addr + 24, parent);
	put32(it->addr + 32, (uint32_t)pid);
	put_socket_addr(it->addr + 36, &local);
	put_socket_addr(it->addr + 52, &remote);
	put16(it->addr + 68, lport);
	put16(it->addr + 70, rport);
	it->addr[72] = (uint8_t)proto;
	return 0;
}

static int parse_line(struct parser *ps, char *line)
{
	char *w[32], *hex = NULL;
	int nw = 0;
	uint64_t v;

	char *hash = strchr(line, '#');
	if (hash)
		*hash = '\0';
	for (char *p = line;;) {
		while (*p == ' ' || *p == '\t' || *p == '\r')
			p++;
		if (!*p)
			break;
		if (nw == (int)(sizeof w / sizeof w[0]))
			return parse_error(ps, "too many words");
		w[nw++] = p;
		while (*p && *p != ' ' && *p != '\t' && *p != '\r')
			p++;
		bool end = !*p;
		*p = '\0';
		if (!end)
			p++;
		if (nw > 1 && strcmp(w[0], "packet") == 0 && strcmp(w[nw - 1], "hex") == 0) {
			nw--;
			hex = p;
			break;
		}
		if (end)
			break;
	}
	if (nw == 0)
		return 0;

	int layer, event;
	if (strcmp(w[0], "version") == 0) {
		if (nw < 2 || nw > 3 || parse_num(ps, "version", w[1], 255, &v) < 0)
			return parse_error(ps, "`version MAJOR [MINOR]`");
		version_major = (unsigned)v;
		if (nw == 3) {
			if (parse_num(ps, "minor version", w[2], 255, &v) < 0)
				return -1;
			version_minor = (unsigned)v;
		}
	} else if (strcmp(w[0], "open-fail") == 0) {
		if (nw < 2 || nw > 3 || (nw == 3 && strcmp(w[2], "null") != 0))
			return parse_error(ps, "`open-fail CODE [null]`");
		if (parse_num(ps, "error code", w[1], UINT32_MAX, &v) < 0)
			return -1;
		open_fail = (DWORD)v;
		open_fail_null = nw == 3;
	} else if (strcmp(w[0], "handle") == 0) {
		if (nw < 2 || (layer = layer_by_name(w[1])) < 0)
			return parse_error(ps, "`handle LAYER`: network, network-forward, "
					       "flow, socket, reflect");
		struct block *nb = realloc(blocks, (n_blocks + 1) * sizeof *nb);
		if (!nb)
			return parse_error(ps, "out of memory");
		blocks = nb;
		struct block *b = &blocks[n_blocks++];
		memset(b, 0, sizeof *b);
		b->layer = layer;
		for (int i = 2; i < nw; i++) {
			if (strncmp(w[i], "fail=", 5) == 0) {
				if (parse_num(ps, "error code", w[i] + 5, UINT32_MAX, &v) < 0)
					return -1;
				b->fail = (DWORD)v;
			} else if (strcmp(w[i], "null") == 0) {
				b->fail_null = true;
			} else {
				return parse_error(ps, "unknown word \"%s\" in `handle`", w[i]);
			}
		}
		ps->cur = b;
	} else if (strcmp(w[0], "packet") == 0) {
		return parse_packet(ps, w, nw, hex);
	} else if ((event = event_by_name(w[0], &layer)) > 0) {
		return parse_event(ps, w, nw, event, layer);
	} else if (strcmp(w[0], "error") == 0) {
		if (nw != 2 || parse_num(ps, "error code", w[1], UINT32_MAX, &v) < 0)
			return parse_error(ps, "`error CODE`");
		struct item *it = new_item(ps, ITEM_ERROR);
		if (!it)
			return -1;
		it->error = (DWORD)v;
	} else if (strcmp(w[0], "signal") == 0 || strcmp(w[0], "wait") == 0) {
		struct item *it = new_item(ps, w[0][0] == 's' ? ITEM_SIGNAL : ITEM_WAIT);
		if (!it)
			return -1;
		return parse_name(ps, w, nw, it->name);
	} else {
		return parse_error(ps, "unknown directive \"%s\"", w[0]);
	}
	return 0;
}

static void forget_script(void)
{
	for (size_t i = 0; i < n_blocks; i++) {
		for (size_t j = 0; j < blocks[i].n; j++)
			free(blocks[i].items[j].packet);
		free(blocks[i].items);
	}
	free(blocks);
	blocks = NULL;
	n_blocks = 0;
	version_major = version_minor = 2;
	open_fail = 0;
	open_fail_null = false;
	n_signals = 0;
	loaded = false;
}

/* Reads FAKE_WINDIVERT_SCRIPT; 0, or -1 with script_error set and nothing kept. */
static int load_script(void)
{
	char path[MAX_PATH];
	struct parser ps = {.file = path};
	char *text = NULL;
	int rc = -1;

	script_error[0] = '\0';
	DWORD n = GetEnvironmentVariableA("FAKE_WINDIVERT_SCRIPT", path, sizeof path);
	if (n == 0) {
		loaded = true;
		return 0;
	}
	if (n >= sizeof path) {
		snprintf(script_error, sizeof script_error, "FAKE_WINDIVERT_SCRIPT: path too long");
		return -1;
	}
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(script_error, sizeof script_error, "%s: cannot open", path);
		return -1;
	}
	text = malloc(SCRIPT_MAX + 1);
	size_t len = text ? fread(text, 1, SCRIPT_MAX + 1, f) : 0;
	fclose(f);
	if (!text || len > SCRIPT_MAX) {
		snprintf(script_error, sizeof script_error, "%s: unreadable or over %d bytes", path,
			 SCRIPT_MAX);
		goto fail;
	}
	text[len] = '\0';
	for (char *line = text; line;) {
		int continued = 0;
		char *nl = strchr(line, '\n');
		for (char *e; nl; nl = strchr(nl + 1, '\n'), continued++) {
			e = nl > line && nl[-1] == '\r' ? nl - 1 : nl;
			if (e == line || e[-1] != '\\')
				break;
			memset(e - 1, ' ', (size_t)(nl - e) + 2);
		}
		if (nl)
			*nl = '\0';
		ps.line++;
		if (parse_line(&ps, line) < 0)
			goto fail;
		ps.line += continued;
		line = nl ? nl + 1 : NULL;
	}
	loaded = true;
	rc = 0;
fail:
	free(text);
	if (rc < 0) {
		forget_script();
		fprintf(stderr, "fake WinDivert: %s\n", script_error);
	}
	return rc;
}

/* ---- handles ---- */

static struct slot *find_slot(HANDLE h)
{
	for (int i = 0; i < n_slots; i++)
		if (slots[i].open && slots[i].h == h)
			return &slots[i];
	return NULL;
}

static bool flags_valid(int layer, UINT64 flags)
{
	if (flags & ~(UINT64)0x3f)
		return false;
	if ((flags & (F_SNIFF | F_DROP)) == (F_SNIFF | F_DROP))
		return false;
	if ((flags & (F_RECV_ONLY | F_SEND_ONLY)) == (F_RECV_ONLY | F_SEND_ONLY))
		return false;
	if (layer == L_SOCKET && !(flags & F_RECV_ONLY))
		return false;
	if ((layer == L_FLOW || layer == L_REFLECT) &&
	    (flags & (F_SNIFF | F_RECV_ONLY)) != (F_SNIFF | F_RECV_ONLY))
		return false;
	return true;
}

static BOOL fail(DWORD error)
{
	SetLastError(error);
	return FALSE;
}

static HANDLE open_failure(DWORD error, bool null)
{
	SetLastError(error);
	return null ? NULL : INVALID_HANDLE_VALUE;
}

HANDLE WinDivertOpen(const char *filter, int layer, INT16 priority, UINT64 flags)
{
	HANDLE result = INVALID_HANDLE_VALUE;
	DWORD error = 0;
	bool null = false;

	if (!filter || layer < 0 || layer >= L_COUNT || priority < -30000 || priority > 30000 ||
	    !flags_valid(layer, flags))
		return open_failure(ERROR_INVALID_PARAMETER, false);

	AcquireSRWLockExclusive(&lock);
	if (!loaded && load_script() < 0) {
		error = ERROR_INVALID_DATA;
		goto out;
	}
	if (open_fail) {
		error = open_fail;
		null = open_fail_null;
		goto out;
	}
	struct block *b = NULL;
	for (size_t i = 0; i < n_blocks && !b; i++)
		if (!blocks[i].taken && blocks[i].layer == layer)
			b = &blocks[i];
	if (b) {
		b->taken = true;
		if (b->fail) {
			error = b->fail;
			null = b->fail_null;
			goto out;
		}
	}
	if (n_slots == MAX_HANDLES) {
		error = ERROR_TOO_MANY_OPEN_FILES;
		goto out;
	}
	HANDLE ev = CreateEventW(NULL, TRUE, FALSE, NULL);
	if (!ev) {
		error = GetLastError();
		goto out;
	}
	struct slot *s = &slots[n_slots++];
	memset(s, 0, sizeof *s);
	s->h = ev;
	s->open = true;
	s->layer = layer;
	s->priority = priority;
	s->flags = flags;
	snprintf(s->filter, sizeof s->filter, "%s", filter);
	s->params[0] = 4096;
	s->params[1] = 2000;
	s->params[2] = 4194304;
	s->block = b;
	result = ev;
out:
	ReleaseSRWLockExclusive(&lock);
	if (error)
		return open_failure(error, null);
	return result;
}

/* ---- receiving ---- */

enum outcome { DELIVERED, FAILED, BLOCK };

struct delivery {
	enum outcome outcome;
	DWORD error;
	UINT bytes;
	UINT addrs;
};

static bool raised(const char *name)
{
	for (int i = 0; i < n_signals; i++)
		if (strcmp(signals[i], name) == 0)
			return true;
	return false;
}

static void raise_signal(const char *name)
{
	if (!raised(name) && n_signals < MAX_SIGNALS)
		strcpy(signals[n_signals++], name);
	WakeAllConditionVariable(&changed);
}

static void write_addr(const struct slot *s, const struct item *it, uint8_t *dst)
{
	memcpy(dst, it->addr, ADDR_SIZE);
	if (!it->has_ts) {
		LARGE_INTEGER now;
		QueryPerformanceCounter(&now);
		put64(dst, (uint64_t)now.QuadPart);
	}
	if (s->flags & F_SNIFF)
		dst[10] |= A_SNIFFED;
}

/* Takes from s's script what one RecvEx call returns; the caller holds the lock. */
static struct delivery deliver(struct slot *s, const struct recv_request *rq)
{
	struct delivery d = {.outcome = DELIVERED};

	for (;;) {
		if (!s->open) {
			if (d.addrs)
				return d;
			return (struct delivery){.outcome = FAILED,
						 .error = ERROR_OPERATION_ABORTED};
		}
		if (!s->block || s->pos == s->block->n)
			goto nothing_more;
		struct item *it = &s->block->items[s->pos];
		switch (it->kind) {
		case ITEM_SIGNAL:
			if (d.addrs)
				return d;
			s->pos++;
			raise_signal(it->name);
			continue;
		case ITEM_WAIT:
			if (raised(it->name)) {
				s->pos++;
				continue;
			}
			goto nothing_more;
		case ITEM_ERROR:
			if (d.addrs)
				return d;
			s->pos++;
			return (struct delivery){.outcome = FAILED, .error = it->error};
		case ITEM_EVENT:
		case ITEM_PACKET:
			break;
		}
		if (d.addrs == rq->max_addrs)
			return d;
		UINT room = rq->packet_len - d.bytes;
		if (it->packet_len > room) {
			if (d.addrs)
				return d;
			if (room)
				memcpy(rq->packet, it->packet, room);
			if (rq->addr)
				write_addr(s, it, rq->addr);
			s->pos++;
			return (struct delivery){.outcome = FAILED,
						 .error = ERROR_INSUFFICIENT_BUFFER,
						 .bytes = room,
						 .addrs = 1};
		}
		if (it->packet_len)
			memcpy(rq->packet + d.bytes, it->packet, it->packet_len);
		if (rq->addr)
			write_addr(s, it, rq->addr + (size_t)d.addrs * ADDR_SIZE);
		d.bytes += it->packet_len;
		d.addrs++;
		s->pos++;
	}
nothing_more:
	if (d.addrs)
		return d;
	if (s->shutdown_how & 1)
		return (struct delivery){.outcome = FAILED, .error = ERROR_NO_DATA};
	return (struct delivery){.outcome = BLOCK};
}

static HANDLE overlapped_event(const struct slot *s, const OVERLAPPED *ov)
{
	HANDLE ev = (HANDLE)((ULONG_PTR)ov->hEvent & ~(ULONG_PTR)1);
	return ev ? ev : s->h;
}

/* Fills in an OVERLAPPED as the I/O manager does; an error travels as the NTSTATUS
 * 0xC007xxxx (FACILITY_NTWIN32), which GetOverlappedResult turns back into the same code. */
static void finish_overlapped(const struct slot *s, OVERLAPPED *ov, DWORD error, UINT bytes)
{
	ov->Internal = error ? (ULONG_PTR)(0xC0070000u | (error & 0xFFFFu)) : 0;
	ov->InternalHigh = bytes;
	SetEvent(overlapped_event(s, ov));
}

/* Completes every pending overlapped RecvEx that can now complete, oldest first, until none
 * can (a delivery may raise a signal another handle waits for); the caller holds the lock. */
static void complete_pending(void)
{
	for (bool progress = true; progress;) {
		progress = false;
		for (int i = 0; i < n_slots; i++) {
			struct slot *s = &slots[i];
			while (s->n_pending) {
				struct recv_request *rq = &s->pending[0];
				struct delivery d = deliver(s, rq);
				if (d.outcome == BLOCK)
					break;
				if (rq->addr_len && d.addrs)
					*rq->addr_len = d.addrs * ADDR_SIZE;
				finish_overlapped(s, rq->overlapped,
						  d.outcome == FAILED ? d.error : 0, d.bytes);
				s->n_pending--;
				memmove(&s->pending[0], &s->pending[1],
					(size_t)s->n_pending * sizeof *rq);
				progress = true;
			}
		}
	}
}

BOOL WinDivertRecvEx(HANDLE handle, void *packet, UINT packet_len, UINT *recv_len, UINT64 flags,
		     void *addr, UINT *addr_len, LPOVERLAPPED overlapped)
{
	struct recv_request rq = {
		.packet = packet,
		.packet_len = packet ? packet_len : 0,
		.addr = addr,
		.addr_len = addr_len,
		.max_addrs = 1,
		.overlapped = overlapped,
	};
	struct slot *s = NULL;
	DWORD error = 0;
	BOOL ok = FALSE;

	if (flags != 0)
		return fail(ERROR_INVALID_PARAMETER);
	if (addr_len) {
		if (*addr_len < ADDR_SIZE || *addr_len > BATCH_MAX * ADDR_SIZE || !addr)
			return fail(ERROR_INVALID_PARAMETER);
		rq.max_addrs = *addr_len / ADDR_SIZE;
	}

	AcquireSRWLockExclusive(&lock);
	s = find_slot(handle);
	if (!s) {
		error = ERROR_INVALID_HANDLE;
		goto out;
	}
	if (s->flags & F_SEND_ONLY) {
		error = ERROR_INVALID_PARAMETER;
		goto out;
	}
	struct delivery d;
	for (;;) {
		d = deliver(s, &rq);
		if (d.outcome != BLOCK)
			break;
		if (overlapped) {
			if (s->n_pending == MAX_PENDING) {
				error = ERROR_NOT_ENOUGH_QUOTA;
				goto out;
			}
			overlapped->Internal = (ULONG_PTR)0x103; /* STATUS_PENDING */
			overlapped->InternalHigh = 0;
			ResetEvent(overlapped_event(s, overlapped));
			s->pending[s->n_pending++] = rq;
			WakeAllConditionVariable(&changed);
			error = ERROR_IO_PENDING;
			goto out;
		}
		/* Delivering may have raised a signal that an overlapped read on another handle
		 * waits for: complete those before sleeping, or they would wait for this call. */
		complete_pending();
		s->blocked++;
		WakeAllConditionVariable(&changed);
		SleepConditionVariableSRW(&changed, &lock, INFINITE, 0);
		s->blocked--;
	}
	if (addr_len && d.addrs)
		*addr_len = d.addrs * ADDR_SIZE;
	if (d.outcome == FAILED) {
		error = d.error;
		if (overlapped)
			finish_overlapped(s, overlapped, error, d.bytes);
		goto out;
	}
	if (recv_len)
		*recv_len = d.bytes;
	if (overlapped)
		finish_overlapped(s, overlapped, 0, d.bytes);
	ok = TRUE;
out:
	if (s)
		complete_pending();
	ReleaseSRWLockExclusive(&lock);
	if (!ok)
		SetLastError(error);
	return ok;
}

/* ---- sending ---- */

static int log_packet(const uint8_t *packet, UINT len, const uint8_t *addr, int handle)
{
	if (n_sent == cap_sent) {
		int cap = cap_sent ? 2 * cap_sent : 64;
		struct sent *log = realloc(sent_log, (size_t)cap * sizeof *log);
		if (!log)
			return -1;
		sent_log = log;
		cap_sent = cap;
	}
	struct sent *e = &sent_log[n_sent];
	e->packet = malloc(len);
	if (!e->packet)
		return -1;
	memcpy(e->packet, packet, len);
	e->len = len;
	memcpy(e->addr, addr, ADDR_SIZE);
	e->handle = handle;
	n_sent++;
	return 0;
}

BOOL WinDivertSendEx(HANDLE handle, const void *packet, UINT packet_len, UINT *send_len,
		     UINT64 flags, const void *addr, UINT addr_len, LPOVERLAPPED overlapped)
{
	const uint8_t *data = packet;
	UINT left = packet ? packet_len : 0, total = 0;
	DWORD error = 0;

	if (flags != 0 || !addr || addr_len < ADDR_SIZE || addr_len > BATCH_MAX * ADDR_SIZE)
		return fail(ERROR_INVALID_PARAMETER);

	AcquireSRWLockExclusive(&lock);
	struct slot *s = find_slot(handle);
	if (!s) {
		error = ERROR_INVALID_HANDLE;
		goto out;
	}
	if (s->shutdown_how & 2) {
		error = ERROR_NO_DATA;
		goto out;
	}
	if ((s->flags & F_RECV_ONLY) || (s->layer != L_NETWORK && s->layer != L_NETWORK_FORWARD)) {
		error = ERROR_INVALID_PARAMETER;
		goto out;
	}
	for (UINT i = 0; i < addr_len / ADDR_SIZE; i++) {
		UINT len;
		if (left < 20) {
			error = ERROR_INSUFFICIENT_BUFFER;
			goto out;
		}
		switch (data[0] >> 4) {
		case 4:
			len = (UINT)data[2] << 8 | data[3];
			break;
		case 6:
			if (left < 40) {
				error = ERROR_INSUFFICIENT_BUFFER;
				goto out;
			}
			len = ((UINT)data[4] << 8 | data[5]) + 40;
			break;
		default:
			error = ERROR_INVALID_PARAMETER;
			goto out;
		}
		if (len < 20) {
			error = ERROR_INVALID_PARAMETER;
			goto out;
		}
		if (left < len) {
			error = ERROR_INSUFFICIENT_BUFFER;
			goto out;
		}
		if (log_packet(data, len, (const uint8_t *)addr + (size_t)i * ADDR_SIZE,
			       (int)(s - slots)) < 0) {
			error = ERROR_NOT_ENOUGH_MEMORY;
			goto out;
		}
		WakeAllConditionVariable(&changed);
		data += len;
		left -= len;
		total += len;
	}
	if (send_len)
		*send_len = total;
	if (overlapped)
		finish_overlapped(s, overlapped, 0, total);
out:
	ReleaseSRWLockExclusive(&lock);
	if (error) {
		SetLastError(error);
		return FALSE;
	}
	return TRUE;
}

/* ---- the rest of the API ---- */

BOOL WinDivertShutdown(HANDLE handle, int how)
{
	if (how < 1 || how > 3)
		return fail(ERROR_INVALID_PARAMETER);
	AcquireSRWLockExclusive(&lock);
	struct slot *s = find_slot(handle);
	if (s) {
		s->shutdown_how |= how;
		WakeAllConditionVariable(&changed);
		complete_pending();
	}
	ReleaseSRWLockExclusive(&lock);
	if (!s)
		return fail(ERROR_INVALID_HANDLE);
	return TRUE;
}

BOOL WinDivertClose(HANDLE handle)
{
	AcquireSRWLockExclusive(&lock);
	struct slot *s = find_slot(handle);
	if (s) {
		s->open = false;
		complete_pending();
		WakeAllConditionVariable(&changed);
		CloseHandle(s->h);
	}
	ReleaseSRWLockExclusive(&lock);
	if (!s)
		return fail(ERROR_INVALID_HANDLE);
	return TRUE;
}

BOOL WinDivertSetParam(HANDLE handle, int param, UINT64 value)
{
	static const UINT64 lo[3] = {32, 100, 65535}, hi[3] = {16384, 16000, 33554432};
	DWORD error = 0;

	AcquireSRWLockExclusive(&lock);
	struct slot *s = find_slot(handle);
	if (!s)
		error = ERROR_INVALID_HANDLE;
	else if (param < 0 || param > 2 || value < lo[param] || value > hi[param])
		error = ERROR_INVALID_PARAMETER;
	else
		s->params[param] = value;
	ReleaseSRWLockExclusive(&lock);
	if (error)
		return fail(error);
	return TRUE;
}

BOOL WinDivertGetParam(HANDLE handle, int param, UINT64 *value)
{
	DWORD error = 0;

	AcquireSRWLockExclusive(&lock);
	struct slot *s = find_slot(handle);
	if (!s)
		error = ERROR_INVALID_HANDLE;
	else if (!value || param < 0 || param > 4)
		error = ERROR_INVALID_PARAMETER;
	else if (param <= 2)
		*value = s->params[param];
	else
		*value = param == 3 ? version_major : version_minor;
	ReleaseSRWLockExclusive(&lock);
	if (error)
		return fail(error);
	return TRUE;
}

/* ---- test-only exports (fake_windivert.h) ---- */

int FakeWinDivertReset(void)
{
	int rc = 0;

	AcquireSRWLockExclusive(&lock);
	for (int i = 0; i < n_slots; i++)
		if (slots[i].open || slots[i].blocked)
			rc = -1;
	if (rc == 0) {
		forget_script();
		script_error[0] = '\0';
		n_slots = 0;
		for (int i = 0; i < n_sent; i++)
			free(sent_log[i].packet);
		n_sent = 0;
	}
	ReleaseSRWLockExclusive(&lock);
	return rc;
}

const char *FakeWinDivertScriptError(void)
{
	return script_error;
}

int FakeWinDivertOpenCount(void)
{
	AcquireSRWLockShared(&lock);
	int n = n_slots;
	ReleaseSRWLockShared(&lock);
	return n;
}

int FakeWinDivertOpened(int i, struct fake_wd_open_info *out)
{
	int rc = -1;

	AcquireSRWLockShared(&lock);
	if (i >= 0 && i < n_slots) {
		const struct slot *s = &slots[i];
		memcpy(out->filter, s->filter, sizeof out->filter);
		out->layer = s->layer;
		out->priority = s->priority;
		out->flags = s->flags;
		out->shutdown_how = s->shutdown_how;
		out->closed = !s->open;
		out->queue_length = s->params[0];
		out->queue_time = s->params[1];
		out->queue_size = s->params[2];
		rc = 0;
	}
	ReleaseSRWLockShared(&lock);
	return rc;
}

int FakeWinDivertSentCount(void)
{
	AcquireSRWLockShared(&lock);
	int n = n_sent;
	ReleaseSRWLockShared(&lock);
	return n;
}

int FakeWinDivertSent(int i, void *buf, unsigned cap, unsigned char *addr, int *handle)
{
	int rc = -1;

	AcquireSRWLockShared(&lock);
	if (i >= 0 && i < n_sent) {
		const struct sent *e = &sent_log[i];
		if (buf)
			memcpy(buf, e->packet, e->len < cap ? e->len : cap);
		if (addr)
			memcpy(addr, e->addr, ADDR_SIZE);
		if (handle)
			*handle = e->handle;
		rc = (int)e->len;
	}
	ReleaseSRWLockShared(&lock);
	return rc;
}

/* Waits on `changed` until cond() holds or timeout_ms passed; the caller holds the lock. */
static bool wait_until(bool (*cond)(int), int arg, unsigned timeout_ms)
{
	ULONGLONG deadline = GetTickCount64() + timeout_ms;

	while (!cond(arg)) {
		ULONGLONG now = GetTickCount64();
		if (now >= deadline)
			return false;
		SleepConditionVariableSRW(&changed, &lock, (DWORD)(deadline - now), 0);
	}
	return true;
}

static bool enough_sent(int n)
{
	return n_sent >= n;
}

static bool all_idle(int unused)
{
	bool any = false;

	(void)unused;
	for (int i = 0; i < n_slots; i++) {
		const struct slot *s = &slots[i];
		if (!s->open || (s->flags & F_SEND_ONLY) || (s->shutdown_how & 1))
			continue;
		if (!s->blocked && !s->n_pending)
			return false;
		any = true;
	}
	return any;
}

int FakeWinDivertWaitSent(int n, unsigned timeout_ms)
{
	AcquireSRWLockExclusive(&lock);
	wait_until(enough_sent, n, timeout_ms);
	int count = n_sent;
	ReleaseSRWLockExclusive(&lock);
	return count;
}

int FakeWinDivertWaitIdle(unsigned timeout_ms)
{
	AcquireSRWLockExclusive(&lock);
	bool idle = wait_until(all_idle, 0, timeout_ms);
	ReleaseSRWLockExclusive(&lock);
	return idle ? 1 : 0;
}
