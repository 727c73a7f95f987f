//! The JSON form of a record (CLI `--format json`, JSON-lines sinks).
//!
//! One object per record with the keys of the design's record contract, in that order; keys
//! are added over time, never renamed. Absent values (empty text, unknown numbers, no process)
//! are omitted. Text is rendered as UTF-8, with invalid bytes replaced by U+FFFD, and escaped
//! exactly as serde_json escapes strings (`\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, other
//! control characters as `\u00XX`; nothing else).
//!
//! The line is written straight into a byte buffer the caller reuses. Not through serde: the
//! record has a fixed shape, and serde_json's string escaping (a table lookup per byte, for
//! every key and value) was two thirds of the ~8 000 instructions a record took; here keys are
//! constants and text is scanned eight bytes at a time. serde_json stays the reader
//! ([`to_value`] parses the line) and the reference the tests compare the escaping with.

use crate::core::L4;
use crate::L7Record;
use bytes::Bytes;
use serde_json::Value;
use std::net::IpAddr;

/// Appends `"text"`: `b` as UTF-8 (invalid bytes as U+FFFD), escaped.
fn text(out: &mut Vec<u8>, b: &[u8]) {
    out.push(b'"');
    if plain_ascii(b) {
        // The common case (paths, hosts, methods): one pass, one copy.
        out.extend_from_slice(b);
    } else {
        match std::str::from_utf8(b) {
            Ok(s) => escape(out, s.as_bytes()),
            Err(_) => escape(out, String::from_utf8_lossy(b).as_bytes()),
        }
    }
    out.push(b'"');
}

/// True when every byte of `b` is ASCII and none needs escaping: valid UTF-8 that is written
/// as it is. Eight bytes at a time.
fn plain_ascii(b: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut words = b.chunks_exact(8);
    for c in &mut words {
        let w = u64::from_le_bytes(c.try_into().unwrap_or([0xff; 8]));
        if w & HIGH != 0 || needs_escape(w) {
            return false;
        }
    }
    words
        .remainder()
        .iter()
        .all(|&c| (0x20..0x80).contains(&c) && c != b'"' && c != b'\\')
}

/// True when some byte of `w` (eight bytes, little end first) is below 0x20, a quote or a
/// backslash: the bytes a JSON string must escape.
#[inline]
fn needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Per byte: high bit set when the byte is zero (the classic test), applied to the byte
    // itself shifted below 0x20, and to its XOR with '"' and with '\\'.
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    below_space | zero(w ^ (ONES * u64::from(b'"'))) | zero(w ^ (ONES * u64::from(b'\\'))) != 0
}

/// Appends `s` escaped (no quotes). Runs without special bytes are copied whole.
fn escape(out: &mut Vec<u8>, s: &[u8]) {
    let mut start = 0;
    let mut i = 0;
    while i < s.len() {
        // Eight bytes at a time while none of them needs escaping.
        if let Some(chunk) = s.get(i..i + 8) {
            let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            if !needs_escape(w) {
                i += 8;
                continue;
            }
        }
        let c = s[i];
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&s[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(c >> 4)],
                HEX[usize::from(c & 15)],
            ]);
        } else {
            out.extend_from_slice(esc);
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&s[start..]);
}

/// An IP address as std's `Display` writes it, into a stack buffer: IPv4 digit by digit (two
/// addresses per record through `Display` were ~8 % of `l7tap capture`'s main thread under
/// load), IPv6 through `Display` (RFC 5952).
fn ip(out: &mut Vec<u8>, addr: IpAddr) {
    let mut buf = Buf { b: [0; 48], n: 0 };
    match addr {
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
    out.push(b'"');
    out.extend_from_slice(buf.bytes());
    out.push(b'"');
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

/// A key after the first, as one constant: `,"name":` (written with one copy).
macro_rules! key {
    ($name:literal) => {
        concat!(",\"", $name, "\":")
    };
}

/// The object being written. Keys are constants of this module (plain ASCII, nothing to
/// escape) made by `key!` with their comma, quotes and colon, so each costs one copy; the
/// object always starts with `start_ns`, so every other key has a comma before it.
struct Obj<'a> {
    out: &'a mut Vec<u8>,
}

impl Obj<'_> {
    fn key(&mut self, k: &'static str) {
        self.out.extend_from_slice(k.as_bytes());
    }

    fn num(&mut self, k: &'static str, v: impl itoa::Integer) {
        self.key(k);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    fn boolean(&mut self, k: &'static str, v: bool) {
        self.key(k);
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
    }

    /// A constant string value (an enum's name: ASCII without special bytes).
    fn name(&mut self, k: &'static str, v: &str) {
        self.key(k);
        self.out.push(b'"');
        self.out.extend_from_slice(v.as_bytes());
        self.out.push(b'"');
    }

    /// An array of `items`, each written by `item`.
    fn array<T>(&mut self, k: &'static str, items: &[T], item: impl Fn(&mut Vec<u8>, &T)) {
        self.key(k);
        self.out.push(b'[');
        for (i, x) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            item(self.out, x);
        }
        self.out.push(b']');
    }

    /// Text, omitted when empty.
    fn text(&mut self, k: &'static str, v: &Bytes) {
        if !v.is_empty() {
            self.key(k);
            text(self.out, v);
        }
    }
}

/// Appends the record as one line of JSON (no trailing newline) to `out`.
pub fn write_line(r: &L7Record, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"start_ns\":");
    out.extend_from_slice(itoa::Buffer::new().format(r.start_ns).as_bytes());
    let mut o = Obj { out };
    o.num(key!("end_ns"), r.end_ns);
    o.num(key!("rrt_ns"), r.rrt_ns);
    o.name(key!("l4"), r.flow.l4.as_str());
    if r.flow.l4 == L4::Unix {
        // No addresses or ports: the socket's path names the server.
        o.key(key!("socket_path"));
        text(o.out, r.flow.path.as_bytes());
    } else {
        o.key(key!("client_ip"));
        ip(o.out, r.flow.client.ip());
        o.num(key!("client_port"), r.flow.client.port());
        o.key(key!("server_ip"));
        ip(o.out, r.flow.server.ip());
        o.num(key!("server_port"), r.flow.server.port());
    }
    if let Some(p) = &r.process {
        o.num(key!("pid"), p.pid);
        o.num(key!("tid"), p.tid);
        o.text(key!("comm"), &p.comm);
    }
    // A custom protocol's name is the plugin's: text, escaped like any other.
    o.key(key!("protocol"));
    text(o.out, r.protocol.name().as_bytes());
    o.boolean(key!("custom"), r.protocol.is_custom());
    o.text(key!("version"), &r.version);
    o.text(key!("request_type"), &r.request_type);
    o.text(key!("request_domain"), &r.request_domain);
    o.text(key!("request_resource"), &r.request_resource);
    o.text(key!("endpoint"), &r.endpoint);
    if let Some(id) = r.request_id {
        o.num(key!("request_id"), id);
    }
    if let Some(n) = r.req_len {
        o.num(key!("req_len"), n);
    }
    o.name(key!("response_status"), r.response_status.as_str());
    if let Some(c) = r.response_code {
        o.num(key!("response_code"), c);
    }
    o.text(key!("response_exception"), &r.response_exception);
    o.text(key!("response_result"), &r.response_result);
    if let Some(n) = r.resp_len {
        o.num(key!("resp_len"), n);
    }
    o.text(key!("trace_id"), &r.trace_id);
    o.text(key!("span_id"), &r.span_id);
    o.text(key!("x_request_id"), &r.x_request_id);
    o.text(key!("content_type"), &r.content_type);
    if !r.attributes.is_empty() {
        o.array(key!("attributes"), &r.attributes, |out, a| {
            out.extend_from_slice(b"{\"key\":");
            text(out, &a.key);
            out.extend_from_slice(b",\"value\":");
            text(out, &a.value);
            out.push(b'}');
        });
    }
    o.boolean(key!("truncated"), r.truncated);
    o.boolean(key!("unpaired"), r.unpaired);
    if !r.plugins.is_empty() {
        o.array(key!("plugins"), &r.plugins, |out, n| {
            text(out, n.as_bytes())
        });
    }
    o.out.push(b'}');
}

/// The record as one line of JSON (no trailing newline).
pub fn to_line(r: &L7Record) -> String {
    let mut out = Vec::with_capacity(512);
    write_line(r, &mut out);
    // Only UTF-8 is written (text is converted, everything else is ASCII).
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The record as a JSON object (its line, read back by serde_json).
pub fn to_value(r: &L7Record) -> Value {
    let mut out = Vec::with_capacity(512);
    write_line(r, &mut out);
    serde_json::from_slice(&out).unwrap_or(Value::Null)
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
            let addr: IpAddr = a.parse().expect("addr");
            let mut out = Vec::new();
            ip(&mut out, addr);
            assert_eq!(out, format!("\"{addr}\"").as_bytes(), "{a}");
        }
    }

    /// Text is escaped byte for byte as serde_json escapes the same string (the reference):
    /// every byte value at every position of the eight-byte steps, and invalid UTF-8.
    #[test]
    fn text_is_escaped_exactly_as_serde_json_does() {
        let mut cases: Vec<Vec<u8>> = Vec::new();
        // Every byte value at every position of the eight-byte steps: ASCII, and each
        // non-ASCII byte alone (invalid UTF-8); then a valid two-byte character likewise.
        for c in 0u8..=0xff {
            for pad in 0..17 {
                let mut v = vec![b'a'; pad];
                v.push(c);
                v.extend_from_slice(b"tail-bytes");
                cases.push(v);
            }
        }
        for pad in 0..17 {
            let mut v = vec![b'a'; pad];
            v.extend_from_slice("é".as_bytes());
            v.extend_from_slice(b"tail");
            cases.push(v);
        }
        cases.push("é ü 日本 \u{1F600} \"q\" \\ /".as_bytes().to_vec());
        cases.push(b"bad \xff\xfe utf8 \xc3".to_vec());
        cases.push(Vec::new());
        for case in cases {
            let mut ours = Vec::new();
            text(&mut ours, &case);
            let reference =
                serde_json::to_string(&String::from_utf8_lossy(&case)).expect("serializes");
            // Byte for byte: what is written must itself be the valid UTF-8 serde_json wrote.
            assert_eq!(
                ours,
                reference.as_bytes(),
                "{:?}",
                String::from_utf8_lossy(&case)
            );
        }
    }

    #[test]
    fn every_eight_byte_word_with_a_special_byte_is_caught() {
        // The word test never misses: any byte below 0x20, '"' or '\\' at any position.
        for pos in 0..8 {
            for c in (0u8..0x20).chain([b'"', b'\\']) {
                let mut w = [b'x'; 8];
                w[pos] = c;
                assert!(needs_escape(u64::from_le_bytes(w)), "{c:#x} at {pos}");
            }
        }
        for c in (0x20u8..=0xff).filter(|c| *c != b'"' && *c != b'\\') {
            assert!(!needs_escape(u64::from_le_bytes([c; 8])), "{c:#x}");
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

    #[test]
    fn a_unix_socket_record_names_its_path_instead_of_addresses() {
        let r = L7Record {
            flow: FlowKey {
                l4: L4::Unix,
                socket_id: 9,
                path: "@l7tap \"x\"",
                ..Default::default()
            },
            protocol: Protocol::Redis,
            ..Default::default()
        };
        let line = to_line(&r);
        assert!(
            line.starts_with(
                r#"{"start_ns":0,"end_ns":0,"rrt_ns":0,"l4":"unix","socket_path":"@l7tap \"x\"","protocol""#
            ),
            "{line}"
        );
        let v: Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(v["socket_path"], "@l7tap \"x\"");
        assert!(v.get("client_ip").is_none() && v.get("server_port").is_none());
    }
}
