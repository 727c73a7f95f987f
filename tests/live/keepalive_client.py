#!/usr/bin/env python3
"""An HTTP/1.1 keep-alive connection opened before the capture starts: one GET, then
"ready <local port>"; after a line on stdin, GETs of the given paths on the same connection,
printing "status body_length" for each.

    keepalive_client.py PORT PATH...
"""
import http.client
import sys

port, paths = int(sys.argv[1]), sys.argv[2:]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
conn.request("GET", "/index.html")
conn.getresponse().read()
print("ready", conn.sock.getsockname()[1], flush=True)
sys.stdin.readline()
for path in paths:
    conn.request("GET", path)
    resp = conn.getresponse()
    print(resp.status, len(resp.read()), flush=True)
conn.close()
