/**
 * What a busy replier holds under a flood. `Rep.run` read up to
 * `concurrency` requests ahead of its handlers whatever their size, so large
 * requests piled up to 2 × `concurrency` × `maxMessageSize` in its process;
 * now it reads no further request while those read and not yet answered hold
 * `maxHeldBytes` or more. The `NngRpc` server read every request at once and
 * started its handler, for requesters that had left too; now it takes them as
 * `Rep.run` does (`concurrency` at once, departed ones dropped).
 */
import * as IpcRpc from "@effect-ipc/core/IpcRpc"
import { ConformanceApi } from "@effect-ipc/testing/ConformanceApi"
import { Rep, Req } from "@effect-ipc/transport-nng"
import { NngRpc } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Latch from "effect/Latch"
import * as Layer from "effect/Layer"
import * as RpcClient from "effect/rpc/RpcClient"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Child from "./fixtures/process.ts"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "eipc-hb-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

const MAX = 64 * 1024
const SIZE = 60 * 1024
const REQUESTS = 40

describe("a busy replier under a flood of large requests", () => {
  it.live("holds at most maxHeldBytes plus one message of them", () =>
    Effect.gen(function*() {
      const address = `ipc://${Path.join(yield* tempDir, "rep.ipc")}`
      const replier = yield* Rep.make({ listen: address, maxMessageSize: MAX })
      // what the replier holds: the bytes it received and has not yet answered
      let held = 0
      let peak = 0
      let received = 0
      let receiving = 0
      const counted: Rep.Replier = {
        ...replier,
        receive: Effect.suspend(() => {
          receiving++
          return replier.receive.pipe(
            Effect.tap((request) =>
              Effect.sync(() => {
                received++
                held += request.body.byteLength
                peak = Math.max(peak, held)
              })
            ),
            Effect.ensuring(Effect.sync(() => void receiving--))
          )
        })
      }
      const gate = Latch.makeUnsafe(false)
      yield* Effect.forkScoped(
        Rep.run(
          counted,
          (body) => Effect.andThen(gate.await, Effect.sync(() => (held -= body.byteLength, body.subarray(0, 1)))),
          { maxHeldBytes: 4 * MAX }
        )
      )
      const requester = yield* Req.make({
        dial: address,
        maxMessageSize: MAX,
        timeout: "60 seconds",
        pool: { min: REQUESTS, max: REQUESTS }
      })
      const body = new Uint8Array(SIZE)
      const flood = yield* Effect.forkChild(
        Effect.forEach(Array.from({ length: REQUESTS }), () => requester.request(body), { concurrency: "unbounded" })
      )
      // the handlers wait until the replier has read every request, or has stopped reading (none pending) with
      // maxHeldBytes held, twice in a row
      let stopped = 0
      while (received < REQUESTS && stopped < 2) {
        yield* Effect.sleep("20 millis")
        stopped = receiving === 0 && held >= 4 * MAX ? stopped + 1 : 0
      }
      gate.openUnsafe()
      const replies = yield* Fiber.join(flood)
      assert.strictEqual(replies.length, REQUESTS)
      assert.isAtMost(peak, 4 * MAX + MAX, `the replier held ${peak} bytes of requests at once`)
    }).pipe(Effect.scoped), 60_000)
})

describe("a busy NngRpc server and requesters that leave mid-call (ipc://)", () => {
  it.live("runs at most `concurrency` handlers, none for requesters that left", () =>
    Effect.gen(function*() {
      const address = `ipc://${Path.join(yield* tempDir, "rpc.ipc")}`
      // two handlers at once
      const server = yield* Child.node("peer.ts", ["rpc", address, "2"])
      yield* server.waitFor((line) => line === "ready")
      const pid = server.process.pid!
      const descriptors = () => Fs.readdirSync(`/proc/${pid}/fd`).length
      const client = (timeout: "30 seconds" | "200 millis") =>
        Effect.gen(function*() {
          const protocol = yield* Layer.build(
            NngRpc.layerClientProtocol({ dial: address, timeout, pool: { max: 2 } }).pipe(
              Layer.provide(IpcRpc.layerSerialization)
            )
          )
          return yield* RpcClient.make(ConformanceApi).pipe(Effect.provide(protocol))
        })
      const staying = yield* client("30 seconds")
      const idle = descriptors()
      // both handlers busy, for requesters that stay
      const busy = yield* Effect.forkChild(
        Effect.forEach([0, 1], () => staying.Sleep({ millis: 10_000 }), { concurrency: "unbounded" })
      )
      while (server.lines.filter((line) => line === "call Sleep").length < 2) yield* Effect.sleep("20 millis")
      // requesters that call and leave before their turn
      yield* Effect.forEach(
        Array.from({ length: 40 }),
        () =>
          Effect.scoped(
            Effect.flatMap(client("200 millis"), (leaving) => Effect.ignore(leaving.Sleep({ millis: 100 })))
          ),
        { concurrency: "unbounded" }
      )
      // their descriptors come back while both handlers are still busy
      let held = descriptors()
      const settled = yield* Effect.raceFirst(
        Effect.gen(function*() {
          while ((held = descriptors()) > idle + 2) yield* Effect.sleep("20 millis")
          return true
        }),
        Effect.as(Fiber.join(busy), false)
      )
      assert.isTrue(settled, `the server held ${held} descriptors (${idle} before) until its handlers were free`)
      yield* Fiber.join(busy)
      const calls = server.lines.filter((line) => line === "call Sleep").length
      assert.strictEqual(calls, 2, "handlers ran for requesters that had left")
    }).pipe(Effect.scoped), 60_000)
})

describe("a busy NngRpc server whose handlers never end for callers that left (ipc://)", () => {
  it.live("interrupts those handlers, so that a staying caller is answered", () =>
    Effect.gen(function*() {
      const address = `ipc://${Path.join(yield* tempDir, "rpc-stuck.ipc")}`
      // two handlers at once
      const server = yield* Child.node("peer.ts", ["rpc", address, "2"])
      yield* server.waitFor((line) => line === "ready")
      const client = Effect.gen(function*() {
        const protocol = yield* Layer.build(
          NngRpc.layerClientProtocol({ dial: address, timeout: "10 minutes", pool: { max: 2 } }).pipe(
            Layer.provide(IpcRpc.layerSerialization)
          )
        )
        return yield* RpcClient.make(ConformanceApi).pipe(Effect.provide(protocol))
      })
      // two callers take both handlers with calls that would run for ten minutes, and leave
      yield* Effect.scoped(Effect.gen(function*() {
        const leaving = yield* client
        yield* Effect.forkScoped(
          Effect.forEach([0, 1], () => leaving.Sleep({ millis: 600_000 }), { concurrency: "unbounded" })
        )
        while (server.lines.filter((line) => line === "call Sleep").length < 2) yield* Effect.sleep("20 millis")
      }))
      // a caller that stays is answered (it waited for ever while the two handlers ran on)
      const staying = yield* client
      const echoed = yield* staying.Echo({ n: 42 }).pipe(
        Effect.timeoutOrElse({
          duration: "60 seconds",
          orElse: () => Effect.die(new Error("the server's handlers stayed busy for callers that had left"))
        })
      )
      assert.strictEqual(echoed, 42)
    }).pipe(Effect.scoped), 90_000)
})
