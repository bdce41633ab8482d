//! The coordinator on one node over an in-memory store: the object semantics a client sees
//! (siblings, contexts, deletes, read your writes), argument checks, the per-key lock, and
//! that nothing stays in flight after the requests finish.

use super::*;
use crate::memtable::table::Versioned;
use crate::memtable::{StorageError, UpdateBatch, UpdateThen};
use std::collections::BTreeMap;
use troupe_protocol::object::VersionVector;

/// A Memtable stand-in: a map, answering after a yield so requests really interleave.
#[derive(Default)]
struct FakeStore {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    seq: u64,
    /// Drop every update's callback unrun, as a storage actor that stopped with them
    /// queued does.
    lose_updates: bool,
}

impl Actor for FakeStore {
    type Context = Context<Self>;
}

impl Handler<Get> for FakeStore {
    type Result = ResponseFuture<Result<Option<Versioned>, StorageError>>;
    fn handle(&mut self, m: Get, _: &mut Context<Self>) -> Self::Result {
        let v = self.map.get(&m.key).map(|v| Versioned {
            seq: 1,
            value: Some(v.clone()),
        });
        Box::pin(async move {
            tokio::task::yield_now().await;
            Ok(v)
        })
    }
}

impl<T: Send + 'static> Handler<UpdateBatch<T>> for FakeStore {
    type Result = ();
    fn handle(&mut self, m: UpdateBatch<T>, _: &mut Context<Self>) {
        for u in m.0 {
            self.update(u);
        }
    }
}

impl FakeStore {
    fn update<T: Send + 'static>(&mut self, m: UpdateThen<T>) {
        let UpdateThen { update: m, then } = m;
        if self.lose_updates {
            return drop(then);
        }
        let change = (m.apply)(&m.key, self.map.get(&m.key).map(Vec::as_slice));
        match change.write {
            Some(crate::memtable::NewValue::Put(v)) => {
                self.seq += 1;
                self.map.insert(m.key, v);
            }
            Some(crate::memtable::NewValue::Delete) => {
                self.seq += 1;
                self.map.remove(&m.key);
            }
            None => {}
        }
        let out = change.out;
        actix::spawn(async move {
            tokio::task::yield_now().await;
            then.call(Ok(out))
        });
    }
}

fn single_node() -> Addr<Coordinator> {
    single_node_coordinator().start()
}

/// The coordinator of `single_node`, not started (to attach more to it first).
pub(super) fn single_node_coordinator() -> Coordinator {
    coordinator_over(FakeStore::default())
}

fn coordinator_over(store: FakeStore) -> Coordinator {
    let me = NodeId("n1".into());
    let store = store.start();
    let cfg = CoordinatorConfig {
        me,
        actor: ActorId(7),
        partitions: 16,
        n: 3,
        r: Quorum::N(2),
        w: Quorum::N(3),
        request_timeout: Duration::from_secs(30),
        max_inflight: 1000,
        max_repairs: 10,
        max_batch_bytes: 1 << 20,
        max_object_bytes: 1 << 20,
        mailbox: 1000,
        max_set_members: 100,
    };
    Coordinator::new(
        cfg,
        store.clone().recipient(),
        store.recipient(),
        None,
        super::placement::RingInputs::single_for_tests(),
        Arc::default(),
        Arc::default(),
    )
    .expect("one member places every key")
}

fn put(k: &str, v: &str, ctx: Option<Vec<u8>>) -> ClientWrite {
    ClientWrite {
        key: k.into(),
        value: Some(v.into()),
        context: ctx,
        w: None,
        typed: None,
    }
}

fn get(k: &str) -> ClientGet {
    ClientGet {
        key: k.into(),
        r: None,
        after: None,
        as_type: None,
    }
}

async fn settled(c: &Addr<Coordinator>) {
    assert_eq!(
        c.send(GetLoad).await.unwrap(),
        CoordinatorLoad::default(),
        "nothing stays in flight once every request was answered"
    );
}

/// A local write whose storage never answers (its callback dropped unrun) is a `timeout`
/// (it may or may not have been applied), and releases its key: the next write of the key
/// gets its own answer instead of waiting behind it.
#[actix_rt::test]
async fn a_write_storage_dropped_is_a_timeout_and_frees_its_key() {
    let c = coordinator_over(FakeStore {
        lose_updates: true,
        ..FakeStore::default()
    })
    .start();
    for _ in 0..2 {
        let e = c.send(put("k", "a", None)).await.unwrap().unwrap_err();
        assert_eq!(e.code, ErrorCode::Timeout, "{}", e.msg);
    }
    settled(&c).await;
}

/// A client batch of more writes than one `UpdateBatch` holds (and two blind writes of one
/// key in it): every write is answered once, each key holds what was written to it (the
/// key written twice: both, as siblings), and nothing stays queued or in flight.
#[actix_rt::test]
async fn a_batch_of_more_writes_than_an_update_batch_answers_each_once() {
    let c = single_node();
    let n = 3 * super::memtable_link::UPDATE_BATCH + 5;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut ops = Vec::new();
    for i in 0..n {
        let key = if i == n - 1 {
            "k0".to_string()
        } else {
            format!("k{i}")
        };
        let tx = tx.clone();
        let answer: Answer<WriteReply> = Box::new(move |r| tx.send((i, r.is_ok())).unwrap());
        ops.push(ClientOp::Write(put(&key, &format!("v{i}"), None), answer));
    }
    drop(tx);
    c.send(ClientBatch(ops.into())).await.unwrap();
    let mut answered = vec![0; n];
    while let Some((i, ok)) = rx.recv().await {
        assert!(ok, "write {i} failed");
        answered[i] += 1;
    }
    assert!(answered.iter().all(|&a| a == 1), "{answered:?}");
    let got = c.send(get("k0")).await.unwrap().unwrap();
    assert_eq!(got.values.len(), 2, "two blind writes of k0: siblings");
    let got = c.send(get(&format!("k{}", n - 2))).await.unwrap().unwrap();
    assert_eq!(got.values, vec![format!("v{}", n - 2).into_bytes()]);
    settled(&c).await;
}

#[actix_rt::test]
async fn one_node_reads_its_writes_and_a_context_replaces_what_it_saw() {
    let c = single_node();
    let ctx1 = c.send(put("k", "a", None)).await.unwrap().unwrap().context;
    let got = c.send(get("k")).await.unwrap().unwrap();
    assert_eq!(got.values, vec![b"a".to_vec()]);
    assert_eq!(got.context, ctx1);
    // A blind write beside it: two siblings. A write with the read's context: one value.
    c.send(put("k", "b", None)).await.unwrap().unwrap();
    let got = c.send(get("k")).await.unwrap().unwrap();
    assert_eq!(got.values.len(), 2, "{:?}", got.values);
    c.send(put("k", "c", Some(got.context)))
        .await
        .unwrap()
        .unwrap();
    let got = c.send(get("k")).await.unwrap().unwrap();
    assert_eq!(got.values, vec![b"c".to_vec()]);
    settled(&c).await;
}

/// Issue 9: a put's context covers every sibling the coordinator held, so a client that
/// wrote again with it used to drop concurrent values it never saw. The reply now shows
/// them; written back with that context, the key resolves to one value.
#[actix_rt::test]
async fn a_put_that_leaves_siblings_returns_every_value_its_context_covers() {
    let c = single_node();
    let first = c.send(put("k", "a", None)).await.unwrap().unwrap();
    assert_eq!(
        first.values, None,
        "only the new version: the context alone"
    );
    let second = c.send(put("k", "b", None)).await.unwrap().unwrap();
    let mut values = second
        .values
        .clone()
        .expect("two versions: the reply shows both");
    values.sort();
    assert_eq!(values, vec![b"a".to_vec(), b"b".to_vec()]);
    let got = c.send(get("k")).await.unwrap().unwrap();
    assert_eq!(got.context, second.context, "the same versions a get shows");
    let third = c
        .send(put("k", "c", Some(second.context)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(third.values, None);
    let got = c.send(get("k")).await.unwrap().unwrap();
    assert_eq!(got.values, vec![b"c".to_vec()]);
    assert_eq!(got.context, third.context);
    settled(&c).await;
}

/// A delete marker beside the new version counts as a version (the reply's values are the
/// live ones, as a get shows them): the context covers the marker too.
#[actix_rt::test]
async fn a_put_beside_a_delete_marker_shows_the_live_values() {
    let c = single_node();
    c.send(ClientWrite {
        value: None,
        ..put("k", "", None)
    })
    .await
    .unwrap()
    .unwrap();
    let w = c.send(put("k", "a", None)).await.unwrap().unwrap();
    assert_eq!(w.values, Some(vec![b"a".to_vec()]));
    let got = c.send(get("k")).await.unwrap().unwrap();
    assert_eq!((got.values, got.context), (vec![b"a".to_vec()], w.context));
    settled(&c).await;
}

#[actix_rt::test]
async fn a_delete_removes_what_its_context_saw_and_nothing_else() {
    let c = single_node();
    c.send(put("k", "a", None)).await.unwrap().unwrap();
    let seen = c.send(get("k")).await.unwrap().unwrap().context;
    // Deleting without a context only adds a marker: the value stays visible.
    let del = |ctx| ClientWrite {
        key: b"k".to_vec(),
        value: None,
        context: ctx,
        w: None,
        typed: None,
    };
    c.send(del(None)).await.unwrap().unwrap();
    assert_eq!(
        c.send(get("k")).await.unwrap().unwrap().values,
        vec![b"a".to_vec()]
    );
    let seen2 = c.send(get("k")).await.unwrap().unwrap().context;
    assert_ne!(seen, seen2);
    c.send(del(Some(seen2))).await.unwrap().unwrap();
    let got = c.send(get("k")).await.unwrap().unwrap();
    assert!(got.values.is_empty(), "deleted: {:?}", got.values);
    assert!(
        !got.context.is_empty(),
        "the markers' context is still given"
    );
    settled(&c).await;
}

#[actix_rt::test]
async fn concurrent_blind_writes_of_one_key_all_survive_as_siblings() {
    let c = single_node();
    let writes: Vec<_> = (0..20)
        .map(|i| c.send(put("hot", &format!("v{i}"), None)))
        .collect();
    for w in writes {
        w.await.unwrap().unwrap();
    }
    let got = c.send(get("hot")).await.unwrap().unwrap();
    assert_eq!(got.values.len(), 20, "no write lost to a concurrent one");
    settled(&c).await;
}

#[actix_rt::test]
async fn past_the_sibling_limit_a_write_is_refused_naming_key_and_count() {
    let c = single_node();
    for i in 0..100 {
        c.send(put("many", &format!("v{i}"), None))
            .await
            .unwrap()
            .unwrap();
    }
    let e = c
        .send(put("many", "one-more", None))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::TooLarge);
    assert!(
        e.msg.contains("\"many\"") && e.msg.contains("101 siblings"),
        "{}",
        e.msg
    );
    settled(&c).await;
}

#[actix_rt::test]
async fn impossible_quorums_and_foreign_contexts_are_bad_requests() {
    let c = single_node();
    let e = c
        .send(ClientGet {
            key: b"k".to_vec(),
            r: Some(Quorum::N(2)),
            after: None,
            as_type: None,
        })
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(e.msg.contains("1 to 1"), "{}", e.msg);
    let e = c
        .send(ClientWrite {
            w: Some(Quorum::N(0)),
            ..put("k", "v", None)
        })
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    let e = c
        .send(put("k", "v", Some(b"garbage".to_vec())))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(e.msg.contains("context"), "{}", e.msg);
    settled(&c).await;
}

#[actix_rt::test]
async fn after_is_answered_when_covered_and_refused_when_not() {
    let c = single_node();
    let ctx = c.send(put("k", "a", None)).await.unwrap().unwrap().context;
    let got = c
        .send(ClientGet {
            after: Some(ctx),
            ..get("k")
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.values, vec![b"a".to_vec()]);
    // A context naming a write no replica has (another actor's dot).
    let unseen: VersionVector = [(ActorId(99), 1)].into_iter().collect();
    let e = c
        .send(ClientGet {
            after: Some(unseen.encode()),
            ..get("k")
        })
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert!(e.msg.contains("covering"), "{}", e.msg);
    settled(&c).await;
}

/// Postmortem (review): the context of a not-found read passed back as `after` used to
/// make every such get fail, since no replica "covered" it.
#[actix_rt::test]
async fn after_a_not_found_read_is_no_constraint() {
    let c = single_node();
    let nf = c.send(get("missing")).await.unwrap().unwrap();
    assert!(nf.values.is_empty());
    let again = c
        .send(ClientGet {
            after: Some(nf.context),
            ..get("missing")
        })
        .await
        .unwrap()
        .expect("a not-found context is covered by anything");
    assert!(again.values.is_empty());
    settled(&c).await;
}

/// A forwarded write: the primary's reply, values included, reaches the forwarding node's
/// client unchanged through the peer wire.
#[test]
fn a_forwarded_write_relays_the_values_with_the_context() {
    use super::requests::{put_resp, written_reply};
    for reply in [
        WriteReply {
            context: vec![0xc1, 1, 0, 0, 0, 0, 0, 0, 0, 7, 2],
            values: Some(vec![b"a".to_vec(), Vec::new()]),
            typed: None,
        },
        WriteReply {
            context: vec![0xc1, 1, 0, 0, 0, 0, 0, 0, 0, 7, 1],
            values: None,
            typed: None,
        },
    ] {
        let msg = DataMsg::Resp {
            id: 1,
            resp: put_resp(reply.clone()),
        };
        let bytes = rmp_serde::to_vec_named(&msg).unwrap();
        let back: DataMsg = troupe_protocol::codec::decode_one(&bytes).unwrap();
        let DataMsg::Resp {
            resp:
                DataResp::Written {
                    context,
                    values,
                    typed,
                },
            ..
        } = back
        else {
            panic!("not a Written answer: {back:?}");
        };
        assert_eq!(written_reply(context, values, typed), reply);
    }
}

#[test]
fn batches_are_split_to_fit_a_frame_and_keep_their_order() {
    use troupe_protocol::data::DataReq;
    let put = |id, n| DataMsg::Req {
        id,
        req: DataReq::Put {
            key: b"k".to_vec(),
            object: vec![0; n],
        },
    };
    let batch = vec![put(1, 400), put(2, 400), put(3, 2000), put(4, 10)];
    let chunks = split_by_size(batch, 1000);
    let ids: Vec<Vec<u64>> = chunks
        .iter()
        .map(|c| {
            c.iter()
                .map(|m| match m {
                    DataMsg::Req { id, .. } => *id,
                    DataMsg::Resp { id, .. } => *id,
                })
                .collect()
        })
        .collect();
    assert_eq!(ids, vec![vec![1, 2], vec![3], vec![4]]);
}

fn typed(k: &str, op: troupe_protocol::crdt::TypedOp) -> ClientWrite {
    ClientWrite {
        key: k.into(),
        value: None,
        context: None,
        w: None,
        typed: Some(op),
    }
}

fn typed_get(k: &str, kind: troupe_protocol::crdt::TypeKind) -> ClientGet {
    ClientGet {
        as_type: Some(kind),
        ..get(k)
    }
}

/// Issue 10: typed ops through the coordinator: values, type checks that name the key's
/// type, the set limit, and a delete of a typed key.
#[actix_rt::test]
async fn typed_keys_hold_one_type_and_say_which() {
    use troupe_protocol::crdt::{TypeKind, Typed, TypedOp};
    let c = single_node();
    let incr = |by| typed("n", TypedOp::Incr { by });
    let w = c.send(incr(5)).await.unwrap().unwrap();
    assert!(matches!(w.typed, Some(Typed::Counter(ref x)) if x.value() == 5));
    let w = c.send(incr(-7)).await.unwrap().unwrap();
    assert!(matches!(w.typed, Some(Typed::Counter(ref x)) if x.value() == -2));
    let got = c
        .send(typed_get("n", TypeKind::Counter))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(got.typed, Some(Typed::Counter(ref x)) if x.value() == -2));

    // Other ops on the counter, and typed ops on a plain key, are refused by name.
    let e = c.send(get("n")).await.unwrap().unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(
        e.msg.contains("holds a counter") && e.msg.contains("incr"),
        "{}",
        e.msg
    );
    let e = c.send(put("n", "x", None)).await.unwrap().unwrap_err();
    assert!(e.msg.contains("holds a counter"), "{}", e.msg);
    let m = |s: &str| vec![serde_bytes::ByteBuf::from(s.as_bytes().to_vec())];
    let e = c
        .send(typed("n", TypedOp::SetAdd { members: m("a") }))
        .await
        .unwrap()
        .unwrap_err();
    assert!(e.msg.contains("holds a counter, not a set"), "{}", e.msg);
    c.send(put("plain", "x", None)).await.unwrap().unwrap();
    let e = c.send(incr(1)).await.unwrap().unwrap();
    assert!(e.typed.is_some());
    let e = c
        .send(typed("plain", TypedOp::Incr { by: 1 }))
        .await
        .unwrap()
        .unwrap_err();
    assert!(e.msg.contains("holds a plain value"), "{}", e.msg);

    // Overflow is an error that changes nothing.
    c.send(incr(i64::MAX)).await.unwrap().unwrap(); // -1 + MAX: in range
    let e = c.send(incr(2)).await.unwrap().unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(e.msg.contains("64-bit"), "{}", e.msg);
    let got = c
        .send(typed_get("n", TypeKind::Counter))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(got.typed, Some(Typed::Counter(ref x)) if x.value() == i64::MAX - 1));

    // A delete without a context removes the counter; it starts again from zero.
    c.send(ClientWrite {
        value: None,
        ..put("n", "", None)
    })
    .await
    .unwrap()
    .unwrap();
    let w = c.send(incr(3)).await.unwrap().unwrap();
    assert!(matches!(w.typed, Some(Typed::Counter(ref x)) if x.value() == 3));

    // Sets: members in order, removes, and the limit (100 in this config).
    c.send(typed("s", TypedOp::SetAdd { members: m("b") }))
        .await
        .unwrap()
        .unwrap();
    c.send(typed("s", TypedOp::SetAdd { members: m("a") }))
        .await
        .unwrap()
        .unwrap();
    c.send(typed("s", TypedOp::SetRemove { members: m("b") }))
        .await
        .unwrap()
        .unwrap();
    let got = c
        .send(typed_get("s", TypeKind::Set))
        .await
        .unwrap()
        .unwrap();
    let Some(Typed::Set(s)) = got.typed else {
        panic!("a set")
    };
    assert_eq!(s.members().collect::<Vec<_>>(), [b"a".as_slice()]);
    let many: Vec<_> = (0..100)
        .map(|i| serde_bytes::ByteBuf::from(format!("m{i}").into_bytes()))
        .collect();
    let e = c
        .send(typed("s", TypedOp::SetAdd { members: many }))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::TooLarge);
    assert!(e.msg.contains("max_set_members = 100"), "{}", e.msg);

    // Registers: the last write wins.
    for v in ["1", "2"] {
        c.send(typed("r", TypedOp::RegPut { value: v.into() }))
            .await
            .unwrap()
            .unwrap();
    }
    let got = c
        .send(typed_get("r", TypeKind::Register))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(got.typed, Some(Typed::Register(ref r)) if r.value == b"2"));
    let got = c
        .send(typed_get("none", TypeKind::Register))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.typed, None);
    settled(&c).await;
}
