"""Bad waits, pauses, sizes and counts are ``InvalidOption``, what is not a message is ``Encode``, a closed
client's ping ends at once, and a client's oversized frame is one line in the log."""
import logging
import os
import pathlib
import socket
import threading
import unittest

from helpers import RawRpcCase, TempDirCase

from effect_ipc import (Closed, IpcError, PeerInfo, RpcClient, RpcServer, Stream, connect, framing, listen, log,
                        same_user_or_root)
from effect_ipc.channel import Channel
from effect_ipc.ipckit import IpckitChannel

NAN, INF = float("nan"), float("inf")
BAD_TIMEOUTS = (-1, -0.5, NAN, INF, -INF, "1", True)
# and 1e10 s, past threading.TIMEOUT_MAX: Python's clock overflows on it in a wait (OverflowError)
TOO_LONG = BAD_TIMEOUTS + (1e10,)
BAD_COUNTS = (0, -1, 1.5, NAN, INF, "8", True)
BAD_PAUSES = (0, 0.0, -1, NAN, INF, "0.01", None, False)


class BadWaits(TempDirCase):
    def assert_invalid(self, call, label):
        with self.assertRaises(IpcError, msg=label) as caught:
            call()
        self.assertEqual(caught.exception.reason, "InvalidOption", "%r: %s" % (label, caught.exception))

    def test_a_channel_receive_with_a_bad_timeout_is_invalid_option(self):
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        channel = Channel.over_socket(a, "socketpair")
        self.addCleanup(b.close)
        self.addCleanup(channel.close)
        for timeout in TOO_LONG:
            self.assert_invalid(lambda: channel.receive(timeout=timeout), timeout)
        b.sendall(framing.encode(framing.DATA, b"still here"))
        self.assertEqual(channel.receive(timeout=30), b"still here")  # the channel goes on

    def test_a_log_reader_refuses_a_bad_poll_interval_and_registers_nothing(self):
        path = os.path.join(self.dir, "stream")
        log.create(path, readers=())
        for pause in BAD_PAUSES:
            self.assert_invalid(lambda: log.LogReader(path, "r", poll_interval=pause), pause)
        self.assertEqual(os.listdir(os.path.join(path, "readers")), [])
        reader = log.LogReader(path, "r")
        self.addCleanup(reader.close)
        for timeout in BAD_TIMEOUTS:
            self.assert_invalid(lambda: reader.read(timeout), timeout)
            self.assert_invalid(lambda: reader.receive(timeout), timeout)
        with log.LogWriter(path) as writer:
            writer.append(b"one")
        self.assertEqual(reader.receive(30), b"one")

    def test_an_ipckit_channel_refuses_a_bad_poll_interval_and_a_bad_timeout(self):
        path = os.path.join(self.dir, "ipckit")
        for pause in BAD_PAUSES:
            self.assert_invalid(lambda: IpckitChannel(path, "backend", poll_interval=pause), pause)
        channel = IpckitChannel(path, "backend")
        for timeout in BAD_TIMEOUTS:
            self.assert_invalid(lambda: channel.receive(timeout), timeout)
            self.assert_invalid(lambda: channel.wait_response("none", timeout), timeout)
            self.assert_invalid(lambda: channel.request("ping", None, timeout), timeout)
        with open(os.path.join(path, "backend_to_frontend.json")) as f:
            self.assertEqual(f.read().strip(), "[]", "a request with a bad timeout is not sent")


class BadWaitsOfRpcAndSockets(TempDirCase):
    def assert_invalid(self, call, label):
        with self.assertRaises(IpcError, msg=label) as caught:
            call()
        self.assertEqual(caught.exception.reason, "InvalidOption", "%r: %s" % (label, caught.exception))

    def serve(self, handlers):
        listener = listen(self.address())
        self.addCleanup(listener.close)
        thread = threading.Thread(target=RpcServer(handlers).serve, args=(listener,))
        thread.daemon = True
        thread.start()
        client = RpcClient.connect(self.address())
        self.addCleanup(client.close)
        return client

    def test_an_rpc_client_refuses_a_bad_timeout_and_sends_nothing(self):
        ran = []
        client = self.serve({"Echo": lambda p: ran.append(p) or p, "Count": lambda p: Stream([1, 2])})
        for timeout in TOO_LONG:
            self.assert_invalid(lambda: client.call("Echo", "call", timeout=timeout), timeout)
            self.assert_invalid(lambda: client.stream("Count", None, timeout=timeout), timeout)
            self.assert_invalid(lambda: client.ping(timeout), timeout)
        call = client.start("Echo", "started")
        for timeout in TOO_LONG:
            self.assert_invalid(lambda: call.result(timeout), timeout)
        self.assertEqual(call.result(30), "started")  # the call goes on
        self.assertEqual(client.call("Echo", "last", timeout=30), "last")
        self.assertEqual(ran, ["started", "last"], "a call with a bad timeout is not sent")
        self.assertEqual(list(client.stream("Count", None, timeout=30)), [1, 2])
        client.ping(30)

    def test_connect_accept_and_wait_closed_refuse_a_bad_timeout_and_connect_nothing(self):
        listener = listen(self.address())
        self.addCleanup(listener.close)
        for timeout in TOO_LONG:
            self.assert_invalid(lambda: connect(self.address(), timeout=timeout), timeout)
            self.assert_invalid(lambda: listener.accept(timeout), timeout)
        with self.assertRaises(IpcError) as caught:
            listener.accept(0)  # nobody is waiting: no bad connect got through
        self.assertEqual(caught.exception.reason, "Timeout")
        client = connect(self.address(), timeout=30)
        self.addCleanup(client.close)
        server = listener.accept(30)
        self.addCleanup(server.close)
        for timeout in TOO_LONG:
            self.assert_invalid(lambda: client.wait_closed(timeout), timeout)
        client.close()
        self.assertTrue(server.wait_closed(30))

    def test_a_timeout_of_0_tries_once_and_is_timeout(self):
        listener = listen(self.address(), backlog=0)
        self.addCleanup(listener.close)
        with self.assertRaises(IpcError) as caught:
            listener.accept(0)  # nobody is waiting (a non-blocking accept: EAGAIN)
        self.assertEqual(caught.exception.reason, "Timeout")
        first = connect(self.address(), timeout=0)  # the backlog's one place
        self.addCleanup(first.close)
        with self.assertRaises(IpcError) as caught:
            connect(self.address(), timeout=0).close()  # the backlog is full (a non-blocking connect: EAGAIN)
        self.assertEqual(caught.exception.reason, "Timeout")
        listener.accept(30).close()

    def test_sizes_counts_and_limits_are_invalid_option(self):
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        channel = Channel.over_socket(a, "socketpair")
        self.addCleanup(b.close)
        self.addCleanup(channel.close)
        for bad in BAD_COUNTS:
            self.assert_invalid(lambda: channel.set_unread_limit(bad), bad)
            self.assert_invalid(lambda: channel.set_unread_limit(None, bad), bad)
            self.assert_invalid(lambda: RpcServer({}, max_workers=bad), bad)
            self.assert_invalid(lambda: RpcServer({}, max_queued=bad), bad)
            self.assert_invalid(lambda: Stream([1], batch=bad), bad)
        self.assert_invalid(lambda: RpcServer({}, max_queued=1), 1)
        for bad in (-1, 1.5, "8", True, None):
            self.assert_invalid(lambda: listen(self.address("backlog"), backlog=bad), bad)
        for bad in (-1, 0o1000, "0600", 1.5, True, None):
            self.assert_invalid(lambda: listen(self.address("mode"), mode=bad), bad)
        self.assertEqual(sorted(os.listdir(self.dir)), [], "nothing was bound")
        path = os.path.join(self.dir, "stream")
        log.create(path)
        for bad in TOO_LONG + (None,):
            self.assert_invalid(lambda: log.LogWriter(path, lock_timeout=bad), bad)
            self.assert_invalid(lambda: IpckitChannel(os.path.join(self.dir, "ipckit"), "backend", lock_timeout=bad),
                                bad)
            self.assert_invalid(lambda: IpckitChannel(os.path.join(self.dir, "ipckit"), "backend", stale_age=bad), bad)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "ipckit")), "nothing was made")


class CarelessCalls(TempDirCase):
    def assert_encode(self, call, label):
        with self.assertRaises(IpcError, msg=label) as caught:
            call()
        self.assertEqual(caught.exception.reason, "Encode", "%r: %s" % (label, caught.exception))

    def test_a_message_that_is_not_bytes_is_encode_and_the_channel_goes_on(self):
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        left, right = Channel.over_socket(a, "left"), Channel.over_socket(b, "right")
        self.addCleanup(left.close)
        self.addCleanup(right.close)
        for bad in ("text", {"a": 1}, None, 5, [1, 2]):
            self.assert_encode(lambda: left.send(bad), bad)
        left.send(bytearray(b"one"))
        left.send(memoryview(b"two"))
        self.assertEqual([right.receive(30), right.receive(30)], [b"one", b"two"])

    def test_a_log_payload_that_is_not_bytes_is_encode_and_nothing_of_its_batch_is_written(self):
        path = os.path.join(self.dir, "stream")
        log.create(path, readers=["r"])
        with log.LogWriter(path) as writer:
            for bad in ("text", {"a": 1}, None, 5):
                self.assert_encode(lambda: writer.append(bad), bad)
            self.assert_encode(lambda: writer.append_many([b"first", "second"]), "a batch with a str")
            self.assert_encode(lambda: writer.append_many(None), "no batch")
            writer.append(memoryview(b"good"))
        with log.LogReader(path, "r") as reader:
            self.assertEqual(reader.receive(30), b"good")
            with self.assertRaises(IpcError) as caught:
                reader.read(0)
            self.assertEqual(caught.exception.reason, "Timeout", "nothing else was written")

    def test_an_rpc_request_json_cannot_carry_is_encode_and_is_not_sent(self):
        ran = []
        listener = listen(self.address())
        self.addCleanup(listener.close)
        thread = threading.Thread(target=RpcServer({"Echo": lambda p: ran.append(p) or p}).serve, args=(listener,))
        thread.daemon = True
        thread.start()
        client = RpcClient.connect(self.address())
        self.addCleanup(client.close)
        for payload in (b"bytes", {"when": {1, 2}}, NAN, {"raw": b"x"}):
            self.assert_encode(lambda: client.call("Echo", payload, timeout=30), payload)
            self.assert_encode(lambda: client.send("Echo", payload), payload)
            self.assert_encode(lambda: client.stream("Echo", payload), payload)
        for tag in (None, b"Echo", 5):
            self.assert_encode(lambda: client.call(tag, 1, timeout=30), tag)
        for headers in (5, "ab", [(1, 2)], [("a", "b", "c")], {"a": 1}):
            self.assert_encode(lambda: client.call("Echo", 1, timeout=30, headers=headers), headers)
        self.assertEqual(client.call("Echo", "ok", timeout=30, headers={"trace": "1"}), "ok")
        self.assertEqual(client.call("Echo", "pairs", timeout=30, headers=[("trace", "2")]), "pairs")
        self.assertEqual(ran, ["ok", "pairs"], "nothing bad was sent")

    def test_a_ping_on_a_closed_or_lost_client_ends_at_once(self):
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(server.close)
        server.bind(os.path.join(self.dir, "s.sock"))
        server.listen(1)
        outcome = []

        def ping(client):
            try:
                client.ping(None)  # no timeout: only the connection's end stops it
            except IpcError as error:
                outcome.append(error)

        # a server that reads the hello and never answers a ping, then goes away
        client = RpcClient.connect(self.address())
        self.addCleanup(client.close)
        conn, _ = server.accept()
        thread = threading.Thread(target=ping, args=(client,))
        thread.daemon = True
        thread.start()
        conn.recv(4096)
        conn.close()
        thread.join(60)
        self.assertFalse(thread.is_alive(), "a ping waits on a lost connection")
        self.assertEqual(outcome[0].reason, "ConnectionLost", outcome[0])
        # a client closed here: its ping raises Closed, not a Timeout after waiting it out
        closed = RpcClient.connect(self.address())
        server.accept()[0].close()
        closed.close()
        thread = threading.Thread(target=ping, args=(closed,))
        thread.daemon = True
        thread.start()
        thread.join(60)
        self.assertFalse(thread.is_alive(), "a ping on a closed client waits")
        self.assertIsInstance(outcome[1], Closed)


class CarelessArguments(TempDirCase):
    """What is not an ``authorize``, a path, a channel, handlers, a peer or an offset is refused with the
    package's own ``IpcError`` before any socket is connected or bound and before any file is made."""

    def assert_refused(self, call, label, reason="InvalidOption"):
        with self.assertRaises(IpcError, msg=label) as caught:
            call()
        self.assertEqual(caught.exception.reason, reason, "%r: %s" % (label, caught.exception))

    def test_an_authorize_that_is_not_callable_connects_and_binds_nothing(self):
        listener = listen(self.address())
        self.addCleanup(listener.close)
        unbound = os.path.join(self.dir, "never.sock")
        for bad in (None, True, 1, "same_user_or_root"):
            self.assert_refused(lambda: connect(self.address(), authorize=bad), bad)
            self.assert_refused(lambda: listen("unix://" + unbound, authorize=bad), bad)
            self.assertFalse(os.path.lexists(unbound), "%r: nothing bound" % (bad,))
        with self.assertRaises(IpcError) as caught:
            listener.accept(0)
        self.assertEqual(caught.exception.reason, "Timeout", "no client connected")

    def test_an_authorize_that_raises_refuses_that_client_and_the_listener_goes_on(self):
        seen = []

        def authorize(peer):
            seen.append(peer)
            if len(seen) == 1:
                raise RuntimeError("authorize failed")
            return True

        listener = listen(self.address(), authorize=authorize)
        self.addCleanup(listener.close)
        first = connect(self.address())
        self.addCleanup(first.close)
        second = connect(self.address())
        self.addCleanup(second.close)
        second.send(b"second")
        with self.assertLogs("effect_ipc", logging.WARNING) as logs:
            channel = listener.accept(30)
        self.addCleanup(channel.close)
        self.assertEqual(channel.receive(30), b"second")
        self.assertIn("authorize failed", "\n".join(logs.output))
        with self.assertRaises(IpcError) as caught:
            first.receive(30)
        self.assertEqual(caught.exception.reason, "ConnectionLost", "the first client was dropped")

    def test_a_path_that_is_not_text_is_invalid_address_and_nothing_is_made(self):
        stream = os.path.join(self.dir, "stream")
        for bad in (None, 5, 1.5, os.fsencode(stream), "", "a\0b", ["x"]):
            self.assert_refused(lambda: log.create(bad, readers=["r"]), bad, "InvalidAddress")
            self.assert_refused(lambda: log.register(bad, "r"), bad, "InvalidAddress")
            self.assert_refused(lambda: log.reclaim(bad), bad, "InvalidAddress")
            self.assert_refused(lambda: log.LogWriter(bad), bad, "InvalidAddress")
            self.assert_refused(lambda: log.LogReader(bad, "r"), bad, "InvalidAddress")
            self.assert_refused(lambda: IpckitChannel(bad, "backend"), bad, "InvalidAddress")
        self.assertEqual(os.listdir(self.dir), [], "nothing was made")
        # an os.PathLike of a str is a path
        log.create(pathlib.Path(stream), readers=["r"])
        with log.LogWriter(pathlib.Path(stream)) as writer:
            writer.append(b"one")
        with log.LogReader(pathlib.Path(stream), "r") as reader:
            self.assertEqual(reader.receive(30), b"one")
        IpckitChannel(pathlib.Path(self.dir, "ipckit"), "backend").send_event("hello", None)

    def test_a_commit_offset_that_is_not_one_is_invalid_option_and_the_reader_goes_on(self):
        path = os.path.join(self.dir, "stream")
        log.create(path, readers=["r"])
        with log.LogWriter(path) as writer:
            writer.append(b"one")
            writer.append(b"two")
        with log.LogReader(path, "r") as reader:
            entry = reader.read(30)
            for bad in (None, "5", -1, 1.5, True, 1 << 64):
                self.assert_refused(lambda: reader.commit(bad), bad)
            reader.commit(entry.offset)
            self.assertEqual(reader.receive(30), b"two")

    def test_what_is_not_a_channel_handlers_or_a_peer_is_invalid_option(self):
        for bad in (None, "unix:///tmp/x.sock", 5):
            self.assert_refused(lambda: RpcClient(bad), bad)
        for bad in (None, [1], [("Add", len)], "Add", {"Add": 1}, {1: len}, {"Add": None}):
            self.assert_refused(lambda: RpcServer(bad), bad)
        RpcServer({"Add": len})  # a mapping of tags to callables is handlers
        for bad in (None, 5, "socket"):
            self.assert_refused(lambda: Channel.over_socket(bad, "nothing"), bad)
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        self.assert_refused(lambda: Channel.over_socket(a, "pair", max_frame_sise=5), "a misspelt option")
        for bad in (None, 1000, {"uid": 1000}):
            self.assert_refused(lambda: same_user_or_root(bad), bad)
        self.assertTrue(same_user_or_root(PeerInfo(uid=os.geteuid())))


class OversizedFrame(RawRpcCase):
    def test_a_client_frame_over_the_limit_is_one_line_naming_the_peer_and_the_limit(self):
        self.serve({}, max_frame_size=1024)
        sock = self.raw()
        with self.assertLogs("effect_ipc", "WARNING") as logged:
            sock.sendall(framing.encode(framing.DATA, b"x" * 2000))
            self.assertEqual(sock.recv(1), b"", "the server drops the connection")
            # the handler's thread logs as it ends, after the socket closed: wait for the line
            for _ in range(3000):
                if logged.records:
                    break
                threading.Event().wait(0.01)
        self.assertEqual(len(logged.records), 1, logged.output)
        record = logged.records[0]
        self.assertIsNone(record.exc_info, "no traceback for what a client sent")
        self.assertIn("pid %d" % os.getpid(), record.getMessage())
        self.assertIn("over the limit of 1024", record.getMessage())


if __name__ == "__main__":
    unittest.main()
