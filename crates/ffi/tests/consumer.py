"""A Python consumer of l7tap's C ABI through ctypes (no compiled module): replays a capture,
polls the records and prints "<protocol> <method> <resource> <code>" per record, then provokes
three mistakes and prints how the ABI answered them.
    python3 consumer.py path/to/libl7tap_ffi.so capture.pcap"""
import ctypes as C
import sys

lib = C.CDLL(sys.argv[1])


class Bytes(C.Structure):
    _fields_ = [("ptr", C.POINTER(C.c_uint8)), ("len", C.c_size_t)]

    def text(self):
        return C.string_at(self.ptr, self.len).decode() if self.len else ""


class Attribute(C.Structure):
    _fields_ = [("key", Bytes), ("value", Bytes)]


class Record(C.Structure):
    # Field for field as L7tapRecord in include/l7tap.h.
    _fields_ = [
        ("id", C.c_uint64), ("protocol", Bytes), ("ip_protocol", C.c_uint8),
        ("client_ip", Bytes), ("client_port", C.c_uint16), ("server_ip", Bytes),
        ("server_port", C.c_uint16), ("pid", C.c_uint32), ("tid", C.c_uint32), ("comm", Bytes),
        ("start_ns", C.c_uint64), ("end_ns", C.c_uint64), ("rrt_ns", C.c_uint64),
        ("version", Bytes), ("request_type", Bytes), ("request_domain", Bytes),
        ("request_resource", Bytes), ("endpoint", Bytes),
        ("has_request_id", C.c_uint8), ("request_id", C.c_uint64),
        ("has_req_len", C.c_uint8), ("req_len", C.c_uint64),
        ("has_resp_len", C.c_uint8), ("resp_len", C.c_uint64),
        ("response_status", C.c_uint8), ("has_response_code", C.c_uint8),
        ("response_code", C.c_int32), ("response_exception", Bytes), ("response_result", Bytes),
        ("trace_id", Bytes), ("span_id", Bytes), ("x_request_id", Bytes), ("content_type", Bytes),
        ("truncated", C.c_uint8), ("unpaired", C.c_uint8),
        ("attributes", C.POINTER(Attribute)), ("attributes_len", C.c_size_t), ("plugins", Bytes),
    ]


lib.l7tap_abi_version.restype = C.c_uint32
lib.l7tap_error_message.restype = C.c_char_p
lib.l7tap_last_error.restype = C.c_char_p
lib.l7tap_engine_new.argtypes = [C.c_char_p, C.c_void_p, C.c_void_p, C.POINTER(C.c_uint64)]
lib.l7tap_engine_start_pcap.argtypes = [C.c_uint64, C.c_char_p]
lib.l7tap_engine_wait.argtypes = [C.c_uint64]
lib.l7tap_engine_poll.argtypes = [C.c_uint64, C.POINTER(Record), C.c_size_t, C.c_uint32, C.POINTER(C.c_size_t)]
lib.l7tap_records_release.argtypes = [C.c_uint64, C.POINTER(C.c_uint64), C.c_size_t]
lib.l7tap_engine_free.argtypes = [C.c_uint64]
lib.l7tap_record_to_otlp.argtypes = [C.c_uint64, C.c_uint64, C.c_uint32, C.POINTER(Bytes)]
try:
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
except ImportError:
    trace_service_pb2 = None
otlp_lines = []


def ok(status, what):
    if status != 0:
        raise SystemExit("%s: %s: %s" % (what, lib.l7tap_error_message(status).decode(), lib.l7tap_last_error().decode()))


assert lib.l7tap_abi_version() == 1
engine = C.c_uint64(0)
ok(lib.l7tap_engine_new(b'{"workers": 1}', None, None, C.byref(engine)), "engine_new")
ok(lib.l7tap_engine_start_pcap(engine, sys.argv[2].encode()), "start_pcap")
ok(lib.l7tap_engine_wait(engine), "wait")
batch = (Record * 8)()
n = C.c_size_t(0)
while True:
    ok(lib.l7tap_engine_poll(engine, batch, 8, 100, C.byref(n)), "poll")
    if n.value == 0:
        break
    ids = (C.c_uint64 * n.value)()
    for i in range(n.value):
        r = batch[i]
        code = str(r.response_code) if r.has_response_code else "-"
        print(r.protocol.text(), r.request_type.text(), r.request_resource.text(), code)
        if trace_service_pb2 is not None:
            # The record as an OTLP span, decoded with the official protobuf definitions.
            out = Bytes()
            ok(lib.l7tap_record_to_otlp(engine, r.id, 1, C.byref(out)), "to_otlp")
            req = trace_service_pb2.ExportTraceServiceRequest.FromString(C.string_at(out.ptr, out.len))
            span = req.resource_spans[0].scope_spans[0].spans[0]
            a = {kv.key: kv.value for kv in span.attributes}
            otlp_lines.append("otlp %s %s %d" % (a["http.request.method"].string_value,
                              a["url.path"].string_value, a["http.response.status_code"].int_value))
        ids[i] = r.id
    ok(lib.l7tap_records_release(engine, ids, n.value), "release")

for line in otlp_lines:
    print(line)

# Mistakes: a freed handle, a NULL out pointer, an unknown configuration key.
ok(lib.l7tap_engine_free(engine), "free")
bad_handle = lib.l7tap_engine_poll(engine, batch, 8, 0, C.byref(n))
null = lib.l7tap_engine_new(b"{}", None, None, None)
config = lib.l7tap_engine_new(b'{"no_such_key": 1}', None, None, C.byref(engine))
detail = lib.l7tap_last_error().decode()
print("errors: bad_handle=%d null=%d config=%d %s" % (bad_handle, null, config,
      "unknown_key" if "unknown configuration key no_such_key" in detail else detail))
