//! Apache Kafka wire protocol (https://kafka.apache.org/protocol): request headers (api key,
//! version, correlation id, client id; flexible versions' tagged fields), responses paired by
//! correlation id, topic / partition / offset of Produce and Fetch, group id of the group
//! APIs, error codes.
//!
//! Record mapping (as DeepFlow): api name (`Produce`, `Fetch`, `JoinGroup`, ...) ->
//! `request_type`, api version -> `version`, correlation id -> `request_id`, client id ->
//! `request_domain`, topic (Produce/Fetch) or group id (group APIs) -> `request_resource`,
//! `<topic>-<partition>` -> `endpoint`, the response's error code -> `response_code` (0 ok;
//! -1 and broker-side conditions: server error; others: client error), Produce's base offset
//! and Fetch's fetch offset -> `response_result` as `offset=N`.

use l7tap_core::{
    Direction, Inference, Message, MessageRole, Needed, PairingMode, ParseCtx, ParseError, Parsed,
    Parser, Protocol, ResponseStatus, L4,
};
use std::any::Any;
use std::borrow::Cow;
use std::collections::HashMap;

/// The Kafka parser.
#[derive(Debug, Clone, Default)]
pub struct KafkaParser;

fn err(reason: &'static str) -> ParseError {
    ParseError {
        protocol: "kafka",
        reason,
    }
}

/// Largest message accepted (the broker default `socket.request.max.bytes` is 100 MiB).
const MAX_SIZE: usize = 100 << 20;
/// Requests waiting for their response, per connection.
const MAX_INFLIGHT: usize = 1024;

#[derive(Debug, Default)]
struct KafkaState {
    /// correlation id -> the request in flight.
    inflight: HashMap<i32, Inflight>,
}

#[derive(Debug)]
struct Inflight {
    key: i16,
    ver: i16,
    topic: Vec<u8>,
    partition: Option<i32>,
    fetch_offset: Option<i64>,
}

fn api_name(key: i16) -> Option<&'static [u8]> {
    Some(match key {
        0 => b"Produce",
        1 => b"Fetch",
        2 => b"ListOffsets",
        3 => b"Metadata",
        8 => b"OffsetCommit",
        9 => b"OffsetFetch",
        10 => b"FindCoordinator",
        11 => b"JoinGroup",
        12 => b"Heartbeat",
        13 => b"LeaveGroup",
        14 => b"SyncGroup",
        15 => b"DescribeGroups",
        16 => b"ListGroups",
        17 => b"SaslHandshake",
        18 => b"ApiVersions",
        19 => b"CreateTopics",
        20 => b"DeleteTopics",
        22 => b"InitProducerId",
        24 => b"AddPartitionsToTxn",
        25 => b"AddOffsetsToTxn",
        26 => b"EndTxn",
        28 => b"TxnOffsetCommit",
        32 => b"DescribeConfigs",
        33 => b"AlterConfigs",
        36 => b"SaslAuthenticate",
        37 => b"CreatePartitions",
        42 => b"DeleteGroups",
        60 => b"DescribeCluster",
        _ => return None,
    })
}

/// First version of each api that uses the flexible (compact, tagged) encoding.
fn flexible(key: i16, version: i16) -> bool {
    let first = match key {
        0 => 9,
        1 => 12,
        2 => 6,
        3 => 9,
        8 => 8,
        9 => 6,
        10 => 3,
        11 => 6,
        12 => 4,
        13 => 4,
        14 => 4,
        15 => 5,
        16 => 3,
        18 => 3,
        19 => 5,
        20 => 4,
        22 => 2,
        36 => 2,
        _ => i16::MAX,
    };
    version >= first
}

/// A cursor over a message body.
struct Rd<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|s| i16::from_be_bytes([s[0], s[1]]))
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|s| i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn i64(&mut self) -> Option<i64> {
        let s = self.take(8)?;
        let mut w = [0u8; 8];
        w.copy_from_slice(s);
        Some(i64::from_be_bytes(w))
    }
    fn uvarint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..35).step_by(7) {
            let b = *self.take(1)?.first()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    /// A string: int16 length (classic) or uvarint length + 1 (compact); null is empty.
    fn string(&mut self, compact: bool) -> Option<&'a [u8]> {
        let len = if compact {
            self.uvarint()?.checked_sub(1)
        } else {
            let n = self.i16()?;
            (n >= 0).then_some(n as u64)
        };
        match len {
            Some(n) => self.take(usize::try_from(n).ok()?),
            None => Some(&[]),
        }
    }
    /// An array length (int32, or compact uvarint + 1).
    fn array(&mut self, compact: bool) -> Option<usize> {
        if compact {
            self.uvarint()?.checked_sub(1).map(|n| n as usize)
        } else {
            usize::try_from(self.i32()?).ok()
        }
    }
    fn tagged_fields(&mut self) -> Option<()> {
        for _ in 0..self.uvarint()? {
            self.uvarint()?;
            let n = self.uvarint()?;
            self.take(usize::try_from(n).ok()?)?;
        }
        Some(())
    }
}

/// `<topic>-<partition>`, as DeepFlow's endpoint.
fn endpoint(topic: &[u8], partition: i32) -> Vec<u8> {
    format!("{}-{partition}", String::from_utf8_lossy(topic)).into_bytes()
}

/// Error codes that come from the broker's state rather than from the request.
fn error_status(code: i16) -> ResponseStatus {
    match code {
        0 => ResponseStatus::Ok,
        -1 | 5 | 6 | 7 | 8 | 9 | 13 | 14 | 15 | 19 | 20 | 51 | 56 => ResponseStatus::ServerError,
        _ => ResponseStatus::ClientError,
    }
}

/// (topic, partition, fetch offset) of a Produce or Fetch request body; the group id of the
/// group APIs as the "topic".
fn request_target(
    key: i16,
    ver: i16,
    r: &mut Rd<'_>,
    compact: bool,
) -> Option<(Vec<u8>, Option<i32>, Option<i64>)> {
    match key {
        0 => {
            if ver >= 3 {
                r.string(compact)?; // transactional id
            }
            r.i16()?; // acks
            r.i32()?; // timeout
            if r.array(compact)? == 0 {
                return None;
            }
            let topic = r.string(compact)?.to_vec();
            let partition = if r.array(compact)? > 0 { r.i32() } else { None };
            Some((topic, partition, None))
        }
        1 => {
            if ver < 15 {
                r.i32()?; // replica id
            }
            r.i32()?; // max wait
            r.i32()?; // min bytes
            if ver >= 3 {
                r.i32()?; // max bytes
            }
            if ver >= 4 {
                r.take(1)?; // isolation level
            }
            if ver >= 7 {
                r.i32()?; // session id
                r.i32()?; // session epoch
            }
            if r.array(compact)? == 0 {
                return None;
            }
            let topic = if ver >= 13 {
                r.take(16)?; // topic id (uuid): the name is not on the wire
                Vec::new()
            } else {
                r.string(compact)?.to_vec()
            };
            if r.array(compact)? == 0 {
                return Some((topic, None, None));
            }
            let partition = r.i32()?;
            if ver >= 9 {
                r.i32()?; // current leader epoch
            }
            let offset = r.i64()?;
            Some((topic, Some(partition), Some(offset)))
        }
        8 | 9 | 11 | 12 | 13 | 14 | 42 => Some((r.string(compact)?.to_vec(), None, None)),
        _ => None,
    }
}

impl KafkaParser {
    fn message<'a>(
        &self,
        st: &mut KafkaState,
        direction: Direction,
        body: &'a [u8],
        total: usize,
    ) -> Result<Parsed<'a>, ParseError> {
        match direction {
            Direction::ClientToServer => self.request(st, body, total),
            Direction::ServerToClient => self.response(st, body, total),
        }
    }

    fn request<'a>(
        &self,
        st: &mut KafkaState,
        b: &'a [u8],
        total: usize,
    ) -> Result<Parsed<'a>, ParseError> {
        let mut r = Rd { b, at: 0 };
        let (Some(key), Some(ver), Some(corr)) = (r.i16(), r.i16(), r.i32()) else {
            return Err(err("short request header"));
        };
        let name = api_name(key).ok_or_else(|| err("unknown api key"))?;
        let client = r.string(false).unwrap_or(&[]); // client id is never compact
        let compact = flexible(key, ver);
        if compact {
            r.tagged_fields();
        }
        let mut m = Message {
            len: total,
            role: Some(MessageRole::Request),
            request_type: Cow::Borrowed(name),
            version: Cow::Owned(ver.to_string().into_bytes()),
            request_id: Some(corr as u32 as u64),
            request_domain: Cow::Borrowed(client),
            ..Default::default()
        };
        let (topic, partition, fetch_offset) =
            request_target(key, ver, &mut r, compact).unwrap_or((Vec::new(), None, None));
        if !topic.is_empty() {
            if let Some(p) = partition {
                m.endpoint = Cow::Owned(endpoint(&topic, p));
            }
            m.request_resource = Cow::Owned(topic.clone());
        }
        if st.inflight.len() >= MAX_INFLIGHT {
            st.inflight.clear();
        }
        st.inflight.insert(
            corr,
            Inflight {
                key,
                ver,
                topic,
                partition,
                fetch_offset,
            },
        );
        Ok(Parsed::Message(m))
    }

    fn response<'a>(
        &self,
        st: &mut KafkaState,
        b: &'a [u8],
        total: usize,
    ) -> Result<Parsed<'a>, ParseError> {
        let mut r = Rd { b, at: 0 };
        let corr = r.i32().ok_or_else(|| err("short response header"))?;
        let mut m = Message {
            len: total,
            role: Some(MessageRole::Response),
            request_id: Some(corr as u32 as u64),
            status: ResponseStatus::Unknown,
            ..Default::default()
        };
        let Some(Inflight {
            key,
            ver,
            topic,
            partition,
            fetch_offset,
        }) = st.inflight.remove(&corr)
        else {
            // The request was not seen: an id to pair with, nothing else is readable.
            return Ok(Parsed::Message(m));
        };
        if let Some(o) = fetch_offset {
            m.result = Cow::Owned(format!("offset={o}").into_bytes());
        }
        let compact = flexible(key, ver);
        // ApiVersions answers with header v0 even in flexible versions.
        if compact && key != 18 {
            r.tagged_fields();
        }
        let code = match key {
            0 => {
                // responses: [name, partitions: [index, error_code, base_offset, ...]]
                let n = r.array(compact).unwrap_or(0);
                let mut code = None;
                if n > 0 {
                    let _ = r.string(compact);
                    if r.array(compact).unwrap_or(0) > 0 {
                        let _ = r.i32();
                        code = r.i16();
                        if let Some(off) = r.i64() {
                            m.result = Cow::Owned(format!("offset={off}").into_bytes());
                        }
                    }
                }
                code
            }
            1 if ver >= 7 => {
                r.i32(); // throttle
                r.i16()
            }
            18 => r.i16(),
            // throttle_time_ms then error_code in these versions
            10..=14 if ver >= 1 => {
                r.i32();
                r.i16()
            }
            10..=14 => r.i16(),
            _ => None,
        };
        if let Some(c) = code {
            m.code = Some(i32::from(c));
            m.status = error_status(c);
        }
        if !topic.is_empty() {
            m.request_resource = Cow::Owned(topic.clone());
            if let Some(p) = partition {
                m.endpoint = Cow::Owned(endpoint(&topic, p));
            }
        }
        Ok(Parsed::Message(m))
    }
}

impl Parser for KafkaParser {
    fn protocol(&self) -> Protocol {
        Protocol::Kafka
    }

    fn supports(&self, l4: L4) -> bool {
        l4.is_stream()
    }

    // Only requests are recognisable (a response starts with a bare correlation id); seen in
    // the direction the source took for server -> client, the flow table swaps the roles.
    fn check(&self, p: &[u8], _direction: Direction) -> Option<Inference> {
        if p.len() < 14 {
            return None;
        }
        let size = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
        let key = i16::from_be_bytes([p[4], p[5]]);
        let ver = i16::from_be_bytes([p[6], p[7]]);
        let client_len = i16::from_be_bytes([p[12], p[13]]);
        if !(10..=MAX_SIZE).contains(&size) || api_name(key).is_none() || !(0..=20).contains(&ver) {
            return None;
        }
        // The whole request in this segment, or at least a plausible printable client id.
        let client_ok = client_len == -1
            || (client_len > 0
                && p.get(14..14 + client_len as usize)
                    .is_some_and(|c| c.iter().all(|b| b.is_ascii_graphic())));
        if !client_ok {
            return None;
        }
        Some(Inference {
            confidence: if size + 4 == p.len() { 170 } else { 130 },
            role: MessageRole::Request,
        })
    }

    fn pairing(&self) -> PairingMode {
        PairingMode::ById
    }

    fn resync_after_turn(&self) -> bool {
        true
    }

    fn new_state(&self) -> Box<dyn Any + Send> {
        Box::new(KafkaState::default())
    }

    fn parse<'a>(&self, input: &'a [u8], ctx: &mut ParseCtx<'_>) -> Result<Parsed<'a>, ParseError> {
        if input.len() < 4 {
            return Ok(Parsed::Incomplete(Needed::Total(4)));
        }
        let size = u32::from_be_bytes([input[0], input[1], input[2], input[3]]) as usize;
        if !(4..=MAX_SIZE).contains(&size) {
            return Err(err("message size out of range"));
        }
        let total = size + 4;
        if input.len() < total {
            if ctx.mode == l7tap_core::ParseMode::Complete {
                return Ok(Parsed::Incomplete(Needed::Total(total)));
            }
            // Cut (large Produce/Fetch): the header is all that is needed; skip the rest.
            let Some(st) = ctx.state.downcast_mut::<KafkaState>() else {
                return Err(err("flow state is not Kafka state"));
            };
            let parsed = self.message(st, ctx.direction, &input[4..], total)?;
            return Ok(match parsed {
                Parsed::Message(mut m) => {
                    m.truncated = true;
                    m.rest = l7tap_core::Remaining::Known;
                    Parsed::Message(m)
                }
                other => other,
            });
        }
        let Some(st) = ctx.state.downcast_mut::<KafkaState>() else {
            return Err(err("flow state is not Kafka state"));
        };
        self.message(st, ctx.direction, &input[4..total], total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_messages() {
        let p = KafkaParser;
        let mut st = p.new_state();
        for seed in 0u32..3000 {
            let mut blob = crate::helpers::noise(seed, 64);
            blob[..4].copy_from_slice(&60u32.to_be_bytes());
            for dir in [Direction::ClientToServer, Direction::ServerToClient] {
                let mut cx = ParseCtx::new(dir, l7tap_core::ParseMode::Complete, st.as_mut());
                let _ = p.parse(&blob, &mut cx);
                let _ = p.check(&blob, dir);
            }
        }
    }
}
