/* run_platform_windows.c — `sluice run`'s platform part on Windows (run_platform.h). */
#include "session/run_platform.h"

#include <stdbool.h>
#include <stdlib.h>

#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#include <iphlpapi.h>

#include "base/log.h"
#include "capture/capture_windivert.h"
#include "session/session.h"
#include "session/session_windows.h"

struct run_platform {
	struct capture *capture;
	struct session *session;
};

const struct capture_ops *run_platform_capture(enum run_mode mode)
{
	switch (mode) {
	case RUN_MODE_PLATFORM_DEFAULT:
	case RUN_MODE_WINDIVERT:
		return &capture_windivert;
	case RUN_MODE_NETNS:
	case RUN_MODE_DIVERT:
		break;
	}
	log_error("run: --mode %s needs Linux; on Windows use --mode windivert",
		  run_mode_name(mode));
	return NULL;
}

/* The Job Object's word on which processes are the session's, handed to the capture's engine. */
static void on_process(void *ctx, uint32_t pid, bool started)
{
	struct run_platform *p = ctx;

	capture_windivert_process(p->capture, pid, started);
}

/* Asked by the capture's packet thread about a pid the job has not reported yet. run.c closes
 * the capture (ending that thread) before it frees the session and this. */
static bool owns(void *ctx, uint32_t pid)
{
	struct run_platform *p = ctx;

	return session_owns_process(p->session, pid);
}

void run_platform_start(struct run_platform **out, struct session *s, struct capture *cap)
{
	struct run_platform *p = calloc(1, sizeof *p);

	*out = p;
	if (!p) {
		log_error("run: out of memory: no process of the session is diverted");
		return;
	}
	p->capture = cap;
	p->session = s;
	session_on_process(s, on_process, p);
	capture_windivert_set_owner_check(cap, owns, p);
}

/* The executable of pid as UTF-8 into exe (n bytes); "" when it cannot be read. */
static void process_exe(uint32_t pid, char *exe, size_t n)
{
	wchar_t path[MAX_PATH * 4];
	DWORD len = (DWORD)(sizeof path / sizeof path[0]);
	HANDLE h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid);

	if (n > 0)
		exe[0] = '\0';
	if (!h)
		return;
	if (QueryFullProcessImageNameW(h, 0, path, &len) && n > 0) {
		int w = WideCharToMultiByte(CP_UTF8, 0, path, (int)len, exe, (int)n - 1, NULL, NULL);
		exe[w > 0 ? w : 0] = '\0';
	}
	CloseHandle(h);
}

int64_t run_platform_peer_process(struct run_platform *p, struct capture *cap, int proto,
				  const struct capture_endpoint *seen, const struct addr *dst,
				  uint16_t dport, char *exe, size_t n)
{
	(void)p;
	(void)dst;
	(void)dport;
	uint32_t pid = cap->ops->flow_pid ? cap->ops->flow_pid(cap, proto, seen) : 0;
	if (pid == 0)
		return 0;
	process_exe(pid, exe, n);
	return pid;
}

void run_platform_free(struct run_platform *p)
{
	free(p);
}

size_t run_platform_resolvers(struct addr *out, size_t max)
{
	ULONG flags = GAA_FLAG_SKIP_UNICAST | GAA_FLAG_SKIP_ANYCAST | GAA_FLAG_SKIP_MULTICAST |
		      GAA_FLAG_SKIP_FRIENDLY_NAME;
	ULONG size = 16384;
	IP_ADAPTER_ADDRESSES *list = NULL;
	ULONG rc = ERROR_BUFFER_OVERFLOW;
	size_t n = 0;

	for (int tries = 0; tries < 3 && rc == ERROR_BUFFER_OVERFLOW; tries++) {
		free(list);
		list = malloc(size);
		if (!list)
			return 0;
		rc = GetAdaptersAddresses(AF_UNSPEC, flags, NULL, list, &size);
	}
	for (IP_ADAPTER_ADDRESSES *a = rc == NO_ERROR ? list : NULL; a && n < max; a = a->Next) {
		if (a->OperStatus != IfOperStatusUp)
			continue;
		for (IP_ADAPTER_DNS_SERVER_ADDRESS *d = a->FirstDnsServerAddress; d && n < max;
		     d = d->Next) {
			const struct sockaddr *sa = d->Address.lpSockaddr;
			if (sa && sa->sa_family == AF_INET)
				addr_from_bytes(&out[n++], ADDR_V4,
						(const uint8_t *)&((const struct sockaddr_in *)sa)
							->sin_addr);
			else if (sa && sa->sa_family == AF_INET6)
				addr_from_bytes(&out[n++], ADDR_V6,
						(const uint8_t *)&((const struct sockaddr_in6 *)sa)
							->sin6_addr);
		}
	}
	free(list);
	if (n == 0)
		log_warn("run: no DNS server configured: only --dns-upstream's answers name "
			 "addresses");
	return n;
}
