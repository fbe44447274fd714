/* fake_windivert.h — the test-only exports of the fake WinDivert.dll (fake_windivert.c).
 *
 * A test loads the fake like sluice loads the real DLL (wd_load) and finds these functions with
 * GetProcAddress on the same module, or links the fake's import library. Handles are numbered in
 * the order WinDivertOpen succeeded since the DLL was loaded or reset (0, 1, ...).
 */
#ifndef SLUICE_TESTS_FAKE_WINDIVERT_H
#define SLUICE_TESTS_FAKE_WINDIVERT_H

#include <stdint.h>

#define FAKE_WD_FILTER_MAX 512

/* What a successful WinDivertOpen was given, and what became of the handle. */
struct fake_wd_open_info {
	char filter[FAKE_WD_FILTER_MAX]; /* truncated if longer */
	int layer;
	int16_t priority;
	uint64_t flags;
	int shutdown_how; /* WinDivertShutdown bits received so far (1 recv, 2 send) */
	int closed;       /* 1 once WinDivertClose was called */
	uint64_t queue_length, queue_time, queue_size; /* current WinDivertSetParam values */
};

/* Forgets the script, the handles and the sent log; the next WinDivertOpen reads the script
 * again. Returns 0, or -1 (nothing done) while a handle is open or a RecvEx on a closed handle
 * has not returned yet. */
int FakeWinDivertReset(void);

/* The last script error ("FILE:LINE: message"), or "" when the script was read without error.
 * A script error makes WinDivertOpen fail with ERROR_INVALID_DATA (13). */
const char *FakeWinDivertScriptError(void);

/* Number of successful WinDivertOpen calls; details of the i-th (0 or -1 if no such handle). */
int FakeWinDivertOpenCount(void);
int FakeWinDivertOpened(int i, struct fake_wd_open_info *out);

/* Number of packets WinDivertSendEx accepted. FakeWinDivertSent copies the i-th packet (at most
 * cap bytes) into buf, its 80-byte address into addr and the handle's number into *handle (each
 * may be NULL), and returns the packet's full length, or -1 if there is no i-th packet. */
int FakeWinDivertSentCount(void);
int FakeWinDivertSent(int i, void *buf, unsigned cap, unsigned char *addr, int *handle);

/* Waits until at least n packets were sent or timeout_ms passed; returns the count then. */
int FakeWinDivertWaitSent(int n, unsigned timeout_ms);

/* Waits until a handle is open and every open handle that can receive (not SEND_ONLY, not shut
 * down for receiving) has a RecvEx waiting with nothing left to give: the code under test took
 * everything and came back for more. Returns 1, or 0 after timeout_ms. */
int FakeWinDivertWaitIdle(unsigned timeout_ms);

#endif
