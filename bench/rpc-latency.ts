/**
 * Where one RPC round trip's time goes, across both processes: `Echo` of 64 B
 * (or `--size` bytes) through effect-ipc's IpcRpc over `unix://` against
 * effect's own RPC over a Node socket, with the same serialization
 * (SchemaBinary by default), the server in a child process. Both processes
 * stamp (see `stamps.ts`) as a socket write starts and returns, as a socket
 * reads a chunk, as the serialization decodes and encodes, and as the handler
 * runs; the report gives, per segment, the median over the runs of each run's
 * median, in µs, and ours over effect's. Runs alternate between the stacks,
 * because this VM's speed drifts by 1.5x over minutes; the client runs on one
 * CPU and the server on another (`pin.ts`, unless `--pin=off`). A segment
 * from a socket's read starts at the message's first chunk.
 *
 *   node bench/rpc-latency.ts [--rounds=6000] [--runs=8] [--stacks=ipc-binary,effect-binary] [--size=64] [--pin=off]
 *
 * (`--rounds` is 300 from 64 KiB on.) effect's schema-binary parser is handed
 * each chunk as it arrives: a decode segment is its last call before the
 * handler (the server) or the call's end (the client).
 *
 * The server runs as `rpc-latency.ts serve STACK PATH OUT`.
 */
import { DemoApi, DivisionByZero } from "effect-ipc/DemoApi"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as RpcSerialization from "effect/rpc/RpcSerialization"
import * as Stream from "effect/Stream"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { pinDriver, pinPeers, type Placement } from "./pin.ts"
import { connectStack, serveStack, stackAddress, type StackOptions } from "./rpc.ts"
import { argValue, type RpcStack, rpcStacks } from "./shared.ts"
import {
  clearStamps,
  firstAfter,
  lastBefore,
  median,
  peerStamps,
  Segments,
  stamp,
  stamps,
  stampSockets,
  writeStampsOnTerm
} from "./stamps.ts"

/** The payload's size, and the calls before the measured ones (fewer for large payloads). */
const size = Number(argValue("size") ?? "64")
const WARMUP = size >= 64 * 1024 ? 50 : 3000
stampSockets()

/** The stack's serialization, stamping each decode and encode (`decode`/`decoded`, `encode`/`encoded`). */
const stampedSerialization = (
  layer: Layer.Layer<RpcSerialization.RpcSerialization>
): Layer.Layer<RpcSerialization.RpcSerialization> =>
  Layer.effect(RpcSerialization.RpcSerialization)(
    Effect.map(Effect.scoped(Layer.build(layer)), (context) => {
      const inner = context.mapUnsafe.get(RpcSerialization.RpcSerialization.key) as RpcSerialization.RpcSerialization[
        "Service"
      ]
      return RpcSerialization.RpcSerialization.of({
        ...inner,
        makeUnsafe: () => {
          const parser = inner.makeUnsafe()
          return {
            decode: (data) => {
              stamp("decode")
              const decoded = parser.decode(data)
              stamp("decoded")
              return decoded
            },
            encode: (message) => {
              stamp("encode")
              const encoded = parser.encode(message)
              stamp("encoded")
              return encoded
            }
          }
        }
      })
    })
  )

/** The demo's handlers, `Echo` stamping as it runs (`handler`). */
const stampedHandlers = DemoApi.toLayer(Effect.sync(() => {
  const notes: Array<string> = []
  return {
    Greet: ({ name }) => Effect.succeed(`Hello, ${name}!`),
    Add: ({ a, b }) => Effect.succeed(a + b),
    Divide: ({ a, b }) => b === 0 ? Effect.fail(new DivisionByZero({ dividend: a })) : Effect.succeed(a / b),
    Countdown: ({ from }) => Stream.range(0, from - 1).pipe(Stream.map((i) => from - i)),
    Echo: ({ data }) =>
      Effect.sync(() => {
        stamp("handler")
        return data
      }),
    Record: ({ note }) => Effect.sync(() => void notes.push(note)),
    Notes: () => Effect.sync(() => [...notes])
  }
}))

const stamped: StackOptions = { serialization: stampedSerialization, handlers: stampedHandlers }

/** One measurement: `rounds` Echo calls of `size` bytes, the server in a child process; the median of each segment. */
const measure = async (stack: RpcStack, rounds: number): Promise<Record<string, number>> => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-rpc-latency-"))
  const path = Path.join(dir, "rpc.sock")
  const out = Path.join(dir, "server.json")
  try {
    const server = ChildProcess.fork(import.meta.filename, ["serve", stack, path, out], { execArgv: process.execArgv })
    await new Promise((resolve, reject) => {
      server.once("message", resolve)
      server.once("exit", (code) => reject(new Error(`the ${stack} server exited (${code}) before it served`)))
    })
    pinPeers(placement)
    const { client, close } = await connectStack(stack, stackAddress(stack, path), stamped)
    const data = new Uint8Array(size).fill(7)
    await Effect.runPromise(Effect.gen(function*() {
      for (let i = 0; i < WARMUP + rounds; i++) {
        if (i === WARMUP) clearStamps()
        stamp("start")
        yield* client.Echo({ data })
        stamp("end")
      }
    }))
    const driver = { ...stamps }
    await close()
    clearStamps()
    const peer = await peerStamps(server, out)
    const segments = new Segments()
    const add = (name: string, from: number, to: number) => segments.add(name, from, to)
    for (let i = 0; i < (driver.start?.length ?? 0); i++) {
      const start = driver.start![i]!
      const end = driver.end![i]!
      const encode = firstAfter(driver.encode, start)
      const encoded = firstAfter(driver.encoded, encode)
      const sent = firstAfter(driver.write, encoded)
      const sentBack = firstAfter(driver.written, sent)
      const arrived = firstAfter(peer.push, sent)
      const handled = firstAfter(peer.handler, arrived)
      const decode = lastBefore(peer.decode, handled)
      const decoded = firstAfter(peer.decoded, decode)
      const replyEncode = firstAfter(peer.encode, handled)
      const replyEncoded = firstAfter(peer.encoded, replyEncode)
      const answered = firstAfter(peer.write, replyEncoded)
      const answeredBack = firstAfter(peer.written, answered)
      const back = firstAfter(driver.push, answered)
      const replyDecode = lastBefore(driver.decode, end)
      const replyDecoded = firstAfter(driver.decoded, replyDecode)
      if (!(arrived <= decode && decoded <= handled && back <= replyDecode && replyDecoded <= end)) continue
      add("client: call to encode", start, encode)
      add("client: encode", encode, encoded)
      add("client: encoded to socket write", encoded, sent)
      add("client: socket write (syscall)", sent, sentBack)
      add("to the server's read", sentBack, arrived)
      add("server: read to decode", arrived, decode)
      add("server: decode", decode, decoded)
      add("server: decoded to handler", decoded, handled)
      add("server: handler to encode", handled, replyEncode)
      add("server: encode", replyEncode, replyEncoded)
      add("server: encoded to socket write", replyEncoded, answered)
      add("server: socket write (syscall)", answered, answeredBack)
      add("to the client's read", answeredBack, back)
      add("client: read to decode", back, replyDecode)
      add("client: decode", replyDecode, replyDecoded)
      add("client: decoded to the call's end", replyDecoded, end)
      add("round trip", start, end)
    }
    return segments.medians()
  } finally {
    Fs.rmSync(dir, { recursive: true, force: true })
  }
}

/** The driver's and the server's CPUs (`pin.ts`; `--pin=off`: the scheduler's choice). */
let placement: Placement | undefined

const main = async (): Promise<void> => {
  placement = pinDriver(true, (reason) => console.error(reason))
  if (!Number.isSafeInteger(size) || size < 1) throw new Error(`--size must be a positive integer, not ${size}`)
  const rounds = Number(argValue("rounds") ?? (size >= 64 * 1024 ? "300" : "6000"))
  const runs = Number(argValue("runs") ?? "8")
  const asked = (argValue("stacks") ?? "ipc-binary,effect-binary").split(",")
  const stacks = asked.filter((s): s is RpcStack => rpcStacks.some((known) => known === s))
  if (stacks.length === 0 || stacks.length !== asked.length) {
    throw new Error(`--stacks takes some of ${rpcStacks.join(", ")}`)
  }
  const results = new Map<RpcStack, Array<Record<string, number>>>(stacks.map((s) => [s, []]))
  for (let run = 0; run < runs; run++) {
    for (const stack of stacks) results.get(stack)!.push(await measure(stack, rounds))
  }
  const names = Object.keys(results.get(stacks[0]!)![0]!)
  const medians = (stack: RpcStack, name: string) => median(results.get(stack)!.map((r) => r[name] ?? Number.NaN))
  const ratio = stacks.length === 2 ? " | first / second" : ""
  console.log(`| median of ${runs} runs' medians, µs, Echo ${size} B | ${stacks.join(" | ")}${ratio} |`)
  console.log(`| --- | ${stacks.map(() => "---:").join(" | ")}${stacks.length === 2 ? " | ---: |" : " |"}`)
  for (const name of names) {
    const values = stacks.map((stack) => medians(stack, name))
    const shown = stacks.length === 2 ? ` | ${(values[0]! / values[1]!).toFixed(2)}x` : ""
    console.log(`| ${name} | ${values.map((v) => v.toFixed(2)).join(" | ")}${shown} |`)
  }
}

const [mode, stack, path, out] = process.argv.slice(2)
if (mode === "serve") {
  writeStampsOnTerm(out!)
  const served = rpcStacks.find((s) => s === stack)
  if (served === undefined) throw new Error(`unknown stack ${stack}`)
  void serveStack(served, stackAddress(served, path!), () => process.send?.("ready"), stamped)
} else {
  await main()
}
