#!/usr/bin/env python3
"""KVP test server and client (protocol: plugins/kv_protocol/PROTOCOL.md). Standard library only.

    kvp.py server PORT      serve on 127.0.0.1:PORT until killed (or until one client is done)
    kvp.py client PORT      run the fixed request script, print one line per exchange
"""
import socket
import struct
import sys

MAGIC = b"KV\x01"


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def read_frame(s):
    head = recv_exact(s, 8)
    if head[:3] != MAGIC:
        raise ValueError("bad magic")
    kind, rid = head[3], struct.unpack(">I", head[4:8])[0]
    if kind == 0x01:
        (klen,) = struct.unpack(">H", recv_exact(s, 2))
        return kind, rid, recv_exact(s, klen), b""
    if kind == 0x02:
        (klen,) = struct.unpack(">H", recv_exact(s, 2))
        key = recv_exact(s, klen)
        (vlen,) = struct.unpack(">I", recv_exact(s, 4))
        return kind, rid, key, recv_exact(s, vlen)
    if kind == 0x81:
        status = recv_exact(s, 1)[0]
        (vlen,) = struct.unpack(">I", recv_exact(s, 4))
        return kind, rid, status, recv_exact(s, vlen)
    raise ValueError("bad kind")


def serve(port):
    store = {}
    with socket.socket() as ls:
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", port))
        ls.listen(1)
        conn, _ = ls.accept()
        with conn:
            while True:
                try:
                    kind, rid, key, value = read_frame(conn)
                except EOFError:
                    return
                if kind == 0x02:
                    if len(value) > 1000:
                        status, out = 2, b"value too large"
                    else:
                        store[key] = value
                        status, out = 0, b""
                else:
                    out = store.get(key, b"")
                    status = 0 if key in store else 1
                conn.sendall(MAGIC + bytes([0x81]) + struct.pack(">I", rid) + bytes([status]) + struct.pack(">I", len(out)) + out)


SCRIPT = [
    (0x02, b"user:42", b"alice"),
    (0x01, b"user:42", b""),
    (0x01, b"user:7", b""),
    (0x02, b"blob", b"x" * 2000),
    (0x02, b"session:9f", b"token-abc"),
    (0x01, b"session:9f", b""),
]


def client(port):
    with socket.create_connection(("127.0.0.1", port)) as s:
        for i, (kind, key, value) in enumerate(SCRIPT):
            rid = 1000 + i
            frame = MAGIC + bytes([kind]) + struct.pack(">I", rid) + struct.pack(">H", len(key)) + key
            if kind == 0x02:
                frame += struct.pack(">I", len(value)) + value
            s.sendall(frame)
            _, got_id, status, out = read_frame(s)
            assert got_id == rid
            name = "GET" if kind == 0x01 else "SET"
            print(f"{rid} {name} {key.decode()} -> {status} {out.decode()}")


if __name__ == "__main__":
    {"server": serve, "client": client}[sys.argv[1]](int(sys.argv[2]))
