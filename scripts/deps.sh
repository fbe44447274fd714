#!/usr/bin/env bash
# Installs the Debian packages that building and testing sluice need, only when missing.
# Quiet and idempotent: a machine that has everything pays one dpkg query.
#   deps.sh            the Linux build and its tests
#   deps.sh windows    the Windows cross build (mingw-w64) and Wine to run its tests
#   deps.sh bench      the Linux build, plus the relays `make bench` compares sluice with
set -euo pipefail

packages=(
  build-essential cmake pkg-config   # the build
  clang libclang-rt-14-dev llvm      # libFuzzer targets, clang builds, ASan/UBSan runtimes
  libmnl-dev libnftables-dev         # Linux sessions: rtnetlink, nftables rules in the namespace
  libnetfilter-queue-dev libnftnl-dev   # the divert backend: NFQUEUE, its rule where nft lacks `queue`
  nftables iproute2 procps util-linux python3   # e2e tests: inspect namespaces, drive clients
  dnsmasq-base curl bind9-dnsutils socat openssl jq   # e2e test world: servers and clients
  busybox-static                     # e2e bypass suite: a statically linked client
)
case "${1:-}" in
"") ;;
bench)
  # HAProxy (TCP mode, splice) and socat are the relays beside sluice in bench_paths.sh;
  # linux-perf profiles sluice there when BENCH_PROFILE=1.
  packages+=(haproxy linux-perf)
  ;;
windows)
  # wine64 runs 64-bit programs; wine adds /usr/bin/wine, wineboot and wineserver. No
  # recommends (X, GL, gstreamer): console tests need none of them.
  packages=(cmake make gcc-mingw-w64-x86-64 wine wine64)
  ;;
*)
  echo "usage: $0 [windows|bench]" >&2
  exit 2
  ;;
esac

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "sluice: missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
  exit 1
fi
echo "sluice: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
