#!/usr/bin/env bash
# The whole test suite: build, type-check, lint, format check, then every test.
# Ends with one plain line "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
source scripts/libnng-env.sh
failed_steps=0
step() {
  local name=$1; shift
  echo "== $name"
  if ! "$@"; then
    echo "!! $name failed"
    failed_steps=$((failed_steps + 1))
  fi
}
ulimit -n 20000 2>/dev/null || true
# a second try at Node for Windows under Wine when the set-up's failed (a download the registry refused)
if [ "${EFFECT_IPC_WINE:-1}" != 0 ] && [ ! -f "$(source scripts/wine-env.sh && echo "$WIN_NODE")" ]; then
  echo "== Node for Windows is missing: scripts/wine-setup.sh again"
  mkdir -p .cache
  bash scripts/wine-setup.sh 2>&1 | tee .cache/wine-setup.log
fi
step "build (tsc -b)" tsc -b
step "type-check sources and tests" tsc -p tsconfig.check.json
step "lint (oxlint)" oxlint --deny-warnings packages bench examples scripts
step "format (dprint check)" dprint check
rm -f .vitest-report.json
echo "== tests (vitest)"
vitest run --reporter=default --reporter=json --outputFile.json=.vitest-report.json "$@"
vitest_status=$?
node scripts/summary.mjs .vitest-report.json "$failed_steps" "$vitest_status"
