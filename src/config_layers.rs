//! The configuration layers and where each value came from: defaults < TOML file <
//! `TROUPE__SECTION__KEY` environment < command-line flags.
//!
//! Every layer is flattened to `section.key` entries over the JSON form of the defaults, and
//! each entry is checked on its own as it is applied, so an error names the layer that set
//! the bad value (the file path, or the environment variable) along with the valid values.
//! [`Layered::config`] is the only way [`Config::load`] builds a configuration, so what
//! `troupe config print` shows is what a node runs with.

use crate::config::{Config, Overrides};
use anyhow::{bail, Context as _};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The layer that set a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(String),
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(var) => write!(f, "env {var}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// Every `section.key` with its effective value and the layer that set it.
pub struct Layered {
    pub entries: BTreeMap<String, (Value, Source)>,
}

const ENV_PREFIX: &str = "TROUPE__";

impl Layered {
    /// Applies the layers in order, checking each value as it lands.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &Overrides,
    ) -> anyhow::Result<Layered> {
        let defaults =
            serde_json::to_value(Config::default()).context("BUG: defaults serialize")?;
        let mut layered = Layered {
            entries: BTreeMap::new(),
        };
        for (section, keys) in sections(&defaults) {
            for (key, value) in keys {
                layered
                    .entries
                    .insert(format!("{section}.{key}"), (value.clone(), Source::Default));
            }
        }
        if let Some(path) = file {
            for (key, value) in file_entries(path)? {
                let origin = format!("config file {}", path.display());
                layered.set(&origin, &key, value, Source::File(path.to_path_buf()))?;
            }
        }
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        env.sort();
        for (var, raw) in env {
            let key = env_key(&var, &layered)?;
            let value = parse_env(&raw, &layered.entries[&key].0);
            let origin = format!("environment variable {var}");
            layered.set(&origin, &key, value, Source::Env(var))?;
        }
        for (key, value, flag) in flag_entries(flags) {
            layered.set(&format!("flag {flag}"), key, value, Source::Flag(flag))?;
        }
        Ok(layered)
    }

    /// Sets one entry after checking that the key exists and the value has its type.
    fn set(&mut self, origin: &str, key: &str, value: Value, source: Source) -> anyhow::Result<()> {
        if !self.entries.contains_key(key) {
            return Err(self.unknown_key(origin, key));
        }
        let mut candidate = self.entries.clone();
        candidate.insert(key.to_string(), (value.clone(), source.clone()));
        if let Err(e) = serde_json::from_value::<Config>(nest(&candidate)) {
            bail!("{origin}: {key} = {value}: {}", explain(&e.to_string()));
        }
        self.entries.insert(key.to_string(), (value, source));
        Ok(())
    }

    /// "unknown key", with the keys (or sections) that do exist.
    fn unknown_key(&self, origin: &str, key: &str) -> anyhow::Error {
        let section = key.split('.').next().unwrap_or_default();
        let known: Vec<&str> = self
            .entries
            .keys()
            .filter_map(|k| k.strip_prefix(section)?.strip_prefix('.'))
            .collect();
        if known.is_empty() {
            let sections: std::collections::BTreeSet<&str> = self
                .entries
                .keys()
                .filter_map(|k| k.split('.').next())
                .collect();
            let sections: Vec<&str> = sections.into_iter().collect();
            return anyhow::anyhow!(
                "{origin}: unknown section {section:?}; the sections are {}",
                sections.join(", ")
            );
        }
        anyhow::anyhow!(
            "{origin}: unknown key {key}; [{section}] has {}",
            known.join(", ")
        )
    }

    /// The effective configuration, validated.
    pub fn config(&self) -> anyhow::Result<Config> {
        let cfg: Config = serde_json::from_value(nest(&self.entries))
            .context("invalid configuration (check key names and value types)")?;
        if let Err(e) = cfg.validate() {
            // Name the layers that set the values the message is about.
            let msg = e.to_string();
            let set_by: Vec<String> = self
                .entries
                .iter()
                .filter(|(k, (_, src))| {
                    let section = k.split('.').next().unwrap_or_default();
                    *src != Source::Default
                        && (msg.contains(k.as_str()) || msg.starts_with(&format!("{section}:")))
                })
                .map(|(k, (_, src))| format!("{k} from {src}"))
                .collect();
            if set_by.is_empty() {
                return Err(e);
            }
            bail!("{msg} (set: {})", set_by.join(", "));
        }
        Ok(cfg)
    }
}

/// Serde's wording made a little plainer: "unknown variant `x`, expected `a` or `b`" already
/// lists the valid values; a type mismatch says what type is wanted.
fn explain(serde_msg: &str) -> String {
    serde_msg
        .replace("unknown variant", "not a valid value:")
        .replace("expected usize", "expected a whole number")
        .replace("expected u64", "expected a whole number")
        .replace("expected u32", "expected a whole number")
}

fn sections(defaults: &Value) -> Vec<(&String, &Map<String, Value>)> {
    defaults
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(s, v)| Some((s, v.as_object()?)))
        .collect()
}

/// `section.key` entries back into the nested form `Config` deserializes from.
fn nest(entries: &BTreeMap<String, (Value, Source)>) -> Value {
    let mut root = Map::new();
    for (key, (value, _)) in entries {
        let (section, field) = key.split_once('.').unwrap_or((key, ""));
        let sec = root
            .entry(section.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = sec {
            m.insert(field.to_string(), value.clone());
        }
    }
    Value::Object(root)
}

/// The file's `section.key` entries (parsed by the `config` crate's TOML reader).
fn file_entries(path: &Path) -> anyhow::Result<Vec<(String, Value)>> {
    if !path.exists() {
        bail!("config file {} does not exist", path.display());
    }
    let parsed: Value = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize())
        .with_context(|| format!("reading config file {}", path.display()))?;
    let mut out = Vec::new();
    for (section, v) in parsed.as_object().into_iter().flatten() {
        match v {
            Value::Object(keys) => {
                for (key, value) in keys {
                    out.push((format!("{section}.{key}"), value.clone()));
                }
            }
            _ => bail!(
                "config file {}: {section} must be a [section], not a value",
                path.display()
            ),
        }
    }
    Ok(out)
}

/// `TROUPE__STORAGE__DURABILITY` -> `storage.durability`.
fn env_key(var: &str, layered: &Layered) -> anyhow::Result<String> {
    let rest = &var[ENV_PREFIX.len()..];
    let parts: Vec<&str> = rest.split("__").collect();
    let [section, key] = parts[..] else {
        bail!("environment variable {var}: write TROUPE__SECTION__KEY, e.g. TROUPE__STORAGE__DURABILITY");
    };
    let key = format!("{}.{}", section.to_lowercase(), key.to_lowercase());
    if !layered.entries.contains_key(&key) {
        return Err(layered.unknown_key(&format!("environment variable {var}"), &key));
    }
    Ok(key)
}

/// An environment string typed like the value it replaces: numbers, booleans, and
/// comma-separated lists; anything else stays a string (and a type error names it).
fn parse_env(raw: &str, like: &Value) -> Value {
    match like {
        Value::Number(_) => raw
            .trim()
            .parse::<u64>()
            .map(Value::from)
            .or_else(|_| raw.trim().parse::<i64>().map(Value::from))
            .or_else(|_| raw.trim().parse::<f64>().map(Value::from))
            .unwrap_or_else(|_| Value::String(raw.to_string())),
        Value::Bool(_) => raw
            .trim()
            .parse::<bool>()
            .map(Value::Bool)
            .unwrap_or_else(|_| Value::String(raw.to_string())),
        Value::Array(_) => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        ),
        _ => Value::String(raw.to_string()),
    }
}

fn flag_entries(f: &Overrides) -> Vec<(&'static str, Value, &'static str)> {
    let s = |v: &Option<String>| v.clone().map(Value::String);
    let durability = f.durability.map(|d| {
        serde_json::to_value(d).unwrap_or_else(|_| Value::String(format!("{d:?}").to_lowercase()))
    });
    [
        ("node.id", s(&f.node_id), "--node-id"),
        (
            "node.data_dir",
            f.data_dir
                .as_ref()
                .map(|p| Value::String(p.display().to_string())),
            "--data-dir",
        ),
        ("net.listen", s(&f.listen), "--listen"),
        ("net.peer_listen", s(&f.peer_listen), "--peer-listen"),
        ("net.admin_listen", s(&f.admin_listen), "--admin-listen"),
        (
            "net.metrics_listen",
            s(&f.metrics_listen),
            "--metrics-listen",
        ),
        (
            "net.seeds",
            f.seeds
                .as_ref()
                .map(|v| v.iter().cloned().map(Value::String).collect()),
            "--seeds",
        ),
        ("storage.durability", durability, "--durability"),
        (
            "node.enable_fault_injection",
            f.enable_fault_injection.then_some(Value::Bool(true)),
            "--enable-fault-injection",
        ),
    ]
    .into_iter()
    .filter_map(|(k, v, flag)| Some((k, v?, flag)))
    .collect()
}
