//! `/v1/apps/{app}/jobs` and `/v1/workflows`: run-to-completion work. Create answers once the
//! containers run; output and step logs are `text/plain` streams (`?follow=true` until the
//! end); stdin is a streamed request body of any type and size (no body limit: it is a
//! stream, with back-pressure to the client); `DELETE` cancels or forgets.

use super::apps::visible_app;
use super::auth::Principal;
use super::error::{ApiError, ApiResult};
use super::{ApiJson, AppState};
use crate::jobs::view::{self, parse_job_ref, parse_workflow_ref};
use crate::workflows;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use caas_deployer::TaskStdin;
use caas_types::api::{self, CreateJob, CreateWorkflow};
use futures::stream::BoxStream;
use futures::StreamExt;
use serde::Deserialize;

/// `?limit=&before=` of the job and workflow lists.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    limit: Option<u32>,
    before: Option<String>,
}

/// `?follow=` of output and log reads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Follow {
    #[serde(default)]
    follow: bool,
}

fn page(q: Result<Query<Page>, QueryRejection>) -> ApiResult<Page> {
    q.map(|Query(p)| p).map_err(|_| {
        ApiError::BadRequest("expected ?limit=N&before=ID with a whole number and an id".into())
    })
}

fn follow(q: Result<Query<Follow>, QueryRejection>) -> ApiResult<bool> {
    q.map(|Query(f)| f.follow)
        .map_err(|_| ApiError::BadRequest("expected ?follow=true or ?follow=false".into()))
}

fn job_id(raw: &str) -> ApiResult<i64> {
    parse_job_ref(raw).ok_or_else(|| ApiError::NotFound(format!("job {raw:?}")))
}

fn workflow_id(raw: &str) -> ApiResult<i64> {
    parse_workflow_ref(raw).ok_or_else(|| ApiError::NotFound(format!("workflow {raw:?}")))
}

/// A `text/plain` answer streaming `body` until it ends or the scheduler shuts down.
fn text_stream(state: &AppState, body: BoxStream<'static, std::io::Result<Bytes>>) -> Response {
    let mut closing = state.control.closing();
    let until_closing = async move {
        let _ = closing.wait_for(|c| *c).await;
    };
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(body.take_until(until_closing)),
    )
        .into_response()
}

/// Copies a request body into a task's stdin with back-pressure, then closes it (end of file).
async fn feed(mut stdin: TaskStdin, body: Body) -> ApiResult<StatusCode> {
    let mut frames = body.into_data_stream();
    while let Some(chunk) = frames.next().await {
        let chunk = chunk.map_err(|_| {
            ApiError::BadRequest("the request body broke off; stdin was closed".into())
        })?;
        if chunk.is_empty() {
            continue;
        }
        stdin.send(chunk).await.map_err(|_| {
            ApiError::Conflict("it stopped reading its stdin (it ended) before the body did".into())
        })?;
    }
    stdin.close();
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/apps/{app}/jobs` → 201 with the job, once its container runs.
pub async fn create(
    State(state): State<AppState>,
    who: Principal,
    Path(app): Path<String>,
    ApiJson(req): ApiJson<CreateJob>,
) -> ApiResult<(StatusCode, Json<api::Job>)> {
    let app = visible_app(&state, &who, &app).await?;
    let row = state.control.jobs.create(&app.id, &req).await?;
    Ok((StatusCode::CREATED, Json(view::job(&row))))
}

/// `GET /v1/apps/{app}/jobs?limit=&before=` → newest first.
pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    Path(app): Path<String>,
    q: Result<Query<Page>, QueryRejection>,
) -> ApiResult<Json<Vec<api::Job>>> {
    let p = page(q)?;
    let app = visible_app(&state, &who, &app).await?;
    let rows = state
        .control
        .jobs
        .list(&app.id, p.limit, p.before.as_deref())
        .await?;
    Ok(Json(rows.iter().map(view::job).collect()))
}

/// `GET /v1/apps/{app}/jobs/{id}`
pub async fn show(
    State(state): State<AppState>,
    who: Principal,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult<Json<api::Job>> {
    let app = visible_app(&state, &who, &app).await?;
    let row = state.control.jobs.get(&app.id, job_id(&id)?).await?;
    Ok(Json(view::job(&row)))
}

/// `GET /v1/apps/{app}/jobs/{id}/logs?follow=` → `text/plain`, stdout and stderr as written.
pub async fn logs(
    State(state): State<AppState>,
    who: Principal,
    Path((app, id)): Path<(String, String)>,
    q: Result<Query<Follow>, QueryRejection>,
) -> ApiResult<Response> {
    let follow = follow(q)?;
    let app = visible_app(&state, &who, &app).await?;
    let out = state
        .control
        .jobs
        .output(&app.id, job_id(&id)?, follow)
        .await?;
    Ok(text_stream(&state, out))
}

/// `PUT /v1/apps/{app}/jobs/{id}/stdin` → 204 once the whole body reached the job.
pub async fn stdin(
    State(state): State<AppState>,
    who: Principal,
    Path((app, id)): Path<(String, String)>,
    body: Body,
) -> ApiResult<StatusCode> {
    let app = visible_app(&state, &who, &app).await?;
    let stdin = state.control.jobs.take_stdin(&app.id, job_id(&id)?).await?;
    feed(stdin, body).await
}

/// `DELETE /v1/apps/{app}/jobs/{id}` → 200 with the cancelled job, or 204 (forgotten).
pub async fn remove(
    State(state): State<AppState>,
    who: Principal,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let app = visible_app(&state, &who, &app).await?;
    Ok(
        match state
            .control
            .jobs
            .cancel_or_forget(&app.id, job_id(&id)?)
            .await?
        {
            Some(row) => Json(view::job(&row)).into_response(),
            None => StatusCode::NO_CONTENT.into_response(),
        },
    )
}

/// `POST /v1/workflows` → 201 with the workflow, once every step runs.
pub async fn create_workflow(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(req): ApiJson<CreateWorkflow>,
) -> ApiResult<(StatusCode, Json<api::Workflow>)> {
    for s in &req.steps {
        visible_app(&state, &who, s.app.as_str()).await?;
    }
    let row = state
        .control
        .jobs
        .create_workflow(who.tenant(), &req)
        .await?;
    let (row, steps) = state.control.jobs.workflow(who.tenant(), row.id).await?;
    Ok((StatusCode::CREATED, Json(workflows::view(&row, &steps))))
}

/// `GET /v1/workflows?limit=&before=` → the caller's, newest first.
pub async fn list_workflows(
    State(state): State<AppState>,
    who: Principal,
    q: Result<Query<Page>, QueryRejection>,
) -> ApiResult<Json<Vec<api::Workflow>>> {
    let p = page(q)?;
    let rows = state
        .control
        .jobs
        .workflows(who.tenant(), p.limit, p.before.as_deref())
        .await?;
    Ok(Json(
        rows.iter().map(|(w, s)| workflows::view(w, s)).collect(),
    ))
}

/// `GET /v1/workflows/{id}`
pub async fn show_workflow(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<api::Workflow>> {
    let (row, steps) = state
        .control
        .jobs
        .workflow(who.tenant(), workflow_id(&id)?)
        .await?;
    Ok(Json(workflows::view(&row, &steps)))
}

/// `GET /v1/workflows/{id}/output?follow=` → the last step's stdout.
pub async fn workflow_output(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    q: Result<Query<Follow>, QueryRejection>,
) -> ApiResult<Response> {
    let follow = follow(q)?;
    let out = state
        .control
        .jobs
        .workflow_output(who.tenant(), workflow_id(&id)?, follow)
        .await?;
    Ok(text_stream(&state, out))
}

/// `GET /v1/workflows/{id}/steps/{step}/logs?follow=` → that step's stderr (`step`: 0-based).
pub async fn step_logs(
    State(state): State<AppState>,
    who: Principal,
    Path((id, step)): Path<(String, String)>,
    q: Result<Query<Follow>, QueryRejection>,
) -> ApiResult<Response> {
    let follow = follow(q)?;
    let step: usize = step
        .parse()
        .map_err(|_| ApiError::NotFound(format!("step {step:?} (steps are numbered from 0)")))?;
    let out = state
        .control
        .jobs
        .step_logs(who.tenant(), workflow_id(&id)?, step, follow)
        .await?;
    Ok(text_stream(&state, out))
}

/// `PUT /v1/workflows/{id}/stdin` → 204 once the whole body reached the first step.
pub async fn workflow_stdin(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<StatusCode> {
    let stdin = state
        .control
        .jobs
        .take_workflow_stdin(who.tenant(), workflow_id(&id)?)
        .await?;
    feed(stdin, body).await
}

/// `DELETE /v1/workflows/{id}` → 200 with the cancelled workflow, or 204 (forgotten).
pub async fn remove_workflow(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(
        match state
            .control
            .jobs
            .cancel_or_forget_workflow(who.tenant(), workflow_id(&id)?)
            .await?
        {
            Some((row, steps)) => Json(workflows::view(&row, &steps)).into_response(),
            None => StatusCode::NO_CONTENT.into_response(),
        },
    )
}
