//! What every caas crate's tests share, in one place instead of a copy per crate.
//!
//! - [`var`]: the services' coordinates from the environment that `scripts/up` writes to
//!   `.caas/env`. A test that cannot reach a service fails and says how to start it; it never
//!   skips.
//! - [`eventually`] and its kin: waits with a deadline and a message, never bare sleeps.
//! - [`unique`]: names that no other test, in this process or another, picks.
//! - A namespace per test that removes itself on drop, even when the test fails:
//!   `zk::Chroot` (feature `zk`), `mysql::TestDatabase` (feature `mysql`) and
//!   `docker::Namespace` (feature `docker`, through `caas-deployer`'s `Deployer`).
//!
//! A dev-dependency only: no production crate may depend on it (the `dependencies` test
//! checks). It is the one crate besides their owners allowed to use `zookeeper-client` and
//! `sqlx`, so that tests can look at what is really stored.

mod env;
mod ids;
mod wait;

#[cfg(feature = "docker")]
pub mod docker;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "zk")]
pub mod zk;

pub use env::{var, var_opt, HOW};
pub use ids::{unique, unique_u64};
pub use wait::{eventually, eventually_true, eventually_within, WAIT};

/// The ZooKeeper client crate, for tests that read or change nodes behind the platform's back
/// (through [`zk::super_client`] or [`zk::Chroot::raw`]) and match its errors.
#[cfg(feature = "zk")]
pub use zookeeper_client;

/// Sends `tracing` output to the test's captured output, filtered by `RUST_LOG` or, when that
/// is unset, by `default_filter` (e.g. `caas_registry=debug`). Later calls do nothing.
pub fn init_tracing(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(filter)
        .try_init();
}

/// Runs `work` on a runtime of its own, on a thread of its own, and waits for it.
///
/// For `Drop` of the namespace guards: drop cannot await, and it runs inside the test's runtime
/// (a current-thread one would deadlock on a nested `block_on`) or while the test unwinds. A
/// failure is printed, not raised: a panic in drop during unwinding would abort the test binary
/// and hide the test's own failure.
#[cfg(any(feature = "zk", feature = "mysql", feature = "docker"))]
pub(crate) fn clean_up<F, Fut>(what: &str, work: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let done = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("no runtime: {e}"))?;
        runtime.block_on(work())
    })
    .join();
    match done {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("cleanup of {what} failed: {e}"),
        Err(_) => eprintln!("cleanup of {what} failed: its thread panicked"),
    }
}
