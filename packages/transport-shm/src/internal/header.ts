/**
 * The header at the start of every segment this package creates, so that any
 * process (and `effect-ipc shm ls` / `gc`) can tell what a segment is, who
 * made it, who holds it and whether it is an orphan. Little-endian, 4096
 * bytes; the payload starts at byte 4096 (page-aligned).
 *
 * ```text
 * offset  size    field
 * 0       4       magic 0x43504945 (the bytes "EIPC")
 * 4       2       layout version (2)
 * 6       2       kind: 1 resource link, 2 channel ring, 3 large channel message
 * 8       4       reserved, 0 (layout 1 kept a bare pid here as its lock)
 * 12      4       refcount: sum of the holder slots' counts
 * 16      12      creator: pid, start tag, pid-namespace tag
 * 28      4       state: 0 initialising, 1 ready, 2 deleted
 * 32      8       created at (f64, ms since the epoch)
 * 40      8       ttl (f64, ms; 0 = none)
 * 48      8       payload length (f64, bytes)
 * 56      4       payload offset (4096)
 * 60      4       holder slot count (64)
 * 64      16 x 64 holder slots: pid, start tag, pid-namespace tag, count
 * 1088    8       lock (u64): 0 when free, else the process inside a critical section:
 *                 pid (bits 0-21), start tag cut to 10 bits (22-31), pid-namespace tag (32-63)
 * 2048    2048    kind-specific (a ring's positions and flags)
 * ```
 *
 * Every change to the refcount, state and slots happens under the lock (a
 * 64-bit compare-and-swap of the lock word); a lock whose holder is dead is
 * taken over and the refcount recomputed from the slots, which are the truth.
 * A holder is judged only in our pid namespace, where its pid means
 * something (pid and start, so a recycled pid is not mistaken for it; see
 * `Processes.lockHolderLiveness`). A holder of another pid namespace is
 * alive, always: its lock is never taken, and if it died inside its critical
 * section the name must be removed by hand (the `Timeout` says how). The
 * critical sections are synchronous and a few hundred nanoseconds long.
 *
 * @internal
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Effect from "effect/Effect"
import * as Processes from "./processes.ts"

/** "EIPC" read as a little-endian u32. */
export const MAGIC = 0x43504945
/** The layout described above (1: a 32-bit lock holding a bare pid, at offset 8). */
export const VERSION = 2
/** Bytes before the payload. */
export const HEADER_SIZE = 4096
/** Holder slots in every header. */
export const SLOTS = 64
/** Start of the kind-specific area, in bytes. */
export const KIND_AREA = 2048

/** What a segment holds. */
export const Kind = { link: 1, ring: 2, message: 3 } as const
/** A segment kind. */
export type Kind = typeof Kind[keyof typeof Kind]

/** Lifecycle of a segment. */
export const State = { initialising: 0, ready: 1, deleted: 2 } as const

// int32 word indexes
const W_MAGIC = 0
const W_KIND = 1
const W_REFCOUNT = 3
const W_CREATOR = 4
const W_STATE = 7
const W_SLOT_COUNT = 15
const W_SLOTS = 16
const SLOT_WORDS = 4
// byte offsets of the f64 fields
const B_CREATED = 32
const B_TTL = 40
const B_PAYLOAD = 48
const B_PAYLOAD_OFFSET = 56
/** Byte offset of the 64-bit lock word. */
export const B_LOCK = 1088

/** Int32, lock and DataView access to a header. */
export interface HeaderView {
  readonly words: Int32Array
  /** The lock word (one u64). */
  readonly lock: BigUint64Array
  readonly data: DataView
}

/** Views the first `HEADER_SIZE` bytes of `buffer` as a header. */
export const view = (buffer: ArrayBuffer): HeaderView => ({
  words: new Int32Array(buffer, 0, HEADER_SIZE / 4),
  lock: new BigUint64Array(buffer, B_LOCK, 1),
  data: new DataView(buffer, 0, HEADER_SIZE)
})

/** The pid bits of a lock word: Linux's pids are below 2^22 (`PID_MAX_LIMIT`), macOS's below 100000. */
const PID_MASK = 0x3f_ffff
const PID_MASK_BIG = BigInt(PID_MASK)

/**
 * The lock word of process `p`: pid, start tag cut to 10 bits and pid-namespace
 * tag. A pid that does not fit below `PID_MASK` (only Linux's very last one
 * could) is written as `PID_MASK` with no start: a holder that cannot be
 * judged, so its lock is never taken over.
 */
export const lockWord = (p: Processes.ProcessId): bigint => {
  const low = p.pid > 0 && p.pid < PID_MASK ? (Processes.shortStart(p.start) << 22 | p.pid) >>> 0 : PID_MASK
  return BigInt(p.ns >>> 0) << 32n | BigInt(low)
}

/** The process a (non-zero) lock word names; its `start` is the 10-bit cut (`Processes.shortStart`). */
export const holderOf = (word: bigint): Processes.ProcessId => ({
  pid: Number(word & PID_MASK_BIG),
  start: Number(word >> 22n & 0x3ffn),
  ns: Number(word >> 32n)
})

let mine: { readonly pid: number; readonly word: bigint } | undefined
/** This process's lock word. */
const myLockWord = (): bigint => {
  if (mine === undefined || mine.pid !== process.pid) mine = { pid: process.pid, word: lockWord(Processes.current()) }
  return mine.word
}

/** Fields given when a segment is created. */
export interface Init {
  readonly kind: Kind
  readonly ttlMillis: number
  readonly payloadLength: number
  readonly createdAt: number
}

/**
 * Writes a fresh header (the segment is new and zero-filled) and takes the
 * lock for the creator; the caller finishes with `publish`. The magic is
 * written while the lock is held, so a reader that sees it waits for `ready`.
 */
export const initialise = (h: HeaderView, init: Init): void => {
  const me = Processes.current()
  Atomics.store(h.lock, 0, myLockWord())
  h.data.setFloat64(B_CREATED, init.createdAt, true)
  h.data.setFloat64(B_TTL, init.ttlMillis, true)
  h.data.setFloat64(B_PAYLOAD, init.payloadLength, true)
  h.data.setUint32(B_PAYLOAD_OFFSET, HEADER_SIZE, true)
  h.words[W_SLOT_COUNT] = SLOTS
  h.words[W_CREATOR] = me.pid
  h.words[W_CREATOR + 1] = me.start
  h.words[W_CREATOR + 2] = me.ns
  h.words[W_KIND] = VERSION | (init.kind << 16)
  Atomics.store(h.words, W_MAGIC, MAGIC)
}

/** Marks a freshly initialised header ready and releases the creator's lock. */
export const publish = (h: HeaderView): void => {
  Atomics.store(h.words, W_STATE, State.ready)
  Atomics.store(h.lock, 0, 0n)
}

/** A snapshot of a header's fields. */
export interface Snapshot {
  readonly magic: number
  readonly version: number
  readonly kind: number
  readonly state: number
  readonly refcount: number
  readonly creator: Processes.ProcessId
  readonly createdAt: number
  readonly ttlMillis: number
  readonly payloadLength: number
  readonly payloadOffset: number
  readonly holders: ReadonlyArray<Holder>
}

/** One holder slot in use: a process and how many references it holds. */
export interface Holder extends Processes.ProcessId {
  readonly count: number
}

const slotOf = (h: HeaderView, i: number): Holder => {
  const at = W_SLOTS + i * SLOT_WORDS
  return {
    pid: Atomics.load(h.words, at),
    start: h.words[at + 1]!,
    ns: h.words[at + 2]!,
    count: Atomics.load(h.words, at + 3)
  }
}

/** Reads every field (without the lock: a snapshot that may be stale at once). */
export const snapshot = (h: HeaderView): Snapshot => {
  const kindWord = h.words[W_KIND]!
  const holders: Array<Holder> = []
  for (let i = 0; i < SLOTS; i++) {
    const slot = slotOf(h, i)
    if (slot.pid !== 0) holders.push(slot)
  }
  return {
    magic: Atomics.load(h.words, W_MAGIC) >>> 0,
    version: kindWord & 0xffff,
    kind: kindWord >>> 16,
    state: Atomics.load(h.words, W_STATE),
    refcount: Atomics.load(h.words, W_REFCOUNT),
    creator: { pid: h.words[W_CREATOR]!, start: h.words[W_CREATOR + 1]!, ns: h.words[W_CREATOR + 2]! },
    createdAt: h.data.getFloat64(B_CREATED, true),
    ttlMillis: h.data.getFloat64(B_TTL, true),
    payloadLength: h.data.getFloat64(B_PAYLOAD, true),
    payloadOffset: h.data.getUint32(B_PAYLOAD_OFFSET, true),
    holders
  }
}

const kindNames: Record<number, string> = { [Kind.link]: "link", [Kind.ring]: "ring", [Kind.message]: "message" }

/** The name of a kind (`link`, `ring`, `message`). */
export const kindName = (kind: number): string => kindNames[kind] ?? `kind ${kind}`

/**
 * Checks that a segment of `size` bytes holds a valid header of `kind` (any
 * kind when absent): magic, version, kind, and a size that covers the header
 * and the payload it declares. Fails with `Protocol`.
 */
export const validate = (
  h: HeaderView | undefined,
  size: number,
  kind: Kind | undefined,
  name: string
): Effect.Effect<Snapshot, IpcError.IpcError> => {
  const bad = (why: string) => Effect.fail(IpcError.make("Protocol", `segment ${name}: ${why}`))
  if (h === undefined || size < HEADER_SIZE) {
    return bad(`truncated: ${size} bytes, smaller than the ${HEADER_SIZE}-byte header`)
  }
  const s = snapshot(h)
  if (s.magic !== MAGIC) {
    return bad(`not an effect-ipc segment (magic 0x${s.magic.toString(16).padStart(8, "0")})`)
  }
  if (s.version !== VERSION) return bad(`layout version ${s.version}, this build reads version ${VERSION}`)
  if (kind !== undefined && s.kind !== kind) return bad(`holds a ${kindName(s.kind)}, expected a ${kindName(kind)}`)
  if (s.payloadOffset !== HEADER_SIZE || !Number.isSafeInteger(s.payloadLength) || s.payloadLength < 0) {
    return bad("corrupt header (payload offset or length)")
  }
  if (HEADER_SIZE + s.payloadLength > size) {
    return bad(`truncated: ${size} bytes, the header declares ${HEADER_SIZE + s.payloadLength}`)
  }
  return Effect.succeed(s)
}

// ---- the lock -----------------------------------------------------------------

/** The references the slots hold. */
const slotTotal = (h: HeaderView): number => {
  let total = 0
  for (let i = 0; i < SLOTS; i++) {
    const slot = slotOf(h, i)
    if (slot.pid !== 0) total += Math.max(0, slot.count)
  }
  return total
}

/** Recomputes the refcount from the slots (after taking over a dead process's lock). */
const repair = (h: HeaderView): void => {
  Atomics.store(h.words, W_REFCOUNT, slotTotal(h))
}

/**
 * Tries to take the lock: a few compare-and-swaps, then, if a holder still has
 * it, takes it over when that holder is dead, repairing the count.
 */
const tryLock = (h: HeaderView): boolean => {
  const me = myLockWord()
  for (let i = 0; i < 64; i++) if (Atomics.compareExchange(h.lock, 0, 0n, me) === 0n) return true
  const owner = Atomics.load(h.lock, 0)
  if (owner === 0n) return Atomics.compareExchange(h.lock, 0, 0n, me) === 0n
  if (unjudgeable(owner) || Processes.lockHolderLiveness(holderOf(owner)) !== "dead") return false
  if (Atomics.compareExchange(h.lock, 0, owner, me) !== owner) return false
  repair(h)
  return true
}

/** A holder whose pid did not fit its lock word (see `lockWord`). */
const unjudgeable = (word: bigint): boolean => (word & 0xffff_ffffn) === PID_MASK_BIG

const unlock = (h: HeaderView): void => {
  Atomics.store(h.lock, 0, 0n)
}

/** Who holds the lock, for an error: its pid, what can be said of it from here, and the remedy. */
const describeHolder = (h: HeaderView, name: string): string => {
  const word = Atomics.load(h.lock, 0)
  if (word === 0n) return "(free now)"
  const holder = holderOf(word)
  const remedy = `remove the name (Segment.unlink("${name}"), or rm /dev/shm/${name}): processes that hold the ` +
    `link keep their memory, and the name is free for a new link`
  if (unjudgeable(word)) return `by a process that cannot be judged (pid ${holder.pid}); if the lock stays, ${remedy}`
  if (holder.ns !== Processes.current().ns) {
    return `by pid ${holder.pid} of another pid namespace, which counts as alive from here; if that process ` +
      `is gone, ${remedy}`
  }
  return `by pid ${holder.pid}, which counts as alive: a process has that pid (the holder, stopped or stuck in ` +
    `it; or a process that reused its pid and whose start time matches the lock word's 10-bit tag by chance, or ` +
    `that runs in another time namespace); if the lock stays, ${remedy}`
}

/**
 * Runs the synchronous `f` under the header lock. Spins briefly, then retries
 * every millisecond (without blocking the event loop) for up to 2 s before
 * failing with `Timeout`, which names the holder and the remedy.
 */
export const withLock = <A>(h: HeaderView, name: string, f: () => A): Effect.Effect<A, IpcError.IpcError> => {
  const run = (): A => {
    try {
      return f()
    } finally {
      unlock(h)
    }
  }
  // taking the lock and running `f` are one synchronous step: no other fiber of this process runs between
  const once = Effect.sync((): { readonly value: A } | undefined => tryLock(h) ? { value: run() } : undefined)
  const retry = Effect.gen(function*() {
    const deadline = Date.now() + 2000
    while (Date.now() < deadline) {
      yield* Effect.sleep("1 millis")
      if (tryLock(h)) return run()
    }
    return yield* IpcError.make(
      "Timeout",
      `segment ${name}: its header lock was held for over 2 s ${describeHolder(h, name)}`
    )
  })
  return Effect.flatMap(once, (done) => done === undefined ? retry : Effect.succeed(done.value))
}

// ---- holders (call under the lock) ----------------------------------------------

/** The refcount (under the lock, exact). */
export const refcount = (h: HeaderView): number => Atomics.load(h.words, W_REFCOUNT)

/** The state (`State`). */
export const state = (h: HeaderView): number => Atomics.load(h.words, W_STATE)

/** Sets the state. */
export const setState = (h: HeaderView, value: number): void => {
  Atomics.store(h.words, W_STATE, value)
}

/** Adds one reference for this process; `false` when every slot is taken by another live process. */
export const addHolder = (h: HeaderView): boolean => {
  const me = Processes.current()
  let free = -1
  for (let i = 0; i < SLOTS; i++) {
    const slot = slotOf(h, i)
    if (slot.pid === me.pid && slot.start === me.start && slot.ns === me.ns) {
      Atomics.add(h.words, W_SLOTS + i * SLOT_WORDS + 3, 1)
      Atomics.add(h.words, W_REFCOUNT, 1)
      return true
    }
    if (slot.pid === 0 && free < 0) free = i
  }
  if (free < 0) {
    reapDead(h)
    for (let i = 0; i < SLOTS && free < 0; i++) if (slotOf(h, i).pid === 0) free = i
    if (free < 0) return false
  }
  const at = W_SLOTS + free * SLOT_WORDS
  h.words[at + 1] = me.start
  h.words[at + 2] = me.ns
  Atomics.store(h.words, at + 3, 1)
  Atomics.store(h.words, at, me.pid)
  Atomics.add(h.words, W_REFCOUNT, 1)
  return true
}

/**
 * Drops one reference of this process; returns the references left: the count or the slots, whichever says more,
 * so that damage to one of them (a count too low, a slot wiped) never makes the last release of a link that others
 * still hold.
 */
export const removeHolder = (h: HeaderView): number => {
  const me = Processes.current()
  for (let i = 0; i < SLOTS; i++) {
    const slot = slotOf(h, i)
    if (slot.pid === me.pid && slot.start === me.start && slot.ns === me.ns) {
      const at = W_SLOTS + i * SLOT_WORDS
      if (slot.count <= 1) {
        Atomics.store(h.words, at, 0)
        Atomics.store(h.words, at + 3, 0)
      } else {
        Atomics.sub(h.words, at + 3, 1)
      }
      const left = Atomics.sub(h.words, W_REFCOUNT, 1) - 1
      if (left < 0) repair(h)
      break
    }
  }
  return Math.max(refcount(h), slotTotal(h))
}

/** Clears the slots of dead processes (their references go with them); returns how many. */
export const reapDead = (h: HeaderView): number => {
  let reaped = 0
  for (let i = 0; i < SLOTS; i++) {
    const slot = slotOf(h, i)
    if (slot.pid !== 0 && Processes.liveness(slot) === "dead") {
      const at = W_SLOTS + i * SLOT_WORDS
      Atomics.store(h.words, at, 0)
      Atomics.store(h.words, at + 3, 0)
      reaped++
    }
  }
  if (reaped > 0) repair(h)
  return reaped
}

/** The slots in use (under the lock, exact). */
export const holders = (h: HeaderView): ReadonlyArray<Holder> => snapshot(h).holders
