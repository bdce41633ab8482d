//! Fuzz target `sstable`: see `troupe_fuzz::sstable` and docs/FUZZING.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| troupe_fuzz::sstable::run(data));
