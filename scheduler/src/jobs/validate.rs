//! Checks of a job request (and of a workflow step, which asks for the same things) before
//! anything is claimed: the command, the environment, the size, the timeout.

use crate::deployments::{check_command, check_env};
use crate::error::{Error, Result};
use caas_types::{Cpus, Memory, Resources};
use std::collections::BTreeMap;

/// Longest `timeout_s` of a job or workflow: 7 days.
pub const MAX_TIMEOUT_S: i64 = 7 * 24 * 3600;

fn invalid(what: String) -> Error {
    Error::Invalid(what)
}

/// The resources of a job or step, checked; `field` prefixes the messages (`""` or `steps[2].`).
pub fn resources(field: &str, memory_mb: u64, cpus: f64) -> Result<Resources> {
    let memory =
        Memory::from_mib(memory_mb).map_err(|e| invalid(format!("{field}memory_mb: {e}")))?;
    let cpus = Cpus::from_cores(cpus).map_err(|e| invalid(format!("{field}cpus: {e}")))?;
    Ok(Resources { memory, cpus })
}

/// Checks `timeout_s`: more than 0, at most [`MAX_TIMEOUT_S`]; `field` prefixes the message.
pub fn timeout(field: &str, timeout_s: i64) -> Result<()> {
    if timeout_s <= 0 || timeout_s > MAX_TIMEOUT_S {
        return Err(invalid(format!(
            "{field}timeout_s: must be between 1 and {MAX_TIMEOUT_S} seconds (got {timeout_s})"
        )));
    }
    Ok(())
}

/// Checks a job's or step's `command` and `env`.
pub fn command_and_env(
    field: &str,
    command: &[String],
    env: &BTreeMap<String, String>,
) -> Result<()> {
    check_command(&format!("{field}command"), command)?;
    check_env(&format!("{field}env"), env)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bad_requests_are_refused_with_the_field_named() {
        let cmd = |c: &[&str]| c.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let env = BTreeMap::new();
        assert!(command_and_env("", &cmd(&["true"]), &env).is_ok());
        let e = command_and_env("", &[], &env).unwrap_err().to_string();
        assert!(e.contains("command"), "{e}");
        let e = command_and_env("steps[1].", &cmd(&["sh", ""]), &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("steps[1].command[1]"), "{e}");
        let bad_env = BTreeMap::from([("1X".to_owned(), "v".to_owned())]);
        let e = command_and_env("", &cmd(&["true"]), &bad_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("env"), "{e}");
        for t in [0, -5, MAX_TIMEOUT_S + 1] {
            let e = timeout("", t).unwrap_err().to_string();
            assert!(e.contains("timeout_s"), "{e}");
        }
        assert!(timeout("", 1).is_ok());
        let e = resources("", 0, 0.25).unwrap_err().to_string();
        assert!(e.contains("memory_mb"), "{e}");
        let e = resources("", 64, 0.0).unwrap_err().to_string();
        assert!(e.contains("cpus"), "{e}");
        assert!(resources("", 64, 0.25).is_ok());
    }
}
