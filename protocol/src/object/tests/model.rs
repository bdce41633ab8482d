//! The object against a simple model of causality.
//!
//! Model: every write is an event with a unique id and the set of events its writer had
//! seen (its context, as a set). A replica's state is the set of events it knows. The
//! siblings of a state are its maximal events: those no known event has seen. A write at a
//! coordinator adds its context and the new event; replication is set union.
//!
//! Random sequences of writes (with no context, or the client's last one), one-way
//! syncs between replicas and client reads drive the objects and the model side by side;
//! after every step each replica's object must have exactly the model's maximal events as
//! siblings (dot for dot, value for value), the model's clock as context, and `descends`
//! and `covers` must agree with set inclusion. proptest prints the shrunk op sequence of a
//! failure and keeps it in `proptest-regressions/` (replayed first on the next run);
//! `PROPTEST_RNG_SEED=<u64>` fixes the seed of a whole run.

use super::super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Replica actor ids, deliberately not in index order (the object sorts by actor id).
const ACTORS: [ActorId; 3] = [
    ActorId(0x9e37_79b9_7f4a_7c15),
    ActorId(0x12),
    ActorId(u64::MAX - 1),
];
const CLIENTS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    /// `client` writes through coordinator `coord`; with its last context or none.
    Put {
        coord: usize,
        client: usize,
        with_context: bool,
        delete: bool,
    },
    /// Replica `to` joins replica `from`'s object (replication or repair).
    Sync { from: usize, to: usize },
    /// `client` reads the replicas in `mask` and keeps the joined context.
    Read { client: usize, mask: u8 },
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..ACTORS.len(), 0..CLIENTS, any::<bool>(), prop::bool::weighted(0.2)).prop_map(
            |(coord, client, with_context, delete)| Op::Put { coord, client, with_context, delete }
        ),
        3 => (0..ACTORS.len(), 0..ACTORS.len()).prop_map(|(from, to)| Op::Sync { from, to }),
        2 => (0..CLIENTS, 1u8..8).prop_map(|(client, mask)| Op::Read { client, mask }),
    ]
}

struct Event {
    dot: Dot,
    value: Value,
    seen: BTreeSet<usize>,
}

/// Both worlds side by side.
#[derive(Default)]
struct World {
    events: Vec<Event>,
    objects: Vec<Object>,
    states: Vec<BTreeSet<usize>>,
    /// Per client: (context bytes as the object gives them, the same context as a set).
    clients: Vec<(VersionVector, BTreeSet<usize>)>,
    /// Every (object, state) pair seen, for join laws on arbitrary reachable objects.
    history: Vec<(Object, BTreeSet<usize>)>,
}

impl World {
    fn new() -> World {
        World {
            objects: vec![Object::new(); ACTORS.len()],
            states: vec![BTreeSet::new(); ACTORS.len()],
            clients: vec![Default::default(); CLIENTS],
            ..Default::default()
        }
    }

    fn maximal(&self, s: &BTreeSet<usize>) -> BTreeSet<usize> {
        s.iter()
            .copied()
            .filter(|e| !s.iter().any(|f| self.events[*f].seen.contains(e)))
            .collect()
    }

    fn clock(&self, s: &BTreeSet<usize>) -> VersionVector {
        s.iter()
            .map(|&e| (self.events[e].dot.actor, self.events[e].dot.counter))
            .collect()
    }

    /// A write; returns the new event's id.
    fn put(&mut self, coord: usize, ctx: (VersionVector, BTreeSet<usize>), value: Value) -> usize {
        let actor = ACTORS[coord];
        let new = self.objects[coord]
            .update(&ctx.0, value.clone(), actor)
            .expect("small counters");
        let owned = self.objects[coord]
            .clone()
            .update_owned(&ctx.0, value.clone(), actor);
        assert_eq!(owned.as_ref(), Ok(&new), "update_owned differs from update");
        let dot = Dot {
            actor,
            counter: new.context().get(actor),
        };
        assert!(
            self.events.iter().all(|e| e.dot != dot),
            "dot {dot} issued twice"
        );
        let id = self.events.len();
        self.events.push(Event {
            dot,
            value,
            seen: ctx.1.clone(),
        });
        self.objects[coord] = new;
        self.states[coord].extend(ctx.1);
        self.states[coord].insert(id);
        id
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Put {
                coord,
                client,
                with_context,
                delete,
            } => {
                let ctx = if with_context {
                    self.clients[client].clone()
                } else {
                    Default::default()
                };
                let id = self.events.len();
                let value = if delete {
                    Value::Deleted
                } else {
                    Value::data(format!("e{id}"))
                };
                self.put(coord, ctx, value);
                // The reply's context: the coordinator's new object.
                self.clients[client] = (self.objects[coord].context(), self.states[coord].clone());
            }
            Op::Sync { from, to } => {
                let joined = self.objects[to].join(&self.objects[from]);
                let owned = self.objects[to]
                    .clone()
                    .join_owned(self.objects[from].clone());
                assert_eq!(owned, joined, "join_owned differs from join");
                self.objects[to] = joined;
                let s = self.states[from].clone();
                self.states[to].extend(s);
            }
            Op::Read { client, mask } => {
                let (o, s) = self.read(mask);
                self.clients[client] = (o.context(), s);
            }
        }
        for r in 0..ACTORS.len() {
            self.history
                .push((self.objects[r].clone(), self.states[r].clone()));
        }
    }

    fn read(&self, mask: u8) -> (Object, BTreeSet<usize>) {
        let mut o = Object::new();
        let mut s = BTreeSet::new();
        for r in (0..ACTORS.len()).filter(|r| mask & (1 << r) != 0) {
            o = o.join(&self.objects[r]);
            s.extend(self.states[r].iter().copied());
        }
        (o, s)
    }

    /// The object holds exactly the model's maximal events of `s`.
    fn check_object(&self, o: &Object, s: &BTreeSet<usize>) -> Result<(), TestCaseError> {
        let got: BTreeMap<Dot, &Value> = o.siblings().collect();
        prop_assert_eq!(got.len(), o.sibling_count(), "a dot appears twice");
        let max = self.maximal(s);
        let want: BTreeMap<Dot, &Value> = max
            .iter()
            .map(|&e| (self.events[e].dot, &self.events[e].value))
            .collect();
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(o.context(), self.clock(s));
        let live = max
            .iter()
            .filter(|&&e| !self.events[e].value.is_deleted())
            .count();
        prop_assert_eq!(o.live_values().len(), live);
        prop_assert_eq!(o.is_tombstone_only(), !max.is_empty() && live == 0);
        prop_assert_eq!(&Object::decode(&o.encode()).unwrap(), o);
        prop_assert_eq!(
            &VersionVector::decode(&o.context().encode()).unwrap(),
            &o.context()
        );
        prop_assert_eq!(o.encoded_context(), o.context().encode());
        Ok(())
    }

    fn check(&self) -> Result<(), TestCaseError> {
        for r in 0..ACTORS.len() {
            self.check_object(&self.objects[r], &self.states[r])?;
            for q in 0..ACTORS.len() {
                let model = self.states[q].is_subset(&self.states[r]);
                prop_assert_eq!(self.objects[r].descends(&self.objects[q]), model);
            }
            for (vv, set) in &self.clients {
                prop_assert_eq!(self.objects[r].covers(vv), set.is_subset(&self.states[r]));
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn objects_follow_the_causal_history_model(
        ops in prop::collection::vec(arb_op(), 1..40),
        triples in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<prop::sample::Index>()), 8),
        coord in 0..ACTORS.len(),
    ) {
        let mut w = World::new();
        for op in &ops {
            w.apply(op);
            w.check()?;
        }
        // Join against the model, and the semilattice laws, on reachable objects.
        for (i, j, k) in &triples {
            let (x, sx) = &w.history[i.index(w.history.len())];
            let (y, sy) = &w.history[j.index(w.history.len())];
            let (z, _) = &w.history[k.index(w.history.len())];
            let xy = x.join(y);
            prop_assert_eq!(&x.clone().join_owned(y.clone()), &xy);
            w.check_object(&xy, &sx.union(sy).copied().collect())?;
            prop_assert_eq!(&xy, &y.join(x));
            prop_assert_eq!(xy.join(z), x.join(&y.join(z)));
            prop_assert_eq!(&x.join(x), x);
            prop_assert_eq!(xy.descends(x) && xy.descends(y), true);
            // The lattice order: joining what a version descends from leaves it as it is
            // (the read path's tracker skips such joins).
            if x.descends(y) {
                prop_assert_eq!(&xy, x);
            }
        }
        // A write with the context of a read of every replica resolves all siblings.
        let all = (1u8 << ACTORS.len()) - 1;
        let (read, seen) = w.read(all);
        let id = w.put(coord, (read.context(), seen), Value::data("resolved"));
        let resolved = Value::data("resolved");
        prop_assert_eq!(w.objects[coord].values(), vec![&resolved]);
        for r in 0..ACTORS.len() {
            w.objects[r] = w.objects[r].join(&w.objects[coord]);
            let s = w.states[coord].clone();
            w.states[r].extend(s);
            prop_assert_eq!(w.objects[r].siblings().map(|(dot, _)| dot).collect::<Vec<_>>(), vec![w.events[id].dot]);
        }
        w.check()?;
    }

    /// Clients that keep their context (merging what they read and what their writes
    /// return) never make more siblings than there are of them: each client's writes form
    /// a chain, so at most one of them is concurrent with the others.
    #[test]
    fn siblings_never_outnumber_concurrent_writers(
        ops in prop::collection::vec(arb_op(), 1..60),
    ) {
        let mut w = World::new();
        let mut writers = BTreeSet::new();
        for op in &ops {
            match *op {
                Op::Put { coord, client, delete, .. } => {
                    let id = w.events.len();
                    let value = if delete { Value::Deleted } else { Value::data(format!("e{id}")) };
                    let ctx = w.clients[client].clone();
                    w.put(coord, ctx, value);
                    let (vv, set) = &mut w.clients[client];
                    *vv = vv.merge(&w.objects[coord].context());
                    set.extend(w.states[coord].iter().copied());
                    writers.insert(client);
                }
                Op::Read { client, mask } => {
                    let (o, s) = w.read(mask);
                    let (vv, set) = &mut w.clients[client];
                    *vv = vv.merge(&o.context());
                    set.extend(s);
                }
                Op::Sync { .. } => w.apply(op),
            }
            w.check()?;
            for o in &w.objects {
                prop_assert!(o.sibling_count() <= writers.len(), "{} siblings from {} writers", o.sibling_count(), writers.len());
            }
        }
    }
}
