//! Registry token auth end to end: a Docker Distribution process of this test's own
//! (`docker-registry serve`, Debian's 2.8) with `auth: token` whose realm is the in-process
//! scheduler's `GET /v1/registry/token`, a signing key and certificate made with `openssl`, and
//! real `docker login` / `docker push` through the engine under a private `DOCKER_CONFIG`.
//!
//! A tenant pushes to its own app's repository (accepted, recorded by the hook as
//! `tenant:{name}`), not to another tenant's (denied, nothing stored); the platform credential
//! pushes anywhere; a deploy of the tenant's app resolves its digest and pulls through tokens.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/db.rs"]
mod db;
#[path = "common/platform.rs"]
mod platform;

use base64::Engine as _;
use caas_testkit::{eventually, unique, HOW};
use platform::{free_port, Platform, TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const HOOK: &str = "registry-auth-hook-token";
const PLATFORM_USER: &str = "caas-platform-test";

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(unique("caas-regauth"));
        std::fs::create_dir_all(&dir).expect("create a scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The registry process, killed on drop.
struct RegistryProcess(Child);

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a command; its status, stdout and stderr.
fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} ({e}): {HOW}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A P-256 key (PKCS#8) and a self-signed certificate for it, as `scripts/up` makes them.
fn signing_key(dir: &Path) -> (PathBuf, PathBuf) {
    let (key, cert) = (dir.join("token.key"), dir.join("token.crt"));
    let (ok, out) = run(Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&key));
    assert!(ok, "openssl genpkey: {out}");
    let (ok, out) = run(Command::new("openssl")
        .args([
            "req",
            "-new",
            "-x509",
            "-days",
            "30",
            "-subj",
            "/CN=caas-registry-token",
            "-key",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    assert!(ok, "openssl req: {out}");
    (key, cert)
}

/// Starts `docker-registry` on `port` with token auth against the scheduler at `api`, the way
/// `scripts/up` does with `CAAS_REGISTRY_AUTH=token`: the committed
/// `registry-config/config.yml` with `REGISTRY_*` variables, `REGISTRY_AUTH` replacing its
/// htpasswd section.
fn start_registry(dir: &Path, port: u16, api: &str, cert: &Path) -> RegistryProcess {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../registry-config/config.yml");
    let auth = format!(
        r#"{{token: {{realm: "{api}/v1/registry/token", service: caas-registry, issuer: caas-scheduler, rootcertbundle: "{}"}}}}"#,
        cert.display()
    );
    let notifications = format!(
        r#"[{{name: caas-scheduler, url: "{api}/v1/registry/events", headers: {{Authorization: ["Bearer {HOOK}"]}}, timeout: 5s, threshold: 5, backoff: 1s, ignoredmediatypes: [application/octet-stream]}}]"#
    );
    let log = std::fs::File::create(dir.join("registry.log")).expect("registry log");
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .env(
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
            dir.join("storage"),
        )
        .env("REGISTRY_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("REGISTRY_HTTP_SECRET", "registry-auth-test-secret")
        .env("REGISTRY_AUTH", auth)
        .env("REGISTRY_NOTIFICATIONS_ENDPOINTS", notifications)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start docker-registry ({e}); install Debian's docker-registry: {HOW}")
        });
    RegistryProcess(child)
}

/// `docker` with this test's own credentials store.
fn docker(config: &Path) -> Command {
    let mut c = Command::new("docker");
    c.env("DOCKER_CONFIG", config);
    c
}

fn login(config: &Path, registry: &str, user: &str, password: &str) -> (bool, String) {
    let mut child = docker(config)
        .args(["login", registry, "-u", user, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run docker ({e}): {HOW}"));
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(password.as_bytes())
            .expect("write password");
    }
    let out = child.wait_with_output().expect("docker login");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Tags `source` as `target` and pushes it with the credentials in `config`.
fn push(config: &Path, source: &str, target: &str) -> (bool, String) {
    let (ok, out) = run(docker(config).args(["tag", source, target]));
    assert!(ok, "docker tag {source} {target}: {out}");
    let pushed = run(docker(config).args(["push", target]));
    // The local tag only: the image stays under its other names.
    let _ = run(docker(config).args(["rmi", target]));
    pushed
}

/// The token endpoint's answer for `user`/`password` and `scopes`.
async fn token(p: &Platform, user: &str, password: &str, scopes: &[&str]) -> (StatusCode, Value) {
    let mut query = vec![("service", "caas-registry")];
    query.extend(scopes.iter().map(|s| ("scope", *s)));
    let resp = p
        .http
        .get(format!("{}/v1/registry/token", p.api))
        .query(&query)
        .basic_auth(user, Some(password))
        .send()
        .await
        .expect("admin API reachable");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The `access` claim of a token (its payload, not verified: the registry verifies).
fn access(answer: &Value) -> Value {
    let jwt = answer["token"].as_str().expect("a token");
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    let claims: Value = serde_json::from_slice(&bytes).expect("JSON claims");
    claims["access"].clone()
}

/// The tags the registry holds for `repo`, asked with the platform credential.
async fn registry_tags(p: &Platform, registry: &str, repo: &str) -> Vec<String> {
    let scope = format!("repository:{repo}:pull");
    let (s, t) = token(p, PLATFORM_USER, &platform_password(), &[&scope]).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let resp = p
        .http
        .get(format!("http://{registry}/v2/{repo}/tags/list"))
        .bearer_auth(t["token"].as_str().expect("token"))
        .send()
        .await
        .expect("registry reachable");
    if resp.status() == StatusCode::NOT_FOUND {
        return Vec::new();
    }
    assert_eq!(resp.status(), StatusCode::OK, "tags of {repo}");
    let v: Value = resp.json().await.expect("tags JSON");
    v["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn platform_password() -> String {
    "platform-test-password-0123456789".to_owned()
}

async fn tenant(p: &Platform, name: &str) -> String {
    let (s, t) = p
        .call("POST", "/v1/tenants", Some(json!({"name": name})), TOKEN)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    t["token"].as_str().expect("tenant token").to_owned()
}

async fn tenant_app(p: &Platform, id: &str, token: &str) {
    let (s, a) = p
        .call("POST", "/v1/apps", Some(json!({"id": id})), token)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_pushes_only_to_its_own_apps_and_a_deploy_pulls_through_tokens() {
    let scratch = Scratch::new();
    let (key, cert) = signing_key(&scratch.0);
    let port = free_port();
    let registry = format!("127.0.0.1:{port}");
    let password = platform_password();
    let p = Platform::new(&[
        "--registry",
        registry.as_str(),
        "--registry-user",
        PLATFORM_USER,
        "--registry-password",
        password.as_str(),
        "--registry-hook-token",
        HOOK,
        "--registry-token-key",
        key.to_str().expect("utf-8 path"),
        "--registry-token-cert",
        cert.to_str().expect("utf-8 path"),
        // This registry is the test's own: deleting an app purges its repository here.
        "--purge-images",
        "true",
    ])
    .await;
    let _registry = start_registry(&scratch.0, port, &p.api, &cert);
    let http = p.http.clone();
    let v2 = format!("http://{registry}/v2/");
    eventually("the registry to answer", || {
        let (http, v2) = (http.clone(), v2.clone());
        async move {
            matches!(http.get(&v2).send().await, Ok(r) if r.status() == StatusCode::UNAUTHORIZED)
                .then_some(())
        }
    })
    .await;

    let acme = tenant(&p, "acme").await;
    let other = tenant(&p, "other").await;
    tenant_app(&p, "acme-web", &acme).await;
    tenant_app(&p, "other-web", &other).await;

    // The token endpoint: credentials checked, grants cut to what each caller may have.
    for (user, pw) in [
        ("acme", "wrong"),
        ("other", acme.as_str()),
        ("operator", "x"),
        (PLATFORM_USER, "x"),
    ] {
        let (s, _) = token(&p, user, pw, &[]).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{user}");
    }
    let (s, t) = token(
        &p,
        "acme",
        &acme,
        &[
            "repository:acme-web:pull,push",
            "repository:other-web:pull,push",
            "registry:catalog:*",
        ],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(
        access(&t),
        json!([{"type": "repository", "name": "acme-web", "actions": ["pull", "push"]}])
    );
    assert_eq!(t["expires_in"], 300);
    let (s, t) = token(&p, "operator", TOKEN, &["repository:other-web:push,pull"]).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(access(&t)[0]["actions"], json!(["push", "pull"]));

    // The registry checks the signature: acme's token with its grant rewritten to other-web
    // opens nothing, the genuine one opens acme-web.
    let (s, t) = token(&p, "acme", &acme, &["repository:acme-web:pull"]).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let jwt = t["token"].as_str().expect("a token").to_owned();
    let parts: Vec<&str> = jwt.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = String::from_utf8(b64.decode(parts[1]).expect("payload")).expect("utf-8");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(payload.replace("acme-web", "other-web")),
        parts[2]
    );
    for (repo, bearer, want) in [
        ("other-web", forged.as_str(), StatusCode::UNAUTHORIZED),
        ("acme-web", jwt.as_str(), StatusCode::NOT_FOUND),
    ] {
        let r = p
            .http
            .get(format!("http://{registry}/v2/{repo}/tags/list"))
            .bearer_auth(bearer)
            .send()
            .await
            .expect("registry reachable");
        // 404: allowed in, and the repository has nothing yet.
        assert_eq!(r.status(), want, "{repo}");
    }

    // Real pushes through the engine as the tenant.
    let hello = caas_testkit::docker::hello_image(&p.docker, "v1").await;
    let config = scratch.0.join("docker-config");
    std::fs::create_dir_all(&config).expect("docker config dir");
    let (ok, out) = login(&config, &registry, "acme", "not-the-token");
    assert!(!ok, "a wrong token logged in: {out}");
    let (ok, out) = login(&config, &registry, "acme", &acme);
    assert!(ok, "docker login as acme: {out}");
    let (ok, out) = push(&config, &hello, &format!("{registry}/acme-web:v1"));
    assert!(ok, "acme pushing to its own app: {out}");
    let (ok, out) = push(&config, &hello, &format!("{registry}/other-web:v1"));
    assert!(!ok, "acme pushed to another tenant's app: {out}");
    assert!(out.contains("denied"), "{out}");
    assert_eq!(registry_tags(&p, &registry, "acme-web").await, vec!["v1"]);
    assert!(registry_tags(&p, &registry, "other-web").await.is_empty());

    // The hook recorded the tenant's own push, by the tenant.
    let api = p.api.clone();
    eventually("acme's push to reach the hook", || {
        let (http, api, acme) = (p.http.clone(), api.clone(), acme.clone());
        async move {
            let Ok(r) = http
                .get(format!("{api}/v1/apps/acme-web/tags"))
                .bearer_auth(&acme)
                .send()
                .await
            else {
                return None;
            };
            let tags: Value = r.json().await.unwrap_or(Value::Null);
            tags.as_array()
                .is_some_and(|a| {
                    a.iter()
                        .any(|t| t["tag"] == "v1" && t["pushed_by"] == "tenant:acme")
                })
                .then_some(())
        }
    })
    .await;

    // The platform credential (the one in `.caas/env`) pushes to every repository.
    let platform_config = scratch.0.join("docker-config-platform");
    std::fs::create_dir_all(&platform_config).expect("docker config dir");
    let (ok, out) = login(&platform_config, &registry, PLATFORM_USER, &password);
    assert!(ok, "docker login with the platform credential: {out}");
    let (ok, out) = push(
        &platform_config,
        &hello,
        &format!("{registry}/other-web:v1"),
    );
    assert!(ok, "the platform credential pushing to other-web: {out}");

    // A deploy of acme's app: the digest resolved (HEAD with a token) and the engine's pull
    // (the platform credential, through the realm) both pass. The engine must not have the
    // pinned reference already, or the deploy would not pull.
    let (s, tags) = p.call("GET", "/v1/apps/acme-web/tags", None, &acme).await;
    assert_eq!(s, StatusCode::OK, "{tags}");
    let digest = tags[0]["digest"].as_str().expect("a digest").to_owned();
    let pinned = format!("{registry}/acme-web@{digest}");
    let _ = run(docker(&config).args(["rmi", &pinned]));
    let (present, out) = run(docker(&config).args(["image", "inspect", &pinned]));
    assert!(!present, "the engine still has {pinned}: {out}");
    p.add_hosts(1, 512, 2.0).await;
    let (s, d) = p
        .call(
            "POST",
            "/v1/apps/acme-web/deployments",
            Some(json!({"version": "v1", "instances": 1, "memory_mb": 64, "cpus": 0.1})),
            &acme,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "deploying acme-web:v1: {d}");
    let (s, instances) = p
        .call("GET", "/v1/apps/acme-web/instances", None, &acme)
        .await;
    assert_eq!(s, StatusCode::OK, "{instances}");
    assert_eq!(instances.as_array().map(Vec::len), Some(1), "{instances}");
    let image = p.containers().await.first().map(|c| c.image.clone());
    assert_eq!(image.as_deref(), Some(pinned.as_str()));
    let (present, out) = run(docker(&config).args(["image", "inspect", &pinned]));
    assert!(present, "{pinned} was not pulled: {out}");

    // Deleting the app undeploys it and purges its repository through a token of the
    // platform credential (`pull,delete`); the next owner of the id finds nothing.
    let (s, d) = p.call("DELETE", "/v1/apps/acme-web", None, &acme).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "deleting acme-web: {d}");
    assert!(registry_tags(&p, &registry, "acme-web").await.is_empty());
    assert_eq!(registry_tags(&p, &registry, "other-web").await, vec!["v1"]);
    // Leave no reference to this test's registry on the shared engine.
    let _ = run(docker(&config).args(["rmi", &pinned]));
}
