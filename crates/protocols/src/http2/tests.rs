use super::*;
use l7tap_core::ParseCtx;

fn frame(ty: u8, flags: u8, sid: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![
        (payload.len() >> 16) as u8,
        (payload.len() >> 8) as u8,
        payload.len() as u8,
        ty,
        flags,
    ];
    f.extend_from_slice(&sid.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A literal header field without indexing, new name (RFC 7541 6.2.2).
fn lit(name: &str, value: &str) -> Vec<u8> {
    let mut b = vec![0x00, name.len() as u8];
    b.extend_from_slice(name.as_bytes());
    b.push(value.len() as u8);
    b.extend_from_slice(value.as_bytes());
    b
}

fn parse_all(
    p: &Http2Parser,
    st: &mut Box<dyn Any + Send>,
    dir: Direction,
    bytes: &[u8],
) -> Vec<Message<'static>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let mut cx = ParseCtx::new(dir, ParseMode::Complete, st.as_mut());
        match p.parse(&bytes[at..], &mut cx).expect("parses") {
            Parsed::Skip(n) => at += n,
            Parsed::Message(m) => {
                at += m.len;
                out.push(m.into_owned());
            }
            other => panic!("unexpected {other:?} at {at}"),
        }
    }
    out
}

#[test]
fn grpc_call_across_frames_with_continuation_and_trailers() {
    let p = Http2Parser::default();
    let mut st = p.new_state();
    // Client: preface, SETTINGS, HEADERS split by CONTINUATION, DATA in two frames.
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http
    block.extend(lit(":path", "/order.OrderService/Get"));
    block.extend(lit(":authority", "127.0.0.1:50051"));
    block.extend(lit("content-type", "application/grpc"));
    block.extend(lit(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ));
    let (b1, b2) = block.split_at(10);
    let mut c2s = PREFACE.to_vec();
    c2s.extend(frame(4, 0, 0, &[0, 3, 0, 0, 0, 100]));
    c2s.extend(frame(HEADERS, 0, 1, b1));
    c2s.extend(frame(CONTINUATION, END_HEADERS, 1, b2));
    let msg = [0u8, 0, 0, 0, 4, 0x08, 0x96, 0x01, 0x00];
    c2s.extend(frame(DATA, 0, 1, &msg[..3]));
    c2s.extend(frame(
        DATA,
        END_STREAM | PADDED,
        1,
        &[2, msg[3], msg[4], msg[5], msg[6], msg[7], msg[8], 0, 0],
    ));
    let reqs = parse_all(&p, &mut st, Direction::ClientToServer, &c2s);
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.role, Some(MessageRole::Request));
    assert_eq!(r.request_id, Some(1));
    assert_eq!(&*r.request_type, b"POST");
    assert_eq!(&*r.request_resource, b"/order.OrderService/Get");
    assert_eq!(&*r.endpoint, b"/order.OrderService/Get");
    assert_eq!(&*r.request_domain, b"127.0.0.1:50051");
    assert_eq!(&*r.trace_id, b"4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        &*r.body,
        &msg[..],
        "the whole gRPC message, prefix included"
    );
    assert!(!r.truncated);
    assert_eq!(p.protocol_of(st.as_ref()), Protocol::Grpc);

    // Server: HEADERS :status 200, DATA, trailers with grpc-status 5 and a message.
    let mut s2c = frame(4, 0, 0, &[]);
    s2c.extend(frame(HEADERS, END_HEADERS, 1, &[0x88]));
    s2c.extend(frame(DATA, 0, 1, &[0, 0, 0, 0, 0]));
    let mut trailers = lit("grpc-status", "5");
    trailers.extend(lit("grpc-message", "order not found"));
    s2c.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &trailers));
    let resps = parse_all(&p, &mut st, Direction::ServerToClient, &s2c);
    assert_eq!(resps.len(), 1);
    let r = &resps[0];
    assert_eq!(r.role, Some(MessageRole::Response));
    assert_eq!(r.request_id, Some(1));
    assert_eq!(r.code, Some(5));
    assert_eq!(r.status, ResponseStatus::ClientError);
    assert_eq!(&*r.exception, b"order not found");
}

#[test]
fn plain_http2_status_and_endpoint() {
    let p = Http2Parser::default();
    let mut st = p.new_state();
    let mut block = vec![0x82, 0x86];
    block.extend(lit(":path", "/api/v1/items?x=1"));
    let reqs = parse_all(
        &p,
        &mut st,
        Direction::ClientToServer,
        &frame(HEADERS, END_HEADERS | END_STREAM, 3, &block),
    );
    assert_eq!(&*reqs[0].endpoint, b"/api/v1");
    assert_eq!(&*reqs[0].request_type, b"GET");
    let resps = parse_all(
        &p,
        &mut st,
        Direction::ServerToClient,
        &frame(HEADERS, END_HEADERS | END_STREAM, 3, &[0x8e]),
    );
    assert_eq!(resps[0].code, Some(500));
    assert_eq!(resps[0].status, ResponseStatus::ServerError);
    assert_eq!(p.protocol_of(st.as_ref()), Protocol::Http2);
}

#[test]
fn inference_and_hostile_frames() {
    let p = Http2Parser::default();
    assert_eq!(
        p.check(PREFACE, Direction::ClientToServer)
            .map(|i| i.confidence),
        Some(250)
    );
    assert!(p
        .check(b"GET / HTTP/1.1\r\n\r\n", Direction::ClientToServer)
        .is_none());
    let mut st = p.new_state();
    // Padding longer than the frame, a CONTINUATION of another stream, random bytes.
    for bad in [
        frame(DATA, PADDED, 1, &[9, 1, 2]),
        frame(HEADERS, PADDED | END_HEADERS, 1, &[]),
    ] {
        let mut cx = ParseCtx::new(Direction::ClientToServer, ParseMode::Complete, st.as_mut());
        assert!(p.parse(&bad, &mut cx).is_err());
    }
    for seed in 0u32..3000 {
        let blob = crate::helpers::noise(seed, 80);
        let mut cx = ParseCtx::new(Direction::ServerToClient, ParseMode::Complete, st.as_mut());
        let _ = p.parse(&blob, &mut cx);
    }
}

/// A DATA frame cut short (a capture gap, a snaplen cut): its length is in its header, so the
/// parser counts it, keeps what arrived, and says how far to skip; the stream's message is
/// flagged truncated. A cut header block is still an error (HPACK cannot decode part of one).
#[test]
fn cut_data_frames_are_skipped_by_length() {
    let p = Http2Parser::default();
    let mut st = p.new_state();
    let resp = parse_all(
        &p,
        &mut st,
        Direction::ServerToClient,
        &frame(HEADERS, END_HEADERS, 1, &[0x88]),
    );
    assert!(resp.is_empty());
    // 16,384 bytes of body announced, 100 arrived, no END_STREAM: skip to the frame's end.
    let mut cut = frame(DATA, 0, 1, &[b'a'; 16_384]);
    cut.truncate(9 + 100);
    let mut cx = ParseCtx::new(Direction::ServerToClient, ParseMode::Truncate, st.as_mut());
    match p.parse(&cut, &mut cx).expect("a cut DATA frame parses") {
        Parsed::Skip(n) => assert_eq!(n, 9 + 16_384),
        other => panic!("{other:?}"),
    }
    // The last DATA frame, padded and cut too: the message ends, truncated, with every
    // announced body byte counted (16,384 + 50 - 4 of padding and its length byte).
    let mut last = vec![3u8];
    last.extend_from_slice(&[b'b'; 46]);
    last.extend_from_slice(&[0, 0, 0]);
    let mut cut = frame(DATA, END_STREAM | PADDED, 1, &last);
    cut.truncate(9 + 10);
    let mut cx = ParseCtx::new(Direction::ServerToClient, ParseMode::Truncate, st.as_mut());
    match p.parse(&cut, &mut cx).expect("a cut DATA frame parses") {
        Parsed::Message(m) => {
            assert_eq!(m.len, 9 + 50, "the whole frame, beyond the input");
            assert!(m.truncated);
            assert_eq!(m.code, Some(200));
            assert_eq!(m.body_len, Some(16_384 + 46));
            assert_eq!(m.body.len(), 100 + 9, "what arrived");
        }
        other => panic!("{other:?}"),
    }
    // A header block cut short cannot be read.
    let mut cut = frame(HEADERS, END_HEADERS, 3, &lit(":path", "/x"));
    cut.truncate(12);
    let mut cx = ParseCtx::new(Direction::ClientToServer, ParseMode::Truncate, st.as_mut());
    assert!(p.parse(&cut, &mut cx).is_err());
}
