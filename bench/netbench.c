/* netbench.c — the load tool of scripts/bench_modes.sh: a bulk sink and request/response server,
 * and the clients that measure bulk throughput and connections per second through it.
 *
 *   netbench serve PORT                        until SIGINT or SIGTERM, on [::] and 0.0.0.0
 *   netbench bulk ADDR PORT SECONDS STREAMS    prints bulk_bytes_per_s=N ...
 *   netbench rr ADDR PORT SECONDS CONCURRENCY  prints conns_per_s=N errors=N ...
 *
 * One exchange per connection, chosen by its first byte:
 *   'B' then any bytes until the client's EOF: the server answers the number of bytes it
 *       received (the 'B' included) as 8 bytes, most significant first, and closes.
 *   'R' and 99 more bytes: the server answers 1024 bytes and closes.
 * Every wait is bounded (STEP_TIMEOUT_MS without progress, DRAIN_TIMEOUT_MS for a bulk count),
 * and so is the server (MAX_CONNS connections, each closed after IDLE_TIMEOUT_S of silence).
 * Clients are threads with non-blocking sockets and poll(); the server is one epoll loop.
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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
	REQUEST_SIZE = 100,
	ANSWER_SIZE = 1024,
	COUNT_SIZE = 8,
	CHUNK_SIZE = 128 * 1024,    /* one send() of a bulk stream */
	SINK_SIZE = 256 * 1024,     /* one read() of the server */
	MAX_CONNS = 4096,           /* connections the server holds at once; more are shed */
	MAX_EVENTS = 256,
	ACCEPTS_PER_WAKE = 64,
	MAX_SECONDS = 600,
	MAX_STREAMS = 256,
	MAX_CONCURRENCY = 1024,
	STEP_TIMEOUT_MS = 5000,     /* connect, or one send/recv making no progress */
	DRAIN_TIMEOUT_MS = 30000,   /* a bulk count: it waits for every relay on the way to drain */
	IDLE_TIMEOUT_S = 10,
	THREAD_STACK = 256 * 1024,
	ERRLEN = 160,
};

static const int64_t NS = 1000000000;

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
 * Returns the number of bytes read or a negative errno. */
static ssize_t recv_to_eof(int fd, void *buf, size_t cap, int timeout_ms)
{
	unsigned char *p = buf;
	size_t got = 0;
	unsigned char extra;

	for (;;) {
		ssize_t n = got < cap ? recv(fd, p + got, cap - got, 0) : recv(fd, &extra, 1, 0);
		if (n == 0)
			return (ssize_t)got;
		if (n > 0) {
			if (got == cap)
				return -EPROTO;
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
	got = recv_to_eof(fd, count, sizeof count, DRAIN_TIMEOUT_MS);
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

/* One closed-loop rr client: one exchange after another until `until`. */
struct worker {
	pthread_t thread;
	const struct target *target;
	int64_t until;
	uint64_t done;     /* exchanges completed before until */
	uint64_t errors;
	char err[ERRLEN];  /* the first error */
};

/* One connection: connect, send the request, read the whole answer and the server's close.
 * Returns 0 or a negative errno (-EPROTO: a wrong answer); what failed goes to what. */
static int exchange(const struct target *t, const char **what)
{
	static const unsigned char request[REQUEST_SIZE] = { 'R' };
	unsigned char answer[ANSWER_SIZE];
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
		got = recv_to_eof(fd, answer, sizeof answer, STEP_TIMEOUT_MS);
		if (got < 0)
			rc = (int)got;
		else if (got != ANSWER_SIZE)
			rc = -EPROTO;
	}
	close(fd);
	return rc;
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;

	while (now_ns() < w->until) {
		const char *what;
		int rc = exchange(w->target, &what);
		if (rc == 0) {
			if (now_ns() <= w->until)
				w->done++;
			continue;
		}
		if (w->errors++ == 0)
			snprintf(w->err, sizeof w->err, "%s: %s", what, strerror(-rc));
	}
	return NULL;
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

static int rr_main(const struct target *t, int seconds, int n)
{
	struct worker *workers = calloc((size_t)n, sizeof *workers);
	uint64_t done = 0, errors = 0;
	int64_t start;
	int started, i;
	const char *first = NULL;

	if (!workers) {
		fprintf(stderr, "netbench: out of memory\n");
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
		if (!first && workers[i].err[0])
			first = workers[i].err;
	}
	printf("conns_per_s=%.0f errors=%" PRIu64 " conns=%" PRIu64 " seconds=%d concurrency=%d\n",
	       (double)done / seconds, errors, done, seconds, started);
	if (first)
		fprintf(stderr, "netbench: %" PRIu64 " failed exchanges, first: %s\n", errors,
			first);
	free(workers);
	return done > 0 && started == n ? 0 : 1;
}

/* ---- Server side ---- */

enum conn_state {
	CONN_FREE = 0,
	CONN_FIRST,    /* nothing read yet */
	CONN_REQUEST,  /* reading the rest of a 100-byte request */
	CONN_SINK,     /* discarding a bulk stream until EOF */
	CONN_ANSWER,   /* writing the answer, then closing */
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
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

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
		} else {
			conn_close(c);
			return;
		}
	}
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
		if (conns[i].state != CONN_FREE && now - conns[i].last_active > IDLE_TIMEOUT_S * NS)
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
	struct sigaction sa = { .sa_handler = on_signal };
	int64_t last_sweep = now_ns();
	int lfd, ep;

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
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
		"       netbench bulk ADDR PORT SECONDS STREAMS\n"
		"       netbench rr ADDR PORT SECONDS CONCURRENCY\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct target t;
	long port, seconds, n;
	bool bulk;

	signal(SIGPIPE, SIG_IGN);
	if (argc == 3 && strcmp(argv[1], "serve") == 0) {
		if (parse_int(argv[2], 1, 65535, &port) < 0)
			return usage();
		return serve_main((uint16_t)port);
	}
	if (argc != 6)
		return usage();
	bulk = strcmp(argv[1], "bulk") == 0;
	if (!bulk && strcmp(argv[1], "rr") != 0)
		return usage();
	if (target_parse(&t, argv[2], argv[3]) < 0 ||
	    parse_int(argv[4], 1, MAX_SECONDS, &seconds) < 0 ||
	    parse_int(argv[5], 1, bulk ? MAX_STREAMS : MAX_CONCURRENCY, &n) < 0)
		return usage();
	if (bulk)
		return bulk_main(&t, (int)seconds, (int)n);
	return rr_main(&t, (int)seconds, (int)n);
}
