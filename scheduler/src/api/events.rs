//! `/v1/events` and `/v1/webhooks`: what happened to the caller's apps (newest-first pages, or
//! NDJSON that follows new events as they are stored), and the webhooks events are POSTed to.
//! A tenant sees and manages only its own; the operator sees every event.

use super::apps::visible_app;
use super::auth::Principal;
use super::error::{ApiError, ApiResult};
use super::{ApiJson, AppState};
use crate::events::Reader;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use caas_types::api::{self, CreateWebhook};
use serde::Deserialize;

/// `?follow=&limit=&before=&app=` of the event list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Keep the stream open and send new events as they come.
    #[serde(default)]
    follow: bool,
    /// Events per page (default 100, at most 1000); with `follow`, how many past ones first.
    limit: Option<u32>,
    /// Only events with ids below this (not with `follow`).
    before: Option<i64>,
    /// Only this app's events.
    app: Option<String>,
}

fn ndjson(line: &serde_json::Value) -> String {
    let mut s = serde_json::to_string(line).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}

/// `GET /v1/events?follow=true&limit=&before=&app=` → NDJSON, one event per line: newest first,
/// or with `follow` the newest `limit` oldest first and then every new one.
pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    query: Result<Query<EventQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(|_| {
        ApiError::BadRequest(
            "expected ?follow=true|false&limit=N&before=ID&app=NAME with whole numbers".into(),
        )
    })?;
    let app = match &q.app {
        Some(a) => Some(visible_app(&state, &who, a).await?.id),
        None => None,
    };
    let reader = Reader {
        tenant: who.tenant().cloned(),
        app,
    };
    let ndjson_response =
        |body: Body| ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response();
    if !q.follow {
        let page = state
            .control
            .events
            .page(&reader, q.limit, q.before)
            .await?;
        let text: String = page.iter().map(ndjson).collect();
        return Ok(ndjson_response(Body::from(text)));
    }
    if q.before.is_some() {
        return Err(ApiError::BadRequest(
            "before: not with follow (a follow starts at the newest events)".into(),
        ));
    }
    let rx = state.control.events.follow(reader, q.limit).await?;
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let item = match rx.recv().await? {
            Ok(ev) => Ok::<_, std::io::Error>(ndjson(&ev)),
            Err(e) => {
                tracing::warn!(error = %e, "an event follower stopped");
                Err(std::io::Error::other("reading events failed"))
            }
        };
        Some((item, rx))
    });
    Ok(ndjson_response(Body::from_stream(stream)))
}

/// `POST /v1/webhooks` `{"url", "events", "secret"}` → 201 `{"id", "url", "events", "created_at"}`.
pub async fn create_webhook(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(req): ApiJson<CreateWebhook>,
) -> ApiResult<(StatusCode, Json<api::Webhook>)> {
    let hook = state.control.webhooks.create(who.tenant(), &req).await?;
    Ok((StatusCode::CREATED, Json(hook)))
}

/// `GET /v1/webhooks` → the caller's webhooks.
pub async fn list_webhooks(
    State(state): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<api::Webhook>>> {
    Ok(Json(state.control.webhooks.list(who.tenant()).await?))
}

/// `DELETE /v1/webhooks/{id}` → 204; another owner's webhook is 404.
pub async fn delete_webhook(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(ApiError::NotFound(format!("webhook {id}")));
    }
    state.control.webhooks.delete(who.tenant(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
