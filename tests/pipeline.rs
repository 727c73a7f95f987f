//! The core pipeline through the public Engine API: framing at every split point, pairing,
//! timeouts, orphans, role correction, gaps and bounds.
#![allow(clippy::panic, clippy::unwrap_used)] // tests fail loudly

mod common;

use bytes::Bytes;
use common::s;
use l7tap::{Direction, Engine, FlowKey, L7Record, ResponseStatus, Segment, StatsSnapshot};
use std::time::Duration;

const REQ: &[u8] =
    b"POST /api/v1/items?x=1 HTTP/1.1\r\nHost: shop\r\nContent-Length: 11\r\n\r\nhello world";
const RESP: &[u8] = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n";

fn flow() -> FlowKey {
    FlowKey::tcp(
        "192.0.2.1:50000".parse().expect("addr"),
        "192.0.2.2:8080".parse().expect("addr"),
    )
}

fn run(
    segs: Vec<Segment>,
    configure: impl FnOnce(l7tap::EngineBuilder) -> l7tap::EngineBuilder,
) -> (Vec<L7Record>, StatsSnapshot) {
    let engine = configure(Engine::builder().workers(1))
        .build()
        .expect("engine");
    let rx = engine.records().expect("channel");
    for s in segs {
        engine.feed(s);
    }
    let stats = engine.finish();
    (rx.iter().collect(), stats)
}

fn seg(dir: Direction, ts_ms: u64, offset: u64, data: &[u8]) -> Segment {
    Segment::data(
        flow(),
        dir,
        ts_ms * 1_000_000,
        offset,
        Bytes::copy_from_slice(data),
    )
}

fn check_exchange(r: &L7Record) {
    assert_eq!(s(&r.request_type), "POST");
    assert_eq!(s(&r.request_resource), "/api/v1/items?x=1");
    assert_eq!(s(&r.endpoint), "/api/v1");
    assert_eq!(s(&r.request_domain), "shop");
    assert_eq!(r.req_len, Some(11));
    assert_eq!(s(&r.request_body), "hello world");
    assert_eq!(r.response_code, Some(201));
    assert_eq!(r.resp_len, Some(9));
    assert_eq!(s(&r.response_body), "Wikipedia");
    assert!(!r.unpaired && !r.truncated);
}

#[test]
fn every_split_point_of_request_and_response() {
    for cut in 1..REQ.len().max(RESP.len()) {
        let (qc, rc) = (cut.min(REQ.len() - 1), cut.min(RESP.len() - 1));
        let segs = vec![
            seg(Direction::ClientToServer, 1, 0, &REQ[..qc]),
            seg(Direction::ClientToServer, 2, qc as u64, &REQ[qc..]),
            seg(Direction::ServerToClient, 5, 0, &RESP[..rc]),
            seg(Direction::ServerToClient, 7, rc as u64, &RESP[rc..]),
        ];
        let (recs, stats) = run(segs, |b| b);
        assert_eq!(recs.len(), 1, "cut {cut}: {stats:?}");
        check_exchange(&recs[0]);
        assert_eq!(
            recs[0].start_ns, 1_000_000,
            "cut {cut}: starts with the request's first byte"
        );
        assert_eq!(
            recs[0].end_ns, 7_000_000,
            "cut {cut}: ends with the response's last byte"
        );
        assert_eq!(recs[0].rrt_ns, 6_000_000);
    }
}

#[test]
fn byte_by_byte() {
    let mut segs = Vec::new();
    for (i, b) in REQ.iter().enumerate() {
        segs.push(seg(Direction::ClientToServer, 1, i as u64, &[*b]));
    }
    for (i, b) in RESP.iter().enumerate() {
        segs.push(seg(Direction::ServerToClient, 2, i as u64, &[*b]));
    }
    let (recs, _) = run(segs, |b| b);
    assert_eq!(recs.len(), 1);
    check_exchange(&recs[0]);
}

#[test]
fn unanswered_request_times_out() {
    let other = FlowKey::tcp(
        "192.0.2.9:1".parse().expect("addr"),
        "192.0.2.2:8080".parse().expect("addr"),
    );
    let segs = vec![
        seg(Direction::ClientToServer, 0, 0, REQ),
        // Capture time moves on (another flow) past the 5 s request timeout.
        Segment::data(
            other,
            Direction::ClientToServer,
            6_000_000_000,
            0,
            Bytes::from_static(b"GET / HTTP/1.1\r\n\r\n"),
        ),
    ];
    let (recs, stats) = run(segs, |b| b.request_timeout(Duration::from_secs(5)));
    let timed_out: Vec<_> = recs
        .iter()
        .filter(|r| r.response_status == ResponseStatus::Timeout)
        .collect();
    assert_eq!(timed_out.len(), 1);
    assert_eq!(s(&timed_out[0].request_resource), "/api/v1/items?x=1");
    assert_eq!(stats.get("records_timeout"), 1);
}

#[test]
fn orphan_response_and_lone_request_are_unpaired() {
    let segs = vec![seg(Direction::ServerToClient, 1, 0, RESP)];
    let (recs, stats) = run(segs, |b| b);
    assert_eq!(recs.len(), 1);
    assert!(recs[0].unpaired);
    assert_eq!(recs[0].response_code, Some(201));
    assert!(recs[0].request_type.is_empty());
    assert_eq!(stats.get("records_unpaired"), 1);

    let (recs, _) = run(vec![seg(Direction::ClientToServer, 1, 0, REQ)], |b| b);
    assert!(recs[0].unpaired && recs[0].response_code.is_none());
    assert_eq!(recs[0].response_status, ResponseStatus::Unknown);
}

#[test]
fn roles_are_corrected_when_the_source_guessed_wrong() {
    // The source took the server for the client: the request travels "server to client".
    let wrong = flow().reversed();
    let segs = vec![
        Segment::data(
            wrong,
            Direction::ServerToClient,
            1,
            0,
            Bytes::from_static(REQ),
        ),
        Segment::data(
            wrong,
            Direction::ClientToServer,
            2,
            0,
            Bytes::from_static(RESP),
        ),
    ];
    let (recs, stats) = run(segs, |b| b);
    assert_eq!(recs.len(), 1);
    check_exchange(&recs[0]);
    assert_eq!(recs[0].flow, flow(), "record oriented client -> server");
    assert_eq!(stats.get("flows_swapped"), 1);
}

#[test]
fn gap_drops_the_partial_message_and_resyncs() {
    let r2 = b"GET /after HTTP/1.1\r\nHost: shop\r\n\r\n";
    let mut after_gap = Segment::data(
        flow(),
        Direction::ClientToServer,
        3,
        200,
        Bytes::from_static(r2),
    );
    after_gap.gap_before = 200 - 30;
    let segs = vec![
        seg(Direction::ClientToServer, 1, 0, &REQ[..30]),
        after_gap,
        seg(
            Direction::ServerToClient,
            4,
            0,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ),
    ];
    let (recs, stats) = run(segs, |b| b);
    assert_eq!(recs.len(), 1, "{stats:?}");
    assert_eq!(s(&recs[0].request_resource), "/after");
    assert_eq!(recs[0].response_code, Some(200));
    assert_eq!(
        stats.get("drop_gap_bytes"),
        30,
        "the cut request's bytes are counted"
    );
    assert_eq!(stats.get("gaps"), 1);
}

/// Bytes missing inside a body of known length (capture loss, an eBPF snaplen cut) are skipped
/// by length: the cut response is reported truncated and the stream stays in step, so the next
/// response pairs with the next request without any resync.
#[test]
fn gap_inside_a_known_length_body_keeps_the_stream_in_step() {
    let reqs = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
    let mut first = head.to_vec();
    first.extend_from_slice(&[b'x'; 100]);
    let next = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    let mut after = Segment::data(
        flow(),
        Direction::ServerToClient,
        3,
        (head.len() + 1000) as u64,
        Bytes::from_static(next),
    );
    after.gap_before = 900;
    let segs = vec![
        seg(Direction::ClientToServer, 1, 0, reqs),
        seg(Direction::ServerToClient, 2, 0, &first),
        after,
    ];
    let (recs, stats) = run(segs, |b| b);
    assert_eq!(recs.len(), 2, "{stats:?}");
    assert_eq!(s(&recs[0].request_resource), "/a");
    assert_eq!(recs[0].response_code, Some(200));
    assert!(recs[0].truncated && !recs[0].unpaired);
    assert_eq!(s(&recs[1].request_resource), "/b");
    assert_eq!(recs[1].response_code, Some(404));
    assert!(!recs[1].truncated && !recs[1].unpaired);
    assert_eq!(stats.get("gaps"), 1);
    assert_eq!(
        stats.get("drop_gap_bytes"),
        0,
        "nothing captured was thrown away"
    );
    assert_eq!(stats.get("drop_resync_bytes"), 0);
}

/// HTTP/2: a DATA frame cut short by a gap (the eBPF source's default 16 KiB snaplen cuts a
/// full-size frame written alone by its 9-byte header) is skipped by its length: the response
/// is reported truncated with its whole body length, and the next stream on the connection
/// parses and pairs (before, the cut frame was a parse error and the connection resynced).
#[test]
fn http2_data_frame_cut_by_a_gap_keeps_the_connection_in_step() {
    fn frame(ty: u8, flags: u8, sid: u32, payload: &[u8]) -> Vec<u8> {
        let n = payload.len();
        let mut f = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, ty, flags];
        f.extend_from_slice(&sid.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }
    fn get(path: &str) -> Vec<u8> {
        // :method GET, :scheme http (static table), :path as a literal (RFC 7541 6.2.2).
        let mut b = vec![0x82, 0x86, 0x00, 5];
        b.extend_from_slice(b":path");
        b.push(path.len() as u8);
        b.extend_from_slice(path.as_bytes());
        b
    }
    let (headers, data, settings) = (1u8, 0u8, 4u8);
    let (end_stream, end_headers) = (1u8, 4u8);
    let mut c2s = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    c2s.extend(frame(settings, 0, 0, &[]));
    c2s.extend(frame(headers, end_headers | end_stream, 1, &get("/a")));
    c2s.extend(frame(headers, end_headers | end_stream, 3, &get("/b")));
    let mut s2c = frame(settings, 0, 0, &[]);
    s2c.extend(frame(headers, end_headers, 1, &[0x88])); // :status 200
    let full = frame(data, 0, 1, &[b'x'; 16_384]);
    let cut_at = s2c.len() + full.len() - 9;
    s2c.extend(full);
    s2c.extend(frame(data, end_stream, 1, b"tail"));
    s2c.extend(frame(headers, end_headers | end_stream, 3, &[0x8d])); // :status 404
    let mut after = Segment::data(
        flow(),
        Direction::ServerToClient,
        3_000_000,
        (cut_at + 9) as u64,
        Bytes::copy_from_slice(&s2c[cut_at + 9..]),
    );
    after.gap_before = 9;
    let segs = vec![
        seg(Direction::ClientToServer, 1, 0, &c2s),
        seg(Direction::ServerToClient, 2, 0, &s2c[..cut_at]),
        after,
    ];
    let (recs, stats) = run(segs, |b| b);
    assert_eq!(recs.len(), 2, "{recs:#?} {stats:?}");
    let (a, b) = (&recs[0], &recs[1]);
    assert_eq!(s(&a.request_resource), "/a");
    assert_eq!(a.response_code, Some(200));
    assert_eq!(a.resp_len, Some(16_384 + 4));
    assert!(a.truncated && !a.unpaired);
    assert_eq!(s(&b.request_resource), "/b");
    assert_eq!(b.response_code, Some(404));
    assert!(!b.truncated && !b.unpaired);
    assert_eq!(stats.get("parse_errors_http2"), 0, "{stats:?}");
    assert_eq!(stats.get("drop_parse_error_bytes"), 0, "{stats:?}");
    assert_eq!(stats.get("drop_resync_bytes"), 0, "{stats:?}");
}

/// A gap reported on its own (an empty segment: bytes a live source knows were sent but did
/// not see, like a sendfile body) completes the message it ends at that segment's time, not
/// when the next bytes arrive: the response's end time is when it was sent.
#[test]
fn a_gap_on_its_own_ends_the_message_at_its_time() {
    let reqs = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
    let mut body_unseen = Segment::data(
        flow(),
        Direction::ServerToClient,
        5_000_000, // 5 ms, as `seg` counts
        (head.len() + 1000) as u64,
        Bytes::new(),
    );
    body_unseen.gap_before = 1000;
    let next = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    let segs = vec![
        seg(Direction::ClientToServer, 1, 0, reqs),
        seg(Direction::ServerToClient, 4, 0, head),
        body_unseen,
        seg(
            Direction::ServerToClient,
            90,
            (head.len() + 1000) as u64,
            next,
        ),
    ];
    let (recs, stats) = run(segs, |b| b);
    assert_eq!(recs.len(), 2, "{stats:?}");
    assert_eq!(s(&recs[0].request_resource), "/a");
    assert_eq!(recs[0].response_code, Some(200));
    assert!(recs[0].truncated && !recs[0].unpaired);
    assert_eq!(
        recs[0].end_ns, 5_000_000,
        "ended by the gap, not by the next bytes (90 ms)"
    );
    assert_eq!(recs[0].rrt_ns, 4_000_000);
    assert_eq!(s(&recs[1].request_resource), "/b");
    assert_eq!(recs[1].response_code, Some(404));
    assert!(!recs[1].truncated && !recs[1].unpaired);
    assert_eq!(stats.get("drop_resync_bytes"), 0);
}

#[test]
fn garbage_flow_is_given_up_and_counted() {
    let junk = [0x16u8; 16];
    let segs: Vec<Segment> = (0..20)
        .map(|i| seg(Direction::ClientToServer, i, i * 16, &junk))
        .collect();
    let (recs, stats) = run(segs, |b| b);
    assert!(recs.is_empty());
    assert_eq!(
        stats.get("flows_unparseable"),
        1,
        "given up after 8 failed inferences"
    );
    assert_eq!(stats.get("drop_unparsed_bytes"), 320, "every byte counted");
}

#[test]
fn pending_requests_are_bounded() {
    let segs: Vec<Segment> = (0..10)
        .map(|i| {
            seg(
                Direction::ClientToServer,
                i,
                i * 18,
                b"GET / HTTP/1.1\r\n\r\n",
            )
        })
        .collect();
    let (recs, stats) = run(segs, |b| b.max_pending_requests(4));
    assert_eq!(recs.len(), 10, "every request reported");
    assert_eq!(stats.get("drop_pairing_queue_full"), 6);
}

/// 50 exchanges on their own flows, fed to `engine`; its stats once `finish` returned (it
/// must return: no worker may stay blocked on the record channel).
fn finish_with_50_exchanges(engine: Engine) -> StatsSnapshot {
    for i in 0..50u64 {
        let f = FlowKey::tcp(
            format!("192.0.2.1:{}", 40000 + i).parse().expect("addr"),
            "192.0.2.2:8080".parse().expect("addr"),
        );
        let mk = |dir, ts_ms, data: &[u8]| {
            Segment::data(f, dir, ts_ms * 1_000_000, 0, Bytes::copy_from_slice(data))
        };
        engine.feed(mk(Direction::ClientToServer, 2 * i + 1, REQ));
        engine.feed(mk(Direction::ServerToClient, 2 * i + 2, RESP));
    }
    let (tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(engine.finish());
    });
    done.recv_timeout(Duration::from_secs(30))
        .expect("finish returned: no worker blocked on the record channel")
}

/// A reader that goes away (a consumer closed its output) must not stall the workers: every
/// record after that is counted as dropped, and the engine finishes.
#[test]
fn a_dropped_record_receiver_counts_drops_instead_of_blocking() {
    let engine = Engine::builder()
        .workers(1)
        .channel_output(1)
        .build()
        .expect("engine");
    let rx = engine.records().expect("channel");
    assert!(engine.records().is_none(), "handed out once");
    drop(rx);
    let stats = finish_with_50_exchanges(engine);
    assert_eq!(stats.get("records"), 50);
    assert_eq!(stats.get("drop_output_queue_full"), 50);
}

/// Channel output whose receiver was never taken: nobody can read the records, so the
/// engine counts them as dropped instead of waiting for room at the end.
#[test]
fn a_record_channel_never_taken_is_counted_not_waited_for() {
    let engine = Engine::builder()
        .workers(2)
        .channel_output(1)
        .build()
        .expect("engine");
    let stats = finish_with_50_exchanges(engine);
    assert_eq!(stats.get("records"), 50);
    assert_eq!(stats.get("drop_output_queue_full"), 50);
}

#[test]
fn callback_output() {
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s2 = std::sync::Arc::clone(&seen);
    let engine = Engine::builder()
        .workers(1)
        .on_record(move |r| {
            assert_eq!(r.response_code, Some(201));
            s2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        })
        .build()
        .expect("engine");
    assert!(engine.records().is_none());
    engine.feed(seg(Direction::ClientToServer, 1, 0, REQ));
    engine.feed(seg(Direction::ServerToClient, 2, 0, RESP));
    let stats = engine.finish();
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(stats.get("records"), 1);
}

#[test]
fn bad_configuration_is_an_error() {
    assert!(Engine::builder().workers(0).build().is_err());
    assert!(Engine::builder().max_message_bytes(1).build().is_err());
    assert!(Engine::builder()
        .protocols(&[l7tap::Protocol::Unknown])
        .build()
        .is_err());
    assert!(Engine::builder()
        .protocols(&[l7tap::Protocol::Custom("no-such-plugin".into())])
        .build()
        .is_err());
}

/// HTTP/1 that panics on a request for `/boom`: a stand-in for a bug in a parser (ours, or
/// one an embedding program adds with `EngineBuilder::parser`).
struct PanickyHttp(l7tap::protocols::Http1Parser);

impl l7tap::Parser for PanickyHttp {
    fn protocol(&self) -> l7tap::Protocol {
        self.0.protocol()
    }
    fn supports(&self, l4: l7tap::L4) -> bool {
        self.0.supports(l4)
    }
    fn check(&self, payload: &[u8], direction: Direction) -> Option<l7tap::core::Inference> {
        self.0.check(payload, direction)
    }
    fn resync(&self, payload: &[u8], direction: Direction) -> bool {
        self.0.resync(payload, direction)
    }
    fn pairing(&self) -> l7tap::core::PairingMode {
        self.0.pairing()
    }
    fn new_state(&self) -> Box<dyn std::any::Any + Send> {
        self.0.new_state()
    }
    fn parse<'a>(
        &self,
        input: &'a [u8],
        ctx: &mut l7tap::core::ParseCtx<'_>,
    ) -> Result<l7tap::core::Parsed<'a>, l7tap::core::ParseError> {
        if input.starts_with(b"GET /boom ") {
            panic!("parser bug (on purpose, for the test)");
        }
        self.0.parse(input, ctx)
    }
}

#[test]
fn a_panicking_parser_is_contained_and_counted() {
    // The worker survives the panic, forgets the flows it held (counted), and the flows after
    // it are parsed as usual: a record for /after, none for /boom, no silent stop.
    let engine = Engine::builder()
        .workers(1)
        .protocols(&[l7tap::Protocol::Redis])
        .parser(std::sync::Arc::new(PanickyHttp(Default::default())))
        .build()
        .expect("engine");
    let rx = engine.records().expect("channel");
    let client = |port: u16| {
        FlowKey::tcp(
            format!("192.0.2.1:{port}").parse().expect("addr"),
            "192.0.2.2:8080".parse().expect("addr"),
        )
    };
    let exchange = |port: u16, path: &str, t: u64| {
        let req = format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        vec![
            Segment::data(
                client(port),
                Direction::ClientToServer,
                t,
                0,
                Bytes::from(req),
            ),
            Segment::data(
                client(port),
                Direction::ServerToClient,
                t + 1000,
                0,
                Bytes::from_static(resp),
            ),
        ]
    };
    // A request waiting on another flow when the panic comes: its flow is forgotten too.
    let waiting = Segment::data(
        client(40002),
        Direction::ClientToServer,
        1,
        0,
        Bytes::from_static(b"GET /waiting HTTP/1.1\r\nHost: h\r\n\r\n"),
    );
    engine.feed(waiting);
    for s in exchange(40000, "/boom", 10_000)
        .into_iter()
        .chain(exchange(40001, "/after", 20_000))
    {
        engine.feed(s);
    }
    let stats = engine.finish();
    let records: Vec<L7Record> = rx.iter().collect();
    let seen: Vec<(String, bool)> = records
        .iter()
        .map(|r| (s(&r.request_resource), r.unpaired))
        .collect();
    // /boom's response reaches a flow that starts afresh: an unpaired response, as for any
    // response whose request l7tap did not see.
    assert_eq!(
        seen,
        vec![(String::new(), true), ("/after".to_string(), false)]
    );
    assert_eq!(stats.get("internal_errors"), 1);
    assert_eq!(
        stats.get("drop_flows_reset_after_panic"),
        2,
        "/boom's and /waiting's"
    );
}
