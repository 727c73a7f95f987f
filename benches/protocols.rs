//! Per-protocol parse throughput on real messages (bytes/s and messages/s), each against the
//! same run's baseline: copying the same bytes. Run: `cargo bench --bench protocols`.
#![allow(missing_docs)] // criterion_group! generates undocumented items
#![allow(clippy::unwrap_used, clippy::panic)] // a bench that cannot set up must stop loudly

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use l7tap::core::{ParseCtx, ParseMode, Parsed};
use l7tap::pcap::PcapSource;
use l7tap::{Direction, FlowKey, Parser, Segment, Source};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

/// Whole messages of a capture: segments that one parse call reads completely.
fn messages(file: &str, parser: &dyn Parser) -> Vec<(FlowKey, Direction, Bytes)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut src = PcapSource::open(root.join(file)).unwrap();
    let mut segs = Vec::new();
    src.run(&mut |s: Segment| {
        if !s.payload.is_empty() {
            segs.push(s);
        }
        true
    })
    .unwrap();
    let mut st = parser.new_state();
    segs.into_iter()
        .filter(|s| {
            let mut cx = ParseCtx {
                flow: s.flow,
                ts_ns: 0,
                direction: s.direction,
                mode: ParseMode::Complete,
                state: st.as_mut(),
            };
            matches!(parser.parse(&s.payload, &mut cx), Ok(Parsed::Message(m)) if m.len == s.payload.len())
        })
        .map(|s| (s.flow, s.direction, s.payload))
        .collect()
}

fn bench(c: &mut Criterion) {
    let cases: Vec<(&str, &str, Arc<dyn Parser>)> = vec![
        (
            "http1",
            "tests/captures/keepalive.pcap",
            Arc::new(l7tap::protocols::Http1Parser::default()),
        ),
        (
            "redis",
            "benches/data/redis.pcap",
            Arc::new(l7tap::protocols::redis::RedisParser),
        ),
        (
            "mqtt",
            "benches/data/mqtt_pub.pcap",
            Arc::new(l7tap::protocols::mqtt::MqttParser),
        ),
        (
            "dns",
            "benches/data/dns-a-and-ns.pcap",
            Arc::new(l7tap::protocols::dns::DnsParser),
        ),
    ];
    for (name, file, parser) in cases {
        let msgs = messages(file, parser.as_ref());
        assert!(!msgs.is_empty(), "{name}: no whole messages in {file}");
        let bytes: u64 = msgs.iter().map(|m| m.2.len() as u64).sum();
        let mut g = c.benchmark_group(format!("protocols/{name}"));
        g.throughput(Throughput::Bytes(bytes));
        g.bench_function("baseline_copy", |b| {
            b.iter(|| {
                let mut n = 0;
                for (_, _, p) in &msgs {
                    let v = p.to_vec();
                    n += black_box(v).len();
                }
                n
            })
        });
        g.bench_function("parse", |b| {
            let mut st = parser.new_state();
            b.iter(|| {
                let mut n = 0;
                for (flow, dir, p) in &msgs {
                    let mut cx = ParseCtx {
                        flow: *flow,
                        ts_ns: 0,
                        direction: *dir,
                        mode: ParseMode::Complete,
                        state: st.as_mut(),
                    };
                    if let Ok(Parsed::Message(m)) = parser.parse(black_box(p), &mut cx) {
                        n += m.len;
                    }
                }
                n
            })
        });
        g.finish();
        eprintln!(
            "protocols/{name}: {} messages, {bytes} bytes per iteration",
            msgs.len()
        );
    }
}

/// The payload segments of captures, in capture order: for protocols whose messages span
/// frames or depend on the other direction (HTTP/2 streams and HPACK, MySQL result sets,
/// Kafka responses that need their request), parsed as the framer does, frame after frame.
fn segments(files: &[&str]) -> Vec<Segment> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut segs = Vec::new();
    for f in files {
        let mut src = PcapSource::open(root.join(f)).unwrap();
        src.run(&mut |s: Segment| {
            if !s.payload.is_empty() {
                segs.push(s);
            }
            true
        })
        .unwrap();
    }
    segs
}

/// Parses every frame of every segment with fresh per-flow state; returns messages.
fn parse_stream(parser: &dyn Parser, segs: &[Segment]) -> usize {
    let mut states: Vec<(FlowKey, Box<dyn std::any::Any + Send>)> = Vec::new();
    let mut messages = 0;
    for s in segs {
        let i = match states.iter().position(|(f, _)| *f == s.flow) {
            Some(i) => i,
            None => {
                states.push((s.flow, parser.new_state()));
                states.len() - 1
            }
        };
        let mut at = 0;
        while at < s.payload.len() {
            let mut cx = ParseCtx {
                flow: s.flow,
                ts_ns: 0,
                direction: s.direction,
                mode: ParseMode::Complete,
                state: states[i].1.as_mut(),
            };
            match parser.parse(black_box(&s.payload[at..]), &mut cx) {
                Ok(Parsed::Message(m)) => {
                    messages += 1;
                    at += m.len.max(1);
                }
                Ok(Parsed::Skip(n)) => at += n.max(1),
                _ => break,
            }
        }
    }
    messages
}

fn bench_streams(c: &mut Criterion) {
    let cases: Vec<(&str, Vec<&str>, Arc<dyn Parser>)> = vec![
        (
            "http2_grpc",
            vec![
                "tests/captures/h2c/h2c.pcap",
                "tests/captures/grpc/grpc.pcap",
            ],
            Arc::new(l7tap::protocols::http2::Http2Parser::default()),
        ),
        (
            "mysql",
            vec!["benches/data/mysql-171.pcap"],
            Arc::new(l7tap::protocols::mysql::MysqlParser),
        ),
        (
            "kafka",
            vec![
                "benches/data/kafka-produce-v7.pcap",
                "benches/data/kafka-fetch-v12.pcap",
            ],
            Arc::new(l7tap::protocols::kafka::KafkaParser),
        ),
    ];
    for (name, files, parser) in cases {
        let segs = segments(&files);
        let bytes: u64 = segs.iter().map(|s| s.payload.len() as u64).sum();
        let msgs = parse_stream(parser.as_ref(), &segs);
        assert!(msgs > 0, "{name}: no messages");
        let mut g = c.benchmark_group(format!("protocols/{name}"));
        g.throughput(Throughput::Bytes(bytes));
        g.bench_function("baseline_copy", |b| {
            b.iter(|| {
                let mut n = 0;
                for s in &segs {
                    n += black_box(s.payload.to_vec()).len();
                }
                n
            })
        });
        g.bench_function("parse", |b| b.iter(|| parse_stream(parser.as_ref(), &segs)));
        g.finish();
        eprintln!("protocols/{name}: {msgs} messages, {bytes} bytes per iteration");
    }
}

criterion_group!(benches, bench, bench_streams);
criterion_main!(benches);
