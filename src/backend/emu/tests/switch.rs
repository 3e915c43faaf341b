//! The VALE switch: learning, flooding, drop when full, whole multi-slot
//! packets, readiness.

use super::client::*;
use crate::backend::SyncDir;
use crate::ffi::NS_MOREFRAG;

/// An Ethernet frame from `src` to `dst` (last address bytes) carrying `tag`.
fn frame(dst: u8, src: u8, tag: u8) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&[2, 0, 0, 0, 0, dst]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, src]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f[14] = tag;
    f
}

const BROADCAST: u8 = 0xff;

fn broadcast(src: u8, tag: u8) -> Vec<u8> {
    let mut f = frame(0, src, tag);
    f[..6].fill(0xff);
    f
}

fn send(p: &Port, f: &[u8]) {
    assert!(p.tx(0).send(f, 0));
    p.sync(SyncDir::Tx);
}

/// The tags of the frames waiting on `p`.
fn tags(p: &Port) -> Vec<u8> {
    p.sync(SyncDir::Rx);
    let mut v = Vec::new();
    while let Some((f, _)) = p.rx(0).recv() {
        v.push(f[14]);
    }
    p.sync(SyncDir::Rx);
    v
}

#[test]
fn the_switch_floods_unknown_addresses_and_learns_the_rest() {
    let a = open("valesw1:a");
    let b = open("valesw1:b");
    let c = open("valesw1:c");
    // Broadcast and unknown destinations reach every other port.
    send(&a, &broadcast(1, 10));
    assert_eq!((tags(&a), tags(&b), tags(&c)), (vec![], vec![10], vec![10]));
    send(&b, &frame(9, 2, 11));
    assert_eq!((tags(&a), tags(&b), tags(&c)), (vec![11], vec![], vec![11]));
    // Both 1 (behind a) and 2 (behind b) are learned now.
    send(&b, &frame(1, 2, 12));
    send(&a, &frame(2, 1, 13));
    assert_eq!((tags(&a), tags(&b), tags(&c)), (vec![12], vec![13], vec![]));
    // An address moves with its sender.
    send(&c, &frame(3, 1, 14));
    send(&b, &frame(1, 2, 15));
    assert_eq!((tags(&a), tags(&b), tags(&c)), (vec![14], vec![14], vec![15]));
    // An address learned behind a port that closed floods again.
    drop(c);
    let d = open("valesw1:d");
    send(&b, &frame(1, 2, 16));
    assert_eq!((tags(&a), tags(&b), tags(&d)), (vec![16], vec![], vec![16]));
    let _ = BROADCAST;
}

#[test]
fn a_full_port_misses_packets_and_the_sender_never_waits() {
    let a = open("valesw2:a");
    let b = open_slots("valesw2:b", 8);
    for i in 0..20 {
        send(&a, &broadcast(1, i));
        // The sender's ring is all free again after each sync.
        assert_eq!(a.tx(0).space(), a.tx(0).n() - 1);
    }
    // 7 of 8 slots: one always stays with the kernel.
    assert_eq!(tags(&b), (0..7).collect::<Vec<_>>());
    send(&a, &broadcast(1, 99));
    assert_eq!(tags(&b), vec![99]);
}

#[test]
fn multi_slot_packets_cross_whole_or_wait_for_their_end() {
    let a = open("valesw3:a");
    let b = open("valesw3:b");
    let f = broadcast(1, 7);
    // The first half alone, chained: not forwarded yet.
    assert!(a.tx(0).send(&f[..30], NS_MOREFRAG));
    a.sync(SyncDir::Tx);
    b.sync(SyncDir::Rx);
    assert!(b.rx(0).recv().is_none());
    assert!(a.tx(0).send(&f[30..], 0));
    a.sync(SyncDir::Tx);
    b.sync(SyncDir::Rx);
    let (one, flags) = b.rx(0).recv().unwrap();
    assert_eq!((one.as_slice(), flags & NS_MOREFRAG), (&f[..30], NS_MOREFRAG));
    let (two, flags) = b.rx(0).recv().unwrap();
    assert_eq!((two.as_slice(), flags & NS_MOREFRAG), (&f[30..], 0));
}

#[test]
fn runts_and_bad_slots_are_dropped_and_the_ring_moves_on() {
    let a = open("valesw4:a");
    let b = open("valesw4:b");
    send(&a, &[0xff; 10]);
    // A slot naming no buffer of the region.
    let t = a.tx(0);
    let h = t.head();
    let mut s = t.get(h);
    s.buf_idx = u32::MAX;
    s.len = 60;
    t.put(h, s);
    t.advance(crate::ffi::nm_next(h, t.n()));
    a.sync(SyncDir::Tx);
    send(&a, &broadcast(1, 5));
    assert_eq!(tags(&b), vec![5]);
}

#[test]
fn a_delivery_makes_the_port_readable() {
    let a = open("valesw5:a");
    let b = open("valesw5:b");
    let ep = Epoll::new(b.fd.as_fd());
    send(&a, &broadcast(1, 1));
    assert!(ep.wait_for(libc::EPOLLIN as u32));
    assert_eq!(
        b.fd.poll(libc::POLLIN, ms(0)).unwrap() & libc::POLLIN,
        libc::POLLIN
    );
    assert_eq!(tags(&b), vec![1]);
    assert_eq!(b.fd.poll(libc::POLLIN, ms(20)).unwrap(), 0);
}
