//! The bundled PostgreSQL captures (psql 15 and pgbench against a PostgreSQL 15 server on
//! loopback, see tests/captures/postgres/record.sh), compared with what psql and pgbench
//! printed.
#![allow(clippy::panic, clippy::unwrap_used)] // tests fail loudly

mod common;

use common::{capture, replay, s};
use l7tap::ResponseStatus;

#[test]
fn psql_session_simple_queries_tags_and_errors() {
    let (records, stats) = replay(&capture("postgres/psql.pcap"));
    let sql = std::fs::read_to_string(capture("postgres/session.sql")).unwrap();
    let printed = std::fs::read_to_string(capture("postgres/psql.txt")).unwrap();
    let queries: Vec<&l7tap::L7Record> = records.iter().collect();
    common::check_psql_session(&queries, &sql, &printed, &format!("{stats:?}"));
    let startup = &records[0];
    assert_eq!(s(&startup.request_type), "StartupMessage");
    assert_eq!(s(&startup.request_domain), "shop");
    assert_eq!(stats.get("parse_errors_postgresql"), 0);
}

#[test]
fn pgbench_extended_protocol() {
    let (records, stats) = replay(&capture("postgres/pgbench.pcap"));
    let report = std::fs::read_to_string(capture("postgres/pgbench.txt")).unwrap();
    let done: usize = report
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|v| v.split('/').next())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(done, 5);
    // pgbench's built-in select-only script, one Parse/Bind/Execute/Sync unit per transaction.
    let selects: Vec<&l7tap::L7Record> = records
        .iter()
        .filter(|r| {
            s(&r.request_type) == "P"
                && s(&r.request_resource) == "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"
        })
        .collect();
    assert_eq!(selects.len(), done, "{records:#?}");
    assert!(selects.iter().all(|r| !r.unpaired
        && r.response_status == ResponseStatus::Ok
        && s(&r.response_result) == "SELECT 1"));
    assert_eq!(stats.get("parse_errors_postgresql"), 0);
}
