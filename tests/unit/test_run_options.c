/* test_run_options.c — `sluice run` argument parsing: every option, both spellings, errors. */
#include "run_options.h"
#include "check.h"

#include <errno.h>

#define MAX_ARGS 16

struct options_case {
	const char *name;
	const char *args[MAX_ARGS]; /* NULL-terminated */
	int rc;
	const char *error_part;     /* a substring of the message when rc < 0 */
	const char *command0;       /* expected COMMAND when rc == 0 */
	int command_argc;
	enum run_mode mode;
	enum run_fail_mode fail;
	const char *policy, *audit, *dns;
	int dns_port;
	bool quiet;
};

static const struct options_case cases[] = {
	{.name = "plain command", .args = {"--", "curl", "x", NULL}, .command0 = "curl",
	 .command_argc = 2},
	{.name = "command without --", .args = {"curl", "-v", NULL}, .command0 = "curl",
	 .command_argc = 2},
	{.name = "all options",
	 .args = {"--policy", "p.rules", "--audit", "-", "--mode", "divert", "--fail", "open",
		  "--dns-upstream", "192.0.2.53:5353", "--quiet", "--", "sh", NULL},
	 .command0 = "sh", .command_argc = 1, .mode = RUN_MODE_DIVERT, .fail = RUN_FAIL_OPEN,
	 .policy = "p.rules", .audit = "-", .dns = "192.0.2.53", .dns_port = 5353, .quiet = true},
	{.name = "equals spelling",
	 .args = {"--policy=a", "--mode=netns", "--audit=t.jsonl", "--", "ls", NULL},
	 .command0 = "ls", .command_argc = 1, .mode = RUN_MODE_NETNS, .policy = "a",
	 .audit = "t.jsonl"},
	{.name = "options after -- belong to COMMAND", .args = {"--", "--quiet", NULL},
	 .command0 = "--quiet", .command_argc = 1},
	{.name = "dns upstream v6 bare", .args = {"--dns-upstream", "2001:db8::53", "true", NULL},
	 .command0 = "true", .command_argc = 1, .dns = "2001:db8::53", .dns_port = 53},
	{.name = "dns upstream v6 port", .args = {"--dns-upstream=[2001:db8::53]:54", "true", NULL},
	 .command0 = "true", .command_argc = 1, .dns = "2001:db8::53", .dns_port = 54},
	{.name = "windivert mode parses", .args = {"--mode", "windivert", "true", NULL},
	 .command0 = "true", .command_argc = 1, .mode = RUN_MODE_WINDIVERT},
	{.name = "no command", .args = {"--quiet", NULL}, .rc = -EINVAL, .error_part = "no COMMAND"},
	{.name = "no command after --", .args = {"--", NULL}, .rc = -EINVAL,
	 .error_part = "no COMMAND"},
	{.name = "unknown long option", .args = {"--polcy", "x", "--", "true", NULL}, .rc = -EINVAL,
	 .error_part = "unknown option"},
	{.name = "unknown short option", .args = {"-q", "true", NULL}, .rc = -EINVAL,
	 .error_part = "unknown option '-q'"},
	{.name = "missing value", .args = {"--policy", NULL}, .rc = -EINVAL,
	 .error_part = "needs a value"},
	{.name = "empty value", .args = {"--policy=", "true", NULL}, .rc = -EINVAL,
	 .error_part = "non-empty"},
	{.name = "bad mode", .args = {"--mode", "tun", "true", NULL}, .rc = -EINVAL,
	 .error_part = "netns, divert or windivert"},
	{.name = "bad fail", .args = {"--fail", "maybe", "true", NULL}, .rc = -EINVAL,
	 .error_part = "open or closed"},
	{.name = "quiet takes no value", .args = {"--quiet=yes", "true", NULL}, .rc = -EINVAL,
	 .error_part = "takes no value"},
	{.name = "dns name not address", .args = {"--dns-upstream", "dns.test", "true", NULL},
	 .rc = -EINVAL, .error_part = "ADDR[:PORT]"},
	{.name = "dns port zero", .args = {"--dns-upstream", "192.0.2.1:0", "true", NULL},
	 .rc = -EINVAL, .error_part = "ADDR"},
	{.name = "dns port too big", .args = {"--dns-upstream", "192.0.2.1:65536", "true", NULL},
	 .rc = -EINVAL, .error_part = "ADDR"},
	{.name = "dns bracket junk", .args = {"--dns-upstream", "[2001:db8::1]x", "true", NULL},
	 .rc = -EINVAL, .error_part = "ADDR"},
};

static void test_cases(void)
{
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct options_case *c = &cases[i];
		check_case("%s", c->name);
		char *argv[MAX_ARGS];
		int argc = 0;
		while (c->args[argc]) {
			argv[argc] = (char *)c->args[argc];
			argc++;
		}
		argv[argc] = NULL;
		struct run_options o;
		char err[256] = "";
		CHECK_EQ(run_options_parse(&o, argc, argv, err, sizeof err), c->rc);
		if (c->rc < 0) {
			CHECK(strstr(err, c->error_part) != NULL);
			continue;
		}
		CHECK_STR_EQ(o.command[0], c->command0);
		CHECK_EQ(o.command_argc, c->command_argc);
		CHECK(o.command[o.command_argc] == NULL);
		CHECK_EQ(o.mode, c->mode);
		CHECK_EQ(o.fail, c->fail);
		CHECK_EQ(o.quiet, c->quiet);
		CHECK(c->policy ? o.policy_path && strcmp(o.policy_path, c->policy) == 0
				: o.policy_path == NULL);
		CHECK(c->audit ? o.audit_path && strcmp(o.audit_path, c->audit) == 0
			       : o.audit_path == NULL);
		CHECK_EQ(o.has_dns_upstream, c->dns != NULL);
		if (c->dns) {
			char text[ADDR_STRLEN];
			addr_format(&o.dns_upstream, text, sizeof text);
			CHECK_STR_EQ(text, c->dns);
			CHECK_EQ(o.dns_upstream_port, c->dns_port);
		}
	}
}

static const struct check_test tests[] = {
	{"cases", test_cases},
};

CHECK_MAIN(tests)
