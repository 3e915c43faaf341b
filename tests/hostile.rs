//! A hostile peer on the embedded kernel: another process (played here
//! through the port's public raw pointers) writes forged values into the
//! shared region, and safe code must answer with an error or carry on, never
//! crash, abort, hang or lie.
//!
//! Each scenario runs in a child process (this test binary, re-executed for
//! that one test), so a crash or an abort fails the scenario instead of
//! killing the run, and a hang fails it after [`PATIENCE`].

#[path = "support/fork.rs"]
mod fork;
#[path = "support/packets.rs"]
mod packets;

use std::process::Command;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use netmap_rs::ffi::{self, netmap_ring, netmap_slot};
use netmap_rs::prelude::*;
use packets::pair;

/// How long a scenario may run before it counts as hung.
const PATIENCE: Duration = Duration::from_secs(60);
/// Set in the child: the scenario to run.
const SCENARIO: &str = "NETMAP_RS_HOSTILE_SCENARIO";

/// Runs `body` in a child process as test `name`; fails if the child fails,
/// dies of a signal or outlives [`PATIENCE`].
fn isolated(name: &str, body: fn()) {
    if std::env::var(SCENARIO).as_deref() == Ok(name) {
        body();
        return;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(exe)
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(SCENARIO, name)
        .spawn()
        .expect("re-run the test binary");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the scenario") {
            break status;
        }
        if start.elapsed() > PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name}: hung for {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        status.success(),
        "{name}: the scenario failed or crashed: {status}"
    );
}

/// The `index`th ring of `dir` (0 TX, 1 RX) of `port`, as C would find it.
fn ring_of(port: &Netmap, dir: usize, index: usize) -> *mut netmap_ring {
    let nifp = port.raw_if().as_ptr();
    // SAFETY: the port's netmap_if, with the ring counts the embedded kernel
    // wrote; `index` is a bound ring. (This is the peer's view, which reads
    // the counts; the crate reads them once at open.)
    unsafe {
        if dir == 0 {
            ffi::NETMAP_TXRING(nifp, index)
        } else {
            ffi::NETMAP_RXRING(nifp, index)
        }
    }
}

/// Slot `i` of `ring`.
fn slot(ring: *mut netmap_ring, i: u32) -> *mut netmap_slot {
    // SAFETY: the caller passes `i` below the ring's slot count; the slots
    // follow the 256-byte header.
    unsafe {
        ring.cast::<u8>()
            .add(size_of::<netmap_ring>())
            .cast::<netmap_slot>()
            .add(i as usize)
    }
}

/// Writes `v` into the shared region at `p`, as a peer process would.
fn poke<T>(p: *mut T, v: T) {
    // SAFETY: every caller passes an aligned field of a live port's region;
    // the crate reads such fields only through raw pointers and atomics.
    unsafe { ptr::write_volatile(p, v) }
}

#[test]
fn forged_netmap_if_counts_after_open_change_nothing() {
    isolated("forged_netmap_if_counts_after_open_change_nothing", || {
        let (a, b) = pair("hostilecounts", 64);
        let nifp = b.raw_if().as_ptr();
        // SAFETY: fields of b's live netmap_if.
        unsafe {
            poke(ptr::addr_of_mut!((*nifp).ni_tx_rings), u32::MAX);
            poke(ptr::addr_of_mut!((*nifp).ni_host_tx_rings), u32::MAX);
            poke(ptr::addr_of_mut!((*nifp).ni_rx_rings), 0);
        }
        let mut tx = a.tx_ring(0).unwrap();
        tx.send(b"counted once").unwrap();
        tx.sync().unwrap();
        let mut rx = b.rx_ring(0).unwrap();
        assert_eq!(rx.sync().unwrap(), 1);
        assert_eq!(rx.recv().unwrap().payload(), b"counted once");
    });
}

#[test]
fn forged_ring_constants_after_open_change_nothing() {
    isolated("forged_ring_constants_after_open_change_nothing", || {
        let (a, b) = pair("hostileconsts", 64);
        let r = ring_of(&b, 1, 0);
        // SAFETY: fields of b's live RX ring header.
        unsafe {
            poke(ptr::addr_of_mut!((*r).num_slots), u32::MAX);
            poke(ptr::addr_of_mut!((*r).nr_buf_size), u32::MAX);
            poke(ptr::addr_of_mut!((*r).buf_ofs), i64::MIN);
        }
        // A multi-slot packet, so that scratch memory would be sized from
        // the forged header if it were read again.
        let big: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let mut tx = a.tx_ring(0).unwrap();
        tx.send(&big).unwrap();
        tx.sync().unwrap();
        let mut rx = b.rx_ring(0).unwrap();
        assert_eq!(rx.num_slots(), 64);
        assert_eq!(rx.sync().unwrap(), 3);
        assert_eq!(rx.recv().unwrap().payload(), &big[..]);
    });
}

#[test]
fn a_corrupt_buffer_index_is_skipped_and_drain_rx_returns() {
    isolated("a_corrupt_buffer_index_is_skipped_and_drain_rx_returns", || {
        let (a, b) = pair("hostilebufidx", 64);
        let mut tx = a.tx_ring(0).unwrap();
        for p in [&b"first"[..], b"second", b"third"] {
            tx.send(p).unwrap();
        }
        tx.sync().unwrap();
        b.rxsync().unwrap();
        // The peer points the second packet's slot outside the region.
        let r = ring_of(&b, 1, 0);
        // SAFETY: slot 1 of b's RX ring, which holds the second packet.
        unsafe { poke(ptr::addr_of_mut!((*slot(r, 1)).buf_idx), u32::MAX) };
        let mut got = Vec::new();
        let first = b.drain_rx(|f| got.push(f.to_vec()));
        assert!(matches!(first, Err(Error::RingCorrupt { .. })), "{first:?}");
        assert_eq!(got, [b"first".to_vec(), b"third".to_vec()]);
        // Reported once; the ring goes on.
        tx.send(b"fourth").unwrap();
        tx.sync().unwrap();
        let mut more = Vec::new();
        assert_eq!(b.drain_rx(|f| more.push(f.to_vec())).unwrap(), 1);
        assert_eq!(more, [b"fourth".to_vec()]);
    });
}

#[test]
fn a_forged_length_is_clamped_to_the_buffer() {
    isolated("a_forged_length_is_clamped_to_the_buffer", || {
        let (a, b) = pair("hostilelen", 64);
        let mut tx = a.tx_ring(0).unwrap();
        tx.send(b"short").unwrap();
        tx.sync().unwrap();
        let mut rx = b.rx_ring(0).unwrap();
        rx.sync().unwrap();
        let r = ring_of(&b, 1, 0);
        // SAFETY: slot 0 of b's RX ring, which holds the packet.
        unsafe { poke(ptr::addr_of_mut!((*slot(r, 0)).len), u16::MAX) };
        assert_eq!(rx.recv().unwrap().len(), rx.buf_size());
    });
}

#[test]
fn a_forged_head_is_an_error() {
    isolated("a_forged_head_is_an_error", || {
        let (a, _b) = pair("hostilehead", 64);
        let r = ring_of(&a, 0, 0);
        // SAFETY: the head word of a's TX ring.
        unsafe { poke(ptr::addr_of_mut!((*r).head), 1000) };
        assert!(matches!(a.tx_ring(0), Err(Error::RingCorrupt { .. })));
        // SAFETY: as above.
        unsafe { poke(ptr::addr_of_mut!((*r).head), 0) };
        a.tx_ring(0).unwrap().send(b"after").unwrap();
    });
}

#[test]
fn a_tail_forged_while_syncing_is_refused_never_trusted() {
    isolated("a_tail_forged_while_syncing_is_refused_never_trusted", || {
        let (a, _b) = pair("hostiletail", 64);
        let mut tx = a.tx_ring(0).unwrap();
        // A peer thread stores a tail past the ring's end, over and over,
        // racing the embedded kernel, which rewrites it at every sync.
        let r = ring_of(&a, 0, 0);
        // SAFETY: `r` is a's live TX ring; this only computes a field address.
        let tail = unsafe { ptr::addr_of_mut!((*r).tail) } as usize;
        let stop = Arc::new(AtomicBool::new(false));
        let peer = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                // SAFETY: the tail word of a's TX ring, aligned, live until
                // `a` drops, after this thread is joined; stored atomically,
                // as the kernel side does.
                let tail = unsafe { AtomicU32::from_ptr(tail as *mut u32) };
                while !stop.load(Ordering::Relaxed) {
                    tail.store(u32::MAX, Ordering::Relaxed);
                }
            })
        };
        let start = Instant::now();
        let mut refused = 0u32;
        while refused == 0 && start.elapsed() < Duration::from_secs(20) {
            match tx.sync() {
                Ok(()) => assert!(tx.space() < 64, "space {} of 64 slots", tx.space()),
                Err(Error::RingCorrupt { .. }) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        stop.store(true, Ordering::Relaxed);
        peer.join().unwrap();
        assert!(refused > 0, "the forged tail was never seen");
        tx.sync().unwrap();
        tx.send(b"after").unwrap();
    });
}

#[test]
fn a_forked_child_gets_errors_and_the_parent_keeps_its_rings() {
    isolated(
        "a_forked_child_gets_errors_and_the_parent_keeps_its_rings",
        || {
            let (a, b) = pair("hostilefork", 64);
            let mut tx = Some(a.tx_ring(0).unwrap());
            tx.as_mut().unwrap().send(b"before").unwrap();
            let mut ports = Some((&a, &b));
            // This scenario process runs one thread.
            fork::in_child(|| {
                // An inherited ring handle writes its own memory; every call
                // that would reach the rings refuses. Then the child drops
                // its copies of the handle and the ports (the parent's stay).
                let (a, b) = ports.take().unwrap();
                let mut tx = tx.take().unwrap();
                tx.send(b"from the child").is_ok()
                    && matches!(tx.sync(), Err(Error::Forked { .. }))
                    && matches!(b.rx_ring(0), Err(Error::Forked { .. }))
                    && matches!(a.poll(Some(Duration::ZERO)), Err(Error::Forked { .. }))
                    && matches!(a.inject(b"x"), Err(Error::Forked { .. }))
            });
            let mut tx = tx.unwrap();
            tx.send(b"after").unwrap();
            tx.sync().unwrap();
            let mut got = Vec::new();
            b.drain_rx(|f| got.push(f.to_vec())).unwrap();
            assert_eq!(got, [b"before".to_vec(), b"after".to_vec()]);
        },
    );
}
