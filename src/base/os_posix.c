/* os_posix.c — os.h on Linux: clock_gettime and getrandom. */
#define _GNU_SOURCE
#include "base/os.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/random.h>
#include <time.h>

int64_t os_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int os_random(void *buf, size_t n)
{
	size_t done = 0;
	while (done < n) {
		ssize_t got = getrandom((char *)buf + done, n - done, 0);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		done += (size_t)got;
	}
	return 0;
}

int os_create_private_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	if (fd < 0)
		return errno == EEXIST ? 0 : -errno;
	close(fd);
	return 0;
}
