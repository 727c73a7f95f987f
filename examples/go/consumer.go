// A Go consumer of l7tap's C ABI through cgo: replays a capture, polls records and turns
// each into the shape an OpenTelemetry Collector receiver emits for a log record (body,
// severity, attributes with semantic-convention names), printed as one JSON object per line.
// It is the core of a Collector receiver: a real one would put these into plog.Logs.
//
//	go run examples/go/consumer.go capture.pcap   (after cargo build -p l7tap-ffi)
package main

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -L${SRCDIR}/../../target/debug -Wl,-rpath,${SRCDIR}/../../target/debug -ll7tap_ffi
#include <stdlib.h>
#include "l7tap.h"
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"os"
	"unsafe"
)

// LogRecord is what a Collector receiver builds per L7 record.
type LogRecord struct {
	TimeUnixNano uint64                 `json:"time_unix_nano"`
	Severity     string                 `json:"severity_text"`
	Body         string                 `json:"body"`
	Attributes   map[string]interface{} `json:"attributes"`
}

func bytes(b C.L7tapBytes) string {
	if b.len == 0 {
		return ""
	}
	return C.GoStringN((*C.char)(unsafe.Pointer(b.ptr)), C.int(b.len))
}

// check stops on a failed call (cgo sees the C enum as uint32).
func check(s uint32, what string) {
	if s != C.L7TAP_OK {
		fmt.Fprintf(os.Stderr, "%s: %s: %s\n", what, C.GoString(C.l7tap_error_message(s)), C.GoString(C.l7tap_last_error()))
		os.Exit(1)
	}
}

func convert(r *C.L7tapRecord) LogRecord {
	attrs := map[string]interface{}{
		"client.address": bytes(r.client_ip),
		"client.port":    int(r.client_port),
		"server.address": bytes(r.server_ip),
		"server.port":    int(r.server_port),
		"l7tap.protocol": bytes(r.protocol),
	}
	if bytes(r.protocol) == "http1" || bytes(r.protocol) == "http2" {
		attrs["http.request.method"] = bytes(r.request_type)
		attrs["url.path"] = bytes(r.request_resource)
		if r.has_response_code != 0 {
			attrs["http.response.status_code"] = int(r.response_code)
		}
	}
	if r.trace_id.len > 0 {
		attrs["trace_id"] = bytes(r.trace_id)
	}
	sev := [...]string{"INFO", "WARN", "ERROR", "WARN", "INFO"}[r.response_status]
	code := "-"
	if r.has_response_code != 0 {
		code = fmt.Sprint(int(r.response_code))
	}
	return LogRecord{
		TimeUnixNano: uint64(r.start_ns),
		Severity:     sev,
		Body:         fmt.Sprintf("%s %s %s %s", bytes(r.protocol), bytes(r.request_type), bytes(r.request_resource), code),
		Attributes:   attrs,
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: consumer capture.pcap")
		os.Exit(2)
	}
	var engine C.L7tapEngine
	conf := C.CString(`{"workers": 1}`)
	defer C.free(unsafe.Pointer(conf))
	check(C.l7tap_engine_new(conf, nil, nil, &engine), "engine_new")
	path := C.CString(os.Args[1])
	defer C.free(unsafe.Pointer(path))
	check(C.l7tap_engine_start_pcap(engine, path), "start_pcap")
	check(C.l7tap_engine_wait(engine), "wait")
	const max = 16
	batch := (*[max]C.L7tapRecord)(C.malloc(C.size_t(unsafe.Sizeof(C.L7tapRecord{})) * max))
	defer C.free(unsafe.Pointer(batch))
	enc := json.NewEncoder(os.Stdout)
	for {
		var n C.size_t
		check(C.l7tap_engine_poll(engine, &batch[0], max, 100, &n), "poll")
		if n == 0 {
			break
		}
		ids := make([]C.uint64_t, n)
		for i := 0; i < int(n); i++ {
			if err := enc.Encode(convert(&batch[i])); err != nil {
				os.Exit(1)
			}
			ids[i] = batch[i].id
		}
		check(C.l7tap_records_release(engine, &ids[0], n), "release")
	}
	check(C.l7tap_engine_free(engine), "free")
}
