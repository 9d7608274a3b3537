"""Bad waits and pauses are ``InvalidOption``, and a client's oversized frame is one line in the log."""
import logging
import os
import socket
import threading
import unittest

from helpers import RawRpcCase, TempDirCase

from effect_ipc import IpcError, RpcServer, framing, listen, log
from effect_ipc.channel import Channel
from effect_ipc.ipckit import IpckitChannel

NAN, INF = float("nan"), float("inf")
BAD_TIMEOUTS = (-1, -0.5, NAN, INF, -INF, "1", True)
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
        for timeout in BAD_TIMEOUTS:
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
