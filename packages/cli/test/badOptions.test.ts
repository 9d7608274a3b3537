/**
 * Duration options given in code that are not durations (`"x"`, `{}`, NaN,
 * a negative number), and sizes or counts that are not whole numbers, on
 * every transport's `listen` and `dial`: each is `InvalidOption` naming the
 * option, before anything is made. They were defects (`ws://`'s
 * `lingerTimeout`, read in the socket's `open` handler, threw there and ended
 * the process), hangs, or a `NaN` limit that was no limit at all. So are
 * options of the wrong shape (an `authorize` that is not a function, a word
 * that is not one of its option's), zero timeouts, nng buffers over libnng's
 * limit, and addresses that are not strings (`InvalidAddress`).
 */
import type * as IpcError from "@effect-ipc/core/IpcError"
import * as Memory from "@effect-ipc/core/Memory"
import * as Registry from "@effect-ipc/core/Registry"
import * as Transport from "@effect-ipc/core/Transport"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import { FileTransport } from "@effect-ipc/transport-file"
import { NngTransport } from "@effect-ipc/transport-nng"
import { ChildPipe, Fifo, UnixSocket } from "@effect-ipc/transport-pipe"
import { ShmTransport } from "@effect-ipc/transport-shm"
import { makeDescriptor, WsTransport } from "@effect-ipc/transport-ws"
import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

describe("TransportOptions.millisOf", () => {
  it("takes what Duration takes, and nothing that is not a duration", () => {
    const good: ReadonlyArray<readonly [unknown, number]> = [
      [100, 100],
      ["5 seconds", 5000],
      [Duration.seconds(2), 2000],
      [[1, 0], 1000],
      [Infinity, Infinity]
    ]
    for (const [value, millis] of good) assert.strictEqual(TransportOptions.millisOf(value), millis, String(value))
    for (const bad of ["x", {}, Number.NaN, -1, "-1 seconds", null, true]) {
      assert.isUndefined(TransportOptions.millisOf(bad), String(bad))
    }
  })
})

describe("duration, size and count options that are not ones", () => {
  it.live(
    "are InvalidOption on every transport's listen and dial, naming the option; nothing is made",
    () =>
      Effect.gen(function*() {
        const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-bad-options-"))
        try {
          const n = process.pid
          const cases: ReadonlyArray<readonly [string, Transport.TransportShape, string]> = [
            ["lingerTimeout", UnixSocket.make({ lingerTimeout: "x" as Duration.Input }), `unix://${dir}/u.sock`],
            ["frameTimeout", UnixSocket.make({ frameTimeout: -1 }), `unix://${dir}/u.sock`],
            [
              "heartbeat.interval",
              UnixSocket.make({ heartbeat: { interval: {} as Duration.Input, timeout: 1 } }),
              `unix://${dir}/u.sock`
            ],
            ["helloTimeout", Fifo.make({ helloTimeout: "x" as Duration.Input }), `fifo://${dir}/pair`],
            ["handshakeTimeout", ShmTransport.make({ handshakeTimeout: Number.NaN }), `shm://bad-options-${n}`],
            ["spin", ShmTransport.make({ spin: "abc" as Duration.Input }), `shm://bad-options-${n}`],
            ["livenessInterval", FileTransport.make({ livenessInterval: "x" as Duration.Input }), `file://${dir}/f`],
            ["connectTimeout", NngTransport.make({ connectTimeout: "x" as Duration.Input }), `nng+ipc://${dir}/n.ipc`],
            ["lingerTimeout", WsTransport.make({ lingerTimeout: "x" as Duration.Input }), "ws://127.0.0.1:0/bad"],
            // sizes and counts: a NaN limit was none, a negative one refused every message, a NaN mark hung
            ["maxFrameSize", UnixSocket.make({ maxFrameSize: Number.NaN }), `unix://${dir}/u.sock`],
            ["highWaterMark", Fifo.make({ highWaterMark: -1 }), `fifo://${dir}/pair`],
            ["maxBufferedMessages", ShmTransport.make({ maxBufferedMessages: 0 }), `shm://bad-options-${n}`],
            ["maxBytes", FileTransport.make({ maxBytes: Number.NaN }), `file://${dir}/f`],
            ["sendBuffer", NngTransport.make({ sendBuffer: "x" as unknown as number }), `nng+ipc://${dir}/n.ipc`],
            ["maxBufferedBytes", WsTransport.make({ maxBufferedBytes: 1.5 }), "ws://127.0.0.1:0/bad"],
            // memory:// took them unchecked: a NaN limit was none
            ["maxMessageSize", Memory.make({ maxMessageSize: Number.NaN }), `memory://bad-options-${n}`],
            ["maxBufferedMessages", Memory.make({ maxBufferedMessages: 1.5 }), `memory://bad-options-${n}`],
            ["maxMessageSize", Memory.make({ maxMessageSize: -1 }), `memory://bad-options-${n}`]
          ]
          for (const [option, transport, address] of cases) {
            for (
              const [what, attempt] of [["listen", transport.listen(address)], [
                "dial",
                transport.dial(address)
              ]] as const
            ) {
              const error = yield* Effect.flip(
                Effect.scoped(attempt as Effect.Effect<unknown, IpcError.IpcError, Scope.Scope>)
              )
              assert.strictEqual(error.reason._tag, "InvalidOption", `${address} ${what}: ${error.message}`)
              assert.include(error.detail, `${option} `, `${address} ${what}`)
              assert.match(error.detail, /is not a duration|is not a whole number/)
            }
          }
          assert.deepStrictEqual(Fs.readdirSync(dir), [], "nothing made")
        } finally {
          Fs.rmSync(dir, { recursive: true, force: true })
        }
      }),
    60_000
  )
})

/** What `attempt` fails with (it must fail). */
const failureOf = (attempt: Effect.Effect<unknown, IpcError.IpcError, Scope.Scope>) =>
  Effect.flip(Effect.scoped(attempt))

describe("addresses that are not strings, and options of the wrong shape or out of range", () => {
  it.live(
    "are InvalidAddress or InvalidOption on every transport's listen and dial, saying what is wrong",
    () =>
      Effect.gen(function*() {
        const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-bad-shapes-"))
        try {
          const n = process.pid
          const transports: ReadonlyArray<readonly [Transport.TransportShape, string]> = [
            [UnixSocket.make(), `unix://${dir}/u.sock`],
            [Fifo.make(), `fifo://${dir}/pair`],
            [ShmTransport.make(), `shm://bad-shapes-${n}`],
            [FileTransport.make(), `file://${dir}/f`],
            [NngTransport.make(), `nng+ipc://${dir}/n.ipc`],
            [WsTransport.make(), "ws://127.0.0.1:0/bad"],
            [Memory.make(), `memory://bad-shapes-${n}`],
            // as users get them: instrumented (by the layers and `Registry.layerConfig`), and routed by scheme
            [Transport.instrument(Memory.make()), `memory://bad-shapes-${n}`],
            [Transport.instrument(UnixSocket.make()), `unix://${dir}/u.sock`],
            [Transport.route([UnixSocket.make(), Memory.make()]), `memory://bad-shapes-${n}`]
          ]
          // a number, or nothing, where the address goes: defects before (on memory://, and on every
          // instrumented transport, whose spans showed the address before the transport could refuse it)
          for (const [transport] of transports) {
            // a URL object is not shown (its token would be)
            const url = new URL("ws://127.0.0.1:9/app?token=SECRET-TOKEN")
            for (const address of [42, undefined, { path: "/tmp/x" }, url, Object.create(null)]) {
              for (const attempt of [transport.listen, transport.dial]) {
                const error = yield* failureOf(attempt(address as unknown as string))
                assert.strictEqual(error.reason._tag, "InvalidAddress", error.message)
                assert.include(error.detail, "an address is a string")
                assert.notInclude(error.message, "SECRET")
              }
            }
          }
          const cases: ReadonlyArray<readonly [Transport.TransportShape, string, RegExp]> = [
            // an authorize that is not a function refused every peer without a word
            [UnixSocket.make({ authorize: 42 as never }), `unix://${dir}/u.sock`, /^authorize 42 is not a function/],
            [Fifo.make({ authorize: "me" as never }), `fifo://${dir}/pair`, /^authorize "me" is not a function/],
            [NngTransport.make({ authorize: true as never }), `nng+ipc://${dir}/n.ipc`, /^authorize true/],
            [ShmTransport.make({ authorize: {} as never }), `shm://bad-shapes-${n}`, /^authorize \[object Object\]/],
            [
              UnixSocket.make({ authorize: Object.create(null) }),
              `unix://${dir}/u.sock`,
              /^authorize \[object Object\]/
            ],
            // a string of origins was a defect at listen
            [
              WsTransport.make({ allowedOrigins: "http://localhost" as never }),
              "ws://127.0.0.1:0/bad",
              /^allowedOrigins "http:\/\/localhost" is not a list/
            ],
            [
              WsTransport.make({ allowedHosts: "localhost" as never }),
              "ws://127.0.0.1:0/bad",
              /^allowedHosts "localhost"/
            ],
            // zero where time must pass: every handshake timed out, and the listener served nobody, unseen
            [
              NngTransport.make({ handshakeTimeout: 0 }),
              `nng+ipc://${dir}/n.ipc`,
              /^handshakeTimeout 0 is not above zero/
            ],
            [
              ShmTransport.make({ handshakeTimeout: "0 millis" }),
              `shm://bad-shapes-${n}`,
              /^handshakeTimeout "0 millis"/
            ],
            [FileTransport.make({ livenessInterval: 0 }), `file://${dir}/f`, /^livenessInterval 0 is not above zero/],
            // a zero writeTimeout dropped the peer at the first send that waited for room
            [UnixSocket.make({ writeTimeout: 0 }), `unix://${dir}/u.sock`, /^writeTimeout 0 is not above zero/],
            // a heartbeat of another shape was a defect at dial ("Invalid Input: undefined"); a timeout no longer
            // than the interval dropped idle, healthy peers
            [
              UnixSocket.make({ heartbeat: {} as never }),
              `unix://${dir}/u.sock`,
              /^heartbeat \{\} is not \{ interval, timeout \}/
            ],
            [
              Fifo.make({ heartbeat: { interval: 1000 } as never }),
              `fifo://${dir}/pair`,
              /^heartbeat \{"interval":1000\} is not/
            ],
            [UnixSocket.make({ heartbeat: null as never }), `unix://${dir}/u.sock`, /^heartbeat null is not/],
            [
              UnixSocket.make({ heartbeat: { interval: "1 second", timeout: "1 second" } }),
              `unix://${dir}/u.sock`,
              /^heartbeat.timeout "1 second" is not longer than heartbeat.interval "1 second"/
            ],
            [
              Fifo.make({ heartbeat: { interval: 500, timeout: 400 } }),
              `fifo://${dir}/pair`,
              /^heartbeat.timeout 400 is not longer than heartbeat.interval 500/
            ],
            [UnixSocket.make({ frameTimeout: 0 }), `unix://${dir}/u.sock`, /^frameTimeout 0 is not above zero/],
            // a koffi TypeError (a defect) at listen and dial
            [
              NngTransport.make({ tls: { authMode: "maybe" as never } }),
              `nng+ipc://${dir}/n.ipc`,
              /^tls.authMode "maybe" is not one of none, optional, required$/
            ],
            // every dial failed at once
            [
              NngTransport.make({ connectTimeout: 0 }),
              `nng+ipc://${dir}/n.ipc`,
              /^connectTimeout 0 is not above zero/
            ],
            // past what a timer can wait, Node fires it after 1 ms: close gave up at once (data lost), every
            // handshake timed out; Infinity is "no limit" only where the option has one (a linger, a write)
            [
              WsTransport.make({ lingerTimeout: "30 days" }),
              "ws://127.0.0.1:0/bad",
              /^lingerTimeout "30 days" is longer than a timer can wait .*; Infinity waits without limit$/
            ],
            [
              WsTransport.make({ handshakeTimeout: Infinity }),
              "ws://127.0.0.1:0/bad",
              /^handshakeTimeout Infinity is not a finite duration$/
            ],
            [
              UnixSocket.make({ heartbeat: { interval: 2 ** 31, timeout: 1000 } }),
              `unix://${dir}/u.sock`,
              /^heartbeat.interval 2147483648 is longer than a timer can wait \(2\^31 - 1 ms, about 24.8 days\)$/
            ],
            [
              FileTransport.make({ pollInterval: Infinity }),
              `file://${dir}/f`,
              /^pollInterval Infinity is not a finite/
            ],
            // a misspelt word was the default, without a word: os durability for "fsnyc"
            [
              FileTransport.make({ durability: "fsnyc" as never }),
              `file://${dir}/f`,
              /^durability "fsnyc" is not one of os, fsync$/
            ],
            [FileTransport.make({ whenFull: "block" as never }), `file://${dir}/f`, /^whenFull "block" is not one of/],
            // more than libnng queues: the listener took it, then every connection failed unseen
            [
              NngTransport.make({ recvBuffer: 100_000_000 }),
              `nng+ipc://${dir}/n.ipc`,
              /^recvBuffer 100000000 is over 8192/
            ],
            [NngTransport.make({ sendBuffer: 8193 }), `nng+ipc://${dir}/n.ipc`, /^sendBuffer 8193 is over 8192/]
          ]
          for (const [transport, address, detail] of cases) {
            for (const [what, attempt] of [["listen", transport.listen], ["dial", transport.dial]] as const) {
              const error = yield* failureOf(attempt(address))
              assert.strictEqual(error.reason._tag, "InvalidOption", `${address} ${what}: ${error.message}`)
              assert.match(error.detail, detail, `${address} ${what}`)
            }
          }
          const spawned = yield* failureOf(ChildPipe.spawn("true", { via: "pipes" as never }))
          assert.strictEqual(spawned.reason._tag, "InvalidOption")
          assert.match(spawned.detail, /^via "pipes" is not one of fd, stdio$/)
          assert.deepStrictEqual(Fs.readdirSync(dir), [], "nothing made")
        } finally {
          Fs.rmSync(dir, { recursive: true, force: true })
        }
      }),
    60_000
  )

  it.live("nng's buffers at libnng's limit work end to end", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-nng-limit-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true })))
      const transport = NngTransport.make({ sendBuffer: 8192, recvBuffer: 8192 })
      const address = `nng+ipc://${dir}/n.ipc`
      const listener = yield* transport.listen(address)
      const client = yield* transport.dial(address)
      const server = yield* listener.accept
      yield* client.send(new Uint8Array([5]))
      assert.deepStrictEqual([...(yield* server.receive)], [5])
    }).pipe(Effect.scoped))
})

describe("options given in code to a transport's layer", () => {
  it.live(
    "that no listen or dial would take fail the layer's build with InvalidOption naming the option, as configuration's do",
    () =>
      Effect.gen(function*() {
        const layers: ReadonlyArray<
          readonly [string, (options: never) => Layer.Layer<Transport.Transport, IpcError.IpcError>]
        > = [
          ["memory", Memory.layer],
          ["unix", UnixSocket.layer],
          ["fifo", Fifo.layer],
          ["child", ChildPipe.layer],
          ["file", FileTransport.layer],
          ["shm", ShmTransport.layer],
          ["nng", NngTransport.layer],
          ["ws", WsTransport.layer]
        ]
        const bad: ReadonlyArray<readonly [string, unknown]> = [
          ["maxMessageSize", { maxMessageSize: -1 }],
          ["maxBufferedMessages", { maxBufferedMessages: Number.NaN }],
          ["handshakeTimeout", { handshakeTimeout: 0 }],
          ["lingerTimeout", { lingerTimeout: "x" }],
          ["heartbeat.timeout", { heartbeat: { interval: 1000, timeout: 500 } }],
          ["mode", { mode: 600 }],
          ["authorize", { authorize: 5 }]
        ]
        for (const [name, layer] of layers) {
          for (const [option, options] of bad) {
            const built = yield* Effect.exit(Effect.scoped(Layer.build(layer(options as never))))
            assert.isTrue(Exit.isFailure(built), `${name}.layer(${JSON.stringify(options)}) built`)
            if (Exit.isSuccess(built)) continue
            const error = Cause.squash(built.cause) as IpcError.IpcError
            assert.strictEqual(error.reason._tag, "InvalidOption", `${name}: ${String(error)}`)
            assert.match(error.detail, new RegExp(`^${option.replace(".", "\\.")} `), `${name}: ${error.detail}`)
          }
          // good options still build
          yield* Effect.scoped(Layer.build(layer({ maxMessageSize: 1024, lingerTimeout: "1 second" } as never)))
        }
        // ws://'s descriptor with options in code, chosen by configuration: the same
        const configured = Registry.layerConfig([makeDescriptor({ maxMessageSize: -1 })]).pipe(
          Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: { IPC_TRANSPORT: "ws" } })))
        )
        const refused = yield* Effect.flip(Effect.scoped(Layer.build(configured)))
        assert.match(String(refused), /InvalidOption: .*maxMessageSize -1 is not a whole number/)
      }),
    60_000
  )
})
