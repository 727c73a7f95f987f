//! HTTP/1 parser unit tests; inputs follow the RFC 9112 examples and real client output.

use super::*;
use l7tap_core::ParseCtx;

fn parse_one<'a>(
    p: &Http1Parser,
    st: &mut Box<dyn Any + Send>,
    input: &'a [u8],
    mode: ParseMode,
) -> Parsed<'a> {
    let mut cx = ParseCtx {
        flow: Default::default(),
        ts_ns: 0,
        direction: Direction::ClientToServer,
        mode,
        state: st.as_mut(),
    };
    p.parse(input, &mut cx).expect("parses")
}

fn msg<'a>(p: Parsed<'a>) -> Message<'a> {
    match p {
        Parsed::Message(m) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

const CURL_GET: &[u8] = b"GET /hello/world/x?y=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nX-Request-ID: abc-123\r\n\r\n";

#[test]
fn request_fields() {
    let p = Http1Parser::default();
    let mut st = p.new_state();
    let m = msg(parse_one(&p, &mut st, CURL_GET, ParseMode::Complete));
    assert_eq!(m.len, CURL_GET.len());
    assert_eq!(m.role, Some(MessageRole::Request));
    assert_eq!(&*m.request_type, b"GET");
    assert_eq!(&*m.request_resource, b"/hello/world/x?y=1");
    assert_eq!(&*m.endpoint, b"/hello/world");
    assert_eq!(&*m.request_domain, b"127.0.0.1:8080");
    assert_eq!(&*m.version, b"1.1");
    assert_eq!(&*m.trace_id, b"0af7651916cd43dd8448eb211c80319c");
    assert_eq!(&*m.span_id, b"b7ad6b7169203331");
    assert_eq!(&*m.x_request_id, b"abc-123");
    assert_eq!(m.body_len, Some(0));
}

#[test]
fn incomplete_head_and_body() {
    let p = Http1Parser::default();
    let mut st = p.new_state();
    for cut in 1..CURL_GET.len() {
        assert!(matches!(
            parse_one(&p, &mut st, &CURL_GET[..cut], ParseMode::Complete),
            Parsed::Incomplete(_)
        ));
    }
    let post = b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel";
    match parse_one(&p, &mut st, post, ParseMode::Complete) {
        Parsed::Incomplete(Needed::Total(n)) => assert_eq!(n, post.len() + 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn chunked_response_rfc9112() {
    let p = Http1Parser::default();
    let mut st = p.new_state();
    let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\nHTTP/1.1";
    let m = msg(parse_one(&p, &mut st, r, ParseMode::Complete));
    assert_eq!(m.len, r.len() - 8);
    assert_eq!(&*m.body, b"Wikipedia");
    assert_eq!(m.body_len, Some(9));
    assert_eq!(m.code, Some(200));
    assert_eq!(m.status, ResponseStatus::Ok);
    assert_eq!(&*m.content_type, b"text/plain");
}

#[test]
fn head_and_204_304_have_no_body() {
    let p = Http1Parser::default();
    let mut st = p.new_state();
    let _ = msg(parse_one(
        &p,
        &mut st,
        b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
        ParseMode::Complete,
    ));
    let _ = msg(parse_one(
        &p,
        &mut st,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        ParseMode::Complete,
    ));
    let head_resp = b"HTTP/1.1 200 OK\r\nContent-Length: 612\r\n\r\n";
    let m = msg(parse_one(&p, &mut st, head_resp, ParseMode::Complete));
    assert_eq!(m.len, head_resp.len());
    // The GET's response does have its body.
    let get_resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    assert_eq!(
        msg(parse_one(&p, &mut st, get_resp, ParseMode::Complete)).len,
        get_resp.len()
    );
    for code in ["204 No Content", "304 Not Modified"] {
        let r = format!("HTTP/1.1 {code}\r\nContent-Length: 10\r\n\r\n");
        assert_eq!(
            msg(parse_one(&p, &mut st, r.as_bytes(), ParseMode::Complete)).len,
            r.len()
        );
    }
}

#[test]
fn interim_100_continue_is_skipped() {
    let p = Http1Parser::default();
    let mut st = p.new_state();
    let r = b"HTTP/1.1 100 Continue\r\n\r\n";
    assert!(
        matches!(parse_one(&p, &mut st, r, ParseMode::Complete), Parsed::Skip(n) if n == r.len())
    );
}

#[test]
fn error_status_and_until_close() {
    let p = Http1Parser::default();
    let mut st = p.new_state();
    let r = b"HTTP/1.0 503 Service Unavailable\r\n\r\nbusy";
    assert!(matches!(
        parse_one(&p, &mut st, r, ParseMode::Complete),
        Parsed::Incomplete(Needed::UntilClose)
    ));
    let m = msg(parse_one(&p, &mut st, r, ParseMode::Eof));
    assert_eq!(m.status, ResponseStatus::ServerError);
    assert_eq!(&*m.exception, b"Service Unavailable");
    assert_eq!(&*m.body, b"busy");
}

#[test]
fn truncate_mode_reports_rest() {
    let p = Http1Parser::default();
    let mut st = p.new_state();
    let r = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nabc";
    let m = msg(parse_one(&p, &mut st, r, ParseMode::Truncate));
    assert!(m.truncated);
    assert_eq!(m.rest, Remaining::Known);
    assert_eq!(m.len, r.len() - 3 + 100_000);
    assert_eq!(m.body_len, Some(100_000));
}

#[test]
fn rejects_garbage_fast_and_conflicting_lengths() {
    let p = Http1Parser::default();
    let mut st = p.new_state();
    let mut cx = ParseCtx::new(Direction::ClientToServer, ParseMode::Complete, st.as_mut());
    assert!(p.parse(b"\x16\x03\x01\x02\x00\x01", &mut cx).is_err());
    assert!(p
        .parse(
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            &mut cx
        )
        .is_err());
    assert!(p
        .parse(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", &mut cx)
        .is_err());
}

#[test]
fn inference() {
    let p = Http1Parser::default();
    let d = Direction::ClientToServer;
    assert_eq!(
        p.check(CURL_GET, d).map(|i| i.role),
        Some(MessageRole::Request)
    );
    assert_eq!(
        p.check(b"HTTP/1.1 404 Not Found\r\n", d).map(|i| i.role),
        Some(MessageRole::Response)
    );
    assert!(p.check(b"GETX / HTTP/1.1\r\n", d).is_none());
    assert!(p.check(b"GET / HTTP/2.0\r\n", d).is_none());
    assert!(p.check(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", d).is_none());
    assert!(p.check(b"\x00\x00\x00", d).is_none());
}

#[test]
fn endpoints_like_deepflow() {
    assert_eq!(
        endpoint_of(b"/biz-inquiry-bff/bff/v1/common/check?x=1"),
        b"/biz-inquiry-bff/bff"
    );
    assert_eq!(endpoint_of(b"/query?1590632942"), b"/query");
    assert_eq!(endpoint_of(b"/"), b"/");
    assert_eq!(endpoint_of(b"http://example.com/a/b/c"), b"/a/b");
    assert_eq!(endpoint_of(b"http://example.com"), b"/");
}
