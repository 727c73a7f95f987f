//! The ways out (issue 7), each against a baseline in the same run:
//! - OTLP encoding: records/s of ExportLogsServiceRequest + ExportTraceServiceRequest bytes for
//!   a batch, against writing the same records as JSON lines;
//! - FFI delivery: the same exchanges fed to an engine and taken out through the C ABI
//!   (`l7tap_engine_feed`, `l7tap_engine_poll`, `l7tap_records_release`) against the Rust
//!   engine's channel. The difference per record is the FFI's cost.
//!
//! `cargo bench --bench outputs`
#![allow(missing_docs)] // criterion_group! generates undocumented items
#![allow(clippy::unwrap_used, clippy::panic, unsafe_code)] // a bench calls the C ABI

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use l7tap::pcap::PcapSource;
use l7tap::{Direction, Engine, L7Record, Segment, Source};
use std::ffi::CString;
use std::hint::black_box;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn records() -> Vec<L7Record> {
    let engine = Engine::builder().workers(1).build().unwrap();
    let rx = engine.records().unwrap();
    let mut src = PcapSource::open(root().join("tests/captures/keepalive.pcap")).unwrap();
    let mut segs = Vec::new();
    src.run(&mut |s| {
        segs.push(s);
        true
    })
    .unwrap();
    for s in segs {
        engine.feed(s);
    }
    engine.finish();
    let one: Vec<L7Record> = rx.iter().collect();
    one.iter().cycle().take(500).cloned().collect()
}

/// The keep-alive exchanges repeated on `flows` flows (each flow's own client port).
fn segments(flows: u16) -> Vec<Segment> {
    let mut src = PcapSource::open(root().join("tests/captures/keepalive.pcap")).unwrap();
    let mut base = Vec::new();
    src.run(&mut |s| {
        if !s.payload.is_empty() {
            base.push(s);
        }
        true
    })
    .unwrap();
    let mut out = Vec::new();
    for f in 0..flows {
        for s in &base {
            let mut s = s.clone();
            s.flow.client.set_port(20000 + f);
            out.push(s);
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let recs = records();
    let mut g = c.benchmark_group("outputs/encode");
    g.throughput(Throughput::Elements(recs.len() as u64));
    g.bench_function("baseline_json_lines", |b| {
        b.iter(|| {
            let mut n = 0;
            for r in &recs {
                n += black_box(l7tap::json::to_line(r)).len();
            }
            n
        })
    });
    g.bench_function("otlp_logs_and_traces", |b| {
        use prost::Message as _;
        b.iter(|| {
            let logs = l7tap_export::logs_request(&recs).encode_to_vec();
            let traces = l7tap_export::traces_request(&recs).encode_to_vec();
            black_box(logs.len() + traces.len())
        })
    });
    g.finish();

    let segs = segments(100);
    let exchanges = segs.len() as u64 / 2;
    let mut g = c.benchmark_group("outputs/delivery");
    g.throughput(Throughput::Elements(exchanges));
    g.bench_function("baseline_rust_channel", |b| {
        b.iter(|| {
            let engine = Engine::builder().workers(1).build().unwrap();
            let rx = engine.records().unwrap();
            for s in &segs {
                engine.feed(s.clone());
            }
            engine.finish();
            rx.iter().count()
        })
    });
    let ips: Vec<(CString, CString)> = segs
        .iter()
        .map(|s| {
            (
                CString::new(s.flow.client.ip().to_string()).unwrap(),
                CString::new(s.flow.server.ip().to_string()).unwrap(),
            )
        })
        .collect();
    g.bench_function("ffi_feed_poll_release", |b| {
        b.iter(|| {
            let mut e = 0u64;
            let conf = CString::new(r#"{"workers": 1}"#).unwrap();
            // SAFETY: valid pointers for the duration of each call, as the header documents.
            unsafe {
                assert_eq!(
                    l7tap_ffi::l7tap_engine_new(conf.as_ptr(), None, std::ptr::null_mut(), &mut e),
                    l7tap_ffi::L7tapStatus::L7tapOk
                );
                for (s, (cip, sip)) in segs.iter().zip(&ips) {
                    let seg = l7tap_ffi::L7tapSegment {
                        ip_protocol: 6,
                        client_ip: cip.as_ptr(),
                        client_port: s.flow.client.port(),
                        server_ip: sip.as_ptr(),
                        server_port: s.flow.server.port(),
                        direction: u8::from(s.direction == Direction::ServerToClient),
                        ts_ns: s.ts_ns,
                        offset: s.offset,
                        payload: s.payload.as_ptr(),
                        payload_len: s.payload.len(),
                        end_of_flow: 0,
                    };
                    l7tap_ffi::l7tap_engine_feed(e, &seg);
                }
                l7tap_ffi::l7tap_engine_flush(e);
                let mut views = vec![std::mem::zeroed::<l7tap_ffi::L7tapRecord>(); 64];
                let mut ids = vec![0u64; 64];
                let mut total = 0;
                loop {
                    let mut n = 0usize;
                    l7tap_ffi::l7tap_engine_poll(e, views.as_mut_ptr(), 64, 0, &mut n);
                    if n == 0 {
                        break;
                    }
                    for i in 0..n {
                        ids[i] = views[i].id;
                    }
                    l7tap_ffi::l7tap_records_release(e, ids.as_ptr(), n);
                    total += n;
                }
                l7tap_ffi::l7tap_engine_free(e);
                total
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
