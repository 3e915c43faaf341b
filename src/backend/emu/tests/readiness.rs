//! Readiness: the eventfd's edges and levels, and `poll`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::client::*;
use crate::backend::sys::Deadline;
use crate::backend::SyncDir;
use crate::ffi::NR_NO_TX_POLL;

#[test]
fn eventfd_is_readable_while_packets_are_unseen() {
    let m = open_slots("efd{1", 8);
    let s = open("efd}1");
    assert!(!s.readable_now());
    assert!(m.tx(0).send(b"x", 0));
    assert!(!s.readable_now(), "nothing before the txsync");
    m.sync(SyncDir::Tx);
    assert!(s.readable_now(), "readable after the peer's txsync");
    assert!(!m.readable_now(), "the sender is not readable");
    s.sync(SyncDir::Rx);
    assert!(s.readable_now(), "cur short of tail: still unseen");
    assert!(s.rx(0).recv().is_some());
    s.sync(SyncDir::Rx);
    assert!(!s.readable_now(), "drained once everything was seen");
    // A slave that binds a ring with queued packets starts readable.
    assert!(m.tx(0).send(b"y", 0));
    m.sync(SyncDir::Tx);
    drop(s);
    let s = open("efd}1");
    assert!(s.readable_now());
    assert_eq!(s.fd.poll(libc::POLLIN, ms(0)).unwrap(), libc::POLLIN);
    assert_eq!(s.rx(0).recv().unwrap().0, b"y");
}

#[test]
fn eventfd_gives_writable_edges() {
    let m = open_slots("edge{1", 4);
    let s = open("edge}1");
    let ep = Epoll::new(m.fd.as_fd());
    let wait = || ep.wait(0);
    assert_eq!(wait(), libc::EPOLLOUT as u32, "initially writable");
    assert_eq!(wait(), 0, "edge-triggered");
    // Fill the master's ring: no new edge.
    while m.tx(0).send(b"z", 0) {}
    m.sync(SyncDir::Tx);
    assert_eq!(wait(), 0);
    // The slave releases: the master gets a writable edge, not readable.
    s.sync(SyncDir::Rx);
    while s.rx(0).recv().is_some() {}
    s.sync(SyncDir::Rx);
    assert_eq!(wait(), libc::EPOLLOUT as u32);
    assert!(!m.readable_now());
    // With packets waiting for the master, the edge keeps it readable.
    assert!(s.tx(0).send(b"back", 0));
    s.sync(SyncDir::Tx);
    assert_ne!(wait() & libc::EPOLLIN as u32, 0);
    m.sync(SyncDir::Tx);
    while m.tx(0).send(b"z", 0) {}
    m.sync(SyncDir::Tx);
    s.sync(SyncDir::Rx);
    while s.rx(0).recv().is_some() {}
    s.sync(SyncDir::Rx);
    assert_ne!(wait() & libc::EPOLLOUT as u32, 0);
    assert!(m.readable_now(), "still holds an unseen packet");
}

#[test]
fn poll_reports_rings_and_times_out() {
    let m = open_slots("poll{1", 4);
    let s = open("poll}1");
    let both = libc::POLLIN | libc::POLLOUT;
    assert_eq!(m.fd.poll(both, ms(0)).unwrap(), libc::POLLOUT);
    let t0 = Instant::now();
    assert_eq!(s.fd.poll(libc::POLLIN, ms(50)).unwrap(), 0);
    assert!(t0.elapsed() >= Duration::from_millis(45));
    // poll's txsync sends what is pending (no NR_NO_TX_POLL).
    assert!(m.tx(0).send(b"q", 0));
    assert_eq!(m.fd.poll(libc::POLLIN, ms(0)).unwrap(), 0);
    assert_eq!(s.fd.poll(both, ms(0)).unwrap(), both);
    // A full ring is not writable.
    while m.tx(0).send(b"q", 0) {}
    assert_eq!(m.fd.poll(libc::POLLOUT, ms(10)).unwrap(), 0);
}

#[test]
fn no_tx_poll_leaves_tx_rings_alone() {
    let m = open_with("ntp{1", |r| r.nr_flags = NR_NO_TX_POLL).unwrap();
    let s = open("ntp}1");
    assert!(m.tx(0).send(b"held", 0));
    assert_eq!(m.fd.poll(libc::POLLIN, ms(0)).unwrap(), 0);
    assert_eq!(s.fd.poll(libc::POLLIN, ms(0)).unwrap(), 0, "not sent by poll");
    assert_eq!(m.fd.poll(libc::POLLOUT, ms(0)).unwrap(), libc::POLLOUT);
    assert_eq!(s.fd.poll(libc::POLLIN, ms(0)).unwrap(), libc::POLLIN);
}

#[test]
fn poll_wakes_when_the_peer_sends_from_another_thread() {
    let m = open_slots("wake{1", 8);
    let s = open("wake}1");
    let sent = Arc::new(AtomicBool::new(false));
    let waiter = {
        let sent = Arc::clone(&sent);
        thread::spawn(move || {
            let ev = s.fd.poll(libc::POLLIN, Deadline::after(None)).unwrap();
            // The poll slept until the packet was sent (and its sender
            // set the flag before sending): it did not return early.
            (ev, sent.load(Ordering::SeqCst), s)
        })
    };
    thread::sleep(Duration::from_millis(50));
    sent.store(true, Ordering::SeqCst);
    assert!(m.tx(0).send(b"wake", 0));
    m.sync(SyncDir::Tx);
    let (ev, after_send, s) = waiter.join().unwrap();
    assert_eq!(ev, libc::POLLIN);
    assert!(after_send, "poll returned before the peer sent");
    assert_eq!(s.rx(0).recv().unwrap().0, b"wake");
}

#[test]
fn two_threads_stream_through_a_small_ring() {
    const N: u32 = 100_000;
    let m = open_slots("stream{1", 16);
    let s = open("stream}1");
    let rxer = thread::spawn(move || {
        let mut got = 0u32;
        while got < N {
            assert_ne!(s.fd.poll(libc::POLLIN, ms(5000)).unwrap(), 0, "stalled at {got}");
            while let Some((data, _)) = s.rx(0).recv() {
                assert_eq!(data, got.to_le_bytes());
                got += 1;
            }
        }
        s.sync(SyncDir::Rx);
    });
    let mut sent = 0u32;
    while sent < N {
        assert_ne!(
            m.fd.poll(libc::POLLOUT, ms(5000)).unwrap(),
            0,
            "stalled at {sent}"
        );
        while sent < N && m.tx(0).send(&sent.to_le_bytes(), 0) {
            sent += 1;
        }
        m.sync(SyncDir::Tx);
    }
    rxer.join().unwrap();
}

#[test]
fn edge_triggered_loops_never_stall() {
    const N: u32 = 50_000;
    let m = open_slots("etl{1", 8);
    let s = open("etl}1");
    let rxer = thread::spawn(move || {
        let ep = Epoll::new(s.fd.as_fd());
        let mut got = 0u32;
        loop {
            // Read until the ring is empty after a sync, then wait.
            s.sync(SyncDir::Rx);
            let mut any = false;
            while let Some((data, _)) = s.rx(0).recv() {
                assert_eq!(data, got.to_le_bytes());
                got += 1;
                any = true;
            }
            if got == N {
                s.sync(SyncDir::Rx);
                return;
            }
            if !any {
                assert!(ep.wait_for(libc::EPOLLIN as u32), "no readable edge at {got}");
            }
        }
    });
    let ep = Epoll::new(m.fd.as_fd());
    let tx = m.tx(0);
    let mut sent = 0u32;
    while sent < N {
        while sent < N && tx.send(&sent.to_le_bytes(), 0) {
            sent += 1;
        }
        m.sync(SyncDir::Tx);
        if tx.space() == 0 {
            assert!(ep.wait_for(libc::EPOLLOUT as u32), "no writable edge at {sent}");
        }
    }
    rxer.join().unwrap();
}
