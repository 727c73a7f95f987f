//! The live capture's user side, from ring bytes to JSON lines (issue 5): what `l7tap
//! capture` does per event after the kernel, without the kernel and the thread hand-offs.
//! Events are built in the kernel's layout (`EventBuilder`) from the bundled keep-alive
//! capture's exchanges (curl and nginx), for both ends of each connection as a local client
//! and server produce them: four events per request (the client's send and receive, the
//! server's receive and send), spread over two rings as two CPUs would.
//!
//! Rows, per request: `ring_events_to_json` copies the events into the reorder queues as
//! the ring callback does, releases them in time order to the converter, runs the segments
//! through the flow processor and writes each record as a JSON line; `segments_to_json` is
//! the same run from the already converted segments (the baseline: framing, parsing, pairing
//! and JSON of the same records). Their ratio is the capture-specific share.
//! Run: `cargo bench --bench live_path`.
#![allow(missing_docs)] // criterion_group! generates undocumented items

mod common;

use bytes::Bytes;
use criterion::{criterion_group, Criterion, Throughput};
use l7tap::core::{Counters, FlowProcessor};
use l7tap::{Config, Direction, Segment};
use l7tap_capture_bpf::convert::Converter;
use l7tap_capture_bpf::event::EventBuilder;
use l7tap_capture_bpf::reorder::Reorder;
use std::hint::black_box;
use std::sync::Arc;

const CONNECTIONS: u16 = 8;
const ROUNDS: usize = 25;

/// The keep-alive capture's payloads, in order (requests and responses).
fn exchange_payloads() -> Vec<(Direction, Bytes)> {
    common::payloads(&common::root().join("tests/captures/keepalive.pcap"))
}

/// (ring, event bytes) in time order, and the number of requests.
fn ring_events() -> (Vec<(usize, Vec<u8>)>, u64) {
    let payloads = exchange_payloads();
    let mut events = Vec::new();
    let mut ts = 1_000_000_000u64;
    let mut requests = 0;
    // Per connection: the client's and the server's stream offsets, [egress, ingress].
    let mut offsets = vec![([0u64; 2], [0u64; 2]); usize::from(CONNECTIONS)];
    for _ in 0..ROUNDS {
        for c in 0..CONNECTIONS {
            let (cli_off, srv_off) = &mut offsets[usize::from(c)];
            let client_port = 40_000 + c;
            for (dir, payload) in &payloads {
                let to_server = *dir == Direction::ClientToServer;
                // The sender's send, then the receiver's receive.
                for (server_side, egress) in [(!to_server, true), (to_server, false)] {
                    ts += 2_000;
                    let off = if server_side {
                        &mut *srv_off
                    } else {
                        &mut *cli_off
                    };
                    let d = usize::from(!egress);
                    let (local, remote) = if server_side {
                        (8080, client_port)
                    } else {
                        (client_port, 8080)
                    };
                    let ev = EventBuilder {
                        ts_mono_ns: ts,
                        sock_id: 0x10_0000 + u64::from(c) * 2 + u64::from(server_side),
                        offset: off[d],
                        pid: if server_side { 100 } else { 200 },
                        kind: 1,
                        dir: u8::from(!egress),
                        sotype: 1,
                        role: if server_side { 2 } else { 1 },
                        local: ([127, 0, 0, 1], local),
                        remote: ([127, 0, 0, 1], remote),
                        comm: if server_side { "nginx" } else { "curl" },
                        ..Default::default()
                    };
                    off[d] += payload.len() as u64;
                    events.push((events.len() % 2, ev.bytes(payload)));
                }
                requests += u64::from(to_server);
            }
        }
    }
    (events, requests)
}

fn processor() -> FlowProcessor {
    FlowProcessor::new(
        l7tap::protocols::default_parsers().into(),
        Config::default(),
        Arc::new(Counters::default()),
    )
}

/// Runs `segs` through a fresh processor, writing every record as a JSON line into `line`;
/// returns the paired records.
fn to_json(segs: impl IntoIterator<Item = Segment>, line: &mut Vec<u8>) -> u64 {
    let mut p = processor();
    let mut paired = 0u64;
    let mut emit = |r: l7tap::L7Record| {
        paired += u64::from(!r.unpaired);
        line.clear();
        l7tap::json::write_line(&r, line);
        black_box(&line);
    };
    for s in segs {
        p.process(s, &mut emit);
    }
    p.flush_all(&mut emit);
    paired
}

/// The events, the segments the converter makes of them, and the requests they carry.
struct Workload {
    events: Vec<(usize, Vec<u8>)>,
    segs: Vec<Segment>,
    requests: u64,
}

impl Workload {
    fn new() -> Workload {
        let (events, requests) = ring_events();
        let mut conv = Converter::new(4096, 0);
        let mut segs = Vec::new();
        for (_, e) in &events {
            conv.push(Bytes::copy_from_slice(e), &mut segs);
        }
        Workload {
            events,
            segs,
            requests,
        }
    }

    /// The baseline row: converted segments to JSON lines.
    fn segments(&self, line: &mut Vec<u8>) -> u64 {
        let n = to_json(self.segs.iter().cloned(), line);
        assert_eq!(n, 2 * self.requests, "both sides of every request, paired");
        n
    }

    /// The whole user side: ring bytes to JSON lines.
    fn ring(&self, line: &mut Vec<u8>) -> u64 {
        let mut held = Reorder::default();
        for (ring, e) in &self.events {
            held.push(*ring, e);
        }
        let mut conv = Converter::new(4096, 0);
        let mut out = Vec::with_capacity(self.events.len());
        held.release(u64::MAX, &mut |ev| conv.push(ev, &mut out));
        let n = to_json(out, line);
        assert_eq!(n, 2 * self.requests, "both sides of every request, paired");
        n
    }
}

fn bench(c: &mut Criterion) {
    let w = Workload::new();
    let mut line = Vec::with_capacity(1024);
    let mut g = c.benchmark_group("live_user_path");
    g.throughput(Throughput::Elements(w.requests));
    g.bench_function("segments_to_json", |b| b.iter(|| w.segments(&mut line)));
    g.bench_function("ring_events_to_json", |b| b.iter(|| w.ring(&mut line)));
    g.finish();
}

/// One short connection's events (connect, a request out, a response in, close), then the
/// exit of a process that had no connection, as a client program produces them; `n` makes
/// the socket and the port unique.
fn short_connection(n: u64) -> [Bytes; 5] {
    let ev = |kind: u8, dir: u8, offset: u64, pid: u32, payload: &[u8]| {
        Bytes::from(
            EventBuilder {
                ts_mono_ns: 1_000_000_000 + n * 10,
                sock_id: 0x1_0000_0000 + (n << 4),
                offset,
                pid,
                kind,
                dir,
                sotype: 1,
                role: 1,
                local: ([127, 0, 0, 1], 20_000 + (n % 40_000) as u16),
                remote: ([127, 0, 0, 1], 80),
                comm: "curl",
                ..Default::default()
            }
            .bytes(payload),
        )
    };
    let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    [
        ev(2, 0, 0, 7, b""),
        ev(1, 0, 0, 7, req),
        ev(1, 1, 0, 7, resp),
        ev(3, 0, 0, 7, b""),
        ev(4, 0, 0, 9, b""),
    ]
}

/// A converter tracking `open` long-lived connections (each has sent one request).
fn converter_with(open: u64) -> Converter {
    let mut conv = Converter::new(1 << 20, 0);
    let mut out = Vec::new();
    for i in 0..open {
        let [_, data, ..] = short_connection((1 << 40) + i);
        conv.push(data, &mut out);
    }
    assert_eq!(conv.connections() as u64, open);
    conv
}

/// The converter's cost per short connection (its open, two data events, its close, and a
/// process exit) with 10 and with 10,000 other connections tracked: each is a lookup by
/// socket and by process, so the two should cost the same.
fn bench_churn(c: &mut Criterion) {
    let mut g = c.benchmark_group("converter_churn");
    for open in [10u64, 10_000] {
        let mut conv = converter_with(open);
        let mut out = Vec::new();
        let mut n = 0u64;
        g.bench_function(format!("short_connection_with_{open}_open"), |b| {
            b.iter_batched(
                || {
                    n += 1;
                    short_connection(n)
                },
                |events| {
                    for e in events {
                        conv.push(e, &mut out);
                    }
                    out.clear();
                },
                criterion::BatchSize::SmallInput,
            )
        });
        assert_eq!(conv.connections() as u64, open, "each short one closed");
    }
    g.finish();
}

criterion_group!(benches, bench, bench_churn);

/// With `L7TAP_LIVE_PATH_ITERS=N` (and `L7TAP_LIVE_PATH_ROW=segments|ring`), runs that row N
/// times and nothing else: a fixed amount of work for counting instructions under callgrind
/// (scripts/live-path-instructions.sh). Otherwise the criterion benches.
fn main() {
    let iters = std::env::var("L7TAP_LIVE_PATH_ITERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = iters {
        let w = Workload::new();
        let mut line = Vec::with_capacity(1024);
        let ring = std::env::var("L7TAP_LIVE_PATH_ROW").is_ok_and(|r| r == "ring");
        for _ in 0..n {
            black_box(if ring {
                w.ring(&mut line)
            } else {
                w.segments(&mut line)
            });
        }
        println!("requests per iteration: {}", w.requests);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
