"""ipckit's file channel, spoken carefully."""
import errno
import json
import os
import resource
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import unittest

from helpers import PACKAGE, TempDirCase, run_python

from effect_ipc import IpcError
from effect_ipc.ipckit import IpckitChannel


class Ipckit(TempDirCase):
    def test_request_response_and_events_keep_their_order(self):
        backend = IpckitChannel(self.dir, "backend")
        frontend = IpckitChannel(self.dir, "frontend")
        frontend.send_event("tick", {"n": 1})
        request = frontend.send_request("add", {"a": 1, "b": 2})
        first = backend.receive(2)
        self.assertEqual((first["type"], first["method"]), ("event", "tick"))
        asked = backend.receive(2)
        backend.send_event("progress", {"p": 50})
        backend.send_response(asked["id"], {"sum": asked["payload"]["a"] + asked["payload"]["b"]})
        self.assertEqual(frontend.wait_response(request, 2)["payload"], {"sum": 3})
        self.assertEqual(frontend.receive(2)["method"], "progress")  # kept while waiting
        with open(os.path.join(self.dir, "backend_to_frontend.json")) as f:
            text = f.read()
        self.assertTrue(text.startswith('[\n  {\n    "id": '))  # serde's pretty format
        self.assertEqual(list(json.loads(text)[0].keys()), ["id", "timestamp", "type", "method", "payload"])

    def test_no_descriptor_left_is_no_space_as_on_the_node_side_and_nothing_is_lost(self):
        backend = IpckitChannel(self.dir, "backend")
        frontend = IpckitChannel(self.dir, "frontend")
        frontend.send_event("before", {})
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 20, hard))
        fillers = []
        try:
            try:
                while True:
                    fillers.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                pass
            with self.assertRaises(IpcError) as receiving:
                backend.receive(0.2)
            with self.assertRaises(IpcError) as sending:
                frontend.send_event("during", {})
        finally:
            for fd in fillers:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        # the old channel said Open and Write
        self.assertEqual((receiving.exception.reason, sending.exception.reason), ("NoSpace", "NoSpace"))
        frontend.send_event("after", {})
        self.assertEqual([backend.receive(2)["method"] for _ in range(2)], ["before", "after"])

    def test_a_sender_with_no_descriptor_left_after_taking_its_lock_lets_go_of_it(self):
        IpckitChannel(self.dir, "frontend")  # makes the files
        lock = os.path.join(self.dir, "backend_to_frontend.lock")
        code = ("import os, sys; sys.path.insert(0, %r); from effect_ipc.ipckit import IpckitChannel; "
                "IpckitChannel(sys.argv[1], 'backend').send_event('x', {}); "
                "print('lock left' if os.path.exists(sys.argv[2]) else 'lock gone')" % PACKAGE)
        # every open of the lock after the first (its creation) fails EMFILE, as in a shortage that starts while
        # the sender holds it: the old sender had to open it to see it was its own, and left it holding its pid
        ran = subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", "-P", lock, "-e",
                              "inject=open,openat:error=EMFILE:when=2+", sys.executable, "-c", code, self.dir, lock],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
        self.assertEqual((ran.returncode, ran.stdout.strip()), (0, "lock gone"), ran.stderr)
        frontend = IpckitChannel(self.dir, "frontend")
        self.assertEqual(frontend.receive(2)["method"], "x")

    def test_a_live_lock_is_never_broken_and_a_dead_ones_is(self):
        channel = IpckitChannel(self.dir, "backend")
        channel.lock_timeout = 0.3
        lock = os.path.join(self.dir, "backend_to_frontend.lock")
        with open(lock, "w") as f:
            f.write("%d\n" % os.getpid())  # alive
        with self.assertRaises(IpcError) as caught:
            channel.send_event("x")
        self.assertEqual(caught.exception.reason, "Timeout")
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        with open(lock, "w") as f:
            f.write("%d\n" % dead.pid)
        channel.send_event("y")
        self.assertFalse(os.path.exists(lock))

    def test_a_file_that_is_not_an_array_is_never_overwritten(self):
        channel = IpckitChannel(self.dir, "backend")
        path = os.path.join(self.dir, "backend_to_frontend.json")
        with open(path, "w") as f:
            f.write('{"not": "an array"}')
        with self.assertRaises(IpcError) as caught:
            channel.send_event("x")
        self.assertEqual(caught.exception.reason, "Decode")
        with open(path) as f:
            self.assertEqual(f.read(), '{"not": "an array"}')

    def test_concurrent_writers_lose_nothing(self):
        channels = [IpckitChannel(self.dir, "backend") for _ in range(4)]
        threads = [threading.Thread(target=lambda c=c, k=k: [c.send_event("e", {"w": k, "i": i}) for i in range(20)])
                   for k, c in enumerate(channels)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        frontend = IpckitChannel(self.dir, "frontend")
        got = [frontend.receive(2)["payload"] for _ in range(80)]
        for k in range(4):
            self.assertEqual([p["i"] for p in got if p["w"] == k], list(range(20)))


class Unwritable(TempDirCase):
    def test_a_message_ipckit_could_not_read_back_is_refused_with_encode_as_on_the_node_side(self):
        # a payload nested deeper than serde_json reads made the whole file unreadable for ipckit
        channel = IpckitChannel(self.dir, "backend")

        def nested(levels):
            value = 1
            for _ in range(levels):
                value = [value]
            return value
        channel.send_event("deepest", nested(125))  # serde_json's limit: 128 with the file's array and the message
        for payload in (nested(126), {"a": nested(200)}, "lone \ud800", {"\udc00": 1}, float("nan"), b"bytes"):
            with self.assertRaises(IpcError) as caught:
                channel.send_event("bad", payload)
            self.assertEqual(caught.exception.reason, "Encode")
        frontend = IpckitChannel(self.dir, "frontend")
        self.assertEqual(frontend.receive(2)["method"], "deepest")
        with self.assertRaises(IpcError) as caught:
            frontend.receive(0.1)  # nothing of the refused ones was written
        self.assertEqual(caught.exception.reason, "Timeout")


class Damage(TempDirCase):
    def test_a_file_that_is_not_utf8_is_decode_and_never_overwritten(self):
        backend = IpckitChannel(self.dir, "backend")
        backend.send_event("tick", {"text": "h\u00e9llo"})
        path = os.path.join(self.dir, "backend_to_frontend.json")
        with open(path, "rb") as f:
            data = f.read().replace("\u00e9".encode("utf-8"), b"\xa2")
        with open(path, "wb") as f:
            f.write(data)
        for action in (lambda: IpckitChannel(self.dir, "frontend").receive(0), lambda: backend.send_event("more")):
            with self.assertRaises(IpcError) as caught:
                action()
            self.assertEqual(caught.exception.reason, "Decode")
        with open(path, "rb") as f:
            self.assertEqual(f.read(), data)

    def test_a_file_ipckit_cannot_read_is_decode_and_never_overwritten(self):
        # Python's json reads NaN, Infinity, 1e400 and an escaped lone surrogate; serde_json (ipckit) and the
        # Node side refuse such a file: send_event raised ValueError, receive handed the message over
        backend = IpckitChannel(self.dir, "backend")
        path = os.path.join(self.dir, "backend_to_frontend.json")
        for payload in ("NaN", "Infinity", "-Infinity", "1e400", '"\\ud800"', '{"\\udc00": 1}',
                        "[" * 100000 + "]" * 100000):  # RecursionError, not IpcError
            text = '[{"id": "a", "timestamp": 1, "type": "event", "method": "m", "payload": %s}]' % payload
            with open(path, "w") as f:
                f.write(text)
            for action in (lambda: IpckitChannel(self.dir, "frontend").receive(0),
                           lambda: backend.send_event("more")):
                with self.assertRaises(IpcError) as caught:
                    action()
                self.assertEqual(caught.exception.reason, "Decode", payload)
            with open(path) as f:
                self.assertEqual(f.read(), text)

    def test_a_lock_holding_no_pid_is_never_broken_and_an_empty_old_one_is(self):
        # a huge number raised OverflowError, a non-UTF-8 byte UnicodeDecodeError, and other text older
        # than stale_age was broken; the Node side breaks only a dead pid's lock or an empty old one
        channel = IpckitChannel(self.dir, "backend", lock_timeout=0.3, stale_age=0.1)
        lock = os.path.join(self.dir, "backend_to_frontend.lock")
        old = time.time() - 60
        for text in (b"99999999999999999999\n", b"\xff\n", b"held by a tool that writes its name\n", b"  \n"):
            with open(lock, "wb") as f:
                f.write(text)
            os.utime(lock, (old, old))
            with self.assertRaises(IpcError) as caught:
                channel.send_event("x")
            self.assertEqual(caught.exception.reason, "Timeout", text)
            with open(lock, "rb") as f:
                self.assertEqual(f.read(), text)
        with open(lock, "wb") as f:
            pass
        os.utime(lock, (old, old))
        channel.send_event("y")  # an empty lock older than stale_age: its writer died before writing its pid
        self.assertFalse(os.path.exists(lock))


    def test_an_empty_lock_made_just_before_a_send_whose_timeout_is_stale_age_is_broken_as_it_turns_stale(self):
        # the last look came before the deadline, with the lock a moment short of stale_age: Timeout
        channel = IpckitChannel(self.dir, "backend", lock_timeout=0.05, stale_age=0.05)
        lock = os.path.join(self.dir, "backend_to_frontend.lock")
        for i in range(40):
            with open(lock, "wb"):
                pass
            channel.send_event("m%d" % i)
        self.assertFalse(os.path.exists(lock))
        frontend = IpckitChannel(self.dir, "frontend")
        self.assertEqual([frontend.receive(0)["method"] for _ in range(40)], ["m%d" % i for i in range(40)])

class LockRace(TempDirCase):
    def test_a_breaker_never_removes_a_live_lock_taken_while_it_judged_a_dead_one(self):
        # B reads a dead holder's lock and is preempted; meanwhile C breaks it and takes its own. B then
        # moved C's live lock aside, D took a fresh one, and B deleted C's: C and D wrote at once and a
        # message was lost (forced interleaving: C acts inside B's liveness check, D inside B's rename)
        from effect_ipc import ipckit
        channel = IpckitChannel(self.dir, "backend")
        lock = os.path.join(self.dir, "backend_to_frontend.lock")
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        with open(lock, "w") as f:
            f.write("%d\n" % dead.pid)
        c_text, d_text = "%d\n" % os.getpid(), "%d\n" % os.getppid()
        real_alive, real_rename = ipckit._alive, os.rename

        def alive(pid):
            if pid == dead.pid:
                os.unlink(lock)  # C broke the dead lock and took its own
                with open(lock, "w") as f:
                    f.write(c_text)
            return real_alive(pid)

        def rename(source, target):
            real_rename(source, target)
            if source == lock:
                with open(lock, "w") as f:  # D takes the lock B just moved aside
                    f.write(d_text)
        ipckit._alive, os.rename = alive, rename
        try:
            channel._maybe_break(lock)
        finally:
            ipckit._alive, os.rename = real_alive, real_rename
        with open(lock) as f:
            self.assertEqual(f.read(), c_text, "C's live lock was removed")
        self.assertFalse(os.path.exists(os.path.join(self.dir, ".effect-ipc-breaker.lock")))


class FullDisk(TempDirCase):
    """On a real full filesystem (a small tmpfs) a send is ``NoSpace``, leaves no lock or temporary file,
    and the messages sent before are intact."""

    def test_a_send_on_a_full_disk_is_no_space_and_leaves_the_files_whole(self):
        if os.geteuid() != 0:
            self.skipTest("mounting a tmpfs needs root")
        mount = os.path.join(self.dir, "small")
        os.mkdir(mount)
        subprocess.check_call(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", mount])
        self.addCleanup(subprocess.call, ["umount", mount])
        folder = os.path.join(mount, "channel")
        backend = IpckitChannel(folder, "backend")
        frontend = IpckitChannel(folder, "frontend")
        for n in range(3):
            frontend.send_event("tick", {"n": n})
        ballast = os.open(os.path.join(mount, "ballast"), os.O_WRONLY | os.O_CREAT, 0o600)
        self.addCleanup(os.close, ballast)
        size = 0
        while True:  # every page of the filesystem taken
            try:
                size += os.write(ballast, b"x" * 4096)
            except OSError as error:
                self.assertEqual(error.errno, errno.ENOSPC)
                break
        before = sorted(os.listdir(folder))
        # no room for the lock; then room for the lock only (the new file fails)
        for room in (0, 4096):
            os.ftruncate(ballast, size - room)
            with self.assertRaises(IpcError) as caught:
                frontend.send_event("lost", {"room": room})
            self.assertEqual(caught.exception.reason, "NoSpace")
            self.assertIn("cannot write" if room else "cannot take the lock", caught.exception.detail)
            self.assertEqual(sorted(os.listdir(folder)), before)  # no lock or temporary file left
        self.assertEqual([backend.receive(1)["payload"]["n"] for _ in range(3)], [0, 1, 2])
        with self.assertRaises(IpcError) as caught:
            backend.receive(0.2)
        self.assertEqual(caught.exception.reason, "Timeout")
        os.ftruncate(ballast, 0)
        frontend.send_event("after")
        self.assertEqual(backend.receive(1)["method"], "after")


PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = """
import os, sys
sys.path.insert(0, %r)
from effect_ipc import IpcError
from effect_ipc.ipckit import IpckitChannel
channel = IpckitChannel(%r, "backend", lock_timeout=0.5)
lock = os.path.join(%r, "backend_to_frontend.lock")
with open(lock, "w") as f:
    f.write("%%d\\n" %% %d)  # a live process of another user (root): kill(pid, 0) is EPERM
try:
    channel.send_event("x")
    print("sent")
except IpcError as error:
    print(error.reason)
print(open(lock).read().strip() if os.path.exists(lock) else "lock gone")
"""


class LockOfAnotherUser(TempDirCase):
    # the other user runs the system's Python: one under /root (pyenv's) is not theirs to load
    @unittest.skipUnless(os.getuid() == 0 and shutil.which("setpriv") and os.path.exists("/usr/bin/python3"),
                         "needs root, setpriv and /usr/bin/python3 to act as another user")
    def test_a_lock_held_by_a_live_process_of_another_user_is_never_broken(self):
        # _alive took EPERM (alive, not ours) for dead, and broke the live holder's lock
        os.chmod(self.dir, 0o711)
        shared = os.path.join(self.dir, "channel")
        os.mkdir(shared, 0o700)
        os.chown(shared, 65534, 65534)
        code = PROBE % (os.path.abspath(PACKAGE), shared, shared, os.getpid())
        ran = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                              "/usr/bin/python3", "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True, timeout=60)
        self.assertEqual(ran.stdout.split("\n"), ["Timeout", str(os.getpid()), ""], ran.stderr)



def probe(case, code, timeout=15):
    """``code``'s printed lines, run in a child Python with ``IpcError`` and ``IpckitChannel`` imported (see
    ``helpers.run_python``)."""
    imports = "from effect_ipc import IpcError\nfrom effect_ipc.ipckit import IpckitChannel"
    return run_python(case, code, imports, timeout).splitlines()


class OddFiles(TempDirCase):
    """The message files were opened with open() (a FIFO blocked for good, a link was followed) and the
    temporary file was written through whatever was at ``<name>.tmp``."""

    def test_a_fifo_or_a_link_in_place_of_a_message_file_is_refused_without_blocking(self):
        # receive(timeout=1) blocked for good opening a FIFO inbox (and send on a FIFO outbox); the Node side
        # refuses a FIFO or a link there (PermissionDenied)
        elsewhere = os.path.join(self.dir, "elsewhere.json")
        with open(elsewhere, "w") as f:
            f.write("[]")
        fifo_dir, link_dir = os.path.join(self.dir, "fifo"), os.path.join(self.dir, "link")
        for folder in (fifo_dir, link_dir):
            os.mkdir(folder, 0o700)
        for name in ("frontend_to_backend.json", "backend_to_frontend.json"):
            os.mkfifo(os.path.join(fifo_dir, name), 0o600)
            os.symlink(elsewhere, os.path.join(link_dir, name))
        lines = probe(self, """
            for folder in (%r, %r):
                channel = IpckitChannel(folder, "backend")
                for what, call in (("receive", lambda: channel.receive(timeout=1)),
                                   ("send", lambda: channel.send_event("x"))):
                    began = time.time()
                    try:
                        call()
                        print(what, "returned")
                    except IpcError as error:
                        print(what, error.reason, round(time.time() - began, 1))
            """ % (fifo_dir, link_dir))
        self.assertEqual([line.split()[:2] for line in lines], [["receive", "PermissionDenied"],
                                                                ["send", "PermissionDenied"]] * 2)
        self.assertTrue(all(float(line.split()[2]) < 1 for line in lines), lines)
        with open(elsewhere) as f:
            self.assertEqual(f.read(), "[]")  # never written through the link
        self.assertTrue(os.path.islink(os.path.join(link_dir, "backend_to_frontend.json")))

    def test_a_link_at_the_temporary_file_is_never_written_through(self):
        # send wrote <outbox>.tmp with open(tmp, "w"): through a link there, overwriting the file it names
        victim = os.path.join(self.dir, "precious.txt")
        with open(victim, "w") as f:
            f.write("precious data\n")
        folder = os.path.join(self.dir, "channel")
        os.mkdir(folder, 0o700)
        tmp = os.path.join(folder, "backend_to_frontend.tmp")
        os.symlink(victim, tmp)
        backend = IpckitChannel(folder, "backend")
        backend.send_event("hello", {"x": 1})
        with open(victim) as f:
            self.assertEqual(f.read(), "precious data\n")
        outbox = os.path.join(folder, "backend_to_frontend.json")
        self.assertFalse(os.path.islink(outbox))
        self.assertFalse(os.path.lexists(tmp))
        self.assertEqual(IpckitChannel(folder, "frontend").receive(1)["payload"], {"x": 1})
        # a FIFO there (a reader would wait on it) is replaced too, without blocking
        os.mkfifo(tmp, 0o600)
        backend.send_event("again")
        self.assertFalse(os.path.lexists(tmp))
        with open(outbox) as f:
            self.assertEqual([m["method"] for m in json.load(f)], ["hello", "again"])

    def test_a_send_keeps_the_mode_of_the_file_it_replaces_but_no_group_or_other_write_bit(self):
        backend = IpckitChannel(self.dir, "backend")
        outbox = os.path.join(self.dir, "backend_to_frontend.json")
        old = os.umask(0o077)  # the umask narrows nothing of the mode kept
        try:
            backend.send_event("first")
            self.assertEqual(os.stat(outbox).st_mode & 0o777, 0o600)  # a new file
            for before, after in ((0o640, 0o640), (0o644, 0o644), (0o666, 0o644), (0o620, 0o600)):
                os.chmod(outbox, before)
                backend.send_event("again")
                self.assertEqual(os.stat(outbox).st_mode & 0o777, after, oct(before))
        finally:
            os.umask(old)
        frontend = IpckitChannel(self.dir, "frontend")
        self.assertEqual([frontend.receive(1)["method"] for _ in range(5)], ["first"] + ["again"] * 4)


class LockBrokenWhileSending(TempDirCase):
    """ipckit breaks a lock older than 5 s: the lock send took may be gone when it is done writing, or be
    another writer's by then. send removed it with os.unlink, unchecked."""

    def sending_while(self, channel, meanwhile):
        """``channel`` with ``meanwhile()`` run while a send holds the lock (right before it reads its file)."""
        read = channel._read

        def reading(path):
            if path == channel.outbox:
                meanwhile()
            return read(path)
        channel._read = reading
        return channel

    def test_a_lock_removed_while_sending_is_no_error_and_the_message_is_sent_once(self):
        # a raw FileNotFoundError came out of send though the message was written: a retry sent it twice
        lock = os.path.join(self.dir, "backend_to_frontend.lock")
        backend = self.sending_while(IpckitChannel(self.dir, "backend"), lambda: os.unlink(lock))
        backend.send_event("once")
        self.assertFalse(os.path.lexists(lock))
        frontend = IpckitChannel(self.dir, "frontend")
        self.assertEqual(frontend.receive(1)["method"], "once")
        with self.assertRaises(IpcError) as caught:
            frontend.receive(0.2)
        self.assertEqual(caught.exception.reason, "Timeout")

    def test_a_lock_another_writer_took_meanwhile_is_left_to_it(self):
        # send removed whatever lock was there when it was done: another live writer's
        other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
        self.addCleanup(other.wait, 30)
        self.addCleanup(other.stdin.close)
        lock = os.path.join(self.dir, "backend_to_frontend.lock")

        def broken_and_retaken():
            os.unlink(lock)
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, b"%d\n" % other.pid)
            os.close(fd)
        backend = self.sending_while(IpckitChannel(self.dir, "backend"), broken_and_retaken)
        backend.send_event("mine")
        with open(lock) as f:
            self.assertEqual(f.read(), "%d\n" % other.pid)
        self.assertEqual(IpckitChannel(self.dir, "frontend").receive(1)["method"], "mine")


if __name__ == "__main__":
    unittest.main()


class NotIpckitDirectories(TempDirCase):
    def test_an_effect_ipc_channel_directory_is_address_in_use_and_left_untouched(self):
        for kind in ("channel", "listener"):
            path = os.path.join(self.dir, kind)
            os.mkdir(path, 0o700)
            with open(os.path.join(path, ".effect-ipc"), "w") as f:
                f.write(json.dumps({"format": "effect-ipc-file", "version": 1, "kind": kind}) + "\n")
            with self.assertRaises(IpcError) as caught:
                IpckitChannel(path, "frontend")
            self.assertEqual(caught.exception.reason, "AddressInUse")
            self.assertEqual(os.listdir(path), [".effect-ipc"])

    def test_a_new_directory_is_private_and_one_others_may_write_or_another_users_is_refused(self):
        path = os.path.join(self.dir, "a", "b")
        IpckitChannel(path, "backend")
        for made in (os.path.dirname(path), path):
            self.assertEqual(os.stat(made).st_mode & 0o777, 0o700)
        shared = os.path.join(self.dir, "shared")
        os.mkdir(shared)
        os.chmod(shared, 0o770)
        below = os.path.join(self.dir, "open")
        os.mkdir(below)
        os.chmod(below, 0o777)  # without the sticky bit: others could replace the channel directory in it
        cases = [shared, os.path.join(below, "chan")]
        if os.geteuid() == 0:
            theirs = os.path.join(self.dir, "theirs")
            os.mkdir(theirs, 0o700)
            os.chown(theirs, 12345, 12345)
            link = os.path.join(self.dir, "link")
            os.symlink(path, link)
            os.lchown(link, 12345, 12345)
            cases += [theirs, link]
        for refused in cases:
            with self.assertRaises(IpcError, msg=refused) as caught:
                IpckitChannel(refused, "backend")
            self.assertEqual(caught.exception.reason, "PermissionDenied", refused)
        self.assertEqual(os.listdir(shared), [])
        self.assertEqual(os.listdir(below), [])
        os.symlink(path, os.path.join(self.dir, "mine"))  # this user's link to a private directory: used
        IpckitChannel(os.path.join(self.dir, "mine"), "frontend")

    def test_keep_below_one_is_invalid_option(self):
        for keep in (0, -1, 1.5, "100", True):
            with self.assertRaises(IpcError) as caught:
                IpckitChannel(self.dir, "backend", keep=keep)
            self.assertEqual(caught.exception.reason, "InvalidOption")
        self.assertEqual(os.listdir(self.dir), [])


class NotMessages(TempDirCase):
    def test_each_element_that_is_not_a_message_is_decode_once_in_its_turn(self):
        # they were dropped without a word; the Node side yields a Decode error for each, in order
        def msg(i):
            return {"id": "id-%d" % i, "timestamp": 1, "type": "event", "method": "m", "payload": i}
        with open(os.path.join(self.dir, "backend_to_frontend.json"), "w") as f:
            json.dump([msg(1), 42, {"id": 5, "type": "event"}, "text", {"id": "x", "type": "event"}, msg(2)], f)
        frontend = IpckitChannel(self.dir, "frontend")
        got = []
        for _ in range(6):
            try:
                got.append(frontend.receive(1)["id"])
            except IpcError as error:
                got.append(error.reason)
        self.assertEqual(got, ["id-1", "Decode", "Decode", "Decode", "Decode", "id-2"])
        with self.assertRaises(IpcError) as caught:
            frontend.receive(0.05)
        self.assertEqual(caught.exception.reason, "Timeout")  # each reported once
        IpckitChannel(self.dir, "backend").send_event("after")
        self.assertEqual(frontend.receive(1)["method"], "after")
