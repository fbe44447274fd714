/* bench_policy.c — decisions per second of the indexed matcher against a first-match scan. */
#define _POSIX_C_SOURCE 200809L
#include "policy/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define QUERIES 4096
#define TARGET_PER_SECOND 1e6 /* at 10,000 domain rules */

/* The same rules as plain data, for the scan: one domain each, lowercase, maybe a port. */
struct plain_rule {
	char pattern[48];
	size_t len;
	bool suffix; /* "*.S": pattern holds ".S" */
	uint16_t port; /* 0: any */
	bool allow;
};

struct workload {
	struct plain_rule *rules;
	size_t n_rules;
	char (*names)[64];
	uint16_t *ports;
	struct policy *policy;
	struct addr dst;
};

/* Where the decisions go, so that the compiler cannot drop them. */
static volatile unsigned sink;

static uint32_t rng_state = 2463534242u;

static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state % n;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One rule in ten is a wildcard, one in four has a port; queries are half hits, half misses. */
static int make_workload(struct workload *w, size_t n)
{
	size_t cap = n * 80 + 64;
	char *text = malloc(cap);
	w->rules = calloc(n, sizeof *w->rules);
	w->names = calloc(QUERIES, sizeof *w->names);
	w->ports = calloc(QUERIES, sizeof *w->ports);
	if (!text || !w->rules || !w->names || !w->ports)
		return -1;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		struct plain_rule *r = &w->rules[i];
		r->suffix = i % 10 == 3;
		r->port = i % 4 == 1 ? 443 : 0;
		r->allow = i % 7 != 0;
		if (r->suffix)
			snprintf(r->pattern, sizeof r->pattern, ".cdn%zu.example", i);
		else
			snprintf(r->pattern, sizeof r->pattern, "host%zu.svc%zu.test", i, i % 97);
		r->len = strlen(r->pattern);
		const char *action = r->allow ? "allow" : "deny";
		o += (size_t)snprintf(text + o, cap - o, "%s domain %s%s", action,
				      r->suffix ? "*" : "", r->pattern);
		if (r->port)
			o += (size_t)snprintf(text + o, cap - o, " port %u", r->port);
		o += (size_t)snprintf(text + o, cap - o, "\n");
	}
	o += (size_t)snprintf(text + o, cap - o, "default deny\n");
	for (size_t q = 0; q < QUERIES; q++) {
		size_t i = rnd((uint32_t)n);
		if (q % 2)
			snprintf(w->names[q], sizeof w->names[q], "miss%zu.svc%zu.test", i, i % 97);
		else if (w->rules[i].suffix)
			snprintf(w->names[q], sizeof w->names[q], "a%u%s", rnd(100),
				 w->rules[i].pattern);
		else
			snprintf(w->names[q], sizeof w->names[q], "%s", w->rules[i].pattern);
		w->ports[q] = rnd(2) ? 443 : 80;
	}
	struct policy_report report;
	int rc = policy_parse(&w->policy, "bench.rules", text, o, &report);
	if (rc < 0)
		fprintf(stderr, "bench_policy: %s\n", report.count ? report.messages[0].text : "?");
	free(text);
	w->n_rules = n;
	addr_parse(&w->dst, "198.51.100.7", 12);
	return rc;
}

static void free_workload(struct workload *w)
{
	policy_free(w->policy);
	free(w->rules);
	free(w->names);
	free(w->ports);
}

/* The baseline: every rule in file order, the first that matches decides. */
static int scan_decide(const struct workload *w, const char *name, uint16_t port)
{
	size_t len = strlen(name);
	for (size_t i = 0; i < w->n_rules; i++) {
		const struct plain_rule *r = &w->rules[i];
		if (r->port && r->port != port)
			continue;
		bool hit = r->suffix ? len > r->len && memcmp(name + len - r->len, r->pattern,
							      r->len) == 0
				     : len == r->len && memcmp(name, r->pattern, len) == 0;
		if (hit)
			return r->allow;
	}
	return 0;
}

static int index_decide(const struct workload *w, const char *name, uint16_t port)
{
	const char *names[1] = {name};
	struct policy_conn c = {
		.proto = POLICY_TCP, .dst = w->dst, .port = port, .names = names, .n_names = 1,
	};
	return policy_decide_connect(w->policy, &c).action == POLICY_ALLOW;
}

/* Decisions per second over the query set, for at least `seconds`. */
static double rate(const struct workload *w, int (*decide)(const struct workload *, const char *,
							   uint16_t), double seconds)
{
	unsigned sum = 0;
	double start = now(), elapsed;
	unsigned long done = 0;
	do {
		for (size_t q = 0; q < QUERIES; q++)
			sum += (unsigned)decide(w, w->names[q], w->ports[q]);
		sink = sum;
		done += QUERIES;
		elapsed = now() - start;
	} while (elapsed < seconds);
	return (double)done / elapsed;
}

int main(void)
{
	static const size_t sizes[] = {10, 10000};
	int status = 0;
	printf("%-44s %12s %14s %9s  %s\n", "figure", "value", "baseline", "ratio", "target");
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
		struct workload w = {0};
		double t0 = now();
		if (make_workload(&w, sizes[s]) < 0) {
			free_workload(&w);
			return 1;
		}
		double parse_ms = (now() - t0) * 1e3;
		unsigned agree = 0, disagree = 0;
		for (size_t q = 0; q < QUERIES; q++) {
			if (index_decide(&w, w.names[q], w.ports[q]) ==
			    scan_decide(&w, w.names[q], w.ports[q]))
				agree++;
			else
				disagree++;
		}
		double indexed = rate(&w, index_decide, 1.0);
		double scanned = rate(&w, scan_decide, 1.0);
		char figure[64];
		snprintf(figure, sizeof figure, "policy decisions, %zu domain rules", sizes[s]);
		const char *verdict = "-";
		if (sizes[s] == 10000)
			verdict = indexed >= TARGET_PER_SECOND ? ">= 1 M/s ok" : ">= 1 M/s MISS";
		printf("%-44s %8.2f M/s %8.3f M/s %8.1fx  %s\n", figure, indexed / 1e6,
		       scanned / 1e6, indexed / scanned, verdict);
		printf("%-44s %9.1f ms %14s %9s  %s\n", "  parse and index", parse_ms, "-", "-",
		       "-");
		if (disagree) {
			printf("  MISMATCH: index and scan disagree on %u of %u queries\n",
			       disagree, agree + disagree);
			status = 1;
		}
		free_workload(&w);
	}
	return status;
}
