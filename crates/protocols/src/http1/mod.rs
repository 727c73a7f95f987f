//! HTTP/1.0 and HTTP/1.1 (RFC 9112): requests and responses, keep-alive and pipelining,
//! `Content-Length` and chunked bodies, `Expect: 100-continue`, HEAD and 204/304 responses
//! without body, bodies that run until the connection closes.
//!
//! Record mapping: method -> `request_type`, Host -> `request_domain`, request target ->
//! `request_resource`, first two path segments -> `endpoint` (as DeepFlow), `1.1` ->
//! `version`, status code -> `response_code` and class, reason phrase of 4xx/5xx ->
//! `response_exception`, body lengths -> `req_len`/`resp_len`, trace headers -> `trace_id`
//! and `span_id`, `x-request-id` -> `x_request_id`.

pub mod chunked;
pub mod head;
pub mod trace;

use crate::helpers::{is_token, list_contains, list_last, parse_u64, trim_ows};
use chunked::ChunkMachine;
use l7tap_core::{
    Direction, Inference, Message, MessageRole, Needed, PairingMode, ParseCtx, ParseError,
    ParseMode, Parsed, Parser, Protocol, Remaining, ResponseStatus, SkipProgress, L4,
};
use std::any::Any;
use std::borrow::Cow;
use std::collections::VecDeque;

pub use trace::TraceHeaderFormat;

/// A header that carries trace context, and its format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceHeader {
    /// Header name, lower case.
    pub name: String,
    /// How its value is laid out.
    pub format: TraceHeaderFormat,
}

/// Which headers the HTTP/1 parser reads trace context and request ids from.
#[derive(Debug, Clone)]
pub struct Http1Config {
    /// Trace headers, tried in order; the first one present and well-formed wins.
    pub trace_headers: Vec<TraceHeader>,
    /// Request id headers, tried in order.
    pub x_request_id_headers: Vec<String>,
}

impl Default for Http1Config {
    fn default() -> Self {
        let th = |name: &str, format| TraceHeader {
            name: name.into(),
            format,
        };
        Http1Config {
            trace_headers: vec![
                th("traceparent", TraceHeaderFormat::TraceParent),
                th("sw8", TraceHeaderFormat::Sw8),
                th("uber-trace-id", TraceHeaderFormat::Uber),
            ],
            x_request_id_headers: vec!["x-request-id".into()],
        }
    }
}

/// The HTTP/1 parser.
#[derive(Debug, Clone)]
pub struct Http1Parser {
    config: Http1Config,
    /// Finds the blank line ending a head (built once: building it costs more than a search).
    head_end: memchr::memmem::Finder<'static>,
    /// Bit n set: some configured trace or request-id header name is n bytes long. Lets the
    /// header loop skip the name comparisons for almost every header.
    name_lens: u64,
}

impl Default for Http1Parser {
    fn default() -> Self {
        Http1Parser::new(Http1Config::default())
    }
}

impl Http1Parser {
    /// A parser reading trace context and request ids from the configured headers.
    pub fn new(config: Http1Config) -> Self {
        let mut config = config;
        for t in &mut config.trace_headers {
            t.name.make_ascii_lowercase();
        }
        for x in &mut config.x_request_id_headers {
            x.make_ascii_lowercase();
        }
        let mut name_lens = 0u64;
        let names = config
            .trace_headers
            .iter()
            .map(|t| t.name.len())
            .chain(config.x_request_id_headers.iter().map(String::len));
        for n in names {
            // Names of 64 bytes or more share the top bit: still compared, never missed.
            name_lens |= 1 << n.min(63);
        }
        Http1Parser {
            config,
            head_end: memchr::memmem::Finder::new(b"\r\n\r\n"),
            name_lens,
        }
    }
}

/// Most HEAD requests remembered per flow while waiting for their responses.
const MAX_PENDING_METHODS: usize = 1024;

/// Per-flow HTTP/1 state.
#[derive(Debug, Default)]
struct Http1State {
    /// For each request awaiting its response: was it HEAD (its response has no body)?
    head_requests: VecDeque<bool>,
    /// Skips the rest of a truncated chunked body.
    skipper: ChunkMachine,
}

const METHODS: [&[u8]; 9] = [
    b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"TRACE", b"CONNECT",
];

fn err(reason: &'static str) -> ParseError {
    ParseError {
        protocol: "http1",
        reason,
    }
}

/// Header fields the record needs; everything borrows from the input.
#[derive(Default)]
struct Fields<'a> {
    host: &'a [u8],
    content_length: Option<u64>,
    chunked: bool,
    content_type: &'a [u8],
    x_request_id: &'a [u8],
    /// Index into the configured trace headers of the best one found, and its ids.
    trace: Option<(usize, trace::TraceIds<'a>)>,
}

impl Http1Parser {
    fn read_headers<'a>(&self, mut rest: &'a [u8]) -> Result<Fields<'a>, ParseError> {
        let mut f = Fields::default();
        while !rest.is_empty() {
            let (line, next) = match memchr::memchr(b'\n', rest) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &rest[rest.len()..]),
            };
            rest = next;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                break;
            }
            if line[0] == b' ' || line[0] == b'\t' {
                continue; // obs-fold continuation of the previous value: nothing we read
            }
            // An observer is lenient where a server would be strict: the name only has to
            // end at a colon; it is compared byte for byte only when its length is one we
            // read (so junk names are never matched, just skipped).
            let Some(colon) = memchr::memchr(b':', line) else {
                return Err(err("malformed header line"));
            };
            let name = &line[..colon];
            if name.is_empty() || !is_token(name[0]) {
                return Err(err("malformed header line"));
            }
            let value = || trim_ows(&line[colon + 1..]);
            match name.len() {
                4 if name.eq_ignore_ascii_case(b"host") => f.host = value(),
                12 if name.eq_ignore_ascii_case(b"content-type") => f.content_type = value(),
                14 if name.eq_ignore_ascii_case(b"content-length") => {
                    let n = parse_u64(value()).ok_or_else(|| err("bad Content-Length"))?;
                    if f.content_length.is_some_and(|old| old != n) {
                        return Err(err("conflicting Content-Length headers"));
                    }
                    f.content_length = Some(n);
                }
                17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                    let v = value();
                    f.chunked = list_last(v).eq_ignore_ascii_case(b"chunked")
                        || list_contains(v, b"chunked")
                }
                n if self.name_lens & (1 << n.min(63)) == 0 => {}
                _ => {
                    if f.x_request_id.is_empty()
                        && self
                            .config
                            .x_request_id_headers
                            .iter()
                            .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
                    {
                        f.x_request_id = value();
                    }
                    if let Some(i) = self
                        .config
                        .trace_headers
                        .iter()
                        .position(|t| name.eq_ignore_ascii_case(t.name.as_bytes()))
                    {
                        if f.trace.as_ref().is_none_or(|(j, _)| i < *j) {
                            if let Some(ids) =
                                trace::decode(self.config.trace_headers[i].format, value())
                            {
                                f.trace = Some((i, ids));
                            }
                        }
                    }
                }
            }
        }
        Ok(f)
    }
}

/// The first two segments of the path, without query: DeepFlow's HTTP endpoint.
pub fn endpoint_of(target: &[u8]) -> &[u8] {
    let mut path = target;
    for scheme in [&b"http://"[..], b"https://"] {
        if path.len() > scheme.len() && path[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let after = &path[scheme.len()..];
            path = match memchr::memchr(b'/', after) {
                Some(i) => &after[i..],
                None => b"/",
            };
            break;
        }
    }
    let end = memchr::memchr2(b'?', b'#', path).unwrap_or(path.len());
    let path = &path[..end];
    let mut slashes = 0;
    for (i, &b) in path.iter().enumerate() {
        if b == b'/' {
            slashes += 1;
            if slashes == 3 {
                return &path[..i];
            }
        }
    }
    path
}

/// Status class of an HTTP status code.
pub fn status_of(code: u16) -> ResponseStatus {
    match code {
        100..=399 => ResponseStatus::Ok,
        400..=499 => ResponseStatus::ClientError,
        500..=599 => ResponseStatus::ServerError,
        _ => ResponseStatus::Unknown,
    }
}

/// Quick validation of what is there of the first line, so a garbage stream fails fast
/// instead of being buffered up to the limit.
fn plausible_start(input: &[u8]) -> bool {
    if input.starts_with(b"HTTP/") || b"HTTP/".starts_with(&input[..input.len().min(5)]) {
        return true;
    }
    let n = input.iter().take(17).take_while(|&&b| is_token(b)).count();
    n > 0 && (n == input.len() || (n < 17 && input[n] == b' '))
}

enum Body<'a> {
    Done {
        len: usize,
        body: Cow<'a, [u8]>,
        body_len: u64,
    },
    Partial {
        len: usize,
        body: Cow<'a, [u8]>,
        body_len: u64,
        rest: Remaining,
    },
    Need(Needed),
}

fn collect<'a>(first: &mut Option<&'a [u8]>, owned: &mut Option<Vec<u8>>, d: &'a [u8]) {
    if let Some(v) = owned {
        v.extend_from_slice(d);
    } else if let Some(f) = first.take() {
        let mut v = Vec::with_capacity(f.len() + d.len());
        v.extend_from_slice(f);
        v.extend_from_slice(d);
        *owned = Some(v);
    } else {
        *first = Some(d);
    }
}

impl Http1Parser {
    fn body<'a>(
        &self,
        input: &'a [u8],
        head_len: usize,
        framing: Framing,
        mode: ParseMode,
        state: &mut Http1State,
    ) -> Result<Body<'a>, ParseError> {
        let avail = &input[head_len..];
        match framing {
            Framing::Empty => Ok(Body::Done {
                len: head_len,
                body: Cow::Borrowed(&[]),
                body_len: 0,
            }),
            Framing::Length(n) => {
                let total = usize::try_from(n)
                    .ok()
                    .and_then(|n| n.checked_add(head_len))
                    .ok_or_else(|| err("Content-Length too large"))?;
                if input.len() >= total {
                    Ok(Body::Done {
                        len: total,
                        body: Cow::Borrowed(&input[head_len..total]),
                        body_len: n,
                    })
                } else {
                    match mode {
                        ParseMode::Complete => Ok(Body::Need(Needed::Total(total))),
                        ParseMode::Truncate => Ok(Body::Partial {
                            len: total,
                            body: Cow::Borrowed(avail),
                            body_len: n,
                            rest: Remaining::Known,
                        }),
                        ParseMode::Eof => Ok(Body::Partial {
                            len: input.len(),
                            body: Cow::Borrowed(avail),
                            body_len: n,
                            rest: Remaining::None,
                        }),
                    }
                }
            }
            Framing::Chunked => {
                let mut m = ChunkMachine::default();
                let (mut first, mut owned) = (None, None);
                let used = m
                    .feed(avail, |d| collect(&mut first, &mut owned, d))
                    .map_err(|e| err(e.0))?;
                let body = match owned {
                    Some(v) => Cow::Owned(v),
                    None => Cow::Borrowed(first.unwrap_or_default()),
                };
                if m.done() {
                    return Ok(Body::Done {
                        len: head_len + used,
                        body,
                        body_len: m.body_len,
                    });
                }
                match mode {
                    ParseMode::Complete => Ok(Body::Need(Needed::Total(
                        input.len().saturating_add(m.min_remaining()),
                    ))),
                    ParseMode::Truncate => {
                        state.skipper = m;
                        Ok(Body::Partial {
                            len: input.len(),
                            body,
                            body_len: m.body_len,
                            rest: Remaining::ParserDriven,
                        })
                    }
                    ParseMode::Eof => Ok(Body::Partial {
                        len: input.len(),
                        body,
                        body_len: m.body_len,
                        rest: Remaining::None,
                    }),
                }
            }
            Framing::UntilClose => match mode {
                ParseMode::Complete => Ok(Body::Need(Needed::UntilClose)),
                ParseMode::Truncate => Ok(Body::Partial {
                    len: input.len(),
                    body: Cow::Borrowed(avail),
                    body_len: avail.len() as u64,
                    rest: Remaining::UntilClose,
                }),
                ParseMode::Eof => Ok(Body::Done {
                    len: input.len(),
                    body: Cow::Borrowed(avail),
                    body_len: avail.len() as u64,
                }),
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

impl Parser for Http1Parser {
    fn protocol(&self) -> Protocol {
        Protocol::Http1
    }

    fn supports(&self, l4: L4) -> bool {
        l4.is_stream()
    }

    fn check(&self, payload: &[u8], _direction: Direction) -> Option<Inference> {
        if payload.len() >= 12 && payload.starts_with(b"HTTP/1.") && payload[8] == b' ' {
            if payload[9..12].iter().all(u8::is_ascii_digit) {
                return Some(Inference {
                    confidence: 200,
                    role: MessageRole::Response,
                });
            }
            return None;
        }
        let sp = payload.iter().take(9).position(|&b| b == b' ')?;
        let method = &payload[..sp];
        if !METHODS.contains(&method) {
            return None;
        }
        // The target must start like one, and the line, when complete, must end in HTTP/1.x.
        let rest = &payload[sp + 1..];
        if !rest.is_empty() && method != b"CONNECT" && !matches!(rest[0], b'/' | b'*' | b'h' | b'H')
        {
            return None;
        }
        if let Some(eol) = memchr::memchr(b'\n', rest) {
            let line = rest[..eol].strip_suffix(b"\r").unwrap_or(&rest[..eol]);
            if !(line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0")) {
                return None;
            }
        }
        Some(Inference {
            confidence: 200,
            role: MessageRole::Request,
        })
    }

    fn pairing(&self) -> PairingMode {
        PairingMode::Sequential
    }

    fn new_state(&self) -> Box<dyn Any + Send> {
        Box::new(Http1State::default())
    }

    fn parse<'a>(&self, input: &'a [u8], ctx: &mut ParseCtx<'_>) -> Result<Parsed<'a>, ParseError> {
        let Some(state) = ctx.state.downcast_mut::<Http1State>() else {
            return Err(err("flow state is not HTTP/1 state"));
        };
        let (head, head_len, head_complete) = match self.head_end.find(input) {
            Some(i) => (&input[..i + 4], i + 4, true),
            None => {
                if !plausible_start(input) {
                    return Err(err("not an HTTP/1 message start"));
                }
                // At close (or when the peer already answered) a head cut short by capture
                // loss still tells method, path and the headers before the cut.
                match (ctx.mode, memchr::memrchr(b'\n', input)) {
                    (ParseMode::Eof, Some(i)) => (&input[..=i], input.len(), false),
                    _ => return Ok(Parsed::Incomplete(Needed::Unknown)),
                }
            }
        };
        let line_end = memchr::memchr(b'\n', head).unwrap_or(head.len());
        let first = head[..line_end]
            .strip_suffix(b"\r")
            .unwrap_or(&head[..line_end]);
        let headers = &head[(line_end + 1).min(head.len())..];
        let mut f = self.read_headers(headers)?;

        let (trace_id, span_id) = match f.trace.take() {
            Some((_, ids)) => ids,
            None => (Cow::Borrowed(&[][..]), Cow::Borrowed(&[][..])),
        };

        let mut msg = Message {
            trace_id,
            span_id,
            x_request_id: f.x_request_id.into(),
            content_type: f.content_type.into(),
            ..Default::default()
        };

        let framing = if first.starts_with(b"HTTP/") {
            let (_, (version, code, reason)) =
                head::status_line(first).map_err(|_| err("malformed status line"))?;
            let code_n = parse_u64(code).unwrap_or(0) as u16;
            if (100..200).contains(&code_n) && code_n != 101 {
                // Interim response (100 Continue, 103 Early Hints): the final one follows.
                return Ok(Parsed::Skip(head_len));
            }
            let after_head = state.head_requests.front().copied().unwrap_or(false);
            msg.role = Some(MessageRole::Response);
            msg.version = version.into();
            msg.code = Some(i32::from(code_n));
            msg.status = status_of(code_n);
            if matches!(
                msg.status,
                ResponseStatus::ClientError | ResponseStatus::ServerError
            ) {
                msg.exception = reason.into();
            }
            if after_head || code_n == 204 || code_n == 304 || code_n == 101 {
                Framing::Empty
            } else if f.chunked {
                Framing::Chunked
            } else if let Some(n) = f.content_length {
                Framing::Length(n)
            } else {
                Framing::UntilClose
            }
        } else {
            let (_, (method, target, version)) =
                head::request_line(first).map_err(|_| err("malformed request line"))?;
            msg.role = Some(MessageRole::Request);
            msg.version = version.into();
            msg.request_type = method.into();
            msg.request_resource = target.into();
            msg.endpoint = endpoint_of(target).into();
            msg.request_domain = f.host.into();
            if f.chunked {
                Framing::Chunked
            } else {
                Framing::Length(f.content_length.unwrap_or(0))
            }
        };

        let framing = if head_complete {
            framing
        } else {
            Framing::Empty
        };
        let (len, body, body_len, rest, truncated) =
            match self.body(input, head_len, framing, ctx.mode, state)? {
                Body::Need(n) => return Ok(Parsed::Incomplete(n)),
                Body::Done {
                    len,
                    body,
                    body_len,
                } => (len, body, body_len, Remaining::None, false),
                Body::Partial {
                    len,
                    body,
                    body_len,
                    rest,
                } => (len, body, body_len, rest, true),
            };
        msg.len = len;
        msg.body = body;
        msg.body_len = if head_complete {
            Some(body_len)
        } else {
            f.content_length
        };
        msg.rest = rest;
        msg.truncated = truncated || !head_complete;
        match msg.role {
            Some(MessageRole::Request) => {
                if state.head_requests.len() >= MAX_PENDING_METHODS {
                    state.head_requests.pop_front();
                }
                state.head_requests.push_back(*msg.request_type == *b"HEAD");
            }
            _ => {
                state.head_requests.pop_front();
            }
        }
        Ok(Parsed::Message(msg))
    }

    fn skip(&self, input: &[u8], state: &mut (dyn Any + Send)) -> SkipProgress {
        let Some(state) = state.downcast_mut::<Http1State>() else {
            return SkipProgress {
                consumed: input.len(),
                done: true,
            };
        };
        match state.skipper.feed(input, |_| {}) {
            Ok(n) => SkipProgress {
                consumed: n,
                done: state.skipper.done(),
            },
            // A broken chunk stream: give up on this body; the framer resynchronises.
            Err(_) => SkipProgress {
                consumed: input.len(),
                done: true,
            },
        }
    }
}

#[cfg(test)]
mod tests;
