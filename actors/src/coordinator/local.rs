//! This replica's side: reading its object for a key (the Memtable's `Get`), and joining
//! or updating it under the key's lock (read, compute, durable write, release) as one
//! Memtable `Update`: the computation runs in the Memtable actor with the stored bytes, so
//! a write costs one round trip to storage, not a read's and then a write's.
//!
//! The object is the whole stored value of a key (see `troupe_protocol::object` for the
//! encoding); the engine's own delete is never used for replicated keys, so a delete
//! marker is an object like any other and a scan sees it. What a write makes of the stored
//! object (the pure computation the Memtable actor runs) is `coordinator::next`.

use super::next::{decode_stored, next_object, Next};
pub(crate) use super::next::{Apply, TypedWrite};
pub use super::next::{LocalResult, Stored};
use super::*;
use crate::keyhash::KeyHash;
use crate::memtable::{Change, NewValue, StorageError, Update, UpdateDone, UpdateFn, UpdateThen};
use troupe_protocol::object::Object;

/// What to do with the outcome of a local write.
pub(crate) enum LocalDone {
    /// Continue the coordinated write `req`; `peers`: it may go to another node (a primary
    /// or, in a transition, a stable one), so the local write keeps the object's encoding.
    Coordinated { req: u64, peers: bool },
    /// Answer a peer's `Put`.
    ReplicaPut { to: NodeId, id: u64 },
    /// A read repair of our own copy: nothing to answer.
    Repair,
    /// An anti-entropy join (`JoinLocal`): answer the stored object.
    AntiEntropy(oneshot::Sender<LocalResult>),
    /// A tombstone GC purge: answers whether the marker was deleted.
    Purge(oneshot::Sender<bool>),
}

impl LocalDone {
    /// Whether the outcome needs the stored object's encoding ([`Stored::bytes`]): to send
    /// it to a peer or to answer anti-entropy. Otherwise the local write moves it into
    /// storage instead of copying it, and `Stored::bytes` is empty.
    fn keeps_encoding(&self) -> bool {
        match self {
            LocalDone::Coordinated { peers, .. } => *peers,
            LocalDone::AntiEntropy(_) => true,
            LocalDone::ReplicaPut { .. } | LocalDone::Repair | LocalDone::Purge(_) => false,
        }
    }
}

pub(crate) struct LocalOp {
    pub key: Vec<u8>,
    /// The key's `blake3` hash when the caller placed the key with it (a coordinated put):
    /// storage's bloom filters reuse it.
    pub digest: Option<blake3::Hash>,
    pub apply: Apply,
    pub done: LocalDone,
}

/// A key as an operator reads it in a message: UTF-8 when it is, hex otherwise, cut short.
pub(crate) fn show_key(key: &[u8]) -> String {
    let s = match std::str::from_utf8(key) {
        Ok(s) if !s.chars().any(char::is_control) => format!("{s:?}"),
        _ => format!(
            "0x{}",
            key.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    };
    if s.len() > 80 {
        format!("{}...", &s[..s.floor_char_boundary(77)])
    } else {
        s
    }
}

fn storage_error(e: StorageError) -> ClientError {
    let code = match &e {
        StorageError::Overloaded { .. } => ErrorCode::Overloaded,
        StorageError::Indeterminate(_) | StorageError::Stopped => ErrorCode::Timeout,
        StorageError::Poisoned(_) | StorageError::Read(_) => ErrorCode::Internal,
    };
    ClientError::new(code, e.to_string())
}

/// Reads the stored bytes of `key` (`None`: no object; an engine tombstone counts as none).
/// Nothing is written by a read, so a storage actor that did not answer is `internal`.
async fn read_stored(
    get: actix::dev::RecipientRequest<Get>,
) -> Result<Option<Vec<u8>>, ClientError> {
    match get.await {
        Ok(Ok(v)) => Ok(v.and_then(|v| v.value)),
        Ok(Err(e)) => Err(storage_error(e)),
        Err(e) => Err(ClientError::new(
            ErrorCode::Internal,
            format!("local storage did not answer the read: {e}"),
        )),
    }
}

/// A local operation finished; its continuation runs on the actor.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct LocalFinished(Continuation);

type Continuation = Box<dyn FnOnce(&mut Coordinator, &mut Context<Coordinator>) + Send>;

impl Handler<LocalFinished> for Coordinator {
    type Result = ();

    fn handle(&mut self, msg: LocalFinished, ctx: &mut Context<Self>) {
        (msg.0)(self, ctx);
    }
}

/// A local write finished (queued by the Memtable's callback, see `run_locked`, and taken
/// in batches: `memtable_link`): a struct of its own, not a boxed [`LocalFinished`]
/// continuation (one allocation less per write).
pub(super) struct LocalWriteFinished {
    key: Vec<u8>,
    /// `KeyHash::of(&key)`, from `write_local`.
    hash: KeyHash,
    /// The op's `blake3` of the key, if it had one: anti-entropy's trees reuse it.
    digest: Option<blake3::Hash>,
    done: LocalDone,
    res: Result<Stored, ClientError>,
}

impl Coordinator {
    pub(super) fn local_write_finished(
        &mut self,
        msg: LocalWriteFinished,
        ctx: &mut Context<Self>,
    ) {
        let LocalWriteFinished {
            key,
            hash,
            digest,
            done,
            res,
        } = msg;
        self.local_ops -= 1;
        if let Some(next) = self.locks.release(&key, hash) {
            self.run_locked(next, hash, ctx);
        }
        if let Ok(stored) = &res {
            self.note_tombstone(&key, &stored.object);
        }
        // Anti-entropy's batch takes the key itself.
        self.note_local_write(key, digest, &res, ctx);
        self.local_write_done(done, res, ctx);
    }
}

/// Runs `fut` as a task of its own and hands its outcome to `then` on the actor.
///
/// Not `ctx.spawn`: actix polls every future spawned in an actor's context on every wake-up
/// of that actor, so thousands of operations in flight made each message cost thousands of
/// polls (a profile showed three quarters of a node's CPU there). A task is polled only
/// when its own I/O is ready; `do_send` to ourselves cannot be refused by a full mailbox,
/// so no completion is ever lost (their number is bounded by `max_inflight`).
pub(super) fn finish_on_actor<T: Send + 'static>(
    ctx: &mut Context<Coordinator>,
    fut: impl std::future::Future<Output = T> + 'static,
    then: impl FnOnce(&mut Coordinator, T, &mut Context<Coordinator>) + Send + 'static,
) {
    let addr = ctx.address();
    actix::spawn(async move {
        let out = fut.await;
        addr.do_send(LocalFinished(Box::new(move |act, ctx| then(act, out, ctx))));
    });
}

impl Coordinator {
    /// Reads this replica's object for `key` (empty: none) and hands it to `then` (at once,
    /// before this returns, when memory or the block cache answers).
    pub(super) fn read_local(
        &mut self,
        key: Vec<u8>,
        ctx: &mut Context<Self>,
        then: impl FnOnce(&mut Self, Result<Object, ClientError>, &mut Context<Self>) + Send + 'static,
    ) {
        if let Some(object) = self.read_memory(&key) {
            return then(self, object, ctx);
        }
        let k = key.clone();
        self.read_local_bytes(key, ctx, move |act, res, ctx| {
            let object = res.and_then(|b| match b {
                None => Ok(Object::new()),
                Some(b) => decode_stored(&k, &b),
            });
            then(act, object, ctx)
        });
    }

    /// This replica's object for `key` (empty: none) if memory or the block cache holds
    /// the answer, decoded where the bytes lie (no copy of them); `None`: it needs a disk
    /// read ([`read_local`](Self::read_local) does that).
    pub(super) fn read_memory(&self, key: &[u8]) -> Option<Result<Object, ClientError>> {
        self.local_reads.as_ref().and_then(|r| {
            r.lookup_with(key, |v| match v {
                None => Ok(Object::new()),
                Some(b) => decode_stored(key, b),
            })
        })
    }

    /// Reads the stored encoding of `key`'s object (`None`: none) and hands it to `then`:
    /// what a replica sends a peer as is, without decoding and encoding it again. When
    /// memory or the block cache answers, `then` runs at once, before this returns: callers
    /// call it last.
    pub(super) fn read_local_bytes(
        &mut self,
        key: Vec<u8>,
        ctx: &mut Context<Self>,
        then: impl FnOnce(&mut Self, Result<Option<Vec<u8>>, ClientError>, &mut Context<Self>)
            + Send
            + 'static,
    ) {
        // From memory or the block cache, on this thread, without the Memtable's mailbox
        // (see `memtable::view`): `then` runs before this returns.
        if let Some(found) = self.local_reads.as_ref().and_then(|r| r.lookup(&key)) {
            return then(self, Ok(found), ctx);
        }
        self.local_ops += 1;
        self.storage_counters.sent();
        let fut = read_stored(self.storage_get.send(Get { key }));
        finish_on_actor(ctx, fut, move |act, res, ctx| {
            act.local_ops -= 1;
            then(act, res, ctx);
        });
    }

    /// Runs `op` now, or after the operations already holding its key. The key's one
    /// keyed hash for the write: the lock, the Memtable's probes and its insert use it.
    pub(super) fn write_local(&mut self, op: LocalOp, ctx: &mut Context<Self>) {
        self.local_ops += 1;
        let hash = KeyHash::of(&op.key);
        let key = super::keylocks::LockKey::from_slice(&op.key);
        if let Some(op) = self.locks.acquire(key, hash, op) {
            self.run_locked(op, hash, ctx);
        }
    }

    /// Runs `op`, which holds its key's lock; `hash` is `KeyHash::of(&op.key)`.
    fn run_locked(&mut self, op: LocalOp, hash: KeyHash, ctx: &mut Context<Self>) {
        let LocalOp {
            key,
            digest,
            apply,
            done,
        } = op;
        let actor = self.cfg.actor;
        let max_object = self.cfg.max_object_bytes;
        let keep = done.keeps_encoding();
        let k2 = key.clone();
        // Runs in the Memtable actor with the key and its stored bytes (see
        // `memtable::Update`); our key lock is what makes the read and the write one step.
        let compute: UpdateFn<LocalResult> =
            Box::new(
                move |k, stored| match next_object(k, stored, apply, actor, max_object) {
                    Ok(Next::Unchanged(s)) => Change {
                        write: None,
                        out: Ok(s),
                    },
                    Ok(Next::Write(s)) if keep => Change {
                        write: Some(NewValue::Put(s.bytes.clone())),
                        out: Ok(s),
                    },
                    Ok(Next::Write(Stored { object, bytes })) => Change {
                        write: Some(NewValue::Put(bytes)),
                        out: Ok(Stored {
                            object,
                            bytes: Vec::new(),
                        }),
                    },
                    Ok(Next::Delete) => Change {
                        write: Some(NewValue::Delete),
                        out: Ok(Stored {
                            object: Object::new(),
                            bytes: Vec::new(),
                        }),
                    },
                    Err(e) => Change {
                        write: None,
                        out: Err(e),
                    },
                },
            );
        self.storage_counters.sent();
        // The Memtable actor runs `then` once the write is durable (or failed): it queues
        // the outcome for us (`memtable_link`: one wake-up for all a turn finishes), with
        // no task or channel in between.
        let finished = self.finished_queue(ctx);
        let then = UpdateDone::new(move |res: Result<LocalResult, StorageError>| {
            let res = res.map_err(storage_error).and_then(|out| out);
            finished.push(LocalWriteFinished {
                key,
                hash,
                digest,
                done,
                res,
            });
        });
        let update = UpdateThen {
            update: Update {
                key: k2,
                hash,
                digest,
                apply: compute,
            },
            then,
        };
        self.queue_update(update, ctx);
    }

    fn local_write_done(
        &mut self,
        done: LocalDone,
        res: Result<Stored, ClientError>,
        ctx: &mut Context<Self>,
    ) {
        match done {
            LocalDone::Purge(tx) => {
                let _ = tx.send(res.is_ok_and(|s| s.object.is_empty()));
            }
            LocalDone::Coordinated { req, .. } => self.coordinated_local_done(req, res, ctx),
            LocalDone::ReplicaPut { to, id } => {
                let resp = match res {
                    Ok(_) => DataResp::Stored,
                    Err(e) => DataResp::Failed {
                        code: e.code.as_str().to_string(),
                        msg: e.msg,
                    },
                };
                self.send(&to, DataMsg::Resp { id, resp }, ctx);
            }
            LocalDone::Repair => {
                self.repairs_inflight -= 1;
                if let Err(e) = res {
                    log::debug!("read repair of the local copy failed: {}", e.msg);
                }
            }
            LocalDone::AntiEntropy(tx) => {
                let _ = tx.send(res);
            }
        }
    }
}
