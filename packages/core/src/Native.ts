/**
 * Native calls for transport authors: koffi, loaded on first use. Core does
 * not depend on koffi; a transport that does hands its own module URL
 * (`import.meta.url`), so that koffi resolves from the transport's own
 * dependencies. Importing a transport must never load koffi: a machine
 * without koffi's native module (or without the C library a transport binds)
 * gets a typed `LibraryMissing` from the first call that needs it, not a
 * failed import.
 *
 * Every native binding of the project goes through `loader(...).bindings`:
 * koffi is required once, the bindings are built once, and the outcome (the
 * bindings, or the `IpcError` saying why there are none) is kept. Errno
 * numbers that a native call leaves are named and mapped to reasons by
 * `errnoError`, with the same table as Node's own system errors.
 *
 * @since 0.1.0
 */
import * as IpcError from "./IpcError.ts"

// Node's built-ins are looked up when first used, not imported: core also bundles and loads in a browser page
const os = () => process.getBuiltinModule("node:os")

/** koffi, or whatever module `loader` was asked for, typed by the caller: `Native.loader<typeof KoffiModule>(import.meta.url)`. */
export interface Loader<K> {
  /** The module, required on first use; `LibraryMissing` when it cannot be loaded. */
  readonly module: () => K | IpcError.IpcError
  /**
   * Bindings built from the module on first use and kept, like their error:
   * `build` returns them or an `IpcError` (`UnsupportedPlatform`, ...); a
   * throw while building (a library that will not load, a missing symbol) is
   * `LibraryMissing`, its detail starting with `what`.
   */
  readonly bindings: <B>(what: string, build: (module: K) => B | IpcError.IpcError) => () => B | IpcError.IpcError
}

const messageOf = (cause: unknown): string => cause instanceof Error ? cause.message : String(cause)

/** The `LibraryMissing` error for `what`, which could not be loaded because of `cause`. */
export const libraryMissing = (what: string, cause: unknown): IpcError.IpcError =>
  new IpcError.IpcError({ reason: "LibraryMissing", detail: `${what}: ${messageOf(cause)}`, cause })

/** Keeps the first outcome of `f`; a throw becomes `onThrow(cause)`, kept as well. */
const once = <A>(f: () => A | IpcError.IpcError, onThrow: (cause: unknown) => IpcError.IpcError) => {
  let kept: A | IpcError.IpcError | undefined
  let done = false
  return (): A | IpcError.IpcError => {
    if (!done) {
      try {
        kept = f()
      } catch (cause) {
        kept = onThrow(cause)
      }
      done = true
    }
    return kept as A | IpcError.IpcError
  }
}

/**
 * A loader of `name` (default `koffi`) as the module at `from` would require
 * it. Nothing is loaded until `module` or a `bindings` function is called.
 */
export const loader = <K>(from: string | URL, name = "koffi"): Loader<K> => {
  const module = once<K>(
    () => process.getBuiltinModule("node:module").createRequire(from)(name) as K,
    (cause) => libraryMissing(`cannot load ${name}`, cause)
  )
  return {
    module,
    bindings: (what, build) =>
      once(() => {
        const loaded = module()
        return loaded instanceof IpcError.IpcError ? loaded : build(loaded)
      }, (cause) => libraryMissing(what, cause))
  }
}

/** The C library's file name on this platform, or undefined where the project has no bindings (Windows). */
export const libcName = (): string | undefined =>
  process.platform === "linux"
    ? "libc.so.6"
    : process.platform === "darwin"
    ? "libSystem.B.dylib"
    : process.platform === "freebsd"
    ? "libc.so.7"
    : undefined

/** Errno numbers of this platform by name, the first name of each number kept (EAGAIN before EWOULDBLOCK). */
let errnoNames: Map<number, string> | undefined
const errnoTable = (): Map<number, string> => {
  if (errnoNames === undefined) {
    errnoNames = new Map()
    for (const [name, value] of Object.entries(os().constants.errno)) {
      if (!errnoNames.has(value)) errnoNames.set(value, name)
    }
  }
  return errnoNames
}

/** The name of an errno number (`11` -> `"EAGAIN"` on Linux), or `"errno 11"` when it has none here. */
export const errnoName = (errno: number): string => errnoTable().get(errno) ?? `errno ${errno}`

/** The errno number of a name on this platform (`"EINVAL"` -> 22 on Linux). */
export const errnoNumber = (name: string): number | undefined =>
  (os().constants.errno as Readonly<Record<string, number>>)[name]

/**
 * The `IpcError` of an errno number a native call left: named, and mapped to
 * a reason as Node's system errors are (`IpcError.fromErrno`); `fallback`
 * for the rest.
 */
export const errnoError = (
  errno: number,
  fallback: IpcError.IpcErrorReason,
  detail: string,
  address?: string
): IpcError.IpcError => IpcError.fromErrno(errnoName(errno), fallback, detail, address)
