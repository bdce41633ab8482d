//! Client protocol messages: requests, replies and responses, with their MessagePack encoding.
//!
//! On the wire a request is a map `{"id": uint, "op": str, ...fields}` and a response a map
//! `{"id": uint, "ok": {...}}` or `{"id": uint, "err": {"code": str, "msg": str}}`.
//! Keys, values and contexts are MessagePack `bin`; a `str` is accepted for them and taken as
//! its UTF-8 bytes. Unknown fields are ignored so newer clients can talk to older nodes.
//!
//! Decoding is two-stage: the frame is read into the flat `WireRequest` (every field
//! optional, one pass, no buffering of intermediate values) and then checked into the typed
//! [`Request`], so a missing or mistyped field becomes a `bad_request` naming the field, with
//! the request's `id` whenever it could be read. A plain get, put or delete, and a reply of
//! values and context, skip serde: `fast` reads and writes them by hand, to the same result
//! and the same bytes (its property tests hold it to serde).

mod encode;
mod fast;
mod reply;

pub use encode::{encode_get_into, encode_put_into, encode_request, encode_request_into};
pub use reply::{Reply, ReplyValue, Response};

use crate::error::{ErrorBody, ErrorCode};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::fmt;

/// Protocol version spoken by this crate (the `version` field of `hello`).
pub const PROTOCOL_VERSION: u32 = 1;

/// How many replicas must answer: `"one"`, `"quorum"`, `"all"`, or an explicit number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quorum {
    One,
    Quorum,
    All,
    N(u32),
}

impl Quorum {
    /// The number of replicas this quorum needs out of `n`, capped at `n`.
    pub fn required(self, n: usize) -> usize {
        match self {
            Quorum::One => 1.min(n),
            Quorum::Quorum => n / 2 + 1,
            Quorum::All => n,
            Quorum::N(k) => (k as usize).min(n),
        }
    }

    pub fn parse(s: &str) -> Option<Quorum> {
        match s {
            "one" => Some(Quorum::One),
            "quorum" => Some(Quorum::Quorum),
            "all" => Some(Quorum::All),
            other => other.parse().ok().map(Quorum::N),
        }
    }
}

impl fmt::Display for Quorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quorum::One => f.write_str("one"),
            Quorum::Quorum => f.write_str("quorum"),
            Quorum::All => f.write_str("all"),
            Quorum::N(k) => write!(f, "{k}"),
        }
    }
}

impl Serialize for Quorum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Quorum::N(k) => s.serialize_u32(*k),
            other => s.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Quorum {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Quorum;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"one\", \"quorum\", \"all\" or a positive integer")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Quorum, E> {
                match u32::try_from(v) {
                    Ok(k) if k > 0 => Ok(Quorum::N(k)),
                    _ => Err(E::custom(format!("quorum {v} is out of range"))),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Quorum, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!("quorum {v} is out of range"))),
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Quorum, E> {
                match v {
                    "one" => Ok(Quorum::One),
                    "quorum" => Ok(Quorum::Quorum),
                    "all" => Ok(Quorum::All),
                    // A number as text (an environment override, a hand-written map).
                    other if other.parse::<u64>().is_ok() => {
                        self.visit_u64(other.parse().expect("checked"))
                    }
                    other => Err(E::custom(format!(
                        "unknown quorum {other:?}; use one, quorum, all or a number"
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A typed client request (the body of a request frame, without its id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// First frame on a connection.
    Hello {
        version: u32,
        client: String,
        token: Option<String>,
    },
    Ping,
    Get {
        key: Vec<u8>,
        r: Option<Quorum>,
        /// A context the answer must cover (read your writes).
        after: Option<Vec<u8>>,
    },
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        context: Option<Vec<u8>>,
        w: Option<Quorum>,
    },
    Delete {
        key: Vec<u8>,
        context: Option<Vec<u8>>,
        w: Option<Quorum>,
    },
    /// Counter: add `by` (negative subtracts); answers the coordinator's value after it.
    Incr {
        key: Vec<u8>,
        by: i64,
        w: Option<Quorum>,
    },
    /// Counter: read the value (0 for a key that holds none).
    Counter {
        key: Vec<u8>,
        r: Option<Quorum>,
    },
    /// Set: add members.
    Sadd {
        key: Vec<u8>,
        members: Vec<Vec<u8>>,
        w: Option<Quorum>,
    },
    /// Set: remove members (those the coordinator has seen; a concurrent add wins).
    Srem {
        key: Vec<u8>,
        members: Vec<Vec<u8>>,
        w: Option<Quorum>,
    },
    /// Set: read the members, in ascending byte order.
    Smembers {
        key: Vec<u8>,
        r: Option<Quorum>,
    },
    /// Register: write the value (last writer wins).
    RegPut {
        key: Vec<u8>,
        value: Vec<u8>,
        w: Option<Quorum>,
    },
    /// Register: read the value (nil for a key that holds none).
    RegGet {
        key: Vec<u8>,
        r: Option<Quorum>,
    },
    /// Live keys in byte order across the ring: those starting with `prefix`, after the
    /// cursor `after`, at most `limit` (default [`DEFAULT_KEYS_LIMIT`], at most
    /// [`MAX_KEYS_LIMIT`]).
    Keys {
        prefix: Option<Vec<u8>>,
        limit: Option<u32>,
        after: Option<Vec<u8>>,
    },
}

/// `keys` without `limit`.
pub const DEFAULT_KEYS_LIMIT: u32 = 1000;
/// The largest `limit` a `keys` request may ask for.
pub const MAX_KEYS_LIMIT: u32 = 10_000;

/// Most members one `sadd` or `srem` may carry.
pub const MAX_MEMBERS_PER_REQUEST: usize = 10_000;

impl Request {
    /// The `op` string of this request.
    pub fn op(&self) -> &'static str {
        match self {
            Request::Hello { .. } => "hello",
            Request::Ping => "ping",
            Request::Get { .. } => "get",
            Request::Put { .. } => "put",
            Request::Delete { .. } => "delete",
            Request::Incr { .. } => "incr",
            Request::Counter { .. } => "counter",
            Request::Sadd { .. } => "sadd",
            Request::Srem { .. } => "srem",
            Request::Smembers { .. } => "smembers",
            Request::RegPut { .. } => "reg_put",
            Request::RegGet { .. } => "reg_get",
            Request::Keys { .. } => "keys",
        }
    }

    /// The key the request names, if it names one.
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            Request::Hello { .. } | Request::Ping | Request::Keys { .. } => None,
            Request::Get { key, .. }
            | Request::Put { key, .. }
            | Request::Delete { key, .. }
            | Request::Incr { key, .. }
            | Request::Counter { key, .. }
            | Request::Sadd { key, .. }
            | Request::Srem { key, .. }
            | Request::Smembers { key, .. }
            | Request::RegPut { key, .. }
            | Request::RegGet { key, .. } => Some(key),
        }
    }
}

/// The flat wire form of a request: every field optional, checked later by [`decode_request`].
#[derive(Debug, Default, Serialize, Deserialize)]
struct WireRequest<'a> {
    #[serde(default)]
    id: Option<u64>,
    /// Borrowed from the frame: no allocation per request for the op's name.
    #[serde(default, borrow)]
    op: Option<&'a str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<ByteBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<ByteBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    context: Option<ByteBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    r: Option<Quorum>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<ByteBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    w: Option<Quorum>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    by: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    members: Option<Vec<ByteBuf>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<ByteBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limit: Option<u32>,
}

/// Only the id, for answering a request whose other fields did not decode.
#[derive(Deserialize)]
struct IdOnly {
    #[serde(default)]
    id: Option<u64>,
}

/// Why a request frame was rejected. `id` is the request's id when it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    pub id: Option<u64>,
    pub error: ErrorBody,
}

/// True when `body` starts with a MessagePack map marker.
fn is_map(body: &[u8]) -> bool {
    matches!(body.first(), Some(0x80..=0x8f | 0xde | 0xdf))
}

/// Decodes and checks a request frame body. A plain get, put or delete is read by hand
/// (module `message::fast`); everything else, and every error, through serde.
pub fn decode_request(body: &[u8]) -> Result<(u64, Request), RequestError> {
    match fast::decode_plain_request(body) {
        Some(decoded) => Ok(decoded),
        None => decode_request_serde(body),
    }
}

/// [`decode_request`] through serde: the reference the fast path is tested against.
fn decode_request_serde(body: &[u8]) -> Result<(u64, Request), RequestError> {
    let bad = |id: Option<u64>, msg: String| RequestError {
        id,
        error: ErrorBody::new(ErrorCode::BadRequest, msg),
    };
    if !is_map(body) {
        return Err(bad(None, "a request must be a MessagePack map".into()));
    }
    let w: WireRequest = match crate::codec::decode_one(body) {
        Ok(w) => w,
        Err(e) => {
            let id = rmp_serde::from_slice::<IdOnly>(body)
                .ok()
                .and_then(|i| i.id);
            return Err(bad(id, format!("malformed request: {e}")));
        }
    };
    let id =
        w.id.ok_or_else(|| bad(None, "missing field \"id\" (an unsigned integer)".into()))?;
    let op =
        w.op.ok_or_else(|| bad(Some(id), "missing field \"op\" (a string)".into()))?;
    let need = |v: Option<ByteBuf>, name: &str| {
        v.map(ByteBuf::into_vec).ok_or_else(|| {
            bad(
                Some(id),
                format!("op {op:?} needs field {name:?} (bin or str)"),
            )
        })
    };
    let req = match op {
        "hello" => Request::Hello {
            version: w.version.ok_or_else(|| {
                bad(
                    Some(id),
                    "op \"hello\" needs field \"version\" (an integer)".into(),
                )
            })?,
            client: w.client.unwrap_or_default(),
            token: w.token,
        },
        "ping" => Request::Ping,
        "get" => Request::Get {
            key: need(w.key, "key")?,
            r: w.r,
            after: w.after.map(ByteBuf::into_vec),
        },
        "put" => Request::Put {
            key: need(w.key, "key")?,
            value: need(w.value, "value")?,
            context: w.context.map(ByteBuf::into_vec),
            w: w.w,
        },
        "delete" => Request::Delete {
            key: need(w.key, "key")?,
            context: w.context.map(ByteBuf::into_vec),
            w: w.w,
        },
        "incr" => Request::Incr {
            key: need(w.key, "key")?,
            by: w.by.ok_or_else(|| {
                bad(
                    Some(id),
                    "op \"incr\" needs field \"by\" (a signed 64-bit integer)".into(),
                )
            })?,
            w: w.w,
        },
        "sadd" | "srem" => {
            let members: Vec<Vec<u8>> = w
                .members
                .ok_or_else(|| {
                    bad(
                        Some(id),
                        format!("op {op:?} needs field \"members\" (an array of bin)"),
                    )
                })?
                .into_iter()
                .map(ByteBuf::into_vec)
                .collect();
            if members.len() > MAX_MEMBERS_PER_REQUEST {
                return Err(bad(
                    Some(id),
                    format!(
                        "op {op:?} carries {} members, more than {MAX_MEMBERS_PER_REQUEST} in one request; split it",
                        members.len()
                    ),
                ));
            }
            let key = need(w.key, "key")?;
            if op == "sadd" {
                Request::Sadd {
                    key,
                    members,
                    w: w.w,
                }
            } else {
                Request::Srem {
                    key,
                    members,
                    w: w.w,
                }
            }
        }
        "reg_put" => Request::RegPut {
            key: need(w.key, "key")?,
            value: need(w.value, "value")?,
            w: w.w,
        },
        "counter" => Request::Counter {
            key: need(w.key, "key")?,
            r: w.r,
        },
        "smembers" => Request::Smembers {
            key: need(w.key, "key")?,
            r: w.r,
        },
        "reg_get" => Request::RegGet {
            key: need(w.key, "key")?,
            r: w.r,
        },
        "keys" => {
            if w.limit.is_some_and(|l| l == 0 || l > MAX_KEYS_LIMIT) {
                return Err(bad(
                    Some(id),
                    format!("op \"keys\": limit must be 1 to {MAX_KEYS_LIMIT}"),
                ));
            }
            Request::Keys {
                prefix: w.prefix.map(ByteBuf::into_vec),
                limit: w.limit,
                after: w.after.map(ByteBuf::into_vec),
            }
        }
        other => return Err(bad(Some(id), format!("unknown op {other:?}"))),
    };
    Ok((id, req))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The borrowed encoders write the bytes of the owned request they stand for.
        #[test]
        fn borrowed_gets_and_puts_encode_as_their_requests(
            id in any::<u64>(),
            key in proptest::collection::vec(any::<u8>(), 0..40),
            value in proptest::collection::vec(any::<u8>(), 0..300),
            context in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..30)),
        ) {
            let (mut get, mut put) = (Vec::new(), Vec::new());
            encode_get_into(id, &key, &mut get);
            encode_put_into(id, &key, &value, context.as_deref(), &mut put);
            let owned_get = Request::Get { key: key.clone(), r: None, after: None };
            let owned_put = Request::Put { key, value, context, w: None };
            prop_assert_eq!(get, encode_request(id, &owned_get));
            prop_assert_eq!(put, encode_request(id, &owned_put));
        }
    }

    #[test]
    fn a_frame_with_bytes_after_its_value_is_a_bad_request() {
        let mut body = encode_request(1, &Request::Ping);
        assert!(decode_request(&body).is_ok());
        body.push(0xc0); // a second MessagePack value (nil) after the map
        let err = decode_request(&body).expect_err("trailing bytes must be refused");
        assert_eq!(err.id, Some(1), "the id is still answered");
        assert_eq!(err.error.code, ErrorCode::BadRequest);
        assert!(err.error.msg.contains("1 byte"), "{}", err.error.msg);
    }

    fn arb_quorum() -> impl Strategy<Value = Option<Quorum>> {
        prop_oneof![
            Just(None),
            Just(Some(Quorum::One)),
            Just(Some(Quorum::Quorum)),
            Just(Some(Quorum::All)),
            (1u32..100).prop_map(|k| Some(Quorum::N(k))),
        ]
    }

    fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..64)
    }

    fn arb_request() -> impl Strategy<Value = Request> {
        prop_oneof![
            (any::<u32>(), ".{0,12}", proptest::option::of(".{0,12}")).prop_map(
                |(version, client, token)| Request::Hello {
                    version,
                    client,
                    token
                }
            ),
            Just(Request::Ping),
            (arb_bytes(), arb_quorum(), proptest::option::of(arb_bytes()))
                .prop_map(|(key, r, after)| Request::Get { key, r, after }),
            (
                arb_bytes(),
                arb_bytes(),
                proptest::option::of(arb_bytes()),
                arb_quorum()
            )
                .prop_map(|(key, value, context, w)| Request::Put {
                    key,
                    value,
                    context,
                    w
                }),
            (arb_bytes(), proptest::option::of(arb_bytes()), arb_quorum())
                .prop_map(|(key, context, w)| Request::Delete { key, context, w }),
        ]
    }

    proptest! {
        #[test]
        fn requests_round_trip(id in any::<u64>(), req in arb_request()) {
            let bytes = encode_request(id, &req);
            prop_assert_eq!(decode_request(&bytes), Ok((id, req)));
        }

        #[test]
        fn responses_round_trip(
            id in any::<u64>(),
            values in proptest::collection::vec(arb_bytes(), 0..4),
            context in arb_bytes(),
            msg in ".{0,20}",
        ) {
            for resp in [
                Response::ok(id, Reply::get(values.clone(), context.clone())),
                Response::ok(id, Reply::put(context.clone())),
                Response::ok(id, Reply::put_with_values(context.clone(), Some(values.clone()))),
                Response::ok(id, Reply::hello(msg.clone())),
                Response::ok(id, Reply::empty()),
                Response::err(id, ErrorCode::Unavailable, msg.clone()),
            ] {
                prop_assert_eq!(Response::decode(&resp.encode()).unwrap(), resp);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_request(&body);
        }
    }

    #[derive(Serialize)]
    struct StrPut<'a> {
        id: u64,
        op: &'a str,
        key: &'a str,
        value: &'a str,
    }

    #[test]
    fn str_keys_and_values_are_taken_as_utf8_bytes() {
        let body = rmp_serde::to_vec_named(&StrPut {
            id: 3,
            op: "put",
            key: "héllo",
            value: "wörld",
        })
        .unwrap();
        let (id, req) = decode_request(&body).unwrap();
        assert_eq!(id, 3);
        assert_eq!(
            req,
            Request::Put {
                key: "héllo".as_bytes().to_vec(),
                value: "wörld".as_bytes().to_vec(),
                context: None,
                w: None
            }
        );
    }

    #[test]
    fn errors_name_the_problem_and_keep_the_id() {
        let non_map = rmp_serde::to_vec(&(1u64, "get")).unwrap();
        let e = decode_request(&non_map).unwrap_err();
        assert_eq!((e.id, e.error.code), (None, ErrorCode::BadRequest));

        #[derive(Serialize)]
        struct WrongType {
            id: u64,
            op: &'static str,
            key: u64,
        }
        let wrong = rmp_serde::to_vec_named(&WrongType {
            id: 9,
            op: "get",
            key: 5,
        })
        .unwrap();
        let e = decode_request(&wrong).unwrap_err();
        assert_eq!(e.id, Some(9));
        assert_eq!(e.error.code, ErrorCode::BadRequest);

        #[derive(Serialize)]
        struct Unknown {
            id: u64,
            op: &'static str,
        }
        let unknown = rmp_serde::to_vec_named(&Unknown {
            id: 4,
            op: "frobnicate",
        })
        .unwrap();
        let e = decode_request(&unknown).unwrap_err();
        assert_eq!(e.id, Some(4));
        assert!(e.error.msg.contains("frobnicate"), "{}", e.error.msg);

        let missing_key = rmp_serde::to_vec_named(&Unknown { id: 5, op: "get" }).unwrap();
        let e = decode_request(&missing_key).unwrap_err();
        assert!(e.error.msg.contains("\"key\""), "{}", e.error.msg);
    }

    #[test]
    fn quorum_sizes() {
        assert_eq!(Quorum::Quorum.required(3), 2);
        assert_eq!(Quorum::One.required(3), 1);
        assert_eq!(Quorum::All.required(3), 3);
        assert_eq!(Quorum::N(5).required(3), 3);
        assert_eq!(Quorum::parse("2"), Some(Quorum::N(2)));
    }

    /// Every typed reply decodes to what was encoded: `reg_get`'s nil included (a decoder
    /// that reads nil as a missing field could not tell "no register" from "no answer").
    #[test]
    fn typed_replies_round_trip() {
        for reply in [
            Reply::counter(-7),
            Reply::register(Some(b"v".to_vec())),
            Reply::register(None),
            Reply::members(vec![b"a".to_vec(), b"b".to_vec()]),
            Reply::members(Vec::new()),
        ] {
            let resp = Response::ok(9, reply);
            assert_eq!(Response::decode(&resp.encode()).unwrap(), resp);
        }
    }
}
