//! The coordinator's side of tombstone GC: it tells the tombstone actor about every delete
//! marker this replica stores ([`TombstoneWritten`]), and purges markers the GC round
//! cleared ([`PurgeTombstones`]) through the same key locks as every other local write,
//! so a purge never races a write of the same key.
//!
//! The decision to purge is the tombstone actor's (`crate::tombstones`); here a purge
//! deletes only the exact marker that decision was about (same clock hash).

use super::local::{Apply, LocalDone, LocalOp};
use super::*;
use troupe_protocol::object::Object;

/// This replica stored a delete marker for `key` (every sibling deleted).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct TombstoneWritten {
    pub key: Vec<u8>,
    pub hash: [u8; 16],
}

/// Delete each key whose stored object is exactly the delete marker with that hash.
/// Answers, per entry in order, whether it was deleted.
#[derive(Message)]
#[rtype(result = "Vec<bool>")]
pub struct PurgeTombstones {
    pub entries: Vec<(Vec<u8>, [u8; 16])>,
}

impl Coordinator {
    /// Lets this coordinator report delete markers to the tombstone actor.
    pub fn with_tombstones(mut self, to: Recipient<TombstoneWritten>) -> Coordinator {
        self.tombstones = Some(to);
        self
    }

    /// After a local write: a delete marker goes to the tombstone actor. A full mailbox
    /// drops the report (counted there as a rescan): the tombstone then stays until the
    /// actor's next scan finds it, which costs disk space, never correctness.
    pub(super) fn note_tombstone(&mut self, key: &[u8], object: &Object) {
        let Some(to) = &self.tombstones else { return };
        if !object.is_tombstone_only() {
            return;
        }
        let msg = TombstoneWritten {
            key: key.to_vec(),
            hash: troupe_protocol::tomb::clock_hash(object),
        };
        if to.try_send(msg).is_err() {
            self.stats.tombstone_reports_dropped.fetch_add(1, Relaxed);
        }
    }
}

impl Handler<PurgeTombstones> for Coordinator {
    type Result = ResponseFuture<Vec<bool>>;

    fn handle(&mut self, msg: PurgeTombstones, ctx: &mut Context<Self>) -> Self::Result {
        self.counters.handled();
        let mut answers = Vec::with_capacity(msg.entries.len());
        for (key, hash) in msg.entries {
            let (tx, rx) = oneshot::channel();
            answers.push(rx);
            self.write_local(
                LocalOp {
                    key,
                    digest: None,
                    apply: Apply::Purge { hash },
                    done: LocalDone::Purge(tx),
                },
                ctx,
            );
        }
        Box::pin(async move {
            let mut out = Vec::with_capacity(answers.len());
            for rx in answers {
                out.push(rx.await.unwrap_or(false));
            }
            out
        })
    }
}
