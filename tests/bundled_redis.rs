//! The bundled Redis capture (redis-server + redis-cli 7.0 on loopback, see
//! tests/captures/redis/record.sh), compared with what redis-cli printed.
#![allow(clippy::panic, clippy::unwrap_used)] // tests fail loudly

mod common;

use common::{capture, replay, s};
use l7tap::ResponseStatus;

#[test]
fn redis_cli_session() {
    let (records, stats) = replay(&capture("redis/redis.pcap"));
    let printed = std::fs::read_to_string(capture("redis/redis.cli.txt")).unwrap();
    // Blocks: "> COMMAND" then what redis-cli printed for it.
    let mut blocks: Vec<(String, Vec<String>)> = Vec::new();
    for line in printed.lines() {
        match line.strip_prefix("> ") {
            Some(cmd) => blocks.push((cmd.to_string(), Vec::new())),
            None => blocks.last_mut().unwrap().1.push(line.to_string()),
        }
    }
    let mut checked = 0;
    for (cmd, out) in &blocks {
        if cmd.starts_with("PIPE") {
            // "errors: 0, replies: 3": three commands written at once, answered in order.
            assert!(out.iter().any(|l| l == "errors: 0, replies: 3"), "{out:?}");
            let piped: Vec<&l7tap::L7Record> = records
                .iter()
                .filter(|r| {
                    ["SET p1 one", "GET p1", "EXISTS p1 nope"]
                        .contains(&s(&r.request_resource).as_str())
                })
                .collect();
            assert_eq!(piped.len(), 3);
            assert!(piped.iter().all(|r| r.flow == piped[0].flow
                && !r.unpaired
                && r.response_exception.is_empty()));
            checked += 3;
            continue;
        }
        let r = records
            .iter()
            .find(|r| s(&r.request_resource) == *cmd)
            .unwrap_or_else(|| panic!("{cmd}: {stats:?}"));
        assert_eq!(s(&r.request_type), cmd.split(' ').next().unwrap(), "{cmd}");
        assert!(!r.unpaired && r.rrt_ns > 0, "{cmd}");
        let text: Vec<&String> = out.iter().filter(|l| !l.is_empty()).collect();
        // The reply type, as redis-cli's plain output shows it.
        let (ty, status) = match text.as_slice() {
            [] => ("BulkString", ResponseStatus::Ok), // nil prints as an empty line
            [one] if one.as_str() == "OK" => ("SimpleString", ResponseStatus::Ok),
            [one] if one.chars().all(|c| c.is_ascii_digit()) => ("Integer", ResponseStatus::Ok),
            [one] if one.starts_with("WRONGTYPE") || one.starts_with("ERR") => {
                ("Error", ResponseStatus::ServerError)
            }
            [_] => ("BulkString", ResponseStatus::Ok),
            _ => ("Array", ResponseStatus::Ok),
        };
        assert_eq!(s(&r.response_result), ty, "{cmd}");
        assert_eq!(r.response_status, status, "{cmd}");
        if status == ResponseStatus::ServerError {
            assert_eq!(s(&r.response_exception), format!("-{}", text[0]), "{cmd}");
        }
        checked += 1;
    }
    assert_eq!(checked, 12);
    assert_eq!(stats.get("parse_errors_redis"), 0);
    assert_eq!(stats.get("records_unpaired"), 0);
}

/// One redis-cli session (tests/captures/redis/session.pcap): redis-cli's own COMMAND DOCS
/// reply (~170 KB, nested arrays and maps) is larger than max_message_bytes; it is reported
/// cut and skipped by walking RESP, and the user's commands still pair with their replies.
#[test]
fn session_after_a_reply_larger_than_the_buffer() {
    let (records, stats) = replay(&capture("redis/session.pcap"));
    let printed = std::fs::read_to_string(capture("redis/session.cli.txt")).unwrap();
    // redis-cli follows an error with an empty line.
    let printed: Vec<&str> = printed.lines().filter(|l| !l.is_empty()).collect();
    let commands = [
        "SET live:k hello",
        "GET live:k",
        "INCR live:k",
        "DEL live:k",
    ];
    assert_eq!(records.len(), 1 + commands.len(), "{records:#?}");
    assert_eq!(s(&records[0].request_resource), "COMMAND DOCS");
    assert!(records[0].truncated && !records[0].unpaired);
    assert_eq!(s(&records[0].response_result), "Array");
    for (i, cmd) in commands.iter().enumerate() {
        let r = &records[i + 1];
        assert_eq!(s(&r.request_resource), *cmd);
        assert!(!r.unpaired && !r.truncated, "{cmd}");
        match printed[i].strip_prefix("ERR ") {
            Some(e) => {
                assert_eq!(r.response_status, ResponseStatus::ServerError, "{cmd}");
                assert_eq!(s(&r.response_exception), format!("-ERR {e}"));
            }
            None => assert_eq!(r.response_status, ResponseStatus::Ok, "{cmd}"),
        }
    }
    assert_eq!(s(&records[2].response_result), "BulkString"); // "hello"
    assert_eq!(s(&records[4].response_result), "Integer"); // 1
    assert_eq!(stats.get("parse_errors_redis"), 0);
    assert!(stats.get("drop_truncated_bytes") > 100_000, "{stats:?}");
}
