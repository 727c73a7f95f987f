//! MQTT 3.1, 3.1.1 and 5 (OASIS specifications): every control packet type, packet ids for
//! pairing, QoS 0 publishes as one-way records, return and reason codes.
//!
//! Record mapping: packet type -> `request_type` (`CONNECT`, `PUBLISH`, ...), topic (publish) or
//! topics joined by `,` (subscribe) -> `request_resource`, client id (connect) ->
//! `request_domain`, protocol level -> `version` (`3.1`, `3.1.1`, `5`), packet id ->
//! `request_id`, CONNACK/SUBACK/PUBACK codes -> `response_code` (0 ok; CONNACK refusals client
//! errors; SUBACK/acks >= 0x80 server errors).

use crate::helpers::{be_u16_at, str16_at};
use l7tap_core::{
    Direction, Inference, Message, MessageRole, Needed, PairingMode, ParseCtx, ParseError,
    ParseMode, Parsed, Parser, Protocol, Remaining, ResponseStatus, L4,
};
use std::any::Any;
use std::borrow::Cow;

/// The MQTT parser.
#[derive(Debug, Clone, Default)]
pub struct MqttParser;

/// Per flow: the protocol level from CONNECT (5 has properties everywhere).
#[derive(Debug)]
struct MqttState {
    level: u8,
}

fn err(reason: &'static str) -> ParseError {
    ParseError {
        protocol: "mqtt",
        reason,
    }
}

const NAMES: [&str; 16] = [
    "RESERVED",
    "CONNECT",
    "CONNACK",
    "PUBLISH",
    "PUBACK",
    "PUBREC",
    "PUBREL",
    "PUBCOMP",
    "SUBSCRIBE",
    "SUBACK",
    "UNSUBSCRIBE",
    "UNSUBACK",
    "PINGREQ",
    "PINGRESP",
    "DISCONNECT",
    "AUTH",
];

/// Variable byte integer (remaining length, property lengths): value and bytes used;
/// `Ok(None)` when cut.
fn varint(b: &[u8]) -> Result<Option<(usize, usize)>, ParseError> {
    let mut v = 0usize;
    for (i, &byte) in b.iter().enumerate().take(4) {
        v |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((v, i + 1)));
        }
    }
    if b.len() >= 4 {
        Err(err("variable byte integer longer than 4 bytes"))
    } else {
        Ok(None)
    }
}

/// A plausible fixed header at the start of `b`: a known type with the flag bits the
/// specification requires for it, and a remaining length that the payload holds.
fn fixed_header_ok(b: &[u8]) -> bool {
    let Some(&first) = b.first() else {
        return false;
    };
    let (ty, flags) = (first >> 4, first & 0x0f);
    let flags_ok = match ty {
        0 => false,
        3 => (flags >> 1) & 3 != 3, // PUBLISH: QoS 3 is malformed
        6 | 8 | 10 => flags == 0b0010,
        _ => flags == 0,
    };
    match varint(b.get(1..).unwrap_or_default()) {
        Ok(Some((rem, used))) => flags_ok && 1 + used + rem <= b.len(),
        _ => false,
    }
}

/// Skips v5 properties at `at`.
fn skip_props(b: &[u8], at: usize, level: u8) -> Option<usize> {
    if level < 5 {
        return Some(at);
    }
    let (n, used) = varint(b.get(at..)?).ok()??;
    Some(at + used + n)
}

impl Parser for MqttParser {
    fn protocol(&self) -> Protocol {
        Protocol::Mqtt
    }

    fn supports(&self, l4: L4) -> bool {
        l4.is_stream()
    }

    fn check(&self, payload: &[u8], _direction: Direction) -> Option<Inference> {
        // A CONNECT naming the protocol: "MQTT" (3.1.1, 5) or "MQIsdp" (3.1).
        if payload.first()? >> 4 != 1 {
            return None;
        }
        let (_, used) = varint(payload.get(1..)?).ok()??;
        let (name, at) = str16_at(payload, 1 + used)?;
        if name != b"MQTT" && name != b"MQIsdp" {
            return None;
        }
        matches!(payload.get(at)?, 3..=5).then_some(Inference {
            confidence: 200,
            role: MessageRole::Request,
        })
    }

    fn check_flow(
        &self,
        payload: &[u8],
        direction: Direction,
        flow: &l7tap_core::FlowKey,
    ) -> Option<Inference> {
        if let Some(i) = self.check(payload, direction) {
            return Some(i);
        }
        // A capture that starts after CONNECT: on the IANA ports, a well-formed packet will do.
        let port = flow.server.port();
        if (port == 1883 || port == 8883) && fixed_header_ok(payload) {
            let role = if direction == Direction::ClientToServer {
                MessageRole::Request
            } else {
                MessageRole::Response
            };
            return Some(Inference {
                confidence: 120,
                role,
            });
        }
        None
    }

    fn resync(&self, payload: &[u8], _direction: Direction) -> bool {
        fixed_header_ok(payload)
    }

    fn pairing(&self) -> PairingMode {
        PairingMode::IdOrOrder
    }

    fn new_state(&self) -> Box<dyn Any + Send> {
        Box::new(MqttState { level: 4 })
    }

    fn parse<'a>(&self, input: &'a [u8], ctx: &mut ParseCtx<'_>) -> Result<Parsed<'a>, ParseError> {
        let Some(state) = ctx.state.downcast_mut::<MqttState>() else {
            return Err(err("flow state is not MQTT state"));
        };
        let Some(&first) = input.first() else {
            return Ok(Parsed::Incomplete(Needed::Unknown));
        };
        let Some((rem, used)) = varint(&input[1..])? else {
            return Ok(Parsed::Incomplete(Needed::Unknown));
        };
        let total = 1 + used + rem;
        let ty = first >> 4;
        // A PUBLISH cut short (a payload larger than the snaplen, a capture gap): its length
        // is in its fixed header, so it is reported from what arrived (topic, packet id) and
        // the rest skipped by length; any other packet cut short waits, as before.
        let cut = input.len() < total;
        if cut && (ctx.mode == ParseMode::Complete || ty != 3) {
            return Ok(Parsed::Incomplete(Needed::Total(total)));
        }
        if ty == 0 {
            return Err(err("reserved packet type"));
        }
        let b = &input[1 + used..total.min(input.len())];
        let mut m = Message {
            len: total,
            request_type: Cow::Borrowed(NAMES[usize::from(ty)].as_bytes()),
            body_len: Some(rem as u64),
            status: ResponseStatus::Ok,
            ..Default::default()
        };
        let request = matches!(ty, 1 | 8 | 10 | 12)
            || (ty == 3 && ctx.direction == Direction::ClientToServer);
        m.role = Some(if request || ty == 3 {
            MessageRole::Request
        } else {
            MessageRole::Response
        });
        let bad = || err("packet shorter than its fields");
        match ty {
            1 => {
                let (_, at) = str16_at(b, 0).ok_or_else(bad)?;
                let level = *b.get(at).ok_or_else(bad)?;
                state.level = level;
                m.version = Cow::Borrowed(match level {
                    3 => b"3.1",
                    4 => b"3.1.1",
                    5 => b"5",
                    _ => b"",
                });
                let at = skip_props(b, at + 4, level).ok_or_else(bad)?;
                let (client_id, _) = str16_at(b, at).ok_or_else(bad)?;
                m.request_domain = Cow::Borrowed(client_id);
            }
            2 => {
                let code = *b.get(1).ok_or_else(bad)?;
                m.code = Some(i32::from(code));
                m.status = if code == 0 {
                    ResponseStatus::Ok
                } else {
                    ResponseStatus::ClientError
                };
            }
            3 => {
                let qos = (first >> 1) & 3;
                let Some((topic, mut at)) = str16_at(b, 0) else {
                    // Cut inside its topic: nothing to report, skipped by length.
                    return if cut {
                        Ok(Parsed::Skip(total))
                    } else {
                        Err(bad())
                    };
                };
                m.request_resource = Cow::Borrowed(topic);
                m.endpoint = Cow::Borrowed(topic);
                if qos > 0 {
                    m.request_id = be_u16_at(b, at).map(u64::from);
                    if m.request_id.is_none() && !cut {
                        return Err(bad());
                    }
                    at += 2;
                }
                let _ = at;
                if cut {
                    m.truncated = true;
                    m.rest = Remaining::Known;
                }
                // QoS 0 is fire-and-forget, and a publish from the server is not answered
                // by the exchange the client is waiting on: records of their own.
                m.one_way = qos == 0 || ctx.direction == Direction::ServerToClient;
            }
            4..=7 | 11 => {
                m.request_id = Some(u64::from(be_u16_at(b, 0).ok_or_else(bad)?));
                if let Some(&code) = b.get(2) {
                    m.code = Some(i32::from(code));
                    if code >= 0x80 {
                        m.status = ResponseStatus::ServerError;
                    }
                }
                // Acknowledgements of the server's publishes travel client -> server.
                m.one_way = ctx.direction == Direction::ClientToServer && ty != 6;
                if ty == 6 {
                    m.role = Some(MessageRole::Request); // PUBREL: asks for PUBCOMP
                }
            }
            8 | 10 => {
                m.request_id = Some(u64::from(be_u16_at(b, 0).ok_or_else(bad)?));
                let mut at = skip_props(b, 2, state.level).ok_or_else(bad)?;
                let mut topics = Vec::new();
                while at < b.len() {
                    let (t, next) = str16_at(b, at).ok_or_else(bad)?;
                    if !topics.is_empty() {
                        topics.push(b',');
                    }
                    topics.extend_from_slice(t);
                    at = next + usize::from(ty == 8); // SUBSCRIBE has an options byte
                    if topics.len() > 256 {
                        break;
                    }
                }
                m.request_resource = Cow::Owned(topics);
            }
            9 => {
                m.request_id = Some(u64::from(be_u16_at(b, 0).ok_or_else(bad)?));
                let at = skip_props(b, 2, state.level).ok_or_else(bad)?;
                if let Some(&code) = b.get(at) {
                    m.code = Some(i32::from(code));
                    if code >= 0x80 {
                        m.status = ResponseStatus::ServerError;
                    }
                }
            }
            14 => m.one_way = true, // DISCONNECT
            _ => {}
        }
        Ok(Parsed::Message(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<'a>(input: &'a [u8], dir: Direction) -> Message<'a> {
        let p = MqttParser;
        let mut st = p.new_state();
        let mut cx = ParseCtx::new(dir, ParseMode::Complete, st.as_mut());
        match p.parse(input, &mut cx) {
            Ok(Parsed::Message(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_publish_cut_short_is_reported_and_skipped_by_length() {
        // PUBLISH QoS 1, topic "t/big", packet id 7, 20,000 bytes of payload; 30 arrived.
        let mut rem: usize = 2 + 5 + 2 + 20_000;
        let mut publish = vec![0x32];
        while rem >= 0x80 {
            publish.push(0x80 | (rem & 0x7f) as u8);
            rem >>= 7;
        }
        publish.push(rem as u8);
        publish.extend_from_slice(b"\x00\x05t/big\x00\x07");
        publish.extend_from_slice(&[b'p'; 20_000]);
        let p = MqttParser;
        let mut st = p.new_state();
        let mut cx = ParseCtx::new(Direction::ClientToServer, ParseMode::Truncate, st.as_mut());
        let Ok(Parsed::Message(m)) = p.parse(&publish[..30], &mut cx) else {
            panic!()
        };
        assert_eq!(
            (m.len, m.truncated, m.rest),
            (publish.len(), true, Remaining::Known)
        );
        assert_eq!(
            (&*m.request_resource, m.request_id),
            (&b"t/big"[..], Some(7))
        );
        // Cut inside its topic: skipped by length, nothing reported.
        let mut cx = ParseCtx::new(Direction::ClientToServer, ParseMode::Truncate, st.as_mut());
        assert!(
            matches!(p.parse(&publish[..6], &mut cx), Ok(Parsed::Skip(n)) if n == publish.len())
        );
        // Waiting for the rest when not cut.
        let mut cx = ParseCtx::new(Direction::ClientToServer, ParseMode::Complete, st.as_mut());
        assert!(matches!(
            p.parse(&publish[..30], &mut cx),
            Ok(Parsed::Incomplete(_))
        ));
    }

    #[test]
    fn connect_publish_subscribe() {
        // CONNECT, MQTT 3.1.1, clean session, keep alive 60, client id "test-1".
        let connect = b"\x10\x12\x00\x04MQTT\x04\x02\x00\x3c\x00\x06test-1";
        assert!(MqttParser
            .check(connect, Direction::ClientToServer)
            .is_some());
        let m = run(connect, Direction::ClientToServer);
        assert_eq!(
            (&*m.request_type, &*m.version, &*m.request_domain),
            (&b"CONNECT"[..], &b"3.1.1"[..], &b"test-1"[..])
        );
        let m = run(b"\x20\x02\x00\x05", Direction::ServerToClient);
        assert_eq!((m.code, m.status), (Some(5), ResponseStatus::ClientError));
        let m = run(b"\x32\x0a\x00\x03a/b\x00\x07hi!", Direction::ClientToServer);
        assert_eq!(
            (&*m.request_resource, m.request_id, m.one_way),
            (&b"a/b"[..], Some(7), false)
        );
        let m = run(b"\x30\x05\x00\x01tx!", Direction::ClientToServer);
        assert!(m.one_way, "QoS 0");
        let m = run(
            b"\x82\x0c\x00\x01\x00\x01a\x00\x00\x03b/c\x01",
            Direction::ClientToServer,
        );
        assert_eq!(
            (&*m.request_resource, m.request_id),
            (&b"a,b/c"[..], Some(1))
        );
        let m = run(b"\x90\x04\x00\x01\x00\x80", Direction::ServerToClient);
        assert_eq!(m.status, ResponseStatus::Ok);
    }

    #[test]
    fn cut_and_hostile() {
        let p = MqttParser;
        let mut st = p.new_state();
        let mut cx = ParseCtx::new(Direction::ClientToServer, ParseMode::Complete, st.as_mut());
        assert!(matches!(
            p.parse(b"\x30\x0a\x00", &mut cx),
            Ok(Parsed::Incomplete(Needed::Total(12)))
        ));
        assert!(p.parse(b"\x30\xff\xff\xff\xff\x01", &mut cx).is_err());
        assert!(p.parse(b"\x82\x03\x00\x01\x00", &mut cx).is_err());
    }
}
