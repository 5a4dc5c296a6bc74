//! `/v1/apps`: create, list, show, update and delete apps; custom domains; pushed tags.

use super::auth::Principal;
use super::error::{ApiError, ApiResult};
use super::{parse_path, ApiJson, AppState};
use crate::domain_policy;
use crate::store::AppRow;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use caas_types::api::{self, AddDomain, CreateApp, UpdateApp};
use caas_types::{AppId, Domain};

/// Loads an app the caller may see; another tenant's app is a 404, as if it did not exist.
pub(super) async fn visible_app(state: &AppState, who: &Principal, raw: &str) -> ApiResult<AppRow> {
    let id: AppId = parse_path("app id", raw)?;
    let app = state.store.get_app(&id).await?;
    if !who.can_see(app.tenant.as_ref()) {
        return Err(ApiError::NotFound(format!("app {id}")));
    }
    Ok(app)
}

async fn to_api(state: &AppState, app: &AppRow, with_deployments: bool) -> ApiResult<api::App> {
    let domains = state
        .store
        .list_domains(&app.id)
        .await?
        .into_iter()
        .map(|d| d.domain)
        .collect();
    let deployments = if with_deployments {
        state.control.deployments.deployments_of(&app.id).await?
    } else {
        Vec::new()
    };
    Ok(api::App {
        id: app.id.clone(),
        domain: state.config.app_domain(&app.id),
        tenant: app.tenant.clone(),
        domains,
        auto_deploy: app.auto_deploy,
        deployments,
    })
}

/// `GET /v1/apps`
pub async fn list(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Vec<api::App>>> {
    let rows = state.store.list_apps(who.tenant()).await?;
    let mut out = Vec::with_capacity(rows.len());
    for app in &rows {
        out.push(to_api(&state, app, false).await?);
    }
    Ok(Json(out))
}

/// `POST /v1/apps` → 201
pub async fn create(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(req): ApiJson<CreateApp>,
) -> ApiResult<(StatusCode, Json<api::App>)> {
    let app = state
        .control
        .apps
        .create(&req.id, who.tenant(), req.auto_deploy)
        .await?;
    tracing::info!(app = %app.id, tenant = ?app.tenant, "app created");
    Ok((
        StatusCode::CREATED,
        Json(to_api(&state, &app, false).await?),
    ))
}

/// `GET /v1/apps/{app}`: the app with its deployments and instances.
pub async fn show(
    State(state): State<AppState>,
    who: Principal,
    Path(app): Path<String>,
) -> ApiResult<Json<api::App>> {
    let app = visible_app(&state, &who, &app).await?;
    Ok(Json(to_api(&state, &app, true).await?))
}

/// `PATCH /v1/apps/{app}` `{"auto_deploy": bool}`: the app as it is now.
pub async fn update(
    State(state): State<AppState>,
    who: Principal,
    Path(app): Path<String>,
    ApiJson(req): ApiJson<UpdateApp>,
) -> ApiResult<Json<api::App>> {
    let app = visible_app(&state, &who, &app).await?;
    let Some(on) = req.auto_deploy else {
        return Err(ApiError::BadRequest(
            "nothing to change: give auto_deploy".into(),
        ));
    };
    let app = state.store.set_app_auto_deploy(&app.id, on).await?;
    tracing::info!(app = %app.id, auto_deploy = on, "app updated");
    Ok(Json(to_api(&state, &app, false).await?))
}

/// `GET /v1/apps/{app}/tags`: the tags pushed to the registry, newest push first.
pub async fn tags(
    State(state): State<AppState>,
    who: Principal,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<api::Tag>>> {
    let app = visible_app(&state, &who, &app).await?;
    let rows = state.store.list_tags(&app.id).await?;
    Ok(Json(rows.iter().map(|t| t.to_api()).collect()))
}

/// `DELETE /v1/apps/{app}`: undeploys everything, then deletes the app → 204.
pub async fn remove(
    State(state): State<AppState>,
    who: Principal,
    Path(app): Path<String>,
) -> ApiResult<StatusCode> {
    let app = visible_app(&state, &who, &app).await?;
    state.control.apps.delete(&app.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/apps/{app}/domains` → 201
pub async fn add_domain(
    State(state): State<AppState>,
    who: Principal,
    Path(app): Path<String>,
    ApiJson(req): ApiJson<AddDomain>,
) -> ApiResult<(StatusCode, Json<AddDomain>)> {
    let app = visible_app(&state, &who, &app).await?;
    // The rule follows the app's owner, whoever asks: a TLS certificate for a routed domain is
    // then always served for an app whose tenant may hold the name.
    let suffixes = match &app.tenant {
        Some(t) => Some((t, state.store.tenant_domains(t).await?)),
        None => None,
    };
    domain_policy::check_custom_domain(
        &req.domain,
        &state.config.domain,
        suffixes.as_ref().map(|(t, s)| (*t, s.as_slice())),
    )?;
    state.control.apps.add_domain(&app.id, &req.domain).await?;
    Ok((StatusCode::CREATED, Json(req)))
}

/// `DELETE /v1/apps/{app}/domains/{domain}` → 204
pub async fn remove_domain(
    State(state): State<AppState>,
    who: Principal,
    Path((app, domain)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let app = visible_app(&state, &who, &app).await?;
    let domain: Domain = parse_path("domain", &domain)?;
    state.control.apps.remove_domain(&app.id, &domain).await?;
    Ok(StatusCode::NO_CONTENT)
}
