//! Image digests: what a tag points to in the platform's image registry right now, asked through
//! the registry's HTTP API (`HEAD /v2/{app}/manifests/{reference}` with the platform's
//! credentials), and the pinned reference `{registry}/{app}@sha256:...` that instances run, so
//! a tag pushed again never changes what a release runs.
//!
//! A registry with `auth: token` answers the first HEAD 401 with a Bearer challenge; the token
//! is then asked from its realm (the scheduler's own `GET /v1/registry/token`) with the same
//! credentials and the HEAD repeated with it.
//!
//! Failures are precise: a tag or digest the registry does not have is
//! [`Error::ImageNotFound`] (422); a registry that cannot be reached, refuses the credentials or
//! answers without a digest is [`Error::Registry`] (502).
//!
//! The same client purges a deleted app's repository (`crate::image_purge`).

use crate::config::Config;
use crate::error::{Error, Result};
use caas_types::{AppId, Version};
use std::time::Duration;

/// The manifest media types a HEAD accepts: Docker v2 manifests and manifest lists, OCI
/// manifests and indexes. Without them a registry answers with a converted schema-1 manifest
/// whose digest pulls nothing.
pub(crate) const ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json";

/// How long one registry request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A manifest digest, `sha256:` and 64 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest(String);

impl Digest {
    /// Parses a digest as the registry and the releases table write it.
    pub fn parse(raw: &str) -> Option<Digest> {
        let hex = raw.strip_prefix("sha256:")?;
        let ok = hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| Digest(raw.to_owned()))
    }

    /// The digest text, `sha256:...`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The reference instances of a release run: `{registry}/{app}@{digest}`.
pub fn pinned_reference(registry: &str, app: &AppId, digest: &Digest) -> String {
    format!("{registry}/{app}@{digest}")
}

/// The platform's client of the registry's HTTP API: what tags point to, and (`image_purge`)
/// deleting a repository's manifests.
#[derive(Debug, Clone)]
pub struct ImageDigests {
    /// `None` if the HTTP client could not be built (every request then fails as a
    /// configuration error instead of the scheduler panicking at start).
    http: Option<reqwest::Client>,
    registry: String,
    user: Option<String>,
    password: Option<String>,
}

impl ImageDigests {
    /// A client of the registry in `config` (`--registry`, plain HTTP, with
    /// `--registry-user`/`--registry-password` when set).
    pub fn new(config: &Config) -> ImageDigests {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .inspect_err(|e| tracing::error!(error = %e, "could not build the registry client"))
            .ok();
        ImageDigests {
            http,
            registry: config.registry.clone(),
            user: config.registry_user.clone().filter(|u| !u.is_empty()),
            password: config.registry_password.clone(),
        }
    }

    /// The registry (`host:port`) images are pulled from.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The digest `tag` of `app` points to now.
    pub async fn resolve(&self, app: &AppId, tag: &Version) -> Result<Digest> {
        let shown = format!("{}/{app}:{tag}", self.registry);
        let digest = self.head(app, tag.as_str(), &shown).await?;
        tracing::debug!(image = %shown, %digest, "resolved a tag");
        Ok(digest)
    }

    /// Checks that the registry still has the manifest `digest` of `app` (a rollback's image
    /// may have been deleted since its release).
    pub async fn check(&self, app: &AppId, digest: &Digest) -> Result<()> {
        let shown = pinned_reference(&self.registry, app, digest);
        self.head(app, digest.as_str(), &shown).await.map(|_| ())
    }

    async fn head(&self, app: &AppId, reference: &str, shown: &str) -> Result<Digest> {
        let mut session = Session::new("resolving", shown, None);
        self.head_digest(app, reference, shown, &mut session).await
    }

    /// The digest the manifest `reference` of `app` (`shown` in errors) has: `HEAD` with
    /// [`ACCEPT`], within `session`.
    pub(crate) async fn head_digest(
        &self,
        app: &AppId,
        reference: &str,
        shown: &str,
        session: &mut Session<'_>,
    ) -> Result<Digest> {
        // `app` and `reference` are validated ids (or a parsed digest or tag): nothing to
        // escape.
        let url = format!("http://{}/v2/{app}/manifests/{reference}", self.registry);
        let resp = self
            .send(session, |http| {
                http.head(&url).header(reqwest::header::ACCEPT, ACCEPT)
            })
            .await?;
        classify(resp.status().as_u16(), shown, &self.registry)?;
        let header = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok());
        header.and_then(Digest::parse).ok_or_else(|| {
            Error::Registry(format!(
                "registry {} answered {shown} without a sha256 digest",
                self.registry
            ))
        })
    }

    /// `http://{registry}`.
    pub(crate) fn base(&self) -> String {
        format!("http://{}", self.registry)
    }

    /// Sends the request `build` makes, with the platform's credentials (basic auth). A registry
    /// with `auth: token` answers 401 with a Bearer challenge: a token is then asked from its
    /// realm with the same credentials (for the session's scope, else the challenge's) and the
    /// request sent again with it. The token is kept in `session` for its next requests.
    pub(crate) async fn send(
        &self,
        session: &mut Session<'_>,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let http = self
            .http
            .as_ref()
            .ok_or_else(|| Error::Config("the registry client could not be built".into()))?;
        let unreachable = |e: reqwest::Error| {
            tracing::warn!(registry = %self.registry, error = %e, "registry unreachable");
            Error::Registry(format!(
                "registry {} unreachable while {} {}",
                self.registry, session.doing, session.shown
            ))
        };
        let mut req = build(http);
        match (&session.bearer, &self.user) {
            (Some(token), _) => req = req.bearer_auth(token),
            (None, Some(user)) => req = req.basic_auth(user, self.password.as_deref()),
            (None, None) => {}
        }
        let resp = req.send().await.map_err(unreachable)?;
        let challenge = resp
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_bearer_challenge);
        let (401, Some(mut challenge)) = (resp.status().as_u16(), challenge) else {
            return Ok(resp);
        };
        if let Some(scope) = session.scope {
            challenge.scope = Some(scope.to_owned());
        }
        let token = self.token(http, &challenge, session.shown).await?;
        let resp = build(http)
            .bearer_auth(&token)
            .send()
            .await
            .map_err(unreachable)?;
        session.bearer = Some(token);
        Ok(resp)
    }
}

/// One operation's requests to the registry: what it is doing (for errors), the token it
/// holds once a registry with `auth: token` has asked for one, and the scope to ask for.
#[derive(Debug)]
pub(crate) struct Session<'a> {
    /// `resolving`, `purging`: completes "registry ... unreachable while {doing} {shown}".
    doing: &'a str,
    /// The image or repository the operation is about, as errors name it.
    pub(crate) shown: &'a str,
    /// `repository:{app}:pull,delete`: one token for every request of the operation. `None`:
    /// the scope each challenge asks for.
    scope: Option<&'a str>,
    bearer: Option<String>,
}

impl<'a> Session<'a> {
    /// A session doing `doing` to `shown`, with tokens for `scope` if given.
    pub(crate) fn new(doing: &'a str, shown: &'a str, scope: Option<&'a str>) -> Session<'a> {
        Session {
            doing,
            shown,
            scope,
            bearer: None,
        }
    }
}

/// A registry's `WWW-Authenticate: Bearer realm=...,service=...,scope=...` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerChallenge {
    /// Where tokens are issued.
    pub realm: String,
    /// `service=` as asked.
    pub service: Option<String>,
    /// `scope=` as asked.
    pub scope: Option<String>,
}

/// Parses a Bearer challenge (quoted parameters, as distribution writes them); `None` for any
/// other scheme or one without a realm.
pub fn parse_bearer_challenge(header: &str) -> Option<BearerChallenge> {
    let (scheme, mut rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let (mut realm, mut service, mut scope) = (None, None, None);
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if rest.is_empty() {
            break;
        }
        let (key, after) = rest.split_once('=')?;
        let (value, tail) = match after.strip_prefix('"') {
            Some(q) => {
                let end = q.find('"')?;
                (&q[..end], &q[end + 1..])
            }
            None => after.split_once(',').unwrap_or((after, "")),
        };
        match key.trim() {
            "realm" => realm = Some(value.to_owned()),
            "service" => service = Some(value.to_owned()),
            "scope" => scope = Some(value.to_owned()),
            _ => {}
        }
        rest = tail;
    }
    Some(BearerChallenge {
        realm: realm.filter(|r| !r.is_empty())?,
        service,
        scope,
    })
}

/// The token a realm answers with.
#[derive(serde::Deserialize)]
struct RealmAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

impl ImageDigests {
    /// A token from the challenge's realm, asked with the platform's credentials.
    async fn token(
        &self,
        http: &reqwest::Client,
        challenge: &BearerChallenge,
        shown: &str,
    ) -> Result<String> {
        let refused = |why: String| {
            Error::Registry(format!(
                "registry {}: no token for {shown}: {why}",
                self.registry
            ))
        };
        let mut query = Vec::new();
        if let Some(s) = &challenge.service {
            query.push(("service", s.as_str()));
        }
        if let Some(s) = &challenge.scope {
            query.push(("scope", s.as_str()));
        }
        let mut req = http.get(&challenge.realm).query(&query);
        if let Some(user) = &self.user {
            req = req.basic_auth(user, self.password.as_deref());
        }
        let resp = req.send().await.map_err(|e| {
            tracing::warn!(realm = %challenge.realm, error = %e, "registry token realm unreachable");
            refused(format!("realm {} unreachable", challenge.realm))
        })?;
        if !resp.status().is_success() {
            return Err(refused(format!(
                "realm {} answered {}",
                challenge.realm,
                resp.status().as_u16()
            )));
        }
        let answer: RealmAnswer = resp
            .json()
            .await
            .map_err(|_| refused(format!("realm {} answered no token", challenge.realm)))?;
        answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| refused(format!("realm {} answered no token", challenge.realm)))
    }
}

/// What a registry status means for a manifest HEAD.
fn classify(status: u16, shown: &str, registry: &str) -> Result<()> {
    match status {
        200..=299 => Ok(()),
        404 => Err(Error::ImageNotFound(format!(
            "image {shown} not found in the registry"
        ))),
        401 | 403 => Err(Error::Registry(format!(
            "registry {registry} refused the platform's credentials ({status}) for {shown}"
        ))),
        _ => Err(Error::Registry(format!(
            "registry {registry} answered {status} for {shown}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn digests_are_sha256_and_64_lower_case_hex_digits() {
        let ok = format!("sha256:{HEX}");
        assert_eq!(Digest::parse(&ok).map(|d| d.to_string()), Some(ok));
        for bad in [
            String::new(),
            HEX.to_owned(),
            format!("sha512:{HEX}"),
            format!("sha256:{}", HEX.to_uppercase()),
            format!("sha256:{}", &HEX[1..]),
            format!("sha256:{HEX}0"),
            format!("sha256:{}g", &HEX[1..]),
            format!("sha256:{HEX}\n"),
        ] {
            assert_eq!(Digest::parse(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pinned_references_name_the_registry_app_and_digest() {
        let app: AppId = "hello".parse().expect("valid app");
        let d = Digest::parse(&format!("sha256:{HEX}")).expect("valid digest");
        assert_eq!(
            pinned_reference("127.0.0.1:5000", &app, &d),
            format!("127.0.0.1:5000/hello@sha256:{HEX}")
        );
    }

    #[test]
    fn bearer_challenges_parse_as_distribution_writes_them() {
        let c = parse_bearer_challenge(
            r#"Bearer realm="http://127.0.0.1:7070/v1/registry/token",service="caas-registry",scope="repository:hello:pull""#,
        );
        assert_eq!(
            c,
            Some(BearerChallenge {
                realm: "http://127.0.0.1:7070/v1/registry/token".into(),
                service: Some("caas-registry".into()),
                scope: Some("repository:hello:pull".into()),
            })
        );
        let bare = parse_bearer_challenge("bearer realm=http://r/t").expect("unquoted");
        assert_eq!((bare.realm.as_str(), bare.scope), ("http://r/t", None));
        for other in [
            r#"Basic realm="caas-registry""#,
            "Bearer service=\"x\"",
            "",
            "Bearer",
        ] {
            assert_eq!(parse_bearer_challenge(other), None, "{other:?}");
        }
    }

    #[test]
    fn statuses_map_to_precise_errors() {
        assert!(classify(200, "r/a:v1", "r").is_ok());
        assert!(matches!(
            classify(404, "r/a:v1", "r"),
            Err(Error::ImageNotFound(m)) if m == "image r/a:v1 not found in the registry"
        ));
        for status in [401, 403, 500, 503, 301] {
            assert!(
                matches!(classify(status, "r/a:v1", "r"), Err(Error::Registry(_))),
                "{status}"
            );
        }
    }
}
