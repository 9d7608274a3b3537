/**
 * A child-process peer of the conformance suite that writes raw bytes, not
 * frames, on the pipe to its parent (fd 3). Usage:
 *
 *   node rawPeer.ts HEX hold|cut
 *
 * `hold`: write, then wait until the parent drops the pipe, and exit;
 * `cut`: write, then exit at once. It loads nothing but Node itself, so it is
 * writing within milliseconds of its start.
 *
 * @since 0.1.0
 */
import * as Net from "node:net"

const [data = "", mode = "hold"] = process.argv.slice(2)

if (process.env["EFFECT_IPC_FD"] !== "3") {
  process.stderr.write("rawPeer needs the parent's pipe on fd 3 (EFFECT_IPC_FD=3)\n")
  process.exit(2)
}
const socket = new Net.Socket({ fd: 3, readable: true, writable: true })
socket.on("error", () => process.exit(0))
socket.on("close", () => process.exit(0))
socket.resume()
socket.write(Buffer.from(data, "hex"), () => {
  if (mode === "cut") socket.destroy()
})
