"""The child of main.ts: reads effect-ipc frames on fd 3 (EFFECT_IPC_FD) and
answers each message with its words in reverse order. Standard library
only; the frame format is in @effect-ipc/transport-pipe's README:
version (1), kind (0 data, 1 close, 2 ping, 3 pong), 32-bit big-endian length, payload.
"""
import os
import socket
import struct
import sys

DATA, CLOSE, PING, PONG = 0, 1, 2, 3


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("the parent went away")
        data += chunk
    return data


def send(sock, kind, payload=b""):
    sock.sendall(struct.pack(">BBI", 1, kind, len(payload)) + payload)


def main():
    sock = socket.socket(fileno=int(os.environ["EFFECT_IPC_FD"]))
    handled = 0
    while True:
        version, kind, length = struct.unpack(">BBI", read_exact(sock, 6))
        payload = read_exact(sock, length)
        if version != 1:
            sys.exit("unknown frame version %d" % version)
        if kind == DATA:
            send(sock, DATA, " ".join(reversed(payload.decode().split())).encode())
            handled += 1
        elif kind == PING:
            send(sock, PONG, payload)
        elif kind == CLOSE:  # the parent is done: say goodbye the same way, then exit
            print("child: %d messages, closing" % handled, flush=True)
            send(sock, CLOSE)
            sock.shutdown(socket.SHUT_WR)
            return


if __name__ == "__main__":
    main()
