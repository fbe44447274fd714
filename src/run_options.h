/* run_options.h — the options of `sluice run`, parsed from argv without OS calls. */
#ifndef SLUICE_RUN_OPTIONS_H
#define SLUICE_RUN_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/addr.h"

enum run_mode {
	RUN_MODE_PLATFORM_DEFAULT = 0, /* netns on Linux, windivert on Windows */
	RUN_MODE_NETNS,
	RUN_MODE_DIVERT,
	RUN_MODE_WINDIVERT,
};

enum run_fail_mode {
	RUN_FAIL_CLOSED = 0,
	RUN_FAIL_OPEN,
};

/* What `sluice run` was asked to do. Strings point into the argv given to run_options_parse. */
struct run_options {
	const char *policy_path;      /* NULL: the built-in policy */
	const char *audit_path;       /* NULL: no audit trail; "-": stderr */
	enum run_mode mode;
	enum run_fail_mode fail;
	bool has_dns_upstream;
	struct addr dns_upstream;     /* valid when has_dns_upstream */
	uint16_t dns_upstream_port;   /* 53 unless given */
	bool quiet;
	bool stats;                   /* print the session's counters on stderr at the end */
	char **command;               /* COMMAND and its arguments, NULL-terminated (argv's own) */
	int command_argc;
};

/* Parses the arguments after "run": options (`--opt VALUE` or `--opt=VALUE`), then `--` (or the
 * first non-option word) and COMMAND [ARG...]. argv must be NULL-terminated at argv[argc].
 * Returns 0, or -EINVAL with a one-line explanation in err (size errlen). */
int run_options_parse(struct run_options *out, int argc, char **argv, char *err, size_t errlen);

/* "netns", "divert", "windivert", or "default". */
const char *run_mode_name(enum run_mode mode);

#endif
