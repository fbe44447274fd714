/* wsa_windows.c — Winsock start-up and the translation of WSA error codes to errno values. */
#include "base/wsa_windows.h"

#include <errno.h>

#include <winsock2.h>
#include <windows.h>

static INIT_ONCE wsa_once = INIT_ONCE_STATIC_INIT;
static int wsa_started;

static BOOL CALLBACK wsa_start_once(PINIT_ONCE once, PVOID param, PVOID *context)
{
	WSADATA data;
	int rc = WSAStartup(MAKEWORD(2, 2), &data);

	(void)once;
	(void)param;
	(void)context;
	if (rc != 0)
		wsa_started = -wsa_errno(rc);
	else if (LOBYTE(data.wVersion) != 2 || HIBYTE(data.wVersion) != 2)
		wsa_started = -ENOSYS;
	else
		wsa_started = 1;
	return TRUE;
}

int wsa_start(void)
{
	InitOnceExecuteOnce(&wsa_once, wsa_start_once, NULL, NULL);
	return wsa_started > 0 ? 0 : wsa_started;
}

static const struct {
	int wsa;
	int err;
} wsa_errors[] = {
	{ WSAEWOULDBLOCK, EAGAIN },
	{ WSAEINPROGRESS, EINPROGRESS },
	{ WSAEALREADY, EALREADY },
	{ WSAEINTR, EINTR },
	{ WSAEBADF, EBADF },
	{ WSAEACCES, EACCES },
	{ WSAEFAULT, EFAULT },
	{ WSAEINVAL, EINVAL },
	{ WSAEMFILE, EMFILE },
	{ WSAENOTSOCK, ENOTSOCK },
	{ WSAEDESTADDRREQ, EDESTADDRREQ },
	{ WSAEMSGSIZE, EMSGSIZE },
	{ WSAEPROTOTYPE, EPROTOTYPE },
	{ WSAENOPROTOOPT, ENOPROTOOPT },
	{ WSAEPROTONOSUPPORT, EPROTONOSUPPORT },
	{ WSAESOCKTNOSUPPORT, EPROTONOSUPPORT },
	{ WSAEOPNOTSUPP, EOPNOTSUPP },
	{ WSAEPFNOSUPPORT, EAFNOSUPPORT },
	{ WSAEAFNOSUPPORT, EAFNOSUPPORT },
	{ WSAEADDRINUSE, EADDRINUSE },
	{ WSAEADDRNOTAVAIL, EADDRNOTAVAIL },
	{ WSAENETDOWN, ENETDOWN },
	{ WSAENETUNREACH, ENETUNREACH },
	{ WSAENETRESET, ENETRESET },
	{ WSAECONNABORTED, ECONNABORTED },
	{ WSAECONNRESET, ECONNRESET },
	{ WSAENOBUFS, ENOBUFS },
	{ WSAEISCONN, EISCONN },
	{ WSAENOTCONN, ENOTCONN },
	{ WSAESHUTDOWN, EPIPE },
	{ WSAETIMEDOUT, ETIMEDOUT },
	{ WSAECONNREFUSED, ECONNREFUSED },
	{ WSAEHOSTDOWN, EHOSTUNREACH },
	{ WSAEHOSTUNREACH, EHOSTUNREACH },
	{ WSAEDISCON, EPIPE },
	{ WSA_NOT_ENOUGH_MEMORY, ENOMEM },
	{ WSASYSNOTREADY, ENOSYS },
	{ WSAVERNOTSUPPORTED, ENOSYS },
	{ WSANOTINITIALISED, ENOSYS },
};

int wsa_errno(int wsa_error)
{
	for (size_t i = 0; i < sizeof wsa_errors / sizeof wsa_errors[0]; i++) {
		if (wsa_errors[i].wsa == wsa_error)
			return wsa_errors[i].err;
	}
	return EIO;
}

int wsa_last_error(void)
{
	return -wsa_errno(WSAGetLastError());
}
