/**
 * The conformance suite: one set of tests that every transport runs
 * unchanged, as `Conformance.suite(subject)` in its own test file. It checks
 * ordering and loss over 100k messages (through an echo and over one leg
 * alone), message sizes from 0 B to 16 MiB (one leg alone too where it can),
 * that a message is the sender's bytes at send time (the sender overwrites
 * its buffer once `send` returns, the receiver writes over what it got),
 * back-pressure, 1000 concurrent RPC calls, a peer killed mid-stream, scoped
 * clean-up of OS resources, RPC reconnect after a server restart, and that
 * bad frames cost only the offending connection. Cross-process cases run the
 * peer in a real child process (`peer.ts` from the sources, `peer.js` from the
 * build, beside this module).
 *
 * Every case is registered for every transport. What a scheme lacks is the
 * transport's to say, in its descriptor (`TransportDescriptor.lacks`). A case
 * that needs a `Capability` the scheme lacks is registered as skipped, its
 * title ending `— not applicable: <capability> (<why>)`, so the run shows and
 * counts it. Where both ends cannot live in the test process (no `in-process`:
 * child-process pipes), the cases run against the suite's peer in the child
 * instead.
 *
 * @since 0.1.0
 */
import * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as IpcRpc from "@effect-ipc/core/IpcRpc"
import type * as Registry from "@effect-ipc/core/Registry"
import * as Transport from "@effect-ipc/core/Transport"
import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as RpcClient from "effect/rpc/RpcClient"
import * as RpcServer from "effect/rpc/RpcServer"
import * as Schedule from "effect/Schedule"
import * as Scheduler from "effect/Scheduler"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { ConformanceApi, ConformanceHandlers, Refused } from "./ConformanceApi.ts"
import * as Progress from "./Progress.ts"

/** A raw byte connection to a listener, for feeding it malformed input. */
export interface RawConnection {
  /** Writes raw bytes to the listener, bypassing the frame format. */
  readonly write: (bytes: Uint8Array) => Effect.Effect<void>
  /** Completes when the listener has dropped this connection. */
  readonly dropped: Effect.Effect<void>
}

/**
 * What a scheme may lack, as its descriptor's `lacks` lists it. `peer-process`:
 * a peer in another process (not `memory://`, `nng+inproc://`); `raw-stream`: a
 * byte stream the suite can write bad frames on (`raw`, or child-process
 * pipes); `shared-address`: one address that clients meet at and a second
 * listener collides with (not child-process pipes); `multi-peer`: a listener
 * that serves several peers at once (not FIFOs); `in-process`: both ends in the
 * test process (not child-process pipes, whose cases then run against the
 * suite's peer in a child).
 */
export type Capability = keyof NonNullable<NonNullable<Registry.TransportDescriptor["lacks"]>[string]>

/** A transport under test. */
export interface Subject {
  /** Name shown in the test titles. */
  readonly name: string
  /**
   * The transport, as its package describes it to the registry; its `lacks`
   * says which cases apply to `scheme`.
   */
  readonly descriptor: Registry.TransportDescriptor
  /** The scheme under test (default: the descriptor's first). */
  readonly scheme?: string | undefined
  /** A fresh address for one test. */
  readonly address: () => string
  /**
   * Where a child process finds the descriptor: a module specifier the peer
   * script can import (a package name, an absolute path or a `file:` URL) and
   * the name of its export. Needed unless the scheme lacks `peer-process`. The
   * suite starts the peer and it listens or dials at an address; where the
   * scheme lacks `in-process`, dialling `child:<command line>` starts the
   * peer, which serves its parent (child-process pipes).
   */
  readonly peer?: {
    readonly module: string
    readonly export: string
  } | undefined
  /** Opens a raw byte connection to `address` (byte-stream transports: needed unless the scheme lacks `raw-stream`). */
  readonly raw?: ((address: string) => Effect.Effect<RawConnection, IpcError.IpcError, Scope.Scope>) | undefined
  /** The largest frame the transport accepts by default. */
  readonly maxFrameSize: number
  /** Paths the transport leaves in the file system for `address` while in use (all must be gone after close). */
  readonly residue?: ((address: string) => ReadonlyArray<string>) | undefined
  /** The transport's channels send a batch as one operation (`IpcChannel.sendAll` finds `channel.sendAll`): asserted. */
  readonly sendsBatches?: boolean | undefined
  /** How long a peer process may take to start (default 20 s; Node for Windows under Wine loads slowly). */
  readonly peerStartTimeout?: Duration.Input | undefined
}

// this module runs from the sources (`.ts`, with the workspace's source condition) or from the build (`.js`,
// plain Node): its peer scripts sit beside it with the same extension
const fromSource = import.meta.url.endsWith(".ts")
const extension = fromSource ? ".ts" : ".js"
const peerScript = fileURLToPath(new URL(`./peer${extension}`, import.meta.url))
const rawPeerScript = fileURLToPath(new URL(`./rawPeer${extension}`, import.meta.url))
const nodeFlags: ReadonlyArray<string> = [
  ...(fromSource ? ["--conditions=@effect-ipc/source"] : []),
  "--disable-warning=ExperimentalWarning"
]

type Role = "echo-server" | "rpc-server" | "streamer" | "sink" | "closer" | "leaver"

const peerArgs = (
  subject: Subject,
  role: Role,
  address: string,
  extra: ReadonlyArray<string> = []
): Array<string> => [
  ...nodeFlags,
  peerScript,
  subject.peer!.module,
  subject.peer!.export,
  role,
  address,
  ...extra
]

/** The `child:` address whose dialling starts the suite's peer in `role`, serving its parent. */
const childAddress = (subject: Subject, role: Role, extra: ReadonlyArray<string> = []): string =>
  `child:${encodeURIComponent(JSON.stringify([process.execPath, ...peerArgs(subject, role, "child:parent", extra)]))}`

/** Spawns the suite's peer in a child process; it is killed when the scope closes. */
export const spawnPeer = (
  subject: Subject,
  role: Role,
  address: string
): Effect.Effect<ChildProcess.ChildProcess, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<ChildProcess.ChildProcess, Error>((resume) => {
      const child = ChildProcess.spawn(process.execPath, peerArgs(subject, role, address), {
        stdio: ["ignore", "pipe", "inherit"]
      })
      let out = ""
      const onData = (chunk: Buffer) => {
        out += chunk.toString()
        if (out.includes("ready\n")) {
          child.stdout!.off("data", onData)
          resume(Effect.succeed(child))
        }
      }
      child.stdout!.on("data", onData)
      child.once("exit", (code, signal) => resume(Effect.fail(new Error(`peer exited early (${code ?? signal})`))))
      return Effect.sync(() => child.kill("SIGKILL"))
    }).pipe(Effect.timeout(subject.peerStartTimeout ?? "20 seconds")),
    (child) => kill(child)
  )

/** Kills a child with SIGKILL and waits for it to be gone. */
export const kill = (child: ChildProcess.ChildProcess): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    child.once("exit", () => resume(Effect.void))
    child.kill("SIGKILL")
  })

/** Where this process's open descriptors are listed: Linux, then macOS and the BSDs; none elsewhere. */
const fdDirectory = ["/proc/self/fd", "/dev/fd"].find((dir) => {
  try {
    return Fs.readdirSync(dir).length > 0
  } catch {
    return false
  }
})

/** The number of open descriptors (0 where they cannot be listed: the cases say so in their titles). */
const openFds = (): number => fdDirectory === undefined ? 0 : Fs.readdirSync(fdDirectory).length

/** Appended to the titles of the cases that count descriptors, where they cannot be counted. */
const fdsNotCounted = fdDirectory === undefined
  ? " (descriptors not counted: neither /proc/self/fd nor /dev/fd lists them here)"
  : ""

/** True once no process has id `pid` (our children are reaped by Node). */
const gone = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return false
  } catch {
    return true
  }
}

/** The ids of the processes whose command line has the argument `tag` (from /proc, else from `ps`). */
const pidsTagged = (tag: string): ReadonlyArray<number> => {
  if (!Fs.existsSync("/proc/self/cmdline")) {
    return ChildProcess.execFileSync("ps", ["-A", "-o", "pid=,args="], { encoding: "utf8" }).split("\n").flatMap(
      (line) => {
        const [pid, ...args] = line.trim().split(/\s+/)
        return args.includes(tag) ? [Number(pid)] : []
      }
    )
  }
  return Fs.readdirSync("/proc").filter((entry) => /^\d+$/.test(entry)).flatMap((entry) => {
    try {
      return Fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").includes(tag) ? [Number(entry)] : []
    } catch {
      return []
    }
  })
}

const pattern = (size: number, seed: number): Uint8Array => {
  const out = new Uint8Array(size)
  for (let i = 0; i < size; i++) out[i] = (i * 31 + seed) & 0xff
  return out
}

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  a.byteLength === b.byteLength &&
  Buffer.compare(
      Buffer.from(a.buffer, a.byteOffset, a.byteLength),
      Buffer.from(b.buffer, b.byteOffset, b.byteLength)
    ) === 0

/** Message `i`: its number, then a check of it (so that a change to any of its 8 bytes is seen). */
const numbered = (i: number): Uint8Array => {
  const out = new Uint8Array(8)
  const view = new DataView(out.buffer)
  view.setUint32(0, i)
  view.setUint32(4, (Math.imul(i, 0x9e3779b1) ^ 0xa5a5a5a5) >>> 0)
  return out
}
const numberOf = (message: Uint8Array): number =>
  new DataView(message.buffer, message.byteOffset, message.byteLength).getUint32(0)

/** What the sender writes over its buffer once `send` returns. */
const overwritten = 0xee
/**
 * What the receiver writes over the `i`th message it has received: a value of its own per message, so that a
 * transport that hands out the same memory again (a reused read buffer, a ring read in place) is seen, as a
 * message that no longer holds its own value.
 */
const scribbled = (i: number): number => 0x10 + (i % 0xd0)

/**
 * Receives `count` messages (one `receive` each, or `receiveAll` batches), copying each as it arrives and then
 * scribbling over it: the receiver owns what it receives, so neither the copies nor the scribbles may change.
 */
const receiveOwned = (channel: IpcChannel.IpcChannel, count: number, batches: boolean) =>
  Effect.gen(function*() {
    const arrived: Array<Uint8Array> = []
    const held: Array<Uint8Array> = []
    while (held.length < count) {
      const batch = batches ? yield* channel.receiveAll : [yield* channel.receive]
      for (const message of batch) {
        // a copy whatever the message is (a Node Buffer's `slice` is a view)
        arrived.push(new Uint8Array(message))
        message.fill(scribbled(held.length))
        held.push(message)
      }
    }
    return { arrived, held }
  })

/** Asserts that message `i` arrived as `pattern(sizes[i], seed(i))` and kept the receiver's scribbles since. */
const assertOwned = (
  got: { readonly arrived: ReadonlyArray<Uint8Array>; readonly held: ReadonlyArray<Uint8Array> },
  sizes: ReadonlyArray<number>,
  seed: (i: number) => number,
  how: string
): void => {
  assert.strictEqual(got.arrived.length, sizes.length, `${how}: the number of messages`)
  for (const [i, size] of sizes.entries()) {
    assert.isTrue(
      sameBytes(got.arrived[i]!, pattern(size, seed(i))),
      `${how}: message ${i} (${size} B) is not the sender's bytes at send time`
    )
    assert.isTrue(
      got.held[i]!.every((byte) => byte === scribbled(i)),
      `${how}: message ${i} (${size} B) changed after the receiver had it (its memory given out again?)`
    )
  }
}

const hex = (bytes: ReadonlyArray<number> | Uint8Array): string => Buffer.from(bytes).toString("hex")

/** A frame header declaring `length` bytes of data. */
const header = (length: number): Uint8Array => {
  const out = new Uint8Array(6)
  out[0] = 1
  new DataView(out.buffer).setUint32(2, length)
  return out
}

/** What the raw cases write: garbage, an oversized length, an 8-byte length prefix of 2^63; and a frame cut short. */
const badInput: ReadonlyArray<Uint8Array> = [
  new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"),
  header(0xffff_fff0),
  new Uint8Array([0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3])
]
const cutFrame = new Uint8Array([...header(100), 1, 2, 3, 4])

/** A peer in a child process that writes `bytes` raw on its pipe; `hold`: it waits to be dropped. */
const rawChild = (transport: Transport.TransportShape, bytes: Uint8Array, hold: boolean) =>
  transport.dial(
    `child:${
      encodeURIComponent(
        JSON.stringify([process.execPath, ...nodeFlags, rawPeerScript, hex(bytes), hold ? "hold" : "cut"])
      )
    }`
  )

const transportOf = (subject: Subject) => subject.descriptor.make

/** The scheme under test. */
const schemeOf = (subject: Subject): string => subject.scheme ?? subject.descriptor.schemes[0] ?? ""

/** What the scheme under test lacks, with the reasons, as its descriptor says. */
const lacks = (subject: Subject): Partial<Record<Capability, string>> =>
  subject.descriptor.lacks?.[schemeOf(subject)] ?? {}

const rpcServer = (address: string, transport: Transport.TransportShape) =>
  RpcServer.layer(ConformanceApi).pipe(
    Layer.provide(ConformanceHandlers),
    Layer.provide(IpcRpc.layerServerProtocol(address)),
    Layer.provide(IpcRpc.layerSerialization),
    Layer.provide(Layer.succeed(Transport.Transport, transport))
  )

const rpcClient = (address: string, transport: Transport.TransportShape) =>
  Effect.gen(function*() {
    const protocol = yield* Layer.build(
      IpcRpc.layerClientProtocol(address).pipe(
        Layer.provide(IpcRpc.layerSerialization),
        Layer.provide(Layer.succeed(Transport.Transport, transport))
      )
    )
    return yield* RpcClient.make(ConformanceApi).pipe(Effect.provide(protocol))
  })

/** Our end of a connection to a peer process, and a way to kill that process. */
interface CrossPeer {
  readonly channel: IpcChannel.IpcChannel
  readonly kill: Effect.Effect<void>
  /** The peer's process id. */
  readonly pid: number | undefined
}

const killPid = (pid: number | undefined): Effect.Effect<void> =>
  pid === undefined
    ? Effect.die(new Error("the channel does not know its peer's pid"))
    : Effect.sync(() => void process.kill(pid, "SIGKILL"))

/** Whether process `pid` still runs (a reaped process is gone; signal 0 only checks). */
const processExists = (pid: number | undefined): boolean => {
  if (pid === undefined) throw new Error("the channel does not know its peer's pid")
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Starts a peer process in `role` and connects to it (an echo server; the others send to us). */
const crossPeer = (
  subject: Subject,
  transport: Transport.TransportShape,
  role: Exclude<Role, "rpc-server">
): Effect.Effect<CrossPeer, Error | IpcError.IpcError, Scope.Scope> =>
  Effect.gen(function*() {
    if (lacks(subject)["in-process"] !== undefined) {
      const channel = yield* transport.dial(childAddress(subject, role))
      return { channel, kill: killPid(channel.peer.pid), pid: channel.peer.pid }
    }
    const address = subject.address()
    if (role === "echo-server") {
      const child = yield* spawnPeer(subject, role, address)
      return { channel: yield* transport.dial(address), kill: kill(child), pid: child.pid }
    }
    const listener = yield* transport.listen(address)
    const child = yield* spawnPeer(subject, role, address)
    return { channel: yield* listener.accept, kill: kill(child), pid: child.pid }
  })

/** Starts a peer process serving `ConformanceApi` and returns the address to call it at. */
const rpcPeer = (subject: Subject): Effect.Effect<string, Error, Scope.Scope> =>
  Effect.gen(function*() {
    if (lacks(subject)["in-process"] !== undefined) return childAddress(subject, "rpc-server")
    const address = subject.address()
    yield* spawnPeer(subject, "rpc-server", address)
    return address
  })

/** An in-process pair: a listener, a client dialled to it and the server end it accepted. */
const connected = (transport: Transport.TransportShape, address: string) =>
  Effect.gen(function*() {
    const listener = yield* transport.listen(address)
    const client = yield* transport.dial(address)
    const server = yield* listener.accept
    return { listener, client, server }
  })

/** An in-process echo pair: a client and the echoing server end. */
const echoPair = (transport: Transport.TransportShape, address: string) =>
  Effect.gen(function*() {
    const { client, server } = yield* connected(transport, address)
    yield* Effect.forkScoped(Effect.forever(Effect.flatMap(server.receive, server.send)))
    return client
  })

/** Waits until `check` holds, polling every 20 ms, failing after `within` (a guard against hangs, not a figure). */
const eventually = (check: () => boolean, within: Duration.Input, what: string): Effect.Effect<void, Error> =>
  Effect.gen(function*() {
    const deadline = Date.now() + Duration.toMillis(Duration.fromInputUnsafe(within))
    while (!check()) {
      if (Date.now() > deadline) return yield* Effect.fail(new Error(`timed out waiting: ${what}`))
      yield* Effect.sleep("20 millis")
    }
  })

/** Waits until `count` stops moving (unchanged for 300 ms) and returns it, failing after 20 s. */
const stalls = (count: () => number, what: string): Effect.Effect<number, Error> =>
  Progress.stalls(count, { quiet: 300, limit: 20_000, what })

/**
 * Registers the whole conformance suite for `subject`. Throws (at
 * registration) when the subject cannot run a case its descriptor does not
 * mark as lacking: no `peer` for a scheme with peer processes, no `raw` for a
 * byte stream.
 */
export const suite = (given: Subject): void => {
  const scheme = schemeOf(given)
  if (!given.descriptor.schemes.includes(scheme)) {
    throw new Error(`${given.name}: the descriptor "${given.descriptor.name}" does not serve ${scheme}://`)
  }
  // the cases that run are chosen by the scheme: an address of another scheme would run the wrong ones
  const subject: Subject = {
    ...given,
    address: () => {
      const address = given.address()
      if (address.startsWith(`${scheme}:`)) return address
      throw new Error(`${given.name}: the address ${address} is not a ${scheme}: address (set the subject's scheme)`)
    }
  }
  const lacking = lacks(subject)
  // child-process pipes: each dial starts its own child, which serves only its parent
  const viaChild = lacking["in-process"] !== undefined
  /** A channel's two ends: an in-process pair, or (child pipes) the channel to the echoing child as both. */
  const ends = (transport: Transport.TransportShape) =>
    viaChild
      ? Effect.map(
        crossPeer(subject, transport, "echo-server"),
        ({ channel }) => ({ client: channel, server: channel })
      )
      : connected(transport, subject.address())
  const crossProcess = lacking["peer-process"] === undefined
  // a client of an echo server: in another process where there is one (both directions cross it)
  const echoClient = (transport: Transport.TransportShape, address: string) =>
    crossProcess
      ? Effect.map(crossPeer(subject, transport, "echo-server"), ({ channel }) => channel)
      : echoPair(transport, address)
  const singlePeer = lacking["multi-peer"] !== undefined
  const where = `the descriptor "${subject.descriptor.name}" (lacks.${scheme})`
  if (crossProcess && subject.peer === undefined) {
    throw new Error(
      `${subject.name}: give the subject a peer (module and export) for the peer-process cases, or list "peer-process" in ${where}`
    )
  }
  if (lacking["raw-stream"] === undefined && subject.raw === undefined && !viaChild) {
    throw new Error(
      `${subject.name}: give the subject raw (a raw byte connection) for the raw-stream cases, or list "raw-stream" in ${where}`
    )
  }
  /** A case that needs `capability`: run, or registered as skipped with the reason in its title. */
  const needs = (capability: Capability) =>
  (
    title: string,
    body: () => Effect.Effect<unknown, unknown, Scope.Scope>,
    timeout: number
  ): void => {
    const why = lacking[capability]
    if (why === undefined) return void it.live(title, body, timeout)
    it.skip(`${title} — not applicable: ${capability} (${why})`, () => {})
  }

  describe(`conformance: ${subject.name}`, () => {
    it.live("delivers 100k messages in order, none lost, one send = one receive", () =>
      Effect.gen(function*() {
        const transport = yield* transportOf(subject)
        const address = subject.address()
        const total = 100_000
        // the bound is generous: it guards against a hang on a loaded machine, the bench measures the rate
        const client = yield* echoClient(transport, address)
        yield* Effect.forkScoped(
          Effect.forEach(Array.from({ length: total }, (_, i) => i), (i) => client.send(numbered(i)), { discard: true })
        )
        let expected = 0
        while (expected < total) {
          const batch = yield* client.receiveAll
          for (const message of batch) {
            assert.strictEqual(message.byteLength, 8)
            assert.strictEqual(numberOf(message), expected)
            if (!sameBytes(message, numbered(expected))) assert.fail(`message ${expected} changed on its way`)
            expected++
          }
        }
        assert.strictEqual(expected, total)
      }).pipe(Effect.scoped), 120_000)

    // the echo above crosses the transport twice, each leg's n-th message the other's: a fault at the same place
    // on both legs (the 1000th message of each swapped with the next) cancels out there. One leg alone shows it
    it.live(
      "delivers 100k messages in order on one leg alone: the peer sends, we only read",
      () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          const total = 100_000
          let channel: IpcChannel.IpcChannel
          if (crossProcess || viaChild) {
            // the streamer sends numbered messages until it is killed (with the scope)
            channel = (yield* crossPeer(subject, transport, "streamer")).channel
          } else {
            const { client, server } = yield* connected(transport, subject.address())
            yield* Effect.forkScoped(
              Effect.forEach(Array.from({ length: total }, (_, i) => i), (i) => server.send(numbered(i)), {
                discard: true
              })
            )
            channel = client
          }
          let expected = 0
          while (expected < total) {
            for (const message of yield* channel.receiveAll) {
              if (expected === total) break
              if (numberOf(message) !== expected) {
                assert.fail(`message ${numberOf(message)} came where message ${expected} was due`)
              }
              expected++
            }
          }
        }).pipe(Effect.scoped),
      120_000
    )

    it.live(
      "messages read in part (Stream.take, runHead) leave the rest for the next reader: none lost",
      () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          const client = yield* echoClient(transport, subject.address())
          for (let i = 0; i < 10; i++) yield* client.send(numbered(i))
          // all ten back and buffered before the stream is read, so that one look could take them all
          yield* Effect.sleep("300 millis")
          const first = yield* Stream.runCollect(Stream.take(client.messages, 3))
          assert.deepStrictEqual(first.map(numberOf), [0, 1, 2])
          const head = yield* Stream.runHead(client.messages).pipe(Effect.timeout("10 seconds"))
          assert.strictEqual(head._tag === "Some" ? numberOf(head.value) : -1, 3)
          const rest: Array<number> = []
          for (let i = 4; i < 10; i++) rest.push(numberOf(yield* client.receive.pipe(Effect.timeout("10 seconds"))))
          assert.deepStrictEqual(rest, [4, 5, 6, 7, 8, 9])
        }).pipe(Effect.scoped),
      60_000
    )

    it.live(
      "receives that timed out or were interrupted while they waited take nothing: the next receives get every message",
      () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          const client = yield* echoClient(transport, subject.address())
          // nothing has come: each of these waits, and is given up
          assert.isTrue(Option.isNone(yield* Effect.timeoutOption(client.receive, "50 millis")))
          assert.isTrue(Option.isNone(yield* Effect.timeoutOption(client.receiveAll, "50 millis")))
          assert.isTrue(Option.isNone(yield* Effect.timeoutOption(Stream.runHead(client.messages), "50 millis")))
          const waiting = yield* Effect.forkScoped(client.receive)
          yield* Effect.sleep("20 millis")
          yield* Fiber.interrupt(waiting)
          for (let i = 0; i < 3; i++) yield* client.send(numbered(i))
          const got: Array<number> = []
          while (got.length < 3) {
            for (const message of yield* client.receiveAll.pipe(Effect.timeout("10 seconds"))) {
              got.push(numberOf(message))
            }
          }
          assert.deepStrictEqual(got, [0, 1, 2])
        }).pipe(Effect.scoped),
      60_000
    )

    it.live(
      "sendAll: batches and single sends arrive in order, a batch past every buffer is back-pressured",
      () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          const address = subject.address()
          const client = yield* echoClient(transport, address)
          if (subject.sendsBatches === true) assert.isFunction(client.sendAll, "the channel has its own sendAll")
          // batches of 1 to 4000 messages, a single send after each; the last batch holds 16 MiB in 64 KiB messages
          const big = Math.min(64 * 1024, subject.maxFrameSize)
          const sizes = [1, 2, 17, 4000, 1, 256]
          let next = 0
          const message = (size: number): Uint8Array => {
            const out = new Uint8Array(size)
            out.set(numbered(next++))
            return out
          }
          const plan = sizes.map((count, b) =>
            [Array.from({ length: count }, () => message(b === sizes.length - 1 ? big : 8)), message(8)] as const
          )
          const total = next
          yield* Effect.forkScoped(
            Effect.forEach(plan, ([batch, single]) =>
              Effect.andThen(IpcChannel.sendAll(client, batch), client.send(single)), { discard: true })
          )
          let expected = 0
          while (expected < total) {
            for (const got of yield* client.receiveAll) {
              assert.strictEqual(numberOf(got), expected)
              expected++
            }
          }
          assert.strictEqual(expected, total)
          // an empty batch sends nothing, and is no error
          yield* IpcChannel.sendAll(client, [])
        }).pipe(Effect.scoped),
      120_000
    )

    it.live("no message waits unseen, whichever step effect yields to the event loop at", () =>
      Effect.gen(function*() {
        // A fiber yields to the event loop every `MaxOpsBeforeYield` steps. A receiver or worker that
        // looked for work, yielded, and then waited, slept through what arrived meanwhile (one-way
        // traffic then stopped for good). Small budgets put a yield at every step boundary in turn.
        const transport = yield* transportOf(subject)
        const address = subject.address()
        for (let budget = 3; budget <= 10; budget++) {
          yield* Effect.gen(function*() {
            const client = yield* echoClient(transport, address)
            for (let round = 0; round < 20; round++) {
              // one in flight, then a burst: every message comes back, within the guard
              yield* client.send(numbered(round))
              assert.strictEqual(numberOf(yield* client.receive), round)
              const burst = 10 + round * 7
              yield* Effect.forkScoped(
                Effect.forEach(Array.from({ length: burst }, (_, i) => i), (i) => client.send(numbered(i)), {
                  discard: true
                })
              )
              let expected = 0
              while (expected < burst) {
                for (const message of yield* client.receiveAll) {
                  assert.strictEqual(numberOf(message), expected, `budget ${budget}, round ${round}`)
                  expected++
                }
              }
            }
          }).pipe(
            Effect.scoped,
            // a guard against a hang (a lost wake-up waits for ever), not a figure: Node for Windows under Wine
            // takes 1 to 3 s a budget here, and on a loaded machine (the suite beside two other runs) took 10
            Effect.timeoutOrElse({
              duration: "30 seconds",
              orElse: () => Effect.fail(new Error(`messages stopped with a yield every ${budget} steps`))
            }),
            Effect.provideService(Scheduler.MaxOpsBeforeYield, budget)
          )
        }
      }).pipe(Effect.scoped), 120_000)

    it.live("carries messages of 0 B, 1 B, 64 KiB and 16 MiB whole", () =>
      Effect.gen(function*() {
        const transport = yield* transportOf(subject)
        const address = subject.address()
        const client = yield* echoClient(transport, address)
        const sizes = [0, 1, 64 * 1024, 16 * 1024 * 1024, 1, 0]
        for (const [i, size] of sizes.entries()) {
          const sent = pattern(size, i)
          yield* client.send(sent)
          const got = yield* client.receive
          assert.strictEqual(got.byteLength, size, `size ${size}`)
          assert.isTrue(sameBytes(got, sent), `content of the ${size}-byte message`)
        }
        // and over one leg alone, where both ends can live here: damage that undoes itself on the way back (a
        // bit flipped on each leg) does not show in an echo
        if (viaChild) return
        const { client: one, server: other } = yield* connected(transport, subject.address())
        for (const [i, size] of sizes.entries()) {
          const sent = pattern(size, i + 10)
          yield* one.send(sent)
          const got = yield* other.receive
          assert.strictEqual(got.byteLength, size, `size ${size}, one leg`)
          assert.isTrue(sameBytes(got, sent), `content of the ${size}-byte message, one leg`)
        }
      }).pipe(Effect.scoped), 120_000)

    // memory:// held the send of a message that filled the receiver's inbox (8 MiB) until the receiver read:
    // a program that sends, then receives, in one fiber stopped there (and exited, nothing else running)
    needs("in-process")(
      "a message larger than the receiver's buffers is taken before anyone receives: one fiber sends it, then receives it",
      () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          const { client, server } = yield* connected(transport, subject.address())
          const size = Math.min(12 * 1024 * 1024 + 5, subject.maxFrameSize)
          const sent = pattern(size, 3)
          yield* client.send(sent).pipe(
            Effect.timeoutOrElse({
              duration: "20 seconds",
              orElse: () => Effect.die(new Error(`the send of ${size} B waited for a receive`))
            })
          )
          const got = yield* server.receive
          assert.strictEqual(got.byteLength, size)
          assert.isTrue(sameBytes(got, sent), "its content")
          // and back the other way, the same fiber again
          yield* server.send(sent)
          assert.isTrue(sameBytes(yield* client.receive, sent), "its content, sent back")
        }).pipe(Effect.scoped),
      60_000
    )

    // a Uint16Array or DataView (JavaScript, or a cast) was copied element by element into a frame of its
    // byte length: half its bytes, then memory never written (earlier messages) went to the peer
    it.live(
      "any byte view is sent as its bytes; what is not bytes, or was transferred away, is Encode",
      () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          const client = yield* echoClient(transport, subject.address())
          const backing = new Uint8Array(40).map((_, i) => 200 - i)
          const views: ReadonlyArray<ArrayBufferView> = [
            new Uint16Array(backing.buffer, 8, 8),
            new DataView(backing.buffer, 2, 16),
            new Float64Array(backing.buffer, 16, 2)
          ]
          for (const view of views) {
            yield* client.send(view as Uint8Array)
            const got = yield* client.receive
            const want = new Uint8Array(view.buffer, view.byteOffset, view.byteLength)
            assert.isTrue(sameBytes(got, want), `${view.constructor.name}: ${[...got]}`)
          }
          const detached = new Uint8Array(8)
          structuredClone(detached.buffer, { transfer: [detached.buffer] })
          const bads = [["a string", "hi"], ["a number", 42], ["null", null], ["undefined", undefined], [
            "an object",
            {}
          ], [
            "a detached view",
            detached
          ]] as const
          for (const [what, bad] of bads) {
            const error = yield* Effect.flip(client.send(bad as unknown as Uint8Array))
            assert.strictEqual(error.reason._tag, "Encode", `${what}: ${error.message}`)
            const batch = yield* Effect.flip(
              IpcChannel.sendAll(client, [new Uint8Array([1]), bad as unknown as Uint8Array])
            )
            assert.strictEqual(batch.reason._tag, "Encode", `${what} in a batch: ${batch.message}`)
            assert.deepStrictEqual([...(yield* client.receive)], [1], "the message before it in the batch went")
          }
          // and the channel goes on
          yield* client.send(new Uint8Array([7]))
          assert.deepStrictEqual([...(yield* client.receive)], [7])
        }).pipe(Effect.scoped),
      60_000
    )

    it.live(
      "a message is the sender's bytes at send time: the sender reuses its buffer once send returns, the receiver owns what it gets",
      () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          // through the echoing child, both of its ends copy too
          const { client, server } = yield* ends(transport)
          const large = Math.min(1024 * 1024 + 17, subject.maxFrameSize)
          const medium = Math.min(256 * 1024 + 3, subject.maxFrameSize)
          const sizes = Array.from({ length: 5 }, () => [64, large, 1, medium, 4096, 0, 64, 4096]).flat()
          // one buffer for every message, as effect's binary encoder reuses its arena; messages are views into it,
          // every other round of sizes as Node Buffers (whose `slice` is a view, not a copy)
          const arena = new Uint8Array(sizes.reduce((sum, size) => sum + size + 1, 0))
          const view = (offset: number, size: number, seed: number): Uint8Array => {
            const message = Math.floor(seed / 8) % 2 === 0
              ? arena.subarray(offset, offset + size)
              : Buffer.from(arena.buffer, arena.byteOffset + offset, size)
            message.set(pattern(size, seed))
            return message
          }

          // send: each message in the same place of the buffer (at offsets 0 to 2), overwritten once send returns;
          // nobody reads until the sender is through or stalls, so what it overwrites is still on its way.
          // Both ways where both ends are here: the dialling side's send, then the listening side's
          const ways = viaChild
            ? [[client, server, "send"] as const]
            : [[client, server, "send"] as const, [server, client, "the listening side's send"] as const]
          for (const [from, to, how] of ways) {
            let sent = 0
            const sender = yield* Effect.forkScoped(Effect.forEach(
              sizes.entries(),
              ([i, size]) =>
                Effect.andThen(
                  from.send(view(i % 3, size, i)),
                  Effect.sync(() => {
                    arena.fill(overwritten)
                    sent++
                  })
                ),
              { discard: true }
            ))
            yield* stalls(() => sent, "the sender is through or stalls")
            const one = yield* receiveOwned(to, sizes.length, false)
            yield* Fiber.join(sender)
            assertOwned(one, sizes, (i) => i, how)
          }

          // sendAll: the messages side by side in the buffer, all overwritten once sendAll returns
          let offset = 0
          const batch = sizes.map((size, i) => {
            const message = view(offset, size, 100 + i)
            offset += size + 1
            return message
          })
          // through the channel's own sendAll (counted once it returns), then one send each (its fallback)
          for (const own of [true, false]) {
            let counted = 0
            const count = <A, E>(effect: Effect.Effect<A, E>) => Effect.andThen(effect, Effect.sync(() => counted++))
            const inner = client.sendAll
            const counting: IpcChannel.IpcChannel = own
              ? {
                ...client,
                sendAll: inner === undefined
                  ? undefined
                  : IpcChannel.pairSendAll(client.send, (messages) => count(inner(messages)))
              }
              : { ...client, sendAll: undefined, send: (message) => count(client.send(message)) }
            const all = yield* Effect.forkScoped(
              Effect.andThen(IpcChannel.sendAll(counting, batch), Effect.sync(() => arena.fill(overwritten)))
            )
            yield* stalls(() => counted, "sendAll is through or stalls")
            const two = yield* receiveOwned(server, sizes.length, true)
            yield* Fiber.join(all)
            assertOwned(two, sizes, (i) => 100 + i, own ? "the channel's sendAll" : "sendAll by send")
            // the way it went: the channel's own sendAll once, or one send per message
            if (!own || inner !== undefined) assert.strictEqual(counted, own ? 1 : sizes.length)
            // the same buffer again for the next round
            offset = 0
            for (const [i, size] of sizes.entries()) {
              batch[i] = view(offset, size, 100 + i)
              offset += size + 1
            }
          }
        }).pipe(Effect.scoped),
      120_000
    )

    it.live(
      "back-pressures a sender whose receiver does not read, then delivers everything",
      () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          const message = new Uint8Array(64 * 1024)
          let sent = 0
          let client: IpcChannel.IpcChannel
          let read: (atLeast: number) => Effect.Effect<void, IpcError.IpcError | Error>
          if (viaChild) {
            // the child reads nothing until SIGUSR1, then acknowledges each message with the count so far
            const peer = yield* crossPeer(subject, transport, "sink")
            client = peer.channel
            // the child says when its signal handler is in place
            assert.strictEqual(numberOf(yield* client.receive), 0)
            read = (atLeast) =>
              Effect.gen(function*() {
                yield* Effect.sync(() => process.kill(peer.pid!, "SIGUSR1"))
                let acknowledged = 0
                while (acknowledged < atLeast) acknowledged = numberOf((yield* client.receiveAll).at(-1)!)
              })
          } else {
            const pair = yield* connected(transport, subject.address())
            client = pair.client
            read = (atLeast) =>
              Effect.gen(function*() {
                let received = 0
                while (received < atLeast) received += (yield* pair.server.receiveAll).length
              })
          }
          const sender = yield* Effect.forkScoped(
            Effect.forever(Effect.andThen(client.send(message), Effect.sync(() => sent++)))
          )
          // the sender stalls: buffers are bounded, far below 256 MiB
          const stalledAt = yield* stalls(() => sent, "the sender stalls while nobody reads")
          assert.isBelow(stalledAt * message.byteLength, 256 * 1024 * 1024)
          // reading resumes the flow
          yield* read(stalledAt + 10)
          yield* eventually(() => sent >= stalledAt + 10, "20 seconds", "the sender resumes")
          yield* Fiber.interrupt(sender)
        }).pipe(Effect.scoped),
      60_000
    )

    it.live("serves 1000 concurrent RPC calls, typed errors and streams", () =>
      Effect.gen(function*() {
        const transport = yield* transportOf(subject)
        const address = subject.address()
        let target = address
        if (crossProcess) target = yield* rpcPeer(subject)
        else yield* Layer.build(rpcServer(address, transport))
        const client = yield* rpcClient(target, transport)
        const results = yield* Effect.forEach(
          Array.from({ length: 1000 }, (_, i) => i),
          (n) => client.Echo({ n }),
          { concurrency: "unbounded" }
        )
        assert.deepStrictEqual(results, Array.from({ length: 1000 }, (_, i) => i))
        const error = yield* Effect.flip(client.Fail({ why: "because" }))
        assert.instanceOf(error, Refused)
        assert.strictEqual((error as Refused).why, "because")
        const streamed = yield* Stream.runCollect(client.Range({ n: 500 }))
        assert.deepStrictEqual(streamed, Array.from({ length: 500 }, (_, i) => i + 1))
      }).pipe(Effect.scoped), 60_000)

    it.live(
      "reports the end of input: graceful close ends the stream, the reader sees Closed",
      () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          let sender: IpcChannel.IpcChannel
          let reader: IpcChannel.IpcChannel
          if (viaChild) {
            // the child sends 0..9 and closes; we read, then close our end
            reader = (yield* crossPeer(subject, transport, "closer")).channel
            sender = reader
          } else {
            const { client, server } = yield* connected(transport, subject.address())
            for (let i = 0; i < 10; i++) yield* client.send(numbered(i))
            yield* client.close
            sender = client
            reader = server
          }
          const all = yield* Stream.runCollect(reader.messages)
          assert.deepStrictEqual(all.map(numberOf), Array.from({ length: 10 }, (_, i) => i))
          const error = yield* Effect.flip(reader.receive)
          assert.strictEqual(error.reason._tag, "Closed")
          const errorAll = yield* Effect.flip(reader.receiveAll)
          assert.strictEqual(errorAll.reason._tag, "Closed")
          yield* sender.close
          const sendAfterClose = yield* Effect.flip(sender.send(numbered(0)))
          assert.strictEqual(sendAfterClose.reason._tag, "Closed")
        }).pipe(Effect.scoped),
      60_000
    )

    // the inbox is made small through the descriptor's `maxBufferedMessages` option: without one, the case would
    // run with the default inbox (4096), which its 10 messages never fill, and prove nothing
    const smallInbox =
      subject.descriptor.options?.names.some((name) => name.path.length === 1 && name.path[0] === "maxBufferedMessages")
        ? it.live
        : (title: string) =>
          it.skip(
            `${title} — not applicable: the descriptor declares no maxBufferedMessages option (TransportOptions.declare), so the inbox cannot be made small`,
            () => {}
          )
    smallInbox(
      "a receiver that waits while more than its inbox holds arrives with the close gets every message once, in order",
      () =>
        Effect.gen(function*() {
          // the inbox pauses the link when full and resumes it once a taker has what it took; a link that reads
          // on there (shm's ring, the file's log) may deliver the rest and the close at once (the inbox once
          // handed a waiting taker the later messages first, lost the earlier ones and threw)
          const declared = subject.descriptor.options!
          for (const maxBufferedMessages of [2, 3, 4, 6, 8, 9]) {
            yield* Effect.gen(function*() {
              const transport = yield* declared.make({ maxBufferedMessages })
              let reader: IpcChannel.IpcChannel
              let all: ReadonlyArray<Uint8Array>
              if (viaChild) {
                // the child sends 0..9 and closes as soon as it is connected
                reader = (yield* crossPeer(subject, transport, "closer")).channel
                all = yield* Stream.runCollect(reader.messages)
              } else {
                const { client, server } = yield* connected(transport, subject.address())
                reader = server
                const reading = yield* Effect.forkScoped(Stream.runCollect(reader.messages))
                // the reader waits before anything is sent; then everything is sent, and the close, in one go
                yield* Effect.sleep("30 millis")
                for (let i = 0; i < 10; i++) yield* client.send(numbered(i))
                yield* client.close
                all = yield* Fiber.join(reading)
              }
              const got = all.map(numberOf)
              assert.deepStrictEqual(got, Array.from({ length: 10 }, (_, i) => i), `inbox of ${maxBufferedMessages}`)
              const end = yield* Effect.flip(reader.receive)
              assert.strictEqual(end.reason._tag, "Closed", `inbox of ${maxBufferedMessages}: ${end.message}`)
            }).pipe(Effect.scoped)
          }
        }).pipe(Effect.scoped),
      60_000
    )

    it.live(
      "fails with typed errors: nothing at the address, a malformed address or percent-escape",
      () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          const nothing = viaChild
            ? `child:${encodeURIComponent(JSON.stringify([Path.join(Os.tmpdir(), "effect-ipc-no-such-command")]))}`
            : subject.address()
          const notFound = yield* Effect.flip(transport.dial(nothing))
          assert.strictEqual(notFound.reason._tag, "NotFound", notFound.message)
          const malformed = yield* Effect.flip(transport.dial("no scheme here"))
          assert.strictEqual(malformed.reason._tag, "InvalidAddress")
          for (const bad of [`${nothing}%zz`, `${nothing}%E0%A4%A`]) {
            const errors = [yield* Effect.flip(transport.dial(bad)), yield* Effect.flip(transport.listen(bad))]
            for (const error of errors) {
              assert.strictEqual(error.reason._tag, "InvalidAddress", `${bad}: ${error.message}`)
            }
          }
        }).pipe(Effect.scoped),
      60_000
    )

    needs("shared-address")(
      "a second listener at an address in use fails with AddressInUse",
      () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          const address = subject.address()
          yield* transport.listen(address)
          const inUse = yield* Effect.flip(transport.listen(address))
          assert.strictEqual(inUse.reason._tag, "AddressInUse")
        }).pipe(Effect.scoped),
      60_000
    )

    it.live(
      "rejects a message over the frame limit with FrameTooLarge and keeps the channel",
      () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          const { client, server } = yield* ends(transport)
          const tooLarge = yield* Effect.flip(client.send(new Uint8Array(subject.maxFrameSize + 1)))
          assert.strictEqual(tooLarge.reason._tag, "FrameTooLarge")
          yield* client.send(numbered(7))
          assert.strictEqual(numberOf(yield* server.receive), 7)
          // in a batch: those before it are sent, it and those after it are not
          const inBatch = yield* Effect.flip(
            IpcChannel.sendAll(client, [
              numbered(8),
              numbered(9),
              new Uint8Array(subject.maxFrameSize + 1),
              numbered(10)
            ])
          )
          assert.strictEqual(inBatch.reason._tag, "FrameTooLarge")
          yield* client.send(numbered(11))
          const got: Array<number> = []
          while (got.length < 3) for (const message of yield* server.receiveAll) got.push(numberOf(message))
          assert.deepStrictEqual(got, [8, 9, 11])
        }).pipe(Effect.scoped),
      60_000
    )

    it.live(
      "decodes through a Schema: values in, values out, bad input is a Decode error",
      () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          const { client, server } = yield* ends(transport)
          const Point = Schema.Struct({ x: Schema.Number, y: Schema.Number, tag: Schema.Uint8Array })
          const typedClient = IpcChannel.typed(client, Point)
          const typedServer = IpcChannel.typed(server, Point)
          yield* typedClient.send({ x: 1, y: 2, tag: new Uint8Array([9, 8]) })
          const point = yield* typedServer.receive
          assert.deepStrictEqual({ ...point, tag: [...point.tag] }, { x: 1, y: 2, tag: [9, 8] })
          yield* client.send(new TextEncoder().encode(`{"x":"not a number"}`))
          const error = yield* Effect.flip(typedServer.receive)
          assert.strictEqual(error.reason._tag, "Decode")
        }).pipe(Effect.scoped),
      60_000
    )

    it.live(`releases every OS resource when the scope closes${fdsNotCounted}`, () =>
      Effect.gen(function*() {
        const transport = yield* transportOf(subject)
        const address = subject.address()
        const before = openFds()
        const pids: Array<number> = []
        yield* Effect.scoped(Effect.gen(function*() {
          if (viaChild) {
            for (let i = 0; i < 5; i++) {
              const peer = yield* crossPeer(subject, transport, "echo-server")
              pids.push(peer.pid!)
              yield* peer.channel.send(numbered(i))
              assert.strictEqual(numberOf(yield* peer.channel.receive), i)
            }
            return
          }
          const listener = yield* transport.listen(address)
          for (let i = 0; i < 10; i++) {
            const client = yield* transport.dial(address)
            const server = yield* listener.accept
            yield* client.send(numbered(i))
            assert.strictEqual(numberOf(yield* server.receive), i)
            if (singlePeer) yield* client.close
          }
          if (subject.residue !== undefined) {
            assert.isAbove(subject.residue(address).length, 0, "the transport shows its files while open")
          }
        }))
        yield* eventually(() => openFds() <= before, "20 seconds", `file descriptors back to ${before}`)
        yield* eventually(() => pids.every(gone), "20 seconds", `child processes ${pids.join(", ")} gone`)
        if (subject.residue !== undefined) assert.deepStrictEqual(subject.residue(address), [])
        // and the address can be used again at once
        if (!viaChild) yield* Effect.scoped(transport.listen(address))
      }).pipe(Effect.scoped), 60_000)

    it.live(`releases resources when the scope is interrupted or fails${fdsNotCounted}`, () =>
      Effect.gen(function*() {
        const transport = yield* transportOf(subject)
        const address = subject.address()
        const before = openFds()
        const pids: Array<number> = []
        const open = Effect.gen(function*() {
          if (viaChild) {
            pids.push((yield* crossPeer(subject, transport, "echo-server")).pid!)
            return
          }
          const listener = yield* transport.listen(address)
          yield* transport.dial(address)
          yield* listener.accept
        })
        const exit = yield* Effect.exit(Effect.scoped(Effect.andThen(open, Effect.fail("boom"))))
        assert.isTrue(Exit.isFailure(exit))
        const opened = yield* Deferred.make<void>()
        const fiber = yield* Effect.forkChild(
          Effect.scoped(Effect.andThen(open, Effect.andThen(Deferred.succeed(opened, undefined), Effect.never)))
        )
        yield* Deferred.await(opened)
        yield* Fiber.interrupt(fiber)
        yield* eventually(() => openFds() <= before, "20 seconds", `file descriptors back to ${before}`)
        yield* eventually(() => pids.every(gone), "20 seconds", `child processes ${pids.join(", ")} gone`)
        if (subject.residue !== undefined) assert.deepStrictEqual(subject.residue(address), [])
      }).pipe(Effect.scoped), 60_000)

    // a pipe on Windows has no half-close: a peer's close ends the pipe, and sends waiting on it fail ConnectionLost
    const windowsPipe = process.platform === "win32" && (scheme === "pipe" || scheme === "child")
    const withHalfClose = windowsPipe
      ? (title: string, _body: () => Effect.Effect<unknown, unknown, Scope.Scope>, _timeout: number): void =>
        void it.skip(`${title} — not applicable: a pipe on Windows has no half-close (sends waiting on a peer that closed fail)`, () => {})
      : needs("in-process")
    withHalfClose(
      "a close with messages unread drops them and lets the peer's goodbye in: the peer's sends end Closed and its checked close succeeds",
      () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          const { client, server } = yield* connected(transport, subject.address())
          // far more than the client's inbox and the OS's buffers hold: the server's sends wait on the client
          let sent = 0
          const sending = yield* Effect.forkScoped(
            Effect.exit(
              Effect.forever(Effect.andThen(server.send(pattern(256 * 1024, sent)), Effect.sync(() => void sent++)))
            )
          )
          yield* stalls(() => sent, "the server's sends to wait")
          yield* client.close
          const ended = yield* Fiber.join(sending)
          assert.isTrue(Exit.isFailure(ended))
          const error = Exit.isFailure(ended) ? Cause.squash(ended.cause) : undefined
          assert.isTrue(IpcError.isIpcError(error) && error.reason._tag === "Closed", String(error))
          // the goodbye the server owes (answering ours) left, though what it had sent before was never read
          yield* IpcChannel.closeChecked(server)
        }).pipe(Effect.scoped),
      60_000
    )

    needs("in-process")(
      `a channel ended by its peer's close holds no descriptors, though its user never closes it${fdsNotCounted}`,
      () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          const address = subject.address()
          const listener = yield* transport.listen(address)
          // a peer that sends one message and closes; the listener's side is read to its end and never closed
          const session = (i: number) =>
            Effect.gen(function*() {
              yield* Effect.scoped(Effect.flatMap(transport.dial(address), (client) => client.send(numbered(i))))
              const server = yield* listener.accept
              assert.strictEqual(numberOf(yield* server.receive), i)
              const end = yield* Effect.flip(server.receive)
              assert.strictEqual(end.reason._tag, "Closed", end.message)
            })
          // what a transport opens once and keeps while it listens is in the baseline
          yield* session(0)
          const settled = yield* stalls(openFds, "descriptors to settle")
          for (let i = 1; i <= 20; i++) yield* session(i)
          yield* eventually(
            () => openFds() <= settled,
            "20 seconds",
            `file descriptors back to ${settled} with 20 ended channels not closed (the listener still open)`
          )
        }).pipe(Effect.scoped),
      60_000
    )

    needs("raw-stream")(
      "drops a connection that sends garbage or an oversized frame, and keeps serving others",
      () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          const reasons: Array<string> = []
          let good: IpcChannel.IpcChannel
          if (viaChild) {
            // each bad peer is a child writing raw bytes on its pipe; the parent drops it, the child then exits
            good = (yield* crossPeer(subject, transport, "echo-server")).channel
            for (const bytes of badInput) {
              const bad = yield* rawChild(transport, bytes, true)
              const error = yield* Effect.flip(bad.receive).pipe(Effect.timeout("20 seconds"))
              reasons.push(error.reason._tag)
              yield* eventually(() => gone(bad.peer.pid!), "20 seconds", "the dropped child exits")
            }
          } else {
            const raw = subject.raw!
            const address = subject.address()
            const listener = yield* transport.listen(address)
            yield* Effect.forkScoped(Transport.serve(listener, (channel) =>
              Effect.forever(Effect.flatMap(channel.receive, channel.send)).pipe(
                Effect.tapError((error) => Effect.sync(() => reasons.push(error.reason._tag)))
              )))
            // a listener of one peer at a time serves the good client after the bad ones
            const dialGood = transport.dial(address)
            const early = singlePeer ? undefined : yield* dialGood
            for (const bytes of badInput) {
              const bad = yield* raw(address)
              yield* bad.write(bytes)
              yield* bad.dropped.pipe(Effect.timeout("20 seconds"))
            }
            yield* eventually(
              () =>
                reasons.length >= 3,
              "20 seconds",
              "three connection errors"
            )
            good = early ?? (yield* dialGood)
          }
          assert.deepStrictEqual(reasons.toSorted(), ["FrameTooLarge", "Protocol", "Protocol"])
          for (let i = 0; i < 100; i++) {
            yield* good.send(numbered(i))
            assert.strictEqual(numberOf(yield* good.receive), i)
          }
        }).pipe(Effect.scoped),
      60_000
    )

    needs("raw-stream")("reports a frame cut off by a disconnect as ConnectionLost", () =>
      Effect.gen(function*() {
        const transport = yield* transportOf(subject)
        let server: IpcChannel.IpcChannel
        if (viaChild) {
          server = yield* rawChild(transport, cutFrame, false)
        } else {
          const address = subject.address()
          const listener = yield* transport.listen(address)
          // the writer goes away mid-frame once the listener has taken its connection
          const hangUp = yield* Deferred.make<void>()
          const writer = yield* Effect.forkScoped(Effect.scoped(Effect.gen(function*() {
            const conn = yield* subject.raw!(address)
            yield* conn.write(cutFrame)
            yield* Deferred.await(hangUp)
          })))
          server = yield* listener.accept
          yield* Deferred.succeed(hangUp, undefined)
          yield* Fiber.join(writer)
        }
        const error = yield* Effect.flip(server.receive).pipe(Effect.timeout("20 seconds"))
        assert.strictEqual(error.reason._tag, "ConnectionLost")
      }).pipe(Effect.scoped), 60_000)

    needs("peer-process")(
      "a peer process that sends, closes and exits before the reader reads: every message, then Closed",
      () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          // the peer sends 4100 messages (a few more than the inbox holds), closes and exits; we read only after
          const { channel, pid } = yield* crossPeer(subject, transport, "leaver")
          yield* eventually(() => !processExists(pid), "30 seconds", `the peer process ${pid} to exit`)
          const all = yield* Stream.runCollect(channel.messages)
          assert.strictEqual(all.length, 4100, "messages read")
          assert.isTrue(all.every((message, i) => numberOf(message) === i), "in order")
          const error = yield* Effect.flip(channel.receive)
          assert.strictEqual(error.reason._tag, "Closed", error.message)
        }).pipe(Effect.scoped),
      60_000
    )

    needs("peer-process")(
      `closing the scope ends the connection to a peer process and releases its descriptors${fdsNotCounted}`,
      () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          const before = openFds()
          yield* Effect.scoped(Effect.gen(function*() {
            const { channel } = yield* crossPeer(subject, transport, "echo-server")
            yield* channel.send(numbered(3))
            assert.strictEqual(numberOf(yield* channel.receive), 3)
          }))
          yield* eventually(() => openFds() <= before, "20 seconds", `file descriptors back to ${before}`)
        }),
      60_000
    )

    // how fast a lost peer is noticed is a figure for the bench; here a generous bound only guards against a hang
    needs("peer-process")(
      "reports a peer process killed mid-stream as ConnectionLost, not a hang",
      () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          const peer = yield* crossPeer(subject, transport, "streamer")
          let received = 0
          while (received < 1000) received += (yield* peer.channel.receiveAll).length
          yield* peer.kill
          // what the streamer had sent is read first (over TCP, megabytes in socket buffers: 40 s in all was
          // not enough with two suites at once on two cores); a hang is a reader that gets nothing for 20 s
          const error = yield* peer.channel.receiveAll.pipe(
            Effect.timeout("20 seconds"),
            Effect.forever,
            Effect.flip
          )
          assert.instanceOf(error, IpcError.IpcError)
          assert.strictEqual(error.reason._tag, "ConnectionLost")
        }).pipe(Effect.scoped),
      120_000
    )

    needs("peer-process")(
      "reports a peer process killed under a waiting reader as ConnectionLost, not a hang",
      () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          const peer = yield* crossPeer(subject, transport, "echo-server")
          yield* peer.channel.send(numbered(1))
          assert.strictEqual(numberOf(yield* peer.channel.receive), 1)
          // started at once: the reader is waiting before the peer dies
          const waiting = yield* Effect.forkScoped(Effect.flip(peer.channel.receive), { startImmediately: true })
          yield* peer.kill
          const error = yield* Fiber.join(waiting).pipe(Effect.timeout("15 seconds"))
          assert.strictEqual(error.reason._tag, "ConnectionLost")
        }).pipe(Effect.scoped),
      60_000
    )

    // (the CLI's send reported a message sent, exit 0, that the listener had dropped with the connection)
    needs("peer-process")(
      "closeChecked succeeds once the peer answered the goodbye, and fails ConnectionLost after the peer was lost",
      () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          const answered = yield* crossPeer(subject, transport, "echo-server")
          yield* answered.channel.send(numbered(1))
          assert.strictEqual(numberOf(yield* answered.channel.receive), 1)
          yield* IpcChannel.closeChecked(answered.channel).pipe(Effect.timeout("15 seconds"))

          const lost = yield* crossPeer(subject, transport, "echo-server")
          yield* lost.channel.send(numbered(2))
          assert.strictEqual(numberOf(yield* lost.channel.receive), 2)
          yield* lost.kill
          const seen = yield* Effect.flip(lost.channel.receive).pipe(Effect.timeout("15 seconds"))
          assert.strictEqual(seen.reason._tag, "ConnectionLost")
          // the channel's own close (and a close through a wrapper of the transport's) has nothing to say
          // of it; the checked one does, through whatever the transport wrapped its close in
          const error = yield* Effect.flip(IpcChannel.closeChecked(lost.channel)).pipe(Effect.timeout("15 seconds"))
          assert.strictEqual(error.reason._tag, "ConnectionLost", error.message)
        }).pipe(Effect.scoped),
      60_000
    )

    needs("peer-process")(
      "reconnects RPC after a server restart; an in-flight call fails typed and is not replayed",
      () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          let address: string
          let stop: Effect.Effect<void, Error>
          let restart: Effect.Effect<void, Error, Scope.Scope>
          if (viaChild) {
            // each dial starts a child; the client redials by itself, which starts a fresh one
            const tag = `conformance-rpc-${process.pid}-${Date.now()}`
            address = childAddress(subject, "rpc-server", [tag])
            stop = Effect.gen(function*() {
              const pids = pidsTagged(tag)
              assert.strictEqual(pids.length, 1, `one rpc-server child (${pids.join(", ")})`)
              process.kill(pids[0]!, "SIGKILL")
              yield* eventually(() => gone(pids[0]!), "20 seconds", "the killed child is gone")
            })
            restart = Effect.void
          } else {
            address = subject.address()
            const first = yield* spawnPeer(subject, "rpc-server", address)
            stop = kill(first)
            restart = Effect.asVoid(spawnPeer(subject, "rpc-server", address))
          }
          const client = yield* rpcClient(address, transport)
          assert.strictEqual(yield* client.Echo({ n: 1 }), 1)
          const inFlight = yield* Effect.forkScoped(Effect.flip(client.Sleep({ millis: 60_000 })))
          // the server has the Sleep once it has counted two calls
          yield* Effect.gen(function*() {
            while ((yield* client.Calls()) < 2) yield* Effect.sleep("20 millis")
          }).pipe(Effect.timeout("20 seconds"))
          yield* stop
          const lost = yield* Fiber.join(inFlight).pipe(Effect.timeout("15 seconds"))
          assert.strictEqual(lost._tag, "RpcClientError")
          yield* restart
          // later calls succeed once the client has redialled
          const echoed = yield* client.Echo({ n: 2 }).pipe(
            Effect.retry(Schedule.spaced("50 millis")),
            Effect.timeout("15 seconds")
          )
          assert.strictEqual(echoed, 2)
          // the new server never saw the Sleep that was in flight: one Echo only
          assert.strictEqual(yield* client.Calls(), 1)
        }).pipe(Effect.scoped),
      60_000
    )
  })
}
