/* windows.c — the Windows session: COMMAND's process tree in a Job Object (session_windows.h). */
#define WIN32_LEAN_AND_MEAN
#include <winsock2.h>
#include <windows.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "session/session.h"
#include "session/session_windows.h"

/* CreateProcessW's limit on lpCommandLine, its terminating NUL included. */
#define COMMAND_LINE_MAX 32767
/* How long ending the tree may take before sluice gives up waiting (it goes on regardless). */
#define TREE_WAIT_MS 5000
/* Exit code of a console program ended by Ctrl-C or Ctrl-Break (its default handler). */
#define STATUS_CONTROL_C_EXIT_CODE 0xC000013Au

/* Completion keys on the session's port: the job's messages, and sluice's own. */
enum port_key {
	KEY_JOB = 1,
	KEY_COMMAND_ENDED, /* posted by the wait on COMMAND's handle, or when it never started */
	KEY_QUIT,          /* session_free stops the watcher thread */
};

/* One record on the loopback pair, watcher thread -> loop thread. */
enum wire_type {
	WIRE_NEW = 1,      /* pid joined the job */
	WIRE_EXIT,         /* pid exited (normally or not) */
	WIRE_EMPTY,        /* no process is left in the job */
	WIRE_COMMAND_ENDED,
	WIRE_WATCH_FAILED, /* GetQueuedCompletionStatus failed: pid holds the Windows error */
};

struct wire_msg {
	uint32_t type;
	uint32_t pid;
};

/* A process of the session that the callback was told about. */
struct tracked {
	uint32_t pid;
	HANDLE process; /* keeps the pid from being reused; NULL if it could not be opened */
};

struct session {
	HANDLE job;
	HANDLE port;
	HANDLE process; /* COMMAND; NULL if it never started */
	uint32_t pid;
	HANDLE watcher;   /* the thread reading the port */
	HANDLE exit_wait; /* RegisterWaitForSingleObject on COMMAND */
	SOCKET rd;        /* loop thread's end: session_fd */
	SOCKET wr;        /* watcher thread's end */
	bool wsa_started;
	bool job_empty;
	int signaled; /* signal whose TerminateJobObject may have ended COMMAND, or 0 */
	unsigned char inbuf[64 * sizeof(struct wire_msg)];
	size_t inlen;
	struct tracked *tracked;
	size_t ntracked, captracked;
	session_process_fn *on_process;
	void *on_process_ctx;
	char *command_name; /* argv[0], for messages */
	struct session_result result;
};

/* ---- messages and error codes ---- */

/* Windows' text for err, without the trailing period and line break. Returns buf. */
static const char *win_message(DWORD err, char *buf, size_t n)
{
	DWORD len = FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS,
				   NULL, err, 0, buf, (DWORD)n, NULL);

	while (len > 0 && (buf[len - 1] == '\r' || buf[len - 1] == '\n' || buf[len - 1] == '.'
			   || buf[len - 1] == ' '))
		len--;
	if (len == 0)
		return strncpy(buf, "unknown error", n);
	buf[len] = '\0';
	return buf;
}

static void log_win(DWORD err, const char *what)
{
	char text[256];

	log_error("session: %s: %s (Windows error %lu)", what, win_message(err, text, sizeof text),
		  (unsigned long)err);
}

/* The negative errno for a Windows or Winsock error, for return codes. */
static int neg_errno(DWORD err)
{
	switch (err) {
	case ERROR_ACCESS_DENIED:
	case WSAEACCES:
		return -EACCES;
	case ERROR_NOT_ENOUGH_MEMORY:
	case ERROR_OUTOFMEMORY:
	case WSAENOBUFS:
		return -ENOMEM;
	case ERROR_INVALID_PARAMETER:
	case WSAEINVAL:
		return -EINVAL;
	case WSAEMFILE:
	case ERROR_TOO_MANY_OPEN_FILES:
		return -EMFILE;
	case WSAECONNRESET:
		return -ECONNRESET;
	case WSAECONNABORTED:
		return -ECONNABORTED;
	default:
		return -EIO;
	}
}

/* ---- the command line ---- */

/* argv[i] as UTF-16 into *out (malloc'd). Returns 0, -EILSEQ or -ENOMEM. */
static int widen(const char *s, wchar_t **out, size_t *len)
{
	int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, NULL, 0);

	if (n <= 0)
		return -EILSEQ;
	*out = malloc((size_t)n * sizeof **out);
	if (!*out)
		return -ENOMEM;
	if (MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, *out, n) != n) {
		free(*out);
		return -EILSEQ;
	}
	*len = (size_t)n - 1;
	return 0;
}

static bool needs_quotes(const wchar_t *a, size_t n, bool first)
{
	if (n == 0)
		return true;
	for (size_t i = 0; i < n; i++) {
		if (a[i] == L' ' || a[i] == L'\t')
			return true;
		if (!first && (a[i] == L'\n' || a[i] == L'\v' || a[i] == L'"'))
			return true;
	}
	return false;
}

/* Appends argument a (n characters) to out at *pos; out has room for 2n + 3 more. */
static void append_quoted(wchar_t *out, size_t *pos, const wchar_t *a, size_t n, bool first)
{
	size_t p = *pos, backslashes = 0;

	if (!needs_quotes(a, n, first)) {
		memcpy(out + p, a, n * sizeof *a);
		*pos = p + n;
		return;
	}
	out[p++] = L'"';
	for (size_t i = 0; i < n; i++) {
		if (first) {
			out[p++] = a[i]; /* argv[0]: backslashes are literal, '"' refused earlier */
		} else if (a[i] == L'\\') {
			backslashes++;
			out[p++] = L'\\';
		} else if (a[i] == L'"') {
			for (size_t k = 0; k < backslashes + 1; k++)
				out[p++] = L'\\';
			out[p++] = L'"';
			backslashes = 0;
		} else {
			backslashes = 0;
			out[p++] = a[i];
		}
	}
	for (size_t k = 0; k < backslashes; k++)
		out[p++] = L'\\'; /* the closing quote must not be escaped */
	out[p++] = L'"';
	*pos = p;
}

int session_windows_command_line(wchar_t **out, char *const argv[])
{
	size_t argc = 0, cap = 1, pos = 0, bytes = 0;
	wchar_t *line = NULL, *arg = NULL;
	int err = 0;

	if (!argv || !argv[0])
		return -EINVAL;
	if (strchr(argv[0], '"'))
		return -EINVAL;
	for (argc = 0; argv[argc]; argc++) {
		bytes += strlen(argv[argc]) + 1;
		/* A UTF-16 unit takes at most 3 bytes of UTF-8: past this, the line is too long. */
		if (bytes > 3 * COMMAND_LINE_MAX)
			return -E2BIG;
		cap += 2 * strlen(argv[argc]) + 3; /* never more UTF-16 units than UTF-8 bytes */
	}
	line = malloc(cap * sizeof *line);
	if (!line)
		return -ENOMEM;
	for (size_t i = 0; i < argc; i++) {
		size_t len;

		err = widen(argv[i], &arg, &len);
		if (err)
			goto fail;
		if (i > 0)
			line[pos++] = L' ';
		append_quoted(line, &pos, arg, len, i == 0);
		free(arg);
		arg = NULL;
	}
	line[pos] = L'\0';
	if (pos + 1 > COMMAND_LINE_MAX) {
		err = -E2BIG;
		goto fail;
	}
	*out = line;
	return 0;
fail:
	free(line);
	return err;
}

/* ---- exit status ---- */

int session_windows_exit_status(uint32_t code)
{
	if (code <= 255)
		return (int)code;
	if (code == STATUS_CONTROL_C_EXIT_CODE)
		return 128 + SIGINT;
	return (code & 0xff) ? (int)(code & 0xff) : 1;
}

static void set_exec_failed(struct session *s, DWORD err)
{
	s->result.end = SESSION_EXEC_FAILED;
	s->result.code = (int)err;
	s->result.wait_status = 0;
	s->result.exit_status = err == ERROR_FILE_NOT_FOUND || err == ERROR_PATH_NOT_FOUND
					? SESSION_STATUS_NOT_FOUND
					: SESSION_STATUS_CANNOT_EXECUTE;
}

static void set_exited(struct session *s, DWORD code)
{
	int as_int = (int)(int32_t)code;

	s->result.code = as_int;
	s->result.wait_status = as_int;
	if (s->signaled && code == 128u + (unsigned)s->signaled) {
		s->result.end = SESSION_KILLED;
		s->result.code = s->signaled;
		s->result.exit_status = 128 + s->signaled;
		return;
	}
	s->result.end = SESSION_EXITED;
	s->result.exit_status = session_windows_exit_status(code);
	if (code > 255)
		log_info("'%s' exited with code 0x%08lX (exit status %d)", s->command_name,
			 (unsigned long)code, s->result.exit_status);
}

/* ---- the watcher thread ---- */

static bool send_msg(SOCKET sock, const struct wire_msg *msg)
{
	const char *p = (const char *)msg;
	int left = (int)sizeof *msg;

	while (left > 0) {
		int n = send(sock, p, left, 0);
		if (n <= 0)
			return false;
		p += n;
		left -= n;
	}
	return true;
}

/* Reads the port and forwards what the loop thread needs, in the port's order, until KEY_QUIT.
 * Touches only s->port and s->wr, which stay unchanged until the thread is joined. */
static DWORD WINAPI watch_job(void *arg)
{
	const struct session *s = arg;
	bool forwarding = true;

	for (;;) {
		DWORD id = 0;
		ULONG_PTR key = 0;
		OVERLAPPED *ov = NULL;
		struct wire_msg msg = { 0 };

		if (!GetQueuedCompletionStatus(s->port, &id, &key, &ov, INFINITE)) {
			msg.type = WIRE_WATCH_FAILED;
			msg.pid = GetLastError();
			if (forwarding)
				send_msg(s->wr, &msg);
			return 1;
		}
		if (key == KEY_QUIT)
			return 0;
		if (key == KEY_COMMAND_ENDED) {
			msg.type = WIRE_COMMAND_ENDED;
		} else if (key == KEY_JOB) {
			msg.pid = (uint32_t)(uintptr_t)ov;
			switch (id) {
			case JOB_OBJECT_MSG_NEW_PROCESS:
				msg.type = WIRE_NEW;
				break;
			case JOB_OBJECT_MSG_EXIT_PROCESS:
			case JOB_OBJECT_MSG_ABNORMAL_EXIT_PROCESS:
				msg.type = WIRE_EXIT;
				break;
			case JOB_OBJECT_MSG_ACTIVE_PROCESS_ZERO:
				msg.type = WIRE_EMPTY;
				msg.pid = 0;
				break;
			default:
				continue;
			}
		} else {
			continue;
		}
		/* Once the loop's end is closed (session_free), keep draining until KEY_QUIT. */
		if (forwarding && !send_msg(s->wr, &msg))
			forwarding = false;
	}
}

static void CALLBACK on_command_exit(void *ctx, BOOLEAN timed_out)
{
	struct session *s = ctx;

	(void)timed_out;
	PostQueuedCompletionStatus(s->port, 0, KEY_COMMAND_ENDED, NULL);
}

/* ---- the process set ---- */

static struct tracked *find_tracked(struct session *s, uint32_t pid)
{
	for (size_t i = 0; i < s->ntracked; i++)
		if (s->tracked[i].pid == pid)
			return &s->tracked[i];
	return NULL;
}

static void report(struct session *s, uint32_t pid, bool started)
{
	if (s->on_process)
		s->on_process(s->on_process_ctx, pid, started);
}

/* A handle to pid for waiting and IsProcessInJob, or NULL (GetLastError tells why). Wine's
 * IsProcessInJob needs PROCESS_QUERY_INFORMATION; Windows accepts the LIMITED right, which is
 * also granted for protected processes. */
static HANDLE open_process(uint32_t pid)
{
	HANDLE h = OpenProcess(SYNCHRONIZE | PROCESS_QUERY_INFORMATION, FALSE, pid);

	if (!h && GetLastError() == ERROR_ACCESS_DENIED)
		h = OpenProcess(SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid);
	return h;
}

/* 1 if h is in job, 0 if not, -1 if that cannot be told. */
static int in_job(HANDLE h, HANDLE job)
{
	BOOL in = FALSE;

	if (!IsProcessInJob(h, job, &in))
		return -1;
	return in ? 1 : 0;
}

static void process_joined(struct session *s, uint32_t pid)
{
	HANDLE h;

	if (find_tracked(s, pid))
		return;
	h = open_process(pid);
	if (!h && GetLastError() == ERROR_INVALID_PARAMETER)
		return; /* gone already (no process has this pid any more) */
	if (h && in_job(h, s->job) == 0) {
		CloseHandle(h); /* the pid was reused by a process outside the session */
		return;
	}
	/* Otherwise the job's word is taken, even when the check could not be made. */
	if (s->ntracked == s->captracked) {
		size_t cap = s->captracked ? 2 * s->captracked : 16;
		struct tracked *t = realloc(s->tracked, cap * sizeof *t);
		if (!t) {
			log_error("session: out of memory tracking process %lu",
				  (unsigned long)pid);
			if (h)
				CloseHandle(h);
			return;
		}
		s->tracked = t;
		s->captracked = cap;
	}
	s->tracked[s->ntracked++] = (struct tracked){ .pid = pid, .process = h };
	report(s, pid, true);
}

static void process_left(struct session *s, uint32_t pid)
{
	struct tracked *t = find_tracked(s, pid);

	if (!t)
		return;
	if (t->process)
		CloseHandle(t->process);
	*t = s->tracked[--s->ntracked];
	report(s, pid, false);
}

/* Forgets every tracked process; report says whether the callback hears about it. */
static void untrack_all(struct session *s, bool tell)
{
	while (s->ntracked > 0) {
		struct tracked t = s->tracked[--s->ntracked];
		if (t.process)
			CloseHandle(t.process);
		if (tell)
			report(s, t.pid, false);
	}
}

void session_on_process(struct session *s, session_process_fn *fn, void *ctx)
{
	s->on_process = fn;
	s->on_process_ctx = ctx;
	for (size_t i = 0; i < s->ntracked; i++)
		report(s, s->tracked[i].pid, true);
}

bool session_owns_process(const struct session *s, uint32_t pid)
{
	HANDLE h = open_process(pid);
	bool owned;

	if (!h)
		return false;
	owned = WaitForSingleObject(h, 0) == WAIT_TIMEOUT && in_job(h, s->job) == 1;
	CloseHandle(h);
	return owned;
}

/* ---- the loop thread's side ---- */

/* Applies one record. Returns 0, or a negative errno if the watcher failed. */
static int apply(struct session *s, const struct wire_msg *msg)
{
	switch (msg->type) {
	case WIRE_NEW:
		process_joined(s, msg->pid);
		break;
	case WIRE_EXIT:
		process_left(s, msg->pid);
		break;
	case WIRE_EMPTY:
		s->job_empty = true;
		break;
	case WIRE_WATCH_FAILED:
		log_win(msg->pid, "reading the job's completion port");
		return neg_errno(msg->pid);
	default:
		break; /* WIRE_COMMAND_ENDED only wakes the loop up */
	}
	return 0;
}

/* Reads and applies every complete record available, without blocking. Returns 0, or a
 * negative errno when the pair or the watcher failed. */
static int read_messages(struct session *s)
{
	for (;;) {
		size_t done = 0;
		int n, err;

		n = recv(s->rd, (char *)s->inbuf + s->inlen, (int)(sizeof s->inbuf - s->inlen), 0);
		if (n == 0) {
			log_error("session: the job watcher closed its connection");
			return -EPIPE;
		}
		if (n < 0) {
			err = WSAGetLastError();
			if (err == WSAEWOULDBLOCK)
				return 0;
			if (err == WSAEINTR)
				continue;
			log_win((DWORD)err, "reading the job watcher's connection");
			return neg_errno((DWORD)err);
		}
		s->inlen += (size_t)n;
		while (s->inlen - done >= sizeof(struct wire_msg)) {
			struct wire_msg msg;

			memcpy(&msg, s->inbuf + done, sizeof msg);
			done += sizeof msg;
			err = apply(s, &msg);
			if (err)
				return err;
		}
		memmove(s->inbuf, s->inbuf + done, s->inlen - done);
		s->inlen -= done;
	}
}

static DWORD active_processes(const struct session *s)
{
	JOBOBJECT_BASIC_ACCOUNTING_INFORMATION info;

	if (!QueryInformationJobObject(s->job, JobObjectBasicAccountingInformation, &info,
				       sizeof info, NULL))
		return 1; /* unknown: rely on the watcher's ACTIVE_PROCESS_ZERO */
	return info.ActiveProcesses;
}

/* Ends every process left in the job and waits (at most TREE_WAIT_MS) until the job is empty,
 * applying the watcher's records meanwhile. */
static void end_tree(struct session *s)
{
	ULONGLONG deadline;

	if (!s->job || s->job_empty || active_processes(s) == 0)
		return;
	if (!TerminateJobObject(s->job, SESSION_WINDOWS_KILL_CODE))
		log_win(GetLastError(), "ending the session's processes");
	deadline = GetTickCount64() + TREE_WAIT_MS;
	while (!s->job_empty && active_processes(s) > 0) {
		WSAPOLLFD pfd = { .fd = s->rd, .events = POLLRDNORM };
		ULONGLONG now = GetTickCount64();

		if (now >= deadline || s->rd == INVALID_SOCKET) {
			log_warn("session: %lu of the session's processes still running %d ms "
				 "after being ended", (unsigned long)active_processes(s),
				 TREE_WAIT_MS);
			return;
		}
		if (WSAPoll(&pfd, 1, (INT)(deadline - now)) < 0 || read_messages(s) < 0)
			return;
	}
}

/* COMMAND has exited: records how, ends the rest of the tree, reports the last processes. */
static void finish(struct session *s)
{
	DWORD code = 0;

	if (GetExitCodeProcess(s->process, &code)) {
		set_exited(s, code);
	} else {
		log_win(GetLastError(), "reading COMMAND's exit code");
		s->result.end = SESSION_FAILED;
		s->result.code = EIO;
		s->result.exit_status = SESSION_STATUS_FAILED;
	}
	end_tree(s);
	untrack_all(s, true);
}

int session_handle_readable(struct session *s)
{
	int err;

	if (s->result.end != SESSION_RUNNING)
		return 1;
	err = read_messages(s);
	if (err)
		return err;
	if (WaitForSingleObject(s->process, 0) != WAIT_OBJECT_0)
		return 0;
	finish(s);
	return 1;
}

int session_wait(struct session *s)
{
	WSAPOLLFD pfd = { .fd = s->rd, .events = POLLRDNORM };
	int rc;

	while ((rc = session_handle_readable(s)) == 0) {
		if (WSAPoll(&pfd, 1, -1) < 0)
			return neg_errno((DWORD)WSAGetLastError());
	}
	return rc < 0 ? rc : 0;
}

const struct session_result *session_result(const struct session *s)
{
	return s->result.end == SESSION_RUNNING ? NULL : &s->result;
}

int session_signal(struct session *s, int signo)
{
	if (signo != SIGINT && signo != SIGTERM)
		return -EINVAL;
	if (s->result.end != SESSION_RUNNING || !s->process)
		return -ESRCH;
	if (!TerminateJobObject(s->job, 128u + (unsigned)signo)) {
		DWORD err = GetLastError();
		log_win(err, "ending the session");
		return neg_errno(err);
	}
	if (!s->signaled)
		s->signaled = signo;
	return 0;
}

loop_sock session_fd(const struct session *s)
{
	return (loop_sock)s->rd;
}

int session_pid(const struct session *s)
{
	return (int)s->pid;
}

/* Ctrl-C and Ctrl-Break are COMMAND's to handle (it gets them from the shared console). */
static BOOL WINAPI swallow_interrupts(DWORD type)
{
	return type == CTRL_C_EVENT || type == CTRL_BREAK_EVENT;
}

/* Installed once and never removed: the console notifies each process on a thread of its own,
 * so the Ctrl-C that ended COMMAND may reach sluice after the session is over and freed. */
static BOOL CALLBACK install_ctrl_handler(INIT_ONCE *once, void *param, void **ctx)
{
	(void)once;
	(void)param;
	(void)ctx;
	if (!SetConsoleCtrlHandler(swallow_interrupts, TRUE))
		log_warn("session: cannot install a console control handler (Windows error %lu): "
			 "Ctrl-C may end sluice before COMMAND", (unsigned long)GetLastError());
	return TRUE;
}

void session_free(struct session *s)
{
	if (!s)
		return;
	s->on_process = NULL;
	if (s->process && s->result.end == SESSION_RUNNING && s->rd != INVALID_SOCKET)
		end_tree(s);
	if (s->exit_wait)
		UnregisterWaitEx(s->exit_wait, INVALID_HANDLE_VALUE);
	if (s->rd != INVALID_SOCKET)
		closesocket(s->rd); /* a watcher blocked in send() fails and goes on draining */
	if (s->watcher) {
		if (PostQueuedCompletionStatus(s->port, 0, KEY_QUIT, NULL))
			WaitForSingleObject(s->watcher, INFINITE);
		else
			log_win(GetLastError(), "stopping the job watcher");
		CloseHandle(s->watcher);
	}
	if (s->wr != INVALID_SOCKET)
		closesocket(s->wr);
	untrack_all(s, false);
	if (s->job)
		CloseHandle(s->job); /* kill-on-close: whatever is left of the tree ends here */
	if (s->port)
		CloseHandle(s->port);
	if (s->process)
		CloseHandle(s->process);
	if (s->wsa_started)
		WSACleanup();
	free(s->tracked);
	free(s->command_name);
	free(s);
}

/* ---- setting up ---- */

/* A connected loopback TCP pair (Windows has no socketpair): *rd non-blocking, *wr blocking
 * with Nagle off, neither inheritable. The accepted end is checked to be our own connection,
 * so that no other local process can feed the session records. Returns 0 or a negative errno. */
static int loopback_pair(SOCKET *rd, SOCKET *wr)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	struct sockaddr_in mine, peer;
	SOCKET lst, cli = INVALID_SOCKET, srv = INVALID_SOCKET;
	int len, one = 1, err = 0;
	u_long nonblocking = 1;

	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lst = WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_NO_HANDLE_INHERIT);
	if (lst == INVALID_SOCKET)
		goto fail_wsa;
	len = sizeof addr;
	if (bind(lst, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(lst, 1) != 0
	    || getsockname(lst, (struct sockaddr *)&addr, &len) != 0)
		goto fail_wsa;
	cli = WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_NO_HANDLE_INHERIT);
	if (cli == INVALID_SOCKET || connect(cli, (struct sockaddr *)&addr, sizeof addr) != 0)
		goto fail_wsa;
	len = sizeof mine;
	if (getsockname(cli, (struct sockaddr *)&mine, &len) != 0)
		goto fail_wsa;
	for (int tries = 0; tries < 8; tries++) {
		len = sizeof peer;
		srv = accept(lst, (struct sockaddr *)&peer, &len);
		if (srv == INVALID_SOCKET)
			goto fail_wsa;
		if (peer.sin_port == mine.sin_port && peer.sin_addr.s_addr == mine.sin_addr.s_addr)
			break;
		closesocket(srv); /* someone else's connection */
		srv = INVALID_SOCKET;
	}
	if (srv == INVALID_SOCKET) {
		err = -ECONNREFUSED;
		goto fail;
	}
	SetHandleInformation((HANDLE)srv, HANDLE_FLAG_INHERIT, 0);
	if (setsockopt(srv, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof one) != 0
	    || ioctlsocket(cli, FIONBIO, &nonblocking) != 0)
		goto fail_wsa;
	closesocket(lst);
	*rd = cli;
	*wr = srv;
	return 0;
fail_wsa:
	err = WSAGetLastError();
	log_win((DWORD)err, "creating the loopback pair for the job watcher");
	err = neg_errno((DWORD)err);
fail:
	if (lst != INVALID_SOCKET)
		closesocket(lst);
	if (cli != INVALID_SOCKET)
		closesocket(cli);
	if (srv != INVALID_SOCKET)
		closesocket(srv);
	return err;
}

/* The job (kill-on-close) and its completion port. Returns 0 or a negative errno. */
static int make_job(struct session *s)
{
	JOBOBJECT_EXTENDED_LIMIT_INFORMATION limits;
	JOBOBJECT_ASSOCIATE_COMPLETION_PORT assoc;
	DWORD err;

	s->job = CreateJobObjectW(NULL, NULL);
	if (!s->job)
		goto fail;
	memset(&limits, 0, sizeof limits);
	limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
	if (!SetInformationJobObject(s->job, JobObjectExtendedLimitInformation, &limits,
				     sizeof limits))
		goto fail;
	s->port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 1);
	if (!s->port)
		goto fail;
	assoc.CompletionKey = (void *)(uintptr_t)KEY_JOB;
	assoc.CompletionPort = s->port;
	if (!SetInformationJobObject(s->job, JobObjectAssociateCompletionPortInformation, &assoc,
				     sizeof assoc))
		goto fail;
	return 0;
fail:
	err = GetLastError();
	log_win(err, "creating the session's job object");
	return neg_errno(err);
}

/* True if name has a path in it (CreateProcess then resolves it itself). */
static bool has_path(const char *name)
{
	return strpbrk(name, "\\/:") != NULL;
}

/* Finds a bare name in PATH (only), appending ".exe" if it has no extension. Returns a
 * malloc'd path, or NULL with *err: ERROR_FILE_NOT_FOUND, or another Windows error. */
static wchar_t *search_path(const wchar_t *name, DWORD *err)
{
	wchar_t *path = NULL, *found = NULL;
	DWORD n, got;

	n = GetEnvironmentVariableW(L"PATH", NULL, 0);
	if (n == 0) {
		*err = ERROR_FILE_NOT_FOUND;
		return NULL;
	}
	path = malloc(n * sizeof *path);
	if (!path || GetEnvironmentVariableW(L"PATH", path, n) >= n) {
		*err = ERROR_NOT_ENOUGH_MEMORY;
		goto done;
	}
	n = SearchPathW(path, name, L".exe", 0, NULL, NULL);
	if (n == 0) {
		*err = GetLastError();
		goto done;
	}
	found = malloc(n * sizeof *found);
	if (!found) {
		*err = ERROR_NOT_ENOUGH_MEMORY;
		goto done;
	}
	got = SearchPathW(path, name, L".exe", n, found, NULL);
	if (got == 0 || got >= n) { /* gone, or PATH's match changed, since the first call */
		*err = ERROR_FILE_NOT_FOUND;
		free(found);
		found = NULL;
	}
done:
	free(path);
	return found;
}

/* Inheritable duplicates of the standard handles, for STARTF_USESTDHANDLES and the handle
 * list; a handle shared by two streams is duplicated once. */
struct std_handles {
	HANDLE h[3];    /* stdin, stdout, stderr as COMMAND gets them (NULL: none) */
	HANDLE list[3]; /* the distinct duplicates */
	size_t n;
};

static void std_handles_get(struct std_handles *sh)
{
	static const DWORD which[3] = { STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE };
	HANDLE orig[3];

	memset(sh, 0, sizeof *sh);
	for (int i = 0; i < 3; i++) {
		orig[i] = GetStdHandle(which[i]);
		if (orig[i] == INVALID_HANDLE_VALUE)
			orig[i] = NULL;
		for (int j = 0; j < i; j++)
			if (orig[i] && orig[j] == orig[i])
				sh->h[i] = sh->h[j];
		if (!orig[i] || sh->h[i])
			continue;
		if (DuplicateHandle(GetCurrentProcess(), orig[i], GetCurrentProcess(), &sh->h[i], 0,
				    TRUE, DUPLICATE_SAME_ACCESS))
			sh->list[sh->n++] = sh->h[i];
		else
			sh->h[i] = NULL;
	}
}

static void std_handles_close(struct std_handles *sh)
{
	for (size_t i = 0; i < sh->n; i++)
		CloseHandle(sh->list[i]);
	sh->n = 0;
}

/* The token COMMAND runs with: sluice's own, restricted so that the session holds nothing that
 * reaches outside it even when sluice runs as administrator (which WinDivert requires): the
 * Administrators group becomes deny-only (it can no longer grant access), every privilege but
 * SeChangeNotifyPrivilege (traversal, which every program needs) is deleted (no driver loading,
 * no debugging other processes, no backup/restore or ownership bypass, no impersonation), and
 * the integrity level is lowered to medium, so that COMMAND cannot write to sluice's (high)
 * process or to other elevated objects. Without administrator rights COMMAND cannot open
 * WinDivert itself, stop its driver, change the firewall or install services. Returns 0 and
 * *out (CloseHandle it), or a Windows error. */
static DWORD command_token(HANDLE *out)
{
	HANDLE own = NULL;
	TOKEN_PRIVILEGES *privs = NULL;
	LUID_AND_ATTRIBUTES *drop = NULL;
	BYTE admins[SECURITY_MAX_SID_SIZE], medium[SECURITY_MAX_SID_SIZE];
	DWORD size = 0, n_drop = 0, err = 0, admins_len = sizeof admins, medium_len = sizeof medium;
	LUID traverse;

	*out = NULL;
	if (!OpenProcessToken(GetCurrentProcess(), TOKEN_DUPLICATE | TOKEN_QUERY |
			      TOKEN_ASSIGN_PRIMARY | TOKEN_ADJUST_DEFAULT, &own) ||
	    !CreateWellKnownSid(WinBuiltinAdministratorsSid, NULL, admins, &admins_len) ||
	    !CreateWellKnownSid(WinMediumLabelSid, NULL, medium, &medium_len) ||
	    !LookupPrivilegeValueW(NULL, L"SeChangeNotifyPrivilege", &traverse)) {
		err = GetLastError();
		goto done;
	}
	GetTokenInformation(own, TokenPrivileges, NULL, 0, &size);
	privs = size ? malloc(size) : NULL;
	if (!privs || !GetTokenInformation(own, TokenPrivileges, privs, size, &size)) {
		err = privs ? GetLastError() : ERROR_NOT_ENOUGH_MEMORY;
		goto done;
	}
	drop = malloc((privs->PrivilegeCount + 1) * sizeof *drop);
	if (!drop) {
		err = ERROR_NOT_ENOUGH_MEMORY;
		goto done;
	}
	for (DWORD i = 0; i < privs->PrivilegeCount; i++) {
		LUID l = privs->Privileges[i].Luid;
		if (l.LowPart != traverse.LowPart || l.HighPart != traverse.HighPart)
			drop[n_drop++] = privs->Privileges[i];
	}
	SID_AND_ATTRIBUTES deny_only = { (PSID)admins, 0 };
	if (!CreateRestrictedToken(own, 0, 1, &deny_only, n_drop, drop, 0, NULL, out)) {
		err = GetLastError();
		*out = NULL;
		goto done;
	}
	TOKEN_MANDATORY_LABEL label = { { (PSID)medium, SE_GROUP_INTEGRITY } };
	if (!SetTokenInformation(*out, TokenIntegrityLevel, &label,
				 (DWORD)sizeof label + medium_len)) {
		err = GetLastError();
		CloseHandle(*out);
		*out = NULL;
	}
done:
	free(drop);
	free(privs);
	if (own)
		CloseHandle(own);
	return err;
}

/* Creates COMMAND suspended with token, inheriting only the standard handles. Returns true, or
 * false with *err (Windows error). */
static bool create_suspended(HANDLE token, wchar_t *app, wchar_t *cmdline,
			     PROCESS_INFORMATION *pi, DWORD *err)
{
	STARTUPINFOEXW si;
	struct std_handles sh;
	SIZE_T size = 0;
	bool ok = false;

	memset(&si, 0, sizeof si);
	si.StartupInfo.cb = sizeof si;
	std_handles_get(&sh);
	si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
	si.StartupInfo.hStdInput = sh.h[0];
	si.StartupInfo.hStdOutput = sh.h[1];
	si.StartupInfo.hStdError = sh.h[2];
	if (sh.n > 0) {
		InitializeProcThreadAttributeList(NULL, 1, 0, &size);
		si.lpAttributeList = malloc(size);
		if (!si.lpAttributeList) {
			*err = ERROR_NOT_ENOUGH_MEMORY;
			goto done;
		}
		if (!InitializeProcThreadAttributeList(si.lpAttributeList, 1, 0, &size)) {
			*err = GetLastError();
			free(si.lpAttributeList);
			si.lpAttributeList = NULL;
			goto done;
		}
		if (!UpdateProcThreadAttribute(si.lpAttributeList, 0,
					       PROC_THREAD_ATTRIBUTE_HANDLE_LIST, sh.list,
					       sh.n * sizeof sh.list[0], NULL, NULL)) {
			*err = GetLastError();
			goto done;
		}
	}
	ok = CreateProcessAsUserW(token, app, cmdline, NULL, NULL, sh.n > 0,
				  CREATE_SUSPENDED | EXTENDED_STARTUPINFO_PRESENT, NULL, NULL,
				  &si.StartupInfo, pi);
	if (!ok)
		*err = GetLastError();
done:
	if (si.lpAttributeList) {
		DeleteProcThreadAttributeList(si.lpAttributeList);
		free(si.lpAttributeList);
	}
	std_handles_close(&sh);
	return ok;
}

/* CreateProcess failed: the session ends at once with SESSION_EXEC_FAILED. */
static void exec_failed(struct session *s, DWORD err)
{
	char text[256];

	log_error("cannot run '%s': %s (Windows error %lu)", s->command_name,
		  win_message(err, text, sizeof text), (unsigned long)err);
	set_exec_failed(s, err);
	PostQueuedCompletionStatus(s->port, 0, KEY_COMMAND_ENDED, NULL); /* wakes the loop */
}

/* Starts COMMAND in the job. Returns 0 (also when it could not be started: exec_failed) or a
 * negative errno after logging. */
static int start_command(struct session *s, char *const argv[])
{
	PROCESS_INFORMATION pi;
	wchar_t *cmdline = NULL, *app = NULL, *name = NULL;
	HANDLE token = NULL;
	size_t len;
	DWORD err = 0;
	int rc;

	rc = session_windows_command_line(&cmdline, argv);
	if (rc) {
		log_errno(rc, "session: cannot build the command line for '%s'", s->command_name);
		return rc;
	}
	err = command_token(&token);
	if (err) {
		log_win(err, "making COMMAND's token without administrator rights");
		rc = neg_errno(err);
		goto done;
	}
	if (!has_path(argv[0])) {
		rc = widen(argv[0], &name, &len);
		if (rc)
			goto done;
		app = search_path(name, &err);
		if (!app) {
			exec_failed(s, err);
			goto done;
		}
	}
	if (!create_suspended(token, app, cmdline, &pi, &err)) {
		exec_failed(s, err);
		goto done;
	}
	s->process = pi.hProcess;
	s->pid = pi.dwProcessId;
	if (!AssignProcessToJobObject(s->job, pi.hProcess)) {
		err = GetLastError();
		log_win(err, "putting COMMAND in the session's job object (is sluice in a job that "
			     "forbids it?)");
		rc = neg_errno(err);
	} else if (!RegisterWaitForSingleObject(&s->exit_wait, pi.hProcess, on_command_exit, s,
						INFINITE, WT_EXECUTEONLYONCE)) {
		err = GetLastError();
		log_win(err, "waiting for COMMAND");
		s->exit_wait = NULL;
		rc = neg_errno(err);
	} else if (ResumeThread(pi.hThread) == (DWORD)-1) {
		err = GetLastError();
		log_win(err, "starting COMMAND");
		rc = neg_errno(err);
	}
	if (rc)
		TerminateProcess(pi.hProcess, SESSION_WINDOWS_KILL_CODE);
	CloseHandle(pi.hThread);
done:
	if (token)
		CloseHandle(token);
	free(name);
	free(app);
	free(cmdline);
	return rc;
}

static INIT_ONCE ctrl_handler_once = INIT_ONCE_STATIC_INIT;

int session_spawn(struct session **out, char *const argv[], struct capture *capture)
{
	struct session *s;
	WSADATA wsa;
	int err;

	/* The capture on Windows works per process, from the pids session_on_process reports:
	 * there is no network to join, so `capture` is not used here. */
	(void)capture;
	if (!argv || !argv[0])
		return -EINVAL;
	s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	s->rd = s->wr = INVALID_SOCKET;
	s->command_name = _strdup(argv[0]);
	if (!s->command_name) {
		free(s);
		return -ENOMEM;
	}
	err = WSAStartup(MAKEWORD(2, 2), &wsa);
	if (err) {
		log_win((DWORD)err, "starting Winsock");
		err = neg_errno((DWORD)err);
		goto fail;
	}
	s->wsa_started = true;
	err = loopback_pair(&s->rd, &s->wr);
	if (err)
		goto fail;
	err = make_job(s);
	if (err)
		goto fail;
	s->watcher = CreateThread(NULL, 0, watch_job, s, 0, NULL);
	if (!s->watcher) {
		DWORD e = GetLastError();
		log_win(e, "starting the job watcher thread");
		err = neg_errno(e);
		goto fail;
	}
	InitOnceExecuteOnce(&ctrl_handler_once, install_ctrl_handler, NULL, NULL);
	err = start_command(s, argv);
	if (err)
		goto fail;
	*out = s;
	return 0;
fail:
	session_free(s);
	return err;
}
