/**
 * Named POSIX shared-memory segments (`shm_open`, `ftruncate`, `mmap`) as
 * scoped resources. `create` takes a name exclusively (mode 0600 by default)
 * and removes it when its scope closes; `open` maps an existing segment; both
 * unmap when their scope closes.
 *
 * Views never outlive the mapping: `bytes` and every typed array or `Buffer`
 * made over it are detached when the scope closes (length 0, reads
 * `undefined`, writes nothing). Reading a view too late gives nothing, never
 * another segment's data and never a crash; see `README.md` for how.
 *
 * Names are `[A-Za-z0-9._-]`, without a slash (the leading `/` of POSIX is
 * added here), up to `maxNameLength` bytes: 255 on Linux, 30 on macOS. Errors
 * are `IpcError`s: `AlreadyExists`, `NotFound`, `PermissionDenied`,
 * `NameTooLong`, `NoSpace`, `InvalidAddress` (a bad name), and
 * `UnsupportedPlatform` on Windows.
 *
 * @since 0.1.0
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Libc from "./internal/libc.ts"
import * as Reclaim from "./internal/reclaim.ts"
import * as Segments from "./internal/segments.ts"

/** Longest segment name, in bytes, without the leading slash: 255 on Linux, 30 on macOS. */
export const maxNameLength: number = process.platform === "darwin" ? 30 : 255

const namePattern = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/

/** Checks a segment name: no slash, only `[A-Za-z0-9._-]`, not starting with a dot, within `maxNameLength`. */
export const validateName = (name: string, address?: string): Effect.Effect<string, IpcError.IpcError> => {
  if (typeof name !== "string") {
    return Effect.fail(
      IpcError.make(
        "InvalidAddress",
        `a segment name is a string (got ${name === null ? "null" : typeof name})`,
        address
      )
    )
  }
  if (name.includes("/")) {
    return Effect.fail(IpcError.make("InvalidAddress", `segment names have no slashes: "${name}"`, address))
  }
  if (Buffer.byteLength(name) > maxNameLength) {
    return Effect.fail(
      IpcError.make(
        "NameTooLong",
        `segment name is ${Buffer.byteLength(name)} bytes; ${process.platform} allows at most ${maxNameLength}`,
        address
      )
    )
  }
  if (!namePattern.test(name)) {
    return Effect.fail(
      IpcError.make("InvalidAddress", `a segment name is 1-${maxNameLength} of A-Z a-z 0-9 . _ - : "${name}"`, address)
    )
  }
  return Effect.succeed(name)
}

/** `validateName`, for a name to create: the transport's own forms (`eipc-r-…`, `eipc-m-…`, `eipc-l-…`) are refused. */
export const validateNewName = (name: string, address?: string): Effect.Effect<string, IpcError.IpcError> =>
  Effect.flatMap(
    validateName(name, address),
    (valid) =>
      Segments.channelNamePattern.test(valid) || Segments.stagingNamePattern.test(valid)
        ? Effect.fail(
          IpcError.make(
            "InvalidAddress",
            `"${valid}" has the form of the shm transport's own names (eipc-r-, eipc-m-, eipc-l-), which its collector removes`,
            address
          )
        )
        : Effect.succeed(valid)
  )

/**
 * `InvalidOption` for a `mode` that is not permission bits, that lets another
 * user write (a named segment cannot be sealed, and one that another user
 * shrinks makes its mappers' next access to the cut-off pages a `SIGBUS`), or
 * that denies its owner reading or writing (nobody could open, remove or
 * collect it as a link).
 */
export const invalidMode = (mode: unknown): IpcError.IpcError | undefined => {
  if (mode === undefined) return undefined
  const bad = TransportOptions.invalidMode(mode)
  if (bad !== undefined) return bad
  const bits = mode as number
  const octal = `0o${bits.toString(8)}`
  if ((bits & 0o022) !== 0) {
    return IpcError.make(
      "InvalidOption",
      `mode ${octal} lets another user write: one who shrinks the segment kills its mappers (SIGBUS); group and others may read at most`
    )
  }
  if ((bits & 0o600) !== 0o600) {
    return IpcError.make("InvalidOption", `mode ${octal} denies its owner reading or writing (0o600 at least)`)
  }
  return undefined
}

/** A mapped segment. */
export interface Segment {
  /** The name, without the leading slash. */
  readonly name: string
  /** Bytes mapped (the whole segment). */
  readonly size: number
  /** True when this scope created the segment (and removes its name on close). */
  readonly owner: boolean
  /** The segment's memory; detached (empty) once the scope that mapped it has closed. */
  readonly bytes: Uint8Array
  /** True until the scope that mapped it closes. */
  readonly isMapped: () => boolean
}

const toSegment = (mapped: Segments.Mapped, owner: boolean): Segment => ({
  name: mapped.name,
  size: mapped.mapping.size,
  owner,
  bytes: new Uint8Array(mapped.mapping.buffer),
  isMapped: () => !mapped.mapping.isReleased()
})

/** Options of `create`. */
export interface CreateOptions {
  /** Permission bits (default 0o600: this user only); the owner reads and writes, group and others may read at most (see `invalidMode`). */
  readonly mode?: number | undefined
}

/**
 * Creates the segment `name` of `size` bytes (zero-filled), failing with
 * `AlreadyExists` when the name is taken (`InvalidOption` for a `size` that is
 * not a whole number of at least 1). Its name is removed (if it still
 * names this segment) and its memory unmapped when the scope closes (other
 * processes that mapped it keep their mappings).
 */
export const create = (
  name: string,
  size: number,
  options: CreateOptions = {}
): Effect.Effect<Segment, IpcError.IpcError, Scope.Scope> =>
  Effect.gen(function*() {
    yield* validateNewName(name)
    const notObject = TransportOptions.notAnObject(options, "the options of Segment.create")
    if (notObject !== undefined) return yield* notObject
    if (!Number.isSafeInteger(size) || size <= 0) {
      return yield* IpcError.make(
        "InvalidOption",
        `a segment's size is a whole number of bytes of at least 1 (got ${String(size)})`
      )
    }
    const badMode = invalidMode(options.mode)
    if (badMode !== undefined) return yield* badMode
    const mapped = yield* Effect.acquireRelease(
      Segments.createMapped(name, size, { mode: options.mode }),
      (created) =>
        Effect.sync(() => {
          created.mapping.release()
          // only while the name is still ours: one removed and made again since is someone else's
          Reclaim.removeUnlocked(name, created.ino)
        })
    )
    return toSegment(mapped, true)
  })

/** Maps the existing segment `name` (`NotFound` when there is none); unmapped when the scope closes. */
export const open = (name: string): Effect.Effect<Segment, IpcError.IpcError, Scope.Scope> =>
  Effect.gen(function*() {
    yield* validateName(name)
    const mapped = yield* Effect.acquireRelease(
      Segments.openMapped(name),
      (opened) => Effect.sync(() => opened.mapping.release())
    )
    return toSegment(mapped, false)
  })

/** Removes the name `name` (`NotFound` when there is none); processes that mapped it keep their memory. */
export const unlink = (name: string): Effect.Effect<void, IpcError.IpcError> =>
  Effect.andThen(validateName(name), () => Libc.shmUnlink(name))

/** Every segment visible in `/dev/shm` (Linux), with size, owner uid and modification time. */
export const list: Effect.Effect<ReadonlyArray<Segments.Listed>, IpcError.IpcError> = Segments.list
