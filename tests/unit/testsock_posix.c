/* testsock_posix.c — testsock.h on Linux: socketpairs, loopback TCP, SIGALRM, RLIMIT_NOFILE. */
#define _GNU_SOURCE
#include "testsock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

const enum testsock_platform testsock_platform = TESTSOCK_POSIX;
const char testsock_backend[] = "epoll";
const int testsock_file_error = -EPERM;

static void die(const char *what)
{
	perror(what);
	exit(1);
}

void testsock_pair(loop_sock sv[2])
{
	int fds[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0)
		die("socketpair");
	sv[0] = fds[0];
	sv[1] = fds[1];
}

void testsock_tcp_pair(loop_sock sv[2])
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof sin;
	int lfd, cfd, afd, flags;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || cfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof sin) < 0 ||
	    listen(lfd, 1) < 0 || getsockname(lfd, (struct sockaddr *)&sin, &len) < 0 ||
	    connect(cfd, (struct sockaddr *)&sin, sizeof sin) < 0)
		die("tcp over loopback");
	afd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (afd < 0)
		die("accept4");
	flags = fcntl(cfd, F_GETFL);
	fcntl(cfd, F_SETFL, flags | O_NONBLOCK);
	close(lfd);
	sv[0] = afd;
	sv[1] = cfd;
}

void testsock_tcp_refused(loop_sock sv[2])
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof sin;
	int probe = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int fd;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (probe < 0 || bind(probe, (struct sockaddr *)&sin, sizeof sin) < 0 ||
	    getsockname(probe, (struct sockaddr *)&sin, &len) < 0)
		die("tcp port probe");
	close(probe);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	if (connect(fd, (struct sockaddr *)&sin, sizeof sin) == 0 ||
	    (errno != EINPROGRESS && errno != ECONNREFUSED))
		die("connect to a closed port");
	sv[0] = fd;
	sv[1] = -1;
}

loop_sock testsock_tcp_unconnected(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket");
	return fd;
}

loop_sock testsock_udp_bound(uint16_t *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof sin;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket");
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) < 0)
		die("bind");
	*port = ntohs(sin.sin_port);
	return fd;
}

long testsock_udp_send(loop_sock s, const void *buf, size_t n, uint16_t port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	ssize_t r;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	r = sendto((int)s, buf, n, MSG_DONTWAIT, (struct sockaddr *)&sin, sizeof sin);
	return r < 0 ? (errno == EWOULDBLOCK ? -EAGAIN : -errno) : (long)r;
}

long testsock_udp_recv(loop_sock s, void *buf, size_t n, uint16_t *from_port)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof sin;
	ssize_t r = recvfrom((int)s, buf, n, MSG_DONTWAIT, (struct sockaddr *)&sin, &len);

	if (r < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	if (from_port)
		*from_port = ntohs(sin.sin_port);
	return (long)r;
}

void testsock_close(loop_sock s)
{
	if (s >= 0)
		close((int)s);
}

void testsock_reset(loop_sock s)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt((int)s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	close((int)s);
}

void testsock_close_pair(loop_sock sv[2])
{
	testsock_close(sv[0]);
	testsock_close(sv[1]);
	sv[0] = sv[1] = -1;
}

long testsock_write(loop_sock s, const void *buf, size_t n)
{
	ssize_t w = send((int)s, buf, n, MSG_NOSIGNAL);

	return w < 0 ? -errno : (long)w;
}

long testsock_read(loop_sock s, void *buf, size_t n)
{
	ssize_t r = recv((int)s, buf, n, 0);

	return r < 0 ? -errno : (long)r;
}

int testsock_shutdown_write(loop_sock s)
{
	return shutdown((int)s, SHUT_WR) < 0 ? -errno : 0;
}

int testsock_so_error(loop_sock s)
{
	int err = 0;
	socklen_t len = sizeof err;

	if (getsockopt((int)s, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return errno;
	return err;
}

bool testsock_wait_peer(loop_sock s, int ms)
{
	return poll(&(struct pollfd){ .fd = (int)s, .events = POLLRDHUP }, 1, ms) == 1;
}

size_t testsock_allow(size_t want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
		return want;
	rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
	setrlimit(RLIMIT_NOFILE, &rl);
	getrlimit(RLIMIT_NOFILE, &rl);
	return rl.rlim_cur < want ? (size_t)rl.rlim_cur : want;
}

loop_sock testsock_not_open(void)
{
	if (fcntl(1000, F_GETFD) >= 0) {
		fprintf(stderr, "descriptor 1000 is open\n");
		exit(1);
	}
	return 1000;
}

loop_sock testsock_file(FILE *file)
{
	return file ? fileno(file) : -1;
}

static volatile sig_atomic_t alarm_caught;
static struct sigaction alarm_old;

static void on_alarm(int sig)
{
	(void)sig;
	alarm_caught = 1;
}

bool testsock_alarm(int ms)
{
	struct sigaction sa = { .sa_handler = on_alarm };
	struct itimerval it = { .it_value = { .tv_sec = ms / 1000, .tv_usec = ms % 1000 * 1000 } };

	sigemptyset(&sa.sa_mask);
	alarm_caught = 0;
	if (sigaction(SIGALRM, &sa, &alarm_old) < 0)
		die("sigaction");
	if (setitimer(ITIMER_REAL, &it, NULL) < 0)
		die("setitimer");
	return true;
}

bool testsock_alarm_caught(void)
{
	return alarm_caught;
}

void testsock_alarm_done(void)
{
	sigaction(SIGALRM, &alarm_old, NULL);
}

loop_sock testsock_listen(uint16_t *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof sin;
	int one = 1;

	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0 || listen(fd, 64) < 0)
		return -1;
	getsockname(fd, (struct sockaddr *)&sin, &len);
	*port = ntohs(sin.sin_port);
	return fd;
}

loop_sock testsock_connect(uint16_t port, int timeout_s)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct timeval tv = {.tv_sec = timeout_s};

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

loop_sock testsock_accept(loop_sock listener)
{
	return accept((int)listener, NULL, NULL);
}

void testsock_wake_accept(loop_sock listener, uint16_t port)
{
	(void)port;
	shutdown((int)listener, SHUT_RDWR);
}

void testsock_ignore_sigpipe(void)
{
	signal(SIGPIPE, SIG_IGN);
}

void testsock_sleep_ms(int ms)
{
	nanosleep(&(struct timespec){.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000L}, NULL);
}
