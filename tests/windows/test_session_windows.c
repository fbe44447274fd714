/* test_session_windows.c — the Windows session (Job Object + completion port), run under Wine.
 *
 * COMMAND is tests/windows/child_helper.c (session_child_helper.exe, next to this test), whose
 * modes make a process tree on demand:
 *
 *   test process ── session job ─┬─ helper (COMMAND)
 *                                └─ helper `sleep` (grandchild, started by COMMAND)
 *
 * Most tests feed the session from WSAPoll on session_fd, as sluice's loop does (no dependency
 * on the loop's own WSAPoll backend); some use session_wait. The process-set callback records
 * each report and opens a handle to each started process, so the test can check afterwards that
 * those processes are gone. Every wait is bounded (DRIVE_MS) and waits for a condition.
 * Wine differs from Windows in two ways the tests avoid asserting on: TerminateJobObject sends no
 * EXIT_PROCESS messages, and ABNORMAL_EXIT_PROCESS is never sent.
 *
 * Two tests run this program again as a sluice stand-in: `--host-and-die` (test_kill_on_close)
 * runs a session, prints its pids and terminates itself without session_free; `--ctrl-c-host`
 * (test_ctrl_c) sends Ctrl-C to a console of its own while a session runs, and reports.
 */
#define WIN32_LEAN_AND_MEAN
#include <winsock2.h>
#include <windows.h>
#include <shellapi.h>

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "check.h"
#include "session/session.h"
#include "session/session_windows.h"

#define DRIVE_MS 20000
#define MAX_EVENTS 32
#define LONG_SLEEP "600000"
#define HELPER_NAME "session_child_helper"

static char helper_path[4 * MAX_PATH]; /* UTF-8 */
static wchar_t helper_dir_w[MAX_PATH];

static bool to_utf8(const wchar_t *w, char *out, size_t n)
{
	return WideCharToMultiByte(CP_UTF8, 0, w, -1, out, (int)n, NULL, NULL) > 0;
}

/* Finds session_child_helper.exe next to this executable. */
static const char *helper(void)
{
	wchar_t path[MAX_PATH];
	wchar_t *slash;

	if (helper_path[0])
		return helper_path;
	if (!GetModuleFileNameW(NULL, helper_dir_w, MAX_PATH))
		return NULL;
	slash = wcsrchr(helper_dir_w, L'\\');
	if (!slash)
		return NULL;
	*slash = L'\0';
	swprintf(path, MAX_PATH, L"%ls\\" HELPER_NAME ".exe", helper_dir_w);
	return to_utf8(path, helper_path, sizeof helper_path) ? helper_path : NULL;
}

/* ---- recording the process-set callback ---- */

struct event {
	uint32_t pid;
	bool started;
	bool after_end; /* session_result was already set */
};

struct recorder {
	struct session *s;
	size_t n, nh;
	struct event ev[MAX_EVENTS];
	HANDLE handles[MAX_EVENTS]; /* opened on each start report */
};

static void record(void *ctx, uint32_t pid, bool started)
{
	struct recorder *r = ctx;

	if (r->n < MAX_EVENTS)
		r->ev[r->n++] = (struct event){ pid, started, session_result(r->s) != NULL };
	if (started && r->nh < MAX_EVENTS)
		r->handles[r->nh++] =
			OpenProcess(SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid);
}

/* Index of the first report (pid, started), or -1. */
static int find_event(const struct recorder *r, uint32_t pid, bool started)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->ev[i].pid == pid && r->ev[i].started == started)
			return (int)i;
	return -1;
}

static size_t count_started(const struct recorder *r)
{
	size_t n = 0;

	for (size_t i = 0; i < r->n; i++)
		n += r->ev[i].started;
	return n;
}

static bool two_started(const void *arg)
{
	return count_started(arg) >= 2;
}

/* Every started report has one stop report after it. */
static void check_balanced(const struct recorder *r)
{
	for (size_t i = 0; i < r->n; i++) {
		int stops = 0;
		if (!r->ev[i].started)
			continue;
		for (size_t k = i + 1; k < r->n; k++)
			stops += r->ev[k].pid == r->ev[i].pid && !r->ev[k].started;
		CHECK_EQ(stops, 1);
	}
}

/* Each process reported started is gone now; returns how many were checked. */
static size_t check_all_gone(const struct recorder *r)
{
	size_t n = 0;

	for (size_t i = 0; i < r->nh; i++) {
		if (!r->handles[i])
			continue;
		CHECK_EQ(WaitForSingleObject(r->handles[i], 0), WAIT_OBJECT_0);
		n++;
	}
	return n;
}

static void recorder_close(struct recorder *r)
{
	for (size_t i = 0; i < r->nh; i++)
		if (r->handles[i])
			CloseHandle(r->handles[i]);
	r->nh = 0;
}

/* ---- driving a session as the loop would ---- */

/* Feeds s from WSAPoll on session_fd until it ends (1) or done(arg) holds (0); -1 on an error or
 * after DRIVE_MS. */
static int drive(struct session *s, bool (*done)(const void *), const void *arg)
{
	ULONGLONG deadline = GetTickCount64() + DRIVE_MS;

	for (;;) {
		WSAPOLLFD p = { .fd = (SOCKET)session_fd(s), .events = POLLRDNORM };
		ULONGLONG now = GetTickCount64();
		int n, rc;

		if (done && done(arg))
			return 0;
		if (now >= deadline)
			return -1;
		n = WSAPoll(&p, 1, (INT)(deadline - now));
		if (n < 0)
			return -1;
		if (n == 0)
			continue;
		rc = session_handle_readable(s);
		if (rc != 0)
			return rc < 0 ? -1 : 1;
	}
}

/* ---- redirecting the standard handles COMMAND inherits ---- */

struct redirect {
	DWORD which;
	HANDLE saved;
	HANDLE ours; /* the pipe end the test keeps */
	HANDLE theirs; /* the end COMMAND inherits, closed by redirect_restore */
};

static bool redirect_begin(struct redirect *r, DWORD which)
{
	HANDLE rd, wr;

	r->which = which;
	r->saved = GetStdHandle(which);
	r->ours = r->theirs = NULL;
	if (!CreatePipe(&rd, &wr, NULL, 1 << 16))
		return false;
	r->ours = which == STD_INPUT_HANDLE ? wr : rd;
	r->theirs = which == STD_INPUT_HANDLE ? rd : wr;
	SetStdHandle(which, r->theirs);
	return true;
}

/* Restores the standard handle (call it right after session_spawn). */
static void redirect_restore(struct redirect *r)
{
	SetStdHandle(r->which, r->saved);
	if (r->theirs)
		CloseHandle(r->theirs);
	r->theirs = NULL;
}

/* Reads what COMMAND wrote, until every writer closed the pipe. Returns the length. */
static size_t redirect_read_all(struct redirect *r, char *buf, size_t n)
{
	size_t len = 0;
	DWORD got;

	while (len + 1 < n && ReadFile(r->ours, buf + len, (DWORD)(n - 1 - len), &got, NULL) && got)
		len += got;
	buf[len] = '\0';
	return len;
}

static void redirect_close(struct redirect *r)
{
	if (r->ours)
		CloseHandle(r->ours);
	r->ours = NULL;
}

/* What a test has read so far of a pipe COMMAND writes lines to. */
struct lines {
	char text[512];
	size_t len;
};

/* The whole line that starts with `start` (up to its newline), or NULL. */
static const char *find_line(const struct lines *l, const char *start)
{
	for (const char *p = l->text; (p = strstr(p, start)) != NULL; p++)
		if ((p == l->text || p[-1] == '\n') && strchr(p, '\n'))
			return p;
	return NULL;
}

/* Reads h until a whole line starting with `start` has arrived (or EOF, or the buffer is full).
 * Blocks: whoever writes either writes the line or exits (every pipe end is closed then). */
static const char *wait_line(HANDLE h, struct lines *l, const char *start)
{
	const char *found;
	DWORD got;

	while (!(found = find_line(l, start)) && l->len + 1 < sizeof l->text
	       && ReadFile(h, l->text + l->len, 1, &got, NULL) && got)
		l->text[++l->len] = '\0';
	return found;
}

/* Waits for COMMAND's "grandchild PID" line and then for the grandchild's own "ready PID": the
 * grandchild is running, its start is over. Returns its pid, or 0. A tree is never ended before
 * this: Wine 8's wineserver may crash when a job ends a process that is still starting while
 * another process holds a handle to it (as the session does, to pin pids). */
static uint32_t wait_grandchild_ready(HANDLE h, struct lines *l)
{
	const char *line = wait_line(h, l, "grandchild ");
	unsigned long pid = 0;
	char ready[32];

	if (!line || sscanf(line, "grandchild %lu", &pid) != 1 || pid == 0)
		return 0;
	snprintf(ready, sizeof ready, "ready %lu\n", pid);
	return wait_line(h, l, ready) ? (uint32_t)pid : 0;
}

/* Starts COMMAND `spawn-grandchild-then-sleep` with r recording, and returns once both processes
 * are reported and the grandchild is ready (wait_grandchild_ready). Returns the session or NULL. */
static struct session *start_tree(struct recorder *r, uint32_t *grandchild)
{
	char *argv[] = { (char *)helper(), "spawn-grandchild-then-sleep", LONG_SLEEP, NULL };
	struct lines lines = { .len = 0 };
	struct redirect out;
	struct session *s = NULL;

	*grandchild = 0;
	if (!redirect_begin(&out, STD_OUTPUT_HANDLE))
		return NULL;
	CHECK_EQ(session_spawn(&s, argv, NULL), 0);
	redirect_restore(&out);
	if (s) {
		r->s = s;
		session_on_process(s, record, r);
		*grandchild = wait_grandchild_ready(out.ours, &lines);
		CHECK(*grandchild != 0);
		CHECK_EQ(drive(s, two_started, r), 0);
		CHECK(find_event(r, *grandchild, true) >= 0);
	}
	redirect_close(&out);
	return s;
}

/* ---- the command line ---- */

#define MAX_ARGS 8

struct line_case {
	const char *name;
	const char *argv[MAX_ARGS];
	const char *expect; /* the exact command line, UTF-8 */
};

static const struct line_case line_cases[] = {
	{ "plain", { "prog", "a", "b" }, "prog a b" },
	{ "empty arg", { "prog", "" }, "prog \"\"" },
	{ "empty args around one", { "prog", "", "x", "" }, "prog \"\" x \"\"" },
	{ "space", { "prog", "a b" }, "prog \"a b\"" },
	{ "only spaces", { "prog", "   " }, "prog \"   \"" },
	{ "tab", { "prog", "a\tb" }, "prog \"a\tb\"" },
	{ "newline", { "prog", "a\nb" }, "prog \"a\nb\"" },
	{ "vertical tab", { "prog", "a\vb" }, "prog \"a\vb\"" },
	{ "quote", { "prog", "a\"b" }, "prog \"a\\\"b\"" },
	{ "lone quote", { "prog", "\"" }, "prog \"\\\"\"" },
	{ "quoted word", { "prog", "\"x\"" }, "prog \"\\\"x\\\"\"" },
	{ "backslashes stay single", { "prog", "a\\b\\\\c" }, "prog a\\b\\\\c" },
	{ "trailing backslash, unquoted", { "prog", "dir\\" }, "prog dir\\" },
	{ "backslash before quote", { "prog", "a\\\"b" }, "prog \"a\\\\\\\"b\"" },
	{ "two backslashes before quote", { "prog", "a\\\\\"b" }, "prog \"a\\\\\\\\\\\"b\"" },
	{ "trailing backslash, quoted", { "prog", "a b\\" }, "prog \"a b\\\\\"" },
	{ "three trailing backslashes", { "prog", "x y\\\\\\" }, "prog \"x y\\\\\\\\\\\\\"" },
	{ "UNC path with space", { "prog", "\\\\srv\\a b\\" }, "prog \"\\\\srv\\a b\\\\\"" },
	{ "backslash inside quoted", { "prog", "a\\b c" }, "prog \"a\\b c\"" },
	{ "UTF-8", { "prog", "\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80" },
	  "prog \"\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80\"" },
	{ "flag with quotes", { "prog", "--x=\"a b\"" }, "prog \"--x=\\\"a b\\\"\"" },
	{ "argv0 with space", { "C:\\Program Files\\p.exe", "x" },
	  "\"C:\\Program Files\\p.exe\" x" },
	{ "argv0 trailing backslash", { "C:\\a b\\", "x" }, "\"C:\\a b\\\" x" },
	{ "argv0 backslashes literal", { "C:\\dir\\p.exe" }, "C:\\dir\\p.exe" },
	{ "argv0 empty", { "", "x" }, "\"\" x" },
	{ "argv0 alone", { "prog" }, "prog" },
};

static void test_command_line(void)
{
	for (size_t i = 0; i < sizeof line_cases / sizeof line_cases[0]; i++) {
		const struct line_case *c = &line_cases[i];
		char got[512];
		wchar_t *line = NULL, **parsed;
		int n = 0, argc = 0;

		check_case("%s", c->name);
		while (argc < MAX_ARGS && c->argv[argc])
			argc++;
		CHECK_EQ(session_windows_command_line(&line, (char *const *)c->argv), 0);
		if (!line)
			continue;
		CHECK(to_utf8(line, got, sizeof got));
		CHECK_STR_EQ(got, c->expect);
		/* What the child's runtime will make of it (same rules as MSVCRT for these). */
		parsed = CommandLineToArgvW(line, &n);
		CHECK(parsed != NULL);
		CHECK_EQ(n, argc);
		for (int k = 0; parsed && k < n && k < argc; k++) {
			char arg[256];
			CHECK(to_utf8(parsed[k], arg, sizeof arg));
			CHECK_STR_EQ(arg, c->argv[k]);
		}
		LocalFree(parsed);
		free(line);
	}
}

static void test_command_line_errors(void)
{
	static char big[40000];
	struct {
		const char *name;
		const char *argv[3];
		size_t fill; /* argv[1] = `big` with this many 'a's, if non-zero */
		int expect;
	} cases[] = {
		{ "no argv[0]", { NULL }, 0, -EINVAL },
		{ "quote in argv[0]", { "a\"b" }, 0, -EINVAL },
		{ "invalid UTF-8 byte", { "prog", "\xff" }, 0, -EILSEQ },
		{ "truncated UTF-8", { "prog", "\xc3" }, 0, -EILSEQ },
		{ "UTF-8 surrogate", { "prog", "\xed\xa0\x80" }, 0, -EILSEQ },
		{ "invalid UTF-8 in argv[0]", { "\xc0\xaf" }, 0, -EILSEQ },
		/* "p " + N chars + NUL: the limit is 32767 with the NUL */
		{ "longest line", { "p", big }, 32764, 0 },
		{ "one character too long", { "p", big }, 32765, -E2BIG },
		{ "far too long", { "p", big }, 39999, -E2BIG },
	};
	wchar_t *line;

	CHECK_EQ(session_windows_command_line(&line, NULL), -EINVAL);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		check_case("%s", cases[i].name);
		memset(big, 'a', cases[i].fill);
		big[cases[i].fill] = '\0';
		line = NULL;
		CHECK_EQ(session_windows_command_line(&line, (char *const *)cases[i].argv),
			 cases[i].expect);
		if (cases[i].expect == 0) {
			CHECK(line != NULL);
			CHECK_EQ(line ? wcslen(line) : 0, 2 + cases[i].fill);
		}
		free(line);
	}
}

static void test_exit_status_mapping(void)
{
	static const struct {
		uint32_t code;
		int status;
	} cases[] = {
		{ 0, 0 },
		{ 1, 1 },
		{ 255, 255 },
		{ 256, 1 },
		{ 0x1ff, 255 },
		{ 0x10003, 3 },
		{ 0xC000013A, 130 }, /* STATUS_CONTROL_C_EXIT */
		{ 0xC0000005, 5 },
		{ 0xC0000100, 1 },
		{ 0xFFFFFFFF, 255 },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		check_case("0x%lx", (unsigned long)cases[i].code);
		CHECK_EQ(session_windows_exit_status(cases[i].code), cases[i].status);
	}
}

/* ---- sessions ---- */

static void test_exit_codes(void)
{
	static const struct {
		const char *arg;
		uint32_t code;
		int status;
	} cases[] = {
		{ "0", 0, 0 },
		{ "3", 3, 3 },
		{ "255", 255, 255 },
		{ "256", 256, 1 },
		{ "0xC0000005", 0xC0000005, 5 },
		{ "0xC000013A", 0xC000013A, 130 },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *argv[] = { (char *)helper(), "exit", (char *)cases[i].arg, NULL };
		struct session *s = NULL;
		const struct session_result *res;

		check_case("exit %s", cases[i].arg);
		CHECK_EQ(session_spawn(&s, argv, NULL), 0);
		if (!s)
			continue;
		CHECK(session_pid(s) > 0);
		CHECK(session_result(s) == NULL);
		CHECK_EQ(session_wait(s), 0);
		res = session_result(s);
		CHECK(res != NULL);
		if (res) {
			CHECK_EQ(res->end, SESSION_EXITED);
			CHECK_EQ((uint32_t)res->code, cases[i].code);
			CHECK_EQ((uint32_t)res->wait_status, cases[i].code);
			CHECK_EQ(res->exit_status, cases[i].status);
		}
		CHECK_EQ(session_handle_readable(s), 1);
		session_free(s);
	}
}

/* COMMAND starts a grandchild, waits for it, exits 7: both are reported, started then stopped,
 * the grandchild's exit before the session ends. */
static void test_process_tree(void)
{
	char *argv[] = { (char *)helper(), "spawn-grandchild-then-exit", "7", NULL };
	struct recorder r = { 0 };
	struct redirect out;
	struct session *s = NULL;
	const struct session_result *res;
	char text[256];
	unsigned long grandchild = 0;
	uint32_t command;
	int i;

	CHECK(redirect_begin(&out, STD_OUTPUT_HANDLE));
	CHECK_EQ(session_spawn(&s, argv, NULL), 0);
	redirect_restore(&out);
	if (!s)
		return;
	r.s = s;
	command = (uint32_t)session_pid(s);
	session_on_process(s, record, &r);
	CHECK_EQ(drive(s, NULL, NULL), 1);
	res = session_result(s);
	CHECK(res != NULL);
	if (res) {
		CHECK_EQ(res->end, SESSION_EXITED);
		CHECK_EQ(res->exit_status, 7);
	}
	session_free(s);
	redirect_read_all(&out, text, sizeof text);
	redirect_close(&out);
	CHECK(strstr(text, "grandchild ") != NULL);
	if (strstr(text, "grandchild "))
		CHECK_EQ(sscanf(strstr(text, "grandchild "), "grandchild %lu", &grandchild), 1);
	CHECK(strstr(text, "ready ") != NULL); /* the grandchild ran */

	CHECK(r.n >= 4);
	/* COMMAND is reported first: it was in the job before it ran. */
	CHECK(r.n > 0 && r.ev[0].pid == command && r.ev[0].started && !r.ev[0].after_end);
	i = find_event(&r, (uint32_t)grandchild, true);
	CHECK(i > 0);
	CHECK(i >= 0 && !r.ev[i].after_end);
	i = find_event(&r, (uint32_t)grandchild, false);
	CHECK(i > 0);
	/* Reported from its EXIT_PROCESS message, before COMMAND's end. */
	CHECK(i >= 0 && !r.ev[i].after_end);
	CHECK(find_event(&r, command, false) > 0);
	check_balanced(&r);
	CHECK(check_all_gone(&r) >= 2);
	recorder_close(&r);
}

/* Arguments reach the child's MSVCRT parser (the helper's wmain) exactly. */
static void test_arguments_round_trip(void)
{
	static const char *const args[] = {
		"", "a b", "\"", "a\\\"b", "x y\\", "\\\\srv\\share\\", "tab\there", "a\\\\b",
		"\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80", "--x=\"a b\"", "   ", "\\", "\"\"",
		"end\\\\",
	};
	enum { N = sizeof args / sizeof args[0] };
	char *argv[N + 3];
	char expect[1024], text[1024];
	size_t pos;
	struct redirect out;
	struct session *s = NULL;

	argv[0] = (char *)helper();
	argv[1] = "print-args";
	for (size_t i = 0; i < N; i++)
		argv[i + 2] = (char *)args[i];
	argv[N + 2] = NULL;
	pos = (size_t)snprintf(expect, sizeof expect, "argc %d\n", (int)N);
	for (size_t i = 0; i < N; i++) {
		pos += (size_t)snprintf(expect + pos, sizeof expect - pos, "arg ");
		for (const unsigned char *c = (const unsigned char *)args[i]; *c; c++)
			pos += (size_t)snprintf(expect + pos, sizeof expect - pos, "%02x", *c);
		pos += (size_t)snprintf(expect + pos, sizeof expect - pos, "\n");
	}

	CHECK(redirect_begin(&out, STD_OUTPUT_HANDLE));
	CHECK_EQ(session_spawn(&s, argv, NULL), 0);
	redirect_restore(&out);
	if (s) {
		CHECK_EQ(session_wait(s), 0);
		CHECK(session_result(s) && session_result(s)->exit_status == 0);
		session_free(s);
	}
	redirect_read_all(&out, text, sizeof text);
	redirect_close(&out);
	CHECK_STR_EQ(text, expect);
}

/* COMMAND runs without administrator rights even though this test (like sluice) may hold
 * them: the Administrators group grants it nothing, and of its privileges only traversal is
 * left. (Under Wine the test process is an administrator with many privileges, so this fails
 * if the token is not restricted; Wine does not apply the integrity level, which is therefore
 * not checked here.) */
static void test_command_not_admin(void)
{
	char *argv[] = { (char *)helper(), "token", NULL };
	char text[256];
	struct redirect out;
	struct session *s = NULL;

	CHECK(redirect_begin(&out, STD_OUTPUT_HANDLE));
	CHECK_EQ(session_spawn(&s, argv, NULL), 0);
	redirect_restore(&out);
	if (s) {
		CHECK_EQ(session_wait(s), 0);
		CHECK(session_result(s) && session_result(s)->exit_status == 0);
		session_free(s);
	}
	redirect_read_all(&out, text, sizeof text);
	redirect_close(&out);
	CHECK_STR_EQ(text, "privileges 1 admin 0\n");
}

/* Writes a file that is not a program, in the temporary directory. */
static bool make_not_a_program(char *path, size_t n)
{
	wchar_t dir[MAX_PATH], file[MAX_PATH];
	HANDLE h;
	DWORD done;

	if (!GetTempPathW(MAX_PATH, dir))
		return false;
	swprintf(file, MAX_PATH, L"%lssluice-not-a-program-%lu.exe", dir,
		 (unsigned long)GetCurrentProcessId());
	h = CreateFileW(file, GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
	if (h == INVALID_HANDLE_VALUE)
		return false;
	WriteFile(h, "not a program\n", 14, &done, NULL);
	CloseHandle(h);
	return to_utf8(file, path, n);
}

/* A COMMAND that cannot be started is not a spawn error: the session ends at once, and its fd
 * is readable so that the loop learns it. Bare names are looked up in PATH only. */
static void test_cannot_start(void)
{
	char not_a_program[4 * MAX_PATH];
	wchar_t old_path[8192], cwd[MAX_PATH];
	DWORD old_len = GetEnvironmentVariableW(L"PATH", old_path, 8192);
	struct {
		const char *name;
		const char *cmd;
		int status;
	} cases[] = {
		{ "bare name not in PATH", "sluice-no-such-program", 127 },
		{ "missing directory", "C:\\sluice\\no\\such\\dir\\prog.exe", 127 },
		{ "missing file", "C:\\windows\\sluice-no-such-program.exe", 127 },
		/* cwd is the helper's directory below, yet a bare name is not searched there */
		{ "bare name only in the current directory", HELPER_NAME, 127 },
		{ "not a program", not_a_program, 126 },
	};

	CHECK(old_len > 0 && old_len < 8192);
	CHECK(make_not_a_program(not_a_program, sizeof not_a_program));
	CHECK(GetCurrentDirectoryW(MAX_PATH, cwd) > 0);
	CHECK(helper() != NULL);
	CHECK(SetCurrentDirectoryW(helper_dir_w));
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *argv[] = { (char *)cases[i].cmd, "exit", "0", NULL };
		struct session *s = NULL;
		const struct session_result *res;
		WSAPOLLFD p;

		check_case("%s", cases[i].name);
		CHECK_EQ(session_spawn(&s, argv, NULL), 0);
		if (!s)
			continue;
		res = session_result(s);
		CHECK(res != NULL);
		if (res) {
			CHECK_EQ(res->end, SESSION_EXEC_FAILED);
			CHECK_EQ(res->exit_status, cases[i].status);
			CHECK(res->code != 0);
		}
		p = (WSAPOLLFD){ .fd = (SOCKET)session_fd(s), .events = POLLRDNORM };
		CHECK_EQ(WSAPoll(&p, 1, DRIVE_MS), 1);
		CHECK_EQ(session_handle_readable(s), 1);
		CHECK_EQ(session_wait(s), 0);
		CHECK_EQ(session_signal(s, SIGTERM), -ESRCH);
		session_free(s);
	}

	/* Found through PATH, ".exe" appended. */
	{
		wchar_t path[8192 + MAX_PATH];
		char *argv[] = { HELPER_NAME, "exit", "9", NULL };
		struct session *s = NULL;

		check_case("bare name in PATH");
		swprintf(path, sizeof path / sizeof path[0], L"%ls;%ls", helper_dir_w, old_path);
		CHECK(SetEnvironmentVariableW(L"PATH", path));
		CHECK_EQ(session_spawn(&s, argv, NULL), 0);
		CHECK(SetEnvironmentVariableW(L"PATH", old_path));
		if (s) {
			CHECK_EQ(session_wait(s), 0);
			CHECK(session_result(s) != NULL);
			if (session_result(s)) {
				CHECK_EQ(session_result(s)->end, SESSION_EXITED);
				CHECK_EQ(session_result(s)->exit_status, 9);
			}
			session_free(s);
		}
	}
	CHECK(SetCurrentDirectoryW(cwd));
	{
		wchar_t file[MAX_PATH];
		if (MultiByteToWideChar(CP_UTF8, 0, not_a_program, -1, file, MAX_PATH))
			DeleteFileW(file);
	}
}

/* SIGTERM / SIGINT end the tree through TerminateJobObject with 128 + signo. */
static void test_signal(void)
{
	static const struct {
		int signo;
		int status;
	} cases[] = {
		{ SIGTERM, 143 },
		{ SIGINT, 130 },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct recorder r = { 0 };
		struct session *s;
		const struct session_result *res;
		uint32_t grandchild = 0;

		check_case("signal %d", cases[i].signo);
		s = start_tree(&r, &grandchild);
		if (!s)
			continue;
		CHECK(session_owns_process(s, (uint32_t)session_pid(s)));
		CHECK(session_owns_process(s, grandchild));
		CHECK(!session_owns_process(s, (uint32_t)GetCurrentProcessId()));
		CHECK_EQ(session_signal(s, SIGABRT), -EINVAL);
		CHECK_EQ(session_signal(s, 0), -EINVAL);
		CHECK_EQ(session_signal(s, cases[i].signo), 0);
		CHECK_EQ(drive(s, NULL, NULL), 1);
		res = session_result(s);
		CHECK(res != NULL);
		if (res) {
			CHECK_EQ(res->end, SESSION_KILLED);
			CHECK_EQ(res->code, cases[i].signo);
			CHECK_EQ(res->wait_status, cases[i].status);
			CHECK_EQ(res->exit_status, cases[i].status);
		}
		CHECK_EQ(session_signal(s, cases[i].signo), -ESRCH);
		CHECK(!session_owns_process(s, (uint32_t)session_pid(s)));
		/* Wine sends no EXIT_PROCESS after TerminateJobObject: stops may come at the end */
		check_balanced(&r);
		CHECK_EQ(check_all_gone(&r), 2);
		for (size_t k = 0; k < r.nh; k++) {
			DWORD code = 0;
			CHECK(GetExitCodeProcess(r.handles[k], &code));
			CHECK_EQ(code, 128u + (unsigned)cases[i].signo);
		}
		session_free(s);
		recorder_close(&r);
	}
}

/* A callback registered late hears at once about the processes already known; session_free
 * never calls it. */
static void test_callback_registered_late(void)
{
	char *argv[] = { (char *)helper(), "sleep", LONG_SLEEP, NULL };
	struct lines lines = { .len = 0 };
	struct recorder r = { 0 };
	struct redirect out;
	struct session *s = NULL;
	char ready[32];
	WSAPOLLFD p;
	uint32_t pid;

	CHECK(redirect_begin(&out, STD_OUTPUT_HANDLE));
	CHECK_EQ(session_spawn(&s, argv, NULL), 0);
	redirect_restore(&out);
	if (!s) {
		redirect_close(&out);
		return;
	}
	r.s = s;
	pid = (uint32_t)session_pid(s);
	/* COMMAND's NEW_PROCESS is the first record; read it with no callback registered. */
	p = (WSAPOLLFD){ .fd = (SOCKET)session_fd(s), .events = POLLRDNORM };
	CHECK_EQ(WSAPoll(&p, 1, DRIVE_MS), 1);
	CHECK_EQ(session_handle_readable(s), 0);
	session_on_process(s, record, &r);
	CHECK_EQ(r.n, 1);
	CHECK(r.ev[0].pid == pid && r.ev[0].started);
	snprintf(ready, sizeof ready, "ready %lu\n", (unsigned long)pid);
	CHECK(wait_line(out.ours, &lines, ready) != NULL); /* see wait_grandchild_ready */
	session_free(s);
	CHECK_EQ(r.n, 1);
	CHECK_EQ(check_all_gone(&r), 1);
	redirect_close(&out);
	recorder_close(&r);
}

/* session_free ends a tree that still runs, and returns when it is gone. */
static void test_free_ends_running_tree(void)
{
	struct recorder r = { 0 };
	struct session *s;
	uint32_t grandchild = 0;
	size_t seen;

	s = start_tree(&r, &grandchild);
	if (!s)
		return;
	seen = r.n;
	CHECK(session_result(s) == NULL);
	session_free(s);
	CHECK_EQ(r.n, seen);
	CHECK_EQ(check_all_gone(&r), 2);
	for (size_t k = 0; k < r.nh; k++) {
		DWORD code = 0;
		CHECK(GetExitCodeProcess(r.handles[k], &code));
		CHECK_EQ(code, SESSION_WINDOWS_KILL_CODE);
	}
	recorder_close(&r);
}

/* When COMMAND exits, what is left of its tree is ended before the session reports its end. */
static void test_end_ends_rest_of_tree(void)
{
	char *argv[] = { (char *)helper(), "spawn-grandchild-then-read", "5", NULL };
	struct lines lines = { .len = 0 };
	struct recorder r = { 0 };
	struct redirect in, out;
	struct session *s = NULL;
	const struct session_result *res;
	uint32_t command, grandchild;
	DWORD done;
	int i;

	CHECK(redirect_begin(&in, STD_INPUT_HANDLE));
	CHECK(redirect_begin(&out, STD_OUTPUT_HANDLE));
	CHECK_EQ(session_spawn(&s, argv, NULL), 0);
	redirect_restore(&out);
	redirect_restore(&in);
	if (!s) {
		redirect_close(&out);
		redirect_close(&in);
		return;
	}
	r.s = s;
	command = (uint32_t)session_pid(s);
	session_on_process(s, record, &r);
	grandchild = wait_grandchild_ready(out.ours, &lines);
	CHECK(grandchild != 0);
	CHECK_EQ(drive(s, two_started, &r), 0);
	CHECK(WriteFile(in.ours, "x", 1, &done, NULL)); /* COMMAND exits 5 on reading it */
	CHECK_EQ(drive(s, NULL, NULL), 1);
	res = session_result(s);
	CHECK(res && res->end == SESSION_EXITED && res->exit_status == 5);
	CHECK_EQ(check_all_gone(&r), 2);
	i = find_event(&r, grandchild, false);
	CHECK(i > 0 && r.ev[i].after_end); /* it ended with the session, not before */
	CHECK(find_event(&r, command, false) > 0);
	check_balanced(&r);
	session_free(s);
	redirect_close(&out);
	redirect_close(&in);
	recorder_close(&r);
}

/* Only the standard handles are inherited: an inheritable event of sluice's is not. */
static void test_only_std_handles_inherited(void)
{
	SECURITY_ATTRIBUTES sa = { sizeof sa, NULL, TRUE };
	HANDLE ev = CreateEventW(&sa, TRUE, FALSE, NULL);
	char value[32];
	char *argv[] = { (char *)helper(), "set-event", value, NULL };
	struct session *s = NULL;

	CHECK(ev != NULL);
	snprintf(value, sizeof value, "%llu", (unsigned long long)(uintptr_t)ev);
	CHECK_EQ(session_spawn(&s, argv, NULL), 0);
	if (s) {
		CHECK_EQ(session_wait(s), 0);
		CHECK(session_result(s) && session_result(s)->exit_status == 0);
		session_free(s);
	}
	CHECK_EQ(WaitForSingleObject(ev, 0), WAIT_TIMEOUT);

	/* The same child started with plain inheritance does set it: the check can fail. */
	{
		wchar_t cmdline[2 * MAX_PATH];
		STARTUPINFOW si = { .cb = sizeof si };
		PROCESS_INFORMATION pi;

		swprintf(cmdline, sizeof cmdline / sizeof cmdline[0], L"\"%ls\\" HELPER_NAME
			 ".exe\" set-event %llu", helper_dir_w, (unsigned long long)(uintptr_t)ev);
		CHECK(CreateProcessW(NULL, cmdline, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi));
		CHECK_EQ(WaitForSingleObject(pi.hProcess, DRIVE_MS), WAIT_OBJECT_0);
		CloseHandle(pi.hThread);
		CloseHandle(pi.hProcess);
		CHECK_EQ(WaitForSingleObject(ev, 0), WAIT_OBJECT_0);
	}
	CloseHandle(ev);
}

/* --host-and-die: runs a tree in a session, prints "pids A B\n", waits for a byte on stdin,
 * then terminates itself without session_free, as `taskkill /F` would. */
static int host_and_die(void)
{
	char *argv[] = { (char *)helper(), "spawn-grandchild-then-sleep", LONG_SLEEP, NULL };
	struct recorder r = { 0 };
	struct session *s = NULL;
	char line[64], byte;
	DWORD done;

	if (session_spawn(&s, argv, NULL) != 0)
		return 2;
	r.s = s;
	session_on_process(s, record, &r);
	if (drive(s, two_started, &r) != 0)
		return 3;
	snprintf(line, sizeof line, "pids %lu %lu\n", (unsigned long)r.ev[0].pid,
		 (unsigned long)r.ev[1].pid);
	WriteFile(GetStdHandle(STD_OUTPUT_HANDLE), line, (DWORD)strlen(line), &done, NULL);
	ReadFile(GetStdHandle(STD_INPUT_HANDLE), &byte, 1, &done, NULL);
	TerminateProcess(GetCurrentProcess(), 4);
	return 5;
}

/* If sluice dies without session_free, kill-on-close ends the tree. */
static void test_kill_on_close(void)
{
	SECURITY_ATTRIBUTES sa = { sizeof sa, NULL, TRUE };
	HANDLE in_rd, in_wr, out_rd, out_wr, tree[2] = { NULL, NULL };
	wchar_t self[MAX_PATH], cmdline[MAX_PATH + 32];
	STARTUPINFOW si = { .cb = sizeof si };
	PROCESS_INFORMATION pi;
	struct lines lines = { .len = 0 };
	const char *line;
	unsigned long a = 0, b = 0;
	DWORD got;

	CHECK(CreatePipe(&in_rd, &in_wr, &sa, 0));
	CHECK(CreatePipe(&out_rd, &out_wr, &sa, 0));
	SetHandleInformation(in_wr, HANDLE_FLAG_INHERIT, 0);
	SetHandleInformation(out_rd, HANDLE_FLAG_INHERIT, 0);
	CHECK(GetModuleFileNameW(NULL, self, MAX_PATH) > 0);
	swprintf(cmdline, sizeof cmdline / sizeof cmdline[0], L"\"%ls\" --host-and-die", self);
	si.dwFlags = STARTF_USESTDHANDLES;
	si.hStdInput = in_rd;
	si.hStdOutput = out_wr;
	si.hStdError = GetStdHandle(STD_ERROR_HANDLE);
	CHECK(CreateProcessW(NULL, cmdline, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi));
	CloseHandle(in_rd);
	CloseHandle(out_wr);
	/* Lines in any order: the host's "pids A B", COMMAND's "grandchild PID" and the
	 * grandchild's "ready PID" (see wait_grandchild_ready). The tree keeps the pipe open, so
	 * the test reads lines, not up to EOF. */
	line = wait_line(out_rd, &lines, "pids ");
	CHECK(line != NULL);
	CHECK(line && sscanf(line, "pids %lu %lu", &a, &b) == 2);
	CHECK(wait_grandchild_ready(out_rd, &lines) != 0);
	tree[0] = OpenProcess(SYNCHRONIZE, FALSE, (DWORD)a);
	tree[1] = OpenProcess(SYNCHRONIZE, FALSE, (DWORD)b);
	CHECK(tree[0] != NULL && tree[1] != NULL);
	CHECK_EQ(WaitForSingleObject(tree[0], 0), WAIT_TIMEOUT);
	CHECK(WriteFile(in_wr, "x", 1, &got, NULL));
	CHECK_EQ(WaitForSingleObject(pi.hProcess, DRIVE_MS), WAIT_OBJECT_0);
	CHECK(GetExitCodeProcess(pi.hProcess, &got) && got == 4);
	if (tree[0] && tree[1])
		CHECK_EQ(WaitForMultipleObjects(2, tree, TRUE, DRIVE_MS), WAIT_OBJECT_0);
	for (int i = 0; i < 2; i++)
		if (tree[i])
			CloseHandle(tree[i]);
	CloseHandle(pi.hThread);
	CloseHandle(pi.hProcess);
	CloseHandle(in_wr);
	CloseHandle(out_rd);
}

/* True under Wine (ntdll exports wine_get_version). */
static bool under_wine(void)
{
	HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");

	return ntdll && GetProcAddress(ntdll, "wine_get_version") != NULL;
}

/* --ctrl-c-host: on a console of its own, runs a tree in a session, sends Ctrl-C to the console
 * once the tree has started, and prints "survived CODE STATUS\n" (COMMAND's exit code, sluice's
 * exit status) if it is still alive when the session has ended. Exits 42 then. */
static int ctrl_c_host(void)
{
	HANDLE report = GetStdHandle(STD_OUTPUT_HANDLE); /* AllocConsole replaces it */
	struct recorder r = { 0 };
	const struct session_result *res;
	struct session *s;
	uint32_t grandchild = 0;
	char line[64];
	DWORD done;

	FreeConsole();
	if (!AllocConsole())
		return 2;
	s = start_tree(&r, &grandchild);
	if (!s || !grandchild)
		return 3;
	if (!GenerateConsoleCtrlEvent(CTRL_C_EVENT, 0))
		return 4;
	if (drive(s, NULL, NULL) != 1 || !(res = session_result(s)))
		return 5;
	snprintf(line, sizeof line, "survived %lu %d\n", (unsigned long)(uint32_t)res->code,
		 res->exit_status);
	WriteFile(report, line, (DWORD)strlen(line), &done, NULL);
	session_free(s);
	recorder_close(&r);
	return 42;
}

/* Ctrl-C on the shared console ends COMMAND, not sluice. */
static void test_ctrl_c(void)
{
	SECURITY_ATTRIBUTES sa = { sizeof sa, NULL, TRUE };
	HANDLE out_rd, out_wr;
	wchar_t self[MAX_PATH], cmdline[MAX_PATH + 32];
	STARTUPINFOW si = { .cb = sizeof si };
	PROCESS_INFORMATION pi;
	struct lines lines = { .len = 0 };
	const char *line;
	unsigned long code = 1;
	int status = -1;
	DWORD got;

	CHECK(CreatePipe(&out_rd, &out_wr, &sa, 0));
	SetHandleInformation(out_rd, HANDLE_FLAG_INHERIT, 0);
	CHECK(GetModuleFileNameW(NULL, self, MAX_PATH) > 0);
	swprintf(cmdline, sizeof cmdline / sizeof cmdline[0], L"\"%ls\" --ctrl-c-host", self);
	si.dwFlags = STARTF_USESTDHANDLES;
	si.hStdOutput = out_wr;
	si.hStdError = GetStdHandle(STD_ERROR_HANDLE);
	CHECK(CreateProcessW(NULL, cmdline, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi));
	CloseHandle(out_wr);
	/* A line, not EOF: the console's host process may keep the pipe open. */
	line = wait_line(out_rd, &lines, "survived ");
	CHECK_EQ(WaitForSingleObject(pi.hProcess, DRIVE_MS), WAIT_OBJECT_0);
	CHECK(GetExitCodeProcess(pi.hProcess, &got) && got == 42);
	CHECK(line && sscanf(line, "survived %lu %d", &code, &status) == 2);
	if (under_wine()) {
		/* Wine's default console handler exits with 0. */
		CHECK_EQ(code, 0);
		CHECK_EQ(status, 0);
	} else {
		CHECK_EQ(code, 0xC000013A); /* STATUS_CONTROL_C_EXIT */
		CHECK_EQ(status, 130);
	}
	CloseHandle(pi.hThread);
	CloseHandle(pi.hProcess);
	CloseHandle(out_rd);
}

static const struct check_test tests[] = {
	{ "command_line", test_command_line },
	{ "command_line_errors", test_command_line_errors },
	{ "exit_status_mapping", test_exit_status_mapping },
	{ "exit_codes", test_exit_codes },
	{ "process_tree", test_process_tree },
	{ "arguments_round_trip", test_arguments_round_trip },
	{ "command_not_admin", test_command_not_admin },
	{ "cannot_start", test_cannot_start },
	{ "signal", test_signal },
	{ "callback_registered_late", test_callback_registered_late },
	{ "free_ends_running_tree", test_free_ends_running_tree },
	{ "end_ends_rest_of_tree", test_end_ends_rest_of_tree },
	{ "only_std_handles_inherited", test_only_std_handles_inherited },
	{ "kill_on_close", test_kill_on_close },
	{ "ctrl_c", test_ctrl_c },
};

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--host-and-die") == 0)
		return host_and_die();
	if (argc == 2 && strcmp(argv[1], "--ctrl-c-host") == 0)
		return ctrl_c_host();
	if (!helper()) {
		fprintf(stderr, "cannot locate " HELPER_NAME ".exe\n");
		return 1;
	}
	return check_run(tests, sizeof tests / sizeof tests[0], argc, argv);
}
