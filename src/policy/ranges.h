/* ranges.h — which addresses never belong to a public server: the address guard's classes.
 *
 * The rebinding and SSRF guard (docs/policy.md, "Addresses that need an explicit rule") keeps
 * DNS answers and connections out of these ranges unless a `cidr` rule allows them by name.
 * This file only says which range an address is in; policy_guard_address() (policy.h) adds the
 * policy's say. IPv6 forms that carry an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64
 * 64:ff9b::/96) are classified by that IPv4 address, so ::ffff:127.0.0.1 is loopback.
 *
 *	class        IPv4                                         IPv6
 *	loopback     127.0.0.0/8                                  ::1
 *	unspecified  0.0.0.0/8                                    ::
 *	metadata     169.254.169.254, 168.63.129.16 (Azure),       fd00:ec2::254 (AWS)
 *	             100.100.100.200 (Alibaba), 192.0.0.192 (Oracle)
 *	private      10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16    fc00::/7, fec0::/10,
 *	                                                          64:ff9b:1::/48
 *	link-local   169.254.0.0/16                               fe80::/10
 *	cgnat        100.64.0.0/10
 *	multicast    224.0.0.0/4                                  ff00::/8
 *	broadcast    255.255.255.255
 *	reserved     240.0.0.0/4
 *
 * Metadata addresses are looked for first, so 169.254.169.254 is "metadata", not "link-local".
 * 64:ff9b:1::/48 is the local-use NAT64 prefix (RFC 8215): where the IPv4 address sits in it
 * depends on the network, so the whole prefix counts as private.
 */
#ifndef SLUICE_POLICY_RANGES_H
#define SLUICE_POLICY_RANGES_H

#include "base/addr.h"

enum range_class {
	RANGE_PUBLIC = 0, /* none of the guarded ranges (ADDR_NONE too) */
	RANGE_LOOPBACK,
	RANGE_UNSPECIFIED,
	RANGE_METADATA,
	RANGE_PRIVATE,
	RANGE_LINK_LOCAL,
	RANGE_CGNAT,
	RANGE_MULTICAST,
	RANGE_BROADCAST,
	RANGE_RESERVED,
};

/* The guarded range a is in, or RANGE_PUBLIC. IPv6 forms carrying an IPv4 address are
 * classified by the IPv4 address (addr_embedded_v4). */
enum range_class range_classify(const struct addr *a);

/* The class's name as rules and events write it after "guard:": "loopback", "unspecified",
 * "metadata", "private", "link-local", "cgnat", "multicast", "broadcast", "reserved"; "public"
 * for RANGE_PUBLIC; NULL for a value outside the enum. Static strings. */
const char *range_class_name(enum range_class c);

#endif
