/* log.c — formatting and writing of sluice's stderr lines (see log.h). */
#include "base/log.h"
#include "base/err_text.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define LOG_PREFIX "sluice: "
#define LOG_ELLIPSIS "..."

static enum log_level log_level = LOG_LEVEL_INFO;
static FILE *log_stream;
static void (*log_fatal_hook)(int status);

enum log_level log_set_level(enum log_level level)
{
	enum log_level old = log_level;

	log_level = level;
	return old;
}

enum log_level log_get_level(void)
{
	return log_level;
}

FILE *log_set_stream(FILE *stream)
{
	FILE *old = log_stream ? log_stream : stderr;

	log_stream = stream;
	return old;
}

void log_set_fatal_hook(void (*hook)(int status))
{
	log_fatal_hook = hook;
}

/* Appends the formatted text at line[*len], keeping *len below cap (vsnprintf truncates). */
LOG_PRINTF(4, 0)
static void line_vappend(char *line, size_t cap, size_t *len, const char *fmt, va_list ap)
{
	int n;

	if (*len + 1 >= cap)
		return;
	n = vsnprintf(line + *len, cap - *len, fmt, ap);
	if (n < 0)
		return;
	*len = (size_t)n >= cap - *len ? cap - 1 : *len + (size_t)n;
}

LOG_PRINTF(4, 5)
static void line_append(char *line, size_t cap, size_t *len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	line_vappend(line, cap, len, fmt, ap);
	va_end(ap);
}

/* Builds "sluice: TAGmessage[: strerror]\n" in one buffer and writes it with one fwrite. */
LOG_PRINTF(4, 0)
static void log_vwrite(enum log_level level, const char *tag, int err, const char *fmt,
		       va_list ap)
{
	/* One byte beyond LOG_LINE_MAX tells a cut line from one that just fits. */
	char line[LOG_LINE_MAX + 1];
	size_t prefix = strlen(LOG_PREFIX) + strlen(tag);
	size_t len = 0;
	int saved = errno;
	FILE *stream = log_stream ? log_stream : stderr;

	if (level > log_level && level != LOG_LEVEL_ERROR)
		return;
	line_append(line, sizeof line, &len, "%s%s", LOG_PREFIX, tag);
	line_vappend(line, sizeof line, &len, fmt, ap);
	while (len > prefix && line[len - 1] == '\n')
		len--;
	if (err != 0)
		line_append(line, sizeof line, &len, ": %s", err_text(err));
	for (size_t i = prefix; i < len; i++) {
		unsigned char c = (unsigned char)line[i];

		if (c < 0x20 || c == 0x7f)
			line[i] = '?';
	}
	if (len > LOG_LINE_MAX - 1) {
		len = LOG_LINE_MAX - 1 - strlen(LOG_ELLIPSIS);
		memcpy(line + len, LOG_ELLIPSIS, strlen(LOG_ELLIPSIS));
		len += strlen(LOG_ELLIPSIS);
	}
	line[len++] = '\n';
	fwrite(line, 1, len, stream);
	fflush(stream);
	errno = saved;
}

void log_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_ERROR, "", 0, fmt, ap);
	va_end(ap);
}

void log_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_WARN, "warning: ", 0, fmt, ap);
	va_end(ap);
}

void log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_INFO, "", 0, fmt, ap);
	va_end(ap);
}

void log_debug(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_DEBUG, "debug: ", 0, fmt, ap);
	va_end(ap);
}

void log_errno(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_ERROR, "", err, fmt, ap);
	va_end(ap);
}

void log_warn_errno(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_WARN, "warning: ", err, fmt, ap);
	va_end(ap);
}

static _Noreturn void fatal_exit(void)
{
	if (log_fatal_hook)
		log_fatal_hook(LOG_FATAL_STATUS);
	exit(LOG_FATAL_STATUS);
}

_Noreturn void fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_ERROR, "", 0, fmt, ap);
	va_end(ap);
	fatal_exit();
}

_Noreturn void fatal_errno(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_ERROR, "", err, fmt, ap);
	va_end(ap);
	fatal_exit();
}
