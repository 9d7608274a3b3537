/**
 * A pending `pull`, `receive` (pair) or subscriber `receive` whose own socket
 * closes fails with reason `Closed` saying the socket was closed here: its
 * peers leaving never closes it, yet it said "the channel was closed by its
 * peer". A pending read of `messages` still just ends. The peer is nngcat,
 * another process, which sends one message first (the link is real).
 */
import type * as IpcError from "@effect-ipc/core/IpcError"
import { Pair, Pipeline, PubSub } from "@effect-ipc/transport-nng"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Child from "./fixtures/process.ts"

const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-nng-closed-here-"))
afterAll(() => Fs.rmSync(dir, { recursive: true, force: true }))

interface Receiving {
  readonly receive: Effect.Effect<Uint8Array, IpcError.IpcError>
  readonly messages: Stream.Stream<Uint8Array, IpcError.IpcError>
}

describe.each(
  [
    ["pull", "--push", (listen: string) =>
      Effect.map(
        Pipeline.puller({ listen }),
        (puller): Receiving => ({ receive: puller.pull, messages: puller.messages })
      )],
    [
      "pair",
      "--pair1",
      (listen: string): Effect.Effect<Receiving, IpcError.IpcError, Scope.Scope> => Pair.make({ listen })
    ],
    [
      "sub",
      "--pub",
      (listen: string): Effect.Effect<Receiving, IpcError.IpcError, Scope.Scope> =>
        PubSub.subscriber({ listen, topics: [""] })
    ]
  ] as const
)("%s: its own socket closes under a pending receive", (name, peerRole, open) => {
  it.live("the receive fails Closed saying so, and a pending read of messages ends", () =>
    Effect.gen(function*() {
      const path = Path.join(dir, `${name}.ipc`)
      const scope = yield* Scope.make()
      const socket = yield* open(`ipc://${path}`).pipe(Scope.provide(scope))
      // nngcat (another process) sends until one message is here
      yield* Child.spawn("nngcat", [peerRole, "--dial", `ipc://${path}`, "--data", "hi", "--interval", "1"])
      assert.strictEqual(new TextDecoder().decode(yield* socket.receive), "hi")
      const receiving = yield* Effect.forkChild(Effect.flip(Effect.forever(socket.receive)))
      const reading = yield* Effect.forkChild(Stream.runDrain(socket.messages))
      yield* Scope.close(scope, Exit.void)
      const error = yield* Fiber.join(receiving)
      assert.strictEqual(error.reason._tag, "Closed")
      assert.include(error.detail, "the socket was closed here")
      assert.notInclude(error.detail, "peer")
      // the stream ends (no error) when its socket closes
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(reading)))
    }).pipe(Effect.scoped), 30_000)
})
