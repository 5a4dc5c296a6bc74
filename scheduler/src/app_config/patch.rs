//! A config change as pure logic: check a patch (names, NUL bytes, not empty, a name either a
//! var or a secret), apply it to the current config, and bound the result (64 KiB of names and
//! values per app). Nothing here sees a secret's value except through the `seal` it is given,
//! and no message names one.

use super::crypto;
use crate::deployments::{env_name_ok, ENV_NAME_RULE, MAX_ENV_BYTES};
use crate::error::{Error, Result};
use crate::store::AppConfigRow;
use caas_types::api::{ConfigPatch, SecretValue};

fn invalid(message: String) -> Error {
    Error::Invalid(format!("config: {message}"))
}

/// A name as shown in a message: quoted, escaped, and cut at 64 characters (names come from
/// the client and may be anything).
fn shown(name: &str) -> String {
    let cut: String = name.chars().take(64).collect();
    if cut.len() < name.len() {
        format!("{cut:?}...")
    } else {
        format!("{cut:?}")
    }
}

/// Checks a patch on its own, before anything is read or sealed.
pub(super) fn check(patch: &ConfigPatch) -> Result<()> {
    if patch.is_empty() {
        return Err(invalid(
            "nothing to change: give vars or secrets to set (a string) or remove (null)".into(),
        ));
    }
    let values = patch
        .vars
        .iter()
        .map(|(k, v)| ("vars", k, v.as_deref()))
        .chain(
            patch
                .secrets
                .iter()
                .map(|(k, v)| ("secrets", k, v.as_ref().map(SecretValue::expose))),
        );
    for (kind, name, value) in values {
        if !env_name_ok(name) {
            return Err(invalid(format!("{kind} {}: {ENV_NAME_RULE}", shown(name))));
        }
        if value.is_some_and(|v| v.contains('\0')) {
            return Err(invalid(format!("{kind} {name}: contains a NUL byte")));
        }
    }
    for (name, value) in &patch.vars {
        if value.is_some() && patch.secrets.get(name).is_some_and(Option::is_some) {
            return Err(invalid(format!(
                "{name} is given both as a var and as a secret"
            )));
        }
    }
    Ok(())
}

/// Bytes of names and values of a config (secrets by their sealed length, which is exact).
pub(super) fn size(config: &AppConfigRow) -> usize {
    let vars: usize = config.vars.iter().map(|(k, v)| k.len() + v.len()).sum();
    let secrets: usize = config
        .secrets
        .iter()
        .map(|(k, v)| k.len() + crypto::plain_len(v).unwrap_or(v.len()))
        .sum();
    vars + secrets
}

/// Applies a checked patch to `current`: the next config, or `None` if it changes nothing.
/// `seal` turns a secret's name and value into its stored form.
pub(super) fn apply(
    current: &AppConfigRow,
    patch: &ConfigPatch,
    mut seal: impl FnMut(&str, &SecretValue) -> Result<String>,
) -> Result<Option<AppConfigRow>> {
    let mut next = current.clone();
    let mut changed = false;
    for (name, value) in &patch.vars {
        match value {
            Some(v) => {
                if next.secrets.contains_key(name) && !patch.secrets.contains_key(name) {
                    return Err(invalid(format!(
                        "{name} is a secret; remove the secret in the same change to make it a var"
                    )));
                }
                changed |= next.vars.insert(name.clone(), v.clone()).as_ref() != Some(v);
            }
            None => changed |= next.vars.remove(name).is_some(),
        }
    }
    for (name, value) in &patch.secrets {
        match value {
            Some(v) => {
                if next.vars.contains_key(name) {
                    return Err(invalid(format!(
                        "{name} is a var; remove the var in the same change to make it a secret"
                    )));
                }
                next.secrets.insert(name.clone(), seal(name, v)?);
                changed = true;
            }
            None => changed |= next.secrets.remove(name).is_some(),
        }
    }
    if !changed {
        return Ok(None);
    }
    let bytes = size(&next);
    if bytes > MAX_ENV_BYTES {
        return Err(invalid(format!(
            "{bytes} bytes of names and values after this change; an app's vars and secrets \
             hold at most {MAX_ENV_BYTES} (64 KiB)"
        )));
    }
    Ok(Some(next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app_config::crypto::SecretsKey;
    use caas_types::AppId;

    fn patch(body: &str) -> ConfigPatch {
        serde_json::from_str(body).expect("valid json")
    }

    fn message(e: Error) -> String {
        match e {
            Error::Invalid(m) => m,
            other => panic!("not Invalid: {other:?}"),
        }
    }

    fn sealer(key: &SecretsKey) -> impl FnMut(&str, &SecretValue) -> Result<String> + '_ {
        let app: AppId = "shop".parse().expect("valid");
        move |name, v| {
            key.seal(&app, name, v.expose())
                .map_err(|e| Error::Invalid(e.to_string()))
        }
    }

    #[test]
    fn bad_patches_are_refused_with_a_precise_message() {
        for (body, expected) in [
            ("{}", "config: nothing to change"),
            (r#"{"vars":{},"secrets":{}}"#, "config: nothing to change"),
            (r#"{"vars":{"1A":"x"}}"#, "config: vars \"1A\": names use"),
            (
                r#"{"vars":{"A-B":null}}"#,
                "config: vars \"A-B\": names use",
            ),
            (
                r#"{"secrets":{"A B":"x"}}"#,
                "config: secrets \"A B\": names use",
            ),
            (r#"{"vars":{"":"x"}}"#, "config: vars \"\": names use"),
            (
                r#"{"vars":{"A":"x\u0000y"}}"#,
                "config: vars A: contains a NUL byte",
            ),
            (
                r#"{"secrets":{"S":"p\u0000w"}}"#,
                "config: secrets S: contains a NUL byte",
            ),
            (
                r#"{"vars":{"A":"1"},"secrets":{"A":"2"}}"#,
                "config: A is given both as a var and as a secret",
            ),
        ] {
            let m = message(check(&patch(body)).expect_err(body));
            assert!(m.starts_with(expected), "{body}: {m}");
            assert!(!m.contains("p\u{0}w"), "{m}");
        }
        let long = format!(r#"{{"vars":{{"{}-":"x"}}}}"#, "A".repeat(300));
        let m = message(check(&patch(&long)).expect_err("long name"));
        assert!(m.len() < 200, "the name is cut: {m}");
        for ok in [
            r#"{"vars":{"A":"1","OLD":null}}"#,
            r#"{"secrets":{"DB_PASSWORD":"x","OLD":null}}"#,
            r#"{"vars":{"A":null},"secrets":{"A":"2"}}"#,
        ] {
            check(&patch(ok)).expect(ok);
        }
    }

    #[test]
    fn a_patch_sets_and_removes_and_an_idle_one_changes_nothing() {
        let key = SecretsKey::from_bytes(&[1; 32]);
        let current = AppConfigRow::default();
        let next = apply(
            &current,
            &patch(r#"{"vars":{"A":"1","B":"2"},"secrets":{"S":"pw"}}"#),
            sealer(&key),
        )
        .expect("applies")
        .expect("changes");
        assert_eq!(next.vars.len(), 2);
        assert_eq!(next.secrets.keys().collect::<Vec<_>>(), ["S"]);
        assert!(!next.secrets["S"].contains("pw"));
        assert_eq!(size(&next), 2 + 2 + 1 + 2);

        let after = apply(
            &next,
            &patch(r#"{"vars":{"B":null,"C":"3"},"secrets":{"S":null}}"#),
            sealer(&key),
        )
        .expect("applies")
        .expect("changes");
        assert_eq!(
            after.vars.iter().collect::<Vec<_>>(),
            [
                (&"A".to_owned(), &"1".to_owned()),
                (&"C".to_owned(), &"3".to_owned())
            ]
        );
        assert!(after.secrets.is_empty());

        // The same value again, or removing what is not there: nothing to write.
        for idle in [
            r#"{"vars":{"A":"1"}}"#,
            r#"{"vars":{"GONE":null},"secrets":{"NO":null}}"#,
        ] {
            assert_eq!(
                apply(&after, &patch(idle), sealer(&key)).expect(idle),
                None,
                "{idle}"
            );
        }
    }

    #[test]
    fn a_name_is_a_var_or_a_secret_never_both() {
        let key = SecretsKey::from_bytes(&[1; 32]);
        let current = apply(
            &AppConfigRow::default(),
            &patch(r#"{"vars":{"V":"1"},"secrets":{"S":"x"}}"#),
            sealer(&key),
        )
        .expect("applies")
        .expect("changes");
        for (body, expected) in [
            (r#"{"vars":{"S":"1"}}"#, "config: S is a secret"),
            (r#"{"secrets":{"V":"1"}}"#, "config: V is a var"),
        ] {
            let m = message(apply(&current, &patch(body), sealer(&key)).expect_err(body));
            assert!(m.starts_with(expected), "{m}");
        }
        let moved = apply(
            &current,
            &patch(r#"{"vars":{"S":"plain"},"secrets":{"S":null}}"#),
            sealer(&key),
        )
        .expect("applies")
        .expect("changes");
        assert_eq!(moved.vars["S"], "plain");
        assert!(moved.secrets.is_empty());
    }

    #[test]
    fn the_whole_config_is_bounded_at_64_kib() {
        let key = SecretsKey::from_bytes(&[1; 32]);
        let half = "x".repeat(MAX_ENV_BYTES / 2);
        let current = apply(
            &AppConfigRow::default(),
            &patch(&format!(r#"{{"vars":{{"A":"{half}"}}}}"#)),
            sealer(&key),
        )
        .expect("applies")
        .expect("changes");
        // Another half as a secret: names push it over, and secrets count by their plaintext.
        let body = format!(r#"{{"secrets":{{"S":"{half}"}}}}"#);
        let m = message(apply(&current, &patch(&body), sealer(&key)).expect_err("over"));
        assert!(m.contains(&format!("{} bytes", MAX_ENV_BYTES + 2)), "{m}");
        assert!(m.contains("at most 65536 (64 KiB)"), "{m}");
        let fits = format!(r#"{{"secrets":{{"S":"{}"}}}}"#, &half[2..]);
        let full = apply(&current, &patch(&fits), sealer(&key))
            .expect("fits")
            .expect("changes");
        assert_eq!(size(&full), MAX_ENV_BYTES);
    }
}
