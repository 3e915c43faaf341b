//! The data path: ring layout, syncs across ring pairs, the prologue check,
//! buffer swaps.

use std::collections::HashSet;
use std::ptr;
use std::sync::atomic::Ordering;

use super::super::region::REGION_SIZES;
use super::super::{BUF_SIZE, MAX_RINGS, MAX_SLOTS};
use super::client::*;
use crate::backend::kring::RING_TAIL;
use crate::backend::SyncDir;
use crate::ffi::{nmreq_register, NS_BUF_CHANGED, NS_MOREFRAG};

#[test]
fn layout_of_a_fresh_pipe() {
    let m = open_slots("lay{0", 8);
    let s = open("lay}0");
    assert_eq!(m.req.nr_tx_slots, 8);
    assert_eq!(s.req.nr_rx_slots, 8, "the slave uses the pair's config");
    assert_eq!((m.req.nr_tx_rings, m.req.nr_rx_rings), (1, 1));
    assert_eq!((m.req.nr_host_tx_rings, m.req.nr_host_rx_rings), (0, 0));
    assert_eq!(m.req.nr_mem_id, s.req.nr_mem_id);
    assert_ne!(m.req.nr_offset, s.req.nr_offset, "one netmap_if per handle");
    let nif = m.nifp();
    // SAFETY: constant fields of a live netmap_if.
    let (ntx, nrx, name) = unsafe {
        (
            ptr::addr_of!((*nif).ni_tx_rings).read(),
            ptr::addr_of!((*nif).ni_rx_rings).read(),
            ptr::addr_of!((*nif).ni_name).read(),
        )
    };
    assert_eq!((ntx, nrx), (1, 1));
    assert_eq!(
        name[..5].iter().map(|c| c.to_ne_bytes()[0]).collect::<Vec<_>>(),
        b"lay{0"
    );
    let (tx, rx) = (m.tx(0), s.rx(0));
    assert_eq!((tx.head(), tx.cur(), tx.tail()), (0, 0, 7));
    assert_eq!((rx.head(), rx.cur(), rx.tail()), (0, 0, 0));
    assert_eq!(tx.dir(), 0);
    assert_eq!(rx.dir(), 1);
    assert_eq!(tx.buf_size(), 2048);
    let mut seen = HashSet::new();
    for i in 0..8 {
        let (a, b) = (tx.get(i), rx.get(i));
        assert_eq!(a.buf_idx, b.buf_idx, "a ring pair shares its buffers");
        assert!(a.buf_idx >= 2 && a.len == 0);
        assert!(seen.insert(a.buf_idx));
        // The buffer lies inside the region.
        let end = tx.buf(a.buf_idx) as usize + BUF_SIZE;
        assert!(end <= m.map.base().as_ptr() as usize + m.map.len());
    }
    for i in 0..8 {
        assert!(seen.insert(s.tx(0).get(i).buf_idx), "distinct buffers per pair");
    }
}

#[test]
fn packets_cross_the_pipe_over_many_laps() {
    let m = open_slots("laps{1", 8);
    let s = open("laps}1");
    let (tx, rx) = (m.tx(0), s.rx(0));
    let (mut sent, mut got) = (0u32, 0u32);
    const N: u32 = 10_000;
    while got < N {
        while sent < N && tx.send(&payload(sent), 0) {
            sent += 1;
        }
        m.sync(SyncDir::Tx);
        s.sync(SyncDir::Rx);
        while let Some((data, flags)) = rx.recv() {
            assert_eq!(flags & NS_MOREFRAG, 0);
            assert_eq!(data, payload(got), "packet {got}");
            got += 1;
        }
        // Releases the slots, which become room for the master.
        s.sync(SyncDir::Rx);
    }
    assert_eq!(sent, N);
    m.sync(SyncDir::Tx);
    assert_eq!(tx.space(), 7, "every slot came back");
}

#[test]
fn both_directions_and_all_rings() {
    let m = open_with("dirs{2", |r| r.nr_tx_rings = 3).unwrap();
    let s = open("dirs}2");
    assert_eq!((s.req.nr_tx_rings, s.req.nr_rx_rings), (3, 3));
    for i in 0..3 {
        assert!(m.tx(i).send(&[1, i as u8], 0));
        assert!(s.tx(i).send(&[2, i as u8], 0));
    }
    m.sync(SyncDir::Tx);
    s.sync(SyncDir::Tx);
    m.sync(SyncDir::Rx);
    s.sync(SyncDir::Rx);
    for i in 0..3 {
        assert_eq!(s.rx(i).recv().unwrap().0, [1, i as u8]);
        assert_eq!(m.rx(i).recv().unwrap().0, [2, i as u8]);
    }
}

#[test]
fn morefrag_chains_are_published_whole() {
    let m = open_slots("frag{1", 8);
    let s = open("frag}1");
    let (tx, rx) = (m.tx(0), s.rx(0));
    assert!(tx.send(b"one", NS_MOREFRAG));
    assert!(tx.send(b"two", NS_MOREFRAG));
    m.sync(SyncDir::Tx);
    s.sync(SyncDir::Rx);
    assert_eq!(rx.tail(), 0, "an incomplete chain stays hidden");
    assert!(!s.readable_now());
    assert!(tx.send(b"three", 0));
    assert!(tx.send(b"next", NS_MOREFRAG));
    m.sync(SyncDir::Tx);
    s.sync(SyncDir::Rx);
    assert_eq!(rx.tail(), 3, "the chain, not the next partial packet");
    assert_eq!(rx.recv().unwrap(), (b"one".to_vec(), NS_MOREFRAG));
    assert_eq!(rx.recv().unwrap(), (b"two".to_vec(), NS_MOREFRAG));
    assert_eq!(rx.recv().unwrap(), (b"three".to_vec(), 0));
    assert!(rx.recv().is_none());
}

#[test]
fn prologue_violations_reset_the_ring() {
    let m = open_slots("prol{1", 8);
    let s = open("prol}1");
    let tx = m.tx(0);
    assert!(tx.send(b"a", 0));
    m.sync(SyncDir::Tx);
    assert_eq!((tx.head(), tx.tail()), (1, 7));
    // head past tail.
    tx.set_head_cur(0, 0);
    assert_eq!(
        errno_of(m.fd.sync(SyncDir::Tx)),
        libc::EINVAL,
        "head behind hwcur"
    );
    assert_eq!((tx.head(), tx.cur(), tx.tail()), (1, 1, 7));
    tx.set_head_cur(2, 1);
    assert_eq!(errno_of(m.fd.sync(SyncDir::Tx)), libc::EINVAL, "cur behind head");
    assert_eq!((tx.head(), tx.cur(), tx.tail()), (1, 1, 7));
    tx.set_head_cur(1, 99);
    assert_eq!(errno_of(m.fd.sync(SyncDir::Tx)), libc::EINVAL, "cur out of range");
    // The ring still works after a reset.
    assert!(tx.send(b"b", 0));
    m.sync(SyncDir::Tx);
    let rx = s.rx(0);
    s.sync(SyncDir::Rx);
    assert_eq!(rx.tail(), 2);
    rx.set_head_cur(3, 3);
    assert_eq!(errno_of(s.fd.sync(SyncDir::Rx)), libc::EINVAL, "head past tail");
    assert_eq!((rx.head(), rx.cur(), rx.tail()), (0, 0, 2));
    // The tail the user scribbles over is restored.
    s.fd.sync(SyncDir::Rx).unwrap();
    rx.word(RING_TAIL).store(5, Ordering::Relaxed);
    s.sync(SyncDir::Rx);
    assert_eq!(rx.tail(), 2);
    // poll reports the error too.
    rx.set_head_cur(4, 4);
    assert_ne!(s.fd.poll(libc::POLLIN, ms(0)).unwrap() & libc::POLLERR, 0);
    assert_eq!(rx.recv().unwrap().0, b"a");
    assert_eq!(rx.recv().unwrap().0, b"b");
}

#[test]
fn wrapped_views_pass_the_prologue() {
    let m = open_slots("wrap{1", 4);
    let s = open("wrap}1");
    let (tx, rx) = (m.tx(0), s.rx(0));
    for round in 0..20u8 {
        // Fill the ring up to the slot the kernel keeps.
        let mut k = 0;
        while tx.send(&[round, k], 0) {
            k += 1;
        }
        assert_eq!(k, 3);
        m.sync(SyncDir::Tx);
        s.sync(SyncDir::Rx);
        // Take one, then release it alone while two stay unseen.
        assert_eq!(rx.recv().unwrap().0, [round, 0]);
        s.sync(SyncDir::Rx);
        assert!(s.readable_now());
        assert_eq!(rx.recv().unwrap().0, [round, 1]);
        assert_eq!(rx.recv().unwrap().0, [round, 2]);
        s.sync(SyncDir::Rx);
        assert!(!s.readable_now());
        m.sync(SyncDir::Tx);
    }
}

#[test]
fn buffers_swap_between_pipes_of_one_parent() {
    let m = open_slots("swap{1", 8);
    let s = open("swap}1");
    let other = open_slots("swap{2", 8);
    assert_eq!(other.req.nr_mem_id, m.req.nr_mem_id);
    let (tx, rx, otx) = (m.tx(0), s.rx(0), other.tx(0));
    assert!(tx.send(b"swapped", 0));
    m.sync(SyncDir::Tx);
    s.sync(SyncDir::Rx);
    // Forward the received buffer to the other pipe by index swap.
    let (mut a, mut b) = (rx.get(0), otx.get(0));
    let (ra, rb) = (a.buf_idx, b.buf_idx);
    std::mem::swap(&mut a.buf_idx, &mut b.buf_idx);
    a.flags |= NS_BUF_CHANGED;
    b.flags |= NS_BUF_CHANGED;
    b.len = a.len;
    rx.put(0, a);
    otx.put(0, b);
    rx.advance(1);
    otx.advance(1);
    s.sync(SyncDir::Rx);
    other.sync(SyncDir::Tx);
    assert_eq!(rx.get(0).flags & NS_BUF_CHANGED, 0, "cleared by rxsync");
    assert_eq!(otx.get(0).flags & NS_BUF_CHANGED, 0, "cleared by txsync");
    let os = open("swap}2");
    os.sync(SyncDir::Rx);
    let (data, _) = os.rx(0).recv().unwrap();
    assert_eq!(data, b"swapped");
    assert_eq!(os.rx(0).get(0).buf_idx, ra);
    // The master's ring got the buffer that replaced it.
    m.sync(SyncDir::Tx);
    assert_eq!(tx.get(0).buf_idx, rb);
}

#[test]
fn the_largest_shape_fits() {
    // Its 4 GiB of buffers take real pages of the directory's filesystem
    // (reserved when the pipe is made, as the module allocates its pools),
    // and only the largest region holds them: with less free, the open is
    // ENOMEM.
    let dir = super::super::shm::dir();
    let free = free_bytes(&dir);
    let huge = |r: &mut nmreq_register| {
        r.nr_tx_rings = MAX_RINGS as u16;
        r.nr_tx_slots = MAX_SLOTS;
    };
    let p = match open_with("huge{1", huge) {
        Ok(p) => p,
        Err(e) if e.raw_os_error() == Some(libc::ENOMEM) && free < REGION_SIZES[0] as u64 => {
            let why = format!(
                "{} has {} MiB free, short of the largest region",
                dir.display(),
                free >> 20
            );
            netmap_test_support::skip::skip("the_largest_shape_fits", &why);
            return;
        }
        Err(e) => panic!("{e} ({} MiB free in {})", free >> 20, dir.display()),
    };
    let s = open("huge}1");
    let last = MAX_RINGS as usize - 1;
    assert!(p.tx(last).send(b"far", 0));
    p.sync(SyncDir::Tx);
    s.sync(SyncDir::Rx);
    assert_eq!(s.rx(last).recv().unwrap().0, b"far");
    assert_eq!(s.rx(last).tail(), 1);
    // Small pipes still fit beside it.
    let q = open("huge{2");
    assert_eq!(q.req.nr_mem_id, p.req.nr_mem_id);
}

/// Bytes free for this user on the filesystem of `dir`.
fn free_bytes(dir: &std::path::Path) -> u64 {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `vfs` is writable and `path` a C string; statvfs only fills `vfs`.
    let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut vfs) }, 0);
    (vfs.f_bavail as u64).saturating_mul(vfs.f_frsize as u64)
}

/// The buffer indices in every slot of `p`'s first TX ring.
fn tx_bufs(p: &Port) -> Vec<u32> {
    let tx = p.tx(0);
    (0..tx.n()).map(|i| tx.get(i).buf_idx).collect()
}

#[test]
fn a_closed_pipe_gives_its_buffers_back_unless_they_crossed_pipes() {
    let keep = open_slots("reuse{1", 8);
    let _keep_slave = open("reuse}1");
    // Closed with its buffers at home: the next pipe gets the same ones.
    let first = {
        let (m, _s) = (open_slots("reuse{2", 8), open("reuse}2"));
        tx_bufs(&m)
    };
    let (m, s) = (open_slots("reuse{3", 8), open("reuse}3"));
    assert_eq!(tx_bufs(&m), first, "reused");
    // One buffer of pipe 3 swapped into pipe 1's TX ring, pipe 1's in its
    // place, as a zero-copy forward does.
    let (a, b) = (m.tx(0), keep.tx(0));
    let (mut sa, mut sb) = (a.get(0), b.get(0));
    std::mem::swap(&mut sa.buf_idx, &mut sb.buf_idx);
    a.put(0, sa);
    b.put(0, sb);
    drop((m, s));
    // Pipe 3's buffers may sit in pipe 1: none is handed out again.
    let (m, _s) = (open_slots("reuse{4", 8), open("reuse}4"));
    let fresh = tx_bufs(&m);
    assert!(fresh.iter().all(|i| !first.contains(i)), "{fresh:?} / {first:?}");
    assert!(!fresh.contains(&sb.buf_idx));
}
