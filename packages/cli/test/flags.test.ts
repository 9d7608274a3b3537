/**
 * Flags the CLI accepts whose effect no other test observes: each check here
 * fails if the flag were dropped on its way to the transport (nng's buffers
 * reconnect backoff and most connections, `pub --delay`, `shm gc --dir`), and a
 * negative `pub --delay` / `--interval` (or `--max-connections 0`) is a usage error, not taken as 0.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { cli, runCli } from "./helpers.ts"

const anyPort = "tcp://127.0.0.1:0"

/** nng's SP header of a push0 peer: 0, "SP", version 0, protocol 0x50 (push0), two reserved zeros. */
const PUSH0_HEADER = Uint8Array.of(0, 0x53, 0x50, 0, 0x00, 0x50, 0, 0)

/** A plain TCP connection to `port` that says it is an nng push0 peer: what it received, and whether it was closed. */
const pushPeer = (port: number) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly socket: Net.Socket; received: Buffer; closed: boolean }>((resume) => {
      const socket = Net.connect(port, "127.0.0.1")
      const peer = { socket, received: Buffer.alloc(0), closed: false }
      socket.on("data", (data) => void (peer.received = Buffer.concat([peer.received, data])))
      socket.on("error", () => {})
      socket.on("close", () => void (peer.closed = true))
      socket.once("connect", () => {
        socket.write(PUSH0_HEADER)
        resume(Effect.succeed(peer))
      })
    }),
    (peer) => Effect.sync(() => peer.socket.destroy())
  )

describe("effect-ipc nng: the transport flags reach nng", () => {
  it.live(
    "--recv-buffer and --send-buffer over libnng's limit are refused, naming the option",
    () =>
      Effect.gen(function*() {
        const recv = yield* runCli(["nng", "pull", "--listen", anyPort, "--recv-buffer", "100000000"])
        assert.deepStrictEqual(recv, {
          code: 1,
          stdout: "",
          stderr: "effect-ipc: InvalidOption: recvBuffer 100000000 is over 8192 messages, libnng's limit\n"
        })
        const send = yield* runCli([
          "--json",
          "nng",
          "push",
          "--listen",
          anyPort,
          "--data",
          "x",
          "--send-buffer",
          "9000"
        ])
        assert.strictEqual(send.code, 1)
        assert.deepStrictEqual(JSON.parse(send.stdout), {
          event: "error",
          reason: "InvalidOption",
          detail: "sendBuffer 9000 is over 8192 messages, libnng's limit"
        })
      }),
    60_000
  )

  it.live(
    "--reconnect-min and --reconnect-max are both taken: a min over the max is refused with both",
    () =>
      Effect.gen(function*() {
        const ran = yield* runCli([
          "nng",
          "sub",
          "--dial",
          "tcp://127.0.0.1:1",
          "--reconnect-min",
          "500",
          "--reconnect-max",
          "10"
        ])
        assert.deepStrictEqual(ran, {
          code: 1,
          stdout: "",
          stderr:
            "effect-ipc: InvalidOption: reconnect.min 500 is longer than reconnect.max 10 (the backoff goes from min up to max)\n"
        })
      }),
    60_000
  )

  it.live(
    "pub --delay waits before publishing: a subscriber started after it is ready still hears it",
    () =>
      Effect.gen(function*() {
        // without the delay the one message is published (and lost) before the subscriber can connect
        const pub = yield* cli("nng", "pub", "--listen", anyPort, "--data", "late", "--delay", "10000")
        yield* pub.ready("publishing on")
        const address = /publishing on (\S+)/.exec(pub.stderr())![1]!
        const sub = yield* cli("nng", "sub", "--dial", address, "--count", "1")
        assert.strictEqual(yield* sub.exit, 0, sub.stderr())
        assert.strictEqual(sub.stdout(), "late\n")
        assert.strictEqual(yield* pub.exit, 0, pub.stderr())
      }).pipe(Effect.scoped),
    60_000
  )

  it.live("a negative pub --delay or --interval, or req --pool 0, is a usage error", () =>
    Effect.gen(function*() {
      const delay = yield* runCli(["nng", "pub", "--listen", anyPort, "--data", "x", "--delay", "-5"])
      assert.deepStrictEqual(delay, {
        code: 1,
        stdout: "",
        stderr:
          `effect-ipc: Usage: Invalid value for flag --delay: "-5". Expected: --delay must be 0 or more (got -5) (effect-ipc nng pub --help for more)\n`
      })
      const interval = yield* runCli(["--json", "nng", "pub", "--listen", anyPort, "--data", "x", "--interval", "-1"])
      assert.strictEqual(interval.code, 1)
      assert.deepStrictEqual(JSON.parse(interval.stdout), {
        event: "error",
        reason: "Usage",
        detail: `Invalid value for flag --interval: "-1". Expected: --interval must be 0 or more (got -1)`
      })
      // a request pool of no sockets: a usage error too (it was an InvalidOption from the requester)
      const pool = yield* runCli(["nng", "req", "--dial", anyPort, "--data", "x", "--pool", "0"])
      assert.deepStrictEqual(pool, {
        code: 1,
        stdout: "",
        stderr:
          `effect-ipc: Usage: Invalid value for flag --pool: "0". Expected: --pool must be at least 1 (got 0) (effect-ipc nng req --help for more)\n`
      })
    }), 60_000)
})

describe("effect-ipc nng --max-connections", () => {
  it.live(
    "reaches the listeners: of three connections to a puller with 1, the newer two are closed",
    () =>
      Effect.gen(function*() {
        const pull = yield* cli("nng", "pull", "--listen", anyPort, "--max-connections", "1")
        yield* pull.ready("pulling on")
        const port = Number(/pulling on tcp:\/\/127\.0\.0\.1:(\d+)/.exec(pull.stderr())![1])
        const peers = yield* Effect.forEach([0, 1, 2], () => pushPeer(port))
        const closed = () => peers.filter((peer) => peer.closed).length
        // within a sweep or a few (200 ms each); without the limit none would ever be closed
        const settled = yield* Effect.gen(function*() {
          while (closed() < 2) yield* Effect.sleep("20 millis")
        }).pipe(Effect.timeoutOption("20 seconds"))
        assert.isTrue(settled._tag === "Some", `closed ${closed()} of 3 connections`)
        assert.strictEqual(closed(), 2)
        // the one kept is a connection nng took: it answered with a pull0 header
        const kept = peers.find((peer) => !peer.closed)!
        assert.deepStrictEqual([...kept.received.subarray(0, 8)], [0, 0x53, 0x50, 0, 0x00, 0x51, 0, 0])
      }).pipe(Effect.scoped),
    60_000
  )

  it.live("of less than 1 is a usage error", () =>
    Effect.gen(function*() {
      const zero = yield* runCli(["nng", "pull", "--listen", anyPort, "--max-connections", "0"])
      assert.deepStrictEqual(zero, {
        code: 1,
        stdout: "",
        stderr:
          `effect-ipc: Usage: Invalid value for flag --max-connections: "0". Expected: --max-connections must be at least 1 (got 0) (effect-ipc nng pull --help for more)\n`
      })
      const negative = yield* runCli(["--json", "nng", "rep", "--listen", anyPort, "--max-connections", "-3"])
      assert.strictEqual(negative.code, 1)
      assert.deepStrictEqual(JSON.parse(negative.stdout), {
        event: "error",
        reason: "Usage",
        detail:
          `Invalid value for flag --max-connections: "-3". Expected: --max-connections must be at least 1 (got -3)`
      })
    }), 60_000)
})

describe("effect-ipc shm gc --dir", () => {
  it.live(
    "removes a dead listener's socket file in the directory given, and fails on one missing",
    () =>
      Effect.gen(function*() {
        const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-gcdir-"))
        yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true })))
        const name = `gcdir-${process.pid}`
        const socket = Path.join(dir, `${name}.sock`)
        // a socket file whose listener is gone (a process that bound it and exited without removing it)
        ChildProcess.execFileSync("python3", [
          "-c",
          "import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])",
          socket
        ])
        assert.isTrue(Fs.lstatSync(socket).isSocket())
        const dry = yield* runCli(["--json", "shm", "gc", "--dir", dir, "--prefix", name, "--dry-run"])
        assert.strictEqual(dry.code, 0, dry.stderr)
        assert.deepStrictEqual(JSON.parse(dry.stdout), {
          event: "gc",
          dryRun: true,
          removed: [{ name: `${name}.sock`, kind: "socket", reason: "its shm:// listener is gone" }],
          kept: 0,
          others: 0
        })
        assert.isTrue(Fs.existsSync(socket))
        const gc = yield* runCli(["shm", "gc", "--dir", dir, "--prefix", name])
        assert.deepStrictEqual(gc, {
          code: 0,
          stdout: `removed socket ${name}.sock: its shm:// listener is gone\nremoved 1, kept 0\n`,
          stderr: ""
        })
        assert.isFalse(Fs.existsSync(socket))
        const missing = Path.join(dir, "missing")
        const none = yield* runCli(["shm", "gc", "--dir", missing, "--prefix", name])
        assert.deepStrictEqual(none, {
          code: 1,
          stdout: "",
          stderr:
            `effect-ipc: NotFound: cannot read the shm:// rendezvous directory ${missing}: no such file or directory\n`
        })
      }).pipe(Effect.scoped),
    60_000
  )
})
