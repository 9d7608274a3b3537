"""The file:// log: records, cursors, rotation, crash safety and damage."""
import errno
import os
import re
import resource
import shutil
import struct
import subprocess
import sys
import time
import unittest
import zlib

from helpers import PACKAGE, TempDirCase, run_python

from effect_ipc import IpcError, log


def new_stream(directory, readers=("r",)):
    """A new stream ``stream`` in ``directory`` with ``readers``; its path."""
    path = os.path.join(directory, "stream")
    log.create(path, readers=readers)
    return path


class Log(TempDirCase):
    def stream(self, readers=("r",)):
        return new_stream(self.dir, readers)

    def test_append_many_takes_any_iterable_of_payloads_and_writes_every_one(self):
        path = self.stream()
        with log.LogWriter(path) as writer:
            # a generator or iterator was used up by the size check: the append returned and wrote nothing
            writer.append_many(b"m%d" % i for i in range(3))
            writer.append_many(iter([b"x", b"y"]))
            writer.append_many(map(bytes, [b"z"]))
            writer.append_many(iter([b"bye"]), log.CLOSE)
        got = []
        with log.LogReader(path, "r") as reader:
            while not got or got[-1].kind != log.CLOSE:
                got.append(reader.read(10))
            with self.assertRaises(IpcError) as caught:
                reader.read(0.05)
            self.assertEqual(caught.exception.reason, "Timeout")
        self.assertEqual([(e.kind, e.payload) for e in got],
                         [(log.DATA, p) for p in (b"m0", b"m1", b"m2", b"x", b"y", b"z")] + [(log.CLOSE, b"bye")])

    def test_readers_given_as_one_name_or_not_names_are_refused_and_a_generator_registers_all(self):
        path = os.path.join(self.dir, "stream")
        # a str is iterable: "worker" registered five one-letter readers that held the stream back for good
        for readers, reason in (("worker", "InvalidOption"), (b"worker", "InvalidOption"), ([1], "InvalidAddress"),
                                (["ok", None], "InvalidAddress")):
            with self.assertRaises(IpcError, msg=repr(readers)) as caught:
                log.create(path, readers=readers)
            self.assertEqual(caught.exception.reason, reason, str(caught.exception))
            self.assertFalse(os.path.lexists(path), repr(readers))
        log.create(path)
        for bad in (1, None, b"r"):
            with self.assertRaises(IpcError) as caught:
                log.register(path, bad)
            self.assertEqual(caught.exception.reason, "InvalidAddress", str(caught.exception))
            with self.assertRaises(IpcError) as caught:
                log.LogReader(path, bad)
            self.assertEqual(caught.exception.reason, "InvalidAddress", str(caught.exception))
        self.assertEqual(os.listdir(os.path.join(path, "readers")), [])
        # a generator of names is read once: every name in it is registered (the check used it up before)
        log.create(path, readers=(name for name in ("a", "b")))
        self.assertEqual(sorted(n for n in os.listdir(os.path.join(path, "readers")) if n.endswith(".cursor")),
                         ["a.cursor", "b.cursor"])

    def test_a_reclaim_held_up_after_reading_the_cursors_stops_once_a_reader_registers(self):
        path = self.stream(readers=("a",))
        with log.LogWriter(path, segment_bytes=100) as writer:
            writer.append_many([b"m%d" % i for i in range(100)])
        reader = log.LogReader(path, "a")
        while True:
            try:
                reader.receive(0.1)
            except IpcError:
                break
        reader.close()  # everything read: every segment but the last may go
        segments = len(log.segments(path))
        self.assertGreater(segments, 6)
        # another process reclaims, each removal held up 300 ms (as a process descheduled under load is)
        code = ("import sys; sys.path.insert(0, %r); from effect_ipc import log; print('reclaiming', flush=True); "
                "print('freed', log.reclaim(sys.argv[1]), flush=True)" % PACKAGE)
        child = subprocess.Popen(["strace", "-f", "-qq", "-o", "/dev/null", "-e",
                                  "inject=unlink,unlinkat:delay_enter=300000", sys.executable, "-c", code, path],
                                 stdout=subprocess.PIPE, universal_newlines=True)
        try:
            self.assertEqual(child.stdout.readline().strip(), "reclaiming")
            time.sleep(0.15)
            # registered at the start meanwhile (the registry is waited for a moment, then not)
            late = log.LogReader(path, "late", start="start")
            # what is there once it is registered: from now on the reclaim removes at most the one segment whose
            # removal it had begun (however late this process came, on a loaded machine)
            registered = len(log.segments(path))
            time.sleep(1.2)  # the old reclaim went on removing a segment every 300 ms
            got = []
            while not got or got[-1] != b"m99":
                got.append(late.receive(10))  # (0.2 s ran out between two records on a loaded machine)
            with self.assertRaises(IpcError) as caught:
                late.receive(0.2)
            self.assertEqual(caught.exception.reason, "Timeout", str(caught.exception))
            late.close()
        finally:
            child.wait(30)
        self.assertGreaterEqual(len(log.segments(path)), registered - 1)

    def test_a_reader_with_no_descriptor_left_waits_warns_once_and_loses_nothing(self):
        path = self.stream()
        reader = log.LogReader(path, "r")
        with log.LogWriter(path, segment_bytes=100) as writer:
            writer.append_many([b"m%d" % i for i in range(30)])
        self.assertGreater(len(log.segments(path)), 3)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        got = []
        with self.assertLogs("effect_ipc.log", "WARNING") as logged:
            resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 20, hard))
            fillers = []
            try:
                while True:
                    fillers.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                pass
            try:
                # what the open segment holds, then a wait for a descriptor to open the next one: Timeout, never
                # the end of the segment taken for damage (the old reader stood past it and said Corrupt after)
                with self.assertRaises(IpcError) as caught:
                    while True:
                        got.append(reader.receive(0.3))
            finally:
                for fd in fillers:
                    os.close(fd)
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        self.assertEqual(caught.exception.reason, "Timeout")
        self.assertEqual(len(logged.records), 1, logged.output)
        self.assertIn("for want of room", logged.output[0])
        while len(got) < 30:
            got.append(reader.receive(1))
        self.assertEqual(got, [b"m%d" % i for i in range(30)])
        reader.close()

    def test_records_across_segments_and_cursors_across_restarts(self):
        path = self.stream()
        with log.LogWriter(path, segment_bytes=100) as writer:
            writer.append_many([b"m%d" % i for i in range(30)])
        self.assertGreater(len(log.segments(path)), 3)
        reader = log.LogReader(path, "r")
        self.assertEqual([reader.receive(1) for _ in range(10)], [b"m%d" % i for i in range(10)])
        with self.assertRaises(IpcError) as caught:
            log.LogReader(path, "r")  # one process per reader name
        self.assertEqual(caught.exception.reason, "AddressInUse")
        reader.close()
        reader = log.LogReader(path, "r")  # neither skips nor repeats
        self.assertEqual([reader.receive(1) for _ in range(20)], [b"m%d" % i for i in range(10, 30)])
        reader.close()
        # segments every reader is past are reclaimed by the next append
        with log.LogWriter(path, segment_bytes=100, max_bytes=400) as writer:
            writer.append(b"after")
        self.assertLess(len(log.segments(path)), 3)

    def test_a_torn_tail_is_never_delivered_and_is_cut_by_the_next_writer(self):
        path = self.stream()
        with log.LogWriter(path) as writer:
            writer.append(b"whole")
        # a writer died in the middle of a record: dirty state, half a record past the end
        with open(os.path.join(path, "writer.lock"), "r+b") as f:
            state = log.WriterState.decode(f.read(32))
            f.seek(0)
            f.write(log.WriterState(False, state.segment, state.end, 999999).encode())
        with open(os.path.join(path, log.segment_name(0)), "ab") as f:
            f.write(log.encode_record(log.DATA, b"torn" * 10)[:20])
        reader = log.LogReader(path, "r")
        self.assertEqual(reader.receive(1), b"whole")
        with self.assertRaises(IpcError) as caught:
            reader.receive(0.1)  # waited for: a write in progress or torn
        self.assertEqual(caught.exception.reason, "Timeout")
        writer = log.LogWriter(path)
        writer.append(b"next")
        self.assertIn("cut 20 bytes of a torn record", writer.repairs[0])
        writer.close()
        self.assertEqual(reader.receive(1), b"next")
        reader.close()

    def test_damage_before_the_committed_end_is_corrupt_never_a_gap(self):
        path = self.stream()
        with log.LogWriter(path) as writer:
            writer.append_many([b"one", b"two", b"three"])
        segment = os.path.join(path, log.segment_name(0))
        second = log.SEGMENT_HEADER + len(log.encode_record(0, b"one"))
        with open(segment, "r+b") as f:
            f.seek(second + log.RECORD_HEADER)
            f.write(b"T")  # a flipped payload byte: checksum mismatch
        reader = log.LogReader(path, "r")
        self.assertEqual(reader.receive(1), b"one")
        with self.assertRaises(IpcError) as caught:
            reader.receive(1)
        self.assertEqual(caught.exception.reason, "Corrupt")
        self.assertIn("offset %d (checksum mismatch)" % second, caught.exception.detail)
        reader.close()
        # cut short before the committed end: Corrupt too, and a writer refuses to append
        with open(segment, "r+b") as f:
            f.truncate(second + 5)
        with self.assertRaises(IpcError) as caught:
            log.LogWriter(path).append(b"more")
        self.assertEqual(caught.exception.reason, "Corrupt")
        self.assertEqual(os.path.getsize(segment), second + 5)  # nothing was cut

    def test_a_record_cut_short_before_a_segment_with_records_is_corrupt_without_a_writer_state(self):
        # as the Node reader: with writer.lock emptied, damaged or gone, such a cut waited for good
        for how in ("emptied", "damaged", "removed"):
            path = os.path.join(self.dir, how)
            log.create(path)
            with log.LogWriter(path, segment_bytes=1024, max_bytes=1 << 20) as writer:
                for i in range(40):
                    writer.append(b"m%d:" % i + b"x" * 100)
            bases = log.segments(path)
            self.assertGreater(len(bases), 2)
            second = os.path.join(path, log.segment_name(bases[1]))
            with open(second, "rb") as f:
                data = f.read()
            at, ends = log.SEGMENT_HEADER, []
            while at < len(data):
                at += log.RECORD_HEADER + struct.unpack(">I", data[at + 4:at + 8])[0]
                ends.append(at)
            os.truncate(second, ends[-2] - 50)  # inside its last data record
            lock = os.path.join(path, "writer.lock")
            if how == "emptied":
                os.truncate(lock, 0)
            elif how == "damaged":
                with open(lock, "r+b") as f:
                    f.write(b"\0" * 8)
            else:
                os.unlink(lock)
            with log.LogReader(path, "r") as reader:
                with self.assertRaises(IpcError) as caught:
                    while True:
                        reader.receive(2)
                self.assertEqual(caught.exception.reason, "Corrupt", how)
                self.assertIn("a record cut short, though segment", caught.exception.detail)

    def test_a_full_stream_refuses_an_append_and_drops_nothing(self):
        path = self.stream()
        writer = log.LogWriter(path, segment_bytes=64, max_bytes=200)
        written = 0
        with self.assertRaises(IpcError) as caught:
            for i in range(100):
                writer.append(b"record %02d" % i)
                written += 1
        self.assertEqual(caught.exception.reason, "Full")
        reader = log.LogReader(path, "r")
        got = [reader.receive(1) for _ in range(written)]
        self.assertEqual(got, [b"record %02d" % i for i in range(written)])
        reader.close()  # the reader is past every record: the next append reclaims and fits
        writer.append(b"after room was made")
        writer.close()
        with log.LogReader(path, "r") as again:
            self.assertEqual(again.receive(1), b"after room was made")

    def test_a_full_stream_takes_a_close_record_of_up_to_64_bytes_and_refuses_a_larger_one(self):
        path = self.stream()
        writer = log.LogWriter(path, segment_bytes=64, max_bytes=200)
        with self.assertRaises(IpcError):
            for i in range(100):
                writer.append(b"record %02d" % i)
        with self.assertRaises(IpcError) as caught:
            writer.append(b"x" * 65, log.CLOSE)
        self.assertEqual(caught.exception.reason, "FrameTooLarge")
        writer.append(b"t" * 64, log.CLOSE)
        writer.close()
        with log.LogReader(path, "r") as reader:
            entries = []
            while True:
                try:
                    entries.append(reader.read(0.2))
                except IpcError:
                    break
        closes = [entry.payload for entry in entries if entry.kind == log.CLOSE]
        self.assertEqual(closes, [b"t" * 64])

    def test_cursor_slots(self):
        data = log.encode_cursor_slot(100, 1) + log.encode_cursor_slot(200, 2)
        self.assertEqual(log.decode_cursor(data), (200, 2))
        torn = data[:20] + b"\0" * 12
        self.assertEqual(log.decode_cursor(torn), (100, 1))
        wrapped = log.encode_cursor_slot(5, 0xFFFFFFFF) + log.encode_cursor_slot(6, 0)
        self.assertEqual(log.decode_cursor(wrapped), (6, 0))
        self.assertEqual(struct.unpack(">Q", log.WriterState(True, 0, 16, 1).encode()[12:20])[0], 0)


class HelperReview1206(TempDirCase):
    """Found by an attacker's read of the README (6 December)."""

    def test_a_reader_registered_as_a_reclaim_ends_starts_at_the_oldest_record_held_not_corrupt(self):
        # a writer's reclaim that read the cursors before the new one was there removed the segment it starts
        # in after its registration looked: the new reader's open raised Corrupt on an undamaged stream
        path = new_stream(self.dir, readers=("a",))
        with log.LogWriter(path, segment_bytes=100) as writer:
            writer.append_many([b"m%d" % i for i in range(30)])
        ahead = log.LogReader(path, "a")
        self.assertEqual([ahead.receive(1) for _ in range(20)], [b"m%d" % i for i in range(20)])
        ahead.close()
        real = log.register

        def racing(directory, name, start="start", file_mode=0o600):
            real(directory, name, start, file_mode)
            # the reclaim in flight finishes: it removes the oldest segment, as reader "a" is past it
            os.unlink(os.path.join(directory, log.segment_name(log.segments(directory)[0])))

        log.register = racing
        try:
            late = log.LogReader(path, "late")
        finally:
            log.register = real
        first = late.receive(1)
        rest = [late.receive(1) for _ in range(29 - int(first[1:]))]
        self.assertEqual([first] + rest, [b"m%d" % i for i in range(int(first[1:]), 30)])
        late.close()
        # a cursor that was there before its open, below the oldest segment, is damage: Corrupt
        log.register(path, "old")
        os.unlink(os.path.join(path, log.segment_name(log.segments(path)[0])))
        with self.assertRaises(IpcError) as caught:
            log.LogReader(path, "old").receive(1)
        self.assertEqual(caught.exception.reason, "Corrupt")

    def test_a_reader_opened_while_a_prober_shares_its_cursor_lock_opens_once_it_lets_go(self):
        path = self.stream_with(("w",), [b"one"])
        cursor = os.path.join(path, "readers", "w.cursor")
        # a prober's shared lock (flock's: per open file), let go the moment the reader has met it. Not a timed
        # holder (a shell's "sleep 0.05"): on a loaded machine that shell held it past the reader's retries
        # (PROBE_RETRY, 0.2 s), and the reader said AddressInUse
        import fcntl
        from unittest import mock
        prober = os.open(cursor, os.O_RDONLY)
        self.addCleanup(os.close, prober)
        fcntl.flock(prober, fcntl.LOCK_SH)
        real_flock, met = fcntl.flock, []

        def flock(fd, operation):
            try:
                return real_flock(fd, operation)
            except OSError:
                if not met and fd != prober and os.fstat(fd).st_ino == os.fstat(prober).st_ino:
                    met.append(operation)
                    real_flock(prober, fcntl.LOCK_UN)  # the prober is done: it lets go
                raise

        with mock.patch.object(log.fcntl, "flock", flock):
            reader = log.LogReader(path, "w")
        self.assertEqual(len(met), 1, "the reader never met the prober's lock")
        self.assertEqual(reader.receive(1), b"one")
        reader.close()
        holder = subprocess.Popen(["flock", "--exclusive", cursor, "-c", "echo held; sleep 2"], stdout=subprocess.PIPE)
        try:
            self.assertEqual(holder.stdout.readline(), b"held\n")
            with self.assertRaises(IpcError) as caught:
                log.LogReader(path, "w")
            self.assertEqual(caught.exception.reason, "AddressInUse")
        finally:
            holder.kill()
            holder.wait()
            holder.stdout.close()

    def test_a_segment_cut_short_behind_a_reader_is_corrupt_not_a_wait(self):
        path = self.stream_with(("r",), [b"job 0", b"job 1", b"job 2"])
        reader = log.LogReader(path, "r")
        self.assertEqual([reader.receive(1) for _ in range(3)], [b"job 0", b"job 1", b"job 2"])
        segment = os.path.join(path, log.segment_name(0))
        os.truncate(segment, os.path.getsize(segment) - 5)
        with self.assertRaises(IpcError) as caught:
            reader.receive(1)
        self.assertEqual(caught.exception.reason, "Corrupt")
        self.assertIn("records this reader had already read are missing", str(caught.exception))
        reader.close()

    def test_locked_files_are_their_owners_only_and_modes_others_may_write_are_refused(self):
        path = os.path.join(self.dir, "wide")
        log.create(path, readers=("w",), file_mode=0o644, dir_mode=0o755)
        mode = lambda p: os.stat(p).st_mode & 0o777
        self.assertEqual(mode(os.path.join(path, "writer.lock")), 0o600)
        self.assertEqual(mode(os.path.join(path, "readers", "w.cursor")), 0o600)
        self.assertEqual(mode(os.path.join(path, log.segment_name(0))), 0o644)
        for options in ({"file_mode": 0o666}, {"file_mode": 0o620}, {"dir_mode": 0o777}, {"file_mode": 0o400},
                        {"file_mode": 0o1777}, {"file_mode": "600"}):
            with self.assertRaises(IpcError) as caught:
                log.create(os.path.join(self.dir, "refused"), **options)
            self.assertEqual(caught.exception.reason, "InvalidOption", options)
            self.assertFalse(os.path.exists(os.path.join(self.dir, "refused")))
        with self.assertRaises(IpcError) as caught:
            log.LogWriter(path, file_mode=0o666)
        self.assertEqual(caught.exception.reason, "InvalidOption")

    def test_a_registry_held_by_a_stopped_process_never_holds_a_reclaim_back(self):
        # the registry keeps a registration and a reclaim apart; a reclaim that found it held deleted nothing, and
        # a writer whose readers kept up said Full for as long as a stopped process held it
        path = new_stream(self.dir, readers=("a",))
        with log.LogWriter(path, segment_bytes=100) as writer:
            writer.append_many([b"m%d" % i for i in range(30)])
        reader = log.LogReader(path, "a")
        for _ in range(30):
            reader.receive(1)
        reader.close()
        holder = subprocess.Popen(["flock", "--exclusive", os.path.join(path, "readers", "registry.lock"), "-c",
                                   "echo held; sleep 1"], stdout=subprocess.PIPE)
        try:
            self.assertEqual(holder.stdout.readline(), b"held\n")
            self.assertGreater(log.reclaim(path), 0)
            log.register(path, "late")  # and a registration goes on too
        finally:
            self.assertEqual(holder.wait(), 0)
            holder.stdout.close()

    def stream_with(self, readers, records):
        path = new_stream(self.dir, readers)
        with log.LogWriter(path) as writer:
            writer.append_many(records)
        return path


class SwappedWhileBuilt(TempDirCase):
    @unittest.skipUnless(hasattr(os, "fchmod") and os.open in os.supports_dir_fd, "needs fchmod and dir_fd")
    def test_a_directory_swapped_in_while_the_stream_is_built_steers_no_chmod(self):
        # create gave its files their modes by path: a user who may rename entries beside the stream swapped a
        # directory of theirs in for the one being built (as root made writer.lock), with the segment's name a link
        # to a file of root's, and the chmod followed it: that file became as wide as file_mode (0644: readable by
        # all). Real processes hit it at once (an attacker looping on renameat2); the swap is made here, in order
        from unittest import mock
        target = os.path.join(self.dir, "secret")
        with open(target, "w") as f:
            f.write("root's")
        os.chmod(target, 0o600)
        theirs = os.path.join(self.dir, "theirs")
        os.mkdir(theirs)
        os.symlink(target, os.path.join(theirs, log.segment_name(0)))
        path = os.path.join(self.dir, "stream")
        swapped = []

        def swap(name):
            if os.path.basename(name) == "writer.lock" and not swapped:
                tmp = [n for n in os.listdir(self.dir) if n.startswith("stream.") and n.endswith(".tmp")][0]
                os.rename(os.path.join(self.dir, tmp), os.path.join(self.dir, "moved"))
                os.rename(theirs, os.path.join(self.dir, tmp))
                swapped.append(tmp)

        real_os_open, real_open = os.open, open

        def os_open(name, *args, **kwargs):
            swap(name)
            return real_os_open(name, *args, **kwargs)

        def builtin_open(name, *args, **kwargs):
            swap(name)
            return real_open(name, *args, **kwargs)

        with mock.patch.object(os, "open", os_open), mock.patch.object(log, "open", builtin_open, create=True):
            try:
                log.create(path, file_mode=0o644)
            except IpcError as error:
                self.assertEqual(error.reason, "PermissionDenied", error)
        self.assertEqual(len(swapped), 1)
        self.assertEqual(os.stat(target).st_mode & 0o777, 0o600)
        self.assertFalse(os.path.exists(path))  # the directory swapped in is not renamed into place


    @unittest.skipUnless(os.open in os.supports_dir_fd, "needs dir_fd")
    def test_a_directory_swapped_in_while_the_stream_is_built_is_left_whole(self):
        # create, refusing a directory swapped in for the one it builds, removed what was at that name as a tree,
        # by path: a user who may rename entries beside the stream renames a directory of root's beside it (no
        # write permission on it needed, in one parent) to that name, and root's create removed all it held
        from unittest import mock
        important = os.path.join(self.dir, "important")
        os.mkdir(important)
        with open(os.path.join(important, "data"), "w") as f:
            f.write("root's")
        path = os.path.join(self.dir, "stream")
        swapped = []
        real_os_open = os.open

        def os_open(name, *args, **kwargs):
            if os.path.basename(str(name)) == "writer.lock" and not swapped:
                tmp = [n for n in os.listdir(self.dir) if n.startswith("stream.") and n.endswith(".tmp")][0]
                os.rename(os.path.join(self.dir, tmp), os.path.join(self.dir, "moved"))
                os.rename(important, os.path.join(self.dir, tmp))
                swapped.append(tmp)
            return real_os_open(name, *args, **kwargs)

        with mock.patch.object(os, "open", os_open):
            with self.assertRaises(IpcError) as caught:
                log.create(path)
        self.assertEqual(caught.exception.reason, "PermissionDenied")
        self.assertEqual(len(swapped), 1)
        self.assertTrue(os.path.exists(os.path.join(self.dir, swapped[0], "data")),
                        "the directory swapped in was removed")
        self.assertEqual(sorted(os.listdir(os.path.join(self.dir, swapped[0]))), ["data"])
        # what create had made in its own directory (moved away) is removed all the same
        self.assertEqual(os.listdir(os.path.join(self.dir, "moved")), [])
        self.assertFalse(os.path.exists(path))

    @unittest.skipUnless(os.open in os.supports_dir_fd, "needs dir_fd")
    def test_a_directory_of_this_user_swapped_in_before_the_stream_is_built_in_it_is_refused(self):
        # the same swap, made before create opened the directory it made: the directory swapped in is root's (the
        # owner check passes), and create made the stream's files in it and renamed it into the stream's place
        from unittest import mock
        important = os.path.join(self.dir, "important")
        os.mkdir(important)
        with open(os.path.join(important, "data"), "w") as f:
            f.write("root's")
        path = os.path.join(self.dir, "stream")
        swapped = []
        real_os_open = os.open

        def os_open(name, *args, **kwargs):
            tmp = os.path.basename(str(name))
            if tmp.startswith("stream.") and tmp.endswith(".tmp") and not swapped:
                os.rename(os.path.join(self.dir, tmp), os.path.join(self.dir, "moved"))
                os.rename(important, os.path.join(self.dir, tmp))
                swapped.append(tmp)
            return real_os_open(name, *args, **kwargs)

        with mock.patch.object(os, "open", os_open):
            with self.assertRaises(IpcError) as caught:
                log.create(path)
        self.assertEqual(caught.exception.reason, "PermissionDenied")
        self.assertEqual(len(swapped), 1)
        self.assertFalse(os.path.exists(path), "the directory swapped in was renamed into the stream's place")
        self.assertEqual(sorted(os.listdir(os.path.join(self.dir, swapped[0]))), ["data"])

class FullDisk(TempDirCase):
    """Appends on a real full filesystem (a small tmpfs) and a failing fdatasync: a typed error, and no
    record of the failed append left for readers."""

    def small_filesystem(self, size="64k"):
        if os.geteuid() != 0:
            self.skipTest("mounting a tmpfs needs root")
        mount = os.path.join(self.dir, "small")
        os.mkdir(mount)
        subprocess.check_call(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", mount])
        self.addCleanup(subprocess.call, ["umount", mount])
        return mount

    def test_an_append_on_a_full_disk_is_no_space_and_leaves_no_part_of_its_batch(self):
        mount = self.small_filesystem()
        path = os.path.join(mount, "stream")
        log.create(path, readers=("r",))
        ballast = os.path.join(mount, "ballast")
        with open(ballast, "wb") as f:
            f.write(b"x" * 16384)
        writer = log.LogWriter(path, durability="fsync")
        self.addCleanup(writer.close)
        batches = 0
        with self.assertRaises(IpcError) as caught:
            for batches in range(1000):
                writer.append_many([b"%03d-%d " % (batches, i) + b"." * 1500 for i in range(3)])
        self.assertEqual(caught.exception.reason, "NoSpace")
        self.assertGreater(batches, 0)
        # a reader gets every record of the batches that succeeded, then the failed one's records written
        # whole (a reader may have read them meanwhile: they stay), nothing torn
        reader = log.LogReader(path, "r")
        self.addCleanup(reader.close)
        got = [reader.receive(1)[:6] for _ in range(3 * batches)]
        self.assertEqual(got, [b"%03d-%d " % (b, i) for b in range(batches) for i in range(3)])
        kept = []
        with self.assertRaises(IpcError) as caught:
            while True:
                kept.append(reader.receive(0.2)[:6])
        self.assertEqual(caught.exception.reason, "Timeout")
        self.assertEqual(kept, [b"%03d-%d " % (batches, i) for i in range(len(kept))])
        self.assertLess(len(kept), 3)
        # another stream cannot be made there either: NoSpace, and nothing is left behind
        with self.assertRaises(IpcError) as caught:
            log.create(os.path.join(mount, "other"), readers=("r",))
        self.assertEqual(caught.exception.reason, "NoSpace")
        self.assertEqual(sorted(os.listdir(mount)), ["ballast", "stream"])
        # once there is room, the same writer goes on
        os.unlink(ballast)
        writer.append(b"after")
        self.assertEqual(reader.receive(1), b"after")

    def failing_sync(self, code, before=None):
        """Makes fdatasync (and fsync) fail with ``code`` until the cleanup; ``before`` runs first.
        A mock only for this: no real filesystem fails fdatasync on demand (an I/O error, a full disk
        found at writeback)."""
        real = os.fdatasync, os.fsync

        def fail(fd):
            if before is not None:
                before()
            raise OSError(code, os.strerror(code))
        os.fdatasync = os.fsync = fail

        def restore():
            os.fdatasync, os.fsync = real
        self.addCleanup(restore)
        return restore

    def test_a_failing_fdatasync_is_a_typed_error_and_keeps_what_it_wrote_whole(self):
        path = os.path.join(self.dir, "stream")
        log.create(path, readers=("r",))
        writer = log.LogWriter(path, durability="fsync", segment_bytes=64)
        self.addCleanup(writer.close)
        writer.append(b"one")
        for code, reason in ((errno.EIO, "Write"), (errno.ENOSPC, "NoSpace")):
            restore = self.failing_sync(code)
            with self.assertRaises(IpcError) as caught:
                writer.append_many([b"%s %d" % (reason.encode(), i) for i in range(3)])  # across segments too
            restore()
            self.assertEqual(caught.exception.reason, reason)
        reader = log.LogReader(path, "r")
        self.addCleanup(reader.close)
        kept = [b"one"] + [b"%s %d" % (r, i) for r in (b"Write", b"NoSpace") for i in range(3)]
        self.assertEqual([reader.receive(1) for _ in kept], kept)
        with self.assertRaises(IpcError) as caught:
            reader.receive(0.2)
        self.assertEqual(caught.exception.reason, "Timeout")
        writer.append(b"two")
        self.assertEqual(reader.receive(1), b"two")
        other = log.LogWriter(path)  # a new writer finds a clean state: nothing to repair
        other.append(b"three")
        other.close()
        self.assertEqual(other.repairs, [])
        self.assertEqual(reader.receive(1), b"three")

    def test_a_failed_append_never_reuses_offsets_a_reader_has_read(self):
        # a reader reads the failed append's record while its fdatasync runs; the next appends (one the
        # same length, one another length) must reach it: no skip, no false Corrupt, after a restart too
        path = os.path.join(self.dir, "stream")
        log.create(path, readers=("r",))
        writer = log.LogWriter(path, durability="fsync")
        self.addCleanup(writer.close)
        reader = log.LogReader(path, "r")
        writer.append(b"job 1")
        self.assertEqual(reader.receive(1), b"job 1")
        seen = []
        restore = self.failing_sync(errno.EIO, lambda: seen.append(reader.receive(1)))
        with self.assertRaises(IpcError) as caught:
            writer.append(b"job 2 (failed)")
        restore()
        self.assertEqual((caught.exception.reason, seen), ("Write", [b"job 2 (failed)"]))
        writer.append(b"job 2 (retry!)")  # the same length
        writer.append(b"job 3, another length")
        self.assertEqual([reader.receive(1), reader.receive(1)], [b"job 2 (retry!)", b"job 3, another length"])
        reader.close()
        for name in ("r", "fresh"):
            with log.LogReader(path, name) as again:
                got = []
                with self.assertRaises(IpcError) as caught:
                    while True:
                        got.append(again.receive(0.2))
                self.assertEqual(caught.exception.reason, "Timeout")
            everything = [b"job 1", b"job 2 (failed)", b"job 2 (retry!)", b"job 3, another length"]
            self.assertEqual(got, everything if name == "fresh" else [])  # r had it all: nothing again

    def test_a_batch_over_max_bytes_is_full_before_any_of_it_is_written(self):
        path = os.path.join(self.dir, "stream")
        log.create(path, readers=("r",))
        writer = log.LogWriter(path, max_bytes=4096, segment_bytes=1024)
        self.addCleanup(writer.close)
        with self.assertRaises(IpcError) as caught:
            writer.append_many([b"x" * 1000 for _ in range(5)])
        self.assertEqual(caught.exception.reason, "Full")
        with log.LogReader(path, "r") as reader:
            with self.assertRaises(IpcError) as caught:
                reader.receive(0.1)
            self.assertEqual(caught.exception.reason, "Timeout")


PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Readme(TempDirCase):
    def test_the_readmes_log_snippet_runs_as_written(self):
        with open(os.path.join(PACKAGE, "README.md"), encoding="utf-8") as f:
            readme = f.read()
        snippet = re.search(r"## The file:// log\s+```python\n(.*?)```", readme, re.S).group(1)
        script = os.path.join(self.dir, "snippet.py")
        with open(script, "w", encoding="utf-8") as f:
            f.write(snippet)
        # run in a directory of its own, its temporary files in this test's directory
        env = dict(os.environ, PYTHONPATH=PACKAGE, TMPDIR=self.dir, PYTHONDONTWRITEBYTECODE="1")
        ran = subprocess.run([sys.executable, script], cwd=self.dir, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, timeout=60)
        self.assertEqual((ran.returncode, ran.stdout), (0, b"b'job 1'\n"), ran.stderr.decode("utf-8", "replace"))


class LogKillers(TempDirCase):
    def stream(self, readers=("r",)):
        return new_stream(self.dir, readers)

    @unittest.skipUnless(os.geteuid() == 0, "needs root to give a file to another user")
    def test_a_segment_or_writer_state_of_another_user_is_permission_denied(self):
        # _open_file checked only that it is a regular file, not its owner
        path = self.stream()
        with log.LogWriter(path) as writer:
            writer.append(b"one")
        segment = os.path.join(path, log.segment_name(0))
        os.chown(segment, 65534, 65534)
        with self.assertRaises(IpcError) as caught:
            log.LogReader(path, "r")
        self.assertEqual(caught.exception.reason, "PermissionDenied")
        os.chown(segment, 0, 0)
        os.chown(os.path.join(path, "writer.lock"), 65534, 65534)
        with self.assertRaises(IpcError) as caught:
            log.LogWriter(path)
        self.assertEqual(caught.exception.reason, "PermissionDenied")

    def test_reclaim_keeps_every_segment_the_slowest_reader_has_not_read(self):
        # reclaim went by the fastest reader's cursor (max): the slow reader's records were deleted
        path = self.stream(readers=("fast", "slow"))
        with log.LogWriter(path, segment_bytes=100) as writer:
            writer.append_many([b"m%d" % i for i in range(30)])
        self.assertGreater(len(log.segments(path)), 3)
        with log.LogReader(path, "fast") as fast:
            self.assertEqual([fast.receive(1) for _ in range(30)], [b"m%d" % i for i in range(30)])
        self.assertEqual(log.reclaim(path), 0)  # "slow" is still at the start
        with log.LogWriter(path, segment_bytes=100, max_bytes=400) as writer:
            with self.assertRaises(IpcError) as caught:
                writer.append(b"no room while slow is behind")
            self.assertEqual(caught.exception.reason, "Full")
        with log.LogReader(path, "slow") as slow:
            self.assertEqual([slow.receive(1) for _ in range(30)], [b"m%d" % i for i in range(30)])

    def test_a_taken_over_stream_never_drops_a_later_segment_that_holds_records(self):
        # a writer taking over a dirty state removed a later segment as "empty, not linked yet"
        # without checking it was empty: records in it were deleted and never delivered
        path = self.stream()
        with log.LogWriter(path, segment_bytes=100) as writer:
            writer.append_many([b"r%d:" % i + b"x" * 27 for i in range(4)])
        bases = log.segments(path)
        self.assertEqual(len(bases), 2)
        first = os.path.join(path, log.segment_name(bases[0]))
        size = os.path.getsize(first) - log.RECORD_HEADER
        os.truncate(first, size)  # its end-of-segment record is lost (damage)
        with open(os.path.join(path, "writer.lock"), "r+b") as f:
            f.write(log.WriterState(False, bases[0], bases[0] + size, 999999).encode())
        second = os.path.join(path, log.segment_name(bases[1]))
        held = os.path.getsize(second)
        self.assertGreater(held, log.SEGMENT_HEADER)
        writer = log.LogWriter(path)
        self.addCleanup(writer.close)
        with self.assertRaises(IpcError) as caught:
            writer.append(b"after")
        self.assertEqual(caught.exception.reason, "Corrupt")
        self.assertEqual(os.path.getsize(second), held)  # its records are still there

    def test_a_damaged_writer_state_refuses_a_reader_registered_at_the_end(self):
        # it was registered at the oldest record: every message held would have come as new (as Node's endOffset)
        path = self.stream()
        with log.LogWriter(path) as writer:
            writer.append_many([b"m1", b"m2"])
        lock = os.path.join(path, "writer.lock")
        with open(lock, "r+b") as f:
            state = bytearray(f.read())
            state[21] ^= 0x10
            f.seek(0)
            f.write(state)
        with self.assertRaises(IpcError) as caught:
            log.register(path, "late", "end")
        self.assertEqual(caught.exception.reason, "Corrupt")
        self.assertFalse(os.path.exists(os.path.join(path, "readers", "late.cursor")))
        log.register(path, "early", "start")
        self.assertTrue(os.path.exists(os.path.join(path, "readers", "early.cursor")))



def probe(case, code, timeout=15):
    """``code``'s printed words, run in a child Python with ``IpcError`` and ``log`` imported (see
    ``helpers.run_python``)."""
    return run_python(case, code, "from effect_ipc import IpcError, log", timeout).split()


class OddFilesInTheStream(TempDirCase):
    """The files the reader and the writer's reclaim opened with open(): a FIFO blocked them for good, a
    link was followed. They are opened as _open_file does now (never following a link, never waiting on a
    FIFO); what is refused is what the Node side makes of it."""

    def stream(self, readers=("r",)):
        return new_stream(self.dir, readers)

    def test_a_fifo_at_writer_lock_never_blocks_a_reader(self):
        # LogReader.read(timeout=1) blocked for good opening writer.lock (_committed_end); an unreadable writer
        # state is none (the Node reader's rule): the records there are read, then Timeout
        path = self.stream()
        words = probe(self, """
            writer = log.LogWriter(%r)
            writer.append(b"one")
            reader = log.LogReader(%r, "r")
            os.unlink(os.path.join(%r, "writer.lock"))
            os.mkfifo(os.path.join(%r, "writer.lock"), 0o600)
            print(reader.read(timeout=1).payload.decode())
            began = time.time()
            try:
                reader.read(timeout=1)
            except IpcError as error:
                print(error.reason, round(time.time() - began, 1))
            """ % (path, path, path, path))
        self.assertEqual(words[:2], ["one", "Timeout"])
        self.assertLess(float(words[2]), 4)

    def test_registering_at_the_end_through_a_fifo_at_writer_lock_is_permission_denied(self):
        # register(start="end") blocked for good opening writer.lock; the Node side's endOffset refuses it
        path = self.stream()
        os.unlink(os.path.join(path, "writer.lock"))
        os.mkfifo(os.path.join(path, "writer.lock"), 0o600)
        words = probe(self, """
            try:
                log.LogReader(%r, "late", start="end")
            except IpcError as error:
                print(error.reason)
            """ % path)
        self.assertEqual(words, ["PermissionDenied"])
        self.assertFalse(os.path.lexists(os.path.join(path, "readers", "late.cursor")))

    def test_a_fifo_or_a_link_named_cursor_is_passed_over_by_reclaim(self):
        # an append that reclaimed blocked for good on a FIFO readers/junk.cursor, holding the stream's lock;
        # a link was followed (its cursor held space back); the Node side's cursors() passes both over
        path = self.stream()
        with log.LogWriter(path, segment_bytes=4096, max_bytes=16384) as writer:
            writer.append_many([b"x" * 1000] * 10)
        with log.LogReader(path, "r") as reader:
            self.assertEqual([len(reader.receive(1)) for _ in range(10)], [1000] * 10)
        readers = os.path.join(path, "readers")
        os.mkfifo(os.path.join(readers, "junk.cursor"), 0o600)
        elsewhere = os.path.join(self.dir, "elsewhere.cursor")
        with open(elsewhere, "wb") as f:  # a cursor at the very start: it would hold every segment back
            f.write(log.encode_cursor_slot(log.SEGMENT_HEADER, 0) + b"\0" * 20)
        os.symlink(elsewhere, os.path.join(readers, "link.cursor"))
        words = probe(self, """
            writer = log.LogWriter(%r, segment_bytes=4096, max_bytes=16384)
            began = time.time()
            for _ in range(10):
                writer.append(b"y" * 1000)
            print(round(time.time() - began, 1))
            """ % path)
        self.assertLess(float(words[0]), 4)
        self.assertNotIn(0, log.segments(path))  # reclaimed: "r" is past it, the junk was passed over
        with log.LogReader(path, "r") as reader:
            self.assertEqual([reader.receive(1) for _ in range(10)], [b"y" * 1000] * 10)


class NamesEndingInANewline(TempDirCase):
    def test_a_stray_file_named_like_a_segment_and_a_newline_is_no_segment(self):
        # _SEGMENT_NAME ended in "$", which matches before a final newline: "0000000000000000.seg\n" counted as
        # segment 0, and the writer's reclaim deleted the real segment 0 with records "slow" had not read
        path = os.path.join(self.dir, "stream")
        log.create(path, readers=["slow"])
        with log.LogWriter(path, segment_bytes=1 << 20, max_bytes=4096) as writer:
            writer.append_many([b"record %d" % i + b"." * 1000 for i in range(3)])
            with log.LogReader(path, "slow") as reader:
                self.assertEqual(reader.receive(1)[:8], b"record 0")
            held = log.segments(path)  # one record a segment: a segment is at most a quarter of max_bytes
            stray = os.path.join(path, log.segment_name(0) + "\n")
            open(stray, "wb").close()
            self.assertEqual(log.segments(path), held)
            with self.assertRaises(IpcError) as caught:
                writer.append(b"record 3" + b"." * 1000)  # near max_bytes: the writer reclaims, and "slow" is behind
            self.assertEqual(caught.exception.reason, "Full")
        self.assertTrue(os.path.exists(os.path.join(path, log.segment_name(0))))
        with log.LogReader(path, "slow") as reader:
            self.assertEqual([reader.receive(1)[:8] for _ in range(2)], [b"record 1", b"record 2"])

    def test_a_reader_name_ending_in_a_newline_is_invalid(self):
        path = os.path.join(self.dir, "stream")
        log.create(path)
        for call in (lambda: log.create(path, readers=["r\n"]), lambda: log.register(path, "r\n"),
                     lambda: log.LogReader(path, "r\n")):
            with self.assertRaises(IpcError) as caught:
                call()
            self.assertEqual(caught.exception.reason, "InvalidAddress")
        self.assertEqual(os.listdir(os.path.join(path, "readers")), [])


HOLD = """
import sys
sys.path.insert(0, %r)
from effect_ipc import log
reader = log.LogReader(%r, "r")
print("ready", flush=True)
sys.stdin.read()
"""


def descriptors():
    return len(os.listdir("/proc/self/fd"))


class TypedErrors(TempDirCase):
    def test_a_reader_of_a_missing_stream_is_not_found_as_a_writer(self):
        # LogReader raised a raw FileNotFoundError (listing the directory); LogWriter: IpcError NotFound
        missing = os.path.join(self.dir, "missing")
        for call in (lambda: log.LogReader(missing, "r"), lambda: log.LogWriter(missing),
                     lambda: log.segments(missing)):
            with self.assertRaises(IpcError) as caught:
                call()
            self.assertEqual(caught.exception.reason, "NotFound")

    @unittest.skipUnless(os.path.isdir("/proc/self/fd"), "counts descriptors in /proc/self/fd")
    def test_a_cursor_cut_short_while_another_process_holds_it_is_address_in_use_and_keeps_no_descriptor(self):
        # the pid of bytes 32..36 was unpacked from what was there: struct.error, and the descriptor leaked
        path = os.path.join(self.dir, "stream")
        log.create(path, readers=["r"])
        holder = subprocess.Popen([sys.executable, "-c", HOLD % (PACKAGE, path)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(holder.stderr.close)
        self.addCleanup(holder.stdout.close)
        self.addCleanup(holder.stdin.close)
        self.addCleanup(holder.wait, 30)
        self.addCleanup(holder.kill)
        self.assertEqual(holder.stdout.readline(), b"ready\n", holder.stderr.read(2000) if holder.poll() else "")
        os.truncate(os.path.join(path, "readers", "r.cursor"), 34)  # damage, while the other process reads
        before = descriptors()
        with self.assertRaises(IpcError) as caught:
            log.LogReader(path, "r")
        self.assertEqual(caught.exception.reason, "AddressInUse")
        self.assertEqual(descriptors(), before)
        holder.stdin.close()
        self.assertEqual(holder.wait(30), 0)
        with log.LogReader(path, "r") as reader:  # free again: slot 0 is whole
            self.assertEqual(reader.name, "r")

    @unittest.skipUnless(os.path.isdir("/proc/self/fd"), "counts descriptors in /proc/self/fd")
    def test_a_reader_that_fails_to_open_keeps_neither_a_descriptor_nor_its_name(self):
        # a damaged stream (Corrupt when seeking the cursor) left the cursor's descriptor open, and with it
        # the reader name locked: the next open in this process was AddressInUse
        path = os.path.join(self.dir, "stream")
        log.create(path, readers=["r"])
        os.unlink(os.path.join(path, log.segment_name(0)))
        before = descriptors()
        for _ in range(2):
            with self.assertRaises(IpcError) as caught:
                log.LogReader(path, "r")
            self.assertEqual(caught.exception.reason, "Corrupt")
        self.assertEqual(descriptors(), before)


class ADeadWritersDamagedTail(TempDirCase):
    """A writer taking over from a dead one looks, past a torn record's header, for a whole record inside what
    its length claims (then the length was damaged, not torn: Corrupt). It scanned a record at every marker
    byte, CRC-ing its payload from the start: quadratic (a 4 MiB damaged tail held the append, and the
    stream's lock, for minutes). The decisions are the same; the time is linear."""

    MIB4 = 4 * 1024 * 1024

    def damaged(self, tail_bytes):
        """A stream with one record and a dirty writer state (its writer died appending), then a tail past the
        committed end of a header whose length runs past the end of the file and of plausible headers, bad
        checksums and lengths that fit (the audit's repro); returns the stream and its segment."""
        path = os.path.join(self.dir, "stream")
        log.create(path)
        with log.LogWriter(path) as writer:
            writer.append(b"ok")
        with open(os.path.join(path, "writer.lock"), "r+b") as f:
            state = log.WriterState.decode(f.read(32))
            f.seek(0)
            f.write(log.WriterState(False, state.segment, state.end, 999999).encode())
        unit = struct.pack(">BBBBII", log.MARKER, log.VERSION, 0, 0, tail_bytes // 2, 0)
        segment = os.path.join(path, log.segment_name(0))
        with open(segment, "ab") as f:
            f.write(struct.pack(">BBBBII", log.MARKER, log.VERSION, 0, 0, 0xFFFFFFF0, 0))
            f.write(unit * (tail_bytes // len(unit)))
        return path, segment

    def take_over(self, path):
        """The outcome and the time of the next append, in a child killed (the test failed) after 60 s."""
        words = probe(self, """
            writer = log.LogWriter(%r)
            began = time.time()
            try:
                writer.append(b"next")
                print("appended", round(time.time() - began, 2))
                print(writer.repairs[0])
            except IpcError as error:
                print(error.reason, round(time.time() - began, 2))
                print(error.detail)
            """ % path, timeout=60)
        return words[0], float(words[1]), " ".join(words[2:])

    def test_a_torn_tail_of_4_mib_of_damage_is_cut_within_seconds(self):
        path, segment = self.damaged(self.MIB4)
        committed = log.SEGMENT_HEADER + len(log.encode_record(log.DATA, b"ok"))
        torn = os.path.getsize(segment) - committed
        outcome, took, said = self.take_over(path)
        self.assertEqual(outcome, "appended", said)
        self.assertIn("cut %d bytes of a torn record at offset %d" % (torn, committed), said)
        self.assertLess(took, 10)
        self.assertEqual(os.path.getsize(segment), committed + len(log.encode_record(log.DATA, b"next")))

    def test_a_whole_record_deep_in_4_mib_of_damage_is_corrupt_within_seconds(self):
        path, segment = self.damaged(self.MIB4)
        inside = os.path.getsize(segment) - 700 * 1024 - 5  # neither on a 12-byte unit nor on a stride
        record = log.encode_record(log.DATA, bytes(range(256)) * 2600)
        with open(segment, "r+b") as f:
            f.seek(inside)
            f.write(record)
        size = os.path.getsize(segment)
        outcome, took, said = self.take_over(path)
        self.assertEqual(outcome, "Corrupt", said)
        self.assertIn("its length runs over a whole record at offset %d" % inside, said)
        self.assertLess(took, 10)
        self.assertEqual(os.path.getsize(segment), size)  # nothing was cut

    def test_the_records_found_are_those_a_scan_at_every_marker_finds(self):
        # the old search, spelled out: _scan at every marker byte past the header; against random damage
        # holding plausible headers, whole records of every size around the checksum strides, and near misses
        import random
        rng = random.Random(20240611)
        file = os.path.join(self.dir, "tail")
        found = 0
        for case in range(300):
            size = rng.choice([13, 40, 511, 512, 513, 1030, 3000, 9000])
            data = bytearray(rng.getrandbits(8) for _ in range(size))
            data[0:2] = b"\xef\x01"
            for _ in range(rng.randint(0, 30)):
                at = rng.randrange(1, max(2, size - 11))
                if at + 12 <= size:
                    length = rng.randint(0, size - at - 12)
                    data[at:at + 12] = struct.pack(">BBBBII", log.MARKER, log.VERSION, rng.randint(0, 3),
                                                   rng.randint(0, 255), length, rng.getrandbits(32))
            if rng.random() < 0.7:
                length = rng.choice([0, 1, 255, 256, 500, 511, 512, 513, 767, 768, 1024, 2000, 2900, 8000])
                record = bytearray(log.encode_record(rng.randint(0, 2), bytes(rng.getrandbits(8)
                                                                              for _ in range(length))))
                record[3] = rng.randint(0, 255)  # the reserved byte is not checked (it is in the checksum)
                record[8:12] = struct.pack(">I", log.crc32(bytes(record[12:]), log.crc32(bytes(record[:8]))))
                if len(record) < size:
                    at = rng.choice([1, size - len(record), rng.randrange(1, size - len(record) + 1)])
                    data[at:at + len(record)] = record
                    if rng.random() < 0.3:
                        data[rng.randrange(at + 8, at + len(record))] ^= 1 << rng.randrange(8)
            data = bytes(data)
            with open(file, "wb") as f:
                f.write(data)
            fd = os.open(file, os.O_RDONLY)
            try:
                expected = next((i for i in range(1, size - log.RECORD_HEADER + 1)
                                 if data[i] == log.MARKER and log._scan(fd, i, size)[0] == "record"), None)
            finally:
                os.close(fd)
            self.assertEqual(log._record_inside(data), expected, "case %d" % case)
            found += expected is not None
        self.assertGreater(found, 50)


if __name__ == "__main__":
    unittest.main()


class CapsAndKinds(TempDirCase):
    def test_a_cap_under_the_segment_size_never_stays_full_for_a_reader_that_keeps_up(self):
        # max_bytes 1 MiB with the default 4 MiB segments: one segment for ever, nothing to reclaim, Full for good
        path = new_stream(self.dir)
        for segment_bytes, payload in ((log.DEFAULT_SEGMENT_BYTES, b"x" * 1000), (1 << 18, b"y" * 400000)):
            with log.LogWriter(path, segment_bytes=segment_bytes, max_bytes=1 << 20) as writer, \
                    log.LogReader(path, "r") as reader:
                for _ in range(2500 if len(payload) == 1000 else 12):  # past max_bytes twice over at least
                    writer.append(payload)
                    entry = reader.read(1)
                    self.assertEqual(entry.payload, payload)
                    reader.commit(entry.offset)  # the reader is at the end: the writer rotates, then reclaims
                self.assertEqual(writer.segment_bytes, 1 << 18)  # a quarter of the cap, as on the Node side

    def test_only_data_and_close_records_may_be_appended(self):
        # kind 2 (end of segment) or 7 was written, and every reader stopped there, the records after it acknowledged
        path = new_stream(self.dir)
        with log.LogWriter(path) as writer:
            writer.append(b"before")
            size = os.path.getsize(os.path.join(path, log.segment_name(0)))
            for kind in (log.END_OF_SEGMENT, 7, -1, True, 1.0, "0", None):
                for call in (lambda: writer.append(b"bad kind", kind), lambda: writer.append_many([b"a"], kind)):
                    with self.assertRaises(IpcError) as caught:
                        call()
                    self.assertEqual(caught.exception.reason, "InvalidOption")
            self.assertEqual(os.path.getsize(os.path.join(path, log.segment_name(0))), size)
            writer.append(b"after")
            writer.append(b"bye", log.CLOSE)
        with log.LogReader(path, "r") as reader:
            self.assertEqual([(e.kind, e.payload) for e in (reader.read(1) for _ in range(3))],
                             [(log.DATA, b"before"), (log.DATA, b"after"), (log.CLOSE, b"bye")])


class WriterStateCheck(TempDirCase):
    # payloads whose tails a writer that trusts a damaged end cuts as "torn": a last byte that is a marker, and
    # bytes that read as a record header running past the file
    PAYLOADS = [b"one", b"binary payload \xef",
                b"acknowledged, 21 byte" + struct.pack(">BBBBI", 0xEF, 1, 0, 0, 0x100000) + b"\0\0\0\0pad!"]

    def template(self):
        """A stream holding ``PAYLOADS``, its reader "r" registered and nothing read."""
        path = new_stream(self.dir)
        with log.LogWriter(path) as writer:
            for payload in self.PAYLOADS:
                writer.append(payload)
        return path

    def read_all(self, path):
        """What reader "r" delivers until it has nothing more (or Corrupt), and the reason it stopped."""
        got = []
        with log.LogReader(path, "r") as reader:
            while True:
                try:
                    got.append(reader.receive(0))
                except IpcError as error:
                    return got, error.reason

    def test_the_check_is_crc32_of_the_other_bytes_as_the_spec_says(self):
        data = log.WriterState(False, 1 << 40, (1 << 40) + 99, 4242).encode()
        self.assertEqual(len(data), 32)
        self.assertEqual(data[9:12], struct.pack(">I", zlib.crc32(data[0:9] + data[12:28]) & 0xFFFFFF)[1:])
        state = log.WriterState.decode(data)
        self.assertEqual((state.clean, state.segment, state.end, state.pid), (False, 1 << 40, (1 << 40) + 99, 4242))

    def test_a_flipped_bit_in_the_writer_state_never_cuts_nor_loses_a_committed_record(self):
        template = self.template()
        with open(os.path.join(template, "writer.lock"), "rb") as f:
            state = f.read(log.WRITER_STATE_SIZE)
        for bit in range(8 * log.WRITER_STATE_SIZE):
            path = os.path.join(self.dir, "flip-%d" % bit)
            shutil.copytree(template, path)
            damaged = bytearray(state)
            damaged[bit // 8] ^= 1 << (bit % 8)
            with open(os.path.join(path, "writer.lock"), "r+b") as f:
                f.write(damaged)
            expected = list(self.PAYLOADS)
            try:
                with log.LogWriter(path) as writer:
                    writer.append(b"new")
                expected.append(b"new")
            except IpcError as error:
                self.assertEqual(error.reason, "Corrupt", "bit %d" % bit)
            got, why = self.read_all(path)
            self.assertEqual(got, expected[:len(got)], "bit %d" % bit)
            self.assertEqual(why, "Timeout" if got == expected else "Corrupt", "bit %d" % bit)
            shutil.rmtree(path)

    def test_a_writer_state_without_a_check_is_taken_as_before(self):
        # written by an older version: bytes 9..11 zero
        path = self.template()
        with open(os.path.join(path, "writer.lock"), "r+b") as f:
            f.seek(9)
            f.write(b"\0\0\0")
        with log.LogWriter(path) as writer:
            writer.append(b"new")
        self.assertEqual(self.read_all(path), (self.PAYLOADS + [b"new"], "Timeout"))
        with open(os.path.join(path, "writer.lock"), "rb") as f:
            self.assertNotEqual(f.read(32)[9:12], b"\0\0\0")  # written again with its check


class WaitingFlag(TempDirCase):
    def test_a_writer_that_takes_the_lock_clears_the_waiting_flag_it_had_its_turn(self):
        # the byte after the writer state says a writer waits; a Node writer that let go of the lock for one keeps
        # letting go (for up to 50 ms) until a writer that takes the lock clears it. This writer did not: each
        # time a Node writer let go for it, the Node writer stood idle 50 ms while this one appended
        path = new_stream(self.dir)
        lock = os.path.join(path, "writer.lock")
        fd = os.open(lock, os.O_RDWR)
        self.addCleanup(os.close, fd)
        os.pwrite(fd, b"\1", log.WRITER_STATE_SIZE)  # a writer waiting for the lock (a Node one, say)
        with log.LogWriter(path) as writer:
            writer.append(b"its turn")
        self.assertEqual(os.pread(fd, 1, log.WRITER_STATE_SIZE), b"\0")


class BadOptions(TempDirCase):
    def test_bad_options_are_invalid_option_and_register_nothing(self):
        path = new_stream(self.dir, readers=())
        calls = {
            'durability="fsnyc"': lambda: log.LogWriter(path, durability="fsnyc"),
            "segment_bytes=-5": lambda: log.LogWriter(path, segment_bytes=-5),
            "segment_bytes=0": lambda: log.LogWriter(path, segment_bytes=0),
            'max_bytes="64MiB"': lambda: log.LogWriter(path, max_bytes="64MiB"),
            'start="End"': lambda: log.LogReader(path, "x1", start="End"),
            'start="latest"': lambda: log.LogReader(path, "x2", start="latest"),
            "register start=42": lambda: log.register(path, "x3", start=42),
            'create then start="latest"': lambda: log.register(path, "x4", "latest"),
        }
        for label, call in calls.items():
            with self.assertRaises(IpcError, msg=label) as caught:
                call()
            self.assertEqual(caught.exception.reason, "InvalidOption", label)
        self.assertEqual(os.listdir(os.path.join(path, "readers")), [])
        log.LogWriter(path, max_bytes=float("inf"), durability="fsync").close()  # no limit, asked for

    def test_a_users_folder_with_a_readers_folder_is_not_a_stream_and_is_left_as_it_was(self):
        folder = os.path.join(self.dir, "mine")
        os.makedirs(os.path.join(folder, "readers"))
        with open(os.path.join(folder, "readers", "alice.txt"), "w") as f:
            f.write("user data")
        for call in (lambda: log.create(folder, readers=["a"]), lambda: log.LogReader(folder, "b"),
                     lambda: log.register(folder, "c")):
            with self.assertRaises(IpcError) as caught:
                call()
            self.assertEqual(caught.exception.reason, "NotFound")
        self.assertEqual(sorted(os.listdir(folder)), ["readers"])
        self.assertEqual(os.listdir(os.path.join(folder, "readers")), ["alice.txt"])
