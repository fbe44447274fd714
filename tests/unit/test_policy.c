/* test_policy.c — the policy language: parsing and its messages, decisions, the index against a
 * plain first-match scan, shadowed-rule warnings, and the built-in policy. */
#include "policy/policy.h"
#include "policy/policy_internal.h"
#include "check.h"

#include <errno.h>
#include <stdbool.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static struct policy *parse(const char *text, struct policy_report *report)
{
	struct policy *p = NULL;
	int rc = policy_parse(&p, "p.rules", text, strlen(text), report);
	if (rc != 0) {
		check_fail(__FILE__, __LINE__, "policy_parse returned %d: %s", rc,
			   report && report->count ? report->messages[0].text : "");
		return NULL;
	}
	return p;
}

/* ----- Parsing ----- */

struct error_case {
	const char *name;
	const char *text;
	const char *message; /* the first message */
};

static const struct error_case error_cases[] = {
	{"port name", "allow domain a.test\n\nallow domain b.test port https\n",
	 "p.rules:3: expected a port number or range after 'port', got 'https'"},
	{"unknown start", "permit domain a.test\n",
	 "p.rules:1: expected 'allow', 'deny', 'audit' or 'default' at the start of a rule, "
	 "got 'permit'"},
	{"comma at start", ",allow\n",
	 "p.rules:1: expected 'allow', 'deny', 'audit' or 'default' at the start of a rule, "
	 "got ','"},
	{"uppercase action", "# x\nAllow domain a.test\n",
	 "p.rules:2: keywords are lowercase: write 'allow', not 'Allow'"},
	{"uppercase keyword", "allow DOMAIN a.test\n",
	 "p.rules:1: keywords are lowercase: write 'domain', not 'DOMAIN'"},
	{"uppercase default", "default DENY\n",
	 "p.rules:1: keywords are lowercase: write 'deny', not 'DENY'"},
	{"uppercase proto", "allow proto TCP\n",
	 "p.rules:1: protocols are lowercase: write 'tcp' or 'udp', not 'TCP'"},
	{"bare action", "allow\n",
	 "p.rules:1: expected 'domain', 'cidr', 'port' or 'proto' after 'allow' (to decide "
	 "everything else, end the file with 'default allow')"},
	{"bare deny with comment", "deny # everything\n",
	 "p.rules:1: expected 'domain', 'cidr', 'port' or 'proto' after 'deny' (to decide "
	 "everything else, end the file with 'default deny')"},
	{"unknown clause", "allow host a.test\n",
	 "p.rules:1: expected 'domain', 'cidr', 'port' or 'proto', got 'host'"},
	{"domain missing", "allow domain\n",
	 "p.rules:1: expected a domain name or pattern after 'domain'"},
	{"domain comma", "allow domain ,a.test\n",
	 "p.rules:1: expected a domain name or pattern after 'domain', got ','"},
	{"trailing comma", "allow domain a.test,\n",
	 "p.rules:1: expected a domain name or pattern after ','"},
	{"trailing comma then comment", "allow port 80, # web\n",
	 "p.rules:1: expected a port number or range after ','"},
	{"domain keyword", "allow domain port 443\n",
	 "p.rules:1: expected a domain name or pattern after 'domain', got the keyword 'port'"},
	{"partial wildcard", "allow domain foo*.com\n",
	 "p.rules:1: '*' must be a whole label in domain 'foo*.com' (write '*.example.com', which "
	 "matches one label or more)"},
	{"empty label", "allow domain a..test\n", "p.rules:1: empty label in domain 'a..test'"},
	{"leading dot", "allow domain .a.test\n", "p.rules:1: empty label in domain '.a.test'"},
	{"only a dot", "allow domain .\n", "p.rules:1: empty domain name '.'"},
	{"long label",
	 "allow domain aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.test\n",
	 "p.rules:1: label longer than 63 characters in domain "
	 "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...'"},
	{"non-ASCII", "allow domain b\xc3\xbc\x63her.example\n",
	 "p.rules:1: non-ASCII domain 'b\xc3\xbc\x63her.example': write its punycode form "
	 "('xn--...')"},
	{"bad character", "allow domain a!b.test\n",
	 "p.rules:1: unexpected character '!' in domain 'a!b.test' (names use letters, digits, "
	 "'-', '_' and '*' labels)"},
	{"port in domain", "allow domain a.test:443\n",
	 "p.rules:1: unexpected character ':' in domain 'a.test:443' (names use letters, digits, "
	 "'-', '_' and '*' labels)"},
	{"address as domain", "allow domain 10.0.0.1\n",
	 "p.rules:1: '10.0.0.1' is an address, not a name: write 'cidr 10.0.0.1'"},
	{"numeric tld", "allow domain a.123\n",
	 "p.rules:1: domain 'a.123' ends in a number, which no host name does (for an address "
	 "write 'cidr')"},
	{"cidr host bits", "allow cidr 10.0.0.1/8\n",
	 "p.rules:1: host bits are set in '10.0.0.1/8': write '10.0.0.0/8' (or '10.0.0.1' for "
	 "the one address)"},
	{"cidr v6 host bits", "allow cidr 2001:db8::1/32\n",
	 "p.rules:1: host bits are set in '2001:db8::1/32': write '2001:db8::/32' (or "
	 "'2001:db8::1' for the one address)"},
	{"cidr v4 too long", "allow cidr 10.0.0.0/33\n",
	 "p.rules:1: prefix length beyond 32 bits in '10.0.0.0/33'"},
	{"cidr v6 too long", "allow cidr ::/129\n",
	 "p.rules:1: prefix length beyond 128 bits in '::/129'"},
	{"cidr name", "allow cidr example.com\n",
	 "p.rules:1: expected an address or prefix (ADDR or ADDR/LEN) after 'cidr', got "
	 "'example.com' (for a name write 'domain')"},
	{"cidr garbage", "allow cidr 10.0.0/8\n",
	 "p.rules:1: expected an address or prefix (ADDR or ADDR/LEN) after 'cidr', got "
	 "'10.0.0/8'"},
	{"cidr missing", "deny cidr # x\n",
	 "p.rules:1: expected an address or prefix (ADDR or ADDR/LEN) after 'cidr'"},
	{"port zero", "allow port 0\n", "p.rules:1: port '0' is out of range (ports are 1-65535)"},
	{"port too big", "allow port 65536\n",
	 "p.rules:1: port '65536' is out of range (ports are 1-65535)"},
	{"port huge", "allow port 99999999999999999999\n",
	 "p.rules:1: port '99999999999999999999' is out of range (ports are 1-65535)"},
	{"port range end too big", "allow port 80-70000\n",
	 "p.rules:1: port '80-70000' is out of range (ports are 1-65535)"},
	{"port backwards", "allow port 90-80\n",
	 "p.rules:1: port range '90-80' is backwards: write '80-90'"},
	{"port open range", "allow port 80-\n",
	 "p.rules:1: expected a port number or range after 'port', got '80-'"},
	{"port negative", "allow port -80\n",
	 "p.rules:1: expected a port number or range after 'port', got '-80'"},
	{"port sign", "allow port +80\n",
	 "p.rules:1: expected a port number or range after 'port', got '+80'"},
	{"port missing", "allow domain a.test port\n",
	 "p.rules:1: expected a port number or range after 'port'"},
	{"port twice", "allow domain a.test port 80 port 443\n",
	 "p.rules:1: a second 'port' in one rule: give one list, 'port 80,443'"},
	{"proto twice", "allow proto tcp proto udp\n",
	 "p.rules:1: a second 'proto' in one rule: give one list, 'proto tcp,udp'"},
	{"proto unknown", "allow proto icmp\n",
	 "p.rules:1: expected 'tcp' or 'udp' after 'proto', got 'icmp'"},
	{"two rules on a line", "allow domain a.test deny domain b.test\n",
	 "p.rules:1: one rule a line: 'deny' starts a new rule, put it on its own line"},
	{"stray comma", "allow domain a.test , , b.test\n",
	 "p.rules:1: expected a domain name or pattern after ',', got ','"},
	{"comma between clauses", "allow domain a.test port 80 ,proto tcp\n",
	 "p.rules:1: expected a port number or range after 'port', got 'proto'"},
	{"default missing action", "default\n",
	 "p.rules:1: expected 'allow' or 'deny' after 'default'"},
	{"default audit", "default audit\n",
	 "p.rules:1: expected 'allow' or 'deny' after 'default', got 'audit'"},
	{"default qualifier", "default deny port 80\n",
	 "p.rules:1: unexpected 'port' after 'default deny': the default takes nothing more"},
	{"default twice", "default deny\n\ndefault allow\n",
	 "p.rules:3: a second 'default' (the first is on line 1)"},
	{"rule after default", "allow domain a.test\ndefault deny\nallow domain b.test\n",
	 "p.rules:3: this rule is never reached: 'default' (line 2) must be the last rule"},
	{"control byte", "allow domain a.test\x01\n",
	 "p.rules:1: unexpected control byte 0x01 (only spaces and tabs separate words)"},
	{"NUL byte", "allow domain a.test\n# \0\n",
	 "p.rules:2: NUL byte in the line (a policy is text)"},
	{"quote shown escaped", "allow domain a'b\n",
	 "p.rules:1: unexpected character ''' in domain 'a\\x27b' (names use letters, digits, "
	 "'-', '_' and '*' labels)"},
};

static void test_parse_errors(void)
{
	for (size_t i = 0; i < ARRAY_LEN(error_cases); i++) {
		const struct error_case *c = &error_cases[i];
		check_case("%s", c->name);
		struct policy_report report;
		struct policy *p = (struct policy *)1;
		size_t len = strlen(c->text);
		if (strcmp(c->name, "NUL byte") == 0)
			len = strlen(c->text) + 2;
		int rc = policy_parse(&p, "p.rules", c->text, len, &report);
		CHECK_EQ(rc, -EINVAL);
		CHECK(p == NULL);
		CHECK(report.errors >= 1);
		CHECK(report.count >= 1);
		CHECK(!report.messages[0].warning);
		CHECK_STR_EQ(report.messages[0].text, c->message);
	}
}

struct ok_case {
	const char *name;
	const char *text;
	size_t rules;
	enum policy_action fallback;
	uint32_t default_line;
};

static const struct ok_case ok_cases[] = {
	{"empty", "", 0, POLICY_DENY, 0},
	{"blank lines", "\n\n   \n\t\n", 0, POLICY_DENY, 0},
	{"comments only", "# one\n   # two\n#\n", 0, POLICY_DENY, 0},
	{"no final newline", "allow domain a.test", 1, POLICY_DENY, 0},
	{"default allow", "deny domain a.test\ndefault allow\n", 1, POLICY_ALLOW, 2},
	{"default deny and comments after", "default deny # end\n# tail\n\n", 0, POLICY_DENY, 1},
	{"CRLF", "allow domain a.test port 443\r\ndeny port 25\r\ndefault allow\r\n", 2,
	 POLICY_ALLOW, 3},
	{"tabs", "allow\tdomain\ta.test\tport\t443\n\tdefault\tallow\t\n", 1, POLICY_ALLOW, 2},
	{"comment glued to a word", "allow domain a.test#comment\n", 1, POLICY_DENY, 0},
	{"spaces around commas", "allow domain a.test , b.test port 80 ,443, 8000-8999\n", 1,
	 POLICY_DENY, 0},
	{"clauses in any order", "allow port 443 proto tcp domain a.test cidr 10.0.0.0/8\n", 1,
	 POLICY_DENY, 0},
	{"repeated targets", "allow domain a.test domain b.test cidr 10.0.0.0/8 cidr ::1\n", 1,
	 POLICY_DENY, 0},
	{"every form", "allow domain registry.npmjs.org port 443\n"
		       "allow domain *.github.com port 80,443      # * is one label or more\n"
		       "allow cidr 198.51.100.0/24 port 8000-8999\n"
		       "allow cidr 2001:db8::/32\n"
		       "deny  domain evil.test\n"
		       "deny  port 25\n"
		       "audit domain *.example.com                  # allow, and mark the event\n"
		       "default deny\n",
	 7, POLICY_DENY, 8},
	{"odd globs", "allow domain * domain api.*.example.com domain *.*.test domain a.* "
		      "domain _srv.x-y.test\n", 1, POLICY_DENY, 0},
	{"cidr /0 and hosts", "deny cidr 0.0.0.0/0,::/0,10.1.2.3,::ffff:10.0.0.0/104\n", 1,
	 POLICY_DENY, 0},
	{"trailing dot and case", "allow domain A.Test. domain *.EXAMPLE.com.\n", 1, POLICY_DENY,
	 0},
	{"port edges", "allow port 1,65535,1-65535,00443\n", 1, POLICY_DENY, 0},
	{"proto list", "allow proto tcp,udp,tcp\n", 1, POLICY_DENY, 0},
	{"UTF-8 in comments", "# caf\xc3\xa9 \xe2\x80\x94 ok\nallow domain a.test # \xc3\xa9\n", 1,
	 POLICY_DENY, 0},
	{"longest name",
	 "allow domain "
	 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
	 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
	 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
	 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.\n",
	 1, POLICY_DENY, 0},
};

static void test_parse_ok(void)
{
	for (size_t i = 0; i < ARRAY_LEN(ok_cases); i++) {
		const struct ok_case *c = &ok_cases[i];
		check_case("%s", c->name);
		struct policy_report report;
		struct policy *p = parse(c->text, &report);
		if (!p)
			continue;
		CHECK_EQ(report.errors, 0);
		CHECK_EQ(policy_rule_count(p), c->rules);
		CHECK_EQ(policy_default_action(p), c->fallback);
		CHECK_EQ(policy_default_line(p), c->default_line);
		CHECK_STR_EQ(policy_file(p), "p.rules");
		policy_free(p);
	}
	policy_free(NULL);
}

static void test_parse_name_lengths(void)
{
	/* 254 characters (253 and a trailing dot) is the longest; 254 without the dot is not. */
	char text[400], name[300];
	memset(name, 'a', 254);
	for (int i = 63; i < 254; i += 64)
		name[i] = '.';
	name[254] = '\0';
	check_case("254 characters");
	snprintf(text, sizeof text, "allow domain %s\n", name);
	struct policy_report report;
	struct policy *p = NULL;
	CHECK_EQ(policy_parse(&p, "p.rules", text, strlen(text), &report), -EINVAL);
	CHECK(strstr(report.messages[0].text, "is longer than 253 characters") != NULL);
	check_case("253 characters and a dot");
	name[253] = '.';
	snprintf(text, sizeof text, "allow domain %s\n", name);
	CHECK_EQ(policy_parse(&p, "p.rules", text, strlen(text), &report), 0);
	policy_free(p);
}

static void test_parse_collects_errors(void)
{
	static const char text[] = "allow domain a.test\n"
				   "allow port https\n"
				   "allow domain ok.test\n"
				   "deny cidr 10.0.0.1/8\n"
				   "default deny\n"
				   "allow domain late.test\n";
	struct policy_report report;
	struct policy *p = NULL;
	CHECK_EQ(policy_parse(&p, "p.rules", text, strlen(text), &report), -EINVAL);
	CHECK_EQ(report.errors, 3);
	CHECK_EQ(report.count, 3);
	CHECK_EQ(report.messages[0].line, 2);
	CHECK_EQ(report.messages[1].line, 4);
	CHECK_EQ(report.messages[2].line, 6);
	CHECK(strncmp(report.messages[2].text, "p.rules:6: this rule is never reached", 37) == 0);

	/* Past POLICY_MAX_ERRORS the parser stops and says so. */
	char many[2048] = "";
	for (int i = 0; i < 30; i++)
		strcat(many, "allow bogus\n");
	CHECK_EQ(policy_parse(&p, "p.rules", many, strlen(many), &report), -EINVAL);
	CHECK_EQ(report.errors, POLICY_MAX_ERRORS + 1);
	CHECK_EQ(report.messages[POLICY_MAX_ERRORS].line, POLICY_MAX_ERRORS);
	CHECK_STR_EQ(report.messages[POLICY_MAX_ERRORS].text,
		     "p.rules:10: too many errors, stopping here");
}

static void test_parse_bounds(void)
{
	struct policy_report report;
	struct policy *p = NULL;

	check_case("line length");
	char line[POLICY_MAX_LINE + 64];
	memset(line, ' ', sizeof line);
	memcpy(line, "allow domain a.test", 19);
	line[POLICY_MAX_LINE] = '\n';
	CHECK_EQ(policy_parse(&p, "p.rules", line, POLICY_MAX_LINE + 1, &report), 0);
	policy_free(p);
	line[POLICY_MAX_LINE] = ' ';
	line[POLICY_MAX_LINE + 1] = '\n';
	CHECK_EQ(policy_parse(&p, "p.rules", line, POLICY_MAX_LINE + 2, &report), -EINVAL);
	CHECK_STR_EQ(report.messages[0].text, "p.rules:1: line longer than 4096 bytes");

	check_case("file size");
	CHECK_EQ(policy_parse(&p, "p.rules", line, (size_t)POLICY_MAX_BYTES + 1, &report), -EFBIG);
	CHECK_STR_EQ(report.messages[0].text, "p.rules: larger than 16777216 bytes");

	check_case("rule count");
	size_t cap = (POLICY_MAX_RULES + 2) * 16;
	char *text = malloc(cap), *o = text, *last = text;
	for (int i = 0; i <= POLICY_MAX_RULES; i++) {
		last = o;
		o += sprintf(o, "deny port %d\n", i % 65535 + 1);
	}
	CHECK_EQ(policy_parse(&p, "p.rules", text, (size_t)(o - text), &report), -EINVAL);
	CHECK_EQ(report.errors, 1);
	CHECK_STR_EQ(report.messages[0].text, "p.rules:100001: too many rules (at most 100000)");
	CHECK_EQ(policy_parse(&p, "p.rules", text, (size_t)(last - text), &report), 0);
	CHECK_EQ(policy_rule_count(p), POLICY_MAX_RULES);
	policy_free(p);
	free(text);
}

static void test_load_file(void)
{
	static const char path[] = "test_policy.tmp.rules";
	FILE *f = fopen(path, "wb");
	CHECK(f != NULL);
	if (!f)
		return;
	fputs("allow domain a.test port 443\r\nallow port https\n", f);
	fclose(f);
	struct policy_report report;
	struct policy *p = NULL;
	CHECK_EQ(policy_load(&p, path, &report), -EINVAL);
	CHECK_STR_EQ(report.messages[0].text, "test_policy.tmp.rules:2: expected a port number or "
					      "range after 'port', got 'https'");
	f = fopen(path, "wb");
	fputs("allow domain a.test port 443\ndefault allow\n", f);
	fclose(f);
	CHECK_EQ(policy_load(&p, path, &report), 0);
	CHECK_EQ(policy_rule_count(p), 1);
	CHECK_EQ(policy_default_action(p), POLICY_ALLOW);
	CHECK_STR_EQ(policy_file(p), path);
	policy_free(p);
	remove(path);

	CHECK_EQ(policy_load(&p, "no/such/dir/p.rules", &report), -ENOENT);
	CHECK(p == NULL);
	CHECK_EQ(report.errors, 1);
	CHECK(strncmp(report.messages[0].text, "no/such/dir/p.rules: cannot read: ", 34) == 0);
}

/* ----- Decisions ----- */

struct query {
	const char *proto; /* "tcp", "udp", or "dns" */
	const char *addr;  /* may be NULL: no address */
	uint16_t port;
	const char *names; /* space-separated */
};

static struct policy_verdict decide(const struct policy *p, const struct query *q)
{
	char buf[512];
	const char *names[8];
	size_t n = 0;
	snprintf(buf, sizeof buf, "%s", q->names ? q->names : "");
	for (char *s = strtok(buf, " "); s && n < 8; s = strtok(NULL, " "))
		names[n++] = s;
	if (strcmp(q->proto, "dns") == 0)
		return policy_decide_dns(p, n ? names[0] : "");
	struct policy_conn c = {
		.proto = strcmp(q->proto, "udp") == 0 ? POLICY_UDP : POLICY_TCP,
		.port = q->port, .names = names, .n_names = n,
	};
	if (q->addr && addr_parse(&c.dst, q->addr, strlen(q->addr)) != 0)
		check_fail(__FILE__, __LINE__, "bad address %s", q->addr);
	struct policy_verdict v = policy_decide_connect(p, &c);
	struct policy_verdict lin = policy_decide_connect_linear(p, &c);
	CHECK_EQ(v.line, lin.line);
	return v;
}

struct match_case {
	const char *name;
	const char *policy;
	struct query q;
	const char *expect; /* "allow", "deny" or "audit" */
	uint32_t line;
};

static const char example_policy[] =
	"allow domain registry.npmjs.org port 443\n"            /* 1 */
	"allow domain *.github.com port 80,443      # *\n"       /* 2 */
	"allow cidr 198.51.100.0/24 port 8000-8999\n"            /* 3 */
	"allow cidr 2001:db8::/32\n"                             /* 4 */
	"deny  domain evil.test\n"                               /* 5 */
	"deny  port 25\n"                                        /* 6 */
	"audit domain *.example.com                  # audit\n"  /* 7 */
	"default deny\n";                                        /* 8 */

/* The worked example of docs/policy.md, "How a connection is decided". */
static const char docs_policy[] = "allow domain a.test port 443\n"
				  "deny  domain a.test\n"
				  "allow cidr 10.0.0.0/8\n"
				  "deny  port 25\n";

static const struct match_case match_cases[] = {
	{"docs 1", docs_policy, {"tcp", "192.0.2.1", 443, "a.test"}, "allow", 1},
	{"docs 2", docs_policy, {"tcp", "192.0.2.1", 80, "a.test"}, "deny", 2},
	{"docs 3", docs_policy, {"tcp", "10.1.2.3", 443, "a.test"}, "allow", 1},
	{"docs 4", docs_policy, {"tcp", "10.1.2.3", 25, NULL}, "allow", 3},
	{"docs 5", docs_policy, {"udp", "192.0.2.1", 25, NULL}, "deny", 4},
	{"docs 5b", docs_policy, {"udp", "10.1.2.3", 53, NULL}, "deny", 0},
	{"docs 6", docs_policy, {"tcp", "192.0.2.1", 22, "b.test a.test"}, "deny", 2},
	{"docs 7", docs_policy, {"tcp", "192.0.2.1", 22, NULL}, "deny", 0},

	{"exact name", example_policy, {"tcp", "192.0.2.1", 443, "registry.npmjs.org"}, "allow", 1},
	{"exact name wrong port", example_policy, {"tcp", "192.0.2.1", 80, "registry.npmjs.org"},
	 "deny", 0},
	{"name case and dot", example_policy, {"tcp", "192.0.2.1", 443, "Registry.NPMJS.org."},
	 "allow", 1},
	{"glob one label", example_policy, {"tcp", "192.0.2.1", 80, "api.github.com"}, "allow", 2},
	{"glob two labels", example_policy, {"tcp", "192.0.2.1", 443, "a.b.github.com"}, "allow",
	 2},
	{"glob needs a label", example_policy, {"tcp", "192.0.2.1", 443, "github.com"}, "deny", 0},
	{"glob is label-wise", example_policy, {"tcp", "192.0.2.1", 443, "evilgithub.com"}, "deny",
	 0},
	{"cidr and range low edge", example_policy, {"tcp", "198.51.100.20", 8000, NULL}, "allow",
	 3},
	{"cidr and range high edge", example_policy, {"tcp", "198.51.100.255", 8999, NULL}, "allow",
	 3},
	{"cidr range below", example_policy, {"tcp", "198.51.100.20", 7999, NULL}, "deny", 0},
	{"cidr range above", example_policy, {"tcp", "198.51.100.20", 9000, NULL}, "deny", 0},
	{"IPv6 cidr", example_policy, {"tcp", "2001:db8:1::5", 22, NULL}, "allow", 4},
	{"IPv6 outside", example_policy, {"tcp", "2001:db9::5", 22, NULL}, "deny", 0},
	{"deny name", example_policy, {"tcp", "192.0.2.1", 443, "evil.test"}, "deny", 5},
	{"target-less", example_policy, {"tcp", "192.0.2.1", 25, NULL}, "deny", 6},
	{"target-less after names", example_policy, {"udp", "192.0.2.1", 25, "x.test"}, "deny", 6},
	{"audit", example_policy, {"tcp", "192.0.2.1", 443, "www.example.com"}, "audit", 7},
	{"names: second name matches", example_policy,
	 {"tcp", "192.0.2.1", 443, "www.example.com registry.npmjs.org"}, "allow", 1},
	{"names: none valid", example_policy, {"tcp", "192.0.2.1", 443, "evil.test:443 10.0.0.1"},
	 "deny", 0},
	{"IP literal matches no domain", "allow domain *\n", {"tcp", "192.0.2.1", 443, NULL},
	 "deny", 0},
	{"bare star any name", "allow domain *\n", {"tcp", "192.0.2.1", 443, "anything.at.all"},
	 "allow", 1},
	{"bare star single label", "allow domain *\n", {"tcp", "192.0.2.1", 443, "localhost"},
	 "allow", 1},
	{"middle star", "allow domain api.*.example.com\n",
	 {"tcp", "192.0.2.1", 443, "api.eu.example.com"}, "allow", 1},
	{"middle star two labels", "allow domain api.*.example.com\n",
	 {"tcp", "192.0.2.1", 443, "api.a.b.example.com"}, "allow", 1},
	{"middle star needs a label", "allow domain api.*.example.com\n",
	 {"tcp", "192.0.2.1", 443, "api.example.com"}, "deny", 0},
	{"trailing star", "allow domain a.*\n", {"tcp", NULL, 443, "a.b.c"}, "allow", 1},
	{"two stars", "allow domain *.*.test\n", {"tcp", NULL, 443, "a.test"}, "deny", 0},
	{"two stars two labels", "allow domain *.*.test\n", {"tcp", NULL, 443, "a.b.test"}, "allow",
	 1},
	{"star then literal repeats", "allow domain *.a.*.a\n", {"tcp", NULL, 443, "x.a.a.a.a"},
	 "allow", 1},
	{"underscore", "allow domain _dmarc.a.test\n", {"tcp", NULL, 443, "_DMARC.a.test"}, "allow",
	 1},
	{"policy trailing dot", "allow domain a.test.\n", {"tcp", NULL, 443, "a.test"}, "allow", 1},
	{"qualifiers in index bucket",
	 "allow domain a.test port 443\ndeny domain a.test\nallow domain a.test\n",
	 {"tcp", NULL, 80, "a.test"}, "deny", 2},
	{"qualifiers in suffix bucket",
	 "allow domain *.a.test port 443\ndeny domain *.a.test proto udp\nallow domain *.a.test\n",
	 {"tcp", NULL, 80, "x.a.test"}, "allow", 3},
	{"earlier glob beats later exact", "allow domain *.test port 80\ndeny domain a.test\n",
	 {"tcp", NULL, 80, "a.test"}, "allow", 1},
	{"earlier cidr beats later name", "deny cidr 10.0.0.0/8\nallow domain a.test\n",
	 {"tcp", "10.1.2.3", 443, "a.test"}, "deny", 1},
	{"earlier name beats later cidr", "allow domain a.test\ndeny cidr 10.0.0.0/8\n",
	 {"tcp", "10.1.2.3", 443, "a.test"}, "allow", 1},
	{"proto udp", "allow proto udp\n", {"udp", "192.0.2.1", 443, NULL}, "allow", 1},
	{"proto udp refuses tcp", "allow proto udp\n", {"tcp", "192.0.2.1", 443, NULL}, "deny", 0},
	{"proto list", "allow proto tcp,udp port 53\n", {"udp", "192.0.2.1", 53, NULL}, "allow", 1},
	{"allow without proto is tcp only", "allow domain q.test port 443\n",
	 {"udp", "192.0.2.1", 443, "q.test"}, "deny", 0},
	{"allow without proto, the same over tcp", "allow domain q.test port 443\n",
	 {"tcp", "192.0.2.1", 443, "q.test"}, "allow", 1},
	{"cidr allow without proto is tcp only", "allow cidr 192.0.2.0/24\n",
	 {"udp", "192.0.2.1", 443, NULL}, "deny", 0},
	{"audit without proto is tcp only", "audit domain q.test\n",
	 {"udp", "192.0.2.1", 443, "q.test"}, "deny", 0},
	{"allow proto udp opens udp", "allow domain q.test port 443 proto udp\n",
	 {"udp", "192.0.2.1", 443, "q.test"}, "allow", 1},
	{"deny without proto matches udp", "deny domain q.test\nallow proto udp\n",
	 {"udp", "192.0.2.1", 443, "q.test"}, "deny", 1},
	{"default allow does not allow udp", "default allow\n", {"udp", "192.0.2.1", 443, NULL},
	 "deny", 0},
	{"default allow allows tcp", "default allow\n", {"tcp", "192.0.2.1", 443, NULL}, "allow",
	 0},
	{"target-less allow without proto is tcp only", "allow port 443\n",
	 {"udp", "192.0.2.1", 443, NULL}, "deny", 0},
	{"port 1", "allow port 1\n", {"tcp", "192.0.2.1", 1, NULL}, "allow", 1},
	{"port 65535", "allow port 65535\n", {"tcp", "192.0.2.1", 65535, NULL}, "allow", 1},
	{"port 0 is in no list", "allow port 1-65535\n", {"tcp", "192.0.2.1", 0, NULL}, "deny", 0},
	{"merged ranges", "allow port 10-20,15-30,31\n", {"tcp", "192.0.2.1", 31, NULL}, "allow",
	 1},
	{"v4 /0", "allow cidr 0.0.0.0/0\n", {"tcp", "203.0.113.9", 1, NULL}, "allow", 1},
	{"v4 /0 is not v6", "allow cidr 0.0.0.0/0\n", {"tcp", "2001:db8::1", 1, NULL}, "deny", 0},
	{"v6 /0", "allow cidr ::/0\n", {"tcp", "2001:db8::1", 1, NULL}, "allow", 1},
	{"v6 /0 is not v4", "allow cidr ::/0\n", {"tcp", "192.0.2.1", 1, NULL}, "deny", 0},
	{"v4 /32", "allow cidr 192.0.2.1\n", {"tcp", "192.0.2.1", 1, NULL}, "allow", 1},
	{"v4 /32 neighbour", "allow cidr 192.0.2.1\n", {"tcp", "192.0.2.2", 1, NULL}, "deny", 0},
	{"v6 /128", "allow cidr 2001:db8::1\n", {"tcp", "2001:db8::1", 1, NULL}, "allow", 1},
	{"v6 odd prefix", "allow cidr 2001:db8:8000::/33\n", {"tcp", "2001:db8:7fff::1", 1, NULL},
	 "deny", 0},
	{"mapped address, v4 rule", "deny cidr 10.0.0.0/8\ndefault allow\n",
	 {"tcp", "::ffff:10.0.0.1", 80, NULL}, "deny", 1},
	{"mapped rule, v4 address", "deny cidr ::ffff:10.0.0.0/104\ndefault allow\n",
	 {"tcp", "10.9.9.9", 80, NULL}, "deny", 1},
	{"mapped rule, mapped address", "deny cidr ::ffff:10.0.0.1\ndefault allow\n",
	 {"tcp", "::ffff:10.0.0.1", 80, NULL}, "deny", 1},
	{"short v6 prefix is v6 only", "deny cidr ::/64\ndefault allow\n",
	 {"tcp", "::ffff:10.0.0.1", 80, NULL}, "allow", 0},
	{"NAT64 address, v4 rule", "deny cidr 10.0.0.0/8\ndefault allow\n",
	 {"tcp", "64:ff9b::10.0.0.1", 80, NULL}, "deny", 1},
	{"NAT64 address, v6 rule", "deny cidr 64:ff9b::/96\nallow cidr 10.0.0.0/8\n",
	 {"tcp", "64:ff9b::10.0.0.1", 80, NULL}, "deny", 1},
	{"NAT64 address, the first rule of either form", "allow cidr 10.0.0.0/8\n"
	 "deny cidr 64:ff9b::/96\n", {"tcp", "64:ff9b::a00:1", 80, NULL}, "allow", 1},
	{"IPv4-compatible address, v4 rule", "deny cidr 127.0.0.0/8\ndefault allow\n",
	 {"tcp", "::127.0.0.1", 80, NULL}, "deny", 1},
	{"::1 carries no IPv4", "deny cidr 0.0.0.0/8\ndefault allow\n", {"tcp", "::1", 80, NULL},
	 "allow", 0},
	{"local-use NAT64 carries no IPv4", "deny cidr 10.0.0.0/8\ndefault allow\n",
	 {"tcp", "64:ff9b:1::10.0.0.1", 80, NULL}, "allow", 0},
	{"no address", "deny cidr 0.0.0.0/0\ndefault allow\n", {"tcp", NULL, 80, NULL}, "allow", 0},
	{"default allow", "deny domain a.test\ndefault allow\n", {"tcp", NULL, 80, "b.test"},
	 "allow", 0},
	{"empty policy", "", {"tcp", "192.0.2.1", 80, "a.test"}, "deny", 0},
	{"invalid names ignored", "allow domain *\n",
	 {"tcp", NULL, 80, "a..b a.b:80 \xc3\xa9.test a*b.test 1.2.3.4 ."}, "deny", 0},
	{"too-long label ignored", "allow domain *\n",
	 {"tcp", NULL, 80,
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.test"}, "deny", 0},

	{"dns exact", example_policy, {"dns", NULL, 0, "registry.npmjs.org"}, "allow", 1},
	{"dns ignores ports", "deny domain a.test port 25\ndefault allow\n",
	 {"dns", NULL, 0, "a.test"}, "deny", 1},
	{"dns ignores proto", "allow domain a.test proto udp\n", {"dns", NULL, 0, "A.TEST."},
	 "allow", 1},
	{"dns skips cidr rules", "allow cidr 0.0.0.0/0\n", {"dns", NULL, 0, "a.test"}, "deny", 0},
	{"dns skips target-less rules", "deny port 25\nallow port 1-65535\ndefault allow\n",
	 {"dns", NULL, 0, "a.test"}, "allow", 0},
	{"dns cidr in the same rule", "deny cidr 10.0.0.0/8 domain a.test\ndefault allow\n",
	 {"dns", NULL, 0, "a.test"}, "deny", 1},
	{"dns glob", example_policy, {"dns", NULL, 0, "x.y.github.com"}, "allow", 2},
	{"dns audit", example_policy, {"dns", NULL, 0, "www.example.com"}, "audit", 7},
	{"dns default", example_policy, {"dns", NULL, 0, "other.test"}, "deny", 0},
	{"dns not a name", "allow domain *\n", {"dns", NULL, 0, "a..test"}, "deny", 0},
	{"dns order", "allow domain *.test port 443\ndeny domain a.test\n",
	 {"dns", NULL, 0, "a.test"}, "allow", 1},
};

static void test_decisions(void)
{
	struct policy *cached = NULL;
	const char *cached_text = NULL;
	for (size_t i = 0; i < ARRAY_LEN(match_cases); i++) {
		const struct match_case *c = &match_cases[i];
		check_case("%s", c->name);
		if (c->policy != cached_text) {
			policy_free(cached);
			cached = parse(c->policy, NULL);
			cached_text = c->policy;
		}
		if (!cached)
			continue;
		struct policy_verdict v = decide(cached, &c->q);
		bool audit = strcmp(c->expect, "audit") == 0;
		bool deny = strcmp(c->expect, "deny") == 0;
		enum policy_action want = deny ? POLICY_DENY : POLICY_ALLOW;
		CHECK_EQ(v.action, want);
		CHECK_EQ(v.audit, audit);
		CHECK_EQ(v.line, c->line);
		CHECK_STR_EQ(v.file, "p.rules");
	}
	policy_free(cached);
}

struct names_matter_case {
	const char *name;
	const char *policy;
	struct query q;
	bool matter;
};

static const struct names_matter_case names_matter_cases[] = {
	{"no domain rules", "allow cidr 10.0.0.0/8\ndefault deny\n", {"tcp", "10.1.1.1", 443, NULL},
	 false},
	{"domain rule on the port", "allow domain a.test port 443\n", {"tcp", "192.0.2.1", 443, NULL},
	 true},
	{"domain rule on other ports only", "allow domain a.test port 80,443\n",
	 {"tcp", "192.0.2.1", 22, NULL}, false},
	{"domain rule for udp only", "allow domain a.test proto udp\n", {"tcp", "192.0.2.1", 443, NULL},
	 false},
	{"domain rule after the deciding cidr rule",
	 "deny cidr 10.0.0.0/8\nallow domain a.test\n", {"tcp", "10.2.3.4", 443, NULL}, false},
	{"domain rule before the deciding cidr rule",
	 "allow domain a.test\ndeny cidr 10.0.0.0/8\n", {"tcp", "10.2.3.4", 443, NULL}, true},
	{"domain rule after a target-less rule", "deny port 25\nallow domain *\n",
	 {"tcp", "192.0.2.1", 25, NULL}, false},
	{"names ignored in the query", "allow cidr 192.0.2.0/24\nallow domain a.test\n",
	 {"tcp", "192.0.2.1", 80, "a.test"}, false},
	{"deny domain rule after the deciding cidr rule",
	 "allow cidr 192.0.2.0/24\ndeny domain a.test\n", {"tcp", "192.0.2.1", 443, NULL}, true},
	{"deny domain rule on other ports only",
	 "allow cidr 192.0.2.0/24\ndeny domain a.test port 25\n", {"tcp", "192.0.2.1", 443, NULL},
	 false},
};

struct name_denied_case {
	const char *name;
	const char *policy;
	const char *proto, *qname;
	uint16_t port;
	bool denied;
	uint32_t line;
};

static const struct name_denied_case name_denied_cases[] = {
	{"deny rule after an allowing cidr", "allow cidr 192.0.2.0/24\ndeny domain evil.test\n",
	 "tcp", "evil.test", 443, true, 2},
	{"glob deny", "allow cidr 192.0.2.0/24\ndeny domain *.evil.test\n", "tcp", "a.evil.test",
	 443, true, 2},
	{"first domain rule allows", "allow domain *.test\ndeny domain evil.test\n", "tcp",
	 "evil.test", 443, false, 0},
	{"no domain rule", "allow cidr 192.0.2.0/24\ndefault deny\n", "tcp", "evil.test", 443,
	 false, 0},
	{"deny rule on another port", "deny domain evil.test port 25\n", "tcp", "evil.test", 443,
	 false, 0},
	{"deny rule for udp only", "deny domain evil.test proto udp\n", "tcp", "evil.test", 443,
	 false, 0},
	{"allow rule on another port, then deny", "allow domain evil.test port 80\n"
	 "deny domain evil.test\n", "tcp", "evil.test", 443, true, 2},
	{"case and trailing dot", "deny domain evil.test\n", "tcp", "EVIL.test.", 443, true, 1},
	{"not a host name", "deny domain *\n", "tcp", "a b", 443, false, 0},
};

static void test_name_denied(void)
{
	for (size_t i = 0; i < ARRAY_LEN(name_denied_cases); i++) {
		const struct name_denied_case *c = &name_denied_cases[i];
		struct policy_verdict v = { .line = 999 };
		check_case("%s", c->name);
		struct policy *p = parse(c->policy, NULL);
		if (!p)
			continue;
		enum policy_proto proto = strcmp(c->proto, "udp") == 0 ? POLICY_UDP : POLICY_TCP;
		CHECK_EQ(policy_name_denied(p, proto, c->port, c->qname, &v), c->denied);
		if (c->denied) {
			CHECK_EQ(v.action, POLICY_DENY);
			CHECK_EQ(v.line, c->line);
		} else {
			CHECK_EQ(v.line, 999); /* untouched */
		}
		policy_free(p);
	}
}

static void test_names_matter(void)
{
	for (size_t i = 0; i < ARRAY_LEN(names_matter_cases); i++) {
		const struct names_matter_case *c = &names_matter_cases[i];
		check_case("%s", c->name);
		struct policy *p = parse(c->policy, NULL);
		if (!p)
			continue;
		struct policy_conn conn = {
			.proto = strcmp(c->q.proto, "udp") == 0 ? POLICY_UDP : POLICY_TCP,
			.port = c->q.port,
		};
		addr_parse(&conn.dst, c->q.addr, strlen(c->q.addr));
		CHECK_EQ(policy_names_matter(p, &conn), c->matter);
		policy_free(p);
	}
}

static void test_verdict_label(void)
{
	char buf[POLICY_RULE_LABEL_MAX];
	struct policy_verdict v = { .action = POLICY_DENY, .line = 4, .file = "policy.rules" };
	CHECK_EQ(policy_verdict_label(&v, buf, sizeof buf), 14);
	CHECK_STR_EQ(buf, "policy.rules:4");
	CHECK_EQ(policy_verdict_label(&v, buf, 14), -ENOSPC);
	CHECK_STR_EQ(buf, "");
	CHECK_EQ(policy_verdict_label(&v, buf, 15), 14);
	v.line = 0;
	CHECK_EQ(policy_verdict_label(&v, buf, sizeof buf), 7);
	CHECK_STR_EQ(buf, "default");

	char path[4200];
	memset(path, 'd', sizeof path - 1);
	path[sizeof path - 1] = '\0';
	memcpy(path + sizeof path - 9, "/p.rules", 8);
	v.file = path;
	v.line = 4294967295u;
	int n = policy_verdict_label(&v, buf, sizeof buf);
	CHECK(n > 0 && n < POLICY_RULE_LABEL_MAX);
	CHECK(strncmp(buf, "...ddd", 6) == 0);
	CHECK(strcmp(buf + n - 19, "/p.rules:4294967295") == 0);
	CHECK_STR_EQ(policy_action_name(POLICY_ALLOW), "allow");
	CHECK_STR_EQ(policy_action_name(POLICY_DENY), "deny");

	struct policy_verdict g = {.action = POLICY_DENY, .file = "p.rules", .guard = "private"};
	CHECK_EQ(policy_verdict_label(&g, buf, sizeof buf), 13);
	CHECK_STR_EQ(buf, "guard:private");
	CHECK_EQ(policy_verdict_label(&g, buf, 13), -ENOSPC);
	CHECK_STR_EQ(buf, "");
}

/* ----- The address guard ----- */

struct range_case {
	const char *addr;
	const char *range; /* range_class_name */
};

static const struct range_case range_cases[] = {
	{"127.0.0.1", "loopback"},
	{"127.255.255.254", "loopback"},
	{"::1", "loopback"},
	{"::ffff:127.0.0.1", "loopback"},
	{"::127.0.0.1", "loopback"},
	{"64:ff9b::127.0.0.1", "loopback"},
	{"0.0.0.0", "unspecified"},
	{"0.255.1.2", "unspecified"},
	{"::", "unspecified"},
	{"::2", "unspecified"}, /* IPv4-compatible 0.0.0.2 */
	{"169.254.169.254", "metadata"},
	{"::ffff:169.254.169.254", "metadata"},
	{"64:ff9b::a9fe:a9fe", "metadata"},
	{"fd00:ec2::254", "metadata"},
	{"168.63.129.16", "metadata"},
	{"100.100.100.200", "metadata"},
	{"192.0.0.192", "metadata"},
	{"10.0.0.5", "private"},
	{"10.255.255.255", "private"},
	{"172.16.0.1", "private"},
	{"172.31.255.255", "private"},
	{"192.168.1.1", "private"},
	{"::ffff:10.0.0.5", "private"},
	{"64:ff9b::10.0.0.5", "private"},
	{"fc00::1", "private"},
	{"fdff:ffff::1", "private"},
	{"fd00:ec2::253", "private"},
	{"fec0::1", "private"},
	{"64:ff9b:1::1.2.3.4", "private"},
	{"169.254.0.1", "link-local"},
	{"169.254.170.2", "link-local"},
	{"fe80::1", "link-local"},
	{"febf::1", "link-local"},
	{"100.64.0.1", "cgnat"},
	{"100.127.255.255", "cgnat"},
	{"224.0.0.251", "multicast"},
	{"239.255.255.250", "multicast"},
	{"ff02::fb", "multicast"},
	{"255.255.255.255", "broadcast"},
	{"240.0.0.1", "reserved"},
	{"::ffff:255.255.255.255", "broadcast"},
	/* neighbours and public addresses */
	{"128.0.0.1", "public"},
	{"11.0.0.1", "public"},
	{"172.15.255.255", "public"},
	{"172.32.0.0", "public"},
	{"192.169.0.1", "public"},
	{"169.253.255.255", "public"},
	{"100.63.255.255", "public"},
	{"100.128.0.0", "public"},
	{"223.255.255.255", "public"},
	{"192.0.0.191", "public"},
	{"168.63.129.17", "public"},
	{"198.51.100.10", "public"},
	{"2001:db8::1", "public"},
	{"fe00::1", "public"},
	{"fbff::1", "public"},
	{"64:ff9b::198.51.100.10", "public"},
	{"64:ff9b:2::10.0.0.5", "public"},
	{"::ffff:198.51.100.10", "public"},
	{"2002:a00:5::1", "public"}, /* 6to4 tunnels to a router, it is not the address */
};

static void test_ranges(void)
{
	for (size_t i = 0; i < ARRAY_LEN(range_cases); i++) {
		const struct range_case *c = &range_cases[i];
		struct addr a;
		check_case("%s", c->addr);
		CHECK_EQ(addr_parse(&a, c->addr, strlen(c->addr)), 0);
		CHECK_STR_EQ(range_class_name(range_classify(&a)), c->range);
	}
	struct addr none = {0};
	CHECK_EQ(range_classify(&none), RANGE_PUBLIC);
	CHECK(range_class_name((enum range_class)99) == NULL);
}

struct guard_case {
	const char *name;
	const char *policy;
	struct query q;    /* proto "any" for 0; port 0 for any */
	bool cidr_allows;  /* policy_cidr_allows */
	const char *label; /* policy_decide_connect_guarded, "" to skip (any proto) */
	const char *action;
};

static const struct guard_case guard_cases[] = {
	{"default allow is not explicit", "default allow\n", {"tcp", "10.0.0.5", 80, NULL}, false,
	 "guard:private", "deny"},
	{"target-less rule is not explicit", "allow port 80\n", {"tcp", "10.0.0.5", 80, NULL},
	 false, "guard:private", "deny"},
	{"domain rule is not explicit", "allow domain a.test\n", {"tcp", "127.0.0.1", 80, "a.test"},
	 false, "guard:loopback", "deny"},
	{"audit rule with a name", "audit domain a.test\n",
	 {"tcp", "169.254.169.254", 80, "a.test"}, false, "guard:metadata", "deny"},
	{"cidr allow", "allow cidr 10.0.0.0/8\n", {"tcp", "10.0.0.5", 80, NULL}, true, "p.rules:1",
	 "allow"},
	{"cidr audit", "audit cidr 10.0.0.5\n", {"tcp", "10.0.0.5", 80, NULL}, true, "p.rules:1",
	 "allow"},
	{"cidr allow, then a domain rule decides", "allow domain a.test\nallow cidr 10.0.0.0/8\n",
	 {"tcp", "10.0.0.5", 443, "a.test"}, true, "p.rules:1", "allow"},
	{"earlier deny cidr", "deny cidr 10.0.0.5\nallow cidr 10.0.0.0/8\ndefault allow\n",
	 {"tcp", "10.0.0.5", 80, NULL}, false, "p.rules:1", "deny"},
	{"cidr allow on another port", "allow cidr 10.0.0.0/8 port 443\ndefault allow\n",
	 {"tcp", "10.0.0.5", 80, NULL}, false, "guard:private", "deny"},
	{"cidr allow on the port", "allow cidr 10.0.0.0/8 port 443\n",
	 {"tcp", "10.0.0.5", 443, NULL}, true, "p.rules:1", "allow"},
	{"cidr allow for udp only", "allow cidr 10.0.0.0/8 proto udp\ndefault allow\n",
	 {"tcp", "10.0.0.5", 80, NULL}, false, "guard:private", "deny"},
	{"cidr allow for udp", "allow cidr 10.0.0.0/8 proto udp\n", {"udp", "10.0.0.5", 80, NULL},
	 true, "p.rules:1", "allow"},
	{"deny on another port does not stop it", "deny cidr 10.0.0.0/8 port 25\n"
	 "allow cidr 10.0.0.0/8\n", {"tcp", "10.0.0.5", 80, NULL}, true, "p.rules:2", "allow"},
	{"a policy deny still decides", "deny domain a.test\nallow cidr 10.0.0.0/8\n",
	 {"tcp", "10.0.0.5", 80, "a.test"}, true, "p.rules:1", "deny"},
	{"public addresses pass", "default allow\n", {"tcp", "198.51.100.10", 80, NULL}, false,
	 "default", "allow"},
	{"mapped address, v4 rule", "allow cidr 127.0.0.0/8\n",
	 {"tcp", "::ffff:127.0.0.1", 80, NULL}, true, "p.rules:1", "allow"},
	{"NAT64 address, v4 rule", "allow cidr 10.0.0.0/8\n", {"tcp", "64:ff9b::a00:5", 80, NULL},
	 true, "p.rules:1", "allow"},
	{"NAT64 address, NAT64 rule", "allow cidr 64:ff9b::/96\n",
	 {"tcp", "64:ff9b::a00:5", 80, NULL}, true, "p.rules:1", "allow"},
	{"NAT64 address, not allowed", "allow cidr 192.168.0.0/16\ndefault allow\n",
	 {"tcp", "64:ff9b::a00:5", 80, NULL}, false, "guard:private", "deny"},
	{"IPv4 rule does not cover ::1", "allow cidr 0.0.0.0/0\ndefault allow\n",
	 {"tcp", "::1", 80, NULL}, false, "guard:loopback", "deny"},
	{"a wide cidr rule is explicit", "allow cidr ::/0\n", {"tcp", "fe80::1", 80, NULL}, true,
	 "p.rules:1", "allow"},
	/* DNS answers: any port, any protocol */
	{"answer: allow on some port", "allow cidr 10.0.0.0/8 port 443\n",
	 {"any", "10.0.0.5", 0, NULL}, true, "", ""},
	{"answer: allow for udp only", "allow cidr 10.0.0.0/8 proto udp\n",
	 {"any", "10.0.0.5", 0, NULL}, true, "", ""},
	{"answer: deny on one port does not decide", "deny cidr 10.0.0.5 port 22\n"
	 "allow cidr 10.0.0.0/8\n", {"any", "10.0.0.5", 0, NULL}, true, "", ""},
	{"answer: deny for tcp does not decide", "deny cidr 10.0.0.5 proto tcp\n"
	 "allow cidr 10.0.0.0/8\n", {"any", "10.0.0.5", 0, NULL}, true, "", ""},
	{"answer: deny on every port decides", "deny cidr 10.0.0.5 proto tcp,udp\n"
	 "allow cidr 10.0.0.0/8\n", {"any", "10.0.0.5", 0, NULL}, false, "", ""},
	{"answer: no cidr rule", "allow domain a.test\ndefault allow\n",
	 {"any", "10.0.0.5", 0, NULL}, false, "", ""},
};

static void test_guard(void)
{
	for (size_t i = 0; i < ARRAY_LEN(guard_cases); i++) {
		const struct guard_case *c = &guard_cases[i];
		check_case("%s", c->name);
		struct policy *p = parse(c->policy, NULL);
		if (!p)
			continue;
		struct addr a;
		CHECK_EQ(addr_parse(&a, c->q.addr, strlen(c->q.addr)), 0);
		int proto = strcmp(c->q.proto, "tcp") == 0 ? POLICY_TCP
			    : strcmp(c->q.proto, "udp") == 0 ? POLICY_UDP : 0;
		CHECK_EQ(policy_cidr_allows(p, &a, c->q.port, proto), c->cidr_allows);
		CHECK_EQ(policy_cidr_allows_linear(p, &a, c->q.port, proto), c->cidr_allows);
		enum range_class cls = policy_guard_address(p, &a, c->q.port, proto);
		CHECK(cls == RANGE_PUBLIC || !c->cidr_allows);
		if (!c->label[0]) {
			policy_free(p);
			continue;
		}
		const char *names[1] = {c->q.names};
		struct policy_conn conn = {
			.proto = (enum policy_proto)proto, .dst = a, .port = c->q.port,
			.names = names, .n_names = c->q.names ? 1 : 0,
		};
		struct policy_verdict v = policy_decide_connect_guarded(p, &conn);
		char label[POLICY_RULE_LABEL_MAX];
		policy_verdict_label(&v, label, sizeof label);
		CHECK_STR_EQ(label, c->label);
		CHECK_STR_EQ(policy_action_name(v.action), c->action);
		CHECK(!v.guard || (!v.audit && v.line == 0 && v.action == POLICY_DENY));
		policy_free(p);
	}
}

/* ----- Warnings for rules that never match ----- */

struct shadow_case {
	const char *name;
	const char *text;
	uint32_t warn_line;  /* 0: no warning expected */
	uint32_t cover_line; /* the earlier rule named */
};

static const struct shadow_case shadow_cases[] = {
	{"duplicate", "allow domain a.test port 443\nallow domain a.test port 443\n", 2, 1},
	{"duplicate, other action", "allow domain a.test\n# x\ndeny domain A.test.\n", 3, 1},
	{"glob covers name", "deny domain *.test\nallow domain a.b.test port 80\n", 2, 1},
	{"glob covers glob", "deny domain *.test\nallow domain *.a.test\n", 2, 1},
	{"glob covers middle glob", "deny domain *.test\nallow domain a.*.test\n", 2, 1},
	{"bare star covers all names", "deny domain *\nallow domain a.test,*.b.test\n", 2, 1},
	{"wider ports", "deny domain a.test port 1-1000\nallow domain a.test port 80,443\n", 2, 1},
	{"wider proto", "deny domain a.test\nallow domain a.test proto udp\n", 2, 1},
	{"wider cidr", "deny cidr 10.0.0.0/8\nallow cidr 10.1.0.0/16 port 80\n", 2, 1},
	{"cidr after target-less", "deny port 25\nallow cidr 10.0.0.0/8 port 25\n", 2, 1},
	{"target-less duplicate", "deny port 25\ndeny port 25 proto tcp\n", 2, 1},
	{"all targets covered", "deny domain a.test,b.test cidr 10.0.0.0/8\n"
				"allow domain b.test cidr 10.2.0.0/16\n", 2, 1},
	{"mapped cidr is v4", "deny cidr 10.0.0.0/8\nallow cidr ::ffff:10.1.0.0/112\n", 2, 1},
	{"names the first cover", "deny domain a.test\ndeny domain a.test\nallow domain a.test\n",
	 2, 1},

	{"narrower earlier ports", "deny domain a.test port 80\nallow domain a.test\n", 0, 0},
	{"narrower earlier proto", "deny domain a.test proto tcp\nallow domain a.test\n", 0, 0},
	{"port list gap", "deny domain a.test port 80,82\nallow domain a.test port 80-82\n", 0, 0},
	{"name does not cover glob", "deny domain a.test\nallow domain *.a.test\n", 0, 0},
	{"glob does not cover its base", "deny domain *.a.test\nallow domain a.test\n", 0, 0},
	{"one target uncovered", "deny domain a.test\nallow domain a.test,b.test\n", 0, 0},
	{"target-less does not cover DNS", "deny port 25\nallow domain a.test port 25\n", 0, 0},
	{"narrower cidr first", "deny cidr 10.1.0.0/16\nallow cidr 10.0.0.0/8\n", 0, 0},
	{"other family", "deny cidr 0.0.0.0/0\nallow cidr ::/0\n", 0, 0},
	{"target-less covers nothing named", "deny domain a.test\nallow port 25\n", 0, 0},
	{"v6 /0 does not cover mapped", "deny cidr ::/0\nallow cidr ::ffff:10.0.0.0/104\n", 0, 0},
};

static void test_shadow_warnings(void)
{
	for (size_t i = 0; i < ARRAY_LEN(shadow_cases); i++) {
		const struct shadow_case *c = &shadow_cases[i];
		check_case("%s", c->name);
		struct policy_report report;
		struct policy *p = parse(c->text, &report);
		if (!p)
			continue;
		CHECK_EQ(report.errors, 0);
		if (c->warn_line == 0) {
			CHECK_EQ(report.warnings, 0);
			if (report.count)
				check_fail(__FILE__, __LINE__, "unexpected: %s",
					   report.messages[0].text);
		} else {
			char want[160];
			snprintf(want, sizeof want, "p.rules:%u: warning: this rule never matches: "
				 "line %u comes first and matches everything it would",
				 (unsigned)c->warn_line, (unsigned)c->cover_line);
			CHECK(report.warnings >= 1);
			CHECK(report.messages[0].warning);
			CHECK_EQ(report.messages[0].line, c->warn_line);
			CHECK_STR_EQ(report.messages[0].text, want);
		}
		policy_free(p);
	}
}

/* ----- The index against a plain first-match scan written here ----- */

/* A rule as the generator knows it, independent of the parser's representation. */
struct naive_rule {
	int action; /* 0 allow, 1 deny, 2 audit */
	char domains[3][40];
	int n_domains;
	struct cidr cidrs[2];
	int n_cidrs;
	uint16_t lo[3], hi[3];
	int n_ports;
	int protos;
};

struct naive_policy {
	struct naive_rule rules[40];
	int n;
	int fallback; /* 0 allow, 1 deny */
};

static uint32_t rng_state = 12345;

static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state % n;
}

/* Labels of s (lowercase, no trailing dot) into arrays; returns the count. */
static int naive_labels(const char *s, const char *start[], size_t len[])
{
	int n = 0;
	const char *p = s;
	for (;;) {
		const char *dot = strchr(p, '.');
		start[n] = p;
		len[n] = dot ? (size_t)(dot - p) : strlen(p);
		n++;
		if (!dot)
			return n;
		p = dot + 1;
	}
}

static bool naive_glob(const char **ps, const size_t *pl, int np, const char **ns,
		       const size_t *nlen, int nn)
{
	if (np == 0)
		return nn == 0;
	if (pl[0] == 1 && ps[0][0] == '*') {
		for (int take = 1; take <= nn; take++)
			if (naive_glob(ps + 1, pl + 1, np - 1, ns + take, nlen + take, nn - take))
				return true;
		return false;
	}
	return nn > 0 && pl[0] == nlen[0] && memcmp(ps[0], ns[0], pl[0]) == 0 &&
	       naive_glob(ps + 1, pl + 1, np - 1, ns + 1, nlen + 1, nn - 1);
}

/* Lowercases and drops one trailing dot; the generator only makes valid names. */
static void naive_fold(const char *in, char *out)
{
	size_t n = strlen(in);
	for (size_t i = 0; i < n; i++)
		out[i] = (in[i] >= 'A' && in[i] <= 'Z') ? (char)(in[i] + 32) : in[i];
	if (n && out[n - 1] == '.')
		n--;
	out[n] = '\0';
}

static bool naive_name_matches(const char *pattern, const char *name)
{
	const char *ps[64], *ns[64];
	size_t pl[64], nl[64];
	char folded[300];
	naive_fold(name, folded);
	int np = naive_labels(pattern, ps, pl), nn = naive_labels(folded, ns, nl);
	return naive_glob(ps, pl, np, ns, nl, nn);
}

/* Written from the documentation: ::ffff:a.b.c.d is a.b.c.d; ::a.b.c.d (not :: or ::1) and
 * 64:ff9b::a.b.c.d are both themselves and a.b.c.d. */
static bool naive_cidr_contains(const struct cidr *c, const struct addr *a)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b};
	static const uint8_t zeros[16];
	struct addr v4;
	if (a->family != ADDR_V6)
		return cidr_contains(c, a);
	addr_from_bytes(&v4, ADDR_V4, a->bytes + 12);
	if (memcmp(a->bytes, mapped, 12) == 0)
		return cidr_contains(c, &v4);
	bool compatible = memcmp(a->bytes, zeros, 12) == 0 && memcmp(a->bytes, zeros, 16) != 0 &&
			  !(memcmp(a->bytes, zeros, 15) == 0 && a->bytes[15] == 1);
	if (compatible || memcmp(a->bytes, nat64, 12) == 0)
		return cidr_contains(c, a) || cidr_contains(c, &v4);
	return cidr_contains(c, a);
}

/* Returns the index of the deciding rule, or -1 for the default. */
static int naive_decide(const struct naive_policy *np, bool dns, int proto, const struct addr *a,
			uint16_t port, const char *const *names, int n_names)
{
	for (int r = 0; r < np->n; r++) {
		const struct naive_rule *rule = &np->rules[r];
		bool hit = false;
		for (int d = 0; d < rule->n_domains; d++)
			for (int k = 0; k < n_names; k++)
				hit = hit || naive_name_matches(rule->domains[d], names[k]);
		if (dns) {
			if (hit)
				return r;
			continue;
		}
		for (int c = 0; c < rule->n_cidrs; c++)
			hit = hit || naive_cidr_contains(&rule->cidrs[c], a);
		if (rule->n_domains + rule->n_cidrs == 0)
			hit = true;
		if (rule->protos && !(rule->protos & proto))
			hit = false;
		if (!rule->protos && proto == POLICY_UDP && rule->action != 1)
			hit = false; /* an allow rule without proto is a TCP rule */
		if (rule->n_ports) {
			bool in = false;
			for (int k = 0; k < rule->n_ports; k++)
				in = in || (port >= rule->lo[k] && port <= rule->hi[k]);
			hit = hit && in;
		}
		if (hit)
			return r;
	}
	return -1;
}

/* policy_cidr_allows as docs/policy.md words it; port 0 and proto 0 mean any. */
static bool naive_cidr_allows(const struct naive_policy *np, const struct addr *a, uint16_t port,
			      int proto)
{
	for (int r = 0; r < np->n; r++) {
		const struct naive_rule *rule = &np->rules[r];
		bool hit = false;
		for (int c = 0; c < rule->n_cidrs; c++)
			hit = hit || naive_cidr_contains(&rule->cidrs[c], a);
		if (!hit)
			continue;
		bool deny = rule->action == 1;
		/* Ports and protocols the rule accepts, against those the query asks about. */
		bool some_port = port == 0 || rule->n_ports == 0, all_ports = rule->n_ports == 0;
		for (int k = 0; k < rule->n_ports; k++)
			some_port = some_port || (port >= rule->lo[k] && port <= rule->hi[k]);
		if (port != 0)
			all_ports = some_port;
		bool some_proto = proto == 0 || (rule->protos ? (rule->protos & proto) != 0
							      : deny || proto != POLICY_UDP);
		bool all_protos = proto == 0 ? rule->protos == 0 || rule->protos == 3 : some_proto;
		if (deny ? all_ports && all_protos : some_port && some_proto)
			return !deny;
	}
	return false;
}

static const char *const label_pool[] = {"a", "b", "c", "www", "x-y", "_s"};

static void random_name(char *out, bool pattern)
{
	int labels = 1 + (int)rnd(3);
	out[0] = '\0';
	for (int i = 0; i < labels; i++) {
		if (pattern && rnd(5) == 0)
			strcat(out, "*");
		else
			strcat(out, label_pool[rnd(ARRAY_LEN(label_pool))]);
		strcat(out, ".");
	}
	strcat(out, rnd(4) ? "test" : "example");
}

static void random_cidr(struct cidr *c, char *text, size_t n)
{
	static const uint8_t v4_prefixes[] = {0, 8, 16, 20, 24, 31, 32};
	static const uint8_t v6_prefixes[] = {0, 32, 48, 64, 127, 128};
	static const uint8_t nat64_prefixes[] = {96, 104, 120, 128};
	uint8_t bytes[16] = {0};
	bool v6 = rnd(3) == 0;
	if (v6 && rnd(3) == 0) {
		bytes[1] = 0x64;
		bytes[2] = 0xff;
		bytes[3] = 0x9b;
		bytes[12] = 10;
		bytes[13] = (uint8_t)rnd(3);
		bytes[15] = (uint8_t)rnd(3);
		addr_from_bytes(&c->base, ADDR_V6, bytes);
		c->prefix = nat64_prefixes[rnd(ARRAY_LEN(nat64_prefixes))];
	} else if (v6) {
		bytes[0] = 0x20;
		bytes[1] = 0x01;
		bytes[2] = 0x0d;
		bytes[3] = 0xb8;
		bytes[5] = (uint8_t)rnd(3);
		bytes[15] = (uint8_t)rnd(3);
		addr_from_bytes(&c->base, ADDR_V6, bytes);
		c->prefix = v6_prefixes[rnd(ARRAY_LEN(v6_prefixes))];
	} else {
		bytes[0] = 10;
		bytes[1] = (uint8_t)rnd(3);
		bytes[3] = (uint8_t)rnd(3);
		addr_from_bytes(&c->base, ADDR_V4, bytes);
		c->prefix = v4_prefixes[rnd(ARRAY_LEN(v4_prefixes))];
	}
	uint8_t key[18];
	policy_cidr_key(&c->base, c->prefix, key);
	memcpy(c->base.bytes, key + 2, addr_len(&c->base));
	cidr_format(c, text, n);
	if (!v6 && rnd(4) == 0) {
		/* The same prefix written as IPv4-mapped IPv6. */
		char host[ADDR_STRLEN];
		addr_format(&c->base, host, sizeof host);
		snprintf(text, n, "::ffff:%s/%u", host, (unsigned)c->prefix + 96);
	}
}

static void random_address(struct addr *a)
{
	uint8_t bytes[16] = {0};
	switch (rnd(6)) {
	case 4: /* NAT64 */
		bytes[1] = 0x64;
		bytes[2] = 0xff;
		bytes[3] = 0x9b;
		/* fall through */
	case 5: /* IPv4-compatible, or :: and ::1 now and then */
		bytes[12] = rnd(8) ? 10 : 0;
		bytes[13] = (uint8_t)rnd(3);
		bytes[15] = (uint8_t)rnd(3);
		addr_from_bytes(a, ADDR_V6, bytes);
		return;
	case 0:
		bytes[0] = 0x20;
		bytes[1] = 0x01;
		bytes[2] = 0x0d;
		bytes[3] = 0xb8;
		bytes[5] = (uint8_t)rnd(3);
		bytes[15] = (uint8_t)rnd(3);
		addr_from_bytes(a, ADDR_V6, bytes);
		return;
	case 1:
		bytes[10] = bytes[11] = 0xff;
		bytes[12] = 10;
		bytes[13] = (uint8_t)rnd(3);
		bytes[15] = (uint8_t)rnd(3);
		addr_from_bytes(a, ADDR_V6, bytes);
		return;
	default:
		bytes[0] = rnd(5) ? 10 : 192;
		bytes[1] = (uint8_t)rnd(3);
		bytes[3] = (uint8_t)rnd(3);
		addr_from_bytes(a, ADDR_V4, bytes);
		return;
	}
}

static void random_policy(struct naive_policy *np, char *text, size_t cap)
{
	static const uint16_t port_lo[] = {80, 443, 8000, 1, 25};
	static const uint16_t port_hi[] = {80, 443, 8999, 65535, 25};
	size_t o = 0;
	np->n = 1 + (int)rnd(ARRAY_LEN(np->rules));
	np->fallback = (int)rnd(2);
	for (int r = 0; r < np->n; r++) {
		struct naive_rule *rule = &np->rules[r];
		memset(rule, 0, sizeof *rule);
		rule->action = (int)rnd(3);
		o += (size_t)snprintf(text + o, cap - o, "%s",
				      rule->action == 0 ? "allow" : rule->action == 1 ? "deny"
										  : "audit");
		rule->n_domains = rnd(3) ? (int)rnd(4) : 0;
		for (int d = 0; d < rule->n_domains; d++) {
			if (rnd(15) == 0)
				strcpy(rule->domains[d], "*");
			else
				random_name(rule->domains[d], true);
			o += (size_t)snprintf(text + o, cap - o, "%s%s", d ? "," : " domain ",
					      rule->domains[d]);
		}
		rule->n_cidrs = (int)rnd(3);
		for (int c = 0; c < rule->n_cidrs; c++) {
			char ctext[64];
			random_cidr(&rule->cidrs[c], ctext, sizeof ctext);
			o += (size_t)snprintf(text + o, cap - o, " cidr %s", ctext);
		}
		if (rnd(2)) {
			rule->n_ports = 1 + (int)rnd(3);
			for (int k = 0; k < rule->n_ports; k++) {
				int pick = (int)rnd(ARRAY_LEN(port_lo));
				rule->lo[k] = port_lo[pick];
				rule->hi[k] = port_hi[pick];
				if (rule->lo[k] == rule->hi[k])
					o += (size_t)snprintf(text + o, cap - o, "%s%u",
							      k ? "," : " port ", rule->lo[k]);
				else
					o += (size_t)snprintf(text + o, cap - o, "%s%u-%u",
							      k ? "," : " port ", rule->lo[k],
							      rule->hi[k]);
			}
		}
		if (rule->n_domains + rule->n_cidrs + rule->n_ports == 0 || rnd(4) == 0) {
			static const char *const protos[] = {"", "tcp", "udp", "udp,tcp"};
			rule->protos = 1 + (int)rnd(3);
			o += (size_t)snprintf(text + o, cap - o, " proto %s", protos[rule->protos]);
		}
		o += (size_t)snprintf(text + o, cap - o, "\n");
	}
	o += (size_t)snprintf(text + o, cap - o, "default %s\n", np->fallback ? "deny" : "allow");
}

static void test_index_equals_naive(void)
{
	static char text[40 * 400];
	struct naive_policy np;
	long checked = 0;
	for (int round = 0; round < 400; round++) {
		random_policy(&np, text, sizeof text);
		check_case("round %d", round);
		struct policy *p = parse(text, NULL);
		if (!p) {
			fprintf(stderr, "%s", text);
			continue;
		}
		for (int qi = 0; qi < 200; qi++) {
			char name_buf[3][64];
			const char *names[3];
			int n_names = (int)rnd(4);
			for (int k = 0; k < n_names; k++) {
				random_name(name_buf[k], false);
				char *first = &name_buf[k][0];
				if (rnd(4) == 0 && *first >= 'a' && *first <= 'z')
					*first = (char)(*first - 'a' + 'A');
				if (rnd(4) == 0)
					strcat(name_buf[k], ".");
				names[k] = name_buf[k];
			}
			struct policy_conn c = {
				.proto = rnd(2) ? POLICY_TCP : POLICY_UDP,
				.port = (uint16_t)(rnd(3) ? (rnd(2) ? 80 : 443) : rnd(65536)),
				.names = names, .n_names = (size_t)n_names,
			};
			random_address(&c.dst);
			int want = naive_decide(&np, false, c.proto, &c.dst, c.port, names,
						n_names);
			struct policy_verdict v = policy_decide_connect(p, &c);
			struct policy_verdict lin = policy_decide_connect_linear(p, &c);
			uint32_t want_line = want < 0 ? 0 : (uint32_t)want + 1;
			if (v.line != want_line || lin.line != want_line) {
				char a[ADDR_STRLEN];
				addr_format(&c.dst, a, sizeof a);
				check_fail(__FILE__, __LINE__, "connect %s:%u (%s %s %s): index "
					   "%u, scan %u, naive %u\n%s", a, c.port,
					   n_names > 0 ? names[0] : "", n_names > 1 ? names[1] : "",
					   n_names > 2 ? names[2] : "", (unsigned)v.line,
					   (unsigned)lin.line, (unsigned)want_line, text);
				break;
			}
			int want_action = want < 0 ? (np.fallback || c.proto == POLICY_UDP ? 1 : 0)
						   : np.rules[want].action;
			CHECK_EQ(v.action, want_action == 1 ? POLICY_DENY : POLICY_ALLOW);
			CHECK_EQ(v.audit, want_action == 2);
			uint16_t any_port = rnd(2) ? c.port : 0;
			int any_proto = rnd(2) ? (int)c.proto : 0;
			bool allows = naive_cidr_allows(&np, &c.dst, any_port, any_proto);
			CHECK_EQ(policy_cidr_allows(p, &c.dst, any_port, any_proto), allows);
			CHECK_EQ(policy_cidr_allows_linear(p, &c.dst, any_port, any_proto), allows);
			if (n_names > 0) {
				int want_dns = naive_decide(&np, true, 0, &c.dst, 0, names, 1);
				struct policy_verdict d = policy_decide_dns(p, names[0]);
				CHECK_EQ(d.line, want_dns < 0 ? 0 : (uint32_t)want_dns + 1);
				CHECK_EQ(policy_decide_dns_linear(p, names[0]).line, d.line);
			}
			checked++;
		}
		policy_free(p);
	}
	CHECK(checked > 50000);
}

/* Glob matching against the recursive definition, on every pattern/name pair from a pool. */
static void test_glob_matches_definition(void)
{
	static const char *const pool[] = {
		"a", "b", "*", "a.b", "b.a", "*.a", "a.*", "*.*", "a.a.a", "*.a.*", "a.*.a",
		"*.b.a", "a.b.a.b", "*.*.a", "a.*.*", "b.*.a.*", "a.a.a.a.a", "*.a.a", "a.b.c.d.e",
	};
	for (size_t i = 0; i < ARRAY_LEN(pool); i++) {
		for (size_t j = 0; j < ARRAY_LEN(pool); j++) {
			check_case("%s ~ %s", pool[i], pool[j]);
			const char *ps[16], *ns[16];
			size_t pl[16], nl[16];
			int np = naive_labels(pool[i], ps, pl), nn = naive_labels(pool[j], ns, nl);
			bool want = naive_glob(ps, pl, np, ns, nl, nn);
			bool got = policy_glob_match(pool[i], strlen(pool[i]), pool[j],
						     strlen(pool[j]));
			CHECK_EQ(got, want);
		}
	}
}

/* ----- The built-in policy ----- */

static void test_default_policy(void)
{
	const char *text = policy_default_text();
	struct policy_report report;
	struct policy *p = NULL;
	CHECK_EQ(policy_parse(&p, POLICY_BUILTIN_NAME, text, strlen(text), &report), 0);
	CHECK_EQ(report.errors, 0);
	CHECK_EQ(report.warnings, 0);
	if (report.count)
		check_fail(__FILE__, __LINE__, "%s", report.messages[0].text);
	policy_free(p);
	CHECK_EQ(policy_load_default(&p), 0);
	if (!p)
		return;
	CHECK_STR_EQ(policy_file(p), "builtin");
	CHECK_EQ(policy_default_action(p), POLICY_DENY);
	CHECK(policy_rule_count(p) > 20);
	CHECK(text[strlen(text) - 1] == '\n');

	static const struct {
		struct query q;
		const char *expect;
	} cases[] = {
		{{"tcp", "104.16.1.1", 443, "registry.npmjs.org"}, "allow"},
		{{"tcp", "104.16.1.1", 80, "registry.npmjs.org"}, "allow"},
		{{"tcp", "104.16.1.1", 22, "registry.npmjs.org"}, "deny"},
		{{"udp", "104.16.1.1", 443, "registry.npmjs.org"}, "deny"},
		{{"tcp", "151.101.1.1", 443, "files.pythonhosted.org"}, "allow"},
		{{"tcp", "151.101.1.1", 443, "static.crates.io"}, "allow"},
		{{"tcp", "151.101.1.1", 443, "proxy.golang.org"}, "allow"},
		{{"tcp", "151.101.1.1", 443, "repo1.maven.org"}, "allow"},
		{{"tcp", "151.101.1.1", 80, "deb.debian.org"}, "allow"},
		{{"tcp", "140.82.1.1", 443, "codeload.github.com"}, "allow"},
		{{"tcp", "2606:50c0::1", 443, "objects.githubusercontent.com"}, "allow"},
		{{"tcp", "172.65.1.1", 443, "gitlab.com"}, "allow"},
		{{"tcp", "140.82.1.1", 443, "evil.github.com"}, "deny"},
		{{"tcp", "140.82.1.1", 443, NULL}, "deny"},
		/* a registry name resolving into a forbidden range is still denied */
		{{"tcp", "10.0.0.5", 443, "registry.npmjs.org"}, "deny"},
		{{"tcp", "169.254.169.254", 80, "registry.npmjs.org"}, "deny"},
		{{"tcp", "::ffff:127.0.0.1", 443, "pypi.org"}, "deny"},
		{{"tcp", "::1", 443, "pypi.org"}, "deny"},
		{{"tcp", "fd00:ec2::254", 80, "pypi.org"}, "deny"},
		{{"tcp", "fe80::1", 443, "pypi.org"}, "deny"},
		{{"tcp", "100.64.0.1", 443, "pypi.org"}, "deny"},
		{{"tcp", "0.0.0.0", 443, "pypi.org"}, "deny"},
		{{"tcp", "192.168.1.1", 443, "pypi.org"}, "deny"},
		{{"tcp", "172.31.255.255", 443, "pypi.org"}, "deny"},
		{{"tcp", "172.32.0.1", 443, "pypi.org"}, "allow"},
		{{"tcp", "192.0.0.192", 80, "pypi.org"}, "deny"},
		{{"dns", NULL, 0, "registry.npmjs.org"}, "allow"},
		{{"dns", NULL, 0, "index.crates.io."}, "allow"},
		{{"dns", NULL, 0, "example.com"}, "deny"},
		{{"dns", NULL, 0, "metadata.google.internal"}, "deny"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		check_case("%s %s %u %s", cases[i].q.proto, cases[i].q.addr ? cases[i].q.addr : "-",
			   cases[i].q.port, cases[i].q.names ? cases[i].q.names : "-");
		struct policy_verdict v = decide(p, &cases[i].q);
		CHECK_STR_EQ(policy_action_name(v.action), cases[i].expect);
		CHECK(!v.audit);
		CHECK_STR_EQ(v.file, "builtin");
		if (v.action == POLICY_DENY && cases[i].q.addr && v.line) {
			char label[POLICY_RULE_LABEL_MAX];
			CHECK(policy_verdict_label(&v, label, sizeof label) > 8);
			CHECK(strncmp(label, "builtin:", 8) == 0);
		}
	}
	policy_free(p);
}

/* The documented examples parse with neither errors nor warnings. */
static void test_examples(void)
{
	static const char *const examples[] = {
		"registry-only.policy",
		"observe.policy",
		"internal-mirror.policy",
	};
	for (size_t i = 0; i < ARRAY_LEN(examples); i++) {
		char path[1024];
		snprintf(path, sizeof path, "%s/docs/examples/%s", SLUICE_SOURCE_DIR, examples[i]);
		check_case("%s", examples[i]);
		struct policy_report report;
		struct policy *p = NULL;
		CHECK_EQ(policy_load(&p, path, &report), 0);
		CHECK_EQ(report.errors + report.warnings, 0);
		if (report.count)
			check_fail(__FILE__, __LINE__, "%s", report.messages[0].text);
		CHECK(p && policy_rule_count(p) > 0);
		CHECK(p && policy_default_line(p) > 0);
		policy_free(p);
	}
}

static const struct check_test tests[] = {
	{"parse_errors", test_parse_errors},
	{"parse_ok", test_parse_ok},
	{"parse_name_lengths", test_parse_name_lengths},
	{"parse_collects_errors", test_parse_collects_errors},
	{"parse_bounds", test_parse_bounds},
	{"load_file", test_load_file},
	{"decisions", test_decisions},
	{"names_matter", test_names_matter},
	{"name_denied", test_name_denied},
	{"verdict_label", test_verdict_label},
	{"ranges", test_ranges},
	{"guard", test_guard},
	{"shadow_warnings", test_shadow_warnings},
	{"glob_matches_definition", test_glob_matches_definition},
	{"index_equals_naive", test_index_equals_naive},
	{"default_policy", test_default_policy},
	{"examples", test_examples},
};

CHECK_MAIN(tests)
