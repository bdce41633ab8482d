//! Node configuration: defaults < TOML file < `TROUPE__SECTION__KEY` environment < flags
//! (the layering and its provenance live in [`crate::config_layers`]).
//!
//! Unknown keys are errors (a typo in a config file should not be silently ignored), and every
//! value is checked by [`Config::validate`] before the node starts.

use anyhow::bail;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use troupe_protocol::Quorum;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub node: NodeSection,
    pub net: NetSection,
    pub storage: StorageSection,
    pub cluster: ClusterSection,
    pub membership: MembershipSection,
    pub limits: LimitsSection,
    pub auth: AuthSection,
    pub anti_entropy: AntiEntropySection,
    pub handoff: HandoffSection,
    pub tls: TlsSection,
}

/// Anti-entropy: replicas comparing trees and joining what differs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AntiEntropySection {
    /// Run rounds on `interval` (off: trees are still kept, peers answered, and
    /// `troupe admin repair` runs a round on demand).
    pub enabled: bool,
    /// How often a node compares every partition it holds with the other replicas ("10m").
    pub interval: String,
    /// Bytes a second a round exchanges with peers and the start-up rebuild scans (0: no
    /// limit), so client traffic keeps its latency.
    pub max_bytes_per_sec: u64,
    /// How long one exchange request waits for the peer's answer ("10s"; asked twice).
    pub request_timeout: String,
}

impl Default for AntiEntropySection {
    fn default() -> Self {
        AntiEntropySection {
            enabled: true,
            interval: "10m".into(),
            max_bytes_per_sec: 8 << 20,
            request_timeout: "10s".into(),
        }
    }
}

/// Hinted handoff (sloppy quorum): writes for a down primary kept as durable hints by a
/// fallback (or the coordinator) and delivered when the primary is back.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HandoffSection {
    /// Off: writes use primaries only (a down primary is a failed answer), as before hints.
    pub enabled: bool,
    /// Bytes of hint files kept per down primary; past it new hints for it are dropped
    /// (counted; anti-entropy repairs that primary). Default 256 MiB: over the default
    /// 3 h that is a steady 24 KiB/s of writes for one down primary, and ten down
    /// primaries cost at most 2.5 GiB of disk.
    pub max_hint_bytes: u64,
    /// Hints older than this are dropped, not delivered ("3h", as Cassandra's
    /// max_hint_window): a primary away longer is better rebuilt by anti-entropy than fed
    /// hours of stale writes.
    pub max_hint_age: String,
    /// Delivery's average rate over every primary. Default 1 MiB/s, about 4,500 hints of
    /// 100-byte values a second: a hint costs the primary a replica write like a client's,
    /// and that is about what the 2-core bench machine delivered beside its client load
    /// (8 MiB/s was no faster there; docs/BENCHMARKS.md, "Hinted handoff"), so a bigger
    /// machine does not turn a restart into a delivery storm that starves client traffic
    /// (scylla#7886).
    pub max_bytes_per_sec: u64,
    /// Partition transfers on ring changes (join, leave, remove): fetch streams a node runs
    /// at once, one per source holder (a stream carries every partition it takes from that
    /// holder: the engine orders keys, not partitions, so one scan serves them all).
    pub transfer_limit: usize,
    /// Bytes a second a node's incoming transfers take together (0: unlimited). Default
    /// 32 MiB/s: a joining node fills at disk speed on the bench machine without starving
    /// client traffic (docs/BENCHMARKS.md, "Ring changes").
    pub transfer_bytes_per_sec: u64,
    /// A transfer stream without progress this long is logged as a warning and restarted
    /// from its cursor on another holder ("1m").
    pub stall_timeout: String,
    /// How long after a ring change a node deletes the partitions it no longer owns,
    /// once every new owner has them ("1m"): coordinators that read from the old owners
    /// until they heard have long finished by then.
    pub drop_delay: String,
}

impl Default for HandoffSection {
    fn default() -> Self {
        HandoffSection {
            enabled: true,
            max_hint_bytes: 256 << 20,
            max_hint_age: "3h".into(),
            max_bytes_per_sec: 1 << 20,
            transfer_limit: 2,
            transfer_bytes_per_sec: 32 << 20,
            stall_timeout: "1m".into(),
            drop_delay: "1m".into(),
        }
    }
}

/// TLS on the client, admin and peer ports (issue 15). Off while `cert` is empty.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// This node's certificate chain (PEM, leaf first). It must name the host peers and
    /// clients reach the node by (a DNS or IP subject alternative name) and allow both
    /// server and client authentication: peers present it to each other.
    pub cert: PathBuf,
    /// The private key of `cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA (PEM) peers verify each other against, and clients' certificates too with
    /// `require_client_cert`. Required when `cert` is set.
    pub ca: PathBuf,
    /// Mutual TLS on the client and admin ports: clients must present a certificate from `ca`.
    pub require_client_cert: bool,
    /// A TLS handshake not done within it is closed (a plain-TCP client on a TLS port).
    pub handshake_timeout: String,
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection {
            cert: PathBuf::new(),
            key: PathBuf::new(),
            ca: PathBuf::new(),
            require_client_cert: false,
            handshake_timeout: "1s".into(),
        }
    }
}

impl TlsSection {
    /// Whether TLS is on.
    pub fn enabled(&self) -> bool {
        !self.cert.as_os_str().is_empty()
    }
}

/// Who may talk to this node.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// Tokens a client's `hello` must carry one of (several, to rotate without downtime;
    /// comma-separated in `TROUPE__AUTH__CLIENT_TOKENS`). Empty: the client port is open.
    pub client_tokens: Vec<String>,
    /// The token every admin request and every /metrics scrape must carry
    /// (`Authorization: Bearer ...`). Required when the admin or metrics port listens
    /// beyond loopback. Empty: none.
    pub admin_token: String,
}

/// Bounds on what one key may hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// Members a set may hold; adds past it are refused with `too_large`.
    pub max_set_members: usize,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_set_members: troupe_protocol::crdt::DEFAULT_MAX_SET_MEMBERS,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    /// Stable identity of this node in the cluster.
    pub id: String,
    pub data_dir: PathBuf,
    /// Serve `admin fault` (drop peer traffic): for test clusters only.
    pub enable_fault_injection: bool,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            id: default_node_id(),
            data_dir: PathBuf::from("./troupe-data"),
            enable_fault_injection: false,
        }
    }
}

fn default_node_id() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "troupe".to_string())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetSection {
    pub listen: String,
    pub peer_listen: String,
    pub admin_listen: String,
    pub metrics_listen: String,
    pub seeds: Vec<String>,
    pub max_frame_bytes: usize,
    /// Client connections served at once; more get `overloaded` and are closed.
    pub max_connections: usize,
    /// Requests in flight per connection; past it the node stops reading that socket.
    pub max_inflight_per_connection: usize,
    /// Bytes of client requests read but not yet answered, node-wide; at the limit the node
    /// stops reading sockets (requests up to 64 KiB are not held back).
    pub max_inflight_bytes: usize,
    /// A client frame begun must complete within this ("30s"), or the connection closes.
    pub read_timeout: String,
    /// Event-loop threads serving client connections: a number, 0 for the main event loop
    /// (the coordinator's), or "auto" (see [`NetSection::workers`]).
    pub workers: String,
}

impl NetSection {
    /// Worker threads for client connections (0: on the main event loop). "auto": the main
    /// loop on a machine of 1 or 2 cores, where a request's two thread hops (connection to
    /// coordinator and back) cost more than a second loop gains; otherwise one per core
    /// (at most 16), so connection I/O scales past the core the coordinator runs on.
    pub fn workers(&self) -> anyhow::Result<usize> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        self.workers_on(cores)
    }

    /// [`NetSection::workers`] on a machine of `cores` cores.
    fn workers_on(&self, cores: usize) -> anyhow::Result<usize> {
        match self.workers.trim() {
            "auto" if cores <= 2 => Ok(0),
            "auto" => Ok(cores.min(16)),
            n => match n.parse::<usize>() {
                Ok(n) if n <= 256 => Ok(n),
                _ => bail!(
                    "net.workers is {:?}: give \"auto\" or a number of threads from 0 (the main event loop) to 256",
                    self.workers
                ),
            },
        }
    }
}

impl Default for NetSection {
    fn default() -> Self {
        NetSection {
            listen: "127.0.0.1:7400".into(),
            peer_listen: "127.0.0.1:7401".into(),
            admin_listen: "127.0.0.1:7402".into(),
            metrics_listen: "127.0.0.1:7403".into(),
            seeds: Vec::new(),
            max_frame_bytes: troupe_protocol::DEFAULT_MAX_FRAME_BYTES,
            max_connections: 4096,
            max_inflight_per_connection: 256,
            max_inflight_bytes: 256 << 20,
            read_timeout: "30s".into(),
            workers: "auto".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityMode {
    /// Acknowledge a write only after its WAL record is fdatasync'ed (group commit).
    Sync,
    /// Acknowledge after write(2); fdatasync every `relaxed_sync_ms`. A power loss or kernel
    /// crash can lose up to that much acknowledged data.
    Relaxed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    /// The active memtable is sealed (and flushed) once its entries take this much memory.
    pub memtable_bytes: usize,
    /// ... or once this many bytes of WAL records were written to it, whichever comes first
    /// (an overwrite replaces its key's entry in memory but adds to the log): bounds the log
    /// a restart replays.
    pub memtable_wal_bytes: usize,
    pub durability: DurabilityMode,
    pub block_cache_bytes: usize,
    pub relaxed_sync_ms: u64,
    /// Encoded WAL records waiting to be written, at most; past it writes get `overloaded`.
    pub wal_queue_bytes: usize,
    /// Sealed memtables waiting for the flusher before writes stall (wait for a flush).
    pub max_sealed_memtables: usize,
    /// Writes held while stalled; past it writes get `overloaded`.
    pub max_stalled_writes: usize,
    /// Reads that missed memory admitted at once (queued or running); more wait.
    pub max_disk_reads: usize,
    /// Blocking-pool workers serving point reads that missed memory: the read I/O depth.
    pub read_workers: usize,
    /// Compaction output rate limit in bytes/s (0 = unlimited).
    pub compaction_bytes_per_sec: u64,
    /// Compact L0 into L1 once it holds this many tables.
    pub l0_compaction_trigger: usize,
    /// Flushes wait (and writes then stall) while L0 holds this many tables.
    pub l0_stop_tables: usize,
    /// Size budget of L1; each deeper level may hold 10x the one above.
    pub level1_bytes: u64,
    /// Compaction output tables are cut at this size.
    pub target_table_bytes: u64,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            memtable_bytes: 64 * 1024 * 1024,
            memtable_wal_bytes: 256 * 1024 * 1024,
            durability: DurabilityMode::Sync,
            block_cache_bytes: 64 * 1024 * 1024,
            relaxed_sync_ms: 100,
            wal_queue_bytes: 64 * 1024 * 1024,
            max_sealed_memtables: 2,
            max_stalled_writes: 4096,
            max_disk_reads: 64,
            read_workers: troupe_actors::memtable::reads::DEFAULT_READ_WORKERS,
            compaction_bytes_per_sec: 128 * 1024 * 1024,
            l0_compaction_trigger: 4,
            l0_stop_tables: 20,
            level1_bytes: 256 * 1024 * 1024,
            target_table_bytes: 32 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSection {
    /// Replicas per key (fewer while the ring has fewer members).
    pub n: usize,
    /// Default read and write quorums: "one", "quorum", "all" or a number up to `n`.
    pub r: Quorum,
    pub w: Quorum,
    /// Partitions of the ring: a power of two, fixed when the cluster is created.
    pub partitions: u32,
    pub vnodes: usize,
    pub secret: String,
    /// How long a coordinator waits for replicas ("500ms", "5s").
    pub request_timeout: String,
    /// How often a node compares its ring layout with one random peer ("1s").
    pub layout_gossip_interval: String,
    /// How long a delete marker is kept at least, after which tombstone GC may drop it
    /// once every primary holds it and no hint for its key is pending ("1h").
    pub tombstone_grace: String,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            n: 3,
            r: Quorum::Quorum,
            w: Quorum::Quorum,
            partitions: 256,
            vnodes: 64,
            secret: String::new(),
            request_timeout: "5s".into(),
            layout_gossip_interval: "1s".into(),
            tombstone_grace: "1h".into(),
        }
    }
}

/// Whether `addr` (host:port) listens on a loopback address only.
fn is_loopback(addr: &str) -> bool {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Parses a duration written as a number and a unit: "250ms", "5s", "2m", "1h".
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        anyhow::anyhow!(
            "{s:?} is not a duration; write a number and a unit, e.g. \"500ms\", \"5s\", \"1h\""
        )
    })?;
    Ok(match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        other => bail!("{s:?}: unknown duration unit {other:?}; use ms, s, m or h"),
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MembershipSection {
    pub probe_interval_ms: u64,
    pub probe_timeout_ms: u64,
    pub indirect_probes: usize,
    pub suspicion_mult: u32,
    /// Lifeguard: the suspicion timeout starts at this multiple of its minimum and shrinks
    /// as independent confirmations arrive (1 = fixed timeout, plain SWIM).
    pub suspicion_max_timeout_mult: u32,
    /// Lifeguard local health: probe timing stretches up to (1 + this) when we are slow.
    pub awareness_max_multiplier: u32,
    /// A probe whose settling tick ran later than this (a starved or paused process) is not
    /// held against its target: the target is probed again (up to 3 times) and local
    /// health rises. "0ms" turns the check off.
    pub late_tolerance: String,
    /// Each gossiped update is retransmitted retransmit_mult * ceil(log10(N+1)) times.
    pub retransmit_mult: u32,
    /// Gossip fan-out: pending updates go to `gossip_nodes` random members this often.
    pub gossip_interval_ms: u64,
    pub gossip_nodes: usize,
    /// Full-state exchange with one random member this often (scaled up past 32 members).
    pub push_pull_interval_ms: u64,
    /// Dead and left members are forgotten this long after their last change.
    pub reap_after_ms: u64,
    /// Try a full-state exchange with one dead member this often (heals partitions).
    pub reconnect_interval_ms: u64,
}

impl Default for MembershipSection {
    fn default() -> Self {
        MembershipSection {
            probe_interval_ms: 1000,
            probe_timeout_ms: 500,
            indirect_probes: 3,
            suspicion_mult: 4,
            suspicion_max_timeout_mult: 6,
            awareness_max_multiplier: 8,
            late_tolerance: "100ms".into(),
            retransmit_mult: 4,
            gossip_interval_ms: 200,
            gossip_nodes: 3,
            push_pull_interval_ms: 30_000,
            reap_after_ms: 30_000,
            reconnect_interval_ms: 30_000,
        }
    }
}

/// Command-line values that override everything else (`None` = not given).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub node_id: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub peer_listen: Option<String>,
    pub admin_listen: Option<String>,
    pub metrics_listen: Option<String>,
    pub seeds: Option<Vec<String>>,
    pub durability: Option<DurabilityMode>,
    /// `--enable-fault-injection` (only ever turns it on).
    pub enable_fault_injection: bool,
}

impl Config {
    /// Loads the layered configuration. `env` is the environment to read (for tests).
    /// Each layer's values are checked as they land (see [`crate::config_layers`]), so an
    /// error names the file or the environment variable that set the bad value.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &Overrides,
    ) -> anyhow::Result<Config> {
        crate::config_layers::Layered::load(file, env, flags)?.config()
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.node.id.is_empty() {
            bail!("node.id must not be empty");
        }
        if self.net.max_frame_bytes < 1024 || self.net.max_frame_bytes > u32::MAX as usize {
            bail!("net.max_frame_bytes must be between 1024 and {}", u32::MAX);
        }
        if self.net.max_connections == 0 || self.net.max_inflight_per_connection == 0 {
            bail!("net.max_connections and net.max_inflight_per_connection must be at least 1");
        }
        let c = &self.cluster;
        let too_big = |q: Quorum| matches!(q, Quorum::N(k) if k as usize > c.n);
        if c.n == 0 || too_big(c.r) || too_big(c.w) {
            bail!(
                "cluster: need n >= 1 and r, w one of one, quorum, all or a number up to n (got n={}, r={}, w={})",
                c.n,
                c.r,
                c.w
            );
        }
        if !c.partitions.is_power_of_two() || c.partitions > 65536 {
            bail!(
                "cluster.partitions must be a power of two up to 65536 (got {})",
                c.partitions
            );
        }
        if self.auth.admin_token.is_empty() {
            for (what, addr) in [
                ("net.admin_listen", &self.net.admin_listen),
                ("net.metrics_listen", &self.net.metrics_listen),
            ] {
                if !is_loopback(addr) {
                    bail!(
                        "{what} is {addr}, beyond loopback, and auth.admin_token is not set: anyone who reaches it could run admin commands or read metrics; set auth.admin_token (TROUPE__AUTH__ADMIN_TOKEN) or listen on 127.0.0.1"
                    );
                }
            }
        }
        if self.tls.enabled()
            && (self.tls.key.as_os_str().is_empty() || self.tls.ca.as_os_str().is_empty())
        {
            bail!("tls.cert is set, so tls.key and tls.ca must be too (peers verify each other against tls.ca)");
        }
        if !self.tls.enabled() && self.tls.require_client_cert {
            bail!("tls.require_client_cert needs TLS on: set tls.cert, tls.key and tls.ca");
        }
        for (what, d) in [
            ("tls.handshake_timeout", &self.tls.handshake_timeout),
            ("cluster.request_timeout", &c.request_timeout),
            ("cluster.tombstone_grace", &c.tombstone_grace),
            ("net.read_timeout", &self.net.read_timeout),
        ] {
            let t = parse_duration(d).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
            if t.is_zero() {
                bail!("{what} must be more than 0");
            }
        }
        self.net.workers()?;
        if self.net.max_inflight_bytes < self.net.max_frame_bytes {
            bail!(
                "net.max_inflight_bytes ({}) must be at least net.max_frame_bytes ({}): a request of the maximum size must fit",
                self.net.max_inflight_bytes,
                self.net.max_frame_bytes
            );
        }
        for (what, v) in [
            ("anti_entropy.interval", &self.anti_entropy.interval),
            (
                "anti_entropy.request_timeout",
                &self.anti_entropy.request_timeout,
            ),
        ] {
            if parse_duration(v)
                .map_err(|e| anyhow::anyhow!("{what}: {e}"))?
                .is_zero()
            {
                bail!("{what} must be more than 0");
            }
        }
        let s = &self.storage;
        if s.memtable_bytes < 4096
            || s.memtable_wal_bytes < 4096
            || s.max_sealed_memtables == 0
            || s.max_disk_reads == 0
            || s.read_workers == 0
            || s.l0_compaction_trigger == 0
            || s.l0_stop_tables <= s.l0_compaction_trigger
            || s.target_table_bytes < 4096
            || s.level1_bytes < s.target_table_bytes
        {
            bail!("storage: need memtable_bytes >= 4096, memtable_wal_bytes >= 4096, target_table_bytes >= 4096, level1_bytes >= target_table_bytes, l0_stop_tables > l0_compaction_trigger, and max_sealed_memtables, max_disk_reads, read_workers, l0_compaction_trigger >= 1");
        }
        let m = &self.membership;
        if m.probe_interval_ms == 0
            || m.probe_timeout_ms == 0
            || m.probe_timeout_ms >= m.probe_interval_ms
        {
            bail!(
                "membership: need 0 < probe_timeout_ms < probe_interval_ms (got {} and {})",
                m.probe_timeout_ms,
                m.probe_interval_ms
            );
        }
        let late = parse_duration(&m.late_tolerance)
            .map_err(|e| anyhow::anyhow!("membership.late_tolerance: {e}"))?;
        if !late.is_zero() && late < Duration::from_millis(20) {
            bail!(
                "membership.late_tolerance {:?} is below 20ms: timers routinely run a few ms late, so nearly every failed probe would be retried; use \"100ms\" (the default), at least \"20ms\", or \"0ms\" to turn the check off",
                m.late_tolerance
            );
        }
        if m.suspicion_mult == 0 || m.suspicion_max_timeout_mult == 0 || m.retransmit_mult == 0 {
            bail!("membership: suspicion_mult, suspicion_max_timeout_mult and retransmit_mult must be at least 1");
        }
        if m.push_pull_interval_ms == 0 || m.reconnect_interval_ms == 0 || m.gossip_interval_ms == 0
        {
            bail!("membership: push_pull_interval_ms, reconnect_interval_ms and gossip_interval_ms must be at least 1");
        }
        if self.storage.relaxed_sync_ms == 0 {
            bail!("storage.relaxed_sync_ms must be at least 1");
        }
        let h = &self.handoff;
        parse_duration(&h.max_hint_age)
            .map_err(|e| anyhow::anyhow!("handoff.max_hint_age: {e}"))?;
        if h.max_hint_bytes < 4096 || h.max_bytes_per_sec < 1024 {
            bail!(
                "handoff: need max_hint_bytes >= 4096 and max_bytes_per_sec >= 1024 (got {} and {})",
                h.max_hint_bytes,
                h.max_bytes_per_sec
            );
        }
        parse_duration(&h.stall_timeout)
            .map_err(|e| anyhow::anyhow!("handoff.stall_timeout: {e}"))?;
        parse_duration(&h.drop_delay).map_err(|e| anyhow::anyhow!("handoff.drop_delay: {e}"))?;
        if h.transfer_limit == 0 || h.transfer_limit > 64 {
            bail!(
                "handoff.transfer_limit must be between 1 and 64 (got {})",
                h.transfer_limit
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
