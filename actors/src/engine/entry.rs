//! The one record type of the storage engine, shared with the memtable.
//!
//! Invariants: a larger `seq` is newer; `value: None` is a tombstone. Wherever entries are
//! streamed (memtable iterators, tables, merges) they are ordered by key ascending (byte
//! order) and, for equal keys, by `seq` descending, so the first entry seen for a key is
//! its newest version.

use std::cmp::Ordering;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    pub key: Vec<u8>,
    pub seq: u64,
    /// `None` marks a tombstone (a delete).
    pub value: Option<Vec<u8>>,
}

impl Entry {
    pub fn put(key: impl Into<Vec<u8>>, seq: u64, value: impl Into<Vec<u8>>) -> Self {
        Entry {
            key: key.into(),
            seq,
            value: Some(value.into()),
        }
    }

    pub fn tombstone(key: impl Into<Vec<u8>>, seq: u64) -> Self {
        Entry {
            key: key.into(),
            seq,
            value: None,
        }
    }

    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    /// Rough in-memory footprint, used for cache charging and size estimates.
    pub fn approx_size(&self) -> usize {
        self.key.len() + self.value.as_ref().map_or(0, Vec::len) + 16
    }
}

/// The stream order: key ascending, then seq descending (newest first).
pub fn stream_order(a_key: &[u8], a_seq: u64, b_key: &[u8], b_seq: u64) -> Ordering {
    a_key.cmp(b_key).then(b_seq.cmp(&a_seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_order_puts_newest_first() {
        assert_eq!(stream_order(b"a", 5, b"a", 3), Ordering::Less);
        assert_eq!(stream_order(b"a", 1, b"b", 9), Ordering::Less);
        assert_eq!(stream_order(b"b", 1, b"a", 9), Ordering::Greater);
        assert!(Entry::tombstone("k", 1).is_tombstone());
        assert!(!Entry::put("k", 1, "v").is_tombstone());
    }
}
