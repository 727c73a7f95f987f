"""HTTP server of tests/live_capture.rs that moves bodies with splice(2), as proxies do
(HAProxy's TCP mode): a request body goes from the socket into a pipe, a response body from a
pipe into the socket, so neither is ever in this process's memory. Heads go by readv/writev
(two buffers each).
Serves keep-alive connections on 127.0.0.1:PORT; the response body is BODY_BYTES of 'x' for
GET and the request's own body for POST. Prints one line per request: method, path, the
request body's length, the response body's length."""
import os
import socket
import sys

port, body_bytes = int(sys.argv[1]), int(sys.argv[2])
CHUNK = 16384


def splice_all(src, dst, n):
    while n > 0:
        moved = os.splice(src, dst, n)
        if moved == 0:
            raise EOFError
        n -= moved


def serve(c):
    r, w = os.pipe()
    while True:
        # The head only: peek for its end, then take exactly that many bytes.
        head = c.recv(65536, socket.MSG_PEEK)
        if not head:
            return
        end = head.find(b"\r\n\r\n")
        if end < 0:
            c.recv(len(head))
            continue
        # readv(2) into two buffers: the capture must join a vector read's pieces.
        first, rest = bytearray(min(10, end + 4)), bytearray(end + 4 - min(10, end + 4))
        got = os.readv(c.fileno(), [first, rest])
        head = bytes(first + rest)[:got]
        lines = head.decode().split("\r\n")
        method, path, _ = lines[0].split(" ")
        length = 0
        for line in lines[1:]:
            if line.lower().startswith("content-length:"):
                length = int(line.split(":")[1])
        body = b""
        while len(body) < length:  # socket -> pipe, in pieces a pipe holds
            n = min(CHUNK, length - len(body))
            splice_all(c.fileno(), w, n)
            body += os.read(r, n)
        out = body if method == "POST" else b"x" * body_bytes
        # The head by writev(2), in two pieces.
        os.writev(c.fileno(), [b"HTTP/1.1 200 OK\r\n", b"Content-Length: %d\r\n\r\n" % len(out)])
        for at in range(0, len(out), CHUNK):  # pipe -> socket
            piece = out[at:at + CHUNK]
            os.write(w, piece)
            splice_all(r, c.fileno(), len(piece))
        print(method, path, length, len(out), flush=True)


s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(4)
while True:
    c, _ = s.accept()
    try:
        serve(c)
    except (EOFError, ConnectionError):
        pass
    c.close()
