//! What the AF_PACKET and AF_XDP tests share: waiting sends, sized frames,
//! ring stamps, dropping a capability, and a mio ping-pong over a veth pair.

use std::time::{Duration, Instant, SystemTime};

use netmap_rs::prelude::*;
use netmap_test_support::packets::ETHERTYPE;

/// How long any one wait may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Checks that `rx`, synced at or after `since`, carries that sync's stamp
/// (netmap's `ts`, to the microsecond).
pub fn assert_stamped_since(rx: &RxRing<'_>, since: SystemTime) {
    let t = rx.timestamp().expect("an RX sync stamps the ring");
    assert!(
        t + Duration::from_micros(1) >= since && t <= SystemTime::now(),
        "stamp {t:?}, sync at or after {since:?}"
    );
}

/// Sends `data` on `tx`, syncing (and waiting) while the ring is full.
pub fn send_wait(port: &Netmap, tx: &mut TxRing<'_>, data: &[u8]) {
    let t0 = Instant::now();
    loop {
        match tx.send(data) {
            Ok(()) => return,
            Err(Error::RingFull { .. }) => {
                tx.sync().unwrap();
                if tx.space() == 0 {
                    port.poll_writable(Some(Duration::from_millis(50))).unwrap();
                }
                assert!(t0.elapsed() < PATIENCE, "TX ring stayed full");
            }
            Err(e) => panic!("send: {e}"),
        }
    }
}

/// A frame of `len` bytes: broadcast, the test EtherType, `len` as the
/// first payload bytes.
pub fn sized_frame(len: usize) -> Vec<u8> {
    let mut p = vec![0x5a; len];
    p[..6].fill(0xff);
    p[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    p[12..14].copy_from_slice(&ETHERTYPE);
    p[14..22].copy_from_slice(&(len as u64).to_le_bytes());
    p
}

/// capability.h's number of CAP_NET_RAW.
pub const CAP_NET_RAW: u32 = 13;

/// Drops `caps` from the calling thread's effective capabilities
/// (capabilities are per thread: the rest of the process keeps them).
pub fn drop_effective_caps(caps: &[u32]) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const V3: u32 = 0x2008_0522;
    let mut hdr = Header { version: V3, pid: 0 };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset take a header and an array of two data structs
    // for version 3, both live for the calls.
    unsafe {
        assert_eq!(libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()), 0);
        for &cap in caps {
            data[(cap / 32) as usize].effective &= !(1 << (cap % 32));
        }
        assert_eq!(libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()), 0);
    }
}

/// `rounds` round trips between `a` and `b`, each port a mio event source
/// (edge-triggered: every wakeup drains the ring); returns the seconds
/// taken and the events seen.
#[cfg(feature = "mio")]
pub fn mio_ping_pong(a: &mut Netmap, b: &mut Netmap, rounds: u64) -> (f64, u64) {
    use mio::{Events, Interest, Poll, Token};
    use netmap_test_support::packets::{check_frame, make_frame};

    let mut poll = Poll::new().unwrap();
    let interest = Interest::READABLE | Interest::WRITABLE;
    poll.registry().register(a, Token(0), interest).unwrap();
    poll.registry().register(b, Token(1), interest).unwrap();
    let (mut atx, mut arx) = (a.tx_ring(0).unwrap(), a.rx_ring(0).unwrap());
    let (mut btx, mut brx) = (b.tx_ring(0).unwrap(), b.rx_ring(0).unwrap());
    let mut buf = Vec::new();
    let mut events = Events::with_capacity(8);
    let (mut pings, mut pongs, mut wakeups) = (0u64, 0u64, 0u64);
    make_frame(&mut buf, 0);
    atx.send(&buf).unwrap();
    atx.sync().unwrap();
    let t0 = Instant::now();
    while pongs < rounds {
        assert!(t0.elapsed() < PATIENCE, "stalled after {pongs} round trips");
        poll.poll(&mut events, Some(Duration::from_secs(1))).unwrap();
        for ev in events.iter() {
            wakeups += 1;
            if !ev.is_readable() {
                continue;
            }
            if ev.token() == Token(1) {
                brx.sync().unwrap();
                while let Some(f) = brx.recv() {
                    assert_eq!(check_frame(f.payload()), Ok(pings), "B's ping");
                    pings += 1;
                    btx.send(f.payload()).unwrap();
                }
                btx.sync().unwrap();
            } else {
                arx.sync().unwrap();
                let mut next = None;
                while let Some(f) = arx.recv() {
                    assert_eq!(check_frame(f.payload()), Ok(pongs), "A's pong");
                    pongs += 1;
                    next = Some(pongs);
                }
                if let Some(seq) = next.filter(|&s| s < rounds) {
                    make_frame(&mut buf, seq);
                    atx.send(&buf).unwrap();
                    atx.sync().unwrap();
                }
            }
        }
    }
    assert_eq!(pings, rounds);
    (t0.elapsed().as_secs_f64(), wakeups)
}

/// The tests every veth backend passes alike, for ports named
/// `$scheme:va` and `$scheme:vb`: a mio ping-pong (a `Netmap` is a mio
/// event source whatever its backend), a wait on an idle port that keeps
/// its deadline under a signal every 20 ms (each interrupted `epoll_wait`
/// goes on with the time left, neither ending early nor starting over),
/// and a timeout under a millisecond that waits for it rather than
/// rounding to a zero-millisecond `epoll_wait`.
#[macro_export]
macro_rules! veth_tests {
    ($scheme:literal) => {
        #[cfg(feature = "mio")]
        #[test]
        fn mio_readiness_drives_a_ping_pong() {
            let Some(ns) = Netns::new(concat!($scheme, "_mio_ping_pong")) else {
                return;
            };
            let _inside = ns.enter();
            let mut a = open(&format!("{}:{A}", $scheme));
            let mut b = open(&format!("{}:{B}", $scheme));
            const ROUNDS: u64 = 2000;
            let (secs, events) = veth::mio_ping_pong(&mut a, &mut b, ROUNDS);
            eprintln!(
                "mio ping-pong over {}: {ROUNDS} round trips in {secs:.3}s ({:.1} us each), {events} events",
                a.backend(),
                secs * 1e6 / ROUNDS as f64
            );
        }

        #[test]
        fn poll_under_signals_returns_at_its_deadline() {
            let Some(ns) = Netns::new(concat!($scheme, "_poll_under_signals")) else {
                return;
            };
            let _inside = ns.enter();
            let idle = open(&format!("{}:{B}", $scheme));
            signals::poll_keeps_its_deadline(move |t| idle.poll(t), veth::PATIENCE);
        }

        #[test]
        fn sub_millisecond_poll_waits() {
            let Some(ns) = Netns::new(concat!($scheme, "_sub_millisecond_poll_waits")) else {
                return;
            };
            let _inside = ns.enter();
            let idle = open(&format!("{}:{B}", $scheme));
            signals::sub_millisecond_poll_waits(|t| idle.poll(t));
        }
    };
}
