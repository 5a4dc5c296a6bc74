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

/// Directives no `RUST_LOG` can lower: bollard logs the JSON body of every Docker request at
/// debug level, and a container's create request carries its environment, which holds the
/// app's decrypted secrets.
const CAPPED: &[&str] = &["bollard=info"];

/// The log filter of a daemon: `RUST_LOG`, or `default_filter` when it is unset or invalid,
/// with [`CAPPED`] over it (a directive for the same target is replaced, so `bollard=trace`
/// in `RUST_LOG` still logs bollard at info at most).
pub fn env_filter(default_filter: &str) -> tracing_subscriber::EnvFilter {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    for cap in CAPPED {
        if let Ok(directive) = cap.parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// Installs the process's tracing subscriber: events filtered by [`env_filter`] (`RUST_LOG`, or
/// `default_filter` when it is unset or invalid: `"info"`, plus per-crate directives such as
/// `"info,sqlx=warn"`), `log` records of dependencies included, written to stderr in `format`, with colours only when stderr is a
/// terminal (log files stay plain text).
///
/// # Panics
///
/// If a global subscriber is already installed: call it once, from `main`.
pub fn init_logging(default_filter: &str, format: LogFormat) {
    let filter = env_filter(default_filter);
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
    fn bollard_never_logs_below_info_whatever_the_filter_says() {
        use std::sync::{Arc, Mutex};
        let seen = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = seen.clone();
        // The default filter asks for trace everywhere, bollard included.
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(env_filter("trace,bollard=trace"))
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "bollard::docker", "{{\"Env\":[\"K=hidden\"]}}");
            tracing::info!(target: "bollard::docker", "bollard info");
            tracing::debug!(target: "caas_scheduler", "ours at debug");
        });
        let text = String::from_utf8(seen.lock().expect("not poisoned").clone()).expect("utf-8");
        assert!(!text.contains("hidden"), "{text}");
        assert!(
            text.contains("bollard info") && text.contains("ours at debug"),
            "{text}"
        );
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn only_json_is_json() {
        assert_eq!(LogFormat::from_name("json"), LogFormat::Json);
        for name in ["text", "", "JSON", "pretty"] {
            assert_eq!(LogFormat::from_name(name), LogFormat::Text, "{name}");
        }
    }
}
