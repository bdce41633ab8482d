//! The pure part of a replica's local write: a key's next object from its stored bytes
//! and the write's [`Apply`] (a join, a client's update, a typed operation, a purge),
//! checked against the sibling limits and the largest object a replica accepts. No I/O and
//! no actor state: `local::run_locked` hands [`next_object`] to the Memtable actor, which
//! runs it on the stored bytes where they lie.

use super::local::show_key;
use super::*;
use troupe_protocol::crdt::{TypeKind, Typed, TypedError, TypedOp};
use troupe_protocol::object::{ActorId, Object, SiblingCheck, Value, VersionVector};

/// How a local write changes the key's object.
pub(crate) enum Apply {
    /// A replica receiving a coordinator's object (or a read repair): join it in.
    /// `encoded`: the object's encoding when the caller has it (a peer's `Put`), stored as
    /// is when the join with what is stored is the object itself (`Object::joins_to`; a
    /// decoded object re-encodes to the same bytes: the decoder takes only canonical ones).
    Join {
        object: Object,
        encoded: Option<Vec<u8>>,
    },
    /// The coordinator issuing a new version for a client write: `value` with the client's
    /// `context`, or, for an operation on a typed key, the state `typed` computes from the
    /// stored one, with the stored object's whole context (it replaces every version seen).
    Update {
        context: VersionVector,
        value: Value,
        typed: Option<TypedWrite>,
    },
    /// Tombstone GC: delete the key from storage if it holds exactly the delete marker
    /// with this clock hash (`troupe_protocol::tomb::clock_hash`); anything else (a newer
    /// write, a different marker) stays.
    Purge { hash: [u8; 16] },
}

/// An operation on a typed key, with what it needs besides the stored state.
pub(crate) struct TypedWrite {
    pub op: TypedOp,
    /// Hybrid logical time at the coordinator (registers).
    pub now: u64,
    pub max_set_members: usize,
}

/// The type a key's object holds (`None`: plain values, delete markers, or nothing), or why
/// it cannot say: concurrent writes of two types.
pub(crate) fn kind_of(key: &[u8], o: &Object) -> Result<Option<TypeKind>, ClientError> {
    let mut kind = None;
    for t in o.typed_values() {
        match kind {
            Some(k) if k != t.kind() => {
                return Err(ClientError::new(
                    ErrorCode::BadRequest,
                    format!(
                        "key {} holds both a {k} and a {} from concurrent writes; delete the key to start again",
                        show_key(key),
                        t.kind()
                    ),
                ))
            }
            _ => kind = Some(t.kind()),
        }
    }
    // A plain value written concurrently with a typed operation: neither reading it as the
    // type (which would hide the value) nor writing over it (which would drop an
    // acknowledged put) is right, so it is a conflict to resolve by a delete.
    if let Some(k) = kind {
        if !o.live_values().is_empty() {
            return Err(ClientError::new(
                ErrorCode::BadRequest,
                format!(
                    "key {} holds both a {k} and a plain value from concurrent writes; delete the key to start again",
                    show_key(key)
                ),
            ));
        }
    }
    Ok(kind)
}

/// What a delete without a context leaves of a typed key: a state that keeps every
/// replica's counters, so that later operations never reuse them (a counter's entries and a
/// set's dots must only grow, or joins drop what comes after). A counter is reset to 0 by
/// subtracting its value for this replica; a set keeps its clock and no members; a register
/// (no per-replica counters) gets a delete marker. `None`: write a delete marker.
fn typed_delete(o: &Object, actor: ActorId) -> Option<Value> {
    let kinds: std::collections::BTreeSet<TypeKind> =
        o.typed_values().iter().map(|t| t.kind()).collect();
    if kinds.len() != 1 {
        return None; // nothing typed, or two types: the marker clears it
    }
    match Typed::join_all(o.typed_values()).ok().flatten()? {
        Typed::Counter(mut c) => {
            let v = c.value();
            let by = v.checked_neg()?;
            c.incr(actor, by).ok()?;
            Some(Value::Typed(Typed::Counter(c)))
        }
        Typed::Set(s) => Some(Value::Typed(Typed::Set(s.cleared()))),
        Typed::Register(_) => None,
    }
}

/// The key's typed state for an operation of type `wanted`: the join of its typed siblings
/// (`None`: no state yet). A key with plain values or another type is a `bad_request`
/// naming what it holds.
pub(crate) fn typed_state(
    key: &[u8],
    o: &Object,
    wanted: TypeKind,
) -> Result<Option<Typed>, ClientError> {
    match kind_of(key, o)? {
        Some(k) if k != wanted => Err(ClientError::new(
            ErrorCode::BadRequest,
            format!(
                "key {} holds a {k}, not a {wanted}: use {}",
                show_key(key),
                k.ops()
            ),
        )),
        Some(_) => Typed::join_all(o.typed_values())
            .map_err(|e| ClientError::new(ErrorCode::BadRequest, e.to_string())),
        None if !o.live_values().is_empty() => Err(ClientError::new(
            ErrorCode::BadRequest,
            format!(
                "key {} holds a plain value, not a {wanted}: use get, put and delete",
                show_key(key)
            ),
        )),
        None => Ok(None),
    }
}

/// A key's object as this replica stores it, with its encoding (as stored or as written),
/// so nothing is encoded twice on the way to a peer.
pub struct Stored {
    pub object: Object,
    /// The encoding; empty after a write whose caller did not ask to keep it
    /// ([`LocalDone::keeps_encoding`]).
    pub bytes: Vec<u8>,
}

/// Decodes stored bytes as an object.
pub(super) fn decode_stored(key: &[u8], bytes: &[u8]) -> Result<Object, ClientError> {
    Object::decode(bytes).map_err(|e| {
        ClientError::new(
            ErrorCode::Internal,
            format!(
                "the stored value of key {} is not a replicated object ({e}); the data directory may predate replication or be damaged",
                show_key(key)
            ),
        )
    })
}

/// What a local write leaves stored, or why it stores nothing.
pub type LocalResult = Result<Stored, ClientError>;

pub(super) enum Next {
    /// The stored object already descends what was joined in: nothing to write.
    Unchanged(Stored),
    Write(Stored),
    /// A purge: delete the key (what is left is the empty object).
    Delete,
}

/// The key's next object from its stored bytes: the join or update of `apply`, checked
/// against the sibling limits and `max_object` (every replica must be able to receive it
/// in one peer frame). Pure CPU; runs in the Memtable actor.
pub(super) fn next_object(
    key: &[u8],
    stored: Option<&[u8]>,
    apply: Apply,
    actor: ActorId,
    max_object: usize,
) -> Result<Next, ClientError> {
    let current = match stored {
        None => Object::new(),
        Some(bytes) => decode_stored(key, bytes)?,
    };
    // What is stored, as it is, when nothing is written (a copy: rare).
    let unchanged = |object| Stored {
        object,
        bytes: stored.map(<[u8]>::to_vec).unwrap_or_default(),
    };
    let next = match apply {
        Apply::Purge { hash } => {
            let exact =
                current.is_tombstone_only() && troupe_protocol::tomb::clock_hash(&current) == hash;
            return Ok(if exact {
                Next::Delete
            } else {
                Next::Unchanged(unchanged(current))
            });
        }
        Apply::Join {
            object: incoming,
            encoded,
        } => {
            // Exact tests, not `descends`: a write with an incomplete context keeps values
            // another replica saw overwritten, and only the join drops them.
            if incoming.joins_to(&current) {
                return Ok(Next::Unchanged(unchanged(current)));
            }
            match encoded {
                Some(bytes) if current.joins_to(&incoming) => {
                    return checked_write(key, incoming, bytes, max_object);
                }
                _ => current.join_owned(incoming),
            }
        }
        Apply::Update {
            context,
            value,
            typed,
        } => {
            let (context, value) = match typed {
                Some(t) => {
                    let state = typed_state(key, &current, t.op.kind())?;
                    let new =
                        t.op.apply(state.as_ref(), actor, t.now, t.max_set_members)
                            .map_err(|e| {
                                let code = match e {
                                    TypedError::SetTooLarge { .. } => ErrorCode::TooLarge,
                                    _ => ErrorCode::BadRequest,
                                };
                                ClientError::new(code, format!("key {}: {e}", show_key(key)))
                            })?;
                    (current.context(), Value::Typed(new))
                }
                // A delete works on any key, one left holding two types included (its error
                // says to delete it). Without a context on a typed key it removes what this
                // replica holds (typed clients never see contexts); a concurrent operation
                // elsewhere survives it, as an add survives a remove.
                None if value.is_deleted() => {
                    if context.is_empty() && !current.typed_values().is_empty() {
                        let cleared = typed_delete(&current, actor).unwrap_or(value);
                        (current.context(), cleared)
                    } else {
                        (context, value)
                    }
                }
                None => match kind_of(key, &current)? {
                    Some(k) => {
                        return Err(ClientError::new(
                            ErrorCode::BadRequest,
                            format!(
                                "key {} holds a {k}: use {} (or delete it first)",
                                show_key(key),
                                k.ops()
                            ),
                        ))
                    }
                    None => (context, value),
                },
            };
            let next = current
                .update_owned(&context, value, actor)
                .map_err(|e| ClientError::new(ErrorCode::BadRequest, e.to_string()))?;
            match next.check_siblings() {
                Ok(SiblingCheck::Fine) => {}
                Ok(SiblingCheck::Warn { count }) => log::warn!(
                    "key {} has {count} siblings; clients should resolve them (read, then write with the context)",
                    show_key(key)
                ),
                Err(e) => {
                    return Err(ClientError::new(
                        ErrorCode::TooLarge,
                        e.for_key(&show_key(key)),
                    ))
                }
            }
            next
        }
    };
    let bytes = next.encode();
    checked_write(key, next, bytes, max_object)
}

/// Writes `object` (encoded as `bytes`) unless it is larger than a replica accepts.
fn checked_write(
    key: &[u8],
    object: Object,
    bytes: Vec<u8>,
    max_object: usize,
) -> Result<Next, ClientError> {
    if bytes.len() > max_object {
        return Err(ClientError::new(
            ErrorCode::TooLarge,
            format!(
                "key {} would hold {} bytes with its siblings, more than the {max_object} a replica accepts; resolve siblings or write less",
                show_key(key),
                bytes.len()
            ),
        ));
    }
    Ok(Next::Write(Stored { object, bytes }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_protocol::crdt::{OrSet, PnCounter, TypedOp};

    /// A key left holding two types by concurrent writes (a counter through one node, a set
    /// through another) refuses reads and typed writes naming both, and a delete without a
    /// context clears it, as the error says.
    #[test]
    fn a_key_holding_two_types_can_be_deleted() {
        let counter = Value::Typed(Typed::Counter(PnCounter::default()));
        let set = Value::Typed(Typed::Set(OrSet::default()));
        let none = VersionVector::new();
        let o = Object::new()
            .update(&none, counter, ActorId(1))
            .unwrap()
            .join(&Object::new().update(&none, set, ActorId(2)).unwrap());
        let e = kind_of(b"k", &o).unwrap_err();
        assert!(e.msg.contains("holds both"), "{}", e.msg);
        let delete = Apply::Update {
            context: none.clone(),
            value: Value::Deleted,
            typed: None,
        };
        let Next::Write(s) = next_object(b"k", Some(&o.encode()), delete, ActorId(1), 1 << 20)
            .expect("a delete clears any key")
        else {
            panic!("the delete writes")
        };
        assert!(s.object.typed_values().is_empty());
        assert_eq!(kind_of(b"k", &s.object).unwrap(), None);
    }

    fn apply(o: &Object, apply: Apply, actor: u64) -> Object {
        match next_object(b"k", Some(&o.encode()), apply, ActorId(actor), 1 << 20) {
            Ok(Next::Write(s)) | Ok(Next::Unchanged(s)) => s.object,
            Ok(Next::Delete) => Object::new(),
            Err(e) => panic!("{}", e.msg),
        }
    }

    fn op(op: TypedOp) -> Apply {
        Apply::Update {
            context: VersionVector::new(),
            value: Value::Deleted,
            typed: Some(TypedWrite {
                op,
                now: 1,
                max_set_members: 100,
            }),
        }
    }

    fn delete() -> Apply {
        Apply::Update {
            context: VersionVector::new(),
            value: Value::Deleted,
            typed: None,
        }
    }

    fn joined(a: &Object, b: &Object) -> Typed {
        let o = a.join(b);
        Typed::join_all(o.typed_values()).unwrap().unwrap()
    }

    /// Review finding: a delete of a typed key used to leave a plain delete marker, so the
    /// next operation through the same replica restarted its counters at 1 and the join
    /// with a concurrent state dropped it. A delete now keeps every replica's counters.
    #[test]
    fn operations_after_a_typed_delete_are_not_lost() {
        // Counter: A holds +5; A deletes (resets) and adds 3; B concurrently adds 1 to +5.
        let base = apply(&Object::new(), op(TypedOp::Incr { by: 5 }), 1);
        let b = apply(&base, op(TypedOp::Incr { by: 1 }), 2);
        let a = apply(&apply(&base, delete(), 1), op(TypedOp::Incr { by: 3 }), 1);
        let Typed::Counter(c) = joined(&a, &b) else {
            panic!("a counter")
        };
        assert_eq!(c.value(), 4, "reset to 0, then +3 here and +1 there");

        // Set: A holds x; A deletes and adds y; B concurrently adds z.
        let m = |s: &str| vec![serde_bytes::ByteBuf::from(s.as_bytes().to_vec())];
        let base = apply(&Object::new(), op(TypedOp::SetAdd { members: m("x") }), 1);
        let b = apply(&base, op(TypedOp::SetAdd { members: m("z") }), 2);
        let a = apply(
            &apply(&base, delete(), 1),
            op(TypedOp::SetAdd { members: m("y") }),
            1,
        );
        let Typed::Set(s) = joined(&a, &b) else {
            panic!("a set")
        };
        assert_eq!(s.members().collect::<Vec<_>>(), [b"y".as_slice(), b"z"]);
    }

    /// A peer's object that is the join with what is stored is stored as the bytes it came
    /// in (no re-encoding); one concurrent with it is joined and encoded; one the store
    /// already holds writes nothing. Review finding: one that descends the stored object
    /// but kept values the replica saw overwritten (a write with an incomplete context) is
    /// joined, not stored as it came; and the other way round it is not "unchanged".
    #[test]
    fn a_replica_stores_a_descending_object_as_it_came() {
        let none = VersionVector::new();
        let stored = Object::new()
            .update(&none, Value::data("a"), ActorId(1))
            .unwrap();
        let newer = stored
            .update(&stored.context(), Value::data("b"), ActorId(1))
            .unwrap();
        let concurrent = Object::new()
            .update(&none, Value::data("c"), ActorId(2))
            .unwrap();
        let join = |object: &Object| Apply::Join {
            object: object.clone(),
            // Marked, so the test sees which bytes were stored.
            encoded: Some(b"as it came".to_vec()),
        };
        let write =
            |apply| match next_object(b"k", Some(&stored.encode()), apply, ActorId(1), 1 << 20) {
                Ok(Next::Write(s)) => Some(s),
                Ok(Next::Unchanged(_)) => None,
                _ => panic!("a write or nothing"),
            };
        let s = write(join(&newer)).expect("a newer object is written");
        assert_eq!((s.object, s.bytes), (newer.clone(), b"as it came".to_vec()));
        let s = write(join(&concurrent)).expect("a concurrent object is joined");
        let both = stored.join(&concurrent);
        assert_eq!((s.bytes, s.object), (both.encode(), both));
        assert!(
            write(join(&stored)).is_none(),
            "already stored: nothing to write"
        );

        // {A:2 [], B:1 [vb]} stored; C wrote over {A:3 [v3, v2, v1]} with context {B:1}.
        let (a, b, c) = (ActorId(1), ActorId(2), ActorId(3));
        let put = |o: &Object, ctx: &VersionVector, v: &str, actor| {
            o.update(ctx, Value::data(v), actor).unwrap()
        };
        let a2 = put(&put(&Object::new(), &none, "v1", a), &none, "v2", a);
        let replica = put(&a2, &a2.context(), "vb", b);
        let b_only: VersionVector = [(b, 1)].into_iter().collect();
        let incoming = put(&put(&a2, &none, "v3", a), &b_only, "vc", c);
        let next = |held: &Object, object: &Object| {
            let apply = Apply::Join {
                object: object.clone(),
                encoded: Some(object.encode()),
            };
            match next_object(b"k", Some(&held.encode()), apply, ActorId(1), 1 << 20) {
                Ok(Next::Write(s)) => Some(s.object),
                Ok(Next::Unchanged(_)) => None,
                _ => panic!("a write or nothing"),
            }
        };
        assert_ne!(
            replica.join(&incoming),
            incoming,
            "the join drops v2 and v1"
        );
        assert_eq!(next(&replica, &incoming), Some(replica.join(&incoming)));
        // The other way round the held object descends the incoming one, yet the join
        // drops v2 and v1: it is written.
        assert_eq!(next(&incoming, &replica), Some(incoming.join(&replica)));
    }

    /// Review finding: a plain put concurrent with a typed op used to be hidden by typed
    /// reads and dropped by the next typed write; it is now a conflict named as such.
    #[test]
    fn a_plain_value_beside_a_typed_one_is_a_conflict() {
        let none = VersionVector::new();
        let counter = apply(&Object::new(), op(TypedOp::Incr { by: 1 }), 1);
        let plain = Object::new()
            .update(&none, Value::data("v"), ActorId(2))
            .unwrap();
        let both = counter.join(&plain);
        let e = kind_of(b"k", &both).unwrap_err();
        assert!(e.msg.contains("a counter and a plain value"), "{}", e.msg);
        assert!(next_object(
            b"k",
            Some(&both.encode()),
            op(TypedOp::Incr { by: 1 }),
            ActorId(1),
            1 << 20
        )
        .is_err());
    }
}
