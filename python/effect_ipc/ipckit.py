"""ipckit's ``FileChannel`` files, spoken carefully (the Node side's
``Ipckit`` mode): ``backend_to_frontend.json`` and ``frontend_to_backend.json``
(JSON arrays, pretty-printed as serde_json writes them), ``.channel_info``,
and ipckit's lock protocol (create ``<stream>.lock`` exclusively with the pid
and a newline, read the array, append, keep the last 100, write
``<stream>.tmp`` and rename it over, remove the lock).

Unlike ipckit: a lock whose holder is alive is never broken (only a dead
pid's, or an empty lock older than ``stale_age``); a file that is not a JSON
array is never overwritten (``IpcError`` ``Decode``); each message is
delivered once, by id, in order; waiting for a response keeps the other
messages queued. ipckit's limits remain: a reader more than ``keep``
messages behind loses messages, and the read position is kept in memory."""
import errno
import fcntl
import json
import os
import re
import stat
import time
import uuid

from .errors import IpcError, check_path, check_seconds, reason_of

KEEP = 100
# the deepest nesting serde_json reads back (the Node side's JsonArray.MAX_DEPTH): its recursion limit
# of 128 counts the file's array and the message object (depth 2), so a payload nests at most 125 levels
MAX_DEPTH = 127


def _unwritable(msg):
    """Why ipckit (serde_json) could not read ``msg`` back, as the Node side judges it, or None."""
    stack = [(msg, 2)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return "the string %s holds a lone surrogate (not Unicode text)" % json.dumps(value[:40])
        elif isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
            return "%s is not a JSON number" % value
        elif isinstance(value, (list, tuple, dict)):
            if depth > MAX_DEPTH:
                return "nested deeper than %d levels (serde_json's limit)" % MAX_DEPTH
            items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
            for key, item in items:
                if key is not None:
                    stack.append((key, depth))
                stack.append((item, depth + 1))
    return None


def _os_error(error, what, directory):
    """An ``OSError`` as ``IpcError``, its reason as on the Node side (``NoSpace`` for a full disk, a quota or no
    descriptor left, ...), else ``Write``."""
    return IpcError(reason_of(error, "Write"), "%s: %s" % (what, error), directory)


_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# an effect-ipc channel's or listener's directory holds this marker (the Node side's Layout.MARKER)
_MARKER = ".effect-ipc"
_HINT_OWNER = ("use a directory that you own and that no other user can write (e.g. mkdir -m 700), not one another "
               "user controls")
_MESSAGE_TYPES = ("request", "response", "event")


def _open_error(error, path, directory):
    """An ``OSError`` of opening or reading a channel file as ``IpcError``: ``PermissionDenied`` for what the
    Node side refuses (a link, not a regular file, no access), ``NoSpace`` for no descriptor left, else ``Open``
    (its fallback)."""
    refused = (errno.ELOOP, errno.EACCES, errno.EPERM, errno.ENXIO, errno.EISDIR)
    return IpcError("PermissionDenied" if error.errno in refused else reason_of(error, "Open"),
                    "cannot read %s: %s" % (os.path.basename(path), error), directory)


def _distrust(path, st, last, directory):
    """``PermissionDenied`` when the directory ``path`` (the channel's when ``last``, else one above it) is
    another user's, or others may write it (above the channel's: unless it has the sticky bit, like /tmp)."""
    if st.st_uid not in (os.geteuid(), 0):
        raise IpcError("PermissionDenied", "%s is owned by uid %d, not by this user or root; hint: %s"
                       % (path, st.st_uid, _HINT_OWNER), directory)
    if st.st_mode & 0o022 and (last or not st.st_mode & stat.S_ISVTX):
        raise IpcError("PermissionDenied", "%s is writable by %s%s: not a safe place for a channel; hint: chmod "
                       "go-w %s, or use a directory only you can write"
                       % (path, "every user" if st.st_mode & 0o002 else "its group",
                          "" if last else " without the sticky bit", path), directory)


def _check_component(path, st, last, directory):
    """One component of the channel directory's path: a link of this user or root (where it leads is checked
    on the real path), else a trusted directory (``_distrust``)."""
    if stat.S_ISLNK(st.st_mode):
        if st.st_uid not in (os.geteuid(), 0):
            raise IpcError("PermissionDenied", "%s is a symbolic link owned by uid %d; hint: %s"
                           % (path, st.st_uid, _HINT_OWNER), directory)
        return
    if not stat.S_ISDIR(st.st_mode):
        raise IpcError("PermissionDenied", "%s is not a directory, where a directory is expected" % path, directory)
    _distrust(path, st, last, directory)


def _components(path):
    parts = [part for part in path.split(os.sep) if part]
    return [os.sep + os.sep.join(parts[:i]) for i in range(len(parts) + 1)]


def _check_trusted(path, directory):
    """Checks the absolute ``path`` as written and as it resolves, as the Node side's ``checkTrusted``;
    True when a component of it is missing."""
    missing = False
    components = _components(path)
    for i, component in enumerate(components):
        try:
            st = os.lstat(component)
        except OSError as error:
            if error.errno not in (errno.ENOENT, errno.ENOTDIR):
                raise
            missing = True
            break
        _check_component(component, st, i == len(components) - 1, directory)
    existing = path
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    real = os.path.realpath(existing)
    if real != existing:
        through = _components(real)
        for i, component in enumerate(through):
            _distrust(component, os.lstat(component), not missing and i == len(through) - 1, directory)
    return missing


def _ensure_dir(directory):
    """Creates the channel directory (and missing parents, 0o700 each, never through another user's link) or
    checks the one there, as the Node side's ``ensureDir``: only a directory of this user or root that no
    other user can write, under directories no other user can tamper with, is used (``PermissionDenied``)."""
    path = os.path.abspath(directory)
    try:
        if _check_trusted(path, directory):
            components = _components(path)
            for i, component in enumerate(components):
                try:
                    os.mkdir(component, 0o700)
                except OSError as error:
                    if error.errno != errno.EEXIST:
                        raise
                _check_component(component, os.lstat(component), i == len(components) - 1, directory)
            if _check_trusted(path, directory):
                raise IpcError("NotFound", "%s vanished while being created" % path, directory)
        if not os.access(path, os.W_OK | os.X_OK):
            raise IpcError("PermissionDenied", "%s is not writable by this user; hint: use a directory that you own"
                           % path, directory)
    except OSError as error:
        raise IpcError(reason_of(error, "Open"), "cannot use the directory %s: %s" % (directory, error), directory)


def _now_ms():
    return int(time.time() * 1000)


def _pretty(value):
    return json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)


def message(msg_type, method=None, payload=None, reply_to=None, error=None):
    """A ``FileMessage``: fields in ipckit's order, absent ones left out."""
    out = {"id": str(uuid.uuid4()), "timestamp": _now_ms(), "type": msg_type}
    if reply_to is not None:
        out["reply_to"] = reply_to
    if method is not None:
        out["method"] = method
    out["payload"] = payload
    if error is not None:
        out["error"] = error
    return out


def _pid_of(text):
    """The pid a lock's text names (ipckit writes the pid and a newline), or None (the Node side's ``pidOf``)."""
    found = re.match(r"^\s*([0-9]{1,10})\s*$", text)
    pid = int(found.group(1)) if found else 0
    return pid if 1 <= pid <= 0x7FFFFFFF else None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except OSError as error:
        return error.errno == errno.EPERM
    return True


def _key_of(value):
    """What an element of a message file is delivered once by: its id, or its JSON text (the Node side's ``keyOf``)."""
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"]
    return "raw:" + json.dumps(value, ensure_ascii=False)


def _not_a_message(value):
    """Why ``value`` is not a message as the Node side decodes one (``Messages.Message``), or None."""
    if not isinstance(value, dict):
        return "%s is not an object" % json.dumps(value, ensure_ascii=False)[:40]
    stamp = value.get("timestamp")
    if not isinstance(value.get("id"), str):
        return "its id is not a string"
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)) or stamp < 0 or stamp != int(stamp):
        return "its timestamp is not a whole number of at least 0"
    if value.get("type") not in _MESSAGE_TYPES:
        return "its type is not one of %s" % ", ".join(_MESSAGE_TYPES)
    if "payload" not in value:
        return "it has no payload"
    for key in ("reply_to", "method", "error"):
        if value.get(key) is not None and not isinstance(value[key], str):
            return "its %s is not a string" % key
    return None


class IpckitChannel(object):
    """One end (``role`` ``backend`` or ``frontend``) of an ipckit file channel in ``directory``."""

    def __init__(self, directory, role, keep=KEEP, stale_age=5.0, lock_timeout=10.0, poll_interval=0.02):
        directory = check_path(directory, "the channel directory")
        if role not in ("backend", "frontend"):
            raise IpcError("InvalidAddress", "the role is backend or frontend", directory)
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise IpcError("InvalidOption", "keep %r is not a whole number of at least 1" % (keep,), directory)
        check_seconds(poll_interval, "poll_interval", directory, positive=True)
        check_seconds(stale_age, "stale_age", directory, optional=False)
        check_seconds(lock_timeout, "lock_timeout", directory, optional=False)
        self.directory = directory
        self.role = role
        self.keep = keep
        self.stale_age = stale_age
        self.lock_timeout = lock_timeout
        self.poll_interval = poll_interval
        _ensure_dir(directory)
        # an effect-ipc channel's or listener's directory is not an ipckit one: ipckit's files there would keep
        # the Node side's FileChannel.remove (or its listener's clean-up) from it
        kind = self._marker_kind()
        if kind is not None:
            raise IpcError("AddressInUse", "%s is an effect-ipc %s directory, not an ipckit channel directory: "
                           "nothing in it was touched" % (directory, kind), directory)
        b2f = os.path.join(directory, "backend_to_frontend.json")
        f2b = os.path.join(directory, "frontend_to_backend.json")
        self.outbox, self.inbox = (b2f, f2b) if role == "backend" else (f2b, b2f)
        info = os.path.join(directory, ".channel_info")
        if not os.path.exists(info):
            self._write_new(info, _pretty({"created": _now_ms(), "protocol": "file-ipc", "version": "1.0"}))
        for path in (self.outbox, self.inbox):
            if not os.path.exists(path):
                self._write_new(path, "[]")
        self._delivered = set()
        self._queue = []

    @staticmethod
    def _write_new(path, text):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except OSError as error:
            if error.errno == errno.EEXIST:
                return
            raise
        with os.fdopen(fd, "w") as f:
            f.write(text)

    def _marker_kind(self):
        """The kind (``channel`` or ``listener``) the directory's effect-ipc marker names, or None (no marker,
        or not a valid one)."""
        data = self._read_bytes(os.path.join(self.directory, _MARKER))
        try:
            value = json.loads(data.decode("utf-8")) if data is not None else None
        except ValueError:
            return None
        if isinstance(value, dict) and value.get("format") == "effect-ipc-file" and \
                value.get("kind") in ("channel", "listener"):
            return value["kind"]
        return None

    def _read(self, path):
        """The messages in ``path`` (none when it is missing), read by ``_read_bytes``."""
        data = self._read_bytes(path)
        return [] if data is None else self._parse(path, data)

    def _read_bytes(self, path):
        """The bytes of the file ``path`` (None when it is missing). Opened as the Node side opens a channel's
        files: never through a symbolic link, never blocking on a FIFO, and only a regular file of this user
        or root (else ``IpcError`` ``PermissionDenied``)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC)
        except OSError as error:
            if error.errno == errno.ENOENT:
                return None
            raise _open_error(error, path, self.directory)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid not in (os.geteuid(), 0):
                raise IpcError("PermissionDenied", "%s is not a regular file of this user: remove it (only the "
                               "channel's sides create files there)" % os.path.basename(path), self.directory)
            chunks = []
            while True:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)
        except OSError as error:
            raise _open_error(error, path, self.directory)
        finally:
            os.close(fd)

    def _parse(self, path, data):
        """The JSON array of ``data`` (the file ``path``); ``Decode`` when ipckit could not read it."""
        try:
            content = data.decode("utf-8")
        except UnicodeDecodeError as error:
            # serde_json (ipckit) reads UTF-8 text only: such a file is refused, never overwritten
            raise IpcError("Decode", "%s is not UTF-8 text: %s" % (os.path.basename(path), error), self.directory)
        if content.strip() == "":
            return []
        try:
            value = json.loads(content)
        except (ValueError, RecursionError) as error:  # nested too deep for Python's parser: not a file ipckit reads
            raise IpcError("Decode", "%s is not JSON: %s" % (os.path.basename(path), error), self.directory)
        if not isinstance(value, list):
            raise IpcError("Decode", "%s is not a JSON array" % os.path.basename(path), self.directory)
        # what serde_json (ipckit) and the Node side refuse, Python's json reads: NaN, Infinity, a lone surrogate
        for item in value:
            why = _unwritable(item)
            if why is not None:
                raise IpcError("Decode", "%s is not a JSON array of messages: %s" % (os.path.basename(path), why),
                               self.directory)
        return value

    def _lock(self, path):
        """Takes ipckit's lock ``path``; returns the lock file's descriptor, kept open for ``_unlock``."""
        # the deadline is the monotonic clock's, held up to 50 ms longer while the wall clock a lock's age is
        # measured by has not passed it (the wall clock alone would stretch the wait by however far it steps back)
        started, started_wall = time.monotonic(), time.time()
        while True:
            ours = self._take(path)
            if ours is not None:
                return ours
            own = time.monotonic() - started
            late = own > self.lock_timeout and (time.time() - started_wall > self.lock_timeout
                                                or own > self.lock_timeout + 0.05)
            # a look after the deadline: a lock that turned stale as it came (an empty lock made just before,
            # with ``lock_timeout`` equal to ``stale_age``) is broken here, and taken below
            text = self._maybe_break(path)
            if late:
                ours = self._take(path)
                if ours is not None:
                    return ours
                if text and _pid_of(text) is None:
                    raise IpcError("Timeout", "%s holds %s, not a pid, for over %s s: such a lock is never broken "
                                   "(its holder cannot be judged); remove it if nothing uses it"
                                   % (os.path.basename(path), json.dumps(text[:40]), self.lock_timeout),
                                   self.directory)
                raise IpcError("Timeout", "the lock %s stayed held" % os.path.basename(path), self.directory)
            time.sleep(0.01)

    def _take(self, path):
        """Creates the lock ``path`` with our pid; its descriptor (kept open), or None if it exists."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC, 0o600)
        except OSError as error:
            if error.errno != errno.EEXIST:
                raise _os_error(error, "cannot take the lock %s" % os.path.basename(path), self.directory)
            return None
        try:
            os.write(fd, ("%d\n" % os.getpid()).encode())
        except OSError as error:
            os.unlink(path)  # ours: never left without its pid
            os.close(fd)
            raise _os_error(error, "cannot take the lock %s" % os.path.basename(path), self.directory)
        return fd

    def _unlock(self, path, fd):
        """Removes the lock ``path`` if it is still the file ``_take`` made (``fd``, open since: its inode is not
        reused meanwhile): one broken meanwhile (ipckit breaks a lock older than 5 s) is gone, or is another
        writer's now, and stays. Opens nothing: with no descriptor left it still lets go (a lock left naming our
        live pid would keep every later send out for good)."""
        try:
            mine, there = os.fstat(fd), os.lstat(path)
            if (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino):
                os.unlink(path)
        except OSError:
            pass  # removed meanwhile: nothing of ours to remove
        finally:
            os.close(fd)

    @staticmethod
    def _look(path):
        """The lock file at ``path`` as it is now: ``(text, inode, age)``, or None when there is none."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            return os.read(fd, 4096).decode("utf-8", "replace"), st.st_ino, time.time() - st.st_mtime
        except OSError:
            return None
        finally:
            os.close(fd)

    def _maybe_break(self, path):
        """Removes a lock whose holder is dead (or an empty one older than
        ``stale_age``); never a live one's, nor one holding other text (its
        holder cannot be judged), as the Node side rules. Returns the lock's text."""
        seen = self._look(path)
        if seen is None:
            return None
        text, ino, age = seen
        pid = _pid_of(text)
        stale = (not _alive(pid)) if pid is not None else (text == "" and age > self.stale_age)
        if stale:
            self._break(path, text, ino)
        return text

    def _break(self, path, text, ino):
        """Removes the lock judged stale if it is still the one judged (same inode and
        text): breakers take turns on the kernel lock (``flock``) of a side file, the
        one the Node side's breakers take, so two of them never both remove a lock
        (the second one removing the fresh lock the first then took)."""
        breaker = os.path.join(self.directory, ".effect-ipc-breaker.lock")
        try:
            fd = os.open(breaker, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError:
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                st = os.stat(breaker)
            except OSError:
                return  # another breaker is at work (or the file was removed meanwhile): look again later
            if (st.st_dev, st.st_ino) != (os.fstat(fd).st_dev, os.fstat(fd).st_ino):
                return
            try:
                os.ftruncate(fd, 0)
                os.write(fd, ("%d breaker\n" % os.getpid()).encode())
            except OSError:
                pass
            again = self._look(path)
            if again is not None and again[0] == text and again[1] == ino:
                try:
                    os.unlink(path)
                except OSError:
                    pass
            try:
                os.unlink(breaker)
            except OSError:
                pass
        finally:
            os.close(fd)

    def send(self, msg):
        """Appends a message (see ``message``) to this side's file under ipckit's lock.
        A message ipckit could not read back (nested deeper than serde_json
        reads, a lone surrogate, NaN, a value JSON has no text for) raises
        ``IpcError`` reason ``Encode``, as on the Node side, and nothing is written."""
        why = _unwritable(msg)
        if why is None:
            try:
                _pretty(msg)
            except (TypeError, ValueError) as error:
                why = str(error)
        if why is not None:
            raise IpcError("Encode", "ipckit could not read this message back: %s" % why, self.directory)
        lock = os.path.splitext(self.outbox)[0] + ".lock"
        ours = self._lock(lock)
        try:
            messages = self._read(self.outbox)
            messages.append(msg)
            if len(messages) > self.keep:
                messages = messages[len(messages) - self.keep:]
            self._replace(self.outbox, _pretty(messages).encode("utf-8"))
        finally:
            self._unlock(lock, ours)
        return msg

    def _replace(self, path, data):
        """Writes ``data`` to ipckit's ``<name>.tmp`` and renames it over ``path``, as the Node side does: a
        ``.tmp`` left there (only a lock holder writes it: a dead writer's, or a link or FIFO someone put
        there) is removed first, never followed nor written through; the new one is created exclusively,
        without following links, with the mode of the file it replaces (never group or other write bits)."""
        tmp = os.path.splitext(path)[0] + ".tmp"
        try:
            mode = os.lstat(path).st_mode & 0o755
        except OSError:
            mode = 0o600
        created = False
        try:
            try:
                try:
                    os.unlink(tmp)
                except OSError as error:
                    if error.errno != errno.ENOENT:
                        raise
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC, mode)
                created = True
                try:
                    try:
                        os.fchmod(fd, mode)  # exactly the mode (the umask only narrows it)
                    except OSError:
                        pass  # a file system without modes keeps what it made
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                finally:
                    os.close(fd)
                os.rename(tmp, path)
                created = False
            finally:
                if created:
                    os.unlink(tmp)  # a failed write: the file it would replace stays whole
        except OSError as error:
            raise _os_error(error, "cannot write %s" % os.path.basename(path), self.directory)

    def send_request(self, method, payload=None):
        """Sends a request; returns its id."""
        return self.send(message("request", method=method, payload=payload))["id"]

    def send_response(self, reply_to, payload=None):
        """Answers request ``reply_to``."""
        self.send(message("response", reply_to=reply_to, payload=payload))

    def send_error(self, reply_to, error):
        """Answers request ``reply_to`` with an error text."""
        self.send(message("response", reply_to=reply_to, error=error))

    def send_event(self, method, payload=None):
        """Sends an event."""
        self.send(message("event", method=method, payload=payload))

    def _poll(self):
        """Queues what the inbox holds that was not delivered yet: each message, and for each element that is not
        one an ``IpcError`` ``Decode`` (the Node side's ``Messages.fromJson``), each once (by id, or by its text)."""
        keys = []
        for value in self._read(self.inbox):
            key = _key_of(value)
            keys.append(key)
            if key not in self._delivered:
                self._delivered.add(key)
                why = _not_a_message(value)
                self._queue.append((key, value if why is None else IpcError(
                    "Decode", "%s holds an element that is not a message: %s"
                    % (os.path.basename(self.inbox), why), self.directory)))
        self._delivered &= set(keys) | set(key for key, _ in self._queue)

    def receive(self, timeout=None):
        """The next message from the other side, each once, in order; ``Timeout`` after ``timeout`` seconds.
        An element of the file that is not a message raises ``IpcError`` ``Decode`` in its turn (once); the
        next ``receive`` goes on with the messages after it, as the Node side's channel yields them."""
        check_seconds(timeout, "timeout", self.directory)
        deadline = None if timeout is None else time.time() + timeout
        while True:
            if not self._queue:
                self._poll()
            if self._queue:
                item = self._queue.pop(0)[1]
                if isinstance(item, IpcError):
                    raise item
                return item
            if deadline is not None and time.time() >= deadline:
                raise IpcError("Timeout", "no message within %s s" % timeout, self.directory)
            time.sleep(self.poll_interval)

    def wait_response(self, request_id, timeout=10.0):
        """The response to ``request_id``; other messages stay queued for ``receive``. ``Timeout`` after
        ``timeout`` seconds (None: for ever; ``InvalidOption`` as for ``receive``)."""
        check_seconds(timeout, "timeout", self.directory)
        deadline = None if timeout is None else time.time() + timeout
        while True:
            self._poll()
            for i, (_, msg) in enumerate(self._queue):
                if isinstance(msg, dict) and msg.get("type") == "response" and msg.get("reply_to") == request_id:
                    return self._queue.pop(i)[1]
            if deadline is not None and time.time() >= deadline:
                raise IpcError("Timeout", "no response within %s s" % timeout, self.directory)
            time.sleep(self.poll_interval)

    def request(self, method, payload=None, timeout=10.0):
        """Sends a request and waits for its response message (a bad ``timeout``: nothing is sent)."""
        check_seconds(timeout, "timeout", self.directory)
        return self.wait_response(self.send_request(method, payload), timeout)
