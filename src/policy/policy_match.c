/* policy_match.c — deciding connections and DNS queries: through the index, by a plain scan, and
 * the search for rules that an earlier rule makes unreachable. */
#include <string.h>

#include "policy/policy_internal.h"

size_t policy_name_normalize(const char *name, char *out)
{
	size_t n = 0;
	while (n <= POLICY_NAME_MAX + 1 && name[n])
		n++;
	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n == 0 || n > POLICY_NAME_MAX)
		return 0;
	size_t label = 0;
	bool digits_only = true;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
			digits_only = true;
			out[i] = c;
			continue;
		}
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		bool digit = c >= '0' && c <= '9';
		if (!digit && !(c >= 'a' && c <= 'z') && c != '-' && c != '_')
			return 0;
		if (!digit)
			digits_only = false;
		if (++label > POLICY_LABEL_MAX)
			return 0;
		out[i] = c;
	}
	if (label == 0 || digits_only)
		return 0;
	out[n] = '\0';
	return n;
}

struct labels {
	size_t n;
	uint16_t start[POLICY_LABELS_MAX + 1];
	uint8_t len[POLICY_LABELS_MAX + 1];
};

static bool split_labels(const char *s, size_t len, struct labels *l)
{
	size_t start = 0;
	l->n = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && s[i] != '.')
			continue;
		if (l->n > POLICY_LABELS_MAX || i - start > POLICY_LABEL_MAX)
			return false;
		l->start[l->n] = (uint16_t)start;
		l->len[l->n] = (uint8_t)(i - start);
		l->n++;
		start = i + 1;
	}
	return true;
}

/* Greedy matching with one backtrack point, as for '*' in file globs, where a '*' label first
 * takes one name label and may then grow: later '*' labels can absorb whatever an earlier one
 * could, so only the latest needs revisiting. */
bool policy_glob_match(const char *pattern, size_t plen, const char *name, size_t nlen)
{
	struct labels pl, nl;
	if (!split_labels(pattern, plen, &pl) || !split_labels(name, nlen, &nl))
		return false;
	size_t i = 0, j = 0, star = SIZE_MAX, rest = 0;
	while (j < nl.n) {
		if (i < pl.n && pl.len[i] == 1 && pattern[pl.start[i]] == '*') {
			star = i;
			rest = j + 1;
			i++;
			j = rest;
			continue;
		}
		if (i < pl.n && pl.len[i] == nl.len[j] &&
		    memcmp(pattern + pl.start[i], name + nl.start[j], pl.len[i]) == 0) {
			i++;
			j++;
			continue;
		}
		if (star != SIZE_MAX && rest < nl.n) {
			rest++;
			i = star + 1;
			j = rest;
			continue;
		}
		return false;
	}
	return i == pl.n;
}

bool policy_rule_accepts(const struct policy *p, const struct policy_rule *r,
			 enum policy_proto proto, uint16_t port)
{
	/* UDP is allowed only by rules that say so: an allow or audit rule without `proto` is a
	 * TCP rule (so a name allowed for HTTPS does not open QUIC); deny rules match both. */
	if (r->protos ? !(r->protos & proto) : proto == POLICY_UDP && r->action != RULE_DENY)
		return false;
	if (r->port_count == 0)
		return true;
	const struct policy_ports *pr = p->ports + r->port_first;
	for (uint32_t i = 0; i < r->port_count; i++)
		if (port >= pr[i].lo && port <= pr[i].hi)
			return true;
	return false;
}

static struct policy_verdict verdict(const struct policy *p, uint32_t rule)
{
	struct policy_verdict v = { .file = p->file };
	if (rule >= p->n_rules) {
		v.action = p->default_action;
		return v;
	}
	const struct policy_rule *r = &p->rules[rule];
	v.action = r->action == RULE_DENY ? POLICY_DENY : POLICY_ALLOW;
	v.audit = r->action == RULE_AUDIT;
	v.line = r->line;
	return v;
}

/* The verdict of a connection that rule decided (UINT32_MAX: the default). For UDP, `default
 * allow` does not allow: UDP needs a rule that says `proto udp`. */
static struct policy_verdict connect_verdict(const struct policy *p, uint32_t rule,
					     enum policy_proto proto)
{
	struct policy_verdict v = verdict(p, rule);
	if (rule >= p->n_rules && proto == POLICY_UDP)
		v.action = POLICY_DENY;
	return v;
}

/* What one decision has found so far: the best (lowest) rule index and what a rule must accept. */
struct search {
	const struct policy *p;
	uint32_t best;
	bool check_qualifiers; /* false for DNS */
	enum policy_proto proto;
	uint16_t port;
};

static void consider(struct search *s, const uint32_t *list, size_t n)
{
	for (size_t i = 0; i < n && list[i] < s->best; i++) {
		if (!s->check_qualifiers ||
		    policy_rule_accepts(s->p, &s->p->rules[list[i]], s->proto, s->port)) {
			s->best = list[i];
			return;
		}
	}
}

/* Looks up one normalised name under its exact form, its suffixes and the scanned globs. */
static void search_name(struct search *s, const char *name, size_t len)
{
	const struct policy_index *ix = &s->p->index;
	const uint8_t *key = (const uint8_t *)name;
	const uint32_t *list;
	size_t n;
	uint64_t h = POLICY_HASH_SEED;
	for (size_t i = len; i-- > 0;) {
		if (key[i] == '.' && len - i - 1 <= ix->max_suffix) {
			list = policy_index_lookup(ix, KEY_SUFFIX, key + i + 1, len - i - 1,
						   policy_hash_final(h), &n);
			consider(s, list, n);
		}
		h = policy_hash_step(h, key[i]);
	}
	if (len <= ix->max_exact) {
		list = policy_index_lookup(ix, KEY_EXACT, key, len, policy_hash_final(h), &n);
		consider(s, list, n);
	}
	consider(s, ix->any_name, ix->n_any_name);
	for (size_t i = 0; i < ix->n_other_globs; i++) {
		const struct policy_target *t = &s->p->targets[ix->other_globs[i]];
		if (t->rule >= s->best)
			break;
		if (policy_glob_match(s->p->strings + t->off, t->len, name, len) &&
		    (!s->check_qualifiers ||
		     policy_rule_accepts(s->p, &s->p->rules[t->rule], s->proto, s->port)))
			s->best = t->rule;
	}
}

/* The forms of an address that cidr targets are matched against: IPv4-mapped IPv6 as IPv4 only
 * (mapped prefixes are stored as IPv4); an IPv4-compatible or NAT64 address as itself and as the
 * IPv4 address it carries. Returns how many forms (1 or 2) were stored in forms[]. */
static size_t address_forms(const struct addr *dst, struct addr forms[2])
{
	addr_unmap_v4(dst, &forms[0]);
	if (forms[0].family == ADDR_V6 && addr_embedded_v4(&forms[0], &forms[1]))
		return 2;
	return 1;
}

/* Calls visit(s, list, n) with the rule list of every cidr prefix of the policy containing a. */
static void each_cidr_list(const struct policy *p, const struct addr *a, void *s,
			   void (*visit)(void *s, const uint32_t *list, size_t n))
{
	const struct policy_index *ix = &p->index;
	const uint8_t *prefixes = a->family == ADDR_V4 ? ix->v4_prefixes : ix->v6_prefixes;
	size_t n_prefixes = a->family == ADDR_V4 ? ix->n_v4_prefixes
				: a->family == ADDR_V6 ? ix->n_v6_prefixes : 0;
	for (size_t i = 0; i < n_prefixes; i++) {
		uint8_t key[18];
		size_t len = policy_cidr_key(a, prefixes[i], key), n;
		const uint32_t *list = policy_index_lookup(ix, KEY_CIDR, key, len,
							   policy_hash(key, len), &n);
		visit(s, list, n);
	}
}

static void consider_list(void *s, const uint32_t *list, size_t n)
{
	consider(s, list, n);
}

static void search_address(struct search *s, const struct addr *dst)
{
	struct addr forms[2];
	size_t n = address_forms(dst, forms);
	for (size_t i = 0; i < n; i++)
		each_cidr_list(s->p, &forms[i], s, consider_list);
}

struct policy_verdict policy_decide_connect(const struct policy *p, const struct policy_conn *c)
{
	struct search s = {
		.p = p, .best = UINT32_MAX, .check_qualifiers = true,
		.proto = c->proto, .port = c->port,
	};
	for (size_t i = 0; i < c->n_names; i++) {
		char name[POLICY_NAME_MAX + 1];
		size_t len = c->names[i] ? policy_name_normalize(c->names[i], name) : 0;
		if (len)
			search_name(&s, name, len);
	}
	search_address(&s, &c->dst);
	consider(&s, p->index.targetless, p->index.n_targetless);
	return connect_verdict(p, s.best, c->proto);
}

bool policy_names_matter(const struct policy *p, const struct policy_conn *c)
{
	struct search s = {
		.p = p, .best = UINT32_MAX, .check_qualifiers = true,
		.proto = c->proto, .port = c->port,
	};
	search_address(&s, &c->dst);
	consider(&s, p->index.targetless, p->index.n_targetless);
	for (uint32_t i = 0; i < p->n_rules; i++) {
		const struct policy_rule *r = &p->rules[i];
		/* a domain rule before the decision, or a deny domain rule anywhere (it overrides,
		 * see policy_name_denied) */
		if (r->has_domain && (i < s.best || r->action == RULE_DENY) &&
		    policy_rule_accepts(p, r, c->proto, c->port))
			return true;
	}
	return false;
}

bool policy_name_denied(const struct policy *p, enum policy_proto proto, uint16_t port,
			const char *name, struct policy_verdict *out)
{
	struct search s = {
		.p = p, .best = UINT32_MAX, .check_qualifiers = true, .proto = proto, .port = port,
	};
	char normal[POLICY_NAME_MAX + 1];
	size_t len = name ? policy_name_normalize(name, normal) : 0;
	if (len)
		search_name(&s, normal, len);
	if (s.best >= p->n_rules || p->rules[s.best].action != RULE_DENY)
		return false;
	*out = verdict(p, s.best);
	return true;
}

struct policy_verdict policy_decide_dns(const struct policy *p, const char *name)
{
	struct search s = { .p = p, .best = UINT32_MAX };
	char normal[POLICY_NAME_MAX + 1];
	size_t len = name ? policy_name_normalize(name, normal) : 0;
	if (len)
		search_name(&s, normal, len);
	return verdict(p, s.best);
}

/* ----- The address guard ----- */

static bool port_listed(const struct policy *p, const struct policy_rule *r, uint16_t port)
{
	if (r->port_count == 0)
		return true;
	const struct policy_ports *pr = p->ports + r->port_first;
	for (uint32_t i = 0; i < r->port_count; i++)
		if (port >= pr[i].lo && port <= pr[i].hi)
			return true;
	return false;
}

/* Whether rule r answers policy_cidr_allows's question for (port, proto), 0 meaning any: an
 * allow rule when it accepts some of those connections, a deny rule when it accepts all. */
static bool cidr_rule_decides(const struct policy *p, const struct policy_rule *r,
			      uint16_t port, int proto)
{
	if (r->action != RULE_DENY) /* without `proto`, an allow rule is a TCP rule */
		return (!proto || (r->protos ? (r->protos & proto) : proto != POLICY_UDP)) &&
		       (!port || port_listed(p, r, port));
	bool protos_all = !r->protos || r->protos == (POLICY_TCP | POLICY_UDP);
	return (proto ? !r->protos || (r->protos & proto) : protos_all) &&
	       (port ? port_listed(p, r, port) : r->port_count == 0);
}

struct cidr_search {
	const struct policy *p;
	uint32_t best;
	uint16_t port;
	int proto;
};

static void consider_cidr(void *arg, const uint32_t *list, size_t n)
{
	struct cidr_search *s = arg;
	for (size_t i = 0; i < n && list[i] < s->best; i++) {
		if (cidr_rule_decides(s->p, &s->p->rules[list[i]], s->port, s->proto)) {
			s->best = list[i];
			return;
		}
	}
}

bool policy_cidr_allows(const struct policy *p, const struct addr *a, uint16_t port, int proto)
{
	struct cidr_search s = {.p = p, .best = UINT32_MAX, .port = port, .proto = proto};
	struct addr forms[2];
	size_t n = address_forms(a, forms);
	for (size_t i = 0; i < n; i++)
		each_cidr_list(p, &forms[i], &s, consider_cidr);
	return s.best < p->n_rules && p->rules[s.best].action != RULE_DENY;
}

enum range_class policy_guard_address(const struct policy *p, const struct addr *a,
				      uint16_t port, int proto)
{
	enum range_class cls = range_classify(a);
	if (cls == RANGE_PUBLIC || policy_cidr_allows(p, a, port, proto))
		return RANGE_PUBLIC;
	return cls;
}

struct policy_verdict policy_decide_connect_guarded(const struct policy *p,
						    const struct policy_conn *c)
{
	struct policy_verdict v = policy_decide_connect(p, c);
	if (v.action != POLICY_ALLOW)
		return v;
	enum range_class cls = policy_guard_address(p, &c->dst, c->port, (int)c->proto);
	if (cls != RANGE_PUBLIC) {
		v.action = POLICY_DENY;
		v.audit = false;
		v.line = 0;
		v.guard = range_class_name(cls);
	}
	return v;
}

bool policy_cidr_allows_linear(const struct policy *p, const struct addr *a, uint16_t port,
			       int proto)
{
	struct addr forms[2];
	size_t n = address_forms(a, forms);
	for (size_t r = 0; r < p->n_rules; r++) {
		const struct policy_rule *rule = &p->rules[r];
		if (!cidr_rule_decides(p, rule, port, proto))
			continue;
		for (uint32_t i = 0; i < rule->target_count; i++) {
			const struct policy_target *t = &p->targets[rule->target_first + i];
			for (size_t k = 0; k < n && t->kind == TARGET_CIDR; k++)
				if (cidr_contains(&t->cidr, &forms[k]))
					return rule->action != RULE_DENY;
		}
	}
	return false;
}

/* ----- The reference: every rule in order ----- */

static bool target_matches(const struct policy *p, const struct policy_target *t,
			   const char *name, size_t len, const struct addr *a)
{
	if (t->kind == TARGET_CIDR)
		return a && cidr_contains(&t->cidr, a);
	return name && policy_glob_match(p->strings + t->off, t->len, name, len);
}

struct policy_verdict policy_decide_connect_linear(const struct policy *p,
						   const struct policy_conn *c)
{
	struct addr forms[2];
	size_t n_forms = address_forms(&c->dst, forms);
	for (size_t r = 0; r < p->n_rules; r++) {
		const struct policy_rule *rule = &p->rules[r];
		if (!policy_rule_accepts(p, rule, c->proto, c->port))
			continue;
		bool hit = rule->target_count == 0;
		for (uint32_t i = 0; i < rule->target_count && !hit; i++) {
			const struct policy_target *t = &p->targets[rule->target_first + i];
			if (t->kind == TARGET_CIDR) {
				for (size_t k = 0; k < n_forms && !hit; k++)
					hit = target_matches(p, t, NULL, 0, &forms[k]);
				continue;
			}
			for (size_t k = 0; k < c->n_names && !hit; k++) {
				char name[POLICY_NAME_MAX + 1];
				size_t len = c->names[k] ? policy_name_normalize(c->names[k], name)
							 : 0;
				hit = len && target_matches(p, t, name, len, NULL);
			}
		}
		if (hit)
			return verdict(p, (uint32_t)r);
	}
	return connect_verdict(p, UINT32_MAX, c->proto);
}

struct policy_verdict policy_decide_dns_linear(const struct policy *p, const char *name)
{
	char normal[POLICY_NAME_MAX + 1];
	size_t len = name ? policy_name_normalize(name, normal) : 0;
	for (size_t r = 0; r < p->n_rules && len; r++) {
		const struct policy_rule *rule = &p->rules[r];
		for (uint32_t i = 0; i < rule->target_count; i++) {
			const struct policy_target *t = &p->targets[rule->target_first + i];
			if (t->kind == TARGET_DOMAIN && target_matches(p, t, normal, len, NULL))
				return verdict(p, (uint32_t)r);
		}
	}
	return verdict(p, UINT32_MAX);
}

/* ----- Rules that can never match ----- */

/* Candidates examined per rule: the search is a courtesy, not a proof, and must stay linear. */
#define SHADOW_CANDIDATES 256

static bool ports_cover(const struct policy *p, const struct policy_rule *e,
			const struct policy_rule *r)
{
	if (e->port_count == 0)
		return true;
	if (r->port_count == 0)
		return false;
	const struct policy_ports *ep = p->ports + e->port_first, *rp = p->ports + r->port_first;
	uint32_t k = 0;
	for (uint32_t i = 0; i < r->port_count; i++) {
		while (k < e->port_count && ep[k].hi < rp[i].lo)
			k++;
		if (k == e->port_count || ep[k].lo > rp[i].lo || ep[k].hi < rp[i].hi)
			return false;
	}
	return true;
}

static bool target_covers(const struct policy *p, const struct policy_target *e,
			  const struct policy_target *t)
{
	if (e->kind != t->kind)
		return false;
	if (e->kind == TARGET_CIDR)
		return e->cidr.prefix <= t->cidr.prefix && cidr_contains(&e->cidr, &t->cidr.base);
	return policy_glob_match(p->strings + e->off, e->len, p->strings + t->off, t->len);
}

/* True when every connection and DNS query that rule r matches, rule e matches too. */
static bool rule_covers(const struct policy *p, const struct policy_rule *e,
			const struct policy_rule *r)
{
	if (e->protos && (!r->protos || (r->protos & ~e->protos)))
		return false;
	if (!ports_cover(p, e, r))
		return false;
	if (e->target_count == 0)
		return !r->has_domain;
	if (r->target_count == 0)
		return false;
	for (uint32_t i = 0; i < r->target_count; i++) {
		const struct policy_target *t = &p->targets[r->target_first + i];
		bool covered = false;
		for (uint32_t k = 0; k < e->target_count && !covered; k++)
			covered = target_covers(p, &p->targets[e->target_first + k], t);
		if (!covered)
			return false;
	}
	return true;
}

struct shadow {
	const struct policy *p;
	uint32_t rule;
	size_t budget;
	uint32_t found; /* an earlier rule covering `rule`, or UINT32_MAX */
};

static void try_list(struct shadow *sh, const uint32_t *list, size_t n)
{
	const struct policy_rule *r = &sh->p->rules[sh->rule];
	for (size_t i = 0; i < n && list[i] < sh->rule && sh->found == UINT32_MAX; i++) {
		if (sh->budget == 0)
			return;
		sh->budget--;
		if (rule_covers(sh->p, &sh->p->rules[list[i]], r))
			sh->found = list[i];
	}
}

/* Earlier rules that could cover rule r are among those whose target covers r's first target,
 * or, for a rule without domain targets, among the target-less ones. */
static uint32_t find_cover(const struct policy *p, uint32_t rule)
{
	const struct policy_index *ix = &p->index;
	const struct policy_rule *r = &p->rules[rule];
	struct shadow sh = { .p = p, .rule = rule, .budget = SHADOW_CANDIDATES,
			     .found = UINT32_MAX };
	const uint32_t *list;
	size_t n;
	if (!r->has_domain)
		try_list(&sh, ix->targetless, ix->n_targetless);
	if (r->target_count == 0)
		return sh.found;
	const struct policy_target *t = &p->targets[r->target_first];
	if (t->kind == TARGET_CIDR) {
		bool v4 = t->cidr.base.family == ADDR_V4;
		const uint8_t *prefixes = v4 ? ix->v4_prefixes : ix->v6_prefixes;
		size_t n_prefixes = v4 ? ix->n_v4_prefixes : ix->n_v6_prefixes;
		for (size_t i = 0; i < n_prefixes; i++) {
			uint8_t key[18];
			if (prefixes[i] > t->cidr.prefix)
				continue;
			size_t len = policy_cidr_key(&t->cidr.base, prefixes[i], key);
			list = policy_index_lookup(ix, KEY_CIDR, key, len, policy_hash(key, len),
						   &n);
			try_list(&sh, list, n);
		}
		return sh.found;
	}
	const char *pattern = p->strings + t->off;
	const uint8_t *key = (const uint8_t *)pattern;
	list = policy_index_lookup(ix, KEY_EXACT, key, t->len, policy_hash(key, t->len), &n);
	try_list(&sh, list, n);
	for (uint32_t i = 0; i < t->len; i++) {
		if (key[i] != '.')
			continue;
		size_t len = t->len - i - 1;
		list = policy_index_lookup(ix, KEY_SUFFIX, key + i + 1, len,
					   policy_hash(key + i + 1, len), &n);
		try_list(&sh, list, n);
	}
	try_list(&sh, ix->any_name, ix->n_any_name);
	for (size_t i = 0; i < ix->n_other_globs && sh.found == UINT32_MAX; i++) {
		const struct policy_target *e = &p->targets[ix->other_globs[i]];
		if (e->rule >= rule || sh.budget == 0)
			break;
		if (target_covers(p, e, t))
			try_list(&sh, &e->rule, 1);
	}
	return sh.found;
}

void policy_find_shadowed(const struct policy *p, struct policy_report *report)
{
	if (!report)
		return;
	for (uint32_t r = 1; r < p->n_rules; r++) {
		uint32_t e = find_cover(p, r);
		if (e != UINT32_MAX)
			policy_report_add(report, p->file, p->rules[r].line, true,
					  "this rule never matches: line %lu comes first and "
					  "matches everything it would",
					  (unsigned long)p->rules[e].line);
	}
}
