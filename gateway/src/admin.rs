//! The admin listener: `/metrics` (Prometheus text) and `/healthz`, apart from user traffic.

use crate::body::ProxyBody;
use crate::metrics::Stats;
use crate::route_source::RouteStatus;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::sync::watch;

/// What the admin handler reads.
#[derive(Debug)]
pub(crate) struct Admin {
    pub(crate) stats: Arc<Stats>,
    /// The route source's state; `None` when routes are fixed (always healthy).
    pub(crate) status: Option<watch::Receiver<RouteStatus>>,
}

/// Answers one admin request.
pub(crate) async fn handle(
    admin: Arc<Admin>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let (status, ctype, body) = match req.uri().path() {
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            ProxyBody::owned(admin.stats.render()),
        ),
        "/healthz" => {
            let generation = admin.stats.global.generation.load(Relaxed);
            let (ok, text) = match &admin.status {
                Some(rx) => rx.borrow().health(generation),
                None => (true, "ok\n".to_owned()),
            };
            let code = if ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (code, "text/plain; charset=utf-8", ProxyBody::owned(text))
        }
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
