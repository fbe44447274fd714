/* run_platform_linux.c — `sluice run`'s platform part on Linux (run_platform.h). */
#include "session/run_platform.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/log.h"
#include "base/resolv_conf.h"
#include "session/attribution.h"
#include "session/session.h"

struct run_platform {
	struct attribution *attribution;
};

const struct capture_ops *run_platform_capture(enum run_mode mode)
{
	switch (mode) {
	case RUN_MODE_PLATFORM_DEFAULT:
	case RUN_MODE_NETNS:
		return &capture_netns;
	case RUN_MODE_DIVERT:
		return &capture_nfqueue;
	case RUN_MODE_WINDIVERT:
		break;
	}
	log_error("run: --mode windivert needs Windows; on Linux use --mode netns or divert");
	return NULL;
}

void run_platform_start(struct run_platform **out, struct session *s, struct capture *cap)
{
	struct run_platform *p = calloc(1, sizeof *p);

	(void)cap;
	*out = p;
	if (p && attribution_new(&p->attribution, session_pid(s)) < 0)
		p->attribution = NULL; /* events then lack pid and exe */
}

int64_t run_platform_peer_process(struct run_platform *p, struct capture *cap, int proto,
				  const struct capture_endpoint *seen, const struct addr *dst,
				  uint16_t dport, char *exe, size_t n)
{
	struct capture_endpoint app;

	if (!p || !p->attribution)
		return 0;
	/* The application's own socket: in divert mode its port may differ from the peer's. */
	if (cap->ops->app_endpoint(cap, proto, seen, &app) < 0)
		app = *seen;
	struct attribution_flow flow = {
		.proto = proto,
		.local = app.addr,
		.local_port = app.port,
		.remote = *dst,
		.remote_port = dport,
	};
	return attribution_lookup(p->attribution, &flow, exe, n);
}

void run_platform_free(struct run_platform *p)
{
	if (!p)
		return;
	attribution_free(p->attribution);
	free(p);
}

size_t run_platform_resolvers(struct addr *out, size_t max)
{
	static char text[65536];
	FILE *f = fopen("/etc/resolv.conf", "re");
	size_t len, n;

	if (!f) {
		log_warn_errno(-errno, "run: cannot read /etc/resolv.conf: only --dns-upstream's "
			       "answers name addresses");
		return 0;
	}
	len = fread(text, 1, sizeof text, f);
	fclose(f);
	n = resolv_conf_nameservers(text, len, out, max);
	if (n == 0)
		log_warn("run: /etc/resolv.conf names no resolver: only --dns-upstream's answers "
			 "name addresses");
	return n;
}
