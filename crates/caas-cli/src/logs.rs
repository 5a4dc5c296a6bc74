//! `caas logs [-f] [--tail N] [--since TIME] APP`: an app's lines, every instance merged in time
//! order, as `ts instance stream line` (or, with `-o json`, the API's NDJSON lines as they come).

use crate::cli::{LogsArgs, Output};
use crate::client::Client;
use crate::ndjson::Lines;
use crate::output;
use anyhow::{Context, Result};
use caas_types::api::LogLine;
use futures::StreamExt;
use reqwest::Method;

/// Prints the lines until the answer ends (at once without `--follow`; with it, when the app
/// is deleted or the connection drops).
pub async fn logs(client: &Client, out: Output, args: LogsArgs) -> Result<()> {
    let mut query: Vec<(&str, String)> = vec![("tail", args.tail.to_string())];
    if args.follow {
        query.push(("follow", "true".into()));
    }
    if let Some(since) = args.since {
        query.push(("since", since.to_string()));
    }
    let req = client
        .request(Method::GET, &format!("/v1/apps/{}/logs", args.app))
        .query(&query);
    let resp = client.send(req).await?;
    let mut body = resp.bytes_stream();
    let mut lines = Lines::default();
    let mut printed: Vec<u8> = Vec::new();
    while let Some(chunk) = body.next().await {
        // Every complete line of what came, printed with one write: a page of thousands of
        // lines costs one system call, not one per line.
        lines.push(&chunk.context("the log stream broke off")?, |raw| {
            render(out, raw, &mut printed)
        })?;
        if !printed.is_empty() {
            output::write_bytes(&printed)?;
            printed.clear();
        }
    }
    Ok(())
}

/// Appends one NDJSON line of the API to `printed`: as it came with `-o json`, else as text.
fn render(out: Output, raw: &[u8], printed: &mut Vec<u8>) -> Result<()> {
    if out == Output::Json {
        printed.extend_from_slice(raw);
    } else {
        let l: LogLine =
            serde_json::from_slice(raw).context("unexpected line in the log stream")?;
        printed.extend_from_slice(human(&l).as_bytes());
    }
    printed.push(b'\n');
    Ok(())
}

/// `ts instance stream line`.
fn human(l: &LogLine) -> String {
    format!("{} {} {} {}", l.ts, l.instance, l.stream.as_str(), l.line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_prints_as_ts_instance_stream_text() {
        let l: LogLine = serde_json::from_str(
            r#"{"ts":"2026-01-02T03:04:05.000000001Z","instance":"shop-abc","version":"v1","stream":"stderr","line":"boom  x"}"#,
        )
        .expect("valid line");
        assert_eq!(
            human(&l),
            "2026-01-02T03:04:05.000000001Z shop-abc stderr boom  x"
        );
    }
}
