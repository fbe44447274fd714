/* dns_msg.c — reading, writing and filtering DNS messages on length-checked buffers. */
#include "proxy/dns_msg.h"
#include "base/bytes.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define FLAG1_QR 0x80
#define FLAG1_OPCODE_SHIFT 3
#define FLAG1_AA 0x04
#define FLAG1_TC 0x02
#define FLAG1_RD 0x01
#define FLAG2_RA 0x80
#define FLAG2_AD 0x20
#define FLAG2_CD 0x10
#define FLAG2_RCODE 0x0F

/* Fixed fields after a record's owner name: type, class, TTL, rdlength. */
#define RR_FIXED_LEN 10

static bool host_byte(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

static uint8_t ascii_lower(uint8_t c)
{
	return c >= 'A' && c <= 'Z' ? (uint8_t)(c - 'A' + 'a') : c;
}

/* Counts the labels of a well-formed wire name and decides `hostname`. */
static void name_finish(struct dns_name *n)
{
	size_t p = 0;
	n->labels = 0;
	n->hostname = n->len > 1;
	while (p < n->len && n->wire[p] != 0) {
		size_t l = n->wire[p];
		for (size_t i = 1; i <= l; i++) {
			if (!host_byte(n->wire[p + i]))
				n->hostname = false;
		}
		n->labels++;
		p += 1 + l;
	}
}

/* Reads the name at *pos into *out and moves *pos past the name's bytes at that place (its zero
 * byte, or its first pointer). Every pointer must aim at or after the header and strictly below
 * the start of the stretch of labels it ends, so the positions visited keep falling. */
static int read_name(const uint8_t *msg, size_t len, size_t *pos, struct dns_name *out)
{
	size_t p = *pos, limit = *pos, next = 0;
	unsigned jumps = 0;
	size_t w = 0;

	for (;;) {
		if (p >= len)
			return -EBADMSG;
		uint8_t b = msg[p];
		if ((b & 0xC0) == 0xC0) {
			if (p + 1 >= len)
				return -EBADMSG;
			size_t target = (size_t)(b & 0x3F) << 8 | msg[p + 1];
			if (target < DNS_HEADER_LEN || target >= limit ||
			    ++jumps > DNS_MAX_POINTERS)
				return -EBADMSG;
			if (next == 0)
				next = p + 2;
			limit = target;
			p = target;
			continue;
		}
		if (b > DNS_LABEL_MAX)
			return -EBADMSG; /* 0x40 and 0x80 label types (RFC 6891 deprecated them) */
		if (b == 0) {
			out->wire[w++] = 0;
			if (next == 0)
				next = p + 1;
			break;
		}
		if (w + b + 2 > DNS_NAME_WIRE_MAX || b > len - p - 1)
			return -EBADMSG;
		memcpy(out->wire + w, msg + p, (size_t)b + 1);
		w += (size_t)b + 1;
		p += (size_t)b + 1;
	}
	out->len = (uint8_t)w;
	name_finish(out);
	*pos = next;
	return 0;
}

/* Where the output of dns_filter_addresses goes; `full` once something did not fit. */
struct writer {
	uint8_t *buf;
	size_t cap, len;
	bool full;
};

static void put_bytes(struct writer *w, const void *p, size_t n)
{
	if (w->full || n > w->cap - w->len) {
		w->full = true;
		return;
	}
	memcpy(w->buf + w->len, p, n);
	w->len += n;
}

static void put_u16(struct writer *w, uint16_t v)
{
	uint8_t b[2];
	be16_put(b, v);
	put_bytes(w, b, 2);
}

/* Rdata layouts of the types whose rdata may hold compressed names: 'N' a name, 'S' a
 * character-string, '2' and '4' fixed fields of that many bytes. */
struct rdata_layout {
	uint16_t type;
	const char *fields;
};

static const struct rdata_layout rdata_layouts[] = {
	{2, "N"},        /* NS */
	{3, "N"},        /* MD */
	{4, "N"},        /* MF */
	{5, "N"},        /* CNAME */
	{6, "NN44444"},  /* SOA */
	{7, "N"},        /* MB */
	{8, "N"},        /* MG */
	{9, "N"},        /* MR */
	{12, "N"},       /* PTR */
	{14, "NN"},      /* MINFO */
	{15, "2N"},      /* MX */
	{17, "NN"},      /* RP */
	{18, "2N"},      /* AFSDB */
	{21, "2N"},      /* RT */
	{26, "2NN"},     /* PX */
	{33, "222N"},    /* SRV */
	{35, "22SSSN"},  /* NAPTR */
	{36, "2N"},      /* KX */
	{39, "N"},       /* DNAME */
};

static const char *layout_of(uint16_t type)
{
	for (size_t i = 0; i < sizeof rdata_layouts / sizeof rdata_layouts[0]; i++) {
		if (rdata_layouts[i].type == type)
			return rdata_layouts[i].fields;
	}
	return NULL;
}

/* Copies rdata[start, end) to w following layout, names decompressed. The fields must fill the
 * rdata exactly. */
static int copy_rdata(const uint8_t *msg, size_t len, size_t start, size_t end,
		      const char *layout, struct writer *w)
{
	size_t p = start;
	struct dns_name name;
	for (const char *f = layout; *f; f++) {
		size_t n;
		switch (*f) {
		case 'N':
			if (read_name(msg, len, &p, &name) < 0 || p > end)
				return -EBADMSG;
			put_bytes(w, name.wire, name.len);
			continue;
		case 'S':
			if (p >= end)
				return -EBADMSG;
			n = (size_t)msg[p] + 1;
			break;
		default:
			n = (size_t)(*f - '0');
			break;
		}
		if (n > end - p)
			return -EBADMSG;
		put_bytes(w, msg + p, n);
		p += n;
	}
	return p == end ? 0 : -EBADMSG;
}

/* One pass over a message: what dns_parse_* keep goes to `out`, what dns_filter_addresses keeps
 * goes to `w`. Both check the message the same way. */
struct walk {
	const uint8_t *msg;
	size_t len;
	bool response;
	struct dns_message *out; /* NULL when filtering */
	struct writer *w;        /* NULL when parsing */
	bool (*drop)(const struct addr *address, void *ctx);
	void *ctx;
	size_t dropped;
	uint16_t kept[3];
	bool partial;
};

static int parse_header(const uint8_t *msg, size_t len, struct dns_header *h)
{
	if (len < DNS_HEADER_LEN)
		return -EBADMSG;
	h->id = be16_get(msg);
	h->qr = msg[2] & FLAG1_QR;
	h->opcode = (uint8_t)((msg[2] >> FLAG1_OPCODE_SHIFT) & 0x0F);
	h->aa = msg[2] & FLAG1_AA;
	h->tc = msg[2] & FLAG1_TC;
	h->rd = msg[2] & FLAG1_RD;
	h->ra = msg[3] & FLAG2_RA;
	h->ad = msg[3] & FLAG2_AD;
	h->cd = msg[3] & FLAG2_CD;
	h->rcode = msg[3] & FLAG2_RCODE;
	h->qdcount = be16_get(msg + 4);
	h->ancount = be16_get(msg + 6);
	h->nscount = be16_get(msg + 8);
	h->arcount = be16_get(msg + 10);
	return 0;
}

/* Handles one record at *pos of section s (0 answer, 1 authority, 2 additional). */
static int walk_record(struct walk *k, int s, size_t *pos, bool *seen_opt)
{
	struct dns_message *out = k->out;
	struct dns_record scratch;
	struct dns_record *rec = &scratch;
	if (out && s == 0 && out->n_answers < DNS_MAX_ANSWERS)
		rec = &out->answers[out->n_answers];

	if (read_name(k->msg, k->len, pos, &rec->owner) < 0)
		return -EBADMSG;
	if (RR_FIXED_LEN > k->len - *pos)
		return -EBADMSG;
	const uint8_t *fixed = k->msg + *pos;
	uint16_t type = be16_get(fixed), rclass = be16_get(fixed + 2);
	uint32_t ttl = be32_get(fixed + 4);
	size_t rdlength = be16_get(fixed + 8);
	size_t rdata = *pos + RR_FIXED_LEN;
	if (rdlength > k->len - rdata)
		return -EBADMSG;
	*pos = rdata + rdlength;

	bool address = rclass == DNS_CLASS_IN && (type == DNS_TYPE_A || type == DNS_TYPE_AAAA);
	if (address) {
		size_t want = type == DNS_TYPE_A ? 4 : 16;
		if (rdlength != want)
			return -EBADMSG;
		addr_from_bytes(&rec->address, type == DNS_TYPE_A ? ADDR_V4 : ADDR_V6,
				k->msg + rdata);
	}
	if (rclass == DNS_CLASS_IN && type == DNS_TYPE_CNAME) {
		size_t p = rdata;
		if (read_name(k->msg, k->len, &p, &rec->target) < 0 || p != rdata + rdlength)
			return -EBADMSG;
	}
	if (s == 2 && type == DNS_TYPE_OPT) {
		if (*seen_opt || rec->owner.len != 1)
			return -EBADMSG; /* RFC 6891 6.1.1: one OPT, owned by the root */
		*seen_opt = true;
		if (out) {
			out->edns.present = true;
			out->edns.udp_size = rclass;
			out->edns.version = (uint8_t)(ttl >> 16);
			out->edns.dnssec_ok = ttl & 0x8000;
		}
	}

	if (out && s == 0 && k->response &&
	    (address || (rclass == DNS_CLASS_IN && type == DNS_TYPE_CNAME))) {
		if (rec == &scratch) {
			out->answers_skipped++;
		} else {
			rec->type = type;
			rec->ttl = ttl & 0x80000000u ? 0 : ttl;
			out->n_answers++;
		}
	}

	if (!k->w)
		return 0;
	if (address && k->drop(&rec->address, k->ctx)) {
		k->dropped++;
		return 0;
	}
	struct writer *w = k->w;
	put_bytes(w, rec->owner.wire, rec->owner.len);
	put_bytes(w, fixed, RR_FIXED_LEN - 2);
	size_t rdlength_at = w->len;
	put_u16(w, 0);
	const char *layout = layout_of(type);
	if (layout) {
		if (copy_rdata(k->msg, k->len, rdata, rdata + rdlength, layout, w) < 0)
			return -EBADMSG;
	} else {
		put_bytes(w, k->msg + rdata, rdlength);
	}
	if (!w->full)
		be16_put(w->buf + rdlength_at, (uint16_t)(w->len - rdlength_at - 2));
	k->kept[s]++;
	return 0;
}

static int walk_message(struct walk *k, struct dns_header *h, struct dns_question *q,
			bool *has_question)
{
	if (parse_header(k->msg, k->len, h) < 0 || h->qr != k->response)
		return -EBADMSG;
	if (k->response ? h->qdcount > 1 : h->qdcount != 1)
		return -EBADMSG;

	size_t pos = DNS_HEADER_LEN;
	*has_question = h->qdcount == 1;
	if (*has_question) {
		if (read_name(k->msg, k->len, &pos, &q->name) < 0 || 4 > k->len - pos)
			return -EBADMSG;
		q->qtype = be16_get(k->msg + pos);
		q->qclass = be16_get(k->msg + pos + 2);
		pos += 4;
	}
	if (k->w) {
		put_bytes(k->w, k->msg, DNS_HEADER_LEN);
		if (*has_question) {
			put_bytes(k->w, q->name.wire, q->name.len);
			put_bytes(k->w, k->msg + pos - 4, 4);
		}
	}

	const uint16_t counts[3] = {h->ancount, h->nscount, h->arcount};
	bool seen_opt = false;
	for (int s = 0; s < 3; s++) {
		for (unsigned i = 0; i < counts[s]; i++) {
			if (pos == k->len && k->response && h->tc) {
				k->partial = true;
				return 0;
			}
			if (walk_record(k, s, &pos, &seen_opt) < 0)
				return -EBADMSG;
		}
	}
	return 0;
}

static int parse(const uint8_t *msg, size_t len, bool response, struct dns_message *out)
{
	if (!msg || !out)
		return -EBADMSG;
	struct walk k = {.msg = msg, .len = len, .response = response, .out = out};
	out->n_answers = 0;
	out->answers_skipped = 0;
	memset(&out->edns, 0, sizeof out->edns);
	int rc = walk_message(&k, &out->header, &out->question, &out->has_question);
	out->partial = k.partial;
	return rc;
}

int dns_parse_query(const uint8_t *msg, size_t len, struct dns_message *out)
{
	return parse(msg, len, false, out);
}

int dns_parse_response(const uint8_t *msg, size_t len, struct dns_message *out)
{
	return parse(msg, len, true, out);
}

int dns_filter_addresses(const uint8_t *msg, size_t len,
			 bool (*drop)(const struct addr *address, void *ctx), void *ctx,
			 uint8_t *out, size_t cap, struct dns_filter_result *result)
{
	if (!msg || !drop || !out)
		return -EINVAL;
	struct writer w = {.buf = out, .cap = cap < DNS_MESSAGE_MAX ? cap : DNS_MESSAGE_MAX};
	struct walk k = {.msg = msg, .len = len, .response = true, .w = &w, .drop = drop,
			 .ctx = ctx};
	struct dns_header h;
	struct dns_question q;
	bool has_question;
	if (walk_message(&k, &h, &q, &has_question) < 0)
		return -EBADMSG;

	bool truncated = w.full;
	if (truncated) {
		size_t qlen = has_question ? (size_t)q.name.len + 4 : 0;
		if (cap < DNS_HEADER_LEN + qlen)
			return -ENOSPC;
		memcpy(out, msg, DNS_HEADER_LEN);
		out[2] |= FLAG1_TC;
		memset(out + 6, 0, 6);
		if (has_question) {
			memcpy(out + DNS_HEADER_LEN, q.name.wire, q.name.len);
			be16_put(out + DNS_HEADER_LEN + q.name.len, q.qtype);
			be16_put(out + DNS_HEADER_LEN + q.name.len + 2, q.qclass);
		}
		w.len = DNS_HEADER_LEN + qlen;
	} else {
		be16_put(out + 6, k.kept[0]);
		be16_put(out + 8, k.kept[1]);
		be16_put(out + 10, k.kept[2]);
	}
	if (result) {
		result->dropped = k.dropped;
		result->truncated = truncated;
	}
	return (int)w.len;
}

int dns_build_reply(const struct dns_message *query, uint8_t rcode, uint8_t *out, size_t cap)
{
	if (!query || !out || !query->has_question || rcode > 15)
		return -EINVAL;
	const struct dns_question *q = &query->question;
	size_t n = DNS_HEADER_LEN + (size_t)q->name.len + 4;
	if (cap < n)
		return -ENOSPC;
	const struct dns_header *h = &query->header;
	be16_put(out, h->id);
	out[2] = (uint8_t)(FLAG1_QR | (h->opcode & 0x0F) << FLAG1_OPCODE_SHIFT |
			   (h->rd ? FLAG1_RD : 0));
	out[3] = (uint8_t)(FLAG2_RA | (h->cd ? FLAG2_CD : 0) | rcode);
	be16_put(out + 4, 1);
	memset(out + 6, 0, 6);
	memcpy(out + DNS_HEADER_LEN, q->name.wire, q->name.len);
	be16_put(out + DNS_HEADER_LEN + q->name.len, q->qtype);
	be16_put(out + DNS_HEADER_LEN + q->name.len + 2, q->qclass);
	return (int)n;
}

int dns_build_formerr(const uint8_t *msg, size_t len, uint8_t *out, size_t cap)
{
	if (!msg || !out || len < DNS_HEADER_LEN || (msg[2] & FLAG1_QR))
		return -EBADMSG;
	if (cap < DNS_HEADER_LEN)
		return -ENOSPC;
	memcpy(out, msg, 2);
	out[2] = (uint8_t)(FLAG1_QR | (msg[2] & (0x0F << FLAG1_OPCODE_SHIFT | FLAG1_RD)));
	out[3] = DNS_RCODE_FORMERR;
	memset(out + 4, 0, 8);
	return DNS_HEADER_LEN;
}

int dns_set_id(uint8_t *msg, size_t len, uint16_t id)
{
	if (!msg || len < DNS_HEADER_LEN)
		return -EBADMSG;
	be16_put(msg, id);
	return 0;
}

/* Appends c to buf (size bytes) at *n, keeping room for the NUL; *n grows past size on overflow
 * so that the caller sees it. */
static void emit(char *buf, size_t size, size_t *n, char c)
{
	if (*n + 1 < size)
		buf[*n] = c;
	(*n)++;
}

int dns_name_format(const struct dns_name *name, enum dns_name_form form, char *buf, size_t size)
{
	size_t n = 0, p = 0;
	size_t len = name->len;

	if (len <= 1 || name->wire[0] == 0)
		emit(buf, size, &n, '.');
	while (p < len && name->wire[p] != 0) {
		size_t l = name->wire[p];
		if (l > DNS_LABEL_MAX || l >= len - p)
			break;
		if (p > 0)
			emit(buf, size, &n, '.');
		for (size_t i = p + 1; i <= p + l; i++) {
			uint8_t c = name->wire[i];
			if (host_byte(c)) {
				if (form == DNS_NAME_LOWER)
					c = ascii_lower(c);
				emit(buf, size, &n, (char)c);
			} else if (c == '.') {
				emit(buf, size, &n, '\\');
				emit(buf, size, &n, '.');
			} else {
				emit(buf, size, &n, '\\');
				emit(buf, size, &n, (char)('0' + c / 100));
				emit(buf, size, &n, (char)('0' + c / 10 % 10));
				emit(buf, size, &n, (char)('0' + c % 10));
			}
		}
		p += 1 + l;
	}
	if (n + 1 > size) {
		if (size > 0)
			buf[0] = '\0';
		return -ENOSPC;
	}
	buf[n] = '\0';
	return (int)n;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

int dns_name_from_text(struct dns_name *out, const char *text, size_t len)
{
	struct dns_name n;
	size_t i = 0, w = 0;

	if (!out || !text || len == 0)
		return -EINVAL;
	if (len == 1 && text[0] == '.') {
		n.wire[w++] = 0;
		goto done;
	}
	while (i < len) {
		size_t length_at = w++;
		size_t label = 0;
		while (i < len && text[i] != '.') {
			uint8_t c = (uint8_t)text[i];
			if (c == '\\') {
				if (i + 1 >= len)
					return -EINVAL;
				if (is_digit(text[i + 1])) {
					if (i + 3 >= len || !is_digit(text[i + 2]) ||
					    !is_digit(text[i + 3]))
						return -EINVAL;
					unsigned v = (unsigned)(text[i + 1] - '0') * 100 +
						     (unsigned)(text[i + 2] - '0') * 10 +
						     (unsigned)(text[i + 3] - '0');
					if (v > 255)
						return -EINVAL;
					c = (uint8_t)v;
					i += 4;
				} else {
					c = (uint8_t)text[i + 1];
					i += 2;
				}
			} else {
				i++;
			}
			if (label == DNS_LABEL_MAX || w + 2 > DNS_NAME_WIRE_MAX)
				return -EINVAL;
			n.wire[w++] = c;
			label++;
		}
		if (label == 0)
			return -EINVAL;
		n.wire[length_at] = (uint8_t)label;
		if (i < len)
			i++; /* the dot; a final one stands for the root */
	}
	n.wire[w++] = 0;
done:
	n.len = (uint8_t)w;
	name_finish(&n);
	*out = n;
	return 0;
}

bool dns_name_equal(const struct dns_name *a, const struct dns_name *b)
{
	if (a->len != b->len)
		return false;
	for (size_t i = 0; i < a->len; i++) {
		if (ascii_lower(a->wire[i]) != ascii_lower(b->wire[i]))
			return false;
	}
	return true;
}

bool dns_question_match(const struct dns_question *a, const struct dns_question *b)
{
	return a->qtype == b->qtype && a->qclass == b->qclass && dns_name_equal(&a->name, &b->name);
}

struct code_name {
	uint16_t code;
	const char *name;
};

static const struct code_name type_names[] = {
	{1, "A"},       {2, "NS"},      {5, "CNAME"},   {6, "SOA"},     {12, "PTR"},
	{13, "HINFO"},  {15, "MX"},     {16, "TXT"},    {17, "RP"},     {18, "AFSDB"},
	{24, "SIG"},    {25, "KEY"},    {28, "AAAA"},   {29, "LOC"},    {33, "SRV"},
	{35, "NAPTR"},  {36, "KX"},     {37, "CERT"},   {39, "DNAME"},  {41, "OPT"},
	{42, "APL"},    {43, "DS"},     {44, "SSHFP"},  {45, "IPSECKEY"}, {46, "RRSIG"},
	{47, "NSEC"},   {48, "DNSKEY"}, {49, "DHCID"},  {50, "NSEC3"},  {51, "NSEC3PARAM"},
	{52, "TLSA"},   {53, "SMIMEA"}, {55, "HIP"},    {59, "CDS"},    {60, "CDNSKEY"},
	{61, "OPENPGPKEY"}, {62, "CSYNC"}, {63, "ZONEMD"}, {64, "SVCB"}, {65, "HTTPS"},
	{99, "SPF"},    {108, "EUI48"}, {109, "EUI64"}, {249, "TKEY"},  {250, "TSIG"},
	{251, "IXFR"},  {252, "AXFR"},  {255, "ANY"},   {256, "URI"},   {257, "CAA"},
};

static const struct code_name rcode_names[] = {
	{0, "NOERROR"}, {1, "FORMERR"}, {2, "SERVFAIL"}, {3, "NXDOMAIN"}, {4, "NOTIMP"},
	{5, "REFUSED"}, {6, "YXDOMAIN"}, {7, "YXRRSET"}, {8, "NXRRSET"}, {9, "NOTAUTH"},
	{10, "NOTZONE"},
};

static const char *code_lookup(const struct code_name *table, size_t n, unsigned code)
{
	for (size_t i = 0; i < n; i++) {
		if (table[i].code == code)
			return table[i].name;
	}
	return NULL;
}

const char *dns_type_name(uint16_t type)
{
	return code_lookup(type_names, sizeof type_names / sizeof type_names[0], type);
}

int dns_type_format(uint16_t type, char *buf, size_t size)
{
	const char *name = dns_type_name(type);
	int n = name ? snprintf(buf, size, "%s", name) : snprintf(buf, size, "TYPE%u", type);
	if (n < 0 || (size_t)n >= size) {
		if (size > 0)
			buf[0] = '\0';
		return -ENOSPC;
	}
	return n;
}

const char *dns_rcode_name(uint8_t rcode)
{
	return code_lookup(rcode_names, sizeof rcode_names / sizeof rcode_names[0], rcode);
}

int dns_tcp_next(const uint8_t *buf, size_t len, const uint8_t **msg, size_t *msg_len)
{
	if (len < 2)
		return 0;
	size_t n = be16_get(buf);
	if (n < DNS_HEADER_LEN)
		return -EBADMSG;
	if (len - 2 < n)
		return 0;
	*msg = buf + 2;
	*msg_len = n;
	return (int)(n + 2);
}

int dns_tcp_prefix(uint8_t out[2], size_t msg_len)
{
	if (msg_len > DNS_MESSAGE_MAX)
		return -EMSGSIZE;
	be16_put(out, (uint16_t)msg_len);
	return 0;
}
