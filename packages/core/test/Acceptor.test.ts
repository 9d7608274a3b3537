import { type IpcError, Memory, Transport } from "@effect-ipc/core"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"

describe("Transport.makeAcceptor", () => {
  it.effect("shutdown closes the channels offered and never accepted, also those offered after end", () =>
    Effect.gen(function*() {
      const memory = Memory.make()
      const listener = yield* memory.listen("memory://acceptor-test")
      // channels to offer: the dialled ends of memory connections (their peers wait in `listener`)
      const [early, late, taken] = yield* Effect.all([
        memory.dial("memory://acceptor-test"),
        memory.dial("memory://acceptor-test"),
        memory.dial("memory://acceptor-test")
      ])
      const peers = yield* Effect.all([listener.accept, listener.accept, listener.accept])
      const acceptor = yield* Transport.makeAcceptor("test://acceptor")
      acceptor.offer(taken)
      acceptor.offer(early)
      assert.strictEqual(yield* acceptor.listener.accept, taken)
      acceptor.end()
      acceptor.offer(late)
      const error = yield* Effect.flip(acceptor.listener.accept)
      assert.strictEqual(error.reason._tag, "Closed")
      yield* acceptor.shutdown
      // after shutdown nothing is kept: the offer says so, and its caller closes the channel
      assert.isFalse(acceptor.offer(taken))
      // the two never accepted were closed (their peers hear the goodbye); the one handed out is its user's
      for (const peer of [peers[0], peers[1]]) {
        const ended = yield* Effect.flip(peer.receive)
        assert.strictEqual(ended.reason._tag, "Closed")
      }
      yield* taken.send(new Uint8Array([1]))
      assert.deepStrictEqual(yield* peers[2].receive, new Uint8Array([1]))
    }).pipe(Effect.scoped))

  it.effect("past maxUnaccepted a channel is refused: closed, reported Full; room again once one is accepted", () =>
    Effect.gen(function*() {
      const memory = Memory.make()
      const listener = yield* memory.listen("memory://acceptor-full")
      const dialled = yield* Effect.all([1, 2, 3, 4].map(() => memory.dial("memory://acceptor-full")))
      const peers = yield* Effect.all([1, 2, 3, 4].map(() => listener.accept))
      const refusals: Array<IpcError.IpcError> = []
      const acceptor = yield* Transport.makeAcceptor("test://full", {
        maxUnaccepted: 2,
        refused: (error) => Effect.sync(() => refusals.push(error))
      })
      assert.isTrue(yield* acceptor.admit(dialled[0]!))
      assert.isFalse(acceptor.full())
      assert.isTrue(yield* acceptor.admit(dialled[1]!))
      assert.isTrue(acceptor.full())
      assert.isFalse(acceptor.offer(dialled[2]!), "offer says the listener did not take it")
      assert.isFalse(yield* acceptor.admit(dialled[2]!))
      assert.deepStrictEqual(refusals.map((error) => error.reason._tag), ["Full"])
      assert.match(refusals[0]!.detail, /2 connections wait to be accepted/)
      // the refused channel was closed: its peer hears the goodbye
      assert.strictEqual((yield* Effect.flip(peers[2]!.receive)).reason._tag, "Closed")
      assert.strictEqual(yield* acceptor.listener.accept, dialled[0])
      assert.isFalse(acceptor.full())
      assert.isTrue(yield* acceptor.admit(dialled[3]!))
      assert.strictEqual(yield* acceptor.listener.accept, dialled[1])
      assert.strictEqual(yield* acceptor.listener.accept, dialled[3])
      yield* acceptor.shutdown
    }).pipe(Effect.scoped))

  // (under the test clock: the dial waits for the accept itself, not polling on a timer)
  it.effect("memory://: a dial past MAX_UNACCEPTED channels nobody accepted waits for room; one accept lets it in", () =>
    Effect.gen(function*() {
      const memory = Memory.make()
      const listener = yield* memory.listen("memory://acceptor-flood")
      for (let i = 0; i < Transport.MAX_UNACCEPTED; i++) yield* memory.dial("memory://acceptor-flood")
      const late = yield* Effect.forkChild(memory.dial("memory://acceptor-flood"))
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow
      assert.isUndefined(late.pollUnsafe(), "the dial waits while the listener is full")
      yield* listener.accept
      const client = yield* Fiber.join(late)
      for (let i = 0; i < Transport.MAX_UNACCEPTED - 1; i++) yield* listener.accept
      const server = yield* listener.accept
      yield* client.send(new Uint8Array([7]))
      assert.deepStrictEqual(yield* server.receive, new Uint8Array([7]))
    }).pipe(Effect.scoped))

  it.live("memory://: 1500 dials at once to a listener that Transport.serve accepts: every one is served", () =>
    Effect.gen(function*() {
      const memory = Memory.make()
      const listener = yield* memory.listen("memory://acceptor-burst")
      yield* Effect.forkScoped(
        Transport.serve(listener, (channel) => Effect.forever(Effect.flatMap(channel.receive, channel.send)))
      )
      const clients = yield* Effect.all(
        Array.from({ length: 1500 }, () => memory.dial("memory://acceptor-burst")),
        { concurrency: "unbounded" }
      )
      const echoed = yield* Effect.forEach(
        clients,
        (client, i) => Effect.andThen(client.send(new Uint8Array([i & 0xff])), client.receive)
      )
      assert.deepStrictEqual(echoed.map((m) => m[0]), clients.map((_, i) => i & 0xff))
    }).pipe(Effect.scoped))
})
