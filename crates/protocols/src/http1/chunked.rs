//! Chunked transfer coding (RFC 9112 section 7.1) as a resumable state machine.
//!
//! One machine serves both framing (find where a chunked body ends and collect its data) and
//! skipping the rest of a truncated body across later segments, so there is one implementation.

/// Where in a chunked body the machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChunkState {
    /// Reading the hex size; `value` so far, `digits` seen, `in_ext` after a `;`.
    #[default]
    SizeStart,
    /// Inside the size line.
    Size {
        /// Size accumulated so far.
        value: u64,
        /// Inside a chunk extension (after `;`), ignored up to the line end.
        in_ext: bool,
    },
    /// Saw CR of the size line.
    SizeLf {
        /// The chunk size.
        value: u64,
    },
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// In the trailer section; `line_len` bytes of the current line seen.
    Trailer {
        /// Bytes in the current trailer line (0: an empty line ends the body).
        line_len: u32,
    },
    /// Saw CR in the trailer section.
    TrailerLf {
        /// Bytes of the line before the CR.
        line_len: u32,
    },
    /// The body ended.
    Done,
}

/// Why a chunked body is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

/// Chunk sizes above this are refused (no real server sends a >1 TiB chunk; it guards
/// against overflow).
const MAX_CHUNK: u64 = 1 << 40;

/// A resumable chunked-body reader.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChunkMachine {
    /// Current state.
    pub state: ChunkState,
    /// Sum of the chunk sizes seen (the decoded body length).
    pub body_len: u64,
}

impl ChunkMachine {
    /// Reads `input`, reporting each run of chunk data to `on_data`. Returns the bytes
    /// consumed: all of `input` unless the body ended inside it.
    pub fn feed<'a>(
        &mut self,
        input: &'a [u8],
        mut on_data: impl FnMut(&'a [u8]),
    ) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                ChunkState::Done => return Ok(i),
                ChunkState::SizeStart => match crate::helpers::hex_val(b) {
                    Some(v) => {
                        self.state = ChunkState::Size {
                            value: u64::from(v),
                            in_ext: false,
                        }
                    }
                    None => return Err(ChunkError("chunk size is not hex")),
                },
                ChunkState::Size { value, in_ext } => match b {
                    b'\r' => self.state = ChunkState::SizeLf { value },
                    b'\n' => self.begin_data(value),
                    b';' => {
                        self.state = ChunkState::Size {
                            value,
                            in_ext: true,
                        }
                    }
                    _ if in_ext => {}
                    b' ' | b'\t' => {
                        self.state = ChunkState::Size {
                            value,
                            in_ext: true,
                        }
                    }
                    _ => match crate::helpers::hex_val(b) {
                        Some(v) if value < MAX_CHUNK => {
                            self.state = ChunkState::Size {
                                value: value * 16 + u64::from(v),
                                in_ext: false,
                            }
                        }
                        _ => return Err(ChunkError("bad chunk size")),
                    },
                },
                ChunkState::SizeLf { value } => {
                    if b != b'\n' {
                        return Err(ChunkError("chunk size line without LF"));
                    }
                    self.begin_data(value);
                }
                ChunkState::Data(left) => {
                    let n = (left as usize).min(input.len() - i);
                    on_data(&input[i..i + n]);
                    i += n;
                    self.state = if n as u64 == left {
                        ChunkState::DataCr
                    } else {
                        ChunkState::Data(left - n as u64)
                    };
                    continue;
                }
                ChunkState::DataCr => match b {
                    b'\r' => self.state = ChunkState::DataLf,
                    b'\n' => self.state = ChunkState::SizeStart,
                    _ => return Err(ChunkError("chunk data longer than its size")),
                },
                ChunkState::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError("chunk data without CRLF"));
                    }
                    self.state = ChunkState::SizeStart;
                }
                ChunkState::Trailer { line_len } => match b {
                    b'\r' => self.state = ChunkState::TrailerLf { line_len },
                    b'\n' if line_len == 0 => {
                        self.state = ChunkState::Done;
                        return Ok(i + 1);
                    }
                    b'\n' => self.state = ChunkState::Trailer { line_len: 0 },
                    _ => {
                        self.state = ChunkState::Trailer {
                            line_len: line_len.saturating_add(1),
                        }
                    }
                },
                ChunkState::TrailerLf { line_len } => {
                    if b != b'\n' {
                        return Err(ChunkError("trailer line without LF"));
                    }
                    if line_len == 0 {
                        self.state = ChunkState::Done;
                        return Ok(i + 1);
                    }
                    self.state = ChunkState::Trailer { line_len: 0 };
                }
            }
            i += 1;
        }
        Ok(i)
    }

    fn begin_data(&mut self, size: u64) {
        self.body_len = self.body_len.saturating_add(size);
        self.state = if size == 0 {
            ChunkState::Trailer { line_len: 0 }
        } else {
            ChunkState::Data(size)
        };
    }

    /// True once the terminating chunk and trailers were read.
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Bytes the body needs at least beyond what was fed (a hint for the framer).
    pub fn min_remaining(&self) -> usize {
        match self.state {
            ChunkState::Data(left) => usize::try_from(left)
                .unwrap_or(usize::MAX / 2)
                .saturating_add(7),
            ChunkState::Done => 0,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8]) -> (Result<usize, ChunkError>, Vec<u8>, ChunkMachine) {
        let mut m = ChunkMachine::default();
        let mut out = Vec::new();
        let r = m.feed(input, |d| out.extend_from_slice(d));
        (r, out, m)
    }

    #[test]
    fn rfc9112_example_with_extension_and_trailer() {
        let body = b"4\r\nWiki\r\n6;name=v\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nExpires: never\r\n\r\nNEXT";
        let (r, out, m) = decode(body);
        assert_eq!(r, Ok(body.len() - 4));
        assert_eq!(out, b"Wikipedia in \r\n\r\nchunks.");
        assert_eq!(m.body_len, 24);
        assert!(m.done());
    }

    #[test]
    fn resumes_at_every_split_point() {
        let body = b"5\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n";
        for cut in 0..body.len() {
            let mut m = ChunkMachine::default();
            let mut out = Vec::new();
            let a = m
                .feed(&body[..cut], |d| out.extend_from_slice(d))
                .expect("first half");
            assert_eq!(a, cut);
            let b = m
                .feed(&body[cut..], |d| out.extend_from_slice(d))
                .expect("second half");
            assert_eq!(a + b, body.len(), "cut {cut}");
            assert!(m.done());
            assert_eq!(out, b"hello0123456789abcdef");
        }
    }

    #[test]
    fn rejects_garbage_and_huge_sizes() {
        assert!(decode(b"zz\r\n").0.is_err());
        assert!(decode(b"3\r\nabcd\r\n").0.is_err());
        assert!(decode(b"ffffffffffffffffffff\r\n").0.is_err());
    }
}
