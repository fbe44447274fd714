/* fuzz_policy.c — policy text: errors name the file and a real line; index and scan agree. */
#include "policy/policy.h"
#include "policy/policy_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FILE_NAME "fuzz.rules"
#define MAX_WORDS 12

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_policy: %s\n", what);
		abort();
	}
}

/* "fuzz.rules:N: " with 1 <= N <= lines, or "fuzz.rules: " for whole-file messages. */
static void check_message(const struct policy_message *m, size_t lines, bool warning)
{
	const char *t = m->text;
	size_t prefix = strlen(FILE_NAME);
	check(strncmp(t, FILE_NAME ":", prefix + 1) == 0, "message does not name the file");
	check(m->warning == warning, "message has the wrong severity");
	t += prefix + 1;
	unsigned long line = 0;
	size_t digits = 0;
	while (t[digits] >= '0' && t[digits] <= '9' && digits < 10)
		line = line * 10 + (unsigned long)(t[digits++] - '0');
	check(digits > 0, "message has no line number");
	check(line >= 1 && line <= lines, "message names a line outside the input");
	check(line == m->line, "message text and line disagree");
	check(t[digits] == ':' && t[digits + 1] == ' ', "no ': ' after the line number");
	if (warning)
		check(strncmp(t + digits + 2, "warning: ", 9) == 0, "warning not marked");
}

static void same(const struct policy_verdict *a, const struct policy_verdict *b)
{
	check(a->action == b->action && a->audit == b->audit && a->line == b->line,
	      "index and scan decide differently");
	check(!a->audit || a->action == POLICY_ALLOW, "audit verdict that denies");
	char label[POLICY_RULE_LABEL_MAX];
	int n = policy_verdict_label(a, label, sizeof label);
	check(n > 0 && (size_t)n == strlen(label), "bad verdict label");
}

/* Cuts the input into words, as candidate names, addresses and ports for the queries. */
static size_t words_of(const char *text, size_t size, char words[][64])
{
	size_t n = 0, i = 0;
	while (i < size && n < MAX_WORDS) {
		while (i < size && strchr(" \t\r\n,#", text[i]))
			i++;
		size_t start = i;
		while (i < size && !strchr(" \t\r\n,#", text[i]))
			i++;
		size_t len = i - start;
		if (len == 0 || len >= 64)
			continue;
		memcpy(words[n], text + start, len);
		words[n][len] = '\0';
		for (size_t k = 0; k < len; k++)
			if (words[n][k] == '*')
				words[n][k] = 'x';
		n++;
	}
	return n;
}

static void query(const struct policy *p, const char *text, size_t size)
{
	char words[MAX_WORDS][64];
	size_t n = words_of(text, size, words);
	const char *names[MAX_WORDS];
	for (size_t i = 0; i < n; i++)
		names[i] = words[i];

	struct addr addrs[6];
	size_t n_addrs = 0;
	addr_parse(&addrs[n_addrs++], "198.51.100.7", 12);
	addr_parse(&addrs[n_addrs++], "::ffff:10.1.2.3", 15);
	for (size_t i = 0; i < n && n_addrs < 6; i++) {
		struct cidr c;
		int rc = cidr_parse(&c, words[i], strlen(words[i]));
		if (rc == 0 || rc == -EDOM)
			addrs[n_addrs++] = c.base;
	}
	uint16_t ports[4] = {80, 443, 0, 65535};
	for (size_t i = 0; i < n; i++) {
		long v = strtol(words[i], NULL, 10);
		if (v > 0 && v <= 65535)
			ports[2] = (uint16_t)v;
	}

	for (size_t a = 0; a < n_addrs; a++) {
		for (size_t pi = 0; pi < 4; pi++) {
			for (size_t first = 0; first <= n; first += 3) {
				struct policy_conn c = {
					.proto = (a + pi) % 2 ? POLICY_UDP : POLICY_TCP,
					.dst = addrs[a], .port = ports[pi],
					.names = names + first,
					.n_names = n - first < 3 ? n - first : 3,
				};
				struct policy_verdict x = policy_decide_connect(p, &c);
				struct policy_verdict y = policy_decide_connect_linear(p, &c);
				same(&x, &y);
			}
		}
	}
	for (size_t i = 0; i < n; i++) {
		struct policy_verdict x = policy_decide_dns(p, names[i]);
		struct policy_verdict y = policy_decide_dns_linear(p, names[i]);
		same(&x, &y);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size ? size : 1); /* exact size: ASan sees any overread */
	if (!text)
		return 0;
	memcpy(text, data, size);

	size_t lines = 0;
	for (size_t i = 0; i < size; i++)
		if (text[i] == '\n')
			lines++;
	if (size > 0 && text[size - 1] != '\n')
		lines++;

	struct policy_report report;
	struct policy *p = NULL;
	int rc = policy_parse(&p, FILE_NAME, text, size, &report);
	if (rc == 0) {
		check(p != NULL && report.errors == 0, "success with errors");
		check(policy_rule_count(p) <= lines, "more rules than lines");
		check(report.count <= POLICY_MAX_MESSAGES && report.count <= report.warnings,
		      "report counts");
		for (size_t i = 0; i < report.count; i++)
			check_message(&report.messages[i], lines, true);
		query(p, text, size);
		policy_free(p);
	} else {
		check(rc == -EINVAL && p == NULL, "unexpected failure code");
		check(report.errors >= 1 && report.errors <= POLICY_MAX_ERRORS + 1,
		      "error count");
		check(report.count == report.errors, "errors not all stored");
		uint32_t previous = 0;
		for (size_t i = 0; i < report.count; i++) {
			check_message(&report.messages[i], lines, false);
			check(report.messages[i].line >= previous, "errors out of order");
			previous = report.messages[i].line;
		}
	}
	free(text);
	return 0;
}
