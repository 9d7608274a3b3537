#!/usr/bin/env bash
# Runs the project's own Node (24, from node_modules) on TypeScript sources.
here="$(cd "$(dirname "$0")/.." && pwd)"
source "$here/scripts/libnng-env.sh"
exec "$here/node_modules/.bin/node" --conditions=@effect-ipc/source --disable-warning=ExperimentalWarning "$@"
