/* test_relay.c — the TCP relay on loopback: bytes both ways, half-close, denial, dial failure.
 *
 * The relay serves a listener on 127.0.0.1; its original_dst hook names a test server on
 * 127.0.0.1 (a thread with blocking sockets) as the destination. A client thread plays the
 * session's process while the main thread runs the event loop. Loopback only.
 */
#include "check.h"
#include "testsock.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

#include "audit/audit.h"
#include "base/loop.h"
#include "base/net.h"
#include "policy/policy.h"
#include "proxy/relay.h"

/* The server's script for one connection. */
enum server_kind {
	SERVER_ECHO,         /* echo everything until EOF, then close */
	SERVER_GREET_FIRST,  /* send a greeting, shut down writing, then read until EOF */
};

struct world {
	loop_sock listen_fd;     /* the relay's listener ("capture") */
	uint16_t listen_port;
	loop_sock server_fd;     /* the destination */
	uint16_t server_port;
	uint16_t origin_port;    /* what original_dst reports (server_port, or a closed port) */
	bool origin_fails;
	enum server_kind kind;
	uint64_t server_received;
	atomic_int client_done;
	const char *dns_name; /* what the session's DNS answers say the destination is, or NULL */
};

static int write_all(loop_sock fd, const uint8_t *p, size_t n) /* for the server */
{
	while (n > 0) {
		long w = testsock_write(fd, p, n);
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void *server_main(void *arg)
{
	struct world *w = arg;
	loop_sock fd = testsock_accept(w->server_fd);
	if (fd < 0)
		return NULL;
	uint8_t buf[65536];
	if (w->kind == SERVER_GREET_FIRST) {
		write_all(fd, (const uint8_t *)"hello\n", 6);
		testsock_shutdown_write(fd);
	}
	for (;;) {
		long n = testsock_read(fd, buf, sizeof buf);
		if (n <= 0)
			break;
		w->server_received += (uint64_t)n;
		if (w->kind == SERVER_ECHO && write_all(fd, buf, (size_t)n) < 0)
			break;
	}
	testsock_close(fd);
	return NULL;
}

static int hook_original_dst(void *ctx, loop_sock s, struct addr *dst, uint16_t *port)
{
	struct world *w = ctx;
	(void)s;
	if (w->origin_fails)
		return -ENOENT;
	const uint8_t lo[4] = {127, 0, 0, 1};
	addr_from_bytes(dst, ADDR_V4, lo);
	*port = w->origin_port;
	return 0;
}

static size_t hook_dns_names(void *ctx, const struct addr *dst, const char **names, size_t max)
{
	struct world *w = ctx;
	(void)dst;
	if (!w->dns_name || max == 0)
		return 0;
	names[0] = w->dns_name;
	return 1;
}

static int64_t hook_wall_ms(void *ctx)
{
	(void)ctx;
	return 1764044542123; /* fixed, so events are comparable */
}

/* Runs the loop until the client thread says it is done (bounded by ~20 s of iterations). */
static void run_until_done(struct loop *loop, struct world *w)
{
	for (int i = 0; i < 20000 && !atomic_load(&w->client_done); i++)
		loop_run_once(loop, 1);
	for (int i = 0; i < 50; i++) /* let close paths finish */
		loop_run_once(loop, 1);
}

struct client_job {
	struct world *w;
	loop_sock fd;
	size_t send_bytes;
	uint8_t *sent;
	uint8_t *received;
	size_t received_len;
	int write_errno; /* errno of a failed write, 0 if all was written */
	int read_errno;  /* errno of the read that ended the stream, 0 for EOF */
	bool connected;
	bool wait_first_byte;    /* speak only after the server has (SSH-like protocols) */
	atomic_size_t received_atomic;
};

/* Writes everything, then half-closes: runs beside the reader so that an echo cannot
 * deadlock on full buffers. */
static void *client_writer(void *arg)
{
	struct client_job *j = arg;
	const uint8_t *p = j->sent;
	size_t n = j->send_bytes;
	for (int i = 0; j->wait_first_byte && i < 10000 && !atomic_load(&j->received_atomic); i++)
		testsock_sleep_ms(1);
	while (n > 0) {
		long w = testsock_write(j->fd, p, n);
		if (w <= 0) {
			j->write_errno = (int)-w;
			break;
		}
		p += w;
		n -= (size_t)w;
	}
	testsock_shutdown_write(j->fd);
	return NULL;
}

static void *client_main(void *arg)
{
	struct client_job *j = arg;
	j->fd = testsock_connect(j->w->listen_port, 10);
	if (j->fd >= 0) {
		pthread_t writer;
		j->connected = true;
		pthread_create(&writer, NULL, client_writer, j);
		for (;;) {
			long n = testsock_read(j->fd, j->received + j->received_len,
					       j->send_bytes + 64 - j->received_len);
			if (n < 0)
				j->read_errno = (int)-n;
			if (n <= 0)
				break;
			j->received_len += (size_t)n;
			atomic_store(&j->received_atomic, j->received_len);
		}
		pthread_join(writer, NULL);
		testsock_close(j->fd);
	}
	atomic_store(&j->w->client_done, 1);
	return NULL;
}

struct relay_case {
	const char *name;
	const char *policy;
	enum server_kind kind;
	bool close_server;   /* destination port closed: the dial is refused */
	bool origin_fails;
	size_t send_bytes;
	const char *opening;  /* the client's first bytes (then filler up to send_bytes) */
	const char *dns_name; /* the name the session's DNS answers gave the destination */
	bool wait_first_byte;
	/* expectations */
	bool expect_data;    /* the reply arrives in full */
	bool expect_reset;   /* the client's read or write fails with a reset */
	uint64_t allowed, denied, dial_failed, no_origin, guarded;
	const char *event_part; /* a substring of the audit trail */
};

static const struct relay_case cases[] = {
	{.name = "echo 3 MiB with half-close", .policy = "allow cidr 127.0.0.0/8\n",
	 .kind = SERVER_ECHO, .send_bytes = 3 << 20, .expect_data = true, .allowed = 1,
	 .event_part = "\"event\":\"close\""},
	{.name = "greeting, then client data after the server's FIN",
	 .policy = "allow cidr 127.0.0.1 port 1-65535\n", .kind = SERVER_GREET_FIRST,
	 .send_bytes = 100000,
	 .allowed = 1, .event_part = "\"bytes_out\":100000,\"bytes_in\":6"},
	{.name = "denied by rule", .policy = "deny cidr 127.0.0.1\nallow port 1-65535\n",
	 .kind = SERVER_ECHO, .send_bytes = 10, .expect_reset = true, .denied = 1,
	 .event_part = "\"decision\":\"deny\",\"rule\":\"relay.policy:1\""},
	{.name = "denied by default", .policy = "", .kind = SERVER_ECHO, .send_bytes = 10,
	 .expect_reset = true, .denied = 1, .event_part = "\"rule\":\"default\""},
	{.name = "dial refused", .policy = "allow cidr 127.0.0.0/8\n", .kind = SERVER_ECHO,
	 .close_server = true, .send_bytes = 10, .expect_reset = true, .allowed = 1,
	 .dial_failed = 1, .event_part = "\"error\":\"Connection refused\""},
	{.name = "no original destination", .policy = "allow cidr 127.0.0.0/8\n",
	 .kind = SERVER_ECHO, .origin_fails = true, .send_bytes = 10, .expect_reset = true,
	 .no_origin = 1},
	{.name = "HTTP Host names an allowed domain",
	 .policy = "allow domain a.test\nallow cidr 127.0.0.0/8\n",
	 .kind = SERVER_ECHO, .send_bytes = 4000,
	 .opening = "GET / HTTP/1.1\r\nHost: A.test:8080\r\n\r\n", .expect_data = true,
	 .allowed = 1, .event_part = "\"domain\":\"a.test\",\"domain_src\":\"host\""},
	{.name = "HTTP Host names a denied domain, the address is allowed",
	 .policy = "deny domain b.test\nallow cidr 127.0.0.0/8\n", .kind = SERVER_ECHO,
	 .send_bytes = 100, .opening = "GET / HTTP/1.1\r\nHost: b.test\r\n\r\n",
	 .expect_reset = true, .denied = 1,
	 .event_part = "\"domain\":\"b.test\",\"domain_src\":\"host\",\"decision\":\"deny\""},
	{.name = "server speaks first: decided without a name after the wait",
	 .policy = "allow domain a.test\nallow cidr 127.0.0.0/8\n", .kind = SERVER_GREET_FIRST,
	 .send_bytes = 1000, .wait_first_byte = true, .allowed = 1,
	 .event_part = "\"decision\":\"allow\",\"rule\":\"relay.policy:2\""},
	/* A name the client sends can deny on its own but never allow on its own. The policy
	 * lets the guard pass loopback (the cidr rule) but not the connection without a name. */
	{.name = "Host of an allowed name the session did not resolve: decided without it",
	 .policy = "allow domain a.test\ndeny port 1-65535\nallow cidr 127.0.0.0/8\n",
	 .kind = SERVER_ECHO, .send_bytes = 100,
	 .opening = "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", .expect_reset = true, .denied = 1,
	 .event_part = "\"domain\":\"a.test\",\"domain_src\":\"host\",\"decision\":\"deny\","
		       "\"rule\":\"relay.policy:2\""},
	{.name = "Host of an allowed name the session resolved to this address: allowed",
	 .policy = "allow domain a.test\ndeny port 1-65535\nallow cidr 127.0.0.0/8\n",
	 .kind = SERVER_ECHO, .send_bytes = 4000, .dns_name = "a.test",
	 .opening = "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", .expect_data = true, .allowed = 1,
	 .event_part = "\"domain\":\"a.test\",\"domain_src\":\"dns\",\"decision\":\"allow\","
		       "\"rule\":\"relay.policy:1\""},
	{.name = "Host of an unlisted name on an address resolved for an allowed one: denied",
	 .policy = "allow domain a.test\ndeny port 1-65535\nallow cidr 127.0.0.0/8\n",
	 .kind = SERVER_ECHO, .send_bytes = 100, .dns_name = "a.test",
	 .opening = "GET / HTTP/1.1\r\nHost: d.test\r\n\r\n", .expect_reset = true, .denied = 1,
	 .event_part = "\"domain\":\"d.test\",\"domain_src\":\"host\",\"decision\":\"deny\","
		       "\"rule\":\"relay.policy:2\""},
	{.name = "Host of a denied name, a cidr rule before allows the address: denied",
	 .policy = "allow cidr 127.0.0.0/8\ndeny domain b.test\n", .kind = SERVER_ECHO,
	 .send_bytes = 100, .opening = "GET / HTTP/1.1\r\nHost: b.test\r\n\r\n",
	 .expect_reset = true, .denied = 1,
	 .event_part = "\"domain\":\"b.test\",\"domain_src\":\"host\",\"decision\":\"deny\","
		       "\"rule\":\"relay.policy:2\""},
	{.name = "guard: a name does not open loopback", .policy = "allow domain a.test\n",
	 .kind = SERVER_ECHO, .send_bytes = 100,
	 .opening = "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
	 .expect_reset = true, .denied = 1, .guarded = 1,
	 .event_part = "\"domain\":\"a.test\",\"domain_src\":\"host\",\"decision\":\"deny\","
		       "\"rule\":\"guard:loopback\""},
	{.name = "guard: default allow does not open loopback", .policy = "default allow\n",
	 .kind = SERVER_ECHO, .send_bytes = 10, .expect_reset = true, .denied = 1, .guarded = 1,
	 .event_part = "\"decision\":\"deny\",\"rule\":\"guard:loopback\""},
	{.name = "guard: a cidr rule for another port does not open it",
	 .policy = "allow cidr 127.0.0.0/8 port 1\nallow port 1-65535\n", .kind = SERVER_ECHO,
	 .send_bytes = 10, .expect_reset = true, .denied = 1, .guarded = 1,
	 .event_part = "\"rule\":\"guard:loopback\""},
};

static void run_case(const struct relay_case *rc)
{
	struct world w = {.kind = rc->kind, .origin_fails = rc->origin_fails,
			  .dns_name = rc->dns_name};
	struct policy *p = NULL;
	struct loop *loop = NULL;
	struct relay *relay = NULL;
	struct audit *audit = NULL;
	FILE *trail = tmpfile();
	pthread_t server, client;
	bool server_started = false;

	CHECK_EQ(policy_parse(&p, "relay.policy", rc->policy, strlen(rc->policy), NULL), 0);
	CHECK_EQ(loop_new(&loop, 0), 0);
	CHECK_EQ(audit_open_stream(&audit, trail, "test"), 0);
	w.listen_fd = testsock_listen(&w.listen_port);
	w.server_fd = testsock_listen(&w.server_port);
	CHECK(w.listen_fd >= 0 && w.server_fd >= 0);
	w.origin_port = w.server_port;
	if (rc->close_server) {
		testsock_close(w.server_fd);
		w.server_fd = -1;
	}

	struct relay_config cfg = {
		.loop = loop,
		.policy = p,
		.audit = audit,
		.quiet = true,
		.peek_timeout_ms = 250, /* short, yet long enough for a client thread under Wine */
		.hooks = {.ctx = &w, .original_dst = hook_original_dst, .wall_ms = hook_wall_ms,
			  .dns_names = hook_dns_names},
	};
	CHECK_EQ(relay_new(&relay, &cfg), 0);
	/* Two listeners, as a session has (IPv4 and IPv6); the client uses the second. */
	uint16_t spare_port;
	loop_sock spare_fd = testsock_listen(&spare_port);
	CHECK_EQ(relay_listen(relay, spare_fd), 0);
	CHECK_EQ(relay_listen(relay, w.listen_fd), 0);

	struct client_job job = {.w = &w, .send_bytes = rc->send_bytes};
	job.sent = malloc(rc->send_bytes);
	job.received = malloc(rc->send_bytes + 64);
	for (size_t i = 0; i < rc->send_bytes; i++)
		job.sent[i] = (uint8_t)(i * 7 + (i >> 11));
	if (rc->opening)
		memcpy(job.sent, rc->opening, strlen(rc->opening));
	job.wait_first_byte = rc->wait_first_byte;
	if (w.server_fd >= 0) {
		pthread_create(&server, NULL, server_main, &w);
		server_started = true;
	}
	pthread_create(&client, NULL, client_main, &job);
	run_until_done(loop, &w);
	pthread_join(client, NULL);

	struct relay_stats st;
	relay_get_stats(relay, &st);
	CHECK(job.connected);
	CHECK_EQ(st.allowed, rc->allowed);
	CHECK_EQ(st.denied, rc->denied);
	CHECK_EQ(st.dial_failed, rc->dial_failed);
	CHECK_EQ(st.no_origin, rc->no_origin);
	CHECK_EQ(st.guarded, rc->guarded);
	CHECK_EQ(st.active, 0);
	if (rc->expect_data) {
		CHECK_EQ(job.received_len, rc->send_bytes);
		CHECK(job.received_len == rc->send_bytes &&
		      memcmp(job.received, job.sent, rc->send_bytes) == 0);
		CHECK_EQ(st.bytes_out, rc->send_bytes);
		CHECK_EQ(st.bytes_in, rc->send_bytes);
	}
	if (rc->kind == SERVER_GREET_FIRST && !rc->expect_reset) {
		CHECK_EQ(job.received_len, 6);
		CHECK(memcmp(job.received, "hello\n", 6) == 0);
		CHECK_EQ(w.server_received, rc->send_bytes);
	}
	if (rc->expect_reset) {
		/* The reset reaches whichever call comes first. */
		CHECK_EQ(job.received_len, 0);
		CHECK(job.read_errno == ECONNRESET || job.write_errno == ECONNRESET ||
		      job.write_errno == EPIPE);
	} else {
		CHECK_EQ(job.read_errno, 0);
		CHECK_EQ(job.write_errno, 0);
	}

	relay_free(relay);
	audit_close(audit);
	if (rc->event_part) {
		char line[4096], all[16384] = "";
		rewind(trail);
		while (fgets(line, sizeof line, trail) && strlen(all) + strlen(line) < sizeof all)
			strcat(all, line);
		if (!strstr(all, rc->event_part))
			check_fail(__FILE__, __LINE__, "trail lacks %s:\n%s", rc->event_part, all);
	}
	{
		/* One connection: exactly one connect event, and one close event if relayed. */
		char line[4096];
		int connects = 0, closes = 0;
		rewind(trail);
		while (fgets(line, sizeof line, trail)) {
			connects += strstr(line, "\"event\":\"connect\"") != NULL;
			closes += strstr(line, "\"event\":\"close\"") != NULL;
		}
		CHECK_EQ(connects, rc->no_origin ? 0 : 1);
		CHECK_EQ(closes, rc->expect_data || rc->kind == SERVER_GREET_FIRST ? 1 : 0);
	}
	fclose(trail);
	if (server_started) {
		testsock_wake_accept(w.server_fd, w.server_port);
		pthread_join(server, NULL);
	}
	if (w.server_fd >= 0)
		testsock_close(w.server_fd);
	testsock_close(w.listen_fd);
	testsock_close(spare_fd);
	free(job.sent);
	free(job.received);
	loop_free(loop);
	policy_free(p);
}

static void test_cases(void)
{
	testsock_ignore_sigpipe(); /* as sluice does: a reset peer is an error code, not a signal */
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		check_case("%s", cases[i].name);
		run_case(&cases[i]);
	}
}

static const struct check_test tests[] = {
	{"cases", test_cases},
};

CHECK_MAIN(tests)
