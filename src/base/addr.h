/* addr.h — IP addresses and CIDR prefixes as plain bytes, parsed and printed without OS calls.
 *
 * Every module that names an address (packets, NAT table, policy, DNS, audit) uses these types,
 * so that IPv4 and IPv6 travel through sluice the same way. An IPv4 address keeps its four bytes in
 * bytes[0..3] and zeros after; a value is comparable with memcmp/addr_equal.
 */
#ifndef SLUICE_BASE_ADDR_H
#define SLUICE_BASE_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum addr_family {
	ADDR_NONE = 0,
	ADDR_V4 = 4,
	ADDR_V6 = 6,
};

struct addr {
	uint8_t family; /* enum addr_family */
	uint8_t bytes[16];
};

struct cidr {
	struct addr base; /* host bits are zero */
	uint8_t prefix;   /* 0..32 or 0..128 */
};

/* Longest text addr_format writes, with its NUL ("ffff:...:255.255.255.255"). */
#define ADDR_STRLEN 46
/* Longest text addr_format_port writes: "[" ADDR "]:65535" and NUL. */
#define ADDR_PORT_STRLEN (ADDR_STRLEN + 8)

/* Builds an address from network-order bytes (4 for ADDR_V4, 16 for ADDR_V6). */
void addr_from_bytes(struct addr *out, enum addr_family family, const uint8_t *bytes);

/* Number of significant bytes: 4, 16, or 0 for ADDR_NONE. */
size_t addr_len(const struct addr *a);

bool addr_equal(const struct addr *a, const struct addr *b);

/* Parses dotted-quad IPv4 (no leading zeros, which some parsers read as octal) or IPv6 text
 * (RFC 4291 forms, "::" and an embedded dotted-quad tail; no zone index). `text` need not be
 * NUL-terminated. Returns 0, or -EINVAL with *out unchanged. */
int addr_parse(struct addr *out, const char *text, size_t len);

/* Writes the canonical text (RFC 5952 for IPv6: lowercase, longest zero run as "::",
 * "::ffff:a.b.c.d" for IPv4-mapped) into buf of size n (ADDR_STRLEN suffices).
 * Returns the length written, or -ENOSPC if n is too small (buf then holds "" when n > 0). */
int addr_format(const struct addr *a, char *buf, size_t n);

/* Like addr_format, with ":port" appended, IPv6 in brackets ("[2001:db8::1]:443"). */
int addr_format_port(const struct addr *a, uint16_t port, char *buf, size_t n);

/* If a is IPv4-mapped IPv6 (::ffff:a.b.c.d), returns true and stores the IPv4 address in *out;
 * otherwise returns false and copies a into *out. */
bool addr_unmap_v4(const struct addr *a, struct addr *out);

/* If a is an IPv6 address that carries an IPv4 address, returns true and stores that IPv4
 * address in *out: IPv4-mapped ::ffff:a.b.c.d, IPv4-compatible ::a.b.c.d (RFC 4291 2.5.5.1;
 * not "::" or "::1", which are IPv6's own unspecified and loopback addresses) and the NAT64
 * well-known prefix 64:ff9b::a.b.c.d (RFC 6052). Otherwise returns false and copies a. */
bool addr_embedded_v4(const struct addr *a, struct addr *out);

/* Parses "ADDR" or "ADDR/LEN" (an address alone is a host prefix: /32 or /128).
 * Returns 0; -EINVAL for bad syntax; -ERANGE for a length beyond the family's bits;
 * -EDOM when bits beyond the prefix are set ("10.0.0.1/8"), with *out still filled in,
 * host bits cleared, so that the caller can suggest the intended prefix. */
int cidr_parse(struct cidr *out, const char *text, size_t len);

/* True when a is inside c. Families must match: an IPv4 prefix never contains an IPv6
 * address (callers that want ::ffff:a.b.c.d to count as IPv4 unmap it first). */
bool cidr_contains(const struct cidr *c, const struct addr *a);

/* Writes "ADDR/LEN". Returns the length, or -ENOSPC. */
int cidr_format(const struct cidr *c, char *buf, size_t n);

#endif
