//! The admin API (axum): the brief's v1 endpoints with bearer-token auth, body limits and
//! `{"error": {"code", "message"}}` errors. `router(state)` builds it, so tests drive it with
//! `oneshot` or over a real socket.

mod apps;
pub mod auth;
pub mod auth_limit;
mod config;
mod deployments;
pub mod error;
mod events;
mod gateway_demand;
mod hosts;
mod image_push_hook;
mod jobs;
mod logs;
mod ops;
mod registry_token;
mod releases;
mod schedules;
mod tenants;
#[cfg(test)]
mod tests;
mod traffic;
mod ui;

use crate::config::Config;
use crate::control::ControlPlane;
use crate::store::Store;
use axum::extract::{FromRequest, Request};
use axum::routing::{delete, get, post, put};
use axum::Router;
use error::ApiError;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    /// Configuration.
    pub config: Arc<Config>,
    /// The database.
    pub store: Store,
    /// Every part of the scheduler.
    pub control: Arc<ControlPlane>,
    /// SHA-256 (hex) of the operator token.
    pub operator_token_hash: Arc<str>,
    /// SHA-256 (hex) of the registry's notification token; `None`: notifications are off.
    pub registry_hook_token_hash: Option<Arc<str>>,
    /// SHA-256 (hex) of the gateways' token; `None`: demand reports are off.
    pub gateway_token_hash: Option<Arc<str>>,
    /// The registry token signer; `None`: `GET /v1/registry/token` is off (set by
    /// `Scheduler::start` from `--registry-token-key`).
    pub registry_tokens: Option<Arc<crate::registry_token::RegistryTokens>>,
    /// Failed logins per client address (`--auth-failures-per-minute`).
    pub auth_failures: Arc<auth_limit::AuthFailures>,
}

impl AppState {
    /// State for the router.
    pub fn new(control: Arc<ControlPlane>) -> AppState {
        let config = control.config.clone();
        let operator_token_hash = auth::token_hash(&config.token).into();
        let registry_hook_token_hash = optional_token_hash(config.registry_hook_token.as_deref());
        let gateway_token_hash = optional_token_hash(config.gateway_token.as_deref());
        let auth_failures = Arc::new(auth_limit::AuthFailures::new(
            config.auth_failures_per_minute,
        ));
        AppState {
            store: control.store.clone(),
            config,
            control,
            operator_token_hash,
            registry_hook_token_hash,
            gateway_token_hash,
            registry_tokens: None,
            auth_failures,
        }
    }
}

/// The hash of a token that may be unset or empty (the feature it opens is then off).
fn optional_token_hash(token: Option<&str>) -> Option<Arc<str>> {
    token
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| auth::token_hash(t).into())
}

/// The admin API's router.
pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/apps", get(apps::list).post(apps::create))
        .route(
            "/v1/apps/{app}",
            get(apps::show).patch(apps::update).delete(apps::remove),
        )
        .route("/v1/apps/{app}/tags", get(apps::tags))
        .route("/v1/apps/{app}/releases", get(releases::list))
        .route("/v1/apps/{app}/rollback", post(releases::rollback))
        .route(
            "/v1/apps/{app}/config",
            get(config::show).patch(config::update),
        )
        .route("/v1/apps/{app}/restart", post(config::restart))
        .route("/v1/apps/{app}/logs", get(logs::logs))
        .route("/v1/apps/{app}/traffic", get(traffic::series))
        .route("/v1/traffic", get(traffic::overview))
        .route("/v1/apps/{app}/jobs", get(jobs::list).post(jobs::create))
        .route(
            "/v1/apps/{app}/jobs/{id}",
            get(jobs::show).delete(jobs::remove),
        )
        .route("/v1/apps/{app}/jobs/{id}/logs", get(jobs::logs))
        .route("/v1/apps/{app}/jobs/{id}/stdin", put(jobs::stdin))
        .route(
            "/v1/apps/{app}/schedules",
            get(schedules::list).post(schedules::create),
        )
        .route("/v1/apps/{app}/schedules/{name}", delete(schedules::remove))
        .route(
            "/v1/workflows",
            get(jobs::list_workflows).post(jobs::create_workflow),
        )
        .route(
            "/v1/workflows/{id}",
            get(jobs::show_workflow).delete(jobs::remove_workflow),
        )
        .route("/v1/workflows/{id}/output", get(jobs::workflow_output))
        .route("/v1/workflows/{id}/steps/{step}/logs", get(jobs::step_logs))
        .route("/v1/workflows/{id}/stdin", put(jobs::workflow_stdin))
        .route("/v1/registry/events", post(image_push_hook::events))
        .route("/v1/registry/token", get(registry_token::token))
        .route(
            "/v1/gateway/demand",
            post(gateway_demand::report).layer(axum::extract::DefaultBodyLimit::max(
                max_body.max(gateway_demand::MAX_BODY_BYTES),
            )),
        )
        .route("/v1/apps/{app}/domains", post(apps::add_domain))
        .route(
            "/v1/apps/{app}/domains/{domain}",
            delete(apps::remove_domain),
        )
        .route("/v1/apps/{app}/instances", get(deployments::instances))
        .route("/v1/apps/{app}/instances/{id}", delete(deployments::kill))
        .route(
            "/v1/apps/{app}/deployments",
            post(deployments::create).get(deployments::list),
        )
        .route(
            "/v1/apps/{app}/deployments/{version}",
            put(deployments::scale)
                .get(deployments::show)
                .delete(deployments::remove),
        )
        .route("/v1/events", get(events::list))
        .route(
            "/v1/webhooks",
            get(events::list_webhooks).post(events::create_webhook),
        )
        .route("/v1/webhooks/{id}", delete(events::delete_webhook))
        .route("/v1/hosts", get(hosts::list).post(hosts::create))
        .route(
            "/v1/hosts/{name}",
            get(hosts::show).patch(hosts::update).delete(hosts::remove),
        )
        .route("/v1/tenants", get(tenants::list).post(tenants::create))
        .route(
            "/v1/tenants/{name}",
            get(tenants::show)
                .patch(tenants::update)
                .delete(tenants::remove),
        )
        .route("/v1/tenants/{name}/token", post(tenants::rotate_token))
        .route(
            "/v1/blacklist",
            get(ops::blacklist)
                .post(ops::blacklist_add)
                .put(ops::blacklist_set)
                .delete(ops::blacklist_remove),
        )
        // The web console: embedded static files, no token (the page asks for one).
        .merge(ui::routes())
        .fallback(|| async { ApiError::NotFound("route".into()) })
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// `Json` whose rejections are [`ApiError`]s (400/413 with our error body, never axum's text).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(v) = axum::Json::<T>::from_request(req, state).await?;
        Ok(ApiJson(v))
    }
}

/// Parses a path segment into a validated type, as a 400 (not axum's plain-text 400).
pub fn parse_path<T>(what: &str, raw: &str) -> Result<T, ApiError>
where
    T: std::str::FromStr<Err = caas_types::Error>,
{
    raw.parse()
        .map_err(|e: caas_types::Error| ApiError::BadRequest(format!("{what}: {e}")))
}
