//! `troupe config check|print`: validate the configuration a node would run with, or show
//! it with the layer each value came from (default, file path, or environment variable).
//!
//! Both read the same layers as `troupe node` ([`crate::config_layers::Layered`]) minus the
//! node's command-line flags, so a file and environment that pass `check` start a node.

use crate::config::Overrides;
use crate::config_layers::{Layered, Source};
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum ConfigCmd {
    /// Validate the configuration file and TROUPE__SECTION__KEY environment; exit 0 when
    /// a node would start with it, 2 naming the problem.
    Check {
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the effective configuration and where each value came from.
    Print {
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print as JSON: {"format_version": 1, "keys": {"section.key": {"value", "source"}}}.
        #[arg(long)]
        json: bool,
    },
}

/// Keys whose value is never printed.
const SECRET_KEYS: &[&str] = &["cluster.secret", "auth.client_tokens", "auth.admin_token"];

pub fn run(cmd: ConfigCmd) -> anyhow::Result<()> {
    match cmd {
        ConfigCmd::Check { config } => {
            let layered =
                Layered::load(config.as_deref(), std::env::vars(), &Overrides::default())?;
            layered.config()?;
            let from_env = layered
                .entries
                .values()
                .filter(|(_, s)| matches!(s, Source::Env(_)))
                .count();
            match &config {
                Some(f) => println!(
                    "configuration OK: {} and {from_env} environment value(s)",
                    f.display()
                ),
                None => println!("configuration OK: defaults and {from_env} environment value(s)"),
            }
            Ok(())
        }
        ConfigCmd::Print { config, json } => {
            let layered =
                Layered::load(config.as_deref(), std::env::vars(), &Overrides::default())?;
            // Printed even when the whole fails validation: where each value came from is
            // what finds the bad one.
            print!("{}", render(&layered, json));
            layered.config().map(|_| ())
        }
    }
}

fn shown(key: &str, value: &Value) -> Value {
    let secret = SECRET_KEYS.contains(&key)
        && (value.as_str().is_some_and(|s| !s.is_empty())
            || value.as_array().is_some_and(|a| !a.is_empty()));
    if secret {
        Value::String("<redacted>".into())
    } else {
        value.clone()
    }
}

fn render(layered: &Layered, as_json: bool) -> String {
    if as_json {
        let keys: serde_json::Map<String, Value> = layered
            .entries
            .iter()
            .map(|(k, (v, s))| {
                (
                    k.clone(),
                    json!({ "value": shown(k, v), "source": s.to_string() }),
                )
            })
            .collect();
        return format!("{}\n", json!({ "format_version": 1, "keys": keys }));
    }
    let rows: Vec<(String, String, String)> = layered
        .entries
        .iter()
        .map(|(k, (v, s))| (k.clone(), shown(k, v).to_string(), s.to_string()))
        .collect();
    let kw = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let vw = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let mut out = format!("{:<kw$}  {:<vw$}  SOURCE\n", "KEY", "VALUE");
    for (k, v, s) in rows {
        out.push_str(&format!("{k:<kw$}  {v:<vw$}  {s}\n"));
    }
    out
}
