//! Crash-loop back-off: the delay before an unhealthy instance is healed doubles with each
//! consecutive failure, so a crash-looping app does not hammer its host.

use caas_types::InstanceId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// First restart delay; doubles per consecutive failure up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// An instance healthy this long has its back-off reset.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// Crash-loop bookkeeping per instance.
#[derive(Debug, Default)]
pub struct Backoff {
    state: Mutex<HashMap<InstanceId, (u32, Instant)>>,
}

impl Backoff {
    /// The delay before the next restart of `id`, counting this failure.
    pub fn next_delay(&self, id: &InstanceId) -> Duration {
        let mut map = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let entry = map.entry(id.clone()).or_insert((0, now));
        if now.duration_since(entry.1) > STABLE_AFTER {
            entry.0 = 0;
        }
        let delay = BASE_BACKOFF
            .saturating_mul(1u32 << entry.0.min(10))
            .min(MAX_BACKOFF);
        entry.0 += 1;
        entry.1 = now;
        delay
    }

    /// Forgets an instance.
    pub fn forget(&self, id: &InstanceId) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff::default();
        let id: InstanceId = "app-1".parse().expect("valid");
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay(&id)).collect();
        assert_eq!(delays[0], BASE_BACKOFF);
        assert_eq!(delays[1], BASE_BACKOFF * 2);
        assert_eq!(delays[2], BASE_BACKOFF * 4);
        assert!(delays.iter().all(|d| *d <= MAX_BACKOFF));
        assert_eq!(delays[9], MAX_BACKOFF);
        b.forget(&id);
        assert_eq!(b.next_delay(&id), BASE_BACKOFF);
    }
}
