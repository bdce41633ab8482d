//! TLS (`[tls]`, issue 15): a three-node cluster whose peers, clients and admin calls all
//! speak TLS; a plain-TCP client on a TLS port is closed, not left hanging; a peer whose
//! certificate comes from another CA is refused and logged; SIGHUP reloads the certificate
//! while an established connection keeps working. Certificates are made here at run time
//! (rcgen); no key is ever committed.

use crate::cluster::{start, status_of, wait_for};
use crate::harness::{rt, NodeProc};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;
use troupe_protocol::tls::{ClientTls, Identity};
use troupe_protocol::{Client, ClientError};

/// A test CA that issues certificates for 127.0.0.1 and localhost.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    /// The CA certificate's PEM file.
    pem: PathBuf,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        let pem = dir.join(format!("{name}.pem"));
        std::fs::write(&pem, cert.pem()).unwrap();
        Ca { cert, key, pem }
    }

    /// Writes a certificate (no extended key usage: good for server and client) and its
    /// key to `<dir>/<name>.crt` and `.key`.
    fn issue(&self, dir: &Path, name: &str) -> Identity {
        let mut p =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        let id = Identity {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&id.cert, cert.pem()).unwrap();
        std::fs::write(&id.key, key.serialize_pem()).unwrap();
        id
    }
}

/// The node environment turning TLS on with `id`, trusting `ca`.
fn tls_env(ca: &Path, id: &Identity) -> Vec<(&'static str, String)> {
    vec![
        ("TROUPE__TLS__CERT", id.cert.display().to_string()),
        ("TROUPE__TLS__KEY", id.key.display().to_string()),
        ("TROUPE__TLS__CA", ca.display().to_string()),
        ("TROUPE__CLUSTER__SECRET", "tls test secret".to_string()),
    ]
}

fn with_cli_ca(mut n: NodeProc, ca: &Path) -> NodeProc {
    n.cli_env
        .push(("TROUPE_TLS_CA".into(), ca.display().to_string()));
    n
}

/// Connects on `rt`, which must outlive the client (its tasks run there).
fn connect(
    rt: &tokio::runtime::Runtime,
    addr: &str,
    tls: Option<&ClientTls>,
) -> Result<Client, ClientError> {
    rt.block_on(Client::connect_tls(
        addr,
        "tls-test",
        None,
        Some(Duration::from_secs(10)),
        tls,
    ))
}

#[test]
fn three_nodes_over_tls_serve_a_client_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let ids: Vec<Identity> = ["a", "b", "c"]
        .iter()
        .map(|n| ca.issue(dir.path(), n))
        .collect();
    let a = with_cli_ca(
        start(dir.path(), "a", None, &tls_env(&ca.pem, &ids[0])),
        &ca.pem,
    );
    let b = with_cli_ca(
        start(dir.path(), "b", Some(&a.peer), &tls_env(&ca.pem, &ids[1])),
        &ca.pem,
    );
    let c = with_cli_ca(
        start(dir.path(), "c", Some(&a.peer), &tls_env(&ca.pem, &ids[2])),
        &ca.pem,
    );
    let nodes = [&a, &b, &c];
    wait_for(
        "every node sees the other two alive (peers over TLS, admin CLI over TLS)",
        Duration::from_secs(30),
        || {
            nodes.iter().all(|n| {
                ["a", "b", "c"]
                    .iter()
                    .all(|id| status_of(n, id).as_deref() == Some("alive"))
            })
        },
    );
    crate::cluster::agreed_ring(&nodes, 3);

    let tls = ClientTls::new(&ca.pem, None).unwrap();
    let rt = rt();
    let client = rt
        .block_on(Client::connect_tls(
            &a.client,
            "tls-test",
            None,
            Some(Duration::from_secs(10)),
            Some(&tls),
        ))
        .expect("a TLS client connects");
    rt.block_on(client.put(b"k", b"over tls", None)).unwrap();
    // Read from another node with R=all: every replica got the write over TLS peer links.
    let other = rt
        .block_on(Client::connect_tls(
            &c.client,
            "tls-test",
            None,
            Some(Duration::from_secs(10)),
            Some(&tls),
        ))
        .unwrap();
    let got = rt
        .block_on(other.get_with(b"k", Some(troupe_protocol::Quorum::All)))
        .unwrap();
    assert_eq!(got.values, vec![b"over tls".to_vec()]);

    // The CLI speaks TLS with TROUPE_TLS_CA (set by with_cli_ca) ...
    let (code, out, err) = b.cli(&["get", "k"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "over tls");
    // ... and a plain one is refused.
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["get", "k", "--addr", &b.client, "--timeout", "5"])
        .output()
        .unwrap();
    assert_ne!(
        out.status.code(),
        Some(0),
        "a plain CLI on a TLS port fails"
    );
}

#[test]
fn a_plain_client_on_a_tls_port_is_closed_not_left_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let id = ca.issue(dir.path(), "n");
    let env = tls_env(&ca.pem, &id);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let node = NodeProc::start(&dir.path().join("n"), &env);

    // A plain client says hello at once: the node sees no TLS record and closes.
    let rt = rt();
    let plain = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(5),
            Client::connect_with(
                node.client.as_str(),
                "plain",
                None,
                Some(Duration::from_secs(30)),
            ),
        )
        .await
    });
    match plain {
        Ok(Err(ClientError::Closed | ClientError::Io(_))) => {}
        Ok(other) => panic!("expected a closed connection, got {:?}", other.map(|_| ())),
        Err(_) => panic!("a plain client on the TLS port was left hanging"),
    }
    // A socket that says nothing is closed after tls.handshake_timeout (1 s by default);
    // the read's own limit is only there so a hang fails instead of blocking the suite.
    for port in [&node.client, &node.admin, &node.peer] {
        let mut s = std::net::TcpStream::connect(port).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 16];
        match s.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("{port}: expected the node to close a silent socket, got {other:?}"),
        }
    }
    // TLS clients still work.
    let tls = ClientTls::new(&ca.pem, None).unwrap();
    let c = connect(&rt, &node.client, Some(&tls)).unwrap();
    rt.block_on(c.put(b"k", b"v", None)).unwrap();
    let admin = rt
        .block_on(Client::connect_raw_tls(
            &node.admin,
            Some(Duration::from_secs(10)),
            Some(&tls),
        ))
        .unwrap();
    rt.block_on(admin.admin("status", vec![])).unwrap();

    // The console and the bench speak TLS with --tls-ca.
    let console = run_with_stdin(
        &[
            "console",
            "--admin",
            &node.admin,
            "--tls-ca",
            &ca.pem.display().to_string(),
        ],
        dir.path(),
        b"status\nquit\n",
    );
    assert!(console.contains("node_id:"), "{console}");
    let bench = std::process::Command::new(crate::harness::BIN)
        .args([
            "bench",
            "--addr",
            &node.client,
            "--ops",
            "200",
            "--concurrency",
            "4",
        ])
        .args(["--keys", "50", "--json", "--tls-ca"])
        .arg(&ca.pem)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&bench.stdout);
    assert!(
        bench.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&bench.stderr)
    );
    assert!(text.contains("\"errors\":0"), "{text}");
}

/// Runs the CLI with `input` on stdin (HOME at `home`); returns its stdout.
fn run_with_stdin(args: &[&str], home: &Path, input: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new(crate::harness::BIN)
        .args(args)
        .env("HOME", home)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_peer_with_a_certificate_from_another_ca_is_refused_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let other_ca = Ca::new(dir.path(), "other-ca");
    let a = start(
        dir.path(),
        "a",
        None,
        &tls_env(&ca.pem, &ca.issue(dir.path(), "a")),
    );
    // Same cluster secret, and mallory trusts a's CA too (so its side of the handshake
    // goes through): only a's check of mallory's certificate can refuse it.
    let m = other_ca.issue(dir.path(), "mallory");
    let both = dir.path().join("both.pem");
    let pems = [&ca.pem, &other_ca.pem].map(|p| std::fs::read_to_string(p).unwrap());
    std::fs::write(&both, pems.concat()).unwrap();
    let mallory = start(dir.path(), "m", Some(&a.peer), &tls_env(&both, &m));
    wait_for("a refuses mallory", Duration::from_secs(15), || {
        a.log_text().contains("refused peer connection")
    });
    let log = a.log_text();
    assert!(log.contains("TLS handshake failed"), "{log}");
    let a = with_cli_ca(a, &ca.pem);
    assert_eq!(status_of(&a, "m"), None, "a must not admit mallory");
    drop(mallory);
}

#[test]
fn sighup_reloads_the_certificate_and_keeps_existing_connections() {
    let dir = tempfile::tempdir().unwrap();
    let ca1 = Ca::new(dir.path(), "ca1");
    let ca2 = Ca::new(dir.path(), "ca2");
    let id = ca1.issue(dir.path(), "n");
    let env = tls_env(&ca1.pem, &id);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let node = NodeProc::start(&dir.path().join("n"), &env);
    let rt = rt();
    let trust1 = ClientTls::new(&ca1.pem, None).unwrap();
    let trust2 = ClientTls::new(&ca2.pem, None).unwrap();
    let old = connect(&rt, &node.client, Some(&trust1)).expect("ca1 client before the reload");
    rt.block_on(old.put(b"k", b"v1", None)).unwrap();
    assert!(
        connect(&rt, &node.client, Some(&trust2)).is_err(),
        "before the reload the node's certificate is from ca1"
    );

    // Renew: a certificate from ca2 in the same files, then SIGHUP.
    let renewed = ca2.issue(dir.path(), "renewed");
    std::fs::copy(&renewed.cert, &id.cert).unwrap();
    std::fs::copy(&renewed.key, &id.key).unwrap();
    node.signal(libc::SIGHUP);
    wait_for("the node reloads", Duration::from_secs(10), || {
        node.log_text().contains("TLS certificates reloaded")
    });

    // The established connection keeps its session.
    rt.block_on(old.put(b"k2", b"v2", None))
        .expect("the existing connection survives the reload");
    assert_eq!(
        rt.block_on(old.get(b"k")).unwrap().values,
        vec![b"v1".to_vec()]
    );
    // New handshakes get the new certificate.
    let new = connect(&rt, &node.client, Some(&trust2)).expect("ca2 client after the reload");
    assert_eq!(
        rt.block_on(new.get(b"k2")).unwrap().values,
        vec![b"v2".to_vec()]
    );
    assert!(
        connect(&rt, &node.client, Some(&trust1)).is_err(),
        "after the reload the node's certificate is from ca2"
    );

    // A broken file is refused and the certificate in force stays.
    std::fs::write(&id.key, "not a key").unwrap();
    node.signal(libc::SIGHUP);
    wait_for(
        "the node refuses the broken reload",
        Duration::from_secs(10),
        || node.log_text().contains("TLS certificates not reloaded"),
    );
    connect(&rt, &node.client, Some(&trust2)).expect("the renewed certificate stays in force");
}

#[test]
fn require_client_cert_admits_only_clients_with_a_certificate_from_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let other_ca = Ca::new(dir.path(), "other-ca");
    let id = ca.issue(dir.path(), "n");
    let mut env = tls_env(&ca.pem, &id);
    env.push(("TROUPE__TLS__REQUIRE_CLIENT_CERT", "true".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let node = NodeProc::start(&dir.path().join("n"), &env);
    let rt = rt();
    let ping =
        |tls: &ClientTls| connect(&rt, &node.client, Some(tls)).and_then(|c| rt.block_on(c.ping()));

    let anonymous = ClientTls::new(&ca.pem, None).unwrap();
    assert!(ping(&anonymous).is_err(), "no client certificate: refused");
    let stranger = other_ca.issue(dir.path(), "stranger");
    let stranger = ClientTls::new(&ca.pem, Some(&stranger)).unwrap();
    assert!(
        ping(&stranger).is_err(),
        "a certificate from another CA: refused"
    );
    let member = ca.issue(dir.path(), "client");
    let trusted = ClientTls::new(&ca.pem, Some(&member)).unwrap();
    ping(&trusted).expect("a certificate from the CA is let in");

    // The CLI presents one with --tls-cert and --tls-key.
    let (cert, key) = (
        member.cert.display().to_string(),
        member.key.display().to_string(),
    );
    let node = with_cli_ca(node, &ca.pem);
    let (code, _, err) = node.cli(&["put", "k", "v", "--tls-cert", &cert, "--tls-key", &key]);
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = node.cli(&["get", "k"]);
    assert_ne!(code, 0, "the CLI without a certificate is refused");
    let (code, _, err) = node.cli(&["admin", "status", "--tls-cert", &cert, "--tls-key", &key]);
    assert_eq!(code, 0, "admin over mutual TLS: {err}");
}

/// `systemctl reload` sends SIGHUP whether TLS is on or not: it must never end the node.
#[test]
fn sighup_without_tls_leaves_the_node_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProc::start(&dir.path().join("n"), &[]);
    node.signal(libc::SIGHUP);
    wait_for("the node handles SIGHUP", Duration::from_secs(10), || {
        node.log_text().contains("SIGHUP: nothing to reload")
            || node
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                .is_some()
    });
    let rt = rt();
    let c = connect(&rt, &node.client, None).expect("the node still serves");
    rt.block_on(c.put(b"k", b"v", None)).unwrap();
}
