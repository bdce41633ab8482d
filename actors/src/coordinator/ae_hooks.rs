//! What the coordinator does for anti-entropy: it tells the AntiEntropy actor about every
//! local write (batched: one [`LocalWrites`] per [`AE_BATCH`] writes or [`AE_DELAY`],
//! whichever comes first; the actor runs on a thread of its own, and a message per turn
//! woke that thread once per request under light load), and it
//! joins objects an exchange brought ([`JoinLocal`]) under the key's lock like any replica
//! write, so an exchange's join can never overwrite a concurrent client write.
//!
//! The hot-path cost is a copy of the object's clock (inline, no allocation for up to three
//! actors) and one push per local write: the AntiEntropy actor hashes the clock on its own
//! thread (and the key, when the write does not bring the coordinator's hash of it).
//! The notification is sent only when an AntiEntropy actor is attached.

use super::local::{Apply, LocalDone, LocalOp};
use super::*;
use crate::antientropy::tree::TreeClock;
use troupe_protocol::object::Object;

/// Writes per [`LocalWrites`] at most: the pending list's bound.
pub const AE_BATCH: usize = 512;

/// How long a local write waits for others to share its [`LocalWrites`]. An exchange in
/// that window may see the key as differing and repair it: a needless but harmless join.
pub const AE_DELAY: Duration = Duration::from_millis(5);

/// Every local write of a batch (see [`AE_BATCH`], [`AE_DELAY`]), hashed by the
/// AntiEntropy actor on its own thread. In order: a key written twice in a batch appears
/// twice, the later last.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct LocalWrites(pub Vec<LocalWrite>);

/// One local write as anti-entropy's trees take it.
#[derive(Debug)]
pub struct LocalWrite {
    pub key: Vec<u8>,
    /// `blake3::hash(&key)` when the writer had it (a coordinated put placed the key with
    /// it): the trees place the key with it instead of hashing the key again.
    pub digest: Option<blake3::Hash>,
    /// The object's clock as written (`None`: nothing to compare, see [`TreeClock::of`]).
    pub clock: Option<TreeClock>,
}

impl LocalWrite {
    /// A write whose key the trees hash themselves.
    pub fn new(key: Vec<u8>, clock: Option<TreeClock>) -> LocalWrite {
        LocalWrite {
            key,
            digest: None,
            clock,
        }
    }
}

/// Join `object` into this replica's copy of `key` (anti-entropy repair): under the key's
/// lock, durable (WAL fsync) before the answer, a no-op when the stored object already
/// descends from it. The answer is the object stored afterwards.
#[derive(Message)]
#[rtype(result = "Result<Stored, ClientError>")]
pub struct JoinLocal {
    pub key: Vec<u8>,
    pub object: Object,
}

impl Coordinator {
    /// Sends anti-entropy its notifications: every local write, as it lands.
    pub fn with_antientropy(mut self, to: Recipient<LocalWrites>) -> Coordinator {
        self.ae_notify = Some(to);
        self
    }

    /// A local write finished: remember it for the next batch (see [`AE_BATCH`]).
    pub(super) fn note_local_write(
        &mut self,
        key: Vec<u8>,
        digest: Option<blake3::Hash>,
        res: &LocalResult,
        ctx: &mut Context<Self>,
    ) {
        let (Some(_), Ok(stored)) = (&self.ae_notify, res) else {
            return;
        };
        self.ae_pending.push(LocalWrite {
            key,
            digest,
            clock: TreeClock::of(&stored.object),
        });
        if self.ae_pending.len() >= AE_BATCH {
            self.flush_local_writes();
        } else if !self.ae_flush_armed {
            self.ae_flush_armed = true;
            ctx.run_later(AE_DELAY, |act, _| {
                act.ae_flush_armed = false;
                act.flush_local_writes();
            });
        }
    }

    /// Hands anti-entropy what was written since the last batch.
    pub(super) fn flush_local_writes(&mut self) {
        if let (Some(to), false) = (&self.ae_notify, self.ae_pending.is_empty()) {
            // `do_send`: never refused for a full mailbox, so no write is missed (a missed
            // one would only cost a needless repair later, the join being idempotent).
            // The next batch starts at this one's size: under load it would otherwise
            // grow by doubling (and copying) again each time.
            let next = Vec::with_capacity(self.ae_pending.len());
            to.do_send(LocalWrites(std::mem::replace(&mut self.ae_pending, next)));
        }
    }
}

/// Writes made around the coordinator (partition transfers' deletions of a dropped
/// partition) told to anti-entropy through the coordinator's own queue, after the writes it
/// noted before them: a key deleted right after an exchange joined it must end absent in
/// the tree, whichever batch leaves first.
impl Handler<LocalWrites> for Coordinator {
    type Result = ();

    fn handle(&mut self, msg: LocalWrites, _: &mut Context<Self>) {
        self.counters.received();
        if self.ae_notify.is_some() {
            self.ae_pending.extend(msg.0);
            self.flush_local_writes();
        }
    }
}

impl Handler<JoinLocal> for Coordinator {
    type Result = ResponseFuture<Result<Stored, ClientError>>;

    fn handle(&mut self, msg: JoinLocal, ctx: &mut Context<Self>) -> Self::Result {
        self.counters.received();
        let (tx, rx) = oneshot::channel();
        self.write_local(
            LocalOp {
                key: msg.key,
                digest: None,
                apply: Apply::Join {
                    object: msg.object,
                    encoded: None,
                },
                done: LocalDone::AntiEntropy(tx),
            },
            ctx,
        );
        Box::pin(async move { rx.await.unwrap_or_else(|_| Err(stopped())) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_protocol::object::{ActorId, Value, VersionVector};

    /// The next notification; a bound, not a synchronisation: a missing one fails the test
    /// instead of hanging it.
    async fn next(
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<(Vec<u8>, Option<u64>)>,
    ) -> (Vec<u8>, Option<u64>) {
        tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .expect("a notification within 10 s")
            .expect("the collector is alive")
    }

    /// Forwards every notification to the test.
    struct Collector(tokio::sync::mpsc::UnboundedSender<(Vec<u8>, Option<u64>)>);

    impl Actor for Collector {
        type Context = Context<Self>;
    }

    impl Handler<LocalWrites> for Collector {
        type Result = ();
        fn handle(&mut self, m: LocalWrites, _: &mut Context<Self>) {
            for w in m.0 {
                let _ = self.0.send((w.key, w.clock.map(|c| c.hash())));
            }
        }
    }

    /// A `JoinLocal` joins (a concurrent version stays beside the stored one, an older one
    /// changes nothing), and every local write, client or join, is notified with the tree
    /// hash of the object it left.
    #[actix_rt::test]
    async fn joins_never_overwrite_and_every_local_write_is_notified() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let c = super::super::tests::single_node_coordinator()
            .with_antientropy(Collector(tx).start().recipient())
            .start();
        let put = ClientWrite {
            key: b"k".to_vec(),
            value: Some(b"a".to_vec()),
            context: None,
            w: None,
            typed: None,
        };
        c.send(put).await.unwrap().unwrap();
        let (key, first) = next(&mut rx).await;
        assert_eq!(key, b"k");

        let other = Object::new()
            .update(&VersionVector::new(), Value::data("b"), ActorId(99))
            .unwrap();
        let joined = c
            .send(JoinLocal {
                key: b"k".to_vec(),
                object: other.clone(),
            })
            .await
            .unwrap()
            .expect("join");
        let mut values = joined.object.live_values();
        values.sort();
        assert_eq!(
            values,
            vec![b"a".as_slice(), b"b"],
            "joined, not overwritten"
        );
        let (_, second) = next(&mut rx).await;
        assert_eq!(second, crate::antientropy::tree::tree_hash(&joined.object));
        assert_ne!(second, first);

        // What the stored object already descends from changes nothing.
        let again = c
            .send(JoinLocal {
                key: b"k".to_vec(),
                object: other,
            })
            .await
            .unwrap()
            .expect("join");
        assert_eq!(again.object, joined.object);
        let (_, third) = next(&mut rx).await;
        assert_eq!(third, second);
    }
}

/// The Handoff actor's question before it acks layout `version` (handoff rule 2): does this
/// coordinator place writes with that layout (or a newer one), and has every write whose
/// replicas were chosen under an older one ended?
#[derive(Message)]
#[rtype(result = "bool")]
pub struct WritesDrained {
    pub version: u64,
}

impl Handler<WritesDrained> for Coordinator {
    type Result = bool;

    fn handle(&mut self, m: WritesDrained, _: &mut Context<Self>) -> bool {
        self.counters.received();
        if self.placement().version < m.version {
            return false;
        }
        // Every open put counts, still writing locally or not: its primaries were chosen
        // at its start.
        !self.requests.values().any(
            |r| matches!(r, super::requests::Request::Put(st) if st.layout_version < m.version),
        )
    }
}
