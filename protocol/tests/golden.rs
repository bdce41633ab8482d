//! Golden vectors: every ```` ```hex golden:NAME ```` block in PROTOCOL.md must equal, byte for
//! byte, the frame this crate produces for NAME, and must decode back to the same message.
//! Run with `TROUPE_PRINT_GOLDEN=1` to print the current encodings.

use troupe_protocol::admin::AdminRequest;
use troupe_protocol::message::{decode_request, encode_request, Quorum, Reply, Request, Response};
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
            "admin-status",
            Golden::Admin(AdminRequest {
                id: 1,
                op: "status".into(),
                args: vec![],
            }),
        ),
    ]
}

fn encode(g: &Golden) -> Vec<u8> {
    let body = match g {
        Golden::Req(id, r) => encode_request(*id, r),
        Golden::Resp(r) => r.encode(),
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
