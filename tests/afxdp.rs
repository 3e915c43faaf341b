//! The AF_XDP backend on real kernel networking: a veth pair in a network
//! namespace that each test creates and always deletes (see
//! `netmap_test_support::netns`). Without root the tests print why they skip.
//!
//! Ports are opened on the test thread, which `Netns::enter` has moved into
//! the namespace; helper threads get ports moved to them.

use std::time::{Duration, Instant};

use netmap_rs::prelude::*;
use netmap_rs::NetmapBuilder as Builder;

use netmap_test_support::netns::{Netns, A, B};
use netmap_test_support::packets::{fnv1a, Rng};

/// How long any one wait may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

/// An EtherType from the IEEE's local experimental range.
const ETHERTYPE: [u8; 2] = [0x88, 0xb5];
const HDR: usize = 14;

/// The length of test frame `seq`: 60 to 1514 bytes, a function of `seq`.
fn frame_len(seq: u64) -> usize {
    Rng::new(seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1).range(60, 1514)
}

/// Frame `seq`: broadcast | src | EtherType | seq (8) | fnv1a of the rest
/// (4) | filler.
fn make_frame(buf: &mut Vec<u8>, seq: u64) {
    let len = frame_len(seq);
    buf.clear();
    buf.extend_from_slice(&[0xff; 6]);
    buf.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    buf.extend_from_slice(&ETHERTYPE);
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend(Rng::new(seq | 1).bytes(len - (HDR + 12)));
    let sum = fnv1a(&buf[HDR + 12..]);
    buf[HDR + 8..HDR + 12].copy_from_slice(&sum.to_le_bytes());
}

/// Checks a frame made by `make_frame`; returns its sequence number.
fn check_frame(p: &[u8]) -> Result<u64, String> {
    if p.len() < HDR + 12 || p[12..14] != ETHERTYPE {
        return Err(format!("a foreign frame of {} bytes", p.len()));
    }
    let seq = u64::from_le_bytes(p[HDR..HDR + 8].try_into().unwrap());
    let sum = u32::from_le_bytes(p[HDR + 8..HDR + 12].try_into().unwrap());
    if p.len() != frame_len(seq) {
        return Err(format!(
            "frame {seq} is {} bytes, sent {}",
            p.len(),
            frame_len(seq)
        ));
    }
    if sum != fnv1a(&p[HDR + 12..]) {
        return Err(format!("frame {seq} corrupted"));
    }
    Ok(seq)
}

fn open(name: &str) -> Netmap {
    Builder::new(name)
        .build()
        .unwrap_or_else(|e| panic!("open {name}: {e}"))
}

#[test]
fn frames_cross_the_veth_pair_intact() {
    let Some(ns) = Netns::new("frames_cross_the_veth_pair_intact") else {
        return;
    };
    let _inside = ns.enter();
    let a = open(&format!("afxdp:{A}"));
    let b = open(&format!("afxdp:{B}"));
    assert_eq!(a.backend(), BackendKind::AfXdp);
    eprintln!("mode {:?} slots {:?}", a.xdp_mode(), a.num_slots());
    let mut tx = a.tx_ring(0).unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    let mut buf = Vec::new();
    let count = 200u64;
    let t0 = Instant::now();
    let (mut sent, mut next) = (0u64, 0u64);
    while next < count {
        while sent < count && sent < next + 64 {
            make_frame(&mut buf, sent);
            match tx.send(&buf) {
                Ok(()) => sent += 1,
                Err(Error::RingFull { .. }) => break,
                Err(e) => panic!("send: {e}"),
            }
        }
        tx.sync().unwrap();
        rx.sync().unwrap();
        for f in rx.iter() {
            let seq = check_frame(f.payload()).unwrap();
            assert_eq!(seq, next);
            next += 1;
        }
        assert!(t0.elapsed() < PATIENCE, "stalled at {next} of {sent}");
    }
}

#[test]
fn ports_of_one_memory_id_forward_by_swapping_buffers() {
    let Some(ns) = Netns::new("ports_of_one_memory_id_forward_by_swapping_buffers") else {
        return;
    };
    let _inside = ns.enter();
    // X sends on A; Y receives on B and forwards every frame out of X's TX
    // ring (another port, the same memory): the frames come back to Y.
    let x = Builder::new(&format!("afxdp:{A}@7"))
        .num_slots(256)
        .build()
        .unwrap();
    let y = Builder::new(&format!("afxdp:{B}@7"))
        .num_slots(256)
        .build()
        .unwrap();
    // Another memory: a pipe of the embedded kernel.
    let own = open("emu:afxdp_other{1");
    assert_eq!(x.mem_id(), 7);
    assert_eq!(y.mem_id(), 7);
    let mut xtx = x.tx_ring(0).unwrap();
    let mut yrx = y.rx_ring(0).unwrap();
    let room = xtx.space();
    let mut buf = Vec::new();
    const N: u64 = 100;
    for seq in 0..N {
        make_frame(&mut buf, seq);
        xtx.send(&buf).unwrap();
    }
    xtx.sync().unwrap();
    // Each frame crosses twice: sent, then forwarded by swap.
    let mut seen = vec![0u8; N as usize];
    let t0 = Instant::now();
    while seen.iter().any(|&n| n < 2) {
        assert!(t0.elapsed() < PATIENCE, "stalled: {seen:?}");
        y.poll(Some(Duration::from_millis(20))).unwrap();
        yrx.sync().unwrap();
        while let Some(f) = yrx.iter().next() {
            let seq = check_frame(f.payload()).unwrap() as usize;
            seen[seq] += 1;
            if seen[seq] == 1 {
                xtx.forward(f).unwrap();
            }
        }
        xtx.sync().unwrap();
    }
    assert!(seen.iter().all(|&n| n == 2), "{seen:?}");
    // A forward into a port of another memory is refused; nothing is lost.
    let mut otx = own.tx_ring(0).unwrap();
    make_frame(&mut buf, 0);
    xtx.send(&buf).unwrap();
    xtx.sync().unwrap();
    let t0 = Instant::now();
    loop {
        assert!(t0.elapsed() < PATIENCE);
        y.poll(Some(Duration::from_millis(20))).unwrap();
        yrx.sync().unwrap();
        if let Some(f) = yrx.iter().next() {
            let e = otx.forward(f).unwrap_err();
            assert!(matches!(e, Error::MemoryMismatch { .. }), "{e}");
            assert!(e.to_string().contains("AF_XDP memory 7"), "{e}");
            break;
        }
    }
    // Every frame of X's ring comes back to it.
    let t0 = Instant::now();
    while xtx.space() < room {
        assert!(t0.elapsed() < PATIENCE, "X's ring has {} of {room}", xtx.space());
        x.poll_writable(Some(Duration::from_millis(20))).unwrap();
        xtx.sync().unwrap();
    }
}

#[test]
fn a_shared_memory_takes_back_the_frames_of_a_closed_port() {
    let Some(ns) = Netns::new("a_shared_memory_takes_back_the_frames_of_a_closed_port") else {
        return;
    };
    let _inside = ns.enter();
    // The shared memory holds 16384 frames and a port of 4096-slot rings
    // takes 8192: with one port kept open, a second fits exactly, and only
    // if every closed port gave all its frames back. Traffic first, so that
    // frames have moved between the rings and the kernel.
    let big = |dev: &str| Builder::new(&format!("afxdp:{dev}@9")).num_slots(4096).build();
    let keep = big(A).unwrap();
    let mut buf = Vec::new();
    for round in 0..5 {
        let second = big(B).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let mut tx = keep.tx_ring(0).unwrap();
        for seq in 0..100 {
            make_frame(&mut buf, seq);
            tx.send(&buf).unwrap();
        }
        tx.sync().unwrap();
        second.poll(Some(Duration::from_millis(100))).unwrap();
        drop(second);
    }
    drop(keep);
}
