/* session_probe.c — e2e driver: COMMAND in a netns session, answered by trivial responders.
 *
 * Used by tests/e2e/test_session.sh. Each captured flow is told its original destination.
 *
 * Usage: session_probe [-v] [-w] [-m netns|divert] [-p PORT] -- COMMAND [ARG...]
 * -v: debug messages; -w: no responders, just session_wait (the blocking helper); -m: the
 * capture backend (default netns); -p: PORT as the preferred port of every listener (all but the
 * first of each protocol then fall back to a free port).
 * TCP:     writes "ORIG ADDR:PORT\n" ("DNS TCP ORIG ..." for port 53) and closes.
 * UDP:     answers each datagram with "UDP ORIG ADDR:PORT" ("DNS UDP ORIG ..." for port 53),
 *          sent from the original destination.
 * Exits with the session's exit status (125 when the probe itself fails).
 */
#define _GNU_SOURCE

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/socket.h>
#include <sys/stat.h>

#include "base/log.h"
#include "base/loop.h"
#include "capture/capture.h"
#include "session/session.h"

/* Connections or datagrams served per readiness callback, so that one busy listener cannot
 * starve the others. */
#define PROBE_BATCH 64

struct probe;

struct listener_watch {
	struct loop_io io;
	struct probe *probe;
	enum capture_kind kind;
};

struct probe {
	struct loop *loop;
	struct capture *cap;
	struct session *session;
	struct loop_io session_io;
	struct listener_watch watches[CAPTURE_KINDS][CAPTURE_FAMILIES];
};

static const char *const kind_names[CAPTURE_KINDS] = {
	[CAPTURE_TCP] = "TCP",
	[CAPTURE_DNS_TCP] = "DNS TCP",
	[CAPTURE_DNS_UDP] = "DNS UDP",
	[CAPTURE_UDP] = "UDP",
};

/* What each listener's answers start with. */
static const char *const prefixes[CAPTURE_KINDS] = {
	[CAPTURE_TCP] = "",
	[CAPTURE_DNS_TCP] = "DNS TCP ",
	[CAPTURE_DNS_UDP] = "DNS UDP ",
	[CAPTURE_UDP] = "UDP ",
};

static void on_tcp(struct loop *loop, struct loop_io *io, unsigned events)
{
	struct listener_watch *w = io->arg;
	struct capture *cap = w->probe->cap;

	(void)loop;
	(void)events;
	for (int i = 0; i < PROBE_BATCH; i++) {
		struct capture_endpoint dst;
		char text[ADDR_PORT_STRLEN], line[ADDR_PORT_STRLEN + 32];
		int fd = accept4((int)io->sock, NULL, NULL, SOCK_CLOEXEC);
		int err, len;

		if (fd < 0)
			return;
		err = cap->ops->tcp_original_dst(cap, fd, &dst);
		if (err) {
			log_errno(err, "probe: original destination");
			close(fd);
			continue;
		}
		addr_format_port(&dst.addr, dst.port, text, sizeof text);
		len = snprintf(line, sizeof line, "%sORIG %s\n", prefixes[w->kind], text);
		if (send(fd, line, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL) != len)
			log_warn_errno(errno, "probe: reply to %s", text);
		close(fd);
	}
}

static void on_udp(struct loop *loop, struct loop_io *io, unsigned events)
{
	static char buf[65535];
	struct listener_watch *w = io->arg;
	struct capture *cap = w->probe->cap;

	(void)loop;
	(void)events;
	for (int i = 0; i < PROBE_BATCH; i++) {
		struct capture_endpoint src, orig;
		char text[ADDR_PORT_STRLEN], line[ADDR_PORT_STRLEN + 32];
		int n = cap->ops->udp_recv(cap, io->sock, buf, sizeof buf, &src, &orig);
		int len, err;

		if (n == -EAGAIN)
			return;
		if (n < 0) {
			log_warn_errno(n, "probe: udp receive");
			continue;
		}
		addr_format_port(&orig.addr, orig.port, text, sizeof text);
		len = snprintf(line, sizeof line, "%sORIG %s", prefixes[w->kind], text);
		err = cap->ops->udp_send(cap, &orig, &src, line, (size_t)len);
		if (err)
			log_warn_errno(err, "probe: udp reply from %s", text);
	}
}

static void on_session(struct loop *loop, struct loop_io *io, unsigned events)
{
	struct probe *p = io->arg;
	int rc = session_handle_readable(p->session);

	(void)events;
	if (rc != 0) {
		if (rc < 0)
			log_errno(rc, "probe: session");
		loop_io_stop(loop, io);
		loop_stop(loop);
	}
}

static int watch_listeners(struct probe *p)
{
	for (int kind = 0; kind < CAPTURE_KINDS; kind++) {
		for (int family = 0; family < CAPTURE_FAMILIES; family++) {
			const struct capture_listener *l = &p->cap->listeners[kind][family];
			struct listener_watch *w = &p->watches[kind][family];
			bool tcp = kind == CAPTURE_TCP || kind == CAPTURE_DNS_TCP;
			int err;

			if (l->sock == CAPTURE_NO_SOCK)
				continue;
			w->probe = p;
			w->kind = kind;
			loop_io_init(&w->io, l->sock, tcp ? on_tcp : on_udp, w);
			err = loop_io_start(p->loop, &w->io, LOOP_READ);
			if (err)
				return err;
			log_debug("probe: %s listener on %s port %u", kind_names[kind],
				  family == CAPTURE_IPV4 ? "127.0.0.1" : "::1", (unsigned)l->port);
		}
	}
	return 0;
}

static ino_t own_netns(void)
{
	struct stat st;

	return stat("/proc/self/ns/net", &st) == 0 ? st.st_ino : 0;
}

int main(int argc, char **argv)
{
	struct probe p = { 0 };
	struct capture_config cfg = { 0 };
	int status = SESSION_STATUS_FAILED;
	bool blocking = false;
	int i = 1, err;
	ino_t netns;

	const struct capture_ops *backend = &capture_netns;

	for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (strcmp(argv[i], "-v") == 0) {
			log_set_level(LOG_LEVEL_DEBUG);
		} else if (strcmp(argv[i], "-w") == 0) {
			blocking = true;
		} else if (strcmp(argv[i], "-m") == 0 && i + 1 < argc) {
			i++;
			if (strcmp(argv[i], "divert") == 0)
				backend = &capture_nfqueue;
			else if (strcmp(argv[i], "netns") != 0)
				break;
		} else if (strcmp(argv[i], "-p") == 0 && i + 1 < argc) {
			long port = strtol(argv[++i], NULL, 10);

			if (port <= 0 || port > 65535)
				break;
			cfg.tcp_port = cfg.dns_port = cfg.udp_port = (uint16_t)port;
		} else {
			break;
		}
	}
	if (i >= argc || strcmp(argv[i], "--") != 0 || i + 1 >= argc) {
		fprintf(stderr, "usage: session_probe [-v] [-w] [-m netns|divert] [-p PORT] -- "
				"COMMAND [ARG...]\n");
		return SESSION_STATUS_FAILED;
	}
	netns = own_netns();
	err = backend->open(&p.cap, &cfg);
	if (err)
		return SESSION_STATUS_FAILED;
	if (own_netns() != netns || netns == 0) {
		log_error("probe: capture open left the process in another network namespace");
		goto out;
	}
	err = loop_new(&p.loop, 0);
	if (!err && p.cap->ops->attach)
		err = p.cap->ops->attach(p.cap, p.loop);
	if (err || (err = watch_listeners(&p))) {
		log_errno(err, "probe: event loop");
		goto out;
	}
	err = session_spawn(&p.session, argv + i + 1, p.cap);
	if (err)
		goto out;
	if (blocking) {
		err = session_wait(p.session);
		if (err)
			log_errno(err, "probe: session_wait");
		else
			status = session_result(p.session)->exit_status;
		goto out;
	}
	loop_io_init(&p.session_io, session_fd(p.session), on_session, &p);
	err = loop_io_start(p.loop, &p.session_io, LOOP_READ);
	if (err) {
		log_errno(err, "probe: watching the session");
		goto out;
	}
	err = loop_run(p.loop);
	if (err)
		log_errno(err, "probe: event loop");
	if (session_result(p.session))
		status = session_result(p.session)->exit_status;
out:
	session_free(p.session);
	if (p.cap)
		p.cap->ops->close(p.cap); /* before the loop it may watch on */
	loop_free(p.loop);
	return status;
}
