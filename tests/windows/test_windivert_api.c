/* test_windivert_api.c — the WinDivert binding against the fake WinDivert.dll, under Wine.
 *
 * Runs from the directory that holds the fake WinDivert.dll and WinDivertIncomplete.dll. Each
 * test loads the DLL afresh (wd_load) and unloads it, which also resets the fake; the fake's
 * script is written to a temporary file named by FAKE_WINDIVERT_SCRIPT.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include <windows.h>

#include "base/addr.h"
#include "capture/windivert_api.h"
#include "check.h"
#include "fake_windivert.h"

#define WAIT_MS 10000 /* a bound that turns a hang into a failure, not a timing assertion */

/* CHECK_MEM_EQ's message uses %zu, which gcc rejects on mingw while check.h declares check_fail
 * format(printf) (ms_printf there) rather than gnu_printf. */
#define CHECK_BYTES_EQ(a, b, n) CHECK(memcmp((a), (b), (n)) == 0)

struct fake {
	int (*reset)(void);
	const char *(*script_error)(void);
	int (*open_count)(void);
	int (*opened)(int i, struct fake_wd_open_info *out);
	int (*sent_count)(void);
	int (*sent)(int i, void *buf, unsigned cap, unsigned char *addr, int *handle);
	int (*wait_sent)(int n, unsigned timeout_ms);
	int (*wait_idle)(unsigned timeout_ms);
};

static char script_path[MAX_PATH];

/* An outbound TCP SYN 10.0.0.2:50000 -> 198.51.100.7:443. */
static const uint8_t syn4[40] = {
	0x45, 0x00, 0x00, 0x28, 0x00, 0x01, 0x00, 0x00, 0x40, 0x06, 0x00, 0x00, 0x0a, 0x00,
	0x00, 0x02, 0xc6, 0x33, 0x64, 0x07, 0xc3, 0x50, 0x01, 0xbb, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x50, 0x02, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00,
};

/* The same SYN over IPv6, 2001:db8::2 -> 2001:db8::7. */
static const uint8_t syn6[60] = {
	0x60, 0x00, 0x00, 0x00, 0x00, 0x14, 0x06, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0xc3, 0x50, 0x01, 0xbb, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x50, 0x02, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00,
};

static const char *hex(const uint8_t *p, size_t n)
{
	static char bufs[4][2 * 128 + 1];
	static int next;
	char *out = bufs[next++ % 4];

	for (size_t i = 0; i < n && i < 128; i++)
		snprintf(out + 2 * i, 3, "%02x", p[i]);
	return out;
}

/* Writes the fake's script (NULL: no script at all). */
static void use_script(const char *text)
{
	if (!text) {
		SetEnvironmentVariableA("FAKE_WINDIVERT_SCRIPT", NULL);
		return;
	}
	FILE *f = fopen(script_path, "wb");
	CHECK(f != NULL);
	if (!f)
		return;
	fputs(text, f);
	fclose(f);
	SetEnvironmentVariableA("FAKE_WINDIVERT_SCRIPT", script_path);
}

static void (*fake_fn(HMODULE dll, const char *name))(void)
{
	FARPROC p = GetProcAddress(dll, name);
	if (!p)
		check_fail(__FILE__, __LINE__, "the fake lacks %s", name);
	return (void (*)(void))p;
}

/* Loads the fake as sluice loads WinDivert and finds its test-only exports. */
static bool load_fake(struct wd_api *api, struct fake *f)
{
	DWORD err;

	memset(f, 0, sizeof *f);
	enum wd_failure r = wd_load(api, &err);
	CHECK_EQ(r, WD_OK);
	if (r != WD_OK)
		return false;
	f->reset = (int (*)(void))fake_fn(api->dll, "FakeWinDivertReset");
	f->script_error = (const char *(*)(void))fake_fn(api->dll, "FakeWinDivertScriptError");
	f->open_count = (int (*)(void))fake_fn(api->dll, "FakeWinDivertOpenCount");
	f->opened = (int (*)(int, struct fake_wd_open_info *))fake_fn(api->dll,
								       "FakeWinDivertOpened");
	f->sent_count = (int (*)(void))fake_fn(api->dll, "FakeWinDivertSentCount");
	f->sent = (int (*)(int, void *, unsigned, unsigned char *, int *))fake_fn(
		api->dll, "FakeWinDivertSent");
	f->wait_sent = (int (*)(int, unsigned))fake_fn(api->dll, "FakeWinDivertWaitSent");
	f->wait_idle = (int (*)(unsigned))fake_fn(api->dll, "FakeWinDivertWaitIdle");
	if (!f->reset || !f->script_error || !f->open_count || !f->opened || !f->sent_count ||
	    !f->sent || !f->wait_sent || !f->wait_idle) {
		wd_unload(api);
		return false;
	}
	CHECK_EQ(f->reset(), 0);
	return true;
}

static HANDLE open_ok(const struct wd_api *api, enum wd_layer layer, uint64_t flags)
{
	enum wd_failure failure;
	DWORD err;

	HANDLE h = wd_open(api, "true", layer, 0, flags, &failure, &err);
	CHECK(h != NULL);
	CHECK_EQ(failure, WD_OK);
	CHECK_EQ(err, 0);
	return h;
}

static void exe_dir(wchar_t *dir, DWORD n)
{
	DWORD len = GetModuleFileNameW(NULL, dir, n);
	CHECK(len > 0 && len < n);
	wchar_t *slash = wcsrchr(dir, L'\\');
	if (slash)
		*slash = L'\0';
}

static void addr_of(struct addr *a, const char *text)
{
	CHECK_EQ(addr_parse(a, text, strlen(text)), 0);
}

/* ---- the address layout ---- */

static void test_address_layout(void)
{
	uint8_t b[80] = {0};
	struct wd_address a;
	struct addr got, want;

	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(8 - i); /* Timestamp 0x0102030405060708 */
	b[8] = WD_LAYER_SOCKET;
	b[9] = WD_EVENT_SOCKET_CONNECT;
	b[10] = 0x02 | 0x04 | 0x10; /* Outbound, Loopback, IPv6 */
	for (int i = 0; i < 8; i++) {
		b[16 + i] = (uint8_t)(0x18 - i); /* EndpointId 0x1112131415161718 */
		b[24 + i] = (uint8_t)(0x28 - i); /* ParentEndpointId 0x2122232425262728 */
	}
	b[32] = 0x92; /* ProcessId 4242 */
	b[33] = 0x10;
	const uint8_t local[16] = {0x02, 0x00, 0x00, 0x0a, 0xff, 0xff}; /* ::ffff:10.0.0.2 */
	memcpy(b + 36, local, 16);
	const uint8_t remote[16] = {0x07, [12] = 0xb8, 0x0d, 0x01, 0x20}; /* 2001:db8::7 */
	memcpy(b + 52, remote, 16);
	b[68] = 0x50; /* LocalPort 50000 */
	b[69] = 0xc3;
	b[70] = 0xbb; /* RemotePort 443 */
	b[71] = 0x01;
	b[72] = 6;

	memcpy(&a, b, sizeof a);
	CHECK_EQ(a.timestamp, 0x0102030405060708LL);
	CHECK_EQ(a.layer, WD_LAYER_SOCKET);
	CHECK_EQ(a.event, WD_EVENT_SOCKET_CONNECT);
	CHECK_EQ(a.flags, WD_ADDR_OUTBOUND | WD_ADDR_LOOPBACK | WD_ADDR_IPV6);
	CHECK(!(a.flags & (WD_ADDR_SNIFFED | WD_ADDR_IMPOSTOR | WD_ADDR_IP_CHECKSUM |
			   WD_ADDR_TCP_CHECKSUM | WD_ADDR_UDP_CHECKSUM)));
	CHECK_EQ(a.u.socket.endpoint_id, 0x1112131415161718LL);
	CHECK_EQ(a.u.socket.parent_endpoint_id, 0x2122232425262728LL);
	CHECK_EQ(a.u.socket.process_id, 4242);
	CHECK_EQ(a.u.socket.local_addr[0], 0x0a000002); /* host order */
	CHECK_EQ(a.u.socket.local_addr[1], 0xffff);
	CHECK_EQ(a.u.socket.local_port, 50000);
	CHECK_EQ(a.u.socket.remote_port, 443);
	CHECK_EQ(a.u.socket.protocol, 6);

	wd_socket_addr_decode(a.u.socket.local_addr, &got);
	addr_of(&want, "10.0.0.2");
	CHECK(addr_equal(&got, &want));
	wd_socket_addr_decode(a.u.socket.remote_addr, &got);
	addr_of(&want, "2001:db8::7");
	CHECK(addr_equal(&got, &want));

	/* The network layer's view of the same union, and the other direction. */
	memset(b + 16, 0, 64);
	b[16] = 7;
	b[20] = 3;
	b[23] = 0x80;
	memcpy(&a, b, sizeof a);
	CHECK_EQ(a.u.network.if_idx, 7);
	CHECK_EQ(a.u.network.sub_if_idx, 0x80000003u);

	memset(&a, 0, sizeof a);
	a.timestamp = -2;
	a.layer = WD_LAYER_NETWORK;
	a.flags = WD_ADDR_IMPOSTOR | WD_ADDR_UDP_CHECKSUM;
	a.u.socket.process_id = 0x01020304;
	a.u.socket.protocol = 17;
	memcpy(b, &a, sizeof b);
	CHECK_EQ(b[0], 0xfe);
	CHECK_EQ(b[7], 0xff);
	CHECK_EQ(b[10], 0x08 | 0x80);
	CHECK_EQ(b[32], 0x04);
	CHECK_EQ(b[35], 0x01);
	CHECK_EQ(b[72], 17);
}

static void test_socket_addr_decode(void)
{
	static const struct {
		const char *name;
		uint8_t raw[16]; /* as the driver lays them out in memory */
		const char *want;
	} cases[] = {
		{"ipv4 mapped", {4, 3, 2, 1, 0xff, 0xff}, "1.2.3.4"},
		{"ipv4 any", {0, 0, 0, 0, 0xff, 0xff}, "0.0.0.0"},
		{"ipv6 loopback", {1}, "::1"},
		{"ipv6 any", {0}, "::"},
		{"ipv6", {0x34, 0x12, [12] = 0xb8, 0x0d, 0x01, 0x20}, "2001:db8::1234"},
		{"ipv6 not mapped", {4, 3, 2, 1, 0xfe, 0xff}, "::fffe:102:304"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint32_t raw[4];
		struct addr got, want;
		check_case("%s", cases[i].name);
		memcpy(raw, cases[i].raw, sizeof raw);
		wd_socket_addr_decode(raw, &got);
		addr_of(&want, cases[i].want);
		CHECK(addr_equal(&got, &want));
	}
}

/* ---- classification and messages ---- */

static void test_classify_open_error(void)
{
	static const struct {
		DWORD code;
		enum wd_failure want;
	} cases[] = {
		{2, WD_NO_DRIVER},         {3, WD_NO_DRIVER},        {1060, WD_NO_DRIVER},
		{5, WD_NOT_ADMIN},         {577, WD_DRIVER_REFUSED}, {654, WD_DRIVER_REFUSED},
		{1275, WD_DRIVER_REFUSED}, {1753, WD_DRIVER_REFUSED}, {87, WD_BAD_ARGUMENT},
		{0, WD_OTHER},             {13, WD_OTHER},           {1234, WD_OTHER},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		check_case("error %lu", (unsigned long)cases[i].code);
		CHECK_EQ(wd_classify_open_error(cases[i].code), cases[i].want);
	}
}

static void test_failure_messages(void)
{
	static const struct {
		enum wd_failure f;
		const char *must_say;
	} cases[] = {
		{WD_OK, ""},
		{WD_NO_DLL, "WinDivert.dll was not found"},
		{WD_BAD_DLL, "WinDivert.dll"},
		{WD_NO_DRIVER, "WinDivert64.sys"},
		{WD_NOT_ADMIN, "Run as administrator"},
		{WD_DRIVER_REFUSED, "refused"},
		{WD_BAD_VERSION, "WinDivert 2.2"},
		{WD_BAD_ARGUMENT, "bug in sluice"},
		{WD_OTHER, "WinDivert"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *m = wd_failure_message(cases[i].f);
		check_case("failure %d", (int)cases[i].f);
		CHECK(m != NULL && m[0] != '\0');
		if (!m)
			continue;
		CHECK(strchr(m, '\n') == NULL);
		CHECK(strstr(m, cases[i].must_say) != NULL);
		for (size_t j = 0; j < i; j++)
			CHECK(strcmp(m, wd_failure_message(cases[j].f)) != 0);
	}
}

/* ---- loading ---- */

static void test_load_ok(void)
{
	struct wd_api api;
	wchar_t dir[MAX_PATH], path[MAX_PATH];
	DWORD err = 1;

	CHECK_EQ(wd_load(&api, &err), WD_OK);
	CHECK_EQ(err, 0);
	CHECK(api.dll != NULL && api.open && api.recv_ex && api.send_ex && api.shutdown &&
	      api.close && api.set_param && api.get_param);
	exe_dir(dir, MAX_PATH);
	CHECK(GetModuleFileNameW(api.dll, path, MAX_PATH) > 0);
	wchar_t *slash = wcsrchr(path, L'\\');
	if (slash)
		*slash = L'\0';
	CHECK(_wcsicmp(path, dir) == 0);

	wd_unload(&api);
	CHECK(api.dll == NULL && api.open == NULL && api.get_param == NULL);
	CHECK(GetModuleHandleW(L"WinDivert.dll") == NULL);
	wd_unload(&api);
}

static void test_load_missing_dll(void)
{
	struct wd_api api;
	DWORD err;

	CHECK_EQ(wd_load_named(&api, L"WinDivertMissing.dll", &err), WD_NO_DLL);
	CHECK_EQ(err, ERROR_MOD_NOT_FOUND);
	CHECK(api.dll == NULL && api.open == NULL);
	CHECK(strstr(wd_failure_message(WD_NO_DLL), "WinDivert.dll") != NULL);
}

static void test_load_incomplete_dll(void)
{
	struct wd_api api;
	DWORD err;

	CHECK_EQ(wd_load_named(&api, L"WinDivertIncomplete.dll", &err), WD_BAD_DLL);
	CHECK_EQ(err, ERROR_PROC_NOT_FOUND);
	CHECK(api.dll == NULL && api.open == NULL && api.set_param == NULL);
	CHECK(GetModuleHandleW(L"WinDivertIncomplete.dll") == NULL);
}

/* A DLL in the current directory or on PATH is never loaded, though plain LoadLibrary finds it. */
static void test_load_ignores_cwd_and_path(void)
{
	wchar_t dir[MAX_PATH], src[MAX_PATH], plant_dir[MAX_PATH], plant[MAX_PATH];
	wchar_t old_cwd[MAX_PATH], *old_path = NULL, *new_path = NULL;
	struct wd_api api;
	DWORD err;

	exe_dir(dir, MAX_PATH);
	_snwprintf(src, MAX_PATH, L"%ls\\WinDivert.dll", dir);
	DWORD n = GetTempPathW(MAX_PATH, plant_dir);
	CHECK(n > 0 && n < MAX_PATH - 40);
	_snwprintf(plant_dir + n, MAX_PATH - n, L"sluice-wd-plant-%lu",
		   (unsigned long)GetCurrentProcessId());
	_snwprintf(plant, MAX_PATH, L"%ls\\WinDivertPlanted.dll", plant_dir);
	CHECK(CreateDirectoryW(plant_dir, NULL));
	CHECK(CopyFileW(src, plant, FALSE));
	CHECK(GetCurrentDirectoryW(MAX_PATH, old_cwd) > 0);

	DWORD path_len = GetEnvironmentVariableW(L"PATH", NULL, 0);
	old_path = calloc(path_len + 1, sizeof *old_path);
	new_path = calloc(path_len + MAX_PATH + 2, sizeof *new_path);
	if (!old_path || !new_path)
		goto out;
	GetEnvironmentVariableW(L"PATH", old_path, path_len + 1);
	_snwprintf(new_path, path_len + MAX_PATH + 2, L"%ls;%ls", plant_dir, old_path);
	CHECK(SetEnvironmentVariableW(L"PATH", new_path));
	CHECK(SetCurrentDirectoryW(plant_dir));

	HMODULE control = LoadLibraryW(L"WinDivertPlanted.dll");
	CHECK(control != NULL);
	if (control)
		FreeLibrary(control);
	CHECK(GetModuleHandleW(L"WinDivertPlanted.dll") == NULL);

	CHECK_EQ(wd_load_named(&api, L"WinDivertPlanted.dll", &err), WD_NO_DLL);
	CHECK_EQ(err, ERROR_MOD_NOT_FOUND);
	CHECK(api.dll == NULL);
	wd_unload(&api);

	SetCurrentDirectoryW(old_cwd);
	SetEnvironmentVariableW(L"PATH", old_path);
out:
	free(old_path);
	free(new_path);
	CHECK(DeleteFileW(plant));
	CHECK(RemoveDirectoryW(plant_dir));
}

/* ---- opening ---- */

static void test_open_failures(void)
{
	static const struct {
		const char *name;
		const char *script;
		enum wd_layer layer;
		uint64_t flags;
		enum wd_failure want;
		DWORD want_error;
		int want_opened; /* handles the fake opened (and wd_open closed again) */
	} cases[] = {
		{"not admin", "open-fail 5\n", WD_LAYER_NETWORK, 0, WD_NOT_ADMIN, 5, 0},
		{"not admin, NULL handle", "open-fail 5 null\n", WD_LAYER_NETWORK, 0, WD_NOT_ADMIN,
		 5, 0},
		{"no driver", "open-fail 2\n", WD_LAYER_NETWORK, 0, WD_NO_DRIVER, 2, 0},
		{"no service", "open-fail 1060\n", WD_LAYER_NETWORK, 0, WD_NO_DRIVER, 1060, 0},
		{"unsigned driver", "handle network fail=577\n", WD_LAYER_NETWORK, 0,
		 WD_DRIVER_REFUSED, 577, 0},
		{"driver blocked, NULL handle", "handle socket fail=1275 null\n", WD_LAYER_SOCKET,
		 WD_FLAG_SNIFF | WD_FLAG_RECV_ONLY, WD_DRIVER_REFUSED, 1275, 0},
		{"socket layer needs RECV_ONLY", "", WD_LAYER_SOCKET, WD_FLAG_SNIFF,
		 WD_BAD_ARGUMENT, 87, 0},
		{"sniff and drop", "", WD_LAYER_NETWORK, WD_FLAG_SNIFF | WD_FLAG_DROP,
		 WD_BAD_ARGUMENT, 87, 0},
		{"driver version 1", "version 1 9\n", WD_LAYER_NETWORK, 0, WD_BAD_VERSION, 0, 1},
		{"driver version 3", "version 3\n", WD_LAYER_NETWORK, 0, WD_BAD_VERSION, 0, 1},
		{"script error", "handle network\nbogus\n", WD_LAYER_NETWORK, 0, WD_OTHER,
		 ERROR_INVALID_DATA, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct wd_api api;
		struct fake fake;
		enum wd_failure failure = WD_OK;
		DWORD err = 0;

		check_case("%s", cases[i].name);
		use_script(cases[i].script);
		if (!load_fake(&api, &fake))
			continue;
		HANDLE h = wd_open(&api, "tcp", cases[i].layer, 0, cases[i].flags, &failure, &err);
		CHECK(h == NULL);
		CHECK_EQ(failure, cases[i].want);
		CHECK_EQ(err, cases[i].want_error);
		CHECK_EQ(fake.open_count(), cases[i].want_opened);
		struct fake_wd_open_info info;
		if (fake.opened(0, &info) == 0)
			CHECK_EQ(info.closed, 1);
		wd_unload(&api);
	}
}

static void test_script_errors(void)
{
	static const struct {
		const char *script;
		const char *must_say;
	} cases[] = {
		{"bogus\n", ":1: unknown directive"},
		{"# comment\n\nhandle network\npacket out hex 4\n", ":4: `hex` needs an even"},
		{"handle network\npacket out hex 45zz\n", ":2: bad hex digit"},
		{"handle socket\npacket hex 4500\n", ":2: `packet` outside a network"},
		{"handle network\nconnect pid=1\n", ":2: `connect` belongs in a socket block"},
		{"connect pid=1\n", ":1: an item before any `handle`"},
		{"handle socket\nconnect local=10.0.0.1\n", "bad endpoint"},
		{"handle socket\nconnect local=[10.0.0.1]:1\n", "bad address"},
		{"handle socket\nconnect local=10.0.0.1:65536\n", "bad port"},
		{"handle socket\nconnect local=10.0.0.1:1 remote=[::1]:2\n", "different families"},
		{"handle socket\nconnect pid=-1\n", "bad pid"},
		{"handle flow\nclose pid=1\n", "socket block"},
		{"handle cable\n", "`handle LAYER`"},
		{"version 2 x\n", "bad minor version"},
		{"handle network\nwait\n", "takes one NAME"},
		{"handle network\npacket hex 45 \\\n 00 \\\r\n 00\nbogus\n", ":5: unknown directive"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct wd_api api;
		struct fake fake;
		enum wd_failure failure;
		DWORD err;

		check_case("%s", cases[i].script);
		use_script(cases[i].script);
		if (!load_fake(&api, &fake))
			continue;
		CHECK(wd_open(&api, "true", WD_LAYER_NETWORK, 0, 0, &failure, &err) == NULL);
		CHECK_EQ(err, ERROR_INVALID_DATA);
		const char *msg = fake.script_error();
		if (!strstr(msg, cases[i].must_say))
			check_fail(__FILE__, __LINE__, "script error \"%s\" lacks \"%s\"", msg,
				   cases[i].must_say);
		wd_unload(&api);
	}
}

static void test_open_records_and_params(void)
{
	struct wd_api api;
	struct fake fake;
	struct fake_wd_open_info info;
	enum wd_failure failure;
	DWORD err;
	uint64_t v = 0;

	use_script(NULL);
	if (!load_fake(&api, &fake))
		return;
	const char *filter = "(tcp or udp) and (event == CONNECT or event == CLOSE)";
	HANDLE h = wd_open(&api, filter, WD_LAYER_SOCKET, 1041, WD_FLAG_SNIFF | WD_FLAG_RECV_ONLY,
			   &failure, &err);
	CHECK(h != NULL && h != INVALID_HANDLE_VALUE);
	CHECK_EQ(failure, WD_OK);
	CHECK_EQ(fake.open_count(), 1);
	CHECK_EQ(fake.opened(0, &info), 0);
	CHECK_STR_EQ(info.filter, filter);
	CHECK_EQ(info.layer, WD_LAYER_SOCKET);
	CHECK_EQ(info.priority, 1041);
	CHECK_EQ(info.flags, WD_FLAG_SNIFF | WD_FLAG_RECV_ONLY);

	CHECK(api.get_param(h, WD_PARAM_VERSION_MINOR, &v));
	CHECK_EQ(v, 2);
	CHECK(api.get_param(h, WD_PARAM_QUEUE_LENGTH, &v));
	CHECK_EQ(v, 4096);
	CHECK(api.set_param(h, WD_PARAM_QUEUE_LENGTH, WD_QUEUE_LENGTH_MAX));
	CHECK(api.set_param(h, WD_PARAM_QUEUE_TIME, WD_QUEUE_TIME_MIN));
	CHECK(api.set_param(h, WD_PARAM_QUEUE_SIZE, WD_QUEUE_SIZE_MAX));
	CHECK(!api.set_param(h, WD_PARAM_QUEUE_LENGTH, WD_QUEUE_LENGTH_MAX + 1));
	CHECK_EQ(GetLastError(), ERROR_INVALID_PARAMETER);
	CHECK(!api.set_param(h, WD_PARAM_VERSION_MAJOR, 2));
	CHECK(api.get_param(h, WD_PARAM_QUEUE_LENGTH, &v));
	CHECK_EQ(v, WD_QUEUE_LENGTH_MAX);

	CHECK(api.shutdown(h, WD_SHUTDOWN_BOTH));
	CHECK(api.close(h));
	CHECK(!api.close(h));
	CHECK_EQ(GetLastError(), ERROR_INVALID_HANDLE);
	CHECK_EQ(fake.opened(0, &info), 0);
	CHECK_EQ(info.shutdown_how, WD_SHUTDOWN_BOTH);
	CHECK_EQ(info.closed, 1);
	CHECK_EQ(info.queue_length, WD_QUEUE_LENGTH_MAX);
	CHECK_EQ(info.queue_time, WD_QUEUE_TIME_MIN);
	CHECK_EQ(info.queue_size, WD_QUEUE_SIZE_MAX);
	wd_unload(&api);
}

/* ---- receiving and sending ---- */

static void test_recv_and_send_packet(void)
{
	struct wd_api api;
	struct fake fake;
	char script[512];
	static uint8_t buf[WD_MTU_MAX];
	struct wd_address a;
	unsigned char logged_addr[80];
	uint8_t logged[64];
	UINT len = 0, alen = sizeof a, sent = 0;
	int handle = -1;

	snprintf(script, sizeof script,
		 "handle network\n"
		 "packet out if=7 sub=3 ts=12345 hex %s \\\r\n"
		 "    %s\n",
		 hex(syn4, 20), hex(syn4 + 20, 20));
	use_script(script);
	if (!load_fake(&api, &fake))
		return;
	HANDLE h = open_ok(&api, WD_LAYER_NETWORK, 0);

	CHECK(api.recv_ex(h, buf, sizeof buf, &len, 0, &a, &alen, NULL));
	CHECK_EQ(len, sizeof syn4);
	CHECK_BYTES_EQ(buf, syn4, sizeof syn4);
	CHECK_EQ(alen, 80);
	CHECK_EQ(a.timestamp, 12345);
	CHECK_EQ(a.layer, WD_LAYER_NETWORK);
	CHECK_EQ(a.event, WD_EVENT_NETWORK_PACKET);
	CHECK_EQ(a.flags, WD_ADDR_OUTBOUND);
	CHECK_EQ(a.u.network.if_idx, 7);
	CHECK_EQ(a.u.network.sub_if_idx, 3);

	CHECK(api.send_ex(h, buf, len, &sent, 0, &a, sizeof a, NULL));
	CHECK_EQ(sent, sizeof syn4);
	CHECK_EQ(fake.sent_count(), 1);
	CHECK_EQ(fake.sent(0, logged, sizeof logged, logged_addr, &handle), (int)sizeof syn4);
	CHECK_BYTES_EQ(logged, syn4, sizeof syn4);
	CHECK_BYTES_EQ(logged_addr, &a, sizeof a);
	CHECK_EQ(handle, 0);
	CHECK_EQ(fake.sent(1, NULL, 0, NULL, NULL), -1);

	CHECK(api.shutdown(h, WD_SHUTDOWN_RECV));
	CHECK(!api.recv_ex(h, buf, sizeof buf, &len, 0, &a, &alen, NULL));
	CHECK_EQ(GetLastError(), ERROR_NO_DATA);
	CHECK(api.close(h));
	wd_unload(&api);
}

static void test_recv_batches(void)
{
	struct wd_api api;
	struct fake fake;
	char script[1024];
	static uint8_t buf[WD_MTU_MAX];
	struct wd_address a[8];
	UINT len, alen;

	snprintf(script, sizeof script,
		 "handle network\n"
		 "packet out hex %s\n"
		 "packet out hex %s\n"
		 "packet in loopback tcpcsum if=1 hex %s\n"
		 "error 31\n"
		 "packet out hex %s\n",
		 hex(syn4, sizeof syn4), hex(syn6, sizeof syn6), hex(syn4, sizeof syn4),
		 hex(syn6, sizeof syn6));
	use_script(script);
	if (!load_fake(&api, &fake))
		return;
	HANDLE h = open_ok(&api, WD_LAYER_NETWORK, WD_FLAG_SNIFF);

	check_case("two addresses: two packets");
	alen = 2 * sizeof a[0];
	CHECK(api.recv_ex(h, buf, sizeof buf, &len, 0, a, &alen, NULL));
	CHECK_EQ(len, sizeof syn4 + sizeof syn6);
	CHECK_EQ(alen, 2 * sizeof a[0]);
	CHECK_BYTES_EQ(buf, syn4, sizeof syn4);
	CHECK_BYTES_EQ(buf + sizeof syn4, syn6, sizeof syn6);
	CHECK_EQ(a[0].flags, WD_ADDR_SNIFFED | WD_ADDR_OUTBOUND);
	CHECK_EQ(a[1].flags, WD_ADDR_SNIFFED | WD_ADDR_OUTBOUND | WD_ADDR_IPV6);
	CHECK(a[0].timestamp != 0);

	check_case("an error ends a batch");
	alen = sizeof a;
	CHECK(api.recv_ex(h, buf, sizeof buf, &len, 0, a, &alen, NULL));
	CHECK_EQ(len, sizeof syn4);
	CHECK_EQ(alen, sizeof a[0]);
	CHECK_EQ(a[0].flags, WD_ADDR_SNIFFED | WD_ADDR_LOOPBACK | WD_ADDR_TCP_CHECKSUM);
	CHECK_EQ(a[0].u.network.if_idx, 1);

	check_case("the scripted error");
	CHECK(!api.recv_ex(h, buf, sizeof buf, &len, 0, a, &alen, NULL));
	CHECK_EQ(GetLastError(), 31);

	check_case("a packet too long for the buffer is cut and lost");
	memset(buf, 0, 16);
	alen = sizeof a;
	CHECK(!api.recv_ex(h, buf, 10, &len, 0, a, &alen, NULL));
	CHECK_EQ(GetLastError(), ERROR_INSUFFICIENT_BUFFER);
	CHECK_BYTES_EQ(buf, syn6, 10);
	CHECK_EQ(buf[10], 0);
	CHECK_EQ(alen, sizeof a[0]);
	CHECK_EQ(a[0].flags & WD_ADDR_IPV6, WD_ADDR_IPV6);

	check_case("bad arguments");
	alen = 79;
	CHECK(!api.recv_ex(h, buf, sizeof buf, &len, 0, a, &alen, NULL));
	CHECK_EQ(GetLastError(), ERROR_INVALID_PARAMETER);
	alen = sizeof a;
	CHECK(!api.recv_ex(h, buf, sizeof buf, &len, 1, a, &alen, NULL));
	CHECK_EQ(GetLastError(), ERROR_INVALID_PARAMETER);

	check_case("drained after shutdown");
	CHECK(api.shutdown(h, WD_SHUTDOWN_RECV));
	CHECK(!api.recv_ex(h, buf, sizeof buf, &len, 0, a, &alen, NULL));
	CHECK_EQ(GetLastError(), ERROR_NO_DATA);
	CHECK(api.close(h));
	wd_unload(&api);
}

static void test_send_checks(void)
{
	struct wd_api api;
	struct fake fake;
	uint8_t two[sizeof syn4 + sizeof syn6], bad[40] = {0};
	struct wd_address a[2];
	UINT sent = 0, len, alen = sizeof a[0];

	use_script(NULL);
	if (!load_fake(&api, &fake))
		return;
	HANDLE h = open_ok(&api, WD_LAYER_NETWORK, 0);
	HANDLE ro = open_ok(&api, WD_LAYER_NETWORK, WD_FLAG_RECV_ONLY);
	HANDLE wo = open_ok(&api, WD_LAYER_NETWORK, WD_FLAG_SEND_ONLY);
	memset(a, 0, sizeof a);
	a[0].flags = WD_ADDR_OUTBOUND;
	a[1].u.network.if_idx = 9;
	memcpy(two, syn4, sizeof syn4);
	memcpy(two + sizeof syn4, syn6, sizeof syn6);

	check_case("a batch of two");
	CHECK(api.send_ex(wo, two, sizeof two, &sent, 0, a, sizeof a, NULL));
	CHECK_EQ(sent, sizeof two);
	CHECK_EQ(fake.sent_count(), 2);
	unsigned char logged_addr[80];
	int handle;
	CHECK_EQ(fake.sent(1, NULL, 0, logged_addr, &handle), (int)sizeof syn6);
	CHECK_EQ(handle, 2);
	CHECK_BYTES_EQ(logged_addr, &a[1], sizeof a[1]);
	CHECK_EQ(fake.wait_sent(2, WAIT_MS), 2);

	check_case("refused");
	CHECK(!api.send_ex(ro, syn4, sizeof syn4, &sent, 0, a, sizeof a[0], NULL));
	CHECK_EQ(GetLastError(), ERROR_INVALID_PARAMETER);
	CHECK(!api.send_ex(h, bad, sizeof bad, &sent, 0, a, sizeof a[0], NULL));
	CHECK_EQ(GetLastError(), ERROR_INVALID_PARAMETER);
	CHECK(!api.send_ex(h, syn4, sizeof syn4 - 1, &sent, 0, a, sizeof a[0], NULL));
	CHECK_EQ(GetLastError(), ERROR_INSUFFICIENT_BUFFER);
	CHECK(!api.send_ex(h, syn4, sizeof syn4, &sent, 0, a, sizeof a, NULL));
	CHECK_EQ(GetLastError(), ERROR_INSUFFICIENT_BUFFER);
	CHECK(!api.send_ex(h, syn4, sizeof syn4, &sent, 0, a, 0, NULL));
	CHECK_EQ(GetLastError(), ERROR_INVALID_PARAMETER);
	CHECK(!api.recv_ex(wo, two, sizeof two, &len, 0, a, &alen, NULL));
	CHECK_EQ(GetLastError(), ERROR_INVALID_PARAMETER);
	CHECK(api.shutdown(h, WD_SHUTDOWN_SEND));
	CHECK(!api.send_ex(h, syn4, sizeof syn4, &sent, 0, a, sizeof a[0], NULL));
	CHECK_EQ(GetLastError(), ERROR_NO_DATA);
	CHECK_EQ(fake.sent_count(), 3); /* the first packet of the short batch went out */

	CHECK(api.close(h));
	CHECK(api.close(ro));
	CHECK(api.close(wo));
	wd_unload(&api);
}

static void test_socket_events(void)
{
	struct wd_api api;
	struct fake fake;
	struct wd_address a[4];
	struct addr got, want;
	UINT len = 1, alen = sizeof a;

	use_script("handle socket\n"
		   "connect pid=4242 proto=tcp local=10.0.0.2:50000 remote=198.51.100.7:443 "
		   "endpoint=77\n"
		   "close pid=4242 proto=udp local=[2001:db8::2]:5353 remote=[2001:db8::53]:53 "
		   "ts=99\n");
	if (!load_fake(&api, &fake))
		return;
	HANDLE h = open_ok(&api, WD_LAYER_SOCKET, WD_FLAG_SNIFF | WD_FLAG_RECV_ONLY);

	CHECK(api.recv_ex(h, NULL, 0, &len, 0, a, &alen, NULL));
	CHECK_EQ(len, 0);
	CHECK_EQ(alen, 2 * sizeof a[0]);

	CHECK_EQ(a[0].layer, WD_LAYER_SOCKET);
	CHECK_EQ(a[0].event, WD_EVENT_SOCKET_CONNECT);
	CHECK_EQ(a[0].flags, WD_ADDR_SNIFFED | WD_ADDR_OUTBOUND);
	CHECK_EQ(a[0].u.socket.process_id, 4242);
	CHECK_EQ(a[0].u.socket.protocol, 6);
	CHECK_EQ(a[0].u.socket.endpoint_id, 77);
	CHECK_EQ(a[0].u.socket.local_port, 50000);
	CHECK_EQ(a[0].u.socket.remote_port, 443);
	wd_socket_addr_decode(a[0].u.socket.local_addr, &got);
	addr_of(&want, "10.0.0.2");
	CHECK(addr_equal(&got, &want));
	wd_socket_addr_decode(a[0].u.socket.remote_addr, &got);
	addr_of(&want, "198.51.100.7");
	CHECK(addr_equal(&got, &want));

	CHECK_EQ(a[1].event, WD_EVENT_SOCKET_CLOSE);
	CHECK_EQ(a[1].flags, WD_ADDR_SNIFFED | WD_ADDR_IPV6);
	CHECK_EQ(a[1].timestamp, 99);
	CHECK_EQ(a[1].u.socket.protocol, 17);
	CHECK_EQ(a[1].u.socket.local_port, 5353);
	CHECK_EQ(a[1].u.socket.remote_port, 53);
	wd_socket_addr_decode(a[1].u.socket.local_addr, &got);
	addr_of(&want, "2001:db8::2");
	CHECK(addr_equal(&got, &want));
	wd_socket_addr_decode(a[1].u.socket.remote_addr, &got);
	addr_of(&want, "2001:db8::53");
	CHECK(addr_equal(&got, &want));

	CHECK(api.shutdown(h, WD_SHUTDOWN_RECV));
	CHECK(api.close(h));
	wd_unload(&api);
}

/* Handles take the blocks of their layer in the order they are opened. */
static void test_blocks_in_open_order(void)
{
	struct wd_api api;
	struct fake fake;
	char script[512];
	static uint8_t buf[WD_MTU_MAX];
	struct wd_address a;
	UINT len = 0, alen = sizeof a;

	snprintf(script, sizeof script,
		 "handle network\npacket hex %s\n"
		 "handle socket\nbind pid=8\n"
		 "handle network\npacket hex %s\n",
		 hex(syn4, sizeof syn4), hex(syn6, sizeof syn6));
	use_script(script);
	if (!load_fake(&api, &fake))
		return;
	HANDLE first = open_ok(&api, WD_LAYER_NETWORK, 0);
	HANDLE second = open_ok(&api, WD_LAYER_NETWORK, 0);
	HANDLE sock = open_ok(&api, WD_LAYER_SOCKET, WD_FLAG_SNIFF | WD_FLAG_RECV_ONLY);
	HANDLE third = open_ok(&api, WD_LAYER_NETWORK, 0);

	CHECK(api.recv_ex(second, buf, sizeof buf, &len, 0, &a, &alen, NULL));
	CHECK_EQ(len, sizeof syn6);
	CHECK(api.recv_ex(first, buf, sizeof buf, &len, 0, &a, &alen, NULL));
	CHECK_EQ(len, sizeof syn4);
	CHECK(api.recv_ex(sock, NULL, 0, &len, 0, &a, &alen, NULL));
	CHECK_EQ(a.event, WD_EVENT_SOCKET_BIND);
	CHECK_EQ(a.u.socket.process_id, 8);
	CHECK(api.shutdown(third, WD_SHUTDOWN_RECV));
	CHECK(!api.recv_ex(third, buf, sizeof buf, &len, 0, &a, &alen, NULL));
	CHECK_EQ(GetLastError(), ERROR_NO_DATA);

	CHECK(api.close(first));
	CHECK(api.close(second));
	CHECK(api.close(sock));
	CHECK(api.close(third));
	wd_unload(&api);
}

struct reader {
	const struct wd_api *api;
	HANDLE h;
	BOOL ok;
	DWORD error;
};

static DWORD WINAPI read_once(void *arg)
{
	struct reader *r = arg;
	static uint8_t buf[WD_MTU_MAX];
	struct wd_address a;
	UINT len, alen = sizeof a;

	r->ok = r->api->recv_ex(r->h, buf, sizeof buf, &len, 0, &a, &alen, NULL);
	r->error = r->ok ? 0 : GetLastError();
	return 0;
}

/* A RecvEx blocked on an empty queue returns ERROR_NO_DATA after Shutdown(RECV) and
 * ERROR_OPERATION_ABORTED when the handle is closed under it. */
static void test_blocked_recv_wakes(void)
{
	static const struct {
		const char *name;
		bool close;
		DWORD want;
	} cases[] = {
		{"shutdown", false, ERROR_NO_DATA},
		{"close", true, ERROR_OPERATION_ABORTED},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct wd_api api;
		struct fake fake;

		check_case("%s", cases[i].name);
		use_script(NULL);
		if (!load_fake(&api, &fake))
			continue;
		struct reader r = {.api = &api, .ok = TRUE};
		r.h = open_ok(&api, WD_LAYER_NETWORK, 0);
		HANDLE t = CreateThread(NULL, 0, read_once, &r, 0, NULL);
		CHECK(t != NULL);
		CHECK_EQ(fake.wait_idle(WAIT_MS), 1);
		if (cases[i].close)
			CHECK(api.close(r.h));
		else
			CHECK(api.shutdown(r.h, WD_SHUTDOWN_RECV));
		CHECK_EQ(WaitForSingleObject(t, WAIT_MS), WAIT_OBJECT_0);
		CloseHandle(t);
		CHECK(!r.ok);
		CHECK_EQ(r.error, cases[i].want);
		if (!cases[i].close)
			CHECK(api.close(r.h));
		CHECK_EQ(fake.reset(), 0);
		wd_unload(&api);
	}
}

/* Overlapped receives: ready data completes at once, otherwise the request stays pending until a
 * `signal` of another handle's script releases a `wait`, or until Shutdown. */
static void test_overlapped_and_ordering(void)
{
	struct wd_api api;
	struct fake fake;
	char script[512];
	static uint8_t buf[WD_MTU_MAX];
	struct wd_address na, sa;
	OVERLAPPED nov = {0}, sov = {0};
	UINT nlen = 0, slen = 0, nalen = sizeof na, salen = sizeof sa;
	DWORD n = 0;

	snprintf(script, sizeof script,
		 "handle socket\n"
		 "connect pid=1 local=10.0.0.2:50000 remote=198.51.100.7:443\n"
		 "signal connect-taken\n"
		 "handle network\n"
		 "wait connect-taken\n"
		 "packet out hex %s\n",
		 hex(syn4, sizeof syn4));
	use_script(script);
	if (!load_fake(&api, &fake))
		return;
	HANDLE sock = open_ok(&api, WD_LAYER_SOCKET, WD_FLAG_SNIFF | WD_FLAG_RECV_ONLY);
	HANDLE net = open_ok(&api, WD_LAYER_NETWORK, 0);
	nov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
	sov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);

	check_case("the SYN waits for the CONNECT");
	CHECK(!api.recv_ex(net, buf, sizeof buf, &nlen, 0, &na, &nalen, &nov));
	CHECK_EQ(GetLastError(), ERROR_IO_PENDING);
	CHECK_EQ(WaitForSingleObject(nov.hEvent, 0), WAIT_TIMEOUT);

	check_case("the CONNECT completes at once");
	CHECK(api.recv_ex(sock, NULL, 0, &slen, 0, &sa, &salen, &sov));
	CHECK_EQ(slen, 0);
	CHECK_EQ(sa.event, WD_EVENT_SOCKET_CONNECT);
	CHECK(GetOverlappedResult(sock, &sov, &n, FALSE));
	CHECK_EQ(WaitForSingleObject(nov.hEvent, 0), WAIT_TIMEOUT);

	check_case("coming back for more releases the SYN");
	CHECK(!api.recv_ex(sock, NULL, 0, &slen, 0, &sa, &salen, &sov));
	CHECK_EQ(GetLastError(), ERROR_IO_PENDING);
	CHECK(GetOverlappedResult(net, &nov, &n, TRUE));
	CHECK_EQ(n, sizeof syn4);
	CHECK_EQ(nalen, sizeof na);
	CHECK_BYTES_EQ(buf, syn4, sizeof syn4);
	CHECK_EQ(na.flags, WD_ADDR_OUTBOUND);

	check_case("shutdown ends the pending CONNECT read");
	CHECK_EQ(WaitForSingleObject(sov.hEvent, 0), WAIT_TIMEOUT);
	CHECK(api.shutdown(sock, WD_SHUTDOWN_RECV));
	CHECK(!GetOverlappedResult(sock, &sov, &n, TRUE));
	CHECK_EQ(GetLastError(), ERROR_NO_DATA);

	check_case("close ends a pending read");
	CHECK(!api.recv_ex(net, buf, sizeof buf, &nlen, 0, &na, &nalen, &nov));
	CHECK_EQ(GetLastError(), ERROR_IO_PENDING);
	CHECK(api.close(net));
	CHECK(!GetOverlappedResult(net, &nov, &n, TRUE));
	CHECK_EQ(GetLastError(), ERROR_OPERATION_ABORTED);

	CHECK(api.close(sock));
	CloseHandle(nov.hEvent);
	CloseHandle(sov.hEvent);
	wd_unload(&api);
}

static const struct check_test tests[] = {
	{"address_layout", test_address_layout},
	{"socket_addr_decode", test_socket_addr_decode},
	{"classify_open_error", test_classify_open_error},
	{"failure_messages", test_failure_messages},
	{"load_ok", test_load_ok},
	{"load_missing_dll", test_load_missing_dll},
	{"load_incomplete_dll", test_load_incomplete_dll},
	{"load_ignores_cwd_and_path", test_load_ignores_cwd_and_path},
	{"open_failures", test_open_failures},
	{"script_errors", test_script_errors},
	{"open_records_and_params", test_open_records_and_params},
	{"recv_and_send_packet", test_recv_and_send_packet},
	{"recv_batches", test_recv_batches},
	{"send_checks", test_send_checks},
	{"socket_events", test_socket_events},
	{"blocks_in_open_order", test_blocks_in_open_order},
	{"blocked_recv_wakes", test_blocked_recv_wakes},
	{"overlapped_and_ordering", test_overlapped_and_ordering},
};

int main(int argc, char **argv)
{
	char dir[MAX_PATH];
	DWORD n = GetTempPathA(sizeof dir, dir);

	if (n == 0 || n >= sizeof dir) {
		fprintf(stderr, "no temporary directory\n");
		return 1;
	}
	snprintf(script_path, sizeof script_path, "%ssluice-wd-script-%lu.txt", dir,
		 (unsigned long)GetCurrentProcessId());
	int rc = check_run(tests, sizeof tests / sizeof tests[0], argc, argv);
	DeleteFileA(script_path);
	return rc;
}
