//! The body of an `app_log_chunks` row: the lines one instance wrote, in the order they were
//! read, as bytes. Pure encoding and decoding, no database.
//!
//! Layout: a format byte ([`FORMAT`]), then per line its engine timestamp (i64, nanoseconds,
//! little-endian), its stream (0 stdout, 1 stderr), the length of its text (u32, little-endian)
//! and the text (UTF-8). Thirteen bytes of framing per line; no escaping, so encoding and
//! decoding are a copy. A body that does not follow this layout is refused whole, never read
//! in part.

use caas_types::api::LogStream;
use caas_types::Timestamp;

/// The layout version written first in every body.
pub const FORMAT: u8 = 1;
/// Bytes of framing per line (timestamp, stream, length).
pub const LINE_OVERHEAD: usize = 8 + 1 + 4;

/// One line of a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkLine {
    /// The engine's timestamp.
    pub ts: Timestamp,
    /// stdout or stderr.
    pub stream: LogStream,
    /// The text, without its newline.
    pub line: String,
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The body starts with a format this build does not know.
    #[error("log chunk format {0} is not known")]
    Format(u8),
    /// The body ends inside a line.
    #[error("log chunk cut short at byte {0}")]
    Truncated(usize),
    /// A stream byte other than 0 or 1.
    #[error("log chunk has a bad stream byte at {0}")]
    Stream(usize),
    /// A line's text is not UTF-8.
    #[error("log chunk has a line that is not UTF-8 at byte {0}")]
    Utf8(usize),
}

/// Encodes `lines` (timestamp, stream, text), in their order, into a body.
pub fn encode<'a>(lines: impl IntoIterator<Item = (Timestamp, LogStream, &'a str)>) -> Vec<u8> {
    let mut out = vec![FORMAT];
    for (ts, stream, text) in lines {
        out.extend_from_slice(&ts.as_nanos().to_le_bytes());
        out.push(match stream {
            LogStream::Stdout => 0,
            LogStream::Stderr => 1,
        });
        // A line is cut at 16 KiB before it gets here; a longer one is cut at u32::MAX.
        let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&text.as_bytes()[..len as usize]);
    }
    out
}

/// Decodes a body into its lines, in their stored order.
pub fn decode(body: &[u8]) -> Result<Vec<ChunkLine>, ChunkError> {
    match body.first() {
        Some(&FORMAT) => {}
        Some(&other) => return Err(ChunkError::Format(other)),
        None => return Err(ChunkError::Truncated(0)),
    }
    let mut lines = Vec::new();
    let mut at = 1;
    while at < body.len() {
        let start = at;
        let head = body
            .get(at..at + LINE_OVERHEAD)
            .ok_or(ChunkError::Truncated(start))?;
        let (ts, rest) = head.split_at(8);
        let ts = i64::from_le_bytes(ts.try_into().map_err(|_| ChunkError::Truncated(start))?);
        let stream = match rest[0] {
            0 => LogStream::Stdout,
            1 => LogStream::Stderr,
            _ => return Err(ChunkError::Stream(start + 8)),
        };
        let len = u32::from_le_bytes(
            rest[1..]
                .try_into()
                .map_err(|_| ChunkError::Truncated(start))?,
        );
        at += LINE_OVERHEAD;
        let end = at
            .checked_add(len as usize)
            .filter(|&e| e <= body.len())
            .ok_or(ChunkError::Truncated(start))?;
        let text = std::str::from_utf8(&body[at..end]).map_err(|_| ChunkError::Utf8(at))?;
        lines.push(ChunkLine {
            ts: Timestamp::from_nanos(ts),
            stream,
            line: text.to_owned(),
        });
        at = end;
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> Vec<(Timestamp, LogStream, String)> {
        vec![
            (Timestamp::from_nanos(1), LogStream::Stdout, "hello".into()),
            (Timestamp::from_nanos(-5), LogStream::Stderr, String::new()),
            (
                Timestamp::from_nanos(i64::MAX),
                LogStream::Stdout,
                "ünïcødé \u{1F600} and a\ttab".into(),
            ),
            (
                Timestamp::from_nanos(3),
                LogStream::Stderr,
                "x".repeat(16 * 1024),
            ),
        ]
    }

    fn encoded() -> Vec<u8> {
        let lines = sample();
        encode(lines.iter().map(|(t, s, l)| (*t, *s, l.as_str())))
    }

    #[test]
    fn lines_come_back_as_they_went_in() {
        let back = decode(&encoded()).unwrap();
        let want: Vec<ChunkLine> = sample()
            .into_iter()
            .map(|(ts, stream, line)| ChunkLine { ts, stream, line })
            .collect();
        assert_eq!(back, want);
        assert_eq!(decode(&encode([])).unwrap(), vec![]);
    }

    #[test]
    fn the_framing_is_thirteen_bytes_a_line() {
        let body = encode([(Timestamp::from_nanos(7), LogStream::Stdout, "abc")]);
        assert_eq!(body.len(), 1 + LINE_OVERHEAD + 3);
    }

    #[test]
    fn a_damaged_body_is_refused_whole() {
        let good = encoded();
        assert_eq!(decode(&[]), Err(ChunkError::Truncated(0)));
        assert_eq!(decode(&[9]), Err(ChunkError::Format(9)));
        // Cut anywhere inside the last line (or its header).
        for cut in [good.len() - 1, good.len() - 16 * 1024, 1 + 3] {
            assert!(
                matches!(decode(&good[..cut]), Err(ChunkError::Truncated(_))),
                "cut at {cut}"
            );
        }
        let mut bad_stream = good.clone();
        bad_stream[1 + 8] = 2;
        assert_eq!(decode(&bad_stream), Err(ChunkError::Stream(9)));
        let mut bad_text = encode([(Timestamp::from_nanos(1), LogStream::Stdout, "ab")]);
        let n = bad_text.len();
        bad_text[n - 1] = 0xff;
        assert!(matches!(decode(&bad_text), Err(ChunkError::Utf8(_))));
        // A length past the end.
        let mut long = encode([(Timestamp::from_nanos(1), LogStream::Stdout, "ab")]);
        long[1 + 9] = 200;
        assert!(matches!(decode(&long), Err(ChunkError::Truncated(1))));
    }
}
