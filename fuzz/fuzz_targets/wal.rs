//! Fuzz target `wal`: see `troupe_fuzz::wal` and docs/FUZZING.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| troupe_fuzz::wal::run(data));
