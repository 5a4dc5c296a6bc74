//! Names unique to one test: every test owns its namespace, so tests run in parallel, in one
//! process or several.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// A number no other call, in this process or another, returns (with overwhelming odds).
///
/// A randomly keyed hash of the process id, the time and a per-process counter: two calls in
/// one process differ by the counter, two processes by their ids and random keys.
pub fn unique_u64() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    RandomState::new().hash_one((
        std::process::id(),
        SystemTime::now(),
        CALLS.fetch_add(1, Ordering::Relaxed),
    ))
}

/// `{prefix}-{16 hex digits}`, unique (see [`unique_u64`]). Lower-case ASCII when `prefix` is,
/// so it fits a ZooKeeper node, a label value, an image tag and a file name alike.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:016x}", unique_u64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn unique_names_do_not_repeat() {
        let names: HashSet<String> = (0..10_000).map(|_| unique("t")).collect();
        assert_eq!(names.len(), 10_000);
        assert!(
            names.iter().all(|n| n.len() == "t-".len() + 16),
            "{names:?}"
        );
    }
}
