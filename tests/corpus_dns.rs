//! DNS captures of the shared DeepFlow corpus (UDP and TCP), compared with DeepFlow's parse.
#![allow(clippy::panic, clippy::unwrap_used)] // tests fail loudly

mod common;

use common::{corpus_dir, replay, s};
use l7tap::ResponseStatus;

#[test]
fn corpus_dns_matches_deepflow() {
    let Some(dir) = corpus_dir() else { return };
    let mut compared = 0;
    for name in ["a-and-ns", "dns", "not-handled-qtype", "nxdomain"] {
        let text = std::fs::read_to_string(dir.join(format!("dns/{name}.result"))).unwrap();
        let (records, stats) = replay(&dir.join(format!("dns/{name}.pcap")));
        // Each line: a JSON object, then " headers_offset: N is_dns: ...".
        let lines: Vec<serde_json::Value> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l.split(" headers_offset:").next().unwrap()).unwrap())
            .collect();
        let responses: Vec<&serde_json::Value> = lines
            .iter()
            .filter(|v| v["msg_type"] == "Response")
            .collect();
        assert_eq!(
            records.len(),
            responses.len(),
            "{name}: one record per answered query; {stats:?}"
        );
        for e in responses {
            let id = e["request_id"].as_u64().unwrap();
            let r = records
                .iter()
                .find(|r| r.request_id == Some(id))
                .unwrap_or_else(|| panic!("{name}: id {id}"));
            let at = format!("{name} id {id}");
            assert_eq!(
                s(&r.request_type),
                e["request_type"].as_str().unwrap(),
                "{at}"
            );
            assert_eq!(
                s(&r.request_resource),
                e["request_resource"].as_str().unwrap(),
                "{at}"
            );
            assert_eq!(
                r.response_code.map(i64::from),
                e["response_code"].as_i64(),
                "{at}"
            );
            let status = match e["response_status"].as_str().unwrap() {
                "ok" => ResponseStatus::Ok,
                "client_error" => ResponseStatus::ClientError,
                "server_error" => ResponseStatus::ServerError,
                _ => ResponseStatus::Unknown,
            };
            // tests/DIFFERENCES.md: DeepFlow calls NXDOMAIN of a Kubernetes search-path name ok.
            if (name, id) != ("nxdomain", 28756) {
                assert_eq!(r.response_status, status, "{at}");
            } else {
                assert_eq!(r.response_status, ResponseStatus::ClientError, "{at}");
            }
            assert_eq!(
                s(&r.response_result),
                e["response_result"].as_str().unwrap_or(""),
                "{at}"
            );
            assert!(!r.unpaired && r.rrt_ns > 0, "{at}");
            assert_eq!(r.protocol, l7tap::Protocol::Dns, "{at}");
            compared += 1;
        }
    }
    assert_eq!(compared, 8, "2 + 2 + 1 + 3 answered queries");
}
