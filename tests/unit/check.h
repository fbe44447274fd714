/* check.h — the unit-test harness: named test functions, assertions that say which table row
 * failed, and one closing line "N passed, N failed".
 *
 * A test file defines `static void test_x(void)` functions, lists them in a
 * `static const struct check_test tests[]`, and ends with CHECK_MAIN(tests). Inside a table loop,
 * check_case("%s", row->name) names the row so that a failure message points at it.
 * `./test_x NAME` runs only the named test.
 */
#ifndef SLUICE_TESTS_CHECK_H
#define SLUICE_TESTS_CHECK_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct check_test {
	const char *name;
	void (*fn)(void);
};

/* mingw's stdio under -std=c11 is the C99 one (%zu), which gcc calls gnu_printf. */
#if defined(__MINGW32__)
#define CHECK_PRINTF(f, a) __attribute__((format(gnu_printf, f, a)))
#elif defined(__GNUC__)
#define CHECK_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CHECK_PRINTF(f, a)
#endif

static int check_failures_in_test;
static char check_case_label[256];

CHECK_PRINTF(1, 2)
static inline void check_case(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(check_case_label, sizeof check_case_label, fmt, ap);
	va_end(ap);
}

CHECK_PRINTF(3, 4)
static inline void check_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "  %s:%d: ", file, line);
	if (check_case_label[0])
		fprintf(stderr, "[%s] ", check_case_label);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	check_failures_in_test++;
}

#define CHECK(cond)                                                                 \
	do {                                                                        \
		if (!(cond))                                                        \
			check_fail(__FILE__, __LINE__, "CHECK(%s) failed", #cond); \
	} while (0)

#define CHECK_EQ(a, b)                                                                       \
	do {                                                                                 \
		long long check_a_ = (long long)(a), check_b_ = (long long)(b);              \
		if (check_a_ != check_b_)                                                    \
			check_fail(__FILE__, __LINE__, "%s == %s failed: %lld != %lld", #a, #b, \
				   check_a_, check_b_);                                      \
	} while (0)

#define CHECK_STR_EQ(a, b)                                                                   \
	do {                                                                                 \
		const char *check_a_ = (a), *check_b_ = (b);                                 \
		if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_) != 0)              \
			check_fail(__FILE__, __LINE__, "%s == %s failed: \"%s\" != \"%s\"", #a, \
				   #b, check_a_ ? check_a_ : "(null)",                      \
				   check_b_ ? check_b_ : "(null)");                         \
	} while (0)

#define CHECK_MEM_EQ(a, b, n)                                                       \
	do {                                                                        \
		if (memcmp((a), (b), (n)) != 0)                                     \
			check_fail(__FILE__, __LINE__, "memory %s == %s failed (%zu bytes)", \
				   #a, #b, (size_t)(n));                            \
	} while (0)

static inline int check_run(const struct check_test *tests, size_t n, int argc, char **argv)
{
	int passed = 0, failed = 0;
	for (size_t i = 0; i < n; i++) {
		if (argc > 1 && strcmp(argv[1], tests[i].name) != 0)
			continue;
		check_failures_in_test = 0;
		check_case_label[0] = '\0';
		tests[i].fn();
		if (check_failures_in_test) {
			printf("FAIL %s (%d failed checks)\n", tests[i].name, check_failures_in_test);
			failed++;
		} else {
			printf("ok   %s\n", tests[i].name);
			passed++;
		}
	}
	printf("%d passed, %d failed\n", passed, failed);
	if (passed + failed == 0) {
		fprintf(stderr, "no test ran\n");
		return 1;
	}
	return failed ? 1 : 0;
}

#define CHECK_MAIN(tests)                                                              \
	int main(int argc, char **argv)                                                \
	{                                                                              \
		return check_run(tests, sizeof(tests) / sizeof((tests)[0]), argc, argv); \
	}

#endif
