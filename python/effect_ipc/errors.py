"""Errors of effect-ipc, as one exception class with a reason (the same
reasons as the Node side's ``IpcError``: ``Closed``, ``ConnectionLost``,
``Protocol``, ``FrameTooLarge``, ``Timeout``, ``NotFound``, ...)."""


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


class Closed(IpcError):
    """The channel was closed: by this side, or gracefully by the peer (a close frame)."""

    def __init__(self, detail="the channel is closed", address=None):
        IpcError.__init__(self, "Closed", detail, address)
