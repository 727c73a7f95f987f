#!/usr/bin/env python3
"""GETs on one HTTP/1.1 keep-alive connection with a pause after each (also after the last,
before closing), printing "status body_length" for each.

    paced_get.py PORT PAUSE_SECONDS PATH...
"""
import http.client
import sys
import time

port, pause, paths = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
for path in paths:
    conn.request("GET", path)
    resp = conn.getresponse()
    print(resp.status, len(resp.read()), flush=True)
    time.sleep(pause)
conn.close()
