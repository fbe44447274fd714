/* test_err_text.c — errno texts: the socket errors read the same on every platform. */
#include "check.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include "base/err_text.h"

static const struct {
	const char *name;
	int err;
	const char *want;
} cases[] = {
	{ "refused", ECONNREFUSED, "Connection refused" },
	{ "refused, negated", -ECONNREFUSED, "Connection refused" },
	{ "reset", -ECONNRESET, "Connection reset by peer" },
	{ "timed out", -ETIMEDOUT, "Connection timed out" },
	{ "network unreachable", -ENETUNREACH, "Network is unreachable" },
	{ "host unreachable", -EHOSTUNREACH, "No route to host" },
	{ "not connected", -ENOTCONN, "Transport endpoint is not connected" },
	{ "would block", -EWOULDBLOCK, "Resource temporarily unavailable" },
	{ "no buffers", -ENOBUFS, "No buffer space available" },
	{ "a file error, from the C library", -ENOENT, "No such file or directory" },
	{ "broken pipe, from the C library", EPIPE, "Broken pipe" },
};

static void test_texts(void)
{
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		check_case("%s", cases[i].name);
		CHECK_STR_EQ(err_text(cases[i].err), cases[i].want);
	}
	check_case("%s", "");
}

/* Values without an entry get strerror's text; the most negative int is no trap. */
static void test_fallback(void)
{
	static const int errs[] = { 0, EINVAL, ENOMEM, EACCES, 12345 };

	for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
		char want[256];

		check_case("errno %d", errs[i]);
		snprintf(want, sizeof want, "%s", strerror(errs[i]));
		CHECK_STR_EQ(err_text(errs[i]), want);
		CHECK_STR_EQ(err_text(-errs[i]), want);
	}
	check_case("%s", "");
	CHECK(err_text(INT_MIN) != NULL);
}

/* Where the C library has texts for the socket errors (glibc), the table agrees with them, so
 * that no Linux message changes. */
static void test_same_as_libc(void)
{
	static const int errs[] = {
		EADDRINUSE, EADDRNOTAVAIL, EAFNOSUPPORT, EALREADY, ECANCELED, ECONNABORTED,
		ECONNREFUSED, ECONNRESET, EDESTADDRREQ, EHOSTUNREACH, EINPROGRESS, EISCONN,
		EMSGSIZE, ENETDOWN, ENETRESET, ENETUNREACH, ENOBUFS, ENOPROTOOPT, ENOTCONN,
		ENOTSOCK, EOPNOTSUPP, EPROTONOSUPPORT, EPROTOTYPE, ETIMEDOUT, EWOULDBLOCK,
	};

	for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
		const char *libc = strerror(errs[i]);

		check_case("errno %d", errs[i]);
		if (strncmp(libc, "Unknown error", 13) != 0)
			CHECK_STR_EQ(err_text(errs[i]), libc);
	}
	check_case("%s", "");
}

static const struct check_test tests[] = {
	{ "texts", test_texts },
	{ "fallback", test_fallback },
	{ "same_as_libc", test_same_as_libc },
};

CHECK_MAIN(tests)
