/* test_os.c — os.h: the wall clock reads Unix time, the random source fills what it is asked. */
#include "check.h"

#include <string.h>
#include <time.h>

#include "base/os.h"

/* Compared with time(): the same clock at a coarser grain, read around it. */
static void test_wall_clock(void)
{
	int64_t before = (int64_t)time(NULL) * 1000;
	int64_t ms = os_wall_ms();
	int64_t after = (int64_t)time(NULL) * 1000 + 1000;

	CHECK(ms >= before);
	CHECK(ms < after);
	CHECK(ms > 1577836800000); /* after 2020-01-01 */
	CHECK(os_wall_ms() >= ms);
}

static void test_random(void)
{
	static const size_t sizes[] = { 0, 1, 16, 33, 4096, 1 << 20 };
	static uint8_t a[(1 << 20) + 1], b[(1 << 20) + 1];

	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		size_t n = sizes[i], zeros = 0;

		check_case("%zu bytes", n);
		memset(a, 0, sizeof a);
		memset(b, 0, sizeof b);
		CHECK_EQ(os_random(a, n), 0);
		CHECK_EQ(os_random(b, n), 0);
		if (n >= 16)
			CHECK(memcmp(a, b, n) != 0);
		for (size_t k = 0; k < n; k++)
			zeros += a[k] == 0;
		/* About n/256 zero bytes: a draw that filled only part of the buffer shows here. */
		if (n >= 4096)
			CHECK(zeros < n / 64);
		CHECK_EQ(a[n], 0); /* nothing written past n */
	}
	check_case("%s", "");
}

static const struct check_test tests[] = {
	{ "wall_clock", test_wall_clock },
	{ "random", test_random },
};

CHECK_MAIN(tests)
