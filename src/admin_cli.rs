//! `troupe admin`: one admin command against a node's admin port, printed for a human
//! (see [`crate::admin_render`]) or as JSON.
//!
//! Every JSON answer is one object with `"format": 1` at the top level: a reply's fields,
//! or `{"format": 1, "error": {"code", "message"}}` with exit status 2. `help` is answered
//! here from the node's command table ([`troupe_actors::admin::commands`]), so it works
//! without a node; everything else goes to the node, which answers unknown names with
//! "did you mean".

use crate::admin_render::render;
use crate::cli::Outcome;
use serde_json::{json, Value};
use std::time::Duration;
use troupe_actors::admin::commands;
use troupe_protocol::admin::AdminResponse;
use troupe_protocol::{Client, ClientError};

/// The version of the JSON answers' shape; bumped when a field changes meaning or goes.
pub const JSON_FORMAT: u64 = 1;

#[derive(clap::Args)]
pub struct AdminArgs {
    /// The command (`troupe admin help` lists them).
    pub command: Option<String>,
    /// Its arguments.
    pub args: Vec<String>,
    /// The node's admin address.
    #[arg(long, default_value = "127.0.0.1:7402")]
    pub addr: String,
    /// Print the reply (or the error) as JSON.
    #[arg(long)]
    pub json: bool,
    /// Confirm a destructive command (leave, fault).
    #[arg(long)]
    pub yes: bool,
    /// Seconds to wait for the node.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// The node's admin token (`auth.admin_token`).
    #[arg(long, env = "TROUPE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub tls: crate::cli_tls::TlsArgs,
}

/// The admin token every call sends (`--token`, or `TROUPE_ADMIN_TOKEN`).
static TOKEN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Sets the admin token for this process's admin calls (the first call wins).
pub fn set_token(token: Option<String>) {
    let _ = TOKEN.set(token);
}

fn token() -> Option<String> {
    TOKEN
        .get()
        .cloned()
        .unwrap_or_else(|| std::env::var("TROUPE_ADMIN_TOKEN").ok())
        .filter(|t| !t.is_empty())
}

/// `troupe admin --help`'s list of commands, from the command table.
pub fn after_help() -> String {
    format!(
        "Commands:\n{}\n`troupe admin help COMMAND` shows one command's usage.",
        commands::listing()
    )
}

/// Why an admin call failed: the node answered with an error, or it could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The node refused or failed the command (nothing to retry on another connection).
    #[error("{code}: {message}")]
    Node { code: String, message: String },
    /// The connection failed or closed, or the reply was unreadable; the command may or
    /// may not have run.
    #[error("{0}")]
    Transport(String),
    /// No answer in time on a working connection; the command may or may not have run
    /// (and may still be running: `compact` on a large node takes a while).
    #[error("timeout: {0}")]
    Timeout(String),
}

impl CallError {
    pub fn code(&self) -> &str {
        match self {
            CallError::Node { code, .. } => code,
            CallError::Transport(_) => "not_connected",
            CallError::Timeout(_) => "timeout",
        }
    }

    pub fn message(&self) -> String {
        match self {
            CallError::Node { message, .. } => message.clone(),
            CallError::Transport(m) | CallError::Timeout(m) => m.clone(),
        }
    }
}

/// Connects within `timeout`; each request then waits up to `request_timeout`.
pub async fn connect(
    addr: &str,
    timeout: Duration,
    request_timeout: Duration,
) -> Result<Client, CallError> {
    let cannot = |e: String| {
        CallError::Transport(format!(
            "cannot reach the admin port at {addr} (is the node running? pass --addr): {e}"
        ))
    };
    let tls = crate::cli_tls::admin_tls();
    let connecting = Client::connect_raw_tls(addr, Some(request_timeout), tls);
    match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(cannot(e.to_string())),
        Err(_) => Err(cannot(format!("no answer within {timeout:?}"))),
    }
}

pub async fn call(client: &Client, command: &str, args: Vec<String>) -> Result<Value, CallError> {
    let frame = client
        .admin_with_token(command, args, token())
        .await
        .map_err(|e| match e {
            ClientError::Timeout(_) => CallError::Timeout(e.to_string()),
            e => CallError::Transport(e.to_string()),
        })?;
    let resp: AdminResponse<Value> = rmp_serde::from_slice(&frame).map_err(|e| {
        CallError::Transport(format!(
            "the node sent an admin reply this CLI cannot read: {e}"
        ))
    })?;
    match (resp.ok, resp.err) {
        // The client port answers admin commands as unknown ops: say where the admin is.
        (_, Some(e)) if e.msg.starts_with("unknown op") => Err(CallError::Node {
            code: e.code.to_string(),
            message: format!(
                "this is a client port, not the admin port ({}); pass the node's admin address with --addr (net.admin_listen, default 127.0.0.1:7402)",
                e.msg
            ),
        }),
        (_, Some(e)) => Err(CallError::Node {
            code: e.code.to_string(),
            message: e.msg,
        }),
        (Some(v), None) => Ok(v),
        (None, None) => Ok(Value::Null),
    }
}

/// A reply as a JSON answer: its fields under the format version.
pub fn json_answer(v: Value) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("format".into(), JSON_FORMAT.into());
    match v {
        Value::Object(map) => out.extend(map),
        Value::Null => {}
        other => {
            out.insert("result".into(), other);
        }
    }
    Value::Object(out)
}

/// An error as a JSON answer.
pub fn json_error(code: &str, message: &str) -> Value {
    json!({ "format": JSON_FORMAT, "error": { "code": code, "message": message } })
}

/// `help` or `help CMD` from the command table: the reply as JSON and as text.
pub fn help(args: &[String]) -> Result<(Value, String), CallError> {
    match args.first() {
        None => Ok((
            json!({ "commands": commands::COMMANDS }),
            format!("commands:\n{}", commands::listing()),
        )),
        Some(name) => match commands::find(name) {
            Some(spec) => Ok((json!(spec), commands::usage(spec))),
            None => Err(CallError::Node {
                code: "bad_request".into(),
                message: commands::unknown(name),
            }),
        },
    }
}

pub fn run(a: AdminArgs) -> anyhow::Result<Outcome> {
    set_token(a.token.clone());
    crate::cli_tls::set_admin_tls(&a.tls)?;
    let Some(command) = a.command else {
        print!("{}", after_help());
        println!();
        return Ok(Outcome::Ok);
    };
    let mut args = a.args;
    if a.yes {
        args.push("--yes".into());
    }
    let result: Result<(Value, Option<String>), CallError> = if command == "help" {
        help(&args).map(|(v, text)| (v, Some(text)))
    } else {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let timeout = Duration::from_secs(a.timeout);
            let client = connect(&a.addr, timeout, timeout).await?;
            if command == "repair" && args.first().map(String::as_str) != Some("status") {
                return crate::admin_repair::run(&client, args, a.json)
                    .await
                    .map(|v| (v, None));
            }
            call(&client, &command, args).await.map(|v| (v, None))
        })
    };
    match result {
        Ok((v, _)) if a.json => {
            print_out(&(serde_json::to_string_pretty(&json_answer(v))? + "\n"))?;
            Ok(Outcome::Ok)
        }
        Ok((v, text)) => {
            print_out(&text.unwrap_or_else(|| render(&v)))?;
            Ok(Outcome::Ok)
        }
        Err(e) => {
            if a.json {
                let answer = json_error(e.code(), &e.message());
                print_out(&(serde_json::to_string_pretty(&answer)? + "\n"))?;
            }
            Err(e.into())
        }
    }
}

/// Writes to stdout; a closed pipe (`| head`) ends the output quietly instead of panicking.
fn print_out(s: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(s.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
