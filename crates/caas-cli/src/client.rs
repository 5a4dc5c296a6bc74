//! The admin API over HTTP: JSON in, JSON out, `{"error": {...}}` turned into one readable error.

use crate::config::Settings;
use anyhow::{anyhow, Context, Result};
use caas_types::api::ErrorBody;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A client of one admin API.
pub struct Client {
    http: reqwest::Client,
    settings: Settings,
}

impl Client {
    /// A client for `settings`.
    pub fn new(settings: Settings) -> Result<Client> {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .user_agent(concat!("caas-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        Ok(Client { http, settings })
    }

    /// A request to `path` (which starts with `/`).
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let req = self
            .http
            .request(method, format!("{}{path}", self.settings.api));
        match &self.settings.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Sends `req` and returns the response if it succeeded, or the API's error as an error.
    pub async fn send(&self, req: RequestBuilder) -> Result<Response> {
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                anyhow!(
                    "cannot reach the admin API at {}: is the scheduler running? (scripts/up starts it)",
                    self.settings.api
                )
            } else {
                anyhow!("request to the admin API failed: {e}")
            }
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(api_error(resp).await)
    }

    /// GET `path` as JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let resp = self.send(self.request(Method::GET, path)).await?;
        resp.json()
            .await
            .context("the admin API answered with unexpected JSON")
    }

    /// POST `body` as JSON to `path`; the answer as `T`.
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let resp = self
            .send(self.request(Method::POST, path).json(body))
            .await?;
        resp.json()
            .await
            .context("the admin API answered with unexpected JSON")
    }

    /// `method` `path` with a JSON body; the JSON answer (or `null` for an empty one).
    pub async fn call<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<serde_json::Value> {
        let mut req = self.request(method, path);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = self.send(req).await?;
        let bytes = resp
            .bytes()
            .await
            .context("reading the admin API's answer")?;
        if bytes.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&bytes).context("the admin API answered with unexpected JSON")
    }
}

/// Turns an error response into one line: the API's message, or the status if the body is not ours.
pub async fn api_error(resp: Response) -> anyhow::Error {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => anyhow!("{} ({})", body.error.message, body.error.code),
        Err(_) if status == StatusCode::UNAUTHORIZED => {
            anyhow!("unauthorized: set CAAS_TOKEN or --token")
        }
        Err(_) => anyhow!("the admin API answered {status}"),
    }
}
