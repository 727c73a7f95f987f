//! The example plugins on real captures: the seed's HTTP status rewrite on the bundled nginx
//! capture whose 200 response says `{"OPT_STATUS":"FAILED",...}`.
#![allow(clippy::panic, clippy::unwrap_used)] // tests fail loudly

mod common;

use common::{capture, plugin, s};
use l7tap::wasm::{stderr_log, Hook};
use l7tap::{PluginHost, PluginLimits, ResponseStatus};

/// The names of the plugins that changed a record, in order.
fn plugin_names(r: &l7tap::L7Record) -> Vec<String> {
    r.plugins.iter().map(|p| p.to_string()).collect()
}

/// A host with these example plugins loaded, in order.
fn host_with(names: &[&str]) -> (PluginHost, Vec<std::sync::Arc<l7tap::wasm::Plugin>>) {
    let host = PluginHost::new(PluginLimits::default(), stderr_log());
    let loaded = names
        .iter()
        .map(|n| host.load(n, &std::fs::read(plugin(n)).unwrap()).unwrap())
        .collect();
    (host, loaded)
}

/// The seed's second case on a real gRPC capture (grpcio client and server over h2c,
/// tests/captures/grpc/record.sh): the request's protobuf field 1235 becomes the trace id and
/// the attribute `business_id`, the reply's field 1235 the attribute `msg`. Expected values
/// are what the grpcio client printed (business id sent, status code, reply msg or details).
#[test]
fn grpc_business_id_on_the_order_service_capture() {
    let (host, loaded) = host_with(&["grpc_business_id"]);
    assert_eq!(loaded[0].hook_names(), vec!["http_req", "http_resp"]);
    let (records, stats) =
        common::replay_with(&capture("grpc/grpc.pcap"), |b| b.plugins(host.clone()));
    let printed = std::fs::read_to_string(capture("grpc/grpc.client.txt")).unwrap();
    let calls: Vec<(String, i32, String)> = printed
        .lines()
        .map(|l| {
            let mut f = l.splitn(3, ' ');
            (
                f.next().unwrap().to_string(),
                f.next().unwrap().parse().unwrap(),
                f.next().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(records.len(), calls.len(), "{records:#?}\n{stats:?}");
    for (r, (bid, code, text)) in records.iter().zip(&calls) {
        assert_eq!(r.protocol, l7tap::Protocol::Grpc);
        assert_eq!(s(&r.request_resource), "/order.OrderService/Get");
        assert_eq!(s(&r.endpoint), "/order.OrderService/Get");
        assert_eq!(r.response_code, Some(*code));
        assert_eq!(s(&r.trace_id), *bid);
        assert_eq!(
            r.attribute("business_id").map(s).as_deref(),
            Some(bid.as_str())
        );
        assert_eq!(plugin_names(r), vec!["grpc_business_id"]);
        if *code == 0 {
            assert_eq!(r.response_status, ResponseStatus::Ok);
            assert_eq!(r.attribute("msg").map(s).as_deref(), Some(text.as_str()));
        } else {
            // NOT_FOUND: no reply message, the details are the exception.
            assert_eq!(r.response_status, ResponseStatus::ClientError);
            assert_eq!(s(&r.response_exception), *text);
            assert!(r.attribute("msg").is_none());
        }
    }
    let m = host.metrics();
    assert!(
        m.iter()
            .all(|(_, c)| c.iter().all(|(k, v)| !k.starts_with("fail") || *v == 0)),
        "{m:?}"
    );
}

#[test]
fn status_rewrite_on_the_opt_status_capture() {
    let (host, loaded) = host_with(&["http_status_rewrite"]);
    let p = &loaded[0];
    assert_eq!(p.hook_names(), vec!["http_resp"]);
    let (records, _) =
        common::replay_with(&capture("opt_status.pcap"), |b| b.plugins(host.clone()));
    assert_eq!(records.len(), 2);
    // The body nginx returned (tests/captures/nginx.conf) says FAILED: rewritten.
    let failed = &records[0];
    assert_eq!(s(&failed.request_resource), "/api/order");
    assert_eq!(failed.response_code, Some(500));
    assert_eq!(failed.response_status, ResponseStatus::ServerError);
    assert_eq!(
        s(&failed.response_result),
        r#"{"OPT_STATUS":"FAILED","DESCRIPTION":"order 1001 not found in inventory"}"#
    );
    assert_eq!(
        failed.attribute("op_stat").map(s),
        Some("FAILED".to_string())
    );
    assert_eq!(plugin_names(failed), vec!["http_status_rewrite"]);
    // SUCCESS: untouched.
    let ok = &records[1];
    assert_eq!(ok.response_code, Some(200));
    assert_eq!(ok.response_status, ResponseStatus::Ok);
    assert!(ok.plugins.is_empty() && ok.response_result.is_empty());
    assert_eq!(p.metrics.calls(Hook::HttpResp), 2);
    assert_eq!(
        p.metrics
            .records_modified
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

/// The SDK's text conversion (a SIMD ASCII check in Wasm, then UTF-8 validation) on bodies
/// long enough for its vector loop: the result text must be the body as UTF-8 says, with
/// each invalid byte replaced by U+FFFD (the Unicode standard's "maximal subpart" rule,
/// which std's lossy conversion implements), wherever the non-ASCII byte falls.
#[test]
fn status_rewrite_result_text_is_the_body_as_utf8() {
    let (host, _) = host_with(&["http_status_rewrite"]);
    for at in [0usize, 15, 16, 63, 64, 100, 190] {
        for (insert, name) in [("\u{e9}".as_bytes(), "utf-8"), (&b"\xff"[..], "invalid")] {
            let mut body = br#"{"OPT_STATUS":"FAILED","PAD":""#.to_vec();
            while body.len() < 200 {
                body.push(b'x');
            }
            let at = body.len() - 10 - at.min(body.len() - 40);
            body.splice(at..at, insert.iter().copied());
            body.extend_from_slice(b"\"}");
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let mut rec = l7tap::L7Record {
                flow: l7tap::FlowKey::tcp(
                    "10.0.0.1:1000".parse().unwrap(),
                    "10.0.0.2:80".parse().unwrap(),
                ),
                protocol: l7tap::Protocol::Http1,
                response_code: Some(200),
                response_status: ResponseStatus::Ok,
                response_payload: [head.as_bytes(), &body].concat().into(),
                ..Default::default()
            };
            assert!(host.on_http_record(&mut rec), "{name} at {at}");
            // Byte for byte: an invalid byte passed through would be caught here.
            assert_eq!(
                &rec.response_result[..],
                String::from_utf8_lossy(&body).as_bytes(),
                "{name} byte at {at}"
            );
        }
    }
}

#[test]
fn status_rewrite_leaves_other_traffic_alone() {
    let (host, _) = host_with(&["http_status_rewrite"]);
    let (with, _) = common::replay_with(&capture("keepalive.pcap"), |b| b.plugins(host.clone()));
    let (without, _) = common::replay(&capture("keepalive.pcap"));
    let key = |r: &l7tap::L7Record| (s(&r.request_resource), r.response_code, r.response_status);
    assert_eq!(
        with.iter().map(key).collect::<Vec<_>>(),
        without.iter().map(key).collect::<Vec<_>>()
    );
    assert!(with.iter().all(|r| r.plugins.is_empty()));
}

#[test]
fn kv_protocol_plugin_claims_and_parses_kvp() {
    let (host, loaded) = host_with(&["kv_protocol"]);
    let p = &loaded[0];
    assert_eq!(p.hook_names(), vec!["payload_parse"]);
    let root = common::root();
    let (records, stats) = common::replay_with(&root.join("tests/kvp/kvp.pcap"), |b| {
        b.plugins(host.clone())
    });
    // What the KVP client printed: "<id> <KIND> <key> -> <status> <value>".
    let expected = std::fs::read_to_string(root.join("tests/kvp/kvp.client.txt")).unwrap();
    let lines: Vec<&str> = expected.lines().collect();
    assert_eq!(records.len(), lines.len(), "{stats:?}");
    for (r, line) in records.iter().zip(&lines) {
        let (left, right) = line.split_once(" -> ").unwrap();
        let mut l = left.split(' ');
        let (id, kind, key) = (l.next().unwrap(), l.next().unwrap(), l.next().unwrap());
        let (status, value) = right.split_once(' ').unwrap();
        assert_eq!(r.protocol, l7tap::Protocol::Custom("kvp".into()), "{line}");
        assert_eq!(r.request_id, Some(id.parse().unwrap()), "{line}");
        assert_eq!(s(&r.request_type), kind, "{line}");
        assert_eq!(s(&r.request_resource), key, "{line}");
        assert_eq!(r.response_code, Some(status.parse().unwrap()), "{line}");
        // PROTOCOL.md: 0 OK, 1 NOT_FOUND (client's fault), 2 ERROR (server's).
        let class = match status {
            "0" => ResponseStatus::Ok,
            "1" => ResponseStatus::ClientError,
            _ => ResponseStatus::ServerError,
        };
        assert_eq!(r.response_status, class, "{line}");
        assert_eq!(s(&r.response_result), value, "{line}");
        assert!(!r.unpaired && r.rrt_ns > 0, "{line}");
    }
    let json = l7tap::json::to_value(&records[0]);
    assert_eq!(json["protocol"], "kvp");
    assert_eq!(json["custom"], true);
}

#[test]
fn c_plugin_adds_the_user_agent() {
    let (host, loaded) = host_with(&["user_agent_c"]);
    let p = &loaded[0];
    assert_eq!(p.hook_names(), vec!["http_req"]);
    let (records, _) = common::replay_with(&capture("keepalive.pcap"), |b| b.plugins(host.clone()));
    assert_eq!(records.len(), 5);
    for r in &records {
        // The client of the recording was curl 7.88.1 (tests/captures/README.md).
        assert_eq!(
            r.attribute("user_agent").map(s),
            Some("curl/7.88.1".to_string())
        );
        assert_eq!(plugin_names(r), vec!["user_agent_c"]);
    }
}

#[test]
fn plugins_in_three_languages_together() {
    let (host, _) = host_with(&["user_agent_c", "http_status_rewrite", "kv_protocol"]);
    let (records, _) =
        common::replay_with(&capture("opt_status.pcap"), |b| b.plugins(host.clone()));
    let failed = &records[0];
    assert_eq!(failed.response_code, Some(500));
    assert_eq!(
        failed.attribute("user_agent").map(s),
        Some("curl/7.88.1".to_string())
    );
    assert_eq!(
        failed.attribute("op_stat").map(s),
        Some("FAILED".to_string())
    );
    // Request hook first, then response hook; the KVP plugin never touches HTTP.
    assert_eq!(
        plugin_names(failed),
        vec!["user_agent_c", "http_status_rewrite"]
    );
    assert_eq!(
        host.get("kv_protocol")
            .unwrap()
            .metrics
            .calls(Hook::CheckPayload),
        0,
        "HTTP flows never reach plugin protocols"
    );
}

#[test]
fn hostile_plugin_in_the_engine_does_not_disturb_other_records() {
    // An endless loop on every response, loaded before the real plugin.
    let looping = l7tap::wasm::wat_to_wasm(
        br#"(module (memory (export "memory") 1)
          (data (i32.const 16) "\40\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00")
          (func (export "_start")) (func (export "get_hook_bitmap") (result i32) i32.const 16)
          (func (export "check_payload") (result i32) i32.const 0) (func (export "parse_payload") (result i32) i32.const 0)
          (func (export "on_http_req") (result i32) i32.const 0)
          (func (export "on_http_resp") (result i32) (loop $l br $l) i32.const 0))"#,
    )
    .unwrap();
    let limits = PluginLimits {
        instructions_per_call: 200_000,
        max_consecutive_failures: 100,
        ..Default::default()
    };
    let host = PluginHost::new(
        limits,
        std::sync::Arc::new(|_: &str, _: l7tap::wasm::LogLevel, _: &str| {}),
    );
    let bad = host.load("loop", &looping).unwrap();
    host.load(
        "http_status_rewrite",
        &std::fs::read(plugin("http_status_rewrite")).unwrap(),
    )
    .unwrap();
    let (records, _) = common::replay_with(&capture("opt_status.pcap"), |b| {
        b.plugins(host.clone()).workers(2)
    });
    let (plain, _) = common::replay_with(&capture("keepalive.pcap"), |b| b.plugins(host.clone()));
    assert_eq!(records.len(), 2);
    let failed = records
        .iter()
        .find(|r| s(&r.request_resource) == "/api/order")
        .unwrap();
    assert_eq!(
        failed.response_code,
        Some(500),
        "the real plugin still ran after the loop was stopped"
    );
    assert_eq!(plain.len(), 5);
    assert_eq!(
        plain[2].response_code,
        Some(404),
        "other flows' records are correct"
    );
    // 2 responses + 5 responses, each stopped by the budget.
    assert_eq!(bad.metrics.failures(l7tap::wasm::FailureKind::Budget), 7);
    assert_eq!(bad.metrics.calls(Hook::HttpResp), 7);
}
