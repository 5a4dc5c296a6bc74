//! `caas top [--window 1m] [--once]`: the caller's apps by traffic over the last window, as the
//! gateways counted it (`GET /v1/traffic`), busiest first: requests per second, answers by
//! status class, median and 99th percentile latency, response bytes per second. Refreshed every
//! [`EVERY`] until Ctrl-C; `--once` prints it once. `-o json` prints the API's answer (once, or
//! one line per refresh).

use crate::cli::Output;
use crate::client::Client;
use crate::output::{out, outln};
use crate::stream;
use crate::table::Table;
use anyhow::{Context, Result};
use caas_types::api::TrafficOverview;
use reqwest::Method;
use std::io::IsTerminal as _;
use std::pin::pin;
use std::time::Duration;

/// Time between two refreshes.
pub const EVERY: Duration = Duration::from_secs(2);

/// Prints the table once, or every [`EVERY`] until Ctrl-C.
pub async fn top(client: &Client, out: Output, window: &str, once: bool) -> Result<()> {
    if once {
        let v = fetch(client, window).await?;
        return print(out, &v, false, window);
    }
    let clear = out == Output::Table && std::io::stdout().is_terminal();
    let mut interrupt = pin!(stream::ctrl_c());
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut interrupt => return Ok(()),
            _ = tick.tick() => {}
        }
        let v = tokio::select! {
            () = &mut interrupt => return Ok(()),
            v = fetch(client, window) => v?,
        };
        if clear {
            // Home, clear the screen: the table replaces the last one.
            out!("\x1b[H\x1b[2J");
        }
        print(out, &v, true, window)?;
    }
}

async fn fetch(client: &Client, window: &str) -> Result<serde_json::Value> {
    let req = client
        .request(Method::GET, "/v1/traffic")
        .query(&[("window", window)]);
    client
        .send(req)
        .await?
        .json()
        .await
        .context("the admin API answered with unexpected JSON")
}

fn print(out: Output, v: &serde_json::Value, live: bool, window: &str) -> Result<()> {
    match out {
        Output::Json if live => outln!("{v}"),
        Output::Json => outln!("{}", serde_json::to_string_pretty(v)?),
        Output::Table => {
            let o: TrafficOverview = serde_json::from_value(v.clone())
                .context("the admin API answered with unexpected JSON")?;
            if live {
                outln!(
                    "caas top: traffic over the last {window}, every {}s (Ctrl-C to stop)\n",
                    EVERY.as_secs()
                );
            }
            out!("{}", table(&o).render());
        }
    }
    Ok(())
}

/// One line per app: its traffic over the window.
fn table(o: &TrafficOverview) -> Table {
    let mut t = Table::new(&[
        "APP", "REQUESTS", "RPS", "2XX", "4XX", "5XX", "P50", "P99", "OUT/S",
    ]);
    let window = f64::from(o.window_s.max(1));
    for line in &o.apps {
        let s = &line.stats;
        t.row(vec![
            line.app.to_string(),
            s.requests.to_string(),
            format!("{:.1}", s.rps),
            s.status.success.to_string(),
            s.status.client_error.to_string(),
            s.status.server_error.to_string(),
            millis(s.p50_ms),
            millis(s.p99_ms),
            bytes_per_s(s.bytes_out as f64 / window),
        ]);
    }
    t
}

/// A latency for people: `0.42ms`, `12.5ms`, `1.20s`; `-` for none.
fn millis(ms: Option<f64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms >= 1000.0 => format!("{:.2}s", ms / 1000.0),
        Some(ms) if ms >= 10.0 => format!("{ms:.1}ms"),
        Some(ms) => format!("{ms:.2}ms"),
    }
}

/// A rate for people, in powers of 1024: `512B/s`, `1.5KiB/s`, `3.2MiB/s`.
fn bytes_per_s(b: f64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = b;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0}B/s")
    } else {
        format!("{v:.1}{}/s", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_each_app_busiest_first_as_the_api_sent_it() {
        let o: TrafficOverview = serde_json::from_value(serde_json::json!({
            "window_s": 60,
            "apps": [
                {"app": "hello", "requests": 1200, "rps": 20.0,
                 "status": {"1xx": 0, "2xx": 1190, "3xx": 0, "4xx": 7, "5xx": 3},
                 "p50_ms": 0.412, "p99_ms": 14.25, "bytes_in": 0, "bytes_out": 3_145_728},
                {"app": "idle", "requests": 0, "rps": 0.0,
                 "status": {"1xx": 0, "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0},
                 "p50_ms": null, "p99_ms": null, "bytes_in": 0, "bytes_out": 0}
            ]
        }))
        .expect("the API's shape");
        assert_eq!(
            table(&o).render(),
            "APP     REQUESTS   RPS    2XX    4XX   5XX   P50      P99      OUT/S\n\
             hello   1200       20.0   1190   7     3     0.41ms   14.2ms   51.2KiB/s\n\
             idle    0          0.0    0      0     0     -        -        0B/s\n"
        );
    }

    #[test]
    fn latencies_and_rates_read_for_people() {
        assert_eq!(millis(Some(2500.0)), "2.50s");
        assert_eq!(bytes_per_s(512.0), "512B/s");
        assert_eq!(bytes_per_s(3.5 * 1024.0 * 1024.0), "3.5MiB/s");
    }
}
