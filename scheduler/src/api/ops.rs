//! Operations endpoints: `/healthz` (the scheduler and its dependencies), `/metrics`
//! (Prometheus text), and the gateway blacklist (operator only).

use super::auth::Operator;
use super::error::{ApiError, ApiResult};
use super::{ApiJson, AppState};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use caas_types::api::{Blacklist, BlacklistRule};
use serde::Deserialize;

/// `GET /healthz`: 200 when the database and ZooKeeper answer, 503 with which one failed.
pub async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let db = state.store.ping().await.is_ok();
    let zk = state.control.zookeeper_ok().await;
    let leader = state.control.is_leader();
    let body = serde_json::json!({
        "status": if db && zk { "ok" } else { "degraded" },
        "database": db,
        "zookeeper": zk,
        "leader": leader,
    });
    let status = if db && zk {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.control.render_metrics(),
    )
}

fn parse_rules(rules: &[String]) -> ApiResult<Vec<caas_registry::IpRule>> {
    if rules.len() > 10_000 {
        return Err(ApiError::BadRequest(
            "at most 10,000 blacklist rules".into(),
        ));
    }
    rules
        .iter()
        .map(|r| {
            r.trim()
                .parse()
                .map_err(|e: caas_types::Error| ApiError::BadRequest(e.to_string()))
        })
        .collect()
}

/// `GET /v1/blacklist`
pub async fn blacklist(State(state): State<AppState>, _op: Operator) -> ApiResult<Json<Blacklist>> {
    let rules = state.control.blacklist.get().await?;
    Ok(Json(Blacklist {
        rules: rules.iter().map(ToString::to_string).collect(),
    }))
}

/// `PUT /v1/blacklist`: replace every rule.
pub async fn blacklist_set(
    State(state): State<AppState>,
    _op: Operator,
    ApiJson(req): ApiJson<Blacklist>,
) -> ApiResult<Json<Blacklist>> {
    let rules = parse_rules(&req.rules)?;
    state.control.blacklist.set(rules.clone()).await?;
    Ok(Json(Blacklist {
        rules: rules.iter().map(ToString::to_string).collect(),
    }))
}

/// `POST /v1/blacklist`: add one rule (idempotent).
pub async fn blacklist_add(
    State(state): State<AppState>,
    _op: Operator,
    ApiJson(req): ApiJson<BlacklistRule>,
) -> ApiResult<(StatusCode, Json<Blacklist>)> {
    let rule = parse_rules(std::slice::from_ref(&req.rule))?.remove(0);
    let rules = state
        .control
        .blacklist
        .update(|rules| {
            if !rules.contains(&rule) {
                rules.push(rule);
            }
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Blacklist {
            rules: rules.iter().map(ToString::to_string).collect(),
        }),
    ))
}

/// The `?rule=` of `DELETE /v1/blacklist`.
#[derive(Debug, Deserialize)]
pub struct RuleQuery {
    rule: String,
}

/// `DELETE /v1/blacklist?rule=10.0.0.0/8` → 204 (404 if it was not listed).
pub async fn blacklist_remove(
    State(state): State<AppState>,
    _op: Operator,
    query: Result<Query<RuleQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<StatusCode> {
    let Query(q) = query.map_err(|_| ApiError::BadRequest("expected ?rule=IP-or-CIDR".into()))?;
    let rule = parse_rules(std::slice::from_ref(&q.rule))?.remove(0);
    let mut found = false;
    state
        .control
        .blacklist
        .update(|rules| {
            let before = rules.len();
            rules.retain(|r| *r != rule);
            found = rules.len() != before;
        })
        .await?;
    if !found {
        return Err(ApiError::NotFound(format!("blacklist rule {rule}")));
    }
    Ok(StatusCode::NO_CONTENT)
}
