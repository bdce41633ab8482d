//! Request encoding: [`Request`]s, and the gets and puts a load generator sends from
//! borrowed bytes, written as the wire map through one borrowing struct, so the three
//! paths cannot disagree on a field's name or order.

use super::{Quorum, Request};
use serde::Serialize;
use serde_bytes::Bytes;

/// The decoder's `WireRequest` for encoding, field for field, borrowing from the
/// [`Request`]: encoding copies no key, value or context before it writes them (the golden
/// tests pin the bytes).
#[derive(Serialize, Default)]
struct WireRequestOut<'a> {
    id: u64,
    op: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a Bytes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a Bytes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<&'a Bytes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    r: Option<Quorum>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<&'a Bytes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    w: Option<Quorum>,
    #[serde(skip_serializing_if = "Option::is_none")]
    by: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    members: Option<Vec<&'a Bytes>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix: Option<&'a Bytes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<u32>,
}

/// Encodes a request frame body (without the length prefix).
///
/// ```
/// use troupe_protocol::message::{encode_request, decode_request, Request};
/// let bytes = encode_request(7, &Request::Ping);
/// let (id, req) = decode_request(&bytes).unwrap();
/// assert_eq!((id, req), (7, Request::Ping));
/// ```
pub fn encode_request(id: u64, req: &Request) -> Vec<u8> {
    let mut out = Vec::new();
    encode_request_into(id, req, &mut out);
    out
}

/// [`encode_request`] appended to `out` (a buffer a client reuses).
pub fn encode_request_into(id: u64, req: &Request, out: &mut Vec<u8>) {
    let mut w = WireRequestOut::new(id, req.op());
    match req {
        Request::Hello {
            version,
            client,
            token,
        } => {
            w.version = Some(*version);
            w.client = Some(client);
            w.token = token.as_deref();
        }
        Request::Ping => {}
        Request::Get { key, r, after } => {
            w.key = bin(key);
            w.r = *r;
            w.after = after.as_deref().and_then(bin);
        }
        Request::Put {
            key,
            value,
            context,
            w: wq,
        } => {
            w.key = bin(key);
            w.value = bin(value);
            w.context = context.as_deref().and_then(bin);
            w.w = *wq;
        }
        Request::Delete {
            key,
            context,
            w: wq,
        } => {
            w.key = bin(key);
            w.context = context.as_deref().and_then(bin);
            w.w = *wq;
        }
        Request::Incr { key, by, w: wq } => {
            w.key = bin(key);
            w.by = Some(*by);
            w.w = *wq;
        }
        Request::Sadd {
            key,
            members,
            w: wq,
        }
        | Request::Srem {
            key,
            members,
            w: wq,
        } => {
            w.key = bin(key);
            w.members = Some(members.iter().map(|m| Bytes::new(m)).collect());
            w.w = *wq;
        }
        Request::RegPut { key, value, w: wq } => {
            w.key = bin(key);
            w.value = bin(value);
            w.w = *wq;
        }
        Request::Counter { key, r } | Request::Smembers { key, r } | Request::RegGet { key, r } => {
            w.key = bin(key);
            w.r = *r;
        }
        Request::Keys {
            prefix,
            limit,
            after,
        } => {
            w.prefix = prefix.as_deref().and_then(bin);
            w.limit = *limit;
            w.after = after.as_deref().and_then(bin);
        }
    }
    w.write(out)
}

fn bin(b: &[u8]) -> Option<&Bytes> {
    Some(Bytes::new(b))
}

impl<'a> WireRequestOut<'a> {
    fn new(id: u64, op: &'a str) -> Self {
        WireRequestOut {
            id,
            op,
            ..WireRequestOut::default()
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        rmp_serde::encode::write_named(out, self)
            .expect("BUG: encoding a request into a Vec cannot fail")
    }
}

/// [`encode_request_into`] of a `get` with only a key, from borrowed bytes: a client that
/// sends many (the load generator) builds no [`Request`] per get.
pub fn encode_get_into(id: u64, key: &[u8], out: &mut Vec<u8>) {
    let mut w = WireRequestOut::new(id, "get");
    w.key = bin(key);
    w.write(out)
}

/// [`encode_request_into`] of a `put` without `w`, from borrowed bytes (see
/// [`encode_get_into`]).
pub fn encode_put_into(
    id: u64,
    key: &[u8],
    value: &[u8],
    context: Option<&[u8]>,
    out: &mut Vec<u8>,
) {
    let mut w = WireRequestOut::new(id, "put");
    w.key = bin(key);
    w.value = bin(value);
    w.context = context.and_then(bin);
    w.write(out)
}
