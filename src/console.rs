//! `troupe console`: the interactive admin console.
//!
//! Lines are read with rustyline (history in `~/.troupe_history`, Tab completion of command
//! names from the command table). Every line of a multi-line paste runs, in order: a
//! bracketed paste comes back from rustyline as one string with newlines, and bytes typed
//! ahead while a command runs stay in rustyline's buffer for the next read.
//!
//! Like redis-cli, the console outlives the node: a command that finds the connection broken
//! (not one the node refuses, nor one that timed out and may still be running) reconnects
//! and is retried once, printing `reconnected`, or prints `not connected: ...` and the next
//! command tries again.

use crate::admin_cli::{self, CallError};
use crate::admin_render::render;
use anyhow::Context as _;
use serde_json::Value;
use std::time::Duration;
use troupe_actors::admin::commands;
use troupe_protocol::Client;

#[derive(clap::Args)]
pub struct ConsoleArgs {
    /// The node's admin address.
    #[arg(long, alias = "admin", default_value = "127.0.0.1:7402")]
    pub addr: String,
    /// The node's admin token (`auth.admin_token`).
    #[arg(long, env = "TROUPE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub tls: crate::cli_tls::TlsArgs,
}

/// Console-only words, after the node's commands in `help`.
const CONSOLE_HELP: &str = "console:
  json on|off   print replies as JSON
  quit          leave the console (also exit, Ctrl-D)
Tab completes command names; Up/Down recall history.";

/// How long a (re)connection may take before the console says it is not connected.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a command may run: `compact` or `flush` on a large node take a while, and a
/// timeout is reported, never retried (the command may still be running).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(rustyline::Helper, rustyline::Hinter, rustyline::Highlighter, rustyline::Validator)]
struct ConsoleHelper;

impl rustyline::completion::Completer for ConsoleHelper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let prefix = &line[..pos];
        if prefix.contains(char::is_whitespace) {
            return Ok((pos, Vec::new()));
        }
        let words = commands::COMMANDS
            .iter()
            .map(|c| c.name)
            .chain(["json", "quit"])
            .filter(|w| w.starts_with(prefix))
            .map(str::to_string);
        Ok((0, words.collect()))
    }
}

/// The admin connection, made again when it breaks.
struct Conn {
    addr: String,
    client: Option<Client>,
}

impl Conn {
    /// Runs one command; on a broken connection reconnects and retries once.
    async fn call(&mut self, cmd: &str, args: &[String]) -> Result<Value, CallError> {
        if let Some(client) = &self.client {
            match admin_cli::call(client, cmd, args.to_vec()).await {
                Err(CallError::Transport(_)) => self.client = None,
                answer => return answer,
            }
        }
        let client = admin_cli::connect(&self.addr, CONNECT_TIMEOUT, REQUEST_TIMEOUT).await?;
        println!("reconnected to {}", self.addr);
        let answer = admin_cli::call(&client, cmd, args.to_vec()).await;
        if !matches!(answer, Err(CallError::Transport(_))) {
            self.client = Some(client);
        }
        answer
    }
}

fn history_path() -> Option<std::path::PathBuf> {
    std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".troupe_history"))
}

pub fn run(args: ConsoleArgs) -> anyhow::Result<()> {
    crate::admin_cli::set_token(args.token.clone());
    crate::cli_tls::set_admin_tls(&args.tls)?;
    use rustyline::error::ReadlineError;
    let mut rl: rustyline::Editor<ConsoleHelper, rustyline::history::FileHistory> =
        rustyline::Editor::new().context("starting the line editor")?;
    rl.set_helper(Some(ConsoleHelper));
    let history = history_path();
    if let Some(h) = &history {
        let _ = rl.load_history(h); // no history yet is fine
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(async {
        let mut conn = Conn {
            addr: args.addr.clone(),
            client: None,
        };
        match admin_cli::connect(&args.addr, CONNECT_TIMEOUT, REQUEST_TIMEOUT).await {
            Ok(client) => {
                let status = admin_cli::call(&client, "status", vec![]).await;
                let id = status
                    .ok()
                    .and_then(|s| s.get("node_id").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_default();
                println!(
                    "connected to node {id} at {}; type `help` for commands",
                    args.addr
                );
                conn.client = Some(client);
            }
            Err(e) => println!("not connected: {e}; each command tries again"),
        }
        let mut as_json = false;
        loop {
            let input = match rl.readline("troupe> ") {
                Ok(input) => input,
                Err(ReadlineError::Interrupted | ReadlineError::Eof) => return Ok(()),
                Err(e) => return Err(anyhow::anyhow!("reading a command: {e}")),
            };
            // A bracketed paste arrives as one string: run each of its lines.
            for line in input.lines() {
                let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
                let Some((cmd, args)) = words.split_first() else {
                    continue;
                };
                let _ = rl.add_history_entry(line.trim());
                let answer = match cmd.as_str() {
                    "quit" | "exit" => return Ok(()),
                    "json" => {
                        as_json = args.first().map(String::as_str) != Some("off");
                        continue;
                    }
                    "help" => admin_cli::help(args).map(|(v, text)| {
                        if as_json || !args.is_empty() {
                            (v, text)
                        } else {
                            (v, format!("{text}{CONSOLE_HELP}\n"))
                        }
                    }),
                    _ => conn.call(cmd, args).await.map(|v| {
                        let text = render(&v);
                        (v, text)
                    }),
                };
                match answer {
                    Ok((v, _)) if as_json => println!(
                        "{}",
                        serde_json::to_string_pretty(&admin_cli::json_answer(v))?
                    ),
                    Ok((_, text)) => print!("{text}"),
                    Err(e @ CallError::Transport(_)) => println!("not connected: {e}"),
                    Err(e) if as_json => println!(
                        "{}",
                        serde_json::to_string_pretty(&admin_cli::json_error(
                            e.code(),
                            &e.message()
                        ))?
                    ),
                    Err(e) => println!("error: {e}"),
                }
            }
        }
    });
    if let Some(h) = &history {
        let _ = rl.save_history(h);
    }
    result
}
