"""effect-ipc for Python: byte channels over unix:// and pipe:// sockets,
the child side of a Node ChildPipe, typed RPC with effect/rpc's JSON
messages (client and server), and the file:// log format (reader and
writer) with ipckit's FileChannel mode. Standard library only, Python 3.7+."""
from .channel import Channel, Heartbeat, Listener, PeerInfo, connect, listen, same_user_or_root
from .child import from_parent
from .errors import Closed, IpcError
from .rpc import RpcClient, RpcDefect, RpcError, RpcFailure, RpcInterrupted, RpcServer, Stream
from . import ipckit, log  # noqa: F401  (effect_ipc.ipckit and effect_ipc.log, as the README uses them)

__version__ = "0.1.0"

__all__ = [
    "Channel", "Closed", "Heartbeat", "IpcError", "Listener", "PeerInfo", "RpcClient", "RpcDefect", "RpcError",
    "RpcFailure", "RpcInterrupted", "RpcServer", "Stream", "connect", "from_parent", "listen", "same_user_or_root",
]
