"""The client of tests/captures/grpc/record.sh: three calls on one channel (one HTTP/2
connection), printing for each: business id sent, gRPC status code, reply msg or details."""
import sys

import grpc
import order_pb2
import order_pb2_grpc

channel = grpc.insecure_channel("127.0.0.1:" + sys.argv[1])
stub = order_pb2_grpc.OrderServiceStub(channel)
for item, bid in [("book", "BIZ-20261126-0001"), ("pen", "BIZ-20261126-0002"), ("missing", "BIZ-20261126-0003")]:
    try:
        reply = stub.Get(order_pb2.OrderRequest(item=item, business_id=bid))
        print(bid, 0, reply.msg)
    except grpc.RpcError as e:
        print(bid, e.code().value[0], e.details())
channel.close()
