/* run_options.c — parsing `sluice run [OPTIONS] -- COMMAND [ARG...]`. */
#include "run_options.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* Parses "ADDR", "ADDR:PORT", "[V6ADDR]" or "[V6ADDR]:PORT" (a bare IPv6 address has no port). */
static int parse_addr_port(const char *text, struct addr *addr, uint16_t *port)
{
	const char *host = text, *port_text = NULL;
	size_t host_len = strlen(text);

	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (!close)
			return -EINVAL;
		host = text + 1;
		host_len = (size_t)(close - host);
		if (close[1] == ':')
			port_text = close + 2;
		else if (close[1] != '\0')
			return -EINVAL;
	} else {
		const char *colon = strchr(text, ':');
		if (colon && !strchr(colon + 1, ':')) {
			host_len = (size_t)(colon - text);
			port_text = colon + 1;
		}
	}
	if (addr_parse(addr, host, host_len) < 0)
		return -EINVAL;
	*port = 53;
	if (port_text) {
		unsigned value = 0;
		if (!*port_text || strlen(port_text) > 5)
			return -EINVAL;
		for (const char *p = port_text; *p; p++) {
			if (*p < '0' || *p > '9')
				return -EINVAL;
			value = value * 10 + (unsigned)(*p - '0');
		}
		if (value == 0 || value > 65535)
			return -EINVAL;
		*port = (uint16_t)value;
	}
	return 0;
}

enum option_id {
	OPT_POLICY,
	OPT_AUDIT,
	OPT_MODE,
	OPT_FAIL,
	OPT_DNS_UPSTREAM,
	OPT_QUIET,
	OPT_STATS,
};

static const struct {
	const char *name;
	enum option_id id;
	bool takes_value;
} options[] = {
	{"policy", OPT_POLICY, true},
	{"audit", OPT_AUDIT, true},
	{"mode", OPT_MODE, true},
	{"fail", OPT_FAIL, true},
	{"dns-upstream", OPT_DNS_UPSTREAM, true},
	{"quiet", OPT_QUIET, false},
	{"stats", OPT_STATS, false},
};

static int apply(struct run_options *out, enum option_id id, const char *value, char *err,
		 size_t errlen)
{
	switch (id) {
	case OPT_POLICY:
		out->policy_path = value;
		return 0;
	case OPT_AUDIT:
		out->audit_path = value;
		return 0;
	case OPT_MODE:
		if (strcmp(value, "netns") == 0)
			out->mode = RUN_MODE_NETNS;
		else if (strcmp(value, "divert") == 0)
			out->mode = RUN_MODE_DIVERT;
		else if (strcmp(value, "windivert") == 0)
			out->mode = RUN_MODE_WINDIVERT;
		else
			return fail(err, errlen,
				    "--mode must be netns, divert or windivert, not '%s'", value);
		return 0;
	case OPT_FAIL:
		if (strcmp(value, "closed") == 0)
			out->fail = RUN_FAIL_CLOSED;
		else if (strcmp(value, "open") == 0)
			out->fail = RUN_FAIL_OPEN;
		else
			return fail(err, errlen, "--fail must be open or closed, not '%s'", value);
		return 0;
	case OPT_DNS_UPSTREAM:
		if (parse_addr_port(value, &out->dns_upstream, &out->dns_upstream_port) < 0)
			return fail(err, errlen,
				    "--dns-upstream expects ADDR[:PORT] (an IP address, IPv6 in "
				    "brackets with a port), not '%s'",
				    value);
		out->has_dns_upstream = true;
		return 0;
	case OPT_QUIET:
		out->quiet = true;
		return 0;
	case OPT_STATS:
		out->stats = true;
		return 0;
	}
	return -EINVAL;
}

int run_options_parse(struct run_options *out, int argc, char **argv, char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	out->dns_upstream_port = 53;

	int i = 0;
	while (i < argc) {
		const char *arg = argv[i];
		if (strcmp(arg, "--") == 0) {
			i++;
			break;
		}
		if (strncmp(arg, "--", 2) != 0) {
			if (arg[0] == '-')
				return fail(err, errlen, "unknown option '%s'", arg);
			break; /* the command starts here */
		}
		const char *name = arg + 2, *eq = strchr(name, '=');
		size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
		size_t k;
		for (k = 0; k < sizeof options / sizeof options[0]; k++)
			if (strlen(options[k].name) == name_len &&
			    strncmp(options[k].name, name, name_len) == 0)
				break;
		if (k == sizeof options / sizeof options[0])
			return fail(err, errlen, "unknown option '%s'", arg);
		const char *value = NULL;
		if (options[k].takes_value) {
			if (eq) {
				value = eq + 1;
			} else if (i + 1 < argc) {
				value = argv[++i];
			} else {
				return fail(err, errlen, "option '--%s' needs a value", options[k].name);
			}
			if (!*value)
				return fail(err, errlen, "option '--%s' needs a non-empty value",
					    options[k].name);
		} else if (eq) {
			return fail(err, errlen, "option '--%s' takes no value", options[k].name);
		}
		int rc = apply(out, options[k].id, value, err, errlen);
		if (rc < 0)
			return rc;
		i++;
	}
	if (i >= argc)
		return fail(err, errlen, "no COMMAND given (sluice run [OPTIONS] -- COMMAND [ARG...])");
	out->command = argv + i;
	out->command_argc = argc - i;
	return 0;
}

const char *run_mode_name(enum run_mode mode)
{
	switch (mode) {
	case RUN_MODE_NETNS:
		return "netns";
	case RUN_MODE_DIVERT:
		return "divert";
	case RUN_MODE_WINDIVERT:
		return "windivert";
	case RUN_MODE_PLATFORM_DEFAULT:
		break;
	}
	return "default";
}
