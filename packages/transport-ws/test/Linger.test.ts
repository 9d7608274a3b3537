/**
 * `close` keeps core's promise over `ws://`: the goodbye (close 1000) goes
 * after everything sent before it, and `close` waits until the peer's close
 * frame answers it (which the peer sends only once it has read all that came
 * before), up to `lingerTimeout`. So a client that sends, closes and exits at
 * once loses nothing, however much its socket still held when it closed,
 * provided its reader starts within the linger: every message, then `Closed`.
 * A peer that does not read by then loses the connection (`ConnectionLost`),
 * `close` warns of the bytes that never left, and the process can exit. The
 * same link serves the listener's channels and `WsClient` in a page (on the
 * browser's `WebSocket`), tested here too.
 */
import * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as Ws from "@effect-ipc/transport-ws"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as Result from "effect/Result"
import * as Esbuild from "esbuild"
import * as ChildProcess from "node:child_process"
import type { AddressInfo } from "node:net"
import * as Path from "node:path"
import { chromium } from "playwright-core"
import { WebSocketServer } from "ws"
import { freshAddress, sweepTokenFiles } from "./helpers.ts"

afterAll(sweepTokenFiles)

const root = Path.resolve(import.meta.dirname, "../../..")
const KiB = 1024
const MiB = 1024 * KiB
/**
 * 1000 messages of 64 KiB: 62.5 MiB, far more than the receiver's inbox (8 MiB) and loopback's socket
 * buffers (a few MiB each way, as the kernel tunes them) hold together.
 */
const COUNT = 1000
/** What a page sends: 400 messages of 64 KiB, 25 MiB (the browser's socket buffers are smaller than loopback's). */
const PAGE_COUNT = 400

interface Run {
  readonly code: number | null
  /** How long the child's `close` took, in ms (undefined if it never returned). */
  readonly closeMs: number | undefined
  /** When the child's `close` returned (`Date.now()`). */
  readonly closedAt: number | undefined
  readonly warnings: ReadonlyArray<string>
  readonly output: string
}

/**
 * The client of `fixtures/sender.ts` in its own process: sends `COUNT` messages of 64 KiB, closes and
 * then exits at once (`exit`) or lets the process end by itself (`end`); resolves when it is gone. Its
 * `highWaterMark` of 64 MiB lets every `send` return at once: what the listener and the kernel do not
 * take is still in the client's socket when it closes.
 */
const sender = (address: string, mode: "exit" | "end", options: Record<string, unknown>) =>
  Effect.acquireRelease(
    Effect.sync(() =>
      ChildProcess.spawn(
        "bash",
        [
          "scripts/node.sh",
          "packages/transport-ws/test/fixtures/sender.ts",
          address,
          String(COUNT),
          mode,
          JSON.stringify({ highWaterMark: 64 * MiB, ...options })
        ],
        { cwd: root, stdio: ["ignore", "pipe", "pipe"] }
      )
    ),
    (child) => Effect.sync(() => child.kill("SIGKILL"))
  ).pipe(Effect.map((child) => {
    let output = ""
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()))
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()))
    const exited = Effect.callback<Run>((resume) => {
      const done = (code: number | null) => {
        const closed = /^closed (\d+) (\d+)$/m.exec(output)
        resume(Effect.succeed({
          code,
          closeMs: closed === null ? undefined : Number(closed[1]),
          closedAt: closed === null ? undefined : Number(closed[2]),
          warnings: output.split("\n").filter((line) => line.startsWith("WARN ")),
          output
        }))
      }
      if (child.exitCode !== null) return done(child.exitCode)
      child.once("exit", (code) => done(code))
    })
    return { child, exited }
  }))

/** Reads until the channel ends: the messages' first bytes, and the reason it ended with. */
const readAll = (channel: IpcChannel.IpcChannel) =>
  Effect.gen(function*() {
    const firsts: Array<number> = []
    while (true) {
      const result = yield* Effect.result(channel.receive)
      if (Result.isFailure(result)) return { firsts, reason: result.failure.reason._tag }
      firsts.push(result.success[0]!)
    }
  })

const inOrder = (firsts: ReadonlyArray<number>): boolean => firsts.every((first, i) => first === (i & 0xff))

describe("ws:// close and linger", () => {
  // an infinite linger waits as long as the reader takes (a timer of Infinity, or of 2^31 ms or more, fired at once)
  it.live.each(["20 seconds", "Infinity"])(
    "a client process sends 62.5 MiB, closes and exits at once; the reader starts 3 s later: every message, then Closed (lingerTimeout %s)",
    (lingerTimeout) =>
      Effect.gen(function*() {
        const token = "linger-token-7f3a91c24be05d68"
        const listener = yield* Ws.WsServer.listen(freshAddress("linger"), { tokenFile: false, token })
        const peer = yield* sender(listener.url, "exit", { lingerTimeout })
        const channel = yield* listener.accept
        yield* Effect.sleep("3 seconds")
        const reading = Date.now()
        const { firsts, reason } = yield* readAll(channel)
        const run = yield* peer.exited.pipe(Effect.timeout("20 seconds"))
        assert.strictEqual(run.code, 0, run.output)
        assert.deepStrictEqual([firsts.length, reason], [COUNT, "Closed"], run.output)
        assert.isTrue(inOrder(firsts), "in order")
        // its close waited for the reader (which started 3 s after it connected), and did not give up
        assert.isAtLeast(run.closedAt ?? 0, reading, run.output)
        assert.deepStrictEqual(run.warnings, [])
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "a client whose server never reads: close gives up after lingerTimeout, warns of the bytes that never left, and the process exits",
    () =>
      Effect.gen(function*() {
        const token = "linger-token-7f3a91c24be05d68"
        const listener = yield* Ws.WsServer.listen(freshAddress("linger"), { tokenFile: false, token })
        const peer = yield* sender(listener.url, "end", { lingerTimeout: "1 second" })
        const channel = yield* listener.accept
        // nothing is read while the client lives: it ends by itself (no process.exit), close having given up
        const run = yield* peer.exited.pipe(Effect.timeout("20 seconds"))
        assert.strictEqual(run.code, 0, run.output)
        assert.isAtLeast(run.closeMs ?? 0, 900, run.output)
        assert.isBelow(run.closeMs ?? Infinity, 5000, run.output)
        assert.strictEqual(run.warnings.length, 1, run.output)
        assert.match(run.warnings[0]!, /^WARN close gave up after 1000 ms: \d+ bytes sent before it never left/)
        // the reader gets what had arrived, then ConnectionLost (never Closed)
        const { firsts, reason } = yield* readAll(channel)
        assert.strictEqual(reason, "ConnectionLost")
        assert.isBelow(firsts.length, COUNT)
        assert.isTrue(inOrder(firsts), "in order")
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "a listener's channel: close waits for the client to read (every message, then Closed), or gives up after lingerTimeout with a warning",
    () =>
      Effect.gen(function*() {
        const token = "linger-token-7f3a91c24be05d68"
        const lines: Array<string> = []
        const logger = Logger.layer([Logger.make(({ message }) => {
          lines.push((Array.isArray(message) ? message : [message]).map(String).join(" "))
        })])
        const listener = yield* Ws.WsServer.listen(freshAddress("linger"), {
          tokenFile: false,
          token,
          highWaterMark: 64 * MiB,
          lingerTimeout: "10 seconds"
        })
        const transport = Ws.WsTransport.make({ token })
        const message = new Uint8Array(64 * KiB)
        const sendAll = (server: IpcChannel.IpcChannel) =>
          Effect.gen(function*() {
            for (let i = 0; i < COUNT; i++) {
              message[0] = i & 0xff
              yield* server.send(message)
            }
          })

        // a client that reads 1.5 s later: the server's close waits for it, then the client has it all
        const late = yield* transport.dial(listener.address)
        const server = yield* listener.accept
        yield* sendAll(server)
        const closing = yield* Effect.forkChild(server.close.pipe(Effect.provide(logger)), { startImmediately: true })
        yield* Effect.sleep("1500 millis")
        assert.isUndefined(closing.pollUnsafe(), "close returned before the client read")
        const got = yield* readAll(late)
        assert.deepStrictEqual([got.firsts.length, got.reason], [COUNT, "Closed"])
        assert.isTrue(inOrder(got.firsts), "in order")
        yield* Fiber.join(closing).pipe(Effect.timeout("5 seconds"))
        assert.deepStrictEqual(lines, [])

        // a client that never reads: the server's close gives up after its linger, with a warning
        const stuck = yield* Ws.WsServer.listen(freshAddress("linger"), {
          tokenFile: false,
          token,
          highWaterMark: 64 * MiB,
          lingerTimeout: "1 second"
        })
        const silent = yield* transport.dial(stuck.address)
        const abandoning = yield* stuck.accept
        yield* sendAll(abandoning)
        const started = Date.now()
        yield* abandoning.close.pipe(Effect.provide(logger))
        const took = Date.now() - started
        // it waited its linger (a lower bound holds under load); that it gave up then is in its line below
        assert.isAtLeast(took, 900)
        assert.strictEqual(lines.length, 1, lines.join("\n"))
        assert.match(lines[0]!, /^close gave up after 1000 ms: \d+ bytes sent before it never left/)
        const lost = yield* readAll(silent)
        assert.strictEqual(lost.reason, "ConnectionLost")
        assert.isBelow(lost.firsts.length, COUNT)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "a page's WsClient sends 25 MiB and closes; the page is closed as soon as close returns: every message, then Closed",
    () =>
      Effect.gen(function*() {
        const token = "linger-token-7f3a91c24be05d68"
        // a page of about:blank (origin "null")
        const listener = yield* Ws.WsServer.listen(freshAddress("linger"), {
          tokenFile: false,
          token,
          allowedOrigins: () => true
        })
        const script = yield* Effect.promise(() =>
          Esbuild.build({
            stdin: {
              contents: `
                import * as WsClient from "@effect-ipc/transport-ws/WsClient"
                import * as Effect from "effect/Effect"
                globalThis.sendAndClose = (address, count) => Effect.runPromise(Effect.gen(function*() {
                  const channel = yield* WsClient.dial(address, { highWaterMark: ${
                64 * MiB
              }, lingerTimeout: "20 seconds" })
                  for (let i = 0; i < count; i++) {
                    const message = new Uint8Array(${64 * KiB})
                    message[0] = i & 0xff
                    yield* channel.send(message)
                  }
                  yield* channel.close
                  return Date.now()
                }).pipe(Effect.scoped))
              `,
              resolveDir: Path.join(import.meta.dirname, ".."),
              loader: "ts",
              sourcefile: "page.ts"
            },
            bundle: true,
            platform: "browser",
            format: "esm",
            write: false,
            logLevel: "silent",
            conditions: ["@effect-ipc/source"]
          })
        )
        const browser = yield* Effect.acquireRelease(
          Effect.promise(() => chromium.launch({ executablePath: process.env["CHROMIUM"] ?? "/usr/bin/chromium" })),
          (b) => Effect.promise(() => b.close())
        )
        const page = yield* Effect.promise(() => browser.newPage())
        yield* Effect.promise(() => page.addScriptTag({ content: script.outputFiles[0]!.text, type: "module" }))
        yield* Effect.promise(() => page.waitForFunction(() => "sendAndClose" in globalThis))
        // the page sends, closes, and is gone the moment its close returns (a tab closed, a page navigated away)
        const sending = yield* Effect.forkChild(
          Effect.promise(async () => {
            const closedAt = await page.evaluate(
              ([address, count]) =>
                (globalThis as unknown as { sendAndClose: (a: string, n: number) => Promise<number> })
                  .sendAndClose(address, count),
              [listener.url, PAGE_COUNT] as const
            )
            await page.close()
            return closedAt
          }),
          { startImmediately: true }
        )
        const channel = yield* listener.accept
        yield* Effect.sleep("3 seconds")
        const reading = Date.now()
        const { firsts, reason } = yield* readAll(channel)
        const closedAt = yield* Fiber.join(sending).pipe(Effect.timeout("20 seconds"))
        assert.deepStrictEqual([firsts.length, reason], [PAGE_COUNT, "Closed"])
        assert.isTrue(inOrder(firsts), "in order")
        // its close waited for the reader
        assert.isAtLeast(closedAt, reading)
      }).pipe(Effect.scoped),
    60_000
  )

  // (a listener that read nothing and then dropped the connection after our goodbye, with no close frame, was
  // taken as a graceful answer: closeChecked succeeded though the peer got no message)
  it.live("closeChecked fails ConnectionLost when the peer drops the connection instead of answering", () =>
    Effect.gen(function*() {
      let got = 0
      const server = new WebSocketServer({ host: "127.0.0.1", port: 0, handleProtocols: () => "effect-ipc.v1" })
      yield* Effect.acquireRelease(
        Effect.callback<void>((resume) => void server.on("listening", () => resume(Effect.void))),
        () => Effect.sync(() => server.close())
      )
      server.on("connection", (ws, request) => {
        ws.on("message", () => got++)
        // reads nothing, then goes (killed) without a close frame, while the client waits for the answer
        request.socket.pause()
        setTimeout(() => request.socket.destroy(), 300)
      })
      const port = (server.address() as AddressInfo).port
      const client = yield* Ws.WsTransport.make().dial(`ws://127.0.0.1:${port}/x`)
      yield* client.send(new Uint8Array(100))
      const ended = yield* Effect.result(IpcChannel.closeChecked(client)).pipe(Effect.timeout("10 seconds"))
      assert.isTrue(Result.isFailure(ended), "closeChecked succeeded")
      if (Result.isFailure(ended)) {
        assert.strictEqual(ended.failure.reason._tag, "ConnectionLost", ended.failure.message)
      }
      assert.strictEqual(got, 0)
    }).pipe(Effect.scoped))
})
