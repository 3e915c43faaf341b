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
