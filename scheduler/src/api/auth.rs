//! Bearer-token authentication: the operator token sees everything; a tenant's token sees only
//! the apps that tenant created. Tokens are stored and compared as SHA-256 hashes. The
//! registry's hook token and the gateways' token are no [`Principal`]: each opens its one
//! endpoint only, and the gateway token is refused here by name (403) before any lookup.

use super::auth_limit::ClientAddr;
use super::error::ApiError;
use super::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use caas_types::TenantName;
use sha2::{Digest, Sha256};

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The platform operator.
    Operator,
    /// A tenant.
    Tenant(TenantName),
}

impl Principal {
    /// The tenant whose apps this caller sees; `None` for the operator (all apps).
    pub fn tenant(&self) -> Option<&TenantName> {
        match self {
            Principal::Operator => None,
            Principal::Tenant(t) => Some(t),
        }
    }

    /// Fails with 403 unless the caller is the operator.
    pub fn require_operator(&self) -> Result<(), ApiError> {
        match self {
            Principal::Operator => Ok(()),
            Principal::Tenant(_) => {
                Err(ApiError::Forbidden("this needs the operator token".into()))
            }
        }
    }

    /// Whether the caller may see an app owned by `owner`.
    pub fn can_see(&self, owner: Option<&TenantName>) -> bool {
        match self {
            Principal::Operator => true,
            Principal::Tenant(t) => owner == Some(t),
        }
    }
}

/// Hex SHA-256 of a token, as stored in `tenants.token_hash`.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random token: 32 bytes of OS randomness, hex.
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    // rand's thread RNG is a CSPRNG seeded from the OS.
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two equal-length hex hashes without an early exit.
pub(super) fn same_hash(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// SHA-256 (hex) of the request's bearer token; 401 if there is none.
pub(super) fn bearer_hash(headers: &axum::http::HeaderMap) -> Result<String, ApiError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized)?;
    let value = header.to_str().map_err(|_| ApiError::Unauthorized)?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .ok_or(ApiError::Unauthorized)?;
    Ok(token_hash(token))
}

/// An extractor that lets only the operator through (403 for a tenant, 401 without a valid
/// token). As a parts extractor it runs before the body is read, so a tenant is refused before
/// its body is parsed, whatever it holds.
#[derive(Debug, Clone, Copy)]
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Operator, ApiError> {
        Principal::from_request_parts(parts, state)
            .await?
            .require_operator()
            .map(|()| Operator)
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let hash = bearer_hash(&parts.headers)?;
        let client = ClientAddr::of(parts).0;
        if same_hash(&hash, &state.operator_token_hash) {
            return Ok(Principal::Operator);
        }
        if let Some(gateway) = state.gateway_token_hash.as_deref() {
            if same_hash(&hash, gateway) {
                return Err(ApiError::Forbidden(
                    "the gateway token opens only POST /v1/gateway/demand".into(),
                ));
            }
        }
        // An address that keeps guessing is stopped before the lookup.
        state.auth_failures.gate(client)?;
        match state.store.tenant_by_token_hash(&hash).await? {
            Some(t) => Ok(Principal::Tenant(t.name)),
            None => {
                state.auth_failures.count(client);
                Err(ApiError::Unauthorized)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_hex() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(same_hash(&token_hash("x"), &token_hash("x")));
        assert!(!same_hash(&token_hash("x"), &token_hash("y")));
        assert_eq!(new_token().len(), 64);
        assert_ne!(new_token(), new_token());
    }

    #[test]
    fn visibility() {
        let acme: TenantName = "acme".parse().expect("valid");
        let other: TenantName = "other".parse().expect("valid");
        let p = Principal::Tenant(acme.clone());
        assert!(p.can_see(Some(&acme)));
        assert!(!p.can_see(Some(&other)));
        assert!(!p.can_see(None), "operator-created apps are not a tenant's");
        assert!(Principal::Operator.can_see(Some(&other)));
        assert!(p.require_operator().is_err());
    }
}
