//! `GET /v1/apps/{app}/logs`: the app's lines as NDJSON, every instance merged in time order;
//! `?follow=true` keeps the answer open with new lines (instances started later included),
//! `?tail=` and `?since=` bound the history (`logs::query` parses them strictly).

use super::apps::visible_app;
use super::auth::Principal;
use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::logs::{LogFeed, LogQuery};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

/// `GET /v1/apps/{app}/logs?follow=&tail=&since=` → 200 `application/x-ndjson`.
pub async fn logs(
    State(state): State<AppState>,
    who: Principal,
    Path(app): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let app = visible_app(&state, &who, &app).await?;
    let query = LogQuery::parse(query.as_deref()).map_err(ApiError::BadRequest)?;
    let (closing, live) = (state.control.closing(), state.control.logs_live.subscribe());
    let feed = LogFeed::open(state.store.clone(), app.id, query, closing, live).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(feed.into_stream()),
    )
        .into_response())
}
