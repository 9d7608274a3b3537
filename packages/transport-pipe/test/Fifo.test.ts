import * as Process from "@effect-ipc/core/Process"
import { Fifo } from "@effect-ipc/transport-pipe"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { waitFor } from "./helpers.ts"

const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-fifo-"))
afterAll(() => Fs.rmSync(dir, { recursive: true, force: true }))

describe("Fifo", () => {
  it.live("creates the FIFOs with mode 0600 and removes every file on close", () =>
    Effect.gen(function*() {
      const address = `fifo://${dir}/modes`
      yield* Effect.scoped(Effect.gen(function*() {
        yield* Fifo.make().listen(address)
        for (const suffix of [".in", ".out"]) {
          const stat = Fs.statSync(`${dir}/modes${suffix}`)
          assert.isTrue(stat.isFIFO())
          assert.strictEqual(stat.mode & 0o777, 0o600)
        }
      }))
      assert.deepStrictEqual(Fs.readdirSync(dir).filter((f) => f.startsWith("modes")), [])
    }))

  // mkfifo's mode is narrowed by the umask (022 here gave 0640 for 0660): the FIFOs get the mode asked for
  it.live("option mode is the FIFOs' exact mode, whatever the umask (0660 and 0666 under umask 022)", () =>
    Effect.gen(function*() {
      const before = process.umask(0o022)
      yield* Effect.addFinalizer(() => Effect.sync(() => process.umask(before)))
      for (const mode of [0o660, 0o666]) {
        const address = `fifo://${dir}/umask-${mode.toString(8)}`
        yield* Effect.scoped(Effect.gen(function*() {
          yield* Fifo.make({ mode }).listen(address)
          for (const suffix of [".in", ".out"]) {
            const stat = Fs.statSync(`${dir}/umask-${mode.toString(8)}${suffix}`)
            assert.strictEqual((stat.mode & 0o777).toString(8), mode.toString(8), suffix)
          }
        }))
      }
    }).pipe(Effect.scoped))

  it.live("serves one peer at a time: a second client gets AddressInUse until the first leaves", () =>
    Effect.gen(function*() {
      const transport = Fifo.make()
      const address = `fifo://${dir}/single`
      const listener = yield* transport.listen(address)
      const first = yield* transport.dial(address)
      yield* listener.accept
      const busy = yield* Effect.flip(Effect.scoped(transport.dial(address)))
      assert.strictEqual(busy.reason._tag, "AddressInUse")
      yield* first.close
      const second = yield* transport.dial(address)
      const server = yield* listener.accept
      yield* second.send(new Uint8Array([2]))
      assert.deepStrictEqual([...(yield* server.receive)], [2])
    }).pipe(Effect.scoped))

  it.live("recovers the pair from a client that claimed it and vanished before speaking", () =>
    Effect.gen(function*() {
      const transport = Fifo.make({ helloTimeout: "300 millis" })
      const address = `fifo://${dir}/vanished`
      const listener = yield* transport.listen(address)
      // a client that won the claim and died at once: the ready token is gone, nobody speaks
      Fs.rmSync(`${dir}/vanished.ready`)
      // the listener offers the pair again (a new ready token) once the hello timeout has passed
      assert.isTrue(yield* waitFor(() => Fs.existsSync(`${dir}/vanished.ready`), 20_000), "the pair was offered again")
      const client = yield* transport.dial(address)
      const server = yield* listener.accept
      yield* client.send(new Uint8Array([7]))
      assert.deepStrictEqual([...(yield* server.receive)], [7])
    }).pipe(Effect.scoped))

  it.live("does not take over a pair whose server is alive", () =>
    Effect.gen(function*() {
      const address = `fifo://${dir}/owned`
      yield* Fifo.make().listen(address)
      const error = yield* Effect.flip(Effect.scoped(Fifo.make().listen(address)))
      assert.strictEqual(error.reason._tag, "AddressInUse")
    }).pipe(Effect.scoped))

  it.live.runIf(process.platform === "linux")(
    "a lock whose pid now belongs to another process (another start time) is a dead listener's: taken over",
    () =>
      Effect.gen(function*() {
        // the sleeper has the recorded pid, but it is not the process that wrote the lock
        const sleeper = yield* Effect.acquireRelease(
          Effect.sync(() => ChildProcess.spawn("sleep", ["300"], { stdio: "ignore" })),
          (child) => Effect.sync(() => child.kill("SIGKILL"))
        )
        const live = Process.identify(sleeper.pid!)!
        const transport = Fifo.make()
        const recycled = `${dir}/recycled`
        Fs.writeFileSync(`${recycled}.lock`, `${Process.encode({ ...live, startTime: live.startTime + 1 })}:dead`)
        yield* Effect.scoped(Effect.gen(function*() {
          yield* transport.listen(`fifo://${recycled}`)
          assert.match(Fs.readFileSync(`${recycled}.lock`, "utf8"), new RegExp(`^${Process.encode(Process.self())}:`))
        }))
        // the same pid with its own start time, or a bare pid (an older lock), is a live listener's
        for (const [name, owner] of [["started", Process.encode(live)], ["bare", String(live.pid)]] as const) {
          Fs.writeFileSync(`${dir}/${name}.lock`, `${owner}:alive`)
          const error = yield* Effect.flip(Effect.scoped(transport.listen(`fifo://${dir}/${name}`)))
          assert.strictEqual(error.reason._tag, "AddressInUse", name)
          assert.include(error.detail, `pid ${live.pid}`)
          Fs.rmSync(`${dir}/${name}.lock`)
        }
      }).pipe(Effect.scoped)
  )
})
