/* attribution.h — which session process (pid, executable) owns a captured flow's socket.
 *
 * The audit trail names the process behind every connection and query (DESIGN.md, "Audit
 * events": `pid`, `exe`). The relay, DNS proxy and UDP relay know the application's socket only
 * by its address inside the session (the accepted peer, a datagram's source) and where it was
 * going (the original destination); this module turns that into the pid, as sluice sees it, of
 * a session process holding the socket, and the path of its executable.
 *
 * Linux (src/session/attribution_linux.c), in two steps, chosen by measurement (2 vCPUs, a
 * kernel whose TCP established hash has 262144 buckets):
 *   1. the socket's inode, from NETLINK_SOCK_DIAG in the session's network namespace. With the
 *      original destination known this is an exact hash lookup (about 4 us, TCP and UDP).
 *      Reading /proc/ROOT/net/tcp and tcp6 instead costs about 4 ms each even in an almost
 *      empty namespace, because both walk the host-wide hash table; a netlink dump (used only
 *      when the destination is unknown) costs 0.3 to 0.5 ms per family. IPv4 lookups also find
 *      IPv6 sockets that carry IPv4 (::ffff:a.b.c.d), as the kernel's own delivery does.
 *   2. a session process with a descriptor `socket:[INODE]`: first the sockets earlier scans
 *      read (each scan reads all of a process's descriptors and remembers every socket inode
 *      and its holder, so the connections accepted in one burst cost one scan); then the
 *      session processes found earlier, most recently matched first, their descriptors from the
 *      highest down; then, on a miss, the rest of /proc, newest pid first, remembering the
 *      session processes it meets.
 *      A process belongs to the session when its PID namespace is the session init's, or
 *      nested below it; sluice itself (and everything else on the host) never qualifies, even
 *      for sockets it holds inside the session's network namespace.
 * Measured with ~300 processes on the machine and 11 session processes of ~25 descriptors:
 * about 35 us when the owner is the process matched last, plus 3-4 us per descriptor it holds
 * (a new socket takes the lowest free descriptor, so it is anywhere in the table); each session
 * process searched before the owner adds about 100 us; a miss that goes through /proc costs
 * about 1 ms (some 2.5 us per process on the machine). A socket a scan already read costs a
 * hash lookup and the session check of its holder.
 * Every step is bounded (the ATTRIBUTION_MAX_* constants below); a process that exits
 * meanwhile is skipped. Descriptors of threads that unshared their descriptor table
 * (clone without CLONE_FILES) are not examined. When several processes share the socket
 * (inherited across fork), the first one found is reported.
 *
 * Not thread-safe: one thread owns a `struct attribution`.
 */
#ifndef SLUICE_SESSION_ATTRIBUTION_H
#define SLUICE_SESSION_ATTRIBUTION_H

#include <stddef.h>
#include <stdint.h>

#include "base/addr.h"

/* IP protocol numbers accepted in struct attribution_flow. */
#define ATTRIBUTION_TCP 6
#define ATTRIBUTION_UDP 17

/* The longest executable path reported, with its NUL. */
#define ATTRIBUTION_EXE_MAX 4096

/* Bounds on the work of one lookup and on what is remembered between lookups. */
#define ATTRIBUTION_MAX_CACHED_PIDS 1024   /* session processes remembered */
#define ATTRIBUTION_MAX_PROC_ENTRIES 32768 /* /proc entries examined by one full scan */
#define ATTRIBUTION_MAX_FDS 65536          /* descriptors examined in one process */
#define ATTRIBUTION_MAX_FD_CHECKS 200000   /* descriptors examined by one lookup, in total */
#define ATTRIBUTION_MAX_DIAG_SOCKETS 65536 /* sockets read from one netlink dump */
#define ATTRIBUTION_MAX_CANDIDATES 8       /* sockets that may be the flow's (shared ports) */

struct attribution;

/* One captured flow, as seen inside the session. */
struct attribution_flow {
	int proto;                /* ATTRIBUTION_TCP or ATTRIBUTION_UDP */
	struct addr local;        /* the application's socket: the accepted peer, a datagram's */
	uint16_t local_port;      /*   source (IPv4-mapped IPv6 is treated as IPv4) */
	struct addr remote;       /* where it was going (the original destination), or family */
	uint16_t remote_port;     /*   ADDR_NONE when unknown (slower: a dump, see above) */
};

/* Prepares attribution for the session whose init is root_pid (as sluice sees it): its network
 * namespace is where sockets are looked up, its PID namespace (which must not be the caller's)
 * says who belongs to the session. The netlink socket is made inside that network namespace at
 * the first lookup (the calling thread enters it and comes back), not here, because init joins
 * the capture's namespace just after it is forked. Returns 0 and *out (release with
 * attribution_free); -ESRCH if root_pid does not exist; -EINVAL if it is not in a PID
 * namespace of its own; -ENOMEM. */
int attribution_new(struct attribution **out, int root_pid);

/* Frees everything; accepts NULL. */
void attribution_free(struct attribution *a);

/* Finds the session process holding flow's socket. Returns its pid (> 0, in sluice's PID
 * namespace) and writes its executable's path into exe (exe_len bytes, NUL-terminated; "" when
 * unreadable or longer than exe_len; exe may be NULL when exe_len is 0). Returns 0 when no
 * session process holds such a socket (within the bounds above); -EINVAL for a bad flow (other
 * protocol, no address, families that differ); other negative errno codes when the session's
 * namespace cannot be queried (e.g. -EPERM without CAP_SYS_ADMIN, -ENOENT once it is gone). */
int64_t attribution_lookup(struct attribution *a, const struct attribution_flow *flow, char *exe,
			   size_t exe_len);

#endif
