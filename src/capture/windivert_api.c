/* windivert_api.c — loads WinDivert.dll at run time and turns its failures into one clear line. */
#include "capture/windivert_api.h"

#include <string.h>

#include "base/addr.h"

/* Only sluice.exe's directory and System32 are searched, for WinDivert.dll and for the DLLs it
 * imports: LOAD_LIBRARY_SEARCH_* leaves out the current directory and PATH (DLL planting), needs
 * no absolute path built from GetModuleFileNameW, and changes no process-wide setting (unlike
 * SetDefaultDllDirectories). */
#define WD_SEARCH_FLAGS (LOAD_LIBRARY_SEARCH_APPLICATION_DIR | LOAD_LIBRARY_SEARCH_SYSTEM32)

/* Error codes from notes/windivert.md §1; mingw-w64's winerror.h lacks some of them. */
enum {
	WD_ERR_INVALID_IMAGE_HASH = 577,
	WD_ERR_DRIVER_FAILED_PRIOR_UNLOAD = 654,
	WD_ERR_SERVICE_DOES_NOT_EXIST = 1060,
	WD_ERR_DRIVER_BLOCKED = 1275,
	WD_ERR_EPT_S_NOT_REGISTERED = 1753,
};

static void (*resolve(HMODULE dll, const char *name, bool *missing))(void)
{
	FARPROC proc = GetProcAddress(dll, name);
	if (!proc)
		*missing = true;
	return (void (*)(void))proc;
}

static enum wd_failure classify_load_error(DWORD win_error)
{
	switch (win_error) {
	case ERROR_MOD_NOT_FOUND:
	case ERROR_FILE_NOT_FOUND:
	case ERROR_PATH_NOT_FOUND:
		return WD_NO_DLL;
	default:
		return WD_BAD_DLL;
	}
}

enum wd_failure wd_load_named(struct wd_api *api, const wchar_t *dll_name, DWORD *win_error)
{
	bool missing = false;

	memset(api, 0, sizeof *api);
	*win_error = 0;
	HMODULE dll = LoadLibraryExW(dll_name, NULL, WD_SEARCH_FLAGS);
	if (!dll) {
		*win_error = GetLastError();
		return classify_load_error(*win_error);
	}
	api->dll = dll;
	api->open = (HANDLE(WINAPIV *)(const char *, int, int16_t, uint64_t))resolve(
		dll, "WinDivertOpen", &missing);
	api->recv_ex = (BOOL(WINAPIV *)(HANDLE, void *, UINT, UINT *, uint64_t, struct wd_address *,
					 UINT *, LPOVERLAPPED))resolve(dll, "WinDivertRecvEx",
									&missing);
	api->send_ex = (BOOL(WINAPIV *)(HANDLE, const void *, UINT, UINT *, uint64_t,
					 const struct wd_address *, UINT, LPOVERLAPPED))
		resolve(dll, "WinDivertSendEx", &missing);
	api->shutdown = (BOOL(WINAPIV *)(HANDLE, int))resolve(dll, "WinDivertShutdown", &missing);
	api->close = (BOOL(WINAPIV *)(HANDLE))resolve(dll, "WinDivertClose", &missing);
	api->set_param = (BOOL(WINAPIV *)(HANDLE, int, uint64_t))resolve(dll, "WinDivertSetParam",
									 &missing);
	api->get_param = (BOOL(WINAPIV *)(HANDLE, int, uint64_t *))resolve(
		dll, "WinDivertGetParam", &missing);
	if (missing) {
		*win_error = ERROR_PROC_NOT_FOUND;
		wd_unload(api);
		return WD_BAD_DLL;
	}
	return WD_OK;
}

enum wd_failure wd_load(struct wd_api *api, DWORD *win_error)
{
	return wd_load_named(api, L"WinDivert.dll", win_error);
}

void wd_unload(struct wd_api *api)
{
	if (api->dll)
		FreeLibrary(api->dll);
	memset(api, 0, sizeof *api);
}

enum wd_failure wd_classify_open_error(DWORD win_error)
{
	switch (win_error) {
	case ERROR_FILE_NOT_FOUND:
	case ERROR_PATH_NOT_FOUND:
	case WD_ERR_SERVICE_DOES_NOT_EXIST:
		return WD_NO_DRIVER;
	case ERROR_ACCESS_DENIED:
		return WD_NOT_ADMIN;
	case WD_ERR_INVALID_IMAGE_HASH:
	case WD_ERR_DRIVER_BLOCKED:
	case WD_ERR_EPT_S_NOT_REGISTERED:
	case WD_ERR_DRIVER_FAILED_PRIOR_UNLOAD:
		return WD_DRIVER_REFUSED;
	case ERROR_INVALID_PARAMETER:
		return WD_BAD_ARGUMENT;
	default:
		return WD_OTHER;
	}
}

static const char *const failure_messages[] = {
	[WD_OK] = "WinDivert is ready",
	[WD_NO_DLL] = "WinDivert.dll was not found next to sluice.exe or in System32; copy "
		      "WinDivert.dll and WinDivert64.sys from the x64 folder of WinDivert 2.2 "
		      "next to sluice.exe",
	[WD_BAD_DLL] = "WinDivert.dll next to sluice.exe is not the 64-bit WinDivert 2.x DLL "
		       "(wrong architecture or a missing function); replace it with WinDivert.dll "
		       "and WinDivert64.sys from the x64 folder of WinDivert 2.2",
	[WD_NO_DRIVER] = "the WinDivert driver could not be installed: put WinDivert64.sys next "
			 "to WinDivert.dll; if it is there, a stale WinDivert service points "
			 "elsewhere: run 'sc delete WinDivert' as administrator and reboot",
	[WD_NOT_ADMIN] = "WinDivert needs administrator rights: run sluice from an elevated "
			 "prompt (right-click, \"Run as administrator\")",
	[WD_DRIVER_REFUSED] = "Windows refused the WinDivert driver (driver signature or "
			      "blocklist, the Base Filtering Engine service stopped, or another "
			      "WinDivert version still loaded: close programs using it or reboot)",
	[WD_BAD_VERSION] = "the WinDivert driver loaded is not version 2.x; close programs using "
			   "another WinDivert version (or reboot) and use WinDivert 2.2",
	[WD_BAD_ARGUMENT] = "WinDivert refused sluice's filter, layer, priority or flags; this "
			    "is a bug in sluice, please report it",
	[WD_OTHER] = "WinDivert could not be opened",
};

const char *wd_failure_message(enum wd_failure f)
{
	if ((size_t)f >= sizeof failure_messages / sizeof failure_messages[0])
		f = WD_OTHER;
	return failure_messages[f];
}

HANDLE wd_open(const struct wd_api *api, const char *filter, enum wd_layer layer,
	       int16_t priority, uint64_t flags, enum wd_failure *failure, DWORD *win_error)
{
	uint64_t major = 0;

	HANDLE h = api->open(filter, (int)layer, priority, flags);
	if (h == NULL || h == INVALID_HANDLE_VALUE) {
		*win_error = GetLastError();
		*failure = wd_classify_open_error(*win_error);
		return NULL;
	}
	if (!api->get_param(h, WD_PARAM_VERSION_MAJOR, &major)) {
		*win_error = GetLastError();
		*failure = WD_BAD_VERSION;
		api->close(h);
		return NULL;
	}
	if (major != 2) {
		*win_error = 0;
		*failure = WD_BAD_VERSION;
		api->close(h);
		return NULL;
	}
	*failure = WD_OK;
	*win_error = 0;
	return h;
}

void wd_socket_addr_decode(const uint32_t raw[4], struct addr *out)
{
	uint8_t le[16], net[16];
	struct addr v6;

	/* The driver stores the address as one little-endian 128-bit integer: its bytes reversed
	 * are the address in network order. */
	memcpy(le, raw, sizeof le);
	for (size_t i = 0; i < sizeof net; i++)
		net[i] = le[15 - i];
	addr_from_bytes(&v6, ADDR_V6, net);
	addr_unmap_v4(&v6, out);
}
