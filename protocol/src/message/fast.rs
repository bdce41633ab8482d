//! Hand-written MessagePack for the two frames every request pays for: a `get`, `put` or
//! `delete` request coming in, and a reply of `values` and `context` (or nothing) going
//! out. Through serde, decoding a request was 6.5% of a node's CPU under pipelined gets
//! (`deserialize_any` dispatch and an `Option` visitor per field) and encoding its response
//! about 4%.
//!
//! Invariants:
//! - [`decode_plain_request`] returns `Some` only for a frame that the serde path
//!   ([`super::decode_request`]) decodes to the same request; anything else (another op, a
//!   field it does not read, nil, a repeated field, an integer id written as signed, bytes
//!   after the map) is `None`, and the caller falls back to serde, whose answer, error
//!   messages included, is the one the protocol documents.
//! - [`encode_plain_response`] writes exactly the bytes `rmp_serde` writes for the same
//!   [`Response`] (smallest integer, string, bin, array and map headers, fields in
//!   declaration order, absent fields left out), or nothing and returns `false`.
//!
//! Both are held to serde by the property tests in `fast/tests.rs`.

use super::{Reply, Request, Response};
use crate::mp::{self, Cursor};

/// A `get`, `put` or `delete` request with no field besides `id`, `op`, `key`, `value` and
/// `context`, decoded without serde; `None` for anything else (see the module docs).
pub(super) fn decode_plain_request(body: &[u8]) -> Option<(u64, Request)> {
    let mut c = Cursor::new(body);
    let n = c.map_len()?;
    let (mut id, mut op, mut key, mut value, mut context) = (None, None, None, None, None);
    for _ in 0..n {
        let slot = match c.str_bytes()? {
            b"id" => {
                if id.replace(c.uint()?).is_some() {
                    return None;
                }
                continue;
            }
            b"op" => &mut op,
            b"key" => &mut key,
            b"value" => &mut value,
            b"context" => &mut context,
            _ => return None,
        };
        if slot.replace(c.bytes_or_str()?).is_some() {
            return None;
        }
    }
    if !c.at_end() {
        return None;
    }
    let (id, key) = (id?, key?.to_vec());
    let context = context.map(<[u8]>::to_vec);
    let req = match op? {
        b"get" if value.is_none() && context.is_none() => Request::Get {
            key,
            r: None,
            after: None,
        },
        b"put" => Request::Put {
            key,
            value: value?.to_vec(),
            context,
            w: None,
        },
        b"delete" if value.is_none() => Request::Delete {
            key,
            context,
            w: None,
        },
        _ => return None,
    };
    Some((id, req))
}

/// Appends `resp` as serde would when it is a success whose reply holds at most `values`
/// and `context` (get, put, delete, ping) and returns `true`; otherwise writes nothing and
/// returns `false`.
pub(super) fn encode_plain_response(resp: &Response, out: &mut Vec<u8>) -> bool {
    let reply = match (&resp.ok, &resp.err) {
        (
            Some(
                r @ Reply {
                    node: None,
                    version: None,
                    value: None,
                    members: None,
                    keys: None,
                    more: None,
                    cursor: None,
                    ..
                },
            ),
            None,
        ) => r,
        _ => return false,
    };
    mp::map(out, 2);
    mp::str(out, "id");
    mp::uint(out, resp.id);
    mp::str(out, "ok");
    mp::map(
        out,
        usize::from(reply.values.is_some()) + usize::from(reply.context.is_some()),
    );
    if let Some(values) = &reply.values {
        mp::str(out, "values");
        mp::array(out, values.len());
        for v in values {
            mp::bin(out, v);
        }
    }
    if let Some(context) = &reply.context {
        mp::str(out, "context");
        mp::bin(out, context);
    }
    true
}

#[cfg(test)]
mod tests;
