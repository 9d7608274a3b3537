"""Frames, channels, listeners and heartbeats, Python to Python."""
import os
import socket
import fcntl
import hashlib
import json
import logging
import stat
import sys
import threading
import traceback
import time
import unittest
from unittest import mock

from helpers import TempDirCase

from effect_ipc import Closed, Heartbeat, IpcError, address, connect, framing, listen
from effect_ipc.channel import Channel


class Framing(unittest.TestCase):
    def test_hi_is_the_documented_bytes(self):
        self.assertEqual(framing.encode(framing.DATA, b"hi").hex(), "0100000000026869")

    def test_frames_split_and_merged_in_any_way(self):
        stream = framing.encode(0, b"one") + framing.encode(2, b"") + framing.encode(0, b"x" * 1000)
        for size in (1, 5, 6, 7, 100, len(stream)):
            decoder = framing.Decoder()
            frames = []
            for i in range(0, len(stream), size):
                frames.extend(decoder.feed(stream[i:i + size]))
            self.assertEqual(frames, [(0, b"one"), (2, b""), (0, b"x" * 1000)])
            self.assertFalse(decoder.in_frame)

    def test_bad_version_kind_and_length_are_protocol_errors(self):
        for data, reason in ((b"\x02\x00", "Protocol"), (b"\x01\x09", "Protocol"),
                             (framing.header(0, 11), "FrameTooLarge")):
            with self.assertRaises(IpcError) as caught:
                framing.Decoder(max_frame_size=10).feed(data)
            self.assertEqual(caught.exception.reason, reason)


def _restore_env(name, value):
    """Sets the environment variable ``name`` to ``value`` (None: unsets it)."""
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def open_descriptors():
    """This process's open descriptors, each with what it is (``socket:[inode]``, a path): a set to compare."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.add((fd, os.readlink(os.path.join("/proc/self/fd", fd))))
        except OSError:
            pass  # the directory's own descriptor, or one closed while listed
    return found


class Channels(TempDirCase):
    def test_a_channel_option_that_is_not_one_is_invalid_option_before_any_socket(self):
        server = listen(self.address("live"))
        self.addCleanup(server.close)
        bad = ({"max_frame_sise": 1024}, {"heartbeet": Heartbeat(1.0, 5.0)}, {"max_frame_size": "1M"},
               {"max_frame_size": 0}, {"max_frame_size": 2 ** 32}, {"max_frame_size": True},
               {"heartbeat": Heartbeat(0, 5.0)}, {"heartbeat": Heartbeat(-1, 5.0)},
               {"heartbeat": Heartbeat(1.0, float("nan"))}, {"heartbeat": 5}, {"linger": -1},
               {"linger": "2"}, {"linger": float("nan")})
        descriptors = open_descriptors()
        for options in bad:
            # listen: refused before binding (a listener taking them served nothing: its serve died on the
            # first client with a TypeError); connect: before connecting (a Heartbeat(0, ...) spun a CPU)
            for open_ in (lambda: listen(self.address("new"), **options),
                          lambda: connect(self.address("live"), **options)):
                with self.assertRaises(IpcError, msg=repr(options)) as caught:
                    open_()
                self.assertEqual(caught.exception.reason, "InvalidOption", str(caught.exception))
            self.assertFalse(os.path.lexists(os.path.join(self.dir, "new.sock")), repr(options))
        with self.assertRaises(IpcError):
            server.accept(0.05)  # no client was connected meanwhile
        # none opened (an earlier test's descriptor closed meanwhile by a thread of its own is no concern of this one;
        # a socket opened and left would be a new one, whatever its number)
        self.assertEqual(open_descriptors() - descriptors, set())
        with connect(self.address("live"), max_frame_size=10, heartbeat=Heartbeat(0.5, 5.0), linger=0) as ok:
            accepted = server.accept(5)
            ok.send(b"fine")
            self.assertEqual(accepted.receive(5), b"fine")
            accepted.close()

    def serve_one(self, where, handler, **options):
        listener = listen(where, **options)
        self.addCleanup(listener.close)

        def run():
            channel = listener.accept(10)
            try:
                handler(channel)
            finally:
                channel.close()

        thread = threading.Thread(target=run)
        thread.daemon = True
        thread.start()
        return listener, thread

    def test_echo_close_handshake_and_socket_file(self):
        where = self.address()

        def echo(channel):
            for message in channel:
                channel.send(message)

        listener, thread = self.serve_one(where, echo)
        path = where[len("unix://"):]
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        client = connect(where)
        self.assertEqual(client.peer.uid, os.getuid())
        for message in (b"hello", b"", b"z" * 300000):
            client.send(message)
            self.assertEqual(client.receive(10), message)
        client.close()
        thread.join(10)
        with self.assertRaises(Closed):
            client.receive(1)
        listener.close()
        self.assertFalse(os.path.exists(path))

    def test_a_failed_write_is_connection_lost_not_a_hang(self):
        # the peer is gone before we write (here: a write that fails as on a reset socket); send and
        # close must raise or return, not wait for ever on their own write lock
        stop = threading.Event()
        released = []

        def read(n):
            stop.wait(10)
            return b""

        def write(data):
            raise BrokenPipeError(32, "Broken pipe")

        channel = Channel(read, write, lambda: None, lambda: released.append(True), "test://broken", linger=0.5)
        self.addCleanup(stop.set)
        outcome = []

        def attempt():
            try:
                channel.send(b"hello")
            except IpcError as error:
                outcome.append(error.reason)
            channel.close()
            outcome.append("closed")

        thread = threading.Thread(target=attempt)
        thread.daemon = True
        thread.start()
        thread.join(5)
        self.assertFalse(thread.is_alive(), "send or close hung after a failed write")
        self.assertEqual(outcome, ["ConnectionLost", "closed"])
        self.assertEqual(released, [True])
        with self.assertRaises(IpcError) as caught:
            channel.receive(1)
        self.assertEqual(caught.exception.reason, "ConnectionLost")

    def test_a_stored_failure_is_raised_fresh_each_time(self):
        # the same exception raised again kept every raise's traceback: a server logging a lost
        # client's failed sends logged hundreds of frames, growing with each send
        stop = threading.Event()

        def read(n):
            stop.wait(10)
            return b""

        def write(data):
            raise BrokenPipeError(32, "Broken pipe")

        channel = Channel(read, write, lambda: None, lambda: None, "test://broken", linger=0.5)
        self.addCleanup(stop.set)
        depths = []
        for _ in range(50):
            try:
                channel.send(b"x")
            except IpcError as error:
                self.assertEqual(error.reason, "ConnectionLost")
                depths.append(len(traceback.extract_tb(error.__traceback__)))
        self.assertEqual(len(depths), 50)
        self.assertLessEqual(max(depths[1:]), 3, depths)
        self.assertEqual(len(set(depths[1:])), 1, depths)
        for _ in range(3):
            with self.assertRaises(IpcError) as caught:
                channel.receive(1)
            self.assertEqual(caught.exception.reason, "ConnectionLost")
            self.assertLessEqual(len(traceback.extract_tb(caught.exception.__traceback__)), 3)

    def test_an_unread_limit_stops_reading_so_the_peer_waits(self):
        server, sent, thread = self._flooded("s", 400, 65536)
        server.set_unread_limit(4)
        # the reader may have queued a few before the limit came (the default reads 8 MiB ahead), and
        # one more it had already made room for: none after that
        before = server._inbox.qsize()
        self.wait_held(server)
        # the reader stopped at the limit: the rest waits in the sockets (a few MiB), not in memory here
        self.assertLess(len(sent), 400, "every send went through: nothing held the writer back")
        held = server._inbox.qsize()
        self.assertLessEqual(held, max(4, before + 1))
        time.sleep(0.3)
        self.assertEqual(server._inbox.qsize(), held, "the reader went on reading past the limit")
        got = [server.receive(10)[0] for _ in range(400)]
        self.assertEqual(got, [i % 256 for i in range(400)])
        thread.join(10)
        self.assertEqual(len(sent), 400)

    def wait_held(self, channel, timeout=20):
        """Waits until ``channel``'s reader waits for room (it stopped at its unread limit: what it queued
        is queued, and it reads nothing more until a receive); fails after ``timeout`` seconds. A condition,
        not a time: on a loaded machine the reader may take longer than any sleep to get there."""
        deadline = time.time() + timeout
        while not channel._held and time.time() < deadline:
            time.sleep(0.01)
        self.assertTrue(channel._held, "the reader never stopped at an unread limit (%d unread, %d bytes)"
                        % (channel._inbox.qsize(), channel._unread_bytes))

    def _flooded(self, name, count, size):
        """A server channel at address ``name`` and the ``_flood`` of its client."""
        where = self.address(name)
        listener = listen(where)
        self.addCleanup(listener.close)
        sent, thread = self._flood(where, count, size)
        server = listener.accept(10)
        self.addCleanup(server.close)
        return server, sent, thread

    def _flood(self, where, count, size):
        """A client in a thread sending ``count`` messages of ``size`` bytes (byte i % 256 each); returns
        the list of indexes sent so far and the list that receives the client."""
        sent = []
        client_box = []

        def flood():
            client = connect(where)
            client_box.append(client)
            try:
                for i in range(count):
                    client.send(bytes([i % 256]) * size)
                    sent.append(i)
            except IpcError:
                pass

        thread = threading.Thread(target=flood)
        thread.daemon = True
        thread.start()
        self.addCleanup(lambda: client_box and client_box[0].close())
        return sent, thread

    def test_by_default_a_channel_reads_ahead_8_mib_or_4096_messages_as_a_node_channel_does(self):
        where = self.address()
        listener = listen(where)
        self.addCleanup(listener.close)
        # 24 MiB in 64 KiB messages: the reader stops at 8 MiB unread, the rest waits in the sockets
        sent, thread = self._flood(where, 384, 65536)
        server = listener.accept(10)
        self.addCleanup(server.close)
        self.wait_held(server)
        self.assertLess(len(sent), 384, "every send went through: nothing held the writer back")
        self.assertLessEqual(server._unread_bytes, 8 * 1024 * 1024 + 65536)
        self.assertGreaterEqual(server._unread_bytes, 8 * 1024 * 1024 - 65536)
        got = [server.receive(10) for _ in range(384)]
        self.assertEqual([m[0] for m in got], [i % 256 for i in range(384)])
        self.assertTrue(all(len(m) == 65536 for m in got))
        thread.join(10)
        self.assertEqual(len(sent), 384)
        self.assertEqual(server._unread_bytes, 0)
        # 60 000 one-byte messages: the reader stops at 4096 unread (the sockets hold the rest)
        server, sent, thread = self._flooded("many", 60000, 1)
        self.wait_held(server)
        self.assertEqual(server._inbox.qsize(), 4096)
        self.assertLess(len(sent), 60000)
        got = [server.receive(10)[0] for _ in range(60000)]
        self.assertEqual(got, [i % 256 for i in range(60000)])
        thread.join(10)

    def test_unread_limits_of_none_read_ahead_without_limit_and_a_large_message_still_passes(self):
        server, sent, thread = self._flooded("s", 200, 65536)
        server.set_unread_limit(None, None)
        thread.join(20)
        self.assertEqual(len(sent), 200, "the writer was held back")
        deadline = time.time() + 10
        while server._inbox.qsize() < 200 and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(server._inbox.qsize(), 200)
        self.assertEqual([server.receive(10)[0] for _ in range(200)], [i % 256 for i in range(200)])
        # a byte limit under one message: each is still read once nothing else waits
        server, sent, thread = self._flooded("large", 3, 5000)
        server.set_unread_limit(None, max_bytes=1000)
        self.assertEqual([len(server.receive(10)) for _ in range(3)], [5000] * 3)
        for bad in (0, -1, 1.5, True, "8"):
            for call in (lambda: server.set_unread_limit(None, max_bytes=bad), lambda: server.set_unread_limit(bad)):
                with self.assertRaises(IpcError) as caught:
                    call()
                self.assertEqual(caught.exception.reason, "InvalidOption")

    def test_a_held_channel_keeps_a_heartbeating_peer_only_with_heartbeats_of_its_own(self):
        # the server never receives: it stops reading at 8 MiB, the client's sends block, and the client's
        # heartbeat (1 s) hears from the server only if the server has heartbeats of its own
        outcomes = []
        for name, beats in (("silent", None), ("beating", Heartbeat(0.2, 1.0))):
            where = self.address(name)
            listener = listen(where) if beats is None else listen(where, heartbeat=beats)
            self.addCleanup(listener.close)
            client = connect(where, heartbeat=Heartbeat(0.2, 1.0))
            self.addCleanup(client.close)
            server = listener.accept(10)
            self.addCleanup(server.close)
            failure = []

            def flood(client=client, failure=failure):
                try:
                    for _ in range(1000):
                        client.send(b"x" * 65536)
                except IpcError as error:
                    failure.append(error.reason)

            thread = threading.Thread(target=flood)
            thread.daemon = True
            thread.start()
            # the silent one ends once its 1 s passes (waited for up to 20 s: a loaded machine may take a while to
            # fill the sockets); the beating one is given 4 s, four times its timeout, to fail and does not
            thread.join(20.0 if beats is None else 4.0)
            outcomes.append((name, failure[:1], thread.is_alive()))
        self.assertEqual(outcomes, [("silent", ["Timeout"], False), ("beating", [], True)])

    def test_set_unread_limit_with_a_count_keeps_the_byte_bound(self):
        server, sent, thread = self._flooded("s", 256, 65536)
        server.set_unread_limit(1000)  # more messages; the 8 MiB stay
        self.wait_held(server)
        self.assertLess(len(sent), 256, "every send went through: nothing held the writer back")
        self.assertLessEqual(server._unread_bytes, 8 * 1024 * 1024 + 65536)
        self.assertEqual([server.receive(10)[0] for _ in range(256)], [i % 256 for i in range(256)])
        thread.join(10)

    def test_a_channel_that_fails_while_its_reader_waits_for_room_delivers_nothing_after_the_failure(self):
        # ten messages in one read; the reader holds at two unread, with eight decoded and waiting
        go = threading.Event()
        chunks = [b"".join(framing.encode(framing.DATA, bytes([i])) for i in range(10))]
        stop = threading.Event()
        self.addCleanup(stop.set)

        def read(n):
            go.wait(10)
            if chunks:
                return chunks.pop()
            stop.wait(10)
            return b""

        def write(data):
            raise BrokenPipeError(32, "Broken pipe")

        channel = Channel(read, write, lambda: None, lambda: None, "test://held", linger=0.5)
        channel.set_unread_limit(2)
        go.set()
        deadline = time.time() + 10
        while not channel._held and time.time() < deadline:
            time.sleep(0.01)
        self.assertTrue(channel._held, "the reader did not stop at the limit")
        with self.assertRaises(IpcError):
            channel.send(b"x")  # the write fails: so does the channel
        time.sleep(0.3)
        # what came before the failure, then the failure, every time after
        self.assertEqual([channel.receive(1), channel.receive(1)], [b"\x00", b"\x01"])
        for _ in range(4):
            with self.assertRaises(IpcError) as caught:
                channel.receive(1)
            self.assertEqual(caught.exception.reason, "ConnectionLost")

    def test_bad_addresses_are_typed_errors(self):
        for bad in (42, None, b"unix:///tmp/x.sock", "unix://" + self.dir + "/nul\x00.sock"):
            for call in (listen, connect):
                with self.assertRaises(IpcError) as caught:
                    call(bad)
                self.assertEqual(caught.exception.reason, "InvalidAddress", repr(bad))

    def test_peer_close_is_a_graceful_end_and_a_lost_peer_is_connection_lost(self):
        where = self.address()
        listener = listen(where)
        self.addCleanup(listener.close)
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.connect(where[len("unix://"):])
        server = listener.accept(10)
        raw.sendall(framing.encode(framing.DATA, b"last") + framing.encode(framing.CLOSE))
        raw.shutdown(socket.SHUT_WR)
        self.assertEqual(server.receive(5), b"last")
        with self.assertRaises(Closed):
            server.receive(5)
        # it answered our close with its own
        data = b""
        while True:
            chunk = raw.recv(100)
            if not chunk:
                break
            data += chunk
        self.assertEqual(data, framing.encode(framing.CLOSE))
        raw.close()

        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.connect(where[len("unix://"):])
        server = listener.accept(10)
        raw.close()  # no close frame
        with self.assertRaises(IpcError) as caught:
            server.receive(5)
        self.assertEqual(caught.exception.reason, "ConnectionLost")

    def test_serve_takes_a_client_gone_without_closing_as_routine(self):
        # it logged a warning with a traceback for each one (the Node side logs it at debug level)
        where = self.address()
        listener = listen(where)
        self.addCleanup(listener.close)
        ended = threading.Event()

        def handler(channel):
            try:
                while True:
                    channel.receive(5)
            finally:
                ended.set()

        warnings = []

        class Recorder(logging.Handler):
            def emit(self, record):
                warnings.append(record.getMessage())

        recorder = Recorder(logging.WARNING)
        logger = logging.getLogger("effect_ipc")
        logger.addHandler(recorder)
        self.addCleanup(logger.removeHandler, recorder)
        threading.Thread(target=listener.serve, args=(handler,), daemon=True).start()
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.connect(where[len("unix://"):])
        raw.sendall(framing.encode(framing.DATA, b"then gone"))
        raw.close()  # no close frame
        self.assertTrue(ended.wait(10))
        time.sleep(0.2)
        self.assertEqual(warnings, [])

    def shared_with_nobody(self, uid=65534):
        """A directory in this test's one that ``uid`` (default 65534) owns (and can reach)."""
        shared = os.path.join(self.dir, "shared")
        os.mkdir(shared)
        os.chown(shared, uid, uid)
        os.chmod(self.dir, 0o755)
        return shared

    def as_nobody(self, code, prefix=(), uid=65534):
        """Runs ``code`` (after ``from effect_ipc import connect, listen``) as ``uid`` (default 65534) with the
        system's Python, after ``prefix`` (a command such as prlimit); killed at the end of the test."""
        import subprocess
        package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        process = subprocess.Popen(
            ["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups"] + list(prefix) +
            ["/usr/bin/python3", "-c",
             "import sys\nsys.path.insert(0, %r)\nfrom effect_ipc import connect, listen\n%s" % (package, code)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)
        return process

    @unittest.skipUnless(os.getuid() == 0, "needs root to run the server as another user under a thread limit")
    def test_a_client_the_server_has_no_thread_for_is_dropped_and_the_others_served(self):
        # "can't start new thread" escaped from serve: the server's process ended, every client with it.
        # The thread limit (RLIMIT_NPROC) counts every process and thread of the real uid on the machine: the
        # server runs as a uid of its own, not 65534, whose processes in other tests running meanwhile took
        # its room (its last client was dropped too). Nothing is timed: it waits for the drop, then for room
        uid = 61000 + os.getpid() % 1000
        where = "unix://%s/capped.sock" % self.shared_with_nobody(uid)
        server = self.as_nobody(
            "l = listen(%r, authorize=lambda peer: True, mode=0o666)\nprint('ready', flush=True)\n"
            "def echo(ch):\n    for m in ch:\n        ch.send(m)\nl.serve(echo)\n" % where,
            prefix=["prlimit", "--nproc=40", "--"], uid=uid)
        self.assertEqual(server.stdout.readline().strip(), "ready")
        said = []
        told = threading.Condition()

        def read_stderr():
            for line in server.stderr:
                with told:
                    said.append(line)
                    told.notify_all()
            with told:
                said.append("")  # the server's stderr ended: it is gone
                told.notify_all()

        threading.Thread(target=read_stderr, daemon=True).start()
        held = []
        self.addCleanup(lambda: [c.close() for c in held])
        for _ in range(60):  # more than 40 threads' worth of clients, each held open
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(where[len("unix://"):])
            held.append(c)
        with told:
            told.wait_for(lambda: any("dropped a client" in line for line in said) or "" in said, 30)
        self.assertTrue(any("dropped a client" in line for line in said), "".join(said))
        self.assertIsNone(server.poll(), "the server is still running")
        for c in held[:50]:
            c.close()
        # once those clients' threads have ended there is room again: a client is served (one that comes
        # before is dropped, and tries again)
        deadline = time.time() + 30
        while True:
            try:
                with connect(where, authorize=lambda peer: True) as client:
                    client.send(b"still served")
                    self.assertEqual(client.receive(10), b"still served")
                break
            except IpcError as error:
                self.assertIsNone(server.poll(), "the server is still running")
                if time.time() > deadline:
                    raise AssertionError("no client served after the others left: %s; %s" % (error, "".join(said)))
                time.sleep(0.1)
        self.assertIsNone(server.poll())
        server.kill()
        server.wait()

    @unittest.skipUnless(os.getuid() == 0, "needs root to run a peer as another user")
    def test_the_default_authorize_refuses_another_users_server_and_client(self):
        # connect's and listen's default is same_user_or_root: a server of uid 65534 is refused by a root
        # client, and a client of uid 65534 by a root server, each before a byte of the channel
        shared = self.shared_with_nobody()
        where = "unix://%s/theirs.sock" % shared
        server = self.as_nobody(
            "import time\nl = listen(%r, authorize=lambda peer: True, mode=0o666)\nprint('ready', flush=True)\n"
            "time.sleep(60)" % where)
        self.assertEqual(server.stdout.readline().strip(), "ready")
        with self.assertRaises(IpcError) as caught:
            connect(where)
        self.assertEqual(caught.exception.reason, "PeerRejected")
        mine = "unix://%s/mine.sock" % shared
        listener = listen(mine, mode=0o666)
        self.addCleanup(listener.close)
        client = self.as_nobody(
            "c = connect(%r, authorize=lambda peer: True)\nc.send(b'let me in')\nc.close()" % mine)
        client.wait(30)
        accepted = []
        thread = threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True)
        thread.start()
        thread.join(1.0)
        self.assertEqual(accepted, [], "no channel from the other user's client: %s" % client.stderr.read())

    def test_listen_at_a_live_server_that_accepts_nothing_is_address_in_use_not_a_hang(self):
        # its check whether the server there is live connected without a timeout: a stopped server whose
        # backlog was full held listen for good
        where = self.address("stuck")
        path = where[len("unix://"):]
        stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(stuck.close)
        stuck.bind(path)
        stuck.listen(1)
        pending = []
        self.addCleanup(lambda: [p.close() for p in pending])
        for _ in range(64):
            p = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            p.setblocking(False)
            try:
                p.connect(path)
            except BlockingIOError:
                p.close()
                break
            pending.append(p)
        outcome = []

        def attempt():
            try:
                listen(where).close()
                outcome.append("listening")
            except IpcError as error:
                outcome.append(error.reason)

        thread = threading.Thread(target=attempt, daemon=True)
        thread.start()
        thread.join(10)
        self.assertEqual(outcome, ["AddressInUse"])

    def test_pings_are_answered_and_a_silent_peer_times_out(self):
        where = self.address()
        listener = listen(where, heartbeat=Heartbeat(0.05, 1.0))
        self.addCleanup(listener.close)
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.connect(where[len("unix://"):])
        server = listener.accept(10)
        raw.sendall(framing.encode(framing.PING, b"abc"))
        decoder = framing.Decoder()
        frames = []
        while (framing.PONG, b"abc") not in frames:
            frames.extend(decoder.feed(raw.recv(100)))
        self.assertIn((framing.PING, b""), frames + decoder.feed(raw.recv(100)))  # it pings while idle
        with self.assertRaises(IpcError) as caught:
            server.receive(10)  # raw never answers: dropped after 1 s
        self.assertEqual(caught.exception.reason, "Timeout")
        raw.close()

    def test_a_send_blocked_on_a_peer_that_reads_nothing_does_not_stop_the_heartbeat_or_close(self):
        # the blocked send held the write lock, the heartbeat's ping waited on it: its timeout never
        # fired, and close() waited past its linger for good
        where = self.address()
        listener = listen(where, heartbeat=Heartbeat(0.1, 1.0), linger=1.0)
        self.addCleanup(listener.close)
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # reads nothing, says nothing
        self.addCleanup(raw.close)
        raw.connect(where[len("unix://"):])
        server = listener.accept(10)
        outcome = []

        def flood():
            try:
                while True:
                    server.send(b"x" * (1 << 20))
            except IpcError as error:
                outcome.append(error.reason)
        sender = threading.Thread(target=flood)
        sender.daemon = True
        sender.start()
        started = time.time()
        with self.assertRaises(IpcError) as caught:
            server.receive(10)
        self.assertEqual(caught.exception.reason, "Timeout")
        self.assertLess(time.time() - started, 5)
        sender.join(5)
        self.assertEqual(outcome, ["Timeout"])  # the blocked send failed with the channel's error
        started = time.time()
        server.close()
        self.assertLess(time.time() - started, 1.0)

    def test_close_returns_within_its_linger_while_a_send_is_blocked(self):
        where = self.address()
        listener = listen(where, linger=1.0)
        self.addCleanup(listener.close)
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(raw.close)
        raw.connect(where[len("unix://"):])
        server = listener.accept(10)
        outcome = []

        def flood():
            try:
                while True:
                    server.send(b"x" * (1 << 20))
            except IpcError as error:
                outcome.append(type(error).__name__)
        sender = threading.Thread(target=flood)
        sender.daemon = True
        sender.start()
        time.sleep(0.5)  # the send is blocked now
        started = time.time()
        closer = threading.Thread(target=server.close)
        closer.daemon = True
        closer.start()
        closer.join(5)
        self.assertFalse(closer.is_alive())
        self.assertLess(time.time() - started, 1.0 + 0.7)
        sender.join(5)
        self.assertEqual(len(outcome), 1)

    def test_close_checked_says_when_the_peer_did_not_take_what_was_sent(self):
        # (close returned alike whether the listener answered or dropped the connection over a message past
        # its size limit)
        where = self.address()

        def echo(channel):
            for message in channel:
                channel.send(message)

        self.serve_one(where, echo)
        answered = connect(where)
        answered.send(b"hello")
        self.assertEqual(answered.receive(10), b"hello")
        answered.close_checked()
        answered.close_checked()  # again: the same

        strict = self.address("strict")
        listener = listen(strict, max_frame_size=4)
        self.addCleanup(listener.close)
        refused = connect(strict)
        server = listener.accept(10)
        refused.send(b"hello")
        with self.assertRaises(IpcError) as caught:
            server.receive(5)
        self.assertEqual(caught.exception.reason, "FrameTooLarge")
        with self.assertRaises(IpcError) as lost:
            refused.close_checked()
        self.assertEqual(lost.exception.reason, "ConnectionLost")
        with self.assertRaises(IpcError):
            refused.close_checked()  # it stays said

        # a peer that reads nothing while a send holds the stream: the close gave up
        held = self.address("held")
        quiet = listen(held)
        self.addCleanup(quiet.close)
        flooder = connect(held, linger=0.5)
        reader = quiet.accept(10)
        self.addCleanup(reader.close)
        reader.set_unread_limit(1, 1)
        sender = threading.Thread(target=lambda: self.assertRaises(IpcError, lambda: [
            flooder.send(b"x" * (1 << 20)) for _ in range(64)]))
        sender.daemon = True
        sender.start()
        # the send is blocked now: the reader stopped at its limit, and a send (of 1 MiB, more than the socket
        # holds) is under way. Waited for, not slept: between two sends (the reader stopped) the close frame
        # went out, and a silent peer is one close_checked cannot judge (it returned)
        self.wait_held(reader)
        deadline = time.time() + 20
        while not flooder._write_lock.locked() and time.time() < deadline:
            time.sleep(0.01)
        self.assertTrue(flooder._write_lock.locked(), "no send under way")
        with self.assertRaises(IpcError) as gave_up:
            flooder.close_checked()
        self.assertEqual(gave_up.exception.reason, "ConnectionLost")
        self.assertIn("close gave up", gave_up.exception.detail)
        sender.join(5)

    def test_close_checked_returns_for_a_silent_peer_and_keeps_its_linger_when_the_close_frame_cannot_leave(self):
        # (our own teardown at the linger ended the stream, and was taken as the peer's drop: 12 of 20 raised),
        # (a close frame blocked on a full socket held close past its linger, for ever)
        where = self.address()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(server.close)
        server.bind(where[len("unix://"):])
        server.listen(32)
        for _ in range(10):
            client = connect(where, linger=0.1)
            silent, _ = server.accept()
            self.addCleanup(silent.close)
            client.send(b"hi")
            client.close_checked()  # it cannot tell: it returns

        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(b.close)
        full = Channel.over_socket(a, "unix://pair", linger=0.5)
        # nothing reads b: fill the buffers beneath the channel, so that its close frame's write blocks
        while True:
            try:
                a.send(b"x" * 1000, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
        started = time.time()
        with self.assertRaises(IpcError) as gave_up:
            full.close_checked()
        self.assertLess(time.time() - started, 0.5 + 1.0)
        self.assertIn("close gave up", gave_up.exception.detail)

    def test_our_close_drops_what_nobody_took_and_reads_on_to_the_peers_answer(self):
        # (a receive after our own close returned the messages queued before it, where a Node channel drops
        # them: Closed), and a peer that sent more than we hold unread is answered, not left to give up
        where = self.address()
        listener = listen(where)
        self.addCleanup(listener.close)
        client = connect(where)
        server = listener.accept(10)
        outcome = []

        def flood():
            try:
                while True:
                    server.send(b"y" * (256 * 1024))
            except IpcError as error:
                outcome.append(error)

        sender = threading.Thread(target=flood)
        sender.daemon = True
        sender.start()
        self.assertEqual(len(client.receive(10)), 256 * 1024)
        self.wait_held(client)  # our unread limit is reached: the server's send waits
        waiting = []
        receiver = threading.Thread(target=lambda: waiting.append(self.assertRaises(Closed, client.receive, 10)))
        receiver.daemon = True
        started = time.time()
        client.close_checked()
        receiver.start()
        receiver.join(5)
        self.assertEqual(len(waiting), 1)
        with self.assertRaises(Closed):
            client.receive(1)  # what was queued is dropped
        sender.join(5)
        self.assertEqual(len(outcome), 1)
        self.assertIsInstance(outcome[0], Closed)  # the server's send ends as closed by its peer
        server.close_checked()  # its answer left: we read on past what we dropped
        self.assertLess(time.time() - started, client._linger)

    def test_a_bad_frame_drops_the_connection(self):
        where = self.address()
        listener = listen(where)
        self.addCleanup(listener.close)
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.connect(where[len("unix://"):])
        server = listener.accept(10)
        raw.sendall(b"GET / HTTP/1.1\r\n")
        with self.assertRaises(IpcError) as caught:
            server.receive(5)
        self.assertEqual(caught.exception.reason, "Protocol")
        self.assertEqual(raw.recv(10), b"")
        raw.close()

    def test_listen_leaves_what_is_not_a_stale_socket_of_ours(self):
        path = os.path.join(self.dir, "taken.sock")
        with open(path, "w") as f:
            f.write("mine")
        with self.assertRaises(IpcError) as caught:
            listen("unix://" + path)
        self.assertEqual(caught.exception.reason, "AddressInUse")
        self.assertIn("regular file", caught.exception.detail)
        with open(path) as f:
            self.assertEqual(f.read(), "mine")
        # a dead server's socket is replaced
        stale = os.path.join(self.dir, "stale.sock")
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(stale)
        dead.close()
        listen("unix://" + stale).close()
        # a live one is not
        live = listen("unix://" + stale)
        self.addCleanup(live.close)
        with self.assertRaises(IpcError) as caught:
            listen("unix://" + stale)
        self.assertEqual(caught.exception.reason, "AddressInUse")
        # its look (a connection) said goodbye: the live listener sees a client that closed, not one lost
        looked = live.accept()
        self.addCleanup(looked.close)
        with self.assertRaises(IpcError) as caught:
            looked.receive()
        self.assertEqual(caught.exception.reason, "Closed")

    @unittest.skipUnless(os.path.isdir("/proc/self/fd"), "binds through /proc/self/fd (Linux)")
    def test_a_staging_directory_swapped_after_the_bind_steers_neither_the_chmod_nor_the_link(self):
        # as Node's Security.test.ts "unix://: the staging directory swapped ...": someone who may rename
        # entries beside the socket renames the private directory the socket was bound in and puts one with a
        # link to a file in its place, between the bind and the chmod; a chmod by path followed the link
        # (as root, to any file: made as wide as mode) and os.link made the file the listener's path
        victim = os.path.join(self.dir, "victim")
        with open(victim, "w") as f:
            f.write("theirs")
        os.chmod(victim, 0o600)
        path = os.path.join(self.dir, "swapped.sock")
        chmod = os.chmod
        swapped = []

        def swap_then_chmod(target, mode, *args, **kwargs):
            for name in os.listdir(self.dir):
                if name.startswith(".e") and not swapped:
                    os.rename(os.path.join(self.dir, name), os.path.join(self.dir, "moved" + name))
                    os.mkdir(os.path.join(self.dir, name))
                    os.symlink(victim, os.path.join(self.dir, name, "s"))
                    swapped.append(name)
            return chmod(target, mode, *args, **kwargs)

        with mock.patch.object(os, "chmod", swap_then_chmod):
            listener = listen("unix://" + path, mode=0o666)
        self.addCleanup(listener.close)
        self.assertEqual(len(swapped), 1, "the staging directory was swapped")
        self.assertEqual(stat.S_IMODE(os.stat(victim).st_mode), 0o600, "the chmod followed the planted link")
        self.assertTrue(stat.S_ISSOCK(os.lstat(path).st_mode), "the path is the listener's socket")
        self.assertEqual(stat.S_IMODE(os.lstat(path).st_mode), 0o666)
        with open(victim) as f:
            self.assertEqual(f.read(), "theirs")
        # what the other user put in place of the staging directory is left as it is
        self.assertTrue(os.path.islink(os.path.join(self.dir, swapped[0], "s")))
        client = connect("unix://" + path)
        self.addCleanup(client.close)
        served = listener.accept()
        self.addCleanup(served.close)
        client.send(b"past the swap")
        self.assertEqual(served.receive(5), b"past the swap")

    @unittest.skipUnless(os.path.isdir("/proc/self/fd"), "binds through /proc/self/fd (Linux)")
    def test_a_staging_directory_swapped_before_the_bind_is_refused_and_nothing_is_removed_through_it(self):
        # someone who may rename entries beside the socket renames the private directory as soon as it is made
        # and puts a link to another directory in its place: listen refused it (PermissionDenied), then its
        # clean-up unlinked the staging socket by path, through that link: a file named "s" there (root's, for a
        # root listener) was removed
        elsewhere = os.path.join(self.dir, "elsewhere")
        os.mkdir(elsewhere)
        victim = os.path.join(elsewhere, "s")
        with open(victim, "w") as f:
            f.write("theirs")
        real_open = os.open
        swapped = []

        def swap_then_open(name, *args, **kwargs):
            base = os.path.basename(str(name))
            if base.startswith(".e") and not swapped:
                os.rename(os.path.join(self.dir, base), os.path.join(self.dir, "moved" + base))
                os.symlink(elsewhere, os.path.join(self.dir, base))
                swapped.append(base)
            return real_open(name, *args, **kwargs)

        with mock.patch.object(os, "open", swap_then_open):
            with self.assertRaises(IpcError) as caught:
                listen("unix://" + os.path.join(self.dir, "refused.sock"))
        self.assertEqual(len(swapped), 1, "the staging directory was swapped")
        self.assertEqual(caught.exception.reason, "PermissionDenied")
        self.assertTrue(os.path.exists(victim), "the file the link leads to was removed")
        self.assertTrue(os.path.islink(os.path.join(self.dir, swapped[0])), "what they put there is left")
        self.assertFalse(os.path.exists(os.path.join(self.dir, "refused.sock")))

    @unittest.skipUnless(os.path.isdir("/proc/self/fd"), "listens through a descriptor of the directory (Linux)")
    def test_a_listener_dropped_unclosed_or_closed_twice_at_once_leaves_no_descriptor_open(self):
        # the descriptor of the socket's directory a listener holds was closed by close alone: one left open for
        # each listener dropped unclosed (its socket, collected, closes itself)
        import gc
        import weakref

        def held():
            return [fd for fd in os.listdir("/proc/self/fd") if _link_of(fd) == os.path.realpath(self.dir)]

        before = held()
        for i in range(3):
            listener = listen("unix://" + os.path.join(self.dir, "dropped%d.sock" % i))
            self.assertEqual(len(held()), len(before) + 1)
            gone = weakref.ref(listener)
            del listener
            gc.collect()
            self.assertIsNone(gone())
        self.assertEqual(held(), before, "descriptors of the directory left open")
        # closed from two threads at once: the descriptor is closed once (a second close of its number could
        # close a file another thread opened meanwhile)
        listener = listen("unix://" + os.path.join(self.dir, "twice.sock"))
        closers = [threading.Thread(target=listener.close) for _ in range(2)]
        for closer in closers:
            closer.start()
        for closer in closers:
            closer.join()
        self.assertEqual(held(), before)

    def test_replacing_a_dead_socket_waits_for_the_paths_lock_shared_with_node(self):
        # the lock Node's listeners take for a path (transport-pipe's pathLock: ".lock-" + the first 32
        # hex digits of sha256(absolute path), in the private runtime directory); held by another
        # listener, the dead socket is left alone until it is released, so no two listeners replacing
        # one dead socket remove each other's fresh one
        os.environ["XDG_RUNTIME_DIR"] = self.dir
        self.addCleanup(os.environ.pop, "XDG_RUNTIME_DIR", None)
        stale = os.path.join(self.dir, "locked.sock")
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(stale)
        dead.close()
        before = os.lstat(stale).st_ino
        key = hashlib.sha256(os.path.abspath(stale).encode("utf-8")).hexdigest()[:32]
        lock = os.open(os.path.join(address.runtime_dir(), ".lock-" + key), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(lock, fcntl.LOCK_EX)
        outcome = []
        racer = threading.Thread(target=lambda: outcome.append(listen("unix://" + stale)))
        racer.start()
        racer.join(0.5)
        self.assertTrue(racer.is_alive(), "listen went on while the path's lock was held")
        self.assertEqual(os.lstat(stale).st_ino, before, "the dead socket was replaced under another's lock")
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
        racer.join(15)
        self.assertEqual(len(outcome), 1)
        self.addCleanup(outcome[0].close)
        self.assertNotEqual(os.lstat(stale).st_ino, before)
        connect("unix://" + stale).close()
        # its last holder removes the lock file, as Node's listeners do: nothing is left behind
        self.assertEqual([name for name in os.listdir(address.runtime_dir()) if name.startswith(".lock-")], [])

    @unittest.skipUnless(os.getuid() == 0, "needs root to act as another user")
    def test_a_runtime_directory_another_user_made_first_does_not_stop_replacing_a_dead_socket(self):
        # the path's lock then lives in ~/.effect-ipc-locks, as Node's (SocketPath.lockDir). As Node's
        # Security.test.ts (runtimeDirOfNobody): XDG_RUNTIME_DIR unset and the temp directory (TMPDIR) a
        # shared sticky directory where uid 65534 made effect-ipc-<uid> first, the one place another user
        # can make this user's runtime directory first (an XDG_RUNTIME_DIR that others may write, or
        # another user's, is not used: test_address.py)
        os.chmod(self.dir, 0o711)  # the other user reaches the shared directory in it
        shared = os.path.join(self.dir, "shared")
        os.mkdir(shared)
        os.chmod(shared, 0o1777)
        for name, value in (("XDG_RUNTIME_DIR", None), ("TMPDIR", shared)):
            self.addCleanup(_restore_env, name, os.environ.get(name))
            _restore_env(name, value)
        runtime = os.path.join(shared, "effect-ipc-%d" % os.getuid())
        self.assertEqual(address.runtime_dir_for(*address._this_host()), runtime)
        pid = os.fork()
        if pid == 0:  # the other user
            try:
                os.setgid(65534)
                os.setuid(65534)
                os.mkdir(runtime, 0o700)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        self.assertEqual(os.lstat(runtime).st_uid, 65534)
        with self.assertRaises(IpcError) as caught:
            address.runtime_dir()
        self.assertEqual(caught.exception.reason, "PermissionDenied")
        import pwd
        home = pwd.getpwuid(os.getuid()).pw_dir
        self.assertEqual(address.lock_dir(), os.path.join(home, ".effect-ipc-locks"))
        stale = os.path.join(self.dir, "stale.sock")
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(stale)
        dead.close()
        listener = listen("unix://" + stale)
        self.addCleanup(listener.close)
        connect("unix://" + stale).close()

    @unittest.skipUnless(os.getuid() == 0, "needs root to give up its effective ids")
    def test_a_process_that_dropped_its_effective_uid_uses_its_own_runtime_directory(self):
        # as Node's Security.test.ts (effective user): a daemon started as root that gives up its
        # privileges with seteuid keeps real uid 0; what it creates is its effective user's, and a peer's
        # credentials carry that user too. The runtime directory is effect-ipc-<euid> (effect-ipc-0 was
        # refused as not its own) and the same-user check takes its own clients (it refused them)
        name = "py-euid-%d" % os.getpid()
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(read_end)
                os.environ.pop("XDG_RUNTIME_DIR", None)
                os.setegid(65534)
                os.seteuid(65534)
                said = {}
                try:
                    listener = listen("pipe://" + name)
                    client = connect("pipe://" + name)
                    server = listener.accept(5)
                    client.send(b"as nobody")
                    said["got"] = server.receive(5).decode()
                    said["dir"] = address.runtime_dir()
                    said["owner"] = os.lstat(said["dir"]).st_uid
                    said["peer"] = [server.peer.uid, client.peer.uid]
                    client.close()
                    server.close()
                    listener.close()
                except Exception as error:  # reported to the parent, which fails the test with it
                    said["error"] = repr(error)
                os.write(write_end, json.dumps(said).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        chunks = []
        while True:
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(read_end)
        os.waitpid(pid, 0)
        said = json.loads(b"".join(chunks).decode())
        self.assertNotIn("error", said, said.get("error"))
        self.assertEqual(said["got"], "as nobody")
        self.assertEqual(said["dir"], "/tmp/effect-ipc-65534")
        self.assertEqual(said["owner"], 65534)
        self.assertEqual(said["peer"], [65534, 65534])

    @unittest.skipUnless(os.getuid() == 0, "needs root to change its effective ids")
    def test_a_listener_admits_the_user_it_listened_as_after_its_process_changes_user(self):
        # the default authorize read the effective uid at each accept: a listener made as root admitted
        # uid 65534 once its process had changed its effective uid, on an abstract socket only root used
        name = "unix:@py-euid-later-%d" % os.getpid()
        go_read, go_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the other user, waiting for the listener to change its effective uid
            try:
                os.setgid(65534)
                os.setuid(65534)
                os.read(go_read, 1)
                try:
                    connect(name).receive(2)
                except Exception:
                    pass
            finally:
                os._exit(0)
        listener = listen(name)
        self.addCleanup(listener.close)
        os.setegid(65534)
        os.seteuid(65534)
        try:
            os.write(go_write, b"x")
            with self.assertRaises(IpcError) as caught:
                listener.accept(2)
            self.assertEqual(caught.exception.reason, "Timeout")  # the client was refused, not admitted
        finally:
            os.seteuid(0)
            os.setegid(0)
            os.waitpid(pid, 0)
            os.close(go_read)
            os.close(go_write)

    def test_a_flood_of_refused_clients_logs_a_few_lines_not_one_each(self):
        # each refused client logged a warning: another user connecting in a loop to an abstract name (no file
        # mode keeps them out) wrote 80 000 lines (8 MB) of log in 5 s; now the first few of a minute are logged,
        # the rest summed up on close, as the Node side's listeners do
        import subprocess
        name = "py-refusal-flood-%d" % os.getpid()
        seen = []
        listener = listen("unix:@" + name, authorize=lambda peer: seen.append(peer) or len(seen) > 200)
        self.addCleanup(listener.close)
        client = subprocess.Popen([sys.executable, "-c", """if True:
            import socket, sys
            for i in range(201):
                s = socket.socket(socket.AF_UNIX)
                s.connect("\\0" + sys.argv[1])
                if i < 200:
                    s.close()
            s.recv(1)  # the last one is admitted: held until the test closes it
            """, name])
        self.addCleanup(client.wait, 10)
        with self.assertLogs("effect_ipc", "WARNING") as logs:
            channel = listener.accept(30)  # the 201st, once the 200 before it were refused
            channel.close()
            listener.close()
        self.assertEqual(len(seen), 201)
        self.assertEqual(len(logs.records), 10 + 1, "%d lines, the last: %s" % (len(logs.records),
                                                                             logs.records[-1].getMessage()))
        self.assertIn("190 more clients refused", logs.records[-1].getMessage())
        self.assertEqual(listener.refused, 200)

    def test_close_removes_its_socket_not_a_file_of_that_name_a_swapped_directory_leads_to(self):
        # close looked at the socket by path and removed it by path: a user who may rename a directory on the way
        # swapped it for a link to another directory between the two, and the unlink removed a file of the
        # socket's name there (root's, for a root listener); now both go through the directory's descriptor
        sub, moved, elsewhere = (os.path.join(self.dir, name) for name in ("sub", "moved", "elsewhere"))
        os.mkdir(sub)
        os.mkdir(elsewhere)
        victim = os.path.join(elsewhere, "x.sock")
        with open(victim, "w") as f:
            f.write("not the socket")
        listener = listen("unix://" + os.path.join(sub, "x.sock"))
        real_lstat = os.lstat

        def lstat(name, *args, **kwargs):
            st = real_lstat(name, *args, **kwargs)
            if str(name).endswith("x.sock") and not os.path.islink(sub):  # between the look and the unlink
                os.rename(sub, moved)
                os.symlink(elsewhere, sub)
            return st

        with mock.patch.object(os, "lstat", lstat):
            listener.close()
        self.assertTrue(os.path.islink(sub))  # the swap was made
        self.assertTrue(os.path.exists(victim))
        self.assertEqual(os.listdir(moved), [])  # the listener's own socket is gone

    def test_refused_credentials(self):
        where = self.address()
        listener = listen(where)
        self.addCleanup(listener.close)
        with self.assertRaises(IpcError) as caught:
            connect(where, authorize=lambda peer: False)
        self.assertEqual(caught.exception.reason, "PeerRejected")

    def test_a_path_with_no_room_for_the_private_directory_in_it_is_served_up_to_107_bytes(self):
        # the private directory beside the socket (`.eXXXXXXXX/s`) made any directory over 94 bytes
        # NameTooLong, where the Node side binds through the directory's descriptor and listens
        deep = self.dir
        while len(deep) < 96:
            deep = os.path.join(deep, "d" * min(20, 96 - len(deep)))
        os.makedirs(deep, exist_ok=True)
        path = os.path.join(deep, "s" * (107 - len(deep) - 1))
        self.assertEqual(len(path.encode("utf-8")), 107)
        listener, thread = self.serve_one("unix://" + path, lambda ch: ch.send(ch.receive(5)))
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        client = connect("unix://" + path)
        client.send(b"deep")
        self.assertEqual(client.receive(5), b"deep")
        client.close()
        self.assertEqual(sorted(os.listdir(deep)), [os.path.basename(path)])  # no private directory left
        listener.close()
        self.assertFalse(os.path.exists(path))
        with self.assertRaises(IpcError) as caught:
            listen("unix://" + path + "x")
        self.assertEqual(caught.exception.reason, "NameTooLong")

    def test_pipe_addresses_live_in_the_private_runtime_directory(self):
        old = os.environ.get("XDG_RUNTIME_DIR")
        os.environ["XDG_RUNTIME_DIR"] = self.dir
        try:
            where = address.resolve("pipe://py-test")
            self.assertEqual(where.path, os.path.join(self.dir, "effect-ipc", "py-test.sock"))
            self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.dir, "effect-ipc")).st_mode), 0o700)
            listener, thread = self.serve_one("pipe://py-test", lambda ch: ch.send(ch.receive(5)))
            client = connect("pipe://py-test")
            client.send(b"via pipe://")
            self.assertEqual(client.receive(5), b"via pipe://")
            client.close()
            with self.assertRaises(IpcError) as caught:
                address.resolve("pipe://bad/name")
            self.assertEqual(caught.exception.reason, "InvalidAddress")
            with self.assertRaises(IpcError) as caught:
                address.resolve("unix:///" + "x" * 200)
            self.assertEqual(caught.exception.reason, "NameTooLong")
        finally:
            if old is None:
                del os.environ["XDG_RUNTIME_DIR"]
            else:
                os.environ["XDG_RUNTIME_DIR"] = old


class FramingKillers(unittest.TestCase):
    def test_a_frame_of_exactly_the_limit_is_taken(self):
        # `length > max_frame_size` -> `>=` refused a frame of exactly the limit
        decoder = framing.Decoder(max_frame_size=10)
        self.assertEqual(decoder.feed(framing.encode(framing.DATA, b"x" * 10)), [(framing.DATA, b"x" * 10)])

    def test_every_kind_past_pong_is_a_protocol_error(self):
        # `kind > PONG` -> `kind > PONG + 1` took kind 4 (the test only tried kind 9)
        for kind in (4, 5, 0xFF):
            with self.assertRaises(IpcError) as caught:
                framing.Decoder().feed(bytes([framing.VERSION, kind]))
            self.assertEqual(caught.exception.reason, "Protocol", kind)


class ChannelKillers(TempDirCase):
    def test_a_message_over_the_senders_limit_is_frame_too_large_and_nothing_is_sent(self):
        # without the send-side check the 11-byte message went out (the peer's limit is larger)
        where = self.address()
        listener = listen(where)
        self.addCleanup(listener.close)
        client = connect(where, max_frame_size=10)
        self.addCleanup(client.close)
        server = listener.accept(10)
        self.addCleanup(server.close)
        with self.assertRaises(IpcError) as caught:
            client.send(b"x" * 11)
        self.assertEqual(caught.exception.reason, "FrameTooLarge")
        client.send(b"x" * 10)  # the limit itself goes
        self.assertEqual(server.receive(5), b"x" * 10)

    def test_close_removes_only_its_own_socket_file(self):
        # close unlinked whatever was at the path, here another listener's fresh socket
        where = self.address()
        path = where[len("unix://"):]
        first = listen(where)
        os.unlink(path)  # the path was taken over meanwhile
        second = listen(where)
        self.addCleanup(second.close)
        first.close()
        self.assertTrue(os.path.exists(path), "the other listener's socket was removed")
        connect(where).close()

    @unittest.skipUnless(os.getuid() == 0, "needs root to give a socket file to another user")
    def test_a_dead_socket_of_another_user_is_never_replaced(self):
        # without the owner check a dead socket of uid 65534 was taken as ours and removed
        stale = os.path.join(self.dir, "theirs.sock")
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(stale)
        dead.close()
        os.chown(stale, 65534, 65534)
        before = os.lstat(stale).st_ino
        with self.assertRaises(IpcError) as caught:
            listen("unix://" + stale)
        self.assertEqual(caught.exception.reason, "AddressInUse")
        self.assertIn("a socket owned by uid 65534", caught.exception.detail)
        self.assertEqual(os.lstat(stale).st_ino, before)

    def test_a_stream_that_ends_in_the_middle_of_a_frame_is_connection_lost(self):
        # an end inside a frame was taken as a graceful close (Closed)
        where = self.address()
        listener = listen(where)
        self.addCleanup(listener.close)
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(raw.close)
        raw.connect(where[len("unix://"):])
        server = listener.accept(10)
        raw.sendall(framing.encode(framing.DATA, b"whole") + framing.header(framing.DATA, 10) + b"abc")
        raw.shutdown(socket.SHUT_WR)
        self.assertEqual(server.receive(5), b"whole")
        with self.assertRaises(IpcError) as caught:
            server.receive(5)
        self.assertNotIsInstance(caught.exception, Closed)
        self.assertEqual(caught.exception.reason, "ConnectionLost")


def _link_of(fd):
    """What this process's descriptor ``fd`` (a name in /proc/self/fd) is open on; None once it is closed."""
    try:
        return os.readlink(os.path.join("/proc/self/fd", fd))
    except OSError:
        return None


if __name__ == "__main__":
    unittest.main()

