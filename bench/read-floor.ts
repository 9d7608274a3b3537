/**
 * What Node's own socket read path can carry at 1 MiB, with no effect-ipc at
 * all: a child process writes the same 1 MiB buffer to a Unix socket in a
 * loop, and this process counts the bytes, read in one of three ways:
 *
 * - `data`: `socket.on("data")`, as every `Readable` consumer (and
 *   `StreamChannel`) reads: each read is a fresh buffer Node allocates;
 * - `copy`: the same, plus one copy of each message into a buffer of its own
 *   (`Buffer.allocUnsafeSlow`), the least a receiver that owns its messages
 *   does;
 * - `onread`: `net.connect({ onread })`, Node's reads into one reused buffer
 *   (no allocation per read; only for sockets this process creates, not for
 *   those a `net.Server` accepts).
 *
 * Rounds alternate the modes; each line is one round, the summary the
 * median per mode. See README.md, "1 MiB over a stream".
 *
 *   bash scripts/node.sh bench/read-floor.ts [--rounds=4] [--messages=400]
 */
import { fork } from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"

const SIZE = 1024 * 1024
const arg = (name: string, fallback: number): number => {
  const prefix = `--${name}=`
  const found = process.argv.find((a) => a.startsWith(prefix))
  return found === undefined ? fallback : Number(found.slice(prefix.length))
}

type Mode = "data" | "copy" | "onread"

const median = (values: ReadonlyArray<number>): number => values.toSorted((a, b) => a - b)[values.length >> 1]!

const writer = (path: string, messages: number): void => {
  const payload = Buffer.alloc(SIZE, 7)
  const server = Net.createServer((socket) => {
    let sent = 0
    const go = (): void => {
      while (sent < messages) {
        sent++
        if (!socket.write(payload)) {
          socket.once("drain", go)
          return
        }
      }
      socket.end()
    }
    go()
  })
  server.listen(path, () => process.send?.("ready"))
}

/** Reads `messages` MiB from a writer child in `mode`; resolves with MB/s. */
const measure = (mode: Mode, messages: number): Promise<number> =>
  new Promise((resolve, reject) => {
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-read-floor-"))
    const path = Path.join(dir, "s")
    const child = fork(import.meta.filename, ["--writer", path, String(messages)], { execArgv: process.execArgv })
    const total = SIZE * messages
    child.once("error", reject)
    child.once("message", () => {
      let got = 0
      const start = performance.now()
      const done = (): void => {
        const seconds = (performance.now() - start) / 1000
        child.kill()
        Fs.rmSync(dir, { recursive: true, force: true })
        resolve(got / seconds / 1e6)
      }
      if (mode === "onread") {
        const socket = Net.connect({
          path,
          onread: {
            buffer: Buffer.allocUnsafeSlow(64 * 1024),
            callback: (n: number) => {
              got += n
              if (got >= total) {
                socket.destroy()
                done()
              }
              return true
            }
          }
        })
        return
      }
      const socket = Net.connect(path)
      let body = Buffer.allocUnsafeSlow(SIZE)
      let fill = 0
      socket.on("data", (chunk: Buffer) => {
        got += chunk.byteLength
        if (mode === "copy") {
          let offset = 0
          while (offset < chunk.byteLength) {
            const take = Math.min(SIZE - fill, chunk.byteLength - offset)
            body.set(chunk.subarray(offset, offset + take), fill)
            fill += take
            offset += take
            if (fill === SIZE) {
              body = Buffer.allocUnsafeSlow(SIZE)
              fill = 0
            }
          }
        }
        if (got >= total) {
          socket.destroy()
          done()
        }
      })
    })
  })

if (process.argv[2] === "--writer") {
  writer(process.argv[3]!, Number(process.argv[4]))
} else {
  const rounds = arg("rounds", 4)
  const messages = arg("messages", 400)
  const results: Record<Mode, Array<number>> = { data: [], copy: [], onread: [] }
  const modes: ReadonlyArray<Mode> = ["data", "copy", "onread"]
  for (let round = 0; round < rounds; round++) {
    const order = modes.map((_, i) => modes[(i + round) % modes.length]!)
    const line: Array<string> = []
    for (const mode of order) {
      const rate = await measure(mode, messages)
      results[mode].push(rate)
      line.push(`${mode} ${rate.toFixed(0)} MB/s`)
    }
    console.log(`round ${round + 1}: ${line.join(", ")}`)
  }
  console.log(`median: ${modes.map((mode) => `${mode} ${median(results[mode]).toFixed(0)} MB/s`).join(", ")}`)
}
