import { assert, describe, it } from "@effect/vitest"
import * as Esbuild from "esbuild"
import * as Path from "node:path"
import { chromium } from "playwright-core"

const bundle = (contents: string) =>
  Esbuild.build({
    stdin: { contents, resolveDir: Path.join(import.meta.dirname, ".."), loader: "ts", sourcefile: "page.ts" },
    bundle: true,
    platform: "browser",
    format: "esm",
    write: false,
    metafile: true,
    logLevel: "silent",
    conditions: ["@effect-ipc/source"]
  })

/** The bundle's inputs (none may be a Node built-in) and the error messages if it failed. */
const tryBundle = async (contents: string) => {
  try {
    const result = await bundle(contents)
    return { inputs: Object.keys(result.metafile.inputs), errors: [] as Array<string> }
  } catch (error) {
    const errors = (error as Esbuild.BuildFailure).errors.map((e) => e.text)
    return { inputs: [] as Array<string>, errors }
  }
}

describe("browser bundle", () => {
  it("@effect-ipc/core and the ws client bundle for the browser, with no node: imports", async () => {
    const { errors, inputs } = await tryBundle(`
      import * as Core from "@effect-ipc/core"
      import * as WsClient from "@effect-ipc/transport-ws/WsClient"
      import * as WsAddress from "@effect-ipc/transport-ws/WsAddress"
      import * as WsProtocol from "@effect-ipc/transport-ws/WsProtocol"
      export const all = [Core, WsClient, WsAddress, WsProtocol]
    `)
    assert.deepStrictEqual(errors, [])
    assert.isTrue(inputs.some((input) => input.endsWith("transport-ws/src/WsClient.ts")), inputs.join("\n"))
    assert.deepStrictEqual(inputs.filter((input) => input.startsWith("node:")), [])
  }, 60_000)

  it("the bundle loads in headless Chromium: core's index and the client evaluate without Node", async () => {
    const result = await bundle(`
      import * as Core from "@effect-ipc/core"
      import * as WsClient from "@effect-ipc/transport-ws/WsClient"
      import * as Effect from "effect/Effect"
      const parsed = Effect.runSync(Effect.result(Core.Address.parse("ws://127.0.0.1:1/x")))
      globalThis.loaded = [Object.keys(Core).length > 10, typeof WsClient.dial, parsed._tag].join(" ")
    `)
    const browser = await chromium.launch({ executablePath: process.env["CHROMIUM"] ?? "/usr/bin/chromium" })
    try {
      const page = await browser.newPage()
      const errors: Array<string> = []
      page.on("pageerror", (error) => errors.push(error.message))
      await page.addScriptTag({ content: result.outputFiles[0]!.text, type: "module" })
      await page.waitForFunction(() => "loaded" in globalThis, undefined, { timeout: 30_000 })
      assert.deepStrictEqual(errors, [])
      assert.strictEqual(await page.evaluate(() => (globalThis as { loaded?: string }).loaded), "true function Success")
    } finally {
      await browser.close()
    }
  }, 60_000)

  it("the check fails on a node: import (the Node side does not bundle for the browser)", async () => {
    const { errors } = await tryBundle(`export * from "@effect-ipc/transport-ws/WsServer"`)
    assert.isAbove(errors.length, 0)
    assert.isTrue(errors.some((e) => e.includes("node:")), errors.join("\n"))
  }, 60_000)
})
