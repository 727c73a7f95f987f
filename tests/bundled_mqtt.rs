//! The bundled MQTT capture (mosquitto broker, mosquitto_sub and mosquitto_pub on loopback,
//! QoS 0/1/2, MQTT 3.1.1 and 5; see tests/captures/mqtt/record.sh), compared with what the
//! subscriber printed and the client ids the recording used.
#![allow(clippy::panic, clippy::unwrap_used)] // tests fail loudly

mod common;

use common::{capture, replay, s};

#[test]
fn mosquitto_session() {
    let (records, stats) = replay(&capture("mqtt/mqtt.pcap"));
    assert_eq!(stats.get("records_unpaired"), 0, "{stats:?}");
    // CONNECTs: the ids given to mosquitto_sub/-pub in record.sh; pub-c spoke MQTT 5.
    let connects: Vec<(String, String)> = records
        .iter()
        .filter(|r| s(&r.request_type) == "CONNECT")
        .map(|r| (s(&r.request_domain), s(&r.version)))
        .collect();
    for (id, v) in [
        ("l7tap-sub", "3.1.1"),
        ("l7tap-pub-a", "3.1.1"),
        ("l7tap-pub-b", "3.1.1"),
        ("l7tap-pub-c", "5"),
    ] {
        assert!(
            connects.contains(&(id.to_string(), v.to_string())),
            "{id}: {connects:?}"
        );
    }
    assert!(records
        .iter()
        .filter(|r| s(&r.request_type) == "CONNECT")
        .all(|r| r.response_code == Some(0)));
    let sub = records
        .iter()
        .find(|r| s(&r.request_type) == "SUBSCRIBE")
        .unwrap();
    assert_eq!(s(&sub.request_resource), "plant/+/temp");
    assert_eq!(
        sub.response_code,
        Some(1),
        "granted QoS 1, as mosquitto_sub -q 1 asked"
    );
    // Every message the subscriber printed was published by a client and delivered by the
    // broker on the subscriber's connection.
    let printed = std::fs::read_to_string(capture("mqtt/mqtt.sub.txt")).unwrap();
    for line in printed.lines() {
        let topic = line.split(' ').next().unwrap();
        let publishes: Vec<_> = records
            .iter()
            .filter(|r| s(&r.request_type) == "PUBLISH" && s(&r.request_resource) == topic)
            .collect();
        assert_eq!(
            publishes.len(),
            2,
            "{topic}: from the publisher and to the subscriber"
        );
        assert!(
            publishes.iter().any(|r| r.flow == sub.flow),
            "{topic} delivered to the subscriber"
        );
    }
    // QoS 1 publish is acknowledged (paired with its PUBACK by packet id).
    let qos1 = records
        .iter()
        .find(|r| s(&r.request_resource) == "plant/b/temp" && r.flow != sub.flow)
        .unwrap();
    assert!(qos1.rrt_ns > 0 && qos1.request_id.is_some());
}
