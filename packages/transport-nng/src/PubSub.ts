/**
 * nng's publish/subscribe pattern. A `Publisher` sends every message to all
 * connected subscribers; a `Subscriber` receives the messages whose bytes
 * start with one of its topics (a topic is a byte prefix of the message, as
 * in nng: subscribe to `"weather."` to get `"weather.oslo ..."`; the empty
 * topic matches everything).
 *
 * Publishing never waits: nng drops messages for a subscriber that does not
 * keep up (pub/sub is lossy by design), and a subscriber that connects late
 * misses what was published before. Use `Pipeline` or `Req` when every
 * message must arrive.
 *
 * @since 0.1.0
 */
import * as ChannelEngine from "@effect-ipc/core/ChannelEngine"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Endpoints from "./Endpoints.ts"
import * as Opening from "./internal/endpoints.ts"

/** A topic: a string (UTF-8) or raw bytes. */
export type Topic = string | Uint8Array

const encoder = new TextEncoder()
const bytesOf = (topic: Topic): Uint8Array => (typeof topic === "string" ? encoder.encode(topic) : topic)

/** What a topic given at run time is (JavaScript, or a cast, can pass anything), or undefined when it is one. */
const notATopic = (topic: unknown): string | undefined =>
  typeof topic === "string" || ArrayBuffer.isView(topic)
    ? undefined
    : topic === null || topic === undefined
    ? String(topic)
    : typeof topic === "object"
    ? "an object that is not a byte view"
    : `a ${typeof topic}`

/** A topic's bytes, or `Encode` for what is neither a string nor bytes. */
const topicBytes = (topic: Topic, where: string): Uint8Array | IpcError.IpcError => {
  const what = notATopic(topic)
  if (what !== undefined) return IpcError.make("Encode", `a topic is a string or a Uint8Array (got ${what})`, where)
  return typeof topic === "string" ? encoder.encode(topic) : ChannelEngine.asBytes(topic, where)
}

/** Where a pattern socket is, for its errors. */
const whereOf = (bound: Endpoints.Bound): string => bound.listening[0] ?? bound.dialing[0] ?? "nng"

/** Joins a topic and a payload into one message (the topic's bytes, then the payload's). */
export const withTopic = (topic: Topic, payload: Uint8Array): Uint8Array => {
  const prefix = bytesOf(topic)
  const out = new Uint8Array(prefix.byteLength + payload.byteLength)
  out.set(prefix, 0)
  out.set(payload, prefix.byteLength)
  return out
}

/** The publishing side. */
export interface Publisher {
  /** Where it listens and dials (ports as bound). */
  readonly bound: Endpoints.Bound
  /** Publishes one message to every subscriber whose topic is a prefix of it. */
  readonly publish: (message: Uint8Array) => Effect.Effect<void, IpcError.IpcError>
  /** Publishes `payload` under `topic` (the message is the topic's bytes followed by the payload). */
  readonly publishTo: (topic: Topic, payload: Uint8Array) => Effect.Effect<void, IpcError.IpcError>
}

/** Opens a publisher (nng `pub0`); it closes with the scope. */
export const publisher = (
  options: Endpoints.EndpointsOptions
): Effect.Effect<Publisher, IpcError.IpcError, Scope.Scope> =>
  Effect.map(Opening.open("pub", options), ({ bound, socket }) => ({
    bound,
    publish: (message) => socket.send(message),
    // checked when run, never as it is called: a topic or payload that is not one is `Encode`
    publishTo: (topic, payload) =>
      Effect.suspend(() => {
        const where = whereOf(bound)
        const prefix = topicBytes(topic, where)
        if (prefix instanceof IpcError.IpcError) return Effect.fail(prefix)
        const body = ChannelEngine.asBytes(payload, where)
        if (body instanceof IpcError.IpcError) return Effect.fail(body)
        return socket.send(withTopic(prefix, body))
      })
  }))

/** Options of a subscriber. */
export interface SubscriberOptions extends Endpoints.EndpointsOptions {
  /** Topics to start with (default: none, so nothing arrives until `subscribe`). */
  readonly topics?: ReadonlyArray<Topic> | undefined
}

/** The subscribing side. */
export interface Subscriber {
  /** Where it listens and dials (ports as bound). */
  readonly bound: Endpoints.Bound
  /** Receives the next message (whole, topic included). */
  readonly receive: Effect.Effect<Uint8Array, IpcError.IpcError>
  /** The messages, as they arrive; ends when the subscriber closes. */
  readonly messages: Stream.Stream<Uint8Array, IpcError.IpcError>
  /** Starts receiving messages that begin with `topic`. */
  readonly subscribe: (topic: Topic) => Effect.Effect<void, IpcError.IpcError>
  /** Stops receiving messages that begin with `topic`. */
  readonly unsubscribe: (topic: Topic) => Effect.Effect<void, IpcError.IpcError>
}

/** Opens a subscriber (nng `sub0`); it closes with the scope. */
export const subscriber = (
  options: SubscriberOptions
): Effect.Effect<Subscriber, IpcError.IpcError, Scope.Scope> =>
  Effect.gen(function*() {
    const notObject = TransportOptions.notAnObject(options, "the socket's options")
    if (notObject !== undefined) return yield* notObject
    // checked before anything is opened, as every option is: a string was subscribed to character by character
    const topics: unknown = options.topics
    if (topics !== undefined) {
      const what = Array.isArray(topics)
        ? topics.map(notATopic).find((w) => w !== undefined)
        : `${notATopic(topics) ?? (typeof topics === "string" ? "a string" : "a single topic")}, not a list`
      if (what !== undefined) {
        return yield* IpcError.make(
          "InvalidOption",
          `topics is a list of topics, each a string or a Uint8Array (got ${
            Array.isArray(topics) ? `a list holding ${what}` : what
          })`
        )
      }
    }
    const { bound, socket } = yield* Opening.open("sub", options)
    const where = whereOf(bound)
    const setTopic = (name: "sub:subscribe" | "sub:unsubscribe", topic: Topic) =>
      Effect.suspend(() => {
        const bytes = topicBytes(topic, where)
        return bytes instanceof IpcError.IpcError ? Effect.fail(bytes) : socket.setOption(name, { bytes })
      })
    const subscribe = (topic: Topic) => setTopic("sub:subscribe", topic)
    const unsubscribe = (topic: Topic) => setTopic("sub:unsubscribe", topic)
    for (const topic of options.topics ?? []) yield* subscribe(topic)
    const inbox = yield* Opening.inbox(socket, options)
    return {
      bound,
      receive: inbox.take,
      messages: Stream.fromPull(Effect.succeed(inbox.next)),
      subscribe,
      unsubscribe
    }
  })
