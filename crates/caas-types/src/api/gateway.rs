//! What a gateway tells the scheduler: `POST /v1/gateway/demand`, authenticated by the gateway
//! token (`CAAS_GATEWAY_TOKEN`), which opens that endpoint only.

use crate::{AppId, GatewayName};
use serde::{Deserialize, Serialize};

/// Most apps in one demand report.
pub const MAX_DEMAND_APPS: usize = 10_000;

/// `POST /v1/gateway/demand`: one gateway's demand per app, now. It replaces what the same
/// gateway reported before for each app it names; the scheduler adds up the reports of every
/// gateway that reported lately.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DemandReport {
    /// The reporting gateway (`[a-z0-9-]`, 1 to 63 characters), distinct per gateway.
    pub gateway: GatewayName,
    /// Per app (at most [`MAX_DEMAND_APPS`]); apps the scheduler does not know are ignored.
    pub apps: Vec<AppDemand>,
}

/// One app's demand as one gateway sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AppDemand {
    /// The app.
    pub app: AppId,
    /// Requests the gateway holds because the app has no instance (it sleeps).
    pub held: u32,
    /// Requests the gateway has sent to the app's instances and not yet answered.
    pub in_flight: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_from_the_contract_parses_and_bad_ones_do_not() {
        let r: DemandReport = serde_json::from_str(
            r#"{"gateway":"gw-1","apps":[{"app":"hello","held":3,"in_flight":7}]}"#,
        )
        .expect("valid");
        assert_eq!(r.gateway.as_str(), "gw-1");
        assert_eq!((r.apps[0].held, r.apps[0].in_flight), (3, 7));
        for bad in [
            r#"{"gateway":"","apps":[]}"#,
            r#"{"gateway":"GW","apps":[]}"#,
            r#"{"gateway":"gw_1","apps":[]}"#,
            r#"{"apps":[]}"#,
            r#"{"gateway":"gw","apps":[{"app":"hello","held":-1,"in_flight":0}]}"#,
            r#"{"gateway":"gw","apps":[{"app":"hello","held":4294967296,"in_flight":0}]}"#,
            r#"{"gateway":"gw","apps":[{"app":"hello","held":1}]}"#,
            r#"{"gateway":"gw","apps":[],"extra":1}"#,
        ] {
            assert!(serde_json::from_str::<DemandReport>(bad).is_err(), "{bad}");
        }
        let long = format!(r#"{{"gateway":"{}","apps":[]}}"#, "g".repeat(64));
        assert!(serde_json::from_str::<DemandReport>(&long).is_err());
        let edge = format!(r#"{{"gateway":"{}","apps":[]}}"#, "-".repeat(63));
        assert!(serde_json::from_str::<DemandReport>(&edge).is_ok());
    }
}
