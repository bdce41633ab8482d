//! The actors of a troupe node, and the pure cores they drive.
//!
//! Layout (one folder per actor):
//! - [`memtable`]: the Memtable actor, its in-memory tables and the write-ahead log.
//! - [`flusher`], [`compactor`], [`gc`]: the LSM background actors.
//! - [`engine`]: the synchronous LSM core they drive (SSTables, manifest, compaction).
//! - [`storage`]: opens the engine and WAL at start-up and wires the storage actors.
//! - [`connection`]: the client Listener actor and one Connection actor per client socket.
//! - [`admin`]: the Admin actor and the admin-port listener.
//! - [`membership`]: the Membership actor and its pure member table (SWIM gossip, merge).
//! - [`failure_detector`]: the FailureDetector actor and its pure SWIM/Lifeguard prober.
//! - [`peer`]: the peer transport: authenticated per-peer connections on the peer port.
//! - [`ring`]: the partition table (pure): keys to partitions, partitions to replicas, and
//!   the layout (a versioned table, each computed from the previous one).
//! - [`layout`]: the Layout actor: the layout the nodes agree on, gossiped and persisted.
//! - [`hints`]: the HintedHandoff actor: durable hints for down primaries, delivered when
//!   they are back (sloppy quorum).
//! - [`sim`]: a deterministic in-process simulator of the membership cores (no sockets).
//! - `crash_sim` (tests only): records the storage's file-system operations and rebuilds
//!   the states a power cut could leave, for the crash-consistency test.
//! - [`stats`]: per-actor counters shown by `troupe admin actors` and the metrics endpoint.
//! - [`backoff`]: pure exponential backoff and the retry gate of failing background work.
//! - [`idmap`]: fast deterministic hash maps for keys the node makes (peer ids, block ids).
//!
//! Actors receive typed actix messages; the same types cross the network as MessagePack
//! (see the `troupe-protocol` crate). Blocking disk I/O never runs on an actor's event loop:
//! the WAL has its own writer thread.

pub mod admin;
pub mod antientropy;
pub mod backoff;
pub mod compactor;
pub mod connection;
pub mod coordinator;
#[cfg(test)]
pub mod crash_sim;
pub mod engine;
pub mod failure_detector;
pub mod flusher;
pub mod gc;
pub mod handoff;
pub mod hints;
pub mod idmap;
pub mod keyhash;
pub mod layout;
pub mod membership;
pub mod memtable;
pub mod net;
pub mod peer;
pub mod ring;
pub mod scratch;
pub mod sim;
pub mod stats;
pub mod storage;
pub mod tls;
pub mod tombstones;
