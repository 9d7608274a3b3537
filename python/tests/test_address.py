"""The socket path rules as functions of (platform, env, uid, tmpdir), so
macOS's (104-byte sun_path, a long $TMPDIR) run here too; the Node side
(packages/transport-pipe/test/SocketPath.test.ts) checks that both agree."""
import os
import sys
import threading
import unittest

from helpers import TempDirCase

from effect_ipc import IpcError, address, connect, listen

MAC_TMPDIR = "/var/folders/zz/zyxvpxvq6csfxvn_n0000000000000/T"
MAC = ("darwin", {"TMPDIR": MAC_TMPDIR + "/", "HOME": "/Users/someone"}, 501, MAC_TMPDIR)
LINUX = ("linux", {}, 1000, "/tmp")


def _one_message(test, name, message):
    """Listens at ``name``, connects to it and sends ``message``: what the server end received."""
    listener = listen(name)
    test.addCleanup(listener.close)
    got = []

    def serve():
        channel = listener.accept(10)
        try:
            got.append(channel.receive(10))
        finally:
            channel.close()

    server = threading.Thread(target=serve)
    server.daemon = True
    server.start()
    client = connect(name)
    client.send(message)
    server.join(10)
    client.close()
    return got


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
        # as the Node side: an abstract name has no final NUL, so 107 bytes fit (it was refused at 107)
        self.assertEqual(address.resolve_on("unix:@" + "a" * 107, *LINUX).path, "\0" + "a" * 107)
        with self.assertRaises(IpcError) as caught:
            address.resolve_on("unix:@" + "a" * 108, *LINUX)
        self.assertEqual(caught.exception.reason, "NameTooLong")
        self.assertIn("abstract socket name is 108 bytes; linux allows at most 107", str(caught.exception))
        # the empty name: surely a name left out, refused as ``unix:`` is
        with self.assertRaises(IpcError) as caught:
            address.resolve_on("unix:@", *LINUX)
        self.assertEqual(caught.exception.reason, "InvalidAddress")
        self.assertIn("an abstract socket needs a name", str(caught.exception))

    @unittest.skipUnless(sys.platform.startswith("linux"), "abstract sockets are Linux's")
    def test_serves_an_abstract_socket_of_the_longest_name_linux_takes(self):
        name = "unix:@" + ("py-%d-" % os.getpid()).ljust(107, "a")
        self.assertEqual(_one_message(self, name, b"\x07"), [b"\x07"])

    def test_a_described_host_takes_its_xdg_runtime_dir_as_it_is(self):
        xdg = ("linux", {"XDG_RUNTIME_DIR": "/run/user/1000"}, 1000, "/tmp")
        self.assertEqual(address.runtime_dir_for(*xdg), "/run/user/1000/effect-ipc")
        self.assertEqual(address.runtime_dir_for(*xdg, base_fits=lambda base: False), "/tmp/effect-ipc-1000")
        self.assertEqual(address.resolve_on("pipe://app", *xdg, base_fits=lambda base: False).path,
                         "/tmp/effect-ipc-1000/app.sock")


def _listing(directory):
    """What is in ``directory`` and below, as sorted relative paths (links not followed)."""
    found = []
    for top, dirs, files in os.walk(directory):
        for name in dirs + files:
            found.append(os.path.relpath(os.path.join(top, name), directory))
    return sorted(found)


class PercentEscapes(unittest.TestCase):
    def test_escapes_nul_and_lone_surrogates_as_nodes_address_parse(self):
        # a bad escape was kept as text, %ff became U+FFFD, a NUL went into an abstract name, and a lone
        # surrogate raised UnicodeEncodeError; Node's Address.parse refuses them with InvalidAddress
        self.assertEqual(address.resolve_on("unix:///tmp/%c3%a9%20x.sock", *LINUX).path, "/tmp/\u00e9 x.sock")
        self.assertEqual(address.resolve_on("unix:@na%41me", *LINUX).path, "\0na%41me")  # an abstract name: as written
        for raw in ("unix:///tmp/a%zz.sock", "unix:///tmp/a%.sock", "unix:///tmp/%ff.sock", "unix:@na%zzme",
                    "unix:@a\0b", "unix:///tmp/a%00b.sock", "unix:///tmp/\ud800.sock", "pipe://a%zz",
                    "unix:///tmp/%ed%a0%80.sock"):
            with self.assertRaises(IpcError) as caught:
                address.resolve_on(raw, *LINUX)
            self.assertEqual(caught.exception.reason, "InvalidAddress", raw)

    def test_a_bare_question_mark_or_hash_is_invalid_and_escaped_ones_are_the_path(self):
        # "unix:///tmp/x.sock?x=1" listened at the file "x.sock?x=1" (where "%20" was decoded): a query or a
        # fragment is refused as by Node's Address.path; a path's own are %3F and %23
        for raw in ("unix:///tmp/x.sock?x=1", "unix:///tmp/x.sock#frag", "unix:///tmp/a?"):
            with self.assertRaises(IpcError) as caught:
                address.resolve_on(raw, *LINUX)
            self.assertEqual(caught.exception.reason, "InvalidAddress", raw)
        self.assertEqual(address.resolve_on("unix:///tmp/a%3Fb%23c.sock", *LINUX).path, "/tmp/a?b#c.sock")

    def test_a_pipe_name_ending_in_a_newline_is_invalid(self):
        # _PIPE_NAME ended in "$", which matches before a final newline: "pipe://app\n" resolved to the
        # socket "app\n.sock"; Node's pipeName (a JavaScript "$") refuses it
        for raw in ("pipe://app\n", "pipe://a.b-c_d\n"):
            with self.assertRaises(IpcError) as caught:
                address.resolve_on(raw, *LINUX)
            self.assertEqual(caught.exception.reason, "InvalidAddress", repr(raw))


class AnXdgRuntimeDirNotThisUsers(TempDirCase):
    """As Node's SocketPath.test.ts ("an XDG_RUNTIME_DIR that is not this user's, or that others
    may write"): $XDG_RUNTIME_DIR is used only when it is an absolute path to a directory (not a
    link) of this user that neither the group nor others can write; otherwise pipe://, the runtime
    directory and the path locks use the fallback <tmp>/effect-ipc-<uid>, as when it is unset, and
    nothing is made in $XDG_RUNTIME_DIR."""

    def setUp(self):
        super(AnXdgRuntimeDirNotThisUsers, self).setUp()
        self.count = 0
        os.chmod(self.dir, 0o755)  # so that a directory of uid 65534 in it is reachable
        tmp = os.path.join(self.dir, "tmp")
        os.mkdir(tmp, 0o700)
        self.set_env("TMPDIR", tmp)  # the fallback goes here, not in the real temp directory
        self.fallback = address.runtime_dir_for(sys.platform, {}, os.getuid(), address._tmpdir())

    def set_env(self, name, value):
        """Sets (None: unsets) the environment variable ``name`` until the test ends."""
        before = os.environ.get(name)

        def restore():
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before

        self.addCleanup(restore)
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value

    def directory(self, mode, owner=None):
        """A fresh directory in the test's, with ``mode`` (and, as root, ``owner``)."""
        self.count += 1
        made = os.path.join(self.dir, "d%d" % self.count)
        os.mkdir(made)
        os.chmod(made, mode)
        if owner is not None:
            os.chown(made, owner, owner)
        return made

    def falls_back(self, xdg, inside=None):
        inside = xdg if inside is None else inside
        self.set_env("XDG_RUNTIME_DIR", xdg)
        before = _listing(inside)
        self.assertEqual(address.runtime_dir_for(*address._this_host()), self.fallback)
        self.assertEqual(address.runtime_dir(), self.fallback)
        self.assertEqual(address.lock_dir(), self.fallback)
        self.count += 1
        name = "py-xdg-%d-%d" % (os.getpid(), self.count)
        self.assertEqual(address.resolve("pipe://" + name).path, os.path.join(self.fallback, name + ".sock"))
        self.assertEqual(_one_message(self, "pipe://" + name, b"\x09"), [b"\x09"])
        self.assertEqual(_listing(inside), before, "nothing was made in %s" % inside)

    @unittest.skipUnless(os.getuid() == 0, "needs root to give a directory to another user")
    def test_owned_by_uid_65534_as_su_without_dash_keeps_it(self):
        self.falls_back(self.directory(0o755, 65534))

    def test_open_to_all_or_the_group(self):
        for mode in (0o777, 0o1777, 0o770):
            self.falls_back(self.directory(mode))

    def test_a_link_to_a_private_directory_of_ours_or_a_relative_path(self):
        target = self.directory(0o700)
        link = os.path.join(self.dir, "link")
        os.symlink(target, link)
        self.falls_back(link, target)
        relative = os.path.relpath(target)
        self.assertFalse(os.path.isabs(relative))
        self.falls_back(relative, target)
        self.assertEqual([address.private_base(xdg) for xdg in (link, relative, target)], [False, False, True])

    def test_missing(self):
        parent = self.directory(0o700)
        missing = os.path.join(parent, "missing")
        self.falls_back(missing, parent)
        self.assertFalse(os.path.lexists(missing))

    def test_a_private_directory_of_ours_is_used(self):
        for mode in (0o700, 0o755):
            xdg = self.directory(mode)
            self.set_env("XDG_RUNTIME_DIR", xdg)
            self.assertEqual(address.runtime_dir(), os.path.join(xdg, "effect-ipc"))
            self.assertEqual(address.resolve("pipe://app").path, os.path.join(xdg, "effect-ipc", "app.sock"))
            self.assertTrue(address.private_base(xdg))


class ARuntimeDirectoryOthersCanEnter(TempDirCase):
    def set_env(self, name, value):
        before = os.environ.get(name)
        self.addCleanup(lambda: os.environ.__setitem__(name, before) if before is not None
                        else os.environ.pop(name, None))
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value

    def test_an_existing_runtime_directory_of_ours_that_others_can_enter_is_refused(self):
        # _private_dir checked only the owner, not `mode & 0o077`: a 0755 effect-ipc-<uid> was used
        tmp = os.path.join(self.dir, "tmp")
        os.mkdir(tmp, 0o700)
        self.set_env("XDG_RUNTIME_DIR", None)
        self.set_env("TMPDIR", tmp)
        runtime = address.runtime_dir_for(*address._this_host())
        self.assertEqual(os.path.dirname(runtime), tmp)
        os.mkdir(runtime)
        os.chmod(runtime, 0o755)
        for attempt in (address.runtime_dir, lambda: listen("pipe://py-open-runtime")):
            with self.assertRaises(IpcError) as caught:
                attempt()
            self.assertEqual(caught.exception.reason, "PermissionDenied")
        self.assertEqual(os.listdir(runtime), [])


if __name__ == "__main__":
    unittest.main()
