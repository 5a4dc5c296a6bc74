//! Waits with a deadline: a test polls for what it expects instead of sleeping, and fails with
//! what it was waiting for when it does not come.

use std::future::Future;
use std::time::{Duration, Instant};

/// The deadline of [`eventually`]: generous, since the machine is shared and noisy and a wait
/// that succeeds returns as soon as it can.
pub const WAIT: Duration = Duration::from_secs(60);

/// How long to sleep between two checks.
const POLL: Duration = Duration::from_millis(50);

/// Polls `check` until it returns `Some`, and returns that; panics with `what` after [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(what, WAIT, check).await
}

/// Like [`eventually`] with a deadline of `limit`, for a wait whose length the test asserts
/// (e.g. "within the health policy's time").
pub async fn eventually_within<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        let now = Instant::now();
        if now >= deadline {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(POLL.min(deadline - now)).await;
    }
}

/// Polls `check` until it returns `true`; panics with `what` after [`WAIT`].
pub async fn eventually_true<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually(what, || {
        let done = check();
        async move { done.await.then_some(()) }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn returns_the_first_some() {
        let calls = AtomicU32::new(0);
        let v = eventually("the third call", || async {
            let n = calls.fetch_add(1, Ordering::Relaxed) + 1;
            (n == 3).then_some(n)
        })
        .await;
        assert_eq!(v, 3);
    }

    #[tokio::test]
    async fn true_ends_the_wait() {
        let calls = AtomicU32::new(0);
        eventually_true("the second call", || async {
            calls.fetch_add(1, Ordering::Relaxed) == 1
        })
        .await;
        assert_eq!(calls.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 200ms waiting for: what never comes")]
    async fn fails_with_what_it_waited_for() {
        eventually_within("what never comes", Duration::from_millis(200), || async {
            None::<()>
        })
        .await;
    }
}
