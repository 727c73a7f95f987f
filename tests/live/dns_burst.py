#!/usr/bin/env python3
"""COUNT DNS queries for A records (ids 1..COUNT, names qN.burst.l7tap.test) sent one after the
other from one unconnected UDP socket (sendto), then COUNT answers read back (recvfrom), for a
server that takes them in one recvmmsg. Prints "id rcode" per answer, in arrival order.

    python3 dns_burst.py PORT COUNT
"""
import socket
import struct
import sys

port, count = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.settimeout(10)
for qid in range(1, count + 1):
    query = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in f"q{qid}.burst.l7tap.test".split("."):
        query += bytes([len(label)]) + label.encode()
    query += b"\x00" + struct.pack(">HH", 1, 1)  # type A, class IN
    s.sendto(query, ("127.0.0.1", port))
for _ in range(count):
    reply, _ = s.recvfrom(4096)
    rid, flags = struct.unpack(">HH", reply[:4])
    print(rid, flags & 0xF)
