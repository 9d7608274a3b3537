"""The socket path rules as functions of (platform, env, uid, tmpdir), so
macOS's (104-byte sun_path, a long $TMPDIR) run here too; the Node side
(packages/transport-pipe/test/SocketPath.test.ts) checks that both agree."""
import unittest

import helpers  # noqa: F401 (puts the package on sys.path)

from effect_ipc import IpcError, address

MAC_TMPDIR = "/var/folders/zz/zyxvpxvq6csfxvn_n0000000000000/T"
MAC = ("darwin", {"TMPDIR": MAC_TMPDIR + "/", "HOME": "/Users/someone"}, 501, MAC_TMPDIR)
LINUX = ("linux", {}, 1000, "/tmp")


class MacOSPaths(unittest.TestCase):
    def test_pipe_sockets_live_in_tmp_not_under_the_long_tmpdir(self):
        self.assertEqual(address.runtime_dir_for(*MAC), "/tmp/effect-ipc-501")
        name = "x" * 64
        path = address.resolve_on("pipe://" + name, *MAC).path
        self.assertEqual(path, "/tmp/effect-ipc-501/" + name + ".sock")
        self.assertLessEqual(len(path.encode("utf-8")), 103)

    def test_a_name_too_long_for_104_bytes_fails_on_macos_and_fits_linux(self):
        room = 103 - len("/tmp/effect-ipc-501/.sock")
        self.assertEqual(len(address.resolve_on("pipe://" + "n" * room, *MAC).path), 103)
        with self.assertRaises(IpcError) as caught:
            address.resolve_on("pipe://" + "n" * (room + 1), *MAC)
        self.assertEqual(caught.exception.reason, "NameTooLong")
        self.assertIn("darwin allows at most 103 (104 with the final NUL)", str(caught.exception))
        self.assertEqual(len(address.resolve_on("pipe://" + "n" * (room + 1), *LINUX).path), 105)

    def test_xdg_runtime_dir_first_and_no_abstract_sockets(self):
        xdg = ("darwin", {"XDG_RUNTIME_DIR": "/run/user/501"}, 501, MAC_TMPDIR)
        self.assertEqual(address.resolve_on("pipe://app", *xdg).path, "/run/user/501/effect-ipc/app.sock")
        with self.assertRaises(IpcError) as caught:
            address.resolve_on("unix:@app", *MAC)
        self.assertEqual(caught.exception.reason, "UnsupportedPlatform")


class LinuxPaths(unittest.TestCase):
    def test_unchanged(self):
        self.assertEqual(address.runtime_dir_for("linux", {"XDG_RUNTIME_DIR": "/run/user/1000"}, 1000, "/tmp"),
                         "/run/user/1000/effect-ipc")
        self.assertEqual(address.runtime_dir_for("linux", {"XDG_RUNTIME_DIR": ""}, 1000, "/var/tmp/x"),
                         "/var/tmp/x/effect-ipc-1000")
        self.assertEqual(address.resolve_on("unix:@app", *LINUX).path, "\0app")


if __name__ == "__main__":
    unittest.main()
