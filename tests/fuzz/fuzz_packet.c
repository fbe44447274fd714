/* fuzz_packet.c — the packet parser stays inside its buffer; NAT rewrites keep checksums exact. */
#include "divert/packet.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* An independent one's-complement sum, folded, with 0xFFFF and 0 (the two zeros) made equal. */
static uint16_t sum_mod(const uint8_t *d, size_t n, uint32_t acc)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		acc += rd16(d + i);
	if (n % 2)
		acc += (uint32_t)d[n - 1] << 8;
	while (acc >> 16)
		acc = (acc & 0xffff) + (acc >> 16);
	return acc == 0xffff ? 0 : (uint16_t)acc;
}

/* What a receiver sums over a TCP/UDP segment: pseudo-header, segment, checksum field included. */
static uint16_t l4_receiver_sum(const uint8_t *buf, const struct pkt *p)
{
	uint32_t seg = p->ip_len - p->l4_off;
	size_t alen = p->ip_version == 4 ? 4 : 16;
	uint32_t acc = sum_mod(buf + (p->ip_version == 4 ? 12 : 8), 2 * alen, 0);
	acc += p->l4_proto + (seg >> 16) + (seg & 0xffff);
	return sum_mod(buf + p->l4_off, seg, acc);
}

static uint32_t csum_off(const struct pkt *p)
{
	return p->l4_off + (p->l4_proto == PKT_PROTO_TCP ? 16 : 6);
}

static void check_view(const uint8_t *buf, size_t len, int rc, const struct pkt *p)
{
	if (rc > 0 || rc <= -PKT_RESULT_COUNT || !strcmp(pkt_result_name(rc), "unknown"))
		abort();
	if (!pkt_result_has_ip(rc))
		return;
	size_t alen = p->ip_version == 4 ? 4 : 16;
	if ((p->ip_version != 4 && p->ip_version != 6) || p->src.family != p->ip_version ||
	    p->dst.family != p->ip_version)
		abort();
	if (p->ip_len > len || p->ip_hdr_len > p->l4_off || p->l4_off > p->ip_len ||
	    p->payload_off > p->ip_len || p->payload_off != p->l4_off + p->l4_hdr_len ||
	    p->payload_off + p->payload_len != p->ip_len)
		abort();
	if (memcmp(p->src.bytes, buf + (alen == 4 ? 12 : 8), alen) != 0 ||
	    memcmp(p->dst.bytes, buf + (alen == 4 ? 16 : 24), alen) != 0)
		abort();
	if ((rc == PKT_ERR_FRAGMENT) != p->fragmented)
		abort();
	if (rc == PKT_OK && (!p->has_l4 || (p->l4_proto != PKT_PROTO_TCP &&
					     p->l4_proto != PKT_PROTO_UDP)))
		abort();
	if (p->has_l4 &&
	    (p->sport != rd16(buf + p->l4_off) || p->dport != rd16(buf + p->l4_off + 2)))
		abort();
	if (p->has_l4 && p->l4_proto == PKT_PROTO_TCP &&
	    (p->l4_hdr_len < 20 || p->l4_hdr_len != (uint32_t)(buf[p->l4_off + 12] >> 4) * 4 ||
	     p->tcp_flags != buf[p->l4_off + 13]))
		abort();
	if (rc == PKT_OK && p->l4_proto == PKT_PROTO_UDP &&
	    (p->l4_hdr_len != 8 || rd16(buf + p->l4_off + 4) != p->ip_len - p->l4_off))
		abort();
}

/* New endpoints: from the bytes after the datagram when there are enough (so the fuzzer can
 * choose them), else from a hash of the input. */
static void derive(const uint8_t *data, size_t size, const struct pkt *p, uint32_t salt,
		   struct addr *src, uint16_t *sport, struct addr *dst, uint16_t *dport)
{
	uint8_t bytes[36];
	size_t alen = p->ip_version == 4 ? 4 : 16;
	if (size - p->ip_len >= sizeof bytes && salt == 0) {
		memcpy(bytes, data + p->ip_len, sizeof bytes);
	} else {
		uint32_t h = 2166136261u ^ salt;
		for (size_t i = 0; i < size; i++)
			h = (h ^ data[i]) * 16777619u;
		for (size_t i = 0; i < sizeof bytes; i++) {
			h = (h ^ (uint32_t)i) * 16777619u;
			bytes[i] = (uint8_t)(h >> 24);
		}
	}
	addr_from_bytes(src, (enum addr_family)p->ip_version, bytes);
	addr_from_bytes(dst, (enum addr_family)p->ip_version, bytes + alen);
	*sport = rd16(bytes + 32);
	*dport = rd16(bytes + 34);
}

static void check_rewrite(uint8_t *buf, size_t len, struct pkt *p, const struct addr *src,
			  uint16_t sport, const struct addr *dst, uint16_t dport)
{
	struct pkt before = *p, again;
	if (pkt_rewrite(buf, p, src, sport, dst, dport) != 0)
		abort();
	if (!addr_equal(&p->src, src) || !addr_equal(&p->dst, dst) || p->sport != sport ||
	    p->dport != dport)
		abort();
	if (pkt_parse(buf, len, &again) != PKT_OK || !addr_equal(&again.src, src) ||
	    !addr_equal(&again.dst, dst) || again.sport != sport || again.dport != dport ||
	    again.ip_len != before.ip_len || again.l4_off != before.l4_off ||
	    again.payload_len != before.payload_len || again.tcp_flags != before.tcp_flags)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *buf = malloc(size ? size : 1); /* exact size: ASan sees any overread */
	struct pkt p;
	if (!buf)
		return 0;
	memcpy(buf, data, size);

	int rc = pkt_parse(buf, size, &p);
	check_view(buf, size, rc, &p);
	if (memcmp(buf, data, size) != 0)
		abort();
	if (rc != PKT_OK) {
		if (pkt_result_has_ip(rc) &&
		    (pkt_set_dst(buf, &p, &p.dst, 1) != -EINVAL || memcmp(buf, data, size) != 0))
			abort();
		goto out;
	}

	struct addr src, dst, wrong;
	uint16_t sport, dport;
	addr_from_bytes(&wrong, p.ip_version == 4 ? ADDR_V6 : ADDR_V4, data);
	if (pkt_set_src(buf, &p, &wrong, 1) != -EINVAL || memcmp(buf, data, size) != 0)
		abort();

	/* Whatever the checksums were, an incremental update keeps the receiver's sums. */
	uint16_t ip_sum = p.ip_version == 4 ? sum_mod(buf, p.ip_hdr_len, 0) : 0;
	uint16_t l4_sum = l4_receiver_sum(buf, &p);
	bool no_udp_csum = p.l4_proto == PKT_PROTO_UDP && rd16(buf + csum_off(&p)) == 0;
	derive(data, size, &p, 0, &src, &sport, &dst, &dport);
	check_rewrite(buf, size, &p, &src, sport, &dst, dport);
	if (p.ip_version == 4 && sum_mod(buf, p.ip_hdr_len, 0) != ip_sum)
		abort();
	if (no_udp_csum ? rd16(buf + csum_off(&p)) != 0 : l4_receiver_sum(buf, &p) != l4_sum)
		abort();
	if (p.l4_proto == PKT_PROTO_UDP && !no_udp_csum && rd16(buf + csum_off(&p)) == 0)
		abort();

	/* From correct checksums, an incremental update equals a full computation. */
	if (pkt_checksum_fill(buf, &p, true) != 0 || !pkt_checksum_ok(buf, &p))
		abort();
	derive(data, size, &p, 1, &src, &sport, &dst, &dport);
	check_rewrite(buf, size, &p, &src, sport, &dst, dport);
	if (p.ip_version == 4 && rd16(buf + 10) != pkt_ipv4_header_checksum(buf, &p))
		abort();
	if (rd16(buf + csum_off(&p)) != pkt_l4_checksum(buf, &p) || !pkt_checksum_ok(buf, &p))
		abort();
	struct addr old_src = p.src, old_dst = p.dst;
	check_rewrite(buf, size, &p, &old_dst, p.dport, &old_src, p.sport);
	if (rd16(buf + csum_off(&p)) != pkt_l4_checksum(buf, &p) || !pkt_checksum_ok(buf, &p))
		abort();
out:
	free(buf);
	return 0;
}
