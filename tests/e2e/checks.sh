# checks.sh — what every e2e suite uses to check and report (sourced, not run).
#
#   check NAME EXPECTED ACTUAL   one line "ok   NAME" or "FAIL NAME" with both values
#   checks_done                  the closing "N passed, N failed"; its status is the suite's
#   fail_kind STATUS             how a client's attempt ended, from curl's (or busybox wget's)
#                                exit status: sluice refuses (divert) or accepts and resets
#                                (netns), and both read "refused-or-reset"
#   oneline                      stdin's lines joined by spaces
#   now_ms                       the wall clock in milliseconds
#   suite_start SCRIPT SLUICE MODE TOOL...
#                                a world suite's arguments and needs: sets $sluice (absolute)
#                                and $mode (default SLUICE_MODE, else netns); exits 2 on bad
#                                usage, 77 (skipped) without root or one of the TOOLs

passed=0
failed=0

check() { # NAME EXPECTED ACTUAL
	if [ "$2" = "$3" ]; then
		passed=$((passed + 1))
		echo "ok   $1"
	else
		failed=$((failed + 1))
		echo "FAIL $1"
		echo "       expected: $2"
		echo "       actual:   $3"
	fi
}

checks_done() {
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
}

fail_kind() {
	case $1 in
	0) echo ok ;;
	7 | 35 | 52 | 56) echo refused-or-reset ;;
	6) echo no-such-name ;;
	28) echo timed-out ;;
	*) echo "exit $1" ;;
	esac
}

oneline() {
	tr '\n' ' ' | sed 's/ $//'
}

now_ms() {
	echo $(($(date +%s%N) / 1000000))
}

suite_start() {
	local script=$1 tool
	sluice=$2
	mode=${3:-${SLUICE_MODE:-netns}}
	shift 3
	if [ -z "$sluice" ] || [ ! -x "$sluice" ]; then
		echo "usage: $script PATH/TO/sluice [netns|divert]" >&2
		exit 2
	fi
	sluice=$(cd "$(dirname "$sluice")" && pwd)/$(basename "$sluice")
	if [ "$(id -u)" != 0 ]; then
		echo "SKIP: needs root (network namespaces)"
		exit 77
	fi
	for tool in "$@"; do
		if ! command -v "$tool" >/dev/null; then
			echo "SKIP: $tool not installed (scripts/deps.sh installs it)"
			exit 77
		fi
	done
}
