//! The router without services: authentication, body and path rejections, and the mapping of
//! every failure to its status and stable code, driven with `tower::ServiceExt::oneshot`.
//! MySQL is a lazy pool on a closed loopback port (every query fails at once), ZooKeeper a
//! route registry that refuses everything, the health checker a set that holds nothing.

use super::{router, AppState};
use crate::control::ControlPlane;
use crate::engine::{DockerConnector, Engines};
use crate::health_targets::HealthTargets;
use crate::routes::{AddressNode, BlacklistEdit, RouteRegistry};
use crate::store::Store;
use crate::Config;
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use caas_registry::{HealthTarget, IpRule};
use caas_types::{AppId, ContainerId, Domain, Endpoint, Version};
use clap::Parser;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const OPERATOR: &str = "operator-token-for-router-tests";

/// A ZooKeeper that answers nothing.
#[derive(Debug)]
struct NoZooKeeper;

fn refused<T: Send + 'static>() -> BoxFuture<'static, caas_registry::Result<T>> {
    Box::pin(async {
        Err(caas_registry::Error::Malformed {
            path: "/caas".into(),
            reason: "no zookeeper in this test".into(),
        })
    })
}

impl RouteRegistry for NoZooKeeper {
    fn register<'a>(
        &'a self,
        _: &'a AppId,
        _: &'a Version,
        _: &'a ContainerId,
        _: Endpoint,
    ) -> BoxFuture<'a, caas_registry::Result<()>> {
        refused()
    }
    fn deregister<'a>(
        &'a self,
        _: &'a AppId,
        _: &'a Version,
        _: &'a ContainerId,
    ) -> BoxFuture<'a, caas_registry::Result<()>> {
        refused()
    }
    fn instances(&self) -> BoxFuture<'_, caas_registry::Result<Vec<AddressNode>>> {
        refused()
    }
    fn add_app<'a>(&'a self, _: &'a AppId) -> BoxFuture<'a, caas_registry::Result<()>> {
        refused()
    }
    fn remove_app<'a>(&'a self, _: &'a AppId) -> BoxFuture<'a, caas_registry::Result<()>> {
        refused()
    }
    fn apps(&self) -> BoxFuture<'_, caas_registry::Result<Vec<AppId>>> {
        refused()
    }
    fn set_domain<'a>(
        &'a self,
        _: &'a Domain,
        _: &'a AppId,
    ) -> BoxFuture<'a, caas_registry::Result<()>> {
        refused()
    }
    fn remove_domain<'a>(&'a self, _: &'a Domain) -> BoxFuture<'a, caas_registry::Result<()>> {
        refused()
    }
    fn domains(&self) -> BoxFuture<'_, caas_registry::Result<Vec<(Domain, AppId)>>> {
        refused()
    }
    fn blacklist(&self) -> BoxFuture<'_, caas_registry::Result<Vec<IpRule>>> {
        refused()
    }
    fn set_blacklist<'a>(&'a self, _: &'a [IpRule]) -> BoxFuture<'a, caas_registry::Result<()>> {
        refused()
    }
    fn update_blacklist<'a>(
        &'a self,
        _: BlacklistEdit<'a>,
    ) -> BoxFuture<'a, caas_registry::Result<Vec<IpRule>>> {
        refused()
    }
    fn set_wake<'a>(
        &'a self,
        _: &'a AppId,
        _: &'a Version,
        _: Option<&'a str>,
    ) -> BoxFuture<'a, caas_registry::Result<()>> {
        refused()
    }
    fn clear_wake<'a>(&'a self, _: &'a AppId) -> BoxFuture<'a, caas_registry::Result<()>> {
        refused()
    }
    fn wake_nodes(
        &self,
    ) -> BoxFuture<
        '_,
        caas_registry::Result<std::collections::BTreeMap<AppId, Option<caas_registry::WakeNode>>>,
    > {
        refused()
    }
}

#[derive(Debug)]
struct NoChecks;

impl HealthTargets for NoChecks {
    fn watch(&self, _: HealthTarget) {}
    fn unwatch(&self, _: &ContainerId) {}
    fn watched(&self) -> Vec<HealthTarget> {
        Vec::new()
    }
}

fn state(hook_token: Option<&str>) -> AppState {
    state_with(hook_token, None)
}

fn state_with(hook_token: Option<&str>, gateway_token: Option<&str>) -> AppState {
    let mut config = Config::try_parse_from([
        "caas-scheduler",
        "--database-url",
        "mysql://caas:unused@127.0.0.1:1/caas",
        "--token",
        OPERATOR,
    ])
    .expect("flags parse");
    // The test's environment may hold a running platform's variables: pin what matters.
    config.token = OPERATOR.into();
    config.registry_hook_token = hook_token.map(str::to_owned);
    config.gateway_token = gateway_token.map(str::to_owned);
    config.max_body_bytes = 1024;
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy(&config.database_url)
        .expect("a lazy pool needs no server");
    let config = Arc::new(config);
    let control = ControlPlane::new(
        config,
        Store::from_pool(pool),
        Arc::new(NoZooKeeper),
        Arc::new(Engines::new(DockerConnector::default())),
        Arc::new(NoChecks),
        None,
    );
    AppState::new(control)
}

/// Sends one request; returns the status, the error code (if the body is an error) and the body.
async fn send(
    state: AppState,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<(&str, &str)>,
) -> (StatusCode, Option<String>, serde_json::Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = match body {
        Some((content_type, text)) => req
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(text.to_owned())),
        None => req.body(Body::empty()),
    }
    .expect("request");
    let resp = router(state).oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let code = json["error"]["code"].as_str().map(str::to_owned);
    (status, code, json)
}

#[tokio::test]
async fn no_token_or_a_malformed_one_is_401_before_anything_is_read() {
    for token in [None, Some(""), Some("x".repeat(300).as_str())] {
        let (status, code, body) = send(state(None), Method::GET, "/v1/apps", token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(code.as_deref(), Some("unauthorized"));
        assert!(body["error"]["message"].is_string());
    }
    let (status, _, _) = send(
        state(None),
        Method::POST,
        "/v1/hosts",
        None,
        Some(("application/json", "{}")),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_unknown_token_needs_the_database_and_a_down_database_is_503() {
    let (status, code, _) = send(
        state(None),
        Method::GET,
        "/v1/apps",
        Some("some-tenant-token"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code.as_deref(), Some("unavailable"));
}

#[tokio::test]
async fn the_operator_with_the_database_down_gets_503_not_500() {
    let (status, code, _) = send(state(None), Method::GET, "/v1/apps", Some(OPERATOR), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code.as_deref(), Some("unavailable"));
}

#[tokio::test]
async fn zookeeper_down_is_503_for_the_blacklist() {
    let (status, code, _) = send(
        state(None),
        Method::GET,
        "/v1/blacklist",
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code.as_deref(), Some("unavailable"));
}

#[tokio::test]
async fn bad_bodies_are_400_or_413_with_our_error_shape() {
    let cases = [
        ("application/json", "{", StatusCode::BAD_REQUEST, "invalid"),
        (
            "application/json",
            r#"{"id":"Bad_App"}"#,
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            "application/json",
            r#"{"id":"ok","surprise":1}"#,
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            "text/plain",
            r#"{"id":"ok"}"#,
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
    ];
    for (content_type, body, want, want_code) in cases {
        let (status, code, _) = send(
            state(None),
            Method::POST,
            "/v1/apps",
            Some(OPERATOR),
            Some((content_type, body)),
        )
        .await;
        assert_eq!(status, want, "{content_type} {body}");
        assert_eq!(code.as_deref(), Some(want_code), "{body}");
    }
    let big = format!(r#"{{"id":"{}"}}"#, "a".repeat(4096));
    let (status, code, _) = send(
        state(None),
        Method::POST,
        "/v1/apps",
        Some(OPERATOR),
        Some(("application/json", &big)),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(code.as_deref(), Some("too_large"));
}

/// A deployment's `user` reaches the engine as Docker's `User`, so anything but a uid, a
/// `uid:gid` or plain names is refused at the edge, before any lookup, naming the field.
#[tokio::test]
async fn a_bad_container_user_or_read_only_is_400_naming_the_field() {
    let long = "u".repeat(66);
    for user in [
        "", ":", "1000:", ":0", "0:0:0", "a b", "a\0b", "-1", "../root", "a/b", "$(id)", "root;x",
        "ünï", &long,
    ] {
        let body = serde_json::json!({"version": "v1", "memory_mb": 64, "cpus": 0.1, "user": user})
            .to_string();
        let (status, code, body) = send(
            state(None),
            Method::POST,
            "/v1/apps/hello/deployments",
            Some(OPERATOR),
            Some(("application/json", &body)),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "user {user:?}: {body}");
        assert_eq!(code.as_deref(), Some("invalid"), "{body}");
        assert!(body.to_string().contains("user"), "user {user:?}: {body}");
    }
    for bad in [r#""yes""#, "1", "null"] {
        let body =
            format!(r#"{{"version": "v1", "memory_mb": 64, "cpus": 0.1, "read_only": {bad}}}"#);
        let (status, _, body) = send(
            state(None),
            Method::POST,
            "/v1/apps/hello/deployments",
            Some(OPERATOR),
            Some(("application/json", &body)),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "read_only {bad}: {body}");
    }
}

#[tokio::test]
async fn bad_path_segments_are_400_and_unknown_routes_404() {
    let (status, code, _) = send(
        state(None),
        Method::GET,
        "/v1/apps/Not_An_App",
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code.as_deref(), Some("invalid"));
    let (status, code, _) = send(
        state(None),
        Method::GET,
        "/v2/nothing",
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(code.as_deref(), Some("not_found"));
}

#[tokio::test]
async fn the_registry_hook_is_404_when_off_and_takes_only_its_own_token() {
    let (status, _, _) = send(
        state(None),
        Method::POST,
        "/v1/registry/events",
        Some(OPERATOR),
        Some(("application/json", "{}")),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, code, _) = send(
        state(Some("hook-token")),
        Method::POST,
        "/v1/registry/events",
        Some(OPERATOR),
        Some(("application/json", "{}")),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the operator token does not open the hook"
    );
    assert_eq!(code.as_deref(), Some("unauthorized"));
}

#[tokio::test]
async fn the_registry_token_endpoint_is_404_without_a_signing_key() {
    for auth in [None, Some(OPERATOR)] {
        let (status, code, _) = send(
            state(None),
            Method::GET,
            "/v1/registry/token?service=caas-registry&scope=repository:hello:pull",
            auth,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{auth:?}");
        assert_eq!(code.as_deref(), Some("not_found"));
    }
}

const GATEWAY: &str = "gateway-token-for-router-tests";
const HOOK: &str = "hook-token-for-router-tests";
const DEMAND: &str = r#"{"gateway":"gw-1","apps":[{"app":"hello","held":3,"in_flight":7}]}"#;

/// Every route of the router but `/healthz` and `/metrics` (open) and the two that take a token
/// of their own, with a valid path and a body where one is needed.
const AUTHENTICATED_ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/apps"),
    ("POST", "/v1/apps"),
    ("GET", "/v1/apps/hello"),
    ("PATCH", "/v1/apps/hello"),
    ("DELETE", "/v1/apps/hello"),
    ("GET", "/v1/apps/hello/tags"),
    ("GET", "/v1/apps/hello/releases"),
    ("POST", "/v1/apps/hello/rollback"),
    ("GET", "/v1/apps/hello/config"),
    ("PATCH", "/v1/apps/hello/config"),
    ("POST", "/v1/apps/hello/restart"),
    ("GET", "/v1/apps/hello/logs"),
    ("GET", "/v1/apps/hello/traffic"),
    ("GET", "/v1/traffic"),
    ("GET", "/v1/apps/hello/jobs"),
    ("POST", "/v1/apps/hello/jobs"),
    ("GET", "/v1/apps/hello/jobs/j-1"),
    ("DELETE", "/v1/apps/hello/jobs/j-1"),
    ("GET", "/v1/apps/hello/jobs/j-1/logs"),
    ("PUT", "/v1/apps/hello/jobs/j-1/stdin"),
    ("GET", "/v1/apps/hello/schedules"),
    ("POST", "/v1/apps/hello/schedules"),
    ("DELETE", "/v1/apps/hello/schedules/nightly"),
    ("GET", "/v1/workflows"),
    ("POST", "/v1/workflows"),
    ("GET", "/v1/workflows/w-1"),
    ("DELETE", "/v1/workflows/w-1"),
    ("GET", "/v1/workflows/w-1/output"),
    ("GET", "/v1/workflows/w-1/steps/build/logs"),
    ("PUT", "/v1/workflows/w-1/stdin"),
    ("POST", "/v1/apps/hello/domains"),
    ("DELETE", "/v1/apps/hello/domains/example.com"),
    ("GET", "/v1/apps/hello/instances"),
    ("DELETE", "/v1/apps/hello/instances/hello-abc"),
    ("POST", "/v1/apps/hello/deployments"),
    ("GET", "/v1/apps/hello/deployments"),
    ("PUT", "/v1/apps/hello/deployments/v1"),
    ("GET", "/v1/apps/hello/deployments/v1"),
    ("DELETE", "/v1/apps/hello/deployments/v1"),
    ("GET", "/v1/events"),
    ("GET", "/v1/webhooks"),
    ("POST", "/v1/webhooks"),
    ("DELETE", "/v1/webhooks/1"),
    ("GET", "/v1/hosts"),
    ("POST", "/v1/hosts"),
    ("GET", "/v1/hosts/h1"),
    ("PATCH", "/v1/hosts/h1"),
    ("DELETE", "/v1/hosts/h1"),
    ("GET", "/v1/tenants"),
    ("POST", "/v1/tenants"),
    ("DELETE", "/v1/tenants/acme"),
    ("GET", "/v1/blacklist"),
    ("POST", "/v1/blacklist"),
    ("PUT", "/v1/blacklist"),
    ("DELETE", "/v1/blacklist"),
];

#[tokio::test]
async fn the_gateway_token_opens_no_endpoint_but_the_demand_report() {
    for (method, path) in AUTHENTICATED_ROUTES {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let body = (method != Method::GET && method != Method::DELETE)
            .then_some(("application/json", "{}"));
        let (status, code, _) = send(
            state_with(Some(HOOK), Some(GATEWAY)),
            method.clone(),
            path,
            Some(GATEWAY),
            body,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(code.as_deref(), Some("forbidden"), "{method} {path}");
    }
    // Nor the registry's hook, which takes its own token only.
    let (status, _, _) = send(
        state_with(Some(HOOK), Some(GATEWAY)),
        Method::POST,
        "/v1/registry/events",
        Some(GATEWAY),
        Some(("application/json", "{}")),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The hook token does not open the demand report either.
    let (status, _, _) = send(
        state_with(Some(HOOK), Some(GATEWAY)),
        Method::POST,
        "/v1/gateway/demand",
        Some(HOOK),
        Some(("application/json", DEMAND)),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_demand_report_is_404_when_off_and_takes_only_the_gateway_token() {
    for token in [Some(OPERATOR), Some(GATEWAY), None] {
        let (status, code, _) = send(
            state(None),
            Method::POST,
            "/v1/gateway/demand",
            token,
            Some(("application/json", DEMAND)),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{token:?}");
        assert_eq!(code.as_deref(), Some("not_found"));
    }
    // The operator's and any other token are refused before the database is asked (a tenant
    // token would otherwise be a 503 here, with the database down).
    for token in [Some(OPERATOR), Some("some-tenant-token"), None] {
        let (status, code, _) = send(
            state_with(None, Some(GATEWAY)),
            Method::POST,
            "/v1/gateway/demand",
            token,
            Some(("application/json", DEMAND)),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(code.as_deref(), Some("unauthorized"));
    }
    // The gateway's token gets through to the store (down here: 503), a bad body is a 400,
    // and a report larger than the admin API's body limit is still read.
    let (status, _, _) = send(
        state_with(None, Some(GATEWAY)),
        Method::POST,
        "/v1/gateway/demand",
        Some(GATEWAY),
        Some(("application/json", DEMAND)),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    for bad in [
        r#"{"gateway":"GW","apps":[]}"#,
        r#"{"gateway":"gw-1","apps":[{"app":"hello","held":-1,"in_flight":0}]}"#,
        r#"{"gateway":"gw-1"}"#,
        "{",
    ] {
        let (status, code, body) = send(
            state_with(None, Some(GATEWAY)),
            Method::POST,
            "/v1/gateway/demand",
            Some(GATEWAY),
            Some(("application/json", bad)),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(code.as_deref(), Some("invalid"));
    }
    let many: Vec<String> = (0..100)
        .map(|i| format!(r#"{{"app":"app-{i}","held":0,"in_flight":{i}}}"#))
        .collect();
    let big = format!(r#"{{"gateway":"gw-1","apps":[{}]}}"#, many.join(","));
    assert!(big.len() > 1024, "over the test router's 1 KiB limit");
    let (status, _, _) = send(
        state_with(None, Some(GATEWAY)),
        Method::POST,
        "/v1/gateway/demand",
        Some(GATEWAY),
        Some(("application/json", &big)),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "read, then the store is down"
    );
}

#[tokio::test]
async fn healthz_names_what_is_down() {
    let (status, _, body) = send(state(None), Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["database"], false);
    assert_eq!(body["zookeeper"], false);
    assert_eq!(body["status"], "degraded");
}

#[test]
fn every_scheduler_error_maps_to_its_status_and_code() {
    use super::error::ApiError;
    use crate::Error as E;
    let engine = E::Engine {
        host: "h1".into(),
        source: caas_deployer::Error::ContainerNotFound("c".into()),
    };
    let zk = E::Zookeeper(caas_registry::Error::Malformed {
        path: "/caas".into(),
        reason: "x".into(),
    });
    let cases = [
        (E::Conflict("x".into()), StatusCode::CONFLICT, "conflict"),
        (E::NotFound("x".into()), StatusCode::NOT_FOUND, "not_found"),
        (
            E::Unplaceable("x".into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unplaceable",
        ),
        (
            E::ImageNotFound("x".into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "image_not_found",
        ),
        (E::Invalid("x".into()), StatusCode::BAD_REQUEST, "invalid"),
        (
            E::Database("x".into()),
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
        ),
        (
            E::Contention { attempts: 3 },
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
        ),
        (engine, StatusCode::BAD_GATEWAY, "upstream"),
        (
            E::Incomplete("x".into()),
            StatusCode::BAD_GATEWAY,
            "upstream",
        ),
        (E::Timeout("x".into()), StatusCode::BAD_GATEWAY, "upstream"),
        (E::Registry("x".into()), StatusCode::BAD_GATEWAY, "upstream"),
        (zk, StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        (
            E::NotLeader("x".into()),
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
        ),
        (
            E::SecretsOff("x".into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "secrets_disabled",
        ),
        (
            E::Secrets(crate::app_config::crypto::CryptoError::Open),
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
        ),
        (
            E::Config("x".into()),
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
        ),
    ];
    for (error, status, code) in cases {
        let shown = error.to_string();
        let api = ApiError::from(error);
        assert_eq!(api.status_and_code(), (status, code), "{shown}");
    }
}

#[test]
fn an_engine_error_keeps_its_source_and_image_not_found_stays_distinct() {
    use std::error::Error as _;
    let e = crate::Error::engine("h1", caas_deployer::Error::ContainerNotFound("c".into()));
    assert!(e.source().is_some(), "the deployer's error is the source");
    assert!(e.to_string().starts_with("host h1: "), "{e}");
    let missing = crate::Error::engine(
        "h1",
        caas_deployer::Error::ImageNotFound {
            image: "r/app:v9".into(),
            message: "manifest unknown".into(),
        },
    );
    assert!(
        matches!(missing, crate::Error::ImageNotFound(_)),
        "{missing}"
    );
}
