#!/usr/bin/env bash
# windows.sh — the Windows build of sluice run through an emulator (Wine): every check of run.sh,
# then what `sluice run` says while the WinDivert backend is not built in (exit 125).
#   usage: windows.sh EMULATOR PATH/TO/sluice.exe DIR-OF-THIS-SCRIPT
set -u
emulator=$1
exe=$2
dir=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# run.sh runs "$sluice" ARGS: a one-line wrapper puts the emulator in front.
printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$emulator" "$exe" >"$tmp/sluice"
chmod +x "$tmp/sluice"
"$dir/run.sh" "$tmp/sluice" "$dir"
status=$?

out=$("$tmp/sluice" run --quiet -- cmd.exe /c exit 0 2>&1)
run_status=$?
want="sluice: run on Windows: the windivert backend is not built in yet (issue 5)"
if [ "$run_status" -ne 125 ] || ! grep -qF -- "$want" <<<"$out"; then
	echo "FAIL run-not-built-in: exit $run_status, want 125 and '$want'"
	echo "$out" | sed 's/^/    /'
	status=1
else
	echo "ok   run-not-built-in"
fi
exit "$status"
