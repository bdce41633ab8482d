//! `troupe check --local N`: N nodes of this very binary on loopback, in a temporary
//! directory, with short failure-detection timings so faults show within seconds. The
//! nemesis kills, restarts, pauses and resumes them by PID; every node is killed when the
//! cluster is dropped, also on an error or a panic.

use anyhow::Context as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct LocalNode {
    pub id: String,
    pub client: String,
    pub admin: String,
    peer: String,
    metrics: String,
    data_dir: PathBuf,
    seed: Option<String>,
    child: Option<Child>,
    log: PathBuf,
}

pub struct LocalCluster {
    pub nodes: Vec<LocalNode>,
    _dir: tempfile::TempDir,
}

fn free_addr() -> anyhow::Result<String> {
    let l = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.to_string())
}

/// Short timings: a dead node is declared within about two seconds.
const ENV: [(&str, &str); 6] = [
    ("TROUPE__MEMBERSHIP__PROBE_INTERVAL_MS", "200"),
    ("TROUPE__MEMBERSHIP__PROBE_TIMEOUT_MS", "100"),
    ("TROUPE__MEMBERSHIP__SUSPICION_MULT", "3"),
    ("TROUPE__MEMBERSHIP__RECONNECT_INTERVAL_MS", "1000"),
    ("TROUPE__CLUSTER__REQUEST_TIMEOUT", "2s"),
    ("TROUPE__CLUSTER__LAYOUT_GOSSIP_INTERVAL", "200ms"),
];

impl LocalNode {
    fn spawn(&mut self) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("finding this troupe binary")?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let mut cmd = Command::new(exe);
        cmd.args(["node", "--node-id", &self.id, "--data-dir"])
            .arg(&self.data_dir)
            .args(["--listen", &self.client, "--admin-listen", &self.admin])
            .args([
                "--peer-listen",
                &self.peer,
                "--metrics-listen",
                &self.metrics,
            ])
            .arg("--enable-fault-injection")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(s) = &self.seed {
            cmd.args(["--seeds", s]);
        }
        for (k, v) in ENV {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().context("starting a node")?);
        Ok(())
    }

    /// The end of its log if the process has exited.
    fn exited(&mut self) -> Option<String> {
        self.child.as_mut()?.try_wait().ok()??;
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(3).collect();
        Some(tail.into_iter().rev().collect::<Vec<_>>().join(" | "))
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }

    pub fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: sending a signal to a child process we own.
            unsafe { libc::kill(pid, sig) };
        }
    }
}

impl LocalCluster {
    pub fn start(n: usize) -> anyhow::Result<LocalCluster> {
        let dir = tempfile::Builder::new()
            .prefix("troupe-check-")
            .tempdir()
            .context("creating a temporary directory")?;
        let mut nodes: Vec<LocalNode> = Vec::new();
        for i in 0..n {
            let id = format!("n{}", i + 1);
            let peer = free_addr()?;
            let seed = nodes.first().map(|f: &LocalNode| f.peer.clone());
            let mut node = LocalNode {
                client: free_addr()?,
                admin: free_addr()?,
                metrics: free_addr()?,
                peer,
                data_dir: dir.path().join(&id),
                log: dir.path().join(format!("{id}.log")),
                id,
                seed,
                child: None,
            };
            node.spawn()?;
            nodes.push(node);
        }
        Ok(LocalCluster { nodes, _dir: dir })
    }

    /// Waits until every node answers on its client port, up to `limit`.
    pub async fn wait_listening(&mut self, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        for n in &mut self.nodes {
            loop {
                if tokio::net::TcpStream::connect(&n.client).await.is_ok() {
                    break;
                }
                if let Some(log) = n.exited() {
                    anyhow::bail!("node {} exited at start-up: {log}", n.id);
                }
                if start.elapsed() > limit {
                    anyhow::bail!(
                        "node {} did not listen on {} within {limit:?}",
                        n.id,
                        n.client
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.signal(libc::SIGCONT);
            n.kill();
        }
    }
}
