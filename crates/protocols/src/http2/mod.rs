//! HTTP/2 (RFC 9113) over cleartext TCP (h2c, or TLS plaintext from the eBPF source) and gRPC
//! on top of it.
//!
//! The framer hands this parser one frame at a time. Header blocks (HEADERS + CONTINUATION)
//! are decoded with a stateful HPACK decoder per connection and direction; each stream's
//! request and response halves are gathered until END_STREAM and then become one message,
//! paired by stream id. DATA is kept (bounded) as the body, so a gRPC request's
//! length-prefixed protobuf messages reach plugins whole, prefix included.
//!
//! Record mapping (as DeepFlow): `:method` -> `request_type`, `:path` -> `request_resource`,
//! `:authority` -> `request_domain`, version `2`; gRPC (content-type `application/grpc*`):
//! protocol `grpc`, endpoint = the method path `/package.Service/Method`, `grpc-status` ->
//! `response_code` and status class, `grpc-message` -> `response_exception`; plain HTTP/2:
//! `:status` -> code and class, endpoint as HTTP/1. Trace headers and `x-request-id` as HTTP/1.
//!
//! A capture that starts mid-connection still yields records: the HPACK decoder skips the
//! dynamic-table entries it never saw, and a message missing fields is flagged `truncated`.

pub mod hpack;

use crate::http1::{endpoint_of, status_of, trace, Http1Config};
use l7tap_core::{
    Direction, Inference, Message, MessageRole, Needed, PairingMode, ParseCtx, ParseError,
    ParseMode, Parsed, Parser, Protocol, ResponseStatus, L4,
};
use std::any::Any;
use std::borrow::Cow;
use std::collections::HashMap;

/// The client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// Body bytes kept per message half (the rest is counted in `body_len`).
const MAX_BODY: usize = 64 << 10;
/// Header block bytes gathered across CONTINUATION frames.
const MAX_BLOCK: usize = 256 << 10;
/// Open stream halves tracked per connection.
const MAX_HALVES: usize = 1024;

fn err(reason: &'static str) -> ParseError {
    ParseError {
        protocol: "http2",
        reason,
    }
}

/// The HTTP/2 and gRPC parser.
#[derive(Debug, Clone, Default)]
pub struct Http2Parser {
    config: Http1Config,
}

impl Http2Parser {
    /// A parser reading trace context and request ids from the headers `config` names.
    pub fn new(config: Http1Config) -> Self {
        Http2Parser { config }
    }
}

/// One direction of one stream, gathered until END_STREAM.
#[derive(Debug, Default)]
struct Half {
    method: Vec<u8>,
    path: Vec<u8>,
    authority: Vec<u8>,
    status: Option<u16>,
    content_type: Vec<u8>,
    grpc_status: Option<i32>,
    grpc_message: Vec<u8>,
    trace: Option<(usize, Vec<u8>, Vec<u8>)>,
    x_request_id: Vec<u8>,
    body: Vec<u8>,
    body_len: u64,
    /// Fields lost: HPACK references to entries never seen, an undecodable block, a body
    /// longer than kept.
    incomplete: bool,
}

/// Per-connection state: the two HPACK decoders and the open stream halves.
#[derive(Debug, Default)]
pub struct H2State {
    hpack: [hpack::Decoder; 2],
    halves: HashMap<(usize, u32), Half>,
    /// A header block still waiting for CONTINUATION frames, per direction:
    /// (stream id, END_STREAM was set on its HEADERS frame, fragment so far).
    block: [Option<(u32, bool, Vec<u8>)>; 2],
    grpc: bool,
}

impl H2State {
    /// References to HPACK entries the decoders never saw, both directions.
    pub fn missing_references(&self) -> u64 {
        self.hpack[0].missing + self.hpack[1].missing
    }
}

fn u24(b: &[u8]) -> usize {
    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
}

/// A frame header that could start a frame (for inference and resync).
fn plausible_frame(p: &[u8]) -> Option<(usize, u8, u8, u32)> {
    if p.len() < 9 {
        return None;
    }
    let len = u24(p);
    let (ty, flags) = (p[3], p[4]);
    let sid = u32::from_be_bytes([p[5], p[6], p[7], p[8]]);
    if sid & 0x8000_0000 != 0 || ty > 9 || len > 1 << 20 {
        return None;
    }
    Some((len, ty, flags, sid))
}

/// gRPC status codes that mean the caller got something wrong (the rest are server errors).
fn grpc_status_class(code: i32) -> ResponseStatus {
    match code {
        0 => ResponseStatus::Ok,
        // CANCELLED, INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED,
        // FAILED_PRECONDITION, OUT_OF_RANGE, UNAUTHENTICATED
        1 | 3 | 5 | 6 | 7 | 9 | 11 | 16 => ResponseStatus::ClientError,
        _ => ResponseStatus::ServerError,
    }
}

impl Http2Parser {
    fn header(&self, h: &mut Half, grpc: &mut bool, name: &[u8], value: &[u8]) {
        match name {
            b":method" => h.method = value.to_vec(),
            b":path" => h.path = value.to_vec(),
            b":authority" => h.authority = value.to_vec(),
            b"host" if h.authority.is_empty() => h.authority = value.to_vec(),
            b":status" => h.status = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok()),
            b"content-type" => {
                if value.starts_with(b"application/grpc") {
                    *grpc = true;
                }
                h.content_type = value.to_vec();
            }
            b"grpc-status" => {
                h.grpc_status = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok())
            }
            b"grpc-message" => h.grpc_message = value.to_vec(),
            _ => {
                if let Some(i) = self
                    .config
                    .trace_headers
                    .iter()
                    .position(|t| t.name.as_bytes() == name)
                {
                    if h.trace.as_ref().is_none_or(|(j, _, _)| i < *j) {
                        if let Some((t, s)) =
                            trace::decode(self.config.trace_headers[i].format, value)
                        {
                            h.trace = Some((i, t.into_owned(), s.into_owned()));
                        }
                    }
                } else if h.x_request_id.is_empty()
                    && self
                        .config
                        .x_request_id_headers
                        .iter()
                        .any(|x| x.as_bytes() == name)
                {
                    h.x_request_id = value.to_vec();
                }
            }
        }
    }

    /// Decodes a complete header block of stream `sid` in direction `d`.
    fn block(&self, st: &mut H2State, d: usize, sid: u32, block: &[u8]) {
        if st.halves.len() >= MAX_HALVES && !st.halves.contains_key(&(d, sid)) {
            // Streams that never ended (lost END_STREAM): forget them rather than grow.
            st.halves.clear();
        }
        let H2State {
            hpack,
            halves,
            grpc,
            ..
        } = st;
        let missing_before = hpack[d].missing;
        let half = halves.entry((d, sid)).or_default();
        let res = hpack[d].decode(block, &mut |n, v| self.header(half, grpc, n, v));
        if res.is_err() || hpack[d].missing != missing_before {
            half.incomplete = true;
        }
    }

    /// A frame cut short (bytes lost in the capture, a snaplen cut, the buffer limit). A DATA
    /// frame's length is in its header, so what is missing is skipped by length and the
    /// connection's framing stays in step: the body counts the frame's declared length, keeps
    /// what arrived, and its message is flagged truncated. (A live capture with the default
    /// 16 KiB snaplen cuts every full-size DATA frame written alone by its 9-byte header.)
    /// Any other frame cut short is an error: a header block cannot be decoded in part, and
    /// HPACK's table would be wrong from there on.
    fn cut_frame<'a>(
        &self,
        input: &'a [u8],
        total: usize,
        ctx: &mut ParseCtx<'_>,
    ) -> Result<Parsed<'a>, ParseError> {
        if input[3] != DATA {
            return Err(err("frame larger than the message buffer"));
        }
        let Some(st) = ctx.state.downcast_mut::<H2State>() else {
            return Err(err("flow state is not HTTP/2 state"));
        };
        let d = ctx.direction.index();
        let flags = input[4];
        let sid = u32::from_be_bytes([input[5], input[6], input[7], input[8]]) & 0x7fff_ffff;
        let mut have = &input[9..];
        let mut declared = total - 9;
        if flags & PADDED != 0 {
            // The padding's length is the first payload byte; cut before it, all of the rest
            // counts (an over-count of at most 255 bytes on a frame already incomplete).
            if let Some(&pad) = have.first() {
                declared = declared.saturating_sub(usize::from(pad) + 1);
                have = &have[1..];
            }
        }
        let half = st.halves.entry((d, sid)).or_default();
        half.body_len += declared as u64;
        let room = MAX_BODY.saturating_sub(half.body.len());
        half.body
            .extend_from_slice(&have[..have.len().min(room).min(declared)]);
        half.incomplete = true;
        if flags & END_STREAM != 0 {
            // len beyond the input: the framer skips the rest of the frame.
            return Ok(self.finish(st, d, sid, total));
        }
        Ok(Parsed::Skip(total))
    }

    /// The stream half ended: its message.
    fn finish(&self, st: &mut H2State, d: usize, sid: u32, frame_len: usize) -> Parsed<'static> {
        let h = st.halves.remove(&(d, sid)).unwrap_or_default();
        let grpc = st.grpc || h.content_type.starts_with(b"application/grpc");
        let mut m = Message {
            len: frame_len,
            version: Cow::Borrowed(b"2"),
            request_id: Some(u64::from(sid)),
            content_type: Cow::Owned(h.content_type),
            body_len: Some(h.body_len),
            body: Cow::Owned(h.body),
            truncated: h.incomplete,
            x_request_id: Cow::Owned(h.x_request_id),
            ..Default::default()
        };
        if let Some((_, t, s)) = h.trace {
            m.trace_id = Cow::Owned(t);
            m.span_id = Cow::Owned(s);
        }
        if d == 0 {
            m.role = Some(MessageRole::Request);
            m.endpoint = Cow::Owned(if grpc {
                h.path.clone()
            } else {
                endpoint_of(&h.path).to_vec()
            });
            m.request_type = Cow::Owned(h.method);
            m.request_resource = Cow::Owned(h.path);
            m.request_domain = Cow::Owned(h.authority);
        } else {
            m.role = Some(MessageRole::Response);
            match (h.grpc_status, h.status) {
                (Some(g), _) => {
                    m.code = Some(g);
                    m.status = grpc_status_class(g);
                    m.exception = Cow::Owned(h.grpc_message);
                }
                (None, Some(s)) if grpc && (200..300).contains(&s) => {
                    // gRPC without trailers (cut capture): the HTTP status is all we have.
                    m.code = Some(i32::from(s));
                    m.status = ResponseStatus::Unknown;
                }
                (None, Some(s)) => {
                    m.code = Some(i32::from(s));
                    m.status = status_of(s);
                }
                (None, None) => m.status = ResponseStatus::Unknown,
            }
        }
        Parsed::Message(m)
    }
}

impl Parser for Http2Parser {
    fn protocol(&self) -> Protocol {
        Protocol::Http2
    }

    fn protocol_of(&self, state: &(dyn Any + Send)) -> Protocol {
        match state.downcast_ref::<H2State>() {
            Some(s) if s.grpc => Protocol::Grpc,
            _ => Protocol::Http2,
        }
    }

    fn supports(&self, l4: L4) -> bool {
        l4.is_stream()
    }

    fn check(&self, payload: &[u8], direction: Direction) -> Option<Inference> {
        let n = payload.len().min(PREFACE.len());
        if n >= 16 && payload[..n] == PREFACE[..n] {
            return Some(Inference {
                confidence: 250,
                role: MessageRole::Request,
            });
        }
        // Mid-connection: a HEADERS frame of a client-initiated (odd) stream, or the
        // server's SETTINGS.
        let (len, ty, flags, sid) = plausible_frame(payload)?;
        match ty {
            HEADERS
                if sid % 2 == 1 && flags & !(END_STREAM | END_HEADERS | PADDED | PRIORITY) == 0 =>
            {
                Some(Inference {
                    confidence: 120,
                    role: if direction == Direction::ClientToServer {
                        MessageRole::Request
                    } else {
                        MessageRole::Response
                    },
                })
            }
            4 if sid == 0
                && len % 6 == 0
                && flags & !1 == 0
                && direction == Direction::ServerToClient =>
            {
                Some(Inference {
                    confidence: 100,
                    role: MessageRole::Response,
                })
            }
            _ => None,
        }
    }

    fn resync(&self, payload: &[u8], _direction: Direction) -> bool {
        payload.starts_with(PREFACE) || plausible_frame(payload).is_some()
    }

    fn pairing(&self) -> PairingMode {
        PairingMode::ById
    }

    fn new_state(&self) -> Box<dyn Any + Send> {
        Box::new(H2State::default())
    }

    fn parse<'a>(&self, input: &'a [u8], ctx: &mut ParseCtx<'_>) -> Result<Parsed<'a>, ParseError> {
        let d = ctx.direction.index();
        if d == 0 {
            if input.starts_with(PREFACE) {
                return Ok(Parsed::Skip(PREFACE.len()));
            }
            if input.len() < PREFACE.len() && PREFACE.starts_with(input) {
                return Ok(Parsed::Incomplete(Needed::Total(PREFACE.len())));
            }
        }
        if input.len() < 9 {
            return Ok(Parsed::Incomplete(Needed::Total(9)));
        }
        let len = u24(input);
        let total = 9 + len;
        if input.len() < total {
            if ctx.mode == ParseMode::Complete {
                return Ok(Parsed::Incomplete(Needed::Total(total)));
            }
            return self.cut_frame(input, total, ctx);
        }
        let Some(st) = ctx.state.downcast_mut::<H2State>() else {
            return Err(err("flow state is not HTTP/2 state"));
        };
        let (ty, flags) = (input[3], input[4]);
        let sid = u32::from_be_bytes([input[5], input[6], input[7], input[8]]) & 0x7fff_ffff;
        let mut payload = &input[9..total];
        if matches!(ty, DATA | HEADERS) && flags & PADDED != 0 {
            let pad = usize::from(
                *payload
                    .first()
                    .ok_or_else(|| err("padded frame without pad length"))?,
            );
            if pad + 1 > payload.len() {
                return Err(err("padding longer than the frame"));
            }
            payload = &payload[1..payload.len() - pad];
        }
        match ty {
            DATA => {
                let half = st.halves.entry((d, sid)).or_default();
                half.body_len += payload.len() as u64;
                let room = MAX_BODY.saturating_sub(half.body.len());
                if payload.len() > room {
                    half.incomplete = true;
                }
                half.body
                    .extend_from_slice(&payload[..payload.len().min(room)]);
                if flags & END_STREAM != 0 {
                    return Ok(self.finish(st, d, sid, total));
                }
            }
            HEADERS => {
                if flags & PRIORITY != 0 {
                    payload = payload
                        .get(5..)
                        .ok_or_else(|| err("short priority block"))?;
                }
                let end_stream = flags & END_STREAM != 0;
                if flags & END_HEADERS == 0 {
                    st.block[d] = Some((sid, end_stream, payload.to_vec()));
                } else {
                    self.block(st, d, sid, payload);
                    if end_stream {
                        return Ok(self.finish(st, d, sid, total));
                    }
                }
            }
            CONTINUATION => {
                let Some((bsid, end_stream, mut block)) = st.block[d].take() else {
                    return Ok(Parsed::Skip(total)); // its HEADERS was before the capture
                };
                if bsid != sid || block.len() + payload.len() > MAX_BLOCK {
                    return Err(err("broken CONTINUATION sequence"));
                }
                block.extend_from_slice(payload);
                if flags & END_HEADERS == 0 {
                    st.block[d] = Some((sid, end_stream, block));
                } else {
                    self.block(st, d, sid, &block);
                    if end_stream {
                        return Ok(self.finish(st, d, sid, total));
                    }
                }
            }
            3 => {
                // RST_STREAM: the stream will not end normally; its halves are dropped.
                st.halves.remove(&(0, sid));
                st.halves.remove(&(1, sid));
            }
            _ => {} // SETTINGS, PING, GOAWAY, WINDOW_UPDATE, PRIORITY, PUSH_PROMISE
        }
        Ok(Parsed::Skip(total))
    }
}

#[cfg(test)]
mod tests;
