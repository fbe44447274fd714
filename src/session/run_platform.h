/* run_platform.h — what `sluice run` (run.c) asks of the platform beyond the shared modules:
 * which capture backend a mode means here, and who owns a captured flow.
 *
 * Linux (run_platform_linux.c): netns or divert; owners found by attribution (sock_diag and
 * the session's descriptors). Windows (run_platform_windows.c): windivert; the capture knows
 * each flow's process from WinDivert's SOCKET layer, and the session's Job Object feeds the
 * capture the processes that belong to it.
 */
#ifndef SLUICE_SESSION_RUN_PLATFORM_H
#define SLUICE_SESSION_RUN_PLATFORM_H

#include <stddef.h>
#include <stdint.h>

#include "base/addr.h"
#include "capture/capture.h"
#include "run_options.h"

struct session;
struct run_platform;

/* The capture backend that mode means on this platform, or NULL after one line on stderr
 * saying why the mode is not available here. */
const struct capture_ops *run_platform_capture(enum run_mode mode);

/* Called once COMMAND runs as session s behind capture cap. Never fails: what cannot be set up
 * only costs the audit events their pid and exe. *out is NULL or released with
 * run_platform_free. */
void run_platform_start(struct run_platform **out, struct session *s, struct capture *cap);

/* The session process owning a captured flow: proto 6 or 17, `seen` the peer on sluice's
 * listener, dst:dport where it was going. Returns its pid and writes its executable's path
 * into exe (n bytes; "" when unknown), or 0 when no session process is known to own it. */
int64_t run_platform_peer_process(struct run_platform *p, struct capture *cap, int proto,
				  const struct capture_endpoint *seen, const struct addr *dst,
				  uint16_t dport, char *exe, size_t n);

/* The resolvers this machine is configured with (Linux: sluice's /etc/resolv.conf; Windows:
 * the DNS servers of the network adapters), up to max, read now: the DNS proxy records only
 * their answers in the DNS map (dns_proxy_config.trusted). Returns how many; 0 when none can
 * be found (then only --dns-upstream's answers count). */
size_t run_platform_resolvers(struct addr *out, size_t max);

/* Releases what run_platform_start set up; accepts NULL. */
void run_platform_free(struct run_platform *p);

#endif
