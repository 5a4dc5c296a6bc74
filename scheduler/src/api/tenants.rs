//! `/v1/tenants` (operator only): a tenant owns the apps its token creates.

use super::auth::{new_token, token_hash, Principal};
use super::error::ApiResult;
use super::{parse_path, ApiJson, AppState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use caas_types::api::{CreateTenant, Tenant};
use caas_types::TenantName;

/// `GET /v1/tenants`
pub async fn list(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Vec<Tenant>>> {
    who.require_operator()?;
    let rows = state.store.list_tenants().await?;
    Ok(Json(
        rows.into_iter()
            .map(|t| Tenant {
                name: t.name,
                token: None,
            })
            .collect(),
    ))
}

/// `POST /v1/tenants` → 201 with the token, shown this once (only its hash is stored).
pub async fn create(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(req): ApiJson<CreateTenant>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    who.require_operator()?;
    let token = new_token();
    let row = state
        .store
        .create_tenant(&req.name, &token_hash(&token))
        .await?;
    tracing::info!(tenant = %row.name, "tenant created");
    Ok((
        StatusCode::CREATED,
        Json(Tenant {
            name: row.name,
            token: Some(token),
        }),
    ))
}

/// `DELETE /v1/tenants/{name}` → 204; refused (409) while it owns apps.
pub async fn remove(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    who.require_operator()?;
    let name: TenantName = parse_path("tenant name", &name)?;
    state.store.delete_tenant(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
