"""The file:// log: records, cursors, rotation, crash safety and damage."""
import os
import struct
import unittest

from helpers import TempDirCase

from effect_ipc import IpcError, log


class Log(TempDirCase):
    def stream(self, readers=("r",)):
        path = os.path.join(self.dir, "stream")
        log.create(path, readers=readers)
        return path

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

    def test_cursor_slots(self):
        data = log.encode_cursor_slot(100, 1) + log.encode_cursor_slot(200, 2)
        self.assertEqual(log.decode_cursor(data), (200, 2))
        torn = data[:20] + b"\0" * 12
        self.assertEqual(log.decode_cursor(torn), (100, 1))
        wrapped = log.encode_cursor_slot(5, 0xFFFFFFFF) + log.encode_cursor_slot(6, 0)
        self.assertEqual(log.decode_cursor(wrapped), (6, 0))
        self.assertEqual(struct.unpack(">Q", log.WriterState(True, 0, 16, 1).encode()[12:20])[0], 0)


if __name__ == "__main__":
    unittest.main()
