//! `/v1/apps/{app}/deployments` and `/v1/apps/{app}/instances`: deploy (optionally streaming
//! progress as NDJSON), scale, undeploy, list.

use super::apps::visible_app;
use super::auth::Principal;
use super::error::{ApiError, ApiResult};
use super::{parse_path, ApiJson, AppState};
use crate::progress::Progress;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use caas_types::api::{self, CreateDeployment, DeployEvent, Scale};
use caas_types::{InstanceId, Version};

fn wants_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/x-ndjson"))
}

/// Runs `work` to the end even if the client goes away (a half-finished deploy is never left
/// behind by a dropped connection), answering with JSON or, when the client accepts
/// `application/x-ndjson`, with a stream of progress lines ending in `failed` or `done`, whose
/// result is under `done_key` (`{"event": "done", "deployment": {...}}` for a deploy).
pub(super) async fn run_with_progress<T, F, Fut>(
    headers: &HeaderMap,
    status: StatusCode,
    done_key: &'static str,
    work: F,
) -> ApiResult<Response>
where
    T: serde::Serialize + Send + 'static,
    F: FnOnce(Progress) -> Fut,
    Fut: std::future::Future<Output = crate::Result<T>> + Send + 'static,
{
    if !wants_ndjson(headers) {
        let task = tokio::spawn(work(Progress::silent()));
        let done = task.await.map_err(|_| ApiError::Internal)??;
        return Ok((status, Json(done)).into_response());
    }
    let (progress, mut events) = Progress::channel();
    let task = tokio::spawn(work(progress));
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::convert::Infallible>>(64);
    tokio::spawn(async move {
        let mut client_gone = false;
        // The channel closes when the work (and every clone of its Progress) is done.
        while let Some(ev) = events.recv().await {
            if !client_gone {
                client_gone = tx.send(Ok(ndjson_line(&ev))).await.is_err();
            }
        }
        let failed = |error: ApiError| DeployEvent::Failed {
            error: error.body().error,
        };
        let last = match task.await {
            Ok(Ok(done)) => {
                let mut line =
                    serde_json::to_string(&serde_json::json!({ "event": "done", done_key: done }))
                        .unwrap_or_else(|_| "{}".into());
                line.push('\n');
                line
            }
            Ok(Err(e)) => ndjson_line(&failed(ApiError::from(e))),
            Err(_) => ndjson_line(&failed(ApiError::Internal)),
        };
        let _ = tx.send(Ok(last)).await;
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

fn ndjson_line(ev: &DeployEvent) -> String {
    let mut line = serde_json::to_string(ev).unwrap_or_else(|_| "{}".into());
    line.push('\n');
    line
}

/// `POST /v1/apps/{app}/deployments` → 201 with the deployment and its running instances.
pub async fn create(
    State(state): State<AppState>,
    who: Principal,
    Path(app): Path<String>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CreateDeployment>,
) -> ApiResult<Response> {
    let app = visible_app(&state, &who, &app).await?;
    // Cheap checks first, so bad input is a plain 400 even when progress is streamed.
    state.control.deployments.validate(&app.id, &req)?;
    // The tag is resolved to its digest and the deploy recorded as a release (`releases`), under
    // the app's lock (taken by `Releases::deploy`).
    let releases = state.control.releases.clone();
    let by = super::releases::created_by(&who);
    run_with_progress(
        &headers,
        StatusCode::CREATED,
        "deployment",
        move |progress| async move { releases.deploy(&app.id, req, by, progress).await },
    )
    .await
}

/// `GET /v1/apps/{app}/deployments`
pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<api::Deployment>>> {
    let app = visible_app(&state, &who, &app).await?;
    Ok(Json(
        state.control.deployments.deployments_of(&app.id).await?,
    ))
}

/// `GET /v1/apps/{app}/deployments/{version}`
pub async fn show(
    State(state): State<AppState>,
    who: Principal,
    Path((app, version)): Path<(String, String)>,
) -> ApiResult<Json<api::Deployment>> {
    let app = visible_app(&state, &who, &app).await?;
    let version: Version = parse_path("version", &version)?;
    Ok(Json(
        state
            .control
            .deployments
            .deployment(&app.id, &version)
            .await?,
    ))
}

/// `PUT /v1/apps/{app}/deployments/{version}` `{"instances": N}`: scale up or down.
pub async fn scale(
    State(state): State<AppState>,
    who: Principal,
    Path((app, version)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<Scale>,
) -> ApiResult<Response> {
    let app = visible_app(&state, &who, &app).await?;
    let version: Version = parse_path("version", &version)?;
    crate::deployments::check_instance_count(req.instances, true)?;
    let deployments = state.control.deployments.clone();
    run_with_progress(
        &headers,
        StatusCode::OK,
        "deployment",
        move |progress| async move {
            let _app = deployments.lock_app(&app.id).await;
            deployments
                .scale(&app.id, &version, req.instances, progress)
                .await
        },
    )
    .await
}

/// `DELETE /v1/apps/{app}/deployments/{version}` → 204 once every instance is drained and removed.
pub async fn remove(
    State(state): State<AppState>,
    who: Principal,
    Path((app, version)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let app = visible_app(&state, &who, &app).await?;
    let version: Version = parse_path("version", &version)?;
    let deployments = state.control.deployments.clone();
    tokio::spawn(async move {
        let _app = deployments.lock_app(&app.id).await;
        deployments.undeploy(&app.id, &version).await
    })
    .await
    .map_err(|_| ApiError::Internal)??;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/apps/{app}/instances`: every instance with its state and health.
pub async fn instances(
    State(state): State<AppState>,
    who: Principal,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<api::Instance>>> {
    let app = visible_app(&state, &who, &app).await?;
    let rows = state.store.list_instances_by_app(&app.id).await?;
    let list = rows
        .iter()
        .map(|r| r.to_api())
        .collect::<crate::Result<Vec<_>>>()?;
    Ok(Json(list))
}

/// `DELETE /v1/apps/{app}/instances/{id}`: kills the instance (SIGKILL, once a replacement is
/// healthy and it is deregistered and drained) and answers 200 with it as it was; its
/// deployment runs a new container instead, whatever `on_failure` says. Unknown, or another
/// app's: 404.
pub async fn kill(
    State(state): State<AppState>,
    who: Principal,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let app = visible_app(&state, &who, &app).await?;
    let id: InstanceId = parse_path("instance id", &id)?;
    let deployments = state.control.deployments.clone();
    run_with_progress(
        &headers,
        StatusCode::OK,
        "instance",
        move |progress| async move {
            let _app = deployments.lock_app(&app.id).await;
            deployments.kill(&app.id, &id, &progress).await
        },
    )
    .await
}
