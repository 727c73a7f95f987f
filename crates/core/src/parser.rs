//! The trait every protocol implements, and what parsing returns.

use crate::{Direction, FlowKey, PairingMode, Protocol, ResponseStatus, L4};
use std::any::Any;
use std::borrow::Cow;

/// How sure an inference check is; higher wins, ties go to the earlier parser, and 200 or
/// more is certain: parsers after it (plugins come last) are not asked.
pub type Confidence = u8;

/// The verdict of a cheap inference check on a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inference {
    /// How sure the check is (0..=255).
    pub confidence: Confidence,
    /// Whether the payload looks like a request or a response. A response seen from the
    /// side the source took for the client tells the flow table to swap the roles.
    pub role: MessageRole,
}

/// Whether a message asks or answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageRole {
    /// Client to server.
    Request,
    /// Server to client.
    Response,
}

/// How much more input a message needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needed {
    /// Not known yet (e.g. the head is not complete).
    Unknown,
    /// The whole message is this many bytes long (head + body).
    Total(usize),
    /// The message ends when the connection closes (HTTP/1.0 bodies without length).
    UntilClose,
}

/// How the parser is being asked to read the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseMode {
    /// Return a message only when it is complete.
    Complete,
    /// The buffer reached `max_message_bytes`: return what can be read of the message now,
    /// flagged truncated, and say in [`Message::rest`] how the rest is skipped.
    Truncate,
    /// The connection closed: the input is all there will ever be.
    Eof,
}

/// Parsing context handed to [`Parser::parse`].
pub struct ParseCtx<'s> {
    /// The flow, oriented client -> server.
    pub flow: FlowKey,
    /// Timestamp of the segment being parsed, ns.
    pub ts_ns: u64,
    /// Which way the input travels.
    pub direction: Direction,
    /// How to read it.
    pub mode: ParseMode,
    /// The parser's per-flow state, created by [`Parser::new_state`].
    pub state: &'s mut (dyn Any + Send),
}

impl<'s> ParseCtx<'s> {
    /// A context on an unspecified flow at time 0 (tests, benches, tools that parse a message
    /// on its own).
    pub fn new(direction: Direction, mode: ParseMode, state: &'s mut (dyn Any + Send)) -> Self {
        ParseCtx {
            flow: FlowKey::default(),
            ts_ns: 0,
            direction,
            mode,
            state,
        }
    }
}

/// How the remainder of a truncated message is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Remaining {
    /// Nothing left: [`Message::len`] bytes cover the message.
    #[default]
    None,
    /// The message goes on for [`Message::len`] bytes in total; the framer skips what is
    /// beyond the buffer itself.
    Known,
    /// Only the parser knows where it ends (chunked bodies): the framer hands it the
    /// following bytes through [`Parser::skip`] until it says done.
    ParserDriven,
    /// The message runs until the connection closes.
    UntilClose,
}

/// The result of skipping the rest of a truncated message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkipProgress {
    /// Bytes of the input that belong to the skipped message.
    pub consumed: usize,
    /// The message ended within the input.
    pub done: bool,
}

/// One parsed message, borrowing from the input (zero-copy).
///
/// Empty slices mean "absent". Fields that need decoding (base64 in `sw8`, chunked bodies)
/// are `Cow::Owned`; everything else borrows.
#[derive(Debug, Clone, Default)]
pub struct Message<'a> {
    /// Request or response.
    pub role: Option<MessageRole>,
    /// Bytes of the stream this message occupies (head + body). In [`ParseMode::Truncate`]
    /// this may exceed the input (see `rest`).
    pub len: usize,
    /// How the part beyond the input is skipped when the message was truncated.
    pub rest: Remaining,
    /// The body is cut (message larger than the buffer limit).
    pub truncated: bool,
    /// Protocol version ("1.1").
    pub version: Cow<'a, [u8]>,
    /// Method / command / verb.
    pub request_type: Cow<'a, [u8]>,
    /// Host / database / topic.
    pub request_domain: Cow<'a, [u8]>,
    /// Path / statement / key.
    pub request_resource: Cow<'a, [u8]>,
    /// Low-cardinality endpoint.
    pub endpoint: Cow<'a, [u8]>,
    /// Id used for pairing by id and shown as `request_id`.
    pub request_id: Option<u64>,
    /// Response status class.
    pub status: ResponseStatus,
    /// Response code.
    pub code: Option<i32>,
    /// Error text.
    pub exception: Cow<'a, [u8]>,
    /// Result text.
    pub result: Cow<'a, [u8]>,
    /// Trace id from propagation headers.
    pub trace_id: Cow<'a, [u8]>,
    /// Span id from propagation headers.
    pub span_id: Cow<'a, [u8]>,
    /// Request id header.
    pub x_request_id: Cow<'a, [u8]>,
    /// Content type.
    pub content_type: Cow<'a, [u8]>,
    /// Declared or decoded body length.
    pub body_len: Option<u64>,
    /// The body (decoded when the transfer encoding requires it).
    pub body: Cow<'a, [u8]>,
    /// This request gets no response (one-way message).
    pub one_way: bool,
}

impl Message<'_> {
    /// The same message owning its fields: for parsers that decode into a buffer of their own
    /// (decompression, reassembly) and return what they read from it.
    pub fn into_owned(self) -> Message<'static> {
        fn o(c: Cow<'_, [u8]>) -> Cow<'static, [u8]> {
            Cow::Owned(c.into_owned())
        }
        Message {
            version: o(self.version),
            request_type: o(self.request_type),
            request_domain: o(self.request_domain),
            request_resource: o(self.request_resource),
            endpoint: o(self.endpoint),
            exception: o(self.exception),
            result: o(self.result),
            trace_id: o(self.trace_id),
            span_id: o(self.span_id),
            x_request_id: o(self.x_request_id),
            content_type: o(self.content_type),
            body: o(self.body),
            len: self.len,
            role: self.role,
            rest: self.rest,
            truncated: self.truncated,
            request_id: self.request_id,
            status: self.status,
            code: self.code,
            body_len: self.body_len,
            one_way: self.one_way,
        }
    }
}

/// The outcome of one parse call.
///
/// Returned by value on every parse: boxing the message would allocate each time.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Parsed<'a> {
    /// A message was read.
    Message(Message<'a>),
    /// Several messages came out of this many bytes (plugins may return more than one
    /// record for one payload).
    Messages(usize, Vec<Message<'a>>),
    /// This many bytes carry nothing to record (HTTP 1xx interim responses, keep-alive noise).
    /// In [`ParseMode::Truncate`] and [`ParseMode::Eof`] it may exceed the input: a unit cut
    /// short whose length is known (an HTTP/2 DATA frame); the framer skips the rest by length.
    Skip(usize),
    /// More input is needed. Never an error, never counted as one.
    Incomplete(Needed),
}

/// Why input could not be parsed. The framer drops the buffered bytes, counts the error
/// against the protocol and resynchronises on a later segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{protocol} parse error: {reason}")]
pub struct ParseError {
    /// Protocol name.
    pub protocol: &'static str,
    /// What is wrong.
    pub reason: &'static str,
}

/// A protocol parser: cheap inference, framing and parsing, and how its messages pair.
///
/// Implementations are stateless and shared by all workers; per-flow state lives in the
/// `Box<dyn Any + Send>` made by [`Parser::new_state`] and owned by the flow table.
pub trait Parser: Send + Sync + 'static {
    /// The protocol this parser reads.
    fn protocol(&self) -> Protocol;

    /// Whether the parser runs on this transport.
    fn supports(&self, l4: L4) -> bool;

    /// Cheap inference on the first bytes of a message: `None` when it is not this protocol.
    fn check(&self, payload: &[u8], direction: Direction) -> Option<Inference>;

    /// Inference that may look at the flow too (ports, addresses); defaults to [`Parser::check`].
    fn check_flow(
        &self,
        payload: &[u8],
        direction: Direction,
        flow: &FlowKey,
    ) -> Option<Inference> {
        let _ = flow;
        self.check(payload, direction)
    }

    /// After a gap or an error, whether a message starts at `payload` (in `direction`);
    /// defaults to [`Parser::check`]. Parsers whose check knows only one role (requests)
    /// override it so the other direction can resynchronise too.
    fn resync(&self, payload: &[u8], direction: Direction) -> bool {
        self.check(payload, direction).is_some()
    }

    /// True for protocols whose messages carry no marker strong enough to recognise a message
    /// start inside arbitrary bytes (RESP, PostgreSQL): the rest of a cut reply often looks
    /// like a valid reply. After a gap such a direction resynchronises only once the peer has
    /// spoken (a new request means the previous answer is over), then at the next segment.
    fn resync_after_turn(&self) -> bool {
        false
    }

    /// The protocol of a flow in this state (plugins name their protocols per flow);
    /// defaults to [`Parser::protocol`].
    fn protocol_of(&self, state: &(dyn Any + Send)) -> Protocol {
        let _ = state;
        self.protocol()
    }

    /// How requests and responses pair.
    fn pairing(&self) -> PairingMode;

    /// Fresh per-flow state (HPACK tables, prepared statements, pending HEAD requests, ...).
    fn new_state(&self) -> Box<dyn Any + Send> {
        Box::new(())
    }

    /// Reads one message from the start of `input`.
    fn parse<'a>(&self, input: &'a [u8], ctx: &mut ParseCtx<'_>) -> Result<Parsed<'a>, ParseError>;

    /// Skips the rest of a truncated message whose end only the parser can find
    /// ([`Remaining::ParserDriven`]). The default gives up and lets the framer resynchronise.
    fn skip(&self, input: &[u8], state: &mut (dyn Any + Send)) -> SkipProgress {
        let _ = state;
        SkipProgress {
            consumed: input.len(),
            done: true,
        }
    }
}
