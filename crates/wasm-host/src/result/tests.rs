//! Round trips of the section 7 layouts, built byte by byte from the spec.

use super::*;

fn str16(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

fn blob(records: &[Vec<u8>]) -> Vec<u8> {
    let mut b = Vec::new();
    for r in records {
        b.extend_from_slice(&(r.len() as u16).to_be_bytes());
        b.extend_from_slice(r);
    }
    b
}

/// A legacy response record: status, code, result, exception, then the tail fields.
fn legacy_resp(
    protocol_str: Option<&[u8]>,
    biz_type: Option<u8>,
    kv: &[(&[u8], &[u8])],
) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(&(0x8000_0000u32 | 12).to_be_bytes()); // req_len present = 12
    r.extend_from_slice(&0u32.to_be_bytes()); // resp_len absent
    r.push(1);
    r.extend_from_slice(&77u32.to_be_bytes()); // request id
    r.push(3); // server error
    r.push(1);
    r.extend_from_slice(&500i32.to_be_bytes());
    r.extend(str16(b"{\"OPT_STATUS\":\"FAILED\"}"));
    r.extend(str16(b"FAILED"));
    if let Some(p) = protocol_str {
        r.extend(str16(p));
    }
    r.push(0); // merge flags
    r.push(1); // has trace
    r.extend(str16(b"t-1"));
    r.extend(str16(b"s-1"));
    r.extend(str16(b""));
    r.push(u8::from(!kv.is_empty()));
    for (k, v) in kv {
        r.extend(str16(k));
        r.extend(str16(v));
    }
    if let Some(b) = biz_type {
        r.push(b);
    }
    r
}

#[test]
fn legacy_current_layout() {
    let rec = legacy_resp(Some(b"myproto"), Some(9), &[(b"op_stat", b"FAILED")]);
    let out = decode_blob(&blob(&[rec]), 1).expect("decodes");
    let p = &out[0];
    assert_eq!(p.req_len, Some(12));
    assert_eq!(p.resp_len, None);
    assert_eq!(p.request_id, Some(77));
    let resp = p.resp.as_ref().expect("response");
    assert_eq!((resp.status, resp.code), (3, Some(500)));
    assert_eq!(
        resp.result.as_deref(),
        Some(&b"{\"OPT_STATUS\":\"FAILED\"}"[..])
    );
    assert_eq!(resp.exception.as_deref(), Some(&b"FAILED"[..]));
    assert_eq!(p.protocol_str.as_deref(), Some(&b"myproto"[..]));
    assert_eq!(
        p.attributes,
        vec![(
            Bytes::from_static(b"op_stat"),
            Bytes::from_static(b"FAILED")
        )]
    );
    assert_eq!(p.biz_type, Some(9));
    assert_eq!(
        p.trace.as_ref().and_then(|t| t.trace_id.clone()),
        Some(Bytes::from_static(b"t-1"))
    );
}

#[test]
fn legacy_older_layouts_are_accepted() {
    // 2024-02..04: biz_type but no protocol string.
    let rec = legacy_resp(None, Some(4), &[(b"k", b"v")]);
    let p = &decode_blob(&blob(&[rec]), 1).expect("2024-02 layout")[0];
    assert_eq!((p.protocol_str.clone(), p.biz_type), (None, Some(4)));
    assert_eq!(p.attributes.len(), 1);
    // 2023: neither (what wasm_test.wasm emits).
    let rec = legacy_resp(None, None, &[(b"k1", b"v1"), (b"k2", b"v2")]);
    let p = &decode_blob(&blob(&[rec]), 1).expect("2023 layout")[0];
    assert_eq!(p.biz_type, None);
    assert_eq!(p.attributes.len(), 2);
}

#[test]
fn legacy_request_direction() {
    let mut r = Vec::new();
    r.extend_from_slice(&0u32.to_be_bytes());
    r.extend_from_slice(&0u32.to_be_bytes());
    r.push(0);
    for s in [&b"GET"[..], b"/ep", b"dom", b"/res"] {
        r.extend(str16(s));
    }
    r.extend(str16(b""));
    r.extend_from_slice(&[0, 0, 0, 0]); // merge, no trace, no kv, biz 0
    let p = &decode_blob(&blob(&[r]), 0).expect("request")[0];
    let q = p.req.as_ref().expect("request part");
    assert_eq!(q.req_type.as_deref(), Some(&b"GET"[..]));
    assert_eq!(q.endpoint.as_deref(), Some(&b"/ep"[..]));
    assert_eq!(q.domain.as_deref(), Some(&b"dom"[..]));
    assert_eq!(q.resource.as_deref(), Some(&b"/res"[..]));
}

#[test]
fn legacy_errors() {
    assert!(
        decode_blob(&blob(&[vec![0; 8]]), 1).is_err(),
        "shorter than 9"
    );
    let mut bad = legacy_resp(Some(b""), Some(0), &[]);
    bad[13] = 1; // status 1 is not a status
    assert!(decode_blob(&blob(&[bad]), 1).is_err());
    assert!(decode_blob(&[], 1).is_err(), "no record");
    assert!(
        decode_blob(&[0, 50, 1, 2], 1).is_err(),
        "record longer than blob"
    );
}

fn key(num: u64, wt: u64) -> u8 {
    ((num << 3) | wt) as u8
}

fn pb_str(num: u64, s: &[u8]) -> Vec<u8> {
    let mut v = vec![key(num, 2), s.len() as u8];
    v.extend_from_slice(s);
    v
}

fn pb_msg(num: u64, body: &[u8]) -> Vec<u8> {
    let mut v = vec![key(num, 2), body.len() as u8];
    v.extend_from_slice(body);
    v
}

#[test]
fn protobuf_record() {
    // AppResponse{status=3, code=-1, result="r", exception="e"}
    let mut resp = vec![key(1, 0), 3, key(2, 0)];
    resp.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]); // int32 -1
    resp.extend(pb_str(4, b"r"));
    resp.extend(pb_str(3, b"e"));
    let trace = [pb_str(1, b"tid"), pb_str(2, b"sid"), pb_str(6, b"other")].concat();
    let kv = [pb_str(1, b"business_id"), pb_str(2, b"1234")].concat();
    let mut rec = b"PB".to_vec();
    rec.extend_from_slice(&[key(3, 0), 0x96, 0x01]); // request_id 150 (the protobuf docs' example)
    rec.extend(pb_msg(11, &resp));
    rec.extend(pb_msg(12, &trace));
    rec.extend(pb_str(13, b"pbproto"));
    rec.extend_from_slice(&[0xb0, 0x01, 1]); // is_async (22, varint) = true
    rec.extend_from_slice(&[0xfa, 0x01, kv.len() as u8]); // attributes (31, len)
    rec.extend(kv);
    rec.extend_from_slice(&[0x90, 0x3f, 7]); // unknown field 1010: skipped
    let p = &decode_blob(&blob(&[rec]), 1).expect("pb")[0];
    assert_eq!(p.request_id, Some(150));
    let r = p.resp.as_ref().expect("resp");
    assert_eq!((r.status, r.code), (3, Some(-1)));
    assert_eq!(r.result.as_deref(), Some(&b"r"[..]));
    assert_eq!(r.exception.as_deref(), Some(&b"e"[..]));
    let t = p.trace.as_ref().expect("trace");
    assert_eq!(
        t.trace_ids,
        vec![Bytes::from_static(b"other"), Bytes::from_static(b"tid")],
        "trace_id appended when missing"
    );
    assert_eq!(p.protocol_str.as_deref(), Some(&b"pbproto"[..]));
    assert_eq!(p.is_async, Some(true));
    assert_eq!(
        p.attributes,
        vec![(
            Bytes::from_static(b"business_id"),
            Bytes::from_static(b"1234")
        )]
    );
}

#[test]
fn protobuf_errors() {
    // Response without a status.
    let rec = [b"PB".to_vec(), pb_msg(11, &pb_str(4, b"r"))].concat();
    assert!(decode_blob(&blob(&[rec]), 1).is_err());
    // Unknown status.
    let rec = [b"PB".to_vec(), pb_msg(11, &[key(1, 0), 1])].concat();
    assert!(decode_blob(&blob(&[rec]), 1).is_err());
    // Cut length-delimited field.
    let rec = [b"PB".to_vec(), vec![key(13, 2), 40, b'x']].concat();
    assert!(decode_blob(&blob(&[rec]), 1).is_err());
    // Two records, the second bad: the whole blob is rejected.
    let ok = [b"PB".to_vec(), pb_str(13, b"x")].concat();
    let bad = [b"PB".to_vec(), vec![key(1, 7)]].concat();
    assert!(decode_blob(&blob(&[ok.clone(), bad]), 1).is_err());
    assert_eq!(
        decode_blob(&blob(&[ok.clone(), ok]), 1).expect("two").len(),
        2
    );
}

#[test]
fn random_blobs_never_panic() {
    let mut x: u64 = 0x9e37_79b9;
    for n in 0..20_000usize {
        let len = n % 97;
        let mut b = Vec::with_capacity(len);
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.push(x as u8);
        }
        if n % 3 == 0 && b.len() > 4 {
            b[0] = 0;
            b[1] = (b.len() - 2) as u8;
            b[2] = b'P';
            b[3] = b'B';
        }
        let _ = decode_blob(&b, (n % 2) as u8);
    }
}

#[test]
fn fields_are_slices_of_the_blob_copy() {
    let src = Bytes::from_static(b"0123456789");
    let p = piece(&src, &src[2..5]);
    assert_eq!(&p[..], b"234");
    assert_eq!(p.as_ptr(), src[2..].as_ptr(), "a slice, not a copy");
    let other = b"234".to_vec();
    let q = piece(&src, &other);
    assert_eq!(&q[..], b"234");
    assert_ne!(q.as_ptr(), other.as_ptr(), "not a part of src: copied");
    assert!(piece(&src, &src[10..]).is_empty());
}

#[test]
fn the_arena_shares_chunks_and_keeps_what_it_handed_out() {
    let mut arena = BlobArena::default();
    // Two results share one chunk, and a record keeps its chunk alive.
    let first = arena.copy(b"first result");
    let second = arena.copy(b"second");
    assert_eq!(
        second.as_ptr(),
        first[first.len()..].as_ptr(),
        "same chunk, next to the first"
    );
    // Fill the chunk while `first` is alive: the next copy goes to a new chunk, and the
    // bytes already handed out stay as they were.
    let filler = vec![b'x'; BLOB_CHUNK / 2];
    let mut held = Vec::new();
    while held.len() < 4 {
        held.push(arena.copy(&filler));
    }
    assert_eq!(&first[..], b"first result");
    assert_eq!(&second[..], b"second");
    assert!(held.iter().all(|h| h[..] == filler[..]));
    // Once nothing refers to a chunk, its space is taken again: with no result kept, copies
    // cycle through the same two halves of one chunk.
    drop((first, second, held));
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..8 {
        seen.insert(arena.copy(&filler).as_ptr() as usize);
    }
    assert_eq!(seen.len(), 2, "{seen:x?}");
    // A large blob gets its own buffer, whole.
    let big = vec![7u8; BLOB_CHUNK];
    assert_eq!(&arena.copy(&big)[..], &big[..]);
    // Decoding through the arena gives the same records as without it.
    let b = blob(&[legacy_resp(Some(b"P"), Some(3), &[(b"k", b"v")])]);
    assert_eq!(
        decode_blob_in(&mut arena, &b, 1).unwrap(),
        decode_blob(&b, 1).unwrap()
    );
}

#[test]
fn damaged_valid_blobs_never_panic() {
    // Valid legacy and protobuf records with bytes changed, cut, inserted or length-like runs
    // overwritten: decoded or rejected with an error, never a panic (a plugin controls every
    // byte of its result).
    let trace = [pb_str(1, b"tid"), pb_str(2, b"sid")].concat();
    let mut pb = b"PB".to_vec();
    pb.extend_from_slice(&[key(3, 0), 0x96, 0x01]);
    pb.extend(pb_msg(11, &[key(1, 0), 3, key(2, 0), 7]));
    pb.extend(pb_msg(12, &trace));
    pb.extend(pb_str(13, b"pbproto"));
    let seeds = [
        legacy_resp(Some(b"myproto"), Some(9), &[(b"op_stat", b"FAILED")]),
        legacy_resp(None, None, &[]),
        pb,
    ];
    let mut x: u64 = 0x5eed_1234;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for n in 0..30_000usize {
        let mut r = seeds[n % seeds.len()].clone();
        for _ in 0..1 + next() % 3 {
            if r.is_empty() {
                break;
            }
            let at = (next() as usize) % r.len();
            match next() % 4 {
                0 => r[at] = next() as u8,
                1 => r.truncate(at),
                2 => r.insert(at, next() as u8),
                _ => {
                    let end = (at + 2).min(r.len());
                    r[at..end].fill(0xff);
                }
            }
        }
        let _ = decode_blob(&blob(&[r.clone()]), (n % 2) as u8);
        let _ = decode_blob(&blob(&[seeds[0].clone(), r]), 1);
    }
}
