//! Registry bearer tokens: what Docker Distribution's `auth: token` asks its realm for, issued
//! by the scheduler (`GET /v1/registry/token`, `api/registry_token.rs`).
//!
//! A token is a JWT signed ES256 with the key of `--registry-token-key`; its header carries the
//! signer's certificate chain (`x5c`, base64 DER) of `--registry-token-cert`, which the registry
//! (2.8, no JWKS) verifies up to its `rootcertbundle`. Claims: `iss`, `sub`, `aud` (the
//! registry's service), `exp`, `nbf`, `iat`, `jti` and `access`, the granted scopes.
//!
//! Who gets what ([`grant`], pure): the platform credential (`--registry-user` and
//! `--registry-password`, the one in `.caas/env` the scheduler pulls with) and the operator get
//! every action on every repository and the catalog; a tenant gets `pull` and `push` on the
//! repositories named exactly like the apps it owns, nothing else. The subject names who it was
//! ([`Who::subject`]); the registry puts it in its notifications' `actor.name`, and the push hook
//! ignores a push by an actor not allowed to push that repository ([`may_push`]).

use crate::config::Config;
use crate::error::{Error, Result};
use base64::Engine as _;
use caas_types::{AppId, TenantName};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The subject of the operator's tokens (`docker login -u operator` with the operator token).
pub const OPERATOR_USER: &str = "operator";

/// The prefix of a tenant's subject: `tenant:{name}`, never equal to the platform's user or
/// [`OPERATOR_USER`] (tenant names have no `:`).
const TENANT_PREFIX: &str = "tenant:";

/// Who asked for a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// The platform's registry credential (`--registry-user`): everything.
    Platform(String),
    /// The operator token: everything.
    Operator,
    /// A tenant: its own apps' repositories only.
    Tenant(TenantName),
}

impl Who {
    /// The token's `sub`, which the registry reports as the actor of what it does.
    pub fn subject(&self) -> String {
        match self {
            Who::Platform(user) => user.clone(),
            Who::Operator => OPERATOR_USER.to_owned(),
            Who::Tenant(t) => format!("{TENANT_PREFIX}{t}"),
        }
    }
}

/// One requested or granted scope: `type:name:action,action`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Access {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The repository (an app id) or `catalog`.
    pub name: String,
    /// `pull`, `push`, `delete` or `*`.
    pub actions: Vec<String>,
}

/// Parses one `scope` parameter, `type:name:actions` (the name may hold a `:`, e.g. a
/// registry's port); `None` if it is not of that shape.
pub fn parse_scope(scope: &str) -> Option<Access> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    if kind.is_empty() || name.is_empty() {
        return None;
    }
    let actions = actions
        .split(',')
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    Some(Access {
        kind: kind.to_owned(),
        name: name.to_owned(),
        actions,
    })
}

/// The actions of `requested` that `who` may have, given `owner`: the owner of the app the
/// repository is named after (`Some(None)` an operator's app, `None` no such app). An empty
/// result is no grant. Pure.
pub fn grant(who: &Who, requested: &Access, owner: Option<Option<&TenantName>>) -> Vec<String> {
    let allowed: &[&str] = match (who, requested.kind.as_str()) {
        (Who::Platform(_) | Who::Operator, "repository") => &["pull", "push", "delete", "*"],
        (Who::Platform(_) | Who::Operator, "registry") if requested.name == "catalog" => &["*"],
        (Who::Tenant(t), "repository") if owner == Some(Some(t)) => &["pull", "push"],
        _ => &[],
    };
    let mut granted: Vec<String> = Vec::new();
    for a in &requested.actions {
        if allowed.contains(&a.as_str()) && !granted.contains(a) {
            granted.push(a.clone());
        }
    }
    granted
}

/// Whether the registry event's actor may push to a repository whose app is owned by `owner`
/// (`None`: an operator's app). `platform_user` is `--registry-user`. Pure.
pub fn may_push(
    actor: Option<&str>,
    owner: Option<&TenantName>,
    platform_user: Option<&str>,
) -> bool {
    let Some(actor) = actor.filter(|a| !a.is_empty()) else {
        return false;
    };
    if Some(actor) == platform_user.filter(|u| !u.is_empty()) || actor == OPERATOR_USER {
        return true;
    }
    match actor.strip_prefix(TENANT_PREFIX) {
        Some(name) => name.parse::<TenantName>().is_ok_and(|t| owner == Some(&t)),
        None => false,
    }
}

/// The app a repository scope names, if it is an app id.
pub fn repository_app(access: &Access) -> Option<AppId> {
    (access.kind == "repository")
        .then(|| access.name.parse().ok())
        .flatten()
}

/// A signed token and its lifetime.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The JWT.
    pub token: String,
    /// Seconds it is valid.
    pub expires_in: u64,
    /// When it was issued, seconds since the Unix epoch.
    pub issued_at: u64,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    access: &'a [Access],
}

/// The token signer: key, certificate chain, issuer and service.
pub struct RegistryTokens {
    key: EncodingKey,
    x5c: Vec<String>,
    issuer: String,
    service: String,
    ttl: Duration,
}

impl std::fmt::Debug for RegistryTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryTokens")
            .field("issuer", &self.issuer)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl RegistryTokens {
    /// The signer of `config`, `None` when neither `--registry-token-key` nor
    /// `--registry-token-cert` is set; an error when only one is, or a file cannot be read or
    /// is not a P-256 key and a certificate.
    pub fn load(config: &Config) -> Result<Option<RegistryTokens>> {
        let (key_path, cert_path) = match (&config.registry_token_key, &config.registry_token_cert)
        {
            (None, None) => return Ok(None),
            (Some(k), Some(c)) => (k, c),
            _ => {
                return Err(Error::Config(
                    "--registry-token-key and --registry-token-cert go together".into(),
                ))
            }
        };
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| Error::Config(format!("reading {}: {e}", p.display())))
        };
        let key = EncodingKey::from_ec_pem(&read(key_path)?).map_err(|e| {
            Error::Config(format!(
                "{}: not a PEM EC private key: {e}",
                key_path.display()
            ))
        })?;
        let pem = read(cert_path)?;
        let mut x5c = Vec::new();
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let der =
                cert.map_err(|e| Error::Config(format!("{}: bad PEM: {e}", cert_path.display())))?;
            x5c.push(base64::engine::general_purpose::STANDARD.encode(der.as_ref()));
        }
        if x5c.is_empty() {
            return Err(Error::Config(format!(
                "{}: no certificate in it",
                cert_path.display()
            )));
        }
        let tokens = RegistryTokens {
            key,
            x5c,
            issuer: config.registry_token_issuer.clone(),
            service: config.registry_service.clone(),
            ttl: Duration::from_secs(config.registry_token_ttl_secs),
        };
        // A key of another curve parses but cannot sign ES256: find out now, not at a push.
        tokens.issue("probe", &[]).map_err(|e| {
            Error::Config(format!("{}: cannot sign ES256: {e}", key_path.display()))
        })?;
        Ok(Some(tokens))
    }

    /// The registry's service name (`aud`).
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Signs a token for `subject` granting `access`.
    pub fn issue(&self, subject: &str, access: &[Access]) -> Result<Issued> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| Error::Config("the clock is before 1970".into()))?
            .as_secs();
        let ttl = self.ttl.as_secs();
        let mut header = Header::new(Algorithm::ES256);
        header.x5c = Some(self.x5c.clone());
        let claims = Claims {
            iss: &self.issuer,
            sub: subject,
            aud: &self.service,
            exp: now + ttl,
            // A little slack for a registry whose clock runs behind ours.
            nbf: now.saturating_sub(10),
            iat: now,
            jti: crate::api::auth::new_token(),
            access,
        };
        let token = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| Error::Config(format!("signing a registry token: {e}")))?;
        Ok(Issued {
            token,
            expires_in: ttl,
            issued_at: now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(n: &str) -> TenantName {
        n.parse().expect("valid tenant")
    }

    fn scope(s: &str) -> Access {
        parse_scope(s).expect("a scope")
    }

    #[test]
    fn scopes_parse_with_a_colon_in_the_name() {
        assert_eq!(
            scope("repository:hello:pull,push"),
            Access {
                kind: "repository".into(),
                name: "hello".into(),
                actions: vec!["pull".into(), "push".into()],
            }
        );
        assert_eq!(
            scope("repository:127.0.0.1:5000/x:pull").name,
            "127.0.0.1:5000/x"
        );
        assert_eq!(scope("registry:catalog:*").actions, vec!["*"]);
        for bad in [
            "",
            "repository",
            "repository:hello",
            ":hello:pull",
            "repository::pull",
        ] {
            assert_eq!(parse_scope(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_tenant_gets_pull_and_push_on_its_own_apps_only() {
        let acme = Who::Tenant(tenant("acme"));
        let other = tenant("other");
        let s = scope("repository:hello:pull,push,delete,*");
        assert_eq!(
            grant(&acme, &s, Some(Some(&tenant("acme")))),
            vec!["pull", "push"]
        );
        assert!(
            grant(&acme, &s, Some(Some(&other))).is_empty(),
            "another tenant's app"
        );
        assert!(grant(&acme, &s, Some(None)).is_empty(), "an operator's app");
        assert!(grant(&acme, &s, None).is_empty(), "no such app");
        assert!(grant(&acme, &scope("registry:catalog:*"), None).is_empty());
    }

    #[test]
    fn the_platform_and_the_operator_get_everything_asked() {
        for who in [Who::Platform("caas".into()), Who::Operator] {
            let s = scope("repository:hello:pull,push,pull,bogus");
            assert_eq!(grant(&who, &s, None), vec!["pull", "push"], "{who:?}");
            assert_eq!(grant(&who, &scope("registry:catalog:*"), None), vec!["*"]);
            assert!(grant(&who, &scope("registry:other:*"), None).is_empty());
        }
    }

    #[test]
    fn subjects_cannot_be_confused() {
        assert_eq!(Who::Tenant(tenant("caas")).subject(), "tenant:caas");
        assert_eq!(Who::Operator.subject(), "operator");
        assert_eq!(Who::Platform("caas".into()).subject(), "caas");
    }

    #[test]
    fn the_hook_takes_pushes_only_from_who_may_push() {
        let acme = tenant("acme");
        let user = Some("caas");
        assert!(may_push(Some("caas"), Some(&acme), user));
        assert!(may_push(Some("operator"), None, user));
        assert!(may_push(Some("tenant:acme"), Some(&acme), user));
        assert!(!may_push(Some("tenant:other"), Some(&acme), user));
        assert!(
            !may_push(Some("tenant:acme"), None, user),
            "an operator's app"
        );
        assert!(
            !may_push(Some("acme"), Some(&acme), user),
            "a bare name is no tenant"
        );
        assert!(
            !may_push(Some("caas"), Some(&acme), None),
            "no platform user configured"
        );
        assert!(!may_push(Some(""), Some(&acme), Some("")));
        assert!(!may_push(None, Some(&acme), user));
    }
}
