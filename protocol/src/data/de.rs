//! Decoding of the peer data messages without serde's buffering.
//!
//! The derived decoder of an internally tagged enum cannot know the variant until it has
//! seen the tag, so it first copies the whole map into serde's `Content` (every key, every
//! byte string) and decodes the variant from that copy; a `DataMsg::Req` did so twice (the
//! message, then its request). That was about 5% of a three-node cluster's CPU under gets.
//! These decoders read each field once, straight into a slot, then build the variant the
//! tag names.
//!
//! They accept what the derived decoders accepted: fields in any order, unknown fields
//! skipped, an optional field absent or nil; a missing required field, a repeated field or
//! an unknown tag is an error naming it. The encoding is the derived `Serialize`, unchanged
//! (`super::fast` writes the same bytes by hand for batches of gets and puts, and reads them
//! back before these decoders are tried).

use super::{DataMsg, DataReq, DataResp, KeyEntry};
use crate::crdt::TypedOp;
use crate::message::Quorum;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_bytes::ByteBuf;
use std::fmt;

/// `Deserialize` for `$t` from a map, read by `$visit` (field by field, any order).
macro_rules! from_map {
    ($t:ty, $expecting:literal, $visit:ident) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $t;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<$t, A::Error> {
                        $visit(map)
                    }
                }
                d.deserialize_map(V)
            }
        }
    };
}

/// Every name a data message uses, as a field or as a tag value.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Name {
    T,
    Id,
    Req,
    Resp,
    Op,
    Key,
    Object,
    Value,
    Context,
    W,
    Typed,
    Primary,
    Prefix,
    After,
    Limit,
    Partitions,
    R,
    Values,
    Entries,
    Last,
    Code,
    Msg,
    Get,
    Put,
    Coordinate,
    Hint,
    Keys,
    Stored,
    Written,
    Failed,
    Other,
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Name, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Name;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name or tag")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Name, E> {
                use Name::*;
                Ok(match s {
                    "t" => T,
                    "id" => Id,
                    "req" => Req,
                    "resp" => Resp,
                    "op" => Op,
                    "key" => Key,
                    "object" => Object,
                    "value" => Value,
                    "context" => Context,
                    "w" => W,
                    "typed" => Typed,
                    "primary" => Primary,
                    "prefix" => Prefix,
                    "after" => After,
                    "limit" => Limit,
                    "partitions" => Partitions,
                    "r" => R,
                    "values" => Values,
                    "entries" => Entries,
                    "last" => Last,
                    "code" => Code,
                    "msg" => Msg,
                    "get" => Get,
                    "put" => Put,
                    "coordinate" => Coordinate,
                    "hint" => Hint,
                    "keys" => Keys,
                    "stored" => Stored,
                    "written" => Written,
                    "failed" => Failed,
                    _ => Other,
                })
            }
            fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<Name, E> {
                std::str::from_utf8(b).map_or(Ok(Name::Other), |s| self.visit_str(s))
            }
        }
        d.deserialize_str(V)
    }
}

/// Reads the next value into `slot`; a second value for the same field is an error.
fn fill<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    map: &mut A,
    slot: &mut Option<T>,
    field: &'static str,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::duplicate_field(field));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

/// Like [`fill`] for a field that may be nil (`Some(None)` once seen).
fn fill_opt<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    map: &mut A,
    slot: &mut Option<Option<T>>,
    field: &'static str,
) -> Result<(), A::Error> {
    fill(map, slot, field)
}

fn need<T, E: de::Error>(slot: Option<T>, field: &'static str) -> Result<T, E> {
    slot.ok_or_else(|| de::Error::missing_field(field))
}

fn bytes(b: ByteBuf) -> Vec<u8> {
    b.into_vec()
}

/// The tag: which of `known` (by position), or an error naming what came.
fn variant<E: de::Error>(
    tag: Option<Name>,
    field: &'static str,
    known: &'static [&'static str],
) -> Result<Name, E> {
    match tag {
        None => Err(de::Error::missing_field(field)),
        Some(Name::Other) => unknown(field, known),
        Some(n) => Ok(n),
    }
}

/// A tag that names no variant here.
fn unknown<T, E: de::Error>(field: &'static str, known: &'static [&'static str]) -> Result<T, E> {
    Err(de::Error::custom(format!(
        "unknown `{field}` (expected one of {known:?})"
    )))
}

from_map!(
    DataMsg,
    "a data message: a map of t, id and req or resp",
    msg_from_map
);

fn msg_from_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<DataMsg, A::Error> {
    let (mut t, mut id, mut req, mut resp) = (None, None, None, None);
    while let Some(name) = map.next_key::<Name>()? {
        match name {
            Name::T => fill(&mut map, &mut t, "t")?,
            Name::Id => fill(&mut map, &mut id, "id")?,
            Name::Req => fill(&mut map, &mut req, "req")?,
            Name::Resp => fill(&mut map, &mut resp, "resp")?,
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    let id = need(id, "id")?;
    match variant(t, "t", &["req", "resp"])? {
        Name::Req => Ok(DataMsg::Req {
            id,
            req: need(req, "req")?,
        }),
        Name::Resp => Ok(DataMsg::Resp {
            id,
            resp: need(resp, "resp")?,
        }),
        _ => unknown("t", &["req", "resp"]),
    }
}

from_map!(DataReq, "a data request: a map with op", req_from_map);

fn req_from_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<DataReq, A::Error> {
    let mut op = None;
    let (mut key, mut object, mut primary) = (None::<ByteBuf>, None::<ByteBuf>, None);
    let (mut value, mut context) = (None::<Option<ByteBuf>>, None::<Option<ByteBuf>>);
    let (mut w, mut typed) = (None::<Option<Quorum>>, None::<Option<TypedOp>>);
    let (mut prefix, mut after) = (None::<Option<ByteBuf>>, None::<Option<ByteBuf>>);
    let (mut limit, mut partitions) = (None, None);
    while let Some(name) = map.next_key::<Name>()? {
        match name {
            Name::Op => fill(&mut map, &mut op, "op")?,
            Name::Key => fill(&mut map, &mut key, "key")?,
            Name::Object => fill(&mut map, &mut object, "object")?,
            Name::Primary => fill(&mut map, &mut primary, "primary")?,
            Name::Value => fill_opt(&mut map, &mut value, "value")?,
            Name::Context => fill_opt(&mut map, &mut context, "context")?,
            Name::W => fill_opt(&mut map, &mut w, "w")?,
            Name::Typed => fill_opt(&mut map, &mut typed, "typed")?,
            Name::Prefix => fill_opt(&mut map, &mut prefix, "prefix")?,
            Name::After => fill_opt(&mut map, &mut after, "after")?,
            Name::Limit => fill(&mut map, &mut limit, "limit")?,
            Name::Partitions => fill(&mut map, &mut partitions, "partitions")?,
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    const OPS: &[&str] = &["get", "put", "coordinate", "hint", "keys"];
    Ok(match variant(op, "op", OPS)? {
        Name::Get => DataReq::Get {
            key: bytes(need(key, "key")?),
        },
        Name::Put => DataReq::Put {
            key: bytes(need(key, "key")?),
            object: bytes(need(object, "object")?),
        },
        Name::Coordinate => DataReq::Coordinate {
            key: bytes(need(key, "key")?),
            value: value.flatten().map(bytes),
            context: context.flatten().map(bytes),
            w: w.flatten(),
            typed: typed.flatten(),
        },
        Name::Hint => DataReq::Hint {
            primary: need(primary, "primary")?,
            key: bytes(need(key, "key")?),
            object: bytes(need(object, "object")?),
        },
        Name::Keys => DataReq::Keys {
            prefix: prefix.flatten().map(bytes),
            after: after.flatten().map(bytes),
            limit: need(limit, "limit")?,
            partitions: need(partitions, "partitions")?,
        },
        _ => return unknown("op", OPS),
    })
}

from_map!(DataResp, "a data response: a map with r", resp_from_map);

fn resp_from_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<DataResp, A::Error> {
    let mut r = None;
    let mut object = None::<Option<ByteBuf>>;
    let (mut context, mut values) = (None::<ByteBuf>, None::<Option<Vec<ByteBuf>>>);
    let mut typed = None::<Option<ByteBuf>>;
    let (mut entries, mut last) = (None::<Vec<KeyEntry>>, None::<Option<ByteBuf>>);
    let (mut code, mut msg) = (None::<String>, None::<String>);
    while let Some(name) = map.next_key::<Name>()? {
        match name {
            Name::R => fill(&mut map, &mut r, "r")?,
            Name::Object => fill_opt(&mut map, &mut object, "object")?,
            Name::Context => fill(&mut map, &mut context, "context")?,
            Name::Values => fill_opt(&mut map, &mut values, "values")?,
            Name::Typed => fill_opt(&mut map, &mut typed, "typed")?,
            Name::Entries => fill(&mut map, &mut entries, "entries")?,
            Name::Last => fill_opt(&mut map, &mut last, "last")?,
            Name::Code => fill(&mut map, &mut code, "code")?,
            Name::Msg => fill(&mut map, &mut msg, "msg")?,
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    const RS: &[&str] = &["object", "stored", "written", "keys", "failed"];
    Ok(match variant(r, "r", RS)? {
        Name::Object => DataResp::Object {
            object: object.flatten().map(bytes),
        },
        Name::Stored => DataResp::Stored,
        Name::Written => DataResp::Written {
            context: bytes(need(context, "context")?),
            values: values.flatten(),
            typed: typed.flatten().map(bytes),
        },
        Name::Keys => DataResp::Keys {
            entries: need(entries, "entries")?,
            last: last.flatten().map(bytes),
        },
        Name::Failed => DataResp::Failed {
            code: need(code, "code")?,
            msg: need(msg, "msg")?,
        },
        _ => return unknown("r", RS),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::decode_one;
    use crate::data::testgen::msg;
    use proptest::prelude::*;
    use serde::Serialize;

    proptest! {
        /// What the derived encoder writes, the hand decoder reads back unchanged: every
        /// variant, optional fields absent, nil and present.
        #[test]
        fn every_message_decodes_to_what_was_encoded(
            batch in proptest::collection::vec(msg(), 0..6)
        ) {
            let bytes = rmp_serde::to_vec_named(&batch).unwrap();
            prop_assert_eq!(decode_one::<Vec<DataMsg>>(&bytes).unwrap(), batch);
        }
    }

    /// A request map written tag last, with a field this version does not know.
    #[derive(Serialize)]
    struct PutTagLast {
        #[serde(with = "serde_bytes")]
        object: Vec<u8>,
        zz: Vec<u32>,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        op: &'static str,
    }

    #[derive(Serialize)]
    struct MsgTagLast<R> {
        req: R,
        id: u64,
        t: &'static str,
    }

    #[test]
    fn fields_in_any_order_and_unknown_fields_are_read_as_the_derived_decoder_did() {
        let m = MsgTagLast {
            req: PutTagLast {
                object: vec![1, 2],
                zz: vec![7, 8],
                key: b"k".to_vec(),
                op: "put",
            },
            id: 9,
            t: "req",
        };
        let bytes = rmp_serde::to_vec_named(&m).unwrap();
        assert_eq!(
            decode_one::<DataMsg>(&bytes).unwrap(),
            DataMsg::Req {
                id: 9,
                req: DataReq::Put {
                    key: b"k".to_vec(),
                    object: vec![1, 2]
                }
            }
        );
    }

    fn error_of<T: Serialize>(v: &T) -> String {
        let bytes = rmp_serde::to_vec_named(v).unwrap();
        decode_one::<DataMsg>(&bytes).unwrap_err().to_string()
    }

    #[test]
    fn a_missing_repeated_or_unknown_field_is_an_error_naming_it() {
        #[derive(Serialize)]
        struct Get {
            op: &'static str,
        }
        let missing = MsgTagLast {
            req: Get { op: "get" },
            id: 1,
            t: "req",
        };
        assert!(error_of(&missing).contains("key"), "{}", error_of(&missing));
        let unknown_op = MsgTagLast {
            req: Get { op: "steal" },
            id: 1,
            t: "req",
        };
        assert!(
            error_of(&unknown_op).contains("steal")
                || error_of(&unknown_op).contains("unknown `op`")
        );
        let unknown_t = MsgTagLast {
            req: DataReq::Get { key: vec![1] },
            id: 1,
            t: "get",
        };
        assert!(
            error_of(&unknown_t).contains("unknown `t`"),
            "{}",
            error_of(&unknown_t)
        );
        #[derive(Serialize)]
        struct NoTag {
            id: u64,
        }
        assert!(
            error_of(&NoTag { id: 1 }).contains("`t`"),
            "{}",
            error_of(&NoTag { id: 1 })
        );
        // The same field twice: a map with two "id" keys.
        let mut twice = vec![0x83];
        for (k, v) in [("id", 1u64), ("id", 2)] {
            twice.extend(rmp_serde::to_vec(k).unwrap());
            twice.extend(rmp_serde::to_vec(&v).unwrap());
        }
        twice.extend(rmp_serde::to_vec("t").unwrap());
        twice.extend(rmp_serde::to_vec("req").unwrap());
        let err = decode_one::<DataMsg>(&twice).unwrap_err().to_string();
        assert!(err.contains("duplicate field `id`"), "{err}");
    }
}
