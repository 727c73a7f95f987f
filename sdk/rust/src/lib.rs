//! l7tap guest SDK: write DeepFlow-ABI Wasm plugins in Rust.
//!
//! Built with Debian's rustc 1.63 for `wasm32-wasi`, without crates.io dependencies. The
//! ABI is DeepFlow's (the host's `wasm-abi.md`): results are sent as "PB" protobuf records
//! (`wasm_plugin.AppInfo`), which every current host decodes.
#![deny(missing_docs)]

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU8, Ordering};

mod alloc;
pub use alloc::PluginAlloc;

/// Plugins allocate through size-class free lists (see `PluginAlloc`): dlmalloc's
/// malloc/free pair costs ~230 metered operators, a class pop/push a few dozen.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static GLOBAL: PluginAlloc = PluginAlloc::new();

mod ffi {
    #[link(wasm_import_module = "deepflow")]
    extern "C" {
        pub fn wasm_log(ptr: *const u8, len: i32, level: i32);
        pub fn vm_read_ctx_base(ptr: *mut u8, len: i32) -> i32;
        pub fn vm_read_payload(ptr: *mut u8, len: i32) -> i32;
        pub fn vm_read_http_req_info(ptr: *mut u8, len: i32) -> i32;
        pub fn vm_read_http_resp_info(ptr: *mut u8, len: i32) -> i32;
        pub fn vm_read_custom_message_info(ptr: *mut u8, len: i32) -> i32;
        pub fn host_read_l7_protocol_info(ptr: *const u8, len: i32) -> i32;
        pub fn host_read_str_result(ptr: *const u8, len: i32) -> i32;
    }
}

/// Which hooks a plugin wants (the ABI's 128-bit hook bitmap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hooks(pub u128);

impl Hooks {
    /// `on_http_req`.
    pub const HTTP_REQ: Hooks = Hooks(1 << 127);
    /// `on_http_resp`.
    pub const HTTP_RESP: Hooks = Hooks(1 << 126);
    /// `on_custom_message`.
    pub const CUSTOM_MESSAGE: Hooks = Hooks(1 << 125);
    /// `check_payload` and `parse_payload`.
    pub const PAYLOAD_PARSE: Hooks = Hooks(1);
    /// No hook.
    pub const NONE: Hooks = Hooks(0);
}

impl std::ops::BitOr for Hooks {
    type Output = Hooks;
    fn bitor(self, o: Hooks) -> Hooks {
        Hooks(self.0 | o.0)
    }
}

/// Log levels of the host's log.
#[derive(Debug, Clone, Copy)]
pub enum Level {
    /// Information.
    Info = 0,
    /// Warning.
    Warn = 1,
    /// Error.
    Error = 2,
}

/// Writes a line to the host's log under the plugin's name.
pub fn log(level: Level, msg: &str) {
    unsafe { ffi::wasm_log(msg.as_ptr(), msg.len() as i32, level as i32) }
}

/// Response status as the ABI numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// Timeout.
    Timeout = 2,
    /// The server's fault.
    ServerError = 3,
    /// The client's fault.
    ClientError = 4,
    /// Not known.
    Unknown = 5,
}

impl Default for Status {
    fn default() -> Self {
        Status::Unknown
    }
}

impl Status {
    fn from_u8(v: u8) -> Status {
        match v {
            0 => Status::Ok,
            2 => Status::Timeout,
            3 => Status::ServerError,
            4 => Status::ClientError,
            _ => Status::Unknown,
        }
    }
}

/// Request or response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to server.
    Request,
    /// Server to client.
    Response,
}

/// The base context of every hook call.
#[derive(Debug, Clone)]
pub struct Base {
    /// Source address of the payload.
    pub src_ip: IpAddr,
    /// Destination address.
    pub dst_ip: IpAddr,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// 6 TCP, 17 UDP.
    pub l4_protocol: u8,
    /// L7 protocol number (per hook).
    pub l7_protocol: u8,
    /// 255 packet capture, 0 syscall tracepoint, ...
    pub ebpf_type: u8,
    /// Timestamp, microseconds.
    pub time_us: u64,
    /// Which way the payload travels.
    pub direction: Direction,
    /// Process name (empty when unknown).
    pub proc_name: String,
    /// Flow id.
    pub flow_id: u64,
    /// Largest payload the host hands over.
    pub buf_size: u16,
}

fn be16(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}


impl Base {
    /// A context with nothing in it (unspecified addresses), to be filled by `read_into`.
    pub fn empty() -> Base {
        Base {
            src_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dst_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            src_port: 0,
            dst_port: 0,
            l4_protocol: 0,
            l7_protocol: 0,
            ebpf_type: 0,
            time_us: 0,
            direction: Direction::Request,
            proc_name: String::new(),
            flow_id: 0,
            buf_size: 0,
        }
    }

    /// Reads the base context of the current call into `out` (in place: a context moved
    /// through return values costs a metered operator per few bytes). False when the host
    /// has none or it does not decode.
    pub fn read_into(out: &mut Base) -> bool {
        // 1 + 2 * 16 + 17 + 255 + 10 bytes at most.
        let mut buf = [0u8; 320];
        let n = unsafe { ffi::vm_read_ctx_base(buf.as_mut_ptr(), buf.len() as i32) };
        n > 0 && Base::decode_into(&buf[..(n as usize).min(buf.len())], out).is_some()
    }

    /// Reads the base context of the current call.
    pub fn read() -> Option<Base> {
        let mut b = Base::empty();
        if Base::read_into(&mut b) {
            Some(b)
        } else {
            None
        }
    }

    /// Decodes the context (section 5.1): the family, both addresses, then a fixed part,
    /// the process name and the flow id with the buffer size. Lengths are checked once per
    /// part (each `?` and field move is metered in Wasm).
    fn decode_into(b: &[u8], out: &mut Base) -> Option<()> {
        let a = match b.first()? {
            4 => 4,
            6 => 16,
            _ => return None,
        };
        let addrs = b.get(1..1 + 2 * a)?;
        let fixed = b.get(1 + 2 * a..1 + 2 * a + 17)?;
        let name_len = fixed[16] as usize;
        let name_at = 1 + 2 * a + 17;
        let name = b.get(name_at..name_at + name_len)?;
        let tail = b.get(name_at + name_len..name_at + name_len + 10)?;
        let ip = |s: &[u8]| -> IpAddr {
            if s.len() == 4 {
                IpAddr::V4(Ipv4Addr::new(s[0], s[1], s[2], s[3]))
            } else {
                let mut o = [0u8; 16];
                o.copy_from_slice(s);
                IpAddr::V6(Ipv6Addr::from(o))
            }
        };
        let u64_at = |s: &[u8]| {
            let mut o = [0u8; 8];
            o.copy_from_slice(&s[..8]);
            u64::from_be_bytes(o)
        };
        out.src_ip = ip(&addrs[..a]);
        out.dst_ip = ip(&addrs[a..]);
        out.src_port = u16::from_be_bytes([fixed[0], fixed[1]]);
        out.dst_port = u16::from_be_bytes([fixed[2], fixed[3]]);
        out.l4_protocol = fixed[4];
        out.l7_protocol = fixed[5];
        out.ebpf_type = fixed[6];
        out.time_us = u64_at(&fixed[7..15]);
        out.direction = if fixed[15] == 0 { Direction::Request } else { Direction::Response };
        if !name.is_empty() {
            out.proc_name = text(name);
        }
        out.flow_id = u64_at(tail);
        out.buf_size = u16::from_be_bytes([tail[8], tail[9]]);
        Some(())
    }

}

thread_local! {
    /// One payload buffer, zeroed once and reused by every call.
    static PAYLOAD_BUF: RefCell<Vec<u8>> = RefCell::new(Vec::new());
    /// A buffer for contexts and hook info, zeroed once and reused.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::new());
}

/// Runs `f` with a reused buffer of at least `n` bytes (no allocation or zeroing per call).
fn with_scratch<R>(n: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    SCRATCH.with(|s| {
        let mut buf = s.borrow_mut();
        if buf.len() < n {
            buf.resize(n, 0);
        }
        f(&mut buf[..n])
    })
}

/// True when `payload` is not the whole message: l7tap sets `buf_size` to the payload's
/// length when it had to cut the message (longer than its payload limit, or truncated by the
/// capture), so a payload that fills `buf_size` exactly was cut.
pub fn payload_is_cut(base: &Base, payload: &[u8]) -> bool {
    !payload.is_empty() && payload.len() == base.buf_size as usize
}

/// The payload of the current call (at most `buf_size` bytes; the host cuts longer ones),
/// copied out. `with_payload` lends it without the copy.
pub fn payload(base: &Base) -> Option<Vec<u8>> {
    with_payload(base, |p| p.to_vec())
}

/// Runs `f` on the payload of the current call, read into a buffer the SDK reuses (no
/// allocation or copy per call); `None` when the host has no payload for this hook.
pub fn with_payload<R>(base: &Base, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
    PAYLOAD_BUF.with(|b| {
        let mut buf = b.borrow_mut();
        let want = base.buf_size.max(1) as usize;
        if buf.len() < want {
            buf.resize(want, 0);
        }
        let n = unsafe { ffi::vm_read_payload(buf.as_mut_ptr(), want as i32) };
        if n < 0 {
            return None;
        }
        Some(f(&buf[..n as usize]))
    })
}

fn str16(b: &[u8], i: &mut usize) -> Option<String> {
    let n = be16(b, *i)? as usize;
    let s = b.get(*i + 2..*i + 2 + n)?;
    *i += 2 + n;
    Some(if s.is_empty() { String::new() } else { text(s) })
}

/// Context of `on_http_req`.
#[derive(Debug, Clone)]
pub struct HttpReqCtx {
    /// Base context.
    pub base: Base,
    /// Request path.
    pub path: String,
    /// Host header.
    pub host: String,
    /// User-Agent header.
    pub user_agent: String,
    /// Referer header.
    pub referer: String,
}

/// Context of `on_http_resp`.
#[derive(Debug, Clone)]
pub struct HttpRespCtx {
    /// Base context.
    pub base: Base,
    /// HTTP status code.
    pub status_code: u16,
    /// Status class as parsed by the host.
    pub status: Status,
    /// The request's endpoint.
    pub endpoint: String,
}

/// Context of `check_payload` / `parse_payload`.
#[derive(Debug, Clone)]
pub struct ParseCtx {
    /// Base context.
    pub base: Base,
}

/// Context of `on_custom_message`.
#[derive(Debug, Clone)]
pub struct CustomMessageCtx {
    /// Base context.
    pub base: Base,
    /// 0 ProtocolParse, 1 SessionFilter, 2 Sampling.
    pub hook_point: u16,
    /// The native protocol's number.
    pub type_code: u32,
    /// The message (protobuf, per type).
    pub body: Vec<u8>,
}

/// Request fields of a result.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Version.
    pub version: Option<String>,
    /// Request type (method, command).
    pub req_type: Option<String>,
    /// Domain.
    pub domain: Option<String>,
    /// Resource.
    pub resource: Option<String>,
    /// Endpoint.
    pub endpoint: Option<String>,
}

/// Response fields of a result.
#[derive(Debug, Clone, Default)]
pub struct Response {
    /// Status class.
    pub status: Status,
    /// Response code.
    pub code: Option<i32>,
    /// Exception text.
    pub exception: Option<String>,
    /// Result text.
    pub result: Option<String>,
}

/// Trace fields of a result.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// Trace id.
    pub trace_id: Option<String>,
    /// Span id.
    pub span_id: Option<String>,
    /// Parent span id.
    pub parent_span_id: Option<String>,
    /// Request id.
    pub x_request_id: Option<String>,
}

/// One result record.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// Request length.
    pub req_len: Option<u32>,
    /// Response length.
    pub resp_len: Option<u32>,
    /// Pairing id.
    pub request_id: Option<u32>,
    /// Request part.
    pub req: Option<Request>,
    /// Response part.
    pub resp: Option<Response>,
    /// Trace part.
    pub trace: Option<Trace>,
    /// Protocol display name.
    pub protocol_str: Option<String>,
    /// No request/response pairing.
    pub is_async: bool,
    /// Attributes, in order.
    pub attributes: Vec<(String, String)>,
}

impl Record {
    /// A record with only a response part.
    #[inline]
    pub fn response(resp: Response) -> Record {
        Record { resp: Some(resp), ..Default::default() }
    }

    /// A record with only a request part.
    #[inline]
    pub fn request(req: Request) -> Record {
        Record { req: Some(req), ..Default::default() }
    }

    /// Adds an attribute.
    #[inline]
    pub fn attr(mut self, k: &str, v: &str) -> Record {
        self.attributes.push((k.to_string(), v.to_string()));
        self
    }
}

// ---- protobuf encoding of wasm_plugin.AppInfo ----
//
// Written in one pass into one buffer: nested messages' lengths are computed first, so no
// temporary vectors and no regrowth copies (copies are loops in Wasm without bulk memory).

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn field_varint(out: &mut Vec<u8>, num: u64, v: u64) {
    varint(out, num << 3);
    varint(out, v);
}

fn field_varint_len(num: u64, v: u64) -> usize {
    varint_len(num << 3) + varint_len(v)
}

fn field_bytes(out: &mut Vec<u8>, num: u64, b: &[u8]) {
    nested(out, num, b.len());
    out.extend_from_slice(b);
}

fn field_bytes_len(num: u64, n: usize) -> usize {
    varint_len((num << 3) | 2) + varint_len(n as u64) + n
}

fn field_str(out: &mut Vec<u8>, num: u64, s: &Option<String>) {
    if let Some(s) = s {
        field_bytes(out, num, s.as_bytes());
    }
}

fn field_str_len(num: u64, s: &Option<String>) -> usize {
    s.as_ref().map_or(0, |s| field_bytes_len(num, s.len()))
}

/// Starts a nested message field of `len` bytes.
fn nested(out: &mut Vec<u8>, num: u64, len: usize) {
    varint(out, (num << 3) | 2);
    varint(out, len as u64);
}

type StrFields<'a, const N: usize> = [(u64, &'a Option<String>); N];

fn strs_len(fields: &[(u64, &Option<String>)]) -> usize {
    fields.iter().map(|(n, s)| field_str_len(*n, s)).sum()
}

fn put_strs(o: &mut Vec<u8>, fields: &[(u64, &Option<String>)]) {
    for (n, s) in fields {
        field_str(o, *n, s);
    }
}

impl Request {
    fn fields(&self) -> StrFields<'_, 5> {
        [(1, &self.version), (2, &self.req_type), (3, &self.domain), (4, &self.resource), (5, &self.endpoint)]
    }
}

impl Response {
    fn encoded_len(&self) -> usize {
        field_varint_len(1, self.status as u64)
            + self.code.map_or(0, |c| field_varint_len(2, c as i64 as u64))
            + field_str_len(3, &self.exception)
            + field_str_len(4, &self.result)
    }
}

impl Trace {
    fn fields(&self) -> StrFields<'_, 4> {
        [(1, &self.trace_id), (2, &self.span_id), (3, &self.parent_span_id), (4, &self.x_request_id)]
    }
}

fn attr_len(k: &str, v: &str) -> usize {
    field_bytes_len(1, k.len()) + field_bytes_len(2, v.len())
}

impl Record {
    /// Bytes `encode` produces.
    pub fn encoded_len(&self) -> usize {
        2 + self.req_len.map_or(0, |v| field_varint_len(1, u64::from(v)))
            + self.resp_len.map_or(0, |v| field_varint_len(2, u64::from(v)))
            + self.request_id.map_or(0, |v| field_varint_len(3, u64::from(v)))
            + self.req.as_ref().map_or(0, |r| field_bytes_len(10, strs_len(&r.fields())))
            + self.resp.as_ref().map_or(0, |r| field_bytes_len(11, r.encoded_len()))
            + self.trace.as_ref().map_or(0, |t| field_bytes_len(12, strs_len(&t.fields())))
            + field_str_len(13, &self.protocol_str)
            + if self.is_async { field_varint_len(22, 1) } else { 0 }
            + self.attributes.iter().map(|(k, v)| field_bytes_len(31, attr_len(k, v))).sum::<usize>()
    }

    /// The record as a "PB" protobuf record (without its length prefix).
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut o);
        o
    }

    /// Appends the "PB" record to `o`.
    pub fn encode_into(&self, o: &mut Vec<u8>) {
        o.extend_from_slice(b"PB");
        if let Some(v) = self.req_len {
            field_varint(o, 1, u64::from(v));
        }
        if let Some(v) = self.resp_len {
            field_varint(o, 2, u64::from(v));
        }
        if let Some(v) = self.request_id {
            field_varint(o, 3, u64::from(v));
        }
        if let Some(r) = &self.req {
            let f = r.fields();
            nested(o, 10, strs_len(&f));
            put_strs(o, &f);
        }
        if let Some(r) = &self.resp {
            nested(o, 11, r.encoded_len());
            field_varint(o, 1, r.status as u64);
            if let Some(c) = r.code {
                // int32: negative values are sign-extended to 64 bits.
                field_varint(o, 2, c as i64 as u64);
            }
            field_str(o, 3, &r.exception);
            field_str(o, 4, &r.result);
        }
        if let Some(t) = &self.trace {
            let f = t.fields();
            nested(o, 12, strs_len(&f));
            put_strs(o, &f);
        }
        field_str(o, 13, &self.protocol_str);
        if self.is_async {
            field_varint(o, 22, 1);
        }
        for (k, v) in &self.attributes {
            nested(o, 31, attr_len(k, v));
            field_bytes(o, 1, k.as_bytes());
            field_bytes(o, 2, v.as_bytes());
        }
    }
}

/// What a hook answers.
#[derive(Debug, Clone)]
pub enum Action {
    /// Not mine: ask the next plugin.
    Next,
    /// Handled, nothing to change: stop.
    Abort,
    /// Handled with these records: stop and merge them.
    Result(Vec<Record>),
}

/// A plugin. Implement the hooks you registered; the others keep their defaults.
pub trait Plugin {
    /// Hooks wanted.
    fn hooks(&self) -> Hooks;
    /// `on_http_req`.
    fn on_http_req(&mut self, _ctx: &HttpReqCtx) -> Action {
        Action::Next
    }
    /// `on_http_resp`.
    fn on_http_resp(&mut self, _ctx: &HttpRespCtx) -> Action {
        Action::Next
    }
    /// `check_payload`: `Some((protocol number, name, direction))` when the payload is yours.
    fn check_payload(&mut self, _ctx: &ParseCtx) -> Option<(u8, String, Direction)> {
        None
    }
    /// `parse_payload`.
    fn parse_payload(&mut self, _ctx: &ParseCtx) -> Action {
        Action::Next
    }
    /// The custom-message hook word: (hook_all, hook_point, type_code).
    fn custom_message_hook(&self) -> Option<(bool, u16, u32)> {
        None
    }
    /// `on_custom_message`.
    fn on_custom_message(&mut self, _ctx: &CustomMessageCtx) -> Action {
        Action::Next
    }
}

thread_local! {
    static PLUGIN: RefCell<Option<Box<dyn Plugin>>> = RefCell::new(None);
}

static BITMAP: [AtomicU8; 16] = [
    AtomicU8::new(0), AtomicU8::new(0), AtomicU8::new(0), AtomicU8::new(0),
    AtomicU8::new(0), AtomicU8::new(0), AtomicU8::new(0), AtomicU8::new(0),
    AtomicU8::new(0), AtomicU8::new(0), AtomicU8::new(0), AtomicU8::new(0),
    AtomicU8::new(0), AtomicU8::new(0), AtomicU8::new(0), AtomicU8::new(0),
];
static CUSTOM_HOOK: [AtomicU8; 8] = [
    AtomicU8::new(0), AtomicU8::new(0), AtomicU8::new(0), AtomicU8::new(0),
    AtomicU8::new(0), AtomicU8::new(0), AtomicU8::new(0), AtomicU8::new(0),
];

/// Registers the plugin (call it from `main`, which the host runs as `_start`).
pub fn register(p: Box<dyn Plugin>) {
    for (i, b) in p.hooks().0.to_be_bytes().iter().enumerate() {
        BITMAP[i].store(*b, Ordering::Relaxed);
    }
    if let Some((all, point, code)) = p.custom_message_hook() {
        let w: u64 = (if all { 0xffu64 << 48 } else { 0 }) | (u64::from(point) << 32) | u64::from(code);
        for (i, b) in w.to_be_bytes().iter().enumerate() {
            CUSTOM_HOOK[i].store(*b, Ordering::Relaxed);
        }
    }
    PLUGIN.with(|slot| *slot.borrow_mut() = Some(p));
}

fn with_plugin<R>(f: impl FnOnce(&mut dyn Plugin) -> R, default: R) -> R {
    PLUGIN.with(|slot| match slot.borrow_mut().as_mut() {
        Some(p) => f(p.as_mut()),
        None => default,
    })
}

fn send(action: Action) -> i32 {
    match action {
        Action::Next => 0,
        Action::Abort => 1,
        Action::Result(records) => {
            let mut blob = Vec::new();
            for r in &records {
                let n = r.encoded_len();
                if n > u16::MAX as usize || blob.len() + 2 + n > 64 * 1024 {
                    log(Level::Error, "result record too large; dropped");
                    continue;
                }
                blob.reserve(2 + n);
                blob.extend_from_slice(&(n as u16).to_be_bytes());
                r.encode_into(&mut blob);
            }
            if !blob.is_empty() {
                unsafe { ffi::host_read_l7_protocol_info(blob.as_ptr(), blob.len() as i32) };
            }
            1
        }
    }
}

#[doc(hidden)]
pub fn __get_hook_bitmap() -> i32 {
    BITMAP.as_ptr() as i32
}

#[doc(hidden)]
pub fn __get_custom_message_hook() -> i32 {
    if CUSTOM_HOOK.iter().all(|b| b.load(Ordering::Relaxed) == 0) {
        0
    } else {
        CUSTOM_HOOK.as_ptr() as i32
    }
}

#[doc(hidden)]
pub fn __on_http_req() -> i32 {
    let base = match Base::read() {
        Some(b) => b,
        None => return 0,
    };
    let info = with_scratch(16 * 1024, |buf| {
        let n = unsafe { ffi::vm_read_http_req_info(buf.as_mut_ptr(), buf.len() as i32) };
        if n <= 0 {
            return None;
        }
        let b = &buf[..n as usize];
        let mut i = 0;
        match (str16(b, &mut i), str16(b, &mut i), str16(b, &mut i), str16(b, &mut i)) {
            (Some(a), Some(b), Some(c), Some(d)) => Some((a, b, c, d)),
            _ => None,
        }
    });
    let (path, host, user_agent, referer) = match info {
        Some(i) => i,
        None => return 0,
    };
    let ctx = HttpReqCtx { base, path, host, user_agent, referer };
    send(with_plugin(|p| p.on_http_req(&ctx), Action::Next))
}

#[doc(hidden)]
pub fn __on_http_resp() -> i32 {
    let mut ctx = HttpRespCtx { base: Base::empty(), status_code: 0, status: Status::Ok, endpoint: String::new() };
    if !Base::read_into(&mut ctx.base) {
        return 0;
    }
    // Status, class and the endpoint (cut by the host if it does not fit).
    let info = with_scratch(4096, |buf| {
        let n = unsafe { ffi::vm_read_http_resp_info(buf.as_mut_ptr(), buf.len() as i32) };
        if n < 3 {
            return None;
        }
        let b = &buf[..n as usize];
        let mut i = 3;
        let endpoint = if b.len() >= 5 { str16(b, &mut i).unwrap_or_default() } else { String::new() };
        Some((be16(b, 0).unwrap_or(0), Status::from_u8(b[2]), endpoint))
    });
    match info {
        Some((code, status, endpoint)) => {
            ctx.status_code = code;
            ctx.status = status;
            ctx.endpoint = endpoint;
        }
        None => return 0,
    }
    send(with_plugin(|p| p.on_http_resp(&ctx), Action::Next))
}

#[doc(hidden)]
pub fn __check_payload() -> i32 {
    let mut ctx = ParseCtx { base: Base::empty() };
    if !Base::read_into(&mut ctx.base) {
        return 0;
    }
    match with_plugin(|p| p.check_payload(&ctx), None) {
        Some((proto, name, dir)) if proto != 0 => {
            let name = &name.as_bytes()[..name.len().min(16)];
            let mut s = (name.len() as u16).to_be_bytes().to_vec();
            s.extend_from_slice(name);
            unsafe { ffi::host_read_str_result(s.as_ptr(), s.len() as i32) };
            let d = if dir == Direction::Request { 1 } else { 2 };
            (d << 8) | i32::from(proto)
        }
        _ => 0,
    }
}

#[doc(hidden)]
pub fn __parse_payload() -> i32 {
    let mut ctx = ParseCtx { base: Base::empty() };
    if !Base::read_into(&mut ctx.base) {
        return 0;
    }
    send(with_plugin(|p| p.parse_payload(&ctx), Action::Next))
}

#[doc(hidden)]
pub fn __on_custom_message() -> i32 {
    let base = match Base::read() {
        Some(b) => b,
        None => return 0,
    };
    let mut buf = vec![0u8; 64 * 1024];
    let n = unsafe { ffi::vm_read_custom_message_info(buf.as_mut_ptr(), buf.len() as i32) };
    if n < 10 {
        return 0;
    }
    let b = &buf[..n as usize];
    let hook_point = be16(b, 0).unwrap_or(0);
    let type_code = u32::from_be_bytes([b[2], b[3], b[4], b[5]]);
    let len = u32::from_be_bytes([b[6], b[7], b[8], b[9]]) as usize;
    let body = b.get(10..10 + len).unwrap_or(&[]).to_vec();
    let ctx = CustomMessageCtx { base, hook_point, type_code, body };
    send(with_plugin(|p| p.on_custom_message(&ctx), Action::Next))
}

/// Defines the plugin's exports and its `main`, registering `$plugin` (an expression).
#[macro_export]
macro_rules! export_plugin {
    ($plugin:expr) => {
        #[no_mangle]
        pub extern "C" fn get_hook_bitmap() -> i32 {
            $crate::__get_hook_bitmap()
        }
        #[no_mangle]
        pub extern "C" fn get_custom_message_hook() -> i32 {
            $crate::__get_custom_message_hook()
        }
        #[no_mangle]
        pub extern "C" fn check_payload() -> i32 {
            $crate::__check_payload()
        }
        #[no_mangle]
        pub extern "C" fn parse_payload() -> i32 {
            $crate::__parse_payload()
        }
        #[no_mangle]
        pub extern "C" fn on_http_req() -> i32 {
            $crate::__on_http_req()
        }
        #[no_mangle]
        pub extern "C" fn on_http_resp() -> i32 {
            $crate::__on_http_resp()
        }
        #[no_mangle]
        pub extern "C" fn on_custom_message() -> i32 {
            $crate::__on_custom_message()
        }
        fn main() {
            $crate::register(Box::new($plugin));
        }
    };
}

/// Where the head of an HTTP/1 message ends (after the blank line), and whether the head says
/// `Transfer-Encoding: chunked`: one pass over the head, line by line (every Wasm operator
/// is metered, so the head is not walked twice).
fn scan_head(message: &[u8]) -> Option<(usize, bool)> {
    let mut from = 0;
    let mut chunked = false;
    loop {
        let i = from + find_byte(message.get(from..)?, b'\n')?;
        let line = &message[from..i];
        if line.len() > 18 && (line[0] | 0x20) == b't' && line[..18].eq_ignore_ascii_case(b"transfer-encoding:") {
            chunked = line[18..].windows(7).any(|w| w.eq_ignore_ascii_case(b"chunked"));
        }
        if i > 0 && message[i - 1] == b'\r' && message.get(i + 1..i + 3) == Some(&b"\r\n"[..]) {
            return Some((i + 3, chunked));
        }
        from = i + 1;
    }
}

/// Bytes as a `String`: copied once and validated (std's fast ASCII path); invalid UTF-8
/// falls back to a lossy conversion. Cheaper in Wasm than `String::from_utf8_lossy`, which
/// walks the text chunk by chunk.
pub fn text(bytes: &[u8]) -> String {
    let mut v = Vec::with_capacity(bytes.len());
    v.extend_from_slice(bytes);
    if is_ascii(bytes) {
        // SAFETY: ASCII is valid UTF-8.
        return unsafe { String::from_utf8_unchecked(v) };
    }
    match String::from_utf8(v) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// The first `needle` in `hay`: eight bytes per step (a word-wise zero-byte test), where a
/// byte loop costs several metered operators per byte.
pub fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO * u64::from(needle);
    let mut words = hay.chunks_exact(8);
    let mut at = 0;
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        let x = u64::from_le_bytes(a) ^ pattern;
        // The lowest set high bit marks the first zero byte (bytes above it may be false
        // positives, never below).
        let z = x.wrapping_sub(LO) & !x & HI;
        if z != 0 {
            return Some(at + (z.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words.remainder().iter().position(|&b| b == needle).map(|i| at + i)
}

/// True when every byte is below 0x80. With Wasm SIMD (the plugins are built with
/// `+simd128`): 64 bytes per step, four 16-byte vectors OR-ed and their high bits taken at
/// once (~0.3 metered operators per byte; the word-wise loop below costs ~1.1).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn is_ascii(b: &[u8]) -> bool {
    use core::arch::wasm32::{u8x16_bitmask, v128, v128_or};
    let p = b.as_ptr();
    let mut i = 0;
    while i + 64 <= b.len() {
        // SAFETY: i + 64 <= len: the four unaligned 16-byte reads are inside `b`.
        let any = unsafe {
            let v = |k: usize| (p.add(i + k) as *const v128).read_unaligned();
            v128_or(v128_or(v(0), v(16)), v128_or(v(32), v(48)))
        };
        if u8x16_bitmask(any) != 0 {
            return false;
        }
        i += 64;
    }
    is_ascii_words(&b[i..])
}

/// True when every byte is below 0x80 (without Wasm SIMD: `is_ascii_words`).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn is_ascii(b: &[u8]) -> bool {
    is_ascii_words(b)
}

/// True when every byte is below 0x80; 32 bytes per step, four words OR-ed before one test
/// (std's validation, precompiled for Wasm, costs several times more operators per byte).
fn is_ascii_words(b: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let p = b.as_ptr();
    let mut i = 0;
    while i + 32 <= b.len() {
        // SAFETY: i + 32 <= len: the four unaligned 8-byte reads are inside `b`.
        let any = unsafe {
            let w = |k: usize| (p.add(i + k) as *const u64).read_unaligned();
            w(0) | w(8) | w(16) | w(24)
        };
        if any & HIGH != 0 {
            return false;
        }
        i += 32;
    }
    b[i..].iter().all(|&c| c < 0x80)
}

/// The body of an HTTP/1 message: what follows the blank line, de-chunked when the head
/// says `Transfer-Encoding: chunked` (borrowed when no de-chunking is needed).
pub fn http_body(message: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    use std::borrow::Cow;
    let (end, chunked) = match scan_head(message) {
        Some(h) => h,
        None => return Cow::Borrowed(&[]),
    };
    let body = &message[end..];
    if !chunked {
        return Cow::Borrowed(body);
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let eol = match body[i..].windows(2).position(|w| w == b"\r\n") {
            Some(e) => e,
            None => break,
        };
        let line = String::from_utf8_lossy(&body[i..i + eol]).into_owned();
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        i += eol + 2;
        if size == 0 {
            break;
        }
        let end = (i + size).min(body.len());
        out.extend_from_slice(&body[i..end]);
        i = end + 2;
    }
    Cow::Owned(out)
}

/// The string value of the first `"key": "value"` pair in a JSON text, given as `str` or
/// bytes (no full JSON parser: enough for flat status fields; escapes are kept as written).
pub fn json_str_field<J: AsRef<[u8]> + ?Sized>(json: &J, key: &str) -> Option<String> {
    let json = json.as_ref();
    let key = key.as_bytes();
    let mut from = 0;
    // Each `"` that opens `"key"`: compare the key there (most quotes fail at once).
    let rest = loop {
        let q = from + find_byte(json.get(from..)?, b'"')?;
        let end = q + 1 + key.len();
        if json.get(q + 1..end) == Some(key) && json.get(end) == Some(&b'"') {
            break &json[end + 1..];
        }
        from = q + 1;
    };
    let rest = trim_ws(rest);
    let rest = trim_ws(rest.strip_prefix(b":")?);
    let rest = rest.strip_prefix(b"\"")?;
    let mut i = 0;
    let mut escaped = false;
    while i < rest.len() {
        let b = rest[i];
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            return Some(unescape(&rest[..i]));
        }
        i += 1;
    }
    None
}

fn trim_ws(b: &[u8]) -> &[u8] {
    let n = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    &b[n..]
}

/// Drops the backslash of each escape (the escaped character is kept as written).
fn unescape(raw: &[u8]) -> String {
    if !raw.contains(&b'\\') {
        return text(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut escaped = false;
    for &b in raw {
        if escaped || b != b'\\' {
            out.push(b);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    text(&out)
}

/// The first gRPC message of an HTTP/2 DATA payload (what the host hands `on_http_req` /
/// `on_http_resp` for gRPC): the 5-byte prefix (compressed flag, big-endian length) removed.
/// `None` when the payload is not a complete uncompressed gRPC message.
pub fn grpc_message(data: &[u8]) -> Option<&[u8]> {
    if data.len() < 5 || data[0] != 0 {
        return None;
    }
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    data.get(5..5usize.checked_add(len)?)
}

/// A protobuf varint at `*at`; advances `*at`.
fn pb_varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    let mut shift = 0u32;
    loop {
        let byte = *b.get(*at)?;
        *at += 1;
        if shift >= 64 {
            return None;
        }
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
    }
}

/// The bytes of the first length-delimited field `number` (strings, bytes, nested messages)
/// of a protobuf message, skipping every other field; `None` when absent or malformed.
pub fn protobuf_bytes_field(msg: &[u8], number: u64) -> Option<&[u8]> {
    let mut at = 0;
    while at < msg.len() {
        let key = pb_varint(msg, &mut at)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                pb_varint(msg, &mut at)?;
            }
            1 => at = at.checked_add(8)?,
            2 => {
                let len = pb_varint(msg, &mut at)? as usize;
                let end = at.checked_add(len)?;
                let value = msg.get(at..end)?;
                if field == number {
                    return Some(value);
                }
                at = end;
            }
            5 => at = at.checked_add(4)?,
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_fields() {
        let j = br#"{"OPT_STATUS" : "FAILED","DESC":"a \"b\" c","N":1}"#;
        assert_eq!(json_str_field(&j[..], "OPT_STATUS").as_deref(), Some("FAILED"));
        assert_eq!(json_str_field(&j[..], "DESC").as_deref(), Some("a \"b\" c"));
        assert_eq!(json_str_field(&j[..], "N"), None);
        assert_eq!(json_str_field(&j[..], "MISSING"), None);
        assert_eq!(json_str_field("{\"k\":\"v\"}", "k").as_deref(), Some("v"));
        assert_eq!(json_str_field("{\"kk\":\"x\",\"k\":\"v\"}", "k").as_deref(), Some("v"));
        assert_eq!(json_str_field("{\"k\":\"unterminated", "k"), None);
    }

    #[test]
    fn word_wise_scans_agree_with_byte_loops() {
        for len in 0..80 {
            let mut b: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert_eq!(find_byte(&b, b'\n'), None);
            assert!(is_ascii(&b));
            for at in 0..len {
                let keep = b[at];
                b[at] = b'\n';
                assert_eq!(find_byte(&b, b'\n'), Some(at), "len {} at {}", len, at);
                // A second one later does not matter; 0x0b after 0x0a is no false hit.
                if at + 1 < len {
                    b[at + 1] = b'\n' + 1;
                    assert_eq!(find_byte(&b, b'\n'), Some(at));
                    assert_eq!(find_byte(&b, b'\n' + 1), Some(at + 1));
                }
                b[at] = 0xc3;
                assert!(!is_ascii(&b), "len {} at {}", len, at);
                b[at] = keep;
                if at + 1 < len {
                    b[at + 1] = b'a' + ((at + 1) % 26) as u8;
                }
            }
        }
        assert_eq!(text(b"caf\xc3\xa9 ok"), "caf\u{e9} ok");
        assert_eq!(text(b"bad \xff byte"), "bad \u{fffd} byte");
        assert_eq!(text(&[b'x'; 100]), "x".repeat(100));
    }

    /// The base context as wasm-abi.md section 5.1 lays it out, IPv4 and IPv6.
    #[test]
    fn base_context_decodes_per_the_spec() {
        let mut v4 = vec![4, 10, 0, 0, 1, 10, 0, 0, 2, 0x9c, 0x40, 0, 80, 6, 20, 0];
        v4.extend_from_slice(&1_700_000_000_000_000u64.to_be_bytes());
        v4.extend_from_slice(&[1, 4]);
        v4.extend_from_slice(b"curl");
        v4.extend_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
        v4.extend_from_slice(&1024u16.to_be_bytes());
        assert_eq!(v4.len(), 36 + 4, "section 5.1: 36 + n bytes for IPv4");
        let mut b = Base::empty();
        assert!(Base::decode_into(&v4, &mut b).is_some());
        assert_eq!(b.src_ip, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(b.dst_ip, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!((b.src_port, b.dst_port, b.l4_protocol, b.l7_protocol, b.ebpf_type), (40000, 80, 6, 20, 0));
        assert_eq!((b.time_us, b.direction, b.proc_name.as_str()), (1_700_000_000_000_000, Direction::Response, "curl"));
        assert_eq!((b.flow_id, b.buf_size), (0x0102_0304_0506_0708, 1024));
        // Cut anywhere: rejected, never a panic.
        for n in 0..v4.len() {
            assert!(Base::decode_into(&v4[..n], &mut Base::empty()).is_none(), "cut at {}", n);
        }
        let mut v6 = vec![6];
        v6.extend_from_slice(&"fd00::1".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&"fd00::2".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&[0, 53, 0x9c, 0x41, 17, 0, 255]);
        v6.extend_from_slice(&7u64.to_be_bytes());
        v6.extend_from_slice(&[0, 0]);
        v6.extend_from_slice(&9u64.to_be_bytes());
        v6.extend_from_slice(&512u16.to_be_bytes());
        assert_eq!(v6.len(), 60, "section 5.1: 60 + n bytes for IPv6");
        let mut b = Base::empty();
        assert!(Base::decode_into(&v6, &mut b).is_some());
        assert_eq!(b.dst_ip, "fd00::2".parse::<IpAddr>().unwrap());
        assert_eq!((b.src_port, b.dst_port, b.l4_protocol, b.ebpf_type, b.time_us), (53, 40001, 17, 255, 7));
        assert_eq!((b.direction, b.proc_name.as_str(), b.flow_id, b.buf_size), (Direction::Request, "", 9, 512));
        assert!(Base::decode_into(&[5, 1, 2], &mut Base::empty()).is_none(), "unknown family");
    }

    #[test]
    fn http_bodies() {
        assert_eq!(&http_body(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody")[..], b"body");
        assert_eq!(&http_body(b"HTTP/1.1 200 OK\r\n\r\n")[..], b"");
        assert_eq!(&http_body(b"HTTP/1.1 200 OK\r\nA: b\r\n")[..], b"");
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(&http_body(chunked)[..], b"abcde");
        let last = b"HTTP/1.1 200 OK\r\nA: b\r\ntransfer-encoding: gzip, Chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n";
        assert_eq!(&http_body(last)[..], b"z");
        let not = b"HTTP/1.1 200 OK\r\nX-Transfer-Encoding: chunked\r\n\r\n1\r\nz";
        assert_eq!(&http_body(not)[..], b"1\r\nz");
    }

    #[test]
    fn encoded_len_matches_encode() {
        let mut r = Record::response(Response {
            status: Status::ServerError,
            code: Some(-1),
            result: Some("x".repeat(300)),
            exception: Some("e".into()),
        })
        .attr("op_stat", "FAILED");
        r.req = Some(Request { resource: Some("/a".into()), ..Default::default() });
        r.trace = Some(Trace { trace_id: Some("t".repeat(200)), ..Default::default() });
        r.request_id = Some(300);
        r.is_async = true;
        let e = r.encode();
        assert_eq!(e.len(), r.encoded_len());
        assert_eq!(&e[..2], b"PB");
        assert_eq!(text(b"ok"), "ok");
        assert_eq!(text(b"a\xffb"), "a\u{fffd}b");
        assert_eq!(text("0123456789é".as_bytes()), "0123456789é");
        assert_eq!(text(b"012345678"), "012345678");
        assert_eq!(text(b"01234567\xff"), "01234567\u{fffd}");
    }
}
