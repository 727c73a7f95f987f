//! nom parsers for the HTTP/1 start line and header lines (RFC 9112 sections 3, 4 and 5).
//!
//! They run on a head already known to be complete, so they use nom's `complete` combinators.

use crate::helpers::{is_token, is_uri};
use nom::bytes::complete::{tag, take_while, take_while1, take_while_m_n};
use nom::character::complete::char;
use nom::combinator::opt;
use nom::IResult;

/// Three parts of a start line, borrowed from it.
pub type Parts<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// `method SP request-target SP HTTP-version` (without the line end).
pub fn request_line(i: &[u8]) -> IResult<&[u8], Parts<'_>> {
    let (i, method) = take_while1(is_token)(i)?;
    let (i, _) = char(' ')(i)?;
    let (i, target) = take_while1(is_uri)(i)?;
    let (i, _) = char(' ')(i)?;
    let (i, version) = http_version(i)?;
    Ok((i, (method, target, version)))
}

/// `HTTP-version SP status-code [SP reason-phrase]`; returns (version, code digits, reason).
pub fn status_line(i: &[u8]) -> IResult<&[u8], Parts<'_>> {
    let (i, version) = http_version(i)?;
    let (i, _) = char(' ')(i)?;
    let (i, code) = take_while_m_n(3, 3, |b: u8| b.is_ascii_digit())(i)?;
    let (i, reason) = opt(|i| {
        let (i, _) = char(' ')(i)?;
        take_while(|b: u8| b == b'\t' || b >= 0x20)(i)
    })(i)?;
    Ok((i, (version, code, reason.unwrap_or_default())))
}

/// `HTTP/d.d`; returns the `d.d` part.
fn http_version(i: &[u8]) -> IResult<&[u8], &[u8]> {
    let (i, _) = tag("HTTP/")(i)?;
    take_while_m_n(3, 3, |b: u8| b.is_ascii_digit() || b == b'.')(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let (_, (m, t, v)) = request_line(b"GET /a?b=1 HTTP/1.1").expect("request line");
        assert_eq!((m, t, v), (&b"GET"[..], &b"/a?b=1"[..], &b"1.1"[..]));
        let (_, (v, c, r)) = status_line(b"HTTP/1.0 404 Not Found").expect("status line");
        assert_eq!((v, c, r), (&b"1.0"[..], &b"404"[..], &b"Not Found"[..]));
        let (_, (_, c, r)) = status_line(b"HTTP/1.1 204").expect("no reason");
        assert_eq!((c, r), (&b"204"[..], &b""[..]));
        assert!(request_line(b"GET  / HTTP/1.1").is_err());
        assert!(request_line(b"GET / HTTP/x").is_err());
        assert!(status_line(b"HTTP/1.1 20x OK").is_err());
    }
}
