/**
 * What the benchmark driver (`run.ts`) and its child-process peer (`peer.ts`)
 * agree on: the peer modes, the raw baseline's framing (a 4-byte big-endian
 * length and the payload), the end-of-run marker (an empty message) and the
 * sink's reply (its counts). Plain Node only, so that the raw peer does not
 * load effect.
 */

import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import type { Readable, Writable } from "node:stream"

/** The value of the command-line option `--name=value`, if given. */
export const argValue = (name: string): string | undefined => {
  const prefix = `--${name}=`
  return process.argv.slice(2).find((a) => a.startsWith(prefix))?.slice(prefix.length)
}

/** `--batch=N`: channel senders of one-way traffic send N messages per `IpcChannel.sendAll` (default 1: one `send` each). */
export const oneWayBatch = Math.max(1, Math.round(Number(argValue("batch") ?? "1")))

// ---- temporary directories ----------------------------------------------------

const madeDirs = new Set<string>()

/**
 * A fresh directory under the system's temporary directory, removed by
 * `removeTempDir`, or when this process exits (`process.exit`, the end of the
 * run, or the driver's SIGINT/SIGTERM handler) if still there.
 */
export const makeTempDir = (prefix: string): string => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), prefix))
  madeDirs.add(dir)
  return dir
}

/** Removes a directory made by `makeTempDir`, with its contents. */
export const removeTempDir = (dir: string): void => {
  Fs.rmSync(dir, { recursive: true, force: true })
  madeDirs.delete(dir)
}

process.on("exit", () => {
  for (const dir of madeDirs) Fs.rmSync(dir, { recursive: true, force: true })
})

/**
 * The typed-RPC stacks (see `rpc.ts`): effect-ipc's `IpcRpc` over `unix://`
 * (its default `packed` serialization, SchemaBinary, JSON) and effect's own RPC
 * over a Node Unix socket (SchemaBinary, NDJSON).
 */
export const rpcStacks = ["ipc-packed", "ipc-binary", "ipc-json", "effect-binary", "effect-ndjson"] as const

/** One RPC stack. */
export type RpcStack = typeof rpcStacks[number]

/**
 * What a peer process does: echo each message back, or count them (a sink); `rpc-*` serve the DemoApi
 * with one RPC stack. `raw-*` and `rpc-effect-*` listen on a Unix socket path, `ipc-*` and `rpc-ipc-*` at
 * a `unix://` address, `fifo-*` at a `fifo://` one; `child-*` are spawned by the driver itself with
 * `ChildPipe.spawn` and serve their parent on fd 3.
 */
export const peerModes = [
  "raw-echo",
  "raw-sink",
  "raw-fiber-echo",
  "raw-fiber-sink",
  "ipc-echo",
  "ipc-sink",
  "fifo-echo",
  "fifo-sink",
  "child-echo",
  "child-sink",
  ...rpcStacks.map((stack) => `rpc-${stack}` as const)
] as const

/** A peer mode. */
export type PeerMode = typeof peerModes[number]

/** The peer modes that serve their parent over `ChildPipe` (no address, no `ready` line, no stdin). */
export type ChildPeerMode = "child-echo" | "child-sink"

/** True for a mode spawned with `ChildPipe.spawn`. */
export const isChildPeerMode = (mode: PeerMode): mode is ChildPeerMode => mode === "child-echo" || mode === "child-sink"

/** The peer mode that serves the DemoApi with `stack`. */
export const rpcPeerMode = (stack: RpcStack): `rpc-${RpcStack}` => `rpc-${stack}`

/** The stack of an `rpc-*` peer mode. */
export const stackOfPeerMode = (mode: PeerMode): RpcStack | undefined =>
  rpcStacks.find((stack) => mode === `rpc-${stack}`)

/** True for a known peer mode. */
export const isPeerMode = (s: string | undefined): s is PeerMode => peerModes.some((m) => m === s)

/** The line a peer prints on stdout once it is listening. */
export const READY = "ready"

/**
 * Runs a peer process's `serve` until the contender closes our stdin, then interrupts it, so that its scope
 * closes what it opened (a listener's socket or files: exiting at once left them behind), and exits.
 */
export const runPeerUntilStdinEnds = <E>(serve: Effect.Effect<unknown, E>, label: string): void => {
  const peer = Effect.runFork(serve)
  process.stdin.on("end", () => {
    Effect.runPromise(Fiber.interrupt(peer)).finally(() => process.exit(0))
  })
  process.stdin.resume()
  peer.addObserver((exit) => {
    if (exit._tag === "Failure" && !Cause.hasInterruptsOnly(exit.cause)) {
      console.error(`${label} failed:`, Cause.pretty(exit.cause))
      process.exit(1)
    }
  })
}

// ---- peer processes -----------------------------------------------------------------

/** A child process with its stdin and stdout piped (stderr goes to ours). */
export type PeerProcess = ChildProcess.ChildProcessByStdio<Writable, Readable, null>

/** A process that said it is ready. */
export interface ReadyProcess {
  readonly child: PeerProcess
  /**
   * What it printed up to its READY line. Later output goes to whoever listens on `child.stdout`
   * (the stream flows on: what comes before a listener is dropped, the rest of READY's chunk too).
   */
  readonly printed: string
  /** Ends it: its stdin closed (and SIGTERM, with `terminate`), SIGKILL after the grace; settles once it exited. */
  readonly stop: () => Promise<void>
}

/** How `spawnReady` ends a process. */
export interface StopOptions {
  /** How long a process may take to exit once asked, before SIGKILL (default 2 s). */
  readonly graceMs?: number | undefined
  /** Also send SIGTERM (a process that never reads its stdin, such as the C servers). */
  readonly terminate?: boolean | undefined
}

/**
 * Starts `command` and waits for its READY line: `ready` settles with it, or
 * fails if it exits or cannot start first. `child` is there at once, to kill
 * a process given up on before it was ready.
 */
export const spawnReady = (
  command: string,
  args: ReadonlyArray<string>,
  what: string,
  options: StopOptions = {}
): { readonly child: PeerProcess; readonly ready: Promise<ReadyProcess> } => {
  const child: PeerProcess = ChildProcess.spawn(command, args, { stdio: ["pipe", "pipe", "inherit"] })
  const stop = (): Promise<void> =>
    new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve()
      const timer = setTimeout(() => child.kill("SIGKILL"), options.graceMs ?? 2000)
      child.once("exit", () => {
        clearTimeout(timer)
        resolve()
      })
      child.stdin.end()
      if (options.terminate === true) child.kill("SIGTERM")
    })
  const ready = new Promise<ReadyProcess>((resolve, reject) => {
    let printed = ""
    const onExit = (code: number | null, signal: NodeJS.Signals | null) =>
      reject(new Error(`${what} exited (${code ?? signal}) before it was ready`))
    const onData = (text: string) => {
      printed += text
      if (!printed.includes(`${READY}\n`)) return
      child.stdout.off("data", onData)
      child.off("exit", onExit)
      resolve({ child, printed, stop })
    }
    child.stdout.setEncoding("utf8").on("data", onData)
    child.once("exit", onExit)
    child.once("error", (error) => reject(new Error(`${what}: ${error.message}`)))
  })
  return { child, ready }
}

/**
 * Waits for every process of `starting`; if one did not start, stops those
 * that did and fails with the first error.
 */
export const allReady = async (
  starting: ReadonlyArray<Promise<ReadyProcess>>
): Promise<ReadonlyArray<ReadyProcess>> => {
  const settled = await Promise.allSettled(starting)
  const failure = settled.find((one): one is PromiseRejectedResult => one.status === "rejected")
  if (failure === undefined) return settled.map((one) => (one as PromiseFulfilledResult<ReadyProcess>).value)
  await Promise.all(settled.map((one) => one.status === "fulfilled" ? one.value.stop() : undefined))
  throw failure.reason instanceof Error ? failure.reason : new Error(String(failure.reason))
}

/** `node` with this process's flags (`--cpu-prof` and the like), running `script` with `args`: for `spawnReady`. */
export const nodeScript = (
  script: string,
  args: ReadonlyArray<string>,
  execArgv: ReadonlyArray<string> = process.execArgv
): readonly [string, ReadonlyArray<string>] => [process.execPath, [...execArgv, script, ...args]]

/** A deterministic payload of `size` bytes. */
export const makePayload = (size: number): Uint8Array => {
  const payload = new Uint8Array(size)
  for (let i = 0; i < size; i++) payload[i] = (i * 31 + 7) & 0xff
  return payload
}

/** How many sends go between two looks at the clock in a one-way run. */
export const clockEvery = (size: number): number => size >= 64 * 1024 ? 1 : 256

/** The message that ends a one-way run: the sink answers it with its counts. */
export const END: Uint8Array = new Uint8Array(0)

/**
 * What a sink received before the end marker: messages, payload bytes, and
 * batches (how many `receiveAll` results, or for the raw sink `data` chunks,
 * carried them).
 */
export interface Counts {
  readonly messages: number
  readonly bytes: number
  readonly batches: number
}

/** Encodes a sink's counts as a 24-byte message. */
export const encodeCounts = (counts: Counts): Uint8Array => {
  const out = new Uint8Array(24)
  const view = new DataView(out.buffer)
  view.setFloat64(0, counts.messages)
  view.setFloat64(8, counts.bytes)
  view.setFloat64(16, counts.batches)
  return out
}

/** Decodes a sink's reply. */
export const decodeCounts = (message: Uint8Array): Counts => {
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength)
  return { messages: view.getFloat64(0), bytes: view.getFloat64(8), batches: view.getFloat64(16) }
}

// ---- the raw baseline's framing ---------------------------------------------

/**
 * What every sink keeps: messages and bytes since the last end marker, and
 * the reads (batches) they came in. `count` answers an end marker with the
 * encoded counts to send back, and starts over.
 */
export class SinkCounter {
  private messages = 0
  private bytes = 0
  private batches = 0

  /** Notes one read from the transport. */
  batch(): void {
    this.batches++
  }

  /** Counts a message of `length` bytes; for the end marker (0 bytes), returns the report. */
  count(length: number): Uint8Array | undefined {
    if (length > 0) {
      this.messages++
      this.bytes += length
      return undefined
    }
    const report = encodeCounts({ messages: this.messages, bytes: this.bytes, batches: this.batches })
    this.messages = 0
    this.bytes = 0
    this.batches = 0
    return report
  }
}

/** Size of the raw baseline's frame header. */
export const RAW_HEADER_SIZE = 4

/** One raw frame: a fresh buffer holding the 4-byte length and a copy of the payload. */
export const rawFrame = (payload: Uint8Array): Buffer => {
  const frame = Buffer.allocUnsafe(RAW_HEADER_SIZE + payload.byteLength)
  frame.writeUInt32BE(payload.byteLength, 0)
  frame.set(payload, RAW_HEADER_SIZE)
  return frame
}

/**
 * A minimal decoder of raw frames: whole frames inside a chunk are handed out
 * as views of it; a frame spread over chunks is assembled once, in a buffer of
 * its final size.
 */
export class RawReader {
  private rest: Buffer | undefined = undefined
  private body: Buffer | undefined = undefined
  private bodyFill = 0

  /** Decodes `input`, calling `onMessage` once per whole message. */
  push(input: Buffer, onMessage: (message: Buffer) => void): void {
    let chunk = input
    if (this.rest !== undefined) {
      chunk = Buffer.concat([this.rest, input])
      this.rest = undefined
    }
    let offset = 0
    const end = chunk.byteLength
    while (offset < end) {
      const body = this.body
      if (body !== undefined) {
        const take = Math.min(body.byteLength - this.bodyFill, end - offset)
        chunk.copy(body, this.bodyFill, offset, offset + take)
        this.bodyFill += take
        offset += take
        if (this.bodyFill === body.byteLength) {
          this.body = undefined
          onMessage(body)
        }
        continue
      }
      if (end - offset < RAW_HEADER_SIZE) {
        this.rest = Buffer.from(chunk.subarray(offset))
        return
      }
      const length = chunk.readUInt32BE(offset)
      offset += RAW_HEADER_SIZE
      if (end - offset >= length) {
        onMessage(chunk.subarray(offset, offset + length))
        offset += length
      } else {
        this.body = Buffer.allocUnsafe(length)
        this.bodyFill = 0
      }
    }
  }
}
