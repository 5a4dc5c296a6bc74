//! The platform's image registry over its HTTP API, with the platform's credentials (and a
//! token from the realm when the registry has `auth: token`): copy an image between
//! repositories as a push would, read what a reference points to, delete a manifest. Tests
//! copy the shared `hello` images into a repository of their own, so re-pushing or deleting
//! never touches them.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use caas_testkit::{var, var_opt};
use reqwest::StatusCode;
use serde_json::Value;

const MANIFEST_TYPES: &str = "application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

/// The platform's image registry over HTTP, with the platform's credentials.
pub struct ImageRegistry {
    base: String,
    http: reqwest::Client,
    auth: Option<(String, String)>,
}

impl ImageRegistry {
    pub fn new() -> ImageRegistry {
        let auth = var_opt("CAAS_REGISTRY_USER").map(|u| {
            let pw = var_opt("CAAS_REGISTRY_PASSWORD").unwrap_or_default();
            (u, pw)
        });
        ImageRegistry {
            base: format!("http://{}", var("CAAS_REGISTRY")),
            http: reqwest::Client::new(),
            auth,
        }
    }

    fn req(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, url);
        match &self.auth {
            Some((u, p)) => r.basic_auth(u, Some(p)),
            None => r,
        }
    }

    /// Sends `rb`; a registry with token auth answers 401 with a Bearer challenge, and the
    /// request goes again with a token from the challenge's realm (the platform's credentials).
    async fn send(&self, rb: reqwest::RequestBuilder) -> reqwest::Response {
        let again = rb.try_clone().expect("a request that can be repeated");
        let resp = rb
            .send()
            .await
            .expect("registry reachable (scripts/up starts it)");
        let challenge = resp
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(caas_scheduler::image_digest::parse_bearer_challenge);
        let (StatusCode::UNAUTHORIZED, Some(c)) = (resp.status(), challenge) else {
            return resp;
        };
        let mut query = Vec::new();
        query.extend(c.service.as_deref().map(|s| ("service", s)));
        query.extend(c.scope.as_deref().map(|s| ("scope", s)));
        let mut ask = self.http.get(&c.realm).query(&query);
        if let Some((u, p)) = &self.auth {
            ask = ask.basic_auth(u, Some(p));
        }
        let answer: Value = ask
            .send()
            .await
            .expect("the registry's token realm reachable")
            .json()
            .await
            .expect("a token answer");
        let token = answer["token"].as_str().expect("a token").to_owned();
        let mut req = again.build().expect("a request");
        req.headers_mut().insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("a header value"),
        );
        self.http.execute(req).await.expect("registry reachable")
    }

    /// The digest `repo:reference` points to, `None` if the registry does not have it.
    pub async fn digest(&self, repo: &str, reference: &str) -> Option<String> {
        let resp = self
            .send(
                self.req(
                    reqwest::Method::HEAD,
                    &format!("{}/v2/{repo}/manifests/{reference}", self.base),
                )
                .header(reqwest::header::ACCEPT, MANIFEST_TYPES),
            )
            .await;
        if resp.status() == StatusCode::NOT_FOUND {
            return None;
        }
        assert!(
            resp.status().is_success(),
            "HEAD {repo}:{reference}: {}",
            resp.status()
        );
        Some(
            resp.headers()["docker-content-digest"]
                .to_str()
                .unwrap()
                .to_owned(),
        )
    }

    /// Copies the image `from:reference` to `to:target` (a tag or the same digest), as a push
    /// would: blobs mounted (or uploaded) first, then the manifest.
    pub async fn copy(&self, from: &str, reference: &str, to: &str, target: &str) {
        let resp = self
            .send(
                self.req(
                    reqwest::Method::GET,
                    &format!("{}/v2/{from}/manifests/{reference}", self.base),
                )
                .header(reqwest::header::ACCEPT, MANIFEST_TYPES),
            )
            .await;
        assert!(
            resp.status().is_success(),
            "GET {from}:{reference}: {}",
            resp.status()
        );
        let media = resp.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        let body = resp.bytes().await.unwrap();
        let manifest: Value = serde_json::from_slice(&body).unwrap();
        if let Some(children) = manifest["manifests"].as_array() {
            for c in children {
                let d = c["digest"].as_str().unwrap();
                Box::pin(self.copy(from, d, to, d)).await;
            }
        }
        let mut blobs: Vec<&str> = manifest["layers"]
            .as_array()
            .map(|l| l.iter().filter_map(|b| b["digest"].as_str()).collect())
            .unwrap_or_default();
        blobs.extend(manifest["config"]["digest"].as_str());
        for blob in blobs {
            self.mount(from, to, blob).await;
        }
        let resp = self
            .send(
                self.req(
                    reqwest::Method::PUT,
                    &format!("{}/v2/{to}/manifests/{target}", self.base),
                )
                .header(reqwest::header::CONTENT_TYPE, media)
                .body(body),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED, "PUT {to}:{target}");
    }

    async fn mount(&self, from: &str, to: &str, blob: &str) {
        let resp = self
            .send(self.req(
                reqwest::Method::POST,
                &format!(
                    "{}/v2/{to}/blobs/uploads/?mount={blob}&from={from}",
                    self.base
                ),
            ))
            .await;
        if resp.status() == StatusCode::CREATED {
            return;
        }
        // No mount: a monolithic upload to the session the registry opened instead.
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "mount {blob}");
        let location = resp.headers()[reqwest::header::LOCATION]
            .to_str()
            .unwrap()
            .to_owned();
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location
        };
        let data = self
            .send(self.req(
                reqwest::Method::GET,
                &format!("{}/v2/{from}/blobs/{blob}", self.base),
            ))
            .await
            .bytes()
            .await
            .unwrap();
        let sep = if location.contains('?') { '&' } else { '?' };
        let resp = self
            .send(
                self.req(
                    reqwest::Method::PUT,
                    &format!("{location}{sep}digest={blob}"),
                )
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(data),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED, "upload {blob}");
    }

    /// Deletes the manifest `digest` from `repo` (its tags go with it).
    pub async fn delete(&self, repo: &str, digest: &str) {
        let resp = self
            .send(self.req(
                reqwest::Method::DELETE,
                &format!("{}/v2/{repo}/manifests/{digest}", self.base),
            ))
            .await;
        assert_eq!(
            resp.status(),
            StatusCode::ACCEPTED,
            "DELETE {repo}@{digest} (registry-config/config.yml enables deletes)"
        );
    }
}
