//! The ReplicationCoordinator: every client get, put and delete goes through it.
//!
//! - [`quorum`]: the pure quorum bookkeeping of one request (when to answer, read repair).

pub mod quorum;
