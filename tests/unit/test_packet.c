/* test_packet.c — the IP packet parser and NAT rewrites: tables of good, cut and malformed
 * packets, checksums against an independent reference, and rewrites against full recomputation. */
#include "check.h"

#include "divert/packet.h"

#include <errno.h>
#include <stdbool.h>

/* Packets and their checksums made by the python3 script at the end of this file, which builds
 * them from RFC 791/768/793/8200 with its own checksum code (nothing shared with packet.c); its
 * output is pasted below. The rw_ packets are what the rewrites in test_rewrite_vectors must
 * produce, computed from scratch. */
static const uint8_t v4_tcp_syn[] = {
	0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x32, 0x24,
	0xc0, 0x00, 0x02, 0x0a, 0xc6, 0x33, 0x64, 0x14, 0x9c, 0x40, 0x01, 0xbb,
	0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0,
	0x7a, 0x55, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a,
	0x11, 0x22, 0x33, 0x44, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
};
static const uint8_t v4_opts_udp_dns[] = {
	0x46, 0x00, 0x00, 0x3d, 0x1c, 0x46, 0x00, 0x00, 0x40, 0x11, 0xdd, 0x13,
	0xc0, 0x00, 0x02, 0x0a, 0xc6, 0x33, 0x64, 0x14, 0x94, 0x04, 0x00, 0x00,
	0xcf, 0x08, 0x00, 0x35, 0x00, 0x25, 0xc8, 0xd8, 0xab, 0xcd, 0x01, 0x00,
	0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x65, 0x78, 0x61,
	0x6d, 0x70, 0x6c, 0x65, 0x03, 0x63, 0x6f, 0x6d, 0x00, 0x00, 0x01, 0x00,
	0x01,
};
static const uint8_t v4_udp_no_csum[] = {
	0x45, 0x00, 0x00, 0x20, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x11, 0x32, 0x35,
	0xc0, 0x00, 0x02, 0x0a, 0xc6, 0x33, 0x64, 0x14, 0x0f, 0xa0, 0x13, 0x88,
	0x00, 0x0c, 0x00, 0x00, 0x70, 0x69, 0x6e, 0x67,
};
static const uint8_t v6_tcp_psh_ack[] = {
	0x60, 0x00, 0x00, 0x00, 0x00, 0x19, 0x06, 0x40, 0x20, 0x01, 0x0d, 0xb8,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
	0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x53, 0xc3, 0x50, 0x00, 0x50, 0xa0, 0xb0, 0xc0, 0xd0,
	0x01, 0x02, 0x03, 0x04, 0x50, 0x18, 0xfa, 0xf0, 0xec, 0x15, 0x00, 0x00,
	0x68, 0x65, 0x6c, 0x6c, 0x6f,
};
static const uint8_t v6_hbh_dst_frag_udp[] = {
	0x60, 0x00, 0x00, 0x00, 0x00, 0x23, 0x00, 0x40, 0x20, 0x01, 0x0d, 0xb8,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
	0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x53, 0x3c, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00,
	0x2c, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x11, 0x00, 0x00, 0x00,
	0x12, 0x34, 0x56, 0x78, 0x14, 0xe9, 0x00, 0x35, 0x00, 0x0b, 0xca, 0x90,
	0x61, 0x62, 0x63,
};
static const uint8_t v6_rh_ah_tcp[] = {
	0x60, 0x00, 0x00, 0x00, 0x00, 0x44, 0x2b, 0x40, 0x20, 0x01, 0x0d, 0xb8,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
	0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x53, 0x33, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,
	0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x04, 0xd2, 0x01, 0xbb, 0x00, 0x00, 0x00, 0x07,
	0x00, 0x00, 0x00, 0x00, 0x50, 0x02, 0xfa, 0xf0, 0x52, 0x97, 0x00, 0x00,
};
static const uint8_t v4_icmp_echo[] = {
	0x45, 0x00, 0x00, 0x20, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x01, 0x32, 0x45,
	0xc0, 0x00, 0x02, 0x0a, 0xc6, 0x33, 0x64, 0x14, 0x08, 0x00, 0x21, 0x04,
	0x12, 0x34, 0x00, 0x01, 0x61, 0x62, 0x63, 0x64,
};
static const uint8_t v4_frag_first_udp[] = {
	0x45, 0x00, 0x00, 0x2c, 0x1c, 0x46, 0x20, 0x00, 0x40, 0x11, 0x52, 0x29,
	0xc0, 0x00, 0x02, 0x0a, 0xc6, 0x33, 0x64, 0x14, 0x1b, 0x58, 0x00, 0x35,
	0x03, 0xe8, 0x11, 0x11, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
	0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
};
static const uint8_t v4_frag_later_udp[] = {
	0x45, 0x00, 0x00, 0x24, 0x1c, 0x46, 0x00, 0xb9, 0x40, 0x11, 0x71, 0x78,
	0xc0, 0x00, 0x02, 0x0a, 0xc6, 0x33, 0x64, 0x14, 0x00, 0x01, 0x02, 0x03,
	0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
};
static const uint8_t v6_frag_later_tcp[] = {
	0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x2c, 0x40, 0x20, 0x01, 0x0d, 0xb8,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
	0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x53, 0x06, 0x00, 0x05, 0xa9, 0x9a, 0xbc, 0xde, 0xf0,
	0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b,
	0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
};
static const uint8_t v4_tcp_csum_0000[] = {
	0x45, 0x00, 0x00, 0x2d, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x32, 0x33,
	0xc0, 0x00, 0x02, 0x0a, 0xc6, 0x33, 0x64, 0x14, 0x03, 0xe8, 0x07, 0xd0,
	0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x50, 0x18, 0xfa, 0xf0,
	0x00, 0x00, 0x00, 0x00, 0x78, 0x79, 0xca, 0x4f, 0x7a,
};
static const uint8_t v6_udp_csum_ffff[] = {
	0x60, 0x00, 0x00, 0x00, 0x00, 0x0d, 0x11, 0x40, 0x20, 0x01, 0x0d, 0xb8,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
	0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x53, 0x0b, 0xb8, 0x0f, 0xa0, 0x00, 0x0d, 0xff, 0xff,
	0xb5, 0x50, 0x6f, 0x64, 0x64,
};
static const uint8_t rw_v4_tcp_syn_dst_lo9080[] = {
	0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0xdd, 0x6a,
	0xc0, 0x00, 0x02, 0x0a, 0x7f, 0x00, 0x00, 0x01, 0x9c, 0x40, 0x23, 0x78,
	0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0,
	0x03, 0xdf, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a,
	0x11, 0x22, 0x33, 0x44, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
};
static const uint8_t rw_v6_tcp_reflect[] = {
	0x60, 0x00, 0x00, 0x00, 0x00, 0x19, 0x06, 0x40, 0x20, 0x01, 0x0d, 0xb8,
	0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x53,
	0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x01, 0xc3, 0x50, 0x23, 0x78, 0xa0, 0xb0, 0xc0, 0xd0,
	0x01, 0x02, 0x03, 0x04, 0x50, 0x18, 0xfa, 0xf0, 0xc8, 0xed, 0x00, 0x00,
	0x68, 0x65, 0x6c, 0x6c, 0x6f,
};
static const uint8_t rw_v4_opts_udp_src[] = {
	0x46, 0x00, 0x00, 0x3d, 0x1c, 0x46, 0x00, 0x00, 0x40, 0x11, 0x63, 0x16,
	0xcb, 0x00, 0x71, 0x07, 0xc6, 0x33, 0x64, 0x14, 0x94, 0x04, 0x00, 0x00,
	0x14, 0xe9, 0x00, 0x35, 0x00, 0x25, 0x08, 0xfb, 0xab, 0xcd, 0x01, 0x00,
	0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x65, 0x78, 0x61,
	0x6d, 0x70, 0x6c, 0x65, 0x03, 0x63, 0x6f, 0x6d, 0x00, 0x00, 0x01, 0x00,
	0x01,
};

/* The IPv4 header of Wikipedia's "IPv4 header checksum" example, checksum 0xB861. */
static const uint8_t wikipedia_ipv4_header[] = {
	0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
	0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
};

#define PACKET(name) #name, name, sizeof name
#define BYTES(name) name, sizeof name

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* An exactly-sized heap copy, so that ASan reports any read past the end. */
static uint8_t *copy_of(const uint8_t *bytes, size_t len)
{
	uint8_t *copy = malloc(len ? len : 1);
	if (!copy) {
		fprintf(stderr, "out of memory\n");
		exit(2);
	}
	if (len)
		memcpy(copy, bytes, len);
	return copy;
}

static int parse_copy(const uint8_t *bytes, size_t len, struct pkt *out)
{
	uint8_t *copy = copy_of(bytes, len);
	int rc = pkt_parse(copy, len, out);
	free(copy);
	return rc;
}

static const char *addr_text(const struct addr *a, char buf[ADDR_STRLEN])
{
	if (addr_format(a, buf, ADDR_STRLEN) < 0)
		snprintf(buf, ADDR_STRLEN, "(family %u)", a->family);
	return buf;
}

static struct addr addr_of(const char *text)
{
	struct addr a;
	memset(&a, 0, sizeof a);
	if (addr_parse(&a, text, strlen(text)) != 0)
		check_fail(__FILE__, __LINE__, "bad address in test: %s", text);
	return a;
}

/* For rows that go on to use the view: a failed parse fails the row and skips the rest. */
static bool parsed_ok(const uint8_t *buf, size_t len, struct pkt *p)
{
	int rc = pkt_parse(buf, len, p);
	CHECK_EQ(rc, PKT_OK);
	return rc == PKT_OK;
}

static uint32_t l4_csum_off(const struct pkt *p)
{
	return p->l4_off + (p->l4_proto == PKT_PROTO_TCP ? 16 : 6);
}

static void test_result_names(void)
{
	for (int i = 0; i < PKT_RESULT_COUNT; i++) {
		check_case("code %d", -i);
		const char *name = pkt_result_name(-i);
		CHECK(name != NULL);
		CHECK(strcmp(name, "unknown") != 0);
		for (int j = 0; j < i; j++)
			CHECK(strcmp(name, pkt_result_name(-j)) != 0);
	}
	check_case("out of range");
	CHECK_STR_EQ(pkt_result_name(1), "unknown");
	CHECK_STR_EQ(pkt_result_name(-PKT_RESULT_COUNT), "unknown");
	CHECK_STR_EQ(pkt_result_name(-EINVAL * 100), "unknown");
	CHECK_STR_EQ(pkt_result_name(PKT_ERR_TRUNCATED), "truncated");
	CHECK(pkt_result_has_ip(PKT_OK));
	CHECK(pkt_result_has_ip(PKT_ERR_FRAGMENT));
	CHECK(pkt_result_has_ip(PKT_ERR_UNSUPPORTED));
	CHECK(!pkt_result_has_ip(PKT_ERR_TRUNCATED));
	CHECK(!pkt_result_has_ip(PKT_ERR_UDP_HEADER));
}

struct parse_case {
	const char *name;
	const uint8_t *bytes;
	size_t len;
	int rc;
	uint8_t version, proto;
	uint32_t ip_hdr_len, ip_len, l4_off, l4_hdr_len, payload_len;
	bool has_l4;
	uint16_t sport, dport;
	uint8_t flags;
	uint32_t seq, ack;
	bool fragmented, more;
	uint16_t frag_offset;
};

#define SYN PKT_TCP_SYN
#define PSH_ACK (PKT_TCP_PSH | PKT_TCP_ACK)

static const struct parse_case good_packets[] = {
	{PACKET(v4_tcp_syn), PKT_OK, 4, 6, 20, 60, 20, 40, 0, true, 40000, 443, SYN, 0x01020304, 0,
	 false, false, 0},
	{PACKET(v4_opts_udp_dns), PKT_OK, 4, 17, 24, 61, 24, 8, 29, true, 53000, 53, 0, 0, 0, false,
	 false, 0},
	{PACKET(v4_udp_no_csum), PKT_OK, 4, 17, 20, 32, 20, 8, 4, true, 4000, 5000, 0, 0, 0, false,
	 false, 0},
	{PACKET(v6_tcp_psh_ack), PKT_OK, 6, 6, 40, 65, 40, 20, 5, true, 50000, 80, PSH_ACK,
	 0xa0b0c0d0, 0x01020304, false, false, 0},
	{PACKET(v6_hbh_dst_frag_udp), PKT_OK, 6, 17, 40, 75, 64, 8, 3, true, 5353, 53, 0, 0, 0,
	 false, false, 0},
	{PACKET(v6_rh_ah_tcp), PKT_OK, 6, 6, 40, 108, 88, 20, 0, true, 1234, 443, SYN, 7, 0, false,
	 false, 0},
	{PACKET(v4_icmp_echo), PKT_ERR_UNSUPPORTED, 4, 1, 20, 32, 20, 0, 12, false, 0, 0, 0, 0, 0,
	 false, false, 0},
	{PACKET(v4_frag_first_udp), PKT_ERR_FRAGMENT, 4, 17, 20, 44, 20, 8, 16, true, 7000, 53, 0,
	 0, 0, true, true, 0},
	{PACKET(v4_frag_later_udp), PKT_ERR_FRAGMENT, 4, 17, 20, 36, 20, 0, 16, false, 0, 0, 0, 0,
	 0, true, false, 1480},
	{PACKET(v6_frag_later_tcp), PKT_ERR_FRAGMENT, 6, 6, 40, 72, 48, 0, 24, false, 0, 0, 0, 0, 0,
	 true, true, 1448},
	{PACKET(v4_tcp_csum_0000), PKT_OK, 4, 6, 20, 45, 20, 20, 5, true, 1000, 2000, PSH_ACK, 1,
	 2, false, false, 0},
	{PACKET(v6_udp_csum_ffff), PKT_OK, 6, 17, 40, 53, 40, 8, 5, true, 3000, 4000, 0, 0, 0,
	 false, false, 0},
};

static void check_view(const struct parse_case *c, const struct pkt *p)
{
	char a[ADDR_STRLEN];
	CHECK_EQ(p->ip_version, c->version);
	CHECK_EQ(p->l4_proto, c->proto);
	CHECK_EQ(p->ip_hdr_len, c->ip_hdr_len);
	CHECK_EQ(p->ip_len, c->ip_len);
	CHECK_EQ(p->l4_off, c->l4_off);
	CHECK_EQ(p->l4_hdr_len, c->l4_hdr_len);
	CHECK_EQ(p->payload_off, c->l4_off + c->l4_hdr_len);
	CHECK_EQ(p->payload_len, c->payload_len);
	CHECK_EQ(p->payload_off + p->payload_len, p->ip_len);
	CHECK_EQ(p->has_l4, c->has_l4);
	CHECK_EQ(p->sport, c->sport);
	CHECK_EQ(p->dport, c->dport);
	CHECK_EQ(p->tcp_flags, c->flags);
	CHECK_EQ(p->tcp_seq, c->seq);
	CHECK_EQ(p->tcp_ack, c->ack);
	CHECK_EQ(p->fragmented, c->fragmented);
	CHECK_EQ(p->more_fragments, c->more);
	CHECK_EQ(p->frag_offset, c->frag_offset);
	if (c->version == 4) {
		CHECK_STR_EQ(addr_text(&p->src, a), "192.0.2.10");
		CHECK_STR_EQ(addr_text(&p->dst, a), "198.51.100.20");
	} else {
		CHECK_STR_EQ(addr_text(&p->src, a), "2001:db8::1");
		CHECK_STR_EQ(addr_text(&p->dst, a), "2001:db8:0:1::53");
	}
}

static void test_parse_good(void)
{
	for (size_t i = 0; i < sizeof good_packets / sizeof good_packets[0]; i++) {
		const struct parse_case *c = &good_packets[i];
		struct pkt p;
		check_case("%s", c->name);
		int rc = parse_copy(c->bytes, c->len, &p);
		CHECK_EQ(rc, c->rc);
		CHECK(pkt_result_has_ip(rc));
		check_view(c, &p);
	}
}

/* Ethernet pads short frames; NFQUEUE and WinDivert hand over the IP datagram, but a parser
 * must still stop at the IP length, not at the buffer's end. */
static void test_parse_ignores_trailing_bytes(void)
{
	for (size_t i = 0; i < sizeof good_packets / sizeof good_packets[0]; i++) {
		const struct parse_case *c = &good_packets[i];
		uint8_t padded[256];
		struct pkt p;
		check_case("%s", c->name);
		if (c->len + 18 > sizeof padded) {
			check_fail(__FILE__, __LINE__, "packet too long for the padded copy");
			continue;
		}
		memcpy(padded, c->bytes, c->len);
		memset(padded + c->len, 0xee, 18);
		CHECK_EQ(parse_copy(padded, c->len + 18, &p), c->rc);
		check_view(c, &p);
	}
}

/* Every proper prefix of a good packet is a capture cut short, whatever header it cuts. */
static void test_parse_every_prefix_is_truncated(void)
{
	for (size_t i = 0; i < sizeof good_packets / sizeof good_packets[0]; i++) {
		const struct parse_case *c = &good_packets[i];
		for (size_t len = 0; len < c->len; len++) {
			struct pkt p;
			check_case("%s cut to %zu bytes", c->name, len);
			CHECK_EQ(parse_copy(c->bytes, len, &p), PKT_ERR_TRUNCATED);
		}
	}
}

/* A good packet with up to two fields overwritten (width 1 or 2 bytes, big-endian). */
struct edit {
	uint32_t off;
	uint8_t width;
	uint16_t value;
};

struct malformed_case {
	const char *name;
	const uint8_t *bytes;
	size_t len;
	struct edit edits[2];
	int rc;
};

static const struct malformed_case malformed[] = {
	{"version 5", BYTES(v4_tcp_syn), {{0, 1, 0x55}}, PKT_ERR_VERSION},
	{"version 0", BYTES(v4_tcp_syn), {{0, 1, 0x05}}, PKT_ERR_VERSION},
	{"version 15", BYTES(v6_tcp_psh_ack), {{0, 1, 0xf0}}, PKT_ERR_VERSION},
	{"version 6 on an IPv4 packet", BYTES(v4_tcp_syn), {{0, 1, 0x65}}, PKT_ERR_TRUNCATED},
	{"ihl 0", BYTES(v4_tcp_syn), {{0, 1, 0x40}}, PKT_ERR_IP_HEADER_LEN},
	{"ihl 4", BYTES(v4_tcp_syn), {{0, 1, 0x44}}, PKT_ERR_IP_HEADER_LEN},
	{"ihl 15 beyond total length", BYTES(v4_udp_no_csum), {{0, 1, 0x4f}},
	 PKT_ERR_IP_HEADER_LEN},
	{"ihl 7 eats the tcp header", BYTES(v4_tcp_syn), {{0, 1, 0x47}}, PKT_ERR_TCP_HEADER},
	{"ihl 5 on a packet with options", BYTES(v4_opts_udp_dns), {{0, 1, 0x45}},
	 PKT_ERR_UDP_HEADER},
	{"total length 0", BYTES(v4_tcp_syn), {{2, 2, 0}}, PKT_ERR_IP_TOTAL_LEN},
	{"total length 19", BYTES(v4_tcp_syn), {{2, 2, 19}}, PKT_ERR_IP_TOTAL_LEN},
	{"total length 20, no tcp", BYTES(v4_tcp_syn), {{2, 2, 20}}, PKT_ERR_TCP_HEADER},
	{"total length 23 with 24 header bytes", BYTES(v4_opts_udp_dns), {{2, 2, 23}},
	 PKT_ERR_IP_HEADER_LEN},
	{"total length beyond the buffer", BYTES(v4_tcp_syn), {{2, 2, 61}}, PKT_ERR_TRUNCATED},
	{"total length 65535", BYTES(v4_tcp_syn), {{2, 2, 65535}}, PKT_ERR_TRUNCATED},
	{"total length cuts tcp options", BYTES(v4_tcp_syn), {{2, 2, 59}}, PKT_ERR_TCP_HEADER},
	{"total length disagrees with udp", BYTES(v4_udp_no_csum), {{2, 2, 31}},
	 PKT_ERR_UDP_HEADER},
	{"total length 27, 7 bytes of udp", BYTES(v4_udp_no_csum), {{2, 2, 27}},
	 PKT_ERR_UDP_HEADER},
	{"tcp data offset 0", BYTES(v4_tcp_syn), {{32, 1, 0x00}}, PKT_ERR_TCP_HEADER},
	{"tcp data offset 4", BYTES(v4_tcp_syn), {{32, 1, 0x40}}, PKT_ERR_TCP_HEADER},
	{"tcp data offset 11 beyond segment", BYTES(v4_tcp_syn), {{32, 1, 0xb0}},
	 PKT_ERR_TCP_HEADER},
	{"tcp data offset 15", BYTES(v6_tcp_psh_ack), {{52, 1, 0xf0}}, PKT_ERR_TCP_HEADER},
	{"tcp data offset 6 leaves 1 payload byte", BYTES(v6_tcp_psh_ack), {{52, 1, 0x60}},
	 PKT_OK},
	{"udp length + 1", BYTES(v4_udp_no_csum), {{24, 2, 13}}, PKT_ERR_UDP_HEADER},
	{"udp length - 1", BYTES(v4_udp_no_csum), {{24, 2, 11}}, PKT_ERR_UDP_HEADER},
	{"udp length 0", BYTES(v4_udp_no_csum), {{24, 2, 0}}, PKT_ERR_UDP_HEADER},
	{"udp length 7", BYTES(v6_udp_csum_ffff), {{44, 2, 7}}, PKT_ERR_UDP_HEADER},
	{"protocol tcp on a udp packet", BYTES(v4_udp_no_csum), {{9, 1, 6}}, PKT_ERR_TCP_HEADER},
	{"protocol udp on a tcp packet", BYTES(v4_tcp_syn), {{9, 1, 17}}, PKT_ERR_UDP_HEADER},
	{"ipv4 esp", BYTES(v4_tcp_syn), {{9, 1, PKT_PROTO_ESP}}, PKT_ERR_UNSUPPORTED},
	{"ipv4 ah", BYTES(v4_tcp_syn), {{9, 1, PKT_PROTO_AH}}, PKT_ERR_UNSUPPORTED},
	{"ipv4 protocol 255", BYTES(v4_tcp_syn), {{9, 1, 255}}, PKT_ERR_UNSUPPORTED},
	{"ipv4 df alone is no fragment", BYTES(v4_udp_no_csum), {{6, 2, 0x4000}}, PKT_OK},
	{"ipv4 reserved flag is no fragment", BYTES(v4_udp_no_csum), {{6, 2, 0x8000}}, PKT_OK},
	{"ipv4 first fragment", BYTES(v4_tcp_syn), {{6, 2, 0x2000}}, PKT_ERR_FRAGMENT},
	{"ipv4 last fragment", BYTES(v4_tcp_syn), {{6, 2, 0x0001}}, PKT_ERR_FRAGMENT},
	{"ipv4 tiny first fragment", BYTES(v4_tcp_syn), {{6, 2, 0x2000}, {2, 2, 28}},
	 PKT_ERR_FRAGMENT},
	{"ipv4 malformed fragment", BYTES(v4_tcp_syn), {{6, 2, 0x2001}, {0, 1, 0x44}},
	 PKT_ERR_IP_HEADER_LEN},
	{"ipv6 payload length + 1", BYTES(v6_tcp_psh_ack), {{4, 2, 26}}, PKT_ERR_TRUNCATED},
	{"ipv6 payload length 65535", BYTES(v6_tcp_psh_ack), {{4, 2, 65535}}, PKT_ERR_TRUNCATED},
	{"ipv6 payload length - 1 shortens tcp data", BYTES(v6_tcp_psh_ack), {{4, 2, 24}}, PKT_OK},
	{"ipv6 payload length 19", BYTES(v6_tcp_psh_ack), {{4, 2, 19}}, PKT_ERR_TCP_HEADER},
	{"ipv6 payload length 0, tcp", BYTES(v6_tcp_psh_ack), {{4, 2, 0}}, PKT_ERR_TCP_HEADER},
	{"ipv6 payload length disagrees with udp", BYTES(v6_udp_csum_ffff), {{4, 2, 12}},
	 PKT_ERR_UDP_HEADER},
	{"ipv6 jumbogram", BYTES(v6_hbh_dst_frag_udp), {{4, 2, 0}}, PKT_ERR_JUMBOGRAM},
	{"ipv6 esp", BYTES(v6_tcp_psh_ack), {{6, 1, PKT_PROTO_ESP}}, PKT_ERR_UNSUPPORTED},
	{"ipv6 icmpv6", BYTES(v6_tcp_psh_ack), {{6, 1, PKT_PROTO_ICMPV6}}, PKT_ERR_UNSUPPORTED},
	{"ipv6 no next header", BYTES(v6_tcp_psh_ack), {{6, 1, PKT_PROTO_NONE}},
	 PKT_ERR_UNSUPPORTED},
	{"ipv6 no next header, empty", BYTES(v6_tcp_psh_ack), {{6, 1, PKT_PROTO_NONE}, {4, 2, 0}},
	 PKT_ERR_UNSUPPORTED},
	{"ipv6 no next header after options", BYTES(v6_hbh_dst_frag_udp), {{56, 1, 59}},
	 PKT_ERR_UNSUPPORTED},
	{"hop-by-hop after destination options", BYTES(v6_hbh_dst_frag_udp), {{48, 1, 0}},
	 PKT_ERR_EXT_HEADER},
	{"hop-by-hop length past the payload", BYTES(v6_hbh_dst_frag_udp), {{41, 1, 10}},
	 PKT_ERR_EXT_HEADER},
	{"hop-by-hop alone, 7 bytes", BYTES(v6_hbh_dst_frag_udp), {{4, 2, 7}},
	 PKT_ERR_EXT_HEADER},
	{"destination options past the payload", BYTES(v6_hbh_dst_frag_udp), {{49, 1, 3}},
	 PKT_ERR_EXT_HEADER},
	{"destination options eat the fragment header", BYTES(v6_hbh_dst_frag_udp), {{49, 1, 2}},
	 PKT_ERR_EXT_HEADER},
	{"fragment header, more fragments", BYTES(v6_hbh_dst_frag_udp), {{58, 2, 0x0001}},
	 PKT_ERR_FRAGMENT},
	{"fragment header, offset 8", BYTES(v6_hbh_dst_frag_udp), {{58, 2, 0x0008}},
	 PKT_ERR_FRAGMENT},
	{"fragment header, reserved bits only", BYTES(v6_hbh_dst_frag_udp), {{58, 2, 0x0006}},
	 PKT_OK},
	{"routing header past the payload", BYTES(v6_rh_ah_tcp), {{41, 1, 10}},
	 PKT_ERR_EXT_HEADER},
	{"ah length past the payload", BYTES(v6_rh_ah_tcp), {{65, 1, 20}}, PKT_ERR_EXT_HEADER},
	{"ah length 0 (8 bytes)", BYTES(v6_rh_ah_tcp), {{65, 1, 0}}, PKT_ERR_TCP_HEADER},
	{"ipv6 later fragment of anything", BYTES(v6_frag_later_tcp), {{40, 1, 99}},
	 PKT_ERR_FRAGMENT},
};

static void test_parse_malformed(void)
{
	for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
		const struct malformed_case *c = &malformed[i];
		uint8_t *buf = copy_of(c->bytes, c->len);
		struct pkt p;
		check_case("%s", c->name);
		for (size_t e = 0; e < 2; e++) {
			const struct edit *ed = &c->edits[e];
			CHECK(ed->off + ed->width <= c->len);
			if (ed->width == 1)
				buf[ed->off] = (uint8_t)ed->value;
			else if (ed->width == 2)
				wr16(buf + ed->off, ed->value);
		}
		int rc = pkt_parse(buf, c->len, &p);
		CHECK_EQ(rc, c->rc);
		if (rc == PKT_OK || rc == PKT_ERR_FRAGMENT || rc == PKT_ERR_UNSUPPORTED) {
			CHECK(p.ip_len <= c->len);
			CHECK(p.l4_off <= p.ip_len);
			CHECK_EQ(p.payload_off + p.payload_len, p.ip_len);
		}
		if (rc == PKT_ERR_FRAGMENT)
			CHECK(p.fragmented);
		free(buf);
	}
}

/* The whole flags byte is reported, ECN bits included (an ECN-setup SYN is 0xC2). */
static void test_parse_tcp_flags(void)
{
	static const uint8_t flag_bytes[] = {0x00, 0x02, 0x12, 0x10, 0x11, 0x04, 0x14, 0x18,
					     0x29, 0xc2, 0x52, 0xff};
	for (size_t i = 0; i < sizeof flag_bytes; i++) {
		uint8_t buf[sizeof v4_tcp_syn];
		struct pkt p;
		check_case("flags 0x%02x", flag_bytes[i]);
		memcpy(buf, v4_tcp_syn, sizeof buf);
		buf[33] = flag_bytes[i];
		CHECK_EQ(parse_copy(buf, sizeof buf, &p), PKT_OK);
		CHECK_EQ(p.tcp_flags, flag_bytes[i]);
		CHECK_EQ((p.tcp_flags & PKT_TCP_SYN) != 0, (flag_bytes[i] & 0x02) != 0);
		CHECK_EQ((p.tcp_flags & PKT_TCP_CWR) != 0, (flag_bytes[i] & 0x80) != 0);
	}
}

/* n destination-options headers of 8 bytes, then an empty UDP datagram. */
static void test_parse_extension_header_limit(void)
{
	for (int n = 0; n <= PKT_MAX_EXT_HEADERS + 2; n++) {
		uint8_t buf[40 + 8 * (PKT_MAX_EXT_HEADERS + 2) + 8];
		size_t len = 40 + 8 * (size_t)n + 8;
		struct pkt p;
		check_case("%d headers", n);
		memset(buf, 0, sizeof buf);
		buf[0] = 0x60;
		wr16(buf + 4, (uint16_t)(len - 40));
		buf[6] = n ? PKT_PROTO_DSTOPTS : PKT_PROTO_UDP;
		for (int h = 0; h < n; h++)
			buf[40 + 8 * h] = h + 1 < n ? PKT_PROTO_DSTOPTS : PKT_PROTO_UDP;
		wr16(buf + len - 4, 8);
		int rc = parse_copy(buf, len, &p);
		if (n <= PKT_MAX_EXT_HEADERS) {
			CHECK_EQ(rc, PKT_OK);
			CHECK_EQ(p.l4_off, 40 + 8 * n);
		} else {
			CHECK_EQ(rc, PKT_ERR_EXT_LIMIT);
		}
	}
}

static void test_checksum_published(void)
{
	uint8_t hdr[sizeof wikipedia_ipv4_header];
	memcpy(hdr, wikipedia_ipv4_header, sizeof hdr);
	CHECK_EQ(pkt_csum(hdr, sizeof hdr), 0);
	wr16(hdr + 10, 0);
	CHECK_EQ(pkt_csum(hdr, sizeof hdr), 0xb861);

	static const uint8_t odd[] = {0x01, 0x02, 0x03};
	CHECK_EQ(pkt_csum(odd, 3), (uint16_t)~(0x0102 + 0x0300));
	CHECK_EQ(pkt_csum(odd, 0), 0xffff);
}

/* RFC 1624 section 4, and the examples of its errata 4782 and 5864. */
static void test_csum_update16(void)
{
	static const struct {
		const char *name;
		uint16_t csum, old_word, new_word, want;
	} cases[] = {
		{"rfc 1624 section 4", 0xdd2f, 0x5555, 0x3285, 0x0000},
		{"errata 5864: unchanged word keeps 0x0000", 0x0000, 0x5555, 0x5555, 0x0000},
		{"errata 5864: two end-around carries", 0x0000, 0x5555, 0x5556, 0xfffe},
		{"0x0000 and 0xffff are the same number", 0x1234, 0x0000, 0xffff, 0x1234},
		{"and back", 0x1234, 0xffff, 0x0000, 0x1234},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		check_case("%s", cases[i].name);
		CHECK_EQ(pkt_csum_update16(cases[i].csum, cases[i].old_word, cases[i].new_word),
			 cases[i].want);
	}
}

static const struct {
	const char *name;
	const uint8_t *bytes;
	size_t len;
} checksummed[] = {
	{PACKET(v4_tcp_syn)},       {PACKET(v4_opts_udp_dns)},  {PACKET(v4_udp_no_csum)},
	{PACKET(v6_tcp_psh_ack)},   {PACKET(v6_hbh_dst_frag_udp)}, {PACKET(v6_rh_ah_tcp)},
	{PACKET(v4_tcp_csum_0000)}, {PACKET(v6_udp_csum_ffff)},
};

/* The reference's checksums are what the full computation gives, and what verification likes. */
static void test_checksum_vectors(void)
{
	for (size_t i = 0; i < sizeof checksummed / sizeof checksummed[0]; i++) {
		uint8_t *buf = copy_of(checksummed[i].bytes, checksummed[i].len);
		struct pkt p;
		check_case("%s", checksummed[i].name);
		if (!parsed_ok(buf, checksummed[i].len, &p)) {
			free(buf);
			continue;
		}
		uint16_t l4_field = rd16(buf + l4_csum_off(&p));
		bool no_udp_csum = p.l4_proto == PKT_PROTO_UDP && l4_field == 0;
		if (p.ip_version == 4)
			CHECK_EQ(pkt_ipv4_header_checksum(buf, &p), rd16(buf + 10));
		else
			CHECK_EQ(pkt_ipv4_header_checksum(buf, &p), 0);
		if (!no_udp_csum)
			CHECK_EQ(pkt_l4_checksum(buf, &p), l4_field);
		CHECK(pkt_checksum_ok(buf, &p));

		buf[p.ip_len - 1] ^= 0x40;
		CHECK_EQ(pkt_checksum_ok(buf, &p), no_udp_csum);
		buf[p.ip_len - 1] ^= 0x40;
		if (p.ip_version == 4) {
			buf[8]--;
			CHECK(!pkt_checksum_ok(buf, &p));
			buf[8]++;
		}
		buf[p.ip_version == 4 ? 19 : 39] ^= 1;
		CHECK_EQ(pkt_checksum_ok(buf, &p), false);
		free(buf);
	}
	struct pkt p;
	check_case("the icmp packet's ipv4 header");
	CHECK_EQ(pkt_parse(v4_icmp_echo, sizeof v4_icmp_echo, &p), PKT_ERR_UNSUPPORTED);
	CHECK_EQ(pkt_ipv4_header_checksum(v4_icmp_echo, &p), rd16(v4_icmp_echo + 10));
	CHECK_EQ(pkt_csum(v4_icmp_echo + 20, 12), 0);
}

static void test_checksum_fill(void)
{
	for (size_t i = 0; i < sizeof checksummed / sizeof checksummed[0]; i++) {
		uint8_t *buf = copy_of(checksummed[i].bytes, checksummed[i].len);
		struct pkt p;
		check_case("%s", checksummed[i].name);
		if (!parsed_ok(buf, checksummed[i].len, &p)) {
			free(buf);
			continue;
		}
		bool no_csum = p.l4_proto == PKT_PROTO_UDP && rd16(buf + l4_csum_off(&p)) == 0;
		if (p.ip_version == 4)
			wr16(buf + 10, 0x1234);
		if (!no_csum)
			wr16(buf + l4_csum_off(&p), 0x5678);
		CHECK(!pkt_checksum_ok(buf, &p));
		CHECK_EQ(pkt_checksum_fill(buf, &p, false), 0);
		CHECK_MEM_EQ(buf, checksummed[i].bytes, checksummed[i].len);
		CHECK(pkt_checksum_ok(buf, &p));
		free(buf);
	}

	uint8_t buf[sizeof v4_udp_no_csum];
	struct pkt p;
	check_case("udp over ipv4 without checksum");
	memcpy(buf, v4_udp_no_csum, sizeof buf);
	CHECK_EQ(pkt_parse(buf, sizeof buf, &p), PKT_OK);
	CHECK_EQ(pkt_checksum_fill(buf, &p, true), 0);
	CHECK(rd16(buf + 26) != 0);
	CHECK_EQ(rd16(buf + 26), pkt_l4_checksum(buf, &p));
	CHECK(pkt_checksum_ok(buf, &p));

	check_case("udp over ipv6 with checksum 0");
	uint8_t buf6[sizeof v6_udp_csum_ffff];
	memcpy(buf6, v6_udp_csum_ffff, sizeof buf6);
	wr16(buf6 + 46, 0);
	CHECK_EQ(pkt_parse(buf6, sizeof buf6, &p), PKT_OK);
	CHECK(!pkt_checksum_ok(buf6, &p));
	CHECK_EQ(pkt_checksum_fill(buf6, &p, false), 0);
	CHECK_MEM_EQ(buf6, v6_udp_csum_ffff, sizeof buf6);
}

/* After any rewrite the checksums must be exactly what a full computation gives. */
static void check_rewritten(const uint8_t *buf, size_t len, const struct pkt *p,
			    const struct pkt *before, bool no_udp_csum)
{
	struct pkt again;
	if (p->ip_version == 4)
		CHECK_EQ(rd16(buf + 10), pkt_ipv4_header_checksum(buf, p));
	uint16_t field = rd16(buf + l4_csum_off(p));
	if (no_udp_csum)
		CHECK_EQ(field, 0);
	else
		CHECK_EQ(field, pkt_l4_checksum(buf, p));
	CHECK(pkt_checksum_ok(buf, p));

	CHECK_EQ(pkt_parse(buf, len, &again), PKT_OK);
	CHECK(addr_equal(&again.src, &p->src));
	CHECK(addr_equal(&again.dst, &p->dst));
	CHECK_EQ(again.sport, p->sport);
	CHECK_EQ(again.dport, p->dport);
	CHECK_EQ(again.ip_len, before->ip_len);
	CHECK_EQ(again.l4_off, before->l4_off);
	CHECK_EQ(again.payload_len, before->payload_len);
	CHECK_EQ(again.tcp_flags, before->tcp_flags);
	CHECK_EQ(again.tcp_seq, before->tcp_seq);
}

/* Each step rewrites the result of the one before; the last restores the original packet. */
enum step_kind { STEP_SET, STEP_SWAP, STEP_CANCEL, STEP_RESTORE };

static const struct {
	const char *name;
	enum step_kind kind;
	const char *src4, *src6; /* NULL: keep */
	const char *dst4, *dst6;
	int sport, dport; /* -1: keep */
	bool same_sum;    /* the one's-complement sums do not change: nor may the checksums */
} steps[] = {
	{"dst to the proxy", STEP_SET, NULL, NULL, "127.0.0.1", "::1", -1, 9080, false},
	{"reflect", STEP_SWAP, NULL, NULL, NULL, NULL, -1, -1, true},
	{"src to another host", STEP_SET, "203.0.113.7", "2001:db8:ffff::7", NULL, NULL, 5353, -1,
	 false},
	{"nothing changes", STEP_SET, NULL, NULL, NULL, NULL, -1, -1, true},
	{"dst port only", STEP_SET, NULL, NULL, NULL, NULL, -1, 1, false},
	{"dst words 0x0000, port 0", STEP_SET, NULL, NULL, "10.1.0.0", "2001:db8::", -1, 0, false},
	{"dst words 0xffff, port 0xffff", STEP_SET, NULL, NULL, "10.1.255.255", "2001:db8:ffff::",
	 -1, 0xffff, true},
	{"src change that cancels out", STEP_CANCEL, NULL, NULL, NULL, NULL, -1, -1, true},
	{"both ends, all new", STEP_SET, "198.18.0.1", "fd00::1", "198.18.0.2", "fd00::2", 1, 2,
	 false},
	{"back to the original", STEP_RESTORE, NULL, NULL, NULL, NULL, -1, -1, false},
};

/* One's-complement sum of an address's 16-bit words, 0xFFFF standing for zero. */
static uint16_t addr_sum(const struct addr *a)
{
	uint32_t s = 0;
	for (size_t i = 0; i < addr_len(a); i += 2)
		s += rd16(a->bytes + i);
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

static void run_step(uint8_t *buf, struct pkt *p, const struct pkt *orig, size_t i)
{
	struct addr src = p->src, dst = p->dst;
	uint16_t sport = p->sport, dport = p->dport;
	bool v4 = p->ip_version == 4;
	int rc;

	switch (steps[i].kind) {
	case STEP_SET:
		if (v4 ? steps[i].src4 : steps[i].src6)
			src = addr_of(v4 ? steps[i].src4 : steps[i].src6);
		if (v4 ? steps[i].dst4 : steps[i].dst6)
			dst = addr_of(v4 ? steps[i].dst4 : steps[i].dst6);
		if (steps[i].sport >= 0)
			sport = (uint16_t)steps[i].sport;
		if (steps[i].dport >= 0)
			dport = (uint16_t)steps[i].dport;
		break;
	case STEP_SWAP:
		rc = pkt_rewrite(buf, p, &p->dst, p->dport, &p->src, p->sport);
		CHECK_EQ(rc, 0);
		CHECK(addr_equal(&p->src, &dst) && addr_equal(&p->dst, &src));
		CHECK(p->sport == dport && p->dport == sport);
		return;
	case STEP_CANCEL: {
		size_t last = addr_len(&src) - 2;
		uint16_t hi = rd16(src.bytes + last - 2), lo = rd16(src.bytes + last);
		CHECK(hi != 0xffff && lo != 0);
		wr16(src.bytes + last - 2, (uint16_t)(hi + 1));
		wr16(src.bytes + last, (uint16_t)(lo - 1));
		CHECK_EQ(addr_sum(&src), addr_sum(&p->src));
		break;
	}
	case STEP_RESTORE:
		src = orig->src;
		dst = orig->dst;
		sport = orig->sport;
		dport = orig->dport;
		break;
	}
	if (i % 2) {
		rc = pkt_set_src(buf, p, &src, sport);
		CHECK_EQ(rc, 0);
		rc = pkt_set_dst(buf, p, &dst, dport);
	} else {
		rc = pkt_rewrite(buf, p, &src, sport, &dst, dport);
	}
	CHECK_EQ(rc, 0);
	CHECK(addr_equal(&p->src, &src) && addr_equal(&p->dst, &dst));
	CHECK(p->sport == sport && p->dport == dport);
}

static void test_rewrite_matches_full_computation(void)
{
	for (size_t i = 0; i < sizeof checksummed / sizeof checksummed[0]; i++) {
		size_t len = checksummed[i].len;
		uint8_t *buf = copy_of(checksummed[i].bytes, len);
		struct pkt p, orig;
		check_case("%s", checksummed[i].name);
		if (!parsed_ok(buf, len, &orig)) {
			free(buf);
			continue;
		}
		p = orig;
		bool no_udp_csum = p.l4_proto == PKT_PROTO_UDP && rd16(buf + l4_csum_off(&p)) == 0;
		for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
			uint16_t ip_before = rd16(buf + 10);
			uint16_t l4_before = rd16(buf + l4_csum_off(&p));
			check_case("%s: %s", checksummed[i].name, steps[s].name);
			run_step(buf, &p, &orig, s);
			check_rewritten(buf, len, &p, &orig, no_udp_csum);
			if (steps[s].same_sum) {
				if (p.ip_version == 4)
					CHECK_EQ(rd16(buf + 10), ip_before);
				CHECK_EQ(rd16(buf + l4_csum_off(&p)), l4_before);
			}
		}
		CHECK_MEM_EQ(buf, checksummed[i].bytes, len);
		free(buf);
	}
}

/* The rewrites whose correct result is the checksum value 0: TCP sends 0x0000, UDP sends 0xFFFF
 * (RFC 768: a computed 0 is transmitted as all ones). The port is found by full computation. */
static void test_rewrite_to_zero_checksum(void)
{
	for (size_t i = 0; i < sizeof checksummed / sizeof checksummed[0]; i++) {
		size_t len = checksummed[i].len;
		uint8_t *scratch = copy_of(checksummed[i].bytes, len);
		uint8_t *buf = copy_of(checksummed[i].bytes, len);
		struct pkt p;
		check_case("%s", checksummed[i].name);
		if (!parsed_ok(scratch, len, &p) ||
		    (p.l4_proto == PKT_PROTO_UDP && rd16(scratch + l4_csum_off(&p)) == 0)) {
			free(scratch);
			free(buf);
			continue;
		}
		bool udp = p.l4_proto == PKT_PROTO_UDP;
		long port = -1;
		for (long d = 0; d <= 0xffff && port < 0; d++) {
			wr16(scratch + p.l4_off + 2, (uint16_t)d);
			if (pkt_l4_checksum(scratch, &p) == (udp ? 0xffff : 0x0000))
				port = d;
		}
		CHECK(port >= 0);
		CHECK(parsed_ok(buf, len, &p));
		CHECK_EQ(pkt_set_dst(buf, &p, &p.dst, (uint16_t)port), 0);
		CHECK_EQ(rd16(buf + l4_csum_off(&p)), udp ? 0xffff : 0x0000);
		CHECK(pkt_checksum_ok(buf, &p));
		CHECK_EQ(pkt_set_dst(buf, &p, &p.dst, (uint16_t)(port + 1)), 0);
		CHECK_EQ(rd16(buf + l4_csum_off(&p)), pkt_l4_checksum(buf, &p));
		free(scratch);
		free(buf);
	}
}

static void test_rewrite_vectors(void)
{
	uint8_t a[sizeof v4_tcp_syn], b[sizeof v6_tcp_psh_ack], c[sizeof v4_opts_udp_dns];
	struct addr lo = addr_of("127.0.0.1"), other = addr_of("203.0.113.7");
	struct pkt p;

	check_case("ipv4 syn to the proxy");
	memcpy(a, v4_tcp_syn, sizeof a);
	CHECK_EQ(pkt_parse(a, sizeof a, &p), PKT_OK);
	CHECK_EQ(pkt_set_dst(a, &p, &lo, 9080), 0);
	CHECK_MEM_EQ(a, rw_v4_tcp_syn_dst_lo9080, sizeof a);

	check_case("ipv6 reflected");
	memcpy(b, v6_tcp_psh_ack, sizeof b);
	CHECK_EQ(pkt_parse(b, sizeof b, &p), PKT_OK);
	CHECK_EQ(pkt_rewrite(b, &p, &p.dst, p.sport, &p.src, 9080), 0);
	CHECK_MEM_EQ(b, rw_v6_tcp_reflect, sizeof b);

	check_case("ipv4 with options, udp source");
	memcpy(c, v4_opts_udp_dns, sizeof c);
	CHECK_EQ(pkt_parse(c, sizeof c, &p), PKT_OK);
	CHECK_EQ(pkt_set_src(c, &p, &other, 5353), 0);
	CHECK_MEM_EQ(c, rw_v4_opts_udp_src, sizeof c);

	/* NFQUEUE with GSO hands over a partial checksum: rewrite, then fill from scratch. */
	check_case("partial checksum, rewritten then filled");
	memcpy(a, v4_tcp_syn, sizeof a);
	wr16(a + 36, 0x1c3d);
	CHECK_EQ(pkt_parse(a, sizeof a, &p), PKT_OK);
	CHECK_EQ(pkt_set_dst(a, &p, &lo, 9080), 0);
	CHECK(!pkt_checksum_ok(a, &p));
	CHECK_EQ(pkt_checksum_fill(a, &p, false), 0);
	CHECK_MEM_EQ(a, rw_v4_tcp_syn_dst_lo9080, sizeof a);
}

static void test_rewrite_refused(void)
{
	static const struct {
		const char *name;
		const uint8_t *bytes;
		size_t len;
	} not_rewritable[] = {
		{PACKET(v4_icmp_echo)},
		{PACKET(v4_frag_first_udp)},
		{PACKET(v4_frag_later_udp)},
		{PACKET(v6_frag_later_tcp)},
	};
	for (size_t i = 0; i < sizeof not_rewritable / sizeof not_rewritable[0]; i++) {
		size_t len = not_rewritable[i].len;
		uint8_t *buf = copy_of(not_rewritable[i].bytes, len);
		struct pkt p;
		check_case("%s", not_rewritable[i].name);
		CHECK(pkt_parse(buf, len, &p) != PKT_OK);
		struct addr a = p.src;
		CHECK_EQ(pkt_set_dst(buf, &p, &a, 9080), -EINVAL);
		CHECK_EQ(pkt_checksum_fill(buf, &p, true), -EINVAL);
		CHECK_EQ(pkt_l4_checksum(buf, &p), 0);
		CHECK(!pkt_checksum_ok(buf, &p));
		CHECK_MEM_EQ(buf, not_rewritable[i].bytes, len);
		free(buf);
	}

	uint8_t buf[sizeof v4_tcp_syn];
	struct pkt p;
	struct addr v6 = addr_of("::1"), none;
	memset(&none, 0, sizeof none);
	memcpy(buf, v4_tcp_syn, sizeof buf);
	CHECK_EQ(pkt_parse(buf, sizeof buf, &p), PKT_OK);
	check_case("ipv6 address into ipv4");
	CHECK_EQ(pkt_set_dst(buf, &p, &v6, 1), -EINVAL);
	check_case("no family");
	CHECK_EQ(pkt_set_src(buf, &p, &none, 1), -EINVAL);
	check_case("NULL");
	CHECK_EQ(pkt_rewrite(buf, &p, NULL, 1, &p.dst, 2), -EINVAL);
	CHECK_EQ(pkt_rewrite(buf, &p, &p.src, 1, NULL, 2), -EINVAL);
	CHECK_MEM_EQ(buf, v4_tcp_syn, sizeof buf);
}

static const struct check_test tests[] = {
	{"result_names", test_result_names},
	{"parse_good", test_parse_good},
	{"parse_ignores_trailing_bytes", test_parse_ignores_trailing_bytes},
	{"parse_every_prefix_is_truncated", test_parse_every_prefix_is_truncated},
	{"parse_malformed", test_parse_malformed},
	{"parse_tcp_flags", test_parse_tcp_flags},
	{"parse_extension_header_limit", test_parse_extension_header_limit},
	{"checksum_published", test_checksum_published},
	{"csum_update16", test_csum_update16},
	{"checksum_vectors", test_checksum_vectors},
	{"checksum_fill", test_checksum_fill},
	{"rewrite_matches_full_computation", test_rewrite_matches_full_computation},
	{"rewrite_to_zero_checksum", test_rewrite_to_zero_checksum},
	{"rewrite_vectors", test_rewrite_vectors},
	{"rewrite_refused", test_rewrite_refused},
};

CHECK_MAIN(tests)

/* The reference that made the packets above (python3 pktref.py > vectors; with a directory
 * argument it also writes tests/fuzz/seeds/fuzz_packet/):
 *
 * import ipaddress, struct, sys
 *
 * def fold(b):
 *     b += b'\0' * (len(b) % 2)
 *     s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
 *     while s >> 16:
 *         s = (s & 0xffff) + (s >> 16)
 *     return s
 *
 * def csum(b):
 *     return ~fold(b) & 0xffff
 *
 * def ip(a):
 *     return ipaddress.ip_address(a).packed
 *
 * def v4(src, dst, proto, data, opts=b'', frag=0x4000):
 *     ihl = 5 + len(opts) // 4
 *     h = struct.pack('!BBHHHBBH4s4s', 0x40 | ihl, 0, 4 * ihl + len(data), 0x1c46, frag, 64,
 *                     proto, 0, ip(src), ip(dst)) + opts
 *     return h[:10] + struct.pack('!H', csum(h)) + h[12:] + data
 *
 * def v6(src, dst, nxt, data):
 *     return struct.pack('!IHBB16s16s', 0x60000000, len(data), nxt, 64, ip(src), ip(dst)) + data
 *
 * def pseudo(src, dst, proto, seg):
 *     if len(ip(src)) == 4:
 *         return ip(src) + ip(dst) + struct.pack('!BBH', 0, proto, len(seg))
 *     return ip(src) + ip(dst) + struct.pack('!IxxxB', len(seg), proto)
 *
 * def tcp(src, dst, sp, dp, seq, ack, flags, opts=b'', data=b''):
 *     seg = struct.pack('!HHIIBBHHH', sp, dp, seq, ack, (5 + len(opts) // 4) << 4, flags, 64240,
 *                       0, 0) + opts + data
 *     return seg[:16] + struct.pack('!H', csum(pseudo(src, dst, 6, seg) + seg)) + seg[18:]
 *
 * def udp(src, dst, sp, dp, data, zero=False):
 *     seg = struct.pack('!HHHH', sp, dp, 8 + len(data), 0) + data
 *     c = 0 if zero else (csum(pseudo(src, dst, 17, seg) + seg) or 0xffff)
 *     return seg[:6] + struct.pack('!H', c) + seg[8:]
 *
 * def solve(src, dst, proto, seg, at):  # the word at seg[at] (zero) that makes the checksum 0
 *     seg[at:at + 2] = struct.pack('!H', (0xffff - fold(pseudo(src, dst, proto, seg) + seg)))
 *     assert csum(pseudo(src, dst, proto, seg) + seg) == 0
 *     return bytes(seg)
 *
 * S4, D4, S6, D6 = '192.0.2.10', '198.51.100.20', '2001:db8::1', '2001:db8:0:1::53'
 * P = {}
 * syn = bytes([2, 4, 5, 0xb4, 4, 2, 8, 10, 0x11, 0x22, 0x33, 0x44, 0, 0, 0, 0, 1, 3, 3, 7])
 * P['v4_tcp_syn'] = v4(S4, D4, 6, tcp(S4, D4, 40000, 443, 0x01020304, 0, 0x02, syn))
 * dns = bytes.fromhex('abcd01000001000000000000') + b'\x07example\x03com\x00\x00\x01\x00\x01'
 * ra = bytes([0x94, 4, 0, 0])
 * P['v4_opts_udp_dns'] = v4(S4, D4, 17, udp(S4, D4, 53000, 53, dns), ra, 0)
 * P['v4_udp_no_csum'] = v4(S4, D4, 17, udp(S4, D4, 4000, 5000, b'ping', zero=True))
 * P['v6_tcp_psh_ack'] = v6(S6, D6, 6, tcp(S6, D6, 50000, 80, 0xa0b0c0d0, 0x01020304, 0x18,
 *                                       data=b'hello'))
 * exts = bytes([60, 0, 1, 4, 0, 0, 0, 0, 44, 0, 1, 4, 0, 0, 0, 0,  # hop-by-hop, dest. options
 *               17, 0, 0, 0, 0x12, 0x34, 0x56, 0x78])  # fragment header, offset 0, M=0
 * P['v6_hbh_dst_frag_udp'] = v6(S6, D6, 0, exts + udp(S6, D6, 5353, 53, b'abc'))
 * rh_ah = bytes([51, 2]) + bytes(22) + bytes([6, 4, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]) + bytes(12)
 * P['v6_rh_ah_tcp'] = v6(S6, D6, 43, rh_ah + tcp(S6, D6, 1234, 443, 7, 0, 0x02))
 * icmp = b'\x08\x00\x00\x00\x12\x34\x00\x01abcd'
 * P['v4_icmp_echo'] = v4(S4, D4, 1, icmp[:2] + struct.pack('!H', csum(icmp)) + icmp[4:])
 * P['v4_frag_first_udp'] = v4(S4, D4, 17, struct.pack('!HHHH', 7000, 53, 1000, 0x1111)
 *                             + bytes(range(16)), frag=0x2000)
 * P['v4_frag_later_udp'] = v4(S4, D4, 17, bytes(range(16)), frag=185)
 * P['v6_frag_later_tcp'] = v6(S6, D6, 44, struct.pack('!BBHI', 6, 0, 1448 | 1, 0x9abcdef0)
 *                             + bytes(range(24)))
 * seg = bytearray(tcp(S4, D4, 1000, 2000, 1, 2, 0x18, data=b'xy\0\0z'))
 * seg[16:18] = b'\0\0'
 * P['v4_tcp_csum_0000'] = v4(S4, D4, 6, solve(S4, D4, 6, seg, 22))
 * seg = bytearray(udp(S6, D6, 3000, 4000, b'\0\0odd', zero=True))
 * P['v6_udp_csum_ffff'] = v6(S6, D6, 17, solve(S6, D6, 17, seg, 8)[:6] + b'\xff\xff' + seg[8:])
 * LO, T = '127.0.0.1', '203.0.113.7'
 * P['rw_v4_tcp_syn_dst_lo9080'] = v4(S4, LO, 6, tcp(S4, LO, 40000, 9080, 0x01020304, 0, 2, syn))
 * P['rw_v6_tcp_reflect'] = v6(D6, S6, 6, tcp(D6, S6, 50000, 9080, 0xa0b0c0d0, 0x01020304, 0x18,
 *                                          data=b'hello'))
 * P['rw_v4_opts_udp_src'] = v4(T, D4, 17, udp(T, D4, 5353, 53, dns), ra, 0)
 *
 * if len(sys.argv) > 1:  # a directory: write the packets as fuzz seeds
 *     for name, b in P.items():
 *         if not name.startswith('rw_'):
 *             open('%s/%s' % (sys.argv[1], name), 'wb').write(b)
 * for name, b in P.items():
 *     print('static const uint8_t %s[] = {' % name)
 *     for i in range(0, len(b), 12):
 *         print('\t' + ' '.join('0x%02x,' % x for x in b[i:i + 12]))
 *     print('};')
 */
