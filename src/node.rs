//! `troupe node`: wires the actors of one node together and runs them until a signal.
//!
//! Start-up, in order: take the data-directory lock, replay the WAL (blocking, before anything
//! is served), bind every listener (so a port conflict fails fast), start the actors, tell
//! systemd we are ready. Shutdown on SIGTERM/SIGINT: stop accepting, let in-flight requests
//! finish (up to a grace period), sync the WAL, exit 0. A stop is not a departure: the node
//! stays a ring member (`troupe admin leave` departs).

use crate::config::{Config, DurabilityMode};
use crate::metrics;
use actix::prelude::*;
use anyhow::Context as _;
use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use troupe_actors::admin::{self, Admin, NodeInfo};
use troupe_actors::antientropy::{self, AntiEntropy, AntiEntropyConfig};
use troupe_actors::connection::reader::ByteBudget;
use troupe_actors::connection::{ClientTokens, ConnectionShared, Listener, ListenerConfig};
use troupe_actors::coordinator::placement::RingInputs;
use troupe_actors::coordinator::{Coordinator, CoordinatorConfig};
use troupe_actors::engine::io::{create_dir_durable, RealIo};
use troupe_actors::handoff::{Handoff, HandoffConfig, HandoffLinks, WatchTransition};
use troupe_actors::hints;
use troupe_actors::layout::{store as layout_store, LayoutActor, LayoutConfig, WatchLayout};
use troupe_actors::membership::actor::WatchRing;
use troupe_actors::membership::{self, actor::Join, config::SwimConfig};
use troupe_actors::memtable::wal::Durability;
use troupe_actors::memtable::{MemtableConfig, SyncWal};
use troupe_actors::peer::{self, PeerConfig, PeerTransport};
use troupe_actors::ring::{Layout, PartitionConfig};
use troupe_actors::stats::Registry;
use troupe_actors::storage::{self, EngineConfig};
use troupe_actors::tombstones::{TombstoneActor, TombstoneConfig, TombstoneLinks};
use troupe_protocol::admin::Addresses;
use troupe_protocol::object::ActorId;
use troupe_protocol::swim::{MemberInfo, NodeId, Status};

mod tls;
mod watchdog;

/// How long shutdown waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Holds an exclusive `flock` on `<data_dir>/LOCK` for the life of the node, so two nodes can
/// never write the same WAL.
pub(crate) fn lock_data_dir(dir: &Path) -> anyhow::Result<File> {
    // Durably: a first boot that loses the data directory's entry loses everything in it.
    create_dir_durable(&RealIo, dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let path = dir.join("LOCK");
    let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    // SAFETY: flock on a valid, owned file descriptor has no memory-safety preconditions.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        anyhow::bail!(
            "data directory {} is in use by another troupe node (its LOCK is held); stop it or pass --data-dir",
            dir.display()
        );
    }
    Ok(file)
}

fn partition_config(cfg: &Config) -> PartitionConfig {
    PartitionConfig {
        partitions: cfg.cluster.partitions,
        n: cfg.cluster.n,
    }
}

/// The layout the data directory holds, or a fresh one with this node alone. A stored
/// layout with another partition count is refused: partitions are fixed for a cluster. One
/// with another `cluster.n` is kept; the layout actor then computes the next one with the
/// configured N.
fn load_layout(cfg: &Config) -> anyhow::Result<Layout> {
    let want = partition_config(cfg);
    want.validate()?;
    match layout_store::load(&cfg.node.data_dir)? {
        Some(l) if l.table.partitions() != want.partitions => anyhow::bail!(
            "cluster.partitions is {} but {} holds a ring layout of {} partitions: the partition count is fixed when a cluster is created; set cluster.partitions = {}",
            want.partitions,
            cfg.node.data_dir.join(layout_store::FILE).display(),
            l.table.partitions(),
            l.table.partitions()
        ),
        Some(l) => {
            log::info!(
                "ring layout {} from the data directory: {} member(s)",
                l.version,
                l.table.members().len()
            );
            Ok(l)
        }
        None => Ok(Layout::initial([NodeId(cfg.node.id.clone())], want)?),
    }
}

async fn bind(addr: &str, what: &str, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {what} on {addr}; is another node running there? choose another address with {flag}"))
}

pub fn run(cfg: Config) -> anyhow::Result<()> {
    let _lock = lock_data_dir(&cfg.node.data_dir)?;
    let actor_id = troupe_actors::storage::actor_id::load_or_create(&cfg.node.data_dir)?;
    let fresh_dir = !cfg.node.data_dir.join(layout_store::FILE).exists();
    let layout = load_layout(&cfg)?;
    let transfers = troupe_actors::handoff::store::load(&cfg.node.data_dir)?;
    let registry = Registry::default();
    let durability = match cfg.storage.durability {
        DurabilityMode::Sync => Durability::Sync,
        DurabilityMode::Relaxed => Durability::Relaxed {
            interval: Duration::from_millis(cfg.storage.relaxed_sync_ms),
        },
    };
    let max_inflight = cfg.net.max_inflight_per_connection;
    let mt_config = MemtableConfig {
        data_dir: cfg.node.data_dir.clone(),
        durability,
        wal_queue_jobs: 65536,
        max_queued_bytes: cfg.storage.wal_queue_bytes,
        mailbox: 4096,
        memtable_bytes: cfg.storage.memtable_bytes,
        wal_bytes: cfg.storage.memtable_wal_bytes,
        max_sealed: cfg.storage.max_sealed_memtables,
        max_stalled_writes: cfg.storage.max_stalled_writes,
        max_disk_reads: cfg.storage.max_disk_reads,
        read_workers: cfg.storage.read_workers,
    };
    let engine_config = EngineConfig {
        block_cache_bytes: cfg.storage.block_cache_bytes,
        compaction_bytes_per_sec: cfg.storage.compaction_bytes_per_sec,
        l0_compaction_trigger: cfg.storage.l0_compaction_trigger,
        l0_stop_tables: cfg.storage.l0_stop_tables,
        level1_bytes: cfg.storage.level1_bytes,
        target_table_bytes: cfg.storage.target_table_bytes,
    };
    let started = Instant::now();
    let opened =
        storage::open(mt_config, &engine_config, &registry).context("cannot open storage")?;
    let report = &opened.report;
    log::info!(
        "recovered {} tables ({} orphan files deleted); {} WAL records ({} keys, {} already in tables) from {} segment(s), {} retired segment(s) deleted, in {:?}{}",
        report.tables,
        report.orphans_deleted,
        report.records,
        report.keys,
        report.skipped_flushed,
        report.segments,
        report.retired_segments_deleted,
        started.elapsed(),
        if report.torn_bytes > 0 {
            format!("; dropped a torn tail of {} bytes", report.torn_bytes)
        } else {
            String::new()
        }
    );

    // Hints recovered before anything is served, like the WAL (torn tails cut here).
    let hints_dir = cfg.node.data_dir.join("hints");
    let hints_recovered = hints::disk::recover(&hints_dir)
        .with_context(|| format!("cannot recover hints from {}", hints_dir.display()))?;
    let hints_disk =
        hints::disk::Disk::start(hints_dir).context("cannot start the hints disk thread")?;

    let system = System::new();
    let result = system.block_on(async move {
        let client_listener = bind(&cfg.net.listen, "clients", "--listen").await?;
        let admin_listener = bind(&cfg.net.admin_listen, "admin", "--admin-listen").await?;
        let metrics_listener = bind(&cfg.net.metrics_listen, "metrics", "--metrics-listen").await?;
        let peer_listener = bind(&cfg.net.peer_listen, "peers", "--peer-listen").await?;
        let shutdown = CancellationToken::new();
        let tls = tls::load(&cfg)?;
        tls::reload_on_sighup(tls.clone())?;

        // The Memtable shares this (the System's) event loop with the coordinator: the two
        // exchange an update and its answer per write, which on one loop are queue pushes
        // with no thread wake-up (on an arbiter of its own: node CPU per put 20-30% higher,
        // docs/BENCHMARKS.md). It does no blocking I/O (the WAL has its own thread).
        let background_arbiter = Arbiter::new();
        let storage = opened.start(&Arbiter::current(), &background_arbiter.handle(), &registry);
        let memtable = storage.memtable.clone();
        let health = storage.health.clone();
        // Checked when the configuration was loaded (`Config::validate`).
        let workers: Vec<Arbiter> = (0..cfg.net.workers()?).map(|_| Arbiter::new()).collect();

        // The coordinator's address exists before it starts: the peer listener (started
        // with membership) hands it inbound data batches.
        let coord_ctx = Context::<Coordinator>::new();
        let coordinator = coord_ctx.address();
        let layout_ctx = Context::<LayoutActor>::new();
        // Anti-entropy runs on a thread of its own (below); its mailbox exists now.
        let (ae_tx, ae_rx) = actix::dev::channel::channel::<AntiEntropy>(16);
        let ae_addr = Addr::new(ae_tx);
        let tomb_ctx = Context::<TombstoneActor>::new();
        let transfer_ctx = Context::<Handoff>::new();
        let (membership, transport) = start_membership(
            &cfg,
            peer_listener,
            &registry,
            coordinator.clone().recipient(),
            layout_ctx.address().recipient(),
            ae_addr.clone().recipient(),
            tomb_ctx.address().recipient(),
            transfer_ctx.address().recipient(),
            shutdown.clone(),
            tls.clone(),
        );
        let ring_rx = membership
            .send(WatchRing)
            .await
            .context("membership actor stopped at start-up")?;
        let layout_cfg = LayoutConfig {
            me: NodeId(cfg.node.id.clone()),
            partitions: partition_config(&cfg),
            data_dir: cfg.node.data_dir.clone(),
            gossip_interval: crate::config::parse_duration(&cfg.cluster.layout_gossip_interval)?,
            push_fanout: 4,
            mailbox: 1024,
        };
        let layout_addr = layout_ctx.run(LayoutActor::new(
            layout_cfg,
            layout,
            Some(transport.clone()),
            ring_rx.clone(),
        ));
        let layout_rx = layout_addr
            .send(WatchLayout)
            .await
            .context("layout actor stopped at start-up")?;
        let h = &cfg.handoff;
        let transfer_cfg = HandoffConfig {
            me: NodeId(cfg.node.id.clone()),
            data_dir: cfg.node.data_dir.clone(),
            transfer_limit: h.transfer_limit,
            max_bytes_per_sec: h.transfer_bytes_per_sec,
            stall_timeout: crate::config::parse_duration(&h.stall_timeout)?,
            ack_delay: crate::config::parse_duration(&cfg.cluster.request_timeout)?,
            drop_delay: crate::config::parse_duration(&h.drop_delay)?,
            gossip_interval: crate::config::parse_duration(&cfg.cluster.layout_gossip_interval)?,
            chunk_bytes: 256 << 10,
            mailbox: 4096,
        };
        let transfer_actor = Handoff::new(
            transfer_cfg,
            HandoffLinks {
                transport: Some(transport.clone()),
                members: ring_rx.clone(),
                layout: layout_rx.clone(),
                scan: memtable.clone().recipient(),
                write: memtable.clone().recipient(),
                join: coordinator.clone().recipient(),
                drained: Some(coordinator.clone().recipient()),
                keys_in: Some(ae_addr.clone().recipient()),
                exchange: Some(ae_addr.clone().recipient()),
                // Through the coordinator, so its deletions reach the trees after the
                // writes the coordinator noted before them (`LocalWrites` are batched).
                trees: Some(coordinator.clone().recipient()),
                leave: Some(membership.clone().recipient()),
                leave_ring: Some(layout_addr.clone().recipient()),
            },
            transfers,
            fresh_dir,
        );
        let transfer_stats = transfer_actor.stats();
        let transfer_addr = transfer_ctx.run(transfer_actor);
        let transition_rx = transfer_addr
            .send(WatchTransition)
            .await
            .context("handoff actor stopped at start-up")?;
        // The HintedHandoff actor runs even with handoff off: it still delivers hints kept
        // from an earlier run, and tombstone GC asks it (`HintsPending`) either way.
        let handoff_cfg = hints::HandoffConfig {
            me: cfg.node.id.clone(),
            max_hint_bytes: cfg.handoff.max_hint_bytes,
            max_hint_age: crate::config::parse_duration(&cfg.handoff.max_hint_age)?,
            max_bytes_per_sec: cfg.handoff.max_bytes_per_sec,
            mailbox: 16384,
        };
        let handoff = hints::HintedHandoff::new(
            handoff_cfg,
            hints_recovered,
            hints_disk,
            coordinator.clone().recipient(),
            ring_rx.clone(),
        );
        let hint_stats = handoff.stats();
        let hints_addr: Addr<hints::HintedHandoff> = handoff.start();
        let coord_cfg = CoordinatorConfig {
            me: NodeId(cfg.node.id.clone()),
            actor: ActorId(actor_id),
            partitions: cfg.cluster.partitions,
            n: cfg.cluster.n,
            r: cfg.cluster.r,
            w: cfg.cluster.w,
            request_timeout: crate::config::parse_duration(&cfg.cluster.request_timeout)?,
            max_inflight: 16384,
            max_repairs: 256,
            // Peer frames share `net.max_frame_bytes`; leave room for framing and fields.
            max_batch_bytes: cfg.net.max_frame_bytes / 2,
            max_object_bytes: (cfg.net.max_frame_bytes / 2).saturating_sub(64 * 1024).max(512),
            mailbox: 16384,
            max_set_members: cfg.limits.max_set_members,
        };
        let coordinator_counters = registry.actor("coordinator");
        let tomb_actor = TombstoneActor::new(
            TombstoneConfig::new(
                NodeId(cfg.node.id.clone()),
                crate::config::parse_duration(&cfg.cluster.tombstone_grace)?,
            ),
            TombstoneLinks {
                transport: Some(transport.clone()),
                members: ring_rx.clone(),
                layout: layout_rx.clone(),
                get: memtable.clone().recipient(),
                scan: memtable.clone().recipient(),
                purge: coordinator.clone().recipient(),
                // Asked even with hand-off disabled: hints from an earlier run may remain.
                hints: Some(hints_addr.clone().recipient()),
                transition: Some(transition_rx.clone()),
            },
        );
        let tomb_stats = tomb_actor.stats();
        let tombstones = tomb_ctx.run(tomb_actor);
        let coord = Coordinator::new(
            coord_cfg,
            memtable.clone().recipient(),
            memtable.clone().recipient(),
            Some(transport.clone()),
            RingInputs {
                members: ring_rx.clone(),
                layout: layout_rx.clone(),
                transition: transition_rx.clone(),
            },
            coordinator_counters.clone(),
            registry.actor("memtable"),
        )
        .map_err(|e| anyhow::anyhow!("cannot start the replication coordinator: {e}"))?
        .with_scan(memtable.clone().recipient())
        .with_local_reads(storage.local_reads.clone())
        .with_antientropy(ae_addr.clone().recipient())
        .with_tombstones(tombstones.clone().recipient());
        let coord = if cfg.handoff.enabled {
            coord.with_hints(hints_addr.clone().recipient())
        } else {
            coord
        };
        let replication_note = coord.replication_note();
        let coordinator_stats = coord.stats();
        coord_ctx.run(coord);
        let ae = &cfg.anti_entropy;
        let ae_cfg = AntiEntropyConfig {
            me: NodeId(cfg.node.id.clone()),
            enabled: ae.enabled,
            interval: crate::config::parse_duration(&ae.interval)?,
            max_bytes_per_sec: ae.max_bytes_per_sec,
            request_timeout: crate::config::parse_duration(&ae.request_timeout)?,
            partitions: cfg.cluster.partitions,
            shape: antientropy::tree::DEFAULT_SHAPE,
            mailbox: 4096,
        };
        let trees = antientropy::tree::Trees::new(ae_cfg.shape, cfg.cluster.partitions)
            .map_err(|e| anyhow::anyhow!("cannot start anti-entropy: {e}"))?;
        let ae_actor = AntiEntropy::new(
            ae_cfg,
            trees,
            memtable.clone().recipient(),
            memtable.clone().recipient(),
            coordinator.clone().recipient(),
            Some(transport),
            RingInputs {
                members: ring_rx,
                layout: layout_rx,
                transition: transition_rx,
            },
            registry.actor("anti_entropy"),
        );
        let antientropy_stats = ae_actor.stats();
        // A thread of its own: keeping the trees current is a tenth of the node's CPU under
        // writes, and it arrives in `LocalWrites` batches (512 writes or 5 ms), so the
        // thread wakes once per batch while the main loop serves requests.
        let ae_arbiter = Arbiter::new();
        ae_arbiter.spawn_fn(move || {
            Context::with_receiver(ae_rx).run(ae_actor);
        });
        log::info!("replica actor id {actor_id:016x}");

        let budget = ByteBudget::new(cfg.net.max_inflight_bytes);
        let shared = ConnectionShared {
            node_id: Arc::from(cfg.node.id.as_str()),
            coordinator_get: coordinator.clone().recipient(),
            coordinator_write: coordinator.clone().recipient(),
            coordinator_batch: coordinator.clone().recipient(),
            coordinator_keys: coordinator.clone().recipient(),
            coordinator_counters,
            counters: registry.actor("connection"),
            requests: registry.requests(),
            max_inflight,
            max_frame_bytes: cfg.net.max_frame_bytes,
            shutdown: shutdown.clone(),
            tokens: Arc::new(ClientTokens::new(cfg.auth.client_tokens.iter().map(String::as_str))),
            budget: budget.clone(),
            read_timeout: crate::config::parse_duration(&cfg.net.read_timeout)?,
            tls: tls.clone(),
        };
        if shared.tokens.open() {
            log::warn!(
                "the client port {} is open: any client may read and write (set auth.client_tokens to require a token)",
                cfg.net.listen
            );
        } else {
            log::info!(
                "clients need one of {} token(s) in hello",
                cfg.auth.client_tokens.len()
            );
        }
        let connections = shared.counters.clone();
        let listener_config = ListenerConfig {
            max_connections: cfg.net.max_connections,
            workers: match workers.is_empty() {
                true => vec![Arbiter::current()],
                false => workers.iter().map(|a| a.handle()).collect(),
            },
        };
        Listener::new(listener_config, shared, client_listener).start();

        let info = NodeInfo {
            node_id: cfg.node.id.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started,
            addresses: Addresses {
                client: cfg.net.listen.clone(),
                peer: cfg.net.peer_listen.clone(),
                admin: cfg.net.admin_listen.clone(),
                metrics: cfg.net.metrics_listen.clone(),
            },
            data_dir: cfg.node.data_dir.display().to_string(),
            durability: format!("{:?}", cfg.storage.durability).to_lowercase(),
        };
        let metrics_sources = metrics::Sources {
            registry: registry.clone(),
            health: health.clone(),
            started,
            storage: Some(storage.clone()),
            membership: Some(membership.clone()),
            coordinator: Some(coordinator_stats),
            antientropy: Some(antientropy_stats.clone()),
            tombstones: Some(tomb_stats.clone()),
            budget: Some(budget),
            hints: Some(hint_stats.clone()),
            transfers: Some(transfer_stats.clone()),
            token: (!cfg.auth.admin_token.is_empty())
                .then(|| blake3::hash(cfg.auth.admin_token.as_bytes())),
        };
        let admin = Admin::new(info, registry.clone(), health.clone(), memtable.clone())
            .with_storage(storage)
            .with_membership(membership.clone())
            .with_fault_injection(cfg.node.enable_fault_injection)
            .with_antientropy(admin::AntiEntropyHandles {
                start: ae_addr.clone().recipient(),
                status: ae_addr.clone().recipient(),
            })
            .with_stats_section("anti_entropy", Arc::new(move || antientropy_stats.named()))
            .with_stats_section("tombstones", Arc::new(move || tomb_stats.named()))
            .with_coordinator(admin::CoordinatorHandles {
                ring: coordinator.clone().recipient(),
                preflist: coordinator.clone().recipient(),
                object: coordinator.clone().recipient(),
                note: replication_note,
            })
            .with_hints(hints_addr.clone().recipient(), hint_stats.clone())
            .with_transfers(admin::TransferHandles {
                status: transfer_addr.clone().recipient(),
                leave: transfer_addr.clone().recipient(),
            })
            .with_stats_section("transfers", Arc::new(move || transfer_stats.named()))
            .start();
        let admin_token = (!cfg.auth.admin_token.is_empty())
            .then(|| blake3::hash(cfg.auth.admin_token.as_bytes()));
        actix::spawn(admin::serve(
            admin_listener,
            admin,
            cfg.net.max_frame_bytes,
            admin_token,
            shutdown.clone(),
            tls,
        ));
        actix::spawn(metrics::serve(metrics_listener, metrics_sources, shutdown.clone()));

        log::info!(
            "node {} serving clients on {}, admin on {}, metrics on {} (durability {:?}, data in {})",
            cfg.node.id,
            cfg.net.listen,
            cfg.net.admin_listen,
            cfg.net.metrics_listen,
            cfg.storage.durability,
            cfg.node.data_dir.display()
        );
        // Handlers first: a SIGTERM right after READY=1 (systemctl stop) must shut down
        // gracefully, not kill the node with the default action.
        let signals = StopSignals::install();
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        // WATCHDOG=1 from this (the main) event loop: a wedged loop gets the node restarted.
        watchdog::start();

        signals.wait().await;
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        // No `Leave`: a stop is a restart, not a departure. Peers see this node go down (and
        // route around it); it stays in the ring layout, so nothing moves while it is away.
        // Departing is `troupe admin leave`.
        drop(membership);
        log::info!("shutting down: no new requests; finishing {} connection(s)", connections.instances());
        shutdown.cancel();
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while connections.instances() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let synced = memtable.send(SyncWal).await;
        for w in &workers {
            w.stop();
        }
        background_arbiter.stop();
        ae_arbiter.stop();
        match synced {
            Ok(Ok(())) => {
                log::info!("WAL synced; bye");
                Ok(())
            }
            Ok(Err(e)) => Err(anyhow::anyhow!("final WAL sync failed: {e}")),
            Err(e) => Err(anyhow::anyhow!("storage actor gone at shutdown: {e}")),
        }
    });
    System::current().stop();
    result
}

/// Starts the peer transport, the Membership and FailureDetector actors, and the peer
/// listener; joins through the seeds.
#[allow(clippy::too_many_arguments)] // the node's wiring: each is one actor's link
fn start_membership(
    cfg: &Config,
    listener: TcpListener,
    registry: &Registry,
    data_sink: Recipient<peer::DataInbound>,
    layout_sink: Recipient<peer::LayoutInbound>,
    antientropy_sink: Recipient<peer::AntiEntropyInbound>,
    tomb_sink: Recipient<peer::TombInbound>,
    transfer_sink: Recipient<peer::TransferInbound>,
    shutdown: CancellationToken,
    tls: Option<Arc<troupe_actors::tls::NodeTls>>,
) -> (Addr<membership::actor::MembershipActor>, PeerTransport) {
    let m = &cfg.membership;
    let swim = SwimConfig {
        probe_interval_ms: m.probe_interval_ms,
        probe_timeout_ms: m.probe_timeout_ms,
        indirect_probes: m.indirect_probes,
        suspicion_mult: u64::from(m.suspicion_mult),
        suspicion_max_timeout_mult: u64::from(m.suspicion_max_timeout_mult),
        awareness_max_multiplier: m.awareness_max_multiplier,
        // Checked when the configuration was loaded (`Config::validate`).
        late_tolerance_ms: crate::config::parse_duration(&m.late_tolerance)
            .map_or(100, |d| d.as_millis() as u64),
        retransmit_mult: m.retransmit_mult,
        gossip_interval_ms: m.gossip_interval_ms,
        gossip_nodes: m.gossip_nodes,
        push_pull_interval_ms: m.push_pull_interval_ms,
        reap_after_ms: m.reap_after_ms,
        reconnect_interval_ms: m.reconnect_interval_ms,
        ..SwimConfig::default()
    };
    // The run id changes on every start: wall-clock start time in ms.
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64);
    let me = MemberInfo {
        id: NodeId(cfg.node.id.clone()),
        client_addr: cfg.net.listen.clone(),
        peer_addr: cfg.net.peer_listen.clone(),
        admin_addr: cfg.net.admin_listen.clone(),
        incarnation: 0,
        status: Status::Alive,
        run_id,
    };
    let mut peer_cfg = PeerConfig::new(
        me.id.clone(),
        &cfg.cluster.secret,
        cfg.net.max_frame_bytes,
        m.probe_interval_ms,
        m.probe_timeout_ms,
    );
    peer_cfg.tls = tls;
    let transport = PeerTransport::new(peer_cfg, shutdown.clone());
    let (mem, _detector) = membership::start(me, swim, &cfg.net.seeds, transport.clone(), registry);
    let sinks = peer::Sinks {
        swim: mem.clone().recipient(),
        data: Some(peer::DataSink {
            to: data_sink,
            counters: registry.actor("coordinator"),
        }),
        layout: Some(layout_sink),
        antientropy: Some(antientropy_sink),
        tomb: Some(tomb_sink),
        transfer: Some(transfer_sink),
    };
    actix::spawn(peer::serve(listener, transport.clone(), sinks, shutdown));
    mem.do_send(Join);
    log::info!(
        "membership: peers on {} (run id {run_id}, probe every {} ms, auth {})",
        cfg.net.peer_listen,
        m.probe_interval_ms,
        if cfg.cluster.secret.is_empty() {
            "off"
        } else {
            "on"
        }
    );
    (mem, transport)
}

/// SIGTERM and SIGINT, caught from [`StopSignals::install`] on.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> StopSignals {
        use tokio::signal::unix::{signal, SignalKind};
        StopSignals {
            term: signal(SignalKind::terminate()).expect("installing a SIGTERM handler"),
            int: signal(SignalKind::interrupt()).expect("installing a SIGINT handler"),
        }
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => log::info!("SIGTERM received"),
            _ = self.int.recv() => log::info!("SIGINT received"),
        }
    }
}
