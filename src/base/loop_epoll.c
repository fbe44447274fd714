/* loop_epoll.c — the Linux backend of the event loop: level-triggered epoll. */
#define _GNU_SOURCE

#include "base/loop.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

struct loop_backend {
	int epfd;
	int batch;
	struct epoll_event events[];
};

int loop_backend_new(struct loop_backend **out, size_t batch)
{
	struct loop_backend *backend;
	int err;

	if (batch == 0 || batch > INT_MAX / sizeof(struct epoll_event))
		return -EINVAL;
	backend = calloc(1, sizeof *backend + batch * sizeof backend->events[0]);
	if (!backend)
		return -ENOMEM;
	backend->batch = (int)batch;
	backend->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (backend->epfd < 0) {
		err = -errno;
		free(backend);
		return err;
	}
	*out = backend;
	return 0;
}

void loop_backend_free(struct loop_backend *backend)
{
	if (!backend)
		return;
	close(backend->epfd);
	free(backend);
}

const char *loop_backend_name(void)
{
	return "epoll";
}

/* RDHUP only with READ: it stays asserted after the peer's FIN, which would wake a
 * write-only watcher forever. */
static int epoll_set(struct loop_backend *backend, int op, struct loop_io *io, unsigned events)
{
	struct epoll_event ev = { .events = 0, .data.ptr = io };

	if (io->sock < 0 || io->sock > INT_MAX)
		return -EBADF;
	if (events & LOOP_READ)
		ev.events |= EPOLLIN | EPOLLRDHUP;
	if (events & LOOP_WRITE)
		ev.events |= EPOLLOUT;
	if (epoll_ctl(backend->epfd, op, (int)io->sock, &ev) < 0)
		return -errno;
	return 0;
}

int loop_backend_add(struct loop_backend *backend, struct loop_io *io, unsigned events)
{
	return epoll_set(backend, EPOLL_CTL_ADD, io, events);
}

int loop_backend_modify(struct loop_backend *backend, struct loop_io *io, unsigned events)
{
	return epoll_set(backend, EPOLL_CTL_MOD, io, events);
}

void loop_backend_remove(struct loop_backend *backend, struct loop_io *io)
{
	struct epoll_event ev = { 0 };

	if (io->sock >= 0 && io->sock <= INT_MAX)
		(void)epoll_ctl(backend->epfd, EPOLL_CTL_DEL, (int)io->sock, &ev);
}

int loop_backend_poll(struct loop_backend *backend, int timeout_ms, struct loop_fired *fired)
{
	int n = epoll_wait(backend->epfd, backend->events, backend->batch, timeout_ms);

	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n; i++) {
		uint32_t e = backend->events[i].events;
		unsigned events = 0;

		if (e & EPOLLIN)
			events |= LOOP_READ;
		if (e & EPOLLOUT)
			events |= LOOP_WRITE;
		if (e & (EPOLLRDHUP | EPOLLHUP))
			events |= LOOP_HUP;
		if (e & EPOLLERR)
			events |= LOOP_ERROR;
		fired[i].io = backend->events[i].data.ptr;
		fired[i].events = events;
	}
	return n;
}

uint64_t loop_backend_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
