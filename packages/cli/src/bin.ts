#!/usr/bin/env node
/**
 * `effect-ipc`: the command line, in the spirit of `nngcat` and `socat`. Listen
 * and print what arrives, send DATA or each line of a file or stdin, echo, serve
 * the demo RPC service or a user's own RpcGroup (`serve --module`), call either
 * (`call --module`), over
 * any transport the address's scheme picks (`unix:///tmp/x.sock`, ...). Data is
 * read as `--in` and printed as `--out` (both default to `--format`); `--json`
 * prints JSON events, one per line. A failure is one line (with `--json` an
 * `error` event) naming the address and the reason, and exit code 1.
 *
 * @since 0.1.0
 */
import * as Address from "@effect-ipc/core/Address"
import * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as IpcRpc from "@effect-ipc/core/IpcRpc"
import * as Policy from "@effect-ipc/core/Policy"
import * as Transport from "@effect-ipc/core/Transport"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Argument from "effect/cli/Argument"
import * as CliOutput from "effect/cli/CliOutput"
import * as Command from "effect/cli/Command"
import * as Flag from "effect/cli/Flag"
import * as Console from "effect/Console"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import type * as Rpc from "effect/rpc/Rpc"
import * as RpcClient from "effect/rpc/RpcClient"
import * as Schema from "effect/Schema"
import * as SchemaAST from "effect/SchemaAST"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as File from "./commands/file.ts"
import * as Nng from "./commands/nng.ts"
import * as Shm from "./commands/shm.ts"
import { DemoApi, DemoHandlers } from "./DemoApi.ts"
import * as Format from "./Format.ts"
import * as Output from "./Output.ts"
import * as SchemaText from "./SchemaText.ts"
import * as Transports from "./Transports.ts"
import * as UserModule from "./UserModule.ts"

const addressArg = Argument.String("address").pipe(
  Argument.withDescription(
    "Where to listen or dial: unix:///tmp/app.sock, unix:@name, pipe://name, fifo:///tmp/app, shm://name, " +
      "file:///tmp/dir, nng+ipc:///tmp/app.ipc, nng+tcp://127.0.0.1:5555, ws://127.0.0.1:8080 " +
      "(memory://name: within this process only)"
  )
)

const countFlag = Flag.Int("count").pipe(
  Flag.withAlias("n"),
  Flag.withDescription("Exit after this many messages"),
  Flag.filter((n) => n > 0, (n) => `--count must be at least 1 (got ${n})`),
  Flag.optional
)

// --- helpers -------------------------------------------------------------------

/** Prints a transport's failure of one connection and carries on with the others. */
const dropOnFailure = <A>(
  s: Output.Settings,
  channel: IpcChannel.IpcChannel,
  messages: Stream.Stream<A, IpcError.IpcError>
): Stream.Stream<A> =>
  messages.pipe(
    Stream.catch((error) =>
      // `Closed` means this side closed the channel (a peer's close ends the stream cleanly)
      error.reason._tag === "Closed"
        ? Stream.empty
        : Stream.fromEffect(Output.problem(s, error, "connection dropped")).pipe(Stream.drain)
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

/** Says where a command is ready (stderr; with `--json` also a `ready` event on stdout). */
const ready = (s: Output.Settings, what: string, address: string): Effect.Effect<void> =>
  Effect.andThen(
    Output.status(`${what} on ${Address.redact(address)}`),
    s.json ? Output.event({ event: "ready", command: what, address: Address.redact(address) }) : Effect.void
  )

// --- listen ------------------------------------------------------------------------

const listen = Command.make(
  "listen",
  { address: addressArg, count: countFlag },
  ({ address, count }) =>
    Output.guard((s) =>
      withTransport(
        address,
        Effect.gen(function*() {
          const listener = yield* Transport.listen(address)
          yield* ready(s, "listening", listener.address)
          yield* listener.connections.pipe(
            Stream.flatMap((channel) => dropOnFailure(s, channel, channel.messages), { concurrency: "unbounded" }),
            upTo(count),
            Stream.runForEach((message) => Output.message(s, message, { address: listener.address }))
          )
        }).pipe(Effect.scoped)
      )
    )
).pipe(Command.withDescription("Listen at ADDRESS and print every message from every client, one per line"))

// --- send --------------------------------------------------------------------------

/** The lines of an input (a final newline ends the last line; `\r\n` counts as one). */
const linesOf = (input: Uint8Array): ReadonlyArray<Uint8Array> => {
  const lines: Array<Uint8Array> = []
  let from = 0
  for (let i = 0; i < input.length; i++) {
    if (input[i] !== 0x0a) continue
    lines.push(input.subarray(from, i > from && input[i - 1] === 0x0d ? i - 1 : i))
    from = i + 1
  }
  if (from < input.length) lines.push(input.subarray(from))
  return lines
}

/** The messages to send: DATA, or each line of `--file` (the whole of it with `--raw` or `--in raw`). */
const messagesOf = (
  s: Output.Settings,
  data: Option.Option<string>,
  file: Option.Option<string>,
  raw: boolean
): Effect.Effect<ReadonlyArray<Uint8Array>, IpcError.IpcError> =>
  Effect.gen(function*() {
    if (Option.isSome(data) && Option.isSome(file)) {
      return yield* IpcError.make("Encode", "give DATA or --file, not both")
    }
    if (Option.isSome(data)) return [yield* Format.encode(s.input, data.value)]
    if (Option.isNone(file)) {
      return yield* IpcError.make("Encode", "nothing to send: give DATA, or --file PATH (- for stdin)")
    }
    const input = yield* Output.readInput(file.value)
    const parts = raw || s.input === "raw" ? [input] : linesOf(input)
    return yield* Effect.forEach(parts, (part) => Format.encodeBytes(s.input, part))
  })

/**
 * Closes `channel` after what was sent, failing (`ConnectionLost`) when the listener did not take it:
 * the close gave up on what never left, or the listener dropped the connection instead of answering
 * the goodbye (a message over its `maxMessageSize`); a command that sends must not report it sent.
 */
const closeDelivered = (channel: IpcChannel.IpcChannel): Effect.Effect<void, IpcError.IpcError> =>
  IpcChannel.closeChecked(channel).pipe(
    Effect.mapError((error) =>
      // the errno and the system's error kept: the failure's line gives the system's words for it, not its call
      new IpcError.IpcError({
        reason: "ConnectionLost",
        detail: `the listener did not take what was sent: ${error.detail}`,
        address: channel.address,
        ...(error.errno === undefined ? {} : { errno: error.errno }),
        cause: error.cause
      })
    )
  )

/**
 * How long a send may wait for the listener to take what was sent: the channel's linger, as configured
 * for the transport at `address` (`IPC_OPTIONS_LINGER_TIMEOUT`), else 2 s.
 */
const lingerAt = (address: string): Effect.Effect<Duration.Duration> =>
  Effect.gen(function*() {
    const scheme = /^([a-z0-9+.-]+):/i.exec(address)?.[1]?.toLowerCase()
    const descriptor = Transports.descriptors.find((d) => scheme !== undefined && d.schemes.includes(scheme))
    // options the transport does not take fail its layer (with their own error) before this matters
    const options = descriptor === undefined
      ? undefined
      : yield* Effect.orElseSucceed(TransportOptions.read(descriptor.name, descriptor.options), () => undefined)
    const millis = TransportOptions.millisOf(options?.["lingerTimeout"])
    return millis === undefined ? Duration.seconds(2) : Duration.millis(millis)
  })

/**
 * Sends `message`, failing (`ConnectionLost`) when the listener does not take it within `linger`: a
 * message larger than the buffers waits for a stopped or stuck listener for ever otherwise. The channel
 * is closed then (so what never left is said as `closeDelivered` says it).
 */
const sendTaken = (
  channel: IpcChannel.IpcChannel,
  message: Uint8Array,
  linger: Duration.Duration
): Effect.Effect<void, IpcError.IpcError> =>
  channel.send(message).pipe(
    Effect.timeoutOrElse({
      duration: linger,
      orElse: () =>
        Effect.andThen(
          closeDelivered(channel),
          Effect.fail(
            IpcError.make(
              "ConnectionLost",
              `the listener did not take what was sent within ${Duration.format(linger)}`,
              channel.address
            )
          )
        )
    })
  )

const send = Command.make(
  "send",
  {
    address: addressArg,
    data: Argument.String("data").pipe(
      Argument.withDescription("The message, read according to --in (or --format)"),
      Argument.optional
    ),
    file: Flag.String("file").pipe(
      Flag.withDescription("Send each line of this file as a message instead (- for stdin)"),
      Flag.optional
    ),
    raw: Flag.Boolean("raw").pipe(
      Flag.withDescription("With --file: send the whole input as one message, not one per line"),
      Flag.withDefault(false)
    ),
    replies: Flag.Int("replies").pipe(
      Flag.withAlias("r"),
      Flag.withDescription("After sending, print this many replies"),
      Flag.filter((n) => n >= 0, (n) => `--replies must be 0 or more (got ${n})`),
      Flag.withDefault(0)
    ),
    timeout: Flag.Int("timeout").pipe(
      Flag.withDescription("With --replies: give up after this many seconds without a reply (default: wait)"),
      Flag.filter((n) => n > 0, (n) => `--timeout must be at least 1 (got ${n})`),
      Flag.optional
    )
  },
  ({ address, data, file, raw, replies, timeout }) =>
    Output.guard((s) =>
      Effect.gen(function*() {
        const messages = yield* messagesOf(s, data, file, raw)
        yield* withTransport(
          address,
          Effect.gen(function*() {
            const channel = yield* Transport.dial(address)
            const linger = yield* lingerAt(address)
            for (const message of messages) {
              yield* sendTaken(channel, message, linger)
              if (s.json) {
                yield* Output.event({ event: "sent", address: Address.redact(address), bytes: message.length })
              }
            }
            for (let i = 0; i < replies; i++) {
              const reply = Option.isNone(timeout) ? channel.receive : channel.receive.pipe(
                Effect.timeoutOrElse({
                  duration: Duration.seconds(timeout.value),
                  orElse: () =>
                    Effect.fail(
                      IpcError.make(
                        "Timeout",
                        `${i} of ${replies} replies came, then none within ${timeout.value}s`,
                        Address.redact(address)
                      )
                    )
                })
              )
              yield* Output.message(s, yield* reply, { address })
            }
            yield* closeDelivered(channel)
          }).pipe(Effect.scoped)
        )
      })
    )
).pipe(Command.withDescription("Dial ADDRESS, send DATA (or each line of --file) as messages, and close"))

// --- echo --------------------------------------------------------------------------

const echo = Command.make(
  "echo",
  { address: addressArg, count: countFlag },
  ({ address, count }) =>
    Output.guard((s) =>
      withTransport(
        address,
        Effect.gen(function*() {
          const listener = yield* Transport.listen(address)
          yield* ready(s, "echoing", listener.address)
          yield* listener.connections.pipe(
            Stream.flatMap(
              (channel) => dropOnFailure(s, channel, Stream.mapEffect(channel.messages, channel.send)),
              { concurrency: "unbounded" }
            ),
            upTo(count),
            Stream.runDrain
          )
        }).pipe(Effect.scoped)
      )
    )
).pipe(Command.withDescription("Listen at ADDRESS and send every message back to the client that sent it"))

// --- serve -------------------------------------------------------------------------

const serializationFlag = Flag.Literals("serialization", ["packed", "binary", "json"]).pipe(
  Flag.withDescription(
    "How RPC messages are encoded: packed (effect-ipc's binary format, the default), binary (effect's schema binary) or json"
  ),
  Flag.withDefault("packed")
)

const servedFlag = Flag.Literals("serialization", ["all", "both", "packed", "binary", "json"]).pipe(
  Flag.withDescription(
    "Which clients to serve: all (the default: each connection's hello picks; both is an older name for it), packed, binary (effect's schema binary) or json"
  ),
  Flag.withDefault("all")
)

const moduleFlag = Flag.String("module").pipe(
  Flag.withDescription("Serve the RpcGroup that this module exports, with the layer of handlers it exports beside it"),
  Flag.optional
)
const groupFlag = Flag.String("group").pipe(
  Flag.withDescription("The name of the RpcGroup export in --module (default: its only RpcGroup export)"),
  Flag.optional
)
const handlersFlag = Flag.String("handlers").pipe(
  Flag.withDescription("The name of the layer of handlers in --module (default: its only Layer export)"),
  Flag.optional
)

/** What `serve` serves: the demo service, or the group and handlers of `--module`. */
const servedOf = (
  module: Option.Option<string>,
  group: Option.Option<string>,
  handlers: Option.Option<string>
): Effect.Effect<
  { readonly name: string; readonly group: UserModule.Group; readonly handlers: Layer.Layer<never> },
  IpcError.IpcError,
  Scope.Scope
> => {
  if (Option.isSome(module)) {
    return Effect.map(UserModule.loadServed(module.value, group, handlers), (served) => ({
      name: served.name,
      group: served.group,
      handlers: Layer.succeedContext(served.handlers)
    }))
  }
  if (Option.isSome(group) || Option.isSome(handlers)) {
    return Effect.fail(
      IpcError.make("NotFound", "--group and --handlers name exports of --module: give --module PATH too")
    )
  }
  // the demo's handlers, as a module's: the group's type is known only at run time there
  return Effect.succeed({ name: "DemoApi", group: demoGroup, handlers: DemoHandlers as Layer.Layer<never> })
}

const serve = Command.make(
  "serve",
  {
    address: addressArg,
    serialization: servedFlag,
    module: moduleFlag,
    group: groupFlag,
    handlers: handlersFlag
  },
  ({ address, group, handlers, module, serialization }) =>
    Output.guard((s) =>
      Effect.gen(function*() {
        const served = yield* servedOf(module, group, handlers)
        // the address listened at: at port 0, the port bound
        let bound = address
        // a group loaded at run time: its handlers' types are known only at run time (checked by loadServed)
        const server = IpcRpc.layerServerGroup(SchemaText.readableRequests(served.group), address, {
          serializations: serialization === "all" || serialization === "both"
            ? ["packed", "binary", "json"]
            : [serialization],
          onListen: (listening) => Effect.sync(() => void (bound = listening))
        }).pipe(
          Layer.provide(served.handlers as Layer.Layer<Rpc.ToHandler<Rpc.AnyWithProps>>),
          Layer.provide(Transports.layerAt(address))
        )
        yield* Layer.build(server)
        yield* ready(s, `serving ${served.name}`, bound)
        return yield* Effect.never
      }).pipe(Effect.scoped)
    )
).pipe(
  Command.withDescription(
    "Serve the demo RPC service (DemoApi), or --module's RpcGroup with its handlers, at ADDRESS until interrupted"
  )
)

// --- call --------------------------------------------------------------------------

const demoGroup = DemoApi as unknown as UserModule.Group
const demoMethods = [...DemoApi.requests.keys()]

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

/** A typed error as one line: its tag and its fields as JSON. */
const showError = (error: unknown): string => {
  if (typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string") {
    const fields = Object.fromEntries(Object.entries(error).filter(([key]) => key !== "_tag"))
    if (Object.keys(fields).length === 0) return error._tag
    const json = Format.stringify(fields, "its fields")
    return Result.isFailure(json) ? `${error._tag} (${json.failure.detail})` : `${error._tag} ${json.success}`
  }
  return error instanceof Error ? error.message : Output.textOf(error)
}

/** Why a call failed: a lost link (`RpcClientError`) becomes its `IpcError`; a typed error is printed as itself. */
const callFailed = (s: Output.Settings, method: string, target: string) =>
(
  error: unknown
): Effect.Effect<never, IpcError.IpcError | Output.Reported> => {
  if (IpcError.isIpcError(error)) return Effect.fail(error)
  if (typeof error === "object" && error !== null && "_tag" in error && error._tag === "RpcClientError") {
    const cause = findIpcError(error)
    const text = error instanceof Error ? error.message : Output.textOf(error)
    const why = "reason" in error && typeof error.reason === "object" && error.reason !== null &&
        "cause" in error.reason && error.reason.cause instanceof Error
      ? error.reason.cause.message
      : ""
    // a reply nested too deep was refused before it was parsed (IpcRpc); otherwise a server on the other
    // serialization sends what this side cannot decode
    const hint = why === IpcRpc.JSON_TOO_DEEP
      ? ` (the reply: ${why})`
      : /decod/i.test(text)
      ? "; does the server use another --serialization (packed, binary or json)?"
      : ""
    return Effect.fail(cause ?? IpcError.make("ConnectionLost", `${method}: ${text}${hint}`, target))
  }
  const tag = typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string"
    ? error._tag
    : "Failed"
  const detail = `${method} failed: ${showError(error)}`
  const printed = s.json
    // an error whose fields cannot be written as JSON is printed without them
    ? Output.tryEvent({ event: "error", reason: tag, detail, error }).pipe(
      Effect.catch(() => Output.event({ event: "error", reason: tag, detail }))
    )
    : Output.status(detail)
  return Effect.andThen(printed, Effect.fail(new Output.Reported()))
}

const call = Command.make(
  "call",
  {
    address: addressArg,
    method: Argument.String("method").pipe(
      Argument.withDescription(`The procedure (of the demo: ${demoMethods.join(", ")}; or of --module's group)`)
    ),
    payload: Argument.String("json").pipe(
      Argument.withDescription("The payload as JSON (binary fields are base64); none for a procedure without one"),
      Argument.optional
    ),
    module: Flag.String("module").pipe(
      Flag.withDescription("Call the RpcGroup that this module exports (a .ts or .js path) instead of the demo's"),
      Flag.optional
    ),
    group: Flag.String("group").pipe(
      Flag.withDescription("The name of the RpcGroup export in --module (default: its only RpcGroup export)"),
      Flag.optional
    ),
    serialization: serializationFlag,
    timeout: Flag.Int("timeout").pipe(
      Flag.withDescription("Give up after this many seconds without a result"),
      Flag.filter((n) => n > 0, (n) => `--timeout must be at least 1 (got ${n})`),
      Flag.withDefault(10)
    )
  },
  ({ address, group, method, module, payload, serialization, timeout }) =>
    Output.guard((s) =>
      Effect.gen(function*() {
        if (Option.isNone(module) && Option.isSome(group)) {
          return yield* IpcError.make("NotFound", "--group names an export of --module: give --module PATH too")
        }
        const api = Option.isSome(module) ? yield* UserModule.loadGroup(module.value, group) : demoGroup
        const rpc = api.requests.get(method)
        if (rpc === undefined) {
          const known = [...api.requests.keys()]
          return yield* IpcError.make("NotFound", `unknown method "${method}" (have ${known.join(", ")})`)
        }
        const json = Option.isSome(payload)
          ? yield* Format.readJson(payload.value, "the payload")
          : SchemaAST.isVoid(rpc.payloadSchema.ast)
          ? null
          : {}
        // nor a payload schema that needs services to decode
        // every problem, each with the value given (`Add: a: expected a number, got "x"; b: missing, ...`)
        const decode = Schema.decodeUnknownEffect(Schema.toCodecJson(rpc.payloadSchema), {
          errors: "all",
          reportInput: true
        }) as (value: unknown) => Effect.Effect<unknown, Schema.SchemaError>
        const input = yield* decode(json).pipe(
          Effect.mapError((cause) =>
            IpcError.make("Encode", `bad payload for ${method}: ${SchemaText.errorText(cause)}`)
          )
        )
        // a success schema of a group loaded at run time needs no services to encode (its type cannot say so)
        const toJson = Schema.encodeUnknownEffect(Schema.toCodecJson(rpc.successSchema)) as (
          value: unknown
        ) => Effect.Effect<unknown, Schema.SchemaError>
        // a result that cannot be printed (a peer's value nested too deeply for JSON.stringify) is a Decode failure
        const what = `the result of ${method}`
        const print = (value: unknown): Effect.Effect<void, IpcError.IpcError> =>
          s.json
            ? toJson(value).pipe(
              Effect.orElseSucceed(() => value),
              Effect.flatMap((encoded) => Output.tryEvent({ event: "result", method, value: encoded ?? null }, what))
            )
            : value === undefined
            ? Effect.void
            : typeof value === "object" && value !== null && !(value instanceof Uint8Array)
            // a structure as its schema's JSON (its fields in the schema's order, whatever the serialization)
            ? toJson(value).pipe(
              Effect.orElseSucceed(() => value),
              Effect.flatMap((encoded) => Format.show(s.output, encoded, what)),
              Effect.flatMap(Console.log)
            )
            : Effect.flatMap(Format.show(s.output, value, what), Console.log)
        const program = Effect.gen(function*() {
          // a group loaded at run time declares no client middleware the type system can see
          const client = yield* (RpcClient.make(api, { flatten: true }) as unknown as Effect.Effect<
            (tag: string, payload: unknown) => unknown,
            never,
            RpcClient.Protocol | Scope.Scope
          >)
          const result = client(rpc._tag, input)
          // --timeout is the time without a result: a stream may run as long as its results keep coming
          const noAnswer = IpcError.make(
            "Timeout",
            `no answer to ${method} within ${timeout} s`,
            Address.redact(address)
          )
          if (Stream.isStream(result)) {
            yield* Stream.runForEach(
              Stream.timeoutOrElse(result as Stream.Stream<unknown, unknown>, {
                duration: Duration.seconds(timeout),
                orElse: () => Stream.fail(noAnswer)
              }),
              print
            )
          } else {
            yield* Effect.flatMap(
              Effect.timeoutOrElse(result as Effect.Effect<unknown, unknown>, {
                duration: Duration.seconds(timeout),
                orElse: () => Effect.fail(noAnswer)
              }),
              print
            )
          }
        }).pipe(
          Effect.catch(callFailed(s, method, address)),
          // a server that does not speak this serialization answers the hello with a defect naming the ones it does
          Effect.catchDefect((defect) => {
            // a reply that does not decode by the procedure's schemas: which field, and what was expected
            if (Schema.isSchemaError(defect)) {
              return Effect.fail(
                IpcError.make(
                  "Decode",
                  `${method}: the reply does not fit its schema: ${SchemaText.errorText(defect)}`,
                  Address.redact(address)
                )
              )
            }
            const text = defect instanceof Error ? defect.message : Output.textOf(defect)
            if (/RPC server speaks/.test(text)) {
              return Effect.fail(
                IpcError.make("Protocol", `${method}: ${text}: give --serialization to match`, Address.redact(address))
              )
            }
            // the server's words for what it would not take (a request it cannot decode), whole on one line:
            // effect's server names the field on a second line, which was cut off
            if (typeof defect === "string") {
              const said = Output.scrub(defect)
              return Effect.fail(
                IpcError.make("Unknown", said.startsWith(`${method}: `) ? said : `${method}: ${said}`)
              )
            }
            return Effect.die(defect)
          }),
          Effect.scoped
        )
        yield* program.pipe(
          Effect.provide(
            IpcRpc.layerClientProtocol(address, { reconnect: Policy.retry(3) }).pipe(
              Layer.provide(IpcRpc.layerSerializationFor(serialization)),
              Layer.provide(Transports.layerAt(address))
            )
          )
        )
      })
    )
).pipe(
  Command.withDescription(
    "Call METHOD at ADDRESS with a JSON payload and print the result (the demo service, or --module's RpcGroup)"
  )
)

// --- main ----------------------------------------------------------------------------

const cli = Output.root.pipe(
  Command.withSubcommands([
    listen,
    send,
    echo,
    call,
    serve,
    Shm.command,
    File.command,
    Nng.make(Output.settings)
  ])
)

/** `--json` among the arguments (before a `--`): for a usage error, which comes before the flags are parsed. */
const jsonAsked = (() => {
  const args = process.argv.slice(2)
  const end = args.indexOf("--")
  return (end === -1 ? args : args.slice(0, end)).includes("--json")
})()

/**
 * Help with `--json`, where stdout carries JSON only: asked for (`--help`), a
 * `help` event with the text; given instead of a command (`effect-ipc --json
 * shm`), a `Usage` error naming the commands there are, exit code 1.
 */
const jsonHelp = (event: CliOutput.Presenter.Help): Effect.Effect<void> => {
  const command = ["effect-ipc", ...event.commandPath.slice(1)].join(" ")
  if (event.reason === "Requested") {
    const text = CliOutput.defaultFormatter({ colors: false }).formatHelpDoc(event.helpDoc)
    return Output.event({ event: "help", command, text })
  }
  const commands = (event.helpDoc.subcommands ?? []).flatMap((group) => group.commands.map((sub) => sub.name))
  return Effect.andThen(
    Output.event({
      event: "error",
      reason: "Usage",
      detail: commands.length === 0
        ? `${command}: what to do is missing`
        : `${command} needs a command: ${commands.join(", ")}`
    }),
    Effect.sync(() => void (process.exitCode = 1))
  )
}

/**
 * With `--json`, a usage error is an `error` event per problem on stdout (reason `Usage`), not help
 * text, and `--version` a `version` event. Help given instead of a command is a usage error in either
 * mode: exit code 1.
 */
const presenter = CliOutput.layerPresenter({
  present: (event) =>
    // a usage error is its line on stderr and where the help is, not the whole help on stdout before it
    !jsonAsked && event._tag === "InvalidInvocation"
      ? Effect.forEach(
        event.errors,
        (error) =>
          Output.status(
            `Usage: ${error.message} (${["effect-ipc", ...event.commandPath.slice(1)].join(" ")} --help for more)`
          ),
        { discard: true }
      )
      : !jsonAsked && event._tag === "Help" && event.reason !== "Requested"
      ? Effect.andThen(CliOutput.defaultPresenter.present(event), Effect.sync(() => void (process.exitCode = 1)))
      : jsonAsked && event._tag === "InvalidInvocation"
      ? Effect.forEach(
        event.errors,
        (error) => Output.event({ event: "error", reason: "Usage", detail: error.message.replace(/\s*\n\s*/g, " ") }),
        { discard: true }
      )
      : jsonAsked && event._tag === "Version"
      ? Output.event({ event: "version", name: event.name, version: event.version })
      : jsonAsked && event._tag === "Help"
      ? jsonHelp(event)
      : CliOutput.defaultPresenter.present(event)
})

/**
 * Completes once stdout's reader has gone (`effect-ipc listen ... | head -n 1`): the write that finds
 * it gone fails on a later tick, as an `error` event that, unheard, crashed the process with a stack
 * trace and left a listener's socket behind. Any other failure to write (a full disk: `> out.txt`, an
 * I/O error) lost what was to be printed: it ends the command as well, said on stderr, with exit code 1
 * (it ended quietly with 0, as though every message had been printed).
 */
const ignoreError = (): void => {}
const stdoutGone = Effect.callback<void>((resume) => {
  const gone = (cause: Error) => {
    if (IpcError.errnoOf(cause) !== "EPIPE") {
      const error = IpcError.fromSystemError(cause, "Write", "cannot print to stdout: what was to be printed is lost")
      // stderr may fail as well (`> out.txt 2>&1` on a full disk): its error, unheard, crashed the process before
      // the command's finalizers ran (a listener's socket file was left behind); the exit code still says it
      process.stderr.off("error", ignoreError).on("error", ignoreError)
      process.stderr.write(`effect-ipc: ${Output.describe(error)}\n`)
      process.exitCode = 1
    }
    resume(Effect.void)
  }
  process.stdout.on("error", gone)
  return Effect.sync(() => void process.stdout.off("error", gone))
})

/**
 * Ends as the command interrupted when the terminal hangs up (SIGHUP: its window closed, an ssh session
 * dropped), as SIGINT and SIGTERM do: Node's default for it ended the process at once, leaving what a
 * listener made (its socket file, a FIFO pair and its lock) behind.
 */
const hangUp = Effect.callback<never>((resume) => {
  const onHangUp = () => resume(Effect.interrupt)
  process.once("SIGHUP", onHangUp)
  return Effect.sync(() => void process.off("SIGHUP", onHangUp))
})

// `npm run cli -- ...` runs in the repository's root: the paths the user gave (--module, --file, file inspect)
// are relative to the directory it was typed in, which npm gives as INIT_CWD
const typedIn = process.env["npm_lifecycle_event"] === "cli" ? process.env["INIT_CWD"] : undefined
if (typedIn !== undefined && typedIn !== "" && typedIn !== process.cwd()) process.chdir(typedIn)

// every command prints its own failures (Output.guard): what reaches here is a usage error, presented above.
// A command whose output nobody reads any more ends as one interrupted: what it made is let go of
Command.run(cli, { version: "0.1.0" }).pipe(
  Effect.raceFirst(stdoutGone),
  Effect.raceFirst(hangUp),
  Effect.provide(presenter),
  Effect.provide(NodeServices.layer),
  NodeRuntime.runMain
)
