//! `GET /v1/registry/token?service=…&scope=…`: the realm of the registry's `auth: token`.
//! Docker (the CLI at `docker login`, the engine at a push or pull) calls it with HTTP Basic
//! credentials; the answer is a token granting the requested actions this caller may have
//! (`registry_token::grant`), possibly none. Wrong or missing credentials: 401.
//!
//! Credentials: the platform's (`--registry-user`/`--registry-password`), `operator` with the
//! operator token, or a tenant's name with its token. Without `--registry-token-key` the
//! endpoint does not exist (404).

use super::auth::{same_hash, token_hash};
use super::auth_limit::ClientAddr;
use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::registry_token::{self, Access, Who, OPERATOR_USER};
use crate::Error;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::Json;
use base64::Engine as _;
use caas_types::TenantName;
use serde::Serialize;

/// The most scopes one request may ask for.
const MAX_SCOPES: usize = 16;

/// The answer distribution's clients read (`token`, and `access_token` for OAuth clients).
#[derive(Debug, Serialize)]
pub struct TokenAnswer {
    /// The bearer token.
    pub token: String,
    /// The same token.
    pub access_token: String,
    /// Seconds it is valid.
    pub expires_in: u64,
    /// When it was issued (RFC 3339).
    pub issued_at: String,
}

/// `GET /v1/registry/token` → 200 [`TokenAnswer`], 400 for a foreign `service` or a malformed
/// scope, 401 for wrong credentials, 404 when tokens are not configured.
pub async fn token(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<TokenAnswer>> {
    let Some(tokens) = state.registry_tokens.clone() else {
        return Err(ApiError::NotConfigured(
            "registry tokens are not configured".into(),
        ));
    };
    state.auth_failures.gate(client)?;
    let who = match authenticate(&state, &headers).await {
        Err(ApiError::Unauthorized) => {
            state.auth_failures.count(client);
            return Err(ApiError::Unauthorized);
        }
        other => other?,
    };
    let mut requested = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "service" if v != tokens.service() => {
                return Err(ApiError::BadRequest(format!(
                    "service {v:?} is not {:?}",
                    tokens.service()
                )))
            }
            // A scope may hold several, space-separated (RFC 6749).
            "scope" => {
                for s in v.split(' ').filter(|s| !s.is_empty()) {
                    let access = registry_token::parse_scope(s)
                        .ok_or_else(|| ApiError::BadRequest(format!("malformed scope {s:?}")))?;
                    requested.push(access);
                }
            }
            _ => {}
        }
    }
    if requested.len() > MAX_SCOPES {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_SCOPES} scopes per token"
        )));
    }
    let mut granted: Vec<Access> = Vec::new();
    for asked in &requested {
        let owner = match (&who, registry_token::repository_app(asked)) {
            (Who::Tenant(_), Some(app)) => match state.store.get_app(&app).await {
                Ok(row) => Some(row.tenant),
                Err(Error::NotFound(_)) => None,
                Err(e) => return Err(e.into()),
            },
            _ => None,
        };
        let actions = registry_token::grant(&who, asked, owner.as_ref().map(Option::as_ref));
        if !actions.is_empty() {
            granted.push(Access {
                actions,
                ..asked.clone()
            });
        }
    }
    let issued = tokens.issue(&who.subject(), &granted)?;
    tracing::debug!(subject = %who.subject(), ?granted, "registry token issued");
    let issued_at = chrono::DateTime::from_timestamp(issued.issued_at as i64, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Ok(Json(TokenAnswer {
        access_token: issued.token.clone(),
        token: issued.token,
        expires_in: issued.expires_in,
        issued_at,
    }))
}

/// Who the Basic credentials are; 401 if none or wrong.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> ApiResult<Who> {
    let (user, password) = basic(headers).ok_or(ApiError::Unauthorized)?;
    let hash = token_hash(&password);
    let platform = state
        .config
        .registry_user
        .as_deref()
        .filter(|u| !u.is_empty());
    if let (Some(u), Some(p)) = (platform, state.config.registry_password.as_deref()) {
        if user == u {
            return if !p.is_empty() && same_hash(&hash, &token_hash(p)) {
                Ok(Who::Platform(user))
            } else {
                Err(ApiError::Unauthorized)
            };
        }
    }
    if user == OPERATOR_USER {
        return if same_hash(&hash, &state.operator_token_hash) {
            Ok(Who::Operator)
        } else {
            Err(ApiError::Unauthorized)
        };
    }
    let name: TenantName = user.parse().map_err(|_| ApiError::Unauthorized)?;
    match state.store.tenant_by_token_hash(&hash).await? {
        Some(t) if t.name == name => Ok(Who::Tenant(name)),
        _ => Err(ApiError::Unauthorized),
    }
}

/// The user and password of an `Authorization: Basic` header.
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") || encoded.len() > 1024 {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    (!user.is_empty() && !password.is_empty()).then(|| (user.to_owned(), password.to_owned()))
}
