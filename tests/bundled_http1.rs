//! The bundled captures (recorded from nginx and curl on loopback, see
//! `tests/captures/record.sh`), compared with what nginx logged and curl reported.
#![allow(clippy::panic, clippy::unwrap_used)] // tests fail loudly

mod common;

use common::{capture, replay, s};
use l7tap::{L7Record, ResponseStatus};
use serde_json::Value;

/// nginx's access-log lines for a capture (log format in tests/captures/nginx.conf).
fn nginx_log(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(capture(&format!("{name}.nginx.jsonl"))).expect("nginx log");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// curl's `-w '%{http_code} %{size_download} %{size_upload} %{num_connects}'` lines.
fn curl_report(name: &str) -> Vec<Vec<u64>> {
    let text = std::fs::read_to_string(capture(&format!("{name}.curl.txt"))).expect("curl report");
    text.lines()
        .map(|l| {
            l.split_whitespace()
                .map(|w| w.parse().expect("number"))
                .collect()
        })
        .collect()
}

fn status_class(code: u64) -> ResponseStatus {
    // RFC 9110 section 15: 4xx client error, 5xx server error.
    match code {
        400..=499 => ResponseStatus::ClientError,
        500..=599 => ResponseStatus::ServerError,
        _ => ResponseStatus::Ok,
    }
}

/// Checks every record against nginx's log line of the same exchange.
fn check_against_nginx(name: &str, records: &[L7Record]) {
    let log = nginx_log(name);
    assert_eq!(
        records.len(),
        log.len(),
        "{name}: one record per request nginx served"
    );
    for (i, (r, n)) in records.iter().zip(&log).enumerate() {
        let at = format!("{name} #{i}");
        assert_eq!(
            s(&r.request_type),
            n["method"].as_str().expect("method"),
            "{at} method"
        );
        assert_eq!(
            s(&r.request_resource),
            n["uri"].as_str().expect("uri"),
            "{at} uri"
        );
        assert_eq!(
            s(&r.request_domain),
            n["host"].as_str().expect("host"),
            "{at} host"
        );
        let code = n["status"].as_u64().expect("status");
        assert_eq!(r.response_code, Some(code as i32), "{at} status");
        assert_eq!(r.response_status, status_class(code), "{at} class");
        let req_len = n["req_content_length"]
            .as_str()
            .expect("req len")
            .parse::<u64>()
            .unwrap_or(0);
        assert_eq!(r.req_len, Some(req_len), "{at} request body length");
        assert_eq!(
            s(&r.x_request_id),
            n["x_request_id"].as_str().expect("xrid"),
            "{at} x-request-id"
        );
        let tp = n["traceparent"].as_str().expect("traceparent");
        let parts: Vec<&str> = tp.split('-').collect();
        if parts.len() == 4 {
            assert_eq!(s(&r.trace_id), parts[1], "{at} trace id");
            assert_eq!(s(&r.span_id), parts[2], "{at} span id");
        } else {
            assert!(r.trace_id.is_empty(), "{at} no trace id");
        }
        let ct = n["content_type"].as_str().expect("content type");
        assert_eq!(s(&r.content_type), ct, "{at} content type");
        assert!(!r.unpaired, "{at} paired");
        assert!(r.rrt_ns > 0 && r.end_ns >= r.start_ns, "{at} timing");
        assert_eq!(s(&r.version), "1.1", "{at} version");
        assert_eq!(r.flow.server.port(), 18080, "{at} server side");
    }
}

/// Checks response body lengths against curl's `size_download`.
fn check_against_curl(name: &str, records: &[L7Record]) {
    let report = curl_report(name);
    assert_eq!(
        records.len(),
        report.len(),
        "{name}: one record per curl transfer"
    );
    for (i, (r, c)) in records.iter().zip(&report).enumerate() {
        assert_eq!(
            r.response_code,
            Some(c[0] as i32),
            "{name} #{i} code per curl"
        );
        assert_eq!(r.resp_len, Some(c[1]), "{name} #{i} body bytes per curl");
        if c[2] > 0 {
            assert_eq!(r.req_len, Some(c[2]), "{name} #{i} uploaded bytes per curl");
        }
    }
}

fn medium_file() -> Vec<u8> {
    (0..1100)
        .map(|i| format!("line {i:06} of the medium file\n"))
        .collect::<String>()
        .into_bytes()
}

fn large_file() -> Vec<u8> {
    (0..6000)
        .map(|i| format!("line {i:06} of the large file.....\n"))
        .collect::<String>()
        .into_bytes()
}

#[test]
fn keepalive_with_head_404_503_post_and_trace_headers() {
    let (records, stats) = replay(&capture("keepalive.pcap"));
    check_against_nginx("keepalive", &records);
    check_against_curl("keepalive", &records);
    assert_eq!(stats.get("records_paired"), 5);
    assert_eq!(stats.get("flows_created"), 1, "one keep-alive connection");
    assert_eq!(
        s(&records[4].request_body),
        r#"{"item":42,"qty":3}"#,
        "POST body kept for plugins"
    );
    assert_eq!(
        s(&records[3].response_exception),
        "Service Temporarily Unavailable",
        "503 reason phrase as nginx sends it (tshark: http.response.phrase)"
    );
}

#[test]
fn pipelined_requests_pair_in_order() {
    let (records, _) = replay(&capture("pipelined.pcap"));
    check_against_nginx("pipelined", &records);
    let printed = std::fs::read_to_string(capture("pipelined.curl.txt")).expect("client output");
    let codes: Vec<i32> = printed
        .split_whitespace()
        .map(|c| c.parse().expect("code"))
        .collect();
    assert_eq!(
        records
            .iter()
            .map(|r| r.response_code.unwrap_or(0))
            .collect::<Vec<_>>(),
        codes
    );
}

#[test]
fn chunked_gzip_responses() {
    let (records, _) = replay(&capture("chunked.pcap"));
    check_against_nginx("chunked", &records);
    check_against_curl("chunked", &records);
    // The decoded chunked body is gzip data (RFC 1952 magic) of the length curl received.
    assert_eq!(&records[0].response_body[..2], &[0x1f, 0x8b]);
    assert_eq!(
        records[0].response_body.len() as u64,
        records[0].resp_len.unwrap_or(0)
    );
}

#[test]
fn large_bodies_reassembled_and_cut_at_the_limit() {
    let (records, stats) = replay(&capture("large.pcap"));
    check_against_nginx("large", &records);
    check_against_curl("large", &records);
    let medium = &records[0];
    assert!(!medium.truncated);
    assert_eq!(
        medium.response_body.as_ref(),
        medium_file().as_slice(),
        "35 KB body reassembled byte for byte"
    );
    let large = &records[1];
    assert!(large.truncated, "210 KB body exceeds the 64 KiB default");
    assert!(
        large.response_body.len() > 60_000 && large.response_body.len() < 65_536,
        "{}",
        large.response_body.len()
    );
    assert!(
        large_file().starts_with(&large.response_body),
        "kept part is the body's start"
    );
    assert!(
        stats.get("drop_truncated_bytes") > 140_000,
        "the rest was skipped and counted: {stats:?}"
    );
    // The record after the cut body is parsed normally: the skip ended exactly at its end.
    assert!(!records[2].truncated);
    assert_eq!(s(&records[2].request_resource), "/index.html");
}

#[test]
fn larger_limit_keeps_the_large_body_whole() {
    let (records, stats) =
        common::replay_with(&capture("large.pcap"), |b| b.max_message_bytes(512 * 1024));
    assert!(!records[1].truncated);
    assert_eq!(records[1].response_body.as_ref(), large_file().as_slice());
    assert_eq!(stats.get("drop_truncated_bytes"), 0);
}

#[test]
fn expect_100_continue() {
    let (records, stats) = replay(&capture("continue.pcap"));
    check_against_nginx("continue", &records);
    check_against_curl("continue", &records);
    assert_eq!(
        records[0].request_body.as_ref(),
        medium_file().as_slice(),
        "request body after 100 Continue"
    );
    assert_eq!(
        stats.get("records"),
        1,
        "the interim 100 response is not a record"
    );
}

#[test]
fn opt_status_body_is_kept_for_plugins() {
    let (records, _) = replay(&capture("opt_status.pcap"));
    check_against_nginx("opt_status", &records);
    check_against_curl("opt_status", &records);
    // The literal nginx returns (tests/captures/nginx.conf).
    assert_eq!(
        s(&records[0].response_body),
        r#"{"OPT_STATUS":"FAILED","DESCRIPTION":"order 1001 not found in inventory"}"#
    );
}

#[test]
fn several_workers_give_the_same_records() {
    let (one, _) = replay(&capture("keepalive.pcap"));
    let (four, _) = common::replay_with(&capture("keepalive.pcap"), |b| b.workers(4));
    let key = |r: &L7Record| (r.start_ns, s(&r.request_resource), r.response_code);
    let mut a: Vec<_> = one.iter().map(key).collect();
    let mut b: Vec<_> = four.iter().map(key).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
}
