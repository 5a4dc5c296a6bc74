//! The one error type of this crate: why a string is not a valid value.

/// Why a value could not be parsed. The message names the kind of value and the rule it broke,
/// never echoing unbounded input back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input was empty.
    #[error("{kind} must not be empty")]
    Empty {
        /// What was being parsed, e.g. "app id".
        kind: &'static str,
    },
    /// The input was longer than allowed.
    #[error("{kind} is {len} characters long; the limit is {max}")]
    TooLong {
        /// What was being parsed.
        kind: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The maximum length.
        max: usize,
    },
    /// The input broke a syntax rule.
    #[error("invalid {kind}: {reason}")]
    Invalid {
        /// What was being parsed.
        kind: &'static str,
        /// The rule it broke, in a few words.
        reason: String,
    },
    /// A number was outside its allowed range.
    #[error("{kind} out of range: {reason}")]
    OutOfRange {
        /// What was being parsed.
        kind: &'static str,
        /// The allowed range, in a few words.
        reason: String,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(kind: &'static str, reason: impl Into<String>) -> Self {
        Error::Invalid {
            kind,
            reason: reason.into(),
        }
    }

    pub(crate) fn range(kind: &'static str, reason: impl Into<String>) -> Self {
        Error::OutOfRange {
            kind,
            reason: reason.into(),
        }
    }
}
