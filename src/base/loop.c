/* loop.c — the portable core of the event loop: timer heap, iteration, safe dispatch. */
#include "base/loop.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#define TIMER_HEAP_INITIAL 64

struct loop {
	struct loop_backend *backend;
	uint64_t now;
	bool stop;
	bool running; /* inside loop_run_once: callbacks may not re-enter */
	size_t io_active;

	/* The batch being dispatched; loop_io_stop clears its entry (io->pending). */
	struct loop_fired fired[LOOP_BATCH];

	/* Min-heap on (deadline, seq); heap[i]->heap_slot == i + 1. */
	struct loop_timer **heap;
	size_t heap_len;
	size_t heap_cap;
	size_t heap_max;
	uint64_t timer_seq;
};

int loop_new(struct loop **out, size_t max_timers)
{
	struct loop *loop;
	int err;

	loop = calloc(1, sizeof *loop);
	if (!loop)
		return -ENOMEM;
	loop->heap_max = max_timers ? max_timers : LOOP_TIMERS_DEFAULT_MAX;
	loop->heap_cap = loop->heap_max < TIMER_HEAP_INITIAL ? loop->heap_max : TIMER_HEAP_INITIAL;
	loop->heap = calloc(loop->heap_cap, sizeof *loop->heap);
	if (!loop->heap) {
		err = -ENOMEM;
		goto fail;
	}
	err = loop_backend_new(&loop->backend, LOOP_BATCH);
	if (err < 0)
		goto fail;
	loop->now = loop_backend_now_ms();
	*out = loop;
	return 0;
fail:
	free(loop->heap);
	free(loop);
	return err;
}

void loop_free(struct loop *loop)
{
	if (!loop)
		return;
	for (size_t i = 0; i < loop->heap_len; i++)
		loop->heap[i]->heap_slot = 0;
	loop_backend_free(loop->backend);
	free(loop->heap);
	free(loop);
}

const char *loop_method(const struct loop *loop)
{
	(void)loop;
	return loop_backend_name();
}

uint64_t loop_now(const struct loop *loop)
{
	return loop->now;
}

void loop_update_time(struct loop *loop)
{
	loop->now = loop_backend_now_ms();
}

void loop_stop(struct loop *loop)
{
	loop->stop = true;
}

/* ---- Sockets */

void loop_io_init(struct loop_io *io, loop_sock sock, loop_io_fn *fn, void *arg)
{
	io->sock = sock;
	io->events = 0;
	io->fn = fn;
	io->arg = arg;
	io->pending = 0;
	io->backend_slot = 0;
}

int loop_io_start(struct loop *loop, struct loop_io *io, unsigned events)
{
	int err;

	if (events & ~(unsigned)(LOOP_READ | LOOP_WRITE))
		return -EINVAL;
	if (events == 0) {
		loop_io_stop(loop, io);
		return 0;
	}
	if (io->events == events)
		return 0;
	if (io->events == 0) {
		err = loop_backend_add(loop->backend, io, events);
		if (err < 0)
			return err;
		loop->io_active++;
	} else {
		err = loop_backend_modify(loop->backend, io, events);
		if (err < 0)
			return err;
	}
	io->events = events;
	return 0;
}

void loop_io_stop(struct loop *loop, struct loop_io *io)
{
	if (io->pending) {
		loop->fired[io->pending - 1].io = NULL;
		io->pending = 0;
	}
	if (io->events == 0)
		return;
	loop_backend_remove(loop->backend, io);
	io->events = 0;
	loop->io_active--;
}

/* What the callback sees: only the directions it still asks for (the mask may have changed
 * since the poll), and HUP/ERROR widened to all of them so that read()/write() report them. */
static unsigned io_deliverable(const struct loop_io *io, unsigned fired)
{
	unsigned events = fired & (io->events | LOOP_HUP | LOOP_ERROR);

	if (events & (LOOP_HUP | LOOP_ERROR))
		events |= io->events;
	return events;
}

static int io_dispatch(struct loop *loop, int n)
{
	int calls = 0;

	for (int i = 0; i < n; i++)
		loop->fired[i].io->pending = (uint32_t)i + 1;
	for (int i = 0; i < n; i++) {
		struct loop_io *io = loop->fired[i].io;
		unsigned events;

		if (!io)
			continue;
		io->pending = 0;
		loop->fired[i].io = NULL;
		events = io_deliverable(io, loop->fired[i].events);
		if (!(events & (LOOP_READ | LOOP_WRITE)))
			continue;
		io->fn(loop, io, events);
		calls++;
	}
	return calls;
}

/* ---- Timers */

static bool timer_before(const struct loop_timer *a, const struct loop_timer *b)
{
	if (a->deadline != b->deadline)
		return a->deadline < b->deadline;
	return a->seq < b->seq;
}

static void heap_place(struct loop *loop, size_t i, struct loop_timer *timer)
{
	loop->heap[i] = timer;
	timer->heap_slot = i + 1;
}

static void heap_sift_up(struct loop *loop, size_t i)
{
	struct loop_timer *timer = loop->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (!timer_before(timer, loop->heap[parent]))
			break;
		heap_place(loop, i, loop->heap[parent]);
		i = parent;
	}
	heap_place(loop, i, timer);
}

static void heap_sift_down(struct loop *loop, size_t i)
{
	struct loop_timer *timer = loop->heap[i];

	for (;;) {
		size_t child = 2 * i + 1;

		if (child >= loop->heap_len)
			break;
		if (child + 1 < loop->heap_len &&
		    timer_before(loop->heap[child + 1], loop->heap[child]))
			child++;
		if (!timer_before(loop->heap[child], timer))
			break;
		heap_place(loop, i, loop->heap[child]);
		i = child;
	}
	heap_place(loop, i, timer);
}

static void heap_remove(struct loop *loop, struct loop_timer *timer)
{
	size_t i = timer->heap_slot - 1;
	struct loop_timer *last = loop->heap[--loop->heap_len];

	timer->heap_slot = 0;
	if (last == timer)
		return;
	heap_place(loop, i, last);
	heap_sift_down(loop, i);
	heap_sift_up(loop, last->heap_slot - 1);
}

static int heap_reserve_one(struct loop *loop)
{
	struct loop_timer **heap;
	size_t cap;

	if (loop->heap_len < loop->heap_cap)
		return 0;
	if (loop->heap_cap >= loop->heap_max)
		return -ENOSPC;
	cap = loop->heap_cap * 2;
	if (cap > loop->heap_max || cap < loop->heap_cap)
		cap = loop->heap_max;
	if (cap > SIZE_MAX / sizeof *heap)
		return -ENOMEM;
	heap = realloc(loop->heap, cap * sizeof *heap);
	if (!heap)
		return -ENOMEM;
	loop->heap = heap;
	loop->heap_cap = cap;
	return 0;
}

void loop_timer_init(struct loop_timer *timer, loop_timer_fn *fn, void *arg)
{
	timer->deadline = 0;
	timer->seq = 0;
	timer->heap_slot = 0;
	timer->fn = fn;
	timer->arg = arg;
}

int loop_timer_start(struct loop *loop, struct loop_timer *timer, uint64_t delay_ms)
{
	int err;

	if (timer->heap_slot)
		heap_remove(loop, timer);
	err = heap_reserve_one(loop);
	if (err < 0)
		return err;
	timer->deadline = delay_ms > UINT64_MAX - loop->now ? UINT64_MAX : loop->now + delay_ms;
	timer->seq = loop->timer_seq++;
	heap_place(loop, loop->heap_len++, timer);
	heap_sift_up(loop, loop->heap_len - 1);
	return 0;
}

void loop_timer_stop(struct loop *loop, struct loop_timer *timer)
{
	if (timer->heap_slot)
		heap_remove(loop, timer);
}

/* Runs timers due at loop->now that were started before seq_limit, i.e. before this iteration
 * began: a callback that starts a timer with delay 0 cannot keep this iteration going. Heap
 * order puts older timers of equal deadline first, so the first new one ends the walk. */
static int timers_dispatch(struct loop *loop, uint64_t seq_limit)
{
	uint64_t now = loop->now;
	int calls = 0;

	while (loop->heap_len > 0) {
		struct loop_timer *timer = loop->heap[0];

		if (timer->deadline > now || timer->seq >= seq_limit)
			break;
		heap_remove(loop, timer);
		timer->fn(loop, timer);
		calls++;
	}
	return calls;
}

/* ---- Iteration */

static int poll_timeout(const struct loop *loop, int timeout_ms)
{
	uint64_t wait;

	if (loop->heap_len == 0)
		return timeout_ms;
	wait = loop->heap[0]->deadline > loop->now ? loop->heap[0]->deadline - loop->now : 0;
	if (wait > INT_MAX)
		wait = INT_MAX;
	if (timeout_ms >= 0 && (uint64_t)timeout_ms < wait)
		return timeout_ms;
	return (int)wait;
}

int loop_run_once(struct loop *loop, int timeout_ms)
{
	uint64_t seq_limit = loop->timer_seq;
	int n, calls;

	if (loop->running)
		return -EBUSY;
	if (timeout_ms < 0 && loop->io_active == 0 && loop->heap_len == 0)
		return 0;
	loop->running = true;
	loop_update_time(loop);
	n = loop_backend_poll(loop->backend, poll_timeout(loop, timeout_ms), loop->fired);
	if (n < 0) {
		loop->running = false;
		return n;
	}
	loop_update_time(loop);
	calls = io_dispatch(loop, n);
	calls += timers_dispatch(loop, seq_limit);
	loop->running = false;
	return calls;
}

int loop_run(struct loop *loop)
{
	int err = 0;

	if (loop->running)
		return -EBUSY;
	while (!loop->stop && (loop->io_active > 0 || loop->heap_len > 0)) {
		err = loop_run_once(loop, -1);
		if (err < 0)
			break;
	}
	loop->stop = false;
	return err < 0 ? err : 0;
}
