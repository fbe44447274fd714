/* loop_wsapoll.c — the Windows backend of the event loop: WSAPoll over an array of sockets.
 *
 * The array holds one WSAPOLLFD per started watcher (swap-removed, so it stays dense). WSAPoll
 * reports POLLHUP whatever was asked for, and after the peer's FIN it reports POLLHUP alone, not
 * POLLRDNORM, although recv() returns 0: so POLLHUP reads as READ|HUP to a reader. A write-only
 * watcher gets no HUP (a half-closed peer still reads, as on Linux); while its socket is not
 * writable the asserted POLLHUP would make every WSAPoll return at once, so that socket sits
 * out the next wait (which is then kept short) instead of spinning the loop.
 */
#include "base/loop.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include <winsock2.h>
#include <windows.h>

#include "base/wsa_windows.h"

#define SLOTS_INITIAL 64
/* Longest wait while a muted socket sits out: how late its writability can be noticed. */
#define MUTE_WAIT_MS 10

struct loop_backend {
	WSAPOLLFD *pfd;      /* pfd[i].fd is INVALID_SOCKET while slot i is muted */
	struct loop_io **io; /* io[i] owns pfd[i]; io[i]->backend_slot == i + 1 */
	size_t count;
	size_t cap;
	size_t muted;
	size_t batch;
	size_t next; /* where reporting starts, so that a full batch does not starve the rest */
};

int loop_backend_new(struct loop_backend **out, size_t batch)
{
	struct loop_backend *backend;
	int err;

	if (batch == 0 || batch > INT_MAX)
		return -EINVAL;
	err = wsa_start();
	if (err < 0)
		return err;
	backend = calloc(1, sizeof *backend);
	if (!backend)
		return -ENOMEM;
	backend->pfd = calloc(SLOTS_INITIAL, sizeof *backend->pfd);
	backend->io = calloc(SLOTS_INITIAL, sizeof *backend->io);
	if (!backend->pfd || !backend->io) {
		loop_backend_free(backend);
		return -ENOMEM;
	}
	backend->cap = SLOTS_INITIAL;
	backend->batch = batch;
	*out = backend;
	return 0;
}

void loop_backend_free(struct loop_backend *backend)
{
	if (!backend)
		return;
	free(backend->pfd);
	free(backend->io);
	free(backend);
}

const char *loop_backend_name(void)
{
	return "wsapoll";
}

/* 0 if sock is an open socket; -EBADF for anything else (a closed socket and a handle that is
 * no socket look the same to Winsock). */
static int sock_check(loop_sock sock)
{
	int type;
	int len = sizeof type;

	if (sock < 0 || (SOCKET)sock == INVALID_SOCKET)
		return -EBADF;
	if (getsockopt((SOCKET)sock, SOL_SOCKET, SO_TYPE, (char *)&type, &len) == SOCKET_ERROR) {
		int err = WSAGetLastError();

		return err == WSAENOTSOCK || err == WSAEBADF ? -EBADF : -wsa_errno(err);
	}
	return 0;
}

static SHORT poll_events(unsigned events)
{
	return (SHORT)(((events & LOOP_READ) ? POLLRDNORM : 0) |
		       ((events & LOOP_WRITE) ? POLLWRNORM : 0));
}

static int slots_reserve_one(struct loop_backend *backend)
{
	WSAPOLLFD *pfd;
	struct loop_io **io;
	size_t cap;

	if (backend->count < backend->cap)
		return 0;
	if (backend->cap > SIZE_MAX / 2 / sizeof *pfd)
		return -ENOMEM;
	cap = backend->cap * 2;
	pfd = realloc(backend->pfd, cap * sizeof *pfd);
	if (!pfd)
		return -ENOMEM;
	backend->pfd = pfd;
	io = realloc(backend->io, cap * sizeof *io);
	if (!io)
		return -ENOMEM;
	backend->io = io;
	backend->cap = cap;
	return 0;
}

int loop_backend_add(struct loop_backend *backend, struct loop_io *io, unsigned events)
{
	int err = sock_check(io->sock);

	if (err < 0)
		return err;
	for (size_t i = 0; i < backend->count; i++) {
		if (backend->io[i]->sock == io->sock)
			return -EEXIST;
	}
	err = slots_reserve_one(backend);
	if (err < 0)
		return err;
	backend->pfd[backend->count] = (WSAPOLLFD){
		.fd = (SOCKET)io->sock,
		.events = poll_events(events),
	};
	backend->io[backend->count] = io;
	io->backend_slot = ++backend->count;
	return 0;
}

int loop_backend_modify(struct loop_backend *backend, struct loop_io *io, unsigned events)
{
	size_t slot = io->backend_slot - 1;
	int err = sock_check(io->sock);

	if (err < 0)
		return err;
	if (slot >= backend->count || backend->io[slot] != io)
		return -EINVAL;
	if (backend->pfd[slot].fd == INVALID_SOCKET)
		backend->muted--;
	backend->pfd[slot].fd = (SOCKET)io->sock;
	backend->pfd[slot].events = poll_events(events);
	return 0;
}

void loop_backend_remove(struct loop_backend *backend, struct loop_io *io)
{
	size_t slot = io->backend_slot - 1;
	size_t last = backend->count - 1;

	if (slot >= backend->count || backend->io[slot] != io)
		return;
	if (backend->pfd[slot].fd == INVALID_SOCKET)
		backend->muted--;
	if (slot != last) {
		backend->pfd[slot] = backend->pfd[last];
		backend->io[slot] = backend->io[last];
		backend->io[slot]->backend_slot = slot + 1;
	}
	backend->count--;
	io->backend_slot = 0;
}

/* What a watcher asking for `asked` makes of revents; *mute when only a POLLHUP it cannot use
 * is asserted. */
static unsigned fired_events(SHORT revents, unsigned asked, bool *mute)
{
	unsigned events = 0;

	if (revents & POLLRDNORM)
		events |= LOOP_READ;
	if (revents & POLLWRNORM)
		events |= LOOP_WRITE;
	if (revents & (POLLERR | POLLNVAL))
		events |= LOOP_HUP | LOOP_ERROR;
	if ((revents & POLLHUP) && (asked & LOOP_READ))
		events |= LOOP_READ | LOOP_HUP;
	*mute = events == 0 && (revents & POLLHUP);
	return events;
}

/* One wait of at most timeout_ms (negative: no limit). Returns WSAPoll's count, 0 when nothing
 * could be polled (then no revents are valid; WSAPoll refuses an empty set), or SOCKET_ERROR. */
static int wait_once(struct loop_backend *backend, int timeout_ms, bool *polled)
{
	*polled = false;
	if (backend->count == backend->muted) {
		if (timeout_ms != 0)
			Sleep(timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms);
		return 0;
	}
	*polled = true;
	return WSAPoll(backend->pfd, (ULONG)backend->count, timeout_ms);
}

/* Reads the outcome of a wait into fired (up to the batch, starting where the last full batch
 * stopped), unmutes the slots that sat it out and mutes those that now only show a POLLHUP
 * they cannot use. lost: the wait failed on a socket that is gone; find it. */
static int collect(struct loop_backend *backend, bool polled, bool lost, struct loop_fired *fired)
{
	size_t start = backend->next < backend->count ? backend->next : 0;
	bool full = false;
	int nfired = 0;

	backend->next = 0;
	for (size_t k = 0; k < backend->count; k++) {
		size_t i = (start + k) % backend->count;
		WSAPOLLFD *pfd = &backend->pfd[i];
		struct loop_io *io = backend->io[i];
		unsigned events = 0;
		bool mute = false;

		if (pfd->fd == INVALID_SOCKET) {
			pfd->fd = (SOCKET)io->sock;
			backend->muted--;
			continue;
		}
		if (polled && pfd->revents)
			events = fired_events(pfd->revents, io->events, &mute);
		else if (lost && sock_check(io->sock) < 0)
			events = LOOP_HUP | LOOP_ERROR;
		if (mute) {
			pfd->fd = INVALID_SOCKET;
			backend->muted++;
		}
		if (!events)
			continue;
		if ((size_t)nfired == backend->batch) {
			if (!full)
				backend->next = i;
			full = true;
			continue;
		}
		fired[nfired].io = io;
		fired[nfired].events = events;
		nfired++;
	}
	return nfired;
}

/* Waits again while nothing was reported and time is left: after a wait that ended a little
 * early (timer granularity), and after a short wait with muted slots, which rejoin the next. */
int loop_backend_poll(struct loop_backend *backend, int timeout_ms, struct loop_fired *fired)
{
	uint64_t deadline = timeout_ms > 0 ? loop_backend_now_ms() + (uint64_t)timeout_ms : 0;
	int wait = timeout_ms;

	for (;;) {
		bool polled, lost = false;
		uint64_t now;
		int n, nfired;

		if (backend->muted > 0 && (wait < 0 || wait > MUTE_WAIT_MS))
			wait = MUTE_WAIT_MS;
		n = wait_once(backend, wait, &polled);
		if (n == SOCKET_ERROR) {
			int err = WSAGetLastError();

			/* A socket closed under a started watcher (a caller's bug): report it, as
			 * epoll would drop it, instead of failing every iteration. */
			if (err != WSAENOTSOCK)
				return err == WSAEINTR ? 0 : -wsa_errno(err);
			lost = true;
			polled = false;
		}
		nfired = collect(backend, polled, lost, fired);
		if (nfired > 0 || timeout_ms == 0)
			return nfired;
		if (lost)
			return -EBADF;
		if (timeout_ms < 0) {
			wait = -1;
			continue;
		}
		now = loop_backend_now_ms();
		if (now >= deadline)
			return 0;
		wait = (int)(deadline - now);
	}
}

uint64_t loop_backend_now_ms(void)
{
	LARGE_INTEGER freq, count;
	uint64_t f, c;

	QueryPerformanceFrequency(&freq);
	QueryPerformanceCounter(&count);
	f = (uint64_t)freq.QuadPart;
	c = (uint64_t)count.QuadPart;
	return c / f * 1000u + c % f * 1000u / f;
}
