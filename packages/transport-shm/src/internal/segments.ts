/**
 * Unscoped segment operations that the public modules build on: create or
 * open a named segment and map it (closing the descriptor at once: the
 * mapping keeps the memory), read a header safely, list `/dev/shm`.
 *
 * @internal
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Header from "./header.ts"
import * as Libc from "./libc.ts"

/** A mapped segment. */
export interface Mapped {
  readonly name: string
  readonly mapping: Libc.Mapping
  /** Owner of the segment (uid). */
  readonly uid: number
  /** Size of the segment (the mapping may cover only its start). */
  readonly size: number
  /** Identity of the segment (to check that its name still names it before removing the name). */
  readonly ino: number
}

/** The directory where Linux shows POSIX segments as files. */
export const SHM_DIR = "/dev/shm"

/** Names of channel segments (`eipc-r-…` rings, `eipc-m-…` large messages); the first number is the creator's pid. */
export const channelNamePattern = /^eipc-[rm]-([a-z0-9]{1,8})-[a-z0-9-]{1,30}$/

let counter = 0
/** A fresh channel segment name for this process: `eipc-<tag>-<pid>-<n>-<random>` (short enough for macOS). */
export const freshName = (tag: "r" | "m"): string =>
  `eipc-${tag}-${process.pid.toString(36)}-${(counter++).toString(36)}-${Math.random().toString(36).slice(2, 8)}`

/**
 * Creates `/name` exclusively (mode `mode`), sizes it to `size` bytes and maps
 * it. On any failure after the name was taken, the name is removed again.
 */
export const createMapped = (
  name: string,
  size: number,
  options: { readonly mode?: number | undefined; readonly address?: string | undefined }
): Effect.Effect<Mapped, IpcError.IpcError> =>
  Effect.flatMap(
    Libc.shmOpen(name, "create", options.mode ?? 0o600, options.address),
    (fd) =>
      Libc.fdTruncate(fd, size, options.address).pipe(
        Effect.andThen(Libc.fdStat(fd, options.address)),
        Effect.flatMap((stat) =>
          Effect.map(
            Libc.mapShared(fd, size, { address: options.address }),
            (mapping): Mapped => ({ name, mapping, uid: stat.uid, size, ino: stat.ino })
          )
        ),
        Effect.ensuring(Effect.sync(() => Libc.closeFd(fd))),
        Effect.tapError(() => Effect.ignore(Libc.shmUnlink(name)))
      )
  )

/**
 * Opens `/name` and maps it (all of it, or its first `mapLength` bytes);
 * `minSize`: a smaller segment fails with `Protocol`, "truncated", before
 * anything is mapped.
 */
export const openMapped = (
  name: string,
  options: {
    readonly minSize?: number | undefined
    readonly mapLength?: number | undefined
    readonly address?: string | undefined
  } = {}
): Effect.Effect<Mapped, IpcError.IpcError> =>
  Effect.flatMap(Libc.shmOpen(name, "open", 0, options.address), (fd) =>
    Libc.fdStat(fd, options.address).pipe(
      Effect.flatMap((stat) => {
        const minSize = Math.max(1, options.minSize ?? 1)
        if (stat.size < minSize) {
          return Effect.fail(
            IpcError.make(
              "Protocol",
              `segment ${name}: truncated: ${stat.size} bytes, expected at least ${minSize}`,
              options.address
            )
          )
        }
        const length = Math.min(stat.size, options.mapLength ?? stat.size)
        return Effect.map(
          Libc.mapShared(fd, length, { address: options.address }),
          (mapping): Mapped => ({ name, mapping, uid: stat.uid, size: stat.size, ino: stat.ino })
        )
      }),
      Effect.ensuring(Effect.sync(() => Libc.closeFd(fd)))
    ))

/**
 * Opens `/name`, checks its header (magic, version, `kind`, size) and maps it
 * (`headerOnly`: just the header); a header still being written (magic 0 in a
 * fresh segment) is waited for briefly. Fails with `Protocol` for anything
 * that is not a valid segment.
 */
export const openWithHeader = (
  name: string,
  kind: Header.Kind | undefined,
  address?: string,
  options: { readonly headerOnly?: boolean | undefined; readonly retry?: boolean | undefined } = {}
): Effect.Effect<{ readonly mapped: Mapped; readonly header: Header.HeaderView }, IpcError.IpcError> =>
  Effect.gen(function*() {
    for (let attempt = 0;; attempt++) {
      const mapped = yield* openMapped(name, {
        minSize: Header.HEADER_SIZE,
        mapLength: options.headerOnly === true ? Header.HEADER_SIZE : undefined,
        address
      })
      const header = Header.view(mapped.mapping.buffer)
      const checked = yield* Effect.result(Header.validate(header, mapped.size, kind, name))
      if (checked._tag === "Success") return { mapped, header }
      const fresh = Atomics.load(header.words, 0) === 0
      mapped.mapping.release()
      // a creator writes its header within microseconds of sizing the segment
      if (!fresh || options.retry === false || attempt >= 20) {
        return yield* Effect.fail(IpcError.make(checked.failure.reason, checked.failure.detail, address))
      }
      yield* Effect.sleep("5 millis")
    }
  })

/** A name in `/dev/shm` with its size, owner, modification time and identity. */
export interface Listed {
  readonly name: string
  readonly size: number
  readonly uid: number
  readonly mtimeMs: number
  readonly ino: number
}

/** The segments in `/dev/shm` (Linux); `UnsupportedPlatform` where the OS does not list them. */
export const list: Effect.Effect<ReadonlyArray<Listed>, IpcError.IpcError> = Effect.gen(function*() {
  if (process.platform !== "linux") {
    return yield* IpcError.make(
      "UnsupportedPlatform",
      `${process.platform} does not list POSIX shared-memory segments (Linux shows them in ${SHM_DIR})`
    )
  }
  const names = yield* Effect.tryPromise({
    try: () => Fs.promises.readdir(SHM_DIR, { withFileTypes: true }),
    catch: (cause) => IpcError.fromSystemError(cause, "Open", `cannot list ${SHM_DIR}`)
  })
  const out: Array<Listed> = []
  for (const entry of names) {
    if (!entry.isFile()) continue
    const stat = yield* Effect.promise(() => Fs.promises.stat(`${SHM_DIR}/${entry.name}`).catch(() => undefined))
    if (stat !== undefined) {
      out.push({ name: entry.name, size: stat.size, uid: stat.uid, mtimeMs: stat.mtimeMs, ino: stat.ino })
    }
  }
  return out
})
