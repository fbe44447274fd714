#!/usr/bin/env bash
# windows.sh — the Windows build of sluice run through an emulator (Wine): every check of run.sh,
# then `sluice run` against the test double WinDivert.dll built beside sluice.exe (the real
# driver cannot run here): COMMAND's exit status passes through; each way WinDivert can be
# missing or refuse gives one line and exit 125.
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

# One check of `sluice run`: NAME, the status wanted, a text its output must contain ("" for
# none), then the command (its environment included).
check_run() {
	local name=$1 want_status=$2 want_text=$3 out rc
	shift 3
	out=$("$@" 2>&1)
	rc=$?
	if [ "$rc" -ne "$want_status" ] ||
		{ [ -n "$want_text" ] && ! grep -qF -- "$want_text" <<<"$out"; }; then
		echo "FAIL $name: exit $rc, want $want_status${want_text:+ and '$want_text'}"
		echo "$out" | sed 's/^/    /'
		status=1
	else
		echo "ok   $name"
	fi
}

winpath() {
	winepath -w "$1" 2>/dev/null
}

child=$(winpath "$(dirname "$exe")/session_child_helper.exe")
: >"$tmp/empty.script"
printf 'open-fail 5\n' >"$tmp/denied.script"
mkdir -p "$tmp/nodll"
cp "$exe" "$tmp/nodll/sluice.exe"

check_run "run: COMMAND's exit status passes through" 3 "" \
	env FAKE_WINDIVERT_SCRIPT="$(winpath "$tmp/empty.script")" \
	"$tmp/sluice" run --quiet -- "$child" exit 3
check_run "run: exit 0 passes through" 0 "" \
	env FAKE_WINDIVERT_SCRIPT="$(winpath "$tmp/empty.script")" \
	"$tmp/sluice" run --quiet -- "$child" exit 0
check_run "run: not administrator -> 125 and what to do" 125 "dministrator" \
	env FAKE_WINDIVERT_SCRIPT="$(winpath "$tmp/denied.script")" \
	"$tmp/sluice" run -- "$child" exit 0
check_run "run: no WinDivert.dll -> 125 and its name" 125 "WinDivert.dll was not found" \
	"$emulator" "$tmp/nodll/sluice.exe" run -- "$child" exit 0
check_run "run: --mode netns on Windows -> 125" 125 "needs Linux" \
	"$tmp/sluice" run --mode netns -- "$child" exit 0
# Arguments reach COMMAND exactly, as UTF-8 (sluice reads its own command line as UTF-16, not
# in the ANSI code page): a space, an empty argument, a quote, and a non-ASCII letter.
out=$(env LC_ALL=C.UTF-8 FAKE_WINDIVERT_SCRIPT="$(winpath "$tmp/empty.script")" \
	"$tmp/sluice" run --quiet -- "$child" print-args "a b" "" 'q"x' "é" 2>&1 | tr -d '\r')
want=$(printf 'argc 4\narg 612062\narg \narg 712278\narg c3a9')
if [ "$out" = "$want" ]; then
	echo "ok   run: arguments reach COMMAND exactly (UTF-8)"
else
	echo "FAIL run: arguments: got"
	echo "$out" | sed 's/^/    /'
	status=1
fi
exit "$status"
