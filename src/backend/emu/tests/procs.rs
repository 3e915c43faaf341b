//! The region's lock across processes: a holder killed while it holds it
//! does not wedge the others.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::super::emu;
use super::client::*;
use crate::backend::{lock, SyncDir};

/// Set in the child: the parent whose region it locks.
const CHILD: &str = "NETMAP_RS_EMU_LOCK_CHILD";

#[test]
fn a_lock_held_by_a_killed_process_is_taken_over() {
    if let Ok(parent) = std::env::var(CHILD) {
        // The child: open a port, take the lock, say so, and hold it.
        let _m = open(&format!("{parent}{{1"));
        let region = lock(&emu().registry).region(&parent).unwrap();
        let _g = region.lock().unwrap();
        println!("locked");
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    let parent = format!("lockkill{}", std::process::id());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "backend::emu::tests::procs::a_lock_held_by_a_killed_process_is_taken_over",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD, &parent)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    assert!(
        out.lines().map_while(Result::ok).any(|l| l.contains("locked")),
        "the child never took the lock"
    );
    // SAFETY: kill on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
    child.wait().unwrap();
    // Opening a port takes the lock: from the dead holder. The dead
    // child's end is free again, and the pipe works.
    let t = Instant::now();
    let m = open(&format!("{parent}{{1"));
    assert!(t.elapsed() < Duration::from_secs(2), "took {:?}", t.elapsed());
    let s = open(&format!("{parent}}}1"));
    assert!(m.tx(0).send(b"after", 0));
    m.sync(SyncDir::Tx);
    s.sync(SyncDir::Rx);
    assert_eq!(s.rx(0).recv().unwrap().0, b"after");
}
