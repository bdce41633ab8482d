//! Test harness: real `troupe node` processes on loopback, each with its own temp data dir
//! and free ports. A [`NodeProc`] is SIGKILLed when dropped, so a failing test never leaves a
//! node behind.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_troupe");

/// Picks a free loopback port for a node to listen on, below Linux's ephemeral range
/// (32768-60999). A port from `bind(:0)` is an ephemeral one: released, it can be handed to
/// the next outgoing connection of any test before the node binds it ("address already in
/// use", seen in CI). Ports here come from a counter that starts at a place set by the
/// process id (so test binaries running at once start apart) and skips any port that
/// cannot be bound right now.
pub fn free_port() -> u16 {
    free_port_block(1)
}

/// The first of `len` consecutive free ports (see [`free_port`]), for scripts that put a
/// node's four listeners at base..base+3.
pub fn free_port_block(len: u32) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000; // up to 31,999
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(2_654_435_761) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let first = LOW + NEXT.fetch_add(len, Ordering::Relaxed) % SPAN;
        let ports = first..first + len;
        if ports.end <= LOW + SPAN
            && ports
                .clone()
                .all(|p| TcpListener::bind(("127.0.0.1", p as u16)).is_ok())
        {
            return first as u16;
        }
    }
    panic!("no {len} free loopback ports in {LOW}..{}", LOW + SPAN);
}

pub struct NodeProc {
    pub child: Option<Child>,
    pub client: String,
    pub admin: String,
    pub metrics: String,
    pub peer: String,
    pub data_dir: PathBuf,
    pub extra_env: Vec<(String, String)>,
    pub log: PathBuf,
    pub node_id: String,
    pub extra_args: Vec<String>,
    /// RLIMIT_FSIZE for the next (re)start, with SIGXFSZ ignored: the kernel then fails any
    /// write that would grow a file past it with EFBIG, a real I/O error for the node.
    pub file_size_limit: Option<u64>,
    /// Start with `--enable-fault-injection` (so `admin fault` works); on by default for
    /// tests, which cut nodes off with it.
    pub fault_injection: bool,
    /// Environment for [`NodeProc::cli`] runs (e.g. `TROUPE_TLS_CA` for a TLS node).
    pub cli_env: Vec<(String, String)>,
}

impl NodeProc {
    /// Starts a node with data in `data_dir` and waits until its client port answers.
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> NodeProc {
        let n = NodeProc::new(data_dir, "test-node", env, &[]);
        n.started()
    }

    /// A node with its own id and extra flags (e.g. `--seeds`), not started yet: its
    /// addresses are known, so others can name it as a seed before it runs.
    pub fn new(data_dir: &Path, node_id: &str, env: &[(&str, &str)], args: &[&str]) -> NodeProc {
        NodeProc {
            child: None,
            client: format!("127.0.0.1:{}", free_port()),
            admin: format!("127.0.0.1:{}", free_port()),
            metrics: format!("127.0.0.1:{}", free_port()),
            peer: format!("127.0.0.1:{}", free_port()),
            data_dir: data_dir.to_path_buf(),
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log: data_dir.with_extension("log"),
            node_id: node_id.to_string(),
            extra_args: args.iter().map(|a| a.to_string()).collect(),
            file_size_limit: None,
            fault_injection: true,
            cli_env: Vec::new(),
        }
    }

    /// Starts a node made by [`NodeProc::new`] and waits until it serves clients.
    pub fn started(mut self) -> NodeProc {
        self.restart();
        self
    }

    /// (Re)starts the process on the same ports and data dir.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "node already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("opening node log");
        let mut cmd = Command::new(BIN);
        cmd.args(["node", "--node-id", &self.node_id, "--data-dir"])
            .arg(&self.data_dir)
            .args(["--listen", &self.client, "--admin-listen", &self.admin])
            .args([
                "--metrics-listen",
                &self.metrics,
                "--peer-listen",
                &self.peer,
            ])
            .args(&self.extra_args)
            .args(self.fault_injection.then_some("--enable-fault-injection"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log.try_clone().expect("cloning log handle"));
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        if let Some(limit) = self.file_size_limit {
            use std::os::unix::process::CommandExt;
            let rlim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            // SAFETY: between fork and exec only async-signal-safe calls (setrlimit, signal)
            // run, on values computed before the fork.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &rlim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    Ok(())
                });
            }
        }
        self.child = Some(cmd.spawn().expect("spawning troupe node"));
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(&self.client).is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("node exited early with {status}; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "node did not listen on {} within 30 s; log:\n{}",
            self.client,
            self.log_text()
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("node running").id()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on a child pid we own; no memory is involved.
        unsafe {
            libc::kill(self.pid() as i32, sig);
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the process to exit by itself, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("node running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "node did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident set size of the node process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("reading /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc status")
    }

    /// Runs the troupe CLI against this node; returns (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let is_admin = matches!(args.first(), Some(&"admin"));
        let addr = if is_admin { &self.admin } else { &self.client };
        let out = Command::new(BIN)
            .args(args)
            .args(["--addr", addr])
            .envs(self.cli_env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("running troupe CLI");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A two-worker tokio runtime, for tests that drive concurrent load.
pub fn rt_mt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building a tokio runtime")
}

/// A current-thread tokio runtime for async client code in tests.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a tokio runtime")
}

/// Keys whose writes a node acknowledged, shared by load tasks and the test body, which
/// waits on the acknowledgements themselves (a condition variable), not on the clock.
#[derive(Default)]
pub struct AckLog {
    keys: std::sync::Mutex<Vec<String>>,
    grew: std::sync::Condvar,
}

/// How long a wait for acknowledgements may see none at all before the test gives up: a
/// hang guard for a broken build, not a speed bound (any progress restarts it).
const NO_PROGRESS: Duration = Duration::from_secs(60);

impl AckLog {
    pub fn push(&self, key: String) {
        self.keys.lock().unwrap().push(key);
        self.grew.notify_all();
    }

    pub fn len(&self) -> usize {
        self.keys.lock().unwrap().len()
    }

    pub fn keys(&self) -> Vec<String> {
        self.keys.lock().unwrap().clone()
    }

    /// Blocks until at least `n` writes were acknowledged in all. Panics (naming `what`)
    /// only if no acknowledgement at all arrives for a whole minute.
    pub fn wait_for(&self, n: usize, what: &str) {
        let mut keys = self.keys.lock().unwrap();
        while keys.len() < n {
            let before = keys.len();
            let (k, timeout) = self.grew.wait_timeout(keys, NO_PROGRESS).unwrap();
            keys = k;
            assert!(
                !(timeout.timed_out() && keys.len() == before),
                "{what}: no write acknowledged for {NO_PROGRESS:?} ({before} of {n} so far)"
            );
        }
    }
}

/// A small xorshift generator for tests: a failure prints its seed, and `TROUPE_TEST_SEED`
/// replays one.
pub struct Rng(pub u64);

impl Rng {
    /// Seeded from `TROUPE_TEST_SEED` when set, else from the clock; prints the seed.
    pub fn from_env(test: &str) -> Rng {
        let seed = std::env::var("TROUPE_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            })
            | 1;
        eprintln!("{test}: seed {seed} (replay with TROUPE_TEST_SEED={seed})");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
