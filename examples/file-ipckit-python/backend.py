"""An ipckit FileChannel backend in Python, standard library only, for main.ts.

The files are those of ipckit's FileChannel (crates/ipckit/src/file_channel.rs)
in DIR: frontend_to_backend.json and backend_to_frontend.json, each a JSON
array of messages {id, timestamp, type, reply_to?, method?, payload, error?};
a writer creates <stream>.lock exclusively (holding its pid), appends to the
array, keeps the last 100 messages, writes <stream>.tmp and renames it over
the file, then removes the lock.

  python3 backend.py DIR

Announces itself with an event "ready", answers "add" and "greet", any other
method with an error, and exits on the event "shutdown" (or when its parent
process is gone).
"""
import json
import os
import sys
import time
import uuid

KEEP = 100


def message(kind, payload, method=None, reply_to=None, error=None):
    out = {"id": str(uuid.uuid4()), "timestamp": int(time.time() * 1000), "type": kind}
    if reply_to is not None:
        out["reply_to"] = reply_to
    if method is not None:
        out["method"] = method
    out["payload"] = payload
    if error is not None:
        out["error"] = error
    return out


def create(path, text, exclusive=True):
    """Writes a new file (mode 0600); None when `exclusive` and the file exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC), 0o600)
    except FileExistsError:
        return None
    os.write(fd, text.encode())
    os.close(fd)
    return path


class Backend:
    def __init__(self, directory):
        self.path = lambda name: os.path.join(directory, name)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        info = {"created": int(time.time() * 1000), "protocol": "file-ipc", "version": "1.0"}
        create(self.path(".channel_info"), json.dumps(info, indent=2, sort_keys=True))
        create(self.path("backend_to_frontend.json"), "[]")
        create(self.path("frontend_to_backend.json"), "[]")
        self.seen = set()

    def read(self, name):
        with open(self.path(name)) as f:
            text = f.read()
        return json.loads(text) if text.strip() else []

    def send(self, msg):
        lock = self.path("backend_to_frontend.lock")
        for _ in range(500):
            if create(lock, "%d\n" % os.getpid()):
                break
            time.sleep(0.010)
        else:
            raise TimeoutError("%s is held by another writer" % lock)
        try:
            messages = (self.read("backend_to_frontend.json") + [msg])[-KEEP:]
            text = json.dumps(messages, indent=2, ensure_ascii=False)
            create(self.path("backend_to_frontend.tmp"), text, exclusive=False)
            os.replace(self.path("backend_to_frontend.tmp"), self.path("backend_to_frontend.json"))
        finally:
            os.remove(lock)

    def receive(self):
        """The messages from the frontend not seen yet, in order (writers rename: a read is never torn)."""
        fresh = [m for m in self.read("frontend_to_backend.json") if m["id"] not in self.seen]
        self.seen.update(m["id"] for m in fresh)
        return fresh


def answer(request):
    if request.get("method") == "add":
        return {"sum": request["payload"]["a"] + request["payload"]["b"]}, None
    if request.get("method") == "greet":
        return "hello, %s, from python" % request["payload"], None
    return None, "unknown method: %s" % request.get("method")


def main():
    backend = Backend(sys.argv[1])
    parent = os.getppid()
    backend.send(message("event", {"methods": ["add", "greet"]}, method="ready"))
    while os.getppid() == parent:
        for msg in backend.receive():
            if msg["type"] == "event" and msg.get("method") == "shutdown":
                print("backend: shutting down", flush=True)
                return
            if msg["type"] == "request":
                payload, error = answer(msg)
                backend.send(message("response", payload, reply_to=msg["id"], error=error))
        time.sleep(0.020)


if __name__ == "__main__":
    main()
