//! The admin listener: `/metrics` (Prometheus text) and `/healthz`, apart from user traffic.

use crate::body::ProxyBody;
use crate::metrics::Stats;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::sync::Arc;

/// Answers one admin request.
pub(crate) async fn handle(
    stats: Arc<Stats>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let (status, ctype, body) = match req.uri().path() {
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            ProxyBody::owned(stats.render()),
        ),
        "/healthz" => (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            ProxyBody::text("ok\n"),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            ProxyBody::text("not found; try /metrics or /healthz\n"),
        ),
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    Ok(r)
}
