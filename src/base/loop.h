/* loop.h — the event loop: one-shot timers and socket readiness, one backend per platform.
 *
 * Watchers are embedded by the caller (a connection holds its `struct loop_io` and
 * `struct loop_timer`); the loop keeps pointers to them and allocates nothing per event.
 * Readiness is level-triggered: a watcher is called on every iteration while its socket stays
 * ready for what it asked. Everything runs on the loop's thread; no function here is
 * thread-safe.
 *
 * What a socket callback sees (`events` argument):
 *   LOOP_READ   data to read, or end of stream (read() returns 0), or an error read() reports.
 *   LOOP_WRITE  room to write, or an error write() reports.
 *   LOOP_HUP    the peer will send nothing more: after draining, read() returns 0 or an error.
 *   LOOP_ERROR  an error is pending on the socket; read()/write()/SO_ERROR return it.
 * HUP and ERROR never arrive alone: they come with every direction the watcher asked for, so a
 * callback that only reads and writes learns about them through read()/write() results.
 * A callback never sees READ or WRITE it did not ask for. As tests/unit/test_loop.c pins down:
 *   peer sent FIN (shutdown or close):  READ|HUP to a reader; a writer only gets WRITE, as the
 *                                       half-closed peer still reads
 *   socketpair peer closed:             HUP with each direction asked for
 *   peer sent RST:                      HUP|ERROR with each direction (ECONNRESET)
 *   non-blocking connect refused:       HUP|ERROR with each direction (SO_ERROR: ECONNREFUSED)
 *   TCP socket never connect()ed:       HUP with each direction (watch after connect(); while a
 *                                       non-blocking connect is in progress nothing is reported)
 *
 * Lifetime rules: a watcher may be started, changed or stopped from any callback, including
 * one whose event is already pending in the same batch; once stopped it is never called again
 * for events collected before, and its memory may be freed right away. Stop a watcher before
 * closing its socket and before freeing it; one watcher per socket.
 */
#ifndef SLUICE_BASE_LOOP_H
#define SLUICE_BASE_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A socket: an fd on POSIX, a SOCKET (pointer-sized) on Windows. */
typedef intptr_t loop_sock;

enum loop_events {
	LOOP_READ = 1u << 0,
	LOOP_WRITE = 1u << 1,
	LOOP_HUP = 1u << 2,   /* delivered only, never asked for */
	LOOP_ERROR = 1u << 3, /* delivered only, never asked for */
};

/* Batch size of one poll; readiness beyond it is reported by the next iteration. */
#define LOOP_BATCH 256
/* Timers a loop holds at most when loop_new is given 0. */
#define LOOP_TIMERS_DEFAULT_MAX (1u << 20)

struct loop;
struct loop_io;
struct loop_timer;

typedef void loop_io_fn(struct loop *loop, struct loop_io *io, unsigned events);
typedef void loop_timer_fn(struct loop *loop, struct loop_timer *timer);

/* Socket watcher. Set up with loop_io_init; the fields are read-only for callers. */
struct loop_io {
	loop_sock sock;
	unsigned events; /* LOOP_READ|LOOP_WRITE asked for; 0 when stopped */
	loop_io_fn *fn;
	void *arg;
	uint32_t pending;       /* private: 1 + index in the batch being dispatched, or 0 */
	uintptr_t backend_slot; /* private to the backend */
};

/* One-shot timer. Set up with loop_timer_init; the fields are read-only for callers. */
struct loop_timer {
	uint64_t deadline; /* loop_now() value at which it is due */
	uint64_t seq;      /* private: start order, breaks deadline ties */
	size_t heap_slot;  /* private: 1 + index in the heap, or 0 when inactive */
	loop_timer_fn *fn;
	void *arg;
};

/* Creates a loop holding at most max_timers timers (0: LOOP_TIMERS_DEFAULT_MAX). Allocates
 * everything it needs except timer-heap growth. Returns 0 and *out (free with loop_free), or
 * -ENOMEM or the backend's error (e.g. -EMFILE). */
int loop_new(struct loop **out, size_t max_timers);

/* Frees the loop and its backend; accepts NULL. Not to be called from a callback. Timers still
 * started are left stopped; watchers still started are forgotten as they are (loop_io_init them
 * before any reuse). Their memory stays the caller's. */
void loop_free(struct loop *loop);

/* Name of the backend in use ("epoll"; "wsapoll" on Windows), for diagnostics. */
const char *loop_method(const struct loop *loop);

/* Runs iterations until loop_stop() is called or nothing is left to watch (no started watcher
 * and no started timer). A stop ends the run after the current iteration has dispatched all its
 * callbacks; a stop made while no run is in progress makes the next loop_run return at once.
 * Returns 0, -EBUSY if called from a callback, or a negative backend error (poll failed). */
int loop_run(struct loop *loop);

/* One iteration: waits for readiness at most timeout_ms (negative: no limit; 0: no waiting),
 * less if a timer is due sooner, then calls ready watchers, then due timers. With nothing
 * started and a negative timeout it returns at once. A signal interrupting the wait is not an
 * error. Returns the number of callbacks called (>= 0), -EBUSY if called from a callback, or
 * a negative backend error. */
int loop_run_once(struct loop *loop, int timeout_ms);

/* Asks loop_run to return after the current iteration. */
void loop_stop(struct loop *loop);

/* Monotonic milliseconds, cached when the iteration's wait ends. Timer deadlines count from it. */
uint64_t loop_now(const struct loop *loop);

/* Refreshes the cached time, for a callback that ran long before starting a timer. */
void loop_update_time(struct loop *loop);

/* Prepares io for sock with callback fn(loop, io, events) and arg for its own use. io must not
 * be started; after this it is stopped (loop_io_active false). */
void loop_io_init(struct loop_io *io, loop_sock sock, loop_io_fn *fn, void *arg);

/* Watches io for events (LOOP_READ and/or LOOP_WRITE), replacing what it watched before and
 * starting it if stopped; events 0 stops it. Returns 0; -EINVAL for other bits; the backend's
 * error otherwise (-EBADF for a bad socket, -EEXIST for a second watcher on the socket,
 * -EPERM for what cannot be polled, -ENOMEM), leaving io as it was. */
int loop_io_start(struct loop *loop, struct loop_io *io, unsigned events);

/* Stops io; no-op if stopped. Events already collected for it are discarded, so the caller
 * may free io at once. Call it before closing io->sock. */
void loop_io_stop(struct loop *loop, struct loop_io *io);

static inline bool loop_io_active(const struct loop_io *io)
{
	return io->events != 0;
}

/* Prepares timer with callback fn(loop, timer) and arg for its own use; the timer is stopped. */
void loop_timer_init(struct loop_timer *timer, loop_timer_fn *fn, void *arg);

/* Starts timer to fire once, delay_ms after loop_now(); restarts it if started (it then fires
 * once, at the new deadline). Timers due in the same iteration run in deadline order, ties in
 * start order; a timer started from a callback runs at the earliest in the next iteration,
 * even with delay 0. Returns 0, -ENOSPC when the loop holds max_timers, -ENOMEM when the heap
 * cannot grow; the timer is then stopped. */
int loop_timer_start(struct loop *loop, struct loop_timer *timer, uint64_t delay_ms);

/* Stops timer; no-op if stopped, including from its own callback (it is stopped while it
 * runs). The caller may free it at once. */
void loop_timer_stop(struct loop *loop, struct loop_timer *timer);

static inline bool loop_timer_active(const struct loop_timer *timer)
{
	return timer->heap_slot != 0;
}

/* ---- Backend contract: implemented once per platform (loop_epoll.c; loop_wsapoll.c for
 * Windows), chosen by CMake. Used by loop.c only, never by callers. */

struct loop_backend;

/* One ready watcher: LOOP_* bits as the platform reported them. */
struct loop_fired {
	struct loop_io *io;
	unsigned events;
};

/* Creates the backend state for batches of up to `batch` events. Returns 0 or -errno. */
int loop_backend_new(struct loop_backend **out, size_t batch);
void loop_backend_free(struct loop_backend *backend);
const char *loop_backend_name(void);

/* Registers io->sock for `events` (LOOP_READ|LOOP_WRITE, nonzero); io->events is still the old
 * mask (0 for add). add: the socket is not registered; modify: it is. Return 0 or -errno. */
int loop_backend_add(struct loop_backend *backend, struct loop_io *io, unsigned events);
int loop_backend_modify(struct loop_backend *backend, struct loop_io *io, unsigned events);

/* Unregisters io->sock (io->events is still the old mask); cannot fail (a socket closed too
 * early is already gone). */
void loop_backend_remove(struct loop_backend *backend, struct loop_io *io);

/* Waits at most timeout_ms (negative: no limit) and fills up to `batch` entries, each io at
 * most once, with the platform's raw conditions: the core filters them by the current mask and
 * widens HUP/ERROR. Returns the count (0 on timeout or when a signal interrupted the wait) or
 * -errno. */
int loop_backend_poll(struct loop_backend *backend, int timeout_ms, struct loop_fired *fired);

/* Monotonic clock in milliseconds. */
uint64_t loop_backend_now_ms(void);

#endif
