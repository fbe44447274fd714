/* fuzz_json.c — escapes arbitrary bytes into buffers of every size and decodes the result back.
 *
 * Input: two bytes choosing the buffer size and the cut bound, then the string. Checks: the writer
 * never writes past its buffer (ASan), reports -ENOSPC exactly when the whole string does not
 * fit, and what it writes is one valid JSON string in valid UTF-8 with no raw U+2028/2029; its
 * decoding equals the input with every byte outside a well-formed UTF-8 sequence replaced by
 * U+FFFD (so equals the input itself for valid UTF-8), and a cut string decodes to a prefix.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "audit/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Length of a well-formed UTF-8 sequence at s[0..n), or 0. Written apart from json.c, by
 * decoding first and checking the code point's range after. */
static size_t utf8_len(const uint8_t *s, size_t n)
{
	size_t need;
	uint32_t cp, min;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xE0) == 0xC0) {
		need = 2;
		cp = s[0] & 0x1Fu;
		min = 0x80;
	} else if ((s[0] & 0xF0) == 0xE0) {
		need = 3;
		cp = s[0] & 0x0Fu;
		min = 0x800;
	} else if ((s[0] & 0xF8) == 0xF0) {
		need = 4;
		cp = s[0] & 0x07u;
		min = 0x10000;
	} else {
		return 0;
	}
	if (n < need)
		return 0;
	for (size_t i = 1; i < need; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3Fu);
	}
	if (cp < min || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
		return 0;
	return need;
}

/* The input as the writer should render it: bad bytes become U+FFFD. Returns its length. */
static size_t replaced(const uint8_t *in, size_t n, uint8_t *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n;) {
		size_t len = utf8_len(in + i, n - i);

		if (len == 0) {
			memcpy(out + o, "\xEF\xBF\xBD", 3);
			o += 3;
			i++;
		} else {
			memcpy(out + o, in + i, len);
			o += len;
			i += len;
		}
	}
	return o;
}

static int hex(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static size_t put_utf8(uint8_t *out, uint32_t cp)
{
	if (cp < 0x80) {
		out[0] = (uint8_t)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (uint8_t)(0xC0 | cp >> 6);
		out[1] = (uint8_t)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (uint8_t)(0xE0 | cp >> 12);
		out[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
		out[2] = (uint8_t)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (uint8_t)(0xF0 | cp >> 18);
	out[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
	out[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
	out[3] = (uint8_t)(0x80 | (cp & 0x3F));
	return 4;
}

/* Strictly decodes the JSON string text[0..n) into out; returns the decoded length, or aborts
 * when text is not exactly one JSON string of valid UTF-8 without raw U+2028/U+2029. */
static size_t decode(const uint8_t *text, size_t n, uint8_t *out)
{
	size_t i = 1, o = 0;

	if (n < 2 || text[0] != '"' || text[n - 1] != '"')
		abort();
	while (i < n - 1) {
		uint8_t c = text[i];

		if (c == '"' || c < 0x20)
			abort();
		if (c != '\\') {
			size_t len = utf8_len(text + i, n - 1 - i);

			if (len == 0)
				abort();
			if (len == 3 && text[i] == 0xE2 && text[i + 1] == 0x80 &&
			    (text[i + 2] == 0xA8 || text[i + 2] == 0xA9))
				abort();
			memcpy(out + o, text + i, len);
			o += len;
			i += len;
			continue;
		}
		if (i + 1 >= n - 1)
			abort();
		c = text[i + 1];
		i += 2;
		switch (c) {
		case '"': out[o++] = '"'; break;
		case '\\': out[o++] = '\\'; break;
		case '/': out[o++] = '/'; break;
		case 'b': out[o++] = '\b'; break;
		case 'f': out[o++] = '\f'; break;
		case 'n': out[o++] = '\n'; break;
		case 'r': out[o++] = '\r'; break;
		case 't': out[o++] = '\t'; break;
		case 'u': {
			uint32_t cp = 0;

			if (i + 4 > n - 1)
				abort();
			for (int k = 0; k < 4; k++) {
				int h = hex(text[i + k]);

				if (h < 0)
					abort();
				cp = cp << 4 | (uint32_t)h;
			}
			i += 4;
			/* The writer escapes no character outside the BMP, so no pairs. */
			if (cp >= 0xD800 && cp <= 0xDFFF)
				abort();
			o += put_utf8(out + o, cp);
			break;
		}
		default:
			abort();
		}
	}
	return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *in;
	size_t n, full_len, expect_len, cap, max_out, got_len;
	uint8_t *expect, *decoded, *roomy;
	char *buf;
	struct json_writer w;
	int ret;

	if (size < 2 || size > 4096)
		return 0;
	in = data + 2;
	n = size - 2;
	/* Any output is at most 6 bytes per input byte, plus quotes and NUL. */
	full_len = 6 * n + 3;
	cap = (size_t)data[0] * 7 % (full_len + 2);
	max_out = (size_t)data[1] * 13 % (full_len + 2);

	expect = malloc(3 * n + 1);
	decoded = malloc(6 * n + 4);
	roomy = malloc(full_len);
	buf = malloc(cap ? cap : 1);
	if (!expect || !decoded || !roomy || !buf)
		abort();
	expect_len = replaced(in, n, expect);

	/* The whole string in a buffer that is large enough. */
	json_init(&w, (char *)roomy, full_len);
	ret = json_string(&w, in, n);
	if (ret != 0 || json_finish(&w) < 0)
		abort();
	full_len = (size_t)json_finish(&w);
	if (roomy[full_len] != '\0' || decode(roomy, full_len, decoded) != expect_len ||
	    memcmp(decoded, expect, expect_len) != 0)
		abort();
	if (expect_len == n && memcmp(expect, in, n) != 0)
		abort();

	/* The same in a buffer of cap bytes: all of it, or nothing and -ENOSPC. */
	json_init(&w, buf, cap);
	ret = json_string(&w, in, n);
	if (cap > full_len) {
		if (ret != 0 || json_finish(&w) != (int)full_len ||
		    memcmp(buf, roomy, full_len + 1) != 0)
			abort();
	} else if (ret != -ENOSPC || json_finish(&w) != -ENOSPC || (cap && buf[0] != '\0')) {
		abort();
	}

	/* Cut to max_out: a valid string no longer than the bound, decoding to a prefix. */
	json_init(&w, (char *)roomy, 6 * n + 3);
	ret = json_string_cut(&w, in, n, max_out);
	if (ret < 0 || json_finish(&w) < 0)
		abort();
	got_len = (size_t)json_finish(&w);
	if (got_len > (max_out < 2 ? 2 : max_out))
		abort();
	if ((ret == 1) != (got_len < full_len))
		abort();
	got_len = decode(roomy, got_len, decoded);
	if (got_len > expect_len || memcmp(decoded, expect, got_len) != 0)
		abort();

	free(expect);
	free(decoded);
	free(roomy);
	free(buf);
	return 0;
}
