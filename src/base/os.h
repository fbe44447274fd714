/* os.h — the little that sluice asks of the operating system besides sockets and processes. */
#ifndef SLUICE_BASE_OS_H
#define SLUICE_BASE_OS_H

#include <stddef.h>
#include <stdint.h>

/* Unix time in milliseconds (UTC), for audit events. */
int64_t os_wall_ms(void);

/* Fills buf with n bytes from the OS's random source. Returns 0 or a negative errno. */
int os_random(void *buf, size_t n);

/* Creates the file at path, empty and readable by its owner only (POSIX: mode 0600), unless it
 * exists already (then it is left as it is). Windows: nothing (new files inherit their
 * folder's ACL). Returns 0, or a negative errno when it could not be created. */
int os_create_private_file(const char *path);

#endif
