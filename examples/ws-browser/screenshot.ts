/**
 * Takes a screenshot of the page in headless Chromium once it has run:
 *
 *   node screenshot.ts 'http://127.0.0.1:PORT/#ws=...' ws-browser.png
 *
 * (the address `server.ts` printed). Chromium is Debian's `chromium`
 * (`/usr/bin/chromium`, or `CHROMIUM=/path/to/chrome`), driven by playwright-core.
 */
import { chromium } from "playwright-core"

const [url, out = "ws-browser.png"] = process.argv.slice(2)
if (url === undefined) {
  console.error("usage: node screenshot.ts PAGE-URL [OUT.png]")
  process.exit(2)
}
const browser = await chromium.launch({ executablePath: process.env["CHROMIUM"] ?? "/usr/bin/chromium" })
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 560 } })
  await page.goto(url)
  await page.waitForFunction(
    () => {
      const status =
        (globalThis as { document?: { getElementById(id: string): { textContent: string | null } | null } })
          .document?.getElementById("status")?.textContent
      return status === "done" || status?.startsWith("failed") === true
    },
    undefined,
    { timeout: 30_000 }
  )
  await page.screenshot({ path: out })
  console.log(`screenshot: ${out}`)
} finally {
  await browser.close()
}
