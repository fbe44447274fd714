/* main.c — the command line: `sluice run`, `sluice check`, `sluice policy`, `--version`. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "main.h"
#include "base/addr.h"
#include "base/log.h"
#include "policy/policy.h"
#include "run_options.h"
#include "session/run.h"

/* Exit statuses of sluice's own commands (DESIGN.md: 125 when sluice itself fails). */
enum {
	EXIT_OK = 0,
	EXIT_POLICY_INVALID = 1,
	EXIT_USAGE = 2,
	EXIT_SLUICE_FAILED = 125,
};

static const char usage_text[] =
	"usage: sluice run [OPTIONS] -- COMMAND [ARG...]\n"
	"       sluice check FILE\n"
	"       sluice policy --default\n"
	"       sluice --version | --help\n"
	"\n"
	"sluice runs COMMAND as a session: every TCP connection and DNS query of COMMAND and of\n"
	"all its children is captured, checked against a policy, recorded, and relayed for it.\n"
	"COMMAND needs no proxy settings and cannot opt out.\n"
	"\n"
	"run options:\n"
	"  --policy FILE          rules to apply (default: the built-in policy, see\n"
	"                         `sluice policy --default`)\n"
	"  --audit FILE|-         append the audit trail (JSON Lines) to FILE, or stderr with -\n"
	"  --mode MODE            how traffic is captured: netns (Linux default), divert\n"
	"                         (userspace NAT on NFQUEUE), windivert (Windows default)\n"
	"  --fail open|closed     what happens to packets the divert engine cannot handle\n"
	"                         (default closed: they are dropped; open: they pass unchanged)\n"
	"  --dns-upstream ADDR[:PORT]\n"
	"                         send allowed DNS queries there instead of to the resolver\n"
	"                         COMMAND asked\n"
	"  --quiet                no stderr line per denied connection\n"
	"  --stats                print the session's counters on stderr when it ends\n"
	"\n"
	"The exit status is COMMAND's, 128+N if it died of signal N, or 125 if sluice failed.\n"
	"\n"
	"check FILE     validates a policy file: exit 0, or 1 with FILE:LINE: messages\n"
	"policy --default\n"
	"               prints the built-in policy (a good start for your own)\n"
	"\n"
	"example:\n"
	"  sluice run --policy npm.policy --audit trail.jsonl -- npm install\n"
	"with npm.policy:\n"
	"  allow domain registry.npmjs.org port 443\n"
	"  default deny\n";

static void print_usage_hint(void)
{
	fprintf(stderr, "Try 'sluice --help' for more information.\n");
}

static void print_report(const struct policy_report *report)
{
	for (size_t i = 0; i < report->count; i++)
		fprintf(stderr, "%s\n", report->messages[i].text);
	size_t unshown = report->errors + report->warnings - report->count;
	if (unshown > 0)
		fprintf(stderr, "(%zu more messages not shown)\n", unshown);
}

static int cmd_check(int argc, char **argv)
{
	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: sluice check FILE\n");
		return EXIT_USAGE;
	}
	struct policy_report report;
	struct policy *p = NULL;
	int rc = policy_load(&p, argv[1], &report);
	print_report(&report);
	if (rc < 0)
		return EXIT_POLICY_INVALID;
	printf("%s: ok, %zu rule%s, default %s\n", policy_file(p), policy_rule_count(p),
	       policy_rule_count(p) == 1 ? "" : "s",
	       policy_action_name(policy_default_action(p)));
	policy_free(p);
	return EXIT_OK;
}

static int cmd_policy(int argc, char **argv)
{
	if (argc != 2 || strcmp(argv[1], "--default") != 0) {
		fprintf(stderr, "usage: sluice policy --default\n");
		return EXIT_USAGE;
	}
	fputs(policy_default_text(), stdout);
	return fflush(stdout) == 0 ? EXIT_OK : EXIT_SLUICE_FAILED;
}

static int cmd_run(int argc, char **argv)
{
	struct run_options opts;
	char err[256];
	if (run_options_parse(&opts, argc - 1, argv + 1, err, sizeof err) < 0) {
		log_error("run: %s", err);
		print_usage_hint();
		return EXIT_SLUICE_FAILED;
	}
	struct policy_report report;
	struct policy *p = NULL;
	int rc = opts.policy_path ? policy_load(&p, opts.policy_path, &report)
				  : policy_load_default(&p);
	if (rc < 0) {
		if (opts.policy_path)
			print_report(&report);
		else
			log_errno(rc, "run: cannot load the built-in policy");
		return EXIT_SLUICE_FAILED;
	}
	for (size_t i = 0; i < report.count && opts.policy_path; i++)
		fprintf(stderr, "%s\n", report.messages[i].text); /* warnings */
	int status = session_run(&opts, p);
	policy_free(p);
	return status;
}

int sluice_main(int argc, char **argv)
{
	if (argc < 2) {
		fputs(usage_text, stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
		printf("sluice %s\n", SLUICE_VERSION);
		return EXIT_OK;
	}
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		fputs(usage_text, stdout);
		return EXIT_OK;
	}
	if (strcmp(cmd, "run") == 0)
		return cmd_run(argc - 1, argv + 1);
	if (strcmp(cmd, "check") == 0)
		return cmd_check(argc - 1, argv + 1);
	if (strcmp(cmd, "policy") == 0)
		return cmd_policy(argc - 1, argv + 1);
	log_error("unknown command '%s'", cmd);
	print_usage_hint();
	return EXIT_USAGE;
}
