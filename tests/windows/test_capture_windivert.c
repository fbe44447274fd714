/* test_capture_windivert.c — the windivert capture backend against the fake WinDivert.dll.
 *
 * Each test writes the fake's script (FAKE_WINDIVERT_SCRIPT), opens and attaches the capture,
 * waits for what the backend sends back (the fake's sent log) and closes it. The script is read at
 * the capture's first WinDivertOpen, so ports it names are chosen free beforehand and asked for as
 * the preferred ones. Handles: 0 is the SOCKET handle, 1 the NETWORK handle (opened in that order),
 * 2 the DNS watch when the test asks for it.
 */
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#include <tlhelp32.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/addr.h"
#include "base/loop.h"
#include "capture/capture.h"
#include "capture/capture_windivert.h"
#include "capture/windivert_api.h"
#include "check.h"
#include "divert/packet.h"
#include "fake_windivert.h"

#define WAIT_MS 10000 /* a bound that turns a hang into a failure, not a timing assertion */
#define SESSION_PID 4242
#define SCRIPT_MAX 16384

struct fake {
	int (*reset)(void);
	const char *(*script_error)(void);
	int (*open_count)(void);
	int (*opened)(int i, struct fake_wd_open_info *out);
	int (*sent_count)(void);
	int (*sent)(int i, void *buf, unsigned cap, unsigned char *addr, int *handle);
	int (*wait_sent)(int n, unsigned timeout_ms);
};

static struct fake fake;
static char script_path[MAX_PATH];

struct rig {
	struct capture *cap;
	struct loop *loop;
	uint16_t tcp_port;
	bool watch_dns;
	int answers;           /* on_dns_answer calls */
	uint8_t answer[512];   /* the last one's bytes */
	size_t answer_len;
};

/* A sent packet, as the fake logged it. */
struct sent {
	uint8_t buf[2048];
	int len;
	struct wd_address addr;
	int handle;
	struct pkt p;
	int parsed;
};

static void (*fake_fn(HMODULE dll, const char *name))(void)
{
	FARPROC p = GetProcAddress(dll, name);
	if (!p)
		check_fail(__FILE__, __LINE__, "the fake lacks %s", name);
	return (void (*)(void))p;
}

/* The test keeps its own reference to the fake, so that its state outlives each capture. */
static bool load_fake(void)
{
	HMODULE dll = LoadLibraryExW(L"WinDivert.dll", NULL, LOAD_LIBRARY_SEARCH_APPLICATION_DIR);

	if (!dll)
		return false;
	fake.reset = (int (*)(void))fake_fn(dll, "FakeWinDivertReset");
	fake.script_error = (const char *(*)(void))fake_fn(dll, "FakeWinDivertScriptError");
	fake.open_count = (int (*)(void))fake_fn(dll, "FakeWinDivertOpenCount");
	fake.opened = (int (*)(int, struct fake_wd_open_info *))fake_fn(dll, "FakeWinDivertOpened");
	fake.sent_count = (int (*)(void))fake_fn(dll, "FakeWinDivertSentCount");
	fake.sent = (int (*)(int, void *, unsigned, unsigned char *, int *))fake_fn(
		dll, "FakeWinDivertSent");
	fake.wait_sent = (int (*)(int, unsigned))fake_fn(dll, "FakeWinDivertWaitSent");
	return fake.reset && fake.script_error && fake.open_count && fake.opened &&
	       fake.sent_count && fake.sent && fake.wait_sent;
}

static void addr_of(struct addr *a, const char *text)
{
	CHECK_EQ(addr_parse(a, text, strlen(text)), 0);
}

/* A TCP (flags) or UDP (flags < 0) packet with 4 payload bytes and correct checksums. */
static size_t make_packet(uint8_t *buf, const char *src, uint16_t sport, const char *dst,
			  uint16_t dport, int tcp_flags)
{
	struct addr s, d;
	struct pkt p;
	bool tcp = tcp_flags >= 0;
	size_t ip = 0, l4 = tcp ? 20 : 8, len;

	addr_of(&s, src);
	addr_of(&d, dst);
	memset(buf, 0, 128);
	if (s.family == ADDR_V4) {
		ip = 20;
		len = ip + l4 + 4;
		buf[0] = 0x45;
		buf[2] = (uint8_t)(len >> 8);
		buf[3] = (uint8_t)len;
		buf[8] = 64;
		buf[9] = tcp ? 6 : 17;
		memcpy(buf + 12, s.bytes, 4);
		memcpy(buf + 16, d.bytes, 4);
	} else {
		ip = 40;
		len = ip + l4 + 4;
		buf[0] = 0x60;
		buf[4] = (uint8_t)((l4 + 4) >> 8);
		buf[5] = (uint8_t)(l4 + 4);
		buf[6] = tcp ? 6 : 17;
		buf[7] = 64;
		memcpy(buf + 8, s.bytes, 16);
		memcpy(buf + 24, d.bytes, 16);
	}
	buf[ip] = (uint8_t)(sport >> 8);
	buf[ip + 1] = (uint8_t)sport;
	buf[ip + 2] = (uint8_t)(dport >> 8);
	buf[ip + 3] = (uint8_t)dport;
	if (tcp) {
		buf[ip + 4] = 0x11; /* seq */
		buf[ip + 12] = 0x50;
		buf[ip + 13] = (uint8_t)tcp_flags;
		buf[ip + 14] = 0xff;
		buf[ip + 15] = 0xff;
	} else {
		buf[ip + 5] = (uint8_t)(l4 + 4);
	}
	memcpy(buf + ip + l4, "ping", 4);
	CHECK_EQ(pkt_parse(buf, len, &p), PKT_OK);
	CHECK_EQ(pkt_checksum_fill(buf, &p, true), 0);
	return len;
}

/* A UDP packet src:sport -> dst:dport (IPv4) carrying payload, with correct checksums. */
static size_t make_udp(uint8_t *buf, size_t cap, const char *src, uint16_t sport,
		       const char *dst, uint16_t dport, const uint8_t *payload, size_t plen)
{
	struct addr s, d;
	struct pkt p;
	size_t len = 28 + plen;

	addr_of(&s, src);
	addr_of(&d, dst);
	CHECK(len <= cap);
	if (len > cap)
		return 0;
	memset(buf, 0, 28);
	buf[0] = 0x45;
	buf[2] = (uint8_t)(len >> 8);
	buf[3] = (uint8_t)len;
	buf[8] = 64;
	buf[9] = 17;
	memcpy(buf + 12, s.bytes, 4);
	memcpy(buf + 16, d.bytes, 4);
	buf[20] = (uint8_t)(sport >> 8);
	buf[21] = (uint8_t)sport;
	buf[22] = (uint8_t)(dport >> 8);
	buf[23] = (uint8_t)dport;
	buf[24] = (uint8_t)((8 + plen) >> 8);
	buf[25] = (uint8_t)(8 + plen);
	memcpy(buf + 28, payload, plen);
	CHECK_EQ(pkt_parse(buf, len, &p), PKT_OK);
	CHECK_EQ(pkt_checksum_fill(buf, &p, true), 0);
	return len;
}

/* A DNS query for name (type A) with id; with `answer`, its response with one A record
 * 203.0.113.7. Returns the length. */
static size_t make_dns(uint8_t *out, uint16_t id, const char *name, bool answer)
{
	static const uint8_t rr[] = { 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x01, 0x2c, 0, 4,
				      203, 0, 113, 7 };
	size_t n = 12;

	memset(out, 0, 12);
	out[0] = (uint8_t)(id >> 8);
	out[1] = (uint8_t)id;
	out[2] = answer ? 0x81 : 0x01;
	out[3] = answer ? 0x80 : 0;
	out[5] = 1;
	out[7] = answer ? 1 : 0;
	for (const char *p = name; *p;) {
		const char *dot = strchr(p, '.');
		size_t len = dot ? (size_t)(dot - p) : strlen(p);
		out[n++] = (uint8_t)len;
		memcpy(out + n, p, len);
		n += len;
		p += len + (dot ? 1 : 0);
	}
	out[n++] = 0;
	out[n++] = 0;
	out[n++] = 1;
	out[n++] = 0;
	out[n++] = 1;
	if (answer) {
		memcpy(out + n, rr, sizeof rr);
		n += sizeof rr;
	}
	return n;
}

/* Appends "packet FLAGS hex ..." for the packet to the script. */
static void add_packet(char *script, const char *flags, const uint8_t *buf, size_t len)
{
	size_t n = strlen(script);

	n += (size_t)snprintf(script + n, SCRIPT_MAX - n, "packet %s hex ", flags);
	for (size_t i = 0; i < len && n + 3 < SCRIPT_MAX; i++)
		n += (size_t)snprintf(script + n, SCRIPT_MAX - n, "%02x", buf[i]);
	snprintf(script + n, SCRIPT_MAX - n, "\n");
}

static void add_line(char *script, const char *fmt, ...) CHECK_PRINTF(2, 3);
static void add_line(char *script, const char *fmt, ...)
{
	size_t n = strlen(script);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(script + n, SCRIPT_MAX - n, fmt, ap);
	va_end(ap);
}

static void use_script(const char *text)
{
	FILE *f = fopen(script_path, "wb");
	CHECK(f != NULL);
	if (!f)
		return;
	fputs(text, f);
	fclose(f);
	SetEnvironmentVariableA("FAKE_WINDIVERT_SCRIPT", script_path);
}

/* A port free right now on 127.0.0.1 (type SOCK_STREAM or SOCK_DGRAM); with keep, the socket
 * stays bound to it and is returned in *kept. */
static uint16_t free_port(int type, SOCKET *kept)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	int len = sizeof a;
	SOCKET s = socket(AF_INET, type, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(s != INVALID_SOCKET);
	CHECK_EQ(bind(s, (struct sockaddr *)&a, sizeof a), 0);
	CHECK_EQ(getsockname(s, (struct sockaddr *)&a, &len), 0);
	if (kept)
		*kept = s;
	else
		closesocket(s);
	return ntohs(a.sin_port);
}

static void on_answer(void *ctx, const uint8_t *msg, size_t len)
{
	struct rig *r = ctx;

	r->answers++;
	r->answer_len = len < sizeof r->answer ? len : sizeof r->answer;
	memcpy(r->answer, msg, r->answer_len);
}

/* With watch_dns, the capture watches the queries of process resolver_pid (0: any but the
 * session's and this one's) and reports the answers to on_answer. */
static bool rig_open_with(struct rig *r, const char *script, unsigned hold_ms, bool watch_dns,
			  uint32_t resolver_pid)
{
	struct capture_config cfg = { 0 };

	memset(r, 0, sizeof *r);
	r->watch_dns = watch_dns;
	if (watch_dns) {
		cfg.on_dns_answer = on_answer;
		cfg.ctx = r;
	}
	CHECK_EQ(fake.reset(), 0);
	use_script(script);
	r->tcp_port = free_port(SOCK_STREAM, NULL);
	cfg.tcp_port = r->tcp_port;
	int err = capture_windivert.open(&r->cap, &cfg);
	CHECK_EQ(err, 0);
	CHECK_STR_EQ(fake.script_error(), "");
	if (err)
		return false;
	CHECK_EQ(r->cap->listeners[CAPTURE_TCP][CAPTURE_IPV4].port, r->tcp_port);
	capture_windivert_process(r->cap, SESSION_PID, true);
	capture_windivert_set_hold_ms(r->cap, hold_ms);
	if (watch_dns)
		capture_windivert_set_resolver_pid(r->cap, resolver_pid);
	CHECK_EQ(loop_new(&r->loop, 0), 0);
	CHECK_EQ(capture_windivert.attach(r->cap, r->loop), 0);
	return true;
}

static bool rig_open(struct rig *r, const char *script, unsigned hold_ms)
{
	return rig_open_with(r, script, hold_ms, false, 0);
}

/* Closes the capture and checks that both handles were shut down both ways and closed. */
static void rig_close(struct rig *r)
{
	struct fake_wd_open_info info;

	capture_windivert.close(r->cap);
	loop_free(r->loop);
	CHECK_EQ(fake.open_count(), r->watch_dns ? 3 : 2);
	for (int i = 0; i < fake.open_count(); i++) {
		CHECK_EQ(fake.opened(i, &info), 0);
		CHECK_EQ(info.closed, 1);
		CHECK_EQ(info.shutdown_how, i == 2 ? 1 : 3); /* the sniffing handle never sends */
	}
}

static uint64_t stat_of(struct capture *cap, const char *name)
{
	struct capture_stat st[64];
	size_t n = capture_windivert.stats(cap, st, 64);

	for (size_t i = 0; i < n; i++)
		if (strcmp(st[i].name, name) == 0)
			return st[i].value;
	check_fail(__FILE__, __LINE__, "no counter %s", name);
	return UINT64_MAX;
}

static void get_sent(int i, struct sent *s)
{
	memset(s, 0, sizeof *s);
	s->len = fake.sent(i, s->buf, sizeof s->buf, (unsigned char *)&s->addr, &s->handle);
	CHECK(s->len > 0);
	s->parsed = s->len > 0 ? pkt_parse(s->buf, (size_t)s->len, &s->p) : -1;
	CHECK_EQ(s->parsed, PKT_OK);
}

/* The sent packet goes src:sport -> dst:dport with correct checksums. */
static void check_tuple(const struct sent *s, const char *src, uint16_t sport, const char *dst,
			uint16_t dport)
{
	struct addr a, b;

	addr_of(&a, src);
	addr_of(&b, dst);
	if (s->parsed != PKT_OK)
		return;
	CHECK(addr_equal(&s->p.src, &a));
	CHECK_EQ(s->p.sport, sport);
	CHECK(addr_equal(&s->p.dst, &b));
	CHECK_EQ(s->p.dport, dport);
	CHECK(pkt_checksum_ok(s->buf, &s->p));
	CHECK_EQ(s->handle, 1);
}

static void check_rewritten_to_listener(const struct sent *s)
{
	CHECK(s->addr.flags & WD_ADDR_OUTBOUND);
	CHECK(s->addr.flags & WD_ADDR_LOOPBACK);
	CHECK_EQ(s->addr.flags & (WD_ADDR_IP_CHECKSUM | WD_ADDR_TCP_CHECKSUM |
				  WD_ADDR_UDP_CHECKSUM), 0);
}

static bool wait_readable(SOCKET s)
{
	fd_set r;
	struct timeval tv = { WAIT_MS / 1000, 0 };

	FD_ZERO(&r);
	FD_SET(s, &r);
	return select(0, &r, NULL, NULL, &tv) == 1;
}

/* ---- tests ---- */

/* CONNECT first, then the SYN, the listener's SYN|ACK, and a DNS datagram: the SYN goes to the
 * TCP listener from 127.0.0.1:c, the reply back to the application from the original
 * destination, and the lookups give the original destination through real sockets. */
static void test_connect_then_syn(void)
{
	static char script[SCRIPT_MAX];
	uint8_t pkt[128];
	size_t len;
	SOCKET tcp_client, udp_client;
	uint16_t c = free_port(SOCK_STREAM, &tcp_client);
	uint16_t u = free_port(SOCK_DGRAM, &udp_client);
	struct rig r;
	struct sent s;

	script[0] = '\0';
	/* The listener port is chosen (free) before open; the reply names it. */
	uint16_t p = free_port(SOCK_STREAM, NULL);
	add_line(script, "handle socket\n");
	add_line(script, "connect pid=%d proto=tcp local=10.0.0.2:%u remote=198.51.100.7:443\n",
		 SESSION_PID, c);
	add_line(script, "connect pid=%d proto=udp local=10.0.0.2:%u remote=198.51.100.53:53\n",
		 SESSION_PID, u);
	add_line(script, "signal connected\nhandle network\nwait connected\n");
	len = make_packet(pkt, "10.0.0.2", c, "198.51.100.7", 443, PKT_TCP_SYN);
	add_packet(script, "out if=7", pkt, len);
	len = make_packet(pkt, "127.0.0.1", p, "127.0.0.1", c, PKT_TCP_SYN | PKT_TCP_ACK);
	add_packet(script, "out loopback if=1", pkt, len);
	len = make_packet(pkt, "10.0.0.2", u, "198.51.100.53", 53, -1);
	add_packet(script, "out if=7", pkt, len);

	/* rig_open picks its own free port: make it p. */
	struct capture_config cfg = { .tcp_port = p };
	memset(&r, 0, sizeof r);
	CHECK_EQ(fake.reset(), 0);
	use_script(script);
	CHECK_EQ(capture_windivert.open(&r.cap, &cfg), 0);
	if (!r.cap)
		return;
	CHECK_EQ(r.cap->listeners[CAPTURE_TCP][CAPTURE_IPV4].port, p);
	capture_windivert_process(r.cap, SESSION_PID, true);
	CHECK_EQ(loop_new(&r.loop, 0), 0);
	CHECK_EQ(capture_windivert.attach(r.cap, r.loop), 0);

	CHECK_EQ(fake.wait_sent(3, WAIT_MS), 3);
	get_sent(0, &s);
	check_tuple(&s, "127.0.0.1", c, "127.0.0.1", p);
	check_rewritten_to_listener(&s);
	CHECK_EQ(s.p.tcp_flags, PKT_TCP_SYN);
	get_sent(1, &s);
	check_tuple(&s, "198.51.100.7", 443, "10.0.0.2", c);
	CHECK(s.addr.flags & WD_ADDR_OUTBOUND);
	CHECK(!(s.addr.flags & WD_ADDR_LOOPBACK));
	get_sent(2, &s);
	check_tuple(&s, "127.0.0.1", u, "127.0.0.1",
		    r.cap->listeners[CAPTURE_DNS_UDP][CAPTURE_IPV4].port);
	check_rewritten_to_listener(&s);

	/* The original destination, through app_endpoint and a real accepted connection. */
	struct capture_endpoint seen = { .port = c }, app, dst;
	addr_of(&seen.addr, "127.0.0.1");
	CHECK_EQ(capture_windivert.app_endpoint(r.cap, 6, &seen, &app), 0);
	struct addr want;
	addr_of(&want, "10.0.0.2");
	CHECK(addr_equal(&app.addr, &want));
	CHECK_EQ(app.port, c);

	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(p) };
	to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK_EQ(connect(tcp_client, (struct sockaddr *)&to, sizeof to), 0);
	SOCKET listener = (SOCKET)r.cap->listeners[CAPTURE_TCP][CAPTURE_IPV4].sock;
	CHECK(wait_readable(listener));
	SOCKET acc = accept(listener, NULL, NULL);
	CHECK(acc != INVALID_SOCKET);
	CHECK_EQ(capture_windivert.tcp_original_dst(r.cap, (loop_sock)acc, &dst), 0);
	addr_of(&want, "198.51.100.7");
	CHECK(addr_equal(&dst.addr, &want));
	CHECK_EQ(dst.port, 443);
	closesocket(acc);

	/* A datagram from 127.0.0.1:u to the DNS listener, and the reply from 198.51.100.53:53. */
	SOCKET dns = (SOCKET)r.cap->listeners[CAPTURE_DNS_UDP][CAPTURE_IPV4].sock;
	to.sin_port = htons(r.cap->listeners[CAPTURE_DNS_UDP][CAPTURE_IPV4].port);
	CHECK_EQ(sendto(udp_client, "query", 5, 0, (struct sockaddr *)&to, sizeof to), 5);
	CHECK(wait_readable(dns));
	char buf[64];
	struct capture_endpoint src, orig;
	CHECK_EQ(capture_windivert.udp_recv(r.cap, (loop_sock)dns, buf, sizeof buf, &src, &orig),
		 5);
	CHECK_EQ(src.port, u);
	addr_of(&want, "198.51.100.53");
	CHECK(addr_equal(&orig.addr, &want));
	CHECK_EQ(orig.port, 53);
	CHECK_EQ(capture_windivert.udp_send(r.cap, &orig, &src, "answer", 6), 0);
	CHECK(wait_readable(udp_client));
	CHECK_EQ(recv(udp_client, buf, sizeof buf, 0), 6);
	CHECK_EQ(capture_windivert.udp_recv(r.cap, (loop_sock)dns, buf, sizeof buf, &src, &orig),
		 -EAGAIN);

	CHECK_EQ(stat_of(r.cap, "divert_diverted"), 2);
	CHECK_EQ(stat_of(r.cap, "divert_replies"), 1);
	CHECK_EQ(stat_of(r.cap, "windivert_held"), 0);
	closesocket(tcp_client);
	closesocket(udp_client);
	rig_close(&r);
}

/* The SYN comes first and is held until its CONNECT arrives; its checksum, offloaded when
 * captured, is correct when sent. */
static void test_syn_then_connect(void)
{
	static char script[SCRIPT_MAX];
	uint8_t pkt[128];
	size_t len;
	struct rig r;
	struct sent s;

	script[0] = '\0';
	add_line(script, "handle socket\nwait syn-taken\n");
	add_line(script, "connect pid=%d proto=tcp local=10.0.0.2:50000 remote=198.51.100.7:443\n",
		 SESSION_PID);
	add_line(script, "handle network\n");
	len = make_packet(pkt, "10.0.0.2", 50000, "198.51.100.7", 443, PKT_TCP_SYN);
	pkt[20 + 16] = pkt[20 + 17] = 0; /* checksum offloaded: left to the NIC, invalid here */
	add_packet(script, "out if=7", pkt, len);
	add_line(script, "signal syn-taken\n");
	if (!rig_open(&r, script, 600000))
		return;
	CHECK_EQ(fake.wait_sent(1, WAIT_MS), 1);
	get_sent(0, &s);
	check_tuple(&s, "127.0.0.1", 50000, "127.0.0.1", r.tcp_port);
	check_rewritten_to_listener(&s);
	CHECK_EQ(stat_of(r.cap, "windivert_held"), 1);
	CHECK_EQ(stat_of(r.cap, "windivert_hold_timeouts"), 0);
	rig_close(&r);
}

/* Another process's flows and the proxy's own pass unchanged with their captured address. */
static void test_not_diverted(void)
{
	static char script[SCRIPT_MAX];
	uint8_t pkt[3][128];
	size_t len[3];
	struct rig r;
	struct sent s;

	script[0] = '\0';
	add_line(script, "handle socket\n");
	add_line(script, "connect pid=777 proto=tcp local=10.0.0.2:40001 remote=198.51.100.7:80\n");
	add_line(script, "connect pid=%lu proto=tcp local=10.0.0.2:40002 remote=198.51.100.8:443\n",
		 (unsigned long)GetCurrentProcessId());
	add_line(script, "connect pid=777 proto=udp local=10.0.0.2:40003 remote=198.51.100.9:53\n");
	add_line(script, "signal connected\nhandle network\nwait connected\n");
	len[0] = make_packet(pkt[0], "10.0.0.2", 40001, "198.51.100.7", 80, PKT_TCP_SYN);
	len[1] = make_packet(pkt[1], "10.0.0.2", 40002, "198.51.100.8", 443, PKT_TCP_SYN);
	len[2] = make_packet(pkt[2], "10.0.0.2", 40003, "198.51.100.9", 53, -1);
	for (int i = 0; i < 3; i++)
		add_packet(script, "out if=7 sub=3", pkt[i], len[i]);
	if (!rig_open(&r, script, 600000))
		return;
	CHECK_EQ(fake.wait_sent(3, WAIT_MS), 3);
	for (int i = 0; i < 3; i++) {
		check_case("packet %d", i);
		get_sent(i, &s);
		CHECK_EQ(s.len, (int)len[i]);
		CHECK(memcmp(s.buf, pkt[i], len[i]) == 0);
		CHECK_EQ(s.addr.flags, WD_ADDR_OUTBOUND);
		CHECK_EQ(s.addr.u.network.if_idx, 7);
		CHECK_EQ(s.addr.u.network.sub_if_idx, 3);
		CHECK_EQ(s.handle, 1);
	}
	check_case("%s", "");
	CHECK_EQ(stat_of(r.cap, "divert_not_session"), 3);
	CHECK_EQ(stat_of(r.cap, "divert_diverted"), 0);
	rig_close(&r);
}

static void test_ipv6(void)
{
	static char script[SCRIPT_MAX];
	uint8_t pkt[128];
	size_t len;
	struct rig r;
	struct sent s;

	script[0] = '\0';
	add_line(script, "handle socket\n");
	add_line(script, "connect pid=%d proto=tcp local=[2001:db8::2]:50001 "
			 "remote=[2001:db8::7]:443\n", SESSION_PID);
	add_line(script, "signal connected\nhandle network\nwait connected\n");
	len = make_packet(pkt, "2001:db8::2", 50001, "2001:db8::7", 443, PKT_TCP_SYN);
	add_packet(script, "out if=7", pkt, len);
	if (!rig_open(&r, script, 600000))
		return;
	CHECK(r.cap->listeners[CAPTURE_TCP][CAPTURE_IPV6].sock != CAPTURE_NO_SOCK);
	CHECK_EQ(fake.wait_sent(1, WAIT_MS), 1);
	get_sent(0, &s);
	check_tuple(&s, "::1", 50001, "::1", r.cap->listeners[CAPTURE_TCP][CAPTURE_IPV6].port);
	check_rewritten_to_listener(&s);
	CHECK(s.addr.flags & WD_ADDR_IPV6);

	struct capture_endpoint seen = { .port = 50001 }, app;
	struct addr want;
	addr_of(&seen.addr, "::1");
	CHECK_EQ(capture_windivert.app_endpoint(r.cap, 6, &seen, &app), 0);
	addr_of(&want, "2001:db8::2");
	CHECK(addr_equal(&app.addr, &want));
	rig_close(&r);
}

/* A SYN whose CONNECT never comes passes unchanged after the hold. */
static void test_hold_timeout(void)
{
	static char script[SCRIPT_MAX];
	uint8_t pkt[128];
	size_t len;
	struct rig r;
	struct sent s;

	script[0] = '\0';
	add_line(script, "handle socket\nhandle network\n");
	len = make_packet(pkt, "10.0.0.2", 50002, "198.51.100.7", 443, PKT_TCP_SYN);
	add_packet(script, "out if=7", pkt, len);
	if (!rig_open(&r, script, 50))
		return;
	CHECK_EQ(fake.wait_sent(1, WAIT_MS), 1);
	get_sent(0, &s);
	CHECK_EQ(s.len, (int)len);
	CHECK(memcmp(s.buf, pkt, len) == 0);
	CHECK_EQ(stat_of(r.cap, "windivert_held"), 1);
	CHECK_EQ(stat_of(r.cap, "windivert_hold_timeouts"), 1);
	rig_close(&r);
}

/* Held packets are handled at close, not lost: a SYN held for ten minutes goes out unchanged. */
static void test_close_releases_held(void)
{
	static char script[SCRIPT_MAX];
	uint8_t pkt[128];
	size_t len;
	struct rig r;

	script[0] = '\0';
	add_line(script, "handle socket\nhandle network\n");
	len = make_packet(pkt, "10.0.0.2", 50003, "198.51.100.7", 443, PKT_TCP_SYN);
	add_packet(script, "out if=7", pkt, len);
	add_line(script, "signal taken\n");
	if (!rig_open(&r, script, 600000))
		return;
	/* The signal is raised once the packet thread came back for more: the SYN is held. */
	for (int i = 0; i < WAIT_MS / 10 && stat_of(r.cap, "windivert_held") == 0; i++)
		Sleep(10);
	CHECK_EQ(stat_of(r.cap, "windivert_held"), 1);
	CHECK_EQ(fake.sent_count(), 0);
	rig_close(&r);
	CHECK_EQ(fake.sent_count(), 1);
}

static int count_threads(void)
{
	HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0);
	THREADENTRY32 te = { .dwSize = sizeof te };
	int n = 0;

	CHECK(snap != INVALID_HANDLE_VALUE);
	if (snap == INVALID_HANDLE_VALUE)
		return -1;
	for (BOOL ok = Thread32First(snap, &te); ok; ok = Thread32Next(snap, &te))
		if (te.th32OwnerProcessID == GetCurrentProcessId())
			n++;
	CloseHandle(snap);
	return n;
}

/* The two threads run while attached and are gone after close. */
static void test_threads_end(void)
{
	struct rig r;
	int before = count_threads();

	if (!rig_open(&r, "handle socket\nhandle network\n", 600000))
		return;
	CHECK(count_threads() >= before + 2);
	rig_close(&r);
	CHECK(count_threads() <= before);
}

/* The filters, layers and flags the handles were opened with. */
static void test_handles(void)
{
	struct fake_wd_open_info info;
	struct rig r;
	char want[128];

	if (!rig_open(&r, "handle socket\nhandle network\n", 600000))
		return;
	CHECK_EQ(fake.opened(0, &info), 0);
	CHECK_EQ(info.layer, WD_LAYER_SOCKET);
	CHECK_EQ(info.flags, WD_FLAG_SNIFF | WD_FLAG_RECV_ONLY);
	CHECK_STR_EQ(info.filter, "(tcp or udp) and (event == CONNECT or event == CLOSE)");
	CHECK_EQ(fake.opened(1, &info), 0);
	CHECK_EQ(info.layer, WD_LAYER_NETWORK);
	CHECK_EQ(info.flags, 0);
	CHECK(strstr(info.filter, "!loopback and (tcp or udp)") != NULL);
	snprintf(want, sizeof want, "ip.SrcAddr == 127.0.0.1 and (tcp.SrcPort == %u ", r.tcp_port);
	CHECK(strstr(info.filter, want) != NULL);
	CHECK_EQ(info.queue_length, 8192);
	rig_close(&r);
}

/* Run in a copy of this program in a directory without WinDivert.dll. */
static int child_open_missing(void)
{
	struct capture *cap = NULL;
	int err = capture_windivert.open(&cap, NULL);

	fflush(stderr);
	return err == -ENOENT && !cap ? 3 : 4;
}

static void test_missing_dll(void)
{
	wchar_t self[MAX_PATH], dir[MAX_PATH], copy[MAX_PATH], out[MAX_PATH], cmd[3 * MAX_PATH];
	SECURITY_ATTRIBUTES sa = { .nLength = sizeof sa, .bInheritHandle = TRUE };
	STARTUPINFOW si = { .cb = sizeof si };
	PROCESS_INFORMATION pi;
	DWORD code = 0;

	CHECK(GetModuleFileNameW(NULL, self, MAX_PATH) > 0);
	CHECK(GetTempPathW(MAX_PATH, dir) > 0);
	wcscat(dir, L"sluice-nodll");
	swprintf(dir + wcslen(dir), 16, L"-%lu", (unsigned long)GetCurrentProcessId());
	CreateDirectoryW(dir, NULL);
	swprintf(copy, MAX_PATH, L"%ls\\t.exe", dir);
	swprintf(out, MAX_PATH, L"%ls\\err.txt", dir);
	CHECK(CopyFileW(self, copy, FALSE));
	HANDLE h = CreateFileW(out, GENERIC_WRITE, FILE_SHARE_READ, &sa, CREATE_ALWAYS, 0, NULL);
	CHECK(h != INVALID_HANDLE_VALUE);
	si.dwFlags = STARTF_USESTDHANDLES;
	si.hStdError = h;
	si.hStdOutput = h;
	si.hStdInput = GetStdHandle(STD_INPUT_HANDLE);
	swprintf(cmd, 3 * MAX_PATH, L"\"%ls\" --open-missing", copy);
	CHECK(CreateProcessW(copy, cmd, NULL, NULL, TRUE, 0, NULL, dir, &si, &pi));
	CloseHandle(h);
	CHECK_EQ(WaitForSingleObject(pi.hProcess, WAIT_MS), WAIT_OBJECT_0);
	GetExitCodeProcess(pi.hProcess, &code);
	CloseHandle(pi.hProcess);
	CloseHandle(pi.hThread);
	CHECK_EQ(code, 3);

	char text[2048] = { 0 };
	FILE *f = _wfopen(out, L"rb");
	CHECK(f != NULL);
	if (f) {
		fread(text, 1, sizeof text - 1, f);
		fclose(f);
	}
	CHECK(strstr(text, "WinDivert.dll was not found") != NULL);
	CHECK(strstr(text, "Windows error 126") != NULL);
	DeleteFileW(out);
	DeleteFileW(copy);
	RemoveDirectoryW(dir);
}

/* The DNS watch: a query of the DNS Client service (pid 900 here) is remembered as it passes;
 * of the inbound datagrams from port 53 only the answer matching it (flow, id, question, valid
 * checksum) reaches on_dns_answer, once: not a forged id, not one with a broken checksum, not
 * answers to the queries of sluice, of the session or of another process, not a replay, not a
 * malformed one. The handle is a sniffing, receive-only NETWORK handle. */
static void test_dns_watch(void)
{
	static char script[SCRIPT_MAX];
	static const struct {
		const char *name;
		uint16_t port, id;
		unsigned long pid; /* 0: this process */
	} queries[] = {
		{ "system.test", 50001, 0x1111, 900 },
		{ "own.test", 50002, 0x2222, 0 },
		{ "session.test", 50003, 0x3333, SESSION_PID },
		{ "other.test", 50004, 0x4444, 901 },
	};
	enum { NQ = sizeof queries / sizeof queries[0] };
	uint8_t msg[512], pkt[600], good[512];
	size_t mlen, plen, good_len = 0;
	struct fake_wd_open_info info;
	struct rig r;

	script[0] = '\0';
	add_line(script, "handle socket\n");
	for (size_t i = 0; i < NQ; i++)
		add_line(script, "connect pid=%lu proto=udp local=10.0.0.2:%u remote=192.0.2.53:53\n",
			 queries[i].pid ? queries[i].pid : (unsigned long)GetCurrentProcessId(),
			 queries[i].port);
	add_line(script, "signal connected\nhandle network\nwait connected\n");
	for (size_t i = 0; i < NQ; i++) {
		mlen = make_dns(msg, queries[i].id, queries[i].name, false);
		plen = make_udp(pkt, sizeof pkt, "10.0.0.2", queries[i].port, "192.0.2.53", 53, msg,
				mlen);
		add_packet(script, "out", pkt, plen);
	}
	add_line(script, "signal queries-passed\nhandle network\nwait queries-passed\n");
	for (size_t i = 0; i < NQ; i++) { /* the answers to all of them */
		mlen = make_dns(msg, queries[i].id, queries[i].name, true);
		plen = make_udp(pkt, sizeof pkt, "192.0.2.53", 53, "10.0.0.2", queries[i].port, msg,
				mlen);
		if (i == 0) { /* first a copy with a broken checksum */
			memcpy(good, msg, mlen);
			good_len = mlen;
			pkt[plen - 1] ^= 0x01;
			add_packet(script, "in", pkt, plen);
			pkt[plen - 1] ^= 0x01;
		}
		add_packet(script, "in", pkt, plen);
	}
	mlen = make_dns(msg, 0x1112, "system.test", true); /* a forged id */
	plen = make_udp(pkt, sizeof pkt, "192.0.2.53", 53, "10.0.0.2", 50001, msg, mlen);
	add_packet(script, "in", pkt, plen);
	plen = make_udp(pkt, sizeof pkt, "192.0.2.53", 53, "10.0.0.2", 50001, good, good_len);
	add_packet(script, "in", pkt, plen); /* the real answer again */
	plen = make_udp(pkt, sizeof pkt, "192.0.2.53", 53, "10.0.0.2", 50001, good, 7);
	add_packet(script, "in", pkt, plen); /* not even a header */
	add_line(script, "signal answers-taken\n");
	if (!rig_open_with(&r, script, 600000, true, 900))
		return;

	/* every datagram accounted for, and the loop's thread has run its notification */
	for (int i = 0; i < WAIT_MS / 10; i++) {
		uint64_t seen = stat_of(r.cap, "windivert_dns_answers_matched") +
				stat_of(r.cap, "windivert_dns_answers_unmatched") +
				stat_of(r.cap, "windivert_dns_answers_malformed");
		if (seen >= 7 && r.answers >= 1)
			break;
		loop_run_once(r.loop, 10);
	}
	for (int i = 0; i < 5; i++) /* a second delivery, had there been one, would come now */
		loop_run_once(r.loop, 10);
	CHECK_EQ(r.answers, 1);
	CHECK_EQ(r.answer_len, good_len);
	CHECK(memcmp(r.answer, good, good_len) == 0);
	CHECK_EQ(stat_of(r.cap, "windivert_dns_queries_watched"), 1);
	CHECK_EQ(stat_of(r.cap, "windivert_dns_answers_matched"), 1);
	CHECK_EQ(stat_of(r.cap, "windivert_dns_answers_unmatched"), 5);
	CHECK_EQ(stat_of(r.cap, "windivert_dns_answers_malformed"), 1);
	CHECK_EQ(stat_of(r.cap, "windivert_dns_answers_dropped"), 0);
	CHECK_EQ(stat_of(r.cap, "windivert_dns_bad_checksums"), 1);
	/* the queries themselves: three passed untouched, the session's diverted */
	CHECK_EQ(fake.wait_sent(NQ, WAIT_MS), NQ);
	CHECK_EQ(stat_of(r.cap, "divert_diverted"), 1);

	CHECK_EQ(fake.opened(2, &info), 0);
	CHECK_EQ(info.layer, WD_LAYER_NETWORK);
	CHECK_EQ(info.flags, WD_FLAG_SNIFF | WD_FLAG_RECV_ONLY);
	CHECK_EQ(info.priority, -1);
	CHECK_STR_EQ(info.filter, "inbound and !loopback and udp.SrcPort == 53");
	rig_close(&r);
}

/* The driver refuses the DNS watch's handle: the capture still opens and diverts, without the
 * watch (a warning says so). */
static void test_dns_watch_refused(void)
{
	struct rig r;

	if (!rig_open_with(&r, "handle socket\nhandle network\nhandle network fail=5\n", 600000,
			   true, 0))
		return;
	CHECK_EQ(fake.open_count(), 2);
	CHECK_EQ(stat_of(r.cap, "windivert_dns_queries_watched"), 0);
	r.watch_dns = false; /* two handles to check at close */
	rig_close(&r);
}

static const struct check_test tests[] = {
	{ "handles", test_handles },
	{ "connect_then_syn", test_connect_then_syn },
	{ "syn_then_connect", test_syn_then_connect },
	{ "not_diverted", test_not_diverted },
	{ "ipv6", test_ipv6 },
	{ "hold_timeout", test_hold_timeout },
	{ "close_releases_held", test_close_releases_held },
	{ "threads_end", test_threads_end },
	{ "missing_dll", test_missing_dll },
	{ "dns_watch", test_dns_watch },
	{ "dns_watch_refused", test_dns_watch_refused },
};

int main(int argc, char **argv)
{
	char dir[MAX_PATH];
	WSADATA wsa;

	if (argc > 1 && strcmp(argv[1], "--open-missing") == 0)
		return child_open_missing();
	DWORD n = GetTempPathA(sizeof dir, dir);
	if (n == 0 || n >= sizeof dir || WSAStartup(MAKEWORD(2, 2), &wsa) != 0 || !load_fake()) {
		fprintf(stderr, "no temporary directory, Winsock or fake WinDivert.dll\n");
		return 1;
	}
	snprintf(script_path, sizeof script_path, "%ssluice-cwd-script-%lu.txt", dir,
		 (unsigned long)GetCurrentProcessId());
	int rc = check_run(tests, sizeof tests / sizeof tests[0], argc, argv);
	DeleteFileA(script_path);
	return rc;
}
