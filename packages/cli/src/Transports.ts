/**
 * The transports that the command line, the demo and the benchmarks ship
 * with, in one list. An address's scheme picks among them (`unix:///tmp/x.sock`
 * is the pipe transport, `memory://name` the in-process one).
 *
 * @since 0.1.0
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Registry from "@effect-ipc/core/Registry"
import type * as Transport from "@effect-ipc/core/Transport"
import * as File from "@effect-ipc/transport-file"
import * as Nng from "@effect-ipc/transport-nng"
import * as Pipe from "@effect-ipc/transport-pipe"
import * as Shm from "@effect-ipc/transport-shm"
import * as Ws from "@effect-ipc/transport-ws"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/** Every transport descriptor this package ships with; the first is the default. */
export const descriptors: ReadonlyArray<Registry.TransportDescriptor> = [
  Pipe.descriptor,
  Registry.memory,
  Shm.descriptor,
  File.descriptor,
  Nng.descriptor,
  Ws.descriptor
]

const configFailed = (cause: unknown): IpcError.IpcError =>
  new IpcError.IpcError({
    reason: "InvalidAddress",
    detail: `bad IPC_TRANSPORT / IPC_ADDRESS configuration: ${cause instanceof Error ? cause.message : String(cause)}`,
    cause
  })

/** `Transport` and `IpcAddress` chosen by `IPC_TRANSPORT` / `IPC_ADDRESS` among `descriptors`. */
export const layer: Layer.Layer<Transport.Transport | Registry.IpcAddress, IpcError.IpcError> = Registry.layerConfig(
  descriptors
).pipe(Layer.catchTag("ConfigError", (error) => Layer.effectContext(Effect.fail(configFailed(error)))))

/** True for the paths of the transport's options: `IPC_OPTIONS`, `IPC_OPTIONS_<NAME>` (as the env provider splits them too). */
const isOptionsPath = (path: ConfigProvider.Path): boolean => {
  const [first, second] = path
  return (typeof first === "string" && (first === "IPC_OPTIONS" || first.startsWith("IPC_OPTIONS_"))) ||
    (first === "IPC" && second === "OPTIONS")
}

/**
 * `Transport` and `IpcAddress` for an explicit `address`: its scheme picks the
 * transport (`IPC_TRANSPORT` and `IPC_ADDRESS` are ignored), built with the
 * options that `IPC_OPTIONS` / `IPC_OPTIONS_<NAME>` set (a bad one fails with
 * reason `InvalidOption`).
 */
export const layerAt = (
  address: string
): Layer.Layer<Transport.Transport | Registry.IpcAddress, IpcError.IpcError> =>
  Layer.unwrap(Effect.gen(function*() {
    const current = yield* ConfigProvider.ConfigProvider
    const options = ConfigProvider.make((path) => isOptionsPath(path) ? current.load(path) : Effect.undefined)
    const provider = ConfigProvider.orElse(ConfigProvider.fromUnknown({ IPC_ADDRESS: address }), options)
    return layer.pipe(Layer.provide(ConfigProvider.layer(provider)))
  }))
