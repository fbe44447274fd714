/* capture_windivert.h — Windows-only extras of the windivert capture backend (windivert.c).
 *
 * The backend itself is `capture_windivert` (capture.h). On Windows a packet belongs to the
 * session when its process does: the session reports its processes (session_on_process in
 * src/session/session_windows.h) and the caller forwards each report here, from the thread that
 * owns the capture.
 */
#ifndef SLUICE_CAPTURE_CAPTURE_WINDIVERT_H
#define SLUICE_CAPTURE_CAPTURE_WINDIVERT_H

#include <stdbool.h>
#include <stdint.h>

#include "capture/capture.h"

/* Adds pid to the engine's session PID set (started) or removes it with its flows (!started).
 * cap must come from capture_windivert.open. Safe while the packet thread runs. A full set
 * (ENGINE_MAX_SESSION_PIDS) is logged once per pid refused. */
void capture_windivert_process(struct capture *cap, uint32_t pid, bool started);

/* Optional: asked on the packet thread, once per connection, whether a pid not (yet) in the
 * session set belongs to the session after all (the job reports a new process asynchronously,
 * so its first connection may come first); true adds it. session_owns_process fits. fn NULL:
 * no such check. May be called at any time, and from then on fn and ctx are used; fn runs on
 * the packet thread, so ctx must stay valid until the capture is closed. */
void capture_windivert_set_owner_check(struct capture *cap,
				       bool (*fn)(void *ctx, uint32_t pid), void *ctx);

/* How long a flow's first packet waits for its process's CONNECT event before it is handled as
 * no session's (default CAPTURE_WINDIVERT_HOLD_MS). For tests; call before attach. */
#define CAPTURE_WINDIVERT_HOLD_MS 250
void capture_windivert_set_hold_ms(struct capture *cap, unsigned ms);

/* Whose DNS queries the DNS watch remembers (src/capture/windivert.c): the DNS Client
 * service's process, found at open; 0 means any process outside the session but sluice. For
 * tests (Wine has no DNS Client service); call before attach. */
void capture_windivert_set_resolver_pid(struct capture *cap, uint32_t pid);

#endif
