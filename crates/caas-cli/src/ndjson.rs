//! Splitting a streamed answer (NDJSON: log lines, events, deploy progress) into its lines as
//! the bytes come, whatever the network cut them into: one buffer holds at most one partial
//! line between reads, and a read of thousands of lines is cut once, not once per line.

/// Bytes received and not yet handed out as lines.
#[derive(Debug, Default)]
pub struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// Appends `chunk` and calls `each` with every line it completes (without its newline; blank
    /// lines skipped), in order. Stops at the first error `each` returns.
    pub fn push<E>(
        &mut self,
        chunk: &[u8],
        mut each: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.partial.extend_from_slice(chunk);
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Ok(());
        };
        let result = self.partial[..end]
            .split(|b| *b == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .try_for_each(&mut each);
        self.partial.drain(..=end);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(chunks: &[&str]) -> Vec<String> {
        let mut lines = Lines::default();
        let mut got = Vec::new();
        for c in chunks {
            lines
                .push::<()>(c.as_bytes(), |l| {
                    got.push(String::from_utf8_lossy(l).into_owned());
                    Ok(())
                })
                .ok();
        }
        got
    }

    #[test]
    fn lines_come_out_whole_however_the_bytes_are_cut() {
        assert_eq!(
            feed(&["{\"a\":1}\n{\"b\"", ":2}\n\n", "{\"c\":3}"]),
            ["{\"a\":1}", "{\"b\":2}"]
        );
        assert_eq!(feed(&["x", "y", "\n", "z\n"]), ["xy", "z"]);
        assert_eq!(feed(&["", "\n \n"]), Vec::<String>::new());
    }

    #[test]
    fn an_error_stops_the_lines() {
        let mut lines = Lines::default();
        let mut seen = 0;
        let r = lines.push(b"a\nb\nc\n", |l| {
            seen += 1;
            if l == b"b" {
                Err("bad")
            } else {
                Ok(())
            }
        });
        assert_eq!((r, seen), (Err("bad"), 2));
    }
}
