//! The frame codec: a 4-byte big-endian length `N`, then `N` bytes holding one MessagePack
//! value.
//!
//! Invariant: a frame whose header announces more than `max_frame_bytes` is refused from the
//! header alone ([`FrameError::TooLarge`]); not one byte of its body is buffered. The caller
//! then answers `too_large` and closes the connection, because the stream can no longer be
//! trusted to be in sync.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Default maximum frame body size: 16 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The header announced `len` bytes, more than the configured `max`. Nothing was buffered.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Decodes the one MessagePack value a frame body holds. Bytes after that value are an
/// error, not ignored: a frame holds exactly one value (PROTOCOL.md, "Framing"), and a
/// sender whose frames carry more is out of step with the spec.
///
/// ```
/// use troupe_protocol::codec::decode_one;
/// let body = rmp_serde::to_vec(&7u32).unwrap();
/// assert_eq!(decode_one::<u32>(&body).unwrap(), 7);
/// let mut longer = body.clone();
/// longer.push(0xc0);
/// assert!(decode_one::<u32>(&longer).is_err());
/// ```
pub fn decode_one<'a, T: serde::Deserialize<'a>>(
    body: &'a [u8],
) -> Result<T, rmp_serde::decode::Error> {
    // Straight from the slice: the reader-based deserializer allocates a scratch buffer
    // per call (one heap allocation per request on the hot path).
    let mut de = rmp_serde::Deserializer::from_read_ref(body);
    let value = T::deserialize(&mut de)?;
    if <serde::de::IgnoredAny as serde::Deserialize>::deserialize(&mut de).is_err() {
        return Ok(value); // nothing after the value
    }
    // Rare: measure how much follows, for the message.
    let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(body));
    <serde::de::IgnoredAny as serde::Deserialize>::deserialize(&mut de)?;
    let used = usize::try_from(de.position()).unwrap_or(usize::MAX);
    let extra = body.len().saturating_sub(used);
    Err(rmp_serde::decode::Error::Syntax(format!(
        "{extra} byte(s) after the MessagePack value; a frame holds exactly one value"
    )))
}

/// Length-prefixed frame codec with a hard size limit.
///
/// ```
/// use bytes::BytesMut;
/// use tokio_util::codec::{Decoder, Encoder};
/// use troupe_protocol::codec::FrameCodec;
///
/// let mut codec = FrameCodec::new(1024);
/// let mut buf = BytesMut::new();
/// codec.encode(bytes::Bytes::from_static(b"\x80"), &mut buf).unwrap();
/// assert_eq!(&buf[..], b"\x00\x00\x00\x01\x80");
/// assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[..], b"\x80");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max_frame_bytes: usize,
}

impl FrameCodec {
    pub fn new(max_frame_bytes: usize) -> Self {
        FrameCodec { max_frame_bytes }
    }

    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len > self.max_frame_bytes {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame_bytes,
            });
        }
        if src.len() < 4 + len {
            // Reserve only what this (already size-checked) frame still needs.
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        src.advance(4);
        Ok(Some(src.split_to(len)))
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode_slice(&item, dst)
    }
}

impl FrameCodec {
    /// Frames `item` onto `dst` as [`Encoder::encode`] does, from a borrowed body (a
    /// buffer the caller reuses).
    pub fn encode_slice(&self, item: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        if item.len() > self.max_frame_bytes {
            return Err(FrameError::TooLarge {
                len: item.len(),
                max: self.max_frame_bytes,
            });
        }
        dst.reserve(4 + item.len());
        dst.put_u32(item.len() as u32);
        dst.extend_from_slice(item);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_frames_wait_for_more() {
        let mut codec = FrameCodec::new(100);
        let mut buf = BytesMut::from(&b"\x00\x00"[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"\x00\x03ab");
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"c\x00");
        assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[..], b"abc");
        assert_eq!(&buf[..], b"\x00");
    }

    #[test]
    fn oversized_header_is_refused_before_buffering() {
        let mut codec = FrameCodec::new(100);
        let mut buf = BytesMut::from(&b"\xff\xff\xff\xff"[..]);
        let cap_before = buf.capacity();
        match codec.decode(&mut buf) {
            Err(FrameError::TooLarge { len, max }) => {
                assert_eq!(len, u32::MAX as usize);
                assert_eq!(max, 100);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(
            buf.capacity(),
            cap_before,
            "nothing reserved for a refused frame"
        );
    }

    #[test]
    fn encoder_refuses_oversized_frames() {
        let mut codec = FrameCodec::new(2);
        let mut buf = BytesMut::new();
        assert!(codec.encode(Bytes::from_static(b"abc"), &mut buf).is_err());
        assert!(buf.is_empty());
    }
}
