#!/usr/bin/env bash
# Runs every micro-benchmark of a build directory, one after another (they share two cores),
# each printing its own table of figures, in-run baselines, ratios and targets.
#   usage: scripts/bench.sh BUILD_DIR
set -euo pipefail
dir=${1:-build-release}
shopt -s nullglob
benches=("$dir"/bench/bench_*)
if [ ${#benches[@]} -eq 0 ]; then
	echo "bench.sh: no benchmarks in $dir/bench (build with: make bench)" >&2
	exit 1
fi
echo "sluice micro-benchmarks — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r)"
echo "(each figure is measured beside its baseline in the same run; ratios, not absolutes, carry over)"
for b in "${benches[@]}"; do
	echo
	echo "== $(basename "$b")"
	"$b"
done
