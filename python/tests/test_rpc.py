"""RPC, Python client to Python server, over a real socket."""
import json
import os
import queue
import socket
import threading
import time
import unittest

from helpers import RawRpcCase, TempDirCase, run_python

from effect_ipc import framing
from effect_ipc import Closed, IpcError, RpcClient, RpcDefect, RpcFailure, RpcInterrupted, RpcServer, Stream, listen, rpc


class Rpc(TempDirCase):
    def setUp(self):
        TempDirCase.setUp(self)
        self.notes = []
        self.stopped = threading.Event()
        self.began = threading.Event()

        def divide(p):
            if p["b"] == 0:
                raise RpcFailure({"_tag": "DivisionByZero", "dividend": p["a"]})
            return p["a"] / p["b"]

        def forever(p):
            i = 0
            self.began.set()  # as its first element is asked for
            try:
                while True:
                    i += 1
                    yield i
            finally:  # an interrupted stream's generator is closed
                self.stopped.set()

        def slow(p):
            self.began.set()
            rpc.current().cancelled.wait(10)
            self.stopped.set()

        self.ended = threading.Event()

        def three(p):
            try:
                for i in (1, 2, 3):
                    yield i
            finally:  # a stream that ran to its end is closed too
                self.ended.set()

        self.gate = threading.Event()

        def gated(p):  # one element, then the rest once the gate opens
            yield 1
            self.gate.wait(10)
            yield 2

        server = RpcServer({
            "Gate": lambda p: self.gate.wait(10) and p,
            "GatedStream": gated,
            "Three": three,
            "Add": lambda p: p["a"] + p["b"],
            "Divide": divide,
            "Countdown": lambda p: Stream(range(p["from"], 0, -1), batch=2),
            "Forever": forever,
            "Slow": slow,
            "Record": lambda p: self.notes.append(p["note"]),
            "Notes": lambda p: list(self.notes),
            "Boom": lambda p: 1 / 0,
        })
        self.server = server
        self.listener = listen(self.address())
        self.addCleanup(self.listener.close)
        thread = threading.Thread(target=server.serve, args=(self.listener,))
        thread.daemon = True
        thread.start()
        self.client = RpcClient.connect(self.address())
        self.addCleanup(self.client.close)

    def test_calls_typed_errors_and_defects(self):
        self.assertEqual(self.client.call("Add", {"a": 2, "b": 40}, timeout=5), 42)
        with self.assertRaises(RpcFailure) as caught:
            self.client.call("Divide", {"a": 1, "b": 0}, timeout=5)
        self.assertEqual(caught.exception.error, {"_tag": "DivisionByZero", "dividend": 1})
        self.assertEqual(caught.exception.tag, "DivisionByZero")
        with self.assertRaises(RpcDefect) as caught:
            self.client.call("Boom", None, timeout=5)
        self.assertEqual(caught.exception.defect["name"], "ZeroDivisionError")
        with self.assertRaises(RpcDefect) as caught:
            self.client.call("Nope", None, timeout=5)
        self.assertEqual(caught.exception.defect, "Unknown request tag: Nope")

    def test_concurrent_calls(self):
        calls = [self.client.start("Add", {"a": i, "b": 1}) for i in range(100)]
        self.assertEqual([c.result(10) for c in calls], [i + 1 for i in range(100)])

    def test_calls_from_several_threads_at_once(self):
        results = {}

        def worker(k):
            results[k] = [self.client.call("Add", {"a": k, "b": i}, timeout=10) for i in range(20)]

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        self.assertEqual(results, dict((k, [k + i for i in range(20)]) for k in range(8)))

    def test_streams_are_acknowledged_and_cancellable(self):
        self.assertEqual(list(self.client.stream("Countdown", {"from": 5}, timeout=5)), [5, 4, 3, 2, 1])
        stream = self.client.stream("Forever", None, timeout=5)
        taken = []
        for value in stream:
            taken.append(value)
            if len(taken) == 3:
                break  # leaving the loop interrupts the stream
        self.assertEqual(taken, [1, 2, 3])
        self.assertTrue(self.stopped.wait(5))
        self.assertEqual(self.client.call("Add", {"a": 1, "b": 1}, timeout=5), 2)

    def assert_stopped_if_it_ran(self, what):
        """After a call was interrupted (its timeout passed): if its handler ran, it was stopped. An interrupt
        that comes before a worker takes the call means it never runs at all, and nothing is there to stop (a
        loaded machine may start it later than a short timeout: a wait for ``stopped`` then failed)."""
        self.client.ping(5)  # answered after the server has read the interrupt (one connection, in order)
        if self.began.is_set():
            self.assertTrue(self.stopped.wait(5), what)
        self.assertEqual(self.running_calls(), [])

    def running_calls(self):
        """The calls the server is running now, over every connection."""
        return [tag for connection in self.server._connections for tag in connection.calls]

    def test_call_on_a_streamed_procedure_returns_its_elements_once_the_stream_ends(self):
        self.assertEqual(self.client.call("Countdown", {"from": 5}, timeout=5), [5, 4, 3, 2, 1])
        self.assertEqual(self.client.call("Three", None, timeout=5), [1, 2, 3])
        self.assertTrue(self.ended.wait(5))  # every chunk was acknowledged: the stream ran to its end
        self.assertEqual(self.running_calls(), [])
        call = self.client.start("Countdown", {"from": 3})
        self.assertEqual(call.result(5), [3, 2, 1])
        self.assertEqual(call.result(5), [3, 2, 1])  # asked again: the same value
        # an empty stream sends only its end, which reads as a null value (as documented)
        self.assertIsNone(self.client.call("Countdown", {"from": 0}, timeout=5))
        self.assertEqual(self.client.call("Add", {"a": 1, "b": 1}, timeout=5), 2)

    def test_a_streamed_call_whose_timeout_passes_is_interrupted_on_the_server(self):
        with self.assertRaises(IpcError) as caught:
            self.client.call("Forever", None, timeout=0.5)
        self.assertEqual(caught.exception.reason, "Timeout")
        self.assert_stopped_if_it_ran("the generator was closed: nothing runs on the server")
        # a started one, cancelled while its elements are collected
        call = self.client.start("Forever")
        with self.assertRaises(IpcError):
            call.result(0.2)
        call.cancel()
        with self.assertRaises(RpcInterrupted):
            call.result(5)
        self.client.ping(5)
        self.assertEqual(self.running_calls(), [])
        self.assertEqual(self.client.call("Add", {"a": 1, "b": 1}, timeout=5), 2)

    def test_a_stream_whose_timeout_passes_is_interrupted_on_the_server(self):
        with self.assertRaises(IpcError) as caught:
            for _ in self.client.stream("Slow", None, timeout=0.5):
                pass
        self.assertEqual(caught.exception.reason, "Timeout")
        self.assert_stopped_if_it_ran("the handler saw `cancelled`")
        self.assertEqual(self.client.call("Add", {"a": 1, "b": 1}, timeout=5), 2)

    def test_stream_on_a_procedure_that_is_not_streamed_yields_its_value(self):
        self.assertEqual(list(self.client.stream("Add", {"a": 1, "b": 2}, timeout=5)), [3])
        self.assertEqual(list(self.client.stream("Notes", None, timeout=5)), [[]])
        # a null value (a procedure returning nothing) is no element: it reads as an empty stream's end
        self.assertEqual(list(self.client.stream("Record", {"note": "x"}, timeout=5)), [])
        with self.assertRaises(RpcFailure):
            list(self.client.stream("Divide", {"a": 1, "b": 0}, timeout=5))
        self.assertEqual(self.running_calls(), [])

    def test_cancel_and_fire_and_forget(self):
        call = self.client.start("Slow")
        # the handler runs before the cancel (a cancel that comes first means it never runs at all)
        self.assertTrue(self.began.wait(10))
        call.cancel()
        with self.assertRaises(RpcInterrupted):
            call.result(5)
        self.assertTrue(self.stopped.wait(5))
        for note in ("a", "b"):
            self.client.send("Record", {"note": note})
        deadline = time.time() + 5
        while self.client.call("Notes", timeout=5) != ["a", "b"] and time.time() < deadline:
            time.sleep(0.02)
        self.assertEqual(self.client.call("Notes", timeout=5), ["a", "b"])
        self.client.ping(5)

    def test_cancelled_is_false_until_the_call_is_interrupted_then_true(self):
        # `if current().cancelled:` (the README's words) was always true: a threading.Event is truthy, set or not
        seen = []
        began = threading.Event()

        def polling(p):
            seen.append(bool(rpc.current().cancelled))
            began.set()
            deadline = time.time() + 10
            while not rpc.current().cancelled and time.time() < deadline:
                time.sleep(0.01)
            seen.append(bool(rpc.current().cancelled))
            self.stopped.set()
            return "done"

        listener = listen(self.address("polling"))
        self.addCleanup(listener.close)
        thread = threading.Thread(target=RpcServer({"Polling": polling}).serve, args=(listener,))
        thread.daemon = True
        thread.start()
        client = RpcClient.connect(self.address("polling"))
        self.addCleanup(client.close)
        call = client.start("Polling")
        self.assertTrue(began.wait(10))
        self.assertEqual(seen, [False], "not cancelled while it runs")
        call.cancel()
        with self.assertRaises(RpcInterrupted):
            call.result(5)
        self.assertTrue(self.stopped.wait(15))
        self.assertEqual(seen, [False, True])

    def test_a_client_killed_mid_call_interrupts_its_calls_and_streams(self):
        # a killed client (no close frame: ConnectionLost) left `cancelled` unset and a stream's generator open
        import subprocess
        import sys
        package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        for tag in ("Slow", "Forever"):
            self.began.clear()
            self.stopped.clear()
            code = ("import sys\nsys.path.insert(0, %r)\nfrom effect_ipc import RpcClient\n"
                    "c = RpcClient.connect(%r)\nc.start(%r, {})\nprint('called', flush=True)\nsys.stdin.read()\n"
                    % (package, self.address(), tag))
            client = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      universal_newlines=True)
            self.assertEqual(client.stdout.readline().strip(), "called")
            # the call runs (a stream waits for its acknowledgement). Waited for, not slept: a call whose client
            # is gone before a worker takes it never runs, and nothing is there to interrupt
            self.assertTrue(self.began.wait(10), "%s: the call never ran" % tag)
            client.kill()
            client.wait()
            client.stdin.close()
            client.stdout.close()
            self.assertTrue(self.stopped.wait(5), "%s: interrupted once its client was killed" % tag)

    def test_a_timeout_cancels_the_call(self):
        with self.assertRaises(IpcError) as caught:
            # long enough for the handler to start, almost always (else it never runs, and nothing stops)
            self.client.call("Slow", None, timeout=2)
        self.assertEqual(caught.exception.reason, "Timeout")
        self.assert_stopped_if_it_ran("the handler saw `cancelled`")

    def test_a_result_whose_timeout_passes_leaves_the_call_running_to_be_asked_again(self):
        plain, streamed = self.client.start("Gate", "opened"), self.client.start("GatedStream")
        for call in (plain, streamed):
            with self.assertRaises(IpcError) as caught:
                call.result(0.2)
            self.assertEqual(caught.exception.reason, "Timeout")
        self.gate.set()
        self.assertEqual(plain.result(5), "opened")
        self.assertEqual(streamed.result(5), [1, 2])  # the element taken during the first wait is kept

    def test_a_client_closed_while_a_call_waits_says_so_not_that_the_server_closed(self):
        call = self.client.start("Slow")
        self.client.close()
        with self.assertRaises(Closed) as caught:
            call.result(5)
        self.assertIn("the client was closed", str(caught.exception))
        self.assertNotIn("server", str(caught.exception))

    def test_a_lost_server_fails_calls_in_flight(self):
        call = self.client.start("Slow")
        self.client.channel.close()
        with self.assertRaises(IpcError):
            call.result(5)
        # later calls fail at once, each with an error of its own (one object raised again kept every
        # raise's traceback, growing with each call)
        raised = []
        for _ in range(3):
            with self.assertRaises(IpcError) as caught:
                self.client.call("Add", {"a": 1, "b": 2}, timeout=5)
            raised.append(caught.exception)
        self.assertEqual(len(set(map(id, raised))), 3)
        self.assertEqual({(e.reason, e.detail) for e in raised}, {(raised[0].reason, raised[0].detail)})


class BoundedWorkers(TempDirCase):
    """A flood of slow requests runs on at most ``max_workers`` threads; the rest wait their turn."""

    def serve(self, server):
        listener = listen(self.address())
        self.addCleanup(listener.close)
        thread = threading.Thread(target=server.serve, args=(listener,))
        thread.daemon = True
        thread.start()
        client = RpcClient.connect(self.address())
        self.addCleanup(client.close)
        return client

    def test_a_handler_that_raises_systemexit_or_keyboardinterrupt_gets_a_defect_and_frees_its_worker(self):
        # only Exception was caught: the call was never answered and its worker was gone for good
        def leave(p):
            raise SystemExit(3) if p["how"] == "exit" else KeyboardInterrupt()

        client = self.serve(RpcServer({"Leave": leave, "Add": lambda p: p["a"] + p["b"]}, max_workers=1))
        for how in ("exit", "interrupt", "exit"):
            with self.assertRaises(RpcDefect):
                client.call("Leave", {"how": how}, timeout=10)
            self.assertEqual(client.call("Add", {"a": 1, "b": 2}, timeout=10), 3)

    def test_a_flood_of_slow_requests_keeps_the_threads_bounded_and_all_complete(self):
        lock = threading.Lock()
        seen = {"running": 0, "most_running": 0, "most_threads": 0}

        def slow(p):
            with lock:
                seen["running"] += 1
                seen["most_running"] = max(seen["most_running"], seen["running"])
                seen["most_threads"] = max(seen["most_threads"], threading.active_count())
            time.sleep(0.02)  # slow, so that the requests pile up (nothing is timed)
            with lock:
                seen["running"] -= 1
            return p["i"] * 2

        client = self.serve(RpcServer({"Slow": slow}, max_workers=4))
        other = RpcClient.connect(self.address())  # the workers are shared by every client
        self.addCleanup(other.close)
        client.ping(5)
        other.ping(5)
        before = threading.active_count()
        calls = [(client if i % 2 else other).start("Slow", {"i": i}) for i in range(200)]
        self.assertEqual([c.result(60) for c in calls], [i * 2 for i in range(200)])
        self.assertLessEqual(seen["most_running"], 4)
        self.assertLessEqual(seen["most_threads"], before + 4)
        # a second flood reuses the same workers
        calls = [client.start("Slow", {"i": i}) for i in range(50)]
        self.assertEqual([c.result(60) for c in calls], [i * 2 for i in range(50)])
        self.assertLessEqual(threading.active_count(), before + 4)

    def test_a_queued_request_interrupted_before_it_starts_never_runs(self):
        started = []
        gate = threading.Event()
        self.addCleanup(gate.set)

        def hold(p):
            started.append(p["i"])
            gate.wait(30)
            return p["i"]

        client = self.serve(RpcServer({"Hold": hold}, max_workers=1))
        first = client.start("Hold", {"i": 1})
        queued = client.start("Hold", {"i": 2})
        deadline = time.time() + 10
        while started != [1] and time.time() < deadline:
            time.sleep(0.01)
        queued.cancel()
        with self.assertRaises(RpcInterrupted):
            queued.result(5)
        client.ping(5)  # answered after the server has read the interrupt (one connection, in order)
        gate.set()
        self.assertEqual(first.result(5), 1)
        self.assertEqual(client.call("Hold", {"i": 3}, timeout=5), 3)
        self.assertEqual(started, [1, 3])

    def test_streams_a_client_does_not_read_hold_no_worker(self):
        closed = []

        def forever(p):
            try:
                i = 0
                while True:
                    i += 1
                    yield i
            finally:  # run as the call's (interrupted) handler
                closed.append(p["k"] if rpc.current().cancelled.is_set() else None)

        server = RpcServer({"Forever": forever, "Add": lambda p: p["a"] + p["b"]}, max_workers=2)
        idle = self.serve(server)
        # a client starts more streams than there are workers and never reads them: each waits for its
        # first chunk's acknowledgement
        unread = [idle.stream("Forever", {"k": k}, timeout=30) for k in range(4)]
        idle.ping(5)
        other = RpcClient.connect(self.address())
        self.addCleanup(other.close)
        self.assertEqual(other.call("Add", {"a": 2, "b": 40}, timeout=10), 42)
        # the unread streams still work once read, and each is closed on interrupt
        taken = []
        for value in unread[3]:
            taken.append(value)
            if len(taken) == 3:
                break
        self.assertEqual(taken, [1, 2, 3])
        for stream in unread[:3]:
            stream.cancel()
        deadline = time.time() + 10
        while sorted(closed) != [0, 1, 2, 3] and time.time() < deadline:
            time.sleep(0.01)
        self.assertEqual(sorted(closed), [0, 1, 2, 3])

    def test_clients_take_turns_a_flood_from_one_does_not_hold_up_another(self):
        order = []
        lock = threading.Lock()

        def slow(p):
            time.sleep(0.01)  # slow, so that the flood piles up (nothing is timed)
            with lock:
                order.append(p["who"])
            return p["who"]

        flooder = self.serve(RpcServer({"Slow": slow}, max_workers=2))
        flooder.ping(5)
        other = RpcClient.connect(self.address())
        self.addCleanup(other.close)
        other.ping(5)
        flood = [flooder.start("Slow", {"who": "flood"}) for _ in range(200)]
        flooder.ping(5)  # the server has read the whole flood
        self.assertEqual(other.call("Slow", {"who": "other"}, timeout=30), "other")
        # the other client's call ran before most of the flood (in order, it would have run last)
        with lock:
            ahead = order.index("other")
        self.assertLess(ahead, 100, "%d of the flood ran before the other client's call" % ahead)
        self.assertEqual([c.result(60) for c in flood], ["flood"] * 200)

    def test_max_workers_must_be_a_positive_whole_number(self):
        for bad in (0, -1, 1.5, "4", True):
            with self.assertRaises(IpcError) as caught:
                RpcServer({}, max_workers=bad)
            self.assertEqual(caught.exception.reason, "InvalidOption")


class BoundedQueues(TempDirCase):
    """A client's requests waiting for a worker (and its answers waiting to be sent) are bounded: past
    ``max_queued`` the server stops reading that client's connection until they drain."""

    def test_a_client_that_floods_without_reading_is_held_to_its_bound_and_loses_nothing(self):
        bound, count = 16, 20000
        server = RpcServer({"Echo": lambda p: p["i"]}, max_workers=1, max_queued=bound)
        listener = listen(self.address())
        self.addCleanup(listener.close)
        thread = threading.Thread(target=server.serve, args=(listener,))
        thread.daemon = True
        thread.start()
        # a raw client that sends thousands of requests and reads nothing
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(raw.close)
        raw.connect(os.path.join(self.dir, "s.sock"))
        flood = framing.encode(framing.DATA, rpc.HELLO_JSON) + b"".join(
            framing.encode(framing.DATA, rpc._encode({"_tag": "Request", "id": str(i), "tag": "Echo",
                                                      "payload": {"i": i}, "headers": []}))
            for i in range(count))
        sent = threading.Event()

        def send():
            raw.sendall(flood)
            sent.set()

        sender = threading.Thread(target=send)
        sender.daemon = True
        sender.start()
        deadline = time.time() + 30
        while max([most for _, most in server.backlogs()] or [0]) < bound and time.time() < deadline:
            time.sleep(0.01)
        # the only worker is not stuck writing to the flooder: another client is served
        other = RpcClient.connect(self.address())
        self.addCleanup(other.close)
        self.assertEqual([other.call("Echo", {"i": i}, timeout=10) for i in range(20)], list(range(20)))
        self.assertFalse(sent.is_set())  # the flood is held up in the socket, not read into memory
        self.assertLessEqual(max(most for _, most in server.backlogs()), bound)
        # the flooder reads at last: every request is answered, in order
        raw.settimeout(60)
        decoder = framing.Decoder()
        answers = []
        while len(answers) < count:
            chunk = raw.recv(65536)
            self.assertTrue(chunk, "the server ended the connection after %d answers" % len(answers))
            for kind, payload in decoder.feed(chunk):
                message = json.loads(payload.decode("utf-8"))
                self.assertEqual(message["_tag"], "Exit")
                answers.append((message["requestId"], message["exit"]["value"]))
        self.assertEqual(answers, [(str(i), i) for i in range(count)])
        sender.join(10)
        self.assertTrue(sent.is_set())
        self.assertLessEqual(max(most for _, most in server.backlogs()), bound)
        raw.sendall(framing.encode(framing.CLOSE))

    def test_messages_that_are_not_requests_get_a_defect_and_the_connection_goes_on(self):
        # as the Node server (docs/wire.md): text that is not JSON, JSON that is not an object, an unknown
        # `_tag` and an id that is neither a string nor a number each get a Defect, and later requests are
        # served (the connection was closed, or, for `42` or an id of [1], dropped with a traceback; an unknown
        # `_tag` was passed over without a word)
        listener = listen(self.address())
        self.addCleanup(listener.close)
        thread = threading.Thread(target=RpcServer({"Add": lambda p: p["a"] + p["b"]}).serve, args=(listener,))
        thread.daemon = True
        thread.start()
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(raw.close)
        raw.connect(os.path.join(self.dir, "s.sock"))
        raw.settimeout(30)
        bad = [b"not json", b"42", b'{"_tag": "Bogus"}',
               b'{"_tag": "Request", "id": [1], "tag": "Add", "payload": {"a": 1, "b": 2}, "headers": []}']
        good = b'{"_tag": "Request", "id": "7", "tag": "Add", "payload": {"a": 1, "b": 2}, "headers": []}'
        raw.sendall(framing.encode(framing.DATA, rpc.HELLO_JSON) +
                    b"".join(framing.encode(framing.DATA, m) for m in bad) + framing.encode(framing.DATA, good))
        decoder, messages = framing.Decoder(), []
        while len(messages) < len(bad) + 1:
            chunk = raw.recv(65536)
            self.assertTrue(chunk, "the connection stays open")
            messages.extend(json.loads(p.decode("utf-8")) for kind, p in decoder.feed(chunk) if kind == framing.DATA)
        self.assertEqual([m["_tag"] for m in messages], ["Defect"] * len(bad) + ["Exit"])
        self.assertIn("speaks json serialization", messages[0]["defect"])
        self.assertEqual(messages[2]["defect"], "Unknown request tag: Bogus")
        self.assertEqual(messages[3]["defect"], "Invalid request id: [1]")
        self.assertEqual(messages[-1], {"_tag": "Exit", "requestId": "7", "exit": {"_tag": "Success", "value": 3}})
        raw.sendall(framing.encode(framing.CLOSE))

    def test_max_queued_must_be_a_whole_number_of_at_least_2(self):
        for bad in (0, 1, 1.5, "64", True):
            with self.assertRaises(IpcError) as caught:
                RpcServer({}, max_queued=bad)
            self.assertEqual(caught.exception.reason, "InvalidOption")


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODE = os.path.join(REPO, "node_modules", ".bin", "node")
CLI = os.path.join(REPO, "packages", "cli", "src", "bin.ts")
BINARY_REFUSAL = 'this RPC server speaks json serialization, not "binary"'
PACKED_REFUSAL = 'this RPC server speaks json serialization, not "packed"'


class Refusals(TempDirCase):
    """A client of another serialization is refused as the Node server refuses it (docs/wire.md, the
    hello): a binary client gets a ``Defect`` in binary, then the close."""

    def setUp(self):
        TempDirCase.setUp(self)
        listener = listen(self.address())
        self.addCleanup(listener.close)
        thread = threading.Thread(target=RpcServer({"Add": lambda p: p["a"] + p["b"]}).serve, args=(listener,))
        thread.daemon = True
        thread.start()

    def exchange(self, first, until_close=True):
        """Sends ``first`` as the first frame; returns the frames the server sends until it closes (or,
        with ``until_close`` False, its first frame)."""
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(raw.close)
        raw.connect(os.path.join(self.dir, "s.sock"))
        raw.settimeout(30)
        raw.sendall(framing.encode(framing.DATA, first))
        decoder, frames = framing.Decoder(), []
        while until_close or not frames:
            chunk = raw.recv(65536)
            if not chunk:
                return frames
            frames.extend(decoder.feed(chunk))
        return frames

    def request_of_size(self, size):
        head = b'{"_tag":"Request","id":"1","tag":"Add","payload":{"a":1,"b":2,"pad":"'
        tail = b'"},"headers":[]}'
        return head + b"x" * (size - len(head) - len(tail)) + tail

    def test_a_first_json_message_without_hello_is_json_up_to_64_kib_and_binary_past_it(self):
        # without the size bound a first JSON message of any size was served as JSON (docs/wire.md:
        # "JSON when it is UTF-8 JSON text starting with { or [ and at most 64 KiB long, binary otherwise")
        served = self.exchange(self.request_of_size(rpc.MAX_SNIFFED), until_close=False)
        self.assertEqual(json.loads(served[0][1].decode("utf-8"))["exit"], {"_tag": "Success", "value": 3})
        with self.assertLogs("effect_ipc.rpc", "WARNING"):
            refused = self.exchange(self.request_of_size(rpc.MAX_SNIFFED + 1), until_close=False)
            self.assertEqual(refused[0], (framing.DATA, rpc.binary_defect(BINARY_REFUSAL)))

    def test_a_hello_of_exactly_64_bytes_is_a_hello(self):
        # `len(data) > MAX_HELLO` -> `>=` took a 64-byte hello for a bad one
        first = b"effect-rpc:" + b"j" * (rpc.MAX_HELLO - len(b"effect-rpc:"))
        self.assertEqual(len(first), 64)
        with self.assertLogs("effect_ipc.rpc", "WARNING") as logged:
            self.assertEqual(self.exchange(first), [(framing.CLOSE, b"")])
        self.assertIn('speaks json serialization, not "%s" (cut from 53 characters)' % ("j" * 32), logged.output[0])

    def test_the_binary_defect_is_what_effects_encoder_writes(self):
        # written by effect 4.1's RpcSerialization.layerSchemaBinary for {_tag: "Defect", defect}
        vectors = {
            "": "0f21a71fbf488612ff6b020403202222",
            "a": "1021a71fbf488612ff6b02050420226122",
            "h\u00e9llo": "1521a71fbf488612ff6b020a09202268c3a96c6c6f22",
            'a"b\\c\nd': "1921a71fbf488612ff6b020e0d2022615c22625c5c635c6e6422",
            BINARY_REFUSAL: "4821a71fbf488612ff6b023d3c202274686973205250432073657276657220737065616b73206a736f6e"
                            "2073657269616c697a6174696f6e2c206e6f74205c2262696e6172795c2222",
        }
        for text, hex_bytes in vectors.items():
            self.assertEqual(rpc.binary_defect(text), bytes.fromhex(hex_bytes), text)
        # past one byte of length: the varints grow (200 and 20000 characters)
        self.assertEqual(rpc.binary_defect("x" * 200)[:16], bytes.fromhex("d90121a71fbf488612ff6b02cd01cb01"))
        self.assertEqual(rpc.binary_defect("y" * 20000)[:20], bytes.fromhex("b39c0121a71fbf488612ff6b02a69c01a39c0120"))

    def test_the_packed_defect_is_what_the_node_encoder_writes(self):
        # written by effect-ipc's packed serialization (IpcRpc.layerSerialization) for {_tag: "Defect", defect}
        vectors = {
            "": "e10802045f7461670606446566656374066465666563740600",
            "a": "e10802045f746167060644656665637406646566656374060161",
            "h\u00e9llo": "e10802045f746167060644656665637406646566656374060668c3a96c6c6f",
            PACKED_REFUSAL: "e10802045f746167060644656665637406646566656374063774686973205250432073657276657220737065616b"
                            "73206a736f6e2073657269616c697a6174696f6e2c206e6f7420227061636b656422",
        }
        for text, hex_bytes in vectors.items():
            self.assertEqual(rpc.packed_defect(text), bytes.fromhex(hex_bytes), text)
        # past one byte of length: the varint grows (200 characters)
        self.assertEqual(rpc.packed_defect("x" * 200)[:27],
                         bytes.fromhex("e10802045f74616706064465666563740664656665637406c80178"))

    def test_a_packed_client_gets_a_defect_in_packed_then_the_close(self):
        with self.assertLogs("effect_ipc.rpc", "WARNING") as logged:
            frames = self.exchange(b"effect-rpc:packed")
        self.assertEqual(frames, [(framing.DATA, rpc.packed_defect(PACKED_REFUSAL)), (framing.CLOSE, b"")])
        self.assertIn("refused an RPC client at %s: %s" % (self.address(), PACKED_REFUSAL), logged.output[0])

    def test_a_binary_client_gets_a_defect_in_binary_then_the_close(self):
        for first in (b"effect-rpc:binary", b"\x00\x01 a first binary message, no hello"):
            with self.assertLogs("effect_ipc.rpc", "WARNING") as logged:
                frames = self.exchange(first)
            self.assertEqual(frames, [(framing.DATA, rpc.binary_defect(BINARY_REFUSAL)), (framing.CLOSE, b"")])
            self.assertIn("refused an RPC client at %s: %s" % (self.address(), BINARY_REFUSAL), logged.output[0])

    def test_a_bad_hello_or_an_unknown_serialization_gets_only_the_close(self):
        cases = [
            (b"effect-rpc:" + b"j" * 60, "not a hello of 71 bytes (at most 64)"),
            (b"effect-rpc:msgpack", 'not "msgpack"'),
            (b"effect-rpc:" + b"m" * 40, 'not "%s" (cut from 40 characters)' % ("m" * 32)),
            (b"effect-rpc:\xff", "not a hello that is not UTF-8 text"),
        ]
        for first, shown in cases:
            with self.assertLogs("effect_ipc.rpc", "WARNING") as logged:
                self.assertEqual(self.exchange(first), [(framing.CLOSE, b"")], first)
            self.assertIn("speaks json serialization, " + shown, logged.output[0])

    @unittest.skipUnless(os.path.exists(NODE) and os.path.exists(CLI), "needs the repository's Node and CLI")
    def test_the_node_cli_on_binary_is_told_to_give_serialization(self):
        import subprocess
        ran = subprocess.run(
            ["bash", os.path.join(REPO, "scripts", "node.sh"), CLI, "call", self.address(), "Add", '{"a":1,"b":2}',
             "--serialization", "binary", "--timeout", "10"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        self.assertEqual(ran.returncode, 1, ran.stderr)
        self.assertIn(("effect-ipc: Protocol: Add: %s: give --serialization to match" % BINARY_REFUSAL).encode("utf-8"),
                      ran.stderr)
        json_ran = subprocess.run(
            ["bash", os.path.join(REPO, "scripts", "node.sh"), CLI, "call", self.address(), "Add", '{"a":1,"b":2}',
             "--serialization", "json", "--timeout", "10"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        self.assertEqual((json_ran.returncode, json_ran.stdout), (0, b"3\n"), json_ran.stderr)

    @unittest.skipUnless(os.path.exists(NODE) and os.path.exists(CLI), "needs the repository's Node and CLI")
    def test_the_node_cli_on_its_default_packed_is_told_to_give_serialization(self):
        import subprocess
        ran = subprocess.run(
            ["bash", os.path.join(REPO, "scripts", "node.sh"), CLI, "call", self.address(), "Add", '{"a":1,"b":2}',
             "--timeout", "10"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        self.assertEqual(ran.returncode, 1, ran.stderr)
        self.assertIn(("effect-ipc: Protocol: Add: %s: give --serialization to match" % PACKED_REFUSAL).encode("utf-8"),
                      ran.stderr)


class Unencodable(TempDirCase):
    def test_a_result_json_cannot_encode_is_answered_with_a_defect(self):
        # bytes, a date, a set, NaN returned (or streamed, or in a typed error) left the call unanswered
        import datetime
        import logging
        logging.getLogger("effect_ipc.rpc").disabled = True
        self.addCleanup(setattr, logging.getLogger("effect_ipc.rpc"), "disabled", False)

        def stream_bytes(p):
            yield 1
            yield b"raw"

        def fail_with_bytes(p):
            raise RpcFailure({"_tag": "Bad", "data": b"raw"})

        server = RpcServer({
            "Bytes": lambda p: b"raw bytes", "Date": lambda p: datetime.date(2024, 1, 1),
            "Set": lambda p: {1, 2}, "NaN": lambda p: float("nan"), "Streamed": stream_bytes,
            "Failed": fail_with_bytes, "Ok": lambda p: 1,
        })
        listener = listen(self.address())
        self.addCleanup(listener.close)
        thread = threading.Thread(target=server.serve, args=(listener,))
        thread.daemon = True
        thread.start()
        client = RpcClient.connect(self.address())
        self.addCleanup(client.close)
        for tag in ("Bytes", "Date", "Set", "NaN", "Failed"):
            with self.assertRaises(RpcDefect) as caught:
                client.call(tag, timeout=5)
            self.assertIn("JSON", caught.exception.defect["message"])
        with self.assertRaises(RpcDefect):
            list(client.stream("Streamed", timeout=5))
        self.assertEqual(client.call("Ok", timeout=5), 1)


class MalformedAnswers(TempDirCase):
    def test_a_malformed_message_from_the_server_fails_the_call_with_protocol_and_the_client_goes_on(self):
        # one of these killed the client's reader thread: the call, and every later one, waited for good
        import logging
        logging.getLogger("effect_ipc.rpc").disabled = True
        self.addCleanup(setattr, logging.getLogger("effect_ipc.rpc"), "disabled", False)
        replies = [b'"hello"', b"[]", b"NaN", b'{"_tag":"Exit","requestId":["%s"],"exit":{"_tag":"Success","value":1}}',
                   b'{"_tag":"Exit","requestId":"%s","exit":[1]}',
                   b'{"_tag":"Exit","requestId":"%s","exit":{"_tag":"Failure","cause":["x"]}}',
                   b'{"_tag":"Exit","requestId":"%s","exit":{"_tag":"Failure","cause":{}}}',
                   b'{"_tag":"Chunk","requestId":"%s","values":5}',
                   # JSON nested deeper than Python parses (RecursionError, not a ValueError: the reader died)
                   b"[" * 100000 + b"]" * 100000,
                   b'{"_tag":"Exit","requestId":"%s","exit":{"_tag":"Success","value":42}}']
        listener = listen(self.address())
        self.addCleanup(listener.close)

        def fake_server():
            channel = listener.accept()
            channel.receive()  # the hello
            for reply in replies:
                request = json.loads(channel.receive(10).decode("utf-8"))
                channel.send(reply.replace(b"%s", request["id"].encode()) if b"%s" in reply else reply)
            channel.receive(10)
        thread = threading.Thread(target=fake_server)
        thread.daemon = True
        thread.start()
        client = RpcClient.connect(self.address())
        self.addCleanup(client.close)
        for reply in replies[:-1]:
            with self.assertRaises(IpcError) as caught:
                client.call("Add", {"a": 1, "b": 2}, timeout=5)
            self.assertEqual(caught.exception.reason, "Protocol", reply)
        self.assertEqual(client.call("Add", {"a": 1, "b": 2}, timeout=5), 42)


class UnackedChunks(TempDirCase):
    def test_a_server_that_sends_chunks_past_the_acknowledgements_fails_the_call_with_protocol(self):
        # every chunk was kept: a server that ignored the acknowledgements grew the client without bound
        import logging
        logging.getLogger("effect_ipc.rpc").disabled = True
        self.addCleanup(setattr, logging.getLogger("effect_ipc.rpc"), "disabled", False)
        listener = listen(self.address())
        self.addCleanup(listener.close)
        interrupted = []
        seen = threading.Event()

        def fake_server():
            channel = listener.accept()
            channel.receive()  # the hello
            request = json.loads(channel.receive(10).decode("utf-8"))
            chunk = json.dumps({"_tag": "Chunk", "requestId": request["id"], "values": ["x" * 1000]}).encode()
            for _ in range(rpc.MAX_UNACKED_CHUNKS * 4):
                channel.send(chunk)
            while True:
                message = json.loads(channel.receive(10).decode("utf-8"))
                if message.get("_tag") == "Interrupt":
                    interrupted.append(message["requestId"])
                    seen.set()
                    channel.send(json.dumps({"_tag": "Exit", "requestId": request["id"],
                                             "exit": {"_tag": "Success", "value": None}}).encode())
                    break
            channel.receive(10)
        thread = threading.Thread(target=fake_server)
        thread.daemon = True
        thread.start()
        client = RpcClient.connect(self.address())
        self.addCleanup(client.close)
        call = client.start("Streamed")
        seen.wait(20)
        self.assertEqual(interrupted, [call.id], "the call was interrupted on the server")
        # what the client holds for it: at most the chunks it allows, then the error
        self.assertLessEqual(call._pending.items.qsize(), rpc.MAX_UNACKED_CHUNKS + 1)
        with self.assertRaises(IpcError) as caught:
            call.result(timeout=5)
        self.assertEqual(caught.exception.reason, "Protocol")
        self.assertIn("past the acknowledgements", str(caught.exception))


class DeepNesting(RawRpcCase):
    """JSON nested deeper than Python's parser goes raises RecursionError, not ValueError: it ended the
    connection with a traceback where other JSON the server cannot take gets a ``Defect``."""

    def setUp(self):
        RawRpcCase.setUp(self)
        import logging
        logging.getLogger("effect_ipc.rpc").disabled = True
        self.addCleanup(setattr, logging.getLogger("effect_ipc.rpc"), "disabled", False)
        self.serve({"Add": lambda p: p["a"] + p["b"]})

    def exchange(self, frames, count):
        raw = self.raw()
        raw.sendall(b"".join(framing.encode(framing.DATA, f) for f in frames))
        messages = self.answers(raw, count)
        raw.sendall(framing.encode(framing.CLOSE))
        return messages

    good = b'{"_tag": "Request", "id": "7", "tag": "Add", "payload": {"a": 1, "b": 2}, "headers": []}'
    served = {"_tag": "Exit", "requestId": "7", "exit": {"_tag": "Success", "value": 3}}

    def test_a_message_nested_too_deep_gets_a_defect_and_the_connection_goes_on(self):
        deep = b"[" * 100000 + b"]" * 100000
        request = b'{"_tag": "Request", "id": "1", "tag": "Add", "payload": ' + deep + b', "headers": []}'
        messages = self.exchange([rpc.HELLO_JSON, deep, request, self.good], 3)
        self.assertEqual([m["_tag"] for m in messages], ["Defect", "Defect", "Exit"])
        self.assertIn("nested deeper than Python's parser goes", messages[0]["defect"])
        self.assertEqual(messages[2], self.served)

    def test_a_first_message_nested_too_deep_is_json_without_a_hello(self):
        # under 64 KiB and opening with "[": sniffed as a JSON client, as the Node server reads it
        deep = b"[" * 20000 + b"]" * 20000
        messages = self.exchange([deep, self.good], 2)
        self.assertEqual([m["_tag"] for m in messages], ["Defect", "Exit"])
        self.assertIn("nested deeper than Python's parser goes", messages[0]["defect"])
        self.assertEqual(messages[1], self.served)

    def test_a_failure_nested_too_deep_to_show_still_makes_an_error(self):
        error = [0]
        for _ in range(100000):
            error = [error]
        failure = RpcFailure({"_tag": "Deep", "error": error})
        self.assertEqual(failure.tag, "Deep")
        self.assertIn("nested too deep to show", str(failure))


class OddFields(TempDirCase):
    def test_a_tag_or_request_id_of_another_json_type_is_answered_as_the_node_server_does(self):
        # an array or object as a Request's tag, or as an Ack's or Interrupt's requestId, dropped the
        # whole connection (unhashable); the Node server answers the Request with a Die and goes on
        import logging
        logging.getLogger("effect_ipc.rpc").disabled = True
        self.addCleanup(setattr, logging.getLogger("effect_ipc.rpc"), "disabled", False)
        listener = listen(self.address())
        self.addCleanup(listener.close)
        thread = threading.Thread(target=RpcServer({"Add": lambda p: p["a"] + p["b"]}).serve, args=(listener,))
        thread.daemon = True
        thread.start()
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(raw.close)
        raw.connect(os.path.join(self.dir, "s.sock"))
        raw.settimeout(30)
        bad = [b'{"_tag": "Request", "id": "1", "tag": ["Add"], "payload": {"a": 1, "b": 2}, "headers": []}',
               b'{"_tag": "Ack", "requestId": ["1"]}', b'{"_tag": "Interrupt", "requestId": {"x": 1}}',
               b'{"_tag": "Request", "id": "2", "tag": {"t": 1}, "payload": null, "headers": []}']
        good = b'{"_tag": "Request", "id": "7", "tag": "Add", "payload": {"a": 1, "b": 2}, "headers": []}'
        raw.sendall(framing.encode(framing.DATA, rpc.HELLO_JSON) +
                    b"".join(framing.encode(framing.DATA, m) for m in bad) + framing.encode(framing.DATA, good))
        decoder, messages = framing.Decoder(), []
        while len(messages) < 3:
            chunk = raw.recv(65536)
            self.assertTrue(chunk, "the connection stays open")
            messages.extend(json.loads(p.decode("utf-8")) for kind, p in decoder.feed(chunk) if kind == framing.DATA)
        die = lambda id, text: {"_tag": "Exit", "requestId": id, "exit": {  # noqa: E731
            "_tag": "Failure", "cause": [{"_tag": "Die", "defect": "Unknown request tag: " + text}]}}
        self.assertEqual(messages, [die("1", "Add"), die("2", "[object Object]"),
                                    {"_tag": "Exit", "requestId": "7", "exit": {"_tag": "Success", "value": 3}}])
        raw.sendall(framing.encode(framing.CLOSE))




class CauseOrder(unittest.TestCase):
    def test_a_cause_with_a_fail_and_a_die_is_the_typed_error_whatever_their_order(self):
        # exit_result read Die before Fail (docs/wire.md: "read a Fail first, then a Die")
        fail = {"_tag": "Fail", "error": {"_tag": "DivisionByZero", "dividend": 1}}
        die = {"_tag": "Die", "defect": "finalizer failed"}
        for cause in ([die, fail], [fail, die]):
            with self.assertRaises(RpcFailure) as caught:
                rpc.exit_result({"_tag": "Failure", "cause": cause})
            self.assertEqual(caught.exception.error, fail["error"])
        with self.assertRaises(RpcDefect):
            rpc.exit_result({"_tag": "Failure", "cause": [{"_tag": "Interrupt", "fiberId": 1}, die]})


if __name__ == "__main__":
    unittest.main()


class ServerProcess(TempDirCase):
    """A client of a server in a process of its own, killed at the end of the test."""

    def start_server(self, code):
        """Runs ``code`` (with ``json``, ``sys`` and effect_ipc's ``RpcServer``, ``listen`` and ``rpc`` imported,
        ``address`` this test's address) in a child Python, its stdin a pipe, and waits for it to print ``ready``."""
        import subprocess
        import sys
        package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        process = subprocess.Popen(
            [sys.executable, "-c", "import json, sys\nsys.path.insert(0, %r)\nfrom effect_ipc import RpcServer, "
             "listen, rpc\naddress = %r\n%s" % (package, self.address(), code)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, universal_newlines=True)
        self.addCleanup(process.stdout.close)
        self.addCleanup(process.stdin.close)
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)
        self.assertEqual(process.stdout.readline().strip(), "ready")
        return process

    def start_held_server(self, code):
        """``start_server`` of a server that accepts one connection on this test's address and reads nothing of
        it until a line comes on its stdin; then runs ``code`` with ``channel``, a ``Channel`` over it."""
        return self.start_server(
            "import socket\nfrom effect_ipc.channel import Channel\n"
            "sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\nsock.bind(address[len('unix://'):])\n"
            "sock.listen(1)\nprint('ready', flush=True)\nconnection, _ = sock.accept()\n"
            "sys.stdin.readline()  # reads nothing until told\n"
            "channel = Channel.over_socket(connection, address)\n" + code)

    def assert_every_operation_raises(self, client, kind, reason):
        operations = {
            "call": lambda: client.call("Add", {"a": 1, "b": 2}, timeout=30),
            "start": lambda: client.start("Add", {"a": 1, "b": 2}).result(30),
            "stream": lambda: list(client.stream("Add", {"a": 1, "b": 2}, timeout=30)),
            "send": lambda: client.send("Add", {"a": 1, "b": 2}),
            "ping": lambda: client.ping(30),
        }
        for name, operation in sorted(operations.items()):
            with self.assertRaises(IpcError, msg=name) as caught:
                operation()
            self.assertIsInstance(caught.exception, kind, "%s: %r" % (name, caught.exception))
            self.assertEqual(caught.exception.reason, reason, "%s: %s" % (name, caught.exception))

    def test_every_operation_on_a_closed_client_is_closed_also_after_its_server_went_away(self):
        # after a reset then a close, call/start/stream/send raised ConnectionLost (only ping said Closed)
        server = self.start_server(
            "def slow(p):\n    rpc.current().cancelled.wait(60)\n"
            "listener = listen(address)\nprint('ready', flush=True)\n"
            "RpcServer({'Add': lambda p: p['a'] + p['b'], 'Slow': slow}).serve(listener)\n")
        closed = RpcClient.connect(self.address())
        self.assertEqual(closed.call("Add", {"a": 1, "b": 2}, timeout=30), 3)
        closed.close()
        self.assert_every_operation_raises(closed, Closed, "Closed")
        client = RpcClient.connect(self.address())
        self.addCleanup(client.close)
        self.assertEqual(client.call("Add", {"a": 1, "b": 2}, timeout=30), 3)
        call = client.start("Slow")
        server.kill()  # the peer goes away without a close frame
        with self.assertRaises(IpcError) as caught:
            call.result(30)
        self.assertEqual(caught.exception.reason, "ConnectionLost")
        self.assert_every_operation_raises(client, IpcError, "ConnectionLost")
        client.close()  # closed here after the reset: Closed, as after a plain close
        self.assert_every_operation_raises(client, Closed, "Closed")

    def test_a_pong_that_comes_after_its_ping_timed_out_does_not_answer_the_next_ping(self):
        # pongs were taken in turn from one queue: the late pong answered the next ping at once, before its own.
        # The server answers its first two pings only when a request comes, then the others at once
        self.start_server(
            "from effect_ipc import listen\nlistener = listen(address)\nprint('ready', flush=True)\n"
            "channel = listener.accept()\nchannel.receive()  # the hello\nheld = pings = 0\n"
            "for data in channel:\n"
            "    message = json.loads(data.decode('utf-8'))\n"
            "    if message['_tag'] == 'Ping':\n"
            "        pings += 1\n"
            "        if pings <= 2:\n"
            "            held += 1  # answered late: once a request comes\n"
            "        else:\n"
            "            channel.send(b'{\"_tag\":\"Pong\"}')\n"
            "    elif message['_tag'] == 'Request':\n"
            "        for _ in range(held):\n"
            "            channel.send(b'{\"_tag\":\"Pong\"}')\n"
            "        held = 0\n"
            "        channel.send(json.dumps({'_tag': 'Exit', 'requestId': message['id'],\n"
            "                                 'exit': {'_tag': 'Success', 'value': pings}}).encode())\n")
        client = RpcClient.connect(self.address())
        self.addCleanup(client.close)
        with self.assertRaises(IpcError) as caught:
            client.ping(0.2)  # the server holds its pong
        self.assertEqual(caught.exception.reason, "Timeout")
        # the late pong comes before this call's answer, so the client has read it once the call returns
        self.assertEqual(client.call("Pings", timeout=30), 1)
        with self.assertRaises(IpcError) as caught:
            client.ping(0)  # its own pong is held too: the late one is not it
        self.assertEqual(caught.exception.reason, "Timeout")
        self.assertEqual(client.call("Pings", timeout=30), 2)  # the second ping's pong, late too
        client.ping(30)  # answered at once, by its own pong
        self.assertEqual(client.call("Pings", timeout=30), 3)

    def test_a_call_interrupted_by_ctrl_c_while_its_request_is_sent_ends_the_connection_and_says_so(self):
        # Ctrl-C in the middle of a large request left a cut frame on the wire: the server read the next
        # requests as the rest of it, and every later call waited (for ever without a timeout), nothing said
        import signal
        server = self.start_held_server("RpcServer({'Echo': lambda p: p}).serve_channel(channel)\n")
        # Ctrl-C's KeyboardInterrupt, also where this process was started with SIGINT ignored
        self.addCleanup(signal.signal, signal.SIGINT, signal.signal(signal.SIGINT, signal.default_int_handler))
        client = RpcClient.connect(self.address())
        self.addCleanup(client.close)

        def interrupt_once_the_send_blocks():
            while client.channel._writable(0):  # the socket's poll: the request is still going out
                time.sleep(0.001)
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # Ctrl-C
        thread = threading.Thread(target=interrupt_once_the_send_blocks)
        thread.daemon = True
        thread.start()
        with self.assertRaises(KeyboardInterrupt):
            client.call("Echo", "x" * (16 << 20), timeout=30)  # far more than the socket holds
        thread.join(30)
        server.stdin.write("serve\n")
        server.stdin.flush()
        with self.assertRaises(IpcError) as caught:
            client.call("Echo", "after", timeout=30)
        self.assertEqual(caught.exception.reason, "ConnectionLost", caught.exception)
        self.assertIn("interrupted", str(caught.exception))

    def lines_of(self, process):
        """A queue of the lines ``process`` prints (read by a thread of its own: a wait for one is bounded)."""
        lines = queue.Queue()

        def read():
            try:
                for line in process.stdout:
                    lines.put(line.strip())
            except (OSError, ValueError):
                pass  # closed by the test's cleanup
        thread = threading.Thread(target=read)
        thread.daemon = True
        thread.start()
        return lines

    def next_line(self, lines, what):
        """The next line of ``lines_of``, waited for up to 30 s (a server that prints no more fails the test)."""
        try:
            return lines.get(timeout=30)
        except queue.Empty:
            self.fail("the server printed nothing more: %s" % what)

    def ctrl_c_once_waiting(self, lines, line, at=("queue.py", "get")):
        """Sends Ctrl-C to the main thread once the server printed ``line`` and the client waits on the main thread
        for what the server sends (it is in a queue's ``get``, or the function ``at`` names as (file, function):
        seen on its stack, nothing timed)."""
        import signal
        import sys
        # Ctrl-C's KeyboardInterrupt, also where this process was started with SIGINT ignored
        self.addCleanup(signal.signal, signal.SIGINT, signal.signal(signal.SIGINT, signal.default_int_handler))
        main = threading.main_thread().ident

        def waiting():
            frame = sys._current_frames().get(main)
            while frame is not None:
                if (os.path.basename(frame.f_code.co_filename), frame.f_code.co_name) == at:
                    return True
                frame = frame.f_back
            return False

        def interrupt():
            try:
                if lines.get(timeout=30) != line:
                    return  # the main thread's wait times out: the test fails there
            except queue.Empty:
                return
            while not waiting():
                time.sleep(0.001)
            signal.pthread_kill(main, signal.SIGINT)
        thread = threading.Thread(target=interrupt)
        thread.daemon = True
        thread.start()
        self.addCleanup(thread.join, 30)

    def test_ctrl_c_while_a_call_waits_for_its_answer_interrupts_it_on_the_server(self):
        # the KeyboardInterrupt left the call running on the server and its entry held by the client, for good
        server = self.start_server(
            "def hang(p):\n    print('began', flush=True)\n    rpc.current().cancelled.wait()\n"
            "    print('interrupted', flush=True)\n"
            "listener = listen(address)\nprint('ready', flush=True)\n"
            "RpcServer({'Add': lambda p: p['a'] + p['b'], 'Hang': hang}).serve(listener)\n")
        lines = self.lines_of(server)
        client = RpcClient.connect(self.address())
        self.addCleanup(client.close)
        for how in ("call", "result"):
            self.ctrl_c_once_waiting(lines, "began")
            call = None
            with self.assertRaises(KeyboardInterrupt, msg=how):
                if how == "call":
                    client.call("Hang", timeout=30)
                else:
                    call = client.start("Hang")
                    call.result(30)
            self.assertEqual(client._pending, {}, "%s: the client holds nothing for it" % how)
            self.assertEqual(self.next_line(lines, how), "interrupted", how)  # the server saw the Interrupt
            if call is not None:
                with self.assertRaises(RpcInterrupted):
                    call.result(30)
            self.assertEqual(client.call("Add", {"a": 1, "b": 2}, timeout=30), 3)

    def test_ctrl_c_just_after_a_request_was_sent_interrupts_the_call_on_the_server(self):
        # the entry was dropped without an Interrupt: the call went on running on the server, for good
        server = self.start_server(
            "def hang(p):\n    print('began', flush=True)\n    rpc.current().cancelled.wait()\n"
            "    print('interrupted', flush=True)\n"
            "listener = listen(address)\nprint('ready', flush=True)\n"
            "RpcServer({'Add': lambda p: p['a'] + p['b'], 'Hang': hang}).serve(listener)\n")
        lines = self.lines_of(server)
        client = RpcClient.connect(self.address())
        self.addCleanup(client.close)
        for how in ("call", "start", "stream"):
            # the request's frame is written whole, then the main thread is held, still inside the send, until
            # the Ctrl-C: as if it came just after the write
            write = client.channel._send_frame
            held = threading.Event()

            def held_once_written():
                held.wait(60)  # on the stack only once the write returned: the Ctrl-C cannot cut the frame

            def written_then_held(*args, **options):
                client.channel._send_frame = write  # once: the Interrupt goes out unheld
                sent = write(*args, **options)
                held_once_written()
                return sent
            client.channel._send_frame = written_then_held
            self.ctrl_c_once_waiting(lines, "began", at=("test_rpc.py", "held_once_written"))
            with self.assertRaises(KeyboardInterrupt, msg=how):
                if how == "call":
                    client.call("Hang", timeout=30)
                elif how == "start":
                    client.start("Hang")
                else:
                    client.stream("Hang", timeout=30)
            self.assertEqual(client._pending, {}, "%s: the client holds nothing for it" % how)
            self.assertEqual(self.next_line(lines, how), "interrupted", how)  # the server saw the Interrupt
            self.assertEqual(client.call("Add", {"a": 1, "b": 2}, timeout=30), 3)

    def test_ctrl_c_after_call_sent_its_request_and_before_it_waits_interrupts_the_call_on_the_server(self):
        # call() cancelled only on a Timeout: a Ctrl-C between the send and result's wait (its argument check) left
        # the call registered here and running on the server, for good
        server = self.start_server(
            "def hang(p):\n    print('began', flush=True)\n    rpc.current().cancelled.wait()\n"
            "    print('interrupted', flush=True)\n"
            "listener = listen(address)\nprint('ready', flush=True)\n"
            "RpcServer({'Add': lambda p: p['a'] + p['b'], 'Hang': hang}).serve(listener)\n")
        lines = self.lines_of(server)
        client = RpcClient.connect(self.address())
        self.addCleanup(client.close)
        check = rpc.check_seconds
        held = threading.Event()

        def held_before_the_wait():
            held.wait(60)

        def checked_then_held(*args):
            check(*args)
            if client._pending:  # result's own check, the request sent: held there until the Ctrl-C
                held_before_the_wait()
        rpc.check_seconds = checked_then_held
        self.addCleanup(setattr, rpc, "check_seconds", check)
        self.ctrl_c_once_waiting(lines, "began", at=("test_rpc.py", "held_before_the_wait"))
        with self.assertRaises(KeyboardInterrupt):
            client.call("Hang", timeout=30)
        rpc.check_seconds = check
        self.assertEqual(client._pending, {}, "the client holds nothing for it")
        self.assertEqual(self.next_line(lines, "the Interrupt"), "interrupted")  # the server saw the Interrupt
        self.assertEqual(client.call("Add", {"a": 1, "b": 2}, timeout=30), 3)

    def test_ctrl_c_while_a_stream_waits_for_its_next_batch_interrupts_it_on_the_server(self):
        # only leaving the loop (GeneratorExit) cancelled: a KeyboardInterrupt left the stream open on the server
        server = self.start_server(
            "def stalled(p):\n    try:\n        yield 1\n        print('began', flush=True)\n"
            "        rpc.current().cancelled.wait()  # the next element never comes\n"
            "    finally:\n        print('interrupted', flush=True)\n"
            "listener = listen(address)\nprint('ready', flush=True)\n"
            "RpcServer({'Add': lambda p: p['a'] + p['b'], 'Stalled': stalled}).serve(listener)\n")
        lines = self.lines_of(server)
        client = RpcClient.connect(self.address())
        self.addCleanup(client.close)
        self.ctrl_c_once_waiting(lines, "began")
        taken = []
        with self.assertRaises(KeyboardInterrupt):
            for value in client.stream("Stalled", timeout=30):
                taken.append(value)
        self.assertEqual(taken, [1])
        self.assertEqual(client._pending, {}, "the client holds nothing for it")
        self.assertEqual(self.next_line(lines, "the stream"), "interrupted")  # the server saw the Interrupt
        self.assertEqual(client.call("Add", {"a": 1, "b": 2}, timeout=30), 3)

    def test_a_pong_no_ping_waits_for_is_ignored(self):
        # it was counted: the next ping was answered at once, before its own pong. The server sends a pong with
        # its answer to Stray, holds the pongs of pings until Release, and answers pings at once after Answer
        self.start_server(
            "from effect_ipc import listen\nlistener = listen(address)\nprint('ready', flush=True)\n"
            "channel = listener.accept()\nchannel.receive()  # the hello\n"
            "pong = b'{\"_tag\":\"Pong\"}'\nheld = 0\nanswering = False\n"
            "for data in channel:\n"
            "    message = json.loads(data.decode('utf-8'))\n"
            "    if message['_tag'] == 'Ping':\n"
            "        if answering:\n"
            "            channel.send(pong)\n"
            "        else:\n"
            "            held += 1\n"
            "    elif message['_tag'] == 'Request':\n"
            "        if message['tag'] == 'Stray':\n"
            "            channel.send(pong)  # no ping asked for it\n"
            "        elif message['tag'] == 'Release':\n"
            "            for _ in range(held):\n"
            "                channel.send(pong)\n"
            "            held = 0\n"
            "        else:\n"
            "            answering = True\n"
            "        channel.send(json.dumps({'_tag': 'Exit', 'requestId': message['id'],\n"
            "                                 'exit': {'_tag': 'Success', 'value': None}}).encode())\n")
        client = RpcClient.connect(self.address())
        self.addCleanup(client.close)
        for when in ("before any ping", "after every ping was answered"):
            # the stray pong comes before this call's answer, so the client has read it once the call returns
            client.call("Stray", timeout=30)
            with self.assertRaises(IpcError, msg=when) as caught:
                client.ping(0)  # its own pong is held: the stray one does not answer it
            self.assertEqual(caught.exception.reason, "Timeout")
            client.call("Release", timeout=30)  # that ping's pong, late
        client.call("Answer", timeout=30)
        client.ping(30)  # answered by its own pong

    def test_a_ping_interrupted_by_ctrl_c_before_it_was_sent_leaves_later_pings_answered(self):
        # Ctrl-C while a ping waited for another thread's write (nothing of it sent) counted it as sent: each
        # later ping waited for one pong more than the server would send, and timed out, the connection alive
        import signal
        import sys
        server = self.start_held_server("RpcServer({'Echo': lambda p: len(p)}).serve_channel(channel)\n")
        self.addCleanup(signal.signal, signal.SIGINT, signal.signal(signal.SIGINT, signal.default_int_handler))
        client = RpcClient.connect(self.address())
        self.addCleanup(client.close)
        large = []  # a call whose request is far more than the socket holds: its write waits, in another thread
        writer = threading.Thread(target=lambda: large.append(client.call("Echo", "x" * (16 << 20), timeout=60)))
        writer.daemon = True
        writer.start()
        while not client.channel._write_lock.locked():  # the call's request is being written
            time.sleep(0.001)
        main = threading.main_thread().ident

        def interrupt_once_the_ping_waits_for_the_write():
            while True:
                frame = sys._current_frames().get(main)
                if frame is not None and frame.f_code.co_name == "_send_frame":
                    break
                time.sleep(0.001)
            signal.pthread_kill(main, signal.SIGINT)  # Ctrl-C
        thread = threading.Thread(target=interrupt_once_the_ping_waits_for_the_write)
        thread.daemon = True
        thread.start()
        with self.assertRaises(KeyboardInterrupt):
            client.ping(30)
        thread.join(30)
        server.stdin.write("serve\n")
        server.stdin.flush()
        writer.join(60)
        self.assertEqual(large, [16 << 20])  # the connection goes on
        client.ping(30)  # answered by its own pong

    def test_a_defect_in_place_of_a_pong_answers_that_ping_and_leaves_later_pings_answered(self):
        # the Node server answers a ping whose Pong it could not send with a Defect: the ping waited on and timed
        # out, and each later ping took the previous ping's Pong (one behind for good). This server answers the
        # first ping so, then every ping with its Pong
        self.start_server(
            "from effect_ipc import listen\nlistener = listen(address)\nprint('ready', flush=True)\n"
            "channel = listener.accept()\nchannel.receive()  # the hello\npings = 0\n"
            "for data in channel:\n"
            "    message = json.loads(data.decode('utf-8'))\n"
            "    if message['_tag'] == 'Ping':\n"
            "        pings += 1\n"
            "        channel.send(b'{\"_tag\":\"Defect\",\"defect\":\"the Pong could not be sent\"}' if pings == 1\n"
            "                     else b'{\"_tag\":\"Pong\"}')\n")
        client = RpcClient.connect(self.address())
        self.addCleanup(client.close)
        with self.assertRaises(RpcDefect) as caught:
            client.ping(10)
        self.assertEqual(caught.exception.defect, "the Pong could not be sent")
        client.ping(10)  # answered by its own pong, not left waiting for one more
        client.ping(10)

    def test_ctrl_c_that_comes_as_a_whole_request_goes_out_leaves_the_connection_going_on(self):
        # CPython runs the handler of a Ctrl-C that came during a write once the write's call returns (sendall
        # checks for it after its last send): the KeyboardInterrupt came from a frame written whole, which was
        # taken for a cut one, and the connection was lost for nothing
        import signal
        server = self.start_held_server("RpcServer({'Echo': lambda p: len(p)}).serve_channel(channel)\n")
        self.addCleanup(signal.signal, signal.SIGINT, signal.signal(signal.SIGINT, signal.default_int_handler))
        client = RpcClient.connect(self.address())
        self.addCleanup(client.close)

        def ctrl_c_while_the_request_goes_out():
            while client.channel._writable(0):  # the socket's poll: the request is still going out
                time.sleep(0.001)
            # taken by this thread, so the main thread's write is not cut short (no EINTR): it goes on to the end
            # of the frame once the server reads, and the KeyboardInterrupt is raised there after it
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)
            server.stdin.write("serve\n")
            server.stdin.flush()
        thread = threading.Thread(target=ctrl_c_while_the_request_goes_out)
        thread.daemon = True
        thread.start()
        with self.assertRaises(KeyboardInterrupt):
            client.call("Echo", "x" * (16 << 20), timeout=30)  # far more than the socket holds
        thread.join(30)
        self.assertEqual(client._pending, {}, "the call was interrupted, the client holds nothing for it")
        self.assertEqual(client.call("Echo", "after", timeout=30), 5)  # the connection goes on

    def test_ctrl_c_while_another_thread_writes_to_a_server_that_reads_nothing_gives_up_the_interrupt(self):
        # the Interrupt sent for the cancelled call waited without limit for the write of another thread, blocked on
        # a server that reads nothing: the Ctrl-C hung. Run in a child Python, killed (and the test failed) if so.
        # The Interrupt is left to be sent once the connection is free: the connection goes on
        out = run_python(self, """
            signal.signal(signal.SIGINT, signal.default_int_handler)
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind(%r)
            server.listen(1)
            client = RpcClient.connect("unix://" + %r, linger=0.5)
            connection, _ = server.accept()  # reads nothing
            call = client.start("Hang")  # a small request: it fits in the socket's buffer
            large = []

            def call_large():
                try:
                    client.call("Echo", "x" * (16 << 20), timeout=60)  # far more than the socket holds
                except IpcError as error:
                    large.append(error.reason)
            writer = threading.Thread(target=call_large)
            writer.daemon = True
            writer.start()
            main = threading.main_thread().ident

            def result_waits():
                frame = sys._current_frames().get(main)
                while frame is not None and frame.f_code.co_name != "_wait":
                    frame = frame.f_back
                return frame is not None

            def ctrl_c_once_the_result_waits_and_the_write_blocks():
                while client.channel._writable(0) or not result_waits():
                    time.sleep(0.001)
                signal.pthread_kill(main, signal.SIGINT)
            thread = threading.Thread(target=ctrl_c_once_the_result_waits_and_the_write_blocks)
            thread.daemon = True
            thread.start()
            try:
                call.result(60)
            except KeyboardInterrupt:
                print("KeyboardInterrupt")
            print(client.channel._failure)
            client.close()
            writer.join(10)
            print(large)
            """ % (os.path.join(self.dir, "s.sock"), os.path.join(self.dir, "s.sock")),
            "import signal, socket, threading\nfrom effect_ipc import IpcError, RpcClient").splitlines()
        self.assertEqual(out[:2], ["KeyboardInterrupt", "None"], out)
        self.assertEqual(len(out), 3, out)  # the large call ended with the close

    def test_a_call_cancelled_while_a_busy_server_holds_another_threads_write_leaves_the_connection_going_on(self):
        # the Interrupt of a call cancelled (a timeout, cancel) while another thread's large request waited on a
        # server busy for longer than the linger ended the connection: the large call, and every other, was lost
        server = self.start_held_server(
            "channel.receive()  # the hello\n"
            "for data in channel:\n"
            "    message = json.loads(data.decode('utf-8'))\n"
            "    print(message['_tag'], message.get('tag'), message.get('id', message.get('requestId')),\n"
            "          flush=True)\n"
            "    if message.get('tag') == 'Echo':\n"
            "        channel.send(json.dumps({'_tag': 'Exit', 'requestId': message['id'],\n"
            "                                 'exit': {'_tag': 'Success', 'value': len(message['payload'])}}).encode())\n")
        client = RpcClient.connect(self.address(), linger=0.2)
        self.addCleanup(client.close)
        slow = client.start("Slow")  # a small request: it fits in the socket's buffer
        large = []

        def call_large():
            try:
                large.append(client.call("Echo", "x" * (16 << 20), timeout=60))  # far more than the socket holds
            except IpcError as error:
                large.append(error.reason)
        writer = threading.Thread(target=call_large)
        writer.daemon = True
        writer.start()
        while client.channel._writable(0):  # the socket's poll: the large request is still going out
            time.sleep(0.001)
        slow.cancel()  # its Interrupt cannot leave within the linger: the server reads nothing yet
        with self.assertRaises(RpcInterrupted):
            slow.result(10)
        server.stdin.write("serve\n")
        server.stdin.flush()
        writer.join(60)
        self.assertEqual(large, [16 << 20])  # the connection went on
        seen = [server.stdout.readline().split() for _ in range(3)]
        # the Interrupt went out once the large request had
        self.assertEqual([seen[0], seen[1][:2], seen[2]],
                         [["Request", "Slow", slow._pending.id], ["Request", "Echo"],
                          ["Interrupt", "None", slow._pending.id]], seen)
