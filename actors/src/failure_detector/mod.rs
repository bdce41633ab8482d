//! Failure detection: SWIM probing with Lifeguard extensions.
pub mod core;
pub mod inputs;
