//! Fuzz target `peer_msg`: see `troupe_fuzz::peer_msg` and docs/FUZZING.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| troupe_fuzz::peer_msg::run(data));
