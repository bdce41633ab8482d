//! `troupe check` end to end: one short seeded run per workload on three local nodes with
//! kills, pauses and partitions finds no violation (exit 0, a history and a plot written);
//! the saved history replays to the same verdict; and the same history with a planted lost
//! write (set), resurrection (register), counter out of bounds or session violation replays
//! to exit 4 naming it.

use crate::harness::BIN;
use serde_json::Value;
use std::process::Command;

fn check(args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(BIN)
        .arg("check")
        .args(args)
        .arg("--json")
        .output()
        .expect("running troupe check");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let v = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), v, stderr)
}

#[test]
fn every_workload_survives_faults_and_planted_bugs_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    for (i, workload) in ["set", "register", "counter", "session"].iter().enumerate() {
        let out = dir.path().join(workload);
        let seed = (i + 1).to_string();
        let (code, v, err) = check(&[
            "--local",
            "3",
            "--workload",
            workload,
            "--seed",
            &seed,
            "--duration",
            "6s",
            "--faults",
            "kill,pause,partition,split,oneway",
            "--fault-every",
            "1500ms",
            "--fault-for",
            "1s",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{workload}: {v} {err}");
        assert!(v["ops_ok"].as_u64().unwrap_or(0) > 0, "{workload}: {v}");
        assert!(out.join("latency.svg").exists());
        let history = out.join("history.json");
        let (code, again, _) = check(&["--replay", history.to_str().unwrap()]);
        assert_eq!(
            (code, &again),
            (0, &v),
            "{workload}: replay gives the same verdict"
        );

        // Plant a bug in the recorded history and replay it.
        let mut h: Value = serde_json::from_slice(&std::fs::read(&history).unwrap()).unwrap();
        let planted = match *workload {
            "register" => {
                // Bring back a value an acknowledged write replaced: a resurrection.
                let ops = h["ops"].as_array().unwrap().clone();
                let (key, back) = ops
                    .iter()
                    .filter(|o| o["kind"] == "put" && o["outcome"] == "ok")
                    .find_map(|o| {
                        let from = &ops[o["context_from"].as_u64()? as usize];
                        let v = from["values_returned"]
                            .as_array()?
                            .iter()
                            .find(|v| **v != o["value"])?;
                        Some((o["key"].clone(), v.clone()))
                    })
                    .expect("a write that replaced a value it had read");
                for f in h["final_reads"].as_array_mut().unwrap() {
                    if f["key"] == key {
                        let vals = f["values"].as_array_mut().unwrap();
                        vals.retain(|x| *x != back);
                        vals.push(back.clone());
                    }
                }
                "resurrected"
            }
            "set" => {
                // Drop an acknowledged value that the final read holds: a lost write.
                let finals = h["final_reads"].clone();
                let held = |o: &Value| {
                    finals.as_array().unwrap().iter().any(|f| {
                        f["key"] == o["key"]
                            && f["values"].as_array().unwrap().contains(&o["value"])
                    })
                };
                let acked = h["ops"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|o| o["outcome"] == "ok" && o["value"].is_string() && held(o))
                    .map(|o| (o["key"].clone(), o["value"].clone()))
                    .expect("an acknowledged write that was read back");
                for f in h["final_reads"].as_array_mut().unwrap() {
                    if f["key"] == acked.0 {
                        f["values"]
                            .as_array_mut()
                            .unwrap()
                            .retain(|x| *x != acked.1);
                    }
                }
                "lost"
            }
            "counter" => {
                h["final_reads"][0]["counter"] = Value::from(-1);
                "counter_violations"
            }
            _ => {
                // A read with `after` that returned an empty context: it covers nothing.
                let read = h["ops"]
                    .as_array_mut()
                    .unwrap()
                    .iter_mut()
                    .find(|o| {
                        o["kind"] == "get" && o["context_sent"].is_string() && o["outcome"] == "ok"
                    })
                    .expect("a read with after");
                read["context_returned"] = Value::from("c100");
                "session_violations"
            }
        };
        let bad = dir.path().join(format!("{workload}-planted.json"));
        std::fs::write(&bad, serde_json::to_vec(&h).unwrap()).unwrap();
        let (code, v, _) = check(&["--replay", bad.to_str().unwrap()]);
        assert_eq!(code, 4, "{workload}: the planted bug is a violation: {v}");
        assert_eq!(
            v[planted].as_array().map(Vec::len),
            Some(1),
            "{workload}: {planted} reported: {v}"
        );
    }
}
