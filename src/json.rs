//! The JSON form of a record (CLI `--format json`, JSON-lines sinks).
//!
//! One object per record with the keys of the design's record contract, in that order; keys
//! are added over time, never renamed. Absent values (empty text, unknown numbers, no process)
//! are omitted. Text is rendered as UTF-8, with invalid bytes replaced by U+FFFD.
//!
//! Records are serialized straight into a byte buffer (no intermediate `serde_json::Value`
//! tree, no per-key allocation): `write_line` appends to a buffer the caller reuses.

use crate::L7Record;
use bytes::Bytes;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

/// Bytes as a JSON string (borrowed when valid UTF-8, else lossily converted).
struct Text<'a>(&'a [u8]);

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(self.0))
    }
}

/// Attributes as `[{"key": .., "value": ..}, ...]`.
struct Attrs<'a>(&'a L7Record);

impl Serialize for Attrs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.attributes.iter().map(|a| Pair(&a.key, &a.value)))
    }
}

struct Pair<'a>(&'a Bytes, &'a Bytes);

impl Serialize for Pair<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("key", &Text(self.0))?;
        m.serialize_entry("value", &Text(self.1))?;
        m.end()
    }
}

/// Display values (addresses) as JSON strings without an intermediate `String`.
struct Shown<T>(T);

impl<T: std::fmt::Display> Serialize for Shown<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// Plugin names as a JSON array.
struct Names<'a>(&'a [std::sync::Arc<str>]);

impl Serialize for Names<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|n| &**n))
    }
}

struct Record<'a>(&'a L7Record);

impl Serialize for Record<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        let text = |m: &mut S::SerializeMap, k: &str, b: &Bytes| -> Result<(), S::Error> {
            if b.is_empty() {
                Ok(())
            } else {
                m.serialize_entry(k, &Text(b))
            }
        };
        m.serialize_entry("start_ns", &r.start_ns)?;
        m.serialize_entry("end_ns", &r.end_ns)?;
        m.serialize_entry("rrt_ns", &r.rrt_ns)?;
        m.serialize_entry("l4", r.flow.l4.as_str())?;
        m.serialize_entry("client_ip", &Shown(r.flow.client.ip()))?;
        m.serialize_entry("client_port", &r.flow.client.port())?;
        m.serialize_entry("server_ip", &Shown(r.flow.server.ip()))?;
        m.serialize_entry("server_port", &r.flow.server.port())?;
        if let Some(p) = &r.process {
            m.serialize_entry("pid", &p.pid)?;
            m.serialize_entry("tid", &p.tid)?;
            text(&mut m, "comm", &p.comm)?;
        }
        m.serialize_entry("protocol", r.protocol.name())?;
        m.serialize_entry("custom", &r.protocol.is_custom())?;
        text(&mut m, "version", &r.version)?;
        text(&mut m, "request_type", &r.request_type)?;
        text(&mut m, "request_domain", &r.request_domain)?;
        text(&mut m, "request_resource", &r.request_resource)?;
        text(&mut m, "endpoint", &r.endpoint)?;
        if let Some(id) = r.request_id {
            m.serialize_entry("request_id", &id)?;
        }
        if let Some(n) = r.req_len {
            m.serialize_entry("req_len", &n)?;
        }
        m.serialize_entry("response_status", r.response_status.as_str())?;
        if let Some(c) = r.response_code {
            m.serialize_entry("response_code", &c)?;
        }
        text(&mut m, "response_exception", &r.response_exception)?;
        text(&mut m, "response_result", &r.response_result)?;
        if let Some(n) = r.resp_len {
            m.serialize_entry("resp_len", &n)?;
        }
        text(&mut m, "trace_id", &r.trace_id)?;
        text(&mut m, "span_id", &r.span_id)?;
        text(&mut m, "x_request_id", &r.x_request_id)?;
        text(&mut m, "content_type", &r.content_type)?;
        if !r.attributes.is_empty() {
            m.serialize_entry("attributes", &Attrs(r))?;
        }
        m.serialize_entry("truncated", &r.truncated)?;
        m.serialize_entry("unpaired", &r.unpaired)?;
        if !r.plugins.is_empty() {
            m.serialize_entry("plugins", &Names(&r.plugins))?;
        }
        m.end()
    }
}

/// Appends the record as one line of JSON (no trailing newline) to `out`.
pub fn write_line(r: &L7Record, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail, and every value here serializes.
    let _ = Record(r).serialize(&mut serde_json::Serializer::new(out));
}

/// The record as one line of JSON (no trailing newline).
pub fn to_line(r: &L7Record) -> String {
    let mut out = Vec::with_capacity(512);
    write_line(r, &mut out);
    // serde_json writes UTF-8 only.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The record as a JSON object.
pub fn to_value(r: &L7Record) -> Value {
    serde_json::to_value(Record(r)).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FlowKey, Protocol};
    use l7tap_core::{Attribute, ProcessInfo};

    #[test]
    fn line_has_the_contract_keys_in_order_and_valid_text() {
        let r = L7Record {
            flow: FlowKey::tcp(
                "[fd00::1]:4000".parse().expect("addr"),
                "10.0.0.2:80".parse().expect("addr"),
            ),
            protocol: Protocol::Http1,
            request_type: Bytes::from_static(b"GET"),
            request_resource: Bytes::from_static(b"/a\"b\xff"),
            response_code: Some(200),
            process: Some(ProcessInfo {
                pid: 7,
                tid: 8,
                comm: Bytes::from_static(b"curl"),
            }),
            attributes: vec![Attribute {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"v\n"),
            }],
            plugins: vec![std::sync::Arc::from("p1")],
            ..Default::default()
        };
        let line = to_line(&r);
        assert!(
            line.starts_with(
                r#"{"start_ns":0,"end_ns":0,"rrt_ns":0,"l4":"tcp","client_ip":"fd00::1""#
            ),
            "{line}"
        );
        let v: Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(v["request_resource"], "/a\"b\u{fffd}");
        assert_eq!(v["server_ip"], "10.0.0.2");
        assert_eq!(v["pid"], 7);
        assert_eq!(v["comm"], "curl");
        assert_eq!(v["response_code"], 200);
        assert_eq!(v["attributes"][0]["value"], "v\n");
        assert_eq!(v["plugins"][0], "p1");
        assert!(v.get("trace_id").is_none());
        assert_eq!(to_value(&r), v);
    }
}
