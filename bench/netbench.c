/* netbench.c — the load tool of scripts/bench_paths.sh: servers, and the clients that measure
 * bulk throughput, connections per second with their latency, idle connections and DNS queries.
 *
 *   netbench serve PORT                         until SIGINT or SIGTERM, on [::] and 0.0.0.0
 *   netbench [--hold] bulk ADDR PORT SECONDS STREAMS    bulk_bytes_per_s=N ...
 *   netbench [--hold] rr ADDR PORT SECONDS CONCURRENCY  conns_per_s=N errors=N ttfb_p50_us=X ...
 *   netbench idle ADDR PORT COUNT SECONDS       idle_conns=N errors=N ..., then holds them
 *   netbench [--hold] dns ADDR PORT SECONDS INFLIGHT NAME  dns_queries_per_s=N p50_us=X ...
 *
 * One exchange per TCP connection, chosen by its first byte:
 *   'B' then any bytes until the client's EOF: the server answers the number of bytes it
 *       received (the 'B' included) as 8 bytes, most significant first, and closes.
 *   'R' and 99 more bytes: the server answers 1024 bytes and closes.
 *   'I': the server answers 'i' and keeps the connection, silent, until the client's EOF.
 * rr records each exchange's connect-to-first-byte time (from socket() to the answer's first
 * byte) in a log-linear histogram (1/128 of a power of two wide: under 0.8 % error) and prints
 * its percentiles. idle opens COUNT connections, each confirmed end to end by the 'i', prints
 * its line, and holds them until SIGTERM or SIGINT (at most SECONDS). dns sends A queries for
 * NAME over UDP, INFLIGHT at a time, and times each answer. With --hold a client, once its line
 * is printed, waits for SIGTERM or SIGINT (at most HOLD_MAX_S) before it exits, so that whoever
 * started it can read a relay's counters while the relay still runs.
 * Every wait is bounded (STEP_TIMEOUT_MS without progress, DRAIN_TIMEOUT_MS for a bulk count),
 * and so is the server (MAX_CONNS connections; those that are not 'I' are closed after
 * IDLE_TIMEOUT_S of silence). TCP clients are threads with non-blocking sockets and poll(), or
 * (idle) one epoll loop; the server is one epoll loop.
 */
#define _GNU_SOURCE /* accept4 */

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
	REQUEST_SIZE = 100,
	ANSWER_SIZE = 1024,
	COUNT_SIZE = 8,
	CHUNK_SIZE = 128 * 1024,    /* one send() of a bulk stream */
	SINK_SIZE = 256 * 1024,     /* one read() of the server */
	MAX_CONNS = 32768,          /* connections the server holds at once; more are shed */
	MAX_EVENTS = 256,
	ACCEPTS_PER_WAKE = 64,
	MAX_SECONDS = 600,
	MAX_STREAMS = 256,
	MAX_CONCURRENCY = 1024,
	MAX_IDLE = 100000,          /* connections one idle client holds */
	IDLE_PARALLEL = 128,        /* idle connections being opened at once */
	MAX_INFLIGHT = 1024,        /* DNS queries in flight; a power of two (the id's low bits) */
	STEP_TIMEOUT_MS = 5000,     /* connect, or one send/recv making no progress */
	DRAIN_TIMEOUT_MS = 30000,   /* a bulk count: it waits for every relay on the way to drain */
	OPEN_TIMEOUT_MS = 120000,   /* an idle client's whole opening */
	DNS_TIMEOUT_MS = 1000,      /* a query unanswered this long is lost */
	IDLE_TIMEOUT_S = 10,
	HOLD_MAX_S = 120,
	THREAD_STACK = 256 * 1024,
	ERRLEN = 160,
	DNS_HEADER = 12,
	DNS_QUERY_MAX = 512,
	HIST_SUB_BITS = 7,          /* 128 buckets per power of two */
	HIST_SUB = 1 << HIST_SUB_BITS,
	HIST_TOP_BIT = 40,          /* nanoseconds: values from 2^40 ns (18 minutes) are clamped */
	HIST_BUCKETS = (HIST_TOP_BIT - HIST_SUB_BITS + 1) * HIST_SUB,
};

static const int64_t NS = 1000000000;

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* SIGINT and SIGTERM set `stop` instead of ending the process. */
static void catch_stop_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal };

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

static int64_t ms_later(int ms)
{
	return now_ns() + (int64_t)ms * 1000000;
}

/* Parses a decimal integer in [min, max] from s. Returns 0 or -EINVAL. */
static int parse_int(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* Raises the descriptor limit to its hard limit (idle clients and the server hold many). */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Waits for SIGTERM or SIGINT (caught by catch_stop_signals), at most seconds. */
static void hold(int seconds)
{
	int64_t until = now_ns() + (int64_t)seconds * NS;

	while (!stop && now_ns() < until)
		poll(NULL, 0, 50);
}

/* ---- Latency histogram ---- */

/* Counts of durations in nanoseconds: exact below 2^HIST_SUB_BITS, then HIST_SUB buckets per
 * power of two. */
struct hist {
	uint64_t total;
	uint32_t count[HIST_BUCKETS];
};

static int hist_index(int64_t v)
{
	uint64_t u = v < 0 ? 0 : (uint64_t)v;
	int bit;

	if (u >= (uint64_t)1 << HIST_TOP_BIT)
		u = ((uint64_t)1 << HIST_TOP_BIT) - 1;
	if (u < HIST_SUB)
		return (int)u;
	bit = 63 - __builtin_clzll(u);
	return (bit - HIST_SUB_BITS + 1) * HIST_SUB +
	       (int)((u >> (bit - HIST_SUB_BITS)) & (HIST_SUB - 1));
}

/* The middle of bucket i, in nanoseconds. */
static double hist_value(int i)
{
	int shift;

	if (i < HIST_SUB)
		return i;
	shift = i / HIST_SUB - 1;
	return (double)(((uint64_t)(HIST_SUB + i % HIST_SUB)) << shift) +
	       (double)((uint64_t)1 << shift) / 2.0 - 0.5;
}

static void hist_add(struct hist *h, int64_t ns)
{
	h->count[hist_index(ns)]++;
	h->total++;
}

static void hist_merge(struct hist *into, const struct hist *h)
{
	for (int i = 0; i < HIST_BUCKETS; i++)
		into->count[i] += h->count[i];
	into->total += h->total;
}

/* The q-quantile (0 < q <= 1) in microseconds, or 0 for an empty histogram. */
static double hist_quantile_us(const struct hist *h, double q)
{
	uint64_t rank = (uint64_t)(q * (double)h->total + 0.999999), seen = 0;

	if (h->total == 0)
		return 0;
	if (rank == 0)
		rank = 1;
	for (int i = 0; i < HIST_BUCKETS; i++) {
		seen += h->count[i];
		if (seen >= rank)
			return hist_value(i) / 1000.0;
	}
	return hist_value(HIST_BUCKETS - 1) / 1000.0;
}

/* ---- Client side ---- */

struct target {
	struct sockaddr_storage sa;
	socklen_t len;
};

/* Fills t from an IPv4 or IPv6 literal and a port. Returns 0 or -EINVAL. */
static int target_parse(struct target *t, const char *addr, const char *port)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)&t->sa;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&t->sa;
	long p;

	memset(t, 0, sizeof *t);
	if (parse_int(port, 1, 65535, &p) < 0)
		return -EINVAL;
	if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)p);
		t->len = sizeof *in4;
		return 0;
	}
	if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)p);
		t->len = sizeof *in6;
		return 0;
	}
	return -EINVAL;
}

/* Waits until fd is ready for events or deadline (CLOCK_MONOTONIC ns) passes.
 * Returns 0, -ETIMEDOUT or a negative errno. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = events };
		int64_t left = deadline - now_ns();
		int rc;

		if (left <= 0)
			return -ETIMEDOUT;
		rc = poll(&p, 1, (int)((left + 999999) / 1000000));
		if (rc > 0)
			return 0;
		if (rc < 0 && errno != EINTR)
			return -errno;
	}
}

/* Opens a non-blocking TCP connection to t within STEP_TIMEOUT_MS.
 * Returns the descriptor (the caller closes it) or a negative errno. */
static int dial(const struct target *t)
{
	int fd, rc, soerr = 0;
	socklen_t sl = sizeof soerr;

	fd = socket(t->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)&t->sa, t->len) == 0)
		return fd;
	if (errno != EINPROGRESS) {
		rc = -errno;
		goto fail;
	}
	rc = wait_fd(fd, POLLOUT, ms_later(STEP_TIMEOUT_MS));
	if (rc < 0)
		goto fail;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) {
		rc = -errno;
		goto fail;
	}
	if (soerr) {
		rc = -soerr;
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return rc;
}

/* Sends all len bytes of buf, each wait at most STEP_TIMEOUT_MS. Returns 0 or a negative errno. */
static int send_all(int fd, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n >= 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		n = wait_fd(fd, POLLOUT, ms_later(STEP_TIMEOUT_MS));
		if (n < 0)
			return (int)n;
	}
	return 0;
}

/* Reads until EOF into buf (at most cap bytes; more is -EPROTO), each wait at most timeout_ms.
 * When first_at is not NULL it receives the time the first byte arrived (0 if none did).
 * Returns the number of bytes read or a negative errno. */
static ssize_t recv_to_eof(int fd, void *buf, size_t cap, int timeout_ms, int64_t *first_at)
{
	unsigned char *p = buf;
	size_t got = 0;
	unsigned char extra;

	if (first_at)
		*first_at = 0;
	for (;;) {
		ssize_t n = got < cap ? recv(fd, p + got, cap - got, 0) : recv(fd, &extra, 1, 0);
		if (n == 0)
			return (ssize_t)got;
		if (n > 0) {
			if (got == cap)
				return -EPROTO;
			if (got == 0 && first_at)
				*first_at = now_ns();
			got += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		n = wait_fd(fd, POLLIN, ms_later(timeout_ms));
		if (n < 0)
			return n;
	}
}

/* Starts run(arg) on a thread of THREAD_STACK bytes. Returns 0 or an errno (also on stderr). */
static int spawn(pthread_t *thread, void *(*run)(void *), void *arg)
{
	pthread_attr_t attr;
	int rc;

	rc = pthread_attr_init(&attr);
	if (rc == 0) {
		pthread_attr_setstacksize(&attr, THREAD_STACK);
		rc = pthread_create(thread, &attr, run, arg);
		pthread_attr_destroy(&attr);
	}
	if (rc)
		fprintf(stderr, "netbench: cannot start a thread: %s\n", strerror(rc));
	return rc;
}

/* ---- bulk ---- */

/* The payload every bulk send() starts from: any bytes do, as long as a stream starts with 'B'. */
static unsigned char payload[CHUNK_SIZE];

/* One bulk stream: sends until `until`, then collects the server's count (the figure's bytes). */
struct stream {
	pthread_t thread;
	const struct target *target;
	int64_t until;
	uint64_t sent;
	uint64_t confirmed;
	int64_t confirmed_at;
	char err[ERRLEN];
};

static void *stream_run(void *arg)
{
	struct stream *s = arg;
	unsigned char count[COUNT_SIZE];
	ssize_t got;
	int fd, rc = 0;

	fd = dial(s->target);
	if (fd < 0) {
		snprintf(s->err, sizeof s->err, "connect: %s", strerror(-fd));
		return NULL;
	}
	while (now_ns() < s->until) {
		ssize_t n = send(fd, payload, sizeof payload, MSG_NOSIGNAL);
		if (n > 0) {
			s->sent += (uint64_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			rc = -errno;
			break;
		}
		rc = wait_fd(fd, POLLOUT, ms_later(STEP_TIMEOUT_MS));
		if (rc < 0)
			break;
	}
	if (rc < 0) {
		snprintf(s->err, sizeof s->err, "send after %" PRIu64 " bytes: %s", s->sent,
			 strerror(-rc));
		goto out;
	}
	if (shutdown(fd, SHUT_WR) < 0) {
		snprintf(s->err, sizeof s->err, "shutdown: %s", strerror(errno));
		goto out;
	}
	got = recv_to_eof(fd, count, sizeof count, DRAIN_TIMEOUT_MS, NULL);
	if (got != COUNT_SIZE) {
		snprintf(s->err, sizeof s->err, "reading the server's count: %s",
			 got < 0 ? strerror((int)-got) : "short answer");
		goto out;
	}
	s->confirmed_at = now_ns();
	for (int i = 0; i < COUNT_SIZE; i++)
		s->confirmed = s->confirmed << 8 | count[i];
	if (s->confirmed != s->sent)
		snprintf(s->err, sizeof s->err, "the server counted %" PRIu64 " of %" PRIu64
			 " bytes", s->confirmed, s->sent);
out:
	close(fd);
	return NULL;
}

static int bulk_main(const struct target *t, int seconds, int n)
{
	struct stream *streams = calloc((size_t)n, sizeof *streams);
	uint64_t total = 0;
	int64_t start, last = 0;
	int started, errors = 0, i;
	const char *first = NULL;
	double elapsed;

	if (!streams) {
		fprintf(stderr, "netbench: out of memory\n");
		return 1;
	}
	memset(payload, 0x5a, sizeof payload);
	payload[0] = 'B';
	start = now_ns();
	for (i = 0; i < n; i++) {
		streams[i].target = t;
		streams[i].until = start + (int64_t)seconds * NS;
	}
	for (started = 0; started < n; started++)
		if (spawn(&streams[started].thread, stream_run, &streams[started]))
			break;
	for (i = 0; i < started; i++) {
		pthread_join(streams[i].thread, NULL);
		if (streams[i].err[0]) {
			errors++;
			first = first ? first : streams[i].err;
			continue;
		}
		total += streams[i].confirmed;
		if (streams[i].confirmed_at > last)
			last = streams[i].confirmed_at;
	}
	errors += n - started;
	elapsed = last > start ? (double)(last - start) / (double)NS : 0;
	printf("bulk_bytes_per_s=%.0f bytes=%" PRIu64 " seconds=%.3f streams=%d errors=%d\n",
	       elapsed > 0 ? (double)total / elapsed : 0.0, total, elapsed, n, errors);
	if (first)
		fprintf(stderr, "netbench: %d of %d streams failed, first: %s\n", errors, n, first);
	free(streams);
	return errors ? 1 : 0;
}

/* ---- rr ---- */

/* One closed-loop rr client: one exchange after another until `until`. */
struct worker {
	pthread_t thread;
	const struct target *target;
	int64_t until;
	uint64_t done;     /* exchanges completed before until */
	uint64_t errors;
	char err[ERRLEN];  /* the first error */
	struct hist ttfb;  /* connect-to-first-byte of the exchanges counted in done */
};

/* One connection: connect, send the request, read the whole answer and the server's close.
 * Returns 0 or a negative errno (-EPROTO: a wrong answer); what failed goes to what, the
 * connect-to-first-byte time to *ttfb. */
static int exchange(const struct target *t, const char **what, int64_t *ttfb)
{
	static const unsigned char request[REQUEST_SIZE] = { 'R' };
	unsigned char answer[ANSWER_SIZE];
	int64_t start = now_ns(), first = 0;
	ssize_t got;
	int fd, rc;

	*what = "connect";
	fd = dial(t);
	if (fd < 0)
		return fd;
	*what = "send";
	rc = send_all(fd, request, sizeof request);
	if (rc == 0) {
		*what = "answer";
		got = recv_to_eof(fd, answer, sizeof answer, STEP_TIMEOUT_MS, &first);
		if (got < 0)
			rc = (int)got;
		else if (got != ANSWER_SIZE)
			rc = -EPROTO;
	}
	close(fd);
	*ttfb = first - start;
	return rc;
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;

	while (now_ns() < w->until) {
		const char *what;
		int64_t ttfb;
		int rc = exchange(w->target, &what, &ttfb);
		if (rc == 0) {
			if (now_ns() <= w->until) {
				w->done++;
				hist_add(&w->ttfb, ttfb);
			}
			continue;
		}
		if (w->errors++ == 0)
			snprintf(w->err, sizeof w->err, "%s: %s", what, strerror(-rc));
	}
	return NULL;
}

static int rr_main(const struct target *t, int seconds, int n)
{
	struct worker *workers = calloc((size_t)n, sizeof *workers);
	struct hist *all = calloc(1, sizeof *all);
	uint64_t done = 0, errors = 0;
	int64_t start;
	int started, i, rc;
	const char *first = NULL;

	if (!workers || !all) {
		fprintf(stderr, "netbench: out of memory\n");
		free(workers);
		free(all);
		return 1;
	}
	start = now_ns();
	for (i = 0; i < n; i++) {
		workers[i].target = t;
		workers[i].until = start + (int64_t)seconds * NS;
	}
	for (started = 0; started < n; started++)
		if (spawn(&workers[started].thread, worker_run, &workers[started]))
			break;
	for (i = 0; i < started; i++) {
		pthread_join(workers[i].thread, NULL);
		done += workers[i].done;
		errors += workers[i].errors;
		hist_merge(all, &workers[i].ttfb);
		if (!first && workers[i].err[0])
			first = workers[i].err;
	}
	printf("conns_per_s=%.0f errors=%" PRIu64 " conns=%" PRIu64 " seconds=%d concurrency=%d"
	       " ttfb_p50_us=%.1f ttfb_p90_us=%.1f ttfb_p99_us=%.1f\n",
	       (double)done / seconds, errors, done, seconds, started,
	       hist_quantile_us(all, 0.50), hist_quantile_us(all, 0.90),
	       hist_quantile_us(all, 0.99));
	if (first)
		fprintf(stderr, "netbench: %" PRIu64 " failed exchanges, first: %s\n", errors,
			first);
	rc = done > 0 && started == n ? 0 : 1;
	free(workers);
	free(all);
	return rc;
}

/* ---- idle ---- */

enum idle_state {
	IDLE_CONNECTING = 1,
	IDLE_ACK,     /* 'I' sent, waiting for the server's 'i' */
	IDLE_OPEN,
	IDLE_FAILED,
};

struct idle_conn {
	int fd;
	enum idle_state state;
};

/* Moves c on after an epoll event; returns true when c is done opening (open or failed). */
static bool idle_step(int ep, struct idle_conn *c, int *first_err)
{
	int soerr = 0, err = 0;
	socklen_t sl = sizeof soerr;
	unsigned char ack;
	ssize_t n;

	if (c->state == IDLE_CONNECTING) {
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			soerr = errno;
		if (soerr == 0 && send(c->fd, "I", 1, MSG_NOSIGNAL) == 1) {
			struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
			c->state = IDLE_ACK;
			if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
				return false;
		}
		err = soerr ? soerr : errno;
	} else {
		n = recv(c->fd, &ack, 1, 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return false;
		if (n == 1 && ack == 'i') {
			epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
			c->state = IDLE_OPEN;
			return true;
		}
		err = n < 0 ? errno : EPROTO;
	}
	if (!*first_err)
		*first_err = err ? err : EIO;
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	c->state = IDLE_FAILED;
	return true;
}

/* Starts the connect of c. Returns 0, or a negative errno with c failed. */
static int idle_start(int ep, const struct target *t, struct idle_conn *c)
{
	struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };
	int err;

	c->fd = socket(t->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		err = -errno;
		goto fail;
	}
	if (connect(c->fd, (const struct sockaddr *)&t->sa, t->len) < 0 && errno != EINPROGRESS) {
		err = -errno;
		goto fail;
	}
	c->state = IDLE_CONNECTING;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) == 0)
		return 0;
	err = -errno;
fail:
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->state = IDLE_FAILED;
	return err;
}

static int idle_main(const struct target *t, int count, int seconds)
{
	struct idle_conn *conns = calloc(count > 0 ? (size_t)count : 1, sizeof *conns);
	struct epoll_event events[MAX_EVENTS];
	int64_t start = now_ns(), deadline = ms_later(OPEN_TIMEOUT_MS);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	int next = 0, busy = 0, done = 0, opened = 0, first_err = 0, i;

	if (!conns || ep < 0) {
		fprintf(stderr, "netbench: %s\n", conns ? strerror(errno) : "out of memory");
		free(conns);
		return 1;
	}
	while (done < count && !stop && now_ns() < deadline) {
		int n;

		while (next < count && busy < IDLE_PARALLEL) {
			int rc = idle_start(ep, t, &conns[next++]);
			if (rc < 0) {
				first_err = first_err ? first_err : -rc;
				done++;
			} else {
				busy++;
			}
		}
		n = epoll_wait(ep, events, MAX_EVENTS, 100);
		for (i = 0; i < n; i++)
			if (idle_step(ep, events[i].data.ptr, &first_err)) {
				busy--;
				done++;
			}
	}
	for (i = 0; i < count; i++) {
		if (conns[i].state == IDLE_OPEN) {
			opened++;
		} else if (conns[i].fd >= 0) {
			close(conns[i].fd);
			conns[i].fd = -1;
		}
	}
	printf("idle_conns=%d errors=%d open_seconds=%.3f\n", opened, count - opened,
	       (double)(now_ns() - start) / (double)NS);
	fflush(stdout);
	if (opened < count)
		fprintf(stderr, "netbench: %d of %d idle connections failed, first: %s\n",
			count - opened, count, first_err ? strerror(first_err) : "timed out");
	hold(seconds);
	for (i = 0; i < count; i++)
		if (conns[i].fd >= 0)
			close(conns[i].fd);
	close(ep);
	free(conns);
	return opened == count ? 0 : 1;
}

/* ---- dns ---- */

/* A DNS query for the A record of name with the given id into buf (DNS_QUERY_MAX bytes).
 * Returns its length, or -EINVAL for a name that is not a host name of at most 253 bytes. */
static int dns_build(unsigned char *buf, const char *name, uint16_t id)
{
	size_t len = DNS_HEADER, name_len = strlen(name);
	const char *label = name;

	if (name_len == 0 || name_len > 253)
		return -EINVAL;
	memset(buf, 0, DNS_HEADER);
	buf[0] = (unsigned char)(id >> 8);
	buf[1] = (unsigned char)id;
	buf[2] = 0x01; /* RD */
	buf[5] = 1;    /* QDCOUNT */
	while (*label) {
		const char *dot = strchr(label, '.');
		size_t n = dot ? (size_t)(dot - label) : strlen(label);
		if (n == 0 || n > 63)
			return -EINVAL;
		buf[len++] = (unsigned char)n;
		memcpy(buf + len, label, n);
		len += n;
		label += n + (dot ? 1 : 0);
	}
	buf[len++] = 0;
	buf[len++] = 0;
	buf[len++] = 1; /* QTYPE A */
	buf[len++] = 0;
	buf[len++] = 1; /* QCLASS IN */
	return (int)len;
}

struct dns_slot {
	int64_t sent_at; /* 0: free */
	uint16_t id;
};

/* Reads every answer waiting on fd. */
static void dns_collect(int fd, struct dns_slot *slots, int64_t until, struct hist *h,
			uint64_t *answered, uint64_t *errors, int *busy)
{
	unsigned char buf[DNS_QUERY_MAX];

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
		int64_t now = now_ns();
		struct dns_slot *s;
		uint16_t id;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				++*errors; /* ICMP unreachable, reported on the next call */
			return;
		}
		if (n < DNS_HEADER || !(buf[2] & 0x80))
			continue;
		id = (uint16_t)(buf[0] << 8 | buf[1]);
		s = &slots[id & (MAX_INFLIGHT - 1)];
		if (!s->sent_at || s->id != id)
			continue; /* an answer to a query already counted lost */
		if (now <= until) {
			if ((buf[3] & 0x0f) == 0 && (buf[6] | buf[7]))
				++*answered;
			else
				++*errors;
			hist_add(h, now - s->sent_at);
		}
		s->sent_at = 0;
		--*busy;
	}
}

static int dns_main(const struct target *t, int seconds, int inflight, const char *name)
{
	struct dns_slot *slots = calloc(MAX_INFLIGHT, sizeof *slots);
	struct hist *h = calloc(1, sizeof *h);
	unsigned char query[DNS_QUERY_MAX];
	uint64_t answered = 0, lost = 0, errors = 0;
	int64_t start = now_ns(), until = start + (int64_t)seconds * NS, last_sweep = start;
	int fd = -1, busy = 0, rc = 1, len;
	unsigned gen = 0;

	if (!slots || !h) {
		fprintf(stderr, "netbench: out of memory\n");
		goto out;
	}
	len = dns_build(query, name, 0);
	if (len < 0) {
		fprintf(stderr, "netbench: '%s' is not a host name\n", name);
		goto out;
	}
	fd = socket(t->sa.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (const struct sockaddr *)&t->sa, t->len) < 0) {
		fprintf(stderr, "netbench: udp socket: %s\n", strerror(errno));
		goto out;
	}
	for (;;) {
		int64_t now = now_ns();
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (now >= until && (busy == 0 || now >= until + (int64_t)DNS_TIMEOUT_MS * 1000000))
			break;
		for (int i = 0; now < until && busy < inflight && i < inflight; i++) {
			struct dns_slot *s = &slots[i];
			if (s->sent_at)
				continue;
			s->id = (uint16_t)((gen++ % (65536 / MAX_INFLIGHT)) * MAX_INFLIGHT +
					   (unsigned)i);
			query[0] = (unsigned char)(s->id >> 8);
			query[1] = (unsigned char)s->id;
			if (send(fd, query, (size_t)len, 0) != len) {
				if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
					errors++;
				break;
			}
			s->sent_at = now_ns();
			busy++;
		}
		if (poll(&p, 1, 10) > 0)
			dns_collect(fd, slots, until, h, &answered, &errors, &busy);
		now = now_ns();
		if (now - last_sweep >= 10 * 1000000) {
			for (int i = 0; i < inflight; i++)
				if (slots[i].sent_at &&
				    now - slots[i].sent_at > (int64_t)DNS_TIMEOUT_MS * 1000000) {
					slots[i].sent_at = 0;
					busy--;
					lost++;
				}
			last_sweep = now;
		}
	}
	printf("dns_queries_per_s=%.0f answered=%" PRIu64 " lost=%" PRIu64 " errors=%" PRIu64
	       " inflight=%d p50_us=%.1f p99_us=%.1f\n", (double)answered / seconds, answered,
	       lost, errors, inflight, hist_quantile_us(h, 0.50), hist_quantile_us(h, 0.99));
	if (lost || errors)
		fprintf(stderr, "netbench: %" PRIu64 " queries lost, %" PRIu64 " failed\n", lost,
			errors);
	rc = answered > 0 ? 0 : 1;
out:
	if (fd >= 0)
		close(fd);
	free(slots);
	free(h);
	return rc;
}

/* ---- Server side ---- */

enum conn_state {
	CONN_FREE = 0,
	CONN_FIRST,    /* nothing read yet */
	CONN_REQUEST,  /* reading the rest of a 100-byte request */
	CONN_SINK,     /* discarding a bulk stream until EOF */
	CONN_ANSWER,   /* writing the answer, then closing */
	CONN_IDLE,     /* an idle client's: kept, without a timeout, until its EOF */
};

struct conn {
	int fd;
	enum conn_state state;
	uint64_t received;
	size_t request_got;
	const unsigned char *out;
	size_t out_len;
	size_t out_sent;
	unsigned char count[COUNT_SIZE];
	int64_t last_active;
};

static struct conn conns[MAX_CONNS];
static int free_slots[MAX_CONNS];
static int n_free;
static unsigned char sink[SINK_SIZE];
static unsigned char answer_bytes[ANSWER_SIZE];

static void conn_close(struct conn *c)
{
	close(c->fd);
	c->fd = -1;
	c->state = CONN_FREE;
	free_slots[n_free++] = (int)(c - conns);
}

/* Writes what is left of c's answer; closes c when all is written or on an error. */
static void conn_write(int ep, struct conn *c)
{
	while (c->out_sent < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent,
				 MSG_NOSIGNAL);
		if (n > 0) {
			c->out_sent += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct epoll_event ev = { .events = EPOLLOUT };
			ev.data.u32 = (uint32_t)(c - conns);
			if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
				return;
		}
		break;
	}
	conn_close(c);
}

static void conn_answer(int ep, struct conn *c, const unsigned char *out, size_t len)
{
	c->state = CONN_ANSWER;
	c->out = out;
	c->out_len = len;
	c->out_sent = 0;
	conn_write(ep, c);
}

/* One read on c (level-triggered: a busy stream gets one read per wake, beside the others). */
static void conn_read(int ep, struct conn *c)
{
	size_t want = c->state == CONN_REQUEST ? REQUEST_SIZE - c->request_got : sizeof sink;
	ssize_t n = recv(c->fd, sink, want, 0);

	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			conn_close(c);
		return;
	}
	if (n == 0) {
		if (c->state != CONN_SINK) {
			conn_close(c);
			return;
		}
		for (int i = 0; i < COUNT_SIZE; i++)
			c->count[i] = (unsigned char)(c->received >> (8 * (COUNT_SIZE - 1 - i)));
		conn_answer(ep, c, c->count, sizeof c->count);
		return;
	}
	if (c->state == CONN_FIRST) {
		if (sink[0] == 'B') {
			c->state = CONN_SINK;
		} else if (sink[0] == 'R' && n <= REQUEST_SIZE) {
			c->state = CONN_REQUEST;
		} else if (sink[0] == 'I' && n == 1) {
			/* A fresh socket's buffer always takes one byte. */
			if (send(c->fd, "i", 1, MSG_NOSIGNAL) != 1)
				conn_close(c);
			else
				c->state = CONN_IDLE;
			return;
		} else {
			conn_close(c);
			return;
		}
	}
	if (c->state == CONN_IDLE)
		return;
	if (c->state == CONN_SINK) {
		c->received += (uint64_t)n;
		return;
	}
	c->request_got += (size_t)n;
	if (c->request_got == REQUEST_SIZE)
		conn_answer(ep, c, answer_bytes, sizeof answer_bytes);
}

static void accept_some(int ep, int lfd, int64_t now)
{
	for (int i = 0; i < ACCEPTS_PER_WAKE; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct epoll_event ev = { .events = EPOLLIN };
		struct conn *c;

		if (fd < 0)
			return;
		if (n_free == 0) {
			close(fd);
			continue;
		}
		c = &conns[free_slots[--n_free]];
		*c = (struct conn){ .fd = fd, .state = CONN_FIRST, .last_active = now };
		ev.data.u32 = (uint32_t)(c - conns);
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
			conn_close(c);
	}
}

static void close_idle(int64_t now)
{
	for (int i = 0; i < MAX_CONNS; i++)
		if (conns[i].state != CONN_FREE && conns[i].state != CONN_IDLE &&
		    now - conns[i].last_active > IDLE_TIMEOUT_S * NS)
			conn_close(&conns[i]);
}

/* A listening socket on every address: [::] accepting IPv4 too, or 0.0.0.0 without IPv6.
 * Returns the descriptor or -1 (reason on stderr). */
static int listen_any(uint16_t port)
{
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6, .sin6_port = htons(port),
				    .sin6_addr = IN6ADDR_ANY_INIT };
	struct sockaddr_in in4 = { .sin_family = AF_INET, .sin_port = htons(port),
				   .sin_addr.s_addr = htonl(INADDR_ANY) };
	int one = 1, zero = 0;
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd >= 0) {
		if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) < 0 ||
		    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
		    bind(fd, (struct sockaddr *)&in6, sizeof in6) < 0)
			goto fail;
	} else {
		fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
		    bind(fd, (struct sockaddr *)&in4, sizeof in4) < 0)
			goto fail;
	}
	if (listen(fd, 4096) < 0)
		goto fail;
	return fd;
fail:
	fprintf(stderr, "netbench: cannot listen on port %u: %s\n", port, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

static int serve_main(uint16_t port)
{
	static struct epoll_event events[MAX_EVENTS];
	struct epoll_event lev = { .events = EPOLLIN, .data.u32 = MAX_CONNS };
	int64_t last_sweep = now_ns();
	int lfd, ep;

	for (int i = 0; i < MAX_CONNS; i++) {
		conns[i].fd = -1;
		free_slots[i] = MAX_CONNS - 1 - i;
	}
	n_free = MAX_CONNS;
	for (int i = 0; i < ANSWER_SIZE; i++)
		answer_bytes[i] = (unsigned char)('a' + i % 26);

	lfd = listen_any(port);
	if (lfd < 0)
		return 1;
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0) {
		fprintf(stderr, "netbench: epoll: %s\n", strerror(errno));
		return 1;
	}
	printf("netbench: serving on port %u\n", port);
	fflush(stdout);

	while (!stop) {
		int n = epoll_wait(ep, events, MAX_EVENTS, 1000);
		int64_t now = now_ns();

		if (n < 0 && errno != EINTR) {
			fprintf(stderr, "netbench: epoll_wait: %s\n", strerror(errno));
			return 1;
		}
		for (int i = 0; i < n; i++) {
			uint32_t id = events[i].data.u32;
			struct conn *c;

			if (id == MAX_CONNS) {
				accept_some(ep, lfd, now);
				continue;
			}
			c = &conns[id];
			if (c->state == CONN_FREE)
				continue;
			c->last_active = now;
			if (c->state == CONN_ANSWER)
				conn_write(ep, c);
			else
				conn_read(ep, c);
		}
		if (now - last_sweep >= NS) {
			close_idle(now);
			last_sweep = now;
		}
	}
	close(ep);
	close(lfd);
	return 0;
}

static int usage(void)
{
	fprintf(stderr,
		"usage: netbench serve PORT\n"
		"       netbench [--hold] bulk ADDR PORT SECONDS STREAMS\n"
		"       netbench [--hold] rr ADDR PORT SECONDS CONCURRENCY\n"
		"       netbench idle ADDR PORT COUNT SECONDS\n"
		"       netbench [--hold] dns ADDR PORT SECONDS INFLIGHT NAME\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct target t;
	long port, a, b;
	bool want_hold = false;
	const char *mode;
	int rc;

	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	if (argc == 3 && strcmp(argv[1], "serve") == 0) {
		if (parse_int(argv[2], 1, 65535, &port) < 0)
			return usage();
		catch_stop_signals();
		return serve_main((uint16_t)port);
	}
	if (argc > 1 && strcmp(argv[1], "--hold") == 0) {
		/* A signal during the measurement cuts the hold short, not the measurement. */
		catch_stop_signals();
		want_hold = true;
		argv++;
		argc--;
	}
	if (argc < 6)
		return usage();
	mode = argv[1];
	if (target_parse(&t, argv[2], argv[3]) < 0)
		return usage();
	if (strcmp(mode, "idle") == 0) {
		if (argc != 6 || want_hold || parse_int(argv[4], 0, MAX_IDLE, &a) < 0 ||
		    parse_int(argv[5], 1, MAX_SECONDS, &b) < 0)
			return usage();
		catch_stop_signals();
		return idle_main(&t, (int)a, (int)b);
	}
	if (parse_int(argv[4], 1, MAX_SECONDS, &a) < 0)
		return usage();
	if (strcmp(mode, "bulk") == 0 && argc == 6 &&
	    parse_int(argv[5], 1, MAX_STREAMS, &b) == 0)
		rc = bulk_main(&t, (int)a, (int)b);
	else if (strcmp(mode, "rr") == 0 && argc == 6 &&
		 parse_int(argv[5], 1, MAX_CONCURRENCY, &b) == 0)
		rc = rr_main(&t, (int)a, (int)b);
	else if (strcmp(mode, "dns") == 0 && argc == 7 &&
		 parse_int(argv[5], 1, MAX_INFLIGHT, &b) == 0)
		rc = dns_main(&t, (int)a, (int)b, argv[6]);
	else
		return usage();
	fflush(stdout);
	if (want_hold)
		hold(HOLD_MAX_S);
	return rc;
}
