/* main_windows.c — the program's entry on Windows: the arguments as UTF-8, not the ANSI code
 * page that the C runtime's argv uses, so that any file name or COMMAND argument survives. */
#include <stdio.h>
#include <stdlib.h>

#include <windows.h>
#include <shellapi.h>

#include "main.h"

#define STATUS_FAILED 125

static char *to_utf8(const wchar_t *w)
{
	int n = WideCharToMultiByte(CP_UTF8, 0, w, -1, NULL, 0, NULL, NULL);
	char *s = n > 0 ? malloc((size_t)n) : NULL;

	if (s && WideCharToMultiByte(CP_UTF8, 0, w, -1, s, n, NULL, NULL) != n) {
		free(s);
		s = NULL;
	}
	return s;
}

int main(void)
{
	int argc = 0;
	wchar_t **wargv = CommandLineToArgvW(GetCommandLineW(), &argc);
	char **argv = wargv ? calloc((size_t)argc + 1, sizeof *argv) : NULL;

	for (int i = 0; argv && i < argc; i++) {
		argv[i] = to_utf8(wargv[i]);
		if (!argv[i]) {
			free(argv);
			argv = NULL;
		}
	}
	if (wargv)
		LocalFree(wargv);
	if (!argv) {
		fputs("sluice: cannot read the command line\n", stderr);
		return STATUS_FAILED;
	}
	SetConsoleOutputCP(CP_UTF8);
	return sluice_main(argc, argv); /* argv lives as long as the process */
}
