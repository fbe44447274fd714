/* test_wsa_windows.c — Winsock start-up and the WSA error codes net.h's callers see as errno. */
#include "check.h"

#include <errno.h>

#include <winsock2.h>

#include "base/wsa_windows.h"

static void test_errno(void)
{
	static const struct {
		const char *name;
		int wsa;
		int want;
	} cases[] = {
		{ "would block", WSAEWOULDBLOCK, EAGAIN },
		{ "refused", WSAECONNREFUSED, ECONNREFUSED },
		{ "reset", WSAECONNRESET, ECONNRESET },
		{ "aborted", WSAECONNABORTED, ECONNABORTED },
		{ "timed out", WSAETIMEDOUT, ETIMEDOUT },
		{ "network unreachable", WSAENETUNREACH, ENETUNREACH },
		{ "host unreachable", WSAEHOSTUNREACH, EHOSTUNREACH },
		{ "host down", WSAEHOSTDOWN, EHOSTUNREACH },
		{ "not connected", WSAENOTCONN, ENOTCONN },
		{ "after shutdown", WSAESHUTDOWN, EPIPE },
		{ "not a socket", WSAENOTSOCK, ENOTSOCK },
		{ "address in use", WSAEADDRINUSE, EADDRINUSE },
		{ "no buffers", WSAENOBUFS, ENOBUFS },
		{ "too many sockets", WSAEMFILE, EMFILE },
		{ "message too long", WSAEMSGSIZE, EMSGSIZE },
		{ "invalid", WSAEINVAL, EINVAL },
		{ "not started", WSANOTINITIALISED, ENOSYS },
		{ "unknown code", 12345, EIO },
		{ "no error code at all", 0, EIO },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		check_case("%s", cases[i].name);
		CHECK_EQ(wsa_errno(cases[i].wsa), cases[i].want);
	}
	check_case("%s", "");
}

/* Started once, then usable; the last error of a failed call comes back translated. */
static void test_start(void)
{
	int type, len = sizeof type;

	CHECK_EQ(wsa_start(), 0);
	CHECK_EQ(wsa_start(), 0);
	CHECK(getsockopt(INVALID_SOCKET, SOL_SOCKET, SO_TYPE, (char *)&type, &len) != 0);
	CHECK_EQ(wsa_last_error(), -ENOTSOCK);
}

static const struct check_test tests[] = {
	{ "errno", test_errno },
	{ "start", test_start },
};

CHECK_MAIN(tests)
