#!/usr/bin/env python3
"""One DNS query for an A record over an unconnected UDP socket (sendto/recvfrom, the calls
whose peer address lives in user memory, not in the socket), to 127.0.0.1 or, given
"6", to ::1. Prints what came back, as "local_port id rcode address ttl" (address and ttl
empty without an answer).

    python3 dns_sendto.py PORT NAME ID [6]
"""
import socket
import struct
import sys

port, name, qid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
v6 = sys.argv[4:] == ["6"]
family, host = (socket.AF_INET6, "::1") if v6 else (socket.AF_INET, "127.0.0.1")
query = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
for label in name.split("."):
    query += bytes([len(label)]) + label.encode()
query += b"\x00" + struct.pack(">HH", 1, 1)  # type A, class IN

s = socket.socket(family, socket.SOCK_DGRAM)
s.bind((host, 0))
s.settimeout(5)
s.sendto(query, (host, port))
reply, _ = s.recvfrom(4096)
rid, flags, _, ancount, _, _ = struct.unpack(">HHHHHH", reply[:12])
address, ttl = "", ""
if ancount:
    # The answer follows the echoed question; its name is a 2-byte pointer.
    at = len(query) + 2
    _type, _class, ttl, rdlen = struct.unpack(">HHIH", reply[at : at + 10])
    address = socket.inet_ntoa(reply[at + 10 : at + 10 + rdlen])
print(s.getsockname()[1], rid, flags & 0xF, address, ttl)
