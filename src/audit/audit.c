/* audit.c — builds each audit event as one bounded JSON line and appends it to the trail. */
#include "audit/audit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "audit/json.h"

/* Room kept free while a list is written, for what follows it: after "answers" the resolver
 * (~70 bytes), an error (AUDIT_NOTE_OUT), "truncated":true and the closing brace. The fixed
 * fields of the widest event (connect: exe, domain, rule, error at their bounds, the session id
 * escaped at worst, numbers) take under 9 KiB, so every event fits AUDIT_LINE_MAX. */
#define TAIL_RESERVE 1024

#define MS_PER_DAY INT64_C(86400000)
/* Days from 0000-03-01 to 1970-01-01 in the proleptic Gregorian calendar. */
#define DAYS_0000_03_01_TO_EPOCH 719468
#define DAYS_PER_400_YEARS 146097
#define DAYS_PER_100_YEARS 36524
#define DAYS_PER_4_YEARS 1461

struct audit {
	FILE *stream;
	bool owns_stream;
	bool dirty;     /* the last write failed: start the next line on a fresh line */
	bool truncated; /* the event being built had something cut */
	struct audit_counts counts;
	struct json_writer w;
	char session[AUDIT_SESSION_MAX + 1];
	/* line[0] is the newline written before a line after a failed write; the JSON text
	 * starts at line[1], and its NUL becomes the line's newline. */
	char line[1 + AUDIT_LINE_MAX];
};

static void put_digits(char *out, unsigned value, int width)
{
	while (width-- > 0) {
		out[width] = (char)('0' + value % 10);
		value /= 10;
	}
}

/* Splits a day number counted from 0000-03-01 (>= 0) into year, month and day. Years start in
 * March so that the leap day is the last day of a year; a 400-year cycle repeats exactly. */
static void civil_from_days(int64_t days, int64_t *year, unsigned *month, unsigned *day)
{
	/* First day of each month of a March-based year, March to February. */
	static const unsigned month_start[12] = {0, 31, 61, 92, 122, 153, 184, 214, 245, 275, 306,
						 337};
	int64_t cycles = days / DAYS_PER_400_YEARS;
	int64_t rest = days % DAYS_PER_400_YEARS;
	int64_t centuries = rest / DAYS_PER_100_YEARS;
	int64_t quads, years;
	unsigned m = 0;

	if (centuries == 4) /* the last day of the cycle is the leap day of its 400th year */
		centuries = 3;
	rest -= centuries * DAYS_PER_100_YEARS;
	quads = rest / DAYS_PER_4_YEARS;
	rest -= quads * DAYS_PER_4_YEARS;
	years = rest / 365;
	if (years == 4) /* the leap day closing a 4-year run */
		years = 3;
	rest -= years * 365;
	while (m < 11 && (unsigned)rest >= month_start[m + 1])
		m++;
	*day = (unsigned)rest - month_start[m] + 1;
	*month = m < 10 ? m + 3 : m - 9;
	*year = cycles * 400 + centuries * 100 + quads * 4 + years + (*month <= 2);
}

int audit_format_time(char *buf, size_t n, int64_t unix_ms)
{
	int64_t days = unix_ms / MS_PER_DAY, ms_of_day = unix_ms % MS_PER_DAY;
	int64_t year;
	unsigned month, day, ms, sec;

	if (n > 0)
		buf[0] = '\0';
	if (ms_of_day < 0) {
		ms_of_day += MS_PER_DAY;
		days--;
	}
	/* Counted from -0400-03-01, one cycle early, so that January and February of year 0
	 * have a day number >= 0 too. */
	days += DAYS_0000_03_01_TO_EPOCH + DAYS_PER_400_YEARS;
	if (days < 0)
		return -ERANGE;
	civil_from_days(days, &year, &month, &day);
	year -= 400;
	if (year < 0 || year > 9999)
		return -ERANGE;
	if (n < AUDIT_TS_LEN)
		return -ENOSPC;
	ms = (unsigned)ms_of_day;
	sec = ms / 1000;
	/* "YYYY-MM-DDTHH:MM:SS.mmmZ" */
	put_digits(buf, (unsigned)year, 4);
	buf[4] = '-';
	put_digits(buf + 5, month, 2);
	buf[7] = '-';
	put_digits(buf + 8, day, 2);
	buf[10] = 'T';
	put_digits(buf + 11, sec / 3600, 2);
	buf[13] = ':';
	put_digits(buf + 14, sec / 60 % 60, 2);
	buf[16] = ':';
	put_digits(buf + 17, sec % 60, 2);
	buf[19] = '.';
	put_digits(buf + 20, ms % 1000, 3);
	buf[23] = 'Z';
	buf[24] = '\0';
	return AUDIT_TS_LEN - 1;
}

static const char *decision_name(enum audit_decision d)
{
	switch (d) {
	case AUDIT_ALLOW: return "allow";
	case AUDIT_DENY:  return "deny";
	}
	return NULL;
}

static const char *proto_name(enum audit_proto p)
{
	switch (p) {
	case AUDIT_TCP: return "tcp";
	case AUDIT_UDP: return "udp";
	}
	return NULL;
}

static const char *domain_src_name(enum audit_domain_src s)
{
	switch (s) {
	case AUDIT_SRC_DNS:  return "dns";
	case AUDIT_SRC_SNI:  return "sni";
	case AUDIT_SRC_HOST: return "host";
	case AUDIT_SRC_NONE: break;
	}
	return NULL;
}

/* Names of the query types people meet; any other is written as its number. */
static const char *qtype_name(uint16_t qtype)
{
	static const struct {
		uint16_t type;
		const char *name;
	} names[] = {
		{1, "A"},       {2, "NS"},     {5, "CNAME"},   {6, "SOA"},   {10, "NULL"},
		{12, "PTR"},    {15, "MX"},    {16, "TXT"},    {28, "AAAA"}, {33, "SRV"},
		{35, "NAPTR"},  {43, "DS"},    {46, "RRSIG"},  {47, "NSEC"}, {48, "DNSKEY"},
		{64, "SVCB"},   {65, "HTTPS"}, {251, "IXFR"},  {252, "AXFR"}, {255, "ANY"},
		{257, "CAA"},
	};

	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (names[i].type == qtype)
			return names[i].name;
	return NULL;
}

static int failed(struct audit *a, int err)
{
	a->counts.errors++;
	return err;
}

static void put_text(struct audit *a, const char *key, const char *text, size_t max_out)
{
	json_key(&a->w, key);
	if (json_string_cut(&a->w, text, strlen(text), max_out) == 1)
		a->truncated = true;
}

static void put_addr(struct audit *a, const char *key, const struct addr *addr)
{
	char text[ADDR_STRLEN];

	json_key(&a->w, key);
	if (addr->family == ADDR_NONE || addr_format(addr, text, sizeof text) < 0)
		json_null(&a->w);
	else
		json_cstr(&a->w, text);
}

/* Starts the line with the common fields. Returns 0 or -ERANGE for an unprintable time. */
static int event_begin(struct audit *a, const char *event, const struct audit_meta *meta)
{
	char ts[AUDIT_TS_LEN];

	if (audit_format_time(ts, sizeof ts, meta->time_ms) < 0)
		return -ERANGE;
	json_init(&a->w, a->line + 1, AUDIT_LINE_MAX);
	a->truncated = false;
	json_object_begin(&a->w);
	json_key(&a->w, "ts");
	json_cstr(&a->w, ts);
	json_key(&a->w, "session");
	json_cstr(&a->w, a->session);
	json_key(&a->w, "event");
	json_cstr(&a->w, event);
	if (meta->pid > 0) {
		json_key(&a->w, "pid");
		json_int(&a->w, meta->pid);
	}
	if (meta->exe)
		put_text(a, "exe", meta->exe, AUDIT_PATH_OUT);
	return 0;
}

/* Opens a list whose tail may be dropped: the writer keeps TAIL_RESERVE bytes for what follows
 * until list_end. */
static void list_begin(struct audit *a, const char *key, bool object)
{
	json_key(&a->w, key);
	if (object)
		json_object_begin(&a->w);
	else
		json_array_begin(&a->w);
	json_reserve(&a->w, TAIL_RESERVE);
}

/* After an element: when it did not fit, removes it and reports that the list is cut. */
static bool list_item_fits(struct audit *a, const struct json_mark *before)
{
	if (a->w.err != -ENOSPC)
		return true;
	json_rollback(&a->w, before);
	a->truncated = true;
	return false;
}

static void list_end(struct audit *a, bool object)
{
	json_reserve(&a->w, 0);
	if (object)
		json_object_end(&a->w);
	else
		json_array_end(&a->w);
}

static void put_stats(struct audit *a, const struct audit_stat *stats, size_t n)
{
	if (n == 0)
		return;
	list_begin(a, "stats", true);
	for (size_t i = 0; i < n; i++) {
		struct json_mark before = json_mark(&a->w);

		json_key(&a->w, stats[i].name);
		json_int(&a->w, stats[i].value);
		if (!list_item_fits(a, &before))
			break;
	}
	list_end(a, true);
}

/* Closes the line and writes it with one fwrite and one fflush. */
static int event_end(struct audit *a)
{
	size_t start = a->dirty ? 0 : 1;
	int len;

	if (a->truncated) {
		json_key(&a->w, "truncated");
		json_bool(&a->w, true);
	}
	json_object_end(&a->w);
	len = json_finish(&a->w);
	if (len < 0)
		return failed(a, len);
	a->line[0] = '\n';
	a->line[1 + len] = '\n';
	len += 2 - (int)start;
	if (fwrite(a->line + start, 1, (size_t)len, a->stream) != (size_t)len ||
	    fflush(a->stream) != 0) {
		clearerr(a->stream);
		a->dirty = true;
		return failed(a, -EIO);
	}
	a->dirty = false;
	a->counts.events++;
	if (a->truncated)
		a->counts.truncated++;
	return 0;
}

static bool session_id_ok(const char *id)
{
	return id && id[0] && strlen(id) <= AUDIT_SESSION_MAX;
}

static bool stats_ok(const struct audit_stat *stats, size_t n)
{
	if (n && !stats)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!stats[i].name)
			return false;
	return true;
}

int audit_open_stream(struct audit **out, FILE *stream, const char *session_id)
{
	struct audit *a;
	size_t len;

	*out = NULL;
	if (!stream || !session_id_ok(session_id))
		return -EINVAL;
	len = strlen(session_id);
	a = calloc(1, sizeof *a);
	if (!a)
		return -ENOMEM;
	a->stream = stream;
	memcpy(a->session, session_id, len + 1);
	*out = a;
	return 0;
}

int audit_open(struct audit **out, const char *path, const char *session_id)
{
	FILE *f;
	int err;

	*out = NULL;
	if (!path)
		return -EINVAL;
	if (strcmp(path, "-") == 0)
		return audit_open_stream(out, stderr, session_id);
	if (!session_id_ok(session_id))
		return -EINVAL;
	/* Portable C has no open(2) mode: a new file gets 0666 less the umask. Callers that want
	 * 0600 create the file beforehand (sluice run does: os_create_private_file). Binary mode
	 * keeps "\n" line ends on Windows too. */
	errno = 0;
	f = fopen(path, "ab");
	if (!f)
		return errno ? -errno : -EIO;
	err = audit_open_stream(out, f, session_id);
	if (err) {
		fclose(f);
		return err;
	}
	(*out)->owns_stream = true;
	return 0;
}

int audit_close(struct audit *a)
{
	int err = 0;

	if (!a)
		return 0;
	if (fflush(a->stream) != 0)
		err = -EIO;
	if (a->owns_stream && fclose(a->stream) != 0)
		err = -EIO;
	free(a);
	return err;
}

void audit_counts(const struct audit *a, struct audit_counts *out)
{
	memset(out, 0, sizeof *out);
	if (a)
		*out = a->counts;
}

int audit_log_session_start(struct audit *a, const struct audit_session_start *ev)
{
	int err;

	if (!a)
		return 0;
	if (!ev || (ev->argc && !ev->argv))
		return failed(a, -EINVAL);
	for (size_t i = 0; i < ev->argc; i++)
		if (!ev->argv[i])
			return failed(a, -EINVAL);
	err = event_begin(a, "session_start", &ev->meta);
	if (err)
		return failed(a, err);
	list_begin(a, "command", false);
	for (size_t i = 0; i < ev->argc; i++) {
		struct json_mark before = json_mark(&a->w);
		const char *arg = ev->argv[i];

		if (json_string_cut(&a->w, arg, strlen(arg), AUDIT_PATH_OUT) == 1)
			a->truncated = true;
		if (!list_item_fits(a, &before))
			break;
	}
	list_end(a, false);
	if (ev->mode)
		put_text(a, "mode", ev->mode, AUDIT_NOTE_OUT);
	return event_end(a);
}

int audit_log_session_end(struct audit *a, const struct audit_session_end *ev)
{
	int err;

	if (!a)
		return 0;
	if (!ev || !stats_ok(ev->stats, ev->n_stats))
		return failed(a, -EINVAL);
	err = event_begin(a, "session_end", &ev->meta);
	if (err)
		return failed(a, err);
	json_key(&a->w, "exit");
	json_int(&a->w, ev->exit_status);
	put_stats(a, ev->stats, ev->n_stats);
	return event_end(a);
}

int audit_log_dns(struct audit *a, const struct audit_dns *ev)
{
	const char *type, *decision;
	int err;

	if (!a)
		return 0;
	if (!ev || !ev->qname || (ev->n_answers && !ev->answers) ||
	    (ev->n_dropped && !ev->dropped))
		return failed(a, -EINVAL);
	for (size_t i = 0; i < ev->n_dropped; i++)
		if (!ev->dropped[i].rule)
			return failed(a, -EINVAL);
	decision = decision_name(ev->decision);
	if (!decision)
		return failed(a, -EINVAL);
	err = event_begin(a, "dns", &ev->meta);
	if (err)
		return failed(a, err);
	put_text(a, "qname", ev->qname, AUDIT_NAME_OUT);
	json_key(&a->w, "qtype");
	type = qtype_name(ev->qtype);
	if (type)
		json_cstr(&a->w, type);
	else
		json_uint(&a->w, ev->qtype);
	json_key(&a->w, "decision");
	json_cstr(&a->w, decision);
	if (ev->rule)
		put_text(a, "rule", ev->rule, AUDIT_RULE_OUT);
	if (ev->decision == AUDIT_ALLOW) {
		list_begin(a, "answers", false);
		for (size_t i = 0; i < ev->n_answers; i++) {
			struct json_mark before = json_mark(&a->w);
			char text[ADDR_STRLEN];

			if (ev->answers[i].family == ADDR_NONE ||
			    addr_format(&ev->answers[i], text, sizeof text) < 0)
				json_null(&a->w);
			else
				json_cstr(&a->w, text);
			if (!list_item_fits(a, &before))
				break;
		}
		list_end(a, false);
	}
	if (ev->n_dropped) {
		list_begin(a, "dropped", false);
		for (size_t i = 0; i < ev->n_dropped; i++) {
			struct json_mark before = json_mark(&a->w);

			json_object_begin(&a->w);
			put_addr(a, "address", &ev->dropped[i].address);
			put_text(a, "rule", ev->dropped[i].rule, AUDIT_RULE_OUT);
			json_object_end(&a->w);
			if (!list_item_fits(a, &before))
				break;
		}
		list_end(a, false);
	}
	if (ev->resolver.family != ADDR_NONE) {
		put_addr(a, "resolver", &ev->resolver);
		if (ev->resolver_port) {
			json_key(&a->w, "resolver_port");
			json_uint(&a->w, ev->resolver_port);
		}
	}
	if (ev->error)
		put_text(a, "error", ev->error, AUDIT_NOTE_OUT);
	return event_end(a);
}

int audit_log_connect(struct audit *a, const struct audit_connect *ev)
{
	const char *proto, *decision, *src;
	int err;

	if (!a)
		return 0;
	if (!ev)
		return failed(a, -EINVAL);
	proto = proto_name(ev->proto);
	decision = decision_name(ev->decision);
	src = domain_src_name(ev->domain_src);
	if (!proto || !decision || (!src && ev->domain_src != AUDIT_SRC_NONE))
		return failed(a, -EINVAL);
	err = event_begin(a, "connect", &ev->meta);
	if (err)
		return failed(a, err);
	json_key(&a->w, "proto");
	json_cstr(&a->w, proto);
	put_addr(a, "dst", &ev->dst);
	json_key(&a->w, "dport");
	json_uint(&a->w, ev->dport);
	if (ev->domain) {
		put_text(a, "domain", ev->domain, AUDIT_NAME_OUT);
		if (src) {
			json_key(&a->w, "domain_src");
			json_cstr(&a->w, src);
		}
	}
	json_key(&a->w, "decision");
	json_cstr(&a->w, decision);
	if (ev->rule)
		put_text(a, "rule", ev->rule, AUDIT_RULE_OUT);
	if (ev->audit) {
		json_key(&a->w, "audit");
		json_bool(&a->w, true);
	}
	if (ev->error)
		put_text(a, "error", ev->error, AUDIT_NOTE_OUT);
	return event_end(a);
}

int audit_log_close(struct audit *a, const struct audit_close *ev)
{
	int err;

	if (!a)
		return 0;
	if (!ev)
		return failed(a, -EINVAL);
	err = event_begin(a, "close", &ev->meta);
	if (err)
		return failed(a, err);
	put_addr(a, "dst", &ev->dst);
	json_key(&a->w, "dport");
	json_uint(&a->w, ev->dport);
	json_key(&a->w, "bytes_out");
	json_uint(&a->w, ev->bytes_out);
	json_key(&a->w, "bytes_in");
	json_uint(&a->w, ev->bytes_in);
	json_key(&a->w, "duration_ms");
	json_uint(&a->w, ev->duration_ms);
	return event_end(a);
}

int audit_log_udp(struct audit *a, const struct audit_udp *ev)
{
	const char *decision;
	int err;

	if (!a)
		return 0;
	if (!ev)
		return failed(a, -EINVAL);
	decision = decision_name(ev->decision);
	if (!decision)
		return failed(a, -EINVAL);
	err = event_begin(a, "udp", &ev->meta);
	if (err)
		return failed(a, err);
	put_addr(a, "dst", &ev->dst);
	json_key(&a->w, "dport");
	json_uint(&a->w, ev->dport);
	json_key(&a->w, "decision");
	json_cstr(&a->w, decision);
	if (ev->rule)
		put_text(a, "rule", ev->rule, AUDIT_RULE_OUT);
	return event_end(a);
}

int audit_log_fail_mode(struct audit *a, const struct audit_fail_mode *ev)
{
	int err;

	if (!a)
		return 0;
	if (!ev || !stats_ok(ev->stats, ev->n_stats) ||
	    (ev->state != AUDIT_FAIL_ENTERED && ev->state != AUDIT_FAIL_LEFT) ||
	    (ev->fail != AUDIT_FAIL_CLOSED && ev->fail != AUDIT_FAIL_OPEN))
		return failed(a, -EINVAL);
	err = event_begin(a, "fail_mode", &ev->meta);
	if (err)
		return failed(a, err);
	json_key(&a->w, "state");
	json_cstr(&a->w, ev->state == AUDIT_FAIL_ENTERED ? "entered" : "left");
	json_key(&a->w, "fail");
	json_cstr(&a->w, ev->fail == AUDIT_FAIL_OPEN ? "open" : "closed");
	if (ev->reason)
		put_text(a, "reason", ev->reason, AUDIT_NOTE_OUT);
	put_stats(a, ev->stats, ev->n_stats);
	return event_end(a);
}
