/**
 * Pending handshakes are capped: a flood of connections that never finish
 * (or are slow to finish) their WebSocket upgrade holds at most
 * `maxPendingHandshakes` descriptors of the listener's process (the oldest
 * pending ones are dropped as new ones come), so it cannot run the listener
 * out of descriptors; a well-behaved client is served during the flood, and
 * the descriptors come back once it is over.
 */
import * as Ws from "@effect-ipc/transport-ws"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Metric from "effect/Metric"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import type * as Net from "node:net"
import * as Path from "node:path"
import { closedBy, collect, freshPort, handshake, rawConnect } from "./helpers.ts"

const root = Path.resolve(import.meta.dirname, "../../..")

/** Polls `check` every 20 ms until it holds (a guard of 30 s against a hang, not a figure). */
const until = (check: () => boolean, what: () => string) =>
  Effect.gen(function*() {
    const deadline = Date.now() + 30_000
    while (!check()) {
      if (Date.now() > deadline) return yield* Effect.fail(new Error(`timed out waiting: ${what()}`))
      yield* Effect.sleep("20 millis")
    }
  })

const fdsOf = (pid: number): number => Fs.readdirSync(`/proc/${pid}/fd`).length

/** The echo server in its own process, with at most `maxFds` descriptors (`ulimit -n`); its pid and token. */
const serverProcess = (address: string, maxFds: number) =>
  Effect.gen(function*() {
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        ChildProcess.spawn(
          "bash",
          [
            "-c",
            `ulimit -n ${maxFds} && exec bash scripts/node.sh "$@"`,
            "server",
            "packages/transport-ws/test/fixtures/echo-server.ts",
            address,
            "60000"
          ],
          { cwd: root, stdio: ["pipe", "pipe", "inherit"] }
        )
      ),
      (server) =>
        Effect.callback<void>((resume) => {
          if (server.exitCode !== null || server.signalCode !== null) return resume(Effect.void)
          server.once("exit", () => resume(Effect.void))
          server.stdin!.end()
          setTimeout(() => server.kill("SIGKILL"), 10_000).unref()
        })
    )
    let out = ""
    child.stdout!.on("data", (chunk: Buffer) => (out += chunk.toString()))
    yield* until(() => /ready \S+\n/.test(out) || child.exitCode !== null, () => `the server to start (${out})`)
    const token = /ready (\S+)\n/.exec(out)?.[1]
    assert.isDefined(token, `the server did not start: ${out}`)
    return { pid: child.pid!, token: token! }
  })

describe("ws:// pending handshakes", () => {
  it.live(
    "a flood of 400 unfinished handshakes holds at most maxPendingHandshakes descriptors; a good client is served; fds come back",
    () =>
      Effect.gen(function*() {
        const port = freshPort()
        const address = `ws://127.0.0.1:${port}/pending`
        // 256 descriptors: without a cap, 400 pending connections run the listener out of them
        const server = yield* serverProcess(address, 256)
        const echo = (i: number) =>
          Effect.scoped(Effect.gen(function*() {
            const channel = yield* Ws.WsClient.dial(address, { token: server.token })
            yield* channel.send(new Uint8Array([i]))
            assert.strictEqual((yield* channel.receive)[0], i)
          }))
        yield* echo(1)
        const baseline = fdsOf(server.pid)
        const sockets: Array<Net.Socket> = []
        yield* Effect.scoped(Effect.gen(function*() {
          for (let i = 0; i < 400; i++) {
            const socket = yield* rawConnect(port)
            sockets.push(socket)
            // silent ones, and ones sending their request slowly (half of its headers, never the end)
            if (i % 2 === 1) socket.write(`GET /pending HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n`)
          }
          // the server has seen them all: it holds at most 64 of them, and has dropped the others
          yield* until(
            () => sockets.filter((s) => s.closed).length >= 400 - 64,
            () => `the server to drop all but 64 (dropped ${sockets.filter((s) => s.closed).length})`
          )
          const during = fdsOf(server.pid)
          // a well-behaved client, while the flood's newest 64 are still pending
          yield* echo(2)
          const stillOpen = sockets.filter((s) => !s.closed).length
          console.log(`pending flood: ${baseline} fds before, ${during} during (${stillOpen} of 400 still open)`)
          assert.isAtMost(during, baseline + 64 + 2, `${during} descriptors during the flood`)
        }))
        // the flood ends: back to the baseline, and still serving
        yield* until(
          () => fdsOf(server.pid) <= baseline,
          () => `descriptors back to ${baseline} (${fdsOf(server.pid)})`
        )
        yield* echo(3)
        yield* Effect.forEach(sockets, closedBy, { discard: true })
      }).pipe(Effect.scoped),
    90_000
  )

  it.effect("maxPendingHandshakes must be a positive whole number: InvalidOption", () =>
    Effect.gen(function*() {
      for (const bad of [0, -1, 1.5, Number.NaN]) {
        const error = yield* Effect.flip(
          Ws.WsServer.listen(`ws://127.0.0.1:${freshPort()}/pending`, { tokenFile: false, maxPendingHandshakes: bad })
        )
        assert.strictEqual(error.reason._tag, "InvalidOption", String(bad))
        assert.include(error.message, "maxPendingHandshakes")
      }
    }).pipe(Effect.scoped))

  // TransportOptions.checkSizes takes Infinity (and says so in its errors: "or Infinity: no limit"); listen refused it
  it.live("maxPendingHandshakes: Infinity is no limit: the first of more than 64 pending connections still completes its handshake", () =>
    Effect.gen(function*() {
      const port = freshPort()
      const listener = yield* Ws.WsServer.listen(`ws://127.0.0.1:${port}/pending`, {
        tokenFile: false,
        maxPendingHandshakes: Infinity,
        handshakeTimeout: "60 seconds"
      })
      const first = yield* rawConnect(port)
      const said = collect(first)
      yield* Effect.forEach(Array.from({ length: 70 }, () => port), rawConnect, { discard: true })
      // a client that came after them all is served: the listener has taken in every connection before it
      const client = yield* Ws.WsClient.dial(listener.url)
      yield* client.close
      first.write(
        handshake("/pending", port, { "Sec-WebSocket-Protocol": `effect-ipc.v1, effect-ipc.token.${listener.token}` })
      )
      yield* Effect.callback<void>((resume) => {
        const check = () => said.text().includes("\r\n\r\n") || first.closed ? resume(Effect.void) : undefined
        first.on("data", check)
        first.once("close", check)
        check()
      })
      assert.match(said.text(), /^HTTP\/1\.1 101 /, said.text())
    }).pipe(Effect.scoped))

  it.live("the oldest pending connection is the one dropped, counted and warned as a refusal", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const logger = Logger.make(({ message }) => {
        lines.push((Array.isArray(message) ? message : [message]).map(String).join(" "))
      })
      const registry = new Map() as Metric.MetricRegistry
      const services = Layer.mergeAll(Logger.layer([logger]), Layer.succeed(Metric.MetricRegistry, registry))
      const port = freshPort()
      yield* Ws.WsServer.listen(`ws://127.0.0.1:${port}/pending`, {
        tokenFile: false,
        maxPendingHandshakes: 2,
        handshakeTimeout: "60 seconds"
      }).pipe(
        Effect.provide(services)
      )
      const first = yield* rawConnect(port)
      const second = yield* rawConnect(port)
      // the kernel hands connections to the listener in the order they came: the first is the oldest
      const third = yield* rawConnect(port)
      yield* closedBy(first).pipe(Effect.timeout("20 seconds"))
      assert.isFalse(second.closed, "the second is still pending")
      assert.isFalse(third.closed, "the third is still pending")
      const refusals = yield* Metric.snapshot.pipe(
        Effect.provideService(Metric.MetricRegistry, registry),
        Effect.map((snapshots) =>
          snapshots.filter((s) => s.id === "effect_ipc_connections_refused" && s.type === "Counter")
            .reduce((total, s) => total + Number((s.state as { count: number }).count), 0)
        )
      )
      assert.strictEqual(refusals, 1)
      assert.isTrue(
        lines.some((line) => line.startsWith("refused a connection") && line.includes("maxPendingHandshakes")),
        lines.join("\n")
      )
    }).pipe(Effect.scoped))
})

/** The most memory process `pid` has held (VmHWM), in MiB. */
const peakMiB = (pid: number): number =>
  Number(/VmHWM:\s+(\d+) kB/.exec(Fs.readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024

describe("ws:// refused clients", () => {
  // a client with no token that offers effect-ipc.refused is upgraded to be told 4401, and cut off 2 s later:
  // `ws` read on meanwhile and buffered its message up to maxMessageSize (64 MiB), so 64 of them held 1.4 GB
  it.live(
    "32 refused clients each sending all but the last MiB of a 48 MiB message: the listener's memory grows by less than 64 MiB; each is told 4401",
    () =>
      Effect.gen(function*() {
        const port = freshPort()
        const server = yield* serverProcess(`ws://127.0.0.1:${port}/refused`, 1024)
        const before = peakMiB(server.pid)
        const size = 48 * 1024 * 1024
        // a masked binary frame of `size` bytes (mask 0)
        const header = Buffer.alloc(14)
        header[0] = 0x82
        header[1] = 0x80 | 127
        header.writeBigUInt64BE(BigInt(size), 2)
        const chunk = Buffer.alloc(1024 * 1024, 0x41)
        const codes = yield* Effect.forEach(Array.from({ length: 32 }, (_, i) => i), () =>
          Effect.scoped(Effect.gen(function*() {
            const socket = yield* rawConnect(port)
            let answer = Buffer.alloc(0)
            socket.on("data", (data: Buffer) => (answer = Buffer.concat([answer, data])))
            socket.write(
              [
                "GET /refused HTTP/1.1",
                `Host: 127.0.0.1:${port}`,
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version: 13",
                "Sec-WebSocket-Protocol: effect-ipc.v1, effect-ipc.refused",
                "",
                ""
              ].join("\r\n")
            )
            yield* until(() =>
              answer.includes("\r\n\r\n"), () => "the handshake's answer")
            // all of the message but its last MiB, as fast as the listener takes it, until it cuts the connection
            socket.write(header)
            yield* Effect.callback<void>((resume) => {
              let sent = 0
              const pump = () => {
                while (sent < size - chunk.byteLength) {
                  sent += chunk.byteLength
                  if (!socket.write(chunk)) return void socket.once("drain", pump)
                }
              }
              socket.once("close", () => resume(Effect.void))
              pump()
            })
            // the close frame: 0x88, its length, the code
            const at = answer.indexOf("\r\n\r\n") + 4
            return answer.length >= at + 4 && answer[at] === 0x88 ? answer.readUInt16BE(at + 2) : -1
          })), { concurrency: "unbounded" })
        assert.deepStrictEqual(new Set(codes), new Set([4401]))
        const grown = peakMiB(server.pid) - before
        assert.isBelow(grown, 64, `the listener grew by ${grown.toFixed(0)} MiB`)
      }).pipe(Effect.scoped),
    60_000
  )
})
