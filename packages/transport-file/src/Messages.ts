/**
 * The seed's message model: requests, responses and events with an `id`, a
 * `timestamp` (ms since the epoch), a `type`, and `reply_to`, `method`,
 * `payload` and `error` as ipckit's `FileMessage` has them, one JSON object
 * per message. A `MessageChannel` sends them, waits for the response to a
 * request, and hands every other message to `receive`:
 *
 * - waiting for a response never drops the messages that arrive meanwhile
 *   (ipckit's `wait_response` discards them): they stay queued, in order;
 * - a message is committed (the cursor moves past it) only once it has been
 *   handed out, and only in log order, so a restarted side gets exactly the
 *   messages it had not been given (and a response `waitResponse` took ahead
 *   of them again, as the cursor marks one position);
 * - a record that is not a valid message is reported as a `Decode` error by
 *   the `receive` that reaches it, and the messages after it still arrive.
 *
 * `Messages.open(dir, role)` speaks it over a `FileChannel` (one message per
 * log record); `Ipckit.open(dir, role)` over ipckit's own JSON files.
 *
 * @since 0.1.0
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import type { NonEmptyReadonlyArray } from "effect/Array"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as FileChannel from "./FileChannel.ts"

/** The three kinds of message. */
export const MessageType = Schema.Literals(["request", "response", "event"])

/** A kind of message: `request`, `response` or `event`. */
export type MessageType = typeof MessageType.Type

/** One message of the seed's protocol (the fields of ipckit's `FileMessage`, in its order). */
export const Message = Schema.Struct({
  id: Schema.String,
  timestamp: Schema.Number.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(0)),
  type: MessageType,
  reply_to: Schema.optionalKey(Schema.String),
  method: Schema.optionalKey(Schema.String),
  payload: Schema.Json,
  error: Schema.optionalKey(Schema.String)
})

/** One message of the seed's protocol. */
export type Message = typeof Message.Type

/** A JSON value (a message's payload). */
export type Json = Schema.Json

/** A fresh message id: a random UUID (version 4). */
export const newId = (): string => crypto.randomUUID()

const now = () => Date.now()

/** A request for `method` (its id is the id of the response to wait for). */
export const request = (method: string, payload: Json): Message => ({
  id: newId(),
  timestamp: now(),
  type: "request",
  method,
  payload
})

/** The response to the request with id `requestId`. */
export const response = (requestId: string, payload: Json): Message => ({
  id: newId(),
  timestamp: now(),
  type: "response",
  reply_to: requestId,
  payload
})

/** An error response to the request with id `requestId` (payload `null`, as ipckit writes it). */
export const errorResponse = (requestId: string, error: string): Message => ({
  id: newId(),
  timestamp: now(),
  type: "response",
  reply_to: requestId,
  payload: null,
  error
})

/** An event called `name` (no response expected). */
export const event = (name: string, payload: Json): Message => ({
  id: newId(),
  timestamp: now(),
  type: "event",
  method: name,
  payload
})

const decodeMessage = Schema.decodeUnknownExit(Message)
const encodeMessage = Schema.encodeUnknownExit(Message)

/**
 * Reads a message from a parsed JSON value. Lenient where serde is: an
 * optional field that is `null` counts as absent.
 */
export const fromJson = (value: unknown, where?: string): Message | IpcError.IpcError => {
  let input = value
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    const copy: Record<string, unknown> = { ...value }
    for (const key of ["reply_to", "method", "error"]) if (copy[key] === null) delete copy[key]
    input = copy
  }
  const exit = decodeMessage(input)
  if (exit._tag === "Success") return exit.value
  return new IpcError.IpcError({
    reason: "Decode",
    detail: `not a message: ${Cause.pretty(exit.cause).split("\n")[0]}`,
    ...(where === undefined ? {} : { address: where }),
    cause: Cause.squash(exit.cause)
  })
}

/** The JSON object of a message, with its fields in ipckit's order (absent optional fields left out). */
export const toJson = (message: Message): Record<string, unknown> | IpcError.IpcError => {
  const exit = encodeMessage(message)
  if (exit._tag === "Failure") {
    return IpcError.make("Encode", `not a message: ${Cause.pretty(exit.cause).split("\n")[0]}`)
  }
  const encoded = exit.value as Record<string, unknown>
  const out: Record<string, unknown> = {}
  for (const key of ["id", "timestamp", "type", "reply_to", "method", "payload", "error"]) {
    if (encoded[key] !== undefined) out[key] = encoded[key]
  }
  return out
}

/** A channel of seed messages. */
export interface MessageChannel {
  /** Sends one message as it is. */
  readonly send: (message: Message) => Effect.Effect<void, IpcError.IpcError>
  /** Sends a request and returns its id (wait for the answer with `waitResponse`). */
  readonly sendRequest: (method: string, payload: Json) => Effect.Effect<string, IpcError.IpcError>
  /** Answers the request `requestId`. */
  readonly sendResponse: (requestId: string, payload: Json) => Effect.Effect<void, IpcError.IpcError>
  /** Answers the request `requestId` with an error. */
  readonly sendError: (requestId: string, error: string) => Effect.Effect<void, IpcError.IpcError>
  /** Sends an event. */
  readonly sendEvent: (name: string, payload: Json) => Effect.Effect<void, IpcError.IpcError>
  /**
   * Waits for the response to `requestId` (reason `Timeout` after `timeout`,
   * default 30 s); every other message stays queued for `receive`.
   */
  readonly waitResponse: (
    requestId: string,
    timeout?: Duration.Input
  ) => Effect.Effect<Message, IpcError.IpcError>
  /** Sends a request and waits for its response (see `waitResponse`). */
  readonly request: (
    method: string,
    payload: Json,
    timeout?: Duration.Input
  ) => Effect.Effect<Message, IpcError.IpcError>
  /** The next message nobody is waiting for; an invalid record fails this one receive with `Decode`. */
  readonly receive: Effect.Effect<Message, IpcError.IpcError>
  /** The messages nobody is waiting for, as a stream (ends when the peer closes). */
  readonly messages: Stream.Stream<Message, IpcError.IpcError>
}

/** What a message channel runs on (for other carriers than a file channel). */
export interface Source {
  /** Sends one message. */
  readonly send: (message: Message) => Effect.Effect<void, IpcError.IpcError>
  /**
   * The next received items, in order, each with a commit token (increasing)
   * and its size in bytes where known; fails with `Cause.Done` when the peer has closed.
   */
  readonly pull: Effect.Effect<
    NonEmptyReadonlyArray<
      { readonly item: Message | IpcError.IpcError; readonly token: number; readonly bytes?: number | undefined }
    >,
    IpcError.IpcError | Cause.Done
  >
  /** Marks everything up to `token` as handed out (called in token order). */
  readonly commit: (token: number) => void
}

interface Queued {
  readonly item: Message | IpcError.IpcError
  readonly token: number
  /** Its size as received, counted against `maxBufferedBytes` (0 if not given). */
  readonly bytes?: number | undefined
}

/** How far `make` reads ahead of `receive`. */
export interface ReadAhead {
  /** Messages queued for `receive` above which the source is not read (default 4096). */
  readonly maxBufferedMessages?: number | undefined
  /** Bytes queued for `receive` above which the source is not read (default 8 MiB). */
  readonly maxBufferedBytes?: number | undefined
}

/**
 * Waits until `ready()`: looked at as the wait registers (effect may yield to
 * the event loop before it), then woken through `wakers` (its waker removed
 * if it is interrupted).
 */
const waitUntil = (ready: () => boolean, wakers: Array<() => void>): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    if (ready()) return resume(Effect.void)
    const wake = () => resume(Effect.void)
    wakers.push(wake)
    return Effect.sync(() => {
      const i = wakers.indexOf(wake)
      if (i >= 0) wakers.splice(i, 1)
    })
  })

/**
 * Makes a message channel over `source`. A background fiber (in the scope)
 * reads the source and routes responses to their waiters. It reads ahead of
 * `receive` only up to `readAhead`'s bounds, but on while a `waitResponse`
 * waits (its response may come after what is queued; what it can then queue
 * is bounded by what the source holds unread).
 */
export const make = (source: Source, readAhead?: ReadAhead): Effect.Effect<MessageChannel, never, Scope.Scope> =>
  Effect.gen(function*() {
    const maxMessages = readAhead?.maxBufferedMessages ?? 4096
    const maxBytes = readAhead?.maxBufferedBytes ?? 8 * 1024 * 1024
    const queue: Array<Queued> = []
    let queuedBytes = 0
    const takers: Array<() => void> = []
    const waiters = new Map<string, (message: Message) => void>()
    // tokens handed out or still pending, in order: commit the prefix that is done
    const pending: Array<{ readonly token: number; done: boolean }> = []
    let end: IpcError.IpcError | Cause.Done | undefined

    const markDone = (token: number) => {
      const entry = pending.find((p) => p.token === token)
      if (entry !== undefined) entry.done = true
      let last: number | undefined
      while (pending.length > 0 && pending[0]!.done) last = pending.shift()!.token
      if (last !== undefined) source.commit(last)
    }
    // a message counts as handled once its taker asks for another one (or the scope closes)
    let handed: Array<number> = []
    const settle = () => {
      for (const token of handed) markDone(token)
      handed = []
    }
    yield* Effect.addFinalizer(() => Effect.sync(settle))
    const wakeTakers = () => {
      for (const wake of takers.splice(0)) wake()
    }

    // the reader reads on while there is room, or while a response is awaited
    const hasRoom = () => waiters.size > 0 || (queue.length < maxMessages && queuedBytes < maxBytes)
    const roomWaiters: Array<() => void> = []
    const roomMade = () => {
      if (roomWaiters.length > 0 && hasRoom()) { for (const wake of roomWaiters.splice(0)) wake() }
    }
    const waitRoom = waitUntil(hasRoom, roomWaiters)
    const dequeued = (entry: Queued): Queued => {
      queuedBytes -= entry.bytes ?? 0
      roomMade()
      return entry
    }

    const route = (batch: NonEmptyReadonlyArray<Queued>) =>
      Effect.sync(() => {
        for (const entry of batch) {
          pending.push({ token: entry.token, done: false })
          const item = entry.item
          if (!IpcError.isIpcError(item) && item.type === "response" && item.reply_to !== undefined) {
            const waiter = waiters.get(item.reply_to)
            if (waiter !== undefined) {
              waiters.delete(item.reply_to)
              handed.push(entry.token)
              waiter(item)
              continue
            }
          }
          queue.push(entry)
          queuedBytes += entry.bytes ?? 0
        }
        wakeTakers()
      })

    yield* Effect.forkScoped(
      Effect.forever(waitRoom.pipe(Effect.andThen(source.pull), Effect.flatMap(route))).pipe(
        Effect.catchCause((cause) =>
          Effect.sync(() => {
            const error = Cause.squash(cause)
            end = IpcError.isIpcError(error)
              ? error
              : Cause.isDone(error)
              ? error
              : IpcError.make("Unknown", `the message reader stopped: ${String(error)}`)
            wakeTakers()
          })
        )
      )
    )

    const closedError = () =>
      end === undefined || !IpcError.isIpcError(end)
        ? IpcError.closedByPeer()
        : end

    // effect may yield to the event loop between a look at the queue and this wait: what the reader
    // routed meanwhile found no taker, so the wait looks again as it registers
    const waitChange = waitUntil(() => queue.length > 0 || end !== undefined, takers)

    // a response that arrived before anyone waited for it sits in the queue: take it from there
    const takeQueuedResponse = (requestId: string): Message | undefined => {
      const i = queue.findIndex((q) =>
        !IpcError.isIpcError(q.item) && q.item.type === "response" && q.item.reply_to === requestId
      )
      if (i < 0) return undefined
      const entry = dequeued(queue.splice(i, 1)[0]!)
      handed.push(entry.token)
      return entry.item as Message
    }

    const receiveNext: Effect.Effect<Message, IpcError.IpcError> = Effect.suspend(() => {
      const entry = queue.shift()
      if (entry !== undefined) {
        dequeued(entry)
        handed.push(entry.token)
        return IpcError.isIpcError(entry.item) ? Effect.fail(entry.item) : Effect.succeed(entry.item)
      }
      if (end !== undefined) return Effect.fail(closedError())
      return Effect.andThen(waitChange, receiveNext)
    })
    const receive = Effect.suspend(() => {
      settle()
      return receiveNext
    })

    const waitResponse: MessageChannel["waitResponse"] = (requestId, timeout = "30 seconds") =>
      Effect.suspend(() => {
        settle()
        const queued = takeQueuedResponse(requestId)
        if (queued !== undefined) return Effect.succeed(queued)
        if (end !== undefined) return Effect.fail(closedError())
        return Effect.callback<Message, IpcError.IpcError>((resume) => {
          // looked at again here: the response (or the end) may have come while the fiber yielded
          const arrived = takeQueuedResponse(requestId)
          if (arrived !== undefined) return resume(Effect.succeed(arrived))
          if (end !== undefined) return resume(Effect.fail(closedError()))
          waiters.set(requestId, (message) => resume(Effect.succeed(message)))
          // a reader stopped by a full queue reads on: the response may be behind what is queued
          roomMade()
          const onEnd = () => {
            if (end !== undefined && waiters.has(requestId)) {
              waiters.delete(requestId)
              resume(Effect.fail(closedError()))
            } else if (waiters.has(requestId)) {
              takers.push(onEnd)
            }
          }
          takers.push(onEnd)
          return Effect.sync(() => {
            waiters.delete(requestId)
            const i = takers.indexOf(onEnd)
            if (i >= 0) takers.splice(i, 1)
          })
        }).pipe(
          Effect.timeoutOrElse({
            duration: timeout,
            orElse: () =>
              Effect.fail(
                IpcError.make(
                  "Timeout",
                  `no response to request ${requestId} within ${Duration.format(Duration.fromInputUnsafe(timeout))}`
                )
              )
          })
        )
      })

    const sendRequest = (method: string, payload: Json) => {
      const message = request(method, payload)
      return Effect.as(source.send(message), message.id)
    }

    return {
      send: source.send,
      sendRequest,
      sendResponse: (requestId, payload) => source.send(response(requestId, payload)),
      sendError: (requestId, error) => source.send(errorResponse(requestId, error)),
      sendEvent: (name, payload) => source.send(event(name, payload)),
      waitResponse,
      request: (method, payload, timeout) =>
        Effect.flatMap(sendRequest(method, payload), (id) => waitResponse(id, timeout)),
      receive,
      messages: Stream.fromEffectRepeat(
        Effect.catch(
          receive,
          (error): Effect.Effect<never, IpcError.IpcError | Cause.Done> =>
            error.reason._tag === "Closed" ? Effect.fail(Cause.Done()) : Effect.fail(error)
        )
      )
    }
  })

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder("utf-8", { fatal: true })

/** Encodes a message as the UTF-8 JSON text of one record. */
export const encode = (message: Message): Uint8Array | IpcError.IpcError => {
  const json = toJson(message)
  return IpcError.isIpcError(json) ? json : textEncoder.encode(JSON.stringify(json))
}

/** Decodes one record's bytes into a message (`Decode` error if it is not one). */
export const decode = (bytes: Uint8Array, where?: string): Message | IpcError.IpcError => {
  let value: unknown
  try {
    value = JSON.parse(textDecoder.decode(bytes))
  } catch (cause) {
    return new IpcError.IpcError({
      reason: "Decode",
      detail: `a record is not JSON: ${cause instanceof Error ? cause.message : String(cause)}`,
      ...(where === undefined ? {} : { address: where }),
      cause
    })
  }
  return fromJson(value, where)
}

/**
 * Opens the `role` end of the file channel in `dir` as a message channel:
 * one message per log record, committed once handed out.
 */
export const open = (
  dir: string,
  role: FileChannel.Role,
  options?: FileChannel.FileChannelOptions
): Effect.Effect<MessageChannel, IpcError.IpcError, Scope.Scope> =>
  Effect.gen(function*() {
    const endpoint = yield* FileChannel.openEndpoint(dir, role, options)
    const address = endpoint.channel.address
    return yield* make({
      send: (message) =>
        Effect.suspend(() => {
          const bytes = encode(message)
          return IpcError.isIpcError(bytes) ? Effect.fail(bytes) : endpoint.channel.send(bytes)
        }),
      pull: Effect.map(endpoint.pullDeliveries, (batch) =>
        batch.map((delivery) => ({
          item: decode(delivery.payload, address),
          token: delivery.end,
          bytes: delivery.payload.byteLength
        })) as unknown as NonEmptyReadonlyArray<Queued>),
      commit: endpoint.commit
    }, options)
  })
