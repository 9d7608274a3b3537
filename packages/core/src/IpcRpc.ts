/**
 * Typed RPC over any effect-ipc transport, built on `effect/rpc`. Define an
 * `RpcGroup` once; serve it with `layerServer` and call it with `layerClient`
 * at the configured address (`Registry.layerConfig`: `IPC_TRANSPORT` /
 * `IPC_ADDRESS`), or at an address of your choice with
 * `layerServerProtocol(address)` / `layerClientProtocol(address)`. Requests,
 * typed errors, streamed responses, fire-and-forget calls, interruption and
 * pings are effect's own; this module only carries its frames.
 *
 * Each connection opens with a hello naming the client's serialization
 * (`effect-rpc:packed`, the default, `effect-rpc:binary` or `effect-rpc:json`,
 * see `hello`), so one server serves Node clients (packed or effect's schema
 * binary) and any-language clients (JSON) at one address
 * (`layerServerGroup`); the messages as they travel are specified in the
 * repository's `docs/wire.md`.
 *
 * The client reconnects with `Policy.reconnect`. A request in flight when the
 * link drops fails with an `RpcClientError`: it is never replayed silently.
 * Mark an operation safe to repeat by wrapping the call in `retryIdempotent`.
 * A client that cannot reach its server logs a warning naming the address and
 * the reason at once; calls wait for the server up to `connectTimeout`
 * (default 10 s, `IPC_CONNECT_TIMEOUT`), then fail with an `RpcClientError`
 * whose message names the address and the reason; until the client reaches
 * the server again (it keeps trying), later calls fail at once.
 *
 * @since 0.1.0
 */
import type { NonEmptyReadonlyArray } from "effect/Array"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Latch from "effect/Latch"
import * as Layer from "effect/Layer"
import * as NetAddress from "effect/net/NetAddress"
import * as Queue from "effect/Queue"
import * as Result from "effect/Result"
import type * as Rpc from "effect/rpc/Rpc"
import * as RpcClient from "effect/rpc/RpcClient"
import { RpcClientError as RpcClientErrorClass } from "effect/rpc/RpcClientError"
import type { RpcClientError } from "effect/rpc/RpcClientError"
import type * as RpcGroup from "effect/rpc/RpcGroup"
import type * as RpcMessage from "effect/rpc/RpcMessage"
import * as RpcSerialization from "effect/rpc/RpcSerialization"
import * as RpcServer from "effect/rpc/RpcServer"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Socket from "effect/socket/Socket"
import * as SocketServer from "effect/socket/SocketServer"
import * as Address from "./Address.ts"
import * as Bound from "./internal/bound.ts"
import * as Bytes from "./internal/bytes.ts"
import * as Calls from "./internal/calls.ts"
import * as Eager from "./internal/eager.ts"
import * as Packed from "./internal/packed.ts"
import type * as IpcChannel from "./IpcChannel.ts"
import * as IpcError from "./IpcError.ts"
import * as Policy from "./Policy.ts"
import * as Registry from "./Registry.ts"
import * as Transport from "./Transport.ts"
import * as TransportOptions from "./TransportOptions.ts"

/**
 * A read's failure: the peer's close (`closedBy` names the peer: the server
 * at its address, or the client), or the connection to the server at
 * `address` lost (named in the message).
 */
const readError = (address: string, closedBy: string, error: IpcError.IpcError): Socket.SocketError =>
  error.reason._tag === "Closed"
    ? new Socket.SocketError({
      reason: new Socket.SocketCloseError({
        code: 1000,
        closeReason: `${closedBy} closed the connection (${error.detail})`
      })
    })
    : new Socket.SocketError({
      reason: withMessage(
        new Socket.SocketReadError({ cause: error }),
        `lost the connection to ${address}: ${error.message}`
      )
    })

/**
 * Gives a socket error the message a user should see (effect types it as a
 * fixed text); the `IpcError` stays its `cause`.
 */
const withMessage = <E extends Socket.SocketOpenError | Socket.SocketReadError | Socket.SocketWriteError>(
  error: E,
  message: string
): E => Object.defineProperty(error, "message", { value: message, enumerable: false, configurable: true })

/**
 * A send's failure as a socket's write error; none for a channel that ended
 * (closed, or lost): its reader ends the calls in flight with the typed reason,
 * where effect's RPC client made a write error a defect (a stream's
 * acknowledgement written as its server closed died "An error occurred during
 * Write", naming nothing).
 */
const writeFailed = (left: Effect.Effect<void, IpcError.IpcError>): Effect.Effect<void, Socket.SocketError> =>
  Effect.catch(left, (cause) =>
    cause.reason._tag === "Closed" || cause.reason._tag === "ConnectionLost"
      ? Effect.void
      : Effect.fail(new Socket.SocketError({ reason: new Socket.SocketWriteError({ cause }) })))

/** The server could not be reached yet: the client keeps trying, and calls keep waiting. */
const unreachable = (address: string, cause: IpcError.IpcError) =>
  withMessage(
    new Socket.SocketOpenError({ kind: "Unknown", cause }),
    `waiting for a server at ${address}: ${cause.message}`
  )

/**
 * The server could not be reached within `connectTimeout`, or never can be
 * (a bad address, a refused peer): the calls waiting fail with this reason.
 */
const gone = (address: string, cause: IpcError.IpcError, waited: number | undefined) =>
  withMessage(
    new Socket.SocketReadError({ cause }),
    waited === undefined
      ? `cannot reach a server at ${address}: ${cause.message}`
      : `no server at ${address} after ${Math.round(waited)} ms: ${cause.message}`
  )

/** Dial failures that waiting cannot mend: calls fail at once. */
const permanent: ReadonlySet<IpcError.IpcErrorReason> = new Set([
  "InvalidAddress",
  "UnsupportedScheme",
  "UnsupportedPlatform",
  "PermissionDenied",
  "PeerRejected",
  "NameTooLong",
  "LibraryMissing"
])

/** Options of `toSocket`. */
export interface SocketOptions {
  /** The address `open` dials, for messages, shown without its secrets (default: `"the server"`). */
  readonly address?: string | undefined
  /** How long calls wait for an unreachable server before they fail (default: for ever). */
  readonly connectTimeout?: Duration.Input | undefined
}

/**
 * An effect `Socket` over effect-ipc channels. Each time the socket is read
 * (on the first connect and on every reconnect), `open` opens a fresh channel
 * in the reader's scope; writes go to the channel of the current connection
 * and wait while there is none. A failed open is logged once as a warning
 * (then at debug level until a channel opens) and reported as a transient
 * `SocketOpenError` (the client waits), or as a `SocketReadError` once
 * `connectTimeout` has passed or when the failure is permanent (a bad
 * address, a refused peer), which fails the calls waiting; both name the
 * address and the reason in their message and keep the `IpcError` as cause.
 */
export const toSocket = (
  open: Effect.Effect<IpcChannel.IpcChannel, IpcError.IpcError, Scope.Scope>,
  options: SocketOptions = {}
): Socket.Socket => socketOver(open, options, undefined, "client")

/** How an RPC server reads a connection after its hello: `first` (if kept) first, once; later hellos dropped (see `serverPull`). */
interface ServerRead {
  first: Uint8Array | undefined
}

const socketOver = (
  open: Effect.Effect<IpcChannel.IpcChannel, IpcError.IpcError, Scope.Scope>,
  options: SocketOptions,
  server: ServerRead | undefined,
  side: "client" | "server",
  // recognises effect's client's ping (a client given it leaves pings out while writes wait: see `write`)
  isPing?: (chunk: Uint8Array | string) => boolean
): Socket.Socket => {
  let current: IpcChannel.IpcChannel | undefined
  // writes to the current channel still waiting for room (the peer reads nothing, or slowly)
  let waiting = 0
  // a served connection's next read, waiting while MAX_WAITING_REPLIES writes wait (see `roomForReplies`)
  let room: Deferred.Deferred<void> | undefined
  // a ping not sent while writes waited: it goes once they have (see `waitedFor`)
  let owedPing: Uint8Array | string | undefined
  // the eager form of the current channel's `send` (see `internal/eager.ts`), if it has one
  let currentEager: Eager.EagerSend | undefined
  let currentEagerText: Eager.EagerSendText | undefined
  const connected = Latch.makeUnsafe(false)
  // a served connection's channel is its only one: once it is gone, what is written goes nowhere (as on a
  // closed socket) rather than waiting for a channel that never comes (effect's server writes a reply in its
  // request's exit, uninterruptibly: a wait there held the reply's memory and the server's shutdown for good)
  let ended = false
  // an address may carry a secret (`?token=...`): only its redacted form is shown
  const dialled = options.address
  const address = dialled === undefined ? "the server" : Address.redact(dialled)
  const connectTimeout = options.connectTimeout === undefined
    ? Infinity
    : Duration.toMillis(Duration.fromInputUnsafe(options.connectTimeout))
  /** When the current run of failed opens began. */
  let failingSince: number | undefined
  // completed when an open gives up (connectTimeout passed, or a failure that lasts), as the calls waiting
  // fail: a write waiting for a connection then leaves nothing (a fire-and-forget call waited for its send,
  // past connectTimeout, and was sent to a server that came later, its caller told it had failed)
  let gaveUp = Deferred.makeUnsafe<void>()
  const giveUp = (error: Socket.SocketError): Socket.SocketError => {
    Deferred.doneUnsafe(gaveUp, Effect.void)
    gaveUp = Deferred.makeUnsafe<void>()
    return error
  }

  const opened = open.pipe(
    Effect.catch((raw) =>
      Effect.gen(function*() {
        const error = Address.redactError(raw, dialled)
        const now = Date.now()
        if (failingSince === undefined) {
          failingSince = now
          yield* Effect.logWarning(`waiting for a server at ${address}: ${error.message}`)
        } else {
          yield* Effect.logDebug(`still waiting for a server at ${address}: ${error.message}`)
        }
        const waited = now - failingSince
        if (permanent.has(error.reason._tag)) {
          return yield* giveUp(new Socket.SocketError({ reason: gone(address, error, undefined) }))
        }
        if (waited >= connectTimeout) {
          return yield* giveUp(new Socket.SocketError({ reason: gone(address, error, waited) }))
        }
        return yield* new Socket.SocketError({ reason: unreachable(address, error) })
      })
    ),
    Effect.tap(() =>
      failingSince === undefined ? Effect.void : Effect.suspend(() => {
        failingSince = undefined
        return Effect.logInfo(`connected to ${address}`)
      })
    )
  )

  // a read's failure, as the socket reports it
  const closedBy = side === "server" ? "the client" : dialled === undefined ? "the server" : `the server at ${address}`
  const readFailed = (error: IpcError.IpcError): Socket.SocketError =>
    readError(address, closedBy, Address.redactError(error, dialled))

  const reader: Socket.Socket["reader"] = Effect.gen(function*() {
    const channel = yield* opened
    current = channel
    waiting = 0
    owedPing = undefined
    currentEager = Eager.of(channel)
    currentEagerText = Eager.textOf(channel)
    Latch.openUnsafe(connected)
    yield* Effect.addFinalizer(() =>
      Effect.andThen(
        Effect.sync(() => {
          if (current === channel) {
            current = undefined
            currentEager = undefined
            currentEagerText = undefined
            Latch.closeUnsafe(connected)
            if (side === "server") ended = true
          }
        }),
        channel.close
      )
    )
    const read = Effect.mapError(channel.receiveAll, readFailed)
    // a served connection hands effect's server at most MAX_WAITING_REPLIES requests a pull, the rest kept for
    // the next (a batch of thousands read at once made as many calls before their replies could wait)
    let held: NonEmptyReadonlyArray<Uint8Array> | undefined
    const paced = Effect.andThen(
      roomForReplies,
      Effect.suspend(() => held !== undefined ? Effect.succeed(held) : read)
    ).pipe(Effect.map((batch) => {
      if (batch.length <= MAX_WAITING_REPLIES) {
        held = undefined
        return batch
      }
      held = batch.slice(MAX_WAITING_REPLIES) as unknown as NonEmptyReadonlyArray<Uint8Array>
      return batch.slice(0, MAX_WAITING_REPLIES) as unknown as NonEmptyReadonlyArray<Uint8Array>
    }))
    const pull = server === undefined ? read : serverPull(paced, server)
    return { pull, upgrade: Socket.SocketUpgradeError.unsupported }
  })

  // a client that sends requests and never reads the replies is not read either once MAX_WAITING_REPLIES of
  // them wait: each request read made a call whose reply waits, holding its memory (unbounded: gigabytes)
  const roomForReplies = Effect.suspend(() =>
    waiting < MAX_WAITING_REPLIES ? Effect.void : Deferred.await(room ??= Deferred.makeUnsafe<void>())
  )

  const write = (chunk: Uint8Array | string | Socket.CloseEvent): Effect.Effect<void, Socket.SocketError> =>
    Effect.suspend(() => {
      const channel = current
      if (channel === undefined) {
        return ended
          ? Effect.void
          : Effect.raceFirst(Effect.andThen(connected.await, write(chunk)), Deferred.await(gaveUp))
      }
      if (Socket.isCloseEvent(chunk)) return channel.close
      // a ping behind writes that wait for the peer to read would wait with them, and effect's client judges
      // the server's silence only once its ping is written: a stopped server held every call for ever. Not
      // sent now, the server is judged by its frames (none for pingTimeout: the connection is dropped), and the
      // ping goes once the writes have: a server that was only slow to read answers it
      if (waiting > 0 && isPing !== undefined && isPing(chunk)) {
        owedPing = chunk
        return Effect.void
      }
      // text (JSON) where the channel encodes it as it queues it
      const eagerText = currentEagerText
      if (typeof chunk === "string" && eagerText !== undefined) {
        const textLeft = eagerText(chunk)
        return textLeft === Effect.void ? Effect.void : waitedFor(channel, writeFailed(textLeft))
      }
      const bytes = encodedBytes(chunk)
      // sent as this effect runs, where the channel can (no second effect, no error to map when it went at once)
      const eager = currentEager
      const left = eager === undefined ? channel.send(bytes) : eager(bytes)
      const large = bytes.byteLength >= Bytes.LARGE
      if (left === Effect.void) {
        if (large) Packed.release(bytes)
        return Effect.void
      }
      const sent = waitedFor(channel, writeFailed(left))
      // the channel is done with a message once its `send` succeeded (an interrupted one may still be
      // waiting to go): a large packed one's memory is used again
      return large ? Effect.tap(sent, () => Effect.sync(() => Packed.release(bytes))) : sent
    })

  /**
   * `sent`, a write to `channel` that waits, counted in `waiting` while it does; the last one to finish sends
   * the ping left out meanwhile (never sent, effect's client would judge the server by an unanswered ping: a
   * server that paused while a large call waited, then took longer than the interval to reply, was given up).
   */
  const waitedFor = (channel: IpcChannel.IpcChannel, sent: Effect.Effect<void, Socket.SocketError>) =>
    Effect.suspend(() => {
      waiting++
      return Effect.ensuring(
        sent,
        Effect.sync(() => {
          if (current === channel && waiting > 0) waiting--
          if (room !== undefined && waiting < MAX_WAITING_REPLIES) {
            Deferred.doneUnsafe(room, Effect.void)
            room = undefined
          }
        })
      ).pipe(Effect.andThen(Effect.suspend(() => {
        const ping = owedPing
        if (ping === undefined || waiting > 0 || current !== channel) return Effect.void
        owedPing = undefined
        // a failure to send it shows on the channel's reads
        return Effect.ignore(write(ping))
      })))
    })

  return Socket.make({
    reader,
    writer: Effect.succeed({
      write,
      writeAll: (chunks) => Effect.forEach(chunks, write, { discard: true })
    })
  })
}

/** How many replies of a served connection may wait for the client to read before its requests are no longer read. */
const MAX_WAITING_REPLIES = 256

/**
 * How many calls of one connection the server runs at once: requests handed
 * to effect's `RpcServer` and not yet answered with their `Exit` (a
 * fire-and-forget one, `discard` or a notification, until its handler ends);
 * the connection's further requests wait for one of them to end.
 */
export const MAX_CALLS_IN_FLIGHT = 1024

/**
 * How many requests of one connection may wait for a call to end; one past
 * them is refused at once: its `Exit` is a defect naming both limits.
 */
export const MAX_WAITING_CALLS = 4096

/** The defect a request is refused with when `MAX_WAITING_CALLS` of its connection wait already. */
export const TOO_MANY_CALLS =
  `too many calls in flight on this connection: ${MAX_CALLS_IN_FLIGHT} running and ${MAX_WAITING_CALLS} waiting (a streamed call ends once its chunks are acknowledged)`

/**
 * How many bytes the requests waiting on one connection may keep together,
 * each as estimated from its decoded form (about its size on the wire, more
 * for many small values); a request that would take them past it is refused
 * at once: its `Exit` is a defect naming the limit.
 */
export const MAX_WAITING_BYTES = 64 * 1024 * 1024

/** The defect a request is refused with when it would take its connection's waiting requests past `MAX_WAITING_BYTES`. */
export const TOO_MANY_BYTES_WAITING =
  `too many bytes in the requests waiting on this connection: at most ${MAX_WAITING_BYTES} wait behind the ${MAX_CALLS_IN_FLIGHT} calls running (a streamed call ends once its chunks are acknowledged)`

/**
 * `protocol` running at most `MAX_CALLS_IN_FLIGHT` calls of each connection
 * at once (a client that keeps streams open without acknowledging them, each
 * one a call that never ends, held the server's memory without bound: 300 000
 * took 2.7 GiB). A call ends once the one reply that ends it is sent: its
 * `Exit`, or the `Defect` of a handler that died (or of a request whose id is
 * no id, or of a message of no known kind, each counted as a call). A
 * fire-and-forget call (`discard`, or a notification, run as a `discard` call
 * whose acknowledgement is not sent) ends with the fiber that sent its
 * acknowledgement: its handler's. A request beyond the limit waits, in order
 * (an `Eof` behind it too, a second one ending the connection, as does a
 * request with the id of a waiting or running call; one
 * interrupted is answered so, its handler never run), while the connection's
 * `Ack`s, `Interrupt`s and `Ping`s go on being read and served, so a client whose acknowledgements
 * follow its next requests is never stalled; past `MAX_WAITING_CALLS`
 * waiting, or `MAX_WAITING_BYTES` kept by them, a request is refused with an
 * `Exit` (`TOO_MANY_CALLS`, `TOO_MANY_BYTES_WAITING`; a notification is
 * dropped) and costs nothing kept.
 */
const boundCalls = (
  protocol: RpcServer.Protocol["Service"]
): Effect.Effect<RpcServer.Protocol["Service"], never, Scope.Scope> =>
  Effect.gen(function*() {
    const connections = new Map<number, Calls.Calls>()
    const callsOf = (clientId: number): Calls.Calls => {
      let calls = connections.get(clientId)
      if (calls === undefined) {
        calls = Calls.make()
        connections.set(clientId, calls)
        Bound.kept.connections++
      }
      return calls
    }
    yield* Effect.addFinalizer(() => Effect.sync(() => void (Bound.kept.connections -= connections.size)))
    // a connection's count goes with it, and its drainer, which hands effect's server nothing more
    const disconnects = yield* Queue.unbounded<number>()
    yield* Effect.forkScoped(Effect.forever(Effect.flatMap(Queue.take(protocol.disconnects), (clientId) => {
      const drainer = connections.get(clientId)?.drainer
      if (connections.delete(clientId)) Bound.kept.connections--
      return Effect.andThen(
        drainer === undefined ? Effect.void : Fiber.interrupt(drainer),
        Queue.offer(disconnects, clientId)
      )
    })))
    // a call ends once: by its id where the reply names it (a fire-and-forget call's fiber and a failed Exit's
    // Defect both ended one, freeing its place twice), else (a Defect of a handler that died) one of them
    const endedUnsafe = (clientId: number, id?: string | number): void => {
      const calls = connections.get(clientId)
      if (calls === undefined || calls.inFlight === 0) return
      if (id !== undefined && !calls.running.delete(id)) return
      calls.inFlight--
      // none runs: the ids of those ended by a Defect naming none go too
      if (calls.inFlight === 0) calls.running.clear()
      if (calls.wake !== undefined) {
        Deferred.doneUnsafe(calls.wake, Effect.void)
        calls.wake = undefined
      }
    }
    // a call ends once the reply that ends it is sent: one that could not be (too large for the transport) is
    // followed by the Exit of a defect for the same call, or by a Defect if that fails too (sent by the same fiber)
    const sentThenEnded = (clientId: number, sent: Effect.Effect<void>, id?: string | number) =>
      Effect.map(sent, () => endedUnsafe(clientId, id))
    // the Exit of a call that is not fire-and-forget; the Exit of the defect effect's server sends for an
    // acknowledgement it could not send does not end the call: its handler's fiber does. One Effect over the
    // send, success or failure: this runs once per call
    const exitSent = (clientId: number, calls: Calls.Calls, sent: Effect.Effect<void>, id: string | number) => {
      const ends = !calls.acknowledged.has(id)
      return Effect.matchCauseEffect(sent, {
        onSuccess: () => {
          if (ends) endedUnsafe(clientId, id)
          return Effect.void
        },
        // not sent: the Defect this fiber sends next, if the Exit of a defect fails too, is this call's
        onFailure: (cause) =>
          Effect.withFiber((fiber) => {
            calls.unsent.set(fiber, id)
            return Effect.failCause(cause)
          })
      })
    }
    const defectSent = (clientId: number, sent: Effect.Effect<void>) =>
      Effect.withFiber((fiber) => {
        const calls = connections.get(clientId)
        const id = calls?.unsent.get(fiber)
        if (calls === undefined || id === undefined) return sentThenEnded(clientId, sent)
        calls.unsent.delete(fiber)
        if (calls.acknowledged.has(id)) return sent
        // a call that ended since (its defect's Exit was sent) is not this Defect's
        return sentThenEnded(clientId, sent, calls.running.has(id) ? id : undefined)
      })
    // the ids of the notifications run as `discard` calls
    let notifications = 0
    const encodeRefusal = Schema.encodeSync(protocol.codecFor(Schema.Exit(Schema.Never, Schema.Never, Schema.Defect())))
    const refusal = encodeRefusal(Exit.die(TOO_MANY_CALLS)) as RpcMessage.ResponseExitEncoded["exit"]
    const tooLarge = encodeRefusal(Exit.die(TOO_MANY_BYTES_WAITING)) as RpcMessage.ResponseExitEncoded["exit"]
    const interrupted = encodeRefusal(Exit.interrupt()) as RpcMessage.ResponseExitEncoded["exit"]
    const encodeDefect = Schema.encodeSync(protocol.codecFor(Schema.Defect()))
    const pong: RpcMessage.FromServerEncoded = { _tag: "Pong" }
    return {
      ...protocol,
      disconnects,
      send: (clientId, response, transferables) => {
        const sent = protocol.send(clientId, response, transferables)
        if (response._tag !== "Exit") return response._tag === "Defect" ? defectSent(clientId, sent) : sent
        const calls = connections.get(clientId)
        const id = response.requestId
        if (calls === undefined) return sentThenEnded(clientId, sent, id)
        const answered = calls.quiet.get(id)
        if (answered === undefined) return exitSent(clientId, calls, sent, id)
        // a fire-and-forget call's first and only Exit: a failure before its handler started ends it; its
        // acknowledgement is sent by its handler's fiber as it starts, and the call ends with that fiber
        calls.quiet.delete(id)
        const told = answered ? sent : Effect.void
        return response.exit._tag === "Success"
          ? Effect.withFiber((fiber) => {
            calls.acknowledged.add(id)
            fiber.addObserver(() => {
              calls.acknowledged.delete(id)
              endedUnsafe(clientId, id)
            })
            return told
          })
          : sentThenEnded(clientId, told, id)
      },
      run: (f) => {
        // a call handed to effect's server; a fire-and-forget one (a notification, a `discard` request) as a
        // `discard` request, whose acknowledgement, sent as its handler starts, says which fiber runs it
        const start = (
          clientId: number,
          calls: Calls.Calls,
          request: RpcMessage.RequestEncoded
        ): Effect.Effect<void> => {
          calls.inFlight++
          if (request.isNotification === true) {
            const { isNotification: _, ...call } = request
            const id = `@effect-ipc/notification/${notifications++}`
            calls.running.add(id)
            calls.quiet.set(id, false)
            return f(clientId, { ...call, id, discard: true })
          }
          calls.running.add(request.id)
          if (request.discard === true) calls.quiet.set(request.id, true)
          return f(clientId, request)
        }
        // hands the waiting requests to effect's server as calls end, in order
        const drain = (
          clientId: number,
          calls: Calls.Calls,
          reader: Fiber.Fiber<unknown, unknown>
        ): Effect.Effect<void> =>
          Effect.forever(Effect.suspend(() => {
            if (!Calls.canStart(calls, MAX_CALLS_IN_FLIGHT)) {
              return Deferred.await(calls.wake ??= Deferred.makeUnsafe<void>())
            }
            const { message: next, bytes } = calls.held.shift()!
            calls.heldBytes -= bytes
            if (next._tag === "Eof") calls.eofHeld = false
            else if (next._tag === "Request" && next.isNotification !== true) calls.heldIds.delete(next.id)
            return next._tag === "Request" ? start(clientId, calls, next) : f(clientId, next)
          })).pipe(
            // effect's server interrupts the reading of a connection that sends a request it will not serve (the
            // id of a call in flight, or one after `Eof` while calls run): the connection ends, as when it is read
            Effect.onInterrupt(() => Effect.sync(() => reader.interruptUnsafe()))
          )
        const hold = (
          clientId: number,
          calls: Calls.Calls,
          message: RpcMessage.FromClientEncoded
        ): Effect.Effect<void> => {
          const id = message._tag === "Request" && message.isNotification !== true ? message.id : undefined
          // the id of a waiting or running request: effect's server ends a connection that sends the id of a call
          // in flight, as this one would be (kept, it got an Exit of its own besides the first's: its refusal, or
          // an Interrupt of the id ended it while the first ran on, or its run after the Interrupt answered the first)
          if (id !== undefined && (calls.heldIds.has(id) || calls.running.has(id))) return Effect.interrupt
          const room = MAX_WAITING_BYTES - calls.heldBytes
          const bytes = message._tag === "Request" ? Calls.estimatedBytes(message, room) : 0
          if (message._tag === "Request" && (calls.held.length >= MAX_WAITING_CALLS || bytes > room)) {
            // a notification has no reply to carry its refusal
            return id === undefined
              ? Effect.void
              : protocol.send(clientId, { _tag: "Exit", requestId: id, exit: bytes > room ? tooLarge : refusal })
          }
          calls.held.push({ message, bytes })
          calls.heldBytes += bytes
          if (id !== undefined) calls.heldIds.add(id)
          return calls.drainer === undefined
            ? Effect.withFiber((reader) =>
              Effect.map(Effect.forkChild(drain(clientId, calls, reader)), (fiber) => void (calls.drainer = fiber))
            )
            : Effect.void
        }
        return protocol.run((clientId, message) =>
          Effect.suspend(() => {
            const calls = callsOf(clientId)
            switch (message._tag) {
              case "Request": {
                const id: unknown = message.id
                // one whose id is no id is answered with a Defect at once: counted as the call it ends
                if (message.isNotification !== true && typeof id !== "string" && typeof id !== "number") {
                  calls.inFlight++
                  return f(clientId, message)
                }
                return calls.held.length > 0 || calls.inFlight >= MAX_CALLS_IN_FLIGHT
                  ? hold(clientId, calls, message)
                  : start(clientId, calls, message)
              }
              case "Eof":
                if (calls.held.length === 0) return f(clientId, message)
                // effect's server ends a connection that sends an Eof after an Eof while calls run (they do while
                // requests wait): so does this one, which kept every further Eof without bound
                if (calls.eofHeld) return Effect.interrupt
                calls.eofHeld = true
                return hold(clientId, calls, message)
              case "Interrupt": {
                // a waiting request interrupted: answered as an interrupted call, its handler never run
                if (!calls.heldIds.delete(message.requestId)) return f(clientId, message)
                const at = calls.held.findIndex(({ message: held }) =>
                  held._tag === "Request" && held.isNotification !== true && held.id === message.requestId
                )
                if (at < 0) return f(clientId, message)
                calls.heldBytes -= calls.held[at]!.bytes
                calls.held.splice(at, 1)
                return protocol.send(clientId, { _tag: "Exit", requestId: message.requestId, exit: interrupted })
              }
              case "Ping":
                // answered here as effect's server answers it, but the Defect sent for a Pong that could not be
                // sent ends no call (it freed a call's place: more than MAX_CALLS_IN_FLIGHT ran)
                return Effect.catchCause(protocol.send(clientId, pong), (cause) =>
                  Effect.catchCause(
                    protocol.send(clientId, { _tag: "Defect", defect: encodeDefect(Cause.squash(cause)) }),
                    () => Effect.void
                  ))
              case "Ack":
                return f(clientId, message)
              default:
                // a message of no known kind is answered with a Defect at once: counted as the call it ends
                calls.inFlight++
                return f(clientId, message)
            }
          })
        )
      }
    }
  })

/** An effect `SocketServer` over a listener: each accepted channel is one socket. */
export const toSocketServer = (listener: Transport.Listener): SocketServer.SocketServer["Service"] => ({
  address: NetAddress.unixPathAddress(listener.address),
  run: (handler) =>
    Transport.serve(listener, (channel) => handler(socketOver(Effect.succeed(channel), {}, undefined, "server"))).pipe(
      Effect.scoped,
      Effect.mapError((cause) =>
        new SocketServer.SocketServerError({ reason: new SocketServer.SocketServerUnknownError({ cause }) })
      )
    )
})

/** Client options: ping cadence, reconnect schedule and how long calls wait for a server. */
export interface ClientOptions {
  /**
   * How long calls wait for a server that cannot be reached before they fail
   * with an `RpcClientError` naming the address and the reason (default 10 s).
   * The client keeps trying (about once a second); until it reaches the
   * server again, later calls fail at once with that error.
   */
  readonly connectTimeout?: Duration.Input | undefined
  /** How often the client pings the server (default 5 s). */
  readonly pingInterval?: Duration.Input | undefined
  /** Silence after which the connection is dropped (default: the ping interval). */
  readonly pingTimeout?: Duration.Input | undefined
  /** The reconnect schedule (default `Policy.reconnect`). */
  readonly reconnect?: Schedule.Schedule<unknown, Socket.SocketError> | undefined
}

/** The RPC client protocol over the current `Transport`, dialling `address` (and redialling after a loss). */
export const layerClientProtocol = (
  address: string,
  options: ClientOptions = {}
): Layer.Layer<RpcClient.Protocol, IpcError.IpcError, Transport.Transport | RpcSerialization.RpcSerialization> =>
  Layer.effect(RpcClient.Protocol)(
    Effect.gen(function*() {
      // dialled only once a call is made: an address that is not a string fails the build, not every call
      if (typeof address !== "string") return yield* Address.notAString(address)
      const notObject = TransportOptions.notAnObject(options, "the client's options")
      if (notObject !== undefined) return yield* notObject
      // a duration that is not one ("x" was a defect, -1 or NaN none at all); a connectTimeout is no timer (the
      // time waited is compared with it), so any above zero is one, Infinity too (wait for ever)
      const waits = TransportOptions.millisOf(options.connectTimeout)
      const invalid = TransportOptions.checkDurations(
        {
          connectTimeout: waits !== undefined && waits > 0 ? undefined : options.connectTimeout,
          pingInterval: options.pingInterval,
          pingTimeout: options.pingTimeout
        },
        Address.redact(address)
      )
      if (invalid !== undefined) return yield* invalid
      const transport = yield* Transport.Transport
      const serialization = yield* RpcSerialization.RpcSerialization
      const greeting = hello(serializationName(serialization))
      // every connection (and every reconnection) opens with the hello naming this client's serialization
      const socket = socketOver(
        Effect.tap(transport.dial(address), (channel) => channel.send(greeting)),
        { address, connectTimeout: options.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT },
        undefined,
        "client",
        pingOf(serialization)
      )
      const protocol = yield* RpcClient.makeProtocolSocket({
        retryTransientErrors: true,
        retryPolicy: options.reconnect ?? Policy.reconnect,
        ...(options.pingInterval === undefined ? {} : { pingInterval: options.pingInterval }),
        ...(options.pingTimeout === undefined ? {} : { pingTimeout: options.pingTimeout }),
        onPingTimeout: Effect.logWarning(silentServer(Address.redact(address), options))
      }).pipe(Effect.provideService(Socket.Socket, socket))
      return namingSilence(protocol, address, options)
    })
  )

/** Whether a chunk effect's client writes is its ping, as `serialization` encodes it (the same bytes every time). */
const pingOf = (
  serialization: RpcSerialization.RpcSerialization["Service"]
): ((chunk: Uint8Array | string) => boolean) | undefined => {
  const encoded = serialization.makeUnsafe().encode({ _tag: "Ping" })
  if (encoded === undefined) return undefined
  if (typeof encoded === "string") return (chunk) => chunk === encoded
  return (chunk) =>
    typeof chunk !== "string" && chunk.byteLength === encoded.byteLength &&
    chunk.every((byte, i) => byte === encoded[i])
}

/** What a client says of a server that answered none of its pings in time. */
const silentServer = (address: string, options: ClientOptions): string => {
  const waited = Duration.fromInputUnsafe(options.pingTimeout ?? options.pingInterval ?? DEFAULT_PING_INTERVAL)
  return `the server at ${address} answered no ping for ${
    Duration.format(waited)
  } (stopped, or too busy): the connection is dropped, and calls in flight fail`
}

/** effect's ping interval (and so its ping timeout) when none is given. */
const DEFAULT_PING_INTERVAL = Duration.seconds(5)

/** True for the error effect's client fails calls with when its pings went unanswered (a fixed "ping timeout" cause). */
const isPingTimeout = (error: RpcClientError): boolean =>
  error.reason._tag === "SocketReadError" && error.reason.cause instanceof Error &&
  error.reason.cause.message === "ping timeout"

/**
 * `protocol` with effect's error for a silent server ("An error occurred
 * during Read", no address, no reason) replaced by one whose message names
 * the address and what happened, and a call the channel refused to send (a
 * defect in effect's client) failed as an `RpcClientError` naming both.
 */
const namingSilence = (
  protocol: RpcClient.Protocol["Service"],
  dialled: string,
  options: ClientOptions
): RpcClient.Protocol["Service"] => {
  const address = Address.redact(dialled)
  const named = (error: RpcClientError): RpcClientError =>
    isPingTimeout(error)
      ? new RpcClientErrorClass({
        reason: withMessage(new Socket.SocketReadError({ cause: error.reason.cause }), silentServer(address, options))
      })
      : error
  // effect's client makes a write's failure a defect ("An error occurred during Write", naming nothing): a call
  // the channel refused (over its frame limit: FrameTooLarge; a peer that read nothing for writeTimeout:
  // Timeout) fails typed instead, naming the address and the reason
  const refusedOrDefect = (defect: unknown): Effect.Effect<never, RpcClientError> => {
    const refused = Socket.isSocketError(defect) && defect.reason._tag === "SocketWriteError"
      ? defect.reason.cause
      : undefined
    const cause = IpcError.isIpcError(refused) ? Address.redactError(refused, dialled) : undefined
    return cause !== undefined
      ? Effect.fail(
        new RpcClientErrorClass({
          reason: withMessage(new Socket.SocketWriteError({ cause }), `could not send to ${address}: ${cause.message}`)
        })
      )
      : Effect.die(defect)
  }
  return {
    ...protocol,
    run: (clientId, f) =>
      protocol.run(
        clientId,
        (data) => data._tag === "ClientProtocolError" ? f({ ...data, error: named(data.error) }) : f(data)
      ),
    // one handler for both (a call's send passes through it on every call): its errors named, and a defect
    // made typed where the channel refused the call
    send: (clientId, request, transferables) =>
      Effect.catchCause(protocol.send(clientId, request, transferables), (cause) => {
        const defect = Cause.findDefect(cause)
        return Result.isSuccess(defect) ? refusedOrDefect(defect.success) : Effect.failCause(Cause.map(cause, named))
      })
  }
}

/**
 * The RPC server protocol over the current `Transport`, listening at
 * `address`, for clients of the provided serialization; fails if it cannot
 * listen. A client whose hello names another serialization gets a `Defect`
 * reply in its own serialization (where known) and a warning is logged. To
 * serve packed, schema-binary and JSON clients at one address, use
 * `layerServerGroup`.
 */
export const layerServerProtocol = (
  address: string
): Layer.Layer<RpcServer.Protocol, IpcError.IpcError, Transport.Transport | RpcSerialization.RpcSerialization> =>
  Layer.effect(RpcServer.Protocol)(
    Effect.gen(function*() {
      const serialization = yield* RpcSerialization.RpcSerialization
      const listener = yield* Transport.listen(address)
      const route = makeRoute(serializationName(serialization))
      const protocol = yield* RpcServer.makeProtocolSocketServer.pipe(
        Effect.provideService(SocketServer.SocketServer, slotServer(listener.address, route.handler))
      )
      yield* Effect.forkScoped(Transport.serve(listener, negotiate([route])))
      return yield* boundCalls(protocol)
    })
  )

/** Options of `layerServerGroup`. */
export interface GroupServerOptions {
  /** The serializations served (default all three: `["packed", "binary", "json"]`). */
  readonly serializations?: ReadonlyArray<SerializationName> | undefined
  /** How many requests run at once, all clients of the server together (effect's default: unbounded). */
  readonly concurrency?: number | "unbounded" | undefined
  /** Told the listener's address once it listens (at port 0, the port bound). */
  readonly onListen?: ((address: string) => Effect.Effect<void>) | undefined
}

/**
 * Serves `group` at `address` to packed, schema-binary and JSON clients alike: each
 * connection's hello (see `hello`) picks its serialization, and one server per
 * serialization runs the same handlers. A client asking for a serialization
 * not in `serializations` gets a `Defect` reply in its own serialization and a
 * warning is logged.
 */
export const layerServerGroup = <Rpcs extends Rpc.Any>(
  group: RpcGroup.RpcGroup<Rpcs>,
  address: string,
  options: GroupServerOptions = {}
): Layer.Layer<
  never,
  IpcError.IpcError,
  Transport.Transport | Rpc.ToHandler<Rpcs> | Rpc.Middleware<Rpcs> | Rpc.ServicesServer<Rpcs>
> =>
  Layer.effectDiscard(Effect.gen(function*() {
    const listener = yield* Transport.listen(address)
    if (options.onListen !== undefined) yield* options.onListen(listener.address)
    const routes: Array<Route> = []
    for (const name of options.serializations ?? ["packed", "binary", "json"]) {
      const route = makeRoute(name)
      const protocol = yield* RpcServer.makeProtocolSocketServer.pipe(
        Effect.provideService(SocketServer.SocketServer, slotServer(listener.address, route.handler)),
        Effect.provide(layerSerializationFor(name)),
        Effect.flatMap(boundCalls)
      )
      yield* Effect.forkScoped(
        RpcServer.make(group, { concurrency: options.concurrency }).pipe(
          Effect.provideService(RpcServer.Protocol, protocol)
        )
      )
      routes.push(route)
    }
    yield* Effect.forkScoped(Transport.serve(listener, negotiate(routes)))
  }))

/** How long calls wait for an unreachable server by default. */
const DEFAULT_CONNECT_TIMEOUT = Duration.seconds(10)

/**
 * `IPC_CONNECT_TIMEOUT` (optional): how long calls wait for an unreachable
 * server, as the transport options' durations: `"10 seconds"`, or milliseconds (`5000`).
 */
export const connectTimeoutConfig: Config.Config<Duration.Duration> = Config.String("IPC_CONNECT_TIMEOUT").pipe(
  Config.mapEffect((text) =>
    Effect.mapError(
      Schema.decodeUnknownEffect(TransportOptions.Duration)(text),
      (error) => new Config.ConfigError(error)
    ).pipe(
      // zero failed every call at once, server or not
      Effect.filterOrFail(
        (duration) => Duration.toMillis(duration) > 0,
        () =>
          new Config.ConfigError(
            new ConfigProvider.SourceError({
              message: `IPC_CONNECT_TIMEOUT ${JSON.stringify(text)} is not above zero (calls would fail at once)`
            })
          )
      )
    )
  ),
  Config.withDefault(DEFAULT_CONNECT_TIMEOUT)
)

/**
 * The RPC server protocol at the configured address (`Registry.IpcAddress`,
 * provided by `Registry.layerConfig` from `IPC_TRANSPORT` / `IPC_ADDRESS`).
 */
export const layerServer: Layer.Layer<
  RpcServer.Protocol,
  IpcError.IpcError,
  Transport.Transport | Registry.IpcAddress | RpcSerialization.RpcSerialization
> = Layer.unwrap(Effect.map(Registry.IpcAddress, layerServerProtocol))

/**
 * The RPC client protocol dialling the configured address
 * (`Registry.IpcAddress`); `connectTimeout` defaults to `IPC_CONNECT_TIMEOUT`.
 */
export const layerClient = (
  options: ClientOptions = {}
): Layer.Layer<
  RpcClient.Protocol,
  Config.ConfigError | IpcError.IpcError,
  Transport.Transport | Registry.IpcAddress | RpcSerialization.RpcSerialization
> =>
  Layer.unwrap(Effect.gen(function*() {
    const notObject = TransportOptions.notAnObject(options, "the client's options")
    if (notObject !== undefined) return yield* notObject
    const address = yield* Registry.IpcAddress
    const connectTimeout = options.connectTimeout ?? (yield* connectTimeoutConfig)
    return layerClientProtocol(address, { ...options, connectTimeout })
  }))

const PACKED_CONTENT_TYPE = "application/vnd.effect-ipc.rpc+packed"

/** effect-ipc's own binary serialization (`packed`): values as `Schema.toCodecIso` leaves them, bytes copied once. */
const packed: RpcSerialization.RpcSerialization["Service"] = RpcSerialization.RpcSerialization.of({
  contentType: PACKED_CONTENT_TYPE,
  includesFraming: false,
  codecFor: Schema.toCodecIso,
  makeUnsafe: () => ({
    decode: (data) => Packed.decode(typeof data === "string" ? Bytes.utf8(data) : data),
    encode: (message) =>
      Array.isArray(message)
        ? (message.length === 0 ? undefined : Packed.encodeMany(message))
        : Packed.encode(message)
  })
})

/**
 * The default serialization (`packed`): effect-ipc's binary format, one RPC
 * message per channel message. Binary fields travel as bytes, copied once on
 * the way out and handed over as views of the received message on the way in
 * (no base64, no arena); the size limit is the transport's own frame limit.
 * Its layout is in the repository's `docs/wire.md`.
 */
export const layerSerialization: Layer.Layer<RpcSerialization.RpcSerialization> = Layer.succeed(
  RpcSerialization.RpcSerialization,
  packed
)

/**
 * `serialization` with each channel message decoded on its own: its frames
 * must fill it exactly (a frame announced longer than its message is refused,
 * not buffered across messages), each frame is fed alone (a bad one fails
 * by itself), and a parser a bad frame spent is replaced.
 */
const wholeMessages = (
  serialization: RpcSerialization.RpcSerialization["Service"]
): RpcSerialization.RpcSerialization["Service"] =>
  RpcSerialization.RpcSerialization.of({
    ...serialization,
    makeUnsafe: () => {
      let parser = serialization.makeUnsafe()
      return {
        decode: (data) => {
          const bytes = typeof data === "string" ? Bytes.utf8(data) : data
          // the usual message, one frame, is checked without a list of its frames
          const frames = Bytes.isOneUvarintFrame(bytes) ? undefined : Bytes.uvarintFrames(bytes)
          if (typeof frames === "string") throw new Error(`schema-binary message refused: ${frames}`)
          try {
            if (frames === undefined || frames.length === 1) return parser.decode(bytes)
            return frames.flatMap(([start, end]) => parser.decode(bytes.subarray(start, end)))
          } catch (error) {
            parser = serialization.makeUnsafe()
            throw error
          }
        },
        encode: (message) => parser.encode(message)
      }
    }
  })

/** effect's own schema-driven binary format (`binary`, `RpcSerialization.layerSchemaBinary`), one RPC message per channel message. */
export const layerSerializationSchemaBinary: Layer.Layer<RpcSerialization.RpcSerialization> = Layer.effect(
  RpcSerialization.RpcSerialization
)(Effect.map(Effect.service(RpcSerialization.RpcSerialization), wholeMessages)).pipe(
  Layer.provide(RpcSerialization.layerSchemaBinary({ maxFrameSize: "unbounded" }))
)

/** How deep JSON messages may nest arrays and objects (as packed values may). */
export const MAX_JSON_DEPTH = Packed.MAX_DEPTH

/** The message of the error a JSON message nested deeper than `MAX_JSON_DEPTH` is refused with (the cause of the call's `RpcClientError`). */
export const JSON_TOO_DEEP = `JSON nested deeper than ${MAX_JSON_DEPTH} levels`

/**
 * Whether JSON `text` (a string, or its UTF-8 bytes) nests arrays and
 * objects deeper than `max`: brackets counted outside strings, in one pass
 * without recursion (the text need not be valid JSON).
 */
export const jsonNestsDeeper = (text: string | Uint8Array, max: number = MAX_JSON_DEPTH): boolean => {
  // fewer than 2 * (max + 1) characters cannot open more than max brackets and close them
  if (text.length <= max) return false
  const at = typeof text === "string" ? (i: number) => text.charCodeAt(i) : (i: number) => text[i]!
  return nestsDeeper(text, at, max)
}

/** The end of the JSON string whose opening quote is at `open` (the index of its closing quote, or -1). */
const stringEnd = (text: string | Uint8Array, open: number, at: (i: number) => number): number => {
  let from = open + 1
  for (;;) {
    // indexOf runs natively over the string's body (a long base64 field costs one call)
    const quote = typeof text === "string" ? text.indexOf("\"", from) : text.indexOf(0x22, from)
    if (quote < 0) return -1
    let escapes = 0
    while (at(quote - 1 - escapes) === 0x5c) escapes++
    if (escapes % 2 === 0) return quote
    from = quote + 1
  }
}

const nestsDeeper = (text: string | Uint8Array, at: (i: number) => number, max: number): boolean => {
  let depth = 0
  for (let i = 0; i < text.length; i++) {
    const c = at(i)
    if (c === 0x22) {
      i = stringEnd(text, i, at)
      if (i < 0) return false
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true
    } else if (c === 0x5d || c === 0x7d) {
      depth--
    }
  }
  return false
}

/**
 * effect's JSON serialization, refusing a message nested deeper than
 * `MAX_JSON_DEPTH` before it is parsed (effect's server wrote such an id into
 * its error text, recursing until the stack ran out, and dropped the
 * connection).
 */
const json: RpcSerialization.RpcSerialization["Service"] = RpcSerialization.RpcSerialization.of({
  ...RpcSerialization.json,
  makeUnsafe: () => {
    const parser = RpcSerialization.json.makeUnsafe()
    return {
      decode: (data) => {
        if (jsonNestsDeeper(data)) throw new SyntaxError(JSON_TOO_DEEP)
        return parser.decode(data)
      },
      encode: parser.encode
    }
  }
})

/** JSON serialization, one RPC message per channel message: slower, but readable by any peer. */
export const layerSerializationJson: Layer.Layer<RpcSerialization.RpcSerialization> = Layer.succeed(
  RpcSerialization.RpcSerialization,
  json
)

// ---- serialization negotiation ------------------------------------------------

/** The serializations a client can name in its hello: effect-ipc's `packed` (the default), effect's schema `binary`, or `json`. */
export type SerializationName = "packed" | "binary" | "json"

/** What every hello starts with; the serialization's name follows (`effect-rpc:json`). */
export const HELLO_PREFIX = "effect-rpc:"

/** What an `RpcSerialization` parser encoded, as bytes to send (text as UTF-8, a plain `Uint8Array`). */
export const encodedBytes = (encoded: Uint8Array | string): Uint8Array =>
  typeof encoded === "string" ? Bytes.utf8(encoded) : encoded

/** The hello naming serialization `name`: the first message a client sends on each connection. */
export const hello = (name: string): Uint8Array => Bytes.utf8(`${HELLO_PREFIX}${name}`)

const BINARY_CONTENT_TYPE = "application/vnd.effect.rpc+schema-binary"

/** The name a hello gives `serialization`: `packed`, `binary`, `json`, or its content type for any other. */
export const serializationName = (serialization: RpcSerialization.RpcSerialization["Service"]): string =>
  serialization === json || serialization === RpcSerialization.json
    ? "json"
    : serialization.contentType === PACKED_CONTENT_TYPE
    ? "packed"
    : serialization.contentType === BINARY_CONTENT_TYPE
    ? "binary"
    : serialization.contentType

/** The serialization layer of a name: `packed` (`layerSerialization`), `binary` (`layerSerializationSchemaBinary`) or `json` (`layerSerializationJson`). */
export const layerSerializationFor = (name: SerializationName): Layer.Layer<RpcSerialization.RpcSerialization> =>
  name === "json" ? layerSerializationJson : name === "binary" ? layerSerializationSchemaBinary : layerSerialization

/** How a served serialization's connections reach its RPC server: the handler effect's socket server runs. */
type SocketHandler = (socket: Socket.Socket) => Effect.Effect<unknown, unknown>

interface Route {
  readonly name: string
  readonly handler: Deferred.Deferred<SocketHandler>
}

const makeRoute = (name: string): Route => ({ name, handler: Deferred.makeUnsafe<SocketHandler>() })

/** A socket server whose `run` only hands its handler over: `negotiate` feeds it the connections of its route. */
const slotServer = (address: string, slot: Deferred.Deferred<SocketHandler>): SocketServer.SocketServer["Service"] => ({
  address: NetAddress.unixPathAddress(address),
  // effect's socket protocol runs a handler that needs no services (`Effect.scoped(onSocket(socket))`)
  run: (handler) => Effect.andThen(Deferred.succeed(slot, handler as unknown as SocketHandler), Effect.never)
})

const strictText = new TextDecoder("utf-8", { fatal: true })

const asText = (bytes: Uint8Array): string | undefined => {
  try {
    return strictText.decode(bytes)
  } catch {
    return undefined
  }
}

/** A hello is at most this many bytes (`effect-rpc:` and a name). */
const MAX_HELLO = 64

/** Only a first message up to this size, starting with `{` or `[`, is parsed to tell JSON from binary. */
const MAX_SNIFFED = 64 * 1024

/** What of a client's serialization name is shown in logs and replies. */
const MAX_SHOWN_NAME = 32

const helloPrefix = Bytes.utf8(HELLO_PREFIX)

/** True when `bytes` begins with `effect-rpc:` (compared as bytes: nothing is decoded). */
const startsWithPrefix = (bytes: Uint8Array): boolean => {
  if (bytes.byteLength < helloPrefix.byteLength) return false
  for (let i = 0; i < helloPrefix.byteLength; i++) if (bytes[i] !== helloPrefix[i]) return false
  return true
}

/** True for a small message that is JSON text (an object or array): only such a one is parsed. */
const isJsonMessage = (bytes: Uint8Array): boolean => {
  if (bytes.byteLength > MAX_SNIFFED) return false
  let i = 0
  while (i < bytes.byteLength && (bytes[i] === 0x20 || bytes[i] === 0x09 || bytes[i] === 0x0a || bytes[i] === 0x0d)) {
    i++
  }
  if (bytes[i] !== 0x7b && bytes[i] !== 0x5b) return false
  const text = asText(bytes)
  if (text === undefined) return false
  try {
    JSON.parse(text)
    return true
  } catch {
    return false
  }
}

/** A client's serialization name as logs and replies show it: JSON-quoted, cut to 32 characters. */
const shownName = (name: string): string =>
  name.length > MAX_SHOWN_NAME
    ? `${JSON.stringify(name.slice(0, MAX_SHOWN_NAME))} (cut from ${name.length} characters)`
    : JSON.stringify(name)

/** A first message that is no hello a server could serve: what it asked, as shown. */
interface BadHello {
  readonly name: undefined
  readonly first: undefined
  readonly shown: string
}

/** A first message that names, or implies, a serialization. */
interface Hello {
  readonly name: string
  readonly first: Uint8Array | undefined
}

/**
 * What a connection's first message asks for: the name in a hello (at most
 * 64 bytes; a longer message starting `effect-rpc:` is a bad hello, never
 * decoded), or for a client that sent none (effect-ipc 0.1, or a hand-written
 * one) `json` when that message is small JSON text (an object or array of up
 * to 64 KiB) and `binary` otherwise; the message is then kept for the server
 * (schema-binary messages are never UTF-8 text).
 */
const readHello = (first: Uint8Array): Hello | BadHello => {
  if (startsWithPrefix(first)) {
    if (first.byteLength > MAX_HELLO) {
      return { name: undefined, first: undefined, shown: `a hello of ${first.byteLength} bytes (at most ${MAX_HELLO})` }
    }
    const text = asText(first)
    if (text === undefined) return { name: undefined, first: undefined, shown: "a hello that is not UTF-8 text" }
    return { name: text.slice(HELLO_PREFIX.length), first: undefined }
  }
  return { name: isJsonMessage(first) ? "json" : "binary", first }
}

const isHello = (message: Uint8Array): boolean => {
  if (message.byteLength > MAX_HELLO || !startsWithPrefix(message)) return false
  return asText(message) !== undefined
}

/**
 * The channel as the RPC server reads it: `first` (if kept) comes first, and
 * later hellos are dropped. Over a channel that outlives its client (the
 * durable `file://` roles) a restarted client says hello again mid-stream; a
 * hello is never a message of any serialization (packed ones start with the
 * byte 0xe1 or 0xe2, schema-binary ones are not UTF-8 text, JSON ones not
 * `effect-rpc:...`), so dropping it is safe. `read` is the socket's read of
 * the channel; `first` is handed out once per connection.
 */
const serverPull = (
  read: Effect.Effect<NonEmptyReadonlyArray<Uint8Array>, Socket.SocketError>,
  server: ServerRead
): Effect.Effect<NonEmptyReadonlyArray<Uint8Array>, Socket.SocketError> => {
  const pull: Effect.Effect<NonEmptyReadonlyArray<Uint8Array>, Socket.SocketError> = Effect.flatMap(read, (batch) => {
    if (!batch.some(isHello)) return Effect.succeed(batch)
    const kept = batch.filter((message) => !isHello(message))
    return kept.length === 0 ? pull : Effect.succeed(kept as unknown as NonEmptyReadonlyArray<Uint8Array>)
  })
  if (server.first === undefined) return pull
  return Effect.suspend(() => {
    const first = server.first
    if (first === undefined) return pull
    server.first = undefined
    return Effect.succeed([first] as const)
  })
}

/** A `Defect` message in serialization `name` (packed, binary or JSON), for a client this server cannot serve. */
const defectReply = (name: string, message: string): Effect.Effect<Uint8Array | undefined> =>
  name !== "packed" && name !== "binary" && name !== "json"
    ? Effect.succeed(undefined)
    : Effect.gen(function*() {
      const serialization = yield* RpcSerialization.RpcSerialization
      const defect = Schema.encodeSync(serialization.codecFor(Schema.Defect()))(message)
      const encoded = serialization.makeUnsafe().encode({ _tag: "Defect", defect })
      return encoded === undefined ? undefined : encodedBytes(encoded)
    }).pipe(Effect.provide(layerSerializationFor(name)))

/** Turns away a client whose serialization is not served: a `Defect` reply it can read, a warning, a close. */
const refuse = (channel: IpcChannel.IpcChannel, asked: Hello | BadHello, routes: ReadonlyArray<Route>) =>
  Effect.gen(function*() {
    const served = routes.map((route) => route.name).join(" and ")
    const where = Address.redact(channel.address)
    const who = channel.peer.pid === undefined ? where : `${where} (pid ${channel.peer.pid})`
    const name = asked.name ?? ""
    const detail = `this RPC server speaks ${served} serialization, not ${
      asked.name === undefined ? asked.shown : shownName(asked.name)
    }`
    yield* Effect.logWarning(`refused an RPC client at ${who}: ${detail}`)
    const reply = yield* defectReply(name, detail)
    if (reply !== undefined) yield* Effect.ignore(channel.send(reply))
    yield* channel.close
  })

/** Serves one accepted channel: reads its hello, then hands it to the RPC server of that serialization. */
const negotiate = (routes: ReadonlyArray<Route>) => (channel: IpcChannel.IpcChannel): Effect.Effect<unknown, unknown> =>
  Effect.gen(function*() {
    const asked = readHello(yield* channel.receive)
    const route = routes.find((candidate) => candidate.name === asked.name)
    if (route === undefined) return yield* refuse(channel, asked, routes)
    const handler = yield* Deferred.await(route.handler)
    const socket = socketOver(Effect.succeed(channel), { address: channel.address }, { first: asked.first }, "server")
    return yield* handler(socket).pipe(Effect.catchCause(connectionEnd))
  })

/**
 * How a served connection ended, for `Transport.serve`: a client that closed is done; one that was lost
 * fails with the channel's `IpcError` (routine for a server: logged at debug level, not as a handler
 * that failed); anything else as it is.
 */
const connectionEnd = (cause: Cause.Cause<unknown>): Effect.Effect<void, unknown> => {
  // effect's socket server ends a connection's run with its socket's error as a defect
  const error = Cause.hasInterruptsOnly(cause) ? undefined : Cause.squash(cause)
  if (Socket.isSocketError(error)) {
    const reason = error.reason
    if (reason._tag === "SocketCloseError") return Effect.void
    if ("cause" in reason && IpcError.isIpcError(reason.cause)) return Effect.fail(reason.cause)
  }
  return Effect.failCause(cause)
}

/**
 * Retries a call that is safe to repeat when the link dropped under it
 * (`RpcClientError`), with `Policy.retry`. Typed errors of the procedure itself
 * are not retried. Use only for idempotent operations. A `schedule` that is
 * not a `Schedule` (a number of retries: `Policy.retry(3)` is one) fails with
 * `InvalidOption` before the call runs.
 */
export const retryIdempotent = <A, E, R>(
  call: Effect.Effect<A, E | RpcClientError, R>,
  schedule: Schedule.Schedule<unknown> = Policy.retry(5)
): Effect.Effect<A, E | RpcClientError | IpcError.IpcError, R> =>
  // anything else died as "not a valid effect", the call's success or failure lost
  Schedule.isSchedule(schedule)
    ? Effect.retry(call, {
      schedule,
      while: (error) =>
        typeof error === "object" && error !== null && "_tag" in error && error._tag === "RpcClientError"
    })
    : Effect.fail(
      IpcError.make(
        "InvalidOption",
        `schedule ${
          typeof schedule === "number" ? String(schedule) : TransportOptions.kindOf(schedule)
        } is not a Schedule (Policy.retry(times) makes one)`
      )
    )
