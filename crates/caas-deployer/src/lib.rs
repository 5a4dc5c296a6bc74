//! The only code in caas that talks to a Docker Engine: pull, run with port mapping and limits,
//! stop, remove, inspect, list by label, and the engine's event stream.

mod error;

pub use error::{Error, Result};
