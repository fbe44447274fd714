/* resolv_conf.c — nameserver lines of a resolv.conf text (resolv_conf.h). */
#include "base/resolv_conf.h"

#include <stdbool.h>
#include <string.h>

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* The address of one line text[0..n) (no newline in it), or false. */
static bool line_nameserver(const char *s, size_t n, struct addr *out)
{
	static const char keyword[] = "nameserver";
	const size_t klen = sizeof keyword - 1;
	size_t i = 0, start;

	while (i < n && is_blank(s[i]))
		i++;
	if (n - i <= klen || memcmp(s + i, keyword, klen) != 0 || !is_blank(s[i + klen]))
		return false;
	i += klen;
	while (i < n && is_blank(s[i]))
		i++;
	start = i;
	while (i < n && !is_blank(s[i]) && s[i] != '%' && s[i] != '#' && s[i] != ';')
		i++;
	return i > start && addr_parse(out, s + start, i - start) == 0;
}

size_t resolv_conf_nameservers(const char *text, size_t len, struct addr *out, size_t max)
{
	size_t count = 0, pos = 0;

	while (pos < len && count < max) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - text) : len;

		if (line_nameserver(text + pos, end - pos, &out[count]))
			count++;
		pos = end + 1;
	}
	return count;
}
