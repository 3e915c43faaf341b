//! mio readiness on the embedded kernel, for real: every wait here is an
//! `epoll_wait` on the port's eventfd, through `mio::Poll`.
//!
//! Every wait is bounded, so a lost wake-up fails a test instead of hanging
//! it. The test that counts descriptors and the one that times wake-ups run
//! alone (the write side of `ALONE`); all others take its read side, so no
//! descriptor is opened while one is counting and no busy thread of another
//! test skews the timings.

#![cfg(feature = "mio")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread;
use std::time::{Duration, Instant};

use mio::event::Source;
use mio::{Events, Interest, Poll, Token};
use netmap_rs::prelude::*;
use netmap_rs::LocalPort;
use netmap_test_support::examples;

mod common;
use common::pair;

static ALONE: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    ALONE.read().unwrap_or_else(PoisonError::into_inner)
}

fn alone() -> RwLockWriteGuard<'static, ()> {
    ALONE.write().unwrap_or_else(PoisonError::into_inner)
}

/// How long a wait may take before the test calls it a lost wake-up.
const LOST: Duration = Duration::from_secs(2);

fn send(port: &Netmap, payload: &[u8]) {
    let mut tx = port.tx_ring(0).unwrap();
    tx.send(payload).unwrap();
    tx.sync().unwrap();
}

/// One event that `expect_events` waits for.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Expect {
    token: Token,
    readable: bool,
    writable: bool,
}

fn readable(token: Token) -> Expect {
    Expect {
        token,
        readable: true,
        writable: false,
    }
}

fn writable(token: Token) -> Expect {
    Expect {
        token,
        readable: false,
        writable: true,
    }
}

/// Polls until each expected event has been seen (an event of its token with
/// at least its readiness), for at most `LOST`; returns the tokens of every
/// event seen.
fn expect_events(poll: &mut Poll, events: &mut Events, want: &[Expect]) -> Vec<Token> {
    let deadline = Instant::now() + LOST;
    let mut missing = want.to_vec();
    let mut seen = Vec::new();
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no event {missing:?} within {LOST:?}");
        poll.poll(events, Some(left)).unwrap();
        for e in events.iter() {
            seen.push(e.token());
            missing.retain(|w| {
                !(w.token == e.token()
                    && (!w.readable || e.is_readable())
                    && (!w.writable || e.is_writable()))
            });
        }
    }
    seen
}

/// Polls for `wait` and asserts that no event comes.
fn expect_no_events(poll: &mut Poll, events: &mut Events, wait: Duration) {
    poll.poll(events, Some(wait)).unwrap();
    let got: Vec<_> = events.iter().map(|e| format!("{e:?}")).collect();
    assert!(got.is_empty(), "unexpected events: {got:?}");
}

#[test]
fn bounds() {
    fn source<T: Source + Send>() {}
    source::<Netmap>();
    // `LocalPort` must not be `Send`: if it were, both impls would apply and
    // `not_send` could not infer `A`. (The compile-fail doctest on
    // `LocalPort` checks the same from a user's side.)
    trait AmbiguousIfSend<A> {
        fn not_send() {}
    }
    impl<T: ?Sized> AmbiguousIfSend<()> for T {}
    impl<T: ?Sized + Send> AmbiguousIfSend<u8> for T {}
    <LocalPort as AmbiguousIfSend<_>>::not_send();
    fn debug<T: std::fmt::Debug>() {}
    debug::<LocalPort>();
}

/// A `LocalPort` lends the descriptor of the port it holds, the one its
/// `Poll` watches, to code generic over `AsFd` and `AsRawFd`.
#[test]
fn a_local_port_lends_its_descriptor() {
    let _g = shared();
    fn raw<T: AsFd + AsRawFd>(t: &T) -> RawFd {
        assert_eq!(t.as_fd().as_raw_fd(), t.as_raw_fd());
        t.as_raw_fd()
    }
    let poll = Poll::new().unwrap();
    let port = NetmapBuilder::new("emu:lendfd{1").build().unwrap();
    let fd = raw(&port);
    let local = port.register_local(&poll, Token(3), Interest::READABLE).unwrap();
    assert_eq!(raw(&local), fd);
    assert_eq!(watched(&poll), vec![fd]);
}

/// A packet waiting before registration is reported at once; a handler that
/// syncs until nothing is left ends the edge, and the next packet gives a new
/// one.
#[test]
fn readable_on_register_and_on_each_new_packet() {
    let _g = shared();
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    let (a, b) = pair("mio_ready", 16);
    send(&a, b"early");
    let b = b.register_local(&poll, Token(1), Interest::READABLE).unwrap();
    expect_events(&mut poll, &mut events, &[readable(Token(1))]);
    assert!(!events.iter().any(|e| e.is_writable()), "READABLE only");
    let mut got = Vec::new();
    assert_eq!(b.drain_rx(|f| got.push(f.to_vec())).unwrap(), 1);
    assert_eq!(got, [b"early".to_vec()]);
    expect_no_events(&mut poll, &mut events, Duration::from_millis(50));
    for i in 0..3u8 {
        send(&a, &[i; 30]);
        expect_events(&mut poll, &mut events, &[readable(Token(1))]);
        assert_eq!(b.drain_rx(|f| assert_eq!(*f, [i; 30])).unwrap(), 1);
    }
    // Packets left unread when the handler returns give no new event: that
    // is the wake-up an early return loses.
    send(&a, b"one");
    expect_events(&mut poll, &mut events, &[readable(Token(1))]);
    {
        let mut rx = b.rx_ring(0).unwrap();
        assert_eq!(rx.sync().unwrap(), 1); // ...and return without reading
    }
    expect_no_events(&mut poll, &mut events, Duration::from_millis(50));
    // More traffic does wake it, and the loop then finds both.
    send(&a, b"two");
    expect_events(&mut poll, &mut events, &[readable(Token(1))]);
    assert_eq!(b.drain_rx(|_| ()).unwrap(), 2);
}

/// Every bound RX ring counts: a packet on the last of four rings wakes the
/// port, and `drain_rx` finds packets on all of them.
#[test]
fn readable_from_any_ring() {
    let _g = shared();
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    let a = NetmapBuilder::new("emu:mio_rings{1")
        .num_tx_rings(4)
        .num_rx_rings(4)
        .build()
        .unwrap();
    let b = NetmapBuilder::new("emu:mio_rings}1").build().unwrap();
    let b = b.register_local(&poll, Token(9), Interest::READABLE).unwrap();
    let mut tx = a.tx_ring(3).unwrap();
    tx.send(b"ring three").unwrap();
    tx.sync().unwrap();
    drop(tx);
    expect_events(&mut poll, &mut events, &[readable(Token(9))]);
    assert_eq!(b.drain_rx(|f| assert_eq!(&*f, b"ring three")).unwrap(), 1);
    for i in 0..4 {
        let mut tx = a.tx_ring(i).unwrap();
        for _ in 0..=i {
            tx.send(&[i as u8; 60]).unwrap();
        }
        tx.sync().unwrap();
    }
    expect_events(&mut poll, &mut events, &[readable(Token(9))]);
    assert_eq!(b.drain_rx(|_| ()).unwrap(), 1 + 2 + 3 + 4);
    // A live ring handle is refused, not silently skipped.
    let rx = b.rx_ring(2).unwrap();
    assert!(matches!(
        b.drain_rx(|_| ()),
        Err(Error::RingInUse { index: 2, .. })
    ));
    drop(rx);
}

/// WRITABLE: a fresh registration is writable; a full ring is not; the
/// peer's draining makes it writable again.
#[test]
fn writable_when_the_peer_frees_room() {
    let _g = shared();
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    let (a, b) = pair("mio_room", 8);
    let a = a.register_local(&poll, Token(2), Interest::WRITABLE).unwrap();
    expect_events(&mut poll, &mut events, &[writable(Token(2))]);
    let mut tx = a.tx_ring(0).unwrap();
    while tx.space() > 0 {
        tx.send(b"fill").unwrap();
    }
    tx.sync().unwrap();
    assert_eq!(tx.space(), 0);
    expect_no_events(&mut poll, &mut events, Duration::from_millis(50));
    assert_eq!(b.drain_rx(|_| ()).unwrap(), 7);
    expect_events(&mut poll, &mut events, &[writable(Token(2))]);
    tx.sync().unwrap();
    assert_eq!(tx.space(), 7, "the room the peer freed");
}

/// Reregistering moves events to the new token, for both the plain `Source`
/// and `LocalPort`, and reports what is already waiting at once.
#[test]
fn reregister_delivers_under_the_new_token() {
    let _g = shared();
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    let (a, b) = pair("mio_rereg", 16);

    let mut b = b.register_local(&poll, Token(1), Interest::READABLE).unwrap();
    send(&a, b"1");
    expect_events(&mut poll, &mut events, &[readable(Token(1))]);
    b.drain_rx(|_| ()).unwrap();
    b.reregister(&poll, Token(2), Interest::READABLE).unwrap();
    assert_eq!(b.token(), Token(2));
    send(&a, b"2");
    let seen = expect_events(&mut poll, &mut events, &[readable(Token(2))]);
    assert!(seen.iter().all(|&t| t == Token(2)), "{seen:?}");
    // Already waiting when reregistered: reported under the new token.
    b.reregister(&poll, Token(3), Interest::READABLE).unwrap();
    let seen = expect_events(&mut poll, &mut events, &[readable(Token(3))]);
    assert!(seen.iter().all(|&t| t == Token(3)), "{seen:?}");
    assert_eq!(b.drain_rx(|f| assert_eq!(&*f, b"2")).unwrap(), 1);
    // Only with the Poll it is registered with.
    let other = Poll::new().unwrap();
    let e = b.reregister(&other, Token(4), Interest::READABLE).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert_eq!(b.token(), Token(3));

    // The plain `Source` impl, through the Registry.
    let mut b = b.into_inner(&poll).unwrap();
    poll.registry()
        .register(&mut b, Token(5), Interest::READABLE)
        .unwrap();
    send(&a, b"5");
    expect_events(&mut poll, &mut events, &[readable(Token(5))]);
    b.drain_rx(|_| ()).unwrap();
    poll.registry()
        .reregister(&mut b, Token(6), Interest::READABLE | Interest::WRITABLE)
        .unwrap();
    send(&a, b"6");
    let seen = expect_events(&mut poll, &mut events, &[readable(Token(6))]);
    assert!(seen.iter().all(|&t| t == Token(6)), "{seen:?}");
    poll.registry().deregister(&mut b).unwrap();
}

/// A `Poll` dropped and another made in its place, on the same descriptor
/// number, is not the `Poll` a `LocalPort` was registered with.
#[test]
fn a_new_poll_on_a_reused_number_is_refused() {
    // Alone: no other test opens a descriptor between the drop and the new
    // `Poll`, so the new one gets the lowest free number, the old one's.
    let _g = alone();
    let (a, b) = pair("mio_reuse", 8);
    let poll = Poll::new().unwrap();
    let old = poll.as_raw_fd();
    let mut b = b.register_local(&poll, Token(1), Interest::READABLE).unwrap();
    drop(poll);
    let poll = Poll::new().unwrap();
    assert_eq!(poll.as_raw_fd(), old, "the descriptor number was not reused");
    let e = b.reregister(&poll, Token(2), Interest::READABLE).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("another mio::Poll"), "{e}");
    assert_eq!(b.token(), Token(1));
    let e = b.into_inner(&poll).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    drop(a);
}

/// The descriptors (name -> what it is) this process has open.
fn open_fds() -> BTreeMap<RawFd, String> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let fd = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((fd, target.display().to_string()))
        })
        .collect()
}

/// The descriptors that the epoll instance behind `poll` watches, from
/// `/proc/self/fdinfo` (`tfd:` lines).
fn watched(poll: &Poll) -> Vec<RawFd> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", poll.as_raw_fd())).unwrap();
    info.lines()
        .filter_map(|l| l.strip_prefix("tfd:"))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn deregister_and_drop_leave_no_fd_behind() {
    let _g = alone();
    let before = open_fds();
    {
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(8);
        let (a, mut b) = pair("mio_fds", 16);
        let fd = b.as_raw_fd();
        assert_eq!(watched(&poll), []);

        // The plain Source impl.
        poll.registry()
            .register(&mut b, Token(1), Interest::READABLE)
            .unwrap();
        assert_eq!(watched(&poll), [fd]);
        send(&a, b"x");
        expect_events(&mut poll, &mut events, &[readable(Token(1))]);
        poll.registry().deregister(&mut b).unwrap();
        assert_eq!(watched(&poll), []);
        b.drain_rx(|_| ()).unwrap();
        send(&a, b"y");
        expect_no_events(&mut poll, &mut events, Duration::from_millis(50));
        b.drain_rx(|_| ()).unwrap();

        // LocalPort: into_inner deregisters.
        let b = b.register_local(&poll, Token(2), Interest::READABLE).unwrap();
        assert_eq!(watched(&poll), [fd]);
        let b = b.into_inner(&poll).unwrap();
        assert_eq!(watched(&poll), []);

        // Dropping a registered LocalPort closes the port, which removes it.
        let b = b.register_local(&poll, Token(3), Interest::READABLE).unwrap();
        assert_eq!(watched(&poll), [fd]);
        drop(b);
        assert_eq!(watched(&poll), []);
        drop(a);
    }
    let after = open_fds();
    assert_eq!(before, after, "descriptors left behind");
}

/// Latency percentiles of a sorted sample, for the log.
fn percentiles(sorted: &[Duration]) -> String {
    let at = |p: f64| sorted[((sorted.len() - 1) as f64 * p) as usize];
    format!(
        "p50 {:?}, p99 {:?}, p99.9 {:?}, max {:?}",
        at(0.5),
        at(0.99),
        at(0.999),
        sorted[sorted.len() - 1]
    )
}

#[derive(Debug, Default)]
struct Side {
    /// From the peer's txsync to this side's `Poll::poll` returning.
    latencies: Vec<Duration>,
    polls: u64,
    /// Polls that returned with nothing to read.
    empty: u64,
}

/// 10,000 single-packet round trips between two threads, each blocked in
/// its own `Poll`: every wake-up comes within 100 ms of the peer's txsync,
/// none is lost (a 2 s silence fails), and hardly any poll returns with
/// nothing to read.
#[test]
fn ping_pong_wakes_every_time_within_100ms() {
    let _g = alone();
    const N: u64 = 10_000;
    let (a, b) = pair("mio_pingpong", 64);
    let epoch = Instant::now();

    let side = move |port: Netmap, pinger: bool| -> Result<Side, String> {
        let who = if pinger { "pinger" } else { "ponger" };
        let mut poll = Poll::new().map_err(|e| e.to_string())?;
        let mut events = Events::with_capacity(4);
        let port = port
            .register_local(&poll, Token(0), Interest::READABLE)
            .map_err(|e| e.to_string())?;
        let mut tx = port.tx_ring(0).map_err(|e| e.to_string())?;
        let mut rx = port.rx_ring(0).map_err(|e| e.to_string())?;
        // seq (8) | nanoseconds since `epoch` just before the txsync (8).
        let mut send = |seq: u64| -> Result<(), Error> {
            let mut p = [0u8; 60];
            p[..8].copy_from_slice(&seq.to_le_bytes());
            p[8..16].copy_from_slice(&(epoch.elapsed().as_nanos() as u64).to_le_bytes());
            tx.send(&p)?;
            tx.sync()
        };
        let mut s = Side::default();
        if pinger {
            send(0).map_err(|e| e.to_string())?;
        }
        let mut next = 0u64;
        while next < N {
            poll.poll(&mut events, Some(LOST)).map_err(|e| e.to_string())?;
            let woke = epoch.elapsed();
            if events.is_empty() {
                return Err(format!(
                    "{who}: lost wake-up: nothing for {LOST:?} waiting for {next}"
                ));
            }
            s.polls += 1;
            // Sync first, drain, repeat until a sync finds nothing; reply
            // only then, so that the peer's next packet needs a new wake-up.
            let mut got = Vec::new();
            while rx.sync().map_err(|e| e.to_string())? > 0 {
                for f in rx.iter() {
                    let seq = u64::from_le_bytes(f[..8].try_into().unwrap());
                    let sent = u64::from_le_bytes(f[8..16].try_into().unwrap());
                    got.push((seq, Duration::from_nanos(sent)));
                }
            }
            if got.is_empty() {
                s.empty += 1;
                continue;
            }
            for (seq, sent) in got {
                if seq != next {
                    return Err(format!("{who}: got packet {seq}, expected {next}"));
                }
                s.latencies.push(woke.saturating_sub(sent));
                next += 1;
                if !pinger {
                    send(seq).map_err(|e| e.to_string())?;
                }
            }
            if pinger && next < N {
                send(next).map_err(|e| e.to_string())?;
            }
        }
        Ok(s)
    };
    let ponger = thread::spawn(move || side(b, false));
    let pinger = thread::spawn(move || side(a, true));
    let pinger = pinger.join().unwrap();
    let ponger = ponger.join().unwrap();
    let (pinger, ponger) = (pinger.unwrap(), ponger.unwrap());

    let mut all: Vec<Duration> = pinger
        .latencies
        .iter()
        .chain(&ponger.latencies)
        .copied()
        .collect();
    all.sort();
    let polls = pinger.polls + ponger.polls;
    let empty = pinger.empty + ponger.empty;
    println!(
        "{} wake-ups in {:?}: {}; {empty} of {polls} polls found nothing",
        all.len(),
        epoch.elapsed(),
        percentiles(&all)
    );
    assert_eq!(all.len() as u64, 2 * N, "one wake-up per packet each way");
    let max = *all.last().unwrap();
    assert!(max < Duration::from_millis(100), "a wake-up took {max:?}");
    assert!(
        empty * 1000 <= 5 * polls,
        "{empty} of {polls} polls returned with nothing to read"
    );
}

/// 1,000,000 packets cross a 64-slot pipe driven only by mio readiness: the
/// producer waits for WRITABLE whenever a sync leaves the ring full, the
/// consumer for READABLE; every packet arrives, in order.
#[test]
fn a_million_packets_through_64_slots_on_readiness_alone() {
    let _g = shared();
    const N: u64 = 1_000_000;
    let (a, b) = pair("mio_million", 64);
    let start = Instant::now();

    let producer = thread::spawn(move || -> Result<(u64, u64), String> {
        let mut poll = Poll::new().map_err(|e| e.to_string())?;
        let mut events = Events::with_capacity(4);
        let port = a
            .register_local(&poll, Token(0), Interest::WRITABLE)
            .map_err(|e| e.to_string())?;
        let mut tx = port.tx_ring(0).map_err(|e| e.to_string())?;
        assert_eq!(tx.num_slots(), 64);
        let (mut seq, mut full, mut idle) = (0u64, 0u64, 0u64);
        loop {
            // Fill until a sync leaves no room (or everything is sent).
            loop {
                while seq < N && tx.space() > 0 {
                    let mut p = [0u8; 16];
                    p[..8].copy_from_slice(&seq.to_le_bytes());
                    p[8..].copy_from_slice(&(!seq).to_le_bytes());
                    tx.send(&p).map_err(|e| e.to_string())?;
                    seq += 1;
                }
                tx.sync().map_err(|e| e.to_string())?;
                if seq == N {
                    return Ok((full, idle));
                }
                if tx.space() == 0 {
                    break;
                }
            }
            full += 1;
            // Wait for WRITABLE; an event that brings no room is idle.
            loop {
                poll.poll(&mut events, Some(LOST)).map_err(|e| e.to_string())?;
                if events.is_empty() {
                    return Err(format!(
                        "lost WRITABLE: the ring stayed full at {seq} for {LOST:?}"
                    ));
                }
                tx.sync().map_err(|e| e.to_string())?;
                if tx.space() > 0 {
                    break;
                }
                idle += 1;
            }
        }
    });
    let consumer = thread::spawn(move || -> Result<(u64, u64), String> {
        let mut poll = Poll::new().map_err(|e| e.to_string())?;
        let mut events = Events::with_capacity(4);
        let port = b
            .register_local(&poll, Token(1), Interest::READABLE)
            .map_err(|e| e.to_string())?;
        let mut rx = port.rx_ring(0).map_err(|e| e.to_string())?;
        let (mut next, mut polls, mut empty) = (0u64, 0u64, 0u64);
        while next < N {
            poll.poll(&mut events, Some(LOST)).map_err(|e| e.to_string())?;
            if events.is_empty() {
                return Err(format!("lost READABLE: nothing for {LOST:?} waiting for {next}"));
            }
            polls += 1;
            let before = next;
            while rx.sync().map_err(|e| e.to_string())? > 0 {
                for f in rx.iter() {
                    let seq = u64::from_le_bytes(f[..8].try_into().unwrap());
                    let check = u64::from_le_bytes(f[8..16].try_into().unwrap());
                    if f.len() != 16 || seq != next || check != !seq {
                        return Err(format!("expected packet {next}, got {seq} ({} bytes)", f.len()));
                    }
                    next += 1;
                }
            }
            if next == before {
                empty += 1;
            }
        }
        Ok((polls, empty))
    });
    let produced = producer.join().unwrap();
    let consumed = consumer.join().unwrap();
    let ((full, idle), (polls, empty)) = (produced.unwrap(), consumed.unwrap());
    println!(
        "{N} packets in {:?}: the producer filled the ring {full} times and got WRITABLE back each time \
         ({idle} events without room); the consumer woke {polls} times ({empty} with nothing)",
        start.elapsed()
    );
    assert!(
        full > 0,
        "the producer never had to wait: the test proves nothing"
    );
}

/// Runs `mio_echo` with `args`, waits until its client reports echoes, sends
/// `signal`, and expects a clean exit within a few seconds.
fn echo_stops_on(args: &[&str], signal: i32, name: &str) {
    let _g = shared();
    let Some(bin) = examples::binary(&format!("mio_echo stopping on {name}"), "mio_echo") else {
        return;
    };
    let mut child = Command::new(&bin)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // A counter line whose client has had packets back.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut log = Vec::new();
    let echoing = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let back = line
                    .split(" back,")
                    .next()
                    .and_then(|s| s.rsplit(' ').next())
                    .and_then(|n| n.parse::<u64>().ok());
                log.push(line);
                if back.is_some_and(|n| n > 0) {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    // SAFETY: kill takes no pointers; the pid is our child's, not yet reaped.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(rc, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let Some(status) = status else {
        child.kill().unwrap();
        child.wait().unwrap();
        panic!("mio_echo did not stop within 5 s of {name}; output: {log:#?}");
    };
    reader.join().unwrap();
    log.extend(lines.try_iter());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(echoing, "no echoes within 20 s; output: {log:#?}, stderr: {err}");
    assert!(status.success(), "mio_echo exited with {status}; stderr: {err}");
    let last = log.last().cloned().unwrap_or_default();
    assert!(
        last.starts_with(&format!("stopped by {name}")),
        "last line: {last:?}"
    );
}

#[test]
fn mio_echo_runs_and_stops_on_sigint() {
    echo_stops_on(&[], libc::SIGINT, "SIGINT");
}

#[test]
fn mio_echo_threads_stop_on_sigterm() {
    echo_stops_on(&["--threads"], libc::SIGTERM, "SIGTERM");
}
