#!/usr/bin/env bash
# demo.sh — `make demo`: one sluice session in a private test world, its allowed and denied
# connections as the user sees them, then its audit trail.
#   usage: scripts/demo.sh [PATH/TO/sluice]        (root: it creates network namespaces)
#
# Nothing here touches this machine's own network: the world is two namespaces of its own
# (tests/e2e/world.sh draws them), on documentation addresses, removed again on exit.
set -e

sluice=${1:-build/sluice}
if [ ! -x "$sluice" ]; then
	echo "demo.sh: no sluice at $sluice (run make first)" >&2
	exit 1
fi
sluice=$(cd "$(dirname "$sluice")" && pwd)/$(basename "$sluice")
if [ "$(id -u)" != 0 ]; then
	echo "demo.sh: the demo builds network namespaces, which needs root (sudo make demo)" >&2
	exit 1
fi
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=SCRIPTDIR/../tests/e2e/world.sh
. "$root/tests/e2e/world.sh"

tmp=$(mktemp -d "/tmp/sluice-demo.$$.XXXXXX")
trap 'world_down; rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bold=""
plain=""
if [ -t 1 ]; then
	bold=$(printf '\033[1m')
	plain=$(printf '\033[0m')
fi
say() {
	printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"
}

say "Building a private test world (two network namespaces joined by a veth pair)"
cat <<'EOF'
    sluice-world-PID: where sluice runs; its resolver is 203.0.113.53
    sluice-srv-PID:   dnsmasq (203.0.113.53) and web servers for
                      a.test 198.51.100.10, b.test 198.51.100.20, c.wild.test 198.51.100.30,
                      evil.test 198.51.100.66 (HTTP :80, HTTPS :443, UDP echo :7)
EOF
world_up "$tmp" 1

cat >"$tmp/demo.policy" <<'EOF'
# demo.policy — what the session may reach; the first matching rule decides
allow domain a.test port 80,443   # the one service this job needs
allow domain *.wild.test port 80  # any name below wild.test
deny  domain evil.test            # never even resolved
default deny                      # everything else
EOF
say "The policy (sluice check validates it the way sluice run reads it)"
cat -n "$tmp/demo.policy"
(cd "$tmp" && "$sluice" check demo.policy)

cat >"$tmp/session.sh" <<'EOF'
step() { printf '\n  $ %s\n' "$1"; sh -c "$1" 2>&1 | sed 's/^/    /'; }
step 'curl -s --max-time 5 http://a.test/'
step 'curl -s --max-time 5 --cacert ca.pem https://a.test/'
step 'curl -s --max-time 5 http://c.wild.test/'
step 'curl -sS --max-time 5 http://b.test/'
step 'curl -sS --max-time 5 http://198.51.100.20/'
step 'dig evil.test | grep -o "status: [A-Z]*"'
step 'echo ping | socat -t 1 - UDP4:198.51.100.20:7 | grep . || echo "(no reply)"'
printf '\n  $ exit 3\n'
exit 3
EOF
say "A session: sluice run --policy demo.policy --audit trail.jsonl -- sh session.sh"
cat <<'EOF'
    Each $ command below runs inside the session, its output indented. Allowed connections
    reach the servers; denied ones fail at once, and sluice itself says why on stderr: the
    lines that start with "sluice: denied". (curl asks for both A and AAAA records, hence two
    lines for b.test.)
EOF
rc=0
(cd "$tmp" && in_world "$sluice" run --policy demo.policy --audit trail.jsonl -- \
	sh session.sh) || rc=$?
echo
echo "  sluice exited with $rc: the command's own status"

say "The audit trail (trail.jsonl): every decision, one event a line"
jq -r '[.event, (.decision // ""),
	(if .event == "dns" then "\(.qname) \(.qtype)" else (.domain // "") end),
	(if .dst then "\(.dst):\(.dport)" else "" end),
	(if .event == "close" then "\(.bytes_out) bytes out, \(.bytes_in) in"
	 elif .event == "session_start" then (.command | join(" "))
	 elif .event == "session_end" then "exit \(.exit)"
	 else (.rule // "") end)] | @tsv' "$tmp/trail.jsonl" |
	awk -F '\t' '{ printf "    %-14s %-6s %-16s %-20s %s\n", $1, $2, $3, $4, $5 }'

say "The same trail as sluice wrote it (pretty-printed with jq)"
jq . "$tmp/trail.jsonl"

say "Cleaning up: servers stopped, namespaces removed"
