/* run_windows.c — `sluice run` on Windows until the WinDivert session is wired in (issue 5). */
#include "session/run.h"

#include "base/log.h"

int session_run(const struct run_options *opts, const struct policy *policy)
{
	(void)opts;
	(void)policy;
	log_error("run on Windows: the windivert backend is not built in yet (issue 5)");
	return LOG_FATAL_STATUS;
}
