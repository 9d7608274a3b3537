/**
 * `effect-ipc nng <protocol>`: nng's messaging patterns from the command line,
 * in the spirit of `nngcat`, interoperable with any nng peer. Every protocol
 * takes the same transport options: where to listen and dial (`--listen`,
 * `--dial`, repeatable, nng URLs such as `tcp://127.0.0.1:5555` or
 * `ipc:///tmp/x.ipc`), the largest message, nng's reconnect backoff, its
 * buffers and the most connections its listeners keep. Received messages are
 * printed one per line in the root command's `--out` (or `--format`; `--json`:
 * as JSON events), and `--data` is read as `--in` (or `--format`); `--file
 * PATH` (`-`: stdin) sends a whole file instead.
 *
 *   effect-ipc nng rep --listen tcp://127.0.0.1:5555 --data pong
 *   effect-ipc nng req --dial tcp://127.0.0.1:5555 --data ping --count 3
 *   effect-ipc nng sub --dial tcp://127.0.0.1:5556 --subscribe weather.
 *
 * @since 0.1.0
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import { type Endpoints, Pair, Pipeline, PubSub, Rep, Req } from "@effect-ipc/transport-nng"
import * as Command from "effect/cli/Command"
import * as Flag from "effect/cli/Flag"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Format from "../Format.ts"
import * as Output from "../Output.ts"

// --- the transport options every protocol takes -----------------------------------

const positive = (name: string) => (n: number) => n > 0 || `--${name} must be at least 1 (got ${n})`

/** A number of milliseconds to wait: 0 or more (a negative one is a usage error, not taken as 0). */
const millisFlag = (name: string, description: string) =>
  Flag.Int(name).pipe(
    Flag.withDescription(description),
    Flag.filter((n) => n >= 0, (n) => `--${name} must be 0 or more (got ${n})`),
    Flag.withDefault(0)
  )

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
  ),
  maxConnections: Flag.Int("max-connections").pipe(
    Flag.withDescription("Connections the listeners keep at once (default: no limit); past it the newest are closed"),
    Flag.filter((n) => n > 0, (n) => positive("max-connections")(n) as string),
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
  readonly maxConnections: Option.Option<number>
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
  recvBuffer: Option.getOrUndefined(input.recvBuffer),
  maxConnections: Option.getOrUndefined(input.maxConnections)
})

const dataFlag = Flag.String("data").pipe(
  Flag.withAlias("d"),
  Flag.withDescription("The message to send, read according to --in (or --format)"),
  Flag.optional
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

/** The root command's settings: how data is read (`--in`) and printed (`--out`, `--json`). */
type Root<R> = Effect.Effect<Output.Settings, never, R>

/** How long a command that sent messages waits before it closes, for them to leave (as nngcat does). */
const LINGER = "200 millis"

/** Says on stderr where a socket that waits for messages is (the tests wait for it). */
const announce = (s: Output.Settings, what: string, bound: Endpoints.Bound): Effect.Effect<void> => {
  const where = [...bound.listening, ...bound.dialing]
  return Effect.andThen(
    Console.error(`effect-ipc: ${what} on ${where.join(", ")}`),
    s.json ? Output.event({ event: "ready", command: what, address: where.join(", ") }) : Effect.void
  )
}

/** Prints a message received over `bound`'s endpoints. */
const printer = (s: Output.Settings, bound: Endpoints.Bound) => (message: Uint8Array): Effect.Effect<void> =>
  Output.message(s, message, { address: [...bound.listening, ...bound.dialing].join(", ") })

/** The message to send: `--data` read as `--in`, or the whole of `--file` (`-`: stdin). */
const bodyOf = (
  s: Output.Settings,
  data: Option.Option<string>,
  file: Option.Option<string>
): Effect.Effect<Option.Option<Uint8Array>, IpcError.IpcError> =>
  Option.isSome(data) && Option.isSome(file)
    ? Effect.fail(IpcError.make("Encode", "give --data or --file, not both"))
    : Option.isSome(data)
    ? Effect.map(Format.encode(s.input, data.value), Option.some)
    : Option.isSome(file)
    ? Effect.map(
      Effect.flatMap(Output.readInput(file.value), (bytes) => Format.encodeBytes(s.input, bytes)),
      Option.some
    )
    : Effect.succeed(Option.none())

/** As `bodyOf`, for a protocol that must send something. */
const requiredBody = (s: Output.Settings, data: Option.Option<string>, file: Option.Option<string>) =>
  Effect.flatMap(bodyOf(s, data, file), (body) =>
    Option.isSome(body)
      ? Effect.succeed(body.value)
      : Effect.fail(IpcError.make("Encode", "nothing to send: give --data, or --file PATH (- for stdin)")))

const fileFlag = Flag.String("file").pipe(
  Flag.withDescription("Send the whole of this file as the message instead of --data (- for stdin)"),
  Flag.optional
)

/**
 * The `nng` command, one subcommand per protocol, under `root` (the command
 * whose shared flags hold `--format`).
 */
export const make = <R>(root: Root<R>) => {
  /** The format and the endpoints, for a protocol's handler. */
  const context = Effect.gen(function*() {
    const s = yield* root
    const input = yield* nng
    return { s, endpoints: endpointsOf(input) }
  })

  /** Runs a protocol's work; a failure is printed once (`--json`: as an event) and exits with code 1. */
  const guarded = <A, E>(
    work: (c: { readonly s: Output.Settings; readonly endpoints: Endpoints.EndpointsOptions }) => Effect.Effect<A, E>
  ) =>
    Effect.flatMap(context, (c) =>
      work(c).pipe(
        Effect.catch((error): Effect.Effect<never, Output.Reported | Exclude<E, IpcError.IpcError>> =>
          IpcError.isIpcError(error) ? Output.fail(c.s, error) : Effect.fail(error as Exclude<E, IpcError.IpcError>)
        ),
        Effect.catchDefect((defect) => Output.fail(c.s, Output.fromDefect(defect))),
        Effect.provide(Logger.layer([Output.logger(c.s)]))
      ))

  const req = Command.make(
    "req",
    {
      data: dataFlag,
      file: fileFlag,
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
        Flag.filter((n) => n > 0, (n) => positive("pool")(n) as string),
        Flag.withDefault(8)
      )
    },
    ({ count, data, file, idempotent, pool, timeout }) =>
      guarded(({ endpoints, s }) =>
        Effect.gen(function*() {
          const body = yield* requiredBody(s, data, file)
          const requester = yield* Req.make({ ...endpoints, timeout: `${timeout} seconds`, pool: { max: pool } })
          const print = printer(s, {
            listening: [endpoints.listen ?? []].flat(),
            dialing: [endpoints.dial ?? []].flat()
          })
          for (let i = 0; i < Option.getOrElse(count, () => 1); i++) {
            yield* Effect.flatMap(requester.request(body, { idempotent }), print)
          }
        }).pipe(Effect.scoped)
      )
  ).pipe(Command.withDescription("Send requests (nng req0) and print each reply"))

  const rep = Command.make(
    "rep",
    {
      data: dataFlag.pipe(Flag.withDescription("The reply to every request (default: the request itself)")),
      file: fileFlag.pipe(Flag.withDescription("Reply with the whole of this file (- for stdin)")),
      count: countFlag("Exit after answering this many requests")
    },
    ({ count, data, file }) =>
      guarded(({ endpoints, s }) =>
        Effect.gen(function*() {
          const reply = yield* bodyOf(s, data, file)
          const replier = yield* Rep.make({ ...endpoints, linger: LINGER })
          yield* announce(s, "replying", replier.bound)
          const print = printer(s, replier.bound)
          yield* replier.requests.pipe(
            upTo(count),
            Stream.runForEach((request) =>
              Effect.andThen(print(request.body), request.reply(Option.getOrElse(reply, () => request.body)))
            )
          )
        }).pipe(Effect.scoped)
      )
  ).pipe(Command.withDescription("Answer requests (nng rep0): print each, reply --data or echo it"))

  const pub = Command.make(
    "pub",
    {
      data: dataFlag,
      file: fileFlag,
      topic: Flag.String("topic").pipe(Flag.withDescription("Put this topic before the data"), Flag.optional),
      count: countFlag("Publish this many times (default 1)", 1),
      interval: millisFlag("interval", "Milliseconds between publications (default 0)"),
      delay: millisFlag("delay", "Milliseconds to wait before the first, for subscribers to connect (default 0)")
    },
    ({ count, data, delay, file, interval, topic }) =>
      guarded(({ endpoints, s }) =>
        Effect.gen(function*() {
          const body = yield* requiredBody(s, data, file)
          const publisher = yield* PubSub.publisher({ ...endpoints, linger: LINGER })
          yield* announce(s, "publishing", publisher.bound)
          yield* Effect.sleep(delay)
          for (let i = 0; i < Option.getOrElse(count, () => 1); i++) {
            if (i > 0) yield* Effect.sleep(interval)
            yield* Option.isSome(topic) ? publisher.publishTo(topic.value, body) : publisher.publish(body)
          }
        }).pipe(Effect.scoped)
      )
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
    ({ count, subscribe }) =>
      guarded(({ endpoints, s }) =>
        Effect.gen(function*() {
          const subscriber = yield* PubSub.subscriber({
            ...endpoints,
            topics: subscribe.length === 0 ? [""] : subscribe
          })
          yield* announce(s, "subscribed", subscriber.bound)
          yield* subscriber.messages.pipe(upTo(count), Stream.runForEach(printer(s, subscriber.bound)))
        }).pipe(Effect.scoped)
      )
  ).pipe(Command.withDescription("Print published messages (nng sub0)"))

  const push = Command.make(
    "push",
    { data: dataFlag, file: fileFlag, count: countFlag("Push this many times (default 1)", 1) },
    ({ count, data, file }) =>
      guarded(({ endpoints, s }) =>
        Effect.gen(function*() {
          const body = yield* requiredBody(s, data, file)
          const pusher = yield* Pipeline.pusher({ ...endpoints, linger: LINGER })
          yield* announce(s, "pushing", pusher.bound)
          for (let i = 0; i < Option.getOrElse(count, () => 1); i++) yield* pusher.push(body)
        }).pipe(Effect.scoped)
      )
  ).pipe(Command.withDescription("Push messages to pullers (nng push0); waits while none can take them"))

  const pull = Command.make(
    "pull",
    { count: countFlag("Exit after this many messages") },
    ({ count }) =>
      guarded(({ endpoints, s }) =>
        Effect.gen(function*() {
          const puller = yield* Pipeline.puller(endpoints)
          yield* announce(s, "pulling", puller.bound)
          yield* puller.messages.pipe(upTo(count), Stream.runForEach(printer(s, puller.bound)))
        }).pipe(Effect.scoped)
      )
  ).pipe(Command.withDescription("Print pushed messages (nng pull0)"))

  const pair = Command.make(
    "pair",
    {
      data: dataFlag.pipe(Flag.withDescription("Send this once connected")),
      file: fileFlag.pipe(Flag.withDescription("Send the whole of this file once connected (- for stdin)")),
      count: countFlag("Exit after receiving this many messages")
    },
    ({ count, data, file }) =>
      guarded(({ endpoints, s }) =>
        Effect.gen(function*() {
          const body = yield* bodyOf(s, data, file)
          const socket = yield* Pair.make({ ...endpoints, linger: LINGER })
          yield* announce(s, "paired", socket.bound)
          if (Option.isSome(body)) yield* socket.send(body.value)
          yield* socket.messages.pipe(upTo(count), Stream.runForEach(printer(s, socket.bound)))
        }).pipe(Effect.scoped)
      )
  ).pipe(Command.withDescription("Send and print messages over a pair socket (nng pair1)"))

  return nng.pipe(Command.withSubcommands([req, rep, pub, sub, push, pull, pair]))
}
