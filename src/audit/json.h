/* json.h — a bounded JSON writer into a caller's buffer, with escaping safe for any byte string.
 *
 * Strings may hold any bytes (DNS names, SNI and paths are attacker-controlled). Valid UTF-8
 * passes through, except that '"', '\\', control characters (U+0000..U+001F, U+007F) and
 * U+2028/U+2029 (line breaks to JavaScript) are escaped. Every byte that is not part of a
 * well-formed UTF-8 sequence (bad lead byte, truncated sequence, overlong form, surrogate
 * D800..DFFF, beyond U+10FFFF) becomes one U+FFFD: the output is always valid UTF-8 and valid
 * JSON, at the price of losing those bytes. Producers that need binary names back exactly must
 * escape them into text first (the DNS code writes RFC 1035 "\DDD").
 *
 * The writer never writes past its buffer and keeps it NUL-terminated. A value that does not fit
 * is not written at all (never half a string or half an escape), and the writer then refuses
 * everything else: the error is sticky and json_finish reports it.
 */
#ifndef SLUICE_AUDIT_JSON_H
#define SLUICE_AUDIT_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Deepest nesting of arrays and objects. */
#define JSON_MAX_DEPTH 32

struct json_mark {
	size_t len;
	uint32_t depth;
	uint32_t is_object;   /* bit d: level d+1 is an object */
	uint32_t has_members; /* bit d: level d+1 already holds a member */
	bool after_key;
	bool done;            /* the top-level value is complete */
};

struct json_writer {
	char *buf;
	size_t cap;   /* size of buf, NUL included */
	size_t limit; /* the text may grow up to this many bytes (cap - 1 - reserve) */
	int err;      /* 0, or the sticky -ENOSPC / -EINVAL */
	struct json_mark at;
};

/* Starts writing into buf of cap bytes (NUL included; cap 0 makes every value overflow).
 * The writer borrows buf; buf[0] becomes '\0'. */
void json_init(struct json_writer *w, char *buf, size_t cap);

/* Holds back the last `reserve` bytes of the buffer from every following write, until changed
 * (0 lifts it), so that a caller can keep room to close what it opened after a list it cuts. */
void json_reserve(struct json_writer *w, size_t reserve);

/* Each value function returns 0 or the writer's sticky error: -ENOSPC when the value did not fit
 * (the buffer then holds the text before it), -EINVAL when the calls do not form JSON (a value in
 * an object without a key, a key in an array, an end that closes nothing, nesting beyond
 * JSON_MAX_DEPTH, a second top-level value). Once an error is set, calls do nothing. */
int json_object_begin(struct json_writer *w);
int json_object_end(struct json_writer *w);
int json_array_begin(struct json_writer *w);
int json_array_end(struct json_writer *w);

/* Writes an object member's key (escaped like a string) and its ':'. */
int json_key(struct json_writer *w, const char *key);

/* Writes s[0..len) as a JSON string; s may hold any bytes, NULs included (see the top). */
int json_string(struct json_writer *w, const void *s, size_t len);

/* json_string of a NUL-terminated string. */
int json_cstr(struct json_writer *w, const char *s);

/* Like json_string, but spends at most max_out bytes of output, quotes included: a longer string
 * is cut before the first character or escape that would not fit ("" is always written, even
 * when max_out < 2). Returns 0 when whole, 1 when cut, or the sticky error. */
int json_string_cut(struct json_writer *w, const void *s, size_t len, size_t max_out);

int json_int(struct json_writer *w, int64_t v);
int json_uint(struct json_writer *w, uint64_t v);
int json_bool(struct json_writer *w, bool v);
int json_null(struct json_writer *w);

/* A position to come back to: json_rollback restores the text and nesting to what they were at
 * json_mark and clears an -ENOSPC error (an -EINVAL stays). Used to drop a list's tail. */
struct json_mark json_mark(const struct json_writer *w);
void json_rollback(struct json_writer *w, const struct json_mark *m);

/* Returns the length of the finished text (buf holds it, NUL-terminated), the sticky error,
 * -EINVAL when no value was written or an array/object is still open, or -ERANGE for a text
 * longer than INT_MAX. */
int json_finish(const struct json_writer *w);

#endif
