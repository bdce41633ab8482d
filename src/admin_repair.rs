//! `troupe admin repair [PARTITION]`: starts an anti-entropy round on the node, follows its
//! progress (`repair status`, polled) on stderr, and prints what it repaired.
//!
//! On a terminal the progress is one bar redrawn in place; otherwise one line whenever it
//! changes (so logs of scripted runs show it too). `--json` prints only the final report.

use crate::admin_cli::{call, CallError};
use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::time::Duration;
use troupe_protocol::Client;

/// How often the round's progress is asked for.
const POLL: Duration = Duration::from_millis(250);

fn n(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

/// One progress line: bar, partitions, keys and bytes.
pub fn progress_line(r: &Value) -> String {
    let (done, total) = (n(r, "partitions_done"), n(r, "partitions"));
    let width = 30u64;
    let filled = (done * width).checked_div(total).unwrap_or(width) as usize;
    format!(
        "[{}{}] {done}/{total} partitions, {} keys compared, {} differing, {} repaired, {}{}",
        "#".repeat(filled),
        " ".repeat(width as usize - filled.min(width as usize)),
        n(r, "keys_compared"),
        n(r, "keys_differing"),
        n(r, "keys_repaired"),
        crate::admin_render::human_bytes(n(r, "bytes")),
        r.get("current")
            .and_then(Value::as_str)
            .map(|p| format!(" (with {p})"))
            .unwrap_or_default()
    )
}

/// Starts the round and waits for its end; the final report.
pub async fn run(client: &Client, args: Vec<String>, quiet: bool) -> Result<Value, CallError> {
    let mut report = call(client, "repair", args).await?;
    let round = report.get("round").cloned();
    let tty = std::io::stderr().is_terminal();
    let mut last = String::new();
    loop {
        let line = progress_line(&report);
        if !quiet && line != last {
            let mut err = std::io::stderr().lock();
            let _ = if tty {
                write!(err, "\r{line}\x1b[K")
            } else {
                writeln!(err, "{line}")
            };
            let _ = err.flush();
            last = line;
        }
        let running = report.get("running").and_then(Value::as_bool) == Some(true);
        if !running || report.get("round").cloned() != round {
            break;
        }
        tokio::time::sleep(POLL).await;
        report = call(client, "repair", vec!["status".into()]).await?;
    }
    if !quiet && tty {
        eprintln!();
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_shows_the_bar_and_the_counts() {
        let r = serde_json::json!({"partitions": 4, "partitions_done": 2, "keys_compared": 10,
            "keys_differing": 3, "keys_repaired": 3, "bytes": 2048, "current": "n2"});
        let line = progress_line(&r);
        assert!(
            line.starts_with(&format!("[{}{}]", "#".repeat(15), " ".repeat(15))),
            "{line}"
        );
        assert!(
            line.contains("2/4 partitions, 10 keys compared, 3 differing, 3 repaired"),
            "{line}"
        );
        assert!(line.ends_with("(with n2)"), "{line}");
    }
}
