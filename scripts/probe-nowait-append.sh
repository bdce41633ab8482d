#!/usr/bin/env bash
# Can a WAL append be submitted from an event loop without blocking it, on this machine's
# file system? The WAL writer thread exists because the rules keep blocking disk I/O off
# the actors' event loops; a relaxed-mode append only needs write(2) into the page cache,
# so an append the kernel promises never to block on would let the loop skip the thread
# hop (docs/BENCHMARKS.md, issue 17). Probes, on a file in DIR (default: the repository's
# target/), written over zeros already in it, as the WAL writes over the zeros it
# preallocates:
#  1. pwritev2(RWF_NOWAIT) of a buffered 4 KiB write: done, EAGAIN (it would have blocked
#     this time) or EOPNOTSUPP (not supported for such writes).
#  2. io_uring: 2,000 buffered 300-byte writes, each submitted alone; counts those whose
#     completion was already posted when io_uring_enter returned (done inline on the
#     submitting thread, or by a kernel worker that quick) against those that had to be
#     waited for, and lists the process's threads: an `iou-wrk-*` thread is the kernel
#     worker writes were handed to, a thread hop like the WAL writer's.
# Needs python3, and cargo with crates.io (for the io-uring crate, built in a temporary
# directory). Usage: bash scripts/probe-nowait-append.sh [DIR]
set -euo pipefail
dir=$(realpath -m "${1:-$(dirname "$0")/../target}")
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"; rm -f "$dir/probe-nowait.tmp"' EXIT
echo "kernel $(uname -r); file system of $dir: $(df -T "$dir" | awk 'NR==2 {print $2}')"

python3 - "$dir/probe-nowait.tmp" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, bytes(1 << 20))  # zeros, as the WAL preallocates
try:
    n = os.pwritev(fd, [b"x" * 4096], 0, os.RWF_NOWAIT)
    print(f"pwritev2 RWF_NOWAIT, buffered: supported (wrote {n} bytes)")
except OSError as e:
    print(f"pwritev2 RWF_NOWAIT, buffered: {e.strerror} (errno {e.errno})")
finally:
    os.close(fd)
PY

mkdir -p "$work/src"
cat >"$work/Cargo.toml" <<'EOF'
[package]
name = "probe-nowait-append"
version = "0.1.0"
edition = "2021"
[dependencies]
io-uring = "0.7"
EOF
cat >"$work/src/main.rs" <<'EOF'
use io_uring::{opcode, types, IoUring};
use std::os::unix::io::AsRawFd;

fn main() {
    let path = std::env::args().nth(1).expect("a file path");
    // Zeros first, as the WAL preallocates: the probe writes over them.
    std::fs::write(&path, vec![0u8; 2000 * 300]).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let mut ring = match IoUring::new(8) {
        Ok(r) => r,
        Err(e) => {
            println!("io_uring: not available here ({e})");
            return;
        }
    };
    let buf = vec![7u8; 300];
    let (mut inline, mut waited) = (0, 0);
    for i in 0..2000u64 {
        let write = opcode::Write::new(types::Fd(f.as_raw_fd()), buf.as_ptr(), buf.len() as u32)
            .offset(i * 300)
            .build()
            .user_data(i);
        // SAFETY: `buf` outlives the write, which completes before the next iteration.
        unsafe { ring.submission().push(&write).unwrap() };
        ring.submit().unwrap();
        let done = ring.completion().next();
        let c = match done {
            Some(c) => {
                inline += 1;
                c
            }
            None => {
                ring.submit_and_wait(1).unwrap();
                waited += 1;
                ring.completion().next().unwrap()
            }
        };
        assert_eq!(c.result(), 300, "write {i}");
    }
    // Each thread's voluntary context switches (sleeps): the submitting thread sleeps once
    // per write it waited for; a kernel worker sleeps whenever it runs out of writes.
    let mut threads = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").unwrap() {
        let t = t.unwrap().path();
        let comm = std::fs::read_to_string(t.join("comm")).unwrap().trim().to_string();
        let status = std::fs::read_to_string(t.join("status")).unwrap();
        let switches = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .map_or(0, |v| v.trim().parse::<u64>().unwrap());
        threads.push(format!("{comm} ({switches} voluntary switches)"));
    }
    println!("io_uring buffered writes: {inline} complete when submit returned, {waited} waited for; threads: {}", threads.join(", "));
}
EOF
(cd "$work" && cargo build --release --quiet --target-dir "$work/target")
"$work/target/release/probe-nowait-append" "$dir/probe-nowait.tmp"
