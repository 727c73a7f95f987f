#!/usr/bin/env python3
"""HTTPS over asyncio (the ssl module through memory BIOs: SSL_read/SSL_write never touch the
socket, asyncio moves the ciphertext itself), for the live tests.

    asyncio_tls.py server PORT CERT KEY
        HTTP/1.1 keep-alive: GET /hello -> 200 with a fixed body, POST /echo -> 200 with the
        request body, anything else -> 404. Prints "ready", then "METHOD PATH CODE LENGTH"
        per request.
    asyncio_tls.py client PORT CONNECTIONS PATH...
        CONNECTIONS connections at once, each making the requests PATH... in turn
        ("POST/echo": a POST of 3,000 bytes). Prints "connection status length" per answer.
"""
import asyncio
import ssl
import sys


async def serve(port, cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method, path, _ = lines[0].split(" ")
                length = 0
                for line in lines[1:]:
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":")[1])
                body = await reader.readexactly(length)
                if method == "GET" and path == "/hello":
                    code, out = 200, b"hello over asyncio TLS\n"
                elif method == "POST" and path == "/echo":
                    code, out = 200, body
                else:
                    code, out = 404, b"not here\n"
                reason = "OK" if code == 200 else "Not Found"
                writer.write(
                    f"HTTP/1.1 {code} {reason}\r\nContent-Length: {len(out)}\r\n\r\n".encode() + out
                )
                await writer.drain()
                print(method, path, code, len(out), flush=True)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, ssl=ctx)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


async def client(port, connections, paths):
    ctx = ssl._create_unverified_context()

    async def one(n):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        for path in paths:
            if path.startswith("POST"):
                body = b"x" * 3000
                req = f"POST {path[4:]} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n"
                writer.write(req.encode() + body)
            else:
                writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            length = int(next(l for l in lines if l.lower().startswith("content-length:")).split(":")[1])
            await reader.readexactly(length)
            print(n, lines[0].split(" ")[1], length, flush=True)
        writer.close()
        await writer.wait_closed()

    await asyncio.gather(*(one(n) for n in range(connections)))


if sys.argv[1] == "server":
    asyncio.run(serve(int(sys.argv[2]), sys.argv[3], sys.argv[4]))
else:
    asyncio.run(client(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]))
