//! A deployment's policies as the platform reasons with them: where its instances go
//! ([`PlacementPolicy`], ranked by [`Rank`]) and how their health is checked and acted on
//! ([`HealthPolicy`], [`OnFailure`]).
//!
//! These are domain types, apart from the admin API's wire shapes (`api::Placement`,
//! `api::HealthSpec`): the scheduler converts a request into them once, at its API edge, where
//! it validates, and stores, places, heals and reconciles with them only. Their serde form is
//! the one the scheduler stores in the `deployments` table's `placement` and `health` JSON
//! columns, so it must not change: stored rows are read back with it.

use crate::error::{Error, Result};
use crate::ids::validated_string;
use crate::AppId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Longest health path, in bytes.
const MAX_HEALTH_PATH: usize = 512;

validated_string!(
    /// The path the health checks `GET` on an instance: starts with `/`, at most 512 bytes, no
    /// spaces, control characters or non-ASCII, so it can be put in a request line as it is.
    HealthPath,
    validate_health_path
);

fn validate_health_path(s: &str) -> Result<()> {
    const KIND: &str = "health path";
    if s.len() > MAX_HEALTH_PATH {
        return Err(Error::TooLong {
            kind: KIND,
            len: s.len(),
            max: MAX_HEALTH_PATH,
        });
    }
    if !s.starts_with('/') {
        return Err(Error::invalid(KIND, "must start with '/'"));
    }
    if !s.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Error::invalid(
            KIND,
            "must hold no spaces, control characters or non-ASCII",
        ));
    }
    Ok(())
}

impl Default for HealthPath {
    /// `/_ping`, the path the platform's apps answer.
    fn default() -> Self {
        HealthPath("/_ping".to_owned())
    }
}

/// How a deployment's instances are placed on hosts.
///
/// Stored as the `placement` JSON column; the serde attributes keep the form rows were written
/// with (`colocate_with` left out when unset, missing fields defaulted).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PlacementPolicy {
    /// What "best host" means.
    #[serde(default)]
    pub rank: Rank,
    /// Put instances of one deployment on distinct hosts where possible.
    #[serde(default)]
    pub spread: bool,
    /// Host labels that must match exactly, e.g. `{"zone": "a"}`.
    #[serde(default)]
    pub constraints: BTreeMap<String, String>,
    /// Only hosts that already run an instance of this app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colocate_with: Option<AppId>,
    /// One instance on every ready host (the instance count is ignored).
    #[serde(default)]
    pub global: bool,
}

/// The ranking policy: which free amount makes a host better.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Rank {
    /// Most free memory first (default).
    #[default]
    Memory,
    /// Most free CPU first.
    Cpu,
}

/// What to do with an instance that fails its health checks.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Restart the container in place (default).
    #[default]
    Restart,
    /// Stop it and place a new instance.
    Replace,
}

/// How a deployment's instances are health-checked, and what a failure leads to.
///
/// Stored as the `health` JSON column, with the field names of the admin API's `HealthSpec`;
/// missing fields take their defaults.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthPolicy {
    /// Path polled on the instance.
    pub path: HealthPath,
    /// Time between checks, milliseconds.
    pub interval_ms: u64,
    /// Time a check may take, milliseconds.
    pub timeout_ms: u64,
    /// Consecutive failures before the instance leaves ZooKeeper.
    pub failures: u32,
    /// Consecutive successes before it comes back.
    pub successes: u32,
    /// Restart in place or replace.
    pub on_failure: OnFailure,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            path: HealthPath::default(),
            interval_ms: 1000,
            timeout_ms: 500,
            failures: 3,
            successes: 1,
            on_failure: OnFailure::Restart,
        }
    }
}

/// A deployment's autoscaling: the platform keeps its instance count within `[min, max]`,
/// following the in-flight requests per instance against `target_concurrency`, and lowers it
/// only after `scale_down_delay_s` of lower demand.
///
/// Stored as the `autoscale` JSON column, with the field names of the admin API's `Autoscale`.
/// The scheduler's validation builds it from a request whose bounds it checked.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AutoscalePolicy {
    /// Fewest instances (0: the app may sleep).
    pub min: u32,
    /// Most instances.
    pub max: u32,
    /// In-flight requests per instance the platform aims for.
    pub target_concurrency: u32,
    /// Seconds of lower demand before the count goes down.
    pub scale_down_delay_s: u32,
}

impl AutoscalePolicy {
    /// `n` within `[min, max]`.
    pub fn clamp(&self, n: u32) -> u32 {
        n.clamp(self.min, self.max.max(self.min))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autoscale_clamps_and_is_stored_with_the_api_field_names() {
        let a = AutoscalePolicy {
            min: 2,
            max: 5,
            target_concurrency: 10,
            scale_down_delay_s: 60,
        };
        assert_eq!((a.clamp(0), a.clamp(3), a.clamp(9)), (2, 3, 5));
        let stored = serde_json::to_string(&a).expect("serializable");
        assert_eq!(
            stored,
            r#"{"min":2,"max":5,"target_concurrency":10,"scale_down_delay_s":60}"#
        );
        let wire = crate::api::Autoscale::from(a);
        assert_eq!(serde_json::to_string(&wire).expect("serializable"), stored);
    }

    #[test]
    fn health_paths_are_checked() {
        for good in ["/", "/_ping", "/health/live?full=1", "/a%20b"] {
            assert!(good.parse::<HealthPath>().is_ok(), "{good}");
        }
        let long = format!("/{}", "a".repeat(MAX_HEALTH_PATH));
        for bad in ["", "ping", "/a b", "/a\tb", "/a\0", "/é", long.as_str()] {
            assert!(bad.parse::<HealthPath>().is_err(), "{bad:?}");
        }
        assert_eq!(HealthPath::default().as_str(), "/_ping");
        assert!(serde_json::from_str::<HealthPolicy>(r#"{"path":"ping"}"#).is_err());
    }

    #[test]
    fn missing_fields_take_their_defaults() {
        let h: HealthPolicy = serde_json::from_str(r#"{"interval_ms":2000}"#).expect("valid");
        assert_eq!(h.path.as_str(), "/_ping");
        assert_eq!(h.interval_ms, 2000);
        assert_eq!(h.failures, 3);
        let p: PlacementPolicy = serde_json::from_str(r#"{"spread":true}"#).expect("valid");
        assert_eq!(p.rank, Rank::Memory);
        assert!(p.spread && !p.global);
    }
}
