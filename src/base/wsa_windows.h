/* wsa_windows.h — what the Winsock files share (Windows only): start-up and error codes. */
#ifndef SLUICE_BASE_WSA_WINDOWS_H
#define SLUICE_BASE_WSA_WINDOWS_H

/* Starts Winsock 2.2 for the process, once, whichever thread asks first; later calls return
 * the first outcome. Returns 0 or a negative errno (-ENOSYS when Winsock is unusable). Never
 * undone: the process keeps Winsock until it exits. */
int wsa_start(void);

/* The errno value (positive) that stands for a Winsock error code (WSAGetLastError()):
 * WSAEWOULDBLOCK is EAGAIN, WSAESHUTDOWN is EPIPE, codes without an equivalent are EIO. */
int wsa_errno(int wsa_error);

/* -wsa_errno(WSAGetLastError()): the negative errno of the last failed Winsock call. */
int wsa_last_error(void);

#endif
