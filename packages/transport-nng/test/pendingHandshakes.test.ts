/**
 * `maxPendingHandshakes` (README: "at most `maxPendingHandshakes` conversations wait for their clients ... past
 * that a client is told the listener is busy"): a listener in another process, hellos from separate
 * connections that never come to their conversations. Exactly the limit get a conversation; the next is
 * told `busy`, and a real client cannot get in until one of them lets go.
 */
import { NngTransport, Req } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Child from "./fixtures/process.ts"

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const hello = encoder.encode(JSON.stringify({ v: 1 }))

/** What a listener allowing `limit` pending handshakes answers to `hellos` abandoned hellos, in order. */
const answers = (limit: number, hellos: number) =>
  Effect.gen(function*() {
    // each conversation waits for its client 60 s: none ends during the test
    const server = yield* Child.spawn(
      process.execPath,
      Child.nodeArgs("peer.ts", ["channels", "nng+tcp://127.0.0.1:0", "60000", String(limit)])
    )
    const address = (yield* server.waitFor((line) => line.startsWith("ready "))).slice("ready ".length)
    const got: Array<"url" | "busy" | string> = []
    for (let i = 0; i < hellos; i++) {
      // a requester of its own: one connection per hello (a connection holds at most one conversation)
      const requester = yield* Req.make({ dial: address, pool: { min: 1, max: 1 }, timeout: "20 seconds" })
      const welcome = JSON.parse(decoder.decode(yield* requester.request(hello))) as Record<string, unknown>
      got.push(typeof welcome.url === "string" ? "url" : welcome.busy === true ? "busy" : JSON.stringify(welcome))
    }
    // a real client meanwhile: told busy until its connectTimeout while every slot is held
    const dialled = yield* Effect.result(
      Effect.scoped(NngTransport.make({ connectTimeout: "2 seconds" }).dial(address))
    )
    return { got, dialled: dialled._tag === "Success" ? "served" : dialled.failure.reason._tag }
  }).pipe(Effect.scoped)

describe("nng maxPendingHandshakes", () => {
  it.live(
    "a listener keeps exactly maxPendingHandshakes conversations waiting; the next hello is told busy",
    () =>
      Effect.gen(function*() {
        const two = yield* answers(2, 3)
        assert.deepStrictEqual(two.got, ["url", "url", "busy"], "limit 2")
        assert.notStrictEqual(two.dialled, "served", "limit 2: every slot held, a client is not served")
        const three = yield* answers(3, 3)
        assert.deepStrictEqual(three.got, ["url", "url", "url"], "limit 3")
        const four = yield* answers(4, 3)
        assert.deepStrictEqual(four.got, ["url", "url", "url"], "limit 4")
        assert.strictEqual(four.dialled, "served", "limit 4: a slot left, a client is served")
      }),
    60_000
  )
})
