//! The gateways' demand: each gateway reports, per app, the requests it holds for a sleeping app
//! and those in flight to the app's instances (`POST /v1/gateway/demand`, on each hold and about
//! once a second while there is demand). A report replaces the same gateway's last report per
//! app; the demand of an app is the sum over the gateways whose report is fresh, so several
//! gateways add up and a gateway that stopped reporting stops counting after
//! [`DEFAULT_STALE_AFTER`]. Stored in the database, so every scheduler (the leader's autoscaler
//! among them) sees every report whichever scheduler took it. A report's traffic counts are
//! stored with it, for [`crate::traffic`]; an app named for its traffic alone (no held or
//! in-flight request) has no demand, exactly as an app not named.

use crate::error::{Error, Result};
use crate::store::{Demand, Store};
use caas_types::api::{DemandReport, MAX_DEMAND_APPS};
use caas_types::AppId;
use std::collections::HashMap;
use std::time::Duration;

/// How long a report counts when its gateway sends no newer one (gateways report about once
/// a second while they see demand).
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(5);

/// Records and reads the gateways' demand reports.
#[derive(Debug, Clone)]
pub struct DemandReports {
    store: Store,
}

/// Checks a report before anything is stored: at most [`MAX_DEMAND_APPS`] apps.
pub fn check(report: &DemandReport) -> Result<()> {
    if report.apps.len() > MAX_DEMAND_APPS {
        return Err(Error::Invalid(format!(
            "apps: at most {MAX_DEMAND_APPS} per report"
        )));
    }
    Ok(())
}

impl DemandReports {
    /// Demand reports over this store.
    pub fn new(store: Store) -> DemandReports {
        DemandReports { store }
    }

    /// Stores a gateway's report, its traffic included (apps that do not exist are skipped,
    /// not refused: a gateway's route cache may lag behind an app's deletion).
    pub async fn record(&self, report: &DemandReport) -> Result<()> {
        check(report)?;
        crate::traffic::check(report)?;
        self.store.record_demand(report).await
    }

    /// Every app's demand, summed over the gateways that reported within `stale_after`.
    pub async fn current(&self, stale_after: Duration) -> Result<HashMap<AppId, Demand>> {
        self.store.app_demand(stale_after).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(apps: usize) -> DemandReport {
        let apps: Vec<String> = (0..apps)
            .map(|i| format!(r#"{{"app":"a{i}","held":0,"in_flight":1}}"#))
            .collect();
        serde_json::from_str(&format!(
            r#"{{"gateway":"gw-1","apps":[{}]}}"#,
            apps.join(",")
        ))
        .expect("valid report")
    }

    #[test]
    fn a_report_holds_at_most_ten_thousand_apps() {
        assert!(check(&report(0)).is_ok());
        assert!(check(&report(MAX_DEMAND_APPS)).is_ok());
        match check(&report(MAX_DEMAND_APPS + 1)) {
            Err(Error::Invalid(m)) => assert!(m.starts_with("apps: at most 10000"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
