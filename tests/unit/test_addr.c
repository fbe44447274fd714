/* test_addr.c — address and CIDR parsing, printing and matching. */
#include "base/addr.h"
#include "check.h"

#include <errno.h>

struct parse_case {
	const char *text;
	int rc;
	int family;
	const char *canonical; /* addr_format of the result */
};

static const struct parse_case parse_cases[] = {
	{"0.0.0.0", 0, ADDR_V4, "0.0.0.0"},
	{"255.255.255.255", 0, ADDR_V4, "255.255.255.255"},
	{"198.51.100.20", 0, ADDR_V4, "198.51.100.20"},
	{"256.1.1.1", -EINVAL, 0, NULL},
	{"1.2.3", -EINVAL, 0, NULL},
	{"1.2.3.4.5", -EINVAL, 0, NULL},
	{"01.2.3.4", -EINVAL, 0, NULL}, /* leading zero: octal to some parsers */
	{"1.2.3.4 ", -EINVAL, 0, NULL},
	{"1..3.4", -EINVAL, 0, NULL},
	{"", -EINVAL, 0, NULL},
	{"1234.1.1.1", -EINVAL, 0, NULL},
	{"::", 0, ADDR_V6, "::"},
	{"::1", 0, ADDR_V6, "::1"},
	{"1::", 0, ADDR_V6, "1::"},
	{"2001:DB8::1", 0, ADDR_V6, "2001:db8::1"},
	{"2001:db8:0:0:1:0:0:1", 0, ADDR_V6, "2001:db8::1:0:0:1"}, /* first of equal runs */
	{"2001:0db8:0000:0000:0000:0000:0002:0001", 0, ADDR_V6, "2001:db8::2:1"},
	{"2001:db8:0:1:1:1:1:1", 0, ADDR_V6, "2001:db8:0:1:1:1:1:1"}, /* no :: for one group */
	{"1:2:3:4:5:6:7:8", 0, ADDR_V6, "1:2:3:4:5:6:7:8"},
	{"1:2:3:4:5:6:7::", 0, ADDR_V6, "1:2:3:4:5:6:7:0"},
	{"::ffff:192.0.2.1", 0, ADDR_V6, "::ffff:192.0.2.1"},
	{"::ffff:c000:201", 0, ADDR_V6, "::ffff:192.0.2.1"},
	{"64:ff9b::192.0.2.1", 0, ADDR_V6, "64:ff9b::c000:201"},
	{"fe80::1:2", 0, ADDR_V6, "fe80::1:2"},
	{"1:2:3:4:5:6:7:8:9", -EINVAL, 0, NULL},
	{"1:2:3:4:5:6:7:8::", -EINVAL, 0, NULL},
	{"1::2::3", -EINVAL, 0, NULL},
	{":::", -EINVAL, 0, NULL},
	{":1::", -EINVAL, 0, NULL},
	{"1:", -EINVAL, 0, NULL},
	{"12345::", -EINVAL, 0, NULL},
	{"g::", -EINVAL, 0, NULL},
	{"::1.2.3", -EINVAL, 0, NULL},
	{"1:2:3:4:5:6:7:1.2.3.4", -EINVAL, 0, NULL},
	{"1:2:3:4:5:6:1.2.3.4", 0, ADDR_V6, "1:2:3:4:5:6:102:304"},
	{"::1.2.3.4:5", -EINVAL, 0, NULL},
	{"fe80::1%eth0", -EINVAL, 0, NULL},
};

static void test_parse_and_format(void)
{
	for (size_t i = 0; i < sizeof parse_cases / sizeof parse_cases[0]; i++) {
		const struct parse_case *c = &parse_cases[i];
		check_case("%s", c->text);
		struct addr a = {.family = 99};
		int rc = addr_parse(&a, c->text, strlen(c->text));
		CHECK_EQ(rc, c->rc);
		if (c->rc != 0) {
			CHECK_EQ(a.family, 99); /* unchanged on error */
			continue;
		}
		CHECK_EQ(a.family, c->family);
		char text[ADDR_STRLEN];
		CHECK_EQ(addr_format(&a, text, sizeof text), (long long)strlen(c->canonical));
		CHECK_STR_EQ(text, c->canonical);
		struct addr again;
		CHECK_EQ(addr_parse(&again, text, strlen(text)), 0);
		CHECK(addr_equal(&a, &again));
	}
}

static void test_parse_uses_only_len_bytes(void)
{
	struct addr a;
	const char *text = "10.1.2.3:8080";
	CHECK_EQ(addr_parse(&a, text, 8), 0);
	char out[ADDR_STRLEN];
	addr_format(&a, out, sizeof out);
	CHECK_STR_EQ(out, "10.1.2.3");
}

static void test_format_small_buffer(void)
{
	struct addr a;
	addr_parse(&a, "2001:db8::1", 11);
	char out[12];
	CHECK_EQ(addr_format(&a, out, 11), -ENOSPC);
	CHECK_STR_EQ(out, "");
	CHECK_EQ(addr_format(&a, out, 12), 11);
	CHECK_EQ(addr_format(&a, out, 0), -ENOSPC);
	char longest[ADDR_STRLEN];
	addr_parse(&a, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 39);
	CHECK_EQ(addr_format(&a, longest, sizeof longest), 39);
	addr_parse(&a, "::ffff:255.255.255.255", 22);
	CHECK_EQ(addr_format(&a, longest, sizeof longest), 22);
}

static void test_format_port(void)
{
	struct addr a;
	char out[ADDR_PORT_STRLEN];
	addr_parse(&a, "198.51.100.20", 13);
	CHECK_EQ(addr_format_port(&a, 80, out, sizeof out), 16);
	CHECK_STR_EQ(out, "198.51.100.20:80");
	addr_parse(&a, "2001:db8::1", 11);
	addr_format_port(&a, 65535, out, sizeof out);
	CHECK_STR_EQ(out, "[2001:db8::1]:65535");
}

static void test_equal_and_unmap(void)
{
	struct addr v4, v6, mapped, out;
	addr_parse(&v4, "192.0.2.1", 9);
	addr_parse(&mapped, "::ffff:192.0.2.1", 16);
	addr_parse(&v6, "::c000:201", 10);
	CHECK(!addr_equal(&v4, &mapped));
	CHECK(addr_unmap_v4(&mapped, &out));
	CHECK(addr_equal(&v4, &out));
	CHECK(!addr_unmap_v4(&v6, &out));
	CHECK(addr_equal(&v6, &out));
	CHECK(!addr_unmap_v4(&v4, &out));
	CHECK(addr_equal(&v4, &out));
}

struct embedded_case {
	const char *text;
	const char *v4; /* NULL: carries none */
};

static const struct embedded_case embedded_cases[] = {
	{"::ffff:192.0.2.1", "192.0.2.1"},
	{"::192.0.2.1", "192.0.2.1"},
	{"::0.0.0.2", "0.0.0.2"},
	{"::1.0.0.0", "1.0.0.0"},
	{"64:ff9b::192.0.2.1", "192.0.2.1"},
	{"64:ff9b::", "0.0.0.0"},
	{"::", NULL},
	{"::1", NULL},
	{"::1:0:0", NULL},
	{"::fffe:192.0.2.1", NULL},
	{"64:ff9b:1::192.0.2.1", NULL}, /* local-use NAT64: the embedding depends on the network */
	{"64:ff9a::192.0.2.1", NULL},
	{"2001:db8::192.0.2.1", NULL},
	{"192.0.2.1", NULL},
};

static void test_embedded_v4(void)
{
	for (size_t i = 0; i < sizeof embedded_cases / sizeof embedded_cases[0]; i++) {
		const struct embedded_case *c = &embedded_cases[i];
		struct addr a, out, want;
		char text[ADDR_STRLEN];
		check_case("%s", c->text);
		CHECK_EQ(addr_parse(&a, c->text, strlen(c->text)), 0);
		CHECK_EQ(addr_embedded_v4(&a, &out), c->v4 != NULL);
		addr_format(&out, text, sizeof text);
		if (c->v4) {
			CHECK_STR_EQ(text, c->v4);
		} else {
			CHECK(addr_equal(&out, &a));
		}
		want = out;
		CHECK_EQ(addr_embedded_v4(&a, &a), c->v4 != NULL); /* in place */
		CHECK(addr_equal(&a, &want));
	}
}

struct cidr_case {
	const char *text;
	int rc;
	const char *canonical;
	const char *inside;
	const char *outside;
};

static const struct cidr_case cidr_cases[] = {
	{"10.0.0.0/8", 0, "10.0.0.0/8", "10.255.1.2", "11.0.0.0"},
	{"198.51.100.7", 0, "198.51.100.7/32", "198.51.100.7", "198.51.100.8"},
	{"0.0.0.0/0", 0, "0.0.0.0/0", "203.0.113.9", "::1"},
	{"172.16.0.0/12", 0, "172.16.0.0/12", "172.31.255.255", "172.32.0.0"},
	{"192.0.2.128/25", 0, "192.0.2.128/25", "192.0.2.200", "192.0.2.127"},
	{"10.0.0.1/8", -EDOM, "10.0.0.0/8", "10.9.9.9", "9.0.0.0"},
	{"2001:db8::/32", 0, "2001:db8::/32", "2001:db8:ffff::1", "2001:db9::"},
	{"::/0", 0, "::/0", "::1", "1.2.3.4"},
	{"fe80::/10", 0, "fe80::/10", "febf::1", "fec0::"},
	{"::1", 0, "::1/128", "::1", "::2"},
	{"10.0.0.0/33", -ERANGE, NULL, NULL, NULL},
	{"::/129", -ERANGE, NULL, NULL, NULL},
	{"10.0.0.0/", -EINVAL, NULL, NULL, NULL},
	{"10.0.0.0/08", -EINVAL, NULL, NULL, NULL},
	{"10.0.0.0/-1", -EINVAL, NULL, NULL, NULL},
	{"10.0.0.0/1000", -EINVAL, NULL, NULL, NULL},
	{"/8", -EINVAL, NULL, NULL, NULL},
	{"example.com/8", -EINVAL, NULL, NULL, NULL},
};

static void test_cidr(void)
{
	for (size_t i = 0; i < sizeof cidr_cases / sizeof cidr_cases[0]; i++) {
		const struct cidr_case *c = &cidr_cases[i];
		check_case("%s", c->text);
		struct cidr p;
		CHECK_EQ(cidr_parse(&p, c->text, strlen(c->text)), c->rc);
		if (!c->canonical)
			continue;
		char text[ADDR_STRLEN + 5];
		CHECK(cidr_format(&p, text, sizeof text) > 0);
		CHECK_STR_EQ(text, c->canonical);
		struct addr in, out;
		CHECK_EQ(addr_parse(&in, c->inside, strlen(c->inside)), 0);
		CHECK_EQ(addr_parse(&out, c->outside, strlen(c->outside)), 0);
		CHECK(cidr_contains(&p, &in));
		CHECK(!cidr_contains(&p, &out));
	}
}

static const struct check_test tests[] = {
	{"parse_and_format", test_parse_and_format},
	{"parse_uses_only_len_bytes", test_parse_uses_only_len_bytes},
	{"format_small_buffer", test_format_small_buffer},
	{"format_port", test_format_port},
	{"equal_and_unmap", test_equal_and_unmap},
	{"embedded_v4", test_embedded_v4},
	{"cidr", test_cidr},
};

CHECK_MAIN(tests)
