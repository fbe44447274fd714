/* json.c — the bounded JSON writer: escaping, UTF-8 checking, nesting and commas. */
#include "audit/json.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

/* Longest output of one input character: "\u00XX" or "\u2028". */
#define PIECE_MAX 6

static const char hex_digits[] = "0123456789abcdef";

/* Length (1..4) of the well-formed UTF-8 sequence at s[0..n) and its code point in *cp, or 0 when
 * s[0] does not start one (Unicode 15, table 3-7: no overlongs, no surrogates, <= U+10FFFF). */
static size_t utf8_sequence(const uint8_t *s, size_t n, uint32_t *cp)
{
	uint8_t lead = s[0], lo = 0x80, hi = 0xBF;
	size_t need;
	uint32_t c;

	if (lead < 0x80) {
		*cp = lead;
		return 1;
	}
	if (lead < 0xC2) {
		return 0;
	} else if (lead < 0xE0) {
		need = 2;
		c = lead & 0x1Fu;
	} else if (lead < 0xF0) {
		need = 3;
		c = lead & 0x0Fu;
		if (lead == 0xE0)
			lo = 0xA0;
		else if (lead == 0xED)
			hi = 0x9F;
	} else if (lead < 0xF5) {
		need = 4;
		c = lead & 0x07u;
		if (lead == 0xF0)
			lo = 0x90;
		else if (lead == 0xF4)
			hi = 0x8F;
	} else {
		return 0;
	}
	if (n < need)
		return 0;
	for (size_t i = 1; i < need; i++) {
		if (s[i] < lo || s[i] > hi)
			return 0;
		lo = 0x80;
		hi = 0xBF;
		c = c << 6 | (s[i] & 0x3Fu);
	}
	*cp = c;
	return need;
}

/* Stores the JSON form of the character at s[0..n) (n > 0) in out and the number of input bytes
 * it stands for in *used; returns the output length (1..PIECE_MAX). */
static size_t escape_next(const uint8_t *s, size_t n, char out[PIECE_MAX], size_t *used)
{
	uint32_t cp;
	size_t seq = utf8_sequence(s, n, &cp);

	if (seq == 0) {
		*used = 1;
		memcpy(out, "\xEF\xBF\xBD", 3);
		return 3;
	}
	*used = seq;
	if (seq > 1) {
		if (cp == 0x2028 || cp == 0x2029) {
			memcpy(out, cp == 0x2028 ? "\\u2028" : "\\u2029", 6);
			return 6;
		}
		memcpy(out, s, seq);
		return seq;
	}
	out[0] = '\\';
	switch (cp) {
	case '"':  out[1] = '"'; return 2;
	case '\\': out[1] = '\\'; return 2;
	case '\b': out[1] = 'b'; return 2;
	case '\t': out[1] = 't'; return 2;
	case '\n': out[1] = 'n'; return 2;
	case '\f': out[1] = 'f'; return 2;
	case '\r': out[1] = 'r'; return 2;
	default:
		break;
	}
	if (cp >= 0x20 && cp != 0x7F) {
		out[0] = (char)cp;
		return 1;
	}
	memcpy(out, "\\u00", 4);
	out[4] = hex_digits[cp >> 4];
	out[5] = hex_digits[cp & 0xF];
	return 6;
}

static bool room(const struct json_writer *w, size_t n)
{
	return w->at.len <= w->limit && n <= w->limit - w->at.len;
}

/* Callers check room() first. */
static void put(struct json_writer *w, const char *s, size_t n)
{
	memcpy(w->buf + w->at.len, s, n);
	w->at.len += n;
}

static void terminate(struct json_writer *w)
{
	if (w->cap)
		w->buf[w->at.len] = '\0';
}

/* Undoes the call in progress back to *saved and makes err sticky. */
static int fail(struct json_writer *w, const struct json_mark *saved, int err)
{
	w->at = *saved;
	w->err = err;
	terminate(w);
	return err;
}

/* A NULL argument: an -EINVAL that keeps the text as it is. */
static int misuse(struct json_writer *w)
{
	if (!w->err)
		w->err = -EINVAL;
	return w->err;
}

static uint32_t level_bit(const struct json_writer *w)
{
	return 1u << (w->at.depth - 1);
}

/* Checks that a value may come here and writes the comma before it. */
static int value_start(struct json_writer *w, struct json_mark *saved)
{
	*saved = w->at;
	if (w->err)
		return w->err;
	if (w->at.depth == 0)
		return w->at.done ? fail(w, saved, -EINVAL) : 0;
	if (w->at.is_object & level_bit(w)) {
		if (!w->at.after_key)
			return fail(w, saved, -EINVAL);
		w->at.after_key = false;
		return 0;
	}
	if (w->at.has_members & level_bit(w)) {
		if (!room(w, 1))
			return fail(w, saved, -ENOSPC);
		put(w, ",", 1);
	}
	w->at.has_members |= level_bit(w);
	return 0;
}

static int value_end(struct json_writer *w)
{
	if (w->at.depth == 0)
		w->at.done = true;
	terminate(w);
	return 0;
}

/* Appends a string's quoted, escaped form within max_out bytes; sets *cut when it stopped early.
 * Returns 0 or -ENOSPC, leaving the undoing to the caller. */
static int put_string(struct json_writer *w, const uint8_t *s, size_t len, size_t max_out,
		      bool *cut)
{
	size_t spent = 1;

	if (!room(w, 2))
		return -ENOSPC;
	put(w, "\"", 1);
	for (size_t i = 0; i < len;) {
		char piece[PIECE_MAX];
		size_t used, n = escape_next(s + i, len - i, piece, &used);

		if (spent + n + 1 > max_out) {
			*cut = true;
			break;
		}
		if (!room(w, n + 1))
			return -ENOSPC;
		put(w, piece, n);
		spent += n;
		i += used;
	}
	put(w, "\"", 1);
	return 0;
}

void json_init(struct json_writer *w, char *buf, size_t cap)
{
	memset(w, 0, sizeof *w);
	w->buf = buf;
	w->cap = cap;
	w->limit = cap ? cap - 1 : 0;
	terminate(w);
}

void json_reserve(struct json_writer *w, size_t reserve)
{
	size_t max = w->cap ? w->cap - 1 : 0;

	w->limit = max > reserve ? max - reserve : 0;
}

static int container_begin(struct json_writer *w, bool object)
{
	struct json_mark saved;
	int err = value_start(w, &saved);

	if (err)
		return err;
	if (w->at.depth == JSON_MAX_DEPTH)
		return fail(w, &saved, -EINVAL);
	if (!room(w, 1))
		return fail(w, &saved, -ENOSPC);
	put(w, object ? "{" : "[", 1);
	w->at.depth++;
	if (object)
		w->at.is_object |= level_bit(w);
	else
		w->at.is_object &= ~level_bit(w);
	w->at.has_members &= ~level_bit(w);
	terminate(w);
	return 0;
}

static int container_end(struct json_writer *w, bool object)
{
	struct json_mark saved = w->at;

	if (w->err)
		return w->err;
	if (w->at.depth == 0 || ((w->at.is_object & level_bit(w)) != 0) != object ||
	    w->at.after_key)
		return fail(w, &saved, -EINVAL);
	if (!room(w, 1))
		return fail(w, &saved, -ENOSPC);
	put(w, object ? "}" : "]", 1);
	w->at.depth--;
	return value_end(w);
}

int json_object_begin(struct json_writer *w)
{
	return container_begin(w, true);
}

int json_object_end(struct json_writer *w)
{
	return container_end(w, true);
}

int json_array_begin(struct json_writer *w)
{
	return container_begin(w, false);
}

int json_array_end(struct json_writer *w)
{
	return container_end(w, false);
}

int json_key(struct json_writer *w, const char *key)
{
	struct json_mark saved = w->at;
	bool cut = false;

	if (w->err)
		return w->err;
	if (!key || w->at.depth == 0 || !(w->at.is_object & level_bit(w)) || w->at.after_key)
		return fail(w, &saved, -EINVAL);
	if (w->at.has_members & level_bit(w)) {
		if (!room(w, 1))
			return fail(w, &saved, -ENOSPC);
		put(w, ",", 1);
	}
	w->at.has_members |= level_bit(w);
	if (put_string(w, (const uint8_t *)key, strlen(key), SIZE_MAX, &cut) != 0 || !room(w, 1))
		return fail(w, &saved, -ENOSPC);
	put(w, ":", 1);
	w->at.after_key = true;
	terminate(w);
	return 0;
}

int json_string_cut(struct json_writer *w, const void *s, size_t len, size_t max_out)
{
	struct json_mark saved;
	bool cut = false;
	int err;

	if (!s && len)
		return misuse(w);
	err = value_start(w, &saved);
	if (err)
		return err;
	if (put_string(w, s, len, max_out, &cut) != 0)
		return fail(w, &saved, -ENOSPC);
	value_end(w);
	return cut ? 1 : 0;
}

int json_string(struct json_writer *w, const void *s, size_t len)
{
	return json_string_cut(w, s, len, SIZE_MAX);
}

int json_cstr(struct json_writer *w, const char *s)
{
	if (!s)
		return misuse(w);
	return json_string(w, s, strlen(s));
}

/* Writes a value's text, which never needs escaping. */
static int put_scalar(struct json_writer *w, const char *text, size_t n)
{
	struct json_mark saved;
	int err = value_start(w, &saved);

	if (err)
		return err;
	if (!room(w, n))
		return fail(w, &saved, -ENOSPC);
	put(w, text, n);
	return value_end(w);
}

int json_uint(struct json_writer *w, uint64_t v)
{
	char text[20];
	size_t i = sizeof text;

	do {
		text[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return put_scalar(w, text + i, sizeof text - i);
}

int json_int(struct json_writer *w, int64_t v)
{
	char text[21];
	size_t i = sizeof text;
	/* The magnitude in unsigned arithmetic, so that INT64_MIN has one too. */
	uint64_t m = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

	do {
		text[--i] = (char)('0' + m % 10);
		m /= 10;
	} while (m);
	if (v < 0)
		text[--i] = '-';
	return put_scalar(w, text + i, sizeof text - i);
}

int json_bool(struct json_writer *w, bool v)
{
	return v ? put_scalar(w, "true", 4) : put_scalar(w, "false", 5);
}

int json_null(struct json_writer *w)
{
	return put_scalar(w, "null", 4);
}

struct json_mark json_mark(const struct json_writer *w)
{
	return w->at;
}

void json_rollback(struct json_writer *w, const struct json_mark *m)
{
	w->at = *m;
	if (w->err == -ENOSPC)
		w->err = 0;
	terminate(w);
}

int json_finish(const struct json_writer *w)
{
	if (w->err)
		return w->err;
	if (!w->at.done)
		return -EINVAL;
	if (w->at.len > INT_MAX)
		return -ERANGE;
	return (int)w->at.len;
}
