/* net_windows.c — net.h on Winsock: non-blocking sockets, and a pump through a user buffer. */
#include "base/net.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>

#include "base/wsa_windows.h"

/* Buffer of a pump: allocated when bytes arrive and released once they are delivered, so that
 * idle connections cost nothing (as the pages of a pipe on Linux). */
#define PUMP_BUF_BYTES (64 * 1024)
/* recv/send rounds per net_pump_run, so that one busy connection cannot starve the others. */
#define PUMP_ROUNDS 8

static void addr_from_sockaddr(const struct sockaddr_storage *ss, struct addr *a, uint16_t *port)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
		addr_from_bytes(a, ADDR_V4, (const uint8_t *)&sin->sin_addr);
		*port = ntohs(sin->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
		addr_from_bytes(a, ADDR_V6, (const uint8_t *)&sin6->sin6_addr);
		*port = ntohs(sin6->sin6_port);
	} else {
		memset(a, 0, sizeof *a);
		*port = 0;
	}
}

static int sockaddr_from_addr(const struct addr *a, uint16_t port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof *ss);
	if (a->family == ADDR_V4) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		memcpy(&sin->sin_addr, a->bytes, 4);
		return sizeof *sin;
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	memcpy(&sin6->sin6_addr, a->bytes, 16);
	return sizeof *sin6;
}

static void set_nodelay(SOCKET s)
{
	BOOL one = TRUE;
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof one);
}

/* A new socket that children do not inherit (close-on-exec), made non-blocking. Returns it or
 * a negative errno. */
static loop_sock socket_new(int family, int type, int protocol)
{
	int err = wsa_start();
	if (err < 0)
		return err;
	SOCKET s = WSASocketW(family, type, protocol, NULL, 0,
			      WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
	if (s == INVALID_SOCKET)
		return wsa_last_error();
	err = net_set_nonblocking((loop_sock)s);
	if (err < 0) {
		closesocket(s);
		return err;
	}
	return (loop_sock)s;
}

/* Sockets sluice holds are never valid negative numbers: a SOCKET above INTPTR_MAX (which
 * Windows does not hand out) would read as an error code. */
static bool sock_valid(loop_sock sock)
{
	return sock >= 0 && (SOCKET)sock != INVALID_SOCKET;
}

loop_sock net_accept(loop_sock listener, struct addr *peer, uint16_t *peer_port)
{
	struct sockaddr_storage ss;
	int len = sizeof ss;
	SOCKET s = accept((SOCKET)listener, (struct sockaddr *)&ss, &len);
	if (s == INVALID_SOCKET) {
		int err = WSAGetLastError();
		/* WSAECONNRESET: the waiting connection was reset before it was accepted. No
		 * shedding at a limit: Windows has no descriptor limit, a socket costs memory. */
		if (err == WSAEWOULDBLOCK || err == WSAEINTR || err == WSAECONNRESET ||
		    err == WSAECONNABORTED)
			return -EAGAIN;
		return -wsa_errno(err);
	}
	SetHandleInformation((HANDLE)s, HANDLE_FLAG_INHERIT, 0);
	int rc = net_set_nonblocking((loop_sock)s);
	if (rc < 0) {
		closesocket(s);
		return rc;
	}
	addr_from_sockaddr(&ss, peer, peer_port);
	set_nodelay(s);
	return (loop_sock)s;
}

loop_sock net_connect_start(const struct addr *dst, uint16_t port, bool *done)
{
	struct sockaddr_storage ss;
	int len = sockaddr_from_addr(dst, port, &ss);
	loop_sock sock = socket_new(ss.ss_family, SOCK_STREAM, IPPROTO_TCP);
	if (sock < 0)
		return sock;
	set_nodelay((SOCKET)sock);
	*done = false;
	if (connect((SOCKET)sock, (struct sockaddr *)&ss, len) == 0) {
		*done = true;
	} else if (WSAGetLastError() != WSAEWOULDBLOCK) {
		int err = wsa_last_error();
		closesocket((SOCKET)sock);
		return err;
	}
	return sock;
}

loop_sock net_udp_connect(const struct addr *dst, uint16_t port)
{
	struct sockaddr_storage ss;
	int len = sockaddr_from_addr(dst, port, &ss);
	loop_sock sock = socket_new(ss.ss_family, SOCK_DGRAM, IPPROTO_UDP);
	if (sock < 0)
		return sock;
	if (connect((SOCKET)sock, (struct sockaddr *)&ss, len) == SOCKET_ERROR) {
		int err = wsa_last_error();
		closesocket((SOCKET)sock);
		return err;
	}
	return sock;
}

long net_send(loop_sock sock, const void *buf, size_t len)
{
	int n = send((SOCKET)sock, buf, len > INT_MAX ? INT_MAX : (int)len, 0);
	if (n == SOCKET_ERROR)
		return wsa_last_error();
	return n;
}

/* A datagram longer than cap fails with WSAEMSGSIZE after filling buf; Linux returns it cut to
 * cap, and so does this. */
long net_recv(loop_sock sock, void *buf, size_t cap)
{
	int want = cap > INT_MAX ? INT_MAX : (int)cap;
	int n = recv((SOCKET)sock, buf, want, 0);
	if (n == SOCKET_ERROR) {
		int err = WSAGetLastError();
		return err == WSAEMSGSIZE ? want : -wsa_errno(err);
	}
	return n;
}

int net_connect_result(loop_sock sock)
{
	int err = 0;
	int len = sizeof err;
	if (getsockopt((SOCKET)sock, SOL_SOCKET, SO_ERROR, (char *)&err, &len) == SOCKET_ERROR)
		return wsa_last_error();
	return err ? -wsa_errno(err) : 0;
}

int net_shutdown_write(loop_sock sock)
{
	return shutdown((SOCKET)sock, SD_SEND) == 0 ? 0 : wsa_last_error();
}

int net_set_nonblocking(loop_sock sock)
{
	u_long one = 1;
	return ioctlsocket((SOCKET)sock, FIONBIO, &one) == 0 ? 0 : wsa_last_error();
}

void net_close(loop_sock sock)
{
	if (sock_valid(sock))
		closesocket((SOCKET)sock);
}

void net_reset(loop_sock sock)
{
	if (!sock_valid(sock))
		return;
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	setsockopt((SOCKET)sock, SOL_SOCKET, SO_LINGER, (const char *)&lg, sizeof lg);
	closesocket((SOCKET)sock);
}

/* Windows has no SIGPIPE and no per-process socket limit: starting Winsock is all there is.
 * The limit returned is nominal, as for RLIM_INFINITY on Linux. */
long net_prepare_process(void)
{
	int err = wsa_start();
	return err < 0 ? err : (long)1 << 30;
}

struct net_pump {
	char *buf; /* PUMP_BUF_BYTES while bytes are held, else NULL */
	size_t off, len;
	bool eof;
};

int net_pump_new(struct net_pump **out)
{
	struct net_pump *p = calloc(1, sizeof *p);
	if (!p)
		return -ENOMEM;
	*out = p;
	return 0;
}

void net_pump_free(struct net_pump *p)
{
	if (!p)
		return;
	free(p->buf);
	free(p);
}

void net_pump_run(struct net_pump *p, loop_sock from, loop_sock to, struct net_pump_status *st)
{
	memset(st, 0, sizeof *st);
	for (int round = 0; round < PUMP_ROUNDS; round++) {
		bool progress = false;
		if (!p->eof && p->len == 0) {
			if (!p->buf)
				p->buf = malloc(PUMP_BUF_BYTES);
			if (!p->buf) {
				st->error = -ENOMEM;
				st->error_on_from = true;
				break;
			}
			long n = net_recv(from, p->buf, PUMP_BUF_BYTES);
			if (n > 0) {
				p->off = 0;
				p->len = (size_t)n;
				progress = true;
			} else if (n == 0) {
				p->eof = true;
			} else if (n != -EAGAIN && n != -EINTR) {
				st->error = (int)n;
				st->error_on_from = true;
				break;
			}
		}
		if (p->len > 0) {
			long n = net_send(to, p->buf + p->off, p->len);
			if (n > 0) {
				p->off += (size_t)n;
				p->len -= (size_t)n;
				st->moved += (uint64_t)n;
				progress = true;
			} else if (n < 0 && n != -EAGAIN && n != -EINTR) {
				st->error = (int)n;
				st->error_on_from = false;
				break;
			}
		}
		if (!progress)
			break;
	}
	if (p->len == 0) {
		free(p->buf);
		p->buf = NULL;
	}
	st->from_eof = p->eof;
	st->buffered = p->len;
	st->want_write = p->len > 0;
	st->want_read = !p->eof && p->len == 0;
}
