//! The gateway's own short answers (403, 404, 413, 431, 502, 503, 504, …), word for word the
//! same on both request paths: clients and tests see one text whichever path served them.

use caas_types::AppId;

pub(crate) const FORBIDDEN: &str = "forbidden\n";
pub(crate) const MISSING_HOST: &str = "missing Host header\n";
/// 400 for a request with two Host headers (admin listener included).
pub(crate) const DUPLICATE_HOST: &str = "more than one Host header\n";
pub(crate) const UNKNOWN_HOST: &str = "no app is routed at this host\n";
pub(crate) const HEADERS_TOO_LARGE: &str = "request headers too large\n";
pub(crate) const BODY_TOO_LARGE: &str = "request body too large\n";
pub(crate) const NO_BACKEND: &str = "no backend can take the request\n";
pub(crate) const BACKEND_FAILED: &str = "the app's instance failed to answer\n";
pub(crate) const BACKEND_TIMED_OUT: &str = "the app's instance did not answer in time\n";
/// 504 for a request held for a sleeping app that got no instance in time.
pub(crate) const ACTIVATION_TIMED_OUT: &str = "the app did not start in time\n";
/// 503 (with `Retry-After: 1`) for a sleeping app whose hold queue is full.
pub(crate) const HOLD_QUEUE_FULL: &str = "the app is starting; too many requests wait for it\n";
/// `Retry-After` (seconds) of the 503 for a sleeping app that failed to start.
pub(crate) const FAILED_RETRY_AFTER: &str = "5";
/// 503 for a request held when the gateway shuts down.
pub(crate) const SHUTTING_DOWN: &str = "the gateway is shutting down\n";

/// 503 for a known app with nothing running.
pub(crate) fn no_instance(app: &AppId) -> String {
    format!("app {app} has no running instance\n")
}

/// 503 (with `Retry-After: 5`) for a sleeping app whose wake node says it failed to start.
pub(crate) fn failed_to_start(app: &AppId, reason: &str) -> String {
    format!("app {app} failed to start: {reason}\n")
}
