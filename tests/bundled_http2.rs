//! The bundled h2c capture (nginx 1.22 serving cleartext HTTP/2; nghttp multiplexing four
//! streams on one connection plus a POST, curl --http2-prior-knowledge; see
//! tests/captures/h2c/record.sh), compared with what the clients printed and nginx logged.
#![allow(clippy::panic, clippy::unwrap_used)] // tests fail loudly

mod common;

use common::{capture, replay, s};
use l7tap::core::Source;
use l7tap::pcap::PcapSource;
use l7tap::{Engine, L7Record, Protocol, ResponseStatus};

fn lines(name: &str) -> Vec<Vec<String>> {
    std::fs::read_to_string(capture(name))
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn h2c_streams_match_what_nghttp_curl_and_nginx_saw() {
    let (records, stats) = replay(&capture("h2c/h2c.pcap"));
    // nghttp: "<stream id> <status> <size> <path>"; curl: "<status> <size> <http version> <connects>".
    let nghttp = lines("h2c/h2c.nghttp.txt");
    let curl = lines("h2c/h2c.curl.txt");
    let log: Vec<serde_json::Value> = std::fs::read_to_string(capture("h2c/h2c.nginx.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        records.len(),
        nghttp.len() + curl.len(),
        "{records:#?}\n{stats:?}"
    );
    assert_eq!(records.len(), log.len());
    for (i, r) in records.iter().enumerate() {
        let entry = &log[i];
        assert_eq!(r.protocol, Protocol::Http2);
        assert_eq!(s(&r.version), "2");
        assert_eq!(s(&r.request_type), entry["method"], "{i}");
        assert_eq!(s(&r.request_resource), entry["uri"], "{i}");
        assert_eq!(s(&r.request_domain), entry["host"], "{i}");
        assert_eq!(
            r.response_code.map(i64::from),
            entry["status"].as_i64(),
            "{i}"
        );
        // DATA bytes of the response = what nginx sent as body.
        assert_eq!(r.resp_len, entry["body_bytes_sent"].as_u64(), "{i}");
        assert!(!r.unpaired && !r.truncated && r.rrt_ns > 0, "{i}");
        let tp = entry["traceparent"].as_str().unwrap();
        if tp.is_empty() {
            assert!(r.trace_id.is_empty(), "{i}");
        } else {
            assert_eq!(s(&r.trace_id), tp.split('-').nth(1).unwrap(), "{i}");
            assert_eq!(s(&r.span_id), tp.split('-').nth(2).unwrap(), "{i}");
        }
        if let Some(n) = nghttp.get(i) {
            assert_eq!(r.request_id, Some(n[0].parse().unwrap()), "stream id {i}");
            assert_eq!(r.response_code, Some(n[1].parse().unwrap()), "{i}");
            assert_eq!(s(&r.request_resource), n[3], "{i}");
        } else {
            let c = &curl[i - nghttp.len()];
            assert_eq!(r.response_code, Some(c[0].parse().unwrap()));
            assert_eq!(r.resp_len, Some(c[1].parse().unwrap()));
            assert_eq!(c[2], "2");
        }
        let expected = match r.response_code {
            Some(200) => ResponseStatus::Ok,
            Some(404) => ResponseStatus::ClientError,
            _ => ResponseStatus::ServerError,
        };
        assert_eq!(r.response_status, expected, "{i}");
    }
    // Four streams multiplexed on one connection, the POST and curl's GET on two more.
    assert_eq!(records[0].flow, records[3].flow);
    assert_ne!(records[0].flow, records[4].flow);
    let post = &records[4];
    assert_eq!(post.req_len, Some(19));
    assert_eq!(s(&post.request_body), r#"{"item":42,"qty":3}"#);
    assert_eq!(stats.get("parse_errors_http2"), 0);
}

/// The same traffic seen from its middle: the first connection's segments before the third
/// request are not fed (as if the capture started late). The HPACK decoders never saw the
/// entries the first blocks added, yet the later streams still give records with what can be
/// recovered, flagged truncated when fields were lost, and never wrong values.
#[test]
fn capture_starting_mid_connection_still_yields_records() {
    let mut segments = Vec::new();
    PcapSource::open(capture("h2c/h2c.pcap"))
        .unwrap()
        .run(&mut |seg| {
            segments.push(seg);
            true
        })
        .unwrap();
    let first = segments[0].flow;
    // Each direction of the first connection as one byte stream, cut at the first frame of
    // stream 17 (the third request, /medium.txt, and its response).
    let engine = Engine::builder().workers(1).build().unwrap();
    let rx = engine.records().unwrap();
    for dir in [
        l7tap::Direction::ClientToServer,
        l7tap::Direction::ServerToClient,
    ] {
        let segs: Vec<&l7tap::Segment> = segments
            .iter()
            .filter(|g| g.flow == first && g.direction == dir && !g.payload.is_empty())
            .collect();
        let mut stream: Vec<u8> = Vec::new();
        for g in &segs {
            stream.extend_from_slice(&g.payload);
        }
        let mut at = if dir == l7tap::Direction::ClientToServer {
            24
        } else {
            0
        }; // preface
        while at + 9 <= stream.len() {
            let f = &stream[at..];
            let sid = u32::from_be_bytes([f[5], f[6], f[7], f[8]]) & 0x7fff_ffff;
            if sid >= 17 {
                break;
            }
            at += 9 + ((f[0] as usize) << 16 | (f[1] as usize) << 8 | f[2] as usize);
        }
        assert!(at < stream.len(), "stream 17 found in {dir:?}");
        let mut seg = segs[0].clone();
        seg.offset = at as u64;
        seg.payload = bytes::Bytes::copy_from_slice(&stream[at..]);
        seg.ts_ns = segs.last().unwrap().ts_ns;
        engine.feed(seg);
    }
    engine.feed(l7tap::Segment::close(first, u64::MAX / 2));
    for g in segments.iter().filter(|g| g.flow != first) {
        engine.feed(g.clone());
    }
    let stats = engine.finish();
    let records: Vec<L7Record> = rx.iter().collect();
    let late: Vec<&L7Record> = records.iter().filter(|r| r.flow == first).collect();
    // nghttp's own report for streams 17 and 19.
    let nghttp = lines("h2c/h2c.nghttp.txt");
    assert_eq!(late.len(), 2, "{records:#?}\n{stats:?}");
    for (r, n) in late.iter().zip(&nghttp[2..4]) {
        assert_eq!(r.protocol, Protocol::Http2);
        assert_eq!(r.request_id, Some(n[0].parse().unwrap()));
        assert_eq!(s(&r.request_type), "GET");
        assert_eq!(s(&r.request_resource), n[3]);
        assert_eq!(r.response_code, Some(n[1].parse().unwrap()));
        assert!(!r.unpaired);
        // :authority and traceparent were dynamic-table references to entries made by the
        // requests before the cut: lost, and the record says it is incomplete.
        assert!(r.request_domain.is_empty() && r.trace_id.is_empty());
        assert!(r.truncated);
    }
    // The other connections are unaffected.
    assert_eq!(records.iter().filter(|r| r.flow != first).count(), 2);
}
