/* testsock.h — the socket calls the unit tests make themselves, one file per platform
 * (testsock_posix.c, testsock_windows.c), so that test_loop.c and test_relay.c run on both.
 *
 * Sockets are loop_sock values. Calls that return a count return it or a negative errno
 * (Winsock codes translated as net.h does). Setup calls that cannot go on print why and exit(1).
 */
#ifndef SLUICE_TESTS_TESTSOCK_H
#define SLUICE_TESTS_TESTSOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/loop.h"

enum testsock_platform { TESTSOCK_POSIX = 1, TESTSOCK_WINDOWS = 2 };

/* The platform these calls run on, and the name of its event-loop backend. */
extern const enum testsock_platform testsock_platform;
extern const char testsock_backend[];

/* A connected pair, both ends non-blocking: a socketpair on POSIX, loopback TCP on Windows. */
void testsock_pair(loop_sock sv[2]);
/* Loopback TCP: sv[0] accepted, sv[1] the client; both non-blocking. */
void testsock_tcp_pair(loop_sock sv[2]);
/* sv[0]: a non-blocking connect to a loopback port nobody listens on; sv[1] = -1. */
void testsock_tcp_refused(loop_sock sv[2]);
/* A non-blocking TCP socket never connected. */
loop_sock testsock_tcp_unconnected(void);

/* A non-blocking UDP socket bound to 127.0.0.1 on a free port, which *port receives. */
loop_sock testsock_udp_bound(uint16_t *port);
/* sendto / recvfrom 127.0.0.1:port without blocking: bytes, or -EAGAIN / another -errno. */
long testsock_udp_send(loop_sock s, const void *buf, size_t n, uint16_t port);
long testsock_udp_recv(loop_sock s, void *buf, size_t n, uint16_t *from_port);

/* Ignores negative values. */
void testsock_close(loop_sock s);
/* Closes with a TCP reset (linger 0). */
void testsock_reset(loop_sock s);
void testsock_close_pair(loop_sock sv[2]);

/* send()/recv() as the platform has them; a peer that went away is an error code, never a
 * signal. Reads that end a stream because of a reset return -ECONNRESET on every platform. */
long testsock_write(loop_sock s, const void *buf, size_t n);
long testsock_read(loop_sock s, void *buf, size_t n);
int testsock_shutdown_write(loop_sock s);
/* SO_ERROR, as a positive errno (0: none). */
int testsock_so_error(loop_sock s);

/* Waits up to ms for the peer's FIN, reset or refusal to land on s. Returns whether it did. */
bool testsock_wait_peer(loop_sock s, int ms);

/* Lets the process hold `want` sockets if it can. Returns how many it may hold. */
size_t testsock_allow(size_t want);
/* A value that names no open socket. */
loop_sock testsock_not_open(void);
/* The loop_sock value of an open file (no socket), and what loop_io_start says to it. */
loop_sock testsock_file(FILE *file);
extern const int testsock_file_error;

/* Arms a signal that interrupts a wait in about ms milliseconds. Returns false where the
 * platform has no such signals (then testsock_alarm_caught stays false). */
bool testsock_alarm(int ms);
bool testsock_alarm_caught(void);
/* Restores the signal's previous handling. */
void testsock_alarm_done(void);

/* Blocking loopback TCP for test servers and clients (I/O timeouts of timeout_s seconds). A
 * listener on 127.0.0.1 (any free port, *port set), a client connected to 127.0.0.1:port, an
 * accepted connection; each returns the socket or -1. */
loop_sock testsock_listen(uint16_t *port);
loop_sock testsock_connect(uint16_t port, int timeout_s);
loop_sock testsock_accept(loop_sock listener);
/* Makes a thread blocked in testsock_accept(listener) return, without closing listener. */
void testsock_wake_accept(loop_sock listener, uint16_t port);

/* Process settings of sluice itself: a peer that went away is an error code, not a signal. */
void testsock_ignore_sigpipe(void);
void testsock_sleep_ms(int ms);

#endif
