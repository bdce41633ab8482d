//! `troupe check`: runs a workload against a live cluster while a nemesis injects faults,
//! records the history, reads everything back once healed, and checks it (`verdict.rs`).
//!
//! Layout: [`history`] (the recorded operations and faults, saved as JSON), [`verdict`] (the
//! pure checks), [`run`] (sessions, nemesis, read-back), [`local`] (`--local N`: nodes of
//! this binary on loopback), [`plot`] (latency over time with the fault windows shaded).
//!
//! Exit codes: 0 no violation, 4 a violation was found, 2 the check could not run.

pub mod history;
mod local;
mod plot;
mod run;
pub mod verdict;

use anyhow::Context as _;
use history::{History, Workload};
use run::{Fault, Plan, Target};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// What the sessions do.
    #[arg(long, value_enum, default_value = "set")]
    pub workload: Workload,
    /// Start this many nodes of this binary on loopback (kills and pauses need it).
    #[arg(long, conflicts_with = "addr")]
    pub local: Option<usize>,
    /// Client addresses of a running cluster (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub addr: Vec<String>,
    /// Admin addresses of that cluster, in the same order (partitions need them).
    #[arg(long, value_delimiter = ',')]
    pub admin: Vec<String>,
    /// Seed of the workload and of the fault schedule.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 6)]
    pub sessions: u32,
    #[arg(long, default_value_t = 4)]
    pub keys: u32,
    /// How long the workload runs ("20s").
    #[arg(long, default_value = "20s")]
    pub duration: String,
    /// Faults to draw from (comma-separated: kill, pause, partition, split, oneway); none for
    /// a calm run.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub faults: Vec<Fault>,
    /// Time between faults.
    #[arg(long, default_value = "3s")]
    pub fault_every: String,
    /// How long each fault lasts.
    #[arg(long, default_value = "2s")]
    pub fault_for: String,
    /// Where to write history.json and latency.svg (default: ./troupe-check-SEED-WORKLOAD).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Check a saved history instead of running.
    #[arg(long)]
    pub replay: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// Runs the command; returns the exit code.
pub fn main(a: CheckArgs) -> anyhow::Result<u8> {
    let history = match &a.replay {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str::<History>(&text)
                .with_context(|| format!("{} is not a troupe check history", path.display()))?
        }
        None => {
            let history = run_live(&a)?;
            let out = a.out.clone().unwrap_or_else(|| {
                PathBuf::from(format!(
                    "troupe-check-{}-{}",
                    a.seed,
                    format!("{:?}", a.workload).to_lowercase()
                ))
            });
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            std::fs::write(out.join("history.json"), serde_json::to_vec(&history)?)?;
            std::fs::write(out.join("latency.svg"), plot::svg(&history))?;
            if !a.json {
                println!(
                    "history: {} (replay with `troupe check --replay {}`), plot: {}",
                    out.join("history.json").display(),
                    out.join("history.json").display(),
                    out.join("latency.svg").display()
                );
            }
            history
        }
    };
    let v = verdict::check(&history);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", summary(&history, &v));
    }
    Ok(if v.ok() { 0 } else { 4 })
}

fn run_live(a: &CheckArgs) -> anyhow::Result<History> {
    let plan = Plan {
        progress: !a.json,
        workload: a.workload,
        seed: a.seed,
        sessions: a.sessions.max(1),
        keys: a.keys.max(1),
        duration: crate::config::parse_duration(&a.duration)?,
        faults: a.faults.clone(),
        fault_every: crate::config::parse_duration(&a.fault_every)?,
        fault_for: crate::config::parse_duration(&a.fault_for)?,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let target = match a.local {
            Some(n) => {
                // Free ports are found by binding and releasing them, so another process
                // can take one before a node binds it: start afresh, up to three times.
                let mut attempt = 0;
                let cluster = loop {
                    attempt += 1;
                    let mut c = local::LocalCluster::start(n.max(1))?;
                    match c.wait_listening(Duration::from_secs(30)).await {
                        Ok(()) => break c,
                        Err(e) if attempt >= 3 => return Err(e),
                        Err(e) => eprintln!("{e}; starting the nodes again"),
                    }
                };
                let t = Target {
                    clients: cluster.nodes.iter().map(|n| n.client.clone()).collect(),
                    admins: cluster.nodes.iter().map(|n| n.admin.clone()).collect(),
                    names: cluster.nodes.iter().map(|n| n.id.clone()).collect(),
                    local: Some(cluster),
                };
                wait_ring(&t.admins, n).await?;
                t
            }
            None => {
                anyhow::ensure!(
                    !a.addr.is_empty(),
                    "pass --local N to start nodes, or --addr with a running cluster's client addresses"
                );
                let needs_admin = plan.faults.contains(&Fault::Partition)
                    || plan.faults.contains(&Fault::Oneway);
                anyhow::ensure!(
                    !needs_admin || a.admin.len() == a.addr.len(),
                    "partitions need --admin with each node's admin address, in --addr's order"
                );
                anyhow::ensure!(
                    !plan
                        .faults
                        .iter()
                        .any(|f| matches!(f, Fault::Kill | Fault::Pause | Fault::Split)),
                    "kill, pause and split need --local (this process must own the nodes and know their ids)"
                );
                Target {
                    clients: a.addr.clone(),
                    admins: a.admin.clone(),
                    names: a.addr.clone(),
                    local: None,
                }
            }
        };
        run::run(&plan, target).await
    })
}

/// Waits until every node holds one ring layout of `n` members.
async fn wait_ring(admins: &[String], n: usize) -> anyhow::Result<()> {
    let limit = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut digests = Vec::new();
        for a in admins {
            let c =
                crate::admin_cli::connect(a, Duration::from_secs(2), Duration::from_secs(5)).await;
            let ring = match c {
                Ok(c) => crate::admin_cli::call(&c, "ring", vec![]).await.ok(),
                Err(_) => None,
            };
            digests.push(
                ring.filter(|r| r["members"].as_array().map(Vec::len) == Some(n))
                    .map(|r| r["digest"].clone()),
            );
        }
        if digests.iter().all(|d| d.is_some() && *d == digests[0]) {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < limit,
            "the {n} nodes did not agree on a ring layout within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn summary(h: &History, v: &verdict::Verdict) -> String {
    let list = |xs: &[String]| {
        if xs.is_empty() {
            "0".to_string()
        } else {
            format!(
                "{}: {}",
                xs.len(),
                xs.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            )
        }
    };
    let mut s = String::new();
    s.push_str(&format!(
        "workload {:?}, seed {}, {} node(s), {} fault(s)\n",
        h.workload,
        h.seed,
        h.nodes.len(),
        h.faults.len()
    ));
    s.push_str(&format!(
        "ops              ok {} / fail {} / unknown {}\n",
        v.ops_ok, v.ops_fail, v.ops_unknown
    ));
    s.push_str(&format!("lost             {}\n", list(&v.lost)));
    s.push_str(&format!("resurrected      {}\n", list(&v.resurrected)));
    s.push_str(&format!("unexpected       {}\n", list(&v.unexpected)));
    s.push_str(&format!(
        "max siblings     {} ({})\n",
        v.max_siblings,
        list(&v.sibling_violations)
    ));
    s.push_str(&format!(
        "counters         {}\n",
        list(&v.counter_violations)
    ));
    s.push_str(&format!(
        "session          {}\n",
        list(&v.session_violations)
    ));
    s.push_str(&format!(
        "converged        {}\n",
        v.convergence_ms.map_or(
            "no (read-backs disagreed for 60 s)".to_string(),
            |ms| format!("{ms:.0} ms after the last heal")
        )
    ));
    s.push_str(if v.ok() {
        "OK: no violation\n"
    } else {
        "VIOLATIONS found\n"
    });
    s
}
