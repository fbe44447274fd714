#!/usr/bin/env bash
# Installs the Debian packages that building and testing sluice need, only when missing.
# Quiet and idempotent: a machine that has everything pays one dpkg query.
set -euo pipefail

packages=(
  build-essential cmake pkg-config   # the build
  clang libclang-rt-14-dev llvm      # libFuzzer targets, clang builds, ASan/UBSan runtimes
  libmnl-dev libnftables-dev         # Linux sessions: rtnetlink, nftables rules in the namespace
  libnetfilter-queue-dev libnftnl-dev   # the divert backend: NFQUEUE, its rule where nft lacks `queue`
  nftables iproute2 procps util-linux python3   # e2e tests: inspect namespaces, drive clients
  dnsmasq-base curl bind9-dnsutils socat openssl jq   # e2e test world: servers and clients
)

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
