//! The fuzz harnesses behind `fuzz_targets/*.rs`, one module per target, and the seed
//! corpus generator (`seeds`, written out by `examples/seed.rs`).
//!
//! Each `run(data)` feeds arbitrary bytes to one of troupe's decoders of untrusted input and
//! checks what must hold for *any* input: no panic, no unbounded allocation (libFuzzer's
//! `-rss_limit_mb` and `-malloc_limit_mb` catch those), no hang, and the decoder's own
//! promises (a canonical decoding re-encodes to the same bytes; recovery is idempotent).
//! Assertions here are those promises; a failing one is a bug in troupe, not in the
//! harness. The harnesses are plain functions, so `tests/` runs them over the seeds on a
//! stable toolchain.
//!
//! Checksums: the disk formats checksum everything, so random bytes almost never get past
//! the first check. The WAL and SSTable harnesses therefore take a leading *mode* byte whose
//! bits say which checksums to recompute over the fuzzer's bytes before parsing, so that
//! the structure behind the checksums is fuzzed too.

pub mod client_frame;
pub mod object;
pub mod peer_msg;
pub mod seeds;
pub mod sstable;
pub mod wal;

/// A cursor taking structure out of fuzz bytes; reads past the end yield zeros.
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        b.iter_mut().for_each(|x| *x = self.u8());
        u64::from_le_bytes(b)
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.data.split_at(n.min(self.data.len()));
        self.data = b;
        a
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(usize::MAX)
    }
}
