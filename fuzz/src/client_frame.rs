//! Target `client_frame`: the client port's read path. Bytes arrive in chunks (the chunk
//! size comes from the input) and go through [`FrameCodec`] with a small maximum frame size
//! (also from the input, so that `too_large` is reachable); every frame body goes to
//! [`decode_request`] (the server's request decoder), to [`Response::decode`] (what a client
//! decodes), to [`AdminRequest::decode`] (the admin port shares the framing), and a request's
//! causal context to [`VersionVector::decode`], as the coordinator does.
//!
//! Checked for any input: no panic; a frame is never longer than the limit and a
//! `TooLarge` is only returned for a header past the limit; the codec never reserves more
//! than one frame's worth beyond what it was given; whatever decodes re-encodes to
//! something that decodes to the same value.

use crate::Bytes;
use bytes::BytesMut;
use tokio_util::codec::Decoder;
use troupe_protocol::admin::AdminRequest;
use troupe_protocol::message::{decode_request, encode_request, Request, Response};
use troupe_protocol::object::VersionVector;
use troupe_protocol::{ErrorCode, FrameCodec, FrameError};

pub fn run(data: &[u8]) {
    let mut b = Bytes::new(data);
    let max = usize::from(b.u16());
    let chunk = 1 + usize::from(b.u8());
    let stream = b.rest();
    let mut codec = FrameCodec::new(max);
    let mut buf = BytesMut::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= max, "a frame past the limit was returned");
                    body(&frame);
                }
                Ok(None) => break,
                Err(FrameError::TooLarge { len, max: m }) => {
                    assert_eq!(m, max);
                    assert!(len > max, "TooLarge for a frame within the limit");
                    return; // the server closes the connection here
                }
                Err(FrameError::Io(e)) => panic!("the frame codec does no I/O: {e}"),
            }
        }
        // Nothing past the limit is ever reserved: at most one frame (header and body)
        // beyond the bytes that arrived.
        assert!(
            buf.capacity() <= stream.len() + 4 + max + 64,
            "codec reserved {} bytes for a {max}-byte limit",
            buf.capacity()
        );
    }
}

/// One frame body through every decoder that reads one.
pub fn body(frame: &[u8]) {
    match decode_request(frame) {
        Ok((id, req)) => {
            let again = encode_request(id, &req);
            assert_eq!(
                decode_request(&again),
                Ok((id, req.clone())),
                "a decoded request re-encodes to another one"
            );
            let ctx = match &req {
                Request::Get { after, .. } => after.as_deref(),
                Request::Put { context, .. } | Request::Delete { context, .. } => {
                    context.as_deref()
                }
                _ => None,
            };
            if let Some(ctx) = ctx {
                crate::object::context(ctx);
            }
        }
        Err(e) => assert_eq!(e.error.code, ErrorCode::BadRequest, "{e:?}"),
    }
    if let Ok(r) = Response::decode(frame) {
        assert_eq!(
            Response::decode(&r.encode()).as_ref().ok(),
            Some(&r),
            "a decoded response re-encodes to another one"
        );
        if let Some(ctx) = r.ok.as_ref().and_then(|ok| ok.context.as_ref()) {
            let _ = VersionVector::decode(ctx);
        }
    }
    if let Ok(a) = AdminRequest::decode(frame) {
        assert_eq!(
            AdminRequest::decode(&a.encode()).as_ref().ok(),
            Some(&a),
            "a decoded admin request re-encodes to another one"
        );
    }
}
