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
use std::net::IpAddr;

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

/// An IP address as a JSON string, formatted into a stack buffer: IPv4 digit by digit (two
/// addresses per record through `Display` and `collect_str`, which escapes each formatted
/// fragment, were ~8 % of `l7tap capture`'s main thread under load), IPv6 through `Display`.
struct Ip(IpAddr);

impl Serialize for Ip {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = Buf { b: [0; 48], n: 0 };
        match self.0 {
            IpAddr::V4(a) => {
                for (i, o) in a.octets().into_iter().enumerate() {
                    if i > 0 {
                        buf.push(b'.');
                    }
                    if o >= 100 {
                        buf.push(b'0' + o / 100);
                    }
                    if o >= 10 {
                        buf.push(b'0' + o / 10 % 10);
                    }
                    buf.push(b'0' + o % 10);
                }
            }
            IpAddr::V6(a) => {
                let _ = std::fmt::Write::write_fmt(&mut buf, format_args!("{a}"));
            }
        }
        s.serialize_str(std::str::from_utf8(buf.bytes()).unwrap_or_default())
    }
}

/// A small text buffer on the stack (an IPv6 address is at most 45 characters; anything
/// longer is cut, never a panic).
struct Buf {
    b: [u8; 48],
    n: usize,
}

impl Buf {
    fn push(&mut self, c: u8) {
        if let Some(slot) = self.b.get_mut(self.n) {
            *slot = c;
            self.n += 1;
        }
    }

    fn bytes(&self) -> &[u8] {
        self.b.get(..self.n).unwrap_or_default()
    }
}

impl std::fmt::Write for Buf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        for c in s.bytes() {
            self.push(c);
        }
        Ok(())
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
        m.serialize_entry("client_ip", &Ip(r.flow.client.ip()))?;
        m.serialize_entry("client_port", &r.flow.client.port())?;
        m.serialize_entry("server_ip", &Ip(r.flow.server.ip()))?;
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

    /// Addresses are written as std's `Display` (RFC 5952 for IPv6) writes them.
    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for a in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.0.1",
            "192.168.100.9",
            "1.20.199.200",
            "::",
            "::1",
            "fd00::1",
            "2001:db8:0:1:1:1:1:1",
            "::ffff:1.2.3.4",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: IpAddr = a.parse().expect("addr");
            let json = serde_json::to_string(&Ip(ip)).expect("serializes");
            assert_eq!(json, format!("\"{ip}\""), "{a}");
        }
    }

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
