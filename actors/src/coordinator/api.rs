//! The coordinator's surface: the messages connections and admin send it
//! ([`ClientGet`], [`ClientWrite`], [`GetLoad`]), their replies and errors, its settings
//! ([`CoordinatorConfig`]) and the counters it shares with the metrics endpoint
//! ([`CoordinatorStats`]). No behaviour beyond small conversions lives here.

use super::*;
use troupe_protocol::crdt::{TypeKind, Typed, TypedOp};
/// A client error: the protocol's code and a message saying what happened and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    pub code: ErrorCode,
    pub msg: String,
}

impl ClientError {
    pub fn new(code: ErrorCode, msg: impl Into<String>) -> Self {
        ClientError {
            code,
            msg: msg.into(),
        }
    }
}

/// What a successful get returns: the live siblings (none: not found) and the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetReply {
    pub values: Vec<Vec<u8>>,
    pub context: Vec<u8>,
    /// For a typed read (`ClientGet::as_type`): the join of the replicas' states (`None`:
    /// the key holds none yet).
    pub typed: Option<Typed>,
}

/// `get key [r] [after]`.
#[derive(Message)]
#[rtype(result = "Result<GetReply, ClientError>")]
pub struct ClientGet {
    pub key: Vec<u8>,
    pub r: Option<Quorum>,
    /// A context the answer must cover (read your writes).
    pub after: Option<Vec<u8>>,
    /// A typed read (`counter`, `smembers`, `reg_get`): the key must hold this type or
    /// nothing. `None`: a plain `get`, refused on a typed key.
    pub as_type: Option<TypeKind>,
}

/// The gets and writes one connection decoded from the frames it had already received, in
/// one message (one mailbox hand-off and wake-up for the lot, not one each). Each carries
/// the channel its answer goes to; the coordinator starts them in order, in one turn.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClientBatch(pub ClientOps);

/// A batch's requests: one inline, so a lone request (every request at low load) costs
/// no allocation of its own.
pub type ClientOps = smallvec::SmallVec<[ClientOp; 1]>;

/// One request of a [`ClientBatch`] and what to call with its answer (on the coordinator's
/// thread: the connection's callback encodes the response and queues it for the socket, so
/// no task or channel sits between the answer and the writer).
pub enum ClientOp {
    Get(ClientGet, Answer<GetReply>),
    Write(ClientWrite, Answer<WriteReply>),
}

/// Called once with a request's outcome. Dropped uncalled (the coordinator stopped), it is
/// the callee's job to answer anyway (the connection's answers do, on drop).
pub type Answer<T> = Box<dyn FnOnce(Result<T, ClientError>) + Send>;

/// What a successful write returns: the object the coordinator wrote, as far as the
/// client may act on it (PROTOCOL.md §9).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReply {
    /// The context of the object the coordinator wrote (its local durable result).
    pub context: Vec<u8>,
    /// `None` when that object holds only the version just written. Otherwise (concurrent
    /// siblings or delete markers beside it) its live values as a `get` returns them: the
    /// context covers more than the new version, so the client must see what it covers or
    /// its next write with that context would drop siblings it never saw.
    pub values: Option<Vec<Vec<u8>>>,
    /// For an operation on a typed key: the coordinator's state after it (`incr` answers
    /// its counter's value).
    pub typed: Option<Typed>,
}

impl WriteReply {
    /// The reply describing `object`, which the coordinator just wrote one version into.
    pub fn of(object: &troupe_protocol::object::Object) -> WriteReply {
        // More than one version (delete markers count, as the context covers them): the
        // reply shows what the context covers, as a get would.
        let values = (object.sibling_count() > 1).then(|| {
            object
                .live_values()
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect()
        });
        WriteReply {
            context: object.encoded_context(),
            values,
            typed: Typed::join_all(object.typed_values()).ok().flatten(),
        }
    }
}

/// `put key value [context] [w]` (`value: None`: delete). Replies with the new context
/// and, when the key holds other versions too, its values.
#[derive(Message)]
#[rtype(result = "Result<WriteReply, ClientError>")]
pub struct ClientWrite {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    pub context: Option<Vec<u8>>,
    pub w: Option<Quorum>,
    /// An operation on a typed key (`incr`, `sadd`, `srem`, `reg_put`); `value` and
    /// `context` are then unused.
    pub typed: Option<TypedOp>,
}

/// What the coordinator holds in flight, for `admin stats` and tests.
#[derive(Message)]
#[rtype(result = "CoordinatorLoad")]
pub struct GetLoad;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CoordinatorLoad {
    pub requests: usize,
    pub rpcs: usize,
    pub local_ops: usize,
    pub keys_locked: usize,
    pub repairs: usize,
}

/// Settings (from `[cluster]`).
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub me: NodeId,
    pub actor: ActorId,
    pub partitions: u32,
    pub n: usize,
    pub r: Quorum,
    pub w: Quorum,
    /// How long a request waits for replicas.
    pub request_timeout: Duration,
    /// Client requests, local operations and inbound replica requests in flight at most.
    pub max_inflight: usize,
    /// Read repairs in flight at most.
    pub max_repairs: usize,
    /// Peer frames carry at most this many bytes of messages (below `net.max_frame_bytes`).
    pub max_batch_bytes: usize,
    /// Largest encoded object a write may leave (it must fit in one peer frame).
    pub max_object_bytes: usize,
    pub mailbox: usize,
    /// `limits.max_set_members`: adds that would grow a set past it are refused.
    pub max_set_members: usize,
}

/// Counters for `admin stats` and /metrics.
#[derive(Debug, Default)]
pub struct CoordinatorStats {
    pub gets: AtomicU64,
    pub puts: AtomicU64,
    pub forwarded: AtomicU64,
    pub unavailable: AtomicU64,
    pub timeouts: AtomicU64,
    pub overloaded: AtomicU64,
    pub read_repairs: AtomicU64,
    pub read_repairs_skipped: AtomicU64,
    pub replica_requests: AtomicU64,
    pub responses_dropped: AtomicU64,
    /// Delete markers not reported to tombstone GC (its mailbox was full).
    pub tombstone_reports_dropped: AtomicU64,
    /// Our RPCs to peers by peer, kind and result, and their latency.
    pub peer_rpcs: peer_stats::PeerRpcStats,
}

#[derive(Debug, Clone, Serialize)]
pub struct CoordinatorSnapshot {
    pub gets: u64,
    pub puts: u64,
    pub forwarded: u64,
    pub unavailable: u64,
    pub timeouts: u64,
    pub overloaded: u64,
    pub read_repairs: u64,
    pub read_repairs_skipped: u64,
    pub replica_requests: u64,
    pub responses_dropped: u64,
}

impl CoordinatorStats {
    pub fn snapshot(&self) -> CoordinatorSnapshot {
        let l = |a: &AtomicU64| a.load(Relaxed);
        CoordinatorSnapshot {
            gets: l(&self.gets),
            puts: l(&self.puts),
            forwarded: l(&self.forwarded),
            unavailable: l(&self.unavailable),
            timeouts: l(&self.timeouts),
            overloaded: l(&self.overloaded),
            read_repairs: l(&self.read_repairs),
            read_repairs_skipped: l(&self.read_repairs_skipped),
            replica_requests: l(&self.replica_requests),
            responses_dropped: l(&self.responses_dropped),
        }
    }
}

/// From the HintedHandoff actor: send each hint to `to` as a replica `Put` (a join, so a
/// hint delivered twice changes nothing) and answer `Ok` once every one was stored, or
/// the first failure (the batch is then kept and tried again).
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct DeliverHints {
    pub to: NodeId,
    /// (key, object in its storage encoding), in order.
    pub hints: Vec<(Vec<u8>, Vec<u8>)>,
}
