//! Fuzz target `object`: see `troupe_fuzz::object` and docs/FUZZING.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| troupe_fuzz::object::run(data));
