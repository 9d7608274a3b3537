/**
 * What `IpcRpc`'s bound on a served connection's calls keeps of each
 * connection (see `boundCalls` there), and how much memory a waiting request
 * is taken to keep.
 */
import type * as Deferred from "effect/Deferred"
import type * as Fiber from "effect/Fiber"
import type * as RpcMessage from "effect/rpc/RpcMessage"

/** A message waiting for room, and the bytes it is taken to keep (see `estimatedBytes`). */
export interface Held {
  readonly message: RpcMessage.FromClientEncoded
  readonly bytes: number
}

/** A served connection's calls: how many run and which, and the requests (and an `Eof` behind them) waiting for room. */
export interface Calls {
  inFlight: number
  // the ids of the calls running (a notification's is ours); one ended by a Defect that names no call stays until
  // none runs
  readonly running: Set<string | number>
  readonly held: Array<Held>
  // the bytes the held messages keep, together
  heldBytes: number
  // the ids of the requests among them (a notification has none)
  readonly heldIds: Set<string | number>
  // whether an Eof waits among them
  eofHeld: boolean
  // the fire-and-forget calls started and not acknowledged yet: whether their acknowledgement goes to the client
  // (false for a notification, run as a `discard` call of an id of ours)
  readonly quiet: Map<string | number, boolean>
  // the fire-and-forget calls acknowledged (or whose acknowledgement could not be sent), ended by their handler's fiber
  readonly acknowledged: Set<string | number>
  // the fibers whose Exit could not be sent, and the call of each: the Defect such a fiber sends next is that call's
  readonly unsent: WeakMap<Fiber.Fiber<unknown, unknown>, string | number>
  // the drainer, waiting for a call to end
  wake: Deferred.Deferred<void> | undefined
  drainer: Fiber.Fiber<void> | undefined
}

/** A connection's calls before its first message. */
export const make = (): Calls => ({
  inFlight: 0,
  running: new Set(),
  held: [],
  heldBytes: 0,
  heldIds: new Set(),
  eofHeld: false,
  quiet: new Map(),
  acknowledged: new Set(),
  unsent: new WeakMap(),
  wake: undefined,
  drainer: undefined
})

/** Whether the first waiting message may go to effect's server: an `Eof`, or a request while fewer than `max` calls run. */
export const canStart = (calls: Calls, max: number): boolean => {
  const next = calls.held[0]?.message
  return next !== undefined && (next._tag !== "Request" || calls.inFlight < max)
}

/**
 * The bytes a decoded message is taken to keep, counted up to just past
 * `limit` (then no further): a string its length (plus a header), bytes their
 * length, and every value, array slot and object key a few words more, so a
 * message of many small values counts about what it takes in the heap.
 */
export const estimatedBytes = (message: unknown, limit: number): number => {
  let total = 0
  const left: Array<unknown> = [message]
  while (left.length > 0 && total <= limit) {
    const value = left.pop()
    if (typeof value === "string") total += 16 + value.length
    else if (typeof value !== "object" || value === null) total += 8
    else if (ArrayBuffer.isView(value)) total += 64 + value.byteLength
    else if (Array.isArray(value) || value instanceof Set) {
      total += 16 + 8 * (Array.isArray(value) ? value.length : value.size)
      for (const item of value) left.push(item)
    } else if (value instanceof Map) {
      total += 16 + 16 * value.size
      for (const [key, item] of value) left.push(key, item)
    } else {
      total += 16
      for (const key of Object.keys(value)) {
        total += 16 + key.length
        left.push((value as Record<string, unknown>)[key])
      }
    }
  }
  return total
}
