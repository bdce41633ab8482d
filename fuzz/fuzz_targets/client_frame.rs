//! Fuzz target `client_frame`: see `troupe_fuzz::client_frame` and docs/FUZZING.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| troupe_fuzz::client_frame::run(data));
