//! The admin command table: the one list of every admin command, its usage and one-line
//! summary, what it needs and whether it is destructive.
//!
//! The Admin actor dispatches through it (an unknown name gets "did you mean" from it, a
//! destructive command without `--yes` is refused by it), `help` answers from it, and the
//! CLI prints `troupe admin --help` and the console's help from it, so a command added here
//! is listed everywhere at once. Pure data and functions, no I/O.

use serde::Serialize;

/// What must be attached to the Admin actor for a command to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// The node itself: always there.
    Node,
    /// The storage engine (`Admin::with_storage`).
    Storage,
    /// Membership (`Admin::with_membership`).
    Membership,
    /// Membership, and the node started with `--enable-fault-injection`.
    FaultInjection,
    /// The replication coordinator (`Admin::with_coordinator`).
    Coordinator,
    /// The AntiEntropy actor (`Admin::with_antientropy`).
    AntiEntropy,
    /// The HintedHandoff actor (`Admin::with_hints`).
    Hints,
    /// The Handoff actor: partition transfers (`Admin::with_transfers`).
    Transfers,
}

/// One admin command.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spec {
    pub name: &'static str,
    /// The command line, e.g. `preflist KEY`.
    pub usage: &'static str,
    pub summary: &'static str,
    /// Stops or changes the node in a way an operator must confirm with `--yes`.
    pub destructive: bool,
    #[serde(skip)]
    pub needs: Needs,
}

const fn cmd(name: &'static str, usage: &'static str, summary: &'static str, needs: Needs) -> Spec {
    Spec {
        name,
        usage,
        summary,
        destructive: false,
        needs,
    }
}

const fn destructive(spec: Spec) -> Spec {
    Spec {
        destructive: true,
        ..spec
    }
}

/// Every admin command, in the order help lists them.
pub const COMMANDS: &[Spec] = &[
    cmd(
        "status",
        "status",
        "node id, version, uptime, addresses, health, log level, failing background work",
        Needs::Node,
    ),
    cmd(
        "actors",
        "actors",
        "every actor: instances, mailbox depth, messages handled, errors",
        Needs::Node,
    ),
    cmd(
        "stats",
        "stats",
        "storage: tables and bytes per level, flushes, compactions, block cache",
        Needs::Storage,
    ),
    cmd(
        "members",
        "members",
        "cluster members, their addresses and status",
        Needs::Membership,
    ),
    cmd(
        "ring",
        "ring",
        "ring members, each one's share of the partitions, the table digest",
        Needs::Coordinator,
    ),
    cmd(
        "preflist",
        "preflist KEY",
        "a key's partition, primaries and fallbacks, which are up",
        Needs::Coordinator,
    ),
    cmd(
        "object",
        "object KEY",
        "this replica's copy of a key: clock, siblings, delete markers",
        Needs::Coordinator,
    ),
    cmd(
        "repair",
        "repair [PARTITION|status]",
        "run an anti-entropy round now (every partition held, or one); `status`: its progress",
        Needs::AntiEntropy,
    ),
    cmd(
        "hints",
        "hints",
        "hints kept for down primaries: per primary count, bytes, oldest, delivery rate",
        Needs::Hints,
    ),
    cmd("sync", "sync", "fsync the write-ahead log now", Needs::Node),
    cmd(
        "flush",
        "flush",
        "seal the memtable and write it to a table now",
        Needs::Storage,
    ),
    cmd(
        "compact",
        "compact",
        "compact every level now; answers when done",
        Needs::Storage,
    ),
    cmd(
        "gc",
        "gc",
        "delete table files no longer referenced now",
        Needs::Storage,
    ),
    cmd(
        "log-level",
        "log-level [LEVEL]",
        "show or set the log level at run time: error, warn, info, debug, trace or off",
        Needs::Node,
    ),
    cmd(
        "transfers",
        "transfers",
        "partition transfers into this node: source, partitions, keys and bytes done, rate, ETA; the ring's transition",
        Needs::Transfers,
    ),
    destructive(cmd(
        "leave",
        "leave --yes",
        "hand this node's partitions to the others, then depart (status left)",
        Needs::Transfers,
    )),
    destructive(cmd(
        "remove",
        "remove NODE --yes",
        "declare a dead member gone for good: the survivors copy its partitions to new owners",
        Needs::Membership,
    )),
    destructive(cmd(
        "fault",
        "fault drop all|NODE [in|out]|loss FRACTION|heal|status --yes",
        "drop peer traffic, both ways or one (test clusters; needs --enable-fault-injection)",
        Needs::FaultInjection,
    )),
    cmd(
        "help",
        "help [COMMAND]",
        "this list, or one command's usage",
        Needs::Node,
    ),
];

/// The command named `name`.
pub fn find(name: &str) -> Option<&'static Spec> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// Edit distance counting insertions, deletions, substitutions and swaps of two neighbours
/// (optimal string alignment), on bytes: command names are ASCII.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    // d[i][j]: distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j - 1] + cost)
                .min(d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The closest command name, if it is close enough to be what was meant: one edit for a
/// word of up to four letters, else a third of its letters (two or three edits). Ties go
/// to the name whose length is closest (`stauts` is `status`, not `stats`).
pub fn suggest(word: &str) -> Option<&'static str> {
    let limit = if word.len() <= 4 {
        1
    } else {
        (word.len() / 3).clamp(2, 3)
    };
    COMMANDS
        .iter()
        .map(|c| {
            let d = edit_distance(word, c.name);
            (d, word.len().abs_diff(c.name.len()), c.name)
        })
        .filter(|(d, _, _)| *d <= limit)
        .min()
        .map(|(_, _, name)| name)
}

/// The answer to an unknown command.
pub fn unknown(word: &str) -> String {
    let hint = "`troupe admin help` (or `help` in the console) lists every command";
    match suggest(word) {
        Some(name) => format!("unknown admin command {word:?}; did you mean {name}? {hint}"),
        None => format!("unknown admin command {word:?}; {hint}"),
    }
}

/// One line per command: usage padded to a column, then the summary.
pub fn listing() -> String {
    let width = COMMANDS.iter().map(|c| c.usage.len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in COMMANDS {
        let usage = c.usage;
        out.push_str(&format!("  {usage:<width$}  {}\n", c.summary));
    }
    out
}

/// `help CMD`: its usage, summary and what it needs.
pub fn usage(spec: &Spec) -> String {
    let mut out = format!("usage: {}\n  {}\n", spec.usage, spec.summary);
    if spec.destructive {
        out.push_str("  destructive: refused without --yes\n");
    }
    match spec.needs {
        Needs::FaultInjection => {
            out.push_str("  only on a node started with --enable-fault-injection\n")
        }
        Needs::Coordinator => out.push_str("  needs replication (every node runs it)\n"),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("status", "status"), 0);
        assert_eq!(edit_distance("stauts", "status"), 1, "a swap is one edit");
        assert_eq!(edit_distance("stauts", "stats"), 1);
        assert_eq!(edit_distance("statu", "status"), 1);
        assert_eq!(edit_distance("", "gc"), 2);
        assert_eq!(edit_distance("memebrs", "members"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn typos_suggest_the_command_and_nonsense_suggests_nothing() {
        assert_eq!(suggest("stauts"), Some("status"));
        assert_eq!(suggest("membres"), Some("members"));
        assert_eq!(suggest("actor"), Some("actors"));
        assert_eq!(suggest("loglevel"), Some("log-level"));
        assert_eq!(suggest("frobnicate"), None);
        assert_eq!(suggest("x"), None);
        assert!(unknown("stauts").contains("did you mean status?"));
        assert!(unknown("frobnicate").contains("admin help"));
    }

    #[test]
    fn names_are_unique_and_usages_start_with_the_name() {
        for (i, c) in COMMANDS.iter().enumerate() {
            assert!(c.usage.starts_with(c.name), "{c:?}");
            assert!(COMMANDS[..i].iter().all(|o| o.name != c.name), "{c:?}");
        }
        assert!(listing().lines().count() == COMMANDS.len());
    }
}
