//! Failed logins, limited per client address: every token the admin API (or the registry token
//! endpoint) does not know costs a database lookup and is a guess, so an address that fails
//! more than `--auth-failures-per-minute` times gets 429 with `Retry-After` before any lookup,
//! until its allowance refills. Known tokens never count. A token bucket per address, in
//! memory, bounded in size.

use super::error::ApiError;
use super::AppState;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

/// How many client addresses are tracked at most; beyond, the recovered ones are forgotten
/// first, then all (failing open rather than growing without bound).
const MAX_TRACKED: usize = 65_536;

/// One address's allowance: `left` failures, refilled continuously.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    left: f64,
    at: Instant,
}

/// The failed-login allowance of every client address.
#[derive(Debug)]
pub struct AuthFailures {
    per_minute: u32,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl AuthFailures {
    /// `per_minute` failures per address per minute (also the burst); 0 turns the limit off.
    pub fn new(per_minute: u32) -> AuthFailures {
        AuthFailures {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let per_sec = f64::from(self.per_minute) / 60.0;
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.left = (b.left + elapsed * per_sec).min(f64::from(self.per_minute));
        b.at = now;
    }

    /// `Err(seconds to wait)` while `ip` has no failure left.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        let Some(b) = buckets.get_mut(&ip) else {
            return Ok(());
        };
        self.refill(b, now);
        if b.left >= 1.0 {
            return Ok(());
        }
        let per_sec = f64::from(self.per_minute) / 60.0;
        // At most 60 s at any allowance of one or more a minute: the cast cannot overflow.
        Err(((1.0 - b.left) / per_sec).ceil().max(1.0) as u64)
    }

    /// Counts one failed login from `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        if self.per_minute == 0 {
            return;
        }
        let Ok(mut buckets) = self.buckets.lock() else {
            return;
        };
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&ip) {
            let full = f64::from(self.per_minute);
            let per_sec = full / 60.0;
            buckets.retain(|_, b| {
                b.left + now.saturating_duration_since(b.at).as_secs_f64() * per_sec < full
            });
            if buckets.len() >= MAX_TRACKED {
                buckets.clear();
            }
        }
        let full = f64::from(self.per_minute);
        let b = buckets.entry(ip).or_insert(Bucket {
            left: full,
            at: now,
        });
        self.refill(b, now);
        b.left = (b.left - 1.0).max(0.0);
    }

    /// 429 for `ip` (when known) while it has no failure left.
    pub(super) fn gate(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        match ip.map(|ip| self.check(ip, Instant::now())) {
            Some(Err(retry_after)) => Err(ApiError::TooManyFailures { retry_after }),
            _ => Ok(()),
        }
    }

    /// Counts a failure for `ip` (when known).
    pub(super) fn count(&self, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            self.failed(ip, Instant::now());
        }
    }
}

/// The client's address, when the server knows it (`ConnectInfo`; a router driven without a
/// listener, as in unit tests, has none).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl ClientAddr {
    /// The address in a request's extensions.
    pub(super) fn of(parts: &Parts) -> ClientAddr {
        ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        )
    }
}

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<ClientAddr, Infallible> {
        Ok(ClientAddr::of(parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn an_address_is_stopped_after_its_allowance_and_let_in_as_it_refills() {
        let limit = AuthFailures::new(6);
        let t0 = Instant::now();
        for _ in 0..6 {
            assert_eq!(limit.check(A, t0), Ok(()));
            limit.failed(A, t0);
        }
        // Six a minute: one more every 10 s.
        assert_eq!(limit.check(A, t0), Err(10));
        assert_eq!(limit.check(B, t0), Ok(()), "other addresses are not held");
        assert_eq!(limit.check(A, t0 + Duration::from_secs(4)), Err(6));
        assert_eq!(limit.check(A, t0 + Duration::from_secs(10)), Ok(()));
        limit.failed(A, t0 + Duration::from_secs(10));
        assert!(limit.check(A, t0 + Duration::from_secs(10)).is_err());
        // A minute later the whole allowance is back, never more.
        let later = t0 + Duration::from_secs(600);
        for _ in 0..6 {
            assert_eq!(limit.check(A, later), Ok(()));
            limit.failed(A, later);
        }
        assert!(limit.check(A, later).is_err());
    }

    #[test]
    fn zero_turns_the_limit_off() {
        let limit = AuthFailures::new(0);
        let t0 = Instant::now();
        for _ in 0..100 {
            limit.failed(A, t0);
        }
        assert_eq!(limit.check(A, t0), Ok(()));
    }

    #[test]
    fn the_table_stays_bounded() {
        let limit = AuthFailures::new(10);
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 10) {
            limit.failed(IpAddr::V4(std::net::Ipv4Addr::from(i)), t0);
        }
        let tracked = limit.buckets.lock().map(|b| b.len()).unwrap_or(usize::MAX);
        assert!(tracked <= MAX_TRACKED, "{tracked}");
    }
}
