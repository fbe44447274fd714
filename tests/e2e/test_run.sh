#!/usr/bin/env bash
# test_run.sh — e2e: `sluice run` in a private world: real clients in a session reach real servers
# only as the policy says, every decision is audited, and nothing is left behind.
#
#   ┌─ sluice-world-PID ─────────────────────────┐       ┌─ sluice-srv-PID ───────────────────────┐
#   │ sluice run --policy world.policy           │ veth  │ dnsmasq 203.0.113.53, 2001:db8:2::53   │
#   │ └─ session: curl, dig, socat, sh ...       │──────▶│ HTTP :80, HTTPS :443, UDP echo :7      │
#   │    every flow relayed by sluice, which     │ w0/s0 │ a.test 198.51.100.10, 2001:db8:2::10   │
#   │    dials from 192.0.2.1 / 2001:db8:1::1    │       │ b.test 198.51.100.20, *.wild.test ...  │
#   └────────────────────────────────────────────┘       └────────────────────────────────────────┘
#   (the full map of addresses and services is at the top of world.sh)
#
# Usage: test_run.sh PATH/TO/sluice [netns|divert]     (the mode may also come from SLUICE_MODE)
# Needs root; exits 77 (skipped) otherwise. Every session is bounded by timeout(1).
set -e

sluice=$1
mode=${2:-${SLUICE_MODE:-netns}}
if [ -z "$sluice" ] || [ ! -x "$sluice" ]; then
	echo "usage: $0 PATH/TO/sluice [netns|divert]" >&2
	exit 2
fi
sluice=$(cd "$(dirname "$sluice")" && pwd)/$(basename "$sluice")
if [ "$(id -u)" != 0 ]; then
	echo "SKIP: needs root (network namespaces)"
	exit 77
fi
for tool in ip nft curl dig dnsmasq socat openssl python3 jq timeout pgrep sha256sum; do
	if ! command -v "$tool" >/dev/null; then
		echo "SKIP: $tool not installed (scripts/deps.sh installs it)"
		exit 77
	fi
done

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/world.sh
. "$here/world.sh"

tmp=$(mktemp -d "/tmp/sluice-e2e-run.$$.XXXXXX")
background=()
cleanup() {
	local pid
	for pid in "${background[@]}" $(pgrep -f "^sleep (86|87)$$\$" || true); do
		kill -KILL "$pid" 2>/dev/null || true
	done
	world_down
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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

# How a client's attempt ended, from curl's exit status: the comparisons stay exact while the
# connection may be refused by sluice (divert mode) or accepted and then reset (netns mode).
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

# One session in the world with the suite's policy and mode, at most 60 s. sluice runs in $tmp,
# so rules are labelled world.policy:LINE.
srun() {
	(cd "$tmp" &&
		in_world timeout -k 5 60 "$sluice" run --mode "$mode" --policy world.policy "$@")
}

# Reads FILE's events through a jq filter, one result a line.
audit() { # FILE FILTER
	jq -r "$2" "$1"
}

# The status line of a dig answer ("NOERROR", "NXDOMAIN", ...).
dig_status() {
	sed -n 's/.*status: \([A-Z]*\),.*/\1/p'
}

cat >"$tmp/world.policy" <<'EOF'
# test_run.sh's policy: the suite asserts these line numbers
allow domain a.test port 80-82,443
audit domain deep.wild.test port 80
allow domain *.wild.test port 80,443
allow domain b.test port 443
deny domain b.test
deny domain evil.test
allow cidr 198.51.100.40 port 80
allow cidr 198.51.100.10,2001:db8:2::10 port 7 proto udp
default deny
EOF
ca=$tmp/ca.pem

nft list ruleset >"$tmp/host-nft.before"
ip netns list | awk '{print $1}' | sort >"$tmp/netns.before"

echo "# the world (mode $mode)"
world_up "$tmp"
in_servers nft list ruleset >"$tmp/srv-nft.before"
check "without sluice the world answers" "hello from 198.51.100.10 host=a.test" \
	"$(in_world curl -s -4 --max-time 10 http://a.test/)"
rc=0; srun -- true 2>"$tmp/err" || rc=$?
check "a session runs at all" "0 ''" "$rc '$(cat "$tmp/err")'"
if [ "$rc" != 0 ]; then
	echo "$passed passed, $failed failed (stopped: no session can run in mode $mode)"
	exit 1
fi
session_net=$(srun -- readlink /proc/self/ns/net || true)
world_net=$(in_world readlink /proc/self/ns/net)
check "the session has a network namespace of its own" "net:[N], not $world_net" \
	"$(case $session_net in
		"$world_net") echo "$session_net" ;;
		"net:["*) echo "net:[N], not $world_net" ;;
		*) echo "'$session_net'" ;;
	esac)"

echo "# allowed and denied names"
check "allowed name, http" "hello from 198.51.100.10 host=a.test" \
	"$(srun -- curl -s -4 --max-time 10 http://a.test/ 2>"$tmp/err")"
check "... and nothing on stderr" "" "$(cat "$tmp/err")"
check "allowed name, https (the server sees the SNI)" \
	"hello from 198.51.100.10 host=a.test sni=a.test" \
	"$(srun -- curl -s -4 --max-time 10 --cacert "$ca" https://a.test/)"
check "allowed name over IPv6 (AAAA)" "hello from 2001:db8:2::10 host=a.test" \
	"$(srun -- curl -s -6 --max-time 10 http://a.test/)"
check "allowed name over IPv6, https" "hello from 2001:db8:2::10 host=a.test sni=a.test" \
	"$(srun -- curl -s -6 --max-time 10 --cacert "$ca" https://a.test/)"

rc=0; srun -- curl -s -4 --max-time 5 -o /dev/null http://b.test/ 2>"$tmp/err" || rc=$?
check "denied name: curl fails at once" refused-or-reset "$(fail_kind $rc)"
check "... with one line on stderr" \
	"sluice: denied tcp 198.51.100.20:80 (b.test) by world.policy:6" "$(cat "$tmp/err")"
rc=0; srun --quiet -- curl -s -4 --max-time 5 -o /dev/null http://b.test/ 2>"$tmp/err" || rc=$?
check "denied name with --quiet: fails" refused-or-reset "$(fail_kind $rc)"
check "... silently" "" "$(cat "$tmp/err")"
check "the same name on an allowed port (first match wins)" \
	"hello from 198.51.100.20 host=b.test sni=b.test" \
	"$(srun -- curl -s -4 --max-time 10 --cacert "$ca" https://b.test/)"

echo "# wildcards"
check "*.wild.test allows c.wild.test" "hello from 198.51.100.30 host=c.wild.test" \
	"$(srun -- curl -s -4 --max-time 10 http://c.wild.test/)"
check "*.wild.test allows x.y.wild.test (one label or more)" \
	"hello from 198.51.100.30 host=x.y.wild.test" \
	"$(srun -- curl -s -4 --max-time 10 http://x.y.wild.test/)"
rc=0; srun -- curl -s -4 --max-time 5 http://wild.test/ 2>"$tmp/err" >/dev/null || rc=$?
check "*.wild.test does not match wild.test: the name does not resolve" no-such-name \
	"$(fail_kind $rc)"
check "... one line on stderr" "sluice: denied dns wild.test (A) by default" "$(cat "$tmp/err")"
srun --audit "$tmp/deep.jsonl" -- curl -s -4 --max-time 10 -o /dev/null http://deep.wild.test/ ||
	true
check "an audit rule allows and marks the event" "allow world.policy:3 true" \
	"$(audit "$tmp/deep.jsonl" \
		'select(.event == "connect") | "\(.decision) \(.rule) \(.audit)"')"

echo "# IP literals and names from the connection itself"
check "IP literal with a cidr rule: allowed" "hello from 198.51.100.40 host=198.51.100.40" \
	"$(srun -- curl -s -4 --max-time 10 http://198.51.100.40/)"
rc=0; srun -- curl -s --max-time 5 -o /dev/null http://198.51.100.10/ 2>"$tmp/err" || rc=$?
check "IP literal without a rule (a.test's address): denied" refused-or-reset "$(fail_kind $rc)"
check "... by default, no name" "sluice: denied tcp 198.51.100.10:80 by default" \
	"$(cat "$tmp/err")"
srun --audit "$tmp/sni.jsonl" -- curl -s --max-time 10 --cacert "$ca" \
	--resolve a.test:443:198.51.100.10 https://a.test/ >"$tmp/out" 2>&1 || true
check "no DNS, name from the TLS SNI: allowed" \
	"hello from 198.51.100.10 host=a.test sni=a.test" "$(cat "$tmp/out")"
check "... attributed to the SNI" "a.test sni allow world.policy:2" \
	"$(audit "$tmp/sni.jsonl" \
		'select(.event == "connect") | "\(.domain) \(.domain_src) \(.decision) \(.rule)"')"
srun --audit "$tmp/host.jsonl" -- curl -s --max-time 10 -H 'Host: a.test' \
	http://198.51.100.10/ >"$tmp/out" 2>&1 || true
check "no DNS, name from the HTTP Host header: allowed" "hello from 198.51.100.10 host=a.test" \
	"$(cat "$tmp/out")"
check "... attributed to the Host header" "a.test host allow world.policy:2" \
	"$(audit "$tmp/host.jsonl" \
		'select(.event == "connect") | "\(.domain) \(.domain_src) \(.decision) \(.rule)"')"

echo "# DNS"
check "UDP DNS through the resolver the session asked" 198.51.100.10 \
	"$(srun -- dig +time=2 +tries=1 +short a.test)"
check "TCP DNS" 198.51.100.10 "$(srun -- dig +tcp +time=2 +tries=1 +short a.test)"
check "DNS to an IPv6 resolver, AAAA" 2001:db8:2::10 \
	"$(srun -- dig @2001:db8:2::53 +time=2 +tries=1 +short AAAA a.test)"
marker=marker-$$.wild.test
srun -- sh -c "dig +time=2 +tries=1 evil.test; dig +time=2 +tries=1 +tcp evil.test;
	dig +time=2 +tries=1 +short $marker" >"$tmp/out" 2>"$tmp/err" || true
check "denied name: NXDOMAIN over UDP and TCP" "NXDOMAIN NXDOMAIN" \
	"$(dig_status <"$tmp/out" | oneline)"
line="sluice: denied dns evil.test (A) by world.policy:7"
check "... one stderr line per query" "$line $line" "$(oneline <"$tmp/err")"
check "... then an allowed one in the same session" 198.51.100.30 "$(tail -n 1 "$tmp/out")"
poll_file "$tmp/dnsmasq.log" "query\[A\] $marker" || true
check "the allowed query reached dnsmasq" 1 "$(grep -c "query\[A\] $marker" "$tmp/dnsmasq.log")"
check "the denied one never did" 0 "$(grep -c "evil\.test" "$tmp/dnsmasq.log" || true)"
check "--dns-upstream replaces the resolver asked (here one that never answers)" 198.51.100.10 \
	"$(srun --dns-upstream 2001:db8:2::53 -- dig @203.0.113.54 +time=2 +tries=1 +short a.test)"
check "... which saw the query from sluice" 1 \
	"$(grep -c "query\[A\] a.test from 2001:db8:1::1" "$tmp/dnsmasq.log")"

echo "# UDP other than DNS"
check "UDP denied by default: no echo" "" \
	"$(echo hi | srun -- socat -t 1 - UDP4:198.51.100.20:7 2>"$tmp/err")"
check "... one line on stderr" "sluice: denied udp 198.51.100.20:7 by default" "$(cat "$tmp/err")"
check "UDP allowed by a proto udp rule" "echo hi from 198.51.100.10" \
	"$(echo hi | srun -- socat -t 1 - UDP4:198.51.100.10:7)"
check "... over IPv6 too" "echo hi from 2001:db8:2::10" \
	"$(echo hi | srun -- socat -t 1 - 'UDP6:[2001:db8:2::10]:7')"

echo "# the command's life"
rc=0; srun -- sh -c 'exit 7' || rc=$?
check "exit status passes through" 7 "$rc"
rc=0; srun -- sh -c 'kill -TERM $$' || rc=$?
check "killed by SIGTERM: 128+15" 143 "$rc"
check "stdin passes through" hi "$(echo hi | srun -- cat)"
# shellcheck disable=SC2016 # expanded by the session's shell
(cd "$tmp" && exec ip netns exec "$WORLD_NS" "$sluice" run --mode "$mode" \
	--policy world.policy -- sh -c 'trap "echo got TERM; exit 7" TERM; echo ready; i=0
	while [ $i -lt 400 ]; do sleep 0.05; i=$((i + 1)); done; echo timeout') >"$tmp/term" &
pid=$!
background+=("$pid")
poll_file "$tmp/term" ready || true
kill -TERM "$pid" 2>/dev/null || true
rc=0; wait "$pid" || rc=$?
check "SIGTERM sent to sluice reaches COMMAND" "ready got TERM" "$(oneline <"$tmp/term")"
check "... whose status sluice exits with" 7 "$rc"
srun -- sh -c "setsid sleep 86$$ </dev/null >/dev/null 2>&1 &
	(sleep 87$$ </dev/null >/dev/null 2>&1 &)
	i=0; while [ \$(pgrep -fc '^sleep 8[67]$$\$') != 2 ] && [ \$i -lt 100 ]; do
		sleep 0.05; i=\$((i + 1)); done
	pgrep -fc '^sleep 8[67]$$\$'
	readlink /proc/self/ns/net" >"$tmp/out" || true
check "a daemon (setsid) and an orphaned grandchild ran in the session" 2 \
	"$(head -n 1 "$tmp/out")"
check "... both are gone when COMMAND exits" "" "$(pgrep -f "^sleep 8[67]$$\$" || true)"
session_ns=$(tail -n 1 "$tmp/out")
check "... and so is the session's namespace ($session_ns)" 0 \
	"$(for f in /proc/[0-9]*/ns/net; do readlink "$f" 2>/dev/null; done |
		grep -cxF "$session_ns" || true)"

echo "# a large download"
srun --audit "$tmp/big.jsonl" -- curl -s -4 --max-time 60 -o "$tmp/big.got" \
	-w '%{size_request} %{size_header} %{size_download}' http://a.test/big >"$tmp/sizes" || true
read -r req_bytes header_bytes body_bytes <"$tmp/sizes" || true
check "$(($(stat -c %s "$tmp/big.bin") >> 20)) MiB arrive intact (sha256)" "$WORLD_BIG_SHA256" \
	"$(sha256sum <"$tmp/big.got" | cut -d' ' -f1)"
check "... and the close event counts every byte" \
	"198.51.100.10 80 $req_bytes $((header_bytes + body_bytes))" \
	"$(audit "$tmp/big.jsonl" \
		'select(.event == "close") | "\(.dst) \(.dport) \(.bytes_out) \(.bytes_in)"')"

echo "# the audit trail"
rc=0
srun --audit "$tmp/trail.jsonl" -- sh -c 'curl -s -4 --max-time 10 -o /dev/null http://a.test/
	curl -s -4 --max-time 5 -o /dev/null http://b.test/
	dig +time=2 +tries=1 +short evil.test
	exit 3' 2>/dev/null || rc=$?
check "the session exits 3" 3 "$rc"
t=$tmp/trail.jsonl
check "every line is one JSON object" "$(wc -l <"$t") objects" \
	"$(python3 -c 'import json, sys
n = 0
for line in open(sys.argv[1], encoding="utf-8"):
    if isinstance(json.loads(line), dict):
        n += 1
print(n, "objects")' "$t")"
check "one session id throughout" 1 "$(audit "$t" .session | sort -u | wc -l)"
check "every ts is RFC 3339 UTC with ms" 0 \
	"$(audit "$t" '.ts | test("^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z$") | not' |
		grep -c true || true)"
check "first session_start, last session_end" "session_start session_end" \
	"$(audit "$t" .event | sed -n '1p;$p' | oneline)"
check "session_start: command and mode" "sh $mode" \
	"$(audit "$t" 'select(.event == "session_start") | "\(.command[0]) \(.mode)"')"
check "dns a.test A: allowed, answered, resolver" \
	"allow world.policy:2 198.51.100.10 203.0.113.53" \
	"$(audit "$t" 'select(.event == "dns" and .qname == "a.test" and .qtype == "A")
		| "\(.decision) \(.rule) \(.answers | join(",")) \(.resolver)"')"
check "dns evil.test: denied, no resolver" "deny world.policy:7 null" \
	"$(audit "$t" 'select(.event == "dns" and .qname == "evil.test")
		| "\(.decision) \(.rule) \(.resolver)"')"
check "connect a.test: allowed, name from DNS" \
	"tcp 198.51.100.10 80 a.test dns allow world.policy:2" \
	"$(audit "$t" 'select(.event == "connect" and .dport == 80 and .domain == "a.test")
		| "\(.proto) \(.dst) \(.dport) \(.domain) \(.domain_src) \(.decision) \(.rule)"')"
check "connect b.test: denied" "tcp 198.51.100.20 80 b.test deny world.policy:6" \
	"$(audit "$t" 'select(.event == "connect" and .domain == "b.test")
		| "\(.proto) \(.dst) \(.dport) \(.domain) \(.decision) \(.rule)"')"
check "connect a.test: the process (pid, exe)" "number curl" \
	"$(audit "$t" 'select(.event == "connect" and .domain == "a.test")
		| "\(.pid | type) \(.exe // "" | split("/") | last)"')"
check "close a.test: bytes both ways" "198.51.100.10 80 true true" \
	"$(audit "$t" 'select(.event == "close")
		| "\(.dst) \(.dport) \(.bytes_out > 0) \(.bytes_in > 0)"')"
check "a denied connection has no close event" 1 \
	"$(audit "$t" 'select(.event == "close") | .dport' | wc -l)"
check "session_end: the exit status" 3 "$(audit "$t" 'select(.event == "session_end") | .exit')"

echo "# faults"
start=$(now_ms)
rc=0; srun --audit "$tmp/refused.jsonl" -- curl -s -4 --max-time 5 http://a.test:81/ || rc=$?
refused_ms=$(($(now_ms) - start))
check "upstream refuses: the client is refused or reset, not left waiting" refused-or-reset \
	"$(fail_kind $rc)"
check "... and the connect event carries the error" "allow true" \
	"$(audit "$tmp/refused.jsonl" \
		'select(.event == "connect") | "\(.decision) \(.error != null)"')"
start=$(now_ms)
rc=0; srun --audit "$tmp/hole.jsonl" -- curl -s -4 --max-time 15 http://a.test:82/ || rc=$?
hole_ms=$(($(now_ms) - start))
check "upstream blackholed: sluice gives up on the dial and resets the client" refused-or-reset \
	"$(fail_kind $rc)"
check "... and the connect event carries the error" "allow true" \
	"$(audit "$tmp/hole.jsonl" \
		'select(.event == "connect") | "\(.decision) \(.error != null)"')"
start=$(now_ms)
rc=0
srun --audit "$tmp/silent.jsonl" -- dig @203.0.113.54 +time=2 +tries=1 a.test >/dev/null || rc=$?
silent_ms=$(($(now_ms) - start))
check "a resolver that never answers: dig times out as it would (exit 9)" 9 "$rc"
check "... and the dns event says the query went unanswered" "allow 203.0.113.54 [] true" \
	"$(audit "$tmp/silent.jsonl" 'select(.event == "dns")
		| "\(.decision) \(.resolver) \(.answers | tojson) \(.error != null)"')"
echo "     (measured: refused in ${refused_ms} ms, blackhole given up in ${hole_ms} ms," \
	"silent resolver ${silent_ms} ms — each the whole session)"

echo "# the built-in policy"
rc=0
(cd "$tmp" && in_world timeout -k 5 60 "$sluice" run --mode "$mode" -- \
	curl -s -4 --max-time 5 http://a.test/ 2>"$tmp/err" >/dev/null) || rc=$?
check "without --policy nothing of the test world is reachable" no-such-name "$(fail_kind $rc)"

echo "# nothing is left behind"
check "no leftover process of any session" "" "$(pgrep -f "^sleep 8[67]$$\$" || true)"
check "the world's nftables ruleset is empty" "" "$(in_world nft list ruleset)"
check "the servers' ruleset is as the world made it" "$(cat "$tmp/srv-nft.before")" \
	"$(in_servers nft list ruleset)"
check "the host's nftables ruleset is unchanged" "$(cat "$tmp/host-nft.before")" \
	"$(nft list ruleset)"
# Other test runs may create their own worlds meanwhile; only other names would be sluice's.
check "no new named network namespace" "" \
	"$(ip netns list | awk '{print $1}' | sort | comm -13 "$tmp/netns.before" - |
		grep -vxE "sluice-(world|srv)-[0-9]+" | oneline)"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
