//! App ids are not inherited: `DELETE /v1/apps/{app}` purges the manifests the app's registry
//! repository holds (its tags' and the digests its releases pinned), so whoever creates the id
//! next never runs the old owner's images, while an image pushed after the delete is the new
//! owner's. A registry that cannot be reached fails the delete before the app goes, and
//! deleting again retries. Against the real MariaDB, ZooKeeper, Docker engine and registry, with
//! images copied into a repository of the test's own (the shared `hello` images are never
//! touched).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/db.rs"]
mod db;
#[path = "common/image_registry.rs"]
mod image_registry;
#[path = "common/platform.rs"]
mod platform;

use caas_testkit::{unique_u64, var};
use image_registry::ImageRegistry;
use platform::{Platform, TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn spec(version: &str) -> Value {
    json!({"version": version, "instances": 1, "memory_mb": 64, "cpus": 0.1})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_apps_images_are_purged_and_a_new_owner_runs_only_what_it_pushed() {
    let mut p = Platform::new(&["--purge-images", "true"]).await;
    p.add_hosts(1, 512, 2.0).await;
    let registry = ImageRegistry::new();
    let app = format!("purge{}", unique_u64() % 1_000_000_000);
    p.create_app(&app).await;

    // v1 deployed (its release pins d1), then v1 pushed again with v2's image: d1 is left
    // untagged but still in the repository, as a re-push leaves it.
    registry.copy("hello", "v1", &app, "v1").await;
    registry.copy("hello", "v2", &app, "v2").await;
    let d1 = registry.digest(&app, "v1").await.expect("pushed");
    let d2 = registry.digest(&app, "v2").await.expect("pushed");
    assert_ne!(d1, d2);
    p.deploy(&app, spec("v1")).await;
    registry.copy("hello", "v2", &app, "v1").await;
    assert_eq!(registry.digest(&app, "v1").await.as_ref(), Some(&d2));
    assert!(registry.digest(&app, &d1).await.is_some(), "untagged, kept");

    // The registry down: the delete fails naming it, after undeploying, and the app stays.
    p.stop().await;
    let registry_addr = p.config.registry.clone();
    let down = format!("127.0.0.1:{}", platform::free_port());
    p.config.registry = down.clone();
    p.start().await;
    let path = format!("/v1/apps/{app}");
    let (s, e) = p.call("DELETE", &path, None, TOKEN).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{e}");
    let message = e["error"]["message"].as_str().unwrap();
    assert_eq!(
        message,
        format!("registry {down} unreachable while purging {down}/{app}"),
        "{e}"
    );
    let (s, a) = p.call("GET", &path, None, TOKEN).await;
    assert_eq!(s, StatusCode::OK, "the app is still there: {a}");
    assert!(
        p.containers().await.is_empty(),
        "undeployed before the purge"
    );
    assert!(
        registry.digest(&app, "v2").await.is_some(),
        "nothing purged"
    );

    // The registry back: deleting again purges every manifest, tagged or pinned.
    p.stop().await;
    p.config.registry = registry_addr;
    p.start().await;
    let (s, e) = p.call("DELETE", &path, None, TOKEN).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{e}");
    for reference in ["v1", "v2", d1.as_str(), d2.as_str()] {
        assert_eq!(
            registry.digest(&app, reference).await,
            None,
            "{app}:{reference} purged"
        );
    }
    let (s, _) = p.call("GET", &path, None, TOKEN).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // A new owner of the id: the old tag deploys nothing.
    p.create_app(&app).await;
    let (s, e) = p
        .call(
            "POST",
            &format!("/v1/apps/{app}/deployments"),
            Some(spec("v1")),
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["code"], "image_not_found", "{e}");
    assert!(p.containers().await.is_empty());

    // What it pushes after the delete is its own and deploys.
    registry.copy("hello", "v2", &app, "v3").await;
    let d3 = registry.digest(&app, "v3").await.expect("pushed");
    let d = p.deploy(&app, spec("v3")).await;
    assert_eq!(
        d["image"],
        format!("{}/{app}@{d3}", var("CAAS_REGISTRY")).as_str()
    );
    assert_eq!(platform::instances(&d).len(), 1);

    // Deleting a never-pushed app's id (no repository) is fine; and this one's goes too.
    let empty = format!("purge{}", unique_u64() % 1_000_000_000);
    p.create_app(&empty).await;
    let (s, e) = p
        .call("DELETE", &format!("/v1/apps/{empty}"), None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{e}");
    let (s, e) = p.call("DELETE", &path, None, TOKEN).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{e}");
    assert_eq!(registry.digest(&app, "v3").await, None);
}
