"""Typed RPC with effect/rpc's JSON messages over effect-ipc channels: a
client for a Node ``RpcGroup`` server and a server of Python handlers for a
Node ``RpcClient``. The messages, one per data frame, are specified in the
repository's ``docs/wire.md``; this module was written from it.

Client::

    with RpcClient.connect("unix:///tmp/demo.sock") as client:
        client.call("Add", {"a": 1, "b": 2})            # 3
        try:
            client.call("Divide", {"a": 1, "b": 0})
        except RpcFailure as failure:
            failure.error                               # {"_tag": "DivisionByZero", "dividend": 1}
        list(client.stream("Countdown", {"from": 3}))   # [3, 2, 1]

Server::

    server = RpcServer({"Add": lambda p: p["a"] + p["b"]})
    server.serve(listen("unix:///tmp/py.sock"))
"""
import collections
import collections.abc
import inspect
import itertools
import json
import logging
import threading
import time

try:
    import queue
except ImportError:  # pragma: no cover
    import Queue as queue

from . import channel as channels
from .errors import Closed, IpcError, check_count, check_seconds, fresh

log = logging.getLogger("effect_ipc.rpc")

HELLO_PREFIX = "effect-rpc:"
HELLO_JSON = (HELLO_PREFIX + "json").encode("ascii")
# a hello is at most this many bytes; what a refusal shows of a name is cut to MAX_SHOWN_NAME characters
MAX_HELLO = 64
MAX_SHOWN_NAME = 32
# a first message without a hello is JSON when it is JSON text (an object or array) of at most this size
MAX_SNIFFED = 64 * 1024


def _encode(message):
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _headers(headers, address):
    """A request's headers as the wire takes them (``[[name, value], ...]``) from ``(name, value)`` pairs of
    str or a dict of them; ``IpcError`` reason ``Encode`` for anything else."""
    pairs = headers.items() if isinstance(headers, dict) else headers
    try:
        encoded = [list(pair) for pair in pairs]
    except TypeError:
        encoded = None
    if encoded is None or isinstance(headers, (str, bytes)) or \
            not all(len(pair) == 2 and all(isinstance(part, str) for part in pair) for pair in encoded):
        raise IpcError("Encode", "headers are (name, value) pairs of str or a dict of them, got %s"
                       % ("%r" % (headers,))[:100], address)
    return encoded


def _no_constant(name):
    raise ValueError("%s is not JSON" % name)


def _number(text):
    """A JSON integer: an ``int``, or as JavaScript reads it (a float, ``inf`` past its range) when it has
    more digits than Python converts (3.11's limit, also in 3.7 to 3.10 security releases)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def _decode(data):
    """A message's JSON (``ValueError`` when it is not UTF-8 JSON text, or nests deeper than Python's
    parser goes; NaN and Infinity are not JSON, as for Node)."""
    text = data.decode("utf-8")
    try:
        try:
            return json.loads(text, parse_constant=_no_constant)
        except ValueError as error:
            if "digits" not in str(error):
                raise
            # an integer over int()'s digit limit: read again, such integers as JavaScript reads them (a
            # hook called for every integer costs 2.5x on messages of many: only for these)
            return json.loads(text, parse_constant=_no_constant, parse_int=_number)
    except RecursionError:
        raise ValueError("JSON nested deeper than Python's parser goes (its recursion limit)")


def _shown(value, limit=None):
    """``value`` as JSON text for a message (cut at ``limit`` characters), or a word on why it cannot be."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError) as error:
        text = "<%s>" % ("nested too deep to show" if isinstance(error, RecursionError) else "not JSON")
    return text if limit is None else text[:limit]


def _varint(n):
    """``n`` as an unsigned LEB128 varint."""
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


# effect 4.1's schema-binary envelope of an RPC message (RpcSerialization.layerSchemaBinary): the
# fingerprint-mode marker, then the 8-byte fingerprint of RpcMessage.EncodedSchema's layout
_BINARY_ENVELOPE = b"\x21" + bytes(bytearray([0xA7, 0x1F, 0xBF, 0x48, 0x86, 0x12, 0xFF, 0x6B]))
_BINARY_DEFECT = b"\x02"  # the Defect member's selector
_BINARY_JSON = b"\x20"  # the (default-mode) envelope of a defect, encoded as JSON text


def binary_defect(text):
    """The message ``{"_tag": "Defect", "defect": text}`` in effect's schema-binary
    serialization (effect 4.1, as the Node side's ``IpcRpc.layerSerialization``):
    the only binary message this package writes, to tell a binary client why it
    is refused. Its bytes follow what Node's encoder writes (a varint frame
    length, the envelope, the member, the defect's bytes: JSON text); the tests
    check them against a real Node client."""
    defect = _BINARY_JSON + json.dumps(text, ensure_ascii=False).encode("utf-8")
    field = _varint(len(defect)) + defect
    body = _BINARY_ENVELOPE + _BINARY_DEFECT + _varint(len(field)) + field
    return _varint(len(body)) + body


def _packed_text(text):
    data = text.encode("utf-8")
    return b"\x06" + _varint(len(data)) + data


def packed_defect(text):
    """The message ``{"_tag": "Defect", "defect": text}`` in effect-ipc's packed
    serialization (the Node side's default, ``IpcRpc.layerSerialization``; its
    layout is in docs/wire.md, section 7): the only packed message this package
    writes, to tell a packed client why it is refused."""
    return (b"\xe1\x08\x02" + _packed_text("_tag")[1:] + _packed_text("Defect")
            + _packed_text("defect")[1:] + _packed_text(text))


def _is_json_message(data):
    """True for a small first message that is JSON text (an object or array): a client without hello speaking JSON."""
    if len(data) > MAX_SNIFFED or not data.lstrip(b" \t\r\n")[:1] in (b"{", b"["):
        return False
    try:
        _decode(data)
    except ValueError as error:
        # JSON nested deeper than Python parses is still a JSON client's, whose message gets a Defect
        return "nested deeper" in str(error)
    return True


def read_hello(data):
    """What a connection's first message asks for, as the Node server reads it
    (``docs/wire.md``, the hello): ``(name, is_hello, shown)``, ``name`` the
    serialization (None for a bad hello), ``shown`` how a refusal names it. A
    first message that is no hello is the first message: ``json`` when it is
    small JSON text, ``binary`` otherwise."""
    prefix = HELLO_PREFIX.encode("ascii")
    if not data.startswith(prefix):
        name = "json" if _is_json_message(data) else "binary"
        return name, False, json.dumps(name)
    if len(data) > MAX_HELLO:
        return None, True, "a hello of %d bytes (at most %d)" % (len(data), MAX_HELLO)
    try:
        name = data[len(prefix):].decode("utf-8")
    except UnicodeDecodeError:
        return None, True, "a hello that is not UTF-8 text"
    if len(name) > MAX_SHOWN_NAME:
        shown = "%s (cut from %d characters)" % (json.dumps(name[:MAX_SHOWN_NAME], ensure_ascii=False), len(name))
    else:
        shown = json.dumps(name, ensure_ascii=False)
    return name, True, shown


class RpcError(Exception):
    """A call that did not succeed (see the subclasses)."""


class RpcFailure(RpcError):
    """The procedure failed with a typed error: ``error`` is the tagged value
    (``{"_tag": "DivisionByZero", "dividend": 1}``), ``tag`` its ``_tag``.
    Raise it in a server handler to fail a call with ``error``."""

    def __init__(self, error):
        self.error = error
        self.tag = error.get("_tag") if isinstance(error, dict) else None
        tag = self.tag if isinstance(self.tag, str) else _shown(self.tag)
        RpcError.__init__(self, "%s %s" % (tag, _shown(error)) if self.tag else _shown(error))


class RpcDefect(RpcError):
    """The server died handling the call, or could not serve this client
    (``defect`` as it was sent: often a string or ``{"name", "message"}``)."""

    def __init__(self, defect):
        self.defect = defect
        text = defect.get("message", defect) if isinstance(defect, dict) else defect
        RpcError.__init__(self, "defect: %s" % (text if isinstance(text, str) else _shown(text),))


class RpcInterrupted(RpcError):
    """The call was cancelled (by this client, or interrupted on the server)."""

    def __init__(self, detail="the call was interrupted"):
        RpcError.__init__(self, detail)


def _valid_exit(exit):
    """True for an encoded ``Exit``: a Success, or a Failure whose cause is an array of objects."""
    if not isinstance(exit, dict):
        return False
    if exit.get("_tag") == "Success":
        return True
    cause = exit.get("cause")
    return exit.get("_tag") == "Failure" and isinstance(cause, list) and all(isinstance(r, dict) for r in cause)


def exit_result(exit):
    """The value of an encoded ``Exit``, or the ``RpcError`` it stands for raised."""
    if exit.get("_tag") == "Success":
        return exit.get("value")
    cause = exit.get("cause") or []
    for tag in ("Fail", "Die"):
        for reason in cause:
            if reason.get("_tag") == tag:
                raise RpcFailure(reason.get("error")) if tag == "Fail" else RpcDefect(reason.get("defect"))
    raise RpcInterrupted()


# ---- client -----------------------------------------------------------------------


# chunks a server may send past the client's acknowledgements (it sends the next once the last is acknowledged):
# more break the protocol, and would be held without bound
MAX_UNACKED_CHUNKS = 64


class _Pending(object):
    def __init__(self, request_id, stream):
        self.id = request_id
        self.stream = stream
        self.items = queue.Queue()
        self.done = False
        # chunks received and not yet acknowledged
        self.unacked = 0


class Call(object):
    """A call in flight (``RpcClient.start``): ``result`` waits for it, ``cancel`` interrupts it."""

    def __init__(self, client, pending):
        self._client = client
        self._pending = pending
        self._outcome = None
        # a streamed procedure's elements so far (None until a Chunk arrives): ``result`` collects them
        self._values = None

    @property
    def id(self):
        """The request id."""
        return self._pending.id

    def result(self, timeout=None):
        """The call's value; raises ``RpcFailure``, ``RpcDefect``, ``RpcInterrupted``, or ``IpcError`` (link lost, ``Timeout``).
        A streamed procedure's elements are collected (each chunk acknowledged as it
        arrives) and returned as a list once the stream ends, all held in memory
        until then (use ``stream`` for a long one); ``timeout`` bounds the whole wait (``InvalidOption`` when
        it is not None or a finite number of seconds of at least 0; its ``Timeout`` leaves the call running).
        Any other exception while it waits (Ctrl-C's ``KeyboardInterrupt``) cancels the call, then is raised."""
        check_seconds(timeout, "timeout", self._client.address)
        if self._outcome is None:
            try:
                self._wait(timeout)
            except BaseException as error:
                if not (isinstance(error, IpcError) and error.reason == "Timeout"):
                    # Ctrl-C (or another signal handler's exception) while waiting: the call is interrupted on
                    # the server and dropped here, as after call()'s timeout (it was left running, and held)
                    self.cancel()
                raise
        kind, value = self._outcome
        if kind == "exit":
            result = exit_result(value)
            return result if self._values is None else list(self._values)
        raise value

    def _wait(self, timeout):
        """Waits for the call's outcome (its elements collected, each chunk acknowledged); ``Timeout`` when
        ``timeout`` passes first (the call goes on: ``result`` may be asked again)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                kind, value = self._pending.items.get(timeout=wait)
            except queue.Empty:
                raise IpcError("Timeout", "no answer within %s s" % timeout, self._client.address)
            if kind != "chunk":
                self._outcome = (kind, value)
                return
            if self._values is None:
                self._values = []
            self._values.extend(value)
            self._client._ack(self._pending)

    def cancel(self):
        """Interrupts the call: the server stops it, ``result`` raises ``RpcInterrupted``."""
        self._client._interrupt(self._pending)


class StreamCall(object):
    """A streamed response (``RpcClient.stream``): iterate over its values;
    each batch is acknowledged, so the server sends no further than this
    client reads. ``cancel`` (or leaving a ``with`` block or the loop, also by Ctrl-C while a batch is
    awaited) interrupts it.
    Over a procedure that is not streamed, its value is the one element
    (none when it is null: a stream's end looks the same on the wire)."""

    def __init__(self, client, pending, timeout):
        self._client = client
        self._pending = pending
        self._timeout = timeout
        self._finished = False

    def __iter__(self):
        try:
            while not self._finished:
                try:
                    kind, value = self._pending.items.get(timeout=self._timeout)
                except queue.Empty:
                    self.cancel()  # as call(timeout=): the call is interrupted on the server
                    raise IpcError("Timeout", "no element within %s s" % self._timeout, self._client.address)
                if kind == "chunk":
                    for item in value:
                        yield item
                    self._client._ack(self._pending)
                elif kind == "exit":
                    self._finished = True
                    value = exit_result(value)
                    if value is not None:
                        # a procedure that is not streamed: its value is the one element (a stream ends with null)
                        yield value
                else:
                    self._finished = True
                    raise value
        except BaseException:
            # the loop left early (GeneratorExit), or Ctrl-C while a batch was awaited: the call is interrupted on
            # the server and dropped here (after its end, or an error that ended it, nothing is sent)
            self.cancel()
            raise

    def cancel(self):
        """Interrupts the stream (nothing happens once it has ended)."""
        if not self._finished:
            self._finished = True
            self._client._interrupt(self._pending)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cancel()


class RpcClient(object):
    """An RPC client over a channel, speaking JSON (it sends the hello
    ``effect-rpc:json`` first). Thread-safe: calls may run concurrently. ``InvalidOption`` for a ``channel``
    that is not a ``Channel`` (``RpcClient.connect(address)`` dials one)."""

    def __init__(self, channel):
        if not isinstance(channel, channels.Channel):
            raise IpcError("InvalidOption", "RpcClient takes a Channel (got %s; RpcClient.connect(address) dials one)"
                           % type(channel).__name__)
        self.channel = channel
        self.address = channel.address
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._pending = {}
        # pings sent and pongs received: the server answers each Ping with one Pong, in order, so ping n is
        # answered by pong n (a pong that comes after its ping timed out answers that ping, not the next one)
        self._pings_sent = 0
        self._pongs_received = 0
        self._pong = threading.Condition()
        # the pings waiting for their answer, and the Defects that answered some of them (see _dispatch)
        self._pings_waiting = set()
        self._ping_defects = {}
        # the Interrupts that could not leave within the linger, and the thread that sends them once they can
        self._interrupts_due = []
        self._interrupter = None
        self._ping_lock = threading.Lock()  # numbers and sends one ping at a time, so they leave in order
        self._failure = None
        self._closing = False  # our own close: what the calls waiting are told
        channel.send(HELLO_JSON)
        self._reader = threading.Thread(target=self._read_loop, name="effect-ipc rpc client")
        self._reader.daemon = True
        self._reader.start()

    @classmethod
    def connect(cls, address, **options):
        """Dials ``address`` (``unix://`` or ``pipe://``) and returns a client; options go to ``channel.connect``."""
        return cls(channels.connect(address, **options))

    def _send(self, message):
        try:
            self.channel.send(_encode(message))
        except IpcError:
            pass  # the reader reports the lost link to every call

    def _check_open(self):
        """Raises ``Closed`` once this client was closed (whatever ended the connection before: a reset is
        ``ConnectionLost``), else the connection's failure once it ended (a new error each time: re-raising
        one object stacks its tracebacks); every public operation starts with it."""
        if self._closing:
            raise Closed("the client was closed", self.address)
        if self._failure is not None:
            raise fresh(self._failure)

    def _request(self, tag, payload, stream, discard=False, headers=()):
        self._check_open()
        if not isinstance(tag, str):
            raise IpcError("Encode", "a procedure's tag is a str (got %s)" % type(tag).__name__, self.address)
        request_id = str(next(self._ids))
        pending = _Pending(request_id, stream)
        # a procedure without payload takes null
        message = {"_tag": "Request", "id": request_id, "tag": tag, "payload": payload,
                   "headers": _headers(headers, self.address)}
        if discard:
            message["discard"] = True
        try:
            data = _encode(message)  # a payload JSON cannot encode fails here, before anything is registered
        except (TypeError, ValueError, RecursionError) as error:
            raise IpcError("Encode", "the payload of %s is not JSON: %s" % (tag, error), self.address)
        written = []
        try:
            if not discard:
                with self._lock:
                    # checked again under the lock: a connection that ended since has no reader left to fail it
                    self._check_open()
                    self._pending[request_id] = pending
            self.channel._send_message(data, written)
            return pending
        except BaseException:
            # not sent, or sent and then Ctrl-C (or another signal handler's exception) before this returned: no
            # one will wait for the call, so once sent it is interrupted on the server (a channel that failed
            # meanwhile sends nothing: the server ends its calls itself)
            if written:
                self._interrupt(pending)
            else:
                with self._lock:
                    self._pending.pop(request_id, None)
            raise

    def start(self, tag, payload=None, headers=()):
        """Sends a request and returns its ``Call`` at once."""
        return Call(self, self._request(tag, payload, False, headers=headers))

    def call(self, tag, payload=None, timeout=None, headers=()):
        """Calls procedure ``tag`` with ``payload`` (JSON-able, as its schema
        encodes it) and returns its value. A typed error raises
        ``RpcFailure``; after ``timeout`` seconds the call is cancelled and
        ``IpcError`` (``Timeout``) raised, and so it is on Ctrl-C while it waits (the
        ``KeyboardInterrupt`` raised). A streamed procedure's elements are
        returned as a list once its stream ends (``stream`` reads them as they come). ``InvalidOption``
        for a ``timeout`` that is not None or a finite number of seconds of at least 0 (nothing is sent)."""
        check_seconds(timeout, "timeout", self.address)
        call = self.start(tag, payload, headers)
        try:
            return call.result(timeout)
        except BaseException:
            # a Timeout, or Ctrl-C before result waited (its own checks): no one will wait for the call, so it is
            # interrupted on the server (after its outcome, which the reader took, nothing is sent)
            call.cancel()
            raise

    def stream(self, tag, payload=None, timeout=None, headers=()):
        """Calls a streaming procedure; returns a ``StreamCall`` to iterate (``InvalidOption`` for a ``timeout``
        that is not None or a finite number of seconds of at least 0: nothing is sent)."""
        check_seconds(timeout, "timeout", self.address)
        return StreamCall(self, self._request(tag, payload, True, headers=headers), timeout)

    def send(self, tag, payload=None, headers=()):
        """Fire-and-forget (effect's ``discard``): the request is sent and nothing waited for."""
        self._request(tag, payload, False, discard=True, headers=headers)

    def ping(self, timeout=5.0):
        """Sends a ``Ping`` and waits for its own ``Pong`` (pongs come in the order of the pings: one that
        comes after its ping timed out answers no later ping, and one that no ping waits for is ignored);
        raises ``RpcDefect`` when the server answers it with a ``Defect`` (the Node server's answer to a ping
        whose ``Pong`` it could not send), ``IpcError`` (``Timeout``) without an answer
        (``InvalidOption`` for a ``timeout`` that is not None or a finite number of seconds of at least 0),
        and the client's failure (``Closed`` once closed) at once when the connection has ended."""
        check_seconds(timeout, "timeout", self.address)
        self._check_open()
        with self._ping_lock:  # not the pong's lock: a send blocked on a peer that reads nothing holds no reader
            with self._pong:  # counted before it is sent: its pong may come before the send returns
                self._pings_sent += 1
                number = self._pings_sent
                self._pings_waiting.add(number)
            try:
                self._send({"_tag": "Ping"})
            except BaseException:
                # not sent (Ctrl-C while it waited for another write; or cut, which ends the connection): no pong
                # comes for it, and every later ping would wait for one pong too many
                with self._pong:
                    self._pings_sent -= 1
                    self._pings_waiting.discard(number)
                raise
        with self._pong:
            try:
                answered = self._pong.wait_for(
                    lambda: self._pongs_received >= number or self._failure is not None or self._closing, timeout)
                if self._pongs_received >= number:
                    defect = self._ping_defects.pop(number, None)
                    if defect is not None:
                        raise fresh(defect)
                    return
                if not answered:
                    raise IpcError("Timeout", "no pong within %s s" % timeout, self.address)
            finally:
                self._pings_waiting.discard(number)
        self._check_open()

    def _ack(self, pending):
        """Acknowledges a chunk of ``pending`` (unless the call has ended or was interrupted)."""
        with self._lock:
            pending.unacked -= 1
            known = self._pending.get(pending.id) is pending
        if known:
            self._send({"_tag": "Ack", "requestId": pending.id})

    def _interrupt(self, pending):
        with self._lock:
            known = self._pending.pop(pending.id, None)
        if known is not None:
            self._send_interrupt(pending.id)
            pending.items.put(("error", RpcInterrupted("the call was cancelled")))

    def _send_interrupt(self, request_id):
        """Sends an ``Interrupt``, waiting at most the channel's linger for the connection: another thread's
        send to a server that reads nothing (or is busy) may hold it long (and a Ctrl-C or a timeout waited with
        it). Not sent by then, it is left to a thread that sends it once the connection is free: the connection
        and its other calls go on (ending it lost every other call to a server busy for longer than the linger)."""
        data = _encode({"_tag": "Interrupt", "requestId": request_id})
        try:
            if self.channel._send_message(data, wait=self.channel._linger):
                return
        except IpcError:
            return  # the reader reports the lost link to every call
        with self._lock:
            self._interrupts_due.append(data)
            if self._interrupter is not None:
                return
            self._interrupter = threading.Thread(target=self._send_interrupts_due, name="effect-ipc rpc interrupts")
            self._interrupter.daemon = True
            thread = self._interrupter
        thread.start()

    def _send_interrupts_due(self):
        """Sends the Interrupts left by ``_send_interrupt``, in order, each waiting for the connection; ends
        once none is left, or with the connection (the server then ends its calls itself)."""
        while True:
            with self._lock:
                if not self._interrupts_due or self.channel._failure is not None:
                    del self._interrupts_due[:]
                    self._interrupter = None
                    return
                data = self._interrupts_due.pop(0)
            try:
                self.channel._send_message(data)
            except Exception:  # noqa: BLE001 - the connection ended (the reader says so to every call)
                pass

    def _read_loop(self):
        try:
            for data in self.channel:
                try:
                    message = _decode(data)
                except ValueError as error:
                    self._malformed(None, "a message it cannot read as JSON (%s): %r" % (error, data[:100]))
                    continue
                try:
                    self._dispatch(message)
                except Exception as error:  # noqa: BLE001 - the reader outlives one bad message
                    self._malformed(None, "a message it could not handle (%s): %s"
                                    % (error, _shown(message, 100)))
            error = (
                Closed("the client was closed", self.address)
                if self._closing
                else Closed("the server closed the connection", self.address)
            )
        except IpcError as lost:
            error = lost
        with self._pong:
            self._failure = error
            self._pong.notify_all()  # a ping waiting for a pong ends now too
        with self._lock:
            pending, self._pending = list(self._pending.values()), {}
        for entry in pending:
            entry.items.put(("error", error))

    def _malformed(self, request_id, what):
        """A message from the server that breaks the protocol: the call it names
        (every call waiting when it names none) fails with ``IpcError``
        ``Protocol``; the connection goes on."""
        error = IpcError("Protocol", "the server sent %s" % what, self.address)
        log.warning("%s", error)
        with self._lock:
            if request_id is not None:
                entry = self._pending.pop(request_id, None)
                pending = [] if entry is None else [entry]
            else:
                pending, self._pending = list(self._pending.values()), {}
        for entry in pending:
            entry.items.put(("error", error))

    def _dispatch(self, message):
        if not isinstance(message, dict):
            return self._malformed(None, "a message that is not an object: %s" % _shown(message, 100))
        tag = message.get("_tag")
        if tag in ("Chunk", "Exit"):
            request_id = message.get("requestId")
            if not isinstance(request_id, str):
                return self._malformed(None, "a %s whose requestId is not a string: %s"
                                       % (tag, _shown(request_id, 100)))
            if tag == "Chunk":
                values = message.get("values")
                if not isinstance(values, list):
                    return self._malformed(request_id, "a Chunk whose values are not an array")
                with self._lock:
                    pending = self._pending.get(request_id)
                    if pending is not None:
                        pending.unacked += 1
                if pending is not None:
                    if pending.unacked > MAX_UNACKED_CHUNKS:
                        # a server that does not wait for acknowledgements: the call fails, and is interrupted there
                        self._malformed(request_id, "%d chunks past the acknowledgements (at most %d)"
                                        % (pending.unacked, MAX_UNACKED_CHUNKS))
                        self._send_interrupt(request_id)
                        return None
                    pending.items.put(("chunk", values))
                return None
            exit = message.get("exit")
            if not _valid_exit(exit):
                return self._malformed(request_id, "an Exit that is not an encoded Exit: %s" % _shown(exit, 100))
            with self._lock:
                pending = self._pending.pop(request_id, None)
            if pending is not None:
                pending.items.put(("exit", exit))
        elif tag == "Defect":
            defect = RpcDefect(message.get("defect"))
            with self._pong:
                # the server answers each ping in turn, with a Pong or, when it could not send that, a Defect: one
                # while a ping awaits its answer takes that Pong's place (else each later ping took the Pong of
                # the one before it)
                for_ping = self._pongs_received < self._pings_sent
                if for_ping:
                    self._pongs_received += 1
                    if self._pongs_received in self._pings_waiting:
                        self._ping_defects[self._pongs_received] = defect
                    self._pong.notify_all()
            with self._lock:
                pending, self._pending = list(self._pending.values()), {}
            for entry in pending:
                entry.items.put(("error", defect))
            if not pending and not for_ping:
                log.warning("the server at %s sent a defect: %s", self.address, defect)
        elif tag == "Pong":
            with self._pong:
                if self._pongs_received >= self._pings_sent:
                    # no ping waits for it: counted, it would answer the next ping before that ping's own pong
                    log.debug("the server at %s sent a pong no ping waits for: ignored", self.address)
                    return None
                self._pongs_received += 1
                self._pong.notify_all()

    def close(self):
        """Closes the connection; calls still waiting, and every operation after, raise ``Closed``."""
        with self._pong:
            self._closing = True
            self._pong.notify_all()
        self.channel.close()
        self._reader.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- server -----------------------------------------------------------------------


class Stream(object):
    """Marks a handler's result as a streamed response (any iterable) sent in chunks of up to ``batch`` values
    (``InvalidOption`` unless a whole number of at least 1); a generator is one already."""

    def __init__(self, iterable, batch=1):
        check_count(batch, "batch")
        self.iterable = iterable
        self.batch = batch


class _Cancelled(threading.Event):
    """An Event set when the call is interrupted, and true once set: ``if current().cancelled:``
    reads as it says (a plain Event is always true)."""

    def __bool__(self):
        return self.is_set()


class _Context(object):
    def __init__(self, request_id, tag, headers):
        self.request_id = request_id
        self.tag = tag
        self.headers = headers
        self.cancelled = _Cancelled()
        self.finished = False
        # a streaming call: what it iterates, its chunk size, and whether a sent chunk awaits its Ack
        self.iterable = None
        self.iterator = None
        self.batch = 1
        self.awaiting = False


_current = threading.local()


def current():
    """In a server handler: the call being served (``tag``, ``headers``,
    ``request_id``, and ``cancelled``, an Event set when the client interrupts, true once
    set: ``if current().cancelled:``, or ``current().cancelled.wait(timeout)``)."""
    return getattr(_current, "context", None)


def _defect_of(error):
    return {"name": type(error).__name__, "message": str(error)}


def _key(request_id):
    """A request id to look a call up by (None for one no call can have: not a string or number)."""
    if isinstance(request_id, bool) or not isinstance(request_id, (str, int, float)):
        return None
    return request_id


def _js_string(value):
    """``value`` as JavaScript's ``String(value)`` writes it (what the Node server's messages show); a
    value nested too deep for that as ``_shown`` writes it."""
    try:
        return _js_text(value)
    except RecursionError:
        return _shown(value, 100)


def _js_text(value, nested=False):
    if value is None:
        return "" if nested else "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return "%d" % value
    if isinstance(value, list):
        return ",".join(_js_text(item, True) for item in value)
    if isinstance(value, dict):
        return "[object Object]"
    return "%s" % (value,)


def _encodable(value):
    """True when ``value`` can be sent as JSON (see ``_encode``)."""
    try:
        _encode(value)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def _unencodable(error):
    return {"name": type(error).__name__, "message": "the handler's result cannot be encoded as JSON: %s" % error}


DEFAULT_MAX_WORKERS = 32
DEFAULT_MAX_QUEUED = 256


class _Workers(object):
    """At most ``size`` daemon threads, started as work arrives, that run the
    queued calls; a call waits in its client's queue while all are busy. The
    clients with work take turns (one call each), each client's calls run in
    order: a flood from one client does not hold up another's calls."""

    def __init__(self, size):
        self.size = size
        self.lock = threading.Lock()
        # each client's queue of work, in the order the clients take their turns
        self.queues = collections.OrderedDict()
        self.threads = 0
        self.idle = 0
        self.ready = threading.Condition(self.lock)

    def submit(self, work, client=None):
        with self.lock:
            queue = self.queues.get(client)
            if queue is None:
                queue = self.queues[client] = collections.deque()
            queue.append(work)
            if self.idle > 0:
                self.ready.notify()
                return
            if self.threads >= self.size:
                return
            self.threads += 1
        thread = threading.Thread(target=self.loop, name="effect-ipc rpc worker")
        thread.daemon = True
        try:
            thread.start()
        except RuntimeError as error:
            # no thread for it (the process's thread limit, or memory): the work waits for a worker there is
            # (counted, a worker never started took the pool's place for good); with none, it runs here
            with self.lock:
                self.threads -= 1
                alone = self.threads == 0
            log.warning("could not start an RPC worker (%d running): %s", self.threads, error)
            if alone:
                self.run_queued()

    def run_queued(self):
        """Runs the queued work on this thread while no worker runs (none could be started)."""
        while True:
            with self.lock:
                if self.threads > 0 or not self.queues:
                    return
                client, queue = next(iter(self.queues.items()))
                work = queue.popleft()
                if not queue:
                    del self.queues[client]
            try:
                work()
            except BaseException:  # noqa: BLE001 - as a worker: one call's failure is that call's
                log.warning("an RPC call failed", exc_info=True)

    def loop(self):
        while True:
            with self.lock:
                while not self.queues:
                    self.idle += 1
                    self.ready.wait()
                    self.idle -= 1
                client, queue = next(iter(self.queues.items()))
                work = queue.popleft()
                if queue:
                    self.queues.move_to_end(client)  # its next call after the other clients' next
                else:
                    del self.queues[client]
            try:
                work()
            except BaseException:  # noqa: BLE001 - a worker outlives what it runs (a SystemExit too)
                log.warning("an RPC worker's call failed", exc_info=True)


def _check_handlers(handlers):
    """``handlers`` as a dict of str tags to callables; ``IpcError`` reason ``InvalidOption`` for anything else."""
    if not isinstance(handlers, collections.abc.Mapping):
        raise IpcError("InvalidOption", "handlers is a mapping of procedure tags to functions (got %s)"
                       % type(handlers).__name__)
    out = dict(handlers)
    for tag, handler in out.items():
        if not isinstance(tag, str) or not callable(handler):
            raise IpcError("InvalidOption", "handlers[%r] = %r is not a str tag mapped to a function" % (tag, handler))
    return out


class RpcServer(object):
    """Serves Python handlers to effect/rpc clients over JSON. ``handlers``
    maps each procedure's tag to ``handler(payload)``, which returns the
    value (JSON-able, as the success schema encodes it), returns a generator
    or ``Stream`` for a streaming procedure, or raises ``RpcFailure(error)``
    for a typed error; any other exception is a defect. A handler for a
    procedure without payload gets None. Handlers run on at most
    ``max_workers`` threads (default 32) shared by every client; further
    requests wait, each client's in order, the clients taking turns (a
    handler that waits for another request to run can deadlock when all
    workers wait so). A request
    interrupted while it waits never runs. A stream gives its worker back
    while a chunk waits for the client's acknowledgement. Answers are sent
    by a thread of each connection, so a client that does not read holds no
    worker. Each client has at most ``max_queued`` (default 256) requests
    waiting for a worker and messages waiting to be sent; past that the
    server stops reading its connection until they drain (back-pressure
    through the socket: nothing is dropped). A ``max_workers`` below 1 or
    ``max_queued`` below 2 (or not a whole number) is ``InvalidOption``, and so are ``handlers`` that are not
    a mapping of str tags to callables."""

    def __init__(self, handlers, max_workers=DEFAULT_MAX_WORKERS, max_queued=DEFAULT_MAX_QUEUED):
        check_count(max_workers, "max_workers")
        check_count(max_queued, "max_queued", least=2)
        self.handlers = _check_handlers(handlers)
        self.workers = _Workers(max_workers)
        self.max_queued = max_queued
        self._connections_lock = threading.Lock()
        self._connections = []

    def backlogs(self):
        """Each connection being served: ``(queued, most)``, its requests waiting
        for a worker plus messages waiting to be sent now, and the most it has
        had at once (never over ``max_queued``)."""
        with self._connections_lock:
            connections = list(self._connections)
        return [connection.backlog_counts() for connection in connections]

    def serve(self, listener):
        """Serves every client of ``listener`` until it is closed (each in a thread)."""
        listener.serve(self.serve_channel)

    def serve_channel(self, channel):
        """Serves one client connection until it closes."""
        connection = _Connection(self, channel)
        with self._connections_lock:
            self._connections.append(connection)
        try:
            connection.run()
        finally:
            with self._connections_lock:
                self._connections.remove(connection)


# the connection whose backlog slot the work running on this thread holds (see _Connection.submit)
_slot = threading.local()


def _cost(message):
    """How many backlog slots dispatching ``message`` may take (a discarded or
    interrupted call's exit is sent as its work is queued: 2)."""
    if message.get("_tag") == "Interrupt" or message.get("discard") is True:
        return 2
    return 1


class _Connection(object):
    def __init__(self, server, channel):
        self.server = server
        self.channel = channel
        self.lock = threading.Lock()
        self.calls = {}
        self.first = True
        # the backlog: work queued for a worker plus messages waiting for the writer thread
        self.room = threading.Condition()
        self.backlog = 0
        self.most = 0
        self.outbox = collections.deque()
        self.stopped = False
        # calls whose id a later request took while they ran (see start)
        self.shadowed = []

    def backlog_counts(self):
        with self.room:
            return (self.backlog, self.most)

    def _grow(self):
        self.backlog += 1
        if self.backlog > self.most:
            self.most = self.backlog

    def _shrink(self):
        with self.room:
            self.backlog -= 1
            self.room.notify_all()

    def send(self, message):
        """Queues ``message`` for the writer thread. Work sending hands its slot
        over to the message (an answer takes the place of its request)."""
        self.send_bytes(_encode(message))

    def send_bytes(self, data):
        """Queues an encoded message (see ``send``)."""
        with self.room:
            if getattr(_slot, "connection", None) is self:
                _slot.connection = None
            else:
                self._grow()
            if self.stopped:
                self.backlog -= 1
                return
            self.outbox.append(data)
            self.room.notify_all()

    def write_loop(self):
        while True:
            with self.room:
                while not self.outbox and not self.stopped:
                    self.room.wait()
                if not self.outbox:
                    return
                data = self.outbox.popleft()
            try:
                self.channel.send(data)
            except IpcError:
                pass
            self._shrink()

    def submit(self, work):
        """Queues ``work`` on the shared workers; it holds a backlog slot until
        it sends (the slot passes to its message) or ends."""
        with self.room:
            self._grow()

        def run():
            _slot.connection = self
            try:
                work()
            finally:
                held = getattr(_slot, "connection", None) is self
                _slot.connection = None
                if held:
                    self._shrink()

        self.server.workers.submit(run, self)

    def wait_for_room(self, cost):
        """Holds the reading of this connection (the channel reads no further)
        until dispatching a message of ``cost`` keeps the backlog within bounds."""
        with self.room:
            while self.backlog + cost > self.server.max_queued:
                self.room.wait()

    def run(self):
        self.channel.set_unread_limit(self.server.max_queued)
        writer = threading.Thread(target=self.write_loop, name="effect-ipc rpc writer %s" % self.channel.address)
        writer.daemon = True
        writer.start()
        try:
            self.read_loop()
        finally:
            with self.room:
                self.stopped = True
                self.room.notify_all()
            # what is queued (a refusal's Defect) goes out before the channel is closed, unless the peer
            # does not read: then the close, when it comes, ends the write
            writer.join(2.0)

    def read_loop(self):
        try:
            self.read_messages()
        finally:
            # however the connection ended (a close, or a client killed: ConnectionLost), its calls are
            # interrupted: `cancelled` is set and a stream's generator is closed
            with self.lock:
                calls, self.calls = list(self.calls.values()) + self.shadowed, {}
                self.shadowed = []
            for context in calls:
                context.cancelled.set()
                self.resume(context)

    def read_messages(self):
        for data in self.channel:
            if self.first:
                self.first = False
                name, is_hello, shown = read_hello(data)
                if name != "json":
                    self.refuse(name, shown)
                    return
                if is_hello:
                    continue
            try:
                message = _decode(data)
            except ValueError as error:
                # as the Node server: a Defect, and the connection goes on (within the backlog's bound, as
                # any answer: a client sending junk and reading nothing grew the queue of Defects without end)
                self.wait_for_room(1)
                self.send({"_tag": "Defect", "defect": "this RPC server speaks json serialization: %s" % error})
                continue
            if not isinstance(message, dict):
                self.wait_for_room(1)
                self.send({"_tag": "Defect", "defect": "Unknown request tag: undefined"})
                continue
            self.wait_for_room(_cost(message))
            try:
                self.dispatch(message)
            except Exception as error:  # noqa: BLE001 - one odd message never ends the connection
                log.warning("an RPC message could not be handled", exc_info=True)
                self.send({"_tag": "Defect", "defect": "cannot handle the message: %s" % error})

    def refuse(self, name, shown):
        """Turns away a client of another serialization as the Node server does: a
        ``Defect`` it can read (for a packed or binary client; none for a bad hello
        or an unknown serialization), a warning, then the close."""
        detail = "this RPC server speaks json serialization, not %s" % shown
        log.warning("refused an RPC client at %s: %s", self.channel.address, detail)
        if name == "packed":
            self.send_bytes(packed_defect(detail))
        elif name == "binary":
            self.send_bytes(binary_defect(detail))

    def dispatch(self, message):
        tag = message.get("_tag")
        if tag == "Request":
            request_id = message.get("id")
            if isinstance(request_id, bool) or not isinstance(request_id, (str, int, float)) or \
                    not _encodable(request_id):
                # an id its answer could not carry (1e400 read as inf, a lone surrogate) is no id either
                self.send({"_tag": "Defect", "defect": "Invalid request id: %s" % _shown(request_id)})
                return
            self.start(message)
        elif tag == "Ack":
            with self.lock:
                context = self.calls.get(_key(message.get("requestId")))
            if context is not None:
                self.resume(context)
        elif tag == "Interrupt":
            with self.lock:
                context = self.calls.pop(_key(message.get("requestId")), None)
            if context is not None:
                context.cancelled.set()
                self.resume(context)
                self.finish(context, {"_tag": "Failure", "cause": [{"_tag": "Interrupt", "fiberId": None}]})
        elif tag == "Ping":
            self.send({"_tag": "Pong"})
        elif tag == "Eof":
            # effect's client's "no more requests": nothing is owed for it, and what follows is served
            pass
        else:
            shown = _js_string(tag) if "_tag" in message else "undefined"
            self.send({"_tag": "Defect", "defect": "Unknown request tag: %s" % shown})

    def finish(self, context, exit):
        if context.finished:
            return
        context.finished = True
        try:
            data = _encode({"_tag": "Exit", "requestId": context.request_id, "exit": exit})
        except (TypeError, ValueError, RecursionError) as error:
            # a value JSON cannot encode (bytes, a date, a set, NaN): the call is answered with a defect
            log.warning("the exit of %s cannot be encoded as JSON", context.tag, exc_info=True)
            data = _encode({"_tag": "Exit", "requestId": context.request_id,
                            "exit": {"_tag": "Failure", "cause": [{"_tag": "Die", "defect": _unencodable(error)}]}})
        if len(data) > self.channel.max_frame_size:
            # the channel would refuse it (FrameTooLarge) and the call wait for ever: a defect that says so
            log.warning("the exit of %s is over the frame limit", context.tag)
            data = _encode({"_tag": "Exit", "requestId": context.request_id,
                            "exit": {"_tag": "Failure", "cause": [{"_tag": "Die", "defect": self._too_large(len(data))}]}})
        self.send_bytes(data)

    def _too_large(self, size):
        return {"name": "FrameTooLarge", "message": "the answer of %d bytes is over this connection's frame limit "
                "of %d bytes" % (size, self.channel.max_frame_size)}

    def start(self, request):
        request_id, tag = request.get("id"), request.get("tag")
        context = _Context(request_id, tag, request.get("headers") or [])
        discard = request.get("discard") is True
        handler = self.server.handlers.get(tag) if isinstance(tag, str) else None
        if handler is None:
            self.finish(context, {"_tag": "Failure", "cause": [{"_tag": "Die",
                                                               "defect": "Unknown request tag: %s" % _js_string(tag)}]})
            return
        if discard:
            # acknowledged as the handler starts; nothing more is sent for it
            self.finish(context, {"_tag": "Success", "value": None})
        else:
            with self.lock:
                earlier = self.calls.get(request_id)
                if earlier is not None:
                    # an id reused while its call runs: the newer call answers to it, the earlier one is
                    # still interrupted when the connection ends (its stream's generator closed)
                    self.shadowed.append(earlier)
                self.calls[request_id] = context
        payload = request.get("payload")
        self.submit(lambda: self.run_call(context, handler, payload))

    def run_call(self, context, handler, payload):
        if context.cancelled.is_set():
            return  # interrupted (or its connection gone) while it waited for a worker

        def first():
            result = handler(payload)
            if inspect.isgenerator(result) or isinstance(result, Stream):
                context.batch = result.batch if isinstance(result, Stream) else 1
                context.iterable = result.iterable if isinstance(result, Stream) else result
                context.iterator = iter(context.iterable)
                return self.stream(context)
            return {"_tag": "Success", "value": result}

        self.step(context, first)

    def step(self, context, work):
        """Runs ``work`` for ``context`` on this worker, then ends the call with
        the exit it returns; ``None``: a stream's chunk awaits its Ack (the
        worker goes back to the pool meanwhile, and the Ack queues the next step)."""
        _current.context = context
        try:
            exit = work()
            if exit is not None and inspect.isgenerator(context.iterable):
                context.iterable.close()  # an ended or interrupted stream's generator (its finally runs)
        except RpcFailure as failure:
            exit = {"_tag": "Failure", "cause": [{"_tag": "Fail", "error": failure.error}]}
        except BaseException as error:  # noqa: BLE001 - a defect goes to the client, as effect's servers do
            # SystemExit and KeyboardInterrupt raised by a handler too: they left the call unanswered for good
            # and took the worker with them (the server's other calls waited behind it)
            log.warning("handler of %s failed", context.tag, exc_info=True)
            exit = {"_tag": "Failure", "cause": [{"_tag": "Die", "defect": _defect_of(error)}]}
        finally:
            _current.context = None
        if exit is None:
            return
        with self.lock:
            if self.calls.get(context.request_id) is context:
                del self.calls[context.request_id]
            elif context in self.shadowed:
                self.shadowed.remove(context)
        if not context.cancelled.is_set():
            self.finish(context, exit)

    def stream(self, context):
        """Sends a streaming call's next chunk and returns None (its Ack resumes
        the stream), or returns the call's exit once the stream has ended."""
        values = []
        if not context.cancelled.is_set():
            for value in context.iterator:
                values.append(value)
                if len(values) >= context.batch or context.cancelled.is_set():
                    break
        if not values:
            return {"_tag": "Success", "value": None}
        try:
            chunk = _encode({"_tag": "Chunk", "requestId": context.request_id, "values": values})
        except (TypeError, ValueError, RecursionError) as error:
            log.warning("a chunk of %s cannot be encoded as JSON", context.tag, exc_info=True)
            return {"_tag": "Failure", "cause": [{"_tag": "Die", "defect": _unencodable(error)}]}
        if len(chunk) > self.channel.max_frame_size:
            log.warning("a chunk of %s is over the frame limit", context.tag)
            return {"_tag": "Failure", "cause": [{"_tag": "Die", "defect": self._too_large(len(chunk))}]}
        with self.lock:
            # checked under the lock: an interrupt sets cancelled, then resumes what awaits
            if context.cancelled.is_set():
                return {"_tag": "Success", "value": None}
            context.awaiting = True
        # the client acknowledges each chunk: until then no worker is held (nor after an interrupt)
        self.send_bytes(chunk)
        return None

    def resume(self, context):
        """A stream's chunk was acknowledged, or its call interrupted: its next step is queued."""
        with self.lock:
            awaiting, context.awaiting = context.awaiting, False
        if awaiting:
            self.submit(lambda: self.step(context, lambda: self.stream(context)))
