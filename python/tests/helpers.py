"""Shared helpers of the unittest suite: temporary directories and addresses."""
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class TempDirCase(unittest.TestCase):
    """A test case with a fresh private directory, removed afterwards."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="effect-ipc-py-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def address(self, name="s"):
        return "unix://%s/%s.sock" % (self.dir, name)
