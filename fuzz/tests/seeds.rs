//! Every harness over every seed, on a stable toolchain: the targets' code builds, the
//! seeds are what their harnesses expect (each target gets some), and the checks the fuzzer
//! relies on hold for the real encoders' output. `cargo test --manifest-path fuzz/Cargo.toml`.

use troupe_fuzz::seeds::{all, TARGETS};

fn run(target: &str, data: &[u8]) {
    match target {
        "client_frame" => troupe_fuzz::client_frame::run(data),
        "peer_msg" => troupe_fuzz::peer_msg::run(data),
        "object" => troupe_fuzz::object::run(data),
        "wal" => troupe_fuzz::wal::run(data),
        "sstable" => troupe_fuzz::sstable::run(data),
        other => panic!("no target {other}"),
    }
}

#[test]
fn every_harness_accepts_its_seeds() {
    let seeds = all();
    for t in TARGETS {
        assert!(
            seeds.iter().filter(|s| s.0 == t).count() >= 3,
            "{t}: few seeds"
        );
    }
    for (target, name, bytes) in &seeds {
        run(target, bytes);
        // And every prefix of it, as a cheap stand-in for the fuzzer's truncations.
        for cut in (0..bytes.len()).step_by(7) {
            run(target, &bytes[..cut]);
        }
        let _ = name;
    }
}

#[test]
fn the_golden_frames_are_seeds() {
    let golden = troupe_fuzz::seeds::protocol_md_blocks("golden");
    assert!(
        golden.len() >= 10,
        "PROTOCOL.md golden blocks: {}",
        golden.len()
    );
}
