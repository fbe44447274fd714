/* policy_internal.h — the parsed form of a policy and its index, shared by the policy's own files.
 *
 * Not part of the module's interface: only src/policy/ and the policy's tests and fuzz target
 * include it (the fuzz target compares the index with policy_decide_connect_linear).
 */
#ifndef SLUICE_POLICY_INTERNAL_H
#define SLUICE_POLICY_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/addr.h"
#include "policy/policy.h"

/* Longest domain name, in text without the trailing dot. */
#define POLICY_NAME_MAX 253
#define POLICY_LABEL_MAX 63
#define POLICY_LABELS_MAX 127

enum policy_rule_action {
	RULE_ALLOW,
	RULE_DENY,
	RULE_AUDIT,
};

enum policy_target_kind {
	TARGET_DOMAIN,
	TARGET_CIDR,
};

/* The shapes of domain patterns: the first three are indexed, the last is scanned. */
enum policy_glob {
	GLOB_EXACT,  /* no '*': "api.github.com" */
	GLOB_SUFFIX, /* '*' then no other '*': "*.github.com" (key: "github.com") */
	GLOB_ANY,    /* "*": any name */
	GLOB_OTHER,  /* anything else: "api.*.example.com", "*.*.example.com" */
};

struct policy_target {
	uint8_t kind; /* enum policy_target_kind */
	uint8_t glob; /* enum policy_glob, for domains */
	uint32_t rule;
	uint32_t off, len;  /* domain pattern in policy->strings: lowercase, no trailing dot */
	struct cidr cidr;   /* IPv4-mapped IPv6 prefixes are stored as IPv4 */
};

struct policy_ports {
	uint16_t lo, hi;
};

struct policy_rule {
	uint32_t line;
	uint8_t action; /* enum policy_rule_action */
	uint8_t protos; /* POLICY_TCP | POLICY_UDP bits; 0 = any */
	bool has_domain;
	uint32_t target_first, target_count;
	uint32_t port_first, port_count; /* sorted, merged ranges; count 0 = any port */
};

struct policy_index_slot;

/* Hash table of keys → ascending lists of rule indices, plus the rule lists that are scanned.
 * The layout is fixed at build time by the policy (trusted input): a lookup probes at most the
 * longest cluster, whatever name the network sends. */
struct policy_index {
	struct policy_index_slot *slots;
	size_t mask; /* slot count - 1 */
	uint8_t *keys;
	uint32_t *lists;
	uint32_t *any_name;    /* rules with a bare "*" domain, ascending */
	size_t n_any_name;
	uint32_t *other_globs; /* target indices of GLOB_OTHER domains, by ascending rule */
	size_t n_other_globs;
	uint32_t *targetless;  /* rules without targets, ascending */
	size_t n_targetless;
	size_t max_exact, max_suffix; /* longest key of each kind, 0 if none: lookups to skip */
	uint8_t v4_prefixes[33], v6_prefixes[129]; /* prefix lengths that cidr targets use */
	uint8_t n_v4_prefixes, n_v6_prefixes;
};

struct policy {
	char *file;
	struct policy_rule *rules;
	size_t n_rules;
	struct policy_target *targets;
	size_t n_targets;
	struct policy_ports *ports;
	size_t n_ports;
	char *strings;
	size_t n_strings;
	enum policy_action default_action;
	uint32_t default_line;
	struct policy_index index;
};

/* Key kinds of the index. */
enum policy_key {
	KEY_EXACT = 1,
	KEY_SUFFIX = 2,
	KEY_CIDR = 3,
};

/* The index's hash reads a key from its last byte to its first, so that one pass over a name
 * yields the hash of every suffix: start from POLICY_HASH_SEED, policy_hash_step each byte
 * backwards, policy_hash_final at any point gives the hash of the bytes stepped so far. */
#define POLICY_HASH_SEED 0xcbf29ce484222325ull

static inline uint64_t policy_hash_step(uint64_t h, uint8_t byte)
{
	return (h ^ byte) * 0x100000001b3ull;
}

static inline uint32_t policy_hash_final(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return (uint32_t)h;
}

uint32_t policy_hash(const uint8_t *key, size_t len);

/* Makes *array (of *cap elements of `size` bytes) hold at least `need` elements, doubling.
 * Returns 0 or -ENOMEM (the array is then unchanged). */
int policy_array_grow(void **array, size_t *cap, size_t need, size_t size);

/* Builds p->index from p's rules and targets. Returns 0 or -ENOMEM. */
int policy_index_build(struct policy *p);

/* Frees the index's memory (the struct itself is embedded). */
void policy_index_free(struct policy_index *ix);

/* The ascending rule list stored under (kind, key), or NULL with *n = 0; `hash` is
 * policy_hash(key, len). */
const uint32_t *policy_index_lookup(const struct policy_index *ix, enum policy_key kind,
				    const uint8_t *key, size_t len, uint32_t hash, size_t *n);

/* Writes the index key of a cidr (family, prefix, masked address) into key (18 bytes suffice);
 * returns its length. */
size_t policy_cidr_key(const struct addr *a, uint8_t prefix, uint8_t *key);

/* Normalises a name to match: lowercase, one trailing dot dropped, valid host-name syntax
 * (labels of [a-z0-9-_], 1..63 bytes, 253 in all, last label not all digits). Writes it to
 * out (POLICY_NAME_MAX + 1 bytes) and returns its length, or 0 when it is not a host name. */
size_t policy_name_normalize(const char *name, char *out);

/* True when pattern (normalised; '*' labels stand for one label or more) matches name
 * (normalised). A '*' label in name is literal, so this also answers "does pattern cover
 * every name the pattern `name` matches?". */
bool policy_glob_match(const char *pattern, size_t plen, const char *name, size_t nlen);

/* True when rule r's port and proto qualifiers accept (proto, port). */
bool policy_rule_accepts(const struct policy *p, const struct policy_rule *r,
			 enum policy_proto proto, uint16_t port);

/* The reference matchers: a first-match scan over the rules with no index. */
struct policy_verdict policy_decide_connect_linear(const struct policy *p,
						   const struct policy_conn *c);
struct policy_verdict policy_decide_dns_linear(const struct policy *p, const char *name);
bool policy_cidr_allows_linear(const struct policy *p, const struct addr *a, uint16_t port,
			       int proto);

/* Appends "this rule never matches" warnings to report for rules that a single earlier rule
 * covers (same or wider qualifiers, each target covered). Needs the index. */
void policy_find_shadowed(const struct policy *p, struct policy_report *report);

/* Appends a message "FILE:LINE: [warning: ]TEXT" to report (counting it; storing it if room). */
void policy_report_add(struct policy_report *report, const char *file, uint32_t line,
		       bool warning, const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(printf, 5, 6)))
#endif
	;

#endif
