/* relay.h — what happens to a captured TCP connection: origin, attribution, policy, dial, relay.
 *
 * The capture backend hands the relay listening sockets; for every accepted connection the relay
 * asks the backend for the original destination, attributes a process and a name, decides by
 * policy, dials the destination from outside the session, and relays bytes both ways (half-close
 * included) until both directions are done.
 *
 * The name: when a name could change the decision (policy_names_matter), the relay first reads
 * the client's opening bytes (bounded by PEEK_MAX_BYTES and RELAY_PEEK_TIMEOUT_MS) and takes the
 * TLS SNI or HTTP Host found there; a name from the stream is what the client is really asking
 * for, so it is decided on alone (a DNS-map name for the same address cannot launder it: no
 * domain fronting). Without one, the names the session's DNS answers gave the address are used.
 * The bytes read are sent upstream first, unchanged. The decision is policy_decide_connect_guarded:
 * an address in a guarded range (loopback, private, metadata, ...) needs a `cidr` rule that allows
 * it, and a connection denied for lack of one names the range ("guard:metadata") in its event and
 * stderr line. Every connection produces one `connect` event; every
 * connection that was allowed and dialed ends through one close path that writes its `close`
 * event. A denied connection is reset at once (the client does not hang) and prints one line on
 * stderr unless quiet. A failure in one connection closes that connection only.
 */
#ifndef SLUICE_PROXY_RELAY_H
#define SLUICE_PROXY_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/addr.h"
#include "base/loop.h"

struct audit;
struct policy;
struct relay;

/* Names a connection to dst may be attributed to, at most RELAY_MAX_NAMES. */
#define RELAY_MAX_NAMES 8

/* What the relay asks of the rest of sluice. Every callback may be NULL except original_dst. */
struct relay_hooks {
	void *ctx;
	/* The original destination of an accepted connection (capture backend). 0 or -errno. */
	int (*original_dst)(void *ctx, loop_sock accepted, struct addr *dst, uint16_t *port);
	/* The process that owns the client end peer:port of a flow of protocol proto (6 TCP,
	 * 17 UDP) going to dst:dport: its pid (<= 0 unknown) and exe (into exe, size n, ""
	 * unknown). */
	int64_t (*peer_process)(void *ctx, int proto, const struct addr *peer, uint16_t port,
				const struct addr *dst, uint16_t dport, char *exe,
				size_t n);
	/* Names attributed to dst from the session's DNS answers: stores up to max borrowed
	 * pointers (valid until the callback is called again) and returns how many. */
	size_t (*dns_names)(void *ctx, const struct addr *dst, const char **names, size_t max);
	/* Wall-clock Unix milliseconds for events. */
	int64_t (*wall_ms)(void *ctx);
};

struct relay_config {
	struct loop *loop;           /* borrowed */
	const struct policy *policy; /* borrowed */
	struct audit *audit;         /* borrowed; NULL: no trail */
	struct relay_hooks hooks;
	bool quiet;                  /* no stderr line per denial */
	uint32_t dial_timeout_ms;    /* 0: RELAY_DIAL_TIMEOUT_MS */
	uint32_t peek_timeout_ms;    /* 0: RELAY_PEEK_TIMEOUT_MS */
	size_t max_conns;            /* 0: no limit but the descriptor limit */
};

#define RELAY_DIAL_TIMEOUT_MS 10000
/* How long the relay waits for a client's first bytes (TLS ClientHello, HTTP request) when a
 * name could change the decision; protocols whose server speaks first are decided after it. */
#define RELAY_PEEK_TIMEOUT_MS 500

struct relay_stats {
	uint64_t accepted;
	uint64_t allowed;
	uint64_t denied;
	uint64_t guarded;     /* of the denied: by the address guard (docs/policy.md) */
	uint64_t dial_failed;
	uint64_t shed;        /* refused at the descriptor or connection limit */
	uint64_t no_origin;   /* no original destination could be found: reset */
	uint64_t peeked;      /* decided on a name from the stream (TLS SNI, HTTP Host) */
	uint64_t active;
	uint64_t bytes_out;   /* session to destinations, closed connections */
	uint64_t bytes_in;
};

/* Creates a relay. Returns 0 and *out (free with relay_free), or -ENOMEM. */
int relay_new(struct relay **out, const struct relay_config *cfg);

/* Listening sockets one relay serves at most. */
#define RELAY_MAX_LISTENERS 8

/* Serves a listening socket (borrowed, made non-blocking; the caller closes it after relay_free).
 * Returns 0, -ENOSPC beyond RELAY_MAX_LISTENERS, or the loop's error. */
int relay_listen(struct relay *r, loop_sock listener);

/* Ends every connection (writing their close events) and frees the relay; NULL is fine. */
void relay_free(struct relay *r);

void relay_get_stats(const struct relay *r, struct relay_stats *out);

#endif
