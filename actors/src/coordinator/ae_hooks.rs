//! What the coordinator does for anti-entropy: it tells the AntiEntropy actor about every
//! local write (batched: one [`LocalWrites`] per turn, sent with the outbox flush), and it
//! joins objects an exchange brought ([`JoinLocal`]) under the key's lock like any replica
//! write, so an exchange's join can never overwrite a concurrent client write.
//!
//! The hot-path cost is one blake3 of the object's clock and one push per local write; the
//! notification is sent only when an AntiEntropy actor is attached.

use super::local::{Apply, LocalDone, LocalOp};
use super::*;
use crate::antientropy::tree::tree_hash;
use troupe_protocol::object::Object;

/// Every local write of one coordinator turn: each key with its object's tree hash as
/// written (`None`: nothing to compare, see [`tree_hash`]). In order: a key written twice
/// in a turn appears twice, the later last.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct LocalWrites(pub Vec<(Vec<u8>, Option<u64>)>);

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

    /// A local write finished: remember it for this turn's notification.
    pub(super) fn note_local_write(
        &mut self,
        key: &[u8],
        res: &LocalResult,
        ctx: &mut Context<Self>,
    ) {
        let (Some(_), Ok(stored)) = (&self.ae_notify, res) else {
            return;
        };
        self.ae_pending
            .push((key.to_vec(), tree_hash(&stored.object)));
        if !self.flush_scheduled {
            self.flush_scheduled = true;
            ctx.notify(FlushOutbox);
        }
    }

    /// Part of the turn's flush: hands anti-entropy what was written.
    pub(super) fn flush_local_writes(&mut self) {
        if let (Some(to), false) = (&self.ae_notify, self.ae_pending.is_empty()) {
            // `do_send`: never refused for a full mailbox, so no write is missed (a missed
            // one would only cost a needless repair later, the join being idempotent).
            to.do_send(LocalWrites(std::mem::take(&mut self.ae_pending)));
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
                apply: Apply::Join(msg.object),
                done: LocalDone::AntiEntropy(tx),
            },
            ctx,
        );
        Box::pin(async move { rx.await.unwrap_or_else(|_| Err(stopped())) })
    }
}
