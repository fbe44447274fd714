/* net.h — the few socket operations the proxy needs, with errors as negative codes.
 *
 * The proxy's state machines (relay, DNS proxy) are written against this header; each platform
 * implements it once (net_linux.c; Winsock later), translating its error codes at this boundary.
 * All sockets are non-blocking and close-on-exec.
 */
#ifndef SLUICE_BASE_NET_H
#define SLUICE_BASE_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/addr.h"
#include "base/loop.h"

#define NET_INVALID ((loop_sock)-1)

/* Accepts one connection from a listening socket. Returns the new socket (>= 0) and the peer
 * address; -EAGAIN when none is waiting (or the one waiting went away); -EMFILE/-ENFILE at the
 * descriptor limit, after shedding the oldest waiting connection (accepted with a descriptor
 * kept in reserve and reset at once, so that the listener does not stay readable forever while
 * existing connections keep flowing); or another negative errno. */
loop_sock net_accept(loop_sock listener, struct addr *peer, uint16_t *peer_port);

/* Starts a non-blocking TCP connect to dst:port. Returns the socket, which becomes writable
 * when the connect has finished (see net_connect_result), or a negative errno (-ENETUNREACH...).
 * *done is set when the connect finished at once. */
loop_sock net_connect_start(const struct addr *dst, uint16_t port, bool *done);

/* A UDP socket connected to dst:port (so only its replies are received). Returns the socket or
 * a negative errno. */
loop_sock net_udp_connect(const struct addr *dst, uint16_t port);

/* send()/recv() without blocking: the byte count (recv: 0 at end of stream), -EAGAIN, or
 * another negative errno. */
long net_send(loop_sock sock, const void *buf, size_t len);
long net_recv(loop_sock sock, void *buf, size_t cap);

/* The outcome of a finished non-blocking connect: 0 or a negative errno (-ECONNREFUSED...). */
int net_connect_result(loop_sock sock);

/* Closes the sending direction (TCP FIN) after what was queued. Returns 0 or -errno. */
int net_shutdown_write(loop_sock sock);

/* Makes a socket non-blocking (listeners handed over by a capture backend). 0 or -errno. */
int net_set_nonblocking(loop_sock sock);

/* Closes a socket; NET_INVALID is ignored. */
void net_close(loop_sock sock);

/* Closes a socket with a TCP reset (linger 0), so that the peer sees ECONNRESET at once. */
void net_reset(loop_sock sock);

/* Prepares the process for relaying: a peer that went away is an error code, not a signal
 * (SIGPIPE ignored); the soft descriptor limit is raised to the hard one; a descriptor is kept
 * in reserve for shedding at the limit (net_accept). Returns the resulting descriptor limit,
 * or a negative errno. */
long net_prepare_process(void);

/* A one-way byte pump between two connected stream sockets with a bounded buffer in between
 * (a kernel pipe moved with splice on Linux, so relayed bytes are not copied to user space). */
struct net_pump;

/* What one net_pump_run call saw, and what the pump waits for next. */
struct net_pump_status {
	uint64_t moved;     /* bytes delivered to `to` by this call */
	bool from_eof;      /* `from` reached end of stream (sticky across calls) */
	bool want_read;     /* call again when `from` is readable */
	bool want_write;    /* call again when `to` is writable (bytes are buffered) */
	size_t buffered;    /* bytes read from `from` and not yet delivered */
	int error;          /* 0, or a negative errno that ends the connection */
	bool error_on_from; /* the error came from `from` (else from `to`) */
};

/* Creates a pump with its buffer. Returns 0 and *out, or a negative errno (-EMFILE...). */
int net_pump_new(struct net_pump **out);
void net_pump_free(struct net_pump *pump);

/* Moves what it can from `from` to `to` without blocking and reports it in *st. Stops reading
 * once `from` reached its end (st->from_eof stays true). */
void net_pump_run(struct net_pump *pump, loop_sock from, loop_sock to, struct net_pump_status *st);

#endif
