/* packet.c — length-checked IPv4/IPv6/TCP/UDP parsing and checksum-preserving NAT rewrites. */
#include "divert/packet.h"
#include "base/bytes.h"

#include <errno.h>
#include <string.h>

#define IPV4_MIN_HDR 20
#define IPV6_HDR 40
#define TCP_MIN_HDR 20
#define UDP_HDR 8
#define IPV6_EXT_MIN 8

/* ---- parsing ---- */

static const char *const result_names[PKT_RESULT_COUNT] = {
	[0] = "ok",
	[-PKT_ERR_FRAGMENT] = "fragment",
	[-PKT_ERR_UNSUPPORTED] = "unsupported_protocol",
	[-PKT_ERR_TRUNCATED] = "truncated",
	[-PKT_ERR_VERSION] = "bad_version",
	[-PKT_ERR_IP_HEADER_LEN] = "bad_ip_header_length",
	[-PKT_ERR_IP_TOTAL_LEN] = "bad_ip_total_length",
	[-PKT_ERR_JUMBOGRAM] = "jumbogram",
	[-PKT_ERR_EXT_HEADER] = "bad_extension_header",
	[-PKT_ERR_EXT_LIMIT] = "too_many_extension_headers",
	[-PKT_ERR_TCP_HEADER] = "bad_tcp_header",
	[-PKT_ERR_UDP_HEADER] = "bad_udp_header",
};

const char *pkt_result_name(int rc)
{
	if (rc > 0 || rc <= -PKT_RESULT_COUNT)
		return "unknown";
	return result_names[-rc];
}

bool pkt_result_has_ip(int rc)
{
	return rc == PKT_OK || rc == PKT_ERR_FRAGMENT || rc == PKT_ERR_UNSUPPORTED;
}

/* The transport header at buf[off..end), end being the end of the datagram. A fragment's L4
 * header is read on a best-effort basis: only a first fragment has one, its UDP length covers
 * the whole reassembled datagram, and a failed check leaves has_l4 false without failing. */
static int parse_l4(const uint8_t *buf, struct pkt *out, uint8_t proto, uint32_t off, uint32_t end)
{
	uint32_t avail = end - off, hdr_len;
	int bad;

	out->l4_proto = proto;
	out->l4_off = off;
	out->payload_off = off;
	out->payload_len = avail;
	if (out->fragmented && out->frag_offset != 0)
		return PKT_ERR_FRAGMENT;

	if (proto == PKT_PROTO_TCP) {
		bad = PKT_ERR_TCP_HEADER;
		if (avail < TCP_MIN_HDR)
			goto fail;
		hdr_len = (uint32_t)(buf[off + 12] >> 4) * 4;
		if (hdr_len < TCP_MIN_HDR || hdr_len > avail)
			goto fail;
		out->tcp_seq = be32_get(buf + off + 4);
		out->tcp_ack = be32_get(buf + off + 8);
		out->tcp_flags = buf[off + 13];
	} else if (proto == PKT_PROTO_UDP) {
		bad = PKT_ERR_UDP_HEADER;
		if (avail < UDP_HDR)
			goto fail;
		hdr_len = UDP_HDR;
		uint16_t udp_len = be16_get(buf + off + 4);
		if (out->fragmented ? udp_len < avail : udp_len != avail)
			goto fail;
	} else {
		return out->fragmented ? PKT_ERR_FRAGMENT : PKT_ERR_UNSUPPORTED;
	}
	out->has_l4 = true;
	out->l4_hdr_len = hdr_len;
	out->sport = be16_get(buf + off);
	out->dport = be16_get(buf + off + 2);
	out->payload_off = off + hdr_len;
	out->payload_len = avail - hdr_len;
	return out->fragmented ? PKT_ERR_FRAGMENT : PKT_OK;
fail:
	return out->fragmented ? PKT_ERR_FRAGMENT : bad;
}

static int parse_ipv4(const uint8_t *buf, size_t len, struct pkt *out)
{
	if (len < IPV4_MIN_HDR)
		return PKT_ERR_TRUNCATED;
	uint32_t hdr_len = (uint32_t)(buf[0] & 0x0f) * 4;
	uint32_t total = be16_get(buf + 2);
	if (hdr_len < IPV4_MIN_HDR)
		return PKT_ERR_IP_HEADER_LEN;
	if (total < IPV4_MIN_HDR)
		return PKT_ERR_IP_TOTAL_LEN;
	if (total > len)
		return PKT_ERR_TRUNCATED;
	if (hdr_len > total)
		return PKT_ERR_IP_HEADER_LEN;

	uint16_t frag = be16_get(buf + 6);
	out->ip_version = 4;
	out->ip_hdr_len = hdr_len;
	out->ip_len = total;
	out->more_fragments = (frag & 0x2000) != 0;
	out->frag_offset = (uint16_t)((frag & 0x1fff) * 8);
	out->fragmented = out->more_fragments || out->frag_offset != 0;
	addr_from_bytes(&out->src, ADDR_V4, buf + 12);
	addr_from_bytes(&out->dst, ADDR_V4, buf + 16);
	return parse_l4(buf, out, buf[9], hdr_len, total);
}

static bool is_ipv6_ext(uint8_t next)
{
	return next == PKT_PROTO_HOPOPTS || next == PKT_PROTO_ROUTING ||
	       next == PKT_PROTO_FRAGMENT || next == PKT_PROTO_AH || next == PKT_PROTO_DSTOPTS;
}

/* Walks the extension headers. ESP and "no next header" end the walk like any transport
 * protocol other than TCP/UDP would (PKT_ERR_UNSUPPORTED). Headers after a first fragment's
 * fragment header must be present in it (RFC 7112), so they are checked like any other. */
static int parse_ipv6(const uint8_t *buf, size_t len, struct pkt *out)
{
	if (len < IPV6_HDR)
		return PKT_ERR_TRUNCATED;
	uint32_t payload = be16_get(buf + 4);
	uint8_t next = buf[6];
	if (payload == 0 && next == PKT_PROTO_HOPOPTS)
		return PKT_ERR_JUMBOGRAM;
	uint32_t end = IPV6_HDR + payload;
	if (end > len)
		return PKT_ERR_TRUNCATED;

	out->ip_version = 6;
	out->ip_hdr_len = IPV6_HDR;
	out->ip_len = end;
	addr_from_bytes(&out->src, ADDR_V6, buf + 8);
	addr_from_bytes(&out->dst, ADDR_V6, buf + 24);

	uint32_t off = IPV6_HDR;
	for (int count = 0; is_ipv6_ext(next); count++) {
		uint32_t ext_len;
		if (count == PKT_MAX_EXT_HEADERS)
			return PKT_ERR_EXT_LIMIT;
		if (next == PKT_PROTO_HOPOPTS && count != 0)
			return PKT_ERR_EXT_HEADER;
		if (end - off < IPV6_EXT_MIN)
			return PKT_ERR_EXT_HEADER;
		if (next == PKT_PROTO_FRAGMENT) {
			uint16_t frag = be16_get(buf + off + 2);
			ext_len = 8;
			if ((frag & 0xfff9) != 0) {
				out->fragmented = true;
				out->more_fragments = (frag & 1) != 0;
				out->frag_offset = frag & 0xfff8;
			}
		} else if (next == PKT_PROTO_AH) {
			ext_len = ((uint32_t)buf[off + 1] + 2) * 4;
		} else {
			ext_len = ((uint32_t)buf[off + 1] + 1) * 8;
		}
		if (ext_len > end - off)
			return PKT_ERR_EXT_HEADER;
		next = buf[off];
		off += ext_len;
		if (out->fragmented && out->frag_offset != 0)
			break;
	}
	return parse_l4(buf, out, next, off, end);
}

int pkt_parse(const uint8_t *buf, size_t len, struct pkt *out)
{
	memset(out, 0, sizeof *out);
	if (len < 1)
		return PKT_ERR_TRUNCATED;
	switch (buf[0] >> 4) {
	case 4:
		return parse_ipv4(buf, len, out);
	case 6:
		return parse_ipv6(buf, len, out);
	default:
		return PKT_ERR_VERSION;
	}
}

/* ---- checksums ---- */

static bool little_endian(void)
{
	const uint16_t one = 1;
	uint8_t first;
	memcpy(&first, &one, 1);
	return first == 1;
}

/* Adds data's big-endian 16-bit words to acc (an odd last byte is the high half of a word); only
 * the last piece of a checksummed range may have an odd length. The bulk is summed as native
 * 32-bit halves of 8-byte loads: modulo 0xFFFF that is the same sum (2^16 = 1 there), and a sum
 * of byte-swapped words is the byte-swapped sum (RFC 1071 section 2). */
static uint64_t sum_words(const uint8_t *data, size_t len, uint64_t acc)
{
	uint64_t native = 0;
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, data, 8);
		native += (w & 0xffffffff) + (w >> 32);
		data += 8;
		len -= 8;
	}
	while (native >> 16)
		native = (native & 0xffff) + (native >> 16);
	if (little_endian())
		native = (native >> 8 | native << 8) & 0xffff;
	acc += native;
	if (len >= 4) {
		acc += be32_get(data);
		data += 4;
		len -= 4;
	}
	if (len >= 2) {
		acc += be16_get(data);
		data += 2;
		len -= 2;
	}
	if (len)
		acc += (uint32_t)data[0] << 8;
	return acc;
}

/* Folds with end-around carry into 1..0xFFFF (0 only for acc == 0). */
static uint16_t fold(uint64_t acc)
{
	while (acc >> 16)
		acc = (acc & 0xffff) + (acc >> 16);
	return (uint16_t)acc;
}

static uint16_t csum_apply(uint16_t csum, uint64_t delta)
{
	return (uint16_t)~fold((uint16_t)~csum + delta);
}

/* Sum of ~old + new over the 16-bit words of an even-length field. */
static uint32_t field_delta(const uint8_t *old, const uint8_t *new_bytes, size_t len)
{
	uint32_t delta = 0;
	for (size_t i = 0; i < len; i += 2)
		delta += (uint16_t)~be16_get(old + i) + (uint32_t)be16_get(new_bytes + i);
	return delta;
}

uint16_t pkt_csum_update16(uint16_t csum, uint16_t old_word, uint16_t new_word)
{
	return csum_apply(csum, (uint32_t)(uint16_t)~old_word + new_word);
}

uint16_t pkt_csum(const uint8_t *data, size_t len)
{
	return (uint16_t)~fold(sum_words(data, len, 0));
}

static bool is_whole_tcp_udp(const struct pkt *p)
{
	return p->has_l4 && !p->fragmented &&
	       (p->l4_proto == PKT_PROTO_TCP || p->l4_proto == PKT_PROTO_UDP) &&
	       (p->ip_version == 4 || p->ip_version == 6);
}

static uint32_t l4_csum_off(const struct pkt *p)
{
	return p->l4_off + (p->l4_proto == PKT_PROTO_TCP ? 16 : 6);
}

/* Pseudo-header and segment, the checksum field excluded. */
static uint64_t l4_sum(const uint8_t *buf, const struct pkt *p)
{
	uint32_t seg_len = p->ip_len - p->l4_off, csum_off = l4_csum_off(p);
	uint64_t acc;

	if (p->ip_version == 4)
		acc = sum_words(buf + 12, 8, 0);
	else
		acc = sum_words(buf + 8, 32, 0);
	acc += p->l4_proto + (seg_len >> 16) + (seg_len & 0xffff);
	acc = sum_words(buf + p->l4_off, csum_off - p->l4_off, acc);
	return sum_words(buf + csum_off + 2, p->ip_len - csum_off - 2, acc);
}

static uint64_t ipv4_header_sum(const uint8_t *buf, const struct pkt *p)
{
	return sum_words(buf + 12, p->ip_hdr_len - 12, sum_words(buf, 10, 0));
}

uint16_t pkt_ipv4_header_checksum(const uint8_t *buf, const struct pkt *p)
{
	if (p->ip_version != 4 || p->ip_hdr_len < IPV4_MIN_HDR)
		return 0;
	return (uint16_t)~fold(ipv4_header_sum(buf, p));
}

uint16_t pkt_l4_checksum(const uint8_t *buf, const struct pkt *p)
{
	if (!is_whole_tcp_udp(p))
		return 0;
	uint16_t csum = (uint16_t)~fold(l4_sum(buf, p));
	if (csum == 0 && p->l4_proto == PKT_PROTO_UDP)
		csum = 0xffff;
	return csum;
}

int pkt_checksum_fill(uint8_t *buf, const struct pkt *p, bool fill_udp_zero)
{
	if (!is_whole_tcp_udp(p))
		return -EINVAL;
	if (p->ip_version == 4)
		be16_put(buf + 10, pkt_ipv4_header_checksum(buf, p));
	uint32_t off = l4_csum_off(p);
	if (p->l4_proto == PKT_PROTO_UDP && p->ip_version == 4 && be16_get(buf + off) == 0 &&
	    !fill_udp_zero)
		return 0;
	be16_put(buf + off, pkt_l4_checksum(buf, p));
	return 0;
}

/* A receiver's check: the sum including the checksum field is either zero (0xFFFF). */
bool pkt_checksum_ok(const uint8_t *buf, const struct pkt *p)
{
	if (!is_whole_tcp_udp(p))
		return false;
	if (p->ip_version == 4 && fold(ipv4_header_sum(buf, p) + be16_get(buf + 10)) != 0xffff)
		return false;
	uint16_t field = be16_get(buf + l4_csum_off(p));
	if (p->l4_proto == PKT_PROTO_UDP && field == 0)
		return p->ip_version == 4;
	return fold(l4_sum(buf, p) + field) == 0xffff;
}

/* ---- rewriting ---- */

int pkt_rewrite(uint8_t *buf, struct pkt *p, const struct addr *src, uint16_t sport,
		const struct addr *dst, uint16_t dport)
{
	if (!is_whole_tcp_udp(p) || !src || !dst || src->family != p->ip_version ||
	    dst->family != p->ip_version)
		return -EINVAL;

	struct addr new_src = *src, new_dst = *dst;
	size_t alen = p->ip_version == 4 ? 4 : 16;
	uint8_t *src_at = buf + (p->ip_version == 4 ? 12 : 8), *dst_at = src_at + alen;
	uint8_t *ports = buf + p->l4_off, *csum_at = buf + l4_csum_off(p);
	uint8_t new_ports[4] = {
		(uint8_t)(sport >> 8), (uint8_t)sport, (uint8_t)(dport >> 8), (uint8_t)dport,
	};

	uint32_t addr_delta = field_delta(src_at, new_src.bytes, alen) +
			      field_delta(dst_at, new_dst.bytes, alen);
	if (p->ip_version == 4)
		be16_put(buf + 10, csum_apply(be16_get(buf + 10), addr_delta));

	uint16_t csum = be16_get(csum_at);
	bool udp = p->l4_proto == PKT_PROTO_UDP;
	if (!(udp && csum == 0)) {
		csum = csum_apply(csum, (uint64_t)addr_delta + field_delta(ports, new_ports, 4));
		if (udp && csum == 0)
			csum = 0xffff;
		be16_put(csum_at, csum);
	}

	memcpy(src_at, new_src.bytes, alen);
	memcpy(dst_at, new_dst.bytes, alen);
	memcpy(ports, new_ports, 4);
	addr_from_bytes(&p->src, (enum addr_family)p->ip_version, new_src.bytes);
	addr_from_bytes(&p->dst, (enum addr_family)p->ip_version, new_dst.bytes);
	p->sport = sport;
	p->dport = dport;
	return 0;
}

int pkt_set_src(uint8_t *buf, struct pkt *p, const struct addr *addr, uint16_t port)
{
	return pkt_rewrite(buf, p, addr, port, &p->dst, p->dport);
}

int pkt_set_dst(uint8_t *buf, struct pkt *p, const struct addr *addr, uint16_t port)
{
	return pkt_rewrite(buf, p, &p->src, p->sport, addr, port);
}
