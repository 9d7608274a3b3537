/**
 * `shm://` and resource links against another user (uid 65534, run through
 * `setpriv`) and against hostile peers of this user: squatted names, peers
 * of another user on either side, planted segments, forged rings (right
 * magic, wrong owner, wrong creator, not sealed), and a peer that tries to
 * shrink the memory we map.
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as UnixSocket from "@effect-ipc/transport-pipe/UnixSocket"
import * as Shm from "@effect-ipc/transport-shm"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Header from "../src/internal/header.ts"
import * as Ring from "../src/internal/ring.ts"
import * as Segments from "../src/internal/segments.ts"
import { AS_NOBODY, type Child, leftovers, NOBODY, spawnChild, spawnChildWith } from "./helpers.ts"

const isRoot = process.getuid?.() === 0
const attackerScript = Path.join(import.meta.dirname, "fixtures/attacker.py")
const prefix = `sec-test-${process.pid}`
let n = 0
const fresh = () => `${prefix}-${n++}`

/** The attacker's output so far, and a way to wait for a line. */
interface Attacker {
  readonly pid: number
  readonly said: string
  readonly lines: () => ReadonlyArray<string>
  readonly waitFor: (line: string) => Effect.Effect<void>
}

/** Runs `attacker.py MODE ...ARGS` as uid 65534; waits for its `ready` line; killed when the scope closes. */
const attacker = (...args: ReadonlyArray<string>): Effect.Effect<Attacker, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<{ child: ChildProcess.ChildProcess; peer: Attacker }, Error>((resume) => {
      const child = ChildProcess.spawn(
        AS_NOBODY[0],
        [...AS_NOBODY.slice(1), "/usr/bin/python3", attackerScript, ...args],
        { stdio: ["ignore", "pipe", "pipe"] }
      )
      let out = ""
      let err = ""
      child.stderr!.on("data", (chunk: Buffer) => void (err += chunk.toString()))
      const lines = () => out.split("\n").filter((l) => l.length > 0)
      const waitFor = (line: string) =>
        Effect.gen(function*() {
          const deadline = Date.now() + 10_000
          while (!lines().includes(line) && Date.now() < deadline) yield* Effect.sleep("10 millis")
          assert.include(lines(), line, `the attacker said: ${out} ${err}`)
        })
      child.stdout!.on("data", (chunk: Buffer) => {
        out += chunk.toString()
        const ready = /^ready ?(.*)$/m.exec(out)
        if (ready !== null) {
          resume(Effect.succeed({ child, peer: { pid: child.pid!, said: ready[1]!, lines, waitFor } }))
        }
      })
      child.once("exit", (code) => resume(Effect.fail(new Error(`attacker ${args[0]} exited (${code}): ${err}`))))
    }).pipe(Effect.timeout("20 seconds")),
    ({ child }) =>
      Effect.callback<void>((resume) => {
        if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
        child.once("exit", () => resume(Effect.void))
        child.kill("SIGKILL")
      })
  ).pipe(Effect.map(({ peer }) => peer))

/**
 * Waits until `child` has printed `text` (20 s at most). Its whole output counts, from its start: a
 * line may come in the same chunk as its "ready".
 */
const printed = (child: Child, text: string): Effect.Effect<void, Error> =>
  Effect.gen(function*() {
    const deadline = Date.now() + 20_000
    while (!child.output().includes(text)) {
      if (Date.now() > deadline) {
        return yield* Effect.fail(new Error(`the child did not print "${text}" (printed: ${child.output()})`))
      }
      yield* Effect.sleep("10 millis")
    }
  })

/** A fresh directory under /tmp, removed when the scope closes; `owner` and `mode` as asked. */
const tempDir = (owner: number, mode: number) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "shm-sec-"))
      Fs.chownSync(dir, owner, owner)
      Fs.chmodSync(dir, mode)
      return dir
    }),
    (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
  )

/** The first 4096 bytes of a valid header of `kind` (made by this process), written to a file the attacker can read. */
const headerFile = (dir: string, kind: Header.Kind, payloadLength: number, capacity?: number) => {
  const buffer = new ArrayBuffer(Header.HEADER_SIZE)
  const header = Header.view(buffer)
  Header.initialise(header, { kind, ttlMillis: 0, payloadLength, createdAt: Date.now() })
  if (capacity !== undefined) Ring.initialise(header.words, capacity)
  Header.publish(header)
  const file = Path.join(dir, `header-${n++}`)
  Fs.writeFileSync(file, new Uint8Array(buffer), { mode: 0o644 })
  return file
}

/** Sends a hand-made hello naming `ring` to the listener of `shm://name`; returns its refusal (or `accepted`). */
const forgeHello = (name: string, ring: string, directory?: string) =>
  Effect.gen(function*() {
    const control = yield* UnixSocket.make().dial(yield* Shm.ShmTransport.controlAddress(name, directory))
    yield* control.send(new TextEncoder().encode(JSON.stringify({ effectIpcShm: 1, ring, pid: process.pid })))
    const welcome = JSON.parse(new TextDecoder().decode(yield* control.receive)) as { ring?: string; error?: string }
    yield* control.close
    return welcome.error ?? "accepted"
  })

/** What the fixture's `where` said: the default rendezvous directory and its mode; its socket file was there, and went. */
const rendezvousSaid = (said: string) => {
  const [directory, mode, socket] = said.split(" ")
  assert.strictEqual(Path.dirname(socket!), directory, said)
  assert.isFalse(Fs.existsSync(socket!), `the closed listener's socket file is gone: ${said}`)
  return { directory, mode }
}

describe.skipIf(!isRoot)("shm:// against another user", () => {
  it.live(
    "a squatter cannot take an shm:// name: listen and dial still work, and no client ever reaches it",
    () =>
      Effect.gen(function*() {
        const name = fresh()
        const uid = process.getuid!()
        // the old rendezvous (a predictable abstract name), and the fallback directory, taken first by uid 65534
        const squatter = yield* attacker("squat", `effect-ipc-shm.${uid}.${name}`)
        const tmpFallback = Path.join(Os.tmpdir(), `effect-ipc-shm-${uid}`)
        const plantedFallback = !Fs.existsSync(tmpFallback)
        if (plantedFallback) {
          Fs.mkdirSync(tmpFallback, { mode: 0o777 })
          Fs.chownSync(tmpFallback, NOBODY, NOBODY)
        }
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => plantedFallback && Fs.rmSync(tmpFallback, { recursive: true, force: true }))
        )
        const transport = Shm.ShmTransport.make()
        const listener = yield* transport.listen(`shm://${name}`)
        const client = yield* transport.dial(`shm://${name}`)
        const server = yield* listener.accept
        yield* client.send(new Uint8Array([1, 2, 3]))
        assert.deepStrictEqual([...(yield* server.receive)], [1, 2, 3])
        assert.strictEqual(server.peer.pid, process.pid)
        // the rendezvous directory is this user's alone
        const dir = Fs.lstatSync(Shm.ShmTransport.defaultDirectory())
        assert.deepStrictEqual([dir.uid, dir.mode & 0o777], [uid, 0o700])
        assert.deepStrictEqual(squatter.lines(), ["ready"], "nobody ever connected to the squatter")
      }).pipe(Effect.scoped),
    30_000
  )

  // README, "Meeting": the rendezvous directory is `~/.effect-ipc-shm` (the home directory from the password
  // database, when it is this user's and not writable by others), else `$XDG_RUNTIME_DIR/effect-ipc-shm`, else
  // `<tmp>/effect-ipc-shm-<uid>`, created 0700. Uid 65534's home in the password database is not its own
  // (`/nonexistent`), so its processes show the two fallbacks, and that `$HOME` is not what is read.
  it.live(
    "the default rendezvous directory: the password database's home (not $HOME), else $XDG_RUNTIME_DIR, else <tmp>",
    () =>
      Effect.gen(function*() {
        const home = yield* tempDir(NOBODY, 0o700)
        const runtime = yield* tempDir(NOBODY, 0o700)
        const tmp = yield* tempDir(NOBODY, 0o700)
        const asNobody = (...env: ReadonlyArray<string>) => ({
          wrap: [...AS_NOBODY, "env", "-u", "XDG_RUNTIME_DIR", `HOME=${home}`, `TMPDIR=${tmp}`, ...env]
        })
        const withRuntime = yield* spawnChildWith(asNobody(`XDG_RUNTIME_DIR=${runtime}`), "where", `shm://${fresh()}`)
        assert.deepStrictEqual(rendezvousSaid(withRuntime.said), {
          directory: Path.join(runtime, "effect-ipc-shm"),
          mode: "700"
        })
        const withoutRuntime = yield* spawnChildWith(asNobody(), "where", `shm://${fresh()}`)
        assert.deepStrictEqual(rendezvousSaid(withoutRuntime.said), {
          directory: Path.join(tmp, `effect-ipc-shm-${NOBODY}`),
          mode: "700"
        })
        assert.deepStrictEqual(Fs.readdirSync(home), [], "nothing is made under $HOME")
        // this user's home from the password database, whatever $HOME and $XDG_RUNTIME_DIR say
        const ours = yield* spawnChildWith(
          { wrap: ["env", `HOME=${home}`, `XDG_RUNTIME_DIR=${runtime}`] },
          "where",
          `shm://${fresh()}`
        )
        assert.strictEqual(rendezvousSaid(ours.said).directory, Path.join(Os.userInfo().homedir, ".effect-ipc-shm"))
      }).pipe(Effect.scoped),
    60_000
  )

  it.live("a planted rendezvous directory is refused, naming its owner; nothing is changed", () =>
    Effect.gen(function*() {
      const planted = yield* tempDir(NOBODY, 0o777)
      const error = yield* Effect.flip(Shm.ShmTransport.make({ directory: planted }).listen(`shm://${fresh()}`))
      assert.strictEqual(error.reason._tag, "PermissionDenied")
      assert.include(error.detail, `belongs to uid ${NOBODY}`)
      const open = yield* tempDir(process.getuid!(), 0o755)
      const loose = yield* Effect.flip(Shm.ShmTransport.make({ directory: open }).dial(`shm://${fresh()}`))
      assert.strictEqual(loose.reason._tag, "PermissionDenied")
      assert.include(loose.detail, "open to other users (mode 755")
      assert.strictEqual(Fs.statSync(open).mode & 0o777, 0o755)
      const link = Path.join(open, "link")
      Fs.symlinkSync(planted, link)
      const symlink = yield* Effect.flip(Shm.ShmTransport.make({ directory: link }).dial(`shm://${fresh()}`))
      assert.include(symlink.detail, "not a directory")
      // a link to a private directory of ours is a link all the same, however the path ends (lstat of "link/"
      // follows it)
      const mine = Path.join(open, "mine")
      Fs.symlinkSync(yield* tempDir(process.getuid!(), 0o700), mine)
      for (const directory of [mine, `${mine}/`, `${mine}//`, `${mine}/.`]) {
        const through = yield* Effect.flip(Shm.ShmTransport.make({ directory }).listen(`shm://${fresh()}`))
        assert.strictEqual(through.reason._tag, "PermissionDenied", directory)
        assert.include(through.detail, "not a directory", directory)
        // and the collector, which sweeps the listeners' sockets there
        const swept = yield* Effect.flip(Shm.SegmentGc.collect({ directory, prefix: fresh() }))
        assert.strictEqual(swept.reason._tag, "PermissionDenied", directory)
      }
    }).pipe(Effect.scoped))

  it.live(
    "dial refuses a listener of another user with PeerRejected before writing a byte",
    () =>
      Effect.gen(function*() {
        const name = fresh()
        const mine = yield* tempDir(process.getuid!(), 0o700)
        const theirs = yield* tempDir(NOBODY, 0o755)
        const socket = Path.join(theirs, "s.sock")
        const impostor = yield* attacker("listen", socket)
        // a listener of another user where ours would be (as if placed there, or reached through a shared directory)
        Fs.linkSync(socket, Shm.ShmTransport.controlPath(name, mine))
        const error = yield* Effect.flip(Shm.ShmTransport.make({ directory: mine }).dial(`shm://${name}`))
        assert.strictEqual(error.reason._tag, "PeerRejected")
        assert.include(error.detail, `uid ${NOBODY}`)
        yield* impostor.waitFor("conn")
        yield* Effect.sleep("200 millis")
        assert.notInclude(impostor.lines().join("\n"), "bytes", "not one byte reached the impostor")
      }).pipe(Effect.scoped),
    30_000
  )

  it.live("listen refuses a dialer of another user, and keeps serving its own", () =>
    Effect.gen(function*() {
      const name = fresh()
      const mine = yield* tempDir(process.getuid!(), 0o700)
      const theirs = yield* tempDir(NOBODY, 0o755)
      const transport = Shm.ShmTransport.make({ directory: mine })
      const listener = yield* transport.listen(`shm://${name}`)
      // let uid 65534 reach our socket (as a mistaken mode or a shared directory would)
      const reachable = Path.join(theirs, "s.sock")
      Fs.linkSync(Shm.ShmTransport.controlPath(name, mine), reachable)
      Fs.chmodSync(reachable, 0o666)
      const intruder = yield* attacker("dial", reachable)
      assert.strictEqual(intruder.said, "")
      yield* intruder.waitFor("closed")
      // cut off at once: its hello is not even read (a broken pipe), or it reads nothing back
      const answered = intruder.lines().filter((line) => /^reply [1-9]/.test(line))
      assert.deepStrictEqual(answered, [], "the listener answered nothing")
      const client = yield* transport.dial(`shm://${name}`)
      const server = yield* listener.accept
      assert.strictEqual(server.peer.pid, process.pid, "the first channel accepted is our own client's")
      yield* client.send(new Uint8Array([9]))
      assert.deepStrictEqual([...(yield* server.receive)], [9])
    }).pipe(Effect.scoped), 30_000)

  it.live(
    "a segment another user planted under a link's name is refused on its owner, not used",
    () =>
      Effect.gen(function*() {
        const files = yield* tempDir(process.getuid!(), 0o755)
        const name = fresh()
        // a well-formed link header: the magic, version and kind are right
        yield* attacker("segment", name, headerFile(files, Header.Kind.link, 100), String(Header.HEADER_SIZE + 100))
        yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(`/dev/shm/${name}`, { force: true })))
        const acquired = yield* Effect.flip(Effect.scoped(Shm.ResourceLink.acquire(name)))
        assert.strictEqual(acquired.reason._tag, "PermissionDenied")
        assert.include(acquired.detail, `belongs to uid ${NOBODY}`)
        const created = yield* Effect.flip(Effect.scoped(Shm.ResourceLink.create(name, 100)))
        assert.strictEqual(created.reason._tag, "AlreadyExists")
        assert.include(created.detail, `belongs to uid ${NOBODY}`)
        assert.strictEqual((yield* Effect.flip(Shm.ResourceLink.info(name))).reason._tag, "PermissionDenied")
        // the collector neither lists nor removes another user's segment
        const report = yield* Shm.SegmentGc.collect({ prefix: name })
        assert.deepStrictEqual([report.removed, report.kept, report.others], [[], 0, 1])
        assert.isTrue(Fs.existsSync(`/dev/shm/${name}`))
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "a symbolic link or a directory another user planted under a link's name is PermissionDenied naming what and whose, never followed",
    () =>
      Effect.gen(function*() {
        const target = Path.join(yield* tempDir(process.getuid!(), 0o755), "target")
        Fs.writeFileSync(target, "not to be touched")
        for (const [what, command] of [["symbolic link", ["ln", "-s", target]], ["directory", ["mkdir"]]] as const) {
          const name = fresh()
          const planted = ChildProcess.spawnSync(AS_NOBODY[0], [...AS_NOBODY.slice(1), ...command, `/dev/shm/${name}`])
          assert.strictEqual(planted.status, 0, String(planted.stderr))
          yield* Effect.addFinalizer(() =>
            Effect.sync(() => Fs.rmSync(`/dev/shm/${name}`, { recursive: true, force: true }))
          )
          const attempts: ReadonlyArray<Effect.Effect<unknown, IpcError.IpcError, Scope.Scope>> = [
            Shm.ResourceLink.acquire(name),
            Shm.ResourceLink.info(name)
          ]
          for (const attempt of attempts) {
            const refused = yield* Effect.flip(Effect.scoped(attempt))
            assert.strictEqual(refused.reason._tag, "PermissionDenied", `${what}: ${refused.detail}`)
            assert.include(refused.detail, `is a ${what}`)
            assert.include(refused.detail, `owned by uid ${NOBODY}`)
          }
          const created = yield* Effect.flip(Effect.scoped(Shm.ResourceLink.create(name, 100)))
          assert.strictEqual(created.reason._tag, "AlreadyExists", `${what}: ${created.detail}`)
        }
        assert.strictEqual(Fs.readFileSync(target, "utf8"), "not to be touched")
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "a link of ours that others may write (an old version's mode, or a chmod) is not mapped: another user's shrink cannot kill us",
    () =>
      Effect.gen(function*() {
        const name = fresh()
        yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(`/dev/shm/${name}`, { force: true })))
        const size = 1 << 20
        yield* Effect.scoped(Shm.ResourceLink.create(name, size, { ttl: "1 minute" }))
        Fs.chmodSync(`/dev/shm/${name}`, 0o666)
        for (
          const open of [
            Shm.ResourceLink.acquire(name),
            Shm.ResourceLink.info(name),
            Shm.Segment.open(name)
          ] as ReadonlyArray<Effect.Effect<unknown, IpcError.IpcError, Scope.Scope>>
        ) {
          const refused = yield* Effect.flip(Effect.scoped(open))
          assert.strictEqual(refused.reason._tag, "PermissionDenied")
          assert.include(refused.detail, "lets other users write (mode 0o666)")
        }
        // the collector neither maps nor removes it (it is not sure what it is)
        const report = yield* Shm.SegmentGc.collect({ prefix: name })
        assert.deepStrictEqual([report.removed, report.others], [[], 1])
        // what the refusal saves us from: uid 65534 can shrink it
        const shrunk = ChildProcess.spawnSync(AS_NOBODY[0], [
          ...AS_NOBODY.slice(1),
          "truncate",
          "--no-create",
          "-s",
          "0",
          `/dev/shm/${name}`
        ])
        assert.strictEqual(shrunk.status, 0, String(shrunk.stderr))
        assert.strictEqual(Fs.statSync(`/dev/shm/${name}`).size, 0)
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "a ring of another user's making is refused on its owner, though its header is valid",
    () =>
      Effect.gen(function*() {
        const name = fresh()
        const files = yield* tempDir(process.getuid!(), 0o755)
        yield* Shm.ShmTransport.make().listen(`shm://${name}`)
        const capacity = 64 * 1024
        const forger = yield* attacker(
          "memfd",
          headerFile(files, Header.Kind.ring, capacity, capacity),
          String(Header.HEADER_SIZE + capacity)
        )
        const [pid, fd, ino] = forger.said.split(" ")
        // we (the peer) hold the other user's sealed ring, and offer it as ours
        const held = Fs.openSync(`/proc/${pid}/fd/${fd}`, "r+")
        yield* Effect.addFinalizer(() => Effect.sync(() => Fs.closeSync(held)))
        const refusal = yield* forgeHello(name, `fd:${held}:${ino}`)
        assert.include(refusal, `belongs to uid ${NOBODY}`)
      }).pipe(Effect.scoped),
    30_000
  )
})

describe.skipIf(!isRoot)("shm:// with a process that gave up root's privileges (seteuid to uid 65534)", () => {
  // such a process is not dumpable: the kernel lets no other process open its /proc/<pid>/fd entries, so a
  // client of its new user cannot map its ring; the error says why and what to do (it said only EACCES)
  it.live(
    "a client of that user fails PermissionDenied naming the cause; the same client reaches a dumpable server",
    () =>
      Effect.gen(function*() {
        const asNobody = {
          wrap: [
            ...AS_NOBODY,
            "env",
            "-u",
            "TMPDIR",
            "-u",
            "XDG_RUNTIME_DIR"
          ]
        }
        const droppedName = fresh()
        const plainName = fresh()
        // the killed listeners' socket files in that user's rendezvous directory (TMPDIR unset: /tmp) are not left behind
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            for (const name of [droppedName, plainName]) {
              Fs.rmSync(`/tmp/effect-ipc-shm-${NOBODY}/${name}.sock`, { force: true })
            }
          })
        )
        const dropped = `shm://${droppedName}`
        yield* spawnChild("euid-echo", dropped, "0 millis")
        const refused = yield* spawnChildWith(asNobody, "dial-once", dropped)
        assert.match(
          refused.said,
          /^PermissionDenied: cannot open the peer's segment fd:\d+:\d+: that process is not dumpable/
        )
        assert.include(refused.said, "prctl(PR_SET_DUMPABLE, 1)")
        const plain = `shm://${plainName}`
        yield* spawnChildWith(asNobody, "echo", plain, "0 millis")
        assert.strictEqual((yield* spawnChildWith(asNobody, "dial-once", plain)).said, "ok 7")
      }).pipe(Effect.scoped),
    60_000
  )
})

/** A listener at a fresh shm:// name, and a sealed ring of 64 KiB made here (its header to set) to offer it. */
const listenerAndRing = Effect.gen(function*() {
  const name = fresh()
  yield* Shm.ShmTransport.make().listen(`shm://${name}`)
  const capacity = 64 * 1024
  const ring = yield* Effect.acquireRelease(
    Segments.createOutgoing("r", Header.HEADER_SIZE + capacity),
    (r) => Effect.sync(() => (r.handedOver(), r.mapping.release()))
  )
  return { header: Ring.initialiseSegment(ring.mapping.buffer, capacity), name, ring }
})

/** This process's virtual memory size in bytes (`VmSize`). */
const virtualSize = (): number =>
  Number(/VmSize:\s+(\d+) kB/.exec(Fs.readFileSync("/proc/self/status", "utf8"))![1]) * 1024

describe("shm:// against hostile peers of this user", () => {
  // (the inode check removed): a hello naming one descriptor with another file's inode was taken at its word
  it.live(
    "a ring named by a descriptor whose file is not the inode the hello names is refused",
    () =>
      Effect.gen(function*() {
        const { header, name, ring } = yield* listenerAndRing
        header.words[4] = process.pid
        const [scheme, fd, ino] = ring.token.split(":")
        const refusal = yield* forgeHello(name, `${scheme}:${fd}:${Number(ino) + 1}`)
        assert.include(refusal, "is not the segment it named")
        // named truly, the same ring is accepted
        assert.strictEqual(yield* forgeHello(name, ring.token), "accepted")
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "a ring whose creator is not the peer is refused by the creator check (magic, owner and seals are right)",
    () =>
      Effect.gen(function*() {
        const { header, name, ring } = yield* listenerAndRing
        header.words[4] = process.ppid // the creator's pid: another process
        const refusal = yield* forgeHello(name, ring.token)
        assert.include(refusal, `was made by pid ${process.ppid}, not by the peer (pid ${process.pid})`)
        // the same ring with its true creator is accepted
        header.words[4] = process.pid
        assert.strictEqual(yield* forgeHello(name, ring.token), "accepted")
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "a peer cannot shrink the ring we map (sealed); one that offers an unsealed ring is refused, typed",
    () =>
      Effect.gen(function*() {
        const where = `shm://${fresh()}`
        const listener = yield* Shm.ShmTransport.make().listen(where)
        const sealed = yield* spawnChild("shrink", where, "sealed")
        const channel = yield* listener.accept
        assert.match(sealed.said, /^shrink: refused \(EPERM\)$/)
        const got = [yield* channel.receive, yield* channel.receive].map((b) => new TextDecoder().decode(b))
        assert.deepStrictEqual(got, ["before", "after"])
        // a named segment cannot be sealed: never mapped, the handshake fails with a reason
        const unsealed = yield* spawnChild("shrink", where, "named")
        assert.match(unsealed.said, /^refused: .*is not sealed against resizing/)
        yield* unsealed.kill
        // (a ring in a sparse file of a terabyte was mapped whole: a few such peers took the address space)
        const before = virtualSize()
        const huge = yield* spawnChild("shrink", where, "huge")
        assert.match(huge.said, /^refused: .*holds 1099511627776 bytes, more than any ring/)
        assert.isBelow(virtualSize() - before, 2 ** 36, "never mapped")
        yield* huge.kill
        yield* sealed.kill
        // we are alive, and the listener still serves
        const client = yield* Shm.ShmTransport.make().dial(where)
        const server = yield* listener.accept
        yield* client.send(new Uint8Array([7]))
        assert.deepStrictEqual([...(yield* server.receive)], [7])
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "a large message's side segment is checked before it is read: not sealed, truncated or tiny is Protocol",
    () =>
      Effect.gen(function*() {
        const where = `shm://${fresh()}`
        const listener = yield* Shm.ShmTransport.make().listen(where)
        // well-formed: read whole (so the refusals below are for the reasons they name)
        const valid = yield* spawnChild("side", where, "valid")
        const channel = yield* listener.accept
        const message = yield* channel.receive
        assert.deepStrictEqual([message.byteLength, message[0], message[999]], [1000, 0x42, 0x42])
        yield* valid.kill
        for (
          const [how, detail] of [
            ["unsealed", "is not sealed against resizing"],
            ["truncated", "truncated"],
            ["tiny", "truncated"], // smaller than a header: a typed Protocol, not a RangeError reading it
            // (mapped whole, however large, and over the receiver's maxMessageSize: handed to `receive`)
            ["huge", "exceeds the limit of 268435456"]
          ]
        ) {
          const peer = yield* spawnChild("side", where, how!)
          const hostile = yield* listener.accept
          const error = yield* Effect.flip(hostile.receive)
          assert.strictEqual(error.reason._tag, how === "huge" ? "FrameTooLarge" : "Protocol", error.message)
          assert.include(error.detail, detail!)
          // and the link is dropped (by the channel's own fiber, in this scope), though the channel is not closed
          // (the doorbell that came with the record may have had the link dropped already)
          yield* printed(peer, "dropped")
          yield* peer.kill
        }
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "a large message's segment that fails to open after the peer's socket went: ConnectionLost, saying why it failed",
    () =>
      Effect.gen(function*() {
        const where = `shm://${fresh()}`
        const listener = yield* Shm.ShmTransport.make().listen(where)
        for (
          const [how, reason, detail] of [
            // its descriptor closed before the listener reads the record: not there to open
            ["closed", "NotFound", "cannot open the peer's segment"],
            ["unsealed", "Protocol", "is not sealed against resizing"],
            ["truncated", "Protocol", "truncated"]
          ] as const
        ) {
          // the peer writes the record and closes its socket (no doorbell): the listener finds it draining the ring
          const peer = yield* spawnChild("side", where, how, "hangup")
          const channel = yield* listener.accept
          // nothing asks for a message until the channel has ended on its own: it saw the socket go first
          yield* channel.closed
          const error = yield* Effect.flip(channel.receive)
          // a lost peer is ConnectionLost at once, as every transport's; why its message could not be taken is
          // said too (it was dropped), and the open's own error is the cause
          assert.strictEqual(error.reason._tag, "ConnectionLost", error.message)
          assert.include(error.detail, detail, error.message)
          const cause: unknown = error.cause
          assert.isTrue(IpcError.isIpcError(cause), error.message)
          if (IpcError.isIpcError(cause)) assert.strictEqual(cause.reason._tag, reason, cause.message)
          yield* peer.kill
        }
      }).pipe(Effect.scoped),
    60_000
  )

  it("leaves nothing in /dev/shm", () => {
    assert.deepStrictEqual(leftovers(prefix), [])
  })
})
