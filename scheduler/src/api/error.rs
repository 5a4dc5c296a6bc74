//! `ApiError`: every failure of the admin API as a status and `{"error": {"code", "message"}}`.
//!
//! The client sees a stable code and a message with no driver text; the cause is logged here.

use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use caas_types::api::{ErrorBody, ErrorDetail};

/// An admin API error.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or a value is invalid (400).
    #[error("{0}")]
    BadRequest(String),
    /// No or an unknown bearer token (401).
    #[error("missing or unknown bearer token")]
    Unauthorized,
    /// The token is valid but may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// A tenant's quota does not allow it (403 `quota_exceeded`).
    #[error("{0}")]
    QuotaExceeded(String),
    /// Not found, or not visible to this tenant (404).
    #[error("{0} not found")]
    NotFound(String),
    /// A feature this scheduler is not configured for (404, with this message as is).
    #[error("{0}")]
    NotConfigured(String),
    /// Exists already, or still in use (409).
    #[error("{0}")]
    Conflict(String),
    /// The body is over the size limit (413).
    #[error("request body too large")]
    TooLarge,
    /// Too many failed logins from this address (429, with `Retry-After`).
    #[error("too many failed logins from this address; retry in {retry_after}s")]
    TooManyFailures {
        /// Seconds until the next attempt is read.
        retry_after: u64,
    },
    /// No host can take it (422).
    #[error("cannot place: {0}")]
    Unplaceable(String),
    /// The request needs a feature this scheduler's operator has not set up, such as secrets
    /// without a secrets key (422).
    #[error("{message}")]
    Disabled {
        /// The stable code, e.g. `secrets_disabled`.
        code: &'static str,
        /// What is missing and who sets it up.
        message: String,
    },
    /// The image does not exist in the registry (422: the request names something that isn't there).
    #[error("{0}")]
    ImageNotFound(String),
    /// Docker or the registry failed (502).
    #[error("{0}")]
    Upstream(String),
    /// A dependency (database, ZooKeeper) is down or contended; retry later (503).
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected state (500). Details are in the log only.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// The HTTP status and stable code of this error.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::QuotaExceeded(_) => (StatusCode::FORBIDDEN, "quota_exceeded"),
            ApiError::NotFound(_) | ApiError::NotConfigured(_) => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::TooManyFailures { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Unplaceable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unplaceable"),
            ApiError::ImageNotFound(_) => (StatusCode::UNPROCESSABLE_ENTITY, "image_not_found"),
            ApiError::Disabled { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            ApiError::Upstream(_) => (StatusCode::BAD_GATEWAY, "upstream"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The body clients see.
    pub fn body(&self) -> ErrorBody {
        let (_, code) = self.status_and_code();
        ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message: self.to_string(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _) = self.status_and_code();
        if status.is_server_error() {
            tracing::warn!(%status, error = %self, "admin API request failed");
        }
        let retry_after = match &self {
            ApiError::TooManyFailures { retry_after } => Some(retry_after.to_string()),
            _ => None,
        };
        let mut response = (status, Json(self.body())).into_response();
        if let Some(v) = retry_after.and_then(|v| v.parse().ok()) {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        response
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        use crate::Error as E;
        match e {
            E::Conflict(m) => ApiError::Conflict(m),
            E::NotFound(m) => ApiError::NotFound(m),
            e @ E::QuotaExceeded(_) => ApiError::QuotaExceeded(e.to_string()),
            E::NotAllowed(m) => ApiError::Forbidden(m),
            E::Unplaceable(m) => ApiError::Unplaceable(m),
            E::Invalid(m) => ApiError::BadRequest(format!("invalid {m}")),
            E::SecretsOff(message) => ApiError::Disabled {
                code: "secrets_disabled",
                message,
            },
            e @ (E::Database(_) | E::Contention { .. }) => ApiError::Unavailable(e.to_string()),
            other => {
                tracing::error!(error = %other, "unexpected scheduler error");
                ApiError::from_other(other)
            }
        }
    }
}

impl ApiError {
    /// Maps the deploy-side errors (engines, registry, ZooKeeper) that the scheduler error wraps.
    fn from_other(e: crate::Error) -> ApiError {
        use crate::Error as E;
        match e {
            E::ImageNotFound(m) => ApiError::ImageNotFound(m),
            e @ (E::Engine { .. } | E::Registry(_) | E::Incomplete(_) | E::Timeout(_)) => {
                ApiError::Upstream(e.to_string())
            }
            e @ (E::Zookeeper(_) | E::Secrets(_) | E::NotLeader(_)) => {
                ApiError::Unavailable(e.to_string())
            }
            _ => ApiError::Internal,
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::MissingJsonContentType(_) => {
                ApiError::BadRequest("expected Content-Type: application/json".into())
            }
            JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::TooLarge
            }
            JsonRejection::BytesRejection(_) => {
                ApiError::BadRequest("could not read the request body".into())
            }
            // serde's message says which field and why ("invalid app id: ..."), with no echo of
            // unbounded input beyond what our validators allow.
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

/// Result of a handler.
pub type ApiResult<T> = std::result::Result<T, ApiError>;
