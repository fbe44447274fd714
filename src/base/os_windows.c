/* os_windows.c — os.h on Windows: the system time as a FILETIME, and BCryptGenRandom. */
#include "base/os.h"

#include <errno.h>
#include <limits.h>

#include <windows.h>
#include <bcrypt.h>

/* 100 ns intervals from 1601-01-01 (FILETIME's epoch) to 1970-01-01. */
#define FILETIME_UNIX_EPOCH 116444736000000000ULL

int64_t os_wall_ms(void)
{
	FILETIME ft;
	ULARGE_INTEGER t;

	GetSystemTimePreciseAsFileTime(&ft);
	t.LowPart = ft.dwLowDateTime;
	t.HighPart = ft.dwHighDateTime;
	return (int64_t)((t.QuadPart - FILETIME_UNIX_EPOCH) / 10000);
}

/* The system-preferred RNG needs no algorithm handle; ULONG bounds one call. */
int os_random(void *buf, size_t n)
{
	size_t done = 0;

	while (done < n) {
		ULONG chunk = n - done > ULONG_MAX ? ULONG_MAX : (ULONG)(n - done);
		NTSTATUS st = BCryptGenRandom(NULL, (PUCHAR)buf + done, chunk,
					      BCRYPT_USE_SYSTEM_PREFERRED_RNG);
		if (!BCRYPT_SUCCESS(st))
			return -EIO;
		done += chunk;
	}
	return 0;
}

int os_create_private_file(const char *path)
{
	(void)path;
	return 0;
}
