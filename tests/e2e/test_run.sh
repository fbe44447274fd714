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

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/checks.sh
. "$here/checks.sh"
suite_start "$0" "${1:-}" "${2:-}" ip nft curl dig dnsmasq socat \
	openssl python3 jq timeout pgrep sha256sum prlimit
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
# A name the client sends itself is a claim: it can deny, but it allows only an address that the
# session's own DNS answers gave that name.
srun --audit "$tmp/sni.jsonl" -- curl -s --max-time 10 --cacert "$ca" \
	--resolve a.test:443:198.51.100.10 https://a.test/ >"$tmp/out" 2>&1 || true
check "no DNS, an allowed name in the TLS SNI: denied (the session never resolved it)" \
	"sluice: denied tcp 198.51.100.10:443 (a.test, not resolved by the session) by default" \
	"$(grep '^sluice:' "$tmp/out")"
check "... the event names the SNI" "a.test sni deny default" \
	"$(audit "$tmp/sni.jsonl" \
		'select(.event == "connect") | "\(.domain) \(.domain_src) \(.decision) \(.rule)"')"
srun --audit "$tmp/host.jsonl" -- curl -s --max-time 10 -H 'Host: a.test' \
	http://198.51.100.10/ >"$tmp/out" 2>&1 || true
check "no DNS, an allowed name in the HTTP Host header: denied" \
	"sluice: denied tcp 198.51.100.10:80 (a.test, not resolved by the session) by default" \
	"$(grep '^sluice:' "$tmp/out")"
check "... the event names the Host header" "a.test host deny default" \
	"$(audit "$tmp/host.jsonl" \
		'select(.event == "connect") | "\(.domain) \(.domain_src) \(.decision) \(.rule)"')"
srun --audit "$tmp/sniok.jsonl" -- sh -c "dig +time=2 +tries=1 +short a.test >/dev/null;
	curl -s --max-time 10 --cacert '$ca' https://a.test/" >"$tmp/out" 2>&1 || true
check "resolved by the session first, the same SNI: allowed" \
	"hello from 198.51.100.10 host=a.test sni=a.test" "$(cat "$tmp/out")"
check "... the SNI agrees with the session's DNS answer" "a.test dns allow world.policy:2" \
	"$(audit "$tmp/sniok.jsonl" 'select(.event == "connect")
		| "\(.domain) \(.domain_src) \(.decision) \(.rule)"')"

# A client that resets while sluice waits for its first bytes: nothing to relay, but the
# connection is still recorded, with the decision it would have had without a name.
cat >"$tmp/rst.py" <<'EOF'
import socket, struct
s = socket.create_connection(("198.51.100.10", 80), timeout=10)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
print("reset")
EOF
# The allowed request after it keeps the session alive until sluice has taken the first one
# (its listener accepts in order).
srun --audit "$tmp/rst.jsonl" -- sh -c "python3 '$tmp/rst.py'; curl -s --max-time 10 \
	http://a.test/" >/dev/null 2>&1 || true
# netns: the kernel still knows where the reset connection was going, so it is decided and
# recorded. divert: when the reset arrives before sluice takes the connection, the socket has no
# peer any more and the engine has closed the flow, so it can only be counted (tcp_no_origin);
# which comes first is a race, and exactly one of the two must happen.
if [ "$mode" = netns ]; then
	check "a client that resets before sending anything: still a connect event, and why" \
		"198.51.100.10 deny default closed by the client before the decision" \
		"$(audit "$tmp/rst.jsonl" 'select(.event == "connect" and .error != null)
			| "\(.dst) \(.decision) \(.rule) \(.error)"')"
else
	check "a client that resets before sending anything: recorded, or counted as no origin" 1 \
		"$(($(audit "$tmp/rst.jsonl" 'select(.event == "session_end") | .stats.tcp_no_origin') +
			$(audit "$tmp/rst.jsonl" 'select(.event == "connect" and .error != null)
				| .error' | grep -c "closed by the client before the decision")))"
fi

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
check "a new trail is readable by its owner only" 600 "$(stat -c %a "$t")"
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
# COMMAND ends while a query is still waiting for that resolver: the query's event (cut short
# by the end of the session) comes before session_end, which stays the trail's last line.
# A query to the silent resolver, then one to the world's: both reach the DNS proxy's listener
# in that order, so once the second is answered the first is waiting upstream.
cat >"$tmp/cut.py" <<'EOF'
import socket, struct
def query(qid, name):
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0\0\1\0\1"
    return q
silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
silent.sendto(query(1, "a.test"), ("203.0.113.54", 53))
world = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
world.settimeout(10)
world.sendto(query(2, "a.test"), ("203.0.113.53", 53))
print("answered" if world.recv(512)[:2] == b"\0\2" else "other")
EOF
srun --audit "$tmp/cut.jsonl" -- python3 "$tmp/cut.py" >/dev/null 2>&1 || true
check "a query cut short by the session's end: its event, then session_end last" \
	"dns null|dns session ended|session_end" \
	"$(audit "$tmp/cut.jsonl" 'select(.event != "session_start")
		| if .event == "dns" then "dns \(.error)" else .event end' | paste -sd'|')"

echo "# many connections at once, sluice at a descriptor limit of 256"
cat >"$tmp/flood.py" <<'EOF'
# flood.py DIR N: N connections at once to a.test:80 from inside the session, opened by
# processes of 200 each (the session inherits sluice's descriptor limit), in steps that the
# test drives: each step prints a line and waits for DIR/goK (at most 20 s).
import json, os, select, socket, sys, time

d, n = sys.argv[1], int(sys.argv[2])
CHUNK = 200
req = b"GET / HTTP/1.0\r\nHost: a.test\r\n\r\n"


def step(k, line):
    print(line, flush=True)
    end = time.monotonic() + 20
    while not os.path.exists("%s/go%d" % (d, k)):
        if time.monotonic() > end:
            sys.exit("no go%d" % k)
        time.sleep(0.05)


def get(s, end):
    """Sends req on s, reads until EOF or end: the body, "reset" or "hung"."""
    got = b""
    try:
        s.sendall(req)
        while time.monotonic() < end:
            s.settimeout(max(0.01, end - time.monotonic()))
            b = s.recv(4096)
            if not b:
                return got.split(b"\r\n\r\n", 1)[-1].decode().strip() if got else "reset"
            got += b
    except ConnectionError:
        return "reset"
    except socket.timeout:
        pass
    return "hung"


def read_from(fd):
    r, _, _ = select.select([fd], [], [], 30)
    if not r:
        sys.exit("a worker hangs")
    return os.read(fd, 4096)


def worker(count, dst, cmd, res):
    """Opens count connections, waits (bounded) until sluice reset the ones it refuses, then on
    each byte from cmd: sends a request on each one still open; closes them all."""
    socks, out = [], {"first": None, "answered": 0, "reset": 0, "hung": 0}
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(dst)
            socks.append(s)
        except ConnectionError:
            out["reset"] += 1
            s.close()
        except OSError:
            out["hung"] += 1
            s.close()
    alive, end = list(socks), time.monotonic() + 10
    while len(alive) > count // 2 and time.monotonic() < end:
        for s in select.select(alive, [], [], 0.2)[0]:
            try:
                s.setblocking(False)
                if s.recv(1, socket.MSG_PEEK) == b"":
                    raise ConnectionResetError
            except ConnectionError:
                alive.remove(s)
            except BlockingIOError:
                pass
    os.write(res, b"o")
    os.read(cmd, 1)
    end = time.monotonic() + 15
    for i, s in enumerate(socks):
        r = get(s, end) if s in alive else "reset"
        if i == 0 and out["first"] is None:
            out["first"] = r
        else:
            out[r if r in ("reset", "hung") else "answered"] += 1
    os.write(res, json.dumps(out).encode())
    os.read(cmd, 1)
    for s in socks:
        s.close()
    os.write(res, b"c")


dst = socket.getaddrinfo("a.test", 80, socket.AF_INET, socket.SOCK_STREAM)[0][4]
step(1, "ready %s" % dst[0])
workers = []
for lo in range(0, n, CHUNK):
    cmd_r, cmd_w = os.pipe()
    res_r, res_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        worker(min(CHUNK, n - lo), dst, cmd_r, res_w)
        os._exit(0)
    os.close(cmd_r)
    os.close(res_w)
    workers.append((pid, cmd_w, res_r))
    read_from(res_r)  # the next one connects once this one's connections are all made
step(2, "open")
total = {"first": None, "answered": 0, "reset": 0, "hung": 0}
for _, cmd_w, res_r in workers:
    os.write(cmd_w, b"g")
    got = json.loads(read_from(res_r))
    total["first"] = total["first"] or got["first"]
    for k in ("answered", "reset", "hung"):
        total[k] += got[k]
print("first: %s" % total["first"])
print("answered %d, refused or reset %d, hung %d" % (
    total["answered"], total["reset"], total["hung"]), flush=True)
for pid, cmd_w, res_r in workers:
    os.write(cmd_w, b"x")
    read_from(res_r)
    os.waitpid(pid, 0)
step(3, "closed")
s = socket.create_connection(dst, timeout=5)
print("after: %s" % get(s, time.monotonic() + 5), flush=True)
EOF
fds_of() { # PID: how many descriptors the process has open
	find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l
}
exited() { # PID: the process has exited (a zombie counts)
	[ ! -e "/proc/$1" ] || [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" = Z ]
}
flood=$tmp/flood
mkdir "$flood"
start=$(now_ms)
# ip netns exec and prlimit exec, so $! is sluice's own PID.
(cd "$tmp" && exec ip netns exec "$WORLD_NS" prlimit --nofile=256:256 "$sluice" run \
	--mode "$mode" --policy world.policy --audit "$tmp/flood.jsonl" -- \
	timeout 60 python3 "$tmp/flood.py" "$flood" 400) >"$flood/out" 2>"$flood/err" &
pid=$!
background+=("$pid")
at_step() { # TEXT: the client printed TEXT, or the session is over
	grep -q -- "$1" "$flood/out" || exited "$pid"
}
poll 100 at_step '^ready' || true
fd_start=$(fds_of "$pid")
touch "$flood/go1"
poll 300 at_step '^open' || true
fd_peak=$(fds_of "$pid")
touch "$flood/go2"
poll 300 at_step '^closed' || true
fds_back() { [ "$(fds_of "$pid")" -le "$fd_start" ]; }
poll 100 fds_back || true
fd_end=$(fds_of "$pid")
touch "$flood/go3"
poll 300 exited "$pid" || kill -KILL "$pid" 2>/dev/null || true
rc=0; wait "$pid" || rc=$?
flood_ms=$(($(now_ms) - start))
check "400 connections at once: the session ends well" "0 ''" "$rc '$(cat "$flood/err")'"
check "... the first one still works after the flood" \
	"first: hello from 198.51.100.10 host=a.test" "$(grep '^first:' "$flood/out")"
check "... every other one is answered or refused/reset, none left hanging" \
	"some answered, some refused or reset, hung 0" \
	"$(awk '/^answered/ { gsub(",", ""); print ($2 > 0 ? "some" : $2) " answered, " \
		($6 > 0 ? "some" : $6) " refused or reset, hung " $8 }' "$flood/out")"
check "... the session_end stats count the refused ones (tcp_shed > 0)" true \
	"$(audit "$tmp/flood.jsonl" 'select(.event == "session_end") | .stats.tcp_shed > 0')"
check "... and is back to its $fd_start descriptors once they are closed" "$fd_start" \
	"$([ "$fd_end" -le "$fd_start" ] && echo "$fd_start" || echo "$fd_end")"
check "... then a new connection works" "after: hello from 198.51.100.10 host=a.test" \
	"$(grep '^after:' "$flood/out")"
echo "     (measured: the whole session ${flood_ms} ms; $(grep '^answered' "$flood/out");" \
	"sluice's descriptors $fd_start, $fd_peak at the peak, $fd_end after)"

echo "# malformed DNS messages"
cat >"$tmp/dnsbad.py" <<'EOF'
# dnsbad.py RESOLVER: sends malformed DNS messages to RESOLVER:53 over UDP and TCP, each
# followed by a good query from the same socket; prints, per message, what came back before
# the good query's answer: "FORMERR" (a reply with the message's id), "closed", or nothing.
import random, socket, struct, sys

resolver = sys.argv[1]
QUESTION = b"\x01a\x04test\x00" + struct.pack("!HH", 1, 1)
good = struct.pack("!HHHHHH", 0x7777, 0x0100, 1, 0, 0, 0) + QUESTION
junk = bytearray(random.Random(7).randbytes(40))
junk[2] &= 0x7F  # a query, as far as the header says
bad = {
    "random bytes": bytes(junk),
    "a truncated header": b"\x42\x42\x01\x00\x00\x01\x00",
    "a response": struct.pack("!HHHHHH", 0x4343, 0x8180, 1, 1, 0, 0) + QUESTION
    + b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + bytes([198, 51, 100, 10]),
    "a compression loop": struct.pack("!HHHHHH", 0x4444, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c"
    + struct.pack("!HH", 1, 1),
}


def describe(msg, sent):
    if len(msg) < 12:
        return "short reply"
    qid, flags = struct.unpack("!HH", msg[:4])
    if qid == 0x7777 and flags & 0x8000 and flags & 0xF == 0:
        return "answered"
    if msg[:2] == sent[:2] and flags & 0x8000 and flags & 0xF == 1:
        return "FORMERR"
    return "id %04x rcode %d" % (qid, flags & 0xF)


def over_udp(msg):
    seen = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.connect((resolver, 53))
        s.send(msg)
        s.send(good)
        try:
            while not seen or seen[-1] != "answered":
                seen.append(describe(s.recv(4096), msg))
        except socket.timeout:
            seen.append("timeout")
    return seen


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        got = s.recv(n - len(b))
        if not got:
            raise ConnectionResetError
        b += got
    return b


def over_tcp(msg):
    seen = []
    with socket.create_connection((resolver, 53), timeout=5) as s:
        try:
            s.sendall(struct.pack("!H", len(msg)) + msg + struct.pack("!H", len(good)) + good)
            while not seen or seen[-1] != "answered":
                n = struct.unpack("!H", recv_exact(s, 2))[0]
                seen.append(describe(recv_exact(s, n), msg))
        except ConnectionError:
            seen.append("closed")
        except socket.timeout:
            seen.append("timeout")
    return seen


for proto, send in (("udp", over_udp), ("tcp", over_tcp)):
    for name, msg in bad.items():
        print("%s %s: %s" % (proto, name, " ".join(send(msg))), flush=True)
EOF
rc=0
srun --audit "$tmp/dnsbad.jsonl" -- sh -c "timeout 30 python3 $tmp/dnsbad.py 203.0.113.53
	dig +time=2 +tries=1 +short a.test" >"$tmp/out" 2>"$tmp/err" || rc=$?
check "garbage to the resolver: the session ends well" "0 ''" "$rc '$(cat "$tmp/err")'"
for proto in udp tcp; do
	check "... over $proto, random bytes (a query by the header): FORMERR, then answers" \
		"$proto random bytes: FORMERR answered" "$(grep "^$proto random bytes:" "$tmp/out")"
	check "... over $proto, a query with a compression loop: FORMERR, then answers" \
		"$proto a compression loop: FORMERR answered" \
		"$(grep "^$proto a compression loop:" "$tmp/out")"
done
check "... over udp, a truncated header and a response: ignored, then answers" \
	"udp a truncated header: answered|udp a response: answered" \
	"$(grep -e "^udp a truncated header:" -e "^udp a response:" "$tmp/out" | paste -sd'|')"
check "... over tcp, a truncated header and a response: the connection is closed" \
	"tcp a truncated header: closed|tcp a response: closed" \
	"$(grep -e "^tcp a truncated header:" -e "^tcp a response:" "$tmp/out" | paste -sd'|')"
check "... then dig still gets its answer" 198.51.100.10 "$(tail -n 1 "$tmp/out")"
check "... and session_end counts the 8 malformed messages" 8 \
	"$(audit "$tmp/dnsbad.jsonl" 'select(.event == "session_end") | .stats.dns_malformed')"

cat >"$tmp/pipeline.py" <<'EOF'
# pipeline.py RESOLVER: 30 queries for evil.test (denied) then one for a.test, in one TCP write
# (RFC 7766 pipelining); prints how many answers came back and the last one's id and rcode.
import socket, struct, sys
def query(qid, name):
    labels = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    msg = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + struct.pack(">HH", 1, 1)
    return struct.pack(">H", len(msg)) + msg
s = socket.create_connection((sys.argv[1], 53), timeout=8)
s.sendall(b"".join(query(i, "evil.test") for i in range(30)) + query(99, "a.test"))
buf, got = b"", []
while len(got) < 31:
    data = s.recv(65536)
    if not data:
        break
    buf += data
    while len(buf) >= 2 and len(buf) >= 2 + struct.unpack(">H", buf[:2])[0]:
        n = struct.unpack(">H", buf[:2])[0]
        got.append((struct.unpack(">H", buf[2:4])[0], buf[5] & 15))
        buf = buf[2 + n:]
print(len(got), "answers, last id", got[-1][0] if got else -1, "rcode", got[-1][1] if got else -1)
EOF
check "31 pipelined TCP queries, 30 denied: all answered in order" \
	"31 answers, last id 99 rcode 0" \
	"$(srun --quiet -- timeout 20 python3 "$tmp/pipeline.py" 203.0.113.53 2>&1)"

echo "# connections straight to sluice's own listener"
# A session process that finds the relay's listener (127.0.0.1:9080 inside the session) and
# connects to it directly is not a captured flow: nothing may be relayed for it (netns: the relay
# finds no original destination; divert: the namespace drops such packets).
cat >"$tmp/direct.py" <<'EOF'
import errno, select, socket, sys, time
socks = []
for _ in range(12):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    rc = s.connect_ex(("127.0.0.1", 9080))
    if rc not in (0, errno.EINPROGRESS):
        print("connect", rc)
        sys.exit(1)
    socks.append(s)
deadline = time.monotonic() + 2
got = 0
while socks and time.monotonic() < deadline:
    r, _, _ = select.select(socks, [], [], 0.1)
    for s in r:
        try:
            data = s.recv(100)
        except OSError:
            data = b""
        got += len(data)
        if not data:
            socks.remove(s)
print("bytes relayed", got)
EOF
check "12 connections straight to the listener: nothing relayed; the next one works" \
	"bytes relayed 0 hello from 198.51.100.10 host=a.test" \
	"$(srun -- sh -c "python3 '$tmp/direct.py'; curl -s -4 --max-time 10 http://a.test/" \
		2>/dev/null | oneline)"

if [ "$mode" = divert ]; then
	echo "# divert: packets the engine cannot handle, and fail mode"
	# Twelve TCP segments of no known flow (bare ACKs, sent through a raw socket) are errors
	# in a row: the engine drops them (--fail closed) and enters fail mode; the next
	# connection's packets, handled again, take it out. Session processes cannot open raw
	# sockets (they have no CAP_NET_RAW), so the segments are sent into the session's namespace
	# from outside, through the namespace of its init, while the session waits.
	cat >"$tmp/stray.py" <<'EOF'
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for i in range(12):
    tcp = struct.pack("!HHIIBBHHH", 40000 + i, 80, 1, 1, 5 << 4, 0x10, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), i, 0, 64, 6, 0,
                     socket.inet_aton("127.0.0.1"), socket.inet_aton("198.51.100.10"))
    s.sendto(ip + tcp, ("198.51.100.10", 0))
print("sent 12")
EOF
	# ip netns exec execs, so $! is sluice, and its only child the session's init.
	(cd "$tmp" && exec ip netns exec "$WORLD_NS" "$sluice" run --mode "$mode" \
		--policy world.policy --audit "$tmp/stray.jsonl" --stats -- sh -c "echo ready; i=0
		while [ ! -e '$tmp/stray.go' ] && [ \$i -lt 200 ]; do sleep 0.05; i=\$((i + 1)); done
		curl -s -4 --max-time 10 http://a.test/") >"$tmp/stray.out" 2>"$tmp/stray.err" &
	pid=$!
	background+=("$pid")
	poll_file "$tmp/stray.out" ready || true
	sent=$(nsenter -t "$(pgrep -P "$pid" | head -n 1)" -n python3 "$tmp/stray.py" || true)
	touch "$tmp/stray.go"
	wait "$pid" || true
	check "12 stray segments sent into the session, then a connection works" \
		"sent 12 hello from 198.51.100.10 host=a.test" \
		"$sent $(grep -v '^ready$' "$tmp/stray.out" | oneline)"
	check "fail mode entered (closed), then left, as audit events" \
		"entered closed stray left closed" \
		"$(audit "$tmp/stray.jsonl" 'select(.event == "fail_mode") |
			[.state, .fail, .reason // empty] | join(" ")' | oneline)"
	check "one stderr line each way" "1 1" \
		"$(grep -c 'in fail mode (closed)' "$tmp/stray.err") $(grep -c 'left fail mode' \
			"$tmp/stray.err")"
	check "--stats prints the engine's counters; session_end records them" "yes 12" \
		"$(grep -q 'divert_err_stray' "$tmp/stray.err" && echo yes) $(audit \
			"$tmp/stray.jsonl" 'select(.event == "session_end") | .stats.divert_err_stray')"
fi

echo "# sluice killed with SIGKILL mid-session"
marker=sluice-killed-$$
in_session() { # MARKER: PIDs of the session's processes, by the marker in their command line
	pgrep -f -- "$1" || true
}
in_netns() { # NET: how many processes are in the network namespace NET ("net:[...]")
	for f in /proc/[0-9]*/ns/net; do readlink "$f" 2>/dev/null; done | grep -cxF "$1" || true
}
# shellcheck disable=SC2016 # expanded by the session's shell
(cd "$tmp" && exec ip netns exec "$WORLD_NS" "$sluice" run --mode "$mode" \
	--policy world.policy -- timeout 30 sh -c 'readlink /proc/self/ns/net; echo ready; i=0
	while [ $i -lt 300 ]; do curl -s -4 --max-time 1 -o /dev/null http://a.test/; i=$((i + 1))
	done' "$marker") >"$tmp/killed" 2>&1 &
pid=$!
background+=("$pid")
poll_file "$tmp/killed" ready || true
killed_ns=$(head -n 1 "$tmp/killed")
check "a session that keeps connecting runs" "yes" \
	"$(case $killed_ns in "net:["*) [ -n "$(in_session "$marker")" ] && echo yes ;; esac)"
start=$(now_ms)
kill -KILL "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
gone() { [ -z "$(in_session "$marker")" ] && [ "$(in_netns "$killed_ns")" = 0 ]; }
poll 100 gone || true
gone_ms=$(($(now_ms) - start))
left=$(in_session "$marker")
check "sluice killed: the session's processes are gone" "" "$(echo "$left" | oneline)"
for p in $left; do
	kill -KILL "$p" 2>/dev/null || true
done
check "... and so is the session's namespace ($killed_ns)" 0 "$(in_netns "$killed_ns")"
check "... no firewall table is left in the world" "" "$(in_world nft list ruleset)"
check "... and the next session works" "hello from 198.51.100.10 host=a.test" \
	"$(srun -- curl -s -4 --max-time 10 http://a.test/)"
echo "     (measured: the session gone ${gone_ms} ms after the SIGKILL)"

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

# ---------------------------------------------------------------------------------------------
# The rebinding and SSRF guard, and DNS side channels (docs/policy.md, "Addresses that need an
# explicit rule" and "What the DNS proxy forwards"). world.sh's dnsmasq points rebind.test,
# meta.test, loop.test, mapped.test, nat64.test and mixed.test into guarded ranges. The
# policies here allow every name and address: only the guard stands in the way.
# ---------------------------------------------------------------------------------------------
echo "# the rebinding guard"
cat >"$tmp/guard.policy" <<'EOF'
allow domain *.in-addr.arpa
allow port 7 proto udp
default allow
EOF
cat >"$tmp/guard-cidr.policy" <<'EOF'
allow cidr 10.0.0.0/8
allow domain *.in-addr.arpa
default allow
EOF
grun() { # POLICY ARGS...: a session like srun's, with another policy
	local policy=$1
	shift
	(cd "$tmp" && in_world timeout -k 5 60 "$sluice" run --mode "$mode" --policy "$policy" "$@")
}
dropped_of() { # FILE QNAME: "ANSWERS | DROPPED" of the name's dns events, each list sorted
	audit "$1" "select(.event == \"dns\" and .qname == \"$2\")
		| \"\(.answers | sort | join(\",\")) | \(.dropped // []
		| map(\"\(.address) \(.rule)\") | sort | join(\",\"))\""
}

grun guard.policy --audit "$tmp/rebind.jsonl" -- dig +time=2 +tries=1 +short rebind.test \
	>"$tmp/out" 2>"$tmp/err" || true
check "a name rebound to 10.0.0.5: the answer arrives without it" "" "$(cat "$tmp/out")"
check "... one line on stderr" \
	"sluice: dropped from dns rebind.test (A): 10.0.0.5 by guard:private" "$(cat "$tmp/err")"
check "... the dns event records the drop" " | 10.0.0.5 guard:private" \
	"$(dropped_of "$tmp/rebind.jsonl" rebind.test)"
grun guard.policy --audit "$tmp/mixed.jsonl" -- sh -c 'dig +time=2 +tries=1 +short mixed.test
	curl -s -4 --max-time 10 http://mixed.test/' >"$tmp/out" 2>/dev/null || true
check "public, private and metadata answers: only the public one arrives, and it works" \
	"198.51.100.10 hello from 198.51.100.10 host=mixed.test" "$(oneline <"$tmp/out")"
check "... the events (dig's, curl's) list both drops" \
	"198.51.100.10 | 10.0.0.5 guard:private,169.254.169.254 guard:metadata" \
	"$(dropped_of "$tmp/mixed.jsonl" mixed.test | sort -u | oneline)"
grun guard.policy --audit "$tmp/forms.jsonl" -- sh -c '
	dig +time=2 +tries=1 +short AAAA mapped.test; dig +time=2 +tries=1 +short AAAA nat64.test
	dig +tcp +time=2 +tries=1 +short meta.test; dig +time=2 +tries=1 +short loop.test' \
	>"$tmp/out" 2>/dev/null || true
check "IPv4-mapped loopback, NAT64 private, metadata over TCP, loopback: nothing arrives" "" \
	"$(cat "$tmp/out")"
check "... each drop recorded with its range" \
	"$(printf '%s ' '::ffff:127.0.0.1 guard:loopback' '64:ff9b::a00:5 guard:private' \
		'169.254.169.254 guard:metadata' '127.0.0.1 guard:loopback' | sed 's/ $//')" \
	"$(for n in mapped.test nat64.test meta.test loop.test; do
		dropped_of "$tmp/forms.jsonl" "$n" | sed 's/^ | //'; done | oneline)"
grun guard-cidr.policy --audit "$tmp/cidr.jsonl" -- dig +time=2 +tries=1 +short rebind.test \
	>"$tmp/out" 2>"$tmp/err" || true
check "with 'allow cidr 10.0.0.0/8' the private answer passes" "10.0.0.5 ''" \
	"$(cat "$tmp/out") '$(cat "$tmp/err")'"
check "... and the event drops nothing" "10.0.0.5 | " "$(dropped_of "$tmp/cidr.jsonl" rebind.test)"

echo "# connections into guarded ranges"
for target in 169.254.169.254:metadata 10.0.0.5:private '[::ffff:10.0.0.5]:private' \
	'[64:ff9b::a00:5]:private'; do
	host=${target%:*}
	range=${target##*:}
	rc=0
	rm -f "$tmp/conn.jsonl"
	grun guard.policy --audit "$tmp/conn.jsonl" -- curl -s -g --max-time 5 -o /dev/null \
		"http://$host/" 2>"$tmp/err" || rc=$?
	dst=$(echo "$host" | tr -d '[]' | sed 's/^::ffff://')
	shown=$(case $dst in *:*) echo "[$dst]:80" ;; *) echo "$dst:80" ;; esac)
	check "curl http://$host/ under default allow: denied" refused-or-reset "$(fail_kind $rc)"
	check "... one line on stderr" "sluice: denied tcp $shown by guard:$range" \
		"$(cat "$tmp/err")"
	check "... the connect event names the guard" "$dst deny guard:$range" \
		"$(audit "$tmp/conn.jsonl" 'select(.event == "connect")
			| "\(.dst) \(.decision) \(.rule)"')"
done
rc=0
grun guard.policy --audit "$tmp/name.jsonl" -- curl -s --max-time 5 -o /dev/null \
	--resolve meta.test:80:169.254.169.254 http://meta.test/ 2>"$tmp/err" || rc=$?
check "a name that the policy allows (Host: meta.test) does not open the metadata address" \
	"refused-or-reset meta.test host deny guard:metadata" \
	"$(fail_kind $rc) $(audit "$tmp/name.jsonl" 'select(.event == "connect")
		| "\(.domain) \(.domain_src) \(.decision) \(.rule)"')"
grun guard-cidr.policy --audit "$tmp/cidrconn.jsonl" -- curl -s --max-time 5 -o /dev/null \
	http://10.0.0.5/ 2>/dev/null || true
check "with 'allow cidr 10.0.0.0/8' a connection to 10.0.0.5 is allowed (nothing answers)" \
	"allow guard-cidr.policy:1" \
	"$(audit "$tmp/cidrconn.jsonl" 'select(.event == "connect") | "\(.decision) \(.rule)"')"
check "UDP into a private range: no echo" "" \
	"$(echo hi | grun guard.policy -- socat -t 1 - UDP4:10.0.0.5:7 2>"$tmp/err")"
check "... one line on stderr" "sluice: denied udp 10.0.0.5:7 by guard:private" "$(cat "$tmp/err")"

echo "# DNS side channels"
grun guard.policy --audit "$tmp/types.jsonl" -- sh -c '
	dig +time=2 +tries=1 -t ANY a.test; dig +time=2 +tries=1 -t NULL a.test
	dig +time=2 +tries=1 -t TYPE65280 a.test; dig +time=2 +tries=1 -t AXFR test
	dig +time=2 +tries=1 -x 10.0.0.5; dig +time=2 +tries=1 -x 198.51.100.10
	dig +time=2 +tries=1 +short -t TXT txt.test' >"$tmp/out" 2>"$tmp/err" || true
check "ANY, NULL, TYPE65280: REFUSED; PTR of 10.0.0.5: NXDOMAIN, of 198.51.100.10: answered" \
	"REFUSED REFUSED REFUSED NXDOMAIN NOERROR" "$(dig_status <"$tmp/out" | oneline)"
check "... AXFR over TCP: refused" 1 "$(grep -c 'Transfer failed' "$tmp/out")"
check "... each refusal audited with the reason" \
	"$(printf '%s|' 'ANY deny qtype' 'NULL deny qtype' '65280 deny qtype' 'AXFR deny qtype' \
		'PTR deny guard:private' 'PTR allow guard.policy:1' 'TXT allow default' |
		sed 's/|$//')" \
	"$(audit "$tmp/types.jsonl" 'select(.event == "dns") | "\(.qtype) \(.decision) \(.rule)"' |
		paste -sd'|')"
refused="query type not forwarded"
check "... with one stderr line each" \
	"$(printf 'sluice: %s|' "refused dns a.test (ANY): $refused" \
		"refused dns a.test (TYPE10): $refused" "refused dns a.test (TYPE65280): $refused" \
		"refused dns test (AXFR): $refused" \
		"denied dns 5.0.0.10.in-addr.arpa (PTR) by guard:private" | sed 's/|$//')" \
	"$(paste -sd'|' <"$tmp/err")"
poll_file "$tmp/dnsmasq.log" "query\[TXT\] txt.test" || true
check "... TXT was forwarded" 1 "$(grep -c "query\[TXT\] txt.test" "$tmp/dnsmasq.log")"
check "... none of the refused ones reached dnsmasq" 0 \
	"$(grep -cE 'query\[(ANY|NULL|TYPE65280|AXFR)\]|5\.0\.0\.10\.in-addr' "$tmp/dnsmasq.log" ||
		true)"
cat >"$tmp/longname.py" <<'EOF'
# longname.py RESOLVER: queries with a 64-byte label and a 254-character name (over the DNS
# limits, which dig will not even send), then one at the limits; prints each reply's rcode name.
import socket, struct, sys
RCODES = {0: "NOERROR", 1: "FORMERR", 3: "NXDOMAIN", 5: "REFUSED"}
def query(labels):
    name = b"".join(bytes([len(l)]) + l for l in labels) + b"\0"
    return struct.pack("!HHHHHH", 0x6464, 0x0100, 1, 0, 0, 0) + name + struct.pack("!HH", 1, 1)
out = []
for labels in ([b"a" * 64, b"test"], [b"a" * 63] * 3 + [b"b" * 62],
               [b"a" * 63] * 3 + [b"b" * 56, b"test"]):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(query(labels), (sys.argv[1], 53))
        try:
            out.append(RCODES.get(s.recv(4096)[3] & 15, "other"))
        except socket.timeout:
            out.append("timeout")
print(" ".join(out))
EOF
check "names over the DNS limits: FORMERR, at the limit: forwarded (dnsmasq refuses it)" \
	"FORMERR FORMERR REFUSED" \
	"$(grun guard.policy --audit "$tmp/long.jsonl" -- python3 "$tmp/longname.py" 203.0.113.53)"
check "... the two malformed ones counted, never forwarded" "2 0" \
	"$(audit "$tmp/long.jsonl" 'select(.event == "session_end") | .stats.dns_malformed') $(
		grep -cE 'a{64}|b{57}' "$tmp/dnsmasq.log" || true)"

checks_done
