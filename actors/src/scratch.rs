//! A thread's reused encoding buffer, for frames that leave as [`Bytes`] (peer frames;
//! client responses are framed straight into their connection's outbox): a frame is
//! encoded into it and copied out at its exact size, so it costs
//! one allocation and none for growth (encoding into a fresh `Vec` grew it four or five
//! times per response; a peer batch, from empty, once per doubling: about ten times for
//! 4 KiB).
//!
//! Invariants: a frame never carries bytes of an earlier one (the buffer is cleared before
//! each encoding), and the buffer does not stay large: a frame larger than
//! [`SCRATCH_BYTES`] takes the buffer itself (no copy of a large value) and the thread
//! starts a new small one. A call made while the buffer is in use (an encoder that
//! encodes) or while the thread's locals are torn down encodes into a fresh `Vec` instead.

use bytes::Bytes;
use std::cell::RefCell;

/// Frames up to this size are copied out of the buffer; larger ones take it.
pub const SCRATCH_BYTES: usize = 64 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The bytes `encode` appends to an empty buffer (see the module docs).
pub fn encode_bytes(encode: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let mut encode = Some(encode);
    let mut run = |buf: &mut Vec<u8>| (encode.take().expect("encodes once"))(buf);
    let reused = SCRATCH.try_with(|s| {
        let mut buf = s.try_borrow_mut().ok()?;
        buf.clear();
        run(&mut buf);
        Some(if buf.len() > SCRATCH_BYTES {
            Bytes::from(std::mem::replace(
                &mut *buf,
                Vec::with_capacity(SCRATCH_BYTES / 16),
            ))
        } else {
            Bytes::copy_from_slice(&buf)
        })
    });
    match reused {
        Ok(Some(bytes)) => bytes,
        Ok(None) | Err(_) => {
            let mut own = Vec::new();
            run(&mut own);
            Bytes::from(own)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_frame_is_its_own_bytes_whatever_came_before() {
        let small = |b: &mut Vec<u8>| b.extend_from_slice(b"small");
        let big = |b: &mut Vec<u8>| b.resize(3 * SCRATCH_BYTES, 7);
        let empty = |_: &mut Vec<u8>| {};
        // A large one leaves the buffer; the next small one must not carry its bytes.
        assert_eq!(encode_bytes(small), &b"small"[..]);
        assert_eq!(encode_bytes(big), vec![7u8; 3 * SCRATCH_BYTES]);
        assert_eq!(encode_bytes(small), &b"small"[..]);
        assert_eq!(encode_bytes(empty), &b""[..]);
        assert_eq!(encode_bytes(big).len(), 3 * SCRATCH_BYTES);
        assert!(SCRATCH.with(|s| s.borrow().capacity()) < SCRATCH_BYTES);
    }

    #[test]
    fn an_encoder_that_encodes_gets_a_buffer_of_its_own() {
        let outer = encode_bytes(|b| {
            b.extend_from_slice(b"out:");
            let inner = encode_bytes(|b| b.extend_from_slice(b"in"));
            b.extend_from_slice(&inner);
        });
        assert_eq!(outer, &b"out:in"[..]);
    }
}
