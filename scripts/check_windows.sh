#!/usr/bin/env bash
# check_windows.sh — make check's Windows stage: cross-builds sluice with mingw-w64 into build-win
# and runs the tests labelled `windows` under Wine, in a throwaway Wine prefix that is made ready
# (while the build runs) before any test starts, and whose wineserver, with every Wine process
# of the prefix, is killed at the end, whatever happened.
# Quiet on success; on failure it prints the log of the step that failed and exits non-zero.
# The Wine pitfalls handled here are measured in ../shared/notes/windows-build.md.
#   usage: scripts/check_windows.sh        (JOBS: parallel builds and tests, default nproc)
set -euo pipefail
cd "$(dirname "$0")/.."

build="build-win"
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}
test_timeout=120   # seconds per test (ctest); the whole test run gets ten times that
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sluice-wine.XXXXXX")
log=$tmp/step.log

export WINEPREFIX=$tmp/prefix             # wineserver -k below must see the same prefix
export WINEARCH=win64
export WINEDEBUG=-all,err+module          # quiet, but a missing DLL is still named
export WINEDLLOVERRIDES="mscoree,mshtml=;winedbg.exe=d"   # no mono/gecko; no auto-debugger, with
                                          # which a crashing test can exit 0

# Wine keeps its server's socket in a directory named after the prefix's device and inode, under
# /tmp/wine-XXXXXX (Debian) or /tmp/.wine-UID; it stays behind after the server ends.
server_dirs() {
  local name
  [ -d "$WINEPREFIX" ] || return 0
  name=server-$(stat -c '%D' "$WINEPREFIX")-$(printf '%x' "$(stat -c '%i' "$WINEPREFIX")")
  for d in /tmp/wine-*/"$name" /tmp/.wine-"$(id -u)"/"$name"; do
    [ -d "$d" ] && echo "$d"
  done
  return 0
}

# The PIDs of Wine's programs (the loader, wineserver) running in this prefix.
wine_pids() {
  local f pid
  for f in /proc/[0-9]*/environ; do
    pid=${f#/proc/}
    pid=${pid%/environ}
    case "$(readlink "/proc/$pid/exe" 2>/dev/null)" in
    /usr/lib/wine/*) grep -qsF "WINEPREFIX=$WINEPREFIX" "$f" && echo "$pid" ;;
    esac
  done
  return 0
}

# Kills the prefix's wineserver and with it every Wine process of the prefix, then (by PID) any
# that is still there; removes the prefix and its server directory.
cleanup() {
  local dirs pids
  set +e
  [ -n "$prefix_job" ] && kill "$prefix_job" 2>/dev/null && wait "$prefix_job" 2>/dev/null
  dirs=$(server_dirs)
  wineserver -k >/dev/null 2>&1
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    pids=$(wine_pids)
    [ -z "$pids" ] && break
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null
    sleep 0.2
  done
  for d in $dirs; do
    rm -rf "$d"
    rmdir "$(dirname "$d")" 2>/dev/null
  done
  rm -rf "$tmp"
}
prefix_job=
trap cleanup EXIT

# step NAME CMD...: runs CMD with its output in the log; on failure shows the log and stops.
step() {
  local name=$1
  shift
  if ! "$@" >"$log" 2>&1; then
    echo "check_windows: $name failed:" >&2
    cat "$log" >&2
    exit 1
  fi
}

scripts/deps.sh windows

# The prefix, made before any test runs (parallel first runs race to create it), while the
# build runs. wineserver -p refuses to start while wineboot's server lingers, hence -w first;
# the persistent server and the warm-up start Wine's long-lived services now, so that they do
# not inherit (and hold open) the output pipe of the first test, which ctest reads to EOF.
prefix_init() {
  wine wineboot -i </dev/null && wineserver -w && wineserver -p && wine wineboot </dev/null
}
prefix_ready() {
  wait "$prefix_job" || { cat "$tmp/prefix.log"; return 1; }
}
prefix_init >"$tmp/prefix.log" 2>&1 &
prefix_job=$!

step "configure ($build)" cmake -S . -B "$build" \
  -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/mingw-w64-x86_64.cmake -DCMAKE_BUILD_TYPE=RelWithDebInfo
step "cross build ($build)" cmake --build "$build" -j"$jobs"
step "Wine prefix setup" prefix_ready
prefix_job=
step "tests under Wine (ctest -L windows)" timeout $((test_timeout * 10)) \
  ctest --test-dir "$build" -L windows --output-on-failure --no-tests=error -j"$jobs" \
        --timeout "$test_timeout"
