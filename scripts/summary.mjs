// Prints the plain closing line CI reads: "N passed, N failed, N skipped".
// Skipped are the tests registered as skipped (conformance cases not applicable to a transport
// name the capability it lacks in their title). Failed build/lint steps, a suite that failed to
// load and a vitest run that did not report count as failures.
import { existsSync, readFileSync } from "node:fs"

const [file, failedSteps = "0", vitestStatus = "0"] = process.argv.slice(2)
let passed = 0
let failed = Number(failedSteps)
let skipped = 0
if (file !== undefined && existsSync(file)) {
  const report = JSON.parse(readFileSync(file, "utf8"))
  passed += report.numPassedTests
  failed += report.numFailedTests
  skipped += report.numPendingTests + report.numTodoTests
  if (report.numTotalTests === 0) failed += 1
  // a suite that failed to load has no test results of its own
  for (const suite of report.testResults) {
    if (suite.status === "failed" && suite.assertionResults.length === 0) failed += 1
  }
} else {
  failed += 1
}
if (Number(vitestStatus) !== 0 && failed === 0) failed = 1
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`)
process.exit(failed === 0 ? 0 : 1)
