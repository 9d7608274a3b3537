/**
 * A hostile first frame costs the RPC server little: a hello over 64 bytes is
 * refused without being read as a name, and what is logged of a name is
 * bounded; only a small first frame is sniffed as JSON.
 */
import { IpcRpc, Memory, Transport } from "@effect-ipc/core"
import { ConformanceApi, ConformanceHandlers } from "@effect-ipc/testing/ConformanceApi"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"

let n = 0
const encoder = new TextEncoder()

/** Serves ConformanceApi to binary and JSON clients at a fresh memory address; the log lines it writes. */
const serving = Effect.gen(function*() {
  const lines: Array<string> = []
  const logger = Logger.make(({ logLevel, message }) => {
    lines.push(`${logLevel} ${Array.isArray(message) ? message.map(String).join(" ") : String(message)}`)
  })
  const address = `memory://hello-${n++}`
  const transport = Memory.make()
  yield* Layer.build(
    IpcRpc.layerServerGroup(ConformanceApi, address).pipe(
      Layer.provide(ConformanceHandlers),
      Layer.provide(Layer.succeed(Transport.Transport, transport)),
      Layer.provide(Logger.layer([logger]))
    )
  )
  const dial = Transport.dial(address).pipe(Effect.provideService(Transport.Transport, transport))
  return { dial, lines }
})

describe("the hello of a hostile client", () => {
  it.live("a 4 MiB hello is refused, and the warning about it stays short", () =>
    Effect.gen(function*() {
      const { dial, lines } = yield* serving
      const channel = yield* dial
      yield* channel.send(encoder.encode(IpcRpc.HELLO_PREFIX + "A".repeat(4 * 1024 * 1024)))
      // the server closes the connection: nothing comes back
      const end = yield* Effect.flip(channel.receive)
      assert.strictEqual(end.reason._tag, "Closed")
      const refused = lines.filter((line) => line.includes("refused an RPC client"))
      assert.strictEqual(refused.length, 1, lines.map((line) => line.slice(0, 200)).join("\n"))
      assert.isBelow(refused[0]!.length, 300, refused[0]!.slice(0, 300))
    }).pipe(Effect.scoped))

  it.live("a hello whose name is long but under the cap: refused, its name cut to 32 characters", () =>
    Effect.gen(function*() {
      const { dial, lines } = yield* serving
      const channel = yield* dial
      const name = "x".repeat(50)
      yield* channel.send(IpcRpc.hello(name))
      yield* Effect.flip(channel.receive)
      const refused = lines.filter((line) => line.includes("refused an RPC client"))
      assert.strictEqual(refused.length, 1, lines.join("\n"))
      assert.include(refused[0]!, "x".repeat(32))
      assert.notInclude(refused[0]!, "x".repeat(33))
    }).pipe(Effect.scoped))

  it.live("a 65-byte frame that starts like a hello is a bad hello, even when it starts with a served name", () =>
    Effect.gen(function*() {
      const { dial, lines } = yield* serving
      const channel = yield* dial
      const frame = encoder.encode(`${IpcRpc.HELLO_PREFIX}json`.padEnd(65, " "))
      assert.strictEqual(frame.byteLength, 65)
      yield* channel.send(frame)
      yield* Effect.flip(channel.receive)
      assert.isTrue(lines.some((line) => line.includes("refused an RPC client")), lines.join("\n"))
    }).pipe(Effect.scoped))
})
