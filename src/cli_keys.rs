//! `troupe keys [PREFIX] [--limit N] [--json]`: every live key (with the prefix) in byte
//! order, paging through the `keys` op with its cursor. Keys print one per line (UTF-8 as
//! is, other keys as hex); `--json` prints `{"keys": [...], "count": N}`.

use crate::cli::{connect, json_value, runtime, ConnArgs, Outcome};
use serde_json::json;
use std::io::Write as _;

#[derive(clap::Args)]
pub struct KeysArgs {
    /// Only keys starting with this prefix.
    pub prefix: Option<String>,
    /// Stop after this many keys (default: all of them).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Keys per request (1 to 10000).
    #[arg(long, default_value_t = 1000)]
    pub page: u32,
    #[command(flatten)]
    pub conn: ConnArgs,
}

pub fn run(a: KeysArgs) -> anyhow::Result<Outcome> {
    runtime()?.block_on(async {
        let c = connect(&a.conn).await?;
        let prefix = a.prefix.as_deref().map(str::as_bytes);
        let mut after: Option<Vec<u8>> = None;
        let mut all: Vec<Vec<u8>> = Vec::new();
        let mut out = std::io::stdout().lock();
        loop {
            let (keys, cursor) = c.keys(prefix, Some(a.page), after.as_deref()).await?;
            for k in keys {
                if a.limit.is_some_and(|l| all.len() >= l) {
                    break;
                }
                if !a.conn.json {
                    match std::str::from_utf8(&k) {
                        Ok(s) => writeln!(out, "{s}")?,
                        Err(_) => writeln!(
                            out,
                            "{}",
                            k.iter().map(|b| format!("{b:02x}")).collect::<String>()
                        )?,
                    }
                }
                all.push(k);
            }
            match cursor {
                Some(cur) if a.limit.is_none_or(|l| all.len() < l) => after = Some(cur),
                _ => break,
            }
        }
        if a.conn.json {
            let keys: Vec<_> = all.iter().map(|k| json_value(k)).collect();
            writeln!(out, "{}", json!({ "keys": keys, "count": all.len() }))?;
        }
        Ok(Outcome::Ok)
    })
}
