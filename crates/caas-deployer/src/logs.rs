//! A container's output as lines: [`LogLine`] (the engine's timestamp, stdout or stderr, the
//! text), reassembled from the engine's frames by [`Assembler`], which is pure so its cutting and
//! joining rules are unit-tested without an engine.
//!
//! The engine (`json-file` driver) stores a line longer than 16 KiB as several partial messages,
//! each with its own timestamp and only the last with the newline; the assembler joins them
//! again under the first part's timestamp and cuts the line at [`MAX_LINE_BYTES`], so one
//! runaway line costs at most that much memory here and in the store.

use caas_types::api::LogStream;
use caas_types::Timestamp;

/// The longest line kept, in bytes of UTF-8; the rest of a longer line is dropped (the cut
/// falls on a character boundary, so a kept line is always valid UTF-8).
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// One line a container wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When the engine received the line (its first part, for a line written in parts).
    pub ts: Timestamp,
    /// stdout or stderr.
    pub stream: LogStream,
    /// The text without its newline, at most [`MAX_LINE_BYTES`].
    pub line: String,
}

/// The part of a line seen so far on one stream.
#[derive(Debug, Default)]
struct Partial {
    ts: Option<Timestamp>,
    buf: Vec<u8>,
}

/// Turns the engine's timestamped frames into whole lines, per stream.
#[derive(Debug, Default)]
pub(crate) struct Assembler {
    stdout: Partial,
    stderr: Partial,
    /// The last timestamp read, for a frame whose own cannot be parsed.
    last_ts: Option<Timestamp>,
}

impl Assembler {
    /// Takes one frame (`{RFC 3339 timestamp} {text}`, the text ending in a newline unless the
    /// engine split the line) and returns the lines it completes.
    pub(crate) fn push(&mut self, stream: LogStream, frame: &[u8]) -> Vec<LogLine> {
        let (ts, text) = self.split_timestamp(frame);
        let partial = match stream {
            LogStream::Stdout => &mut self.stdout,
            LogStream::Stderr => &mut self.stderr,
        };
        let mut out = Vec::new();
        let mut rest = text;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            append(partial, ts, &rest[..nl]);
            out.push(finish(partial, stream));
            rest = &rest[nl + 1..];
        }
        if !rest.is_empty() {
            append(partial, ts, rest);
        }
        out
    }

    /// The unfinished lines, as lines (at the end of the stream: the container wrote its last
    /// output without a newline).
    pub(crate) fn flush(&mut self) -> Vec<LogLine> {
        let mut out = Vec::new();
        for (partial, stream) in [
            (&mut self.stdout, LogStream::Stdout),
            (&mut self.stderr, LogStream::Stderr),
        ] {
            if partial.ts.is_some() {
                out.push(finish(partial, stream));
            }
        }
        out.sort_by_key(|l| l.ts);
        out
    }

    fn split_timestamp<'a>(&mut self, frame: &'a [u8]) -> (Timestamp, &'a [u8]) {
        let parsed = frame.iter().position(|&b| b == b' ').and_then(|sp| {
            let ts = std::str::from_utf8(&frame[..sp]).ok()?.parse().ok()?;
            Some((ts, &frame[sp + 1..]))
        });
        match parsed {
            Some((ts, text)) => {
                self.last_ts = Some(ts);
                (ts, text)
            }
            // Not ours to drop: keep the text under the last time seen (or now).
            None => (self.last_ts.unwrap_or_else(Timestamp::now), frame),
        }
    }
}

fn append(partial: &mut Partial, ts: Timestamp, bytes: &[u8]) {
    partial.ts.get_or_insert(ts);
    // One byte over the limit is kept so `finish` cuts on a character boundary.
    let room = (MAX_LINE_BYTES + 4).saturating_sub(partial.buf.len());
    partial
        .buf
        .extend_from_slice(&bytes[..bytes.len().min(room)]);
}

fn finish(partial: &mut Partial, stream: LogStream) -> LogLine {
    let ts = partial.ts.take().unwrap_or_else(Timestamp::now);
    let buf = std::mem::take(&mut partial.buf);
    LogLine {
        ts,
        stream,
        line: cut(&String::from_utf8_lossy(&buf), MAX_LINE_BYTES),
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
pub(crate) fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const T1: &str = "2026-12-02T08:09:26.000000001Z";
    const T2: &str = "2026-12-02T08:09:26.000000002Z";

    fn frame(ts: &str, text: &str) -> Vec<u8> {
        format!("{ts} {text}").into_bytes()
    }

    #[test]
    fn one_frame_one_line_per_stream() {
        let mut a = Assembler::default();
        let out = a.push(LogStream::Stdout, &frame(T1, "hello\n"));
        assert_eq!(
            out,
            vec![LogLine {
                ts: T1.parse().unwrap(),
                stream: LogStream::Stdout,
                line: "hello".into()
            }]
        );
        let out = a.push(LogStream::Stderr, &frame(T2, "oops\n"));
        assert_eq!(out[0].stream, LogStream::Stderr);
        assert_eq!(out[0].line, "oops");
        assert!(a.flush().is_empty());
    }

    #[test]
    fn parts_join_under_the_first_timestamp_and_streams_do_not_mix() {
        let mut a = Assembler::default();
        assert!(a.push(LogStream::Stdout, &frame(T1, "hel")).is_empty());
        assert_eq!(
            a.push(LogStream::Stderr, &frame(T2, "err\n"))[0].line,
            "err"
        );
        let out = a.push(LogStream::Stdout, &frame(T2, "lo\n"));
        assert_eq!(out[0].line, "hello");
        assert_eq!(out[0].ts, T1.parse().unwrap());
    }

    #[test]
    fn long_lines_are_cut_at_the_limit_on_a_char_boundary() {
        let mut a = Assembler::default();
        let big = "é".repeat(MAX_LINE_BYTES); // two bytes each
        for chunk in big.as_bytes().chunks(16 * 1024) {
            let mut f = format!("{T1} ").into_bytes();
            f.extend_from_slice(chunk);
            assert!(a.push(LogStream::Stdout, &f).is_empty());
        }
        let out = a.push(LogStream::Stdout, &frame(T2, "\n"));
        assert_eq!(out[0].line.len(), MAX_LINE_BYTES);
        assert!(out[0].line.chars().all(|c| c == 'é'));
        assert_eq!(cut("abcdé", 5), "abcd");
        assert_eq!(cut("abc", 5), "abc");
    }

    #[test]
    fn an_unfinished_line_is_flushed_at_the_end() {
        let mut a = Assembler::default();
        assert!(a.push(LogStream::Stderr, &frame(T2, "bye")).is_empty());
        assert!(a.push(LogStream::Stdout, &frame(T1, "last")).is_empty());
        let out = a.flush();
        assert_eq!(
            out.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(),
            vec!["last", "bye"]
        );
    }

    #[test]
    fn a_frame_without_timestamp_keeps_its_text_and_several_lines_split() {
        let mut a = Assembler::default();
        a.push(LogStream::Stdout, &frame(T1, "first\n"));
        let out = a.push(LogStream::Stdout, b"no-timestamp\n");
        assert_eq!(out[0].line, "no-timestamp");
        assert_eq!(out[0].ts, T1.parse().unwrap());
        let out = a.push(LogStream::Stdout, &frame(T2, "a\nb\n\n"));
        assert_eq!(
            out.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(),
            vec!["a", "b", ""]
        );
    }
}
