"""Burst sender of tests/live_capture.rs: waits for a line on stdin (so the test can put this
process on the pid allowlist first), then sends COUNT HTTP requests of exactly 1000 bytes,
one send() each, as fast as it can; pauses; sends three more slowly; closes."""
import socket
import sys
import time

port, count = int(sys.argv[1]), int(sys.argv[2])
sys.stdin.readline()
c = socket.create_connection(("127.0.0.1", port))


def req(path):
    head = "GET " + path + " HTTP/1.1\r\nHost: burst\r\nX-Pad: "
    return (head + "p" * (1000 - len(head) - 4) + "\r\n\r\n").encode()


for i in range(count):
    c.send(req("/burst/%06d" % i))
time.sleep(0.5)
for i in range(3):
    c.send(req("/after/%d" % i))
    time.sleep(0.1)
c.close()
