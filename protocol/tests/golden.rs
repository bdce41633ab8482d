//! Golden vectors: every ```` ```hex golden:NAME ```` block in PROTOCOL.md must equal, byte for
//! byte, the frame this crate produces for NAME, and must decode back to the same message.
//! Run with `TROUPE_PRINT_GOLDEN=1` to print the current encodings.

use troupe_protocol::admin::AdminRequest;
use troupe_protocol::crdt::{hlc_now, Typed, TypedOp};
use troupe_protocol::message::{decode_request, encode_request, Quorum, Reply, Request, Response};
use troupe_protocol::object::{ActorId, Object, Value, VersionVector};
use troupe_protocol::ErrorCode;

enum Golden {
    Req(u64, Request),
    Resp(Response),
    Admin(AdminRequest),
}

fn vectors() -> Vec<(&'static str, Golden)> {
    vec![
        (
            "hello",
            Golden::Req(
                0,
                Request::Hello {
                    version: 1,
                    client: "py".into(),
                    token: None,
                },
            ),
        ),
        (
            "hello-response",
            Golden::Resp(Response::ok(0, Reply::hello("n1"))),
        ),
        (
            "put",
            Golden::Req(
                1,
                Request::Put {
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                    context: None,
                    w: None,
                },
            ),
        ),
        (
            "put-response",
            Golden::Resp(Response::ok(
                1,
                Reply::put(vec![0xc1, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0x02]),
            )),
        ),
        (
            "put-siblings-response",
            Golden::Resp(Response::ok(
                7,
                Reply::put_with_values(
                    vec![
                        0xc1, 0x02, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x0b,
                        0x01,
                    ],
                    Some(vec![b"a".to_vec(), b"b".to_vec()]),
                ),
            )),
        ),
        (
            "get",
            Golden::Req(
                2,
                Request::Get {
                    key: b"k".to_vec(),
                    r: Some(Quorum::Quorum),
                    after: None,
                },
            ),
        ),
        (
            "get-response",
            Golden::Resp(Response::ok(
                2,
                Reply::get(
                    vec![b"v".to_vec()],
                    vec![0xc1, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0x02],
                ),
            )),
        ),
        (
            "get-after",
            Golden::Req(
                5,
                Request::Get {
                    key: b"k".to_vec(),
                    r: None,
                    after: Some(vec![0xc1, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0x02]),
                },
            ),
        ),
        (
            "get-siblings-response",
            Golden::Resp(Response::ok(
                5,
                Reply::get(
                    vec![b"a".to_vec(), b"b".to_vec()],
                    vec![
                        0xc1, 0x02, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x0b,
                        0x01,
                    ],
                ),
            )),
        ),
        (
            "unavailable-response",
            Golden::Resp(Response::err(
                6,
                ErrorCode::Unavailable,
                "needed 2 of 3 replicas, 1 succeeded; n2: down (membership); n3: timed out",
            )),
        ),
        (
            "get-not-found",
            Golden::Resp(Response::ok(2, Reply::get(vec![], vec![]))),
        ),
        (
            "delete",
            Golden::Req(
                3,
                Request::Delete {
                    key: b"k".to_vec(),
                    context: None,
                    w: Some(Quorum::N(2)),
                },
            ),
        ),
        (
            "delete-response",
            Golden::Resp(Response::ok(3, Reply::empty())),
        ),
        (
            "error-response",
            Golden::Resp(Response::err(4, ErrorCode::BadRequest, "unknown op \"x\"")),
        ),
        (
            "incr",
            Golden::Req(
                8,
                Request::Incr {
                    key: b"hits".to_vec(),
                    by: 5,
                    w: None,
                },
            ),
        ),
        (
            "incr-response",
            Golden::Resp(Response::ok(8, Reply::counter(12))),
        ),
        (
            "sadd",
            Golden::Req(
                9,
                Request::Sadd {
                    key: b"tags".to_vec(),
                    members: vec![b"a".to_vec(), b"b".to_vec()],
                    w: None,
                },
            ),
        ),
        (
            "smembers-response",
            Golden::Resp(Response::ok(
                10,
                Reply::members(vec![b"a".to_vec(), b"b".to_vec()]),
            )),
        ),
        (
            "reg-get",
            Golden::Req(
                11,
                Request::RegGet {
                    key: b"color".to_vec(),
                    r: None,
                },
            ),
        ),
        (
            "reg-get-nil-response",
            Golden::Resp(Response::ok(11, Reply::register(None))),
        ),
        (
            "wrong-type-response",
            Golden::Resp(Response::err(
                12,
                ErrorCode::BadRequest,
                "key \"tags\" holds a set, not a counter: use sadd, srem and smembers",
            )),
        ),
        (
            "admin-status",
            Golden::Admin(AdminRequest {
                id: 1,
                op: "status".into(),
                args: vec![],
                token: None,
            }),
        ),
    ]
}

fn encode(g: &Golden) -> Vec<u8> {
    let body = match g {
        Golden::Req(id, r) => encode_request(*id, r),
        Golden::Resp(r) => {
            let body = r.encode();
            // The reused-buffer form appends exactly the same bytes.
            let mut buf = vec![0xaa];
            r.encode_into(&mut buf);
            assert_eq!(&buf[1..], &body[..], "encode_into differs from encode");
            body
        }
        Golden::Admin(a) => a.encode(),
    };
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

fn hex_lines(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|c| {
            c.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The golden blocks of PROTOCOL.md: (name, bytes).
fn blocks() -> Vec<(String, Vec<u8>)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/PROTOCOL.md")).unwrap();
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.trim().strip_prefix("```hex golden:") else {
            continue;
        };
        let mut bytes = Vec::new();
        for l in lines.by_ref() {
            if l.trim() == "```" {
                break;
            }
            for tok in l.split_whitespace() {
                bytes.push(
                    u8::from_str_radix(tok, 16)
                        .unwrap_or_else(|_| panic!("bad hex {tok:?} in {name}")),
                );
            }
        }
        out.push((name.trim().to_string(), bytes));
    }
    out
}

#[test]
fn protocol_md_examples_match_the_encoder_byte_for_byte() {
    if std::env::var_os("TROUPE_PRINT_GOLDEN").is_some() {
        for (name, g) in vectors() {
            println!("```hex golden:{name}\n{}\n```\n", hex_lines(&encode(&g)));
        }
    }
    let blocks = blocks();
    for (name, g) in vectors() {
        let (_, doc) = blocks
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("PROTOCOL.md has no golden:{name} block"));
        let ours = encode(&g);
        assert_eq!(
            hex_lines(doc),
            hex_lines(&ours),
            "golden:{name} differs from the encoder"
        );
        // And the documented bytes decode to the same message.
        let body = &doc[4..];
        match g {
            Golden::Req(id, r) => assert_eq!(decode_request(body).unwrap(), (id, r)),
            Golden::Resp(r) => assert_eq!(Response::decode(body).unwrap(), r),
            Golden::Admin(a) => assert_eq!(AdminRequest::decode(body).unwrap(), a),
        }
    }
    assert_eq!(
        blocks.len(),
        vectors().len(),
        "PROTOCOL.md has golden blocks this test does not know"
    );
}

/// The typed states of PROTOCOL.md Appendix A (`hex typed:NAME`, and an object holding one,
/// `hex object:counter`), built through the operations a coordinator applies.
fn typed_examples() -> Vec<(&'static str, Vec<u8>)> {
    let (a, b) = (ActorId(0xa), ActorId(0xb));
    let max = troupe_protocol::crdt::DEFAULT_MAX_SET_MEMBERS;
    let apply = |op: TypedOp, on: Option<&Typed>, actor, now| {
        op.apply(on, actor, now, max).expect("a valid operation")
    };
    // Actor 0xa added 5, actor 0xb subtracted 2: the value is 3.
    let c = apply(TypedOp::Incr { by: 5 }, None, a, 0);
    let counter = apply(TypedOp::Incr { by: -2 }, Some(&c), b, 0);
    // Actor 0xa added "x" and "y"; actor 0xb, concurrently, "y": "y" holds both dots.
    let members = |m: &[&str]| m.iter().map(|m| m.as_bytes().to_vec().into()).collect();
    let by_a = apply(
        TypedOp::SetAdd {
            members: members(&["x", "y"]),
        },
        None,
        a,
        0,
    );
    let by_b = apply(
        TypedOp::SetAdd {
            members: members(&["y"]),
        },
        None,
        b,
        0,
    );
    let set = by_a.join(&by_b).expect("two sets join");
    // Actor 0xa wrote "red" at 2026-01-01T00:00:00Z (hybrid time: milliseconds << 16).
    let now = hlc_now(1_767_225_600_000, 0);
    let register = apply(
        TypedOp::RegPut {
            value: b"red".to_vec(),
        },
        None,
        a,
        now,
    );
    let object = Object::new()
        .update(&VersionVector::new(), Value::Typed(counter.clone()), a)
        .expect("a first write");
    vec![
        ("typed:counter", counter.encode()),
        ("typed:set", set.encode()),
        ("typed:register", register.encode()),
        ("object:counter", object.encode()),
    ]
}

/// Blocks of PROTOCOL.md tagged `hex TAG:NAME`, keyed `TAG:NAME`.
fn tagged_blocks(tags: &[&str]) -> Vec<(String, Vec<u8>)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/PROTOCOL.md")).unwrap();
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.trim().strip_prefix("```hex ") else {
            continue;
        };
        let body: Vec<u8> = lines
            .by_ref()
            .take_while(|l| l.trim() != "```")
            .flat_map(|l| {
                l.split_whitespace()
                    .map(|t| u8::from_str_radix(t, 16).unwrap())
            })
            .collect();
        if tags.iter().any(|t| name.starts_with(&format!("{t}:"))) {
            out.push((name.trim().to_string(), body));
        }
    }
    out
}

#[test]
fn protocol_md_typed_states_match_the_encoder_byte_for_byte() {
    if std::env::var_os("TROUPE_PRINT_GOLDEN").is_some() {
        for (name, bytes) in typed_examples() {
            println!("```hex {name}\n{}\n```\n", hex_lines(&bytes));
        }
    }
    let blocks = tagged_blocks(&["typed", "object"]);
    for (name, ours) in typed_examples() {
        let (_, doc) = blocks
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("PROTOCOL.md has no `hex {name}` block"));
        assert_eq!(
            hex_lines(doc),
            hex_lines(&ours),
            "{name} differs from the encoder"
        );
        // And the documented bytes decode back to the same state.
        if let Some(t) = name.strip_prefix("typed:") {
            let back = Typed::decode(doc).unwrap_or_else(|e| panic!("typed:{t}: {e}"));
            assert_eq!(back.encode(), ours);
        } else {
            assert_eq!(Object::decode(doc).unwrap().encode(), ours);
        }
    }
}
