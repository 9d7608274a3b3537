/**
 * The only module of this package that makes native calls: libnng (and the
 * two libc functions needed around it) through koffi, loaded on first use.
 * Every function is declared once with a typed signature. Callers get values,
 * nng error codes (on the hot paths, where an Effect per message would cost
 * more than the call) or `IpcError`s, never exceptions.
 *
 * Nothing here blocks the JS thread for long: sends and receives are
 * `NNG_FLAG_NONBLOCK`, dialers start with `NNG_FLAG_NONBLOCK`, and the calls
 * that may wait for nng's own threads for long (`nng_close`, and
 * `nng_listener_start` when it resolves a host name) run once per socket on
 * the libuv threadpool, at most `MAX_ASYNC_CALLS` at once (koffi throws past
 * 256 in a process).
 * No JS function is ever handed to nng as a callback, so no nng thread ever
 * waits for the JS thread: closing can never deadlock.
 *
 * libnng is pinned in memory (`RTLD_NODELETE`): its threads outlive every JS
 * reference to it, and unmapping it under them at exit crashes the process.
 *
 * @internal
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Native from "@effect-ipc/core/Native"
import * as Effect from "effect/Effect"
import type { default as KoffiModule, LibraryHandle, node as KoffiNode } from "koffi"
import * as Net from "node:net"
import * as NngError from "../NngError.ts"

/** An nng socket, dialer, listener or pipe: nng's handles are `{ id }` structs passed by value. */
export interface Handle {
  readonly id: number
}

/** The protocols this package opens (`raw` variants route replies by header). */
export type Protocol = "req" | "rep" | "rep-raw" | "pub" | "sub" | "push" | "pull" | "pair"

/** A received message: its body, kind byte, header (raw sockets only) and the pipe it came through. */
export interface Received {
  readonly body: Uint8Array
  readonly kind: number | undefined
  readonly header: Uint8Array | undefined
  readonly pipe: number
}

/** `NNG_FLAG_NONBLOCK`. */
const NONBLOCK = 2
/** `NNG_DURATION_INFINITE`. */
export const INFINITE = -1
/** nng's error code for "would block". */
export const EAGAIN = NngError.Code.EAGAIN

type Ptr = bigint

/** An nng message built by `build` and still ours: sent with `trySendBuilt`, or freed with `dropBuilt`. */
export class Built {
  /** The nng message. */
  readonly message: Ptr
  /** Its body's length. */
  readonly byteLength: number
  constructor(message: Ptr, byteLength: number) {
    this.message = message
    this.byteLength = byteLength
  }
}

interface TlsBindings {
  readonly dialerSetPtr: (d: Handle, name: string, value: Ptr) => number
  readonly listenerSetPtr: (l: Handle, name: string, value: Ptr) => number
  readonly configAlloc: (out: Array<Ptr | null>, mode: number) => number
  readonly configFree: (cfg: Ptr) => void
  readonly configOwnCert: (cfg: Ptr, cert: string, key: string, pass: string | null) => number
  readonly configCaChain: (cfg: Ptr, chain: string, crl: string | null) => number
  readonly configAuthMode: (cfg: Ptr, mode: number) => number
  readonly configServerName: (cfg: Ptr, name: string) => number
}

interface Bindings {
  readonly version: string
  readonly strerror: (code: number) => string
  readonly open: Record<Protocol, (out: { id: number }) => number>
  readonly close: (s: Handle, done: (rv: number) => void) => void
  readonly socketSetInt: (s: Handle, name: string, value: number) => number
  readonly socketSetMs: (s: Handle, name: string, value: number) => number
  readonly socketSetSize: (s: Handle, name: string, value: number) => number
  readonly socketSetBytes: (s: Handle, name: string, value: Uint8Array, size: number) => number
  readonly socketGetInt: (s: Handle, name: string, out: Array<number>) => number
  readonly listenerCreate: (out: { id: number }, s: Handle, url: string) => number
  readonly listenerSetInt: (l: Handle, name: string, value: number) => number
  readonly listenerSetSize: (l: Handle, name: string, value: number) => number
  readonly listenerStart: (l: Handle, flags: number, done: (rv: number) => void) => void
  readonly listenerStartNow: (l: Handle, flags: number) => number
  readonly listenerGetInt: (l: Handle, name: string, out: Array<number>) => number
  readonly dialerCreate: (out: { id: number }, s: Handle, url: string) => number
  readonly dialerSetMs: (d: Handle, name: string, value: number) => number
  readonly dialerSetSize: (d: Handle, name: string, value: number) => number
  readonly dialerStart: (d: Handle, flags: number) => number
  /** nng's TLS configuration calls; absent from a libnng that does not export them. */
  readonly tls: TlsBindings | undefined
  readonly msgAlloc: (out: Array<Ptr | null>, size: number) => number
  readonly msgHeaderAppend: (m: Ptr, data: Uint8Array, size: number) => number
  readonly msgLen: (m: Ptr) => number
  readonly msgBody: (m: Ptr) => Ptr
  readonly msgHeaderLen: (m: Ptr) => number
  readonly msgHeader: (m: Ptr) => Ptr
  /** The id of the pipe `m` came through (`nng_msg_get_pipe(m).id`). */
  readonly msgPipeId: (m: Ptr) => number
  readonly msgFree: (m: Ptr) => void
  readonly sendmsg: (s: Handle, m: Ptr, flags: number) => number
  readonly send: (s: Handle, data: Uint8Array, size: number, flags: number) => number
  readonly recvmsg: (s: Handle, out: Array<Ptr | null>, flags: number) => number
  readonly pipeSocket: (p: Handle) => Handle
  readonly pipeClose: (p: Handle) => number
  readonly pipeGetUint64: (p: Handle, name: string, out: Array<bigint>) => number
  readonly pipeGetBool: (p: Handle, name: string, out: Array<boolean>) => number
  /** `nng_pipe_get_string`, the string's address kept (to be freed with `strfree`). */
  readonly pipeGetString: (p: Handle, name: string, out: Array<Ptr | null>) => number
  readonly pipeListener: (p: Handle) => Handle
  readonly strfree: (s: Ptr) => void
  readonly statsGet: (out: Array<Ptr | null>) => number
  readonly statsFree: (st: Ptr) => void
  readonly statChild: (st: Ptr) => Ptr | null
  readonly statNext: (st: Ptr) => Ptr | null
  readonly statName: (st: Ptr) => string
  readonly statType: (st: Ptr) => number
  readonly statFind: (st: Ptr, name: string) => Ptr | null
  readonly statValue: (st: Ptr) => number | bigint
  readonly memcpy: (dst: Uint8Array, src: Ptr, size: number) => unknown
  /** `memcpy` the other way: into native memory. */
  readonly copyIn: (dst: Ptr, src: Uint8Array, size: number) => unknown
  /** `madvise`, on Linux only (see `fresh`). */
  readonly madvise: ((addr: Ptr, length: number, advice: number) => number) | undefined
  /** `dup3`, on Linux only (see `Nng.replaceFd`). */
  readonly dup3: ((from: number, to: number, flags: number) => number) | undefined
}

/**
 * Native calls this module runs on the libuv threadpool at once, at most.
 * koffi runs at most 256 asynchronous calls per process (shared with every
 * other library in it) and throws beyond; calls past this bound wait their turn.
 */
export const MAX_ASYNC_CALLS = 32

let asyncRunning = 0
const asyncWaiting: Array<() => void> = []

const nextAsync = () => {
  while (asyncRunning < MAX_ASYNC_CALLS && asyncWaiting.length > 0) asyncWaiting.shift()!()
}

/**
 * Runs `start` (which begins one asynchronous koffi call and calls `finish`
 * with its result) when fewer than `MAX_ASYNC_CALLS` are running; `done` gets
 * the result; an `urgent` call (a listener start, which someone waits for)
 * goes before the waiting closes. When koffi is at its own limit all the same
 * (other libraries' calls), the call is tried again once one of ours ends, or
 * after 10 ms.
 */
const throttled = (
  start: (finish: (rv: number) => void) => void,
  done: (rv: number) => void,
  urgent = false
): void => {
  const go = () => {
    asyncRunning++
    let finished = false
    try {
      start((rv) => {
        if (finished) return
        finished = true
        asyncRunning--
        nextAsync()
        done(rv)
      })
    } catch (cause) {
      // the call never started
      finished = true
      asyncRunning--
      if (!String(cause).includes("Too many asynchronous calls")) return done(NngError.Code.EINTERNAL)
      // koffi is at its limit with other libraries' calls: wait for one of ours, or a moment
      asyncWaiting.unshift(go)
      if (asyncRunning === 0) setTimeout(nextAsync, 10)
    }
  }
  if (asyncRunning < MAX_ASYNC_CALLS) go()
  else if (urgent) asyncWaiting.unshift(go)
  else asyncWaiting.push(go)
}

/** The callback of an asynchronous koffi call: its result, or `EINTERNAL` when koffi reports an error. */
const onThreadpool = (done: (rv: number) => void) => (error: unknown, rv: number) =>
  done(error === null || error === undefined ? rv : NngError.Code.EINTERNAL)

/** True when starting a listener at `url` resolves a host name (tcp or ws with a host that is not an IP address). */
const resolves = (url: string): boolean => {
  const match = /^(?:tcp[46]?|ws|wss|tls\+tcp[46]?):\/\/(\[[^\]]*\]|[^:/]*)/.exec(url)
  if (match === null) return false
  const host = match[1]!.replace(/^\[|\]$/g, "")
  return host !== "" && host !== "*" && Net.isIP(host) === 0
}

/** Where libnng is looked for: `EFFECT_IPC_LIBNNG` first, then the platform's names. */
export const libraryNames = (): ReadonlyArray<string> => {
  const override = process.env["EFFECT_IPC_LIBNNG"]
  if (override !== undefined && override.length > 0) return [override]
  return process.platform === "darwin" ? ["libnng.1.dylib", "libnng.dylib"] : ["libnng.so.1", "libnng.so"]
}

type Koffi = typeof KoffiModule

const loadLibc = (koffi: Koffi) => {
  if (process.platform === "linux") {
    const libc = koffi.load("libc.so.6")
    return { libc, RTLD_NOW: 0x2, RTLD_NODELETE: 0x1000 }
  }
  if (process.platform === "darwin") {
    return { libc: koffi.load("libSystem.B.dylib"), RTLD_NOW: 0x2, RTLD_NODELETE: 0x80 }
  }
  return undefined
}

const typeName = (name: string) => `effect_ipc_${name}`

/**
 * `nng_msg_get_pipe` as the pipe's id. Where the C ABI returns a struct of
 * one `uint32_t` in a register as it returns a `uint32_t` (x64, arm64), it is
 * declared so: koffi then makes no object per call (4 times cheaper, and it
 * runs once per message received). Elsewhere (32-bit x86 returns structs
 * through memory) the struct's id is read.
 */
const pipeIdOf = (
  byStruct: () => (m: Ptr) => Handle,
  byRegister: () => (m: Ptr) => number
): (m: Ptr) => number => {
  if (process.arch === "x64" || process.arch === "arm64") return byRegister()
  const get = byStruct()
  return (m) => get(m).id
}

const declare = (koffi: Koffi, libc: LibraryHandle, lib: LibraryHandle, version: string): Bindings => {
  const handle = (name: string) => {
    try {
      return koffi.struct(typeName(name), { id: "uint32_t" })
    } catch {
      return koffi.resolve(typeName(name)) // declared by another copy of this module
    }
  }
  for (const name of ["nng_socket", "nng_dialer", "nng_listener", "nng_pipe"]) handle(name)
  try {
    koffi.opaque(typeName("nng_msg"))
  } catch {
    // declared already
  }
  const S = typeName("nng_socket")
  const D = typeName("nng_dialer")
  const L = typeName("nng_listener")
  const P = typeName("nng_pipe")
  const M = typeName("nng_msg")
  const open = (name: string) => lib.func(`int ${name}(_Out_ ${S} *s)`) as (out: { id: number }) => number
  const closeFn = lib.func(`int nng_close(${S} s)`)
  const listenerStartFn = lib.func(`int nng_listener_start(${L} l, int flags)`)
  return {
    version,
    strerror: lib.func("const char *nng_strerror(int code)") as (code: number) => string,
    open: {
      req: open("nng_req0_open"),
      rep: open("nng_rep0_open"),
      "rep-raw": open("nng_rep0_open_raw"),
      pub: open("nng_pub0_open"),
      sub: open("nng_sub0_open"),
      push: open("nng_push0_open"),
      pull: open("nng_pull0_open"),
      pair: open("nng_pair1_open")
    },
    close: (s, done) => throttled((finish) => closeFn.async(s, onThreadpool(finish)), done),
    socketSetInt: lib.func(`int nng_socket_set_int(${S} s, const char *name, int value)`),
    socketSetMs: lib.func(`int nng_socket_set_ms(${S} s, const char *name, int32_t value)`),
    socketSetSize: lib.func(`int nng_socket_set_size(${S} s, const char *name, size_t value)`),
    socketSetBytes: lib.func(`int nng_socket_set(${S} s, const char *name, const void *value, size_t size)`),
    socketGetInt: lib.func(`int nng_socket_get_int(${S} s, const char *name, _Out_ int *value)`),
    listenerCreate: lib.func(`int nng_listener_create(_Out_ ${L} *l, ${S} s, const char *url)`),
    listenerSetInt: lib.func(`int nng_listener_set_int(${L} l, const char *name, int value)`),
    listenerSetSize: lib.func(`int nng_listener_set_size(${L} l, const char *name, size_t value)`),
    listenerStart: (l, flags, done) =>
      throttled((finish) => listenerStartFn.async(l, flags, onThreadpool(finish)), done, true),
    listenerStartNow: listenerStartFn,
    listenerGetInt: lib.func(`int nng_listener_get_int(${L} l, const char *name, _Out_ int *value)`),
    dialerCreate: lib.func(`int nng_dialer_create(_Out_ ${D} *d, ${S} s, const char *url)`),
    dialerSetMs: lib.func(`int nng_dialer_set_ms(${D} d, const char *name, int32_t value)`),
    dialerSetSize: lib.func(`int nng_dialer_set_size(${D} d, const char *name, size_t value)`),
    dialerStart: lib.func(`int nng_dialer_start(${D} d, int flags)`),
    tls: declareTls(lib, D, L),
    msgAlloc: lib.func(`int nng_msg_alloc(_Out_ ${M} **m, size_t size)`),
    msgHeaderAppend: lib.func(`int nng_msg_header_append(${M} *m, const void *data, size_t size)`),
    msgLen: lib.func(`size_t nng_msg_len(${M} *m)`),
    msgBody: lib.func(`void *nng_msg_body(${M} *m)`),
    msgHeaderLen: lib.func(`size_t nng_msg_header_len(${M} *m)`),
    msgHeader: lib.func(`void *nng_msg_header(${M} *m)`),
    msgPipeId: pipeIdOf(
      () => lib.func(`${P} nng_msg_get_pipe(${M} *m)`),
      () => lib.func(`uint32_t nng_msg_get_pipe(${M} *m)`)
    ),
    msgFree: lib.func(`void nng_msg_free(${M} *m)`),
    sendmsg: lib.func(`int nng_sendmsg(${S} s, ${M} *m, int flags)`),
    send: lib.func(`int nng_send(${S} s, const void *data, size_t size, int flags)`),
    recvmsg: lib.func(`int nng_recvmsg(${S} s, _Out_ ${M} **m, int flags)`),
    pipeSocket: lib.func(`${S} nng_pipe_socket(${P} p)`),
    pipeClose: lib.func(`int nng_pipe_close(${P} p)`),
    pipeGetUint64: lib.func(`int nng_pipe_get_uint64(${P} p, const char *name, _Out_ uint64_t *value)`),
    pipeGetBool: lib.func(`int nng_pipe_get_bool(${P} p, const char *name, _Out_ bool *value)`),
    pipeGetString: lib.func(`int nng_pipe_get_string(${P} p, const char *name, _Out_ void **value)`),
    pipeListener: lib.func(`${L} nng_pipe_listener(${P} p)`),
    strfree: lib.func("void nng_strfree(void *s)"),
    statsGet: lib.func("int nng_stats_get(_Out_ void **stats)"),
    statsFree: lib.func("void nng_stats_free(void *stats)"),
    statChild: lib.func("void *nng_stat_child(void *stat)"),
    statNext: lib.func("void *nng_stat_next(void *stat)"),
    statName: lib.func("const char *nng_stat_name(void *stat)"),
    statType: lib.func("int nng_stat_type(void *stat)"),
    statFind: lib.func("void *nng_stat_find(void *stats, const char *name)"),
    statValue: lib.func("uint64_t nng_stat_value(void *stat)"),
    memcpy: libc.func("void *memcpy(void *dst, const void *src, size_t size)"),
    copyIn: libc.func("void *memcpy(void *dst, const void *src, size_t size)"),
    madvise: process.platform === "linux" ? libc.func("int madvise(void *addr, size_t len, int advice)") : undefined,
    dup3: process.platform === "linux" ? libc.func("int dup3(int oldfd, int newfd, int flags)") : undefined
  }
}

/** nng's TLS configuration calls, or `undefined` when the library does not export them. */
const declareTls = (lib: LibraryHandle, D: string, L: string): TlsBindings | undefined => {
  try {
    return {
      dialerSetPtr: lib.func(`int nng_dialer_set_ptr(${D} d, const char *name, void *value)`),
      listenerSetPtr: lib.func(`int nng_listener_set_ptr(${L} l, const char *name, void *value)`),
      configAlloc: lib.func("int nng_tls_config_alloc(_Out_ void **cfg, int mode)"),
      configFree: lib.func("void nng_tls_config_free(void *cfg)"),
      configOwnCert: lib.func(
        "int nng_tls_config_own_cert(void *cfg, const char *cert, const char *key, const char *pass)"
      ),
      configCaChain: lib.func("int nng_tls_config_ca_chain(void *cfg, const char *chain, const char *crl)"),
      configAuthMode: lib.func("int nng_tls_config_auth_mode(void *cfg, int mode)"),
      configServerName: lib.func("int nng_tls_config_server_name(void *cfg, const char *name)")
    }
  } catch {
    return undefined
  }
}

const missing = (detail: string, cause?: unknown) =>
  new IpcError.IpcError({
    reason: "LibraryMissing",
    detail: `${detail} (Debian/Ubuntu: apt-get install libnng1; or set EFFECT_IPC_LIBNNG to its path)`,
    ...(cause === undefined ? {} : { cause })
  })

const load = (koffi: Koffi): Bindings | IpcError.IpcError => {
  const names = libraryNames()
  const c = loadLibc(koffi)
  if (c === undefined) return IpcError.make("UnsupportedPlatform", `no libnng bindings for ${process.platform}`)
  const dlopen = c.libc.func("void *dlopen(const char *file, int mode)") as (file: string, mode: number) => Ptr | null
  const dlerror = c.libc.func("const char *dlerror()") as () => string | null
  const errors: Array<string> = []
  for (const name of names) {
    // pin the library first: a failure here is the clearest "not installed" message
    const pinned = dlopen(name, c.RTLD_NOW | c.RTLD_NODELETE)
    if (pinned === null) {
      errors.push(dlerror() ?? `cannot load ${name}`)
      continue
    }
    try {
      const lib = koffi.load(name)
      const version = (lib.func("const char *nng_version()") as () => string)()
      return declare(koffi, c.libc, lib, version)
    } catch (cause) {
      return missing(`${name} is not a usable libnng: ${String(cause)}`, cause)
    }
  }
  return missing(`libnng is not installed: cannot load ${names.join(" or ")}: ${errors.join("; ")}`)
}

const EMPTY = new Uint8Array(0)

/** Messages up to this size are sent with one `nng_send` from a scratch buffer. */
const SMALL = 4096
const scratch = new Uint8Array(SMALL)

/** Received messages up to this size are carved out of their socket's slab (see `carve`). */
const SLAB_PIECE = 4096
/** The size of each slab. */
const SLAB_BYTES = 8 * SLAB_PIECE

/**
 * Where one socket's small received messages are carved from (`makeSlab`):
 * one socket's only, so that no message's `buffer` shows another socket's
 * (another peer's) bytes.
 */
export interface Slab {
  buffer: ArrayBuffer
  used: number
}

/** An empty slab for one socket's received messages. */
export const makeSlab = (): Slab => ({ buffer: new ArrayBuffer(0), used: 0 })

/**
 * A byte array for `length` (at most `SLAB_PIECE`) bytes about to be copied
 * in, carved from `slab`, which only ever hands each byte out once (so no
 * message is overwritten later; a slab is collected once its last message
 * is), as Node's `Buffer.allocUnsafe` does from its pool, and as messages
 * decoded from one read of a stream share its chunk. A fresh `Uint8Array`
 * of more than 64 bytes lives outside V8's heap and cost 0.4 to 1 µs to
 * make, 10 times this (bench/README.md, "The nng Channel's round trip beyond
 * Node's floor"). The slab is zero-filled once: what a message's `buffer`
 * shows beyond its own bytes is zeros or other messages of the same socket,
 * never memory from before. A slab detached (its `buffer` transferred) has
 * no bytes left: the next message starts a new one.
 */
const carve = (slab: Slab, length: number): Uint8Array => {
  if (slab.used + length > slab.buffer.byteLength) {
    slab.buffer = new ArrayBuffer(SLAB_BYTES)
    slab.used = 0
  }
  const piece = new Uint8Array(slab.buffer, slab.used, length)
  // 8-byte aligned, as a fresh array's start is
  slab.used += (length + 7) & ~7
  return piece
}

/** A byte array for `length` bytes about to be copied in: large ones are not zero-filled first. */
const allocate = (length: number): Uint8Array =>
  length < 16 * 1024 ? new Uint8Array(length) : new Uint8Array(Buffer.allocUnsafeSlow(length).buffer, 0, length)

/** Linux's `MADV_POPULATE_WRITE` (5.14 and later): maps a range's pages in one call, as if written. */
const MADV_POPULATE_WRITE = 23
/** Linux's `O_CLOEXEC` (Node does not export it). */
const O_CLOEXEC = 0o2000000
/** From this size on, `fresh` maps a byte array's pages before the copy (below, malloc reuses mapped memory). */
const POPULATE_BYTES = 64 * 1024
const PAGE = 4096n

/** libnng, loaded: every operation this package needs. */
export interface Nng {
  /** The library's version (`1.5.2`). */
  readonly version: string
  /**
   * Starts nng's process-wide machinery (its threads and poller descriptors,
   * made on the first socket) by opening and closing a socket, once; so that
   * what a transport opens later is all released when it closes.
   */
  readonly warmUp: Effect.Effect<void>
  /** The `IpcError` of an nng error code, with nng's own message. */
  readonly error: (
    code: number,
    detail: string,
    address?: string,
    reason?: IpcError.IpcErrorReason
  ) => IpcError.IpcError
  /** nng's own message for an error code (`nng_strerror`: "Connection refused"). */
  readonly message: (code: number) => string
  /** Opens a socket of `protocol`. */
  readonly open: (protocol: Protocol) => Effect.Effect<Handle, IpcError.IpcError>
  /** Closes a socket on the libuv threadpool (nng_close waits for nng's threads); `done` runs once it is closed. */
  readonly close: (s: Handle, done: () => void) => void
  /**
   * Makes descriptor `to` a copy of `from` (close-on-exec), atomically, so that
   * no other file ever takes its number meanwhile: true when done (Linux only).
   */
  readonly replaceFd: (from: number, to: number) => boolean
  /** Sets an option of a socket. */
  readonly setSocketOption: (s: Handle, name: string, value: OptionValue) => Effect.Effect<void, IpcError.IpcError>
  /** Reads an integer option of a socket (`recv-fd`, `send-fd`, ...). */
  readonly getSocketInt: (s: Handle, name: string) => Effect.Effect<number, IpcError.IpcError>
  /**
   * Creates and starts a listener; the start runs on the threadpool when the
   * address has a host name to resolve (which may take long), at once otherwise.
   * `onCreated` gets the listener before it starts (before any of its pipes exist).
   */
  readonly listen: (
    s: Handle,
    url: string,
    options: EndpointOptions,
    address: string,
    onCreated?: (listener: Handle) => void
  ) => Effect.Effect<Listening, IpcError.IpcError>
  /**
   * Creates a dialer and starts it without waiting (`NNG_FLAG_NONBLOCK`):
   * nng connects in the background and reconnects whenever the link drops.
   */
  readonly dial: (
    s: Handle,
    url: string,
    options: EndpointOptions,
    address: string
  ) => Effect.Effect<Handle, IpcError.IpcError>
  /**
   * The first error a dialer ran into while connecting, as an nng code, read
   * from its statistics (`refused`, `timedout`, ... counters); `undefined`
   * while it has had none, or when the library keeps no statistics.
   */
  readonly dialerFailure: (d: Handle) => number | undefined
  /** Sets a started dialer's reconnect delays (ms): its next reconnect waits `min`, doubling up to `max`. */
  readonly setDialerReconnect: (d: Handle, min: number, max: number) => number
  /**
   * Sends one message without blocking: `prefix` (a kind byte) then `body` as
   * its body, `header` as its header (raw sockets). Returns 0 or an nng code
   * (`EAGAIN`: the socket cannot take it now).
   */
  readonly trySend: (s: Handle, body: Uint8Array, prefix?: Uint8Array, header?: Uint8Array) => number
  /**
   * Builds the nng message `trySend` would send (`prefix` then `body`, one
   * copy; `header` as its header) and, with `now`, sends it if nng can take
   * it: 0. Otherwise the message is kept, to be sent with `trySendBuilt`
   * however long nng stays full, with no copy more: the `Built`. An nng code
   * when it fails (nothing is kept).
   */
  readonly sendOrBuild: (
    s: Handle,
    body: Uint8Array,
    prefix: Uint8Array | undefined,
    header: Uint8Array | undefined,
    now: boolean
  ) => Built | number
  /** Sends a built message without blocking: 0 (nng owns it now) or an nng code (`EAGAIN`: still ours). */
  readonly trySendBuilt: (s: Handle, built: Built) => number
  /** Frees a built message that nng never took. */
  readonly dropBuilt: (built: Built) => void
  /**
   * Receives one message without blocking. With `kinded`, the first body byte
   * is the message's kind and the body is the rest. Returns the message or an
   * nng code (`EAGAIN`: none is waiting). With a `slab` (the socket's own), a
   * small message is carved from it rather than given memory of its own.
   */
  readonly tryReceive: (s: Handle, kinded: boolean, withHeader: boolean, slab?: Slab) => Received | number
  /**
   * A byte array of `length` bytes about to be filled by a copy: not
   * zero-filled, and from 64 KiB on (Linux) its pages mapped in one call
   * first; a copy into fresh memory otherwise takes one page fault per 4 KiB,
   * which cost more than the copy itself (see bench/README.md).
   */
  readonly fresh: (length: number) => Uint8Array
  /**
   * The pipes of socket `s` and how many messages each has received, read
   * from nng's statistics (a pipe is listed once it is added to the socket);
   * `undefined` when the library keeps no statistics. One snapshot serves
   * every socket for at least 200 ms (and 20 times what reading it took), so
   * a pipe may show up that late, and one closed meanwhile still be listed.
   */
  readonly socketPipes: (s: Handle) => ReadonlyArray<PipeStat> | undefined
  /** True while nng still knows the pipe (it goes once its connection is closed and reaped). */
  readonly pipeAlive: (pipe: number) => boolean
  /** Closes one pipe (one peer's connection), leaving its socket open. */
  readonly closePipe: (pipe: number) => void
  /** What an ipc pipe tells of its peer process; empty for other transports. */
  readonly pipePeer: (pipe: number) => { pid?: number; uid?: number; gid?: number }
  /** The id of the listener a pipe came through; 0 for a pipe one of the socket's dialers made. */
  readonly pipeListener: (pipe: number) => number
  /**
   * `tls-verified` of a TLS pipe: its peer's certificate was checked and is
   * good; `undefined` when the pipe does not say. With
   * `NNG_TLS_AUTH_MODE_OPTIONAL` nng completes the handshake whatever the
   * check found, and this is the only record of it.
   */
  readonly pipeVerified: (pipe: number) => boolean | undefined
  /**
   * Whether the peer of a TLS pipe presented a certificate, one carrying a
   * common name (`tls-peer-cn`); `undefined` when this libnng cannot tell
   * (1.5.2 has no such option). A certificate without a common name cannot be
   * told from none: nng's `tls-peer-alt-names` is not read, as libnng 1.12
   * loops for ever, on the thread that asks, on a certificate with an empty
   * alternative name (seen: a peer could freeze the process).
   */
  readonly pipePresented: (pipe: number) => boolean | undefined
  /**
   * Watches one of nng's pollable descriptors (`recv-fd`, `send-fd`) with a
   * libuv poll handle: `onReady` runs on the JS thread while the descriptor is
   * readable and the watch is started. A started watch keeps the process alive.
   */
  readonly watch: (fd: number, onReady: () => void) => Watch
}

/**
 * The started poll handles. A koffi poll handle whose JS object is garbage
 * collected is closed, and then nothing would wake its waiters: every started
 * handle is held here until it is stopped.
 */
const watching = new Set<KoffiNode.PollHandle>()

/** A libuv poll handle on a descriptor. */
export interface Watch {
  readonly start: () => void
  readonly stop: () => void
  /** Stops and releases the handle (before the descriptor's socket is closed). */
  readonly close: () => void
}

/** A socket option's value, by nng's option type. */
export type OptionValue =
  | { readonly int: number }
  | { readonly ms: number }
  | { readonly size: number }
  | { readonly bytes: Uint8Array }

/** Options of an endpoint (listener or dialer), applied before it starts. */
export interface EndpointOptions {
  /** `recv-size-max`: largest message accepted from this endpoint's peers (0: no limit). */
  readonly maxMessageSize?: number | undefined
  /** `ipc:permissions` of an ipc listener's socket file. */
  readonly ipcPermissions?: number | undefined
  /** `reconnect-time-min` of a dialer, in milliseconds. */
  readonly reconnectMin?: number | undefined
  /** `reconnect-time-max` of a dialer, in milliseconds (0: always `reconnectMin`). */
  readonly reconnectMax?: number | undefined
  /** The TLS configuration of a `tls+tcp` or `wss` endpoint (`tls-config`). */
  readonly tls?: TlsSettings | undefined
}

/** What a TLS endpoint is configured with: PEM text, read from files by the caller. */
export interface TlsSettings {
  /** This endpoint's certificate (chain), PEM. */
  readonly cert?: string | undefined
  /** The private key of `cert`, PEM (unencrypted). */
  readonly key?: string | undefined
  /** The certificates peers are verified against, PEM. */
  readonly ca?: string | undefined
  /** `NNG_TLS_AUTH_MODE_NONE` (0), `_OPTIONAL` (1) or `_REQUIRED` (2). */
  readonly authMode: 0 | 1 | 2
  /** A dialer's name for the server, matched against its certificate (and sent as SNI). */
  readonly serverName?: string | undefined
}

/** `NNG_TLS_MODE_CLIENT` and `NNG_TLS_MODE_SERVER`. */
const TLS_MODE = { client: 0, server: 1 } as const

/** A started listener: its handle and, for tcp and ws, the port it bound. */
export interface Listening {
  readonly listener: Handle
  readonly port: number | undefined
}

/** How long one snapshot of nng's pipes serves `socketPipes`: at least this many milliseconds... */
const PIPES_SNAPSHOT_MS = 200
/** ... and this many times as long as reading it took (about 35 ms with 1,000 channels in the process). */
const PIPES_SNAPSHOT_FACTOR = 20

/** A pipe as nng's statistics list it: its id and the messages received through it. */
export interface PipeStat {
  readonly pipe: number
  readonly received: number
}

/** `NNG_STAT_SCOPE`. */
const STAT_SCOPE = 0

/** The statistics scope `name` whose id is `id` (a scope's value holds its id in the low 32 bits). */
const findScope = (b: Bindings, stat: Ptr, name: string, id: number): Ptr | undefined => {
  if (
    b.statType(stat) === STAT_SCOPE && b.statName(stat) === name &&
    Number(BigInt(b.statValue(stat)) & 0xffff_ffffn) === id
  ) {
    return stat
  }
  for (let child = b.statChild(stat); child !== null; child = b.statNext(child)) {
    const found = findScope(b, child, name, id)
    if (found !== undefined) return found
  }
  return undefined
}

const make = (koffi: Koffi, b: Bindings): Nng => {
  /** Every socket's pipes, read from one snapshot of nng's statistics; `undefined` without statistics. */
  const readPipes = (): Map<number, Array<PipeStat>> | undefined => {
    const out: Array<Ptr | null> = [null]
    if (b.statsGet(out) !== 0 || out[0] === null) return undefined
    const snapshot = out[0]
    try {
      const bySocket = new Map<number, Array<PipeStat>>()
      // every pipe's scope is a child of the root (as every socket's, listener's and dialer's)
      for (let stat = b.statChild(snapshot); stat !== null; stat = b.statNext(stat)) {
        if (b.statName(stat) !== "pipe") continue
        const socket = b.statFind(stat, "socket")
        if (socket === null) continue
        const id = Number(BigInt(b.statValue(socket)) & 0xffff_ffffn)
        const received = b.statFind(stat, "rx_msgs")
        const listed = bySocket.get(id) ?? []
        listed.push({
          pipe: Number(BigInt(b.statValue(stat)) & 0xffff_ffffn),
          received: received === null ? 0 : Number(b.statValue(received))
        })
        bySocket.set(id, listed)
      }
      return bySocket
    } finally {
      b.statsFree(snapshot)
    }
  }
  // the last snapshot, shared by every socket that asks until `until`: a process with many listeners reads
  // nng's statistics (every socket and pipe of the process) once, not once per listener
  let pipes: { readonly until: number; readonly bySocket: Map<number, Array<PipeStat>> } | undefined
  const error: Nng["error"] = (code, detail, address, reason) =>
    NngError.make(code, detail, {
      address,
      reason,
      message: b.strerror(code),
      errnoName: Native.errnoName
    })
  const msgOut: Array<Ptr | null> = [null]
  let warm: Promise<void> | undefined

  // off for good once madvise refuses (a kernel before 5.14, or pages larger than 4 KiB)
  const madvise = b.madvise
  let populating = madvise !== undefined
  /** Maps the pages wholly inside `length` bytes at `at` in one call, from 64 KiB on. */
  const populate = (at: Ptr, length: number) => {
    if (madvise === undefined || !populating || length < POPULATE_BYTES) return
    const start = (at + PAGE - 1n) & ~(PAGE - 1n)
    const end = (at + BigInt(length)) & ~(PAGE - 1n)
    if (end > start && madvise(start, Number(end - start), MADV_POPULATE_WRITE) !== 0) populating = false
  }
  /** An nng message of `prefix` then `body` (one copy, into pages mapped first: see `fresh`), or an nng code. */
  const buildMessage = (
    body: Uint8Array,
    prefix: Uint8Array | undefined,
    header: Uint8Array | undefined
  ): Ptr | number => {
    const skip = prefix?.byteLength ?? 0
    const size = skip + body.byteLength
    const rv = b.msgAlloc(msgOut, size)
    if (rv !== 0) return rv
    const m = msgOut[0]!
    if (header !== undefined) {
      const failed = b.msgHeaderAppend(m, header, header.byteLength)
      if (failed !== 0) {
        b.msgFree(m)
        return failed
      }
    }
    if (size > 0) {
      const at = b.msgBody(m)
      populate(at, size)
      if (prefix !== undefined) b.copyIn(at, prefix, skip)
      if (body.byteLength > 0) b.copyIn(at + BigInt(skip), body, body.byteLength)
    }
    return m
  }
  const fresh = (length: number): Uint8Array => {
    const out = allocate(length)
    if (!populating || length < POPULATE_BYTES) return out
    // memcpy returns its destination: the array's address (nothing is copied)
    const at = b.memcpy(out, 0n, 0)
    if (typeof at === "bigint") populate(at, length)
    return out
  }

  /** A TLS configuration nng refused: the options are wrong (`InvalidOption`), unless this libnng has no TLS. */
  const tlsError = (rv: number, what: string, address: string) =>
    error(rv, what, address, rv === NngError.Code.ENOTSUP ? "UnsupportedScheme" : "InvalidOption")

  /**
   * Builds an nng TLS configuration from `tls` and hands it to an endpoint
   * with `set` (which takes a hold of its own); ours is dropped either way.
   * Returns 0 or the first nng code with what failed.
   */
  const configureTls = (
    tls: TlsSettings,
    side: keyof typeof TLS_MODE,
    set: (t: TlsBindings, cfg: Ptr) => number
  ): { readonly rv: number; readonly what: string } => {
    const t = b.tls
    if (t === undefined) return { rv: NngError.Code.ENOTSUP, what: "this libnng has no TLS" }
    const out: Array<Ptr | null> = [null]
    const allocated = t.configAlloc(out, TLS_MODE[side])
    if (allocated !== 0 || out[0] === null) return { rv: allocated || NngError.Code.ENOMEM, what: "cannot set up TLS" }
    const cfg = out[0]
    try {
      const steps: Array<[string, () => number]> = [
        [
          "cannot use the TLS certificate and key",
          () => tls.cert === undefined ? 0 : t.configOwnCert(cfg, tls.cert, tls.key ?? tls.cert, null)
        ],
        ["cannot use the TLS CA certificates", () => tls.ca === undefined ? 0 : t.configCaChain(cfg, tls.ca, null)],
        [
          "cannot set the TLS server name",
          () => tls.serverName === undefined ? 0 : t.configServerName(cfg, tls.serverName)
        ],
        ["cannot set the TLS authentication mode", () => t.configAuthMode(cfg, tls.authMode)],
        ["cannot set up TLS", () => set(t, cfg)]
      ]
      for (const [what, step] of steps) {
        const rv = step()
        if (rv !== 0) return { rv, what }
      }
      return { rv: 0, what: "" }
    } finally {
      t.configFree(cfg)
    }
  }

  return {
    version: b.version,
    fresh,
    warmUp: Effect.promise(() => {
      if (warm === undefined) {
        warm = new Promise<void>((resolve) => {
          const s = { id: 0 }
          if (b.open.pair(s) !== 0) return resolve()
          b.socketGetInt(s, "recv-fd", [0])
          b.close(s, () => resolve())
        })
      }
      return warm
    }),
    error,
    message: (code) => b.strerror(code),
    open: (protocol) =>
      Effect.suspend(() => {
        const out = { id: 0 }
        const rv = b.open[protocol](out)
        return rv === 0 ? Effect.succeed(out) : Effect.fail(error(rv, `cannot open a ${protocol} socket`))
      }),
    close: (s, done) => b.close(s, () => done()),
    replaceFd: (from, to) => b.dup3 !== undefined && b.dup3(from, to, O_CLOEXEC) === to,
    setSocketOption: (s, name, value) =>
      Effect.suspend(() => {
        const rv = "int" in value
          ? b.socketSetInt(s, name, value.int)
          : "ms" in value
          ? b.socketSetMs(s, name, value.ms)
          : "size" in value
          ? b.socketSetSize(s, name, value.size)
          : b.socketSetBytes(s, name, value.bytes, value.bytes.byteLength)
        // a value libnng refuses (EINVAL) is the option's fault, not the address's
        return rv === 0 ? Effect.void : Effect.fail(
          error(
            rv,
            `cannot set the socket option ${name}`,
            undefined,
            rv === NngError.Code.EINVAL ? "InvalidOption" : undefined
          )
        )
      }),
    getSocketInt: (s, name) =>
      Effect.suspend(() => {
        const out = [0]
        const rv = b.socketGetInt(s, name, out)
        return rv === 0 ? Effect.succeed(out[0]!) : Effect.fail(error(rv, `cannot read the socket option ${name}`))
      }),
    listen: (s, url, options, address, onCreated) =>
      Effect.suspend(() => {
        const l = { id: 0 }
        const created = b.listenerCreate(l, s, url)
        if (created !== 0) return Effect.fail(error(created, "cannot listen", address))
        if (options.maxMessageSize !== undefined) {
          const rv = b.listenerSetSize(l, "recv-size-max", options.maxMessageSize)
          if (rv !== 0) return Effect.fail(error(rv, "cannot set recv-size-max", address))
        }
        if (options.ipcPermissions !== undefined) {
          const rv = b.listenerSetInt(l, "ipc:permissions", options.ipcPermissions)
          if (rv !== 0) return Effect.fail(error(rv, "cannot set the socket file's permissions", address))
        }
        if (options.tls !== undefined) {
          const { rv, what } = configureTls(options.tls, "server", (t, cfg) => t.listenerSetPtr(l, "tls-config", cfg))
          if (rv !== 0) return Effect.fail(tlsError(rv, what, address))
        }
        onCreated?.(l)
        const started = (rv: number): Effect.Effect<Listening, IpcError.IpcError> => {
          if (rv !== 0) return Effect.fail(error(rv, "cannot listen", address))
          const port = [0]
          const hasPort = b.listenerGetInt(l, "tcp-bound-port", port) === 0
          return Effect.succeed({ listener: l, port: hasPort ? port[0] : undefined })
        }
        // only a host name needs resolving, which may take long: anything else starts at once
        if (!resolves(url)) return started(b.listenerStartNow(l, 0))
        return Effect.callback<Listening, IpcError.IpcError>((resume) => {
          b.listenerStart(l, 0, (rv) => resume(started(rv)))
        })
      }),
    dial: (s, url, options, address) =>
      Effect.suspend(() => {
        const d = { id: 0 }
        const created = b.dialerCreate(d, s, url)
        if (created !== 0) return Effect.fail(error(created, "cannot dial", address))
        const settings: Array<[string, number | undefined, (d: Handle, n: string, v: number) => number]> = [
          ["recv-size-max", options.maxMessageSize, b.dialerSetSize],
          ["reconnect-time-min", options.reconnectMin, b.dialerSetMs],
          ["reconnect-time-max", options.reconnectMax, b.dialerSetMs]
        ]
        for (const [name, value, set] of settings) {
          if (value === undefined) continue
          const rv = set(d, name, value)
          if (rv !== 0) return Effect.fail(error(rv, `cannot set ${name}`, address))
        }
        if (options.tls !== undefined) {
          const { rv, what } = configureTls(options.tls, "client", (t, cfg) => t.dialerSetPtr(d, "tls-config", cfg))
          if (rv !== 0) return Effect.fail(tlsError(rv, what, address))
        }
        const started = b.dialerStart(d, NONBLOCK)
        return started === 0 ? Effect.succeed(d) : Effect.fail(error(started, "cannot dial", address))
      }),
    setDialerReconnect: (d, min, max) => {
      const rv = b.dialerSetMs(d, "reconnect-time-max", max)
      return rv !== 0 ? rv : b.dialerSetMs(d, "reconnect-time-min", min)
    },
    dialerFailure: (d) => {
      const out: Array<Ptr | null> = [null]
      if (b.statsGet(out) !== 0 || out[0] === null) return undefined
      const snapshot = out[0]
      try {
        // (nng 1.5's nng_stat_find_dialer returns the first dialer's scope, whatever its id)
        const scope = findScope(b, snapshot, "dialer", d.id)
        if (scope === undefined) return undefined
        const count = (name: string) => {
          const stat = b.statFind(scope, name)
          return stat === null ? 0n : BigInt(b.statValue(stat))
        }
        if (count("refused") > 0n) return NngError.Code.ECONNREFUSED
        // libnng 1.12 names the counter "timeout" (src/core/dialer.c)
        if (count("timeout") > 0n || count("timedout") > 0n) return NngError.Code.ETIMEDOUT
        if (count("proto") > 0n || count("reject") > 0n) return NngError.Code.EPROTO
        if (count("auth") > 0n) return NngError.Code.EPEERAUTH
        if (count("oom") > 0n) return NngError.Code.ENOMEM
        if (count("other") > 0n) return NngError.Code.EUNREACHABLE
        return undefined
      } finally {
        b.statsFree(snapshot)
      }
    },
    trySend: (s, body, prefix, header) => {
      // a small message without a header: one call (nng copies it into a message of its own)
      if (header === undefined && body.byteLength + (prefix?.byteLength ?? 0) <= SMALL) {
        if (prefix === undefined) return b.send(s, body, body.byteLength, NONBLOCK)
        // the scratch buffer itself, with the length (a view of it would be one more object per send)
        scratch.set(prefix, 0)
        scratch.set(body, prefix.byteLength)
        return b.send(s, scratch, prefix.byteLength + body.byteLength, NONBLOCK)
      }
      const m = buildMessage(body, prefix, header)
      if (typeof m === "number") return m
      const rv = b.sendmsg(s, m, NONBLOCK)
      // on success nng owns the message; on any failure it is still ours
      if (rv !== 0) b.msgFree(m)
      return rv
    },
    sendOrBuild: (s, body, prefix, header, now) => {
      const m = buildMessage(body, prefix, header)
      if (typeof m === "number") return m
      if (now) {
        const rv = b.sendmsg(s, m, NONBLOCK)
        if (rv === 0) return 0
        if (rv !== EAGAIN) {
          b.msgFree(m)
          return rv
        }
      }
      return new Built(m, body.byteLength)
    },
    trySendBuilt: (s, built) => b.sendmsg(s, built.message, NONBLOCK),
    dropBuilt: (built) => b.msgFree(built.message),
    tryReceive: (s, kinded, withHeader, slab) => {
      const rv = b.recvmsg(s, msgOut, NONBLOCK)
      if (rv !== 0) return rv
      const m = msgOut[0]!
      const length = b.msgLen(m)
      const full = length === 0
        ? EMPTY
        : slab !== undefined && length <= SLAB_PIECE
        ? carve(slab, length)
        : fresh(length)
      if (length > 0) b.memcpy(full, b.msgBody(m), length)
      let header: Uint8Array | undefined
      if (withHeader) {
        const headerLength = b.msgHeaderLen(m)
        header = headerLength === 0 ? EMPTY : allocate(headerLength)
        if (headerLength > 0) b.memcpy(header, b.msgHeader(m), headerLength)
      }
      const pipe = b.msgPipeId(m)
      b.msgFree(m)
      return kinded
        ? { body: full.subarray(1), kind: length > 0 ? full[0] : undefined, header, pipe }
        : { body: full, kind: undefined, header, pipe }
    },
    watch: (fd, onReady) => {
      let handle: KoffiNode.PollHandle | undefined
      let started = false
      return {
        start: () => {
          if (started) return
          started = true
          if (handle === undefined) handle = koffi.node.poll(fd, { readable: true }, onReady)
          else handle.start({ readable: true }, onReady)
          watching.add(handle)
        },
        stop: () => {
          if (!started) return
          started = false
          handle?.stop()
          if (handle !== undefined) watching.delete(handle)
        },
        close: () => {
          started = false
          if (handle !== undefined) watching.delete(handle)
          handle?.close()
          handle = undefined
        }
      }
    },
    socketPipes: (s) => {
      const now = performance.now()
      if (pipes === undefined || now >= pipes.until) {
        const bySocket = readPipes()
        if (bySocket === undefined) return undefined
        pipes = {
          until: now + Math.max(PIPES_SNAPSHOT_MS, (performance.now() - now) * PIPES_SNAPSHOT_FACTOR),
          bySocket
        }
      }
      return pipes.bySocket.get(s.id) ?? []
    },
    pipeAlive: (pipe) => b.pipeSocket({ id: pipe }).id !== 0,
    closePipe: (pipe) => void b.pipeClose({ id: pipe }),
    pipePeer: (pipe) => {
      const read = (name: string): number | undefined => {
        const out = [0n]
        return b.pipeGetUint64({ id: pipe }, name, out) === 0 ? Number(out[0]) : undefined
      }
      const pid = read("ipc:peer-pid")
      const uid = read("ipc:peer-uid")
      const gid = read("ipc:peer-gid")
      return {
        ...(pid === undefined ? {} : { pid }),
        ...(uid === undefined ? {} : { uid }),
        ...(gid === undefined ? {} : { gid })
      }
    },
    pipeListener: (pipe) => b.pipeListener({ id: pipe }).id,
    pipeVerified: (pipe) => {
      const flag = [false]
      return b.pipeGetBool({ id: pipe }, "tls-verified", flag) === 0 ? flag[0] === true : undefined
    },
    pipePresented: (pipe) => {
      const out: Array<Ptr | null> = [null]
      if (b.pipeGetString({ id: pipe }, "tls-peer-cn", out) !== 0) return undefined
      const name = out[0]
      if (name === null) return false
      // nng's copy (malloc'd), ours to free
      b.strfree(name)
      return true
    }
  }
}

/** koffi and libnng, loaded on first use (see Native), never by importing this package. */
const loaded = Native.loader<Koffi>(import.meta.url).bindings("cannot load libnng", (koffi) => {
  const b = load(koffi)
  return b instanceof IpcError.IpcError ? b : make(koffi, b)
})

/**
 * libnng, loaded once per process; fails with reason `LibraryMissing`, naming
 * the library, when it is not installed.
 */
export const library: Effect.Effect<Nng, IpcError.IpcError> = Effect.suspend(() => {
  const nng = loaded()
  if (nng instanceof IpcError.IpcError) return Effect.fail(nng)
  if (warnedOld || !isOlderThan16(nng.version)) return Effect.succeed(nng)
  warnedOld = true
  return Effect.as(Effect.logWarning(oldLibraryWarning(nng.version)), nng)
})

/** Whether the old-library warning was logged (once per process, as the library is loaded once). */
let warnedOld = false

/** True for libnng versions before 1.6 (`1.5.2`), whose `nng_close` can abort the process. */
export const isOlderThan16 = (version: string): boolean => {
  const [major = 0, minor = 0] = version.split(".").map((part) => Number.parseInt(part, 10))
  return major < 1 || (major === 1 && minor < 6)
}

/** The warning logged once when the loaded libnng is older than 1.6. */
export const oldLibraryWarning = (version: string): string =>
  `libnng ${version} is older than 1.6: its nng_close can abort the process when a connection ` +
  `drops while a socket closes (nanomsg/nng#1658); install libnng 1.6 or later, ` +
  `or set EFFECT_IPC_LIBNNG to one`

/** Loads libnng and starts its process-wide machinery (see `Nng.warmUp`). */
export const warmUp: Effect.Effect<void, IpcError.IpcError> = Effect.flatMap(library, (nng) => nng.warmUp)
