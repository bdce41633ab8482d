//! Integration tests against real `troupe node` processes on loopback, one scenario per
//! module. They share one test binary so CI links once.

mod harness;

mod admin;
mod antientropy;
mod auth;
mod backpressure;
mod check;
mod cli;
mod cluster;
mod console;
mod crash_recovery;
mod deploy;
mod flood;
mod handoff;
mod keys;
mod layout;
mod malformed_input;
mod many_connections;
mod membership_loss;
mod metrics;
mod pipeline;
mod replication;
mod storage_engine;
mod tls;
mod tombstones;
mod transfers;
mod types;
mod wal_repair;
