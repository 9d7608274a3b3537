"""Errors of effect-ipc, as one exception class with a reason (the same
reasons as the Node side's ``IpcError``: ``Closed``, ``ConnectionLost``,
``Protocol``, ``FrameTooLarge``, ``Timeout``, ``NotFound``, ...)."""


import errno as _errno

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


def check_seconds(value, name, address=None, positive=False):
    """``IpcError`` reason ``InvalidOption`` unless ``value`` (the wait ``name``) is a finite number of seconds of
    at least 0 (above 0 with ``positive``) or, without ``positive``, None (a bool is not a number here)."""
    if value is None and not positive:
        return
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or value != value
            or value in (float("inf"), float("-inf")) or value < 0 or (positive and value == 0)):
        raise IpcError("InvalidOption", "%s %r is not %s" % (
            name, value, "a finite number of seconds above 0" if positive
            else "None or a finite number of seconds of at least 0"), address)


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
