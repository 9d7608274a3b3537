/**
 * Opens a messaging-pattern socket: the socket, its listeners and dialers
 * (`Endpoints.EndpointsOptions`), all closed with the scope; and reading a
 * socket into a back-pressuring `Inbox`.
 *
 * @internal
 */
import * as Framing from "@effect-ipc/core/Framing"
import * as Inbox from "@effect-ipc/core/Inbox"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Observability from "@effect-ipc/core/Observability"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type * as Endpoints from "../Endpoints.ts"
import * as NngAddress from "../NngAddress.ts"
import * as NngError from "../NngError.ts"
import type * as Nng from "./nng.ts"
import * as Socket from "./socket.ts"

const list = (value: string | ReadonlyArray<string> | undefined): ReadonlyArray<string> =>
  value === undefined ? [] : typeof value === "string" ? [value] : value

const millis = (value: Duration.Input | undefined, fallback: number) =>
  value === undefined ? fallback : Duration.toMillis(Duration.fromInputUnsafe(value))

const isAddresses = (value: unknown): boolean =>
  value === undefined || typeof value === "string" ||
  (Array.isArray(value) && value.every((item) => typeof item === "string"))

/** The first of `options` that no socket would take, before anything is opened (core's checks: sizes, mode, durations, shapes). */
const optionsError = (options: Endpoints.EndpointsOptions): IpcError.IpcError | undefined => {
  // null or a string was a TypeError defect as its first option was read
  const notObject = TransportOptions.notAnObject(options, "the socket's options")
  if (notObject !== undefined) return notObject
  for (const name of ["listen", "dial"] as const) {
    const value: unknown = options[name]
    if (!isAddresses(value)) {
      // not shown: what is not an address may hold anything (a secret among it)
      return IpcError.make(
        "InvalidAddress",
        `${name} is not an address nor a list of addresses (got ${Array.isArray(value) ? "a list" : typeof value})`
      )
    }
  }
  const reconnect: unknown = options.reconnect
  if (reconnect !== undefined && (typeof reconnect !== "object" || reconnect === null)) {
    return IpcError.make("InvalidOption", "reconnect is not { min, max }")
  }
  return TransportOptions.checkSizes(options) ??
    (options.mode === undefined ? undefined : TransportOptions.invalidMode(options.mode)) ??
    TransportOptions.checkDurations(options) ??
    TransportOptions.checkShapes(options)
}

/** How often a socket with `maxConnections` looks over its listeners' connections (in nng's statistics). */
const SWEEP_MS = 200

/** A sweep waits at least this many times as long as it took before the next (a busy process sweeps less often). */
const SWEEP_WAIT_FACTOR = 20

/**
 * One sweep of `socket`'s listeners' connections, then a wait: those past `max`, the newest first, are
 * closed. nng reads no further from a connection whose message waits unread (a `Pull` whose inbox is full,
 * a busy `Rep`), so each peer that sent and left kept a descriptor and its message until then.
 */
const keepConnections = (socket: Socket.Socket, max: number) => {
  const kept = new Set<number>()
  return Effect.suspend(() => {
    const started = performance.now()
    const pipes = socket.nng.socketPipes(socket.handle)
    if (pipes !== undefined) {
      const present = new Set<number>()
      for (const { pipe } of pipes) present.add(pipe)
      // a snapshot serves every socket for a while: forget only the pipes that are gone
      for (const pipe of kept) if (!present.has(pipe) && !socket.nng.pipeAlive(pipe)) kept.delete(pipe)
      // in the order nng numbered them, so that the newest are those closed
      for (const pipe of [...present].toSorted((a, b) => a - b)) {
        if (kept.has(pipe) || socket.nng.pipeListener(pipe) === 0 || !socket.nng.pipeAlive(pipe)) continue
        if (kept.size < max) kept.add(pipe)
        else socket.nng.closePipe(pipe)
      }
    }
    return Effect.sleep(Math.max(SWEEP_MS, (performance.now() - started) * SWEEP_WAIT_FACTOR))
  })
}

/** A socket with its endpoints. */
export interface Opened {
  readonly socket: Socket.Socket
  readonly bound: Endpoints.Bound
  /** The socket's dialers, each with the address it dials as given. */
  readonly dialers: ReadonlyArray<{ readonly address: string; readonly dialer: Nng.Handle }>
}

/** Opens a socket of `protocol`, listens and dials as `options` say; everything closes with the scope. */
export const open = (
  protocol: Nng.Protocol,
  options: Endpoints.EndpointsOptions,
  extra: { readonly kinded?: boolean } = {}
): Effect.Effect<Opened, IpcError.IpcError, Scope.Scope> =>
  Effect.gen(function*() {
    const refused = optionsError(options)
    if (refused !== undefined) return yield* refused
    yield* Socket.queuesOk(options)
    const listen = list(options.listen)
    const dial = list(options.dial)
    if (listen.length + dial.length === 0) {
      // a raw socket (Rep answers through one) is named as the pattern users asked for
      const named = protocol.replace(/-raw$/, "")
      return yield* IpcError.make("InvalidAddress", `a ${named} socket needs an address to listen at or dial`)
    }
    const name = [...listen, ...dial].join(", ")
    const listenAt = yield* Effect.forEach(listen, (raw) => NngAddress.parse(raw, { plain: true }))
    // a TLS listener with authMode "optional" admits every client: what each sent is checked before it is used
    let refusals: Socket.RefusalQueue | undefined
    if (Socket.checksClients(options.tls, listenAt)) {
      if (Socket.sendsUnheard(protocol)) {
        return yield* IpcError.make(
          "InvalidOption",
          `a ${protocol} socket sends to clients it has not heard from, so it cannot check the certificates of ` +
            `the clients its TLS listener admits with tls.authMode "optional" before they get what it sends: ` +
            `use "required" (with a caFile)`,
          name
        )
      }
      refusals = yield* Socket.refusalQueue
    }
    // refusals name where the socket listens, ports of port 0 included once bound
    let listeningName = listen.join(", ")
    const socket = yield* Socket.make(protocol, {
      // nng counts a protocol's header (4 bytes for pair, req and rep) against its limit: the body is held to it
      maxMessageSize: options.maxMessageSize ?? Framing.DEFAULT_MAX_FRAME_SIZE,
      maxBody: options.maxMessageSize ?? Framing.DEFAULT_MAX_FRAME_SIZE,
      sendBuffer: options.sendBuffer,
      recvBuffer: options.recvBuffer,
      ipcPermissions: options.mode ?? 0o600,
      // a min alone longer than the default max raises the max to it (nng would shorten later waits to the max)
      reconnect: {
        min: millis(options.reconnect?.min, 20),
        max: millis(options.reconnect?.max, Math.max(1000, millis(options.reconnect?.min, 20)))
      },
      kinded: extra.kinded,
      tls: options.tls,
      refused: refusals === undefined
        ? undefined
        : (error) => refusals.sink(IpcError.make(error.reason, error.detail, listeningName))
    }, name)
    const linger = millis(options.linger, 0)
    // runs before the socket closes (finalizers run in reverse order)
    if (linger > 0) yield* Effect.addFinalizer(() => Effect.sleep(linger))
    const listening: Array<string> = []
    for (const [i, raw] of listen.entries()) {
      const address = listenAt[i]!
      // over ipc only an absent path or a stale socket of ours is taken (libnng alone would unlink a file)
      const bound = yield* Socket.listenFree(socket, address)
      listening.push(bound.port !== undefined && address.port === 0 ? NngAddress.withPort(address, bound.port) : raw)
    }
    listeningName = listening.join(", ")
    if (refusals !== undefined) {
      yield* Effect.forkScoped(refusals.noteWith(yield* Observability.refusals(listeningName)))
    }
    const maxConnections = options.maxConnections ?? Infinity
    if (listen.length > 0 && maxConnections !== Infinity) {
      yield* Effect.forkScoped(
        Effect.andThen(Effect.sleep(SWEEP_MS), Effect.forever(keepConnections(socket, maxConnections)))
      )
    }
    const dialers: Array<{ readonly address: string; readonly dialer: Nng.Handle }> = []
    for (const raw of dial) {
      dialers.push({ address: raw, dialer: yield* socket.dial(yield* NngAddress.parse(raw, { plain: true })) })
    }
    return { socket, bound: { listening, dialing: dial }, dialers }
  })

/**
 * Reads everything `socket` receives into an inbox, pausing while the inbox
 * is full. The inbox ends when the socket closes (here: its peers' leaving
 * does not close it), and a take then says so.
 */
export const inbox = (
  socket: Socket.Socket,
  options: Endpoints.EndpointsOptions
): Effect.Effect<Inbox.Inbox, never, Scope.Scope> =>
  Effect.gen(function*() {
    let stop: (() => void) | undefined
    const start = () => {
      if (stop === undefined && !socket.isClosed() && !messages.isDone()) stop = socket.onReadable(drain)
    }
    const pause = () => {
      stop?.()
      stop = undefined
    }
    const messages = Inbox.make({
      maxMessages: options.maxBufferedMessages,
      maxBytes: options.maxBufferedBytes,
      onResume: start,
      closedError: socket.error(NngError.Code.ECLOSED, "the socket was closed here")
    })
    const drain = () => {
      for (let i = 0; i < 256; i++) {
        const received = socket.tryReceive()
        if (typeof received === "number") {
          if (received === NngError.Code.EAGAIN) return
          pause()
          if (received === NngError.Code.ECLOSED) messages.end()
          else messages.fail(socket.error(received, "cannot receive"))
          return
        }
        if (!messages.push(received.body)) return pause()
      }
    }
    start()
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        pause()
        messages.end()
      })
    )
    return messages
  })
