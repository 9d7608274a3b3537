#!/usr/bin/env bash
# Runs Node for Windows under Wine (set up by scripts/wine-setup.sh) with the project's TypeScript
# sources: `scripts/wine.sh SECONDS ARGS...` runs `node.exe ARGS...` with a hard timeout of
# SECONDS (then killed), stdout and stderr as given (Node for Windows cannot write to a console
# under Wine: redirect them to files), and the Windows tests' module hooks (see
# packages/transport-pipe/test/windows/hooks.mjs). Every Wine process of the prefix is ended
# afterwards (`wineserver -k`).
set -uo pipefail
source "$(dirname "$0")/wine-env.sh"
limit=$1
shift
[ -f "$WIN_NODE" ] || {
  echo "wine.sh: $WIN_NODE is missing: run scripts/setup.sh" >&2
  [ -f "$wine_root/.cache/wine-setup.log" ] && echo "what scripts/wine-setup.sh printed: $(tail -n 20 "$wine_root/.cache/wine-setup.log")" >&2
  exit 127
}
hooks="file:///Z:${wine_root}/packages/transport-pipe/test/windows/hooks.mjs"
export NODE_OPTIONS="--import=$hooks --conditions=@effect-ipc/source --disable-warning=ExperimentalWarning"
cleanup() { timeout 30 wineserver -k >/dev/null 2>&1 || true; }
trap cleanup EXIT
NODE_COMPILE_CACHE="$WIN_COMPILE_CACHE" timeout --kill-after=10 "$limit" wine "$WIN_NODE" "$@"
