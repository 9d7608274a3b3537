/**
 * Anonymous pipes to child processes. `spawn` starts any executable with a
 * channel to it, on an extra descriptor (fd 3, a socket pair: the default) or
 * on its stdin/stdout; the child learns which from `EFFECT_IPC_FD` (`3` or
 * `stdio`) and, when it is a Node program, calls `fromParent` to get its end.
 * A child in another language reads and writes effect-ipc frames on that
 * descriptor (see the README).
 *
 * Closing the parent's scope closes the channel (the child sees a graceful
 * end) and gives the child `exitTimeout` to exit by itself, then ends it
 * (SIGTERM, then SIGKILL after `killTimeout`); a child that exits or dies is
 * `ConnectionLost` on the parent's channel, never a hang.
 *
 * As a transport (`child:`), `dial("child:<command line as JSON array>")`
 * spawns and `listen("child:parent")` (in the child) yields its parent.
 *
 * @since 0.1.0
 */
import * as Address from "@effect-ipc/core/Address"
import type * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Process from "@effect-ipc/core/Process"
import * as StreamChannel from "@effect-ipc/core/StreamChannel"
import * as Transport from "@effect-ipc/core/Transport"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as NodeChild from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"

/** The environment variable that tells a child where its channel is: `3` or `stdio`. */
export const ENV = "EFFECT_IPC_FD"

/** Options of `spawn`. */
export interface SpawnOptions extends StreamChannel.StreamChannelOptions {
  /** Arguments of the command. */
  readonly args?: ReadonlyArray<string> | undefined
  /** Extra environment variables (the parent's environment is inherited). */
  readonly env?: Record<string, string> | undefined
  /** Working directory of the child. */
  readonly cwd?: string | undefined
  /** Where the channel is: an extra descriptor, fd 3 (default), or the child's stdin/stdout. */
  readonly via?: "fd" | "stdio" | undefined
  /** How long the child has to exit by itself once its channel is closed, before SIGTERM (default 1 s). */
  readonly exitTimeout?: Duration.Input | undefined
  /** How long the child has to exit after SIGTERM before SIGKILL (default 2 s). */
  readonly killTimeout?: Duration.Input | undefined
}

/** How a child process ended. */
export interface ExitStatus {
  readonly code: number | null
  readonly signal: string | null
}

/** A running child process and the channel to it. */
export interface Child {
  /** The channel to the child. */
  readonly channel: IpcChannel.IpcChannel
  /** The child's process id. */
  readonly pid: number
  /** Completes when the child has exited. */
  readonly exit: Effect.Effect<ExitStatus>
}

const exitedOf = (child: NodeChild.ChildProcess): ExitStatus | undefined =>
  child.exitCode !== null || child.signalCode !== null ? { code: child.exitCode, signal: child.signalCode } : undefined

const isText = (value: unknown): value is string => typeof value === "string"

// a pipe on Windows has no half-close: the peer cannot answer our goodbye (see `StreamPair.halfClose`)
const halfClose = process.platform !== "win32"

/** What is wrong with the kinds of `spawn`'s arguments, if anything: the reason and what to say. */
const shapeOf = (
  command: unknown,
  options: SpawnOptions
): readonly [IpcError.IpcErrorReason, string] | undefined => {
  if (!isText(command)) return ["InvalidAddress", `a command is a string, not ${typeof command}`]
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    return ["InvalidOption", `the options are an object, not ${options === null ? "null" : typeof options}`]
  }
  const { args, cwd, env } = options as { readonly args?: unknown; readonly cwd?: unknown; readonly env?: unknown }
  if (args !== undefined && !(Array.isArray(args) && args.every(isText))) {
    return ["InvalidOption", "args is a list of strings"]
  }
  if (cwd !== undefined && !isText(cwd)) return ["InvalidOption", "cwd is a string"]
  if (
    env !== undefined &&
    (typeof env !== "object" || env === null || Array.isArray(env) || !Object.values(env).every(isText))
  ) {
    return ["InvalidOption", "env maps names to strings"]
  }
  return undefined
}

/**
 * The `child:` address that spawns `command` with `args` when dialled: its JSON array, with `%` escaped
 * (`%25`), since an address's location is percent-decoded as it is read (`date +%s` arrives as written).
 */
export const addressOf = (command: string, args: ReadonlyArray<string> = []): string =>
  `child:${JSON.stringify([command, ...args]).replaceAll("%", "%25")}`

const isDirectory = (path: string): boolean => {
  try {
    return Fs.statSync(path).isDirectory()
  } catch {
    return false
  }
}

/** Spawns `command` with a channel to it; the child ends with the scope. */
export const spawn = (
  command: string,
  options: SpawnOptions = {}
): Effect.Effect<Child, IpcError.IpcError, Scope.Scope> =>
  Effect.gen(function*() {
    // what JavaScript callers (or JSON) may give past the types: a defect inside Node's spawn, or silently
    // spread (args "x") or coerced (env numbers)
    const shape = shapeOf(command, options)
    if (shape !== undefined) return yield* IpcError.make(shape[0], shape[1], "child:")
    const via = options.via ?? "fd"
    const address = addressOf(command, options.args)
    yield* TransportOptions.optionsOk(options, address)
    // what Node's spawn throws at (a TypeError): refused here with a typed error
    if (command === "" || [command, ...(options.args ?? [])].some((part) => part.includes("\0"))) {
      return yield* IpcError.make(
        "InvalidAddress",
        "a command is a non-empty string, it and its arguments without NUL",
        address
      )
    }
    if (options.cwd !== undefined && options.cwd.includes("\0")) {
      return yield* IpcError.make("InvalidOption", "cwd holds a NUL byte", address)
    }
    const exited = Deferred.makeUnsafe<ExitStatus>()
    const child = yield* Effect.acquireRelease(
      Effect.callback<NodeChild.ChildProcess, IpcError.IpcError>((resume) => {
        let spawned: NodeChild.ChildProcess
        try {
          spawned = NodeChild.spawn(command, [...(options.args ?? [])], {
            cwd: options.cwd,
            env: { ...process.env, ...options.env, [ENV]: via === "fd" ? "3" : "stdio" },
            stdio: via === "fd" ? ["inherit", "inherit", "inherit", "pipe"] : ["pipe", "pipe", "inherit"]
          })
        } catch (cause) {
          // an environment Node refuses (a NUL byte in a variable), ...
          return resume(Effect.fail(IpcError.fromSystemError(cause, "InvalidOption", "cannot start", address)))
        }
        spawned.once("exit", (code, signal) => Deferred.doneUnsafe(exited, Effect.succeed({ code, signal })))
        spawned.once("error", (cause) =>
          resume(Effect.fail(
            // Node names the command when it is the working directory that is missing
            options.cwd !== undefined && IpcError.errnoOf(cause) === "ENOENT" && !isDirectory(options.cwd)
              ? IpcError.make(
                "NotFound",
                `cannot start: the working directory ${options.cwd} is not a directory`,
                address
              )
              : IpcError.fromSystemError(cause, "Open", "cannot start", address)
          )))
        spawned.once("spawn", () => resume(Effect.succeed(spawned)))
      }),
      (started) =>
        Effect.gen(function*() {
          if (exitedOf(started) !== undefined) return
          const escalate = (signal: NodeJS.Signals, after: Duration.Input, then: Effect.Effect<unknown>) =>
            Deferred.await(exited).pipe(
              Effect.timeoutOrElse({
                duration: after,
                orElse: () => Effect.andThen(Effect.sync(() => started.kill(signal)), then)
              })
            )
          // the channel is closed first (its finalizer runs before this one): let the child act on it
          yield* escalate(
            "SIGTERM",
            options.exitTimeout ?? "1 second",
            escalate("SIGKILL", options.killTimeout ?? "2 seconds", Deferred.await(exited))
          )
        })
    )
    // the child's exit ends the channel, though a process it started holds the descriptor (`sleep &` in a shell)
    const peerExited = (then: () => void) => exitedOf(child) === undefined ? void child.once("exit", then) : then()
    // known from the exit event, or, before it comes, from the kernel (a child exited and not yet collected)
    const peerExit = (): string | undefined => {
      const status = exitedOf(child) ?? Process.exitStatus(child.pid!)
      return status === undefined
        ? undefined
        : status.signal !== null
        ? `was killed by ${status.signal}`
        : `exited with code ${status.code}`
    }
    const streams: StreamChannel.StreamPair = via === "fd"
      ? {
        readable: child.stdio[3] as Net.Socket,
        writable: child.stdio[3] as Net.Socket,
        peerExited,
        peerExit,
        halfClose
      }
      : { readable: child.stdout!, writable: child.stdin!, peerExited, peerExit }
    const channel = yield* StreamChannel.makeScoped(streams, address, { pid: child.pid, description: address }, options)
    return { channel, pid: child.pid!, exit: Deferred.await(exited) }
  })

/** In a child started by `spawn`: the channel to the parent, closed with the scope. */
export const fromParent = (
  options: StreamChannel.StreamChannelOptions = {}
): Effect.Effect<IpcChannel.IpcChannel, IpcError.IpcError, Scope.Scope> =>
  Effect.gen(function*() {
    const where = process.env[ENV]
    const address = "child:parent"
    const peer = { pid: process.ppid, description: "parent process" }
    const streams = yield* Effect.try({
      try: (): StreamChannel.StreamPair => {
        if (where === "3") {
          const socket = new Net.Socket({ fd: 3, readable: true, writable: true })
          return { readable: socket, writable: socket, halfClose }
        }
        if (where === "stdio") {
          if (!isPipe(0) || !isPipe(1)) throw new Error("stdin and stdout are not pipes")
          return {
            readable: new Net.Socket({ fd: 0, readable: true, writable: false }),
            writable: new Net.Socket({ fd: 1, readable: false, writable: true })
          }
        }
        throw new Error(`${ENV} is not set: this process was not started by ChildPipe.spawn`)
      },
      catch: (cause) => IpcError.fromSystemError(cause, "NotFound", "no channel to a parent", address)
    })
    return yield* StreamChannel.makeScoped(streams, address, peer, options)
  })

// on Windows a pipe's fstat has no type bits (libuv, under Wine too): anything but a file, a
// console or a directory is taken for a pipe there
const isPipe = (fd: number): boolean => {
  const stat = Fs.fstatSync(fd)
  return stat.isFIFO() || stat.isSocket() ||
    (process.platform === "win32" && !stat.isFile() && !stat.isCharacterDevice() && !stat.isDirectory())
}

const CommandLine = Schema.fromJsonString(Schema.NonEmptyArray(Schema.String))

/** Makes the `child:` transport: `dial` spawns a command line, `listen("child:parent")` yields the parent. */
export const make = (options: StreamChannel.StreamChannelOptions = {}): Transport.TransportShape => ({
  schemes: ["child"],
  listen: (raw) =>
    Effect.gen(function*() {
      const address = yield* Address.parseFor(raw, ["child"])
      if (address.rest !== "parent") {
        return yield* IpcError.make("InvalidAddress", "a child listens only at child:parent", raw)
      }
      const acceptor = yield* Transport.makeAcceptor(raw)
      acceptor.offer(yield* fromParent(options))
      return acceptor.listener
    }),
  dial: (raw) =>
    Effect.gen(function*() {
      const address = yield* Address.parseFor(raw, ["child"])
      const [command, ...args] = yield* Schema.decodeUnknownEffect(CommandLine)(decodeURIComponent(address.rest)).pipe(
        Effect.mapError((cause) =>
          IpcError.make("InvalidAddress", `child:<JSON array of command and arguments>: ${cause.message}`, raw)
        )
      )
      const child = yield* spawn(command, { ...options, args })
      return child.channel
    })
})

/** The `child:` transport as the `Transport` service (instrumented), its options checked as it is built (`Transport.layerOf`). */
export const layer = (
  options?: StreamChannel.StreamChannelOptions
): Layer.Layer<Transport.Transport, IpcError.IpcError> => Transport.layerOf(make, options)
