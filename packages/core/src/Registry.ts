/**
 * Choosing a transport by configuration. Each transport package exports a
 * `TransportDescriptor` (its name for `IPC_TRANSPORT`, the schemes it serves,
 * how to build it, and a default address for a service name). An application
 * lists the descriptors it ships with and provides `layerConfig(descriptors)`:
 * switching transport is then a matter of `IPC_TRANSPORT` / `IPC_ADDRESS`,
 * with no change to code, and the chosen transport's options are set by
 * `IPC_OPTIONS` / `IPC_OPTIONS_<NAME>` (see `TransportOptions`), decoded with
 * the schema its descriptor declares (`options`).
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as Address from "./Address.ts"
import * as IpcError from "./IpcError.ts"
import * as Memory from "./Memory.ts"
import * as Transport from "./Transport.ts"
import * as TransportOptions from "./TransportOptions.ts"

/** What a transport package tells the registry about itself. */
export interface TransportDescriptor {
  /** The name used in `IPC_TRANSPORT` (`memory`, `pipe`, `file`, `shm`, `nng`). */
  readonly name: string
  /** The address schemes it serves; the first is its default. */
  readonly schemes: ReadonlyArray<string>
  /** Builds the transport (scoped: it may hold resources such as a GC fiber). */
  readonly make: Effect.Effect<Transport.TransportShape, IpcError.IpcError, Scope.Scope>
  /** The default address of a service called `service` on this transport. */
  readonly defaultAddress: (service: string) => string
  /**
   * What each scheme cannot do, by scheme, with the reason: no `peer-process` (in-process only), no `raw-stream`
   * (no byte stream to write bad frames on), no `shared-address` (no second listener can collide), no `multi-peer`
   * (a listener serves one peer at a time), no `in-process` (both ends cannot live in one process). Read by the
   * conformance suite (`@effect-ipc/testing`) to skip or adapt its cases.
   */
  readonly lacks?:
    | Readonly<
      Record<
        string,
        Partial<Record<"peer-process" | "raw-stream" | "shared-address" | "multi-peer" | "in-process", string>>
      >
    >
    | undefined
  /**
   * The options its `make` accepts from configuration (`IPC_OPTIONS`,
   * `IPC_OPTIONS_<NAME>`), declared with `TransportOptions.declare`; without
   * it, setting any option fails with reason `InvalidOption`.
   */
  readonly options?: TransportOptions.Declaration | undefined
}

/** The descriptor of the in-process `memory://` transport. */
export const memory: TransportDescriptor = {
  name: "memory",
  schemes: ["memory"],
  make: Effect.sync(() => Memory.make()),
  defaultAddress: (service) => `memory://${service}`,
  lacks: {
    memory: {
      "peer-process": "memory:// lives inside one process",
      "raw-stream": "memory:// hands over messages, not bytes"
    }
  },
  options: TransportOptions.declare<Memory.MemoryOptions>()(
    { maxMessageSize: TransportOptions.Bytes, maxBufferedMessages: TransportOptions.Count },
    (options) => Effect.sync(() => Memory.make(options))
  )
}

/** The address the configured program serves or dials. */
export class IpcAddress extends Context.Service<IpcAddress, string>()("@effect-ipc/core/IpcAddress") {}

/** The transport and address chosen by `resolve`. */
export interface Selection {
  readonly descriptor: TransportDescriptor
  readonly address: string
}

// effect-ipc's transports by name and scheme: an IPC_TRANSPORT naming one that the program did not register is told
// which package's `descriptor` to add
const PACKAGES: Readonly<Record<string, string>> = {
  pipe: "@effect-ipc/transport-pipe",
  unix: "@effect-ipc/transport-pipe",
  fifo: "@effect-ipc/transport-pipe",
  shm: "@effect-ipc/transport-shm",
  file: "@effect-ipc/transport-file",
  nng: "@effect-ipc/transport-nng",
  ws: "@effect-ipc/transport-ws"
}

/**
 * Picks a descriptor and address from a transport name and an address, either
 * of which may be absent: the name wins, else the address's scheme, else the
 * first descriptor. The address defaults to the descriptor's address for
 * `service`, and must use one of the chosen transport's schemes.
 */
export const resolve = (
  descriptors: ReadonlyArray<TransportDescriptor>,
  options: { readonly transport?: string | undefined; readonly address?: string | undefined; readonly service: string }
): Effect.Effect<Selection, IpcError.IpcError> =>
  Effect.gen(function*() {
    const names = descriptors.map((d) => d.name).join(", ")
    let descriptor: TransportDescriptor | undefined
    if (options.transport !== undefined) {
      descriptor = descriptors.find((d) => d.name === options.transport)
      if (descriptor === undefined) {
        // IPC_TRANSPORT=unix (a scheme) or unix:///tmp/x.sock (an address) where a transport's name belongs:
        // named so that the fix is plain, and an address shown redacted (a ws:// one may carry a token)
        const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(options.transport)?.[1]
        const key = (scheme ?? options.transport).toLowerCase()
        const address = /[:/?#@]/.test(options.transport.replace(/^[A-Za-z][A-Za-z0-9+.-]*:(\/\/)?$/, ""))
        const serving = descriptors.find((d) => d.name === key || d.schemes.includes(key))
        const unregistered = serving === undefined && !address && Object.hasOwn(PACKAGES, key)
          ? PACKAGES[key]
          : undefined
        const hint = `${serving === undefined ? "" : `; ${key}:// is served by "${serving.name}"`}${
          address ? "; an address goes in IPC_ADDRESS" : ""
        }${
          unregistered === undefined
            ? ""
            : `; ${unregistered} serves "${key}": add its \`descriptor\` to the list given to Registry.layerConfig`
        }`
        return yield* IpcError.make(
          "UnsupportedScheme",
          `unknown transport "${
            address ? Address.redact(options.transport) : options.transport
          }" (have ${names}${hint})`
        )
      }
    } else if (options.address !== undefined) {
      const parsed = yield* Address.parse(options.address)
      descriptor = descriptors.find((d) => d.schemes.includes(parsed.scheme))
      if (descriptor === undefined) {
        return yield* IpcError.make(
          "UnsupportedScheme",
          `no transport serves ${parsed.scheme}:// (have ${names})`,
          Address.redact(options.address)
        )
      }
    } else {
      descriptor = descriptors[0]
      if (descriptor === undefined) return yield* IpcError.make("UnsupportedScheme", "no transports are registered")
    }
    if (options.transport !== undefined && options.address !== undefined) {
      // IPC_TRANSPORT=pipe with IPC_ADDRESS=shm://x: name both settings and the fix, not only the schemes
      const parsed = yield* Address.parse(options.address)
      if (!descriptor.schemes.includes(parsed.scheme)) {
        const serving = descriptors.find((d) => d.schemes.includes(parsed.scheme))
        return yield* IpcError.make(
          "UnsupportedScheme",
          `IPC_TRANSPORT "${descriptor.name}" serves ${
            descriptor.schemes.map((s) => `${s}://`).join(", ")
          }, not the ${parsed.scheme}:// of IPC_ADDRESS (${
            serving === undefined ? "no transport here serves it" : `${parsed.scheme}:// is served by "${serving.name}"`
          }): change one of them, or unset IPC_TRANSPORT to let the address choose`,
          Address.redact(options.address)
        )
      }
    }
    const address = options.address ?? descriptor.defaultAddress(options.service)
    yield* Address.parseFor(address, descriptor.schemes)
    return { descriptor, address }
  })

/** `IPC_TRANSPORT` (optional): the transport's name. */
export const transportConfig: Config.Config<string | undefined> = Config.String("IPC_TRANSPORT").pipe(
  Config.withDefault(undefined)
)
/** `IPC_ADDRESS` (optional): the address to serve or dial. */
export const addressConfig: Config.Config<string | undefined> = Config.String("IPC_ADDRESS").pipe(
  Config.withDefault(undefined)
)

/**
 * Provides `Transport` and `IpcAddress` from `IPC_TRANSPORT` / `IPC_ADDRESS`.
 * The transport serves every scheme of every descriptor (so a program can
 * still dial other addresses), and `IpcAddress` is the configured one. The
 * chosen transport is built with the options `IPC_OPTIONS` /
 * `IPC_OPTIONS_<NAME>` set (the others with their defaults); a bad option
 * fails the build with reason `InvalidOption`.
 */
export const layerConfig = (
  descriptors: ReadonlyArray<TransportDescriptor>,
  options: { readonly service?: string | undefined } = {}
): Layer.Layer<Transport.Transport | IpcAddress, IpcError.IpcError | Config.ConfigError> =>
  Layer.effectContext(
    Effect.gen(function*() {
      const notObject = TransportOptions.notAnObject(options, "the options of layerConfig")
      if (notObject !== undefined) return yield* notObject
      const transport = yield* transportConfig
      const address = yield* addressConfig
      const selection = yield* resolve(descriptors, { transport, address, service: options.service ?? "effect-ipc" })
      const { descriptor } = selection
      const chosen = Transport.instrument(
        yield* TransportOptions.make(descriptor.name, descriptor.options, descriptor.make)
      )
      const others: Array<Transport.TransportShape> = []
      for (const d of descriptors) if (d !== selection.descriptor) others.push(yield* lazy(d))
      return Context.make(Transport.Transport, Transport.route([chosen, ...others])).pipe(
        Context.add(IpcAddress, selection.address)
      )
    })
  )

// Transports that were not chosen are built on first use, so that (say) a
// missing libnng does not stop a program that runs over Unix sockets.
const lazy = (descriptor: TransportDescriptor): Effect.Effect<Transport.TransportShape, never, Scope.Scope> =>
  Effect.flatMap(
    Effect.scope,
    (scope) => Effect.cached(Effect.map(Scope.provide(descriptor.make, scope), Transport.instrument))
  ).pipe(
    Effect.map((get) =>
      // the transport it builds is instrumented, so this front is not instrumented again
      Transport.markInstrumented({
        schemes: descriptor.schemes,
        listen: (address) => Effect.flatMap(get, (t) => t.listen(address)),
        dial: (address) => Effect.flatMap(get, (t) => t.dial(address))
      })
    )
  )
