//! `/v1/apps/{app}/schedules`: an app's cron schedules (each run is a job of the app).

use super::apps::visible_app;
use super::auth::Principal;
use super::error::ApiResult;
use super::{ApiJson, AppState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use caas_types::api::{self, CreateSchedule};

/// `POST /v1/apps/{app}/schedules` → 201 with the schedule and its next due time.
pub async fn create(
    State(state): State<AppState>,
    who: Principal,
    Path(app): Path<String>,
    ApiJson(req): ApiJson<CreateSchedule>,
) -> ApiResult<(StatusCode, Json<api::Schedule>)> {
    let app = visible_app(&state, &who, &app).await?;
    let schedule = state.control.schedules.create(&app.id, &req).await?;
    Ok((StatusCode::CREATED, Json(schedule)))
}

/// `GET /v1/apps/{app}/schedules` → by name, each with `next_run_at` and its last runs.
pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<api::Schedule>>> {
    let app = visible_app(&state, &who, &app).await?;
    Ok(Json(state.control.schedules.list(&app.id).await?))
}

/// `DELETE /v1/apps/{app}/schedules/{name}` → 204.
pub async fn remove(
    State(state): State<AppState>,
    who: Principal,
    Path((app, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let app = visible_app(&state, &who, &app).await?;
    state.control.schedules.delete(&app.id, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
