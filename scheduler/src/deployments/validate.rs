//! Checks a deployment request before anything is claimed: sizes, ports, command, env, health
//! settings, autoscaling bounds (and the starting count clamped to them).
//! Everything here is pure, so bad input is a 400 with nothing touched. This is the API edge for
//! deployments: the request's wire shapes become the domain's policies here, and nothing further
//! in sees the wire shapes.

use super::Deployments;
use crate::error::{Error, Result};
use crate::store::NewDeployment;
use caas_types::api::{Autoscale, CreateDeployment};
use caas_types::{AppId, AutoscalePolicy, Cpus, HealthPolicy, Memory, PlacementPolicy, Resources};

/// Most instances one deployment may ask for.
pub const MAX_INSTANCES: u32 = 1000;
const MAX_ENV: usize = 256;
/// Most bytes of names and values in one deployment's `env`, and in one app's config.
pub const MAX_ENV_BYTES: usize = 64 * 1024;
/// Most arguments in a `command`.
pub const MAX_COMMAND_ARGS: usize = 256;
/// Most bytes of all arguments of a `command` together.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// Checks a `command` (of a deployment, and later of a job or a workflow step): 1 to
/// [`MAX_COMMAND_ARGS`] arguments, none empty, none with a NUL byte (the kernel's `execve` cuts
/// an argument there), [`MAX_COMMAND_BYTES`] in all. `field` names it in the message.
pub fn check_command(field: &str, command: &[String]) -> Result<()> {
    if command.is_empty() {
        return Err(invalid(&format!(
            "{field}: must hold the program and its arguments (an empty list runs nothing; \
             leave it out to run the image's command)"
        )));
    }
    if command.len() > MAX_COMMAND_ARGS {
        return Err(invalid(&format!(
            "{field}: at most {MAX_COMMAND_ARGS} arguments"
        )));
    }
    if let Some(i) = command.iter().position(String::is_empty) {
        return Err(invalid(&format!("{field}[{i}]: must not be empty")));
    }
    if let Some(i) = command.iter().position(|a| a.contains('\0')) {
        return Err(invalid(&format!("{field}[{i}]: contains a NUL byte")));
    }
    if command.iter().map(String::len).sum::<usize>() > MAX_COMMAND_BYTES {
        return Err(invalid(&format!("{field}: larger than 64 KiB")));
    }
    Ok(())
}

/// Checks an `env` map (of a deployment, a job or a workflow step): at most [`MAX_ENV`]
/// variables, names by [`env_name_ok`], no NUL byte in a value, [`MAX_ENV_BYTES`] in all. `field`
/// names it in the message.
pub fn check_env(field: &str, env: &std::collections::BTreeMap<String, String>) -> Result<()> {
    if env.len() > MAX_ENV {
        return Err(invalid(&format!("{field}: at most {MAX_ENV} variables")));
    }
    let mut env_bytes = 0;
    for (k, v) in env {
        if !env_name_ok(k) {
            return Err(invalid(&format!("{field}: {ENV_NAME_RULE}")));
        }
        if v.contains('\0') {
            return Err(invalid(&format!("{field}: {k} contains a NUL byte")));
        }
        env_bytes += k.len() + v.len();
    }
    if env_bytes > MAX_ENV_BYTES {
        return Err(invalid(&format!("{field}: larger than 64 KiB")));
    }
    Ok(())
}

/// The rule [`env_name_ok`] checks, in words, for error messages.
pub const ENV_NAME_RULE: &str = "names use letters, digits and '_' and do not start with a digit";

/// Whether `name` may name an environment variable (`[A-Za-z_][A-Za-z0-9_]*`, at most 256
/// bytes): the one rule for a deployment's `env` and an app's config vars and secrets.
pub fn env_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A request that passed validation, ready to be deployed.
#[derive(Debug, Clone)]
pub struct DeployPlan {
    /// The deployment row to create.
    pub new: NewDeployment,
}

/// Checks an instance count (`allow_zero` for scale-down to nothing).
pub fn check_instance_count(n: u32, allow_zero: bool) -> Result<()> {
    if (n == 0 && !allow_zero) || n > MAX_INSTANCES {
        let low = if allow_zero { 0 } else { 1 };
        return Err(Error::Invalid(format!(
            "instances: must be between {low} and {MAX_INSTANCES}"
        )));
    }
    Ok(())
}

/// Longest `autoscale.scale_down_delay_s`: one day, in seconds.
pub const MAX_SCALE_DOWN_DELAY_S: u32 = 86_400;

/// Checks a request's `autoscale` against its other fields and builds the policy: `max` 1 to
/// [`MAX_INSTANCES`], `min` at most `max`, `target_concurrency` at least 1,
/// `scale_down_delay_s` 0 to [`MAX_SCALE_DOWN_DELAY_S`], and not on a worker (no port: no
/// requests to count) or a global deployment (one per host, not a count).
pub fn check_autoscale(req: &CreateDeployment, a: &Autoscale) -> Result<AutoscalePolicy> {
    if req.port.is_none() {
        return Err(invalid(
            "autoscale: a worker (\"port\": null) has no requests to scale on",
        ));
    }
    if req.placement.global {
        return Err(invalid(
            "autoscale: a global deployment runs one instance per host, not a count",
        ));
    }
    if a.max == 0 || a.max > MAX_INSTANCES {
        return Err(invalid(&format!(
            "autoscale.max: must be between 1 and {MAX_INSTANCES}"
        )));
    }
    if a.min > a.max {
        return Err(invalid(&format!(
            "autoscale.min: must be at most autoscale.max ({})",
            a.max
        )));
    }
    if a.target_concurrency == 0 {
        return Err(invalid("autoscale.target_concurrency: must be at least 1"));
    }
    let delay = u32::try_from(a.scale_down_delay_s)
        .ok()
        .filter(|d| *d <= MAX_SCALE_DOWN_DELAY_S)
        .ok_or_else(|| {
            invalid(&format!(
                "autoscale.scale_down_delay_s: must be between 0 and {MAX_SCALE_DOWN_DELAY_S}"
            ))
        })?;
    Ok(AutoscalePolicy {
        min: a.min,
        max: a.max,
        target_concurrency: a.target_concurrency,
        scale_down_delay_s: delay,
    })
}

/// Longest `stop_timeout_s`, seconds.
pub const MAX_STOP_TIMEOUT_S: u32 = 600;
/// Longest `recycle_after_s`: 30 days, in seconds.
pub const MAX_RECYCLE_AFTER_S: u64 = 30 * 24 * 3600;

/// Checks a request's `stop_timeout_s` (0..=600) and `recycle_after_s` (`min_recycle_after_s`
/// ..= 30 days).
pub fn check_timings(req: &CreateDeployment, min_recycle_after_s: u64) -> Result<()> {
    if req.stop_timeout_s.is_some_and(|s| s > MAX_STOP_TIMEOUT_S) {
        return Err(invalid(&format!(
            "stop_timeout_s: must be between 0 and {MAX_STOP_TIMEOUT_S}"
        )));
    }
    let min = min_recycle_after_s.clamp(1, MAX_RECYCLE_AFTER_S);
    if req
        .recycle_after_s
        .is_some_and(|s| !(min..=MAX_RECYCLE_AFTER_S).contains(&s))
    {
        return Err(invalid(&format!(
            "recycle_after_s: must be between {min} and {MAX_RECYCLE_AFTER_S} (30 days)"
        )));
    }
    Ok(())
}

fn invalid(what: &str) -> Error {
    Error::Invalid(what.to_owned())
}

/// Validates `req` for `app`, building the image reference from the configured registry.
pub fn plan(registry: &str, app: &AppId, req: &CreateDeployment) -> Result<DeployPlan> {
    let autoscale = req
        .autoscale
        .as_ref()
        .map(|a| check_autoscale(req, a))
        .transpose()?;
    // With autoscale the count is where it starts, clamped to the bounds (0 when `min` is 0:
    // the app starts asleep, nothing placed); without, 1 to `MAX_INSTANCES`.
    let instances = match autoscale {
        _ if req.placement.global => 0,
        Some(a) => a.clamp(req.instances),
        None => {
            check_instance_count(req.instances, false)?;
            req.instances
        }
    };
    let memory =
        Memory::from_mib(req.memory_mb).map_err(|e| invalid(&format!("memory_mb: {e}")))?;
    let cpus = Cpus::from_cores(req.cpus).map_err(|e| invalid(&format!("cpus: {e}")))?;
    if req.port == Some(0) {
        return Err(invalid(
            "port: must be between 1 and 65535 (null: a worker, without a port)",
        ));
    }
    if let Some(command) = &req.command {
        check_command("command", command)?;
    }
    check_env("env", &req.env)?;
    // The conversion fails only on the path (see `HealthPath` for the rule).
    let health = HealthPolicy::try_from(req.health.clone()).map_err(|_| {
        invalid("health.path: must start with '/' and hold no spaces or control characters")
    })?;
    let h = &health;
    if !(100..=600_000).contains(&h.interval_ms) {
        return Err(invalid(
            "health.interval_ms: must be between 100 and 600000",
        ));
    }
    if !(10..=60_000).contains(&h.timeout_ms) {
        return Err(invalid("health.timeout_ms: must be between 10 and 60000"));
    }
    if !(1..=100).contains(&h.failures) || !(1..=100).contains(&h.successes) {
        return Err(invalid(
            "health.failures and health.successes: must be between 1 and 100",
        ));
    }
    for (k, v) in &req.placement.constraints {
        if k.is_empty() || k.len() > 63 || v.len() > 255 {
            return Err(invalid(
                "placement.constraints: keys are 1 to 63 characters, values at most 255",
            ));
        }
    }
    Ok(DeployPlan {
        new: NewDeployment {
            app: app.clone(),
            version: req.version.clone(),
            image: app.image(registry, &req.version),
            resources: Resources { memory, cpus },
            port: req.port,
            command: req.command.clone(),
            env: req.env.clone(),
            placement: PlacementPolicy::from(req.placement.clone()),
            health,
            instances,
            stop_timeout_s: req.stop_timeout_s,
            recycle_after_s: req.recycle_after_s,
            autoscale,
            user: req.user.clone(),
            read_only: req.read_only,
        },
    })
}

impl Deployments {
    /// Validates a deployment request of `app`.
    pub fn validate(&self, app: &AppId, req: &CreateDeployment) -> Result<DeployPlan> {
        check_timings(req, self.config.min_recycle_after_s)?;
        plan(&self.config.registry, app, req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(body: &str) -> CreateDeployment {
        serde_json::from_str(body).expect("valid json")
    }

    #[test]
    fn a_good_request_becomes_a_plan() {
        let app: AppId = "hello".parse().expect("valid");
        let p = plan(
            "127.0.0.1:5000",
            &app,
            &req(r#"{"version":"v1","instances":3,"memory_mb":128,"cpus":0.5}"#),
        )
        .expect("valid plan");
        assert_eq!(p.new.image, "127.0.0.1:5000/hello:v1");
        assert_eq!(p.new.resources.memory.mib(), 128);
        assert_eq!(p.new.resources.cpus.millis(), 500);
        assert_eq!(p.new.instances, 3);
    }

    #[test]
    fn bad_requests_are_refused() {
        let app: AppId = "hello".parse().expect("valid");
        for body in [
            r#"{"version":"v1","instances":0,"memory_mb":128,"cpus":0.5}"#,
            r#"{"version":"v1","instances":100000,"memory_mb":128,"cpus":0.5}"#,
            r#"{"version":"v1","memory_mb":1,"cpus":0.5}"#,
            r#"{"version":"v1","memory_mb":128,"cpus":0}"#,
            r#"{"version":"v1","memory_mb":128,"cpus":-1}"#,
            r#"{"version":"v1","memory_mb":128,"cpus":0.5,"port":0}"#,
            r#"{"version":"v1","memory_mb":128,"cpus":0.5,"env":{"1A":"x"}}"#,
            r#"{"version":"v1","memory_mb":128,"cpus":0.5,"env":{"A B":"x"}}"#,
            r#"{"version":"v1","memory_mb":128,"cpus":0.5,"health":{"path":"ping"}}"#,
            r#"{"version":"v1","memory_mb":128,"cpus":0.5,"health":{"interval_ms":1}}"#,
            r#"{"version":"v1","memory_mb":128,"cpus":0.5,"health":{"failures":0}}"#,
        ] {
            assert!(plan("r:5000", &app, &req(body)).is_err(), "{body}");
        }
    }

    #[test]
    fn stop_timeout_and_recycle_age_have_bounds() {
        let with = |extra: &str| {
            req(&format!(
                r#"{{"version":"v1","memory_mb":128,"cpus":0.5{extra}}}"#
            ))
        };
        for ok in [
            "",
            r#","stop_timeout_s":0"#,
            r#","stop_timeout_s":600"#,
            r#","recycle_after_s":60"#,
            r#","recycle_after_s":2592000"#,
        ] {
            assert!(check_timings(&with(ok), 60).is_ok(), "{ok}");
        }
        for bad in [
            r#","stop_timeout_s":601"#,
            r#","recycle_after_s":59"#,
            r#","recycle_after_s":0"#,
            r#","recycle_after_s":2592001"#,
        ] {
            assert!(
                matches!(check_timings(&with(bad), 60), Err(Error::Invalid(_))),
                "{bad}"
            );
        }
        // The minimum is the operator's (tests lower it); never below one second.
        assert!(check_timings(&with(r#","recycle_after_s":1"#), 1).is_ok());
        assert!(check_timings(&with(r#","recycle_after_s":0"#), 0).is_err());
        let p = plan(
            "r:5000",
            &"hello".parse().expect("valid"),
            &with(r#","stop_timeout_s":3,"recycle_after_s":86400"#),
        )
        .expect("valid plan");
        assert_eq!(p.new.stop_timeout_s, Some(3));
        assert_eq!(p.new.recycle_after_s, Some(86400));
    }

    #[test]
    fn a_worker_has_no_port_and_a_command_is_kept_when_well_formed() {
        let app: AppId = "tools".parse().expect("valid");
        let p = plan(
            "r:5000",
            &app,
            &req(r#"{"version":"v1","memory_mb":64,"cpus":0.25,"port":null,
                     "command":["sh","-c","exec worker"]}"#),
        )
        .expect("valid plan");
        assert_eq!(p.new.port, None);
        assert!(p.new.is_worker());
        assert_eq!(
            p.new.command,
            Some(vec!["sh".into(), "-c".into(), "exec worker".into()])
        );
        let p = plan(
            "r:5000",
            &app,
            &req(r#"{"version":"v1","memory_mb":64,"cpus":0.25}"#),
        )
        .expect("valid plan");
        assert_eq!((p.new.port, p.new.command), (Some(8080), None));
        let too_many = format!(
            r#"{{"version":"v1","memory_mb":64,"cpus":0.25,"command":[{}]}}"#,
            vec![r#""x""#; MAX_COMMAND_ARGS + 1].join(",")
        );
        let too_big = format!(
            r#"{{"version":"v1","memory_mb":64,"cpus":0.25,"command":["{}"]}}"#,
            "x".repeat(MAX_COMMAND_BYTES + 1)
        );
        for (body, says) in [
            (
                r#"{"version":"v1","memory_mb":64,"cpus":0.25,"command":[]}"#.to_owned(),
                "command: must hold the program",
            ),
            (
                r#"{"version":"v1","memory_mb":64,"cpus":0.25,"command":["sh",""]}"#.to_owned(),
                "command[1]: must not be empty",
            ),
            (
                r#"{"version":"v1","memory_mb":64,"cpus":0.25,"command":["a\u0000b"]}"#.to_owned(),
                "command[0]: contains a NUL byte",
            ),
            (too_many, "command: at most 256 arguments"),
            (too_big, "command: larger than 64 KiB"),
            (
                r#"{"version":"v1","memory_mb":64,"cpus":0.25,"port":0}"#.to_owned(),
                "port: must be between 1 and 65535",
            ),
        ] {
            match plan("r:5000", &app, &req(&body)) {
                Err(Error::Invalid(m)) => assert!(m.starts_with(says), "{m} for {body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    fn autoscaled(extra: &str, autoscale: &str) -> Result<DeployPlan> {
        let body = format!(
            r#"{{"version":"v1","memory_mb":64,"cpus":0.25{extra},"autoscale":{autoscale}}}"#
        );
        plan("r:5000", &"hello".parse().expect("valid"), &req(&body))
    }

    #[test]
    fn autoscale_clamps_the_starting_count_to_its_bounds() {
        for (extra, bounds, want) in [
            ("", r#"{"min":0,"max":10}"#, 0),
            (r#","instances":0"#, r#"{"min":0,"max":10}"#, 0),
            (r#","instances":3"#, r#"{"min":0,"max":10}"#, 3),
            ("", r#"{"min":2,"max":5}"#, 2),
            (r#","instances":0"#, r#"{"min":2,"max":5}"#, 2),
            (r#","instances":1"#, r#"{"min":2,"max":5}"#, 2),
            (r#","instances":9"#, r#"{"min":2,"max":5}"#, 5),
            (r#","instances":100000"#, r#"{"min":2,"max":5}"#, 5),
            (r#","instances":4"#, r#"{"min":4,"max":4}"#, 4),
            ("", r#"{"min":1000,"max":1000}"#, 1000),
        ] {
            let p = autoscaled(extra, bounds).unwrap_or_else(|e| panic!("{extra} {bounds}: {e}"));
            assert_eq!(p.new.instances, want, "{extra} {bounds}");
        }
        let p = autoscaled("", r#"{"min":1,"max":3}"#).expect("valid");
        assert_eq!(
            p.new.autoscale,
            Some(AutoscalePolicy {
                min: 1,
                max: 3,
                target_concurrency: 10,
                scale_down_delay_s: 60
            })
        );
        let p = autoscaled(
            "",
            r#"{"min":1,"max":3,"target_concurrency":1,"scale_down_delay_s":0}"#,
        )
        .expect("valid");
        let a = p.new.autoscale.expect("kept");
        assert_eq!((a.target_concurrency, a.scale_down_delay_s), (1, 0));
        let a = autoscaled("", r#"{"min":0,"max":1,"scale_down_delay_s":86400}"#)
            .expect("a day is the longest delay")
            .new
            .autoscale
            .expect("kept");
        assert_eq!(a.scale_down_delay_s, 86_400);
        // Without autoscale nothing changes: 0 and too many are still refused.
        assert!(plan(
            "r:5000",
            &"hello".parse().expect("valid"),
            &req(r#"{"version":"v1","memory_mb":64,"cpus":0.25}"#)
        )
        .expect("valid")
        .new
        .autoscale
        .is_none());
    }

    #[test]
    fn bad_autoscale_bounds_are_refused_by_name() {
        for (extra, bounds, says) in [
            (
                "",
                r#"{"min":3,"max":2}"#,
                "autoscale.min: must be at most autoscale.max (2)",
            ),
            (
                "",
                r#"{"min":0,"max":1001}"#,
                "autoscale.max: must be between 1 and 1000",
            ),
            (
                "",
                r#"{"min":0,"max":0}"#,
                "autoscale.max: must be between 1 and 1000",
            ),
            (
                "",
                r#"{"min":0,"max":5,"target_concurrency":0}"#,
                "autoscale.target_concurrency:",
            ),
            (
                "",
                r#"{"min":0,"max":5,"scale_down_delay_s":-1}"#,
                "autoscale.scale_down_delay_s:",
            ),
            (
                "",
                r#"{"min":0,"max":5,"scale_down_delay_s":86401}"#,
                "autoscale.scale_down_delay_s:",
            ),
            (
                r#","port":null"#,
                r#"{"min":0,"max":5}"#,
                "autoscale: a worker",
            ),
            (
                r#","placement":{"global":true}"#,
                r#"{"min":0,"max":5}"#,
                "autoscale: a global",
            ),
        ] {
            match autoscaled(extra, bounds) {
                Err(Error::Invalid(m)) => assert!(m.starts_with(says), "{m} for {bounds}"),
                other => panic!("{extra} {bounds}: {other:?}"),
            }
        }
    }

    #[test]
    fn env_names_follow_one_rule() {
        for ok in ["A", "_", "a_1", "DB_PASSWORD", "_9", &"x".repeat(256)] {
            assert!(env_name_ok(ok), "{ok:?}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B", "É", "A\0", &"x".repeat(257)] {
            assert!(!env_name_ok(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_bad_health_path_is_refused_with_the_same_message() {
        let app: AppId = "hello".parse().expect("valid");
        for path in ["ping", "/a b", "/\\u0007"] {
            let body = format!(
                r#"{{"version":"v1","memory_mb":128,"cpus":0.5,"health":{{"path":"{path}"}}}}"#
            );
            match plan("r:5000", &app, &req(&body)) {
                Err(Error::Invalid(m)) => assert_eq!(
                    m,
                    "health.path: must start with '/' and hold no spaces or control characters"
                ),
                other => panic!("{path:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn ten_terabytes_is_valid_input_but_placement_refuses_it() {
        let app: AppId = "hello".parse().expect("valid");
        let p = plan(
            "r:5000",
            &app,
            &req(r#"{"version":"v1","memory_mb":10485760,"cpus":0.5}"#),
        );
        assert!(
            p.is_ok(),
            "10 TiB parses; the scheduler answers 422, not 400"
        );
    }
}
