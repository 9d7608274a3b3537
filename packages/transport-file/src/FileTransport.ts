/**
 * The `file://` transport: channels between processes that share nothing
 * but a directory.
 *
 * - `file:///path/to/dir`: `listen` makes a new or empty directory (or one an
 *   earlier listener marked) a listener's; any other directory is
 *   `AddressInUse` and left untouched. It holds `listener.lock` (a second
 *   listener gets `AddressInUse`), and every
 *   `dial` opens a connection: a fresh channel directory under
 *   `connections/`, built aside and renamed into place, which the listener
 *   notices (inotify) and accepts. Each connection is two logs (`Log`), so
 *   it is lossless, back-pressured and crash-safe; it is removed once both
 *   ends have closed or died. Dialling a directory without a live listener
 *   is `NotFound`.
 * - `file:///path/to/dir?role=backend` / `?role=frontend`: the seed's fixed
 *   roles (`FileChannel`): `dial` opens that end of the channel directory;
 *   `listen` yields it as its one connection, and opens it again for the
 *   next session once it is closed. Messages wait for a side that is not
 *   running, and a restarted side resumes from its cursor.
 *
 * @since 0.1.0
 */
import * as Address from "@effect-ipc/core/Address"
import * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Process from "@effect-ipc/core/Process"
import * as Transport from "@effect-ipc/core/Transport"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as FileChannel from "./FileChannel.ts"
import * as Endpoint from "./internal/endpoint.ts"
import * as Layout from "./internal/layout.ts"
import * as Libc from "./internal/libc.ts"
import * as Lock from "./internal/lock.ts"
import * as Sys from "./internal/sys.ts"
import * as Wake from "./internal/wake.ts"
import * as Log from "./Log.ts"

/** Options of the file transport: those of every channel it opens. */
export interface FileTransportOptions extends FileChannel.FileChannelOptions {}

/** A parsed `file://` address. */
export interface FileAddress {
  /** The directory. */
  readonly dir: string
  /** The fixed role, for `?role=backend|frontend` addresses. */
  readonly role: FileChannel.Role | undefined
}

/** Parses `file:///abs/dir` and `file:///abs/dir?role=backend|frontend`. */
export const parse = (raw: string): Effect.Effect<FileAddress, IpcError.IpcError> =>
  Effect.gen(function*() {
    const address = yield* Address.parseFor(raw, ["file"])
    const [location, query] = address.rest.split("?", 2) as [string, string | undefined]
    const dir = yield* Address.path({ ...address, rest: location })
    let role: FileChannel.Role | undefined
    if (query !== undefined) {
      const params = new URLSearchParams(query)
      for (const key of params.keys()) {
        if (key !== "role") return yield* IpcError.make("InvalidAddress", `unknown parameter "${key}"`, raw)
      }
      const value = params.get("role")
      if (value !== "backend" && value !== "frontend") {
        return yield* IpcError.make("InvalidAddress", "role must be backend or frontend", raw)
      }
      role = value
    }
    return { dir: Path.resolve(dir.length > 1 ? dir.replace(/\/+$/, "") : dir), role }
  })

interface ConnectionInfo {
  readonly listener: string
  readonly pid: number
  readonly created: number
}

/**
 * A connection's `connection.json`: `undefined` when it is missing or is not one (garbage), `NoSpace` when the
 * process could not read it for want of room (no descriptor free): the connection is then looked at again.
 */
const readInfo = (path: string, address: string): ConnectionInfo | undefined | IpcError.IpcError => {
  const content = Sys.attempt(
    () => Sys.readFile(path, Layout.SMALL_FILE_MAX_BYTES),
    "Open",
    `cannot read ${path}`,
    address
  )
  if (Sys.failed(content)) return content.reason._tag === "NoSpace" ? content : undefined
  try {
    const value = JSON.parse(content.toString("utf8")) as Partial<ConnectionInfo>
    return typeof value.listener === "string" ? value as ConnectionInfo : undefined
  } catch {
    return undefined
  }
}

/**
 * How long a connection being built aside (`connections/.ID....tmp`) may sit
 * unchanged, when its builder cannot be judged (another host, another pid
 * namespace, or a name that does not say who built it), before a listener
 * removes it: measured on the listener's own clock from when it first saw
 * the entry as it is, never from the entry's mtime (another host's clock).
 */
const BUILD_BOUND_MS = 30_000

/**
 * How long a connection that could not be accepted for a passing reason is tried again, on each scan, before it
 * is left alone: its lock held by a prober (`AddressInUse`), its files removed as it was opened (`NotFound`: its
 * dialer gave it up; the next scan discards what is left). One that failed for want of room (`NoSpace`: no
 * descriptor or inode free) is tried again for as long as the shortage lasts: its dialer waits for it.
 */
const ACCEPT_RETRY_MS = 10_000
const RETRIED: ReadonlySet<string> = new Set(["AddressInUse", "NoSpace", "NotFound"])

/**
 * The hidden name a dialer builds connection `id` under: it names the
 * builder (`Process.encode`: pid, start time, pid namespace) and its host
 * (`Sys.hostId`), since a pid means something only on its own host.
 */
const buildingName = (id: string): string => `.${id}.${Process.encode(Process.self())}.${Sys.hostId()}.tmp`

/**
 * The builder and the host that `name` says (see `buildingName`): the
 * builder as core's `Process.decode` reads it, from a field that holds a
 * whole identity (`pid@start.ns`: `decode` also reads a bare pid, which no
 * build's name holds); `undefined` for any other name.
 */
const builderOf = (name: string): { readonly builder: Process.Identity; readonly host: string } | undefined => {
  const match = /^\.[0-9a-z]+-[0-9a-f]{16}\.(.+)\.([0-9a-f]{16})\.tmp$/.exec(name)
  if (match === null || !match[1]!.includes("@")) return undefined
  const builder = Process.decode(match[1]!)
  return builder === undefined ? undefined : { builder, host: match[2]! }
}

/** Makes the file transport. */
export const make = (options: FileTransportOptions = {}): Transport.TransportShape => {
  // options that are not an object (a caller without types): every listen and dial fails with InvalidOption
  const refused = TransportOptions.refusedIfNotAnObject(["file"], options)
  if (refused !== undefined) return refused
  const fileMode = options.fileMode ?? Log.defaults.fileMode
  const dirMode = options.dirMode ?? Log.defaults.dirMode

  const listenDir = (
    raw: string,
    dir: string,
    attempt = 0
  ): Effect.Effect<Transport.Listener, IpcError.IpcError, Scope.Scope> =>
    Effect.gen(function*() {
      const invalid = Sys.invalidModes(options, raw)
      if (invalid !== undefined) return yield* invalid
      const paths = Layout.listenerPaths(dir)
      const made = Layout.ensureDir(dir, dirMode, raw)
      if (Sys.failed(made)) return yield* made
      const created = made.at(-1) === Path.resolve(dir)
      // the parents this listener made, innermost first: they go too, once empty
      const madeParents = (created ? made.slice(0, -1) : made).toReversed()
      // the directories this listener made on the way go, while empty (anything put in one keeps it), innermost
      // first, and `dir` before them when `withDir`: a listen that fails (a full disk: `NoSpace`) takes back those
      // it made; a close, once nothing is left, those and a directory it owns
      const unmake = (withDir: boolean) => {
        for (const path of withDir ? [dir, ...madeParents] : madeParents) {
          if (Sys.failed(Sys.attempt(() => Fs.rmdirSync(path), "Write", ""))) break
        }
      }
      // a directory this package did not mark is the user's: used only while empty, and marked before anything
      // else (then `marker` is undefined)
      // under the directory's lock, which a listener's close holds from removing its marker to removing the
      // directory: one that claimed it in between served, without knowing, in a directory that listener had made
      const marker = yield* Lock.guarding(dir, () => Layout.claim(dir, "listener", fileMode, raw, created))
      if (Sys.failed(marker)) {
        unmake(created)
        // removed meanwhile, as the listener that made it closed: made again
        if (marker.reason._tag === "NotFound" && attempt < 3 && !Sys.exists(dir)) {
          return yield* listenDir(raw, dir, attempt + 1)
        }
        return yield* marker
      }
      // a listen that fails after this takes back what it did: the marker it wrote, then its lock (when it has
      // one, removed with the marker), then the directories it made
      const undo = (held?: Lock.HeldLock) => {
        if (marker === undefined) {
          Layout.removeMarker(dir)
        }
        if (held !== undefined) Lock.release(held, marker === undefined)
        unmake(created)
      }
      // a listener racing this one to create the directory published the marker, saying it did not make it: this
      // one says so there (whichever of the two serves removes the directory), under the directory's lock, which a
      // listener's close holds as it removes the marker
      if (created && marker !== undefined && marker.ownsDirectory !== true) {
        yield* Lock.guarding(dir, () => Layout.markOwned(dir, fileMode))
      }
      // the marker it wrote says so too when a listener racing this one made the directory
      const ownsDirectory = created || (marker ?? Layout.readMarker(dir))?.ownsDirectory === true
      const incarnation = Sys.randomId()
      // dialers probe the listener's lock (shared, for microseconds): a restarting listener that meets one
      // tries again, where it refused as if another listener served the directory
      const lock = yield* Lock.retryWhileProbed(Effect.suspend(() => {
        const taken = Lock.tryTake(paths.lock, fileMode, `${process.pid} ${incarnation}`, raw)
        if (Sys.failed(taken)) return Effect.fail(taken)
        if (taken !== "busy") return Effect.succeed(taken)
        const owner = Lock.session(paths.lock)
        return Effect.fail(IpcError.make(
          "AddressInUse",
          `a listener${owner === undefined ? "" : ` (pid ${owner.pid})`} already serves this directory`,
          raw
        ))
      })).pipe(Effect.tapError((error) =>
        Effect.sync(() => {
          // another listener serves here: the directory is its. Else (no room for the lock file: `NoSpace`) the
          // marker this listener wrote goes, and the directories it made with it, as when a later step fails
          if (error.reason._tag !== "AddressInUse") undo()
        })
      ))
      const setup = Sys.attempt(
        () => {
          try {
            // exclusive in a directory just adopted: one made meanwhile is not ours
            Sys.makeDir(paths.connections, dirMode)
          } catch (cause) {
            if (marker === undefined || IpcError.errnoOf(cause) !== "EEXIST") throw cause
          }
        },
        "Open",
        "cannot create the connections directory",
        raw
      )
      const setupError = Sys.failed(setup)
        ? (setup.reason._tag === "AlreadyExists"
          ? IpcError.make("AddressInUse", `${paths.connections} appeared while the listener was starting`, raw)
          : setup)
        : Layout.checkSubdir(paths.connections, raw)
      if (setupError !== undefined) {
        undo(lock)
        return yield* setupError
      }

      const acceptor = yield* Transport.makeAcceptor(raw)
      const accepted = new Set<IpcChannel.IpcChannel>()
      const seen = new Set<string>()
      // the connections that could not be accepted: when each first failed, and when it is tried next (on a later
      // scan: a prober held its lock a moment too long, the process was out of descriptors). Not at once: a try that
      // fails takes and lets go of files in connections/, which wakes the watcher (a listener short of descriptors
      // spun on it)
      const failing = new Map<string, { readonly since: number; readonly next: number }>()
      let stopped = false
      /** Builds whose builder cannot be judged: how each looked when first seen so, and when (this clock). */
      const sightings = new Map<string, { readonly looks: string; readonly since: number }>()

      /** Whether the build `name` has changed within `BUILD_BOUND_MS`, as this listener has watched it. */
      const changedLately = (name: string, stat: Fs.Stats): boolean => {
        const looks = `${stat.ino}:${stat.mtimeMs}:${stat.ctimeMs}:${stat.nlink}:${stat.size}`
        const now = performance.now()
        const sighting = sightings.get(name)
        if (sighting === undefined || sighting.looks !== looks) {
          sightings.set(name, { looks, since: now })
          return true
        }
        return now - sighting.since < BUILD_BOUND_MS
      }

      /**
       * Whether the hidden entry `name` of `connections/` is a connection a
       * dialer may still be building: a directory named as a build of this
       * host whose builder still runs (pid and start time); one whose
       * builder cannot be judged from here (another host, another pid
       * namespace, a name that does not say) while it keeps changing, and
       * until it has sat unchanged for `BUILD_BOUND_MS`. Anything else
       * hidden is garbage.
       */
      const stillBuilding = (name: string): boolean => {
        if (!name.endsWith(".tmp")) return false
        let stat: Fs.Stats
        try {
          stat = Fs.lstatSync(paths.connection(name))
        } catch {
          return false
        }
        if (!stat.isDirectory()) return false
        const built = builderOf(name)
        if (built === undefined || built.host !== Sys.hostId()) return changedLately(name, stat)
        // the builder started before its last change to the directory: a later process with its pid is not it
        switch (Process.liveness(built.builder, stat.mtimeMs)) {
          case "alive":
            return true
          case "dead":
            return false
          case "unknown":
            return changedLately(name, stat)
        }
      }

      /**
       * Removes what is not a connection (nothing but dialers of this user can write here), forgetting it once gone,
       * or when its locks could not be looked at for want of room (looked at again on a later scan).
       */
      const discard = (id: string) => {
        const connDir = paths.connection(id)
        let undecided = false
        try {
          if (Fs.lstatSync(connDir).isDirectory()) {
            // abandoned unless a live end holds a lock (a lock file we refuse to open is nobody's)
            const held = Endpoint.ROLES.some((role) => {
              const state = Lock.probe(Endpoint.channelPaths(connDir).lock(role))
              if (Sys.failed(state) && state.reason._tag === "NoSpace") undecided = true
              return state === "held" || (Sys.failed(state) && state.reason._tag !== "PermissionDenied")
            })
            if (!held) {
              Fs.rmSync(connDir, { recursive: true, force: true })
            }
          } else {
            Fs.rmSync(connDir, { force: true })
          }
        } catch {
          // gone already
        }
        if (undecided || !Sys.exists(connDir)) seen.delete(id)
      }

      /** A hidden entry: a connection still being built is left alone; anything else (a dead dialer's build) goes. */
      const tidyHidden = (name: string) => {
        if (stillBuilding(name)) return
        discard(name)
        if (!Sys.exists(paths.connection(name))) sightings.delete(name)
      }

      const accept = (id: string) =>
        Effect.gen(function*() {
          const connDir = paths.connection(id)
          const streams = Endpoint.channelPaths(connDir)
          const unsafe = Layout.checkSubdir(connDir, raw) ?? Layout.checkStream(streams.stream("backend"), raw) ??
            Layout.checkStream(streams.stream("frontend"), raw)
          const info = unsafe === undefined ? readInfo(paths.info(id), raw) : undefined
          if (Sys.failed(info)) return yield* info
          if (info === undefined || info.listener !== incarnation) {
            // garbage, or a connection to an earlier listener: its dialer has been told, or is dead
            discard(id)
            return
          }
          const endpoint = yield* Endpoint.open({
            address: raw,
            dir: connDir,
            role: "backend",
            lockLast: true,
            peerStatus: () => {
              const state = Lock.probe(Endpoint.channelPaths(connDir).lock("frontend"))
              return Sys.failed(state) ? state : state === "held" ? "present" : "absent"
            },
            onReleased: () => Endpoint.removeIfAbandoned(connDir)
          }, options)
          if (stopped) return yield* endpoint.channel.close
          accepted.add(endpoint.channel)
          // forgotten once it holds nothing (it lets go as it ends, its reader too): until then the listener's
          // close closes it
          background(
            Effect.andThen(
              endpoint.letGo,
              Effect.sync(() => {
                accepted.delete(endpoint.channel)
                if (!Sys.exists(connDir)) seen.delete(id)
              })
            )
          )
          failing.delete(id)
          yield* acceptor.admit(endpoint.channel)
        }).pipe(
          Effect.catch((error) =>
            Effect.suspend(() => {
              const now = performance.now()
              const since = failing.get(id)?.since ?? now
              const passing = error.reason._tag === "NoSpace" || now - since < ACCEPT_RETRY_MS
              if (!stopped && RETRIED.has(error.reason._tag) && passing) {
                // 50 ms after the first failure, doubling to 2 s between tries
                failing.set(id, { since, next: now + Math.min(2000, Math.max(50, (now - since) / 2)) })
                seen.delete(id)
                return Effect.logDebug(`could not accept connection ${id}; trying again on the next scan`, error)
              }
              failing.delete(id)
              return Effect.logWarning(`could not accept connection ${id}; it is left until the listener closes`, error)
            })
          ),
          // an endpoint half open when the listener closes would keep its lock: let it finish, then close it
          Effect.uninterruptible
        )

      // connections being opened, not offered yet
      let opening = 0
      const scan = () => {
        if (stopped) return
        let names: Array<string>
        try {
          names = Fs.readdirSync(paths.connections)
        } catch {
          return
        }
        for (const id of names) {
          if (id.startsWith(".")) {
            tidyHidden(id)
            continue
          }
          if (seen.has(id)) continue
          // while the program has not accepted `maxUnaccepted`, dialers wait (a later scan opens theirs); those
          // being opened count (one scan starts them all before any is offered: the last were opened, then closed)
          if (acceptor.full(opening)) break
          const due = failing.get(id)?.next
          if (due !== undefined && performance.now() < due) continue
          seen.add(id)
          opening++
          background(Effect.ensuring(accept(id), Effect.sync(() => opening--)))
        }
        // published or given up: forget how they looked; gone: forget that they failed
        if (sightings.size > 0 || failing.size > 0) {
          const present = new Set(names)
          for (const name of sightings.keys()) if (!present.has(name)) sightings.delete(name)
          for (const id of failing.keys()) if (!present.has(id)) failing.delete(id)
        }
      }

      yield* Effect.addFinalizer(() =>
        Effect.gen(function*() {
          stopped = true
          // those never accepted too: a connection whose dialer left is finished, yet its reader holds descriptors
          yield* acceptor.shutdown
          for (const channel of Array.from(accepted)) yield* channel.close
          // what is left: connections whose dialers are gone (or still open, in other processes)
          let names: Array<string> = []
          try {
            names = Fs.readdirSync(paths.connections)
          } catch {
            names = []
          }
          for (const id of names) {
            if (id.startsWith(".")) tidyHidden(id)
            else Endpoint.removeIfAbandoned(paths.connection(id))
          }
          yield* Lock.guarding(dir, () => {
            let empty = false
            try {
              Fs.rmdirSync(paths.connections)
              empty = true
            } catch {
              // dialers still connected: their connections outlive us (and the marker with them); the next listener tidies up
            }
            // the marker may say that a listener racing this one made the directory (`markOwned`)
            const owned = ownsDirectory || (empty && Layout.readMarker(dir)?.ownsDirectory === true)
            // once nothing is left, the directory goes back to what it was: gone if we made it, else empty (a
            // marker a listener killed as it wrote it left goes first, while ours tells others not to write one)
            if (empty) {
              Layout.removeMarkerLeftovers(dir)
              Layout.removeMarker(dir)
            }
            Lock.release(lock, true)
            // the directory fails to go, harmlessly (and the ones made on the way stay), if a new listener has
            // taken it meanwhile
            if (empty && owned) unmake(true)
          })
        })
      )
      // accepts (started by the watcher and the timer) run with the services of whoever listens, and
      // are done or interrupted before the finalizer above closes what they accepted
      const background = yield* FiberSet.makeRuntime<never>()
      yield* Wake.watch(paths.connections, scan, options)
      // a safety net for missed notifications
      const timer = setInterval(scan, 250)
      timer.unref()
      yield* Effect.addFinalizer(() => Effect.sync(() => clearInterval(timer)))
      scan()
      return acceptor.listener
    })

  const listenRole = (raw: string, dir: string, role: FileChannel.Role) =>
    Effect.gen(function*() {
      const acceptor = yield* Transport.makeAcceptor(raw)
      yield* Effect.addFinalizer(() => acceptor.shutdown)
      const scope = yield* Effect.scope
      // one session at a time: the next opens once its user has closed the previous one
      const session = Effect.gen(function*() {
        const endpoint = yield* FileChannel.openEndpoint(dir, role, options, raw).pipe(Scope.provide(scope))
        const done = Deferred.makeUnsafe<void>()
        acceptor.offer({
          ...endpoint.channel,
          close: IpcChannel.extendClose(endpoint.channel.close, (inner) =>
            Effect.ensuring(inner, Deferred.succeed(done, undefined)))
        })
        return Deferred.await(done)
      })
      // the first session opens now, so that errors (AddressInUse, PermissionDenied) surface from listen
      const first = yield* session
      yield* Effect.forkScoped(
        Effect.andThen(first, Effect.forever(Effect.flatten(session))).pipe(
          Effect.catch((error) =>
            Effect.logWarning(`${raw}: cannot open the next session`, error)
          )
        )
      )
      return acceptor.listener
    })

  const dialDir = (raw: string, dir: string) =>
    Effect.gen(function*() {
      const invalid = Sys.invalidModes(options, raw)
      if (invalid !== undefined) return yield* invalid
      const paths = Layout.listenerPaths(dir)
      // a listener directory another user controls would be handed our connection
      const untrusted = Layout.checkDir(dir, raw)
      if (untrusted !== undefined) return yield* untrusted
      const state = Lock.probe(paths.lock)
      if (Sys.failed(state)) return yield* state
      if (state !== "held") return yield* IpcError.make("NotFound", "no listener serves this directory", raw)
      const listener = Lock.session(paths.lock)
      if (listener === undefined) return yield* IpcError.make("NotFound", "no listener serves this directory", raw)
      const connections = Layout.checkSubdir(paths.connections, raw)
      if (connections !== undefined) return yield* connections
      const id = `${Date.now().toString(36)}-${Sys.randomId()}`
      // hidden while it is built, and naming its builder: a listener removes it once we are dead
      const tmp = Path.join(paths.connections, buildingName(id))
      const connDir = paths.connection(id)
      const channelPaths = Endpoint.channelPaths(tmp)
      // build the connection aside, with our end's lock taken, and publish it with one rename
      const cleanup = () => Fs.rmSync(tmp, { recursive: true, force: true })
      const made = Sys.attempt(() => Sys.makeDir(tmp, dirMode), "Open", "cannot create a connection", raw)
      if (Sys.failed(made)) return yield* made
      for (const role of Endpoint.ROLES) {
        yield* Log.create(channelPaths.stream(role), { readers: [Endpoint.peerOf(role)], fileMode, dirMode }).pipe(
          Effect.tapError(() => Effect.sync(cleanup))
        )
      }
      const info: ConnectionInfo = { listener: listener.token, pid: process.pid, created: Date.now() }
      const written = Sys.attempt(
        () => Sys.createFile(Path.join(tmp, "connection.json"), JSON.stringify(info), fileMode),
        "Open",
        "cannot create a connection",
        raw
      )
      if (Sys.failed(written)) {
        cleanup()
        return yield* written
      }
      const held = Lock.tryTake(channelPaths.lock("frontend"), fileMode, `${process.pid} ${id}`, raw)
      if (Sys.failed(held) || held === "busy") {
        cleanup()
        return yield* (held === "busy" ? IpcError.make("AddressInUse", "connection lock busy", raw) : held)
      }
      const renamed = Sys.attempt(() => Fs.renameSync(tmp, connDir), "Open", "cannot publish the connection", raw)
      if (Sys.failed(renamed)) {
        Lock.release(held)
        cleanup()
        return yield* renamed
      }
      let backendSeen = false
      /**
       * Whether the listener this connection was made for still holds its lock; unknown (`NoSpace`) when this
       * process has no descriptor free to look (a lock that cannot be looked at for any other reason is not its).
       */
      const listenerAlive = (): boolean | IpcError.IpcError => {
        const listening = Lock.probe(paths.lock)
        if (Sys.failed(listening)) return listening.reason._tag === "NoSpace" ? listening : false
        return listening === "held" && Lock.session(paths.lock)?.token === listener.token
      }
      const opened = yield* Effect.acquireRelease(
        Endpoint.open({
          address: raw,
          dir: connDir,
          role: "frontend",
          heldLock: held,
          peerStatus: () => {
            const backendLock = Endpoint.channelPaths(connDir).lock("backend")
            const backend = Lock.probe(backendLock)
            if (Sys.failed(backend)) return backend
            if (backend === "held") {
              backendSeen = true
              return "present"
            }
            // the listener takes the backend's lock, naming itself in it, once its accept can no longer fail: a
            // lock seen held, or naming a holder, and let go is a backend gone (even one that came and went
            // between two of these checks). Looked at again after the name is read: a lock taken between the
            // two looks (made free, then locked and named) is held
            const named = () => Lock.session(backendLock) !== undefined && Lock.probe(backendLock) === "free"
            if (backendSeen || (backend === "free" && named())) return "absent"
            // not accepted yet: fine while the same listener is alive (a look that could not be made judges nothing)
            const alive = listenerAlive()
            return Sys.failed(alive) ? alive : alive ? "pending" : "absent"
          },
          // a connection the listener has not taken yet is left to it while it lives: it reads what was sent
          // (a sender that sent, closed and exited before the listener's scan lost its messages), then
          // removes the connection as it lets go; a dead listener's successor discards it
          onReleased: () => {
            // taken (and perhaps let go): its lock seen held, or naming its holder. A lock file that names
            // nobody is one the listener is taking (made, not locked yet): removed then, the connection was
            // lost with what we had sent in it, and the listener's accept failed
            const taken = backendSeen || Lock.session(Endpoint.channelPaths(connDir).lock("backend")) !== undefined
            if (taken || listenerAlive() === false) Endpoint.removeIfAbandoned(connDir)
          }
        }, options).pipe(
          Effect.tapError(() => Effect.sync(() => Fs.rmSync(connDir, { recursive: true, force: true })))
        ),
        (endpoint) => endpoint.channel.close
      )
      return opened.channel
    })

  return {
    schemes: ["file"],
    listen: (raw) =>
      Effect.flatMap(
        Effect.andThen(TransportOptions.optionsOk(options ?? {}, raw), parse(raw)),
        ({ dir, role }) => role === undefined ? listenDir(raw, dir) : listenRole(raw, dir, role)
      ),
    dial: (raw) =>
      Effect.flatMap(
        Effect.andThen(TransportOptions.optionsOk(options ?? {}, raw), parse(raw)),
        ({ dir, role }) => role === undefined ? dialDir(raw, dir) : FileChannel.open(dir, role, options, raw)
      )
  }
}

/**
 * Builds the file transport once this platform is known to have file locks
 * (`flock`): otherwise `UnsupportedPlatform` or `LibraryMissing` now, not at
 * the first `listen` or `dial`; instrumented (`Transport.instrument`: metrics
 * and spans). `layer` and the registry's `descriptor` both build the
 * transport with this.
 */
export const build = (options?: FileTransportOptions): Effect.Effect<Transport.TransportShape, IpcError.IpcError> =>
  Effect.suspend(() => {
    const invalid = TransportOptions.checkOptions(options) ??
      (options === undefined ? undefined : Sys.invalidModes(options))
    if (invalid !== undefined) return Effect.fail(invalid)
    const unavailable = Libc.available()
    if (unavailable !== undefined) return Effect.fail(unavailable)
    // sizes no channel could be opened with fail here, before anything listens or dials
    return Effect.as(Endpoint.optionsFit(options ?? {}), Transport.instrument(make(options)))
  })

/** The file transport as the `Transport` service (see `build`). */
export const layer = (options?: FileTransportOptions): Layer.Layer<Transport.Transport, IpcError.IpcError> =>
  Layer.effect(Transport.Transport, build(options))
