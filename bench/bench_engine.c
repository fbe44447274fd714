/* bench_engine.c — nanoseconds per packet through the divert engine, against parse+rewrite alone.
 *
 * Figures: the forward rewrite (C:c -> D:d becomes C:c -> L:P) and the reverse one (L:P -> C:c
 * becomes D:d -> C:c) of established IPv4 TCP flows, with 1k and 64k live flows, for 64- and
 * 1500-byte packets. Every iteration takes the next flow of a shuffled list, so that with 64k
 * flows the NAT lookups miss the cache as they would under real traffic.
 *
 * Restoring the packet: only the first 64 bytes (IP and TCP headers, all that a rewrite
 * touches) are copied back from that flow's pristine headers before each call, the same for
 * both sizes. The engine figures include that copy; its own cost is printed as a line
 * ("restore") and is a few nanoseconds. The baseline is pkt_parse + pkt_rewrite on the same
 * packets with the same restore, i.e. everything but the engine's own bookkeeping; a memcpy of
 * the whole packet is printed for scale. Run a Release build (-DCMAKE_BUILD_TYPE=Release).
 */
#define _POSIX_C_SOURCE 200809L

#include "divert/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BUDGET_NS 200.0 /* per packet in the engine (the target) */
#define HDR 64          /* bytes restored per iteration */
#define TRIAL_NS 150e6  /* each trial runs about this long; the best of TRIALS is kept */
#define TRIALS 3
#define LISTEN_PORT 9080
#define NOW_MS 1000

static volatile uint32_t sink;

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static uint64_t rng_state = 0x243f6a8885a308d3u;

static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1du;
}

static void die(const char *what)
{
	fprintf(stderr, "bench_engine: %s\n", what);
	exit(1);
}

/* One set of flows: per flow (in a shuffled order) its client port and addresses, and the
 * pristine first HDR bytes of its forward packet and of its listener's reply at the current
 * packet size. */
struct flows {
	struct engine *e;
	size_t n;
	uint16_t *cport;
	uint8_t (*client)[4];
	uint8_t (*dst)[4];
	uint8_t (*fwd)[HDR];
	uint8_t (*rev)[HDR];
};

static const uint8_t listen_v4[4] = {127, 0, 0, 1};

/* Writes an IPv4 TCP packet src:sport -> dst:dport of total length len (>= 64) with correct
 * checksums; the payload is a fixed pattern, the same for every packet. */
static void make_packet(uint8_t *b, size_t len, uint8_t flags, const uint8_t src[4],
			uint16_t sport, const uint8_t dst[4], uint16_t dport)
{
	struct pkt p;
	memset(b, 0, 40);
	b[0] = 0x45;
	b[2] = (uint8_t)(len >> 8);
	b[3] = (uint8_t)len;
	b[6] = 0x40;
	b[8] = 64;
	b[9] = PKT_PROTO_TCP;
	memcpy(b + 12, src, 4);
	memcpy(b + 16, dst, 4);
	b[20] = (uint8_t)(sport >> 8);
	b[21] = (uint8_t)sport;
	b[22] = (uint8_t)(dport >> 8);
	b[23] = (uint8_t)dport;
	b[27] = 1;
	b[31] = 1;
	b[32] = 5 << 4;
	b[33] = flags;
	b[34] = 0xff;
	b[35] = 0xff;
	for (size_t i = 40; i < len; i++)
		b[i] = (uint8_t)(i * 13);
	if (pkt_parse(b, len, &p) != PKT_OK || pkt_checksum_fill(b, &p, true) != 0)
		die("built packet does not parse");
}

/* An engine with n established flows (their SYNs went through it). */
static void flows_make(struct flows *s, size_t n)
{
	static uint8_t b[2048];
	struct engine_config c;

	memset(&c, 0, sizeof c);
	c.listen[ENGINE_IPV4].family = ADDR_V4;
	memcpy(c.listen[ENGINE_IPV4].bytes, listen_v4, 4);
	for (int k = 0; k < ENGINE_KINDS; k++)
		c.port[k][ENGINE_IPV4] = (uint16_t)(LISTEN_PORT + k);
	c.tcp_capacity = 65536;
	c.hash_seed = rng();
	if (engine_new(&s->e, &c) != 0)
		die("engine_new failed");
	s->n = n;
	s->cport = malloc(n * sizeof *s->cport);
	s->client = malloc(n * sizeof *s->client);
	s->dst = malloc(n * sizeof *s->dst);
	s->fwd = malloc(n * HDR);
	s->rev = malloc(n * HDR);
	if (!s->cport || !s->client || !s->dst || !s->fwd || !s->rev)
		die("out of memory");

	for (size_t i = 0; i < n; i++) {
		struct engine_packet ep = {.buf = b, .len = 64};
		s->cport[i] = (uint16_t)(10000 + i % 50000); /* clear of the listener ports */
		memcpy(s->client[i], (const uint8_t[4]){10, 0, (uint8_t)(i / 50000), 2}, 4);
		memcpy(s->dst[i], (const uint8_t[4]){192, 0, 2, (uint8_t)(1 + rng() % 250)}, 4);
		make_packet(b, 64, PKT_TCP_SYN, s->client[i], s->cport[i], s->dst[i], 443);
		if (engine_process(s->e, &ep, NOW_MS) != ENGINE_REWRITE)
			die("a flow was not created");
	}
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = (size_t)(rng() % (i + 1));
		uint16_t tp = s->cport[i];
		uint8_t t[4];
		s->cport[i] = s->cport[j];
		s->cport[j] = tp;
		memcpy(t, s->client[i], 4);
		memcpy(s->client[i], s->client[j], 4);
		memcpy(s->client[j], t, 4);
		memcpy(t, s->dst[i], 4);
		memcpy(s->dst[i], s->dst[j], 4);
		memcpy(s->dst[j], t, 4);
	}
}

/* The pristine headers of every flow's packets of length len, and buf holding one such packet
 * (the payload beyond HDR is the same in all of them). */
static void headers_make(struct flows *s, size_t len, uint8_t *buf)
{
	for (size_t i = 0; i < s->n; i++) {
		make_packet(buf, len, PKT_TCP_ACK | PKT_TCP_PSH, s->client[i], s->cport[i],
			    s->dst[i], 443);
		memcpy(s->fwd[i], buf, HDR);
		make_packet(buf, len, PKT_TCP_ACK | PKT_TCP_PSH, listen_v4, LISTEN_PORT,
			    s->client[i], s->cport[i]);
		memcpy(s->rev[i], buf, HDR);
	}
}

static void flows_free(struct flows *s)
{
	engine_free(s->e);
	free(s->cport);
	free(s->client);
	free(s->dst);
	free(s->fwd);
	free(s->rev);
}

/* What one timing loop runs; returns ns per packet, or < 0 when something went wrong. */
enum op { OP_ENGINE, OP_PARSE_REWRITE, OP_RESTORE, OP_COPY };

struct job {
	enum op op;
	struct flows *s;
	uint8_t (*hdr)[HDR]; /* s->fwd or s->rev */
	uint8_t *buf;
	size_t len;
};

static double run_job(const struct job *j, long iters)
{
	static uint8_t copy[2048];
	struct engine_packet ep = {.buf = j->buf, .len = j->len};
	struct addr to = {.family = ADDR_V4, .bytes = {127, 0, 0, 1}};
	struct pkt p;
	size_t i = 0, n = j->s->n;
	double t0 = now_ns();

	for (long k = 0; k < iters; k++) {
		switch (j->op) {
		case OP_ENGINE:
			memcpy(j->buf, j->hdr[i], HDR);
			if (engine_process(j->s->e, &ep, NOW_MS) != ENGINE_REWRITE)
				return -1;
			break;
		case OP_PARSE_REWRITE:
			memcpy(j->buf, j->hdr[i], HDR);
			if (pkt_parse(j->buf, j->len, &p) != PKT_OK ||
			    pkt_set_dst(j->buf, &p, &to, LISTEN_PORT) != 0)
				return -1;
			break;
		case OP_RESTORE:
			memcpy(j->buf, j->hdr[i], HDR);
			break;
		case OP_COPY:
			memcpy(copy, j->buf, j->len);
			copy[k & 63] ^= 1;
			break;
		}
		sink += j->buf[(k * 7) & 63];
		if (++i == n)
			i = 0;
	}
	return (now_ns() - t0) / (double)iters;
}

/* Calibrates the iteration count to about TRIAL_NS, then keeps the best of TRIALS trials. */
static double measure(const struct job *j)
{
	double ns = run_job(j, 10000), best = 0;
	long iters;
	if (ns < 0)
		die("a packet was not rewritten");
	iters = (long)(TRIAL_NS / (ns > 0.5 ? ns : 0.5));
	for (int t = 0; t < TRIALS; t++) {
		ns = run_job(j, iters);
		if (ns < 0)
			die("a packet was not rewritten");
		if (t == 0 || ns < best)
			best = ns;
	}
	return best;
}

static void row(const char *figure, double ns, double base_ns, const char *base, double target)
{
	char verdict[32] = "-";
	if (target > 0)
		snprintf(verdict, sizeof verdict, "<= %.0f ns %s", target,
			 ns <= target ? "ok" : "MISS");
	printf("%-40s %7.1f ns/pkt   %-24s %7.1f ns   ratio %5.2f   target %s\n", figure, ns,
	       base, base_ns, base_ns > 0 ? ns / base_ns : 0, verdict);
}

int main(void)
{
	static const size_t counts[] = {1000, 65536};
	static const size_t sizes[] = {64, 1500};
	static uint8_t buf[2048];
	char name[64], base[64];

	printf("bench_engine (best of %d runs; engine figures include a %d-byte header restore)\n",
	       TRIALS, HDR);
	for (size_t ci = 0; ci < 2; ci++) {
		struct flows s;
		flows_make(&s, counts[ci]);
		for (size_t si = 0; si < 2; si++) {
			size_t len = sizes[si];
			headers_make(&s, len, buf);
			struct job restore = {OP_RESTORE, &s, s.fwd, buf, len};
			struct job copy = {OP_COPY, &s, s.fwd, buf, len};
			struct job base_job = {OP_PARSE_REWRITE, &s, s.fwd, buf, len};
			struct job fwd = {OP_ENGINE, &s, s.fwd, buf, len};
			struct job rev = {OP_ENGINE, &s, s.rev, buf, len};
			double r_ns = measure(&restore), c_ns = measure(&copy);
			double b_ns = measure(&base_job);
			double f_ns = measure(&fwd), v_ns = measure(&rev);
			const char *flows = ci ? "64k" : "1k";

			snprintf(base, sizeof base, "memcpy %zu B", len);
			snprintf(name, sizeof name, "restore %d B header, %s flows, %zu B", HDR,
				 flows, len);
			row(name, r_ns, c_ns, base, 0);
			snprintf(base, sizeof base, "memcpy %zu B", len);
			snprintf(name, sizeof name, "parse+rewrite, %s flows, %zu B", flows, len);
			row(name, b_ns, c_ns, base, 0);
			snprintf(base, sizeof base, "parse+rewrite");
			snprintf(name, sizeof name, "engine forward, %s flows, %zu B", flows, len);
			row(name, f_ns, b_ns, base, BUDGET_NS);
			snprintf(name, sizeof name, "engine reverse, %s flows, %zu B", flows, len);
			row(name, v_ns, b_ns, base, BUDGET_NS);
		}
		flows_free(&s);
	}
	return (int)(sink & 0);
}
