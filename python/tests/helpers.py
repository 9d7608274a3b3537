"""Shared helpers of the unittest suite: temporary directories and addresses."""
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class TempDirCase(unittest.TestCase):
    """A test case with a fresh private directory, removed afterwards."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="effect-ipc-py-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def address(self, name="s"):
        return "unix://%s/%s.sock" % (self.dir, name)


PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(case, code, imports="", timeout=15):
    """Runs ``code`` in a child Python that has this package on its path (``os``, ``sys``, ``time`` and
    ``imports`` imported) and returns what it printed; a child that does not end within ``timeout``
    seconds (it hangs) fails the test, killed, and so does one that exits with an error."""
    script = "import os, sys, time\nsys.path.insert(0, %r)\n%s\n%s" % (PACKAGE, imports, textwrap.dedent(code))
    try:
        ran = subprocess.run([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        case.fail("still blocked after %s s (killed)" % timeout)
    case.assertEqual(ran.returncode, 0, ran.stdout + ran.stderr[-2000:])
    return ran.stdout


class RawRpcCase(TempDirCase):
    """A test case that serves an ``RpcServer`` at its address and talks to it over raw sockets."""

    def serve(self, handlers, **listen_options):
        """Serves ``handlers`` at ``self.address()`` (listened with ``listen_options``) until the test ends."""
        import threading
        from effect_ipc import RpcServer, listen
        listener = listen(self.address(), **listen_options)
        self.addCleanup(listener.close)
        server = RpcServer(handlers)
        thread = threading.Thread(target=server.serve, args=(listener,))
        thread.daemon = True
        thread.start()
        return server

    def raw(self):
        """A raw socket connected to the server, closed when the test ends."""
        import socket
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.connect(os.path.join(self.dir, "s.sock"))
        sock.settimeout(30)
        return sock

    def answers(self, sock, count):
        """The next ``count`` JSON messages on ``sock`` (the connection must stay open meanwhile)."""
        import json
        from effect_ipc import framing
        decoder, messages = framing.Decoder(), []
        while len(messages) < count:
            chunk = sock.recv(65536)
            self.assertTrue(chunk, "the connection stays open")
            messages.extend(json.loads(p.decode("utf-8")) for kind, p in decoder.feed(chunk) if kind == framing.DATA)
        return messages
