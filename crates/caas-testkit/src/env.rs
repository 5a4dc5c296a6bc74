//! The services' coordinates, from the environment that `scripts/up` writes to `.caas/env`.

/// How to get the services and their environment, for failure messages.
pub const HOW: &str =
    "start the services with `scripts/up`, then `source .caas/env` (or run `scripts/test`)";

/// The environment variable `name`; panics, saying how to set it, when it is unset or empty.
///
/// Tests never skip for want of a service: they fail and say how to start it.
pub fn var(name: &str) -> String {
    var_opt(name).unwrap_or_else(|| panic!("{name} is not set: {HOW}"))
}

/// The environment variable `name`, or `None` when it is unset or empty: for settings that
/// exist only in some set-ups (e.g. the registry's credentials once it has auth).
pub fn var_opt(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}
