//! The hooks as the pipeline calls them, and how their results merge into records
//! (wasm-abi.md sections 4 and 8).

use crate::abi::{self, l7_proto, status, BaseCtx};
use crate::host::{Outcome, PluginHost};
use crate::imports::{ActiveHook, CallCtx, HookInfo, HookResult, HttpReqInfo};
use crate::metrics::Hook;
use crate::result::PluginRecord;
use bytes::Bytes;
use l7tap_core::{Direction, FlowKey, L7Record, MessageRole, Protocol, ResponseStatus};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// ABI status number of a record status.
pub fn abi_status(s: ResponseStatus) -> u8 {
    match s {
        ResponseStatus::Ok => status::OK,
        ResponseStatus::Timeout => status::TIMEOUT,
        ResponseStatus::ServerError => status::SERVER_ERROR,
        ResponseStatus::ClientError => status::CLIENT_ERROR,
        ResponseStatus::Unknown => status::UNKNOWN,
    }
}

fn status_of_abi(s: u8) -> ResponseStatus {
    match s {
        status::OK => ResponseStatus::Ok,
        status::TIMEOUT => ResponseStatus::Timeout,
        status::SERVER_ERROR => ResponseStatus::ServerError,
        status::CLIENT_ERROR => ResponseStatus::ClientError,
        _ => ResponseStatus::Unknown,
    }
}

/// The plugin that handled a hook, and the records it returned (never empty).
type Handled = (Arc<str>, Vec<PluginRecord>);

/// The process name of an origin without a process (packet capture).
pub static NO_COMM: Bytes = Bytes::new();

/// Everything the base context needs that is not in a record.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    /// The flow, oriented client -> server.
    pub flow: &'a FlowKey,
    /// Which way the payload travels.
    pub direction: Direction,
    /// Timestamp, ns.
    pub ts_ns: u64,
    /// Process name, when known (eBPF).
    pub comm: &'a Bytes,
    /// True when the data came from eBPF rather than packet capture.
    pub from_ebpf: bool,
}

impl PluginHost {
    /// The base context for a message, given `payload` as plugins will see it and the
    /// message's whole length. When that is not the whole message (cut here, or the record
    /// is truncated), `buf_size` is set to the payload's length: a plugin can tell a cut
    /// payload by `payload.len() == buf_size`.
    fn base_for_message(
        &self,
        b: &mut BaseCtx,
        o: &Origin<'_>,
        l7: u8,
        payload: &Bytes,
        whole_len: usize,
        truncated: bool,
    ) {
        self.fill_base(b, o, l7);
        if (truncated || payload.len() < whole_len) && !payload.is_empty() {
            b.buf_size = payload.len().min(usize::from(u16::MAX)) as u16;
        }
    }

    /// Writes the base context of `o` into the call context's (in place: it is ~100 bytes).
    fn fill_base(&self, b: &mut BaseCtx, o: &Origin<'_>, l7: u8) {
        let (src, dst) = match o.direction {
            Direction::ClientToServer => (o.flow.client, o.flow.server),
            Direction::ServerToClient => (o.flow.server, o.flow.client),
        };
        b.src = src;
        b.dst = dst;
        // A Unix stream socket is a byte stream with no addresses: TCP to the ABI, whose
        // SDKs reject anything but 6 and 17.
        b.l4_protocol = if o.flow.l4.is_stream() { 6 } else { 17 };
        b.l7_protocol = l7;
        b.ebpf_type = if o.from_ebpf {
            abi::EBPF_TYPE_TRACEPOINT
        } else {
            abi::EBPF_TYPE_NONE
        };
        b.time_us = o.ts_ns / 1000;
        b.direction = u8::from(o.direction != Direction::ClientToServer);
        b.proc_name = o.comm.clone();
        b.flow_id = o.flow.shard_hash();
        b.buf_size = self.limits().payload_bytes.max(1);
    }

    /// Fills the call context of a payload hook.
    fn payload_ctx(
        &self,
        c: &mut CallCtx,
        hook: ActiveHook,
        o: &Origin<'_>,
        l7: u8,
        payload: &Bytes,
    ) {
        c.hook = hook;
        self.fill_base(&mut c.base, o, l7);
        c.payload = self.cut(payload);
        c.info = HookInfo::None;
        c.result = None;
    }

    /// The payload as plugins see it: at most `payload_bytes` bytes of the message.
    fn cut(&self, payload: &Bytes) -> Bytes {
        payload.slice(..payload.len().min(self.payload_limit()))
    }

    fn payload_limit(&self) -> usize {
        usize::from(self.limits().payload_bytes.max(1))
    }

    /// Lends a record's message to a call: moved out of the record when plugins see all of
    /// it (no reference-count traffic; the caller puts it back after the call), else a cut
    /// handle (the record keeps the whole). The bool says whether it was moved.
    fn lend(&self, field: &mut Bytes) -> (Bytes, bool) {
        if field.len() <= self.payload_limit() {
            (std::mem::take(field), true)
        } else {
            (self.cut(field), false)
        }
    }

    /// Runs `on_http_req` and `on_http_resp` on an HTTP/1, HTTP/2 or gRPC record and merges
    /// what the first handling plugin of each returned. Returns true when the record changed.
    pub fn on_http_record(&self, rec: &mut L7Record) -> bool {
        let native = match rec.protocol {
            Protocol::Http1 => l7_proto::HTTP1,
            Protocol::Http2 => l7_proto::HTTP2,
            Protocol::Grpc => l7_proto::GRPC,
            _ => return false,
        };
        let h1 = native == l7_proto::HTTP1;
        let mut changed = false;
        for (hook, d) in [
            (Hook::HttpReq, Direction::ClientToServer),
            (Hook::HttpResp, Direction::ServerToClient),
        ] {
            if !self.any_wants(hook) {
                continue;
            }
            let Some(field) = http_side(rec, h1, d) else {
                continue;
            };
            let whole_len = field.len();
            let (payload, moved) = self.lend(field);
            let r: &L7Record = rec;
            // The context is written in place into the thread's call context (no ~300-byte
            // moves through locals and closures).
            let (found, payload) = self.first_handled(hook, |c| {
                let comm = r.process.as_ref().map_or(&NO_COMM, |p| &p.comm);
                let o = Origin {
                    flow: &r.flow,
                    direction: d,
                    ts_ns: if d == Direction::ClientToServer {
                        r.start_ns
                    } else {
                        r.end_ns
                    },
                    comm,
                    from_ebpf: r.process.is_some(),
                };
                self.base_for_message(&mut c.base, &o, native, &payload, whole_len, r.truncated);
                match d {
                    Direction::ClientToServer => {
                        // The raw head: the payload when it was lent whole, else still in
                        // the record.
                        let raw = if moved { &payload } else { &r.request_payload };
                        let header =
                            |name: &[u8]| if h1 { header(raw, name) } else { Bytes::new() };
                        c.hook = ActiveHook::HttpReq;
                        c.info = HookInfo::HttpReq(HttpReqInfo {
                            path: r.request_resource.clone(),
                            host: r.request_domain.clone(),
                            user_agent: header(b"user-agent"),
                            referer: header(b"referer"),
                        });
                    }
                    Direction::ServerToClient => {
                        c.hook = ActiveHook::HttpResp;
                        c.info = HookInfo::HttpResp(
                            r.response_code.unwrap_or(0).clamp(0, 65535) as u16,
                            abi_status(r.response_status),
                            r.endpoint.clone(),
                        );
                    }
                }
                c.payload = payload;
                c.result = None;
            });
            if moved {
                *http_field(rec, h1, d) = payload;
            }
            if let Some((name, recs)) = found {
                // The last record of the handling plugin's result counts (never empty).
                if let Some(r) = recs.last() {
                    merge_http(rec, r, d);
                }
                if !rec.plugins.contains(&name) {
                    rec.plugins.push(name);
                }
                changed = true;
            }
        }
        changed
    }

    /// Section 4.3: 0 next plugin, 1 handled (stop; the last record of its result counts),
    /// anything else a failure (next plugin). The context's payload comes back with the answer.
    fn first_handled(
        &self,
        hook: Hook,
        prepare: impl FnOnce(&mut CallCtx),
    ) -> (Option<Handled>, Bytes) {
        let mut found = None;
        let payload = self.call_each(hook, prepare, &mut |plugin, outcome| match outcome {
            Outcome::Returned(0, _) | Outcome::Failed => false,
            Outcome::Returned(1, result) => {
                // The records stay in their Vec (a record is ~0.5 KiB: not moved around).
                if let Some(HookResult::Records(recs)) = result {
                    if !recs.is_empty() {
                        plugin
                            .metrics
                            .records_modified
                            .fetch_add(1, Ordering::Relaxed);
                        found = Some((Arc::clone(&plugin.name), recs));
                    }
                }
                true
            }
            Outcome::Returned(code, _) => {
                self.bad_return(plugin, code, hook);
                false
            }
        });
        (found, payload)
    }

    /// Section 4.1: asks the payload-parse plugins whether `payload` is theirs. Returns the
    /// protocol number, the name the plugin stored, and whether it is a request or response.
    pub fn check_payload(
        &self,
        o: &Origin<'_>,
        payload: &Bytes,
    ) -> Option<(u8, Vec<u8>, MessageRole)> {
        let prepare = |c: &mut CallCtx| self.payload_ctx(c, ActiveHook::Check, o, 0, payload);
        let mut found = None;
        self.call_each(
            Hook::CheckPayload,
            prepare,
            &mut |plugin, outcome| match outcome {
                Outcome::Returned(0, _) | Outcome::Failed => false,
                Outcome::Returned(v, result) => {
                    let name = match result {
                        Some(HookResult::Str(s)) => s,
                        _ => Vec::new(),
                    };
                    let (proto, role) = if (1..=255).contains(&v) {
                        (v as u8, MessageRole::Request)
                    } else {
                        let role = match v >> 8 {
                            1 => MessageRole::Request,
                            2 => MessageRole::Response,
                            _ => {
                                self.bad_return(plugin, v, Hook::CheckPayload);
                                return false;
                            }
                        };
                        (v as u8, role)
                    };
                    if proto == 0 {
                        return false;
                    }
                    found = Some((proto, name, role));
                    true
                }
            },
        );
        found
    }

    /// Section 4.2: every payload-parse plugin in order until one returns 1; its records
    /// (possibly none). `None` when no plugin handled the payload (DeepFlow's WasmParseFail).
    pub fn parse_payload(
        &self,
        o: &Origin<'_>,
        proto: u8,
        payload: &Bytes,
    ) -> Option<Vec<PluginRecord>> {
        let prepare = |c: &mut CallCtx| self.payload_ctx(c, ActiveHook::Parse, o, proto, payload);
        let mut found = None;
        self.call_each(
            Hook::ParsePayload,
            prepare,
            &mut |plugin, outcome| match outcome {
                Outcome::Returned(0, _) | Outcome::Failed => false,
                Outcome::Returned(1, result) => {
                    let recs = match result {
                        Some(HookResult::Records(r)) => r,
                        _ => Vec::new(),
                    };
                    plugin
                        .metrics
                        .records_modified
                        .fetch_add(recs.len() as u64, Ordering::Relaxed);
                    found = Some(recs);
                    true
                }
                Outcome::Returned(code, _) => {
                    self.bad_return(plugin, code, Hook::ParsePayload);
                    false
                }
            },
        );
        found
    }

    /// Section 4.4: a message of a built-in parser (`type_code`) offered to the plugins whose
    /// custom-message hook wants it; the last record of the first handling plugin.
    pub fn on_custom_message(
        &self,
        o: &Origin<'_>,
        hook_point: u16,
        type_code: u32,
        payload: &Bytes,
        body: &Bytes,
    ) -> Option<(Arc<str>, PluginRecord)> {
        let wanted = self.plugins().iter().any(|p| {
            p.custom_hook
                .is_some_and(|h| h.wants(hook_point, type_code))
        });
        if !wanted {
            return None;
        }
        let prepare = |c: &mut CallCtx| {
            self.payload_ctx(c, ActiveHook::Custom, o, 0, payload);
            c.info = HookInfo::Custom(hook_point, type_code, body.clone());
        };
        let (found, _) = self.first_handled(Hook::CustomMessage, prepare);
        found.and_then(|(name, mut recs)| recs.pop().map(|r| (name, r)))
    }
}

/// What plugins get of one side of an HTTP record, `None` when that side is absent. HTTP/1:
/// the raw message (head and body). HTTP/2 and gRPC: the stream's DATA, whole (for gRPC the
/// length-prefixed messages, 5-byte prefix included), since the head is HPACK-coded frames a
/// plugin could not read; its fields are in the HTTP info (a bodiless side is still present).
fn http_side(rec: &mut L7Record, h1: bool, side: Direction) -> Option<&mut Bytes> {
    let head_seen = !h1
        && match side {
            Direction::ClientToServer => !rec.request_type.is_empty(),
            Direction::ServerToClient => rec.response_code.is_some(),
        };
    let field = http_field(rec, h1, side);
    (head_seen || !field.is_empty()).then_some(field)
}

/// The field `http_side` lends: the raw message (HTTP/1) or the DATA (HTTP/2, gRPC).
fn http_field(rec: &mut L7Record, h1: bool, side: Direction) -> &mut Bytes {
    match (h1, side) {
        (true, Direction::ClientToServer) => &mut rec.request_payload,
        (true, Direction::ServerToClient) => &mut rec.response_payload,
        (false, Direction::ClientToServer) => &mut rec.request_body,
        (false, Direction::ServerToClient) => &mut rec.response_body,
    }
}

/// The value of the first header `name` (lower case) in a raw HTTP/1 head, as a slice of
/// `raw` (no copy); empty if absent.
fn header(raw: &Bytes, name: &[u8]) -> Bytes {
    let head_end = memchr::memmem::find(raw, b"\r\n\r\n").unwrap_or(raw.len());
    for line in raw[..head_end].split(|&b| b == b'\n').skip(1) {
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            if line[..colon].eq_ignore_ascii_case(name) {
                let v = &line[colon + 1..];
                let v = v.strip_suffix(b"\r").unwrap_or(v);
                let start = v
                    .iter()
                    .position(|&b| b != b' ' && b != b'\t')
                    .unwrap_or(v.len());
                return raw.slice_ref(&v[start..]);
            }
        }
    }
    Bytes::new()
}

/// A plugin's non-empty value replaces the record's (a slice of the result: no copy).
fn set(dst: &mut Bytes, v: &Option<Bytes>) {
    if let Some(v) = v {
        if !v.is_empty() {
            *dst = v.clone();
        }
    }
}

/// Section 8.2: a plugin's result merged into an HTTP record.
pub fn merge_http(rec: &mut L7Record, r: &PluginRecord, side: Direction) {
    if side == Direction::ClientToServer {
        if let Some(q) = &r.req {
            set(&mut rec.version, &q.version);
            if q.req_type
                .as_ref()
                .is_some_and(|t| !t.is_empty() && t.iter().all(|b| b.is_ascii_uppercase()))
            {
                set(&mut rec.request_type, &q.req_type);
            }
            set(&mut rec.request_domain, &q.domain);
            set(&mut rec.request_resource, &q.resource);
            set(&mut rec.endpoint, &q.endpoint);
        }
        if let Some(id) = r.request_id {
            rec.request_id = Some(u64::from(id));
        }
    } else if let Some(s) = &r.resp {
        if let Some(code) = s.code {
            rec.response_code = Some(i32::from(code as u16));
        }
        rec.response_status = status_of_abi(s.status);
        set(&mut rec.response_result, &s.result);
        set(&mut rec.response_exception, &s.exception);
    }
    merge_common(rec, r);
}

/// The fields both sides merge: trace, request id, attributes, business fields.
fn merge_common(rec: &mut L7Record, r: &PluginRecord) {
    if let Some(t) = &r.trace {
        // Plugin trace ids rank ahead of header-derived ones.
        if let Some(first) = t.trace_ids.first().filter(|f| !f.is_empty()) {
            rec.trace_id = first.clone();
        }
        if let Some(span) = t.span_id.as_ref().filter(|s| !s.is_empty()) {
            if !rec.span_id.is_empty() && rec.span_id != span {
                let old = rec.span_id.clone();
                rec.push_attribute(Bytes::from_static(b"apm_span_id"), old);
            }
            rec.span_id = span.clone();
        }
        set(&mut rec.x_request_id, &t.x_request_id);
        if let Some(c) = t.http_proxy_client.as_ref().filter(|c| !c.is_empty()) {
            rec.push_attribute(Bytes::from_static(b"client_ip"), c.clone());
        }
    }
    for (k, v) in &r.attributes {
        rec.push_attribute(k.clone(), v.clone());
    }
    if let Some(b) = r.biz_type.filter(|b| *b > 0) {
        rec.push_attribute(Bytes::from_static(b"biz_type"), Bytes::from(b.to_string()));
    }
    for (k, v) in [
        ("biz_code", &r.biz_code),
        ("biz_scenario", &r.biz_scenario),
        ("biz_response_code", &r.biz_response_code),
    ] {
        if let Some(v) = v {
            rec.push_attribute(Bytes::from_static(k.as_bytes()), v.clone());
        }
    }
}
