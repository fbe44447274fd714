#!/usr/bin/env bash
# bench_paths.sh — issue 7's benchmark: what interception costs, measured side by side in one run
# on five paths from the same client to the same server: no interception, sluice's two Linux
# modes, and the relays users would pick instead (docs/performance.md explains the table).
#
#   ┌─ sluice-world-PID ───────────────────────────────────┐       ┌─ sluice-srv-PID ─────────────┐
#   │ direct:  netbench CLIENT                             │       │ netbench serve 5201          │
#   │ netns:   sluice run --mode netns  -- netbench CLIENT │ veth  │   on 198.51.100.10           │
#   │ divert:  sluice run --mode divert -- netbench CLIENT │──────▶│ dnsmasq (no query log)       │
#   │ haproxy: netbench CLIENT ─nft redirect─▶ haproxy     │ w0/s0 │   on 203.0.113.55:53,        │
#   │ socat:   netbench CLIENT ─nft redirect─▶ socat       │       │   bench.test 198.51.100.10   │
#   │ (the relays dial from 192.0.2.3: never redirected)   │       │                              │
#   └──────────────────────────────────────────────────────┘       └──────────────────────────────┘
#   (the world is tests/e2e/world.sh's; nothing here touches this machine's own network)
#
# HAProxy (tcp mode, splice-request/splice-response, default threads) and socat (fork) sit where
# sluice's netns mode sits: the client connects to the server's own address and an nftables
# `redirect` in the world namespace (present only while that path is measured) hands the
# connection to the relay on 127.0.0.1. HAProxy dials the original destination (`server
# 0.0.0.0`, SO_ORIGINAL_DST), as sluice does; socat cannot and dials the fixed server address.
#
# BENCH_REPEAT rounds of the memory figures, then BENCH_REPEAT rounds of the traffic figures; each
# round measures each figure on every path, the paths interleaved (the first path of the list
# rotates from round to round) so that a noisy neighbour on the machine hits them alike:
#   bulk_1 / bulk_8   bytes/s the server confirms receiving, 1 and 8 streams (netbench bulk);
#                     the relay's CPU seconds (utime + stime) over those bytes: CPU s per GiB
#   rr_1 / rr_64      connect, 100-byte request, 1 KiB answer, close, per second, 1 and 64
#                     clients (netbench rr); rr_1 also gives connect-to-first-byte p50 / p99
#   dns               A queries/s with BENCH_DNS_INFLIGHT in flight, and p50 with one in flight
#                     (netbench dns), straight to dnsmasq or through sluice's DNS proxy
#   mem               the relay's RSS idle (a fresh process) and with BENCH_IDLE_CONNS idle
#                     relayed connections (netbench idle); kernel memory (socket and pipe slab
#                     objects, TCP buffer pages) over the same connections, machine-wide
# A path that fails shows "n/a (its first stderr line)" and, if it cannot start, is not run again.
#
# usage: scripts/bench_paths.sh PATH/TO/sluice PATH/TO/netbench
#        needs root and the tools of `scripts/deps.sh bench`; exits 77 (skipped) without them
# env:   BENCH_SECONDS      seconds per measurement (3)    BENCH_REPEAT  rounds (3)
#        BENCH_PATHS        paths ("direct netns divert haproxy socat")
#        BENCH_IDLE_CONNS   idle connections (10000; fewer when the descriptor limit says so)
#        BENCH_DNS_INFLIGHT DNS queries in flight for queries/s (32)
#        BENCH_JSON         the JSON copy (build/bench/results.json in the source tree)
#        BENCH_PROFILE      1: after the rounds, `perf record -g` sluice during rr_64 (each
#                           sluice path) and write the top symbols beside the JSON
#        BENCH_KEEP_TMP     1: keep the scratch directory (clients' output, relays' logs)
set -eu

seconds=${BENCH_SECONDS:-3}
repeat=${BENCH_REPEAT:-3}
read -r -a paths <<<"${BENCH_PATHS:-direct netns divert haproxy socat}"
idle_asked=${BENCH_IDLE_CONNS:-10000}
dns_inflight=${BENCH_DNS_INFLIGHT:-32}
profile=${BENCH_PROFILE:-0}
root=$(cd "$(dirname "$0")/.." && pwd)
json=${BENCH_JSON:-$root/build/bench/results.json}

die() {
	echo "bench_paths.sh: $*" >&2
	exit 1
}

whole() { # NAME VALUE MIN MAX
	case $2 in '' | *[!0-9]*) die "$1 must be a whole number" ;; esac
	if [ "$2" -lt "$3" ] || [ "$2" -gt "$4" ]; then
		die "$1 must be within $3..$4"
	fi
}

[ $# -eq 2 ] || die "usage: $0 PATH/TO/sluice PATH/TO/netbench"
[ -x "$1" ] || die "no sluice at $1"
[ -x "$2" ] || die "no netbench at $2"
sluice=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
netbench=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
whole BENCH_SECONDS "$seconds" 1 600
whole BENCH_REPEAT "$repeat" 1 100
whole BENCH_IDLE_CONNS "$idle_asked" 0 100000
whole BENCH_DNS_INFLIGHT "$dns_inflight" 1 1024
for p in "${paths[@]}"; do
	case $p in direct | netns | divert | haproxy | socat) ;;
	*) die "unknown path '$p' in BENCH_PATHS" ;; esac
done
skip() {
	echo "bench_paths.sh: SKIP: $*"
	exit 77
}
[ "$(id -u)" = 0 ] || skip "needs root (it builds network namespaces)"
for tool in ip nft dnsmasq python3 openssl dig timeout ps; do
	command -v "$tool" >/dev/null || skip "$tool not installed (scripts/deps.sh installs it)"
done

# shellcheck source=SCRIPTDIR/../tests/e2e/world.sh
. "$root/tests/e2e/world.sh"

server_addr=198.51.100.10
server_port=5201
dns_addr=203.0.113.55 # a dnsmasq of our own: the world's logs every query
dns_name=bench.test
relay_src=192.0.2.3   # the relays' upstream source address, which the redirect leaves alone
declare -A relay_port=([haproxy]=15201 [socat]=15202)
# netbench's own bounds: SECONDS, then at most 30 s for a bulk count; the rest is sluice's start.
limit=$((seconds + 45))
hz=$(getconf CLK_TCK)

# Idle connections: sluice holds six descriptors for each (two sockets, two pipes), and neither
# it nor this script may go past the hard limit (raising it needs CAP_SYS_RESOURCE).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fd_hard=$(ulimit -Hn)
[ "$fd_hard" = unlimited ] && fd_hard=1048576
idle_conns=$idle_asked
idle_fit=$(((fd_hard - 64) / 6 / 100 * 100 - 100))
[ "$idle_conns" -le "$idle_fit" ] || idle_conns=$idle_fit
[ "$idle_conns" -ge 0 ] || idle_conns=0

tmp=$(mktemp -d "/tmp/sluice-bench-paths.$$.XXXXXX")
job=
server=
dnsd=
haproxy=
socat=
cleanup() {
	local pid
	# TERM first: timeout(1) passes it on, and sluice takes its session down with it.
	for pid in $job $server $dnsd $haproxy $socat; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in $job $server $dnsd $haproxy $socat; do
		wait "$pid" 2>/dev/null || true
	done
	world_down
	[ -n "${BENCH_KEEP_TMP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- Bookkeeping: raw results, and why a figure or a path has none ----

results=$tmp/results # FIGURE PATH ROUND VALUE, one measurement a line
nas=$tmp/na          # FIGURE<TAB>PATH<TAB>REASON
: >"$results"
: >"$nas"
declare -A dead=() # PATH -> why it is not run any more
declare -A failed=() # "GROUP PATH" -> why that measurement is not run any more

record() { # FIGURE PATH ROUND VALUE
	echo "$1 $2 $3 $4" >>"$results"
}

not_measured() { # GROUP PATH REASON [FIGURES...]: the figures of GROUP on PATH have no value
	local group=$1 path=$2 why=$3 f
	shift 3
	failed["$group $path"]=$why
	for f in "$@"; do
		printf '%s\t%s\t%s\n' "$f" "$path" "$why" >>"$nas"
	done
	printf '  %-8s %-8s n/a (%s)\n' "$group" "$path" "$why" >&2
}

# ---- The paths ----

cat >"$tmp/bench.policy" <<EOF
# bench_paths.sh: the benchmark server and the benchmark name, nothing else
allow cidr 198.51.100.0/24 port $server_port
allow domain $dns_name
default deny
EOF

# Sets prefix to the command line that runs a netbench client on PATH (netbench follows it).
path_prefix() { # PATH
	case $1 in
	netns | divert)
		prefix=("$sluice" run --mode "$1" --quiet --policy "$tmp/bench.policy" --) ;;
	*) prefix=() ;;
	esac
}

relay_on() { # PATH: for a relay, the redirect that hands it the client's connections
	case $1 in haproxy | socat) ;; *) return 0 ;; esac
	in_world nft -f - <<-EOF
		table ip sluice_bench {
			chain out {
				type nat hook output priority -100; policy accept;
				ip saddr != $relay_src ip daddr $server_addr \
					tcp dport $server_port redirect to :${relay_port[$1]}
			}
		}
	EOF
}

relay_off() {
	in_world nft delete table ip sluice_bench 2>/dev/null || true
}

# Starts a netbench client on PATH in the background: job is timeout(1)'s pid, whose child is
# sluice (sluice paths) or netbench; output in $tmp/out and $tmp/err.
start_client() { # PATH NETBENCH-ARGS...
	local path=$1
	local -a prefix
	shift
	path_prefix "$path"
	: >"$tmp/out" # now, not in the background: await_line must not see the last run's line
	: >"$tmp/err"
	timeout -k 5 "$limit" ip netns exec "$WORLD_NS" "${prefix[@]}" "$netbench" "$@" \
		</dev/null >"$tmp/out" 2>"$tmp/err" &
	job=$!
}

# Waits for the client; sets rc.
finish_client() {
	rc=0
	wait "$job" || rc=$?
	job=
}

# Waits until the client printed a line starting with KEY= (or ended); prints that line.
await_line() { # KEY
	local i
	for ((i = 0; i < (limit + 5) * 20; i++)); do
		if grep -q "^$1=" "$tmp/out" 2>/dev/null; then
			grep -m 1 "^$1=" "$tmp/out"
			return 0
		fi
		kill -0 "$job" 2>/dev/null || break
		sleep 0.05
	done
	grep -m 1 "^$1=" "$tmp/out" 2>/dev/null || true
}

# The pid of the process relaying for PATH once it runs (sluice: the client job's child), or
# nothing.
relay_pid() { # PATH
	local i c
	case $1 in
	haproxy) echo "$haproxy" ;;
	socat) echo "$socat" ;;
	netns | divert)
		for ((i = 0; i < 200; i++)); do
			for c in $(ps -o pid= --ppid "$job" 2>/dev/null); do
				if [ "$(readlink "/proc/$c/exe" 2>/dev/null)" = "$sluice" ]; then
					echo "$c"
					return
				fi
			done
			kill -0 "$job" 2>/dev/null || return 0
			sleep 0.05
		done ;;
	esac
}

# CPU clock ticks of PID: utime + stime, plus its reaped children's for socat (which forks one
# per connection). Sluice's children are the command: never counted.
cpu_ticks() { # PID [children]
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	stat=${stat##*) }
	# shellcheck disable=SC2086
	set -- ${stat} "${2:-}"
	if [ "${!#}" = children ]; then
		echo $((${12} + ${13} + ${14} + ${15}))
	else
		echo $((${12} + ${13}))
	fi
}

rss_kib() { # PID
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true
}

# Kernel memory that sockets, pipes and their descriptors take, machine-wide, in bytes: the slab
# caches they are made of (socket, inode, file, dentry, epoll, conntrack, kmalloc for pipe
# rings) plus TCP buffer pages. TIME_WAIT and request socks are left out: they drain on their own
# and would blur the difference.
kernel_bytes() {
	local slab pages
	slab=$(awk 'NR > 2 && ($1 ~ /^(TCP|TCPv6|sock_inode_cache|filp|dentry|inode_cache)$/ ||
		$1 ~ /^(eventpoll_|lsm_|skbuff_|nf_conntrack)/ ||
		($1 ~ /^kmalloc-/ && $1 !~ /^kmalloc-rcl-/)) { s += $2 * $4 }
		END { printf "%.0f", s }' /proc/slabinfo)
	# shellcheck disable=SC2016 # awk's own $
	pages=$(in_world awk '$1 == "TCP:" {
		for (i = 2; i < NF; i++) if ($i == "mem") print $(i + 1) }' /proc/net/sockstat)
	echo $((slab + ${pages:-0} * $(getconf PAGESIZE)))
}

# Waits (at most 5 s) until the last run's sockets are gone: no orphaned TCP socket, and the
# count of allocated ones steady, so that the kernel's figure measures only the next one.
settle() {
	local i last="" now
	for ((i = 0; i < 50; i++)); do
		# shellcheck disable=SC2016 # awk's own $
		now=$(in_world awk '$1 == "TCP:" { print $5, $9 }' /proc/net/sockstat)
		[ "$now" != "$last" ] || [ "${now%% *}" != 0 ] || return 0
		last=$now
		sleep 0.1
	done
}

# Why the client produced no figure: "netbench: ..." or "sluice exited N: ...".
client_failure() { # PATH
	local who=netbench
	case $1 in netns | divert) who=sluice ;; esac
	case $rc in
	124 | 137) echo "timed out after $limit s" ;;
	*) echo "$who exited $rc: $(head -n 1 "$tmp/err")" ;;
	esac
}

# "KEY=VALUE" of LINE, or nothing.
field() { # LINE KEY
	printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1
}

show() { # GROUP PATH TEXT
	printf '  %-8s %-8s %s\n' "$1" "$2" "$3" >&2
}

# ---- The measurements ----

measure_bulk() { # STREAMS PATH ROUND
	local n=$1 path=$2 round=$3 line bytes pid="" before=0 after kids="" i
	[ "$path" = socat ] && kids=children
	case $path in haproxy | socat) pid=$(relay_pid "$path") ;; esac
	[ -z "$pid" ] || before=$(cpu_ticks "$pid" $kids)
	start_client "$path" --hold bulk "$server_addr" "$server_port" "$seconds" "$n"
	case $path in netns | divert) pid=$(relay_pid "$path") ;; esac
	line=$(await_line bulk_bytes_per_s)
	if [ -n "$pid" ] && [ -n "$line" ]; then
		if [ -n "$kids" ]; then # socat: its children end after the streams; reap first
			for ((i = 0; i < 100; i++)); do
				[ -n "$(ps -o pid= --ppid "$pid")" ] || break
				sleep 0.05
			done
		fi
		after=$(cpu_ticks "$pid" $kids)
	fi
	kill -TERM "$job" 2>/dev/null || true
	finish_client
	bytes=$(field "$line" bytes)
	if [ "$rc" != 0 ] || [ -z "$line" ] || [ "$(field "$line" errors)" != 0 ]; then
		not_measured "bulk_$n" "$path" "$(client_failure "$path")" "bulk_$n" "cpu_$n"
		[ -n "$line" ] || dead[$path]=$(client_failure "$path")
		return
	fi
	record "bulk_$n" "$path" "$round" "$(field "$line" bulk_bytes_per_s)"
	if [ -n "$pid" ] && [ -n "${after:-}" ] && [ "$bytes" -gt 0 ]; then
		record "cpu_$n" "$path" "$round" \
			"$(awk -v t=$((after - before)) -v hz="$hz" -v b="$bytes" \
				'BEGIN { printf "%.4f", t / hz / (b / 1073741824) }')"
	fi
	show "bulk_$n" "$path" "$(awk -v v="$(field "$line" bulk_bytes_per_s)" \
		'BEGIN { printf "%.1f MiB/s", v / 1048576 }')"
}

measure_rr() { # CLIENTS PATH ROUND
	local n=$1 path=$2 round=$3 line
	start_client "$path" rr "$server_addr" "$server_port" "$seconds" "$n"
	finish_client
	line=$(grep -m 1 '^conns_per_s=' "$tmp/out" || true)
	if [ "$rc" != 0 ] || [ -z "$line" ] || [ "$(field "$line" errors)" != 0 ]; then
		local why
		why=$(client_failure "$path")
		[ -z "$line" ] ||
			why="$(field "$line" errors) failed exchanges: $(head -n 1 "$tmp/err")"
		if [ "$n" = 1 ]; then
			not_measured "rr_$n" "$path" "$why" "rr_$n" ttfb_p50 ttfb_p99
		else
			not_measured "rr_$n" "$path" "$why" "rr_$n"
		fi
		[ -n "$line" ] || dead[$path]=$why
		return
	fi
	record "rr_$n" "$path" "$round" "$(field "$line" conns_per_s)"
	if [ "$n" = 1 ]; then
		record ttfb_p50 "$path" "$round" "$(field "$line" ttfb_p50_us)"
		record ttfb_p99 "$path" "$round" "$(field "$line" ttfb_p99_us)"
	fi
	show "rr_$n" "$path" "$(field "$line" conns_per_s) conns/s, connect to first byte p50 \
$(field "$line" ttfb_p50_us) us, p99 $(field "$line" ttfb_p99_us) us"
}

measure_dns() { # INFLIGHT PATH ROUND
	local n=$1 path=$2 round=$3 line group fig
	group=dns_$n
	start_client "$path" dns "$dns_addr" 53 "$seconds" "$n" "$dns_name"
	finish_client
	line=$(grep -m 1 '^dns_queries_per_s=' "$tmp/out" || true)
	fig=dns_qps
	[ "$n" != 1 ] || fig=dns_p50
	# A lost query in a thousand is the network's business; more says the path is broken.
	if [ "$rc" != 0 ] || [ -z "$line" ] || [ $((($(field "$line" lost) +
		$(field "$line" errors)) * 1000)) -gt "$(field "$line" answered)" ]; then
		local why
		why=$(client_failure "$path")
		[ -z "$line" ] || why="lost $(field "$line" lost), failed $(field "$line" errors)"
		not_measured "$group" "$path" "$why" "$fig"
		[ -n "$line" ] || dead[$path]=$why
		return
	fi
	if [ "$n" = 1 ]; then
		record dns_p50 "$path" "$round" "$(field "$line" p50_us)"
	else
		record dns_qps "$path" "$round" "$(field "$line" dns_queries_per_s)"
	fi
	show "$group" "$path" "$(field "$line" dns_queries_per_s) queries/s, p50 \
$(field "$line" p50_us) us"
}

# One idle client of COUNT connections on PATH, held while the relay's RSS and the kernel's
# memory are read: sets idle_rss (KiB, empty without a relay process) and idle_kernel (bytes).
# Returns 1 (with why set) when the connections did not all open.
idle_run() { # PATH COUNT
	local path=$1 count=$2 line pid
	start_client "$path" idle "$server_addr" "$server_port" "$count" "$limit"
	pid=$(relay_pid "$path")
	line=$(await_line idle_conns)
	idle_rss=
	idle_kernel=$(kernel_bytes)
	[ -z "$pid" ] || idle_rss=$(rss_kib "$pid")
	kill -TERM "$job" 2>/dev/null || true
	finish_client
	if [ -z "$line" ] || [ "$(field "$line" errors)" != 0 ] || [ "$rc" != 0 ]; then
		why=$(client_failure "$path")
		[ -z "$line" ] || why="$(field "$line" errors) of $count connections failed: \
$(head -n 1 "$tmp/err")"
		return 1
	fi
	return 0
}

measure_mem() { # PATH ROUND
	local path=$1 round=$2 rss0 kern0 why per_conn
	local -a figs=(kern_conn)
	case $path in netns | divert | haproxy) figs=(rss_idle rss_conn kern_conn) ;; esac
	if [ "$path" = socat ]; then
		not_measured mem socat "one process per connection: not measured" \
			rss_idle rss_conn kern_conn
		return
	fi
	if [ "$idle_conns" -lt 100 ]; then
		not_measured mem "$path" \
			"fewer than 100 idle connections fit the descriptor limit" "${figs[@]}"
		return
	fi
	settle
	case $path in
	netns | divert)
		# The session without connections is the baseline: both have a namespace.
		if ! idle_run "$path" 0; then
			not_measured mem "$path" "$why" "${figs[@]}"
			return
		fi
		rss0=$idle_rss
		kern0=$idle_kernel
		settle ;;
	haproxy)
		haproxy_stop
		settle
		if ! haproxy_start; then
			dead[haproxy]=$why
			not_measured mem "$path" "$why" "${figs[@]}"
			return
		fi
		rss0=$(rss_kib "$haproxy")
		kern0=$(kernel_bytes) ;;
	*)
		rss0=
		kern0=$(kernel_bytes) ;;
	esac
	if ! idle_run "$path" "$idle_conns"; then
		not_measured mem "$path" "$why" "${figs[@]}"
		return
	fi
	per_conn=$(((idle_kernel - kern0) / idle_conns))
	record kern_conn "$path" "$round" "$per_conn"
	if [ -n "$rss0" ] && [ -n "$idle_rss" ]; then
		record rss_idle "$path" "$round" "$rss0"
		record rss_conn "$path" "$round" $(((idle_rss - rss0) * 1024 / idle_conns))
		show mem "$path" "RSS ${rss0} KiB idle, $(((idle_rss - rss0) * 1024 / idle_conns)) \
B per connection; kernel $per_conn B per connection"
	else
		show mem "$path" "kernel $per_conn B per connection"
	fi
}

measure() { # GROUP PATH ROUND
	local group=$1 path=$2 round=$3
	if [ -n "${dead[$path]:-}" ] || [ -n "${failed["$group $path"]:-}" ]; then
		return
	fi
	case $group:$path in dns_*:haproxy | dns_*:socat) return ;; esac # TCP relays: no DNS
	relay_on "$path"
	case $group in
	bulk_*) measure_bulk "${group#bulk_}" "$path" "$round" ;;
	rr_*) measure_rr "${group#rr_}" "$path" "$round" ;;
	dns_*) measure_dns "${group#dns_}" "$path" "$round" ;;
	mem) measure_mem "$path" "$round" ;;
	esac
	relay_off
}

# ---- The world, the servers and the relays ----

echo "bench_paths.sh: building the test world" >&2
mkdir "$tmp/world"
world_up "$tmp/world" 1 >/dev/null
ip -n "$SRV_NS" addr add "$dns_addr/32" dev lo
ip -n "$WORLD_NS" addr add "$relay_src/24" dev w0
ip netns exec "$SRV_NS" "$netbench" serve "$server_port" </dev/null >"$tmp/serve.log" 2>&1 &
server=$!
ip netns exec "$SRV_NS" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
	--pid-file --user=root --bind-interfaces --listen-address="$dns_addr" \
	--host-record="$dns_name,$server_addr" </dev/null >"$tmp/dnsmasq.log" 2>&1 &
dnsd=$!
poll_file "$tmp/serve.log" "serving on port" 50 ||
	die "netbench serve did not start: $(cat "$tmp/serve.log")"
poll 50 in_servers dig @"$dns_addr" +time=1 +tries=1 +short "$dns_name" >/dev/null ||
	die "the benchmark's dnsmasq did not start: $(cat "$tmp/dnsmasq.log")"

# Whether something listens on 127.0.0.1:PORT in the world namespace.
listening() { # PORT
	[ -n "$(in_world ss -Hltn "src 127.0.0.1:$1")" ]
}

# Starts a fresh HAProxy (the memory figures want one that has not pooled memory yet).
# Returns 1 (why set) when it does not listen.
haproxy_start() {
	ip netns exec "$WORLD_NS" haproxy -db -f "$tmp/haproxy.cfg" </dev/null \
		>"$tmp/haproxy.log" 2>&1 &
	haproxy=$!
	poll 50 listening "${relay_port[haproxy]}" && return 0
	why="haproxy did not start: $(tr '\n' ' ' <"$tmp/haproxy.log")"
	return 1
}

haproxy_stop() {
	[ -n "$haproxy" ] || return 0
	kill -TERM "$haproxy" 2>/dev/null || true
	wait "$haproxy" 2>/dev/null || true
	haproxy=
}

for p in "${paths[@]}"; do
	case $p in
	haproxy)
		if ! command -v haproxy >/dev/null; then
			dead[haproxy]="haproxy not installed (scripts/deps.sh bench installs it)"
			continue
		fi
		cat >"$tmp/haproxy.cfg" <<-EOF
			# bench_paths.sh: a transparent TCP relay, splicing both ways
			global
			    maxconn $((idle_conns + 1000))
			defaults
			    mode tcp
			    timeout connect 10s
			    timeout client 5m
			    timeout server 5m
			    option splice-request
			    option splice-response
			frontend intercepted
			    bind 127.0.0.1:${relay_port[haproxy]}
			    default_backend original_destination
			backend original_destination
			    server origin 0.0.0.0 source $relay_src
		EOF
		haproxy_start || dead[haproxy]=$why
		;;
	socat)
		if ! command -v socat >/dev/null; then
			dead[socat]="socat not installed (scripts/deps.sh installs it)"
			continue
		fi
		listen=TCP-LISTEN:${relay_port[socat]},bind=127.0.0.1,fork,reuseaddr,backlog=4096
		ip netns exec "$WORLD_NS" socat "$listen" \
			"TCP:$server_addr:$server_port,bind=$relay_src" </dev/null \
			>"$tmp/socat.log" 2>&1 &
		socat=$!
		poll 50 listening "${relay_port[socat]}" ||
			dead[socat]="socat did not start: $(head -n 1 "$tmp/socat.log")"
		;;
	esac
done

# ---- The rounds ----

# Memory first, on a machine that our traffic has not yet left closing sockets on (they would
# be freed during a measurement and blur the kernel's figure); then the traffic.
rounds() { # WHAT GROUP...
	local what=$1 round i group path
	local -a order
	shift
	for ((round = 1; round <= repeat; round++)); do
		echo "$what, round $round of $repeat" >&2
		order=()
		for ((i = 0; i < ${#paths[@]}; i++)); do
			order+=("${paths[$(((i + round - 1) % ${#paths[@]}))]}")
		done
		for group in "$@"; do
			for path in "${order[@]}"; do
				measure "$group" "$path" "$round"
			done
		done
	done
}

started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
t0=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for p in "${paths[@]}"; do
	[ -z "${dead[$p]:-}" ] || echo "  $p: n/a (${dead[$p]})" >&2
done
rounds "memory ($idle_conns idle connections)" mem
rounds "traffic ($seconds s a measurement)" bulk_1 bulk_8 rr_1 rr_64 "dns_$dns_inflight" dns_1
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
haproxy_version=$(haproxy -v 2>/dev/null | sed -n 's/^HAProxy version \([^ ]*\).*/\1/p')
haproxy_threads=
[ -z "$haproxy" ] || haproxy_threads=$(awk '/^Threads:/ { print $2 }' "/proc/$haproxy/status")
socat_version=$(socat -V 2>/dev/null | sed -n 's/^socat version \([^ ]*\).*/\1/p')
elapsed=$(($(date +%s) - t0))

# ---- Optional profile of sluice under connection churn ----

profiles=
if [ "$profile" = 1 ]; then
	if ! command -v perf >/dev/null; then
		echo "bench_paths.sh: BENCH_PROFILE=1 needs perf (scripts/deps.sh bench)" >&2
	else
		mkdir -p "$(dirname "$json")"
		for path in "${paths[@]}"; do
			case $path in netns | divert) ;; *) continue ;; esac
			[ -z "${dead[$path]:-}" ] || continue
			start_client "$path" rr "$server_addr" "$server_port" "$seconds" 64
			pid=$(relay_pid "$path")
			data=$tmp/perf-$path.data
			report=$(dirname "$json")/perf-$path.txt
			if [ -n "$pid" ]; then
				perf record -q -g -o "$data" -p "$pid" -- \
					sleep $((seconds > 1 ? seconds - 1 : 1)) >/dev/null 2>&1 ||
					true
			fi
			finish_client
			if [ -s "$data" ]; then
				perf report -i "$data" --stdio --children --percent-limit 1 \
					--sort dso,symbol -g none 2>/dev/null |
					grep -v '^$' >"$report" || true
				profiles="$profiles $report"
				echo "bench_paths.sh: profile of sluice ($path, rr 64): $report" >&2
			fi
		done
	fi
fi

# ---- The table, the targets and the JSON copy ----

mkdir -p "$(dirname "$json")"
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
dead_list=$(for p in "${!dead[@]}"; do printf '%s\t%s\n' "$p" "${dead[$p]}"; done)
BENCH_STARTED=$started BENCH_ELAPSED=$elapsed BENCH_SECONDS=$seconds BENCH_REPEAT=$repeat \
BENCH_PATHS="${paths[*]}" BENCH_IDLE=$idle_conns BENCH_IDLE_ASKED=$idle_asked \
BENCH_FD_HARD=$fd_hard BENCH_DNS_INFLIGHT=$dns_inflight BENCH_CPU="$cpu_model" \
BENCH_LOAD="$load_start" BENCH_LOAD_END="$load_end" BENCH_DEAD="$dead_list" \
BENCH_PROFILES="$profiles" BENCH_SERVER="$server_addr:$server_port" \
BENCH_HAPROXY_VERSION="$haproxy_version" BENCH_HAPROXY_THREADS="$haproxy_threads" \
BENCH_SOCAT_VERSION="$socat_version" \
	python3 - "$results" "$nas" "$json" <<'EOF'
# The report: medians, spreads, ratios, targets; the table on stdout and the JSON copy.
import json, os, platform, statistics, sys

results_path, nas_path, json_path = sys.argv[1:4]
env = os.environ
paths = env["BENCH_PATHS"].split()
NOISY = 15.0  # percent of the median

# name, label, unit, kind ("abs": a measured value; "added": PATH minus direct, per round)
FIGURES = [
    ("bulk_1", "bulk, 1 stream", "MiB/s", "abs"),
    ("bulk_8", "bulk, 8 streams", "MiB/s", "abs"),
    ("rr_1", "conn/s, 1 client", "conn/s", "abs"),
    ("rr_64", "conn/s, 64 clients", "conn/s", "abs"),
    ("ttfb_p50", "1st byte p50, 1 client", "us", "abs"),
    ("ttfb_p99", "1st byte p99, 1 client", "us", "abs"),
    ("added_p50", "added latency p50", "us", "added:ttfb_p50"),
    ("added_p99", "added latency p99", "us", "added:ttfb_p99"),
    ("cpu_1", "CPU per GiB, 1 stream", "s/GiB", "abs"),
    ("cpu_8", "CPU per GiB, 8 streams", "s/GiB", "abs"),
    ("rss_idle", "RSS idle", "KiB", "abs"),
    ("rss_conn", "RSS per idle conn", "B", "abs"),
    ("kern_conn", "kernel per idle conn", "B", "abs"),
    ("kern_added", "kernel added per conn", "B", "added:kern_conn"),
    ("dns_qps", "DNS queries/s", "q/s", "abs"),
    ("dns_p50", "DNS p50, 1 in flight", "us", "abs"),
    ("dns_added", "DNS added p50", "us", "added:dns_p50"),
]
SCALE = {"MiB/s": 1 / 1048576}

raw = {}  # (fig, path) -> {round: value}
with open(results_path) as f:
    for line in f:
        fig, path, rnd, value = line.split()
        raw.setdefault((fig, path), {})[int(rnd)] = float(value) * SCALE.get(
            dict((x[0], x[2]) for x in FIGURES)[fig], 1)
na = {}
with open(nas_path) as f:
    for line in f:
        fig, path, why = line.rstrip("\n").split("\t", 2)
        na.setdefault((fig, path), why)
dead = dict(l.split("\t", 1) for l in env.get("BENCH_DEAD", "").splitlines() if l)

for name, _, _, kind in FIGURES:
    if not kind.startswith("added:"):
        continue
    base = kind.split(":")[1]
    for p in paths:
        if p == "direct" or (base, p) not in raw or (base, "direct") not in raw:
            continue
        d = raw[(base, "direct")]
        diff = {r: v - d[r] for r, v in raw[(base, p)].items() if r in d}
        if diff:
            raw[(name, p)] = diff

stats = {}
for name, label, unit, kind in FIGURES:
    for p in paths:
        runs = raw.get((name, p))
        if not runs:
            continue
        vals = [runs[r] for r in sorted(runs)]
        med = statistics.median(vals)
        ref = med
        if kind.startswith("added:"):
            ref = statistics.median(raw[(kind.split(":")[1], p)].values())
        spread = (max(vals) - min(vals)) / abs(ref) * 100 if ref else 0.0
        stats[(name, p)] = {"median": med, "min": min(vals), "max": max(vals),
                            "runs": vals, "spread_pct": round(spread, 1),
                            "noisy": spread > NOISY}

def ratio(name, p, base):
    a, b = stats.get((name, p)), stats.get((name, base))
    if not a or not b or not b["median"] or p == base:
        return None
    return a["median"] / b["median"]

def fmt(v, unit):
    if unit in ("MiB/s", "us"):
        return "%.1f" % v
    if unit == "s/GiB":
        return "%.2f" % v
    return "%.0f" % v

def why_na(name, p):
    return na.get((name, p)) or dead.get(p) or "not measured"

TARGETS = [  # label, figure, path, kind, limit
    ("bulk 1 stream >= 0.9 x direct", "bulk_1", "netns", "ratio_direct", 0.9),
    ("bulk 8 streams >= 0.9 x direct", "bulk_8", "netns", "ratio_direct", 0.9),
    ("conn/s 64 clients >= 0.75 x direct", "rr_64", "netns", "ratio_direct", 0.75),
    ("conn/s 64 clients >= 0.75 x direct", "rr_64", "divert", "ratio_direct", 0.75),
    ("added latency p50 <= 50 us", "added_p50", "netns", "max", 50),
    ("added latency p50 <= 50 us", "added_p50", "divert", "max", 50),
    ("added latency p99 <= 250 us", "added_p99", "netns", "max", 250),
    ("added latency p99 <= 250 us", "added_p99", "divert", "max", 250),
    ("RSS per idle connection <= 1024 B", "rss_conn", "netns", "max", 1024),
    ("RSS per idle connection <= 1024 B", "rss_conn", "divert", "max", 1024),
    ("DNS queries/s >= 0.8 x dnsmasq direct", "dns_qps", "netns", "ratio_direct", 0.8),
    ("DNS queries/s >= 0.8 x dnsmasq direct", "dns_qps", "divert", "ratio_direct", 0.8),
    ("(issue 4) divert bulk 1 stream >= 0.5 x netns", "bulk_1", "divert", "ratio_netns", 0.5),
    ("(issue 4) divert bulk 8 streams >= 0.5 x netns", "bulk_8", "divert", "ratio_netns", 0.5),
]
targets = []
for label, name, p, kind, lim in TARGETS:
    if p not in paths:
        continue
    if kind == "max":
        v = stats.get((name, p), {}).get("median")
        ok = v is not None and v <= lim
    else:
        v = ratio(name, p, kind.split("_")[1])
        ok = v is not None and v >= lim
    noisy = stats.get((name, p), {}).get("noisy", False)
    targets.append({"target": label, "figure": name, "path": p, "value": v, "limit": lim,
                    "kind": kind, "result": "n/a" if v is None else ("ok" if ok else "MISS"),
                    "noisy": noisy})

units = {x[0]: x[2] for x in FIGURES}
print()
print("sluice beside direct, HAProxy and socat (issue 7) — %s, %s s"
      % (env["BENCH_STARTED"], env["BENCH_ELAPSED"]))
print("machine: %s cores, %s, kernel %s; load average %s at the start, %s at the end"
      % (os.cpu_count(), env["BENCH_CPU"], platform.release(), env["BENCH_LOAD"],
         env["BENCH_LOAD_END"]))
idle_note = env["BENCH_IDLE"]
if env["BENCH_IDLE"] != env["BENCH_IDLE_ASKED"]:
    idle_note += " (of %s asked: the descriptor hard limit is %s)" % (
        env["BENCH_IDLE_ASKED"], env["BENCH_FD_HARD"])
print("median of %s interleaved rounds of %s s; idle connections: %s; DNS in flight: %s"
      % (env["BENCH_REPEAT"], env["BENCH_SECONDS"], idle_note, env["BENCH_DNS_INFLIGHT"]))
print("haproxy %s: tcp mode, splice-request and splice-response, %s threads; socat %s: fork"
      % (env.get("BENCH_HAPROXY_VERSION", "?"), env.get("BENCH_HAPROXY_THREADS", "?"),
         env.get("BENCH_SOCAT_VERSION", "?")))
print("spread = (max - min) / median; noisy above %.0f %%; 'added' rows: path minus direct, "
      "per round; x: ratio of medians" % NOISY)
print()
head = "%-30s %-7s %10s  %-21s %6s  %7s %8s" % ("figure", "path", "median", "min-max",
                                                 "spread", "xdirect", "xhaproxy")
print(head)
print("-" * len(head))
for name, label, unit, kind in FIGURES:
    shown = False
    for p in paths:
        if kind.startswith("added:") and p == "direct":
            continue
        text = ("%s (%s)" % (label, unit)) if not shown else ""
        s = stats.get((name, p))
        if not s:
            if (name, p) in na or p in dead:
                print("%-30s %-7s %10s  (%s)" % (text, p, "n/a", why_na(name, p)))
                shown = True
            continue
        rd, rh = ratio(name, p, "direct"), ratio(name, p, "haproxy")
        if kind.startswith("added:"):
            rd = rh = None
        print(("%-30s %-7s %10s  %-21s %5.0f%%  %7s %8s%s" % (
            text, p, fmt(s["median"], unit),
            "%s-%s" % (fmt(s["min"], unit), fmt(s["max"], unit)), s["spread_pct"],
            "" if rd is None else "%.2f" % rd, "" if rh is None else "%.2f" % rh,
            "  noisy" if s["noisy"] else "")).rstrip())
        shown = True
print()
for t in targets:
    v = t["value"]
    if v is None:
        val = ""
    elif t["kind"] == "max":
        val = "(%s %s)" % (fmt(v, units[t["figure"]]), units[t["figure"]])
    else:
        val = "(%.2f x %s)" % (v, t["kind"].split("_")[1])
    print("target %-46s %-7s %-5s %s%s" % (t["target"], t["path"], t["result"], val,
                                           "  noisy" if t["noisy"] else ""))
if env.get("BENCH_PROFILES", "").strip():
    print()
    print("profiles:" + env["BENCH_PROFILES"])

doc = {
    "benchmark": "paths", "issue": 7, "date": env["BENCH_STARTED"],
    "elapsed_s": int(env["BENCH_ELAPSED"]),
    "relays": {"haproxy": env.get("BENCH_HAPROXY_VERSION"),
               "haproxy_threads": env.get("BENCH_HAPROXY_THREADS"),
               "socat": env.get("BENCH_SOCAT_VERSION")},
    "machine": {"cores": os.cpu_count(), "cpu": env["BENCH_CPU"],
                "kernel": platform.release(), "loadavg_start": env["BENCH_LOAD"],
                "loadavg_end": env["BENCH_LOAD_END"]},
    "settings": {"seconds": int(env["BENCH_SECONDS"]), "repeat": int(env["BENCH_REPEAT"]),
                 "paths": paths, "idle_conns": int(env["BENCH_IDLE"]),
                 "idle_conns_asked": int(env["BENCH_IDLE_ASKED"]),
                 "fd_hard_limit": int(env["BENCH_FD_HARD"]),
                 "dns_inflight": int(env["BENCH_DNS_INFLIGHT"]),
                 "server": env["BENCH_SERVER"], "noisy_above_pct": NOISY},
    "figures": [],
    "targets": targets,
}
for name, label, unit, kind in FIGURES:
    res = {}
    for p in paths:
        s = stats.get((name, p))
        if s:
            res[p] = dict(s, ratio_direct=None if kind != "abs" else ratio(name, p, "direct"),
                          ratio_haproxy=None if kind != "abs" else ratio(name, p, "haproxy"))
        elif (name, p) in na or p in dead:
            res[p] = {"error": why_na(name, p)}
    if res:
        doc["figures"].append({"name": name, "label": label, "unit": unit,
                               "derived_from": kind.split(":")[1] if ":" in kind else None,
                               "results": res})
def rounded(x):
    if isinstance(x, float):
        return round(x, 3)
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [rounded(v) for v in x]
    return x

with open(json_path, "w") as f:
    json.dump(rounded(doc), f, indent=1)
    f.write("\n")
print()
print("(JSON: %s)" % json_path)
EOF
