#!/usr/bin/env bash
# Builds libnng 1.12.0 from vendor/nng-1.12.0.tar.gz into .cache/libnng-1.12.0/ when the
# system's libnng is older than 1.6 (Debian 12 ships 1.5.2, whose nng_close can abort
# the process: see vendor/README.md). Idempotent; prints nothing when there is nothing to do.
# Needs cmake, make, gcc and libmbedtls-dev (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
version=1.12.0
out=.cache/libnng-$version
[ -f "$out/libnng.so.1" ] && exit 0
system=$(dpkg-query -W -f='${Version}' libnng1 2>/dev/null || true)
if [ -n "$system" ] && dpkg --compare-versions "$system" ge 1.6; then exit 0; fi
echo "setup: building libnng $version from vendor/ (the system's libnng ${system:-is missing} is older than 1.6)"
echo "50844c38fd0b05210a7da660a1aac8463e098230e2ef224876602b7e3d2421b2  vendor/nng-$version.tar.gz" | sha256sum -c --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "vendor/nng-$version.tar.gz" -C "$work"
cmake -S "$work/nng-$version" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
  -DNNG_ENABLE_TLS=ON -DNNG_TESTS=OFF -DNNG_TOOLS=OFF >"$work/cmake.log" 2>&1 \
  || { cat "$work/cmake.log" >&2; exit 1; }
make -C "$work/build" -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -50 "$work/make.log" >&2; exit 1; }
mkdir -p "$out.tmp"
cp "$(readlink -f "$work/build/libnng.so.1")" "$out.tmp/libnng.so.1"
rm -rf "$out" && mv "$out.tmp" "$out"
