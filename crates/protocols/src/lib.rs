//! l7tap-protocols: one module per application protocol.
//!
//! Each protocol implements [`l7tap_core::Parser`]: a cheap inference `check`, a zero-copy nom
//! parser that frames and reads one message, and how its messages pair. Shared parsing helpers
//! (byte classes, number and text readers) live in [`helpers`], never copied into a protocol.
//!
//! This crate knows nothing about capture, plugins or sinks.
#![deny(missing_docs)]

pub mod dns;
pub mod helpers;
pub mod http1;
pub mod http2;
pub mod kafka;
pub mod mqtt;
pub mod mysql;
pub mod postgres;
pub mod redis;

use l7tap_core::{Parser, Protocol};
use std::sync::Arc;

pub use http1::{Http1Config, Http1Parser, TraceHeader, TraceHeaderFormat};

/// Every built-in parser, in inference priority order, with default settings.
pub fn default_parsers() -> Vec<Arc<dyn Parser>> {
    vec![
        // Before HTTP/1: the HTTP/2 preface ("PRI * HTTP/2.0") also reads as an HTTP/1 line.
        Arc::new(http2::Http2Parser::default()),
        Arc::new(Http1Parser::default()),
        Arc::new(redis::RedisParser),
        Arc::new(mqtt::MqttParser),
        Arc::new(postgres::PostgresParser),
        Arc::new(mysql::MysqlParser),
        Arc::new(kafka::KafkaParser),
        Arc::new(dns::DnsParser),
    ]
}

/// The built-in parsers for the named protocols (unknown names are returned as errors).
pub fn parsers_for(protocols: &[Protocol]) -> Result<Vec<Arc<dyn Parser>>, String> {
    let all = default_parsers();
    protocols
        .iter()
        .map(|p| {
            // gRPC is carried by HTTP/2: one parser reports both.
            let want = if *p == Protocol::Grpc {
                Protocol::Http2
            } else {
                p.clone()
            };
            all.iter()
                .find(|q| q.protocol() == want)
                .cloned()
                .ok_or_else(|| format!("protocol {} has no built-in parser yet", p.name()))
        })
        .collect()
}

/// Names of the protocols with a built-in parser (gRPC is HTTP/2's), as `--protocol` takes
/// them.
pub fn builtin_protocol_names() -> Vec<String> {
    let mut v: Vec<String> = default_parsers()
        .iter()
        .map(|p| p.protocol().name().to_string())
        .collect();
    if let Some(i) = v.iter().position(|n| n == "http2") {
        v.insert(i + 1, "grpc".into());
    }
    v
}

#[cfg(test)]
mod names {
    #[test]
    fn every_builtin_parser_is_named_and_each_name_parses() {
        let names = super::builtin_protocol_names();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [
                "dns",
                "grpc",
                "http1",
                "http2",
                "kafka",
                "mqtt",
                "mysql",
                "postgresql",
                "redis"
            ]
        );
        for n in &names {
            let p = l7tap_core::Protocol::from_name(n).expect(n);
            assert!(super::parsers_for(&[p]).is_ok(), "{n}");
        }
    }
}
