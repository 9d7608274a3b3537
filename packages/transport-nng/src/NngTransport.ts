/**
 * The effect-ipc transport over nng: `listen` / `dial` at `nng+ipc://`,
 * `nng+tcp://`, `nng+inproc://`, `nng+ws://` or `nng+abstract://` addresses,
 * yielding `IpcChannel`s with the semantics of every effect-ipc transport
 * (whole messages in order, back-pressure, graceful close vs. lost peer,
 * typed errors), so typed RPC (`IpcRpc`) and the conformance suite run over it.
 *
 * nng's pair protocol connects one peer per socket, so every conversation gets
 * a pair socket of its own. The listener's address is a small rendezvous
 * (nng's req/rep): a client asks it for a conversation, the listener opens a
 * pair socket at a fresh address (a free port on the same host for tcp, a
 * fresh path under the same port for ws, a random abstract name for ipc on
 * Linux, a random suffix for inproc) and answers with it and a one-time
 * token; the client dials that address, presents the token and gets `ready`.
 * Both sides then speak the channel format of `internal/channel.ts` (a kind
 * byte before each message).
 *
 * Over ipc, peers are checked like Unix sockets: the socket file is created
 * with mode 0600 (nng sets the mode before it listens), and a peer running as
 * another user is refused on both sides unless `authorize` says otherwise.
 *
 * @since 0.1.0
 */
import * as Framing from "@effect-ipc/core/Framing"
import type * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Transport from "@effect-ipc/core/Transport"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Crypto from "node:crypto"
import * as Channel from "./internal/channel.ts"
import * as Socket from "./internal/socket.ts"
import * as NngAddress from "./NngAddress.ts"

/** Options of the nng transport. */
export interface NngTransportOptions {
  /** Largest message a channel sends or accepts, in bytes (default 256 MiB). */
  readonly maxMessageSize?: number | undefined
  /** Messages nng queues for sending (default 16); beyond, messages are queued and coalesced. */
  readonly sendBuffer?: number | undefined
  /** Bytes queued beyond nng's buffers above which `send` waits (default 4 MiB). */
  readonly highWaterMark?: number | undefined
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
  /** Permission bits of ipc socket files (default 0o600: this user only). */
  readonly mode?: number | undefined
  /**
   * Decides whether an ipc peer (server or client) is accepted, from its
   * credentials (default: only processes of this user). Other transports
   * carry no credentials and are not checked.
   */
  readonly authorize?: ((peer: IpcChannel.PeerInfo) => boolean) | undefined
}

const Hello = Schema.Struct({ v: Schema.Literal(1) })
const Welcome = Schema.Union([
  Schema.Struct({ v: Schema.Literal(1), url: Schema.String, token: Schema.String }),
  Schema.Struct({ v: Schema.Literal(1), refused: Schema.String })
])
const WelcomeJson = Schema.fromJsonString(Welcome)
const decodeWelcome = Schema.decodeUnknownEffect(WelcomeJson)
const encoder = new TextEncoder()
const decoder = new TextDecoder()
const helloBytes = encoder.encode(JSON.stringify(Hello.make({ v: 1 })))

const sameUser = (peer: IpcChannel.PeerInfo): boolean => peer.uid === undefined || peer.uid === process.getuid?.()

const hasCredentials = (address: NngAddress.NngAddress) =>
  address.transport === "ipc" || address.transport === "abstract"

/** Where the listener at `lobby` opens the pair socket of one conversation. */
const conversationUrl = (lobby: NngAddress.NngAddress, port: number | undefined, name: string): string => {
  switch (lobby.transport) {
    case "ipc":
      return process.platform === "linux" ? `abstract://effect-ipc-${name}` : `ipc://${lobby.path}.${name}`
    case "abstract":
      return `abstract://${lobby.path}.${name}`
    case "inproc":
      return `inproc://${lobby.path}#${name}`
    case "tcp":
      return `tcp://${lobby.host}:0`
    case "ws":
      return `ws://${lobby.host}:${port ?? lobby.port}${lobby.path.replace(/\/$/, "")}/${name}`
  }
}

/** The address a client dials for a conversation: the listener's url, on the host the client used. */
const clientUrl = (
  lobby: NngAddress.NngAddress,
  welcome: NngAddress.NngAddress
): string =>
  welcome.transport === "tcp" || welcome.transport === "ws"
    ? `${welcome.transport}://${lobby.host}:${welcome.port}${welcome.path}`
    : welcome.url

const peerOf = (socket: Socket.Socket, pipe: number, address: string): IpcChannel.PeerInfo => ({
  ...socket.nng.pipePeer(pipe),
  description: address
})

const refuse = (peer: IpcChannel.PeerInfo, address: string) =>
  IpcError.make("PeerRejected", `refused a peer running as uid ${peer.uid} (pid ${peer.pid ?? "unknown"})`, address)

/** Makes the nng transport. */
export const make = (options: NngTransportOptions = {}): Transport.TransportShape => {
  const maxMessageSize = options.maxMessageSize ?? Framing.DEFAULT_MAX_FRAME_SIZE
  const connectTimeout = Duration.toMillis(Duration.fromInputUnsafe(options.connectTimeout ?? "10 seconds"))
  const closeTimeout = Duration.toMillis(Duration.fromInputUnsafe(options.closeTimeout ?? "2 seconds"))
  const authorize = options.authorize ?? sameUser
  const sendBuffer = options.sendBuffer ?? 16
  const pairOptions: Socket.SocketOptions = {
    // one byte more for the kind
    maxMessageSize: maxMessageSize + 1,
    recvBuffer: options.recvBuffer ?? 16,
    ipcPermissions: options.mode ?? 0o600,
    kinded: true,
    // a conversation never reconnects: a new pipe would hide lost messages
    reconnect: { min: 3_600_000, max: 3_600_000 }
  }
  // no send buffer until the handshake is done: until then "writable" means "a peer is connected"
  const afterHandshake = (socket: Socket.Socket) => socket.setOption("send-buffer", { int: sendBuffer })
  const channelOptions = (address: string, pipe: number, peer: IpcChannel.PeerInfo): Channel.ChannelOptions => ({
    address,
    pipe,
    peer,
    maxMessageSize,
    highWaterMark: options.highWaterMark ?? 4 * 1024 * 1024,
    maxBufferedMessages: options.maxBufferedMessages,
    maxBufferedBytes: options.maxBufferedBytes,
    closeTimeout
  })

  const listen = (raw: string) =>
    Effect.gen(function*() {
      const lobbyAddress = yield* NngAddress.parse(raw)
      const lobby = yield* Socket.make("rep-raw", {
        maxMessageSize: 4096,
        ipcPermissions: options.mode ?? 0o600
      }, raw)
      const bound = yield* lobby.listen(lobbyAddress)
      const address = bound.port !== undefined && lobbyAddress.port === 0
        ? NngAddress.withPort(lobbyAddress, bound.port)
        : raw
      const acceptor = yield* Transport.makeAcceptor(address)
      const open = new Set<IpcChannel.IpcChannel>()
      const handshakes = yield* FiberSet.make<void, never>()
      yield* Effect.addFinalizer(() =>
        Effect.gen(function*() {
          acceptor.end()
          yield* FiberSet.clear(handshakes)
          yield* Effect.forEach(open, (channel) => channel.close, { concurrency: "unbounded", discard: true })
        })
      )

      /** One conversation: open its pair socket, answer the client, wait for its hello. */
      const converse = (request: { readonly header: Uint8Array | undefined; readonly pipe: number }) =>
        Effect.gen(function*() {
          const peer = peerOf(lobby, request.pipe, address)
          if (hasCredentials(lobbyAddress) && !authorize(peer)) {
            const refusal = refuse(peer, address)
            yield* lobby.send(
              encoder.encode(JSON.stringify({ v: 1, refused: refusal.detail })),
              undefined,
              request.header
            )
            return yield* Effect.logWarning(refusal)
          }
          const token = Crypto.randomBytes(16).toString("hex")
          const conversation = yield* NngAddress.parse(
            conversationUrl(lobbyAddress, bound.port, Crypto.randomBytes(12).toString("hex")),
            { plain: true }
          )
          const socket = yield* Socket.open("pair", pairOptions, address)
          const accepted = yield* Effect.gen(function*() {
            const listening = yield* socket.listen(conversation)
            const url = listening.port === undefined
              ? conversation.url
              : NngAddress.withPort(conversation, listening.port)
            yield* lobby.send(encoder.encode(JSON.stringify({ v: 1, url, token })), undefined, request.header)
            const hello = yield* socket.receive.pipe(
              Effect.timeoutOrElse({
                duration: connectTimeout,
                orElse: () =>
                  Effect.fail(IpcError.make("Timeout", "the client did not come to its conversation", address))
              })
            )
            if (hello.kind !== Channel.Kind.hello || decoder.decode(hello.body) !== token) {
              return yield* IpcError.make("PeerRejected", "a peer came to a conversation without its token", address)
            }
            const conversationPeer = peerOf(socket, hello.pipe, address)
            if (hasCredentials(lobbyAddress) && !authorize(conversationPeer)) {
              return yield* refuse(conversationPeer, address)
            }
            yield* socket.send(new Uint8Array(0), Channel.prefix.ready)
            yield* afterHandshake(socket)
            return Channel.make(socket, channelOptions(address, hello.pipe, conversationPeer))
          }).pipe(Effect.onExit((exit) => Exit.isSuccess(exit) ? Effect.void : socket.close))
          open.add(accepted)
          acceptor.offer(accepted)
          yield* accepted.closed
          open.delete(accepted)
        }).pipe(Effect.catch((error) => Effect.logDebug("a conversation did not start", error)))

      yield* Effect.forkScoped(
        Effect.forever(
          Effect.flatMap(lobby.receive, (request) => FiberSet.run(handshakes, converse(request)))
        ).pipe(
          Effect.catch((error) => error.reason === "Closed" ? Effect.void : Effect.logWarning("rendezvous", error))
        )
      )
      return acceptor.listener
    })

  const dial = (raw: string) =>
    Effect.gen(function*() {
      const lobbyAddress = yield* NngAddress.parse(raw)
      const deadline = Date.now() + connectTimeout
      const remaining = () => Math.max(1, deadline - Date.now())
      const timedOut = (what: string) => () =>
        Effect.fail(IpcError.make("Timeout", `${what} within ${connectTimeout} ms`, raw))

      // 1. the rendezvous: ask for a conversation
      const welcome = yield* Effect.scoped(Effect.gen(function*() {
        const lobby = yield* Socket.make("req", { maxMessageSize: 4096 }, raw)
        const dialer = yield* lobby.dial(lobbyAddress)
        yield* Socket.connected(lobby, dialer, remaining(), raw)
        yield* lobby.send(helloBytes)
        const reply = yield* lobby.receive.pipe(
          Effect.timeoutOrElse({ duration: remaining(), orElse: timedOut("no answer from the listener") })
        )
        const server = peerOf(lobby, reply.pipe, raw)
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
        return answer
      }))
      const conversation = yield* NngAddress.parse(welcome.url, { plain: true })

      // 2. the conversation's own pair socket
      const socket = yield* Socket.open("pair", pairOptions, raw)
      const channel = yield* Effect.gen(function*() {
        const dialer = yield* socket.dial(
          yield* NngAddress.parse(clientUrl(lobbyAddress, conversation), { plain: true })
        )
        yield* Socket.connected(socket, dialer, remaining(), raw)
        yield* socket.send(encoder.encode(welcome.token), Channel.prefix.hello)
        const ready = yield* socket.receive.pipe(
          Effect.timeoutOrElse({ duration: remaining(), orElse: timedOut("no handshake from the listener") })
        )
        if (ready.kind !== Channel.Kind.ready) {
          return yield* IpcError.make("Protocol", "the listener did not complete the handshake", raw)
        }
        yield* afterHandshake(socket)
        return Channel.make(socket, channelOptions(raw, ready.pipe, peerOf(socket, ready.pipe, raw)))
      }).pipe(Effect.onExit((exit) => Exit.isSuccess(exit) ? Effect.void : socket.close))
      yield* Effect.addFinalizer(() => channel.close)
      return channel
    })

  return { schemes: NngAddress.schemes, listen, dial }
}

/** The nng transport as the `Transport` service. */
export const layer = (options?: NngTransportOptions): Layer.Layer<Transport.Transport> =>
  Layer.succeed(Transport.Transport, make(options))
