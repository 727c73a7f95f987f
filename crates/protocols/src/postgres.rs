//! PostgreSQL frontend/backend protocol v3 (https://www.postgresql.org/docs/current/protocol.html):
//! startup, simple query, extended query (Parse/Bind/Describe/Execute/Sync), CommandComplete,
//! ErrorResponse, ReadyForQuery.
//!
//! One record per request unit and its response unit: a client unit ends at `Q` (simple query),
//! `S` (Sync), `X` (Terminate) or a password message; a server unit ends at `Z`
//! (ReadyForQuery), or at an authentication request. Record mapping: the unit's leading
//! message letter -> `request_type` (`Q`, `P` when it parses a statement, else `E`/`B`/...,
//! as DeepFlow), SQL text -> `request_resource`, database of the startup message ->
//! `request_domain`, CommandComplete tag (`INSERT 0 1`) -> `response_result`, ErrorResponse:
//! message -> `response_exception`, SQLSTATE class 08/53/54/57/58/XX -> server error, other
//! classes -> client error.

use crate::helpers::{be_u32_at, cstr_at};
use l7tap_core::{
    Direction, Inference, Message, MessageRole, Needed, PairingMode, ParseCtx, ParseError,
    ParseMode, Parsed, Parser, Protocol, Remaining, ResponseStatus, L4,
};
use std::any::Any;
use std::borrow::Cow;

/// The PostgreSQL parser.
#[derive(Debug, Clone, Default)]
pub struct PostgresParser;

#[derive(Debug, Default)]
struct PgState {
    /// The client sent SSLRequest/GSSENCRequest: the server answers with one byte.
    ssl_answer_pending: bool,
    /// A response was reported cut short: what follows of it, up to its ReadyForQuery, is
    /// skipped. A new request ends this (after a gap the framing resumes only then).
    skip_tail: bool,
}

fn err(reason: &'static str) -> ParseError {
    ParseError {
        protocol: "postgresql",
        reason,
    }
}

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
const PROTOCOL_3: u32 = 196_608;
/// Longest single message accepted (a larger length is garbage, not PostgreSQL).
const MAX_MESSAGE: usize = 1 << 30;
/// Most messages in one unit.
const MAX_UNIT: usize = 100_000;

/// A typed message: its type byte, its body, and where the next one starts.
type Typed<'a> = (u8, &'a [u8], usize);

/// The typed message at `at`; `Ok(None)` when cut.
fn message(b: &[u8], at: usize) -> Result<Option<Typed<'_>>, ParseError> {
    let Some(&t) = b.get(at) else { return Ok(None) };
    let Some(len) = be_u32_at(b, at + 1) else {
        return Ok(None);
    };
    let len = len as usize;
    if !(4..=MAX_MESSAGE).contains(&len) {
        return Err(err("bad message length"));
    }
    let end = at + 1 + len;
    match b.get(at + 5..end) {
        Some(body) => Ok(Some((t, body, end))),
        None => Ok(None),
    }
}

fn frontend_type(t: u8) -> bool {
    matches!(
        t,
        b'Q' | b'P'
            | b'B'
            | b'D'
            | b'E'
            | b'S'
            | b'H'
            | b'C'
            | b'X'
            | b'p'
            | b'F'
            | b'd'
            | b'c'
            | b'f'
    )
}

fn backend_type(t: u8) -> bool {
    matches!(
        t,
        b'R' | b'S'
            | b'K'
            | b'Z'
            | b'T'
            | b'D'
            | b'C'
            | b'E'
            | b'N'
            | b'1'
            | b'2'
            | b'3'
            | b'n'
            | b's'
            | b't'
            | b'I'
            | b'A'
            | b'G'
            | b'H'
            | b'W'
            | b'V'
            | b'v'
            | b'c'
            | b'd'
    )
}

/// The rest of a response reported cut: its messages up to and with ReadyForQuery carry
/// nothing more to record. `None` when `input` does not look like messages (the tail was
/// lost after all): parse it as a response.
fn skip_tail(input: &[u8], state: &mut PgState, mode: ParseMode) -> Option<Parsed<'static>> {
    let mut at = 0;
    while at < input.len() {
        match message(input, at) {
            Ok(Some((t, _, next))) if backend_type(t) => {
                at = next;
                if t == b'Z' {
                    state.skip_tail = false;
                    return Some(Parsed::Skip(at));
                }
            }
            // Cut again: that message is skipped by its length too (cut inside its header:
            // what was walked is skipped, the rest is the framer's to drop).
            Ok(None) if mode != ParseMode::Complete => {
                return Some(match be_u32_at(input, at + 1) {
                    Some(len) => Parsed::Skip(at + 1 + len as usize),
                    None if at > 0 => Parsed::Skip(at),
                    None => Parsed::Incomplete(Needed::Unknown),
                });
            }
            Ok(None) => break,
            _ => {
                state.skip_tail = false;
                return (at > 0).then_some(Parsed::Skip(at));
            }
        }
    }
    Some(if at > 0 {
        Parsed::Skip(at)
    } else {
        Parsed::Incomplete(Needed::Unknown)
    })
}

fn sqlstate_status(code: &[u8]) -> ResponseStatus {
    match code.get(..2) {
        Some(b"08" | b"53" | b"54" | b"57" | b"58" | b"XX") => ResponseStatus::ServerError,
        Some(_) => ResponseStatus::ClientError,
        None => ResponseStatus::Unknown,
    }
}

impl PostgresParser {
    fn startup<'a>(&self, input: &'a [u8], state: &mut PgState) -> Result<Parsed<'a>, ParseError> {
        let Some(len) = be_u32_at(input, 0) else {
            return Ok(Parsed::Incomplete(Needed::Unknown));
        };
        let len = len as usize;
        if !(8..=10_000).contains(&len) {
            return Err(err("bad startup length"));
        }
        let Some(body) = input.get(8..len) else {
            return Ok(Parsed::Incomplete(Needed::Total(len)));
        };
        let code = be_u32_at(input, 4).unwrap_or(0);
        let mut m = Message {
            len,
            role: Some(MessageRole::Request),
            ..Default::default()
        };
        match code {
            SSL_REQUEST | GSSENC_REQUEST => {
                state.ssl_answer_pending = true;
                m.request_type = Cow::Borrowed(if code == SSL_REQUEST {
                    b"SSLRequest"
                } else {
                    b"GSSENCRequest"
                });
            }
            CANCEL_REQUEST => {
                m.request_type = Cow::Borrowed(b"CancelRequest");
                m.one_way = true;
            }
            PROTOCOL_3 => {
                m.request_type = Cow::Borrowed(b"StartupMessage");
                m.version = Cow::Borrowed(b"3.0");
                let mut at = 0;
                while let Some((k, next)) = cstr_at(body, at) {
                    if k.is_empty() {
                        break;
                    }
                    let Some((v, after)) = cstr_at(body, next) else {
                        break;
                    };
                    if k == b"database" {
                        m.request_domain = Cow::Borrowed(v);
                    }
                    at = after;
                }
            }
            _ => return Err(err("unknown startup code")),
        }
        Ok(Parsed::Message(m))
    }

    fn request<'a>(&self, input: &'a [u8], state: &mut PgState) -> Result<Parsed<'a>, ParseError> {
        state.skip_tail = false;
        if matches!(input.first(), Some(0)) {
            return self.startup(input, state);
        }
        let mut at = 0;
        let mut m = Message {
            role: Some(MessageRole::Request),
            ..Default::default()
        };
        let mut first: Option<u8> = None;
        for _ in 0..MAX_UNIT {
            let Some((t, body, next)) = message(input, at)? else {
                return Ok(Parsed::Incomplete(Needed::Unknown));
            };
            if !frontend_type(t) {
                return Err(err("unknown frontend message"));
            }
            at = next;
            first.get_or_insert(t);
            match t {
                b'Q' => {
                    m.request_resource =
                        Cow::Borrowed(cstr_at(body, 0).map(|(s, _)| s).unwrap_or(body));
                }
                b'P' => {
                    // Parse: statement name, then the query.
                    if let Some((_, q)) = cstr_at(body, 0) {
                        m.request_resource =
                            Cow::Borrowed(cstr_at(body, q).map(|(s, _)| s).unwrap_or_default());
                    }
                    m.request_type = Cow::Borrowed(b"P");
                }
                _ => {}
            }
            if matches!(t, b'Q' | b'S' | b'X' | b'p' | b'H' | b'F' | b'c' | b'f') {
                if t == b'X' {
                    m.one_way = true; // Terminate gets no answer
                }
                break;
            }
        }
        if m.request_type.is_empty() {
            let t = first.unwrap_or(b'?');
            // DeepFlow names a Bind/Execute unit by its Execute.
            let letter: &'static [u8] = match t {
                b'B' | b'D' => b"E",
                b'Q' => b"Q",
                b'S' => b"S",
                b'X' => b"X",
                b'p' => b"p",
                b'H' => b"H",
                b'F' => b"F",
                b'E' => b"E",
                b'C' => b"C",
                _ => b"?",
            };
            m.request_type = Cow::Borrowed(letter);
        }
        m.len = at;
        m.body_len = Some(at as u64);
        Ok(Parsed::Message(m))
    }

    fn response<'a>(
        &self,
        input: &'a [u8],
        state: &mut PgState,
        mode: ParseMode,
    ) -> Result<Parsed<'a>, ParseError> {
        if state.ssl_answer_pending {
            // One byte: 'S' (go TLS) or 'N' (no); what follows is TLS or a normal startup.
            let Some(&b) = input.first() else {
                return Ok(Parsed::Incomplete(Needed::Unknown));
            };
            state.ssl_answer_pending = false;
            return Ok(Parsed::Message(Message {
                len: 1,
                role: Some(MessageRole::Response),
                status: ResponseStatus::Ok,
                result: Cow::Borrowed(if b == b'S' { b"S" } else { b"N" }),
                ..Default::default()
            }));
        }
        if state.skip_tail {
            if let Some(p) = skip_tail(input, state, mode) {
                return Ok(p);
            }
        }
        let mut at = 0;
        let mut m = Message {
            role: Some(MessageRole::Response),
            status: ResponseStatus::Ok,
            ..Default::default()
        };
        for _ in 0..MAX_UNIT {
            let Some((t, body, next)) = message(input, at)? else {
                // Cut short inside a message whose header arrived (a large DataRow, or a whole
                // result written at once and cut by the snaplen): the response is reported
                // now, flagged cut, up to the end of that message (the framer skips the rest
                // of it by length); the rest of the response, up to its ReadyForQuery, is
                // skipped when it comes.
                let cut_end = be_u32_at(input, at + 1).map(|l| at + 1 + l as usize);
                if let (false, Some(end)) = (mode == ParseMode::Complete, cut_end) {
                    let t = input.get(at).copied().unwrap_or(0);
                    if backend_type(t) && end > input.len() {
                        state.skip_tail = t != b'Z';
                        m.len = end;
                        m.rest = Remaining::Known;
                        m.truncated = true;
                        m.body_len = Some(end as u64);
                        return Ok(Parsed::Message(m));
                    }
                }
                return Ok(Parsed::Incomplete(Needed::Unknown));
            };
            if !backend_type(t) {
                return Err(err("unknown backend message"));
            }
            at = next;
            match t {
                b'C' => m.result = Cow::Borrowed(cstr_at(body, 0).map(|(s, _)| s).unwrap_or(body)),
                b'E' => {
                    // Fields: a type byte, then a C string; 'C' SQLSTATE, 'M' message.
                    let mut p = 0;
                    while let Some(&ft) = body.get(p) {
                        if ft == 0 {
                            break;
                        }
                        let Some((v, after)) = cstr_at(body, p + 1) else {
                            break;
                        };
                        match ft {
                            b'C' => {
                                m.status = sqlstate_status(v);
                                m.code = std::str::from_utf8(v)
                                    .ok()
                                    .and_then(|c| i32::from_str_radix(c, 36).ok());
                            }
                            b'M' => m.exception = Cow::Borrowed(v),
                            _ => {}
                        }
                        p = after;
                    }
                }
                // Authentication: anything but AuthenticationOk waits for the client.
                b'R' if be_u32_at(body, 0).unwrap_or(0) != 0 => break,
                b'Z' => break,
                _ => {}
            }
        }
        m.len = at;
        m.body_len = Some(at as u64);
        Ok(Parsed::Message(m))
    }
}

impl Parser for PostgresParser {
    fn protocol(&self) -> Protocol {
        Protocol::Postgresql
    }

    fn supports(&self, l4: L4) -> bool {
        l4.is_stream()
    }

    fn check(&self, payload: &[u8], _direction: Direction) -> Option<Inference> {
        // A startup message (protocol 3.0 or SSLRequest), or a Parse/Query with a sane length.
        let len = be_u32_at(payload, 0)? as usize;
        let code = be_u32_at(payload, 4)?;
        if (8..=10_000).contains(&len) && matches!(code, PROTOCOL_3 | SSL_REQUEST | GSSENC_REQUEST)
        {
            return Some(Inference {
                confidence: 200,
                role: MessageRole::Request,
            });
        }
        let t = *payload.first()?;
        let mlen = be_u32_at(payload, 1)? as usize;
        if matches!(t, b'Q' | b'P') && (5..=MAX_MESSAGE).contains(&mlen) {
            // The query text must end with a NUL inside the message when it is all here.
            let body = payload.get(5..1 + mlen)?;
            if body.last() == Some(&0)
                && body.iter().filter(|&&b| b == 0).count() <= 3 + body.len() / 2
            {
                return Some(Inference {
                    confidence: 150,
                    role: MessageRole::Request,
                });
            }
        }
        None
    }

    // A type byte and a length are found in any binary row data.
    fn resync_after_turn(&self) -> bool {
        true
    }

    fn resync(&self, payload: &[u8], direction: Direction) -> bool {
        let Some(&t) = payload.first() else {
            return false;
        };
        let len_ok = be_u32_at(payload, 1).is_some_and(|l| (4..=MAX_MESSAGE as u32).contains(&l));
        len_ok
            && if direction == Direction::ClientToServer {
                frontend_type(t)
            } else {
                backend_type(t)
            }
    }

    fn pairing(&self) -> PairingMode {
        PairingMode::Sequential
    }

    fn new_state(&self) -> Box<dyn Any + Send> {
        Box::new(PgState::default())
    }

    fn parse<'a>(&self, input: &'a [u8], ctx: &mut ParseCtx<'_>) -> Result<Parsed<'a>, ParseError> {
        let Some(state) = ctx.state.downcast_mut::<PgState>() else {
            return Err(err("flow state is not PostgreSQL state"));
        };
        match ctx.direction {
            Direction::ClientToServer => self.request(input, state),
            Direction::ServerToClient => self.response(input, state, ctx.mode),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(t: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![t];
        v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn run(input: &[u8], dir: Direction) -> Message<'_> {
        let p = PostgresParser;
        let mut st = p.new_state();
        let mut cx = ParseCtx::new(dir, ParseMode::Complete, st.as_mut());
        match p.parse(input, &mut cx) {
            Ok(Parsed::Message(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn simple_and_extended_query() {
        let q = msg(b'Q', b"SELECT 1\0");
        let m = run(&q, Direction::ClientToServer);
        assert_eq!(
            (&*m.request_type, &*m.request_resource, m.len),
            (&b"Q"[..], &b"SELECT 1"[..], q.len())
        );
        let unit = [
            msg(b'P', b"\0SELECT $1\0\0\0"),
            msg(b'B', b"\0\0\0\0\0\0\0\0"),
            msg(b'E', b"\0\0\0\0\0"),
            msg(b'S', b""),
        ]
        .concat();
        let m = run(&unit, Direction::ClientToServer);
        assert_eq!(
            (&*m.request_type, &*m.request_resource, m.len),
            (&b"P"[..], &b"SELECT $1"[..], unit.len())
        );
        let resp = [
            msg(b'1', b""),
            msg(b'2', b""),
            msg(b'C', b"SELECT 1\0"),
            msg(b'Z', b"I"),
        ]
        .concat();
        let m = run(&resp, Direction::ServerToClient);
        assert_eq!(
            (&*m.result, m.status, m.len),
            (&b"SELECT 1"[..], ResponseStatus::Ok, resp.len())
        );
        let e = [
            msg(b'E', b"SERROR\0C42P01\0Mrelation \"t\" does not exist\0\0"),
            msg(b'Z', b"I"),
        ]
        .concat();
        let m = run(&e, Direction::ServerToClient);
        assert_eq!(
            (&*m.exception, m.status),
            (
                &b"relation \"t\" does not exist"[..],
                ResponseStatus::ClientError
            )
        );
    }

    /// A result larger than what was captured of it (a DataRow cut by a gap or the snaplen):
    /// the response is reported at once, cut, up to the end of the cut message (skipped by
    /// its length); the rest of it, up to ReadyForQuery, is skipped; the next response is
    /// whole again. A new request in between ends the skipping.
    #[test]
    fn a_response_cut_inside_a_message_is_reported_cut_and_its_tail_skipped() {
        let p = PostgresParser;
        let mut st = p.new_state();
        let parse = |st: &mut Box<dyn Any + Send>, dir, mode, b: &[u8]| {
            let mut cx = ParseCtx::new(dir, mode, st.as_mut());
            match p.parse(b, &mut cx) {
                Ok(Parsed::Message(m)) => Ok(m.into_owned()),
                Ok(other) => Err(format!("{other:?}")),
                Err(e) => Err(e.to_string()),
            }
        };
        let row = msg(b'D', &[b'x'; 20_000]);
        let mut head = msg(
            b'T',
            b"\0\x01x\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0",
        );
        let head_len = head.len();
        head.extend_from_slice(&row[..100]);
        let m = parse(
            &mut st,
            Direction::ServerToClient,
            ParseMode::Truncate,
            &head,
        )
        .unwrap();
        assert!(m.truncated && m.rest == Remaining::Known);
        assert_eq!(m.len, head_len + row.len());
        assert_eq!(m.status, ResponseStatus::Ok);
        let tail = [
            msg(b'D', b"\0\x01\0\0\0\x01y"),
            msg(b'C', b"SELECT 2\0"),
            msg(b'Z', b"I"),
        ]
        .concat();
        let skipped = parse(
            &mut st,
            Direction::ServerToClient,
            ParseMode::Complete,
            &tail,
        );
        assert_eq!(skipped.unwrap_err(), format!("Skip({})", tail.len()));
        let next = [msg(b'C', b"SELECT 0\0"), msg(b'Z', b"I")].concat();
        let m = parse(
            &mut st,
            Direction::ServerToClient,
            ParseMode::Complete,
            &next,
        )
        .unwrap();
        assert!(!m.truncated);
        assert_eq!(&*m.result, b"SELECT 0");
        // Cut again, and this time the tail was lost: the next request ends the skipping.
        parse(
            &mut st,
            Direction::ServerToClient,
            ParseMode::Truncate,
            &head,
        )
        .unwrap();
        parse(
            &mut st,
            Direction::ClientToServer,
            ParseMode::Complete,
            &msg(b'Q', b"SELECT 1\0"),
        )
        .unwrap();
        let m = parse(
            &mut st,
            Direction::ServerToClient,
            ParseMode::Complete,
            &next,
        )
        .unwrap();
        assert_eq!(&*m.result, b"SELECT 0");
    }

    #[test]
    fn startup_and_hostile() {
        let mut s = vec![0, 0, 0, 0, 0, 3, 0, 0];
        s.extend_from_slice(b"user\0bob\0database\0shop\0\0");
        let n = s.len() as u32;
        s[..4].copy_from_slice(&n.to_be_bytes());
        assert!(PostgresParser
            .check(&s, Direction::ClientToServer)
            .is_some());
        let m = run(&s, Direction::ClientToServer);
        assert_eq!(&*m.request_domain, b"shop");
        let p = PostgresParser;
        let mut st = p.new_state();
        let mut cx = ParseCtx::new(Direction::ServerToClient, ParseMode::Complete, st.as_mut());
        assert!(p.parse(b"Z\xff\xff\xff\xffI", &mut cx).is_err());
        assert!(p.parse(b"?\0\0\0\x04", &mut cx).is_err());
    }
}
