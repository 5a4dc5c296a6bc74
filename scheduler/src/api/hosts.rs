//! `/v1/hosts` (operator only): register, list, drain and remove hosts.

use super::auth::Operator;
use super::error::{ApiError, ApiResult};
use super::{parse_path, ApiJson, AppState};
use crate::store::NewHost;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use caas_types::api::{self, CreateHost, UpdateHost};
use caas_types::HostName;

/// `GET /v1/hosts`
pub async fn list(State(state): State<AppState>, _op: Operator) -> ApiResult<Json<Vec<api::Host>>> {
    let hosts = state.store.list_hosts().await?;
    Ok(Json(hosts.iter().map(|h| h.to_api()).collect()))
}

/// `POST /v1/hosts` → 201. The host's Docker endpoint must answer before it is accepted.
pub async fn create(
    State(state): State<AppState>,
    _op: Operator,
    ApiJson(req): ApiJson<CreateHost>,
) -> ApiResult<(StatusCode, Json<api::Host>)> {
    let new = NewHost::from_api(&req)?;
    state.control.check_engine(&new.docker).await?;
    let host = state.store.create_host(&new).await?;
    tracing::info!(host = %host.name, address = %host.address, "host added");
    Ok((StatusCode::CREATED, Json(host.to_api())))
}

/// `GET /v1/hosts/{name}`
pub async fn show(
    State(state): State<AppState>,
    _op: Operator,
    Path(name): Path<String>,
) -> ApiResult<Json<api::Host>> {
    let name: HostName = parse_path("host name", &name)?;
    Ok(Json(state.store.get_host(&name).await?.to_api()))
}

/// `PATCH /v1/hosts/{name}`: state (ready/draining/down) and labels.
pub async fn update(
    State(state): State<AppState>,
    _op: Operator,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<UpdateHost>,
) -> ApiResult<Json<api::Host>> {
    let name: HostName = parse_path("host name", &name)?;
    if req.state.is_none() && req.labels.is_none() {
        return Err(ApiError::BadRequest(
            "nothing to change: give state and/or labels".into(),
        ));
    }
    let mut host = state.store.get_host(&name).await?;
    if let Some(labels) = &req.labels {
        host = state.store.set_host_labels(&name, labels).await?;
    }
    if let Some(s) = req.state {
        host = state.store.set_host_state(&name, s.into()).await?;
        tracing::info!(host = %name, state = ?s, "host state changed");
    }
    Ok(Json(host.to_api()))
}

/// `DELETE /v1/hosts/{name}` → 204; refused (409) while instances remain on it.
pub async fn remove(
    State(state): State<AppState>,
    _op: Operator,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let name: HostName = parse_path("host name", &name)?;
    state.store.delete_host(&name).await?;
    state.control.forget_engine(&name);
    Ok(StatusCode::NO_CONTENT)
}
