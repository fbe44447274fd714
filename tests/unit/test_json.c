/* test_json.c — the JSON writer: escaping of every byte class, values, misuse, bounded output. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "audit/json.h"
#include "check.h"
#include "json_validate.h"

/* U+FFFD as UTF-8; kept apart from following literals so hex escapes do not run on. */
#define R "\xEF\xBF\xBD"
/* A byte-string literal and its length, NULs included. */
#define BYTES(s) s, sizeof(s) - 1

/* Escapes in[0..len) as one top-level string into a roomy buffer; returns the text or NULL. */
static const char *escape(const char *in, size_t len)
{
	static char buf[4096];
	struct json_writer w;

	json_init(&w, buf, sizeof buf);
	json_string(&w, in, len);
	return json_finish(&w) >= 0 ? buf : NULL;
}

static bool has_raw_line_separator(const char *s)
{
	return strstr(s, "\xE2\x80\xA8") || strstr(s, "\xE2\x80\xA9");
}

static void test_escape_classes(void)
{
	static const struct {
		const char *name;
		const char *in;
		size_t len;
		const char *out;
	} cases[] = {
		{"empty", BYTES(""), "\"\""},
		{"plain ascii", BYTES("registry.npmjs.org"), "\"registry.npmjs.org\""},
		{"printable edges", BYTES(" ~"), "\" ~\""},
		{"quote", BYTES("a\"b"), "\"a\\\"b\""},
		{"backslash", BYTES("a\\b"), "\"a\\\\b\""},
		{"rfc1035 text", BYTES("x\\046y\\.z"), "\"x\\\\046y\\\\.z\""},
		{"slash unescaped", BYTES("a/b"), "\"a/b\""},
		{"named controls", BYTES("\b\t\n\f\r"), "\"\\b\\t\\n\\f\\r\""},
		{"nul", BYTES("a\0b"), "\"a\\u0000b\""},
		{"other controls", BYTES("\x01\x0b\x0e\x1b\x1f"),
		 "\"\\u0001\\u000b\\u000e\\u001b\\u001f\""},
		{"del", BYTES("\x7f"), "\"\\u007f\""},
		{"two-byte", BYTES("caf\xC3\xA9"), "\"caf\xC3\xA9\""},
		{"c1 control is a character", BYTES("\xC2\x80\xC2\x9F"), "\"\xC2\x80\xC2\x9F\""},
		{"smallest two-byte", BYTES("\xC2\x80"), "\"\xC2\x80\""},
		{"three-byte", BYTES("\xE2\x82\xAC"), "\"\xE2\x82\xAC\""},
		{"smallest three-byte", BYTES("\xE0\xA0\x80"), "\"\xE0\xA0\x80\""},
		{"last before surrogates", BYTES("\xED\x9F\xBF"), "\"\xED\x9F\xBF\""},
		{"first after surrogates", BYTES("\xEE\x80\x80"), "\"\xEE\x80\x80\""},
		{"noncharacter passes", BYTES("\xEF\xBF\xBF"), "\"\xEF\xBF\xBF\""},
		{"bom passes", BYTES("\xEF\xBB\xBF"), "\"\xEF\xBB\xBF\""},
		{"four-byte", BYTES("\xF0\x9F\x98\x80"), "\"\xF0\x9F\x98\x80\""},
		{"smallest four-byte", BYTES("\xF0\x90\x80\x80"), "\"\xF0\x90\x80\x80\""},
		{"largest code point", BYTES("\xF4\x8F\xBF\xBF"), "\"\xF4\x8F\xBF\xBF\""},
		{"line separator", BYTES("a\xE2\x80\xA8" "b"), "\"a\\u2028b\""},
		{"paragraph separator", BYTES("\xE2\x80\xA9"), "\"\\u2029\""},
		{"neighbours of separators", BYTES("\xE2\x80\xA7\xE2\x80\xAA"),
		 "\"\xE2\x80\xA7\xE2\x80\xAA\""},
		{"lone continuation", BYTES("\x80"), "\"" R "\""},
		{"continuation run", BYTES("\x80\xBF"), "\"" R R "\""},
		{"overlong two-byte C0", BYTES("\xC0\x80"), "\"" R R "\""},
		{"overlong two-byte C1", BYTES("\xC1\xBF"), "\"" R R "\""},
		{"overlong three-byte", BYTES("\xE0\x80\x80"), "\"" R R R "\""},
		{"overlong three-byte top", BYTES("\xE0\x9F\xBF"), "\"" R R R "\""},
		{"overlong four-byte", BYTES("\xF0\x80\x80\x80"), "\"" R R R R "\""},
		{"overlong four-byte top", BYTES("\xF0\x8F\xBF\xBF"), "\"" R R R R "\""},
		{"high surrogate", BYTES("\xED\xA0\x80"), "\"" R R R "\""},
		{"low surrogate", BYTES("\xED\xBF\xBF"), "\"" R R R "\""},
		{"surrogate pair as cesu", BYTES("\xED\xA0\xBD\xED\xB8\x80"),
		 "\"" R R R R R R "\""},
		{"beyond U+10FFFF", BYTES("\xF4\x90\x80\x80"), "\"" R R R R "\""},
		{"lead F5", BYTES("\xF5\x80\x80\x80"), "\"" R R R R "\""},
		{"lead FE FF", BYTES("\xFE\xFF"), "\"" R R "\""},
		{"truncated two-byte at end", BYTES("a\xC3"), "\"a" R "\""},
		{"truncated three-byte at end", BYTES("\xE2\x82"), "\"" R R "\""},
		{"truncated four-byte at end", BYTES("\xF0\x9F\x98"), "\"" R R R "\""},
		{"truncated then ascii", BYTES("\xE2\x82" "A"), "\"" R R "A\""},
		{"truncated then quote", BYTES("\xC3\""), "\"" R "\\\"\""},
		{"resynchronises", BYTES("\x80\xC3\xA9"), "\"" R "\xC3\xA9\""},
		{"lead then lead", BYTES("\xC3\xC3\xA9"), "\"" R "\xC3\xA9\""},
		{"ascii after bad byte", BYTES("\xFF" "x"), "\"" R "x\""},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *got;

		check_case("%s", cases[i].name);
		got = escape(cases[i].in, cases[i].len);
		CHECK_STR_EQ(got, cases[i].out);
		if (got) {
			CHECK(json_validate(got, strlen(got)) == NULL);
			CHECK(!has_raw_line_separator(got));
		}
	}
}

/* Every single byte, against the rule stated in json.h. */
static void test_escape_every_byte(void)
{
	for (int b = 0; b < 256; b++) {
		char in = (char)b, want[16];
		const char *got;

		check_case("byte 0x%02x", b);
		if (b == '"' || b == '\\')
			snprintf(want, sizeof want, "\"\\%c\"", b);
		else if (b == '\b' || b == '\t' || b == '\n' || b == '\f' || b == '\r')
			snprintf(want, sizeof want, "\"\\%c\"",
				 "btnfr"[strchr("\b\t\n\f\r", b) - "\b\t\n\f\r"]);
		else if (b < 0x20 || b == 0x7f)
			snprintf(want, sizeof want, "\"\\u%04x\"", (unsigned)b);
		else if (b < 0x80)
			snprintf(want, sizeof want, "\"%c\"", b);
		else
			snprintf(want, sizeof want, "\"%s\"", R);
		got = escape(&in, 1);
		CHECK_STR_EQ(got, want);
	}
}

static void test_values(void)
{
	char buf[512];
	struct json_writer w;
	int n;

	json_init(&w, buf, sizeof buf);
	CHECK_EQ(json_object_begin(&w), 0);
	json_key(&w, "ints");
	json_array_begin(&w);
	json_int(&w, 0);
	json_int(&w, -1);
	json_int(&w, 42);
	json_int(&w, INT64_MIN);
	json_int(&w, INT64_MAX);
	json_array_end(&w);
	json_key(&w, "uints");
	json_array_begin(&w);
	json_uint(&w, 0);
	json_uint(&w, UINT64_MAX);
	json_array_end(&w);
	json_key(&w, "lits");
	json_array_begin(&w);
	json_bool(&w, true);
	json_bool(&w, false);
	json_null(&w);
	json_array_end(&w);
	json_key(&w, "empty");
	json_object_begin(&w);
	json_object_end(&w);
	json_key(&w, "nested");
	json_array_begin(&w);
	json_array_begin(&w);
	json_array_end(&w);
	json_object_begin(&w);
	json_key(&w, "k\"ey");
	json_cstr(&w, "v");
	json_object_end(&w);
	json_array_end(&w);
	CHECK_EQ(json_object_end(&w), 0);
	n = json_finish(&w);
	CHECK_STR_EQ(buf, "{\"ints\":[0,-1,42,-9223372036854775808,9223372036854775807],"
			  "\"uints\":[0,18446744073709551615],\"lits\":[true,false,null],"
			  "\"empty\":{},\"nested\":[[],{\"k\\\"ey\":\"v\"}]}");
	CHECK_EQ(n, (int)strlen(buf));
	CHECK(json_validate_object(buf, strlen(buf)) == NULL);

	json_init(&w, buf, sizeof buf);
	json_int(&w, -7);
	CHECK_EQ(json_finish(&w), 2);
	CHECK_STR_EQ(buf, "-7");
}

enum misuse {
	VALUE_WITHOUT_KEY,
	KEY_IN_ARRAY,
	KEY_AT_TOP,
	KEY_AFTER_KEY,
	END_WRONG_KIND,
	END_AFTER_KEY,
	END_AT_TOP,
	SECOND_TOP_VALUE,
	NULL_STRING,
	NULL_KEY,
	TOO_DEEP,
};

static void test_misuse(void)
{
	static const struct {
		const char *name;
		enum misuse what;
		const char *kept;
	} cases[] = {
		{"value in object without key", VALUE_WITHOUT_KEY, "{"},
		{"key in array", KEY_IN_ARRAY, "["},
		{"key at top level", KEY_AT_TOP, ""},
		{"key after key", KEY_AFTER_KEY, "{\"a\":"},
		{"] closing an object", END_WRONG_KIND, "{"},
		{"} after a key", END_AFTER_KEY, "{\"a\":"},
		{"end at top level", END_AT_TOP, ""},
		{"second top-level value", SECOND_TOP_VALUE, "1"},
		{"NULL string", NULL_STRING, "["},
		{"NULL key", NULL_KEY, "{"},
		{"nesting too deep", TOO_DEEP, NULL},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char buf[256];
		struct json_writer w;
		int err = 0;

		check_case("%s", cases[i].name);
		json_init(&w, buf, sizeof buf);
		switch (cases[i].what) {
		case VALUE_WITHOUT_KEY:
			json_object_begin(&w);
			err = json_int(&w, 1);
			break;
		case KEY_IN_ARRAY:
			json_array_begin(&w);
			err = json_key(&w, "a");
			break;
		case KEY_AT_TOP:
			err = json_key(&w, "a");
			break;
		case KEY_AFTER_KEY:
			json_object_begin(&w);
			json_key(&w, "a");
			err = json_key(&w, "b");
			break;
		case END_WRONG_KIND:
			json_object_begin(&w);
			err = json_array_end(&w);
			break;
		case END_AFTER_KEY:
			json_object_begin(&w);
			json_key(&w, "a");
			err = json_object_end(&w);
			break;
		case END_AT_TOP:
			err = json_object_end(&w);
			break;
		case SECOND_TOP_VALUE:
			json_int(&w, 1);
			err = json_int(&w, 2);
			break;
		case NULL_STRING:
			json_array_begin(&w);
			err = json_cstr(&w, NULL);
			break;
		case NULL_KEY:
			json_object_begin(&w);
			err = json_key(&w, NULL);
			break;
		case TOO_DEEP:
			for (int d = 0; d < JSON_MAX_DEPTH; d++)
				CHECK_EQ(json_array_begin(&w), 0);
			err = json_array_begin(&w);
			CHECK_EQ(strlen(buf), JSON_MAX_DEPTH);
			break;
		}
		CHECK_EQ(err, -EINVAL);
		if (cases[i].kept)
			CHECK_STR_EQ(buf, cases[i].kept);
		/* Sticky: nothing more is written, and finish reports it. */
		size_t before = strlen(buf);
		CHECK_EQ(json_null(&w), -EINVAL);
		CHECK_EQ(strlen(buf), before);
		CHECK_EQ(json_finish(&w), -EINVAL);
	}

	char buf[16];
	struct json_writer w;

	check_case("unfinished");
	json_init(&w, buf, sizeof buf);
	CHECK_EQ(json_finish(&w), -EINVAL);
	json_array_begin(&w);
	CHECK_EQ(json_finish(&w), -EINVAL);
	json_array_end(&w);
	CHECK_EQ(json_finish(&w), 2);
}

/* A string meeting every escape class, and the output piece for each input character. */
static const char tricky[] = "a\"\\\n\x01\xC3\xA9\xE2\x80\xA8\xF0\x9F\x98\x80\xFF\xE2\x82";
static const char *const tricky_pieces[] = {
	"a", "\\\"", "\\\\", "\\n", "\\u0001", "\xC3\xA9", "\\u2028", "\xF0\x9F\x98\x80", R, R, R,
};

static void tricky_full(char *out, size_t n)
{
	snprintf(out, n, "\"");
	for (size_t i = 0; i < sizeof tricky_pieces / sizeof tricky_pieces[0]; i++)
		strncat(out, tricky_pieces[i], n - strlen(out) - 1);
	strncat(out, "\"", n - strlen(out) - 1);
}

/* For every buffer size: the writer never writes past cap, and either succeeds with the whole
 * text or reports -ENOSPC leaving only what came before the failed value. */
static void test_overflow_every_size(void)
{
	char full[128], in_object[160];
	size_t full_len;

	tricky_full(full, sizeof full);
	full_len = strlen(full);
	snprintf(in_object, sizeof in_object, "{\"k\":%s,\"n\":12345}", full);
	CHECK_STR_EQ(escape(tricky, sizeof tricky - 1), full);

	for (size_t cap = 0; cap <= full_len + 3; cap++) {
		char buf[256];
		struct json_writer w;
		int n;

		check_case("string alone, cap %zu", cap);
		memset(buf, 0xA5, sizeof buf);
		json_init(&w, buf, cap);
		json_string(&w, tricky, sizeof tricky - 1);
		n = json_finish(&w);
		if (cap > full_len) {
			CHECK_EQ(n, (int)full_len);
			CHECK_STR_EQ(buf, full);
		} else {
			CHECK_EQ(n, -ENOSPC);
			if (cap > 0)
				CHECK_EQ(buf[0], '\0');
		}
		for (size_t i = cap; i < sizeof buf; i++)
			CHECK_EQ((unsigned char)buf[i], 0xA5);
	}

	for (size_t cap = 0; cap <= strlen(in_object) + 3; cap++) {
		char buf[256];
		struct json_writer w;
		int n;

		check_case("string in object, cap %zu", cap);
		memset(buf, 0xA5, sizeof buf);
		json_init(&w, buf, cap);
		json_object_begin(&w);
		json_key(&w, "k");
		json_string(&w, tricky, sizeof tricky - 1);
		json_key(&w, "n");
		json_int(&w, 12345);
		json_object_end(&w);
		n = json_finish(&w);
		if (cap > strlen(in_object)) {
			CHECK_EQ(n, (int)strlen(in_object));
			CHECK_STR_EQ(buf, in_object);
			CHECK(json_validate_object(buf, strlen(buf)) == NULL);
		} else if (cap > 0) {
			/* What is left ends where a value or key ended: before the string, or after
			 * it (where the key "n" or the number or the brace did not fit). */
			size_t kept = strlen(buf);
			size_t after_string = strlen("{\"k\":") + full_len;

			CHECK_EQ(n, -ENOSPC);
			CHECK(kept < cap);
			CHECK(memcmp(buf, in_object, kept) == 0);
			CHECK(kept == 0 || kept == 1 || kept == 5 || kept == after_string ||
			      kept == after_string + 5 || kept == after_string + 10);
		} else {
			CHECK_EQ(n, -ENOSPC);
		}
		for (size_t i = cap; i < sizeof buf; i++)
			CHECK_EQ((unsigned char)buf[i], 0xA5);
	}
}

/* For every output bound, json_string_cut keeps the longest run of whole pieces that fits. */
static void test_cut_every_bound(void)
{
	const size_t n_pieces = sizeof tricky_pieces / sizeof tricky_pieces[0];
	char full[128];

	tricky_full(full, sizeof full);
	for (size_t max_out = 0; max_out <= strlen(full) + 2; max_out++) {
		char buf[256], want[128] = "\"";
		size_t spent = 1, i;
		struct json_writer w;
		int ret;

		check_case("max_out %zu", max_out);
		for (i = 0; i < n_pieces && spent + strlen(tricky_pieces[i]) + 1 <= max_out; i++) {
			strcat(want, tricky_pieces[i]);
			spent += strlen(tricky_pieces[i]);
		}
		strcat(want, "\"");
		json_init(&w, buf, sizeof buf);
		ret = json_string_cut(&w, tricky, sizeof tricky - 1, max_out);
		CHECK_EQ(ret, i < n_pieces ? 1 : 0);
		CHECK_STR_EQ(buf, want);
		CHECK(strlen(buf) <= (max_out < 2 ? 2 : max_out));
		CHECK(json_validate(buf, strlen(buf)) == NULL);
	}
}

/* The sticky error: after an overflow nothing else is written, even a value that would fit. */
static void test_overflow_is_sticky(void)
{
	char buf[8];
	struct json_writer w;

	json_init(&w, buf, sizeof buf);
	json_array_begin(&w);
	CHECK_EQ(json_cstr(&w, "abcdefgh"), -ENOSPC);
	CHECK_STR_EQ(buf, "[");
	CHECK_EQ(json_int(&w, 1), -ENOSPC);
	CHECK_EQ(json_array_end(&w), -ENOSPC);
	CHECK_STR_EQ(buf, "[");
	CHECK_EQ(json_finish(&w), -ENOSPC);
}

/* The pattern audit.c uses to cut a list: reserve room, roll back the element that overflowed,
 * lift the reserve, close. */
static void test_reserve_and_rollback(void)
{
	char buf[32];
	struct json_writer w;
	int i;

	json_init(&w, buf, sizeof buf);
	json_object_begin(&w);
	json_key(&w, "l");
	json_array_begin(&w);
	json_reserve(&w, 11);
	for (i = 0; i < 100; i++) {
		struct json_mark before = json_mark(&w);

		if (json_int(&w, 1000 + i) != 0) {
			json_rollback(&w, &before);
			break;
		}
	}
	json_reserve(&w, 0);
	json_array_end(&w);
	json_key(&w, "t");
	json_bool(&w, true);
	json_object_end(&w);
	/* 31 bytes of text, 11 held back: "{"l":[1000,1001,1002" is 20 and the next element
	 * would need 25. */
	CHECK_EQ(i, 3);
	CHECK_EQ(json_finish(&w), (int)strlen("{\"l\":[1000,1001,1002],\"t\":true}"));
	CHECK_STR_EQ(buf, "{\"l\":[1000,1001,1002],\"t\":true}");
}

/* The checker the other tests lean on must itself reject what is not JSON. */
static void test_validator(void)
{
	static const struct {
		const char *text;
		bool ok;
	} cases[] = {
		{"{}", true},
		{" {\"a\":[1,-0.5e+3,true,false,null,\"\\u00e9\\ud83d\\ude00\\/\"]} ", true},
		{"\"\xF0\x9F\x98\x80\"", true},
		{"", false},
		{"{", false},
		{"{\"a\":1,}", false},
		{"[1,]", false},
		{"{\"a\" 1}", false},
		{"{\"a\":1,\"a\":2}", false},
		{"01", false},
		{"1.", false},
		{"-", false},
		{"\"\x01\"", false},
		{"\"\\x\"", false},
		{"\"\\u12\"", false},
		{"\"\\ud800\"", false},
		{"\"\\udc00\"", false},
		{"\"\xC0\x80\"", false},
		{"\"\xED\xA0\x80\"", false},
		{"\"\xF4\x90\x80\x80\"", false},
		{"\"\xE2\x82\"", false},
		{"\"\x80\"", false},
		{"{} {}", false},
		{"tru", false},
		{"\"abc", false},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		check_case("row %zu", i);
		CHECK((json_validate(cases[i].text, strlen(cases[i].text)) == NULL) ==
		      cases[i].ok);
	}
	check_case("object wanted");
	CHECK(json_validate_object("[]", 2) != NULL);
	CHECK(json_validate_object("{}", 2) == NULL);
}

static const struct check_test tests[] = {
	{"escape_classes", test_escape_classes},
	{"escape_every_byte", test_escape_every_byte},
	{"values", test_values},
	{"misuse", test_misuse},
	{"overflow_every_size", test_overflow_every_size},
	{"cut_every_bound", test_cut_every_bound},
	{"overflow_is_sticky", test_overflow_is_sticky},
	{"reserve_and_rollback", test_reserve_and_rollback},
	{"validator", test_validator},
};

CHECK_MAIN(tests)
