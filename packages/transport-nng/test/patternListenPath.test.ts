/**
 * What a messaging-pattern socket (`Req`, `Rep`, `PubSub`, `Pipeline`, `Pair`)
 * does with whatever is already at an `ipc://` path it listens on. libnng on its
 * own unlinks anything whose connect is refused (a regular file too); the
 * pattern sockets apply the transport's rule (`listenPath.test.ts`): only an
 * absent path or a stale socket of this user is taken; a regular file, a
 * directory, a symbolic link, a FIFO, another user's socket or another
 * listener's live socket is `AddressInUse`, left exactly as it was. Its socket
 * file is made with `mode` (0600), and removed as its scope closes.
 */
import type * as IpcError from "@effect-ipc/core/IpcError"
import { Pair, Pipeline, PubSub, Rep, Req } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const text = (bytes: Uint8Array) => decoder.decode(bytes)

const NOBODY = 65534
const canSwitch = process.getuid?.() === 0 && ChildProcess.spawnSync("setpriv", ["--version"]).status === 0

const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-nng-pattern-path-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/** Publishes every 10 ms until `done` holds (a subscriber connects in the background). */
const publishUntil = (publish: Effect.Effect<void, IpcError.IpcError>, done: () => boolean) =>
  Effect.gen(function*() {
    while (!done()) {
      yield* publish
      yield* Effect.sleep("10 millis")
    }
  })

/** One kind of pattern socket that can listen. */
interface Kind {
  readonly name: string
  /** Opens this kind of socket listening at `url` (its socket file made with `mode`, when given). */
  readonly listen: (url: string, mode?: number) => Effect.Effect<unknown, IpcError.IpcError, Scope.Scope>
  /** Opens it listening at `url` and a peer dialling it; one message goes between them. */
  readonly roundTrip: (url: string) => Effect.Effect<string, IpcError.IpcError, Scope.Scope>
}

const kinds: ReadonlyArray<Kind> = [
  {
    name: "Req",
    listen: (url, mode) => Req.make({ listen: url, mode }),
    roundTrip: (url) =>
      Effect.gen(function*() {
        const requester = yield* Req.make({ listen: url, timeout: "10 seconds" })
        yield* Rep.serve({ dial: url }, (body) => Effect.succeed(body))
        return text(yield* requester.request(encoder.encode("hello")))
      })
  },
  {
    name: "Rep",
    listen: (url, mode) => Rep.serve({ listen: url, mode }, (body) => Effect.succeed(body)),
    roundTrip: (url) =>
      Effect.gen(function*() {
        yield* Rep.serve({ listen: url }, (body) => Effect.succeed(body))
        const requester = yield* Req.make({ dial: url, timeout: "10 seconds" })
        return text(yield* requester.request(encoder.encode("hello")))
      })
  },
  {
    name: "PubSub.publisher",
    listen: (url, mode) => PubSub.publisher({ listen: url, mode }),
    roundTrip: (url) =>
      Effect.gen(function*() {
        const publisher = yield* PubSub.publisher({ listen: url })
        const subscriber = yield* PubSub.subscriber({ dial: url, topics: [""] })
        return text(
          yield* Effect.raceFirst(
            subscriber.receive,
            Effect.andThen(publishUntil(publisher.publish(encoder.encode("hello")), () => false), Effect.never)
          )
        )
      })
  },
  {
    name: "PubSub.subscriber",
    listen: (url, mode) => PubSub.subscriber({ listen: url, mode }),
    roundTrip: (url) =>
      Effect.gen(function*() {
        const subscriber = yield* PubSub.subscriber({ listen: url, topics: [""] })
        const publisher = yield* PubSub.publisher({ dial: url })
        return text(
          yield* Effect.raceFirst(
            subscriber.receive,
            Effect.andThen(publishUntil(publisher.publish(encoder.encode("hello")), () => false), Effect.never)
          )
        )
      })
  },
  {
    name: "Pipeline.pusher",
    listen: (url, mode) => Pipeline.pusher({ listen: url, mode }),
    roundTrip: (url) =>
      Effect.gen(function*() {
        const pusher = yield* Pipeline.pusher({ listen: url })
        const puller = yield* Pipeline.puller({ dial: url })
        yield* pusher.push(encoder.encode("hello"))
        return text(yield* puller.pull)
      })
  },
  {
    name: "Pipeline.puller",
    listen: (url, mode) => Pipeline.puller({ listen: url, mode }),
    roundTrip: (url) =>
      Effect.gen(function*() {
        const puller = yield* Pipeline.puller({ listen: url })
        const pusher = yield* Pipeline.pusher({ dial: url })
        yield* pusher.push(encoder.encode("hello"))
        return text(yield* puller.pull)
      })
  },
  {
    name: "Pair",
    listen: (url, mode) => Pair.make({ listen: url, mode }),
    roundTrip: (url) =>
      Effect.gen(function*() {
        const listening = yield* Pair.make({ listen: url })
        const dialling = yield* Pair.make({ dial: url })
        yield* dialling.send(encoder.encode("hello"))
        return text(yield* listening.receive)
      })
  }
]

/** Listening at `path` fails `AddressInUse`, its detail including `what`. */
const refusedAt = (kind: Kind, path: string, what: string) =>
  Effect.gen(function*() {
    const error = yield* Effect.flip(Effect.scoped(kind.listen(`ipc://${path}`)))
    assert.strictEqual(error.reason._tag, "AddressInUse", error.detail)
    assert.include(error.detail, what)
  })

/** A Unix socket server at `path` (another program's live listener), closed with the scope. */
const liveServer = (path: string) =>
  Effect.acquireRelease(
    Effect.callback<Net.Server>((resume) => {
      const server = Net.createServer((connection) => connection.end())
      server.listen(path, () => resume(Effect.succeed(server)))
    }),
    (server) => Effect.callback<void>((resume) => void server.close(() => resume(Effect.void)))
  )

/** Connects to the Unix socket at `path`: true when a listener accepts. */
const accepts = (path: string) =>
  Effect.callback<boolean>((resume) => {
    const socket = Net.connect(path)
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed(true))
    })
    socket.once("error", () => resume(Effect.succeed(false)))
  })

for (const kind of kinds) {
  describe(`${kind.name} listening on ipc:// leaves what is at its path alone`, () => {
    it.live("a regular file: AddressInUse, its content unchanged", () =>
      Effect.gen(function*() {
        const path = Path.join(yield* tempDir, "precious.ipc")
        Fs.writeFileSync(path, "precious data\n")
        yield* refusedAt(kind, path, "regular file")
        assert.strictEqual(Fs.readFileSync(path, "utf8"), "precious data\n")
      }).pipe(Effect.scoped))

    it.live("a directory: AddressInUse, the directory and its content untouched", () =>
      Effect.gen(function*() {
        const path = Path.join(yield* tempDir, "dir.ipc")
        Fs.mkdirSync(path)
        Fs.writeFileSync(Path.join(path, "inside"), "x")
        yield* refusedAt(kind, path, "directory")
        assert.strictEqual(Fs.readFileSync(Path.join(path, "inside"), "utf8"), "x")
      }).pipe(Effect.scoped))

    it.live("a symbolic link: AddressInUse, the link and its target untouched", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const target = Path.join(dir, "target.txt")
        const path = Path.join(dir, "link.ipc")
        Fs.writeFileSync(target, "kept\n")
        Fs.symlinkSync(target, path)
        yield* refusedAt(kind, path, "symbolic link")
        assert.strictEqual(Fs.readlinkSync(path), target)
        assert.strictEqual(Fs.readFileSync(target, "utf8"), "kept\n")
      }).pipe(Effect.scoped))

    it.live("a FIFO: AddressInUse, the FIFO untouched", () =>
      Effect.gen(function*() {
        const path = Path.join(yield* tempDir, "fifo.ipc")
        assert.strictEqual(ChildProcess.spawnSync("mkfifo", [path]).status, 0)
        const before = Fs.lstatSync(path)
        yield* refusedAt(kind, path, "FIFO")
        const after = Fs.lstatSync(path)
        assert.isTrue(after.isFIFO())
        assert.strictEqual(after.ino, before.ino)
      }).pipe(Effect.scoped))

    it.live("another listener's live socket: AddressInUse, that listener still reachable", () =>
      Effect.gen(function*() {
        const path = Path.join(yield* tempDir, "live.ipc")
        const server = yield* liveServer(path)
        const before = Fs.lstatSync(path)
        yield* refusedAt(kind, path, "live")
        assert.isTrue(server.listening)
        assert.strictEqual(Fs.lstatSync(path).ino, before.ino)
        assert.isTrue(yield* accepts(path))
      }).pipe(Effect.scoped))

    it.live("its socket file is made with mode 0600 (or its mode), and removed as its scope closes", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        for (const mode of [undefined, 0o660, 0o666]) {
          const path = Path.join(dir, `mode-${mode ?? "default"}.ipc`)
          const made = yield* Effect.scoped(Effect.andThen(
            kind.listen(`ipc://${path}`, mode),
            Effect.sync(() => Fs.lstatSync(path).mode & 0o777)
          ))
          assert.strictEqual(made.toString(8), (mode ?? 0o600).toString(8), `mode ${mode}`)
          assert.isFalse(Fs.existsSync(path), `mode ${mode}: left behind`)
        }
      }).pipe(Effect.scoped))

    it.live.skipIf(!canSwitch)(
      "another user's stale socket: AddressInUse, the socket untouched",
      () =>
        Effect.gen(function*() {
          const dir = yield* tempDir
          Fs.chmodSync(dir, 0o777)
          const path = Path.join(dir, "theirs.ipc")
          // a socket file of uid 65534, bound and never listened on: connecting is refused, as for a stale one
          const made = ChildProcess.spawnSync("setpriv", [
            `--reuid=${NOBODY}`,
            `--regid=${NOBODY}`,
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])",
            path
          ])
          assert.strictEqual(made.status, 0, String(made.stderr))
          const before = Fs.lstatSync(path)
          assert.strictEqual(before.uid, NOBODY)
          yield* refusedAt(kind, path, `owned by uid ${NOBODY}`)
          const after = Fs.lstatSync(path)
          assert.isTrue(after.isSocket())
          assert.strictEqual(after.ino, before.ino)
        }).pipe(Effect.scoped)
    )

    it.live(
      "a stale socket of ours (connect refused) is replaced, and a peer reaches the new listener",
      () =>
        Effect.gen(function*() {
          const path = Path.join(yield* tempDir, "stale.ipc")
          // a socket file bound and never listened on: connecting is refused
          const made = ChildProcess.spawnSync("python3", [
            "-c",
            "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])",
            path
          ])
          assert.strictEqual(made.status, 0)
          assert.isFalse(yield* accepts(path))
          assert.strictEqual(yield* kind.roundTrip(`ipc://${path}`), "hello")
        }).pipe(Effect.scoped),
      30_000
    )
  })
}
