//! Kafka captures of the shared DeepFlow corpus, compared with DeepFlow's parse: api (command),
//! version, correlation id, client id, topic or group, `<topic>-<partition>` endpoint, error
//! code and status class.
#![allow(clippy::panic, clippy::unwrap_used)] // tests fail loudly

mod common;

use common::deepflow_result::{parse_file, Value};
use common::{corpus_dir, replay, s};
use l7tap::{Protocol, ResponseStatus};

#[test]
fn corpus_kafka_matches_deepflow() {
    let Some(dir) = corpus_dir() else { return };
    let mut compared = 0;
    for entry in std::fs::read_dir(dir.join("kafka")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "result") {
            continue;
        }
        let name = path.display().to_string();
        let lines = parse_file(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let text = |v: &Value, k: &str| v.opt_text(k).unwrap_or_default();
        let int = |v: &Value, k: &str| v.opt_int(k);
        let req = lines
            .iter()
            .map(|l| &l.record)
            .find(|r| text(r, "msg_type") == "Request")
            .unwrap();
        let resp = lines
            .iter()
            .map(|l| &l.record)
            .find(|r| text(r, "msg_type") == "Response")
            .unwrap();
        let (records, stats) = replay(&path.with_extension("pcap"));
        assert_eq!(records.len(), 1, "{name}: {stats:?}");
        let r = &records[0];
        assert_eq!(r.protocol, Protocol::Kafka);
        assert!(!r.unpaired, "{name}");
        assert_eq!(s(&r.request_type), text(req, "command"), "{name}");
        assert_eq!(
            s(&r.version),
            int(req, "api_version").unwrap().to_string(),
            "{name}"
        );
        assert_eq!(
            r.request_id.map(|i| i as i64),
            int(req, "correlation_id"),
            "{name}"
        );
        assert_eq!(s(&r.request_domain), text(req, "client_id"), "{name}");
        let target = match text(req, "topic_name").as_str() {
            "" => text(req, "group_id"),
            t => t.to_string(),
        };
        assert_eq!(s(&r.request_resource), target, "{name}");
        assert_eq!(s(&r.endpoint), text(req, "endpoint"), "{name}");
        assert_eq!(
            r.response_code.map(i64::from),
            int(resp, "status_code"),
            "{name}"
        );
        let status = match text(resp, "status").as_str() {
            "Ok" => ResponseStatus::Ok,
            "ServerError" => ResponseStatus::ServerError,
            "ClientError" => ResponseStatus::ClientError,
            other => panic!("{name}: status {other}"),
        };
        assert_eq!(r.response_status, status, "{name}");
        // Produce's base offset and Fetch's fetch offset, as DeepFlow's resource has them.
        let resource = text(resp, "resource") + &text(req, "resource");
        if let Some(off) = resource
            .rsplit(':')
            .next()
            .filter(|_| resource.contains(':'))
        {
            assert_eq!(s(&r.response_result), format!("offset={off}"), "{name}");
        }
        assert_eq!(stats.get("parse_errors_kafka"), 0, "{name}");
        compared += 1;
    }
    assert_eq!(compared, 7);
}
