//! Redis captures of the shared DeepFlow corpus, compared with DeepFlow's parse.
#![allow(clippy::panic, clippy::unwrap_used)] // tests fail loudly

mod common;

use common::deepflow_result::{parse_file, Value};
use common::{corpus_dir, replay, s};
use l7tap::ResponseStatus;

#[test]
fn corpus_redis_matches_deepflow() {
    let Some(dir) = corpus_dir() else { return };
    for name in ["redis", "redis-error"] {
        let text = std::fs::read_to_string(dir.join(format!("redis/{name}.result"))).unwrap();
        let lines = parse_file(&text).unwrap();
        let text_of = |v: &Value, k: &str| v.get(k).and_then(Value::text).unwrap_or("").to_string();
        // DeepFlow prints one line per packet; lines of packets it could not parse are empty.
        let mut requests: Vec<(String, String)> = lines
            .iter()
            .map(|l| {
                (
                    text_of(&l.record, "request"),
                    text_of(&l.record, "request_type"),
                )
            })
            .filter(|(r, _)| !r.is_empty())
            .collect();
        let mut replies: Vec<(String, String)> = lines
            .iter()
            .map(|l| {
                (
                    text_of(&l.record, "response_result"),
                    text_of(&l.record, "error"),
                )
            })
            .filter(|(t, _)| t != "Unknown")
            .collect();
        let (records, stats) = replay(&dir.join(format!("redis/{name}.pcap")));
        assert_eq!(records.len(), requests.len(), "{name}: {stats:?}");
        let mut got_req: Vec<(String, String)> = records
            .iter()
            .map(|r| (s(&r.request_resource), s(&r.request_type)))
            .collect();
        let mut got_rep: Vec<(String, String)> = records
            .iter()
            .map(|r| (s(&r.response_result), s(&r.response_exception)))
            .collect();
        // Flows interleave differently in a per-packet log and in paired records: compare sets.
        for v in [&mut requests, &mut replies, &mut got_req, &mut got_rep] {
            v.sort();
        }
        assert_eq!(got_req, requests, "{name}: commands");
        assert_eq!(got_rep, replies, "{name}: reply types and errors");
        for r in &records {
            assert!(!r.unpaired, "{name}: {:?} paired", s(&r.request_resource));
            assert_eq!(r.protocol, l7tap::Protocol::Redis);
            let want = if r.response_exception.is_empty() {
                ResponseStatus::Ok
            } else {
                ResponseStatus::ServerError
            };
            assert_eq!(r.response_status, want);
        }
    }
}
