/* policy.h — the policy language: parse a rules file, then decide connections and DNS queries.
 *
 * A policy is parsed once (from a file, a buffer, or the built-in text) into an immutable object
 * whose domain and cidr targets are indexed, so that a decision costs a few hash lookups however
 * many rules there are. Decisions never allocate and may run concurrently on one policy.
 * The language itself is described in docs/policy.md.
 *
 * Usage (what `sluice check FILE` and `sluice run` do):
 *
 *	struct policy_report report;
 *	struct policy *p;
 *	int rc = policy_load(&p, "policy.rules", &report);
 *	for (size_t i = 0; i < report.count; i++)         // errors, or warnings on success
 *		fprintf(stderr, "%s\n", report.messages[i].text);  // "policy.rules:3: ..."
 *	if (rc < 0)
 *		return 1;
 *	printf("%s: %zu rules, default %s\n", policy_file(p), policy_rule_count(p),
 *	       policy_action_name(policy_default_action(p)));
 *
 *	const char *names[] = { "registry.npmjs.org" };
 *	struct policy_conn c = { .proto = POLICY_TCP, .dst = dst, .port = 443,
 *				 .names = names, .n_names = 1 };
 *	struct policy_verdict v = policy_decide_connect(p, &c);
 *	char rule[POLICY_RULE_LABEL_MAX];
 *	policy_verdict_label(&v, rule, sizeof rule);             // "policy.rules:4" or "default"
 *	policy_free(p);
 */
#ifndef SLUICE_POLICY_POLICY_H
#define SLUICE_POLICY_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/addr.h"
#include "policy/ranges.h"

/* Bounds on a policy file; reaching one is a parse error. */
#define POLICY_MAX_BYTES (16u * 1024 * 1024)
#define POLICY_MAX_LINE 4096
#define POLICY_MAX_RULES 100000
/* Errors collected before the parser gives up. */
#define POLICY_MAX_ERRORS 10

/* Messages kept in a report, and the size of one (longer texts are cut). */
#define POLICY_MAX_MESSAGES 16
#define POLICY_MESSAGE_MAX 512

/* Longest text policy_verdict_label writes, with its NUL (file names longer are cut). */
#define POLICY_RULE_LABEL_MAX 288

/* The file name the built-in policy carries in verdicts and messages. */
#define POLICY_BUILTIN_NAME "builtin"

enum policy_action {
	POLICY_DENY = 0,
	POLICY_ALLOW = 1,
};

/* Transport of a connection; also the bits of a rule's `proto` qualifier. */
enum policy_proto {
	POLICY_TCP = 1,
	POLICY_UDP = 2,
};

/* One diagnostic: "FILE:LINE: message" or "FILE:LINE: warning: message". */
struct policy_message {
	bool warning;
	uint32_t line; /* 0 for messages about the whole file (cannot open, too large) */
	char text[POLICY_MESSAGE_MAX];
};

/* What parsing found. Errors stop the parse (the first POLICY_MAX_ERRORS are reported);
 * warnings (rules that can never match) are only looked for in a policy without errors. */
struct policy_report {
	size_t errors;   /* total, including any not stored */
	size_t warnings; /* total, including any not stored */
	size_t count;    /* messages stored, in file order: errors first, then warnings */
	struct policy_message messages[POLICY_MAX_MESSAGES];
};

/* A connection (or UDP flow) to decide. `names` are the names attributed to the destination
 * (from the session's DNS answers, TLS SNI, HTTP Host), bare host names without port, any
 * case, an optional trailing dot; a name that is not a valid host name is ignored. */
struct policy_conn {
	enum policy_proto proto;
	struct addr dst; /* IPv4-mapped IPv6 is matched as IPv4; IPv4-compatible and NAT64 forms
			  * both as themselves and as the IPv4 address they carry */
	uint16_t port;
	const char *const *names; /* NUL-terminated strings, borrowed */
	size_t n_names;
};

/* A decision. `file` points into the policy and lives as long as it. */
struct policy_verdict {
	enum policy_action action;
	bool audit;       /* decided by an `audit` rule (action is then POLICY_ALLOW) */
	uint32_t line;    /* line of the deciding rule; 0 when `default` decided (or was absent) */
	const char *file; /* the policy's file name */
	const char *guard; /* the address guard denied: the range's name (range_class_name) */
};

struct policy;

/* Parses `len` bytes of policy text (no NUL needed); `file` names it in messages and verdicts
 * (copied). On success stores a new policy in *out (free it with policy_free) and returns 0;
 * `report`, if not NULL, then holds the warnings. Returns -EINVAL for a policy with errors
 * (described in `report`), -EFBIG when len exceeds POLICY_MAX_BYTES, -ENOMEM. */
int policy_parse(struct policy **out, const char *file, const char *text, size_t len,
		 struct policy_report *report);

/* Reads the file at `path` and parses it as policy_parse does, naming it `path`.
 * Returns 0, the parse's codes, or a negative errno when the file cannot be read
 * (then `report` holds "PATH: cannot read: REASON"). */
int policy_load(struct policy **out, const char *path, struct policy_report *report);

/* The built-in policy's text (static, NUL-terminated): `sluice policy --default` prints it. */
const char *policy_default_text(void);

/* Parses the built-in policy, named POLICY_BUILTIN_NAME. Returns 0 or -ENOMEM. */
int policy_load_default(struct policy **out);

/* Frees a policy; NULL is fine. */
void policy_free(struct policy *p);

/* The name given at parse time (borrowed). */
const char *policy_file(const struct policy *p);

/* Number of rules, not counting the `default` line. */
size_t policy_rule_count(const struct policy *p);

/* The `default` action (POLICY_DENY when the file has no `default` line) and its line (0 then). */
enum policy_action policy_default_action(const struct policy *p);
uint32_t policy_default_line(const struct policy *p);

/* Decides a connection: the first rule in file order whose target matches (no target, a
 * domain matching one of the names, or a cidr containing dst) and whose port and proto
 * qualifiers accept it; else the default. UDP is allowed only by rules that say `proto udp`: an
 * allow or audit rule without `proto` accepts TCP only (deny rules accept both), and `default
 * allow` decides a UDP flow as deny (the verdict's line stays 0, "default"). */
struct policy_verdict policy_decide_connect(const struct policy *p, const struct policy_conn *c);

/* Whether a `cidr` rule explicitly allows address a on (port, proto): the first rule in file
 * order that has a cidr target containing a (or the IPv4 address an IPv6 form of a carries,
 * addr_embedded_v4) and whose qualifiers accept (port, proto) is an allow or audit rule. port 0
 * and proto 0 mean "any" (a DNS answer): an allow rule then counts when it accepts some port and
 * protocol, a deny rule when it accepts all of them. Rules without a target, domain targets and
 * `default` never count. proto is POLICY_TCP, POLICY_UDP or 0. */
bool policy_cidr_allows(const struct policy *p, const struct addr *a, uint16_t port, int proto);

/* The address guard on a: the guarded range a is in (range_classify) when no cidr rule allows it
 * for (port, proto) as policy_cidr_allows says; RANGE_PUBLIC when a may be reached. */
enum range_class policy_guard_address(const struct policy *p, const struct addr *a,
				      uint16_t port, int proto);

/* policy_decide_connect, then the address guard: a connection the policy allows to an address
 * that policy_guard_address(dst, port, proto) keeps out is denied, with `guard` set to the
 * range's name, `line` 0 and `audit` false. The relay and the UDP relay decide with this. */
struct policy_verdict policy_decide_connect_guarded(const struct policy *p,
						    const struct policy_conn *c);

/* Whether the policy denies `name` itself for (proto, port): the first rule with a domain target
 * matching it whose qualifiers accept (proto, port) is a deny rule; then *out is its verdict.
 * The relay denies a connection whose TLS SNI or HTTP Host is such a name even when the address
 * is allowed, whatever the order of the rules. */
bool policy_name_denied(const struct policy *p, enum policy_proto proto, uint16_t port,
			const char *name, struct policy_verdict *out);

/* Whether a name could change the decision for c (c's names are ignored): true when a rule with
 * a domain target that accepts c's port and proto comes before the rule (or default) that
 * decides c without names, or is a deny rule (policy_name_denied). The relay waits for a TLS
 * SNI or HTTP Host only when it matters. */
bool policy_names_matter(const struct policy *p, const struct policy_conn *c);

/* Decides a DNS query for `name` (NUL-terminated, any case, optional trailing dot): the first
 * rule with a domain target matching it, qualifiers ignored; else the default. Rules without
 * a domain target take no part. */
struct policy_verdict policy_decide_dns(const struct policy *p, const char *name);

/* "allow" or "deny". */
const char *policy_action_name(enum policy_action action);

/* Writes the deciding rule as "FILE:LINE", "default", or "guard:RANGE" (the address guard denied,
 * e.g. "guard:private"), into buf of size n
 * (POLICY_RULE_LABEL_MAX suffices; a longer file name is cut at the front, keeping the end).
 * Returns the length written, or -ENOSPC when n is too small (buf then holds "" if n > 0). */
int policy_verdict_label(const struct policy_verdict *v, char *buf, size_t n);

#endif
