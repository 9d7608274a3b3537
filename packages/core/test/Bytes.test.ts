/**
 * Text to bytes goes through Node's Buffer (TextEncoder allocates an
 * ArrayBuffer per call, several times slower for RPC-sized text); the bytes
 * must be exactly TextEncoder's, lone surrogates included, and a plain
 * Uint8Array, so that what a user compares or checks comes out as before.
 */
import { IpcRpc } from "@effect-ipc/core"
import { describe, it } from "@effect/vitest"
import fc from "fast-check"
import * as NodeAssert from "node:assert/strict"
import * as Bytes from "../src/internal/bytes.ts"

const encoder = new TextEncoder()
/** Any UTF-16 code units, lone surrogates included. */
const codeUnits = fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 200 }).map((units) =>
  String.fromCharCode(...units)
)

describe("Bytes.utf8", () => {
  it("is TextEncoder's bytes for any text, as a plain Uint8Array", () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ unit: "binary" }), fc.string({ unit: "grapheme", maxLength: 3000 }), codeUnits),
        (text) => {
          const bytes = Bytes.utf8(text)
          NodeAssert.strictEqual(Object.getPrototypeOf(bytes), Uint8Array.prototype)
          NodeAssert.deepStrictEqual(bytes, encoder.encode(text))
        }
      ),
      { numRuns: 2000 }
    )
  })

  it("leaves IpcRpc's hello as it was", () => {
    NodeAssert.deepStrictEqual(IpcRpc.hello("json"), encoder.encode(new TextDecoder().decode(IpcRpc.hello("json"))))
    NodeAssert.strictEqual(Object.getPrototypeOf(IpcRpc.hello("binary")), Uint8Array.prototype)
  })
})

describe("Bytes.uvarintFrames (schema-binary messages, one per channel message)", () => {
  it("gives each frame of a message its frames fill exactly", () => {
    NodeAssert.deepStrictEqual(Bytes.uvarintFrames(new Uint8Array([3, 1, 2, 3, 1, 9])), [[0, 4], [4, 6]])
  })

  it("refuses a frame one byte longer than its message, an empty frame and a header cut short", () => {
    // a frame announced one byte past the end was handed to effect's parser, which kept it for the next message
    NodeAssert.match(
      String(Bytes.uvarintFrames(new Uint8Array([3, 1, 2]))),
      /a frame of 3 bytes at byte 0, past the end/
    )
    NodeAssert.match(String(Bytes.uvarintFrames(new Uint8Array([1, 7, 0]))), /an empty frame at byte 2/)
    NodeAssert.match(String(Bytes.uvarintFrames(new Uint8Array([1, 7, 0x85]))), /a frame header cut short at byte 2/)
    NodeAssert.strictEqual(Bytes.uvarintFrames(new Uint8Array(0)), "an empty message")
  })

  it("isOneUvarintFrame is true exactly where uvarintFrames finds one frame", () => {
    // the decoder's fast path for the usual message: it must accept nothing uvarintFrames refuses
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
        const frames = Bytes.uvarintFrames(bytes)
        NodeAssert.strictEqual(Bytes.isOneUvarintFrame(bytes), typeof frames !== "string" && frames.length === 1)
      }),
      { numRuns: 5000 }
    )
    NodeAssert.strictEqual(Bytes.isOneUvarintFrame(new Uint8Array([2, 1, 2])), true)
    NodeAssert.strictEqual(Bytes.isOneUvarintFrame(new Uint8Array([0x81, 0, ...new Uint8Array(1)])), true)
    NodeAssert.strictEqual(Bytes.isOneUvarintFrame(new Uint8Array([3, 1, 2, 3, 1, 9])), false)
    NodeAssert.strictEqual(Bytes.isOneUvarintFrame(new Uint8Array([3, 1, 2])), false)
  })
})

describe("Bytes.Spares", () => {
  it("keeps at most its limit of idle bytes, and lends a buffer only for a size from half its length", () => {
    const spares = new Bytes.Spares(100)
    const first = new Uint8Array(80)
    const second = new Uint8Array(80)
    spares.give(first)
    spares.give(second) // past the limit: not kept
    NodeAssert.strictEqual(spares.take(80), first)
    NodeAssert.notStrictEqual(spares.take(80), second)
    const large = new Uint8Array(100)
    spares.give(large)
    // a buffer more than twice the size asked for stays idle
    NodeAssert.notStrictEqual(spares.take(40), large)
    NodeAssert.strictEqual(spares.take(50), large)
  })
})
