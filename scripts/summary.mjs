// Prints the plain closing line CI reads: "N passed, N failed, N skipped", after the title of
// every skipped test (conformance cases not applicable to a transport name the capability it
// lacks in their title), so what did not run is in the output, not only counted. Failed build/lint steps, a suite that failed to
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
  const titles = report.testResults.flatMap((suite) =>
    suite.assertionResults.filter((test) =>
      test.status === "skipped" || test.status === "pending" || test.status === "todo"
    )
      .map((test) => [...test.ancestorTitles, test.title].join(" > "))
  )
  // (a run filtered with -t skips everything else: the list is cut short then)
  const shown = titles.slice(0, 100).map((title) => `  ${title}`)
  if (titles.length > shown.length) shown.push(`  ... and ${titles.length - shown.length} more`)
  if (titles.length > 0) console.log(`skipped:\n${shown.join("\n")}`)
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
