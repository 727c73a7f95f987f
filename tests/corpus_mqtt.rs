//! MQTT captures of the shared DeepFlow corpus, compared with DeepFlow's parse.
#![allow(clippy::panic, clippy::unwrap_used)] // tests fail loudly

mod common;

use common::deepflow_result::{parse_file, Value};
use common::{corpus_dir, replay, s};

#[test]
fn corpus_mqtt_matches_deepflow() {
    let Some(dir) = corpus_dir() else { return };
    let mut compared = 0;
    for name in ["mqtt_connect", "mqtt_pub", "mqtt_roundtrip"] {
        let text = std::fs::read_to_string(dir.join(format!("mqtt/{name}.result"))).unwrap();
        let lines = parse_file(&text).unwrap();
        let (records, stats) = replay(&dir.join(format!("mqtt/{name}.pcap")));
        for l in &lines {
            let r = &l.record;
            // Publish prints as a struct (`Publish { dup, qos, retain }`), the others as atoms.
            let ty = match r.get("pkt_type") {
                Some(Value::Struct(n, _)) => n.to_ascii_uppercase(),
                Some(v) => v.text().unwrap_or("").to_ascii_uppercase(),
                None => String::new(),
            };
            let at = format!("{name} {ty}");
            match ty.as_str() {
                "CONNECT" => {
                    let rec = records
                        .iter()
                        .find(|x| s(&x.request_type) == "CONNECT")
                        .unwrap_or_else(|| panic!("{at}: {stats:?}"));
                    assert_eq!(
                        Some(s(&rec.request_domain)),
                        r.opt_text("client_id"),
                        "{at} client id"
                    );
                    assert_eq!(s(&rec.version), "3.1.1", "{at}: version 4 is MQTT 3.1.1");
                    compared += 1;
                }
                "CONNACK" => {
                    let rec = records
                        .iter()
                        .find(|x| s(&x.request_type) == "CONNECT")
                        .unwrap();
                    assert_eq!(
                        rec.response_code.map(i64::from),
                        r.opt_int("code"),
                        "{at} code"
                    );
                    assert!(!rec.unpaired, "{at}");
                    compared += 1;
                }
                "SUBSCRIBE" | "UNSUBSCRIBE" => {
                    let first = match r.get("subscribe_topics").and_then(Value::some) {
                        Some(Value::List(ts)) => ts
                            .first()
                            .and_then(|t| t.get("name"))
                            .and_then(Value::text)
                            .unwrap()
                            .to_string(),
                        _ => panic!("{at}: no topics"),
                    };
                    assert!(
                        records.iter().any(|x| s(&x.request_type) == ty
                            && s(&x.request_resource).split(',').next() == Some(first.as_str())),
                        "{at} {first}"
                    );
                    compared += 1;
                }
                "PUBLISH" if r.opt_int("req_msg_size").is_some() && name != "mqtt_roundtrip" => {
                    let topic = r.opt_text("publish_topic").unwrap();
                    assert!(
                        records
                            .iter()
                            .any(|x| s(&x.request_type) == "PUBLISH"
                                && s(&x.request_resource) == topic),
                        "{at} {topic}"
                    );
                    compared += 1;
                }
                "PINGREQ" => {
                    assert!(
                        records
                            .iter()
                            .any(|x| s(&x.request_type) == "PINGREQ" && !x.unpaired),
                        "{at}"
                    );
                    compared += 1;
                }
                _ => {}
            }
        }
    }
    assert_eq!(
        compared, 12,
        "connect 2 + pub 4 + roundtrip 6 (its publishes run over capture gaps)"
    );
}
