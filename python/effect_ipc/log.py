"""The ``file://`` log format (the Node side's ``LogFormat.ts``): a stream
directory of segments holding CRC-checked records, a writer state in
``writer.lock`` and one durable cursor per named reader. ``LogWriter``
appends under the stream's ``flock`` and takes over from a writer that died
(cutting only its torn tail); ``LogReader`` delivers whole, valid records
only, from its cursor, and reports damage as ``IpcError`` reason ``Corrupt``,
never as a gap. Unix only (``fcntl``)."""
import array
import binascii
import errno
import fcntl
import logging
import os
import re
import stat
import struct
import time
import uuid

from .errors import Closed, IpcError, check_bytes, check_path, check_seconds, reason_of

log = logging.getLogger("effect_ipc.log")

# no descriptor left (this process's or the system's): room, as on the Node side, waited out by a reader
RECORD_HEADER = 12
# the most a close record carries (a session's token)
CLOSE_PAYLOAD_MAX = 64
SEGMENT_HEADER = 16
MARKER = 0xEF
VERSION = 0x01
SEGMENT_MAGIC = b"EIPCSEG1"
WRITER_MAGIC = b"EIPCWLK1"
WRITER_STATE_SIZE = 32
CURSOR_SIZE = 36
DATA, CLOSE, END_OF_SEGMENT = 0, 1, 2
DEFAULT_SEGMENT_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
_ROTATION_ROOM = RECORD_HEADER + SEGMENT_HEADER
# \Z, not $: "$" also matches before a final newline ("0000000000000000.seg\n" is not a segment)
_READER_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}\Z")
_SEGMENT_NAME = re.compile(r"^[0-9a-f]{16}\.seg\Z")


def crc32(data, value=0):
    """CRC-32 (IEEE, as zlib's)."""
    return binascii.crc32(data, value) & 0xFFFFFFFF


def segment_name(base):
    """The file name of the segment with base offset ``base``."""
    return "%016x.seg" % base


def encode_record(kind, payload=b""):
    """A whole record: marker, version, kind, reserved, length, CRC-32 of the first 8 bytes and the payload."""
    head = struct.pack(">BBBBI", MARKER, VERSION, kind, 0, len(payload))
    return head + struct.pack(">I", crc32(payload, crc32(head))) + bytes(payload)


def encode_segment_header(base):
    """A segment header: ``EIPCSEG1`` and the base offset (u64)."""
    return SEGMENT_MAGIC + struct.pack(">Q", base)


class WriterState(object):
    """The writer state of ``writer.lock``: ``clean`` (False: a writer is
    appending or died appending), the current segment's base, the committed
    end offset and the last holder's pid."""

    def __init__(self, clean, segment, end, pid):
        self.clean, self.segment, self.end, self.pid = clean, segment, end, pid

    def encode(self):
        """The 32 bytes of this state, with its check in bytes 9..11 (see ``_state_check``)."""
        head = WRITER_MAGIC + struct.pack(">B", 0 if self.clean else 1)
        tail = struct.pack(">QQI", self.segment, self.end, self.pid)
        return head + struct.pack(">I", _state_check(head + tail[:16]))[1:] + tail

    @staticmethod
    def decode(data):
        """The state in ``data``, or None when it holds none or a damaged one (its check differs; a check of 0
        is a state written before there was one, taken as it is)."""
        if len(data) < WRITER_STATE_SIZE or data[:8] != WRITER_MAGIC:
            return None
        stored = struct.unpack(">I", b"\0" + bytes(data[9:12]))[0]
        if stored != 0 and stored != _state_check(bytes(data[0:9]) + bytes(data[12:28])):
            return None
        dirty, segment, end, pid = struct.unpack(">B3xQQI", data[8:32])
        return WriterState(dirty == 0, segment, end, pid)


def _state_check(covered):
    """The 24-bit check of a writer state: CRC-32 of its bytes 0..8 and 12..27 (``covered``: not the pid, which
    only informs, so that a write of the state cut short where nothing but the pid changed is no damage), low 24
    bits."""
    return crc32(covered) & 0xFFFFFF


def encode_cursor_slot(offset, seq):
    """One cursor slot: offset (u64), sequence (u32), CRC-32 of those 12 bytes."""
    body = struct.pack(">QI", offset, seq & 0xFFFFFFFF)
    return body + struct.pack(">I", crc32(body))


def decode_cursor(data):
    """``(offset, seq)`` of the valid slot with the higher sequence, or None."""
    best = None
    for at in (0, 16):
        slot = data[at:at + 16]
        if len(slot) < 16 or crc32(slot[:12]) != struct.unpack(">I", slot[12:16])[0]:
            continue
        offset, seq = struct.unpack(">QI", slot[:12])
        if best is None or ((seq - best[1]) & 0xFFFFFFFF) < 0x80000000:
            best = (offset, seq)
    return best


def _corrupt(directory, base, offset, why):
    return IpcError("Corrupt", "corrupt record at offset %d (%s) in segment %s of %s"
                    % (offset, why, segment_name(base), os.path.basename(directory)), directory)


def _open_file(path, flags, directory):
    """Opens a file of the stream without following links or blocking on a FIFO; it must be this user's regular file."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        if error.errno == errno.ENOENT:
            raise IpcError("NotFound", "%s does not exist" % os.path.basename(path), directory)
        # a link where the file should be is refused like a file of another user's
        reason = "PermissionDenied" if error.errno == errno.ELOOP else reason_of(error, "Open")
        raise IpcError(reason, "cannot open %s: %s" % (os.path.basename(path), error), directory)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid not in (os.geteuid(), 0):
        os.close(fd)
        raise IpcError("PermissionDenied", "%s is not a regular file of this user" % os.path.basename(path), directory)
    return fd


def _read_at(fd, size, offset):
    out = b""
    while len(out) < size:
        chunk = os.pread(fd, size - len(out), offset + len(out))
        if not chunk:
            break
        out += chunk
    return out


def _write_at(fd, data, offset):
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def segments(directory):
    """The base offsets of a stream's segments, oldest first; ``IpcError`` (``NotFound`` for a
    missing stream directory) when the directory cannot be listed."""
    try:
        names = os.listdir(directory)
    except OSError as error:
        raise IpcError(reason_of(error, "Read"), "cannot list the stream: %s" % error, directory)
    return sorted(int(name[:16], 16) for name in names if _SEGMENT_NAME.match(name))


def _write_error(error, what, directory):
    """An ``OSError`` of a write as ``IpcError``, its errno picking the reason as
    on the Node side (``NoSpace`` for a full disk or quota, ...), else ``Write``."""
    return IpcError(reason_of(error, "Write"), "%s: %s" % (what, error), directory)


def _read_file(path, size, directory):
    """The first ``size`` bytes of a file of the stream, opened as ``_open_file`` does (``IpcError`` if refused)."""
    fd = _open_file(path, os.O_RDONLY, directory)
    try:
        return _read_at(fd, size, 0)
    except OSError as error:
        raise IpcError("Read", "cannot read %s: %s" % (os.path.basename(path), error), directory)
    finally:
        os.close(fd)


def _sync(fd):
    (os.fdatasync if hasattr(os, "fdatasync") else os.fsync)(fd)


def _write_new_file(path, data, mode):
    """Writes ``data`` to a new file beside ``path`` and renames it into place; on failure nothing is left."""
    tmp = "%s.%s.tmp" % (path, uuid.uuid4().hex[:12])
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        try:
            _write_at(fd, data, 0)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _scan(fd, at, size):
    """The record at file position ``at``: ("record", kind, length), ("end",), ("incomplete", length|None) or ("invalid", why)."""
    if at >= size:
        return ("end",)
    head = _read_at(fd, min(RECORD_HEADER, size - at), at)
    if len(head) < RECORD_HEADER:
        why = _implausible(head)
        return ("invalid", why) if why else ("incomplete", None)
    why = _implausible(head)
    if why:
        return ("invalid", why)
    length, crc = struct.unpack(">II", head[4:12])
    if at + RECORD_HEADER + length > size:
        return ("incomplete", length)
    payload = _read_at(fd, length, at + RECORD_HEADER)
    if len(payload) < length:
        return ("incomplete", length)
    if crc32(payload, crc32(head[:8])) != crc:
        return ("invalid", "checksum mismatch")
    return ("record", head[2], length, payload)


def _record_inside(data):
    """The first offset ``i >= 1`` of ``data`` (a torn record's header and
    the rest of its file) where a whole, valid record starts, or None: what
    ``_scan`` at every marker byte would find, in time linear in ``data``.

    A record's checksum is not computed over its payload from the start
    (that made a damaged tail of a few MiB take minutes: quadratic): the
    CRC-32 register is linear over GF(2), so the register after a payload
    follows from the registers after every ``_CRC_STRIDE`` bytes of ``data``
    (computed once), the zero-byte shift of those strides (tables) and at
    most ``2 * _CRC_STRIDE`` bytes at the payload's ends."""
    size, view, find, stride = len(data), memoryview(data), data.find, _CRC_STRIDE
    crc, fields = binascii.crc32, _LENGTH_CRC.unpack_from  # unsigned in Python 3
    states = levels = None
    i = find(b"\xef\x01", 1)  # marker, version
    while 0 <= i <= size - RECORD_HEADER:
        if data[i + 2] <= END_OF_SEGMENT:  # a kind (the reserved byte is not checked)
            length, expected = fields(data, i + 4)
            start = i + RECORD_HEADER
            end = start + length
            if end <= size:
                if length < 2 * stride:
                    value = crc(view[start:end], crc(view[i:i + 8]))
                else:
                    if states is None:
                        states = _stride_states(view)
                        levels = _shift_levels(size // stride)
                    first = -(-start // stride)  # the whole strides first..last lie inside the payload
                    last = end // stride
                    register = crc(view[start:first * stride], crc(view[i:i + 8])) ^ _MASK
                    register = _shift(register ^ states[first], last - first, levels) ^ states[last]
                    value = crc(view[last * stride:end], register ^ _MASK)
                if value == expected:
                    return i
        i = find(b"\xef\x01", i + 1)
    return None


# The CRC-32 register (zlib's, without its inversions before and after) is linear over GF(2) in the register
# and the bytes: the register after bytes m from register s is shift(s, len(m)) ^ register(0, m), where
# shift(s, n) is s after n zero bytes, a linear map (32 x 32 bits) that _shift applies from tables.
_MASK = 0xFFFFFFFF
_CRC_STRIDE = 256
_LENGTH_CRC = struct.Struct(">II")
_SHIFT_LEVELS = []  # level p, value v: the tables of the shift by v * 16**p strides (see _shift)


def _stride_states(view):
    """The registers (from 0) after the first k * _CRC_STRIDE bytes of ``view``, for every k."""
    states = array.array("L", [0])
    register = 0
    for at in range(_CRC_STRIDE, len(view) + 1, _CRC_STRIDE):
        register = crc32(view[at - _CRC_STRIDE:at], register ^ _MASK) ^ _MASK
        states.append(register)
    return states


def _linear_map(images):
    """The tables of the linear map of 32-bit values sending bit j to ``images[j]``: one per byte of the value."""
    tables = []
    for byte in range(4):
        table = [0] * 256
        for x in range(1, 256):
            low = x & -x
            table[x] = table[x ^ low] ^ images[8 * byte + low.bit_length() - 1]
        tables.append(table)
    return tables


def _map(tables, value):
    t0, t1, t2, t3 = tables
    return t0[value & 255] ^ t1[(value >> 8) & 255] ^ t2[(value >> 16) & 255] ^ t3[value >> 24]


def _shift_levels(strides):
    """The shift tables (_SHIFT_LEVELS) for any number of strides up to ``strides``, built once."""
    global _SHIFT_LEVELS
    levels = _SHIFT_LEVELS
    count = (max(strides, 1).bit_length() + 3) // 4
    if len(levels) >= count:
        return levels
    levels = list(levels)
    if levels:
        one = levels[-1][1]
        images = [_map(one, _map(levels[-1][15], 1 << bit)) for bit in range(32)]
    else:
        images = [crc32(b"\0" * _CRC_STRIDE, (1 << bit) ^ _MASK) ^ _MASK for bit in range(32)]
    while len(levels) < count:
        level = [None, _linear_map(images)]
        for _ in range(2, 16):
            images = [_map(level[1], image) for image in images]
            level.append(_linear_map(images))
        images = [_map(level[1], image) for image in images]  # 16 * 16**p strides: the next level's one
        levels.append(level)
    _SHIFT_LEVELS = levels  # whole, at once (other threads use the list they read)
    return levels


def _shift(register, strides, levels):
    """The CRC-32 register ``register`` after ``strides * _CRC_STRIDE`` zero bytes."""
    level = 0
    while strides:
        if strides & 15:
            register = _map(levels[level][strides & 15], register)
        strides >>= 4
        level += 1
    return register


def _implausible(head):
    if len(head) > 0 and head[0] != MARKER:
        return "bad marker byte 0x%x" % head[0]
    if len(head) > 1 and head[1] != VERSION:
        return "unknown record version %d" % head[1]
    if len(head) > 2 and head[2] > END_OF_SEGMENT:
        return "unknown record kind %d" % head[2]
    return None


def create(directory, readers=(), file_mode=0o600, dir_mode=0o700):
    """Creates the stream ``directory`` unless it exists (built aside, then
    renamed into place) and registers ``readers`` (names) at its start."""
    directory = check_path(directory, "the stream directory")
    # a name given alone (a str is iterable: "worker" registered five one-letter readers, each holding the
    # stream back for good) or a generator (used up by the check: nothing was registered)
    if isinstance(readers, (str, bytes)):
        raise IpcError("InvalidOption", "readers %r is not a list of reader names (readers=[%r])"
                       % (readers, readers), directory)
    readers = list(readers)
    for name in readers:
        _check_name(directory, name)
    _check_modes(directory, file_mode, dir_mode)
    if not os.path.exists(directory):
        try:
            _create_aside(directory, file_mode, dir_mode)
        except OSError as error:
            raise _write_error(error, "cannot create the stream", directory)
    for name in readers:
        register(directory, name, "start", file_mode)


# a prober (``file inspect``, ``Log.stats``) shares a lock for microseconds: a take that meets one tries again
PROBE_RETRY = 0.2


def _lock_retrying_probes(fd):
    """Takes ``fd``'s lock exclusively; False when it stays held for ``PROBE_RETRY`` (its holder is real)."""
    deadline = time.monotonic() + PROBE_RETRY
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                raise
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)


def _check_modes(directory, file_mode=None, dir_mode=None):
    """``InvalidOption`` for a mode that is not permission bits, lets others write, or keeps this user out."""
    for option, mode, own in (("file_mode", file_mode, 0o600), ("dir_mode", dir_mode, 0o700)):
        if mode is None:
            continue
        if not isinstance(mode, int) or isinstance(mode, bool) or mode < 0 or mode > 0o777:
            why = "is not permission bits (an integer from 0 to 0o777)"
        elif mode & 0o022:
            why = "lets other users write what the stream makes (group or other write bits are refused)"
        elif mode & own != own:
            why = "does not give this user %s access" % ("read and write" if own == 0o600 else "read, write and search")
        else:
            continue
        raise IpcError("InvalidOption", "%s %s %s" % (option, oct(mode) if isinstance(mode, int) else repr(mode), why),
                       directory)


def _check_name(directory, name):
    """``InvalidAddress`` for a reader name that is not one (not a str, or not 1 to 64 of ``A-Za-z0-9._-``)."""
    if not isinstance(name, str) or not _READER_NAME.match(name):
        raise IpcError("InvalidAddress", "bad reader name %r" % (name,), directory)


def _check_size(directory, option, value):
    """``InvalidOption`` for a size that is not a whole number of at least 1 (or ``math.inf``: no limit), as the
    Node side's ``checkSizes``."""
    if isinstance(value, bool) or not (isinstance(value, int) and value >= 1 or value == float("inf")):
        raise IpcError("InvalidOption", "%s %r is not a whole number of at least 1 (or math.inf: no limit)"
                       % (option, value), directory)


def _check_start(directory, start):
    """``InvalidOption`` for a reader's ``start`` that is neither ``"start"`` nor ``"end"``."""
    if not isinstance(start, str) or start not in ("start", "end"):
        raise IpcError("InvalidOption", "start %r is not one of start, end" % (start,), directory)


def _locked_mode(file_mode):
    """A locked file (``writer.lock``, a cursor) is its owner's only, whatever ``file_mode`` says: a process that
    can open it can hold its lock, and hold every writer or reader out."""
    return file_mode & 0o600


def _create_aside(directory, file_mode, dir_mode):
    """Builds the stream beside ``directory`` and renames it into place; on failure nothing is left. What is in it
    is made through a descriptor of the directory made, each file given its mode through its own descriptor (as
    the Node side does): a user who may rename entries beside ``directory`` can swap a directory of theirs in, with
    a link in it that a chmod by path would follow (to a file of root's, made as wide as ``file_mode``)."""
    tmp = "%s.%s.tmp" % (directory, uuid.uuid4().hex[:12])
    os.mkdir(tmp, dir_mode)
    fd = None
    made = []  # what was made in it, to remove through ``fd`` unless it was renamed into place
    try:
        fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC)
        held = os.fstat(fd)
        if held.st_uid != os.geteuid():
            raise IpcError("PermissionDenied", "%s was replaced as the stream was built in it (now owned by uid %d): "
                           "another user may rename entries beside it" % (tmp, held.st_uid), directory)
        # the directory just made is empty: one of this user's swapped in (root's, beside it: renaming it there
        # needs no write permission on it) was filled and renamed into the stream's place
        if os.listdir(fd):
            raise IpcError("PermissionDenied", "%s was replaced as the stream was built in it (by a directory that "
                           "holds files): another user may rename entries beside it" % tmp, directory)
        os.mkdir("readers", dir_mode, dir_fd=fd)
        made.append("readers")
        _create_file_at(fd, segment_name(0), encode_segment_header(0), file_mode, made)
        _create_file_at(fd, "writer.lock", WriterState(True, 0, SEGMENT_HEADER, os.getpid()).encode(),
                        _locked_mode(file_mode), made)
        now = os.lstat(tmp)
        if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
            raise IpcError("PermissionDenied", "%s was replaced as the stream was built in it: another user may "
                           "rename entries beside it" % tmp, directory)
        try:
            os.rename(tmp, directory)
            made = None
        except OSError as error:
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
    finally:
        # not renamed into place: what was made goes through the descriptor, then the directory by path if empty
        # (a tree removal by path removed whatever another user had swapped in under that name since: a
        # directory of root's beside it, with all it held)
        if made is not None:
            for name in reversed(made):
                try:
                    if name == "readers":
                        os.rmdir(name, dir_fd=fd)
                    else:
                        os.unlink(name, dir_fd=fd)
                except OSError:
                    pass
            try:
                os.rmdir(tmp)
            except OSError:
                pass
        if fd is not None:
            os.close(fd)


def _create_file_at(dir_fd, name, data, mode, made):
    """Creates ``name`` in the directory open at ``dir_fd`` (never through a link) holding ``data``, with exactly
    the permission bits ``mode`` (the umask only narrows: set through the file's descriptor, never by path); once
    made, ``name`` is added to ``made``."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC, mode, dir_fd=dir_fd)
    made.append(name)
    try:
        os.fchmod(fd, mode)
        _write_at(fd, data, 0)
    finally:
        os.close(fd)


def register(directory, name, start="start", file_mode=0o600):
    """Registers reader ``name`` at the ``start`` (oldest record held) or ``end`` of the stream, unless it exists."""
    directory = check_path(directory, "the stream directory")
    _check_name(directory, name)
    _check_modes(directory, file_mode)
    _check_start(directory, start)
    path = os.path.join(directory, "readers", name + ".cursor")
    if os.path.lexists(path):  # whatever it is (a link, a FIFO): opening it as the cursor refuses it
        return
    # a folder that is not a stream (no segment: NotFound) is refused before the registry lock is made in it
    _oldest(directory)
    _with_registry(directory, True, file_mode, lambda: _register_now(directory, name, start, file_mode))


# how long a registration waits for a reclaim in progress, and a reclaim for a registration, before going on
# without the registry: each holds it for microseconds, so only a holder stopped mid-way is waited out
_REGISTRATION_WAIT = 0.02
_RECLAIM_WAIT = 0.005
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _with_registry(directory, exclusive, file_mode, f):
    """Runs ``f`` holding the stream's registry lock (``readers/registry.lock``, the Node side's): exclusive for
    a registration, shared for a reclaim. A reclaim reads the cursors and then deletes segments: a cursor linked
    between the two was not counted, and the segment it starts in could go. Each waits a moment for the other,
    and then, or where the lock cannot be had at all (another user's file), ``f`` runs without it: never a
    hang, never a reclaim held back."""
    path = os.path.join(directory, "readers", "registry.lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC, _locked_mode(file_mode))
    except OSError:
        return f()
    try:
        deadline = time.monotonic() + (_REGISTRATION_WAIT if exclusive else _RECLAIM_WAIT)
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                    break
            if time.monotonic() >= deadline:
                break
            time.sleep(0.0005)
        return f()
    finally:
        os.close(fd)  # releases the lock


def _register_now(directory, name, start, file_mode):
    path = os.path.join(directory, "readers", name + ".cursor")
    offset = _oldest(directory)
    if start == "end":
        # never through a link, never blocking on a FIFO: refused with IpcError, as the Node side's endOffset
        state = WriterState.decode(_read_file(os.path.join(directory, "writer.lock"), WRITER_STATE_SIZE, directory))
        if state is None:
            # a stream is made with one: from the oldest record, every message held would come as new
            raise IpcError("Corrupt", "the writer state (writer.lock) is unreadable or damaged: the end is unknown "
                           "(a reader from the start can read)", directory)
        offset = state.end
    _write_cursor(directory, name, offset, file_mode, replace=False)
    # a writer that reclaimed segments before the cursor was there may have removed the one it starts in: it
    # starts at the oldest record held then (from now on the cursor holds its segment back), as the Node side's
    for _ in range(8):
        oldest = _oldest(directory)
        try:
            cursor = decode_cursor(_read_file(path, CURSOR_SIZE, directory))
        except IpcError:
            return
        if cursor is None or cursor[1] != 0 or not cursor[0] < oldest - SEGMENT_HEADER - RECORD_HEADER:
            return
        _write_cursor(directory, name, oldest, file_mode, replace=True)


def _oldest(directory):
    """The offset of the oldest record the stream holds (its oldest segment's first)."""
    bases = segments(directory)
    if not bases:
        raise IpcError("NotFound", "the stream has no segments", directory)
    return bases[0] + SEGMENT_HEADER


def _write_cursor(directory, name, offset, file_mode, replace):
    """Makes reader ``name``'s cursor at ``offset`` (its owner's only): linked in place, never over one another
    process made meanwhile, or, with ``replace``, renamed over the one there."""
    path = os.path.join(directory, "readers", name + ".cursor")
    data = encode_cursor_slot(offset, 0) + b"\0" * (CURSOR_SIZE - 16)
    tmp = "%s.%s.tmp" % (path, uuid.uuid4().hex[:12])
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, _locked_mode(file_mode))
        try:
            try:
                os.fchmod(fd, _locked_mode(file_mode))  # the umask narrows, never widens: exactly this
                _write_at(fd, data, 0)
            finally:
                os.close(fd)
            if replace:
                os.rename(tmp, path)
                return
            try:
                os.link(tmp, path)  # never overwrites a cursor another process made meanwhile
            except OSError as error:
                if error.errno != errno.EEXIST:
                    raise
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)
    except OSError as error:
        raise _write_error(error, "cannot register reader %s" % name, directory)


def _cursor_offsets(directory):
    """The committed offsets of the readers' cursors. A ``*.cursor`` that cannot be read as one (removed
    meanwhile, a link, a FIFO, another user's file) is passed over, as the Node side's ``cursors`` does:
    it is never followed nor waited on (the writer reclaims holding the stream's lock)."""
    out = []
    folder = os.path.join(directory, "readers")
    try:
        names = os.listdir(folder)
    except OSError:
        return out
    for name in names:
        if name.endswith(".cursor"):
            try:
                cursor = decode_cursor(_read_file(os.path.join(folder, name), CURSOR_SIZE, directory))
            except (IpcError, OSError):
                continue
            if cursor is not None:
                out.append(cursor[0])
    return out


def reclaim(directory):
    """Deletes the segments every registered reader is past (never the last one); returns the bytes freed."""
    directory = check_path(directory, "the stream directory")
    # after any registration under way, whose cursor may not be readable yet
    return _with_registry(directory, False, 0o600, lambda: _reclaim_now(directory))


def _readers_now(directory):
    """What ``readers/`` holds now (None when it cannot be listed)."""
    try:
        return sorted(os.listdir(os.path.join(directory, "readers")))
    except OSError:
        return None


def _reclaim_now(directory):
    bases = segments(directory)
    readers = _readers_now(directory)
    offsets = _cursor_offsets(directory)
    if len(bases) < 2 or not offsets:
        return 0
    low, freed = min(offsets), 0
    for i in range(len(bases) - 1):
        if bases[i + 1] > low:
            break
        # a reader registered since the cursors were read (its registration went on without the registry)
        # holds back what it starts in: this reclaim stops, the next one counts it (the Node side's rule)
        if _readers_now(directory) != readers:
            break
        os.unlink(os.path.join(directory, segment_name(bases[i])))
        freed += bases[i + 1] - bases[i]
    return freed


class LogWriter(object):
    """The writing end of a stream (which must exist: see ``create``). Each
    ``append`` takes the stream's writer lock (``flock``), takes over from a
    writer that died (its torn tail is cut; committed records are never cut:
    ``Corrupt`` instead), writes one record and releases the lock with a
    clean state. ``durability="fsync"`` also waits for the disk. An append
    that would pass ``max_bytes`` (after reclaiming what readers are past)
    raises ``IpcError`` reason ``Full`` (a batch that would: before writing
    any of it): nothing is dropped. On a full disk an append (also one that
    starts a new segment) raises ``IpcError`` reason ``NoSpace``, leaves
    nothing torn for readers, and the next append, once there is space, goes
    on. An append that fails writing (also a failed ``fdatasync``: ``Write``,
    or ``NoSpace``) cuts only its torn tail: the records it wrote whole stay
    in the stream (a reader may already have read them; offsets are never
    reused), so it may have been delivered, and a retry may deliver twice."""

    def __init__(self, directory, segment_bytes=DEFAULT_SEGMENT_BYTES, max_bytes=DEFAULT_MAX_BYTES,
                 durability="os", lock_timeout=10.0, file_mode=0o600):
        directory = check_path(directory, "the stream directory")
        _check_modes(directory, file_mode)
        _check_size(directory, "segment_bytes", segment_bytes)
        _check_size(directory, "max_bytes", max_bytes)
        if durability not in ("os", "fsync"):
            raise IpcError("InvalidOption", "durability %r is not one of os, fsync" % (durability,), directory)
        check_seconds(lock_timeout, "lock_timeout", directory, optional=False)
        self.directory = directory
        # at most a quarter of the cap, as on the Node side: a segment is reclaimed only once a later one exists,
        # so a cap under one segment never let a second start, and the stream stayed full for good (at least 1:
        # the batch check in append_many divides by it)
        self.segment_bytes = max(1, min(segment_bytes, max_bytes // 4))
        self.max_bytes = max_bytes
        self.durability = durability
        self.lock_timeout = lock_timeout
        self.file_mode = file_mode
        self.repairs = []
        self._lock_fd = _open_file(os.path.join(directory, "writer.lock"), os.O_RDWR, directory)
        self._seg_fd = -1
        self._seg_base = -1
        self._end = 0
        self._closed = False

    def _lock(self):
        deadline = time.time() + self.lock_timeout
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                    raise
            try:
                os.pwrite(self._lock_fd, b"\1", WRITER_STATE_SIZE)  # tell the holder a writer waits
            except OSError:
                pass
            if time.time() > deadline:
                raise IpcError("Timeout", "the writer lock was held for more than %s s" % self.lock_timeout,
                               self.directory)
            time.sleep(0.002)

    def _open_segment(self, base):
        try:
            fd = _open_file(os.path.join(self.directory, segment_name(base)), os.O_RDWR, self.directory)
        except IpcError as error:
            if error.reason == "NotFound":
                raise _corrupt(self.directory, base, base, "the segment the writer state names is missing")
            raise
        if self._seg_fd >= 0:
            os.close(self._seg_fd)
        self._seg_fd, self._seg_base = fd, base

    def _write_state(self, clean):
        _write_at(self._lock_fd, WriterState(clean, self._seg_base, self._end, os.getpid()).encode(), 0)

    def _take_over(self):
        data = _read_at(self._lock_fd, WRITER_STATE_SIZE + 1, 0)
        if data[WRITER_STATE_SIZE:] == b"\1":
            # the waiting flag: this writer has had its turn (a Node writer that let go for it lets go until then)
            try:
                os.pwrite(self._lock_fd, b"\0", WRITER_STATE_SIZE)
            except OSError:
                pass
        state = WriterState.decode(data[:WRITER_STATE_SIZE])
        if state is None:
            raise IpcError("Corrupt", "the writer state (writer.lock) is unreadable or damaged: the committed end "
                           "is unknown", self.directory)
        if state.segment != self._seg_base:
            self._open_segment(state.segment)
        size = os.fstat(self._seg_fd).st_size
        if not state.clean or size != state.end - state.segment:
            self._recover(state, size)
        else:
            self._end = state.end
        self._write_state(False)

    def _recover(self, state, size):
        """After a writer died: keep whole records past the committed end, cut only a torn tail."""
        bases = segments(self.directory)
        base = state.segment
        if size < state.end - base:
            raise _corrupt(self.directory, base, base + size,
                           "committed records are missing: the segment ends at offset %d, the writer state records %d"
                           % (base + size, state.end))
        at = max(state.end - base, SEGMENT_HEADER)
        file_size = size
        while True:
            scan = _scan(self._seg_fd, at, file_size)
            if scan[0] == "record":
                at += RECORD_HEADER + scan[2]
                if scan[1] != END_OF_SEGMENT:
                    continue
                following = base + at
                path = os.path.join(self.directory, segment_name(following))
                if not os.path.exists(path):
                    _write_new_file(path, encode_segment_header(following), self.file_mode)
                    self.repairs.append("created segment %s that a dead writer announced" % segment_name(following))
                self._open_segment(following)
                base, at = following, SEGMENT_HEADER
                file_size = os.fstat(self._seg_fd).st_size
                continue
            if scan[0] == "invalid":
                raise _corrupt(self.directory, base, base + at, scan[1])
            if scan[0] == "incomplete" and scan[1] is not None:
                inside = self._record_inside(at, file_size)
                if inside is not None:
                    raise _corrupt(self.directory, base, base + at,
                                   "its length runs over a whole record at offset %d" % (base + inside))
            break
        unlinked = []
        for other in bases:
            if other <= base:
                continue
            path = os.path.join(self.directory, segment_name(other))
            if other != base + at + RECORD_HEADER or os.stat(path).st_size > SEGMENT_HEADER:
                raise _corrupt(self.directory, base, base + at,
                               "segment %s follows a segment that has no end-of-segment record" % segment_name(other))
            unlinked.append(path)
        if at < file_size:
            os.ftruncate(self._seg_fd, at)
            self.repairs.append("cut %d bytes of a torn record at offset %d (a writer died in the middle of a write)"
                                % (file_size - at, base + at))
        for path in unlinked:
            os.unlink(path)
            self.repairs.append("removed the empty segment %s a dead writer had not linked yet"
                                % os.path.basename(path))
        self._end = base + at

    def _record_inside(self, at, size):
        inside = _record_inside(_read_at(self._seg_fd, size - at, at))
        return None if inside is None else at + inside

    def _rotate(self):
        eos = encode_record(END_OF_SEGMENT)
        following = self._end + len(eos)
        path = os.path.join(self.directory, segment_name(following))
        try:
            _write_new_file(path, encode_segment_header(following), self.file_mode)
        except OSError as error:
            raise _write_error(error, "cannot start segment %s" % segment_name(following), self.directory)
        try:
            _write_at(self._seg_fd, eos, self._end - self._seg_base)
        except OSError as error:
            os.ftruncate(self._seg_fd, self._end - self._seg_base)  # the log stays whole
            os.unlink(path)
            raise _write_error(error, "cannot end segment %s" % segment_name(self._seg_base), self.directory)
        self._open_segment(following)
        self._end = following + SEGMENT_HEADER

    def _fits(self, size):
        def room():
            bases = segments(self.directory)
            return self._end + size + _ROTATION_ROOM - (bases[0] if bases else 0) <= self.max_bytes

        if room():
            return True
        reclaim(self.directory)
        if room():
            return True
        # the current segment goes only once a later one exists: when every registered reader has read it all,
        # the next one starts now and what they are past is reclaimed (the Node writer's rule in ``fits``)
        readers = _cursor_offsets(self.directory)
        if self._end > self._seg_base + SEGMENT_HEADER and readers and all(o >= self._end for o in readers):
            self._rotate()
            reclaim(self.directory)
        return room()

    def append(self, payload, kind=DATA):
        """Appends one record (bytes); returns once it is in the file (on disk with ``fsync``). ``Encode`` for a
        payload that is not bytes, a bytearray or a memoryview."""
        self.append_many([payload], kind)

    def append_many(self, payloads, kind=DATA):
        """Appends several records under one lock, in order. ``Full`` is
        raised before any is written; a write or ``fdatasync`` that fails keeps
        the records written whole before it (see the class). ``Encode`` for a payload that is not bytes, a
        bytearray or a memoryview (nothing of the batch is written), or ``payloads`` not an iterable."""
        if self._closed:
            raise Closed("the writer is closed", self.directory)
        # read once, here: a generator (or any iterator) was used up by the size check, and nothing was written
        try:
            items = iter(payloads)
        except TypeError:
            raise IpcError("Encode", "append_many takes an iterable of bytes (got %s)" % type(payloads).__name__,
                           self.directory)
        payloads = [check_bytes(payload, "append", self.directory) for payload in items]
        # an end-of-segment record (or an unknown kind) would stop every reader there: only data and close
        if not isinstance(kind, int) or isinstance(kind, bool) or kind not in (DATA, CLOSE):
            raise IpcError("InvalidOption", "kind %r is not DATA (0) or CLOSE (1)" % (kind,), self.directory)
        if kind == CLOSE and any(len(payload) > CLOSE_PAYLOAD_MAX for payload in payloads):
            # written past a full stream's cap: it stays small
            raise IpcError("FrameTooLarge", "a close record carries at most %d bytes" % CLOSE_PAYLOAD_MAX,
                           self.directory)
        self._lock()
        clean = succeeded = False
        try:
            try:
                self._take_over()
            except OSError as error:
                raise _write_error(error, "cannot take over the stream", self.directory)
            try:
                total = sum(RECORD_HEADER + len(p) for p in payloads)
                # room for the rotations the batch may make too (_fits counts one): no record is
                # refused half-way, after others were written
                if kind != CLOSE and not self._fits(total + _ROTATION_ROOM * (total // self.segment_bytes)):
                    raise IpcError("Full", "the stream holds %d bytes, its limit: readers are behind"
                                   % self.max_bytes, self.directory)
                self._append_records(payloads, kind)
                if self.durability == "fsync":
                    try:
                        _sync(self._seg_fd)
                    except OSError as error:
                        raise _write_error(error, "cannot flush the stream to disk (fdatasync)", self.directory)
            except BaseException:
                try:
                    self._cut_torn()
                except (OSError, IpcError):
                    pass  # the state stays dirty: the next writer takes over (cutting only a torn tail)
                else:
                    clean = True
                raise
            clean = succeeded = True
        finally:
            try:
                if clean:
                    self._write_state(True)
            except OSError as error:
                if succeeded:  # else the append's own error goes on (the next writer takes over)
                    raise _write_error(error, "cannot record the stream's end in writer.lock", self.directory)
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _append_records(self, payloads, kind):
        for payload in payloads:
            record = encode_record(kind, payload)
            if kind != CLOSE and not self._fits(len(record)):
                raise IpcError("Full", "the stream holds %d bytes, its limit: readers are behind"
                               % self.max_bytes, self.directory)
            start = self._end
            if start - self._seg_base >= self.segment_bytes and start > self._seg_base + SEGMENT_HEADER:
                self._rotate()
            at = self._end
            try:
                _write_at(self._seg_fd, record, at - self._seg_base)
            except OSError as error:
                raise _write_error(error, "cannot append to the stream", self.directory)
            self._end = at + len(record)

    def _cut_torn(self):
        """After a failed write or ``fdatasync``: cuts only the torn tail (the
        part of a record the failed write left), as a writer taking over from
        one that died does. The records this append wrote whole stay: a reader
        may already have read them, and an offset a reader has read is never
        written again (the next record there would be skipped, or misread as
        damage). The Node writer does the same (``undo`` cuts the partial
        record; a failed ``fdatasync`` keeps the record)."""
        at = self._end - self._seg_base
        if os.fstat(self._seg_fd).st_size > at:
            os.ftruncate(self._seg_fd, at)

    def close(self, goodbye=False):
        """Closes the writer; with ``goodbye`` it first appends a close record (the writer said goodbye)."""
        if self._closed:
            return
        if goodbye:
            self.append(b"", CLOSE)
        self._closed = True
        for fd in (self._seg_fd, self._lock_fd):
            if fd >= 0:
                os.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Entry(object):
    """One record read: ``kind`` (DATA or CLOSE), ``payload`` and ``offset`` (the offset right after it)."""

    def __init__(self, kind, payload, offset):
        self.kind, self.payload, self.offset = kind, payload, offset

    def __repr__(self):
        return "Entry(kind=%d, payload=%r, offset=%d)" % (self.kind, self.payload, self.offset)


class LogReader(object):
    """Reader ``name`` of a stream, from its durable cursor (registered at
    ``start`` if new). One process at a time per name (``AddressInUse``).
    A record counts as handled when the next one is asked for or the reader
    closes: a restarted reader neither skips nor repeats (a reader killed
    while handling a record gets it again). Damage is ``Corrupt``."""

    def __init__(self, directory, name, start="start", poll_interval=0.01, file_mode=0o600):
        directory = check_path(directory, "the stream directory")
        _check_name(directory, name)
        check_seconds(poll_interval, "poll_interval", directory, positive=True)
        self.directory = directory
        self.name = name
        self.poll_interval = poll_interval
        self._cursor_fd = -1
        self._seg_fd = -1
        self._closed = True  # until it is open: close() then releases what a failed open took
        path = os.path.join(directory, "readers", name + ".cursor")
        registered_here = not os.path.lexists(path)
        register(directory, name, start, file_mode)
        self._cursor_fd = _open_file(path, os.O_RDWR, directory)
        try:
            if not _lock_retrying_probes(self._cursor_fd):
                data = _read_at(self._cursor_fd, CURSOR_SIZE, 0)
                # the pid is informational: a cursor cut short (damage) names none (the Node side's cursorOwner)
                owner = struct.unpack(">I", data[32:36])[0] if len(data) >= CURSOR_SIZE else 0
                raise IpcError("AddressInUse", "reader %s is in use by another process%s"
                               % (name, " (pid %d)" % owner if owner else ""), directory)
            cursor = decode_cursor(_read_at(self._cursor_fd, CURSOR_SIZE, 0))
            if cursor is None:
                raise IpcError("Decode", "the cursor of reader %s is unreadable" % name, directory)
            os.pwrite(self._cursor_fd, struct.pack(">I", os.getpid()), 32)
            self._committed, self._seq = cursor
            self._pending = None
            self._starved = False  # the last read found no descriptor free (warned once until one is)
            self._state = None  # the writer state last read
            self._seg_base = -1
            self._pos = 0
            for attempt in range(8):
                try:
                    self._seek(self._committed)
                    break
                except IpcError as error:
                    # registered by this open, never read: a writer's reclaim that began before the cursor was
                    # there removed the segment it starts in; it starts at the oldest record held now, as
                    # registering at the start means (a cursor that was there before is damage: Corrupt)
                    if not (registered_here and self._seq == 0 and error.reason in ("Corrupt", "NotFound")
                            and attempt < 7):
                        raise
                    bases = segments(directory)
                    oldest = bases[0] + SEGMENT_HEADER if bases else None
                    if oldest is None or self._committed >= oldest:
                        raise
                    self._committed = oldest
                    os.pwrite(self._cursor_fd, encode_cursor_slot(oldest, 0), 0)
        except BaseException as error:
            self._release()  # the cursor's descriptor, and with it the reader name, is never kept by a failed open
            if isinstance(error, OSError):
                raise IpcError("Open", "cannot open reader %s: %s" % (name, error), directory)
            raise
        self._closed = False

    def _seek(self, offset):
        bases = [b for b in segments(self.directory) if b <= offset]
        if not bases:
            raise _corrupt(self.directory, offset, offset, "no segment holds the cursor's offset")
        self._open_segment(bases[-1])
        self._pos = offset - self._seg_base

    def _open_segment(self, base):
        fd = _open_file(os.path.join(self.directory, segment_name(base)), os.O_RDONLY, self.directory)
        if _read_at(fd, SEGMENT_HEADER, 0) != encode_segment_header(base):
            os.close(fd)
            raise _corrupt(self.directory, base, base, "the segment header is damaged")
        if self._seg_fd >= 0:
            os.close(self._seg_fd)
        self._seg_fd, self._seg_base, self._pos = fd, base, SEGMENT_HEADER

    def _committed_end(self):
        try:
            # never through a link nor blocking on a FIFO; what cannot be read is no state (the Node reader's rule)
            state = WriterState.decode(_read_file(os.path.join(self.directory, "writer.lock"), WRITER_STATE_SIZE,
                                                  self.directory))
        except (IpcError, OSError):
            state = None
        self._state = state
        if state is None or state.segment < self._seg_base:
            return self._seg_base + SEGMENT_HEADER
        return float("inf") if state.segment > self._seg_base else state.end

    def _next(self):
        """The next record, or None when there is none yet (the end, or a write in progress past the committed end)."""
        while True:
            committed = self._committed_end()  # read before the file's size: what it says is in the file
            size = os.fstat(self._seg_fd).st_size
            offset = self._seg_base + self._pos
            # only a torn write is ever cut, and no reader gets past one: a file shorter than what was read is
            # damage (this reader waited for ever there, where the Node side's says Corrupt)
            if size < self._pos:
                raise _corrupt(self.directory, self._seg_base, offset,
                               "records this reader had already read are missing: the segment ends at %d"
                               % (self._seg_base + size))
            scan = _scan(self._seg_fd, self._pos, size)
            if scan[0] == "invalid":
                raise _corrupt(self.directory, self._seg_base, offset, scan[1])
            if scan[0] in ("end", "incomplete"):
                why = "a record cut short" if scan[0] == "incomplete" else "committed records are missing"
                if offset < committed:
                    raise _corrupt(self.directory, self._seg_base, offset, why)
                # the writer's state does not place it in this segment (damaged, missing, or older): a later
                # segment with records says the writer finished this one (it links the next before writing
                # there), so what is cut here is damage, not a write in progress (the Node reader's rule)
                state = self._state
                if state is None or state.segment < self._seg_base:
                    later = self._finished_by()
                    if later is not None and os.fstat(self._seg_fd).st_size == size:
                        raise _corrupt(self.directory, self._seg_base, offset, "%s, though segment %s follows with "
                                       "records" % (why, segment_name(later)))
                return None
            kind, length, payload = scan[1], scan[2], scan[3]
            if kind == END_OF_SEGMENT:
                # the next segment is opened before this reader moves past the end record: one that cannot be
                # opened yet (no descriptor free) is tried again from here, where the reader stood past the end
                # of this segment and took its end for damage
                following = self._seg_base + self._pos + RECORD_HEADER + length
                try:
                    self._open_segment(following)
                except IpcError as error:
                    if error.reason == "NotFound":
                        raise _corrupt(self.directory, self._seg_base, following,
                                       "segment %s is missing" % segment_name(following))
                    raise
                continue
            self._pos += RECORD_HEADER + length
            return Entry(kind, payload, self._seg_base + self._pos)

    def _finished_by(self):
        """A segment after this one that holds records (the writer went past this one), or None."""
        for base in segments(self.directory):
            if base <= self._seg_base:
                continue
            try:
                if os.stat(os.path.join(self.directory, segment_name(base))).st_size > SEGMENT_HEADER:
                    return base
            except OSError:
                pass  # removed meanwhile: look at the next
        return None

    def commit(self, offset):
        """Records that everything before ``offset`` is handled (alternating cursor slots); ``InvalidOption`` for
        an ``offset`` that is not a whole number from 0 to 2**64 - 1 (an ``Entry``'s ``offset`` is one)."""
        if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < 1 << 64:
            raise IpcError("InvalidOption", "offset %r is not a whole number from 0 to 2**64 - 1" % (offset,),
                           self.directory)
        if offset <= self._committed:
            return
        self._committed = offset
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        os.pwrite(self._cursor_fd, encode_cursor_slot(offset, self._seq), (self._seq & 1) * 16)

    def read(self, timeout=None):
        """The next record (an ``Entry``, data or close), waiting up to
        ``timeout`` seconds (None: for ever); ``IpcError`` ``Timeout`` after it."""
        check_seconds(timeout, "timeout", self.directory)
        if self._closed:
            raise Closed("the reader is closed", self.directory)
        if self._pending is not None:
            self.commit(self._pending)
            self._pending = None
        deadline = None if timeout is None else time.time() + timeout
        while True:
            try:
                entry = self._next()
                self._starved = False
            except IpcError as error:
                # no descriptor free to open the next segment: waited out (one warning), nothing skipped
                if error.reason != "NoSpace":
                    raise
                if not self._starved:
                    log.warning("cannot read %s for want of room; trying again: %s", self.directory, error.detail)
                self._starved = True
                entry = None
            if entry is not None:
                self._pending = entry.offset
                return entry
            if deadline is not None and time.time() >= deadline:
                raise IpcError("Timeout", "no record within %s s" % timeout, self.directory)
            time.sleep(self.poll_interval)

    def receive(self, timeout=None):
        """The next data record's payload (close records are passed over)."""
        while True:
            entry = self.read(timeout)
            if entry.kind == DATA:
                return entry.payload

    def close(self):
        """Commits what was handled and releases the reader name."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._pending is not None:
                self.commit(self._pending)
        finally:
            self._release()

    def _release(self):
        for fd in (self._seg_fd, self._cursor_fd):
            if fd >= 0:
                os.close(fd)
        self._seg_fd = self._cursor_fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
