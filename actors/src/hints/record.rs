//! The on-disk form of one hint: a record in a primary's append-only segment file.
//!
//! ```text
//! record  = len: u32 LE | blake3(payload): 32 bytes | payload (len bytes)
//! payload = written_at_ms: u64 LE | key_len: u32 LE | key | object (the storage encoding)
//! ```
//!
//! Pure: encoding, and scanning a segment's bytes into records. A scan stops at the first
//! record that is incomplete or whose checksum does not match: that is a torn tail (a crash
//! during an append that was never fsynced, hence never acknowledged), and everything from
//! there on is cut. A record before it was fsynced before its hint was acknowledged, so
//! nothing acknowledged is ever cut.

/// Bytes of a record before its payload.
pub const HEADER: usize = 4 + 32;
/// Bytes of a payload before its key.
const PAYLOAD_HEADER: usize = 8 + 4;

/// One hint as it is delivered: the key and the object (its storage encoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HintData {
    pub key: Vec<u8>,
    pub object: Vec<u8>,
}

/// What a scan keeps of each record (the actor keeps this in memory, not the object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta {
    /// Where the record starts in its segment.
    pub offset: u64,
    /// The whole record's size (header included).
    pub len: u64,
    pub at_ms: u64,
    pub key_hash: [u8; 32],
}

/// The bytes of one record (see the module docs).
pub fn encode(key: &[u8], object: &[u8], at_ms: u64) -> Vec<u8> {
    let payload_len = PAYLOAD_HEADER + key.len() + object.len();
    let mut payload = Vec::with_capacity(payload_len);
    payload.extend_from_slice(&at_ms.to_le_bytes());
    payload.extend_from_slice(&(key.len() as u32).to_le_bytes());
    payload.extend_from_slice(key);
    payload.extend_from_slice(object);
    let mut out = Vec::with_capacity(HEADER + payload_len);
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(blake3::hash(&payload).as_bytes());
    out.extend_from_slice(&payload);
    out
}

/// The size of the record `encode` makes.
pub fn encoded_len(key: &[u8], object: &[u8]) -> u64 {
    (HEADER + PAYLOAD_HEADER + key.len() + object.len()) as u64
}

/// The hash a key is counted under for `HintsPending`.
pub fn key_hash(key: &[u8]) -> [u8; 32] {
    *blake3::hash(key).as_bytes()
}

/// One record parsed from the front of `bytes`: its payload's fields and its size, or
/// `None` if `bytes` does not start with a whole, intact record.
fn parse(bytes: &[u8]) -> Option<(u64, &[u8], &[u8], usize)> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let sum = bytes.get(4..HEADER)?;
    let payload = bytes.get(HEADER..HEADER.checked_add(len)?)?;
    if blake3::hash(payload).as_bytes() != sum || payload.len() < PAYLOAD_HEADER {
        return None;
    }
    let at_ms = u64::from_le_bytes(payload[..8].try_into().ok()?);
    let key_len = u32::from_le_bytes(payload[8..12].try_into().ok()?) as usize;
    let key = payload.get(PAYLOAD_HEADER..PAYLOAD_HEADER.checked_add(key_len)?)?;
    let object = &payload[PAYLOAD_HEADER + key_len..];
    Some((at_ms, key, object, HEADER + len))
}

/// Decodes the one record `bytes` holds (a delivery reads records back by offset).
pub fn decode(bytes: &[u8]) -> Option<HintData> {
    let (_, key, object, used) = parse(bytes)?;
    (used == bytes.len()).then(|| HintData {
        key: key.to_vec(),
        object: object.to_vec(),
    })
}

/// A segment's intact records, and how many bytes are intact (the rest is a torn tail).
pub fn scan(bytes: &[u8]) -> (Vec<RecordMeta>, u64) {
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some((at_ms, key, _, used)) = parse(&bytes[at..]) {
        out.push(RecordMeta {
            offset: at as u64,
            len: used as u64,
            at_ms,
            key_hash: key_hash(key),
        });
        at += used;
    }
    (out, at as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_scan_in_order() {
        let mut seg = encode(b"a", b"obj-a", 5);
        seg.extend(encode(b"bb", b"", 7));
        let (recs, good) = scan(&seg);
        assert_eq!(good, seg.len() as u64);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].at_ms, 7);
        assert_eq!(recs[1].key_hash, key_hash(b"bb"));
        assert_eq!(recs[0].len, encoded_len(b"a", b"obj-a"));
        let first = &seg[..recs[0].len as usize];
        assert_eq!(
            decode(first),
            Some(HintData {
                key: b"a".to_vec(),
                object: b"obj-a".to_vec()
            })
        );
    }

    /// Every cut inside the last record, and any flipped byte in it, leaves exactly the
    /// records before it.
    #[test]
    fn a_torn_or_corrupt_tail_is_cut_at_the_last_intact_record() {
        let first = encode(b"k1", b"v1", 1);
        let mut seg = first.clone();
        seg.extend(encode(b"k2", b"value-two", 2));
        for cut in first.len()..seg.len() {
            let (recs, good) = scan(&seg[..cut]);
            assert_eq!(recs.len(), 1, "cut at {cut}");
            assert_eq!(good, first.len() as u64);
        }
        for flip in first.len()..seg.len() {
            let mut bad = seg.clone();
            bad[flip] ^= 0x40;
            let (recs, good) = scan(&bad);
            assert_eq!(
                (recs.len(), good),
                (1, first.len() as u64),
                "flip at {flip}"
            );
        }
    }
}
