//! Plugin call costs, as ratios to the same run's no-plugin baseline. Needs the example
//! plugins built (`bash scripts/build-plugins.sh`). Run: `cargo bench --bench plugins`.
#![allow(missing_docs)] // criterion_group! generates undocumented items
#![allow(clippy::unwrap_used, clippy::panic)] // a bench that cannot set up must stop loudly

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use l7tap::core::{Counters, FlowProcessor};
use l7tap::pcap::PcapSource;
use l7tap::wasm::LogLevel;
use l7tap::{
    Config, FlowKey, L7Record, PluginHost, PluginLimits, Protocol, ResponseStatus, Segment, Source,
};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

fn quiet_host() -> PluginHost {
    PluginHost::new(
        PluginLimits::default(),
        Arc::new(|_: &str, _: LogLevel, _: &str| {}),
    )
}

/// A response record with a 1 KiB JSON body saying the operation failed.
fn record() -> L7Record {
    let mut body =
        String::from(r#"{"OPT_STATUS":"FAILED","DESCRIPTION":"order not found","PAD":""#);
    while body.len() < 1022 {
        body.push('x');
    }
    body.push_str("\"}");
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
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
        request_payload: Bytes::from_static(
            b"GET /api/order HTTP/1.1\r\nHost: shop\r\nUser-Agent: bench\r\n\r\n",
        ),
        response_payload: Bytes::from(resp),
        ..Default::default()
    }
}

/// on_http_resp that returns 0 at once.
const NOOP: &str = r#"(module (memory (export "memory") 1)
  (data (i32.const 16) "\40\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00")
  (func (export "_start")) (func (export "get_hook_bitmap") (result i32) i32.const 16)
  (func (export "check_payload") (result i32) i32.const 0) (func (export "parse_payload") (result i32) i32.const 0)
  (func (export "on_http_req") (result i32) i32.const 0) (func (export "on_http_resp") (result i32) i32.const 0))"#;

/// on_http_resp that reads the base context and the whole 1 KiB+ payload, then writes back a
/// one-record result (legacy layout, response side: code 500) and returns 1.
const ROUND_TRIP: &str = r#"(module
  (import "deepflow" "vm_read_ctx_base" (func $base (param i32 i32) (result i32)))
  (import "deepflow" "vm_read_payload" (func $payload (param i32 i32) (result i32)))
  (import "deepflow" "host_read_l7_protocol_info" (func $result (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 16) "\40\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00")
  (data (i32.const 64) "\00\19\00\00\00\00\00\00\00\00\00\03\01\00\00\01\f4\00\00\00\00\00\00\00\00\00\00")
  (func (export "_start")) (func (export "get_hook_bitmap") (result i32) i32.const 16)
  (func (export "check_payload") (result i32) i32.const 0) (func (export "parse_payload") (result i32) i32.const 0)
  (func (export "on_http_req") (result i32) i32.const 0)
  (func (export "on_http_resp") (result i32)
    (drop (call $base (i32.const 1024) (i32.const 1024)))
    (drop (call $payload (i32.const 4096) (i32.const 65535)))
    (drop (call $result (i32.const 64) (i32.const 27)))
    i32.const 1))"#;

fn plugin_file(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/plugins")
        .join(format!("{name}.wasm"));
    std::fs::read(&p)
        .unwrap_or_else(|_| panic!("{} missing: run bash scripts/build-plugins.sh", p.display()))
}

fn bench_calls(c: &mut Criterion) {
    let mut g = c.benchmark_group("plugin_call");
    let rec = record();
    let none = quiet_host();
    g.bench_function("baseline_no_plugin", |b| {
        b.iter(|| {
            let mut r = rec.clone();
            black_box(none.on_http_record(&mut r));
            r
        })
    });
    // The floor under every hook call: wasmer's own typed call of the same `i32.const 0`
    // function (no host, no metering, no timing), in the same run.
    {
        let mut store = wasmer::Store::default();
        let module = wasmer::Module::new(&store, wat::parse_str(NOOP).unwrap()).unwrap();
        let instance = wasmer::Instance::new(&mut store, &module, &wasmer::imports! {}).unwrap();
        let f = instance
            .exports
            .get_typed_function::<(), i32>(&store, "on_http_resp")
            .unwrap();
        g.bench_function("wasmer_bare_call", |b| {
            b.iter(|| black_box(f.call(&mut store).unwrap()))
        });
    }
    let noop = quiet_host();
    noop.load("noop", &wat::parse_str(NOOP).unwrap()).unwrap();
    g.bench_function("noop_hook", |b| {
        b.iter(|| {
            let mut r = rec.clone();
            black_box(noop.on_http_record(&mut r));
            r
        })
    });
    let rt = quiet_host();
    rt.load("round_trip", &wat::parse_str(ROUND_TRIP).unwrap())
        .unwrap();
    g.bench_function("abi_round_trip_1k_payload", |b| {
        b.iter(|| {
            let mut r = rec.clone();
            assert!(rt.on_http_record(&mut r));
            r
        })
    });
    let sr = quiet_host();
    sr.load("http_status_rewrite", &plugin_file("http_status_rewrite"))
        .unwrap();
    g.bench_function("http_status_rewrite_1k_json", |b| {
        b.iter(|| {
            let mut r = rec.clone();
            assert!(sr.on_http_record(&mut r));
            assert_eq!(r.response_code, Some(500));
            r
        })
    });
    g.finish();
    // Deterministic companions of the times: Wasm operators each guest executed per call
    // (the metering count), which the shared machine's load does not move.
    for (name, host) in [
        ("noop", &noop),
        ("round_trip", &rt),
        ("http_status_rewrite", &sr),
    ] {
        let m = &host.plugins()[0].metrics;
        let calls = m.calls(l7tap::wasm::Hook::HttpResp).max(1);
        let ops = m.instructions();
        eprintln!(
            "{name}: {} Wasm operators per on_http_resp call",
            ops / calls
        );
    }
}

fn bench_pipeline(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut segs = Vec::new();
    for _ in 0..200 {
        let mut src = PcapSource::open(root.join("tests/captures/keepalive.pcap")).unwrap();
        src.run(&mut |s: Segment| {
            segs.push(s);
            true
        })
        .unwrap();
    }
    let hosts: Vec<(&str, Option<PluginHost>)> = vec![
        ("0_plugins", None),
        ("1_plugin", {
            let h = quiet_host();
            h.load("http_status_rewrite", &plugin_file("http_status_rewrite"))
                .unwrap();
            Some(h)
        }),
        ("3_plugins", {
            let h = quiet_host();
            for n in ["user_agent_c", "http_status_rewrite", "kv_protocol"] {
                h.load(n, &plugin_file(n)).unwrap();
            }
            Some(h)
        }),
    ];
    let mut g = c.benchmark_group("pipeline_with_plugins");
    g.throughput(Throughput::Elements(1000)); // 200 replays of 5 exchanges
    g.sample_size(20);
    for (name, host) in hosts {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut p = FlowProcessor::new(
                    l7tap::protocols::default_parsers().into(),
                    Config::default(),
                    Arc::new(Counters::default()),
                );
                let mut n = 0;
                for s in segs.iter().cloned() {
                    p.process(s, &mut |mut r| {
                        if let Some(h) = &host {
                            h.on_http_record(&mut r);
                        }
                        n += 1;
                        black_box(r);
                    });
                }
                p.flush_all(&mut |_| n += 1);
                assert_eq!(n, 1000);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_calls, bench_pipeline);
criterion_main!(benches);
