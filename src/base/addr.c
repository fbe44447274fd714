/* addr.c — parsing, printing and prefix matching of IPv4/IPv6 addresses without OS calls. */
#include "base/addr.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void addr_from_bytes(struct addr *out, enum addr_family family, const uint8_t *bytes)
{
	memset(out, 0, sizeof *out);
	out->family = (uint8_t)family;
	if (family == ADDR_V4)
		memcpy(out->bytes, bytes, 4);
	else if (family == ADDR_V6)
		memcpy(out->bytes, bytes, 16);
}

size_t addr_len(const struct addr *a)
{
	return a->family == ADDR_V4 ? 4 : a->family == ADDR_V6 ? 16 : 0;
}

bool addr_equal(const struct addr *a, const struct addr *b)
{
	return a->family == b->family && memcmp(a->bytes, b->bytes, addr_len(a)) == 0;
}

/* Parses a dotted quad occupying exactly text[0..len). */
static int parse_v4(const char *text, size_t len, uint8_t out[4])
{
	size_t i = 0;
	for (int part = 0; part < 4; part++) {
		if (part > 0) {
			if (i >= len || text[i] != '.')
				return -EINVAL;
			i++;
		}
		size_t start = i;
		unsigned value = 0;
		while (i < len && text[i] >= '0' && text[i] <= '9' && i - start < 3) {
			value = value * 10 + (unsigned)(text[i] - '0');
			i++;
		}
		size_t digits = i - start;
		if (digits == 0 || value > 255 || (digits > 1 && text[start] == '0'))
			return -EINVAL;
		out[part] = (uint8_t)value;
	}
	return i == len ? 0 : -EINVAL;
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Parses IPv6 text occupying exactly text[0..len): up to eight 16-bit groups, at most one "::",
 * optionally ending in a dotted quad that stands for the last two groups. */
static int parse_v6(const char *text, size_t len, uint8_t out[16])
{
	uint16_t groups[8];
	int count = 0, gap_at = -1;
	size_t i = 0;

	if (len >= 2 && text[0] == ':' && text[1] == ':') {
		gap_at = 0;
		i = 2;
		if (i == len)
			goto assemble;
	} else if (len >= 1 && text[0] == ':') {
		return -EINVAL;
	}
	for (;;) {
		size_t start = i;
		unsigned value = 0;
		while (i < len && hex_value(text[i]) >= 0 && i - start < 4) {
			value = value * 16 + (unsigned)hex_value(text[i]);
			i++;
		}
		if (i < len && text[i] == '.') {
			/* The dotted-quad tail: everything from this group's start to the end. */
			uint8_t v4[4];
			if (count > 6 || parse_v4(text + start, len - start, v4) < 0)
				return -EINVAL;
			groups[count++] = (uint16_t)(v4[0] << 8 | v4[1]);
			groups[count++] = (uint16_t)(v4[2] << 8 | v4[3]);
			break;
		}
		if (i == start || count == 8)
			return -EINVAL;
		groups[count++] = (uint16_t)value;
		if (i == len)
			break;
		if (text[i] != ':')
			return -EINVAL;
		i++;
		if (i < len && text[i] == ':') {
			if (gap_at >= 0)
				return -EINVAL;
			gap_at = count;
			i++;
			if (i == len)
				break;
		} else if (i == len) {
			return -EINVAL; /* a single trailing ':' */
		}
	}
assemble:
	if (gap_at < 0 ? count != 8 : count > 7)
		return -EINVAL;
	uint16_t full[8] = {0};
	int tail = gap_at < 0 ? 0 : count - gap_at;
	for (int g = 0; g < count - tail; g++)
		full[g] = groups[g];
	for (int g = 0; g < tail; g++)
		full[8 - tail + g] = groups[count - tail + g];
	for (int g = 0; g < 8; g++) {
		out[2 * g] = (uint8_t)(full[g] >> 8);
		out[2 * g + 1] = (uint8_t)full[g];
	}
	return 0;
}

int addr_parse(struct addr *out, const char *text, size_t len)
{
	uint8_t bytes[16];
	if (memchr(text, ':', len)) {
		if (parse_v6(text, len, bytes) < 0)
			return -EINVAL;
		addr_from_bytes(out, ADDR_V6, bytes);
		return 0;
	}
	if (parse_v4(text, len, bytes) < 0)
		return -EINVAL;
	addr_from_bytes(out, ADDR_V4, bytes);
	return 0;
}

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool addr_unmap_v4(const struct addr *a, struct addr *out)
{
	if (a->family == ADDR_V6 && memcmp(a->bytes, v4_mapped_prefix, 12) == 0) {
		addr_from_bytes(out, ADDR_V4, a->bytes + 12);
		return true;
	}
	if (out != a)
		*out = *a;
	return false;
}

static const uint8_t nat64_prefix[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};

bool addr_embedded_v4(const struct addr *a, struct addr *out)
{
	static const uint8_t zeros[12];
	if (a->family == ADDR_V6) {
		bool compatible = memcmp(a->bytes, zeros, 12) == 0 &&
				  (a->bytes[12] | a->bytes[13] | a->bytes[14] |
				   (a->bytes[15] & 0xfe)) != 0;
		if (compatible || memcmp(a->bytes, v4_mapped_prefix, 12) == 0 ||
		    memcmp(a->bytes, nat64_prefix, 12) == 0) {
			uint8_t v4[4];
			memcpy(v4, a->bytes + 12, 4); /* out may be a */
			addr_from_bytes(out, ADDR_V4, v4);
			return true;
		}
	}
	if (out != a)
		*out = *a;
	return false;
}

/* Writes text into buf (size n), returning its length or -ENOSPC with buf emptied. */
static int put_text(char *buf, size_t n, const char *text, size_t len)
{
	if (len + 1 > n) {
		if (n > 0)
			buf[0] = '\0';
		return -ENOSPC;
	}
	memcpy(buf, text, len);
	buf[len] = '\0';
	return (int)len;
}

static size_t format_v4(const uint8_t *b, char *out)
{
	return (size_t)sprintf(out, "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
}

static size_t format_v6(const uint8_t *b, char *out)
{
	uint16_t g[8];
	for (int i = 0; i < 8; i++)
		g[i] = (uint16_t)(b[2 * i] << 8 | b[2 * i + 1]);

	if (memcmp(b, v4_mapped_prefix, 12) == 0) {
		size_t n = (size_t)sprintf(out, "::ffff:");
		return n + format_v4(b + 12, out + n);
	}
	/* RFC 5952 4.2: compress the longest run of two or more zero groups, the first on a tie. */
	int best_at = -1, best_len = 1;
	for (int i = 0; i < 8;) {
		int j = i;
		while (j < 8 && g[j] == 0)
			j++;
		if (j - i > best_len) {
			best_at = i;
			best_len = j - i;
		}
		i = j > i ? j : i + 1;
	}
	size_t n = 0;
	for (int i = 0; i < 8; i++) {
		if (i == best_at) {
			n += (size_t)sprintf(out + n, "::");
			i += best_len - 1;
			continue;
		}
		if (i > 0 && i != best_at + best_len)
			out[n++] = ':';
		n += (size_t)sprintf(out + n, "%x", g[i]);
	}
	out[n] = '\0';
	return n;
}

int addr_format(const struct addr *a, char *buf, size_t n)
{
	char text[ADDR_STRLEN + 8];
	size_t len;
	if (a->family == ADDR_V4)
		len = format_v4(a->bytes, text);
	else if (a->family == ADDR_V6)
		len = format_v6(a->bytes, text);
	else
		len = (size_t)sprintf(text, "?");
	return put_text(buf, n, text, len);
}

int addr_format_port(const struct addr *a, uint16_t port, char *buf, size_t n)
{
	char host[ADDR_STRLEN], text[ADDR_PORT_STRLEN + 8];
	addr_format(a, host, sizeof host);
	int len = sprintf(text, a->family == ADDR_V6 ? "[%s]:%u" : "%s:%u", host, (unsigned)port);
	return put_text(buf, n, text, (size_t)len);
}

/* Bits of the family: 32 or 128. */
static unsigned family_bits(const struct addr *a)
{
	return (unsigned)addr_len(a) * 8;
}

/* Clears every bit of a past the first `prefix`; returns true if any was set. */
static bool clear_host_bits(struct addr *a, unsigned prefix)
{
	bool had = false;
	for (unsigned i = 0; i < addr_len(a); i++) {
		unsigned keep = prefix >= 8 * (i + 1) ? 8 : prefix > 8 * i ? prefix - 8 * i : 0;
		uint8_t mask = (uint8_t)(keep == 0 ? 0 : 0xFF << (8 - keep));
		if (a->bytes[i] & ~mask)
			had = true;
		a->bytes[i] &= mask;
	}
	return had;
}

int cidr_parse(struct cidr *out, const char *text, size_t len)
{
	const char *slash = memchr(text, '/', len);
	size_t addr_part = slash ? (size_t)(slash - text) : len;
	struct addr base;

	if (addr_parse(&base, text, addr_part) < 0)
		return -EINVAL;
	unsigned prefix = family_bits(&base);
	if (slash) {
		const char *p = slash + 1, *end = text + len;
		if (p == end || end - p > 3 || (end - p > 1 && *p == '0'))
			return -EINVAL;
		prefix = 0;
		for (; p < end; p++) {
			if (*p < '0' || *p > '9')
				return -EINVAL;
			prefix = prefix * 10 + (unsigned)(*p - '0');
		}
		if (prefix > family_bits(&base))
			return -ERANGE;
	}
	bool had_host_bits = clear_host_bits(&base, prefix);
	out->base = base;
	out->prefix = (uint8_t)prefix;
	return had_host_bits ? -EDOM : 0;
}

bool cidr_contains(const struct cidr *c, const struct addr *a)
{
	if (c->base.family != a->family)
		return false;
	unsigned full = c->prefix / 8, rest = c->prefix % 8;
	if (memcmp(c->base.bytes, a->bytes, full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xFF << (8 - rest));
	return (a->bytes[full] & mask) == c->base.bytes[full];
}

int cidr_format(const struct cidr *c, char *buf, size_t n)
{
	char host[ADDR_STRLEN], text[ADDR_STRLEN + 8];
	addr_format(&c->base, host, sizeof host);
	int len = sprintf(text, "%s/%u", host, (unsigned)c->prefix);
	return put_text(buf, n, text, (size_t)len);
}
