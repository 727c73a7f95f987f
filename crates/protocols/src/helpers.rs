//! Parsing helpers shared by all protocols: byte classes, numbers, text.

/// RFC 9110 `tchar`: the bytes allowed in tokens (methods, header names).
///
/// Laid out as a 16x16 grid, row = high nibble.
pub static TOKEN: [bool; 256] = {
    const F: bool = false;
    const T: bool = true;
    [
        //  0  1  2  3  4  5  6  7  8  9  A  B  C  D  E  F
        F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, // 0x00 controls
        F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, // 0x10 controls
        F, T, F, T, T, T, T, T, F, F, T, T, F, T, T, F, // 0x20  !"#$%&'()*+,-./
        T, T, T, T, T, T, T, T, T, T, F, F, F, F, F, F, // 0x30 0-9 :;<=>?
        F, T, T, T, T, T, T, T, T, T, T, T, T, T, T, T, // 0x40 @A-O
        T, T, T, T, T, T, T, T, T, T, T, F, F, F, T, T, // 0x50 P-Z [\]^_
        T, T, T, T, T, T, T, T, T, T, T, T, T, T, T, T, // 0x60 `a-o
        T, T, T, T, T, T, T, T, T, T, T, F, T, F, T, F, // 0x70 p-z {|}~ DEL
        F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, // 0x80
        F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, // 0x90
        F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, // 0xA0
        F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, // 0xB0
        F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, // 0xC0
        F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, // 0xD0
        F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, // 0xE0
        F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, // 0xF0
    ]
};

/// Bytes allowed in a request target: any visible byte, and obs-text (>= 0x80) which real
/// clients send unencoded; no controls, no space.
pub static URI: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0x21;
    while i < 256 {
        t[i] = i != 0x7f;
        i += 1;
    }
    t
};

/// True for a token byte.
#[inline]
pub fn is_token(b: u8) -> bool {
    TOKEN[b as usize]
}

/// True for a request-target byte.
#[inline]
pub fn is_uri(b: u8) -> bool {
    URI[b as usize]
}

/// Trims spaces and horizontal tabs at both ends (HTTP's OWS).
#[inline]
pub fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Parses an unsigned decimal number (no sign, no spaces); `None` on overflow or junk.
#[inline]
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some(n)
}

/// The value of a hex digit.
#[inline]
pub fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A big-endian u16 at `at`, if the bytes are there.
#[inline]
pub fn be_u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([
        *b.get(at)?,
        *b.get(at.checked_add(1)?)?,
    ]))
}

/// A big-endian u32 at `at`, if the bytes are there.
#[inline]
pub fn be_u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// A string with a big-endian u16 length before it, at `at`: the string and the position
/// after it.
#[inline]
pub fn str16_at(b: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let n = usize::from(be_u16_at(b, at)?);
    let start = at + 2;
    Some((b.get(start..start + n)?, start + n))
}

/// A NUL-terminated string at `at`: the string and the position after the NUL.
#[inline]
pub fn cstr_at(b: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = b.get(at..)?;
    let n = memchr::memchr(0, rest)?;
    Some((&rest[..n], at + n + 1))
}

/// True when `s` contains `token` as a comma-separated element, ignoring case and OWS
/// (e.g. `chunked` in `Transfer-Encoding: gzip, chunked`).
pub fn list_contains(s: &[u8], token: &[u8]) -> bool {
    s.split(|&b| b == b',')
        .any(|e| trim_ows(e).eq_ignore_ascii_case(token))
}

/// The last comma-separated element of `s`, trimmed.
pub fn list_last(s: &[u8]) -> &[u8] {
    s.rsplit(|&b| b == b',').next().map(trim_ows).unwrap_or(s)
}

/// Deterministic pseudo-random bytes for the parsers' hostile-input tests.
#[cfg(test)]
pub(crate) fn noise(seed: u32, len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|k| (seed.wrapping_mul(2_654_435_761).rotate_left(k % 32) >> 24) as u8 ^ k as u8)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_match_rfc9110() {
        for b in b"!#$%&'*+-.^_`|~09AZaz" {
            assert!(is_token(*b), "{}", *b as char);
        }
        for b in b"\"(),/:;<=>?@[\\]{} \t\x7f\x00" {
            assert!(!is_token(*b), "{}", *b as char);
        }
        assert!(is_uri(b'/') && is_uri(b'?') && is_uri(0x80));
        assert!(!is_uri(b' ') && !is_uri(b'\r') && !is_uri(0x7f));
    }

    #[test]
    fn numbers_and_lists() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551615"), None); // 20 digits: refused, not wrapped
        assert_eq!(
            parse_u64(b"9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
        assert_eq!(parse_u64(b"1a"), None);
        assert_eq!(parse_u64(b""), None);
        assert!(list_contains(b"gzip, Chunked", b"chunked"));
        assert!(!list_contains(b"gzip", b"chunked"));
        assert_eq!(list_last(b"gzip , chunked "), b"chunked");
        assert_eq!(trim_ows(b" \t x \t"), b"x");
    }

    #[test]
    fn big_endian_readers() {
        let b = b"\x00\x03abc\x01\x02\x03\x04x\0y";
        assert_eq!(be_u16_at(b, 0), Some(3));
        assert_eq!(str16_at(b, 0), Some((&b"abc"[..], 5)));
        assert_eq!(be_u32_at(b, 5), Some(0x0102_0304));
        assert_eq!(cstr_at(b, 9), Some((&b"x"[..], 11)));
        assert_eq!(be_u32_at(b, 10), None);
        assert_eq!(be_u16_at(b, usize::MAX), None);
        assert_eq!(str16_at(b"\x00\x09ab", 0), None);
    }
}
