"""The effect-ipc frame format (version 1) for byte streams: a 6-byte header
(version 0x01, kind, payload length as u32 big-endian) and the payload.

Kinds: 0 data (one message), 1 close (the sender is done), 2 ping (answer
with a pong carrying the same payload), 3 pong."""
import struct

from .errors import IpcError

VERSION = 0x01
HEADER_SIZE = 6
DATA, CLOSE, PING, PONG = 0, 1, 2, 3
DEFAULT_MAX_FRAME_SIZE = 256 * 1024 * 1024
MAX_FRAME_SIZE = 0xFFFFFFFF

_HEADER = struct.Struct(">BBI")


def encode(kind, payload=b""):
    """One whole frame: header and payload."""
    return _HEADER.pack(VERSION, kind, len(payload)) + bytes(payload)


def header(kind, length):
    """A frame header for ``kind`` and a payload of ``length`` bytes."""
    return _HEADER.pack(VERSION, kind, length)


def _copy(buf, start, length):
    """``buf[start:start + length]`` as bytes: a large frame copied once (a slice of the bytearray, then
    bytes of it, held it three times over at once: a frame of 200 MiB raised MemoryError where two fit)."""
    if length < 65536:
        return bytes(buf[start:start + length])
    view = memoryview(buf)
    try:
        part = view[start:start + length]
        try:
            return bytes(part)
        finally:
            part.release()
    finally:
        view.release()


class Decoder(object):
    """Incremental decoder: ``feed`` bytes in any pieces, get whole frames
    ``(kind, payload)`` back. A bad version byte, an unknown kind or a length
    above ``max_frame_size`` raises ``IpcError`` (``Protocol`` /
    ``FrameTooLarge``) and the stream is dead."""

    def __init__(self, max_frame_size=DEFAULT_MAX_FRAME_SIZE):
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()
        self._failed = None

    @property
    def in_frame(self):
        """True when a frame has started but not finished."""
        return len(self._buffer) > 0

    def feed(self, chunk):
        """Decodes ``chunk``; returns the list of frames it completed."""
        if self._failed is not None:
            raise self._failed
        self._buffer.extend(chunk)
        frames = []
        buf = self._buffer
        offset = 0
        while True:
            if len(buf) - offset >= 1 and buf[offset] != VERSION:
                self._failed = IpcError(
                    "Protocol",
                    "bad frame version byte 0x%02x (expected 0x01): not an effect-ipc peer" % buf[offset],
                )
                raise self._failed
            if len(buf) - offset >= 2 and buf[offset + 1] > PONG:
                self._failed = IpcError("Protocol", "unknown frame kind %d" % buf[offset + 1])
                raise self._failed
            if len(buf) - offset < HEADER_SIZE:
                break
            _, kind, length = _HEADER.unpack_from(buf, offset)
            if length > self.max_frame_size:
                self._failed = IpcError(
                    "FrameTooLarge",
                    "a frame of %d bytes is over the limit of %d" % (length, self.max_frame_size),
                )
                raise self._failed
            if len(buf) - offset - HEADER_SIZE < length:
                break
            start = offset + HEADER_SIZE
            frames.append((kind, _copy(buf, start, length)))
            offset = start + length
        if offset:
            del buf[:offset]
        return frames
