//! The pure core of tombstone GC: which delete markers this node knows of and since when
//! ([`GcBook`]), and one GC round's verdicts ([`Round`]). No I/O, no clock: the actor
//! passes `now` in.
//!
//! Invariants:
//! - A marker is *due* only once it has been held unchanged (same clock hash) for the
//!   grace period, and at most once per round: a marker in a round is not offered again
//!   until the round ends.
//! - A round purges an entry only when every member asked passed it (no hint pending
//!   there, and the marker held by every other primary); a member that did not answer
//!   fails every entry. So a lost message, a slow node or a node that restarted keeps the
//!   marker, never drops it.
//! - The book is bounded (`max_tracked`); reports beyond it are counted, not kept (those
//!   markers stay on disk until a later scan finds them: a cost in space, not safety).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

pub type Hash = [u8; 16];

#[derive(Debug, Clone)]
struct Tracked {
    hash: Hash,
    /// When this exact marker was first seen here.
    since: Instant,
    /// Not offered before this instant (a failed round backs off).
    not_before: Instant,
    in_round: bool,
}

/// The delete markers this replica holds, as far as it was told.
#[derive(Debug)]
pub struct GcBook {
    grace: Duration,
    retry: Duration,
    max_tracked: usize,
    tracked: BTreeMap<Vec<u8>, Tracked>,
    /// Reports not kept because the book was full.
    pub overflow: u64,
}

impl GcBook {
    /// `grace`: how long a marker must be held before a round may consider it; `retry`:
    /// how long a marker a round kept waits for the next.
    pub fn new(grace: Duration, retry: Duration, max_tracked: usize) -> GcBook {
        GcBook {
            grace,
            retry,
            max_tracked,
            tracked: BTreeMap::new(),
            overflow: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.tracked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracked.is_empty()
    }

    /// This replica holds the marker `hash` for `key`: a new marker (or a different one)
    /// starts its grace now; the same one keeps its time.
    pub fn observe(&mut self, key: &[u8], hash: Hash, now: Instant) {
        if let Some(t) = self.tracked.get_mut(key) {
            if t.hash != hash {
                *t = Tracked {
                    hash,
                    since: now,
                    not_before: now,
                    in_round: t.in_round,
                };
            }
            return;
        }
        if self.tracked.len() >= self.max_tracked {
            self.overflow += 1;
            return;
        }
        self.tracked.insert(
            key.to_vec(),
            Tracked {
                hash,
                since: now,
                not_before: now,
                in_round: false,
            },
        );
    }

    /// The marker `hash` of `key` is gone here (purged); a different one stays.
    pub fn forget(&mut self, key: &[u8], hash: Hash) {
        if self.tracked.get(key).is_some_and(|t| t.hash == hash) {
            self.tracked.remove(key);
        }
    }

    /// Up to `limit` markers held for the grace period, not in a round, that `mine`
    /// accepts (this node runs their rounds); they are now in a round.
    pub fn due(
        &mut self,
        now: Instant,
        limit: usize,
        mut mine: impl FnMut(&[u8]) -> bool,
    ) -> Vec<(Vec<u8>, Hash)> {
        let mut out = Vec::new();
        for (key, t) in self.tracked.iter_mut() {
            if out.len() >= limit {
                break;
            }
            let ripe = now.saturating_duration_since(t.since) >= self.grace;
            if ripe && !t.in_round && now >= t.not_before && mine(key) {
                t.in_round = true;
                out.push((key.clone(), t.hash));
            }
        }
        out
    }

    /// A round about `entries` ended; `purged[i]` says whether entry `i` is gone here.
    /// Kept entries wait `retry` before the next round offers them.
    pub fn round_ended(&mut self, entries: &[(Vec<u8>, Hash)], purged: &[bool], now: Instant) {
        for (i, (key, hash)) in entries.iter().enumerate() {
            if purged.get(i).copied().unwrap_or(false) {
                self.forget(key, *hash);
            } else if let Some(t) = self.tracked.get_mut(key) {
                t.in_round = false;
                t.not_before = now + self.retry;
            }
        }
    }

    /// Markers whose grace has not passed yet, and those that have (for `admin stats`).
    pub fn counts(&self, now: Instant) -> (usize, usize) {
        let ripe = self
            .tracked
            .values()
            .filter(|t| now.saturating_duration_since(t.since) >= self.grace)
            .count();
        (self.tracked.len() - ripe, ripe)
    }
}

/// One GC round: the entries, the members asked, and what they said so far.
#[derive(Debug)]
pub struct Round<N: Ord + Clone> {
    pub id: u64,
    pub entries: Vec<(Vec<u8>, Hash)>,
    ok: Vec<bool>,
    waiting: BTreeSet<N>,
}

impl<N: Ord + Clone> Round<N> {
    /// A round about `entries` asking every member in `asked` (this node included, if it
    /// checks itself through the same path).
    pub fn new(id: u64, entries: Vec<(Vec<u8>, Hash)>, asked: impl IntoIterator<Item = N>) -> Self {
        let ok = vec![true; entries.len()];
        Round {
            id,
            entries,
            ok,
            waiting: asked.into_iter().collect(),
        }
    }

    /// `from`'s verdict; true once every member answered. An answer of the wrong length
    /// fails every entry (it cannot be matched); a second answer is ignored.
    pub fn verdict(&mut self, from: &N, ok: &[bool]) -> bool {
        if self.waiting.remove(from) {
            let fits = ok.len() == self.ok.len();
            for (i, mine) in self.ok.iter_mut().enumerate() {
                *mine &= fits && ok[i];
            }
        }
        self.waiting.is_empty()
    }

    /// The deadline passed: the members that did not answer fail every entry.
    pub fn timed_out(&mut self) {
        if !self.waiting.is_empty() {
            self.waiting.clear();
            self.ok.iter_mut().for_each(|o| *o = false);
        }
    }

    pub fn done(&self) -> bool {
        self.waiting.is_empty()
    }

    /// The entries every member passed (call once `done`).
    pub fn cleared(&self) -> Vec<(Vec<u8>, Hash)> {
        self.entries
            .iter()
            .zip(&self.ok)
            .filter(|(_, ok)| **ok)
            .map(|(e, _)| e.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(60);

    fn book() -> GcBook {
        GcBook::new(GRACE, Duration::from_secs(5), 3)
    }

    #[test]
    fn a_marker_is_due_only_after_the_grace_and_only_once_per_round() {
        let t0 = Instant::now();
        let mut b = book();
        b.observe(b"k", [1; 16], t0);
        assert!(b.due(t0 + GRACE / 2, 10, |_| true).is_empty());
        // Seen again (another write of the same marker): keeps its time.
        b.observe(b"k", [1; 16], t0 + GRACE / 2);
        let due = b.due(t0 + GRACE, 10, |_| true);
        assert_eq!(due, vec![(b"k".to_vec(), [1; 16])]);
        assert!(b.due(t0 + GRACE * 2, 10, |_| true).is_empty(), "in a round");
        // The round kept it: offered again only after the retry delay.
        b.round_ended(&due, &[false], t0 + GRACE * 2);
        assert!(b.due(t0 + GRACE * 2, 10, |_| true).is_empty());
        assert_eq!(
            b.due(t0 + GRACE * 2 + Duration::from_secs(5), 10, |_| true)
                .len(),
            1
        );
    }

    #[test]
    fn a_different_marker_restarts_the_grace_and_a_purge_forgets_only_its_own() {
        let t0 = Instant::now();
        let mut b = book();
        b.observe(b"k", [1; 16], t0);
        b.observe(b"k", [2; 16], t0 + GRACE);
        assert!(b.due(t0 + GRACE, 10, |_| true).is_empty());
        b.forget(b"k", [1; 16]);
        assert_eq!(b.len(), 1, "the newer marker stays");
        let due = b.due(t0 + GRACE * 2, 10, |_| true);
        b.round_ended(&due, &[true], t0 + GRACE * 2);
        assert!(b.is_empty());
    }

    #[test]
    fn only_markers_this_node_owns_are_offered_and_the_book_is_bounded() {
        let t0 = Instant::now();
        let mut b = book();
        for k in [b"a", b"b", b"c", b"d"] {
            b.observe(k, [0; 16], t0);
        }
        assert_eq!((b.len(), b.overflow), (3, 1));
        let due = b.due(t0 + GRACE, 10, |k| k != b"b");
        assert_eq!(due.len(), 2);
        assert_eq!(b.counts(t0 + GRACE), (0, 3));
    }

    #[test]
    fn a_round_clears_only_entries_every_member_passed() {
        let entries = vec![(b"x".to_vec(), [1; 16]), (b"y".to_vec(), [2; 16])];
        let mut r = Round::new(1, entries, ["a", "b", "c"]);
        assert!(!r.verdict(&"a", &[true, true]));
        assert!(!r.verdict(&"b", &[true, false]));
        assert!(
            !r.verdict(&"b", &[true, true]),
            "a second answer changes nothing"
        );
        assert!(r.verdict(&"c", &[true, true]));
        assert_eq!(r.cleared(), vec![(b"x".to_vec(), [1; 16])]);
    }

    #[test]
    fn silence_or_a_garbled_answer_keeps_every_marker() {
        let entries = vec![(b"x".to_vec(), [1; 16])];
        let mut r = Round::new(1, entries.clone(), ["a", "b"]);
        r.verdict(&"a", &[true]);
        r.timed_out();
        assert!(r.done() && r.cleared().is_empty());
        let mut r = Round::new(2, entries, ["a"]);
        r.verdict(&"a", &[true, true]);
        assert!(r.cleared().is_empty());
    }
}
