"""The order service (grpcio, insecure h2c) of tests/captures/grpc/record.sh: answers Get with
a message naming the business id; an item named "missing" gets NOT_FOUND."""
import sys
from concurrent import futures

import grpc
import order_pb2
import order_pb2_grpc


class Orders(order_pb2_grpc.OrderServiceServicer):
    def Get(self, request, context):
        if request.item == "missing":
            context.abort(grpc.StatusCode.NOT_FOUND, "no order for " + request.business_id)
        return order_pb2.OrderReply(status="OK", msg="order of " + request.business_id + " shipped")


server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
order_pb2_grpc.add_OrderServiceServicer_to_server(Orders(), server)
server.add_insecure_port("127.0.0.1:" + sys.argv[1])
server.start()
print("ready", flush=True)
server.wait_for_termination()
