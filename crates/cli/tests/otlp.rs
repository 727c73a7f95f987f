//! OTLP/HTTP export end to end: `l7tap replay --output otlp=...` sends the bundled keep-alive
//! capture's records to a receiver that decodes them with the official protobuf definitions
//! (PyPI `opentelemetry-proto`, tests/otlp/receiver.py); the attributes must say what nginx
//! logged. Skips (with a reason) when Python lacks opentelemetry-proto, unless
//! L7TAP_REQUIRE_LIVE=1.
#![allow(clippy::panic, clippy::unwrap_used)] // tests fail loudly

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn replay_exports_logs_and_spans_with_semantic_conventions() {
    let has_proto = Command::new("python3")
        .args([
            "-c",
            "import opentelemetry.proto.collector.logs.v1.logs_service_pb2",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !has_proto {
        assert!(
            std::env::var("L7TAP_REQUIRE_LIVE")
                .map(|v| v != "1")
                .unwrap_or(true),
            "python3 needs opentelemetry-proto (pip install opentelemetry-proto)"
        );
        eprintln!("SKIP: python3 has no opentelemetry-proto");
        return;
    }
    let port = 14318u16;
    let mut receiver = Command::new("python3")
        .arg(root().join("tests/otlp/receiver.py"))
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(receiver.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let st = Command::new(env!("CARGO_BIN_EXE_l7tap"))
        .args([
            "replay",
            root()
                .join("tests/captures/keepalive.pcap")
                .to_str()
                .unwrap(),
        ])
        .arg(format!("--output=otlp=http://127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let stderr = String::from_utf8_lossy(&st.stderr);
    assert!(stderr.contains("otlp_exported=5"), "{stderr}");
    receiver.kill().unwrap();
    let _ = receiver.wait();
    let got: Vec<serde_json::Value> = lines
        .map_while(Result::ok)
        .map(|l| serde_json::from_str(&l).unwrap())
        .collect();
    let log = std::fs::read_to_string(root().join("tests/captures/keepalive.nginx.jsonl")).unwrap();
    let nginx: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for signal in ["log", "span"] {
        let items: Vec<&serde_json::Value> = got.iter().filter(|g| g["signal"] == signal).collect();
        assert_eq!(items.len(), nginx.len(), "{signal}: {got:#?}");
        for (g, n) in items.iter().zip(&nginx) {
            let a = &g["attributes"];
            assert_eq!(a["http.request.method"], n["method"], "{g}");
            assert_eq!(a["url.path"], n["uri"], "{g}");
            assert_eq!(
                a["http.response.status_code"].as_i64(),
                n["status"].as_i64(),
                "{g}"
            );
            assert_eq!(a["server.port"], 18080, "{g}");
            assert_eq!(a["network.transport"], "tcp");
            // The request's W3C trace context becomes the span's trace.
            if let Some(tp) = n["traceparent"].as_str().filter(|t| !t.is_empty()) {
                assert_eq!(g["trace_id"], tp.split('-').nth(1).unwrap(), "{g}");
                if signal == "span" {
                    assert_eq!(g["parent_span_id"], tp.split('-').nth(2).unwrap());
                }
            }
            if signal == "span" {
                assert!(g["duration_ns"].as_u64().unwrap() > 0);
                // 5xx -> ERROR (2), else UNSET (0): the conventions for HTTP client spans
                // also mark 4xx as errors.
                let status = n["status"].as_i64().unwrap();
                assert_eq!(g["status"], if status >= 400 { 2 } else { 0 }, "{g}");
            }
        }
    }
}
