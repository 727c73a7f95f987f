//! Message framing across segments: the per-direction stream buffer.

use crate::counters::bump;
use crate::{
    Counters, Direction, DropReason, Message, MessageRole, Needed, ParseCtx, ParseError, ParseMode,
    Parsed, Parser, Remaining, ResponseStatus,
};
use bytes::{Buf, Bytes, BytesMut};
use std::any::Any;
use std::borrow::Cow;

/// One message cut out of a stream, its fields as [`Bytes`] slices of the captured payload.
#[derive(Debug, Clone, Default)]
pub struct FramedMessage {
    /// Request or response.
    pub role: Option<MessageRole>,
    /// Timestamp of the segment that carried the first byte.
    pub start_ns: u64,
    /// Timestamp of the segment that carried the last byte.
    pub end_ns: u64,
    /// The body was cut at `max_message_bytes`.
    pub truncated: bool,
    /// See [`Message::version`].
    pub version: Bytes,
    /// See [`Message::request_type`].
    pub request_type: Bytes,
    /// See [`Message::request_domain`].
    pub request_domain: Bytes,
    /// See [`Message::request_resource`].
    pub request_resource: Bytes,
    /// See [`Message::endpoint`].
    pub endpoint: Bytes,
    /// See [`Message::request_id`].
    pub request_id: Option<u64>,
    /// See [`Message::status`].
    pub status: ResponseStatus,
    /// See [`Message::code`].
    pub code: Option<i32>,
    /// See [`Message::exception`].
    pub exception: Bytes,
    /// See [`Message::result`].
    pub result: Bytes,
    /// See [`Message::trace_id`].
    pub trace_id: Bytes,
    /// See [`Message::span_id`].
    pub span_id: Bytes,
    /// See [`Message::x_request_id`].
    pub x_request_id: Bytes,
    /// See [`Message::content_type`].
    pub content_type: Bytes,
    /// See [`Message::body_len`].
    pub body_len: Option<u64>,
    /// See [`Message::body`].
    pub body: Bytes,
    /// See [`Message::one_way`].
    pub one_way: bool,
    /// The whole message as captured (head and body, at most `max_message_bytes`).
    pub raw: Bytes,
}

/// What the stream buffer produced from a segment.
#[derive(Debug)]
pub enum StreamEvent {
    /// A whole (or truncated) message.
    Message(Box<FramedMessage>),
    /// The parser rejected the input; the buffered bytes were dropped.
    Error(ParseError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    None,
    Bytes(u64),
    ParserDriven,
    UntilClose,
}

/// Frames the messages of one direction of one flow.
///
/// The common case, a segment holding whole messages, parses straight from the segment's
/// [`Bytes`] and never copies. Only a message split over segments is gathered in a bounded
/// buffer (at most `max_message_bytes`); past that the message is cut, flagged truncated and
/// the rest of it skipped, so a 1 GiB download costs 64 KiB.
#[derive(Debug)]
pub struct StreamBuf {
    pending: BytesMut,
    pending_start_ns: u64,
    /// Do not re-parse before the buffer holds this many bytes (the parser said so).
    wait_until: usize,
    next_offset: Option<u64>,
    skip: Skip,
    desync: bool,
    /// Desynchronised and the peer has not spoken since (see [`Parser::resync_after_turn`]).
    await_turn: bool,
}

impl Default for StreamBuf {
    fn default() -> Self {
        StreamBuf {
            pending: BytesMut::new(),
            pending_start_ns: 0,
            wait_until: 0,
            next_offset: None,
            skip: Skip::None,
            desync: false,
            await_turn: false,
        }
    }
}

/// Everything [`StreamBuf::push`] needs besides the payload.
pub struct FrameCtx<'p, 's> {
    /// The flow, oriented client -> server.
    pub flow: crate::FlowKey,
    /// Timestamp of the segment being framed.
    pub ts_ns: u64,
    /// The flow's parser.
    pub parser: &'p dyn Parser,
    /// The parser's per-flow state.
    pub state: &'s mut (dyn Any + Send),
    /// Which way the bytes travel (after role correction).
    pub direction: Direction,
    /// Buffer limit.
    pub max_message_bytes: usize,
    /// Where drops are counted.
    pub counters: &'p Counters,
    /// Emptied message boxes the framer reuses before allocating new ones.
    pub spare: &'s mut Vec<Box<FramedMessage>>,
}

impl StreamBuf {
    /// Bytes currently held.
    pub fn buffered(&self) -> usize {
        self.pending.len()
    }

    /// Drops the partial message (counted as `reason`) and waits for a message start.
    fn reset(&mut self, counters: &Counters, reason: DropReason) {
        if !self.pending.is_empty() {
            counters.count_drop(reason, self.pending.len() as u64);
        }
        self.pending.clear();
        self.wait_until = 0;
        self.skip = Skip::None;
        self.desync = true;
        self.await_turn = true;
    }

    /// The other direction of the flow carried data: whatever this direction sends next
    /// starts after a turn of the conversation.
    pub fn peer_spoke(&mut self) {
        self.await_turn = false;
    }

    /// Feeds one segment's payload. `offset` is its stream offset, `gap_before` the bytes the
    /// source knows are missing before it; `datagram` treats the payload as one whole message.
    /// An empty payload with a gap (a stream source's bytes that were moved but not seen:
    /// sendfile, a snaplen cut) bridges the gap at `ts_ns`, so a message those bytes end is
    /// complete at that time instead of when the next bytes arrive.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        payload: Bytes,
        offset: u64,
        gap_before: u64,
        ts_ns: u64,
        datagram: bool,
        cx: &mut FrameCtx<'_, '_>,
        out: &mut dyn FnMut(StreamEvent),
    ) {
        if datagram {
            if !payload.is_empty() {
                self.push_datagram(payload, ts_ns, cx, out);
            }
            return;
        }
        if payload.is_empty() && gap_before == 0 {
            return;
        }
        let expected = self.next_offset.unwrap_or(offset);
        if gap_before > 0 || expected != offset {
            bump(&cx.counters.gaps, 1);
            let gap = if offset > expected {
                offset - expected
            } else if offset == expected {
                gap_before
            } else {
                0 // overlap or restart: nothing to bridge
            };
            self.bridge_gap(gap, ts_ns, cx, out);
        }
        self.next_offset = Some(offset.wrapping_add(payload.len() as u64));
        if payload.is_empty() {
            return;
        }
        let mut data = payload;

        let k = consume_skip(&mut self.skip, &data, cx);
        data.advance(k);
        if data.is_empty() {
            return;
        }
        if self.desync {
            if (self.await_turn && cx.parser.resync_after_turn())
                || !cx.parser.resync(&data, cx.direction)
            {
                cx.counters
                    .count_drop(DropReason::ResyncBytes, data.len() as u64);
                return;
            }
            self.desync = false;
        }

        if self.pending.is_empty() {
            // Fast path: parse straight from the segment, no copy.
            while !data.is_empty() {
                let res = parse_detached(cx, &data, ParseMode::Complete);
                match res {
                    Ok(Detached::Message(d))
                        if d.len <= data.len() && d.rest == Remaining::None =>
                    {
                        let bytes = data.split_to(d.len.max(1).min(data.len()));
                        out(StreamEvent::Message(
                            d.attach(&bytes, ts_ns, ts_ns, cx.spare),
                        ));
                    }
                    Ok(Detached::Batch(len, ds)) if len <= data.len() => {
                        let bytes = data.split_to(len.clamp(1, data.len()));
                        for d in ds {
                            out(StreamEvent::Message(
                                d.attach(&bytes, ts_ns, ts_ns, cx.spare),
                            ));
                        }
                    }
                    Ok(Detached::Message(_))
                    | Ok(Detached::Batch(..))
                    | Ok(Detached::Incomplete(_)) => break,
                    Ok(Detached::Skip(n)) => data.advance(n.clamp(1, data.len())),
                    Err(e) => {
                        cx.counters
                            .count_drop(DropReason::ParseErrorBytes, data.len() as u64);
                        self.reset(cx.counters, DropReason::ParseErrorBytes);
                        out(StreamEvent::Error(e));
                        return;
                    }
                }
            }
            if data.is_empty() {
                return;
            }
            self.pending_start_ns = ts_ns;
            self.wait_until = 0;
        }
        self.pending.extend_from_slice(&data);
        self.drain_pending(ts_ns, ParseMode::Complete, cx, out);
    }

    /// `gap` bytes are missing before the next payload (capture loss, a snaplen cut, sendfile).
    /// A partial message is emitted as truncated rather than dropped; when the missing bytes
    /// lie inside a message whose length is known, they are skipped by length and the stream
    /// stays in step (no resync, the next message pairs correctly). Otherwise the framing is
    /// reset and the parser resynchronises.
    fn bridge_gap(
        &mut self,
        gap: u64,
        ts_ns: u64,
        cx: &mut FrameCtx<'_, '_>,
        out: &mut dyn FnMut(StreamEvent),
    ) {
        if gap > 0 && !self.desync && !self.pending.is_empty() {
            self.drain_pending(ts_ns, ParseMode::Truncate, cx, out);
        }
        match self.skip {
            Skip::Bytes(n) if gap > 0 && gap <= n && self.pending.is_empty() => {
                self.skip = if gap == n {
                    Skip::None
                } else {
                    Skip::Bytes(n - gap)
                };
            }
            Skip::UntilClose if gap > 0 && self.pending.is_empty() => {}
            // (The missing bytes themselves are the source's count: tcp_gap_bytes,
            // bpf_stream_gap_bytes. Dropped here are the captured bytes that became useless.)
            _ => self.reset(cx.counters, DropReason::GapBytes),
        }
    }

    fn push_datagram(
        &mut self,
        data: Bytes,
        ts_ns: u64,
        cx: &mut FrameCtx<'_, '_>,
        out: &mut dyn FnMut(StreamEvent),
    ) {
        let res = parse_detached(cx, &data, ParseMode::Eof);
        match res {
            Ok(Detached::Message(d)) => {
                let n = d.len.min(data.len());
                let bytes = data.slice(..n);
                out(StreamEvent::Message(
                    d.attach(&bytes, ts_ns, ts_ns, cx.spare),
                ));
            }
            Ok(Detached::Batch(_, ds)) => {
                for d in ds {
                    out(StreamEvent::Message(
                        d.attach(&data, ts_ns, ts_ns, cx.spare),
                    ));
                }
            }
            Ok(Detached::Skip(_)) => {}
            Ok(Detached::Incomplete(_)) => cx
                .counters
                .count_drop(DropReason::IncompleteAtClose, data.len() as u64),
            Err(e) => {
                cx.counters
                    .count_drop(DropReason::ParseErrorBytes, data.len() as u64);
                out(StreamEvent::Error(e));
            }
        }
    }

    /// Parses what is buffered until it runs dry or needs more.
    fn drain_pending(
        &mut self,
        ts_ns: u64,
        mode: ParseMode,
        cx: &mut FrameCtx<'_, '_>,
        out: &mut dyn FnMut(StreamEvent),
    ) {
        loop {
            if self.pending.is_empty() {
                self.wait_until = 0;
                return;
            }
            let full = self.pending.len() >= cx.max_message_bytes;
            if mode == ParseMode::Complete && !full && self.pending.len() < self.wait_until {
                return;
            }
            let this_mode = if mode == ParseMode::Complete && full {
                ParseMode::Truncate
            } else {
                mode
            };
            // A cut message keeps exactly the first `max_message_bytes`; what is buffered
            // beyond belongs to the skipped rest (or to the next message).
            let view = if this_mode == ParseMode::Truncate {
                cx.max_message_bytes.min(self.pending.len())
            } else {
                self.pending.len()
            };
            let res = parse_detached(cx, &self.pending[..view], this_mode);
            match res {
                Ok(Detached::Batch(len, ds)) => {
                    let bytes = self.pending.split_to(len.clamp(1, view)).freeze();
                    for d in ds {
                        out(StreamEvent::Message(d.attach(
                            &bytes,
                            self.pending_start_ns,
                            ts_ns,
                            cx.spare,
                        )));
                    }
                    self.pending_start_ns = ts_ns;
                    self.wait_until = 0;
                }
                Ok(Detached::Message(d)) => {
                    let avail = view;
                    let take = d.len.clamp(1, avail);
                    let bytes = self.pending.split_to(take).freeze();
                    let truncated = d.truncated || d.len > avail || d.rest != Remaining::None;
                    if truncated {
                        bump(&cx.counters.messages_truncated, 1);
                        match d.rest {
                            Remaining::None | Remaining::Known => {
                                if d.len > avail {
                                    self.skip = Skip::Bytes((d.len - avail) as u64);
                                }
                            }
                            Remaining::ParserDriven => self.skip = Skip::ParserDriven,
                            Remaining::UntilClose => self.skip = Skip::UntilClose,
                        }
                    }
                    let mut m = d.attach(&bytes, self.pending_start_ns, ts_ns, cx.spare);
                    m.truncated |= truncated;
                    out(StreamEvent::Message(m));
                    self.pending_start_ns = ts_ns;
                    self.wait_until = 0;
                    if self.skip != Skip::None {
                        // Anything still buffered belongs to the skipped part.
                        self.skip_buffered(cx);
                    }
                }
                Ok(Detached::Skip(n)) => {
                    if n > self.pending.len() && this_mode != ParseMode::Complete {
                        // Nothing to record in a unit cut short whose length is known (an
                        // HTTP/2 DATA frame): its missing bytes are skipped by length.
                        self.skip = Skip::Bytes((n - self.pending.len()) as u64);
                        self.pending.clear();
                    } else {
                        self.pending.advance(n.clamp(1, self.pending.len()));
                    }
                    self.pending_start_ns = ts_ns;
                }
                Ok(Detached::Incomplete(needed)) => {
                    match (this_mode, needed) {
                        (ParseMode::Complete, Needed::Total(n)) => self.wait_until = n,
                        (ParseMode::Complete, _) => self.wait_until = self.pending.len() + 1,
                        (ParseMode::Truncate, _) if view < cx.max_message_bytes => {
                            // Cut by a gap before its head was complete: nothing to report.
                            self.reset(cx.counters, DropReason::GapBytes);
                        }
                        (ParseMode::Truncate, _) => {
                            // Not even the head fits in the limit: nothing sensible to report.
                            let e = ParseError {
                                protocol: "framing",
                                reason: "message head exceeds max_message_bytes",
                            };
                            self.reset(cx.counters, DropReason::ParseErrorBytes);
                            out(StreamEvent::Error(e));
                        }
                        (ParseMode::Eof, _) => {
                            self.reset(cx.counters, DropReason::IncompleteAtClose)
                        }
                    }
                    return;
                }
                Err(e) => {
                    self.reset(cx.counters, DropReason::ParseErrorBytes);
                    out(StreamEvent::Error(e));
                    return;
                }
            }
        }
    }

    fn skip_buffered(&mut self, cx: &mut FrameCtx<'_, '_>) {
        let k = consume_skip(&mut self.skip, &self.pending, cx);
        self.pending.advance(k);
    }

    /// True when part of a message is buffered.
    pub fn has_partial(&self) -> bool {
        !self.pending.is_empty() && !self.desync
    }

    /// The peer answered, so the buffered partial message is as complete as it will get:
    /// parse it as final (flagged truncated when cut) and wait for a new message start.
    pub fn force_finish(
        &mut self,
        ts_ns: u64,
        cx: &mut FrameCtx<'_, '_>,
        out: &mut dyn FnMut(StreamEvent),
    ) {
        if self.has_partial() {
            self.drain_pending(ts_ns, ParseMode::Eof, cx, out);
            if !self.pending.is_empty() {
                cx.counters
                    .count_drop(DropReason::IncompleteAtClose, self.pending.len() as u64);
                self.pending.clear();
            }
            self.desync = true;
            self.skip = Skip::None;
        }
    }

    /// The connection closed: parse what is buffered as final (bodies that run until close).
    pub fn finish(
        &mut self,
        ts_ns: u64,
        cx: &mut FrameCtx<'_, '_>,
        out: &mut dyn FnMut(StreamEvent),
    ) {
        if !self.desync && !self.pending.is_empty() {
            self.drain_pending(ts_ns, ParseMode::Eof, cx, out);
        }
        if !self.pending.is_empty() {
            cx.counters
                .count_drop(DropReason::IncompleteAtClose, self.pending.len() as u64);
            self.pending.clear();
        }
    }
}

/// How many bytes at the start of `buf` belong to the rest of a cut message (counted as
/// truncated bytes); updates what is left to skip.
fn consume_skip(skip: &mut Skip, buf: &[u8], cx: &mut FrameCtx<'_, '_>) -> usize {
    let k = match *skip {
        Skip::None => 0,
        Skip::Bytes(n) => {
            let k = (n.min(buf.len() as u64)) as usize;
            *skip = if k as u64 == n {
                Skip::None
            } else {
                Skip::Bytes(n - k as u64)
            };
            k
        }
        Skip::ParserDriven => {
            let p = cx.parser.skip(buf, cx.state);
            if p.done {
                *skip = Skip::None;
            }
            p.consumed.min(buf.len())
        }
        Skip::UntilClose => buf.len(),
    };
    if k > 0 {
        cx.counters.count_drop(DropReason::TruncatedBytes, k as u64);
    }
    k
}

/// Runs the parser and turns its borrowed answer into ranges of `input`.
fn parse_detached(
    cx: &mut FrameCtx<'_, '_>,
    input: &[u8],
    mode: ParseMode,
) -> Result<Detached, ParseError> {
    let mut pcx = ParseCtx {
        flow: cx.flow,
        ts_ns: cx.ts_ns,
        direction: cx.direction,
        mode,
        state: &mut *cx.state,
    };
    cx.parser.parse(input, &mut pcx).map(|p| detach(p, input))
}

/// A slice of the parse input, or bytes the parser had to make.
#[derive(Debug, Clone)]
enum Piece {
    Empty,
    Range(usize, usize),
    Owned(Bytes),
}

impl Piece {
    fn of(field: &[u8], base: &[u8]) -> Piece {
        if field.is_empty() {
            return Piece::Empty;
        }
        let b = base.as_ptr() as usize;
        let f = field.as_ptr() as usize;
        if f >= b && f + field.len() <= b + base.len() {
            Piece::Range(f - b, f - b + field.len())
        } else {
            Piece::Owned(Bytes::copy_from_slice(field))
        }
    }

    fn of_cow(field: Cow<'_, [u8]>, base: &[u8]) -> Piece {
        match field {
            Cow::Borrowed(f) => Piece::of(f, base),
            Cow::Owned(v) if v.is_empty() => Piece::Empty,
            Cow::Owned(v) => Piece::Owned(Bytes::from(v)),
        }
    }

    fn get(&self, bytes: &Bytes) -> Bytes {
        match self {
            Piece::Empty => Bytes::new(),
            Piece::Range(a, b) if *b <= bytes.len() && a < b => bytes.slice(*a..*b),
            // Points past what was kept (a cut message): keep what is there.
            Piece::Range(a, _) if *a < bytes.len() => bytes.slice(*a..),
            Piece::Range(..) => Bytes::new(),
            Piece::Owned(b) => b.clone(),
        }
    }
}

/// A message whose borrowed fields were turned into ranges, so the buffer can be split.
struct DetachedMessage {
    role: Option<MessageRole>,
    len: usize,
    rest: Remaining,
    truncated: bool,
    request_id: Option<u64>,
    status: ResponseStatus,
    code: Option<i32>,
    body_len: Option<u64>,
    one_way: bool,
    // version, type, domain, resource, endpoint, exception, result, trace, span, xrid, ctype, body
    pieces: [Piece; 12],
}

// Not boxed: a detached message lives for one parse step, and moving ~300 bytes costs less
// than a heap allocation and its free per message.
#[allow(clippy::large_enum_variant)]
enum Detached {
    Message(DetachedMessage),
    Batch(usize, Vec<DetachedMessage>),
    Skip(usize),
    Incomplete(Needed),
}

fn detach(p: Parsed<'_>, base: &[u8]) -> Detached {
    match p {
        Parsed::Skip(n) => Detached::Skip(n),
        Parsed::Incomplete(n) => Detached::Incomplete(n),
        Parsed::Messages(len, ms) => {
            Detached::Batch(len, ms.into_iter().map(|m| detach_one(m, base)).collect())
        }
        Parsed::Message(m) => Detached::Message(detach_one(m, base)),
    }
}

fn detach_one(m: Message<'_>, base: &[u8]) -> DetachedMessage {
    {
        {
            let Message {
                role,
                len,
                rest,
                truncated,
                version,
                request_type,
                request_domain,
                request_resource,
                endpoint,
                request_id,
                status,
                code,
                exception,
                result,
                trace_id,
                span_id,
                x_request_id,
                content_type,
                body_len,
                body,
                one_way,
            } = m;
            DetachedMessage {
                role,
                len,
                rest,
                truncated,
                request_id,
                status,
                code,
                body_len,
                one_way,
                pieces: [
                    Piece::of_cow(version, base),
                    Piece::of_cow(request_type, base),
                    Piece::of_cow(request_domain, base),
                    Piece::of_cow(request_resource, base),
                    Piece::of_cow(endpoint, base),
                    Piece::of_cow(exception, base),
                    Piece::of_cow(result, base),
                    Piece::of_cow(trace_id, base),
                    Piece::of_cow(span_id, base),
                    Piece::of_cow(x_request_id, base),
                    Piece::of_cow(content_type, base),
                    Piece::of_cow(body, base),
                ],
            }
        }
    }
}

impl DetachedMessage {
    /// The message as record fields (slices of `bytes`), in a box from `spare` when there
    /// is one.
    #[allow(clippy::vec_box)] // the boxes are what is reused
    fn attach(
        &self,
        bytes: &Bytes,
        start_ns: u64,
        end_ns: u64,
        spare: &mut Vec<Box<FramedMessage>>,
    ) -> Box<FramedMessage> {
        let p = &self.pieces;
        let m = FramedMessage {
            role: self.role,
            start_ns,
            end_ns,
            truncated: self.truncated,
            version: p[0].get(bytes),
            request_type: p[1].get(bytes),
            request_domain: p[2].get(bytes),
            request_resource: p[3].get(bytes),
            endpoint: p[4].get(bytes),
            request_id: self.request_id,
            status: self.status,
            code: self.code,
            exception: p[5].get(bytes),
            result: p[6].get(bytes),
            trace_id: p[7].get(bytes),
            span_id: p[8].get(bytes),
            x_request_id: p[9].get(bytes),
            content_type: p[10].get(bytes),
            body_len: self.body_len,
            body: p[11].get(bytes),
            one_way: self.one_way,
            raw: bytes.clone(),
        };
        match spare.pop() {
            Some(mut b) => {
                *b = m;
                b
            }
            None => Box::new(m),
        }
    }
}
