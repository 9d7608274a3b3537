/**
 * The effect-ipc transport over nng: `listen` / `dial` at `nng+ipc://`,
 * `nng+tcp://`, `nng+inproc://`, `nng+ws://` or `nng+abstract://` addresses,
 * or over TLS at `nng+tls+tcp://` and `nng+wss://` (`tls`: see `NngTls`),
 * yielding `IpcChannel`s with the semantics of every effect-ipc transport
 * (whole messages in order, back-pressure, graceful close vs. lost peer,
 * typed errors), so typed RPC (`IpcRpc`) and the conformance suite run over it.
 *
 * nng's pair protocol connects one peer per socket, so every conversation gets
 * a pair socket of its own. The listener's address is a small rendezvous
 * (nng's req/rep): a client asks it for a conversation, the listener opens a
 * pair socket at a fresh address (a free port on the same host for tcp, a
 * fresh path under the same port for ws, a random name in a private 0700
 * directory beside the lobby for ipc, a random suffix for inproc) and answers with it and a one-time
 * token; the client dials that address, presents the token and gets `ready`.
 * The ipc directory goes when the listener closes; one that a killed listener
 * left is removed by the next listener at the same path (`internal/conversations.ts`).
 * Both sides then speak the channel format of `internal/channel.ts` (a kind
 * byte before each message).
 *
 * A listener allocates nothing for a rendezvous request that is not exactly
 * the hello, keeps at most `maxPendingHandshakes` conversations waiting for
 * their clients (each for at most `handshakeTimeout`) and answers the others
 * "busy" (the client asks again with backoff, within its `connectTimeout`):
 * a flood cannot take its descriptors. One rendezvous connection holds at
 * most one of those conversations: hellos it sends while its conversation
 * waits are dropped, so a few connections cannot take every place. The
 * listener looks over its rendezvous connections in nng's statistics (no JS
 * callback runs on nng's threads) and closes those of refused peers and those
 * that have not said the hello within `handshakeTimeout`.
 *
 * Over ipc, `listen` takes its path only when nothing is there or a stale
 * socket of this user is (transport-pipe's rule): anything else is
 * `AddressInUse` and left untouched. The socket file is created with mode 0600
 * (nng sets the mode before it listens), and a peer running as another user
 * (neither this user nor root), or whose credentials cannot be read, is
 * refused on both sides unless `authorize` says otherwise. tcp and ws carry no credentials: anyone who
 * reaches the port can open a conversation (see SECURITY.md). Over tls+tcp and wss the rendezvous and
 * every conversation run over TLS with the same `tls` options: with a `caFile` on the listener, only
 * clients holding a certificate of that CA get past the handshake (mutual authentication).
 *
 * @since 0.1.0
 */
import * as Address from "@effect-ipc/core/Address"
import * as Framing from "@effect-ipc/core/Framing"
import type * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Observability from "@effect-ipc/core/Observability"
import * as Transport from "@effect-ipc/core/Transport"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as SocketPath from "@effect-ipc/transport-pipe/SocketPath"
import * as UnixSocket from "@effect-ipc/transport-pipe/UnixSocket"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import * as Channel from "./internal/channel.ts"
import * as Conversations from "./internal/conversations.ts"
import * as Nng from "./internal/nng.ts"
import * as Socket from "./internal/socket.ts"
import * as NngAddress from "./NngAddress.ts"
import type * as NngTls from "./NngTls.ts"

/** Options of the nng transport. */
export interface NngTransportOptions {
  /** Largest message a channel sends or accepts, in bytes (default 256 MiB). */
  readonly maxMessageSize?: number | undefined
  /** Messages nng queues for sending (default 16); beyond, messages are queued and coalesced. */
  readonly sendBuffer?: number | undefined
  /** Bytes queued beyond nng's buffers above which `send` waits (default 4 MiB). */
  readonly highWaterMark?: number | undefined
  /** A `send` that waits longer than this for the peer to read fails the channel with `Timeout` (default: no limit). */
  readonly writeTimeout?: Duration.Input | undefined
  /** Messages nng queues on receipt before it stops reading from the peer (default 16). */
  readonly recvBuffer?: number | undefined
  /** Incoming messages buffered by a channel before it stops reading (default 4096). */
  readonly maxBufferedMessages?: number | undefined
  /** Incoming bytes buffered by a channel before it stops reading (default 8 MiB). */
  readonly maxBufferedBytes?: number | undefined
  /** How long a dial may take, rendezvous and handshake included (default 10 s). */
  readonly connectTimeout?: Duration.Input | undefined
  /** How long `close` waits for the peer to acknowledge (default 2 s). */
  readonly closeTimeout?: Duration.Input | undefined
  /**
   * Conversations a listener holds open for clients that asked for one and
   * have not completed the handshake yet (default 64). Beyond, a client is
   * told the listener is busy and asks again (with backoff, within its
   * `connectTimeout`); nothing is allocated for it.
   */
  readonly maxPendingHandshakes?: number | undefined
  /** How long a listener waits for a client to come to its conversation (default 5 s). */
  readonly handshakeTimeout?: Duration.Input | undefined
  /** Permission bits of ipc socket files (default 0o600: this user only). */
  readonly mode?: number | undefined
  /**
   * Decides whether an ipc peer (server or client) is accepted, from its
   * credentials (default: processes of this user or root). tcp and ws carry
   * no credentials: there `authorize` is not consulted.
   */
  readonly authorize?: ((peer: IpcChannel.PeerInfo) => boolean) | undefined
  /**
   * Certificates for `nng+tls+tcp://` and `nng+wss://` (see `NngTls`): a
   * listener needs `certFile` (and, to require client certificates, `caFile`);
   * a dialer needs `caFile` to trust the server (and `certFile` when the
   * server requires client certificates).
   */
  readonly tls?: NngTls.TlsOptions | undefined
}

const Hello = Schema.Struct({ v: Schema.Literal(1) })
const Welcome = Schema.Union([
  Schema.Struct({ v: Schema.Literal(1), url: Schema.String, token: Schema.String }),
  Schema.Struct({ v: Schema.Literal(1), refused: Schema.String }),
  // the listener has `maxPendingHandshakes` under way: ask again shortly
  Schema.Struct({ v: Schema.Literal(1), busy: Schema.Literal(true) })
])
const WelcomeJson = Schema.fromJsonString(Welcome)
const decodeWelcome = Schema.decodeUnknownEffect(WelcomeJson)
const encoder = new TextEncoder()
const decoder = new TextDecoder()
const helloBytes = encoder.encode(JSON.stringify(Hello.make({ v: 1 })))

/** True when a rendezvous request is exactly the hello; anything else is dropped unanswered. */
const isHello = (body: Uint8Array): boolean =>
  body.byteLength === helloBytes.byteLength && body.every((byte, i) => byte === helloBytes[i])

/**
 * The default `authorize` (consulted over ipc and abstract only): a peer of
 * this user (as of `listen` or `dial`) or root; a peer whose credentials
 * could not be read is refused.
 */
export const sameUserOrRoot: (peer: IpcChannel.PeerInfo) => boolean = UnixSocket.sameUserOrRoot

const hasCredentials = (address: NngAddress.NngAddress) =>
  address.transport === "ipc" || address.transport === "abstract"

/**
 * Where the listener at `lobby` opens the pair socket of one conversation;
 * over ipc, in `privateDir` (see `conversationDir`).
 */
const conversationUrl = (
  lobby: NngAddress.NngAddress,
  port: number | undefined,
  name: string,
  privateDir: string | undefined
): string => {
  switch (lobby.transport) {
    case "ipc":
      return `ipc://${Address.encodePath(Path.join(privateDir ?? Path.dirname(lobby.path), name))}`
    case "abstract":
      return `abstract://${lobby.path}.${name}`
    case "inproc":
      return `inproc://${lobby.path}#${name}`
    case "tcp":
    case "tls+tcp":
      return `${lobby.transport}://${lobby.host}:0`
    case "ws":
    case "wss":
      return `${lobby.transport}://${lobby.host}:${port ?? lobby.port}${lobby.path.replace(/\/$/, "")}/${name}`
  }
}

/**
 * The directory, beside an ipc lobby, of its conversations' socket files
 * (see `internal/conversations.ts`), removed when the listener closes (if it
 * is still the one made). Where other users could rename or replace what is
 * in the lobby's directory (not this user's or root's, or writable by others
 * and not sticky), listen fails `PermissionDenied` rather than make it there.
 * Abstract names would be listed in the world-readable /proc/net/unix for
 * anyone to connect to first.
 */
const conversationDir = (lobby: NngAddress.NngAddress, mode: number, raw: string) =>
  Effect.acquireRelease(
    Effect.try({
      try: () => Conversations.make(lobby.path, mode),
      catch: (cause) => IpcError.fromSystemError(cause, "Open", "cannot make the conversations' directory", raw)
    }),
    (dir) => Effect.sync(() => Conversations.remove(dir))
  )

/** Removes what listeners at `lobby` killed earlier left of their conversations (run under the path's lock). */
const sweepConversations = (lobby: NngAddress.NngAddress) =>
  Effect.suspend(() => {
    const removed = Conversations.sweep(lobby.path)
    return removed.length === 0
      ? Effect.void
      : Effect.logDebug(`removed the conversations' directories of dead listeners: ${removed.join(", ")}`)
  })

/**
 * Over ipc, the private runtime directory (transport-pipe's, as `pipe://`
 * uses it: the default address is there) is made, or checked to be this
 * user's and private, before a lobby listens in it.
 */
const ensureRuntimeDir = (lobby: NngAddress.NngAddress, raw: string) =>
  Effect.suspend(() =>
    lobby.transport === "ipc" &&
      Path.resolve(Path.dirname(lobby.path)) === Path.resolve(SocketPath.runtimeDirOn(SocketPath.currentHost()))
      ? Effect.asVoid(SocketPath.runtimeDir(raw))
      : Effect.void
  )

/** The address a client dials for a conversation: the listener's url, on the host the client used. */
const clientUrl = (
  lobby: NngAddress.NngAddress,
  welcome: NngAddress.NngAddress
): string =>
  NngAddress.isNetwork(welcome.transport)
    ? `${welcome.transport}://${lobby.host}:${welcome.port}${welcome.path}`
    : welcome.raw

const peerOf = (socket: Socket.Socket, pipe: number, address: string): IpcChannel.PeerInfo => ({
  ...socket.nng.pipePeer(pipe),
  description: address
})

const refuse = (peer: IpcChannel.PeerInfo, address: string) =>
  IpcError.make("PeerRejected", `refused a peer running as uid ${peer.uid} (pid ${peer.pid ?? "unknown"})`, address)

/**
 * True when the peer of `pipe` is gone, its credentials with it (killed after
 * it spoke): it left, and is not refused as a peer whose credentials cannot be read.
 */
const isGone = (socket: Socket.Socket, pipe: number, peer: IpcChannel.PeerInfo) =>
  peer.uid === undefined && !socket.nng.pipeAlive(pipe)

/** The error of a dial whose listener left as it answered. */
const listenerGone = (address: string) =>
  IpcError.make("ConnectionLost", "the listener went away as it answered", address)

/** The owner of the socket file at `path`, if there is one. */
const socketOwner = (path: string): number | undefined => {
  try {
    const stat = Fs.lstatSync(path)
    return stat.isSocket() ? stat.uid : undefined
  } catch {
    return undefined
  }
}

/** The listener was busy, or the conversation it offered was gone when the client came to it: ask again. */
class Vanished extends Data.TaggedError("Vanished")<{ readonly error: IpcError.IpcError }> {}

/**
 * nng reports a socket file this user may not connect to as unreachable:
 * say `PermissionDenied` when that is what the file's mode says.
 */
const unreachable = (address: NngAddress.NngAddress, error: IpcError.IpcError): IpcError.IpcError => {
  if (error.reason._tag !== "NotFound") return error
  try {
    Fs.accessSync(address.path, Fs.constants.W_OK)
    return error
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code
    if (code === "ENOENT") {
      // nng says "Connection refused": say what is missing, in the terms of the path given
      return IpcError.make(
        "NotFound",
        Socket.missingDirectory(address.path)
          ? `cannot connect: directory ${Path.dirname(address.path)} does not exist`
          : `cannot connect: nothing listens at ${address.path}: there is no socket file`,
        address.raw
      )
    }
    return code === "EACCES"
      ? new IpcError.IpcError({
        reason: "PermissionDenied",
        detail: `this user may not connect to the socket file ${address.path} (its mode or owner forbids it)`,
        address: address.raw,
        errno: "EACCES",
        cause
      })
      : error
  }
}

/** True when a plain TCP connection to the host and port of `address` opens within `timeout` ms. */
const tcpReachable = (address: NngAddress.NngAddress, timeout: number) =>
  Effect.callback<boolean>((resume) => {
    const socket = Net.connect({ host: address.host?.replace(/^\[|\]$/g, "") ?? "", port: address.port ?? 0 })
    const done = (reachable: boolean) => {
      socket.destroy()
      resume(Effect.succeed(reachable))
    }
    socket.setTimeout(timeout, () => done(false))
    socket.once("connect", () => done(true))
    socket.once("error", () => done(false))
    return Effect.sync(() => void socket.destroy())
  })

/**
 * A TLS dial that nng counts as neither refused nor timed out nor an
 * authentication failure: a server that refuses a client's certificate (or
 * its lack of one) closes the connection mid-handshake, which nng's dialer
 * counts with unreachable hosts. When a plain TCP connection to the same port
 * opens, it was the handshake: `PeerRejected`.
 */
const tlsRefusal = (address: NngAddress.NngAddress, timeout: number) => (error: IpcError.IpcError) =>
  NngAddress.isTls(address.transport) && error.errno === "NNG_EUNREACHABLE"
    ? Effect.flatMap(tcpReachable(address, timeout), (reachable) =>
      Effect.fail(
        reachable
          ? new IpcError.IpcError({
            reason: "PeerRejected",
            detail: "the server closed the connection during the TLS handshake: it requires a client " +
              "certificate signed by a CA it trusts (tls.certFile), and this client has none or another",
            address: address.raw,
            cause: error
          })
          : error
      ))
    : Effect.fail(error)

/** Milliseconds left until `deadline` (at least 1). */
const remainingUntil = (deadline: number) => Math.max(1, deadline - Date.now())

/** Answers the rendezvous socket may hold before nng's thread hands them to their connections. */
const LOBBY_SEND_BUFFER = 1024

/** How long a client first waits for the listener's answer before it asks again (then twice as long, ...). */
const ASK_AGAIN_MS = 5000

/**
 * How often a listener looks over its rendezvous connections (nng's statistics list them): those of
 * refused peers and those that have not said the hello within `handshakeTimeout` are closed.
 */
const SWEEP_MS = 200

/**
 * How long a refused peer's rendezvous connection that has sent nothing is kept for its hello (to hear the
 * refusal); a flood of silent ones gives its descriptors back after this.
 */
const REFUSED_SILENCE_MS = 1000

/**
 * A sweep waits at least this many times as long as it took before the next: reading nng's statistics
 * costs about 35 ms with 1,000 channels open in the process, so a busy process sweeps less often.
 */
const SWEEP_WAIT_FACTOR = 20

/** How often a client says its hello again while its conversation has not answered (see `attempt`). */
const HELLO_AGAIN_MS = 100

/** A conversation's reconnect delay once it is on: in effect never (ms). */
const NEVER_RECONNECT = 3_600_000

/** A client's reconnect delays while its conversation's handshake is under way (ms). */
const HANDSHAKE_RECONNECT = { min: 10, max: 100 }

/** The header nng's pair v1 protocol puts before each message (a hop count), counted by `recv-size-max`. */
const PAIR1_HEADER = 4
/** What nng may receive: the largest message or batch (`Channel.BATCH_BYTES`), the kind's byte, pair v1's header. */
const receiveLimit = (maxMessageSize: number) => Math.max(maxMessageSize, Channel.BATCH_BYTES) + 1 + PAIR1_HEADER

/**
 * `InvalidOption` for options libnng refuses on every connection: queues over its limit, and a receive limit
 * under 4 GiB (a larger one failed only as the listener's conversations opened).
 */
const limitsOk = (options: NngTransportOptions, raw?: string): Effect.Effect<void, IpcError.IpcError> => {
  const maxMessageSize = options.maxMessageSize ?? Framing.DEFAULT_MAX_FRAME_SIZE
  const limit = receiveLimit(maxMessageSize)
  return Effect.andThen(
    Socket.queuesOk(options, raw),
    Number.isFinite(limit) && limit > 0xffff_ffff
      ? Effect.fail(
        IpcError.make(
          "InvalidOption",
          `maxMessageSize ${maxMessageSize} is over libnng's limit (${0xffff_ffff - 1 - PAIR1_HEADER} bytes)`,
          raw
        )
      )
      : Effect.void
  )
}

/** Makes the nng transport, bare: libnng is loaded on first use (see `makeScoped`). */
export const make = (options: NngTransportOptions = {}): Transport.TransportShape => {
  // options that are not an object (a caller without types): every listen and dial fails with InvalidOption
  const refusing = TransportOptions.refusedIfNotAnObject(NngAddress.schemes, options)
  if (refusing !== undefined) return refusing
  const maxMessageSize = options.maxMessageSize ?? Framing.DEFAULT_MAX_FRAME_SIZE
  // a bad one is refused by listen and dial (`optionsOk`) before these are used
  const connectTimeout = TransportOptions.millisOf(options.connectTimeout ?? "10 seconds") ?? 10_000
  const closeTimeout = TransportOptions.millisOf(options.closeTimeout ?? "2 seconds") ?? 2000
  const handshakeTimeout = TransportOptions.millisOf(options.handshakeTimeout ?? "5 seconds") ?? 5000
  const maxPending = Math.max(1, options.maxPendingHandshakes ?? 64)
  const sendBuffer = options.sendBuffer ?? 16
  const pairOptions: Socket.SocketOptions = {
    maxMessageSize: receiveLimit(maxMessageSize),
    recvBuffer: options.recvBuffer ?? 16,
    ipcPermissions: options.mode ?? 0o600,
    kinded: true,
    // a conversation never reconnects: a new pipe would hide lost messages
    reconnect: { min: NEVER_RECONNECT, max: NEVER_RECONNECT },
    tls: options.tls
  }
  // no send buffer until the handshake is done: until then "writable" means "a peer is connected"
  const afterHandshake = (socket: Socket.Socket) => socket.setOption("send-buffer", { int: sendBuffer })
  const channelOptions = (address: string, pipe: number, peer: IpcChannel.PeerInfo): Channel.ChannelOptions => ({
    address,
    pipe,
    peer,
    maxMessageSize,
    highWaterMark: options.highWaterMark ?? 4 * 1024 * 1024,
    writeTimeout: options.writeTimeout,
    maxBufferedMessages: options.maxBufferedMessages,
    maxBufferedBytes: options.maxBufferedBytes,
    closeTimeout
  })

  const listen = (raw: string) =>
    Effect.gen(function*() {
      yield* TransportOptions.optionsOk(options, raw)
      yield* limitsOk(options, raw)
      const authorize = UnixSocket.authorizerOf(options.authorize)
      const badMode = TransportOptions.invalidMode(options.mode ?? 0o600, raw)
      if (badMode !== undefined) return yield* badMode
      const lobbyAddress = yield* NngAddress.parse(raw)
      // with tls.authMode "optional", the clients of the rendezvous and of every conversation are checked as
      // they are read (internal/socket.ts); those refused are noted below, once the address is known
      const refusedTls = yield* Socket.refusalQueue
      const lobby = yield* Socket.make("rep-raw", {
        maxMessageSize: 4096,
        // answers wait here for nng's thread to hand them to their connections: without room, an answer
        // sent while it is busy (under load, often) would be dropped and its client would wait to ask again
        sendBuffer: LOBBY_SEND_BUFFER,
        ipcPermissions: options.mode ?? 0o600,
        tls: options.tls,
        refused: refusedTls.sink
      }, raw)
      yield* ensureRuntimeDir(lobbyAddress, raw)
      // over ipc only an absent path or a stale socket of ours is taken (libnng alone would unlink a file);
      // once it is ours, what killed listeners at the path left of their conversations goes
      const bound = yield* Socket.listenFree(lobby, lobbyAddress, sweepConversations(lobbyAddress))
      const address = bound.port !== undefined && lobbyAddress.port === 0
        ? NngAddress.withPort(lobbyAddress, bound.port)
        : raw
      let privateDir = lobbyAddress.transport === "ipc"
        ? yield* conversationDir(lobbyAddress, options.mode ?? 0o600, raw)
        : undefined
      const listenerScope = yield* Effect.scope
      /**
       * The conversations' directory again, when `used` is gone (a clean-up of the temporary directory, or a
       * user, removed it): else no conversation could listen any more, and every client waited for its
       * `connectTimeout`. A handshake that finds it made again meanwhile by another uses that one.
       */
      const renewDir = (used: Conversations.Directory) =>
        Effect.suspend(() => {
          if (privateDir !== used || Conversations.isThere(used)) return Effect.succeed(false)
          return Effect.try({
            try: () => Conversations.make(lobbyAddress.path, options.mode ?? 0o600),
            catch: (cause) => IpcError.fromSystemError(cause, "Open", "cannot make the conversations' directory", raw)
          }).pipe(
            Effect.tap((made) => {
              privateDir = made
              return Scope.addFinalizer(listenerScope, Effect.sync(() => Conversations.remove(made)))
            }),
            Effect.tap((made) =>
              Effect.logWarning(`the conversations' directory ${used.path} was removed: made ${made.path} instead`)
            ),
            Effect.as(true)
          )
        })
      /** Listens at a fresh conversation address (over ipc, in the conversations' directory, made again if gone). */
      const listenConversation = (socket: Socket.Socket) =>
        Effect.gen(function*() {
          const used = privateDir
          const conversation = yield* NngAddress.parse(
            conversationUrl(lobbyAddress, bound.port, Conversations.socketName(), used?.path),
            { plain: true }
          )
          const listening = yield* Effect.result(socket.listen(conversation))
          if (listening._tag === "Success") return { conversation, listening: listening.success }
          if (used === undefined || Conversations.isThere(used)) return yield* listening.failure
          yield* renewDir(used)
          const again = yield* NngAddress.parse(
            conversationUrl(lobbyAddress, bound.port, Conversations.socketName(), privateDir?.path),
            { plain: true }
          )
          return { conversation: again, listening: yield* socket.listen(again) }
        })
      // counted, and logged a few a minute (a flood of refused hellos wrote a warning each)
      const noteRefusal = yield* Observability.refusals(address)
      const acceptor = yield* Transport.makeAcceptor(address, { refused: noteRefusal })
      yield* Effect.forkScoped(
        refusedTls.noteWith((refusal) => noteRefusal(IpcError.make("PeerRejected", refusal.detail, address)))
      )
      const open = new Set<IpcChannel.IpcChannel>()
      const handshakes = yield* FiberSet.make<void, never>()
      /** Conversations waiting for their clients. */
      let pending = 0
      /** The rendezvous connections (nng pipes) whose conversation waits for them. */
      const waiting = new Set<number>()
      /** The rendezvous connections that said the hello (and were not refused). */
      const greeted = new Set<number>()
      /** The refused rendezvous connections whose refusal was counted, and when: answered, or closed unheard. */
      const refusedAt = new Map<number, number>()
      yield* Effect.addFinalizer(() =>
        Effect.gen(function*() {
          yield* acceptor.shutdown
          yield* FiberSet.clear(handshakes)
          yield* Effect.forEach(open, (channel) => channel.close, { concurrency: "unbounded", discard: true })
        })
      )

      /** Answers a rendezvous request without waiting: a client that does not read its answers loses them. */
      const answer = (request: Nng.Received, body: object) =>
        lobby.trySend(encoder.encode(JSON.stringify({ v: 1, ...body })), undefined, request.header) === 0

      // a spell without room for conversations is logged once, as it starts (each failed one is only a debug line)
      const short = Observability.spell()
      /**
       * No room for a conversation (no descriptor left): its client is told to come back, and lets go of its
       * rendezvous connection meanwhile (kept waiting for an answer, a flood of them held every descriptor).
       */
      const busyWhenShort = (request: Nng.Received) => (error: IpcError.IpcError) =>
        Effect.suspend(() => {
          if (error.reason._tag !== "NoSpace") return Effect.void
          answer(request, { busy: true })
          return short.begin("no room for a conversation: clients are told to come back", error)
        })

      /** The handshake of one conversation: open its pair socket, answer the client, wait for its hello. */
      const handshake = (request: Nng.Received) =>
        Effect.gen(function*() {
          const token = Crypto.randomBytes(16).toString("hex")
          const socket = yield* Socket.open("pair", { ...pairOptions, refused: refusedTls.sink }, address).pipe(
            Effect.tapError(busyWhenShort(request))
          )
          return yield* Effect.gen(function*() {
            const { conversation, listening } = yield* Effect.tapError(
              listenConversation(socket),
              busyWhenShort(request)
            )
            short.end()
            // as written (an ipc path escaped), for the client to parse
            const url = listening.port === undefined
              ? conversation.raw
              : NngAddress.withPort(conversation, listening.port)
            if (!answer(request, { url, token })) {
              return yield* IpcError.make("Timeout", "the client does not read its answers", address)
            }
            // a peer without the token (a wrong client, or another process that connected first):
            // close only its connection and keep waiting, within `handshakeTimeout`
            const hello = yield* Effect.repeat(socket.receive, {
              until: (message) => {
                // the length first: a stranger's large message is not decoded
                const right = message.kind === Channel.Kind.hello && message.body.byteLength === token.length &&
                  decoder.decode(message.body) === token
                if (!right) socket.nng.closePipe(message.pipe)
                return right
              }
            })
            const conversationPeer = peerOf(socket, hello.pipe, address)
            if (hasCredentials(lobbyAddress) && !authorize(conversationPeer)) {
              return yield* refuse(conversationPeer, address)
            }
            yield* socket.send(new Uint8Array(0), Channel.prefix.ready)
            yield* afterHandshake(socket)
            return Channel.make(socket, channelOptions(address, hello.pipe, conversationPeer))
          }).pipe(Effect.onExit((exit) => Exit.isSuccess(exit) ? Effect.void : socket.close))
        })

      /** One conversation: its handshake (bounded in time), then the channel until it closes. */
      const converse = (request: Nng.Received) =>
        Effect.gen(function*() {
          pending++
          waiting.add(request.pipe)
          const accepted = yield* handshake(request).pipe(
            Effect.timeoutOrElse({
              duration: handshakeTimeout,
              orElse: () =>
                Effect.fail(IpcError.make("Timeout", "the client did not come to its conversation", address))
            }),
            Effect.ensuring(Effect.sync(() => {
              pending--
              waiting.delete(request.pipe)
            }))
          )
          open.add(accepted)
          yield* acceptor.admit(accepted)
          yield* accepted.closed
          open.delete(accepted)
        }).pipe(Effect.catch((error) => Effect.logDebug("a conversation did not start", error)))

      /** A rendezvous request: validated (and, over ipc, its sender checked) before anything is allocated. */
      const onRequest = (request: Nng.Received) =>
        Effect.gen(function*() {
          // not the hello, or a hello from a connection whose conversation already waits for it
          if (!isHello(request.body) || waiting.has(request.pipe)) return
          const peer = peerOf(lobby, request.pipe, address)
          // a client gone before its request was read (its credentials with it): nobody to answer or refuse
          if (isGone(lobby, request.pipe, peer)) {
            return yield* Effect.logDebug("a client left before its request was read")
          }
          if (hasCredentials(lobbyAddress) && !authorize(peer)) {
            // counted once per connection: already answered, or closed and counted by the sweep
            if (refusedAt.has(request.pipe)) return
            // answered, then closed by a sweep at least SWEEP_MS later (`sweep`)
            const refusal = refuse(peer, address)
            answer(request, { refused: refusal.detail })
            refusedAt.set(request.pipe, Date.now())
            return yield* noteRefusal(refusal)
          }
          greeted.add(request.pipe)
          // at most `maxPending` conversations wait for their clients: the others are asked to come back
          if (pending >= maxPending) return void answer(request, { busy: true })
          yield* FiberSet.run(handshakes, converse(request))
        })

      /**
       * When the sweep first saw each rendezvous connection, its peer when that peer is refused, and when it
       * first saw a refused one having sent something.
       */
      const seen = new Map<
        number,
        { readonly since: number; readonly refused: IpcChannel.PeerInfo | undefined; heard?: number }
      >()
      /**
       * Closes the rendezvous connections of refused peers (over ipc and abstract) once their hello has had
       * its refusal for at least SWEEP_MS, or when they have sent nothing for REFUSED_SILENCE_MS (or what they
       * sent has not been answered REFUSED_SILENCE_MS after the sweep saw it: not the hello), or after
       * `handshakeTimeout`; and those of accepted peers that have not said the hello within `handshakeTimeout`:
       * a connection that sends nng's header and nothing else held a descriptor for ever, and a flood of them
       * took every descriptor of the listener's process. A refused connection closed before its hello was
       * answered is counted as it is closed, or as the sweep finds it gone.
       */
      const sweep = Effect.suspend(() => {
        const pipes = lobby.nng.socketPipes(lobby.handle)
        // a libnng without statistics: nothing to look over (and `greeted` and `refusedAt` are not needed)
        if (pipes === undefined) {
          return Effect.sync(() => {
            greeted.clear()
            refusedAt.clear()
          })
        }
        const now = Date.now()
        const present = new Set<number>()
        const refusals: Array<IpcError.IpcError> = []
        for (const { pipe, received } of pipes) {
          present.add(pipe)
          const known = seen.get(pipe)
          if (known === undefined) {
            const peer = peerOf(lobby, pipe, address)
            // gone meanwhile (its credentials with it): nothing to refuse
            if (isGone(lobby, pipe, peer)) continue
            // not closed at first sight: a client on a loaded machine may not have said its hello yet
            seen.set(pipe, { since: now, refused: hasCredentials(lobbyAddress) && !authorize(peer) ? peer : undefined })
          } else if (known.refused !== undefined) {
            const answeredAt = refusedAt.get(pipe)
            // what it sent is not the hello when it is still unanswered REFUSED_SILENCE_MS later (one junk
            // message held its descriptor until `handshakeTimeout`)
            if (received > 0 && known.heard === undefined) known.heard = now
            const due = answeredAt === undefined
              ? now - (known.heard ?? known.since) >= REFUSED_SILENCE_MS
              : now - answeredAt >= SWEEP_MS
            if (due || now - known.since >= handshakeTimeout) {
              lobby.nng.closePipe(pipe)
              if (answeredAt === undefined) {
                refusedAt.set(pipe, now)
                refusals.push(refuse(known.refused, address))
              }
            }
          } else if (!greeted.has(pipe) && now - known.since >= handshakeTimeout) {
            lobby.nng.closePipe(pipe)
          }
        }
        for (const [pipe, known] of seen) {
          if (present.has(pipe)) continue
          // a refused peer that left before its refusal was counted (a reconnect loop went uncounted)
          if (known.refused !== undefined && !refusedAt.has(pipe) && !lobby.nng.pipeAlive(pipe)) {
            refusals.push(refuse(known.refused, address))
          }
          seen.delete(pipe)
        }
        // a snapshot may be older than a hello just heard (one snapshot serves every listener): forget only the gone
        for (const pipe of greeted) if (!present.has(pipe) && !lobby.nng.pipeAlive(pipe)) greeted.delete(pipe)
        for (const pipe of refusedAt.keys()) {
          if (!present.has(pipe) && !lobby.nng.pipeAlive(pipe)) refusedAt.delete(pipe)
        }
        return Effect.forEach(refusals, noteRefusal, { discard: true })
      })
      const sweepThenWait = Effect.suspend(() => {
        const started = performance.now()
        return Effect.andThen(
          sweep,
          Effect.suspend(() => Effect.sleep(Math.max(SWEEP_MS, (performance.now() - started) * SWEEP_WAIT_FACTOR)))
        )
      })
      yield* Effect.forkScoped(Effect.andThen(Effect.sleep(SWEEP_MS), Effect.forever(sweepThenWait)))

      yield* Effect.forkScoped(
        Effect.forever(Effect.flatMap(lobby.receive, onRequest)).pipe(
          Effect.catch((error) => error.reason._tag === "Closed" ? Effect.void : Effect.logWarning("rendezvous", error))
        )
      )
      return acceptor.listener
    })

  /** One try at a conversation: the rendezvous, then the conversation's handshake. */
  const attempt = (
    raw: string,
    deadline: number,
    askAgain: number,
    authorize: (peer: IpcChannel.PeerInfo) => boolean
  ) =>
    Effect.gen(function*() {
      const lobbyAddress = yield* NngAddress.parse(raw)
      const timedOut = (what: string) => () =>
        Effect.fail(IpcError.make("Timeout", `${what} within ${connectTimeout} ms`, raw))

      // a socket file is made by its listener: with the default `authorize`, one of another user's is refused
      // before anything is sent to it (a custom `authorize` is asked as the listener answers, with its pid too)
      if (lobbyAddress.transport === "ipc" && options.authorize === undefined) {
        const owner = socketOwner(lobbyAddress.path)
        if (owner !== undefined && !authorize({ uid: owner, description: raw })) {
          return yield* IpcError.make(
            "PeerRejected",
            `refused a peer running as uid ${owner} (the owner of its socket file), before anything was sent to it`,
            raw
          )
        }
      }

      // 1. the rendezvous: ask for a conversation
      const welcome = yield* Effect.scoped(Effect.gen(function*() {
        // closed in the background: the conversation does not wait for it
        const lobby = yield* Effect.acquireRelease(
          Socket.open("req", { maxMessageSize: 4096, tls: options.tls }, raw),
          (socket) => Effect.sync(socket.shutdown)
        )
        const dialer = yield* lobby.dial(lobbyAddress)
        yield* Socket.connected(lobby, dialer, remainingUntil(deadline), raw).pipe(
          Effect.mapError((error) => lobbyAddress.transport === "ipc" ? unreachable(lobbyAddress, error) : error),
          Effect.catch(tlsRefusal(lobbyAddress, remainingUntil(deadline)))
        )
        // a listener drops what it cannot answer at once: after a silence, ask again. The send is bounded
        // too: a listener gone between the connect and the send leaves no connection to send on, and
        // nng's dialer reconnects for ever (the dial waited past connectTimeout, for good)
        const reply = yield* Effect.andThen(lobby.send(helloBytes), lobby.receive).pipe(
          Effect.timeoutOrElse({
            duration: Math.min(remainingUntil(deadline), askAgain),
            orElse: (): Effect.Effect<never, IpcError.IpcError | Vanished> =>
              remainingUntil(deadline) > 1
                ? Effect.fail(new Vanished({ error: IpcError.make("Timeout", "no answer from the listener", raw) }))
                : timedOut("no answer from the listener")()
          })
        )
        const server = peerOf(lobby, reply.pipe, raw)
        // a listener gone since it answered (killed): nothing to refuse; asked again, its successor or NotFound
        if (isGone(lobby, reply.pipe, server)) return yield* new Vanished({ error: listenerGone(raw) })
        if (hasCredentials(lobbyAddress) && !authorize(server)) return yield* refuse(server, raw)
        const answer = yield* decodeWelcome(decoder.decode(reply.body)).pipe(
          Effect.mapError((cause) =>
            new IpcError.IpcError({
              reason: "Protocol",
              detail: "the listener's answer is not understood",
              address: raw,
              cause
            })
          )
        )
        if ("refused" in answer) return yield* IpcError.make("PeerRejected", `the listener ${answer.refused}`, raw)
        if ("busy" in answer) {
          return yield* new Vanished({
            error: IpcError.make(
              "Full",
              "the listener is busy (too many handshakes under way, or no room for one)",
              raw
            )
          })
        }
        return answer
      }))

      // 2. the conversation's own pair socket
      const conversation = yield* NngAddress.parse(welcome.url, { plain: true })
      // a conversation runs over what the rendezvous ran over: no way down from TLS to clear text
      if (NngAddress.isTls(lobbyAddress.transport) && conversation.transport !== lobbyAddress.transport) {
        return yield* IpcError.make(
          "Protocol",
          `the listener offered a conversation over ${conversation.transport}`,
          raw
        )
      }
      // until the handshake is done, a connection the listener turned away (another process had connected to
      // the conversation first: a pair socket keeps one peer) is made again at once; no message can be lost yet
      const socket = yield* Socket.open("pair", { ...pairOptions, reconnect: HANDSHAKE_RECONNECT }, raw)
      return yield* Effect.gen(function*() {
        const dialer = yield* socket.dial(
          yield* NngAddress.parse(clientUrl(lobbyAddress, conversation), { plain: true })
        )
        yield* Socket.connected(socket, dialer, remainingUntil(deadline), raw)
        // the hello is sent again until the listener answers: one that went out on a connection the listener
        // turned away was lost with it. Each send is bounded too (one waiting for a connection that never came
        // waited for ever, past connectTimeout)
        const hello = encoder.encode(welcome.token)
        const sayHello = Effect.forever(
          Effect.andThen(
            Effect.timeoutOrElse(socket.send(hello, Channel.prefix.hello), {
              duration: HELLO_AGAIN_MS,
              orElse: () => Effect.void
            }),
            Effect.sleep(HELLO_AGAIN_MS)
          )
        )
        const ready = yield* Effect.raceFirst(socket.receive, sayHello).pipe(
          Effect.timeoutOrElse({
            duration: remainingUntil(deadline),
            orElse: timedOut("no handshake from the listener")
          })
        )
        if (ready.kind !== Channel.Kind.ready) {
          return yield* IpcError.make("Protocol", "the listener did not complete the handshake", raw)
        }
        // the conversation is on: it never reconnects from now on (a new pipe would hide lost messages)
        const settled = socket.nng.setDialerReconnect(dialer, NEVER_RECONNECT, NEVER_RECONNECT)
        if (settled !== 0) return yield* socket.nng.error(settled, "cannot settle the conversation", raw)
        const server = peerOf(socket, ready.pipe, raw)
        // gone since it answered: lost (asked again below), not refused
        if (isGone(socket, ready.pipe, server)) return yield* listenerGone(raw)
        if (hasCredentials(lobbyAddress) && !authorize(server)) return yield* refuse(server, raw)
        yield* afterHandshake(socket)
        return Channel.make(socket, channelOptions(raw, ready.pipe, server))
      }).pipe(
        Effect.onExit((exit) => Exit.isSuccess(exit) ? Effect.void : socket.close),
        // the conversation was gone before we got there (it timed out on the listener's side): ask again
        Effect.mapError((error) =>
          error.reason._tag === "NotFound" || error.reason._tag === "ConnectionLost" || error.reason._tag === "Closed"
            ? new Vanished({ error })
            : error
        )
      )
    })

  const dial = (raw: string) =>
    Effect.gen(function*() {
      yield* TransportOptions.optionsOk(options, raw)
      yield* limitsOk(options, raw)
      const authorize = UnixSocket.authorizerOf(options.authorize)
      const deadline = Date.now() + connectTimeout
      let askAgain = ASK_AGAIN_MS / 2
      const channel = yield* Effect.suspend(() => attempt(raw, deadline, askAgain *= 2, authorize)).pipe(
        Effect.retry({
          while: (error) => error instanceof Vanished && Date.now() < deadline,
          schedule: Schedule.min([Schedule.exponential("50 millis"), Schedule.spaced("1 second")]).pipe(
            Schedule.jittered
          )
        }),
        Effect.mapError((error) => error instanceof Vanished ? error.error : error)
      )
      yield* Effect.addFinalizer(() => channel.close)
      return channel
    })

  return { schemes: NngAddress.schemes, listen, dial }
}

/**
 * Makes the nng transport ready to use: loads libnng (failing with
 * `LibraryMissing` when it is absent) and starts nng's process-wide machinery
 * first (`warmUp`), so that what the transport opens later is all released
 * when it closes; instrumented (`Transport.instrument`: metrics and spans).
 * `layer` and the registry's `descriptor` are both built by it.
 */
export const makeScoped = (
  options: NngTransportOptions = {}
): Effect.Effect<Transport.TransportShape, IpcError.IpcError, Scope.Scope> =>
  Effect.suspend(() => {
    // options no listen or dial would take, and those libnng would refuse on every connection, fail here
    return TransportOptions.layerOptionsOk(options).pipe(
      Effect.andThen(() => limitsOk(options)),
      Effect.andThen(Effect.map(Nng.warmUp, () => Transport.instrument(make(options))))
    )
  })

/** The nng transport as the `Transport` service (`makeScoped`: libnng loaded and warmed up). */
export const layer = (options?: NngTransportOptions): Layer.Layer<Transport.Transport, IpcError.IpcError> =>
  Layer.effect(Transport.Transport, makeScoped(options))
