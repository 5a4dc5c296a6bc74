//! `caas events` and `caas webhooks`: what happened to the caller's apps (a page, or following
//! new events as they come), and the webhooks events are POSTed to. A webhook's secret is read
//! from standard input only, never from the command line.

use crate::app_config::read_secret;
use crate::cli::{Output, WebhooksCmd};
use crate::client::Client;
use crate::commands::print_json;
use crate::ndjson::Lines;
use crate::output::{out, outln};
use crate::table::Table;
use anyhow::{bail, Context, Result};
use caas_types::api::{CreateWebhook, SecretValue, Webhook};
use caas_types::AppId;
use reqwest::Method;
use serde_json::Value;

/// `caas events [-f] [--app APP] [--limit N] [--before ID]`
pub async fn events(
    client: &Client,
    out: Output,
    follow: bool,
    app: Option<AppId>,
    limit: u32,
    before: Option<i64>,
) -> Result<()> {
    let mut query = vec![format!("limit={limit}")];
    if follow {
        query.push("follow=true".into());
    }
    if let Some(app) = &app {
        query.push(format!("app={app}"));
    }
    if let Some(before) = before {
        query.push(format!("before={before}"));
    }
    let path = format!("/v1/events?{}", query.join("&"));
    let mut resp = client.send(client.request(Method::GET, &path)).await?;
    if !follow {
        let text = resp.text().await.context("reading the events")?;
        let mut lines: Vec<&str> = text.lines().collect();
        // People read a log oldest first, the newest last; scripts get the API's order.
        if out == Output::Table {
            lines.reverse();
        }
        for line in lines {
            print_line(out, line)?;
        }
        return Ok(());
    }
    let mut lines = Lines::default();
    while let Some(chunk) = resp.chunk().await.context("reading the event stream")? {
        lines.push(&chunk, |line| {
            print_line(out, String::from_utf8_lossy(line).trim_end())
        })?;
    }
    bail!("the event stream ended (the scheduler stopped or failed)")
}

fn print_line(out: Output, line: &str) -> Result<()> {
    if line.is_empty() {
        return Ok(());
    }
    if out == Output::Json {
        outln!("{line}");
        return Ok(());
    }
    let ev: Value =
        serde_json::from_str(line).context("the admin API sent an event that is not JSON")?;
    outln!("{}", human(&ev));
    Ok(())
}

/// One event for people: time, type, app, then its other fields as `key=value`.
fn human(ev: &Value) -> String {
    let s = |k: &str| ev.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
    let mut line = format!("{}  {:<20} {}", s("ts"), s("type"), s("app"));
    if let Some(fields) = ev.as_object() {
        for (k, v) in fields {
            if matches!(k.as_str(), "id" | "ts" | "type" | "app") {
                continue;
            }
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            line.push_str(&format!("  {k}={v}"));
        }
    }
    line
}

/// `caas webhooks ...`
pub async fn webhooks(client: &Client, out: Output, cmd: WebhooksCmd) -> Result<()> {
    match cmd {
        WebhooksCmd::Ls => {
            let list: Vec<Webhook> = client.get("/v1/webhooks").await?;
            if out == Output::Json {
                return print_json(&list);
            }
            out!("{}", webhook_table(&list).render());
            Ok(())
        }
        WebhooksCmd::Add {
            url,
            events,
            secret_stdin,
        } => {
            if !secret_stdin {
                bail!("the signing secret is read from standard input: pass --secret-stdin");
            }
            let secret = read_secret(std::io::stdin().lock())?;
            let req = CreateWebhook {
                url,
                events,
                secret: SecretValue::new(secret),
            };
            let v = client
                .call(Method::POST, "/v1/webhooks", Some(&req))
                .await?;
            let hook: Webhook =
                serde_json::from_value(v).context("the admin API answered with unexpected JSON")?;
            if out == Output::Json {
                return print_json(&hook);
            }
            outln!("added webhook {} → {}", hook.id, hook.url);
            Ok(())
        }
        WebhooksCmd::Rm { id } => {
            client
                .call::<()>(Method::DELETE, &format!("/v1/webhooks/{id}"), None)
                .await?;
            if out == Output::Table {
                outln!("removed webhook {id}");
            }
            Ok(())
        }
    }
}

fn webhook_table(list: &[Webhook]) -> Table {
    let mut t = Table::new(&["ID", "URL", "EVENTS", "CREATED"]);
    for h in list {
        t.row(vec![
            h.id.clone(),
            h.url.clone(),
            h.events.join(","),
            h.created_at.clone(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_reads_as_one_line() {
        let ev = serde_json::json!({"id": 3, "ts": "2026-01-01T00:00:00.000Z",
            "type": "deploy.started", "app": "shop", "version": "v1", "deployment": 7});
        assert_eq!(
            human(&ev),
            "2026-01-01T00:00:00.000Z  deploy.started       shop  deployment=7  version=v1"
        );
    }

    #[test]
    fn the_webhook_table_shows_no_secret() {
        let t = webhook_table(&[Webhook {
            id: "wh_1".into(),
            url: "https://h.example/x".into(),
            events: vec!["deploy.failed".into(), "app.restarted".into()],
            created_at: "2026-01-01T00:00:00.000Z".into(),
        }]);
        assert!(t.render().contains("deploy.failed,app.restarted"));
    }
}
