/* main_posix.c — the program's entry on POSIX systems, whose arguments already are bytes. */
#include "main.h"

int main(int argc, char **argv)
{
	return sluice_main(argc, argv);
}
