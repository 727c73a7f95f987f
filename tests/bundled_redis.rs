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
