/**
 * A flood against a `file://` listener: while a well-behaved client talks
 * to it, a process of the same user fills `connections/` with garbage
 * (files, FIFOs, symlinks, empty directories, directories whose
 * `connection.json` is a FIFO, a link or junk, connections to a listener
 * that is gone, lock files that are links), and another user (uid 65534)
 * tries to do the same and floods the shared directory around it.
 *
 * The listener must serve the client throughout, remove every piece of
 * garbage, and end with its file descriptors and memory back near where
 * they started; closing it leaves nothing behind.
 */
import type * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as Transport from "@effect-ipc/core/Transport"
import { FileTransport } from "@effect-ipc/transport-file"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { tempRoot } from "./helpers.ts"

const NOBODY = 65534
const root = tempRoot("flood")
Fs.chmodSync(root, 0o755)
const shared = Path.join(root, "shared")
Fs.mkdirSync(shared)
Fs.chmodSync(shared, 0o1777)

const openFds = () => Fs.readdirSync("/proc/self/fd").length
const rssMiB = () => process.memoryUsage().rss / (1024 * 1024)

/** Garbage of every kind in `connections` (count: how many of each), by a process of the same user. */
const garbage = (connections: string, count: number) =>
  [
    "import json, os, sys",
    `c = ${JSON.stringify(connections)}`,
    `n = ${count}`,
    // the listener sweeps while this runs: a directory it removed before it was filled is its work done
    "def put(*steps):",
    "    try:",
    "        for step in steps: step()",
    "    except FileNotFoundError:",
    "        pass",
    "for i in range(n):",
    "    put(lambda: open(f'{c}/file{i}', 'w').write('junk'))",
    "    put(lambda: os.mkfifo(f'{c}/fifo{i}'))",
    "    put(lambda: os.symlink('/etc/passwd', f'{c}/link{i}'))",
    "    put(lambda: os.mkdir(f'{c}/empty{i}'))",
    "    put(lambda: os.mkdir(f'{c}/fifoinfo{i}'), lambda: os.mkfifo(f'{c}/fifoinfo{i}/connection.json'))",
    "    put(lambda: os.mkdir(f'{c}/linkinfo{i}'), lambda: os.symlink('/etc/passwd', f'{c}/linkinfo{i}/connection.json'))",
    "    put(lambda: os.mkdir(f'{c}/junkinfo{i}'), lambda: open(f'{c}/junkinfo{i}/connection.json', 'w').write('{not json'))",
    "    put(lambda: os.mkdir(f'{c}/stale{i}'), lambda: open(f'{c}/stale{i}/connection.json', 'w').write(json.dumps({'listener': 'gone', 'pid': 1, 'created': 0})))",
    "    put(lambda: os.mkdir(f'{c}/lock{i}'), lambda: os.symlink('/etc/passwd', f'{c}/lock{i}/backend.lock'))",
    "print('done', flush=True)"
  ].join("\n")

/** What the other user tries: the same garbage in our connections/ (refused), and a flood of the shared directory. */
const attacker = (connections: string, count: number) =>
  [
    "import os",
    `c = ${JSON.stringify(connections)}`,
    `s = ${JSON.stringify(shared)}`,
    "refused = 0",
    `for i in range(${count}):`,
    "    try:",
    "        os.mkdir(f'{c}/theirs{i}')",
    "    except PermissionError:",
    "        refused += 1",
    "    os.mkdir(f'{s}/d{i}')",
    "    open(f'{s}/f{i}', 'w').write('x')",
    "print(f'refused {refused}', flush=True)"
  ].join("\n")

const runScript = (args: ReadonlyArray<string>) =>
  Effect.callback<string>((resume) => {
    const child = ChildProcess.execFile(args[0]!, args.slice(1), (error, stdout, stderr) => {
      resume(error === null ? Effect.succeed(stdout.trim()) : Effect.die(new Error(`${error.message}: ${stderr}`)))
    })
    return Effect.sync(() => void child.kill("SIGKILL"))
  })

describe("file:// listener under a flood", () => {
  it.live(
    "serves a well-behaved client during a garbage flood, removes the garbage, fds and memory come back",
    () =>
      Effect.gen(function*() {
        const dir = Path.join(shared, "listener")
        const address = `file://${dir}`
        const transport = FileTransport.make()
        const bytes = new TextEncoder()
        const text = new TextDecoder()
        const roundTrips = (n: number, tag: string) =>
          Effect.scoped(Effect.gen(function*() {
            const client = yield* transport.dial(address)
            for (let i = 0; i < n; i++) {
              yield* client.send(bytes.encode(`${tag}${i}`))
              const answer = yield* client.receive.pipe(
                Effect.timeoutOrElse({ duration: "30 seconds", orElse: () => Effect.die(new Error("not served")) })
              )
              assert.strictEqual(text.decode(answer), `${tag}${i}`)
            }
          }))
        const connections = Path.join(dir, "connections")

        yield* Effect.scoped(Effect.gen(function*() {
          const listener = yield* transport.listen(address)
          yield* Effect.forkScoped(
            Transport.serve(listener, (channel) => Effect.forever(Effect.flatMap(channel.receive, channel.send)))
          )
          // warm up, then the baseline
          yield* roundTrips(20, "warm")
          const fds = openFds()
          const rss = rssMiB()

          const flood = yield* Effect.forkChild(
            Effect.all([
              runScript(["/usr/bin/python3", "-c", garbage(connections, 300)]),
              runScript([
                "setpriv",
                `--reuid=${NOBODY}`,
                `--regid=${NOBODY}`,
                "--clear-groups",
                "/usr/bin/python3",
                "-c",
                attacker(connections, 300)
              ])
            ], { concurrency: "unbounded" })
          )
          // served while the flood runs
          let during = 0
          while (flood.pollUnsafe() === undefined) {
            yield* roundTrips(5, `during${during}-`)
            during++
          }
          const [ours, theirs] = yield* Fiber.join(flood)
          assert.strictEqual(ours, "done")
          assert.strictEqual(theirs, "refused 300", "the other user cannot write in connections/")
          assert.isAtLeast(during, 1)
          yield* roundTrips(20, "after")

          // every piece of garbage goes (the listener scans every 250 ms besides inotify)
          for (let i = 0; i < 600 && Fs.readdirSync(connections).length > 0; i++) yield* Effect.sleep("50 millis")
          assert.deepStrictEqual(Fs.readdirSync(connections), [], "garbage left in connections/")
          assert.isAtMost(openFds(), fds + 2, "file descriptors back to the baseline")
          assert.isBelow(rssMiB() - rss, 64, "memory back near the baseline")
        }))
        // the listener created the directory: closing it leaves nothing behind
        assert.isFalse(Fs.existsSync(dir), "the listener's directory is removed")
        assert.strictEqual(Fs.readFileSync("/etc/passwd", "utf8").length > 0, true)
      }),
    180_000
  )

  // a connection.json was read whole, synchronously: a sparse one of 512 MiB (no room on disk) stalled the
  // listener for seconds and left it a gigabyte larger (a few GiB: killed for want of memory)
  it.live(
    "a huge connection.json (a sparse file of 512 MiB) is garbage: removed without reading it into memory",
    () =>
      Effect.gen(function*() {
        const dir = Path.join(root, "huge")
        const address = `file://${dir}`
        const transport = FileTransport.make()
        const bytes = new TextEncoder()
        const text = new TextDecoder()
        const roundTrip = (tag: string) =>
          Effect.scoped(Effect.gen(function*() {
            const client = yield* transport.dial(address)
            yield* client.send(bytes.encode(tag))
            const answer = yield* client.receive.pipe(
              Effect.timeoutOrElse({ duration: "30 seconds", orElse: () => Effect.die(new Error("not served")) })
            )
            assert.strictEqual(text.decode(answer), tag)
          }))
        yield* Effect.scoped(Effect.gen(function*() {
          const listener = yield* transport.listen(address)
          yield* Effect.forkScoped(
            Transport.serve(listener, (channel) => Effect.forever(Effect.flatMap(channel.receive, channel.send)))
          )
          yield* roundTrip("warm")
          const rss = rssMiB()
          const connections = Path.join(dir, "connections")
          // built aside and renamed into place, as a dialer publishes a connection
          const aside = Path.join(root, "huge-aside")
          const planted = yield* runScript([
            "/usr/bin/python3",
            "-c",
            [
              "import os",
              `os.mkdir(${JSON.stringify(aside)}, 0o700)`,
              `f = os.open(${JSON.stringify(Path.join(aside, "connection.json"))}, os.O_WRONLY | os.O_CREAT, 0o600)`,
              "os.ftruncate(f, 512 << 20)",
              "os.close(f)",
              `os.rename(${JSON.stringify(aside)}, ${JSON.stringify(Path.join(connections, "huge-junk"))})`,
              "print('done', flush=True)"
            ].join("\n")
          ])
          assert.strictEqual(planted, "done")
          for (let i = 0; i < 1000 && Fs.readdirSync(connections).includes("huge-junk"); i++) {
            yield* Effect.sleep("20 millis")
          }
          assert.notInclude(Fs.readdirSync(connections), "huge-junk", "the huge connection is removed")
          yield* roundTrip("after")
          assert.isBelow(rssMiB() - rss, 256, "the listener read the huge file into memory")
        }))
        assert.isFalse(Fs.existsSync(dir), "the listener's directory is removed")
      }),
    60_000
  )

  it.live(
    "connections that end by their peer's close hold no descriptors, though their user never closes them: read to the end, read once, or not read (what they delivered is still there to take)",
    () =>
      Effect.gen(function*() {
        const dir = Path.join(root, "unclosed")
        const address = `file://${dir}`
        const transport = FileTransport.make()
        const bytes = new TextEncoder()
        const text = new TextDecoder()
        // a client that sends one message and closes
        const once = (tag: string) =>
          Effect.scoped(Effect.flatMap(transport.dial(address), (client) => client.send(bytes.encode(tag))))
        const settle = (target: number) =>
          Effect.gen(function*() {
            for (let i = 0; i < 100 && openFds() > target; i++) yield* Effect.sleep("50 millis")
          })
        // one listener's life first: what the process opens once and keeps (inotify) is in the baseline
        yield* Effect.scoped(Effect.andThen(transport.listen(address), once("first")))
        const before = openFds()
        yield* Effect.scoped(Effect.gen(function*() {
          const listener = yield* transport.listen(address)
          let taken = 0
          // a server that reads each connection to its end and never calls `close`
          const drain = (channel: IpcChannel.IpcChannel) =>
            Effect.forever(Effect.andThen(channel.receive, Effect.sync(() => void taken++))).pipe(Effect.ignore)
          const serving = yield* Effect.forkChild(
            Effect.forever(Effect.flatMap(listener.accept, (channel) => Effect.forkChild(drain(channel))))
          )
          for (let i = 0; i < 5; i++) yield* once(`warm${i}`)
          for (let i = 0; i < 100 && taken < 5; i++) yield* Effect.sleep("50 millis")
          yield* settle(0)
          const baseline = openFds()
          for (let i = 0; i < 60; i++) yield* once(`m${i}`)
          for (let i = 0; i < 200 && taken < 65; i++) yield* Effect.sleep("50 millis")
          assert.strictEqual(taken, 65)
          yield* settle(baseline + 2)
          assert.isAtMost(openFds(), baseline + 2, "an ended connection held descriptors")
          yield* Fiber.interrupt(serving)
          // a server that takes the one message it expects, and neither receives again nor closes
          const answered: Array<string> = []
          const single = yield* Effect.forkChild(Effect.forever(Effect.flatMap(
            listener.accept,
            (channel) => Effect.map(channel.receive, (message) => void answered.push(text.decode(message)))
          )))
          for (let i = 0; i < 20; i++) yield* once(`one${i}`)
          for (let i = 0; i < 200 && answered.length < 20; i++) yield* Effect.sleep("50 millis")
          assert.strictEqual(answered.length, 20)
          yield* settle(baseline + 2)
          assert.isAtMost(openFds(), baseline + 2, "a connection read once held descriptors")
          yield* Fiber.interrupt(single)
          // connections accepted and never read: they let go too, and what they delivered is still there to take
          const held: Array<IpcChannel.IpcChannel> = []
          yield* Effect.forkChild(Effect.forever(Effect.map(listener.accept, (channel) => void held.push(channel))))
          for (let i = 0; i < 10; i++) yield* once(`kept${i}`)
          for (let i = 0; i < 200 && held.length < 10; i++) yield* Effect.sleep("50 millis")
          assert.strictEqual(held.length, 10)
          yield* settle(baseline + 2)
          assert.isAtMost(openFds(), baseline + 2, "a connection nobody read held descriptors")
          const kept = yield* Effect.forEach(held, (channel) => Effect.map(channel.receive, (m) => text.decode(m)))
          assert.deepStrictEqual(kept.toSorted(), Array.from({ length: 10 }, (_, i) => `kept${i}`).toSorted())
        }))
        yield* settle(before)
        assert.isAtMost(openFds(), before, "the listener's close let go of every connection")
        assert.isFalse(Fs.existsSync(dir), "the listener's directory is removed")
      }),
    60_000
  )
})
