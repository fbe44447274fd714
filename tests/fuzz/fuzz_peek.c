/* fuzz_peek.c — TLS SNI / HTTP Host peeking on arbitrary bytes: no overread, names are host text,
 * and answers never change as bytes are appended, except from PEEK_NEED_MORE. */
#include "proxy/peek.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct answer {
	int rc;
	char name[PEEK_NAME_MAX];
	enum peek_source src;
	unsigned flags;
};

/* peek_name_flags on the first n bytes of data, copied to an exact-size heap buffer. */
static struct answer ask(const uint8_t *data, size_t n)
{
	struct answer a;
	uint8_t *copy = malloc(n ? n : 1);
	if (!copy)
		abort();
	if (n)
		memcpy(copy, data, n);
	memset(a.name, 0x5a, sizeof a.name);
	a.rc = peek_name_flags(copy, n, a.name, sizeof a.name, &a.src, &a.flags);
	free(copy);
	return a;
}

static bool same(const struct answer *a, const struct answer *b)
{
	return a->rc == b->rc && strcmp(a->name, b->name) == 0 && a->src == b->src &&
	       a->flags == b->flags;
}

/* Host text as peek.h promises it, checked independently of peek.c. */
static bool valid_name(const char *s)
{
	size_t n = strlen(s), label = 0, last = 0;
	if (n == 0 || n > 253 || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			last = i + 1;
		} else if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789-_", c) || ++label > 63) {
			return false;
		}
	}
	const char *tld = s + last;
	size_t tld_len = n - last;
	if (strspn(tld, "0123456789") == tld_len)
		return false;
	return !(tld_len >= 2 && tld[0] == '0' && tld[1] == 'x' &&
		 strspn(tld + 2, "0123456789abcdef") == tld_len - 2);
}

static uint8_t lower(uint8_t c)
{
	return c >= 'A' && c <= 'Z' ? (uint8_t)(c | 0x20) : c;
}

/* The name occurs in the input, up to letter case (true of every Host / request target). */
static bool occurs(const uint8_t *data, size_t size, const char *name)
{
	size_t n = strlen(name);
	for (size_t at = 0; at + n <= size; at++) {
		size_t i = 0;
		while (i < n && lower(data[at + i]) == (uint8_t)name[i])
			i++;
		if (i == n)
			return true;
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct answer full = ask(data, size);

	if (full.rc < PEEK_MALFORMED || full.rc > PEEK_FOUND)
		abort();
	if (full.rc == PEEK_FOUND) {
		if (!valid_name(full.name) || full.src == PEEK_SRC_NONE)
			abort();
		if (full.src == PEEK_SRC_HOST && !occurs(data, size, full.name))
			abort();
	} else if (full.name[0] != '\0') {
		abort();
	}
	if (size > 0) {
		bool letter = (data[0] | 0x20) >= 'a' && (data[0] | 0x20) <= 'z';
		enum peek_source want = data[0] == 0x16 ? PEEK_SRC_SNI
					: letter        ? PEEK_SRC_HOST
							: PEEK_SRC_NONE;
		if (full.src != want || (want == PEEK_SRC_NONE && full.rc != PEEK_NOT_THIS))
			abort();
	}
	if (full.flags & ~PEEK_FLAG_ECH)
		abort();
	if (full.flags && (full.src != PEEK_SRC_SNI || full.rc < PEEK_NOT_THIS ||
			   full.rc == PEEK_NEED_MORE))
		abort();
	if (size >= PEEK_MAX_BYTES && full.rc == PEEK_NEED_MORE)
		abort();

	/* The parsers agree with the dispatcher. */
	uint8_t *copy = malloc(size ? size : 1);
	if (!copy)
		abort();
	if (size)
		memcpy(copy, data, size);
	char name[PEEK_NAME_MAX];
	unsigned flags = 0;
	int rc = PEEK_NOT_THIS;
	if (full.src == PEEK_SRC_SNI)
		rc = peek_tls_sni(copy, size, name, sizeof name, &flags);
	else if (full.src == PEEK_SRC_HOST)
		rc = peek_http_host(copy, size, name, sizeof name);
	if (full.src != PEEK_SRC_NONE &&
	    (rc != full.rc || flags != full.flags || strcmp(name, full.name) != 0))
		abort();
	/* A name is refused, never cut, when the buffer is one byte short. */
	if (full.rc == PEEK_FOUND) {
		size_t need = strlen(full.name) + 1;
		if (peek_name(copy, size, name, need - 1, NULL) != PEEK_MALFORMED ||
		    peek_name(copy, size, name, need, NULL) != PEEK_FOUND ||
		    strcmp(name, full.name) != 0)
			abort();
	}
	free(copy);

	/* Growth: every prefix (a sample of them for long inputs) is PEEK_NEED_MORE or the same. */
	size_t step = size <= 256 ? 1 : size / 64;
	for (size_t m = 0; m < size; m += step) {
		struct answer a = ask(data, m);
		if (a.rc != PEEK_NEED_MORE && !same(&a, &full))
			abort();
	}
	if (size > 0) {
		struct answer a = ask(data, size - 1);
		if (a.rc != PEEK_NEED_MORE && !same(&a, &full))
			abort();
	}
	/* ... and a decided answer stays when more bytes follow (here: the input again). */
	if (full.rc != PEEK_NEED_MORE && size > 0) {
		uint8_t *twice = malloc(2 * size);
		if (!twice)
			abort();
		memcpy(twice, data, size);
		memcpy(twice + size, data, size);
		struct answer a = ask(twice, 2 * size);
		free(twice);
		if (!same(&a, &full))
			abort();
	}
	return 0;
}
