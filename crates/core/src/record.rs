//! The enriched L7 record: the contract with every consumer.

use crate::{FlowKey, ProcessInfo};
use bytes::Bytes;
use std::sync::Arc;

/// An application protocol l7tap can recognise.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// Not (yet) identified.
    #[default]
    Unknown,
    /// HTTP/1.0 and HTTP/1.1.
    Http1,
    /// HTTP/2 (h2c or decrypted h2).
    Http2,
    /// gRPC over HTTP/2.
    Grpc,
    /// DNS over UDP or TCP.
    Dns,
    /// MySQL / MariaDB client protocol.
    Mysql,
    /// PostgreSQL frontend/backend protocol.
    Postgresql,
    /// Redis RESP2/RESP3.
    Redis,
    /// Apache Kafka.
    Kafka,
    /// MQTT 3.1.1 / 5.
    Mqtt,
    /// A protocol claimed by a plugin; the name is the plugin's.
    Custom(Arc<str>),
}

impl Protocol {
    /// The name used in JSON, on the command line and in counters ("http1", "dns", ...).
    pub fn name(&self) -> &str {
        match self {
            Protocol::Unknown => "unknown",
            Protocol::Http1 => "http1",
            Protocol::Http2 => "http2",
            Protocol::Grpc => "grpc",
            Protocol::Dns => "dns",
            Protocol::Mysql => "mysql",
            Protocol::Postgresql => "postgresql",
            Protocol::Redis => "redis",
            Protocol::Kafka => "kafka",
            Protocol::Mqtt => "mqtt",
            Protocol::Custom(name) => name,
        }
    }

    /// Parses a built-in protocol name as printed by [`Protocol::name`].
    pub fn from_name(name: &str) -> Option<Protocol> {
        Some(match name {
            "http1" | "http" => Protocol::Http1,
            "http2" => Protocol::Http2,
            "grpc" => Protocol::Grpc,
            "dns" => Protocol::Dns,
            "mysql" => Protocol::Mysql,
            "postgresql" | "postgres" => Protocol::Postgresql,
            "redis" => Protocol::Redis,
            "kafka" => Protocol::Kafka,
            "mqtt" => Protocol::Mqtt,
            _ => return None,
        })
    }

    /// True for protocols claimed by plugins.
    pub fn is_custom(&self) -> bool {
        matches!(self, Protocol::Custom(_))
    }
}

/// Outcome class of a request, as in DeepFlow's l7 flow log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ResponseStatus {
    /// Success.
    Ok,
    /// The client's fault (HTTP 4xx, ...).
    ClientError,
    /// The server's fault (HTTP 5xx, ...).
    ServerError,
    /// No response arrived within the request timeout.
    Timeout,
    /// Not known (no response seen, or the protocol does not say).
    #[default]
    Unknown,
}

impl ResponseStatus {
    /// The JSON name ("ok", "client_error", "server_error", "timeout", "unknown").
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseStatus::Ok => "ok",
            ResponseStatus::ClientError => "client_error",
            ResponseStatus::ServerError => "server_error",
            ResponseStatus::Timeout => "timeout",
            ResponseStatus::Unknown => "unknown",
        }
    }
}

/// One key/value attribute added by a parser or a plugin; order is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// Attribute name.
    pub key: Bytes,
    /// Attribute value.
    pub value: Bytes,
}

/// One request/response exchange (or a lone request or response) at L7.
///
/// Field names follow DeepFlow's l7 flow log; the OpenTelemetry mapping is given per field.
/// Text fields are [`Bytes`] slices of the captured payload (no copies); they are usually but
/// not necessarily UTF-8, so consumers render them lossily. Empty means absent.
#[derive(Debug, Clone, Default)]
pub struct L7Record {
    /// The connection (OTel `client.address`/`client.port`, `server.address`/`server.port`,
    /// `network.transport`).
    pub flow: FlowKey,
    /// Process behind the socket when known (OTel `process.pid`, `thread.id`,
    /// `process.executable.name`).
    pub process: Option<ProcessInfo>,
    /// Timestamp of the first byte of the request (or of the response when unpaired), ns.
    pub start_ns: u64,
    /// Timestamp of the last segment of the response (or of the request when unanswered), ns.
    pub end_ns: u64,
    /// Response time: response end minus request start, ns; 0 when unpaired.
    pub rrt_ns: u64,
    /// Application protocol (OTel `network.protocol.name`).
    pub protocol: Protocol,
    /// Protocol version, e.g. "1.1" (OTel `network.protocol.version`).
    pub version: Bytes,
    /// Request type: HTTP method, SQL verb, Redis command, ... (OTel `http.request.method`,
    /// `db.operation.name`).
    pub request_type: Bytes,
    /// Request domain: HTTP host, database, topic, ... (OTel `server.address` for HTTP).
    pub request_domain: Bytes,
    /// Request resource: HTTP path with query, SQL text, key, ... (OTel `url.full`/`url.path`,
    /// `db.query.text`).
    pub request_resource: Bytes,
    /// Endpoint: the resource reduced to a low-cardinality name (HTTP: first two path
    /// segments, as DeepFlow does; OTel `http.route` approximation).
    pub endpoint: Bytes,
    /// Protocol-level request id (DNS id, Kafka correlation id, HTTP/2 stream id).
    pub request_id: Option<u64>,
    /// Request payload length; for HTTP the body length (Content-Length or decoded chunks),
    /// matching DeepFlow (OTel `http.request.body.size`).
    pub req_len: Option<u64>,
    /// Response status class.
    pub response_status: ResponseStatus,
    /// Protocol response code: HTTP status, SQL error number, ... (OTel
    /// `http.response.status_code`).
    pub response_code: Option<i32>,
    /// Error text when the response is an error (OTel `error.type` / exception message).
    pub response_exception: Bytes,
    /// Result text (plugins may put a body or a summary here).
    pub response_result: Bytes,
    /// Response payload length; for HTTP the body length (OTel `http.response.body.size`).
    pub resp_len: Option<u64>,
    /// Trace id from a propagation header (traceparent, uber-trace-id, sw8) (OTel `trace_id`).
    pub trace_id: Bytes,
    /// Span id from the same header (OTel `span_id` of the parent).
    pub span_id: Bytes,
    /// The `x-request-id` header (or protocol equivalent).
    pub x_request_id: Bytes,
    /// Content type of the response, or of the request when there is no response.
    pub content_type: Bytes,
    /// Extra attributes, in the order they were added.
    pub attributes: Vec<Attribute>,
    /// A message exceeded `max_message_bytes`; its body here is cut.
    pub truncated: bool,
    /// The request has no response (or the response no request).
    pub unpaired: bool,
    /// Names of the plugins that changed this record, in order.
    pub plugins: Vec<Arc<str>>,
    /// The request message body as captured (bounded by `max_message_bytes`), for plugins.
    pub request_body: Bytes,
    /// The response message body as captured (bounded by `max_message_bytes`), for plugins.
    pub response_body: Bytes,
    /// The whole request message (head and body) as captured, for plugin hooks.
    pub request_payload: Bytes,
    /// The whole response message (head and body) as captured, for plugin hooks.
    pub response_payload: Bytes,
}

impl L7Record {
    /// Appends an attribute.
    pub fn push_attribute(&mut self, key: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.attributes.push(Attribute {
            key: key.into(),
            value: value.into(),
        });
    }

    /// The value of the first attribute named `key`.
    pub fn attribute(&self, key: &str) -> Option<&Bytes> {
        self.attributes
            .iter()
            .find(|a| a.key.as_ref() == key.as_bytes())
            .map(|a| &a.value)
    }

    /// True when a plugin changed the record.
    pub fn plugin_modified(&self) -> bool {
        !self.plugins.is_empty()
    }
}
