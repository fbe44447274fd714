/* child_helper.c — the process test_session_windows runs as COMMAND (built with -municode).
 *
 *   exit N                          exits with code N (decimal or 0x hex, full 32 bits)
 *   sleep MS                        prints "ready PID\n" (its own pid: it is running, its start
 *                                   is over), sleeps MS milliseconds, exits 0
 *   spawn-grandchild-then-exit N    starts itself as `sleep 0`, prints "grandchild PID\n",
 *                                   waits for it, exits N
 *   spawn-grandchild-then-sleep MS  starts itself as `sleep MS`, prints "grandchild PID\n",
 *                                   sleeps MS, exits 0
 *   spawn-grandchild-then-read N    starts itself as `sleep 600000`, prints "grandchild PID\n",
 *                                   reads one byte from stdin, exits N
 *   print-args ARG...               prints "argc N\n", then "arg HEX\n" per ARG (its UTF-8 bytes)
 *   set-event VALUE                 SetEvent((HANDLE)VALUE): if the parent's inheritable event
 *                                   was inherited, the parent sees it set; exits 0
 *   token                           prints "privileges N admin A\n": how many privileges its
 *                                   token holds, and whether the Administrators group grants
 *                                   it anything (1) or not (0); exits 0
 *
 * Output goes through WriteFile, byte for byte (no text-mode line endings); the grandchild
 * writes to the same stdout. Exits 100 on bad usage or a failed call.
 */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#define HELPER_FAILED 100

static void put(const char *text)
{
	DWORD done;

	WriteFile(GetStdHandle(STD_OUTPUT_HANDLE), text, (DWORD)strlen(text), &done, NULL);
}

static bool number(const wchar_t *s, unsigned long long *out)
{
	wchar_t *end;

	if (!s || !*s)
		return false;
	*out = wcstoull(s, &end, 0);
	return *end == L'\0';
}

static int print_args(int argc, wchar_t **argv)
{
	char line[64];

	snprintf(line, sizeof line, "argc %d\n", argc - 2);
	put(line);
	for (int i = 2; i < argc; i++) {
		int n = WideCharToMultiByte(CP_UTF8, 0, argv[i], -1, NULL, 0, NULL, NULL);
		char *utf8 = n > 0 ? malloc((size_t)n) : NULL;
		char *hex = n > 0 ? malloc(2 * (size_t)n + 6) : NULL;
		size_t pos;

		if (!utf8 || !hex
		    || !WideCharToMultiByte(CP_UTF8, 0, argv[i], -1, utf8, n, NULL, NULL))
			return HELPER_FAILED;
		pos = (size_t)sprintf(hex, "arg ");
		for (int k = 0; k < n - 1; k++)
			pos += (size_t)sprintf(hex + pos, "%02x", (unsigned char)utf8[k]);
		sprintf(hex + pos, "\n");
		put(hex);
		free(utf8);
		free(hex);
	}
	return 0;
}

/* Starts this program again as `sleep ms`, with the same stdout and stderr. */
static HANDLE spawn_grandchild(unsigned long long ms)
{
	wchar_t self[MAX_PATH], cmdline[MAX_PATH + 64];
	STARTUPINFOW si;
	PROCESS_INFORMATION pi;
	char line[64];

	if (!GetModuleFileNameW(NULL, self, MAX_PATH)) {
		fprintf(stderr, "child_helper: GetModuleFileNameW: error %lu\n", GetLastError());
		return NULL;
	}
	swprintf(cmdline, sizeof cmdline / sizeof cmdline[0], L"\"%ls\" sleep %llu", self, ms);
	memset(&si, 0, sizeof si);
	si.cb = sizeof si;
	si.dwFlags = STARTF_USESTDHANDLES;
	si.hStdOutput = GetStdHandle(STD_OUTPUT_HANDLE);
	si.hStdError = GetStdHandle(STD_ERROR_HANDLE);
	if (!CreateProcessW(self, cmdline, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi)) {
		fprintf(stderr, "child_helper: CreateProcessW: error %lu\n", GetLastError());
		return NULL;
	}
	CloseHandle(pi.hThread);
	snprintf(line, sizeof line, "grandchild %lu\n", (unsigned long)pi.dwProcessId);
	put(line);
	return pi.hProcess;
}

static int print_token(void)
{
	HANDLE token;
	DWORD size = 0, sid_len = SECURITY_MAX_SID_SIZE;
	BYTE sid[SECURITY_MAX_SID_SIZE];
	BOOL admin = FALSE;
	TOKEN_PRIVILEGES *privs;
	char line[64];

	if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &token))
		return HELPER_FAILED;
	GetTokenInformation(token, TokenPrivileges, NULL, 0, &size);
	privs = size ? malloc(size) : NULL;
	if (!privs || !GetTokenInformation(token, TokenPrivileges, privs, size, &size) ||
	    !CreateWellKnownSid(WinBuiltinAdministratorsSid, NULL, sid, &sid_len) ||
	    !CheckTokenMembership(NULL, sid, &admin))
		return HELPER_FAILED;
	snprintf(line, sizeof line, "privileges %lu admin %d\n", (unsigned long)privs->PrivilegeCount,
		 admin ? 1 : 0);
	put(line);
	free(privs);
	CloseHandle(token);
	return 0;
}

int wmain(int argc, wchar_t **argv); /* the -municode entry point; mingw declares none */

int wmain(int argc, wchar_t **argv)
{
	unsigned long long n = 0;
	HANDLE h;

	if (argc >= 2 && wcscmp(argv[1], L"print-args") == 0)
		return print_args(argc, argv);
	if (argc == 2 && wcscmp(argv[1], L"token") == 0)
		return print_token();
	if (argc != 3 || !number(argv[2], &n))
		return HELPER_FAILED;
	if (wcscmp(argv[1], L"exit") == 0)
		ExitProcess((UINT)n);
	if (wcscmp(argv[1], L"sleep") == 0) {
		char line[64];

		snprintf(line, sizeof line, "ready %lu\n", (unsigned long)GetCurrentProcessId());
		put(line);
		Sleep((DWORD)n);
		return 0;
	}
	if (wcscmp(argv[1], L"spawn-grandchild-then-exit") == 0) {
		h = spawn_grandchild(0);
		if (!h || WaitForSingleObject(h, INFINITE) != WAIT_OBJECT_0)
			return HELPER_FAILED;
		ExitProcess((UINT)n);
	}
	if (wcscmp(argv[1], L"spawn-grandchild-then-sleep") == 0) {
		if (!spawn_grandchild(n))
			return HELPER_FAILED;
		Sleep((DWORD)n);
		return 0;
	}
	if (wcscmp(argv[1], L"spawn-grandchild-then-read") == 0) {
		char byte;
		DWORD got;

		if (!spawn_grandchild(600000))
			return HELPER_FAILED;
		ReadFile(GetStdHandle(STD_INPUT_HANDLE), &byte, 1, &got, NULL);
		ExitProcess((UINT)n);
	}
	if (wcscmp(argv[1], L"set-event") == 0) {
		SetEvent((HANDLE)(uintptr_t)n); /* fails harmlessly if the value is no event here */
		return 0;
	}
	return HELPER_FAILED;
}
