/**
 * The only module of this package that makes Windows system calls: kernel32
 * and advapi32 through koffi, loaded on first use. Each function is declared
 * once with a typed signature; callers get values or `IpcError`s, never
 * exceptions. Handles are numbers (`intptr_t`); memory that the system writes
 * after a call returns (overlapped I/O) is koffi-allocated, never a JS buffer.
 *
 * @internal
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Native from "@effect-ipc/core/Native"
import type KoffiModule from "koffi"
import type { LibraryHandle, TypeObject } from "koffi"

/** A Win32 HANDLE. */
export type Handle = number

/** Memory allocated by koffi (a pointer that does not move). */
export type Memory = unknown

/** What a failed call left in GetLastError. */
export interface Win32Error {
  readonly _tag: "Win32Error"
  readonly code: number
}

export const ERROR_FILE_NOT_FOUND = 2
export const ERROR_ACCESS_DENIED = 5
export const ERROR_INVALID_HANDLE = 6
export const ERROR_BROKEN_PIPE = 109
export const ERROR_SEM_TIMEOUT = 121
export const ERROR_PIPE_BUSY = 231
export const ERROR_NO_DATA = 232
export const ERROR_PIPE_NOT_CONNECTED = 233
export const ERROR_PIPE_CONNECTED = 535
export const ERROR_OPERATION_ABORTED = 995
const ERROR_IO_INCOMPLETE = 996
export const ERROR_IO_PENDING = 997

const INVALID_HANDLE_VALUE = -1
const PIPE_ACCESS_DUPLEX = 0x3
const FILE_FLAG_OVERLAPPED = 0x4000_0000
const FILE_FLAG_FIRST_PIPE_INSTANCE = 0x0008_0000
const PIPE_TYPE_BYTE = 0
const PIPE_REJECT_REMOTE_CLIENTS = 0x8
const PIPE_UNLIMITED_INSTANCES = 255
const GENERIC_READ = 0x8000_0000
const GENERIC_WRITE = 0x4000_0000
const READ_CONTROL = 0x0002_0000
const OPEN_EXISTING = 3
const SECURITY_SQOS_PRESENT = 0x0010_0000
const SECURITY_IDENTIFICATION = 0x0001_0000
const PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
const TOKEN_QUERY = 0x8
const TOKEN_USER = 1
const SE_KERNEL_OBJECT = 6
const DACL_SECURITY_INFORMATION = 0x4
const SDDL_REVISION_1 = 1
const WAIT_SLICE = 1000
const ENTRIES = 64
const ENTRY_SIZE = 32

/** A koffi function that can also run on a worker thread, calling back on the event loop. */
type Async<F> = F & { readonly async: (...args: ReadonlyArray<unknown>) => void }

/** The wide-character functions of kernel32 and advapi32 this package calls. */
interface Bindings {
  readonly koffi: typeof KoffiModule
  readonly Overlapped: TypeObject
  readonly GetLastError: () => number
  readonly CreateNamedPipeW: (
    name: string,
    open: number,
    mode: number,
    max: number,
    out: number,
    inb: number,
    timeout: number,
    sa: { nLength: number; sd: Memory; inherit: number } | null
  ) => Handle
  readonly ConnectNamedPipe: (h: Handle, ov: Memory) => number
  readonly CreateFileW: (
    name: string,
    access: number,
    share: number,
    sa: null,
    disposition: number,
    flags: number,
    template: number
  ) => Handle
  readonly WaitNamedPipeW: Async<(name: string, timeout: number) => number>
  readonly ReadFile: (h: Handle, buf: Memory, n: number, read: null, ov: Memory) => number
  readonly WriteFile: (h: Handle, buf: Memory, n: number, written: null, ov: Memory) => number
  readonly GetOverlappedResult: (h: Handle, ov: Memory, n: Array<number>, wait: number) => number
  readonly CreateIoCompletionPort: (h: Handle, port: Handle, key: number, threads: number) => Handle
  readonly GetQueuedCompletionStatusEx: Async<
    (port: Handle, entries: Memory, count: number, removed: Memory, millis: number, alertable: number) => number
  >
  readonly CloseHandle: (h: Handle) => number
  readonly CancelIoEx: (h: Handle, ov: Memory | null) => number
  readonly GetNamedPipeClientProcessId: (h: Handle, pid: Array<number>) => number
  readonly GetNamedPipeServerProcessId: (h: Handle, pid: Array<number>) => number
  readonly GetCurrentProcessId: () => number
  readonly OpenProcess: (access: number, inherit: number, pid: number) => Handle
  readonly LocalFree: (p: Memory) => Memory
  readonly OpenProcessToken: (p: Handle, access: number, token: Array<Handle>) => number
  readonly GetTokenInformation: (token: Handle, cls: number, buf: Memory, len: number, ret: Array<number>) => number
  readonly ConvertSidToStringSidW: (sid: Memory, str: Array<Memory>) => number
  readonly ConvertStringSecurityDescriptorToSecurityDescriptorW: (
    sddl: string,
    revision: number,
    sd: Array<Memory>,
    size: null
  ) => number
  readonly GetSecurityInfo: (
    h: Handle,
    type: number,
    info: number,
    owner: null,
    group: null,
    dacl: Array<Memory>,
    sacl: null,
    sd: Array<Memory>
  ) => number
  readonly ConvertSecurityDescriptorToStringSecurityDescriptorW: (
    sd: Memory,
    revision: number,
    info: number,
    str: Array<Memory>,
    len: null
  ) => number
}

const fn = (lib: LibraryHandle, signature: string) => lib.func(signature)

const load = Native.loader<typeof KoffiModule>(import.meta.url).bindings(
  "cannot load the Windows system libraries",
  (koffi): Bindings | IpcError.IpcError => {
    if (process.platform !== "win32") {
      return IpcError.make("UnsupportedPlatform", `Windows named pipes do not exist on ${process.platform}`)
    }
    const k32 = koffi.load("kernel32.dll")
    const adv = koffi.load("advapi32.dll")
    const Sa = koffi.struct("effect_ipc_security_attributes", {
      nLength: "uint32_t",
      sd: "void *",
      inherit: "int32_t"
    })
    const Overlapped = koffi.struct("effect_ipc_overlapped", {
      internal: "uintptr_t",
      internalHigh: "uintptr_t",
      offset: "uint64_t",
      event: "intptr_t"
    })
    void Sa
    return {
      koffi,
      Overlapped,
      GetLastError: fn(k32, "uint32_t __stdcall GetLastError()"),
      CreateNamedPipeW: fn(
        k32,
        "intptr_t __stdcall CreateNamedPipeW(str16 name, uint32_t open, uint32_t mode, uint32_t max, uint32_t out, uint32_t inb, uint32_t timeout, effect_ipc_security_attributes *sa)"
      ),
      ConnectNamedPipe: fn(k32, "int __stdcall ConnectNamedPipe(intptr_t h, void *ov)"),
      CreateFileW: fn(
        k32,
        "intptr_t __stdcall CreateFileW(str16 name, uint32_t access, uint32_t share, void *sa, uint32_t disposition, uint32_t flags, intptr_t template)"
      ),
      WaitNamedPipeW: fn(k32, "int __stdcall WaitNamedPipeW(str16 name, uint32_t timeout)"),
      ReadFile: fn(k32, "int __stdcall ReadFile(intptr_t h, void *buf, uint32_t n, void *read, void *ov)"),
      WriteFile: fn(k32, "int __stdcall WriteFile(intptr_t h, void *buf, uint32_t n, void *written, void *ov)"),
      GetOverlappedResult: fn(
        k32,
        "int __stdcall GetOverlappedResult(intptr_t h, void *ov, _Out_ uint32_t *n, int wait)"
      ),
      CreateIoCompletionPort: fn(
        k32,
        "intptr_t __stdcall CreateIoCompletionPort(intptr_t h, intptr_t port, uintptr_t key, uint32_t threads)"
      ),
      GetQueuedCompletionStatusEx: fn(
        k32,
        "int __stdcall GetQueuedCompletionStatusEx(intptr_t port, void *entries, uint32_t count, void *removed, uint32_t millis, int alertable)"
      ),
      CloseHandle: fn(k32, "int __stdcall CloseHandle(intptr_t h)"),
      CancelIoEx: fn(k32, "int __stdcall CancelIoEx(intptr_t h, void *ov)"),
      GetNamedPipeClientProcessId: fn(
        k32,
        "int __stdcall GetNamedPipeClientProcessId(intptr_t h, _Out_ uint32_t *pid)"
      ),
      GetNamedPipeServerProcessId: fn(
        k32,
        "int __stdcall GetNamedPipeServerProcessId(intptr_t h, _Out_ uint32_t *pid)"
      ),
      GetCurrentProcessId: fn(k32, "uint32_t __stdcall GetCurrentProcessId()"),
      OpenProcess: fn(k32, "intptr_t __stdcall OpenProcess(uint32_t access, int inherit, uint32_t pid)"),
      LocalFree: fn(k32, "void * __stdcall LocalFree(void *p)"),
      OpenProcessToken: fn(adv, "int __stdcall OpenProcessToken(intptr_t p, uint32_t access, _Out_ intptr_t *token)"),
      GetTokenInformation: fn(
        adv,
        "int __stdcall GetTokenInformation(intptr_t token, int cls, void *buf, uint32_t len, _Out_ uint32_t *ret)"
      ),
      ConvertSidToStringSidW: fn(adv, "int __stdcall ConvertSidToStringSidW(void *sid, _Out_ void **str)"),
      ConvertStringSecurityDescriptorToSecurityDescriptorW: fn(
        adv,
        "int __stdcall ConvertStringSecurityDescriptorToSecurityDescriptorW(str16 sddl, uint32_t revision, _Out_ void **sd, void *size)"
      ),
      GetSecurityInfo: fn(
        adv,
        "uint32_t __stdcall GetSecurityInfo(intptr_t h, int type, uint32_t info, void *owner, void *group, _Out_ void **dacl, void *sacl, _Out_ void **sd)"
      ),
      ConvertSecurityDescriptorToStringSecurityDescriptorW: fn(
        adv,
        "int __stdcall ConvertSecurityDescriptorToStringSecurityDescriptorW(void *sd, uint32_t revision, uint32_t info, _Out_ void **str, void *len)"
      )
    }
  }
)

/** Why Windows named pipes cannot be used here (not Windows, no koffi), or undefined when they can. */
export const unavailable = (): IpcError.IpcError | undefined => {
  const b = load()
  return b instanceof IpcError.IpcError ? b : undefined
}

// the functions below are called only once `unavailable()` said undefined
const bindings = (): Bindings => {
  const b = load()
  if (b instanceof IpcError.IpcError) throw b
  return b
}

const lastError = (b: Bindings): Win32Error => ({ _tag: "Win32Error", code: b.GetLastError() })

/** True for the failure of a call (its GetLastError code). */
export const isError = (value: unknown): value is Win32Error =>
  typeof value === "object" && value !== null && "_tag" in value && value._tag === "Win32Error"

/** The name of a Win32 error code this module knows, for messages. */
export const errorName = (code: number): string =>
  ({
    [ERROR_FILE_NOT_FOUND]: "ERROR_FILE_NOT_FOUND",
    [ERROR_ACCESS_DENIED]: "ERROR_ACCESS_DENIED",
    [ERROR_INVALID_HANDLE]: "ERROR_INVALID_HANDLE",
    [ERROR_BROKEN_PIPE]: "ERROR_BROKEN_PIPE",
    [ERROR_SEM_TIMEOUT]: "ERROR_SEM_TIMEOUT",
    [ERROR_PIPE_BUSY]: "ERROR_PIPE_BUSY",
    [ERROR_NO_DATA]: "ERROR_NO_DATA",
    [ERROR_PIPE_NOT_CONNECTED]: "ERROR_PIPE_NOT_CONNECTED",
    [ERROR_OPERATION_ABORTED]: "ERROR_OPERATION_ABORTED"
  } as Record<number, string>)[code] ?? `Win32 error ${code}`

/** Closes a handle (errors ignored: there is nothing left to do with it). */
export const closeHandle = (h: Handle): void => void bindings().CloseHandle(h)

/** Frees koffi-allocated memory. */
export const free = (memory: Memory): void => bindings().koffi.free(memory)

/** The string SID (`S-1-5-21-...`) of the user a process runs as: OpenProcess, OpenProcessToken, TokenUser. */
export const userOfProcess = (pid: number): string | Win32Error =>
  withOrThrow((b) => {
    const process = b.OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid)
    if (process === 0) return lastError(b)
    try {
      const token = [0]
      if (b.OpenProcessToken(process, TOKEN_QUERY, token) === 0) return lastError(b)
      const buffer = b.koffi.alloc("uint8_t", 512)
      try {
        if (b.GetTokenInformation(token[0]!, TOKEN_USER, buffer, 512, [0]) === 0) return lastError(b)
        // TOKEN_USER starts with the SID's pointer
        const sid: Memory = b.koffi.decode(buffer, "void *")
        const text: Array<Memory> = [null]
        if (b.ConvertSidToStringSidW(sid, text) === 0) return lastError(b)
        const sidString = b.koffi.decode.string16(text[0])
        b.LocalFree(text[0])
        return sidString
      } finally {
        b.koffi.free(buffer)
        b.CloseHandle(token[0]!)
      }
    } finally {
      b.CloseHandle(process)
    }
  })

const withOrThrow = <A>(f: (b: Bindings) => A): A => f(bindings())

/** This process's id as Windows knows it. */
export const currentProcessId = (): number => bindings().GetCurrentProcessId()

/**
 * A security descriptor built from SDDL (ConvertStringSecurityDescriptorToSecurityDescriptorW),
 * to pass to `createPipe`; free it with `freeLocal` once the pipe's instances are made.
 */
export const securityDescriptor = (sddl: string): Memory | Win32Error =>
  withOrThrow((b) => {
    const sd: Array<Memory> = [null]
    return b.ConvertStringSecurityDescriptorToSecurityDescriptorW(sddl, SDDL_REVISION_1, sd, null) === 0
      ? lastError(b)
      : sd[0]
  })

/** Frees memory the system allocated with LocalAlloc (a security descriptor from `securityDescriptor`). */
export const freeLocal = (memory: Memory): void => void bindings().LocalFree(memory)

/**
 * Creates an instance of the named pipe `name` (overlapped, byte mode, remote
 * clients refused) whose security descriptor is `sd`; `first`: fail unless
 * it is the pipe's first instance (FILE_FLAG_FIRST_PIPE_INSTANCE).
 */
export const createPipe = (name: string, sd: Memory, first: boolean): Handle | Win32Error =>
  withOrThrow((b) => {
    const h = b.CreateNamedPipeW(
      name,
      PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | (first ? FILE_FLAG_FIRST_PIPE_INSTANCE : 0),
      PIPE_TYPE_BYTE | PIPE_REJECT_REMOTE_CLIENTS,
      PIPE_UNLIMITED_INSTANCES,
      65536,
      65536,
      0,
      { nLength: 24, sd, inherit: 0 }
    )
    return h === INVALID_HANDLE_VALUE ? lastError(b) : associate(b, h)
  })

/**
 * Opens the client end of the named pipe `name` (overlapped), allowing the
 * server to identify but not impersonate us; ERROR_PIPE_BUSY when every
 * instance is taken.
 */
export const openPipe = (name: string): Handle | Win32Error =>
  withOrThrow((b) => {
    const h = b.CreateFileW(
      name,
      GENERIC_READ | GENERIC_WRITE | READ_CONTROL,
      0,
      null,
      OPEN_EXISTING,
      FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION,
      0
    )
    return h === INVALID_HANDLE_VALUE ? lastError(b) : associate(b, h)
  })

/** Whether a pipe named `name` exists (WaitNamedPipeW for 1 ms: only "no such pipe" says it does not). */
export const pipeExists = (name: string): boolean =>
  withOrThrow((b) => {
    if (b.WaitNamedPipeW(name, 1) !== 0) return true
    return b.GetLastError() !== ERROR_FILE_NOT_FOUND
  })

/** Waits (on a koffi worker thread, at most `millis`) for an instance of `name` to be free. */
export const waitPipe = (name: string, millis: number, done: (free: boolean) => void): void =>
  withOrThrow((b) => b.WaitNamedPipeW.async(name, millis, (_: unknown, ok: number) => done(ok !== 0)))

/** The process id at the other end: the client's on a server handle, the server's on a client handle. */
export const peerProcessId = (h: Handle, side: "server" | "client"): number | Win32Error =>
  withOrThrow((b) => {
    const pid = [0]
    const ok = side === "server" ? b.GetNamedPipeClientProcessId(h, pid) : b.GetNamedPipeServerProcessId(h, pid)
    return ok === 0 ? lastError(b) : pid[0]!
  })

/** The DACL of the object behind `h`, as SDDL (GetSecurityInfo): `D:P(A;;GA;;;S-1-5-...)`. */
export const daclOf = (h: Handle): string | Win32Error =>
  withOrThrow((b) => {
    const dacl: Array<Memory> = [null]
    const sd: Array<Memory> = [null]
    const rc = b.GetSecurityInfo(h, SE_KERNEL_OBJECT, DACL_SECURITY_INFORMATION, null, null, dacl, null, sd)
    if (rc !== 0) return { _tag: "Win32Error", code: rc }
    try {
      const text: Array<Memory> = [null]
      if (
        b.ConvertSecurityDescriptorToStringSecurityDescriptorW(
          sd[0],
          SDDL_REVISION_1,
          DACL_SECURITY_INFORMATION,
          text,
          null
        ) === 0
      ) {
        return lastError(b)
      }
      const sddl = b.koffi.decode.string16(text[0])
      b.LocalFree(text[0])
      return sddl
    } finally {
      b.LocalFree(sd[0])
    }
  })

/**
 * One overlapped operation slot of a handle: an OVERLAPPED and a buffer, in
 * koffi memory so that they stay put while the system uses them.
 */
export interface Slot {
  readonly overlapped: Memory
  buffer: Memory
  size: number
}

/** Allocates a slot with a buffer of `size` bytes (0: none). */
export const makeSlot = (size: number): Slot =>
  withOrThrow((b) => {
    const overlapped = b.koffi.alloc(b.Overlapped, 1)
    return { overlapped, buffer: size > 0 ? b.koffi.alloc("uint8_t", size) : null, size }
  })

/** Frees a slot: only once no operation on it is pending. */
export const freeSlot = (slot: Slot): void =>
  withOrThrow((b) => {
    b.koffi.free(slot.overlapped)
    if (slot.buffer !== null) b.koffi.free(slot.buffer)
  })

/** The outcome of an overlapped operation: the bytes it moved, or the error it ended with. */
export type Outcome = number | Win32Error

// Completions: every handle is associated with one I/O completion port, and one koffi worker
// thread at a time waits on it (GetQueuedCompletionStatusEx, a second at a time, while anything
// is pending): no thread per operation, never a wait on the event loop, and a process with
// nothing pending has nothing that keeps it alive
interface Port {
  readonly port: Handle
  readonly entries: Memory
  readonly removed: Memory
  readonly pending: Map<bigint, { readonly handle: Handle; readonly slot: Slot; readonly done: (o: Outcome) => void }>
  polling: boolean
}
let completion: Port | undefined

const portOf = (b: Bindings): Port | Win32Error => {
  if (completion === undefined) {
    const port = b.CreateIoCompletionPort(INVALID_HANDLE_VALUE, 0, 0, 1)
    if (port === 0) return lastError(b)
    completion = {
      port,
      entries: b.koffi.alloc("uint8_t", ENTRIES * ENTRY_SIZE),
      removed: b.koffi.alloc("uint32_t", 1),
      pending: new Map(),
      polling: false
    }
  }
  return completion
}

/** Associates a new handle with the completion port; closes it if that fails. */
const associate = (b: Bindings, h: Handle): Handle | Win32Error => {
  const port = portOf(b)
  if (isError(port)) {
    b.CloseHandle(h)
    return port
  }
  if (b.CreateIoCompletionPort(h, port.port, 0, 0) === 0) {
    const error = lastError(b)
    b.CloseHandle(h)
    return error
  }
  return h
}

const poll = (b: Bindings, port: Port): void => {
  if (port.polling || port.pending.size === 0) return
  port.polling = true
  b.GetQueuedCompletionStatusEx.async(port.port, port.entries, ENTRIES, port.removed, WAIT_SLICE, 0, () => {
    port.polling = false
    const removed = b.koffi.decode(port.removed, "uint32_t") as number
    const view = new DataView(b.koffi.view(port.entries, ENTRIES * ENTRY_SIZE))
    const finished: Array<() => void> = []
    for (let i = 0; i < removed; i++) {
      // OVERLAPPED_ENTRY: completion key, OVERLAPPED pointer, internal, bytes transferred
      const key = view.getBigUint64(i * ENTRY_SIZE + 8, true)
      const entry = port.pending.get(key)
      if (entry === undefined) continue
      port.pending.delete(key)
      finished.push(() => settle(b, entry.handle, entry.slot, entry.done, 0))
    }
    b.koffi.encode(port.removed, "uint32_t", 0)
    for (const finish of finished) finish()
    poll(b, port)
  })
}

const arm = (b: Bindings, slot: Slot): void =>
  b.koffi.encode(slot.overlapped, b.Overlapped, { internal: 0, internalHigh: 0, offset: 0, event: 0 })

/** Reads the result of the operation on `slot` once it is complete. */
const result = (b: Bindings, h: Handle, slot: Slot): Outcome => {
  const n = [0]
  return b.GetOverlappedResult(h, slot.overlapped, n, 0) === 0 ? lastError(b) : n[0]!
}

/**
 * Hands `done` the result of the operation on `slot`, whose completion has arrived. Wine can queue
 * the completion before the thread that began the read has copied the data in and written the
 * OVERLAPPED (it does that when the event loop next waits): until then the result reads
 * ERROR_IO_INCOMPLETE, and it is read again after a turn of the loop, then each millisecond.
 */
const settle = (b: Bindings, h: Handle, slot: Slot, done: (outcome: Outcome) => void, tries: number): void => {
  const outcome = result(b, h, slot)
  if (!isError(outcome) || outcome.code !== ERROR_IO_INCOMPLETE) return done(outcome)
  const again = () => settle(b, h, slot, done, tries + 1)
  if (tries < 3) setImmediate(again)
  else setTimeout(again, 1)
}

/** Hands the outcome of the operation begun on `slot` to `done` once its completion arrives. */
const complete = (b: Bindings, h: Handle, slot: Slot, done: (outcome: Outcome) => void): void => {
  const port = portOf(b)
  if (isError(port)) return done(port)
  port.pending.set(b.koffi.address(slot.overlapped), { handle: h, slot, done })
  poll(b, port)
}

/**
 * Runs an overlapped operation that `start` begins on `slot` (it returns the
 * call's BOOL) and hands its outcome to `done`. Success at once and
 * ERROR_IO_PENDING both queue a completion on the port.
 */
const overlapped = (h: Handle, slot: Slot, start: (b: Bindings) => number, done: (outcome: Outcome) => void): void =>
  withOrThrow((b) => {
    arm(b, slot)
    if (start(b) === 0) {
      const error = lastError(b)
      if (error.code !== ERROR_IO_PENDING) return done(error)
    }
    complete(b, h, slot, done)
  })

/** Reads up to `slot.size` bytes into `slot.buffer`. */
export const read = (h: Handle, slot: Slot, done: (outcome: Outcome) => void): void =>
  overlapped(h, slot, (b) => b.ReadFile(h, slot.buffer, slot.size, null, slot.overlapped), done)

/** Writes `bytes` (copied into `slot.buffer`, grown as needed). */
export const write = (h: Handle, slot: Slot, bytes: Uint8Array, done: (outcome: Outcome) => void): void =>
  withOrThrow((b) => {
    if (slot.size < bytes.byteLength) {
      if (slot.buffer !== null) b.koffi.free(slot.buffer)
      slot.size = Math.max(bytes.byteLength, 65536)
      slot.buffer = b.koffi.alloc("uint8_t", slot.size)
    }
    new Uint8Array(b.koffi.view(slot.buffer, bytes.byteLength)).set(bytes)
    overlapped(h, slot, (k) => k.WriteFile(h, slot.buffer, bytes.byteLength, null, slot.overlapped), done)
  })

/** The bytes a read left in `slot.buffer`, copied out. */
export const bytesOf = (slot: Slot, n: number): Buffer =>
  withOrThrow((b) => Buffer.from(new Uint8Array(b.koffi.view(slot.buffer, n))))

/** Waits for a client to connect to the server instance `h` (ConnectNamedPipe, overlapped). */
export const connect = (h: Handle, slot: Slot, done: (outcome: Outcome) => void): void =>
  withOrThrow((b) => {
    arm(b, slot)
    if (b.ConnectNamedPipe(h, slot.overlapped) === 0) {
      const error = lastError(b)
      // a client that connected between the instance's creation and this call: no completion is queued
      if (error.code === ERROR_PIPE_CONNECTED) return done(0)
      if (error.code !== ERROR_IO_PENDING) return done(error)
    }
    complete(b, h, slot, done)
  })

/** Cancels every pending operation on `h` (CancelIoEx): they complete with ERROR_OPERATION_ABORTED. */
export const cancel = (h: Handle): void => void bindings().CancelIoEx(h, null)
