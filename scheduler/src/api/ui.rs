//! The web console at `/ui/`: static files embedded in the binary (`scheduler/ui/`, plain ES
//! modules, no build step), so the console needs nothing from the internet at run time.
//!
//! Only the files listed in [`asset`] are served; any other path under `/ui/` is a 404. Every
//! answer carries a strict Content-Security-Policy (scripts, styles and API calls from this
//! origin only; no inline script or style; no framing), `X-Content-Type-Options: nosniff` and
//! `Referrer-Policy: no-referrer`. The files are public; the console asks for the token and
//! sends it only in the `Authorization` header of its `/v1` calls.

use super::error::ApiError;
use super::AppState;
use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

/// The Content-Security-Policy of every console answer.
pub(crate) const CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
    style-src 'self'; script-src 'self'; frame-ancestors 'none'";

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The console's file at `path` (relative to `/ui/`): its text and content type; `None` for
/// any path that is not one of the embedded files.
fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    Some(match path {
        "index.html" => (include_str!("../../ui/index.html"), HTML),
        "style.css" => (include_str!("../../ui/style.css"), CSS),
        "app.js" => (include_str!("../../ui/app.js"), JS),
        "api.js" => (include_str!("../../ui/api.js"), JS),
        "dom.js" => (include_str!("../../ui/dom.js"), JS),
        "events.js" => (include_str!("../../ui/events.js"), JS),
        "views/apps.js" => (include_str!("../../ui/views/apps.js"), JS),
        "views/app.js" => (include_str!("../../ui/views/app.js"), JS),
        "views/logs.js" => (include_str!("../../ui/views/logs.js"), JS),
        "views/traffic.js" => (include_str!("../../ui/views/traffic.js"), JS),
        "views/jobs.js" => (include_str!("../../ui/views/jobs.js"), JS),
        "views/workflows.js" => (include_str!("../../ui/views/workflows.js"), JS),
        "views/schedules.js" => (include_str!("../../ui/views/schedules.js"), JS),
        "views/hosts.js" => (include_str!("../../ui/views/hosts.js"), JS),
        _ => return None,
    })
}

/// The console's routes: `GET /ui` (redirect to `/ui/`), `GET /ui/` (the page) and
/// `GET /ui/{*path}` (its assets). `HEAD` is answered too (axum's `get`). No token needed.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/{*path}", get(file))
}

/// `GET /ui/` → `index.html`.
async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /ui/{*path}` → that asset, or 404.
async fn file(path: Result<Path<String>, PathRejection>, headers: HeaderMap) -> Response {
    match path {
        Ok(Path(path)) => serve(&path, &headers),
        Err(_) => ApiError::NotFound("console file".into()).into_response(),
    }
}

/// The (strong) entity tag of a body: the first 16 bytes of its SHA-256, hex, quoted.
fn etag(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// Whether an `If-None-Match` header names `tag` (or is `*`).
fn matches(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == tag || t == "*")
}

/// Answers one embedded file with its headers; 304 when the client's copy is current.
///
/// Every file is `Cache-Control: no-cache`: the names carry no version, so the browser
/// revalidates each time (a cheap 304 by entity tag) and never mixes files of two builds.
fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some((body, content_type)) = asset(path) else {
        return ApiError::NotFound("console file".into()).into_response();
    };
    let tag = etag(body);
    let common = [
        (header::CACHE_CONTROL, "no-cache"),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    if matches(headers, &tag) {
        return (StatusCode::NOT_MODIFIED, common, [(header::ETAG, tag)]).into_response();
    }
    (
        common,
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::ETAG, tag),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Every embedded file (kept in step with [`asset`] by the first test).
    const FILES: &[&str] = &[
        "index.html",
        "style.css",
        "app.js",
        "api.js",
        "dom.js",
        "events.js",
        "views/apps.js",
        "views/app.js",
        "views/logs.js",
        "views/traffic.js",
        "views/jobs.js",
        "views/workflows.js",
        "views/schedules.js",
        "views/hosts.js",
    ];

    #[test]
    fn every_file_the_page_loads_is_embedded() {
        let index = asset("index.html").unwrap().0;
        assert!(index.contains("src=\"app.js\""));
        assert!(index.contains("href=\"style.css\""));
        // Each module import of every script resolves to an embedded file.
        for name in FILES.iter().filter(|n| n.ends_with(".js")) {
            let (text, ty) = asset(name).unwrap();
            assert_eq!(ty, JS, "{name}");
            let dir = name
                .rsplit_once('/')
                .map(|(d, _)| format!("{d}/"))
                .unwrap_or_default();
            for line in text.lines().filter(|l| l.contains(" from '")) {
                let spec = line
                    .split(" from '")
                    .nth(1)
                    .unwrap()
                    .split('\'')
                    .next()
                    .unwrap();
                let resolved = match spec.strip_prefix("../") {
                    Some(up) => up.to_owned(),
                    None => format!("{dir}{}", spec.trim_start_matches("./")),
                };
                assert!(
                    asset(&resolved).is_some(),
                    "{name} imports {spec} ({resolved})"
                );
            }
        }
    }

    #[test]
    fn no_file_loads_anything_from_elsewhere() {
        for name in FILES {
            // The SVG namespace is a name, not an address anything is fetched from.
            let text = asset(name)
                .unwrap()
                .0
                .replace("http://www.w3.org/2000/svg", "");
            assert!(
                !text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"),
                "{name}"
            );
        }
    }

    #[test]
    fn unknown_paths_are_not_served() {
        for p in [
            "",
            "../Cargo.toml",
            "views",
            "views/",
            "x.js",
            "index.html/",
            "VIEWS/app.js",
            "README.md",
        ] {
            assert!(asset(p).is_none(), "{p}");
        }
    }

    #[test]
    fn if_none_match_is_read_as_a_list() {
        let tag = etag("body");
        let mut headers = HeaderMap::new();
        assert!(!matches(&headers, &tag));
        headers.insert(
            header::IF_NONE_MATCH,
            format!("\"other\", W/{tag}").parse().unwrap(),
        );
        assert!(matches(&headers, &tag));
    }
}
