/* err_text.c — errno texts: a fixed table for the socket errors, strerror for the rest. */
#include "base/err_text.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

static const struct {
	int err;
	const char *text;
} socket_errors[] = {
	{ EADDRINUSE, "Address already in use" },
	{ EADDRNOTAVAIL, "Cannot assign requested address" },
	{ EAFNOSUPPORT, "Address family not supported by protocol" },
	{ EALREADY, "Operation already in progress" },
	{ ECANCELED, "Operation canceled" },
	{ ECONNABORTED, "Software caused connection abort" },
	{ ECONNREFUSED, "Connection refused" },
	{ ECONNRESET, "Connection reset by peer" },
	{ EDESTADDRREQ, "Destination address required" },
	{ EHOSTUNREACH, "No route to host" },
	{ EINPROGRESS, "Operation now in progress" },
	{ EISCONN, "Transport endpoint is already connected" },
	{ EMSGSIZE, "Message too long" },
	{ ENETDOWN, "Network is down" },
	{ ENETRESET, "Network dropped connection on reset" },
	{ ENETUNREACH, "Network is unreachable" },
	{ ENOBUFS, "No buffer space available" },
	{ ENOPROTOOPT, "Protocol not available" },
	{ ENOTCONN, "Transport endpoint is not connected" },
	{ ENOTSOCK, "Socket operation on non-socket" },
	{ EOPNOTSUPP, "Operation not supported" },
	{ EPROTONOSUPPORT, "Protocol not supported" },
	{ EPROTOTYPE, "Protocol wrong type for socket" },
	{ ETIMEDOUT, "Connection timed out" },
	{ EWOULDBLOCK, "Resource temporarily unavailable" },
};

const char *err_text(int err)
{
	if (err < 0)
		err = err == INT_MIN ? INT_MAX : -err;
	for (size_t i = 0; i < sizeof socket_errors / sizeof socket_errors[0]; i++) {
		if (socket_errors[i].err == err)
			return socket_errors[i].text;
	}
	return strerror(err);
}
