//! Damaged captures and random bytes at every entry point: clear errors, counted drops, and
//! never a panic.
#![allow(clippy::panic, clippy::unwrap_used)] // tests fail loudly

mod common;

use bytes::Bytes;
use common::{capture, s};
use l7tap::core::{ParseCtx, ParseMode};
use l7tap::pcap::{link, PcapSource};
use l7tap::protocols::Http1Parser;
use l7tap::{Direction, Engine, FlowKey, Parser, Segment, SourceError, L4};

/// xorshift64*: deterministic pseudo-random bytes, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn replay_bytes(data: Vec<u8>) -> (usize, Result<(), SourceError>) {
    let mut engine = Engine::builder().workers(1).build().expect("engine");
    let rx = engine.records().expect("channel");
    let mut src = PcapSource::from_reader("mem.pcap", std::io::Cursor::new(data));
    let res = engine.run(&mut src).map_err(|e| match e {
        l7tap::EngineError::Source(s) => s,
        other => panic!("unexpected {other}"),
    });
    drop(engine.finish());
    (rx.iter().count(), res)
}

#[test]
fn truncated_capture_reports_offset_and_keeps_what_came_before() {
    let data = std::fs::read(capture("keepalive.pcap")).expect("capture");
    let (full, res) = replay_bytes(data.clone());
    assert!(res.is_ok());
    assert_eq!(full, 5);
    for cut in (0..data.len()).rev().step_by(7) {
        let (n, res) = replay_bytes(data[..cut].to_vec());
        assert!(n <= full, "cut {cut}");
        match res {
            Ok(()) => {}
            Err(SourceError::Corrupt { offset, .. }) => {
                assert!(offset as usize <= cut, "cut {cut}: offset {offset}")
            }
            Err(e) => panic!("cut {cut}: unexpected {e}"),
        }
    }
    // The last packet (a bare ACK) is cut: every exchange before it is still reported.
    let (n, res) = replay_bytes(data[..data.len() - 40].to_vec());
    let msg = res.expect_err("cut file is an error").to_string();
    assert!(msg.contains("corrupt or truncated at byte offset"), "{msg}");
    assert_eq!(n, 5, "all five exchanges precede the damage");
}

#[test]
fn corrupted_bytes_never_panic() {
    let mut rng = Rng(0x5eed);
    for name in [
        "keepalive.pcap",
        "chunked.pcap",
        "large.pcap",
        "pipelined.pcap",
        "continue.pcap",
    ] {
        let data = std::fs::read(capture(name)).expect("capture");
        for _ in 0..60 {
            let mut d = data.clone();
            for _ in 0..1 + rng.below(20) {
                let i = rng.below(d.len());
                d[i] = rng.next() as u8;
            }
            let _ = replay_bytes(d);
        }
    }
}

#[test]
fn not_a_capture_is_a_clear_error() {
    let (_, res) = replay_bytes(b"GET / HTTP/1.1\r\n\r\n".to_vec());
    let msg = res.expect_err("not a pcap").to_string();
    assert!(msg.contains("not a pcap or pcapng file"), "{msg}");
    let (_, res) = replay_bytes(Vec::new());
    assert!(res.expect_err("empty").to_string().contains("too short"));
    let mut rng = Rng(7);
    for n in 0..300 {
        let mut d = rng.bytes(n);
        if n % 2 == 0 && d.len() >= 4 {
            d[..4].copy_from_slice(&[0xd4, 0xc3, 0xb2, 0xa1]); // a pcap magic, then garbage
        }
        let _ = replay_bytes(d);
    }
}

#[test]
fn missing_file_is_a_clear_error() {
    let err = PcapSource::open("/nonexistent/x.pcap")
        .err()
        .expect("error");
    assert!(
        err.to_string().starts_with("/nonexistent/x.pcap: "),
        "{err}"
    );
}

#[test]
fn random_frames_to_every_link_type() {
    use pcap_file::DataLink;
    let mut rng = Rng(99);
    for link_type in [
        DataLink::ETHERNET,
        DataLink::LINUX_SLL,
        DataLink::LINUX_SLL2,
        DataLink::RAW,
        DataLink::IPV4,
        DataLink::IPV6,
        DataLink::NULL,
        DataLink::LOOP,
        DataLink::USB_LINUX,
    ] {
        for n in 0..2000 {
            let mut f = rng.bytes(n % 120);
            // Make a good share of them look like IPv4/IPv6 so deeper layers get exercised.
            if let Some(b) = f.first_mut() {
                if n % 3 == 0 {
                    *b = 0x45;
                } else if n % 3 == 1 {
                    *b = 0x60;
                }
            }
            let _ = link::decode(link_type, &f);
        }
    }
}

#[test]
fn random_and_mutated_http_to_the_parser() {
    let p = Http1Parser::default();
    let seeds: [&[u8]; 3] = [
        b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST /u HTTP/1.1\r\nsw8: 1-YQ==-Yg==-1-x-y-z-w\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n",
    ];
    let mut rng = Rng(1234);
    for i in 0..30_000 {
        let mut input = if i % 4 == 0 {
            {
                let n = rng.below(200);
                rng.bytes(n)
            }
        } else {
            seeds[i % 3].to_vec()
        };
        for _ in 0..rng.below(6) {
            if input.is_empty() {
                break;
            }
            let at = rng.below(input.len());
            match rng.below(3) {
                0 => input[at] = rng.next() as u8,
                1 => input.truncate(at),
                _ => input.insert(at, b"\r\n:; 0f"[rng.below(7)]),
            }
        }
        for mode in [ParseMode::Complete, ParseMode::Truncate, ParseMode::Eof] {
            let mut st = p.new_state();
            let mut cx = ParseCtx {
                flow: Default::default(),
                ts_ns: 0,
                direction: Direction::ClientToServer,
                mode,
                state: st.as_mut(),
            };
            if let Ok(l7tap::core::Parsed::Message(m)) = p.parse(&input, &mut cx) {
                assert!(m.len > 0);
            }
            let _ = p.check(&input, Direction::ServerToClient);
            let _ = p.skip(&input, st.as_mut());
        }
    }
}

#[test]
fn random_segments_to_the_engine() {
    let mut rng = Rng(42);
    let engine = Engine::builder()
        .workers(2)
        .max_message_bytes(256)
        .max_flows(8)
        .build()
        .expect("engine");
    let rx = engine.records().expect("channel");
    let reader = std::thread::spawn(move || rx.iter().count());
    let http = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
    let mut offsets = [0u64; 64];
    for i in 0..20_000u64 {
        let flow_no = rng.below(16);
        let flow = FlowKey {
            l4: if flow_no % 5 == 0 { L4::Udp } else { L4::Tcp },
            client: format!("10.0.0.{}:{}", flow_no, 40000 + flow_no)
                .parse()
                .expect("addr"),
            server: "10.0.1.1:80".parse().expect("addr"),
            socket_id: 0,
            path: "",
        };
        let dir = if rng.below(2) == 0 {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        let payload: Vec<u8> = if rng.below(3) == 0 {
            let n = rng.below(400);
            rng.bytes(n)
        } else {
            let a = rng.below(http.len());
            let b = a + rng.below(http.len() - a + 1);
            http[a..b].to_vec()
        };
        let slot = flow_no * 2 + dir.index();
        let mut seg = Segment::data(
            flow,
            dir,
            i * 1_000_000,
            offsets[slot],
            Bytes::from(payload),
        );
        offsets[slot] += seg.payload.len() as u64;
        if rng.below(50) == 0 {
            seg.gap_before = rng.below(1000) as u64;
            seg.offset += seg.gap_before;
            offsets[slot] += seg.gap_before;
        }
        seg.end_of_flow = rng.below(200) == 0;
        engine.feed(seg);
    }
    let stats = engine.finish();
    let n = reader.join().expect("reader");
    assert_eq!(
        stats.get("records"),
        n as u64,
        "every record counted was delivered"
    );
    assert_eq!(stats.get("segments"), 20_000, "every segment counted");
    assert!(
        stats.get("drop_flow_table_full") > 0,
        "16 flows into a table of 8 evicts, counted"
    );
    let _ = s(&Bytes::new());
}

/// The segments of a capture, as the pcap source hands them to the engine (`None` for a
/// format the reader does not take, such as the corpus's one "modified pcap" file).
fn segments_of(path: &std::path::Path) -> Option<Vec<Segment>> {
    let mut out = Vec::new();
    let mut src = PcapSource::open(path).ok()?;
    l7tap::Source::run(&mut src, &mut |s| {
        out.push(s);
        true
    })
    .ok()?;
    Some(out)
}

/// Damages a real payload the ways broken or hostile peers do: a byte changed (often a
/// length or type field), cut short, a byte inserted, a run repeated, a length-like run of
/// 0xff or 0x00 written over.
fn mutate(rng: &mut Rng, payload: &[u8]) -> Vec<u8> {
    let mut p = payload.to_vec();
    for _ in 0..1 + rng.below(4) {
        if p.is_empty() {
            break;
        }
        let at = rng.below(p.len());
        match rng.below(6) {
            0 => p[at] = rng.next() as u8,
            1 => p.truncate(at),
            2 => p.insert(at, rng.next() as u8),
            3 => {
                let n = rng.below(p.len() - at + 1).min(64);
                let run = p[at..at + n].to_vec();
                p.splice(at..at, run);
            }
            4 | 5 => {
                let fill = if rng.below(2) == 0 { 0xff } else { 0x00 };
                let n = (1 + rng.below(4)).min(p.len() - at);
                p[at..at + n].fill(fill);
            }
            _ => unreachable!(),
        }
    }
    p
}

#[test]
fn mutated_real_traffic_of_every_protocol_never_panics() {
    // Real conversations of every built-in protocol (the bundled captures, and the DeepFlow
    // corpus when it is beside the project: MySQL, Kafka and more), replayed many times with
    // payloads damaged at random, through framing, inference, every parser and pairing, on
    // this thread: a panic anywhere fails the test. Each round keeps its own flows apart (the
    // socket id is the round), so damage in one round cannot hide behind a flow given up in
    // another.
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    let mut walk = vec![common::root().join("tests/captures")];
    if let Some(c) = common::corpus_dir() {
        walk.push(c);
    }
    while let Some(d) = walk.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk.push(p);
            } else if p.extension().is_some_and(|x| x == "pcap") {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 14, "{} captures", files.len());
    let mut rng = Rng(0x5eed);
    let counters = std::sync::Arc::new(l7tap::core::Counters::default());
    let mut proc = l7tap::core::FlowProcessor::new(
        l7tap::protocols::default_parsers().into(),
        l7tap::core::Config::default(),
        std::sync::Arc::clone(&counters),
    );
    let (mut segments, mut records) = (0u64, 0u64);
    for f in &files {
        let Some(segs) = segments_of(f) else {
            continue;
        };
        for round in 0..200u64 {
            for s in &segs {
                let mut s = s.clone();
                s.flow.socket_id = round + 1;
                if rng.below(3) == 0 {
                    s.payload = Bytes::from(mutate(&mut rng, &s.payload));
                }
                segments += 1;
                proc.process(s, &mut |_| records += 1);
            }
        }
        proc.flush_all(&mut |_| records += 1);
    }
    let stats = counters.snapshot(&[]);
    assert_eq!(stats.get("segments"), segments);
    assert_eq!(stats.get("records"), records);
    eprintln!("{} captures: {:?}", files.len(), stats.0);
}

#[test]
fn random_and_damaged_capture_events_through_the_whole_pipeline_never_panic() {
    // What a confused or hostile kernel side could hand the live source: events whose every
    // header field is random (offsets near u64::MAX, lengths that lie, unknown kinds), real
    // protocol bytes and random bytes as payloads, some events cut or with a byte changed.
    // Through the converter and the flow processor (every parser, pairing) on this thread.
    use l7tap_capture_bpf::convert::Converter;
    use l7tap_capture_bpf::event::EventBuilder;
    let mut rng = Rng(0xfeed);
    let snippets: [&[u8]; 5] = [
        b"GET /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
        b"+OK\r\n",
        b"\x16\x03\x01\x00\x05hello",
    ];
    let mut conv = Converter::new(32, 0);
    let counters = std::sync::Arc::new(l7tap::core::Counters::default());
    let mut proc = l7tap::core::FlowProcessor::new(
        l7tap::protocols::default_parsers().into(),
        l7tap::core::Config::default(),
        std::sync::Arc::clone(&counters),
    );
    let mut segs = Vec::new();
    let mut offsets = [0u64; 16];
    let n = 30_000u64;
    for i in 0..n {
        let sock = rng.below(8);
        let dir = rng.below(2);
        let payload = if rng.below(3) == 0 {
            let k = rng.below(200);
            rng.bytes(k)
        } else {
            snippets[rng.below(snippets.len())].to_vec()
        };
        let slot = sock * 2 + dir;
        let offset = match rng.below(10) {
            0 => rng.next(),
            1 => offsets[slot] + rng.below(5000) as u64,
            _ => offsets[slot],
        };
        offsets[slot] = offset.saturating_add(payload.len() as u64);
        let mut e = EventBuilder {
            ts_mono_ns: 1_000_000 * i + rng.below(1000) as u64,
            sock_id: 0x100 + sock as u64,
            offset,
            pid: 1 + rng.below(3) as u32,
            total_len: if rng.below(8) == 0 {
                rng.next() as u32
            } else {
                0
            },
            kind: if rng.below(10) == 0 {
                rng.below(8) as u8
            } else {
                1
            },
            // Now and then a Unix socket (family 1), IPv6 or an unknown family.
            family: [2, 2, 2, 2, 2, 2, 1, 1, 10, 77][rng.below(10)],
            dir: dir as u8,
            flags: if rng.below(10) == 0 {
                rng.next() as u8
            } else {
                0
            },
            sotype: if rng.below(10) == 0 { 2 } else { 1 },
            role: rng.below(3) as u8,
            local: ([127, 0, 0, 1], 40_000 + sock as u16),
            remote: ([127, 0, 0, 1], [80, 6379, 443][sock % 3]),
            comm: "fuzz",
        }
        .bytes(&payload);
        match rng.below(6) {
            0 => {
                let at = rng.below(e.len());
                e[at] = rng.next() as u8;
            }
            1 => e.truncate(rng.below(e.len() + 1)),
            _ => {}
        }
        segs.clear();
        conv.push(Bytes::from(e), &mut segs);
        for s in segs.drain(..) {
            proc.process(s, &mut |_| {});
        }
    }
    proc.flush_all(&mut |_| {});
    assert_eq!(conv.stats().events, n);
    let stats = counters.snapshot(&[]);
    assert_eq!(stats.get("segments"), conv.stats().segments);
    assert!(stats.get("records") > 0, "{stats:?}");
}
