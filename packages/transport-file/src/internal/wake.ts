/**
 * Wake-ups on change: `fs.watch` on a directory (inotify on Linux, FSEvents
 * or kqueue elsewhere) calls back as soon as a file in it changes. Where the
 * file system does not notify (NFS, some FUSE and container mounts), or
 * `fs.watch` fails (no inotify watches left), it falls back to polling.
 * Nothing spins: with notifications working the only timer is an optional
 * slow safety net.
 *
 * @internal
 */
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Fs from "node:fs"

/** How readers learn that a file changed. */
export interface WatchOptions {
  /**
   * `auto` (default): notifications, with polling if they cannot be set up or
   * fail later; `poll`: polling only, for file systems that do not notify
   * (NFS, some FUSE and container mounts).
   */
  readonly watch?: "auto" | "poll" | undefined
  /** Polling period when polling is the mechanism (default 10 ms). */
  readonly pollInterval?: Duration.Input | undefined
}

/** The polling period of `options`, in milliseconds. */
export const pollMillis = (options: WatchOptions): number =>
  // a longer timer (Infinity too) would fire every millisecond
  Math.min(
    Math.max(1, Duration.toMillis(Duration.fromInputUnsafe(options.pollInterval ?? "10 millis"))),
    TransportOptions.MAX_TIMER_MILLIS
  )

/**
 * Calls `onChange` whenever something in the directory `path` changes (or at
 * every poll). Stops when the scope closes. The watcher keeps the process
 * alive, like an open socket.
 */
export const watch = (
  path: string,
  onChange: () => void,
  options: WatchOptions = {}
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      let watcher: Fs.FSWatcher | undefined
      let timer: ReturnType<typeof setInterval> | undefined
      const poll = () => {
        if (timer === undefined) timer = setInterval(onChange, pollMillis(options))
      }
      if (options.watch !== "poll") {
        try {
          watcher = Fs.watch(path, { persistent: true }, () => onChange())
          watcher.on("error", () => {
            watcher?.close()
            watcher = undefined
            poll()
          })
        } catch {
          watcher = undefined
        }
      }
      if (watcher === undefined) poll()
      return () => {
        watcher?.close()
        if (timer !== undefined) clearInterval(timer)
      }
    }),
    (stop) => Effect.sync(stop)
  ).pipe(Effect.asVoid)
