//! The checks: a pure function from a [`History`] to a [`Verdict`]. No I/O, so recorded
//! histories (and hand-made ones with planted bugs, below) are checked exactly as live runs.
//!
//! - **set**: every acknowledged add is in the final read (else *lost*); nothing is there
//!   that was never added (*unexpected*); adds with unknown outcome may be either.
//! - **register**: a write *replaces* the values its context covered (the values the reply
//!   that gave it the context showed). An acknowledged value must be in the final read
//!   unless a write that was acknowledged or may have been applied replaced it (*lost*); a
//!   value an acknowledged write replaced must never be read again (*resurrected*); final
//!   siblings never outnumber the concurrent writes (those no acknowledged write replaced).
//! - **counter**: the final value lies in [acknowledged sum, acknowledged + unknown sum].
//! - **session**: a read with `after` that succeeded returned a context that covers it.

use super::history::{unhex, History, OpKind, Outcome, Workload};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use troupe_protocol::object::VersionVector;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Verdict {
    pub ops_ok: usize,
    pub ops_fail: usize,
    pub ops_unknown: usize,
    pub lost: Vec<String>,
    pub resurrected: Vec<String>,
    pub unexpected: Vec<String>,
    /// The most siblings a key showed at the end. A key may show no more than its
    /// concurrent writes: those no acknowledged write replaced (a blind write replaces
    /// nothing, so each is concurrent with every other).
    pub max_siblings: usize,
    pub sibling_violations: Vec<String>,
    /// Counter keys whose final value is outside its bounds, with the bounds.
    pub counter_violations: Vec<String>,
    pub session_violations: Vec<String>,
    pub convergence_ms: Option<f64>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.lost.is_empty()
            && self.resurrected.is_empty()
            && self.unexpected.is_empty()
            && self.sibling_violations.is_empty()
            && self.counter_violations.is_empty()
            && self.session_violations.is_empty()
    }
}

pub fn check(h: &History) -> Verdict {
    let mut v = Verdict {
        convergence_ms: h.convergence_us.map(|u| u as f64 / 1000.0),
        ..Verdict::default()
    };
    for op in &h.ops {
        match op.outcome {
            Outcome::Ok => v.ops_ok += 1,
            Outcome::Fail => v.ops_fail += 1,
            Outcome::Unknown => v.ops_unknown += 1,
        }
    }
    let finals: BTreeMap<&str, &super::history::FinalRead> =
        h.final_reads.iter().map(|f| (f.key.as_str(), f)).collect();
    let written: BTreeSet<&str> = h.ops.iter().filter_map(|o| o.value.as_deref()).collect();
    match h.workload {
        Workload::Set | Workload::Register => check_values(h, &finals, &written, &mut v),
        Workload::Counter => check_counters(h, &finals, &mut v),
        Workload::Session => {
            check_values(h, &finals, &written, &mut v);
            check_sessions(h, &mut v);
        }
    }
    v
}

fn check_values(
    h: &History,
    finals: &BTreeMap<&str, &super::history::FinalRead>,
    written: &BTreeSet<&str>,
    v: &mut Verdict,
) {
    // Which values each write replaced, if it was applied.
    let mut replaced_sure: BTreeSet<&str> = BTreeSet::new();
    let mut replaced_maybe: BTreeSet<&str> = BTreeSet::new();
    for op in &h.ops {
        if op.kind != OpKind::Put || op.outcome == Outcome::Fail {
            continue;
        }
        let Some(from) = op.context_from.and_then(|i| h.ops.get(i)) else {
            continue;
        };
        for val in &from.values_returned {
            if Some(val) == op.value.as_ref() {
                continue;
            }
            replaced_maybe.insert(val);
            if op.outcome == Outcome::Ok {
                replaced_sure.insert(val);
            }
        }
    }
    let empty = Vec::new();
    // Per key, the writes no acknowledged write replaced: the most siblings it may show.
    let mut writers: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for op in &h.ops {
        let Some(val) = &op.value else { continue };
        if op.outcome != Outcome::Fail && !replaced_sure.contains(val.as_str()) {
            writers.entry(&op.key).or_default().insert(val);
        }
        let final_values = finals.get(op.key.as_str()).map_or(&empty, |f| &f.values);
        let present = final_values.contains(val);
        if op.outcome == Outcome::Ok && !present && !replaced_maybe.contains(val.as_str()) {
            v.lost.push(format!("{} in {}", val, op.key));
        }
        if present && replaced_sure.contains(val.as_str()) {
            v.resurrected.push(format!("{} in {}", val, op.key));
        }
    }
    for f in &h.final_reads {
        for val in &f.values {
            if !written.contains(val.as_str()) {
                v.unexpected.push(format!("{} in {}", val, f.key));
            }
        }
        if h.workload != Workload::Set {
            let n = writers.get(f.key.as_str()).map_or(0, BTreeSet::len);
            v.max_siblings = v.max_siblings.max(f.values.len());
            if f.values.len() > n {
                v.sibling_violations.push(format!(
                    "{}: {} siblings, but only {} writes were not replaced by an acknowledged one",
                    f.key,
                    f.values.len(),
                    n
                ));
            }
        }
    }
}

fn check_counters(
    h: &History,
    finals: &BTreeMap<&str, &super::history::FinalRead>,
    v: &mut Verdict,
) {
    let mut bounds: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for op in h.ops.iter().filter(|o| o.kind == OpKind::Incr) {
        let by = op.by.unwrap_or(0);
        let b = bounds.entry(&op.key).or_default();
        match op.outcome {
            Outcome::Ok => {
                b.0 += by;
                b.1 += by;
            }
            Outcome::Unknown => b.1 += by,
            Outcome::Fail => {}
        }
    }
    for (key, (lo, hi)) in bounds {
        let got = finals.get(key).and_then(|f| f.counter);
        match got {
            Some(x) if (lo..=hi).contains(&x) => {}
            other => v.counter_violations.push(format!(
                "{key}: final {other:?}, acknowledged {lo}, at most {hi} with the unknown ones"
            )),
        }
    }
}

fn check_sessions(h: &History, v: &mut Verdict) {
    for (i, op) in h.ops.iter().enumerate() {
        if op.kind != OpKind::Get || op.outcome != Outcome::Ok {
            continue;
        }
        let Some(after) = op.context_sent.as_deref() else {
            continue;
        };
        let decode = |s: &str| unhex(s).and_then(|b| VersionVector::decode(&b).ok());
        let (Some(after), Some(got)) = (
            decode(after),
            op.context_returned
                .as_deref()
                .map_or(Some(VersionVector::new()), decode),
        ) else {
            v.session_violations
                .push(format!("op {i}: a context did not decode"));
            continue;
        };
        if !got.descends(&after) {
            v.session_violations.push(format!(
                "op {i} (session {}, key {}, via {}): read with after did not cover it",
                op.session, op.key, op.node
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::history::*;
    use super::*;
    use troupe_protocol::object::{ActorId, Object, Value};

    fn op(session: u32, kind: OpKind, key: &str, value: Option<&str>, outcome: Outcome) -> Op {
        Op {
            session,
            kind,
            key: key.into(),
            value: value.map(String::from),
            by: None,
            context_sent: None,
            context_from: None,
            context_returned: None,
            values_returned: Vec::new(),
            node: "n1".into(),
            invoke_us: 0,
            complete_us: 1,
            outcome,
            error: None,
        }
    }

    fn history(workload: Workload, ops: Vec<Op>, finals: Vec<FinalRead>) -> History {
        History {
            workload,
            seed: 1,
            nodes: vec!["n1".into()],
            ops,
            faults: Vec::new(),
            final_reads: finals,
            convergence_us: None,
        }
    }

    fn fin(key: &str, values: &[&str]) -> FinalRead {
        FinalRead {
            key: key.into(),
            values: values.iter().map(|s| s.to_string()).collect(),
            counter: None,
        }
    }

    #[test]
    fn a_planted_lost_write_is_reported_and_unknown_ones_are_not() {
        let ops = vec![
            op(0, OpKind::Sadd, "k", Some("a"), Outcome::Ok),
            op(1, OpKind::Sadd, "k", Some("b"), Outcome::Ok),
            op(1, OpKind::Sadd, "k", Some("c"), Outcome::Unknown),
        ];
        let good = check(&history(
            Workload::Set,
            ops.clone(),
            vec![fin("k", &["a", "b"])],
        ));
        assert!(good.ok(), "{good:?}");
        let bad = check(&history(Workload::Set, ops, vec![fin("k", &["a", "z"])]));
        assert_eq!(bad.lost, ["b in k"]);
        assert_eq!(bad.unexpected, ["z in k"]);
        assert!(!bad.ok());
    }

    #[test]
    fn a_planted_resurrection_is_reported() {
        // Session 0 writes a; session 1 reads it and replaces it with b (acknowledged).
        let mut w1 = op(0, OpKind::Put, "k", Some("a"), Outcome::Ok);
        w1.values_returned = vec!["a".into()];
        let mut r = op(1, OpKind::Get, "k", None, Outcome::Ok);
        r.values_returned = vec!["a".into()];
        let mut w2 = op(1, OpKind::Put, "k", Some("b"), Outcome::Ok);
        w2.context_from = Some(1);
        let ops = vec![w1, r, w2];
        let fine = check(&history(
            Workload::Register,
            ops.clone(),
            vec![fin("k", &["b"])],
        ));
        assert!(fine.ok(), "{fine:?}");
        let back = check(&history(
            Workload::Register,
            ops.clone(),
            vec![fin("k", &["a", "b"])],
        ));
        assert_eq!(back.resurrected, ["a in k"]);
        // b lost while nothing replaced it:
        let lost = check(&history(Workload::Register, ops, vec![fin("k", &[])]));
        assert_eq!(lost.lost, ["b in k"]);
    }

    #[test]
    fn a_value_replaced_by_a_write_of_unknown_outcome_may_be_gone_or_present() {
        let mut r = op(1, OpKind::Get, "k", None, Outcome::Ok);
        r.values_returned = vec!["a".into()];
        let mut w2 = op(1, OpKind::Put, "k", Some("b"), Outcome::Unknown);
        w2.context_from = Some(1);
        let ops = vec![op(0, OpKind::Put, "k", Some("a"), Outcome::Ok), r, w2];
        for finals in [vec![fin("k", &["a"])], vec![fin("k", &["b"])]] {
            let v = check(&history(Workload::Register, ops.clone(), finals));
            assert!(v.ok(), "{v:?}");
        }
    }

    #[test]
    fn a_planted_session_violation_is_reported() {
        let vv = |n: u64| {
            let o = (0..n).fold(Object::new(), |o, i| {
                o.update(&o.context(), Value::data(i.to_string()), ActorId(1))
                    .unwrap()
            });
            hex(&o.context().encode())
        };
        let mut read = op(0, OpKind::Get, "k", None, Outcome::Ok);
        read.context_sent = Some(vv(2));
        read.context_returned = Some(vv(2));
        let ok = check(&history(Workload::Session, vec![read.clone()], vec![]));
        assert!(ok.session_violations.is_empty(), "{ok:?}");
        read.context_returned = Some(vv(1));
        let bad = check(&history(Workload::Session, vec![read], vec![]));
        assert_eq!(bad.session_violations.len(), 1, "{bad:?}");
    }

    #[test]
    fn counters_are_bounded_by_acknowledged_and_unknown_increments() {
        let inc = |by, outcome| Op {
            by: Some(by),
            ..op(0, OpKind::Incr, "c", None, outcome)
        };
        let ops = vec![
            inc(2, Outcome::Ok),
            inc(3, Outcome::Unknown),
            inc(7, Outcome::Fail),
        ];
        let fin = |x| FinalRead {
            key: "c".into(),
            values: vec![],
            counter: Some(x),
        };
        for x in [2, 5] {
            assert!(check(&history(Workload::Counter, ops.clone(), vec![fin(x)])).ok());
        }
        for x in [1, 6, 12] {
            let v = check(&history(Workload::Counter, ops.clone(), vec![fin(x)]));
            assert_eq!(v.counter_violations.len(), 1, "{x}: {v:?}");
        }
    }

    #[test]
    fn more_siblings_than_concurrent_writes_is_reported() {
        // Two blind writes: two concurrent siblings are fine; a third sibling (the same
        // value twice) is not.
        let ops = vec![
            op(0, OpKind::Put, "k", Some("a"), Outcome::Ok),
            op(0, OpKind::Put, "k", Some("b"), Outcome::Ok),
        ];
        let v = check(&history(
            Workload::Register,
            ops.clone(),
            vec![fin("k", &["a", "b"])],
        ));
        assert!(v.ok(), "{v:?}");
        let v = check(&history(
            Workload::Register,
            ops,
            vec![fin("k", &["a", "a", "b"])],
        ));
        assert_eq!(v.sibling_violations.len(), 1, "{v:?}");
    }
}
