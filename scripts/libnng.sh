#!/usr/bin/env bash
# Builds libnng 1.12.0 from vendor/nng-1.12.0.tar.gz, with vendor/nng-1.12.0-close.patch, into
# .cache/libnng-1.12.0/, which the project's scripts then use (scripts/libnng-env.sh); a build made
# without this patch (its sha256 is kept beside the library) is made again. Every
# released libnng can hang in nng_close (Debian 12's 1.5.2 can also abort the process there): see
# vendor/README.md. Idempotent; prints nothing when there is nothing to do.
# Needs cmake, make, gcc, patch and libmbedtls-dev (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
version=1.12.0
out=.cache/libnng-$version
patched=$(sha256sum "vendor/nng-$version-close.patch" | cut -d' ' -f1)
[ -f "$out/libnng.so.1" ] && [ "$(cat "$out/patch.sha256" 2>/dev/null)" = "$patched" ] && exit 0
echo "setup: building libnng $version from vendor/, patched (vendor/nng-$version-close.patch)"
# a build without this patch is not left for scripts/libnng-env.sh to find, should this one fail
rm -rf "$out"
echo "50844c38fd0b05210a7da660a1aac8463e098230e2ef224876602b7e3d2421b2  vendor/nng-$version.tar.gz" | sha256sum -c --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "vendor/nng-$version.tar.gz" -C "$work"
patch --quiet -p1 -d "$work/nng-$version" <"vendor/nng-$version-close.patch"
cmake -S "$work/nng-$version" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
  -DNNG_ENABLE_TLS=ON -DNNG_TESTS=OFF -DNNG_TOOLS=OFF >"$work/cmake.log" 2>&1 \
  || { cat "$work/cmake.log" >&2; exit 1; }
make -C "$work/build" -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -50 "$work/make.log" >&2; exit 1; }
mkdir -p "$out.tmp"
cp "$(readlink -f "$work/build/libnng.so.1")" "$out.tmp/libnng.so.1"
echo "$patched" >"$out.tmp/patch.sha256"
rm -rf "$out" && mv "$out.tmp" "$out"
