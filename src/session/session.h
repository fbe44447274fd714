/* session.h — running COMMAND as a session inside the capture's network, and ending it whole.
 *
 * Linux (src/session/linux.c): sluice forks an init process into a new PID namespace. init
 * is pid 1 there; it joins the capture's network (capture ops `join`), forks and execs
 * COMMAND (execvp semantics; cwd, environment, stdin/stdout/stderr and controlling terminal
 * inherited; COMMAND stays in sluice's process group, so a terminal's foreground group holds
 * it), reaps every process of the session, and when COMMAND exits sends its raw wait status
 * to sluice and exits. The kernel then kills every process left in the PID namespace, daemons
 * included, before init's exit is reported: when the session has ended, nothing of it is left.
 * init has PR_SET_PDEATHSIG(SIGKILL): if sluice dies (even by SIGKILL) the session dies too.
 *
 * Confinement (linux.c, docs/platforms.md). Before forking COMMAND, init gives the session a
 * mount namespace of its own with a /proc of the session's PID namespace and read-only
 * /proc/sys and /sys; sets no_new_privs; drops every capability but a short list (file
 * ownership and modes, setuid/setgid, kill, low ports, chroot, mknod, audit write, setfcap)
 * from all its sets, the bounding set included; and installs a seccomp filter refusing setns,
 * new user namespaces and terminal input injection. Every session process inherits all of it,
 * root included. session_spawn makes the calling process non-dumpable for the rest of its life.
 *
 * Signals. session_spawn blocks, in the calling thread, SIGTERM, SIGHUP, SIGQUIT, SIGINT,
 * SIGUSR1, SIGUSR2, SIGWINCH and SIGCONT, and reads them through a signalfd. Those sent to
 * sluice by a process (si_code SI_USER, SI_QUEUE or SI_TKILL: kill(1), sigqueue, tgkill) are
 * forwarded to COMMAND through init. Those the kernel generates (SI_KERNEL: Ctrl-C, Ctrl-\,
 * terminal resize and hangup, which reach the whole foreground process group, COMMAND
 * included) are not forwarded again, so the terminal behaves as without sluice. A signal
 * sent to sluice's whole process group (kill -TERM -PGID, or job control's SIGCONT on `fg`)
 * reaches COMMAND directly and once more through sluice. COMMAND starts with every signal at
 * its default disposition (SIG_IGN included, so `nohup` before sluice does not carry over) and
 * an empty signal mask. session_free restores the caller's signal mask.
 *
 * Exit status (DESIGN.md, "CLI"): COMMAND's exit code; 128+N if it died of signal N; 127 if
 * COMMAND was not found, 126 if it could not be executed (as env(1) and timeout(1) do); 125
 * when sluice or the session's init failed.
 */
#ifndef SLUICE_SESSION_SESSION_H
#define SLUICE_SESSION_SESSION_H

#include <stdbool.h>

#include "base/loop.h"
#include "capture/capture.h"

/* Exit statuses that are not COMMAND's own. */
#define SESSION_STATUS_FAILED 125
#define SESSION_STATUS_CANNOT_EXECUTE 126
#define SESSION_STATUS_NOT_FOUND 127

struct session;

enum session_end {
	SESSION_RUNNING = 0,
	SESSION_EXITED,      /* COMMAND exited: code is its exit code */
	SESSION_KILLED,      /* COMMAND died of a signal: code is the signal number */
	SESSION_EXEC_FAILED, /* COMMAND could not be started: code is execvp's errno */
	SESSION_FAILED,      /* init failed (code: errno) or was killed (code: signal number) */
};

struct session_result {
	enum session_end end;
	int code;        /* see enum session_end */
	int wait_status; /* COMMAND's raw wait status (SESSION_EXITED, SESSION_KILLED), else 0 */
	int exit_status; /* what sluice exits with: 0..255 as described above */
};

/* Starts argv (NULL-terminated, argv[0] looked up in PATH) as a session in capture's network
 * (borrowed: used only during the call; the namespace lives on with the session). Call it
 * from the main thread of a single-threaded process (PDEATHSIG follows the thread). Logs
 * what failed. Returns 0 and *out (release with session_free), or a negative errno code.
 * That COMMAND cannot be executed is not an error here: the session then ends with
 * SESSION_EXEC_FAILED. */
int session_spawn(struct session **out, char *const argv[], struct capture *capture);

/* The descriptor to watch for readability (one for everything: forwarded signals and init's
 * reports). When it is readable, call session_handle_readable. Owned by the session. */
loop_sock session_fd(const struct session *s);

/* Forwards pending signals and reads init's reports, without blocking. Returns 1 when the
 * session has ended (session_result is then available; the session's processes are all
 * gone), 0 while it runs, or a negative errno code if the session's descriptors failed. */
int session_handle_readable(struct session *s);

/* Blocks until the session ends, forwarding signals meanwhile. Returns 0 (then
 * session_result is available) or a negative errno code. */
int session_wait(struct session *s);

/* How the session ended, or NULL while it runs. Owned by the session. */
const struct session_result *session_result(const struct session *s);

/* Sends signo to COMMAND (through init). Returns 0; -ESRCH once the session has ended;
 * -EAGAIN if init is not keeping up (hundreds of signals pending); -EINVAL for a bad signo. */
int session_signal(struct session *s, int signo);

/* The pid, as sluice sees it, of the session's init (the root of its process tree). */
int session_pid(const struct session *s);

/* Ends the session if it still runs (SIGKILL to init: the kernel kills the whole tree, and
 * this waits for it), discards forwarded signals still pending, restores the signal mask
 * session_spawn changed, and frees everything. Accepts NULL. */
void session_free(struct session *s);

#endif
