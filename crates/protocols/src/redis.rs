//! Redis RESP2 and RESP3 (https://redis.io/docs/latest/develop/reference/protocol-spec/):
//! commands as arrays of bulk strings or inline lines, pipelining (replies pair in order), every
//! reply type including RESP3's maps, sets, pushes, attributes, blob errors and verbatim strings.
//!
//! Record mapping: command name -> `request_type`, the command line (arguments joined by
//! spaces, at most 256 bytes) -> `request_resource`, reply type -> `response_result` (as DeepFlow
//! names it: BulkString, Integer, Array, ...), error replies -> `response_exception` (with the leading `-`, as DeepFlow) and status
//! server error; other replies ok.

use l7tap_core::{
    Direction, Inference, Message, MessageRole, Needed, PairingMode, ParseCtx, ParseError,
    ParseMode, Parsed, Parser, Protocol, Remaining, ResponseStatus, SkipProgress, L4,
};
use std::borrow::Cow;

/// The Redis parser.
#[derive(Debug, Clone, Default)]
pub struct RedisParser;

fn err(reason: &'static str) -> ParseError {
    ParseError {
        protocol: "redis",
        reason,
    }
}

/// Longest command line kept in the record.
const MAX_COMMAND_LINE: usize = 256;
/// Deepest nesting of aggregates accepted.
const MAX_DEPTH: usize = 32;
/// Most elements of one aggregate accepted.
const MAX_ELEMENTS: i64 = 1 << 20;

/// The line at `i` (without CRLF) and the index after it; `None` if the CRLF is not there yet.
fn line(b: &[u8], i: usize) -> Option<(&[u8], usize)> {
    let rest = b.get(i..)?;
    let n = memchr::memchr(b'\n', rest)?;
    if n == 0 || rest[n - 1] != b'\r' {
        return Some((&rest[..n], i + n + 1)); // tolerate a bare LF (inline commands)
    }
    Some((&rest[..n - 1], i + n + 1))
}

fn int(s: &[u8]) -> Result<i64, ParseError> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let v = crate::helpers::parse_u64(digits).ok_or_else(|| err("bad length"))? as i64;
    Ok(if neg { -v } else { v })
}

/// The bulk string at `i`, and the index after it.
fn bulk_at(b: &[u8], i: usize) -> Option<(&[u8], usize)> {
    if b.get(i) != Some(&b'$') {
        return None;
    }
    let (l, start) = line(b, i + 1)?;
    let n = usize::try_from(int(l).ok()?).ok()?;
    let v = b.get(start..start.checked_add(n)?)?;
    Some((v, start + n + 2))
}

/// A pub/sub message the server pushes to a subscriber (a RESP2 array or RESP3 push whose
/// first element is `message`, `pmessage` or `smessage`): its kind and channel (for
/// `pmessage`, the channel after the pattern).
fn pubsub_push(b: &[u8], at: usize) -> Option<(&[u8], &[u8])> {
    if !matches!(b.get(at), Some(b'*' | b'>')) {
        return None;
    }
    let (count, first) = line(b, at + 1)?;
    let (kind, next) = bulk_at(b, first)?;
    let want = match kind {
        b"message" | b"smessage" => 3,
        b"pmessage" => 4,
        _ => return None,
    };
    if int(count).ok()? != want {
        return None;
    }
    let (mut channel, after) = bulk_at(b, next)?;
    if kind == b"pmessage" {
        channel = bulk_at(b, after)?.0;
    }
    Some((kind, channel))
}

/// Where the RESP value starting at `i` ends: `Ok(None)` when more input is needed.
fn value_end(b: &[u8], i: usize, depth: usize) -> Result<Option<usize>, ParseError> {
    if depth > MAX_DEPTH {
        return Err(err("nesting too deep"));
    }
    let Some(&t) = b.get(i) else { return Ok(None) };
    let Some((l, next)) = line(b, i + 1) else {
        return Ok(None);
    };
    match t {
        b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => Ok(Some(next)),
        b'$' | b'!' | b'=' => {
            let n = int(l)?;
            if n < 0 {
                return Ok(Some(next)); // null bulk string
            }
            let end = next
                .checked_add(n as usize + 2)
                .ok_or_else(|| err("length overflow"))?;
            Ok(if b.len() >= end { Some(end) } else { None })
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = int(l)?;
            if n > MAX_ELEMENTS {
                return Err(err("aggregate too large"));
            }
            let count = match t {
                b'%' | b'|' => n.max(0) * 2,
                _ => n.max(0),
            };
            let mut at = next;
            for _ in 0..count {
                match value_end(b, at, depth + 1)? {
                    Some(e) => at = e,
                    None => return Ok(None),
                }
            }
            if t == b'|' {
                // Attributes precede the reply they describe.
                return value_end(b, at, depth + 1);
            }
            Ok(Some(at))
        }
        _ => Err(err("unknown reply type")),
    }
}

/// Walks RESP values across buffers: skips the rest of a reply cut at `max_message_bytes`
/// (a 170 KB `COMMAND DOCS` answer, a big `LRANGE`) so that the next reply pairs correctly.
/// Bounded: nesting at most [`MAX_DEPTH`], a header line at most [`MAX_HEADER_LINE`] bytes.
#[derive(Debug, Default)]
pub struct RespWalker {
    /// Values still to read at each open level, innermost last; empty when the reply ended.
    pending: Vec<i64>,
    /// Bytes of a bulk payload (with its CRLF) still to pass.
    bulk: u64,
    /// A header line split across buffers.
    line: Vec<u8>,
}

/// Longest RESP header line (type byte, length or simple value) the walker accepts.
const MAX_HEADER_LINE: usize = 4096;

impl RespWalker {
    /// A walker expecting one reply.
    pub fn new() -> Self {
        RespWalker {
            pending: vec![1],
            ..Default::default()
        }
    }

    /// True when the reply ended.
    pub fn done(&self) -> bool {
        self.pending.is_empty()
    }

    /// Consumes the reply's bytes from `buf`; returns how many belong to it.
    pub fn feed(&mut self, buf: &[u8]) -> Result<usize, ParseError> {
        let mut i = 0;
        while !self.pending.is_empty() {
            if self.bulk > 0 {
                let k = self.bulk.min((buf.len() - i) as u64);
                i += k as usize;
                self.bulk -= k;
                if self.bulk > 0 {
                    return Ok(i);
                }
                self.value_done();
                continue;
            }
            let rest = &buf[i..];
            let Some(n) = memchr::memchr(b'\n', rest) else {
                if self.line.len() + rest.len() > MAX_HEADER_LINE {
                    return Err(err("reply header line too long"));
                }
                self.line.extend_from_slice(rest);
                return Ok(buf.len());
            };
            i += n + 1;
            if self.line.is_empty() {
                self.header(&rest[..n])?;
            } else {
                let mut l = std::mem::take(&mut self.line);
                l.extend_from_slice(&rest[..n]);
                self.header(&l)?;
            }
        }
        Ok(i)
    }

    fn header(&mut self, l: &[u8]) -> Result<(), ParseError> {
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        let Some((&t, body)) = l.split_first() else {
            return Err(err("empty reply line"));
        };
        match t {
            b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => self.value_done(),
            b'$' | b'!' | b'=' => {
                let n = int(body)?;
                if n < 0 {
                    self.value_done();
                } else {
                    self.bulk = n as u64 + 2;
                }
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let n = int(body)?;
                if n > MAX_ELEMENTS {
                    return Err(err("aggregate too large"));
                }
                if self.pending.len() >= MAX_DEPTH {
                    return Err(err("nesting too deep"));
                }
                let count = if matches!(t, b'%' | b'|') {
                    n.max(0) * 2
                } else {
                    n.max(0)
                };
                if t == b'|' {
                    // Attributes precede the value they describe, which still follows.
                    if let Some(top) = self.pending.last_mut() {
                        *top += 1;
                    }
                }
                if count == 0 {
                    self.value_done();
                } else {
                    self.pending.push(count);
                }
            }
            _ => return Err(err("unknown reply type")),
        }
        Ok(())
    }

    /// One value completed: count it, closing every aggregate it completes.
    fn value_done(&mut self) {
        while let Some(top) = self.pending.last_mut() {
            *top -= 1;
            if *top > 0 {
                break;
            }
            self.pending.pop();
        }
    }
}

fn type_name(t: u8) -> &'static [u8] {
    match t {
        b'+' => b"SimpleString",
        b'-' => b"Error",
        b':' => b"Integer",
        b'$' => b"BulkString",
        b'*' => b"Array",
        b'_' => b"Null",
        b'#' => b"Boolean",
        b',' => b"Double",
        b'(' => b"BigNumber",
        b'!' => b"BlobError",
        b'=' => b"VerbatimString",
        b'%' => b"Map",
        b'~' => b"Set",
        b'>' => b"Push",
        _ => b"Unknown",
    }
}

impl RedisParser {
    fn request<'a>(&self, input: &'a [u8], mode: ParseMode) -> Result<Parsed<'a>, ParseError> {
        // Empty lines are ignored by the server (redis-cli --pipe sends one before its final
        // ECHO): nothing to record.
        let blank = input
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        if blank > 0 {
            return Ok(Parsed::Skip(blank));
        }
        let mut args: Vec<&'a [u8]> = Vec::new();
        let mut cut = false;
        let len = if input.first() == Some(&b'*') {
            let Some((l, mut at)) = line(input, 1) else {
                return Ok(Parsed::Incomplete(Needed::Unknown));
            };
            let n = int(l)?;
            if !(0..=MAX_ELEMENTS).contains(&n) {
                return Err(err("bad argument count"));
            }
            for i in 0..n {
                if input.get(at).is_none() {
                    return Ok(Parsed::Incomplete(Needed::Unknown));
                }
                if input[at] != b'$' {
                    return Err(err("command argument is not a bulk string"));
                }
                let Some((l, next)) = line(input, at + 1) else {
                    return Ok(Parsed::Incomplete(Needed::Unknown));
                };
                let alen = usize::try_from(int(l)?).map_err(|_| err("bad argument length"))?;
                let end = next
                    .checked_add(alen + 2)
                    .ok_or_else(|| err("length overflow"))?;
                if input.len() < end {
                    // Cut inside the last argument (SET key <a large value>, by a capture
                    // gap or the buffer limit): the command's length is known, so it is
                    // reported cut and the rest skipped by length. Cut earlier, the lengths
                    // of the arguments after it are not known: nothing to report.
                    if mode == ParseMode::Complete || i + 1 < n || args.is_empty() {
                        return Ok(Parsed::Incomplete(Needed::Total(end)));
                    }
                    if args.len() < 64 {
                        args.push(&input[next.min(input.len())..input.len().min(next + alen)]);
                    }
                    cut = true;
                    at = end;
                    break;
                }
                if args.len() < 64 {
                    args.push(&input[next..next + alen]);
                }
                at = end;
            }
            at
        } else {
            // Inline command: one line of space-separated words.
            let Some((l, next)) = line(input, 0) else {
                return Ok(Parsed::Incomplete(Needed::Unknown));
            };
            args.extend(l.split(|&b| b == b' ').filter(|w| !w.is_empty()).take(64));
            next
        };
        let Some(cmd) = args.first().copied() else {
            return Err(err("empty command"));
        };
        let mut line_text = Vec::with_capacity(MAX_COMMAND_LINE);
        for (i, a) in args.iter().enumerate() {
            if i > 0 {
                line_text.push(b' ');
            }
            line_text.extend_from_slice(a);
            if line_text.len() >= MAX_COMMAND_LINE {
                line_text.truncate(MAX_COMMAND_LINE);
                break;
            }
        }
        Ok(Parsed::Message(Message {
            len,
            role: Some(MessageRole::Request),
            request_type: Cow::Borrowed(cmd),
            request_resource: Cow::Owned(line_text),
            truncated: cut,
            rest: if cut {
                Remaining::Known
            } else {
                Remaining::None
            },
            ..Default::default()
        }))
    }

    fn reply<'a>(
        &self,
        input: &'a [u8],
        mode: ParseMode,
        state: &mut (dyn std::any::Any + Send),
    ) -> Result<Parsed<'a>, ParseError> {
        let Some(end) = value_end(input, 0, 0)? else {
            // An aggregate larger than the buffer: report it cut; the walker, which has seen
            // the visible part, skips the rest however it is nested.
            if mode != ParseMode::Complete
                && matches!(input.first(), Some(b'*' | b'~' | b'>' | b'%' | b'|'))
            {
                if let Some(w) = state.downcast_mut::<RespWalker>() {
                    *w = RespWalker::new();
                    let seen = w.feed(input)?;
                    return Ok(Parsed::Message(Message {
                        len: seen,
                        rest: if w.done() {
                            Remaining::None
                        } else {
                            Remaining::ParserDriven
                        },
                        truncated: true,
                        role: Some(MessageRole::Response),
                        result: Cow::Borrowed(type_name(input[0])),
                        status: ResponseStatus::Ok,
                        ..Default::default()
                    }));
                }
            }
            // A bulk reply larger than the buffer: report it cut, skip the rest by its length.
            if mode != ParseMode::Complete && matches!(input.first(), Some(b'$' | b'=' | b'!')) {
                if let Some((l, next)) = line(input, 1) {
                    let n = usize::try_from(int(l)?).map_err(|_| err("bad length"))?;
                    let total = next.saturating_add(n).saturating_add(2);
                    return Ok(Parsed::Message(Message {
                        len: total,
                        rest: Remaining::Known,
                        truncated: true,
                        role: Some(MessageRole::Response),
                        result: Cow::Borrowed(type_name(input[0])),
                        status: ResponseStatus::Ok,
                        // As for a whole reply: the reply's bytes, header included.
                        body_len: Some(total as u64),
                        ..Default::default()
                    }));
                }
            }
            return Ok(Parsed::Incomplete(Needed::Unknown));
        };
        let mut t = input[0];
        let mut at = 0;
        // An attribute map comes before the real reply: report the reply's type.
        if t == b'|' {
            let mut i = 0;
            while input.get(i) == Some(&b'|') {
                let Some((l, next)) = line(input, i + 1) else {
                    break;
                };
                let mut p = next;
                for _ in 0..int(l)?.max(0) * 2 {
                    p = value_end(input, p, 1)?.unwrap_or(end);
                }
                i = p;
            }
            at = i;
            t = input.get(i).copied().unwrap_or(b'|');
        }
        let mut m = Message {
            len: end,
            role: Some(MessageRole::Response),
            result: Cow::Borrowed(type_name(t)),
            status: ResponseStatus::Ok,
            body_len: Some(end as u64),
            ..Default::default()
        };
        if let Some((kind, channel)) = pubsub_push(&input[..end], at) {
            // A message the server pushes to a subscriber: not the answer to a request.
            m.one_way = true;
            m.request_type = Cow::Borrowed(kind);
            m.request_resource = Cow::Borrowed(channel);
        }
        match t {
            b'-' => {
                if let Some((l, _)) = line(input, at) {
                    m.exception = Cow::Borrowed(l);
                }
                m.status = ResponseStatus::ServerError;
            }
            b'!' => {
                if let Some((_, next)) = line(input, at + 1) {
                    m.exception = Cow::Borrowed(&input[next..end.saturating_sub(2).max(next)]);
                }
                m.status = ResponseStatus::ServerError;
            }
            _ => {}
        }
        Ok(Parsed::Message(m))
    }
}

impl Parser for RedisParser {
    fn protocol(&self) -> Protocol {
        Protocol::Redis
    }

    fn supports(&self, l4: L4) -> bool {
        l4.is_stream()
    }

    fn check(&self, payload: &[u8], _direction: Direction) -> Option<Inference> {
        // A command: "*<n>\r\n$<len>\r\n<word>" with a plausible command word.
        if payload.first() != Some(&b'*') {
            return None;
        }
        let (l, at) = line(payload, 1)?;
        let n = int(l).ok()?;
        if !(1..=MAX_ELEMENTS).contains(&n) || payload.get(at) != Some(&b'$') {
            return None;
        }
        let (l, next) = line(payload, at + 1)?;
        let alen = usize::try_from(int(l).ok()?).ok()?;
        let word = payload.get(next..next + alen.min(32))?;
        if alen == 0
            || alen > 32
            || !word
                .iter()
                .all(|b| b.is_ascii_alphabetic() || *b == b'.' || *b == b'_' || *b == b'-')
        {
            return None;
        }
        Some(Inference {
            confidence: 180,
            role: MessageRole::Request,
        })
    }

    // RESP replies have no marker: the tail of a cut array looks like replies.
    fn resync_after_turn(&self) -> bool {
        true
    }

    fn resync(&self, payload: &[u8], direction: Direction) -> bool {
        match direction {
            Direction::ClientToServer => self.check(payload, direction).is_some(),
            // A reply starts with a type byte and a complete first line.
            Direction::ServerToClient => {
                matches!(
                    payload.first(),
                    Some(
                        b'+' | b'-'
                            | b':'
                            | b'$'
                            | b'*'
                            | b'_'
                            | b'#'
                            | b','
                            | b'('
                            | b'!'
                            | b'='
                            | b'%'
                            | b'~'
                            | b'>'
                            | b'|'
                    )
                ) && line(payload, 1).is_some_and(|(l, _)| l.len() < 512)
            }
        }
    }

    fn pairing(&self) -> PairingMode {
        PairingMode::Sequential
    }

    fn parse<'a>(&self, input: &'a [u8], ctx: &mut ParseCtx<'_>) -> Result<Parsed<'a>, ParseError> {
        match ctx.direction {
            Direction::ClientToServer => self.request(input, ctx.mode),
            Direction::ServerToClient => self.reply(input, ctx.mode, &mut *ctx.state),
        }
    }

    fn new_state(&self) -> Box<dyn std::any::Any + Send> {
        Box::new(RespWalker::default())
    }

    fn skip(&self, input: &[u8], state: &mut (dyn std::any::Any + Send)) -> SkipProgress {
        let Some(w) = state.downcast_mut::<RespWalker>() else {
            return SkipProgress {
                consumed: input.len(),
                done: true,
            };
        };
        match w.feed(input) {
            Ok(n) => SkipProgress {
                consumed: n,
                done: w.done(),
            },
            // Not RESP after all: stop skipping; the next parse fails and the framer
            // resynchronises at the next turn.
            Err(_) => SkipProgress {
                consumed: 0,
                done: true,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes to a subscriber (RESP2 arrays, as redis-server sends them; a RESP3 push) are
    /// one-way messages with their kind and channel; a reply that merely looks alike is not.
    #[test]
    fn pubsub_pushes_are_one_way_messages() {
        // (reply, Some((kind, channel)) for a push)
        type Case<'a> = (&'a [u8], Option<(&'a str, &'a str)>);
        let cases: [Case<'_>; 5] = [
            (
                b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n",
                Some(("message", "news")),
            ),
            (
                b"*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$1\r\nx\r\n",
                Some(("pmessage", "news")),
            ),
            (
                b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\ny\r\n",
                Some(("message", "ch")),
            ),
            // The confirmation of SUBSCRIBE answers the command: not a push.
            (b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n", None),
            // LRANGE of a list holding "message": an ordinary reply (two elements).
            (b"*2\r\n$7\r\nmessage\r\n$1\r\nz\r\n", None),
        ];
        for (input, want) in cases {
            let Ok(Parsed::Message(m)) = run(input, Direction::ServerToClient) else {
                panic!("{input:?}");
            };
            assert_eq!(m.len, input.len());
            let got = m.one_way.then(|| {
                (
                    String::from_utf8_lossy(&m.request_type).into_owned(),
                    String::from_utf8_lossy(&m.request_resource).into_owned(),
                )
            });
            assert_eq!(
                got,
                want.map(|(k, c)| (k.to_string(), c.to_string())),
                "{input:?}"
            );
        }
    }

    fn run<'a>(input: &'a [u8], dir: Direction) -> Result<Parsed<'a>, ParseError> {
        let p = RedisParser;
        let mut st = p.new_state();
        let mut cx = ParseCtx::new(dir, ParseMode::Complete, st.as_mut());
        p.parse(input, &mut cx)
    }

    #[test]
    fn commands_from_the_spec() {
        // The spec's example: LLEN mylist.
        let Ok(Parsed::Message(m)) = run(
            b"*2\r\n$4\r\nLLEN\r\n$6\r\nmylist\r\n",
            Direction::ClientToServer,
        ) else {
            panic!()
        };
        assert_eq!(&*m.request_type, b"LLEN");
        assert_eq!(&*m.request_resource, b"LLEN mylist");
        assert_eq!(m.len, 26);
        let Ok(Parsed::Message(m)) = run(b"PING\r\n", Direction::ClientToServer) else {
            panic!()
        };
        assert_eq!(&*m.request_type, b"PING");
        assert!(matches!(
            run(b"*2\r\n$4\r\nLLEN\r\n$6\r\nmyl", Direction::ClientToServer),
            Ok(Parsed::Incomplete(_))
        ));
    }

    #[test]
    fn replies_of_every_type() {
        let cases: [(&[u8], &[u8]); 9] = [
            (b"+OK\r\n", b"SimpleString"),
            (b"-ERR unknown command 'foo'\r\n", b"Error"),
            (b":1000\r\n", b"Integer"),
            (b"$5\r\nhello\r\n", b"BulkString"),
            (b"$-1\r\n", b"BulkString"),
            (b"*2\r\n$3\r\nfoo\r\n:1\r\n", b"Array"),
            (b"%1\r\n+first\r\n:1\r\n", b"Map"),
            (
                b"|1\r\n+key-popularity\r\n*2\r\n$1\r\na\r\n,0.19\r\n:42\r\n",
                b"Integer",
            ),
            (b"!21\r\nSYNTAX invalid syntax\r\n", b"BlobError"),
        ];
        for (input, ty) in cases {
            let Ok(Parsed::Message(m)) = run(input, Direction::ServerToClient) else {
                panic!("{input:?}")
            };
            assert_eq!(&*m.result, ty, "{:?}", String::from_utf8_lossy(input));
            assert_eq!(m.len, input.len());
        }
        let Ok(Parsed::Message(m)) =
            run(b"-ERR unknown command 'foo'\r\n", Direction::ServerToClient)
        else {
            panic!()
        };
        // As DeepFlow reports it: with the type marker.
        assert_eq!(&*m.exception, b"-ERR unknown command 'foo'");
        assert_eq!(m.status, ResponseStatus::ServerError);
    }

    #[test]
    fn walker_skips_a_cut_nested_reply_across_buffers() {
        // *2 [ *2 [ $5 hello, :1 ], %1 { +k: $3 abc } ] then the next reply.
        let reply = b"*2\r\n*2\r\n$5\r\nhello\r\n:1\r\n%1\r\n+k\r\n$3\r\nabc\r\n";
        for cut in 1..reply.len() {
            let mut w = RespWalker::new();
            let a = w.feed(&reply[..cut]).unwrap();
            assert_eq!(a, cut);
            let mut rest = reply[cut..].to_vec();
            rest.extend_from_slice(b"+OK\r\n");
            let b = w.feed(&rest).unwrap();
            assert!(w.done(), "cut at {cut}");
            assert_eq!(cut + b, reply.len(), "cut at {cut}");
        }
        // Truncate mode on the visible part: a cut record, then the walker does the rest.
        let p = RedisParser;
        let mut st = p.new_state();
        let mut cx = ParseCtx::new(Direction::ServerToClient, ParseMode::Truncate, st.as_mut());
        let Ok(Parsed::Message(m)) = p.parse(&reply[..20], &mut cx) else {
            panic!()
        };
        assert!(m.truncated && m.rest == Remaining::ParserDriven && m.len == 20);
        let sp = p.skip(&reply[20..], st.as_mut());
        assert!(sp.done);
        assert_eq!(sp.consumed, reply.len() - 20);
    }

    #[test]
    fn commands_and_bulk_replies_cut_inside_their_last_bulk_string() {
        let p = RedisParser;
        let mut st = p.new_state();
        // SET k <10 bytes>, cut inside the value: its length is known, so it is reported
        // cut with its whole length (the framer skips the rest).
        let set = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\n0123456789\r\n";
        let mut cx = ParseCtx::new(Direction::ClientToServer, ParseMode::Truncate, st.as_mut());
        let Ok(Parsed::Message(m)) = p.parse(&set[..30], &mut cx) else {
            panic!()
        };
        assert_eq!(
            (m.len, m.truncated, m.rest),
            (set.len(), true, Remaining::Known)
        );
        assert_eq!(&*m.request_type, b"SET");
        assert_eq!(&*m.request_resource, b"SET k 01234");
        // Cut before its last argument: the rest's length is unknown, nothing to report.
        let mut cx = ParseCtx::new(Direction::ClientToServer, ParseMode::Truncate, st.as_mut());
        assert!(matches!(
            p.parse(&set[..16], &mut cx),
            Ok(Parsed::Incomplete(_))
        ));
        // A cut bulk reply counts the reply's bytes, as a whole one does.
        let reply = b"$10\r\n0123456789\r\n";
        let mut cx = ParseCtx::new(Direction::ServerToClient, ParseMode::Truncate, st.as_mut());
        let Ok(Parsed::Message(m)) = p.parse(&reply[..8], &mut cx) else {
            panic!()
        };
        assert_eq!((m.len, m.body_len), (reply.len(), Some(reply.len() as u64)));
        let mut cx = ParseCtx::new(Direction::ServerToClient, ParseMode::Complete, st.as_mut());
        let Ok(Parsed::Message(m)) = p.parse(reply, &mut cx) else {
            panic!()
        };
        assert_eq!(m.body_len, Some(reply.len() as u64));
    }

    #[test]
    fn hostile_input() {
        let mut deep = Vec::new();
        for _ in 0..100 {
            deep.extend_from_slice(b"*1\r\n");
        }
        deep.extend_from_slice(b":1\r\n");
        assert!(run(&deep, Direction::ServerToClient).is_err());
        assert!(run(b"*99999999999\r\n", Direction::ServerToClient).is_err());
        assert!(run(b"?what\r\n", Direction::ServerToClient).is_err());
        assert!(RedisParser
            .check(b"GET / HTTP/1.1\r\n", Direction::ClientToServer)
            .is_none());
    }
}
