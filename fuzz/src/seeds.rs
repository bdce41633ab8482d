//! The seed corpus: the golden frames of `protocol/PROTOCOL.md` (the ones
//! `protocol/tests/golden.rs` checks byte for byte) and encodings made by the real
//! encoders, each prefixed with the mode bytes its target's harness reads. Deterministic:
//! the same build writes the same files. `examples/seed.rs` writes them to
//! `corpus/<target>/`; `tests/seeds.rs` runs every harness over them.

use troupe_actors::engine::io::real;
use troupe_actors::engine::sstable::block::BlockBuilder;
use troupe_actors::engine::sstable::bloom::BloomFilter;
use troupe_actors::engine::sstable::format::{encode_index, BlockHandle, Footer, TableProps};
use troupe_actors::engine::sstable::{TableWriter, TableWriterOptions};
use troupe_actors::engine::Entry;
use troupe_actors::memtable::wal::format::{encode_segment, WalRecord};
use troupe_actors::ring::{Layout, PartitionConfig};
use troupe_protocol::admin::AdminRequest;
use troupe_protocol::crdt::{Typed, TypedOp};
use troupe_protocol::data::{DataMsg, DataReq, DataResp, KeyEntry};
use troupe_protocol::layout::LayoutMsg;
use troupe_protocol::message::{encode_request, Quorum, Reply, Request, Response};
use troupe_protocol::object::{ActorId, Object, Value, VersionVector};
use troupe_protocol::swim::{
    Ack, IndirectPing, Lane, MemberInfo, Nack, PeerHello, PeerMsg, PeerProof, PeerWelcome, Ping,
    StateExchange, Status, SwimMsg, Update,
};
use troupe_protocol::ErrorCode;

const PROTOCOL_MD: &str = include_str!("../../protocol/PROTOCOL.md");

/// One seed: the target it is for, a file name, its bytes.
pub type Seed = (&'static str, String, Vec<u8>);

/// The fuzz targets, in the order docs/FUZZING.md lists them.
pub const TARGETS: [&str; 5] = ["client_frame", "peer_msg", "object", "wal", "sstable"];

/// Every seed of every target.
pub fn all() -> Vec<Seed> {
    let mut out = Vec::new();
    client_frame(&mut out);
    peer_msg(&mut out);
    object(&mut out);
    wal_seeds(&mut out);
    sstable(&mut out);
    out
}

/// The ```` ```hex TAG:NAME ```` blocks of PROTOCOL.md whose tag is `tag`.
pub fn protocol_md_blocks(tag: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut lines = PROTOCOL_MD.lines();
    let open = format!("```hex {tag}:");
    while let Some(line) = lines.next() {
        let Some(name) = line.trim().strip_prefix(open.as_str()) else {
            continue;
        };
        let mut bytes = Vec::new();
        for l in lines.by_ref().take_while(|l| l.trim() != "```") {
            for tok in l.split_whitespace() {
                bytes.push(u8::from_str_radix(tok, 16).expect("PROTOCOL.md hex"));
            }
        }
        out.push((name.to_string(), bytes));
    }
    out
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// The objects and contexts the real operations produce.
fn objects() -> Vec<(String, Object)> {
    let (a, b, c) = (ActorId(0xA), ActorId(0xB), ActorId(u64::MAX));
    let none = VersionVector::new();
    let a1 = Object::new()
        .update(&none, Value::data("x"), a)
        .expect("fresh");
    let a2 = a1
        .update(&a1.context(), Value::data("hi"), a)
        .expect("fresh");
    let b1 = a1.update(&a1.context(), Value::Deleted, b).expect("fresh");
    let sib = a2.join(&b1);
    let many = (0..30).fold(sib.clone(), |o, i| {
        o.update(&none, Value::data(vec![i as u8; i]), ActorId(i as u64 % 3))
            .expect("fresh")
    });
    let big = c_update(&sib, c);
    let typed = typed_states().into_iter().fold(Object::new(), |o, (_, t)| {
        o.update(&none, Value::Typed(t), a).expect("fresh")
    });
    vec![
        ("typed".into(), typed),
        ("empty".into(), Object::new()),
        ("one".into(), a1),
        ("two".into(), a2),
        ("delete".into(), b1),
        ("siblings".into(), sib),
        ("many".into(), many),
        ("max-actor".into(), big),
    ]
}

/// Typed states made by the real operations: a counter, a set, a register.
fn typed_states() -> Vec<(String, Typed)> {
    let (a, b) = (ActorId(0xA), ActorId(0xB));
    let apply = |op: TypedOp, cur: Option<&Typed>, actor| {
        op.apply(cur, actor, 1_700_000_000_000 << 16, 1000)
            .expect("a valid op")
    };
    let c1 = apply(TypedOp::Incr { by: 5 }, None, a);
    let c2 = apply(TypedOp::Incr { by: -7 }, Some(&c1), b);
    let members = |m: &[&str]| m.iter().map(|x| serde_bytes_buf(x.as_bytes())).collect();
    let s1 = apply(
        TypedOp::SetAdd {
            members: members(&["x", "y"]),
        },
        None,
        a,
    );
    let s2 = apply(
        TypedOp::SetAdd {
            members: members(&["z"]),
        },
        Some(&s1),
        b,
    );
    let s3 = apply(
        TypedOp::SetRemove {
            members: members(&["x"]),
        },
        Some(&s2),
        a,
    );
    let r1 = apply(
        TypedOp::RegPut {
            value: b"v".to_vec(),
        },
        None,
        a,
    );
    let r2 = apply(TypedOp::RegPut { value: vec![9; 40] }, Some(&r1), b);
    vec![
        ("counter".into(), c2),
        ("set".into(), s3),
        ("register".into(), r2),
    ]
}

fn c_update(o: &Object, actor: ActorId) -> Object {
    o.update(&o.context(), Value::data(vec![0xff; 200]), actor)
        .expect("fresh")
}

fn client_frame(out: &mut Vec<Seed>) {
    // Harness prefix: max frame bytes (u16 LE), chunk size - 1.
    let prefix = |max: u16, chunk: u8| {
        let mut p = max.to_le_bytes().to_vec();
        p.push(chunk);
        p
    };
    let golden = protocol_md_blocks("golden");
    let mut all = prefix(u16::MAX, 2);
    for (name, frame) in &golden {
        let mut s = prefix(u16::MAX, 255);
        s.extend_from_slice(frame);
        out.push(("client_frame", format!("golden-{name}"), s));
        all.extend_from_slice(frame);
    }
    out.push(("client_frame", "golden-all-in-3-byte-chunks".into(), all));
    let ctx = objects()[4].1.context().encode();
    let reqs = [
        Request::Ping,
        Request::Hello {
            version: 1,
            client: "fuzz".into(),
            token: Some("t".into()),
        },
        Request::Get {
            key: b"k".to_vec(),
            r: Some(Quorum::N(2)),
            after: Some(ctx.clone()),
        },
        Request::Put {
            key: vec![0; 40],
            value: vec![0xff; 300],
            context: Some(ctx.clone()),
            w: Some(Quorum::All),
        },
        Request::Delete {
            key: b"k".to_vec(),
            context: Some(ctx.clone()),
            w: Some(Quorum::One),
        },
        Request::Incr {
            key: b"c".to_vec(),
            by: -3,
            w: None,
        },
        Request::Counter {
            key: b"c".to_vec(),
            r: Some(Quorum::All),
        },
        Request::Sadd {
            key: b"s".to_vec(),
            members: vec![b"a".to_vec(), vec![]],
            w: None,
        },
        Request::Srem {
            key: b"s".to_vec(),
            members: vec![b"a".to_vec()],
            w: Some(Quorum::One),
        },
        Request::Smembers {
            key: b"s".to_vec(),
            r: None,
        },
        Request::RegPut {
            key: b"r".to_vec(),
            value: b"v".to_vec(),
            w: None,
        },
        Request::RegGet {
            key: b"r".to_vec(),
            r: None,
        },
        Request::Keys {
            prefix: Some(b"k".to_vec()),
            limit: Some(10),
            after: Some(b"k1".to_vec()),
        },
    ];
    for (i, r) in reqs.iter().enumerate() {
        let mut s = prefix(4096, 255);
        s.extend(framed(&encode_request(u64::MAX - i as u64, r)));
        out.push(("client_frame", format!("request-{}-{i}", r.op()), s));
    }
    let resps = [
        Response::ok(3, Reply::get(vec![b"a".to_vec(), vec![]], ctx.clone())),
        Response::ok(4, Reply::put_with_values(ctx, Some(vec![b"b".to_vec()]))),
        Response::err(5, ErrorCode::Unavailable, "needed 2 of 3"),
    ];
    for (i, r) in resps.iter().enumerate() {
        let mut s = prefix(4096, 255);
        s.extend(framed(&r.encode()));
        out.push(("client_frame", format!("response-{i}"), s));
    }
    let admin = AdminRequest {
        id: 9,
        op: "status".into(),
        args: vec!["--json".into()],
        token: Some("admin-token".into()),
    };
    let mut s = prefix(4096, 255);
    s.extend(framed(&admin.encode()));
    out.push(("client_frame", "admin-status".into(), s));
    let mut s = prefix(3, 0);
    s.extend(framed(b"\x80\x80\x80\x80"));
    out.push(("client_frame", "too-large".into(), s));
}

fn member(id: &str) -> MemberInfo {
    MemberInfo {
        id: id.into(),
        client_addr: "127.0.0.1:7000".into(),
        peer_addr: "127.0.0.1:7001".into(),
        admin_addr: "127.0.0.1:7002".into(),
        incarnation: 3,
        status: Status::Suspect,
        run_id: 1_700_000_000_000,
    }
}

fn peer_msg(out: &mut Vec<Seed>) {
    let update = || Update {
        member: member("n2"),
        origin: "n1".into(),
    };
    let objs = objects();
    let obj = objs[4].1.encode();
    let ctx = objs[4].1.context().encode();
    let layout = Layout::initial(
        ["n1", "n2", "n3", "n4"],
        PartitionConfig {
            partitions: 16,
            n: 3,
        },
    )
    .expect("a valid layout");
    let msgs = [
        (
            "ping",
            PeerMsg::Swim(SwimMsg::Ping(Ping {
                seq: 1,
                from: "n1".into(),
                updates: vec![update()],
            })),
        ),
        (
            "ack",
            PeerMsg::Swim(SwimMsg::Ack(Ack {
                seq: 1,
                from: "n2".into(),
                digest: [7; 32],
                updates: vec![update(), update()],
            })),
        ),
        (
            "indirect-ping",
            PeerMsg::Swim(SwimMsg::IndirectPing(IndirectPing {
                seq: 2,
                from: "n1".into(),
                target: "n3".into(),
            })),
        ),
        (
            "nack",
            PeerMsg::Swim(SwimMsg::Nack(Nack {
                seq: 4,
                from: "n1".into(),
            })),
        ),
        (
            "state-exchange",
            PeerMsg::Swim(SwimMsg::StateExchange(StateExchange {
                from: "n1".into(),
                members: vec![member("n1"), member("n2")],
                reply: true,
            })),
        ),
        (
            "data-requests",
            PeerMsg::Data(vec![
                DataMsg::Req {
                    id: 1,
                    req: DataReq::Get { key: b"k".to_vec() },
                },
                DataMsg::Req {
                    id: 2,
                    req: DataReq::Put {
                        key: b"k".to_vec(),
                        object: obj.clone(),
                    },
                },
                DataMsg::Req {
                    id: 3,
                    req: DataReq::Coordinate {
                        key: b"k".to_vec(),
                        value: Some(b"v".to_vec()),
                        context: Some(ctx.clone()),
                        w: Some(Quorum::Quorum),
                        typed: None,
                    },
                },
                DataMsg::Req {
                    id: 4,
                    req: DataReq::Coordinate {
                        key: b"c".to_vec(),
                        value: None,
                        context: None,
                        w: None,
                        typed: Some(TypedOp::SetAdd {
                            members: vec![serde_bytes_buf(b"m")],
                        }),
                    },
                },
                DataMsg::Req {
                    id: 5,
                    req: DataReq::Keys {
                        prefix: Some(b"k".to_vec()),
                        after: Some(b"k1".to_vec()),
                        limit: 100,
                        partitions: vec![0, 3, 15],
                    },
                },
            ]),
        ),
        (
            "data-responses",
            PeerMsg::Data(vec![
                DataMsg::Resp {
                    id: 1,
                    resp: DataResp::Object { object: Some(obj) },
                },
                DataMsg::Resp {
                    id: 2,
                    resp: DataResp::Stored,
                },
                DataMsg::Resp {
                    id: 3,
                    resp: DataResp::Written {
                        context: ctx,
                        values: Some(vec![serde_bytes_buf(b"a"), serde_bytes_buf(b"b")]),
                        typed: Some(typed_states()[1].1.encode()),
                    },
                },
                DataMsg::Resp {
                    id: 5,
                    resp: DataResp::Keys {
                        entries: vec![KeyEntry {
                            key: b"k2".to_vec(),
                            live: true,
                            clock: objs[4].1.context().encode(),
                        }],
                        last: Some(b"k2".to_vec()),
                    },
                },
                DataMsg::Resp {
                    id: 4,
                    resp: DataResp::Failed {
                        code: "timeout".into(),
                        msg: "1 of 2".into(),
                    },
                },
            ]),
        ),
        (
            "layout-digest",
            PeerMsg::Layout(LayoutMsg::Digest {
                version: 2,
                digest: [9; 32],
            }),
        ),
        ("layout-pull", PeerMsg::Layout(LayoutMsg::Pull)),
        (
            "layout-full",
            PeerMsg::Layout(LayoutMsg::Full(layout.to_wire())),
        ),
    ];
    for (name, m) in msgs {
        out.push(("peer_msg", name.into(), m.encode()));
    }
    let hello = PeerHello {
        version: 1,
        from: "n1".into(),
        lane: Lane::Data,
        challenge: [1; 32],
    };
    out.push(("peer_msg", "hello".into(), hello.encode()));
    let welcome = PeerWelcome {
        from: "n2".into(),
        challenge: [2; 32],
        proof: Some(vec![3; 32]),
        refused: Some("no".into()),
    };
    out.push(("peer_msg", "welcome".into(), welcome.encode()));
    let proof = PeerProof {
        proof: Some(vec![4; 32]),
    };
    out.push(("peer_msg", "proof".into(), proof.encode()));
    let wire = rmp_serde::to_vec_named(&layout.to_wire()).expect("encodes");
    out.push(("peer_msg", "layout-file-body".into(), wire));
}

fn serde_bytes_buf(b: &[u8]) -> serde_bytes::ByteBuf {
    serde_bytes::ByteBuf::from(b.to_vec())
}

fn object(out: &mut Vec<Seed>) {
    for (name, bytes) in protocol_md_blocks("object") {
        out.push((
            "object",
            format!("md-object-{name}"),
            [&[0], &bytes[..]].concat(),
        ));
    }
    for (name, bytes) in protocol_md_blocks("context") {
        out.push((
            "object",
            format!("md-context-{name}"),
            [&[1], &bytes[..]].concat(),
        ));
    }
    let objs = objects();
    for (name, o) in &objs {
        let enc = o.encode();
        let ctx = o.context().encode();
        out.push((
            "object",
            format!("object-{name}"),
            [&[0], &enc[..]].concat(),
        ));
        out.push((
            "object",
            format!("context-{name}"),
            [&[1], &ctx[..]].concat(),
        ));
        let mp = rmp_serde::to_vec(o).expect("encodes");
        out.push((
            "object",
            format!("msgpack-{name}"),
            [&[3], &mp[..]].concat(),
        ));
    }
    for (name, t) in typed_states() {
        out.push((
            "object",
            format!("typed-{name}"),
            [&[4], &t.encode()[..]].concat(),
        ));
    }
    // Mode 2: actor, object, context, object.
    for (i, w) in objs.windows(2).enumerate() {
        let (a, b) = (w[0].1.encode(), w[1].1.encode());
        let ctx = w[1].1.context().encode();
        if a.len() > 255 || ctx.len() > 255 {
            continue;
        }
        let mut s = vec![2, i as u8 % 4, a.len() as u8];
        s.extend_from_slice(&a);
        s.push(ctx.len() as u8);
        s.extend_from_slice(&ctx);
        s.extend_from_slice(&b);
        out.push(("object", format!("combined-{i}"), s));
    }
}

fn rec(seq: u64, key: &str, value: Option<&str>) -> WalRecord {
    WalRecord {
        seq,
        key: key.as_bytes().to_vec(),
        value: value.map(|v| v.as_bytes().to_vec()),
    }
}

fn wal_seeds(out: &mut Vec<Seed>) {
    let segs = [
        ("header-only", encode_segment(0, 42, &[])),
        (
            "one-batch",
            encode_segment(0, 42, &[vec![rec(1, "k", Some("v")), rec(2, "k", None)]]),
        ),
        (
            "three-batches",
            encode_segment(
                7,
                0x5eed,
                &[
                    vec![rec(1, "a", Some("1"))],
                    vec![],
                    vec![rec(2, "b", Some("22")), rec(3, "a", None)],
                ],
            ),
        ),
    ];
    for (name, seg) in segs {
        // Mode 0 (checksums as written) and mode 30 (recompute them all), cut at 40.
        for mode in [0u8, 30] {
            let mut s = vec![mode, 40, 0];
            s.extend_from_slice(&seg);
            out.push(("wal", format!("segment-{name}-mode{mode}"), s));
        }
    }
    // Crash mode: segment 1, salt 0x0101.., two batches of one record, then each damage.
    for what in 0u8..4 {
        let mut s = vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
        s.extend_from_slice(&[1, 5, 0x02, b'k', b'1', 2, b'v', b'1']);
        s.extend_from_slice(&[1, 6, 0x82, b'k', b'2']);
        s.extend_from_slice(&[what, 3, 0, 9, 0, 7, 0]);
        out.push(("wal", format!("crash-{what}"), s));
    }
}

fn entries() -> Vec<Entry> {
    let mut v = vec![
        Entry::put("apple", 9, "red"),
        Entry::tombstone("apple", 3),
        Entry::put("applesauce", 1, ""),
        Entry::put("banana", 2, vec![0u8; 300]),
    ];
    v.extend((0..200).map(|i| Entry::put(format!("key-{i:05}"), 1000 + i, vec![i as u8; 40])));
    v
}

fn sstable(out: &mut Vec<Seed>) {
    for pc in [true, false] {
        let mut b = BlockBuilder::new(pc);
        entries().iter().take(4).for_each(|e| b.add(e));
        let raw = b.finish();
        out.push((
            "sstable",
            format!("block-pc{pc}"),
            [&[0], &raw[..]].concat(),
        ));
        out.push((
            "sstable",
            format!("block-pc{pc}-fix"),
            [&[4], &raw[..]].concat(),
        ));
    }
    let dir = tempfile::tempdir().expect("a temp dir");
    for (i, (n, block_size)) in [(1usize, 4096usize), (4, 4096), (204, 512)]
        .iter()
        .enumerate()
    {
        let opts = TableWriterOptions {
            block_size: *block_size,
            ..TableWriterOptions::default()
        };
        let mut w = TableWriter::create(real(), dir.path(), i as u64 + 1, 0, opts, None)
            .expect("a table writer");
        entries()
            .iter()
            .take(*n)
            .for_each(|e| w.add(e).expect("adds"));
        w.finish().expect("finishes");
        let path = troupe_actors::engine::sstable::table_path(dir.path(), i as u64 + 1);
        let bytes = std::fs::read(path).expect("reads the table back");
        // 1: as written; 5: checksums recomputed; 13: and a block cache.
        for mode in [1u8, 5, 13] {
            let name = format!("table-{n}-entries-mode{mode}");
            out.push(("sstable", name, [&[mode], &bytes[..]].concat()));
        }
    }
    let footer = Footer {
        filter_offset: 100,
        filter_len: 66,
        filter_checksum: 1,
        index_offset: 166,
        index_len: 30,
        index_checksum: 2,
    };
    out.push((
        "sstable",
        "footer".into(),
        [&[2], &footer.encode()[..]].concat(),
    ));
    let index = encode_index(
        &TableProps {
            entry_count: 2,
            tombstone_count: 1,
            min_seq: 1,
            max_seq: 9,
        },
        &[BlockHandle {
            first_key: b"a".to_vec(),
            last_key: b"b".to_vec(),
            offset: 0,
            len: 40,
        }],
    );
    out.push(("sstable", "index".into(), [&[2], &index[..]].concat()));
    let mut bloom = Vec::new();
    BloomFilter::build(&[(1, 2), (3, 4)], 10).encode(&mut bloom);
    out.push(("sstable", "bloom".into(), [&[2], &bloom[..]].concat()));
}
