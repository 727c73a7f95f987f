//! PostgreSQL captures of the shared DeepFlow corpus, compared with DeepFlow's parse.
#![allow(clippy::panic, clippy::unwrap_used)] // tests fail loudly

mod common;

use common::{corpus_dir, replay, s};
use l7tap::ResponseStatus;

#[test]
fn corpus_postgres_matches_deepflow() {
    let Some(dir) = corpus_dir() else { return };
    let text = std::fs::read_to_string(dir.join("postgre/pgsql-all.result")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l.split(" is_pgsql").next().unwrap()).unwrap())
        .collect();
    let requests: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|v| v["msg_type"] == "Request")
        .collect();
    let (records, stats) = replay(&dir.join("postgre/pgsql-all.pcap"));
    // Every statement DeepFlow read (Parse units) is there with its SQL.
    let parsed_sql: Vec<String> = records
        .iter()
        .filter(|r| s(&r.request_type) == "P")
        .map(|r| s(&r.request_resource))
        .collect();
    for q in requests.iter().filter(|q| q["request_type"] == "P") {
        let sql = q["request_resource"].as_str().unwrap();
        assert!(
            parsed_sql.iter().any(|p| p == sql),
            "{sql:?} in {parsed_sql:?}"
        );
    }
    // The Bind/Execute units are named E, as DeepFlow does, one for one.
    let e_ours = records.iter().filter(|r| s(&r.request_type) == "E").count();
    let e_theirs = requests.iter().filter(|q| q["request_type"] == "E").count();
    assert_eq!(e_ours, e_theirs);
    // tests/DIFFERENCES.md: two Parse units whose SQL spans several packets are read whole.
    assert_eq!(records.len(), requests.len() + 2, "{stats:?}");
    assert!(records.iter().all(|r| !r.unpaired
        && r.response_status == ResponseStatus::Ok
        && !r.response_result.is_empty()));
    assert_eq!(stats.get("parse_errors_postgresql"), 0);

    // The two small captures without .result: one simple query, one prepared statement.
    let (simple, _) = replay(&dir.join("postgre/simple_query.pcap"));
    assert_eq!(
        (s(&simple[0].request_type), s(&simple[0].request_resource)),
        ("Q".into(), "delete  from test;".into())
    );
    let (prepared, _) = replay(&dir.join("postgre/prepare_stat.pcap"));
    assert_eq!(s(&prepared[0].request_type), "P");
    assert!(s(&prepared[0].request_resource).starts_with("delete from test where id=$1"));
}
