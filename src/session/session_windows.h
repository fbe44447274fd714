/* session_windows.h — what the Windows session (src/session/windows.c) adds to session.h.
 *
 * How session.h reads on Windows:
 *   - COMMAND: argv is UTF-8 (invalid UTF-8: session_spawn fails with -EILSEQ). A bare name
 *     (no '\', '/' or ':') is searched in PATH only, with ".exe" appended when it has no
 *     extension — not in sluice.exe's directory nor the current directory, where CreateProcess
 *     would look first: sluice runs as administrator, and either place may be writable by others.
 *     A name with a path is used as given (relative to the current directory). The command line
 *     is built by session_windows_command_line below. COMMAND inherits the environment, the
 *     current directory, the console and the three standard handles, and no other handle
 *     (PROC_THREAD_ATTRIBUTE_HANDLE_LIST): sluice's sockets never leak into the session.
 *     It runs with sluice's token restricted (CreateProcessAsUserW): Administrators deny-only,
 *     no privilege but SeChangeNotifyPrivilege, medium integrity — so an elevated sluice does
 *     not hand COMMAND the rights to open WinDivert, load drivers or touch sluice's process.
 *   - The session is a Job Object: COMMAND is created suspended, assigned to the job, then
 *     resumed, so everything it starts (with CreateProcess) is in the job from its first
 *     instruction. The job allows no breakaway: a process created with
 *     CREATE_BREAKAWAY_FROM_JOB fails to start rather than leave the session. Needs Windows 8 or
 *     later (nested jobs when sluice itself runs in one; real console handles to inherit).
 *     A thread reads the job's completion port and forwards NEW_PROCESS, EXIT_PROCESS,
 *     ABNORMAL_EXIT_PROCESS and ACTIVE_PROCESS_ZERO, plus COMMAND's exit (a wait on its
 *     handle), as 8-byte records over a connected loopback TCP pair; session_fd is the reading
 *     end, a SOCKET for WSAPoll. Processes started outside the job's reach (WMI, the Task
 *     Scheduler, services, COM servers, elevation prompts) are not part of the session.
 *   - The session ends when COMMAND exits. Whatever else of the tree still runs is then ended
 *     with TerminateJobObject and waited for (a few seconds at most), so that, as on Linux,
 *     nothing of the session is left once session_handle_readable returns 1. The job is made
 *     with JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE: if sluice dies without session_free (crash,
 *     `taskkill /F`, console closed), Windows closes its handles and so kills the whole tree.
 *   - session_pid is COMMAND's process id (there is no init process).
 *   - session_spawn's `capture` is unused and may be NULL: on Windows the capture diverts the
 *     packets of the session's processes, which it learns through session_on_process.
 *   - Thread-safety: unlike on Linux, session_spawn may be called from any thread; every other
 *     function, and the callback, runs on the thread that calls session_handle_readable.
 *
 * Ctrl-C: sluice and COMMAND share the console and its process group, so Ctrl-C and Ctrl-Break
 * reach COMMAND straight from the console, as they would without sluice. From the first
 * session_spawn on, for the rest of the process, sluice's own console handler swallows both (a
 * handler routine, not SetConsoleCtrlHandler(NULL, TRUE), whose "ignore Ctrl-C" flag COMMAND
 * would inherit), so sluice waits for COMMAND to react and then exits with its status. The
 * handler is never removed: the console notifies each process on a thread of its own, in no set
 * order, so the Ctrl-C that ended COMMAND may reach sluice only after the session was freed.
 * Closing the console, logoff and shutdown are left to the default handler: sluice exits, and
 * kill-on-close ends the tree. Windows has no kill(1), so nothing is forwarded to COMMAND the
 * way signals are on Linux.
 *
 * session_signal: SIGINT and SIGTERM end the whole tree at once with TerminateJobObject, exit
 * code 128 + signo (130, 143). This is an approximation: a Linux SIGTERM can be caught and
 * handled, this cannot, and no console event is sent (GenerateConsoleCtrlEvent can only target
 * the console's process groups, which COMMAND shares with sluice). The session then ends with
 * SESSION_KILLED, code signo, exit status 128 + signo. Other signal numbers give -EINVAL.
 *
 * Exit status: session_result's code and wait_status hold COMMAND's full 32-bit exit code
 * (reinterpreted as int: 0xC0000005 reads negative); exit_status is the 0..255 value sluice
 * exits with, from session_windows_exit_status. SESSION_EXEC_FAILED: code is CreateProcessW's
 * Windows error; exit status 127 for ERROR_FILE_NOT_FOUND and ERROR_PATH_NOT_FOUND (COMMAND not
 * found), 126 for any other error (found but not started: not a PE file, access denied,
 * elevation required, ...). 125 when sluice fails, as on Linux.
 */
#ifndef SLUICE_SESSION_SESSION_WINDOWS_H
#define SLUICE_SESSION_SESSION_WINDOWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "session/session.h"

/* Exit code of the processes sluice ends itself (the rest of the tree when COMMAND has exited,
 * or everything at session_free): 128 + 9, what a shell shows for SIGKILL. */
#define SESSION_WINDOWS_KILL_CODE 137u

/* Called once with started=true for each process that joins the session (COMMAND included)
 * and once with started=false when it leaves: when the job reports its exit, or, for those
 * still listed when the session ends, right after the end (session_result is then non-NULL).
 * Never called from session_free. */
typedef void session_process_fn(void *ctx, uint32_t pid, bool started);

/* Registers fn(ctx, ...) for the session's process set (replacing any previous callback; fn
 * NULL: none). Processes already known are reported at once as started. sluice opens a handle
 * to each process when the job's report is read, and checks with IsProcessInJob that the pid
 * was not reused meanwhile; holding the handle keeps the pid from being recycled while it is
 * reported. A process whose pid no longer exists when the report is read is not reported; one
 * sluice may not open (access denied) is reported on the job's word, without that protection. */
void session_on_process(struct session *s, session_process_fn *fn, void *ctx);

/* Whether pid is a live process of the session's job right now (OpenProcess + IsProcessInJob),
 * for a packet whose pid the callback has not reported yet. Safe from any thread while the
 * session exists. False for an exited process or an unknown pid. */
bool session_owns_process(const struct session *s, uint32_t pid);

/* Builds the CreateProcessW command line from which both the MSVCRT startup code and
 * CommandLineToArgvW give back exactly argv (UTF-8, NULL-terminated, at least argv[0]).
 * argv[0] is quoted only if it is empty or holds a space or tab, as its parsing knows no
 * escapes; other arguments are quoted when empty or holding a space, tab, newline, vertical tab
 * or '"', and inside quotes '"' becomes \" and backslashes are doubled only before a '"' or the
 * closing quote. Programs that parse their command line otherwise (cmd.exe and the .bat/.cmd
 * scripts it runs among them) may read the arguments differently. Returns 0 and *out (UTF-16,
 * NUL-terminated, release with free), -EINVAL for an empty argv or a '"' in argv[0], -EILSEQ for
 * invalid UTF-8, -E2BIG beyond the 32767 characters CreateProcessW accepts, -ENOMEM. */
int session_windows_command_line(wchar_t **out, char *const argv[]);

/* The 0..255 status sluice exits with for a Windows exit code: 0..255 as they are; 0xC000013A
 * (STATUS_CONTROL_C_EXIT, how a console program ends on Ctrl-C) gives 130 = 128 + SIGINT, as a
 * shell shows for a program interrupted by Ctrl-C; any other code its low 8 bits, or 1 when
 * those are 0, so that a failure never reads as success (Wine maps codes the same way). */
int session_windows_exit_status(uint32_t code);

#endif
