/**
 * Who listens on a local TCP port (Linux): the uids of the sockets in
 * `/proc/net/tcp` and `/proc/net/tcp6` in state LISTEN on that port. A client
 * that read a token from this user's token file checks that the port is this
 * user's before sending it: a listener of another user there (the server
 * died, someone else took its port) is refused. Node only.
 *
 * @since 0.1.0
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as RuntimeDir from "@effect-ipc/core/RuntimeDir"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"

/** The `st` value of a listening socket in `/proc/net/tcp`. */
const LISTEN = "0A"

/**
 * The uids of the sockets listening on TCP `port` (any local address), from
 * `/proc/net/tcp` and `/proc/net/tcp6`; `undefined` where there is no such
 * table (not Linux).
 */
export const listenerUids = (port: number): ReadonlyArray<number> | undefined => {
  const uids: Array<number> = []
  let read = false
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string
    try {
      text = Fs.readFileSync(table, "utf8")
    } catch {
      continue
    }
    read = true
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/)
      if (fields.length < 8 || fields[3] !== LISTEN) continue
      const local = fields[1]!
      if (Number.parseInt(local.slice(local.lastIndexOf(":") + 1), 16) === port) uids.push(Number(fields[7]))
    }
  }
  return read ? uids : undefined
}

/**
 * Succeeds when every listener on `port` is this user's (or when that cannot
 * be told: not Linux, no listener yet); fails with `PeerRejected` when one
 * belongs to another uid.
 */
export const checkOwn = (port: number, shown: string): Effect.Effect<void, IpcError.IpcError> =>
  Effect.suspend(() => {
    const me = RuntimeDir.userId()
    const uids = listenerUids(port)
    if (me === undefined || uids === undefined) return Effect.void
    const other = uids.find((uid) => uid !== me)
    return other === undefined
      ? Effect.void
      : Effect.fail(
        IpcError.make(
          "PeerRejected",
          `the listener on port ${port} belongs to uid ${other}, not this user: the token of this user's token file is not sent to it`,
          shown
        )
      )
  })
