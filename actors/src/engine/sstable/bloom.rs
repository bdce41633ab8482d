//! Bloom filter over a table's distinct keys.
//!
//! ~10 bits per key and k = round(bits_per_key * ln 2) = 7 probes give a ~1% false-positive
//! rate. The k probe positions come from double hashing (`h1 + i*h2`, Kirsch-Mitzenmacher)
//! of one blake3 hash of the key, so each key is hashed once on write and once per lookup.
//! A "no" from the filter is definite; a "maybe" costs one data-block read.
//!
//! Encoding: `u8 k | varint num_bits | ceil(num_bits/8) bytes`.

use crate::engine::codec::{put_varint, DecodeError, Decoder};

/// The two 64-bit halves used for double hashing.
pub fn key_hash(key: &[u8]) -> (u64, u64) {
    let h = blake3::hash(key);
    let b = h.as_bytes();
    let mut a1 = [0u8; 8];
    let mut a2 = [0u8; 8];
    a1.copy_from_slice(&b[..8]);
    a2.copy_from_slice(&b[8..16]);
    // An odd step visits distinct positions for any power-of-two-ish size.
    (u64::from_le_bytes(a1), u64::from_le_bytes(a2) | 1)
}

#[derive(Debug, Clone)]
pub struct BloomFilter {
    k: u8,
    num_bits: u64,
    bits: Vec<u8>,
}

impl BloomFilter {
    /// Build from the key hashes of every distinct key.
    pub fn build(hashes: &[(u64, u64)], bits_per_key: usize) -> Self {
        let bits_per_key = bits_per_key.max(1);
        let k = ((bits_per_key as f64) * std::f64::consts::LN_2).round() as u8;
        let k = k.clamp(1, 30);
        let num_bits = ((hashes.len() * bits_per_key) as u64).max(64);
        let mut f = BloomFilter {
            k,
            num_bits,
            bits: vec![0u8; num_bits.div_ceil(8) as usize],
        };
        for &(h1, h2) in hashes {
            for i in 0..u64::from(k) {
                let bit = h1.wrapping_add(i.wrapping_mul(h2)) % num_bits;
                f.bits[(bit / 8) as usize] |= 1 << (bit % 8);
            }
        }
        f
    }

    pub fn may_contain(&self, key: &[u8]) -> bool {
        self.may_contain_hash(key_hash(key))
    }

    pub fn may_contain_hash(&self, (h1, h2): (u64, u64)) -> bool {
        (0..u64::from(self.k)).all(|i| {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % self.num_bits;
            self.bits[(bit / 8) as usize] & (1 << (bit % 8)) != 0
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.k);
        put_varint(out, self.num_bits);
        out.extend_from_slice(&self.bits);
    }

    pub fn decode(raw: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(raw);
        let k = d.u8()?;
        if k == 0 || k > 30 {
            return Err(DecodeError {
                at: 0,
                what: "bloom probe count out of range",
            });
        }
        let at = d.pos();
        let num_bits = d.varint()?;
        if num_bits == 0 {
            return Err(DecodeError {
                at,
                what: "bloom filter has zero bits",
            });
        }
        let nbytes = usize::try_from(num_bits.div_ceil(8)).map_err(|_| DecodeError {
            at,
            what: "bloom size overflow",
        })?;
        let bits = d.take(nbytes)?.to_vec();
        if !d.is_empty() {
            return Err(DecodeError {
                at: d.pos(),
                what: "trailing bytes after bloom filter",
            });
        }
        Ok(BloomFilter { k, num_bits, bits })
    }

    pub fn probes(&self) -> u8 {
        self.k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build_for(n: usize) -> BloomFilter {
        let hashes: Vec<_> = (0..n)
            .map(|i| key_hash(format!("key-{i}").as_bytes()))
            .collect();
        BloomFilter::build(&hashes, 10)
    }

    #[test]
    fn no_false_negatives_and_fp_rate_near_one_percent() {
        let n = 20_000;
        let f = build_for(n);
        assert_eq!(f.probes(), 7);
        for i in 0..n {
            assert!(f.may_contain(format!("key-{i}").as_bytes()));
        }
        let probes = 100_000;
        let fps = (0..probes)
            .filter(|i| f.may_contain(format!("absent-{i}").as_bytes()))
            .count();
        let rate = fps as f64 / probes as f64;
        eprintln!("bloom false-positive rate: {rate}");
        // Theory for 10 bits/key, k=7: ~0.82%.
        assert!(rate < 0.02, "false-positive rate {rate}");
        assert!(
            rate > 0.001,
            "suspiciously low rate {rate}: filter not exercised?"
        );
    }

    #[test]
    fn encode_decode_round_trip() {
        let f = build_for(100);
        let mut buf = Vec::new();
        f.encode(&mut buf);
        let g = BloomFilter::decode(&buf).expect("decodes");
        assert!(g.may_contain(b"key-42"));
        assert!(BloomFilter::decode(&buf[..buf.len() - 1]).is_err());
    }
}
