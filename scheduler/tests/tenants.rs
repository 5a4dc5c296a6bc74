//! Tenants that cannot touch each other, against the real MariaDB, ZooKeeper, Docker engine and
//! registry (hello and busybox images): another tenant's token on every endpoint and every kind
//! of object answers 404 (403 for operator-only ones) and changes nothing; quotas hold under
//! concurrent claims; token rotation; the domain policy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/db.rs"]
mod db;
#[path = "common/platform.rs"]
mod platform;

use caas_testkit::eventually;
use platform::{Platform, TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Creates a tenant; its token.
async fn tenant(p: &Platform, body: Value) -> String {
    let (s, t) = p.call("POST", "/v1/tenants", Some(body), TOKEN).await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    t["token"].as_str().expect("token").to_owned()
}

/// Waits until a job or workflow is final.
async fn finished(p: &Platform, path: &str) {
    eventually("final", || async {
        let (_, v) = p.call("GET", path, None, TOKEN).await;
        matches!(
            v["state"].as_str(),
            Some("succeeded" | "failed" | "cancelled" | "timed_out")
        )
        .then_some(())
    })
    .await;
}

/// Everything the operator sees of acme's objects, to compare before and after.
async fn acme_state(p: &Platform, acme: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for path in [
        "/v1/apps/hello",
        "/v1/apps/hello/config",
        "/v1/apps/hello/releases",
        "/v1/apps/hello/instances",
        "/v1/apps/hello/schedules",
        "/v1/apps/busybox/jobs",
        "/v1/workflows",
        "/v1/tenants/acme",
    ] {
        let (s, mut v) = p.call("GET", path, None, TOKEN).await;
        assert_eq!(s, StatusCode::OK, "{path}: {v}");
        if let Some(instances) = v.as_array_mut() {
            for i in instances {
                // Health checks move on their own; what matters is which objects exist.
                if let Some(o) = i.as_object_mut() {
                    o.remove("last_check");
                }
            }
        }
        out.push(v);
    }
    let (_, hooks) = p.call("GET", "/v1/webhooks", None, acme).await;
    out.push(hooks);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_tenants_token_opens_nothing_and_changes_nothing() {
    let p = Platform::new(&[]).await;
    caas_testkit::docker::busybox_image(&p.docker).await;
    p.add_hosts(1, 1024, 2.0).await;
    let acme = tenant(&p, json!({"name": "acme", "domains": ["acme.example"]})).await;
    let globex = tenant(&p, json!({"name": "globex", "domains": ["globex.example"]})).await;

    // acme owns one of every kind of object.
    for app in ["hello", "busybox"] {
        p.expect(
            StatusCode::CREATED,
            "POST",
            "/v1/apps",
            Some(json!({"id": app})),
            &acme,
        )
        .await;
    }
    let deploy = json!({"version": "v1", "instances": 1, "memory_mb": 64, "cpus": 0.1});
    p.expect(
        StatusCode::CREATED,
        "POST",
        "/v1/apps/hello/deployments",
        Some(deploy),
        &acme,
    )
    .await;
    let domain = json!({"domain": "www.acme.example"});
    p.expect(
        StatusCode::CREATED,
        "POST",
        "/v1/apps/hello/domains",
        Some(domain),
        &acme,
    )
    .await;
    let config = json!({"vars": {"A": "1"}, "secrets": {"S": "hidden"}});
    p.expect(
        StatusCode::OK,
        "PATCH",
        "/v1/apps/hello/config",
        Some(config),
        &acme,
    )
    .await;
    let schedule = json!({"name": "yearly", "cron": "0 0 1 1 *",
                          "job": {"version": "v1", "command": ["true"], "memory_mb": 32}});
    p.expect(
        StatusCode::CREATED,
        "POST",
        "/v1/apps/busybox/schedules",
        Some(schedule),
        &acme,
    )
    .await;
    let job = json!({"version": "v1", "command": ["echo", "acme"], "memory_mb": 32});
    let job = p
        .expect(
            StatusCode::CREATED,
            "POST",
            "/v1/apps/busybox/jobs",
            Some(job),
            &acme,
        )
        .await;
    let jid = job["id"].as_str().unwrap().to_owned();
    finished(&p, &format!("/v1/apps/busybox/jobs/{jid}")).await;
    let step = |name: &str, cmd: &[&str]| json!({"name": name, "app": "busybox", "version": "v1", "command": cmd, "memory_mb": 32});
    let wf = json!({"name": "pipe", "steps": [step("gen", &["echo", "x"]), step("cat", &["cat"])]});
    let wf = p
        .expect(
            StatusCode::CREATED,
            "POST",
            "/v1/workflows",
            Some(wf),
            &acme,
        )
        .await;
    let wid = wf["id"].as_str().unwrap().to_owned();
    finished(&p, &format!("/v1/workflows/{wid}")).await;
    let hook = json!({"url": "http://127.0.0.1:9/hook", "events": ["deploy.succeeded"],
                      "secret": "a-webhook-secret-of-acme"});
    let hook = p
        .expect(
            StatusCode::CREATED,
            "POST",
            "/v1/webhooks",
            Some(hook),
            &acme,
        )
        .await;
    let hid = hook["id"].to_string();
    let (_, instances) = p.call("GET", "/v1/apps/hello/instances", None, &acme).await;
    let iid = instances[0]["id"].as_str().expect("an instance").to_owned();
    let before = acme_state(&p, &acme).await;

    // Every endpoint that names one of acme's objects, as globex: 404, as if it did not exist.
    let scale = json!({"instances": 3});
    let not_found: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/v1/apps/hello".into(), None),
        (
            "PATCH",
            "/v1/apps/hello".into(),
            Some(json!({"auto_deploy": true})),
        ),
        ("DELETE", "/v1/apps/hello".into(), None),
        ("GET", "/v1/apps/hello/tags".into(), None),
        ("GET", "/v1/apps/hello/releases".into(), None),
        ("POST", "/v1/apps/hello/rollback".into(), Some(json!({}))),
        ("GET", "/v1/apps/hello/config".into(), None),
        (
            "PATCH",
            "/v1/apps/hello/config".into(),
            Some(json!({"vars": {"A": "2"}})),
        ),
        ("POST", "/v1/apps/hello/restart".into(), None),
        ("GET", "/v1/apps/hello/logs".into(), None),
        (
            "POST",
            "/v1/apps/hello/domains".into(),
            Some(json!({"domain": "x.globex.example"})),
        ),
        (
            "DELETE",
            "/v1/apps/hello/domains/www.acme.example".into(),
            None,
        ),
        ("GET", "/v1/apps/hello/instances".into(), None),
        ("DELETE", format!("/v1/apps/hello/instances/{iid}"), None),
        ("GET", "/v1/apps/hello/deployments".into(), None),
        (
            "POST",
            "/v1/apps/hello/deployments".into(),
            Some(json!({"version": "v2", "memory_mb": 64, "cpus": 0.1})),
        ),
        ("GET", "/v1/apps/hello/deployments/v1".into(), None),
        ("PUT", "/v1/apps/hello/deployments/v1".into(), Some(scale)),
        ("DELETE", "/v1/apps/hello/deployments/v1".into(), None),
        ("GET", "/v1/apps/busybox/jobs".into(), None),
        (
            "POST",
            "/v1/apps/busybox/jobs".into(),
            Some(json!({"version": "v1", "command": ["true"]})),
        ),
        ("GET", format!("/v1/apps/busybox/jobs/{jid}"), None),
        ("GET", format!("/v1/apps/busybox/jobs/{jid}/logs"), None),
        ("DELETE", format!("/v1/apps/busybox/jobs/{jid}"), None),
        ("GET", "/v1/apps/busybox/schedules".into(), None),
        ("DELETE", "/v1/apps/busybox/schedules/yearly".into(), None),
        (
            "POST",
            "/v1/apps/busybox/schedules".into(),
            Some(json!({"name": "x", "cron": "0 0 1 1 *",
                        "job": {"version": "v1", "command": ["true"]}})),
        ),
        ("GET", format!("/v1/workflows/{wid}"), None),
        ("GET", format!("/v1/workflows/{wid}/output"), None),
        ("GET", format!("/v1/workflows/{wid}/steps/0/logs"), None),
        ("DELETE", format!("/v1/workflows/{wid}"), None),
        ("DELETE", format!("/v1/webhooks/{hid}"), None),
        (
            "POST",
            "/v1/workflows".into(),
            Some(json!({"name": "steal", "steps": [step("a", &["true"]), step("b", &["true"])]})),
        ),
    ];
    for (method, path, body) in not_found {
        let (s, v) = p.call(method, &path, body, &globex).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path} as globex: {v}");
        assert!(
            !v.to_string().contains("acme"),
            "{method} {path} names the owner: {v}"
        );
    }
    // Operator-only endpoints: 403 for any tenant.
    let forbidden: Vec<(&str, &str, Option<Value>)> = vec![
        ("GET", "/v1/hosts", None),
        (
            "POST",
            "/v1/hosts",
            Some(
                json!({"name": "x", "address": "127.0.0.9", "memory_mb": 64, "cpus": 1,
                        "docker": "unix:///var/run/docker.sock"}),
            ),
        ),
        ("GET", "/v1/hosts/h1", None),
        ("PATCH", "/v1/hosts/h1", Some(json!({"state": "draining"}))),
        ("DELETE", "/v1/hosts/h1", None),
        ("GET", "/v1/tenants", None),
        ("POST", "/v1/tenants", Some(json!({"name": "evil"}))),
        ("GET", "/v1/tenants/acme", None),
        (
            "PATCH",
            "/v1/tenants/globex",
            Some(json!({"domains": ["acme.example"]})),
        ),
        ("POST", "/v1/tenants/acme/token", None),
        ("DELETE", "/v1/tenants/acme", None),
        ("GET", "/v1/blacklist", None),
        ("POST", "/v1/blacklist", Some(json!({"rule": "10.0.0.1"}))),
        // Refused before the body is read: a malformed one is 403 too, never a 400 that
        // would tell a tenant about the endpoint's fields.
        ("POST", "/v1/hosts", Some(json!({"name": 7}))),
        ("POST", "/v1/tenants", Some(json!(["not", "an", "object"]))),
        ("PATCH", "/v1/hosts/h1", Some(json!({"state": "sideways"}))),
    ];
    for (method, path, body) in forbidden {
        let (s, v) = p.call(method, path, body, &globex).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method} {path} as globex: {v}");
    }
    // Lists show none of acme's objects.
    for path in ["/v1/apps", "/v1/workflows", "/v1/webhooks", "/v1/events"] {
        let (s, v) = p.call("GET", path, None, &globex).await;
        assert_eq!(s, StatusCode::OK, "{path}");
        let text = v.to_string();
        assert!(
            !text.contains("hello") && !text.contains("busybox") && !text.contains(&wid),
            "{path} as globex shows acme's objects: {v}"
        );
    }
    // A taken id: 409, without saying whose.
    let (s, v) = p
        .call("POST", "/v1/apps", Some(json!({"id": "hello"})), &globex)
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(!v.to_string().contains("acme"), "{v}");
    // And nothing changed.
    assert_eq!(acme_state(&p, &acme).await, before);
    let (_, v) = p.call("GET", "/v1/apps/hello/config", None, &acme).await;
    assert!(
        !v.to_string().contains("hidden"),
        "a secret's value is never shown: {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quotas_hold_under_concurrent_claims() {
    let p = Platform::new(&[]).await;
    caas_testkit::docker::busybox_image(&p.docker).await;
    p.add_hosts(2, 2048, 4.0).await;
    let acme = tenant(
        &p,
        json!({"name": "acme", "quota": {"max_apps": 2, "max_instances": 3,
                                          "max_memory_mb": 512, "max_cpus": 2}}),
    )
    .await;

    // max_apps under 8 concurrent creations: exactly 2.
    let creations = (0..8).map(|i| {
        let (p, acme) = (&p, &acme);
        async move {
            let id = if i == 0 {
                "busybox".to_owned()
            } else {
                format!("app{i}")
            };
            p.call("POST", "/v1/apps", Some(json!({"id": id})), acme)
                .await
        }
    });
    let results = futures::future::join_all(creations).await;
    let created = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 2, "{results:?}");
    for (s, v) in &results {
        if *s != StatusCode::CREATED {
            assert_eq!(
                (*s, v["error"]["code"].as_str()),
                (StatusCode::FORBIDDEN, Some("quota_exceeded")),
                "{v}"
            );
        }
    }
    let (_, apps) = p.call("GET", "/v1/apps", None, &acme).await;
    if !apps.to_string().contains("busybox") {
        // The busybox app lost the race: free a slot for it.
        let other = apps[0]["id"].as_str().unwrap().to_owned();
        p.expect(
            StatusCode::NO_CONTENT,
            "DELETE",
            &format!("/v1/apps/{other}"),
            None,
            &acme,
        )
        .await;
        p.expect(
            StatusCode::CREATED,
            "POST",
            "/v1/apps",
            Some(json!({"id": "busybox"})),
            &acme,
        )
        .await;
    }

    // max_instances under 8 concurrent jobs (each a claim): exactly 3 run at once.
    let jobs = (0..8).map(|_| {
        let (p, acme) = (&p, &acme);
        async move {
            let body = json!({"version": "v1", "command": ["sleep", "30"], "memory_mb": 32,
                              "cpus": 0.1});
            p.call("POST", "/v1/apps/busybox/jobs", Some(body), acme)
                .await
        }
    });
    let results = futures::future::join_all(jobs).await;
    let started: Vec<String> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .map(|(_, v)| v["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(started.len(), 3, "{results:?}");
    for (s, v) in &results {
        if *s != StatusCode::CREATED {
            assert_eq!(
                (*s, v["error"]["code"].as_str()),
                (StatusCode::FORBIDDEN, Some("quota_exceeded")),
                "{v}"
            );
        }
    }
    let (_, t) = p.call("GET", "/v1/tenants/acme", None, TOKEN).await;
    assert_eq!(t["usage"]["instances"], 3, "{t}");
    assert_eq!(t["quota"]["max_instances"], 3, "{t}");
    for id in &started {
        // A running job is cancelled: 200 with the job as it ended.
        p.expect(
            StatusCode::OK,
            "DELETE",
            &format!("/v1/apps/busybox/jobs/{id}"),
            None,
            &acme,
        )
        .await;
    }
    eventually("the jobs' claims released", || async {
        let (_, t) = p.call("GET", "/v1/tenants/acme", None, TOKEN).await;
        (t["usage"]["instances"] == 0).then_some(())
    })
    .await;

    // Memory: one job over what is left is refused and leaves nothing behind.
    let body = json!({"version": "v1", "command": ["true"], "memory_mb": 600});
    let v = p
        .expect(
            StatusCode::FORBIDDEN,
            "POST",
            "/v1/apps/busybox/jobs",
            Some(body),
            &acme,
        )
        .await;
    assert_eq!(v["error"]["code"], "quota_exceeded", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("memory"),
        "{v}"
    );

    // Raising the quota lets it through; removing it makes the tenant unlimited.
    let v = p
        .expect(
            StatusCode::OK,
            "PATCH",
            "/v1/tenants/acme",
            Some(json!({"quota": null})),
            TOKEN,
        )
        .await;
    assert!(v.get("quota").is_none(), "{v}");
    p.expect(
        StatusCode::CREATED,
        "POST",
        "/v1/apps",
        Some(json!({"id": "third"})),
        &acme,
    )
    .await;

    // Bad quotas name the field.
    for (bad, field) in [
        (json!({"max_cpus": -1}), "max_cpus"),
        (json!({"max_apps": 2_000_000}), "max_apps"),
        (json!({"max_memory": 1}), "max_memory"),
    ] {
        let v = p
            .expect(
                StatusCode::BAD_REQUEST,
                "POST",
                "/v1/tenants",
                Some(json!({"name": "bad", "quota": bad})),
                TOKEN,
            )
            .await;
        assert!(
            v["error"]["message"].as_str().unwrap().contains(field),
            "{field}: {v}"
        );
    }
    p.assert_empty("after the quota checks").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_fails_at_once() {
    let p = Platform::new(&[]).await;
    let old = tenant(&p, json!({"name": "acme"})).await;
    p.expect(StatusCode::OK, "GET", "/v1/apps", None, &old)
        .await;
    p.expect(
        StatusCode::FORBIDDEN,
        "POST",
        "/v1/tenants/acme/token",
        None,
        &old,
    )
    .await;
    let v = p
        .expect(
            StatusCode::OK,
            "POST",
            "/v1/tenants/acme/token",
            None,
            TOKEN,
        )
        .await;
    assert_eq!(v["name"], "acme");
    let new = v["token"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    p.expect(StatusCode::UNAUTHORIZED, "GET", "/v1/apps", None, &old)
        .await;
    p.expect(StatusCode::OK, "GET", "/v1/apps", None, &new)
        .await;
    p.expect(
        StatusCode::NOT_FOUND,
        "POST",
        "/v1/tenants/nobody/token",
        None,
        TOKEN,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_domains_follow_the_suffixes_the_operator_gave() {
    let p = Platform::new(&[]).await;
    let acme = tenant(&p, json!({"name": "acme", "domains": ["acme.example"]})).await;
    let globex = tenant(&p, json!({"name": "globex"})).await;
    p.expect(
        StatusCode::CREATED,
        "POST",
        "/v1/apps",
        Some(json!({"id": "shop"})),
        &acme,
    )
    .await;
    p.expect(
        StatusCode::CREATED,
        "POST",
        "/v1/apps",
        Some(json!({"id": "mall"})),
        &globex,
    )
    .await;
    let add = |app: &'static str, domain: &str| {
        (
            format!("/v1/apps/{app}/domains"),
            Some(json!({"domain": domain})),
        )
    };
    // Under its suffix: yes. Elsewhere, under the platform's domain: 403.
    let (path, body) = add("shop", "www.acme.example");
    p.expect(StatusCode::CREATED, "POST", &path, body, &acme)
        .await;
    for bad in [
        "www.globex.example",
        "notacme.example",
        "mall.caas.localhost",
        "caas.localhost",
    ] {
        let (path, body) = add("shop", bad);
        let v = p
            .expect(StatusCode::FORBIDDEN, "POST", &path, body, &acme)
            .await;
        assert_eq!(v["error"]["code"], "forbidden", "{bad}: {v}");
    }
    // globex has no suffix: no custom domain at all, even one nobody holds.
    let (path, body) = add("mall", "mall.example");
    p.expect(StatusCode::FORBIDDEN, "POST", &path, body, &globex)
        .await;
    // The operator gives globex a suffix; one overlapping acme's or the platform's is refused.
    for (bad, status) in [
        ("shop.acme.example", StatusCode::CONFLICT),
        ("example", StatusCode::BAD_REQUEST),
        ("x.caas.localhost", StatusCode::BAD_REQUEST),
    ] {
        let body = json!({"domains": [bad]});
        let (s, v) = p
            .call("PATCH", "/v1/tenants/globex", Some(body), TOKEN)
            .await;
        if bad == "example" {
            // "example" is one label: not a domain at all.
            assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
            continue;
        }
        assert_eq!(s, status, "{bad}: {v}");
        let m = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            m.ends_with("overlaps a suffix another tenant holds")
                || m.contains("the platform's domain"),
            "says why, never whose: {v}"
        );
    }
    let body = json!({"domains": ["globex.example"]});
    let v = p
        .expect(
            StatusCode::OK,
            "PATCH",
            "/v1/tenants/globex",
            Some(body),
            TOKEN,
        )
        .await;
    assert_eq!(v["domains"], json!(["globex.example"]));
    let (path, body) = add("mall", "www.globex.example");
    p.expect(StatusCode::CREATED, "POST", &path, body, &globex)
        .await;
    // A suffix is not taken away while a name below it is routed: the route would outlive
    // the right to it.
    let body = Some(json!({"domains": []}));
    let v = p
        .expect(
            StatusCode::CONFLICT,
            "PATCH",
            "/v1/tenants/globex",
            body,
            TOKEN,
        )
        .await;
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("www.globex.example")),
        "{v}"
    );
    // A domain another app holds: 409, whoever asks, without saying who holds it.
    p.expect(
        StatusCode::CREATED,
        "POST",
        "/v1/apps",
        Some(json!({"id": "ops"})),
        TOKEN,
    )
    .await;
    let (path, body) = add("ops", "www.globex.example");
    let v = p
        .expect(StatusCode::CONFLICT, "POST", &path, body, TOKEN)
        .await;
    assert!(
        !v.to_string().contains("mall") && !v.to_string().contains("globex\""),
        "{v}"
    );
    // The operator's own app takes any name outside the platform's domain.
    let (path, body) = add("ops", "status.example.org");
    p.expect(StatusCode::CREATED, "POST", &path, body, TOKEN)
        .await;
    let (path, body) = add("ops", "ops.caas.localhost");
    p.expect(StatusCode::FORBIDDEN, "POST", &path, body, TOKEN)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_address_that_keeps_guessing_tokens_is_stopped_before_any_lookup() {
    let p = Platform::new(&["--auth-failures-per-minute", "5"]).await;
    let acme = tenant(&p, json!({"name": "acme"})).await;
    for i in 0..5 {
        let (s, v) = p
            .call("GET", "/v1/apps", None, &format!("guess-number-{i}"))
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "guess {i}: {v}");
    }
    let resp = p
        .http
        .get(format!("{}/v1/apps", p.api))
        .bearer_auth("guess-number-5")
        .send()
        .await
        .expect("admin API reachable");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = resp.headers()["retry-after"]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=12).contains(&wait), "{wait}");
    let body: Value = resp.json().await.expect("error body");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    // The address is held for tenants' tokens too (they need the same lookup); the operator's
    // token, compared in memory, still works.
    let (s, _) = p.call("GET", "/v1/apps", None, &acme).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    let (s, _) = p.call("GET", "/v1/hosts", None, TOKEN).await;
    assert_eq!(s, StatusCode::OK);
}
