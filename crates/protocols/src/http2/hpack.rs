//! HPACK header decompression (RFC 7541), one decoder per connection and direction.
//!
//! Built for watching traffic rather than serving it: a capture that starts mid-connection has
//! never seen the entries the encoder already put in its dynamic table. Such references are
//! counted as missing (the field is skipped) instead of failing the whole block, and a
//! literal "with incremental indexing" whose name is unknown still takes a table slot, so the
//! indices of everything added afterwards stay right. Huffman strings are decoded with the
//! `httlib-huffman` crate.

use std::borrow::Cow;
use std::collections::VecDeque;

/// Why a header block could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HpackError {
    /// The block ends inside an instruction.
    Truncated,
    /// An integer does not fit.
    IntegerOverflow,
    /// A Huffman string is invalid.
    Huffman,
    /// A table size update above the limit this decoder accepts.
    TableTooLarge,
    /// The decoded header list exceeds the limit.
    ListTooLarge,
}

/// RFC 7541 Appendix A.
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// Largest dynamic table a size update may ask for (the protocol default is 4096; servers
/// rarely go above 64 KiB).
const MAX_TABLE: usize = 1 << 20;
/// Largest decoded header list per block.
const MAX_LIST: usize = 256 << 10;

/// One direction's decoder state.
#[derive(Debug)]
pub struct Decoder {
    /// Newest first, as HPACK indexes it.
    dynamic: VecDeque<(Vec<u8>, Vec<u8>)>,
    size: usize,
    max_size: usize,
    /// References to entries this decoder never saw (capture started mid-connection).
    pub missing: u64,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            dynamic: VecDeque::new(),
            size: 0,
            max_size: 4096,
            missing: 0,
        }
    }
}

/// An HPACK string literal at `b[*i]`: borrowed when plain, decoded when Huffman-coded.
fn string<'b>(b: &'b [u8], i: &mut usize) -> Result<Cow<'b, [u8]>, HpackError> {
    let huffman = b.get(*i).ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = integer(b, i, 7)?;
    let end = i.checked_add(len).ok_or(HpackError::Truncated)?;
    let raw = b.get(*i..end).ok_or(HpackError::Truncated)?;
    *i = end;
    if !huffman {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = Vec::with_capacity(raw.len() * 8 / 5 + 1);
    httlib_huffman::decode(raw, &mut out, httlib_huffman::DecoderSpeed::FourBits)
        .map_err(|_| HpackError::Huffman)?;
    Ok(Cow::Owned(out))
}

/// An HPACK integer with an `n`-bit prefix at `b[*i]`.
fn integer(b: &[u8], i: &mut usize, n: u32) -> Result<usize, HpackError> {
    let first = *b.get(*i).ok_or(HpackError::Truncated)?;
    *i += 1;
    let max = (1usize << n) - 1;
    let mut v = usize::from(first) & max;
    if v < max {
        return Ok(v);
    }
    let mut shift = 0u32;
    loop {
        let byte = *b.get(*i).ok_or(HpackError::Truncated)?;
        *i += 1;
        if shift > 28 {
            return Err(HpackError::IntegerOverflow);
        }
        v = v
            .checked_add(usize::from(byte & 0x7f) << shift)
            .ok_or(HpackError::IntegerOverflow)?;
        shift += 7;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
}

impl Decoder {
    /// Entries in the dynamic table.
    pub fn dynamic_len(&self) -> usize {
        self.dynamic.len()
    }

    /// The dynamic table's size in RFC 7541 terms (name + value + 32 per entry).
    pub fn dynamic_size(&self) -> usize {
        self.size
    }

    /// Entry `index` (1-based, static then dynamic), or `None` when not known.
    fn entry(&self, index: usize) -> Option<(&[u8], &[u8])> {
        if index == 0 {
            return None;
        }
        if index <= STATIC.len() {
            let (n, v) = STATIC[index - 1];
            return Some((n.as_bytes(), v.as_bytes()));
        }
        self.dynamic
            .get(index - STATIC.len() - 1)
            .map(|(n, v)| (n.as_slice(), v.as_slice()))
    }

    fn evict(&mut self) {
        while self.size > self.max_size {
            match self.dynamic.pop_back() {
                Some((n, v)) => self.size -= n.len() + v.len() + 32,
                None => {
                    self.size = 0;
                    break;
                }
            }
        }
    }

    fn insert(&mut self, name: Vec<u8>, value: Vec<u8>) {
        let sz = name.len() + value.len() + 32;
        if sz > self.max_size {
            // RFC 7541 4.4: an entry larger than the table empties it.
            self.dynamic.clear();
            self.size = 0;
            return;
        }
        self.size += sz;
        self.dynamic.push_front((name, value));
        self.evict();
    }

    /// Decodes one complete header block, calling `out` for every field it can recover.
    /// Fields are handed over borrowed (from the block, the tables or a Huffman decode): only
    /// what goes into the dynamic table is copied.
    pub fn decode(
        &mut self,
        b: &[u8],
        out: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        let mut i = 0;
        let mut listed = 0usize;
        let mut emit = |n: &[u8], v: &[u8]| {
            listed += n.len() + v.len() + 32;
            if listed > MAX_LIST {
                return Err(HpackError::ListTooLarge);
            }
            out(n, v);
            Ok(())
        };
        while i < b.len() {
            let first = b[i];
            if first & 0x80 != 0 {
                // Indexed field.
                let idx = integer(b, &mut i, 7)?;
                match self.entry(idx) {
                    Some((n, v)) => emit(n, v)?,
                    None => self.missing += 1,
                }
            } else if first & 0xe0 == 0x20 {
                // Dynamic table size update.
                let size = integer(b, &mut i, 5)?;
                if size > MAX_TABLE {
                    return Err(HpackError::TableTooLarge);
                }
                self.max_size = size;
                self.evict();
            } else {
                // Literal: with incremental indexing (01), without (0000) or never (0001).
                let (prefix, index_it) = if first & 0xc0 == 0x40 {
                    (6, true)
                } else {
                    (4, false)
                };
                let idx = integer(b, &mut i, prefix)?;
                let literal_name = if idx == 0 {
                    Some(string(b, &mut i)?)
                } else {
                    None
                };
                let value = string(b, &mut i)?;
                let name: Option<&[u8]> = match &literal_name {
                    Some(n) => Some(n),
                    None => self.entry(idx).map(|(n, _)| n),
                };
                match (name, index_it) {
                    (Some(n), false) => emit(n, &value)?,
                    (Some(n), true) => {
                        let n = n.to_vec();
                        emit(&n, &value)?;
                        self.insert(n, value.into_owned());
                    }
                    (None, _) => {
                        self.missing += 1;
                        if index_it {
                            // Keep the table aligned with the encoder's: the slot exists.
                            self.insert(Vec::new(), value.into_owned());
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn decode(d: &mut Decoder, block: &str) -> Vec<(String, String)> {
        let mut got = Vec::new();
        d.decode(&hex(block), &mut |n, v| {
            got.push((
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ))
        })
        .expect("decodes");
        got
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn rfc7541_c1_integers() {
        // C.1.1: 10 with a 5-bit prefix; C.1.2: 1337 with a 5-bit prefix; C.1.3: 42 at 8 bits.
        let mut i = 0;
        assert_eq!(integer(&[0x0a], &mut i, 5), Ok(10));
        i = 0;
        assert_eq!(integer(&[0x1f, 0x9a, 0x0a], &mut i, 5), Ok(1337));
        assert_eq!(i, 3);
        i = 0;
        assert_eq!(integer(&[0x2a], &mut i, 8), Ok(42));
    }

    #[test]
    fn rfc7541_c2_literals() {
        // C.2.1: literal with indexing, new name.
        let mut d = Decoder::default();
        let got = decode(
            &mut d,
            "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
        );
        assert_eq!(got, pairs(&[("custom-key", "custom-header")]));
        assert_eq!(d.dynamic_size(), 55);
        // C.2.2: literal without indexing, indexed name.
        let mut d = Decoder::default();
        let got = decode(&mut d, "040c 2f73 616d 706c 652f 7061 7468");
        assert_eq!(got, pairs(&[(":path", "/sample/path")]));
        assert_eq!(d.dynamic_len(), 0);
        // C.2.3: literal never indexed.
        let got = decode(&mut d, "1008 7061 7373 776f 7264 0673 6563 7265 74");
        assert_eq!(got, pairs(&[("password", "secret")]));
        assert_eq!(d.dynamic_len(), 0);
        // C.2.4: indexed field.
        assert_eq!(decode(&mut d, "82"), pairs(&[(":method", "GET")]));
    }

    fn requests(blocks: [&str; 3]) {
        let mut d = Decoder::default();
        let first = pairs(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ]);
        assert_eq!(decode(&mut d, blocks[0]), first);
        assert_eq!(d.dynamic_size(), 57);
        let mut second = first.clone();
        second.push(("cache-control".into(), "no-cache".into()));
        assert_eq!(decode(&mut d, blocks[1]), second);
        assert_eq!(d.dynamic_size(), 110);
        let third = pairs(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ]);
        assert_eq!(decode(&mut d, blocks[2]), third);
        assert_eq!(d.dynamic_size(), 164);
        assert_eq!(d.dynamic_len(), 3);
    }

    #[test]
    fn rfc7541_c3_requests_without_huffman() {
        requests([
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ]);
    }

    #[test]
    fn rfc7541_c4_requests_with_huffman() {
        requests([
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ]);
    }

    #[test]
    fn mid_connection_start_keeps_what_it_can() {
        // The second request of C.3 without the first: index 62 (":authority") is unknown.
        let mut d = Decoder::default();
        let got = decode(&mut d, "8286 84be 5808 6e6f 2d63 6163 6865");
        assert_eq!(
            got,
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("cache-control", "no-cache")
            ])
        );
        assert_eq!(d.missing, 1);
        // The new entry still took slot 62.
        assert_eq!(
            decode(&mut d, "be"),
            pairs(&[("cache-control", "no-cache")])
        );
    }

    #[test]
    fn hostile_blocks_are_errors() {
        let mut d = Decoder::default();
        let mut sink = |_: &[u8], _: &[u8]| {};
        assert_eq!(
            d.decode(&[0x40, 0x0a, b'a'], &mut sink),
            Err(HpackError::Truncated)
        );
        assert_eq!(
            d.decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], &mut sink),
            Err(HpackError::IntegerOverflow)
        );
        assert_eq!(
            d.decode(&[0x3f, 0xe1, 0xff, 0x7f], &mut sink),
            Err(HpackError::TableTooLarge)
        );
        for seed in 0u32..2000 {
            let blob = crate::helpers::noise(seed, 64);
            let _ = d.decode(&blob, &mut sink);
        }
    }
}
