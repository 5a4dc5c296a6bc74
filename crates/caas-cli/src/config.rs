//! Where the admin API is and which token to send: flags, then environment, then a config file of
//! `export CAAS_X=...` lines (the `.caas/env` that scripts/up writes), then defaults.

use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The resolved connection settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Admin API base URL, without a trailing slash.
    pub api: String,
    /// Bearer token, if any.
    pub token: Option<String>,
}

const DEFAULT_API: &str = "http://127.0.0.1:7070";

/// Resolves settings. `env` is injected so tests need no `set_var`.
pub fn resolve(
    flag_api: Option<String>,
    flag_token: Option<String>,
    flag_config: Option<PathBuf>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings> {
    let file = match flag_config.or_else(|| env("CAAS_CONFIG").map(PathBuf::from)) {
        // An explicitly named file must exist.
        Some(path) => read_env_file(&path)
            .with_context(|| format!("reading config file {}", path.display()))?,
        None => default_files(env)
            .into_iter()
            .find(|p| p.is_file())
            .map(|p| {
                read_env_file(&p).with_context(|| format!("reading config file {}", p.display()))
            })
            .transpose()?
            .unwrap_or_default(),
    };
    let pick = |flag: Option<String>, key: &str| {
        flag.or_else(|| env(key)).or_else(|| file.get(key).cloned())
    };
    let api = pick(flag_api, "CAAS_API").unwrap_or_else(|| DEFAULT_API.to_owned());
    let api = api.trim_end_matches('/').to_owned();
    if !(api.starts_with("http://") || api.starts_with("https://")) {
        anyhow::bail!("admin API URL must start with http:// or https://, got {api:?}");
    }
    let token = pick(flag_token, "CAAS_TOKEN").filter(|t| !t.is_empty());
    Ok(Settings { api, token })
}

fn default_files(env: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from(".caas/env")];
    if let Some(home) = env("HOME") {
        files.push(Path::new(&home).join(".config/caas/env"));
    }
    files
}

/// Parses `KEY=VALUE` lines, with optional `export ` and quotes; `#` starts a comment.
fn read_env_file(path: &Path) -> Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path)?;
    Ok(parse_env(&text))
}

fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            Some((k.trim().to_owned(), v.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_env_beat_file_beat_defaults() {
        let dir = std::env::temp_dir().join(format!("caas-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("env");
        std::fs::write(
            &file,
            "# comment\nexport CAAS_API=http://file:1/\nexport CAAS_TOKEN='filetok'\n",
        )
        .expect("write");
        let no_env = |_: &str| None;
        let s = resolve(None, None, Some(file.clone()), &no_env).expect("resolves");
        assert_eq!(
            s,
            Settings {
                api: "http://file:1".into(),
                token: Some("filetok".into())
            }
        );

        let env = |k: &str| (k == "CAAS_TOKEN").then(|| "envtok".to_owned());
        let s = resolve(Some("http://flag:2".into()), None, Some(file.clone()), &env)
            .expect("resolves");
        assert_eq!(
            s,
            Settings {
                api: "http://flag:2".into(),
                token: Some("envtok".into())
            }
        );

        assert!(resolve(None, None, Some(dir.join("missing")), &no_env).is_err());
        assert!(resolve(Some("ftp://x".into()), None, Some(file), &no_env).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
