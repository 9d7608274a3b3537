#!/usr/bin/env bash
# Installs everything effect-ipc needs on a Debian-like machine, idempotently:
#  - OS packages: libnng1 (transport-nng), cmake, make, patch and libmbedtls-dev (to build
#    libnng 1.12.0 from vendor/ with our fix: scripts/libnng.sh), nng-utils (nngcat, for interop tests),
#    iproute2 (`ip netns`, for the two-namespace test of transport-nng), gcc and
#    libc6-dev (the C contender of the nng benchmark), openssl (test certificates for nng's TLS),
#    socat, python3, python3-pip and python3-venv (wire-format interop tests,
#    the Python package and its `pip install` test), strace (the file
#    transport's fsync and mid-write kill tests), rustc, cargo and the serde /
#    serde_json crates (ipckit's own FileChannel as a test peer), chromium
#    (the ws:// transport's browser test, driven by playwright-core), wine and wine64 (the
#    Windows cases of the tests: Node for Windows under Wine, scripts/wine-setup.sh);
#  - npm dependencies, which include Node 24 itself (the `node` package), so a
#    machine with an older Node (20) needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pkg in libnng1 cmake make patch libmbedtls-dev nng-utils openssl iproute2 gcc libc6-dev socat python3 python3-pip python3-venv strace rustc cargo librust-serde-dev librust-serde-json-dev chromium wine wine64; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "setup: installing OS packages: ${missing[*]}"
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: please install ${missing[*]} with your package manager" >&2
  fi
fi

if [ ! -x node_modules/.bin/node ] || [ ! -f node_modules/.package-lock.json ] \
  || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm dependencies (with Node 24 from the npm registry)"
  npm install --no-audit --no-fund --loglevel=error
fi

bash scripts/libnng.sh || echo "setup: could not build libnng 1.12.0 from vendor/ (see above); the system's libnng is used, and its nng_close can hang (vendor/README.md)" >&2
# its output is also kept in .cache/wine-setup.log, which the Windows tests quote when it failed
mkdir -p .cache
bash scripts/wine-setup.sh 2>&1 | tee .cache/wine-setup.log \
  || echo "setup: FAILED to set up Node for Windows under Wine (see above): the Windows cases of the tests will fail" >&2
