//! The replication frames every quorum read and write sends, by hand: a
//! [`PeerMsg::Data`](crate::swim::PeerMsg::Data) batch whose messages are all replica gets and
//! puts and their answers (`Get`, `Put`, `Object`, `Stored`). Through serde these frames
//! were about 7% of a three-node cluster's CPU under gets (the adjacently tagged envelope,
//! then `deserialize_any` per field).
//!
//! Invariants:
//! - [`encode_frame`] writes exactly the bytes `rmp_serde` writes for the same `PeerMsg`, or
//!   nothing (a batch holding any other message) and returns `false`;
//! - [`decode_frame`] reads only the layout serde writes (fields in declaration order, the
//!   envelope's tag first) and returns `Some` only for a frame serde decodes to the same
//!   batch; anything else is `None` and the caller decodes it through serde, whose errors
//!   are the ones logged.
//!
//! Both are held to serde by the property tests in `fast/tests.rs`.

use super::{DataMsg, DataReq, DataResp};
use crate::mp::{self, Cursor};

/// Appends `PeerMsg::Data(batch)` as serde would and returns `true` when every message is
/// a replica get or put or an answer to one; otherwise leaves `out` as it was.
pub(crate) fn encode_frame(batch: &[DataMsg], out: &mut Vec<u8>) -> bool {
    let start = out.len();
    mp::map(out, 2);
    mp::str(out, "k");
    mp::str(out, "data");
    mp::str(out, "m");
    mp::array(out, batch.len());
    for m in batch {
        if !encode_msg(m, out) {
            out.truncate(start);
            return false;
        }
    }
    true
}

fn encode_msg(m: &DataMsg, out: &mut Vec<u8>) -> bool {
    match m {
        DataMsg::Req {
            id,
            req: DataReq::Get { key },
        } => {
            head(out, "req", *id, 2);
            field_str(out, "op", "get");
            field_bin(out, "key", key);
        }
        DataMsg::Req {
            id,
            req: DataReq::Put { key, object },
        } => {
            head(out, "req", *id, 3);
            field_str(out, "op", "put");
            field_bin(out, "key", key);
            field_bin(out, "object", object);
        }
        DataMsg::Resp {
            id,
            resp: DataResp::Object { object },
        } => {
            head(out, "resp", *id, 2);
            field_str(out, "r", "object");
            match object {
                Some(o) => field_bin(out, "object", o),
                None => {
                    mp::str(out, "object");
                    mp::nil(out);
                }
            }
        }
        DataMsg::Resp {
            id,
            resp: DataResp::Stored,
        } => {
            head(out, "resp", *id, 1);
            field_str(out, "r", "stored");
        }
        _ => return false,
    }
    true
}

/// A message's map up to its body: `{"t": tag, "id": id, tag: ` and the body's map header
/// of `fields` entries.
fn head(out: &mut Vec<u8>, tag: &str, id: u64, fields: usize) {
    mp::map(out, 3);
    field_str(out, "t", tag);
    mp::str(out, "id");
    mp::uint(out, id);
    mp::str(out, tag);
    mp::map(out, fields);
}

fn field_bin(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    mp::str(out, name);
    mp::bin(out, value);
}

fn field_str(out: &mut Vec<u8>, name: &str, value: &str) {
    mp::str(out, name);
    mp::str(out, value);
}

/// The batch of a data frame written as [`encode_frame`] writes it; `None` for any other
/// frame (see the module docs).
pub(crate) fn decode_frame(body: &[u8]) -> Option<Vec<DataMsg>> {
    let mut c = Cursor::new(body);
    if c.map_len()? != 2 || !names(&mut c, &[b"k", b"data", b"m"])? {
        return None;
    }
    let n = c.array_len()?;
    let mut batch = Vec::with_capacity(capacity_for(n, body.len()));
    for _ in 0..n {
        batch.push(decode_msg(&mut c)?);
    }
    c.at_end().then_some(batch)
}

/// The smallest message this codec reads (`Resp { Stored }` with a one-byte id), in bytes.
const MIN_MSG_BYTES: usize = 27;

/// Messages reserved at once for a batch that says it holds `n` in a frame of `body_len`
/// bytes: no more than the frame can hold, nor than [`MAX_RESERVED`] (a larger batch grows
/// as it is read), so a count a hostile frame claims reserves little.
fn capacity_for(n: usize, body_len: usize) -> usize {
    n.min(body_len / MIN_MSG_BYTES).min(MAX_RESERVED)
}

/// The most messages reserved before any is read.
const MAX_RESERVED: usize = 1024;

/// Reads strings, `Some(true)` when they are `expected`.
fn names(c: &mut Cursor<'_>, expected: &[&[u8]]) -> Option<bool> {
    for e in expected {
        if c.str_bytes()? != *e {
            return Some(false);
        }
    }
    Some(true)
}

fn decode_msg(c: &mut Cursor<'_>) -> Option<DataMsg> {
    if c.map_len()? != 3 || !names(c, &[b"t"])? {
        return None;
    }
    let tag = c.str_bytes()?;
    if !names(c, &[b"id"])? {
        return None;
    }
    let id = c.uint()?;
    if c.str_bytes()? != tag {
        return None;
    }
    let fields = c.map_len()?;
    match (tag, fields) {
        (b"req", 2) if names(c, &[b"op", b"get", b"key"])? => {
            let key = c.bytes_or_str()?.to_vec();
            Some(DataMsg::Req {
                id,
                req: DataReq::Get { key },
            })
        }
        (b"req", 3) if names(c, &[b"op", b"put", b"key"])? => {
            let key = c.bytes_or_str()?.to_vec();
            if !names(c, &[b"object"])? {
                return None;
            }
            let object = c.bytes_or_str()?.to_vec();
            Some(DataMsg::Req {
                id,
                req: DataReq::Put { key, object },
            })
        }
        (b"resp", 2) if names(c, &[b"r", b"object", b"object"])? => {
            let object = match c.nil() {
                true => None,
                false => Some(c.bytes_or_str()?.to_vec()),
            };
            Some(DataMsg::Resp {
                id,
                resp: DataResp::Object { object },
            })
        }
        (b"resp", 1) if names(c, &[b"r", b"stored"])? => Some(DataMsg::Resp {
            id,
            resp: DataResp::Stored,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
