//! One exchange between this node (the initiator) and a peer, as a pure state machine: what
//! to ask next, what an answer says differs, when it is done. No I/O: the actor sends the
//! requests, feeds the answers in and carries out the repairs.
//!
//! The walk: ask the roots of every partition both hold; for a root that differs ask its
//! children, level by level, only under nodes that differ; at the segments ask for their
//! keys and hashes; a key whose hash differs, or that one side lacks, is a [`DiffKey`] to
//! repair. Identical replicas therefore exchange roots only, and the bytes grow with the
//! number of differing segments, not with the data.
//!
//! Work is taken deepest first (segments, then the deepest pending nodes, then roots), so
//! a big difference (a wiped replica) is repaired chunk by chunk with bounded memory
//! instead of first listing everything. Requests are cut to bounded sizes
//! (`MAX_NODES`, `MAX_SEGMENTS`) so every answer fits a frame.
//!
//! The responder side ([`answer`]) is a pure function of its trees.

use super::tree::Trees;
use serde_bytes::ByteBuf;
use std::collections::{BTreeMap, VecDeque};
use troupe_protocol::antientropy::{AeReq, AeResp, TreeShape};

/// Inner nodes whose children one request asks for (answer: `MAX_NODES * fanout` hashes,
/// 72 KiB at fanout 32).
pub const MAX_NODES: usize = 256;
/// Segments one request lists (answer: their keys; ~4 keys a segment at 1M keys and the
/// default shape).
pub const MAX_SEGMENTS: usize = 128;
/// Partitions one roots request names.
pub const MAX_ROOTS: usize = 4096;

/// A key the two replicas disagree on, with each side's hash (`None`: absent there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffKey {
    pub key: Vec<u8>,
    pub local: Option<u64>,
    pub remote: Option<u64>,
}

/// What the actor does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Send this request; feed its answer to [`Exchange::on_answer`].
    Ask(AeReq),
    /// Join these keys on both sides, then call [`Exchange::next_step`] again.
    Repair(Vec<DiffKey>),
    Done,
}

/// Counts of one exchange.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExchangeCounts {
    pub partitions: u64,
    pub partitions_differing: u64,
    pub segments_compared: u64,
    /// Keys held here in the partitions compared (equal roots vouch for all of them).
    pub keys_compared: u64,
    pub keys_differing: u64,
}

/// Why an exchange ended early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    #[error("the peer refused: {reason}")]
    Refused { reason: String },
    #[error("the peer's answer does not match the request ({what})")]
    Unexpected { what: &'static str },
}

/// The initiator's state of one exchange.
#[derive(Debug)]
pub struct Exchange {
    shape: TreeShape,
    roots: Vec<u32>,
    /// Per level: nodes that differ, whose children are still to be asked.
    nodes: BTreeMap<u32, VecDeque<(u32, u32)>>,
    segments: VecDeque<(u32, u32)>,
    repair: Vec<DiffKey>,
    waiting: Option<AeReq>,
    pub counts: ExchangeCounts,
}

impl Exchange {
    /// An exchange over `partitions` (those both replicas hold).
    pub fn new(shape: TreeShape, mut partitions: Vec<u32>) -> Exchange {
        partitions.sort_unstable();
        partitions.dedup();
        Exchange {
            shape,
            roots: partitions,
            nodes: BTreeMap::new(),
            segments: VecDeque::new(),
            repair: Vec::new(),
            waiting: None,
            counts: ExchangeCounts::default(),
        }
    }

    /// The next thing to do. Must not be called while a request is unanswered.
    pub fn next_step(&mut self) -> Step {
        debug_assert!(self.waiting.is_none(), "BUG: next_step() before the answer");
        let shape = self.shape;
        let req = if !self.repair.is_empty() {
            return Step::Repair(std::mem::take(&mut self.repair));
        } else if !self.segments.is_empty() {
            let n = self.segments.len().min(MAX_SEGMENTS);
            AeReq::Segments {
                shape,
                segments: self.segments.drain(..n).collect(),
            }
        } else if let Some(mut entry) = self.nodes.last_entry() {
            let level = *entry.key();
            let q = entry.get_mut();
            let n = q.len().min(MAX_NODES);
            let nodes: Vec<(u32, u32)> = q.drain(..n).collect();
            if q.is_empty() {
                entry.remove();
            }
            AeReq::Children {
                shape,
                level,
                nodes,
            }
        } else if !self.roots.is_empty() {
            let n = self.roots.len().min(MAX_ROOTS);
            AeReq::Roots {
                shape,
                partitions: self.roots.drain(..n).collect(),
            }
        } else {
            return Step::Done;
        };
        self.waiting = Some(req.clone());
        Step::Ask(req)
    }

    /// A node of `level` differs: ask its children, or its keys at the segment level.
    fn differs(&mut self, level: u32, node: (u32, u32)) {
        if level == self.shape.depth {
            self.segments.push_back(node);
        } else {
            self.nodes.entry(level).or_default().push_back(node);
        }
    }

    /// The peer's answer to the request [`Exchange::next_step`] gave, compared with `local` as it
    /// is now (a write landing in between shows as a difference; the join is harmless).
    pub fn on_answer(&mut self, local: &Trees, resp: AeResp) -> Result<(), ExchangeError> {
        let asked = self.waiting.take();
        let fanout = self.shape.fanout;
        match (asked, resp) {
            (_, AeResp::Refused { reason }) => return Err(ExchangeError::Refused { reason }),
            (Some(AeReq::Roots { partitions, .. }), AeResp::Hashes { hashes })
                if hashes.len() == partitions.len() =>
            {
                for (p, h) in partitions.into_iter().zip(hashes) {
                    self.counts.partitions += 1;
                    self.counts.keys_compared += local.keys_in(p) as u64;
                    if local.root(p) != h {
                        self.counts.partitions_differing += 1;
                        self.differs(0, (p, 0));
                    }
                }
            }
            (Some(AeReq::Children { level, nodes, .. }), AeResp::Hashes { hashes })
                if hashes.len() == nodes.len() * fanout as usize =>
            {
                for ((p, i), remote) in nodes.into_iter().zip(hashes.chunks(fanout as usize)) {
                    let mine = local.children(p, level, i);
                    for (j, (a, b)) in mine.into_iter().zip(remote).enumerate() {
                        if a != *b {
                            self.differs(level + 1, (p, i * fanout + j as u32));
                        }
                    }
                }
            }
            (Some(AeReq::Segments { segments, .. }), AeResp::Keys { keys }) => {
                let mut remote: BTreeMap<Vec<u8>, u64> =
                    keys.into_iter().map(|(k, h)| (k.into_vec(), h)).collect();
                for (p, s) in segments.iter().copied() {
                    self.counts.segments_compared += 1;
                    for (k, h) in local.segment(p, s) {
                        let theirs = remote.remove(k);
                        if theirs != Some(h) {
                            self.repair.push(DiffKey {
                                key: k.to_vec(),
                                local: Some(h),
                                remote: theirs,
                            });
                        }
                    }
                }
                // What is left the peer has and we do not (only keys of the segments asked:
                // anything else in the answer is ignored).
                for (k, h) in remote {
                    if segments.contains(&local.place(&k)) {
                        self.repair.push(DiffKey {
                            key: k,
                            local: None,
                            remote: Some(h),
                        });
                    }
                }
                self.counts.keys_differing += self.repair.len() as u64;
            }
            (None, _) => return Err(ExchangeError::Unexpected { what: "no request" }),
            _ => {
                return Err(ExchangeError::Unexpected {
                    what: "wrong answer kind or length",
                })
            }
        }
        Ok(())
    }
}

/// The responder's answer to a tree request from its own trees (`None`: `Fetch` / `Push`,
/// which need storage).
pub fn answer(trees: &Trees, req: &AeReq) -> Option<AeResp> {
    let refuse = |shape: &TreeShape| AeResp::Refused {
        reason: format!(
            "tree shape {}x{} asked, this node uses {}x{}",
            shape.fanout,
            shape.depth,
            trees.shape().fanout,
            trees.shape().depth
        ),
    };
    Some(match req {
        AeReq::Roots { shape, .. }
        | AeReq::Children { shape, .. }
        | AeReq::Segments { shape, .. }
            if *shape != trees.shape() =>
        {
            refuse(shape)
        }
        AeReq::Roots { partitions, .. } => AeResp::Hashes {
            hashes: partitions.iter().map(|&p| trees.root(p)).collect(),
        },
        AeReq::Children { level, nodes, .. } => AeResp::Hashes {
            hashes: nodes
                .iter()
                .flat_map(|&(p, i)| trees.children(p, *level, i))
                .collect(),
        },
        AeReq::Segments { segments, .. } => AeResp::Keys {
            keys: segments
                .iter()
                .flat_map(|&(p, s)| trees.segment(p, s))
                .map(|(k, h)| (ByteBuf::from(k.to_vec()), h))
                .collect(),
        },
        AeReq::Fetch { .. } | AeReq::Push { .. } => return None,
    })
}
