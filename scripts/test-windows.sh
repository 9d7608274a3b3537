#!/usr/bin/env bash
# The Windows cases (packages/transport-pipe/test/Windows.test.ts): Node 22 for Windows under Wine
# runs the `pipe://` conformance suite, the named-pipe security cases and the ChildPipe cases; each
# is reported as its own test. Ends with the plain line "N passed, N failed, N skipped".
# `npm test` runs them too, among the rest; this runs only them.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
report=.cache/vitest-windows.json
rm -f "$report"
EFFECT_IPC_WINE=1 vitest run --reporter=default --reporter=json --outputFile.json="$report" \
  packages/transport-pipe/test/Windows.test.ts "$@"
status=$?
node scripts/summary.mjs "$report" 0 "$status"
