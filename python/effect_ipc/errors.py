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
