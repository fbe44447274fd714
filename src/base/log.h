/* log.h — one-line messages on stderr prefixed "sluice: ", and fatal() for sluice's own failures.
 *
 * Every message is one line written with a single fwrite, so that lines from several writers
 * never mix. Control characters in the message (a hostile DNS name or SNI can carry them) are
 * written as '?'; a message longer than LOG_LINE_MAX is cut and ends with "...". No log call
 * changes errno. Not thread-safe: the settings are process-wide.
 */
#ifndef SLUICE_BASE_LOG_H
#define SLUICE_BASE_LOG_H

#include <stdbool.h>
#include <stdio.h>

#if defined(__MINGW32__)
/* mingw's stdio under -std=c11 is the C99 one (%zu, %lld), which gcc calls gnu_printf. */
#define LOG_PRINTF(fmt_index, first_arg) __attribute__((format(gnu_printf, fmt_index, first_arg)))
#elif defined(__GNUC__)
#define LOG_PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))
#else
#define LOG_PRINTF(fmt_index, first_arg)
#endif

/* Longest line written, with its "sluice: " prefix and newline. */
#define LOG_LINE_MAX 1024

/* Exit status of fatal(): sluice itself failed (DESIGN.md, "CLI"). */
#define LOG_FATAL_STATUS 125

/* Verbosity, least verbose first. A message is written when its level is at most the setting. */
enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARN = 1,
	LOG_LEVEL_INFO = 2, /* the default; --quiet lowers it to LOG_LEVEL_WARN */
	LOG_LEVEL_DEBUG = 3,
};

/* Sets the verbosity; errors are always written. Returns the previous setting. */
enum log_level log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* Sends the messages to stream (borrowed; NULL: back to stderr). Returns the previous stream. */
FILE *log_set_stream(FILE *stream);

/* "sluice: MESSAGE". */
void log_error(const char *fmt, ...) LOG_PRINTF(1, 2);

/* "sluice: warning: MESSAGE", unless the level is below LOG_LEVEL_WARN. */
void log_warn(const char *fmt, ...) LOG_PRINTF(1, 2);

/* "sluice: MESSAGE", unless quiet (level below LOG_LEVEL_INFO). */
void log_info(const char *fmt, ...) LOG_PRINTF(1, 2);

/* "sluice: debug: MESSAGE", only at LOG_LEVEL_DEBUG. */
void log_debug(const char *fmt, ...) LOG_PRINTF(1, 2);

/* "sluice: MESSAGE: strerror(err)" at error level. err is an errno value, positive or negated
 * (the module's return codes); 0 writes the message alone. */
void log_errno(int err, const char *fmt, ...) LOG_PRINTF(2, 3);

/* Like log_warn, with ": strerror(err)" appended as in log_errno. */
void log_warn_errno(int err, const char *fmt, ...) LOG_PRINTF(2, 3);

/* Writes "sluice: MESSAGE" and exits with LOG_FATAL_STATUS (exit(), so atexit cleanup runs). */
_Noreturn void fatal(const char *fmt, ...) LOG_PRINTF(1, 2);

/* Like fatal, with ": strerror(err)" appended as in log_errno. */
_Noreturn void fatal_errno(int err, const char *fmt, ...) LOG_PRINTF(2, 3);

/* For tests: fatal() calls hook(LOG_FATAL_STATUS) instead of exit(), after the message. The hook
 * must not return (a test longjmps out); if it does, exit() follows. NULL restores exit(). */
void log_set_fatal_hook(void (*hook)(int status));

#endif
