/* windivert_api.h — our own binding of the WinDivert 2.2 user-mode API, loaded at run time.
 *
 * sluice never links WinDivert: wd_load() finds WinDivert.dll with LoadLibraryExW (next to
 * sluice.exe first, then in System32 — never in the current directory or on PATH, because sluice
 * runs elevated and either may be writable by anyone: a planted DLL would run as administrator),
 * resolves each function it uses with GetProcAddress, and fills a table of function pointers. So a
 * machine without WinDivert gets one clear message (and `sluice run` exits 125) instead of a
 * loader error, and tests can put a test double named WinDivert.dll next to the test executable.
 *
 * Declarations here are written from the facts in notes/windivert.md (signatures, enum values,
 * the 80-byte WINDIVERT_ADDRESS layout); no WinDivert header or source is copied. On x64 there is
 * one calling convention; on x86 the DLL uses __cdecl (WINAPIV), which is what the pointers here
 * declare.
 *
 * Windows only (the types come from <windows.h>).
 */
#ifndef SLUICE_CAPTURE_WINDIVERT_API_H
#define SLUICE_CAPTURE_WINDIVERT_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <windows.h>

enum wd_layer {
	WD_LAYER_NETWORK = 0,
	WD_LAYER_NETWORK_FORWARD = 1,
	WD_LAYER_FLOW = 2,
	WD_LAYER_SOCKET = 3,
	WD_LAYER_REFLECT = 4,
};

enum wd_event {
	WD_EVENT_NETWORK_PACKET = 0,
	WD_EVENT_FLOW_ESTABLISHED = 1,
	WD_EVENT_FLOW_DELETED = 2,
	WD_EVENT_SOCKET_BIND = 3,
	WD_EVENT_SOCKET_CONNECT = 4,
	WD_EVENT_SOCKET_LISTEN = 5,
	WD_EVENT_SOCKET_ACCEPT = 6,
	WD_EVENT_SOCKET_CLOSE = 7,
	WD_EVENT_REFLECT_OPEN = 8,
	WD_EVENT_REFLECT_CLOSE = 9,
};

enum {
	WD_FLAG_SNIFF = 0x0001,
	WD_FLAG_DROP = 0x0002,
	WD_FLAG_RECV_ONLY = 0x0004,
	WD_FLAG_SEND_ONLY = 0x0008,
	WD_FLAG_NO_INSTALL = 0x0010,
	WD_FLAG_FRAGMENTS = 0x0020,
};

enum wd_param {
	WD_PARAM_QUEUE_LENGTH = 0,
	WD_PARAM_QUEUE_TIME = 1,
	WD_PARAM_QUEUE_SIZE = 2,
	WD_PARAM_VERSION_MAJOR = 3,
	WD_PARAM_VERSION_MINOR = 4,
};

enum wd_shutdown {
	WD_SHUTDOWN_RECV = 0x1,
	WD_SHUTDOWN_SEND = 0x2,
	WD_SHUTDOWN_BOTH = 0x3,
};

#define WD_BATCH_MAX 255
#define WD_MTU_MAX (40 + 0xFFFF)

#define WD_PRIORITY_HIGHEST 30000
#define WD_PRIORITY_LOWEST (-30000)

/* Ranges WinDivertSetParam accepts (ERROR_INVALID_PARAMETER outside them). */
#define WD_QUEUE_LENGTH_MIN 32
#define WD_QUEUE_LENGTH_MAX 16384        /* packets; default 4096 */
#define WD_QUEUE_TIME_MIN 100
#define WD_QUEUE_TIME_MAX 16000          /* ms; default 2000 */
#define WD_QUEUE_SIZE_MIN 65535
#define WD_QUEUE_SIZE_MAX 33554432       /* bytes; default 4194304 */

/* Bits of wd_address.flags (byte 10 of the address). */
enum {
	WD_ADDR_SNIFFED = 0x01,
	WD_ADDR_OUTBOUND = 0x02,
	WD_ADDR_LOOPBACK = 0x04,
	WD_ADDR_IMPOSTOR = 0x08,
	WD_ADDR_IPV6 = 0x10,
	WD_ADDR_IP_CHECKSUM = 0x20,
	WD_ADDR_TCP_CHECKSUM = 0x40,
	WD_ADDR_UDP_CHECKSUM = 0x80,
};

/* WINDIVERT_ADDRESS (2.2): 80 bytes. The bitfield word at offset 8 is spelled as bytes (layer,
 * event, flags) so that no compiler's bitfield order matters. */
struct wd_address {
	int64_t timestamp; /* QueryPerformanceCounter ticks */
	uint8_t layer;     /* enum wd_layer */
	uint8_t event;     /* enum wd_event */
	uint8_t flags;     /* WD_ADDR_* */
	uint8_t reserved1;
	uint32_t reserved2;
	union {
		struct {
			uint32_t if_idx;
			uint32_t sub_if_idx;
		} network;
		struct { /* FLOW and SOCKET layers; host order: see wd_socket_addr_decode */
			uint64_t endpoint_id;
			uint64_t parent_endpoint_id;
			uint32_t process_id;
			uint32_t local_addr[4];
			uint32_t remote_addr[4];
			uint16_t local_port;
			uint16_t remote_port;
			uint8_t protocol;
		} socket;
		uint8_t reserved3[64];
	} u;
};

_Static_assert(sizeof(struct wd_address) == 80, "WINDIVERT_ADDRESS is 80 bytes");
_Static_assert(offsetof(struct wd_address, u) == 16, "the union starts at byte 16");
_Static_assert(offsetof(struct wd_address, u.socket.process_id) == 32, "ProcessId at 32");
_Static_assert(offsetof(struct wd_address, u.socket.local_port) == 68, "LocalPort at 68");
_Static_assert(offsetof(struct wd_address, u.socket.protocol) == 72, "Protocol at 72");

/* The functions sluice uses, as loaded. */
struct wd_api {
	HMODULE dll;
	HANDLE(WINAPIV *open)(const char *filter, int layer, int16_t priority, uint64_t flags);
	BOOL(WINAPIV *recv_ex)(HANDLE h, void *packet, UINT packet_len, UINT *recv_len,
			       uint64_t flags, struct wd_address *addr, UINT *addr_len,
			       LPOVERLAPPED overlapped);
	BOOL(WINAPIV *send_ex)(HANDLE h, const void *packet, UINT packet_len, UINT *send_len,
			       uint64_t flags, const struct wd_address *addr, UINT addr_len,
			       LPOVERLAPPED overlapped);
	BOOL(WINAPIV *shutdown)(HANDLE h, int how);
	BOOL(WINAPIV *close)(HANDLE h);
	BOOL(WINAPIV *set_param)(HANDLE h, int param, uint64_t value);
	BOOL(WINAPIV *get_param)(HANDLE h, int param, uint64_t *value);
};

/* Why loading or opening failed, for one clear line to the user. */
enum wd_failure {
	WD_OK = 0,
	WD_NO_DLL,          /* WinDivert.dll not found (LoadLibrary: 126) */
	WD_BAD_DLL,         /* a function is missing: not WinDivert 2.x */
	WD_NO_DRIVER,       /* WinDivert64.sys missing or its service stale (2, 1060) */
	WD_NOT_ADMIN,       /* access denied (5) */
	WD_DRIVER_REFUSED,  /* signature 577, blocked 1275, BFE off 1753, other driver 654 */
	WD_BAD_VERSION,     /* the driver's major version is not 2 */
	WD_BAD_ARGUMENT,    /* filter, layer, priority or flags refused (87): a bug of ours */
	WD_OTHER,
};

/* Loads WinDivert.dll (from sluice.exe's directory, else System32) and resolves the functions.
 * Returns WD_OK and fills *api, or WD_NO_DLL / WD_BAD_DLL with *api zeroed and *win_error set to
 * the loader's error (126 not found, 193 wrong architecture, 127 a function missing). */
enum wd_failure wd_load(struct wd_api *api, DWORD *win_error);

/* wd_load for a DLL of another file name, searched in the same two places (tests use it to load a
 * DLL that is absent or incomplete). */
enum wd_failure wd_load_named(struct wd_api *api, const wchar_t *dll_name, DWORD *win_error);

/* Frees the DLL; accepts an api that was never loaded (dll NULL). */
void wd_unload(struct wd_api *api);

/* Classifies a GetLastError() value from WinDivertOpen. */
enum wd_failure wd_classify_open_error(DWORD win_error);

/* One line for the user saying what to do (static text, no trailing newline), e.g.
 * "WinDivert.dll was not found next to sluice.exe or in System32; ...". The caller adds the
 * Windows error code: "sluice: %s (Windows error %lu)". */
const char *wd_failure_message(enum wd_failure f);

/* Opens a handle and checks the driver's version (major 2). Returns the handle (the caller
 * closes it with api->close), *failure WD_OK and *win_error 0; or NULL with *failure and
 * *win_error set (NULL and INVALID_HANDLE_VALUE from WinDivertOpen both mean failure). A driver
 * whose major version is not 2 gives WD_BAD_VERSION with *win_error 0 (or WinDivertGetParam's
 * error if the version cannot be read), the handle closed. */
HANDLE wd_open(const struct wd_api *api, const char *filter, enum wd_layer layer,
	       int16_t priority, uint64_t flags, enum wd_failure *failure, DWORD *win_error);

struct addr;

/* Decodes a SOCKET/FLOW-layer address field (u.socket.local_addr or remote_addr: the driver's
 * host-order 128-bit integer, IPv4 as ::ffff:a.b.c.d) into *out: ADDR_V4 for IPv4-mapped values,
 * else ADDR_V6, bytes in network order. The ports beside it are plain host-order integers. */
void wd_socket_addr_decode(const uint32_t raw[4], struct addr *out);

#endif
