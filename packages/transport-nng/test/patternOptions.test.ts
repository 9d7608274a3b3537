/**
 * The messaging-pattern sockets check their options before anything is
 * opened, as the transport does: a duration that is not one was a defect
 * (`Invalid Input`), a decimal `mode` opened the socket file to the group
 * (`600` is 0o1130), a bad `tls.authMode` was a koffi `TypeError`, a pool
 * whose `min` is over its `max` opened more sockets than `max`, and `dial: 42`
 * died as not iterable. Each is now a typed error naming the option, and no
 * socket file is made. `maxMessageSize` is nng's on `ipc://` (a larger
 * message drops the connection) and not on `inproc://`, as the README says.
 */
import type * as IpcError from "@effect-ipc/core/IpcError"
import { NngTransport, Pair, Pipeline, PubSub, Rep, Req } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-nng-pattern-options-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/** The error `open` fails with (a success fails the test). */
const refusal = <A>(open: Effect.Effect<A, IpcError.IpcError, Scope.Scope>) => Effect.flip(Effect.scoped(open))

describe("messaging-pattern sockets' options", () => {
  it.effect("what no socket would take is a typed error naming it, and nothing is made", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const url = `ipc://${dir}/p.ipc`
      const cases: ReadonlyArray<
        readonly [string, Effect.Effect<unknown, IpcError.IpcError, Scope.Scope>, string, RegExp]
      > = [
        ["Rep mode 600", Rep.make({ listen: url, mode: 600 }), "InvalidOption", /^mode 0o1130 is not permission bits/],
        [
          "PubSub mode 0o7777",
          PubSub.publisher({ listen: url, mode: 0o7777 }),
          "InvalidOption",
          /^mode 0o7777 is not permission bits/
        ],
        ["Pair mode 1.5", Pair.make({ listen: url, mode: 1.5 }), "InvalidOption", /^mode 1.5 is not permission bits/],
        [
          "Req timeout x",
          Req.make({ listen: url, timeout: "x" as Duration.Input }),
          "InvalidOption",
          /^timeout "x" is not a duration/
        ],
        [
          "Req timeout 0",
          Req.make({ listen: url, timeout: 0 }),
          "InvalidOption",
          /^timeout 0 is not above zero/
        ],
        [
          "reconnect.min x",
          Req.make({ dial: url, reconnect: { min: "x" as Duration.Input } }),
          "InvalidOption",
          /^reconnect.min "x" is not a duration/
        ],
        [
          "reconnect.min -5",
          Pipeline.pusher({ dial: url, reconnect: { min: -5 } }),
          "InvalidOption",
          /^reconnect.min -5 is not a duration/
        ],
        [
          "reconnect.min over reconnect.max",
          Req.make({ dial: url, reconnect: { min: "5 seconds", max: "1 second" } }),
          "InvalidOption",
          /^reconnect.min "5 seconds" is longer than reconnect.max "1 second"/
        ],
        [
          "maxConnections 0",
          Pipeline.puller({ listen: url, maxConnections: 0 }),
          "InvalidOption",
          /^maxConnections 0 is not a whole number of at least 1/
        ],
        [
          "maxConnections 2.5",
          Rep.make({ listen: url, maxConnections: 2.5 }),
          "InvalidOption",
          /^maxConnections 2.5 is not a whole number of at least 1/
        ],
        [
          "linger x",
          Pipeline.puller({ listen: url, linger: "x" as Duration.Input }),
          "InvalidOption",
          /^linger "x" is not a duration/
        ],
        [
          "linger Infinity",
          Pipeline.puller({ listen: url, linger: Infinity }),
          "InvalidOption",
          /^linger Infinity is not a finite duration/
        ],
        [
          "dial 42",
          Req.make({ dial: 42 as never }),
          "InvalidAddress",
          /^dial is not an address nor a list of addresses \(got number\)/
        ],
        [
          "pool min over max",
          Req.make({ dial: url, pool: { min: 5, max: 2 } }),
          "InvalidOption",
          /^pool.min 5 is more than pool.max 2/
        ],
        [
          "pool max 0",
          Req.make({ dial: url, pool: { max: 0 } }),
          "InvalidOption",
          /^pool.max 0 is not a whole number/
        ],
        [
          "pool min NaN",
          Req.make({ dial: url, pool: { min: Number.NaN } }),
          "InvalidOption",
          /^pool.min NaN is not a whole number/
        ],
        [
          // the sockets opened at once, before any request: Infinity never ended opening them
          "pool min Infinity",
          Req.make({ dial: url, pool: { min: Infinity } }),
          "InvalidOption",
          /^pool.min Infinity is not a whole number of at least 1$/
        ],
        [
          "tls.authMode maybe",
          Req.make({ dial: "tls+tcp://127.0.0.1:1", tls: { authMode: "maybe" as never } }),
          "InvalidOption",
          /^tls.authMode "maybe" is not one of none, optional, required/
        ],
        [
          "sendBuffer over libnng's limit",
          Pair.make({ listen: url, sendBuffer: 9000 }),
          "InvalidOption",
          /^sendBuffer 9000 is over 8192/
        ],
        [
          "maxMessageSize -1",
          Rep.make({ listen: url, maxMessageSize: -1 }),
          "InvalidOption",
          /^maxMessageSize -1 is not a whole number/
        ]
      ]
      for (const [what, open, reason, detail] of cases) {
        const error = yield* refusal(open)
        assert.strictEqual(error.reason._tag, reason, `${what}: ${error.message}`)
        assert.match(error.detail, detail, what)
        assert.isFalse(Fs.existsSync(`${dir}/p.ipc`), `${what}: nothing is made`)
      }
      // Rep.serve's concurrency: none, a negative number, NaN or a fraction never answered a request
      for (const concurrency of [0, -1, Number.NaN, 1.5]) {
        const error = yield* refusal(Rep.serve({ listen: url, concurrency }, (request) => Effect.succeed(request)))
        assert.strictEqual(error.reason._tag, "InvalidOption", `concurrency ${concurrency}: ${error.message}`)
        assert.match(error.detail, /^concurrency .* is not a whole number of requests, at least 1/)
        assert.isFalse(Fs.existsSync(`${dir}/p.ipc`), `concurrency ${concurrency}: nothing is made`)
      }
      // a request's own timeout too
      const requester = yield* Req.make({ dial: url })
      const bad = yield* Effect.flip(requester.request(new Uint8Array(1), { timeout: "soon" as Duration.Input }))
      assert.strictEqual(bad.reason._tag, "InvalidOption")
      assert.match(bad.detail, /^timeout "soon" is not a duration/)
    }).pipe(Effect.scoped))

  it.live(
    "maxMessageSize drops a larger message over ipc:// and inproc:// (which nng itself does not limit)",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const pushed = new Uint8Array(100).fill(7)
        const small = new Uint8Array(5).fill(1)
        const urls = [[`ipc://${dir}/m.ipc`, true], [`inproc://pattern-options-${process.pid}`, true]] as const
        for (const [url, limited] of urls) {
          yield* Effect.scoped(Effect.gen(function*() {
            const puller = yield* Pipeline.puller({ listen: url, maxMessageSize: 10 })
            const pusher = yield* Pipeline.pusher({ dial: url })
            yield* pusher.push(pushed)
            // then small ones until one arrives (over ipc the large one dropped the connection, and what was
            // pushed meanwhile went with it; the pusher redials)
            yield* Effect.forkScoped(Effect.forever(Effect.andThen(pusher.push(small), Effect.sleep("50 millis"))))
            const first = yield* puller.pull.pipe(Effect.timeout("10 seconds"))
            assert.strictEqual(first.byteLength, limited ? 5 : 100, url)
          }))
        }
      }).pipe(Effect.scoped),
    30_000
  )

  // nng's recv-size-max 0 is no limit: maxMessageSize 0 let every message through, where the transport's 0 is 0 bytes
  it.live(
    "maxMessageSize 0 takes only empty messages, on pull, pair, rep and req",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        let n = 0
        const outcome = (run: (url: string) => Effect.Effect<unknown, IpcError.IpcError, Scope.Scope>) =>
          Effect.scoped(run(`ipc://${dir}/zero-${n++}.ipc`)).pipe(
            Effect.timeout("2 seconds"),
            Effect.match({ onFailure: () => "lost", onSuccess: () => "arrived" })
          )
        for (const [size, expected] of [[0, "arrived"], [1, "lost"], [1 << 20, "lost"]] as const) {
          const pull = yield* outcome((url) =>
            Effect.gen(function*() {
              const puller = yield* Pipeline.puller({ listen: url, maxMessageSize: 0 })
              const pusher = yield* Pipeline.pusher({ dial: url })
              yield* pusher.push(new Uint8Array(size))
              return yield* puller.pull
            })
          )
          const pair = yield* outcome((url) =>
            Effect.gen(function*() {
              const receiver = yield* Pair.make({ listen: url, maxMessageSize: 0 })
              const sender = yield* Pair.make({ dial: url })
              yield* sender.send(new Uint8Array(size))
              return yield* receiver.receive
            })
          )
          const request = yield* outcome((url) =>
            Effect.gen(function*() {
              yield* Rep.serve({ listen: url, maxMessageSize: 0 }, () => Effect.succeed(new Uint8Array(0)))
              const requester = yield* Req.make({ dial: url, timeout: "1 second" })
              return yield* requester.request(new Uint8Array(size))
            })
          )
          const reply = yield* outcome((url) =>
            Effect.gen(function*() {
              yield* Rep.serve({ listen: url }, () => Effect.succeed(new Uint8Array(size)))
              const requester = yield* Req.make({ dial: url, timeout: "1 second", maxMessageSize: 0 })
              return yield* requester.request(new Uint8Array(0))
            })
          )
          assert.deepStrictEqual(
            { pull, pair, request, reply },
            { pull: expected, pair: expected, request: expected, reply: expected },
            `${size} bytes`
          )
        }
      }).pipe(Effect.scoped),
    60_000
  )

  // nng counts pair's hop count and req/rep's request id (4 bytes) against recv-size-max: a pair message of the
  // last 4 bytes up to maxMessageSize was dropped without a word, and such a request or reply lost its connection
  it.live(
    "a message of exactly maxMessageSize arrives on pair, rep and req; one byte more does not",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        // the header is added to nng's limit, which stops at 4 GiB: the largest sizes still open
        for (const largest of [0xffff_fffd, 0xffff_ffff]) {
          yield* Effect.scoped(
            Pair.make({ listen: `inproc://largest-${process.pid}-${largest}`, maxMessageSize: largest })
          )
        }
        const limit = 1000
        let n = 0
        const outcome = (run: (url: string) => Effect.Effect<unknown, IpcError.IpcError, Scope.Scope>) =>
          Effect.scoped(run(`ipc://${dir}/exact-${n++}.ipc`)).pipe(
            Effect.timeout("2 seconds"),
            Effect.match({ onFailure: () => "lost", onSuccess: () => "arrived" })
          )
        for (const [size, expected] of [[limit, "arrived"], [limit - 3, "arrived"], [limit + 1, "lost"]] as const) {
          const pair = yield* outcome((url) =>
            Effect.gen(function*() {
              const receiver = yield* Pair.make({ listen: url, maxMessageSize: limit })
              const sender = yield* Pair.make({ dial: url })
              yield* sender.send(new Uint8Array(size))
              return yield* receiver.receive
            })
          )
          const request = yield* outcome((url) =>
            Effect.gen(function*() {
              yield* Rep.serve({ listen: url, maxMessageSize: limit }, () => Effect.succeed(new Uint8Array(1)))
              const requester = yield* Req.make({ dial: url, timeout: "1 second" })
              return yield* requester.request(new Uint8Array(size))
            })
          )
          const reply = yield* outcome((url) =>
            Effect.gen(function*() {
              yield* Rep.serve({ listen: url }, () => Effect.succeed(new Uint8Array(size)))
              const requester = yield* Req.make({ dial: url, timeout: "1 second", maxMessageSize: limit })
              return yield* requester.request(new Uint8Array(1))
            })
          )
          assert.deepStrictEqual(
            { pair, request, reply },
            { pair: expected, request: expected, reply: expected },
            `${size} bytes`
          )
        }
      }).pipe(Effect.scoped),
    60_000
  )
})

describe("options given in code that are not an object (a caller without types)", () => {
  it.effect("every pattern socket and the transport fail with InvalidOption saying so, never a TypeError defect", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      for (const given of [null, "fast", 42]) {
        const bad = given as never
        const attempts: ReadonlyArray<Effect.Effect<unknown, IpcError.IpcError, Scope.Scope>> = [
          Req.make(bad),
          Rep.make(bad),
          Rep.serve(bad, Effect.succeed),
          Pair.make(bad),
          PubSub.publisher(bad),
          PubSub.subscriber(bad),
          Pipeline.pusher(bad),
          Pipeline.puller(bad),
          NngTransport.makeScoped(bad),
          NngTransport.make(bad).listen(`nng+ipc://${dir}/t.ipc`),
          NngTransport.make(bad).dial(`nng+ipc://${dir}/t.ipc`)
        ]
        for (const attempt of attempts) {
          const error = yield* refusal(attempt)
          assert.strictEqual(error.reason._tag, "InvalidOption", error.detail)
          assert.match(error.detail, /options are not an object \(got (null|a string|a number)\)$/)
        }
      }
    }).pipe(Effect.scoped))
})

describe("a tls option of the wrong shape (a caller without types)", () => {
  it.effect("is InvalidOption at every socket and the transport, whatever the scheme (nng+ipc:// too)", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const cases: ReadonlyArray<[unknown, string]> = [
        ["x", "tls (a string) is not { certFile, keyFile, caFile, authMode, serverName }"],
        [null, "tls (null) is not { certFile, keyFile, caFile, authMode, serverName }"],
        [[], "tls (a list) is not { certFile, keyFile, caFile, authMode, serverName }"],
        [{ certFile: 42 }, "tls.certFile (a number) is not a path (a non-empty string)"],
        [{ caFile: "" }, `tls.caFile ("") is not a path (a non-empty string)`],
        [{ serverName: Buffer.from("k") }, "tls.serverName (an object) is not a host name (a non-empty string)"]
      ]
      for (const [tls, detail] of cases) {
        const bad = { tls } as never
        const listenAt = `nng+ipc://${dir}/tls.ipc`
        const attempts: ReadonlyArray<Effect.Effect<unknown, IpcError.IpcError, Scope.Scope>> = [
          Rep.make({ ...(bad as object), listen: listenAt }),
          Pair.make({ ...(bad as object), listen: listenAt }),
          PubSub.publisher({ ...(bad as object), listen: listenAt }),
          NngTransport.make(bad).listen(listenAt),
          NngTransport.make(bad).dial(listenAt)
        ]
        for (const attempt of attempts) {
          const error = yield* refusal(attempt)
          assert.strictEqual(error.reason._tag, "InvalidOption", error.detail)
          assert.strictEqual(error.detail, detail)
        }
      }
    }).pipe(Effect.scoped))
})
