//! What an operator looks at when placement or a key misbehaves: `troupe admin ring`,
//! `troupe admin preflist KEY` and `troupe admin object KEY` (this replica's copy).
//!
//! Replies carry only strings, numbers, bools, arrays and maps, like every admin reply.

use super::local::show_key;
use super::*;
use troupe_protocol::crdt::Typed;
use troupe_protocol::object::{Object, Value};

/// `admin ring`: the layout's version, members, digest and each member's share.
#[derive(Message)]
#[rtype(result = "RingReply")]
pub struct DescribeRing;

#[derive(Debug, Clone, Serialize)]
pub struct RingReply {
    /// The layout's version (it grows with every change of the ring the nodes agreed on).
    pub version: u64,
    pub partitions: u32,
    /// `cluster.n` and the replicas per key now (fewer while the ring is smaller).
    pub n: usize,
    pub effective_n: usize,
    pub under_replicated: bool,
    /// Equal digests on two nodes mean they place every key the same way.
    pub digest: String,
    pub members: Vec<RingMember>,
    /// While the ring is in transition (`crate::handoff`): each partition whose primaries
    /// change, from the stable layout's (which hold the data and serve reads) to the
    /// current one's (which get every write meanwhile). Empty when the ring is stable.
    pub pending: Vec<PendingOwnership>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PendingOwnership {
    pub partition: u32,
    pub from: Vec<String>,
    pub to: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RingMember {
    pub id: String,
    pub status: String,
    pub peer: String,
    /// Partition replicas this member holds as a primary.
    pub replicas: usize,
    pub this_node: bool,
}

/// `admin preflist KEY`: the key's partition, primaries and fallbacks, and which are up.
#[derive(Message)]
#[rtype(result = "PreflistReply")]
pub struct DescribePreflist {
    pub key: Vec<u8>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PreflistReply {
    pub key: String,
    pub partition: u32,
    pub primaries: Vec<PreflistEntry>,
    pub fallbacks: Vec<PreflistEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PreflistEntry {
    pub id: String,
    pub up: bool,
}

/// `admin object KEY`: this replica's stored object (clock, siblings, delete markers).
#[derive(Message)]
#[rtype(result = "Result<ObjectReply, ClientError>")]
pub struct DescribeObject {
    pub key: Vec<u8>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ObjectReply {
    pub key: String,
    pub found: bool,
    /// Stored bytes of the object.
    pub bytes: usize,
    /// Actor id (hex) -> counter: every write this replica has seen.
    pub clock: Vec<(String, u64)>,
    pub siblings: Vec<SiblingRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SiblingRow {
    /// "actor:counter".
    pub dot: String,
    pub deleted: bool,
    /// "data", "deleted", or the type of a typed key's state ("counter", "set", "register").
    #[serde(rename = "type")]
    pub kind: String,
    /// The value as text when it is UTF-8, else hex; empty for a delete marker. A typed
    /// state is shown whole: a counter's value and per-actor sums, a set's members with
    /// their dots and its clock, a register's value, timestamp and writer.
    pub value: String,
    pub value_bytes: usize,
}

fn status_name(s: troupe_protocol::swim::Status) -> &'static str {
    use troupe_protocol::swim::Status;
    match s {
        Status::Alive => "alive",
        Status::Suspect => "suspect",
        Status::Dead => "dead",
        Status::Left => "left",
    }
}

fn show_bytes(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_string(),
        Err(_) => b.iter().map(|x| format!("{x:02x}")).collect(),
    }
}

/// A typed state as an operator reads it.
fn show_typed(t: &Typed) -> String {
    match t {
        Typed::Counter(c) => {
            let parts: Vec<String> = c
                .entries()
                .iter()
                .map(|(a, p, n)| format!("{a}: +{p} -{n}"))
                .collect();
            format!("{} ({})", c.value(), parts.join(", "))
        }
        Typed::Set(s) => {
            let members: Vec<String> = s
                .dots()
                .map(|(m, dots)| {
                    let d: Vec<String> = dots.iter().map(|(a, n)| format!("{a}:{n}")).collect();
                    format!("{} [{}]", show_bytes(m), d.join(" "))
                })
                .collect();
            let clock: Vec<String> = s.clock().map(|(a, n)| format!("{a}:{n}")).collect();
            format!("{{{}}} clock {{{}}}", members.join(", "), clock.join(", "))
        }
        Typed::Register(r) => format!(
            "{} (timestamp {}, written by {})",
            show_bytes(&r.value),
            r.ts,
            r.actor
        ),
    }
}

pub(super) fn object_reply(key: &[u8], o: &Object) -> ObjectReply {
    ObjectReply {
        key: show_key(key),
        found: !o.is_empty(),
        bytes: o.encode().len(),
        clock: o
            .context()
            .iter()
            .map(|(a, c)| (a.to_string(), c))
            .collect(),
        siblings: o
            .siblings()
            .map(|(dot, v)| match v {
                Value::Deleted => SiblingRow {
                    dot: dot.to_string(),
                    deleted: true,
                    kind: "deleted".into(),
                    value: String::new(),
                    value_bytes: 0,
                },
                Value::Data(b) => SiblingRow {
                    dot: dot.to_string(),
                    deleted: false,
                    kind: "data".into(),
                    value: show_bytes(b),
                    value_bytes: b.len(),
                },
                Value::Typed(t) => SiblingRow {
                    dot: dot.to_string(),
                    deleted: false,
                    kind: t.kind().to_string(),
                    value: show_typed(t),
                    value_bytes: t.encode().len(),
                },
            })
            .collect(),
    }
}

impl Handler<DescribeRing> for Coordinator {
    type Result = MessageResult<DescribeRing>;

    fn handle(&mut self, _: DescribeRing, _: &mut Context<Self>) -> Self::Result {
        self.counters.received();
        let p = self.placement();
        let shares = p.table.shares();
        // The layout's members; membership says where each is and whether it is up (a
        // member it has not heard of yet shows as `unknown`).
        let members = p
            .table
            .members()
            .iter()
            .map(|id| {
                let info = p.members.get(id);
                RingMember {
                    id: id.0.clone(),
                    status: info
                        .map_or("unknown", |m| status_name(m.status))
                        .to_string(),
                    peer: info.map(|m| m.peer_addr.clone()).unwrap_or_default(),
                    replicas: shares.get(id).copied().unwrap_or(0),
                    this_node: *id == self.cfg.me,
                }
            })
            .collect();
        MessageResult(RingReply {
            version: p.version,
            partitions: p.table.partitions(),
            n: p.table.n(),
            effective_n: p.n(),
            under_replicated: p.table.under_replicated(),
            digest: p.table.digest_hex(),
            members,
            pending: pending(&p),
        })
    }
}

/// The partitions whose primaries the transition changes.
fn pending(p: &super::placement::Placement) -> Vec<PendingOwnership> {
    let Some(stable) = &p.stable else {
        return Vec::new();
    };
    let names = |ids: &[NodeId]| {
        let mut v: Vec<String> = ids.iter().map(|i| i.0.clone()).collect();
        v.sort();
        v
    };
    (0..p.table.partitions())
        .filter_map(|part| {
            let from = names(stable.primaries(part));
            let to = names(p.table.primaries(part));
            (from != to).then_some(PendingOwnership {
                partition: part,
                from,
                to,
            })
        })
        .collect()
}

impl Handler<DescribePreflist> for Coordinator {
    type Result = MessageResult<DescribePreflist>;

    fn handle(&mut self, msg: DescribePreflist, _: &mut Context<Self>) -> Self::Result {
        self.counters.received();
        let p = self.placement();
        let partition = p.table.partition_of(&msg.key);
        let entry = |id: &NodeId| PreflistEntry {
            id: id.0.clone(),
            up: p.is_up(id),
        };
        MessageResult(PreflistReply {
            key: show_key(&msg.key),
            partition,
            primaries: p.table.primaries(partition).iter().map(entry).collect(),
            fallbacks: p.table.fallbacks(partition).map(entry).collect(),
        })
    }
}

impl Handler<DescribeObject> for Coordinator {
    type Result = ResponseFuture<Result<ObjectReply, ClientError>>;

    fn handle(&mut self, msg: DescribeObject, ctx: &mut Context<Self>) -> Self::Result {
        self.counters.received();
        let (tx, rx) = oneshot::channel();
        let key = msg.key.clone();
        self.read_local(msg.key, ctx, move |_, res, _| {
            let _ = tx.send(res.map(|o| object_reply(&key, &o)));
        });
        Box::pin(async move { rx.await.unwrap_or_else(|_| Err(stopped())) })
    }
}
