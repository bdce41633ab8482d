//! Replies and responses: the `ok` body of each op ([`Reply`], with [`ReplyValue`] for the
//! typed ops' `value`) and the response frame ([`Response`]) that carries it or an error.

use super::PROTOCOL_VERSION;
use crate::error::{ErrorBody, ErrorCode};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// The `ok` body of a response. Which fields are present depends on the op:
/// `hello` -> `node`, `version`; `get` -> `values`, `context`; `put` -> `context`, and
/// `values` when the key holds more than the version just written; `ping` and `delete`
/// -> empty map.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<ByteBuf>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<ByteBuf>,
    /// `incr` and `counter`: an integer; `reg_get`: bin, or nil when the key holds none
    /// (decoded as `Some(ReplyValue::Nil)`, so a reply round-trips; absent is `None`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_value"
    )]
    pub value: Option<ReplyValue>,
    /// `smembers`: the set's members in ascending byte order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<ByteBuf>>,
    /// `keys`: live keys in byte order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<ByteBuf>>,
    /// `keys`: whether more keys may follow (ask again with `after`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more: Option<bool>,
    /// `keys`: where to continue (pass it as `after`): the last key examined, which can be
    /// past the last key returned when the keys after it were deleted. Absent when `more`
    /// is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<ByteBuf>,
}

/// The `value` of a typed reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReplyValue {
    Int(i64),
    Bytes(ByteBuf),
    Nil,
}

/// A `value` field that is there, nil included (serde's `Option` would read nil as absent).
fn present_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<ReplyValue>, D::Error> {
    ReplyValue::deserialize(d).map(Some)
}

impl Reply {
    pub fn empty() -> Reply {
        Reply::default()
    }

    pub fn hello(node: impl Into<String>) -> Reply {
        Reply {
            node: Some(node.into()),
            version: Some(PROTOCOL_VERSION),
            ..Reply::default()
        }
    }

    pub fn get(values: Vec<Vec<u8>>, context: Vec<u8>) -> Reply {
        Reply {
            values: Some(values.into_iter().map(ByteBuf::from).collect()),
            context: Some(ByteBuf::from(context)),
            ..Reply::default()
        }
    }

    /// `incr` and `counter`.
    pub fn counter(value: i64) -> Reply {
        Reply {
            value: Some(ReplyValue::Int(value)),
            ..Reply::default()
        }
    }

    /// `reg_get` (`None`: nil).
    pub fn register(value: Option<Vec<u8>>) -> Reply {
        Reply {
            value: Some(value.map_or(ReplyValue::Nil, |v| ReplyValue::Bytes(ByteBuf::from(v)))),
            ..Reply::default()
        }
    }

    /// `keys`.
    pub fn keys(keys: Vec<Vec<u8>>, cursor: Option<Vec<u8>>) -> Reply {
        Reply {
            keys: Some(keys.into_iter().map(ByteBuf::from).collect()),
            more: Some(cursor.is_some()),
            cursor: cursor.map(ByteBuf::from),
            ..Reply::default()
        }
    }

    /// `smembers`.
    pub fn members(members: Vec<Vec<u8>>) -> Reply {
        Reply {
            members: Some(members.into_iter().map(ByteBuf::from).collect()),
            ..Reply::default()
        }
    }

    /// A put that left only the version it wrote: the context alone.
    pub fn put(context: Vec<u8>) -> Reply {
        Reply::put_with_values(context, None)
    }

    /// A put's reply: with `values` (encoded as `get`'s) when the key holds more than the
    /// version just written, so the context covers exactly what the reply shows.
    pub fn put_with_values(context: Vec<u8>, values: Option<Vec<Vec<u8>>>) -> Reply {
        Reply {
            values: values.map(|vs| vs.into_iter().map(ByteBuf::from).collect()),
            context: Some(ByteBuf::from(context)),
            ..Reply::default()
        }
    }
}

/// A response frame: the request's id and either a reply or an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<Reply>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub err: Option<ErrorBody>,
}

impl Response {
    pub fn ok(id: u64, reply: Reply) -> Response {
        Response {
            id,
            ok: Some(reply),
            err: None,
        }
    }

    pub fn err(id: u64, code: ErrorCode, msg: impl Into<String>) -> Response {
        Response {
            id,
            ok: None,
            err: Some(ErrorBody::new(code, msg)),
        }
    }

    /// Encodes the response frame body (without the length prefix).
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("BUG: encoding a response into a Vec cannot fail")
    }

    /// Appends the encoded frame body to `buf` (a reused buffer: no growth from empty per
    /// response). Same bytes as [`Response::encode`].
    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        if super::fast::encode_plain_response(self, buf) {
            return;
        }
        self.serialize(&mut rmp_serde::Serializer::new(buf).with_struct_map())
            .expect("BUG: encoding a response into a Vec cannot fail")
    }

    pub fn decode(body: &[u8]) -> Result<Response, rmp_serde::decode::Error> {
        rmp_serde::from_slice(body)
    }

    /// The reply, or the error the server sent. A response with neither is treated as an
    /// empty reply.
    pub fn into_result(self) -> Result<Reply, ErrorBody> {
        match (self.ok, self.err) {
            (_, Some(e)) => Err(e),
            (Some(r), None) => Ok(r),
            (None, None) => Ok(Reply::empty()),
        }
    }
}
