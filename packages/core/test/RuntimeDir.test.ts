/**
 * The runtime-directory rule every transport follows (core's `RuntimeDir`),
 * on described hosts: which `XDG_RUNTIME_DIR` is used, and the fallback.
 */
import * as RuntimeDir from "@effect-ipc/core/RuntimeDir"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const host = (over: Partial<RuntimeDir.Host>): RuntimeDir.Host => ({
  platform: "linux",
  env: {},
  uid: 1000,
  tmpdir: "/tmp",
  ...over
})

describe("RuntimeDir.directoryOn", () => {
  it("takes $XDG_RUNTIME_DIR/effect-ipc when the host's test takes the directory", () => {
    assert.strictEqual(
      RuntimeDir.directoryOn(host({ env: { XDG_RUNTIME_DIR: "/run/user/1000/" } })),
      "/run/user/1000/effect-ipc"
    )
    const asked: Array<string> = []
    const refused = host({
      env: { XDG_RUNTIME_DIR: "/run/user/0" },
      runtimeBaseFits: (dir) => (asked.push(dir), false)
    })
    assert.strictEqual(RuntimeDir.directoryOn(refused), "/tmp/effect-ipc-1000")
    assert.deepStrictEqual(asked, ["/run/user/0"])
  })

  it("falls back to <tmpdir>/effect-ipc-<uid>, /tmp on macOS, and `user` where there are no uids", () => {
    assert.strictEqual(
      RuntimeDir.directoryOn(host({ env: { XDG_RUNTIME_DIR: "" }, tmpdir: "/var/t/" })),
      "/var/t/effect-ipc-1000"
    )
    assert.strictEqual(
      RuntimeDir.directoryOn(host({ platform: "darwin", tmpdir: "/var/folders/xy/T" })),
      "/tmp/effect-ipc-1000"
    )
    assert.strictEqual(RuntimeDir.directoryOn(host({ uid: undefined })), "/tmp/effect-ipc-user")
    // what is not a socket (ws:// token files) keeps macOS's own temp directory
    assert.strictEqual(
      RuntimeDir.directoryOn(host({ platform: "darwin", tmpdir: "/var/folders/xy/T" }), { sockets: false }),
      "/var/folders/xy/T/effect-ipc-1000"
    )
  })

  it("this process's host is its effective user's, not its real one's", () => {
    // real and effective ids differ only in a process that changed them (the seteuid tests of
    // transport-pipe, transport-ws, transport-shm and Python do, as root); here geteuid says another
    const real = process.geteuid!
    process.geteuid = () => 4242
    try {
      assert.strictEqual(RuntimeDir.userId(), 4242)
      assert.strictEqual(RuntimeDir.currentHost().uid, 4242)
      assert.strictEqual(
        RuntimeDir.directoryOn({ ...RuntimeDir.currentHost(), env: {} }),
        Path.join(Os.tmpdir(), "effect-ipc-4242")
      )
    } finally {
      process.geteuid = real
    }
  })
})

describe("RuntimeDir.ensurePrivate and ownedDirectory", () => {
  it("makes a missing directory 0700 and refuses one others can enter, or a link", async () => {
    const scratch = Fs.mkdtempSync(Path.join(Os.tmpdir(), "rtdir-"))
    try {
      const made = Path.join(scratch, "a", "b")
      assert.strictEqual(await Effect.runPromise(RuntimeDir.ensurePrivate(made)), made)
      assert.strictEqual(Fs.statSync(made).mode & 0o777, 0o700)
      assert.isTrue(RuntimeDir.ownedDirectory(made, true))
      const open = Path.join(scratch, "open")
      Fs.mkdirSync(open, { mode: 0o755 })
      Fs.chmodSync(open, 0o755)
      assert.isTrue(RuntimeDir.privateBase(open))
      assert.isFalse(RuntimeDir.ownedDirectory(open, true))
      const refused = await Effect.runPromise(Effect.flip(RuntimeDir.ensurePrivate(open)))
      assert.strictEqual(refused.reason._tag, "PermissionDenied")
      const link = Path.join(scratch, "link")
      Fs.symlinkSync(made, link)
      assert.isFalse(RuntimeDir.privateBase(link))
      assert.strictEqual(
        (await Effect.runPromise(Effect.flip(RuntimeDir.ensurePrivate(link)))).reason._tag,
        "PermissionDenied"
      )
      assert.isFalse(RuntimeDir.privateBase("relative/dir"))
      // what another user may plant where the directory goes: a file, a FIFO, a link to nothing
      const planted = [Path.join(scratch, "file"), Path.join(scratch, "fifo"), Path.join(scratch, "dangling")]
      Fs.writeFileSync(planted[0]!, "")
      ChildProcess.execFileSync("mkfifo", [planted[1]!])
      Fs.symlinkSync(Path.join(scratch, "nowhere"), planted[2]!)
      for (const path of planted) {
        for (const recursive of [true, false]) {
          const error = await Effect.runPromise(Effect.flip(RuntimeDir.ensurePrivate(path, undefined, recursive)))
          assert.strictEqual(error.reason._tag, "PermissionDenied", `${path}: ${error.message}`)
          assert.include(error.detail, "is not a private directory of this user")
        }
      }
      assert.isFalse(Fs.existsSync(Path.join(scratch, "nowhere")), "nothing is made through the link")
    } finally {
      Fs.rmSync(scratch, { recursive: true, force: true })
    }
  })
  it("refuses a directory of this user that its group may enter, and a base its group may write", async () => {
    const scratch = Fs.mkdtempSync(Path.join(Os.tmpdir(), "rtdir-"))
    try {
      const enterable = Path.join(scratch, "enterable")
      Fs.mkdirSync(enterable)
      Fs.chmodSync(enterable, 0o750)
      const refused = await Effect.runPromise(Effect.flip(RuntimeDir.ensurePrivate(enterable)))
      assert.strictEqual(refused.reason._tag, "PermissionDenied")
      assert.include(refused.detail, "is not a private directory of this user")
      // an XDG_RUNTIME_DIR its group may write (a careless environment): another user could replace what is made there
      Fs.chmodSync(enterable, 0o770)
      assert.isFalse(RuntimeDir.privateBase(enterable))
      assert.strictEqual(
        RuntimeDir.directoryOn({ ...RuntimeDir.currentHost(), env: { XDG_RUNTIME_DIR: enterable } }),
        RuntimeDir.directoryOn({ ...RuntimeDir.currentHost(), env: {} })
      )
    } finally {
      Fs.rmSync(scratch, { recursive: true, force: true })
    }
  })
})
