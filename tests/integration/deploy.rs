//! Deployment as an operator meets it: the systemd units verify and score at most 2.0 in
//! `systemd-analyze security`, the node pings the systemd watchdog from its main loop (and
//! stops when that loop is wedged), and `deploy/local-cluster.sh` fails loudly.

use crate::harness::{free_port, free_port_block, NodeProc, BIN};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

// ---- systemd units -------------------------------------------------------------------

/// `systemd-analyze` when installed (scripts/test-all.sh installs it on Debian) and new
/// enough for `security --offline=yes` (systemd 250), else why not.
fn systemd_analyze() -> Result<PathBuf, String> {
    let out = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .map_err(|e| format!("systemd-analyze is not installed ({e})"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "systemd 252 (252.38-1~deb12u1)"
    let version: u32 = text
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("cannot read the systemd version from {text:?}"))?;
    if version < 250 {
        return Err(format!(
            "systemd {version} has no `security --offline` (needs 250)"
        ));
    }
    Ok(PathBuf::from("systemd-analyze"))
}

/// Copies a unit into `dir` under `name`, with `ExecStart` pointing at the built binary
/// (`verify` checks that the binary exists).
fn unit_copy(src: &str, dir: &Path, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo_path(src)).expect("reading the unit");
    assert!(
        text.contains("ExecStart=/usr/local/bin/troupe "),
        "{src}: ExecStart should run /usr/local/bin/troupe"
    );
    let text = text.replace(
        "ExecStart=/usr/local/bin/troupe ",
        &format!("ExecStart={BIN} "),
    );
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing the unit copy");
    path
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("running a command")
}

/// Parses `→ Overall exposure level for troupe@n1.service: 1.0 OK 🙂`.
fn exposure(stdout: &str) -> Option<f64> {
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))?;
    let (_, rest) = line.rsplit_once(": ")?;
    rest.split_whitespace().next()?.parse().ok()
}

#[test]
fn exposure_line_parses() {
    let out = "  NAME  DESCRIPTION\n\u{2192} Overall exposure level for troupe@n1.service: 1.2 OK \u{1f642}\n";
    assert_eq!(exposure(out), Some(1.2));
    assert_eq!(exposure("nothing"), None);
}

fn check_unit(analyze: &Path, src: &str, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_copy(src, dir.path(), name);

    let out = run(Command::new(analyze).arg("verify").arg(&unit));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify {src} ({}):\n{stderr}",
        out.status
    );

    let out = run(Command::new(analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let score = exposure(&stdout).unwrap_or_else(|| {
        panic!(
            "no exposure level from systemd-analyze security {src}:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    eprintln!("{src}: systemd-analyze security exposure {score}");
    assert!(score <= 2.0, "{src} scores {score} (> 2.0):\n{stdout}");
}

#[test]
fn systemd_units_verify_and_score_at_most_2() {
    let analyze = match systemd_analyze() {
        Ok(path) => path,
        Err(why) => {
            eprintln!("SKIPPED: {why} (scripts/test-all.sh installs it on Debian)");
            return;
        }
    };
    // A template is analysed as one of its instances.
    check_unit(
        &analyze,
        "deploy/systemd/troupe@.service",
        "troupe@n1.service",
    );
    check_unit(&analyze, "deploy/troupe.service", "troupe.service");
}

#[test]
fn template_unit_names_the_instance_paths() {
    let text = std::fs::read_to_string(repo_path("deploy/systemd/troupe@.service")).unwrap();
    for want in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "LimitNOFILE=",
        "StateDirectory=troupe/%i",
        "--config /etc/troupe/%i.toml",
        "--data-dir /var/lib/troupe/%i",
    ] {
        assert!(text.contains(want), "troupe@.service lacks {want:?}");
    }
}

// ---- watchdog ------------------------------------------------------------------------

/// What the node sent to `NOTIFY_SOCKET`, one datagram at a time.
struct NotifySocket {
    sock: UnixDatagram,
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("binding the notify socket");
        NotifySocket {
            sock,
            _dir: dir,
            path,
        }
    }

    /// The next datagram, or None when none arrives within `timeout`.
    fn recv(&self, timeout: Duration) -> Option<String> {
        self.sock.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 4096];
        match self.sock.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("receiving on the notify socket: {e}"),
        }
    }
}

/// How long the test waits for any one notification from a healthy node: a hang guard,
/// far above the ping interval, not a speed bound.
const HANG_GUARD: Duration = Duration::from_secs(30);

#[test]
fn watchdog_pings_from_the_main_loop_and_stop_when_it_is_wedged() {
    let notify = NotifySocket::bind();
    let dir = tempfile::tempdir().unwrap();
    let socket = notify.path.to_str().unwrap().to_string();
    // WatchdogSec=400ms: a ping every 200 ms. After 3 pings the test hook blocks the
    // node's main event loop (debug builds only).
    let env = [
        ("NOTIFY_SOCKET", socket.as_str()),
        ("WATCHDOG_USEC", "400000"),
        ("TROUPE_TEST_WEDGE_AFTER_PINGS", "3"),
    ];
    let node = NodeProc::new(&dir.path().join("d"), "wd", &env, &[]).started();

    let mut seen = Vec::new();
    let mut pings = 0;
    loop {
        let msg = notify.recv(HANG_GUARD).unwrap_or_else(|| {
            panic!(
                "no notification in {HANG_GUARD:?}; so far {seen:?}; log:\n{}",
                node.log_text()
            )
        });
        seen.push(msg.clone());
        if msg.lines().any(|l| l == "WATCHDOG=1") {
            assert!(
                seen.iter().any(|m| m.lines().any(|l| l == "READY=1")),
                "a watchdog ping before READY=1: {seen:?}"
            );
            pings += 1;
        }
        if msg
            .lines()
            .any(|l| l.starts_with("STATUS=") && l.contains("wedg"))
        {
            break;
        }
    }
    assert_eq!(pings, 3, "pings before the wedge: {seen:?}");

    // systemd would act after WatchdogSec (400 ms) without a ping; wait well past it.
    let silence = Duration::from_secs(2);
    if let Some(msg) = notify.recv(silence) {
        panic!(
            "the node kept notifying with its main loop wedged: {msg:?}; log:\n{}",
            node.log_text()
        );
    }
    // The node is wedged, not dead: it is the loop that stopped the pings.
    let mut node = node;
    let child = node.child.as_mut().expect("node running");
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the node exited instead of wedging; log:\n{}",
        node.log_text()
    );
}

#[test]
fn no_watchdog_pings_without_watchdog_usec() {
    let notify = NotifySocket::bind();
    let dir = tempfile::tempdir().unwrap();
    let socket = notify.path.to_str().unwrap().to_string();
    let mut node = NodeProc::new(
        &dir.path().join("d"),
        "nowd",
        &[("NOTIFY_SOCKET", socket.as_str())],
        &[],
    )
    .started();
    let first = notify.recv(HANG_GUARD).expect("READY=1");
    assert!(first.lines().any(|l| l == "READY=1"), "{first:?}");
    // SIGTERM: the next message is STOPPING=1, with no ping in between.
    node.signal(libc::SIGTERM);
    let next = notify.recv(HANG_GUARD).expect("STOPPING=1");
    assert!(next.lines().any(|l| l == "STOPPING=1"), "{next:?}");
    assert!(node.wait_exit(HANG_GUARD).success());
}

// ---- local-cluster.sh ----------------------------------------------------------------

/// Runs `deploy/local-cluster.sh` with a cluster directory and base port of its own.
fn local_cluster(dir: &Path, base: u16, bin: &str, args: &[&str]) -> (i32, String) {
    let out = run(Command::new("bash")
        .arg(repo_path("deploy/local-cluster.sh"))
        .args(args)
        .env("TROUPE_BIN", bin)
        .env("TROUPE_CLUSTER_DIR", dir)
        .env("TROUPE_BASE_PORT", base.to_string()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Whether `pid` is a running process (an exited one may linger as a zombie until its new
/// parent reaps it: the script that started it has exited).
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

/// Stops whatever a local-cluster test started, even when the test fails.
struct ClusterGuard<'a>(&'a Path, u16);

impl Drop for ClusterGuard<'_> {
    fn drop(&mut self) {
        local_cluster(self.0, self.1, BIN, &["stop"]);
    }
}

#[test]
fn local_cluster_start_without_the_binary_exits_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = local_cluster(
        dir.path(),
        free_port(),
        "/nonexistent/troupe",
        &["start", "1"],
    );
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("/nonexistent/troupe"),
        "names the binary: {out}"
    );
    assert!(
        !dir.path().join("node0.pid").exists(),
        "started nothing: {out}"
    );
}

#[test]
fn local_cluster_start_on_a_taken_port_exits_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let _guard = ClusterGuard(dir.path(), port);
    let (code, out) = local_cluster(dir.path(), port, BIN, &["start", "1"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains(&port.to_string()), "names the port: {out}");
}

#[test]
fn local_cluster_node_dying_at_start_exits_nonzero_with_its_log() {
    let dir = tempfile::tempdir().unwrap();
    // node0's data directory is a file: the node fails at start-up.
    std::fs::write(dir.path().join("node0"), b"not a directory").unwrap();
    let base = free_port_block(4);
    let _guard = ClusterGuard(dir.path(), base);
    let (code, out) = local_cluster(dir.path(), base, BIN, &["start", "1"]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("cannot create data directory"),
        "shows the log tail: {out}"
    );
}

#[test]
fn local_cluster_start_stop_and_logs_append() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_port_block(4);
    let guard = ClusterGuard(dir.path(), base);
    for round in 0..2 {
        let (code, out) = local_cluster(dir.path(), base, BIN, &["start", "1"]);
        assert_eq!(code, 0, "start round {round}: {out}");
        let pid: i32 = std::fs::read_to_string(dir.path().join("node0.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The node is serving when start returns.
        std::net::TcpStream::connect(("127.0.0.1", base)).expect("node0 client port");
        let (code, out) = local_cluster(dir.path(), base, BIN, &["stop"]);
        assert_eq!(code, 0, "stop round {round}: {out}");
        // stop returned only after the process exited.
        assert!(!running(pid), "node0 (pid {pid}) still running after stop");
    }
    drop(guard);
    let log = std::fs::read_to_string(dir.path().join("node0.log")).unwrap();
    assert_eq!(
        log.matches("serving clients on").count(),
        2,
        "both starts are in the log:\n{log}"
    );
}
