/* peek.c — the TLS ClientHello server_name and HTTP/1.x Host parsers behind peek.h. */
#include "proxy/peek.h"

#include <stdbool.h>
#include <string.h>

#include "base/addr.h"

#define NAME_LEN_MAX (PEEK_NAME_MAX - 1)
#define LABEL_LEN_MAX 63

#define TLS_RECORD_HEADER 5
#define TLS_HANDSHAKE_HEADER 4
#define TLS_RECORD_PAYLOAD_MAX (16384 + 2048)
#define TLS_CONTENT_HANDSHAKE 0x16
#define TLS_VERSION_MAJOR 0x03
#define TLS_CLIENT_HELLO 1
#define TLS_RANDOM_LEN 32
#define TLS_SESSION_ID_MAX 32
#define TLS_EXT_SERVER_NAME 0x0000
#define TLS_EXT_ECH 0xfe0d
#define TLS_NAME_TYPE_HOST 0

#define HTTP_METHOD_MAX 32
#define HTTP_PORT_DIGITS_MAX 5

/* A length-checked view that only moves forward. */
struct cursor {
	const uint8_t *p;
	size_t left;
};

static bool take_bytes(struct cursor *c, size_t n, const uint8_t **out)
{
	if (c->left < n)
		return false;
	*out = c->p;
	c->p += n;
	c->left -= n;
	return true;
}

static bool take_u8(struct cursor *c, size_t *v)
{
	const uint8_t *b;
	if (!take_bytes(c, 1, &b))
		return false;
	*v = b[0];
	return true;
}

static bool take_u16(struct cursor *c, size_t *v)
{
	const uint8_t *b;
	if (!take_bytes(c, 2, &b))
		return false;
	*v = (size_t)b[0] << 8 | b[1];
	return true;
}

static bool is_alpha(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

static bool is_hex(uint8_t c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static uint8_t to_lower(uint8_t c)
{
	return c >= 'A' && c <= 'Z' ? (uint8_t)(c + ('a' - 'A')) : c;
}

/* RFC 9110 tchar: the bytes of methods and header names. */
static bool is_tchar(uint8_t c)
{
	return is_alpha(c) || is_digit(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* A last label that URL parsers read as a number ("1", "0x7f"): the text is an IPv4 literal
 * in one of its forms, not a DNS name (no top-level domain is numeric). */
static bool is_numeric_label(const uint8_t *s, size_t n)
{
	size_t i = 0;
	if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		for (i = 2; i < n; i++)
			if (!is_hex(s[i]))
				return false;
		return true;
	}
	for (i = 0; i < n; i++)
		if (!is_digit(s[i]))
			return false;
	return n > 0;
}

/* Checks host text as peek.h describes. Returns PEEK_FOUND with *out_len the length without the
 * trailing dot, PEEK_NOT_THIS for an IPv4-like literal, or PEEK_MALFORMED. */
static int name_check(const uint8_t *s, size_t n, size_t *out_len)
{
	if (n > 0 && s[n - 1] == '.')
		n--;
	if (n == 0 || n > NAME_LEN_MAX)
		return PEEK_MALFORMED;
	size_t label = 0, last = 0;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = s[i];
		if (c == '.') {
			if (label == 0)
				return PEEK_MALFORMED;
			label = 0;
			last = i + 1;
			continue;
		}
		if (!is_alpha(c) && !is_digit(c) && c != '-' && c != '_')
			return PEEK_MALFORMED;
		if (++label > LABEL_LEN_MAX)
			return PEEK_MALFORMED;
	}
	if (label == 0)
		return PEEK_MALFORMED;
	if (is_numeric_label(s + last, n - last))
		return PEEK_NOT_THIS;
	*out_len = n;
	return PEEK_FOUND;
}

/* name_check, then the lowercase name into name. */
static int name_store(const uint8_t *s, size_t n, char *name, size_t name_size)
{
	size_t len;
	int rc = name_check(s, n, &len);
	if (rc != PEEK_FOUND)
		return rc;
	if (len >= name_size)
		return PEEK_MALFORMED;
	for (size_t i = 0; i < len; i++)
		name[i] = (char)to_lower(s[i]);
	name[len] = '\0';
	return PEEK_FOUND;
}

/* ---- TLS ---- */

/* Gathers the handshake message that the first record starts, across as many handshake records
 * as it spans. The message stays in place while it lies in the first record and is copied into
 * hs (PEEK_MAX_BYTES) once it crosses into a second one. Returns PEEK_FOUND with *body and
 * *body_len (the message after its 4-byte header), or PEEK_NEED_MORE / NOT_THIS / MALFORMED. */
static int tls_gather(const uint8_t *buf, size_t len, uint8_t *hs, const uint8_t **body,
		      size_t *body_len)
{
	const uint8_t *msg = buf + TLS_RECORD_HEADER;
	size_t have = 0, need = TLS_HANDSHAKE_HEADER;
	size_t pos = 0;

	for (;;) {
		/* Only the first record decides whether this is TLS at all. */
		int wrong = pos == 0 ? PEEK_NOT_THIS : PEEK_MALFORMED;
		if (pos + TLS_RECORD_HEADER > PEEK_MAX_BYTES)
			return PEEK_MALFORMED;
		if (len > pos && buf[pos] != TLS_CONTENT_HANDSHAKE)
			return wrong;
		if (len > pos + 1 && buf[pos + 1] != TLS_VERSION_MAJOR)
			return wrong;
		if (len < pos + TLS_RECORD_HEADER)
			return PEEK_NEED_MORE;
		size_t rec_len = (size_t)buf[pos + 3] << 8 | buf[pos + 4];
		if (rec_len == 0 || rec_len > TLS_RECORD_PAYLOAD_MAX)
			return PEEK_MALFORMED;
		if (pos > 0 && msg != hs) {
			memcpy(hs, msg, have);
			msg = hs;
		}
		size_t off = pos + TLS_RECORD_HEADER, end = off + rec_len;
		while (off < end) {
			size_t take = need - have < end - off ? need - have : end - off;
			if (off + take > PEEK_MAX_BYTES)
				return PEEK_MALFORMED;
			size_t avail = len - off < take ? len - off : take;
			if (msg == hs)
				memcpy(hs + have, buf + off, avail);
			have += avail;
			off += avail;
			if (have > 0 && msg[0] != TLS_CLIENT_HELLO)
				return PEEK_MALFORMED;
			if (avail < take)
				return PEEK_NEED_MORE;
			if (need == TLS_HANDSHAKE_HEADER && have == TLS_HANDSHAKE_HEADER) {
				need += (size_t)msg[1] << 16 | (size_t)msg[2] << 8 | msg[3];
				if (need > PEEK_MAX_BYTES - TLS_RECORD_HEADER)
					return PEEK_MALFORMED;
			}
			if (have == need) {
				*body = msg + TLS_HANDSHAKE_HEADER;
				*body_len = need - TLS_HANDSHAKE_HEADER;
				return PEEK_FOUND;
			}
		}
		pos = end;
	}
}

/* The server_name extension's data: its first host_name, if any. */
static int tls_server_name(const uint8_t *data, size_t n, char *name, size_t name_size)
{
	struct cursor c = {data, n};
	size_t list_len;
	if (!take_u16(&c, &list_len) || list_len == 0 || list_len != c.left)
		return PEEK_MALFORMED;
	const uint8_t *host = NULL;
	size_t host_len = 0;
	while (c.left > 0) {
		size_t type, entry_len;
		const uint8_t *entry;
		if (!take_u8(&c, &type) || !take_u16(&c, &entry_len) ||
		    !take_bytes(&c, entry_len, &entry))
			return PEEK_MALFORMED;
		if (type == TLS_NAME_TYPE_HOST && !host) {
			host = entry;
			host_len = entry_len;
		}
	}
	if (!host)
		return PEEK_NOT_THIS;
	return name_store(host, host_len, name, name_size);
}

/* The ClientHello body (RFC 8446 section 4.1.2, with the TLS 1.0-1.2 forms). */
static int tls_client_hello(const uint8_t *body, size_t n, char *name, size_t name_size,
			    bool *ech)
{
	struct cursor c = {body, n};
	const uint8_t *skip;
	size_t version, count;

	if (!take_u16(&c, &version) || version >> 8 != TLS_VERSION_MAJOR)
		return PEEK_MALFORMED;
	if (!take_bytes(&c, TLS_RANDOM_LEN, &skip))
		return PEEK_MALFORMED;
	if (!take_u8(&c, &count) || count > TLS_SESSION_ID_MAX || !take_bytes(&c, count, &skip))
		return PEEK_MALFORMED;
	if (!take_u16(&c, &count) || count == 0 || count % 2 != 0 || !take_bytes(&c, count, &skip))
		return PEEK_MALFORMED;
	if (!take_u8(&c, &count) || count == 0 || !take_bytes(&c, count, &skip))
		return PEEK_MALFORMED;
	if (c.left == 0)
		return PEEK_NOT_THIS;
	if (!take_u16(&c, &count) || count != c.left)
		return PEEK_MALFORMED;

	const uint8_t *sni = NULL;
	size_t sni_len = 0;
	while (c.left > 0) {
		size_t type, ext_len;
		const uint8_t *data;
		if (!take_u16(&c, &type) || !take_u16(&c, &ext_len) ||
		    !take_bytes(&c, ext_len, &data))
			return PEEK_MALFORMED;
		if (type == TLS_EXT_SERVER_NAME) {
			if (sni)
				return PEEK_MALFORMED;
			sni = data;
			sni_len = ext_len;
		} else if (type == TLS_EXT_ECH) {
			if (*ech)
				return PEEK_MALFORMED;
			*ech = true;
		}
	}
	if (!sni)
		return PEEK_NOT_THIS;
	return tls_server_name(sni, sni_len, name, name_size);
}

int peek_tls_sni(const uint8_t *buf, size_t len, char *name, size_t name_size, unsigned *flags)
{
	uint8_t hs[PEEK_MAX_BYTES];
	const uint8_t *body;
	size_t body_len;
	bool ech = false;

	if (name_size > 0)
		name[0] = '\0';
	if (flags)
		*flags = 0;
	if (len > PEEK_MAX_BYTES)
		len = PEEK_MAX_BYTES;
	int rc = tls_gather(buf, len, hs, &body, &body_len);
	if (rc != PEEK_FOUND)
		return rc;
	rc = tls_client_hello(body, body_len, name, name_size, &ech);
	if (rc != PEEK_FOUND && name_size > 0)
		name[0] = '\0';
	if (flags && ech && (rc == PEEK_FOUND || rc == PEEK_NOT_THIS))
		*flags = PEEK_FLAG_ECH;
	return rc;
}

/* ---- HTTP ---- */

/* A host named by the request: text to check, or an IP literal (never a name). */
struct http_host {
	const uint8_t *text;
	size_t len;
	bool present;
	bool literal;
};

struct http_request {
	const uint8_t *method;
	size_t method_len;
	const uint8_t *target;
	size_t target_len;
	size_t end; /* offset after the request line's CRLF */
};

/* Whether byte i of a line (at offset line + i of buf) can be looked at: PEEK_FOUND if so,
 * `too_long` past PEEK_LINE_MAX or PEEK_MAX_BYTES, PEEK_NEED_MORE past len. */
static int line_byte(size_t line, size_t i, size_t len, int too_long)
{
	if (i >= PEEK_LINE_MAX || line + i >= PEEK_MAX_BYTES)
		return too_long;
	if (line + i >= len)
		return PEEK_NEED_MORE;
	return PEEK_FOUND;
}

/* The request line, checked byte by byte so that non-HTTP bytes are refused at the first byte
 * that cannot belong to one. */
static int http_request_line(const uint8_t *buf, size_t len, struct http_request *rq)
{
	static const char version[] = "HTTP/1.";
	size_t i = 0;
	int rc;

	for (;; i++) {
		if ((rc = line_byte(0, i, len, PEEK_NOT_THIS)) != PEEK_FOUND)
			return rc;
		if (buf[i] == ' ' && i > 0)
			break;
		if (i >= HTTP_METHOD_MAX || !(i == 0 ? is_alpha(buf[i]) : is_tchar(buf[i])))
			return PEEK_NOT_THIS;
	}
	rq->method = buf;
	rq->method_len = i++;
	size_t start = i;
	for (;; i++) {
		if ((rc = line_byte(0, i, len, PEEK_NOT_THIS)) != PEEK_FOUND)
			return rc;
		if (buf[i] == ' ' && i > start)
			break;
		if (buf[i] <= ' ' || buf[i] == 0x7f)
			return PEEK_NOT_THIS;
	}
	rq->target = buf + start;
	rq->target_len = i++ - start;
	for (size_t k = 0; k < sizeof version - 1; k++, i++) {
		if ((rc = line_byte(0, i, len, PEEK_NOT_THIS)) != PEEK_FOUND)
			return rc;
		if (buf[i] != (uint8_t)version[k])
			return PEEK_NOT_THIS;
	}
	static const char tail[] = "\r\n";
	for (size_t k = 0; k < sizeof tail; k++, i++) {
		if ((rc = line_byte(0, i, len, PEEK_NOT_THIS)) != PEEK_FOUND)
			return rc;
		if (k == 0 ? !is_digit(buf[i]) : buf[i] != (uint8_t)tail[k - 1])
			return PEEK_NOT_THIS;
	}
	rq->end = i;
	return PEEK_FOUND;
}

/* Splits `host[:port]` or `[v6]:port` (no spaces around) and checks both parts; port_required
 * for CONNECT's authority-form. Fills *h; returns PEEK_FOUND or PEEK_MALFORMED. */
static int http_host_port(const uint8_t *s, size_t n, bool port_required, struct http_host *h)
{
	size_t host_end, i;
	h->present = true;
	h->literal = false;
	if (n > 0 && s[0] == '[') {
		for (host_end = 1; host_end < n && s[host_end] != ']'; host_end++)
			;
		struct addr a;
		if (host_end == n || addr_parse(&a, (const char *)s + 1, host_end - 1) != 0 ||
		    a.family != ADDR_V6)
			return PEEK_MALFORMED;
		h->literal = true;
		h->text = s + 1;
		h->len = host_end - 1;
		i = host_end + 1;
	} else {
		for (host_end = 0; host_end < n && s[host_end] != ':'; host_end++)
			;
		h->text = s;
		h->len = host_end;
		i = host_end;
		size_t ignored;
		if (name_check(s, host_end, &ignored) == PEEK_MALFORMED)
			return PEEK_MALFORMED;
	}
	if (i == n)
		return port_required ? PEEK_MALFORMED : PEEK_FOUND;
	if (s[i++] != ':')
		return PEEK_MALFORMED;
	size_t digits = n - i, port = 0;
	if (digits > HTTP_PORT_DIGITS_MAX || (port_required && digits == 0))
		return PEEK_MALFORMED;
	for (; i < n; i++) {
		if (!is_digit(s[i]))
			return PEEK_MALFORMED;
		port = port * 10 + (size_t)(s[i] - '0');
	}
	return port <= 65535 ? PEEK_FOUND : PEEK_MALFORMED;
}

/* The host a request target names, if it has an authority (RFC 9112 section 3.2). A userinfo
 * part ("user@host") is refused with the other non-host bytes. */
static int http_target_host(const struct http_request *rq, struct http_host *h)
{
	const uint8_t *t = rq->target;
	size_t n = rq->target_len;
	h->present = false;

	if (rq->method_len == 7 && memcmp(rq->method, "CONNECT", 7) == 0)
		return http_host_port(t, n, true, h);
	if (t[0] == '/' || (n == 1 && t[0] == '*'))
		return PEEK_FOUND;
	size_t i = 0;
	while (i < n && (is_alpha(t[i]) || (i > 0 && (is_digit(t[i]) || t[i] == '+' ||
							t[i] == '-' || t[i] == '.'))))
		i++;
	if (i == 0 || n - i < 3 || memcmp(t + i, "://", 3) != 0)
		return PEEK_MALFORMED;
	size_t start = i + 3, end = start;
	while (end < n && t[end] != '/' && t[end] != '?' && t[end] != '#')
		end++;
	if (end == start)
		return PEEK_MALFORMED;
	return http_host_port(t + start, end - start, false, h);
}

static bool is_ows(uint8_t c)
{
	return c == ' ' || c == '\t';
}

/* A Host header's value (between the colon and CR): trimmed, then host[:port]. */
static int http_host_value(const uint8_t *v, size_t n, struct http_host *h)
{
	while (n > 0 && is_ows(v[0])) {
		v++;
		n--;
	}
	while (n > 0 && is_ows(v[n - 1]))
		n--;
	if (n == 0) {
		h->present = true;
		h->literal = false;
		h->text = v;
		h->len = 0;
		return PEEK_FOUND;
	}
	return http_host_port(v, n, false, h);
}

/* One header line at buf + line. Returns PEEK_FOUND with *next after its CRLF (== line + 2 for
 * the empty line ending the block), or PEEK_NEED_MORE / PEEK_MALFORMED. */
static int http_header_line(const uint8_t *buf, size_t len, size_t line, size_t *next,
			    struct http_host *host)
{
	const uint8_t *s = buf + line;
	size_t i = 0, colon = 0;
	int rc;

	for (;; i++) {
		if ((rc = line_byte(line, i, len, PEEK_MALFORMED)) != PEEK_FOUND)
			return rc;
		if (s[i] == ':' && i > 0) {
			colon = i;
			break;
		}
		if (s[i] == '\r' && i == 0)
			break;
		if (!is_tchar(s[i]))
			return PEEK_MALFORMED; /* obs-fold, whitespace before the colon, bare LF */
	}
	if (colon > 0) {
		for (i++;; i++) {
			if ((rc = line_byte(line, i, len, PEEK_MALFORMED)) != PEEK_FOUND)
				return rc;
			if (s[i] == '\r')
				break;
			if ((s[i] < ' ' && s[i] != '\t') || s[i] == 0x7f)
				return PEEK_MALFORMED;
		}
	}
	if ((rc = line_byte(line, i + 1, len, PEEK_MALFORMED)) != PEEK_FOUND)
		return rc;
	if (s[i + 1] != '\n')
		return PEEK_MALFORMED;
	*next = line + i + 2;
	if (colon == 4 && (s[0] | 0x20) == 'h' && (s[1] | 0x20) == 'o' && (s[2] | 0x20) == 's' &&
	    (s[3] | 0x20) == 't') {
		if (host->present)
			return PEEK_MALFORMED;
		return http_host_value(s + colon + 1, i - colon - 1, host);
	}
	return PEEK_FOUND;
}

/* The final answer for a host the request names. */
static int http_name(const struct http_host *h, char *name, size_t name_size)
{
	if (!h->present || h->literal || h->len == 0)
		return PEEK_NOT_THIS;
	return name_store(h->text, h->len, name, name_size);
}

int peek_http_host(const uint8_t *buf, size_t len, char *name, size_t name_size)
{
	struct http_request rq;
	struct http_host target, host = {.present = false};

	if (name_size > 0)
		name[0] = '\0';
	if (len > PEEK_MAX_BYTES)
		len = PEEK_MAX_BYTES;
	int rc = http_request_line(buf, len, &rq);
	if (rc != PEEK_FOUND)
		return rc;
	if ((rc = http_target_host(&rq, &target)) != PEEK_FOUND)
		return rc;
	size_t line = rq.end, next = 0;
	for (;;) {
		if ((rc = http_header_line(buf, len, line, &next, &host)) != PEEK_FOUND)
			return rc;
		if (next == line + 2)
			break;
		line = next;
	}
	rc = http_name(target.present ? &target : &host, name, name_size);
	if (rc != PEEK_FOUND && name_size > 0)
		name[0] = '\0';
	return rc;
}

/* ---- Either ---- */

int peek_name_flags(const uint8_t *buf, size_t len, char *name, size_t name_size,
		    enum peek_source *src, unsigned *flags)
{
	if (src)
		*src = PEEK_SRC_NONE;
	if (flags)
		*flags = 0;
	if (name_size > 0)
		name[0] = '\0';
	if (len == 0)
		return PEEK_NEED_MORE;
	if (buf[0] == TLS_CONTENT_HANDSHAKE) {
		if (src)
			*src = PEEK_SRC_SNI;
		return peek_tls_sni(buf, len, name, name_size, flags);
	}
	if (is_alpha(buf[0])) {
		if (src)
			*src = PEEK_SRC_HOST;
		return peek_http_host(buf, len, name, name_size);
	}
	return PEEK_NOT_THIS;
}

int peek_name(const uint8_t *buf, size_t len, char *name, size_t name_size,
	      enum peek_source *src)
{
	return peek_name_flags(buf, len, name, name_size, src, NULL);
}
