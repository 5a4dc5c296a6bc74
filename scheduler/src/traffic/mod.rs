//! Traffic statistics: per app, what every gateway counted (requests by status class, body
//! bytes, latency), as a time series (`GET /v1/apps/{app}/traffic`) and as totals over a window
//! for every app a caller sees (`GET /v1/traffic`, `caas top`).
//!
//! The gateways send their counts in their demand reports (`POST /v1/gateway/demand`, see
//! `caas_types::api::AppTraffic`): per app, what was counted since the gateway's last accepted
//! report that carried the app. They are stored with the report, in the database (any
//! scheduler may take a report and any may answer), one row per gateway, boot, app and `since`
//! (`store/traffic.rs`), kept for [`plan::KEEP_MS`]; `plan.rs` turns rows into the API's
//! shapes. The leader's autoscaler prunes old rows with the demand reports.

pub mod plan;

use crate::error::{Error, Result};
use crate::store::Store;
use caas_types::api::{AppTrafficSeries, DemandReport, TrafficOverview};
use caas_types::AppId;
pub use plan::{OverviewQuery, SeriesQuery};

/// Checks a report's traffic before anything is stored: with any, the report names its
/// `boot` and `seq`, and each app's `since` is an earlier report.
pub fn check(report: &DemandReport) -> Result<()> {
    let mut with = report
        .apps
        .iter()
        .filter_map(|a| a.traffic.as_ref().map(|t| (a, t)))
        .peekable();
    if with.peek().is_none() {
        return Ok(());
    }
    let (Some(_), Some(seq)) = (report.boot, report.seq) else {
        return Err(Error::Invalid("boot and seq: required with traffic".into()));
    };
    if let Some((a, t)) = with.find(|(_, t)| t.since >= seq) {
        return Err(Error::Invalid(format!(
            "apps: {}: traffic since report {} is not before this report ({seq})",
            a.app, t.since
        )));
    }
    Ok(())
}

/// Reads the stored traffic.
#[derive(Debug, Clone)]
pub struct Traffic {
    store: Store,
}

impl Traffic {
    /// Traffic statistics over this store.
    pub fn new(store: Store) -> Traffic {
        Traffic { store }
    }

    /// `app`'s traffic as a time series: `q`'s steps ending with the one under way (by the
    /// database's clock, which stamps the reports).
    pub async fn series(&self, app: &AppId, q: SeriesQuery) -> Result<AppTrafficSeries> {
        let now = self.store.now_ms().await?;
        let span = plan::Span::ending_at(now, q);
        let samples = self
            .store
            .traffic_steps(app, span.start_ms, span.step_ms, span.points)
            .await?;
        Ok(plan::series(app.clone(), q, &span, &samples))
    }

    /// Every app of `apps` with its traffic over the last `q.window_s` seconds, busiest first.
    pub async fn overview(&self, apps: Vec<AppId>, q: OverviewQuery) -> Result<TrafficOverview> {
        let now = self.store.now_ms().await?;
        let totals = self
            .store
            .traffic_totals(now - i64::from(q.window_s) * 1000)
            .await?;
        Ok(plan::overview(q, apps, &totals))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn report(json: &str) -> DemandReport {
        serde_json::from_str(json).unwrap()
    }

    const COUNTS: &str = r#"{"status":[0,1,0,0,0],"bytes_in":0,"bytes_out":0,"latency":[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"latency_sum_us":1}"#;

    #[test]
    fn traffic_needs_its_boot_and_a_since_before_the_report() {
        assert!(check(&report(
            r#"{"gateway":"gw","apps":[{"app":"a","held":1,"in_flight":0}]}"#
        ))
        .is_ok());
        let with = |head: &str, since: u64| {
            report(&format!(
                r#"{{"gateway":"gw",{head}"apps":[{{"app":"a","held":0,"in_flight":0,"traffic":{{"since":{since},"counts":{COUNTS}}}}}]}}"#
            ))
        };
        assert!(check(&with(r#""boot":5,"seq":3,"#, 2)).is_ok());
        assert!(check(&with(r#""boot":5,"seq":3,"#, 0)).is_ok());
        for (bad, says) in [
            (with("", 0), "boot and seq: required with traffic"),
            (with(r#""boot":5,"#, 0), "boot and seq"),
            (with(r#""seq":5,"#, 0), "boot and seq"),
            (
                with(r#""boot":5,"seq":3,"#, 3),
                "apps: a: traffic since report 3",
            ),
        ] {
            match check(&bad) {
                Err(Error::Invalid(m)) => assert!(m.contains(says), "{m}"),
                other => panic!("{other:?}"),
            }
        }
    }
}
