//! Every HTTP/1 capture of the shared DeepFlow corpus, compared field by field with the
//! DeepFlow agent's own parse (`.result`). Deliberate differences: `tests/DIFFERENCES.md`.
#![allow(clippy::panic, clippy::unwrap_used)] // tests fail loudly

mod common;

use common::deepflow_result::{parse_file, Value};
use common::{corpus_dir, replay, s};
use l7tap::ResponseStatus;

struct Expected {
    method: String,
    path: String,
    host: String,
    endpoint: Option<String>,
    req_content_length: Option<i64>,
    trace_id: Option<String>,
    span_id: Option<String>,
    response: Option<(i64, String, Option<i64>)>,
}

fn prio_field(v: Option<&Value>) -> Option<String> {
    let f = v?.get("field")?.text()?.to_string();
    (!f.is_empty()).then_some(f)
}

fn expected_exchanges(lines: &[common::deepflow_result::Line]) -> Vec<Expected> {
    let http1: Vec<&Value> = lines
        .iter()
        .map(|l| &l.record)
        .filter(|r| r.get("proto").and_then(Value::text) == Some("Http1"))
        .collect();
    let mut out: Vec<Expected> = Vec::new();
    let mut responses = Vec::new();
    for r in &http1 {
        match r.get("msg_type").and_then(Value::text) {
            Some("Request") => out.push(Expected {
                method: r
                    .get("method")
                    .and_then(Value::text)
                    .unwrap_or("")
                    .to_ascii_uppercase(),
                path: r.get("path").and_then(Value::text).unwrap_or("").into(),
                host: r.get("host").and_then(Value::text).unwrap_or("").into(),
                endpoint: r.opt_text("endpoint"),
                req_content_length: r.opt_int("req_content_length"),
                trace_id: match r.get("trace_ids") {
                    Some(Value::Tuple(_, v)) => match v.first() {
                        Some(Value::List(items)) => prio_field(items.first()),
                        _ => None,
                    },
                    _ => None,
                },
                span_id: prio_field(r.get("span_id")),
                response: None,
            }),
            Some("Response") => responses.push((
                r.opt_int("status_code").unwrap_or(-1),
                r.get("status")
                    .and_then(Value::text)
                    .unwrap_or("")
                    .to_string(),
                r.opt_int("resp_content_length"),
            )),
            _ => {}
        }
    }
    // HTTP/1 answers in request order.
    for (e, resp) in out.iter_mut().zip(responses) {
        e.response = Some(resp);
    }
    out
}

fn status_name(s: &str) -> ResponseStatus {
    match s {
        "Ok" => ResponseStatus::Ok,
        "ClientError" => ResponseStatus::ClientError,
        "ServerError" => ResponseStatus::ServerError,
        "Timeout" => ResponseStatus::Timeout,
        _ => ResponseStatus::Unknown,
    }
}

#[test]
fn corpus_http1_matches_deepflow() {
    let Some(dir) = corpus_dir() else { return };
    let dir = dir.join("http");
    let mut compared = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("http dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for result in entries
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "result"))
    {
        let text = std::fs::read_to_string(result).expect("result readable");
        let lines = parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", result.display()));
        let expected = expected_exchanges(&lines);
        if expected.is_empty() {
            continue; // HTTP/2 and gRPC captures: not HTTP/1.
        }
        let pcap = result.with_extension("pcap");
        let (records, stats) = replay(&pcap);
        let name = pcap
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        assert_eq!(
            records.len(),
            expected.len(),
            "{name}: one record per request; stats {stats:?}"
        );
        for (i, (r, e)) in records.iter().zip(&expected).enumerate() {
            let at = format!("{name} record {i}");
            assert_eq!(s(&r.request_type), e.method, "{at}: method");
            assert_eq!(s(&r.request_resource), e.path, "{at}: path");
            assert_eq!(s(&r.request_domain), e.host, "{at}: host");
            if let Some(ep) = &e.endpoint {
                assert_eq!(&s(&r.endpoint), ep, "{at}: endpoint");
            }
            assert_eq!(
                r.req_len.map(|n| n as i64),
                e.req_content_length,
                "{at}: request length"
            );
            if let Some(t) = &e.trace_id {
                assert_eq!(&s(&r.trace_id), t, "{at}: trace id");
            }
            if let Some(sp) = &e.span_id {
                assert_eq!(&s(&r.span_id), sp, "{at}: span id");
            }
            assert_eq!(s(&r.version), "1.1", "{at}: version");
            match &e.response {
                Some((code, status, resp_len)) => {
                    assert!(!r.unpaired, "{at}: paired with its response");
                    assert_eq!(
                        r.response_code.map(i64::from),
                        Some(*code),
                        "{at}: status code"
                    );
                    assert_eq!(r.response_status, status_name(status), "{at}: status class");
                    if let Some(n) = resp_len {
                        assert_eq!(
                            r.resp_len.map(|v| v as i64),
                            Some(*n),
                            "{at}: response length"
                        );
                    }
                    assert!(r.rrt_ns > 0, "{at}: rrt");
                }
                None => assert!(r.unpaired, "{at}: no response in the capture"),
            }
        }
        compared += 1;
    }
    assert_eq!(
        compared, 3,
        "client-ip, httpv1 and sw8 are the corpus's HTTP/1 captures"
    );
}

#[test]
fn result_reader_reads_every_http_file() {
    let Some(dir) = corpus_dir() else { return };
    for e in std::fs::read_dir(dir.join("http"))
        .expect("http dir")
        .flatten()
    {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "result") {
            let text = std::fs::read_to_string(&p).expect("readable");
            let lines = parse_file(&text).unwrap_or_else(|err| panic!("{}: {err}", p.display()));
            assert!(!lines.is_empty(), "{}", p.display());
            assert!(
                lines.iter().all(|l| l.verdict.is_some()),
                "{}: every line has its verdict",
                p.display()
            );
        }
    }
}
