"""The child side of a Node ``ChildPipe.spawn``: the parent sets
``EFFECT_IPC_FD`` to ``3`` (a connected socket on fd 3, the default) or
``stdio`` (frames on stdin and stdout); ``from_parent()`` gives the channel."""
import json
import os
import socket
import stat

from .channel import Channel, PeerInfo, check_options
from .errors import IpcError

ENV = "EFFECT_IPC_FD"


def from_parent(**options):
    """The channel to the parent process that spawned this one with
    ``ChildPipe.spawn``. Raises ``IpcError`` (``NotFound``) when this process
    was not started that way. Options as for ``Channel`` (``heartbeat``, ...).
    With ``stdio``, stdout carries frames: print nothing to it."""
    address = "child:parent"
    check_options(options, address)
    where = os.environ.get(ENV)
    peer = PeerInfo(pid=os.getppid(), description="parent process")
    # ASCII digits only: str.isdigit() takes "²", which int() refuses (a ValueError, not NotFound)
    if where is not None and where != "" and all("0" <= c <= "9" for c in where):
        fd = int(where)
        try:
            sock = socket.socket(fileno=fd)
        except (OSError, OverflowError, ValueError) as error:
            raise IpcError("NotFound", "no channel to a parent on fd %d: %s" % (fd, error), address)
        return Channel.over_socket(sock, address, peer, **options)
    if where == "stdio":
        for fd in (0, 1):
            try:
                mode = os.fstat(fd).st_mode
            except OSError as error:
                raise IpcError("NotFound", "no channel to a parent on fd %d: %s" % (fd, error), address)
            if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
                raise IpcError("NotFound", "no channel to a parent: stdin and stdout are not pipes", address)
        read_fd, write_fd = os.dup(0), os.dup(1)
        # frames own fd 1 now: print() to the original stdout would corrupt them
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)

        def write(data):
            view = memoryview(data)
            while view:
                view = view[os.write(write_fd, view):]

        open_fds = [read_fd, write_fd]

        def close_fd(fd):
            # each descriptor is closed once: a second close could hit a reused number
            if fd in open_fds:
                open_fds.remove(fd)
                os.close(fd)

        def end_write():
            close_fd(write_fd)

        def release():
            close_fd(read_fd)
            close_fd(write_fd)

        return Channel(lambda n: os.read(read_fd, n), write, end_write, release, address, peer, **options)
    if where:
        raise IpcError("NotFound", "%s is %s, neither a descriptor's number nor stdio: this process was not "
                       "started by ChildPipe.spawn" % (ENV, json.dumps(where)), address)
    raise IpcError("NotFound", "%s is not set: this process was not started by ChildPipe.spawn" % ENV, address)
