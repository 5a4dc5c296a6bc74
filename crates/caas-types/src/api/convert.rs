//! Conversions between the admin API's wire shapes and the domain types, the one place the two
//! meet. A request's policies become domain values (`From`, or `TryFrom` where the domain type is
//! stricter); domain values become an answer's shapes (`From`). Every conversion names every
//! field or variant, so a change on either side does not compile until it is mapped here.

use crate as domain;
use crate::api;

/// `From` both ways between enums with the same variants on the wire and in the domain.
macro_rules! same_variants {
    ($($name:ident { $($variant:ident),+ $(,)? })*) => {$(
        impl From<api::$name> for domain::$name {
            fn from(wire: api::$name) -> Self {
                match wire {
                    $(api::$name::$variant => domain::$name::$variant,)+
                }
            }
        }

        impl From<domain::$name> for api::$name {
            fn from(value: domain::$name) -> Self {
                match value {
                    $(domain::$name::$variant => api::$name::$variant,)+
                }
            }
        }
    )*};
}

/// `From` between structs with the same fields on the wire and in the domain (`<=>` both ways,
/// `=>` one way): the fields listed in `into` convert with `Into`, the others move as they are.
/// Both sides are written out field by field, so a field added to either does not compile until
/// it is listed here.
macro_rules! same_fields {
    (
        $from:ident :: $a:ident <=> $to:ident :: $b:ident {
            into: [$($conv:ident),* $(,)?],
            $($field:ident),* $(,)?
        }
    ) => {
        same_fields!($from::$a => $to::$b { into: [$($conv),*], $($field),* });
        same_fields!($to::$b => $from::$a { into: [$($conv),*], $($field),* });
    };
    (
        $from:ident :: $a:ident => $to:ident :: $b:ident {
            into: [$($conv:ident),* $(,)?],
            $($field:ident),* $(,)?
        }
    ) => {
        impl From<$from::$a> for $to::$b {
            fn from(value: $from::$a) -> Self {
                let $from::$a { $($conv,)* $($field,)* } = value;
                $to::$b { $($conv: $conv.into(),)* $($field,)* }
            }
        }
    };
}

same_variants! {
    Rank { Memory, Cpu }
    OnFailure { Restart, Replace }
    HostState { Ready, Draining, Down }
    InstanceState { Pending, Starting, Running, Unhealthy, Stopping }
}

same_fields! {
    api::Placement <=> domain::PlacementPolicy {
        into: [rank],
        spread, constraints, colocate_with, global
    }
}

// The way out; the way in is the `TryFrom` below.
same_fields! {
    domain::HealthPolicy => api::HealthSpec {
        into: [path, on_failure],
        interval_ms, timeout_ms, failures, successes
    }
}

// The way out; the way in is the scheduler's validation, which checks the bounds (a negative
// `scale_down_delay_s` among them) before it builds the policy.
same_fields! {
    domain::AutoscalePolicy => api::Autoscale {
        into: [scale_down_delay_s],
        min, max, target_concurrency
    }
}

/// Fails only on a path that is not a [`domain::HealthPath`]. The ranges of the numbers are the
/// scheduler's to check (its validation names the field and the bounds).
impl TryFrom<api::HealthSpec> for domain::HealthPolicy {
    type Error = domain::Error;

    fn try_from(wire: api::HealthSpec) -> domain::Result<Self> {
        let api::HealthSpec {
            path,
            interval_ms,
            timeout_ms,
            failures,
            successes,
            on_failure,
        } = wire;
        Ok(domain::HealthPolicy {
            path: path.try_into()?,
            interval_ms,
            timeout_ms,
            failures,
            successes,
            on_failure: on_failure.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use std::fmt::Debug;

    /// What the scheduler wrote to the `placement` column for a default deployment before the
    /// domain types existed (`serde_json::to_string(&api::Placement::default())`).
    const STORED_DEFAULT_PLACEMENT: &str =
        r#"{"rank":"memory","spread":false,"constraints":{},"global":false}"#;
    /// The same for the `health` column (`api::HealthSpec::default()`).
    const STORED_DEFAULT_HEALTH: &str = r#"{"path":"/_ping","interval_ms":1000,"timeout_ms":500,"failures":3,"successes":1,"on_failure":"restart"}"#;

    fn json<T: Serialize>(value: &T) -> String {
        serde_json::to_string(value).expect("serializable")
    }

    fn full_placement() -> api::Placement {
        serde_json::from_str(
            r#"{"rank":"cpu","spread":true,"constraints":{"zone":"a","disk":"ssd"},
                "colocate_with":"db","global":true}"#,
        )
        .expect("valid placement")
    }

    fn full_health() -> api::HealthSpec {
        serde_json::from_str(
            r#"{"path":"/healthz?deep=1","interval_ms":250,"timeout_ms":100,"failures":5,
                "successes":2,"on_failure":"replace"}"#,
        )
        .expect("valid health")
    }

    /// Each wire variant converts to a domain value stored and logged the same, and back.
    fn variants_round_trip<W, D>(wires: impl IntoIterator<Item = W>)
    where
        W: Copy + PartialEq + Debug + Serialize + From<D>,
        D: Debug + Serialize + From<W>,
    {
        for wire in wires {
            let value = D::from(wire);
            assert_eq!(json(&value), json(&wire));
            assert_eq!(format!("{value:?}"), format!("{wire:?}"), "logged the same");
            assert_eq!(W::from(value), wire);
        }
    }

    #[test]
    fn rank_round_trips() {
        variants_round_trip::<_, domain::Rank>([api::Rank::Memory, api::Rank::Cpu]);
    }

    #[test]
    fn on_failure_round_trips() {
        variants_round_trip::<_, domain::OnFailure>([
            api::OnFailure::Restart,
            api::OnFailure::Replace,
        ]);
    }

    #[test]
    fn host_state_round_trips() {
        variants_round_trip::<_, domain::HostState>([
            api::HostState::Ready,
            api::HostState::Draining,
            api::HostState::Down,
        ]);
    }

    #[test]
    fn instance_state_round_trips() {
        variants_round_trip::<_, domain::InstanceState>([
            api::InstanceState::Pending,
            api::InstanceState::Starting,
            api::InstanceState::Running,
            api::InstanceState::Unhealthy,
            api::InstanceState::Stopping,
        ]);
    }

    #[test]
    fn placement_round_trips() {
        for wire in [api::Placement::default(), full_placement()] {
            let value = domain::PlacementPolicy::from(wire.clone());
            assert_eq!(json(&value), json(&wire), "stored as the wire shape was");
            assert_eq!(api::Placement::from(value), wire);
        }
    }

    #[test]
    fn health_round_trips() {
        for wire in [api::HealthSpec::default(), full_health()] {
            let value = domain::HealthPolicy::try_from(wire.clone()).expect("valid");
            assert_eq!(json(&value), json(&wire), "stored as the wire shape was");
            assert_eq!(api::HealthSpec::from(value), wire);
        }
    }

    #[test]
    fn a_health_path_the_domain_refuses_does_not_convert() {
        for path in ["ping", "/a b", ""] {
            let wire = api::HealthSpec {
                path: path.into(),
                ..api::HealthSpec::default()
            };
            assert!(domain::HealthPolicy::try_from(wire).is_err(), "{path:?}");
        }
    }

    #[test]
    fn a_default_deployment_is_stored_and_read_back_as_before() {
        // The columns' JSON written before is what the domain types write now...
        assert_eq!(json(&api::Placement::default()), STORED_DEFAULT_PLACEMENT);
        assert_eq!(json(&api::HealthSpec::default()), STORED_DEFAULT_HEALTH);
        let placement = domain::PlacementPolicy::from(api::Placement::default());
        let health = domain::HealthPolicy::try_from(api::HealthSpec::default()).expect("valid");
        assert_eq!(placement, domain::PlacementPolicy::default());
        assert_eq!(health, domain::HealthPolicy::default());
        assert_eq!(json(&placement), STORED_DEFAULT_PLACEMENT);
        assert_eq!(json(&health), STORED_DEFAULT_HEALTH);
        // ...and a stored row reads back as the same domain value.
        let read: domain::PlacementPolicy =
            serde_json::from_str(STORED_DEFAULT_PLACEMENT).expect("stored placement");
        assert_eq!(read, placement);
        let read: domain::HealthPolicy =
            serde_json::from_str(STORED_DEFAULT_HEALTH).expect("stored health");
        assert_eq!(read, health);
    }

    #[test]
    fn a_full_deployment_is_stored_and_read_back_as_before() {
        let stored_placement = json(&full_placement());
        let stored_health = json(&full_health());
        assert_eq!(
            stored_placement,
            r#"{"rank":"cpu","spread":true,"constraints":{"disk":"ssd","zone":"a"},"colocate_with":"db","global":true}"#
        );
        let placement: domain::PlacementPolicy =
            serde_json::from_str(&stored_placement).expect("stored placement");
        let health: domain::HealthPolicy =
            serde_json::from_str(&stored_health).expect("stored health");
        assert_eq!(placement, domain::PlacementPolicy::from(full_placement()));
        assert_eq!(
            health,
            domain::HealthPolicy::try_from(full_health()).expect("valid")
        );
        assert_eq!(json(&placement), stored_placement);
        assert_eq!(json(&health), stored_health);
    }
}
