/* test_log.c — log line formats, verbosity, errno preservation, cutting, fatal(). */
#include "base/log.h"
#include "check.h"

#include <errno.h>
#include <setjmp.h>

/* Collects what one call wrote: the log stream is a temporary file, read back after the call. */
struct capture {
	FILE *file;
	FILE *old;
	char text[4 * LOG_LINE_MAX];
};

static void capture_begin(struct capture *c)
{
	c->file = tmpfile();
	if (!c->file) {
		perror("tmpfile");
		exit(1);
	}
	c->old = log_set_stream(c->file);
}

static const char *capture_end(struct capture *c)
{
	size_t n;

	log_set_stream(c->old);
	rewind(c->file);
	n = fread(c->text, 1, sizeof c->text - 1, c->file);
	c->text[n] = '\0';
	fclose(c->file);
	return c->text;
}

/* The expected text of a line ending in ": strerror(err)". */
static const char *with_strerror(char *buf, size_t n, const char *head, int err)
{
	snprintf(buf, n, "%s: %s\n", head, strerror(err));
	return buf;
}

static void call_error(void)
{
	log_error("cannot open %s", "policy.rules");
}

static void call_warn(void)
{
	log_warn("ignoring %d unknown option%s", 2, "s");
}

static void call_info(void)
{
	log_info("denied tcp %s:%u (%s) by %s:%d", "198.51.100.20", 80u, "b.test", "policy.rules",
		 4);
}

static void call_debug(void)
{
	log_debug("flow %#x", 0x2au);
}

static void call_errno_positive(void)
{
	log_errno(ENOENT, "cannot open %s", "x.rules");
}

static void call_errno_negative(void)
{
	log_errno(-ENOENT, "cannot open %s", "x.rules");
}

static void call_errno_zero(void)
{
	log_errno(0, "no error code");
}

static void call_warn_errno(void)
{
	log_warn_errno(-EAGAIN, "retrying");
}

static void call_trailing_newline(void)
{
	log_error("habit\n\n");
}

static void call_only_newline(void)
{
	log_error("\n");
}

static void call_control_chars(void)
{
	log_info("name %s end", "a\nb\r\x1b[31mc\x7f" "d\te");
}

static void call_percent(void)
{
	log_error("100%% of %s", "%s%n");
}

static void test_formats(void)
{
	const struct {
		const char *name;
		void (*call)(void);
		enum log_level level;
		const char *want;
	} cases[] = {
		{ "error", call_error, LOG_LEVEL_INFO, "sluice: cannot open policy.rules\n" },
		{ "warn", call_warn, LOG_LEVEL_INFO,
		  "sluice: warning: ignoring 2 unknown options\n" },
		{ "info", call_info, LOG_LEVEL_INFO,
		  "sluice: denied tcp 198.51.100.20:80 (b.test) by policy.rules:4\n" },
		{ "debug shown", call_debug, LOG_LEVEL_DEBUG, "sluice: debug: flow 0x2a\n" },
		{ "debug hidden by default", call_debug, LOG_LEVEL_INFO, "" },
		{ "errno positive", call_errno_positive, LOG_LEVEL_INFO, NULL },
		{ "errno negative", call_errno_negative, LOG_LEVEL_INFO, NULL },
		{ "errno zero", call_errno_zero, LOG_LEVEL_INFO, "sluice: no error code\n" },
		{ "trailing newlines dropped", call_trailing_newline, LOG_LEVEL_INFO,
		  "sluice: habit\n" },
		{ "only a newline", call_only_newline, LOG_LEVEL_INFO, "sluice: \n" },
		{ "control characters", call_control_chars, LOG_LEVEL_INFO,
		  "sluice: name a?b??[31mc?d?e end\n" },
		{ "percent signs", call_percent, LOG_LEVEL_INFO, "sluice: 100% of %s%n\n" },
	};
	char enoent[LOG_LINE_MAX];
	char eagain[LOG_LINE_MAX];

	with_strerror(enoent, sizeof enoent, "sluice: cannot open x.rules", ENOENT);
	with_strerror(eagain, sizeof eagain, "sluice: warning: retrying", EAGAIN);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct capture c;
		enum log_level old = log_set_level(cases[i].level);
		const char *want = cases[i].want ? cases[i].want : enoent;

		check_case("%s", cases[i].name);
		capture_begin(&c);
		cases[i].call();
		CHECK_STR_EQ(capture_end(&c), want);
		log_set_level(old);
	}
	check_case("%s", "warn with errno");
	{
		struct capture c;

		capture_begin(&c);
		call_warn_errno();
		CHECK_STR_EQ(capture_end(&c), eagain);
	}
}

/* Which messages each verbosity lets through; errors always pass. */
static void test_levels(void)
{
	static const struct {
		enum log_level level;
		const char *want; /* followed by the log_errno line, always written */
	} cases[] = {
		{ LOG_LEVEL_ERROR, "sluice: e\n" },
		{ LOG_LEVEL_WARN, "sluice: e\nsluice: warning: w\n" },
		{ LOG_LEVEL_INFO, "sluice: e\nsluice: warning: w\nsluice: i\n" },
		{ LOG_LEVEL_DEBUG, "sluice: e\nsluice: warning: w\nsluice: i\nsluice: debug: d\n" },
	};
	char tail[LOG_LINE_MAX];

	CHECK_EQ(log_get_level(), LOG_LEVEL_INFO);
	with_strerror(tail, sizeof tail, "sluice: e2", EIO);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct capture c;
		char want[4 * LOG_LINE_MAX];
		enum log_level old;

		check_case("level %d", (int)cases[i].level);
		old = log_set_level(cases[i].level);
		CHECK_EQ(old, LOG_LEVEL_INFO);
		CHECK_EQ(log_get_level(), cases[i].level);
		capture_begin(&c);
		log_error("e");
		log_warn("w");
		log_info("i");
		log_debug("d");
		log_errno(EIO, "e2");
		snprintf(want, sizeof want, "%s%s", cases[i].want, tail);
		CHECK_STR_EQ(capture_end(&c), want);
		log_set_level(old);
	}
	check_case("%s", "");
}

static void test_errno_preserved(void)
{
	static const struct {
		const char *name;
		enum log_level level;
	} cases[] = {
		{ "written", LOG_LEVEL_DEBUG },
		{ "suppressed", LOG_LEVEL_ERROR },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct capture c;
		enum log_level old = log_set_level(cases[i].level);

		check_case("%s", cases[i].name);
		capture_begin(&c);
		errno = EAGAIN;
		log_error("x");
		CHECK_EQ(errno, EAGAIN);
		log_warn("x");
		CHECK_EQ(errno, EAGAIN);
		log_info("x");
		CHECK_EQ(errno, EAGAIN);
		log_debug("x");
		CHECK_EQ(errno, EAGAIN);
		log_errno(ENOENT, "x");
		CHECK_EQ(errno, EAGAIN);
		log_warn_errno(-ENOSPC, "x");
		CHECK_EQ(errno, EAGAIN);
		/* An out-of-range code makes strerror set EINVAL on some C libraries. */
		log_errno(-100000, "x");
		CHECK_EQ(errno, EAGAIN);
		errno = 0;
		log_error("x");
		CHECK_EQ(errno, 0);
		capture_end(&c);
		log_set_level(old);
	}

	/* A stream that fails on write (opened for reading) sets errno inside the C library. */
	check_case("%s", "failing stream");
	{
		const char *path = "test_log.tmp";
		FILE *f = fopen(path, "w");
		FILE *old;

		CHECK(f != NULL);
		if (f)
			fclose(f);
		f = fopen(path, "r");
		CHECK(f != NULL);
		if (f) {
			old = log_set_stream(f);
			errno = EAGAIN;
			log_error("lost");
			CHECK_EQ(errno, EAGAIN);
			errno = 0;
			log_errno(ENOENT, "lost");
			CHECK_EQ(errno, 0);
			log_set_stream(old);
			fclose(f);
		}
		remove(path);
	}
	check_case("%s", "");
}

/* A line never exceeds LOG_LINE_MAX bytes; a cut one ends with "...". */
static void test_long_lines(void)
{
	static const struct {
		const char *name;
		size_t message;
		int err;
		bool cut;
	} cases[] = {
		{ "short", 10, 0, false },
		{ "just fits", LOG_LINE_MAX - 9, 0, false },
		{ "one too many", LOG_LINE_MAX - 8, 0, true },
		{ "far too long", 3 * LOG_LINE_MAX, 0, true },
		{ "errno suffix cut", LOG_LINE_MAX - 12, ENOENT, true },
	};
	static char message[3 * LOG_LINE_MAX + 1];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct capture c;
		size_t len, n = cases[i].message;

		check_case("%s", cases[i].name);
		memset(message, 'a', n);
		message[n] = '\0';
		capture_begin(&c);
		log_errno(cases[i].err, "%s", message);
		capture_end(&c);
		len = strlen(c.text);
		CHECK(len <= LOG_LINE_MAX);
		CHECK(len > 0 && c.text[len - 1] == '\n');
		CHECK(strchr(c.text, '\n') == c.text + len - 1);
		CHECK(strncmp(c.text, "sluice: aaa", 11) == 0);
		if (cases[i].cut) {
			CHECK_EQ(len, LOG_LINE_MAX);
			CHECK(len >= 4 && strcmp(c.text + len - 4, "...\n") == 0);
		} else {
			CHECK_EQ(len, strlen("sluice: ") + n + 1);
		}
	}
	check_case("%s", "");
}

static void test_set_stream(void)
{
	struct capture c;
	FILE *prev;

	capture_begin(&c);
	CHECK(c.old == stderr);
	prev = log_set_stream(NULL);
	CHECK(prev == c.file);
	prev = log_set_stream(c.file);
	CHECK(prev == stderr);
	log_error("back");
	CHECK_STR_EQ(capture_end(&c), "sluice: back\n");
}

static jmp_buf fatal_jump;
static int fatal_status;

static void fatal_hook(int status)
{
	fatal_status = status;
	longjmp(fatal_jump, 1);
}

static void test_fatal(void)
{
	char want[LOG_LINE_MAX];
	struct capture c;

	with_strerror(want, sizeof want, "sluice: cannot create namespace", EPERM);
	log_set_fatal_hook(fatal_hook);
	log_set_level(LOG_LEVEL_ERROR);

	fatal_status = 0;
	capture_begin(&c);
	errno = EINTR;
	if (setjmp(fatal_jump) == 0)
		fatal("no %s backend on this system", "windivert");
	CHECK_EQ(errno, EINTR);
	CHECK_EQ(fatal_status, 125);
	CHECK_STR_EQ(capture_end(&c), "sluice: no windivert backend on this system\n");

	fatal_status = 0;
	capture_begin(&c);
	if (setjmp(fatal_jump) == 0)
		fatal_errno(-EPERM, "cannot create namespace");
	CHECK_EQ(fatal_status, LOG_FATAL_STATUS);
	CHECK_STR_EQ(capture_end(&c), want);

	log_set_level(LOG_LEVEL_INFO);
	log_set_fatal_hook(NULL);
}

static const struct check_test tests[] = {
	{ "formats", test_formats },
	{ "levels", test_levels },
	{ "errno_preserved", test_errno_preserved },
	{ "long_lines", test_long_lines },
	{ "set_stream", test_set_stream },
	{ "fatal", test_fatal },
};

CHECK_MAIN(tests)
