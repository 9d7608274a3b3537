/**
 * nng from Node with nothing of effect-ipc or effect: the floor under the
 * `nng` contender. A pair1 socket over ipc through koffi, woken the same way
 * the transport is (nng's `recv-fd`, and `send-fd` while nng is full, watched
 * by libuv poll handles), each message taken with `nng_recvmsg` and copied
 * into a fresh buffer, each send one `nng_send`. Its figures against C's on
 * the same library are what Node's event loop and koffi cost; the `nng`
 * Channel's against them are what effect-ipc and effect add.
 *
 *   node bench/nng-node.ts peer echo|sink URL   (the servers, each in a process of its own)
 */
import koffi from "koffi"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import type { Contender } from "./contenders.ts"
import type { OneWayRun, Row } from "./report.ts"
import {
  allReady,
  clockEvery,
  decodeCounts,
  END,
  makePayload,
  makeTempDir,
  nodeScript,
  READY,
  type ReadyProcess,
  removeTempDir,
  SinkCounter,
  spawnReady
} from "./shared.ts"

const script = fileURLToPath(import.meta.url)

interface Socket {
  readonly id: number
}
type Ptr = bigint
type KoffiPoll = ReturnType<typeof koffi.node.poll>

/** The few nng calls the floor needs, declared under names of their own (the transport declares nng's). */
const bind = () => {
  const lib = koffi.load(process.env["EFFECT_IPC_LIBNNG"] || "libnng.so.1")
  const libc = koffi.load("libc.so.6")
  const S = "bench_nng_socket"
  try {
    koffi.struct(S, { id: "uint32_t" })
    koffi.opaque("bench_nng_msg")
    koffi.opaque("bench_nng_aio")
    koffi.proto("void bench_nng_aio_cb(void *arg)")
  } catch {
    // declared already
  }
  return {
    aioCallback: koffi.pointer(koffi.resolve("bench_nng_aio_cb")),
    aioAlloc: lib.func("int nng_aio_alloc(_Out_ bench_nng_aio **a, bench_nng_aio_cb *cb, void *arg)") as (
      out: Array<Ptr | null>,
      cb: unknown,
      arg: null
    ) => number,
    aioFree: lib.func("void nng_aio_free(bench_nng_aio *a)") as (a: Ptr) => void,
    aioCancel: lib.func("void nng_aio_cancel(bench_nng_aio *a)") as (a: Ptr) => void,
    aioResult: lib.func("int nng_aio_result(bench_nng_aio *a)") as (a: Ptr) => number,
    aioGetMsg: lib.func("bench_nng_msg *nng_aio_get_msg(bench_nng_aio *a)") as (a: Ptr) => Ptr,
    recvAio: lib.func(`void nng_recv_aio(${S} s, bench_nng_aio *a)`) as (s: Socket, a: Ptr) => void,
    open: lib.func(`int nng_pair1_open(_Out_ ${S} *s)`) as (out: { id: number }) => number,
    listen: lib.func(`int nng_listen(${S} s, const char *url, void *l, int flags)`) as (
      s: Socket,
      url: string,
      l: null,
      flags: number
    ) => number,
    dial: lib.func(`int nng_dial(${S} s, const char *url, void *d, int flags)`) as (
      s: Socket,
      url: string,
      d: null,
      flags: number
    ) => number,
    close: lib.func(`int nng_close(${S} s)`) as (s: Socket) => number,
    getInt: lib.func(`int nng_socket_get_int(${S} s, const char *name, _Out_ int *value)`) as (
      s: Socket,
      name: string,
      out: Array<number>
    ) => number,
    send: lib.func(`int nng_send(${S} s, const void *data, size_t size, int flags)`) as (
      s: Socket,
      data: Uint8Array,
      size: number,
      flags: number
    ) => number,
    recvmsg: lib.func(`int nng_recvmsg(${S} s, _Out_ bench_nng_msg **m, int flags)`) as (
      s: Socket,
      out: Array<Ptr | null>,
      flags: number
    ) => number,
    msgLen: lib.func("size_t nng_msg_len(bench_nng_msg *m)") as (m: Ptr) => number,
    msgBody: lib.func("void *nng_msg_body(bench_nng_msg *m)") as (m: Ptr) => Ptr,
    msgFree: lib.func("void nng_msg_free(bench_nng_msg *m)") as (m: Ptr) => void,
    memcpy: libc.func("void *memcpy(void *dst, const void *src, size_t size)") as (
      dst: Uint8Array,
      src: Ptr,
      size: number
    ) => unknown
  }
}
type Bindings = ReturnType<typeof bind>

/** A listener between measurements. */
const ignore = (_message: Uint8Array): void => {}

const NONBLOCK = 2
const EAGAIN = 8

const check = (rv: number, what: string) => {
  if (rv !== 0) throw new Error(`nng-node: ${what} failed (nng error ${rv})`)
}

/**
 * How a socket learns that a message is there: nng's `recv-fd` on a libuv
 * poll handle, then `nng_recvmsg` until nothing is left (as transport-nng
 * does), or an `nng_recv_aio` whose completion koffi brings to the JS thread
 * (the nng thread that completes it waits there until the callback returns).
 */
export type Wake = "poll" | "aio"

/** `m`'s body copied into a fresh buffer; `m` freed. */
const copyOut = (b: Bindings, m: Ptr): Uint8Array => {
  const length = b.msgLen(m)
  const copy = Buffer.allocUnsafe(length)
  if (length > 0) b.memcpy(copy, b.msgBody(m), length)
  b.msgFree(m)
  return copy
}

/**
 * Receives on `s` through an aio: `onMessage` gets each message, copied.
 * `stop` cancels the receive and resolves once its callback has run (an aio
 * stopped or freed while its callback waits for the JS thread deadlocks).
 */
const receiveByAio = (b: Bindings, s: Socket, onMessage: (message: Uint8Array) => void, onWake: () => void) => {
  const out: Array<Ptr | null> = [null]
  let aio: Ptr = 0n
  let stopped: (() => void) | undefined
  const callback = koffi.register(() => {
    const rv = b.aioResult(aio)
    if (rv !== 0 || stopped !== undefined) {
      if (rv === 0) b.msgFree(b.aioGetMsg(aio))
      return stopped?.()
    }
    const message = copyOut(b, b.aioGetMsg(aio))
    b.recvAio(s, aio)
    onWake()
    onMessage(message)
  }, b.aioCallback)
  check(b.aioAlloc(out, callback, null), "aio_alloc")
  aio = out[0]!
  b.recvAio(s, aio)
  return {
    stop: () =>
      new Promise<void>((resolve) => {
        stopped = () => {
          // freed on the next turn: the nng thread that ran the callback finishes with the aio first
          setImmediate(() => {
            b.aioFree(aio)
            koffi.unregister(callback)
            resolve()
          })
        }
        b.aioCancel(aio)
      })
  }
}

/** A pair1 socket at `url`, its receives woken by `wake`: `onMessage` gets each message, copied. */
const openSocket = (
  b: Bindings,
  url: string,
  how: "listen" | "dial",
  onMessage: (message: Uint8Array) => void,
  onWake: () => void = () => {},
  wake: Wake = "poll"
) => {
  const out = { id: 0 }
  check(b.open(out), "open")
  const s: Socket = { id: out.id }
  check(how === "listen" ? b.listen(s, url, null, 0) : b.dial(s, url, null, 0), how)
  const sendFd = [0]
  check(b.getInt(s, "send-fd", sendFd), "send-fd")
  let poll: KoffiPoll | undefined
  let byAio: ReturnType<typeof receiveByAio> | undefined
  if (wake === "aio") byAio = receiveByAio(b, s, onMessage, onWake)
  else {
    const fd = [0]
    check(b.getInt(s, "recv-fd", fd), "recv-fd")
    const msg: Array<Ptr | null> = [null]
    poll = koffi.node.poll(fd[0]!, { readable: true }, () => {
      onWake()
      while (b.recvmsg(s, msg, NONBLOCK) === 0) onMessage(copyOut(b, msg[0]!))
    })
  }
  let writable: KoffiPoll | undefined
  return {
    /** Sends `message` if nng can take it now: false when it is full (see `whenWritable`). */
    trySend: (message: Uint8Array): boolean => {
      const rv = b.send(s, message, message.byteLength, NONBLOCK)
      if (rv === EAGAIN) return false
      check(rv, "send")
      return true
    },
    /** Calls `then` once, when nng can take a message again. */
    whenWritable: (then: () => void) => {
      const ready = () => {
        writable!.stop()
        then()
      }
      if (writable === undefined) writable = koffi.node.poll(sendFd[0]!, { readable: true }, ready)
      else writable.start({ readable: true }, ready)
    },
    close: async () => {
      poll?.close()
      await byAio?.stop()
      writable?.close()
      b.close(s)
    }
  }
}

/** Starts `nng-node.ts peer ROLE URL WAKE` and resolves with it once it listens. */
const startPeer = (role: "echo" | "sink", url: string, wake: Wake): Promise<ReadyProcess> =>
  spawnReady(...nodeScript(script, ["peer", role, url, wake]), `nng-node ${role}`).ready

/** The Node floor contender: echo and sink servers in child processes, measured from this one, each woken by `wake`. */
export const openNngNode = async (row: Row, wake: Wake = "poll"): Promise<Contender> => {
  const b = bind()
  const dir = makeTempDir("effect-ipc-bench-nng-node-")
  const url = (role: string) => `ipc://${Path.join(dir, `${role}.ipc`)}`
  const peers = await allReady([startPeer("echo", url("echo"), wake), startPeer("sink", url("sink"), wake)]).catch(
    (error: unknown): never => {
      removeTempDir(dir)
      throw error
    }
  )
  let onEcho: (message: Uint8Array) => void = ignore
  let onReport: (message: Uint8Array) => void = ignore
  const socket = openSocket(b, url("echo"), "dial", (message) => onEcho(message), undefined, wake)
  const sink = openSocket(b, url("sink"), "dial", (message) => onReport(message), undefined, wake)
  const payload = makePayload(row.size)
  return {
    row,
    countBytes: true,
    pingPong: (n, warmup) =>
      new Promise((resolve, reject) => {
        const samples = new Float64Array(n)
        let i = -warmup
        let t0 = 0
        const send = () => {
          t0 = performance.now()
          // nng may not have the pipe to the server ready yet right after the dial
          if (!socket.trySend(payload)) socket.whenWritable(send)
        }
        onEcho = (message) => {
          const t = performance.now()
          if (message.byteLength !== payload.byteLength) return reject(new Error("an echo had the wrong length"))
          if (i >= 0) samples[i] = t - t0
          i++
          if (i < n) return send()
          onEcho = ignore
          resolve(samples)
        }
        send()
      }),
    oneWay: (seconds) =>
      new Promise<OneWayRun>((resolve) => {
        const every = clockEvery(payload.byteLength)
        const start = performance.now()
        const deadline = start + seconds * 1000
        let sent = 0
        onReport = (message) => {
          const elapsed = (performance.now() - start) / 1000
          onReport = ignore
          const counts = decodeCounts(message)
          resolve({ sent, received: counts.messages, bytes: counts.bytes, seconds: elapsed, batches: counts.batches })
        }
        const pump = (): void => {
          while (sent % every !== 0 || performance.now() < deadline) {
            if (!sink.trySend(payload)) return sink.whenWritable(pump)
            sent++
          }
          if (!sink.trySend(END)) return sink.whenWritable(pump)
        }
        pump()
      }),
    close: async () => {
      await Promise.all([socket.close(), sink.close()])
      await Promise.all(peers.map((peer) => peer.stop()))
      removeTempDir(dir)
    }
  }
}

if (process.argv[1] === script && process.argv[2] === "peer") {
  const [role, url, wake] = process.argv.slice(3)
  const b = bind()
  const counter = new SinkCounter()
  const answer = (message: Uint8Array) => {
    if (!socket.trySend(message)) socket.whenWritable(() => answer(message))
  }
  const socket = openSocket(
    b,
    url!,
    "listen",
    (message) => {
      if (role === "echo") return answer(message)
      const report = counter.count(message.byteLength)
      if (report !== undefined) answer(report)
    },
    () => counter.batch(),
    wake === "aio" ? "aio" : "poll"
  )
  process.stdout.write(`${READY}\n`)
  process.stdin.on("end", () => {
    void socket.close().then(() => process.exit(0))
  })
  process.stdin.resume()
}
