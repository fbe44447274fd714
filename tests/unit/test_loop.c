/* test_loop.c — the event loop: readiness reporting, safe stop/free in callbacks, timers. */
#include "base/loop.h"
#include "check.h"
#include "testsock.h"

#include <errno.h>

/* Safety net for waits on a condition: a broken loop fails the test instead of hanging it. */
#define WAIT_LIMIT_MS 5000

static struct loop *new_loop(size_t max_timers)
{
	struct loop *loop = NULL;

	CHECK_EQ(loop_new(&loop, max_timers), 0);
	if (!loop) {
		fprintf(stderr, "loop_new failed\n");
		exit(1);
	}
	return loop;
}

static void put_byte(loop_sock s)
{
	CHECK_EQ(testsock_write(s, "x", 1), 1);
}

/* Runs iterations until *flag is set or WAIT_LIMIT_MS passed. Returns whether it was set. */
static bool run_until(struct loop *loop, const bool *flag)
{
	uint64_t limit = loop_backend_now_ms() + WAIT_LIMIT_MS;

	while (!*flag && loop_backend_now_ms() < limit)
		CHECK(loop_run_once(loop, 100) >= 0);
	return *flag;
}

/* ---- Readiness */

/* Records what a watcher was called with. */
struct seen {
	struct loop_io io;
	int calls;
	unsigned events;
	bool called;
};

static void seen_cb(struct loop *loop, struct loop_io *io, unsigned events)
{
	struct seen *s = io->arg;

	(void)loop;
	s->calls++;
	s->events = events;
	s->called = true;
}

static void test_backend_name(void)
{
	struct loop *loop = new_loop(0);

	CHECK_STR_EQ(loop_method(loop), testsock_backend);
	loop_free(loop);
	loop_free(NULL);
}

static void test_io_readable(void)
{
	struct loop *loop = new_loop(0);
	struct seen s = { 0 };
	loop_sock sv[2];
	char c;

	testsock_pair(sv);
	loop_io_init(&s.io, sv[0], seen_cb, &s);
	CHECK(!loop_io_active(&s.io));
	CHECK_EQ(loop_io_start(loop, &s.io, LOOP_READ), 0);
	CHECK(loop_io_active(&s.io));
	CHECK_EQ(loop_run_once(loop, 0), 0);
	CHECK_EQ(s.calls, 0);

	put_byte(sv[1]);
	CHECK(run_until(loop, &s.called));
	CHECK_EQ(s.events, LOOP_READ);
	CHECK_EQ(testsock_read(sv[0], &c, 1), 1);

	/* Level-triggered: unread data is reported again. */
	put_byte(sv[1]);
	s.calls = 0;
	CHECK_EQ(loop_run_once(loop, 1000), 1);
	CHECK_EQ(loop_run_once(loop, 1000), 1);
	CHECK_EQ(s.calls, 2);

	loop_io_stop(loop, &s.io);
	loop_io_stop(loop, &s.io);
	CHECK(!loop_io_active(&s.io));
	CHECK_EQ(loop_run(loop), 0);
	testsock_close_pair(sv);
	loop_free(loop);
}

static void test_io_writable(void)
{
	struct loop *loop = new_loop(0);
	struct seen s = { 0 };
	loop_sock sv[2];

	testsock_pair(sv);
	loop_io_init(&s.io, sv[0], seen_cb, &s);
	CHECK_EQ(loop_io_start(loop, &s.io, LOOP_WRITE), 0);
	CHECK(run_until(loop, &s.called));
	CHECK_EQ(s.events, LOOP_WRITE);
	loop_io_stop(loop, &s.io);
	testsock_close_pair(sv);
	loop_free(loop);
}

/* The socket under test, sv[0]: one end of a testsock_pair (a socketpair; loopback TCP on
 * Windows) or of a loopback TCP connection (for FIN and RST), a TCP socket never connected, or
 * one whose connect is refused. */
enum pair_kind { PAIR_LOCAL, PAIR_TCP, PAIR_TCP_UNCONNECTED, PAIR_TCP_REFUSED };

enum peer_action { PEER_NONE, PEER_CLOSE, PEER_SHUT_WR, PEER_RESET };

struct peer_case {
	const char *name;
	enum pair_kind kind;
	enum peer_action action;
	unsigned mask;
	unsigned want;    /* exactly what the callback sees */
	int read_result;  /* of read() after the event: 0 (EOF) or -errno; 1: not read */
	int write_result; /* of send() after the event: 1 (sent) or -errno; 0: not sent */
	int so_error;     /* SO_ERROR before reading or writing; 0: not checked */
};

#define R LOOP_READ
#define W LOOP_WRITE
#define H LOOP_HUP
#define E LOOP_ERROR
static const struct peer_case peer_cases[] = {
	/* name                    pair        peer          asks   sees       read send SO_ERROR */
	{ "pair close, reader",    PAIR_LOCAL, PEER_CLOSE,   R,     R | H,     0, 0, 0 },
	{ "pair shutdown, reader", PAIR_LOCAL, PEER_SHUT_WR, R,     R | H,     0, 0, 0 },
	/* A half-closed peer still reads: a writer is not woken with a HUP it cannot use. */
	{ "pair shutdown, writer", PAIR_LOCAL, PEER_SHUT_WR, W,     W,         1, 1, 0 },
	{ "tcp fin, reader",       PAIR_TCP,   PEER_SHUT_WR, R,     R | H,     0, 0, 0 },
	{ "tcp fin, writer",       PAIR_TCP,   PEER_SHUT_WR, W,     W,         1, 1, 0 },
	{ "tcp rst, reader",       PAIR_TCP,   PEER_RESET,   R,     R | H | E, -ECONNRESET, 0, 0 },
	{ "tcp rst, writer",       PAIR_TCP,   PEER_RESET,   W,     W | H | E, 1, -ECONNRESET, 0 },
	/* How an upstream dial that fails shows up. */
	{ "tcp refused, writer",   PAIR_TCP_REFUSED, PEER_NONE, W, W | H | E, 1, 0, ECONNREFUSED },
};

/* Where the platforms differ. */
static const struct peer_case posix_peer_cases[] = {
	{ "pair close, writer",    PAIR_LOCAL, PEER_CLOSE,   W,     W | H,     1, -EPIPE, 0 },
	{ "pair close, both",      PAIR_LOCAL, PEER_CLOSE,   R | W, R | W | H, 0, -EPIPE, 0 },
	/* The kernel reports HUP alone here: the reader must still be called. */
	{ "tcp unconnected",       PAIR_TCP_UNCONNECTED, PEER_NONE, R, R | H, -ENOTCONN, 0, 0 },
};

/* WSAPoll shows a closed peer as a half-closed one, and a first write still goes out; it
 * reports nothing for a socket never connected. */
static const struct peer_case windows_peer_cases[] = {
	{ "pair close, writer",    PAIR_LOCAL, PEER_CLOSE,   W,     W,         1, 1, 0 },
	{ "pair close, both",      PAIR_LOCAL, PEER_CLOSE,   R | W, R | W | H, 0, 1, 0 },
};
#undef R
#undef W
#undef H
#undef E

static void run_peer_cases(const struct peer_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct loop *loop = new_loop(0);
		struct seen s = { 0 };
		loop_sock sv[2];
		char c;

		check_case("%s", cases[i].name);
		if (cases[i].kind == PAIR_LOCAL) {
			testsock_pair(sv);
		} else if (cases[i].kind == PAIR_TCP) {
			testsock_tcp_pair(sv);
		} else if (cases[i].kind == PAIR_TCP_REFUSED) {
			testsock_tcp_refused(sv);
		} else {
			sv[0] = testsock_tcp_unconnected();
			sv[1] = -1;
		}
		switch (cases[i].action) {
		case PEER_NONE:
			break;
		case PEER_CLOSE:
			testsock_close(sv[1]);
			sv[1] = -1;
			break;
		case PEER_SHUT_WR:
			testsock_shutdown_write(sv[1]);
			break;
		case PEER_RESET:
			testsock_reset(sv[1]);
			sv[1] = -1;
			break;
		}
		/* Let the FIN, RST or refusal land first: a writer is writable before it, too. */
		CHECK(testsock_wait_peer(sv[0], WAIT_LIMIT_MS));
		loop_io_init(&s.io, sv[0], seen_cb, &s);
		CHECK_EQ(loop_io_start(loop, &s.io, cases[i].mask), 0);
		CHECK(run_until(loop, &s.called));
		CHECK_EQ(s.events, cases[i].want);
		if (cases[i].so_error)
			CHECK_EQ(testsock_so_error(sv[0]), cases[i].so_error);
		if (cases[i].read_result != 1)
			CHECK_EQ(testsock_read(sv[0], &c, 1), cases[i].read_result);
		if (cases[i].write_result != 0)
			CHECK_EQ(testsock_write(sv[0], "y", 1), cases[i].write_result);
		loop_io_stop(loop, &s.io);
		testsock_close_pair(sv);
		loop_free(loop);
	}
	check_case("%s", "");
}

static void test_io_peer_events(void)
{
	run_peer_cases(peer_cases, sizeof peer_cases / sizeof peer_cases[0]);
	if (testsock_platform == TESTSOCK_POSIX)
		run_peer_cases(posix_peer_cases,
			       sizeof posix_peer_cases / sizeof posix_peer_cases[0]);
	else
		run_peer_cases(windows_peer_cases,
			       sizeof windows_peer_cases / sizeof windows_peer_cases[0]);
}

/* A peer that half-closed and reads nothing: a writer facing a full socket is not called (on
 * Windows, WSAPoll keeps reporting the peer's FIN as POLLHUP) and the wait lasts its timeout;
 * once the peer reads, the writer is called with WRITE alone. */
static void test_io_writer_full_half_closed(void)
{
	static char buf[65536];
	struct loop *loop = new_loop(0);
	struct seen s = { 0 };
	uint64_t before, limit;
	loop_sock sv[2];

	testsock_pair(sv);
	while (testsock_write(sv[0], buf, sizeof buf) > 0)
		;
	CHECK_EQ(testsock_write(sv[0], buf, sizeof buf), -EAGAIN);
	CHECK_EQ(testsock_shutdown_write(sv[1]), 0);
	CHECK(testsock_wait_peer(sv[0], WAIT_LIMIT_MS));
	loop_io_init(&s.io, sv[0], seen_cb, &s);
	CHECK_EQ(loop_io_start(loop, &s.io, LOOP_WRITE), 0);
	before = loop_backend_now_ms();
	CHECK_EQ(loop_run_once(loop, 30), 0);
	CHECK(loop_now(loop) >= before + 29);
	CHECK_EQ(s.calls, 0);

	limit = loop_backend_now_ms() + WAIT_LIMIT_MS;
	while (!s.called && loop_backend_now_ms() < limit) {
		while (testsock_read(sv[1], buf, sizeof buf) > 0)
			;
		CHECK(loop_run_once(loop, 10) >= 0);
	}
	CHECK(s.called);
	CHECK_EQ(s.events, LOOP_WRITE);
	loop_io_stop(loop, &s.io);
	testsock_close_pair(sv);
	loop_free(loop);
}

/* Errors leave the watcher stopped and the loop with nothing to watch. */
static void test_io_start_errors(void)
{
	struct loop *loop = new_loop(0);
	struct seen first = { 0 }, s = { 0 };
	FILE *file = tmpfile();
	loop_sock sv[2], gone[2];

	testsock_pair(sv);
	loop_io_init(&first.io, sv[0], seen_cb, &first);
	CHECK_EQ(loop_io_start(loop, &first.io, LOOP_READ), 0);

	struct {
		const char *name;
		loop_sock sock;
		unsigned events;
		int want;
	} cases[] = {
		{ "negative socket", -1, LOOP_READ, -EBADF },
		{ "too large for an fd", INTPTR_MAX, LOOP_READ, -EBADF },
		{ "closed socket", testsock_not_open(), LOOP_READ, -EBADF },
		{ "regular file", testsock_file(file), LOOP_READ, testsock_file_error },
		{ "second watcher", sv[0], LOOP_WRITE, -EEXIST },
		{ "unknown bits", sv[1], LOOP_READ | LOOP_HUP, -EINVAL },
		{ "more unknown bits", sv[1], 0x100, -EINVAL },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		check_case("%s", cases[i].name);
		loop_io_init(&s.io, cases[i].sock, seen_cb, &s);
		CHECK_EQ(loop_io_start(loop, &s.io, cases[i].events), cases[i].want);
		CHECK(!loop_io_active(&s.io));
	}
	check_case("%s", "");

	/* A failed modify keeps the old mask. */
	CHECK_EQ(loop_io_start(loop, &first.io, LOOP_WRITE | LOOP_ERROR), -EINVAL);
	CHECK_EQ(first.io.events, LOOP_READ);
	loop_io_stop(loop, &first.io);

	/* Closed under a started watcher (a caller's bug): modify fails, stop still works. */
	testsock_pair(gone);
	loop_io_init(&s.io, gone[0], seen_cb, &s);
	CHECK_EQ(loop_io_start(loop, &s.io, LOOP_READ), 0);
	testsock_close_pair(gone);
	CHECK_EQ(loop_io_start(loop, &s.io, LOOP_WRITE), -EBADF);
	CHECK_EQ(s.io.events, LOOP_READ);
	loop_io_stop(loop, &s.io);
	CHECK(!loop_io_active(&s.io));

	CHECK_EQ(loop_run(loop), 0);
	if (file)
		fclose(file);
	testsock_close_pair(sv);
	loop_free(loop);
}

static void test_io_modify_mask(void)
{
	static const struct {
		const char *name;
		unsigned mask;
		unsigned want;
	} cases[] = {
		{ "read and write", LOOP_READ | LOOP_WRITE, LOOP_READ | LOOP_WRITE },
		{ "write only", LOOP_WRITE, LOOP_WRITE },
		{ "read only", LOOP_READ, LOOP_READ },
		{ "same again", LOOP_READ, LOOP_READ },
	};
	struct loop *loop = new_loop(0);
	struct seen s = { 0 };
	loop_sock sv[2];

	testsock_pair(sv);
	put_byte(sv[1]);
	loop_io_init(&s.io, sv[0], seen_cb, &s);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		check_case("%s", cases[i].name);
		CHECK_EQ(loop_io_start(loop, &s.io, cases[i].mask), 0);
		CHECK_EQ(s.io.events, cases[i].mask);
		s.called = false;
		CHECK(run_until(loop, &s.called));
		CHECK_EQ(s.events, cases[i].want);
	}
	check_case("%s", "");
	CHECK_EQ(loop_io_start(loop, &s.io, 0), 0);
	CHECK(!loop_io_active(&s.io));
	s.calls = 0;
	CHECK_EQ(loop_run_once(loop, 0), 0);
	CHECK_EQ(s.calls, 0);
	CHECK_EQ(loop_run(loop), 0);
	testsock_close_pair(sv);
	loop_free(loop);
}

static void stop_self_cb(struct loop *loop, struct loop_io *io, unsigned events)
{
	struct seen *s = io->arg;

	s->calls++;
	s->events = events;
	loop_io_stop(loop, io);
}

static void test_io_stop_in_callback(void)
{
	struct loop *loop = new_loop(0);
	struct seen s = { 0 };
	loop_sock sv[2];

	testsock_pair(sv);
	put_byte(sv[1]);
	loop_io_init(&s.io, sv[0], stop_self_cb, &s);
	CHECK_EQ(loop_io_start(loop, &s.io, LOOP_READ | LOOP_WRITE), 0);
	/* The data stays unread; only the stop keeps the watcher quiet, and ends loop_run. */
	CHECK_EQ(loop_run(loop), 0);
	CHECK_EQ(s.calls, 1);
	CHECK_EQ(s.events, LOOP_READ | LOOP_WRITE);
	CHECK(!loop_io_active(&s.io));
	testsock_close_pair(sv);
	loop_free(loop);
}

/* Two connections ready in the same batch; whichever runs first acts on the other. */
enum other_action { OTHER_STOP, OTHER_STOP_FREE, OTHER_RESTART, OTHER_NARROW, OTHER_REUSE_FD };

struct conn {
	struct loop_io io;
	loop_sock sv[2];
	int calls;
	unsigned events;
	struct conn **peer; /* slot holding the other connection, NULL once freed */
};

static enum other_action pending_action;
static struct conn *pending_actor; /* the connection whose callback acted first */
static bool pending_saw_pending;
static struct conn *pending_reuse;

static void conn_cb(struct loop *loop, struct loop_io *io, unsigned events)
{
	struct conn *c = io->arg, *other = *c->peer;

	c->calls++;
	c->events = events;
	if (pending_actor || !other)
		return;
	pending_actor = c;
	pending_saw_pending = other->io.pending != 0;
	switch (pending_action) {
	case OTHER_STOP:
		loop_io_stop(loop, &other->io);
		break;
	case OTHER_STOP_FREE:
		loop_io_stop(loop, &other->io);
		testsock_close_pair(other->sv);
		free(other);
		*c->peer = NULL;
		break;
	case OTHER_RESTART:
		loop_io_stop(loop, &other->io);
		CHECK_EQ(loop_io_start(loop, &other->io, LOOP_READ | LOOP_WRITE), 0);
		break;
	case OTHER_NARROW:
		CHECK_EQ(loop_io_start(loop, &other->io, LOOP_WRITE), 0);
		break;
	case OTHER_REUSE_FD:
		/* The freed connection's fd number comes back at once for a new one, which has
		 * nothing to read: the stale event must not reach it. */
		loop_io_stop(loop, &other->io);
		testsock_close_pair(other->sv);
		free(other);
		*c->peer = NULL;
		pending_reuse = calloc(1, sizeof *pending_reuse);
		if (!pending_reuse)
			exit(1);
		testsock_pair(pending_reuse->sv);
		pending_reuse->peer = c->peer;
		loop_io_init(&pending_reuse->io, pending_reuse->sv[0], conn_cb, pending_reuse);
		CHECK_EQ(loop_io_start(loop, &pending_reuse->io, LOOP_READ), 0);
		break;
	}
}

/* A connection with a byte to read and room to write: ready for READ|WRITE at once. */
static struct conn *conn_new(struct loop *loop, struct conn **peer_slot)
{
	struct conn *c = calloc(1, sizeof *c);

	if (!c)
		exit(1);
	testsock_pair(c->sv);
	put_byte(c->sv[1]);
	c->peer = peer_slot;
	loop_io_init(&c->io, c->sv[0], conn_cb, c);
	CHECK_EQ(loop_io_start(loop, &c->io, LOOP_READ | LOOP_WRITE), 0);
	return c;
}

static void conn_free(struct loop *loop, struct conn *c)
{
	if (!c)
		return;
	loop_io_stop(loop, &c->io);
	testsock_close_pair(c->sv);
	free(c);
}

/* Under ASan, "stop and free" and "free and reuse the fd" catch any touch of the freed watcher
 * by the loop after the stop; the call counts catch a stale delivery in every build. */
static void test_io_act_on_pending_other(void)
{
	static const struct {
		const char *name;
		enum other_action action;
		int calls_now;     /* callbacks in the iteration where both were ready */
		unsigned other_now; /* what the acted-on one saw in it, when called */
		int other_next;    /* its callbacks in the next iteration */
	} cases[] = {
		{ "stop", OTHER_STOP, 1, 0, 0 },
		{ "stop and free", OTHER_STOP_FREE, 1, 0, 0 },
		{ "stop and restart", OTHER_RESTART, 1, 0, 1 },
		{ "narrow mask", OTHER_NARROW, 2, LOOP_WRITE, 1 },
		{ "free and reuse the fd", OTHER_REUSE_FD, 1, 0, 0 },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct loop *loop = new_loop(0);
		struct conn *slot_a = NULL, *slot_b = NULL, *other;

		check_case("%s", cases[i].name);
		pending_action = cases[i].action;
		pending_actor = NULL;
		pending_saw_pending = false;
		pending_reuse = NULL;
		slot_a = conn_new(loop, &slot_b);
		slot_b = conn_new(loop, &slot_a);

		CHECK_EQ(loop_run_once(loop, 1000), cases[i].calls_now);
		CHECK(pending_actor != NULL);
		CHECK(pending_saw_pending);
		if (!pending_actor)
			goto next;
		CHECK_EQ(pending_actor->calls, 1);
		CHECK_EQ(pending_actor->events, LOOP_READ | LOOP_WRITE);
		other = *pending_actor->peer;
		if (other) {
			CHECK_EQ(other->calls, cases[i].calls_now - 1);
			if (other->calls)
				CHECK_EQ(other->events, cases[i].other_now);
			other->calls = 0;
		}
		CHECK(loop_run_once(loop, 0) >= 1);
		CHECK_EQ(pending_actor->calls, 2);
		if (other)
			CHECK_EQ(other->calls, cases[i].other_next);
		if (pending_reuse)
			CHECK_EQ(pending_reuse->calls, 0);
next:
		conn_free(loop, slot_a);
		conn_free(loop, slot_b);
		conn_free(loop, pending_reuse);
		CHECK_EQ(loop_run(loop), 0);
		loop_free(loop);
	}
	check_case("%s", "");
}

/* Many sockets ready at once: more than one batch, each delivered exactly once. */
#define MANY 1000

struct many {
	struct loop_io io;
	loop_sock sv[2];
	int calls;
};

static void many_cb(struct loop *loop, struct loop_io *io, unsigned events)
{
	struct many *m = io->arg;
	char c;

	m->calls++;
	CHECK_EQ(events, LOOP_READ);
	CHECK_EQ(testsock_read(m->sv[0], &c, 1), 1);
	loop_io_stop(loop, io);
}

static void test_io_many(void)
{
	struct loop *loop = new_loop(0);
	struct many *m = calloc(MANY, sizeof *m);
	size_t n = MANY, called = 0, allowed = testsock_allow(2 * MANY + 64);

	if (!m)
		exit(1);
	if (allowed < 2 * MANY + 64)
		n = allowed > 128 ? (allowed - 64) / 2 : 32;
	CHECK(n > LOOP_BATCH);
	for (size_t i = 0; i < n; i++) {
		testsock_pair(m[i].sv);
		put_byte(m[i].sv[1]);
		loop_io_init(&m[i].io, m[i].sv[0], many_cb, &m[i]);
		CHECK_EQ(loop_io_start(loop, &m[i].io, LOOP_READ), 0);
	}
	CHECK_EQ(loop_run(loop), 0);
	for (size_t i = 0; i < n; i++) {
		check_case("socket %zu", i);
		CHECK_EQ(m[i].calls, 1);
		called += (size_t)m[i].calls;
		testsock_close_pair(m[i].sv);
	}
	check_case("%s", "");
	CHECK_EQ(called, n);
	free(m);
	loop_free(loop);
}

/* ---- Timers */

#define ORDER_MAX 16

struct order {
	struct loop_timer timers[ORDER_MAX];
	int fired[ORDER_MAX];
	int nfired;
};

static void order_cb(struct loop *loop, struct loop_timer *t)
{
	struct order *o = t->arg;

	CHECK(loop_now(loop) >= t->deadline);
	CHECK(loop_backend_now_ms() >= t->deadline);
	CHECK(!loop_timer_active(t));
	if (o->nfired < ORDER_MAX)
		o->fired[o->nfired++] = (int)(t - o->timers);
}

static void test_timer_order(void)
{
	static const struct {
		const char *name;
		int n;
		uint64_t delay[ORDER_MAX];
		int want[ORDER_MAX];
	} cases[] = {
		{ "one", 1, { 2 }, { 0 } },
		{ "distinct", 4, { 5, 1, 3, 0 }, { 3, 1, 2, 0 } },
		{ "ties in start order", 4, { 2, 2, 2, 2 }, { 0, 1, 2, 3 } },
		{ "mixed", 7, { 3, 0, 1, 0, 3, 1, 2 }, { 1, 3, 2, 5, 6, 0, 4 } },
		{ "descending", 6, { 6, 5, 4, 3, 2, 1 }, { 5, 4, 3, 2, 1, 0 } },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct loop *loop = new_loop(0);
		struct order o = { 0 };

		check_case("%s", cases[i].name);
		/* loop_now() is cached, so equal delays make equal deadlines. */
		for (int k = 0; k < cases[i].n; k++) {
			loop_timer_init(&o.timers[k], order_cb, &o);
			CHECK_EQ(loop_timer_start(loop, &o.timers[k], cases[i].delay[k]), 0);
			CHECK(loop_timer_active(&o.timers[k]));
		}
		CHECK_EQ(loop_run(loop), 0);
		CHECK_EQ(o.nfired, cases[i].n);
		for (int k = 0; k < cases[i].n; k++)
			CHECK_EQ(o.fired[k], cases[i].want[k]);
		loop_free(loop);
	}
	check_case("%s", "");
}

struct stopper {
	struct loop_timer timer;
	struct loop_timer **victim; /* stopped (and freed if free_victim) by this one's callback */
	bool free_victim;
	int calls;
};

static void stopper_cb(struct loop *loop, struct loop_timer *t)
{
	struct stopper *s = t->arg;

	s->calls++;
	loop_timer_stop(loop, t);
	if (s->victim && *s->victim) {
		loop_timer_stop(loop, *s->victim);
		if (s->free_victim) {
			free((*s->victim)->arg);
			*s->victim = NULL;
		}
	}
}

static void test_timer_cancel(void)
{
	static const struct {
		const char *name;
		uint64_t victim_delay;
		bool free_victim;
	} cases[] = {
		{ "due in the same iteration", 1, false },
		{ "due in the same iteration, freed", 1, true },
		{ "due later", 20, false },
		{ "due later, freed", 20, true },
	};
	struct loop *loop = new_loop(0);
	struct stopper a = { 0 }, b = { 0 }, c = { 0 };

	/* Stopped before the run. */
	loop_timer_init(&a.timer, stopper_cb, &a);
	loop_timer_init(&b.timer, stopper_cb, &b);
	loop_timer_init(&c.timer, stopper_cb, &c);
	CHECK_EQ(loop_timer_start(loop, &a.timer, 1), 0);
	CHECK_EQ(loop_timer_start(loop, &b.timer, 2), 0);
	CHECK_EQ(loop_timer_start(loop, &c.timer, 3), 0);
	loop_timer_stop(loop, &b.timer);
	loop_timer_stop(loop, &b.timer);
	CHECK(!loop_timer_active(&b.timer));
	CHECK_EQ(loop_run(loop), 0);
	CHECK_EQ(a.calls, 1);
	CHECK_EQ(b.calls, 0);
	CHECK_EQ(c.calls, 1);

	/* Stopped by another timer's callback. */
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct stopper *victim = calloc(1, sizeof *victim);
		struct loop_timer *victim_timer;

		if (!victim)
			exit(1);
		check_case("%s", cases[i].name);
		victim_timer = &victim->timer;
		a = (struct stopper){ .victim = &victim_timer,
				      .free_victim = cases[i].free_victim };
		loop_timer_init(&a.timer, stopper_cb, &a);
		loop_timer_init(&victim->timer, stopper_cb, victim);
		CHECK_EQ(loop_timer_start(loop, &a.timer, 1), 0);
		CHECK_EQ(loop_timer_start(loop, &victim->timer, cases[i].victim_delay), 0);
		CHECK_EQ(loop_run(loop), 0);
		CHECK_EQ(a.calls, 1);
		if (cases[i].free_victim) {
			CHECK(victim_timer == NULL);
		} else {
			CHECK_EQ(victim->calls, 0);
			CHECK(!loop_timer_active(&victim->timer));
			free(victim);
		}
	}
	check_case("%s", "");
	loop_free(loop);
}

struct repeat {
	struct loop_timer timer;
	int calls;
	int times;
	bool stop_after_restart;
};

static void repeat_cb(struct loop *loop, struct loop_timer *t)
{
	struct repeat *r = t->arg;

	r->calls++;
	if (r->calls < r->times) {
		CHECK_EQ(loop_timer_start(loop, t, 1), 0);
		CHECK(loop_timer_active(t));
		if (r->stop_after_restart)
			loop_timer_stop(loop, t);
	}
}

static void test_timer_restart(void)
{
	struct loop *loop = new_loop(0);
	struct repeat r = { .times = 1 };

	/* A restart replaces the deadline; the timer fires once. */
	loop_timer_init(&r.timer, repeat_cb, &r);
	CHECK_EQ(loop_timer_start(loop, &r.timer, 600000), 0);
	CHECK_EQ(loop_timer_start(loop, &r.timer, 1), 0);
	CHECK(r.timer.deadline <= loop_now(loop) + 1);
	CHECK_EQ(loop_run(loop), 0);
	CHECK_EQ(r.calls, 1);

	/* A restart from its own callback makes a periodic timer. */
	r = (struct repeat){ .times = 4 };
	loop_timer_init(&r.timer, repeat_cb, &r);
	CHECK_EQ(loop_timer_start(loop, &r.timer, 0), 0);
	CHECK_EQ(loop_run(loop), 0);
	CHECK_EQ(r.calls, 4);

	/* Restarted and stopped in its own callback: it never comes back. */
	r = (struct repeat){ .times = 4, .stop_after_restart = true };
	loop_timer_init(&r.timer, repeat_cb, &r);
	CHECK_EQ(loop_timer_start(loop, &r.timer, 0), 0);
	CHECK_EQ(loop_run(loop), 0);
	CHECK_EQ(r.calls, 1);

	/* Restarting earlier and later than other timers keeps the heap ordered. */
	struct order o = { 0 };
	for (int k = 0; k < 5; k++) {
		loop_timer_init(&o.timers[k], order_cb, &o);
		CHECK_EQ(loop_timer_start(loop, &o.timers[k], (uint64_t)k + 2), 0);
	}
	CHECK_EQ(loop_timer_start(loop, &o.timers[0], 30), 0);
	CHECK_EQ(loop_timer_start(loop, &o.timers[4], 0), 0);
	CHECK_EQ(loop_run(loop), 0);
	CHECK_EQ(o.nfired, 5);
	CHECK_EQ(o.fired[0], 4);
	CHECK_EQ(o.fired[1], 1);
	CHECK_EQ(o.fired[2], 2);
	CHECK_EQ(o.fired[3], 3);
	CHECK_EQ(o.fired[4], 0);
	loop_free(loop);
}

/* A zero-delay timer started from a callback waits for the next iteration. */
struct chain {
	struct loop_timer first, second;
	struct loop_io io;
	int first_calls, second_calls, io_calls;
};

static void chain_second_cb(struct loop *loop, struct loop_timer *t)
{
	struct chain *c = t->arg;

	(void)loop;
	c->second_calls++;
}

static void chain_first_cb(struct loop *loop, struct loop_timer *t)
{
	struct chain *c = t->arg;

	c->first_calls++;
	CHECK_EQ(loop_timer_start(loop, &c->second, 0), 0);
}

static void chain_io_cb(struct loop *loop, struct loop_io *io, unsigned events)
{
	struct chain *c = io->arg;

	(void)events;
	c->io_calls++;
	loop_io_stop(loop, io);
	CHECK_EQ(loop_timer_start(loop, &c->second, 0), 0);
}

/* Re-arms itself with delay 0: must not keep an iteration from ending. The bound only turns a
 * loop that would spin forever into a failed check. */
static void rearm_cb(struct loop *loop, struct loop_timer *t)
{
	struct chain *c = t->arg;

	c->first_calls++;
	if (c->first_calls < 100)
		CHECK_EQ(loop_timer_start(loop, t, 0), 0);
}

static void test_timer_zero_delay_next_iteration(void)
{
	struct loop *loop = new_loop(0);
	struct chain c = { 0 };
	loop_sock sv[2];

	loop_timer_init(&c.first, chain_first_cb, &c);
	loop_timer_init(&c.second, chain_second_cb, &c);
	CHECK_EQ(loop_timer_start(loop, &c.first, 0), 0);
	CHECK_EQ(loop_run_once(loop, 0), 1);
	CHECK_EQ(c.first_calls, 1);
	CHECK_EQ(c.second_calls, 0);
	CHECK(loop_timer_active(&c.second));
	CHECK_EQ(loop_run_once(loop, 0), 1);
	CHECK_EQ(c.second_calls, 1);

	/* Started from a socket callback of the same iteration. */
	testsock_pair(sv);
	loop_io_init(&c.io, sv[0], chain_io_cb, &c);
	CHECK_EQ(loop_io_start(loop, &c.io, LOOP_WRITE), 0);
	CHECK_EQ(loop_run_once(loop, 1000), 1);
	CHECK_EQ(c.io_calls, 1);
	CHECK_EQ(c.second_calls, 1);
	CHECK_EQ(loop_run_once(loop, 1000), 1);
	CHECK_EQ(c.second_calls, 2);

	/* No starvation: a timer re-arming itself runs once per iteration; sockets get served. */
	c = (struct chain){ 0 };
	loop_io_init(&c.io, sv[0], seen_cb, &(struct seen){ 0 });
	CHECK_EQ(loop_io_start(loop, &c.io, LOOP_WRITE), 0);
	loop_timer_init(&c.first, rearm_cb, &c);
	CHECK_EQ(loop_timer_start(loop, &c.first, 0), 0);
	for (int k = 1; k <= 5; k++) {
		CHECK_EQ(loop_run_once(loop, 1000), 2);
		CHECK_EQ(c.first_calls, k);
	}
	loop_timer_stop(loop, &c.first);
	loop_io_stop(loop, &c.io);
	CHECK_EQ(loop_run(loop), 0);
	testsock_close_pair(sv);
	loop_free(loop);
}

static void count_cb(struct loop *loop, struct loop_timer *t)
{
	(void)loop;
	(*(int *)t->arg)++;
}

static void test_timer_limit(void)
{
	static const struct {
		const char *name;
		size_t max;
	} cases[] = {
		{ "below the initial heap", 3 },
		{ "one heap growth", 65 },
		{ "several growths, not a power of two", 1000 },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t max = cases[i].max;
		struct loop *loop = new_loop(max);
		struct loop_timer *t = calloc(max + 1, sizeof *t);
		int calls = 0;

		if (!t)
			exit(1);
		check_case("%s", cases[i].name);
		for (size_t k = 0; k <= max; k++) {
			loop_timer_init(&t[k], count_cb, &calls);
			CHECK_EQ(loop_timer_start(loop, &t[k], k % 7), k < max ? 0 : -ENOSPC);
		}
		CHECK(!loop_timer_active(&t[max]));
		/* At the bound a restart still works, and a stop makes room. */
		CHECK_EQ(loop_timer_start(loop, &t[0], 1), 0);
		loop_timer_stop(loop, &t[1]);
		CHECK_EQ(loop_timer_start(loop, &t[max], 0), 0);
		CHECK_EQ(loop_run(loop), 0);
		CHECK_EQ(calls, (int)max);
		free(t);
		loop_free(loop);
	}
	check_case("%s", "");
}

/* Random starts, restarts and stops; the run order must follow (deadline, start order). */
#define STRESS 2000

struct stress {
	struct loop_timer timer;
	bool want;
	int calls;
};

static uint64_t stress_last_deadline, stress_last_seq;
static int stress_fired, stress_out_of_order;

static void stress_cb(struct loop *loop, struct loop_timer *t)
{
	struct stress *s = t->arg;

	(void)loop;
	s->calls++;
	if (stress_fired > 0 && (t->deadline < stress_last_deadline ||
				 (t->deadline == stress_last_deadline && t->seq < stress_last_seq)))
		stress_out_of_order++;
	stress_last_deadline = t->deadline;
	stress_last_seq = t->seq;
	stress_fired++;
}

static void test_timer_heap_stress(void)
{
	struct loop *loop = new_loop(0);
	struct stress *s = calloc(STRESS, sizeof *s);
	uint32_t rng = 12345;
	int want = 0;

	if (!s)
		exit(1);
	stress_fired = stress_out_of_order = 0;
	for (size_t k = 0; k < STRESS; k++) {
		loop_timer_init(&s[k].timer, stress_cb, &s[k]);
		rng = rng * 1103515245u + 12345u;
		CHECK_EQ(loop_timer_start(loop, &s[k].timer, (rng >> 16) % 20), 0);
		s[k].want = true;
	}
	for (size_t k = 0; k < STRESS; k++) {
		size_t j;

		rng = rng * 1103515245u + 12345u;
		j = (rng >> 8) % STRESS;
		if ((rng >> 28) % 3 == 0) {
			loop_timer_stop(loop, &s[j].timer);
			s[j].want = false;
		} else if ((rng >> 28) % 3 == 1) {
			CHECK_EQ(loop_timer_start(loop, &s[j].timer, (rng >> 20) % 20), 0);
			s[j].want = true;
		}
	}
	for (size_t k = 0; k < STRESS; k++)
		want += s[k].want;
	CHECK_EQ(loop_run(loop), 0);
	CHECK_EQ(stress_fired, want);
	CHECK_EQ(stress_out_of_order, 0);
	for (size_t k = 0; k < STRESS; k++) {
		check_case("timer %zu", k);
		CHECK_EQ(s[k].calls, s[k].want ? 1 : 0);
	}
	check_case("%s", "");
	free(s);
	loop_free(loop);
}

/* ---- Running */

struct runner {
	struct loop_timer timer;
	int calls;
	int stop_at;
	int nested;
};

static void runner_cb(struct loop *loop, struct loop_timer *t)
{
	struct runner *r = t->arg;

	r->calls++;
	r->nested = loop_run_once(loop, 0);
	CHECK_EQ(loop_run(loop), -EBUSY);
	if (r->calls == r->stop_at)
		loop_stop(loop);
	else
		CHECK_EQ(loop_timer_start(loop, t, 1), 0);
}

static void test_run_until_stop(void)
{
	struct loop *loop = new_loop(0);
	struct runner r = { .stop_at = 3 };
	struct seen s = { 0 };
	loop_sock sv[2];

	/* A writable socket keeps the loop alive; only loop_stop ends the run. */
	testsock_pair(sv);
	loop_io_init(&s.io, sv[0], seen_cb, &s);
	CHECK_EQ(loop_io_start(loop, &s.io, LOOP_WRITE), 0);
	loop_timer_init(&r.timer, runner_cb, &r);
	CHECK_EQ(loop_timer_start(loop, &r.timer, 1), 0);
	CHECK_EQ(loop_run(loop), 0);
	CHECK_EQ(r.calls, 3);
	CHECK_EQ(r.nested, -EBUSY);
	CHECK(s.calls >= 3);
	CHECK(loop_io_active(&s.io));

	/* A stop made outside a run ends the next run at once. */
	s.calls = 0;
	loop_stop(loop);
	CHECK_EQ(loop_run(loop), 0);
	CHECK_EQ(s.calls, 0);
	/* ... and only that one. */
	r = (struct runner){ .stop_at = 2 };
	loop_timer_init(&r.timer, runner_cb, &r);
	CHECK_EQ(loop_timer_start(loop, &r.timer, 1), 0);
	CHECK_EQ(loop_run(loop), 0);
	CHECK_EQ(r.calls, 2);

	loop_io_stop(loop, &s.io);
	testsock_close_pair(sv);
	loop_free(loop);
}

static void test_run_until_idle(void)
{
	struct loop *loop = new_loop(0);
	int calls = 0;
	struct loop_timer t;

	CHECK_EQ(loop_run(loop), 0);
	CHECK_EQ(loop_run_once(loop, -1), 0);
	loop_timer_init(&t, count_cb, &calls);
	CHECK_EQ(loop_timer_start(loop, &t, 2), 0);
	CHECK_EQ(loop_run(loop), 0);
	CHECK_EQ(calls, 1);
	CHECK(!loop_timer_active(&t));
	loop_free(loop);
}

static void test_run_once_timeout(void)
{
	struct loop *loop = new_loop(0);
	struct seen s = { 0 };
	uint64_t before;
	loop_sock sv[2];

	/* Nothing ready: a bounded wait returns 0 callbacks, not before its timeout. */
	testsock_pair(sv);
	loop_io_init(&s.io, sv[0], seen_cb, &s);
	CHECK_EQ(loop_io_start(loop, &s.io, LOOP_READ), 0);
	before = loop_backend_now_ms();
	CHECK_EQ(loop_run_once(loop, 5), 0);
	CHECK(loop_now(loop) >= before + 4);
	CHECK(loop_now(loop) <= loop_backend_now_ms());
	loop_update_time(loop);
	CHECK(loop_now(loop) >= before + 4);
	loop_io_stop(loop, &s.io);
	testsock_close_pair(sv);
	loop_free(loop);
}

/* Where the platform has signals (not Windows): one interrupting the wait is no error. */
static void test_run_once_eintr(void)
{
	struct loop *loop = new_loop(0);
	struct seen s = { 0 };
	loop_sock sv[2];

	testsock_pair(sv);
	loop_io_init(&s.io, sv[0], seen_cb, &s);
	CHECK_EQ(loop_io_start(loop, &s.io, LOOP_READ), 0);
	if (testsock_alarm(10)) {
		while (!testsock_alarm_caught())
			CHECK_EQ(loop_run_once(loop, 10000), 0);
		CHECK_EQ(s.calls, 0);
		testsock_alarm_done();
	}
	loop_io_stop(loop, &s.io);
	testsock_close_pair(sv);
	loop_free(loop);
}

static const struct check_test tests[] = {
	{ "backend_name", test_backend_name },
	{ "io_readable", test_io_readable },
	{ "io_writable", test_io_writable },
	{ "io_peer_events", test_io_peer_events },
	{ "io_writer_full_half_closed", test_io_writer_full_half_closed },
	{ "io_start_errors", test_io_start_errors },
	{ "io_modify_mask", test_io_modify_mask },
	{ "io_stop_in_callback", test_io_stop_in_callback },
	{ "io_act_on_pending_other", test_io_act_on_pending_other },
	{ "io_many", test_io_many },
	{ "timer_order", test_timer_order },
	{ "timer_cancel", test_timer_cancel },
	{ "timer_restart", test_timer_restart },
	{ "timer_zero_delay_next_iteration", test_timer_zero_delay_next_iteration },
	{ "timer_limit", test_timer_limit },
	{ "timer_heap_stress", test_timer_heap_stress },
	{ "run_until_stop", test_run_until_stop },
	{ "run_until_idle", test_run_until_idle },
	{ "run_once_timeout", test_run_once_timeout },
	{ "run_once_eintr", test_run_once_eintr },
};

CHECK_MAIN(tests)
