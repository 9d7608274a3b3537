/**
 * The seed's two fixed roles over logs, across real processes: messages
 * kept for a side that starts later, sides that come and go, typed RPC over
 * `?role=` addresses, permissions, wake-up without busy loops, and the
 * polling fallback.
 */
import { IpcRpc, Transport } from "@effect-ipc/core"
import type * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as IpcError from "@effect-ipc/core/IpcError"
import { ConformanceApi, ConformanceHandlers, Refused } from "@effect-ipc/testing/ConformanceApi"
import { FileChannel, FileTransport, Ipckit, Log, Messages } from "@effect-ipc/transport-file"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as RpcClient from "effect/rpc/RpcClient"
import * as RpcServer from "effect/rpc/RpcServer"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Lock from "../src/internal/lock.ts"
import {
  childScript,
  countedBackend,
  fresh,
  type Look,
  modeFor,
  node,
  run,
  spawn,
  tempRoot,
  tmpfs,
  underStrace
} from "./helpers.ts"

const root = tempRoot("channel")
const text = new TextDecoder()
const bytes = (s: string) => new TextEncoder().encode(s)
/** Runs the fixture with `args` to its end, holding up this process (no liveness check runs meanwhile); its exit code. */
const blocking = (args: ReadonlyArray<string>): number => {
  const done = ChildProcess.spawnSync(process.execPath, [
    "--conditions=@effect-ipc/source",
    "--disable-warning=ExperimentalWarning",
    childScript,
    ...args
  ], { stdio: "ignore", timeout: 30_000 })
  return done.status ?? 128 + (done.signal === null ? 0 : Os.constants.signals[done.signal])
}
const got = (lines: ReadonlyArray<string>) => lines.filter((l) => l.startsWith("got ")).map((l) => l.slice(4))
/** Every entry under `dir` with a file's content or "dir", sorted. */
const tree = (dir: string) =>
  Fs.readdirSync(dir, { recursive: true, encoding: "utf8" }).toSorted().map((name) => {
    const path = Path.join(dir, name)
    return [name, Fs.lstatSync(path).isDirectory() ? "dir" : Fs.readFileSync(path, "utf8")]
  })

describe("FileChannel (fixed roles)", () => {
  it.live(
    "a small message received is a buffer of its own, never a view keeping a whole read chunk alive",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        const backend = yield* FileChannel.backend(dir)
        const frontend = yield* FileChannel.frontend(dir)
        const count = 2000
        for (let i = 0; i < count; i++) yield* backend.send(bytes(`small ${String(i).padStart(58, "0")}`))
        yield* backend.send(new Uint8Array(100_000).fill(7))
        for (let i = 0; i < count; i++) {
          const message = yield* frontend.receive
          assert.strictEqual(text.decode(message), `small ${String(i).padStart(58, "0")}`)
          // 64 bytes read in chunks of up to 256 KiB (or from Node's 64 KiB buffer pool): copied out
          assert.isAtMost(message.buffer.byteLength, 1024, `message ${i} keeps ${message.buffer.byteLength} bytes`)
        }
        const large = yield* frontend.receive
        assert.strictEqual(large.byteLength, 100_000)
        assert.isTrue(large.every((b) => b === 7))
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "keeps what the backend sends for a frontend process that starts later, and carries the replies back",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        const backend = yield* FileChannel.backend(dir)
        for (let i = 0; i < 100; i++) yield* backend.send(bytes(`early ${i}`))
        // nobody has read them: they are all in the log
        const echo = yield* node(["echo", dir, "frontend"])
        yield* echo.waitFor((l) => l === "open")
        for (let i = 0; i < 100; i++) assert.strictEqual(text.decode(yield* backend.receive), `early ${i}`)
        yield* backend.send(bytes("later"))
        assert.strictEqual(text.decode(yield* backend.receive), "later")
        assert.strictEqual(backend.peer.pid, echo.pid)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "a side that closes cleanly is waited for; what is sent meanwhile reaches its next session",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        const backend = yield* FileChannel.backend(dir)
        yield* backend.send(bytes("one"))
        const first = yield* run(node(["read", dir, "frontend", "1"]))
        assert.deepStrictEqual(got(first.lines), ["one"])
        yield* Effect.sleep("600 millis") // liveness checks run meanwhile: a clean close is no loss
        yield* backend.send(bytes("two"))
        const second = yield* run(node(["read", dir, "frontend", "1"]))
        assert.deepStrictEqual(got(second.lines), ["two"])
      }).pipe(Effect.scoped),
    60_000
  )

  // (a liveness check that read the close record while the closing process still held its lock took that lock
  // for a new session, and the lock's release a moment later for a loss: ConnectionLost, once in a CI run)
  it.live(
    "a side that closed cleanly and holds its lock a moment longer is waited for, not reported lost",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        const backend = yield* FileChannel.backend(dir)
        const slow = yield* node(["close-slowly", dir, "frontend"])
        yield* slow.waitFor((l) => l === "closed")
        assert.strictEqual(text.decode(yield* backend.receive), "m")
        // four liveness checks while the lock is held, and more after it went
        yield* Effect.sleep("1500 millis")
        const next = yield* Effect.flip(backend.receive.pipe(Effect.timeoutOrElse({
          duration: "1 second",
          orElse: () => Effect.fail(IpcError.make("Timeout", "waited for the next session"))
        })))
        assert.strictEqual(next.reason._tag, "Timeout", next.message)
        yield* backend.send(bytes("two"))
        const second = yield* run(node(["read", dir, "frontend", "1"]))
        assert.deepStrictEqual(got(second.lines), ["two"])
      }).pipe(Effect.scoped),
    60_000
  )

  // (the close record was matched to whoever held the lock as it was read: a session that opened after it, before
  // this side read it, was taken for the closed one, and its death was never reported)
  it.live(
    "a session that opens after a closed one, before this side reads its close record, is a new one: killed, it is lost",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        yield* run(node(["send", dir, "frontend", "1", "m"]))
        const silent = yield* node(["send", dir, "frontend", "0", "b", "stay"])
        yield* silent.waitFor((l) => l === "sent 0")
        const backend = yield* FileChannel.backend(dir)
        assert.strictEqual(text.decode(yield* backend.receive), "m0")
        // liveness checks while the new session lives
        yield* Effect.sleep("600 millis")
        yield* silent.signal("SIGKILL")
        const error = yield* Effect.flip(backend.receive).pipe(
          Effect.timeoutOrElse({
            duration: "5 seconds",
            orElse: () => Effect.die(new Error("the loss was never reported"))
          })
        )
        assert.strictEqual(error.reason._tag, "ConnectionLost", error.message)
      }).pipe(Effect.scoped),
    60_000
  )

  // (a close record read late, behind a full inbox, was taken for the close of the session seen since: that one's
  // death was then never reported; and the open's own look at the peer's lock did not note which session it saw)
  it.live(
    "a close record read late, behind a full inbox, is an earlier session's: the session seen since is still watched",
    () =>
      Effect.gen(function*() {
        for (const seen of ["by liveness checks", "at the open"] as const) {
          const dir = fresh(root)
          const open = FileChannel.backend(dir, { maxBufferedMessages: 1 })
          const early = seen === "by liveness checks" ? yield* open : undefined
          // records of 700 KB are read one at a time: the inbox fills at the first, and the close record waits
          yield* run(node(["send-large", dir, "frontend", "4", "700000"]))
          const silent = yield* node(["send", dir, "frontend", "0", "b", "stay"])
          yield* silent.waitFor((l) => l === "sent 0")
          const backend = early ?? (yield* open)
          // seen by liveness checks while the old session's close record is unread; or, at the open, killed at once
          if (early !== undefined) yield* Effect.sleep("600 millis")
          yield* silent.signal("SIGKILL")
          yield* Effect.sleep("600 millis")
          for (let i = 0; i < 4; i++) assert.strictEqual((yield* backend.receive)[0], i)
          const error = yield* Effect.flip(backend.receive).pipe(
            Effect.timeoutOrElse({
              duration: "5 seconds",
              orElse: () => Effect.die(new Error(`seen ${seen}: the loss was never reported`))
            })
          )
          assert.strictEqual(error.reason._tag, "ConnectionLost", error.message)
        }
      }).pipe(Effect.scoped),
    60_000
  )

  // (a liveness check keeps the session it saw, to tell an earlier session's close record read late from that one's;
  // kept past that session's own close record, it made a later session's close record look like an earlier one's)
  it.live(
    "a session too short for any liveness check, after one that was seen, sends and closes: no loss is reported",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        const backend = yield* FileChannel.backend(dir)
        // a session the liveness checks see, closed once it has read one message
        const seen = yield* node(["read", dir, "frontend", "1"])
        yield* seen.waitFor((l) => l === "open")
        yield* Effect.sleep("600 millis")
        yield* backend.send(bytes("go"))
        assert.strictEqual(yield* seen.exit, 0)
        // the next opens, sends and closes while this process is blocked: no liveness check sees it
        ChildProcess.execFileSync(process.execPath, [
          "--conditions=@effect-ipc/source",
          "--disable-warning=ExperimentalWarning",
          childScript,
          "send",
          dir,
          "frontend",
          "1",
          "b"
        ], { stdio: "ignore" })
        assert.strictEqual(text.decode(yield* backend.receive), "b0")
        const next = yield* Effect.flip(backend.receive.pipe(Effect.timeoutOrElse({
          duration: "1500 millis",
          orElse: () => Effect.fail(IpcError.make("Timeout", "waited for the next session"))
        })))
        assert.strictEqual(next.reason._tag, "Timeout", next.message)
      }).pipe(Effect.scoped),
    60_000
  )

  // (`FileChannel.remove` in another process takes a free role's lock for a moment, to find the channel in use: a
  // liveness check inside that moment took it for a session, and its release for a loss)
  it.live(
    "a remover holding the absent side's lock for a moment is no session: no loss is reported",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        const backend = yield* FileChannel.backend(dir)
        const remover = yield* node(["take-lock", Path.join(dir, "frontend.lock"), "removing"])
        yield* remover.waitFor((l) => l === "held")
        assert.strictEqual(yield* remover.exit, 0)
        const next = yield* Effect.flip(backend.receive.pipe(Effect.timeoutOrElse({
          duration: "1500 millis",
          orElse: () => Effect.fail(IpcError.make("Timeout", "waited for a session"))
        })))
        assert.strictEqual(next.reason._tag, "Timeout", next.message)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "a side killed without closing is ConnectionLost (the liveness check; bounded generously) or waited for (peerLoss: wait)",
    () =>
      Effect.gen(function*() {
        for (const peerLoss of ["fail", "wait"] as const) {
          const dir = fresh(root)
          const backend = yield* FileChannel.backend(dir, { peerLoss })
          const frontend = yield* node(["send", dir, "frontend", "3", "x", "stay"])
          yield* frontend.waitFor((l) => l === "sent 3")
          for (let i = 0; i < 3; i++) assert.strictEqual(text.decode(yield* backend.receive), `x${i}`)
          yield* Effect.sleep("300 millis")
          const killedAt = Date.now()
          yield* frontend.signal("SIGKILL")
          if (peerLoss === "fail") {
            const error = yield* Effect.flip(backend.receive).pipe(Effect.timeout("5 seconds"))
            assert.strictEqual(error.reason._tag, "ConnectionLost")
            // the README's "within a second" is 250 ms liveness checks; only a generous bound here
            assert.isBelow(Date.now() - killedAt, 5000)
          } else {
            yield* Effect.sleep("700 millis")
            yield* backend.send(bytes("still open"))
            const next = yield* run(node(["read", dir, "frontend", "1"]))
            assert.deepStrictEqual(got(next.lines), ["still open"])
          }
        }
      }).pipe(Effect.scoped),
    60_000
  )

  // (a liveness check judged only a session it had seen, holding its lock or by a message: one that opened and was
  // killed between two checks, having sent nothing, was waited for as if it had never come)
  it.live(
    "a side that opens and is killed before it sends anything, unseen by any liveness check, is ConnectionLost",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        const backend = yield* FileChannel.backend(dir)
        // it opens and kills itself while this process is blocked: no liveness check sees it
        assert.strictEqual(blocking(["send", dir, "frontend", "0", "x", "die"]), 128 + 9)
        const error = yield* Effect.flip(backend.receive).pipe(Effect.timeoutOrElse({
          duration: "10 seconds",
          orElse: () => Effect.die(new Error("the loss was never reported"))
        }))
        assert.strictEqual(error.reason._tag, "ConnectionLost", error.message)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "unseen by any liveness check, a side that never came, one that closed without sending, one whose close record names no session, and one killed under peerLoss: wait are waited for",
    () =>
      Effect.gen(function*() {
        const cases = [
          { what: "never came", child: undefined, code: 0, peerLoss: "fail" },
          { what: "closed without sending", child: ["send", "0", "x"], code: 0, peerLoss: "fail" },
          // an older writer's close, and the Python port's (`LogWriter.close(goodbye=True)`)
          { what: "close record naming no session", child: ["close-unnamed"], code: 0, peerLoss: "fail" },
          { what: "killed, peerLoss: wait", child: ["send", "0", "x", "die"], code: 128 + 9, peerLoss: "wait" }
        ] as const
        for (const { child, code, peerLoss, what } of cases) {
          const dir = fresh(root)
          yield* FileChannel.create(dir)
          // the fixed roles' endpoint, its liveness checks counted
          const backend = yield* countedBackend(dir, { livenessInterval: "50 millis", peerLoss })
          // its session falls while this process is blocked: no liveness check sees it
          if (child !== undefined) {
            const [mode, ...rest] = child
            assert.strictEqual(blocking([mode, dir, "frontend", ...rest]), code, what)
          }
          // six more checks, or the end of the channel
          yield* backend.moreChecks(`${what}: no liveness checks`)
          // no loss was reported: the next session's message arrives
          assert.strictEqual((yield* run(node(["send", dir, "frontend", "1", "later"]))).code, 0, what)
          const next = yield* Effect.result(backend.channel.receive.pipe(Effect.timeout("10 seconds")))
          assert.strictEqual(next._tag === "Success" ? text.decode(next.success) : String(next.failure), "later0", what)
        }
      }).pipe(Effect.scoped),
    60_000
  )

  // (an open that failed after taking its role's lock left its token there: the peer took it for a session that came
  // and was killed unseen, and reported the channel lost while that process lived on and opened again)
  it.live(
    "a side whose open fails (its cursor damaged) is no lost session: the peer waits for its next one",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        yield* FileChannel.create(dir)
        const backend = yield* countedBackend(dir, { livenessInterval: "50 millis" })
        // the frontend's cursor on the backend's stream is damaged: its open fails once it holds its lock
        const cursor = Path.join(dir, FileChannel.streamOf("backend"), "readers", "frontend.cursor")
        Fs.mkdirSync(Path.dirname(cursor), { recursive: true })
        Fs.writeFileSync(cursor, "x".repeat(64))
        const refused = yield* Effect.flip(Effect.scoped(FileChannel.frontend(dir)))
        assert.strictEqual(refused.reason._tag, "Decode", refused.message)
        // six more liveness checks, or the end of the channel
        yield* backend.moreChecks("no liveness checks")
        // repaired, the frontend opens and sends: the backend was waiting, not lost
        Fs.rmSync(cursor)
        yield* Effect.scoped(Effect.flatMap(FileChannel.frontend(dir), (frontend) => frontend.send(bytes("later"))))
        const next = yield* Effect.result(backend.channel.receive.pipe(Effect.timeout("10 seconds")))
        assert.strictEqual(next._tag === "Success" ? text.decode(next.success) : String(next.failure), "later")
      }).pipe(Effect.scoped),
    60_000
  )

  // (a side whose open failed emptied its lock's text and then let go: a check that found the lock held in between
  // took it for a session seen, and reported the channel lost when it let go)
  it.live(
    "a lock held with no text (an open under way, or one that failed and emptied it) and let go is no lost session",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        yield* FileChannel.create(dir)
        const backend = yield* countedBackend(dir, { livenessInterval: "20 millis" })
        const lock = Path.join(dir, "frontend.lock")
        Fs.writeFileSync(lock, "")
        // held by another process (flock(1): the same lock a side takes) over several checks, then let go
        const holder = ChildProcess.spawn("flock", ["-x", lock, "-c", "read line"], {
          stdio: ["pipe", "ignore", "ignore"]
        })
        yield* Effect.addFinalizer(() => Effect.sync(() => holder.kill("SIGKILL")))
        // taken once the lock looks held (a process that cannot take it is told so at once)
        assert.isTrue(
          yield* Effect.sync(() => ChildProcess.spawnSync("flock", ["-n", "-x", lock, "true"]).status !== 0).pipe(
            Effect.repeat({ until: (held) => held, schedule: Schedule.spaced("10 millis") }),
            Effect.timeout("10 seconds")
          ),
          "the lock was taken"
        )
        yield* backend.moreChecks("no liveness checks while held")
        holder.stdin.end("\n")
        yield* Effect.callback<void>((resume) => {
          holder.once("exit", () => resume(Effect.void))
        })
        assert.isFalse(yield* backend.moreChecks("no liveness checks after"), "the channel ended: reported lost")
        // a real session after it: its message arrives
        yield* Effect.scoped(Effect.flatMap(FileChannel.frontend(dir), (frontend) => frontend.send(bytes("later"))))
        assert.strictEqual(text.decode(yield* backend.channel.receive.pipe(Effect.timeout("10 seconds"))), "later")
      }).pipe(Effect.scoped),
    60_000
  )

  // (the second look at the peer's lock, taken when its lock file names a session never seen, took a look that failed
  // (no descriptor free, the lock file replaced) for a free lock, and reported a session that may be alive lost)
  it.live(
    "a lock file naming an unknown session, when the second look at its lock fails, is no loss: judged later",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        yield* FileChannel.create(dir)
        // every look that follows one finding the lock free fails, as a probe with no descriptor free does
        let last: ReturnType<Look> | undefined
        const backend = yield* countedBackend(dir, { livenessInterval: "50 millis" }, (status, seen) => {
          last = last === "pending" ? IpcError.make("Open", "no descriptor free (EMFILE)") : status(seen)
          return last
        })
        // a frontend's session this end never saw: its token is in the lock file, its lock free
        Fs.writeFileSync(Path.join(dir, "frontend.lock"), `${process.pid} 0123456789abcdef\n`)
        const ended = yield* backend.moreChecks("no liveness checks")
        assert.isFalse(ended, "the channel ended on a look that failed")
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "a side that sends and dies before any liveness check saw it (or before this side opened) is ConnectionLost after its messages",
    () =>
      Effect.gen(function*() {
        for (const when of ["while open", "before open"] as const) {
          const dir = fresh(root)
          const receiveAll = (backend: IpcChannel.IpcChannel) =>
            Effect.gen(function*() {
              const taken: Array<string> = []
              for (let i = 0; i < 3; i++) {
                taken.push(text.decode(yield* backend.receive.pipe(Effect.timeout("10 seconds"))))
              }
              assert.deepStrictEqual(taken, ["x0", "x1", "x2"], when)
              // it never closed: a loss, reported (such a side was waited for, for good)
              const error = yield* Effect.flip(backend.receive).pipe(Effect.timeout("5 seconds"))
              assert.strictEqual(error.reason._tag, "ConnectionLost", when)
            })
          if (when === "while open") {
            const backend = yield* FileChannel.backend(dir)
            // sends three and kills itself at once, well within one 250 ms liveness check
            const code = (yield* run(node(["send", dir, "frontend", "3", "x", "die"]))).code
            assert.strictEqual(code, 128 + 9)
            yield* receiveAll(backend)
          } else {
            const code = (yield* run(node(["send", dir, "frontend", "3", "x", "die"]))).code
            assert.strictEqual(code, 128 + 9)
            yield* receiveAll(yield* FileChannel.backend(dir))
          }
        }
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "a backlog of a side that closed cleanly, read in slices while the event loop is held up: all of it, then a wait (no loss)",
    () =>
      Effect.gen(function*() {
        // the liveness check judged the side gone while the slice holding its close record was still to be read
        const dir = fresh(root)
        const count = 2000
        yield* Effect.scoped(Effect.gen(function*() {
          const frontend = yield* FileChannel.frontend(dir)
          for (let i = 0; i < count; i++) yield* frontend.send(new Uint8Array(8 * 1024).fill(i & 255))
        }))
        const backend = yield* FileChannel.backend(dir, { maxBufferedBytes: 64 << 20, maxBufferedMessages: 100_000 })
        for (let i = 0; i < count; i++) {
          assert.strictEqual((yield* backend.receive.pipe(Effect.timeout("10 seconds")))[0], i & 255)
          if (i === 0) {
            // a handler that holds the event loop past a liveness check, mid-backlog
            const until = Date.now() + 400
            while (Date.now() < until) { /* busy */ }
          }
        }
        const after = yield* Effect.flip(backend.receive.pipe(Effect.timeout("1500 millis")))
        assert.strictEqual(after._tag, "TimeoutError", String(after))
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "messages taken through the messages stream count as delivered: a reopened side goes on after them",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        const backend = yield* FileChannel.backend(dir)
        for (let i = 0; i < 6; i++) yield* backend.send(bytes(`m${i}`))
        const firstTwo = yield* Effect.scoped(Effect.gen(function*() {
          const frontend = yield* FileChannel.frontend(dir)
          yield* Effect.sleep("300 millis")
          return yield* Stream.runCollect(Stream.take(frontend.messages, 2))
        }))
        assert.deepStrictEqual(firstTwo.map((m) => text.decode(m)), ["m0", "m1"])
        const rest = yield* Effect.scoped(Effect.gen(function*() {
          const frontend = yield* FileChannel.frontend(dir)
          const taken: Array<string> = []
          for (let i = 0; i < 4; i++) {
            taken.push(text.decode(yield* frontend.receive.pipe(Effect.timeout("10 seconds"))))
          }
          return taken
        }))
        assert.deepStrictEqual(rest, ["m2", "m3", "m4", "m5"])
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "one process per role: a second one gets AddressInUse, saying which process holds the role",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        yield* FileChannel.frontend(dir)
        const second = yield* run(node(["open", dir, "frontend"]))
        const refused = JSON.parse(second.lines[0]!) as { reason: string; detail: string }
        assert.strictEqual(refused.reason, "AddressInUse")
        assert.include(refused.detail, `open in another process (pid ${process.pid})`)
        // a second open in the process that holds the role: the same reason, not called another process
        const again = yield* Effect.flip(Effect.scoped(FileChannel.frontend(dir)))
        assert.strictEqual(again.reason._tag, "AddressInUse", again.message)
        assert.include(again.detail, "open already in this process")
        assert.notInclude(again.detail, "another process")
        const other = yield* run(node(["open", dir, "backend"]))
        assert.deepStrictEqual(JSON.parse(other.lines[0]!), { ok: true })
      }).pipe(Effect.scoped),
    60_000
  )

  // (a process of another pid namespace sharing the directory, a container's, whose pid is ours was called this one)
  it.live(
    "a role held by another process whose pid number is ours: not called open in this process",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        const holder = yield* node(["read", dir, "frontend", "1"])
        yield* holder.waitFor((l) => l === "open")
        // the owner text such a process writes: its pid, the same number as ours, and its own session token
        Fs.writeFileSync(Path.join(dir, "frontend.lock"), `${Lock.sessionOwner(process.pid)}\n`)
        const refused = yield* Effect.flip(Effect.scoped(FileChannel.frontend(dir)))
        assert.strictEqual(refused.reason._tag, "AddressInUse", refused.message)
        assert.include(refused.detail, "open in another process", refused.message)
        assert.notInclude(refused.detail, "this process", refused.message)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "typed RPC through IpcRpc over ?role= addresses, and the server's next session after a client restart",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        const transport = FileTransport.make()
        yield* Layer.build(
          RpcServer.layer(ConformanceApi).pipe(
            Layer.provide(ConformanceHandlers),
            Layer.provide(IpcRpc.layerServerProtocol(`file://${dir}?role=backend`)),
            Layer.provide(IpcRpc.layerSerialization),
            Layer.provide(Layer.succeed(Transport.Transport, transport))
          )
        )
        const call = Effect.gen(function*() {
          const protocol = yield* Layer.build(
            IpcRpc.layerClientProtocol(`file://${dir}?role=frontend`).pipe(
              Layer.provide(IpcRpc.layerSerialization),
              Layer.provide(Layer.succeed(Transport.Transport, transport))
            )
          )
          const client = yield* RpcClient.make(ConformanceApi).pipe(Effect.provide(protocol))
          const sums = yield* Effect.forEach(Array.from({ length: 200 }, (_, i) => i), (n) => client.Echo({ n }), {
            concurrency: 50
          })
          assert.deepStrictEqual(sums, Array.from({ length: 200 }, (_, i) => i))
          const refused = yield* Effect.flip(client.Fail({ why: "no" }))
          assert.instanceOf(refused, Refused)
          assert.strictEqual((refused as Refused).why, "no")
        }).pipe(Effect.scoped)
        yield* call
        // a second client session on the same durable channel
        yield* call
      }).pipe(Effect.scoped),
    60_000
  )

  it.live("directory 0700, files 0600; a stream never passes its size cap", () =>
    Effect.gen(function*() {
      const dir = fresh(root)
      const backend = yield* FileChannel.backend(dir, {
        maxBytes: 1024 * 1024,
        segmentBytes: 64 * 1024,
        whenFull: "fail"
      })
      let sent = 0
      const message = new Uint8Array(10_000)
      const full = yield* Effect.flip(Effect.forever(Effect.andThen(backend.send(message), Effect.sync(() => sent++))))
      assert.strictEqual(full.reason._tag, "Full")
      const stats = yield* Log.stats(Path.join(dir, "backend_to_frontend"))
      assert.isAtMost(stats.bytes, 1024 * 1024)
      assert.isAtLeast(sent * 10_012, 1024 * 1024 - 2 * 64 * 1024)
      const walk = (p: string): Array<string> =>
        Fs.statSync(p).isDirectory() ? [p, ...Fs.readdirSync(p).flatMap((n) => walk(Path.join(p, n)))] : [p]
      for (const p of walk(dir)) {
        const mode = Fs.statSync(p).mode & 0o777
        assert.strictEqual(mode, Fs.statSync(p).isDirectory() ? 0o700 : 0o600, p)
      }
    }).pipe(Effect.scoped), 60_000)

  it.live("no busy loop while idle: open channels cost next to no CPU", () =>
    Effect.gen(function*() {
      const dir = fresh(root)
      const backend = yield* FileChannel.backend(dir)
      const frontend = yield* FileChannel.frontend(dir)
      yield* backend.send(bytes("warm up"))
      yield* frontend.receive
      const waiting = yield* Effect.forkChild(frontend.receive)
      const before = process.cpuUsage()
      yield* Effect.sleep("1 second")
      const used = process.cpuUsage(before)
      // a spinning reader would use about 1 s of CPU here; the bound is generous (a shared CI machine), the
      // idle figure itself is for the bench
      assert.isBelow((used.user + used.system) / 1000, 500)
      yield* backend.send(bytes("wakes it"))
      assert.strictEqual(text.decode(yield* Fiber.join(waiting)), "wakes it")
    }).pipe(Effect.scoped), 60_000)

  it.live("polling for file systems that do not notify (watch: poll) delivers the same", () =>
    Effect.gen(function*() {
      const dir = fresh(root)
      const options = { watch: "poll", pollInterval: "5 millis" } as const
      const backend = yield* FileChannel.backend(dir, options)
      const frontend = yield* FileChannel.frontend(dir, options)
      for (let i = 0; i < 500; i++) yield* backend.send(bytes(`p${i}`))
      for (let i = 0; i < 500; i++) assert.strictEqual(text.decode(yield* frontend.receive), `p${i}`)
      yield* frontend.send(bytes("back"))
      assert.strictEqual(text.decode(yield* backend.receive), "back")
    }).pipe(Effect.scoped), 60_000)
})

describe("a message counts as read once its reader asks for the next (audit: a lock-step sender stalled)", () => {
  it.live("messages over half of maxBytes: a reader in its own fiber takes every one; one fiber sending and receiving in turn is Full, saying why", () =>
    Effect.gen(function*() {
      const size = 600_000
      // a generous wait where the reader keeps up (a loaded machine may be slow to read), a short one where it cannot
      const keepsUp = { maxBytes: 1024 * 1024, fullTimeout: "30 seconds" } as const
      const options = { maxBytes: 1024 * 1024, fullTimeout: "500 millis" } as const
      const looping = fresh(root, "looping")
      const backend = yield* FileChannel.backend(looping, keepsUp)
      const frontend = yield* FileChannel.frontend(looping, keepsUp)
      const reader = yield* Effect.forkScoped(Effect.replicateEffect(frontend.receive, 4))
      for (let i = 0; i < 4; i++) yield* backend.send(new Uint8Array(size).fill(i))
      assert.deepStrictEqual((yield* Fiber.join(reader)).map((message) => [message.byteLength, message[0]]), [
        [size, 0],
        [size, 1],
        [size, 2],
        [size, 3]
      ])

      const inTurn = fresh(root, "in-turn")
      const sender = yield* FileChannel.backend(inTurn, options)
      const receiver = yield* FileChannel.frontend(inTurn, options)
      yield* sender.send(new Uint8Array(size))
      assert.strictEqual((yield* receiver.receive).byteLength, size)
      // the first is not read until the receiver asks for the next, which this fiber would do after this send
      const full = yield* Effect.flip(sender.send(new Uint8Array(size)))
      assert.strictEqual(full.reason._tag, "Full", full.message)
      assert.include(full.detail, "once it asks for the next")
    }).pipe(Effect.scoped))
})

describe("FileChannel.remove (review item 12)", () => {
  it.effect("removes a channel whose streams were reclaimed (their readers/registry.lock included)", () =>
    Effect.gen(function*() {
      const dir = fresh(root, "reclaimed")
      yield* Effect.scoped(Effect.gen(function*() {
        const backend = yield* FileChannel.backend(dir)
        yield* backend.send(new TextEncoder().encode("one"))
      }))
      // a reclaim takes the registry lock (its file is made then), as a writer short of room does
      yield* Log.reclaim(Path.join(dir, FileChannel.streamOf("backend")))
      assert.isTrue(Fs.existsSync(Path.join(dir, FileChannel.streamOf("backend"), "readers", "registry.lock")))
      yield* FileChannel.remove(dir)
      assert.isFalse(Fs.existsSync(dir))
    }))

  it.effect("refuses, typed and touching nothing, a directory that is not a channel or fails the directory checks", () =>
    Effect.gen(function*() {
      // a user's directory (no marker)
      const user = fresh(root, "user")
      Fs.mkdirSync(Path.join(user, "photos"), { recursive: true, mode: 0o700 })
      Fs.writeFileSync(Path.join(user, "photos", "cat.txt"), "meow")
      Fs.writeFileSync(Path.join(user, "backend.lock"), "not a lock of ours")
      const before = tree(user)
      const notChannel = yield* Effect.flip(FileChannel.remove(user))
      assert.strictEqual(notChannel.reason._tag, "NotFound")
      assert.include(notChannel.detail, "not a channel directory")
      assert.deepStrictEqual(tree(user), before)
      // a listener's directory
      const listening = fresh(root, "listening")
      yield* Effect.scoped(Effect.gen(function*() {
        yield* FileTransport.make().listen(`file://${listening}`)
        const listenerDir = yield* Effect.flip(FileChannel.remove(listening))
        assert.strictEqual(listenerDir.reason._tag, "AddressInUse")
        assert.isTrue(Fs.existsSync(Path.join(listening, "listener.lock")))
      }))
      // a channel directory others may write: refused by the directory checks
      const open = fresh(root, "open")
      yield* FileChannel.create(open)
      Fs.chmodSync(open, 0o777)
      const entries = tree(open)
      const unsafe = yield* Effect.flip(FileChannel.remove(open))
      assert.strictEqual(unsafe.reason._tag, "PermissionDenied")
      assert.deepStrictEqual(tree(open), entries)
      Fs.chmodSync(open, 0o700)
      // a missing directory
      const missing = yield* Effect.flip(FileChannel.remove(fresh(root, "missing")))
      assert.strictEqual(missing.reason._tag, "NotFound")
      // a user's file, and a FIFO, where the directory would be: not a channel, left as they are
      const file = Path.join(fresh(root, "file"), "notes.txt")
      Fs.mkdirSync(Path.dirname(file), { mode: 0o700 })
      Fs.writeFileSync(file, "keep me")
      const fifo = Path.join(Path.dirname(file), "fifo")
      ChildProcess.execFileSync("mkfifo", [fifo])
      for (const [path, what] of [[file, "a file"], [fifo, "not a directory"]] as const) {
        const notDir = yield* Effect.flip(FileChannel.remove(path))
        assert.strictEqual(notDir.reason._tag, "NotFound", notDir.detail)
        assert.include(notDir.detail, `is not a channel directory (${what})`)
        // and a role opened there is refused with a hint, never following or blocking
        const opened = yield* Effect.flip(Effect.scoped(FileChannel.open(path, "frontend")))
        assert.strictEqual(opened.reason._tag, "PermissionDenied", opened.detail)
        assert.include(opened.detail, "where a directory is expected; hint: ")
        const below = yield* Effect.flip(Effect.scoped(FileChannel.open(Path.join(path, "ch"), "frontend")))
        assert.strictEqual(below.reason._tag, "PermissionDenied", below.detail)
      }
      assert.strictEqual(Fs.readFileSync(file, "utf8"), "keep me")
      assert.isTrue(Fs.lstatSync(fifo).isFIFO())
      // a closed channel goes
      yield* FileChannel.remove(open)
      assert.isFalse(Fs.existsSync(open))
    }))
})

describe("a user's folder is never taken for a channel (audit: remove deleted a folder the roles had marked)", () => {
  it.live(
    "the fixed roles refuse a non-empty directory that is not a channel: AddressInUse naming it and what it holds, every file kept",
    () =>
      Effect.gen(function*() {
        const project = fresh(root, "project")
        Fs.mkdirSync(Path.join(project, "chapters"), { recursive: true, mode: 0o700 })
        Fs.writeFileSync(Path.join(project, "thesis.tex"), "years of work")
        Fs.writeFileSync(Path.join(project, "chapters", "one.tex"), "chapter one")
        const before = tree(project)
        const refusals = [
          yield* Effect.flip(Effect.scoped(FileChannel.backend(project))),
          yield* Effect.flip(Effect.scoped(FileChannel.frontend(project))),
          yield* Effect.flip(FileChannel.create(project)),
          yield* Effect.flip(Effect.scoped(Messages.open(project, "backend"))),
          yield* Effect.flip(Effect.scoped(FileTransport.make().dial(`file://${project}?role=backend`))),
          yield* Effect.flip(Effect.scoped(FileTransport.make().listen(`file://${project}?role=frontend`)))
        ]
        for (const error of refusals) {
          assert.strictEqual(error.reason._tag, "AddressInUse")
          assert.include(error.detail, project)
          assert.include(error.detail, "chapters, thesis.tex")
        }
        // and from another process
        const other = yield* run(node(["open", project, "frontend"]))
        assert.strictEqual((JSON.parse(other.lines[0]!) as { reason: string }).reason, "AddressInUse")
        assert.deepStrictEqual(tree(project), before, "nothing was added, changed or removed")
        const notChannel = yield* Effect.flip(FileChannel.remove(project))
        assert.strictEqual(notChannel.reason._tag, "NotFound")
        assert.deepStrictEqual(tree(project), before)
        // an empty directory of the user becomes a channel, and remove takes it (it holds only the channel's)
        const empty = fresh(root, "empty")
        Fs.mkdirSync(empty, { mode: 0o700 })
        yield* Effect.scoped(FileChannel.backend(empty))
        yield* FileChannel.remove(empty)
        assert.isFalse(Fs.existsSync(empty))
      }),
    60_000
  )

  it.live(
    "remove deletes only the channel's own entries: a channel directory holding other files is AddressInUse naming them, nothing touched",
    () =>
      Effect.gen(function*() {
        // a folder an older version marked as a channel although it held the user's files
        const project = fresh(root, "marked")
        Fs.mkdirSync(project, { mode: 0o700 })
        Fs.writeFileSync(Path.join(project, "thesis.tex"), "years of work")
        Fs.writeFileSync(
          Path.join(project, ".effect-ipc"),
          `${JSON.stringify({ format: "effect-ipc-file", version: 1, kind: "channel" })}\n`
        )
        // both ends used it, in other processes, and closed
        const sent = yield* run(node(["send", project, "backend", "3", "m"]))
        assert.deepStrictEqual(sent.lines, ["sent 3"])
        const read = yield* run(node(["read", project, "frontend", "1"]))
        assert.deepStrictEqual(got(read.lines), ["m0"])
        // files of the user in the channel's own folders
        Fs.writeFileSync(Path.join(project, "backend_to_frontend", "notes.txt"), "mine")
        Fs.writeFileSync(Path.join(project, "frontend_to_backend", "readers", "todo.cursor.txt"), "mine")
        const before = tree(project)
        const refused = yield* Effect.flip(FileChannel.remove(project))
        assert.strictEqual(refused.reason._tag, "AddressInUse")
        assert.include(
          refused.detail,
          "(backend_to_frontend/notes.txt, frontend_to_backend/readers/todo.cursor.txt, thesis.tex)"
        )
        assert.deepStrictEqual(tree(project), before, "nothing was removed")
        // a link with a cursor's name (not a lock's: those are refused before, on opening) to a file of the user
        for (
          const name of ["thesis.tex", "backend_to_frontend/notes.txt", "frontend_to_backend/readers/todo.cursor.txt"]
        ) {
          Fs.rmSync(Path.join(project, name))
        }
        const victim = Path.join(root, `victim-${Path.basename(project)}.txt`)
        Fs.writeFileSync(victim, "the user's")
        const cursorLink = Path.join(project, "frontend_to_backend", "readers", "x.cursor")
        Fs.symlinkSync(victim, cursorLink)
        const withLink = tree(project)
        const link = yield* Effect.flip(FileChannel.remove(project))
        assert.strictEqual(link.reason._tag, "AddressInUse")
        assert.include(link.detail, "holds files that are not the channel's (frontend_to_backend/readers/x.cursor)")
        assert.deepStrictEqual(tree(project), withLink, "nothing was removed")
        assert.isTrue(Fs.lstatSync(cursorLink).isSymbolicLink())
        assert.strictEqual(Fs.readFileSync(victim, "utf8"), "the user's", "the link's target is untouched")
        // once only the channel's own entries are left, it goes
        Fs.rmSync(cursorLink)
        yield* FileChannel.remove(project)
        assert.isFalse(Fs.existsSync(project))
        assert.strictEqual(Fs.readFileSync(victim, "utf8"), "the user's")
        Fs.rmSync(victim)
      }),
    60_000
  )
})

describe("fileMode and dirMode are exact, whatever the umask", () => {
  it.live(
    "a process with umask 077 makes every file 0640 and every directory 0750 when asked (channel, listener and connection, ipckit)",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root, "modes")
        Fs.mkdirSync(dir, { mode: 0o700 })
        const maker = yield* node(["exact-modes", dir])
        yield* maker.waitFor((line) => line === "made")
        const seen: Array<string> = []
        const wrong: Array<string> = []
        for (const name of Fs.readdirSync(dir, { recursive: true, encoding: "utf8" })) {
          const stat = Fs.lstatSync(Path.join(dir, name))
          const line = `${name} ${(stat.mode & 0o777).toString(8)}`
          seen.push(line)
          if ((stat.mode & 0o777) !== (stat.isDirectory() ? 0o750 : modeFor(name, 0o640))) wrong.push(line)
        }
        assert.deepStrictEqual(wrong, [], "directories 0750, files 0640 (the locked ones 0600)")
        // all three were made, each with its files and directories
        for (const made of ["channel/backend.lock", "channel/backend_to_frontend/readers", "listener/listener.lock"]) {
          assert.isTrue(seen.some((line) => line.startsWith(`${made} `)), made)
        }
        assert.isTrue(seen.some((line) => /^listener\/connections\/[^/]+\/frontend_to_backend\/0+\.seg /.test(line)))
        assert.isTrue(seen.some((line) => line.startsWith("ipckit/.effect-ipc-frontend.cursor ")))
      }).pipe(Effect.scoped),
    60_000
  )
})

/** The Node fixture (`fixtures/child.ts`) with `args`, run under strace with `options` (strace's own arguments). */
const traced = (options: ReadonlyArray<string>, args: ReadonlyArray<string>) =>
  underStrace(options, args, { env: { NODE_DISABLE_COMPILE_CACHE: "1" } })

/** The Node fixture with `args`, every `fchmod` it makes failing as strace's `inject` says. */
const failingChmod = (inject: string, args: ReadonlyArray<string>) =>
  traced(["-o", "/dev/null", "-e", "trace=fchmod", "-e", `inject=fchmod:${inject}`], args)

/** Entries beside `dir` that a removal of it renamed aside and did not finish. */
const asides = (dir: string) =>
  Fs.readdirSync(Path.dirname(dir)).filter((name) => name.startsWith(`.${Path.basename(dir)}.`))

describe("fileMode and dirMode never let other users write (review: fileMode 0o666 made files others could write)", () => {
  it.effect(
    "a mode with group or other write bits, or not permission bits, is InvalidOption naming the option and the value, everywhere, and nothing is made",
    () =>
      Effect.gen(function*() {
        // a live listener, and a stream, that exist already (made with the defaults)
        const listening = fresh(root, "listening")
        yield* FileTransport.make().listen(`file://${listening}`)
        const stream = fresh(root, "stream")
        yield* Log.create(stream, { readers: ["r"] })
        const streamBefore = tree(stream)
        for (
          const [options, shown] of [
            [{ fileMode: 0o666 }, "fileMode 0o666 lets other users write"],
            [{ fileMode: 0o620 }, "fileMode 0o620 lets other users write"],
            [{ fileMode: 0o602 }, "fileMode 0o602 lets other users write"],
            [{ dirMode: 0o770 }, "dirMode 0o770 lets other users write"],
            [{ dirMode: 0o757 }, "dirMode 0o757 lets other users write"],
            [{ fileMode: 0o4600 }, "fileMode 0o4600 is not permission bits"],
            [{ fileMode: 1.5 }, "fileMode 1.5 is not permission bits"],
            [{ fileMode: 0o400 }, "fileMode 0o400 does not give this user read and write access"]
          ] as const
        ) {
          const dir = fresh(root, "wide")
          const fileOnly = "fileMode" in options ? options : undefined
          const attempts: Array<[string, Effect.Effect<unknown, IpcError.IpcError, Scope.Scope>]> = [
            ["FileChannel.create", FileChannel.create(dir, options)],
            ["FileChannel.backend", FileChannel.backend(dir, options)],
            ["Messages.open", Messages.open(dir, "frontend", options)],
            ["listen file://", FileTransport.make(options).listen(`file://${dir}`)],
            ["listen ?role=", FileTransport.make(options).listen(`file://${dir}?role=backend`)],
            ["dial file://", FileTransport.make(options).dial(`file://${listening}`)],
            ["dial ?role=", FileTransport.make(options).dial(`file://${dir}?role=frontend`)],
            ["FileTransport.build", FileTransport.build(options)],
            ["Ipckit.backend", Ipckit.backend(dir, options)],
            ["Log.create", Log.create(dir, { readers: ["r"], ...options })]
          ]
          if (fileOnly !== undefined) {
            attempts.push(
              ["Log.register", Log.register(stream, "r2", "start", fileOnly)],
              ["Log.openReader", Log.openReader(stream, { name: "r3", ...fileOnly })],
              ["Log.openWriter", Log.openWriter(stream, fileOnly)]
            )
          }
          for (const [what, attempt] of attempts) {
            const refused = yield* Effect.flip(Effect.scoped(attempt))
            assert.strictEqual(refused.reason._tag, "InvalidOption", `${what} ${shown}: ${refused.detail}`)
            assert.include(refused.detail, shown, what)
            assert.isFalse(Fs.existsSync(dir), `${what}: nothing was made`)
          }
          assert.deepStrictEqual(Fs.readdirSync(Path.join(listening, "connections")), [], "no connection was made")
          assert.deepStrictEqual(tree(stream), streamBefore, "the stream is untouched")
        }
        // a mode that String cannot write is refused as what it is, not a defect
        for (const fileMode of [Object.create(null) as unknown, { toString: () => [] }]) {
          const refused = yield* Effect.flip(Effect.scoped(FileTransport.build({ fileMode } as never)))
          assert.strictEqual(refused.reason._tag, "InvalidOption", refused.detail)
          assert.include(refused.detail, "fileMode (an object) is not permission bits")
        }
        // what is allowed: group and other may read (and search), never write
        const allowed = fresh(root, "allowed")
        yield* Effect.scoped(FileChannel.backend(allowed, { fileMode: 0o644, dirMode: 0o755 }))
        for (const name of Fs.readdirSync(allowed, { recursive: true, encoding: "utf8" })) {
          const stat = Fs.lstatSync(Path.join(allowed, name))
          assert.strictEqual(stat.mode & 0o777, stat.isDirectory() ? 0o755 : modeFor(name, 0o644), name)
        }
      }).pipe(Effect.scoped)
  )

  it.live(
    "a file system that refuses chmod (fchmod fails with EPERM): what the umask made, never wider than asked, is kept; another error still fails",
    () =>
      Effect.gen(function*() {
        // with umask 077 and 0640 / 0750 asked, as on vfat or a FUSE mount that rejects chmod
        const dir = fresh(root, "nochmod")
        Fs.mkdirSync(dir, { mode: 0o700 })
        const maker = yield* failingChmod("error=EPERM", ["exact-modes", dir])
        yield* maker.waitFor((line) => line === "made")
        const wrong: Array<string> = []
        let count = 0
        for (const name of Fs.readdirSync(dir, { recursive: true, encoding: "utf8" })) {
          const stat = Fs.lstatSync(Path.join(dir, name))
          count++
          if ((stat.mode & 0o777) !== (stat.isDirectory() ? 0o700 : 0o600)) {
            wrong.push(`${name} ${(stat.mode & 0o777).toString(8)}`)
          }
        }
        assert.isAbove(count, 20)
        assert.deepStrictEqual(wrong, [], "what the umask made: directories 0700, files 0600")
        // the traced process (strace's child) stays until killed; strace then exits
        for (const pid of Fs.readFileSync(`/proc/${maker.pid}/task/${maker.pid}/children`, "utf8").trim().split(" ")) {
          process.kill(Number(pid), "SIGKILL")
        }
        yield* maker.exit
        // any other failure of fchmod is an error, typed
        const failing = yield* run(failingChmod("error=EIO", ["open", fresh(root, "eio"), "backend"]))
        const outcome = JSON.parse(failing.lines[0]!) as { reason: string; detail: string }
        assert.notStrictEqual(outcome.reason, undefined, failing.lines[0])
        assert.include(outcome.detail, "EIO")
      }).pipe(Effect.scoped),
    60_000
  )
})

describe("FileChannel.remove against processes using the channel (review: remove raced an opening process)", () => {
  it.live(
    "remove racing a process that opens the channel over and over: never an open end's files, never a directory left that cannot be opened or removed",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root, "raced")
        yield* FileChannel.create(dir)
        const churn = yield* node(["churn", dir, "4"])
        const outcomes: Record<string, number> = {}
        while (churn.lines().length === 0) {
          const result = yield* Effect.result(FileChannel.remove(dir))
          const outcome = result._tag === "Success" ? "removed" : result.failure.reason._tag
          outcomes[outcome] = (outcomes[outcome] ?? 0) + 1
          yield* Effect.sleep("1 millis")
        }
        assert.strictEqual(yield* churn.exit, 0, churn.stderr())
        const report = JSON.parse(churn.lines()[0]!) as {
          opened: number
          lost: Array<string>
          refused: Record<string, number>
        }
        // every end that opened found its lock in the directory until it closed: nothing was removed under it
        assert.deepStrictEqual(report.lost, [], JSON.stringify(report))
        assert.isAbove(report.opened, 0, JSON.stringify(report))
        assert.isAbove(outcomes.removed ?? 0, 0, JSON.stringify(outcomes))
        // a removal fails only as documented: an end open (AddressInUse), not there or not marked yet (NotFound)
        assert.deepStrictEqual(
          Object.keys(outcomes).filter((o) => !["removed", "AddressInUse", "NotFound"].includes(o)),
          [],
          JSON.stringify(outcomes)
        )
        // what is left is a channel that opens and works, and goes
        if (Fs.existsSync(dir)) {
          yield* Effect.scoped(Effect.gen(function*() {
            const backend = yield* FileChannel.backend(dir)
            const frontend = yield* FileChannel.frontend(dir)
            yield* backend.send(bytes("still a channel"))
            let last = ""
            while (last !== "still a channel") last = text.decode(yield* frontend.receive)
          }))
          yield* FileChannel.remove(dir)
        }
        assert.isFalse(Fs.existsSync(dir))
        assert.deepStrictEqual(asides(dir), [], "nothing left beside it")
      }),
    60_000
  )

  it.live(
    "a removal killed half-way is finished by the next remove; meanwhile the path opens as a new, empty channel",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root, "interrupted")
        const sent = yield* run(node(["send", dir, "backend", "3", "old"]))
        assert.deepStrictEqual(sent.lines, ["sent 3"])
        const log = Path.join(root, `strace-${Path.basename(dir)}.log`)
        // killed at its first rmdir: the channel's files are deleted, its directories not yet
        const killed = yield* run(traced([
          "-o",
          log,
          "-e",
          "trace=rename,renameat,renameat2,rmdir",
          "-e",
          "inject=rmdir:signal=KILL:when=1"
        ], ["remove", dir]))
        assert.strictEqual(killed.code, 128 + 9, killed.stderr)
        const trace = Fs.readFileSync(log, "utf8")
        Fs.rmSync(log)
        assert.match(trace, /rename\("[^"]+", "[^"]+\.removing"\) = 0/)
        assert.include(trace, "killed by SIGKILL")
        // the channel vanished at once (renamed aside); what is left of it holds no message for anyone
        assert.isFalse(Fs.existsSync(dir))
        assert.strictEqual(asides(dir).length, 1)
        // a process opening the path now makes a new channel: the old messages are not in it
        const fresh1 = yield* run(node(["send", dir, "backend", "1", "new"]))
        assert.deepStrictEqual(fresh1.lines, ["sent 1"])
        const read = yield* run(node(["read", dir, "frontend", "1"]))
        assert.deepStrictEqual(got(read.lines), ["new0"])
        // the next remove takes the new channel and finishes the old removal
        yield* FileChannel.remove(dir)
        assert.isFalse(Fs.existsSync(dir))
        assert.deepStrictEqual(asides(dir), [])
        // a removal killed after its rename, with nothing at the path: finished by remove too
        const again = fresh(root, "interrupted")
        yield* FileChannel.create(again)
        const killedAgain = yield* run(
          traced(["-o", "/dev/null", "-e", "trace=rmdir", "-e", "inject=rmdir:signal=KILL:when=1"], ["remove", again])
        )
        assert.strictEqual(killedAgain.code, 128 + 9, killedAgain.stderr)
        assert.strictEqual(asides(again).length, 1)
        yield* FileChannel.remove(again)
        assert.deepStrictEqual(asides(again), [])
        // and then there is nothing left to remove
        assert.strictEqual((yield* Effect.flip(FileChannel.remove(again))).reason._tag, "NotFound")
      }),
    60_000
  )

  it.effect("remove through a symbolic link to a channel directory: InvalidAddress, nothing touched", () =>
    Effect.gen(function*() {
      const real = fresh(root, "real")
      yield* Effect.scoped(Effect.flatMap(FileChannel.backend(real), (backend) => backend.send(bytes("unread"))))
      const link = fresh(root, "link")
      Fs.symlinkSync(real, link)
      const before = tree(real)
      for (const path of [link, `${link}/`]) {
        const refused = yield* Effect.flip(FileChannel.remove(path))
        assert.strictEqual(refused.reason._tag, "InvalidAddress")
        assert.include(refused.detail, `is a symbolic link (to ${real})`)
        assert.deepStrictEqual(tree(real), before, "the channel is untouched")
        assert.isTrue(Fs.lstatSync(link).isSymbolicLink())
      }
      // the unread message is still there for the frontend; by its own path the channel goes
      yield* Effect.scoped(Effect.gen(function*() {
        const frontend = yield* FileChannel.frontend(real)
        assert.strictEqual(text.decode(yield* frontend.receive), "unread")
      }))
      yield* FileChannel.remove(real)
      assert.isFalse(Fs.existsSync(real))
      Fs.rmSync(link)
    }))
})

describe("garbage in a role's lock file (review item 4)", () => {
  // what a role's lock file may hold that no holder wrote: binary bytes, a pid with text after it, a large file
  const garbage: ReadonlyArray<readonly [string, Uint8Array]> = [
    ["binary bytes", Uint8Array.from({ length: 300 }, (_, i) => (i * 37 + 11) & 0xff)],
    ["a pid with text after it", bytes("4242 is not a holder, just text\n")],
    ["1 MiB of garbage after a pid", bytes(`1 ${"\u0000".repeat(1 << 20)}`)]
  ]
  for (const [what, content] of garbage) {
    it.live(
      `${what} in both role locks, closed or held: the channel opens and loses no acknowledged message`,
      () =>
        Effect.gen(function*() {
          const dir = fresh(root, "garbage")
          yield* Effect.scoped(Effect.gen(function*() {
            const backend = yield* FileChannel.backend(dir)
            yield* backend.send(bytes("before"))
          }))
          // both ends closed: garbage in both locks
          Fs.writeFileSync(Path.join(dir, "backend.lock"), content)
          Fs.writeFileSync(Path.join(dir, "frontend.lock"), content)
          yield* Effect.scoped(Effect.gen(function*() {
            const frontend = yield* FileChannel.frontend(dir)
            const backend = yield* FileChannel.backend(dir)
            assert.strictEqual(text.decode(yield* frontend.receive), "before")
            yield* backend.send(bytes("open"))
            assert.strictEqual(text.decode(yield* frontend.receive), "open")
            // garbage written over the held locks (in place: each holder keeps its lock)
            Fs.writeFileSync(Path.join(dir, "backend.lock"), content)
            Fs.writeFileSync(Path.join(dir, "frontend.lock"), content)
            yield* backend.send(bytes("held"))
            yield* frontend.send(bytes("back"))
            assert.strictEqual(text.decode(yield* frontend.receive), "held")
            assert.strictEqual(text.decode(yield* backend.receive), "back")
            // a second process for a role whose lock holds garbage is still refused
            const second = yield* Effect.flip(Effect.scoped(FileChannel.backend(dir)))
            assert.strictEqual(second.reason._tag, "AddressInUse", second.message)
            yield* backend.send(bytes("last"))
          }))
          // sent and acknowledged before the close: kept for the next frontend
          yield* Effect.scoped(Effect.gen(function*() {
            const frontend = yield* FileChannel.frontend(dir)
            assert.strictEqual(text.decode(yield* frontend.receive), "last")
          }))
          yield* FileChannel.remove(dir)
          assert.isFalse(Fs.existsSync(dir))
        }).pipe(Effect.timeout("20 seconds")),
      30_000
    )
  }
})

describe.runIf(process.getuid?.() === 0)("the fixed roles on a full disk", () => {
  // with no room for the marker, an open left the directories it had made (the channel's and its missing
  // parents) behind, empty, where a listen takes back what it made
  it.live(
    "an open with no room for the marker (a 256 KiB tmpfs) is NoSpace and leaves nothing behind: the directories it made go",
    () =>
      Effect.gen(function*() {
        const mount = yield* tmpfs(root, "256k")
        assert.throws(() => Fs.writeFileSync(Path.join(mount, "filler"), new Uint8Array(1 << 20)), /ENOSPC/)
        const dir = Path.join(mount, "a", "b", "channel")
        const opens = [
          FileChannel.backend(dir),
          FileChannel.create(dir),
          Effect.asVoid(Messages.open(dir, "frontend")),
          Effect.asVoid(Ipckit.backend(dir)),
          FileTransport.make().listen(`file://${dir}?role=backend`)
        ]
        for (const open of opens) {
          const error = yield* Effect.flip(Effect.scoped(open))
          assert.strictEqual(error.reason._tag, "NoSpace", error.message)
          assert.deepStrictEqual(
            Fs.readdirSync(mount),
            ["filler"],
            `what the failed open made is removed: ${error.message}`
          )
        }
        // a directory of the user's, given empty, is left (empty), and used once there is room
        const given = Path.join(mount, "given")
        Fs.mkdirSync(given, { mode: 0o700 })
        const again = yield* Effect.flip(Effect.scoped(FileChannel.backend(given)))
        assert.strictEqual(again.reason._tag, "NoSpace", again.message)
        assert.deepStrictEqual(Fs.readdirSync(given), [], "the user's directory is left empty")
        Fs.rmSync(Path.join(mount, "filler"))
        const backend = yield* FileChannel.backend(given)
        yield* backend.send(new TextEncoder().encode("once there is room"))
        const frontend = yield* FileChannel.frontend(given)
        assert.strictEqual(new TextDecoder().decode(yield* frontend.receive), "once there is room")
      }).pipe(Effect.scoped),
    30_000
  )
})

/** Another process: puts an empty file `theirs` in `<mount>/<name>` as soon as that directory appears (inotify). */
const putTheirs = `
const fs = require("node:fs"), path = require("node:path")
const [mount, name] = process.argv.slice(1)
const file = path.join(mount, name, "theirs")
const put = () => {
  try {
    fs.writeFileSync(file, "", { flag: "wx" })
  } catch (cause) {
    if (cause.code === "ENOENT") return
    throw cause
  }
  const stat = fs.statSync(file)
  process.stdout.write("wrote " + stat.ino + " " + stat.mtimeMs + "\\n")
  process.exit(0)
}
fs.watch(mount, put)
process.stdout.write("watching\\n")
put()
`

/** The pids of the children of `pid` (its main thread's). */
const childrenOf = (pid: number): ReadonlyArray<number> => {
  try {
    return Fs.readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number)
  } catch {
    return []
  }
}

/** The state letter of `/proc/<pid>/stat` (`t`: stopped under a tracer). */
const stateOf = (pid: number): string | undefined => {
  try {
    const stat = Fs.readFileSync(`/proc/${pid}/stat`, "latin1")
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0]
  } catch {
    return undefined
  }
}

describe.runIf(process.getuid?.() === 0 && Fs.existsSync("/usr/bin/strace"))(
  "a failed open and another process",
  () => {
    // a failed open removes the directories it made while they are empty (`rmdir`): a file another process put in one
    // between the open making it and taking it back keeps that directory, and the file
    it.live(
      "a file another process puts in a directory the failed open made keeps it (and the file): only the empty ones go",
      () =>
        Effect.gen(function*() {
          const mount = yield* tmpfs(root, "256k")
          assert.throws(() => Fs.writeFileSync(Path.join(mount, "filler"), new Uint8Array(1 << 20)), /ENOSPC/)
          const dir = Path.join(mount, "a", "b", "channel")
          const other = yield* spawn(process.execPath, ["-e", putTheirs, mount, "a"])
          yield* other.waitFor((line) => line === "watching", "the other process watching")
          // the opener is stopped (SIGSTOP) once it has made the channel's directory, before it marks it (NoSpace)
          const tracer = yield* underStrace(
            ["-P", dir, "-e", "trace=mkdir,mkdirat", "-e", "inject=mkdir,mkdirat:signal=SIGSTOP:when=1"],
            ["open", dir, "backend"]
          )
          const wrote = (yield* other.waitFor((line) => line.startsWith("wrote "), "the other process's file")).split(
            " "
          )
          // stopped once the channel's directory is there (a tracee is also "t" for a moment at each traced system
          // call: the injected stop comes after the mkdir returns)
          const opener = yield* Effect.suspend(() => {
            const pid = Fs.existsSync(dir) ? childrenOf(tracer.pid).find((child) => stateOf(child) === "t") : undefined
            return pid === undefined ? Effect.fail("not stopped yet") : Effect.succeed(pid)
          }).pipe(Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo({ duration: "60 seconds" }))))
          yield* Effect.addFinalizer(() =>
            Effect.sync(() => void ChildProcess.spawnSync("kill", ["-KILL", `${opener}`]))
          )
          assert.deepStrictEqual(Fs.readdirSync(Path.join(mount, "a")).toSorted(), ["b", "theirs"])
          // continued until it answers: a stop seen at the mkdir's return, before the injected one, would hold it
          yield* Effect.forkScoped(Effect.forever(
            Effect.andThen(
              Effect.sync(() => {
                try {
                  process.kill(opener, "SIGCONT")
                } catch {
                  // gone: its outcome is on its way
                }
              }),
              Effect.sleep("50 millis")
            )
          ))
          const outcome = JSON.parse(yield* tracer.waitFor((line) => line.startsWith("{"), "the opener's outcome"))
          assert.strictEqual(outcome.reason, "NoSpace", JSON.stringify(outcome))
          // b and the channel's directory, empty, went; a, holding the other process's file, stays
          assert.deepStrictEqual(Fs.readdirSync(mount).toSorted(), ["a", "filler"])
          assert.deepStrictEqual(Fs.readdirSync(Path.join(mount, "a")), ["theirs"])
          const theirs = Fs.statSync(Path.join(mount, "a", "theirs"))
          assert.deepStrictEqual([theirs.ino, theirs.mtimeMs, theirs.size], [Number(wrote[1]), Number(wrote[2]), 0])
        }).pipe(Effect.scoped),
      60_000
    )
  }
)
