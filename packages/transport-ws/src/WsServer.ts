/**
 * The `ws://` listener (Node, on the `ws` library), safe by default for a
 * local daemon that a browser page talks to:
 *
 * - it binds loopback addresses only (`127.0.0.1`, `localhost`, `[::1]`);
 *   any other host fails `listen` with `PermissionDenied` unless
 *   `allowRemote` is set (with `allowedHosts`, else `InvalidOption`);
 * - a request's `Host` must name a loopback host (or one of `allowedHosts`),
 *   which defeats DNS rebinding;
 * - a request with an `Origin` (a browser page) is served only when that
 *   origin is in `allowedOrigins` (none by default); a request without one is
 *   a non-browser client and passes this check;
 * - every client must present the server's secret token (32 random bytes,
 *   or `token`): in the subprotocol `effect-ipc.token.<token>` (browsers and
 *   the `WsClient`) or as `Authorization: Bearer <token>`. The token is
 *   written to a 0600 file (`TokenFile`) for local clients of the same user;
 *   `WsListener.url` carries it for the user to hand to a page. It is never
 *   logged.
 *
 * A refused client is counted (`effect_ipc_connections_refused`, every one)
 * and logged as a warning (the first 10 of each minute one by one, then one
 * line a minute saying how many more were refused), and gets
 * close code 4401 (token) or 4403 (origin, host), or HTTP 401 / 403 if it did
 * not offer `effect-ipc.refused` (see `WsProtocol`); the listener goes on
 * serving others. A connection that has not completed its handshake within
 * `handshakeTimeout` is dropped, and at most `maxPendingHandshakes` wait at
 * once: when another connection arrives, the one that has waited longest is
 * dropped (counted and logged as refused), so a flood of connections that
 * never finish their handshake holds a bounded number of descriptors. A
 * client gets through a flood if its request arrives before
 * `maxPendingHandshakes` newer connections do: a sustained flood of N
 * connections a second keeps out a client slower than
 * `maxPendingHandshakes / N` seconds (the pending ones look alike).
 * Messages over `maxMessageSize` end the connection that sent them (close
 * 1009, `FrameTooLarge` on that channel).
 *
 * @since 0.1.0
 */
import * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Observability from "@effect-ipc/core/Observability"
import * as Transport from "@effect-ipc/core/Transport"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import type * as Scope from "effect/Scope"
import * as Crypto from "node:crypto"
import * as Http from "node:http"
import * as Net from "node:net"
import * as Path from "node:path"
import type { Duplex } from "node:stream"
import { WebSocketServer } from "ws"
import type { RawData, WebSocket as NodeWebSocket } from "ws"
import * as Link from "./internal/link.ts"
import * as Record from "./internal/record.ts"
import * as Strength from "./internal/strength.ts"
import * as TokenFile from "./TokenFile.ts"
import * as WsAddress from "./WsAddress.ts"
import * as WsProtocol from "./WsProtocol.ts"

/** Options of the listener. */
export interface WsServerOptions extends Link.LinkOptions {
  /**
   * The page origins allowed to connect (`"http://127.0.0.1:5173"`), or a
   * predicate (one that throws, or answers anything but `true`, refuses the
   * page). Default: none (requests without `Origin`, from non-browser
   * clients, are not affected).
   */
  readonly allowedOrigins?: ReadonlyArray<string> | ((origin: string) => boolean) | undefined
  /** Host names a request's `Host` may name besides the loopback ones (default: none). */
  readonly allowedHosts?: ReadonlyArray<string> | undefined
  /** Allows listening on a host that is not a loopback address (default false); needs `allowedHosts`. */
  readonly allowRemote?: boolean | undefined
  /**
   * The token clients must present; default: the address's `?token=...`, else
   * 32 fresh random bytes. A given one must carry 128 bits (estimated from its
   * length and characters) and be more than a word or a number (one or two
   * runs of one kind of character), else `listen` fails with `InvalidOption`.
   */
  readonly token?: string | undefined
  /** Accepts a given `token` (or the address's) that is weak as `token` says (default false). */
  readonly allowWeakToken?: boolean | undefined
  /**
   * Where to write the token (mode 0600); `false`: nowhere. Default: `TokenFile.pathOf(address)`. A given path
   * that holds anything but a token file is `AlreadyExists`, left as it is.
   */
  readonly tokenFile?: string | false | undefined
  /** How long a connection may take to complete its WebSocket handshake (default 10 s). */
  readonly handshakeTimeout?: Duration.Input | undefined
  /** Connections waiting to complete their handshake at once; past it the oldest is dropped (default 64; `Infinity`: no limit). */
  readonly maxPendingHandshakes?: number | undefined
}

/** A `ws://` listener: a `Transport.Listener` with its token. */
export interface WsListener extends Transport.Listener {
  /** The token clients must present. Keep it out of logs. */
  readonly token: string
  /** The file the token was written to, if any. */
  readonly tokenFile: string | undefined
  /** The address with `?token=...`: what a client needs, to hand to it (not to log). */
  readonly url: string
}

const digest = (text: string): Buffer => Crypto.createHash("sha256").update(text).digest()

/** Compares tokens in constant time (of their digests). */
const sameToken = (given: string | undefined, expected: Buffer): boolean =>
  given !== undefined && Crypto.timingSafeEqual(digest(given), expected)

const protocolsOf = (header: string | undefined): Array<string> =>
  header === undefined ? [] : header.split(",").map((p) => p.trim()).filter((p) => p.length > 0)

const tokenOf = (req: Http.IncomingMessage, offered: ReadonlyArray<string>): string | undefined => {
  const fromProtocol = offered.find((p) => p.startsWith(WsProtocol.tokenPrefix))
  if (fromProtocol !== undefined) return fromProtocol.slice(WsProtocol.tokenPrefix.length)
  const bearer = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? "")
  return bearer?.[1]
}

/**
 * The host name of a `Host` header (`[::1]:8080` -> `[::1]`), lower case:
 * `[address]` or a name, alone or followed by `:port`; anything else
 * (`[::1].evil.example`, `[::1]evil:80`) is `undefined`, which no check passes.
 */
const hostNameOf = (host: string): string | undefined => {
  const h = host.trim().toLowerCase()
  const match = /^(\[[0-9a-f:.]+\]|[^[\]:]+)(?::\d{1,5})?$/.exec(h)
  return match === null ? undefined : match[1]
}

/** Connections waiting to complete their handshake at once, by default. */
const DEFAULT_MAX_PENDING_HANDSHAKES = 64

const normalOrigin = (origin: string): string => {
  const trimmed = origin.trim()
  // as a browser sends it: the scheme and host lowercased, a default port (:80, :443) left out
  if (URL.canParse(trimmed)) {
    const parsed = new URL(trimmed).origin
    if (parsed !== "null") return parsed
  }
  return trimmed.toLowerCase().replace(/\/+$/, "")
}

interface Refusal {
  readonly code: number
  readonly status: number
  /** What the client is told (no secrets). */
  readonly text: string
  /** What the server logs. */
  readonly detail: string
}

const reject = (socket: Duplex, status: number, text: string) => {
  socket.end(
    `HTTP/1.1 ${status} ${Http.STATUS_CODES[status] ?? ""}\r\nConnection: close\r\nContent-Type: text/plain\r\n` +
      `Content-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`
  )
  setTimeout(() => socket.destroy(), 1000).unref()
}

const bytesOf = (data: RawData): Uint8Array =>
  Array.isArray(data) ? Buffer.concat(data) : data instanceof ArrayBuffer ? new Uint8Array(data) : data

const socketOf = (ws: NodeWebSocket, raw: Duplex): Link.Socket => ({
  bufferedAmount: () => ws.bufferedAmount,
  // `ws` keeps what it is given until it is written, and a sender may reuse its buffer once `send` returned: a copy
  send: (data) => ws.send(Buffer.from(data), { binary: true }),
  close: (code, reason) => ws.close(code, reason),
  terminate: () => ws.terminate(),
  writeError: () => raw.errored,
  pause: () => ws.pause(),
  resume: () => ws.resume()
})

const listenAt = (server: Http.Server, host: string, port: number, shown: string) =>
  Effect.callback<void, IpcError.IpcError>((resume) => {
    const onError = (cause: Error) =>
      resume(Effect.fail(IpcError.fromSystemError(cause, "Open", "cannot listen", shown)))
    server.once("error", onError)
    server.listen({ host, port, backlog: 1024 }, () => {
      server.off("error", onError)
      resume(Effect.void)
    })
  })

/**
 * Listens at `[::1]:port` beside a `localhost` listener's `127.0.0.1:port`,
 * handing what it accepts to `server`; nothing where this machine has no IPv6
 * loopback (nobody can listen there then); `AddressInUse` when another
 * process holds it.
 */
const holdLoopback6 = (server: Http.Server, port: number, shown: string) =>
  Effect.acquireRelease(
    Effect.callback<Net.Server | undefined, IpcError.IpcError>((resume) => {
      const v6 = Net.createServer((socket) => server.emit("connection", socket))
      v6.once("error", (cause: NodeJS.ErrnoException) =>
        cause.code === "EADDRNOTAVAIL" || cause.code === "EAFNOSUPPORT"
          ? resume(Effect.succeed(undefined))
          : resume(Effect.fail(
            IpcError.fromSystemError(cause, "Open", `cannot listen at [::1]:${port}, which localhost names too`, shown)
          )))
      v6.listen({ host: "::1", port, ipv6Only: true, backlog: 1024 }, () => resume(Effect.succeed(v6)))
    }),
    (v6) => Effect.sync(() => v6?.close())
  )

/**
 * Listens at `address` (`ws://host:port/path`); the listener, its token
 * file and every channel it accepted close with the scope.
 */
export const listen = (
  address: string,
  options: WsServerOptions = {}
): Effect.Effect<WsListener, IpcError.IpcError, Scope.Scope> =>
  Effect.gen(function*() {
    yield* WsAddress.optionsOk(options, address)
    const asked = yield* WsAddress.parse(address)
    // the address shown: with the port actually bound, once bound (`ws://127.0.0.1:0/x` picks a free port)
    let parsed = asked
    let shown = asked.redacted
    if (!parsed.loopback && options.allowRemote !== true) {
      return yield* IpcError.make(
        "PermissionDenied",
        `${parsed.host} is not a loopback address: a ws:// listener serves this machine only unless allowRemote is set`,
        shown
      )
    }
    if (options.allowRemote === true && options.allowedHosts === undefined) {
      return yield* IpcError.make(
        "InvalidOption",
        "allowRemote needs allowedHosts: the Host names this listener serves (the DNS rebinding check)",
        shown
      )
    }
    const userToken = options.token ?? parsed.token
    const token = userToken ?? TokenFile.generate()
    if (!WsAddress.isValidToken(token)) {
      return yield* WsAddress.invalidToken(options.token !== undefined, shown)
    }
    const weakness = userToken === undefined || options.allowWeakToken === true
      ? undefined
      : Strength.weakness(userToken)
    if (weakness !== undefined) {
      return yield* IpcError.make(
        "InvalidOption",
        `the token given ${
          options.token === undefined ? "in the address" : "in the options"
        } is weak: ${weakness}; leave it out for a fresh one (TokenFile.generate()), or set allowWeakToken`,
        shown
      )
    }
    const expected = digest(token)
    const maxPending = options.maxPendingHandshakes ?? DEFAULT_MAX_PENDING_HANDSHAKES
    // Infinity: no limit, asked for (as `TransportOptions.checkSizes` takes it, and says in its errors)
    if (maxPending !== Infinity && (!Number.isSafeInteger(maxPending) || maxPending < 1)) {
      return yield* IpcError.make(
        "InvalidOption",
        `maxPendingHandshakes must be a positive whole number or Infinity, got ${String(maxPending)}`,
        shown
      )
    }
    const handshakeTimeout = Duration.toMillis(Duration.fromInputUnsafe(options.handshakeTimeout ?? "10 seconds"))
    const allowed = options.allowedOrigins
    const originAllowed = typeof allowed === "function"
      ? allowed
      : ((list: ReadonlySet<string>) => (origin: string) => list.has(normalOrigin(origin)))(
        new Set((allowed ?? []).map(normalOrigin))
      )
    const extraHosts = new Set((options.allowedHosts ?? []).map((h) => h.toLowerCase()))
    const hostAllowed = (host: string | undefined): boolean => {
      const name = host === undefined ? undefined : hostNameOf(host)
      return name !== undefined && (extraHosts.has(name) || WsAddress.isLoopbackHost(name))
    }

    const refusalOf = (req: Http.IncomingMessage, offered: ReadonlyArray<string>): Refusal | undefined => {
      const peer = `${req.socket.remoteAddress}:${req.socket.remotePort}`
      if (!hostAllowed(req.headers.host)) {
        return {
          code: WsProtocol.CloseCode.originRefused,
          status: 403,
          text: "host not allowed",
          detail: `refused ${peer}: Host ${JSON.stringify(req.headers.host ?? "")} is not allowed`
        }
      }
      const origin = req.headers.origin
      // a predicate that throws allows nothing: refused at once (it left the handshake hanging, unsaid, until
      // handshakeTimeout), and the log says why
      let thrown: string | undefined
      let allowedOrigin = origin === undefined
      if (origin !== undefined) {
        try {
          allowedOrigin = originAllowed(origin) === true
        } catch (cause) {
          thrown = cause instanceof Error ? cause.message : String(cause)
        }
      }
      if (!allowedOrigin) {
        return {
          code: WsProtocol.CloseCode.originRefused,
          status: 403,
          text: "origin not allowed",
          detail: `refused ${peer}: origin ${JSON.stringify(origin)} is not allowed${
            thrown === undefined ? "" : ` (the allowedOrigins function threw: ${thrown})`
          }`
        }
      }
      const given = tokenOf(req, offered)
      if (!sameToken(given, expected)) {
        return {
          code: WsProtocol.CloseCode.tokenRefused,
          status: 401,
          text: "token missing or wrong",
          detail: `refused ${peer}${origin === undefined ? "" : ` (origin ${origin})`}: token ${
            given === undefined ? "missing" : "wrong"
          }`
        }
      }
      return undefined
    }

    const server = Http.createServer({
      headersTimeout: handshakeTimeout,
      requestTimeout: handshakeTimeout,
      connectionsCheckingInterval: Math.max(100, Math.min(handshakeTimeout, 1000))
    }, (_req, res) => {
      res.writeHead(426, { Connection: "close", "Content-Type": "text/plain" })
      res.end("this is an effect-ipc WebSocket endpoint")
    })
    // the decision of each upgrade request, read by handleProtocols
    const chosen = new WeakMap<Http.IncomingMessage, string | false>()
    const wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      // `ws` takes 0 for no limit: a limit of 0 (empty messages only) is kept as 1 byte, never none
      maxPayload: Math.max(1, options.maxMessageSize ?? Link.DEFAULT_MAX_MESSAGE_SIZE),
      handleProtocols: (_protocols, req) => chosen.get(req) ?? false
    })
    // refusals are all counted, but only the first of each minute are logged one by one (a flood
    // would otherwise write a warning per connection): the rest are summed up once a minute
    const noteRefusal = yield* Observability.refusals(shown)
    const acceptor = yield* Transport.makeAcceptor(shown, { refused: noteRefusal })

    const sockets = new Set<Duplex>()
    const open = new Set<IpcChannel.IpcChannel>()
    let tokenFile: string | undefined

    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        yield* acceptor.shutdown
        const closed = Effect.callback<void>((resume) => {
          server.close(() => resume(Effect.void))
          server.closeAllConnections()
        })
        // each channel says goodbye (close 1000) and ends once its peer answers (or after its linger)
        yield* Effect.forEach(open, (channel) => Effect.andThen(channel.close, channel.closed), {
          concurrency: "unbounded",
          discard: true
        }).pipe(Effect.timeout("5 seconds"), Effect.ignore)
        for (const socket of sockets) socket.destroy()
        yield* closed.pipe(Effect.timeout("5 seconds"), Effect.ignore)
        wss.close()
        if (tokenFile !== undefined) TokenFile.removeIfOurs(tokenFile, token)
      })
    )

    // each connection is served in a fiber of this listener's scope, with the caller's services
    const connections = yield* FiberSet.make<void, never>()
    const runConnection = yield* FiberSet.runtime(connections)<never>()

    const track = (socket: Duplex) => {
      sockets.add(socket)
      socket.once("close", () => sockets.delete(socket))
    }
    // connections not yet a channel (the handshake to come, or a refusal being said), oldest first
    const pending = new Map<Duplex, string>()
    server.on("connection", (socket: Net.Socket) => {
      track(socket)
      socket.on("error", () => {})
      // over the cap, the connection that has waited longest goes: a flood holds at most maxPending
      // descriptors, and a client that completes its handshake in a round trip still gets through
      const oldest = pending.size >= maxPending ? pending.entries().next().value : undefined
      if (oldest !== undefined) {
        const [dropped, peer] = oldest
        pending.delete(dropped)
        dropped.destroy()
        const detail = `dropped ${peer}: the oldest of ${maxPending} pending handshakes (maxPendingHandshakes)`
        void runConnection(noteRefusal(IpcError.make("PeerRejected", detail, shown)))
      }
      pending.set(socket, `${socket.remoteAddress}:${socket.remotePort}`)
      socket.once("close", () => pending.delete(socket))
      // a connection that has not upgraded in time is dropped (headersTimeout only checks now and then)
      const timer = setTimeout(() => {
        if (!upgraded.has(socket)) socket.destroy()
      }, handshakeTimeout)
      timer.unref()
      socket.once("close", () => clearTimeout(timer))
    })
    const upgraded = new WeakSet<Duplex>()

    const upgrade = (req: Http.IncomingMessage, socket: Duplex, head: Buffer) =>
      Effect.gen(function*() {
        socket.on("error", () => {})
        if ((req.url ?? "/").split("?")[0] !== parsed.path) return reject(socket, 404, "no endpoint at this path")
        const offered = protocolsOf(req.headers["sec-websocket-protocol"])
        const refusal = refusalOf(req, offered)
        if (refusal !== undefined) {
          // counted and logged (with the caller's services); the token is never in the detail
          yield* noteRefusal(IpcError.make("PeerRejected", refusal.detail, shown))
          if (!offered.includes(WsProtocol.refusedSubprotocol)) return reject(socket, refusal.status, refusal.text)
          chosen.set(req, WsProtocol.refusedSubprotocol)
          upgraded.add(socket)
          return wss.handleUpgrade(req, socket, head, (refused) => {
            refused.on("error", () => {})
            // nothing more is read from it: what it sends now waits in the kernel, where `ws` buffered a message
            // of up to maxMessageSize per refused client for the 2 s below (64 of them held 1.4 GB)
            refused.pause()
            refused.close(refusal.code, refusal.text)
            setTimeout(() => refused.terminate(), 2000).unref()
          })
        }
        chosen.set(req, offered.includes(WsProtocol.subprotocol) ? WsProtocol.subprotocol : false)
        upgraded.add(socket)
        const ws = yield* Effect.callback<NodeWebSocket | undefined>((resume) => {
          // a handshake ws rejects (bad key or version) ends the socket without calling back
          const onClose = () => resume(Effect.succeed(undefined))
          socket.once("close", onClose)
          wss.handleUpgrade(req, socket, head, (accepted) => {
            socket.off("close", onClose)
            resume(Effect.succeed(accepted))
          })
        })
        if (ws === undefined) return
        pending.delete(socket)
        const remote = `${req.socket.remoteAddress}:${req.socket.remotePort}`
        const origin = req.headers.origin
        const peer: IpcChannel.PeerInfo = {
          description: `${remote}${origin === undefined ? "" : ` (origin ${origin})`}`
        }
        const link = Link.make(socketOf(ws, req.socket), shown, peer, options)
        ws.on("message", (data) => link.message(bytesOf(data)))
        ws.on("error", (error) => link.error(Link.socketError(error, shown)))
        ws.on("close", (code, reason) => link.closed(code, reason.toString()))
        open.add(link.channel)
        yield* acceptor.admit(link.channel)
        yield* link.channel.closed
        open.delete(link.channel)
      })
    server.on("upgrade", (req: Http.IncomingMessage, socket: Duplex, head: Buffer) => {
      track(socket)
      void runConnection(upgrade(req, socket, head))
    })
    server.on("clientError", (_error, socket: Duplex) => socket.destroy())
    server.on("error", () => {})

    yield* listenAt(server, parsed.bindHost, parsed.port, shown)
    const bound = server.address()
    if (parsed.port === 0 && bound !== null && typeof bound === "object") {
      parsed = { ...parsed, port: bound.port, url: WsAddress.format({ ...parsed, port: bound.port }) }
      shown = WsAddress.format(parsed)
      parsed = { ...parsed, redacted: shown }
    }
    // `localhost` names ::1 too (first, in Debian's /etc/hosts): held as well, or another user could listen at
    // [::1] on this port and be given the token by every client (a page, a WsClient) that dials the name
    if (asked.host === "localhost") yield* holdLoopback6(server, parsed.port, shown)
    if (options.tokenFile !== false) {
      const file = options.tokenFile ?? (yield* TokenFile.pathOf(parsed))
      // a given path may name a user's own file (a typo, a reused name): written over, then removed at close
      if (options.tokenFile !== undefined) yield* TokenFile.refuseOther(file)
      yield* TokenFile.write(file, token)
      tokenFile = file
      // the files of killed servers in this user's token directory (a given file's directory is not ours to sweep)
      if (options.tokenFile === undefined) {
        const swept = Record.sweep(Path.dirname(file))
        if (swept.damaged.length > 0) {
          yield* Effect.logWarning(
            `removed damaged token files (no client could use them): ${swept.damaged.join(", ")}`
          )
        }
      }
    }
    yield* Effect.logDebug(
      `ws:// listening at ${shown}${tokenFile === undefined ? "" : `; its token is in ${tokenFile}`}`
    )
    return {
      ...acceptor.listener,
      address: shown,
      token,
      tokenFile,
      url: WsAddress.format(parsed, token)
    }
  })
