//! Quorum bookkeeping for one client request: what counts, when the client can be answered,
//! and what is left to do afterwards (read repair). Pure: no I/O, no clocks; the
//! coordinator feeds replica answers and a timeout in, and carries out what comes back.
//!
//! The shape follows Riak's `riak_kv_get_core`: `new`, `add_answer`, `timed_out`, and a
//! final action once every replica answered (or the deadline passed).
//!
//! Rules (REPLICATION.md, "A put and a get"):
//! - A get succeeds once `r` replicas answered without error (a "not found" is an answer);
//!   the answer is the join of what they returned. It fails as `unavailable` once too few
//!   replicas are left to reach `r`, naming each replica's error.
//! - With `after` (read your writes) a get may answer only with a join that descends from
//!   that context; it keeps waiting for more replicas until one does, and fails when none
//!   is left.
//! - Once every replica answered or the deadline passed, the replicas whose answer does
//!   not descend from the join of all answers (older, missing, not found) are the read
//!   repair targets; but a join that is only a delete marker is not sent to replicas that
//!   answered "not found" (tombstone GC may have purged it there).
//! - A put counts the coordinator's own durable write as its first acknowledgement. It
//!   succeeds at `w` acknowledgements, each from a distinct node: a primary's, or a
//!   fallback's durable hint for a primary that is down (sloppy quorum). It cannot be `unavailable` once the coordinator has
//!   written (the value exists on one replica and will spread): too few acknowledgements
//!   is `timeout`, "may or may not have been applied", with the details.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use troupe_protocol::Quorum;

/// What a replica's answer can be joined and compared as (the replicated object).
pub trait Lattice: Clone {
    /// What a client passes as `after`: a summary of versions it has seen.
    type Context;
    /// The least upper bound of two versions (commutative, associative, idempotent).
    fn join(&self, other: &Self) -> Self;
    /// True when `self` has seen everything `other` has: the lattice order, `self.join(other)
    /// == self` (the tracker then skips the join, and a replica holding `self` needs no
    /// repair to `other`).
    fn descends(&self, other: &Self) -> bool;
    /// True when `self` has seen every version `context` names.
    fn covers(&self, context: &Self::Context) -> bool;
    /// True when the version is only a delete marker (reads as not found).
    fn is_tombstone(&self) -> bool {
        false
    }
}

impl Lattice for troupe_protocol::object::Object {
    type Context = troupe_protocol::object::VersionVector;
    fn join(&self, other: &Self) -> Self {
        troupe_protocol::object::Object::join(self, other)
    }
    /// Exactly the lattice order (`Object::joins_to`), not the clocks' order
    /// (`Object::descends`): after a write with an incomplete context an object can have
    /// every dot of another and still hold values the other saw overwritten.
    fn descends(&self, other: &Self) -> bool {
        other.joins_to(self)
    }
    fn covers(&self, context: &Self::Context) -> bool {
        troupe_protocol::object::Object::covers(self, context)
    }
    fn is_tombstone(&self) -> bool {
        self.is_tombstone_only()
    }
}

/// How many of `n` replicas a request needs. Zero or more than `n` is the caller's mistake
/// (`bad_request`), reported with what is allowed.
pub fn required(q: Quorum, n: usize, what: &str) -> Result<usize, String> {
    let k = match q {
        Quorum::One => 1,
        Quorum::Quorum => n / 2 + 1,
        Quorum::All => n,
        Quorum::N(k) => k as usize,
    };
    if k == 0 || k > n {
        return Err(format!(
            "{what} = {k} is not possible with {n} replica(s): use one, quorum, all or a number from 1 to {n}"
        ));
    }
    Ok(k)
}

/// Where a request stands after an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress<T> {
    /// Keep waiting.
    Pending,
    /// Answer the client now (exactly once per request).
    Reply(T),
}

/// Why a request failed: how many were needed, how many succeeded, each replica's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumFailure {
    pub needed: usize,
    pub got: usize,
    /// Replica -> its error ("timed out" for one that never answered).
    pub errors: BTreeMap<String, String>,
}

impl QuorumFailure {
    /// "needed 2 of 3 replicas, 1 succeeded; n2: timed out; n3: connection refused".
    pub fn describe(&self, total: usize) -> String {
        let mut s = format!(
            "needed {} of {total} replicas, {} succeeded",
            self.needed, self.got
        );
        for (node, err) in &self.errors {
            let _ = write!(s, "; {node}: {err}");
        }
        s
    }
}

/// The answer to a get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetOutcome<O> {
    /// The join of the successful answers (`None`: not found anywhere).
    Found(Option<O>),
    /// Fewer than `r` replicas answered.
    Unavailable(QuorumFailure),
    /// `r` answered, but no join of the answers covers the `after` context.
    NotCaughtUp(QuorumFailure),
}

/// One get's quorum state.
pub struct GetTracker<O: Lattice> {
    replicas: Vec<String>,
    r: usize,
    after: Option<O::Context>,
    answers: BTreeMap<String, Result<Option<O>, String>>,
    /// The join of the successful answers so far, kept as they arrive: an answer the join
    /// already descends from (the common case, equal replicas) costs no copy.
    joined: Option<O>,
    replied: bool,
}

impl<O: Lattice> GetTracker<O> {
    /// `replicas`: the primaries asked; `r`: answers needed; `after`: a version the reply
    /// must descend from (read your writes).
    pub fn new(replicas: Vec<String>, r: usize, after: Option<O::Context>) -> Self {
        GetTracker {
            replicas,
            r,
            after,
            answers: BTreeMap::new(),
            joined: None,
            replied: false,
        }
    }

    fn ok_count(&self) -> usize {
        self.answers.values().filter(|a| a.is_ok()).count()
    }

    /// Joins an answer into [`GetTracker::joined`]: `join` leaves a version that already
    /// descends from `o` as it is (the lattice order), so that case is a comparison only.
    fn join_in(&mut self, o: &O) {
        self.joined = match self.joined.take() {
            None => Some(o.clone()),
            Some(j) if j.descends(o) => Some(j),
            Some(j) if o.descends(&j) => Some(o.clone()),
            Some(j) => Some(j.join(o)),
        };
    }

    fn covers_after(&self, joined: &Option<O>) -> bool {
        match (&self.after, joined) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(after), Some(j)) => j.covers(after),
        }
    }

    fn failure(&self, needed: usize) -> QuorumFailure {
        let errors = self
            .replicas
            .iter()
            .filter_map(|n| match self.answers.get(n) {
                Some(Ok(_)) => None,
                Some(Err(e)) => Some((n.clone(), e.clone())),
                None => Some((n.clone(), "timed out".to_string())),
            })
            .collect();
        QuorumFailure {
            needed,
            got: self.ok_count(),
            errors,
        }
    }

    /// Records `node`'s answer (a second answer from the same node, or one from a node not
    /// asked, is ignored).
    pub fn add_answer(
        &mut self,
        node: &str,
        answer: Result<Option<O>, String>,
    ) -> Progress<GetOutcome<O>> {
        if !self.replicas.iter().any(|n| n == node) || self.answers.contains_key(node) {
            return Progress::Pending;
        }
        if let Ok(Some(o)) = &answer {
            self.join_in(o);
        }
        self.answers.insert(node.to_string(), answer);
        self.check(false)
    }

    /// The deadline passed: answer now if nothing was answered yet.
    pub fn timed_out(&mut self) -> Progress<GetOutcome<O>> {
        self.check(true)
    }

    fn check(&mut self, deadline: bool) -> Progress<GetOutcome<O>> {
        if self.replied {
            return Progress::Pending;
        }
        let ok = self.ok_count();
        let outstanding = self.replicas.len() - self.answers.len();
        let no_more = deadline || outstanding == 0;
        let outcome = if ok >= self.r {
            if self.covers_after(&self.joined) {
                GetOutcome::Found(self.joined.clone())
            } else if no_more {
                GetOutcome::NotCaughtUp(self.failure(self.r))
            } else {
                return Progress::Pending;
            }
        } else if no_more || ok + outstanding < self.r {
            GetOutcome::Unavailable(self.failure(self.r))
        } else {
            return Progress::Pending;
        };
        self.replied = true;
        Progress::Reply(outcome)
    }

    /// True once every replica answered: the final action can run.
    pub fn all_answered(&self) -> bool {
        self.answers.len() == self.replicas.len()
    }

    /// The outcome of a get whose one replica, `node`, gave `answer`: what a tracker of
    /// that one replica replies once it answered (it always replies then: nothing is
    /// outstanding), and nothing is left to repair.
    /// The answer is moved into the outcome (a tracker clones what it keeps).
    pub fn single(
        node: &str,
        r: usize,
        after: Option<O::Context>,
        answer: Result<Option<O>, String>,
    ) -> GetOutcome<O> {
        let failure = |got: usize, errors: BTreeMap<String, String>| QuorumFailure {
            needed: r,
            got,
            errors,
        };
        match answer {
            Err(e) => GetOutcome::Unavailable(failure(0, BTreeMap::from([(node.to_string(), e)]))),
            Ok(_) if r > 1 => GetOutcome::Unavailable(failure(1, BTreeMap::new())),
            Ok(found) => {
                let covered = match (&after, &found) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some(after), Some(o)) => o.covers(after),
                };
                if covered {
                    GetOutcome::Found(found)
                } else {
                    GetOutcome::NotCaughtUp(failure(1, BTreeMap::new()))
                }
            }
        }
    }

    /// Read repair (call once every replica answered or the deadline passed): the join of
    /// every answer, and the replicas whose answer it is newer than (older versions, or
    /// not found). Replicas that failed or never answered are left to anti-entropy: a
    /// repair sent to a node that is down would only time out.
    pub fn repair(&self) -> Option<(O, Vec<String>)> {
        // One successful answer (one node, or the others failed) is its own join: nobody
        // that answered is behind it, and the join would only copy the object.
        if self.ok_count() <= 1 {
            return None;
        }
        let joined = self.joined.as_ref()?;
        // A delete marker is not sent to a replica that answered "not found": that may be
        // a replica whose marker tombstone GC purged, and sending it back would undo the
        // purge. It reads the same, and a replica still holding an older value is sent
        // the marker (its answer is `Some`).
        let deleted = joined.is_tombstone();
        let stale: Vec<String> = self
            .answers
            .iter()
            .filter_map(|(n, a)| match a {
                Ok(Some(o)) if o.descends(joined) => None,
                Ok(None) if deleted => None,
                Ok(_) => Some(n.clone()),
                Err(_) => None,
            })
            .collect();
        (!stale.is_empty()).then(|| (joined.clone(), stale))
    }
}

/// The answer to a put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// `w` replicas (the coordinator included) hold the write durably.
    Acknowledged,
    /// Fewer than `w` acknowledged: the write is on the coordinator and maybe others; it may
    /// or may not become visible (the protocol's `timeout`).
    Indeterminate(QuorumFailure),
}

/// One replica a put waits for: a primary, or a fallback holding a hint for a primary
/// that is down (sloppy quorum).
#[derive(Debug, Clone)]
struct Target {
    node: String,
    /// For a hint: the primary it stands for, and why that primary was not asked.
    hint_for: Option<(String, String)>,
}

/// One put's quorum state. The coordinator's own durable write is its first
/// acknowledgement, so this is created after that write.
///
/// Sloppy quorum: a primary that is down (or could not be asked) may be replaced by a
/// fallback that keeps a durable hint for it ([`PutTracker::reroute`]); the fallback's
/// acknowledgement counts toward `w` like the primary's would. Each node counts at most
/// once: a fallback already asked (for another primary, or as a primary) cannot stand in
/// again, because one node's disk is one copy however many hints it holds.
#[derive(Debug)]
pub struct PutTracker {
    /// The nodes the object was sent to: other primaries, and fallbacks with a hint.
    targets: Vec<Target>,
    w: usize,
    /// While the ring is in transition: the stable layout's primaries, `w` of which must
    /// acknowledge too (the coordinator counted if it is one), [`PutTracker::also_needs`].
    also: Option<(Vec<String>, usize, bool)>,
    /// `targets[..main]` count toward `w`; the rest only toward the extra group.
    main: usize,
    acks: usize,
    answers: BTreeMap<String, Result<(), String>>,
    replied: bool,
}

impl PutTracker {
    pub fn new(others: Vec<String>, w: usize) -> Self {
        PutTracker {
            targets: others
                .into_iter()
                .map(|node| Target {
                    node,
                    hint_for: None,
                })
                .collect(),
            main: usize::MAX,
            w,
            also: None,
            acks: 1,
            answers: BTreeMap::new(),
            replied: false,
        }
    }

    /// The write must also reach `w` of `group` plus the coordinator (the stable layout's
    /// primaries while the ring is in transition; `group` leaves the coordinator out, and
    /// `coordinator_in` says whether it is one of them). Members of
    /// `group` not yet targets become targets. Call before [`PutTracker::start`].
    pub fn also_needs(mut self, group: Vec<String>, w: usize, coordinator_in: bool) -> Self {
        self.main = self.targets.len();
        for g in &group {
            if !self.targets.iter().any(|t| t.node == *g) {
                self.targets.push(Target {
                    node: g.clone(),
                    hint_for: None,
                });
            }
        }
        self.also = Some((group, w, coordinator_in));
        self
    }

    /// The nodes the object goes to, in order (the coordinator's others, then the extra
    /// group's).
    pub fn target_nodes(&self) -> Vec<String> {
        self.targets.iter().map(|t| t.node.clone()).collect()
    }

    /// Acknowledgements within the extra group, and how many of it are still unanswered.
    fn also_counts(&self) -> Option<(usize, usize, usize)> {
        let (group, w, me_in) = self.also.as_ref()?;
        let mut acked = *me_in as usize;
        let mut open = 0;
        for g in group {
            let t = self
                .targets
                .iter()
                .find(|t| t.node == *g || t.hint_for.as_ref().is_some_and(|(p, _)| p == g));
            match t.map(|t| self.answers.get(&t.node)) {
                Some(Some(Ok(()))) => acked += 1,
                Some(None) => open += 1,
                _ => {}
            }
        }
        Some((acked, open, *w))
    }

    /// Call right after `new`: with `w == 1` the coordinator's write is enough.
    pub fn start(&mut self) -> Progress<PutOutcome> {
        self.check(false)
    }

    /// `primary` is not asked (it is down: `why`); `fallback` gets the object as a hint
    /// for it instead, and its answer stands for the primary's. `false` (nothing changed)
    /// if `primary` is not an unanswered primary of this put or `fallback` is already
    /// asked: the caller then keeps the hint itself, uncounted, and answers for the
    /// primary with its error.
    pub fn reroute(&mut self, primary: &str, fallback: &str, why: &str) -> bool {
        if self.targets.iter().any(|t| t.node == fallback) || self.answers.contains_key(primary) {
            return false;
        }
        let Some(t) = self
            .targets
            .iter_mut()
            .find(|t| t.node == primary && t.hint_for.is_none())
        else {
            return false;
        };
        *t = Target {
            node: fallback.to_string(),
            hint_for: Some((primary.to_string(), why.to_string())),
        };
        true
    }

    /// `node`'s answer: a primary's, or a fallback's to its hint.
    pub fn add_answer(&mut self, node: &str, answer: Result<(), String>) -> Progress<PutOutcome> {
        let Some(i) = self.targets.iter().position(|t| t.node == node) else {
            return Progress::Pending;
        };
        if self.answers.contains_key(node) {
            return Progress::Pending;
        }
        if answer.is_ok() && i < self.main {
            self.acks += 1;
        }
        self.answers.insert(node.to_string(), answer);
        self.check(false)
    }

    pub fn timed_out(&mut self) -> Progress<PutOutcome> {
        self.check(true)
    }

    pub fn all_answered(&self) -> bool {
        self.answers.len() == self.targets.len()
    }

    /// The primaries that hold neither the write nor an acknowledged hint for it (failed,
    /// not answered yet, or their fallback failed): the coordinator keeps a hint for each.
    pub fn unacknowledged(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .targets
            .iter()
            .filter(|t| !matches!(self.answers.get(&t.node), Some(Ok(()))))
            .map(|t| t.hint_for.as_ref().map_or(&t.node, |(p, _)| p).clone())
            .collect();
        out.sort();
        out
    }

    fn check(&mut self, deadline: bool) -> Progress<PutOutcome> {
        if self.replied {
            return Progress::Pending;
        }
        let outstanding = self
            .targets
            .iter()
            .take(self.main)
            .filter(|t| !self.answers.contains_key(&t.node))
            .count();
        let (also_ok, also_lost) = match self.also_counts() {
            None => (true, false),
            Some((acked, open, w)) => (acked >= w, acked + open < w),
        };
        let outcome = if self.acks >= self.w && also_ok {
            PutOutcome::Acknowledged
        } else if deadline || self.acks + outstanding < self.w || also_lost {
            let errors = self
                .targets
                .iter()
                .filter_map(|t| {
                    let err = match self.answers.get(&t.node) {
                        Some(Ok(())) => return None,
                        Some(Err(e)) => e.clone(),
                        None => "timed out".to_string(),
                    };
                    Some(match &t.hint_for {
                        None => (t.node.clone(), err),
                        Some((p, why)) => (p.clone(), format!("{why}; hint on {}: {err}", t.node)),
                    })
                })
                .collect();
            PutOutcome::Indeterminate(QuorumFailure {
                needed: self.w,
                got: self.acks,
                errors,
            })
        } else {
            return Progress::Pending;
        };
        self.replied = true;
        Progress::Reply(outcome)
    }
}

#[cfg(test)]
mod tests;
