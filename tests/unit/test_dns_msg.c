/* test_dns_msg.c — DNS message parsing, names as text, the builders, the filter, TCP framing. */
#include "check.h"
#include "proxy/dns_msg.h"

#include <errno.h>

/* Messages are written out byte by byte, as a packet dump would show them. Name labels use
 * three-digit octal length bytes ("\003www") so that no hex escape can swallow a letter. */
#define BYTES(s) (const uint8_t *)(s), (sizeof(s) - 1)

#define WWW_EXAMPLE_COM "\003www\007example\003com\000"
#define TYPE_A_IN "\x00\x01\x00\x01"

/* The query `dig www.example.com A` sends: id 0x1234, RD. */
#define QUERY_WWW "\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" WWW_EXAMPLE_COM TYPE_A_IN

/* Its answer through a CDN: www.example.com CNAME edge.cdn.test (the target at offset 45),
 * edge.cdn.test A 192.0.2.1 and AAAA 2001:db8::1 (owners pointing at the CNAME's rdata), and
 * an EDNS OPT record (UDP size 1232, DO). */
#define RESPONSE_CDN                                                                        \
	"\x12\x34\x81\x80\x00\x01\x00\x03\x00\x00\x00\x01" WWW_EXAMPLE_COM TYPE_A_IN         \
	"\xc0\x0c\x00\x05\x00\x01\x00\x00\x00\x3c\x00\x0f"                                     \
	"\004edge\003cdn\004test\000"                                                        \
	"\xc0\x2d\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04\xc0\x00\x02\x01"                     \
	"\xc0\x2d\x00\x1c\x00\x01\x00\x00\x01\x2c\x00\x10"                                     \
	"\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"                     \
	"\x00\x00\x29\x04\xd0\x00\x00\x80\x00\x00\x00"

/* A response header (id 0x1234, QR RD RA) with counts, then the question for www.example.com. */
#define RESP_HDR(an, ns, ar) "\x12\x34\x81\x80\x00\x01\x00" an "\x00" ns "\x00" ar
#define RESP_Q(an, ns, ar) RESP_HDR(an, ns, ar) WWW_EXAMPLE_COM TYPE_A_IN
/* The fixed part of an A record: type A, class IN, TTL 300, rdlength 4. */
#define A_FIXED "\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04"

/* A growable message for the cases that are easier computed than written out. */
struct msg {
	uint8_t b[2048];
	size_t n;
};

static void m_bytes(struct msg *m, const void *p, size_t n)
{
	memcpy(m->b + m->n, p, n);
	m->n += n;
}

static void m_u16(struct msg *m, uint16_t v)
{
	uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	m_bytes(m, b, 2);
}

/* Appends `count` labels of `len` bytes ('a', 'b', ...), without the root. */
static void m_labels(struct msg *m, size_t count, size_t len)
{
	for (size_t i = 0; i < count; i++) {
		m->b[m->n++] = (uint8_t)len;
		memset(m->b + m->n, 'a' + (int)(i % 26), len);
		m->n += len;
	}
}

/* Parses from an exact-size heap copy, so that ASan sees any read past the end. */
static int parse_exact(bool response, const uint8_t *bytes, size_t len, struct dns_message *out)
{
	uint8_t *copy = malloc(len ? len : 1);
	if (!copy)
		abort();
	memcpy(copy, bytes, len);
	int rc = response ? dns_parse_response(copy, len, out) : dns_parse_query(copy, len, out);
	free(copy);
	return rc;
}

static struct dns_message msg_a, msg_b; /* large: kept off the stack */

static const char *lower(const struct dns_name *n)
{
	static char buf[4][DNS_NAME_TEXT_MAX];
	static int next;
	char *b = buf[next++ % 4];
	if (dns_name_format(n, DNS_NAME_LOWER, b, DNS_NAME_TEXT_MAX) < 0)
		return "(format failed)";
	return b;
}

static const char *presentation(const struct dns_name *n)
{
	static char buf[4][DNS_NAME_TEXT_MAX];
	static int next;
	char *b = buf[next++ % 4];
	if (dns_name_format(n, DNS_NAME_PRESENTATION, b, DNS_NAME_TEXT_MAX) < 0)
		return "(format failed)";
	return b;
}

static const char *addr_text(const struct addr *a)
{
	static char buf[ADDR_STRLEN];
	if (addr_format(a, buf, sizeof buf) < 0)
		return "(bad address)";
	return buf;
}

static void test_query(void)
{
	struct dns_message *m = &msg_a;
	CHECK_EQ(parse_exact(false, BYTES(QUERY_WWW), m), 0);
	CHECK_EQ(m->header.id, 0x1234);
	CHECK(!m->header.qr && m->header.rd && !m->header.tc && !m->header.aa);
	CHECK_EQ(m->header.opcode, DNS_OPCODE_QUERY);
	CHECK(m->has_question);
	CHECK_EQ(m->question.qtype, DNS_TYPE_A);
	CHECK_EQ(m->question.qclass, DNS_CLASS_IN);
	CHECK_STR_EQ(lower(&m->question.name), "www.example.com");
	CHECK_STR_EQ(presentation(&m->question.name), "www.example.com");
	CHECK_EQ(m->question.name.len, 17);
	CHECK_EQ(m->question.name.labels, 3);
	CHECK(m->question.name.hostname);
	CHECK_EQ(m->n_answers, 0);
	CHECK(!m->edns.present);
	CHECK_EQ(dns_parse_response(BYTES(QUERY_WWW), m), -EBADMSG);
}

struct flags_case {
	const char *name;
	uint8_t f1, f2;
	bool qr, aa, tc, rd, ra, ad, cd;
	uint8_t opcode, rcode;
};

static const struct flags_case flags_cases[] = {
	{"none", 0x00, 0x00, false, false, false, false, false, false, false, 0, 0},
	{"QR RD RA", 0x81, 0x80, true, false, false, true, true, false, false, 0, 0},
	{"AA", 0x84, 0x00, true, true, false, false, false, false, false, 0, 0},
	{"TC", 0x82, 0x00, true, false, true, false, false, false, false, 0, 0},
	{"AD CD", 0x80, 0x30, true, false, false, false, false, true, true, 0, 0},
	{"NXDOMAIN", 0x81, 0x83, true, false, false, true, true, false, false, 0, 3},
	{"rcode 15", 0x80, 0x0f, true, false, false, false, false, false, false, 0, 15},
	{"opcode STATUS", 0x90, 0x00, true, false, false, false, false, false, false, 2, 0},
	{"opcode 15", 0xf8, 0x00, true, false, false, false, false, false, false, 15, 0},
	{"Z bit ignored", 0x80, 0x40, true, false, false, false, false, false, false, 0, 0},
};

static void test_header_flags(void)
{
	for (size_t i = 0; i < sizeof flags_cases / sizeof flags_cases[0]; i++) {
		const struct flags_case *c = &flags_cases[i];
		check_case("%s", c->name);
		uint8_t b[sizeof(QUERY_WWW) - 1];
		memcpy(b, QUERY_WWW, sizeof b);
		b[2] = c->f1;
		b[3] = c->f2;
		struct dns_message *m = &msg_a;
		CHECK_EQ(parse_exact(c->qr, b, sizeof b, m), 0);
		const struct dns_header *h = &m->header;
		CHECK(h->qr == c->qr && h->aa == c->aa && h->tc == c->tc && h->rd == c->rd);
		CHECK(h->ra == c->ra && h->ad == c->ad && h->cd == c->cd);
		CHECK_EQ(h->opcode, c->opcode);
		CHECK_EQ(h->rcode, c->rcode);
	}
}

struct bytes_case {
	const char *name;
	const uint8_t *bytes;
	size_t len;
	int rc;
};

#define QHDR(qd, an, ar) "\xab\xcd\x01\x00\x00" qd "\x00" an "\x00\x00\x00" ar

static const struct bytes_case query_cases[] = {
	{"www.example.com A", BYTES(QUERY_WWW), 0},
	{"no question", BYTES(QHDR("\x00", "\x00", "\x00")), -EBADMSG},
	{"two questions", BYTES(QHDR("\x02", "\x00", "\x00") WWW_EXAMPLE_COM TYPE_A_IN
				WWW_EXAMPLE_COM TYPE_A_IN), -EBADMSG},
	{"QR set", BYTES("\xab\xcd\x81\x00\x00\x01\x00\x00\x00\x00\x00\x00" WWW_EXAMPLE_COM
			 TYPE_A_IN), -EBADMSG},
	{"header only", BYTES(QHDR("\x01", "\x00", "\x00")), -EBADMSG},
	{"short header", BYTES("\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00"), -EBADMSG},
	{"empty", (const uint8_t *)"", 0, -EBADMSG},
	{"qtype cut", BYTES(QHDR("\x01", "\x00", "\x00") WWW_EXAMPLE_COM "\x00\x01\x00"),
	 -EBADMSG},
	{"label 63", BYTES(QHDR("\x01", "\x00", "\x00")
			   "\077aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
			   "\000" TYPE_A_IN), 0},
	{"label 64 (0x40 type)", BYTES(QHDR("\x01", "\x00", "\x00")
			   "\100aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
			   "\000" TYPE_A_IN), -EBADMSG},
	{"0x80 label type", BYTES(QHDR("\x01", "\x00", "\x00") "\x80\000" TYPE_A_IN), -EBADMSG},
	{"label runs past end", BYTES(QHDR("\x01", "\x00", "\x00") "\010example"), -EBADMSG},
	{"no root label", BYTES(QHDR("\x01", "\x00", "\x00") "\007example"), -EBADMSG},
	{"pointer in question", BYTES(QHDR("\x01", "\x00", "\x00") "\xc0\x0c" TYPE_A_IN),
	 -EBADMSG},
	{"pointer into header", BYTES(QHDR("\x01", "\x00", "\x00") "\xc0\x02" TYPE_A_IN),
	 -EBADMSG},
	{"root name", BYTES(QHDR("\x01", "\x00", "\x00") "\000\x00\x02\x00\x01"), 0},
	{"announced answer missing", BYTES(QHDR("\x01", "\x01", "\x00") WWW_EXAMPLE_COM
					   TYPE_A_IN), -EBADMSG},
	{"OPT record", BYTES(QHDR("\x01", "\x00", "\x01") WWW_EXAMPLE_COM TYPE_A_IN
			     "\000\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00"), 0},
	{"trailing bytes ignored", BYTES(QUERY_WWW "\xff\xff"), 0},
};

static void test_query_table(void)
{
	for (size_t i = 0; i < sizeof query_cases / sizeof query_cases[0]; i++) {
		const struct bytes_case *c = &query_cases[i];
		check_case("%s", c->name);
		CHECK_EQ(parse_exact(false, c->bytes, c->len, &msg_a), c->rc);
	}
}

static void test_name_length_bounds(void)
{
	struct name_len_case {
		size_t labels, label_len, last_len, wire;
		int rc;
	} cases[] = {
		{3, 63, 0, 193, 0},
		{3, 63, 61, 255, 0},
		{3, 63, 62, 256, -EBADMSG},
		{4, 63, 0, 257, -EBADMSG},
		{127, 1, 0, 255, 0},
		{128, 1, 0, 257, -EBADMSG},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct name_len_case *c = &cases[i];
		check_case("%zu labels of %zu, then %zu", c->labels, c->label_len, c->last_len);
		struct msg m = {.n = 0};
		m_bytes(&m, QHDR("\x01", "\x00", "\x00"), 12);
		m_labels(&m, c->labels, c->label_len);
		if (c->last_len)
			m_labels(&m, 1, c->last_len);
		m.b[m.n++] = 0;
		CHECK_EQ(m.n - 12, c->wire);
		m_bytes(&m, TYPE_A_IN, 4);
		CHECK_EQ(parse_exact(false, m.b, m.n, &msg_a), c->rc);
		if (c->rc == 0)
			CHECK_EQ(msg_a.question.name.len, c->wire);
	}
}

static void test_response_cname_chain(void)
{
	struct dns_message *m = &msg_a;
	CHECK_EQ(parse_exact(true, BYTES(RESPONSE_CDN), m), 0);
	CHECK(m->header.qr && m->header.ra && m->header.rd);
	CHECK_EQ(m->header.ancount, 3);
	CHECK_STR_EQ(lower(&m->question.name), "www.example.com");
	CHECK_EQ(m->n_answers, 3);
	CHECK_EQ(m->answers_skipped, 0);
	CHECK(!m->partial);

	CHECK_EQ(m->answers[0].type, DNS_TYPE_CNAME);
	CHECK_STR_EQ(lower(&m->answers[0].owner), "www.example.com");
	CHECK_STR_EQ(lower(&m->answers[0].target), "edge.cdn.test");
	CHECK_EQ(m->answers[0].ttl, 60);

	CHECK_EQ(m->answers[1].type, DNS_TYPE_A);
	CHECK_STR_EQ(lower(&m->answers[1].owner), "edge.cdn.test");
	CHECK_STR_EQ(addr_text(&m->answers[1].address), "192.0.2.1");
	CHECK_EQ(m->answers[1].ttl, 300);

	CHECK_EQ(m->answers[2].type, DNS_TYPE_AAAA);
	CHECK_STR_EQ(lower(&m->answers[2].owner), "edge.cdn.test");
	CHECK_STR_EQ(addr_text(&m->answers[2].address), "2001:db8::1");

	CHECK(m->edns.present);
	CHECK_EQ(m->edns.udp_size, 1232);
	CHECK_EQ(m->edns.version, 0);
	CHECK(m->edns.dnssec_ok);
	CHECK_EQ(dns_parse_query(BYTES(RESPONSE_CDN), m), -EBADMSG);
}

/* Owner names of one A record after the question (the record starts at offset 33). */
static const struct bytes_case compression_cases[] = {
	{"pointer to the question", BYTES(RESP_Q("\x01", "\x00", "\x00") "\xc0\x0c" A_FIXED
					  "\xc0\x00\x02\x01"), 0},
	{"pointer to a suffix", BYTES(RESP_Q("\x01", "\x00", "\x00") "\003ftp\xc0\x10" A_FIXED
				      "\xc0\x00\x02\x01"), 0},
	{"pointer to a pointer", BYTES(RESP_Q("\x02", "\x00", "\x00") "\xc0\x0c" A_FIXED
				       "\xc0\x00\x02\x01" "\xc0\x21" A_FIXED "\xc0\x00\x02\x02"),
	 0},
	{"forward pointer", BYTES(RESP_Q("\x02", "\x00", "\x00") "\xc0\x31" A_FIXED
				  "\xc0\x00\x02\x01" WWW_EXAMPLE_COM A_FIXED "\xc0\x00\x02\x02"),
	 -EBADMSG},
	{"self pointer", BYTES(RESP_Q("\x01", "\x00", "\x00") "\xc0\x21" A_FIXED
			       "\xc0\x00\x02\x01"), -EBADMSG},
	{"backward pointer into its own labels", BYTES(RESP_Q("\x01", "\x00", "\x00")
						       "\001a\xc0\x21" A_FIXED "\xc0\x00\x02\x01"),
	 -EBADMSG},
	{"two pointers pointing at each other", BYTES(RESP_Q("\x02", "\x00", "\x00")
						      "\001a\xc0\x2d" A_FIXED "\xc0\x00\x02\x01"
						      "\001b\xc0\x21" A_FIXED "\xc0\x00\x02\x02"),
	 -EBADMSG},
	{"pointer into the header", BYTES(RESP_Q("\x01", "\x00", "\x00") "\xc0\x04" A_FIXED
					  "\xc0\x00\x02\x01"), -EBADMSG},
	{"pointer to offset 0", BYTES(RESP_Q("\x01", "\x00", "\x00") "\xc0\x00" A_FIXED
				      "\xc0\x00\x02\x01"), -EBADMSG},
	{"pointer cut after one byte", BYTES(RESP_Q("\x01", "\x00", "\x00") "\xc0"), -EBADMSG},
	{"pointer past the end", BYTES(RESP_Q("\x01", "\x00", "\x00") "\xff\xff" A_FIXED
				       "\xc0\x00\x02\x01"), -EBADMSG},
	{"CNAME target pointing forward", BYTES(RESP_Q("\x02", "\x00", "\x00")
						"\xc0\x0c\x00\x05\x00\x01\x00\x00\x00\x3c\x00\x02"
						"\xc0\x2f" "\001x\xc0\x0c" A_FIXED
						"\xc0\x00\x02\x01"),
	 -EBADMSG},
	{"CNAME target pointing back", BYTES(RESP_Q("\x02", "\x00", "\x00")
					     "\xc0\x0c\x00\x05\x00\x01\x00\x00\x00\x3c\x00\x04"
					     "\001x\xc0\x0c" "\xc0\x2d" A_FIXED "\xc0\x00\x02\x01"),
	 0},
};

static void test_compression(void)
{
	for (size_t i = 0; i < sizeof compression_cases / sizeof compression_cases[0]; i++) {
		const struct bytes_case *c = &compression_cases[i];
		check_case("%s", c->name);
		CHECK_EQ(parse_exact(true, c->bytes, c->len, &msg_a), c->rc);
	}
	const struct bytes_case *c = compression_cases;
	check_case("suffix and pointer-to-pointer names");
	CHECK_EQ(parse_exact(true, c[1].bytes, c[1].len, &msg_a), 0);
	CHECK_STR_EQ(lower(&msg_a.answers[0].owner), "ftp.example.com");
	CHECK_EQ(parse_exact(true, c[2].bytes, c[2].len, &msg_a), 0);
	CHECK_STR_EQ(lower(&msg_a.answers[1].owner), "www.example.com");
	CHECK_EQ(parse_exact(true, c[12].bytes, c[12].len, &msg_a), 0);
	CHECK_STR_EQ(lower(&msg_a.answers[0].target), "x.www.example.com");
	CHECK_STR_EQ(lower(&msg_a.answers[1].owner), "x.www.example.com");
}

/* A name reached through a chain of pointers: a record of a private type (65280) whose rdata
 * holds pointers each aiming at the one before it, the first at the question, and an A record
 * whose owner points at the last. */
static void test_pointer_chain_bound(void)
{
	for (size_t jumps = DNS_MAX_POINTERS - 1; jumps <= DNS_MAX_POINTERS + 1; jumps++) {
		check_case("%zu jumps", jumps);
		size_t links = jumps - 1;
		struct msg m = {.n = 0};
		m_bytes(&m, RESP_Q("\x02", "\x00", "\x00"), 33);
		m_bytes(&m, "\xc0\x0c\xff\x00\x00\x01\x00\x00\x00\x3c", 10);
		m_u16(&m, (uint16_t)(links * 2));
		size_t first = m.n;
		for (size_t k = 0; k < links; k++)
			m_u16(&m, (uint16_t)(0xc000 | (k == 0 ? 12 : first + 2 * (k - 1))));
		m_u16(&m, (uint16_t)(0xc000 | (links == 0 ? 12 : first + 2 * (links - 1))));
		m_bytes(&m, A_FIXED "\xc0\x00\x02\x01", 14);
		int rc = parse_exact(true, m.b, m.n, &msg_a);
		CHECK_EQ(rc, jumps <= DNS_MAX_POINTERS ? 0 : -EBADMSG);
		if (rc == 0) {
			CHECK_EQ(msg_a.n_answers, 1);
			CHECK_STR_EQ(lower(&msg_a.answers[0].owner), "www.example.com");
		}
	}
}

/* Every proper prefix of a valid message is refused, read from an exact-size buffer. */
static void test_truncated_everywhere(void)
{
	struct {
		const char *name;
		const uint8_t *bytes;
		size_t len;
		bool response;
	} msgs[] = {
		{"query", BYTES(QUERY_WWW), false},
		{"CDN response", BYTES(RESPONSE_CDN), true},
		{"pointer to a pointer", compression_cases[2].bytes, compression_cases[2].len,
		 true},
	};
	for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
		check_case("%s, whole", msgs[i].name);
		CHECK_EQ(parse_exact(msgs[i].response, msgs[i].bytes, msgs[i].len, &msg_a), 0);
		for (size_t n = 0; n < msgs[i].len; n++) {
			check_case("%s cut to %zu bytes", msgs[i].name, n);
			CHECK_EQ(parse_exact(msgs[i].response, msgs[i].bytes, n, &msg_a), -EBADMSG);
		}
	}
}

/* A response cut after its first answer (offset 60), with and without TC. */
static void test_counts_and_tc(void)
{
	uint8_t b[sizeof(RESPONSE_CDN) - 1];
	memcpy(b, RESPONSE_CDN, sizeof b);

	check_case("ANCOUNT beyond the records present");
	CHECK_EQ(parse_exact(true, b, 60, &msg_a), -EBADMSG);

	b[2] |= 0x02;
	check_case("TC, cut between records");
	CHECK_EQ(parse_exact(true, b, 60, &msg_a), 0);
	CHECK(msg_a.partial);
	CHECK(msg_a.header.tc);
	CHECK_EQ(msg_a.n_answers, 1);
	CHECK_EQ(msg_a.answers[0].type, DNS_TYPE_CNAME);

	check_case("TC, cut inside a record");
	CHECK_EQ(parse_exact(true, b, 70, &msg_a), -EBADMSG);

	check_case("TC, cut after the question");
	CHECK_EQ(parse_exact(true, b, 33, &msg_a), 0);
	CHECK(msg_a.partial);
	CHECK_EQ(msg_a.n_answers, 0);

	check_case("TC, complete");
	CHECK_EQ(parse_exact(true, b, sizeof b, &msg_a), 0);
	CHECK(!msg_a.partial);
	CHECK_EQ(msg_a.n_answers, 3);

	check_case("TC, cut inside the question");
	CHECK_EQ(parse_exact(true, b, 20, &msg_a), -EBADMSG);

	check_case("TC query is not lenient");
	uint8_t q[sizeof(QUERY_WWW) - 1];
	memcpy(q, QUERY_WWW, sizeof q);
	q[2] |= 0x02;
	q[7] = 1;
	CHECK_EQ(parse_exact(false, q, sizeof q, &msg_a), -EBADMSG);

	check_case("response without question");
	CHECK_EQ(parse_exact(true, BYTES("\x12\x34\x81\x85\x00\x00\x00\x00\x00\x00\x00\x00"),
			     &msg_a), 0);
	CHECK(!msg_a.has_question);
	CHECK_EQ(msg_a.header.rcode, DNS_RCODE_REFUSED);
}

static const struct bytes_case rdata_cases[] = {
	{"A with rdlength 5", BYTES(RESP_Q("\x01", "\x00", "\x00") "\xc0\x0c"
				    "\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x05\xc0\x00\x02\x01\x00"),
	 -EBADMSG},
	{"AAAA with rdlength 4", BYTES(RESP_Q("\x01", "\x00", "\x00") "\xc0\x0c"
				       "\x00\x1c\x00\x01\x00\x00\x01\x2c\x00\x04\xc0\x00\x02\x01"),
	 -EBADMSG},
	{"A of class CH is skipped", BYTES(RESP_Q("\x01", "\x00", "\x00") "\xc0\x0c"
					   "\x00\x01\x00\x03\x00\x00\x01\x2c\x00\x05"
					   "\xc0\x00\x02\x01\x00"), 0},
	{"CNAME rdata longer than its name", BYTES(RESP_Q("\x01", "\x00", "\x00") "\xc0\x0c"
						   "\x00\x05\x00\x01\x00\x00\x00\x3c\x00\x03"
						   "\xc0\x0c\x00"), -EBADMSG},
	{"CNAME rdata shorter than its name", BYTES(RESP_Q("\x01", "\x00", "\x00") "\xc0\x0c"
						    "\x00\x05\x00\x01\x00\x00\x00\x3c\x00\x02"
						    "\001a\000"), -EBADMSG},
	{"rdlength past the end", BYTES(RESP_Q("\x01", "\x00", "\x00") "\xc0\x0c"
					"\x00\x10\x00\x01\x00\x00\x00\x3c\x00\x09" "\010abcdefg"),
	 -EBADMSG},
	{"MX skipped, then A", BYTES(RESP_Q("\x02", "\x00", "\x00") "\xc0\x0c"
				     "\x00\x0f\x00\x01\x00\x00\x00\x3c\x00\x09"
				     "\x00\x0a\004mail\xc0\x10" "\xc0\x0c" A_FIXED
				     "\xc0\x00\x02\x07"), 0},
	{"SOA in authority", BYTES(RESP_Q("\x00", "\x01", "\x00") "\xc0\x10"
				   "\x00\x06\x00\x01\x00\x00\x0e\x10\x00\x27"
				   "\003ns1\xc0\x10\012hostmaster\xc0\x10"
				   "\x00\x00\x00\x01\x00\x00\x0e\x10\x00\x00\x03\x84"
				   "\x00\x09\x3a\x80\x00\x00\x01\x2c"), 0},
	{"two OPT records", BYTES(RESP_Q("\x00", "\x00", "\x02")
				  "\000\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00"
				  "\000\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00"), -EBADMSG},
	{"OPT not owned by the root", BYTES(RESP_Q("\x00", "\x00", "\x01")
					    "\xc0\x0c\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00"),
	 -EBADMSG},
	{"OPT in the answer section is skipped", BYTES(RESP_Q("\x01", "\x00", "\x00")
					     "\xc0\x0c\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00"),
	 0},
};

static void test_rdata(void)
{
	for (size_t i = 0; i < sizeof rdata_cases / sizeof rdata_cases[0]; i++) {
		const struct bytes_case *c = &rdata_cases[i];
		check_case("%s", c->name);
		CHECK_EQ(parse_exact(true, c->bytes, c->len, &msg_a), c->rc);
	}
	check_case("MX skipped, then A");
	CHECK_EQ(parse_exact(true, rdata_cases[6].bytes, rdata_cases[6].len, &msg_a), 0);
	CHECK_EQ(msg_a.n_answers, 1);
	CHECK_STR_EQ(addr_text(&msg_a.answers[0].address), "192.0.2.7");
	check_case("A of class CH not kept");
	CHECK_EQ(parse_exact(true, rdata_cases[2].bytes, rdata_cases[2].len, &msg_a), 0);
	CHECK_EQ(msg_a.n_answers, 0);
	check_case("OPT in the answer section is not EDNS");
	CHECK_EQ(parse_exact(true, rdata_cases[10].bytes, rdata_cases[10].len, &msg_a), 0);
	CHECK(!msg_a.edns.present);
	CHECK_EQ(msg_a.n_answers, 0);

	check_case("TTL with the top bit set reads as 0");
	CHECK_EQ(parse_exact(true, BYTES(RESP_Q("\x01", "\x00", "\x00") "\xc0\x0c"
					 "\x00\x01\x00\x01\x80\x00\x00\x05\x00\x04"
					 "\xc0\x00\x02\x01"),
			     &msg_a), 0);
	CHECK_EQ(msg_a.answers[0].ttl, 0);
	check_case("TTL 0x7fffffff kept");
	CHECK_EQ(parse_exact(true, BYTES(RESP_Q("\x01", "\x00", "\x00") "\xc0\x0c"
					 "\x00\x01\x00\x01\x7f\xff\xff\xff\x00\x04"
					 "\xc0\x00\x02\x01"),
			     &msg_a), 0);
	CHECK_EQ(msg_a.answers[0].ttl, 0x7fffffff);
}

static void test_many_answers(void)
{
	for (size_t count = DNS_MAX_ANSWERS - 1; count <= DNS_MAX_ANSWERS + 6; count += 7) {
		check_case("%zu A records", count);
		struct msg m = {.n = 0};
		m_bytes(&m, RESP_Q("\x00", "\x00", "\x00"), 33);
		m.b[6] = (uint8_t)(count >> 8);
		m.b[7] = (uint8_t)count;
		for (size_t i = 0; i < count; i++) {
			m_bytes(&m, "\xc0\x0c" A_FIXED "\xc6\x33\x64", 15);
			m.b[m.n++] = (uint8_t)i;
		}
		CHECK_EQ(parse_exact(true, m.b, m.n, &msg_a), 0);
		size_t kept = count < DNS_MAX_ANSWERS ? count : DNS_MAX_ANSWERS;
		CHECK_EQ(msg_a.n_answers, kept);
		CHECK_EQ(msg_a.answers_skipped, count - kept);
		CHECK_EQ(msg_a.answers[kept - 1].address.bytes[3], kept - 1);
	}
}

struct text_case {
	const char *name;
	const uint8_t *wire;
	size_t len;
	const char *lower, *presentation;
	bool hostname;
};

static const struct text_case text_cases[] = {
	{"plain", BYTES(WWW_EXAMPLE_COM), "www.example.com", "www.example.com", true},
	{"uppercase", BYTES("\003WWW\007ExAmPlE\003COM\000"), "www.example.com", "WWW.ExAmPlE.COM",
	 true},
	{"root", BYTES("\000"), ".", ".", false},
	{"underscore and hyphen", BYTES("\004_srv\004_tcp\005a-b-c\000"), "_srv._tcp.a-b-c",
	 "_srv._tcp.a-b-c", true},
	{"digits", BYTES("\0011\0012\0013\0014\007in-addr\004arpa\000"), "1.2.3.4.in-addr.arpa",
	 "1.2.3.4.in-addr.arpa", true},
	{"dot inside a label", BYTES("\003a.b\003com\000"), "a\\.b.com", "a\\.b.com", false},
	{"space", BYTES("\003a b\000"), "a\\032b", "a\\032b", false},
	{"NUL byte", BYTES("\003a\000b\000"), "a\\000b", "a\\000b", false},
	{"high bytes", BYTES("\002\xff\x80\000"), "\\255\\128", "\\255\\128", false},
	{"UTF-8 bytes", BYTES("\002\xc3\xa9\003COM\000"), "\\195\\169.com", "\\195\\169.COM",
	 false},
	{"backslash and quote", BYTES("\002\\\"\000"), "\\092\\034", "\\092\\034", false},
	{"newline and escape", BYTES("\002\n\033\000"), "\\010\\027", "\\010\\027", false},
	{"uppercase beside an escape", BYTES("\003A*B\000"), "a\\042b", "A\\042B", false},
};

static void test_name_text(void)
{
	for (size_t i = 0; i < sizeof text_cases / sizeof text_cases[0]; i++) {
		const struct text_case *c = &text_cases[i];
		check_case("%s", c->name);
		struct msg m = {.n = 0};
		m_bytes(&m, QHDR("\x01", "\x00", "\x00"), 12);
		m_bytes(&m, c->wire, c->len);
		m_bytes(&m, TYPE_A_IN, 4);
		CHECK_EQ(parse_exact(false, m.b, m.n, &msg_a), 0);
		const struct dns_name *n = &msg_a.question.name;
		CHECK_EQ(n->len, c->len);
		CHECK_MEM_EQ(n->wire, c->wire, c->len);
		CHECK_STR_EQ(lower(n), c->lower);
		CHECK_STR_EQ(presentation(n), c->presentation);
		CHECK_EQ(n->hostname, c->hostname);

		struct dns_name back;
		const char *p = presentation(n);
		CHECK_EQ(dns_name_from_text(&back, p, strlen(p)), 0);
		CHECK_EQ(back.len, n->len);
		CHECK_MEM_EQ(back.wire, n->wire, n->len);
		CHECK_EQ(back.hostname, n->hostname);
		CHECK_EQ(back.labels, n->labels);
	}
}

struct from_text_case {
	const char *text;
	int rc;
	const char *lower; /* dns_name_format of the result */
};

static const struct from_text_case from_text_cases[] = {
	{"www.example.com", 0, "www.example.com"},
	{"www.example.com.", 0, "www.example.com"},
	{"WWW.Example.Com", 0, "www.example.com"},
	{".", 0, "."},
	{"a\\.b.c", 0, "a\\.b.c"},
	{"a\\032b", 0, "a\\032b"},
	{"\\065", 0, "a"},
	{"\\255", 0, "\\255"},
	{"\\256", -EINVAL, NULL},
	{"\\25", -EINVAL, NULL},
	{"a\\", -EINVAL, NULL},
	{"\\x", 0, "x"},
	{"", -EINVAL, NULL},
	{"..", -EINVAL, NULL},
	{".a", -EINVAL, NULL},
	{"a..b", -EINVAL, NULL},
	{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0,
	 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
	{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", -EINVAL, NULL},
};

static void test_name_from_text(void)
{
	for (size_t i = 0; i < sizeof from_text_cases / sizeof from_text_cases[0]; i++) {
		const struct from_text_case *c = &from_text_cases[i];
		check_case("\"%s\"", c->text);
		struct dns_name n;
		CHECK_EQ(dns_name_from_text(&n, c->text, strlen(c->text)), c->rc);
		if (c->rc == 0)
			CHECK_STR_EQ(lower(&n), c->lower);
	}

	check_case("longest names");
	char text[1100];
	struct dns_name n;
	/* 127 one-byte labels: 254 wire bytes + root = 255. */
	size_t k = 0;
	for (int i = 0; i < 127; i++) {
		text[k++] = 'a';
		text[k++] = '.';
	}
	CHECK_EQ(dns_name_from_text(&n, text, k), 0);
	CHECK_EQ(n.len, 255);
	CHECK_EQ(n.labels, 127);
	text[k++] = 'b';
	CHECK_EQ(dns_name_from_text(&n, text, k), -EINVAL);

	check_case("the longest presentation text fits DNS_NAME_TEXT_MAX");
	k = 0;
	for (int label = 0; label < 4; label++) {
		size_t len = label < 3 ? 63 : 61;
		for (size_t i = 0; i < len; i++) {
			memcpy(text + k, "\\000", 4);
			k += 4;
		}
		text[k++] = '.';
	}
	CHECK_EQ(dns_name_from_text(&n, text, k), 0);
	CHECK_EQ(n.len, 255);
	char out[DNS_NAME_TEXT_MAX];
	int len = dns_name_format(&n, DNS_NAME_PRESENTATION, out, sizeof out);
	CHECK_EQ(len, (int)k - 1);
	CHECK_EQ(dns_name_format(&n, DNS_NAME_PRESENTATION, out, (size_t)len), -ENOSPC);
	CHECK_STR_EQ(out, "");
	CHECK_EQ(dns_name_format(&n, DNS_NAME_PRESENTATION, out, (size_t)len + 1), len);

	check_case("equality ignores case only");
	struct dns_name a, b;
	CHECK_EQ(dns_name_from_text(&a, "WWW.example.COM", 15), 0);
	CHECK_EQ(dns_name_from_text(&b, "www.EXAMPLE.com.", 16), 0);
	CHECK(dns_name_equal(&a, &b));
	CHECK_EQ(dns_name_from_text(&b, "www.example.co", 14), 0);
	CHECK(!dns_name_equal(&a, &b));
	CHECK_EQ(dns_name_from_text(&a, "\\091", 4), 0); /* '[' is not '{' in any case */
	CHECK_EQ(dns_name_from_text(&b, "\\123", 4), 0);
	CHECK(!dns_name_equal(&a, &b));
}

struct type_case {
	uint16_t type;
	const char *text;
};

static const struct type_case type_cases[] = {
	{1, "A"},     {2, "NS"},      {5, "CNAME"},   {6, "SOA"},    {12, "PTR"},
	{15, "MX"},   {16, "TXT"},    {28, "AAAA"},   {33, "SRV"},   {64, "SVCB"},
	{65, "HTTPS"}, {255, "ANY"},  {41, "OPT"},    {257, "CAA"},  {0, "TYPE0"},
	{1234, "TYPE1234"}, {65535, "TYPE65535"},
};

static void test_type_names(void)
{
	for (size_t i = 0; i < sizeof type_cases / sizeof type_cases[0]; i++) {
		check_case("%u", type_cases[i].type);
		char buf[16];
		int n = dns_type_format(type_cases[i].type, buf, sizeof buf);
		CHECK_EQ(n, (int)strlen(type_cases[i].text));
		CHECK_STR_EQ(buf, type_cases[i].text);
		CHECK_EQ(dns_type_name(type_cases[i].type) != NULL,
			 strncmp(type_cases[i].text, "TYPE", 4) != 0);
	}
	check_case("small buffer");
	char small[4];
	CHECK_EQ(dns_type_format(65, small, sizeof small), -ENOSPC);
	CHECK_STR_EQ(small, "");
	CHECK_STR_EQ(dns_rcode_name(DNS_RCODE_NXDOMAIN), "NXDOMAIN");
	CHECK_STR_EQ(dns_rcode_name(DNS_RCODE_NOERROR), "NOERROR");
	CHECK(dns_rcode_name(15) == NULL);
}

struct reply_case {
	const char *name;
	uint8_t rcode;
};

static const struct reply_case reply_cases[] = {
	{"NXDOMAIN", DNS_RCODE_NXDOMAIN},
	{"REFUSED", DNS_RCODE_REFUSED},
	{"SERVFAIL", DNS_RCODE_SERVFAIL},
};

static void test_build_reply(void)
{
	/* Mixed case (DNS 0x20) and CD set: both must come back as asked. */
	static const uint8_t query[] = "\xbe\xef\x01\x10\x00\x01\x00\x00\x00\x00\x00\x01"
				       "\003WwW\007eXample\003cOm\000\x00\x1c\x00\x01"
				       "\000\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00";
	CHECK_EQ(dns_parse_query(query, sizeof query - 1, &msg_a), 0);
	for (size_t i = 0; i < sizeof reply_cases / sizeof reply_cases[0]; i++) {
		const struct reply_case *c = &reply_cases[i];
		check_case("%s", c->name);
		uint8_t out[512];
		int n = dns_build_reply(&msg_a, c->rcode, out, sizeof out);
		CHECK_EQ(n, 12 + 17 + 4);
		CHECK_EQ(parse_exact(true, out, (size_t)n, &msg_b), 0);
		CHECK_EQ(msg_b.header.id, 0xbeef);
		CHECK(msg_b.header.qr && msg_b.header.rd && msg_b.header.ra && msg_b.header.cd);
		CHECK(!msg_b.header.aa && !msg_b.header.tc && !msg_b.header.ad);
		CHECK_EQ(msg_b.header.rcode, c->rcode);
		CHECK_EQ(msg_b.header.ancount + msg_b.header.nscount + msg_b.header.arcount, 0);
		CHECK(dns_question_match(&msg_b.question, &msg_a.question));
		CHECK_MEM_EQ(out + 12, query + 12, 21);
		CHECK_STR_EQ(presentation(&msg_b.question.name), "WwW.eXample.cOm");
	}

	check_case("cap one byte short");
	uint8_t out[64];
	CHECK_EQ(dns_build_reply(&msg_a, DNS_RCODE_NXDOMAIN, out, 32), -ENOSPC);
	CHECK_EQ(dns_build_reply(&msg_a, DNS_RCODE_NXDOMAIN, out, 33), 33);
	check_case("rcode out of range");
	CHECK_EQ(dns_build_reply(&msg_a, 16, out, sizeof out), -EINVAL);
	check_case("no question");
	CHECK_EQ(parse_exact(true, BYTES("\x12\x34\x81\x85\x00\x00\x00\x00\x00\x00\x00\x00"),
			     &msg_b), 0);
	CHECK_EQ(dns_build_reply(&msg_b, DNS_RCODE_NXDOMAIN, out, sizeof out), -EINVAL);

	check_case("opcode copied");
	uint8_t status[sizeof(QUERY_WWW) - 1];
	memcpy(status, QUERY_WWW, sizeof status);
	status[2] = 0x10 | 0x01; /* opcode STATUS, RD */
	CHECK_EQ(dns_parse_query(status, sizeof status, &msg_a), 0);
	int n = dns_build_reply(&msg_a, DNS_RCODE_NOTIMP, out, sizeof out);
	CHECK(n > 0);
	CHECK_EQ(dns_parse_response(out, (size_t)n, &msg_b), 0);
	CHECK_EQ(msg_b.header.opcode, 2);
	CHECK_EQ(msg_b.header.rcode, DNS_RCODE_NOTIMP);
}

static void test_build_formerr(void)
{
	uint8_t out[64];
	check_case("garbage after a query header");
	static const uint8_t bad[] = "\x77\x88\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\005ab";
	CHECK_EQ(dns_parse_query(bad, sizeof bad - 1, &msg_a), -EBADMSG);
	CHECK_EQ(dns_build_formerr(bad, sizeof bad - 1, out, sizeof out), 12);
	CHECK_EQ(parse_exact(true, out, 12, &msg_b), 0);
	CHECK_EQ(msg_b.header.id, 0x7788);
	CHECK(msg_b.header.qr && msg_b.header.rd && !msg_b.header.ra);
	CHECK_EQ(msg_b.header.rcode, DNS_RCODE_FORMERR);
	CHECK(!msg_b.has_question);

	check_case("a response is never answered");
	CHECK_EQ(dns_build_formerr(BYTES(RESPONSE_CDN), out, sizeof out), -EBADMSG);
	check_case("shorter than a header");
	CHECK_EQ(dns_build_formerr(bad, 11, out, sizeof out), -EBADMSG);
	check_case("cap too small");
	CHECK_EQ(dns_build_formerr(bad, sizeof bad - 1, out, 11), -ENOSPC);

	check_case("set id");
	uint8_t q[sizeof(QUERY_WWW) - 1];
	memcpy(q, QUERY_WWW, sizeof q);
	CHECK_EQ(dns_set_id(q, sizeof q, 0xa55a), 0);
	CHECK_EQ(dns_parse_query(q, sizeof q, &msg_a), 0);
	CHECK_EQ(msg_a.header.id, 0xa55a);
	CHECK_EQ(dns_set_id(q, 11, 1), -EBADMSG);
}

/* The filter's input: www.example.com CNAME edge.cdn.test; edge.cdn.test A 10.0.0.1 and A
 * 192.0.2.1; authority cdn.test NS ns1.cdn.test (both names compressed into the CNAME's rdata);
 * additional ns1.cdn.test A 10.0.0.2 (owner pointing into the NS rdata) and OPT. */
#define FILTER_IN                                                                           \
	"\xbe\xef\x81\x80\x00\x01\x00\x03\x00\x01\x00\x02" WWW_EXAMPLE_COM TYPE_A_IN         \
	"\xc0\x0c\x00\x05\x00\x01\x00\x00\x00\x3c\x00\x0f"                                     \
	"\004edge\003cdn\004test\000"                                                        \
	"\xc0\x2d" A_FIXED "\x0a\x00\x00\x01"                                                  \
	"\xc0\x2d" A_FIXED "\xc0\x00\x02\x01"                                                  \
	"\xc0\x32\x00\x02\x00\x01\x00\x00\x0e\x10\x00\x06" "\003ns1\xc0\x32"                   \
	"\xc0\x68\x00\x01\x00\x01\x00\x00\x0e\x10\x00\x04\x0a\x00\x00\x02"                     \
	"\000\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00"

/* The same with the 10.0.0.0/8 records dropped, every name written out. */
#define FILTER_OUT                                                                          \
	"\xbe\xef\x81\x80\x00\x01\x00\x02\x00\x01\x00\x01" WWW_EXAMPLE_COM TYPE_A_IN         \
	WWW_EXAMPLE_COM "\x00\x05\x00\x01\x00\x00\x00\x3c\x00\x0f"                             \
	"\004edge\003cdn\004test\000"                                                        \
	"\004edge\003cdn\004test\000" A_FIXED "\xc0\x00\x02\x01"                               \
	"\003cdn\004test\000\x00\x02\x00\x01\x00\x00\x0e\x10\x00\x0e"                          \
	"\003ns1\003cdn\004test\000"                                                         \
	"\000\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00"

/* Nothing dropped: the same records, uncompressed. */
#define FILTER_ALL                                                                          \
	"\xbe\xef\x81\x80\x00\x01\x00\x03\x00\x01\x00\x02" WWW_EXAMPLE_COM TYPE_A_IN         \
	WWW_EXAMPLE_COM "\x00\x05\x00\x01\x00\x00\x00\x3c\x00\x0f"                             \
	"\004edge\003cdn\004test\000"                                                        \
	"\004edge\003cdn\004test\000" A_FIXED "\x0a\x00\x00\x01"                               \
	"\004edge\003cdn\004test\000" A_FIXED "\xc0\x00\x02\x01"                               \
	"\003cdn\004test\000\x00\x02\x00\x01\x00\x00\x0e\x10\x00\x0e"                          \
	"\003ns1\003cdn\004test\000"                                                         \
	"\003ns1\003cdn\004test\000\x00\x01\x00\x01\x00\x00\x0e\x10\x00\x04\x0a\x00\x00\x02"   \
	"\000\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00"

static bool drop_ten(const struct addr *a, void *ctx)
{
	(void)ctx;
	return a->family == ADDR_V4 && a->bytes[0] == 10;
}

static bool drop_none(const struct addr *a, void *ctx)
{
	(void)a;
	(*(int *)ctx)++;
	return false;
}

static bool drop_all(const struct addr *a, void *ctx)
{
	(void)a;
	(void)ctx;
	return true;
}

static void test_filter(void)
{
	uint8_t out[1024];
	struct dns_filter_result r;

	check_case("drop 10.0.0.0/8");
	int n = dns_filter_addresses(BYTES(FILTER_IN), drop_ten, NULL, out, sizeof out, &r);
	CHECK_EQ(n, (int)sizeof(FILTER_OUT) - 1);
	if (n == (int)sizeof(FILTER_OUT) - 1)
		CHECK_MEM_EQ(out, FILTER_OUT, (size_t)n);
	CHECK_EQ(r.dropped, 2);
	CHECK(!r.truncated);
	CHECK_EQ(parse_exact(true, out, n > 0 ? (size_t)n : 0, &msg_b), 0);
	CHECK_EQ(msg_b.n_answers, 2);
	CHECK_STR_EQ(addr_text(&msg_b.answers[1].address), "192.0.2.1");
	CHECK(msg_b.edns.present);

	check_case("drop nothing");
	int calls = 0;
	n = dns_filter_addresses(BYTES(FILTER_IN), drop_none, &calls, out, sizeof out, &r);
	CHECK_EQ(n, (int)sizeof(FILTER_ALL) - 1);
	if (n == (int)sizeof(FILTER_ALL) - 1)
		CHECK_MEM_EQ(out, FILTER_ALL, (size_t)n);
	CHECK_EQ(calls, 3);
	CHECK_EQ(r.dropped, 0);

	check_case("drop everything");
	n = dns_filter_addresses(BYTES(FILTER_IN), drop_all, NULL, out, sizeof out, &r);
	CHECK_EQ(r.dropped, 3);
	CHECK_EQ(parse_exact(true, out, n > 0 ? (size_t)n : 0, &msg_b), 0);
	CHECK_EQ(msg_b.header.ancount, 1);
	CHECK_EQ(msg_b.header.nscount, 1);
	CHECK_EQ(msg_b.header.arcount, 1);
	CHECK_EQ(msg_b.n_answers, 1);
	CHECK_EQ(msg_b.answers[0].type, DNS_TYPE_CNAME);

	check_case("output larger than cap: TC reply");
	size_t cap = sizeof(FILTER_OUT) - 2;
	n = dns_filter_addresses(BYTES(FILTER_IN), drop_ten, NULL, out, cap, &r);
	CHECK_EQ(n, 33);
	CHECK(r.truncated);
	CHECK_MEM_EQ(out, "\xbe\xef\x83\x80\x00\x01\x00\x00\x00\x00\x00\x00" WWW_EXAMPLE_COM
		     TYPE_A_IN, 33);
	CHECK_EQ(parse_exact(true, out, n > 0 ? (size_t)n : 0, &msg_b), 0);
	CHECK(msg_b.header.tc);

	check_case("not even the TC reply fits");
	CHECK_EQ(dns_filter_addresses(BYTES(FILTER_IN), drop_ten, NULL, out, 32, &r), -ENOSPC);
	CHECK_EQ(dns_filter_addresses(BYTES(FILTER_IN), drop_ten, NULL, out, 0, &r), -ENOSPC);

	check_case("compressed input grows by its pointers");
	CHECK_EQ(dns_filter_addresses(BYTES(RESPONSE_CDN), drop_ten, NULL, out, sizeof out, NULL),
		 (int)(sizeof(RESPONSE_CDN) - 1) + 15 + 13 + 13);

	check_case("malformed input");
	CHECK_EQ(dns_filter_addresses((const uint8_t *)RESPONSE_CDN, sizeof(RESPONSE_CDN) - 2,
				      drop_ten, NULL, out, sizeof out, NULL), -EBADMSG);
	CHECK_EQ(dns_filter_addresses(BYTES(QUERY_WWW), drop_ten, NULL, out, sizeof out, NULL),
		 -EBADMSG);
	CHECK_EQ(dns_filter_addresses(BYTES(FILTER_IN), NULL, NULL, out, sizeof out, NULL),
		 -EINVAL);
}

/* Rdata names are decompressed by type; a record's pointer into a dropped record still works. */
static void test_filter_rdata(void)
{
	uint8_t out[1024];
	struct dns_filter_result r;
	struct {
		const char *name;
		const uint8_t *in;
		size_t in_len;
		const uint8_t *out;
		size_t out_len;
		size_t dropped;
	} cases[] = {
		{"MX and SOA",
		 BYTES(RESP_Q("\x01", "\x01", "\x00")
		       "\xc0\x10\x00\x0f\x00\x01\x00\x00\x00\x3c\x00\x09" "\x00\x0a\004mail\xc0\x10"
		       "\xc0\x10\x00\x06\x00\x01\x00\x00\x0e\x10\x00\x27"
		       "\003ns1\xc0\x10\012hostmaster\xc0\x10"
		       "\x00\x00\x00\x01\x00\x00\x0e\x10\x00\x00\x03\x84"
		       "\x00\x09\x3a\x80\x00\x00\x01\x2c"),
		 BYTES(RESP_Q("\x01", "\x01", "\x00")
		       "\007example\003com\000\x00\x0f\x00\x01\x00\x00\x00\x3c\x00\x14"
		       "\x00\x0a\004mail\007example\003com\000"
		       "\007example\003com\000\x00\x06\x00\x01\x00\x00\x0e\x10\x00\x3d"
		       "\003ns1\007example\003com\000\012hostmaster\007example\003com\000"
		       "\x00\x00\x00\x01\x00\x00\x0e\x10\x00\x00\x03\x84"
		       "\x00\x09\x3a\x80\x00\x00\x01\x2c"),
		 0},
		{"pointer into a dropped record",
		 BYTES(RESP_Q("\x02", "\x00", "\x00") "\001x" "\xc0\x0c" A_FIXED "\x0a\x00\x00\x01"
		       "\xc0\x21" A_FIXED "\xc0\x00\x02\x01"),
		 BYTES(RESP_Q("\x01", "\x00", "\x00") "\001x" WWW_EXAMPLE_COM A_FIXED
		       "\xc0\x00\x02\x01"),
		 1},
		{"unknown type copied as it is",
		 BYTES(RESP_Q("\x01", "\x00", "\x00") "\xc0\x0c\xff\x00\x00\x01\x00\x00\x00\x3c"
		       "\x00\x02\xc0\x0c"),
		 BYTES(RESP_Q("\x01", "\x00", "\x00") WWW_EXAMPLE_COM
		       "\xff\x00\x00\x01\x00\x00\x00\x3c\x00\x02\xc0\x0c"),
		 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		check_case("%s", cases[i].name);
		int n = dns_filter_addresses(cases[i].in, cases[i].in_len, drop_ten, NULL, out,
					     sizeof out, &r);
		CHECK_EQ(n, (int)cases[i].out_len);
		if (n == (int)cases[i].out_len)
			CHECK_MEM_EQ(out, cases[i].out, cases[i].out_len);
		CHECK_EQ(r.dropped, cases[i].dropped);
		CHECK_EQ(parse_exact(true, out, n > 0 ? (size_t)n : 0, &msg_b), 0);
	}

	struct {
		const char *name;
		const uint8_t *in;
		size_t len;
	} bad[] = {
		{"MX rdata longer than its fields",
		 BYTES(RESP_Q("\x01", "\x00", "\x00") "\xc0\x0c\x00\x0f\x00\x01\x00\x00\x00\x3c"
		       "\x00\x05\x00\x0a\xc0\x0c\x00")},
		{"MX rdata shorter than its fields",
		 BYTES(RESP_Q("\x01", "\x00", "\x00") "\xc0\x0c\x00\x0f\x00\x01\x00\x00\x00\x3c"
		       "\x00\x02\x00\x0a")},
		{"NS target running out of its rdata",
		 BYTES(RESP_Q("\x02", "\x00", "\x00") "\xc0\x0c\x00\x02\x00\x01\x00\x00\x00\x3c"
		       "\x00\x01\xc0\x0c" A_FIXED "\xc0\x00\x02\x01")},
		{"NAPTR string past its rdata",
		 BYTES(RESP_Q("\x01", "\x00", "\x00") "\xc0\x0c\x00\x23\x00\x01\x00\x00\x00\x3c"
		       "\x00\x06\x00\x01\x00\x02\x05\x41")},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		check_case("%s", bad[i].name);
		int n = dns_filter_addresses(bad[i].in, bad[i].len, drop_ten, NULL, out, sizeof out,
					     &r);
		CHECK_EQ(n, -EBADMSG);
	}
}

struct tcp_case {
	const char *name;
	const uint8_t *bytes;
	size_t len;
	int rc;
	size_t msg_len;
};

static const struct tcp_case tcp_cases[] = {
	{"empty", (const uint8_t *)"", 0, 0, 0},
	{"one byte of the prefix", BYTES("\x00"), 0, 0},
	{"prefix only", BYTES("\x00\x0c"), 0, 0},
	{"eleven of twelve", BYTES("\x00\x0c" "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b"),
	 0, 0},
	{"exactly one message",
	 BYTES("\x00\x0c" "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c"), 14, 12},
	{"a message and the next prefix", BYTES("\x00\x0c" "\x01\x02\x03\x04\x05\x06\x07\x08"
						 "\x09\x0a\x0b\x0c\x00\x21"), 14, 12},
	{"length zero", BYTES("\x00\x00"), -EBADMSG, 0},
	{"length below a header", BYTES("\x00\x0b" "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b"),
	 -EBADMSG, 0},
	{"large announced length", BYTES("\xff\xff\x00"), 0, 0},
};

static void test_tcp_framing(void)
{
	for (size_t i = 0; i < sizeof tcp_cases / sizeof tcp_cases[0]; i++) {
		const struct tcp_case *c = &tcp_cases[i];
		check_case("%s", c->name);
		const uint8_t *msg = NULL;
		size_t len = 0;
		CHECK_EQ(dns_tcp_next(c->bytes, c->len, &msg, &len), c->rc);
		if (c->rc > 0) {
			CHECK(msg == c->bytes + 2);
			CHECK_EQ(len, c->msg_len);
		} else {
			CHECK(msg == NULL);
		}
	}

	check_case("prefix");
	uint8_t p[2];
	CHECK_EQ(dns_tcp_prefix(p, 0x1234), 0);
	CHECK_MEM_EQ(p, "\x12\x34", 2);
	CHECK_EQ(dns_tcp_prefix(p, DNS_MESSAGE_MAX), 0);
	CHECK_MEM_EQ(p, "\xff\xff", 2);
	CHECK_EQ(dns_tcp_prefix(p, DNS_MESSAGE_MAX + 1), -EMSGSIZE);

	check_case("a framed query round-trips");
	uint8_t frame[2 + sizeof(QUERY_WWW) - 1];
	CHECK_EQ(dns_tcp_prefix(frame, sizeof(QUERY_WWW) - 1), 0);
	memcpy(frame + 2, QUERY_WWW, sizeof(QUERY_WWW) - 1);
	const uint8_t *msg;
	size_t len;
	CHECK_EQ(dns_tcp_next(frame, sizeof frame, &msg, &len), (int)sizeof frame);
	CHECK_EQ(dns_parse_query(msg, len, &msg_a), 0);
	CHECK_EQ(dns_tcp_next(frame, sizeof frame - 1, &msg, &len), 0);
}

static const struct check_test tests[] = {
	{"query", test_query},
	{"header_flags", test_header_flags},
	{"query_table", test_query_table},
	{"name_length_bounds", test_name_length_bounds},
	{"response_cname_chain", test_response_cname_chain},
	{"compression", test_compression},
	{"pointer_chain_bound", test_pointer_chain_bound},
	{"truncated_everywhere", test_truncated_everywhere},
	{"counts_and_tc", test_counts_and_tc},
	{"rdata", test_rdata},
	{"many_answers", test_many_answers},
	{"name_text", test_name_text},
	{"name_from_text", test_name_from_text},
	{"type_names", test_type_names},
	{"build_reply", test_build_reply},
	{"build_formerr", test_build_formerr},
	{"filter", test_filter},
	{"filter_rdata", test_filter_rdata},
	{"tcp_framing", test_tcp_framing},
};

CHECK_MAIN(tests)
