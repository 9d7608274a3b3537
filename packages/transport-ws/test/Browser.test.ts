/**
 * The browser example in a real browser: examples/ws-browser/server.ts runs
 * as a process, Debian's headless Chromium (driven by playwright-core) opens
 * its page, and the test reads what the page shows: a typed result, a typed
 * error, a streamed response, a cancelled call and a refused token. The same
 * page served from another origin is refused (PeerRejected, close 4403) while
 * the server goes on serving its own page. The README's screenshot step runs
 * too.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Os from "node:os"
import * as Path from "node:path"
import { type Browser, chromium } from "playwright-core"
import { freshPort, tokenFileOf } from "./helpers.ts"

const root = Path.resolve(import.meta.dirname, "../../..")
const chromiumPath = process.env["CHROMIUM"] ?? "/usr/bin/chromium"

/** The example's server, stopped with SIGTERM when the scope closes (and waited for); resolves to the page's URL. */
const exampleServer = (wsPort: number, pagePort: number) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly child: ChildProcess.ChildProcess; readonly url: string }, Error>((resume) => {
      const child = ChildProcess.spawn("bash", ["scripts/node.sh", "examples/ws-browser/server.ts"], {
        cwd: root,
        env: { ...process.env, WS_PORT: String(wsPort), PAGE_PORT: String(pagePort) },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let out = ""
      let err = ""
      child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()))
      child.stdout.on("data", (chunk: Buffer) => {
        out += chunk.toString()
        const url = /^page: (\S+)$/m.exec(out)?.[1]
        if (url !== undefined) resume(Effect.succeed({ child, url }))
      })
      child.once("exit", (code) => resume(Effect.fail(new Error(`server.ts exited (${code}): ${err}`))))
      return Effect.sync(() => child.kill("SIGKILL"))
    }).pipe(Effect.timeout("60 seconds")),
    ({ child }) =>
      Effect.callback<void>((resume) => {
        if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
        child.once("exit", () => resume(Effect.void))
        child.kill("SIGTERM")
      })
  )

/** Headless Chromium, closed with the scope. */
const browser: Effect.Effect<Browser, Error, Scope.Scope> = Effect.acquireRelease(
  Effect.tryPromise({
    try: () => chromium.launch({ executablePath: chromiumPath }),
    catch: (cause) =>
      new Error(`cannot start ${chromiumPath} (scripts/setup.sh installs Debian's chromium): ${String(cause)}`)
  }),
  (b) => Effect.promise(() => b.close())
)

type Shown = Record<"greet" | "divide" | "countdown" | "cancel" | "no-token" | "status", string>

/** Opens `url` in a fresh page, waits until the page is done (or failed), and returns what it shows. */
const visit = (b: Browser, url: string) =>
  Effect.promise(async (): Promise<Shown> => {
    const page = await b.newPage()
    try {
      await page.goto(url)
      await page.waitForFunction(
        () => {
          const doc =
            (globalThis as { document?: { getElementById(id: string): { textContent: string | null } | null } })
              .document
          const status = doc?.getElementById("status")?.textContent ?? ""
          return status === "done" || status.startsWith("failed")
        },
        undefined,
        { timeout: 30_000 }
      )
      const text = async (id: string) => (await page.textContent(`#${id}`)) ?? ""
      return {
        greet: await text("greet"),
        divide: await text("divide"),
        countdown: await text("countdown"),
        cancel: await text("cancel"),
        "no-token": await text("no-token"),
        status: await text("status")
      }
    } finally {
      await page.close()
    }
  })

/** Another origin serving the example's own page (fetched from its server): a page the daemon did not allow. */
const foreignOrigin = (pageOrigin: string) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly origin: string; readonly server: Http.Server }>((resume) => {
      const server = Http.createServer((req, res) => {
        fetch(`${pageOrigin}${req.url === "/page.js" ? "/page.js" : "/"}`).then(async (reply) => {
          res.writeHead(200, { "Content-Type": reply.headers.get("content-type") ?? "text/html" })
          res.end(await reply.text())
        }, () => {
          res.writeHead(502)
          res.end()
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as { port: number }
        resume(Effect.succeed({ origin: `http://127.0.0.1:${port}`, server }))
      })
    }),
    ({ server }) =>
      Effect.callback<void>((resume) => {
        server.close(() => resume(Effect.void))
        server.closeAllConnections()
      })
  )

describe("ws:// in headless Chromium", () => {
  it.live(
    "the example page calls the demo RpcGroup: result, typed error, stream, cancellation, refused token",
    () =>
      Effect.gen(function*() {
        const wsPort = freshPort()
        const pagePort = freshPort()
        const tokenFile = tokenFileOf(`ws://127.0.0.1:${wsPort}/demo`)
        yield* Effect.scoped(Effect.gen(function*() {
          const { url } = yield* exampleServer(wsPort, pagePort)
          const b = yield* browser
          const shown = yield* visit(b, url)
          assert.deepStrictEqual(shown, {
            greet: "Hello, browser!",
            divide: "DivisionByZero { dividend: 1 }",
            countdown: "5 4 3 2 1",
            cancel: "interrupted; the link still answers Add(2, 40) = 42",
            "no-token": "PeerRejected: the server refused this client (close 4401: token missing or wrong)",
            status: "done"
          })

          // the same page from another origin, with the right token: refused, typed
          const foreign = yield* foreignOrigin(new URL(url).origin)
          const elsewhere = yield* visit(b, url.replace(new URL(url).origin, foreign.origin))
          assert.match(elsewhere.status, /^failed: .*PeerRejected.*close 4403: origin not allowed/)
          assert.strictEqual(elsewhere.greet, "…")

          // and the daemon goes on serving its own page
          assert.strictEqual((yield* visit(b, url)).status, "done")

          // the README's screenshot step
          const dir = yield* Effect.acquireRelease(
            Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "eipc-ws-shot-"))),
            (d) => Effect.sync(() => Fs.rmSync(d, { recursive: true, force: true }))
          )
          const shot = Path.join(dir, "ws-browser.png")
          const run = ChildProcess.spawnSync(
            "bash",
            ["scripts/node.sh", "examples/ws-browser/screenshot.ts", url, shot],
            { cwd: root, encoding: "utf8", timeout: 60_000 }
          )
          assert.strictEqual(run.status, 0, run.stderr)
          assert.deepStrictEqual([...Fs.readFileSync(shot).subarray(0, 8)], [
            0x89,
            0x50,
            0x4e,
            0x47,
            0x0d,
            0x0a,
            0x1a,
            0x0a
          ])
          assert.isTrue(Fs.existsSync(tokenFile), "the daemon's token file, while it runs")
        }))
        // SIGTERM: the daemon's scope closed, its token file is gone
        assert.isFalse(Fs.existsSync(tokenFile), "the token file is removed on SIGTERM")
      }),
    180_000
  )
})
