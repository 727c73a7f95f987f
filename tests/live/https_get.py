#!/usr/bin/python3
"""GETs over one HTTPS keep-alive connection with Python's http.client (the ssl module calls
OpenSSL's SSL_write_ex/SSL_read_ex), certificate not verified (the tests' server is
self-signed). Prints "status body_length" per request.

    https_get.py PORT PATH...

With WAIT_FOR_GO=1 in the environment it waits for a line on stdin first (libssl is loaded
by then: a capture started meanwhile finds it in the process's maps). With LATE_SSL=1 it
waits for a line before it even loads libssl (the ssl module is imported only then), and
for another before its requests.
"""
import os
import sys

port, paths = int(sys.argv[1]), sys.argv[2:]
late = os.environ.get("LATE_SSL") == "1"
if late:
    sys.stdin.readline()
import http.client  # noqa: E402 (imports ssl, which loads libssl)
import ssl  # noqa: E402

if late or os.environ.get("WAIT_FOR_GO") == "1":
    sys.stdin.readline()
conn = http.client.HTTPSConnection(
    "127.0.0.1", port, context=ssl._create_unverified_context(), timeout=10
)
for path in paths:
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    print(resp.status, len(body))
conn.close()
