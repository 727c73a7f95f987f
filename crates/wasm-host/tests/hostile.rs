//! Plugins written in WAT that misbehave in every way the issue lists, and one that behaves:
//! the host contains each, counts exactly, and keeps answering.
#![allow(clippy::panic, clippy::unwrap_used)] // tests fail loudly

use bytes::Bytes;
use l7tap_core::{FlowKey, L7Record, Protocol, ResponseStatus};
use l7tap_wasm_host::{FailureKind, Hook, LogLevel, PluginHost, PluginLimits};
use std::sync::{Arc, Mutex};

/// A module with every required export; `resp_body` is the body of `on_http_resp`, `extra`
/// more module fields. Memory: 1 page, max 1000 pages unless `memory` says otherwise.
fn module(imports: &str, resp_body: &str, extra: &str) -> Vec<u8> {
    let src = format!(
        r#"(module
  {imports}
  (memory (export "memory") 1)
  ;; hook bitmap: HTTP_RESP (byte 0 = 0x40) at offset 16
  (data (i32.const 16) "\40\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00")
  (func (export "_start"))
  (func (export "get_hook_bitmap") (result i32) i32.const 16)
  (func (export "check_payload") (result i32) i32.const 0)
  (func (export "parse_payload") (result i32) i32.const 0)
  (func (export "on_http_req") (result i32) i32.const 0)
  (func (export "on_http_resp") (result i32) (local i32) {resp_body})
  {extra}
)"#
    );
    wat::parse_str(&src).unwrap()
}

const RESULT_IMPORT: &str = r#"(import "deepflow" "host_read_l7_protocol_info" (func $result (param i32 i32) (result i32)))"#;

/// A legacy response record (2023 layout): code 500, server error, result "FAILED",
/// attribute op_stat=FAILED. Blob = u16 length + record.
fn good_blob_data() -> String {
    let mut rec = Vec::new();
    rec.extend_from_slice(&0u32.to_be_bytes());
    rec.extend_from_slice(&0u32.to_be_bytes());
    rec.push(0); // no request id
    rec.push(3); // server error
    rec.push(1);
    rec.extend_from_slice(&500i32.to_be_bytes());
    for s in [&b"FAILED"[..], b""] {
        rec.extend_from_slice(&(s.len() as u16).to_be_bytes());
        rec.extend_from_slice(s);
    }
    rec.push(0); // merge flags
    rec.push(0); // no trace
    rec.push(1); // kv
    for s in [&b"op_stat"[..], b"FAILED"] {
        rec.extend_from_slice(&(s.len() as u16).to_be_bytes());
        rec.extend_from_slice(s);
    }
    let mut blob = (rec.len() as u16).to_be_bytes().to_vec();
    blob.extend(rec);
    blob.iter().map(|b| format!("\\{b:02x}")).collect()
}

fn good_plugin() -> Vec<u8> {
    let data = good_blob_data();
    let n = data.len() / 3;
    module(
        RESULT_IMPORT,
        &format!("i32.const 1024 i32.const {n} call $result drop i32.const 1"),
        &format!(r#"(data (i32.const 1024) "{data}")"#),
    )
}

fn record() -> L7Record {
    L7Record {
        flow: FlowKey::tcp(
            "10.0.0.1:40000".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap(),
        ),
        protocol: Protocol::Http1,
        request_type: Bytes::from_static(b"GET"),
        request_resource: Bytes::from_static(b"/api/order"),
        response_code: Some(200),
        response_status: ResponseStatus::Ok,
        request_payload: Bytes::from_static(b"GET /api/order HTTP/1.1\r\nHost: x\r\n\r\n"),
        response_payload: Bytes::from_static(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"),
        ..Default::default()
    }
}

fn host(limits: PluginLimits) -> (PluginHost, Arc<Mutex<Vec<String>>>) {
    let logs = Arc::new(Mutex::new(Vec::new()));
    let l2 = Arc::clone(&logs);
    let sink = Arc::new(move |p: &str, lvl: LogLevel, m: &str| {
        l2.lock().unwrap().push(format!("{p} {lvl:?} {m}"))
    });
    (PluginHost::new(limits, sink), logs)
}

/// Whether some log line satisfies `f`.
fn logged(logs: &Mutex<Vec<String>>, f: impl Fn(&str) -> bool) -> bool {
    logs.lock().unwrap().iter().any(|l| f(l))
}

fn assert_good_plugin_works(h: &PluginHost) {
    let mut r = record();
    assert!(h.on_http_record(&mut r));
    assert_eq!(r.response_code, Some(500));
    assert_eq!(r.response_status, ResponseStatus::ServerError);
    assert_eq!(r.response_result.as_ref(), b"FAILED");
    assert_eq!(
        r.attribute("op_stat").map(|v| v.as_ref()),
        Some(&b"FAILED"[..])
    );
    assert_eq!(
        r.plugins.last().map(|p| p.to_string()),
        Some("good".to_string())
    );
}

#[test]
fn a_well_behaved_plugin_rewrites_the_record() {
    let (h, _) = host(PluginLimits::default());
    let p = h.load("good", &good_plugin()).unwrap();
    assert_eq!(p.hook_names(), vec!["http_resp"]);
    for _ in 0..3 {
        assert_good_plugin_works(&h);
    }
    assert_eq!(p.metrics.calls(Hook::HttpResp), 3);
    assert_eq!(
        p.metrics.calls(Hook::HttpReq),
        0,
        "bit not set: never called"
    );
}

/// Loads `bad` before the good plugin, calls the hook `n` times, returns the bad plugin.
fn run_bad(
    bad: Vec<u8>,
    n: usize,
    limits: PluginLimits,
) -> (
    Arc<l7tap_wasm_host::Plugin>,
    PluginHost,
    Arc<Mutex<Vec<String>>>,
) {
    let (h, logs) = host(limits);
    let b = h.load("bad", &bad).unwrap();
    h.load("good", &good_plugin()).unwrap();
    for _ in 0..n {
        // The bad plugin fails first; the good one still handles the record.
        assert_good_plugin_works(&h);
    }
    (b, h, logs)
}

#[test]
fn endless_loop_is_stopped_by_the_budget() {
    let limits = PluginLimits {
        instructions_per_call: 100_000,
        ..Default::default()
    };
    let (b, _, logs) = run_bad(module("", "(loop $l br $l) i32.const 0", ""), 3, limits);
    assert_eq!(b.metrics.failures(FailureKind::Budget), 3);
    assert_eq!(b.metrics.failures(FailureKind::Trap), 0);
    assert!(logged(&logs, |l| l.contains("budget failure")));
}

#[test]
fn memory_grow_bomb_hits_the_cap() {
    let limits = PluginLimits {
        max_memory_bytes: 4 << 20,
        ..Default::default()
    };
    // Grow by 16 pages until refused, then report the refusal as an unknown return code 7
    // when memory.grow said -1 (so the test sees the guest observed the cap).
    let body = "(block $done (loop $l (br_if $done (i32.eq (memory.grow (i32.const 16)) (i32.const -1))) br $l)) i32.const 7";
    let (b, _, _) = run_bad(module("", body, ""), 2, limits);
    assert_eq!(
        b.metrics.failures(FailureKind::BadReturn),
        2,
        "grow returned -1 at the cap"
    );
    assert!(
        b.metrics
            .memory_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
            <= 4 << 20
    );
}

#[test]
fn huge_initial_memory_is_a_load_error() {
    let (h, _) = host(PluginLimits {
        max_memory_bytes: 1 << 20,
        ..Default::default()
    });
    let wasm = wat::parse_str(r#"(module (memory (export "memory") 100) (func (export "_start"))
        (func (export "get_hook_bitmap") (result i32) i32.const 0) (func (export "check_payload") (result i32) i32.const 0)
        (func (export "parse_payload") (result i32) i32.const 0) (func (export "on_http_req") (result i32) i32.const 0)
        (func (export "on_http_resp") (result i32) i32.const 0))"#).unwrap();
    let err = h.load("big", &wasm).err().expect("refused").to_string();
    assert!(err.contains("instantiation failed"), "{err}");
}

#[test]
fn out_of_bounds_pointers_to_every_import() {
    let imports = r#"
      (import "deepflow" "vm_read_ctx_base" (func $a (param i32 i32) (result i32)))
      (import "deepflow" "vm_read_payload" (func $b (param i32 i32) (result i32)))
      (import "deepflow" "vm_read_http_req_info" (func $c (param i32 i32) (result i32)))
      (import "deepflow" "vm_read_http_resp_info" (func $d (param i32 i32) (result i32)))
      (import "deepflow" "vm_read_custom_message_info" (func $e (param i32 i32) (result i32)))
      (import "deepflow" "host_read_l7_protocol_info" (func $f (param i32 i32) (result i32)))
      (import "deepflow" "host_read_str_result" (func $g (param i32 i32) (result i32)))
      (import "deepflow" "wasm_log" (func $h (param i32 i32 i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))"#;
    // Each import gets a pointer near 4 GiB; the sum of the answers is the return value, so
    // the test sees every import answered 0 (8 = EBADF... no: fd 1 with a bad iovec = FAULT 21).
    let body = r#"
      (i32.add (call $a (i32.const -16) (i32.const 100))
      (i32.add (call $b (i32.const -16) (i32.const 100000))
      (i32.add (call $c (i32.const -16) (i32.const 100))
      (i32.add (call $d (i32.const -16) (i32.const 100))
      (i32.add (call $e (i32.const -16) (i32.const 100))
      (i32.add (call $f (i32.const -16) (i32.const 100))
               (call $g (i32.const -16) (i32.const 100))))))))
      (call $h (i32.const -16) (i32.const 100) (i32.const 0))
      (i32.add (call $w (i32.const 1) (i32.const -16) (i32.const 1) (i32.const -16)))"#;
    let (b, _, _) = run_bad(module(imports, body, ""), 1, PluginLimits::default());
    // Returned 21 (EFAULT from fd_write): not a valid code, so one bad-return failure, and
    // every pointer was refused and counted.
    assert_eq!(b.metrics.failures(FailureKind::BadReturn), 1);
    assert_eq!(b.metrics.failures(FailureKind::Trap), 0);
    assert!(
        b.metrics
            .bad_pointers
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 6
    );
}

#[test]
fn trap_in_every_hook_and_disable_after_repeated_failures() {
    let limits = PluginLimits {
        max_consecutive_failures: 4,
        ..Default::default()
    };
    let (b, h, logs) = run_bad(module("", "unreachable", ""), 6, limits);
    assert_eq!(
        b.metrics.failures(FailureKind::Trap),
        4,
        "disabled after the 4th, never called again"
    );
    assert!(b.is_disabled());
    assert!(b
        .disabled_reason()
        .unwrap()
        .contains("4 consecutive failures"));
    assert!(logged(&logs, |l| l.contains("disabled after 4")));
    assert!(h.get("good").is_some_and(|g| !g.is_disabled()));
}

#[test]
fn lying_result_stops_iteration_without_changes() {
    let (h, _) = host(PluginLimits::default());
    let bad = module(
        RESULT_IMPORT,
        "i32.const 1024 i32.const 5 call $result drop i32.const 1",
        r#"(data (i32.const 1024) "\00\c8abc")"#,
    );
    let b = h.load("liar", &bad).unwrap();
    h.load("good", &good_plugin()).unwrap();
    let mut r = record();
    assert!(
        !h.on_http_record(&mut r),
        "handled with no result: no change"
    );
    assert_eq!(r.response_code, Some(200));
    assert_eq!(
        b.metrics
            .bad_results
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn load_errors_name_what_is_wrong() {
    let (h, _) = host(PluginLimits::default());
    let unknown =
        wat::parse_str(r#"(module (import "env" "mystery" (func)) (memory (export "memory") 1))"#)
            .unwrap();
    let e = h.load("u", &unknown).err().unwrap().to_string();
    assert_eq!(e, "unknown import env.mystery");
    let unknown_df = wat::parse_str(
        r#"(module (import "deepflow" "vm_read_everything" (func)) (memory (export "memory") 1))"#,
    )
    .unwrap();
    assert_eq!(
        h.load("u", &unknown_df).err().unwrap().to_string(),
        "unknown import deepflow.vm_read_everything"
    );
    let wrong = wat::parse_str(r#"(module (import "deepflow" "vm_read_payload" (func (param i32))) (memory (export "memory") 1))"#).unwrap();
    assert!(h
        .load("u", &wrong)
        .err()
        .unwrap()
        .to_string()
        .starts_with("import deepflow.vm_read_payload has type"));
    let missing =
        wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start")))"#)
            .unwrap();
    let e = h.load("m", &missing).err().unwrap().to_string();
    assert!(e.starts_with("export check_payload:"), "{e}");
    assert!(h
        .load("x", b"\0asm garbage")
        .err()
        .unwrap()
        .to_string()
        .starts_with("not a valid module"));
    assert!(h.names().is_empty());
}

#[test]
fn unknown_wasi_functions_are_stubbed() {
    let (h, _) = host(PluginLimits::default());
    let imports = r#"(import "wasi_snapshot_preview1" "sock_accept" (func $s (param i32 i32 i32) (result i32)))
                     (import "wasi_snapshot_preview1" "random_get" (func $r (param i32 i32) (result i32)))"#;
    // sock_accept says ENOSYS (52); random_get works (0). 52 + 0 is not a valid code.
    let p = h.load("w", &module(imports, "(i32.add (call $s (i32.const 0) (i32.const 0) (i32.const 0)) (call $r (i32.const 0) (i32.const 8)))", "")).unwrap();
    let mut r = record();
    h.on_http_record(&mut r);
    assert_eq!(p.metrics.failures(FailureKind::BadReturn), 1);
}

#[test]
fn unload_and_reload_by_name() {
    let (h, _) = host(PluginLimits::default());
    h.load("good", &good_plugin()).unwrap();
    assert!(h.load("good", &good_plugin()).is_err(), "names are unique");
    assert_good_plugin_works(&h);
    assert!(h.unload("good"));
    let mut r = record();
    assert!(!h.on_http_record(&mut r));
    h.reload("good", &good_plugin()).unwrap();
    assert_good_plugin_works(&h);
    // Reload with a plugin that declines: the record stays as it was.
    h.reload("good", &module("", "i32.const 0", "")).unwrap();
    let mut r = record();
    assert!(!h.on_http_record(&mut r));
    assert_eq!(h.names(), vec!["good"]);
}

#[test]
fn first_handling_plugin_wins_in_load_order() {
    let (h, _) = host(PluginLimits::default());
    h.load("decline", &module("", "i32.const 0", "")).unwrap();
    h.load("good", &good_plugin()).unwrap();
    h.load("second", &good_plugin()).unwrap();
    let mut r = record();
    assert!(h.on_http_record(&mut r));
    assert_eq!(
        r.plugins.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        vec!["good"]
    );
    assert_eq!(h.get("second").unwrap().metrics.calls(Hook::HttpResp), 0);
    assert_eq!(h.get("decline").unwrap().metrics.calls(Hook::HttpResp), 1);
}

#[test]
fn each_thread_has_its_own_instances() {
    let (h, _) = host(PluginLimits::default());
    let p = h.load("good", &good_plugin()).unwrap();
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let h = h.clone();
            std::thread::spawn(move || {
                for _ in 0..10 {
                    assert_good_plugin_works(&h);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(p.metrics.calls(Hook::HttpResp), 30);
}

/// A hook body that grows memory to 64 MiB and fills all of it, forever: a handful of
/// operators per 64 MiB written, so the instruction budget alone would let one call run for
/// hours (100 rounds took 450 ms here and counted 1 208 operators).
const FILL_FOREVER: &str = "(drop (memory.grow (i32.const 1023))) \
    (loop $l (memory.fill (i32.const 0) (local.get 0) (i32.const 67108864)) \
    (local.set 0 (i32.add (local.get 0) (i32.const 1))) br $l) i32.const 0";

#[test]
fn a_bulk_memory_loop_is_stopped_by_the_deadline() {
    let limits = PluginLimits {
        max_call_time: std::time::Duration::from_millis(30),
        ..Default::default()
    };
    let t = std::time::Instant::now();
    let (b, h, logs) = run_bad(module("", FILL_FOREVER, ""), 3, limits);
    // Three stopped calls: each within its deadline, a watchdog period and one 64 MiB fill;
    // 2 s for all three leaves room for a loaded machine.
    assert!(
        t.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(b.metrics.failures(FailureKind::Deadline), 3);
    assert_eq!(b.metrics.failures(FailureKind::Budget), 0);
    assert_eq!(b.metrics.failures(FailureKind::Trap), 0);
    assert_eq!(b.metrics.calls(Hook::HttpResp), 3);
    assert!(b.metrics.max_ns() >= 30_000_000, "{}", b.metrics.max_ns());
    assert!(logged(&logs, |l| l.contains("deadline failure")));
    // The fresh instance that replaces a stopped one gets a whole budget again.
    let p = h.plugins();
    assert_eq!(p.len(), 2);
}

#[test]
fn a_bulk_memory_loop_in_start_is_a_load_error_within_its_deadline() {
    let (h, _) = host(PluginLimits {
        max_start_time: std::time::Duration::from_millis(30),
        ..Default::default()
    });
    let src = format!(
        r#"(module (memory (export "memory") 1)
        (func (export "_start") (local i32) {})
        (func (export "get_hook_bitmap") (result i32) i32.const 0) (func (export "check_payload") (result i32) i32.const 0)
        (func (export "parse_payload") (result i32) i32.const 0) (func (export "on_http_req") (result i32) i32.const 0)
        (func (export "on_http_resp") (result i32) i32.const 0))"#,
        FILL_FOREVER.trim_end_matches("i32.const 0")
    );
    let t = std::time::Instant::now();
    let err = h
        .load("slow_start", &wat::parse_str(&src).unwrap())
        .err()
        .expect("refused")
        .to_string();
    assert!(
        t.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        t.elapsed()
    );
    assert!(err.contains("deadline"), "{err}");
}

#[test]
fn table_grow_bomb_hits_the_cap() {
    // One table.grow of 50 M elements took 400 MB of the host before tables had a cap. Here
    // the guest reports the refusal as the unknown return code 7 (so the test sees that the
    // guest observed -1), and growing within the cap still works.
    let body = "(if (i32.ne (table.grow $t (ref.null func) (i32.const 50000000)) (i32.const -1)) \
        (then (return (i32.const 0)))) \
        (if (i32.eq (table.grow $t (ref.null func) (i32.const 1000)) (i32.const -1)) \
        (then (return (i32.const 0)))) i32.const 7";
    let (b, _, _) = run_bad(
        module("", body, "(table $t 1 funcref)"),
        2,
        PluginLimits::default(),
    );
    assert_eq!(b.metrics.failures(FailureKind::BadReturn), 2);
}

#[test]
fn huge_tables_and_extra_memories_are_load_errors() {
    let (h, _) = host(PluginLimits::default());
    let err = |extra: &str| {
        h.load("x", &module("", "i32.const 0", extra))
            .err()
            .expect("refused")
            .to_string()
    };
    let e = err("(table 50000000 funcref)");
    assert!(e.contains("table of 50000000 elements"), "{e}");
    // Each memory would get the whole memory cap: four of them held 500 MB.
    let e = err("(memory $m2 1) (memory $m3 1)");
    assert!(e.contains("defines 3 linear memories"), "{e}");
    let e = err(&"(table 1 funcref) ".repeat(9));
    assert!(e.contains("defines 9 tables"), "{e}");
    // One more table within the caps is fine.
    h.load("ok", &module("", "i32.const 0", "(table 1000 funcref)"))
        .unwrap();
}

#[test]
fn a_log_flood_is_cut_to_the_rate_limit_and_counted() {
    // 10 000 lines in one call: the log gets at most the limit per second (the call may
    // straddle a second: then twice the limit and one "dropped" summary line), the rest is
    // counted, and the host's own failure lines are held to the same limit.
    let limits = PluginLimits {
        max_log_lines_per_sec: 20,
        ..Default::default()
    };
    let body = "(local.set 0 (i32.const 10000)) \
        (loop $l (call $log (i32.const 100) (i32.const 5) (i32.const 0)) \
        (local.set 0 (i32.sub (local.get 0) (i32.const 1))) (br_if $l (local.get 0))) i32.const 0";
    let wasm = module(
        r#"(import "deepflow" "wasm_log" (func $log (param i32 i32 i32)))"#,
        body,
        r#"(data (i32.const 100) "flood")"#,
    );
    let (h, logs) = host(limits);
    let p = h.load("flood", &wasm).unwrap();
    let mut r = record();
    h.on_http_record(&mut r);
    let lines = logs.lock().unwrap();
    let floods = lines.iter().filter(|l| l.ends_with("flood")).count() as u64;
    let dropped = p
        .metrics
        .log_dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(floods + dropped, 10_000);
    assert!(floods == 20 || floods == 40, "{floods} lines passed");
    assert!(lines.len() <= 41, "{}", lines.len());
    assert_eq!(p.metrics.calls(Hook::HttpResp), 1);
}

#[test]
fn endless_recursion_is_a_contained_trap() {
    // The guest's stack overflows (wasmer's guard page on the Wasm stack) long before the
    // budget runs out: a trap like any other, on a stack that is not the host's.
    let wasm = module(
        "",
        "call $deep i32.const 0",
        "(func $deep (local i64 i64 i64 i64 i64 i64 i64 i64) call $deep)",
    );
    let (b, _, logs) = run_bad(wasm, 3, PluginLimits::default());
    assert_eq!(b.metrics.failures(FailureKind::Trap), 3);
    assert_eq!(b.metrics.failures(FailureKind::Budget), 0);
    assert!(logged(&logs, |l| l.contains("trap failure") && l.contains("stack")));
}
