#!/usr/bin/env bash
# windows.sh — the Windows build of sluice run through an emulator (Wine): every check of run.sh,
# then `sluice run` against the test double WinDivert.dll built beside sluice.exe (the real
# driver cannot run here): COMMAND's exit status passes through; each way WinDivert can be
# missing or refuse gives one line and exit 125; the system resolver's answers reach the DNS map.
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

# The DNS watch through `sluice run`: other processes' queries to 192.0.2.53 pass and are
# remembered (Wine has no DNS Client service, so every process outside the session counts); the
# resolver's answer for system.test (A 203.0.113.7), a name the policy allows, reaches the
# session's DNS map (--stats: dns_system_answers, dns_system_names); the answer for denied.test
# does not (dns_system_denied), nor does a forged id. COMMAND stays a second, so that the
# answers are handled while the session runs.
printf 'allow domain system.test\ndefault deny\n' >"$tmp/dns.policy"
python3 - "$tmp/dns.script" <<'PY'
import struct, sys

def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

def udp(src, sport, dst, dport, payload):
    s, d = bytes(map(int, src.split("."))), bytes(map(int, dst.split(".")))
    ulen = 8 + len(payload)
    u = struct.pack("!HHHH", sport, dport, ulen, 0) + payload
    u = u[:6] + struct.pack("!H", csum(s + d + struct.pack("!BBH", 0, 17, ulen) + u)) + u[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 1, 0, 64, 17, 0, s, d)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return (ip + u).hex()

def dns(qid, name, answer):
    q = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0\0\1\0\1"
    head = struct.pack("!HHHHHH", qid, 0x8180 if answer else 0x0100, 1, 1 if answer else 0, 0, 0)
    rr = bytes([0xC0, 12, 0, 1, 0, 1, 0, 0, 1, 0x2C, 0, 4, 203, 0, 113, 7]) if answer else b""
    return head + q + rr

queries = [(50001, 0x1111, "system.test"), (50002, 0x2222, "denied.test")]
with open(sys.argv[1], "w") as f:
    f.write("handle socket\n")
    for port, _, _ in queries:
        f.write("connect pid=900 proto=udp local=10.0.0.2:%d remote=192.0.2.53:53\n" % port)
    f.write("signal connected\nhandle network\nwait connected\n")
    for port, qid, name in queries:
        f.write("packet out hex %s\n" % udp("10.0.0.2", port, "192.0.2.53", 53,
                                            dns(qid, name, False)))
    f.write("signal passed\nhandle network\nwait passed\n")
    f.write("packet in hex %s\n" % udp("192.0.2.53", 53, "10.0.0.2", 50001,
                                       dns(0x1112, "system.test", True)))
    for port, qid, name in queries:
        f.write("packet in hex %s\n" % udp("192.0.2.53", 53, "10.0.0.2", port,
                                           dns(qid, name, True)))
PY
out=$(env FAKE_WINDIVERT_SCRIPT="$(winpath "$tmp/dns.script")" \
	"$tmp/sluice" run --quiet --stats --policy "$(winpath "$tmp/dns.policy")" \
	-- "$child" sleep 1000 2>&1 | tr -d '\r')
if grep -Eq 'dns_system_answers +2$' <<<"$out" && grep -Eq 'dns_system_names +1$' <<<"$out" &&
	grep -Eq 'dns_system_denied +1$' <<<"$out" &&
	grep -Eq 'windivert_dns_answers_unmatched +1$' <<<"$out"; then
	echo "ok   run: the system resolver's answer for an allowed name reaches the DNS map;" \
		"for a denied name, or forged, not"
else
	echo "FAIL run: the system resolver's answers: got"
	echo "$out" | sed 's/^/    /'
	status=1
fi
exit "$status"
