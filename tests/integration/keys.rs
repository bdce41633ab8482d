//! Key listing against a model, three real nodes: 20,000 keys with random prefixes, a third
//! of them deleted, read back in pages of 137 through
//! different nodes for several prefixes: exactly the live keys with the prefix, in order,
//! no duplicates across pages.

use crate::cluster::{agreed_ring, start};
use crate::harness::{rt_mt, Rng};
use std::collections::BTreeSet;
use std::sync::Arc;
use troupe_protocol::Client;

#[test]
fn pages_of_keys_match_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![(
        "TROUPE__CLUSTER__LAYOUT_GOSSIP_INTERVAL",
        "200ms".to_string(),
    )];
    let n1 = start(dir.path(), "n1", None, &env);
    let n2 = start(dir.path(), "n2", Some(&n1.peer), &env);
    let n3 = start(dir.path(), "n3", Some(&n1.peer), &env);
    let nodes = [&n1, &n2, &n3];
    agreed_ring(&nodes, 3);
    let rt = rt_mt();
    let clients: Vec<Arc<Client>> = nodes
        .iter()
        .map(|n| {
            Arc::new(
                rt.block_on(Client::connect(n.client.as_str(), "keys"))
                    .unwrap(),
            )
        })
        .collect();

    let mut rng = Rng::from_env("keys");
    let prefixes = ["a/", "b/", "ab/", "z"];
    let all: Vec<String> = (0..20_000)
        .map(|i| {
            format!(
                "{}{:08x}",
                prefixes[(rng.next() % 4) as usize],
                i * 7919 % 1_000_003
            )
        })
        .collect();
    let deleted: BTreeSet<String> = all
        .iter()
        .filter(|_| rng.next().is_multiple_of(3))
        .cloned()
        .collect();
    rt.block_on(async {
        // 64 writers in parallel, each its share of the keys.
        let tasks: Vec<_> = (0..64)
            .map(|w| {
                let c = clients[w % 3].clone();
                let mine: Vec<String> = all.iter().skip(w).step_by(64).cloned().collect();
                let del = deleted.clone();
                tokio::spawn(async move {
                    for k in mine {
                        let ctx = c.put(k.as_bytes(), b"v", None).await.expect("put");
                        if del.contains(&k) {
                            c.delete(k.as_bytes(), Some(ctx)).await.expect("delete");
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let live: BTreeSet<&String> = all.iter().filter(|k| !deleted.contains(*k)).collect();

    for (i, prefix) in ["", "a/", "ab/", "z"].iter().enumerate() {
        let expected: Vec<&String> = live
            .iter()
            .filter(|k| k.starts_with(prefix))
            .copied()
            .collect();
        let mut got: Vec<String> = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        let mut page = 0;
        loop {
            // Each page through the next node.
            let c = &clients[(i + page) % 3];
            let (keys, cursor) = rt
                .block_on(c.keys(Some(prefix.as_bytes()), Some(137), after.as_deref()))
                .expect("keys");
            assert!(keys.len() <= 137);
            got.extend(keys.into_iter().map(|k| String::from_utf8(k).unwrap()));
            page += 1;
            match cursor {
                Some(c) => after = Some(c),
                None => break,
            }
            assert!(page < 2000, "listing does not end");
        }
        let sorted_unique: Vec<String> = got
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(
            got, sorted_unique,
            "prefix {prefix:?}: in order, no duplicates"
        );
        let expected: Vec<String> = expected.into_iter().cloned().collect();
        assert_eq!(got.len(), expected.len(), "prefix {prefix:?}: {page} pages");
        assert_eq!(got, expected, "prefix {prefix:?}");
    }
    // A bad limit is refused before anything runs.
    let e = rt
        .block_on(clients[0].keys(None, Some(10_001), None))
        .unwrap_err();
    assert!(e.to_string().contains("limit must be 1 to 10000"), "{e}");
}

/// `troupe keys` pages through everything (here with pages of 2), hides deleted keys, takes
/// a prefix and `--limit`, and prints `--json`.
#[test]
fn the_keys_command_lists_live_keys() {
    let dir = tempfile::tempdir().unwrap();
    let node = crate::harness::NodeProc::start(dir.path(), &[]);
    for k in ["a1", "a2", "b1", "a3", "c"] {
        let (code, _, err) = node.cli(&["put", k, "v"]);
        assert_eq!(code, 0, "{err}");
    }
    let (code, _, err) = node.cli(&["del", "a2"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = node.cli(&["keys", "--page", "2"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "a1\na3\nb1\nc\n");
    let (_, out, _) = node.cli(&["keys", "a", "--page", "2"]);
    assert_eq!(out, "a1\na3\n");
    let (_, out, _) = node.cli(&["keys", "--limit", "3", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["count"], 3, "{v}");
    assert_eq!(v["keys"], serde_json::json!(["a1", "a3", "b1"]));
}
