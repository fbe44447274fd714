/* fuzz_dns.c — DNS messages from arbitrary bytes: no overread, names within bounds, text forms
 * printable and lossless, built replies that parse back, the filter's output valid and faithful,
 * the DNS map's invariants intact. */
#include "policy/dns_map.h"
#include "proxy/dns_msg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct dns_message msg, back;
static uint8_t out[DNS_MESSAGE_MAX];
static struct dns_map *map;
static uint64_t now_ms;

static bool text_byte(char c, bool lower)
{
	return (c >= 'a' && c <= 'z') || (!lower && c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == '\\';
}

static void check_name(const struct dns_name *n)
{
	if (n->len < 1 || n->wire[n->len - 1] != 0)
		abort();
	size_t p = 0, labels = 0;
	bool host = n->len > 1;
	while (n->wire[p] != 0) {
		size_t l = n->wire[p];
		if (l > DNS_LABEL_MAX || p + l + 1 >= n->len)
			abort();
		for (size_t i = p + 1; i <= p + l; i++) {
			uint8_t c = n->wire[i];
			if (!((c | 0x20) >= 'a' && (c | 0x20) <= 'z') && !(c >= '0' && c <= '9') &&
			    c != '-' && c != '_')
				host = false;
		}
		p += l + 1;
		labels++;
	}
	if (p != (size_t)n->len - 1 || labels != n->labels || host != n->hostname)
		abort();

	char lower[DNS_NAME_TEXT_MAX], pres[DNS_NAME_TEXT_MAX];
	int a = dns_name_format(n, DNS_NAME_LOWER, lower, sizeof lower);
	int b = dns_name_format(n, DNS_NAME_PRESENTATION, pres, sizeof pres);
	if (a <= 0 || a != b || (size_t)a != strlen(lower))
		abort();
	for (int i = 0; i < a; i++) {
		if (!text_byte(lower[i], true) || !text_byte(pres[i], false))
			abort();
		char c = pres[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c != lower[i])
			abort();
	}
	if (n->hostname && strchr(lower, '\\'))
		abort();
	struct dns_name round;
	if (dns_name_from_text(&round, pres, (size_t)b) != 0 || round.len != n->len ||
	    memcmp(round.wire, n->wire, n->len) != 0 || round.hostname != n->hostname)
		abort();
}

static bool same_record(const struct dns_record *x, const struct dns_record *y)
{
	if (x->type != y->type || x->ttl != y->ttl || x->owner.len != y->owner.len ||
	    memcmp(x->owner.wire, y->owner.wire, x->owner.len) != 0)
		return false;
	if (x->type == DNS_TYPE_CNAME)
		return x->target.len == y->target.len &&
		       memcmp(x->target.wire, y->target.wire, x->target.len) == 0;
	return addr_equal(&x->address, &y->address);
}

static bool drop_odd(const struct addr *a, void *ctx)
{
	(void)ctx;
	return a->bytes[addr_len(a) - 1] & 1;
}

static bool drop_none(const struct addr *a, void *ctx)
{
	(void)a;
	(void)ctx;
	return false;
}

/* Filters msg (parsed from data) and checks the result against what was parsed. */
static void check_filter(const uint8_t *data, size_t size, bool (*drop)(const struct addr *,
									 void *))
{
	struct dns_filter_result r;
	int n = dns_filter_addresses(data, size, drop, NULL, out, sizeof out, &r);
	if (n == -EBADMSG)
		return; /* rdata that does not match its type's layout */
	if (n < DNS_HEADER_LEN || dns_parse_response(out, (size_t)n, &back) != 0 ||
	    back.header.id != msg.header.id || back.has_question != msg.has_question)
		abort();
	if (msg.has_question && !dns_question_match(&back.question, &msg.question))
		abort();
	if (r.truncated) {
		if (!back.header.tc || back.header.ancount || back.header.nscount ||
		    back.header.arcount)
			abort();
		return;
	}
	if (back.edns.present != msg.edns.present || back.edns.udp_size != msg.edns.udp_size)
		abort();
	if (msg.answers_skipped)
		return; /* the output may now hold answers the input's bound left out */
	size_t k = 0, dropped = 0;
	for (size_t i = 0; i < msg.n_answers; i++) {
		const struct dns_record *rec = &msg.answers[i];
		if (rec->type != DNS_TYPE_CNAME && drop(&rec->address, NULL)) {
			dropped++;
			continue;
		}
		if (k >= back.n_answers || !same_record(rec, &back.answers[k]))
			abort();
		k++;
	}
	if (k != back.n_answers || r.dropped < dropped)
		abort();
}

static void check_map_after(const struct dns_message *m, size_t recorded)
{
	const char *broken = dns_map_check_invariants(map);
	if (broken)
		abort();
	if (recorded == 0 || !m->question.name.hostname)
		return;
	const struct dns_record *last = NULL;
	for (size_t i = 0; i < m->n_answers; i++) {
		if (m->answers[i].type != DNS_TYPE_CNAME)
			last = &m->answers[i];
	}
	if (!last || !dns_name_equal(&last->owner, &m->question.name))
		return;
	/* The last address recorded got the question's name last: it is listed first. */
	char lower[DNS_NAME_TEXT_MAX];
	const char *const *names;
	if (dns_name_format(&m->question.name, DNS_NAME_LOWER, lower, sizeof lower) < 0 ||
	    dns_map_lookup(map, &last->address, now_ms, &names) == 0 ||
	    strcmp(names[0], lower) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!map) {
		struct dns_map_config cfg;
		dns_map_config_default(&cfg);
		cfg.capacity = 8;
		cfg.names_per_addr = 3;
		cfg.min_ttl_s = 1;
		cfg.max_ttl_s = 100;
		if (dns_map_new(&map, &cfg) != 0)
			abort();
	}
	uint8_t *copy = malloc(size ? size : 1); /* exact size: ASan sees any overread */
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	now_ms += size ? (uint64_t)copy[size - 1] * 500 : 0;

	if (dns_parse_query(copy, size, &msg) == 0) {
		if (msg.header.qr || !msg.has_question || msg.n_answers || msg.answers_skipped)
			abort();
		check_name(&msg.question.name);
		uint8_t reply[DNS_HEADER_LEN + DNS_NAME_WIRE_MAX + 4];
		int n = dns_build_reply(&msg, DNS_RCODE_NXDOMAIN, reply, sizeof reply);
		if (n <= 0 || dns_parse_response(reply, (size_t)n, &back) != 0 ||
		    back.header.id != msg.header.id || back.header.rcode != DNS_RCODE_NXDOMAIN ||
		    !back.has_question || back.question.name.len != msg.question.name.len ||
		    memcmp(back.question.name.wire, msg.question.name.wire,
			   back.question.name.len) != 0 ||
		    back.question.qtype != msg.question.qtype ||
		    back.question.qclass != msg.question.qclass)
			abort();
	}
	uint8_t formerr[DNS_HEADER_LEN];
	int n = dns_build_formerr(copy, size, formerr, sizeof formerr);
	if (n >= 0 && (n != DNS_HEADER_LEN || dns_parse_response(formerr, DNS_HEADER_LEN, &back) ||
		       back.header.id != (copy[0] << 8 | copy[1]) ||
		       back.header.rcode != DNS_RCODE_FORMERR || back.has_question))
		abort();

	if (dns_parse_response(copy, size, &msg) == 0) {
		if (!msg.header.qr || msg.n_answers > DNS_MAX_ANSWERS)
			abort();
		if (msg.has_question)
			check_name(&msg.question.name);
		for (size_t i = 0; i < msg.n_answers; i++) {
			const struct dns_record *rec = &msg.answers[i];
			check_name(&rec->owner);
			if (rec->type == DNS_TYPE_CNAME)
				check_name(&rec->target);
			else if (rec->address.family !=
				 (rec->type == DNS_TYPE_A ? ADDR_V4 : ADDR_V6))
				abort();
			if (rec->ttl > 0x7fffffffu)
				abort();
		}
		check_filter(copy, size, drop_none);
		check_filter(copy, size, drop_odd);
		check_map_after(&msg, dns_map_record_response(map, &msg, now_ms));
	} else if (dns_filter_addresses(copy, size, drop_none, NULL, out, sizeof out, NULL) !=
		   -EBADMSG) {
		abort(); /* the filter accepts nothing the parser refuses */
	}
	dns_map_sweep(map, now_ms);

	const uint8_t *framed;
	size_t framed_len;
	n = dns_tcp_next(copy, size, &framed, &framed_len);
	if (n > 0 && (framed != copy + 2 || (size_t)n != framed_len + 2 || (size_t)n > size))
		abort();
	free(copy);
	return 0;
}
