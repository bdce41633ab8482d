//! Client commands: `put`, `get`, `del` (the data-type commands are in `cli_types.rs`,
//! `admin` in `admin_cli.rs`, the console in `console.rs`).

use anyhow::Context as _;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::Duration;
use troupe_actors::connection::MAX_KEY_BYTES;
use troupe_protocol::admin::AdminResponse;
use troupe_protocol::message::{encode_request, Request};
use troupe_protocol::{Client, ClientError, ErrorCode, Quorum, DEFAULT_MAX_FRAME_BYTES};

/// How a command ended, when it did not fail.
pub enum Outcome {
    Ok,
    NotFound,
}

#[derive(clap::Args)]
pub struct ConnArgs {
    /// The node's client address.
    #[arg(long, env = "TROUPE_ADDR", default_value = "127.0.0.1:7400")]
    pub addr: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait for the node.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// A client token, for a node that requires one (`auth.client_tokens`).
    #[arg(long, env = "TROUPE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub tls: crate::cli_tls::TlsArgs,
}

/// The value given on the command line, or, when it was left out, all of stdin.
pub(crate) fn value_or_stdin(value: Option<String>) -> anyhow::Result<Vec<u8>> {
    Ok(match value {
        Some(v) => v.into_bytes(),
        None => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading the value from stdin")?;
            buf
        }
    })
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub(crate) async fn connect(args: &ConnArgs) -> anyhow::Result<Client> {
    let timeout = Duration::from_secs(args.timeout);
    let tls = args.tls.client_tls()?;
    let connected = tokio::time::timeout(
        timeout,
        Client::connect_tls(
            args.addr.as_str(),
            "troupe-cli",
            args.token.clone(),
            Some(timeout),
            tls.as_ref(),
        ),
    )
    .await
    .map_err(|_| anyhow::anyhow!("no answer from {} within {timeout:?}", args.addr))?;
    match connected {
        Ok(client) => Ok(client),
        Err(ClientError::Server(e)) if e.code == troupe_protocol::ErrorCode::Unauthorized => {
            anyhow::bail!(
                "{} refused this client ({}): pass --token or set TROUPE_TOKEN",
                args.addr,
                if args.token.is_some() {
                    "wrong token"
                } else {
                    "no token"
                }
            )
        }
        Err(e) => {
            // Something answered hello with an error: perhaps the admin port, which speaks
            // the same framing but not hello.
            let answered = matches!(
                e,
                ClientError::Server(_) | ClientError::Protocol(_) | ClientError::Closed
            );
            if answered {
                if let Some(hint) = admin_port_hint(&args.addr, timeout).await {
                    anyhow::bail!(hint);
                }
            }
            Err(anyhow::Error::new(e).context(format!(
                "cannot reach a troupe node at {} (is it running? pass --addr or set TROUPE_ADDR)",
                args.addr
            )))
        }
    }
}

/// When `addr` is a node's admin port, says so and names the client port it reports in
/// `status`; `None` when it is not (or does not answer).
pub async fn admin_port_hint(addr: &str, timeout: Duration) -> Option<String> {
    let probe = async {
        let tls = crate::cli_tls::admin_tls();
        let client = Client::connect_raw_tls(addr, Some(timeout), tls)
            .await
            .ok()?;
        let frame = client.admin("status", vec![]).await.ok()?;
        let resp: AdminResponse<Value> = rmp_serde::from_slice(&frame).ok()?;
        let client_addr = resp
            .ok?
            .get("addresses")?
            .get("client")?
            .as_str()?
            .to_string();
        Some(format!(
            "{addr} is the admin port; the client port is --addr {client_addr} (or set TROUPE_ADDR)"
        ))
    };
    tokio::time::timeout(timeout, probe).await.ok().flatten()
}

/// Refuses a request the node could not take, before sending it: a frame over the
/// protocol's limit (the node would drop the connection), or a key over the key limit.
pub(crate) fn check_request(req: &Request) -> anyhow::Result<()> {
    let key_len = req.key().map_or(0, <[u8]>::len);
    if key_len > MAX_KEY_BYTES {
        anyhow::bail!("the key is {key_len} bytes; keys are limited to {MAX_KEY_BYTES} bytes");
    }
    let frame = encode_request(1, req).len();
    if frame > DEFAULT_MAX_FRAME_BYTES {
        let value = match req {
            Request::Put { value, .. } | Request::RegPut { value, .. } => {
                format!(" (value {} bytes)", value.len())
            }
            _ => String::new(),
        };
        anyhow::bail!(
            "the request is {frame} bytes{value}, over the protocol's frame limit of {DEFAULT_MAX_FRAME_BYTES} bytes ({} MiB); store large values in pieces",
            DEFAULT_MAX_FRAME_BYTES / (1024 * 1024)
        );
    }
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A value for JSON output: a string when it is UTF-8, else `{"hex": ...}`.
pub(crate) fn json_value(b: &[u8]) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => Value::String(s.to_string()),
        Err(_) => json!({ "hex": hex(b) }),
    }
}

/// Parses a hex context given on the command line.
fn unhex(what: &str, s: &str) -> anyhow::Result<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        anyhow::bail!(
            "{what} must be the hex context printed by `troupe get --json` or `troupe put --json`"
        );
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).context("hex digit"))
        .collect()
}

pub(crate) fn quorum(what: &str, s: Option<&str>) -> anyhow::Result<Option<Quorum>> {
    s.map(|s| {
        Quorum::parse(s).with_context(|| format!("{what} must be one, quorum, all or a number"))
    })
    .transpose()
}

pub fn put(
    args: &ConnArgs,
    key: &str,
    value: Option<String>,
    context: Option<&str>,
    w: Option<&str>,
) -> anyhow::Result<Outcome> {
    let context = context.map(|c| unhex("--context", c)).transpose()?;
    let w = quorum("--w", w)?;
    let value = value_or_stdin(value)?;
    // A copy of the value for the size check: the CLI sends one request, so simple wins.
    check_request(&Request::Put {
        key: key.as_bytes().to_vec(),
        value: value.clone(),
        context: context.clone(),
        w,
    })?;
    runtime()?.block_on(async {
        let client = connect(args).await?;
        let put = client.put_full(key.as_bytes(), &value, context, w).await?;
        if args.json {
            let mut out = json!({ "key": key, "context": hex(&put.context) });
            if let Some(values) = &put.values {
                out["values"] = values.iter().map(|v| json_value(v)).collect();
            }
            println!("{out}");
        } else if let Some(values) = &put.values {
            print_values(values)?;
        }
        // The context covers every value shown: a write with it replaces them all. (One
        // value shown: the others were delete markers, which a get hides too.)
        if let Some(values) = put.values.as_ref().filter(|v| v.len() > 1) {
            eprintln!(
                "key {key} has {} concurrent versions; resolve them with `troupe get {key} --json`, then `troupe put {key} VALUE --context CONTEXT`",
                values.len()
            );
        }
        Ok(Outcome::Ok)
    })
}

/// Values one per line (siblings), as `get` and `put` print them; a final newline only
/// on a terminal, so one value round-trips byte for byte through a pipe.
pub(crate) fn print_values(values: &[Vec<u8>]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.write_all(b"\n")?;
        }
        out.write_all(v)?;
    }
    if !values.is_empty() && std::io::IsTerminal::is_terminal(&out) {
        out.write_all(b"\n")?;
    }
    Ok(())
}

pub fn get(
    args: &ConnArgs,
    key: &str,
    after: Option<&str>,
    r: Option<&str>,
) -> anyhow::Result<Outcome> {
    let after = after.map(|c| unhex("--after", c)).transpose()?;
    let r = quorum("--r", r)?;
    check_request(&Request::Get {
        key: key.as_bytes().to_vec(),
        r: None,
        after: None,
    })?;
    runtime()?.block_on(async {
        let client = connect(args).await?;
        let got = client.get_after(key.as_bytes(), r, after).await?;
        if args.json {
            let values: Vec<Value> = got.values.iter().map(|v| json_value(v)).collect();
            println!(
                "{}",
                json!({ "key": key, "found": !got.values.is_empty(), "values": values, "context": hex(&got.context) })
            );
        } else {
            print_values(&got.values)?;
        }
        if got.values.is_empty() {
            if !args.json {
                eprintln!("not found: {key}");
            }
            return Ok(Outcome::NotFound);
        }
        Ok(Outcome::Ok)
    })
}

pub fn del(
    args: &ConnArgs,
    key: &str,
    context: Option<&str>,
    w: Option<&str>,
) -> anyhow::Result<Outcome> {
    let context = context.map(|c| unhex("--context", c)).transpose()?;
    let w = quorum("--w", w)?;
    check_request(&Request::Delete {
        key: key.as_bytes().to_vec(),
        context: None,
        w: None,
    })?;
    runtime()?.block_on(async {
        let client = connect(args).await?;
        // A delete removes the versions its context names: without one, delete what a
        // read sees now (a context-free delete would only add a marker beside them).
        let context = match context {
            Some(c) => Some(c),
            None => match client.get(key.as_bytes()).await {
                Ok(got) => Some(got.context),
                // A typed key refuses `get` (bad_request naming its type): a delete
                // without a context removes the state the coordinator holds
                // (PROTOCOL.md §10), which is what a typed key's client has seen.
                Err(ClientError::Server(e)) if e.code == ErrorCode::BadRequest => None,
                Err(e) => return Err(e.into()),
            },
        };
        client.delete_with(key.as_bytes(), context, w).await?;
        if args.json {
            println!("{}", json!({ "key": key, "deleted": true }));
        }
        Ok(Outcome::Ok)
    })
}
