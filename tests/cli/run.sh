#!/usr/bin/env bash
# run.sh — the sluice program as a user meets it: exit statuses, messages, --help, check.
#   usage: run.sh PATH/TO/sluice DIR-OF-THIS-SCRIPT
set -u
sluice=$1
dir=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0

# expect NAME WANT_STATUS WANT_TEXT CMD...: runs CMD, compares its status, and looks for
# WANT_TEXT (a fixed string, may be empty) in its combined stdout and stderr.
expect() {
	local name=$1 want_status=$2 want_text=$3
	shift 3
	local out status
	out=$("$@" 2>&1)
	status=$?
	if [ "$status" -ne "$want_status" ]; then
		echo "FAIL $name: exit $status, want $want_status"; echo "$out" | sed 's/^/    /'
		failed=$((failed + 1)); return
	fi
	if [ -n "$want_text" ] && ! grep -qF -- "$want_text" <<<"$out"; then
		echo "FAIL $name: output lacks '$want_text'"; echo "$out" | sed 's/^/    /'
		failed=$((failed + 1)); return
	fi
	echo "ok   $name"
	passed=$((passed + 1))
}

expect version 0 "sluice 0." "$sluice" --version
expect help 0 "sluice run [OPTIONS] -- COMMAND" "$sluice" --help
expect no-arguments 2 "usage:" "$sluice"
expect unknown-command 2 "sluice: unknown command 'frobnicate'" "$sluice" frobnicate

expect check-good 0 "good.policy: ok, 5 rules, default deny" "$sluice" check "$dir/good.policy"
expect check-bad-line 1 "bad.policy:4:" "$sluice" check "$dir/bad.policy"
expect check-missing-file 1 "no-such.policy" "$sluice" check "$tmp/no-such.policy"
expect check-no-file 2 "usage: sluice check FILE" "$sluice" check

"$sluice" policy --default >"$tmp/default.policy"
expect policy-default-prints 0 "default deny" cat "$tmp/default.policy"
expect policy-default-checks 0 "ok," "$sluice" check "$tmp/default.policy"
expect policy-needs-flag 2 "usage: sluice policy --default" "$sluice" policy

expect run-no-command 125 "no COMMAND" "$sluice" run --quiet
expect run-bad-option 125 "unknown option '--bogus'" "$sluice" run --bogus -- true
expect run-bad-policy 125 "bad.policy:4:" "$sluice" run --policy "$dir/bad.policy" -- true

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
