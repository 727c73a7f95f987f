//! The whole pipeline from memory: segments of small keep-alive HTTP exchanges (the bundled
#![allow(missing_docs)] // criterion_group! generates undocumented items
//! nginx/curl capture, spread over many flows) through inference, framing, parsing and
//! pairing on one worker, in paired records per second. Run: `cargo bench --bench pipeline`.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use l7tap::core::{Counters, FlowProcessor, ParseCtx, ParseMode, Parsed};
use l7tap::pcap::PcapSource;
use l7tap::{Config, Engine, FlowKey, Parser, Segment, Source};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

const FLOWS: u16 = 64;
const ROUNDS: usize = 40;

/// Request/response payloads of the keep-alive capture (5 exchanges).
fn exchange_payloads() -> Vec<Segment> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut src = PcapSource::open(root.join("tests/captures/keepalive.pcap")).expect("capture");
    let mut out = Vec::new();
    src.run(&mut |s: Segment| {
        if !s.payload.is_empty() {
            out.push(s);
        }
        true
    })
    .expect("intact capture");
    out
}

/// `ROUNDS` repetitions of the exchanges on each of `FLOWS` flows, interleaved.
fn workload() -> (Vec<Segment>, u64) {
    let base = exchange_payloads();
    let mut segs = Vec::new();
    let mut offsets = vec![[0u64; 2]; FLOWS as usize];
    let mut ts = 1_000_000_000u64;
    let mut requests = 0;
    for _ in 0..ROUNDS {
        for (i, off) in offsets.iter_mut().enumerate() {
            let flow = FlowKey::tcp(
                format!("10.1.0.{}:{}", i % 250, 30000 + i)
                    .parse()
                    .expect("addr"),
                "10.2.0.1:80".parse().expect("addr"),
            );
            for s in &base {
                ts += 1000;
                let d = s.direction.index();
                segs.push(Segment::data(
                    flow,
                    s.direction,
                    ts,
                    off[d],
                    Bytes::clone(&s.payload),
                ));
                off[d] += s.payload.len() as u64;
            }
            requests += base.len() as u64 / 2;
        }
    }
    (segs, requests)
}

fn bench(c: &mut Criterion) {
    let (segs, records) = workload();
    let bytes: u64 = segs.iter().map(|s| s.payload.len() as u64).sum();
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(records));
    g.sample_size(30);
    g.bench_function("flow_processor_one_worker", |b| {
        b.iter(|| {
            let counters = Arc::new(Counters::default());
            let mut p = FlowProcessor::new(
                l7tap::protocols::default_parsers().into(),
                Config::default(),
                counters,
            );
            let mut n = 0u64;
            for s in segs.iter().cloned() {
                p.process(s, &mut |r| {
                    n += u64::from(!r.unpaired);
                    black_box(r);
                });
            }
            p.flush_all(&mut |_| {});
            assert_eq!(n, records);
            n
        })
    });
    // Baseline in the same run: only the HTTP/1 parser on the same payloads (every segment
    // here holds whole messages), no flow table, framing, pairing or record building.
    g.bench_function("baseline_parse_only", |b| {
        let parser = l7tap::protocols::Http1Parser::default();
        b.iter(|| {
            let mut st = parser.new_state();
            let mut n = 0u64;
            for s in &segs {
                let mut cx = ParseCtx::new(s.direction, ParseMode::Complete, st.as_mut());
                if let Ok(Parsed::Message(m)) = parser.parse(&s.payload, &mut cx) {
                    n += u64::from(m.role == Some(l7tap::core::MessageRole::Response));
                    black_box(m);
                }
            }
            assert_eq!(n, records);
            n
        })
    });
    g.bench_function("engine_one_worker_channel", |b| {
        b.iter(|| {
            let mut e = Engine::builder().workers(1).build().expect("engine");
            let rx = e.records().expect("channel");
            let reader =
                std::thread::spawn(move || rx.iter().filter(|r| !r.unpaired).count() as u64);
            for s in segs.iter().cloned() {
                e.feed_batched(s);
            }
            drop(e.finish());
            let n = reader.join().expect("reader");
            assert_eq!(n, records);
            n
        })
    });
    g.finish();
    let mut g = c.benchmark_group("pipeline_bytes");
    g.throughput(Throughput::Bytes(bytes));
    g.sample_size(30);
    g.bench_function("flow_processor_one_worker", |b| {
        b.iter(|| {
            let mut p = FlowProcessor::new(
                l7tap::protocols::default_parsers().into(),
                Config::default(),
                Arc::new(Counters::default()),
            );
            for s in segs.iter().cloned() {
                p.process(s, &mut |r| {
                    black_box(r);
                });
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
