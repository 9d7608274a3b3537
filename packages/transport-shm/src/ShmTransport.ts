/**
 * The shared-memory transport, `shm://name`. A listener serves many clients;
 * each connection gets its own pair of rings (one segment per direction).
 *
 * The two ends meet over a Unix socket file in this user's private
 * rendezvous directory (`rendezvousDirectory`: mode 0700, owned by this user,
 * checked on every listen and dial), through `@effect-ipc/transport-pipe`.
 * Nobody else can create a name there, so nobody can take an address first
 * (squat it) or stand in for a listener; other users cannot even connect.
 * Peer credentials are checked on both sides all the same (`authorize`,
 * default: this user only), and each side learns the other's pid from the
 * kernel. The handshake:
 *
 * 1. the client creates its outbound ring and sends its token: on Linux a
 *    memory file sealed against shrinking and growing (`memfd`), which the
 *    server opens through `/proc/<client pid>/fd/<fd>`; elsewhere a named
 *    0600 segment;
 * 2. the server opens it (checking that it is sealed, owned by this user,
 *    and holds a ring header: magic, version, kind, size, and that the peer
 *    created it), creates its own ring and sends that token back;
 * 3. the client opens it the same way, lets go of its own ring's descriptor
 *    (or name) and says `ready`; the server does the same and says
 *    `accepted`: the client's `dial` succeeds only then, so a client is never
 *    connected to a listener that gave up on it.
 *
 * Nothing of a connection is ever in `/dev/shm` on Linux (elsewhere its
 * names are removed once both ends have mapped them), and a sealed ring
 * cannot be cut short under a mapping, so a peer cannot make us fault
 * (SIGBUS). The memory lives exactly as long as the two mappings, whatever
 * happens to the processes. The socket stays open as the doorbell and as the peer's pulse.
 *
 * @since 0.1.0
 */
import * as Address from "@effect-ipc/core/Address"
import type * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Observability from "@effect-ipc/core/Observability"
import * as RuntimeDir from "@effect-ipc/core/RuntimeDir"
import * as Transport from "@effect-ipc/core/Transport"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as UnixSocket from "@effect-ipc/transport-pipe/UnixSocket"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Crypto from "node:crypto"
import * as Path from "node:path"
import * as Channel from "./internal/channel.ts"
import * as Header from "./internal/header.ts"
import * as Libc from "./internal/libc.ts"
import * as Rendezvous from "./internal/rendezvous.ts"
import * as Ring from "./internal/ring.ts"
import * as Segments from "./internal/segments.ts"
import * as SegmentGc from "./SegmentGc.ts"
import * as ShmChannel from "./ShmChannel.ts"

/** Options of the shared-memory transport. */
export interface ShmTransportOptions extends ShmChannel.ShmChannelOptions {
  /** Decides whether a peer is served or dialled (default: only peers running as this process's user). */
  readonly authorize?: ((peer: IpcChannel.PeerInfo) => boolean) | undefined
  /** How long the two ends may take to set a connection up (default 5 s). */
  readonly handshakeTimeout?: Duration.Input | undefined
  /** Connections a listener sets up at once (default 64); past it, the one that has waited longest is dropped. */
  readonly maxPendingHandshakes?: number | undefined
  /**
   * The rendezvous directory, where listeners' sockets live (default: see
   * `defaultDirectory`). It must be a directory of this user with mode 0700;
   * it is created so when missing. Both ends must use the same one.
   */
  readonly directory?: string | undefined
  /**
   * The orphan collector (`SegmentGc.run`) that `makeScoped` and `layer` run
   * for as long as the transport lives: its options (default
   * `defaultCollector`), or `false` for none. `make` runs none.
   */
  readonly collector?: SegmentGc.RunOptions | false | undefined
}

/** `ShmTransportOptions` as configuration sets them (`IPC_OPTIONS`): `collector` on (default) or off. */
export interface ShmConfigOptions extends Omit<ShmTransportOptions, "collector"> {
  /** `false`: no orphan collector; `true` (default): `defaultCollector`. */
  readonly collector?: boolean | undefined
}

/** The collector of `makeScoped` and `layer` unless told otherwise: every 60 s from 60 s after start, over all of this user's segments. */
export const defaultCollector: SegmentGc.RunOptions = { delay: "60 seconds", schedule: SegmentGc.defaultSchedule }

/** Longest name in `shm://name`. */
export const maxNameLength = 80

const namePattern = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,79}$/

/** The `name` of `shm://name`. */
export const nameOf = (raw: string): Effect.Effect<string, IpcError.IpcError> =>
  Effect.flatMap(Address.parseFor(raw, ["shm"]), (address) => {
    if (address.rest.includes("/")) {
      return Effect.fail(IpcError.make("InvalidAddress", "shm:// names have no slashes: shm://name", raw))
    }
    if (address.rest.length > maxNameLength) {
      return Effect.fail(
        IpcError.make("NameTooLong", `shm:// names are at most ${maxNameLength} characters`, raw)
      )
    }
    return namePattern.test(address.rest)
      ? Effect.succeed(address.rest)
      : Effect.fail(
        IpcError.make(
          "InvalidAddress",
          "an shm:// name is 1-80 of A-Z a-z 0-9 . _ - and does not start with a dot",
          raw
        )
      )
  })

const uid = (): number | undefined => RuntimeDir.userId()

/**
 * The default rendezvous directory: `~/.effect-ipc-shm` when the home
 * directory (from the password database) is this user's and not writable by
 * others; else `$XDG_RUNTIME_DIR/effect-ipc-shm` when that is this user's
 * private directory; else `<tmp>/effect-ipc-shm-<uid>` (which another user
 * could create first: then `listen` and `dial` fail with `PermissionDenied`
 * naming its owner; set `directory`).
 */
export const defaultDirectory: () => string = Rendezvous.defaultDirectory

/**
 * The rendezvous directory (`directory`, or `defaultDirectory()`), created
 * with mode 0700 when missing. Anything else there — a symbolic link, a
 * file, a directory of another user or one that others can enter — is
 * `PermissionDenied`, naming what was found; nothing is changed.
 */
export const rendezvousDirectory: (directory?: string, address?: string) => Effect.Effect<string, IpcError.IpcError> =
  Rendezvous.directory

/**
 * The socket file of `shm://name` in `directory`: `<name>.sock`, or, when that
 * path would be too long for a socket, `~<hash of the name>.sock`.
 */
export const controlPath = (name: string, directory: string = defaultDirectory()): string => {
  const plain = Path.join(directory, `${name}.sock`)
  if (Buffer.byteLength(plain) <= UnixSocket.maxPathBytes) return plain
  return Path.join(directory, `~${Crypto.createHash("sha256").update(name).digest("hex").slice(0, 40)}.sock`)
}

/** Where the two ends of `shm://name` meet: the `unix://` address of `controlPath` in the checked rendezvous directory. */
export const controlAddress = (
  name: string,
  directory?: string,
  address?: string
): Effect.Effect<string, IpcError.IpcError> =>
  Effect.map(
    rendezvousDirectory(directory, address),
    (dir) => `unix://${controlPath(name, dir).split("/").map(encodeURIComponent).join("/")}`
  )

// ---- handshake messages ------------------------------------------------------------

const Hello = Schema.fromJsonString(Schema.Struct({
  effectIpcShm: Schema.Literal(1),
  ring: Schema.String,
  pid: Schema.Number
}))
const Welcome = Schema.fromJsonString(Schema.Struct({
  effectIpcShm: Schema.Literal(1),
  ring: Schema.optional(Schema.String),
  error: Schema.optional(Schema.String),
  // why, as an IpcError reason (earlier listeners sent only `error`)
  reason: Schema.optional(Schema.String)
}))
const Ready = Schema.fromJsonString(Schema.Struct({ effectIpcShm: Schema.Literal(1), ready: Schema.Literal(true) }))
const Accepted = Schema.fromJsonString(
  Schema.Struct({ effectIpcShm: Schema.Literal(1), accepted: Schema.Literal(true) })
)

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder()

const protocolError = (address: string) => (cause: { readonly message: string }) =>
  IpcError.make("Protocol", `bad shm:// handshake message: ${cause.message}`, address)

const sendMessage = <A>(
  control: IpcChannel.IpcChannel,
  codec: Schema.Codec<A, string>,
  value: A,
  address: string
): Effect.Effect<void, IpcError.IpcError> =>
  Schema.encodeEffect(codec)(value).pipe(
    Effect.mapError(protocolError(address)),
    Effect.flatMap((text) => control.send(textEncoder.encode(text)))
  )

const receiveMessage = <A>(
  control: IpcChannel.IpcChannel,
  codec: Schema.Codec<A, string>,
  address: string
): Effect.Effect<A, IpcError.IpcError> =>
  Effect.flatMap(
    control.receive,
    (bytes) =>
      Schema.decodeUnknownEffect(codec)(textDecoder.decode(bytes)).pipe(Effect.mapError(protocolError(address)))
  )

// ---- rings ------------------------------------------------------------------------------

/**
 * Creates an outbound ring segment; when the scope closes it is let go of
 * (descriptor closed, or name removed) if the handshake did not do it first,
 * and unmapped.
 */
const createRing = (
  capacity: number,
  address: string
): Effect.Effect<Segments.Outgoing, IpcError.IpcError, Scope.Scope> =>
  Effect.acquireRelease(
    Segments.createOutgoing("r", Header.HEADER_SIZE + capacity, address).pipe(
      Effect.tap((ring) =>
        Effect.sync(() => {
          Ring.initialiseSegment(ring.mapping.buffer, capacity)
        })
      )
    ),
    (ring) =>
      Effect.sync(() => {
        ring.handedOver()
        ring.mapping.release()
      })
  )

/**
 * Maps the peer's ring, checking that it is a sealed segment of this user
 * holding a ring that its creator, the peer, made.
 */
const openRing = (
  token: string,
  peer: IpcChannel.PeerInfo,
  address: string
): Effect.Effect<Libc.Mapping, IpcError.IpcError, Scope.Scope> =>
  Effect.gen(function*() {
    const mapped = yield* Effect.acquireRelease(
      Segments.openIncoming(token, peer.pid, Segments.ringSizes(token, address), address),
      (opened) => Effect.sync(() => opened.mapping.release())
    )
    const header = Header.view(mapped.mapping.buffer)
    const snapshot = yield* Header.validate(header, mapped.size, Header.Kind.ring, token).pipe(
      Effect.mapError((error) => new IpcError.IpcError({ reason: error.reason, detail: error.detail, address }))
    )
    if (Ring.capacityOf(header.words, snapshot.payloadLength) === undefined) {
      return yield* IpcError.make("Protocol", `ring segment ${token} has a bad capacity`, address)
    }
    if (snapshot.creator.pid !== peer.pid) {
      return yield* IpcError.make(
        "Protocol",
        `ring segment ${token} was made by pid ${snapshot.creator.pid}, not by the peer (pid ${peer.pid})`,
        address
      )
    }
    return mapped.mapping
  })

// ---- the transport -------------------------------------------------------------------------

/** The largest message on a control socket (the handshake's, a segment's name, a doorbell). */
const CONTROL_FRAME_LIMIT = 64 * 1024

/** Connections a listener sets up at once unless `maxPendingHandshakes` says otherwise. */
export const DEFAULT_MAX_PENDING_HANDSHAKES = 64

/** The default policy: the peer's uid is known and it is this user's. */
const sameUser = (peer: IpcChannel.PeerInfo): boolean => peer.uid !== undefined && peer.uid === uid()

/**
 * `InvalidOption` for a `ringSize` that no ring can have: beyond the largest
 * ring (`Ring.MAX_CAPACITY`, 1 GiB; `1e15` or `Infinity` was a 1 GiB ring,
 * unsaid), or not a whole number of bytes of at least 1 (the generic size check
 * offered `Infinity`, which is refused); else undefined.
 */
const ringSizeInvalid = (options: ShmTransportOptions, address?: string): IpcError.IpcError | undefined => {
  const ringSize: unknown = typeof options === "object" && options !== null ? options.ringSize : undefined
  if (ringSize === undefined) return undefined
  if (typeof ringSize === "number" && ringSize > Ring.MAX_CAPACITY) {
    return IpcError.make(
      "InvalidOption",
      `ringSize ${ringSize} is beyond the largest ring (${Ring.MAX_CAPACITY} bytes, 1 GiB)`,
      address
    )
  }
  return typeof ringSize === "number" && Number.isSafeInteger(ringSize) && ringSize >= 1
    ? undefined
    : IpcError.make(
      "InvalidOption",
      `ringSize ${
        typeof ringSize === "string" ? JSON.stringify(ringSize) : String(ringSize)
      } is not a whole number of bytes from 1 to ${Ring.MAX_CAPACITY} (1 GiB; rounded up to a power of two from 4 KiB)`,
      address
    )
}

/** `InvalidOption` for a `ringSize` no ring can have (`ringSizeInvalid`), then `optionsOk`. */
const shmOptionsOk = (options: ShmTransportOptions, address: string): Effect.Effect<void, IpcError.IpcError> => {
  const invalid = ringSizeInvalid(options, address)
  return invalid === undefined ? TransportOptions.optionsOk(options, address) : Effect.fail(invalid)
}

/** Makes the shared-memory transport (`shm://name`), bare: nothing runs beside it (see `makeScoped`). */
export const make = (options: ShmTransportOptions = {}): Transport.TransportShape => {
  // options that are not an object (a caller without types): every listen and dial fails with InvalidOption
  const refused = TransportOptions.refusedIfNotAnObject(["shm"], options)
  if (refused !== undefined) return refused
  const authorize = options.authorize ?? sameUser
  const capacity = Ring.capacityFor(options.ringSize ?? ShmChannel.DEFAULT_RING_SIZE)
  // a bad one is refused by listen and dial (`optionsOk`) before this is used
  const timeout = Duration.millis(TransportOptions.millisOf(options.handshakeTimeout ?? "5 seconds") ?? 5000)
  // no heartbeats: a local socket reports a dead peer at once. Its messages are the handshake's JSON and
  // one-byte doorbells: a peer's larger frame is refused as its header comes, not buffered (up to 256 MiB)
  const sockets = UnixSocket.make({ authorize, maxFrameSize: CONTROL_FRAME_LIMIT })

  /**
   * One side of the handshake over a fresh control connection. The
   * connection's rings and reader live in a scope of their own, forked from
   * `parent`: closing the channel closes it, and so does closing `parent`.
   */
  const handshake = (
    control: IpcChannel.IpcChannel,
    address: string,
    role: "client" | "server",
    parent: Scope.Scope
  ): Effect.Effect<ShmChannel.ShmChannel, IpcError.IpcError> =>
    Effect.gen(function*() {
      const scope = yield* Scope.fork(parent)
      const steps = Effect.gen(function*() {
        let inbound: Libc.Mapping
        let outbound: Segments.Outgoing
        if (role === "client") {
          outbound = yield* createRing(capacity, address)
          yield* sendMessage(control, Hello, { effectIpcShm: 1, ring: outbound.token, pid: process.pid }, address)
          const welcome = yield* receiveMessage(control, Welcome, address)
          if (welcome.ring === undefined) {
            // a listener out of memory or descriptors says so; whatever else refused us is the handshake's failure
            const reason = welcome.reason === "NoSpace" ? "NoSpace" : "Protocol"
            return yield* IpcError.make(reason, `the listener refused: ${welcome.error ?? "no reason"}`, address)
          }
          inbound = yield* openRing(welcome.ring, control.peer, address)
          outbound.handedOver()
          yield* sendMessage(control, Ready, { effectIpcShm: 1, ready: true }, address)
          // connected only once the listener has the connection (it cannot have rung us before)
          yield* receiveMessage(control, Accepted, address)
        } else {
          const hello = yield* receiveMessage(control, Hello, address)
          inbound = yield* openRing(hello.ring, control.peer, address)
          outbound = yield* createRing(capacity, address)
          yield* sendMessage(control, Welcome, { effectIpcShm: 1, ring: outbound.token }, address)
          yield* receiveMessage(control, Ready, address)
          outbound.handedOver()
        }
        return yield* Channel.make(
          { address, peer: control.peer, outbound: outbound.mapping, inbound, control },
          scope,
          options
        )
      }).pipe(
        Scope.provide(scope),
        Effect.timeoutOrElse({
          duration: timeout,
          orElse: () =>
            Effect.fail(
              IpcError.make("Timeout", `the shm:// handshake took longer than ${Duration.format(timeout)}`, address)
            )
        })
      )
      return yield* steps.pipe(
        // a client learns that it is connected, or why it was refused
        Effect.tap(() =>
          role === "server" ? sendMessage(control, Accepted, { effectIpcShm: 1, accepted: true }, address) : Effect.void
        ),
        Effect.tapError((error) =>
          role === "server"
            ? Effect.ignore(
              sendMessage(
                control,
                Welcome,
                { effectIpcShm: 1, error: error.message, reason: error.reason._tag },
                address
              )
            )
            : Effect.void
        ),
        Effect.onExit((exit) =>
          Exit.isSuccess(exit) ? Effect.void : Scope.close(scope, exit).pipe(Effect.andThen(control.close))
        )
      )
    })

  return {
    schemes: ["shm"],
    listen: (address) =>
      Effect.gen(function*() {
        yield* shmOptionsOk(options, address)
        const name = yield* nameOf(address)
        yield* Libc.available
        const listenerScope = yield* Effect.scope
        const controls = yield* sockets.listen(yield* controlAddress(name, options.directory, address)).pipe(
          Effect.mapError((error) => new IpcError.IpcError({ reason: error.reason, detail: error.detail, address }))
        )
        const noteRefusal = yield* Observability.refusals(address)
        const acceptor = yield* Transport.makeAcceptor(address, { refused: noteRefusal })
        const open = new Set<ShmChannel.ShmChannel>()
        // connections still setting up, oldest first: a flood of silent ones holds at most maxPending descriptors
        const maxPending = options.maxPendingHandshakes ?? DEFAULT_MAX_PENDING_HANDSHAKES
        const pending = new Map<IpcChannel.IpcChannel, Fiber.Fiber<void>>()
        yield* Effect.addFinalizer(() =>
          Effect.gen(function*() {
            yield* acceptor.shutdown
            yield* Effect.forEach(open, (channel) => channel.close, { concurrency: "unbounded", discard: true })
          })
        )
        const serveOne = (control: IpcChannel.IpcChannel) =>
          Effect.gen(function*() {
            const exit = yield* Effect.exit(handshake(control, address, "server", listenerScope)).pipe(
              Effect.ensuring(Effect.sync(() => pending.delete(control)))
            )
            if (Exit.isFailure(exit)) return yield* Effect.logDebug("an shm:// handshake failed", exit.cause)
            const channel = exit.value
            open.add(channel)
            yield* acceptor.admit(channel)
            yield* channel.closed
            open.delete(channel)
          })
        // over the cap, the connection that has waited longest goes (its handshake interrupted, its socket closed)
        const dropOldest = Effect.suspend(() => {
          const oldest = pending.entries().next().value
          if (oldest === undefined) return Effect.void
          const [control, fiber] = oldest
          pending.delete(control)
          const detail =
            `dropped pid ${control.peer.pid}: the oldest of ${maxPending} pending handshakes (maxPendingHandshakes)`
          return Effect.andThen(
            Effect.forkIn(Fiber.interrupt(fiber), listenerScope),
            noteRefusal(IpcError.make("PeerRejected", detail, address))
          )
        })
        yield* controls.accept.pipe(
          Effect.flatMap((control) =>
            Effect.gen(function*() {
              if (pending.size >= maxPending) yield* dropOldest
              const fiber = yield* Effect.forkIn(serveOne(control), listenerScope, { startImmediately: false })
              pending.set(control, fiber)
            })
          ),
          Effect.forever,
          Effect.ignore,
          Effect.forkIn(listenerScope)
        )
        return acceptor.listener
      }),
    dial: (address) =>
      Effect.gen(function*() {
        yield* shmOptionsOk(options, address)
        const name = yield* nameOf(address)
        yield* Libc.available
        const control = yield* sockets.dial(yield* controlAddress(name, options.directory, address)).pipe(
          Effect.mapError((error) =>
            error.reason._tag === "NotFound"
              ? IpcError.make("NotFound", "no listener serves this name", address)
              : new IpcError.IpcError({ reason: error.reason, detail: error.detail, address })
          )
        )
        if (!authorize(control.peer)) {
          yield* control.close
          return yield* IpcError.make(
            "PeerRejected",
            `the listener runs as uid ${control.peer.uid} (pid ${control.peer.pid})`,
            address
          )
        }
        return yield* handshake(control, address, "client", yield* Effect.scope)
      })
  }
}

/**
 * Makes the shared-memory transport with the orphan collector (`collector`)
 * running beside it for as long as the scope lives, instrumented
 * (`Transport.instrument`: metrics and spans). `layer` and the registry's
 * `descriptor` are both built by it.
 */
export const makeScoped = (
  options: ShmTransportOptions = {}
): Effect.Effect<Transport.TransportShape, IpcError.IpcError, Scope.Scope> =>
  Effect.gen(function*() {
    // a ring no listen or dial would make (`IPC_OPTIONS_RING_SIZE="2 GiB"`) fails the build, not the first listen
    const badRing = ringSizeInvalid(options)
    if (badRing !== undefined) return yield* badRing
    // the transport's own options first (a bad `directory` is the transport's, not the collector's)
    yield* TransportOptions.layerOptionsOk(options)
    if (options.directory !== undefined && Rendezvous.resolved(options.directory) === undefined) {
      return yield* IpcError.make("InvalidOption", `directory ${options.directory} is not an absolute path`)
    }
    const collector = options.collector
    if (collector !== undefined && collector !== false) {
      const invalid = SegmentGc.invalidRunOptions(collector)
      if (invalid !== undefined) return yield* invalid
    }
    if (collector !== false) {
      yield* SegmentGc.run({
        prefix: collector?.prefix,
        // the sockets of this transport's listeners are in its rendezvous directory (unless the collector is told)
        directory: collector?.directory ?? options.directory,
        delay: collector?.delay ?? defaultCollector.delay,
        schedule: collector?.schedule ?? defaultCollector.schedule
      })
    }
    return Transport.instrument(make(options))
  })

/** The shared-memory transport as the `Transport` service (`makeScoped`: with the orphan collector). */
export const layer = (options?: ShmTransportOptions): Layer.Layer<Transport.Transport, IpcError.IpcError> =>
  Layer.effect(Transport.Transport, makeScoped(options))
