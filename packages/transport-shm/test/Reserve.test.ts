/**
 * Allocating a new segment's pages ahead (`posix_fallocate`, Linux): a chunk at a time, so that a segment larger
 * than one chunk is allocated whole, an interrupted call is asked again a bounded number of times, and each error
 * number means what it should (no room: `NoSpace`; a file system that cannot: no reservation, no error).
 *
 * The real `posix_fallocate` on /dev/shm or a memory file (both tmpfs) answers only 0, ENOSPC, or on some kernels
 * EINTR (this glibc also emulates it where the file system answers EOPNOTSUPP), so the other answers are given
 * to `reserveNow` by an allocation function that answers them, in place of the libc call.
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Native from "@effect-ipc/core/Native"
import * as Shm from "@effect-ipc/transport-shm"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Libc from "../src/internal/libc.ts"

const MiB = 1024 * 1024

const errno = (name: string): number => {
  const number = Native.errnoNumber(name)
  if (number === undefined) throw new Error(`no ${name} here`)
  return number
}

/** The calls an allocation function got, answering each with the next of `answers` (then 0). */
const recording = (...answers: ReadonlyArray<string>) => {
  const calls: Array<readonly [offset: number, length: number]> = []
  const allocate = (offset: number, length: number): number => {
    const answer = answers[calls.length]
    calls.push([offset, length])
    return answer === undefined || answer === "ok" ? 0 : errno(answer)
  }
  return { calls, allocate }
}

/** The calls cover bytes 0 to `size`, each one starting where the one before it ended. */
const coversAll = (calls: ReadonlyArray<readonly [number, number]>, size: number) => {
  let end = 0
  for (const [offset, length] of calls) {
    assert.strictEqual(offset, end)
    assert.isAbove(length, 0)
    end += length
  }
  assert.strictEqual(end, size)
}

/** Bytes a file has pages for (a file whose pages were never allocated has none). */
const allocatedBytes = (fd: number) => Fs.fstatSync(fd).blocks * 512

describe("reserving a segment's pages", () => {
  it("takes a large segment's chunks only while the memory left covers the rest: NoSpace when others take it meanwhile", () => {
    const size = 512 * MiB
    // enough at first and for the second chunk; then others take memory, and 384 MiB are still to come
    const answers = [1024 * MiB, 1024 * MiB, 100 * MiB]
    let asked = 0
    const left = () => answers[Math.min(asked++, answers.length - 1)]!
    const shrinking = recording()
    const failed = Libc.reserveWithin(shrinking.allocate, size, left, "shm://guard")
    assert.instanceOf(failed, IpcError.IpcError)
    assert.strictEqual((failed as IpcError.IpcError).reason._tag, "NoSpace")
    assert.deepStrictEqual(shrinking.calls, [[0, Libc.RESERVE_CHUNK], [Libc.RESERVE_CHUNK, Libc.RESERVE_CHUNK]])
    assert.strictEqual(asked, 3, "checked once up front, then before each later chunk (not again for the first)")
    // with the memory there throughout, every chunk is taken
    const steady = recording()
    assert.isUndefined(Libc.reserveWithin(steady.allocate, size, () => 1024 * MiB))
    coversAll(steady.calls, size)
    // too little up front: nothing is taken, and the error says how much was left
    const none = recording()
    const refused = Libc.reserveWithin(none.allocate, size, () => 300 * MiB)
    assert.instanceOf(refused, IpcError.IpcError)
    assert.include((refused as IpcError.IpcError).detail, `is ${300 * MiB} bytes`)
    assert.deepStrictEqual(none.calls, [])
    // segments under the checked size are left to the tmpfs's own limit: the memory left is not read
    const small = recording()
    assert.isUndefined(Libc.reserveWithin(small.allocate, 8 * MiB, () => {
      throw new Error("read for a small segment")
    }))
    coversAll(small.calls, 8 * MiB)
  })

  it("asks for at most one chunk at a time, each from where the last ended", () => {
    const { allocate, calls } = recording()
    const size = 200 * MiB + 4096
    assert.isUndefined(Libc.reserveNow(allocate, size))
    coversAll(calls, size)
    assert.deepStrictEqual(calls.map(([, length]) => length), [
      Libc.RESERVE_CHUNK,
      Libc.RESERVE_CHUNK,
      Libc.RESERVE_CHUNK,
      size - 3 * Libc.RESERVE_CHUNK
    ])
  })

  it("asks again for less after an interruption, and goes on from where it was", () => {
    const { allocate, calls } = recording("ok", "EINTR", "EINTR", "ok", "EINTR")
    const size = 200 * MiB
    assert.isUndefined(Libc.reserveNow(allocate, size))
    // the interrupted calls are asked again at the same offset, each time for half as much
    assert.deepStrictEqual(calls.slice(0, 5), [
      [0, 64 * MiB],
      [64 * MiB, 64 * MiB],
      [64 * MiB, 32 * MiB],
      [64 * MiB, 16 * MiB],
      [80 * MiB, 16 * MiB]
    ])
    coversAll(calls.filter((_, i) => ![1, 2, 4].includes(i)), size)
  })

  it("gives up after a bounded number of interruptions in a row: Unknown, errno EINTR", () => {
    let calls = 0
    const failed = Libc.reserveNow(() => (calls++, errno("EINTR")), 200 * MiB, "shm://reserve")
    assert.instanceOf(failed, IpcError.IpcError)
    assert.strictEqual(failed.reason._tag, "Unknown")
    assert.strictEqual(failed.errno, "EINTR")
    assert.strictEqual(failed.address, "shm://reserve")
    assert.strictEqual(calls, Libc.RESERVE_TRIES)
  })

  it("interruptions between calls that go through are no failure, however many in all", () => {
    const answers = Array.from({ length: 2 * Libc.RESERVE_TRIES }, (_, i) => i % 2 === 0 ? "EINTR" : "ok")
    const { allocate, calls } = recording(...answers)
    assert.isUndefined(Libc.reserveNow(allocate, 1024 * MiB))
    assert.isAbove(calls.length, 2 * Libc.RESERVE_TRIES)
    // the size asked for shrinks to the least, no further
    assert.isAtLeast(Math.min(...calls.map(([, length]) => length)), Libc.RESERVE_MIN_CHUNK)
  })

  for (const name of ["ENOSPC", "ENOMEM", "EFBIG", "EDQUOT"]) {
    it(`${name} is NoSpace, in any chunk`, () => {
      const { allocate, calls } = recording("ok", name)
      const failed = Libc.reserveNow(allocate, 200 * MiB)
      assert.instanceOf(failed, IpcError.IpcError)
      assert.strictEqual(failed.reason._tag, "NoSpace")
      assert.strictEqual(failed.errno, name)
      assert.strictEqual(calls.length, 2)
    })
  }

  // what musl, an old kernel or a file system without fallocate answers: the pages come as they are written
  for (const name of ["EOPNOTSUPP", "ENOTSUP", "ENOSYS", "EINVAL"]) {
    it(`${name} is no error: the segment is made without its pages allocated ahead`, () => {
      const { allocate, calls } = recording(name)
      assert.isUndefined(Libc.reserveNow(allocate, 200 * MiB))
      assert.strictEqual(calls.length, 1, "no further call")
    })
  }

  it("any other error is a failure of its own (Unknown, or what its errno stands for), never NoSpace", () => {
    for (const [name, reason] of [["EBADF", "Unknown"], ["EIO", "Unknown"], ["EPERM", "PermissionDenied"]]) {
      const failed = Libc.reserveNow(recording(name!).allocate, MiB)
      assert.instanceOf(failed, IpcError.IpcError)
      assert.strictEqual(failed.reason._tag, reason, name)
      assert.strictEqual(failed.errno, name)
    }
  })
})

const linux = process.platform === "linux"
// 200 MiB, twice at most at once, in a /dev/shm that has room for them
const roomy = linux && Fs.statfsSync("/dev/shm").bavail * Fs.statfsSync("/dev/shm").bsize > 1024 * MiB

describe.skipIf(!roomy)("a segment larger than one chunk", () => {
  const size = 200 * MiB + 12_345

  it("as a memory file (a large message's segment) has every page allocated when made", () => {
    const fd = Libc.memfdSealedNow("reserve-test", size, true)
    if (fd instanceof IpcError.IpcError) return assert.fail(fd.message)
    try {
      assert.isAtLeast(allocatedBytes(fd), size)
    } finally {
      Libc.closeFd(fd)
    }
    // not reserved: no page until written
    const sparse = Libc.memfdSealedNow("reserve-test", size, false)
    if (sparse instanceof IpcError.IpcError) return assert.fail(sparse.message)
    assert.strictEqual(allocatedBytes(sparse), 0)
    Libc.closeFd(sparse)
  })

  it.effect("in /dev/shm (a Segment) has every page allocated when made", () =>
    Effect.gen(function*() {
      const name = `reserve-test-${process.pid}`
      const segment = yield* Shm.Segment.create(name, size)
      assert.isAtLeast(Fs.statSync(`/dev/shm/${name}`).blocks * 512, size)
      segment.bytes[size - 1] = 1
    }).pipe(Effect.scoped))
})
