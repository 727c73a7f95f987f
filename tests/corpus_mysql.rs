//! MySQL captures of the shared DeepFlow corpus, compared with DeepFlow's parse: every request
//! DeepFlow read (login, COM_QUERY, COM_INIT_DB, COM_STMT_PREPARE) is a record with the same
//! text and endpoint; errors carry DeepFlow's message. Differences: tests/DIFFERENCES.md.
#![allow(clippy::panic, clippy::unwrap_used)] // tests fail loudly

mod common;

use common::{corpus_dir, replay, s};
use l7tap::{Protocol, ResponseStatus};

#[test]
fn corpus_mysql_matches_deepflow() {
    let Some(dir) = corpus_dir() else { return };
    let mut files = 0;
    let mut compared = 0;
    let mut unpaired = 0;
    for entry in std::fs::read_dir(dir.join("mysql")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "result") {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l.split(" is_mysql").next().unwrap()).unwrap())
            .collect();
        let (records, stats) = replay(&path.with_extension("pcap"));
        let name = path.display();
        assert!(
            records.iter().all(|r| r.protocol == Protocol::Mysql),
            "{name}"
        );
        assert_eq!(stats.get("parse_errors_mysql"), 0, "{name}: {stats:?}");
        for (i, v) in lines.iter().enumerate() {
            if v["msg_type"] != "Request" {
                continue;
            }
            let Some(res) = v["request_resource"].as_str() else {
                continue;
            };
            let ty = v["request_type"].as_i64().unwrap();
            let ours = match ty {
                0 => "LOGIN",
                2 => "COM_INIT_DB",
                3 => "COM_QUERY",
                22 => "COM_STMT_PREPARE",
                _ => continue, // COM_STMT_EXECUTE: tests/DIFFERENCES.md
            };
            let r = records
                .iter()
                .find(|r| s(&r.request_type) == ours && s(&r.request_resource) == res)
                .unwrap_or_else(|| panic!("{name}: {ours} {res:?} in {records:#?}"));
            if let Some(ep) = v["endpoint"].as_str().filter(|_| ty != 0) {
                assert_eq!(s(&r.endpoint), ep, "{name}: {res}");
            }
            compared += 1;
            if r.unpaired {
                // The capture ends before the answer (several captures hold many flows; their
                // last requests are unanswered): nothing to compare.
                unpaired += 1;
                continue;
            }
            // The response DeepFlow saw next (its lines are in capture order).
            let Some(resp) = lines[i + 1..].iter().find(|v| v["msg_type"] == "Response") else {
                continue;
            };
            match resp["response_status"].as_str().unwrap() {
                "ok" => assert_eq!(r.response_status, ResponseStatus::Ok, "{name}: {res}"),
                _ => {
                    assert_ne!(r.response_status, ResponseStatus::Ok, "{name}: {res}");
                    assert_eq!(
                        s(&r.response_exception),
                        resp["response_execption"].as_str().unwrap(),
                        "{name}: {res}"
                    );
                }
            }
        }
    }
    assert!(
        files >= 16 && compared >= 50,
        "{files} files, {compared} requests"
    );
    assert!(
        unpaired * 10 <= compared,
        "{unpaired} of {compared} unanswered"
    );

    // The capture without a .result (six pooled connections, 145 s): tshark 4.0
    // (`tshark -d tcp.port==20130,mysql -Y mysql.command`) counts 260 COM_PING and 130
    // COM_QUERY, and no error packets.
    let (records, stats) = replay(&dir.join("mysql/171-mysql.pcap"));
    let count = |t: &str| records.iter().filter(|r| s(&r.request_type) == t).count();
    assert_eq!(
        (count("COM_PING"), count("COM_QUERY")),
        (260, 130),
        "{stats:?}"
    );
    assert!(records
        .iter()
        .all(|r| !r.unpaired && r.response_status == ResponseStatus::Ok));
    assert_eq!(stats.get("parse_errors_mysql"), 0);

    // Prepared statements: the execute shows the SQL its statement id was prepared with.
    let (records, _) = replay(&dir.join("mysql/mysql-statement.pcap"));
    let exec = records
        .iter()
        .find(|r| s(&r.request_type) == "COM_STMT_EXECUTE")
        .unwrap();
    assert_eq!(
        s(&exec.request_resource),
        "SELECT * FROM `controller` WHERE name = ?"
    );
    assert_eq!(s(&exec.endpoint), "SELECT controller");
}
