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
import type * as IpcError from "@effect-ipc/core/IpcError"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Endpoints from "./Endpoints.ts"
import * as Opening from "./internal/endpoints.ts"

/** A topic: a string (UTF-8) or raw bytes. */
export type Topic = string | Uint8Array

const encoder = new TextEncoder()
const bytesOf = (topic: Topic): Uint8Array => (typeof topic === "string" ? encoder.encode(topic) : topic)

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
    publishTo: (topic, payload) => socket.send(withTopic(topic, payload))
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
    const { bound, socket } = yield* Opening.open("sub", options)
    const subscribe = (topic: Topic) => socket.setOption("sub:subscribe", { bytes: bytesOf(topic) })
    const unsubscribe = (topic: Topic) => socket.setOption("sub:unsubscribe", { bytes: bytesOf(topic) })
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
