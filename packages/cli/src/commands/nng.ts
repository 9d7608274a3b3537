/**
 * `effect-ipc nng <protocol>`: nng's messaging patterns from the command line,
 * in the spirit of `nngcat`, interoperable with any nng peer. Every protocol
 * takes the same transport options: where to listen and dial (`--listen`,
 * `--dial`, repeatable, nng URLs such as `tcp://127.0.0.1:5555` or
 * `ipc:///tmp/x.ipc`), the largest message, nng's reconnect backoff and its
 * buffers. Received messages are printed one per line in the root command's
 * `--format` (which also says how `--data` is read).
 *
 *   effect-ipc nng rep --listen tcp://127.0.0.1:5555 --data pong
 *   effect-ipc nng req --dial tcp://127.0.0.1:5555 --data ping --count 3
 *   effect-ipc nng sub --dial tcp://127.0.0.1:5556 --subscribe weather.
 *
 * @since 0.1.0
 */
import type * as IpcError from "@effect-ipc/core/IpcError"
import { type Endpoints, Pair, Pipeline, PubSub, Rep, Req } from "@effect-ipc/transport-nng"
import * as Command from "effect/cli/Command"
import * as Flag from "effect/cli/Flag"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Format from "../Format.ts"

// --- the transport options every protocol takes -----------------------------------

const positive = (name: string) => (n: number) => n > 0 || `--${name} must be at least 1 (got ${n})`

const transportFlags = {
  listen: Flag.String("listen").pipe(
    Flag.withDescription("Listen at this nng URL (repeatable): tcp://0.0.0.0:5555, ipc:///tmp/x.ipc, ws://..."),
    Flag.atLeast(0)
  ),
  dial: Flag.String("dial").pipe(
    Flag.withDescription("Dial this nng URL (repeatable); nng reconnects after a loss"),
    Flag.atLeast(0)
  ),
  maxMessageSize: Flag.Int("max-message-size").pipe(
    Flag.withDescription("Largest message accepted from a peer, in bytes (default 256 MiB)"),
    Flag.optional
  ),
  reconnectMin: Flag.Int("reconnect-min").pipe(
    Flag.withDescription("First reconnect delay of the dialers, in ms (default 20; doubles up to --reconnect-max)"),
    Flag.optional
  ),
  reconnectMax: Flag.Int("reconnect-max").pipe(
    Flag.withDescription("Longest reconnect delay of the dialers, in ms (default 1000)"),
    Flag.optional
  ),
  sendBuffer: Flag.Int("send-buffer").pipe(
    Flag.withDescription("Messages nng queues for sending before a send waits"),
    Flag.optional
  ),
  recvBuffer: Flag.Int("recv-buffer").pipe(
    Flag.withDescription("Messages nng queues on receipt before it stops reading"),
    Flag.optional
  )
}

type TransportInput = {
  readonly listen: ReadonlyArray<string>
  readonly dial: ReadonlyArray<string>
  readonly maxMessageSize: Option.Option<number>
  readonly reconnectMin: Option.Option<number>
  readonly reconnectMax: Option.Option<number>
  readonly sendBuffer: Option.Option<number>
  readonly recvBuffer: Option.Option<number>
}

/** The transport flags as `Endpoints.EndpointsOptions`. */
export const endpointsOf = (input: TransportInput): Endpoints.EndpointsOptions => ({
  listen: input.listen,
  dial: input.dial,
  maxMessageSize: Option.getOrUndefined(input.maxMessageSize),
  reconnect: {
    min: Option.getOrUndefined(input.reconnectMin),
    max: Option.getOrUndefined(input.reconnectMax)
  },
  sendBuffer: Option.getOrUndefined(input.sendBuffer),
  recvBuffer: Option.getOrUndefined(input.recvBuffer)
})

const dataFlag = Flag.String("data").pipe(
  Flag.withAlias("d"),
  Flag.withDescription("The message to send, read according to --format")
)

const countFlag = (what: string, fallback?: number) => {
  const flag = Flag.Int("count").pipe(
    Flag.withAlias("n"),
    Flag.withDescription(what),
    Flag.filter((n) => n > 0, (n) => `--count must be at least 1 (got ${n})`)
  )
  return fallback === undefined ? Flag.optional(flag) : Flag.map(Flag.withDefault(flag, fallback), Option.some)
}

/** Takes the first `n` elements when a count is given. */
const upTo = <A, E, R>(n: Option.Option<number>) => (stream: Stream.Stream<A, E, R>): Stream.Stream<A, E, R> =>
  Option.isSome(n) ? Stream.take(stream, n.value) : stream

const nng = Command.make("nng").pipe(
  Command.withSharedFlags(transportFlags),
  Command.withDescription("nng's messaging patterns (req, rep, pub, sub, push, pull, pair), like nngcat")
)

/** The root command's shared flags: the `--format` of data and output. */
type Root<R> = Effect.Effect<{ readonly format: Format.Format }, never, R>

/** How long a command that sent messages waits before it closes, for them to leave (as nngcat does). */
const LINGER = "200 millis"

/** Says on stderr where a socket that waits for messages is (the tests wait for it). */
const announce = (what: string, bound: Endpoints.Bound): Effect.Effect<void> =>
  Console.error(`effect-ipc: ${what} on ${[...bound.listening, ...bound.dialing].join(", ")}`)

const print = (format: Format.Format) => (message: Uint8Array): Effect.Effect<void> =>
  Format.decode(format, message).pipe(
    Effect.flatMap(Console.log),
    Effect.catch((error: IpcError.IpcError) => Console.error(`effect-ipc: unreadable message: ${error.message}`))
  )

/**
 * The `nng` command, one subcommand per protocol, under `root` (the command
 * whose shared flags hold `--format`).
 */
export const make = <R>(root: Root<R>) => {
  /** The format and the endpoints, for a protocol's handler. */
  const context = Effect.gen(function*() {
    const { format } = yield* root
    const input = yield* nng
    return { format, endpoints: endpointsOf(input) }
  })

  const req = Command.make(
    "req",
    {
      data: dataFlag,
      count: countFlag("Send the request this many times (default 1)", 1),
      timeout: Flag.Int("timeout").pipe(
        Flag.withDescription("Seconds to wait for each reply (default 10)"),
        Flag.filter((n) => n > 0, (n) => positive("timeout")(n) as string),
        Flag.withDefault(10)
      ),
      idempotent: Flag.Boolean("idempotent").pipe(
        Flag.withDescription("Safe to repeat: retry after a lost connection or a timeout"),
        Flag.withDefault(false)
      ),
      pool: Flag.Int("pool").pipe(
        Flag.withDescription("Most sockets (connections) in the request pool (default 8)"),
        Flag.withDefault(8)
      )
    },
    Effect.fn(function*({ count, data, idempotent, pool, timeout }) {
      const { endpoints, format } = yield* context
      const body = yield* Format.encode(format, data)
      yield* Effect.gen(function*() {
        const requester = yield* Req.make({ ...endpoints, timeout: `${timeout} seconds`, pool: { max: pool } })
        for (let i = 0; i < Option.getOrElse(count, () => 1); i++) {
          yield* Effect.flatMap(requester.request(body, { idempotent }), print(format))
        }
      }).pipe(Effect.scoped)
    })
  ).pipe(Command.withDescription("Send requests (nng req0) and print each reply"))

  const rep = Command.make(
    "rep",
    {
      data: dataFlag.pipe(
        Flag.withDescription("The reply to every request (default: the request itself)"),
        Flag.optional
      ),
      count: countFlag("Exit after answering this many requests")
    },
    Effect.fn(function*({ count, data }) {
      const { endpoints, format } = yield* context
      const reply = Option.isSome(data) ? Option.some(yield* Format.encode(format, data.value)) : Option.none()
      yield* Effect.gen(function*() {
        const replier = yield* Rep.make({ ...endpoints, linger: LINGER })
        yield* announce("replying", replier.bound)
        yield* replier.requests.pipe(
          upTo(count),
          Stream.runForEach((request) =>
            Effect.andThen(print(format)(request.body), request.reply(Option.getOrElse(reply, () => request.body)))
          )
        )
      }).pipe(Effect.scoped)
    })
  ).pipe(Command.withDescription("Answer requests (nng rep0): print each, reply --data or echo it"))

  const pub = Command.make(
    "pub",
    {
      data: dataFlag,
      topic: Flag.String("topic").pipe(Flag.withDescription("Put this topic before the data"), Flag.optional),
      count: countFlag("Publish this many times (default 1)", 1),
      interval: Flag.Int("interval").pipe(
        Flag.withDescription("Milliseconds between publications (default 0)"),
        Flag.withDefault(0)
      ),
      delay: Flag.Int("delay").pipe(
        Flag.withDescription("Milliseconds to wait before the first, for subscribers to connect (default 0)"),
        Flag.withDefault(0)
      )
    },
    Effect.fn(function*({ count, data, delay, interval, topic }) {
      const { endpoints, format } = yield* context
      const body = yield* Format.encode(format, data)
      yield* Effect.gen(function*() {
        const publisher = yield* PubSub.publisher({ ...endpoints, linger: LINGER })
        yield* announce("publishing", publisher.bound)
        yield* Effect.sleep(delay)
        for (let i = 0; i < Option.getOrElse(count, () => 1); i++) {
          if (i > 0) yield* Effect.sleep(interval)
          yield* Option.isSome(topic) ? publisher.publishTo(topic.value, body) : publisher.publish(body)
        }
      }).pipe(Effect.scoped)
    })
  ).pipe(Command.withDescription("Publish messages (nng pub0)"))

  const sub = Command.make(
    "sub",
    {
      subscribe: Flag.String("subscribe").pipe(
        Flag.withDescription("Receive messages starting with this topic (repeatable; default: everything)"),
        Flag.atLeast(0)
      ),
      count: countFlag("Exit after this many messages")
    },
    Effect.fn(function*({ count, subscribe }) {
      const { endpoints, format } = yield* context
      yield* Effect.gen(function*() {
        const subscriber = yield* PubSub.subscriber({ ...endpoints, topics: subscribe.length === 0 ? [""] : subscribe })
        yield* announce("subscribed", subscriber.bound)
        yield* subscriber.messages.pipe(upTo(count), Stream.runForEach(print(format)))
      }).pipe(Effect.scoped)
    })
  ).pipe(Command.withDescription("Print published messages (nng sub0)"))

  const push = Command.make(
    "push",
    { data: dataFlag, count: countFlag("Push this many times (default 1)", 1) },
    Effect.fn(function*({ count, data }) {
      const { endpoints, format } = yield* context
      const body = yield* Format.encode(format, data)
      yield* Effect.gen(function*() {
        const pusher = yield* Pipeline.pusher({ ...endpoints, linger: LINGER })
        yield* announce("pushing", pusher.bound)
        for (let i = 0; i < Option.getOrElse(count, () => 1); i++) yield* pusher.push(body)
      }).pipe(Effect.scoped)
    })
  ).pipe(Command.withDescription("Push messages to pullers (nng push0); waits while none can take them"))

  const pull = Command.make(
    "pull",
    { count: countFlag("Exit after this many messages") },
    Effect.fn(function*({ count }) {
      const { endpoints, format } = yield* context
      yield* Effect.gen(function*() {
        const puller = yield* Pipeline.puller(endpoints)
        yield* announce("pulling", puller.bound)
        yield* puller.messages.pipe(upTo(count), Stream.runForEach(print(format)))
      }).pipe(Effect.scoped)
    })
  ).pipe(Command.withDescription("Print pushed messages (nng pull0)"))

  const pair = Command.make(
    "pair",
    {
      data: dataFlag.pipe(Flag.withDescription("Send this once connected"), Flag.optional),
      count: countFlag("Exit after receiving this many messages")
    },
    Effect.fn(function*({ count, data }) {
      const { endpoints, format } = yield* context
      yield* Effect.gen(function*() {
        const socket = yield* Pair.make({ ...endpoints, linger: LINGER })
        yield* announce("paired", socket.bound)
        if (Option.isSome(data)) yield* socket.send(yield* Format.encode(format, data.value))
        yield* socket.messages.pipe(upTo(count), Stream.runForEach(print(format)))
      }).pipe(Effect.scoped)
    })
  ).pipe(Command.withDescription("Send and print messages over a pair socket (nng pair1)"))

  return nng.pipe(Command.withSubcommands([req, rep, pub, sub, push, pull, pair]))
}
