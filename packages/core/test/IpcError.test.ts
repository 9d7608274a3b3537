/**
 * `IpcError` reasons are tagged values: a user catches by reason with
 * effect's `catchReason` / `catchReasons`, and the error (reason included)
 * survives encoding for the wire.
 */
import { IpcError } from "@effect-ipc/core"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

const notFound = IpcError.make("NotFound", "no listener", "unix:///tmp/x.sock")

describe("IpcError reasons", () => {
  it("a system error's errno picks the reason: out of descriptors or memory is NoSpace, as a full disk is", () => {
    for (const errno of ["ENOSPC", "EDQUOT", "EMFILE", "ENFILE", "ENOMEM"]) {
      const cause = Object.assign(new Error(`${errno}: no room`), { code: errno })
      const error = IpcError.fromSystemError(cause, "Open", "cannot open", "unix:///tmp/x.sock")
      assert.strictEqual(error.reason._tag, "NoSpace", errno)
      assert.strictEqual(error.errno, errno)
    }
    const other = IpcError.fromSystemError(Object.assign(new Error("EIO"), { code: "EIO" }), "Open", "cannot open")
    assert.strictEqual(other.reason._tag, "Open")
    // nobody listening is NotFound (what a caller retries on); a permission refused is PermissionDenied
    const reasons = {
      ECONNREFUSED: "NotFound",
      ENOENT: "NotFound",
      EACCES: "PermissionDenied",
      EPERM: "PermissionDenied"
    }
    for (const [errno, reason] of Object.entries(reasons)) {
      const cause = Object.assign(new Error(errno), { code: errno })
      assert.strictEqual(IpcError.fromSystemError(cause, "Open", "cannot dial").reason._tag, reason, errno)
      assert.strictEqual(IpcError.fromErrno(errno, "Open", "cannot dial").reason._tag, reason, errno)
    }
  })

  it.effect("catchReason catches one reason and hands over the reason and the error", () =>
    Effect.gen(function*() {
      const caught = yield* Effect.fail(notFound).pipe(
        Effect.catchReason("IpcError", "NotFound", (reason, error) =>
          Effect.succeed(`${reason._tag} at ${error.address}`))
      )
      assert.strictEqual(caught, "NotFound at unix:///tmp/x.sock")
    }))

  it.effect("catchReason lets other reasons through, typed", () =>
    Effect.gen(function*() {
      const timeout: Effect.Effect<string, IpcError.IpcError> = Effect.fail(IpcError.make("Timeout", "too slow"))
      const error = yield* Effect.flip(
        timeout.pipe(Effect.catchReason("IpcError", "NotFound", () => Effect.succeed("caught")))
      )
      assert.strictEqual(error.reason._tag, "Timeout")
    }))

  it.effect("catchReasons picks the case of the reason", () =>
    Effect.gen(function*() {
      const handled = yield* Effect.fail(IpcError.make("PeerRejected", "uid 65534")).pipe(
        Effect.catchReasons("IpcError", {
          NotFound: () => Effect.succeed("missing"),
          PeerRejected: (_, error) => Effect.succeed(`refused: ${error.detail}`)
        })
      )
      assert.strictEqual(handled, "refused: uid 65534")
    }))

  it("is built from a reason's name or its tagged value, and reads as before", () => {
    const byName = new IpcError.IpcError({ reason: "AddressInUse", detail: "taken", errno: "EADDRINUSE" })
    const byValue = new IpcError.IpcError({ reason: IpcError.toReason("AddressInUse"), detail: "taken" })
    assert.deepStrictEqual(byName.reason, { _tag: "AddressInUse" })
    assert.deepStrictEqual(byValue.reason, byName.reason)
    assert.strictEqual(byName.message, "AddressInUse: taken [EADDRINUSE]")
  })

  it("survives encoding and decoding (the wire of an RPC error channel)", () => {
    const encoded = Schema.encodeUnknownSync(IpcError.IpcError)(notFound)
    assert.deepStrictEqual((encoded as { reason: unknown }).reason, { _tag: "NotFound" })
    const decoded = Schema.decodeUnknownSync(IpcError.IpcError)(JSON.parse(JSON.stringify(encoded)))
    assert.instanceOf(decoded, IpcError.IpcError)
    assert.strictEqual(decoded.reason._tag, "NotFound")
    assert.strictEqual(decoded.address, "unix:///tmp/x.sock")
    assert.throws(() => Schema.decodeUnknownSync(IpcError.IpcError)({ ...encoded as object, reason: { _tag: "Nope" } }))
  })
})
