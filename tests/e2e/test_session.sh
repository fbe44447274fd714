#!/usr/bin/env bash
# test_session.sh — e2e: a Linux netns session captures TCP and UDP, passes exit codes, signals
# and stdin through, and leaves nothing behind.
#
#   host network namespace (never changed)     session namespace (anonymous, made by the probe)
#   ┌──────────────────────────────┐           ┌─────────────────────────────────────────────┐
#   │ session_probe                │ listeners │ lo: 127.0.0.1, ::1    nft table inet sluice │
#   │  event loop + responders:    │◀──────────│  TCP      ── redirect ─▶ :9080              │
#   │  "ORIG a:p", "UDP ORIG a:p"  │ (created  │  TCP/53   ── redirect ─▶ :5353              │
#   │  (replies sent from a:p)     │  inside)  │  UDP/53   ── tproxy   ─▶ :5353              │
#   └──────────────────────────────┘           │  UDP      ── tproxy   ─▶ :9081              │
#                                              │ COMMAND: python3 client, sh, cat, ip ...    │
#                                              └─────────────────────────────────────────────┘
# Destinations are documentation addresses (203.0.113.0/24, 198.51.100.0/24, 2001:db8::/32):
# inside the session they are redirected to the probe and never leave.
#
# Usage: test_session.sh PATH/TO/session_probe [netns|divert]
#        (root; exits 77 = skipped otherwise; the capture backend defaults to netns)
set -e

probe=$1
mode=${2:-netns}
if [ -z "$probe" ] || [ ! -x "$probe" ]; then
	echo "usage: $0 PATH/TO/session_probe [netns|divert]" >&2
	exit 2
fi
if [ "$(id -u)" != 0 ]; then
	echo "SKIP: needs root (network and PID namespaces, nftables)"
	exit 77
fi
for tool in ip nft python3 pgrep setsid; do
	command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done

tmp=$(mktemp -d "/tmp/sluice-e2e-session.$$.XXXXXX")
background=()
cleanup() {
	for pid in "${background[@]}"; do
		kill -KILL "$pid" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

# shellcheck source=SCRIPTDIR/checks.sh
. "$(cd "$(dirname "$0")" && pwd)/checks.sh"

# Polls until FILE contains TEXT, at most 10 s.
wait_for() {
	local i=0
	while ! grep -q -- "$2" "$1" 2>/dev/null; do
		i=$((i + 1))
		[ $i -le 200 ] || return 1
		sleep 0.05
	done
}

# The clients that run inside sessions.
client=$tmp/client.py
cat >"$client" <<'EOF'
import os, select, signal, socket, sys, time

def fmt(a):
    return ("[%s]:%d" if ":" in a[0] else "%s:%d") % (a[0], a[1])

def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET

mode = sys.argv[1]
if mode == "tcp":                       # tcp HOST PORT: print what the server sends
    s = socket.socket(family(sys.argv[2]), socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect((sys.argv[2], int(sys.argv[3])))
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    sys.stdout.write(data.decode())
elif mode == "udp":                     # udp HOST PORT COUNT: one line per reply
    s = socket.socket(family(sys.argv[2]), socket.SOCK_DGRAM)
    s.settimeout(10)
    for i in range(int(sys.argv[4])):
        s.sendto(b"ping", (sys.argv[2], int(sys.argv[3])))
        data, src = s.recvfrom(4096)
        print(data.decode(), "from", fmt(src))
elif mode == "udpmany":                 # udpmany N: 198.51.100.1..N, then .1 again
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(10)
    good = 0
    hosts = ["198.51.100.%d" % i for i in range(1, int(sys.argv[2]) + 1)] + ["198.51.100.1"]
    for host in hosts:
        s.sendto(b"ping", (host, 4433))
        data, src = s.recvfrom(4096)
        good += data.decode() == "UDP ORIG %s:4433" % host and src == (host, 4433)
    print(good, "of", len(hosts))
elif mode == "loopback":                # loopback traffic inside the session is not captured
    for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        l = socket.socket(fam, socket.SOCK_STREAM)
        l.bind((host, 0))
        l.listen()
        c = socket.socket(fam, socket.SOCK_STREAM)
        c.settimeout(10)
        c.connect(l.getsockname()[:2])
        a, _ = l.accept()
        a.sendall(b"self")
        print(host, "tcp", c.recv(16).decode())
        u = socket.socket(fam, socket.SOCK_DGRAM)
        u.bind((host, 0))
        u.settimeout(10)
        v = socket.socket(fam, socket.SOCK_DGRAM)
        v.sendto(b"self", u.getsockname()[:2])
        print(host, "udp", u.recv(16).decode())
elif mode == "intcount":                # counts SIGINTs until SIGUSR1, then prints the count
    n = 0
    done = False
    def on_int(sig, frame):
        global n
        n += 1
        print("int", n, flush=True)
    def on_usr1(sig, frame):
        global done
        done = True
    signal.signal(signal.SIGINT, on_int)
    signal.signal(signal.SIGUSR1, on_usr1)
    print("ready", flush=True)
    for i in range(400):
        if done:
            break
        time.sleep(0.05)
    print("ints=%d" % n, flush=True)
elif mode == "ctrlc":                   # ctrlc PROBE [ARG..]: Ctrl-C on a terminal, then kill -USR1
    probe = sys.argv[2]
    pid, fd = os.forkpty()
    if pid == 0:
        os.execv(probe, [probe] + sys.argv[3:] + ["--", sys.executable, __file__, "intcount"])
    out = b""
    def read_until(token):
        global out
        deadline = time.monotonic() + 10
        while token not in out:
            left = deadline - time.monotonic()
            r, _, _ = select.select([fd], [], [], max(left, 0))
            chunk = b""
            if r:
                try:
                    chunk = os.read(fd, 1024)
                except OSError:
                    pass
            if not chunk:
                print("no %r in %r" % (token, out))
                os.kill(pid, signal.SIGKILL)
                sys.exit(1)
            out += chunk
    read_until(b"ready")
    os.write(fd, b"\x03")
    read_until(b"int 1")
    os.kill(pid, signal.SIGUSR1)
    read_until(b"ints=")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # to the end: the terminal closes when the probe exits
        r, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        try:
            chunk = os.read(fd, 1024) if r else b""
        except OSError:
            chunk = b""
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    line = [l for l in out.decode().splitlines() if l.startswith("ints=")][0]
    print(line, "exit", os.waitstatus_to_exitcode(status))
EOF

nft list ruleset >"$tmp/host-nft.before"
ip -o link >"$tmp/host-link.before"

echo "# the session's network"
check "only lo inside the session" "lo:" \
	"$("$probe" -m "$mode" -- ip -o link | awk '{print $2}' | oneline)"
# (the probe checks that it is back in its own namespace after opening the capture)
check "sluice stays in its own namespace" ok "$("$probe" -m "$mode" -- true && echo ok)"

echo "# TCP: redirected, original destination recovered"
check "tcp 203.0.113.5:443" "ORIG 203.0.113.5:443" \
	"$("$probe" -m "$mode" -- python3 "$client" tcp 203.0.113.5 443)"
check "tcp [2001:db8::5]:8443" "ORIG [2001:db8::5]:8443" \
	"$("$probe" -m "$mode" -- python3 "$client" tcp 2001:db8::5 8443)"
check "tcp to the listener's port on another address" "ORIG 203.0.113.5:9080" \
	"$("$probe" -m "$mode" -- python3 "$client" tcp 203.0.113.5 9080)"
check "tcp 203.0.113.53:53 (DNS over TCP)" "DNS TCP ORIG 203.0.113.53:53" \
	"$("$probe" -m "$mode" -- python3 "$client" tcp 203.0.113.53 53)"
check "tcp [2001:db8::53]:53 (DNS over TCP)" "DNS TCP ORIG [2001:db8::53]:53" \
	"$("$probe" -m "$mode" -- python3 "$client" tcp 2001:db8::53 53)"

echo "# UDP: tproxied, answered from the original destination"
reply="UDP ORIG 198.51.100.3:4433 from 198.51.100.3:4433"
check "udp 198.51.100.3:4433, twice (the reply socket is reused)" "$reply $reply" \
	"$("$probe" -m "$mode" -- python3 "$client" udp 198.51.100.3 4433 2 | oneline)"
check "udp 203.0.113.53:53 (DNS)" "DNS UDP ORIG 203.0.113.53:53 from 203.0.113.53:53" \
	"$("$probe" -m "$mode" -- python3 "$client" udp 203.0.113.53 53 1)"
check "udp [2001:db8::3]:4433" "UDP ORIG [2001:db8::3]:4433 from [2001:db8::3]:4433" \
	"$("$probe" -m "$mode" -- python3 "$client" udp 2001:db8::3 4433 1)"
check "udp [2001:db8::53]:53 (DNS)" "DNS UDP ORIG [2001:db8::53]:53 from [2001:db8::53]:53" \
	"$("$probe" -m "$mode" -- python3 "$client" udp 2001:db8::53 53 1)"
check "udp 127.0.0.53:53 (a loopback resolver is still captured)" \
	"DNS UDP ORIG 127.0.0.53:53 from 127.0.0.53:53" \
	"$("$probe" -m "$mode" -- python3 "$client" udp 127.0.0.53 53 1)"
check "tcp 127.0.0.1:53 (a loopback resolver over TCP is still captured)" \
	"DNS TCP ORIG 127.0.0.1:53" "$("$probe" -m "$mode" -- python3 "$client" tcp 127.0.0.1 53)"
check "udp [::1]:53 (a loopback resolver is still captured)" "DNS UDP ORIG [::1]:53 from [::1]:53" \
	"$("$probe" -m "$mode" -- python3 "$client" udp ::1 53 1)"
check "udp to more destinations than reply sockets are cached" "71 of 71" \
	"$("$probe" -m "$mode" -- python3 "$client" udpmany 70)"
# With every listener preferring port 5353, TCP and DNS TCP (and UDP and DNS UDP) cannot share
# it: the later ones take free ports, and the rules follow the ports actually bound.
expected="ORIG 203.0.113.5:443 DNS TCP ORIG 203.0.113.53:53"
expected="$expected UDP ORIG 198.51.100.3:4433 from 198.51.100.3:4433"
check "listeners on free ports where the preferred one is taken" "$expected" \
	"$("$probe" -m "$mode" -p 5353 -- sh -c "python3 '$client' tcp 203.0.113.5 443
		python3 '$client' tcp 203.0.113.53 53
		python3 '$client' udp 198.51.100.3 4433 1" | oneline)"
check "loopback inside the session is not captured" \
	"127.0.0.1 tcp self 127.0.0.1 udp self ::1 tcp self ::1 udp self" \
	"$("$probe" -m "$mode" -- python3 "$client" loopback | oneline)"

echo "# exit status"
rc=0; "$probe" -m "$mode" -- true || rc=$?
check "exit 0" 0 "$rc"
rc=0; "$probe" -m "$mode" -- sh -c 'exit 3' || rc=$?
check "exit 3" 3 "$rc"
rc=0; "$probe" -m "$mode" -- sh -c 'kill -TERM $$' || rc=$?
check "killed by SIGTERM: 128+15" 143 "$rc"
rc=0; "$probe" -m "$mode" -w -- sh -c 'exit 9' || rc=$?
check "exit 9 through session_wait (the blocking helper)" 9 "$rc"
rc=0; "$probe" -m "$mode" -- "no-such-command-$$" 2>"$tmp/err" || rc=$?
check "command not found: 127" 127 "$rc"
check "not found: one line on stderr" 1 "$(grep -c "no-such-command-$$" "$tmp/err")"
printf 'echo hi\n' >"$tmp/not-executable"
rc=0; "$probe" -m "$mode" -- "$tmp/not-executable" 2>/dev/null || rc=$?
check "not executable: 126" 126 "$rc"

echo "# what COMMAND inherits"
check "stdin passes through" "data" "$(echo data | "$probe" -m "$mode" -- cat)"
# shellcheck disable=SC2016 # expanded by the session's shell
check "cwd and environment" "$tmp bar" \
	"$(cd "$tmp" && FOO=bar "$probe" -m "$mode" -- sh -c 'echo "$PWD $FOO"')"

echo "# signals"
# shellcheck disable=SC2016 # expanded by the session's shell
"$probe" -m "$mode" -- sh -c 'trap "echo got TERM; exit 7" TERM; echo ready; i=0
	while [ $i -lt 400 ]; do sleep 0.05; i=$((i + 1)); done; echo timeout' >"$tmp/term" &
pid=$!
background+=("$pid")
wait_for "$tmp/term" ready || true
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
check "SIGTERM sent to sluice reaches COMMAND" "ready got TERM" "$(oneline <"$tmp/term")"
check "... which exits with its trap's status" 7 "$rc"
check "Ctrl-C on the terminal reaches COMMAND once; kill -USR1 is forwarded" "ints=1 exit 0" \
	"$(python3 "$client" ctrlc "$probe" -m "$mode" | tr -d '\r')"

echo "# nothing of the session remains"
marker="86$$"
"$probe" -m "$mode" -- sh -c "setsid sleep $marker </dev/null >/dev/null 2>&1 & i=0
	while [ ! -e '$tmp/go' ] && [ \$i -lt 400 ]; do sleep 0.05; i=\$((i + 1)); done" &
pid=$!
background+=("$pid")
daemon=""
for _ in $(seq 200); do
	daemon=$(pgrep -f "^sleep $marker\$" || true)
	[ -n "$daemon" ] && break
	sleep 0.05
done
check "a daemon (setsid) runs inside the session" yes "$([ -n "$daemon" ] && echo yes || echo no)"
touch "$tmp/go"
rc=0; wait "$pid" || rc=$?
check "the session ends when COMMAND does" 0 "$rc"
check "the daemon is gone with it" "" "$(pgrep -f "^sleep $marker\$" || true)"

# Fail closed: if sluice is killed outright, init's PDEATHSIG takes the whole session down.
"$probe" -m "$mode" -- sh -c "setsid sleep 87$$ </dev/null >/dev/null 2>&1 & exec sleep 88$$" &
pid=$!
background+=("$pid")
for _ in $(seq 200); do
	[ "$(pgrep -f "^sleep 8[78]$$\$" | wc -l)" = 2 ] && break
	sleep 0.05
done
check "a session with a daemon runs" 2 "$(pgrep -f "^sleep 8[78]$$\$" | wc -l)"
{ kill -KILL "$pid" && wait "$pid"; } 2>/dev/null || true
for _ in $(seq 200); do
	[ -z "$(pgrep -f "^sleep 8[78]$$\$")" ] && break
	sleep 0.05
done
check "sluice killed by SIGKILL: COMMAND and daemon die too" "" \
	"$(pgrep -f "^sleep 8[78]$$\$" || true)"
check "no process of any session is left" "" "$(pgrep -f "$tmp" || true)"
check "host nftables ruleset unchanged" "$(cat "$tmp/host-nft.before")" "$(nft list ruleset)"
check "host links unchanged" "$(cat "$tmp/host-link.before")" "$(ip -o link)"

checks_done
