/* testsock_windows.c — testsock.h on Winsock: loopback TCP stands in for socketpairs. */
#include "testsock.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#include <io.h>

#include "base/wsa_windows.h"

const enum testsock_platform testsock_platform = TESTSOCK_WINDOWS;
const char testsock_backend[] = "wsapoll";
/* A handle that is no socket cannot be told from a closed socket (WSAENOTSOCK both). */
const int testsock_file_error = -EBADF;

static void die(const char *what)
{
	fprintf(stderr, "%s: Winsock error %d\n", what, WSAGetLastError());
	exit(1);
}

static void start(void)
{
	if (wsa_start() < 0) {
		fprintf(stderr, "WSAStartup failed\n");
		exit(1);
	}
}

static void set_nonblocking(SOCKET s)
{
	u_long one = 1;

	if (ioctlsocket(s, FIONBIO, &one) != 0)
		die("ioctlsocket(FIONBIO)");
}

/* One listener serves every pair of the process: connect, then accept what just arrived. */
static void loopback_pair(loop_sock sv[2], bool nonblocking)
{
	static SOCKET listener = INVALID_SOCKET;
	static struct sockaddr_in sin;
	SOCKET c, a;

	start();
	if (listener == INVALID_SOCKET) {
		int len = sizeof sin;

		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		listener = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
		if (listener == INVALID_SOCKET ||
		    bind(listener, (struct sockaddr *)&sin, sizeof sin) != 0 ||
		    listen(listener, 16) != 0 ||
		    getsockname(listener, (struct sockaddr *)&sin, &len) != 0)
			die("loopback listener");
	}
	c = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
	if (c == INVALID_SOCKET || connect(c, (struct sockaddr *)&sin, sizeof sin) != 0)
		die("loopback connect");
	a = accept(listener, NULL, NULL);
	if (a == INVALID_SOCKET)
		die("loopback accept");
	if (nonblocking) {
		set_nonblocking(a);
		set_nonblocking(c);
	}
	sv[0] = (loop_sock)a;
	sv[1] = (loop_sock)c;
}

void testsock_pair(loop_sock sv[2])
{
	loopback_pair(sv, true);
}

void testsock_tcp_pair(loop_sock sv[2])
{
	loopback_pair(sv, true);
}

void testsock_tcp_refused(loop_sock sv[2])
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int len = sizeof sin;
	SOCKET probe, s;

	start();
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	probe = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
	if (probe == INVALID_SOCKET || bind(probe, (struct sockaddr *)&sin, sizeof sin) != 0 ||
	    getsockname(probe, (struct sockaddr *)&sin, &len) != 0)
		die("tcp port probe");
	closesocket(probe);
	s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
	if (s == INVALID_SOCKET)
		die("socket");
	set_nonblocking(s);
	if (connect(s, (struct sockaddr *)&sin, sizeof sin) == 0 ||
	    (WSAGetLastError() != WSAEWOULDBLOCK && WSAGetLastError() != WSAECONNREFUSED))
		die("connect to a closed port");
	sv[0] = (loop_sock)s;
	sv[1] = -1;
}

loop_sock testsock_tcp_unconnected(void)
{
	SOCKET s;

	start();
	s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
	if (s == INVALID_SOCKET)
		die("socket");
	set_nonblocking(s);
	return (loop_sock)s;
}

loop_sock testsock_udp_bound(uint16_t *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int len = sizeof sin;
	SOCKET s;

	start();
	s = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);
	if (s == INVALID_SOCKET)
		die("socket");
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(s, (struct sockaddr *)&sin, sizeof sin) != 0 ||
	    getsockname(s, (struct sockaddr *)&sin, &len) != 0)
		die("bind");
	set_nonblocking(s);
	*port = ntohs(sin.sin_port);
	return (loop_sock)s;
}

long testsock_udp_send(loop_sock s, const void *buf, size_t n, uint16_t port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	int r;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	r = sendto((SOCKET)s, buf, (int)n, 0, (struct sockaddr *)&sin, sizeof sin);
	if (r == SOCKET_ERROR)
		return WSAGetLastError() == WSAEWOULDBLOCK ? -EAGAIN : -EIO;
	return r;
}

long testsock_udp_recv(loop_sock s, void *buf, size_t n, uint16_t *from_port)
{
	struct sockaddr_in sin;
	int len = sizeof sin;
	int r = recvfrom((SOCKET)s, buf, (int)n, 0, (struct sockaddr *)&sin, &len);

	if (r == SOCKET_ERROR)
		return WSAGetLastError() == WSAEWOULDBLOCK ? -EAGAIN : -EIO;
	if (from_port)
		*from_port = ntohs(sin.sin_port);
	return r;
}

void testsock_close(loop_sock s)
{
	if (s >= 0)
		closesocket((SOCKET)s);
}

void testsock_reset(loop_sock s)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt((SOCKET)s, SOL_SOCKET, SO_LINGER, (const char *)&lg, sizeof lg);
	closesocket((SOCKET)s);
}

void testsock_close_pair(loop_sock sv[2])
{
	testsock_close(sv[0]);
	testsock_close(sv[1]);
	sv[0] = sv[1] = -1;
}

long testsock_write(loop_sock s, const void *buf, size_t n)
{
	int w = send((SOCKET)s, buf, n > INT_MAX ? INT_MAX : (int)n, 0);

	return w == SOCKET_ERROR ? wsa_last_error() : w;
}

/* Wine's recv() returns 0 after a reset (Windows fails with WSAECONNRESET); WSAPoll still
 * shows the reset as POLLERR, so an end of stream is checked against it. */
long testsock_read(loop_sock s, void *buf, size_t n)
{
	int r = recv((SOCKET)s, buf, n > INT_MAX ? INT_MAX : (int)n, 0);
	WSAPOLLFD pfd = { .fd = (SOCKET)s, .events = POLLRDNORM };

	if (r == SOCKET_ERROR)
		return wsa_last_error();
	if (r == 0 && WSAPoll(&pfd, 1, 0) == 1 && (pfd.revents & POLLERR))
		return -ECONNRESET;
	return r;
}

int testsock_shutdown_write(loop_sock s)
{
	return shutdown((SOCKET)s, SD_SEND) != 0 ? wsa_last_error() : 0;
}

int testsock_so_error(loop_sock s)
{
	int err = 0;
	int len = sizeof err;

	if (getsockopt((SOCKET)s, SOL_SOCKET, SO_ERROR, (char *)&err, &len) != 0)
		return -wsa_last_error();
	return err ? wsa_errno(err) : 0;
}

/* WSAPoll reports the peer's FIN as POLLHUP, a reset or refusal as POLLERR, asked or not. */
bool testsock_wait_peer(loop_sock s, int ms)
{
	WSAPOLLFD pfd = { .fd = (SOCKET)s, .events = POLLRDNORM };

	return WSAPoll(&pfd, 1, ms) == 1;
}

/* Windows has no descriptor limit: a socket costs memory. */
size_t testsock_allow(size_t want)
{
	return want;
}

loop_sock testsock_not_open(void)
{
	loop_sock s = testsock_tcp_unconnected();

	closesocket((SOCKET)s);
	return s;
}

loop_sock testsock_file(FILE *file)
{
	return file ? (loop_sock)_get_osfhandle(_fileno(file)) : -1;
}

bool testsock_alarm(int ms)
{
	(void)ms;
	return false;
}

bool testsock_alarm_caught(void)
{
	return false;
}

void testsock_alarm_done(void)
{
}

loop_sock testsock_listen(uint16_t *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int len = sizeof sin;
	SOCKET s;

	start();
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
	if (s == INVALID_SOCKET)
		return -1;
	if (bind(s, (struct sockaddr *)&sin, sizeof sin) != 0 || listen(s, 64) != 0 ||
	    getsockname(s, (struct sockaddr *)&sin, &len) != 0) {
		closesocket(s);
		return -1;
	}
	*port = ntohs(sin.sin_port);
	return (loop_sock)s;
}

loop_sock testsock_connect(uint16_t port, int timeout_s)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	DWORD ms = (DWORD)timeout_s * 1000;
	SOCKET s;

	start();
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
	if (s == INVALID_SOCKET)
		return -1;
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, (const char *)&ms, sizeof ms);
	setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, (const char *)&ms, sizeof ms);
	if (connect(s, (struct sockaddr *)&sin, sizeof sin) != 0) {
		closesocket(s);
		return -1;
	}
	return (loop_sock)s;
}

loop_sock testsock_accept(loop_sock listener)
{
	SOCKET s = accept((SOCKET)listener, NULL, NULL);

	return s == INVALID_SOCKET ? -1 : (loop_sock)s;
}

/* shutdown() does not wake accept() on Windows: a connection that ends at once does. */
void testsock_wake_accept(loop_sock listener, uint16_t port)
{
	(void)listener;
	testsock_close(testsock_connect(port, 10));
}

void testsock_ignore_sigpipe(void)
{
}

void testsock_sleep_ms(int ms)
{
	Sleep((DWORD)ms);
}
