//! `/v1/apps/{app}/config` and `/v1/apps/{app}/restart`: read and change an app's config (a
//! change is a new config version and a rolling restart of the app's running deployments), and
//! restart an app rolling. Both answer when the roll is done, as JSON or, when asked for, as an
//! NDJSON progress stream like a deploy's.

use super::apps::visible_app;
use super::auth::Principal;
use super::deployments::run_with_progress;
use super::error::ApiResult;
use super::{ApiJson, AppState};
use crate::events::EventType;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use caas_types::api::{self, ConfigPatch};

/// `GET /v1/apps/{app}/config`: `{"version", "vars", "secrets": [names]}`; version 0 for an
/// app never configured. Secret values are never answered.
pub async fn show(
    State(state): State<AppState>,
    who: Principal,
    Path(app): Path<String>,
) -> ApiResult<Json<api::AppConfig>> {
    let app = visible_app(&state, &who, &app).await?;
    Ok(Json(state.control.app_configs.get(&app.id).await?))
}

/// `PATCH /v1/apps/{app}/config` `{"vars": {"K": "V", "OLD": null}, "secrets": {...}}`: a new
/// config version, then a rolling restart of the app's running deployments; answers the config
/// once the roll is done. Bad input is a 400 before anything is written; a patch that changes
/// nothing answers the config as it is (no new version, no restart).
pub async fn update(
    State(state): State<AppState>,
    who: Principal,
    Path(app): Path<String>,
    headers: HeaderMap,
    ApiJson(patch): ApiJson<ConfigPatch>,
) -> ApiResult<Response> {
    let app = visible_app(&state, &who, &app).await?;
    // Cheap checks first, so bad input is a plain 400 even when progress is streamed.
    state.control.app_configs.check(&patch)?;
    let configs = state.control.app_configs.clone();
    let deployments = state.control.deployments.clone();
    let releases = state.control.releases.clone();
    let by = super::releases::created_by(&who);
    run_with_progress(
        &headers,
        StatusCode::OK,
        "config",
        move |progress| async move {
            let _app = deployments.lock_app(&app.id).await;
            let (config, changed) = configs.change(&app.id, &patch).await?;
            if !changed {
                progress.step(None, "unchanged", "the config already holds these values");
                return Ok(config);
            }
            progress.step(
                None,
                "config",
                format!("config version {} saved; restarting", config.version),
            );
            // Names only: a secret's value never reaches an event.
            let changed = serde_json::json!({"config_version": config.version, "by": by,
                "vars": patch.vars.keys().collect::<Vec<_>>(),
                "secrets": patch.secrets.keys().collect::<Vec<_>>()});
            let events = deployments.events();
            events
                .emit(EventType::ConfigChanged, Some(&app.id), changed)
                .await;
            // A config change is a release of every running deployment with the new config.
            let recorded = releases
                .record_config_change(&app.id, config.version, &by)
                .await?;
            if !recorded.is_empty() {
                progress.step(
                    None,
                    "released",
                    format!("release(s) {recorded:?} recorded"),
                );
            }
            deployments.restart(&app.id, &progress).await?;
            Ok(config)
        },
    )
    .await
}

/// `POST /v1/apps/{app}/restart` (no body): replaces every running instance, one at a time, a
/// new one healthy and registered before the old one drains; answers when all are replaced.
pub async fn restart(
    State(state): State<AppState>,
    who: Principal,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let app = visible_app(&state, &who, &app).await?;
    let deployments = state.control.deployments.clone();
    run_with_progress(
        &headers,
        StatusCode::OK,
        "restart",
        move |progress| async move {
            let _app = deployments.lock_app(&app.id).await;
            let restarted = deployments.restart(&app.id, &progress).await?;
            Ok(api::Restarted {
                restarted,
                deployments: deployments.deployments_of(&app.id).await?,
            })
        },
    )
    .await
}
