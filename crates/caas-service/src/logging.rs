//! The daemons' log set-up: one line per event on stderr, filtered by `RUST_LOG`.

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    /// `json` is [`LogFormat::Json`]; any other name is [`LogFormat::Text`] (so a mistyped
    /// `--log-format` still logs, readably).
    pub fn from_name(name: &str) -> LogFormat {
        if name == "json" {
            LogFormat::Json
        } else {
            LogFormat::Text
        }
    }
}

/// Installs the process's tracing subscriber: events filtered by `RUST_LOG`, or by
/// `default_filter` when it is unset or invalid (`"info"`, plus per-crate directives such as
/// `"info,sqlx=warn"`), written to stderr in `format`, with colours only when stderr is a
/// terminal (log files stay plain text).
///
/// # Panics
///
/// If a global subscriber is already installed: call it once, from `main`.
pub fn init_logging(default_filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_json_is_json() {
        assert_eq!(LogFormat::from_name("json"), LogFormat::Json);
        for name in ["text", "", "JSON", "pretty"] {
            assert_eq!(LogFormat::from_name(name), LogFormat::Text, "{name}");
        }
    }
}
