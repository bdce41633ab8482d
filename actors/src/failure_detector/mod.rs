//! Failure detection: SWIM probing with Lifeguard extensions.
//!
//! - [`core`]: the pure detector (probe schedule, indirect probes and nacks, suspicion
//!   timers, local health multiplier).
//! - [`inputs`]: the typed contract with the membership side ([`inputs::ToDetector`]).
//! - [`actor`]: the FailureDetector actor that drives the core with real time.
pub mod actor;
pub mod core;
pub mod inputs;
