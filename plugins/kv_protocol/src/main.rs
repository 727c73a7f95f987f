//! kv_protocol: claims and parses KVP, a small length-prefixed binary protocol
//! (`plugins/kv_protocol/PROTOCOL.md`): the custom-protocol example (check_payload +
//! parse_payload).

use l7tap_sdk::{payload, Action, Direction, Hooks, ParseCtx, Plugin, Record, Request, Response, Status};

const PROTO: u8 = 200;

struct Kvp;

fn be16(b: &[u8], i: usize) -> Option<usize> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]) as usize)
}

fn be32(b: &[u8], i: usize) -> Option<u32> {
    let s = b.get(i..i + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Decodes one frame at the start of `b`: (record, frame length).
fn frame(b: &[u8]) -> Option<(Record, usize)> {
    if b.get(0..3)? != b"KV\x01" {
        return None;
    }
    let kind = *b.get(3)?;
    let id = be32(b, 4)?;
    match kind {
        0x01 | 0x02 => {
            let klen = be16(b, 8)?;
            let key = String::from_utf8_lossy(b.get(10..10 + klen)?).into_owned();
            let mut len = 10 + klen;
            if kind == 0x02 {
                let vlen = be32(b, len)? as usize;
                len += 4 + vlen;
            }
            let req = Request {
                req_type: Some(if kind == 0x01 { "GET" } else { "SET" }.to_string()),
                resource: Some(key),
                ..Default::default()
            };
            let mut r = Record::request(req);
            r.request_id = Some(id);
            r.req_len = Some(len as u32);
            Some((r, len))
        }
        0x81 => {
            let st = *b.get(8)?;
            let vlen = be32(b, 9)? as usize;
            let value = b.get(13..(13 + vlen).min(b.len()))?;
            let shown = &value[..value.len().min(64)];
            let status = match st {
                0 => Status::Ok,
                1 => Status::ClientError,
                _ => Status::ServerError,
            };
            let resp = Response {
                status,
                code: Some(i32::from(st)),
                result: Some(String::from_utf8_lossy(shown).into_owned()),
                exception: if st == 0 { None } else { Some(String::from_utf8_lossy(shown).into_owned()) },
            };
            let mut r = Record::response(resp);
            r.request_id = Some(id);
            r.resp_len = Some((13 + vlen) as u32);
            Some((r, 13 + vlen))
        }
        _ => None,
    }
}

impl Plugin for Kvp {
    fn hooks(&self) -> Hooks {
        Hooks::PAYLOAD_PARSE
    }

    fn check_payload(&mut self, ctx: &ParseCtx) -> Option<(u8, String, Direction)> {
        let p = payload(&ctx.base)?;
        if p.len() < 8 || &p[0..3] != b"KV\x01" {
            return None;
        }
        let dir = match p[3] {
            0x01 | 0x02 => Direction::Request,
            0x81 => Direction::Response,
            _ => return None,
        };
        Some((PROTO, "kvp".to_string(), dir))
    }

    fn parse_payload(&mut self, ctx: &ParseCtx) -> Action {
        let p = match payload(&ctx.base) {
            Some(p) => p,
            None => return Action::Next,
        };
        let mut records = Vec::new();
        let mut at = 0;
        while at < p.len() {
            match frame(&p[at..]) {
                Some((r, len)) => {
                    records.push(r);
                    at += len;
                }
                None => break,
            }
        }
        if records.is_empty() {
            Action::Next
        } else {
            Action::Result(records)
        }
    }
}

l7tap_sdk::export_plugin!(Kvp);
