//! The logs API's wire shapes: one NDJSON object per line of `GET /v1/apps/{app}/logs`.

use crate::{InstanceId, Timestamp, Version};
use serde::{Deserialize, Serialize};

/// Which output of the container a line was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl LogStream {
    /// `stdout` or `stderr`, as on the wire and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

impl std::str::FromStr for LogStream {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<LogStream> {
        match s {
            "stdout" => Ok(LogStream::Stdout),
            "stderr" => Ok(LogStream::Stderr),
            _ => Err(crate::Error::Invalid {
                kind: "log stream",
                reason: "stdout or stderr".into(),
            }),
        }
    }
}

/// One line an instance of the app wrote, as `GET /v1/apps/{app}/logs` streams it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// When the engine received the line (the engine host's clock), RFC 3339 UTC, nanoseconds.
    pub ts: Timestamp,
    /// The instance that wrote it.
    pub instance: InstanceId,
    /// The instance's deployment version.
    pub version: Version,
    /// `stdout` or `stderr`.
    pub stream: LogStream,
    /// The line without its newline, cut at 16 KiB.
    pub line: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_line_has_the_brief_s_fields() {
        let line = LogLine {
            ts: "2026-01-02T03:04:05.5Z".parse().unwrap(),
            instance: "shop-abc123".parse().unwrap(),
            version: "v1".parse().unwrap(),
            stream: LogStream::Stderr,
            line: "hello".into(),
        };
        let json = serde_json::to_value(&line).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"ts": "2026-01-02T03:04:05.500000000Z", "instance": "shop-abc123",
                "version": "v1", "stream": "stderr", "line": "hello"})
        );
        assert_eq!(serde_json::from_value::<LogLine>(json).unwrap(), line);
    }
}
