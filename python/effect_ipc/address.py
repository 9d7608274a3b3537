"""Where ``unix:`` and ``pipe:`` addresses live, the same way as the Node
side (``SocketPath.ts``): ``unix:///abs/path.sock`` is a socket file,
``unix:@name`` a Linux abstract socket, ``pipe://name`` a socket named
``name.sock`` in this user's private runtime directory
(``$XDG_RUNTIME_DIR/effect-ipc``, else a 0700 ``<tmp>/effect-ipc-<uid>``)."""
import os
import re
import stat
import sys

try:  # Python 3
    from urllib.parse import unquote
except ImportError:  # pragma: no cover
    from urllib import unquote

from .errors import IpcError

MAX_PATH_BYTES = 107 if sys.platform.startswith("linux") else 103
_PIPE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):(//)?(.*)$", re.S)


class SocketPath(object):
    """A resolved endpoint: ``path`` as handed to the OS (``\\0name`` for an
    abstract socket) and ``kind`` (``file`` or ``abstract``)."""

    def __init__(self, path, kind):
        self.path = path
        self.kind = kind

    def __repr__(self):
        return "SocketPath(%r, %r)" % (self.path, self.kind)


def _tmpdir():
    # as Node's os.tmpdir(): $TMPDIR (then $TMP, $TEMP) without a trailing slash, else /tmp
    for name in ("TMPDIR", "TMP", "TEMP"):
        value = os.environ.get(name)
        if value:
            return value.rstrip("/") or "/"
    return "/tmp"


def runtime_dir(raw=None):
    """This user's private directory for ``pipe://`` sockets, created 0700;
    one another user owns or others can enter is refused (``PermissionDenied``)."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base:
        directory = os.path.join(base, "effect-ipc")
    else:
        directory = os.path.join(_tmpdir(), "effect-ipc-%d" % os.getuid())
    try:
        os.makedirs(directory, 0o700)
    except OSError:
        pass
    try:
        st = os.lstat(directory)
    except OSError as error:
        raise IpcError("PermissionDenied", "no private runtime directory: %s" % error, raw)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or (st.st_mode & 0o077) != 0:
        raise IpcError("PermissionDenied", "%s is not a private directory of this user" % directory, raw)
    return directory


def _check_length(path, raw):
    size = len(path.encode("utf-8"))
    if size > MAX_PATH_BYTES:
        raise IpcError(
            "NameTooLong", "socket path is %d bytes; %s allows at most %d" % (size, sys.platform, MAX_PATH_BYTES), raw
        )


def resolve(raw):
    """Resolves a ``unix:`` or ``pipe:`` address; raises ``IpcError``
    (``InvalidAddress``, ``UnsupportedScheme``, ``NameTooLong``, ...)."""
    match = _SCHEME.match(raw)
    if match is None or not match.group(3):
        raise IpcError("InvalidAddress", "an address is scheme://location, e.g. unix:///tmp/app.sock", raw)
    scheme, rest = match.group(1).lower(), match.group(3)
    if scheme == "pipe":
        if not _PIPE_NAME.match(rest):
            raise IpcError("InvalidAddress", "a pipe name is 1-200 of A-Z a-z 0-9 . _ -", raw)
        path = os.path.join(runtime_dir(raw), rest + ".sock")
        _check_length(path, raw)
        return SocketPath(path, "file")
    if scheme != "unix":
        raise IpcError("UnsupportedScheme", "this library serves unix:// and pipe://", raw)
    if rest.startswith("@"):
        if not sys.platform.startswith("linux"):
            raise IpcError("UnsupportedPlatform", "abstract sockets (unix:@name) exist only on Linux", raw)
        path = "\0" + rest[1:]
        _check_length(path, raw)
        return SocketPath(path, "abstract")
    if not rest.startswith("/"):
        raise IpcError("InvalidAddress", "expected an absolute path, e.g. unix:///tmp/app.sock", raw)
    path = unquote(rest)
    _check_length(path, raw)
    return SocketPath(path, "file")
