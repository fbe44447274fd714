/* test_audit.c — audit events: exact lines, timestamps, bounds, truncation, files and errors. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "audit/audit.h"
#include "base/addr.h"
#include "check.h"
#include "json_validate.h"

/* U+FFFD as UTF-8. */
#define R "\xEF\xBF\xBD"
/* 2026-11-25T04:22:22.123Z */
#define T0 INT64_C(1795580542123)
#define HEAD(event) \
	"{\"ts\":\"2026-11-25T04:22:22.123Z\",\"session\":\"s-1\",\"event\":\"" event "\""

static char file_text[1 << 20];

static struct addr ip(const char *text)
{
	struct addr a = {0};

	CHECK_EQ(addr_parse(&a, text, strlen(text)), 0);
	return a;
}

/* Reads the whole stream from its start into file_text; returns its length. */
static size_t read_back(FILE *f)
{
	size_t n;

	fflush(f);
	rewind(f);
	n = fread(file_text, 1, sizeof file_text - 1, f);
	file_text[n] = '\0';
	return n;
}

/* Checks that text holds only complete lines, each one valid JSON object; returns their number. */
static int check_lines(const char *text)
{
	int lines = 0;

	while (*text) {
		const char *nl = strchr(text, '\n');
		const char *problem;

		CHECK(nl != NULL);
		if (!nl)
			break;
		problem = json_validate_object(text, (size_t)(nl - text));
		if (problem)
			check_fail(__FILE__, __LINE__, "line %d: %s", lines + 1, problem);
		CHECK((size_t)(nl - text) + 1 <= AUDIT_LINE_MAX);
		lines++;
		text = nl + 1;
	}
	return lines;
}

static int emit_start_full(struct audit *a)
{
	static const char *const argv[] = {"npm", "install", "--save"};
	struct audit_session_start ev = {
		.meta = {T0, 4242, "/usr/bin/npm"}, .argv = argv, .argc = 3, .mode = "netns",
	};
	return audit_log_session_start(a, &ev);
}

static int emit_start_minimal(struct audit *a)
{
	struct audit_session_start ev = {.meta = {T0, 0, NULL}};
	return audit_log_session_start(a, &ev);
}

static int emit_start_escaped(struct audit *a)
{
	static const char *const argv[] = {"sh", "-c", "echo \"hi\"\n\xff"};
	struct audit_session_start ev = {.meta = {T0, -5, NULL}, .argv = argv, .argc = 3};
	return audit_log_session_start(a, &ev);
}

static int emit_end_plain(struct audit *a)
{
	struct audit_session_end ev = {.meta = {T0, 4242, NULL}, .exit_status = 0};
	return audit_log_session_end(a, &ev);
}

static int emit_end_stats(struct audit *a)
{
	static const struct audit_stat stats[] = {
		{"connections", 12}, {"denied", 3}, {"delta", -1},
	};
	struct audit_session_end ev = {
		.meta = {T0, 0, NULL}, .exit_status = 130, .stats = stats, .n_stats = 3,
	};
	return audit_log_session_end(a, &ev);
}

static int emit_dns_allow(struct audit *a)
{
	struct addr answers[] = {ip("198.51.100.7"), ip("2001:db8::1")};
	struct audit_dns ev = {
		.meta = {T0, 77, "/usr/bin/node"},
		.qname = "registry.npmjs.org",
		.qtype = 1,
		.decision = AUDIT_ALLOW,
		.rule = "policy.rules:1",
		.answers = answers,
		.n_answers = 2,
		.resolver = ip("192.0.2.53"),
		.resolver_port = 53,
	};
	return audit_log_dns(a, &ev);
}

static int emit_dns_deny(struct audit *a)
{
	struct audit_dns ev = {
		.meta = {T0, 0, NULL},
		.qname = "evil.test",
		.qtype = 28,
		.decision = AUDIT_DENY,
		.rule = "policy.rules:5",
	};
	return audit_log_dns(a, &ev);
}

static int emit_dns_unknown_type(struct audit *a)
{
	struct audit_dns ev = {
		.meta = {T0, 0, NULL},
		.qname = "x.test.",
		.qtype = 65280,
		.decision = AUDIT_ALLOW,
		.resolver = ip("2001:db8::53"),
		.error = "timeout",
	};
	return audit_log_dns(a, &ev);
}

static int emit_dns_hostile_name(struct audit *a)
{
	struct audit_dns ev = {
		.meta = {T0, 0, NULL},
		.qname = "a\"b\x01\xff\xE2\x80\xA8\\046.test",
		.qtype = 16,
		.decision = AUDIT_DENY,
		.rule = "default",
	};
	return audit_log_dns(a, &ev);
}

static int emit_dns_dropped(struct audit *a)
{
	struct addr answers[] = {ip("198.51.100.7")};
	struct audit_dns_dropped dropped[] = {
		{ip("10.0.0.5"), "guard:private"},
		{ip("::ffff:127.0.0.1"), "guard:loopback"},
	};
	struct audit_dns ev = {
		.meta = {T0, 0, NULL},
		.qname = "rebind.test",
		.qtype = 1,
		.decision = AUDIT_ALLOW,
		.rule = "default",
		.answers = answers,
		.n_answers = 1,
		.dropped = dropped,
		.n_dropped = 2,
		.resolver = ip("192.0.2.53"),
	};
	return audit_log_dns(a, &ev);
}

static int emit_dns_refused_type(struct audit *a)
{
	struct audit_dns ev = {
		.meta = {T0, 0, NULL},
		.qname = "tunnel.test",
		.qtype = 10,
		.decision = AUDIT_DENY,
		.rule = "qtype",
		.error = "query type not forwarded",
	};
	return audit_log_dns(a, &ev);
}

static int emit_connect_full(struct audit *a)
{
	struct audit_connect ev = {
		.meta = {T0, 7, "/usr/bin/curl"},
		.proto = AUDIT_TCP,
		.dst = ip("198.51.100.20"),
		.dport = 443,
		.domain = "b.test",
		.domain_src = AUDIT_SRC_SNI,
		.decision = AUDIT_ALLOW,
		.rule = "policy.rules:7",
		.audit = true,
	};
	return audit_log_connect(a, &ev);
}

static int emit_connect_deny(struct audit *a)
{
	struct audit_connect ev = {
		.meta = {T0, 0, NULL},
		.dst = ip("2001:db8::20"),
		.dport = 80,
		.decision = AUDIT_DENY,
		.rule = "default",
	};
	return audit_log_connect(a, &ev);
}

static int emit_connect_error(struct audit *a)
{
	struct audit_connect ev = {
		.meta = {T0, 9, NULL},
		.dst = ip("198.51.100.21"),
		.dport = 8080,
		.domain = "c.test",
		.domain_src = AUDIT_SRC_DNS,
		.decision = AUDIT_ALLOW,
		.rule = "p:2",
		.error = "connection refused",
	};
	return audit_log_connect(a, &ev);
}

static int emit_connect_host_no_src(struct audit *a)
{
	struct audit_connect ev = {
		.meta = {T0, 0, NULL},
		.proto = AUDIT_UDP,
		.dst = ip("::ffff:198.51.100.22"),
		.dport = 80,
		.domain = "d.test",
		.decision = AUDIT_ALLOW,
	};
	return audit_log_connect(a, &ev);
}

static int emit_close(struct audit *a)
{
	struct audit_close ev = {
		.meta = {T0, 7, NULL},
		.dst = ip("198.51.100.20"),
		.dport = 443,
		.bytes_out = 517,
		.bytes_in = UINT64_MAX,
		.duration_ms = 1234,
	};
	return audit_log_close(a, &ev);
}

static int emit_close_unknown_dst(struct audit *a)
{
	struct audit_close ev = {.meta = {T0, 0, NULL}, .dport = 1};
	return audit_log_close(a, &ev);
}

static int emit_udp(struct audit *a)
{
	struct audit_udp ev = {
		.meta = {T0, 0, NULL},
		.dst = ip("198.51.100.9"),
		.dport = 443,
		.decision = AUDIT_DENY,
		.rule = "default",
	};
	return audit_log_udp(a, &ev);
}

static int emit_fail_entered(struct audit *a)
{
	static const struct audit_stat stats[] = {{"errors", 10}};
	struct audit_fail_mode ev = {
		.meta = {T0, 0, NULL},
		.state = AUDIT_FAIL_ENTERED,
		.fail = AUDIT_FAIL_CLOSED,
		.reason = "10 consecutive errors",
		.stats = stats,
		.n_stats = 1,
	};
	return audit_log_fail_mode(a, &ev);
}

static int emit_fail_left(struct audit *a)
{
	struct audit_fail_mode ev = {
		.meta = {T0, 0, NULL}, .state = AUDIT_FAIL_LEFT, .fail = AUDIT_FAIL_OPEN,
	};
	return audit_log_fail_mode(a, &ev);
}

static const struct {
	const char *name;
	int (*emit)(struct audit *a);
	const char *line;
} events[] = {
	{"session_start full", emit_start_full,
	 HEAD("session_start") ",\"pid\":4242,\"exe\":\"/usr/bin/npm\","
	 "\"command\":[\"npm\",\"install\",\"--save\"],\"mode\":\"netns\"}\n"},
	{"session_start minimal", emit_start_minimal, HEAD("session_start") ",\"command\":[]}\n"},
	{"session_start escaped argv, negative pid", emit_start_escaped,
	 HEAD("session_start") ",\"command\":[\"sh\",\"-c\",\"echo \\\"hi\\\"\\n" R "\"]}\n"},
	{"session_end", emit_end_plain, HEAD("session_end") ",\"pid\":4242,\"exit\":0}\n"},
	{"session_end with stats", emit_end_stats,
	 HEAD("session_end") ",\"exit\":130,"
	 "\"stats\":{\"connections\":12,\"denied\":3,\"delta\":-1}}\n"},
	{"dns allowed", emit_dns_allow,
	 HEAD("dns") ",\"pid\":77,\"exe\":\"/usr/bin/node\",\"qname\":\"registry.npmjs.org\","
	 "\"qtype\":\"A\",\"decision\":\"allow\",\"rule\":\"policy.rules:1\","
	 "\"answers\":[\"198.51.100.7\",\"2001:db8::1\"],\"resolver\":\"192.0.2.53\","
	 "\"resolver_port\":53}\n"},
	{"dns denied", emit_dns_deny,
	 HEAD("dns") ",\"qname\":\"evil.test\",\"qtype\":\"AAAA\",\"decision\":\"deny\","
	 "\"rule\":\"policy.rules:5\"}\n"},
	{"dns unknown type, no answers, error", emit_dns_unknown_type,
	 HEAD("dns") ",\"qname\":\"x.test.\",\"qtype\":65280,\"decision\":\"allow\","
	 "\"answers\":[],\"resolver\":\"2001:db8::53\",\"error\":\"timeout\"}\n"},
	{"dns hostile name", emit_dns_hostile_name,
	 HEAD("dns") ",\"qname\":\"a\\\"b\\u0001" R "\\u2028\\\\046.test\",\"qtype\":\"TXT\","
	 "\"decision\":\"deny\",\"rule\":\"default\"}\n"},
	{"connect audited", emit_connect_full,
	 HEAD("connect") ",\"pid\":7,\"exe\":\"/usr/bin/curl\",\"proto\":\"tcp\","
	 "\"dst\":\"198.51.100.20\",\"dport\":443,\"domain\":\"b.test\",\"domain_src\":\"sni\","
	 "\"decision\":\"allow\",\"rule\":\"policy.rules:7\",\"audit\":true}\n"},
	{"connect denied, no name", emit_connect_deny,
	 HEAD("connect") ",\"proto\":\"tcp\",\"dst\":\"2001:db8::20\",\"dport\":80,"
	 "\"decision\":\"deny\",\"rule\":\"default\"}\n"},
	{"connect dial error", emit_connect_error,
	 HEAD("connect") ",\"pid\":9,\"proto\":\"tcp\",\"dst\":\"198.51.100.21\",\"dport\":8080,"
	 "\"domain\":\"c.test\",\"domain_src\":\"dns\",\"decision\":\"allow\",\"rule\":\"p:2\","
	 "\"error\":\"connection refused\"}\n"},
	{"connect domain without source", emit_connect_host_no_src,
	 HEAD("connect") ",\"proto\":\"udp\",\"dst\":\"::ffff:198.51.100.22\",\"dport\":80,"
	 "\"domain\":\"d.test\",\"decision\":\"allow\"}\n"},
	{"close", emit_close,
	 HEAD("close") ",\"pid\":7,\"dst\":\"198.51.100.20\",\"dport\":443,\"bytes_out\":517,"
	 "\"bytes_in\":18446744073709551615,\"duration_ms\":1234}\n"},
	{"close, unknown destination", emit_close_unknown_dst,
	 HEAD("close") ",\"dst\":null,\"dport\":1,\"bytes_out\":0,\"bytes_in\":0,"
	 "\"duration_ms\":0}\n"},
	{"udp", emit_udp,
	 HEAD("udp") ",\"dst\":\"198.51.100.9\",\"dport\":443,\"decision\":\"deny\","
	 "\"rule\":\"default\"}\n"},
	{"fail_mode entered", emit_fail_entered,
	 HEAD("fail_mode") ",\"state\":\"entered\",\"fail\":\"closed\","
	 "\"reason\":\"10 consecutive errors\",\"stats\":{\"errors\":10}}\n"},
	{"fail_mode left", emit_fail_left,
	 HEAD("fail_mode") ",\"state\":\"left\",\"fail\":\"open\"}\n"},
	{"dns with addresses dropped by the guard", emit_dns_dropped,
	 HEAD("dns") ",\"qname\":\"rebind.test\",\"qtype\":\"A\",\"decision\":\"allow\","
	 "\"rule\":\"default\",\"answers\":[\"198.51.100.7\"],"
	 "\"dropped\":[{\"address\":\"10.0.0.5\",\"rule\":\"guard:private\"},"
	 "{\"address\":\"::ffff:127.0.0.1\",\"rule\":\"guard:loopback\"}],"
	 "\"resolver\":\"192.0.2.53\"}\n"},
	{"dns refused for its type", emit_dns_refused_type,
	 HEAD("dns") ",\"qname\":\"tunnel.test\",\"qtype\":\"NULL\",\"decision\":\"deny\","
	 "\"rule\":\"qtype\",\"error\":\"query type not forwarded\"}\n"},
};

/* Each event alone in a fresh trail: exactly its line, and valid JSON. */
static void test_event_lines(void)
{
	for (size_t i = 0; i < sizeof events / sizeof events[0]; i++) {
		FILE *f = tmpfile();
		struct audit *a = NULL;
		struct audit_counts counts;

		check_case("%s", events[i].name);
		CHECK(f != NULL);
		if (!f)
			return;
		CHECK_EQ(audit_open_stream(&a, f, "s-1"), 0);
		CHECK_EQ(events[i].emit(a), 0);
		audit_counts(a, &counts);
		CHECK_EQ(counts.events, 1);
		CHECK_EQ(counts.truncated, 0);
		CHECK_EQ(counts.errors, 0);
		CHECK_EQ(audit_close(a), 0);
		read_back(f);
		CHECK_STR_EQ(file_text, events[i].line);
		CHECK_EQ(check_lines(file_text), 1);
		fclose(f);
	}
}

/* All events into one trail: one line per event, in order, each as written alone. */
static void test_one_line_per_event(void)
{
	FILE *f = tmpfile();
	struct audit *a = NULL;
	const char *line;
	size_t n = sizeof events / sizeof events[0];

	CHECK(f != NULL);
	if (!f)
		return;
	CHECK_EQ(audit_open_stream(&a, f, "s-1"), 0);
	for (size_t i = 0; i < n; i++)
		CHECK_EQ(events[i].emit(a), 0);
	CHECK_EQ(audit_close(a), 0);
	read_back(f);
	CHECK_EQ(check_lines(file_text), (int)n);
	line = file_text;
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(events[i].line);

		check_case("%s", events[i].name);
		CHECK(strncmp(line, events[i].line, len) == 0);
		line += len;
	}
	fclose(f);
}

static void test_format_time(void)
{
	static const struct {
		int64_t ms;
		const char *text;
	} cases[] = {
		{0, "1970-01-01T00:00:00.000Z"},
		{1, "1970-01-01T00:00:00.001Z"},
		{12, "1970-01-01T00:00:00.012Z"},
		{999, "1970-01-01T00:00:00.999Z"},
		{1000, "1970-01-01T00:00:01.000Z"},
		{-1, "1969-12-31T23:59:59.999Z"},
		{-1000, "1969-12-31T23:59:59.000Z"},
		{-1001, "1969-12-31T23:59:58.999Z"},
		{T0, "2026-11-25T04:22:22.123Z"},
		{INT64_C(951782400000), "2000-02-29T00:00:00.000Z"},
		{INT64_C(951868799999), "2000-02-29T23:59:59.999Z"},
		{INT64_C(951868800000), "2000-03-01T00:00:00.000Z"},
		{INT64_C(1709164800000), "2024-02-29T00:00:00.000Z"},
		{INT64_C(4107542399999), "2100-02-28T23:59:59.999Z"},
		{INT64_C(4107542400000), "2100-03-01T00:00:00.000Z"},
		{INT64_C(-2203891200001), "1900-02-28T23:59:59.999Z"},
		{INT64_C(-2203891200000), "1900-03-01T00:00:00.000Z"},
		{INT64_C(-11670998400000), "1600-02-29T00:00:00.000Z"},
		{INT64_C(-62135596800000), "0001-01-01T00:00:00.000Z"},
		{INT64_C(-62162121600000), "0000-02-29T00:00:00.000Z"},
		{INT64_C(-62162035200000), "0000-03-01T00:00:00.000Z"},
		{INT64_C(-62167219200000), "0000-01-01T00:00:00.000Z"},
		{INT64_C(253402300799999), "9999-12-31T23:59:59.999Z"},
		{INT64_C(-62167219200001), NULL},
		{INT64_C(253402300800000), NULL},
		{INT64_MIN, NULL},
		{INT64_MAX, NULL},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char buf[AUDIT_TS_LEN + 4];
		int n;

		check_case("%lld", (long long)cases[i].ms);
		memset(buf, 'x', sizeof buf);
		n = audit_format_time(buf, AUDIT_TS_LEN, cases[i].ms);
		if (cases[i].text) {
			CHECK_EQ(n, 24);
			CHECK_STR_EQ(buf, cases[i].text);
		} else {
			CHECK_EQ(n, -ERANGE);
			CHECK_EQ(buf[0], '\0');
		}
		CHECK_EQ(buf[AUDIT_TS_LEN], 'x');
	}

	char small[AUDIT_TS_LEN - 1];

	check_case("buffer too small");
	CHECK_EQ(audit_format_time(small, sizeof small, 0), -ENOSPC);
	CHECK_EQ(small[0], '\0');
	CHECK_EQ(audit_format_time(NULL, 0, 0), -ENOSPC);
}

static int days_in_month(int year, int month)
{
	static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

	return month == 2 && leap ? 29 : days[month - 1];
}

/* Writes value as width decimal digits, zero-padded (snprintf is slow for 3.6 million rows). */
static void decimal(char *out, int value, int width)
{
	for (int i = width - 1; i >= 0; i--, value /= 10)
		out[i] = (char)('0' + value % 10);
}

/* Every day of years 0000..9999 against a calendar that counts one day at a time, at a time of
 * day that moves from one day to the next. */
static void test_format_time_every_day(void)
{
	int year = 0, month = 1, day = 1, bad = 0;
	int64_t days = INT64_C(-62167219200000) / 86400000;

	check_case("0000-01-01 onwards");
	for (; year <= 9999; days++) {
		int64_t ms_of_day = (days * 7919 + 1000003) % 86400000;
		char got[AUDIT_TS_LEN], want[AUDIT_TS_LEN] = "0000-00-00T00:00:00.000Z";

		if (ms_of_day < 0)
			ms_of_day += 86400000;
		decimal(want, year, 4);
		decimal(want + 5, month, 2);
		decimal(want + 8, day, 2);
		decimal(want + 11, (int)(ms_of_day / 3600000), 2);
		decimal(want + 14, (int)(ms_of_day / 60000 % 60), 2);
		decimal(want + 17, (int)(ms_of_day / 1000 % 60), 2);
		decimal(want + 20, (int)(ms_of_day % 1000), 3);
		if (audit_format_time(got, sizeof got, days * 86400000 + ms_of_day) != 24 ||
		    strcmp(got, want) != 0) {
			if (bad++ < 5)
				check_fail(__FILE__, __LINE__, "%s != %s", got, want);
		}
		if (++day > days_in_month(year, month)) {
			day = 1;
			if (++month > 12) {
				month = 1;
				year++;
			}
		}
	}
	CHECK_EQ(bad, 0);
	CHECK_EQ(days, INT64_C(253402300800000) / 86400000);
}

/* Thousands of dropped addresses: the list loses its tail, whole entries only. */
static void test_dropped_truncation(void)
{
	static struct audit_dns_dropped dropped[3000];
	FILE *f = tmpfile();
	struct audit *a = NULL;

	CHECK(f != NULL);
	if (!f)
		return;
	for (int i = 0; i < 3000; i++) {
		char text[64];

		snprintf(text, sizeof text, "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
		dropped[i].address = ip(text);
		dropped[i].rule = "guard:private";
	}
	struct audit_dns dns = {
		.meta = {T0, 1, NULL}, .qname = "many.test", .qtype = 1, .decision = AUDIT_ALLOW,
		.dropped = dropped, .n_dropped = 3000, .resolver = ip("192.0.2.53"),
	};
	CHECK_EQ(audit_open_stream(&a, f, "s-1"), 0);
	CHECK_EQ(audit_log_dns(a, &dns), 0);
	CHECK_EQ(audit_close(a), 0);
	read_back(f);
	fclose(f);
	CHECK_EQ(check_lines(file_text), 1);
	CHECK(strstr(file_text, "\"answers\":[],\"dropped\":[{\"address\":\"10.0.0.0\",") != NULL);
	CHECK(strstr(file_text, "\"rule\":\"guard:private\"}],\"resolver\":\"192.0.2.53\","
			       "\"truncated\":true}\n") != NULL);
	CHECK(strlen(file_text) > AUDIT_LINE_MAX - 1100);
}

/* Lists longer than a line can hold lose their tail; the line stays valid and says so. */
static void test_list_truncation(void)
{
	static struct addr answers[3000];
	static const char *argv[3000];
	static struct audit_stat stats[3000];
	static char names[3000][16];
	static const char arg[] = "a-fairly-long-argument-of-forty-bytes...";
	FILE *f = tmpfile();
	struct audit *a = NULL;
	struct audit_counts counts;
	const char *line, *end;

	CHECK(f != NULL);
	if (!f)
		return;
	for (int i = 0; i < 3000; i++) {
		char text[64];

		snprintf(text, sizeof text, "2001:db8:%x::%x", i, i + 1);
		answers[i] = ip(text);
		argv[i] = arg;
		snprintf(names[i], sizeof names[i], "stat_%d", i);
		stats[i].name = names[i];
		stats[i].value = i;
	}
	CHECK_EQ(audit_open_stream(&a, f, "s-1"), 0);

	struct audit_dns dns = {
		.meta = {T0, 1, NULL}, .qname = "many.test", .qtype = 28,
		.decision = AUDIT_ALLOW, .answers = answers, .n_answers = 3000,
		.resolver = ip("192.0.2.53"), .resolver_port = 53, .error = "partial",
	};
	struct audit_session_start start = {
		.meta = {T0, 1, NULL}, .argv = argv, .argc = 3000, .mode = "divert",
	};
	struct audit_session_end finish = {
		.meta = {T0, 1, NULL}, .exit_status = 1, .stats = stats, .n_stats = 3000,
	};

	CHECK_EQ(audit_log_dns(a, &dns), 0);
	CHECK_EQ(audit_log_session_start(a, &start), 0);
	CHECK_EQ(audit_log_session_end(a, &finish), 0);
	audit_counts(a, &counts);
	CHECK_EQ(counts.events, 3);
	CHECK_EQ(counts.truncated, 3);
	CHECK_EQ(audit_close(a), 0);
	read_back(f);
	CHECK_EQ(check_lines(file_text), 3);
	if (check_lines(file_text) != 3) {
		fclose(f);
		return;
	}

	check_case("dns");
	line = file_text;
	end = strchr(line, '\n');
	CHECK(strstr(line, "\"answers\":[\"2001:db8::1\",\"2001:db8:1::2\",") != NULL);
	CHECK(strstr(line, "],\"resolver\":\"192.0.2.53\",\"resolver_port\":53,"
		      "\"error\":\"partial\",\"truncated\":true}\n") != NULL);
	CHECK((size_t)(end - line) > AUDIT_LINE_MAX - 1100);

	check_case("session_start");
	line = end + 1;
	end = strchr(line, '\n');
	CHECK(strstr(line, "\"],\"mode\":\"divert\",\"truncated\":true}\n") != NULL);
	CHECK((size_t)(end - line) > AUDIT_LINE_MAX - 1100);

	check_case("session_end");
	line = end + 1;
	CHECK(strstr(line, ",\"exit\":1,\"stats\":{\"stat_0\":0,\"stat_1\":1,") != NULL);
	CHECK(strstr(line, "},\"truncated\":true}\n") != NULL);
	fclose(f);
}

/* Free text longer than its bound is cut at a character and flagged, and even with every field
 * at its worst the event is written. */
static void test_field_bounds(void)
{
	static char hostile[20000];
	FILE *f = tmpfile();
	struct audit *a = NULL;
	char session[AUDIT_SESSION_MAX + 1];
	const char *line;

	CHECK(f != NULL);
	if (!f)
		return;
	memset(hostile, 0x01, sizeof hostile - 1); /* each byte becomes six: \u0001 */
	memset(session, 0x01, AUDIT_SESSION_MAX);
	session[AUDIT_SESSION_MAX] = '\0';
	CHECK_EQ(audit_open_stream(&a, f, session), 0);

	struct audit_connect worst = {
		.meta = {T0, INT64_MAX, hostile},
		.dst = ip("2001:db8:1234:5678:9abc:def0:1234:5678"),
		.dport = 65535,
		.domain = hostile,
		.domain_src = AUDIT_SRC_HOST,
		.decision = AUDIT_ALLOW,
		.rule = hostile,
		.audit = true,
		.error = hostile,
	};
	struct audit_dns dns = {
		.meta = {T0, 1, hostile}, .qname = hostile, .qtype = 1, .decision = AUDIT_ALLOW,
		.rule = hostile, .resolver = ip("192.0.2.1"), .error = hostile,
	};
	struct audit_fail_mode fail = {.meta = {T0, 1, hostile}, .reason = hostile};

	CHECK_EQ(audit_log_connect(a, &worst), 0);
	CHECK_EQ(audit_log_dns(a, &dns), 0);
	CHECK_EQ(audit_log_fail_mode(a, &fail), 0);
	CHECK_EQ(audit_close(a), 0);
	read_back(f);
	CHECK_EQ(check_lines(file_text), 3);
	if (check_lines(file_text) != 3) {
		fclose(f);
		return;
	}
	line = file_text;
	for (int i = 0; i < 3; i++) {
		const char *end = strchr(line, '\n');

		check_case("line %d", i + 1);
		CHECK(strstr(line, "\"truncated\":true}\n") == end - strlen("\"truncated\":true}"));
		line = end + 1;
	}

	/* The exe is cut to exactly as many whole escapes as fit in AUDIT_PATH_OUT. */
	const char *exe = strstr(file_text, "\"exe\":\"");

	check_case("exe bound");
	CHECK(exe != NULL);
	if (exe) {
		const char *value = exe + strlen("\"exe\":");
		const char *value_end = strchr(value + 1, '"');

		CHECK(value_end != NULL);
		if (value_end)
			CHECK_EQ(value_end + 1 - value, (AUDIT_PATH_OUT - 2) / 6 * 6 + 2);
	}
	fclose(f);
}

/* A trail opened by path appends: two sessions leave two lines. */
static void test_open_appends(void)
{
	static const char path[] = "test_audit_append.jsonl";
	struct audit *a = NULL;
	FILE *f;

	remove(path);
	for (int i = 0; i < 2; i++) {
		CHECK_EQ(audit_open(&a, path, i ? "s-2" : "s-1"), 0);
		CHECK_EQ(emit_fail_left(a), 0);
		CHECK_EQ(audit_close(a), 0);
	}
	f = fopen(path, "rb");
	CHECK(f != NULL);
	if (!f)
		return;
	read_back(f);
	fclose(f);
	remove(path);
	CHECK_EQ(check_lines(file_text), 2);
	CHECK(strstr(file_text, "\"session\":\"s-1\"") < strstr(file_text, "\"session\":\"s-2\""));

	check_case("stderr");
	CHECK_EQ(audit_open(&a, "-", "s-1"), 0);
	CHECK_EQ(audit_close(a), 0);
	CHECK(fflush(stderr) == 0);

	check_case("missing directory");
	CHECK(audit_open(&a, "no-such-directory/trail.jsonl", "s-1") < 0);
	CHECK(a == NULL);
}

static void test_bad_arguments(void)
{
	struct audit *a = NULL;
	struct audit_counts counts;
	FILE *f = tmpfile();
	char long_id[AUDIT_SESSION_MAX + 2];

	CHECK(f != NULL);
	if (!f)
		return;
	memset(long_id, 's', sizeof long_id - 1);
	long_id[sizeof long_id - 1] = '\0';
	CHECK_EQ(audit_open_stream(&a, f, long_id), -EINVAL);
	CHECK_EQ(audit_open_stream(&a, f, ""), -EINVAL);
	CHECK_EQ(audit_open_stream(&a, f, NULL), -EINVAL);
	CHECK_EQ(audit_open(&a, NULL, "s-1"), -EINVAL);
	CHECK_EQ(audit_open_stream(&a, f, "s-1"), 0);

	struct audit_dns no_name = {.meta = {T0, 0, NULL}};
	struct audit_dns bad_decision = {.meta = {T0, 0, NULL}, .qname = "x", .decision = 7};
	struct audit_connect bad_src = {.meta = {T0, 0, NULL}, .domain_src = 9};
	struct audit_close too_late = {.meta = {INT64_C(253402300800000), 0, NULL}};
	struct audit_session_start null_arg = {.meta = {T0, 0, NULL}, .argc = 1};
	struct audit_stat unnamed = {NULL, 1};
	struct audit_session_end bad_stat = {.meta = {T0, 0, NULL}, .stats = &unnamed,
					     .n_stats = 1};
	struct audit_fail_mode bad_state = {.meta = {T0, 0, NULL}, .state = 3};

	CHECK_EQ(audit_log_dns(a, NULL), -EINVAL);
	CHECK_EQ(audit_log_dns(a, &no_name), -EINVAL);
	CHECK_EQ(audit_log_dns(a, &bad_decision), -EINVAL);
	CHECK_EQ(audit_log_connect(a, &bad_src), -EINVAL);
	CHECK_EQ(audit_log_close(a, &too_late), -ERANGE);
	CHECK_EQ(audit_log_session_start(a, &null_arg), -EINVAL);
	CHECK_EQ(audit_log_session_end(a, &bad_stat), -EINVAL);
	CHECK_EQ(audit_log_fail_mode(a, &bad_state), -EINVAL);
	struct audit_dns_dropped no_rule = {ip("10.0.0.5"), NULL};
	struct audit_dns bad_dropped = {.meta = {T0, 0, NULL}, .qname = "x", .dropped = &no_rule,
					.n_dropped = 1};
	struct audit_dns missing_dropped = {.meta = {T0, 0, NULL}, .qname = "x", .n_dropped = 1};
	CHECK_EQ(audit_log_dns(a, &bad_dropped), -EINVAL);
	CHECK_EQ(audit_log_dns(a, &missing_dropped), -EINVAL);
	audit_counts(a, &counts);
	CHECK_EQ(counts.errors, 10);
	CHECK_EQ(counts.events, 0);
	CHECK_EQ(audit_close(a), 0);
	CHECK_EQ(read_back(f), 0);
	fclose(f);

	check_case("no trail");
	CHECK_EQ(audit_log_dns(NULL, &no_name), 0);
	CHECK_EQ(audit_close(NULL), 0);
	audit_counts(NULL, &counts);
	CHECK_EQ(counts.events + counts.errors, 0);
}

/* A failed write is reported and counted; the next line starts on a fresh line. */
static void test_write_error(void)
{
	static const char path[] = "test_audit_write_error.jsonl";
	struct audit *a = NULL;
	struct audit_counts counts;
	FILE *f;
	char want[1024];

	remove(path);
	f = fopen(path, "ab");
	CHECK(f != NULL);
	if (!f)
		return;
	CHECK_EQ(audit_open_stream(&a, f, "s-1"), 0);
	CHECK_EQ(emit_udp(a), 0);
	CHECK(freopen(path, "rb", f) == f);
	CHECK_EQ(emit_udp(a), -EIO);
	CHECK(freopen(path, "ab", f) == f);
	CHECK_EQ(emit_udp(a), 0);
	audit_counts(a, &counts);
	CHECK_EQ(counts.events, 2);
	CHECK_EQ(counts.errors, 1);
	CHECK_EQ(audit_close(a), 0);
	fclose(f);

	f = fopen(path, "rb");
	CHECK(f != NULL);
	if (!f)
		return;
	read_back(f);
	fclose(f);
	remove(path);
	snprintf(want, sizeof want, "%s\n%s", events[15].line, events[15].line);
	CHECK_STR_EQ(events[15].name, "udp");
	CHECK_STR_EQ(file_text, want);
}

static const struct check_test tests[] = {
	{"event_lines", test_event_lines},
	{"one_line_per_event", test_one_line_per_event},
	{"format_time", test_format_time},
	{"format_time_every_day", test_format_time_every_day},
	{"list_truncation", test_list_truncation},
	{"dropped_truncation", test_dropped_truncation},
	{"field_bounds", test_field_bounds},
	{"open_appends", test_open_appends},
	{"bad_arguments", test_bad_arguments},
	{"write_error", test_write_error},
};

CHECK_MAIN(tests)
