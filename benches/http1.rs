//! HTTP/1 head parsing: l7tap's parser (producing the record fields, body framing included)
#![allow(missing_docs)] // criterion_group! generates undocumented items
//! against httparse (head only) on the same real messages. Run: `cargo bench --bench http1`.

mod common;

use bytes::Bytes;
use common::payloads;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use l7tap::core::{ParseCtx, ParseMode, Parsed};
use l7tap::protocols::Http1Parser;
use l7tap::{Direction, Parser};
use std::hint::black_box;

fn inputs() -> Vec<(&'static str, Bytes)> {
    let root = common::root();
    let v1 = payloads(&root.join("benches/data/httpv1.pcap"));
    let ka = payloads(&root.join("tests/captures/keepalive.pcap"));
    let sw8 = payloads(&root.join("benches/data/sw8.pcap"));
    vec![
        ("corpus_httpv1_request_231B", v1[0].1.clone()),
        ("corpus_httpv1_response_227B", v1[1].1.clone()),
        ("curl_get_traceparent_183B", ka[0].1.clone()),
        ("nginx_response_274B", ka[1].1.clone()),
        ("corpus_sw8_post_1326B", sw8[0].1.clone()),
    ]
}

/// Parses with a flow's state that lives across messages, as in the pipeline.
fn l7tap_parse(p: &Http1Parser, st: &mut Box<dyn std::any::Any + Send>, input: &[u8]) -> usize {
    let mut cx = ParseCtx::new(Direction::ClientToServer, ParseMode::Complete, st.as_mut());
    match p.parse(input, &mut cx) {
        Ok(Parsed::Message(m)) => {
            m.len + m.request_type.len() + m.code.unwrap_or(0) as usize + m.trace_id.len()
        }
        _ => 0,
    }
}

fn httparse_parse(input: &[u8]) -> usize {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    if input.starts_with(b"HTTP/") {
        let mut r = httparse::Response::new(&mut headers);
        match r.parse(input) {
            Ok(httparse::Status::Complete(n)) => n + r.code.unwrap_or(0) as usize,
            _ => 0,
        }
    } else {
        let mut r = httparse::Request::new(&mut headers);
        match r.parse(input) {
            Ok(httparse::Status::Complete(n)) => n + r.method.map_or(0, str::len),
            _ => 0,
        }
    }
}

fn bench(c: &mut Criterion) {
    let p = Http1Parser::default();
    for (name, input) in inputs() {
        let mut st = p.new_state();
        assert!(l7tap_parse(&p, &mut st, &input) > 0, "{name} parses");
        assert!(httparse_parse(&input) > 0, "{name} parses with httparse");
        let mut g = c.benchmark_group(format!("http1/{name}"));
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function("l7tap", |b| {
            b.iter(|| l7tap_parse(&p, &mut st, black_box(&input)))
        });
        g.bench_function("httparse", |b| b.iter(|| httparse_parse(black_box(&input))));
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
