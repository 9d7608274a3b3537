/**
 * The conformance suite: one set of tests that every transport runs
 * unchanged, as `Conformance.suite(subject)` in its own test file. It checks
 * ordering and loss over 100k messages, message sizes from 0 B to 16 MiB,
 * back-pressure, 1000 concurrent RPC calls, a peer killed mid-stream, scoped
 * clean-up of OS resources, RPC reconnect after a server restart, and that
 * bad frames cost only the offending connection. Cross-process cases run the
 * peer in a real child process (`peer.ts`).
 *
 * @since 0.1.0
 */
import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as RpcClient from "effect/rpc/RpcClient"
import * as RpcServer from "effect/rpc/RpcServer"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import { fileURLToPath } from "node:url"
import * as IpcChannel from "../IpcChannel.ts"
import * as IpcError from "../IpcError.ts"
import * as IpcRpc from "../IpcRpc.ts"
import type * as Registry from "../Registry.ts"
import * as Transport from "../Transport.ts"
import { ConformanceApi, ConformanceHandlers, Refused } from "./ConformanceApi.ts"

/** A raw byte connection to a listener, for feeding it malformed input. */
export interface RawConnection {
  readonly write: (bytes: Uint8Array) => Effect.Effect<void>
  /** Completes when the listener has dropped this connection. */
  readonly dropped: Effect.Effect<void>
}

/** A transport under test. */
export interface Subject {
  /** Name shown in the test titles. */
  readonly name: string
  /** The transport, as its package describes it to the registry. */
  readonly descriptor: Registry.TransportDescriptor
  /** A fresh address for one test. */
  readonly address: () => string
  /**
   * Where a child process finds the descriptor (module specifier and export
   * name); absent for in-process transports. `via: "spawn"` (default): the
   * suite starts the peer and it listens or dials at an address; `via:
   * "child"`: dialling `child:<command line>` starts the peer, which serves
   * its parent (child-process pipes).
   */
  readonly peer?: {
    readonly module: string
    readonly export: string
    readonly via?: "spawn" | "child" | undefined
  } | undefined
  /** False when both ends cannot live in the test process (child pipes): in-process cases are not registered. */
  readonly inProcess?: boolean | undefined
  /** True when a listener serves one peer at a time (FIFOs). */
  readonly singlePeer?: boolean | undefined
  /** Opens a raw byte connection to `address` (byte-stream transports). */
  readonly raw?: ((address: string) => Effect.Effect<RawConnection, IpcError.IpcError, Scope.Scope>) | undefined
  /** The largest frame the transport accepts by default. */
  readonly maxFrameSize: number
  /** Paths the transport leaves in the file system for `address` while in use (all must be gone after close). */
  readonly residue?: ((address: string) => ReadonlyArray<string>) | undefined
}

const peerScript = fileURLToPath(new URL("./peer.ts", import.meta.url))

type Role = "echo-server" | "rpc-server" | "streamer"

const peerArgs = (subject: Subject, role: Role, address: string): Array<string> => [
  "--conditions=@effect-ipc/source",
  "--disable-warning=ExperimentalWarning",
  peerScript,
  subject.peer!.module,
  subject.peer!.export,
  role,
  address
]

/** The `child:` address whose dialling starts the suite's peer in `role`, serving its parent. */
const childAddress = (subject: Subject, role: Role): string =>
  `child:${encodeURIComponent(JSON.stringify([process.execPath, ...peerArgs(subject, role, "child:parent")]))}`

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
    }).pipe(Effect.timeout("20 seconds")),
    (child) => kill(child)
  )

/** Kills a child with SIGKILL and waits for it to be gone. */
export const kill = (child: ChildProcess.ChildProcess): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    child.once("exit", () => resume(Effect.void))
    child.kill("SIGKILL")
  })

const openFds = (): number => Fs.readdirSync("/proc/self/fd").length

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

const numbered = (i: number): Uint8Array => {
  const out = new Uint8Array(8)
  new DataView(out.buffer).setUint32(0, i)
  return out
}
const numberOf = (message: Uint8Array): number =>
  new DataView(message.buffer, message.byteOffset, message.byteLength).getUint32(0)

const transportOf = (subject: Subject) => subject.descriptor.make

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
}

const killPid = (pid: number | undefined): Effect.Effect<void> =>
  pid === undefined
    ? Effect.die(new Error("the channel does not know its peer's pid"))
    : Effect.sync(() => void process.kill(pid, "SIGKILL"))

/** Starts a peer process in `role` and connects to it (an echo server, or a streamer sending to us). */
const crossPeer = (
  subject: Subject,
  transport: Transport.TransportShape,
  role: "echo-server" | "streamer"
): Effect.Effect<CrossPeer, Error | IpcError.IpcError, Scope.Scope> =>
  Effect.gen(function*() {
    if (subject.peer?.via === "child") {
      const channel = yield* transport.dial(childAddress(subject, role))
      return { channel, kill: killPid(channel.peer.pid) }
    }
    const address = subject.address()
    if (role === "echo-server") {
      const child = yield* spawnPeer(subject, role, address)
      return { channel: yield* transport.dial(address), kill: kill(child) }
    }
    const listener = yield* transport.listen(address)
    const child = yield* spawnPeer(subject, role, address)
    return { channel: yield* listener.accept, kill: kill(child) }
  })

/** Starts a peer process serving `ConformanceApi` and returns the address to call it at. */
const rpcPeer = (subject: Subject): Effect.Effect<string, Error, Scope.Scope> =>
  Effect.gen(function*() {
    if (subject.peer?.via === "child") return childAddress(subject, "rpc-server")
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

/** Waits until `check` holds, polling every 20 ms, failing after `within`. */
const eventually = (check: () => boolean, within: Duration.Input, what: string): Effect.Effect<void, Error> =>
  Effect.gen(function*() {
    const deadline = Date.now() + Duration.toMillis(Duration.fromInputUnsafe(within))
    while (!check()) {
      if (Date.now() > deadline) return yield* Effect.fail(new Error(`timed out waiting: ${what}`))
      yield* Effect.sleep("20 millis")
    }
  })

/** Registers the whole conformance suite for `subject`. */
export const suite = (subject: Subject): void => {
  const crossProcess = subject.peer !== undefined
  const spawned = crossProcess && subject.peer?.via !== "child"
  // a case of in-process behaviour, registered only where both ends can live in this process
  const local = subject.inProcess === false ? () => undefined : it.live

  describe(`conformance: ${subject.name}`, () => {
    it.live("delivers 100k messages in order, none lost, one send = one receive", () =>
      Effect.gen(function*() {
        const transport = yield* transportOf(subject)
        const address = subject.address()
        const total = 100_000
        // through an echo server in another process where there is one: both directions cross it
        const client = crossProcess
          ? (yield* crossPeer(subject, transport, "echo-server")).channel
          : yield* echoPair(transport, address)
        yield* Effect.forkScoped(
          Effect.forEach(Array.from({ length: total }, (_, i) => i), (i) => client.send(numbered(i)), { discard: true })
        )
        let expected = 0
        while (expected < total) {
          const batch = yield* client.receiveAll
          for (const message of batch) {
            assert.strictEqual(message.byteLength, 8)
            assert.strictEqual(numberOf(message), expected)
            expected++
          }
        }
        assert.strictEqual(expected, total)
      }).pipe(Effect.scoped), 60_000)

    it.live("carries messages of 0 B, 1 B, 64 KiB and 16 MiB whole", () =>
      Effect.gen(function*() {
        const transport = yield* transportOf(subject)
        const address = subject.address()
        // through an echo server in another process where there is one: both directions cross it
        const client = crossProcess
          ? (yield* crossPeer(subject, transport, "echo-server")).channel
          : yield* echoPair(transport, address)
        const sizes = [0, 1, 64 * 1024, 16 * 1024 * 1024, 1, 0]
        for (const [i, size] of sizes.entries()) {
          const sent = pattern(size, i)
          yield* client.send(sent)
          const got = yield* client.receive
          assert.strictEqual(got.byteLength, size, `size ${size}`)
          assert.isTrue(sameBytes(got, sent), `content of the ${size}-byte message`)
        }
      }).pipe(Effect.scoped), 60_000)

    local(
      "back-pressures a sender whose receiver does not read, then delivers everything",
      () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          const address = subject.address()
          const { client, server } = yield* connected(transport, address)
          const message = new Uint8Array(64 * 1024)
          let sent = 0
          const sender = yield* Effect.forkScoped(
            Effect.forever(Effect.andThen(client.send(message), Effect.sync(() => sent++)))
          )
          // the sender stalls: buffers are bounded, far below 1 GiB
          yield* Effect.sleep("300 millis")
          const stalledAt = sent
          yield* Effect.sleep("200 millis")
          assert.strictEqual(sent, stalledAt, "the sender kept going while nobody read")
          assert.isBelow(sent * message.byteLength, 256 * 1024 * 1024)
          // reading resumes the flow
          let received = 0
          while (received < stalledAt + 10) received += (yield* server.receiveAll).length
          yield* eventually(() => sent >= stalledAt + 10, "2 seconds", "the sender resumes")
          yield* Fiber.interrupt(sender)
        }).pipe(Effect.scoped),
      30_000
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

    local(
      "reports the end of input: graceful close ends the stream, the reader sees Closed",
      () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          const address = subject.address()
          const { client, server } = yield* connected(transport, address)
          for (let i = 0; i < 10; i++) yield* client.send(numbered(i))
          yield* client.close
          const all = yield* Stream.runCollect(server.messages)
          assert.deepStrictEqual(all.map(numberOf), Array.from({ length: 10 }, (_, i) => i))
          const error = yield* Effect.flip(server.receive)
          assert.strictEqual(error.reason, "Closed")
          const sendAfterClose = yield* Effect.flip(client.send(numbered(0)))
          assert.strictEqual(sendAfterClose.reason, "Closed")
        }).pipe(Effect.scoped),
      30_000
    )

    local(
      "fails with typed errors: nothing at the address, address in use, malformed address",
      () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          const address = subject.address()
          const notFound = yield* Effect.flip(transport.dial(address))
          assert.strictEqual(notFound.reason, "NotFound")
          yield* transport.listen(address)
          const inUse = yield* Effect.flip(transport.listen(address))
          assert.strictEqual(inUse.reason, "AddressInUse")
          const malformed = yield* Effect.flip(transport.dial("no scheme here"))
          assert.strictEqual(malformed.reason, "InvalidAddress")
        }).pipe(Effect.scoped),
      30_000
    )

    local(
      "rejects a message over the frame limit with FrameTooLarge and keeps the channel",
      () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          const address = subject.address()
          const { client, server } = yield* connected(transport, address)
          const tooLarge = yield* Effect.flip(client.send(new Uint8Array(subject.maxFrameSize + 1)))
          assert.strictEqual(tooLarge.reason, "FrameTooLarge")
          yield* client.send(numbered(7))
          assert.strictEqual(numberOf(yield* server.receive), 7)
        }).pipe(Effect.scoped),
      30_000
    )

    local(
      "decodes through a Schema: values in, values out, bad input is a Decode error",
      () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          const address = subject.address()
          const { client, server } = yield* connected(transport, address)
          const Point = Schema.Struct({ x: Schema.Number, y: Schema.Number, tag: Schema.Uint8Array })
          const typedClient = IpcChannel.typed(client, Point)
          const typedServer = IpcChannel.typed(server, Point)
          yield* typedClient.send({ x: 1, y: 2, tag: new Uint8Array([9, 8]) })
          const point = yield* typedServer.receive
          assert.deepStrictEqual({ ...point, tag: [...point.tag] }, { x: 1, y: 2, tag: [9, 8] })
          yield* client.send(new TextEncoder().encode(`{"x":"not a number"}`))
          const error = yield* Effect.flip(typedServer.receive)
          assert.strictEqual(error.reason, "Decode")
        }).pipe(Effect.scoped),
      30_000
    )

    local("releases every OS resource when the scope closes", () =>
      Effect.gen(function*() {
        const transport = yield* transportOf(subject)
        const address = subject.address()
        const before = openFds()
        yield* Effect.scoped(Effect.gen(function*() {
          const listener = yield* transport.listen(address)
          for (let i = 0; i < 10; i++) {
            const client = yield* transport.dial(address)
            const server = yield* listener.accept
            yield* client.send(numbered(i))
            assert.strictEqual(numberOf(yield* server.receive), i)
            if (subject.singlePeer) yield* client.close
          }
          if (subject.residue !== undefined) {
            assert.isAbove(subject.residue(address).length, 0, "the transport shows its files while open")
          }
        }))
        yield* eventually(() => openFds() <= before, "2 seconds", `file descriptors back to ${before}`)
        if (subject.residue !== undefined) assert.deepStrictEqual(subject.residue(address), [])
        // and the address can be used again at once
        yield* Effect.scoped(transport.listen(address))
      }).pipe(Effect.scoped), 30_000)

    local("releases resources when the scope is interrupted or fails", () =>
      Effect.gen(function*() {
        const transport = yield* transportOf(subject)
        const address = subject.address()
        const before = openFds()
        const exit = yield* Effect.exit(Effect.scoped(Effect.gen(function*() {
          const listener = yield* transport.listen(address)
          yield* transport.dial(address)
          yield* listener.accept
          return yield* Effect.fail("boom")
        })))
        assert.isTrue(Exit.isFailure(exit))
        const fiber = yield* Effect.forkChild(Effect.scoped(Effect.gen(function*() {
          const listener = yield* transport.listen(address)
          yield* transport.dial(address)
          yield* listener.accept
          return yield* Effect.never
        })))
        yield* Effect.sleep("100 millis")
        yield* Fiber.interrupt(fiber)
        yield* eventually(() => openFds() <= before, "2 seconds", `file descriptors back to ${before}`)
        if (subject.residue !== undefined) assert.deepStrictEqual(subject.residue(address), [])
      }).pipe(Effect.scoped), 30_000)

    if (subject.raw !== undefined) {
      const raw = subject.raw
      it.live(
        "drops a connection that sends garbage or an oversized frame, and keeps serving others",
        () =>
          Effect.gen(function*() {
            const transport = yield* transportOf(subject)
            const address = subject.address()
            const listener = yield* transport.listen(address)
            const errors: Array<IpcError.IpcError> = []
            yield* Effect.forkScoped(Transport.serve(listener, (channel) =>
              Effect.forever(Effect.flatMap(channel.receive, channel.send)).pipe(
                Effect.tapError((error) => Effect.sync(() => errors.push(error)))
              )))
            const good = yield* transport.dial(address)
            const garbage = yield* raw(address)
            yield* garbage.write(new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"))
            yield* garbage.dropped.pipe(Effect.timeout("1 second"))
            const oversized = yield* raw(address)
            const header = new Uint8Array(6)
            header[0] = 1
            new DataView(header.buffer).setUint32(2, 0xffff_fff0)
            yield* oversized.write(header)
            yield* oversized.dropped.pipe(Effect.timeout("1 second"))
            const huge = yield* raw(address)
            // a length prefix of 2^63 (as 8 bytes) is garbage to a 6-byte header too
            yield* huge.write(new Uint8Array([0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]))
            yield* huge.dropped.pipe(Effect.timeout("1 second"))
            yield* eventually(
              () =>
                errors.length >= 3,
              "1 second",
              "three connection errors"
            )
            assert.deepStrictEqual(
              errors.map((e) => e.reason).toSorted(),
              ["FrameTooLarge", "Protocol", "Protocol"]
            )
            for (let i = 0; i < 100; i++) {
              yield* good.send(numbered(i))
              assert.strictEqual(numberOf(yield* good.receive), i)
            }
          }).pipe(Effect.scoped),
        30_000
      )

      it.live("reports a frame cut off by a disconnect as ConnectionLost", () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          const address = subject.address()
          const listener = yield* transport.listen(address)
          yield* Effect.scoped(Effect.gen(function*() {
            const conn = yield* raw(address)
            const frame = new Uint8Array(6 + 4)
            frame[0] = 1
            new DataView(frame.buffer).setUint32(2, 100)
            yield* conn.write(frame)
          }))
          const server = yield* listener.accept
          const error = yield* Effect.flip(server.receive)
          assert.strictEqual(error.reason, "ConnectionLost")
        }).pipe(Effect.scoped), 30_000)
    }

    if (crossProcess) {
      it.live(
        "closing the scope ends the connection to a peer process and releases its descriptors",
        () =>
          Effect.gen(function*() {
            const transport = yield* transportOf(subject)
            const before = openFds()
            yield* Effect.scoped(Effect.gen(function*() {
              const { channel } = yield* crossPeer(subject, transport, "echo-server")
              yield* channel.send(numbered(3))
              assert.strictEqual(numberOf(yield* channel.receive), 3)
            }))
            yield* eventually(() => openFds() <= before, "3 seconds", `file descriptors back to ${before}`)
          }),
        30_000
      )

      it.live("reports a peer process killed mid-stream as a typed error within 1 s", () =>
        Effect.gen(function*() {
          const transport = yield* transportOf(subject)
          const peer = yield* crossPeer(subject, transport, "streamer")
          let received = 0
          while (received < 1000) received += (yield* peer.channel.receiveAll).length
          const killedAt = Date.now()
          yield* peer.kill
          const error = yield* peer.channel.receiveAll.pipe(Effect.forever, Effect.flip, Effect.timeout("5 seconds"))
          const elapsed = Date.now() - killedAt
          assert.instanceOf(error, IpcError.IpcError)
          assert.strictEqual(error.reason, "ConnectionLost")
          assert.isBelow(elapsed, 1000, `noticed after ${elapsed} ms`)
        }).pipe(Effect.scoped), 30_000)

      it.live(
        "reports a peer process killed under a waiting reader as a typed error within 1 s",
        () =>
          Effect.gen(function*() {
            const transport = yield* transportOf(subject)
            const peer = yield* crossPeer(subject, transport, "echo-server")
            yield* peer.channel.send(numbered(1))
            assert.strictEqual(numberOf(yield* peer.channel.receive), 1)
            const waiting = yield* Effect.forkScoped(Effect.flip(peer.channel.receive))
            yield* Effect.sleep("50 millis")
            const killedAt = Date.now()
            yield* peer.kill
            const error = yield* Fiber.join(waiting).pipe(Effect.timeout("5 seconds"))
            assert.strictEqual(error.reason, "ConnectionLost")
            assert.isBelow(Date.now() - killedAt, 1000)
          }).pipe(Effect.scoped),
        30_000
      )
    }

    if (spawned) {
      it.live(
        "reconnects RPC after a server restart; an in-flight call fails typed and is not replayed",
        () =>
          Effect.gen(function*() {
            const transport = yield* transportOf(subject)
            const address = subject.address()
            const first = yield* spawnPeer(subject, "rpc-server", address)
            const client = yield* rpcClient(address, transport)
            assert.strictEqual(yield* client.Echo({ n: 1 }), 1)
            const inFlight = yield* Effect.forkScoped(Effect.flip(client.Sleep({ millis: 60_000 })))
            yield* Effect.sleep("100 millis")
            yield* kill(first)
            const lost = yield* Fiber.join(inFlight).pipe(Effect.timeout("5 seconds"))
            assert.strictEqual(lost._tag, "RpcClientError")
            yield* spawnPeer(subject, "rpc-server", address)
            // later calls succeed once the client has redialled
            const echoed = yield* client.Echo({ n: 2 }).pipe(
              Effect.retry(Schedule.spaced("50 millis")),
              Effect.timeout("10 seconds")
            )
            assert.strictEqual(echoed, 2)
            // the new server never saw the Sleep that was in flight: one Echo only
            assert.strictEqual(yield* client.Calls(), 1)
          }).pipe(Effect.scoped),
        60_000
      )
    }
  })
}
