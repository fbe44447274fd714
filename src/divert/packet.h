/* packet.h — reading and rewriting raw IP packets (no link-layer header) for the divert engine.
 *
 * The engine gets each packet as bytes from NFQUEUE or WinDivert. pkt_parse() checks it and fills
 * a `struct pkt`, a view of offsets and decoded fields into the caller's buffer; the buffer is
 * never modified by parsing and never read beyond `len`. pkt_rewrite() then changes the source
 * and/or destination address and port in place, patching the IPv4 header checksum and the TCP/UDP
 * checksum incrementally (RFC 1624), so that a NAT rewrite costs the same for 40 or 64 KB.
 *
 * What pkt_parse returns, and what the engine should make of it:
 *
 *   PKT_OK                 a whole (unfragmented) TCP or UDP packet: every field of the view is
 *                          valid and the packet can be rewritten.
 *   PKT_ERR_FRAGMENT       a well-formed IP fragment (IPv4 MF set or offset != 0; IPv6 fragment
 *                          header with M set or offset != 0; an IPv6 "atomic fragment" with both
 *                          clear is not a fragment). The IP part of the view is valid and
 *                          `fragmented` is true. A first fragment (offset 0) also carries the
 *                          ports and TCP flags when its L4 header fits (has_l4); a later fragment
 *                          has no L4 header at all. Fragments cannot be NAT-rewritten (later
 *                          fragments carry no ports to look the flow up), so the engine passes or
 *                          drops them by policy; locally generated traffic is fragmented after
 *                          NFQUEUE's OUTPUT hook, so they are rare there.
 *   PKT_ERR_UNSUPPORTED    a well-formed IP packet whose transport is not TCP or UDP (ICMP,
 *                          ICMPv6, ESP, "no next header", SCTP, IPv4 AH, ...). The IP part of the
 *                          view is valid, l4_proto names the protocol and l4_off points at it.
 *                          Not an error of the packet: the engine passes it unchanged.
 *   any other PKT_ERR_*    a malformed packet; the view is unspecified. The engine counts it and
 *                          applies its fail mode (drop when closed, pass when open):
 *     PKT_ERR_TRUNCATED        the buffer ends before the IP header, or before the length the IP
 *                              header declares: the capture cut the packet (e.g. the NFQUEUE copy
 *                              range). Never rewrite and return such a buffer, it would shorten
 *                              the real packet.
 *     PKT_ERR_VERSION          the version nibble is neither 4 nor 6.
 *     PKT_ERR_IP_HEADER_LEN    IPv4 IHL < 5, or the header with its options is longer than the
 *                              total length.
 *     PKT_ERR_IP_TOTAL_LEN     IPv4 total length < 20.
 *     PKT_ERR_JUMBOGRAM        IPv6 payload length 0 with a hop-by-hop header (RFC 2675): not
 *                              supported.
 *     PKT_ERR_EXT_HEADER       an IPv6 extension header runs past the payload, or hop-by-hop is
 *                              not the first header.
 *     PKT_ERR_EXT_LIMIT        more than PKT_MAX_EXT_HEADERS IPv6 extension headers.
 *     PKT_ERR_TCP_HEADER       fewer than 20 bytes of TCP, data offset < 5, or the TCP header
 *                              (with options) runs past the IP payload.
 *     PKT_ERR_UDP_HEADER       fewer than 8 bytes of UDP, or the UDP length field differs from
 *                              the IP payload length.
 *
 * Trailing bytes after the IP datagram (e.g. Ethernet padding) are ignored: ip_len says where the
 * datagram ends. The codes are consecutive from 0 down to -(PKT_RESULT_COUNT - 1), so a counter
 * array `uint64_t counts[PKT_RESULT_COUNT]` is indexed by -rc; pkt_result_name() names each one.
 *
 * Checksums are never checked by pkt_parse (captured packets often carry offloaded or partial
 * checksums); pkt_checksum_ok() and pkt_checksum_fill() do that on request.
 */
#ifndef SLUICE_DIVERT_PACKET_H
#define SLUICE_DIVERT_PACKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/addr.h"

enum pkt_result {
	PKT_OK = 0,
	PKT_ERR_FRAGMENT = -1,
	PKT_ERR_UNSUPPORTED = -2,
	PKT_ERR_TRUNCATED = -3,
	PKT_ERR_VERSION = -4,
	PKT_ERR_IP_HEADER_LEN = -5,
	PKT_ERR_IP_TOTAL_LEN = -6,
	PKT_ERR_JUMBOGRAM = -7,
	PKT_ERR_EXT_HEADER = -8,
	PKT_ERR_EXT_LIMIT = -9,
	PKT_ERR_TCP_HEADER = -10,
	PKT_ERR_UDP_HEADER = -11,
};
#define PKT_RESULT_COUNT 12

/* IPv6 extension headers walked before giving up with PKT_ERR_EXT_LIMIT. A real packet has at
 * most six (hop-by-hop, destination options, routing, fragment, AH, destination options). */
#define PKT_MAX_EXT_HEADERS 8

/* IP protocol numbers that the view names. */
enum {
	PKT_PROTO_HOPOPTS = 0,
	PKT_PROTO_ICMP = 1,
	PKT_PROTO_TCP = 6,
	PKT_PROTO_UDP = 17,
	PKT_PROTO_ROUTING = 43,
	PKT_PROTO_FRAGMENT = 44,
	PKT_PROTO_ESP = 50,
	PKT_PROTO_AH = 51,
	PKT_PROTO_ICMPV6 = 58,
	PKT_PROTO_NONE = 59,
	PKT_PROTO_DSTOPTS = 60,
};

/* TCP flag bits as in byte 13 of the TCP header. */
enum {
	PKT_TCP_FIN = 0x01,
	PKT_TCP_SYN = 0x02,
	PKT_TCP_RST = 0x04,
	PKT_TCP_PSH = 0x08,
	PKT_TCP_ACK = 0x10,
	PKT_TCP_URG = 0x20,
	PKT_TCP_ECE = 0x40,
	PKT_TCP_CWR = 0x80,
};

/* The view of one packet. Offsets are from the start of the buffer; numbers are in host order.
 *
 *   0        ip_hdr_len        l4_off           payload_off                 ip_len      len
 *   | IP hdr | IPv6 ext headers | TCP/UDP header | payload                    | ignored   |
 *
 * For IPv4 l4_off == ip_hdr_len (20..60, options included); for IPv6 ip_hdr_len is 40 and the
 * extension headers lie between. When has_l4 is false the L4 fields (ports, flags, seq/ack,
 * l4_hdr_len) are 0 and payload_off == l4_off. */
struct pkt {
	uint8_t ip_version;   /* 4 or 6 (equal to the enum addr_family value) */
	uint8_t l4_proto;     /* transport protocol after any extension headers (PKT_PROTO_*) */
	uint8_t tcp_flags;    /* PKT_TCP_* bits, TCP only */
	bool has_l4;          /* a TCP or UDP header was found and checked */
	bool fragmented;      /* see PKT_ERR_FRAGMENT */
	bool more_fragments;  /* the MF / M flag */
	uint16_t frag_offset; /* in bytes */
	uint32_t ip_hdr_len;  /* fixed IP header, with IPv4 options */
	uint32_t ip_len;      /* the datagram: IPv4 total length, IPv6 40 + payload length */
	uint32_t l4_off;      /* transport header */
	uint32_t l4_hdr_len;  /* TCP data offset * 4, or 8 for UDP */
	uint32_t payload_off; /* transport payload */
	uint32_t payload_len;
	struct addr src, dst;
	uint16_t sport, dport;
	uint32_t tcp_seq, tcp_ack;
};

/* Parses the IP packet in buf[0..len) into *out without reading beyond len or writing to buf.
 * Returns PKT_OK or a negative enum pkt_result (see the top of this file for what each means and
 * which parts of *out are then valid). buf is borrowed; *out points into it by offsets only. */
int pkt_parse(const uint8_t *buf, size_t len, struct pkt *out);

/* The short name of a pkt_parse result ("ok", "truncated", "bad_version", ...), for counters and
 * logs; "unknown" for a value that is not an enum pkt_result. Never NULL. */
const char *pkt_result_name(int rc);

/* Whether the IP part of the view (version, addresses, l4_proto, lengths, fragment fields) is
 * valid after pkt_parse returned rc: true for PKT_OK, PKT_ERR_FRAGMENT and PKT_ERR_UNSUPPORTED. */
bool pkt_result_has_ip(int rc);

/* Sets the source and destination addresses and ports of a packet whose view came from
 * pkt_parse(buf, ...) returning PKT_OK, and updates *p to match. The IPv4 header checksum and the
 * TCP/UDP checksum are patched incrementally, which is exact when they were correct before; a
 * UDP checksum of 0 ("none") stays 0, and a UDP checksum that becomes 0 is written as 0xFFFF.
 * The addresses and ports are read before anything is written, so they may point into *p (to
 * swap source and destination). Returns 0, or -EINVAL when p is not a whole TCP/UDP packet or an
 * address's family differs from the packet's (nothing is changed then). */
int pkt_rewrite(uint8_t *buf, struct pkt *p, const struct addr *src, uint16_t sport,
		const struct addr *dst, uint16_t dport);

/* pkt_rewrite changing only the source, or only the destination. Same returns. */
int pkt_set_src(uint8_t *buf, struct pkt *p, const struct addr *addr, uint16_t port);
int pkt_set_dst(uint8_t *buf, struct pkt *p, const struct addr *addr, uint16_t port);

/* RFC 1624 eqn. 3: the checksum field value after a 16-bit word covered by `csum` changes from
 * old_word to new_word; all in host order. For callers patching fields pkt_rewrite does not know
 * (ICMP identifiers, ...). */
uint16_t pkt_csum_update16(uint16_t csum, uint16_t old_word, uint16_t new_word);

/* The Internet checksum (RFC 1071) of data[0..len): the complement of the one's-complement sum
 * of its big-endian 16-bit words, an odd last byte padded with zero. Host order. */
uint16_t pkt_csum(const uint8_t *data, size_t len);

/* The IPv4 header checksum that buf's header should carry (its current checksum field is
 * skipped). 0 when p is not IPv4. */
uint16_t pkt_ipv4_header_checksum(const uint8_t *buf, const struct pkt *p);

/* The TCP or UDP checksum that buf should carry, computed over the pseudo-header (RFC 793 /
 * RFC 768 for IPv4, RFC 8200 section 8.1 for IPv6) and the whole segment, with the current
 * checksum field skipped; a UDP result of 0 is returned as 0xFFFF. Needs a PKT_OK view (the whole
 * segment); returns 0 otherwise. */
uint16_t pkt_l4_checksum(const uint8_t *buf, const struct pkt *p);

/* Computes and stores the IPv4 header checksum and the TCP/UDP checksum from scratch, e.g. for
 * packets captured with offloaded or partial checksums (NFQUEUE with GSO). A UDP-over-IPv4
 * checksum of 0 is left 0 unless fill_udp_zero is true. Returns 0, or -EINVAL when p is not a
 * PKT_OK view. */
int pkt_checksum_fill(uint8_t *buf, const struct pkt *p, bool fill_udp_zero);

/* Whether the checksums in buf are correct: the IPv4 header checksum (IPv4 only) and the TCP/UDP
 * checksum. A UDP checksum of 0 is correct over IPv4 (no checksum) and wrong over IPv6. False when
 * p is not a PKT_OK view. */
bool pkt_checksum_ok(const uint8_t *buf, const struct pkt *p);

#endif
