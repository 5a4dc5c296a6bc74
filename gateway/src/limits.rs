//! Connection caps, applied once per connection at accept: a global count (one atomic) and a
//! count per peer address in a sharded map (one shard's mutex, held for one increment or
//! decrement, taken at accept and at close, never per request). A connection over either cap
//! is closed at once, unread.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Shards of the per-address map: enough that accepts on several worker threads rarely meet.
const SHARDS: usize = 64;

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `--max-connections`.
    Global,
    /// `--max-connections-per-ip`.
    PerIp,
}

/// The gateway's connection counts and caps.
#[derive(Debug)]
pub(crate) struct ConnLimits {
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    hasher: RandomState,
    shards: Box<[Mutex<HashMap<IpAddr, usize>>]>,
}

/// One admitted connection; dropping it gives its place back.
#[derive(Debug)]
pub(crate) struct Permit {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
}

impl ConnLimits {
    /// Caps of `max_total` connections and `max_per_ip` from one address (0 counts as 1).
    pub(crate) fn new(max_total: usize, max_per_ip: usize) -> ConnLimits {
        ConnLimits {
            max_total: max_total.max(1),
            max_per_ip: max_per_ip.max(1),
            total: AtomicUsize::new(0),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    fn shard(&self, ip: IpAddr) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        let i = (self.hasher.hash_one(ip) as usize) % self.shards.len();
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a connection from `ip`, or says which cap it is over.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refused> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Global);
        }
        {
            let mut shard = self.shard(ip);
            let n = shard.entry(ip).or_insert(0);
            if *n >= self.max_per_ip {
                drop(shard);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(Refused::PerIp);
            }
            *n += 1;
        }
        Ok(Permit {
            limits: Arc::clone(self),
            ip,
        })
    }

    /// Connections open now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        {
            let mut shard = self.limits.shard(self.ip);
            if let Some(n) = shard.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    shard.remove(&self.ip);
                }
            }
        }
        self.limits.total.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn caps_per_address_and_in_total_and_gives_places_back() {
        let limits = Arc::new(ConnLimits::new(3, 2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = limits.admit(a).unwrap();
        let a2 = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).unwrap_err(), Refused::PerIp);
        let b1 = limits.admit(b).unwrap();
        assert_eq!(limits.admit(b).unwrap_err(), Refused::Global);
        assert_eq!(limits.open(), 3);
        drop(a1);
        assert_eq!(limits.open(), 2);
        let a3 = limits.admit(a).unwrap();
        drop((a2, a3, b1));
        assert_eq!(limits.open(), 0);
        assert!(limits.shards.iter().all(|s| s.lock().unwrap().is_empty()));
    }
}
