/* main.h — the command line's entry, called by the platform's own main (main_posix.c,
 * main_windows.c) with the arguments as UTF-8. */
#ifndef SLUICE_MAIN_H
#define SLUICE_MAIN_H

/* Runs `sluice ARGS...` (argv[argc] is NULL) and returns the exit status. */
int sluice_main(int argc, char **argv);

#endif
