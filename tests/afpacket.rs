//! The AF_PACKET backend on real kernel networking: a veth pair in a network
//! namespace that each test creates and always deletes (see
//! `netmap_test_support::netns`). Without root the tests print why they skip.
//!
//! Ports are opened on the test thread, which `Netns::enter` has moved into
//! the namespace; helper threads get ports moved to them.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use netmap_rs::prelude::*;
use netmap_rs::{Fallback, NetmapBuilder as Builder};

use netmap_test_support::netns::{Netns, A, B};
use netmap_test_support::packets::{check_frame, ipv4_checksum, make_frame};

#[path = "common/veth.rs"]
mod veth;
use netmap_test_support::{fork, signals};
use veth::{assert_stamped_since, drop_effective_caps, send_wait, sized_frame, CAP_NET_RAW, PATIENCE};

/// An Ethernet header's length.
const HDR: usize = 14;

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
    let tx_port = open(&format!("afpacket:{A}"));
    let rx_port = open(&format!("afpacket:{B}"));
    assert_eq!(tx_port.backend(), BackendKind::AfPacket);
    assert!(!tx_port.is_fallback(), "an afpacket: name asked for AF_PACKET");
    let (_, rx_slots) = rx_port.num_slots();

    const COUNT: u64 = 100_000;
    // Flow control: keep fewer frames in flight than the RX ring holds, so
    // a slow receiver cannot make the kernel drop (see the loss note below).
    let window = u64::from(rx_slots) / 2;
    let received = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let receiver = {
        let (received, done) = (Arc::clone(&received), Arc::clone(&done));
        thread::spawn(move || -> Result<(Netmap, u64, u64, u64), String> {
            let port = rx_port;
            let mut rx = port.rx_ring(0).map_err(|e| e.to_string())?;
            let (mut next, mut got, mut lost) = (0u64, 0u64, 0u64);
            let mut last = Instant::now();
            while next < COUNT {
                rx.sync().map_err(|e| e.to_string())?;
                let mut any = false;
                for frame in rx.iter() {
                    let seq = check_frame(frame.payload())?;
                    if seq < next {
                        return Err(format!("frame {seq} duplicated or reordered (expected {next})"));
                    }
                    lost += seq - next;
                    next = seq + 1;
                    got += 1;
                    any = true;
                }
                received.store(next, Ordering::Release);
                if any {
                    last = Instant::now();
                } else {
                    if done.load(Ordering::Acquire) && last.elapsed() > Duration::from_secs(1) {
                        break;
                    }
                    if last.elapsed() > PATIENCE {
                        return Err(format!("stalled after {got} frames"));
                    }
                    port.poll(Some(Duration::from_millis(50)))
                        .map_err(|e| e.to_string())?;
                }
            }
            drop(rx);
            Ok((port, got, lost, next))
        })
    };

    let mut tx = tx_port.tx_ring(0).unwrap();
    let mut buf = Vec::new();
    let t0 = Instant::now();
    for seq in 0..COUNT {
        while seq >= received.load(Ordering::Acquire) + window {
            tx.sync().unwrap();
            std::hint::spin_loop();
            assert!(
                t0.elapsed() < PATIENCE * 2,
                "the receiver stopped at {}",
                received.load(Ordering::Relaxed)
            );
        }
        make_frame(&mut buf, seq);
        send_wait(&tx_port, &mut tx, &buf);
        if seq % 64 == 63 {
            tx.sync().unwrap();
        }
    }
    tx.sync().unwrap();
    done.store(true, Ordering::Release);
    let (rx_port, got, lost, next) = receiver.join().expect("receiver panicked").unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let (seen, dropped) = kernel_stats(&rx_port);
    eprintln!(
        "{got} of {COUNT} frames of 60..=1514 bytes crossed {A} -> {B} intact in {secs:.2}s \
         ({:.0} frames/s); lost {} (gaps {lost}, tail {}); the kernel saw {seen} and dropped {dropped}",
        got as f64 / secs,
        COUNT - got,
        COUNT - next
    );
    // Every loss is one the kernel counted as "RX ring full": with the
    // window below the ring size there is none, since veth hands each frame
    // to the receiving socket synchronously, in the sender's system call.
    assert_eq!(COUNT - got, u64::from(dropped), "losses the kernel did not count");
    assert_eq!(got, COUNT, "lost {} frames", COUNT - got);

    // Now overrun the ring on purpose: send while nobody receives. The
    // kernel fills all of the ring's frames and drops the rest, and counts
    // them; nothing else is lost.
    const BURST: u64 = 5000;
    let mut rx = rx_port.rx_ring(0).unwrap();
    // Hand the last frames read back to the kernel (a sync does), so that
    // the whole ring is free.
    assert_eq!(rx.sync().unwrap(), 0);
    for seq in COUNT..COUNT + BURST {
        make_frame(&mut buf, seq);
        send_wait(&tx_port, &mut tx, &buf);
    }
    tx.sync().unwrap();
    let mut got = 0u64;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(300) {
        rx.sync().unwrap();
        for f in rx.iter() {
            check_frame(f.payload()).unwrap();
            got += 1;
        }
    }
    let (seen, dropped) = kernel_stats(&rx_port);
    eprintln!(
        "overrun: {BURST} sent, {got} received, {dropped} dropped by the kernel (ring full), {seen} seen"
    );
    assert_eq!(got, u64::from(rx_slots), "a full ring's worth arrives");
    assert_eq!(
        got + u64::from(dropped),
        BURST,
        "every loss is a counted ring-full drop"
    );
}

/// The kernel's `PACKET_STATISTICS` of a one-ring AF_PACKET port (whose
/// descriptor is its socket): packets seen and dropped since the last call.
fn kernel_stats(port: &Netmap) -> (u32, u32) {
    let mut st = [0u32; 2];
    let mut len = std::mem::size_of_val(&st) as libc::socklen_t;
    // SAFETY: PACKET_STATISTICS fills a `struct tpacket_stats` (two u32s);
    // `st` is one, live and writable, and `len` says its size.
    let r = unsafe {
        libc::getsockopt(
            port.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            st.as_mut_ptr().cast(),
            &mut len,
        )
    };
    assert_eq!(r, 0, "PACKET_STATISTICS: {}", std::io::Error::last_os_error());
    (st[0], st[1])
}

/// An IPv4/UDP frame of flow `flow` (its source port), to a unicast MAC
/// that is not the receiver's: the receiving host stack drops it at once.
fn udp_frame(flow: u16, seq: u32) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00]);
    let total: u16 = 20 + 8 + 8;
    f.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        17,
        0,
        0,
    ]);
    f.extend_from_slice(&[10, 0, 0, 1, 10, 1, 0, 1]);
    let sum = ipv4_checksum(&f[HDR..HDR + 20]);
    f[HDR + 10..HDR + 12].copy_from_slice(&sum.to_be_bytes());
    let sport = 10_000 + flow;
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&4789u16.to_be_bytes());
    f.extend_from_slice(&16u16.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&u32::from(flow).to_le_bytes());
    f.extend_from_slice(&seq.to_le_bytes());
    f.resize(60, 0);
    f
}

fn flow_of(p: &[u8]) -> Option<u16> {
    (p.len() >= 50 && p[12..14] == [0x08, 0x00]).then(|| u16::from_le_bytes([p[42], p[43]]))
}

/// Sends `flows` UDP flows of `per_flow` frames from `tx_port`, draining
/// `rx` (port, ring index) pairs after each burst; returns, per ring, the
/// flows seen there and how many frames it got.
fn spread(tx_port: &Netmap, rx: &[(&Netmap, usize)], flows: u16, per_flow: u32) -> Vec<(Vec<u16>, u64)> {
    let mut tx = tx_port.tx_ring(0).unwrap();
    let mut rings: Vec<_> = rx.iter().map(|(p, i)| p.rx_ring(*i).unwrap()).collect();
    let mut seen: Vec<(Vec<u16>, u64)> = vec![(Vec::new(), 0); rings.len()];
    let drain = |rings: &mut Vec<RxRing<'_>>, seen: &mut Vec<(Vec<u16>, u64)>| {
        for (k, r) in rings.iter_mut().enumerate() {
            r.sync().unwrap();
            while let Some(f) = r.recv() {
                if let Some(flow) = flow_of(f.payload()) {
                    if !seen[k].0.contains(&flow) {
                        seen[k].0.push(flow);
                    }
                    seen[k].1 += 1;
                }
            }
        }
    };
    let total = u64::from(flows) * u64::from(per_flow);
    for seq in 0..per_flow {
        for flow in 0..flows {
            send_wait(tx_port, &mut tx, &udp_frame(flow, seq));
        }
        tx.sync().unwrap();
        drain(&mut rings, &mut seen);
    }
    let t0 = Instant::now();
    while seen.iter().map(|s| s.1).sum::<u64>() < total && t0.elapsed() < PATIENCE {
        thread::sleep(Duration::from_millis(5));
        drain(&mut rings, &mut seen);
    }
    seen
}

fn check_spread(seen: &[(Vec<u16>, u64)], flows: u16, per_flow: u32) {
    let total: u64 = seen.iter().map(|s| s.1).sum();
    assert_eq!(
        total,
        u64::from(flows) * u64::from(per_flow),
        "frames lost: {seen:?}"
    );
    for flow in 0..flows {
        let rings = seen.iter().filter(|s| s.0.contains(&flow)).count();
        assert_eq!(rings, 1, "flow {flow} was split over {rings} rings");
    }
    let used = seen.iter().filter(|s| s.1 > 0).count();
    eprintln!(
        "fanout: {flows} flows over {} rings: {:?} frames per ring",
        seen.len(),
        seen.iter().map(|s| s.1).collect::<Vec<_>>()
    );
    assert!(used > 1, "every flow landed in one ring: {seen:?}");
}

#[test]
fn fanout_spreads_flows_over_rings() {
    let Some(ns) = Netns::new("fanout_spreads_flows_over_rings") else {
        return;
    };
    let _inside = ns.enter();
    let tx_port = Builder::new(&format!("afpacket:{A}/T")).build().unwrap();
    assert_eq!(tx_port.num_rx_rings(), 0, "/T: TX rings only");

    // One port with four RX rings: four sockets in one fanout group.
    let rx_port = Builder::new(&format!("afpacket:{B}"))
        .num_rx_rings(4)
        .build()
        .unwrap();
    assert_eq!((rx_port.num_rx_rings(), rx_port.num_tx_rings()), (4, 4));
    // Its descriptor, an epoll set of the four sockets, turns readable for
    // event loops when any ring makes progress: packets in an RX ring, or
    // room in a TX ring (which a fresh port has, so it is readable once at
    // registration).
    {
        use mio::unix::SourceFd;
        use mio::{Events, Interest, Poll, Token};
        let mut poll = Poll::new().unwrap();
        let fd = rx_port.as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), Token(7), Interest::READABLE)
            .unwrap();
        let mut events = Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::from_millis(0))).unwrap();
        assert!(
            events.iter().all(|e| e.is_readable() && !e.is_writable()),
            "{events:?}"
        );
        poll.poll(&mut events, Some(Duration::from_millis(0))).unwrap();
        assert!(
            events.is_empty(),
            "edge-triggered: one report per change: {events:?}"
        );
        let mut tx = tx_port.tx_ring(0).unwrap();
        for flow in 0..8 {
            tx.send(&udp_frame(flow, 0)).unwrap();
        }
        tx.sync().unwrap();
        poll.poll(&mut events, Some(PATIENCE)).unwrap();
        assert!(
            events.iter().any(|e| e.token() == Token(7) && e.is_readable()),
            "{events:?}"
        );
        let mut got = 0;
        for i in 0..4 {
            let mut r = rx_port.rx_ring(i).unwrap();
            r.sync().unwrap();
            got += r.iter().count();
        }
        assert_eq!(got, 8);
    }
    let rings: Vec<_> = (0..4).map(|i| (&rx_port, i)).collect();
    let seen = spread(&tx_port, &rings, 64, 20);
    check_spread(&seen, 64, 20);
    drop(rx_port);

    // One port per ring, as thread-per-ring programs open them: they join
    // one group too, and a ring cannot be bound twice.
    let ports = Builder::new(&format!("afpacket:{B}"))
        .num_rx_rings(3)
        .build_per_ring()
        .unwrap();
    assert_eq!(ports.len(), 3);
    for (i, p) in ports.iter().enumerate() {
        assert_eq!(p.rx_ring_ids(), i as u16..i as u16 + 1);
    }
    let again = Builder::new(&format!("afpacket:{B}-1")).num_rx_rings(3).build();
    assert!(matches!(again, Err(Error::Busy { .. })), "{again:?}");
    let other_shape = Builder::new(&format!("afpacket:{B}-0")).num_rx_rings(2).build();
    assert!(matches!(other_shape, Err(Error::Busy { .. })), "{other_shape:?}");
    let rings: Vec<_> = ports.iter().map(|p| (p, 0)).collect();
    let seen = spread(&tx_port, &rings, 64, 20);
    check_spread(&seen, 64, 20);
}

veth_tests!("afpacket");

#[test]
fn forward_on_one_port_copies_and_across_ports_refuses() {
    let Some(ns) = Netns::new("forward_on_one_port_copies_and_across_ports_refuses") else {
        return;
    };
    let _inside = ns.enter();
    let a = open(&format!("afpacket:{A}"));
    // Two ports of B's rings must both share them.
    // SAFETY: AF_PACKET ports have rings and memory of their own, so `b` and
    // `c` never alias; `c` uses only its TX ring, for the refused forward.
    let shared = || unsafe { Builder::new(&format!("afpacket:{B}")).share_rings() };
    let b = shared().build().unwrap();
    let c = shared().build().unwrap();
    assert_ne!(
        b.mem_id(),
        c.mem_id(),
        "every AF_PACKET port has memory of its own"
    );

    const N: u64 = 300;
    let mut atx = a.tx_ring(0).unwrap();
    let mut buf = Vec::new();
    for seq in 0..N {
        make_frame(&mut buf, seq);
        send_wait(&a, &mut atx, &buf);
    }
    atx.sync().unwrap();

    // B forwards what it gets back out of its own TX ring (to A).
    {
        let mut brx = b.rx_ring(0).unwrap();
        let mut btx = b.tx_ring(0).unwrap();
        let mut ctx = c.tx_ring(0).unwrap();
        let mut forwarded = 0;
        let t0 = Instant::now();
        while forwarded < N {
            assert!(t0.elapsed() < PATIENCE);
            let since = SystemTime::now();
            brx.sync().unwrap();
            assert_stamped_since(&brx, since);
            if forwarded == 0 {
                let f = brx.recv().expect("a frame arrived");
                match ctx.forward(f) {
                    Err(Error::MemoryMismatch { a, b }) => {
                        assert!(a.contains("AF_PACKET") && b.contains("AF_PACKET"), "{a} / {b}");
                    }
                    other => panic!("forward across AF_PACKET ports: {other:?}"),
                }
                // The refused frame was consumed; B forwards the rest. Send
                // it again so that A still gets all N.
                make_frame(&mut buf, 0);
                send_wait(&b, &mut btx, &buf);
                forwarded += 1;
            }
            // One frame at a time, alternating which ring syncs first: RX
            // first makes the backend copy when the RX slot is released, TX
            // first when the TX slot is sent.
            let Some(f) = brx.recv() else {
                b.poll(Some(Duration::from_millis(50))).unwrap();
                continue;
            };
            btx.forward(f).unwrap();
            if forwarded % 2 == 0 {
                brx.sync().unwrap();
                btx.sync().unwrap();
            } else {
                btx.sync().unwrap();
                brx.sync().unwrap();
            }
            forwarded += 1;
        }
    }
    let mut arx = a.rx_ring(0).unwrap();
    let mut seqs = Vec::new();
    let t0 = Instant::now();
    while (seqs.len() as u64) < N && t0.elapsed() < PATIENCE {
        arx.sync().unwrap();
        while let Some(f) = arx.recv() {
            seqs.push(check_frame(f.payload()).unwrap());
        }
        if (seqs.len() as u64) < N {
            a.poll(Some(Duration::from_millis(50))).unwrap();
        }
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (0..N).collect::<Vec<_>>(),
        "every forwarded frame came back intact"
    );
}

#[test]
fn errors_name_what_to_do() {
    let Some(ns) = Netns::new("errors_name_what_to_do") else {
        return;
    };
    let _inside = ns.enter();
    match Builder::new("afpacket:nmrsnone0").build() {
        Err(Error::InterfaceNotFound { name }) => assert_eq!(name, "afpacket:nmrsnone0"),
        other => panic!("unknown interface: {other:?}"),
    }
    ns.ip(&["link", "set", A, "down"]).unwrap();
    match Builder::new(&format!("afpacket:{A}")).build() {
        Err(e @ Error::InterfaceDown { .. }) => {
            assert!(e.to_string().contains(&format!("ip link set {A} up")), "{e}");
        }
        other => panic!("interface down: {other:?}"),
    }
    ns.ip(&["link", "set", A, "up"]).unwrap();
    match Builder::new(&format!("afpacket:{A}-3")).num_rx_rings(2).build() {
        Err(e @ Error::Unsupported { .. }) => assert!(e.to_string().contains("ring pair 3"), "{e}"),
        other => panic!("ring out of range: {other:?}"),
    }

    // Without CAP_NET_RAW (dropped from this thread's effective set only:
    // capabilities are per thread) the error names the capability.
    let inner = thread::spawn(|| {
        drop_effective_caps(&[CAP_NET_RAW]);
        Builder::new(&format!("afpacket:{A}")).build().map(drop)
    });
    match inner.join().unwrap() {
        Err(e @ Error::PermissionDenied { .. }) => assert!(e.to_string().contains("CAP_NET_RAW"), "{e}"),
        other => panic!("without CAP_NET_RAW: {other:?}"),
    }
}

/// Waits for the frame made by `sized_frame(len)` on `rx`.
fn recv_sized(port: &Netmap, rx: &mut RxRing<'_>, len: usize) {
    let t0 = Instant::now();
    loop {
        assert!(t0.elapsed() < PATIENCE, "the {len}-byte frame did not arrive");
        rx.sync().unwrap();
        while let Some(f) = rx.recv() {
            if f.payload() == &sized_frame(len)[..] {
                return;
            }
        }
        port.poll(Some(Duration::from_millis(50))).unwrap();
    }
}

#[test]
fn max_packet_is_the_mtu_and_longer_fails_at_send() {
    let Some(ns) = Netns::new("max_packet_is_the_mtu_and_longer_fails_at_send") else {
        return;
    };
    let _inside = ns.enter();
    // The default MTU, then a jumbo one (and larger frames with it).
    for mtu in [1500usize, 9000] {
        for dev in [A, B] {
            ns.ip(&["link", "set", dev, "mtu", &mtu.to_string()]).unwrap();
        }
        let a = open(&format!("afpacket:{A}"));
        let b = open(&format!("afpacket:{B}"));
        // The MTU, an Ethernet header and a VLAN tag: what the veth takes.
        let max = mtu + 18;
        assert_eq!(a.max_packet(), max, "MTU {mtu}");
        let mut tx = a.tx_ring(0).unwrap();
        assert_eq!(tx.max_packet(), max);
        assert!(tx.buf_size() > max + 18, "a frame has room past the limit");
        let mut rx = b.rx_ring(0).unwrap();

        // The longest packet crosses whole.
        tx.send(&sized_frame(max)).unwrap();
        tx.sync().unwrap();
        recv_sized(&b, &mut rx, max);

        // One byte more fails at once, in every way of sending, and no
        // sync hears of it.
        let over = sized_frame(max + 1);
        match tx.send(&over) {
            Err(Error::PacketTooLarge { len, max: m }) => assert_eq!((len, m), (max + 1, max)),
            other => panic!("MTU {mtu}: {other:?}"),
        }
        let mut batch = tx.batch();
        match batch.push(max + 1) {
            Err(Error::PacketTooLarge { max: m, .. }) => assert_eq!(m, max),
            other => panic!("MTU {mtu}: {:?}", other.map(|b| b.len())),
        }
        assert!(batch.is_empty());
        drop(batch);
        assert!(matches!(a.inject(&over), Err(Error::PacketTooLarge { .. })));
        tx.sync().unwrap();
        assert_eq!(tx.space(), tx.num_slots() - 1, "nothing was staged");

        // `push` and `inject` take the longest packet too.
        let mut batch = tx.batch();
        batch.push(max).unwrap().copy_from_slice(&sized_frame(max));
        batch.commit();
        tx.sync().unwrap();
        recv_sized(&b, &mut rx, max);
        drop(tx);
        a.inject(&sized_frame(max)).unwrap();
        a.txsync().unwrap();
        recv_sized(&b, &mut rx, max);
    }
}

#[test]
fn netmap_names_fall_back_only_when_allowed() {
    let Some(ns) = Netns::new("netmap_names_fall_back_only_when_allowed") else {
        return;
    };
    let _inside = ns.enter();
    let report = netmap_rs::probe::probe_port_with(&format!("netmap:{A}"), Fallback::AfPacket);
    if report.device.is_available() {
        eprintln!("skipping the fallback checks: this host has netmap ({report})");
        return;
    }
    // Not allowed: an error that says AF_PACKET could serve it.
    let e = Builder::new(&format!("netmap:{A}")).build().unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::Unavailable { .. }), "{text}");
    assert!(text.contains("AF_PACKET: not allowed"), "{text}");

    // Allowed: it opens on AF_PACKET, and says why.
    let a = Builder::new(&format!("netmap:{A}"))
        .fallback(Fallback::AfPacket)
        .build()
        .unwrap();
    let b = Builder::new(B).fallback(Fallback::AfPacket).build().unwrap();
    assert_eq!(a.backend(), BackendKind::AfPacket);
    assert!(a.is_fallback() && b.is_fallback());
    let why = a
        .refusals()
        .iter()
        .find(|r| r.backend == BackendKind::Kernel)
        .unwrap();
    assert!(why.reason.contains("/dev/netmap"), "{why}");
    let text = report.to_string();
    assert!(
        text.contains("would open with AF_PACKET, the fallback allowed"),
        "{text}"
    );
    assert!(text.contains(&format!("{A} exists and is up")), "{text}");
    let plain = netmap_rs::probe::probe_port(&format!("netmap:{A}")).to_string();
    assert!(
        plain.contains("with Fallback::Any: would open with AF_XDP"),
        "{plain}"
    );

    let mut tx = a.tx_ring(0).unwrap();
    let mut buf = Vec::new();
    make_frame(&mut buf, 7);
    tx.send(&buf).unwrap();
    tx.sync().unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    assert!(b.poll(Some(PATIENCE)).unwrap());
    rx.sync().unwrap();
    assert_eq!(check_frame(rx.recv().unwrap().payload()), Ok(7));

    // Netmap-only names still fail, and say why.
    for (name, what) in [
        (format!("netmap:{A}^"), "host rings"),
        (format!("netmap:{A}{{1"), "pipes"),
        ("vale0:p1".to_owned(), "VALE"),
    ] {
        let e = Builder::new(&name)
            .fallback(Fallback::AfPacket)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains(what), "{name}: {e}");
    }
    // A forced backend is never replaced.
    let e = Builder::new(&format!("netmap:{A}"))
        .backend(BackendKind::Kernel)
        .fallback(Fallback::AfPacket)
        .build();
    assert!(e.is_err());
}

/// The choice rules, which need no root: AF_PACKET is taken only when
/// allowed, only for real interfaces, and probe says so.
#[test]
fn fallback_rules_hold_without_root() {
    let p = netmap_rs::probe::probe();
    let netmap_here =
        p.device.is_available() || matches!(p.library, netmap_rs::probe::LibraryStatus::Loaded { .. });
    for (name, what) in [
        ("netmap:nmrsnone0^", "host rings"),
        ("netmap:nmrsnone0*", "host rings"),
        ("netmap:nmrsnone0{1", "pipes"),
        ("vale0:nmrs", "VALE"),
        ("netmap:nmrsnone0/t", "monitor"),
    ] {
        let forced = Builder::new(name)
            .backend(BackendKind::AfPacket)
            .build()
            .unwrap_err();
        assert!(forced.to_string().contains(what), "{name} forced: {forced}");
        if !netmap_here {
            let e = Builder::new(name)
                .fallback(Fallback::AfPacket)
                .build()
                .unwrap_err();
            assert!(e.to_string().contains(what), "{name}: {e}");
        }
    }
    // An `afpacket:` name never goes anywhere else.
    let e = Builder::new("afpacket:nmrsnone0")
        .backend(BackendKind::Kernel)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("served only by AF_PACKET"), "{e}");
    // A missing interface is reported as such, before any privilege is needed.
    match Builder::new("afpacket:nmrsnone0").build() {
        Err(Error::InterfaceNotFound { name }) => assert_eq!(name, "afpacket:nmrsnone0"),
        other => panic!("{other:?}"),
    }
    if netmap_here {
        return;
    }
    let report = netmap_rs::probe::probe_port_with("netmap:nmrsnone0", Fallback::AfPacket);
    let port = report.port.as_ref().unwrap();
    assert_eq!(port.backend, Ok(BackendKind::AfPacket));
    assert!(port.refused.iter().any(|r| r.backend == BackendKind::Kernel));
    let text = report.to_string();
    assert!(
        text.contains("the fallback allowed, because netmap cannot"),
        "{text}"
    );
    assert!(text.contains("no interface nmrsnone0"), "{text}");
    let plain = netmap_rs::probe::probe_port("netmap:nmrsnone0");
    assert!(plain.port.as_ref().unwrap().backend.is_err());
    // The name as given, as every backend reports it.
    match Builder::new("netmap:nmrsnone0")
        .fallback(Fallback::AfPacket)
        .build()
    {
        Err(Error::InterfaceNotFound { name }) => assert_eq!(name, "netmap:nmrsnone0"),
        other => panic!("{other:?}"),
    }
}

/// Waits for frame `seq` (made by `make_frame`) on `port`'s RX ring 0.
fn recv_frame(port: &Netmap, seq: u64) {
    let mut rx = port.rx_ring(0).unwrap();
    let t0 = Instant::now();
    loop {
        assert!(t0.elapsed() < PATIENCE, "frame {seq} did not arrive");
        rx.sync().unwrap();
        while let Some(f) = rx.recv() {
            if check_frame(f.payload()) == Ok(seq) {
                return;
            }
        }
        port.poll(Some(Duration::from_millis(50))).unwrap();
    }
}

#[test]
fn ports_bind_their_rings_exclusively_unless_shared() {
    let Some(ns) = Netns::new("ports_bind_their_rings_exclusively_unless_shared") else {
        return;
    };
    let _inside = ns.enter();
    let a = open(&format!("afpacket:{A}"));
    // A second port of the same rings: Busy, as netmap answers.
    let name = format!("afpacket:{A}");
    match Builder::new(&name).build() {
        Err(e @ Error::Busy { .. }) => {
            let text = e.to_string();
            assert!(text.contains("share_rings"), "{text}");
            let Error::Busy { name: n, rings, .. } = e else {
                unreachable!()
            };
            assert_eq!(
                (n, rings.as_str()),
                (name.clone(), "hardware TX rings and RX rings")
            );
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    // SAFETY: refused, so never used.
    let shared = unsafe { Builder::new(&name).share_rings() }.build();
    assert!(matches!(shared, Err(Error::Busy { .. })), "{shared:?}");
    match Builder::new(&format!("afpacket:{A}/R")).build() {
        Err(Error::Busy { rings, .. }) => assert_eq!(rings, "hardware RX rings"),
        other => panic!("expected Busy, got {other:?}"),
    }
    // Different rings of one interface do not collide.
    let t = open(&format!("afpacket:{B}/T"));
    let _r = open(&format!("afpacket:{B}/R"));
    assert!(matches!(
        Builder::new(&format!("afpacket:{B}")).build(),
        Err(Error::Busy { .. })
    ));
    // Closing a port frees its rings.
    drop(a);
    // Shared ports open side by side. Each has sockets and rings of its own
    // (no memory is aliased), so each sees every frame.
    // SAFETY: AF_PACKET ports never share memory, so their handles cannot
    // alias; each of the two uses only its own rings.
    let s1 = unsafe { Builder::new(&name).share_rings() }.build().unwrap();
    // SAFETY: as above.
    let s2 = unsafe { Builder::new(&name).share_rings() }.build().unwrap();
    assert_ne!(s1.mem_id(), s2.mem_id());
    assert!(matches!(Builder::new(&name).build(), Err(Error::Busy { .. })));
    let mut tx = t.tx_ring(0).unwrap();
    let mut buf = Vec::new();
    make_frame(&mut buf, 7);
    send_wait(&t, &mut tx, &buf);
    tx.sync().unwrap();
    recv_frame(&s1, 7);
    recv_frame(&s2, 7);
    drop((s1, s2));
    let _exclusive = open(&name);
}

#[test]
fn a_forked_child_cannot_reach_the_parents_shared_rings() {
    let Some(ns) = Netns::new("a_forked_child_cannot_reach_the_parents_shared_rings") else {
        return;
    };
    let _inside = ns.enter();
    let a = open(&format!("afpacket:{A}"));
    let b = open(&format!("afpacket:{B}"));
    let mut tx = a.tx_ring(0).unwrap();
    let child_frame = {
        let mut buf = Vec::new();
        make_frame(&mut buf, 7);
        buf
    };
    // Where the head slot's buffer is: an inherited handle writes there.
    let buf = tx.batch().push(child_frame.len()).unwrap().as_mut_ptr() as usize;
    fork::in_child(|| {
        // The child's view of the region is private memory now: the bytes
        // it writes where the parent's buffer is stay its own, and the
        // inherited handle finds the (zeroed) slots unusable or writes its
        // own copy; either way every call that reaches the rings refuses.
        // SAFETY: `buf` held `child_frame.len()` bytes of the region, which
        // stays mapped (privately) in the child.
        unsafe { std::ptr::copy_nonoverlapping(child_frame.as_ptr(), buf as *mut u8, child_frame.len()) };
        let _ = tx.send(&child_frame);
        matches!(tx.sync(), Err(Error::Forked { .. }))
            && matches!(a.poll(Some(Duration::ZERO)), Err(Error::Forked { .. }))
    });
    // Neither the child's bytes nor its head reached the parent's ring: the
    // slot it wrote is still the parent's to fill, and a sync sends nothing.
    {
        let mut batch = tx.batch();
        let slot = batch.push(child_frame.len()).unwrap();
        assert!(slot[..] != child_frame[..], "the child wrote the parent's buffer");
    }
    tx.sync().unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    b.poll(Some(Duration::from_millis(200))).unwrap();
    rx.sync().unwrap();
    assert!(rx.recv().is_none(), "a frame went out from the child's handle");
}

#[test]
fn info_calls_and_the_probes_driver_line_on_a_veth() {
    let Some(ns) = Netns::new("info_calls_and_the_probes_driver_line_on_a_veth") else {
        return;
    };
    let _inside = ns.enter();
    // Without opening: AF_PACKET has no port until one is open, and says so.
    let name = format!("afpacket:{A}");
    for e in [
        netmap_rs::info::port_info(&name).unwrap_err(),
        netmap_rs::info::pools_info(&name).unwrap_err(),
    ] {
        match &e {
            Error::Unsupported { backend, hint, .. } => {
                assert_eq!(*backend, BackendKind::AfPacket);
                assert!(hint.contains("Netmap::port_info"), "{e}");
            }
            other => panic!("info of an AF_PACKET name: {other:?}"),
        }
    }
    // An open port answers from its REGISTER reply.
    let port = open(&name);
    let info = port.port_info();
    assert_eq!((info.tx_slots, info.rx_slots), port.num_slots());
    assert_eq!(usize::from(info.tx_rings), port.num_tx_rings());
    assert_eq!(usize::from(info.rx_rings), port.num_rx_rings());
    assert_eq!(
        (info.mem_id, info.backend),
        (port.mem_id(), BackendKind::AfPacket)
    );
    assert!(matches!(
        port.pools_info(),
        Err(Error::Unsupported {
            backend: BackendKind::AfPacket,
            ..
        })
    ));

    // The probe: a veth is driven by `veth`, which netmap has a native
    // version of; the stock module is not it.
    let report = netmap_rs::probe::probe_port(&format!("netmap:{A}"));
    let d = report
        .port
        .as_ref()
        .unwrap()
        .driver
        .clone()
        .expect("a driver line");
    assert_eq!(d.driver.as_deref(), Some("veth"));
    assert_eq!(d.netmap_driver.as_deref(), Some("veth"));
    let text = report.to_string();
    assert!(text.contains("  driver: veth"), "{text}");
    assert!(text.contains("netmap mode: "), "{text}");
    if report.device.is_available() {
        assert!(d.admode.is_some(), "{text}");
        if !d.native {
            assert_ne!(d.mode, netmap_rs::probe::AdapterMode::Native, "{text}");
        }
    } else {
        assert!(!d.native, "{text}");
        assert_eq!(d.mode, netmap_rs::probe::AdapterMode::NotLoaded, "{text}");
        assert!(d.native_why.contains("--drivers=veth"), "{text}");
    }
    // The loopback reports no driver, and netmap has none for it.
    let lo = netmap_rs::probe::probe_port("netmap:lo");
    let d = lo.port.as_ref().unwrap().driver.clone().expect("lo exists");
    assert_eq!((d.driver, d.netmap_driver, d.native), (None, None, false));
    assert!(lo.to_string().contains("  driver: none reported"), "{lo}");
}
