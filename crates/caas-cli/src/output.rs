//! Writing to standard output without panicking when the reader goes away.
//!
//! `println!` panics on a closed pipe (`caas ps -o json | grep -q ...` closes it after the first
//! match). Every command writes through [`out!`] and [`outln!`] instead, which return the write
//! error; `main` treats a broken pipe as a normal end, as `cat` or `grep` do when their reader
//! has seen enough.

use std::io::{self, Write};

/// Writes formatted text to standard output, returning the error instead of panicking.
pub fn write(args: std::fmt::Arguments<'_>) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_fmt(args)?;
    stdout.flush()
}

/// Writes `bytes` to standard output at once and flushes, returning the error instead of
/// panicking (for output built up in pieces, like a batch of log lines).
pub fn write_bytes(bytes: &[u8]) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()
}

/// True when `e` (or one of its causes) is standard output's reader having gone away.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// `print!` that returns an error from the enclosing function instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!($($arg)*))?
    };
}

/// `println!` that returns an error from the enclosing function instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!("{}\n", format_args!($($arg)*)))?
    };
}

pub(crate) use {out, outln};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_pipe_is_found_anywhere_in_the_chain() {
        let pipe = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(is_broken_pipe(&pipe));
        assert!(is_broken_pipe(&pipe.context("printing the table")));
        let other = anyhow::Error::new(io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(!is_broken_pipe(&other));
        assert!(!is_broken_pipe(&anyhow::anyhow!("conflict")));
    }
}
