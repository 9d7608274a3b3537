/**
 * The shared-memory transport, `shm://name`. A listener serves many clients;
 * each connection gets its own pair of rings (one segment per direction).
 *
 * The two ends meet over a Unix socket named after the address (Linux: the
 * abstract socket `@effect-ipc-shm.<uid>.<name>`, which leaves no file behind
 * even after `kill -9`; elsewhere `pipe://effect-ipc-shm.<name>` in the
 * user's private runtime directory), through `@effect-ipc/transport-pipe`:
 * peers running as another user are refused on both sides, and each side
 * learns the other's pid from the kernel. The handshake:
 *
 * 1. the client creates its outbound ring (mode 0600) and sends its name;
 * 2. the server maps it (checking magic, version, kind, size and that the
 *    peer created it), creates its own ring and sends that name back;
 * 3. the client maps it, removes its own ring's name (both ends have it
 *    mapped now) and says `ready`; the server removes its ring's name and
 *    says `accepted`: the client's `dial` succeeds only then, so a client is
 *    never connected to a listener that gave up on it.
 *
 * From then on nothing of the connection is left in `/dev/shm`: the memory
 * lives exactly as long as the two mappings, whatever happens to the
 * processes. The socket stays open as the doorbell and as the peer's pulse.
 *
 * @since 0.1.0
 */
import * as Address from "@effect-ipc/core/Address"
import type * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Transport from "@effect-ipc/core/Transport"
import * as UnixSocket from "@effect-ipc/transport-pipe/UnixSocket"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Channel from "./internal/channel.ts"
import * as Header from "./internal/header.ts"
import * as Libc from "./internal/libc.ts"
import * as Ring from "./internal/ring.ts"
import * as Segments from "./internal/segments.ts"
import * as ShmChannel from "./ShmChannel.ts"

/** Options of the shared-memory transport. */
export interface ShmTransportOptions extends ShmChannel.ShmChannelOptions {
  /** Decides whether a peer is served or dialled (default: only peers running as this process's user). */
  readonly authorize?: ((peer: IpcChannel.PeerInfo) => boolean) | undefined
  /** How long the two ends may take to set a connection up (default 5 s). */
  readonly handshakeTimeout?: Duration.Input | undefined
}

/** Longest name in `shm://name`. */
export const maxNameLength = 80

const namePattern = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,79}$/
const ringNamePattern = /^eipc-r-[a-z0-9-]{1,40}$/

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
      : Effect.fail(IpcError.make("InvalidAddress", "an shm:// name is 1-80 of A-Z a-z 0-9 . _ -", raw))
  })

/** Where the two ends of `shm://name` meet: an abstract Unix socket on Linux, a `pipe://` socket elsewhere. */
export const controlAddress = (name: string): string =>
  process.platform === "linux"
    ? `unix:@effect-ipc-shm.${process.getuid?.() ?? 0}.${name}`
    : `pipe://effect-ipc-shm.${name}`

// ---- handshake messages ------------------------------------------------------------

const Hello = Schema.fromJsonString(Schema.Struct({
  effectIpcShm: Schema.Literal(1),
  ring: Schema.String,
  pid: Schema.Number
}))
const Welcome = Schema.fromJsonString(Schema.Struct({
  effectIpcShm: Schema.Literal(1),
  ring: Schema.optional(Schema.String),
  error: Schema.optional(Schema.String)
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
 * Creates an outbound ring segment; it is removed from `/dev/shm` when the
 * scope closes if the handshake did not remove it first, and unmapped then.
 */
const createRing = (
  capacity: number,
  address: string
): Effect.Effect<Segments.Mapped, IpcError.IpcError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.flatMap(
      Effect.sync(() => Segments.freshName("r")),
      (name) => Segments.createMapped(name, Header.HEADER_SIZE + capacity, { address })
    ).pipe(
      Effect.tap((mapped) =>
        Effect.sync(() => {
          const header = Header.view(mapped.mapping.buffer)
          Header.initialise(header, {
            kind: Header.Kind.ring,
            ttlMillis: 0,
            payloadLength: capacity,
            createdAt: Date.now()
          })
          Ring.initialise(header.words, capacity)
          Header.publish(header)
        })
      )
    ),
    (ring) => Effect.sync(() => ring.mapping.release()).pipe(Effect.andThen(Effect.ignore(Libc.shmUnlink(ring.name))))
  )

/** Maps the peer's ring, checking that it is a ring its creator `peer` made. */
const openRing = (
  name: string,
  peer: IpcChannel.PeerInfo,
  address: string
): Effect.Effect<Libc.Mapping, IpcError.IpcError, Scope.Scope> =>
  Effect.gen(function*() {
    if (!ringNamePattern.test(name)) {
      return yield* IpcError.make("Protocol", `the peer named an invalid ring segment "${name}"`, address)
    }
    const { header, mapped } = yield* Effect.acquireRelease(
      Segments.openWithHeader(name, Header.Kind.ring, address),
      (opened) => Effect.sync(() => opened.mapped.mapping.release())
    )
    const snapshot = Header.snapshot(header)
    if (Ring.capacityOf(header.words, snapshot.payloadLength) === undefined) {
      return yield* IpcError.make("Protocol", `ring segment ${name} has a bad capacity`, address)
    }
    if (peer.pid !== undefined && snapshot.creator.pid !== peer.pid) {
      return yield* IpcError.make(
        "Protocol",
        `ring segment ${name} was made by pid ${snapshot.creator.pid}, not by the peer (pid ${peer.pid})`,
        address
      )
    }
    return mapped.mapping
  })

// ---- the transport -------------------------------------------------------------------------

const sameUser = (peer: IpcChannel.PeerInfo): boolean => peer.uid === undefined || peer.uid === process.getuid?.()

/** Makes the shared-memory transport (`shm://name`). */
export const make = (options: ShmTransportOptions = {}): Transport.TransportShape => {
  const authorize = options.authorize ?? sameUser
  const capacity = Ring.capacityFor(options.ringSize ?? ShmChannel.DEFAULT_RING_SIZE)
  const timeout = Duration.fromInputUnsafe(options.handshakeTimeout ?? "5 seconds")
  // no heartbeats: a local socket reports a dead peer at once
  const sockets = UnixSocket.make({ authorize })

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
        let outbound: Segments.Mapped
        if (role === "client") {
          outbound = yield* createRing(capacity, address)
          yield* sendMessage(control, Hello, { effectIpcShm: 1, ring: outbound.name, pid: process.pid }, address)
          const welcome = yield* receiveMessage(control, Welcome, address)
          if (welcome.ring === undefined) {
            return yield* IpcError.make("Protocol", `the listener refused: ${welcome.error ?? "no reason"}`, address)
          }
          inbound = yield* openRing(welcome.ring, control.peer, address)
          yield* Effect.ignore(Libc.shmUnlink(outbound.name))
          yield* sendMessage(control, Ready, { effectIpcShm: 1, ready: true }, address)
          // connected only once the listener has the connection (it cannot have rung us before)
          yield* receiveMessage(control, Accepted, address)
        } else {
          const hello = yield* receiveMessage(control, Hello, address)
          inbound = yield* openRing(hello.ring, control.peer, address)
          outbound = yield* createRing(capacity, address)
          yield* sendMessage(control, Welcome, { effectIpcShm: 1, ring: outbound.name }, address)
          yield* receiveMessage(control, Ready, address)
          yield* Effect.ignore(Libc.shmUnlink(outbound.name))
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
            ? Effect.ignore(sendMessage(control, Welcome, { effectIpcShm: 1, error: error.message }, address))
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
        const name = yield* nameOf(address)
        yield* Libc.available
        const listenerScope = yield* Effect.scope
        const controls = yield* sockets.listen(controlAddress(name))
        const acceptor = yield* Transport.makeAcceptor(address)
        const open = new Set<ShmChannel.ShmChannel>()
        yield* Effect.addFinalizer(() =>
          Effect.gen(function*() {
            acceptor.end()
            yield* Effect.forEach(open, (channel) => channel.close, { concurrency: "unbounded", discard: true })
          })
        )
        const serveOne = (control: IpcChannel.IpcChannel) =>
          Effect.gen(function*() {
            const exit = yield* Effect.exit(handshake(control, address, "server", listenerScope))
            if (Exit.isFailure(exit)) return yield* Effect.logDebug("an shm:// handshake failed", exit.cause)
            const channel = exit.value
            open.add(channel)
            acceptor.offer(channel)
            yield* channel.closed
            open.delete(channel)
          })
        yield* controls.accept.pipe(
          Effect.flatMap((control) => Effect.forkIn(serveOne(control), listenerScope)),
          Effect.forever,
          Effect.ignore,
          Effect.forkIn(listenerScope)
        )
        return acceptor.listener
      }),
    dial: (address) =>
      Effect.gen(function*() {
        const name = yield* nameOf(address)
        yield* Libc.available
        const control = yield* sockets.dial(controlAddress(name)).pipe(
          Effect.mapError((error) =>
            error.reason === "NotFound"
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

/** The shared-memory transport as the `Transport` service. */
export const layer = (options?: ShmTransportOptions): Layer.Layer<Transport.Transport> =>
  Layer.succeed(Transport.Transport, make(options))
