/**
 * What the messaging-pattern sockets are handed to send (JavaScript, or a
 * cast, can pass anything) is checked as a channel's `send` checks it: a
 * string went out as an empty message (its `byteLength` is undefined), and
 * `null`, a number topic or a string payload died with a `TypeError`
 * (`publishTo` threw it as it was called). Each is now `Encode`, nothing is
 * sent, and the socket goes on; `topics` that is not a list (a string was
 * subscribed to character by character) is `InvalidOption`.
 */
import type * as IpcError from "@effect-ipc/core/IpcError"
import { Pair, Pipeline, PubSub, Rep, Req } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes)
const encoded = (s: string) => new TextEncoder().encode(s)
/** The reason `effect` fails with, or "ok"; a defect fails the test. */
const outcome = (effect: Effect.Effect<unknown, IpcError.IpcError>) =>
  effect.pipe(Effect.as("ok"), Effect.catch((e) => Effect.succeed(e.reason._tag)))

describe("messaging-pattern sockets send bytes only", () => {
  it.live("a string, null or a number is Encode, nothing is sent, and the socket goes on", () =>
    Effect.gen(function*() {
      const a = yield* Pair.make({ listen: "inproc://pattern-bytes-pair" })
      const b = yield* Pair.make({ dial: "inproc://pattern-bytes-pair" })
      for (const bad of ["abc", null, undefined, 42, { length: 3 }]) {
        assert.strictEqual(yield* outcome(Effect.suspend(() => a.send(bad as never))), "Encode", String(bad))
      }
      // a view of other bytes is sent as its bytes, as by a channel
      yield* a.send(new DataView(encoded("view").buffer) as never)
      yield* a.send(encoded("after"))
      assert.strictEqual(text(yield* b.receive), "view")
      assert.strictEqual(text(yield* b.receive), "after")

      const pusher = yield* Pipeline.pusher({ listen: "inproc://pattern-bytes-push" })
      const puller = yield* Pipeline.puller({ dial: "inproc://pattern-bytes-push" })
      assert.strictEqual(yield* outcome(pusher.push("job" as never)), "Encode")
      yield* pusher.push(encoded("job"))
      assert.strictEqual(text(yield* puller.pull), "job")

      yield* Rep.serve({ listen: "inproc://pattern-bytes-rep" }, (request) => Effect.succeed(request))
      const requester = yield* Req.make({ dial: "inproc://pattern-bytes-rep" })
      assert.strictEqual(yield* outcome(requester.request("ping" as never)), "Encode")
      assert.strictEqual(text(yield* requester.request(encoded("ping"))), "ping")
    }))

  it.live("publish and publishTo check the topic and payload, and publishTo throws nothing as it is called", () =>
    Effect.gen(function*() {
      const publisher = yield* PubSub.publisher({ listen: "inproc://pattern-bytes-pub" })
      assert.strictEqual(yield* outcome(publisher.publish("news" as never)), "Encode")
      assert.strictEqual(yield* outcome(Effect.suspend(() => publisher.publishTo(5 as never, encoded("x")))), "Encode")
      assert.strictEqual(
        yield* outcome(Effect.suspend(() => publisher.publishTo("news.", "x" as never))),
        "Encode"
      )
      // built without running: nothing may throw here
      const built = publisher.publishTo(null as never, null as never)
      assert.strictEqual(yield* outcome(built), "Encode")
      assert.strictEqual(yield* outcome(publisher.publishTo("news.", encoded("x"))), "ok")
    }))

  it.live("topics that is not a list of topics is InvalidOption, before anything is opened", () =>
    Effect.gen(function*() {
      for (const topics of ["weather.", [5], [null]]) {
        const error = yield* Effect.flip(
          Effect.scoped(PubSub.subscriber({ dial: "inproc://pattern-bytes-sub", topics: topics as never }))
        )
        assert.strictEqual(error.reason._tag, "InvalidOption", JSON.stringify(topics))
        assert.match(error.message, /topics/)
      }
    }))
})
