"""Where ``unix:`` and ``pipe:`` addresses live, the same way as the Node
side (``SocketPath.ts``): ``unix:///abs/path.sock`` is a socket file,
``unix:@name`` a Linux abstract socket, ``pipe://name`` a socket named
``name.sock`` in this user's private runtime directory
(``$XDG_RUNTIME_DIR/effect-ipc`` when ``$XDG_RUNTIME_DIR`` is a directory of
this user that no other user can write, else a 0700 ``effect-ipc-<uid>`` under
the temp directory on Linux, under ``/tmp`` on macOS, whose ``$TMPDIR`` is too
long for its 104-byte socket paths). The rules are functions of (platform, env,
effective uid, tmpdir) (``resolve_on``, ``runtime_dir_for``; this process's host also
looks at ``$XDG_RUNTIME_DIR``, ``private_base``), so any platform's can be
checked on any machine."""
import os
import posixpath
import re
import stat
import sys

from .errors import IpcError


def max_path_bytes_for(platform):
    """Longest socket path on ``platform`` (``sys.platform``), in bytes without the
    final NUL: 107 on Linux (``sun_path`` holds 108), 103 elsewhere (macOS: 104)."""
    return 107 if platform.startswith("linux") else 103


MAX_PATH_BYTES = max_path_bytes_for(sys.platform)
_PIPE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}\Z")  # \Z: "$" matches before a final newline
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):(//)?(.*)$", re.S)
_BAD_PERCENT = re.compile(r"%(?![0-9a-fA-F]{2})")
_ESCAPES = re.compile(r"(?:%[0-9a-fA-F]{2})+")


def _escaped_bytes(run):
    return bytes(bytearray(int(run[i + 1:i + 3], 16) for i in range(0, len(run), 3)))


def _malformed_escape(text):
    """Where ``text`` has a ``%`` that does not start a ``%XX`` escape of UTF-8, described; None when it is
    well formed (as Node's ``Address.parse``)."""
    bad = _BAD_PERCENT.search(text)
    if bad is not None:
        return '"%s" at %d is not a %%XX escape' % (text[bad.start():bad.start() + 3], bad.start())
    for run in _ESCAPES.finditer(text):
        try:
            _escaped_bytes(run.group(0)).decode("utf-8")
        except UnicodeDecodeError:
            return '"%s" at %d is not UTF-8' % (run.group(0), run.start())
    return None


def _decode_escapes(text):
    """``text`` with its (well-formed) ``%XX`` escapes decoded, as ``decodeURIComponent``."""
    return _ESCAPES.sub(lambda run: _escaped_bytes(run.group(0)).decode("utf-8"), text)


class SocketPath(object):
    """A resolved endpoint: ``path`` as handed to the OS (``\\0name`` for an
    abstract socket) and ``kind`` (``file`` or ``abstract``)."""

    def __init__(self, path, kind):
        self.path = path
        self.kind = kind

    def __repr__(self):
        return "SocketPath(%r, %r)" % (self.path, self.kind)


def _tmpdir():
    # as Node's os.tmpdir(): $TMPDIR (then $TMP, $TEMP) without a trailing slash, else /tmp; like
    # Node, not from the environment in a process whose effective ids are not its real ones
    if hasattr(os, "geteuid") and (os.getuid() != os.geteuid() or os.getgid() != os.getegid()):
        return "/tmp"
    for name in ("TMPDIR", "TMP", "TEMP"):
        value = os.environ.get(name)
        if value:
            return value.rstrip("/") or "/"
    return "/tmp"


def private_base(directory):
    """True when ``directory`` is an absolute path to a directory (not a link) of
    this process's effective user that no other user can write (no group or
    other write bit, sticky or not): then no one else can rename or replace what
    is in it. Looks at the file system; false when it cannot be looked at. As
    Node's ``SocketPath.privateBase``."""
    if not os.path.isabs(directory):
        return False
    try:
        st = os.lstat(directory)
    except (OSError, ValueError):
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and (st.st_mode & 0o022) == 0


def runtime_dir_for(platform, env, uid, tmpdir, base_fits=None):
    """Where ``pipe://`` sockets live on that host: ``$XDG_RUNTIME_DIR/effect-ipc``
    when that is set and ``base_fits`` takes it (for this process's host:
    ``private_base``, so not, say, the ``XDG_RUNTIME_DIR`` of another user that
    ``su`` without ``-`` kept, nor one others may write); else, as when it is
    unset, ``/tmp/effect-ipc-<uid>`` on macOS and ``<tmpdir>/effect-ipc-<uid>``
    elsewhere. Creates nothing; touches the file system only through
    ``base_fits`` (a described host without it: not at all, its
    ``XDG_RUNTIME_DIR`` is taken as fit). As Node's ``SocketPath.runtimeDirOn``."""
    base = env.get("XDG_RUNTIME_DIR")
    if base and (base_fits is None or base_fits(base)):
        return posixpath.join(base, "effect-ipc")
    tmp = "/tmp" if platform == "darwin" else tmpdir
    return posixpath.join(tmp, "effect-ipc-%s" % ("user" if uid is None else uid))


def _this_host():
    return sys.platform, os.environ, os.geteuid(), _tmpdir(), private_base


def _private_dir(directory, raw, make, what):
    """``directory``, made 0700 by ``make`` when missing, if it is a directory of
    this user that others cannot enter; else ``PermissionDenied``."""
    try:
        make(directory, 0o700)
    except OSError:
        pass
    try:
        st = os.lstat(directory)
    except OSError as error:
        raise IpcError("PermissionDenied", "no private %s directory: %s" % (what, error), raw)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or (st.st_mode & 0o077) != 0:
        raise IpcError("PermissionDenied", "%s is not a private directory of this user" % directory, raw)
    return directory


def runtime_dir(raw=None):
    """This user's private directory for ``pipe://`` sockets (``runtime_dir_for``
    this process's host), created 0700;
    one another user owns or others can enter is refused (``PermissionDenied``)."""
    return _private_dir(runtime_dir_for(*_this_host()), raw, os.makedirs, "runtime")


def lock_dir(raw=None):
    """Where this user's path locks live, as Node's listeners find it: the
    private runtime directory; when another user made that first
    (``<tmp>/effect-ipc-<uid>``, with ``XDG_RUNTIME_DIR`` unset or not used), ``~/.effect-ipc-locks``
    (0700) in the home directory of the password database, when that is this
    user's and not writable by others."""
    try:
        return runtime_dir(raw)
    except IpcError as error:
        try:
            import pwd
            home = pwd.getpwuid(os.geteuid()).pw_dir
            st = os.lstat(home)
        except (ImportError, KeyError, OSError):
            raise error
        if not os.path.isabs(home) or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or (st.st_mode & 0o022) != 0:
            raise error
        try:
            return _private_dir(os.path.join(home, ".effect-ipc-locks"), raw, os.mkdir, "lock")
        except IpcError as second:
            raise IpcError("PermissionDenied", "%s; and %s" % (error.detail, second.detail), raw)


def _check_length(path, raw, platform=sys.platform):
    size = len(path.encode("utf-8"))
    limit = max_path_bytes_for(platform)
    if size > limit:
        raise IpcError(
            "NameTooLong",
            "socket path is %d bytes; %s allows at most %d (%d with the final NUL)" % (size, platform, limit, limit + 1),
            raw,
        )


def resolve_on(raw, platform, env, uid, tmpdir, base_fits=None):
    """Resolves a ``unix:`` or ``pipe:`` address as it would be on that host
    (``base_fits``: see ``runtime_dir_for``), checking its length limit; creates nothing."""
    if not isinstance(raw, str):
        # not shown: what is not an address may hold anything (a secret among it)
        raise IpcError("InvalidAddress", "an address is a string, e.g. unix:///tmp/app.sock (got %s)" % type(raw).__name__)
    # no file, socket or host name holds a NUL (the Node side refuses one first too)
    if "\0" in raw:
        raise IpcError("InvalidAddress", "an address holds no NUL character", raw)
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise IpcError("InvalidAddress", "the address is not valid Unicode (a lone surrogate)", raw)
    match = _SCHEME.match(raw)
    if match is None or not match.group(3):
        raise IpcError("InvalidAddress", "an address is scheme://location, e.g. unix:///tmp/app.sock", raw)
    scheme, rest = match.group(1).lower(), match.group(3)
    malformed = _malformed_escape(rest)
    if malformed is not None:
        raise IpcError("InvalidAddress", "malformed percent-escape: %s" % malformed, raw)
    if scheme == "pipe":
        if not _PIPE_NAME.match(rest):
            raise IpcError("InvalidAddress", "a pipe name is 1-200 of A-Z a-z 0-9 . _ -", raw)
        path = posixpath.join(runtime_dir_for(platform, env, uid, tmpdir, base_fits), rest + ".sock")
        _check_length(path, raw, platform)
        return SocketPath(path, "file")
    if scheme != "unix":
        raise IpcError("UnsupportedScheme", "this library serves unix:// and pipe://", raw)
    if rest.startswith("@"):
        if not platform.startswith("linux"):
            raise IpcError("UnsupportedPlatform", "abstract sockets (unix:@name) exist only on Linux", raw)
        if rest == "@":
            # ``unix:@`` alone named the empty abstract name, where a name was surely meant
            raise IpcError("InvalidAddress", "an abstract socket needs a name: unix:@name", raw)
        path = "\0" + rest[1:]
        # an abstract name fills sun_path after its leading NUL, with no final one: 107 bytes on Linux
        size = len(rest[1:].encode("utf-8"))
        limit = max_path_bytes_for(platform)
        if size > limit:
            raise IpcError(
                "NameTooLong", "abstract socket name is %d bytes; %s allows at most %d" % (size, platform, limit), raw
            )
        return SocketPath(path, "abstract")
    if "?" in rest or "#" in rest:
        raise IpcError(
            "InvalidAddress", 'unix:// takes no query or fragment: a path\'s own "?" and "#" are written %3F and %23', raw
        )
    if not rest.startswith("/"):
        raise IpcError("InvalidAddress", "expected an absolute path, e.g. unix:///tmp/app.sock", raw)
    path = _decode_escapes(rest)
    if "\0" in path:
        raise IpcError("InvalidAddress", "a path holds no NUL character (%00)", raw)
    _check_length(path, raw, platform)
    return SocketPath(path, "file")


def resolve(raw):
    """Resolves a ``unix:`` or ``pipe:`` address on this machine; raises ``IpcError``
    (``InvalidAddress``, ``UnsupportedScheme``, ``NameTooLong``, ...). A ``pipe:``
    address's runtime directory is created (and checked) here."""
    resolved = resolve_on(raw, *_this_host())
    if resolved.kind == "file" and raw[:5].lower() == "pipe:":
        runtime_dir(raw)
    return resolved
