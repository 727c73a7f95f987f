//! The JSON form of a record (CLI `--format json`, JSON-lines sinks).
//!
//! One object per record with the keys of the design's record contract; keys are added over
//! time, never renamed. Absent values (empty text, unknown numbers, no process) are omitted.
//! Text is rendered as UTF-8, with invalid bytes replaced by U+FFFD.

use crate::L7Record;
use bytes::Bytes;
use serde_json::{Map, Value};

fn text(b: &Bytes) -> Value {
    Value::String(String::from_utf8_lossy(b).into_owned())
}

/// The record as a JSON object.
pub fn to_value(r: &L7Record) -> Value {
    let mut m = Map::new();
    let put_text = |m: &mut Map<String, Value>, k: &str, b: &Bytes| {
        if !b.is_empty() {
            m.insert(k.to_string(), text(b));
        }
    };
    m.insert("start_ns".into(), r.start_ns.into());
    m.insert("end_ns".into(), r.end_ns.into());
    m.insert("rrt_ns".into(), r.rrt_ns.into());
    m.insert("l4".into(), r.flow.l4.as_str().into());
    m.insert("client_ip".into(), r.flow.client.ip().to_string().into());
    m.insert("client_port".into(), r.flow.client.port().into());
    m.insert("server_ip".into(), r.flow.server.ip().to_string().into());
    m.insert("server_port".into(), r.flow.server.port().into());
    if let Some(p) = &r.process {
        m.insert("pid".into(), p.pid.into());
        m.insert("tid".into(), p.tid.into());
        put_text(&mut m, "comm", &p.comm);
    }
    m.insert("protocol".into(), r.protocol.name().into());
    m.insert("custom".into(), r.protocol.is_custom().into());
    put_text(&mut m, "version", &r.version);
    put_text(&mut m, "request_type", &r.request_type);
    put_text(&mut m, "request_domain", &r.request_domain);
    put_text(&mut m, "request_resource", &r.request_resource);
    put_text(&mut m, "endpoint", &r.endpoint);
    if let Some(id) = r.request_id {
        m.insert("request_id".into(), id.into());
    }
    if let Some(n) = r.req_len {
        m.insert("req_len".into(), n.into());
    }
    m.insert("response_status".into(), r.response_status.as_str().into());
    if let Some(c) = r.response_code {
        m.insert("response_code".into(), c.into());
    }
    put_text(&mut m, "response_exception", &r.response_exception);
    put_text(&mut m, "response_result", &r.response_result);
    if let Some(n) = r.resp_len {
        m.insert("resp_len".into(), n.into());
    }
    put_text(&mut m, "trace_id", &r.trace_id);
    put_text(&mut m, "span_id", &r.span_id);
    put_text(&mut m, "x_request_id", &r.x_request_id);
    put_text(&mut m, "content_type", &r.content_type);
    if !r.attributes.is_empty() {
        let attrs = r
            .attributes
            .iter()
            .map(|a| {
                let mut o = Map::new();
                o.insert("key".into(), text(&a.key));
                o.insert("value".into(), text(&a.value));
                Value::Object(o)
            })
            .collect();
        m.insert("attributes".into(), Value::Array(attrs));
    }
    m.insert("truncated".into(), r.truncated.into());
    m.insert("unpaired".into(), r.unpaired.into());
    if !r.plugins.is_empty() {
        m.insert(
            "plugins".into(),
            Value::Array(
                r.plugins
                    .iter()
                    .map(|p| Value::String(p.to_string()))
                    .collect(),
            ),
        );
    }
    Value::Object(m)
}

/// The record as one line of JSON (no trailing newline).
pub fn to_line(r: &L7Record) -> String {
    to_value(r).to_string()
}
