/* udp.h — UDP other than DNS: dropped and recorded unless a `proto udp` rule allows the flow.
 *
 * Datagrams arrive on the capture backend's UDP listeners. A flow is one application socket
 * talking to one destination; its first datagram is decided by policy_decide_connect_guarded
 * with POLICY_UDP (names from the session's DNS map; a guarded address such as multicast or
 * private needs a `cidr` rule), recorded as one `udp` event, and the decision
 * holds for the flow until it has been idle for the idle timeout. A denied flow's datagrams are
 * dropped (so QUIC falls back to TCP, where the relay's policy applies) and a stderr line says
 * so once per flow. An allowed flow is relayed through a UDP socket outside the session; replies
 * reach the application from the destination's address.
 */
#ifndef SLUICE_PROXY_UDP_H
#define SLUICE_PROXY_UDP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/addr.h"
#include "base/loop.h"

struct audit;
struct capture;
struct dns_map;
struct policy;
struct udp_relay;

#define UDP_IDLE_MS 60000
#define UDP_MAX_FLOWS 4096

struct udp_relay_config {
	struct loop *loop;           /* borrowed */
	const struct policy *policy; /* borrowed */
	struct audit *audit;         /* borrowed; NULL: no trail */
	struct dns_map *map;         /* borrowed; NULL: no names */
	struct capture *capture;     /* borrowed */
	bool quiet;
	uint32_t idle_ms;            /* 0: UDP_IDLE_MS */
	void *ctx;
	int64_t (*wall_ms)(void *ctx);
	int64_t (*peer_process)(void *ctx, int proto, const struct addr *src, uint16_t port,
				const struct addr *dst, uint16_t dport, char *exe,
				size_t n);
};

struct udp_relay_stats {
	uint64_t flows_allowed;
	uint64_t flows_denied;
	uint64_t flows_guarded;    /* of the denied: by the address guard (docs/policy.md) */
	uint64_t datagrams_out;    /* relayed to destinations */
	uint64_t datagrams_in;     /* relayed back to the session */
	uint64_t datagrams_dropped;
	uint64_t errors;
	uint64_t shed;             /* new flows refused at UDP_MAX_FLOWS */
};

/* Creates the UDP relay and starts serving the capture's UDP listeners. 0 or -errno. */
int udp_relay_new(struct udp_relay **out, const struct udp_relay_config *cfg);
void udp_relay_free(struct udp_relay *u);
void udp_relay_get_stats(const struct udp_relay *u, struct udp_relay_stats *out);

#endif
