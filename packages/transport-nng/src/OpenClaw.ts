/**
 * openclaw-ipc's messages, served and spoken over nng's request/reply.
 * openclaw-ipc (Rust) sends one JSON `IpcMessage` per nng message:
 *
 * ```json
 * { "id": "…", "payload": { "type": "request", "method": "scene.open", "params": { … } } }
 * { "id": "…", "payload": { "type": "response", "success": true, "result": { … }, "error": null } }
 * { "id": "…", "payload": { "type": "event", "event_type": "saved", "data": { … } } }
 * ```
 *
 * `serve` answers an openclaw gateway's requests (an effect-ipc plugin host
 * behind an openclaw `IpcTransport::new_client`), `client` calls an openclaw
 * server (`IpcTransport::new_server`). A response has the request's `id`. An
 * event sent to `serve` goes to `onEvent` and is acknowledged with a success
 * response, as request/reply needs an answer.
 *
 * Unlike openclaw-ipc, nothing is replayed after a reconnect unless the call
 * says it is idempotent (see `Req`).
 *
 * @since 0.1.0
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Crypto from "node:crypto"
import type * as Endpoints from "./Endpoints.ts"
import * as Rep from "./Rep.ts"
import * as Req from "./Req.ts"

/** A request: call `method` with `params`. */
export const IpcRequest = Schema.Struct({
  type: Schema.Literal("request"),
  method: Schema.String,
  params: Schema.Json
})

/** A response: `success` with a `result`, or an `error` message. */
export const IpcResponse = Schema.Struct({
  type: Schema.Literal("response"),
  success: Schema.Boolean,
  result: Schema.optional(Schema.NullOr(Schema.Json)),
  error: Schema.optional(Schema.NullOr(Schema.String))
})

/** An event notification. */
export const IpcEvent = Schema.Struct({
  type: Schema.Literal("event"),
  event_type: Schema.String,
  data: Schema.Json
})

/** The payload of a message, tagged by `type`. */
export const IpcPayload = Schema.Union([IpcRequest, IpcResponse, IpcEvent])

/** openclaw-ipc's message envelope. */
export const IpcMessage = Schema.Struct({ id: Schema.String, payload: IpcPayload })

/** openclaw-ipc's message envelope. */
export type IpcMessage = typeof IpcMessage.Type

/** The error of a call the other side answered with `success: false`. */
export class OpenClawError extends Schema.TaggedError<OpenClawError>()("OpenClawError", {
  method: Schema.String,
  error: Schema.String
}) {}

const codec = Schema.fromJsonString(IpcMessage)
const decodeMessage = Schema.decodeUnknownEffect(codec)
const encodeMessage = Schema.encodeSync(codec)
const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** A fresh message id (a UUID, as openclaw-ipc makes them). */
const newId = (): string => Crypto.randomUUID()

/** A request message, as openclaw-ipc's `IpcMessage::request`. */
export const request = (method: string, params: Schema.Json): IpcMessage => ({
  id: newId(),
  payload: { type: "request", method, params }
})

/** A success response to the request `id`, as `IpcMessage::success`. */
export const success = (id: string, result: Schema.Json): IpcMessage => ({
  id,
  payload: { type: "response", success: true, result, error: null }
})

/** An error response to the request `id`, as `IpcMessage::error`. */
export const failure = (id: string, error: string): IpcMessage => ({
  id,
  payload: { type: "response", success: false, result: null, error }
})

/** An event message, as `IpcMessage::event`. */
export const event = (eventType: string, data: Schema.Json): IpcMessage => ({
  id: newId(),
  payload: { type: "event", event_type: eventType, data }
})

/** Encodes a message as openclaw-ipc does (one JSON text). */
export const encode = (message: IpcMessage): Uint8Array => encoder.encode(encodeMessage(message))

/** Decodes a message; anything else is reason `Decode`. */
export const decode = (bytes: Uint8Array): Effect.Effect<IpcMessage, IpcError.IpcError> =>
  decodeMessage(decoder.decode(bytes)).pipe(
    Effect.mapError((cause) =>
      new IpcError.IpcError({ reason: "Decode", detail: `not an openclaw IpcMessage: ${cause.message}`, cause })
    )
  )

/** What `serve` does with each message. */
export interface Handlers<R> {
  /** Answers a request: its result, or an error message (sent as `success: false`). */
  readonly request: (method: string, params: Schema.Json, id: string) => Effect.Effect<Schema.Json, string, R>
  /** Takes an event (default: ignored); it is acknowledged with a success response. */
  readonly event?: ((eventType: string, data: Schema.Json, id: string) => Effect.Effect<void, never, R>) | undefined
}

/** Answers one message. */
const answerTo = <R>(handlers: Handlers<R>, bytes: Uint8Array): Effect.Effect<IpcMessage, never, R> =>
  decode(bytes).pipe(
    Effect.matchEffect({
      onFailure: (error) => Effect.succeed(failure("", error.detail)),
      onSuccess: (message) => {
        const payload = message.payload
        switch (payload.type) {
          case "request":
            return handlers.request(payload.method, payload.params, message.id).pipe(
              Effect.match({
                onFailure: (error) => failure(message.id, error),
                onSuccess: (result) => success(message.id, result)
              })
            )
          case "event":
            return Effect.as(
              handlers.event?.(payload.event_type, payload.data, message.id) ?? Effect.void,
              success(message.id, null)
            )
          case "response":
            return Effect.succeed(failure(message.id, "a response is not a request"))
        }
      }
    })
  )

/**
 * Serves openclaw-ipc requests and events in the background until the scope
 * closes (a `Rep` socket, listening as `options` say); completes once listening.
 */
export const serve = <R>(
  options: Rep.ServeOptions,
  handlers: Handlers<R>
): Effect.Effect<Endpoints.Bound, IpcError.IpcError, R | Scope.Scope> =>
  Rep.serve(options, (bytes) => Effect.map(answerTo(handlers, bytes), encode))

/** The result of a response to `sent`, or its error. */
const expectSuccess = (
  method: string,
  message: IpcMessage,
  sent: IpcMessage
): Effect.Effect<Schema.Json, IpcError.IpcError | OpenClawError> => {
  if (message.payload.type !== "response" || message.id !== sent.id) {
    return Effect.fail(IpcError.make("Protocol", `the answer to ${method} is not its response`))
  }
  return message.payload.success
    ? Effect.succeed(message.payload.result ?? null)
    : Effect.fail(new OpenClawError({ method, error: message.payload.error ?? "" }))
}

/** A client of an openclaw-ipc server. */
export interface Client {
  /** Calls `method`; a `success: false` answer is an `OpenClawError`. */
  readonly call: (
    method: string,
    params: Schema.Json,
    options?: Req.RequestOptions
  ) => Effect.Effect<Schema.Json, IpcError.IpcError | OpenClawError>
  /** Sends an event (the server acknowledges it). */
  readonly emit: (eventType: string, data: Schema.Json) => Effect.Effect<void, IpcError.IpcError | OpenClawError>
  /** Sends any message and returns the answer as it came. */
  readonly exchange: (message: IpcMessage, options?: Req.RequestOptions) => Effect.Effect<IpcMessage, IpcError.IpcError>
}

/** Opens a client (a `Req` pool, dialling as `options` say); it closes with the scope. */
export const client = (options: Req.RequesterOptions): Effect.Effect<Client, IpcError.IpcError, Scope.Scope> =>
  Effect.map(Req.make(options), (requester) => {
    const exchange = (message: IpcMessage, requestOptions?: Req.RequestOptions) =>
      Effect.flatMap(requester.request(encode(message), requestOptions), decode)
    return {
      exchange,
      call: (method, params, requestOptions) => {
        const sent = request(method, params)
        return Effect.flatMap(exchange(sent, requestOptions), (answer) => expectSuccess(method, answer, sent))
      },
      emit: (eventType, data) => {
        const sent = event(eventType, data)
        return Effect.asVoid(Effect.flatMap(exchange(sent), (answer) => expectSuccess(eventType, answer, sent)))
      }
    }
  })
