//! The region's lock across processes: a holder killed while it holds it
//! does not wedge the others, and syncs with nothing to do do not take it.

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

#[test]
fn a_sync_with_nothing_to_do_leaves_the_lock_alone() {
    let name = format!("idle{}", std::process::id());
    let m = open(&format!("{name}{{1"));
    let s = open(&format!("{name}}}1"));
    let region = lock(&emu().registry).region(&name).unwrap();
    let hold = Duration::from_millis(600);
    let holding = |f: &dyn Fn()| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|sc| {
            sc.spawn(|| {
                let _g = region.lock().unwrap();
                tx.send(()).unwrap();
                std::thread::sleep(hold);
            });
            rx.recv().unwrap();
            let t = Instant::now();
            f();
            t.elapsed()
        })
    };
    // Nothing arrived and nothing was released: neither sync waits.
    let took = holding(&|| {
        s.sync(SyncDir::Rx);
        m.sync(SyncDir::Tx);
    });
    assert!(took < hold / 2, "idle syncs waited {took:?} for the lock");
    // A packet waiting is work: the rxsync waits for the holder, then
    // delivers it.
    assert!(m.tx(0).send(b"p", 0));
    m.sync(SyncDir::Tx);
    let took = holding(&|| s.sync(SyncDir::Rx));
    assert!(took >= hold / 2, "an rxsync with a packet waiting took {took:?}");
    assert_eq!(s.rx(0).recv().unwrap().0, b"p");
    // So is a released slot.
    let took = holding(&|| s.sync(SyncDir::Rx));
    assert!(took >= hold / 2, "an rxsync releasing a slot took {took:?}");
    assert!(!s.readable_now(), "the releasing rxsync drained the FIFO");
}
