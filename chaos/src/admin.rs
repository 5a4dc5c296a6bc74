//! The admin API of the cluster's schedulers, as a client with several addresses uses it: a
//! call goes to the first scheduler that answers.

use anyhow::{bail, Context, Result};
use caas_types::api::{Deployment, Host, Instance};
use reqwest::Method;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// The schedulers' admin APIs and the operator token.
#[derive(Debug, Clone)]
pub struct Admin {
    apis: Vec<String>,
    token: String,
    client: reqwest::Client,
}

impl Admin {
    /// A client of `apis` (base URLs) with `token`.
    pub fn new(apis: Vec<String>, token: String) -> Result<Admin> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(2))
            .build()?;
        Ok(Admin {
            apis,
            token,
            client,
        })
    }

    /// Which scheduler leads now (its index), if one says so.
    pub async fn leader(&self) -> Option<usize> {
        for (i, api) in self.apis.iter().enumerate() {
            let health = self
                .client
                .get(format!("{api}/healthz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            let Ok(resp) = health else { continue };
            let Ok(v) = resp.json::<serde_json::Value>().await else {
                continue;
            };
            if v.get("leader").and_then(serde_json::Value::as_bool) == Some(true) {
                return Some(i);
            }
        }
        None
    }

    /// The operator token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The base URL of scheduler `i`.
    pub fn api(&self, i: usize) -> &str {
        &self.apis[i]
    }

    /// GET `path` from the first scheduler that answers.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let mut last = None;
        for api in &self.apis {
            match self.call(api, Method::GET, path, None).await {
                Ok(v) => return Ok(v),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no scheduler configured")))
    }

    /// `method` `path` with `body` to scheduler `api`, its answer parsed as `T`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        api: &str,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T> {
        let mut req = self
            .client
            .request(method.clone(), format!("{api}{path}"))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {api}{path}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{method} {api}{path}: HTTP {status}: {}", text.trim());
        }
        let text = if text.is_empty() { "null".into() } else { text };
        serde_json::from_str(&text).with_context(|| format!("{method} {api}{path}: bad JSON"))
    }

    /// POSTs a deploy `body` to `url` asking for its NDJSON progress; `seen` fires at the first
    /// line holding `marker`. True if the stream ended with its `done` line.
    pub fn deploy_streamed(
        &self,
        url: String,
        body: serde_json::Value,
        marker: &'static str,
        seen: tokio::sync::oneshot::Sender<()>,
    ) -> impl std::future::Future<Output = bool> + Send + 'static {
        let req = self
            .client
            .post(url)
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, "application/x-ndjson")
            .json(&body);
        async move {
            let Ok(mut resp) = req.send().await else {
                return false;
            };
            if !resp.status().is_success() {
                return false;
            }
            let mut seen = Some(seen);
            let mut text = String::new();
            loop {
                match resp.chunk().await {
                    Ok(Some(chunk)) => {
                        text.push_str(&String::from_utf8_lossy(&chunk));
                        if text.contains(marker) {
                            if let Some(tx) = seen.take() {
                                let _ = tx.send(());
                            }
                        }
                    }
                    Ok(None) => return text.contains("\"event\":\"done\""),
                    Err(_) => return false,
                }
            }
        }
    }

    /// Every instance of `app`.
    pub async fn instances(&self, app: &str) -> Result<Vec<Instance>> {
        self.get(&format!("/v1/apps/{app}/instances")).await
    }

    /// Every deployment of `app`.
    pub async fn deployments(&self, app: &str) -> Result<Vec<Deployment>> {
        self.get(&format!("/v1/apps/{app}/deployments")).await
    }

    /// Every host.
    pub async fn hosts(&self) -> Result<Vec<Host>> {
        self.get("/v1/hosts").await
    }
}
