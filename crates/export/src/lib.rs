//! Records out to OpenTelemetry: OTLP/HTTP (protobuf) export of L7 records as log records and
//! as spans, with attribute names from the OpenTelemetry semantic conventions for HTTP, RPC,
//! databases and messaging.
//!
//! [`OtlpExporter`] never slows the engine down: `export` only tries to queue a record in a
//! bounded queue (full: the record is dropped and counted); a thread batches what is queued,
//! POSTs it to `<endpoint>/v1/logs` and `<endpoint>/v1/traces`, retries with backoff, and
//! counts what it could not deliver.

use l7tap_core::{L7Record, Protocol, ResponseStatus, L4};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message as _;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The record's attributes under OpenTelemetry semantic-convention names (l7tap's own fields
/// and plugin attributes under `l7tap.*`).
pub fn attributes(r: &L7Record) -> Vec<KeyValue> {
    use any_value::Value::{IntValue, StringValue};
    let mut a = Vec::with_capacity(16);
    let s = |a: &mut Vec<KeyValue>, k: &str, v: &[u8]| {
        if !v.is_empty() {
            a.push(kv(k, StringValue(text(v))));
        }
    };
    a.push(kv(
        "network.transport",
        StringValue(r.flow.l4.as_str().into()),
    ));
    if r.flow.l4 == L4::Unix {
        // OTel: `server.address` is "the Unix domain socket name" for a Unix socket.
        s(&mut a, "server.address", r.flow.path.as_bytes());
    } else {
        a.push(kv(
            "client.address",
            StringValue(r.flow.client.ip().to_string()),
        ));
        a.push(kv("client.port", IntValue(i64::from(r.flow.client.port()))));
        a.push(kv(
            "server.address",
            StringValue(r.flow.server.ip().to_string()),
        ));
        a.push(kv("server.port", IntValue(i64::from(r.flow.server.port()))));
    }
    a.push(kv("l7tap.protocol", StringValue(r.protocol.name().into())));
    let code = r.response_code.map(i64::from);
    match &r.protocol {
        Protocol::Http1 | Protocol::Http2 => {
            s(&mut a, "http.request.method", &r.request_type);
            s(&mut a, "url.path", &r.request_resource);
            s(&mut a, "network.protocol.version", &r.version);
            s(&mut a, "http.route", &r.endpoint);
            if let Some(c) = code {
                a.push(kv("http.response.status_code", IntValue(c)));
            }
        }
        Protocol::Grpc => {
            a.push(kv("rpc.system", StringValue("grpc".into())));
            let path = text(&r.request_resource);
            let mut parts = path.trim_start_matches('/').splitn(2, '/');
            if let (Some(svc), Some(m)) = (parts.next(), parts.next()) {
                a.push(kv("rpc.service", StringValue(svc.into())));
                a.push(kv("rpc.method", StringValue(m.into())));
            }
            if let Some(c) = code {
                a.push(kv("rpc.grpc.status_code", IntValue(c)));
            }
        }
        Protocol::Mysql | Protocol::Postgresql | Protocol::Redis => {
            let system = match r.protocol {
                Protocol::Mysql => "mysql",
                Protocol::Postgresql => "postgresql",
                _ => "redis",
            };
            a.push(kv("db.system.name", StringValue(system.into())));
            s(&mut a, "db.operation.name", &r.request_type);
            s(&mut a, "db.query.text", &r.request_resource);
            s(&mut a, "db.namespace", &r.request_domain);
            if let Some(c) = code {
                a.push(kv("db.response.status_code", StringValue(c.to_string())));
            }
        }
        Protocol::Kafka | Protocol::Mqtt => {
            let system = if r.protocol == Protocol::Kafka {
                "kafka"
            } else {
                "mqtt"
            };
            a.push(kv("messaging.system", StringValue(system.into())));
            s(&mut a, "messaging.operation.name", &r.request_type);
            s(&mut a, "messaging.destination.name", &r.request_resource);
            s(&mut a, "messaging.client.id", &r.request_domain);
            if let Some(c) = code {
                a.push(kv("error.type", StringValue(c.to_string())));
            }
        }
        Protocol::Dns => {
            s(&mut a, "dns.question.name", &r.request_resource);
            s(&mut a, "l7tap.dns.type", &r.request_type);
            if let Some(c) = code {
                a.push(kv("l7tap.dns.rcode", IntValue(c)));
            }
        }
        _ => {
            s(&mut a, "l7tap.request_type", &r.request_type);
            s(&mut a, "l7tap.request_resource", &r.request_resource);
            if let Some(c) = code {
                a.push(kv("l7tap.response_code", IntValue(c)));
            }
        }
    }
    s(
        &mut a,
        "l7tap.response_status",
        r.response_status.as_str().as_bytes(),
    );
    s(&mut a, "l7tap.response_exception", &r.response_exception);
    s(&mut a, "l7tap.response_result", &r.response_result);
    s(&mut a, "l7tap.x_request_id", &r.x_request_id);
    if let Some(id) = r.request_id {
        a.push(kv("l7tap.request_id", IntValue(id as i64)));
    }
    if r.rrt_ns > 0 {
        a.push(kv("l7tap.rrt_ns", IntValue(r.rrt_ns as i64)));
    }
    if let Some(p) = &r.process {
        a.push(kv("process.pid", IntValue(i64::from(p.pid))));
        s(&mut a, "process.executable.name", &p.comm);
    }
    if r.truncated {
        a.push(kv("l7tap.truncated", any_value::Value::BoolValue(true)));
    }
    if r.unpaired {
        a.push(kv("l7tap.unpaired", any_value::Value::BoolValue(true)));
    }
    for at in &r.attributes {
        a.push(kv(
            &format!("l7tap.attr.{}", text(&at.key)),
            StringValue(text(&at.value)),
        ));
    }
    a
}

fn resource() -> Resource {
    Resource {
        attributes: vec![kv(
            "service.name",
            any_value::Value::StringValue("l7tap".into()),
        )],
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "l7tap".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

/// An ExportLogsServiceRequest with one log record per L7 record (body: a one-line summary).
pub fn logs_request(records: &[L7Record]) -> ExportLogsServiceRequest {
    let logs = records
        .iter()
        .map(|r| {
            let (sev, sev_text) = match r.response_status {
                ResponseStatus::ServerError => (17, "ERROR"),
                ResponseStatus::ClientError | ResponseStatus::Timeout => (13, "WARN"),
                _ => (9, "INFO"),
            };
            LogRecord {
                time_unix_nano: r.start_ns,
                observed_time_unix_nano: r.end_ns,
                severity_number: sev,
                severity_text: sev_text.into(),
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(format!(
                        "{} {} {} {}",
                        r.protocol.name(),
                        text(&r.request_type),
                        text(&r.request_resource),
                        r.response_code
                            .map(|c| c.to_string())
                            .unwrap_or_else(|| "-".into())
                    ))),
                }),
                attributes: attributes(r),
                trace_id: hex_id::<16>(&r.trace_id).map(Vec::from).unwrap_or_default(),
                span_id: hex_id::<8>(&r.span_id).map(Vec::from).unwrap_or_default(),
                ..Default::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource()),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope()),
                log_records: logs,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// `N` bytes from a hex id of exactly `2 * N` digits (W3C trace / span ids).
fn hex_id<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in s.chunks(2).enumerate() {
        let d = |c: u8| (c as char).to_digit(16);
        out[i] = (d(pair[0])? * 16 + d(pair[1])?) as u8;
    }
    (out != [0u8; N]).then_some(out)
}

/// A stable id from the record when it carries none (the same record always gets the same).
fn derived_id<const N: usize>(r: &L7Record, salt: u64) -> [u8; N] {
    let mut x = r.start_ns ^ salt ^ (u64::from(r.flow.client.port()) << 32) ^ r.flow.socket_id;
    let mut out = [0u8; N];
    for b in out.iter_mut() {
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 29;
        *b = x as u8;
    }
    if out == [0u8; N] {
        out[0] = 1;
    }
    out
}

/// An ExportTraceServiceRequest with one span per record: kind CLIENT (an exchange observed
/// from the network or a socket), from the request's first byte to the response's last,
/// status ERROR for server errors (and client errors of HTTP, as the conventions say for
/// client spans) with the exception as message. Trace and span ids come from the record's
/// trace context when it has one (W3C ids; the record's span becomes the parent).
pub fn traces_request(records: &[L7Record]) -> ExportTraceServiceRequest {
    let spans = records
        .iter()
        .map(|r| {
            let trace_id = hex_id::<16>(&r.trace_id).unwrap_or_else(|| derived_id(r, 0x7472));
            let parent = hex_id::<8>(&r.span_id).map(Vec::from).unwrap_or_default();
            let error = matches!(
                r.response_status,
                ResponseStatus::ServerError | ResponseStatus::ClientError | ResponseStatus::Timeout
            );
            let name = match &r.protocol {
                Protocol::Http1 | Protocol::Http2 => {
                    format!("{} {}", text(&r.request_type), text(&r.endpoint))
                        .trim()
                        .to_string()
                }
                Protocol::Grpc => text(&r.request_resource)
                    .trim_start_matches('/')
                    .to_string(),
                _ => format!("{} {}", r.protocol.name(), text(&r.request_type)),
            };
            Span {
                trace_id: trace_id.to_vec(),
                span_id: derived_id::<8>(r, 0x7370).to_vec(),
                parent_span_id: parent,
                name,
                kind: span::SpanKind::Client as i32,
                start_time_unix_nano: r.start_ns,
                end_time_unix_nano: r.end_ns.max(r.start_ns),
                attributes: attributes(r),
                status: Some(Status {
                    code: if error {
                        status::StatusCode::Error as i32
                    } else {
                        status::StatusCode::Unset as i32
                    },
                    message: if error {
                        text(&r.response_exception)
                    } else {
                        String::new()
                    },
                }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource()),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope()),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Exporter settings.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// `http://host:port` of the collector's OTLP/HTTP receiver (4318 by convention).
    pub endpoint: String,
    /// Send records as log records.
    pub logs: bool,
    /// Send records as spans.
    pub traces: bool,
    /// Records waiting to be sent (beyond: dropped, counted).
    pub queue: usize,
    /// Records per request.
    pub batch: usize,
    /// Longest a record waits for its batch to fill.
    pub linger: Duration,
    /// Attempts per batch before it is dropped (counted).
    pub attempts: u32,
    /// Connect/read/write timeout per attempt.
    pub timeout: Duration,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            endpoint: "http://127.0.0.1:4318".into(),
            logs: true,
            traces: true,
            queue: 8192,
            batch: 512,
            linger: Duration::from_millis(500),
            attempts: 3,
            timeout: Duration::from_secs(2),
        }
    }
}

/// What the exporter did (all monotonically increasing).
#[derive(Debug, Default)]
pub struct OtlpStats {
    /// Records queued.
    pub queued: AtomicU64,
    /// Records dropped because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Records delivered (per signal: a record sent as a log and a span counts once).
    pub exported: AtomicU64,
    /// Records dropped after every attempt failed.
    pub dropped_undeliverable: AtomicU64,
    /// Failed attempts (each is retried until `attempts`).
    pub failed_attempts: AtomicU64,
}

/// Why the exporter could not start.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Sends records to an OTLP/HTTP collector from a thread of its own.
#[derive(Debug)]
pub struct OtlpExporter {
    tx: Option<crossbeam_channel::Sender<L7Record>>,
    thread: Option<std::thread::JoinHandle<()>>,
    stats: Arc<OtlpStats>,
}

struct Target {
    host_port: String,
    host: String,
}

fn parse_endpoint(e: &str) -> Result<Target, ConfigError> {
    let rest = e
        .strip_prefix("http://")
        .ok_or_else(|| ConfigError(format!("OTLP endpoint {e:?}: only http:// is supported")))?;
    let host_port = rest.trim_end_matches('/').to_string();
    if host_port.is_empty() || host_port.contains('/') {
        return Err(ConfigError(format!(
            "OTLP endpoint {e:?}: expected http://host:port"
        )));
    }
    let host = host_port
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(&host_port)
        .to_string();
    let host_port = if host_port.contains(':') {
        host_port
    } else {
        format!("{host_port}:4318")
    };
    Ok(Target { host_port, host })
}

/// One POST; Ok when the collector answered 2xx.
fn post(t: &Target, path: &str, body: &[u8], timeout: Duration) -> Result<(), String> {
    use std::net::ToSocketAddrs;
    let addr = t
        .host_port
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        t.host,
        body.len()
    );
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    s.write_all(body).map_err(|e| e.to_string())?;
    let mut resp = [0u8; 64];
    let n = s.read(&mut resp).map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&resp[..n]);
    match line.split(' ').nth(1) {
        Some(c) if c.starts_with('2') => Ok(()),
        _ => Err(format!(
            "collector answered {:?}",
            line.lines().next().unwrap_or("")
        )),
    }
}

impl OtlpExporter {
    /// Starts the sending thread.
    pub fn start(config: OtlpConfig) -> Result<OtlpExporter, ConfigError> {
        let target = parse_endpoint(&config.endpoint)?;
        if config.queue == 0 || config.batch == 0 || config.attempts == 0 {
            return Err(ConfigError(
                "queue, batch and attempts must be at least 1".into(),
            ));
        }
        let (tx, rx) = crossbeam_channel::bounded::<L7Record>(config.queue);
        let stats = Arc::new(OtlpStats::default());
        let st = stats.clone();
        let thread = std::thread::Builder::new()
            .name("l7tap-otlp".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(config.batch);
                loop {
                    let deadline = Instant::now() + config.linger;
                    let mut closed = false;
                    while batch.len() < config.batch {
                        let left = deadline.saturating_duration_since(Instant::now());
                        match rx.recv_timeout(left) {
                            Ok(r) => batch.push(r),
                            Err(crossbeam_channel::RecvTimeoutError::Timeout) => break,
                            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                                closed = true;
                                break;
                            }
                        }
                    }
                    if !batch.is_empty() {
                        send_batch(&target, &config, &batch, &st);
                        batch.clear();
                    }
                    if closed {
                        return;
                    }
                }
            })
            .map_err(|e| ConfigError(format!("starting the OTLP thread: {e}")))?;
        Ok(OtlpExporter {
            tx: Some(tx),
            thread: Some(thread),
            stats,
        })
    }

    /// Queues a record without waiting: when the queue is full it is dropped and counted.
    pub fn export(&self, r: L7Record) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(r) {
            Ok(()) => {
                self.stats.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats
                    .dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The exporter's counters.
    pub fn stats(&self) -> &OtlpStats {
        &self.stats
    }

    /// Counters by name, for summaries.
    pub fn counters(&self) -> Vec<(String, u64)> {
        let s = &self.stats;
        [
            ("otlp_queued", &s.queued),
            ("otlp_exported", &s.exported),
            ("otlp_dropped_queue_full", &s.dropped_queue_full),
            ("otlp_dropped_undeliverable", &s.dropped_undeliverable),
            ("otlp_failed_attempts", &s.failed_attempts),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.load(Ordering::Relaxed)))
        .collect()
    }

    /// Sends what is queued (with its retries), stops the thread and returns the final
    /// counters.
    pub fn shutdown(mut self) -> Vec<(String, u64)> {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.counters()
    }
}

impl Drop for OtlpExporter {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn send_batch(t: &Target, c: &OtlpConfig, batch: &[L7Record], st: &OtlpStats) {
    let mut bodies = Vec::new();
    if c.logs {
        bodies.push(("/v1/logs", logs_request(batch).encode_to_vec()));
    }
    if c.traces {
        bodies.push(("/v1/traces", traces_request(batch).encode_to_vec()));
    }
    let mut delivered = true;
    for (path, body) in &bodies {
        let mut ok = false;
        let mut backoff = Duration::from_millis(100);
        for attempt in 0..c.attempts {
            match post(t, path, body, c.timeout) {
                Ok(()) => {
                    ok = true;
                    break;
                }
                Err(_) => {
                    st.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    if attempt + 1 < c.attempts {
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
        delivered &= ok;
    }
    let n = batch.len() as u64;
    if delivered {
        st.exported.fetch_add(n, Ordering::Relaxed);
    } else {
        st.dropped_undeliverable.fetch_add(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unix_socket_is_the_server_address_with_no_ports() {
        let r = L7Record {
            flow: l7tap_core::FlowKey {
                l4: L4::Unix,
                path: "/run/postgresql/.s.PGSQL.5432",
                ..Default::default()
            },
            ..Default::default()
        };
        let a = attributes(&r);
        let get = |k: &str| {
            a.iter()
                .find(|kv| kv.key == k)
                .and_then(|kv| kv.value.clone())
        };
        let str_of = |k: &str| match get(k).and_then(|v| v.value) {
            Some(any_value::Value::StringValue(s)) => Some(s),
            _ => None,
        };
        assert_eq!(str_of("network.transport").as_deref(), Some("unix"));
        assert_eq!(
            str_of("server.address").as_deref(),
            Some("/run/postgresql/.s.PGSQL.5432")
        );
        for k in ["client.address", "client.port", "server.port"] {
            assert!(get(k).is_none(), "{k}");
        }
    }

    #[test]
    fn ids_and_endpoints() {
        assert_eq!(
            hex_id::<8>(b"00f067aa0ba902b7"),
            Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
        );
        assert!(hex_id::<8>(b"xyz").is_none());
        assert!(hex_id::<8>(b"0000000000000000").is_none());
        assert!(parse_endpoint("https://x").is_err());
        assert_eq!(
            parse_endpoint("http://127.0.0.1:4318/")
                .map(|t| t.host_port)
                .ok(),
            Some("127.0.0.1:4318".into())
        );
        assert_eq!(
            parse_endpoint("http://collector").map(|t| t.host_port).ok(),
            Some("collector:4318".into())
        );
    }

    #[test]
    fn collector_down_drops_are_counted_and_export_never_blocks() {
        // Nothing listens on this port (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(9);
        let ex = OtlpExporter::start(OtlpConfig {
            endpoint: format!("http://127.0.0.1:{port}"),
            queue: 4,
            batch: 2,
            linger: Duration::from_millis(10),
            attempts: 2,
            timeout: Duration::from_millis(200),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let stats = ex.stats.clone();
        let t0 = Instant::now();
        for _ in 0..1000 {
            ex.export(L7Record::default());
        }
        assert!(
            t0.elapsed() < Duration::from_millis(500),
            "export must not block"
        );
        let queued = stats.queued.load(Ordering::Relaxed);
        let dropped = stats.dropped_queue_full.load(Ordering::Relaxed);
        assert_eq!(queued + dropped, 1000);
        assert!(dropped > 0);
        // Shutdown tries to deliver what was queued: every record is counted one way or
        // the other.
        ex.shutdown();
        assert_eq!(stats.dropped_undeliverable.load(Ordering::Relaxed), queued);
        assert_eq!(stats.exported.load(Ordering::Relaxed), 0);
        assert!(stats.failed_attempts.load(Ordering::Relaxed) >= 2);
    }
}
