//! The bundled PostgreSQL captures (psql 15 and pgbench against a PostgreSQL 15 server on
//! loopback, see tests/captures/postgres/record.sh), compared with what psql and pgbench
//! printed.
#![allow(clippy::panic, clippy::unwrap_used)] // tests fail loudly

mod common;

use common::{capture, replay, s};
use l7tap::{Protocol, ResponseStatus};

#[test]
fn psql_session_simple_queries_tags_and_errors() {
    let (records, stats) = replay(&capture("postgres/psql.pcap"));
    let sql = std::fs::read_to_string(capture("postgres/session.sql")).unwrap();
    let printed = std::fs::read_to_string(capture("postgres/psql.txt")).unwrap();
    // psql -a echoes each statement, then prints its command tag, its rows and "(N rows)",
    // or "psql:<file>:<line>: ERROR:  <message>".
    let lines: Vec<&str> = printed.lines().collect();
    let queries: Vec<&l7tap::L7Record> = records
        .iter()
        .filter(|r| s(&r.request_type) == "Q")
        .collect();
    let statements: Vec<&str> = sql.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(queries.len(), statements.len(), "{stats:?}");
    for (r, stmt) in queries.iter().zip(&statements) {
        assert_eq!(r.protocol, Protocol::Postgresql);
        assert_eq!(s(&r.request_resource), *stmt);
        assert!(!r.unpaired && r.rrt_ns > 0, "{stmt}");
        let at = lines.iter().position(|l| l == stmt).unwrap();
        let next = lines[at + 1];
        if let Some(e) = next.split(" ERROR:  ").nth(1) {
            assert_eq!(s(&r.response_exception), e, "{stmt}");
            // 23505 unique_violation, 42P01 undefined_table: the client's mistakes.
            assert_eq!(r.response_status, ResponseStatus::ClientError, "{stmt}");
        } else if stmt.starts_with("SELECT") {
            let rows = lines[at..]
                .iter()
                .find_map(|l| l.strip_prefix('(').and_then(|l| l.strip_suffix(" rows)")))
                .unwrap();
            assert_eq!(s(&r.response_result), format!("SELECT {rows}"), "{stmt}");
            assert_eq!(r.response_status, ResponseStatus::Ok);
        } else {
            assert_eq!(s(&r.response_result), next, "{stmt}");
            assert_eq!(r.response_status, ResponseStatus::Ok);
        }
    }
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
