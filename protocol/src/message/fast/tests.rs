use super::super::{decode_request, encode_request, ErrorCode};
use super::*;
use crate::mp::bounds::{bytes as sized_bytes, uint as id};
use proptest::prelude::*;
use serde_bytes::ByteBuf;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn plain_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        sized_bytes().prop_map(|key| Request::Get {
            key,
            r: None,
            after: None
        }),
        (bytes(30), sized_bytes(), proptest::option::of(bytes(40))).prop_map(
            |(key, value, context)| Request::Put {
                key,
                value,
                context,
                w: None
            }
        ),
        (bytes(30), proptest::option::of(bytes(40))).prop_map(|(key, context)| {
            Request::Delete {
                key,
                context,
                w: None,
            }
        }),
    ]
}

/// One MessagePack value of a kind a request field might hold, in any valid encoding
/// (not only the smallest one, as other clients may write).
fn any_value() -> impl Strategy<Value = Vec<u8>> {
    let uint = (any::<u64>(), 0usize..5).prop_map(|(v, width)| match width {
        0 => vec![(v & 0x7f) as u8],
        1 => vec![0xcc, v as u8],
        2 => [&[0xcd][..], &(v as u16).to_be_bytes()].concat(),
        3 => [&[0xce][..], &(v as u32).to_be_bytes()].concat(),
        _ => [&[0xcf][..], &v.to_be_bytes()].concat(),
    });
    let text = prop_oneof![
        Just("get".to_string()),
        Just("put".to_string()),
        Just("delete".to_string()),
        Just("ping".to_string()),
        "[a-z]{0,6}",
    ];
    prop_oneof![
        uint,
        (1u8..0x20).prop_map(|n| vec![0xe0 | n]), // a negative fixint
        (-100i8..0).prop_map(|n| vec![0xd0, n as u8]), // int 8
        Just(vec![0xc0]),                         // nil
        Just(vec![0xc3]),                         // true
        text.clone()
            .prop_map(|s| [&[0xa0 | s.len() as u8][..], s.as_bytes()].concat()),
        text.clone()
            .prop_map(|s| [&[0xd9, s.len() as u8][..], s.as_bytes()].concat()),
        text.prop_map(|s| [&[0xc4, s.len() as u8][..], s.as_bytes()].concat()), // as bin
        bytes(12).prop_map(|b| [&[0xc4, b.len() as u8][..], &b].concat()),
        bytes(12).prop_map(|b| [&[0xc5, 0, b.len() as u8][..], &b].concat()),
        Just(vec![0xa2, 0xff, 0xfe]), // a str that is not UTF-8
        Just(vec![0x92, 0x01, 0x02]), // an array
    ]
}

/// A name as a client might write it: fixstr, str 8 or bin.
fn name_bytes(n: &str, form: u8) -> Vec<u8> {
    let head = match form {
        0 => vec![0xa0 | n.len() as u8],
        1 => vec![0xd9, n.len() as u8],
        _ => vec![0xc4, n.len() as u8],
    };
    [&head[..], n.as_bytes()].concat()
}

/// Bytes as a client might write them: bin 8, bin 16 or str 8.
fn field_bytes(b: &[u8], form: u8) -> Vec<u8> {
    let head = match form {
        0 => vec![0xc4, b.len() as u8],
        1 => [&[0xc5][..], &(b.len() as u16).to_be_bytes()].concat(),
        _ => vec![0xd9, b.len() as u8],
    };
    [&head[..], b].concat()
}

/// The fields of a well-formed get, put or delete, each in a random valid encoding.
fn plain_fields() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    let op = prop_oneof![Just("get"), Just("put"), Just("delete")];
    (
        id(),
        op,
        bytes(10),
        bytes(10),
        proptest::option::of(bytes(10)),
        proptest::collection::vec(0u8..3, 6),
    )
        .prop_map(|(id, op, key, value, context, forms)| {
            let mut fields = vec![
                (
                    name_bytes("id", 0),
                    [&[0xcf][..], &id.to_be_bytes()].concat(),
                ),
                (name_bytes("op", forms[0] % 2), name_bytes(op, forms[1])),
                (name_bytes("key", forms[2] % 2), field_bytes(&key, forms[3])),
            ];
            if op == "put" {
                fields.push((name_bytes("value", 0), field_bytes(&value, forms[4])));
            }
            if let (Some(c), "put" | "delete") = (context, op) {
                fields.push((name_bytes("context", 1), field_bytes(&c, forms[5])));
            }
            fields
        })
}

/// How a request map is spoiled, or not.
#[derive(Debug, Clone)]
enum Spoil {
    None,
    /// One more field, of any name and value.
    Extra(Vec<u8>, Vec<u8>),
    /// Field `i` (modulo their number) twice.
    Repeat(usize),
    /// Field `i`'s value replaced by any value.
    Replace(usize, Vec<u8>),
    /// A header counting one field more or less than follow.
    Miscount(bool),
    /// A value after the map.
    Trailing,
    /// Written with a 16- or 32-bit map header.
    WideHeader(bool),
}

fn spoil() -> impl Strategy<Value = Spoil> {
    prop_oneof![
        3 => Just(Spoil::None),
        1 => (any_name(), any_value()).prop_map(|(n, v)| Spoil::Extra(n, v)),
        1 => any::<usize>().prop_map(Spoil::Repeat),
        2 => (any::<usize>(), any_value()).prop_map(|(i, v)| Spoil::Replace(i, v)),
        1 => any::<bool>().prop_map(Spoil::Miscount),
        1 => Just(Spoil::Trailing),
        1 => any::<bool>().prop_map(Spoil::WideHeader),
    ]
}

/// A field name: a known or unknown name, in any of the encodings of [`name_bytes`].
fn any_name() -> impl Strategy<Value = Vec<u8>> {
    let name = prop_oneof![
        Just("id"),
        Just("op"),
        Just("key"),
        Just("value"),
        Just("context"),
        Just("r"),
        Just("w"),
        Just("after"),
        Just("zz"),
    ];
    (name, 0u8..3).prop_map(|(n, form)| name_bytes(n, form))
}

/// A request map: well-formed fields in any order, spoiled or not.
fn any_map() -> impl Strategy<Value = (Vec<u8>, bool)> {
    (plain_fields(), spoil(), any::<u64>()).prop_map(|(mut fields, spoil, shuffle)| {
        let n = fields.len();
        fields.rotate_left((shuffle % n as u64) as usize);
        let (mut count, mut header, mut trailing) = (None, 0u8, false);
        match spoil.clone() {
            Spoil::None => {}
            Spoil::Extra(name, value) => fields.push((name, value)),
            Spoil::Repeat(i) => fields.push(fields[i % n].clone()),
            Spoil::Replace(i, value) => fields[i % n].1 = value,
            Spoil::Miscount(more) => count = Some(if more { n + 1 } else { n - 1 }),
            Spoil::Trailing => trailing = true,
            Spoil::WideHeader(wider) => header = 1 + u8::from(wider),
        }
        let count = count.unwrap_or(fields.len()) as u16;
        let mut out = match header {
            0 => vec![0x80 | count as u8],
            1 => [&[0xde][..], &count.to_be_bytes()].concat(),
            _ => [&[0xdf][..], &u32::from(count).to_be_bytes()].concat(),
        };
        for (name, value) in fields {
            out.extend(name);
            out.extend(value);
        }
        if trailing {
            out.push(0xc0);
        }
        (out, matches!(spoil, Spoil::None | Spoil::WideHeader(_)))
    })
}

proptest! {
    /// What a client writes for a get, put or delete takes the fast path, and reads as
    /// serde reads it.
    #[test]
    fn plain_requests_decode_fast_as_serde_decodes_them(
        id in id(),
        req in plain_request(),
    ) {
        let body = encode_request(id, &req);
        prop_assert_eq!(decode_plain_request(&body), Some((id, req.clone())));
        prop_assert_eq!(decode_request(&body), Ok((id, req)));
    }

    /// A request the fast path reads is the one serde reads, however it is spelled or
    /// spoiled; and a well-formed one, however spelled, takes the fast path.
    #[test]
    fn the_fast_path_reads_nothing_serde_reads_otherwise((body, clean) in any_map()) {
        match decode_plain_request(&body) {
            Some(fast) => prop_assert_eq!(Ok(fast), decode_serde(&body)),
            None => prop_assert!(!clean, "a well-formed request missed the fast path"),
        }
    }

    /// Arbitrary bytes never panic the fast path.
    #[test]
    fn the_fast_path_takes_any_bytes(body in bytes(64)) {
        let _ = decode_plain_request(&body);
    }

    /// A get, put, delete or ping reply is written byte for byte as serde writes it.
    #[test]
    fn plain_responses_encode_as_serde_encodes_them(
        id in id(),
        values in proptest::option::of(proptest::collection::vec(sized_bytes(), 0..20)),
        context in proptest::option::of(sized_bytes()),
        prefix in bytes(4),
    ) {
        let reply = Reply {
            values: values.map(|vs| vs.into_iter().map(ByteBuf::from).collect()),
            context: context.map(ByteBuf::from),
            ..Reply::default()
        };
        let resp = Response::ok(id, reply);
        let mut out = prefix.clone();
        prop_assert!(encode_plain_response(&resp, &mut out));
        prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
        prop_assert_eq!(&out[prefix.len()..], &rmp_serde::to_vec_named(&resp).unwrap()[..]);
    }
}

/// The serde path alone (what `decode_request` did before the fast path).
fn decode_serde(body: &[u8]) -> Result<(u64, Request), String> {
    super::super::decode_request_serde(body).map_err(|e| e.error.msg)
}

#[test]
fn other_responses_are_left_to_serde() {
    let others = [
        Response::err(1, ErrorCode::BadRequest, "no"),
        Response::ok(2, Reply::hello("n1")),
        Response::ok(3, Reply::counter(4)),
        Response::ok(4, Reply::register(None)),
        Response::ok(5, Reply::keys(vec![b"k".to_vec()], None)),
        Response::ok(6, Reply::members(vec![])),
        Response {
            id: 7,
            ok: None,
            err: None,
        },
    ];
    for resp in others {
        let mut out = Vec::new();
        assert!(!encode_plain_response(&resp, &mut out), "{resp:?}");
        assert!(out.is_empty());
        let mut via = Vec::new();
        resp.encode_into(&mut via);
        assert_eq!(via, resp.encode(), "{resp:?}");
    }
}
