//! `/v1/apps/{app}/releases` and `/v1/apps/{app}/rollback`: an app's release history (paginated,
//! newest first) and the rollback to one of its releases (optionally streaming progress as
//! NDJSON, like a deploy).

use super::apps::visible_app;
use super::auth::Principal;
use super::deployments::run_with_progress;
use super::error::{ApiError, ApiResult};
use super::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use caas_types::api::{self, Rollback};
use serde::Deserialize;

/// `?limit=&before=` of the release list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// Releases per page (default 50, at most 500).
    limit: Option<u32>,
    /// Only releases numbered below this.
    before: Option<u32>,
}

/// Who a release is recorded as made by: `operator` or the tenant's name.
pub(super) fn created_by(who: &Principal) -> String {
    match who {
        Principal::Operator => "operator".to_owned(),
        Principal::Tenant(t) => t.to_string(),
    }
}

/// `GET /v1/apps/{app}/releases?limit=&before=` → newest first.
pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    Path(app): Path<String>,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<api::Release>>> {
    let Query(page) = page.map_err(|_| {
        ApiError::BadRequest("expected ?limit=N&before=N with whole numbers".into())
    })?;
    let app = visible_app(&state, &who, &app).await?;
    let list = state
        .control
        .releases
        .list(&app.id, page.limit, page.before)
        .await?;
    Ok(Json(list))
}

/// The rollback body: empty, `{}`, or `{"release": N}`.
fn rollback_body(body: &[u8]) -> ApiResult<Rollback> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Rollback::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("rollback body: {e}")))
}

/// `POST /v1/apps/{app}/rollback` `{"release": N}` (body optional) → 200 with the deployment of
/// the rolled-to release once the roll is done.
pub async fn rollback(
    State(state): State<AppState>,
    who: Principal,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge
        } else {
            ApiError::BadRequest("could not read the request body".into())
        }
    })?;
    let req = rollback_body(&body)?;
    if req.release == Some(0) {
        return Err(ApiError::BadRequest(
            "release: release numbers start at 1".into(),
        ));
    }
    let app = visible_app(&state, &who, &app).await?;
    let releases = state.control.releases.clone();
    let by = created_by(&who);
    run_with_progress(
        &headers,
        StatusCode::OK,
        "deployment",
        move |progress| async move { releases.rollback(&app.id, req.release, by, progress).await },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollback_body_is_optional_and_strict() {
        assert_eq!(rollback_body(b"").ok(), Some(Rollback::default()));
        assert_eq!(rollback_body(b" \n").ok(), Some(Rollback::default()));
        assert_eq!(rollback_body(b"{}").ok(), Some(Rollback::default()));
        assert_eq!(
            rollback_body(br#"{"release": 2}"#).ok(),
            Some(Rollback { release: Some(2) })
        );
        for bad in [
            &br#"{"release": "2"}"#[..],
            br#"{"release": -1}"#,
            br#"{"release": 2, "force": true}"#,
            b"2",
            b"nope",
        ] {
            assert!(
                matches!(rollback_body(bad), Err(ApiError::BadRequest(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
