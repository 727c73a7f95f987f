//! Guest -> host result blobs (wasm-abi.md section 7): the protobuf "PB" records and every
//! legacy binary layout, including the older ones DeepFlow itself no longer accepts.

use bytes::Bytes;

/// Why a result blob was rejected (the whole blob is then discarded, as DeepFlow does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bad plugin result: {0}")]
pub struct DecodeError(pub &'static str);

/// The request part of a result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppRequest {
    /// Protocol version.
    pub version: Option<Bytes>,
    /// Request type (method, command).
    pub req_type: Option<Bytes>,
    /// Domain (host, database).
    pub domain: Option<Bytes>,
    /// Resource (path, statement).
    pub resource: Option<Bytes>,
    /// Endpoint.
    pub endpoint: Option<Bytes>,
}

/// The response part of a result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppResponse {
    /// ABI status: 0 ok, 2 timeout, 3 server error, 4 client error, 5 unknown.
    pub status: u8,
    /// Response code.
    pub code: Option<i32>,
    /// Exception text.
    pub exception: Option<Bytes>,
    /// Result text.
    pub result: Option<Bytes>,
    /// Response type.
    pub resp_type: Option<Bytes>,
    /// Endpoint.
    pub endpoint: Option<Bytes>,
}

/// Trace fields of a result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppTrace {
    /// Trace id.
    pub trace_id: Option<Bytes>,
    /// Span id.
    pub span_id: Option<Bytes>,
    /// Parent span id.
    pub parent_span_id: Option<Bytes>,
    /// Request id.
    pub x_request_id: Option<Bytes>,
    /// Client address seen by an HTTP proxy.
    pub http_proxy_client: Option<Bytes>,
    /// Further trace ids (trace_id is added if missing).
    pub trace_ids: Vec<Bytes>,
}

/// One record a plugin returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginRecord {
    /// Request length.
    pub req_len: Option<u32>,
    /// Response length.
    pub resp_len: Option<u32>,
    /// Session id used to pair requests and responses.
    pub request_id: Option<u32>,
    /// Request fields.
    pub req: Option<AppRequest>,
    /// Response fields.
    pub resp: Option<AppResponse>,
    /// Trace fields.
    pub trace: Option<AppTrace>,
    /// Protocol display name.
    pub protocol_str: Option<Bytes>,
    /// Present: multi-message merge wanted; true: this side is complete.
    pub is_end: Option<bool>,
    /// No request/response pairing.
    pub is_async: Option<bool>,
    /// The flow's direction is reversed.
    pub is_reversed: Option<bool>,
    /// Attributes, in order.
    pub attributes: Vec<(Bytes, Bytes)>,
    /// Business type.
    pub biz_type: Option<u8>,
    /// Business code.
    pub biz_code: Option<Bytes>,
    /// Business scenario.
    pub biz_scenario: Option<Bytes>,
    /// Business response code.
    pub biz_response_code: Option<Bytes>,
}

fn valid_status(s: u64) -> Result<u8, DecodeError> {
    match s {
        0 | 2 | 3 | 4 | 5 => Ok(s as u8),
        _ => Err(DecodeError("unknown response status")),
    }
}

/// Decodes a blob: `u16 BE length + record`, repeated, consumed exactly, at least one record.
/// `direction` is the base context's (0 request, 1 response): legacy records depend on it.
/// The blob is copied once; every text field of the records is a slice of that copy.
pub fn decode_blob(blob: &[u8], direction: u8) -> Result<Vec<PluginRecord>, DecodeError> {
    decode_blob_in(&mut BlobArena::default(), blob, direction)
}

/// Blobs of at most this many bytes are copied into a shared chunk of this size.
pub const BLOB_CHUNK: usize = 4096;

/// Where an instance's result blobs are copied: small blobs share 4 KiB chunks, so a result
/// costs no allocation (a chunk is reused in place once no record refers to it any more,
/// else a new one is allocated). A record's fields then keep at most one chunk alive.
#[derive(Debug, Default)]
pub struct BlobArena(bytes::BytesMut);

impl BlobArena {
    /// A copy of `blob`: a slice of the current chunk, or its own buffer when it is large.
    pub fn copy(&mut self, blob: &[u8]) -> Bytes {
        if blob.len() > BLOB_CHUNK / 2 {
            return Bytes::copy_from_slice(blob);
        }
        if self.0.capacity() < blob.len() {
            self.0.reserve(BLOB_CHUNK);
        }
        self.0.extend_from_slice(blob);
        self.0.split().freeze()
    }
}

/// `decode_blob` with the copy made in `arena`.
pub fn decode_blob_in(
    arena: &mut BlobArena,
    blob: &[u8],
    direction: u8,
) -> Result<Vec<PluginRecord>, DecodeError> {
    let src = arena.copy(blob);
    let mut out = Vec::with_capacity(1);
    let mut rest = &src[..];
    while !rest.is_empty() {
        if rest.len() < 2 {
            return Err(DecodeError("record length cut"));
        }
        let n = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        let rec = rest
            .get(2..2 + n)
            .ok_or(DecodeError("record longer than the blob"))?;
        // Decoded in place: a record is ~0.5 KiB, not moved around.
        out.push(PluginRecord::default());
        if let Some(slot) = out.last_mut() {
            decode_record_into(&src, rec, direction, slot)?;
        }
        rest = &rest[2 + n..];
    }
    if out.is_empty() {
        return Err(DecodeError("no record"));
    }
    Ok(out)
}

/// Decodes one record, protobuf or legacy; `rec` lies in `src`, and text fields are slices
/// of `src`.
pub fn decode_record(src: &Bytes, rec: &[u8], direction: u8) -> Result<PluginRecord, DecodeError> {
    let mut out = PluginRecord::default();
    decode_record_into(src, rec, direction, &mut out)?;
    Ok(out)
}

/// `decode_record` into `out` (a default record).
fn decode_record_into(
    src: &Bytes,
    rec: &[u8],
    direction: u8,
    out: &mut PluginRecord,
) -> Result<(), DecodeError> {
    match rec.strip_prefix(b"PB") {
        Some(pb) => pb::app_info(src, pb, out),
        None => legacy::decode(src, rec, direction, out),
    }
}

/// `s` (a part of `src`) as a slice of `src`, without a copy; a copy if it is not a part.
fn piece(src: &Bytes, s: &[u8]) -> Bytes {
    let (base, at) = (src.as_ptr() as usize, s.as_ptr() as usize);
    match at.checked_sub(base) {
        Some(off) if off + s.len() <= src.len() => src.slice(off..off + s.len()),
        _ => Bytes::copy_from_slice(s),
    }
}

/// Minimal protobuf wire-format reading for `wasm_plugin.AppInfo`.
mod pb {
    use super::*;

    /// One field: number and value.
    enum Val<'a> {
        Varint(u64),
        Bytes(&'a [u8]),
        Fixed,
    }

    fn varint(b: &[u8], i: &mut usize) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *b.get(*i).ok_or(DecodeError("varint cut"))?;
            *i += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("varint too long"))
    }

    /// Iterates the fields of a message.
    fn fields(
        b: &[u8],
        mut f: impl FnMut(u64, Val<'_>) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        let mut i = 0;
        while i < b.len() {
            let key = varint(b, &mut i)?;
            let (num, wt) = (key >> 3, key & 7);
            let v = match wt {
                0 => Val::Varint(varint(b, &mut i)?),
                1 | 5 => {
                    let n = if wt == 1 { 8 } else { 4 };
                    b.get(i..i + n).ok_or(DecodeError("fixed field cut"))?;
                    i += n;
                    Val::Fixed
                }
                2 => {
                    let n = usize::try_from(varint(b, &mut i)?)
                        .map_err(|_| DecodeError("length too large"))?;
                    let end = i.checked_add(n).ok_or(DecodeError("length too large"))?;
                    let s = b
                        .get(i..end)
                        .ok_or(DecodeError("length-delimited field cut"))?;
                    i = end;
                    Val::Bytes(s)
                }
                _ => return Err(DecodeError("unsupported wire type")),
            };
            if num == 0 {
                return Err(DecodeError("field number 0"));
            }
            f(num, v)?;
        }
        Ok(())
    }

    fn s(src: &Bytes, v: Val<'_>) -> Result<Option<Bytes>, DecodeError> {
        match v {
            Val::Bytes(b) => Ok(Some(piece(src, b))),
            _ => Err(DecodeError("expected a string")),
        }
    }

    fn n(v: Val<'_>) -> Result<u64, DecodeError> {
        match v {
            Val::Varint(x) => Ok(x),
            _ => Err(DecodeError("expected a varint")),
        }
    }

    pub(super) fn app_info(src: &Bytes, b: &[u8], r: &mut PluginRecord) -> Result<(), DecodeError> {
        fields(b, |num, v| {
            match num {
                1 => r.req_len = Some(n(v)? as u32),
                2 => r.resp_len = Some(n(v)? as u32),
                3 => r.request_id = Some(n(v)? as u32),
                10 => r.req = Some(request(src, msg(v)?)?),
                11 => r.resp = Some(response(src, msg(v)?)?),
                12 => r.trace = Some(trace(src, msg(v)?)?),
                13 => r.protocol_str = s(src, v)?,
                21 => r.is_end = Some(n(v)? != 0),
                22 => r.is_async = Some(n(v)? != 0),
                23 => r.is_reversed = Some(n(v)? != 0),
                31 => {
                    let (mut k, mut val) = (Bytes::new(), Bytes::new());
                    fields(msg(v)?, |num, v| {
                        match num {
                            1 => k = s(src, v)?.unwrap_or_default(),
                            2 => val = s(src, v)?.unwrap_or_default(),
                            _ => {}
                        }
                        Ok(())
                    })?;
                    r.attributes.push((k, val));
                }
                32 => r.biz_type = Some(n(v)? as u8),
                33 => r.biz_code = s(src, v)?,
                34 => r.biz_scenario = s(src, v)?,
                35 => r.biz_response_code = s(src, v)?,
                _ => {} // unknown fields are skipped, as protobuf wants
            }
            Ok(())
        })?;
        if let Some(t) = r.trace.as_mut() {
            if let Some(id) = &t.trace_id {
                if !t.trace_ids.contains(id) {
                    t.trace_ids.push(id.clone());
                }
            }
        }
        Ok(())
    }

    fn msg(v: Val<'_>) -> Result<&[u8], DecodeError> {
        match v {
            Val::Bytes(b) => Ok(b),
            _ => Err(DecodeError("expected a message")),
        }
    }

    fn request(src: &Bytes, b: &[u8]) -> Result<AppRequest, DecodeError> {
        let mut r = AppRequest::default();
        fields(b, |num, v| {
            match num {
                1 => r.version = s(src, v)?,
                2 => r.req_type = s(src, v)?,
                3 => r.domain = s(src, v)?,
                4 => r.resource = s(src, v)?,
                5 => r.endpoint = s(src, v)?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(r)
    }

    fn response(src: &Bytes, b: &[u8]) -> Result<AppResponse, DecodeError> {
        let mut r = AppResponse::default();
        let mut status = None;
        fields(b, |num, v| {
            match num {
                1 => status = Some(valid_status(n(v)?)?),
                // int32: negative values are ten-byte varints; the low 32 bits are the value.
                2 => r.code = Some(n(v)? as u32 as i32),
                3 => r.exception = s(src, v)?,
                4 => r.result = s(src, v)?,
                5 => r.resp_type = s(src, v)?,
                6 => r.endpoint = s(src, v)?,
                _ => {}
            }
            Ok(())
        })?;
        r.status = status.ok_or(DecodeError("response without status"))?;
        Ok(r)
    }

    fn trace(src: &Bytes, b: &[u8]) -> Result<AppTrace, DecodeError> {
        let mut t = AppTrace::default();
        fields(b, |num, v| {
            match num {
                1 => t.trace_id = s(src, v)?,
                2 => t.span_id = s(src, v)?,
                3 => t.parent_span_id = s(src, v)?,
                4 => t.x_request_id = s(src, v)?,
                5 => t.http_proxy_client = s(src, v)?,
                6 => t.trace_ids.extend(s(src, v)?),
                _ => {}
            }
            Ok(())
        })?;
        Ok(t)
    }
}

/// The legacy binary layouts (section 7.2).
mod legacy {
    use super::*;

    struct R<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl<'a> R<'a> {
        fn u8(&mut self) -> Result<u8, DecodeError> {
            let v = *self.b.get(self.i).ok_or(DecodeError("legacy record cut"))?;
            self.i += 1;
            Ok(v)
        }
        fn u32(&mut self) -> Result<u32, DecodeError> {
            let s = self
                .b
                .get(self.i..self.i + 4)
                .ok_or(DecodeError("legacy record cut"))?;
            self.i += 4;
            Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        }
        fn flag(&mut self) -> Result<bool, DecodeError> {
            match self.u8()? {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(DecodeError("legacy flag not 0/1")),
            }
        }
        fn str16(&mut self) -> Result<&'a [u8], DecodeError> {
            let l = self
                .b
                .get(self.i..self.i + 2)
                .ok_or(DecodeError("legacy string cut"))?;
            let n = u16::from_be_bytes([l[0], l[1]]) as usize;
            let s = self
                .b
                .get(self.i + 2..self.i + 2 + n)
                .ok_or(DecodeError("legacy string cut"))?;
            self.i += 2 + n;
            Ok(s)
        }
        fn left(&self) -> usize {
            self.b.len() - self.i
        }
    }

    fn opt(src: &Bytes, s: &[u8]) -> Option<Bytes> {
        (!s.is_empty()).then(|| piece(src, s))
    }

    /// `with_protocol_str`: layouts since 2024-04; `with_biz_type`: since 2024-02.
    fn decode_layout(
        src: &Bytes,
        b: &[u8],
        dir: u8,
        with_protocol_str: bool,
        with_biz_type: bool,
        p: &mut PluginRecord,
    ) -> Result<usize, DecodeError> {
        if b.len() < 9 {
            return Err(DecodeError("legacy record shorter than 9 bytes"));
        }
        let mut r = R { b, i: 0 };
        let len = |v: u32| (v & 0x8000_0000 != 0).then_some(v & 0x7fff_ffff);
        p.req_len = len(r.u32()?);
        p.resp_len = len(r.u32()?);
        if r.flag()? {
            p.request_id = Some(r.u32()?);
        }
        if dir == 0 {
            let req_type = r.str16()?;
            let endpoint = r.str16()?;
            let domain = r.str16()?;
            let resource = r.str16()?;
            p.req = Some(AppRequest {
                version: None,
                req_type: opt(src, req_type),
                domain: opt(src, domain),
                resource: opt(src, resource),
                endpoint: opt(src, endpoint),
            });
        } else {
            let status = valid_status(u64::from(r.u8()?))?;
            let code = if r.flag()? {
                Some(r.u32()? as i32)
            } else {
                None
            };
            let result = r.str16()?;
            let exception = r.str16()?;
            p.resp = Some(AppResponse {
                status,
                code,
                exception: opt(src, exception),
                result: opt(src, result),
                resp_type: None,
                endpoint: None,
            });
        }
        if with_protocol_str {
            p.protocol_str = opt(src, r.str16()?);
        }
        let merge = r.u8()?;
        if merge & 0x80 != 0 {
            p.is_end = Some(merge & 1 != 0);
        }
        if r.flag()? {
            let trace_id = r.str16()?;
            let span_id = r.str16()?;
            let parent = r.str16()?;
            p.trace = Some(AppTrace {
                trace_id: opt(src, trace_id),
                span_id: opt(src, span_id),
                parent_span_id: opt(src, parent),
                trace_ids: opt(src, trace_id).into_iter().collect(),
                ..Default::default()
            });
        }
        if r.flag()? {
            // Pairs until one does not fit (the biz_type byte, if any, never does).
            loop {
                let save = r.i;
                match (r.str16(), r.str16()) {
                    (Ok(k), Ok(v)) if !(with_biz_type && r.left() == 0) => {
                        p.attributes.push((piece(src, k), piece(src, v)))
                    }
                    _ => {
                        r.i = save;
                        break;
                    }
                }
            }
        }
        if with_biz_type {
            p.biz_type = Some(r.u8()?);
        }
        Ok(r.left())
    }

    /// Tries the current layout, then the pre-2024-04 one (no protocol string), then the
    /// pre-2024-02 one (no biz type either). The first that reads the record exactly wins;
    /// failing that, the first that reads it at all.
    pub(super) fn decode(
        src: &Bytes,
        b: &[u8],
        dir: u8,
        out: &mut PluginRecord,
    ) -> Result<(), DecodeError> {
        let layouts = [(true, true), (false, true), (false, false)];
        let mut first_ok: Option<PluginRecord> = None;
        let mut first_err = None;
        for (ps, bt) in layouts {
            *out = PluginRecord::default();
            match decode_layout(src, b, dir, ps, bt, out) {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    if first_ok.is_none() {
                        first_ok = Some(std::mem::take(out));
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_ok {
            Some(p) => {
                *out = p;
                Ok(())
            }
            None => Err(first_err.unwrap_or(DecodeError("legacy record unreadable"))),
        }
    }
}

#[cfg(test)]
mod tests;
