"""Errors of effect-ipc, as one exception class with a reason (the same
reasons as the Node side's ``IpcError``: ``Closed``, ``ConnectionLost``,
``Protocol``, ``FrameTooLarge``, ``Timeout``, ``NotFound``, ...)."""


import errno as _errno
import os as _os
import threading as _threading

_REASONS = {
    _errno.ENOSPC: "NoSpace", getattr(_errno, "EDQUOT", _errno.ENOSPC): "NoSpace", _errno.EFBIG: "NoSpace",
    _errno.EMFILE: "NoSpace", _errno.ENFILE: "NoSpace",
    _errno.ENOENT: "NotFound", _errno.EACCES: "PermissionDenied", _errno.EPERM: "PermissionDenied",
    _errno.EEXIST: "AlreadyExists", _errno.ENAMETOOLONG: "NameTooLong",
}


def reason_of(error, fallback):
    """The reason an ``OSError`` gives, named as the Node side names it (``NoSpace`` for a full disk, a quota or
    no descriptor left; ``PermissionDenied``, ``NotFound``, ...); ``fallback`` for any other errno."""
    return _REASONS.get(error.errno, fallback)


def check_seconds(value, name, address=None, positive=False, optional=None):
    """``IpcError`` reason ``InvalidOption`` unless ``value`` (the wait ``name``) is a finite number of seconds of
    at least 0 (above 0 with ``positive``) and at most ``threading.TIMEOUT_MAX`` (about 292 years: a longer wait
    overflows Python's clock) or, when ``optional`` (by default: without ``positive``), None (a bool is not a
    number here)."""
    optional = not positive if optional is None else optional
    if value is None and optional:
        return
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or value != value
            or not 0 <= value <= _threading.TIMEOUT_MAX or (positive and value == 0)):
        raise IpcError("InvalidOption", "%s %r is not %sa number of seconds %s %d" % (
            name, value, "None or " if optional else "", "above 0, at most" if positive else "from 0 to",
            _threading.TIMEOUT_MAX), address)


def check_count(value, name, address=None, least=1, optional=False):
    """``IpcError`` reason ``InvalidOption`` unless ``value`` (the size, count or limit ``name``) is a whole number
    of at least ``least`` or, with ``optional``, None (a bool is not a number here)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise IpcError("InvalidOption", "%s %r is not %sa whole number of at least %d"
                       % (name, value, "None or " if optional else "", least), address)


def check_path(value, what):
    """``value`` (the path ``what``) as a str, from a str or an ``os.PathLike`` of one; ``IpcError`` reason
    ``InvalidAddress`` for anything else (None, a number, bytes: paths are text, as on the Node side), an empty
    path or one holding a NUL."""
    try:
        path = _os.fspath(value) if isinstance(value, _os.PathLike) else value
    except TypeError:  # a __fspath__ that returns neither str nor bytes
        path = None
    if not isinstance(path, str) or not path or "\0" in path:
        raise IpcError("InvalidAddress", "%s %r is not a path: a non-empty str (or os.PathLike of one) without NUL"
                       % (what, value))
    return path


def check_bytes(value, what, address=None):
    """``value`` as bytes-like for a message (a memoryview as its bytes); ``IpcError`` reason ``Encode`` for
    anything else (a str, a dict, None: as a Node channel refuses what is not a Uint8Array)."""
    if isinstance(value, memoryview):
        return value.tobytes()
    if not isinstance(value, (bytes, bytearray)):
        raise IpcError("Encode", "%s takes bytes (got %s)" % (what, type(value).__name__), address)
    return value


class IpcError(Exception):
    """A failure of a channel, an address or a log; ``reason`` says which kind."""

    def __init__(self, reason, detail, address=None):
        self.reason = reason
        self.detail = detail
        self.address = address
        text = "%s: %s" % (reason, detail)
        if address is not None:
            text += " (%s)" % address
        Exception.__init__(self, text)


def fresh(error):
    """A new error like ``error`` (same class and fields, its cause kept): a
    stored failure raised again each time would keep every raise's traceback."""
    copy = error.__class__.__new__(error.__class__)
    copy.__dict__.update(error.__dict__)
    copy.args = error.args
    copy.__cause__ = error.__cause__
    return copy


class Closed(IpcError):
    """The channel was closed: by this side, or gracefully by the peer (a close frame)."""

    def __init__(self, detail="the channel is closed", address=None):
        IpcError.__init__(self, "Closed", detail, address)
