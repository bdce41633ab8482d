//! Membership: the member table, merge rules and gossip dissemination.
pub mod config;
pub mod core;
pub mod driver;
