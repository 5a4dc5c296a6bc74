//! The caas scheduler as a library: the store (MySQL), placement with optimistic locking, and
//! (to come) the admin API, deploy orchestration and the reconciler. `main.rs` only parses
//! configuration and calls into here, so tests drive the same code without a process.

pub mod error;
pub mod placement;
pub mod store;

pub use error::{Error, Result};
