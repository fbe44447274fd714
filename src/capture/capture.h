/* capture.h — how a session's packets reach sluice: one small ops struct per capture backend.
 *
 * A backend (netns now; divert on NFQUEUE and windivert later) makes the session's outbound
 * TCP, DNS and other UDP arrive at sluice's listeners, and answers three questions for the
 * proxy: where was this TCP connection going, where was this datagram going, and how does a
 * reply reach the application with the source it expects. Everything after the listeners is
 * shared by all backends (DESIGN.md, "Data flow").
 *
 * A backend's state starts with `struct capture` (its ops and listeners); callers use
 * `cap->ops->fn(cap, ...)`. Nothing here is thread-safe: one thread owns a capture.
 *
 * The `netns` backend (src/capture/netns.c), in short:
 *   - an anonymous network namespace holding only `lo` (up), with the routes
 *     `default dev lo src 127.0.0.1` (IPv4) and `local default dev lo table local` (IPv6), so
 *     that every destination is routed onto lo and never leaves;
 *   - nftables table `inet sluice` in it: a nat output chain redirecting TCP (TCP/53 to the DNS
 *     TCP listener, other TCP to the TCP listener) and a mangle prerouting chain sending every
 *     UDP datagram through tproxy (UDP/53 to the DNS UDP listener, other UDP to the UDP
 *     listener); DNS (port 53, TCP and UDP) is captured whatever its destination, loopback
 *     resolvers such as 127.0.0.53 included, then both chains return for 127.0.0.0/8 and ::1,
 *     so other loopback traffic inside the session is never captured;
 *   - listeners created inside the namespace (127.0.0.1 and ::1); every socket sluice makes
 *     itself (upstream dials) stays in sluice's own namespace.
 *
 * The `divert` backend (src/capture/nfqueue.c) builds the same namespace and listeners, but the
 * namespace's rules queue the session's TCP and UDP (and the listeners' replies) to sluice over
 * NFQUEUE instead of NATing them in the kernel: the divert engine (src/divert/engine.h) rewrites
 * them, exactly as it does on Windows with WinDivert, and answers the original-destination
 * questions from its NAT table.
 */
#ifndef SLUICE_CAPTURE_CAPTURE_H
#define SLUICE_CAPTURE_CAPTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/addr.h"
#include "base/loop.h"

/* Preferred listener ports; where one is taken, the backend binds any free port instead. */
#define CAPTURE_TCP_PORT 9080
#define CAPTURE_DNS_PORT 5353
#define CAPTURE_UDP_PORT 9081

/* A listener slot that holds no socket. */
#define CAPTURE_NO_SOCK ((loop_sock)-1)

/* What a listener receives. */
enum capture_kind {
	CAPTURE_TCP = 0,     /* TCP except port 53: accept(), then tcp_original_dst */
	CAPTURE_DNS_TCP = 1, /* TCP to port 53 (DNS over TCP): accept(), then tcp_original_dst */
	CAPTURE_DNS_UDP = 2, /* UDP to port 53: udp_recv, replies with udp_send */
	CAPTURE_UDP = 3,     /* other UDP: udp_recv, replies with udp_send */
	CAPTURE_KINDS = 4,
};

enum capture_family {
	CAPTURE_IPV4 = 0,
	CAPTURE_IPV6 = 1,
	CAPTURE_FAMILIES = 2,
};

struct capture_endpoint {
	struct addr addr;
	uint16_t port;
};

/* One listening socket (non-blocking, close-on-exec; TCP ones listen()ing). */
struct capture_listener {
	loop_sock sock; /* CAPTURE_NO_SOCK when absent (e.g. IPv6 disabled) */
	uint16_t port;  /* the port it is bound to */
};

struct capture_config {
	uint16_t tcp_port; /* preferred ports; 0 means the CAPTURE_*_PORT default */
	uint16_t dns_port;
	uint16_t udp_port;
	unsigned lo_mtu; /* MTU to set on the session's lo; 0: the backend's choice */

	/* Backends that see packets (divert): what to do with packets they cannot handle, and
	 * who hears about fail mode (see src/divert/engine.h). on_fail_mode may be NULL. */
	bool fail_open;
	void (*on_fail_mode)(void *ctx, bool entered, const char *reason);
	void *ctx;

	/* Backends that see the machine's own resolver at work (windivert): an answer the system
	 * resolver (the DNS Client service) received, for a query it sent while the session ran,
	 * matched to that query as src/proxy/dns_watch.h says; the session's DNS map learns from
	 * it. Called on the loop's thread with ctx; msg[0..len) is borrowed. NULL: not watched. */
	void (*on_dns_answer)(void *ctx, const uint8_t *msg, size_t len);
};

/* One counter a backend reports for the session's end (`--stats`, session_end). */
struct capture_stat {
	const char *name; /* static */
	uint64_t value;
};

struct capture_ops;

/* The part of every backend's state that callers read. Fields are read-only for callers. */
struct capture {
	const struct capture_ops *ops;
	struct capture_listener listeners[CAPTURE_KINDS][CAPTURE_FAMILIES];
};

struct capture_ops {
	const char *name; /* "netns" */

	/* Sets up the capture: a session network, its rules and sluice's listeners in it.
	 * cfg may be NULL (all defaults). Must be called while the process is single-threaded
	 * (the netns backend switches the calling thread's namespace and back). Logs the step
	 * that failed. Returns 0 and *out (release with close), or a negative errno code
	 * (-EPERM: not privileged enough). */
	int (*open)(struct capture **out, const struct capture_config *cfg);

	/* Original destination of a connection accepted on a CAPTURE_TCP or CAPTURE_DNS_TCP
	 * listener. Returns 0 and *dst; -ENOENT when the connection was not captured (a session
	 * process connected to the listener's own address); other negative errno codes from the
	 * OS (e.g. -ENOTCONN). */
	int (*tcp_original_dst)(struct capture *cap, loop_sock accepted,
				struct capture_endpoint *dst);

	/* Reads one datagram waiting on a CAPTURE_DNS_UDP or CAPTURE_UDP listener into buf (size
	 * bytes; 65535 holds any datagram) and tells who sent it (*src, the application's socket)
	 * and where it was going (*orig_dst). Never blocks. Returns the payload length (>= 0);
	 * -EAGAIN when nothing is waiting; -EMSGSIZE when the datagram was longer than size (it
	 * is dropped); -ENOENT when it was not captured (sent straight to the listener's own
	 * address: drop it); other negative errno codes from the OS. */
	int (*udp_recv)(struct capture *cap, loop_sock listener, void *buf, size_t size,
			struct capture_endpoint *src, struct capture_endpoint *orig_dst);

	/* Sends buf as one datagram to `to` (a session application, normally the *src of
	 * udp_recv) so that it arrives from `from` (normally the *orig_dst of udp_recv): this is
	 * how a reply reaches the application with the source it expects. Never blocks.
	 * Families must match (-EAFNOSUPPORT otherwise). Returns 0; -EAGAIN when the socket
	 * buffer is full (the datagram is dropped); -EADDRINUSE when a session process holds
	 * `from`'s port in a conflicting way; other negative errno codes.
	 * netns: the datagram is sent from a UDP socket inside the session namespace with
	 * IP_TRANSPARENT / IPV6_TRANSPARENT (so a non-local address may be bound) and
	 * SO_REUSEADDR, bound to `from` and left unconnected (a connected one would steal the
	 * application's later datagrams from the tproxy listener). Such sockets are kept in a
	 * bounded cache keyed by `from`, least recently used evicted first. */
	int (*udp_send)(struct capture *cap, const struct capture_endpoint *from,
			const struct capture_endpoint *to, const void *buf, size_t len);

	/* The application's own socket address (*app) behind a peer seen on a listener (*seen:
	 * an accepted connection's peer, a datagram's source); proto is 6 (TCP) or 17 (UDP).
	 * The same address in netns mode; in divert mode the port may differ (the engine
	 * remaps colliding client ports). Returns 0, or -ENOENT when the flow is unknown. */
	int (*app_endpoint)(struct capture *cap, int proto, const struct capture_endpoint *seen,
			    struct capture_endpoint *app);

	/* The process owning the flow behind a peer seen on a listener, when the backend knows
	 * it (windivert: from WinDivert's SOCKET layer); 0 when unknown. NULL for backends that
	 * never know (on Linux, attribution finds the owner). */
	uint32_t (*flow_pid)(struct capture *cap, int proto, const struct capture_endpoint *seen);

	/* Starts what the backend itself serves (divert: a thread serving the packet queue,
	 * and a watcher on the session's loop for the fail-mode events it reports); called
	 * once, after open, before the session starts. close() must then come before the loop
	 * is freed. NULL when the backend needs nothing. Returns 0 or a negative errno. */
	int (*attach)(struct capture *cap, struct loop *loop);

	/* Copies up to max counters into out and returns how many; NULL when the backend keeps
	 * none. */
	size_t (*stats)(struct capture *cap, struct capture_stat *out, size_t max);

	/* Moves the calling process into the captured network. Called in the forked child that
	 * becomes the session's init, before anything else is started; async-signal-safe.
	 * Returns 0 or a negative errno code. */
	int (*join)(struct capture *cap);

	/* Closes the listeners and everything the capture holds; accepts NULL. The netns
	 * namespace itself disappears when the last session process and this are gone. */
	void (*close)(struct capture *cap);
};

/* Starts a backend's state: its ops, and every listener slot empty. */
static inline void capture_init(struct capture *cap, const struct capture_ops *ops)
{
	cap->ops = ops;
	for (int kind = 0; kind < CAPTURE_KINDS; kind++)
		for (int family = 0; family < CAPTURE_FAMILIES; family++)
			cap->listeners[kind][family] =
				(struct capture_listener){ .sock = CAPTURE_NO_SOCK };
}

/* The Linux network-namespace backend (src/capture/netns.c). */
extern const struct capture_ops capture_netns;

/* The Linux divert backend: the divert engine on NFQUEUE (src/capture/nfqueue.c). */
extern const struct capture_ops capture_nfqueue;

/* The Windows divert backend: the divert engine on WinDivert (src/capture/windivert.c; Windows
 * builds only, with the extras of capture_windivert.h). */
extern const struct capture_ops capture_windivert;

#endif
