#!/usr/bin/env node
/**
 * `effect-ipc`: the command line, in the spirit of `nngcat`. Listen and print
 * what arrives, send one message, echo, and call or serve the demo RPC service,
 * over any transport the address's scheme picks (`unix:///tmp/x.sock`, ...).
 * A failure is one line on stderr and exit code 1.
 *
 * @since 0.1.0
 */
import * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as IpcRpc from "@effect-ipc/core/IpcRpc"
import * as Policy from "@effect-ipc/core/Policy"
import * as Transport from "@effect-ipc/core/Transport"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Argument from "effect/cli/Argument"
import * as Command from "effect/cli/Command"
import * as Flag from "effect/cli/Flag"
import * as Console from "effect/Console"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as RpcClient from "effect/rpc/RpcClient"
import * as RpcServer from "effect/rpc/RpcServer"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import * as SchemaAST from "effect/SchemaAST"
import * as Stream from "effect/Stream"
import * as File from "./commands/file.ts"
import * as Nng from "./commands/nng.ts"
import * as Shm from "./commands/shm.ts"
import { DemoApi, DemoHandlers } from "./DemoApi.ts"
import * as Format from "./Format.ts"
import * as Transports from "./Transports.ts"

/** A failure that has already been printed: exit code 1, nothing more to log. */
class Reported extends Data.TaggedError("Reported")<{}> {
  override readonly [Runtime.errorReported] = false
}

const oneLine = (text: string): string => text.replace(/\s*\n\s*/g, " ").trim()

const report = (message: string): Effect.Effect<void> => Console.error(`effect-ipc: ${oneLine(message)}`)

// --- flags and arguments -----------------------------------------------------

const formatFlag = Flag.Literals("format", Format.formats).pipe(
  Flag.withAlias("f"),
  Flag.withDescription("How DATA is read and messages are printed: text (UTF-8), json or hex"),
  Flag.withDefault("text")
)

const addressArg = Argument.String("address").pipe(
  Argument.withDescription("Where to listen or dial: unix:///tmp/app.sock, unix:@name, memory://name")
)

const countFlag = Flag.Int("count").pipe(
  Flag.withAlias("n"),
  Flag.withDescription("Exit after this many messages"),
  Flag.filter((n) => n > 0, (n) => `--count must be at least 1 (got ${n})`),
  Flag.optional
)

const root = Command.make("effect-ipc").pipe(
  Command.withSharedFlags({ format: formatFlag }),
  Command.withDescription("Send, receive, echo and call over effect-ipc transports")
)

// --- helpers -------------------------------------------------------------------

/** Prints a transport's failure of one connection and carries on with the others. */
const dropOnFailure = <A>(
  channel: IpcChannel.IpcChannel,
  messages: Stream.Stream<A, IpcError.IpcError>
): Stream.Stream<A> =>
  messages.pipe(
    Stream.catch((error) =>
      // `Closed` means this side closed the channel (a peer's close ends the stream cleanly)
      error.reason === "Closed"
        ? Stream.empty
        : Stream.fromEffect(report(`connection dropped: ${error.message}`)).pipe(Stream.drain)
    ),
    Stream.ensuring(channel.close)
  )

/** Takes the first `n` elements when a count is given. */
const upTo = <A, E, R>(n: Option.Option<number>) => (stream: Stream.Stream<A, E, R>): Stream.Stream<A, E, R> =>
  Option.isSome(n) ? Stream.take(stream, n.value) : stream

/** Runs `effect` over the transport that `address`'s scheme picks. */
const withTransport = <A, E, R>(
  where: string,
  effect: Effect.Effect<A, E, R>
) => Effect.provide(effect, Transports.layerAt(where))

// --- listen ------------------------------------------------------------------------

const listen = Command.make(
  "listen",
  { address: addressArg, count: countFlag },
  Effect.fn(function*({ address, count }) {
    const { format } = yield* root
    yield* withTransport(
      address,
      Effect.gen(function*() {
        const listener = yield* Transport.listen(address)
        yield* report(`listening on ${listener.address}`)
        yield* listener.connections.pipe(
          Stream.flatMap((channel) => dropOnFailure(channel, channel.messages), { concurrency: "unbounded" }),
          upTo(count),
          Stream.runForEach((message) =>
            Format.decode(format, message).pipe(
              Effect.flatMap(Console.log),
              Effect.catch((error) => report(`unreadable message: ${error.message}`))
            )
          )
        )
      }).pipe(Effect.scoped)
    )
  })
).pipe(Command.withDescription("Listen at ADDRESS and print every message from every client, one per line"))

// --- send --------------------------------------------------------------------------

const send = Command.make(
  "send",
  {
    address: addressArg,
    data: Argument.String("data").pipe(Argument.withDescription("The message, read according to --format")),
    replies: Flag.Int("replies").pipe(
      Flag.withAlias("r"),
      Flag.withDescription("After sending, print this many replies"),
      Flag.withDefault(0)
    )
  },
  Effect.fn(function*({ address, data, replies }) {
    const { format } = yield* root
    const message = yield* Format.encode(format, data)
    yield* withTransport(
      address,
      Effect.gen(function*() {
        const channel = yield* Transport.dial(address)
        yield* channel.send(message)
        for (let i = 0; i < replies; i++) {
          const reply = yield* channel.receive
          yield* Console.log(yield* Format.decode(format, reply))
        }
        yield* channel.close
      }).pipe(Effect.scoped)
    )
  })
).pipe(Command.withDescription("Dial ADDRESS, send DATA as one message, and close"))

// --- echo --------------------------------------------------------------------------

const echo = Command.make(
  "echo",
  { address: addressArg, count: countFlag },
  Effect.fn(function*({ address, count }) {
    yield* withTransport(
      address,
      Effect.gen(function*() {
        const listener = yield* Transport.listen(address)
        yield* report(`echoing on ${listener.address}`)
        yield* listener.connections.pipe(
          Stream.flatMap(
            (channel) => dropOnFailure(channel, Stream.mapEffect(channel.messages, channel.send)),
            { concurrency: "unbounded" }
          ),
          upTo(count),
          Stream.runDrain
        )
      }).pipe(Effect.scoped)
    )
  })
).pipe(Command.withDescription("Listen at ADDRESS and send every message back to the client that sent it"))

// --- serve -------------------------------------------------------------------------

const serve = Command.make(
  "serve",
  { address: addressArg },
  Effect.fn(function*({ address }) {
    const server = RpcServer.layer(DemoApi).pipe(
      Layer.provide(DemoHandlers),
      Layer.provide(IpcRpc.layerServerProtocol(address)),
      Layer.provide(IpcRpc.layerSerialization),
      Layer.provide(Transports.layerAt(address))
    )
    yield* Layer.build(server).pipe(
      Effect.andThen(report(`serving DemoApi on ${address}`)),
      Effect.andThen(Effect.never),
      Effect.scoped
    )
  })
).pipe(Command.withDescription("Serve the demo RPC service (DemoApi) at ADDRESS until interrupted"))

// --- call --------------------------------------------------------------------------

const methods = [...DemoApi.requests.keys()]

/** The `IpcError` somewhere in an error's chain of causes, if there is one. */
const findIpcError = (error: unknown): IpcError.IpcError | undefined => {
  let current: unknown = error
  for (let depth = 0; depth < 8 && typeof current === "object" && current !== null; depth++) {
    if (IpcError.isIpcError(current)) return current
    const cause: unknown = "cause" in current ? current.cause : undefined
    current = cause ?? ("reason" in current ? current.reason : undefined)
  }
  return undefined
}

/** Why a call failed: a lost link (`RpcClientError`) becomes its `IpcError`; a typed error is printed as itself. */
const callFailed =
  (method: string, target: string) => (error: unknown): Effect.Effect<never, IpcError.IpcError | Reported> => {
    if (IpcError.isIpcError(error)) return Effect.fail(error)
    if (typeof error === "object" && error !== null && "_tag" in error && error._tag === "RpcClientError") {
      const cause = findIpcError(error)
      return Effect.fail(
        cause ??
          IpcError.make(
            "ConnectionLost",
            `${method}: ${error instanceof Error ? error.message : String(error)}`,
            target
          )
      )
    }
    return report(`${method} failed: ${showError(error)}`).pipe(Effect.andThen(Effect.fail(new Reported())))
  }

/** A typed error as one line: its tag and its fields as JSON. */
const showError = (error: unknown): string => {
  if (typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string") {
    const fields = Object.fromEntries(Object.entries(error).filter(([key]) => key !== "_tag"))
    return Object.keys(fields).length === 0 ? error._tag : `${error._tag} ${JSON.stringify(fields)}`
  }
  return error instanceof Error ? error.message : String(error)
}

const call = Command.make(
  "call",
  {
    address: addressArg,
    method: Argument.String("method").pipe(Argument.withDescription(`The procedure: ${methods.join(", ")}`)),
    payload: Argument.String("json").pipe(
      Argument.withDescription("The payload as JSON (binary fields are base64); none for a procedure without one"),
      Argument.optional
    ),
    timeout: Flag.Int("timeout").pipe(
      Flag.withDescription("Give up after this many seconds without a result"),
      Flag.filter((n) => n > 0, (n) => `--timeout must be at least 1 (got ${n})`),
      Flag.withDefault(10)
    )
  },
  Effect.fn(function*({ address, method, payload, timeout }) {
    const { format } = yield* root
    const rpc = DemoApi.requests.get(method)
    if (rpc === undefined) {
      return yield* IpcError.make("NotFound", `unknown method "${method}" (have ${methods.join(", ")})`)
    }
    const json = Option.isSome(payload)
      ? yield* Format.readJson(payload.value, "the payload")
      : SchemaAST.isVoid(rpc.payloadSchema.ast)
      ? null
      : {}
    const input = yield* Schema.decodeUnknownEffect(Schema.toCodecJson(rpc.payloadSchema))(json).pipe(
      Effect.mapError((cause) =>
        new IpcError.IpcError({
          reason: "Encode",
          detail: `bad payload for ${method}: ${oneLine(cause.message)}`,
          cause
        })
      )
    )
    const failed = callFailed(method, address)
    const program = Effect.gen(function*() {
      const client = yield* RpcClient.make(DemoApi, { flatten: true })
      const result = client(rpc._tag, input)
      if (Stream.isStream(result)) {
        yield* Stream.runForEach(result, (value) => Console.log(Format.show(format, value)))
      } else {
        const value = yield* result
        if (value !== undefined) yield* Console.log(Format.show(format, value))
      }
    }).pipe(
      Effect.catch(failed),
      Effect.timeoutOrElse({
        duration: Duration.seconds(timeout),
        orElse: () => Effect.fail(IpcError.make("Timeout", `no answer to ${method} within ${timeout} s`, address))
      }),
      Effect.scoped
    )
    yield* program.pipe(
      Effect.provide(
        IpcRpc.layerClientProtocol(address, { reconnect: Policy.retry(3) }).pipe(
          Layer.provide(IpcRpc.layerSerialization),
          Layer.provide(Transports.layerAt(address))
        )
      )
    )
  })
).pipe(
  Command.withDescription("Call METHOD of the demo RPC service at ADDRESS with a JSON payload and print the result")
)

// --- main ----------------------------------------------------------------------------

const cli = root.pipe(
  Command.withSubcommands([listen, send, echo, call, serve, Shm.command, File.command, Nng.make(root)])
)

Command.run(cli, { version: "0.1.0" }).pipe(
  Effect.catchIf(
    IpcError.isIpcError,
    (error) => report(error.message).pipe(Effect.andThen(Effect.fail(new Reported())))
  ),
  Effect.provide(NodeServices.layer),
  NodeRuntime.runMain
)
