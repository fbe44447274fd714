#!/usr/bin/env bash
# test_escape.sh — e2e: a root COMMAND attacks its own session from inside and every attempt to
# leave the capture or change it fails; after each one the session is still captured.
#
#   ┌─ sluice-world-PID ──────────────────────────────┐       ┌─ sluice-srv-PID ──────────────┐
#   │ sluice run --policy escape.policy   (sluice pid)│ veth  │ a.test 198.51.100.10 (allowed)│
#   │ └─ session, as root: attacks.py, nsenter, nft,  │──────▶│ b.test 198.51.100.20 (denied) │
#   │    ip, unshare, mount, setpriv ...              │ w0/s0 │ HTTP :80, dnsmasq             │
#   │    then: curl 198.51.100.20 (must be denied     │       └───────────────────────────────┘
#   │    and audited), curl a.test (must answer)      │
#   │ a "container": a user + network namespace that  │  (the full map of addresses and
#   │ root created (unshare -U -n), its pid known     │   services is at the top of world.sh)
#   └─────────────────────────────────────────────────┘
#
# A successful attack could only reach namespaces this test made: the world's network (where a
# direct connection to 198.51.100.20 is answered, which the checks would show as "reached"), the
# session's own, or the container's empty one. The machine's own namespaces are never a target.
#
# Usage: test_escape.sh PATH/TO/sluice [netns|divert]     (the mode may also come from SLUICE_MODE)
# Needs root; exits 77 (skipped) otherwise. Every session is bounded by timeout(1).
set -e

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/checks.sh
. "$here/checks.sh"
suite_start "$0" "${1:-}" "${2:-}" ip nft curl dig dnsmasq openssl \
	python3 jq timeout pgrep nsenter unshare setpriv
# shellcheck source=SCRIPTDIR/world.sh
. "$here/world.sh"

tmp=$(mktemp -d "/tmp/sluice-e2e-escape.$$.XXXXXX")
background=()
cleanup() {
	local pid
	for pid in "${background[@]}"; do
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	world_down
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


# One session in the world, at most 60 s; rules are labelled escape.policy:LINE.
srun() {
	(cd "$tmp" &&
		in_world timeout -k 5 60 "$sluice" run --mode "$mode" --policy escape.policy "$@")
}

cat >"$tmp/escape.policy" <<'EOF'
# test_escape.sh's policy: a.test on port 80, nothing else
allow domain a.test port 80
default deny
EOF

# Run in every session after its attack: a denied destination (b.test's address, no rule) and
# an allowed one (a.test).
after='curl -s -4 --max-time 5 -o /dev/null http://198.51.100.20/; echo "denied $?"
curl -s -4 --max-time 10 http://a.test/; echo'

# NAME: the session whose output is $tmp/NAME.out and audit trail $tmp/NAME.jsonl is still
# captured after its attack.
still_captured() {
	local denied events
	denied=$(sed -n 's/^denied //p' "$tmp/$1.out")
	# Every connection to 198.51.100.20 in the session, the attack's own included, was denied.
	events=$(jq -rs 'map(select(.event == "connect" and .dst == "198.51.100.20")
		| "\(.decision) \(.rule)") | unique | join(", ")' "$tmp/$1.jsonl")
	check "... then still captured: denied and audited, allowed answered" \
		"refused-or-reset, deny default, hello from 198.51.100.10 host=a.test" \
		"$(fail_kind "${denied:-none}"), $events, $(grep '^hello' "$tmp/$1.out")"
}

# NAME SCRIPT: runs the shell SCRIPT, then $after, as a session; output in $tmp/NAME.out.
attack() {
	srun --audit "$tmp/$1.jsonl" -- sh -c "$2
$after" >"$tmp/$1.out" 2>"$tmp/$1.err" || true
}

# The first line of NAME's output that contains TEXT.
said() { # NAME TEXT
	grep -m 1 -F -- "$2" "$tmp/$1.out" || true
}

cat >"$tmp/attacks.py" <<'EOF'
# attacks.py ATTACK [ARG...]: one attempt, from inside a session, to leave it or to change its
# capture. Prints "ATTACK: RESULT", RESULT being "ok" or the errno name of the refusal. Attacks
# that would move this very process elsewhere add where a direct connection to 198.51.100.20:80
# then ends: "reached" (answered by the server: outside the capture) or "refused".
import ctypes, errno, os, platform, select, socket, struct, sys

libc = ctypes.CDLL(None, use_errno=True)
NS = {"user": 0x10000000, "net": 0x40000000}
SIGCHLD, WALL = 17, 0x40000000
PTRACE_ATTACH, PTRACE_DETACH = 16, 17
SYS_CLONE = {"x86_64": 56, "aarch64": 220}


def errname(e):
    return errno.errorcode.get(e, str(e))


def called(rc):
    return "ok" if rc != -1 else errname(ctypes.get_errno())


def tried(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return errname(e.errno)


def reach():
    try:
        with socket.create_connection(("198.51.100.20", 80), timeout=3) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: b.test\r\n\r\n")
            return "reached" if b"hello from" in s.recv(4096) else "refused"
    except OSError:
        return "refused"


def say(what, res, moved=False):
    print("%s: %s%s" % (what, res, "; then " + reach() if moved else ""), flush=True)


def setns(fd, types):
    for t in types.split("+"):
        rc = called(libc.setns(fd if isinstance(fd, int) else fd[t], NS[t]))
        if rc != "ok":
            return rc
    return "ok"


attack, args = sys.argv[1], sys.argv[2:]
if attack == "setns-path":          # TYPE PATH: open a namespace file and join it
    try:
        fd = os.open(args[1], os.O_RDONLY)
    except OSError as e:
        say("setns %s %s" % (args[0], args[1]), "open " + errname(e.errno), True)
        sys.exit()
    say("setns %s %s" % (args[0], args[1]), setns(fd, args[0]), True)
elif attack == "setns-fd":          # TYPE FD: join the namespace of a descriptor handed in
    say("setns %s fd" % args[0], setns(int(args[1]), args[0]), True)
elif attack == "setns-dir":         # FD: join user+net of the /proc/PID/ns directory FD
    fds = {t: os.open(t, os.O_RDONLY, dir_fd=int(args[0])) for t in ("user", "net")}
    say("setns container user+net", setns(fds, "user+net"), True)
elif attack == "unshare":           # TYPES: unshare(2) with those namespaces
    flags = sum(NS[t] for t in args[0].split("+"))
    say("unshare " + args[0], called(libc.unshare(flags)), True)
elif attack == "clone-newuser":     # clone(2) into a new user namespace
    nr = SYS_CLONE.get(platform.machine())
    if nr is None:
        say("clone newuser", "skipped on " + platform.machine())
        sys.exit()
    libc.syscall.restype = ctypes.c_long
    pid = libc.syscall(ctypes.c_long(nr), ctypes.c_ulong(NS["user"] | SIGCHLD),
                       ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))
    if pid == 0:
        os._exit(0)
    if pid > 0:
        os.waitpid(pid, 0)
    say("clone newuser", called(-1 if pid < 0 else 0))
elif attack == "raw":               # raw IP, packet and ICMP datagram sockets
    res = []
    for what, fam, kind, proto in (("raw", socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
                                   ("packet", socket.AF_PACKET, socket.SOCK_RAW, 0),
                                   ("icmp-dgram", socket.AF_INET, socket.SOCK_DGRAM,
                                    socket.IPPROTO_ICMP)):
        try:
            s = socket.socket(fam, kind, proto)
        except OSError as e:
            res.append("%s %s" % (what, errname(e.errno)))
            continue
        if what == "raw":  # an echo request to a.test's address: is anything answering?
            s.sendto(struct.pack("!BBHHH", 8, 0, 0xf7ff, 0, 0), ("198.51.100.10", 0))
            got = select.select([s], [], [], 1)[0]
            res.append("raw ok, %s" % ("a reply" if got else "no reply"))
        else:
            res.append(what + " ok")
        s.close()
    say("raw sockets", ", ".join(res))
elif attack == "ptrace":            # PID: ptrace it, read its memory, open its namespaces
    pid = int(args[0])
    rc = called(libc.ptrace(PTRACE_ATTACH, pid, None, None))
    if rc == "ok":
        os.waitpid(pid, WALL)
        libc.ptrace(PTRACE_DETACH, pid, None, None)
    say("ptrace %d" % pid, "attach %s, mem %s, ns %s, signal %s" % (
        rc, tried(lambda: open("/proc/%d/mem" % pid, "rb").close()),
        tried(lambda: os.close(os.open("/proc/%d/ns/net" % pid, os.O_RDONLY))),
        tried(lambda: os.kill(pid, 0))))
elif attack == "module":            # load and unload a kernel module
    say("module", "init %s, delete %s" % (called(libc.init_module(None, 0, b"")),
                                          called(libc.delete_module(b"sluice_no_such", 0))))
elif attack == "mount":             # DIR: mount a tmpfs and a proc there
    say("mount", "tmpfs %s, proc %s" % (
        called(libc.mount(b"none", args[0].encode(), b"tmpfs", 0, None)),
        called(libc.mount(b"proc", args[0].encode(), b"proc", 0, None))))
elif attack == "kernel-settings":   # the kernel's settings: /proc/sys and /sys
    def ro(path):
        return "ro" if os.statvfs(path).f_flag & os.ST_RDONLY else "rw"
    cgroup = "/sys/fs/cgroup"
    say("kernel settings", "core_pattern for writing %s, /proc/sys %s, /sys %s, %s %s" % (
        tried(lambda: os.close(os.open("/proc/sys/kernel/core_pattern", os.O_WRONLY))),
        ro("/proc/sys"), ro("/sys"), cgroup, ro(cgroup) if os.path.ismount(cgroup) else "ro"))
elif attack == "procs":             # PID: what /proc shows of the host
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    comm = open("/proc/1/comm").read().strip()
    say("procs", "pid 1 is %s, sluice's pid %s %s" % (
        comm, args[0], "visible" if args[0] in pids else "absent"))
elif attack == "tiocsti":           # push a character into the terminal's input
    import fcntl, termios
    say("tiocsti", tried(lambda: fcntl.ioctl(0, termios.TIOCSTI, b"#")))
else:
    sys.exit("unknown attack " + attack)
EOF
A="python3 $tmp/attacks.py"
eperm="Operation not permitted"

nft list ruleset >"$tmp/host-nft.before"

echo "# the world (mode $mode)"
world_up "$tmp" 1
rc=0; srun -- true 2>"$tmp/err" || rc=$?
check "a session runs at all" "0 ''" "$rc '$(cat "$tmp/err")'"
if [ "$rc" != 0 ]; then
	echo "$passed passed, $failed failed (stopped: no session can run in mode $mode)"
	exit 1
fi
echo "# control: a session without an attack"
attack control true
still_captured control

echo "# what the session holds"
srun -- grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status >"$tmp/caps" || true
sed 's/^/     /' "$tmp/caps"
# Kept: chown dac_override fowner fsetid kill setgid setuid net_bind_service sys_chroot mknod
# audit_write setfcap (bits 0 1 3 4 5 6 7 10 18 27 29 31).
check "root in the session: bounding, permitted, effective sets are the kept list" \
	"00000000a80404fb 00000000a80404fb 00000000a80404fb" \
	"$(awk '$1 == "CapBnd:" || $1 == "CapPrm:" || $1 == "CapEff:" { print $2 }' "$tmp/caps" |
		oneline)"
check "... nothing inheritable or ambient, no_new_privs, a seccomp filter" \
	"0000000000000000 0000000000000000 1 2" \
	"$(awk '$1 == "CapInh:" || $1 == "CapAmb:" || $1 == "NoNewPrivs:" || $1 == "Seccomp:" {
		print $2 }' "$tmp/caps" | oneline)"

echo "# joining other namespaces"
attack nsenter-world "nsenter --net=/run/netns/$WORLD_NS curl -s --max-time 5 \
	http://198.51.100.20/ 2>&1 | sed 's/^/nsenter world: /'
$A setns-path net /run/netns/$WORLD_NS"
check "nsenter into sluice's network namespace (the world's): refused" \
	"nsenter world: nsenter: reassociate to namespace 'ns/net' failed: $eperm" \
	"$(said nsenter-world "nsenter world:")"
check "... setns(2) on it too, and the process stays captured" \
	"setns net /run/netns/$WORLD_NS: EPERM; then refused" \
	"$(said nsenter-world "setns net")"
still_captured nsenter-world

# Only where pid 1 is the session's own init: with the host's /proc it would be the machine's.
attack setns-init "if [ \"\$(cat /proc/1/comm)\" = sluice-init ]; then
	nsenter --net=/proc/1/ns/net true 2>&1 | sed 's/^/nsenter 1: /'
	$A setns-path net /proc/1/ns/net
else echo \"nsenter 1: not tried, pid 1 is \$(cat /proc/1/comm)\"; fi"
check "nsenter --net=/proc/1/ns/net (pid 1 is the session's init): refused" \
	"nsenter 1: nsenter: cannot open /proc/1/ns/net: Permission denied" \
	"$(said setns-init "nsenter 1:")"
check "... setns(2) cannot even open it" "setns net /proc/1/ns/net: open EACCES; then refused" \
	"$(said setns-init "setns net")"
still_captured setns-init

# A descriptor of the world's namespace handed to COMMAND as its stdin.
srun --audit "$tmp/setns-fd.jsonl" -- sh -c "exec 3<&0 </dev/null; $A setns-fd net 3
$after" <"/run/netns/$WORLD_NS" >"$tmp/setns-fd.out" 2>"$tmp/setns-fd.err" || true
check "a descriptor of sluice's network namespace handed in: setns refused" \
	"setns net fd: EPERM; then refused" "$(said setns-fd "setns net fd")"
still_captured setns-fd

# A user namespace root created, with a network namespace of its own: its owner's euid (0) has
# every capability in it whatever its capability sets, so only the seccomp filter stops a
# session process from joining it. The control joins it from outside sluice with no capability.
ip netns exec "$WORLD_NS" unshare -U -n sleep 120 &
container=$!
background+=("$container")
container_ready() { # unshare has made the user namespace and exec'd sleep
	local u
	u=$(readlink "/proc/$container/ns/user" 2>/dev/null) && [ -n "$u" ] &&
		[ "$u" != "$(readlink /proc/self/ns/user)" ]
}
poll 100 container_ready || true
setpriv --inh-caps=-all --bounding-set=-all sh -c "exec 3<&0 </dev/null; $A setns-dir 3" \
	<"/proc/$container/ns" >"$tmp/container-control.out" 2>&1 || true
check "control: a capability-less root outside sluice joins the container" \
	"setns container user+net: ok; then refused" \
	"$(said container-control "setns container")"
srun --audit "$tmp/container.jsonl" -- sh -c "exec 3<&0 </dev/null; $A setns-dir 3
$after" <"/proc/$container/ns" >"$tmp/container.out" 2>"$tmp/container.err" || true
check "a session process cannot: setns refused" "setns container user+net: EPERM; then refused" \
	"$(said container "setns container")"
still_captured container
kill -KILL "$container" 2>/dev/null || true

echo "# new namespaces"
attack unshare "unshare -n curl -s --max-time 5 http://198.51.100.20/ 2>&1 |
	sed 's/^/unshare -n: /'
unshare -U true 2>&1 | sed 's/^/unshare -U: /'
unshare -Ur true 2>&1 | sed 's/^/unshare -Ur: /'
$A unshare net
$A unshare user
$A unshare user+net
$A clone-newuser"
check "unshare -n then connect: refused" \
	"unshare -n: unshare: unshare failed: $eperm" "$(said unshare "unshare -n:")"
check "unshare -U: refused" "unshare -U: unshare: unshare failed: $eperm" \
	"$(said unshare "unshare -U:")"
check "unshare -Ur: refused" "unshare -Ur: unshare: unshare failed: $eperm" \
	"$(said unshare "unshare -Ur:")"
check "unshare(2): net, user, user+net refused" \
	"$(for t in net user user+net; do echo "unshare $t: EPERM; then refused"; done |
		paste -sd'|')" \
	"$(grep '^unshare [a-z+]*:' "$tmp/unshare.out" | paste -sd'|')"
check "clone(2) with CLONE_NEWUSER: refused" "clone newuser: EPERM" \
	"$(said unshare "clone newuser")"
still_captured unshare

echo "# the session's own network"
attack nft "nft list ruleset >/dev/null 2>&1; echo \"nft list: \$?\"
nft flush ruleset 2>&1 | sed 's/^/nft flush: /'"
check "nft list ruleset: refused" "nft list: 1" "$(said nft "nft list:")"
check "nft flush ruleset: refused" "Operation not permitted" \
	"$(said nft "nft flush:" | grep -o 'Operation not permitted')"
still_captured nft

ip_changes=("addr add 198.51.100.20/32 dev lo" "route replace default dev lo" "link set lo down"
	"link add sl0 type dummy")
attack ip "for c in $(printf "'%s' " "${ip_changes[@]}"); do
	echo \"ip \$c: \$(ip \$c 2>&1)\"; done"
check "ip addr add, route replace, link set down, link add: all refused" \
	"$(for c in "${ip_changes[@]}"; do echo "ip $c: RTNETLINK answers: $eperm"; done |
		paste -sd'|')" \
	"$(grep '^ip ' "$tmp/ip.out" | paste -sd'|')"
still_captured ip

attack raw "$A raw"
check "raw IP, packet and ICMP datagram sockets: refused" \
	"raw sockets: raw EPERM, packet EPERM, icmp-dgram EACCES" "$(said raw "raw sockets")"
still_captured raw

echo "# sluice and the session's init"
# sluice's pid is written for the session once it runs; ip netns exec execs, so $! is sluice.
(cd "$tmp" && exec ip netns exec "$WORLD_NS" "$sluice" run --mode "$mode" \
	--policy escape.policy --audit "$tmp/sluice.jsonl" -- sh -c "i=0
	while [ ! -s '$tmp/sluice.pid' ] && [ \$i -lt 200 ]; do sleep 0.05; i=\$((i + 1)); done
	$A procs \$(cat '$tmp/sluice.pid')
	$A ptrace \$(cat '$tmp/sluice.pid')
	$A ptrace 1
	$after") >"$tmp/sluice.out" 2>"$tmp/sluice.err" &
sluice_pid=$!
background+=("$sluice_pid")
echo "$sluice_pid" >"$tmp/sluice.pid"
wait "$sluice_pid" || true
check "/proc shows the session only: pid 1 is init, sluice's pid does not exist" \
	"procs: pid 1 is sluice-init, sluice's pid $sluice_pid absent" "$(said sluice "procs:")"
check "ptrace, /proc/PID/mem, ns or a signal to sluice: nothing to name" \
	"ptrace $sluice_pid: attach ESRCH, mem ENOENT, ns ENOENT, signal ESRCH" \
	"$(said sluice "ptrace $sluice_pid:")"
check "ptrace, /proc/1/mem or ns of init (non-dumpable, as sluice made it): refused" \
	"ptrace 1: attach EPERM, mem EACCES, ns EACCES, signal ok" "$(said sluice "ptrace 1:")"
still_captured sluice

# shellcheck disable=SC2016 # expanded by the session's shell
attack kill "if [ \"\$(readlink /proc/self/ns/pid)\" != '$(readlink /proc/self/ns/pid)' ]; then
	sleep 30 & kill -KILL -1; wait \$!; echo \"kill -1: \$?\"; fi"
check "kill -KILL -1 as root reaches the session's processes only" "kill -1: 137" \
	"$(said kill "kill -1:")"
check "... sluice and the servers are alive: the session ended normally" "session_end 0 ok" \
	"$(jq -r 'select(.event == "session_end") | "\(.event) \(.exit)"' "$tmp/kill.jsonl") $(
		kill -0 "${WORLD_PIDS[1]}" && echo ok)"
still_captured kill

echo "# the kernel and the host's settings"
attack module "$A module"
if [ "$(said module "module:")" = "module: init ENOSYS, delete ENOSYS" ]; then
	echo "skip init_module, delete_module: this kernel has no module support (ENOSYS)"
else
	check "init_module, delete_module: refused" "module: init EPERM, delete EPERM" \
		"$(said module "module:")"
fi
still_captured module

mkdir "$tmp/mnt"
attack mount "$A mount $tmp/mnt
mount -t proc proc $tmp/mnt 2>&1 | sed 's/^/mount(8): /'"
check "mount a tmpfs or a proc: refused" "mount: tmpfs EPERM, proc EPERM" "$(said mount "mount:")"
check "... mount(8) too" "mount(8): mount: $tmp/mnt: permission denied." \
	"$(said mount "mount(8):")"
still_captured mount

attack settings "$A kernel-settings"
cgroup_ro="/sys/fs/cgroup ro"
check "core_pattern cannot be opened for writing; /proc/sys, /sys, cgroups read-only" \
	"kernel settings: core_pattern for writing EROFS, /proc/sys ro, /sys ro, $cgroup_ro" \
	"$(said settings "kernel settings:")"
still_captured settings

echo "# setuid and file capabilities"
# Run as nobody: a setuid-root copy of cat, a copy with cap_net_bind_service+ep (a capability
# sessions keep) and one with cap_net_admin+ep (one they do not), set as security.capability
# revision 2. Outside sluice the first two raise privileges; in a session (no_new_privs) the
# setuid bit gives nothing, and the third, whose capability the bounding set lacks, is not
# executed at all.
chmod 711 "$tmp"
install -m 4755 "$(command -v cat)" "$tmp/suid-cat"
for c in bind:10 admin:12; do
	install -m 0755 "$(command -v cat)" "$tmp/fcap-${c%:*}-cat"
	python3 -c 'import os, struct, sys
os.setxattr(sys.argv[1], "security.capability",
            struct.pack("<5I", 0x02000001, 1 << int(sys.argv[2]), 0, 0, 0))' \
		"$tmp/fcap-${c%:*}-cat" "${c#*:}"
done
privileges() { # FILE: euid and effective capabilities of a cat that printed its status to FILE
	awk '$1 == "Uid:" { u = $3 } $1 == "CapEff:" { c = $2 }
		END { print (u == "" ? "not run" : "euid " u ", CapEff " c) }' "$1"
}
as_nobody="setpriv --reuid=65534 --regid=65534 --clear-groups"
for f in suid fcap-bind; do
	# shellcheck disable=SC2086 # as_nobody is a command and its options
	in_world $as_nobody "$tmp/$f-cat" /proc/self/status >"$tmp/$f-control" 2>&1 || true
done
suid_control=$(privileges "$tmp/suid-control")
fcap_control=$(privileges "$tmp/fcap-bind-control")
attack setuid "for f in suid fcap-bind fcap-admin; do
	$as_nobody $tmp/\$f-cat /proc/self/status >$tmp/\$f-session 2>&1
	echo \"exec \$f: \$?\"; done"
if [ "${suid_control%%,*}" = "euid 0" ]; then
	check "setuid-root binary run by nobody in a session: no root, no capability" \
		"euid 65534, CapEff 0000000000000000" "$(privileges "$tmp/suid-session")"
else
	echo "skip setuid-root binary: it gives nothing here even outside sluice ($suid_control)"
fi
# no_new_privs should keep the file's capability too, but kernels differ (some grant file
# capabilities that stay within the bounding set): what must hold is that nothing beyond the
# kept list is gained.
if [ "$fcap_control" = "euid 65534, CapEff 0000000000000400" ]; then
	got=$(privileges "$tmp/fcap-bind-session")
	echo "     (cap_net_bind_service+ep run by nobody in a session: $got)"
	check "cap_net_bind_service+ep binary run by nobody in a session: nothing not kept" \
		"euid 65534, beyond 0" \
		"${got%%,*}, beyond $(( 0x${got##*CapEff } & ~0xa80404fb ))"
else
	echo "skip file capabilities: they give nothing here even outside sluice ($fcap_control)"
fi
check "cap_net_admin+ep binary (beyond the bounding set): not executed" \
	"exec fcap-admin: 126 setpriv: failed to execute $tmp/fcap-admin-cat: $eperm" \
	"$(said setuid "exec fcap-admin:") $(cat "$tmp/fcap-admin-session")"
still_captured setuid

echo "# the terminal"
cat >"$tmp/pty.py" <<'EOF'
# pty.py CMD...: runs CMD on a new pseudo-terminal, prints what it wrote (at most 60 s).
import os, select, sys, time
pid, fd = os.forkpty()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
out, end = b"", time.monotonic() + 60
while time.monotonic() < end:
    if not select.select([fd], [], [], 1)[0]:
        continue
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace").replace("\r", ""))
EOF
tiocsti_control=$(in_world python3 "$tmp/pty.py" python3 "$tmp/attacks.py" tiocsti)
(cd "$tmp" && in_world python3 "$tmp/pty.py" timeout -k 5 60 "$sluice" run --mode "$mode" \
	--policy escape.policy --audit "$tmp/tiocsti.jsonl" -- sh -c "$A tiocsti
$after") >"$tmp/tiocsti.out" 2>&1 || true
if [ "${tiocsti_control%tiocsti: ok}" != "$tiocsti_control" ]; then
	check "TIOCSTI (typing into the user's shell after the session): refused" "tiocsti: EPERM" \
		"$(said tiocsti "tiocsti:")"
else
	echo "skip TIOCSTI: refused here even outside sluice ($tiocsti_control)"
fi
still_captured tiocsti

echo "# nothing is left behind"
check "the world's nftables ruleset is empty" "" "$(in_world nft list ruleset)"
check "the host's nftables ruleset is unchanged" "$(cat "$tmp/host-nft.before")" \
	"$(nft list ruleset)"

checks_done
