/* policy.c — reads policy text into rules: the lexer, the grammar, its error messages, loading. */
#include "policy/policy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy_internal.h"

enum keyword {
	KW_NONE,
	KW_ALLOW,
	KW_DENY,
	KW_AUDIT,
	KW_DEFAULT,
	KW_DOMAIN,
	KW_CIDR,
	KW_PORT,
	KW_PROTO,
};

static const char *const keyword_names[] = {
	[KW_NONE] = "",
	[KW_ALLOW] = "allow",
	[KW_DENY] = "deny",
	[KW_AUDIT] = "audit",
	[KW_DEFAULT] = "default",
	[KW_DOMAIN] = "domain",
	[KW_CIDR] = "cidr",
	[KW_PORT] = "port",
	[KW_PROTO] = "proto",
};

enum token_kind {
	TOK_END,
	TOK_WORD,
	TOK_COMMA,
};

struct token {
	enum token_kind kind;
	const char *text;
	size_t len;
};

/* The parse of one text: the policy being filled, the position, and the report. */
struct parser {
	struct policy *p;
	struct policy_report *report;
	uint32_t line;
	const char *pos, *end; /* the rest of the current line, comment included */
	size_t cap_rules, cap_targets, cap_ports, cap_strings;
	uint32_t default_line;
	bool saw_default;
};

/* Printable form of a token for messages: at most 48 bytes, control bytes as \xNN. */
struct shown {
	char text[48 * 4 + 8];
};

static const char *show(struct shown *s, const char *text, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	size_t n = len > 48 ? 45 : len;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)text[i];
		if (c < 0x20 || c == 0x7f || c == '\'') {
			s->text[o++] = '\\';
			s->text[o++] = 'x';
			s->text[o++] = hex[c >> 4];
			s->text[o++] = hex[c & 15];
		} else {
			s->text[o++] = (char)c;
		}
	}
	if (n < len) {
		memcpy(s->text + o, "...", 3);
		o += 3;
	}
	s->text[o] = '\0';
	return s->text;
}

void policy_report_add(struct policy_report *report, const char *file, uint32_t line,
		       bool warning, const char *fmt, ...)
{
	if (!report)
		return;
	if (warning)
		report->warnings++;
	else
		report->errors++;
	if (report->count >= POLICY_MAX_MESSAGES)
		return;
	struct policy_message *m = &report->messages[report->count++];
	m->warning = warning;
	m->line = line;
	int o;
	if (line)
		o = snprintf(m->text, sizeof m->text, "%s:%lu: %s", file, (unsigned long)line,
			     warning ? "warning: " : "");
	else
		o = snprintf(m->text, sizeof m->text, "%s: %s", file, warning ? "warning: " : "");
	if (o < 0 || (size_t)o >= sizeof m->text)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m->text + o, sizeof m->text - (size_t)o, fmt, ap);
	va_end(ap);
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int fail(struct parser *ps, const char *fmt, ...)
{
	char text[POLICY_MESSAGE_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	policy_report_add(ps->report, ps->p->file, ps->line, false, "%s", text);
	return -EINVAL;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static bool ends_word(char c)
{
	return is_space(c) || c == ',' || c == '#';
}

/* Next token of the line; a control byte or NUL outside a comment is an error. */
static int next_token(struct parser *ps, struct token *t)
{
	while (ps->pos < ps->end && is_space(*ps->pos))
		ps->pos++;
	t->text = ps->pos;
	t->len = 0;
	if (ps->pos == ps->end || *ps->pos == '#') {
		t->kind = TOK_END;
		return 0;
	}
	if (*ps->pos == ',') {
		t->kind = TOK_COMMA;
		t->len = 1;
		ps->pos++;
		return 0;
	}
	t->kind = TOK_WORD;
	while (ps->pos < ps->end && !ends_word(*ps->pos)) {
		unsigned char c = (unsigned char)*ps->pos;
		if (c < 0x20 || c == 0x7f)
			return fail(ps, "unexpected control byte 0x%02x (only spaces and tabs "
					"separate words)", c);
		ps->pos++;
	}
	t->len = (size_t)(ps->pos - t->text);
	return 0;
}

static int peek_token(struct parser *ps, struct token *t)
{
	const char *saved = ps->pos;
	int rc = next_token(ps, t);
	ps->pos = saved;
	return rc;
}

static bool word_is(const struct token *t, const char *s)
{
	return t->kind == TOK_WORD && t->len == strlen(s) && memcmp(t->text, s, t->len) == 0;
}

static bool word_is_nocase(const struct token *t, const char *s)
{
	if (t->kind != TOK_WORD || t->len != strlen(s))
		return false;
	for (size_t i = 0; i < t->len; i++) {
		char c = t->text[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c != s[i])
			return false;
	}
	return true;
}

/* The keyword a word is, exactly (keywords are lowercase); *folded gets the keyword the word
 * would be if case did not matter, for the hint. */
static enum keyword keyword_of(const struct token *t, enum keyword *folded)
{
	*folded = KW_NONE;
	for (int k = KW_ALLOW; k <= KW_PROTO; k++) {
		if (word_is(t, keyword_names[k]))
			return (enum keyword)k;
		if (word_is_nocase(t, keyword_names[k]))
			*folded = (enum keyword)k;
	}
	return KW_NONE;
}

int policy_array_grow(void **array, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return 0;
	size_t n = *cap ? *cap : 16;
	while (n < need) {
		if (n > SIZE_MAX / 2 / size)
			return -ENOMEM;
		n *= 2;
	}
	void *grown = realloc(*array, n * size);
	if (!grown)
		return -ENOMEM;
	*array = grown;
	*cap = n;
	return 0;
}

/* ----- Items of the lists after each keyword ----- */

static bool all_digits(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static bool looks_like_address(const char *s, size_t n)
{
	struct cidr c;
	int rc = cidr_parse(&c, s, n);
	return rc == 0 || rc == -EDOM || rc == -ERANGE;
}

/* Checks a domain pattern and appends its normalised form as a target of the rule. */
static int add_domain(struct parser *ps, uint32_t rule, const struct token *t)
{
	struct shown sh;
	const char *s = t->text;
	size_t n = t->len;
	enum keyword folded;
	if (keyword_of(t, &folded) != KW_NONE)
		return fail(ps, "expected a domain name or pattern after 'domain', got the keyword "
				"'%s'", show(&sh, s, n));
	if (n > 0 && s[n - 1] == '.')
		n--;
	if (n == 0)
		return fail(ps, "empty domain name '%s'", show(&sh, t->text, t->len));
	if (looks_like_address(t->text, t->len))
		return fail(ps, "'%s' is an address, not a name: write 'cidr %s'",
			    show(&sh, t->text, t->len), show(&sh, t->text, t->len));
	if (n > POLICY_NAME_MAX)
		return fail(ps, "domain '%s' is longer than %d characters",
			    show(&sh, t->text, t->len), POLICY_NAME_MAX);

	size_t label_start = 0, stars = 0;
	for (size_t i = 0; i <= n; i++) {
		unsigned char c = i < n ? (unsigned char)s[i] : '.';
		if (c == '.') {
			size_t len = i - label_start;
			if (len == 0)
				return fail(ps, "empty label in domain '%s'",
					    show(&sh, t->text, t->len));
			if (len > POLICY_LABEL_MAX)
				return fail(ps, "label longer than %d characters in domain '%s'",
					    POLICY_LABEL_MAX, show(&sh, t->text, t->len));
			if (memchr(s + label_start, '*', len)) {
				if (len != 1)
					return fail(ps, "'*' must be a whole label in domain '%s' "
							"(write '*.example.com', which matches "
							"one label or more)",
						    show(&sh, t->text, t->len));
				stars++;
			}
			label_start = i + 1;
			continue;
		}
		if (c >= 0x80)
			return fail(ps, "non-ASCII domain '%s': write its punycode form "
					"('xn--...')", show(&sh, t->text, t->len));
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '*';
		if (!ok)
			return fail(ps, "unexpected character '%c' in domain '%s' (names use "
					"letters, digits, '-', '_' and '*' labels)",
				    c, show(&sh, t->text, t->len));
	}
	size_t last = n;
	while (last > 0 && s[last - 1] != '.')
		last--;
	if (all_digits(s + last, n - last))
		return fail(ps, "domain '%s' ends in a number, which no host name does (for an "
				"address write 'cidr')", show(&sh, t->text, t->len));

	if (policy_array_grow((void **)&ps->p->strings, &ps->cap_strings, ps->p->n_strings + n + 1, 1) < 0 ||
	    policy_array_grow((void **)&ps->p->targets, &ps->cap_targets, ps->p->n_targets + 1,
		 sizeof *ps->p->targets) < 0)
		return -ENOMEM;
	char *dst = ps->p->strings + ps->p->n_strings;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		dst[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	dst[n] = '\0';

	struct policy_target *tg = &ps->p->targets[ps->p->n_targets++];
	memset(tg, 0, sizeof *tg);
	tg->kind = TARGET_DOMAIN;
	tg->rule = rule;
	tg->off = (uint32_t)ps->p->n_strings;
	tg->len = (uint32_t)n;
	if (stars == 0)
		tg->glob = GLOB_EXACT;
	else if (n == 1)
		tg->glob = GLOB_ANY;
	else if (stars == 1 && dst[0] == '*')
		tg->glob = GLOB_SUFFIX;
	else
		tg->glob = GLOB_OTHER;
	ps->p->n_strings += n + 1;
	return 0;
}

static int add_cidr(struct parser *ps, uint32_t rule, const struct token *t)
{
	struct shown sh, sh2;
	struct cidr c;
	int rc = cidr_parse(&c, t->text, t->len);
	if (rc == -EDOM) {
		char fixed[ADDR_STRLEN + 8];
		if (cidr_format(&c, fixed, sizeof fixed) < 0)
			fixed[0] = '\0';
		const char *slash = memchr(t->text, '/', t->len);
		size_t alen = slash ? (size_t)(slash - t->text) : t->len;
		return fail(ps, "host bits are set in '%s': write '%s' (or '%s' for the one "
				"address)", show(&sh, t->text, t->len), fixed,
			    show(&sh2, t->text, alen));
	}
	if (rc == -ERANGE)
		return fail(ps, "prefix length beyond %d bits in '%s'",
			    memchr(t->text, ':', t->len) ? 128 : 32, show(&sh, t->text, t->len));
	if (rc < 0) {
		bool namelike = !memchr(t->text, ':', t->len);
		bool letters = false;
		for (size_t i = 0; i < t->len; i++) {
			char ch = t->text[i];
			if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
				letters = true;
		}
		return fail(ps, "expected an address or prefix (ADDR or ADDR/LEN) after 'cidr', "
				"got '%s'%s", show(&sh, t->text, t->len),
			    namelike && letters ? " (for a name write 'domain')" : "");
	}
	if (c.base.family == ADDR_V6 && c.prefix >= 96) {
		struct addr v4;
		if (addr_unmap_v4(&c.base, &v4)) {
			c.base = v4;
			c.prefix = (uint8_t)(c.prefix - 96);
		}
	}
	if (policy_array_grow((void **)&ps->p->targets, &ps->cap_targets, ps->p->n_targets + 1,
		 sizeof *ps->p->targets) < 0)
		return -ENOMEM;
	struct policy_target *tg = &ps->p->targets[ps->p->n_targets++];
	memset(tg, 0, sizeof *tg);
	tg->kind = TARGET_CIDR;
	tg->rule = rule;
	tg->cidr = c;
	return 0;
}

/* Parses up to 5 digits into a port 1..65535; -1 if not digits, -2 if out of range. */
static long port_number(const char *s, size_t n)
{
	if (!all_digits(s, n))
		return -1;
	while (n > 1 && *s == '0') {
		s++;
		n--;
	}
	if (n > 5)
		return -2;
	long v = 0;
	for (size_t i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return (v < 1 || v > 65535) ? -2 : v;
}

static int add_ports(struct parser *ps, const struct token *t)
{
	struct shown sh;
	const char *dash = memchr(t->text, '-', t->len);
	long lo, hi;
	if (dash) {
		lo = port_number(t->text, (size_t)(dash - t->text));
		hi = port_number(dash + 1, t->len - (size_t)(dash - t->text) - 1);
	} else {
		lo = hi = port_number(t->text, t->len);
	}
	if (lo == -1 || hi == -1)
		return fail(ps, "expected a port number or range after 'port', got '%s'",
			    show(&sh, t->text, t->len));
	if (lo == -2 || hi == -2)
		return fail(ps, "port '%s' is out of range (ports are 1-65535)",
			    show(&sh, t->text, t->len));
	if (lo > hi)
		return fail(ps, "port range '%s' is backwards: write '%ld-%ld'",
			    show(&sh, t->text, t->len), hi, lo);
	if (policy_array_grow((void **)&ps->p->ports, &ps->cap_ports, ps->p->n_ports + 1,
		 sizeof *ps->p->ports) < 0)
		return -ENOMEM;
	ps->p->ports[ps->p->n_ports].lo = (uint16_t)lo;
	ps->p->ports[ps->p->n_ports].hi = (uint16_t)hi;
	ps->p->n_ports++;
	return 0;
}

static int add_proto(struct parser *ps, struct policy_rule *r, const struct token *t)
{
	struct shown sh;
	if (word_is(t, "tcp")) {
		r->protos |= POLICY_TCP;
		return 0;
	}
	if (word_is(t, "udp")) {
		r->protos |= POLICY_UDP;
		return 0;
	}
	if (word_is_nocase(t, "tcp") || word_is_nocase(t, "udp"))
		return fail(ps, "protocols are lowercase: write 'tcp' or 'udp', not '%s'",
			    show(&sh, t->text, t->len));
	return fail(ps, "expected 'tcp' or 'udp' after 'proto', got '%s'",
		    show(&sh, t->text, t->len));
}

static int compare_ports(const void *a, const void *b)
{
	const struct policy_ports *x = a, *y = b;
	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	return (x->hi > y->hi) - (x->hi < y->hi);
}

/* Sorts and merges a rule's port ranges, so that coverage checks can walk them in order. */
static void merge_ports(struct policy *p, struct policy_rule *r)
{
	size_t n = r->port_count, out = 0;
	if (n == 0)
		return;
	struct policy_ports *pr = p->ports + r->port_first;
	qsort(pr, n, sizeof *pr, compare_ports);
	for (size_t i = 1; i < n; i++) {
		if ((uint32_t)pr[i].lo <= (uint32_t)pr[out].hi + 1) {
			if (pr[i].hi > pr[out].hi)
				pr[out].hi = pr[i].hi;
		} else {
			pr[++out] = pr[i];
		}
	}
	r->port_count = (uint32_t)(out + 1);
	p->n_ports = r->port_first + r->port_count;
}

/* ----- Lines ----- */

static const char *expected_item(enum keyword kw)
{
	switch (kw) {
	case KW_DOMAIN:
		return "a domain name or pattern";
	case KW_CIDR:
		return "an address or prefix (ADDR or ADDR/LEN)";
	case KW_PORT:
		return "a port number or range";
	default:
		return "'tcp' or 'udp'";
	}
}

/* Parses "ITEM(,ITEM)*" after keyword kw into the rule being built. */
static int parse_list(struct parser *ps, enum keyword kw, struct policy_rule *r, uint32_t rule)
{
	struct token t;
	const char *after = keyword_names[kw];
	for (;;) {
		int rc = next_token(ps, &t);
		if (rc < 0)
			return rc;
		if (t.kind == TOK_END)
			return fail(ps, "expected %s after '%s'", expected_item(kw), after);
		if (t.kind == TOK_COMMA)
			return fail(ps, "expected %s after '%s', got ','", expected_item(kw),
				    after);
		switch (kw) {
		case KW_DOMAIN:
			rc = add_domain(ps, rule, &t);
			break;
		case KW_CIDR:
			rc = add_cidr(ps, rule, &t);
			break;
		case KW_PORT:
			rc = add_ports(ps, &t);
			break;
		default:
			rc = add_proto(ps, r, &t);
			break;
		}
		if (rc < 0)
			return rc;
		rc = peek_token(ps, &t);
		if (rc < 0)
			return rc;
		if (t.kind != TOK_COMMA)
			return 0;
		next_token(ps, &t);
		after = ",";
	}
}

static int parse_rule(struct parser *ps, enum keyword action, const struct token *first)
{
	struct shown sh;
	struct policy *p = ps->p;
	if (ps->saw_default)
		return fail(ps, "this rule is never reached: 'default' (line %lu) must be the last "
				"rule", (unsigned long)ps->default_line);
	if (p->n_rules >= POLICY_MAX_RULES)
		return fail(ps, "too many rules (at most %d)", POLICY_MAX_RULES);

	uint32_t index = (uint32_t)p->n_rules;
	struct policy_rule r = {
		.line = ps->line,
		.action = action == KW_ALLOW ? RULE_ALLOW : action == KW_DENY ? RULE_DENY
									 : RULE_AUDIT,
		.target_first = (uint32_t)p->n_targets,
		.port_first = (uint32_t)p->n_ports,
	};
	bool saw_port = false, saw_proto = false, saw_clause = false;
	int rc;
	for (;;) {
		struct token t;
		rc = next_token(ps, &t);
		if (rc < 0)
			return rc;
		if (t.kind == TOK_END)
			break;
		if (t.kind == TOK_COMMA)
			return fail(ps, "unexpected ',' (a list follows its keyword: "
				    "'port 80,443')");
		enum keyword folded;
		enum keyword kw = keyword_of(&t, &folded);
		switch (kw) {
		case KW_DOMAIN:
		case KW_CIDR:
			break;
		case KW_PORT:
			if (saw_port)
				return fail(ps, "a second 'port' in one rule: give one list, "
						"'port 80,443'");
			saw_port = true;
			break;
		case KW_PROTO:
			if (saw_proto)
				return fail(ps, "a second 'proto' in one rule: give one list, "
						"'proto tcp,udp'");
			saw_proto = true;
			break;
		case KW_ALLOW:
		case KW_DENY:
		case KW_AUDIT:
		case KW_DEFAULT:
			return fail(ps, "one rule a line: '%s' starts a new rule, put it on "
					"its own line", keyword_names[kw]);
		default:
			if (folded != KW_NONE)
				return fail(ps, "keywords are lowercase: write '%s', not '%s'",
					    keyword_names[folded], show(&sh, t.text, t.len));
			return fail(ps, "expected 'domain', 'cidr', 'port' or 'proto', got '%s'",
				    show(&sh, t.text, t.len));
		}
		rc = parse_list(ps, kw, &r, index);
		if (rc < 0)
			return rc;
		saw_clause = true;
	}
	if (!saw_clause)
		return fail(ps, "expected 'domain', 'cidr', 'port' or 'proto' after '%s' (to "
				"decide everything else, end the file with 'default %s')",
			    show(&sh, first->text, first->len),
			    action == KW_DENY ? "deny" : "allow");

	r.target_count = (uint32_t)p->n_targets - r.target_first;
	r.port_count = (uint32_t)p->n_ports - r.port_first;
	for (uint32_t i = 0; i < r.target_count; i++)
		if (p->targets[r.target_first + i].kind == TARGET_DOMAIN)
			r.has_domain = true;
	merge_ports(p, &r);
	if (policy_array_grow((void **)&p->rules, &ps->cap_rules, p->n_rules + 1, sizeof *p->rules) < 0)
		return -ENOMEM;
	p->rules[p->n_rules++] = r;
	return 0;
}

static int parse_default(struct parser *ps)
{
	struct shown sh;
	struct token t;
	if (ps->saw_default)
		return fail(ps, "a second 'default' (the first is on line %lu)",
			    (unsigned long)ps->default_line);
	int rc = next_token(ps, &t);
	if (rc < 0)
		return rc;
	enum keyword folded;
	enum keyword kw = t.kind == TOK_WORD ? keyword_of(&t, &folded) : KW_NONE;
	if (kw != KW_ALLOW && kw != KW_DENY) {
		if (t.kind == TOK_END)
			return fail(ps, "expected 'allow' or 'deny' after 'default'");
		if (kw == KW_NONE && (folded == KW_ALLOW || folded == KW_DENY))
			return fail(ps, "keywords are lowercase: write '%s', not '%s'",
				    keyword_names[folded], show(&sh, t.text, t.len));
		return fail(ps, "expected 'allow' or 'deny' after 'default', got '%s'",
			    show(&sh, t.text, t.len));
	}
	struct token extra;
	rc = next_token(ps, &extra);
	if (rc < 0)
		return rc;
	if (extra.kind != TOK_END)
		return fail(ps, "unexpected '%s' after 'default %s': the default takes nothing "
				"more", show(&sh, extra.text, extra.len), keyword_names[kw]);
	ps->saw_default = true;
	ps->default_line = ps->line;
	ps->p->default_action = kw == KW_ALLOW ? POLICY_ALLOW : POLICY_DENY;
	ps->p->default_line = ps->line;
	return 0;
}

/* Parses one line. On an error, drops whatever the line had added and returns it. */
static int parse_line(struct parser *ps)
{
	struct shown sh;
	struct token t;
	size_t n_targets = ps->p->n_targets, n_ports = ps->p->n_ports;
	size_t n_strings = ps->p->n_strings;
	int rc = next_token(ps, &t);
	if (rc == 0 && t.kind == TOK_WORD) {
		enum keyword folded;
		enum keyword kw = keyword_of(&t, &folded);
		if (kw == KW_DEFAULT)
			rc = parse_default(ps);
		else if (kw == KW_ALLOW || kw == KW_DENY || kw == KW_AUDIT)
			rc = parse_rule(ps, kw, &t);
		else if (folded != KW_NONE)
			rc = fail(ps, "keywords are lowercase: write '%s', not '%s'",
				  keyword_names[folded], show(&sh, t.text, t.len));
		else
			rc = fail(ps, "expected 'allow', 'deny', 'audit' or 'default' at the start "
				      "of a rule, got '%s'", show(&sh, t.text, t.len));
	} else if (rc == 0 && t.kind == TOK_COMMA) {
		rc = fail(ps, "expected 'allow', 'deny', 'audit' or 'default' at the start of a "
			      "rule, got ','");
	}
	if (rc < 0) {
		ps->p->n_targets = n_targets;
		ps->p->n_ports = n_ports;
		ps->p->n_strings = n_strings;
	}
	return rc;
}

void policy_free(struct policy *p)
{
	if (!p)
		return;
	policy_index_free(&p->index);
	free(p->file);
	free(p->rules);
	free(p->targets);
	free(p->ports);
	free(p->strings);
	free(p);
}

int policy_parse(struct policy **out, const char *file, const char *text, size_t len,
		 struct policy_report *report)
{
	struct parser ps = { .report = report };
	int rc = -ENOMEM;
	*out = NULL;
	if (report)
		memset(report, 0, sizeof *report);
	if (!file)
		file = "(policy)";
	if (!text)
		len = 0;
	if (len > POLICY_MAX_BYTES) {
		policy_report_add(report, file, 0, false, "larger than %u bytes", POLICY_MAX_BYTES);
		return -EFBIG;
	}
	struct policy *p = calloc(1, sizeof *p);
	if (!p)
		goto fail;
	size_t flen = strlen(file);
	p->file = malloc(flen + 1);
	if (!p->file)
		goto fail;
	memcpy(p->file, file, flen + 1);
	p->default_action = POLICY_DENY;
	ps.p = p;

	size_t errors = 0;
	const char *end = len ? text + len : text;
	for (const char *line = text; line && line < end;) {
		const char *nl = memchr(line, '\n', (size_t)(end - line));
		const char *line_end = nl ? nl : end;
		ps.line++;
		ps.pos = line;
		ps.end = line_end;
		if ((size_t)(line_end - line) > POLICY_MAX_LINE) {
			fail(&ps, "line longer than %d bytes", POLICY_MAX_LINE);
			rc = -EINVAL;
		} else if (memchr(line, '\0', (size_t)(line_end - line))) {
			fail(&ps, "NUL byte in the line (a policy is text)");
			rc = -EINVAL;
		} else {
			rc = parse_line(&ps);
			if (rc == -ENOMEM)
				goto fail;
		}
		if (rc < 0 && ++errors >= POLICY_MAX_ERRORS) {
			if (nl && nl + 1 < end)
				policy_report_add(report, p->file, ps.line, false,
						  "too many errors, stopping here");
			break;
		}
		line = nl ? nl + 1 : end;
	}
	if (errors > 0) {
		rc = -EINVAL;
		goto fail;
	}
	rc = policy_index_build(p);
	if (rc < 0)
		goto fail;
	policy_find_shadowed(p, report);
	*out = p;
	return 0;
fail:
	if (rc == -ENOMEM)
		policy_report_add(report, file, 0, false, "out of memory");
	policy_free(p);
	return rc;
}

int policy_load(struct policy **out, const char *path, struct policy_report *report)
{
	char *text = NULL;
	size_t len = 0, cap = 0;
	int rc;
	*out = NULL;
	if (report)
		memset(report, 0, sizeof *report);
	errno = 0;
	FILE *f = fopen(path, "rb");
	if (!f) {
		rc = errno ? -errno : -EIO;
		policy_report_add(report, path, 0, false, "cannot read: %s", strerror(-rc));
		return rc;
	}
	errno = 0;
	for (;;) {
		if (policy_array_grow((void **)&text, &cap, len + 65536, 1) < 0) {
			rc = -ENOMEM;
			policy_report_add(report, path, 0, false, "out of memory");
			goto out;
		}
		size_t got = fread(text + len, 1, cap - len, f);
		len += got;
		if (len > POLICY_MAX_BYTES) {
			rc = -EFBIG;
			policy_report_add(report, path, 0, false, "larger than %u bytes",
					  POLICY_MAX_BYTES);
			goto out;
		}
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		rc = errno ? -errno : -EIO;
		policy_report_add(report, path, 0, false, "cannot read: %s", strerror(-rc));
		goto out;
	}
	rc = policy_parse(out, path, text ? text : "", len, report);
out:
	fclose(f);
	free(text);
	return rc;
}

const char *policy_file(const struct policy *p)
{
	return p->file;
}

size_t policy_rule_count(const struct policy *p)
{
	return p->n_rules;
}

enum policy_action policy_default_action(const struct policy *p)
{
	return p->default_action;
}

uint32_t policy_default_line(const struct policy *p)
{
	return p->default_line;
}

const char *policy_action_name(enum policy_action action)
{
	return action == POLICY_ALLOW ? "allow" : "deny";
}

int policy_verdict_label(const struct policy_verdict *v, char *buf, size_t n)
{
	int len;
	if (v->guard) {
		len = snprintf(buf, n, "guard:%s", v->guard);
	} else if (v->line == 0) {
		len = snprintf(buf, n, "default");
	} else {
		const char *file = v->file ? v->file : "";
		size_t flen = strlen(file);
		const char *cut = "";
		if (flen > 255) {
			file += flen - 252;
			cut = "...";
		}
		len = snprintf(buf, n, "%s%s:%lu", cut, file, (unsigned long)v->line);
	}
	if (len < 0 || (size_t)len >= n) {
		if (n > 0)
			buf[0] = '\0';
		return -ENOSPC;
	}
	return len;
}
