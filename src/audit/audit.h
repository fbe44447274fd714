/* audit.h — the session's audit trail: one JSON object per line for every decision sluice makes.
 *
 * Each event type has one struct holding its fields and one function writing it, so that the
 * field names of DESIGN.md ("Audit events") live in audit.c alone. Every line starts with the
 * common fields, in this order: ts, session, event, pid (when > 0), exe (when not NULL); then the
 * event's fields in the order of its struct; then "truncated":true when something was cut.
 * Optional fields that are absent (NULL strings, ADDR_NONE addresses, empty lists where noted)
 * are omitted, never written as null; a required address that is ADDR_NONE is written as null.
 *
 * A line is built completely in a buffer of AUDIT_LINE_MAX bytes and written with one fwrite and
 * one fflush, so that a crash loses at most the event being written. Free text is cut to a
 * bound per field and lists lose their tail when the line would not fit; either way the line
 * stays valid JSON and says "truncated":true, so that no input can make an event disappear.
 * The writer is used from one thread; audit.c reads no clock (callers pass the time).
 */
#ifndef SLUICE_AUDIT_AUDIT_H
#define SLUICE_AUDIT_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/addr.h"

/* Longest line, newline included. */
#define AUDIT_LINE_MAX 16384
/* Longest session id, in bytes. */
#define AUDIT_SESSION_MAX 64
/* "YYYY-MM-DDTHH:MM:SS.mmmZ" and its NUL. */
#define AUDIT_TS_LEN 25

/* Output bounds of free-text fields, quotes and escapes included (longer text is cut). */
#define AUDIT_PATH_OUT 4096 /* exe, each element of command */
#define AUDIT_NAME_OUT 2048 /* qname, domain: a 255-byte name in "\DDD" text fits */
#define AUDIT_RULE_OUT 1024 /* rule */
#define AUDIT_NOTE_OUT 256  /* mode, error, reason */

struct audit;

enum audit_decision {
	AUDIT_DENY = 0,
	AUDIT_ALLOW = 1,
};

enum audit_proto {
	AUDIT_TCP = 0,
	AUDIT_UDP = 1,
};

/* Where the domain of a connection came from: "dns", "sni", "host". */
enum audit_domain_src {
	AUDIT_SRC_NONE = 0,
	AUDIT_SRC_DNS,
	AUDIT_SRC_SNI,
	AUDIT_SRC_HOST,
};

enum audit_fail_state {
	AUDIT_FAIL_ENTERED = 0,
	AUDIT_FAIL_LEFT = 1,
};

/* The --fail setting in force: "closed" drops session traffic, "open" passes it. */
enum audit_fail_policy {
	AUDIT_FAIL_CLOSED = 0,
	AUDIT_FAIL_OPEN = 1,
};

/* The fields every event has besides ts/session/event. */
struct audit_meta {
	int64_t time_ms;  /* Unix time in milliseconds (UTC), years 0000..9999 */
	int64_t pid;      /* the process concerned, written when > 0 */
	const char *exe;  /* its executable, or NULL */
};

/* A named number attached to an event ("stats":{"name":value,...}); names are the caller's
 * constants and must be distinct. */
struct audit_stat {
	const char *name;
	int64_t value;
};

/* "session_start": "command" (argv as an array of strings), "mode" (netns|divert|windivert). */
struct audit_session_start {
	struct audit_meta meta;
	const char *const *argv; /* argc strings */
	size_t argc;
	const char *mode;        /* or NULL */
};

/* "session_end": "exit" (the status sluice exits with), "stats" when n_stats > 0. */
struct audit_session_end {
	struct audit_meta meta;
	int exit_status;
	const struct audit_stat *stats;
	size_t n_stats;
};

/* An address the rebinding guard removed from a DNS answer, and why ("guard:private"). */
struct audit_dns_dropped {
	struct addr address;
	const char *rule; /* required */
};

/* "dns": "qname", "qtype" ("A", "AAAA", ... or the number when it has no name here),
 * "decision", "rule", "answers" (only for allowed queries; [] when there were none),
 * "dropped" (when n_dropped > 0: [{"address":"10.0.0.5","rule":"guard:private"},...], what the
 * rebinding guard removed from the answer before the application saw it), "resolver" and
 * "resolver_port" (when the query was forwarded), "error" (e.g. a timeout). */
struct audit_dns {
	struct audit_meta meta;
	const char *qname;             /* text form, binary bytes already escaped as \DDD */
	uint16_t qtype;
	enum audit_decision decision;
	const char *rule;              /* "FILE:LINE", "default", "guard:RANGE", or why the
					* query was refused ("qtype", ...); or NULL */
	const struct addr *answers;    /* n_answers addresses */
	size_t n_answers;
	const struct audit_dns_dropped *dropped; /* n_dropped entries */
	size_t n_dropped;
	struct addr resolver;          /* ADDR_NONE when not forwarded */
	uint16_t resolver_port;        /* written with resolver, when not 0 */
	const char *error;             /* or NULL */
};

/* "connect": "proto", "dst", "dport", "domain" and "domain_src" (when a name is attributed),
 * "decision", "rule", "audit":true (for audit rules only; omitted otherwise), "error" (when
 * the upstream dial failed, or had not finished when the session ended). */
struct audit_connect {
	struct audit_meta meta;
	enum audit_proto proto;
	struct addr dst;
	uint16_t dport;
	const char *domain;                /* or NULL */
	enum audit_domain_src domain_src;  /* written with domain, unless AUDIT_SRC_NONE */
	enum audit_decision decision;
	const char *rule;                  /* "FILE:LINE", "default", "guard:RANGE", or NULL */
	bool audit;
	const char *error;                 /* or NULL */
};

/* "close": "dst", "dport", "bytes_out" (session to destination), "bytes_in", "duration_ms". */
struct audit_close {
	struct audit_meta meta;
	struct addr dst;
	uint16_t dport;
	uint64_t bytes_out;
	uint64_t bytes_in;
	uint64_t duration_ms;
};

/* "udp": "dst", "dport", "decision", "rule". */
struct audit_udp {
	struct audit_meta meta;
	struct addr dst;
	uint16_t dport;
	enum audit_decision decision;
	const char *rule;  /* or NULL */
};

/* "fail_mode": "state" (entered|left), "fail" (open|closed), "reason", "stats". */
struct audit_fail_mode {
	struct audit_meta meta;
	enum audit_fail_state state;
	enum audit_fail_policy fail;
	const char *reason;  /* or NULL */
	const struct audit_stat *stats;
	size_t n_stats;
};

struct audit_counts {
	uint64_t events;    /* lines written */
	uint64_t truncated; /* of which had something cut */
	uint64_t errors;    /* events lost: bad arguments or write errors */
};

/* Opens the trail at path for appending (created if missing), or stderr for "-", for the
 * session named session_id (1..AUDIT_SESSION_MAX bytes, copied). Stores a new writer in *out.
 * Returns 0, -EINVAL, -ENOMEM, or the negative errno of the failed open. */
int audit_open(struct audit **out, const char *path, const char *session_id);

/* Like audit_open, on a stream the caller opened and keeps (audit_close flushes it only). */
int audit_open_stream(struct audit **out, FILE *stream, const char *session_id);

/* Flushes and closes the trail (a borrowed stream stays open) and frees a. Accepts NULL.
 * Returns 0, or -EIO when the last flush or the close failed. */
int audit_close(struct audit *a);

/* Each writes one event line. A NULL a means no trail: nothing happens and 0 is returned.
 * Returns 0, or a negative code, counted in audit_counts().errors: -EINVAL (NULL event, missing
 * required string, enum out of range), -ERANGE (time outside years 0000..9999), -EIO (the write
 * or flush failed; the next line then starts with a newline, so that a partial line never merges
 * with the next event). Never aborts. */
int audit_log_session_start(struct audit *a, const struct audit_session_start *ev);
int audit_log_session_end(struct audit *a, const struct audit_session_end *ev);
int audit_log_dns(struct audit *a, const struct audit_dns *ev);
int audit_log_connect(struct audit *a, const struct audit_connect *ev);
int audit_log_close(struct audit *a, const struct audit_close *ev);
int audit_log_udp(struct audit *a, const struct audit_udp *ev);
int audit_log_fail_mode(struct audit *a, const struct audit_fail_mode *ev);

/* Copies the writer's counters into *out. */
void audit_counts(const struct audit *a, struct audit_counts *out);

/* Writes unix_ms as RFC 3339 UTC with milliseconds ("2026-11-25T04:22:22.123Z") into buf of n
 * bytes (AUDIT_TS_LEN suffices), proleptic Gregorian, negative times before 1970 included.
 * Returns the length (24), -ERANGE outside years 0000..9999, or -ENOSPC (buf then holds ""). */
int audit_format_time(char *buf, size_t n, int64_t unix_ms);

#endif
