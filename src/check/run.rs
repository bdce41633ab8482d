//! Running a check: sessions drive the workload through the nodes while the nemesis injects
//! faults on a seeded schedule; then everything is healed and every key is read back with
//! `r=all` through every node until they agree. Produces the [`History`].

use super::history::{hex, FaultEvent, FinalRead, History, Op, OpKind, Outcome, Workload};
use super::local::LocalCluster;
use crate::admin_cli;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use troupe_protocol::message::ReplyValue;
use troupe_protocol::{Client, ClientError, ErrorCode, Quorum, Request};

/// Which faults the nemesis may inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// SIGKILL a node, restart it after the fault's duration.
    Kill,
    /// SIGSTOP a node, SIGCONT it after the fault's duration.
    Pause,
    /// Cut one node off from all others (`admin fault drop all`), heal after.
    Partition,
    /// Split the cluster into a minority and a majority (each side drops the other's ids).
    Split,
    /// One node stops hearing the others, while they still hear it (`drop all in`).
    Oneway,
}

pub struct Plan {
    /// Show a progress bar on stderr (not with `--json`).
    pub progress: bool,
    pub workload: Workload,
    pub seed: u64,
    pub sessions: u32,
    pub keys: u32,
    pub duration: Duration,
    pub faults: Vec<Fault>,
    pub fault_every: Duration,
    pub fault_for: Duration,
}

/// Where the nodes are and how to hurt them.
pub struct Target {
    pub clients: Vec<String>,
    pub admins: Vec<String>,
    pub names: Vec<String>,
    pub local: Option<LocalCluster>,
}

struct Recorder {
    start: Instant,
    ops: Mutex<Vec<Op>>,
}

impl Recorder {
    fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn push(&self, op: Op) -> usize {
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        ops.push(op);
        ops.len() - 1
    }
}

fn outcome(e: &ClientError) -> Outcome {
    match e {
        ClientError::Server(b) => match b.code {
            ErrorCode::Timeout => Outcome::Unknown,
            _ => Outcome::Fail,
        },
        // The connection died with the request in it.
        ClientError::Closed | ClientError::Timeout(_) | ClientError::Io(_) => Outcome::Unknown,
        ClientError::Protocol(_) => Outcome::Unknown,
    }
}

/// One session: its own connection (reconnecting to the next node when it drops).
struct Session {
    id: u32,
    rng: SmallRng,
    clients: Vec<String>,
    at: usize,
    client: Option<Client>,
    n: u64,
    /// The last operation was refused outright (the loop then backs off a little).
    refused: bool,
}

impl Session {
    async fn client(&mut self) -> Option<&Client> {
        if self.client.is_none() {
            for _ in 0..self.clients.len() {
                let addr = self.clients[self.at % self.clients.len()].clone();
                let connecting = Client::connect(addr.as_str(), "check");
                match tokio::time::timeout(Duration::from_secs(2), connecting).await {
                    Ok(Ok(c)) => {
                        self.client = Some(c);
                        break;
                    }
                    _ => self.at += 1,
                }
            }
        }
        self.client.as_ref()
    }

    fn node(&self) -> String {
        self.clients[self.at % self.clients.len()].clone()
    }

    /// Sends `req`, records it, returns its index and the reply.
    async fn call(
        &mut self,
        rec: &Recorder,
        mut op: Op,
        req: Request,
    ) -> (usize, Option<troupe_protocol::Reply>) {
        op.invoke_us = rec.now();
        op.node = self.node();
        if self.client().await.is_none() {
            op.complete_us = rec.now();
            op.outcome = Outcome::Fail;
            op.error = Some("no node reachable".into());
            self.refused = true;
            return (rec.push(op), None);
        }
        op.node = self.node();
        let c = self.client.as_ref().expect("connected just above");
        let res = tokio::time::timeout(Duration::from_secs(10), c.call(&req)).await;
        op.complete_us = rec.now();
        let reply = match res {
            Ok(Ok(r)) => {
                op.outcome = Outcome::Ok;
                Some(r)
            }
            Ok(Err(e)) => {
                op.outcome = outcome(&e);
                op.error = Some(e.to_string());
                if !matches!(e, ClientError::Server(_)) {
                    self.client = None;
                    self.at += 1;
                }
                None
            }
            Err(_) => {
                op.outcome = Outcome::Unknown;
                op.error = Some("no answer in 10 s".into());
                self.client = None;
                self.at += 1;
                None
            }
        };
        if let Some(r) = &reply {
            op.context_returned = r.context.as_ref().map(|c| hex(c));
            if let Some(vs) = &r.values {
                op.values_returned = vs
                    .iter()
                    .map(|v| String::from_utf8_lossy(v).into())
                    .collect();
            } else if op.kind == OpKind::Put {
                op.values_returned = op.value.iter().cloned().collect();
            }
        }
        self.refused = op.outcome == Outcome::Fail;
        (rec.push(op), reply)
    }

    fn blank(&self, kind: OpKind, key: String) -> Op {
        Op {
            session: self.id,
            kind,
            key,
            value: None,
            by: None,
            context_sent: None,
            context_from: None,
            context_returned: None,
            values_returned: Vec::new(),
            node: String::new(),
            invoke_us: 0,
            complete_us: 0,
            outcome: Outcome::Fail,
            error: None,
        }
    }

    async fn step(&mut self, rec: &Recorder, workload: Workload, keys: u32) {
        let key = format!("k{}", self.rng.random_range(0..keys));
        self.n += 1;
        let value = format!("s{}-{}", self.id, self.n);
        match workload {
            Workload::Set => {
                let mut op = self.blank(OpKind::Sadd, key.clone());
                op.value = Some(value.clone());
                let req = Request::Sadd {
                    key: key.into_bytes(),
                    members: vec![value.into_bytes()],
                    w: None,
                };
                self.call(rec, op, req).await;
            }
            Workload::Counter => {
                let mut op = self.blank(OpKind::Incr, key.clone());
                op.by = Some(1);
                let req = Request::Incr {
                    key: key.into_bytes(),
                    by: 1,
                    w: None,
                };
                self.call(rec, op, req).await;
            }
            Workload::Register | Workload::Session => {
                // Half the writes read first and pass the read's context; the rest are blind.
                let mut from = None;
                let mut context = None;
                if self.rng.random_bool(0.5) {
                    let op = self.blank(OpKind::Get, key.clone());
                    let req = Request::Get {
                        key: key.clone().into_bytes(),
                        r: None,
                        after: None,
                    };
                    let (i, reply) = self.call(rec, op, req).await;
                    if let Some(r) = reply {
                        from = Some(i);
                        context = r.context.map(|c| c.into_vec());
                    }
                }
                let mut op = self.blank(OpKind::Put, key.clone());
                op.value = Some(value.clone());
                op.context_from = from;
                op.context_sent = context.as_deref().map(hex);
                let req = Request::Put {
                    key: key.clone().into_bytes(),
                    value: value.into_bytes(),
                    context,
                    w: None,
                };
                let (_, reply) = self.call(rec, op, req).await;
                if workload == Workload::Session {
                    // Read the write back with `after`, through the next node.
                    if let Some(ctx) = reply.and_then(|r| r.context).map(|c| c.into_vec()) {
                        self.client = None;
                        self.at += 1;
                        let mut op = self.blank(OpKind::Get, key.clone());
                        op.context_sent = Some(hex(&ctx));
                        let req = Request::Get {
                            key: key.into_bytes(),
                            r: None,
                            after: Some(ctx),
                        };
                        self.call(rec, op, req).await;
                    }
                }
            }
        }
    }
}

async fn admin(addr: &str, command: &str, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let c = admin_cli::connect(addr, Duration::from_secs(2), Duration::from_secs(5))
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    let args = args.iter().map(|s| s.to_string()).collect();
    admin_cli::call(&c, command, args)
        .await
        .map_err(|e| anyhow::anyhow!("admin {command} on {addr}: {}", e.message()))
}

/// Injects one fault on node `i` (for a split: a minority starting at `i`), holds it, undoes
/// it. Returns the nodes it touched.
async fn fault(
    target: &Mutex<Target>,
    kind: Fault,
    i: usize,
    hold: Duration,
) -> anyhow::Result<Vec<usize>> {
    let (admins, names) = {
        let t = target.lock().unwrap_or_else(|p| p.into_inner());
        (t.admins.clone(), t.names.clone())
    };
    let admin_addr = admins[i].clone();
    let n = names.len();
    match kind {
        Fault::Split => {
            let minority: Vec<usize> = (0..((n - 1) / 2).max(1)).map(|k| (i + k) % n).collect();
            let majority: Vec<usize> = (0..n).filter(|j| !minority.contains(j)).collect();
            for (side, other) in [(&minority, &majority), (&majority, &minority)] {
                for &a in side {
                    for &b in other {
                        admin(&admins[a], "fault", &["drop", &names[b], "--yes"]).await?;
                    }
                }
            }
            tokio::time::sleep(hold).await;
            for a in &admins {
                admin(a, "fault", &["heal", "--yes"]).await?;
            }
            return Ok(minority);
        }
        Fault::Oneway => {
            admin(&admin_addr, "fault", &["drop", "all", "in", "--yes"]).await?;
            tokio::time::sleep(hold).await;
            admin(&admin_addr, "fault", &["heal", "--yes"]).await?;
        }
        Fault::Kill => {
            with_local(target, i, |n| {
                n.kill();
                Ok(())
            })?;
            tokio::time::sleep(hold).await;
            with_local(target, i, |n| n.restart())?;
        }
        Fault::Pause => {
            with_local(target, i, |n| {
                n.signal(libc::SIGSTOP);
                Ok(())
            })?;
            tokio::time::sleep(hold).await;
            with_local(target, i, |n| {
                n.signal(libc::SIGCONT);
                Ok(())
            })?;
        }
        Fault::Partition => {
            admin(&admin_addr, "fault", &["drop", "all", "--yes"]).await?;
            tokio::time::sleep(hold).await;
            admin(&admin_addr, "fault", &["heal", "--yes"]).await?;
        }
    }
    Ok(vec![i])
}

fn with_local(
    target: &Mutex<Target>,
    i: usize,
    f: impl FnOnce(&mut super::local::LocalNode) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut t = target.lock().unwrap_or_else(|p| p.into_inner());
    let local = t.local.as_mut().ok_or_else(|| {
        anyhow::anyhow!("kill and pause need --local (this process starts the nodes)")
    })?;
    f(&mut local.nodes[i])
}

/// Runs the plan against the target; returns the history.
pub async fn run(plan: &Plan, target: Target) -> anyhow::Result<History> {
    let names = target.names.clone();
    let clients = target.clients.clone();
    let target = Arc::new(Mutex::new(target));
    let rec = Arc::new(Recorder {
        start: Instant::now(),
        ops: Mutex::new(Vec::new()),
    });
    let deadline = Instant::now() + plan.duration;

    let sessions: Vec<_> = (0..plan.sessions)
        .map(|id| {
            let rec = rec.clone();
            let mut s = Session {
                id,
                rng: SmallRng::seed_from_u64(plan.seed ^ (u64::from(id) << 32)),
                at: id as usize,
                clients: clients.clone(),
                client: None,
                n: 0,
                refused: false,
            };
            let (workload, keys) = (plan.workload, plan.keys);
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    s.step(&rec, workload, keys).await;
                    // A client that fails fast (no quorum on its side of a partition) backs
                    // off a little instead of filling the history with refusals.
                    if s.refused {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect();

    // Progress: time through the run, operations so far, faults so far.
    let bar = if plan.progress {
        indicatif::ProgressBar::new(plan.duration.as_millis() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("   check [{bar:40}] {msg}")
            .expect("valid progress template")
            .progress_chars("=> "),
    );
    let ticker = {
        let (bar, rec) = (bar.clone(), rec.clone());
        tokio::spawn(async move {
            while Instant::now() < deadline {
                bar.set_position(rec.start.elapsed().as_millis() as u64);
                let n = rec.ops.lock().map_or(0, |o| o.len());
                bar.set_message(format!("{n} ops"));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    // The nemesis: one fault at a time, on a schedule drawn from the seed.
    let mut faults = Vec::new();
    let mut rng = SmallRng::seed_from_u64(plan.seed);
    if !plan.faults.is_empty() {
        loop {
            tokio::time::sleep(plan.fault_every).await;
            if Instant::now() + plan.fault_for >= deadline {
                break;
            }
            let kind = plan.faults[rng.random_range(0..plan.faults.len())];
            let i = rng.random_range(0..names.len());
            let start_us = rec.now();
            let hit = fault(&target, kind, i, plan.fault_for).await?;
            faults.push(FaultEvent {
                kind: format!("{kind:?}").to_lowercase(),
                nodes: hit.iter().map(|&j| names[j].clone()).collect(),
                start_us,
                end_us: rec.now(),
            });
        }
    }
    for s in sessions {
        s.await?;
    }
    ticker.abort();
    bar.set_message("reading every key back with r=all");
    let healed = Instant::now();
    let (final_reads, converged) = read_back(plan, &clients, &rec).await?;
    bar.finish_and_clear();
    let ops = std::mem::take(&mut *rec.ops.lock().unwrap_or_else(|p| p.into_inner()));
    drop(target);
    Ok(History {
        workload: plan.workload,
        seed: plan.seed,
        nodes: names,
        ops,
        faults,
        final_reads,
        convergence_us: converged.then(|| healed.elapsed().as_micros() as u64),
    })
}

/// Reads every key with `r=all` through every node until all nodes answer the same (up to
/// 60 s). Returns the reads and whether they converged.
async fn read_back(
    plan: &Plan,
    clients: &[String],
    _rec: &Recorder,
) -> anyhow::Result<(Vec<FinalRead>, bool)> {
    let limit = Instant::now() + Duration::from_secs(60);
    loop {
        let mut per_node: Vec<Vec<FinalRead>> = Vec::new();
        for addr in clients {
            match read_all(plan, addr).await {
                Ok(r) => per_node.push(r),
                Err(e) => {
                    if Instant::now() > limit {
                        anyhow::bail!("reading back through {addr}: {e}");
                    }
                    per_node.clear();
                    break;
                }
            }
        }
        if !per_node.is_empty() && per_node.iter().all(|r| *r == per_node[0]) {
            return Ok((per_node.swap_remove(0), true));
        }
        if Instant::now() > limit {
            let first = per_node.into_iter().next().unwrap_or_default();
            return Ok((first, false));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn read_all(plan: &Plan, addr: &str) -> anyhow::Result<Vec<FinalRead>> {
    let c = Client::connect(addr, "check-read").await?;
    let mut out = Vec::new();
    for k in 0..plan.keys {
        let key = format!("k{k}");
        let kb = key.clone().into_bytes();
        let r = Some(Quorum::All);
        let req = match plan.workload {
            Workload::Set => Request::Smembers { key: kb, r },
            Workload::Counter => Request::Counter { key: kb, r },
            _ => Request::Get {
                key: kb,
                r,
                after: None,
            },
        };
        let reply = c.call(&req).await?;
        let mut values: Vec<String> = reply
            .values
            .or(reply.members)
            .unwrap_or_default()
            .iter()
            .map(|v| String::from_utf8_lossy(v).into())
            .collect();
        values.sort();
        let counter = match reply.value {
            Some(ReplyValue::Int(i)) => Some(i),
            _ => None,
        };
        out.push(FinalRead {
            key,
            values,
            counter,
        });
    }
    Ok(out)
}
