/* peek.h — the name a TCP client gives in its first bytes: TLS SNI or HTTP/1.x Host.
 *
 * The relay reads a captured connection's first bytes into a buffer and calls peek_name after
 * each read, with everything read so far. The bytes come from a process sluice does not trust,
 * so the parsers:
 *
 * - work on a length-checked view, never allocate, and look at the first PEEK_MAX_BYTES bytes
 *   only; with len >= PEEK_MAX_BYTES the answer is never PEEK_NEED_MORE;
 * - are stable under growth: once a call on some bytes returns anything but PEEK_NEED_MORE, every
 *   call on those bytes with more appended returns the same result, the same name, the same
 *   source and flags (tests/fuzz/fuzz_peek.c checks this). Every strict prefix of a message that
 *   gives PEEK_FOUND gives PEEK_NEED_MORE: a name is returned only once the whole ClientHello or
 *   the whole HTTP header block has arrived, so that a later duplicate cannot change it;
 * - return a name only as host text: 1..253 bytes of [a-z0-9._-] after lowercasing and removing
 *   one trailing dot, labels of 1..63 bytes. Any other byte makes the result PEEK_MALFORMED, so
 *   network bytes never reach a log raw. IP literals (a bracketed IPv6 address, or a name whose
 *   last label is numeric such as "192.0.2.1" or "0x7f.1") are not names: PEEK_NOT_THIS, so that
 *   the caller falls back to its other sources (the DNS map).
 *
 * TLS (peek_tls_sni): records of content type 22 and version 0x03xx, each 1..2^14+2048 bytes,
 * whose payloads are reassembled into one handshake message (a ClientHello may be fragmented
 * across records, even its 4-byte header); it must be a ClientHello (type 1) and fit, with its
 * record headers, in PEEK_MAX_BYTES. Its fields are length-checked (session id <= 32, cipher
 * suites even and non-empty, compression methods non-empty, extensions exactly filling the rest,
 * each one inside the block). Unknown extensions are skipped. The server_name extension (0) must
 * hold a non-empty server_name_list that fills it; its first host_name (type 0) entry is the name;
 * other entry types are skipped. server_name or encrypted_client_hello present twice: MALFORMED.
 * A hello without extensions or without a host_name: PEEK_NOT_THIS. SSLv2-compatible hellos (first
 * byte 0x80 or higher): PEEK_NOT_THIS.
 *
 * ECH: when the ClientHello carries encrypted_client_hello (0xfe0d), its server_name is the outer
 * one, the ECH public name (e.g. the CDN's), and the real destination is encrypted; the result
 * is still that outer name, with PEEK_FLAG_ECH set, and the policy decides on the public name.
 * Clients that support ECH also send a "GREASE" ECH extension when they have no ECH config, so the
 * flag means "ECH offered or imitated", not "the name is hidden".
 *
 * HTTP (peek_http_host): a request line `METHOD SP request-target SP HTTP/1.d CRLF` (method: a
 * token starting with a letter, at most 32 bytes), header lines up to an empty line, every line
 * CRLF-terminated (a bare CR or LF is MALFORMED) and at most PEEK_LINE_MAX bytes. The name comes
 * from the request target when it has an authority (RFC 9112 section 3.2: CONNECT's authority-form
 * `host:port`, or an absolute-form `scheme://host[:port]/...`, which takes precedence over Host),
 * else from the Host header (name matched case-insensitively, value trimmed of spaces and tabs,
 * port removed). MALFORMED: two Host headers, a Host value with spaces, control bytes, commas or
 * other non-host bytes, a userinfo part, an obs-fold continuation line, a header name that is not
 * a token or is followed by whitespace before the colon. No Host (HTTP/1.0) or an empty Host:
 * PEEK_NOT_THIS. Bytes that do not form a request line: PEEK_NOT_THIS, decided at the first byte
 * that cannot belong to one (binary data after one byte).
 */
#ifndef SLUICE_PROXY_PEEK_H
#define SLUICE_PROXY_PEEK_H

#include <stddef.h>
#include <stdint.h>

/* The most of a client's first bytes worth waiting for. */
#define PEEK_MAX_BYTES 16384
/* Size of a buffer that holds any name the parsers return (253 bytes and the NUL). */
#define PEEK_NAME_MAX 254
/* Longest HTTP request or header line, CRLF included. */
#define PEEK_LINE_MAX 8192

enum peek_result {
	PEEK_FOUND = 1,      /* name holds the host name */
	PEEK_NEED_MORE = 0,  /* a prefix of a message that may still name a host: read more */
	PEEK_NOT_THIS = -1,  /* not this protocol, or this protocol without a name */
	PEEK_MALFORMED = -2, /* this protocol, broken or beyond the bounds above */
};

enum peek_source {
	PEEK_SRC_NONE = 0, /* the first byte is neither a TLS handshake record nor a letter */
	PEEK_SRC_SNI = 1,  /* the bytes were read as TLS */
	PEEK_SRC_HOST = 2, /* the bytes were read as HTTP/1.x */
};

/* Bits of peek_name_flags' and peek_tls_sni's *flags. */
#define PEEK_FLAG_ECH 0x1u /* the ClientHello carried encrypted_client_hello */

/* Looks for the server_name of a TLS ClientHello at the start of buf (len bytes, borrowed).
 * Returns a peek_result; on PEEK_FOUND, name (name_size bytes, PEEK_NAME_MAX suffices; a name
 * that does not fit is PEEK_MALFORMED) holds the NUL-terminated name, otherwise "" (when
 * name_size > 0). *flags (may be NULL) gets PEEK_FLAG_ECH when the complete ClientHello offered
 * ECH and the result is PEEK_FOUND or PEEK_NOT_THIS, else 0. */
int peek_tls_sni(const uint8_t *buf, size_t len, char *name, size_t name_size, unsigned *flags);

/* Looks for the host an HTTP/1.x request at the start of buf names (request target, else Host
 * header). Returns a peek_result; name as for peek_tls_sni. */
int peek_http_host(const uint8_t *buf, size_t len, char *name, size_t name_size);

/* Runs the parser the first byte calls for: 0x16 (a TLS handshake record) for peek_tls_sni, an
 * ASCII letter for peek_http_host; any other first byte is PEEK_NOT_THIS at once, and no byte
 * PEEK_NEED_MORE. *src (may be NULL) says which parser ran, whatever the result; *flags (may be
 * NULL) as for peek_tls_sni, 0 for HTTP. Returns that parser's result. */
int peek_name_flags(const uint8_t *buf, size_t len, char *name, size_t name_size,
		    enum peek_source *src, unsigned *flags);

/* peek_name_flags without the flags. */
int peek_name(const uint8_t *buf, size_t len, char *name, size_t name_size,
	      enum peek_source *src);

#endif
