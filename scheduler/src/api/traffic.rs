//! `GET /v1/apps/{app}/traffic?window=15m&step=10s` (one app's traffic as a time series) and
//! `GET /v1/traffic?window=1m` (every app the caller sees, totals over the window, busiest
//! first: what `caas top` shows). Both read what the gateways reported (`traffic/`); the
//! parameters are parsed strictly (`traffic::plan`), a bad one is a 400 naming it.

use super::apps::visible_app;
use super::auth::Principal;
use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::traffic::{OverviewQuery, SeriesQuery};
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use caas_types::api::{AppTrafficSeries, TrafficOverview};

/// `GET /v1/apps/{app}/traffic?window=&step=` → 200. Another tenant's app is a 404 before the
/// parameters are looked at.
pub async fn series(
    State(state): State<AppState>,
    who: Principal,
    Path(app): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<AppTrafficSeries>> {
    let app = visible_app(&state, &who, &app).await?;
    let q = SeriesQuery::parse(query.as_deref()).map_err(ApiError::BadRequest)?;
    Ok(Json(state.control.traffic.series(&app.id, q).await?))
}

/// `GET /v1/traffic?window=` → 200: the caller's apps (every app for the operator).
pub async fn overview(
    State(state): State<AppState>,
    who: Principal,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<TrafficOverview>> {
    let q = OverviewQuery::parse(query.as_deref()).map_err(ApiError::BadRequest)?;
    let apps = state
        .store
        .list_apps(who.tenant())
        .await?
        .into_iter()
        .map(|a| a.id)
        .collect();
    Ok(Json(state.control.traffic.overview(apps, q).await?))
}
