"""ipckit's file channel, spoken carefully."""
import errno
import json
import os
import subprocess
import sys
import threading
import unittest

from helpers import TempDirCase

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


if __name__ == "__main__":
    unittest.main()
