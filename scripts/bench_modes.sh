#!/usr/bin/env bash
# bench_modes.sh — issue 4's benchmark: bulk throughput and connections/s of a session in divert
# mode beside netns mode and a direct path without sluice, measured interleaved in one run.
#
#   ┌─ sluice-world-PID ──────────────────────────────┐       ┌─ sluice-srv-PID ──────────────┐
#   │ direct: netbench CLIENT                         │ veth  │ netbench serve 5201           │
#   │ netns:  sluice run --mode netns  -- netbench .. │──────▶│ on 198.51.100.10 (every addr) │
#   │ divert: sluice run --mode divert -- netbench .. │ w0/s0 │                               │
#   └─────────────────────────────────────────────────┘       └───────────────────────────────┘
#   (the world is tests/e2e/world.sh's; nothing here touches this machine's own network)
#
# Figures, each measured once per path per round, the paths interleaved (direct, netns, divert,
# direct, ...) so that a noisy neighbour on the machine hits every path alike:
#   bulk 1 / 8 streams   bytes/s the server confirms receiving   (netbench bulk)
#   rr 1 / 64 clients    connect, 100-byte request, 1024-byte answer, close: per second
#                        (netbench rr)
# A path that fails is shown as "n/a (sluice exited N: its first stderr line)" and not run again.
#
# usage: scripts/bench_modes.sh PATH/TO/sluice PATH/TO/netbench
#        needs root and the tools of scripts/deps.sh; exits 77 (skipped) without them
# env:   BENCH_SECONDS  seconds per measurement (5)      BENCH_REPEAT  rounds (3)
#        BENCH_PATHS    paths to measure ("direct netns divert")
#        BENCH_JSON     where the JSON copy goes (build/bench/modes.json in the source tree)
set -eu

seconds=${BENCH_SECONDS:-5}
repeat=${BENCH_REPEAT:-3}
read -r -a paths <<<"${BENCH_PATHS:-direct netns divert}"
root=$(cd "$(dirname "$0")/.." && pwd)
json=${BENCH_JSON:-$root/build/bench/modes.json}

die() {
	echo "bench_modes.sh: $*" >&2
	exit 1
}

[ $# -eq 2 ] || die "usage: $0 PATH/TO/sluice PATH/TO/netbench"
[ -x "$1" ] || die "no sluice at $1"
[ -x "$2" ] || die "no netbench at $2"
sluice=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
netbench=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
case $seconds in '' | *[!0-9]* | 0) die "BENCH_SECONDS must be a whole number >= 1" ;; esac
case $repeat in '' | *[!0-9]* | 0) die "BENCH_REPEAT must be a whole number >= 1" ;; esac
[ "$seconds" -le 600 ] || die "BENCH_SECONDS is at most 600"
[ "$repeat" -le 100 ] || die "BENCH_REPEAT is at most 100"
for p in "${paths[@]}"; do
	case $p in direct | netns | divert) ;; *) die "unknown path '$p' in BENCH_PATHS" ;; esac
done
skip() {
	echo "bench_modes.sh: SKIP: $*"
	exit 77
}
[ "$(id -u)" = 0 ] || skip "needs root (it builds network namespaces)"
for tool in ip nft dnsmasq python3 openssl dig timeout jq awk sort; do
	command -v "$tool" >/dev/null || skip "$tool not installed (scripts/deps.sh installs it)"
done

# shellcheck source=SCRIPTDIR/../tests/e2e/world.sh
. "$root/tests/e2e/world.sh"

server_addr=198.51.100.10
server_port=5201
# netbench's own bounds: SECONDS, then at most 30 s for a bulk count; the rest is sluice's start.
limit=$((seconds + 45))

tmp=$(mktemp -d "/tmp/sluice-bench-modes.$$.XXXXXX")
server=
job=
cleanup() {
	local pid
	# TERM first: timeout(1) passes it on, and sluice takes its session down with it.
	for pid in $job $server; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in $job $server; do
		wait "$pid" 2>/dev/null || true
	done
	world_down
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- The figures and the paths ----

figures=(bulk_1 bulk_8 rr_1 rr_64)
declare -A fig_label=([bulk_1]="bulk, 1 stream" [bulk_8]="bulk, 8 streams"
	[rr_1]="rr, 1 client" [rr_64]="rr, 64 clients")
declare -A fig_unit=([bulk_1]=bytes/s [bulk_8]=bytes/s [rr_1]=conns/s [rr_64]=conns/s)
declare -A na=()    # "FIGURE PATH" -> why it has no figure
declare -A dead=()  # PATH -> why it is not run any more
results=$tmp/results  # FIGURE PATH VALUE ERRORS, one measurement a line
: >"$results"

# Sets prefix to the command line that runs a netbench client on PATH (netbench follows it).
path_prefix() { # PATH
	case $1 in
	direct) prefix=() ;;
	netns | divert)
		prefix=("$sluice" run --mode "$1" --quiet --policy "$tmp/bench.policy" --) ;;
	esac
}

# The ratios shown on a path's row: "PATH BASE" compares PATH's median with BASE's.
ratio_pairs=("netns direct" "divert direct" "divert netns")

cat >"$tmp/bench.policy" <<EOF
# bench_modes.sh: the benchmark server, nothing else
allow cidr 198.51.100.0/24 port $server_port
default deny
EOF

# Runs FIGURE once on PATH; appends to $results, or records why there is no figure.
measure() { # FIGURE PATH
	local fig=$1 path=$2 rc=0 what=${1%_*} n=${1#*_} line value errors reason who
	local -a prefix
	path_prefix "$path"
	timeout -k 5 "$limit" ip netns exec "$WORLD_NS" "${prefix[@]}" \
		"$netbench" "$what" "$server_addr" "$server_port" "$seconds" "$n" \
		</dev/null >"$tmp/out" 2>"$tmp/err" &
	job=$!
	wait "$job" || rc=$?
	job=
	line=$(grep -E "^(bulk_bytes_per_s|conns_per_s)=" "$tmp/out" | head -n 1 || true)
	value=$(printf '%s\n' "$line" | sed -n 's/^[a-z_]*=\([0-9]*\) .*/\1/p')
	errors=$(printf '%s\n' "$line" | sed -n 's/.* errors=\([0-9]*\).*/\1/p')
	if [ "$rc" = 0 ] && [ -n "$value" ]; then
		echo "$fig $path $value ${errors:-0}" >>"$results"
		printf '  %-16s %-7s %s\n' "${fig_label[$fig]}" "$path" "$(human "$fig" "$value")" \
			>&2
		return
	fi
	who=sluice
	[ "$path" = direct ] && who=netbench
	case $rc in
	124 | 137) reason="timed out after $limit s" ;;
	*) reason="$who exited $rc: $(head -n 1 "$tmp/err")" ;;
	esac
	printf '  %-16s %-7s n/a (%s)\n' "${fig_label[$fig]}" "$path" "$reason" >&2
	na["$fig $path"]=$reason
	# Without netbench's line the path itself is broken (sluice did not start, or hung).
	[ -n "$line" ] || dead[$path]=$reason
}

# "2890.1 MiB/s" or "5123 conns/s" for a raw value of FIGURE.
human() { # FIGURE VALUE
	case ${fig_unit[$1]} in
	bytes/s) awk -v v="$2" 'BEGIN { printf "%.1f MiB/s", v / 1048576 }' ;;
	*) awk -v v="$2" 'BEGIN { printf "%.0f conns/s", v }' ;;
	esac
}

# "MEDIAN MIN MAX RUNS ERRORS" of FIGURE on PATH, RUNS comma-separated; nothing if none.
stats() { # FIGURE PATH
	awk -v f="$1" -v p="$2" '$1 == f && $2 == p { print $3, $4 }' "$results" | sort -n |
		awk '{ v[NR] = $1; e += $2; runs = runs (NR > 1 ? "," : "") $1 }
		END {
			if (NR == 0) exit
			m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			printf "%.0f %s %s %s %d\n", m, v[1], v[NR], runs, e
		}'
}

ratio() { # A B: A/B with two decimals, or nothing when either is missing
	awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b > 0) printf "%.2f", a / b }'
}

# ---- The run ----

echo "bench_modes.sh: building the test world" >&2
mkdir "$tmp/world"
world_up "$tmp/world" 1 >/dev/null
ip netns exec "$SRV_NS" "$netbench" serve "$server_port" </dev/null >"$tmp/serve.log" 2>&1 &
server=$!
poll_file "$tmp/serve.log" "serving on port" 50 ||
	die "netbench serve did not start: $(cat "$tmp/serve.log")"

started=$(date -u +%Y-%m-%dT%H:%MZ)
for round in $(seq 1 "$repeat"); do
	echo "round $round of $repeat ($seconds s a measurement)" >&2
	for fig in "${figures[@]}"; do
		for path in "${paths[@]}"; do
			if [ -n "${dead[$path]:-}" ] || [ -n "${na["$fig $path"]:-}" ]; then
				continue
			fi
			measure "$fig" "$path"
		done
	done
done

# ---- The table, the targets and the JSON copy ----

declare -A median=()
declare -A told=()  # PATH -> the reason last printed in full
rows=$tmp/rows.tsv    # FIGURE PATH STATUS MEDIAN MIN MAX RUNS ERRORS REASON
ratios=$tmp/ratios.tsv  # FIGURE NAME VALUE
targets=$tmp/targets.tsv  # NAME FIGURE RATIO RESULT
: >"$rows"
: >"$ratios"
: >"$targets"

echo
echo "sluice capture paths — bulk throughput and connections/s (issue 4)"
echo "$started, $(nproc) cores, $(uname -r); median of $repeat interleaved runs of $seconds s;"
echo "server $server_addr:$server_port over a veth; sluice without an audit trail"
echo
printf '%-17s %-7s %-15s %-25s %s\n' figure path median "min–max" ratios
for fig in "${figures[@]}"; do
	label=${fig_label[$fig]}
	for path in "${paths[@]}"; do
		reason=${na["$fig $path"]:-${dead[$path]:-}}
		s=$(stats "$fig" "$path")
		if [ -z "$s" ]; then
			reason=${reason:-not measured}
			shown=$reason
			[ "$reason" != "${told[$path]:-}" ] || shown="as above"
			told[$path]=$reason
			printf '%-17s %-7s n/a (%s)\n' "$label" "$path" "$shown"
			printf '%s\t%s\tna\t\t\t\t\t\t%s\n' "$fig" "$path" "$reason" >>"$rows"
			label=
			continue
		fi
		read -r med lo hi runs errs <<<"$s"
		median["$fig $path"]=$med
		note=
		count=$(($(tr -cd , <<<"$runs" | wc -c) + 1))
		[ "$errs" = 0 ] || note="$errs failed exchanges"
		[ "$count" = "$repeat" ] ||
			note="${note:+$note; }$count of $repeat runs${reason:+, then $reason}"
		r=
		for pair in "${ratio_pairs[@]}"; do
			read -r a b <<<"$pair"
			[ "$a" = "$path" ] || continue
			x=$(ratio "$med" "${median["$fig $b"]:-}")
			[ -n "$x" ] || continue
			r="${r:+$r  }$a/$b $x"
			printf '%s\t%s\t%s\n' "$fig" "$a/$b" "$x" >>"$ratios"
		done
		spread="$(human "$fig" "$lo" | sed 's/ .*//')–$(human "$fig" "$hi")"
		printf '%-17s %-7s %-15s %-25s %s\n' "$label" "$path" "$(human "$fig" "$med")" \
			"$spread" "$r${note:+  ($note)}" | sed 's/ *$//'
		printf '%s\t%s\tok\t%s\t%s\t%s\t%s\t%s\t%s\n' "$fig" "$path" "$med" "$lo" "$hi" \
			"$runs" "$errs" "$reason" >>"$rows"
		label=
	done
done

echo
for fig in bulk_1 bulk_8; do
	name="divert bulk >= 0.5 x netns bulk, ${fig_label[$fig]#bulk, }"
	x=$(ratio "${median["$fig divert"]:-}" "${median["$fig netns"]:-}")
	if [ -z "$x" ]; then
		result=n/a
	elif awk -v x="$x" 'BEGIN { exit !(x >= 0.5) }'; then
		result=ok
	else
		result=MISS
	fi
	printf 'target (issue 4): %-42s %s%s\n' "$name:" "$result" "${x:+ (divert/netns $x)}"
	printf '%s\t%s\t%s\t%s\n' "$name" "$fig" "$x" "$result" >>"$targets"
done

mkdir -p "$(dirname "$json")"
jq -n --rawfile rows "$rows" --rawfile ratios "$ratios" --rawfile targets "$targets" \
	--arg date "$started" --arg kernel "$(uname -r)" --argjson cores "$(nproc)" \
	--argjson seconds "$seconds" --argjson repeat "$repeat" \
	--arg server "$server_addr:$server_port" --arg paths "${paths[*]}" \
	--arg labels "$(for f in "${figures[@]}"; do
		printf '%s\t%s\t%s\n' "$f" "${fig_label[$f]}" "${fig_unit[$f]}"; done)" '
	def tsv: split("\n") | map(select(length > 0) | split("\t"));
	def num: if . == "" then null else tonumber end;
	($rows | tsv) as $rows | ($ratios | tsv) as $ratios |
	{
		benchmark: "modes", date: $date, kernel: $kernel, cores: $cores,
		seconds: $seconds, repeat: $repeat, server: $server,
		paths: ($paths | split(" ")),
		figures: [$labels | tsv[] | . as [$f, $text, $unit] | {
			name: $f, label: $text, unit: $unit,
			results: ([$rows[] | select(.[0] == $f) | {key: .[1], value: (
				if .[2] == "ok" then {
					median: (.[3] | num), min: (.[4] | num), max: (.[5] | num),
					runs: (.[6] | split(",") | map(tonumber)),
					errors: (.[7] | num)
				} + (if .[8] != "" then {failed: .[8]} else {} end)
				else {error: .[8]} end)}] | from_entries),
			ratios: ([$ratios[] | select(.[0] == $f) | {key: .[1], value: (.[2] | num)}]
				| from_entries)
		}],
		targets: [$targets | tsv[] | {name: .[0], figure: .[1], ratio: (.[2] | num),
			result: .[3]}]
	}' >"$json"
echo
echo "(JSON: $json)"
