/* json_validate.c — a strict recursive-descent JSON checker, written apart from the writer. */
#include "json_validate.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define MAX_DEPTH 64
#define MAX_KEYS 128

struct parser {
	const uint8_t *start, *p, *end;
	int depth;
	char message[160];
};

static bool problem(struct parser *ps, const char *what)
{
	if (!ps->message[0])
		snprintf(ps->message, sizeof ps->message, "%s at offset %zu", what,
			 (size_t)(ps->p - ps->start));
	return false;
}

static void skip_space(struct parser *ps)
{
	while (ps->p < ps->end &&
	       (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

static int hex_value(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Reads the four hex digits after "\u". */
static bool read_u16(struct parser *ps, uint32_t *out)
{
	uint32_t v = 0;

	if (ps->end - ps->p < 4)
		return problem(ps, "short \\u escape");
	for (int i = 0; i < 4; i++) {
		int h = hex_value(ps->p[i]);

		if (h < 0)
			return problem(ps, "bad hex digit in \\u escape");
		v = v << 4 | (uint32_t)h;
	}
	ps->p += 4;
	*out = v;
	return true;
}

/* Checks one raw UTF-8 character at ps->p by decoding its code point and testing the ranges. */
static bool utf8_char(struct parser *ps)
{
	uint8_t b = *ps->p;
	int extra;
	uint32_t cp, min;

	if (b < 0x80) {
		ps->p++;
		return true;
	}
	if ((b & 0xE0) == 0xC0) {
		extra = 1;
		cp = b & 0x1F;
		min = 0x80;
	} else if ((b & 0xF0) == 0xE0) {
		extra = 2;
		cp = b & 0x0F;
		min = 0x800;
	} else if ((b & 0xF8) == 0xF0) {
		extra = 3;
		cp = b & 0x07;
		min = 0x10000;
	} else {
		return problem(ps, "invalid UTF-8 lead byte");
	}
	if (ps->end - ps->p <= extra)
		return problem(ps, "truncated UTF-8 sequence");
	for (int i = 1; i <= extra; i++) {
		if ((ps->p[i] & 0xC0) != 0x80)
			return problem(ps, "invalid UTF-8 continuation");
		cp = cp << 6 | (ps->p[i] & 0x3Fu);
	}
	if (cp < min)
		return problem(ps, "overlong UTF-8");
	if (cp >= 0xD800 && cp <= 0xDFFF)
		return problem(ps, "UTF-8 encoded surrogate");
	if (cp > 0x10FFFF)
		return problem(ps, "UTF-8 beyond U+10FFFF");
	ps->p += 1 + extra;
	return true;
}

/* Parses a string; stores the span between its quotes. */
static bool string(struct parser *ps, const uint8_t **span, size_t *span_len)
{
	const uint8_t *begin;

	if (ps->p >= ps->end || *ps->p != '"')
		return problem(ps, "expected '\"'");
	begin = ++ps->p;
	for (;;) {
		uint8_t c;

		if (ps->p >= ps->end)
			return problem(ps, "unterminated string");
		c = *ps->p;
		if (c == '"')
			break;
		if (c < 0x20)
			return problem(ps, "raw control character in string");
		if (c != '\\') {
			if (!utf8_char(ps))
				return false;
			continue;
		}
		ps->p++;
		if (ps->p >= ps->end)
			return problem(ps, "unterminated escape");
		c = *ps->p++;
		if (c == 'u') {
			uint32_t u, low;

			if (!read_u16(ps, &u))
				return false;
			if (u >= 0xDC00 && u <= 0xDFFF)
				return problem(ps, "lone low surrogate escape");
			if (u >= 0xD800 && u <= 0xDBFF) {
				if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u')
					return problem(ps, "unpaired high surrogate escape");
				ps->p += 2;
				if (!read_u16(ps, &low))
					return false;
				if (low < 0xDC00 || low > 0xDFFF)
					return problem(ps, "unpaired high surrogate escape");
			}
		} else if (!strchr("\"\\/bfnrt", c) || c == '\0') {
			return problem(ps, "unknown escape");
		}
	}
	*span = begin;
	*span_len = (size_t)(ps->p - begin);
	ps->p++;
	return true;
}

static bool digits(struct parser *ps)
{
	const uint8_t *begin = ps->p;

	while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
		ps->p++;
	return ps->p > begin ? true : problem(ps, "expected a digit");
}

static bool number(struct parser *ps)
{
	if (ps->p < ps->end && *ps->p == '-')
		ps->p++;
	if (ps->p < ps->end && *ps->p == '0')
		ps->p++;
	else if (!(ps->p < ps->end && *ps->p >= '1' && *ps->p <= '9') || !digits(ps))
		return problem(ps, "bad number");
	if (ps->p < ps->end && *ps->p == '.') {
		ps->p++;
		if (!digits(ps))
			return false;
	}
	if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
		ps->p++;
		if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
			ps->p++;
		if (!digits(ps))
			return false;
	}
	return true;
}

static bool literal(struct parser *ps, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
		return problem(ps, "unexpected character");
	ps->p += n;
	return true;
}

static bool value(struct parser *ps);

static bool object(struct parser *ps)
{
	const uint8_t *keys[MAX_KEYS];
	size_t key_lens[MAX_KEYS], n_keys = 0;

	ps->p++;
	skip_space(ps);
	if (ps->p < ps->end && *ps->p == '}') {
		ps->p++;
		return true;
	}
	for (;;) {
		const uint8_t *key;
		size_t key_len;

		skip_space(ps);
		if (!string(ps, &key, &key_len))
			return false;
		for (size_t i = 0; i < n_keys; i++)
			if (key_lens[i] == key_len && memcmp(keys[i], key, key_len) == 0)
				return problem(ps, "duplicate key");
		if (n_keys < MAX_KEYS) {
			keys[n_keys] = key;
			key_lens[n_keys++] = key_len;
		}
		skip_space(ps);
		if (ps->p >= ps->end || *ps->p != ':')
			return problem(ps, "expected ':'");
		ps->p++;
		if (!value(ps))
			return false;
		skip_space(ps);
		if (ps->p < ps->end && *ps->p == ',') {
			ps->p++;
			continue;
		}
		if (ps->p < ps->end && *ps->p == '}') {
			ps->p++;
			return true;
		}
		return problem(ps, "expected ',' or '}'");
	}
}

static bool array(struct parser *ps)
{
	ps->p++;
	skip_space(ps);
	if (ps->p < ps->end && *ps->p == ']') {
		ps->p++;
		return true;
	}
	for (;;) {
		if (!value(ps))
			return false;
		skip_space(ps);
		if (ps->p < ps->end && *ps->p == ',') {
			ps->p++;
			continue;
		}
		if (ps->p < ps->end && *ps->p == ']') {
			ps->p++;
			return true;
		}
		return problem(ps, "expected ',' or ']'");
	}
}

static bool value(struct parser *ps)
{
	const uint8_t *span;
	size_t span_len;
	bool ok;

	skip_space(ps);
	if (ps->p >= ps->end)
		return problem(ps, "expected a value");
	switch (*ps->p) {
	case '{':
	case '[':
		if (++ps->depth > MAX_DEPTH)
			return problem(ps, "nested too deeply");
		ok = *ps->p == '{' ? object(ps) : array(ps);
		ps->depth--;
		return ok;
	case '"':
		return string(ps, &span, &span_len);
	case 't':
		return literal(ps, "true");
	case 'f':
		return literal(ps, "false");
	case 'n':
		return literal(ps, "null");
	default:
		return number(ps);
	}
}

static const char *validate(const char *text, size_t len, bool want_object)
{
	static char message[160];
	struct parser ps = {0};

	ps.start = ps.p = (const uint8_t *)text;
	ps.end = ps.p + len;
	skip_space(&ps);
	if (want_object && (ps.p >= ps.end || *ps.p != '{'))
		problem(&ps, "expected an object");
	else if (value(&ps)) {
		skip_space(&ps);
		if (ps.p != ps.end)
			problem(&ps, "text after the value");
	}
	if (!ps.message[0])
		return NULL;
	memcpy(message, ps.message, sizeof message);
	return message;
}

const char *json_validate(const char *text, size_t len)
{
	return validate(text, len, false);
}

const char *json_validate_object(const char *text, size_t len)
{
	return validate(text, len, true);
}
