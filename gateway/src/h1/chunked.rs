//! Finding the end of a `Transfer-Encoding: chunked` body without decoding it.
//!
//! The fast path forwards chunked bodies byte for byte (the framing is end to end between client
//! and backend), so all it needs is where the message ends: then the bytes after it are the
//! next message on the connection. The scanner is strict (CRLF only, hex sizes, bounded
//! extension and trailer lines), as a proxy must be: a lenient one that disagrees with the
//! backend about where a body ends is how request smuggling works.

/// Longest chunk-size line (size plus extensions) and longest trailer line accepted.
const MAX_LINE: usize = 4096;

/// A chunked body that is not valid framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked body: {0}")]
pub(crate) struct ChunkError(&'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of a chunk size.
    Size,
    /// Chunk extensions, up to the CR.
    Ext,
    /// The LF ending a size line.
    SizeLf,
    /// Chunk data.
    Data,
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// The start of a trailer line, or the CR of the final empty line.
    Trailer,
    /// Inside a trailer field line, up to its CR.
    TrailerLine,
    /// The LF ending a trailer line.
    TrailerLf,
    /// The LF of the final empty line.
    EndLf,
    /// The message has ended.
    Done,
}

/// Where a chunked body stands, fed the body's bytes in order.
#[derive(Debug, Clone)]
pub(crate) struct Chunked {
    state: State,
    size: u64,
    digits: usize,
    line: usize,
    /// Data bytes left in the current chunk.
    left: u64,
    /// Data bytes announced so far (the decoded body size), for the body limit.
    total: u64,
    /// Data bytes scanned so far (the decoded body bytes passed on), for the traffic counters.
    data: u64,
}

impl Default for Chunked {
    fn default() -> Chunked {
        Chunked {
            state: State::Size,
            size: 0,
            digits: 0,
            line: 0,
            left: 0,
            total: 0,
            data: 0,
        }
    }
}

impl Chunked {
    /// Whether the final chunk and trailers have been seen.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decoded body bytes announced so far by chunk sizes.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Decoded body bytes scanned so far (chunk data, without the framing).
    pub(crate) fn data(&self) -> u64 {
        self.data
    }

    /// Reads `input`, the next bytes of the body; returns how many of them belong to it (all of
    /// them, unless the message ends inside `input`).
    pub(crate) fn scan(&mut self, input: &[u8]) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Done {
                return Ok(i);
            }
            if self.state == State::Data {
                let take = usize::try_from(self.left)
                    .unwrap_or(usize::MAX)
                    .min(input.len() - i);
                i += take;
                self.left -= take as u64;
                self.data += take as u64;
                if self.left == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let b = input[i];
            i += 1;
            self.state = match self.state {
                State::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if self.digits >= 15 {
                            return Err(ChunkError("chunk size too large"));
                        }
                        let d = (b as char).to_digit(16).unwrap_or(0);
                        self.size = self.size * 16 + u64::from(d);
                        self.digits += 1;
                        State::Size
                    }
                    b';' | b' ' | b'\t' if self.digits > 0 => {
                        self.line = self.digits + 1;
                        State::Ext
                    }
                    b'\r' if self.digits > 0 => State::SizeLf,
                    _ => return Err(ChunkError("bad chunk size")),
                },
                State::Ext => match b {
                    b'\r' => State::SizeLf,
                    b'\n' => return Err(ChunkError("bare LF in chunk extension")),
                    _ => {
                        self.line += 1;
                        if self.line > MAX_LINE {
                            return Err(ChunkError("chunk extension too long"));
                        }
                        State::Ext
                    }
                },
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError("chunk size line without CRLF"));
                    }
                    let size = std::mem::take(&mut self.size);
                    self.digits = 0;
                    self.total = self.total.saturating_add(size);
                    if size == 0 {
                        State::Trailer
                    } else {
                        self.left = size;
                        State::Data
                    }
                }
                State::DataCr if b == b'\r' => State::DataLf,
                State::DataLf if b == b'\n' => State::Size,
                State::DataCr | State::DataLf => {
                    return Err(ChunkError("chunk data not followed by CRLF"))
                }
                State::Trailer => match b {
                    b'\r' => State::EndLf,
                    b'\n' => return Err(ChunkError("bare LF in trailers")),
                    _ => {
                        self.line = 1;
                        State::TrailerLine
                    }
                },
                State::TrailerLine => match b {
                    b'\r' => State::TrailerLf,
                    b'\n' => return Err(ChunkError("bare LF in a trailer")),
                    _ => {
                        self.line += 1;
                        if self.line > MAX_LINE {
                            return Err(ChunkError("trailer line too long"));
                        }
                        State::TrailerLine
                    }
                },
                State::TrailerLf if b == b'\n' => State::Trailer,
                State::TrailerLf => return Err(ChunkError("trailer line without CRLF")),
                State::EndLf if b == b'\n' => {
                    self.state = State::Done;
                    return Ok(i);
                }
                State::EndLf => return Err(ChunkError("chunked body not ended by CRLF")),
                // Both are handled before a byte is taken.
                State::Data | State::Done => self.state,
            };
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(parts: &[&[u8]]) -> Result<(Chunked, usize), ChunkError> {
        let mut c = Chunked::default();
        let mut used = 0;
        for p in parts {
            used += c.scan(p)?;
            if c.is_done() {
                break;
            }
        }
        Ok((c, used))
    }

    #[test]
    fn finds_the_end_and_leaves_what_follows() {
        let body = b"5\r\nhello\r\n6;name=v\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
        let mut c = Chunked::default();
        let n = c.scan(body).expect("valid framing");
        assert!(c.is_done());
        assert_eq!(&body[n..], b"GET / HTTP/1.1\r\n");
        assert_eq!(c.total(), 11);
        assert_eq!(c.data(), 11, "the data, not the framing");
    }

    #[test]
    fn data_counts_the_chunk_bytes_scanned_so_far() {
        let mut c = Chunked::default();
        c.scan(b"a\r\n0123").expect("valid framing");
        assert_eq!((c.total(), c.data()), (10, 4), "announced, then passed on");
        c.scan(b"456789\r\n0\r\n\r\n").expect("valid framing");
        assert_eq!(c.data(), 10);
        assert!(c.is_done());
    }

    #[test]
    fn byte_by_byte_is_the_same_as_at_once() {
        let body = b"a\r\n0123456789\r\n0\r\nX-Sum: 1\r\n\r\n";
        let parts: Vec<&[u8]> = body.chunks(1).collect();
        let (c, used) = scan_all(&parts).expect("valid framing");
        assert!(c.is_done());
        assert_eq!(used, body.len());
        assert_eq!(c.total(), 10);
    }

    #[test]
    fn an_unfinished_body_is_not_done() {
        let mut c = Chunked::default();
        assert_eq!(c.scan(b"10\r\nabc").expect("valid so far"), 7);
        assert!(!c.is_done());
        assert_eq!(c.total(), 16);
    }

    #[test]
    fn malformed_framing_is_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloXX",
            b"0\r\nbad\n",
            b"0\r\n\n",
            b"1234567890abcdef0\r\n",
            b"-1\r\n",
        ] {
            let mut c = Chunked::default();
            assert!(c.scan(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let mut c = Chunked::default();
        let long_ext = format!("1;{}\r\n", "e".repeat(MAX_LINE + 1));
        assert!(c.scan(long_ext.as_bytes()).is_err());
    }
}
