"""An OTLP/HTTP receiver for tests/otlp.rs: decodes what it gets with the official protobuf
definitions (PyPI opentelemetry-proto) and prints one JSON line per log record and per span:
{"signal": "log"|"span", "attributes": {...}, "trace_id": hex, ...}. Serves until it has
received STOP requests or for at most 60 s.
    python3 receiver.py PORT"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2


def value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def attrs(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        out = []
        if self.path == "/v1/logs":
            req = logs_service_pb2.ExportLogsServiceRequest.FromString(body)
            for rl in req.resource_logs:
                for sl in rl.scope_logs:
                    for r in sl.log_records:
                        out.append({"signal": "log", "resource": attrs(rl.resource.attributes),
                                    "body": value(r.body), "severity": r.severity_text,
                                    "trace_id": r.trace_id.hex(), "attributes": attrs(r.attributes)})
        elif self.path == "/v1/traces":
            req = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            for rs in req.resource_spans:
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        out.append({"signal": "span", "name": s.name, "kind": s.kind,
                                    "trace_id": s.trace_id.hex(), "parent_span_id": s.parent_span_id.hex(),
                                    "duration_ns": s.end_time_unix_nano - s.start_time_unix_nano,
                                    "status": s.status.code, "attributes": attrs(s.attributes)})
        for o in out:
            print(json.dumps(o), flush=True)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
threading.Timer(60, server.shutdown).start()
print("ready", flush=True)
server.serve_forever()
