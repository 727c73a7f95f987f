#!/usr/bin/python3
"""The order service of tests/captures/grpc (order.proto) for the live tests, with Debian's
python3-grpcio and no generated code: the two messages are encoded by hand (each is two
string fields: 1 and 1235).

    grpc_order.py server PORT   answers Get; an item named "missing" gets NOT_FOUND
    grpc_order.py client PORT   three calls on one channel; prints per call:
                                "business_id status_code reply_msg_or_details"
"""
import sys
from concurrent import futures

import grpc

METHOD = "/order.OrderService/Get"


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def encode(fields):
    """{field number: text} -> protobuf bytes (wire type 2)."""
    out = b""
    for num, text in fields.items():
        data = text.encode()
        out += varint(num << 3 | 2) + varint(len(data)) + data
    return out


def read_varint(buf, i):
    """The varint at buf[i:] and the index after it."""
    n = shift = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def decode(buf):
    """protobuf bytes of length-delimited fields -> {field number: text}."""
    fields, i = {}, 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        n, i = read_varint(buf, i)
        fields[key >> 3] = buf[i : i + n].decode()
        i += n
    return fields


def get(request, context):
    item, bid = request.get(1, ""), request.get(1235, "")
    if item == "missing":
        context.abort(grpc.StatusCode.NOT_FOUND, "no order for " + bid)
    return {1: "OK", 1235: "order of " + bid + " shipped"}


def serve(port):
    handler = grpc.method_handlers_generic_handler(
        "order.OrderService",
        {"Get": grpc.unary_unary_rpc_method_handler(get, decode, encode)},
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    server.add_insecure_port("127.0.0.1:" + port)
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


def call(port):
    channel = grpc.insecure_channel("127.0.0.1:" + port)
    stub = channel.unary_unary(METHOD, request_serializer=encode, response_deserializer=decode)
    for item, bid in [("book", "BIZ-20261127-0001"), ("pen", "BIZ-20261127-0002"), ("missing", "BIZ-20261127-0003")]:
        try:
            reply = stub({1: item, 1235: bid}, timeout=10)
            print(bid, 0, reply.get(1235, ""))
        except grpc.RpcError as e:
            print(bid, e.code().value[0], e.details())
    channel.close()


if __name__ == "__main__":
    (serve if sys.argv[1] == "server" else call)(sys.argv[2])
