"""from_parent() in a process that ChildPipe.spawn did not start: IpcError NotFound, never a raw error."""
import os
import subprocess
import sys
import tempfile
import unittest

PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = """
from effect_ipc import from_parent, IpcError
try:
    from_parent()
    print("a channel")
except IpcError as error:
    print("IpcError", error.reason)
except Exception as error:
    print("raw", type(error).__name__)
"""


class FromParent(unittest.TestCase):
    def probe(self, where, **options):
        env = dict(os.environ, PYTHONPATH=PACKAGE, EFFECT_IPC_FD=where)
        if where is None:
            del env["EFFECT_IPC_FD"]
        ran = subprocess.run([sys.executable, "-c", PROBE], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, timeout=30, **options)
        return ran.stdout.decode().strip()

    def test_no_parent_channel_is_not_found(self):
        # stdin closed (raw OSError) and a number past a C long (raw OverflowError) were not IpcError
        self.assertEqual(self.probe("99999999999999999999"), "IpcError NotFound")
        self.assertEqual(self.probe("stdio", preexec_fn=lambda: os.close(0)), "IpcError NotFound")
        self.assertEqual(self.probe("3"), "IpcError NotFound")  # fd 3 not open
        # digits that are not ASCII ("²" passed str.isdigit(), then int() raised ValueError), and other text
        self.assertEqual(self.probe("\u00b2"), "IpcError NotFound")
        self.assertEqual(self.probe("fd3"), "IpcError NotFound")

    def test_unset_or_naming_no_socket_or_pipes_is_not_found(self):
        # the README's first case: a process not started by ChildPipe.spawn at all
        self.assertEqual(self.probe(None), "IpcError NotFound")
        self.assertEqual(self.probe(""), "IpcError NotFound")
        with tempfile.TemporaryFile() as regular:  # fd 3 open, but on a regular file
            self.assertEqual(self.probe("3", pass_fds=(3,), preexec_fn=lambda: os.dup2(regular.fileno(), 3)),
                             "IpcError NotFound")
            self.assertEqual(self.probe("stdio", stdin=regular), "IpcError NotFound")
        self.assertEqual(self.probe("stdio", stdin=subprocess.DEVNULL), "IpcError NotFound")


if __name__ == "__main__":
    unittest.main()
