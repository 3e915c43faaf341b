//! The ring API end to end on the embedded kernel: every operation, errors,
//! wraparound, multi-slot packets, buffer swap, thread-per-ring.

use std::thread;

use netmap_rs::prelude::*;
use netmap_test_support::packets::{fnv1a, Rng};

mod common;
use common::pair;

/// Packet `seq` of `len` bytes: seq (8) | checksum of the rest (4) | filler.
fn make_packet(buf: &mut Vec<u8>, seq: u64, len: usize) {
    buf.clear();
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend(Rng::new(seq).bytes(len - 12));
    let sum = fnv1a(&buf[12..]);
    buf[8..12].copy_from_slice(&sum.to_le_bytes());
}

/// Checks a packet made by `make_packet`; returns its sequence number.
fn check_packet(p: &[u8]) -> u64 {
    assert!(p.len() >= 12, "runt packet of {} bytes", p.len());
    let seq = u64::from_le_bytes(p[..8].try_into().unwrap());
    let sum = u32::from_le_bytes(p[8..12].try_into().unwrap());
    assert_eq!(sum, fnv1a(&p[12..]), "packet {seq} corrupted");
    seq
}

#[test]
fn send_sync_recv_roundtrip() {
    let (a, b) = pair("basic", 256);
    assert_eq!((a.num_tx_rings(), a.num_rx_rings()), (1, 1));
    assert_eq!(a.backend(), BackendKind::Emulated);
    assert!(!a.is_host_if());
    let mut tx = a.tx_ring(0).unwrap();
    assert_eq!(tx.space(), 255, "a TX ring starts with num_slots - 1 free slots");
    tx.send(b"one").unwrap();
    tx.send(b"two").unwrap();
    assert_eq!(tx.space(), 253);
    tx.sync().unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    assert!(rx.recv().is_none(), "nothing before a sync");
    assert_eq!(rx.sync().unwrap(), 2);
    assert_eq!(rx.recv().unwrap().payload(), b"one");
    let f = rx.recv().unwrap();
    assert_eq!(&*f, b"two");
    assert_eq!(f.len(), 3);
    assert!(rx.recv().is_none());
    // Releasing the RX slots gives the TX side its room back.
    rx.sync().unwrap();
    tx.sync().unwrap();
    assert_eq!(tx.space(), 255);
}

#[test]
fn full_ring_and_too_large_packets_are_errors() {
    let (a, _b) = pair("full", 8);
    let mut tx = a.tx_ring(0).unwrap();
    for _ in 0..7 {
        tx.send(&[1; 60]).unwrap();
    }
    assert!(matches!(tx.send(&[1; 60]), Err(Error::RingFull { .. })));
    // A packet that would need more free slots than there are.
    let mut tx2 = {
        drop(tx);
        a.tx_ring(0).unwrap()
    };
    assert!(matches!(tx2.send(&[0; 3000]), Err(Error::RingFull { .. })));
    let max = tx2.max_packet();
    match tx2.send(&vec![0; max + 1]) {
        Err(Error::PacketTooLarge { len, max: m }) => assert_eq!((len, m), (max + 1, max)),
        other => panic!("expected PacketTooLarge, got {other:?}"),
    }
    let mut batch = tx2.batch();
    assert!(matches!(batch.push(2049), Err(Error::PacketTooLarge { .. })));
}

#[test]
fn bad_names_and_ring_indices_are_errors_and_a_slave_may_come_first() {
    assert!(matches!(
        NetmapBuilder::new("emu:x{").build(),
        Err(Error::InvalidPortSpec { .. })
    ));
    assert!(matches!(
        NetmapBuilder::new("netmap:eth0-").build(),
        Err(Error::InvalidPortSpec { .. })
    ));
    // A slave end whose master is not open makes the pair, as in the
    // module: its peer then finds it.
    let slave = NetmapBuilder::new("emu:nopeer}1").build().unwrap();
    let master = NetmapBuilder::new("emu:nopeer{1").build().unwrap();
    drop((slave, master));
    let (a, _b) = pair("idx", 64);
    match a.tx_ring(1) {
        Err(Error::RingIndexOutOfRange { index, count, dir }) => {
            assert_eq!((index, count, dir), (1, 1, "TX"))
        }
        other => panic!("expected RingIndexOutOfRange, got {other:?}"),
    }
    assert!(matches!(a.rx_ring(7), Err(Error::RingIndexOutOfRange { .. })));
    let _rx = a.rx_ring(0).unwrap();
    assert!(matches!(a.rx_ring(0), Err(Error::RingInUse { .. })));
    assert!(matches!(
        NetmapBuilder::new("emu:idx{1").build(),
        Err(Error::Busy { .. })
    ));
}

#[test]
fn in_place_batches_publish_on_commit_and_discard_on_drop() {
    let (a, b) = pair("batch", 64);
    let mut tx = a.tx_ring(0).unwrap();
    {
        let mut batch = tx.batch();
        batch.push(10).unwrap().fill(0xee);
        // dropped uncommitted: discarded
    }
    assert_eq!(tx.space(), 63);
    let mut batch = tx.batch();
    for n in 0..5u8 {
        let buf = batch.push(100 + n as usize).unwrap();
        buf.fill(n);
    }
    assert_eq!(batch.len(), 5);
    assert_eq!(batch.commit(), 5);
    tx.sync().unwrap();

    let mut rx = b.rx_ring(0).unwrap();
    rx.sync().unwrap();
    // Frames of one batch live side by side.
    let frames: Vec<Frame<'_>> = rx.iter().collect();
    assert_eq!(frames.len(), 5);
    for (n, f) in frames.iter().enumerate() {
        assert_eq!(f.len(), 100 + n);
        assert!(f.iter().all(|&x| x == n as u8));
    }
}

/// Each packet waiting in `rx`, checked: (sequence, length, slots).
fn received(rx: &mut RxRing<'_>) -> Vec<(u64, usize, usize)> {
    rx.iter()
        .map(|f| (check_packet(&f), f.len(), f.slots()))
        .collect()
}

#[test]
fn multi_slot_packets_cross_as_one() {
    let (a, b) = pair("frags", 16);
    let mut tx = a.tx_ring(0).unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    let mut pkt = Vec::new();
    for (seq, len) in [(0u64, 2049usize), (1, 60), (2, 6000), (3, 2048), (4, 4096)] {
        make_packet(&mut pkt, seq, len);
        tx.send(&pkt).unwrap();
    }
    tx.sync().unwrap();
    rx.sync().unwrap();
    let got = received(&mut rx);
    assert_eq!(
        got,
        vec![(0, 2049, 2), (1, 60, 1), (2, 6000, 3), (3, 2048, 1), (4, 4096, 2)]
    );
}

#[test]
fn packets_go_in_fragments_of_the_size_asked() {
    let (a, b) = pair("fragsz", 256);
    let mut tx = a.tx_ring(0).unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    let mut pkt = Vec::new();
    // (length, fragment size, slots expected): 0 counts as 1, and a size
    // over a slot's 2048 bytes is one slot's worth.
    let cases = [
        (60usize, 16usize, 4usize),
        (64, 64, 1),
        (40, 0, 40),
        (5000, 4096, 3),
        (60, 1, 60),
    ];
    for (seq, &(len, frag, _)) in cases.iter().enumerate() {
        make_packet(&mut pkt, seq as u64, len);
        tx.send_fragments(&pkt, frag).unwrap();
        tx.sync().unwrap();
    }
    rx.sync().unwrap();
    let got = received(&mut rx);
    let want: Vec<(u64, usize, usize)> = cases
        .iter()
        .enumerate()
        .map(|(seq, &(len, _, slots))| (seq as u64, len, slots))
        .collect();
    assert_eq!(got, want);
    // More than 64 fragments: too large, and the ring is left as it was.
    let space = tx.space();
    match tx.send_fragments(&[0u8; 65], 1) {
        Err(Error::PacketTooLarge { len: 65, max: 64 }) => {}
        other => panic!("65 fragments of 1 byte: {other:?}"),
    }
    assert_eq!(tx.space(), space);
}

#[test]
fn discard_counts_whole_packets_without_reading_them() {
    let (a, b) = pair("discard", 64);
    let mut tx = a.tx_ring(0).unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    // 60 bytes, 300 in 4 slots, 5000 in 3 slots, 60: 4 packets, 9 slots.
    tx.send(&[1u8; 60]).unwrap();
    tx.send_fragments(&[2u8; 300], 75).unwrap();
    tx.send(&[3u8; 5000]).unwrap();
    tx.send(&[4u8; 60]).unwrap();
    tx.sync().unwrap();
    assert_eq!(rx.sync().unwrap(), 9);
    assert_eq!(rx.discard(0), (0, 0));
    assert_eq!(rx.discard(2), (2, 360));
    assert_eq!(rx.discard(usize::MAX), (2, 5060));
    assert_eq!(rx.discard(usize::MAX), (0, 0));
    assert!(rx.recv().is_none());
    // The slots went back: the whole ring takes packets again.
    assert_eq!(rx.sync().unwrap(), 0);
    tx.sync().unwrap();
    assert_eq!(tx.space(), 63);
    for _ in 0..63 {
        tx.send(&[5u8; 60]).unwrap();
    }
    tx.sync().unwrap();
    assert_eq!(rx.sync().unwrap(), 63);
    assert_eq!(rx.discard(usize::MAX), (63, 63 * 60));
}

/// Moves `count` packets of random sizes (with multi-slot ones mixed in)
/// from `a` to `b` in two threads; checks order and contents.
fn stream(a: Netmap, b: Netmap, count: u64, seed: u64) {
    let sender = thread::spawn(move || {
        let mut rng = Rng::new(seed);
        let mut tx = a.tx_ring(0).unwrap();
        let mut pkt = Vec::new();
        for seq in 0..count {
            let len = if seq.is_multiple_of(97) {
                rng.range(2049, 9000)
            } else {
                rng.range(60, 2048)
            };
            make_packet(&mut pkt, seq, len);
            loop {
                match tx.send(&pkt) {
                    Ok(()) => break,
                    Err(Error::RingFull { .. }) => {
                        tx.sync().unwrap();
                        if tx.space() == 0 {
                            a.poll_writable(Some(std::time::Duration::from_millis(50)))
                                .unwrap();
                        }
                    }
                    Err(e) => panic!("send failed: {e}"),
                }
            }
            if seq % 16 == 15 {
                tx.sync().unwrap();
            }
        }
        tx.sync().unwrap();
        drop(tx);
        a
    });
    let mut rx = b.rx_ring(0).unwrap();
    let mut expect = 0u64;
    let mut rng = Rng::new(seed);
    while expect < count {
        if rx.sync().unwrap() == 0 {
            b.poll(Some(std::time::Duration::from_millis(50))).unwrap();
            continue;
        }
        for f in rx.iter() {
            let seq = check_packet(&f);
            assert_eq!(seq, expect, "lost, duplicated or reordered");
            let len = if seq.is_multiple_of(97) {
                rng.range(2049, 9000)
            } else {
                rng.range(60, 2048)
            };
            assert_eq!(f.len(), len, "packet {seq} has the wrong length");
            expect += 1;
        }
    }
    let _a = sender.join().unwrap();
    rx.sync().unwrap();
    assert!(rx.recv().is_none(), "a packet beyond the last was received");
}

#[test]
fn a_million_packets_through_64_slots_in_two_threads() {
    let (a, b) = pair("million", 64);
    stream(a, b, 1_000_000, 0x5eed);
}

#[test]
fn thread_per_ring_four_ports() {
    let masters = NetmapBuilder::new("emu:tpr{1")
        .num_tx_rings(4)
        .num_rx_rings(4)
        .num_slots(128)
        .build_per_ring()
        .unwrap();
    let slaves = NetmapBuilder::new("emu:tpr}1").build_per_ring().unwrap();
    assert_eq!((masters.len(), slaves.len()), (4, 4));
    let threads: Vec<_> = masters
        .into_iter()
        .zip(slaves)
        .enumerate()
        .map(|(i, (m, s))| {
            assert_eq!(m.tx_ring_ids(), i as u16..i as u16 + 1);
            assert_eq!(s.rx_ring_ids(), i as u16..i as u16 + 1);
            thread::spawn(move || stream(m, s, 50_000, i as u64 + 1))
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn zero_copy_forwarding_between_pipes_of_one_parent() {
    // Two pipes of parent "fwd" share one memory region.
    let a_tx = NetmapBuilder::new("emu:fwd{1").build().unwrap();
    let a_rx = NetmapBuilder::new("emu:fwd}1").build().unwrap();
    let b_tx = NetmapBuilder::new("emu:fwd{2").build().unwrap();
    let b_rx = NetmapBuilder::new("emu:fwd}2").build().unwrap();
    assert_eq!(a_rx.mem_id(), b_tx.mem_id());

    let mut pkt = Vec::new();
    let mut tx = a_tx.tx_ring(0).unwrap();
    for seq in 0..300u64 {
        make_packet(
            &mut pkt,
            seq,
            if seq % 10 == 0 { 3000 } else { 60 + seq as usize },
        );
        tx.send(&pkt).unwrap();
        if seq % 50 == 49 {
            tx.sync().unwrap();
        }
    }
    tx.sync().unwrap();

    let mut rx = a_rx.rx_ring(0).unwrap();
    let mut fwd = b_tx.tx_ring(0).unwrap();
    let mut out = b_rx.rx_ring(0).unwrap();
    let mut next = 0u64;
    while next < 300 {
        rx.sync().unwrap();
        while let Some(f) = rx.recv() {
            fwd.forward(f).unwrap();
        }
        fwd.sync().unwrap();
        out.sync().unwrap();
        for f in out.iter() {
            assert_eq!(check_packet(&f), next);
            next += 1;
        }
        tx.sync().unwrap();
    }

    // A port of another parent lives in another region.
    let c_tx = NetmapBuilder::new("emu:other{1").build().unwrap();
    let mut c = c_tx.tx_ring(0).unwrap();
    tx.send(b"x").unwrap();
    tx.sync().unwrap();
    rx.sync().unwrap();
    let f = rx.recv().unwrap();
    assert!(matches!(c.forward(f), Err(Error::MemoryMismatch { .. })));
}

#[test]
fn ports_are_send_and_rings_stay_home() {
    fn is_send<T: Send>() {}
    is_send::<Netmap>();
}

#[test]
fn reopening_after_close_works_many_times() {
    for _ in 0..2000 {
        let (a, b) = pair("reopen", 32);
        let mut tx = a.tx_ring(0).unwrap();
        tx.send(b"ping").unwrap();
        tx.sync().unwrap();
        let mut rx = b.rx_ring(0).unwrap();
        rx.sync().unwrap();
        assert_eq!(rx.recv().unwrap().payload(), b"ping");
    }
}

#[test]
fn batch_forwarding_moves_whole_packets_and_waits_for_room() {
    let a_tx = NetmapBuilder::new("emu:bfwd{1").num_slots(64).build().unwrap();
    let a_rx = NetmapBuilder::new("emu:bfwd}1").build().unwrap();
    let b_tx = NetmapBuilder::new("emu:bfwd{2").num_slots(16).build().unwrap();
    let b_rx = NetmapBuilder::new("emu:bfwd}2").build().unwrap();
    let mut tx = a_tx.tx_ring(0).unwrap();
    let mut rx = a_rx.rx_ring(0).unwrap();
    let mut fwd = b_tx.tx_ring(0).unwrap();
    let mut out = b_rx.rx_ring(0).unwrap();
    let mut pkt = Vec::new();
    let total = 500u64;
    let (mut sent, mut next) = (0u64, 0u64);
    while next < total {
        while sent < total {
            // Every fifth packet spans three slots.
            make_packet(&mut pkt, sent, if sent % 5 == 0 { 5000 } else { 100 });
            if tx.send(&pkt).is_err() {
                break;
            }
            sent += 1;
        }
        tx.sync().unwrap();
        rx.sync().unwrap();
        // A 16-slot TX ring fills long before the RX ring empties.
        fwd.forward_from(&mut rx).unwrap();
        assert!(fwd.space() < 3 || rx.is_empty(), "stopped with room to spare");
        fwd.sync().unwrap();
        out.sync().unwrap();
        for f in out.iter() {
            assert_eq!(check_packet(&f), next);
            assert_eq!(f.len(), if next % 5 == 0 { 5000 } else { 100 });
            next += 1;
        }
        fwd.sync().unwrap();
    }

    let other = NetmapBuilder::new("emu:bfwd_other{1").build().unwrap();
    let mut o = other.tx_ring(0).unwrap();
    assert!(matches!(
        o.forward_from(&mut rx),
        Err(Error::MemoryMismatch { .. })
    ));
}

#[test]
fn a_second_port_of_the_same_rings_is_busy() {
    let first = NetmapBuilder::new("emu:excl{1").build().unwrap();
    match NetmapBuilder::new("emu:excl{1").build() {
        Err(e @ Error::Busy { .. }) => {
            let text = e.to_string();
            assert!(text.contains("`emu:excl{1`"), "{text}");
            assert!(text.contains("NetmapBuilder::share_rings"), "{text}");
            let Error::Busy { rings, .. } = e else {
                unreachable!()
            };
            assert_eq!(rings, "hardware TX rings and RX rings");
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    // Shared or not, no one joins an exclusive binder.
    // SAFETY: the port is never opened, so it never uses the rings.
    let shared = unsafe { NetmapBuilder::new("emu:excl{1").share_rings() }.build();
    assert!(matches!(shared, Err(Error::Busy { .. })), "{shared:?}");
    match NetmapBuilder::new("emu:excl{1/T").build() {
        Err(Error::Busy { rings, .. }) => assert_eq!(rings, "hardware TX rings"),
        other => panic!("expected Busy, got {other:?}"),
    }
    // The other end's rings are its own.
    let _slave = NetmapBuilder::new("emu:excl}1").build().unwrap();
    // Closing the port frees its rings.
    drop(first);
    let _again = NetmapBuilder::new("emu:excl{1").build().unwrap();
}

#[test]
fn ports_of_different_rings_are_exclusive_side_by_side() {
    let _t = NetmapBuilder::new("emu:apart{1/T").build().unwrap();
    let _r = NetmapBuilder::new("emu:apart{1/R").build().unwrap();
    let ports = NetmapBuilder::new("emu:apart2{1")
        .num_tx_rings(2)
        .num_rx_rings(2)
        .build_per_ring()
        .unwrap();
    assert_eq!(ports.len(), 2);
    match NetmapBuilder::new("emu:apart2{1-1").build() {
        Err(Error::Busy { rings, .. }) => assert_eq!(rings, "TX rings 1..2 and RX rings 1..2"),
        other => panic!("expected Busy, got {other:?}"),
    }
}

#[test]
fn share_rings_lets_ports_bind_the_same_rings() {
    // SAFETY: of the two ports, only `b` uses the rings.
    let a = unsafe { NetmapBuilder::new("emu:shared{1").share_rings() }
        .build()
        .unwrap();
    // SAFETY: as above.
    let b = unsafe { NetmapBuilder::new("emu:shared{1").share_rings() }
        .build()
        .unwrap();
    assert_eq!(a.tx_ring_ids(), b.tx_ring_ids());
    // An exclusive port, from the builder or the name's `/x`, stays out.
    for built in [
        NetmapBuilder::new("emu:shared{1").build(),
        // SAFETY: refused, so never used.
        unsafe { NetmapBuilder::new("emu:shared{1/x").share_rings() }.build(),
        // SAFETY: refused, so never used.
        unsafe {
            NetmapBuilder::new("emu:shared{1")
                .flags(netmap_rs::ffi::NR_EXCLUSIVE)
                .share_rings()
        }
        .build(),
    ] {
        assert!(matches!(built, Err(Error::Busy { .. })), "{built:?}");
    }
    // The two bind one ring: what the peer sends, `b` receives.
    let peer = NetmapBuilder::new("emu:shared}1").build().unwrap();
    let mut tx = peer.tx_ring(0).unwrap();
    tx.send(b"one ring").unwrap();
    tx.sync().unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    rx.sync().unwrap();
    assert_eq!(
        rx.recv().map(|f| f.payload().to_vec()),
        Some(b"one ring".to_vec())
    );
    drop(rx);
    // While one shared port is open the rings stay shared.
    drop(a);
    assert!(matches!(
        NetmapBuilder::new("emu:shared{1").build(),
        Err(Error::Busy { .. })
    ));
    drop(b);
    let _exclusive = NetmapBuilder::new("emu:shared{1").build().unwrap();
}

/// One round of `push_reuse` on `tx`: fills the ring, writes `fill` into
/// fresh buffers only, sends, lets `rx` read everything (checking it is
/// `fill`) and hand it back. Returns which slots (in order) were fresh.
fn reuse_round(tx: &mut TxRing<'_>, rx: &mut RxRing<'_>, fill: u8) -> Vec<bool> {
    let mut fresh = Vec::new();
    let mut batch = tx.batch();
    while let Ok((buf, f)) = batch.push_reuse(40) {
        if f {
            buf.fill(fill);
        }
        fresh.push(f);
    }
    batch.commit();
    tx.sync().unwrap();
    rx.sync().unwrap();
    for f in rx.iter() {
        assert_eq!(f.payload(), [fill; 40]);
    }
    rx.sync().unwrap();
    tx.sync().unwrap();
    fresh
}

#[test]
fn push_reuse_is_fresh_once_per_slot_until_a_peer_swaps_buffers() {
    let (a, b) = pair("reuse", 16);
    let (mut tx, mut rx) = (a.tx_ring(0).unwrap(), b.rx_ring(0).unwrap());
    // The first round meets 15 slots never used; the second the last one
    // and 14 used ones; after that none is fresh.
    assert_eq!(reuse_round(&mut tx, &mut rx, 7), [true; 15]);
    let second = reuse_round(&mut tx, &mut rx, 7);
    assert_eq!(second.iter().filter(|&&f| f).count(), 1, "{second:?}");
    assert_eq!(reuse_round(&mut tx, &mut rx, 7), [false; 15]);
    // A new handle knows nothing of what the last one wrote.
    drop(tx);
    let mut tx = a.tx_ring(0).unwrap();
    assert_eq!(reuse_round(&mut tx, &mut rx, 7), [true; 15]);
    assert_eq!(reuse_round(&mut tx, &mut rx, 7).iter().filter(|&&f| f).count(), 1);

    // A batch dropped uncommitted moves nothing: its slots stay fresh.
    let (c, d) = pair("reuse2", 16);
    let mut tx2 = c.tx_ring(0).unwrap();
    let mut batch = tx2.batch();
    assert!(batch.push_reuse(40).unwrap().1);
    drop(batch);
    assert!(tx2.batch().push_reuse(40).unwrap().1);
    drop(d);
}

#[test]
fn push_reuse_sees_the_buffers_a_receiver_swapped_away_as_fresh() {
    // a -> b, and b's packets forwarded (buffers swapped) into c -> d, so
    // that every slot a's ring gets back holds c's old buffer, flagged
    // `NS_BUF_CHANGED` by the pipe as netmap's does.
    let (a, b) = pair("swapin", 16);
    let (c, d) = (
        NetmapBuilder::new("emu:swapin{2").build().unwrap(),
        NetmapBuilder::new("emu:swapin}2").build().unwrap(),
    );
    let (mut tx, mut rx) = (a.tx_ring(0).unwrap(), b.rx_ring(0).unwrap());
    let (mut fwd, mut out) = (c.tx_ring(0).unwrap(), d.rx_ring(0).unwrap());
    assert_eq!(reuse_round(&mut tx, &mut rx, 1), [true; 15]);
    assert_eq!(reuse_round(&mut tx, &mut rx, 1).iter().filter(|&&f| f).count(), 1);
    // Round 3 is forwarded instead of read in place.
    let mut batch = tx.batch();
    while let Ok((buf, fresh)) = batch.push_reuse(40) {
        assert!(!fresh);
        assert_eq!(buf, [1; 40], "the buffer held what was last sent from it");
    }
    batch.commit();
    tx.sync().unwrap();
    rx.sync().unwrap();
    assert_eq!(fwd.forward_from(&mut rx).unwrap(), 15);
    rx.sync().unwrap();
    tx.sync().unwrap();
    fwd.sync().unwrap();
    out.sync().unwrap();
    assert!(out.iter().all(|f| f.payload() == [1; 40]));
    // Every slot a's ring got back holds another buffer, and says so. (The
    // rounds move on by one slot: round 4 starts with the one slot round 3
    // did not use, which still holds its packet.)
    let mut expected = [true; 15];
    expected[0] = false;
    assert_eq!(reuse_round(&mut tx, &mut rx, 1), expected);
    // And round 5 with the one swapped slot round 4 did not use.
    let mut expected = [false; 15];
    expected[0] = true;
    assert_eq!(reuse_round(&mut tx, &mut rx, 1), expected);
    assert_eq!(reuse_round(&mut tx, &mut rx, 1), [false; 15]);
}

/// Transparent forwarding needs the module's host rings: the embedded
/// kernel refuses the ring flag and its frames take marks harmlessly; a
/// multi-slot frame is never marked.
#[test]
fn forwarding_marks_without_host_rings() {
    let (a, b) = pair("fwdmark", 64);
    let mut rx = b.rx_ring(0).unwrap();
    match rx.request_forward(true) {
        Err(Error::Unsupported { backend, what, .. }) => {
            assert_eq!(backend, BackendKind::Emulated);
            assert!(what.contains("NR_FORWARD"), "{what}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!rx.forward_requested());
    let mut tx = a.tx_ring(0).unwrap();
    tx.send(&[1u8; 60]).unwrap();
    tx.send_fragments(&[2u8; 300], 100).unwrap();
    tx.sync().unwrap();
    rx.sync().unwrap();
    let frames: Vec<_> = rx.iter().map(|f| (f.slots(), f.mark_forward())).collect();
    assert_eq!(frames, [(1, true), (3, false)]);
    // The marked slot goes back and comes round again as free room.
    rx.sync().unwrap();
    let mut moved = 0;
    for _ in 0..3 * rx.num_slots() {
        if tx.send(&[3u8; 60]).is_err() {
            tx.sync().unwrap();
            rx.sync().unwrap();
            moved += rx.discard(usize::MAX).0;
        }
    }
    assert!(moved >= 2 * rx.num_slots() - 2, "{moved}");
}

/// A zero-copy forward between two pipes of one parent leaves buffers of
/// each in the other's rings: once one pipe closes, its buffers must not go
/// to a new pipe, or two live rings would share a buffer and a send on one
/// would change a frame read on the other.
#[test]
fn buffers_forwarded_out_of_a_closed_pipe_are_never_handed_out_again() {
    let open = |n: &str| NetmapBuilder::new(n).num_slots(8).build().unwrap();
    let (a1, b1) = (open("emu:cross{1"), open("emu:cross}1"));
    {
        let (a2, _b2) = (open("emu:cross{2"), open("emu:cross}2"));
        let mut t1 = a1.tx_ring(0).unwrap();
        for _ in 0..7 {
            t1.send(b"AAAA").unwrap();
        }
        t1.sync().unwrap();
        let mut r1 = b1.rx_ring(0).unwrap();
        r1.sync().unwrap();
        let mut t2 = a2.tx_ring(0).unwrap();
        assert_eq!(t2.forward_from(&mut r1).unwrap(), 7);
        t2.sync().unwrap();
    }
    // Pipe 2 is gone; pipe 1's rings hold its buffers.
    let (a3, b3) = (open("emu:cross{3"), open("emu:cross}3"));
    let mut r1 = b1.rx_ring(0).unwrap();
    r1.sync().unwrap();
    drop(r1);
    let mut t1 = a1.tx_ring(0).unwrap();
    t1.sync().unwrap();
    let mut t3 = a3.tx_ring(0).unwrap();
    for _ in 0..7 {
        t3.send(b"CCCC").unwrap();
    }
    t3.sync().unwrap();
    let mut r3 = b3.rx_ring(0).unwrap();
    r3.sync().unwrap();
    let frames: Vec<_> = r3.iter().collect();
    assert_eq!(frames.len(), 7);
    // Pipe 1 fills every buffer its TX ring holds.
    while t1.send(b"BBBB").is_ok() {}
    for f in &frames {
        assert_eq!(f.payload(), b"CCCC", "a frame changed under its reader");
    }
}

/// Extra buffers: packets kept out of the ring survive a million packets
/// of traffic through it intact, go out on another pipe of the region in
/// any order, and every buffer comes back to the port.
#[test]
fn kept_packets_outlive_a_million_packets_and_go_out_in_any_order() {
    const EXTRA: u32 = 64;
    let open = |n: &str, extra: u32| {
        NetmapBuilder::new(n)
            .num_slots(256)
            .extra_buffers(extra)
            .build()
            .unwrap()
    };
    let (a, b) = (open("emu:keeps{1", 0), open("emu:keeps}1", EXTRA));
    let (c, d) = (open("emu:keeps{2", 0), open("emu:keeps}2", 0));
    assert_eq!(
        (b.extra_buffers(), b.free_extra_buffers()),
        (EXTRA as usize, EXTRA as usize)
    );
    assert_eq!(a.extra_buffers(), 0);
    let (mut tx, mut rx) = (a.tx_ring(0).unwrap(), b.rx_ring(0).unwrap());
    let mut kept = Vec::new();
    let mut buf = Vec::new();
    let (mut sent, mut seen) = (0u64, 0u64);
    const N: u64 = 1_000_000;
    while seen < N {
        while sent < N && tx.space() > 0 {
            make_packet(&mut buf, sent, 60 + (sent % 200) as usize);
            tx.send(&buf).unwrap();
            sent += 1;
        }
        tx.sync().unwrap();
        rx.sync().unwrap();
        loop {
            if seen % 15_000 == 7 && kept.len() < EXTRA as usize {
                let Some(k) = rx.keep().unwrap() else { break };
                assert_eq!(check_packet(k.payload()), seen);
                kept.push(k);
            } else {
                let Some(f) = rx.recv() else { break };
                assert_eq!(check_packet(f.payload()), seen);
            }
            seen += 1;
        }
    }
    assert_eq!(kept.len(), 67.min(EXTRA as usize));
    assert_eq!(b.free_extra_buffers(), EXTRA as usize - kept.len());
    // Every kept packet is as it was.
    let seqs: Vec<u64> = kept.iter().map(|k| check_packet(k.payload())).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    // Out on the other pipe, last kept first; an edit travels with it.
    let mut out = c.tx_ring(0).unwrap();
    let mut last = kept.pop().unwrap();
    last.payload_mut()[0] ^= 0xff;
    let edited = last.payload().to_vec();
    out.send_kept(last).unwrap();
    while let Some(k) = kept.pop() {
        out.send_kept(k).unwrap();
    }
    out.sync().unwrap();
    assert_eq!(b.free_extra_buffers(), EXTRA as usize);
    let mut end = d.rx_ring(0).unwrap();
    end.sync().unwrap();
    let got: Vec<Vec<u8>> = end.iter().map(|f| f.payload().to_vec()).collect();
    assert_eq!(got.len(), seqs.len());
    assert_eq!(got[0], edited);
    for (g, s) in got[1..].iter().zip(seqs.iter().rev().skip(1)) {
        assert_eq!(check_packet(g), *s);
    }
}

/// What keeping and sending kept packets refuse, with the variant that
/// says what to do.
#[test]
fn keeping_errors_name_what_to_do() {
    let (a, b) = pair("keeperr", 64);
    let mut tx = a.tx_ring(0).unwrap();
    for _ in 0..4 {
        tx.send(&[5u8; 60]).unwrap();
    }
    tx.send_fragments(&[6u8; 300], 100).unwrap();
    tx.sync().unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    rx.sync().unwrap();
    // No extra buffers asked for.
    match rx.keep() {
        Err(e @ Error::NoExtraBuffer { granted: 0, .. }) => {
            assert!(e.to_string().contains("extra_buffers"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    drop(rx);
    drop(b);
    let b = NetmapBuilder::new("emu:keeperr}1")
        .extra_buffers(2)
        .build()
        .unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    rx.sync().unwrap();
    let (k1, k2) = (rx.keep().unwrap().unwrap(), rx.keep().unwrap().unwrap());
    assert!(matches!(rx.keep(), Err(Error::NoExtraBuffer { granted: 2, .. })));
    drop(k1);
    let k3 = rx.keep().unwrap().unwrap();
    rx.recv().unwrap();
    // A packet of three slots is not kept; recv takes it.
    assert!(matches!(rx.keep(), Err(Error::Unsupported { .. })));
    assert_eq!(rx.recv().unwrap().slots(), 3);
    assert!(rx.keep().unwrap().is_none());
    // Another region's ring refuses it; a full ring too.
    let other = NetmapBuilder::new("emu:keepelse{1").build().unwrap();
    assert!(matches!(
        other.tx_ring(0).unwrap().send_kept(k2),
        Err(Error::MemoryMismatch { .. })
    ));
    let (c, _d) = (
        NetmapBuilder::new("emu:keeperr{2").num_slots(64).build().unwrap(),
        0,
    );
    let mut full = c.tx_ring(0).unwrap();
    while full.send(&[0u8; 60]).is_ok() {}
    assert!(matches!(full.send_kept(k3), Err(Error::RingFull { .. })));
    assert_eq!(
        b.free_extra_buffers(),
        2,
        "refused packets give their buffers back"
    );
}

/// Syncs `rx` and copies out every packet waiting.
fn drain(rx: &mut RxRing<'_>) -> Vec<Vec<u8>> {
    rx.sync().unwrap();
    rx.iter().map(|f| f.payload().to_vec()).collect()
}

/// Copy monitors on the embedded kernel, as on the module: `/t` on a pipe
/// end sees what it sends, `/r` on the other end what it receives, both
/// before the reader; the pipe delivers as before; a monitor that falls
/// behind keeps the latest packets of a sync that overflows it, and drops
/// what finds it full.
#[test]
fn copy_monitors_see_a_pipes_traffic() {
    let (a, b) = pair("watched", 64);
    let tmon = NetmapBuilder::new("emu:watched{1/t").build().unwrap();
    let rmon = NetmapBuilder::new("emu:watched}1/r").build().unwrap();
    assert_eq!((tmon.num_tx_rings(), tmon.num_rx_rings()), (0, 1));
    let packets: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 60 + i as usize]).collect();
    let mut tx = a.tx_ring(0).unwrap();
    for p in &packets {
        tx.send(p).unwrap();
    }
    tx.sync().unwrap();
    let (mut trx, mut rrx, mut brx) = (
        tmon.rx_ring(0).unwrap(),
        rmon.rx_ring(0).unwrap(),
        b.rx_ring(0).unwrap(),
    );
    assert_eq!(drain(&mut trx), packets, "the TX monitor");
    assert!(drain(&mut rrx).is_empty(), "nothing received yet");
    assert_eq!(drain(&mut brx), packets, "the pipe delivers them");
    assert_eq!(drain(&mut rrx), packets, "the RX monitor");
    // A monitor's readiness follows its copies.
    tx.send(b"ready").unwrap();
    tx.sync().unwrap();
    assert!(tmon.poll(Some(std::time::Duration::from_secs(5))).unwrap());
    assert_eq!(drain(&mut trx), [b"ready".to_vec()]);
    // Behind by more than its ring holds, a monitor keeps the latest.
    for round in 0..4u8 {
        for i in 0..30u8 {
            tx.send(&[round, i]).unwrap();
        }
        tx.sync().unwrap();
        drain(&mut brx);
        drain(&mut brx); // hands the slots back
        tx.sync().unwrap();
    }
    let late = drain(&mut trx);
    // 63 slots of 64 may hold packets; the reader still held the one it
    // read last.
    // Two rounds fit; of the third, the room left takes its latest two;
    // the fourth finds none.
    assert_eq!(late.len(), 62);
    assert_eq!(
        (late[0].as_slice(), late[59].as_slice()),
        (&[0, 0][..], &[1, 29][..])
    );
    assert_eq!(
        (late[60].as_slice(), late[61].as_slice()),
        (&[2, 28][..], &[2, 29][..])
    );
    assert!(NetmapBuilder::new("emu:nobody{1/t").build().is_err());
}

/// A zero-copy monitor (`/z`) on the embedded kernel, as on the module: it
/// sees a pipe end's packets once the end is done with them (received
/// ones when the reader gives their slots back), by taking their buffers:
/// the monitored end's slots come back with the monitor's buffers in them,
/// and the pipe carries on; a slow monitor misses packets but never holds
/// the pipe up.
#[test]
fn a_zero_copy_monitor_takes_the_buffers_of_consumed_packets() {
    let (a, b) = pair("zwatched", 64);
    let zmon = NetmapBuilder::new("emu:zwatched}1/z").build().unwrap();
    let packets: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 60 + i as usize]).collect();
    let mut tx = a.tx_ring(0).unwrap();
    for p in &packets {
        tx.send(p).unwrap();
    }
    tx.sync().unwrap();
    let (mut zrx, mut brx) = (zmon.rx_ring(0).unwrap(), b.rx_ring(0).unwrap());
    assert!(drain(&mut zrx).is_empty(), "nothing consumed yet");
    assert_eq!(drain(&mut brx), packets);
    assert!(drain(&mut zrx).is_empty(), "the reader still holds them");
    brx.sync().unwrap(); // gives the slots back
    assert_eq!(drain(&mut zrx), packets, "the monitor has their buffers");
    // The pipe carries on with the monitor's buffers, for many rounds
    // more than either ring holds, while the monitor reads some.
    let mut seen = 0;
    for round in 0..50u32 {
        tx.sync().unwrap();
        for i in 0..20u32 {
            tx.send(&(round * 100 + i).to_le_bytes()).unwrap();
        }
        tx.sync().unwrap();
        let got = drain(&mut brx);
        assert_eq!(got.len(), 20);
        for (i, g) in got.iter().enumerate() {
            assert_eq!(g[..], (round * 100 + i as u32).to_le_bytes());
        }
        brx.sync().unwrap();
        if round % 7 == 0 {
            seen += drain(&mut zrx).len();
        }
    }
    // Read every 7th round, the monitor takes at most 63 of the 140
    // packets between, and none while its reader holds every slot.
    assert!(
        (200..=461).contains(&seen),
        "{seen}: a slow monitor misses packets, and only those"
    );
}
