/**
 * Mappings are a bounded resource: the kernel lets a process have `vm.max_map_count` (65 530) of them, and V8
 * aborts the process when one of its own is refused. A reader keeps at most 64 large messages per channel (8192 in
 * the process) in their own mappings (the rest are copied), a process holds at most half the kernel's limit (then `NoSpace`), and the
 * mappings of large messages handed out in place are let go when the channel closes.
 */
import * as Shm from "@effect-ipc/transport-shm"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import { leftovers, pidMarker, spawnChild, spawnChildWith, untilSaid } from "./helpers.ts"

let n = 0
const address = () => `shm://mappings-test-${process.pid}-${n++}`

/** Large messages' segments this process has mapped (`memfd:eipc-m...` in /proc/self/maps). */
const messageMappings = () =>
  Fs.readFileSync("/proc/self/maps", "utf8").split("\n").filter((line) => line.includes("memfd:eipc-m")).length

describe("shm:// mappings", () => {
  it.live(
    "a reader that reads nothing holds at most 64 large messages mapped per channel; the rest are copied, every byte intact",
    () =>
      Effect.gen(function*() {
        const where = address()
        const listener = yield* Shm.ShmTransport.make().listen(where)
        // a ring of 4 KiB: 2100 bytes is over half of it, a segment of its own per message
        const client = yield* Shm.ShmTransport.make({ ringSize: 4096 }).dial(where)
        const server = yield* listener.accept
        const count = 300
        const before = messageMappings()
        // each send completes once the reader has opened its segment: the reader read all of them ahead
        for (let i = 0; i < count; i++) yield* client.send(new Uint8Array(2100).fill(i & 0xff))
        const held = messageMappings() - before
        assert.isAtMost(held, 64 + 2, `${held} large messages' mappings held by an unread channel`)
        for (let i = 0; i < count; i++) {
          const message = yield* server.receive
          assert.strictEqual(message.byteLength, 2100)
          assert.isTrue(message.every((byte) => byte === (i & 0xff)), `message ${i}`)
        }
        assert.isAtMost(messageMappings() - before, 2)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "readers that read nothing hold at most 8192 large messages mapped in the whole process; the rest are copied, intact",
    () =>
      Effect.gen(function*() {
        const where = address()
        const listener = yield* Shm.ShmTransport.make().listen(where)
        // 160 channels of 64 messages each (each at its own bound), 10 240 in all: past the process's 8192
        const channels = 160
        const perChannel = 64
        const pairs = yield* Effect.forEach(
          Array.from({ length: channels }, (_, i) => i),
          () =>
            Effect.gen(function*() {
              const client = yield* Shm.ShmTransport.make({ ringSize: 4096 }).dial(where)
              return { client, server: yield* listener.accept }
            })
        )
        const before = messageMappings()
        // each send completes once the reader has opened its segment: every reader read all of them ahead
        yield* Effect.forEach(pairs, ({ client }, c) =>
          Effect.gen(function*() {
            for (let i = 0; i < perChannel; i++) yield* client.send(new Uint8Array(2100).fill((c + i) & 0xff))
          }), { concurrency: 16, discard: true })
        const held = messageMappings() - before
        assert.isAtMost(held, 8192 + 2 * channels, `${held} large messages' mappings held by unread channels`)
        yield* Effect.forEach(pairs, ({ server }, c) =>
          Effect.gen(function*() {
            for (let i = 0; i < perChannel; i++) {
              const message = yield* server.receive
              assert.strictEqual(message.byteLength, 2100)
              assert.isTrue(message.every((byte) => byte === ((c + i) & 0xff)), `channel ${c}, message ${i}`)
            }
          }), { discard: true })
        assert.isAtMost(messageMappings() - before, 2 * channels)
      }).pipe(Effect.scoped),
    120_000
  )

  it.live(
    "a large message read in place (receiveView) reads as empty once the channel closes, before the view's scope does",
    () =>
      Effect.gen(function*() {
        const where = address()
        const listener = yield* Shm.ShmTransport.make({ ringSize: 64 * 1024 }).listen(where)
        const client = yield* Shm.ShmTransport.make({ ringSize: 64 * 1024 }).dial(where)
        const server = (yield* listener.accept) as Shm.ShmChannel.ShmChannel
        yield* client.send(new Uint8Array(100_000).fill(9))
        const viewScope = yield* Scope.make()
        const view = yield* Scope.provide(viewScope)(server.receiveView)
        assert.strictEqual(view.byteLength, 100_000)
        assert.strictEqual(view[99_999], 9)
        const mapped = messageMappings()
        yield* server.close
        assert.strictEqual(view.byteLength, 0)
        assert.isUndefined(view[10])
        assert.isBelow(messageMappings(), mapped, "the segment's mapping is let go with the channel")
        yield* Scope.close(viewScope, Exit.void)
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "a process that holds half the kernel's limit of mappings gets NoSpace, not an abort; once released it maps again",
    () =>
      Effect.gen(function*() {
        const name = `mappings-test-${process.pid}-${n++}`
        yield* Shm.ResourceLink.create(name, 100)
        // another process acquires the link until it may map no more (one mapping per reference): some 32 000
        // mappings before its ready line, which took over 20 s on a loaded machine (the test's own bound holds)
        const child = yield* spawnChildWith({ readyWithin: "100 seconds" }, "links", name)
        assert.isTrue(yield* untilSaid(child.output, /^again /m), child.output())
        const limit = Number(Fs.readFileSync("/proc/sys/vm/max_map_count", "utf8"))
        const said = /^ready (\d+) (\w+): (.*)$/m.exec(child.output())
        assert.isNotNull(said, child.output())
        assert.strictEqual(said![2], "NoSpace", said![3])
        assert.include(said![3], "half the kernel's limit (vm.max_map_count")
        assert.isAtLeast(Number(said![1]), Math.floor(limit / 2) - 100)
        assert.match(child.output(), /^again ok$/m)
        yield* child.kill
        assert.deepStrictEqual(leftovers(pidMarker(child.pid)), [])
      }).pipe(Effect.scoped),
    120_000
  )

  // (`view.buffer.transfer()` moved the mapped memory into a buffer that nothing kept mapped: once the view's buffer
  // was collected the range was unmapped under it, and reading it killed the process with SIGSEGV; on a link's
  // payload it also detached the header, so the release died on it and left the link's name behind)
  it.live(
    "the buffers of views of shared memory cannot be transferred: no read of unmapped memory, no link left behind",
    () =>
      Effect.gen(function*() {
        const where = address()
        const listener = yield* Shm.ShmTransport.make().listen(where)
        const name = `mappings-test-${process.pid}-transfer`
        const sent = yield* Effect.forkChild(Effect.gen(function*() {
          const server = yield* listener.accept
          yield* server.send(new Uint8Array(1 << 20).fill(7))
          return server
        }))
        const child = yield* spawnChild("transfer", where, name)
        assert.strictEqual(child.said, "refused refused gone", child.output())
        yield* Fiber.join(sent)
        assert.deepStrictEqual(leftovers(name), [])
      }).pipe(Effect.scoped),
    60_000
  )

  // the README: those buffers refuse `postMessage` with a transfer list (`DataCloneError`); only `structuredClone`
  // was checked. A real Worker, in a child process (a transfer that went through could read unmapped memory)
  it.live(
    "a view of shared memory posted to a Worker with its buffer in the transfer list: DataCloneError, the view intact",
    () =>
      Effect.gen(function*() {
        const where = address()
        const listener = yield* Shm.ShmTransport.make().listen(where)
        const name = `mappings-test-${process.pid}-post`
        const sent = yield* Effect.forkChild(Effect.gen(function*() {
          const server = yield* listener.accept
          yield* server.send(new Uint8Array(1 << 20).fill(7))
          return server
        }))
        const child = yield* spawnChild("post", where, name)
        // the message read in place, then the link's payload: refused, each still its full MiB; a copy goes
        assert.strictEqual(
          child.said,
          `DataCloneError:${1 << 20}:7 DataCloneError:${1 << 20}:171 copy:${1 << 20}:7`,
          child.output()
        )
        yield* Fiber.join(sent)
        assert.deepStrictEqual(leftovers(name), [])
      }).pipe(Effect.scoped),
    60_000
  )
})
