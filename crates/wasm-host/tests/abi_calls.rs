//! ABI behaviour seen from inside a guest: custom-message hooks, and how a plugin tells a cut
//! payload (`payload.len() == buf_size`).
#![allow(clippy::panic, clippy::unwrap_used)] // tests fail loudly

use bytes::Bytes;
use l7tap_core::{Direction, FlowKey, L7Record, Protocol, ResponseStatus};
use l7tap_wasm_host::dispatch::Origin;
use l7tap_wasm_host::{stderr_log, Hook, PluginHost, PluginLimits};

/// A legacy response record (2023 layout) with one attribute, as WAT data.
fn blob_with_attr(k: &str, v: &str) -> (String, usize) {
    let mut rec = Vec::new();
    rec.extend_from_slice(&[0; 8]);
    rec.push(0);
    rec.push(0); // status ok
    rec.push(0); // no code
    rec.extend_from_slice(&[0, 0, 0, 0]); // result, exception: empty
    rec.push(0);
    rec.push(0);
    rec.push(1);
    for s in [k, v] {
        rec.extend_from_slice(&(s.len() as u16).to_be_bytes());
        rec.extend_from_slice(s.as_bytes());
    }
    let mut blob = (rec.len() as u16).to_be_bytes().to_vec();
    blob.extend(rec);
    (
        blob.iter().map(|b| format!("\\{b:02x}")).collect(),
        blob.len(),
    )
}

#[test]
fn custom_message_hook_gets_its_messages_only() {
    let (data, n) = blob_with_attr("seen", "zmtp");
    let wat = format!(
        r#"(module
  (import "deepflow" "vm_read_custom_message_info" (func $info (param i32 i32) (result i32)))
  (import "deepflow" "host_read_l7_protocol_info" (func $result (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\20\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00")
  (data (i32.const 48) "\00\00\00\00\00\00\00\6a")
  (data (i32.const 2048) "{data}")
  (func (export "_start"))
  (func (export "get_hook_bitmap") (result i32) i32.const 16)
  (func (export "get_custom_message_hook") (result i32) i32.const 48)
  (func (export "check_payload") (result i32) i32.const 0)
  (func (export "parse_payload") (result i32) i32.const 0)
  (func (export "on_http_req") (result i32) i32.const 0)
  (func (export "on_http_resp") (result i32) i32.const 0)
  (func (export "on_custom_message") (result i32)
    ;; hook point 0, type code 106, body "abc": 10 + 3 bytes, type code low byte at 5.
    (if (i32.and (i32.eq (call $info (i32.const 1024) (i32.const 1024)) (i32.const 13))
                 (i32.eq (i32.load8_u (i32.const 1029)) (i32.const 106)))
      (then (drop (call $result (i32.const 2048) (i32.const {n}))) (return (i32.const 1))))
    i32.const 0))"#
    );
    let host = PluginHost::new(PluginLimits::default(), stderr_log());
    let p = host
        .load("zmtp_tap", &wat::parse_str(&wat).unwrap())
        .unwrap();
    assert_eq!(p.hook_names(), vec!["custom_message"]);
    let hook = p.custom_hook.unwrap();
    assert!(!hook.hook_all && hook.hook_point == 0 && hook.type_code == 106);
    let flow = FlowKey::tcp("10.0.0.1:1".parse().unwrap(), "10.0.0.2:2".parse().unwrap());
    // The result is a response-side legacy record, so the message travels server -> client.
    let o = Origin {
        flow: &flow,
        direction: Direction::ServerToClient,
        ts_ns: 0,
        comm: b"",
        from_ebpf: false,
    };
    let (name, rec) = host
        .on_custom_message(&o, 0, 106, &Bytes::from_static(b"raw"), b"abc")
        .expect("handled");
    assert_eq!(&*name, "zmtp_tap");
    assert_eq!(rec.attributes, vec![(b"seen".to_vec(), b"zmtp".to_vec())]);
    // NATS (104) is not what it hooked: never called.
    assert!(host
        .on_custom_message(&o, 0, 104, &Bytes::new(), b"abc")
        .is_none());
    assert_eq!(p.metrics.calls(Hook::CustomMessage), 1);
}

#[test]
fn a_cut_payload_fills_buf_size_exactly() {
    let (yes, yes_n) = blob_with_attr("cut", "yes");
    let (no, no_n) = blob_with_attr("cut", "no");
    let wat = format!(
        r#"(module
  (import "deepflow" "vm_read_ctx_base" (func $base (param i32 i32) (result i32)))
  (import "deepflow" "vm_read_payload" (func $payload (param i32 i32) (result i32)))
  (import "deepflow" "host_read_l7_protocol_info" (func $result (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $n (mut i32) (i32.const 0))
  (data (i32.const 16) "\40\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00")
  (data (i32.const 256) "{yes}")
  (data (i32.const 512) "{no}")
  (func (export "_start"))
  (func (export "get_hook_bitmap") (result i32) i32.const 16)
  (func (export "check_payload") (result i32) i32.const 0)
  (func (export "parse_payload") (result i32) i32.const 0)
  (func (export "on_http_req") (result i32) i32.const 0)
  (func (export "on_http_resp") (result i32) (local $len i32) (local $buf i32)
    (local.set $len (call $base (i32.const 1024) (i32.const 1024)))
    ;; buf_size: the last two bytes of the base context, big-endian
    (local.set $buf (i32.or (i32.shl (i32.load8_u (i32.add (i32.const 1022) (local.get $len))) (i32.const 8))
                            (i32.load8_u (i32.add (i32.const 1023) (local.get $len)))))
    (if (i32.eq (call $payload (i32.const 4096) (i32.const 65535)) (local.get $buf))
      (then (drop (call $result (i32.const 256) (i32.const {yes_n}))))
      (else (drop (call $result (i32.const 512) (i32.const {no_n})))))
    i32.const 1))"#
    );
    let limits = PluginLimits {
        payload_bytes: 32,
        ..Default::default()
    };
    let host = PluginHost::new(limits, stderr_log());
    host.load("cutcheck", &wat::parse_str(&wat).unwrap())
        .unwrap();
    let rec = |resp: &'static [u8], truncated: bool| L7Record {
        flow: FlowKey::tcp("10.0.0.1:1".parse().unwrap(), "10.0.0.2:2".parse().unwrap()),
        protocol: Protocol::Http1,
        response_code: Some(200),
        response_status: ResponseStatus::Ok,
        response_payload: Bytes::from_static(resp),
        truncated,
        ..Default::default()
    };
    let mut short = rec(b"HTTP/1.1 204 No Content\r\n\r\n", false);
    host.on_http_record(&mut short);
    assert_eq!(
        short.attribute("cut").map(|v| v.to_vec()),
        Some(b"no".to_vec())
    );
    let mut long = rec(
        b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n01234567890123456789",
        false,
    );
    host.on_http_record(&mut long);
    assert_eq!(
        long.attribute("cut").map(|v| v.to_vec()),
        Some(b"yes".to_vec()),
        "cut at payload_bytes = 32"
    );
    let mut truncated = rec(b"HTTP/1.1 200 OK\r\n\r\nabc", true);
    host.on_http_record(&mut truncated);
    assert_eq!(
        truncated.attribute("cut").map(|v| v.to_vec()),
        Some(b"yes".to_vec()),
        "truncated by the core"
    );
}
