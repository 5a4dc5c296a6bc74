//! `POST /v1/registry/events`: the Docker registry's notifications. Each tagged manifest push to
//! an app's repository is recorded (`app_tags`); for an app with auto-deploy on, a roll to the
//! pushed tag starts in the background, so the registry gets its 200 at once.
//!
//! A push is taken only from an actor allowed to push that repository (the platform's registry
//! user, `operator`, or `tenant:{owner}` as registry tokens name them:
//! `registry_token::may_push`); others are counted as `not_allowed` and change nothing.
//!
//! Authenticated by its own bearer token (`--registry-hook-token`), never by the operator's or a
//! tenant's; without that setting the endpoint does not exist (404).

use super::auth::{bearer_hash, same_hash};
use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::image_push::{self, Classified};
use crate::metrics::DeployMetrics;
use crate::Error;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Serialize;

/// What became of the events of one delivery (for the registry's log and for tests).
#[derive(Debug, Default, Serialize)]
pub struct EventsReport {
    /// Tagged pushes recorded.
    pub recorded: u32,
    /// Events that are not a tagged manifest push.
    pub ignored: u32,
    /// Tagged pushes with a repository, tag or digest caas cannot accept.
    pub invalid: u32,
    /// Tagged pushes to a repository that is no app.
    pub unknown_app: u32,
    /// Tagged pushes by an actor that may not push that repository (neither the platform's
    /// registry user, the operator, nor the tenant owning the app): not recorded, no roll.
    pub not_allowed: u32,
    /// Rolls started for apps with auto-deploy on.
    pub auto_deploys: u32,
}

/// Whether `actor` (the registry's `actor.name`) may push to `app`'s repository.
fn may_push(state: &AppState, actor: Option<&str>, app: &crate::store::AppRow) -> bool {
    crate::registry_token::may_push(
        actor,
        app.tenant.as_ref(),
        state.config.registry_user.as_deref(),
    )
}

/// `POST /v1/registry/events` → 200 with an [`EventsReport`]. Any content type is accepted
/// (the registry sends `application/vnd.docker.distribution.events.v1+json`).
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<EventsReport>> {
    let Some(expected) = state.registry_hook_token_hash.as_deref() else {
        return Err(ApiError::NotConfigured(
            "registry notifications are not configured".into(),
        ));
    };
    if !same_hash(&bearer_hash(&headers)?, expected) {
        return Err(ApiError::Unauthorized);
    }
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge
        } else {
            ApiError::BadRequest("could not read the request body".into())
        }
    })?;
    let envelope = image_push::parse(&body).map_err(ApiError::BadRequest)?;
    let metrics = &state.control.metrics;
    let mut report = EventsReport::default();
    for ev in &envelope.events {
        let id = ev.id.as_deref().unwrap_or("");
        let new = match image_push::classify(ev) {
            Classified::Push(new) => new,
            Classified::Ignored => {
                report.ignored += 1;
                DeployMetrics::inc(&metrics.registry_ignored);
                continue;
            }
            Classified::Invalid(why) => {
                tracing::info!(event = id, "registry push ignored: {why}");
                report.invalid += 1;
                DeployMetrics::inc(&metrics.registry_invalid);
                continue;
            }
        };
        let recorded = match state.store.get_app(&new.app).await {
            Ok(app) if !may_push(&state, new.pushed_by.as_deref(), &app) => {
                tracing::warn!(event = id, app = %new.app, tag = %new.tag,
                    actor = new.pushed_by.as_deref().unwrap_or(""),
                    "push by an actor not allowed to push this repository ignored");
                report.not_allowed += 1;
                DeployMetrics::inc(&metrics.registry_not_allowed);
                continue;
            }
            Ok(app) => state.store.record_tag(&new).await.map(|()| app),
            Err(e) => Err(e),
        };
        let app = match recorded {
            Ok(app) => app,
            Err(Error::NotFound(_)) => {
                tracing::info!(event = id, app = %new.app, tag = %new.tag, "push to a repository that is no app");
                report.unknown_app += 1;
                DeployMetrics::inc(&metrics.registry_unknown_app);
                continue;
            }
            Err(e) => {
                // Not 2xx: the registry delivers the whole envelope again later; recording is
                // an upsert, so the events recorded before this one are harmless to repeat.
                DeployMetrics::inc(&metrics.registry_failed);
                return Err(e.into());
            }
        };
        tracing::info!(event = id, app = %new.app, tag = %new.tag, digest = %new.digest, "tag pushed");
        report.recorded += 1;
        DeployMetrics::inc(&metrics.registry_recorded);
        if app.auto_deploy {
            report.auto_deploys += 1;
            state.control.autodeploy.pushed(new.app, new.tag);
        }
    }
    Ok(Json(report))
}
