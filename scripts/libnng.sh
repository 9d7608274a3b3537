#!/usr/bin/env bash
# Builds libnng 1.11 from vendor/nng-1.11.tar.gz into .cache/libnng-1.11/ when the
# system's libnng is older than 1.6 (Debian 12 ships 1.5.2, whose nng_close can abort
# the process: see vendor/README.md). Idempotent; prints nothing when there is nothing to do.
# Needs cmake, make, gcc and libmbedtls-dev (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
out=.cache/libnng-1.11
[ -f "$out/libnng.so.1" ] && exit 0
system=$(dpkg-query -W -f='${Version}' libnng1 2>/dev/null || true)
if [ -n "$system" ] && dpkg --compare-versions "$system" ge 1.6; then exit 0; fi
echo "setup: building libnng 1.11 from vendor/ (the system's libnng ${system:-is missing} is older than 1.6)"
echo "ba9d487d68c3ceb87af2d2bf506377c4cecb011495d6cb8a9f7a52aff954b4da  vendor/nng-1.11.tar.gz" | sha256sum -c --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf vendor/nng-1.11.tar.gz -C "$work"
cmake -S "$work/nng-1.11" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
  -DNNG_ENABLE_TLS=ON -DNNG_TESTS=OFF -DNNG_TOOLS=OFF >"$work/cmake.log" 2>&1 \
  || { cat "$work/cmake.log" >&2; exit 1; }
make -C "$work/build" -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -50 "$work/make.log" >&2; exit 1; }
mkdir -p "$out.tmp"
cp "$work/build/libnng.so.1.11.0" "$out.tmp/libnng.so.1"
rm -rf "$out" && mv "$out.tmp" "$out"
