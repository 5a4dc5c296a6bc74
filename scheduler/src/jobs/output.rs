//! The output a job keeps: the last [`OutputTail::capacity`] bytes of what it wrote (1 MiB by
//! default), so a finished job's output stays readable however much it printed, in bounded
//! memory. Pure: the runner pushes what it drains from the container, readers take a copy.

use std::collections::VecDeque;

/// Bytes a job keeps when not configured otherwise.
pub const DEFAULT_KEEP_BYTES: usize = 1 << 20;

/// The newest `capacity` bytes written, and how many older ones were let go.
#[derive(Debug, Clone)]
pub struct OutputTail {
    buf: VecDeque<u8>,
    capacity: usize,
    dropped: u64,
}

impl OutputTail {
    /// An empty tail keeping at most `capacity` bytes (at least 1).
    pub fn new(capacity: usize) -> OutputTail {
        let capacity = capacity.max(1);
        OutputTail {
            buf: VecDeque::with_capacity(capacity.min(64 * 1024)),
            capacity,
            dropped: 0,
        }
    }

    /// Most bytes kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Appends `data`, letting the oldest bytes go beyond the capacity.
    pub fn push(&mut self, data: &[u8]) {
        // Only the last `capacity` bytes of `data` can stay.
        let data = if data.len() > self.capacity {
            self.dropped += (data.len() - self.capacity) as u64;
            &data[data.len() - self.capacity..]
        } else {
            data
        };
        let over = (self.buf.len() + data.len()).saturating_sub(self.capacity);
        if over > 0 {
            self.buf.drain(..over);
            self.dropped += over as u64;
        }
        self.buf.extend(data);
    }

    /// The bytes kept, oldest first.
    pub fn to_vec(&self) -> Vec<u8> {
        let (a, b) = self.buf.as_slices();
        [a, b].concat()
    }

    /// The bytes written from offset `from` (counted over everything ever written) to now, and
    /// how many bytes from `from` on were let go already and are missing before them.
    pub fn since(&self, from: u64) -> (u64, Vec<u8>) {
        let missing = self.dropped.saturating_sub(from);
        let skip = usize::try_from(from.saturating_sub(self.dropped)).unwrap_or(usize::MAX);
        if skip >= self.buf.len() {
            return (missing, Vec::new());
        }
        let (a, b) = self.buf.as_slices();
        let mut out = Vec::with_capacity(self.buf.len() - skip);
        if skip < a.len() {
            out.extend_from_slice(&a[skip..]);
            out.extend_from_slice(b);
        } else {
            out.extend_from_slice(&b[skip - a.len()..]);
        }
        (missing, out)
    }

    /// A tail holding `kept` as the last bytes of `written` (an adopted job's stored output).
    pub fn resume(capacity: usize, kept: &[u8], written: u64) -> OutputTail {
        let mut tail = OutputTail::new(capacity);
        tail.push(kept);
        tail.dropped = written.saturating_sub(tail.buf.len() as u64);
        tail
    }

    /// How many bytes were written in all.
    pub fn written(&self) -> u64 {
        self.dropped + self.buf.len() as u64
    }

    /// How many of the oldest bytes were let go.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl Default for OutputTail {
    fn default() -> OutputTail {
        OutputTail::new(DEFAULT_KEEP_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_gives_what_came_after_an_offset_and_counts_what_was_let_go() {
        let mut t = OutputTail::new(4);
        t.push(b"ab");
        assert_eq!(t.since(0), (0, b"ab".to_vec()));
        assert_eq!(t.since(1), (0, b"b".to_vec()));
        assert_eq!(t.since(2), (0, Vec::new()));
        t.push(b"cdef");
        // "ab" went; "cdef" stays (offsets 2..6).
        assert_eq!(t.since(0), (2, b"cdef".to_vec()));
        assert_eq!(t.since(3), (0, b"def".to_vec()));
        assert_eq!(t.since(6), (0, Vec::new()));
        assert_eq!(t.since(9), (0, Vec::new()));
        let r = OutputTail::resume(4, b"xyz", 10);
        assert_eq!((r.written(), r.dropped()), (10, 7));
        assert_eq!(r.since(8), (0, b"yz".to_vec()));
    }

    #[test]
    fn what_fits_is_kept_whole() {
        let mut t = OutputTail::new(10);
        t.push(b"abc");
        t.push(b"");
        t.push(b"defg");
        assert_eq!(t.to_vec(), b"abcdefg");
        assert_eq!((t.written(), t.dropped()), (7, 0));
    }

    #[test]
    fn the_oldest_bytes_go_first() {
        let mut t = OutputTail::new(5);
        t.push(b"abcd");
        t.push(b"efg");
        assert_eq!(t.to_vec(), b"cdefg");
        assert_eq!((t.written(), t.dropped()), (7, 2));
        // A write longer than the whole tail keeps its own end.
        t.push(b"0123456789");
        assert_eq!(t.to_vec(), b"56789");
        assert_eq!((t.written(), t.dropped()), (17, 12));
    }

    #[test]
    fn many_small_writes_stay_within_capacity() {
        let mut t = OutputTail::new(1000);
        for i in 0..10_000u32 {
            t.push(format!("{i}\n").as_bytes());
            assert!(t.to_vec().len() <= 1000);
        }
        let kept = String::from_utf8(t.to_vec()).unwrap_or_default();
        assert!(kept.ends_with("9999\n"), "{kept}");
        assert_eq!(
            t.written(),
            (0..10_000u32)
                .map(|i| format!("{i}\n").len() as u64)
                .sum::<u64>()
        );
        assert_eq!(OutputTail::new(0).capacity(), 1);
        assert_eq!(OutputTail::default().capacity(), DEFAULT_KEEP_BYTES);
    }
}
