/* test_resolv_conf.c — the nameserver lines of resolv.conf texts (resolv_conf.h). */
#include <string.h>

#include "base/resolv_conf.h"
#include "check.h"

struct conf_case {
	const char *name;
	const char *text;
	const char *want; /* the addresses found, formatted, space-separated */
};

static const struct conf_case cases[] = {
	{ "one", "nameserver 192.0.2.53\n", "192.0.2.53" },
	{ "no final newline", "nameserver 192.0.2.53", "192.0.2.53" },
	{ "three, in order", "nameserver 192.0.2.1\nnameserver 2001:db8::53\nnameserver 10.0.0.1\n",
	  "192.0.2.1 2001:db8::53 10.0.0.1" },
	{ "systemd-resolved stub", "# generated\nnameserver 127.0.0.53\noptions edns0 trust-ad\n"
	  "search example.com\n", "127.0.0.53" },
	{ "blanks and tabs", "  \tnameserver\t \t192.0.2.7   \r\n", "192.0.2.7" },
	{ "zone ignored", "nameserver fe80::1%eth0\n", "fe80::1" },
	{ "comment after the address", "nameserver 192.0.2.8# a comment\nnameserver 192.0.2.9 ;x\n",
	  "192.0.2.8 192.0.2.9" },
	{ "commented out", "#nameserver 192.0.2.1\n; nameserver 192.0.2.2\n", "" },
	{ "keyword case matters", "NAMESERVER 192.0.2.1\nNameserver 192.0.2.2\n", "" },
	{ "keyword must be a word", "nameservers 192.0.2.1\nnameserver\n", "" },
	{ "malformed addresses skipped", "nameserver 192.0.2\nnameserver 300.1.1.1\n"
	  "nameserver localhost\nnameserver 192.0.2.10\n", "192.0.2.10" },
	{ "an empty text", "", "" },
	{ "other keywords", "domain example.com\nsearch a b\noptions ndots:2\n", "" },
	{ "CRLF lines", "nameserver 192.0.2.11\r\nnameserver 192.0.2.12\r\n",
	  "192.0.2.11 192.0.2.12" },
};

static void format_all(const struct addr *a, size_t n, char *out, size_t size)
{
	size_t pos = 0;

	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		char text[ADDR_STRLEN];
		addr_format(&a[i], text, sizeof text);
		pos += (size_t)snprintf(out + pos, size - pos, "%s%s", i ? " " : "", text);
	}
}

static void test_cases(void)
{
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct addr found[RESOLV_CONF_MAX];
		char text[512];
		check_case("%s", cases[i].name);
		size_t n = resolv_conf_nameservers(cases[i].text, strlen(cases[i].text), found,
						   RESOLV_CONF_MAX);
		format_all(found, n, text, sizeof text);
		CHECK_STR_EQ(text, cases[i].want);
	}
}

static void test_bounds(void)
{
	static const char text[] = "nameserver 192.0.2.1\nnameserver 192.0.2.2\n"
				   "nameserver 192.0.2.3\n";
	struct addr found[3];

	CHECK_EQ(resolv_conf_nameservers(text, strlen(text), found, 2), 2);
	CHECK_EQ(resolv_conf_nameservers(text, strlen(text), found, 0), 0);
	/* a length cut inside the second address: only the first counts */
	CHECK_EQ(resolv_conf_nameservers(text, 21 + 15, found, 3), 1);
	/* a NUL inside a line ends nothing: the address before it is malformed */
	static const char nul[] = "nameserver 192.0.2.1\0x\nnameserver 192.0.2.4\n";
	CHECK_EQ(resolv_conf_nameservers(nul, sizeof nul - 1, found, 3), 1);
}

static const struct check_test tests[] = {
	{ "cases", test_cases },
	{ "bounds", test_bounds },
};

CHECK_MAIN(tests)
