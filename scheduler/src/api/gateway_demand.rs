//! `POST /v1/gateway/demand`: a gateway's demand report (held and in-flight requests per app),
//! the autoscaler's input, and the traffic it counted per app (the traffic statistics'). 204
//! once stored; apps that do not exist are skipped.
//!
//! Authenticated by the gateways' own bearer token (`--gateway-token`), never by the operator's
//! or a tenant's; that token opens nothing else (`auth.rs` refuses it as a [`super::auth::Principal`]).
//! Without that setting the endpoint does not exist (404).

use super::auth::{bearer_hash, same_hash};
use super::error::{ApiError, ApiResult};
use super::{ApiJson, AppState};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use caas_types::api::DemandReport;

/// The body limit of a demand report, over the admin API's: 10,000 apps of up to 63
/// characters with two counts and traffic counters each fit, every number at its largest.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// `POST /v1/gateway/demand` → 204. The token is checked before the body is read.
pub async fn report(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<ApiJson<DemandReport>, ApiError>,
) -> ApiResult<StatusCode> {
    let Some(expected) = state.gateway_token_hash.as_deref() else {
        return Err(ApiError::NotConfigured(
            "gateway demand reports are not configured".into(),
        ));
    };
    if !same_hash(&bearer_hash(&headers)?, expected) {
        return Err(ApiError::Unauthorized);
    }
    let ApiJson(report) = body?;
    state.control.demand.record(&report).await?;
    if report.apps.iter().any(|a| a.held > 0) {
        // A sleeping app is wanted: the leader (if it is this process) looks at once.
        state.control.autoscaler.kick();
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use caas_types::api::{AppDemand, AppTraffic, TrafficCounts, MAX_DEMAND_APPS};

    #[test]
    fn the_largest_report_fits_the_body_limit() {
        let counts = TrafficCounts {
            status: [u64::MAX; 5],
            bytes_in: u64::MAX,
            bytes_out: u64::MAX,
            latency: [u64::MAX; caas_types::api::LATENCY_SLOTS],
            latency_sum_us: u64::MAX,
        };
        let app = AppDemand {
            app: "a".repeat(63).parse().unwrap(),
            held: u32::MAX,
            in_flight: u32::MAX,
            traffic: Some(AppTraffic {
                since: u64::MAX,
                counts,
            }),
        };
        let report = DemandReport {
            gateway: "g".repeat(63).parse().unwrap(),
            boot: Some(u64::MAX),
            seq: Some(u64::MAX),
            apps: vec![app; MAX_DEMAND_APPS],
        };
        let bytes = serde_json::to_vec(&report).unwrap().len();
        assert!(bytes <= MAX_BODY_BYTES, "{bytes} bytes");
    }
}
