import { IpcRpc, Memory, Transport } from "@effect-ipc/core"
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Rpc from "effect/rpc/Rpc"
import * as RpcClient from "effect/rpc/RpcClient"
import * as RpcGroup from "effect/rpc/RpcGroup"
import * as RpcServer from "effect/rpc/RpcServer"
import * as Schema from "effect/Schema"
import fc from "fast-check"
import * as Packed from "../src/internal/packed.ts"

const ascii = (text: string) => [...text].map((c) => c.charCodeAt(0))

/** True when `message` decodes; false when it is refused, as it must be: with a TypeError of ours. */
const decodes = (message: Uint8Array): boolean => {
  try {
    Packed.decode(message)
    return true
  } catch (error) {
    assert.instanceOf(error, TypeError)
    assert.match((error as Error).message, /^not a packed RPC message: /)
    return false
  }
}

/** The values the format carries, nested. */
const { value } = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constant(undefined),
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.double(),
    fc.string({ unit: "binary" }),
    fc.bigInt(),
    fc.date(),
    fc.uint8Array({ maxLength: 300 }),
    fc.array(tie("value"), { maxLength: 5 }),
    fc.dictionary(fc.string({ unit: "binary", maxLength: 6 }), tie("value"), { maxKeys: 5 })
  )
}))

/** A packed message: an object with one entry (key "") whose value is the next, `n` deep, ending in null. */
const nestedObjects = (n: number) => new Uint8Array([0xe1, ...Array.from({ length: n }, () => [8, 1, 0]).flat(), 1])

/** A packed message: arrays of one, `n` deep, around a value of tag 12 whose encoded value is `inner`. */
const nestedForeign = (n: number, inner: ReadonlyArray<number>) =>
  new Uint8Array([0xe1, ...Array.from({ length: n }, () => [7, 1]).flat(), 12, ...inner])

describe("packed (IpcRpc's default serialization)", () => {
  it("writes the documented layout: a marker byte, then tag-length-value", () => {
    assert.deepStrictEqual([...Packed.encode({ _tag: "Ping" })], [
      0xe1,
      8,
      1,
      4,
      ...ascii("_tag"),
      6,
      4,
      ...ascii("Ping")
    ])
    assert.deepStrictEqual([...Packed.encode(-3)], [0xe1, 4, 5])
    assert.deepStrictEqual([...Packed.encode(0.5)], [0xe1, 5, 0, 0, 0, 0, 0, 0, 0xe0, 0x3f])
    assert.deepStrictEqual([...Packed.encode(new Uint8Array([7, 8]))], [0xe1, 9, 2, 7, 8])
    assert.deepStrictEqual([...Packed.encodeMany([true, null, undefined])], [0xe2, 3, 3, 1, 0])
    assert.deepStrictEqual([...Packed.encode([-1n, new Date(0)])], [
      0xe1,
      7,
      2,
      10,
      2,
      ...ascii("-1"),
      11,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0
    ])
  })

  it("gives back every value it takes, alone or several in one message", () =>
    fc.assert(
      fc.property(value, fc.array(value, { minLength: 1, maxLength: 4 }), (one, many) => {
        assert.deepStrictEqual(Packed.decode(Packed.encode(one)), [one])
        assert.deepStrictEqual(Packed.decode(Packed.encodeMany(many)), many)
      }),
      { numRuns: 500 }
    ))

  it("keeps -0, NaN, infinities and integers past 32 bits; a lone surrogate becomes U+FFFD, as TextEncoder writes it", () => {
    const numbers = [-0, NaN, Infinity, -Infinity, 2 ** 31, -(2 ** 31), 2 ** 53 + 2, 0.1]
    assert.deepStrictEqual(Packed.decode(Packed.encode(numbers)), [numbers])
    assert.deepStrictEqual(Packed.decode(Packed.encode("a\ud800b")), ["a\ufffdb"])
    // a leading U+FEFF is a character of the string (a UTF-8 decoder drops it as a byte order mark by default)
    const withMarks = ["\ufeffbob", "\ufeff", { "\ufeffkey": "\ufeff" }, ["\ufeff\ufeffx"]]
    assert.deepStrictEqual(Packed.decode(Packed.encode(withMarks)), [withMarks])
  })

  it("hands bytes of 4 KiB or more back as views of the message received (no copy), smaller ones in memory of their own", () => {
    const data = Uint8Array.from({ length: 100_000 }, (_, i) => i & 0xff)
    const id = new Uint8Array([1, 2, 3])
    const message = Packed.encode({ data, id })
    const [decoded] = Packed.decode(message) as [{ data: Uint8Array; id: Uint8Array }]
    assert.strictEqual(decoded.data.buffer, message.buffer)
    assert.deepStrictEqual(decoded.data, data)
    // a small one's buffer is its own: not the message, nor Node's shared pool that a small message may come from
    assert.strictEqual(decoded.id.buffer.byteLength, 3)
    assert.deepStrictEqual(decoded.id, id)
  })

  it("a key named __proto__ is an own property, not the object's prototype", () => {
    const record = JSON.parse(`{"__proto__": {"polluted": true}, "a": 1}`) as Record<string, unknown>
    const [decoded] = Packed.decode(Packed.encode(record)) as [Record<string, unknown>]
    assert.strictEqual(Object.getPrototypeOf(decoded), Object.prototype)
    assert.isUndefined((decoded as { polluted?: boolean }).polluted)
    assert.deepStrictEqual(Object.getOwnPropertyDescriptor(decoded, "__proto__")?.value, { polluted: true })
  })

  it("carries what it has no tag for as effect's Schema.Defect encodes it: an Error comes back an Error", () => {
    const [decoded] = Packed.decode(Packed.encode({ defect: new Error("boom"), map: new Map([[1, 2]]) })) as [
      { defect: unknown; map: unknown }
    ]
    assert.instanceOf(decoded.defect, Error)
    assert.strictEqual((decoded.defect as Error).message, "boom")
    assert.deepStrictEqual(decoded.map, {})
  })

  it("at most 64 values without a tag of their own in a message, both ways (a peer's cheap way to make us build Errors)", () => {
    const maps = Array.from({ length: 65 }, () => new Map())
    assert.throws(() => Packed.encode(maps), TypeError, /more than 64 values it has no tag for \(a Map\)/)
    assert.deepStrictEqual(Packed.decode(Packed.encode(maps.slice(1))), [maps.slice(1).map(() => ({}))])
    // 65 of tag 12, each an empty object
    const forged = new Uint8Array([0xe1, 7, 65, ...Array.from({ length: 65 }, () => [12, 8, 0]).flat()])
    assert.throws(() => Packed.decode(forged), TypeError, /more than 64 values of tag 12/)
  })

  it("counts every occurrence of a value without a tag, as the reader does: the same Error 65 times is refused", () => {
    const error = new Error("again")
    assert.throws(() => Packed.encode(Array.from({ length: 65 }, () => error)), TypeError, /more than 64 values/)
    const sixtyFour = Packed.decode(Packed.encode(Array.from({ length: 64 }, () => error)))[0] as Array<Error>
    assert.strictEqual(sixtyFour.length, 64)
    assert.strictEqual(sixtyFour[63]!.message, "again")
  })

  it("refuses a cycle and a value that changes while it is encoded, with a TypeError", () => {
    const cycle: Array<unknown> = []
    cycle.push(cycle)
    assert.throws(() => Packed.encode(cycle), TypeError, /nest deeper than 1000 levels \(a cycle\?\)/)
    let reads = 0
    const shifty = {
      get text() {
        return reads++ === 0 ? "short" : "a good deal longer"
      }
    }
    assert.throws(() => Packed.encode(shifty), TypeError)
    let floats = 0
    const growing = {
      get n() {
        return floats++ === 0 ? 1 : 0.5
      }
    }
    assert.throws(() => Packed.encode(growing), TypeError, /changed while it was encoded/)
    // a string that grows in bytes, not in length, at the message's end (where nothing runs past it): not sent torn
    let texts = 0
    const swapping = {
      get a() {
        return texts++ === 0 ? "abc" : "\u00e9a\u00e9"
      }
    }
    assert.throws(() => Packed.encode(swapping), TypeError, /changed while it was encoded/)
  })

  it("a damaged message is refused with a TypeError, never read past its end or taken for another", () => {
    fc.assert(
      fc.property(
        value,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
        fc.nat(),
        (v, flips, cut) => {
          const message = Packed.encode(v)
          // every cut short of the whole is refused
          assert.isFalse(decodes(message.subarray(0, cut % message.length)))
          const damaged = new Uint8Array(message)
          for (const [at, byte] of flips) damaged[at % damaged.length] = byte
          decodes(damaged)
        }
      ),
      { numRuns: 1000 }
    )
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (garbage) => void decodes(garbage)), { numRuns: 2000 })
  })

  // the limit was tested with arrays only: with it gone from objects, 1001 levels decoded and 100 000 threw a
  // RangeError (the stack), not the documented TypeError
  it("nesting past 1000 levels is refused in objects and through values of tag 12 too, not only in arrays", () => {
    Packed.decode(nestedObjects(1000))
    for (const n of [1001, 100_000]) {
      assert.throws(() => Packed.decode(nestedObjects(n)), TypeError, /nest deeper than 1000 levels/)
    }
    // around a value of tag 12: an empty object, and null (which nests no further)
    Packed.decode(nestedForeign(998, [8, 0]))
    assert.throws(() => Packed.decode(nestedForeign(1000, [8, 0])), TypeError, /nest deeper than 1000 levels/)
    assert.throws(() => Packed.decode(nestedForeign(1000, [1])), TypeError, /nest deeper than 1000 levels/)
  })

  it("lengths and counts past the bytes left, and nesting past 1000 levels, are refused before anything is made", () => {
    // an array claiming 2^32 - 1 elements in a 7-byte message
    assert.throws(() => Packed.decode(new Uint8Array([0xe1, 7, 0xff, 0xff, 0xff, 0xff, 0x0f])), TypeError, /length/)
    assert.throws(() => Packed.decode(new Uint8Array([0xe1, 9, 0x80, 0x80, 0x04, 1])), TypeError, /length of 65536/)
    const deep = new Uint8Array(2 + 2 * 100_000).fill(1)
    deep[0] = 0xe1
    for (let i = 1; i < deep.length - 1; i += 2) deep[i] = 7 // an array of one, 100 000 deep
    assert.throws(() => Packed.decode(deep), TypeError, /nest deeper than 1000 levels/)
    assert.throws(() => Packed.decode(new Uint8Array([0xe1, 1, 1])), TypeError, /1 bytes after its last value/)
    // a bigint of 10 001 digits: refused on the way out, and on the way in (reading a million takes 0.1 s)
    const digits = "9".repeat(10_001)
    assert.throws(() => Packed.encode(BigInt(digits)), TypeError, /more than 10000 digits/)
    assert.deepStrictEqual(Packed.decode(Packed.encode(-BigInt(digits.slice(1)))), [-BigInt(digits.slice(1))])
    const text = new TextEncoder().encode(digits)
    const long = new Uint8Array([0xe1, 10, 0x91, 0x4e, ...text])
    assert.throws(() => Packed.decode(long), TypeError, /a bigint that is not 1 to 10000 decimal digits/)
  })

  it("a length one past the bytes left, an integer past 32 bits and a number of six bytes are refused", () => {
    // bytes of length 2 with 1 byte left
    assert.throws(() => Packed.decode(new Uint8Array([0xe1, 9, 2, 5])), TypeError, /a length of 2 with 1 bytes left/)
    // 2^32 as an integer's zigzag: not read as 0
    assert.isFalse(decodes(new Uint8Array([0xe1, 4, 0x80, 0x80, 0x80, 0x80, 0x10])))
    assert.throws(() => Packed.decode(new Uint8Array([0xe1, 4, 0x80, 0x80, 0x80, 0x80, 0x10])), /past 32 bits/)
    // 0 written in six bytes
    assert.throws(
      () => Packed.decode(new Uint8Array([0xe1, 4, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00])),
      TypeError,
      /a number runs past five bytes/
    )
  })
})

class Rich extends Schema.Class<Rich>("Rich")({
  when: Schema.Date,
  big: Schema.BigInt,
  maybe: Schema.Option(Schema.String),
  data: Schema.Uint8Array,
  count: Schema.NumberFromString
}) {}

class Api extends RpcGroup.make(
  Rpc.make("Mirror", { payload: { rich: Rich }, success: Rich }),
  Rpc.make("Crash", { payload: { why: Schema.String } })
) {}

const handlers = Api.toLayer({
  Mirror: ({ rich }) => Effect.succeed(rich),
  Crash: ({ why }) => Effect.die(new Error(why))
})

/** A payload of `n` bytes (the pool tests use sizes no other test does: the pool is the module's). */
const big = (n: number) => ({ data: new Uint8Array(n).fill(5) })

describe("packed's buffers used again", () => {
  it("a large message's memory is lent once: used again only after release, and a stale handle gives nothing back", () => {
    const a = Packed.encode(big(777_777))
    const b = Packed.encode(big(777_777))
    assert.notStrictEqual(b.buffer, a.buffer, "not released: not lent again")
    Packed.release(a)
    const c = Packed.encode(big(777_777))
    assert.strictEqual(c.buffer, a.buffer, "released: used again")
    assert.notStrictEqual(c, a, "as a view of its own")
    Packed.release(a)
    const d = Packed.encode(big(777_777))
    assert.notStrictEqual(d.buffer, c.buffer, "a second release of the old handle did not lend c's memory again")
    // a buffer that is not one of its messages is left alone
    const foreign = new Uint8Array(654_321 + 20)
    Packed.release(foreign)
    assert.notStrictEqual(Packed.encode(big(654_321)).buffer, foreign.buffer)
  })

  it.live("IpcRpc's socket gives a message back once its send succeeded: not while it waits, not when interrupted", () =>
    Effect.gen(function*() {
      const transport = Memory.make()
      const address = "memory://packed-release"
      yield* transport.listen(address)
      // a channel whose send takes the message only once `go` opens, as a transport that writes later would
      const go = yield* Deferred.make<void>()
      const socket = IpcRpc.toSocket(
        Effect.map(transport.dial(address), (channel) => ({
          ...channel,
          send: (message: Uint8Array) => Effect.andThen(Deferred.await(go), channel.send(message))
        }))
      )
      yield* socket.reader
      const writer = yield* socket.writer

      const interrupted = Packed.encode(big(555_555))
      const cut = yield* Effect.forkScoped(writer.write(interrupted))
      yield* Effect.yieldNow
      yield* Fiber.interrupt(cut)
      assert.notStrictEqual(
        Packed.encode(big(555_555)).buffer,
        interrupted.buffer,
        "an interrupted send gives nothing back"
      )

      const first = Packed.encode(big(444_444))
      const writing = yield* Effect.forkScoped(writer.write(first))
      yield* Effect.yieldNow
      assert.notStrictEqual(Packed.encode(big(444_444)).buffer, first.buffer, "not while its send waits")
      yield* Deferred.succeed(go, undefined)
      yield* Fiber.join(writing)
      assert.strictEqual(Packed.encode(big(444_444)).buffer, first.buffer, "once its send succeeded")
    }).pipe(Effect.scoped))
})

describe("IpcRpc over packed", () => {
  it.live("carries dates, bigints, options, bytes and classes both ways; a defect comes back an Error", () =>
    Effect.gen(function*() {
      const address = "memory://packed-rich"
      const transport = Layer.succeed(Transport.Transport, Memory.make())
      yield* Layer.build(
        RpcServer.layer(Api).pipe(
          Layer.provide(handlers),
          Layer.provide(IpcRpc.layerServerProtocol(address)),
          Layer.provide(IpcRpc.layerSerialization),
          Layer.provide(transport)
        )
      )
      const protocol = yield* Layer.build(
        IpcRpc.layerClientProtocol(address).pipe(Layer.provide(IpcRpc.layerSerialization), Layer.provide(transport))
      )
      const client = yield* RpcClient.make(Api).pipe(Effect.provide(protocol))
      const rich = new Rich({
        when: new Date(86_400_000),
        big: -(2n ** 70n),
        maybe: Option.some("yes"),
        data: Uint8Array.from({ length: 1 << 20 }, (_, i) => (i * 31) & 0xff),
        count: 12.5
      })
      const back = yield* client.Mirror({ rich })
      assert.instanceOf(back, Rich)
      assert.deepStrictEqual(back, rich)
      // concurrent large calls, each message's memory used again (the pool's reuse rules: the tests above)
      const many = yield* Effect.forEach(
        Array.from({ length: 24 }, (_k, k) => Uint8Array.from({ length: 300_000 + k }, (_i, i) => (i * 7 + k) & 0xff)),
        (data) =>
          Effect.map(
            client.Mirror({ rich: new Rich({ ...rich, data }) }),
            (mirrored) => [data, mirrored.data] as const
          ),
        { concurrency: "unbounded" }
      )
      for (const [sent, got] of many) assert.deepStrictEqual(got, sent)
      const crash = yield* Effect.exit(client.Crash({ why: "out of luck" }))
      assert.isTrue(Exit.isFailure(crash))
      assert.match(String(crash), /out of luck/)
    }).pipe(Effect.scoped))

  it.live("a server sent a damaged packed message answers with a Defect that says why", () =>
    Effect.gen(function*() {
      const address = "memory://packed-damaged"
      const transport = Memory.make()
      yield* Layer.build(
        IpcRpc.layerServerGroup(Api, address).pipe(
          Layer.provide(handlers),
          Layer.provide(Layer.succeed(Transport.Transport, transport))
        )
      )
      const channel = yield* Transport.dial(address).pipe(Effect.provideService(Transport.Transport, transport))
      yield* channel.send(IpcRpc.hello("packed"))
      yield* channel.send(new Uint8Array([0xe1, 7, 0xff, 0xff, 0xff, 0xff, 0x0f]))
      const [reply] = Packed.decode(yield* channel.receive) as [{ _tag: string; defect: unknown }]
      assert.strictEqual(reply._tag, "Defect")
      assert.instanceOf(reply.defect, Error)
      assert.match((reply.defect as Error).message, /not a packed RPC message: a length of 4294967295/)
    }).pipe(Effect.scoped))
})
