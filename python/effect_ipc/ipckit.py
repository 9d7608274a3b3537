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

from .errors import IpcError, reason_of

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


def _open_error(error, path, directory):
    """An ``OSError`` of opening or reading a channel file as ``IpcError``: ``PermissionDenied`` for what the
    Node side refuses (a link, not a regular file, no access), ``NoSpace`` for no descriptor left, else ``Open``
    (its fallback)."""
    refused = (errno.ELOOP, errno.EACCES, errno.EPERM, errno.ENXIO, errno.EISDIR)
    return IpcError("PermissionDenied" if error.errno in refused else reason_of(error, "Open"),
                    "cannot read %s: %s" % (os.path.basename(path), error), directory)


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


class IpckitChannel(object):
    """One end (``role`` ``backend`` or ``frontend``) of an ipckit file channel in ``directory``."""

    def __init__(self, directory, role, keep=KEEP, stale_age=5.0, lock_timeout=10.0, poll_interval=0.02):
        if role not in ("backend", "frontend"):
            raise IpcError("InvalidAddress", "the role is backend or frontend", directory)
        self.directory = directory
        self.role = role
        self.keep = keep
        self.stale_age = stale_age
        self.lock_timeout = lock_timeout
        self.poll_interval = poll_interval
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o700)
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

    def _read(self, path):
        """The messages in ``path`` (none when it is missing). Opened as the Node side opens a channel's
        files: never through a symbolic link, never blocking on a FIFO, and only a regular file of this user
        or root (else ``IpcError`` ``PermissionDenied``)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC)
        except OSError as error:
            if error.errno == errno.ENOENT:
                return []
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
            data = b"".join(chunks)
        except OSError as error:
            raise _open_error(error, path, self.directory)
        finally:
            os.close(fd)
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
        values = [v for v in self._read(self.inbox) if isinstance(v, dict) and isinstance(v.get("id"), str)]
        ids = set(v["id"] for v in values)
        for value in values:
            if value["id"] not in self._delivered:
                self._delivered.add(value["id"])
                self._queue.append(value)
        self._delivered &= ids | set(m["id"] for m in self._queue)

    def receive(self, timeout=None):
        """The next message from the other side, each once, in order; ``Timeout`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.time() + timeout
        while True:
            if not self._queue:
                self._poll()
            if self._queue:
                return self._queue.pop(0)
            if deadline is not None and time.time() >= deadline:
                raise IpcError("Timeout", "no message within %s s" % timeout, self.directory)
            time.sleep(self.poll_interval)

    def wait_response(self, request_id, timeout=10.0):
        """The response to ``request_id``; other messages stay queued for ``receive``."""
        deadline = time.time() + timeout
        while True:
            self._poll()
            for i, msg in enumerate(self._queue):
                if msg.get("type") == "response" and msg.get("reply_to") == request_id:
                    return self._queue.pop(i)
            if time.time() >= deadline:
                raise IpcError("Timeout", "no response within %s s" % timeout, self.directory)
            time.sleep(self.poll_interval)

    def request(self, method, payload=None, timeout=10.0):
        """Sends a request and waits for its response message."""
        return self.wait_response(self.send_request(method, payload), timeout)
