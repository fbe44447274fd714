/* dns_msg.h — DNS messages (RFC 1035) read from untrusted bytes, and the few that sluice writes.
 *
 * The DNS proxy parses every query a session process sends and every answer an upstream resolver
 * returns. Both come from parties sluice does not trust, so:
 *
 * - The parser works on a length-checked buffer and fills a fixed-size struct dns_message: no
 *   allocation, bounded work. A message it does not accept yields -EBADMSG and nothing else.
 * - Names are decompressed with every pointer required to point strictly below the start of the
 *   stretch of labels it was reached from (so each jump goes further back and no loop can exist),
 *   never into the header, at most DNS_MAX_POINTERS jumps per name; labels are 0..63 bytes (the
 *   0x40/0x80 label types are refused) and a name is at most 255 bytes on the wire.
 * - Names keep their bytes exactly as received (queries must be echoed as asked) in struct
 *   dns_name, and are turned into text only by dns_name_format: a lowercase form for the policy
 *   and a presentation form for the audit trail. Both escape every byte outside [A-Za-z0-9-_]
 *   as \DDD (a dot inside a label as "\."), so network bytes never reach a log raw; a name with
 *   such bytes has `hostname` false and the proxy refuses it.
 * - Of a response, the parser keeps the answer section's class-IN A, AAAA and CNAME records (the
 *   first DNS_MAX_ANSWERS; later ones are counted) and the EDNS OPT record of the additional
 *   section; every other record is checked (owner name, fixed fields, rdlength within the
 *   message) and skipped. Records are bounded by the counts in the header, which must all be
 *   present — except in a response with TC set that ends cleanly between records (servers
 *   truncate there); `partial` then says so. Bytes after the last record are ignored.
 *
 * The rebinding guard's filter (dns_filter_addresses) rebuilds a response without compression
 * rather than cutting records out of the original bytes: cutting would leave compression pointers
 * aimed into removed or shifted bytes, while a rebuilt message is valid by construction. Names in
 * the rdata of the types that may carry compressed names (RFC 3597 section 4, plus MX-like, SRV,
 * NAPTR, PX and DNAME) are decompressed; other rdata is copied as it is.
 */
#ifndef SLUICE_PROXY_DNS_MSG_H
#define SLUICE_PROXY_DNS_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/addr.h"

#define DNS_HEADER_LEN 12
#define DNS_LABEL_MAX 63
/* Longest name on the wire, its final zero byte included. */
#define DNS_NAME_WIRE_MAX 255
/* Text of the longest name in either form, every byte escaped as \DDD, with the NUL. */
#define DNS_NAME_TEXT_MAX 1024
/* Compression pointers followed while reading one name. */
#define DNS_MAX_POINTERS 64
/* A, AAAA and CNAME answers kept by the parser; later ones are only counted. */
#define DNS_MAX_ANSWERS 64
/* Largest DNS message (TCP's 2-byte length prefix). */
#define DNS_MESSAGE_MAX 65535
/* Classic DNS over UDP without EDNS (RFC 1035 section 4.2.1). */
#define DNS_UDP_CLASSIC_MAX 512

enum dns_type {
	DNS_TYPE_A = 1,
	DNS_TYPE_NS = 2,
	DNS_TYPE_CNAME = 5,
	DNS_TYPE_SOA = 6,
	DNS_TYPE_PTR = 12,
	DNS_TYPE_MX = 15,
	DNS_TYPE_TXT = 16,
	DNS_TYPE_AAAA = 28,
	DNS_TYPE_SRV = 33,
	DNS_TYPE_DNAME = 39,
	DNS_TYPE_OPT = 41,
	DNS_TYPE_SVCB = 64,
	DNS_TYPE_HTTPS = 65,
	DNS_TYPE_ANY = 255,
};

enum dns_class {
	DNS_CLASS_IN = 1,
};

enum dns_rcode {
	DNS_RCODE_NOERROR = 0,
	DNS_RCODE_FORMERR = 1,
	DNS_RCODE_SERVFAIL = 2,
	DNS_RCODE_NXDOMAIN = 3,
	DNS_RCODE_NOTIMP = 4,
	DNS_RCODE_REFUSED = 5,
};

enum dns_opcode {
	DNS_OPCODE_QUERY = 0,
};

/* The 12-byte header, flags unpacked. */
struct dns_header {
	uint16_t id;
	bool qr, aa, tc, rd, ra, ad, cd;
	uint8_t opcode; /* 0..15 */
	uint8_t rcode;  /* 0..15: the header's bits only, not EDNS's extended rcode */
	uint16_t qdcount, ancount, nscount, arcount;
};

/* A name as received, decompressed: labels with their length bytes and the final zero byte. */
struct dns_name {
	uint8_t wire[DNS_NAME_WIRE_MAX];
	uint8_t len;    /* bytes used in wire: 1 (the root) .. 255 */
	uint8_t labels; /* labels before the root */
	bool hostname;  /* not the root, and every label byte is a letter, digit, '-' or '_' */
};

struct dns_question {
	struct dns_name name;
	uint16_t qtype;
	uint16_t qclass;
};

/* One class-IN A, AAAA or CNAME record of the answer section. */
struct dns_record {
	struct dns_name owner;
	uint16_t type;          /* DNS_TYPE_A, DNS_TYPE_AAAA or DNS_TYPE_CNAME */
	uint32_t ttl;           /* seconds; a TTL with the top bit set reads as 0 (RFC 2181 8) */
	struct addr address;    /* A and AAAA */
	struct dns_name target; /* CNAME */
};

struct dns_edns {
	bool present;      /* an OPT record was in the additional section */
	uint16_t udp_size; /* the sender's UDP payload size (OPT's class field) */
	uint8_t version;
	bool dnssec_ok;
};

struct dns_message {
	struct dns_header header;
	bool has_question;  /* always true for a query; a response may carry no question */
	struct dns_question question;
	size_t n_answers;       /* entries used in answers[] */
	size_t answers_skipped; /* A, AAAA and CNAME answers beyond DNS_MAX_ANSWERS */
	struct dns_record answers[DNS_MAX_ANSWERS];
	struct dns_edns edns;
	bool partial; /* TC response that ended before the records its counts announce */
};

/* Parses a query: QR clear and exactly one question. Its other sections are checked and, apart
 * from an OPT record, ignored. Returns 0 with *out filled, or -EBADMSG (then *out is unusable;
 * dns_build_formerr still answers a query whose header is readable). */
int dns_parse_query(const uint8_t *msg, size_t len, struct dns_message *out);

/* Parses a response: QR set, zero or one question, A/AAAA/CNAME answers as described above.
 * Returns 0 with *out filled, or -EBADMSG. */
int dns_parse_response(const uint8_t *msg, size_t len, struct dns_message *out);

/* Writes the question of `query` (parsed by dns_parse_query) back as a response with `rcode`
 * (e.g. DNS_RCODE_NXDOMAIN for a denied name, REFUSED, SERVFAIL) and no records: id, opcode, RD,
 * CD and the question's bytes copied, QR and RA set. Returns the length written, -ENOSPC when
 * cap is too small, -EINVAL for an rcode above 15 or a message without a question. */
int dns_build_reply(const struct dns_message *query, uint8_t rcode, uint8_t *out, size_t cap);

/* Answers a query whose header is readable but whose rest is not: the id, opcode and RD copied,
 * QR set, rcode FORMERR, no sections (12 bytes). Returns 12, -ENOSPC, or -EBADMSG when msg is
 * shorter than a header or is itself a response (never answer a response: no reply loops). */
int dns_build_formerr(const uint8_t *msg, size_t len, uint8_t *out, size_t cap);

/* Rewrites the message id in place (for a proxy multiplexing queries upstream). Returns 0 or
 * -EBADMSG when len is shorter than a header. */
int dns_set_id(uint8_t *msg, size_t len, uint16_t id);

struct dns_filter_result {
	size_t dropped;  /* A/AAAA records left out */
	bool truncated;  /* the rebuilt message did not fit: a TC reply was written instead */
};

/* The rebinding guard: copies response msg to out, leaving out every class-IN A and AAAA record
 * (in any section) for which drop(address, ctx) returns true, rebuilt without compression with
 * the section counts updated; all other records and their order are kept. When the rebuilt
 * message exceeds cap (or DNS_MESSAGE_MAX), writes instead the header with TC set, no records
 * and the question, so that the client retries over TCP. Returns the length written, -EBADMSG
 * for a message dns_parse_response refuses or with rdata not matching its type's layout,
 * -ENOSPC when not even the TC reply fits, -EINVAL for NULL arguments. `result` may be NULL.
 * DNSSEC signatures over a shortened RRset no longer verify; a validating client then refuses
 * the answer, which is the guard's purpose anyway. */
int dns_filter_addresses(const uint8_t *msg, size_t len,
			 bool (*drop)(const struct addr *address, void *ctx), void *ctx,
			 uint8_t *out, size_t cap, struct dns_filter_result *result);

enum dns_name_form {
	DNS_NAME_LOWER,        /* for the policy and the DNS map: ASCII letters lowercased */
	DNS_NAME_PRESENTATION, /* for the audit trail: bytes as received */
};

/* Writes the name as text: labels joined by '.', no trailing dot, the root as "."; bytes outside
 * [A-Za-z0-9-_] as \DDD, except a dot inside a label as "\.". The text holds only printable
 * ASCII. Returns its length, or -ENOSPC when size is too small (DNS_NAME_TEXT_MAX suffices;
 * buf then holds "" if size > 0). */
int dns_name_format(const struct dns_name *name, enum dns_name_form form, char *buf, size_t size);

/* Reads a name in presentation form (len bytes, no NUL needed): labels separated by dots, an
 * optional trailing dot, "." for the root, \DDD and \X escapes. Returns 0, or -EINVAL for bad
 * escapes, empty labels, a label over 63 bytes or a name over 255 wire bytes. */
int dns_name_from_text(struct dns_name *out, const char *text, size_t len);

/* Same name, ASCII letters compared without case (RFC 4343). */
bool dns_name_equal(const struct dns_name *a, const struct dns_name *b);

/* Same name (without case), type and class: does a response answer this query's question? */
bool dns_question_match(const struct dns_question *a, const struct dns_question *b);

/* The mnemonic of a record type ("A", "AAAA", "HTTPS", ...) or NULL for an unknown type. */
const char *dns_type_name(uint16_t type);

/* Writes the mnemonic, or "TYPE<number>" (RFC 3597) for unknown types. Returns the length or
 * -ENOSPC; 16 bytes always suffice. */
int dns_type_format(uint16_t type, char *buf, size_t size);

/* "NOERROR", "NXDOMAIN", ... or NULL for an rcode without a name here. */
const char *dns_rcode_name(uint8_t rcode);

/* DNS over TCP: each message is preceded by its length, 2 bytes big-endian. */

/* Looks for one framed message at the start of buf. Returns the bytes the frame occupies
 * (2 + message length) and sets *msg and *msg_len when it is complete, 0 when more bytes are
 * needed, -EBADMSG when the announced length cannot hold a header. */
int dns_tcp_next(const uint8_t *buf, size_t len, const uint8_t **msg, size_t *msg_len);

/* Writes the 2-byte prefix for a message of msg_len bytes. Returns 0, or -EMSGSIZE above
 * DNS_MESSAGE_MAX. */
int dns_tcp_prefix(uint8_t out[2], size_t msg_len);

#endif
