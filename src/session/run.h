/* run.h — `sluice run`: a capture, the proxies behind it, COMMAND as a session, the audit trail. */
#ifndef SLUICE_SESSION_RUN_H
#define SLUICE_SESSION_RUN_H

#include "run_options.h"

struct policy;

/* Runs opts->command as a session under `policy` (borrowed) until it ends, and returns the
 * status sluice exits with: COMMAND's exit code, 128+N if it died of signal N, 126/127 if it
 * could not be executed or found, or 125 when sluice itself failed (after one line on stderr).
 * Must be called while the process is single-threaded. */
int session_run(const struct run_options *opts, const struct policy *policy);

#endif
