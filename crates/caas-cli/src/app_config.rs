//! `caas config`, `caas secrets`, `caas restart` and `caas kill`: an app's config (a change is
//! a new config version and a rolling restart, whose progress is shown as a deploy's is), its
//! restart, and killing one instance (its deployment replaces it).
//! A secret's value is read from standard input only, never from the command line.

use crate::cli::{ConfigArgs, ConfigCmd, Output, SecretsCmd};
use crate::client::Client;
use crate::commands::{instance_table, print_json, send_with_progress};
use crate::output::{out, outln};
use crate::table::Table;
use anyhow::{bail, Context, Result};
use caas_types::api::{AppConfig, ConfigPatch, Instance, Restarted, SecretValue};
use caas_types::{AppId, InstanceId};
use reqwest::Method;
use std::io::Read;

/// `caas config ...`
pub async fn config(client: &Client, out: Output, args: ConfigArgs) -> Result<()> {
    let command = match (args.command, args.app) {
        (Some(c), _) => c,
        (None, Some(app)) => ConfigCmd::Show { app },
        (None, None) => bail!("name an app: caas config APP"),
    };
    match command {
        ConfigCmd::Show { app } => {
            let config: AppConfig = client.get(&format!("/v1/apps/{app}/config")).await?;
            show(out, &app, &config)
        }
        ConfigCmd::Set { app, pairs, quiet } => {
            let patch = ConfigPatch {
                vars: pairs.into_iter().map(|(k, v)| (k, Some(v))).collect(),
                ..ConfigPatch::default()
            };
            change(client, out, &app, &patch, quiet).await
        }
        ConfigCmd::Unset { app, names, quiet } => {
            let patch = ConfigPatch {
                vars: names.into_iter().map(|k| (k, None)).collect(),
                ..ConfigPatch::default()
            };
            change(client, out, &app, &patch, quiet).await
        }
    }
}

/// `caas secrets ...`
pub async fn secrets(client: &Client, out: Output, cmd: SecretsCmd) -> Result<()> {
    match cmd {
        SecretsCmd::Ls { app } => {
            let config: AppConfig = client.get(&format!("/v1/apps/{app}/config")).await?;
            if out == Output::Json {
                return print_json(&config.secrets);
            }
            for name in &config.secrets {
                outln!("{name}");
            }
            Ok(())
        }
        SecretsCmd::Set { app, name, quiet } => {
            let value = read_secret(std::io::stdin().lock())?;
            let patch = ConfigPatch {
                secrets: [(name, Some(SecretValue::new(value)))].into(),
                ..ConfigPatch::default()
            };
            change(client, out, &app, &patch, quiet).await
        }
        SecretsCmd::Rm { app, name, quiet } => {
            let patch = ConfigPatch {
                secrets: [(name, None)].into(),
                ..ConfigPatch::default()
            };
            change(client, out, &app, &patch, quiet).await
        }
    }
}

/// `caas kill APP INSTANCE`
pub async fn kill(
    client: &Client,
    out: Output,
    app: AppId,
    instance: InstanceId,
    quiet: bool,
) -> Result<()> {
    let req = client.request(
        Method::DELETE,
        &format!("/v1/apps/{app}/instances/{instance}"),
    );
    let killed: Instance = send_with_progress(client, req, quiet, "instance").await?;
    if out == Output::Json {
        return print_json(&killed);
    }
    outln!("killed {app} instance {instance}; its deployment replaced it");
    Ok(())
}

/// `caas restart APP`
pub async fn restart(client: &Client, out: Output, app: AppId, quiet: bool) -> Result<()> {
    let req = client.request(Method::POST, &format!("/v1/apps/{app}/restart"));
    let done: Restarted = send_with_progress(client, req, quiet, "restart").await?;
    if out == Output::Json {
        return print_json(&done);
    }
    outln!("restarted {app}: {} instance(s) replaced", done.restarted);
    let instances: Vec<_> = done
        .deployments
        .into_iter()
        .flat_map(|d| d.instance_list)
        .collect();
    out!("{}", instance_table(&instances).render());
    Ok(())
}

/// Sends a patch and shows the config afterwards.
async fn change(
    client: &Client,
    out: Output,
    app: &AppId,
    patch: &ConfigPatch,
    quiet: bool,
) -> Result<()> {
    let req = client
        .request(Method::PATCH, &format!("/v1/apps/{app}/config"))
        .json(patch);
    let config: AppConfig = send_with_progress(client, req, quiet, "config").await?;
    show(out, app, &config)
}

fn show(out: Output, app: &AppId, config: &AppConfig) -> Result<()> {
    if out == Output::Json {
        return print_json(config);
    }
    outln!("{app}: config version {}", config.version);
    out!("{}", config_table(config).render());
    Ok(())
}

fn config_table(config: &AppConfig) -> Table {
    let mut t = Table::new(&["NAME", "KIND", "VALUE"]);
    for (k, v) in &config.vars {
        t.row(vec![k.clone(), "var".into(), v.clone()]);
    }
    for name in &config.secrets {
        t.row(vec![name.clone(), "secret".into(), "(hidden)".into()]);
    }
    t
}

/// A secret's value from `input`: all of it, less one trailing newline (`echo`, a terminal).
pub(crate) fn read_secret(mut input: impl Read) -> Result<String> {
    let mut value = String::new();
    input
        .read_to_string(&mut value)
        .context("reading the secret's value from standard input (it must be UTF-8)")?;
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_read_from_stdin_loses_one_trailing_newline_only() {
        let read = |s: &str| read_secret(s.as_bytes()).expect("utf-8");
        assert_eq!(read("pw\n"), "pw");
        assert_eq!(read("pw\r\n"), "pw");
        assert_eq!(read("pw\n\n"), "pw\n");
        assert_eq!(read("a b"), "a b");
        assert_eq!(read(""), "");
        assert!(read_secret(&[0xff, 0xfe][..]).is_err());
    }

    #[test]
    fn the_config_table_hides_secret_values() {
        let config = AppConfig {
            version: 3,
            vars: [("A".to_owned(), "1".to_owned())].into(),
            secrets: vec!["DB_PASSWORD".into()],
        };
        assert_eq!(
            config_table(&config).render(),
            "NAME          KIND     VALUE\n\
             A             var      1\n\
             DB_PASSWORD   secret   (hidden)\n"
        );
    }
}
