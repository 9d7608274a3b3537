/**
 * The floor under the RPC calls/s target: the client's CPU per call (Echo of
 * 64 B, 64 callers, SchemaBinary, measured with `process.cpuUsage`) with
 * effect's own `RpcClient` over a socket that costs nothing (`floor`: writes
 * handed to an in-process stand-in for the server, which answers a turn's
 * requests in one `setImmediate`, its CPU time taken per batch and left out),
 * beside the same client over effect-ipc's IpcRpc (`ipc-binary`) and over
 * effect's NodeSocket (`effect-binary`), each against a server in a child
 * process (`rpc-floor.ts serve STACK ADDRESS`). With 64 callers the client
 * is the busy process, so its CPU per call sets calls/s: a stack can be at
 * most (effect's CPU per call / the floor's) times effect's calls/s. Also
 * printed: the server's CPU per call (from `/proc`), and the client's read
 * and write system calls per call (`/proc/self/io`).
 *
 *   node bench/rpc-floor.ts [floor|ipc-binary|effect-binary] [--seconds=3] [--procedure=Echo|Add]
 */
import { DemoApi } from "effect-ipc/DemoApi"
import type { NonEmptyReadonlyArray } from "effect/Array"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as RpcClient from "effect/rpc/RpcClient"
import type * as RpcMessage from "effect/rpc/RpcMessage"
import * as RpcSerialization from "effect/rpc/RpcSerialization"
import * as Schema from "effect/Schema"
import * as Socket from "effect/socket/Socket"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { connectStack, type DemoClient, serveStack, stackAddress } from "./rpc.ts"
import { argValue, type RpcStack } from "./shared.ts"

const seconds = Number(argValue("seconds") ?? "3")
const procedure = argValue("procedure") === "Add" ? "Add" : "Echo"
const CALLERS = 64
const data = new Uint8Array(64).fill(7)

/** Read and write system calls of this process so far. */
const syscalls = (): { readonly reads: number; readonly writes: number } => {
  const io = Fs.readFileSync("/proc/self/io", "utf8")
  return { reads: Number(/syscr: (\d+)/.exec(io)?.[1]), writes: Number(/syscw: (\d+)/.exec(io)?.[1]) }
}

/** CPU time of process `pid` so far, in µs (0 without one). */
const cpuOf = (pid: number | undefined): number => {
  if (pid === undefined) return 0
  const fields = Fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
  return (Number(fields[11]) + Number(fields[12])) * 1e6 / 100
}

interface Measured {
  readonly calls: number
  readonly seconds: number
  readonly clientUs: number
  readonly serverUs: number
  readonly reads: number
  readonly writes: number
}

/** `CALLERS` fibers calling `call` until `until`, `count` told of each call. */
const callers = (call: Effect.Effect<unknown, unknown>, until: number, count: () => void) =>
  Effect.forEach(Array.from({ length: CALLERS }), () =>
    Effect.gen(function*() {
      while (performance.now() < until) {
        yield* call
        count()
      }
    }), { concurrency: "unbounded", discard: true })

/** `CALLERS` callers of `call` for a second (untimed), then for `seconds`, measured. */
const measure = (
  call: Effect.Effect<unknown, unknown>,
  serverPid: number | undefined,
  onStart: () => void = () => {}
): Effect.Effect<Measured, unknown> =>
  Effect.gen(function*() {
    yield* callers(call, performance.now() + 1000, () => {})
    let calls = 0
    onStart()
    const io = syscalls()
    const server = cpuOf(serverPid)
    const cpu = process.cpuUsage()
    const start = performance.now()
    yield* callers(call, start + seconds * 1000, () => void calls++)
    const used = process.cpuUsage(cpu)
    const ioAfter = syscalls()
    return {
      calls,
      seconds: (performance.now() - start) / 1000,
      clientUs: used.user + used.system,
      serverUs: cpuOf(serverPid) - server,
      reads: ioAfter.reads - io.reads,
      writes: ioAfter.writes - io.writes
    }
  })

const callOf = (client: DemoClient): Effect.Effect<unknown, unknown> =>
  procedure === "Echo" ? client.Echo({ data }) : client.Add({ a: 20, b: 22 })

/** effect's client over a socket that costs nothing; the stand-in server's time is measured and left out. */
const floor: Effect.Effect<Measured, unknown> = Effect.scoped(Effect.gen(function*() {
  const serialization = yield* RpcSerialization.RpcSerialization
  const server = serialization.makeUnsafe()
  const exitOf = <A>(schema: Schema.Codec<A, unknown>, value: A) =>
    Schema.encodeSync(serialization.codecFor(Schema.Exit(schema, Schema.Never, Schema.Defect())))(Exit.succeed(value))
  const exit = procedure === "Echo" ? exitOf(Schema.Uint8Array, data) : exitOf(Schema.Number, 42)
  // the stand-in's CPU time (decoding the requests, encoding the replies), taken once per batch
  let serverUs = 0
  let requests: Array<Uint8Array> = []
  let replies: Array<Uint8Array> = []
  let waiting: ((batch: NonEmptyReadonlyArray<Uint8Array>) => void) | undefined
  let scheduled = false
  const serve = () => {
    scheduled = false
    const cpu = process.cpuUsage()
    for (const chunk of requests) {
      for (const message of server.decode(chunk) as ReadonlyArray<RpcMessage.FromClientEncoded>) {
        if (message._tag !== "Request") continue
        const reply = server.encode({ _tag: "Exit", requestId: message.id, exit } as RpcMessage.FromServerEncoded)
        if (reply instanceof Uint8Array) replies.push(reply)
      }
    }
    requests = []
    const used = process.cpuUsage(cpu)
    serverUs += used.user + used.system
    handOver()
  }
  const handOver = () => {
    const [first, ...rest] = replies
    if (waiting === undefined || first === undefined) return
    const resume = waiting
    waiting = undefined
    replies = []
    resume([first, ...rest])
  }
  const write = (chunk: Uint8Array | string | Socket.CloseEvent): Effect.Effect<void> =>
    Effect.sync(() => {
      if (Socket.isCloseEvent(chunk) || typeof chunk === "string") return
      requests.push(chunk)
      if (!scheduled) {
        scheduled = true
        setImmediate(serve)
      }
    })
  const socket = Socket.make({
    reader: Effect.succeed({
      pull: Effect.callback<NonEmptyReadonlyArray<Uint8Array>>((resume) => {
        waiting = (batch) => resume(Effect.succeed(batch))
        if (replies.length > 0) handOver()
      }),
      upgrade: Socket.SocketUpgradeError.unsupported
    }),
    writer: Effect.succeed({ write, writeAll: (chunks) => Effect.forEach(chunks, write, { discard: true }) })
  })
  const protocol = yield* RpcClient.makeProtocolSocket().pipe(Effect.provideService(Socket.Socket, socket))
  const client = yield* RpcClient.make(DemoApi).pipe(Effect.provideService(RpcClient.Protocol, protocol))
  // only the measured window's stand-in time is left out
  const measured = yield* measure(callOf(client), undefined, () => void (serverUs = 0))
  return { ...measured, clientUs: measured.clientUs - serverUs }
})).pipe(Effect.provide(RpcSerialization.layerSchemaBinary({ maxFrameSize: "unbounded" })))

/** The client over `stack`, against a server of the same stack in a child process. */
const real = (stack: RpcStack): Effect.Effect<Measured, unknown> =>
  Effect.scoped(Effect.gen(function*() {
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-rpc-floor-"))
    yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true })))
    const address = stackAddress(stack, Path.join(dir, "rpc.sock"))
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        ChildProcess.spawn(process.execPath, [...process.execArgv, import.meta.filename, "serve", stack, address], {
          stdio: ["pipe", "pipe", "inherit"]
        })
      ),
      (spawned) => Effect.sync(() => spawned.kill())
    )
    yield* Effect.callback<void>((resume) => {
      child.stdout?.once("data", () => resume(Effect.void))
    })
    const { client, close } = yield* Effect.promise(() => connectStack(stack, address))
    yield* Effect.addFinalizer(() => Effect.promise(close))
    return yield* measure(callOf(client), child.pid)
  }))

const [mode = "floor", ...rest] = process.argv.slice(2).filter((arg) => !arg.startsWith("--"))
if (mode === "serve") {
  const [stack, address] = rest as [RpcStack, string]
  // ends with the measuring process (its stdin closes)
  process.stdin.on("end", () => process.exit(0)).resume()
  void serveStack(stack, address, () => console.log("READY"))
} else {
  const stack = mode === "floor" ? undefined : mode as RpcStack
  const measured = await Effect.runPromise(stack === undefined ? floor : real(stack))
  const per = (n: number) => Number((n / measured.calls).toFixed(3))
  console.log(JSON.stringify({
    stack: mode,
    procedure,
    callsPerSecond: Math.round(measured.calls / measured.seconds),
    clientUsPerCall: per(measured.clientUs),
    serverUsPerCall: per(measured.serverUs),
    readsPerCall: per(measured.reads),
    writesPerCall: per(measured.writes)
  }))
  process.exit(0)
}
