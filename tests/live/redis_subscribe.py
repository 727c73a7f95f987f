#!/usr/bin/env python3
"""A Redis subscriber speaking RESP itself: SUBSCRIBE to CHANNEL, print "subscribed" once the
server confirmed, then print "message <channel> <payload>" for each of N pushed messages and
exit (10 s timeout).

    redis_subscribe.py PORT CHANNEL N
"""
import socket
import sys

port, channel, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port), timeout=10)
f = s.makefile("rb")


def send(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    s.sendall(out)


def read():
    """One RESP value (the types pub/sub uses: arrays, bulk strings, integers)."""
    line = f.readline().rstrip(b"\r\n")
    t, rest = line[:1], line[1:]
    if t == b"*":
        return [read() for _ in range(int(rest))]
    if t == b"$":
        data = f.read(int(rest) + 2)[:-2]
        return data.decode()
    if t == b":":
        return int(rest)
    raise ValueError(line)


send("SUBSCRIBE", channel)
assert read()[0] == "subscribe"
print("subscribed", flush=True)
for _ in range(n):
    kind, ch, payload = read()
    print(kind, ch, payload, flush=True)
s.close()
