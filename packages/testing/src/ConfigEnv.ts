/**
 * Transports built from configuration in tests: `Registry.layerConfig` over
 * the descriptors given, reading `IPC_TRANSPORT`, `IPC_ADDRESS` and
 * `IPC_OPTIONS*` from a map instead of the process's environment.
 *
 * @since 0.1.0
 */
import type * as IpcError from "@effect-ipc/core/IpcError"
import * as Registry from "@effect-ipc/core/Registry"
import type * as Transport from "@effect-ipc/core/Transport"
import type * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Layer from "effect/Layer"

/**
 * A maker of `Registry.layerConfig(descriptors)` layers whose environment is
 * `defaults` with each call's `env` over it (e.g. `{ IPC_TRANSPORT: "shm" }`).
 */
export const layerFrom = (
  descriptors: ReadonlyArray<Registry.TransportDescriptor>,
  defaults: Readonly<Record<string, string>> = {}
) =>
(
  env: Readonly<Record<string, string>> = {}
): Layer.Layer<Transport.Transport | Registry.IpcAddress, IpcError.IpcError | Config.ConfigError> =>
  Registry.layerConfig(descriptors).pipe(
    Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: { ...defaults, ...env } })))
  )
