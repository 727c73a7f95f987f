//! DNS over UDP and TCP (RFC 1035): id pairing, question name and type, response code, and the
//! answer and authority records rendered as DeepFlow does (`A=10.0.0.1 TTL=300; NS=... TTL=...`).
//!
//! Record mapping: id -> `request_id`, QTYPE name -> `request_type`, QNAME ->
//! `request_resource`, RCODE -> `response_code` (0 ok; 1 FormErr and 3 NXDomain client errors;
//! 2 ServFail, 4 NotImp, 5 Refused server errors), answers -> `response_result`.

use crate::helpers::{be_u16_at, be_u32_at};
use l7tap_core::{
    Direction, Inference, Message, MessageRole, Needed, PairingMode, ParseCtx, ParseError, Parsed,
    Parser, Protocol, ResponseStatus, L4,
};
use nom::number::complete::be_u16;
use nom::IResult;
use std::borrow::Cow;
use std::fmt::Write as _;

/// The DNS parser.
#[derive(Debug, Clone, Default)]
pub struct DnsParser;

fn err(reason: &'static str) -> ParseError {
    ParseError {
        protocol: "dns",
        reason,
    }
}

/// The fixed 12-byte header.
#[derive(Debug, Clone, Copy)]
struct Header {
    id: u16,
    flags: u16,
    qd: u16,
    an: u16,
    ns: u16,
    ar: u16,
}

fn header(i: &[u8]) -> IResult<&[u8], Header> {
    let (i, id) = be_u16(i)?;
    let (i, flags) = be_u16(i)?;
    let (i, qd) = be_u16(i)?;
    let (i, an) = be_u16(i)?;
    let (i, ns) = be_u16(i)?;
    let (i, ar) = be_u16(i)?;
    Ok((
        i,
        Header {
            id,
            flags,
            qd,
            an,
            ns,
            ar,
        },
    ))
}

/// Most compression pointers followed in one name (loops in hostile packets end here).
const MAX_JUMPS: usize = 32;

/// Reads the name at `pos` of `msg` (following compression pointers). Returns the dotted name
/// and the position after the name in the original place.
fn name(msg: &[u8], mut pos: usize) -> Result<(String, usize), ParseError> {
    let mut out = String::new();
    let mut end = None;
    let mut jumps = 0;
    loop {
        let len = *msg
            .get(pos)
            .ok_or_else(|| err("name runs past the message"))? as usize;
        match len & 0xc0 {
            0x00 if len == 0 => {
                return Ok((out, end.unwrap_or(pos + 1)));
            }
            0x00 => {
                let label = msg
                    .get(pos + 1..pos + 1 + len)
                    .ok_or_else(|| err("label runs past the message"))?;
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&String::from_utf8_lossy(label));
                if out.len() > 255 {
                    return Err(err("name longer than 255 bytes"));
                }
                pos += 1 + len;
            }
            0xc0 => {
                let lo = *msg
                    .get(pos + 1)
                    .ok_or_else(|| err("pointer runs past the message"))?
                    as usize;
                if end.is_none() {
                    end = Some(pos + 2);
                }
                jumps += 1;
                if jumps > MAX_JUMPS {
                    return Err(err("compression pointer loop"));
                }
                pos = ((len & 0x3f) << 8) | lo;
            }
            _ => return Err(err("reserved label type")),
        }
    }
}

/// Name of a record type.
pub fn type_name(t: u16) -> Cow<'static, str> {
    Cow::Borrowed(match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        13 => "HINFO",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        41 => "OPT",
        43 => "DS",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        251 => "IXFR",
        252 => "AXFR",
        255 => "ANY",
        257 => "CAA",
        other => return Cow::Owned(format!("TYPE{other}")),
    })
}

fn status_of(rcode: u16) -> ResponseStatus {
    match rcode {
        0 => ResponseStatus::Ok,
        1 | 3 => ResponseStatus::ClientError,
        2 | 4 | 5 => ResponseStatus::ServerError,
        _ => ResponseStatus::Unknown,
    }
}

/// Renders one resource record at `pos`; returns the position after it.
fn record(msg: &[u8], pos: usize, out: &mut String) -> Result<usize, ParseError> {
    let (_, after_name) = name(msg, pos)?;
    let cut = || err("record header cut");
    let rtype = be_u16_at(msg, after_name).ok_or_else(cut)?;
    let ttl = be_u32_at(msg, after_name + 4).ok_or_else(cut)?;
    let rdlen = usize::from(be_u16_at(msg, after_name + 8).ok_or_else(cut)?);
    let rdata_at = after_name + 10;
    let rdata = msg
        .get(rdata_at..rdata_at + rdlen)
        .ok_or_else(|| err("record data cut"))?;
    if !out.is_empty() {
        out.push_str("; ");
    }
    let tn = type_name(rtype);
    match rtype {
        1 if rdlen == 4 => {
            let _ = write!(
                out,
                "A={}.{}.{}.{} TTL={ttl}",
                rdata[0], rdata[1], rdata[2], rdata[3]
            );
        }
        28 if rdlen == 16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(rdata);
            let _ = write!(out, "AAAA={} TTL={ttl}", std::net::Ipv6Addr::from(a));
        }
        2 | 5 | 12 | 6 => {
            // NS, CNAME, PTR: a name; SOA: its primary name server first.
            let (n, _) = name(msg, rdata_at)?;
            let _ = write!(out, "{tn}={n} TTL={ttl}");
        }
        _ => out.push_str(&tn),
    }
    Ok(rdata_at + rdlen)
}

impl DnsParser {
    fn parse_message<'a>(&self, msg: &'a [u8], len: usize) -> Result<Message<'a>, ParseError> {
        let (_, h) =
            header(msg).map_err(|_: nom::Err<nom::error::Error<&[u8]>>| err("header cut"))?;
        if h.qd != 1 {
            return Err(err("not exactly one question"));
        }
        let (qname, after) = name(msg, 12)?;
        let q = msg
            .get(after..after + 4)
            .ok_or_else(|| err("question cut"))?;
        let (_, qtype) =
            be_u16::<_, nom::error::Error<&[u8]>>(q).map_err(|_| err("question cut"))?;
        let is_response = h.flags & 0x8000 != 0;
        let mut m = Message {
            len,
            role: Some(if is_response {
                MessageRole::Response
            } else {
                MessageRole::Request
            }),
            request_id: Some(u64::from(h.id)),
            request_type: Cow::Owned(type_name(qtype).into_owned().into_bytes()),
            request_resource: Cow::Owned(qname.into_bytes()),
            body_len: Some(msg.len() as u64),
            ..Default::default()
        };
        if is_response {
            let rcode = h.flags & 0x000f;
            m.code = Some(i32::from(rcode));
            m.status = status_of(rcode);
            let mut result = String::new();
            let mut pos = after + 4;
            // Answers and authority, as DeepFlow reports them (additional records are not).
            for _ in 0..(u32::from(h.an) + u32::from(h.ns)).min(64) {
                pos = record(msg, pos, &mut result)?;
            }
            let _ = h.ar;
            m.result = Cow::Owned(result.into_bytes());
        }
        Ok(m)
    }
}

impl Parser for DnsParser {
    fn protocol(&self) -> Protocol {
        Protocol::Dns
    }

    fn supports(&self, _l4: L4) -> bool {
        true
    }

    fn check(&self, payload: &[u8], _direction: Direction) -> Option<Inference> {
        // Over UDP the datagram is the message; over TCP it has a 2-byte length first. Try
        // both shapes; a well-formed header with one question of class IN/ANY is DNS.
        for msg in [payload, payload.get(2..).unwrap_or_default()] {
            let Ok((_, h)) = header(msg) else { continue };
            let opcode = (h.flags >> 11) & 0xf;
            if h.qd != 1 || opcode > 5 || h.an > 256 || h.ns > 256 || h.ar > 256 {
                continue;
            }
            let Ok((_, after)) = name(msg, 12) else {
                continue;
            };
            let Some(class) = be_u16_at(msg, after + 2) else {
                continue;
            };
            if !matches!(class, 1 | 3 | 4 | 255) {
                continue;
            }
            let role = if h.flags & 0x8000 != 0 {
                MessageRole::Response
            } else {
                MessageRole::Request
            };
            return Some(Inference {
                confidence: 150,
                role,
            });
        }
        None
    }

    fn pairing(&self) -> PairingMode {
        PairingMode::ById
    }

    fn parse<'a>(&self, input: &'a [u8], ctx: &mut ParseCtx<'_>) -> Result<Parsed<'a>, ParseError> {
        if ctx.flow.l4 == L4::Udp {
            return self.parse_message(input, input.len()).map(Parsed::Message);
        }
        // TCP: RFC 1035 section 4.2.2, a two-byte length before each message.
        let Some(n) = be_u16_at(input, 0).map(usize::from) else {
            return Ok(Parsed::Incomplete(Needed::Unknown));
        };
        if n < 12 {
            return Err(err("TCP message shorter than a header"));
        }
        match input.get(2..2 + n) {
            Some(msg) => self.parse_message(msg, 2 + n).map(Parsed::Message),
            None => Ok(Parsed::Incomplete(Needed::Total(2 + n))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use l7tap_core::{FlowKey, ParseMode};

    /// The query and answer of RFC 1035's example (section 6.2.1 style), built by hand.
    fn query(id: u16) -> Vec<u8> {
        let mut q = vec![
            (id >> 8) as u8,
            id as u8,
            0x01,
            0x00,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        q.extend_from_slice(b"\x03ISI\x03EDU\x00\x00\x01\x00\x01");
        q
    }

    fn answer(id: u16) -> Vec<u8> {
        let mut a = query(id);
        a[2] = 0x81;
        a[3] = 0x80;
        a[7] = 1; // one answer
                  // name: pointer to offset 12; A IN TTL 300 rdlen 4 10.0.0.52
        a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 10, 0, 0, 52]);
        a
    }

    fn parse(p: &DnsParser, l4: L4, input: &[u8]) -> Result<Message<'static>, ParseError> {
        let mut st = p.new_state();
        let flow = FlowKey {
            l4,
            ..Default::default()
        };
        let mut cx = ParseCtx {
            flow,
            ts_ns: 0,
            direction: Direction::ClientToServer,
            mode: ParseMode::Complete,
            state: st.as_mut(),
        };
        let owned: &'static [u8] = Box::leak(input.to_vec().into_boxed_slice());
        match p.parse(owned, &mut cx)? {
            Parsed::Message(m) => Ok(m),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn udp_query_and_answer() {
        let p = DnsParser;
        let q = parse(&p, L4::Udp, &query(0x1234)).expect("query");
        assert_eq!(q.request_id, Some(0x1234));
        assert_eq!(&*q.request_type, b"A");
        assert_eq!(&*q.request_resource, b"ISI.EDU");
        assert_eq!(q.role, Some(MessageRole::Request));
        let a = parse(&p, L4::Udp, &answer(0x1234)).expect("answer");
        assert_eq!(a.code, Some(0));
        assert_eq!(a.status, ResponseStatus::Ok);
        assert_eq!(&*a.result, b"A=10.0.0.52 TTL=300");
    }

    #[test]
    fn tcp_length_prefix() {
        let p = DnsParser;
        let mut framed = (query(7).len() as u16).to_be_bytes().to_vec();
        framed.extend(query(7));
        let q = parse(&p, L4::Tcp, &framed).expect("tcp query");
        assert_eq!(q.len, framed.len());
        assert!(p.check(&framed, Direction::ClientToServer).is_some());
    }

    #[test]
    fn hostile_names_are_errors() {
        let p = DnsParser;
        let mut looped = query(1);
        looped.truncate(12);
        looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]); // points at itself
        assert!(parse(&p, L4::Udp, &looped).is_err());
        assert!(parse(&p, L4::Udp, &[0; 5]).is_err());
        assert!(p
            .check(b"GET / HTTP/1.1\r\n\r\n", Direction::ClientToServer)
            .is_none());
    }
}
