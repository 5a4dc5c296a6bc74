//! An app's config: plain vars and write-only secrets, versioned, reaching containers as
//! environment over the deployment's `env` (config wins) when an instance starts.
//!
//! Architecture invariant: secret values are never stored or shown in plaintext. They arrive
//! as [`SecretValue`](caas_types::api::SecretValue) (whose `Debug` redacts), are sealed here
//! (`crypto.rs`, XChaCha20-Poly1305 under the operator's key, the app and the name as
//! associated data) before the store sees them, are answered by name only, and are opened in
//! one place: [`AppConfigs::environment`], called by the lifecycle as it builds a container's
//! spec.

pub mod crypto;
mod patch;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::{AppConfigRow, Store};
use caas_types::api::{self, ConfigPatch};
use caas_types::AppId;
use crypto::SecretsKey;
use std::collections::BTreeMap;

/// The message of [`Error::SecretsOff`].
pub const NO_KEY: &str = "secrets are off: this scheduler has no secrets key \
     (the operator sets --secrets-key or CAAS_SECRETS_KEY)";

/// The operator's secrets key from the configuration: `None` when unset or empty (secrets are
/// then refused, everything else works); a malformed one is a configuration error at start.
pub fn secrets_key(config: &Config) -> Result<Option<SecretsKey>> {
    let Some(text) = config
        .secrets_key
        .as_ref()
        .map(|k| k.expose().trim())
        .filter(|k| !k.is_empty())
    else {
        return Ok(None);
    };
    SecretsKey::parse(text)
        .map(Some)
        .map_err(|e| Error::Config(format!("--secrets-key / CAAS_SECRETS_KEY: {e}")))
}

/// Reads and changes apps' configs, seals secrets and opens them for a container's start.
#[derive(Debug)]
pub struct AppConfigs {
    store: Store,
    key: Option<SecretsKey>,
}

impl AppConfigs {
    /// Configs over `store`; without `key`, setting a secret is refused with [`Error::SecretsOff`].
    pub fn new(store: Store, key: Option<SecretsKey>) -> AppConfigs {
        AppConfigs { store, key }
    }

    /// An app's current config as the API shows it (secrets by name).
    pub async fn get(&self, app: &AppId) -> Result<api::AppConfig> {
        Ok(to_api(&self.store.get_app_config(app).await?))
    }

    /// Checks a patch on its own (names, values, not empty; a secret needs a key), before
    /// anything is read or written.
    pub fn check(&self, patch: &ConfigPatch) -> Result<()> {
        patch::check(patch)?;
        if self.key.is_none() && patch.secrets.values().any(Option::is_some) {
            return Err(Error::SecretsOff(NO_KEY.into()));
        }
        Ok(())
    }

    /// Applies a patch: checked first (nothing is read or written for bad input), then a new
    /// config version in one transaction. Returns the config afterwards and whether it changed
    /// (a patch that sets what is already set writes no version).
    pub async fn change(&self, app: &AppId, patch: &ConfigPatch) -> Result<(api::AppConfig, bool)> {
        self.check(patch)?;
        let key = self.key.as_ref();
        let (row, changed) = self
            .store
            .change_app_config(app, |current| {
                patch::apply(current, patch, |name, value| {
                    let key = key.ok_or_else(|| Error::SecretsOff(NO_KEY.into()))?;
                    key.seal(app, name, value.expose()).map_err(Error::Secrets)
                })
            })
            .await?;
        if changed {
            tracing::info!(%app, version = row.version, vars = row.vars.len(), secrets = row.secrets.len(), "config changed");
        }
        Ok((to_api(&row), changed))
    }

    /// The environment an instance of `app` starts with: the deployment's `env`, then the
    /// app's current vars and opened secrets over it. The one place a secret is decrypted.
    pub async fn environment(
        &self,
        app: &AppId,
        deployment_env: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>> {
        let config = self.store.get_app_config(app).await?;
        let mut env = deployment_env.clone();
        env.extend(config.vars);
        if config.secrets.is_empty() {
            return Ok(env);
        }
        let key = self.key.as_ref().ok_or_else(|| {
            Error::SecretsOff(format!(
                "app {app} has secrets but this scheduler has no secrets key to open them \
                 (--secrets-key or CAAS_SECRETS_KEY)"
            ))
        })?;
        for (name, sealed) in config.secrets {
            let plain = key.open(app, &name, &sealed).map_err(Error::Secrets)?;
            env.insert(name, plain.into_inner());
        }
        Ok(env)
    }
}

/// The API's view of a stored config: secrets by name only.
pub fn to_api(row: &AppConfigRow) -> api::AppConfig {
    api::AppConfig {
        version: row.version,
        vars: row.vars.clone(),
        secrets: row.secrets.keys().cloned().collect(),
    }
}

/// What a key rotation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// Secrets re-sealed under the new key.
    pub resealed: usize,
    /// Secrets already under the new key (a rotation run again after an interruption).
    pub already: usize,
    /// Config versions written.
    pub versions: usize,
}

/// Re-seals every stored secret (every version of every app, and webhooks' signing secrets)
/// from `old` to `new`. Secrets
/// already under `new` are left as they are, so an interrupted rotation can be run again; a
/// secret under any other key stops the rotation with an error naming that key's id.
pub async fn rotate(store: &Store, old: &SecretsKey, new: &SecretsKey) -> Result<Rotation> {
    let mut done = Rotation::default();
    for (app, row) in store.list_all_app_configs().await? {
        let mut secrets = row.secrets.clone();
        let mut changed = false;
        for (name, sealed) in secrets.iter_mut() {
            if crypto::sealed_with(sealed) == Some(new.id()) {
                done.already += 1;
                continue;
            }
            let plain = old.open(&app, name, sealed).map_err(|e| {
                Error::Incomplete(format!(
                    "secret {name} of app {app}, config version {}: {e}; \
                     what was re-sealed before it stays re-sealed",
                    row.version
                ))
            })?;
            *sealed = new
                .seal(&app, name, &plain.into_inner())
                .map_err(Error::Secrets)?;
            done.resealed += 1;
            changed = true;
        }
        if changed {
            store.reseal_app_config(&app, row.version, &secrets).await?;
            done.versions += 1;
        }
    }
    // Webhook signing secrets are sealed with the same key.
    for hook in store.all_webhooks().await? {
        if crypto::sealed_with(&hook.sealed_secret) == Some(new.id()) {
            done.already += 1;
            continue;
        }
        let plain = old
            .open_webhook(&hook.id, &hook.sealed_secret)
            .map_err(|e| {
                Error::Incomplete(format!(
                    "the secret of webhook {}: {e}; what was re-sealed before it stays re-sealed",
                    hook.id
                ))
            })?;
        let sealed = new
            .seal_webhook(&hook.id, &plain.into_inner())
            .map_err(Error::Secrets)?;
        store.reseal_webhook(&hook.id, &sealed).await?;
        done.resealed += 1;
    }
    Ok(done)
}
