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
