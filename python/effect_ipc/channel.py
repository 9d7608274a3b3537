"""Byte channels over ``unix://`` and ``pipe://`` sockets (and any pair of
byte streams), speaking the effect-ipc frame format: one message per data
frame, a close handshake (a close frame, then the end of the writing side),
ping/pong heartbeats, and typed errors for a lost peer.

A ``Channel`` runs one reader thread: it answers pings at once and queues
data for ``receive``. ``send`` may be called from any thread."""
import errno
import hashlib
import logging
import os
import select
import socket
import stat
import struct
import tempfile
import threading
import time
import weakref

try:
    import fcntl
except ImportError:  # Windows: no unix:// sockets here (pipe:// there is not implemented)
    fcntl = None

try:
    import queue
except ImportError:  # pragma: no cover
    import Queue as queue

from . import address as addresses
from . import framing
from .errors import Closed, IpcError, check_bytes, check_count, check_seconds, fresh, reason_of

log = logging.getLogger("effect_ipc")

_END = object()
_KEEP = object()  # set_unread_limit: leave this bound as it is
_READ_SIZE = 64 * 1024
#: Messages a channel reads ahead of its receiver by default, as a Node channel does (``set_unread_limit``).
DEFAULT_UNREAD_MESSAGES = 4096
#: Bytes of messages a channel reads ahead of its receiver by default, as a Node channel does.
DEFAULT_UNREAD_BYTES = 8 * 1024 * 1024
# how long a failed or closing channel waits for a write under way before it lets its stream go
_TEARDOWN_WAIT = 0.5
_OPTIONS = ("max_frame_size", "heartbeat", "linger")


class PeerInfo(object):
    """What is known of the process at the other end (pid, uid, gid; None when unknown)."""

    def __init__(self, pid=None, uid=None, gid=None, description=None):
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.description = description

    def __repr__(self):
        return "PeerInfo(pid=%r, uid=%r, gid=%r)" % (self.pid, self.uid, self.gid)


def same_user_or_root(peer):
    """The default ``authorize``: the peer runs as this (effective) user, or as root. ``listen`` and
    ``connect`` take the user as of their call: a process that changes its effective user later keeps
    admitting the one it listened or connected as. ``InvalidOption`` for a ``peer`` that is not a ``PeerInfo``."""
    if not isinstance(peer, PeerInfo):
        raise IpcError("InvalidOption", "same_user_or_root takes a PeerInfo (got %s)" % type(peer).__name__)
    return _same_user_or_root_as(os.geteuid(), peer)


def _same_user_or_root_as(uid, peer):
    return peer.uid is not None and (peer.uid == uid or peer.uid == 0)


def check_authorize(authorize, address=None):
    """``IpcError`` reason ``InvalidOption`` unless ``authorize`` is callable (None too: there is no default by
    that name; leave ``authorize`` out for ``same_user_or_root``)."""
    if not callable(authorize):
        raise IpcError("InvalidOption", "authorize %r is not a function of a PeerInfo (leave it out for "
                       "same_user_or_root)" % (authorize,), address)


def _authorizer(authorize):
    """``authorize``, with the default fixed to this process's effective user as of now."""
    if authorize is not same_user_or_root:
        return authorize
    uid = os.geteuid()
    return lambda peer: _same_user_or_root_as(uid, peer)


def peer_credentials(sock):
    """The credentials of a connected Unix socket's peer (``SO_PEERCRED`` on
    Linux, ``getpeereid`` elsewhere); a ``PeerInfo`` with ``uid`` None when
    they cannot be read."""
    if hasattr(socket, "SO_PEERCRED"):
        try:
            pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            return PeerInfo(pid, uid, gid)
        except OSError:
            return PeerInfo()
    try:  # BSD, macOS
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        uid, gid = ctypes.c_uint32(), ctypes.c_uint32()
        if libc.getpeereid(sock.fileno(), ctypes.byref(uid), ctypes.byref(gid)) == 0:
            return PeerInfo(None, uid.value, gid.value)
    except Exception:  # noqa: BLE001 - no way to read them: the caller refuses the peer
        pass
    return PeerInfo()


class Heartbeat(object):
    """Heartbeat settings in seconds: ping when nothing was sent for
    ``interval``, fail the channel (``Timeout``) when nothing arrived for ``timeout``."""

    def __init__(self, interval, timeout):
        self.interval = interval
        self.timeout = timeout


def _positive(value, zero=False):
    """True for a real number above 0 (or at 0 with ``zero``), finite, not a bool."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
            and value != float("inf") and (value >= 0 if zero else value > 0))


def check_options(options, address=None):
    """``IpcError`` reason ``InvalidOption`` for a channel option that is not one (``max_frame_size`` a whole
    number from 1 to 2**32 - 1, ``heartbeat`` None or a ``Heartbeat`` of positive seconds, ``linger`` seconds
    of at least 0), or an unknown one: checked before a socket is made, never once a client came."""
    for name in options:
        if name not in _OPTIONS:
            raise IpcError("InvalidOption", "unknown channel option %r (one of %s)" % (name, ", ".join(_OPTIONS)),
                           address)
    size = options.get("max_frame_size", framing.DEFAULT_MAX_FRAME_SIZE)
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= framing.MAX_FRAME_SIZE:
        raise IpcError("InvalidOption", "max_frame_size %r is not a whole number from 1 to %d"
                       % (size, framing.MAX_FRAME_SIZE), address)
    beat = options.get("heartbeat")
    if beat is not None and not (isinstance(beat, Heartbeat) and _positive(beat.interval) and _positive(beat.timeout)):
        raise IpcError("InvalidOption", "heartbeat %r is not None or a Heartbeat of positive, finite seconds"
                       % (vars(beat) if isinstance(beat, Heartbeat) else beat,), address)
    if not _positive(options.get("linger", 2.0), zero=True):
        raise IpcError("InvalidOption", "linger %r is not a number of seconds of at least 0"
                       % (options.get("linger"),), address)


class Channel(object):
    """A message channel over a byte stream. ``read(n)`` returns up to ``n``
    bytes (b"" at the end), ``write(data)`` writes all of ``data``,
    ``end_write()`` ends the writing side, ``release()`` frees the stream.
    Use ``Channel.over_socket`` for a connected socket."""

    def __init__(self, read, write, end_write, release, address, peer=None,
                 max_frame_size=framing.DEFAULT_MAX_FRAME_SIZE, heartbeat=None, linger=2.0, abort=None,
                 writable=None, sent=None):
        self.address = address
        # ``sent``: a list that ``write`` appends the count of each piece it puts out to (emptied here before each
        # write), which holds it also when the write raised (Ctrl-C): a frame written whole, or not begun, before
        # the exception is not taken for a cut one (without it, any is)
        self._sent = sent
        # ``abort()`` makes a write blocked on the stream fail (a socket's shutdown): a channel that fails
        # or closes while a send waits on a peer that reads nothing does not wait for it
        self._abort = abort
        # ``writable(timeout)``: True once a small write would not block (a socket's poll), False after
        # ``timeout`` seconds: the close frame waits at most the linger for a peer that reads nothing
        self._writable = writable
        self.peer = peer or PeerInfo()
        self._read = read
        self._write = write
        self._end_write = end_write
        self._release = release
        self._max_frame_size = max_frame_size
        self._linger = linger
        self._inbox = queue.Queue()
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._failure = None
        self._closing = False
        # this side called close first: receive raises Closed, and what arrives is dropped (as a Node channel does)
        self._closed_here = False
        self._finished = False
        self._write_ended = False
        self._peer_said_close = False
        # how the channel ended after our close frame, if not well (close_checked)
        self._ended_badly = None
        self._last_received = time.time()
        self._last_sent = time.time()
        self._done = threading.Event()
        # back-pressure (set_unread_limit): the reader waits while this many messages, or bytes, are unread
        self._unread_limit = DEFAULT_UNREAD_MESSAGES
        self._unread_max_bytes = DEFAULT_UNREAD_BYTES
        self._unread_bytes = 0
        self._room = threading.Condition()
        self._held = False
        self._reader = threading.Thread(target=self._read_loop, name="effect-ipc reader %s" % address)
        self._reader.daemon = True
        self._reader.start()
        self._heartbeat = heartbeat
        if heartbeat is not None:
            beat = threading.Thread(target=self._beat_loop, name="effect-ipc heartbeat %s" % address)
            beat.daemon = True
            beat.start()

    @classmethod
    def over_socket(cls, sock, address, peer=None, **options):
        """A channel over a connected stream socket; the channel owns it. ``InvalidOption`` for a ``sock`` that
        is not a ``socket.socket`` or a bad option (see ``check_options``)."""
        if not isinstance(sock, socket.socket):
            raise IpcError("InvalidOption", "over_socket takes a connected socket.socket (got %s)"
                           % type(sock).__name__, address)
        check_options(options, address)

        def read(n):
            return sock.recv(n)

        counts = []  # what each send of the write under way put out (the channel's ``sent``)

        def write(data):
            # sendall, counting: each count is stored by C code (list.extend over map) before CPython runs a
            # signal handler, which it does as a call returns (sendall, or a count handed back to Python code,
            # raised Ctrl-C's KeyboardInterrupt after the whole frame went out, and it was taken for a cut one)
            view = memoryview(data)
            while sum(counts) < len(view):
                counts.extend(map(sock.send, (view[sum(counts):],)))

        def end_write():
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        def abort():
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def release():
            abort()
            sock.close()

        def writable(timeout):
            try:
                if hasattr(select, "poll"):  # any descriptor number (select stops at 1024)
                    poller = select.poll()
                    poller.register(sock, select.POLLOUT)
                    return bool(poller.poll(timeout * 1000))
                return bool(select.select([], [sock], [], timeout)[1])
            except (OSError, ValueError):
                return True  # gone: the write says so

        return cls(read, write, end_write, release, address, peer, abort=abort, writable=writable,
                   sent=counts, **options)

    # ---- sending -----------------------------------------------------------
    def _send_frame(self, kind, payload=b"", wait=-1, deadline=None, written=None):
        """Writes one frame; with ``wait`` (seconds) it waits at most that long for
        another write to finish, returning False (nothing written) after it; with
        ``deadline`` (a time), also False when the stream cannot take it by then.
        ``written`` (a list) gets True appended once the whole frame is written: what
        an exception raised after it (Ctrl-C) leaves a caller to know."""
        data = framing.encode(kind, payload)
        failure = interrupted = None
        if not self._write_lock.acquire(timeout=wait):
            return False
        try:
            if self._write_ended:
                raise self._closed_error()
            if deadline is not None and self._writable is not None and \
                    not self._writable(max(0.0, deadline - time.time())):
                return False
            if self._sent is not None:
                del self._sent[:]
            try:
                self._write(data)
            except (OSError, ValueError) as error:
                # the channel failed meanwhile (a heartbeat's timeout aborted this write): that is the error
                failure = (fresh(self._failure) if self._failure is not None
                           else IpcError("ConnectionLost", "write failed: %s" % error, self.address))
            except BaseException as error:
                # Ctrl-C (or another signal handler's exception) during the write: raised here also once the
                # whole frame went out (CPython runs the handler as the write's call returns), or before any of
                # it did; only part of a frame leaves the stream cut, whose rest the peer would read from the
                # next frames: the channel cannot go on
                interrupted = error
                sent = sum(self._sent) if self._sent is not None else None
                if sent == len(data):
                    self._last_sent = time.time()
                    if written is not None:
                        written.append(True)
                elif sent != 0:
                    failure = IpcError("ConnectionLost", "a send was interrupted part-way (%s): the stream may "
                                       "hold a cut frame" % type(error).__name__, self.address)
            else:
                self._last_sent = time.time()
                if written is not None:
                    written.append(True)
        finally:
            self._write_lock.release()
        if failure is not None:
            # failing tears down, which takes the write lock: only once it is released here
            self._fail(failure)
        if interrupted is not None or failure is not None:
            raise interrupted if interrupted is not None else failure
        return True

    def _closed_error(self):
        """The error of a channel closed on this side (a new one each time: a raise adds its traceback)."""
        return Closed("the channel is closed", self.address)

    def send(self, message):
        """Sends one message (bytes); raises ``IpcError`` when the channel is closed or lost (``Encode`` for a
        message that is not bytes, a bytearray or a memoryview). A send interrupted part-way (Ctrl-C) raises
        its ``KeyboardInterrupt`` and fails the channel (``ConnectionLost``): the stream may hold a cut frame."""
        self._send_message(message)

    def _send_message(self, message, written=None, wait=-1):
        """``send``; ``written`` (a list) gets True appended once the whole message is written, so that a caller
        interrupted (Ctrl-C) after that can tell a message the peer gets from one it never will. With ``wait``
        (seconds), False (nothing written) when another write holds the stream, or the stream cannot take the
        message, for longer than that; True once written."""
        message = check_bytes(message, "send", self.address)
        if self._failure is not None:
            raise fresh(self._failure)
        if self._closing:
            raise self._closed_error()
        if len(message) > self._max_frame_size:
            raise IpcError("FrameTooLarge", "a message of %d bytes is over the limit of %d"
                           % (len(message), self._max_frame_size), self.address)
        deadline = time.time() + wait if wait >= 0 else None
        return self._send_frame(framing.DATA, message, wait=wait, deadline=deadline, written=written)

    # ---- receiving ---------------------------------------------------------
    def set_unread_limit(self, limit, max_bytes=_KEEP):
        """Stops reading from the stream while ``limit`` received messages, or
        ``max_bytes`` bytes of them, wait unread (back-pressure: the peer's
        writes wait in the socket); None: no bound of that kind; ``max_bytes``
        left out keeps the byte bound as it is. The default is 4096 messages or
        8 MiB, as a Node channel's; ``set_unread_limit(None, None)`` reads ahead
        without limit. A message is read while fewer than ``max_bytes`` wait, so
        one message may take the unread bytes past it. Heartbeat silence is not
        counted meanwhile. ``InvalidOption`` for a bound that is not None or a whole number of at least 1."""
        check_count(limit, "the unread limit", self.address, optional=True)
        if max_bytes is not _KEEP:
            check_count(max_bytes, "max_bytes", self.address, optional=True)
        with self._room:
            self._unread_limit = limit
            if max_bytes is not _KEEP:
                self._unread_max_bytes = max_bytes
            self._room.notify_all()

    def _no_room(self):
        return ((self._unread_limit is not None and self._inbox.qsize() >= self._unread_limit)
                or (self._unread_max_bytes is not None and self._unread_bytes >= self._unread_max_bytes))

    def _take_room(self, size):
        """Waits until a message of ``size`` bytes may be queued unread, and counts it; False when the
        channel ended meanwhile (the message is not queued: nothing goes after the channel's end)."""
        with self._room:
            while self._no_room() and not self._closing and not self._finished:
                self._held = True
                self._room.wait(0.25)  # woken by receive and close; the timeout only guards a missed wake
            if self._held:
                self._last_received = time.time()  # the silence was ours: we were not reading
                self._held = False
            if self._finished:
                return False
            self._unread_bytes += size
            return True

    def _wake_reader(self):
        with self._room:
            self._room.notify_all()

    def receive(self, timeout=None):
        """The next message (bytes). Raises ``Closed`` once the peer has closed
        (or this side did), ``IpcError`` when the link was lost, and
        ``IpcError`` with reason ``Timeout`` after ``timeout`` seconds (``InvalidOption`` for a ``timeout``
        that is not None or a finite number of seconds of at least 0)."""
        check_seconds(timeout, "timeout", self.address)
        if self._closed_here:
            raise self._closed_error()
        try:
            item = self._inbox.get(timeout=timeout)
        except queue.Empty:
            raise IpcError("Timeout", "no message within %s s" % timeout, self.address)
        if item is _END or isinstance(item, IpcError):
            self._inbox.put(item)  # every later receive ends the same way
            if item is _END:
                raise Closed("the channel was closed by its peer", self.address)
            raise fresh(item)
        if self._closed_here:
            # queued as this side closed: dropped
            self._inbox.put(self._closed_error())
            raise self._closed_error()
        with self._room:
            self._unread_bytes -= len(item)
            if self._held:
                self._room.notify_all()
        return item

    def __iter__(self):
        """The incoming messages until the peer closes; a lost link raises."""
        while True:
            try:
                yield self.receive()
            except Closed:
                return

    @property
    def max_frame_size(self):
        """The largest message this channel sends or receives, in bytes."""
        return self._max_frame_size

    def _read_loop(self):
        decoder = framing.Decoder(self._max_frame_size)
        try:
            self._read_frames(decoder)
        except Exception as error:  # noqa: BLE001 - a reader that dies must fail the channel, not leave it hanging
            # (a MemoryError on a large frame left the channel closed with receive waiting for ever)
            self._fail(IpcError("ConnectionLost", "the channel's reader failed: %r" % (error,), self.address))
        finally:
            self._teardown()

    def _read_frames(self, decoder):
        while True:
            try:
                chunk = self._read(_READ_SIZE)
            except (OSError, ValueError) as error:
                if self._closing:
                    if not self._peer_said_close:
                        # reset after our close frame, unanswered (close_checked)
                        self._end_badly(IpcError("ConnectionLost", "the connection failed: %s" % error, self.address))
                    self._end_inbox()
                else:
                    self._fail(IpcError("ConnectionLost", "the connection failed: %s" % error, self.address))
                return
            if not chunk:
                self._on_end(decoder)
                return
            self._last_received = time.time()
            try:
                frames = decoder.feed(chunk)
            except IpcError as error:
                self._fail(IpcError(error.reason, error.detail, self.address))
                return
            for kind, payload in frames:
                if kind == framing.DATA:
                    if self._closed_here:
                        continue  # nobody will take it: read on, to the peer's answer
                    if not self._take_room(len(payload)):
                        return
                    self._inbox.put(payload)
                elif kind == framing.CLOSE:
                    self._peer_said_close = True
                elif kind == framing.PING:
                    if not self._closing:
                        try:
                            # not while a send is under way (it may be blocked on a peer that reads
                            # nothing): the peer hears from us by that send's bytes
                            self._send_frame(framing.PONG, payload, wait=0)
                        except IpcError:
                            pass

    def _on_end(self, decoder):
        if decoder.in_frame:
            self._fail(IpcError("ConnectionLost", "the stream ended in the middle of a frame", self.address))
        elif self._peer_said_close or self._closing:
            if not self._peer_said_close:
                # our close frame went unanswered: the peer dropped the connection instead
                self._end_badly(IpcError("ConnectionLost", "the peer ended the stream without answering our close",
                                         self.address))
            self._end_inbox()
            if not self._closing:
                # the peer is done: answer its close frame with ours
                self._closing = True
                self._end_writing()
        else:
            self._fail(IpcError("ConnectionLost", "the peer ended the stream without closing the channel",
                                self.address))

    def _end_inbox(self):
        self._inbox.put(_END)

    def _end_badly(self, error):
        """Records how the channel ended after our close frame, if nothing did before: not once torn
        down (our own teardown ends the stream too)."""
        with self._state_lock:
            if self._ended_badly is None and not self._finished:
                self._ended_badly = error

    def _fail(self, error):
        with self._state_lock:
            if self._failure is not None or self._finished:
                return
            self._failure = error
        self._inbox.put(error)
        self._teardown()

    def _teardown(self):
        with self._state_lock:
            if self._finished:
                return
            self._finished = True
        self._wake_reader()
        if self._abort is not None:
            # a send under way, perhaps blocked on a peer that reads nothing, fails now
            try:
                self._abort()
            except Exception:  # noqa: BLE001 - already gone
                pass
        # the descriptors are let go once no write uses them (a write that cannot be stopped: not for long)
        locked = self._write_lock.acquire(timeout=_TEARDOWN_WAIT)
        self._write_ended = True
        if locked:
            self._write_lock.release()
        try:
            self._release()
        except Exception:  # noqa: BLE001 - already gone
            pass
        self._done.set()

    def _end_writing(self, wait=-1):
        """Sends the close frame and ends the writing side; with ``wait`` (seconds),
        not if a send under way holds the stream longer than that, or the stream
        cannot take the frame by then (False then)."""
        try:
            deadline = time.time() + wait if wait >= 0 else None
            if not self._send_frame(framing.CLOSE, wait=wait, deadline=deadline):
                return False
        except IpcError:
            pass
        if not self._write_lock.acquire(timeout=wait):
            return False
        try:
            self._write_ended = True
            try:
                self._end_write()
            except Exception:  # noqa: BLE001 - the peer is gone already
                pass
        finally:
            self._write_lock.release()
        return True

    # ---- closing -----------------------------------------------------------
    def close(self):
        """Closes the channel: sends a close frame, ends the writing side and
        waits (at most ``linger`` seconds) for the peer to answer. Idempotent."""
        with self._state_lock:
            if self._closing or self._finished:
                already = True
            else:
                already = False
                self._closing = True
                self._closed_here = True
        self._wake_reader()
        if not already:
            self._drop_unread()
        if already:
            self._done.wait(self._linger)
            return
        deadline = time.time() + self._linger
        # a send blocked on a peer that reads nothing holds the stream, and a full stream our close frame:
        # close waits at most its linger for the frame to leave
        if not self._end_writing(self._linger):
            self._give_up()
        elif not self._done.wait(max(0.0, deadline - time.time())):
            self._teardown()

    def _drop_unread(self):
        """Our close: what nobody took is dropped, and a waiting receive raises Closed at once."""
        while True:
            try:
                self._inbox.get_nowait()
            except queue.Empty:
                break
        with self._room:
            self._unread_bytes = 0
        self._inbox.put(self._closed_error())

    def _give_up(self):
        """The close frame did not leave within the linger (the peer did not read): the channel ends now."""
        self._end_badly(IpcError("ConnectionLost", "close gave up after %gs: the close frame never left (the peer did "
                                 "not read)" % self._linger, self.address))
        self._teardown()

    def close_checked(self):
        """Closes as ``close()`` does, then raises ``IpcError`` (reason ``ConnectionLost``) when the
        channel did not end well: the close frame could not leave within the linger (the peer did not
        read), the peer dropped the connection instead of answering it (a listener that refused a
        message over its size limit), or the channel had failed before (that failure is raised).
        Returns once the peer answered, and where it cannot tell: a peer that closed first (it may
        have dropped what it had not read), or one still silent when the linger ran out."""
        self.close()
        error = self._failure if self._failure is not None else self._ended_badly
        if error is not None:
            raise fresh(error)

    @property
    def closed(self):
        """True once the channel is closed or lost."""
        return self._done.is_set()

    def wait_closed(self, timeout=None):
        """Waits until the channel is closed (by either side) or lost; True if it is (``InvalidOption`` for a
        ``timeout`` that is not None or a finite number of seconds of at least 0)."""
        check_seconds(timeout, "timeout", self.address)
        return self._done.wait(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- heartbeats --------------------------------------------------------
    def _beat_loop(self):
        interval, timeout = self._heartbeat.interval, self._heartbeat.timeout
        while not self._done.wait(interval):
            now = time.time()
            if now - self._last_received > timeout and not self._held:
                self._fail(IpcError("Timeout", "no word from the peer for %d ms" % int(timeout * 1000),
                                    self.address))
                return
            if now - self._last_sent >= interval and not self._closing:
                try:
                    # never waits for a send under way (it may be blocked on a peer that reads nothing):
                    # the timeout above must still fire
                    self._send_frame(framing.PING, wait=0)
                except IpcError:
                    return


def connect(address, authorize=same_user_or_root, timeout=None, **options):
    """Dials a ``unix://`` or ``pipe://`` address. The server's credentials go
    to ``authorize`` before a byte is sent (``PeerRejected`` if refused or
    unreadable). Options: ``max_frame_size``, ``heartbeat``, ``linger`` (``InvalidOption``: see ``check_options``;
    so is a ``timeout`` that is not None or a finite number of seconds of at least 0, and an ``authorize`` that
    is not callable)."""
    check_seconds(timeout, "timeout", address)
    check_authorize(authorize, address)
    check_options(options, address)
    where = addresses.resolve(address)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(where.path)
        sock.settimeout(None)
    except OSError as error:
        sock.close()
        raise _connect_error(error, address)
    peer = peer_credentials(sock)
    try:
        allowed = authorize(peer)
    except BaseException:  # a failing authorize refuses the server, its socket is not left open
        sock.close()
        raise
    if not allowed:
        sock.close()
        raise IpcError("PeerRejected", "the server (uid %s) is not allowed by authorize" % peer.uid, address)
    peer.description = address
    return Channel.over_socket(sock, address, peer, **options)


def _connect_error(error, address):
    code = getattr(error, "errno", None)
    if code in (errno.ENOENT, errno.ECONNREFUSED):
        return IpcError("NotFound", "cannot connect: %s" % os.strerror(code).lower(), address)
    if code in (errno.EACCES, errno.EPERM):
        return IpcError("PermissionDenied", "cannot connect: %s" % os.strerror(code).lower(), address)
    if isinstance(error, (socket.timeout, BlockingIOError)):  # a timeout of 0: EAGAIN on a full backlog
        return IpcError("Timeout", "cannot connect: timed out", address)
    return IpcError("Open", "cannot connect: %s" % error, address)


# how long serve waits after a failed accept before trying again (doubling up to the most)
_ACCEPT_PAUSE = 0.01
_ACCEPT_PAUSE_MOST = 1.0
#: How many refused clients a minute a listener logs one by one (the rest summed up in one warning), as the Node side.
LOGGED_REFUSALS_PER_MINUTE = 10


class Listener(object):
    """A listening socket at a ``unix://`` or ``pipe://`` address, bound the
    safe way (see ``listen``). ``accept`` yields channels; ``close`` removes
    the socket file (only its own)."""

    def __init__(self, sock, address, path, identity, authorize, options, directory_fd=None):
        self.address = address
        self._sock = sock
        # ``path`` a ``/proc/self/fd`` path through ``directory_fd`` (its directory's, closed with the listener)
        self._path = path
        # closed by ``close``, or as the listener is collected unclosed (its socket closes itself so; a bare
        # descriptor stayed open, one per listener dropped), and only ever once (two ``close`` at a time)
        self._close_directory = None if directory_fd is None else weakref.finalize(self, os.close, directory_fd)
        self._identity = identity
        self._authorize = _authorizer(authorize)
        self._options = options
        self._closed = False
        #: How many clients ``authorize`` refused (or failed on) so far.
        self.refused = 0
        # a flood of refused clients (another user's, at an abstract name or a wide ``mode``) logged a warning each:
        # megabytes a second of log; now the first few of each minute, the rest summed up
        self._refusals = threading.Lock()
        self._minute = time.monotonic()
        self._logged = 0
        self._unlogged = 0

    def accept(self, timeout=None):
        """Waits for the next client admitted by ``authorize`` and returns its
        channel (a refused client's connection is closed and logged). ``InvalidOption`` for a ``timeout``
        that is not None or a finite number of seconds of at least 0."""
        check_seconds(timeout, "timeout", self.address)
        while True:
            try:
                self._sock.settimeout(timeout)
                conn, _ = self._sock.accept()
            except (socket.timeout, BlockingIOError):  # a timeout of 0 makes the socket non-blocking: EAGAIN
                raise IpcError("Timeout", "no client within %s s" % timeout, self.address)
            except OSError as error:
                if self._closed:
                    raise Closed("the listener is closed", self.address)
                raise IpcError("Accept", "accept failed: %s" % error, self.address)
            conn.settimeout(None)
            peer = peer_credentials(conn)
            try:
                allowed = self._authorize(peer)
            except Exception:  # noqa: BLE001 - a failing authorize refuses this client; the listener goes on
                conn.close()
                self._note_refusal("PeerRejected: authorize failed on a client (pid %s, uid %s) at %s", peer, True)
                continue
            if not allowed:
                conn.close()
                self._note_refusal("PeerRejected: refused a client (pid %s, uid %s) at %s", peer, False)
                continue
            peer.description = self.address
            try:
                return Channel.over_socket(conn, self.address, peer, **self._options)
            except RuntimeError as error:
                # no thread for its reader (the process's thread limit): this client is dropped, not the listener
                log.warning("dropped a client at %s: %s", self.address, error)
                conn.close()

    def _note_refusal(self, message, peer, exc_info):
        """Counts a refused client and logs it while fewer than ``LOGGED_REFUSALS_PER_MINUTE`` were logged this
        minute; the rest are summed up in one warning at the first refusal of a later minute, and on ``close``."""
        with self._refusals:
            self.refused += 1
            now = time.monotonic()
            summary = 0
            if now - self._minute >= 60:
                summary, self._unlogged, self._logged, self._minute = self._unlogged, 0, 0, now
            shown = self._logged < LOGGED_REFUSALS_PER_MINUTE
            if shown:
                self._logged += 1
            else:
                self._unlogged += 1
        if summary:
            self._log_unlogged(summary)
        if shown:
            log.warning(message, peer.pid, peer.uid, self.address, exc_info=exc_info)

    def _log_unlogged(self, count):
        log.warning("PeerRejected: %d more clients refused at %s (not logged one by one)", count, self.address)

    def serve(self, handler):
        """Serves every client in a thread of its own: ``handler(channel)``;
        the channel is closed when the handler returns. Runs until ``close``;
        a failed accept (out of descriptors in a flood of clients) is logged
        and retried after a pause, the clients being served go on."""
        pause = _ACCEPT_PAUSE
        while True:
            try:
                channel = self.accept()
            except Closed:
                return
            except IpcError as error:
                # EMFILE / ENFILE / ENOMEM while a flood holds the descriptors: serve ended, and the socket file
                # it left answered no one; now the listener waits for descriptors to come back
                log.warning("accept failed at %s, retrying in %.2f s: %s", self.address, pause, error.detail)
                time.sleep(pause)
                pause = min(pause * 2, _ACCEPT_PAUSE_MOST)
                continue
            pause = _ACCEPT_PAUSE

            def run(ch=channel):
                try:
                    handler(ch)
                except Closed:
                    pass
                except IpcError as error:
                    # a client lost (gone without closing) is routine for a server, as on the Node side
                    if error.reason == "ConnectionLost":
                        log.debug("connection ended: %s", error)
                    elif error.reason in ("FrameTooLarge", "Protocol"):
                        # what the client sent is at fault, not this process: one line, no traceback
                        log.warning("dropped a client (pid %s, uid %s) at %s: %s", ch.peer.pid, ch.peer.uid,
                                    self.address, error.detail)
                    else:
                        log.warning("connection handler failed: %s", error, exc_info=True)
                except Exception:  # noqa: BLE001 - one connection's failure ends only that connection
                    log.warning("connection handler failed", exc_info=True)
                finally:
                    ch.close()

            thread = threading.Thread(target=run, name="effect-ipc connection")
            thread.daemon = True
            try:
                thread.start()
            except RuntimeError as error:
                # no thread for it (the process's thread limit): this client is dropped, the others served on
                log.warning("dropped a client at %s: %s", self.address, error)
                channel.close()

    def close(self):
        """Stops listening and removes the socket file if it is still this listener's."""
        if self._closed:
            return
        self._closed = True
        with self._refusals:
            unlogged, self._unlogged = self._unlogged, 0
        if unlogged:
            self._log_unlogged(unlogged)
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        if self._identity is not None:
            try:
                st = os.lstat(self._path)
                if (st.st_dev, st.st_ino) == self._identity:
                    os.unlink(self._path)
            except OSError:
                pass
        if self._close_directory is not None:
            self._close_directory()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _same_file(a, b):
    """Whether two ``stat`` results are of one file (device and inode)."""
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _describe(st):
    kinds = [(stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"),
             (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO")]
    kind = next((name for test, name in kinds if test(st.st_mode)), "something")
    return "%s owned by uid %d" % (kind, st.st_uid)


def _occupant(path, address, dial=None):
    """What is at ``path``: None when nothing, the ``lstat`` of this user's dead
    server's socket (connecting is refused); anything else is ``AddressInUse``. ``dial``: the path to connect
    to instead when ``path`` (a ``/proc/self/fd`` one) is too long for a socket address."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISSOCK(st.st_mode) and st.st_uid == os.geteuid():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # a live server that accepts nothing (stopped, its backlog full) would hold a blocking connect for good
        probe.settimeout(1.0)
        try:
            probe.connect(path if dial is None or len(path.encode("utf-8")) <= addresses.MAX_PATH_BYTES else dial)
            # a live server of this user: said goodbye to as a client that closes (its listener sees a client
            # come and go, not a connection lost)
            probe.sendall(framing.encode(framing.CLOSE))
            probe.shutdown(socket.SHUT_WR)
        except OSError as error:
            if error.errno == errno.ECONNREFUSED:
                return st
        finally:
            probe.close()
        raise IpcError("AddressInUse", "a live server listens there", address)
    raise IpcError("AddressInUse", "something is already there: %s" % _describe(st), address)


def _lock_path(path, address):
    """Takes this user's lock for ``path``: the same lock file Node's listeners
    take (``.lock-`` + sha256 of the absolute path, in ``address.lock_dir``), so Python and Node servers replacing one dead socket never
    remove each other's fresh one. Returns ``(descriptor, lock file)`` for
    ``_unlock_path``."""
    key = hashlib.sha256(os.path.abspath(path).encode("utf-8")).hexdigest()[:32]
    lock = os.path.join(addresses.lock_dir(address), ".lock-" + key)
    deadline = time.time() + 10
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno not in (errno.EAGAIN, errno.EACCES) or time.time() > deadline:
                raise IpcError("AddressInUse", "cannot lock %s: %s" % (lock, error), address)
            time.sleep(0.01)
            continue
        held, named = os.fstat(fd), None
        try:
            named = os.lstat(lock)
        except OSError:
            pass
        if named is not None and (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino):
            return fd, lock
        os.close(fd)  # the lock file was replaced while we waited: lock the current one


def _unlock_path(held):
    """Releases a lock from ``_lock_path``: the holder removes the lock file
    before it lets go (as Node's listeners do; a waiter that then gets the
    removed file sees it is no longer the named one and locks afresh), so no
    lock file is left behind."""
    fd, lock = held
    try:
        os.unlink(lock)
    except OSError:
        pass  # gone already
    os.close(fd)


def _link_replacing_stale(temporary, path, address, at=None):
    """Links ``temporary`` at ``path`` (through ``at``, a ``/proc/self/fd`` path of it in its directory's
    descriptor, when given); a dead server's socket there is removed first under the path's lock (only that
    very file); anything else there is ``AddressInUse``."""
    at = path if at is None else at
    for _ in range(3):
        try:
            os.link(temporary, at)
            return
        except OSError as error:
            if error.errno != errno.EEXIST:
                raise IpcError("Open", "cannot bind: %s" % error, address)
        held = _lock_path(path, address)
        try:
            stale = _occupant(at, address, path)
            if stale is not None:
                try:
                    now = os.lstat(at)
                except OSError:
                    now = None
                if now is not None and (now.st_dev, now.st_ino) == (stale.st_dev, stale.st_ino):
                    os.unlink(at)
            try:
                os.link(temporary, at)
                return
            except OSError as error:
                if error.errno != errno.EEXIST:
                    raise IpcError("Open", "cannot bind: %s" % error, address)
        finally:
            _unlock_path(held)
    raise IpcError("AddressInUse", "another server keeps taking the path", address)


def listen(address, authorize=same_user_or_root, mode=0o600, backlog=128, **options):
    """Listens at a ``unix://`` or ``pipe://`` address. Nothing at the path is
    removed unless it is this user's socket whose connections are refused (a
    dead server's); the socket is bound in a fresh 0700 directory, given
    ``mode`` and only then linked to its public path, so no other user can
    connect in between; on Linux all three go through a descriptor of that directory, so a user who may rename
    entries beside the path cannot swap theirs in (``PermissionDenied`` before the bind, nothing of theirs after),
    and every look at, link to and removal of the path (also ``close``'s) through one of the path's directory.
    Clients' credentials go to ``authorize``. The channel options are checked first
    (``InvalidOption``: see ``check_options``; so are a ``mode`` that is not permission bits, 0 to 0o777, and
    a ``backlog`` that is not a whole number of at least 0, and an ``authorize`` that is not callable), before
    anything is bound."""
    check_authorize(authorize, address)
    check_options(options, address)
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o777:
        raise IpcError("InvalidOption", "mode %r is not permission bits (a whole number from 0 to 0o777)" % (mode,),
                       address)
    check_count(backlog, "backlog", address, least=0)
    where = addresses.resolve(address)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if where.kind == "abstract":
        try:
            sock.bind(where.path)
        except OSError as error:
            sock.close()
            raise IpcError("AddressInUse", "cannot bind: %s" % error, address)
        sock.listen(backlog)
        return Listener(sock, address, where.path, None, authorize, options)
    path = where.path
    directory = os.path.dirname(path) or "/"
    if not os.path.isdir(directory):
        sock.close()
        raise IpcError("NotFound", "cannot bind: directory %s does not exist" % directory, address)
    parent_fd = None
    try:
        # on Linux every look at, link to and removal of the path (also the close's) goes through one descriptor of
        # its directory: a user who may rename a directory on the way can swap a link to another directory in
        # between a look and a removal, and the unlink by path removed a file of that name there (of root's)
        if os.path.isdir("/proc/self/fd"):
            try:
                parent_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
            except OSError as error:
                raise IpcError(reason_of(error, "Open"), "cannot open the directory %s: %s" % (directory, error),
                               address)
        return _listen_in(sock, address, path, directory, parent_fd, authorize, mode, backlog, options)
    except BaseException:
        sock.close()
        if parent_fd is not None:
            os.close(parent_fd)
        raise


def _listen_in(sock, address, path, directory, parent_fd, authorize, mode, backlog, options):
    """``listen`` at a socket file path, through ``parent_fd`` (its directory's descriptor) when not None."""
    if parent_fd is not None:
        directory_at = "/proc/self/fd/%d" % parent_fd
        at = "%s/%s" % (directory_at, os.path.basename(path))
    else:
        directory_at, at = directory, path
    _occupant(at, address, path)  # refuse before creating anything next to what is there
    try:
        private = tempfile.mkdtemp(prefix=".e", dir=directory_at)
    except OSError as error:
        code = getattr(error, "errno", None)
        reason = "PermissionDenied" if code in (errno.EACCES, errno.EPERM, errno.EROFS) else "Open"
        raise IpcError(reason, "cannot bind in %s: %s" % (directory, os.strerror(code).lower() if code else error), address)
    temporary = os.path.join(private, "s")
    shown = os.path.join(directory, os.path.basename(private))  # what messages name
    private_fd = None
    bound = False
    try:
        bind_at = temporary
        if os.path.isdir("/proc/self/fd"):
            # bound, given its mode and linked through a descriptor of the directory made (as the Node side
            # does): a user who may rename entries beside ``path`` can swap a directory of theirs in for it, with
            # a link in it that a chmod by path would follow (to a file of root's, made as wide as ``mode``)
            try:
                private_fd = os.open(private, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            except OSError as error:
                raise IpcError("PermissionDenied", "%s was replaced as the socket was to be bound in it: %s"
                               % (shown, os.strerror(error.errno).lower()), address)
            held = os.fstat(private_fd)
            if held.st_uid != os.geteuid() or held.st_mode & 0o077:
                raise IpcError("PermissionDenied", "%s was replaced as the socket was to be bound in it (now owned by "
                               "uid %d, mode %o): another user may rename entries in %s"
                               % (shown, held.st_uid, held.st_mode & 0o777, directory), address)
            bind_at = "/proc/self/fd/%d/s" % private_fd
        elif len(temporary.encode("utf-8")) > addresses.MAX_PATH_BYTES:
            # a socket path with no room for the private directory's name in it (as the Node side does)
            raise IpcError("NameTooLong", "no room for a private directory beside the socket", address)
        sock.bind(bind_at)
        bound = True
        os.chmod(bind_at, mode)
        sock.listen(backlog)
        _link_replacing_stale(bind_at, path, address, at)
    finally:
        # only the socket bound, through the descriptor it was bound through: a staging directory refused above is
        # another user's (or their link to a directory of root's), and an unlink by path removed its ``s``
        if bound:
            try:
                os.unlink(bind_at)
            except OSError:
                pass
        try:
            # only the directory made, emptied: one another user put in its place is theirs
            if private_fd is None or _same_file(os.lstat(private), os.fstat(private_fd)):
                os.rmdir(private)
        except OSError:
            pass
        if private_fd is not None:
            os.close(private_fd)
    st = os.lstat(at)
    return Listener(sock, address, at, (st.st_dev, st.st_ino), authorize, options, parent_fd)
