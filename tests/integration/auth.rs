//! Client tokens (`auth.client_tokens`): a hello without a token or with a wrong one gets
//! `unauthorized` and the connection is closed; either of two configured tokens is let in
//! (rotation); the CLI takes `--token`; the refusal is logged with the client's address and
//! never the token; `config print` redacts the tokens.

use crate::harness::{rt, NodeProc};
use std::time::Duration;
use troupe_protocol::{Client, ClientError, ErrorCode};

#[test]
fn client_tokens_are_required_and_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(
        dir.path(),
        &[("TROUPE__AUTH__CLIENT_TOKENS", "alpha-secret,beta-secret")],
    );
    let rt = rt();
    let connect = |token: Option<&str>| {
        rt.block_on(Client::connect_with(
            node.client.as_str(),
            "auth-test",
            token.map(String::from),
            Some(Duration::from_secs(5)),
        ))
    };
    for bad in [None, Some("gamma"), Some("alpha-secre")] {
        match connect(bad) {
            Err(ClientError::Server(e)) => {
                assert_eq!(e.code, ErrorCode::Unauthorized, "{bad:?}: {}", e.msg)
            }
            other => panic!(
                "{bad:?}: expected unauthorized, got {:?}",
                other.map(|_| ())
            ),
        }
    }
    // The connection is closed after the refusal: a second request on it gets nothing.
    let raw = rt
        .block_on(Client::connect_raw(
            node.client.as_str(),
            Some(Duration::from_secs(5)),
        ))
        .unwrap();
    let hello = troupe_protocol::Request::Hello {
        version: troupe_protocol::PROTOCOL_VERSION,
        client: "raw".into(),
        token: None,
    };
    let first = rt.block_on(raw.call(&hello));
    assert!(matches!(first, Err(ClientError::Server(ref e)) if e.code == ErrorCode::Unauthorized));
    let second = rt.block_on(raw.call(&troupe_protocol::Request::Ping));
    assert!(
        matches!(second, Err(ClientError::Closed | ClientError::Io(_))),
        "the node closed the connection: {second:?}"
    );

    for good in ["alpha-secret", "beta-secret"] {
        let c = connect(Some(good)).expect("a configured token is let in");
        rt.block_on(c.put(good.as_bytes(), b"v", None)).unwrap();
    }
    let (code, _, err) = node.cli(&["get", "alpha-secret"]);
    assert_eq!(code, 2);
    assert!(err.contains("pass --token"), "{err}");
    let (code, out, err) = node.cli(&["get", "alpha-secret", "--token", "beta-secret"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "v");

    let log = node.log_text();
    assert!(
        log.contains("sent hello with no token") && log.contains("sent hello with a wrong token"),
        "{log}"
    );
    assert!(
        !log.contains("gamma") && !log.contains("alpha-secret"),
        "tokens never logged"
    );

    let printed = std::process::Command::new(crate::harness::BIN)
        .args(["config", "print"])
        .env("TROUPE__AUTH__CLIENT_TOKENS", "alpha-secret,beta-secret")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(
        printed.contains("<redacted>") && !printed.contains("alpha-secret"),
        "{printed}"
    );
}

fn http_get(addr: &str, auth: Option<&str>) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let header = auth.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n{header}\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.lines().next().unwrap_or_default().to_string()
}

/// `auth.admin_token`: admin commands and /metrics need it (the CLI's `--token`, a bearer
/// token), /health does not; and a node whose admin or metrics port listens beyond loopback
/// without one refuses to start, saying what to set.
#[test]
fn the_admin_token_guards_the_admin_and_metrics_ports() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), &[("TROUPE__AUTH__ADMIN_TOKEN", "adm-token")]);
    let (code, _, err) = node.cli(&["admin", "status"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("admin token") && err.contains("--token"),
        "{err}"
    );
    let (code, out, err) = node.cli(&["admin", "status", "--token", "adm-token", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("node_id") || out.contains("node"), "{out}");
    let (code, _, _) = node.cli(&["admin", "status", "--token", "wrong"]);
    assert_eq!(code, 2);
    assert!(http_get(&node.metrics, None).contains("401"));
    assert!(http_get(&node.metrics, Some("wrong")).contains("401"));
    assert!(http_get(&node.metrics, Some("adm-token")).contains("200"));
    assert!(
        !node.log_text().contains("adm-token"),
        "the token is never logged"
    );

    // Beyond loopback without a token: refused at start, naming the setting.
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["node", "--node-id", "open", "--data-dir"])
        .arg(dir.path().join("open"))
        .args([
            "--listen",
            &format!("127.0.0.1:{}", crate::harness::free_port()),
        ])
        .args([
            "--peer-listen",
            &format!("127.0.0.1:{}", crate::harness::free_port()),
        ])
        .args([
            "--metrics-listen",
            &format!("127.0.0.1:{}", crate::harness::free_port()),
        ])
        .args([
            "--admin-listen",
            &format!("0.0.0.0:{}", crate::harness::free_port()),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("auth.admin_token") && err.contains("net.admin_listen"),
        "{err}"
    );
}
