//! MySQL client/server protocol (https://dev.mysql.com/doc/dev/mysql-server/latest/PAGE_PROTOCOL.html):
//! handshake, login, COM_QUERY, COM_INIT_DB, COM_STMT_PREPARE / COM_STMT_EXECUTE (statement id
//! -> SQL kept in the flow's state), OK / ERR / result-set responses.
//!
//! Every packet is `<3-byte LE length><sequence id><payload>`. A command starts at sequence 0
//! from the client; its response is the server's next packets. The first response packet
//! says what it is (OK `0x00`, ERR `0xff`, else a result set whose column definitions and
//! rows follow): it is the response message, and the rest of a result set is passed over
//! until the client speaks again. COM_QUIT and COM_STMT_CLOSE have no response (one-way).
//!
//! Record mapping (as DeepFlow): command name -> `request_type` (`COM_QUERY`, ...), SQL, database
//! name or `Login username: <u>[ db: <d>]` -> `request_resource`, `<KEYWORD> <table>` ->
//! `endpoint` (SELECT/INSERT/UPDATE/DELETE/REPLACE), ERR: error number -> `response_code`,
//! message -> `response_exception`, SQLSTATE class 08/HY/XX or a server-side error number
//! (< 2000 and not in the 1000s of client mistakes) -> server error, others client error;
//! OK: affected rows -> `response_result` (`affected_rows=N`).

use l7tap_core::{
    Direction, Inference, Message, MessageRole, Needed, PairingMode, ParseCtx, ParseError,
    ParseMode, Parsed, Parser, Protocol, Remaining, ResponseStatus, L4,
};
use std::any::Any;
use std::borrow::Cow;
use std::collections::HashMap;

/// The MySQL parser.
#[derive(Debug, Clone, Default)]
pub struct MysqlParser;

fn err(reason: &'static str) -> ParseError {
    ParseError {
        protocol: "mysql",
        reason,
    }
}

/// Prepared statements remembered per connection.
const MAX_STATEMENTS: usize = 1024;
/// Longest SQL kept for a prepared statement.
const MAX_SQL: usize = 4096;

#[derive(Debug, Default)]
struct MysqlState {
    /// The client sent a command that gets an answer, not yet seen.
    awaiting: bool,
    /// SQL of the COM_STMT_PREPARE waiting for its statement id.
    preparing: Option<Vec<u8>>,
    statements: HashMap<u32, Vec<u8>>,
    /// The server greeted: the client's next packet is its login.
    greeted: bool,
    /// The login asked for CLIENT_QUERY_ATTRIBUTES: COM_QUERY carries a parameter prefix.
    query_attributes: Option<bool>,
    /// The connection uses the compressed protocol (from the login, or recognised mid-stream).
    compressed: Option<bool>,
    /// The login asked for compression: it starts after the server's answer to the login.
    compress_after_login: bool,
}

/// CLIENT_COMPRESS.
const CLIENT_COMPRESS: u32 = 0x20;
/// Largest decompressed payload of one compressed frame that is inflated.
const MAX_INFLATED: usize = 1 << 20;

/// Whether `input` starts like a compressed-protocol frame: `<3 comp len><seq><3 uncomp len>`
/// around either a plain packet (uncompressed length 0) or a zlib stream.
fn looks_compressed(input: &[u8]) -> bool {
    if input.len() < 11 {
        return false;
    }
    let clen = u24(input);
    let ulen = u24(&input[4..]);
    if ulen == 0 {
        // One plain packet inside, filling the frame exactly.
        u24(&input[7..]) + 4 == clen
    } else {
        input[7] == 0x78 && ulen >= clen.saturating_sub(16)
    }
}

fn u24(b: &[u8]) -> usize {
    usize::from(b[0]) | usize::from(b[1]) << 8 | usize::from(b[2]) << 16
}

/// CLIENT_QUERY_ATTRIBUTES (MySQL 8.0.23+).
const CLIENT_QUERY_ATTRIBUTES: u32 = 0x0800_0000;

/// The SQL of a COM_QUERY argument: with query attributes, after `parameter_count` and
/// `parameter_set_count` (a client that sends no attributes writes `00 01`). When the login
/// was not seen, that prefix is recognised by its bytes.
fn query_sql(arg: &[u8], attributes: Option<bool>) -> &[u8] {
    let prefixed = match attributes {
        Some(a) => a,
        None => arg.starts_with(&[0, 1]),
    };
    if !prefixed {
        return arg;
    }
    let mut i = 0;
    match (lenenc(arg, &mut i), lenenc(arg, &mut i)) {
        // No attributes: the SQL follows. (With attributes, their types, names and values
        // come first; the record then keeps the raw argument.)
        (Some(0), Some(_)) => &arg[i..],
        _ => arg,
    }
}

const COM_QUIT: u8 = 1;
const COM_INIT_DB: u8 = 2;
const COM_QUERY: u8 = 3;
const COM_PING: u8 = 14;
const COM_STMT_PREPARE: u8 = 22;
const COM_STMT_EXECUTE: u8 = 23;
const COM_STMT_CLOSE: u8 = 25;
const COM_STMT_RESET: u8 = 26;

fn command_name(c: u8) -> &'static [u8] {
    match c {
        COM_QUIT => b"COM_QUIT",
        COM_INIT_DB => b"COM_INIT_DB",
        COM_QUERY => b"COM_QUERY",
        4 => b"COM_FIELD_LIST",
        COM_PING => b"COM_PING",
        COM_STMT_PREPARE => b"COM_STMT_PREPARE",
        COM_STMT_EXECUTE => b"COM_STMT_EXECUTE",
        COM_STMT_CLOSE => b"COM_STMT_CLOSE",
        COM_STMT_RESET => b"COM_STMT_RESET",
        24 => b"COM_STMT_SEND_LONG_DATA",
        17 => b"COM_CHANGE_USER",
        31 => b"COM_RESET_CONNECTION",
        _ => b"COM_OTHER",
    }
}

/// A length-encoded integer at `b[*i]`.
fn lenenc(b: &[u8], i: &mut usize) -> Option<u64> {
    let first = *b.get(*i)?;
    *i += 1;
    let n = match first {
        0..=0xfa => return Some(u64::from(first)),
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        _ => return None,
    };
    let bytes = b.get(*i..*i + n)?;
    *i += n;
    let mut v = 0u64;
    for (k, &x) in bytes.iter().enumerate() {
        v |= u64::from(x) << (8 * k);
    }
    Some(v)
}

/// `<KEYWORD> <table>` of a DML statement, as DeepFlow's endpoint; empty for other SQL.
pub fn sql_endpoint(sql: &[u8]) -> Vec<u8> {
    let words: Vec<&[u8]> = sql
        .split(|b| b.is_ascii_whitespace() || *b == b'(' || *b == b',')
        .filter(|w| !w.is_empty())
        .take(64)
        .collect();
    let Some(first) = words.first() else {
        return Vec::new();
    };
    let kw = first.to_ascii_uppercase();
    let after = |marker: &[u8]| -> Option<&[u8]> {
        let at = words.iter().position(|w| w.eq_ignore_ascii_case(marker))?;
        words.get(at + 1).copied()
    };
    let table = match kw.as_slice() {
        b"SELECT" | b"DELETE" => after(b"FROM"),
        b"INSERT" | b"REPLACE" => after(b"INTO"),
        b"UPDATE" => words.get(1).copied(),
        // DDL on tables (not on databases), skipping IF [NOT] EXISTS.
        b"CREATE" | b"DROP" | b"ALTER" | b"TRUNCATE"
            if words
                .get(1)
                .is_some_and(|w| w.eq_ignore_ascii_case(b"TABLE")) =>
        {
            words[2..]
                .iter()
                .find(|w| {
                    !(w.eq_ignore_ascii_case(b"IF")
                        || w.eq_ignore_ascii_case(b"NOT")
                        || w.eq_ignore_ascii_case(b"EXISTS"))
                })
                .copied()
        }
        _ => None,
    };
    match table {
        Some(t) => {
            let t: Vec<u8> = t
                .iter()
                .copied()
                .filter(|&b| b != b'`' && b != b';')
                .collect();
            let mut e = kw;
            e.push(b' ');
            e.extend_from_slice(&t);
            e
        }
        None => Vec::new(),
    }
}

/// Error numbers a client causes (syntax, unknown objects, duplicates, constraint failures);
/// the others below 2000 come from the server's own trouble.
fn error_status(code: u16, sqlstate: &[u8]) -> ResponseStatus {
    if sqlstate.starts_with(b"08") || sqlstate.starts_with(b"XX") {
        return ResponseStatus::ServerError;
    }
    match code {
        1021
        | 1037
        | 1038
        | 1040
        | 1041
        | 1053
        | 1077..=1080
        | 1152..=1160
        | 1180..=1183
        | 1205
        | 1213 => ResponseStatus::ServerError,
        _ => ResponseStatus::ClientError,
    }
}

impl MysqlParser {
    fn request<'a>(
        &self,
        st: &mut MysqlState,
        seq: u8,
        p: &'a [u8],
        len: usize,
    ) -> Result<Parsed<'a>, ParseError> {
        if seq != 0 {
            if st.greeted && seq == 1 && p.len() >= 32 {
                // HandshakeResponse41: caps(4) max_packet(4) charset(1) reserved(23) user\0 ...
                st.greeted = false;
                st.awaiting = true;
                let caps = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
                st.query_attributes = Some(caps & CLIENT_QUERY_ATTRIBUTES != 0);
                st.compress_after_login = caps & CLIENT_COMPRESS != 0;
                st.compressed = Some(false);
                let (user, mut at) = crate::helpers::cstr_at(p, 32).unwrap_or((&[], p.len()));
                let mut res = b"Login username: ".to_vec();
                res.extend_from_slice(user);
                // Auth response: length-encoded (0x200000) or 1-byte length (0x8000) or C string.
                if caps & 0x0020_0000 != 0 {
                    let n = lenenc(p, &mut at).unwrap_or(0) as usize;
                    at = at.saturating_add(n);
                } else if caps & 0x8000 != 0 {
                    let n = usize::from(p.get(at).copied().unwrap_or(0));
                    at = at.saturating_add(1 + n);
                } else if let Some((_, next)) = crate::helpers::cstr_at(p, at) {
                    at = next;
                }
                if caps & 0x8 != 0 {
                    if let Some((db, _)) = crate::helpers::cstr_at(p, at) {
                        if !db.is_empty() {
                            res.extend_from_slice(b" db: ");
                            res.extend_from_slice(db);
                        }
                    }
                }
                return Ok(Parsed::Message(Message {
                    len,
                    role: Some(MessageRole::Request),
                    request_type: Cow::Borrowed(b"LOGIN"),
                    endpoint: Cow::Owned(res.clone()),
                    request_resource: Cow::Owned(res),
                    ..Default::default()
                }));
            }
            // A continuation (large command, auth switch, LOCAL INFILE data): not a command.
            return Ok(Parsed::Skip(len));
        }
        let Some((&cmd, arg)) = p.split_first() else {
            return Err(err("empty command packet"));
        };
        let mut m = Message {
            len,
            role: Some(MessageRole::Request),
            request_type: Cow::Borrowed(command_name(cmd)),
            ..Default::default()
        };
        match cmd {
            COM_QUERY | COM_STMT_PREPARE => {
                let sql = if cmd == COM_QUERY {
                    query_sql(arg, st.query_attributes)
                } else {
                    arg
                };
                m.request_resource = Cow::Borrowed(sql);
                m.endpoint = Cow::Owned(sql_endpoint(sql));
                if cmd == COM_STMT_PREPARE {
                    st.preparing = Some(arg[..arg.len().min(MAX_SQL)].to_vec());
                }
            }
            COM_INIT_DB => m.request_resource = Cow::Borrowed(arg),
            COM_STMT_EXECUTE | COM_STMT_CLOSE | COM_STMT_RESET => {
                let id = arg
                    .get(..4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                m.request_id = id.map(u64::from);
                if let Some(sql) = id.and_then(|i| st.statements.get(&i)) {
                    m.request_resource = Cow::Owned(sql.clone());
                    m.endpoint = Cow::Owned(sql_endpoint(sql));
                }
                if cmd == COM_STMT_CLOSE {
                    if let Some(i) = id {
                        st.statements.remove(&i);
                    }
                }
            }
            _ => {}
        }
        if matches!(cmd, COM_QUIT | COM_STMT_CLOSE) || cmd == 24 {
            m.one_way = true;
            m.status = ResponseStatus::Ok;
        } else {
            st.awaiting = true;
        }
        Ok(Parsed::Message(m))
    }

    fn response<'a>(
        &self,
        st: &mut MysqlState,
        seq: u8,
        p: &'a [u8],
        len: usize,
    ) -> Result<Parsed<'a>, ParseError> {
        if seq == 0 && p.first() == Some(&10) && !st.awaiting {
            // Server greeting (protocol 10): the login comes next.
            st.greeted = true;
            return Ok(Parsed::Skip(len));
        }
        if !st.awaiting {
            // Column definitions, rows and terminators of a result set already reported.
            return Ok(Parsed::Skip(len));
        }
        st.awaiting = false;
        if std::mem::take(&mut st.compress_after_login) {
            st.compressed = Some(true);
        }
        let Some(&head) = p.first() else {
            return Err(err("empty response packet"));
        };
        let mut m = Message {
            len,
            role: Some(MessageRole::Response),
            status: ResponseStatus::Ok,
            ..Default::default()
        };
        match head {
            0x00 if p.len() >= 7 => {
                let preparing = st.preparing.take();
                if let Some(sql) = preparing {
                    // COM_STMT_PREPARE_OK: statement id, columns, params.
                    let id = u32::from_le_bytes([p[1], p[2], p[3], p[4]]);
                    if st.statements.len() >= MAX_STATEMENTS {
                        st.statements.clear();
                    }
                    st.statements.insert(id, sql);
                    m.request_id = Some(u64::from(id));
                    m.result = Cow::Owned(format!("statement_id={id}").into_bytes());
                } else {
                    let mut i = 1;
                    let rows = lenenc(p, &mut i).unwrap_or(0);
                    m.result = Cow::Owned(format!("affected_rows={rows}").into_bytes());
                }
            }
            0x00 => {}
            0xff => {
                st.preparing = None;
                let code = p
                    .get(1..3)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]))
                    .unwrap_or(0);
                let (state, msg) = if p.get(3) == Some(&b'#') && p.len() >= 9 {
                    (&p[4..9], &p[9..])
                } else {
                    (&p[0..0], p.get(3..).unwrap_or(&[]))
                };
                m.code = Some(i32::from(code));
                m.exception = Cow::Borrowed(msg);
                m.status = error_status(code, state);
            }
            0xfe if p.len() < 9 => {} // EOF
            _ => {
                st.preparing = None;
                let mut i = 0;
                let cols = lenenc(p, &mut i).unwrap_or(0);
                m.result = Cow::Owned(format!("columns={cols}").into_bytes());
            }
        }
        Ok(Parsed::Message(m))
    }
}

impl Parser for MysqlParser {
    fn protocol(&self) -> Protocol {
        Protocol::Mysql
    }

    fn supports(&self, l4: L4) -> bool {
        l4.is_stream()
    }

    fn check(&self, p: &[u8], direction: Direction) -> Option<Inference> {
        if p.len() < 5 {
            return None;
        }
        let len = usize::from(p[0]) | usize::from(p[1]) << 8 | usize::from(p[2]) << 16;
        let seq = p[3];
        if len == 0 || len + 4 < p.len().min(len + 4) || len > 1 << 24 {
            return None;
        }
        let body = &p[4..];
        match direction {
            Direction::ServerToClient => {
                // Greeting: protocol 10, a printable version string ending in NUL.
                if seq == 0 && body[0] == 10 {
                    let (ver, _) = crate::helpers::cstr_at(body, 1)?;
                    if !ver.is_empty()
                        && ver.len() < 64
                        && ver.iter().all(|b| b.is_ascii_graphic())
                        && ver[0].is_ascii_digit()
                    {
                        return Some(Inference {
                            confidence: 220,
                            role: MessageRole::Response,
                        });
                    }
                }
                None
            }
            Direction::ClientToServer => {
                if looks_compressed(p) && u24(&p[4..]) == 0 && u24(p) + 7 == p.len() {
                    // Compressed protocol, payload stored plain: check the packet inside.
                    return self.check(&p[7..], direction);
                }
                if seq != 0 || p.len() != len + 4 {
                    return None;
                }
                let sql_like = |s: &[u8]| {
                    let w: Vec<u8> = s
                        .iter()
                        .take(9)
                        .take_while(|b| b.is_ascii_alphabetic())
                        .copied()
                        .collect();
                    let w = w.to_ascii_uppercase();
                    [
                        &b"SELECT"[..],
                        b"INSERT",
                        b"UPDATE",
                        b"DELETE",
                        b"SET",
                        b"SHOW",
                        b"CREATE",
                        b"DROP",
                        b"ALTER",
                        b"BEGIN",
                        b"COMMIT",
                        b"USE",
                        b"REPLACE",
                        b"CALL",
                        b"START",
                        b"ROLLBACK",
                        b"EXPLAIN",
                        b"WITH",
                        b"DESC",
                        b"TRUNCATE",
                    ]
                    .contains(&w.as_slice())
                };
                let request = |confidence| {
                    Some(Inference {
                        confidence,
                        role: MessageRole::Request,
                    })
                };
                match body[0] {
                    COM_QUERY | COM_STMT_PREPARE if sql_like(query_sql(&body[1..], None)) => {
                        request(160)
                    }
                    // Connection pools ping first: a whole packet of one command byte.
                    COM_PING | COM_QUIT if len == 1 => request(110),
                    COM_INIT_DB if len > 1 && body[1..].iter().all(|b| b.is_ascii_graphic()) => {
                        request(110)
                    }
                    _ => None,
                }
            }
        }
    }

    fn resync_after_turn(&self) -> bool {
        true
    }

    /// After a gap: a request as [`Parser::check`] knows them, or an answer's first packet
    /// (sequence 1: OK, ERR, EOF or a result set's column count), which is what the server
    /// sends first after the client's next command (the turn this waits for).
    fn resync(&self, p: &[u8], direction: Direction) -> bool {
        match direction {
            Direction::ClientToServer => self.check(p, direction).is_some(),
            Direction::ServerToClient => {
                p.len() >= 5
                    && u24(p) > 0
                    && p[3] == 1
                    && matches!(p[4], 0x00 | 0xff | 0xfe | 0x01..=0xfa)
            }
        }
    }

    fn pairing(&self) -> PairingMode {
        PairingMode::Sequential
    }

    fn new_state(&self) -> Box<dyn Any + Send> {
        Box::new(MysqlState::default())
    }

    fn parse<'a>(&self, input: &'a [u8], ctx: &mut ParseCtx<'_>) -> Result<Parsed<'a>, ParseError> {
        let Some(st) = ctx.state.downcast_mut::<MysqlState>() else {
            return Err(err("flow state is not MySQL state"));
        };
        if st.compressed.is_none() && input.len() >= 11 {
            // First bytes of a connection seen mid-stream: which framing is it?
            st.compressed = Some(looks_compressed(input));
        }
        if st.compressed == Some(true) {
            return self.parse_compressed(st, input, ctx.direction);
        }
        if input.len() < 4 {
            return Ok(Parsed::Incomplete(Needed::Total(4)));
        }
        let total = u24(input) + 4;
        if input.len() < total {
            if ctx.mode == ParseMode::Complete {
                return Ok(Parsed::Incomplete(Needed::Total(total)));
            }
            // Cut short (a capture gap, a snaplen cut: a bulk INSERT or a large row written
            // at once): the packet's length is in its header, so what is missing is skipped
            // by length and the framing stays in step; a command or the first packet of an
            // answer is reported from what arrived, flagged cut.
            let parsed = self.packet(st, ctx.direction, input[3], &input[4..], total)?;
            return Ok(match parsed {
                Parsed::Message(mut m) => {
                    m.len = total;
                    m.rest = Remaining::Known;
                    m.truncated = true;
                    Parsed::Message(m)
                }
                Parsed::Skip(_) => Parsed::Skip(total),
                other => other,
            });
        }
        self.packet(st, ctx.direction, input[3], &input[4..total], total)
    }
}

impl MysqlParser {
    /// One packet (`seq`, payload `p`) that spans `total` bytes of the input.
    fn packet<'a>(
        &self,
        st: &mut MysqlState,
        direction: Direction,
        seq: u8,
        p: &'a [u8],
        total: usize,
    ) -> Result<Parsed<'a>, ParseError> {
        match direction {
            Direction::ClientToServer => self.request(st, seq, p, total),
            Direction::ServerToClient => self.response(st, seq, p, total),
        }
    }

    /// One compressed-protocol frame: its first inner packet is parsed as a plain one (the
    /// rest of a frame holds result-set rows or pipelined packets, passed over).
    fn parse_compressed<'a>(
        &self,
        st: &mut MysqlState,
        input: &'a [u8],
        direction: Direction,
    ) -> Result<Parsed<'a>, ParseError> {
        if input.len() < 7 {
            return Ok(Parsed::Incomplete(Needed::Total(7)));
        }
        let total = u24(input) + 7;
        if input.len() < total {
            return Ok(Parsed::Incomplete(Needed::Total(total)));
        }
        let ulen = u24(&input[4..]);
        let body = &input[7..total];
        let inflated;
        let inner: &[u8] = if ulen == 0 {
            body
        } else {
            use std::io::Read;
            let mut out = Vec::with_capacity(ulen.min(MAX_INFLATED));
            let mut z = flate2::read::ZlibDecoder::new(body).take(MAX_INFLATED as u64);
            if z.read_to_end(&mut out).is_err() {
                return Err(err("compressed frame does not inflate"));
            }
            inflated = out;
            &inflated
        };
        if inner.len() < 4 {
            return Ok(Parsed::Skip(total));
        }
        let plen = u24(inner) + 4;
        let p = &inner[4..plen.min(inner.len())];
        let parsed = self.packet(st, direction, inner[3], p, total)?;
        Ok(match parsed {
            Parsed::Message(m) => {
                let mut m = m.into_owned();
                m.len = total;
                m.truncated |= plen > inner.len();
                Parsed::Message(m)
            }
            _ => Parsed::Skip(total),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_like_deepflow() {
        assert_eq!(
            sql_endpoint(b"SELECT * FROM `controller` WHERE ip <> ?"),
            b"SELECT controller"
        );
        assert_eq!(
            sql_endpoint(b"INSERT INTO `controller` (`a`) VALUES (?)"),
            b"INSERT controller"
        );
        assert_eq!(sql_endpoint(b"update t set a=1"), b"UPDATE t");
        assert!(sql_endpoint(b"create database x").is_empty());
        assert_eq!(
            sql_endpoint(b"drop table test_table_2"),
            b"DROP test_table_2"
        );
        assert_eq!(sql_endpoint(b"create table `t2`( `id` int)"), b"CREATE t2");
        assert_eq!(sql_endpoint(b"ALTER TABLE t ADD x int"), b"ALTER t");
    }

    #[test]
    fn packets_cut_short_are_reported_and_skipped_by_length() {
        let p = MysqlParser;
        let mut st = p.new_state();
        let packet = |seq: u8, payload: &[u8]| {
            let n = payload.len();
            let mut v = vec![n as u8, (n >> 8) as u8, (n >> 16) as u8, seq];
            v.extend_from_slice(payload);
            v
        };
        // A bulk INSERT larger than what was captured of it: reported, cut, whole length.
        let mut sql = b"\x03INSERT INTO t VALUES ('".to_vec();
        sql.extend_from_slice(&[b'v'; 20_000]);
        sql.extend_from_slice(b"')");
        let insert = packet(0, &sql);
        let mut cx = ParseCtx::new(Direction::ClientToServer, ParseMode::Truncate, st.as_mut());
        let Ok(Parsed::Message(m)) = p.parse(&insert[..200], &mut cx) else {
            panic!()
        };
        assert_eq!(
            (m.len, m.truncated, m.rest),
            (insert.len(), true, Remaining::Known)
        );
        assert_eq!(&*m.request_type, b"COM_QUERY");
        assert!(m
            .request_resource
            .starts_with(b"INSERT INTO t VALUES ('vvv"));
        // Its answer pairs as usual.
        let ok = packet(1, &[0, 1, 0, 2, 0, 0, 0]);
        let mut cx = ParseCtx::new(Direction::ServerToClient, ParseMode::Complete, st.as_mut());
        let Ok(Parsed::Message(m)) = p.parse(&ok, &mut cx) else {
            panic!()
        };
        assert_eq!(&*m.result, b"affected_rows=1");
        // A row of a result set already reported, cut: skipped by its length.
        let row = packet(3, &[b'r'; 30_000]);
        let mut cx = ParseCtx::new(Direction::ServerToClient, ParseMode::Truncate, st.as_mut());
        assert!(matches!(p.parse(&row[..50], &mut cx), Ok(Parsed::Skip(n)) if n == row.len()));
    }

    #[test]
    fn hostile_packets() {
        let p = MysqlParser;
        let mut st = p.new_state();
        for seed in 0u32..3000 {
            let blob = crate::helpers::noise(seed, 48);
            for dir in [Direction::ClientToServer, Direction::ServerToClient] {
                let mut cx = ParseCtx::new(dir, l7tap_core::ParseMode::Complete, st.as_mut());
                let _ = p.parse(&blob, &mut cx);
                let _ = p.check(&blob, dir);
            }
        }
    }
}
