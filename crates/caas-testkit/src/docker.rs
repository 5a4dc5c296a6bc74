//! The real Docker engine and registry from `scripts/up`, through `caas-deployer` (never
//! `bollard` directly): a checked `Deployer`, the hello and busybox images, and a container
//! namespace per test whose containers are removed on drop, even when the test failed.

use crate::{clean_up, unique, var, HOW};
use caas_deployer::{Deployer, DockerEndpoint, RegistryCredentials};
use std::fmt;

/// The engine the tests use (`CAAS_DOCKER`); panics, saying how to set it, when it is missing
/// or not an engine URL.
pub fn endpoint() -> DockerEndpoint {
    let url = var("CAAS_DOCKER");
    url.parse()
        .unwrap_or_else(|e| panic!("CAAS_DOCKER={url} is not an engine URL ({e}): {HOW}"))
}

/// A client of the tests' engine, checked to answer; panics, saying how to start it, when it
/// does not.
pub async fn deployer() -> Deployer {
    let endpoint = endpoint();
    let d = Deployer::connect(&endpoint)
        .unwrap_or_else(|e| panic!("cannot reach docker at {endpoint} ({e}): {HOW}"));
    if let Err(e) = d.ping().await {
        panic!("docker at {endpoint} does not answer ({e}): {HOW}");
    }
    d
}

/// The registry's credentials (`CAAS_REGISTRY_USER` / `CAAS_REGISTRY_PASSWORD`, which
/// `scripts/up` writes to `.caas/env`), if it asks for any.
pub fn registry_credentials() -> Option<RegistryCredentials> {
    RegistryCredentials::from_env(&var("CAAS_REGISTRY"))
}

/// `{CAAS_REGISTRY}/hello:{tag}`, pulled first if the engine lacks it.
pub async fn hello_image(d: &Deployer, tag: &str) -> String {
    let image = format!("{}/hello:{tag}", var("CAAS_REGISTRY"));
    pulled(d, image, "build-hello").await
}

/// `{CAAS_REGISTRY}/busybox:v1`, pulled first if the engine lacks it: Debian's static busybox
/// in a `FROM scratch` image (`scripts/build-busybox`), for tests of containers that run a
/// command to completion (`sh`, `cat`, `wc`, `seq`, `tr`, `sleep`, `true`, `false`).
pub async fn busybox_image(d: &Deployer) -> String {
    let image = format!("{}/busybox:v1", var("CAAS_REGISTRY"));
    pulled(d, image, "build-busybox").await
}

/// `image` on the engine of `d`, pulled from the registry if it is not there yet; panics,
/// naming the script that pushes it, when it cannot be had.
async fn pulled(d: &Deployer, image: String, script: &str) -> String {
    let present = d
        .image_present(&image)
        .await
        .unwrap_or_else(|e| panic!("cannot look {image} up on the engine ({e}): {HOW}"));
    if !present {
        d.pull_to_end(&image, registry_credentials().as_ref())
            .await
            .unwrap_or_else(|e| {
                panic!("cannot pull {image} ({e}): {HOW} (its scripts/{script} pushes it)")
            });
    }
    image
}

/// A test's own value of the `caas.managed` label; every container carrying it is removed on
/// drop (through the deployer), so a failing test leaves nothing behind either.
pub struct Namespace {
    value: String,
    endpoint: DockerEndpoint,
}

impl Namespace {
    /// A fresh namespace, `t-{test}-{unique}`; `test` (lower-case) tells whose it is.
    pub fn new(test: &str) -> Namespace {
        Namespace {
            value: unique(&format!("t-{test}")),
            endpoint: endpoint(),
        }
    }

    /// The label value.
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// A container name unique to this namespace: `caas-{namespace}-{suffix}`.
    pub fn container_name(&self, suffix: &str) -> String {
        format!("caas-{}-{suffix}", self.value)
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let (endpoint, namespace) = (self.endpoint.clone(), self.value.clone());
        // A client of its own: the test's may hold connections driven by the test's runtime.
        clean_up(&format!("containers of {namespace}"), move || async move {
            let d = Deployer::connect(&endpoint).map_err(|e| e.to_string())?;
            let containers = d
                .list_managed(&namespace)
                .await
                .map_err(|e| e.to_string())?;
            for c in containers {
                d.remove(&c.id).await.map_err(|e| e.to_string())?;
            }
            Ok(())
        });
    }
}
