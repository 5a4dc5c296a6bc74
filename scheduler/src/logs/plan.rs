//! The collector's and the reader's decisions as pure functions: which instances to start
//! following, which apps' rings to trim, and which followed lines are new. (The order lines
//! are shown in is the store's: `store::in_time_order`.)

use crate::store::{InstanceRow, LogRow};
use caas_deployer::ContainerEvent;
use caas_types::api::LogStream;
use caas_types::Timestamp;
use caas_types::{labels, AppId, ContainerId, InstanceId, Version};
use std::collections::HashMap;
use std::collections::HashSet;

/// A container to follow, and whose lines it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The app.
    pub app: AppId,
    /// The instance's version.
    pub version: Version,
    /// The instance.
    pub instance: InstanceId,
    /// Its container.
    pub container: ContainerId,
}

impl Source {
    /// The source of an instance row with a container.
    pub fn of_row(row: &InstanceRow, container: &ContainerId) -> Source {
        Source {
            app: row.app.clone(),
            version: row.version.clone(),
            instance: row.id.clone(),
            container: container.clone(),
        }
    }

    /// The source of an engine event, from the labels every instance's container carries;
    /// `None` for a container without valid ones (not an instance of ours).
    pub fn of_event(event: &ContainerEvent) -> Option<Source> {
        let label = |k: &str| event.attributes.get(k).map(String::as_str);
        Some(Source {
            app: label(labels::APP)?.parse().ok()?,
            version: label(labels::VERSION)?.parse().ok()?,
            instance: label(labels::INSTANCE)?.parse().ok()?,
            container: event.id.clone(),
        })
    }
}

/// The instances whose containers should be followed and are not yet: every instance with a
/// container, whatever its state (a starting one already writes; a stopping one writes its last
/// lines), that has no live follower.
pub fn to_follow<'a>(
    instances: &'a [InstanceRow],
    followed: &HashSet<InstanceId>,
) -> Vec<(&'a InstanceRow, &'a ContainerId)> {
    instances
        .iter()
        .filter(|i| !followed.contains(&i.id))
        .filter_map(|i| i.container_id.as_ref().map(|c| (i, c)))
        .collect()
}

/// Whether an app's ring holds more than `keep` lines and must be trimmed.
pub fn over_ring(count: u64, keep: u32) -> bool {
    count > u64::from(keep)
}

/// The newest line sent of each instance's stream: a follow sends a line only if it is newer
/// (an instance's stream is written in time order; a line older than one sent is a copy that
/// an old and a new leader both stored).
#[derive(Debug, Default)]
pub struct Sent(HashMap<(InstanceId, LogStream), Timestamp>);

impl Sent {
    /// Keeps the lines of `rows` not sent before, and marks them sent.
    pub fn keep_new(&mut self, rows: &mut Vec<LogRow>) {
        rows.retain(|r| {
            let key = (r.line.instance.clone(), r.line.stream);
            match self.0.get(&key) {
                Some(&t) if r.line.ts <= t => false,
                _ => {
                    self.0.insert(key, r.line.ts);
                    true
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::fixtures;
    use caas_types::InstanceState;

    fn row(chunk: i64, ts: i64, instance: &str) -> LogRow {
        fixtures::log_row(chunk, 0, instance, ts, &format!("{instance} {ts}"))
    }

    #[test]
    fn a_follow_sends_each_line_once() {
        let mut sent = Sent::default();
        let mut first = vec![row(1, 10, "a-1"), row(1, 20, "a-1"), row(2, 15, "b-1")];
        sent.keep_new(&mut first);
        assert_eq!(first.len(), 3);
        // A later page: a copy of a-1's line at 20 (another leader's chunk), and new lines.
        let mut next = vec![
            row(3, 20, "a-1"),
            row(3, 30, "a-1"),
            row(4, 15, "b-1"),
            row(4, 16, "b-1"),
        ];
        sent.keep_new(&mut next);
        let kept: Vec<(i64, &str)> = next
            .iter()
            .map(|r| (r.line.ts.as_nanos(), r.line.instance.as_str()))
            .collect();
        assert_eq!(kept, vec![(30, "a-1"), (16, "b-1")]);
    }

    #[test]
    fn a_started_container_is_followed_by_its_labels() {
        let mut event = ContainerEvent {
            id: fixtures::cid(7),
            kind: caas_deployer::EventKind::Start,
            attributes: [
                ("caas.app", "shop"),
                ("caas.version", "v2"),
                ("caas.instance", "shop-abc"),
                ("name", "caas-shop-abc"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            time_nanos: 0,
        };
        let source = Source::of_event(&event).unwrap();
        assert_eq!(source.app.as_str(), "shop");
        assert_eq!(source.version.as_str(), "v2");
        assert_eq!(source.instance.as_str(), "shop-abc");
        assert_eq!(source.container, fixtures::cid(7));
        event
            .attributes
            .insert("caas.instance".into(), "Not Valid".into());
        assert_eq!(Source::of_event(&event), None);
        event.attributes.remove("caas.instance");
        assert_eq!(Source::of_event(&event), None);
    }

    #[test]
    fn the_ring_is_trimmed_only_above_its_size() {
        assert!(!over_ring(0, 10_000));
        assert!(!over_ring(10_000, 10_000));
        assert!(over_ring(10_001, 10_000));
        assert!(over_ring(1, 0));
    }

    #[test]
    fn instances_with_a_container_and_no_follower_are_followed() {
        let with = fixtures::instance("shop-a", 1, InstanceState::Running, Some(1));
        let starting = fixtures::instance("shop-b", 2, InstanceState::Starting, Some(2));
        let pending = fixtures::instance("shop-c", 1, InstanceState::Pending, None);
        let rows = vec![with.clone(), starting, pending];
        let followed: HashSet<InstanceId> = [with.id.clone()].into();
        let picked: Vec<&str> = to_follow(&rows, &followed)
            .iter()
            .map(|(i, _)| i.id.as_str())
            .collect();
        assert_eq!(picked, vec!["shop-b"]);
    }
}
