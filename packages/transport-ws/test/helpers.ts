/** Test helpers of the ws:// transport: ports, token files, raw TCP connections. */
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import * as TokenFile from "../src/TokenFile.ts"
import * as WsAddress from "../src/WsAddress.ts"

// ports below Linux's ephemeral range (32768-60999), so that no client socket's local port takes one;
// each test file starts at its own random point
let next = 21_000 + Math.floor(Math.random() * 8_000)
const used: Array<number> = []

/** The TCP ports something listens on now (`/proc/net/tcp` and `tcp6`, state 0A). */
const listening = (): ReadonlySet<number> => {
  const ports = new Set<number>()
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    const text = Fs.existsSync(table) ? Fs.readFileSync(table, "utf8") : ""
    for (const line of text.split("\n").slice(1)) {
      const [, local, , state] = line.trim().split(/\s+/)
      if (state === "0A" && local !== undefined) ports.add(parseInt(local.slice(local.lastIndexOf(":") + 1), 16))
    }
  }
  return ports
}

/**
 * A port for a fresh listener (tests that need the port before listening): one nothing listens on
 * (test files running beside this one, and other suites, pick from the same range).
 */
export const freshPort = (): number => {
  const taken = listening()
  do next = next >= 29_900 ? 21_000 : next + 1
  while (taken.has(next))
  used.push(next)
  return next
}

/** A fresh `ws://127.0.0.1:<port>/<name>` address. */
export const freshAddress = (name = "t"): string => `ws://127.0.0.1:${freshPort()}/${name}`

/** The token file a listener at `address` writes. */
export const tokenFileOf = (raw: string): string =>
  TokenFile.pathIn(Effect.runSync(TokenFile.directory()), Effect.runSync(WsAddress.parse(raw)))

/** Removes the token files of this file's ports (peers killed with SIGKILL leave theirs behind). */
export const sweepTokenFiles = (): void => {
  const dir = Effect.runSync(TokenFile.directory())
  const ports = new Set(used.map(String))
  for (const file of Fs.readdirSync(dir)) {
    const match = /^ws-127\.0\.0\.1-(\d+)/.exec(file)
    if (match !== null && ports.has(match[1]!)) Fs.rmSync(Path.join(dir, file), { force: true })
  }
}

/** The number of open descriptors of this process. */
export const openFds = (): number => Fs.readdirSync("/proc/self/fd").length

/** A raw TCP connection to `port` on loopback, destroyed with the scope; what it receives is read (and dropped unless `collect`ed), so it sees the server's end. */
export const rawConnect = (to: number) =>
  Effect.acquireRelease(
    Effect.callback<Net.Socket, Error>((resume) => {
      const socket = Net.createConnection({ host: "127.0.0.1", port: to })
      socket.once("connect", () => resume(Effect.succeed(socket)))
      socket.once("error", (cause) => resume(Effect.fail(cause)))
    }),
    (socket) => Effect.sync(() => socket.destroy())
  ).pipe(Effect.tap((socket) =>
    Effect.sync(() => {
      socket.on("error", () => {})
      socket.resume()
    })
  ))

/** Completes when `socket` is closed by the other end (or was already). */
export const closedBy = (socket: Net.Socket): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    if (socket.closed) return resume(Effect.void)
    socket.once("close", () => resume(Effect.void))
  })

/** Everything `socket` receives, as text, until it closes. */
export const collect = (socket: Net.Socket): { readonly text: () => string } => {
  let text = ""
  socket.on("data", (chunk: Buffer) => (text += chunk.toString("latin1")))
  return { text: () => text }
}

/** The opening handshake of a WebSocket client, as raw HTTP. */
export const handshake = (
  path: string,
  to: number,
  headers: Readonly<Record<string, string>> = {}
): string =>
  [
    `GET ${path} HTTP/1.1`,
    `Host: 127.0.0.1:${to}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    "",
    ""
  ].join("\r\n")

/** A masked client frame: `opcode`, FIN set, `payload` (masking key 0: the payload is sent as is). */
export const frame = (opcode: number, payload: Uint8Array, fin = true): Uint8Array => {
  const length = payload.byteLength
  const header = length < 126 ? [(fin ? 0x80 : 0) | opcode, 0x80 | length] : length < 65536
    ? [(fin ? 0x80 : 0) | opcode, 0x80 | 126, length >> 8, length & 0xff]
    : [
      (fin ? 0x80 : 0) | opcode,
      0x80 | 127,
      0,
      0,
      0,
      0,
      (length >>> 24) & 0xff,
      (length >>> 16) & 0xff,
      (length >>> 8) & 0xff,
      length & 0xff
    ]
  return new Uint8Array([...header, 0, 0, 0, 0, ...payload])
}

/** Sets (undefined: unsets) the environment variable `name` until the scope closes. */
export const envFor = (name: string, value: string | undefined) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const before = process.env[name]
      if (value === undefined) delete process.env[name]
      else process.env[name] = value
      return before
    }),
    (before) =>
      Effect.sync(() => {
        if (before === undefined) delete process.env[name]
        else process.env[name] = before
      })
  )
