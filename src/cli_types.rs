//! The data-type commands (PROTOCOL.md §10): `incr`, `counter`, `sadd`, `srem`,
//! `smembers`, `reg-put`, `reg-get`. Each connects, sends one request and prints the
//! answer, plain or `--json`, with the exit codes of `get`/`put`: 0 done, 1 not found
//! (`reg-get` of a key that holds no register), 2 an error (a key of another type is the
//! node's `bad_request`, which names the type the key holds).

use crate::cli::{
    check_request, connect, json_value, print_values, quorum, runtime, ConnArgs, Outcome,
};
use serde_json::json;
use std::future::Future;
use troupe_protocol::message::Request;
use troupe_protocol::{Client, ClientError};

#[derive(clap::Subcommand)]
pub enum TypeCmd {
    /// Counter: add BY (default 1, may be negative) and print the value the node saw
    /// after it. Not idempotent: after a timeout the increment may or may not have counted.
    #[command(allow_negative_numbers = true)]
    Incr {
        key: String,
        /// The amount to add (negative subtracts).
        #[arg(default_value_t = 1)]
        by: i64,
        /// Write quorum: one, quorum, all or a number (default: cluster.w).
        #[arg(long)]
        w: Option<String>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Counter: print its value (0 when the key holds none).
    Counter {
        key: String,
        /// Read quorum: one, quorum, all or a number (default: cluster.r).
        #[arg(long)]
        r: Option<String>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Set: add members.
    Sadd {
        key: String,
        #[arg(required = true)]
        members: Vec<String>,
        /// Write quorum: one, quorum, all or a number (default: cluster.w).
        #[arg(long)]
        w: Option<String>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Set: remove members (those the node has seen; a concurrent add elsewhere wins).
    Srem {
        key: String,
        #[arg(required = true)]
        members: Vec<String>,
        /// Write quorum: one, quorum, all or a number (default: cluster.w).
        #[arg(long)]
        w: Option<String>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Set: print its members, one per line in byte order (none when the key holds none).
    Smembers {
        key: String,
        /// Read quorum: one, quorum, all or a number (default: cluster.r).
        #[arg(long)]
        r: Option<String>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Register: store a value, last writer wins (read from stdin when VALUE is omitted).
    RegPut {
        key: String,
        value: Option<String>,
        /// Write quorum: one, quorum, all or a number (default: cluster.w).
        #[arg(long)]
        w: Option<String>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Register: print its value; exit 1 when the key holds none.
    RegGet {
        key: String,
        /// Read quorum: one, quorum, all or a number (default: cluster.r).
        #[arg(long)]
        r: Option<String>,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

pub fn run(cmd: TypeCmd) -> anyhow::Result<Outcome> {
    match cmd {
        TypeCmd::Incr { key, by, w, conn } => {
            let w = quorum("--w", w.as_deref())?;
            let req = Request::Incr {
                key: key.clone().into_bytes(),
                by,
                w,
            };
            check_request(&req)?;
            let k = key.as_bytes();
            let value = with_client(&conn, |c| async move { c.incr_with(k, by, w).await })?;
            print_int(&conn, &key, value);
            Ok(Outcome::Ok)
        }
        TypeCmd::Counter { key, r, conn } => {
            let r = quorum("--r", r.as_deref())?;
            check_request(&Request::Counter {
                key: key.clone().into_bytes(),
                r,
            })?;
            let k = key.as_bytes();
            let value = with_client(&conn, |c| async move { c.counter_with(k, r).await })?;
            print_int(&conn, &key, value);
            Ok(Outcome::Ok)
        }
        TypeCmd::Sadd {
            key,
            members,
            w,
            conn,
        } => set_write(&conn, key, members, w.as_deref(), true),
        TypeCmd::Srem {
            key,
            members,
            w,
            conn,
        } => set_write(&conn, key, members, w.as_deref(), false),
        TypeCmd::Smembers { key, r, conn } => {
            let r = quorum("--r", r.as_deref())?;
            check_request(&Request::Smembers {
                key: key.clone().into_bytes(),
                r,
            })?;
            let k = key.as_bytes();
            let members = with_client(&conn, |c| async move { c.smembers_with(k, r).await })?;
            if conn.json {
                let members: Vec<_> = members.iter().map(|m| json_value(m)).collect();
                println!("{}", json!({ "key": key, "members": members }));
            } else {
                print_values(&members)?;
            }
            Ok(Outcome::Ok)
        }
        TypeCmd::RegPut {
            key,
            value,
            w,
            conn,
        } => {
            let w = quorum("--w", w.as_deref())?;
            let value = crate::cli::value_or_stdin(value)?;
            // A copy of the value for the size check, as `put` does: one request, simple wins.
            check_request(&Request::RegPut {
                key: key.clone().into_bytes(),
                value: value.clone(),
                w,
            })?;
            let k = key.as_bytes();
            with_client(&conn, |c| async move { c.reg_put_with(k, &value, w).await })?;
            print_done(&conn, &key);
            Ok(Outcome::Ok)
        }
        TypeCmd::RegGet { key, r, conn } => {
            let r = quorum("--r", r.as_deref())?;
            check_request(&Request::RegGet {
                key: key.clone().into_bytes(),
                r,
            })?;
            let k = key.as_bytes();
            let value = with_client(&conn, |c| async move { c.reg_get_with(k, r).await })?;
            if conn.json {
                let shown = value.as_deref().map_or(serde_json::Value::Null, json_value);
                println!(
                    "{}",
                    json!({ "key": key, "found": value.is_some(), "value": shown })
                );
            }
            match value {
                Some(v) => {
                    if !conn.json {
                        print_values(&[v])?;
                    }
                    Ok(Outcome::Ok)
                }
                None => {
                    if !conn.json {
                        eprintln!("not found: {key}");
                    }
                    Ok(Outcome::NotFound)
                }
            }
        }
    }
}

/// `sadd` (`add`) or `srem`.
fn set_write(
    conn: &ConnArgs,
    key: String,
    members: Vec<String>,
    w: Option<&str>,
    add: bool,
) -> anyhow::Result<Outcome> {
    let w = quorum("--w", w)?;
    let members: Vec<Vec<u8>> = members.into_iter().map(String::into_bytes).collect();
    let req = if add {
        Request::Sadd {
            key: key.clone().into_bytes(),
            members,
            w,
        }
    } else {
        Request::Srem {
            key: key.clone().into_bytes(),
            members,
            w,
        }
    };
    check_request(&req)?;
    with_client(conn, |c| async move { c.call(&req).await })?;
    print_done(conn, &key);
    Ok(Outcome::Ok)
}

/// Connects and runs one call; its error (a server's code and message) becomes the
/// command's.
fn with_client<T, F, Fut>(conn: &ConnArgs, call: F) -> anyhow::Result<T>
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    runtime()?.block_on(async { Ok(call(connect(conn).await?).await?) })
}

fn print_int(conn: &ConnArgs, key: &str, value: i64) {
    if conn.json {
        println!("{}", json!({ "key": key, "value": value }));
    } else {
        println!("{value}");
    }
}

/// A write that answers nothing: silent, or `{"key", "ok": true}` with `--json`.
fn print_done(conn: &ConnArgs, key: &str) {
    if conn.json {
        println!("{}", json!({ "key": key, "ok": true }));
    }
}
