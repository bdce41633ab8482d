//! The console driven through a pseudo-terminal, as an operator types or pastes into it
//! (issue 14): every pasted line runs, and a node restart is survived by reconnecting.

use crate::harness::{NodeProc, BIN};
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A console process on the slave side of a pty; output read from the master by a thread.
struct Console {
    child: Child,
    master: std::fs::File,
    output: mpsc::Receiver<Vec<u8>>,
    seen: String,
}

impl Console {
    fn start(addr: &str, home: &std::path::Path) -> Console {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two fds into the given ints; the null pointers mean no name,
        // default termios and window size.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both fds were just returned by openpty and are owned by nobody else.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let mut cmd = Command::new(BIN);
        cmd.args(["console", "--addr", addr])
            .env("HOME", home)
            .env("TERM", "xterm")
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        let child = cmd.spawn().expect("spawning the console");
        let master = std::fs::File::from(master);
        let mut reader = master.try_clone().unwrap();
        let (tx, output) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once the console exits and the slave side closes.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
        Console {
            child,
            master,
            output,
            seen: String::new(),
        }
    }

    fn send(&mut self, bytes: &str) {
        self.master.write_all(bytes.as_bytes()).unwrap();
        self.master.flush().unwrap();
    }

    /// Reads output until `pred` holds on everything seen since the last `expect`; the
    /// deadline is a hang guard, not a speed bound.
    fn expect(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if pred(&self.seen) {
                return std::mem::take(&mut self.seen);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(chunk) => self.seen.push_str(&String::from_utf8_lossy(&chunk)),
                Err(_) => panic!("console never showed {what}; output:\n{}", self.seen),
            }
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn pasted_lines_all_run() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&dir.path().join("d"), &[]);
    let mut console = Console::start(&node.admin, dir.path());
    console.expect("the greeting", |s| {
        s.contains("connected to node test-node")
    });

    // Typed ahead / pasted without bracketed-paste markers: four lines in one write.
    console.send("status\nactors\nmembers\nhelp sync\n");
    let out = console.expect("the answer to the fourth line", |s| {
        s.contains("usage: sync")
    });
    assert!(out.contains("node_id"), "{out}");
    assert!(out.contains("memtable"), "{out}");
    assert!(out.contains("alive"), "{out}");

    // A bracketed paste (what a terminal sends for a multi-line paste).
    console.send("\x1b[200~ring\nhelp gc\x1b[201~\n");
    let out = console.expect("the answer to the pasted second line", |s| {
        s.contains("usage: gc")
    });
    assert!(out.contains("digest"), "{out}");

    console.send("quit\n");
    assert!(console.child.wait().unwrap().success());
}

#[test]
fn reconnects_after_the_node_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProc::start(&dir.path().join("d"), &[]);
    let mut console = Console::start(&node.admin, dir.path());
    console.expect("the greeting", |s| {
        s.contains("connected to node test-node")
    });

    node.kill();
    console.send("status\n");
    console.expect("the node-down answer", |s| s.contains("not connected:"));

    node.restart();
    // The client port listens before the admin actor answers: wait for an admin answer.
    assert_eq!(node.cli(&["admin", "status"]).0, 0, "{}", node.log_text());
    console.send("status\n");
    let out = console.expect("the status after reconnecting", |s| s.contains("node_id"));
    assert!(out.contains("reconnected"), "{out}");

    console.send("quit\n");
    assert!(console.child.wait().unwrap().success());
}
