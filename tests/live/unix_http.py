"""An HTTP/1.1 keep-alive server on a Unix-domain stream socket, for the live tests.

    python3 unix_http.py NAME        (NAME starting with @: an abstract name)

Answers GET /hello with 200 and a fixed body, POST /echo with 200 and the request body,
anything else with 404; prints "METHOD PATH CODE BODY_LENGTH" per request (the test's
independent record of what was served) and "ready" once it listens.
"""
import http.server
import socketserver
import sys
import threading

LOG = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, code, body):
        # Logged before the answer goes out, as one write: the client sends its next request
        # only after this answer, so lines come in request order and never interleave (print
        # with several arguments writes them one by one, and each connection has its thread).
        with LOG:
            sys.stdout.write(f"{self.command} {self.path} {code} {len(body)}\n")
            sys.stdout.flush()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/hello":
            self.answer(200, b"hello over a unix socket\n")
        else:
            self.answer(404, b"not here\n")

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        self.answer(200 if self.path == "/echo" else 404, body)

    def address_string(self):
        return "unix"

    def log_message(self, *args):
        pass


name = sys.argv[1]
address = "\0" + name[1:] if name.startswith("@") else name
with socketserver.ThreadingUnixStreamServer(address, Handler) as server:
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()
