//! ABI behaviour seen from inside a guest: custom-message hooks, and how a plugin tells a cut
//! payload (`payload.len() == buf_size`).
#![allow(clippy::panic, clippy::unwrap_used)] // tests fail loudly

use bytes::Bytes;
use l7tap_core::{Direction, FlowKey, L7Record, Protocol, ResponseStatus};
use l7tap_wasm_host::dispatch::{Origin, NO_COMM};
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
        comm: &NO_COMM,
        from_ebpf: false,
    };
    let (name, rec) = host
        .on_custom_message(
            &o,
            0,
            106,
            &Bytes::from_static(b"raw"),
            &Bytes::from_static(b"abc"),
        )
        .expect("handled");
    assert_eq!(&*name, "zmtp_tap");
    assert_eq!(
        rec.attributes,
        vec![(Bytes::from_static(b"seen"), Bytes::from_static(b"zmtp"))]
    );
    // NATS (104) is not what it hooked: never called.
    assert!(host
        .on_custom_message(&o, 0, 104, &Bytes::new(), &Bytes::from_static(b"abc"))
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
    // Plugins saw a cut; the record keeps its whole message (and the short one, lent whole
    // to the call, got it back).
    assert_eq!(
        &long.response_payload[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n01234567890123456789"
    );
    assert_eq!(
        &short.response_payload[..],
        b"HTTP/1.1 204 No Content\r\n\r\n"
    );
    let mut truncated = rec(b"HTTP/1.1 200 OK\r\n\r\nabc", true);
    host.on_http_record(&mut truncated);
    assert_eq!(
        truncated.attribute("cut").map(|v| v.to_vec()),
        Some(b"yes".to_vec()),
        "truncated by the core"
    );
}

/// A module shaped like a Go/TinyGo wasip1 build: it imports the 18 WASI functions DeepFlow
/// links plus `random_get`, with the signatures of the WASI preview1 specification, prints in
/// `_start` and ends `_start` with `proc_exit(0)` as Go's runtime does. It must link, start,
/// log its output and then serve hooks.
#[test]
fn go_shaped_module_links_starts_and_runs() {
    let wat = r#"(module
  (import "wasi_snapshot_preview1" "args_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_pread" (func (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_seek" (func (param i32 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_readlink" (func (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (import "wasi_snapshot_preview1" "sched_yield" (func (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $rand (param i32 i32) (result i32)))
  (import "deepflow" "wasm_log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\40\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00")
  (data (i32.const 64) "hello from main\n")
  (global $started (mut i32) (i32.const 0))
  (func (export "malloc") (param i32) (result i32) i32.const 0)
  (func (export "free") (param i32))
  (func (export "_start")
    ;; iovec {buf=64, len=16} at 128; nwritten at 136
    (i32.store (i32.const 128) (i32.const 64))
    (i32.store (i32.const 132) (i32.const 16))
    (drop (call $write (i32.const 1) (i32.const 128) (i32.const 1) (i32.const 136)))
    (drop (call $rand (i32.const 200) (i32.const 16)))
    (drop (call $clock (i32.const 1) (i64.const 0) (i32.const 240)))
    (global.set $started (i32.const 1))
    (call $exit (i32.const 0))
    unreachable)
  (func (export "get_hook_bitmap") (result i32) i32.const 16)
  (func (export "check_payload") (result i32) i32.const 0)
  (func (export "parse_payload") (result i32) i32.const 0)
  (func (export "on_http_req") (result i32) i32.const 0)
  ;; Returns 0 (next plugin) only if _start really ran; a bad code otherwise.
  (func (export "on_http_resp") (result i32) (if (result i32) (global.get $started) (then i32.const 0) (else i32.const 9))))"#;
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let l2 = std::sync::Arc::clone(&logs);
    let host = PluginHost::new(
        PluginLimits::default(),
        std::sync::Arc::new(move |p: &str, _: l7tap_wasm_host::LogLevel, m: &str| {
            l2.lock().unwrap().push(format!("{p}: {m}"))
        }),
    );
    let p = host
        .load("go_shaped", &wat::parse_str(wat).unwrap())
        .unwrap();
    assert_eq!(p.hook_names(), vec!["http_resp"]);
    assert!(
        logs.lock()
            .unwrap()
            .iter()
            .any(|l| l == "go_shaped: hello from main"),
        "{:?}",
        logs.lock().unwrap()
    );
    let mut r = L7Record {
        flow: FlowKey::tcp("10.0.0.1:1".parse().unwrap(), "10.0.0.2:2".parse().unwrap()),
        protocol: Protocol::Http1,
        response_payload: Bytes::from_static(b"HTTP/1.1 200 OK\r\n\r\n"),
        ..Default::default()
    };
    // Each worker thread runs _start on its own instance too (proc_exit(0) included).
    assert!(!host.on_http_record(&mut r));
    assert_eq!(
        p.metrics.failures(l7tap_wasm_host::FailureKind::BadReturn),
        0
    );
    assert_eq!(p.metrics.calls(Hook::HttpResp), 1);
}

/// The `instructions` metric counts the Wasm operators each call executed: a hook whose body
/// is `i32.const 0` runs two (the constant and the function's `end`); the per-call time
/// metrics move with every call.
#[test]
fn instructions_and_time_metrics_count_each_call() {
    let wat = r#"(module (memory (export "memory") 1)
  (data (i32.const 16) "\40\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00")
  (func (export "_start")) (func (export "get_hook_bitmap") (result i32) i32.const 16)
  (func (export "check_payload") (result i32) i32.const 0) (func (export "parse_payload") (result i32) i32.const 0)
  (func (export "on_http_req") (result i32) i32.const 0)
  (func (export "on_http_resp") (result i32) i32.const 0))"#;
    let host = PluginHost::new(PluginLimits::default(), stderr_log());
    let p = host.load("noop", &wat::parse_str(wat).unwrap()).unwrap();
    let mut rec = L7Record {
        flow: FlowKey::tcp(
            "10.0.0.1:1000".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap(),
        ),
        protocol: Protocol::Http1,
        response_code: Some(200),
        response_status: ResponseStatus::Ok,
        response_payload: Bytes::from_static(b"HTTP/1.1 200 OK\r\n\r\n"),
        ..Default::default()
    };
    for _ in 0..3 {
        assert!(!host.on_http_record(&mut rec));
    }
    // The message was lent to the calls and is back in the record.
    assert_eq!(&rec.response_payload[..], b"HTTP/1.1 200 OK\r\n\r\n");
    let m = &p.metrics;
    assert_eq!(m.calls(Hook::HttpResp), 3);
    assert_eq!(m.instructions(), 6);
    assert!(m.total_ns() > 0 && m.max_ns() > 0 && m.max_ns() <= m.total_ns());
    // Each worker thread counts into its own instance's counters; the totals sum them,
    // also after the threads (and their instances) are gone.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let mut r = rec.clone();
                for _ in 0..5 {
                    host.on_http_record(&mut r);
                }
            });
        }
    });
    assert_eq!(m.calls(Hook::HttpResp), 3 + 4 * 5);
    assert_eq!(m.instructions(), 2 * (3 + 4 * 5));
    assert_eq!(m.calls(Hook::HttpReq), 0);
}
