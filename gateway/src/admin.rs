//! The admin listener: `/metrics` (Prometheus text) and `/healthz`, apart from user traffic.

use crate::body::ProxyBody;
use crate::metrics::Stats;
use crate::route_source::{Freshness, RouteStatus};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::sync::watch;

/// What the admin handler reads.
#[derive(Debug)]
pub(crate) struct Admin {
    pub(crate) stats: Arc<Stats>,
    /// The route source's state; `None` when routes are fixed (always healthy).
    pub(crate) status: Option<watch::Receiver<RouteStatus>>,
    /// Whether the routes are stale (the request path answers 503 while they are).
    pub(crate) fresh: Arc<Freshness>,
}

impl Admin {
    /// `/metrics`: the stats, then the routes' age and staleness (known only here).
    fn metrics(&self) -> String {
        let mut out = self.stats.render();
        let age = self
            .status
            .as_ref()
            .map(|rx| rx.borrow().age().as_secs_f64())
            .unwrap_or(0.0);
        let stale = u8::from(self.fresh.stale_for().is_some());
        let _ = write!(
            out,
            "# HELP caas_gateway_route_age_seconds how long the routes in use have not been known current (cut off from ZooKeeper); 0 while connected\n\
             # TYPE caas_gateway_route_age_seconds gauge\ncaas_gateway_route_age_seconds {age:.3}\n\
             # HELP caas_gateway_routes_stale 1 while cut off from ZooKeeper longer than the staleness period: every proxied request gets 503\n\
             # TYPE caas_gateway_routes_stale gauge\ncaas_gateway_routes_stale {stale}\n"
        );
        out
    }
}

/// Answers one admin request.
pub(crate) async fn handle(
    admin: Arc<Admin>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let path = if crate::proxy::duplicate_host(req.headers()) {
        None
    } else {
        Some(req.uri().path())
    };
    let (status, ctype, body) = match path {
        None => (
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            ProxyBody::text(crate::answers::DUPLICATE_HOST),
        ),
        Some("/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            ProxyBody::owned(admin.metrics()),
        ),
        Some("/healthz") => {
            let generation = admin.stats.global.generation.load(Relaxed);
            let (ok, text) = match &admin.status {
                Some(rx) => rx.borrow().health(generation, admin.fresh.stale_for()),
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
