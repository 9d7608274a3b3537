"""What a server or client does at the edge of its resources, and with peers that push them: out of
descriptors, threads or memory, answers over the frame limit, junk sent without reading, ids an
answer cannot carry. Scripts that lower a process's limits run in a child process of their own."""
import logging
import os
import threading
import time

from helpers import RawRpcCase, TempDirCase, run_python

from effect_ipc import IpcError, RpcClient, RpcDefect, RpcServer, Stream, framing, listen, rpc

# what the child scripts share: a frame, the process's virtual size
PREAMBLE = """
import ctypes, json, resource, socket, struct, threading, logging
# glibc loads libgcc_s at a thread's first exit: with every descriptor taken, that load aborts the process
# ("libgcc_s.so.1 must be installed for pthread_exit to work"); loaded now, while descriptors are free
try:
    ctypes.CDLL("libgcc_s.so.1")
except OSError:
    pass
logging.basicConfig(level=logging.CRITICAL)
from effect_ipc import IpcError, RpcClient, RpcServer, listen

def frame(kind, payload):
    return struct.pack(">BBI", 1, kind, len(payload)) + payload

def vm_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize"):
            return int(line.split()[1])
"""


def run_child(test, script, seconds=60):
    """Runs ``script`` in a child Python (see ``helpers.run_python``, PREAMBLE); returns its printed lines."""
    return run_python(test, script, PREAMBLE, seconds).splitlines()


def quiet(test):
    for name in ("effect_ipc", "effect_ipc.rpc"):
        logger = logging.getLogger(name)
        logger.disabled = True
        test.addCleanup(setattr, logger, "disabled", False)


class OutOfResources(TempDirCase):
    def test_a_server_out_of_descriptors_in_a_flood_serves_again_once_it_is_over(self):
        # a failed accept (EMFILE) ended serve: the socket file stayed, and answered no one
        lines = run_child(self, """
path = %r
server = RpcServer({"Add": lambda p: p["a"] + p["b"]})
listener = listen("unix://" + path)
ended = []
def run():
    try:
        server.serve(listener)
        ended.append("returned")
    except BaseException as error:
        ended.append(repr(error))
threading.Thread(target=run, daemon=True).start()
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 40, hard))
__import__("subprocess").run([sys.executable, "-c",
    "import resource,socket,sys,time\\nresource.setrlimit(resource.RLIMIT_NOFILE,(4096,4096))\\nss=[]\\nfor i in range(60):\\n s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); ss.append(s)\\ntime.sleep(2)\\n",
    path], check=True)
time.sleep(1)
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
print("ended", ended)
client = RpcClient.connect("unix://" + path, timeout=5)
print("answer", client.call("Add", {"a": 1, "b": 2}, timeout=10))
client.close()
""" % os.path.join(self.dir, "s.sock"))
        self.assertIn("ended []", lines)
        self.assertIn("answer 3", lines)

    def test_workers_that_could_not_start_are_not_counted_and_the_server_serves_again(self):
        # with max_workers such failures the pool counted itself full for good and ran no handler again
        lines = run_child(self, """
path = %r
server = RpcServer({"Add": lambda p: p["a"] + p["b"]}, max_workers=4)
listener = listen("unix://" + path)
threading.Thread(target=server.serve, args=(listener,), daemon=True).start()
def raw():
    s = socket.socket(socket.AF_UNIX); s.connect(path)
    try:
        s.sendall(frame(0, b"effect-rpc:json"))
    except (OSError, MemoryError):
        pass  # a client the server had no thread for is dropped
    return s
def request(s, rid):
    s.sendall(frame(0, json.dumps({"_tag": "Request", "id": str(rid), "tag": "Add",
                                   "payload": {"a": 1, "b": 2}, "headers": []}).encode()))
first = raw()
time.sleep(0.5)
# room for a few dozen threads' stacks: the flood's connections take it, then no thread can start
resource.setrlimit(resource.RLIMIT_AS, ((vm_kb() + 400 * 1024) * 1024, resource.RLIM_INFINITY))
flood = []
for _ in range(200):
    try:
        flood.append(raw())
    except (OSError, MemoryError):
        break  # the limit reached on this side first: enough of a flood
time.sleep(2)
for i in range(6):
    try:
        request(flood[0], 100 + i)
    except OSError:
        pass
time.sleep(1)
for s in flood:
    s.close()
time.sleep(3)
resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
client = RpcClient.connect("unix://" + path, timeout=5)
print("answer", client.call("Add", {"a": 1, "b": 2}, timeout=10))
client.close()
""" % os.path.join(self.dir, "s.sock"))
        self.assertIn("answer 3", lines)

    def test_a_reader_out_of_memory_fails_its_channel_instead_of_leaving_receive_waiting(self):
        # a MemoryError on a large frame killed the reader thread: the channel was closed with nothing in its
        # inbox, and receive (or an RPC connection on it) waited for ever
        lines = run_child(self, """
path = %r
listener = listen("unix://" + path)
size = 200 * 1024 * 1024
def client():
    s = socket.socket(socket.AF_UNIX); s.connect(path)
    s.sendall(frame(0, b"hello"))
    s.sendall(struct.pack(">BBI", 1, 0, size))
    chunk = b"\\0" * (1 << 20)
    try:
        for _ in range(size >> 20):
            s.sendall(chunk)
    except OSError:
        pass
    time.sleep(30)
threading.Thread(target=client, daemon=True).start()
channel = listener.accept()
print("first", channel.receive(timeout=5))
# less room than the frame takes while it is read (its buffer, then its copy)
resource.setrlimit(resource.RLIMIT_AS, ((vm_kb() + 250 * 1024) * 1024, resource.RLIM_INFINITY))
started = time.time()
try:
    channel.receive(timeout=30)
    print("received")
except IpcError as error:
    print("failed", error.reason, "MemoryError" in error.detail, time.time() - started < 25)
""" % os.path.join(self.dir, "s.sock"))
        self.assertIn("first b'hello'", lines)
        self.assertIn("failed ConnectionLost True True", lines)


class Peers(RawRpcCase):
    def test_junk_sent_without_reading_is_answered_within_max_queued(self):
        # the Defects for messages that are not JSON objects were queued without bound (299 722 of 256)
        quiet(self)
        server = RpcServer({"Add": lambda p: p["a"] + p["b"]}, max_queued=64)
        listener = listen(self.address())
        self.addCleanup(listener.close)
        thread = threading.Thread(target=server.serve, args=(listener,))
        thread.daemon = True
        thread.start()
        sock = self.raw()
        sock.sendall(framing.encode(framing.DATA, rpc.HELLO_JSON))
        junk = framing.encode(framing.DATA, b"x") * 1000
        sending = threading.Thread(target=lambda: [sock.sendall(junk) for _ in range(300)])
        sending.daemon = True
        sending.start()
        sending.join(3)
        self.assertTrue(sending.is_alive(), "the server stopped reading: the sender waits on the socket")
        self.assertLessEqual(max(most for _, most in server.backlogs()), 64)
        sock.close()

    def test_an_answer_over_the_frame_limit_is_a_defect_that_says_so(self):
        # the channel refused it (FrameTooLarge), the writer passed over that, and the call waited for ever
        quiet(self)
        self.serve({"Big": lambda p: "x" * 100000, "Chunks": lambda p: Stream(iter(["y" * 100000])),
                    "Small": lambda p: 1}, max_frame_size=65536)
        client = RpcClient.connect(self.address())
        self.addCleanup(client.close)
        for call in (lambda: client.call("Big", timeout=10), lambda: list(client.stream("Chunks", timeout=10))):
            with self.assertRaises(RpcDefect) as caught:
                call()
            self.assertIn("over this connection's frame limit of 65536 bytes", str(caught.exception))
        self.assertEqual(client.call("Small", timeout=10), 1)

    def test_an_id_its_answer_cannot_carry_gets_a_defect(self):
        # 1e400 (read as inf) and a lone surrogate passed the id check; their answer could not be encoded, and
        # neither could the Die put in its place: no answer at all
        quiet(self)
        self.serve({"Add": lambda p: p["a"] + p["b"]})
        sock = self.raw()
        requests = [b'{"_tag":"Request","id":1e400,"tag":"Add","payload":{"a":1,"b":2},"headers":[]}',
                    b'{"_tag":"Request","id":"\\ud800","tag":"Add","payload":{"a":1,"b":2},"headers":[]}',
                    b'{"_tag":"Request","id":"7","tag":"Add","payload":{"a":1,"b":2},"headers":[]}']
        sock.sendall(b"".join(framing.encode(framing.DATA, m) for m in [rpc.HELLO_JSON] + requests))
        messages = self.answers(sock, 3)
        self.assertEqual([m["_tag"] for m in messages], ["Defect", "Defect", "Exit"])
        self.assertTrue(all(m["defect"].startswith("Invalid request id") for m in messages[:2]), messages)
        sock.sendall(framing.encode(framing.CLOSE))

    def test_a_call_whose_id_a_later_request_took_is_still_interrupted_when_the_connection_ends(self):
        # the later request replaced it in the server's table: only that one was interrupted, the earlier
        # stream's generator never closed
        finalized = []

        def numbers(p):
            try:
                for i in range(1000000):
                    yield i
            finally:
                finalized.append(p)
        self.serve({"Numbers": numbers})
        sock = self.raw()
        request = '{"_tag":"Request","id":"1","tag":"Numbers","payload":"%s","headers":[]}'
        sock.sendall(framing.encode(framing.DATA, rpc.HELLO_JSON) +
                     framing.encode(framing.DATA, (request % "first").encode()))
        self.answers(sock, 1)  # its first chunk: the generator runs
        sock.sendall(framing.encode(framing.DATA, (request % "second").encode()))
        self.answers(sock, 1)
        sock.close()
        deadline = time.time() + 10
        while len(finalized) < 2 and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(sorted(finalized), ["first", "second"])

    def test_a_tag_nested_600_deep_is_an_unknown_procedure_and_the_connection_goes_on(self):
        # writing it as JavaScript would recursed (2 frames a level): RecursionError, the call unanswered and a
        # traceback logged for every such message
        quiet(self)
        self.serve({"Add": lambda p: p["a"] + p["b"]})
        sock = self.raw()
        deep = b"[" * 600 + b"]" * 600
        requests = [b'{"_tag":"Request","id":"1","tag":' + deep + b',"payload":null,"headers":[]}',
                    b'{"_tag":' + deep + b'}',
                    b'{"_tag":"Request","id":"2","tag":"Add","payload":{"a":1,"b":2},"headers":[]}']
        sock.sendall(b"".join(framing.encode(framing.DATA, m) for m in [rpc.HELLO_JSON] + requests))
        messages = self.answers(sock, 3)
        self.assertEqual(messages[0]["requestId"], "1")
        self.assertEqual(messages[0]["exit"]["cause"][0]["_tag"], "Die")
        self.assertTrue(messages[0]["exit"]["cause"][0]["defect"].startswith("Unknown request tag: [[["))
        self.assertEqual(messages[1]["_tag"], "Defect")
        self.assertTrue(messages[1]["defect"].startswith("Unknown request tag: [[["), messages[1])
        self.assertEqual(messages[2], {"_tag": "Exit", "requestId": "2", "exit": {"_tag": "Success", "value": 3}})
        sock.sendall(framing.encode(framing.CLOSE))

    def test_an_eof_gets_no_answer_and_what_follows_is_served(self):
        # effect's client says "no more requests" with an Eof: it was answered with an unknown-tag Defect
        self.serve({"Add": lambda p: p["a"] + p["b"], "Slow": lambda p: time.sleep(0.3) or p})
        sock = self.raw()
        request = b'{"_tag":"Request","id":"%s","tag":"%s","payload":%s,"headers":[]}'
        sock.sendall(b"".join(framing.encode(framing.DATA, m) for m in [
            rpc.HELLO_JSON, request % (b"1", b"Slow", b"7"), b'{"_tag":"Eof"}', request % (b"2", b"Add", b'{"a":1,"b":2}')]))
        messages = self.answers(sock, 2)
        # in either order: the Slow call (300 ms) usually ends last, but a loaded machine may start Add later still
        self.assertEqual(sorted(messages, key=lambda m: str(m.get("requestId"))),
                         [{"_tag": "Exit", "requestId": "1", "exit": {"_tag": "Success", "value": 7}},
                          {"_tag": "Exit", "requestId": "2", "exit": {"_tag": "Success", "value": 3}}])
        sock.sendall(framing.encode(framing.CLOSE))

    def test_a_first_message_with_a_huge_integer_is_json_without_a_hello(self):
        # over 4300 digits int() refuses (3.11, and 3.7 to 3.10 security releases): the message was taken for
        # a binary client's and the client cut off; now it is read as JavaScript reads it
        quiet(self)
        self.serve({"Add": lambda p: p["a"] + p["b"]})
        sock = self.raw()
        huge = b'{"_tag":"Request","id":"1","tag":"Add","payload":{"a":' + b"9" * 5000 + b',"b":2},"headers":[]}'
        good = b'{"_tag":"Request","id":"2","tag":"Add","payload":{"a":1,"b":2},"headers":[]}'
        sock.sendall(framing.encode(framing.DATA, huge) + framing.encode(framing.DATA, good))
        messages = sorted(self.answers(sock, 2), key=lambda m: m["requestId"])
        self.assertEqual(messages[0]["exit"]["_tag"], "Failure")  # inf + 2 cannot be sent back as JSON
        self.assertEqual(messages[1], {"_tag": "Exit", "requestId": "2", "exit": {"_tag": "Success", "value": 3}})
        sock.sendall(framing.encode(framing.CLOSE))

    def test_a_call_that_cannot_be_sent_leaves_nothing_waiting_in_the_client(self):
        self.serve({"Add": lambda p: p["a"] + p["b"]})
        client = RpcClient.connect(self.address())
        self.addCleanup(client.close)
        for _ in range(100):
            with self.assertRaises(IpcError) as caught:
                client.call("Add", {"a": {1, 2}, "b": 2}, timeout=5)  # a set: not JSON
            self.assertEqual(caught.exception.reason, "Encode")
        self.assertEqual(client._pending, {})
        self.assertEqual(client.call("Add", {"a": 1, "b": 2}, timeout=5), 3)

    def test_a_defect_nested_too_deep_to_show_still_makes_its_error(self):
        deep = [0]
        for _ in range(100000):
            deep = [deep]
        defect = RpcDefect(deep)
        self.assertIn("nested too deep to show", str(defect))
        failure = rpc.RpcFailure({"_tag": deep})
        self.assertIn("nested too deep to show", str(failure))
