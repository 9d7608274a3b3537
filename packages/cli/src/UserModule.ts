/**
 * A user's own RPC service, loaded from a module for `call --module` and
 * `serve --module`: the `RpcGroup` it exports and, to serve it, the layer of
 * handlers (`Group.toLayer({...})`) it exports beside it. Failures are
 * `IpcError`s that name the module and what it exports, never a stack.
 *
 * @since 0.1.0
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Rpc from "effect/rpc/Rpc"
import type * as RpcGroup from "effect/rpc/RpcGroup"
import type * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Url from "node:url"

/** A group of procedures whose types are known only at run time. */
export type Group = RpcGroup.RpcGroup<Rpc.AnyWithProps>

/** A module's exports by name. */
export type Module = Readonly<Record<string, unknown>>

/** An RpcGroup by its shape (effect 4.1 declares a type id for groups but does not set it on them). */
export const isGroup = (u: unknown): u is Group =>
  (typeof u === "object" || typeof u === "function") && u !== null && "requests" in u &&
  u.requests instanceof Map && "toLayer" in u && typeof u.toLayer === "function" && "merge" in u

const firstLine = (cause: unknown): string =>
  (cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause)).split("\n")[0]!

/** Imports the module at `path` (a `.ts` or `.js` file, relative to the working directory). */
export const load = (path: string): Effect.Effect<Module, IpcError.IpcError> =>
  Effect.gen(function*() {
    const where = Path.resolve(path)
    if (!Fs.existsSync(where)) return yield* IpcError.make("NotFound", `no module at ${path}`)
    return yield* Effect.tryPromise({
      try: (): Promise<Module> => import(Url.pathToFileURL(where).href),
      catch: (cause) => IpcError.make("Decode", `cannot load module ${path}: ${firstLine(cause)}`)
    })
  })

/** The RpcGroup `name` exported by `module` (without a name: its only RpcGroup export). */
export const group = (
  module: Module,
  path: string,
  name: Option.Option<string>
): Effect.Effect<Group, IpcError.IpcError> =>
  Effect.gen(function*() {
    const groups = Object.keys(module).filter((key) => isGroup(module[key]))
    if (Option.isSome(name)) {
      const found = module[name.value]
      if (isGroup(found)) return found
      return yield* IpcError.make(
        "NotFound",
        `module ${path} exports no RpcGroup named ${name.value} (it exports ${groups.join(", ") || "none"})`
      )
    }
    if (groups.length === 1) return module[groups[0]!] as Group
    return yield* IpcError.make(
      "NotFound",
      groups.length === 0
        ? `module ${path} exports no RpcGroup`
        : `module ${path} exports several RpcGroups (${groups.join(", ")}): choose one with --group`
    )
  })

/** Loads the RpcGroup `name` exported by the module at `path` (without a name: its only RpcGroup export). */
export const loadGroup = (path: string, name: Option.Option<string>): Effect.Effect<Group, IpcError.IpcError> =>
  Effect.flatMap(load(path), (module) => group(module, path, name))

/** What `serve --module` serves: the group and its handlers, built. */
export interface Served {
  /** The group, by the name it is exported under. */
  readonly name: string
  readonly group: Group
  /** The handlers of every procedure of `group`, as `Group.toLayer` provides them. */
  readonly handlers: Context.Context<never>
}

/** Whether `context` holds a handler for `rpc` (`Group.toLayer` keys each by `rpc.key`). */
const handles = (context: Context.Context<never>, rpc: Rpc.AnyWithProps): boolean => {
  const entry: unknown = context.mapUnsafe.get(rpc.key)
  return typeof entry === "object" && entry !== null && "handler" in entry && typeof entry.handler === "function"
}

/**
 * Loads the RpcGroup and the layer of its handlers that the module at `path`
 * exports (`groupName` / `handlersName`, or the only one of each), and builds
 * the handlers in the scope. Fails, naming the module, when either is
 * missing or ambiguous, when the handlers need services the command line
 * does not have, or when they leave a procedure of the group unhandled.
 */
export const loadServed = (
  path: string,
  groupName: Option.Option<string>,
  handlersName: Option.Option<string>
): Effect.Effect<Served, IpcError.IpcError, Scope.Scope> =>
  Effect.gen(function*() {
    const module = yield* load(path)
    const served = yield* group(module, path, groupName)
    const name = Object.keys(module).find((key) => module[key] === served) ?? "the group"
    const layers = Object.keys(module).filter((key) => Layer.isLayer(module[key]))
    let key: string
    if (Option.isSome(handlersName)) {
      if (!Layer.isLayer(module[handlersName.value])) {
        return yield* IpcError.make(
          "NotFound",
          `module ${path} exports no layer named ${handlersName.value} (its layers: ${layers.join(", ") || "none"})`
        )
      }
      key = handlersName.value
    } else if (layers.length === 1) {
      key = layers[0]!
    } else {
      return yield* IpcError.make(
        "NotFound",
        layers.length === 0
          ? `module ${path} exports no layer of handlers: export ${name}.toLayer({ ... }) beside ${name}`
          : `module ${path} exports several layers (${layers.join(", ")}): choose the handlers with --handlers`
      )
    }
    // a layer loaded at run time: its type cannot say what it needs, so a missing service is a defect here
    const layer = module[key] as Layer.Layer<never>
    const handlers = yield* Layer.build(layer).pipe(
      Effect.catchCause((cause) =>
        Effect.fail(
          IpcError.make(
            "NotFound",
            `cannot build the handlers ${key} of module ${path}: ${
              firstLine(Cause.squash(cause))
            } (serve --module provides no services: the layer must provide what its handlers need)`
          )
        )
      )
    )
    const missing = [...served.requests.values()].filter((rpc) => !handles(handlers, rpc)).map((rpc) => rpc._tag)
    if (missing.length > 0) {
      return yield* IpcError.make(
        "NotFound",
        `the layer ${key} of module ${path} does not handle ${missing.join(", ")} of ${name}`
      )
    }
    return { name, group: served, handlers }
  })
