//! The AF_XDP backend on real kernel networking: a veth pair in a network
//! namespace that each test creates and always deletes (see
//! `netmap_test_support::netns`). Without root the tests print why they skip.
//!
//! Ports are opened on the test thread, which `Netns::enter` has moved into
//! the namespace; helper threads get ports moved to them.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use netmap_rs::prelude::*;
use netmap_rs::{Fallback, NetmapBuilder as Builder, XdpMode};

use netmap_test_support::netns::{Netns, A, B};
use netmap_test_support::packets::{check_frame, make_frame};
use netmap_test_support::{examples, signals};

#[path = "common/veth.rs"]
mod veth;
use veth::{assert_stamped_since, drop_effective_caps, send_wait, sized_frame, CAP_NET_RAW, PATIENCE};

/// capability.h's numbers of the capabilities an XDP program needs.
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

fn open(name: &str) -> Netmap {
    Builder::new(name)
        .build()
        .unwrap_or_else(|e| panic!("open {name}: {e}"))
}

/// Waits for a frame on `rx` for which `pick` says `true`.
fn recv_until(port: &Netmap, rx: &mut RxRing<'_>, mut pick: impl FnMut(&[u8]) -> bool) {
    let t0 = Instant::now();
    loop {
        assert!(t0.elapsed() < PATIENCE, "the frame did not arrive");
        rx.sync().unwrap();
        while let Some(f) = rx.recv() {
            if pick(f.payload()) {
                return;
            }
        }
        port.poll(Some(Duration::from_millis(50))).unwrap();
    }
}

/// Streams `count` frames (60 to 1514 bytes, checksummed) from `tx_port`
/// to `rx_port`, the receiver on a thread of its own, fewer frames in
/// flight than the receiving ring holds; odd thousands go out in batches
/// and are read with `recv`, even ones with `send` and `iter`. Every frame
/// must arrive once, in order, intact. Gives the ports back.
fn stream(tx_port: Netmap, rx_port: Netmap, count: u64) -> (Netmap, Netmap) {
    let (_, rx_slots) = rx_port.num_slots();
    let window = u64::from(rx_slots) / 2;
    let received = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let receiver = {
        let (received, done) = (Arc::clone(&received), Arc::clone(&done));
        thread::spawn(move || -> Result<Netmap, String> {
            let port = rx_port;
            let mut rx = port.rx_ring(0).map_err(|e| e.to_string())?;
            let mut next = 0u64;
            let mut last = Instant::now();
            while next < count {
                rx.sync().map_err(|e| e.to_string())?;
                let before = next;
                let mut take = |p: &[u8]| -> Result<(), String> {
                    let seq = check_frame(p)?;
                    if seq != next {
                        return Err(format!("frame {seq} arrived, expected {next}"));
                    }
                    next += 1;
                    Ok(())
                };
                if !(before / 1000).is_multiple_of(2) {
                    while let Some(f) = rx.recv() {
                        take(f.payload())?;
                    }
                } else {
                    for f in rx.iter() {
                        take(f.payload())?;
                    }
                }
                received.store(next, Ordering::Release);
                if next > before {
                    last = Instant::now();
                } else {
                    if done.load(Ordering::Acquire) && last.elapsed() > Duration::from_secs(2) {
                        return Err(format!("{} of {count} frames never arrived", count - next));
                    }
                    if last.elapsed() > PATIENCE {
                        return Err(format!("stalled after {next} frames"));
                    }
                    port.poll(Some(Duration::from_millis(20)))
                        .map_err(|e| e.to_string())?;
                }
            }
            drop(rx);
            Ok(port)
        })
    };
    let mut tx = tx_port.tx_ring(0).unwrap();
    let mut buf = Vec::new();
    let t0 = Instant::now();
    let mut seq = 0u64;
    while seq < count {
        while seq >= received.load(Ordering::Acquire) + window {
            tx.sync().unwrap();
            std::hint::spin_loop();
            assert!(
                t0.elapsed() < PATIENCE * 3,
                "the receiver stopped at {}",
                received.load(Ordering::Relaxed)
            );
        }
        if !(seq / 1000).is_multiple_of(2) {
            // Up to 32 frames written in place, as one batch.
            let mut batch = tx.batch();
            let until = (seq + 32)
                .min(count)
                .min(received.load(Ordering::Acquire) + window);
            while seq < until {
                make_frame(&mut buf, seq);
                match batch.push(buf.len()) {
                    Ok(slot) => slot.copy_from_slice(&buf),
                    Err(Error::RingFull { .. }) => break,
                    Err(e) => panic!("push: {e}"),
                }
                seq += 1;
            }
            batch.commit();
            tx.sync().unwrap();
        } else {
            make_frame(&mut buf, seq);
            send_wait(&tx_port, &mut tx, &buf);
            seq += 1;
            if seq.is_multiple_of(64) {
                tx.sync().unwrap();
            }
        }
    }
    tx.sync().unwrap();
    done.store(true, Ordering::Release);
    let rx_port = receiver.join().expect("receiver panicked").unwrap();
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "{count} frames of 60..=1514 bytes crossed {} -> {} intact in {secs:.2}s ({:.0} frames/s)",
        tx_port.name(),
        rx_port.name(),
        count as f64 / secs
    );
    drop(tx);
    (tx_port, rx_port)
}

#[test]
fn a_million_frames_cross_each_way_intact() {
    let Some(ns) = Netns::new("a_million_frames_cross_each_way_intact") else {
        return;
    };
    let _inside = ns.enter();
    let a = open(&format!("afxdp:{A}"));
    let b = open(&format!("afxdp:{B}"));
    assert_eq!(a.backend(), BackendKind::AfXdp);
    assert!(!a.is_fallback(), "an afxdp: name asked for AF_XDP");
    // veth has native XDP: Auto takes it, in copy mode (no zero-copy).
    assert_eq!(a.xdp_mode(), Some(XdpMode::Native));
    assert_eq!((a.num_tx_rings(), a.num_rx_rings()), (1, 1));
    const COUNT: u64 = 1_000_000;
    let (a, b) = stream(a, b, COUNT);
    stream(b, a, COUNT);
}

#[test]
fn ring_operations_on_one_port() {
    let Some(ns) = Netns::new("ring_operations_on_one_port") else {
        return;
    };
    let _inside = ns.enter();
    let a = open(&format!("afxdp:{A}"));
    let b = open(&format!("afxdp:{B}"));
    let mut atx = a.tx_ring(0).unwrap();
    let mut brx = b.rx_ring(0).unwrap();
    let mut btx = b.tx_ring(0).unwrap();
    let mut arx = a.rx_ring(0).unwrap();
    let mut buf = Vec::new();

    // A packet in several slots (NS_MOREFRAG) leaves as one frame.
    make_frame(&mut buf, 1);
    let len = buf.len();
    atx.send_fragments(&buf, 100).unwrap();
    atx.sync().unwrap();
    let since = SystemTime::now();
    recv_until(&b, &mut brx, |p| check_frame(p) == Ok(1) && p.len() == len);
    assert_stamped_since(&brx, since);

    // `inject` sends one packet without a ring handle's help.
    make_frame(&mut buf, 2);
    drop(atx);
    a.inject(&buf).unwrap();
    a.txsync().unwrap();
    recv_until(&b, &mut brx, |p| check_frame(p) == Ok(2));
    let mut atx = a.tx_ring(0).unwrap();

    // A frame forwarded from B's RX ring out of B's own TX ring (one
    // UMEM: a swap of buffers) comes back to A whole; `forward_from`
    // forwards all that is pending.
    for seq in 3..=12 {
        make_frame(&mut buf, seq);
        atx.send(&buf).unwrap();
    }
    atx.sync().unwrap();
    let mut forwarded = 0;
    let t0 = Instant::now();
    while forwarded < 10 {
        assert!(t0.elapsed() < PATIENCE, "forwarded {forwarded} of 10");
        brx.sync().unwrap();
        if forwarded == 0 {
            if let Some(f) = brx.recv() {
                assert_eq!(check_frame(f.payload()), Ok(3));
                btx.forward(f).unwrap();
                forwarded += 1;
            }
        }
        forwarded += btx.forward_from(&mut brx).unwrap();
        btx.sync().unwrap();
        b.poll(Some(Duration::from_millis(20))).unwrap();
    }
    let mut back = Vec::new();
    let t0 = Instant::now();
    while back.len() < 10 {
        assert!(t0.elapsed() < PATIENCE, "{back:?} came back");
        arx.sync().unwrap();
        for f in arx.iter() {
            back.push(check_frame(f.payload()).unwrap());
        }
        a.poll(Some(Duration::from_millis(20))).unwrap();
    }
    assert_eq!(back, (3..=12).collect::<Vec<_>>());

    // `discard` drops what is pending, and counts it.
    for seq in 20..25 {
        make_frame(&mut buf, seq);
        atx.send(&buf).unwrap();
    }
    atx.sync().unwrap();
    let (mut frames, t0) = (0, Instant::now());
    while frames < 5 {
        assert!(t0.elapsed() < PATIENCE);
        b.poll(Some(Duration::from_millis(20))).unwrap();
        brx.sync().unwrap();
        frames += brx.discard(usize::MAX).0;
    }
    assert_eq!(frames, 5);

    // A full ring says so, and a sync makes room again.
    let room = atx.space();
    assert_eq!(room, atx.num_slots() - 1, "every slot came back");
    make_frame(&mut buf, 30);
    for _ in 0..room {
        atx.send(&buf).unwrap();
    }
    assert!(matches!(atx.send(&buf), Err(Error::RingFull { .. })));
    let t0 = Instant::now();
    while atx.space() < room {
        assert!(
            t0.elapsed() < PATIENCE,
            "{} of {room} slots came back",
            atx.space()
        );
        atx.sync().unwrap();
        a.poll_writable(Some(Duration::from_millis(20))).unwrap();
    }
}

/// A veth pair `vc` <-> `vd` of `queues` queues each, in the namespace.
fn multiqueue_pair(ns: &Netns, queues: u32) {
    let q = queues.to_string();
    ns.ip(&[
        "link",
        "add",
        "vc",
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "type",
        "veth",
        "peer",
        "name",
        "vd",
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
    ])
    .unwrap();
    for dev in ["vc", "vd"] {
        ns.ip(&["link", "set", dev, "up"]).unwrap();
    }
}

#[test]
fn every_queue_gets_a_socket_and_build_per_ring_a_port_each() {
    let Some(ns) = Netns::new("every_queue_gets_a_socket_and_build_per_ring_a_port_each") else {
        return;
    };
    let _inside = ns.enter();
    const Q: usize = 4;
    multiqueue_pair(&ns, Q as u32);
    let tx_port = open("afxdp:vc");
    assert_eq!((tx_port.num_tx_rings(), tx_port.num_rx_rings()), (Q, Q));
    let ports = Builder::new("afxdp:vd").build_per_ring().unwrap();
    assert_eq!(ports.len(), Q);
    for (i, p) in ports.iter().enumerate() {
        assert_eq!(p.rx_ring_ids(), i as u16..i as u16 + 1);
        assert_eq!(p.backend(), BackendKind::AfXdp);
    }
    // A queue is one socket's: a second port of it is refused.
    let again = Builder::new("afxdp:vd-1").build();
    assert!(matches!(again, Err(Error::Busy { .. })), "{again:?}");
    let out_of_range = Builder::new(&format!("afxdp:vd-{Q}")).build();
    match out_of_range {
        Err(e @ Error::Unsupported { .. }) => {
            assert!(e.to_string().contains(&format!("has {Q} RX queue(s)")), "{e}")
        }
        other => panic!("{other:?}"),
    }
    // A frame sent on TX queue q of vc arrives on RX queue q of vd: each
    // per-ring port, on a thread of its own, gets its queue's frames.
    const PER: u64 = 200;
    let readers: Vec<_> = ports
        .into_iter()
        .enumerate()
        .map(|(q, port)| {
            thread::spawn(move || {
                let mut rx = port.rx_ring(0).unwrap();
                let mut got = Vec::new();
                let t0 = Instant::now();
                while (got.len() as u64) < PER && t0.elapsed() < PATIENCE {
                    port.poll(Some(Duration::from_millis(20))).unwrap();
                    rx.sync().unwrap();
                    for f in rx.iter() {
                        got.push(check_frame(f.payload()).unwrap());
                    }
                }
                (q, got)
            })
        })
        .collect();
    let mut buf = Vec::new();
    for q in 0..Q {
        let mut tx = tx_port.tx_ring(q).unwrap();
        for i in 0..PER {
            make_frame(&mut buf, q as u64 * 1000 + i);
            send_wait(&tx_port, &mut tx, &buf);
        }
        tx.sync().unwrap();
    }
    for r in readers {
        let (q, got) = r.join().unwrap();
        let want: Vec<u64> = (0..PER).map(|i| q as u64 * 1000 + i).collect();
        assert_eq!(got, want, "queue {q}");
    }
}

veth_tests!("afxdp");

#[test]
fn max_packet_is_the_mtu_and_longer_fails_at_send() {
    let Some(ns) = Netns::new("afxdp_max_packet_is_the_mtu") else {
        return;
    };
    let _inside = ns.enter();
    for mtu in [1500usize, 3000] {
        for dev in [A, B] {
            ns.ip(&["link", "set", dev, "mtu", &mtu.to_string()]).unwrap();
        }
        let a = open(&format!("afxdp:{A}"));
        let b = open(&format!("afxdp:{B}"));
        // The MTU, an Ethernet header and a VLAN tag.
        let max = mtu + 18;
        assert_eq!(a.max_packet(), max, "MTU {mtu}");
        let mut tx = a.tx_ring(0).unwrap();
        let mut rx = b.rx_ring(0).unwrap();
        tx.send(&sized_frame(max)).unwrap();
        tx.sync().unwrap();
        recv_until(&b, &mut rx, |p| p == &sized_frame(max)[..]);
        match tx.send(&sized_frame(max + 1)) {
            Err(Error::PacketTooLarge { len, max: m }) => assert_eq!((len, m), (max + 1, max)),
            other => panic!("MTU {mtu}: {other:?}"),
        }
        assert!(matches!(
            tx.batch().push(max + 1),
            Err(Error::PacketTooLarge { .. })
        ));
        tx.sync().unwrap();
        assert_eq!(tx.space(), tx.num_slots() - 1, "nothing was staged");
    }
    // A frame holds at most a page less XDP's headroom: a jumbo MTU is
    // refused at open, saying what to do.
    for dev in [A, B] {
        ns.ip(&["link", "set", dev, "mtu", "9000"]).unwrap();
    }
    match Builder::new(&format!("afxdp:{A}")).build() {
        Err(e @ Error::Unsupported { .. }) => assert!(e.to_string().contains("lower the MTU"), "{e}"),
        other => panic!("MTU 9000: {other:?}"),
    }
}

#[test]
fn errors_name_what_to_do() {
    let Some(ns) = Netns::new("afxdp_errors_name_what_to_do") else {
        return;
    };
    let _inside = ns.enter();
    match Builder::new("afxdp:nmrsnone0").build() {
        Err(Error::InterfaceNotFound { name }) => assert_eq!(name, "afxdp:nmrsnone0"),
        other => panic!("unknown interface: {other:?}"),
    }
    ns.ip(&["link", "set", A, "down"]).unwrap();
    match Builder::new(&format!("afxdp:{A}")).build() {
        Err(e @ Error::InterfaceDown { .. }) => {
            assert!(e.to_string().contains(&format!("ip link set {A} up")), "{e}");
        }
        other => panic!("interface down: {other:?}"),
    }
    ns.ip(&["link", "set", A, "up"]).unwrap();
    match Builder::new(&format!("afxdp:{A}-3")).build() {
        Err(e @ Error::Unsupported { .. }) => assert!(e.to_string().contains("RX queue 3"), "{e}"),
        other => panic!("queue out of range: {other:?}"),
    }
    // veth has native XDP but no zero-copy.
    match Builder::new(&format!("afxdp:{A}"))
        .xdp_mode(XdpMode::ZeroCopy)
        .build()
    {
        Err(e @ Error::Unsupported { .. }) => assert!(e.to_string().contains("XdpMode::Auto"), "{e}"),
        other => panic!("zero-copy on veth: {other:?}"),
    }
    let generic = Builder::new(&format!("afxdp:{A}"))
        .xdp_mode(XdpMode::Generic)
        .build()
        .unwrap();
    assert_eq!(generic.xdp_mode(), Some(XdpMode::Generic));
    drop(generic);
    // Netmap-only names are refused, saying why.
    for (name, what) in [
        (format!("afxdp:{A}^"), "host rings"),
        (format!("afxdp:{A}{{1"), "real interfaces only"),
    ] {
        let e = Builder::new(&name).build().unwrap_err();
        assert!(e.to_string().contains(what), "{name}: {e}");
    }
    // Without a capability (dropped from one thread's effective set:
    // capabilities are per thread) or as another user, the error says
    // what is missing.
    // CAP_SYS_ADMIN stands in for CAP_NET_ADMIN and for CAP_BPF.
    for caps in [
        &[CAP_NET_RAW][..],
        &[CAP_NET_ADMIN, CAP_SYS_ADMIN],
        &[CAP_BPF, CAP_SYS_ADMIN],
    ] {
        let inner = thread::spawn(move || {
            drop_effective_caps(caps);
            Builder::new(&format!("afxdp:{A}")).build().map(drop)
        });
        match inner.join().unwrap() {
            Err(e @ Error::PermissionDenied { .. }) => {
                let text = e.to_string();
                let first = text.split("; run as root").next().unwrap();
                let want = match caps[0] {
                    CAP_NET_RAW => "needs CAP_NET_RAW",
                    CAP_NET_ADMIN => "needs CAP_NET_ADMIN or CAP_SYS_ADMIN, which this thread lacks",
                    _ => "needs CAP_BPF or CAP_SYS_ADMIN, which this thread lacks",
                };
                assert!(first.contains(want), "without {caps:?}: {text}")
            }
            other => panic!("without {caps:?}: {other:?}"),
        }
    }
    let nobody = thread::spawn(|| {
        // SAFETY: setresuid on this thread only (the raw system call, not
        // libc's, which would change every thread of the process).
        let r = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
        assert_eq!(r, 0, "setresuid: {}", std::io::Error::last_os_error());
        Builder::new(&format!("afxdp:{A}")).build().map(drop)
    });
    match nobody.join().unwrap() {
        Err(e @ Error::PermissionDenied { .. }) => assert!(e.to_string().contains("CAP_NET_RAW"), "{e}"),
        other => panic!("as nobody: {other:?}"),
    }
    // Nothing was left attached by the refused opens.
    assert!(!xdp_attached(&ns, A), "a program stayed on {A}");
}

/// Whether `dev` has an XDP program attached, as `ip link` reports it.
fn xdp_attached(ns: &Netns, dev: &str) -> bool {
    let out = Command::new("ip")
        .args(["-n", ns.name(), "link", "show", dev])
        .output()
        .expect("ip link show");
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

#[test]
fn another_process_program_is_never_replaced_and_goes_with_it() {
    let test = "another_process_program_is_never_replaced_and_goes_with_it";
    let Some(bin) = examples::binary(test, "pkt_gen") else {
        return;
    };
    let Some(ns) = Netns::new(test) else {
        return;
    };
    let _inside = ns.enter();
    // Another process receives on B: its program is attached there.
    let mut other = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .arg(&bin)
        .args(["-i", &format!("afxdp:{B}"), "-f", "rx", "--duration", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pkt_gen");
    let t0 = Instant::now();
    while !xdp_attached(&ns, B) {
        assert!(t0.elapsed() < PATIENCE, "pkt_gen attached nothing to {B}");
        thread::sleep(Duration::from_millis(20));
    }
    match Builder::new(&format!("afxdp:{B}")).build() {
        Err(e @ Error::XdpProgramAttached { .. }) => {
            let text = e.to_string();
            let Error::XdpProgramAttached { name, id, mode } = e else {
                unreachable!()
            };
            assert_eq!((name.as_str(), mode.as_str()), (B, "native"), "{text}");
            assert!(id > 0 && text.contains(&format!("id {id}")), "{text}");
        }
        other => panic!("over another's program: {other:?}"),
    }
    // A queue is one socket's, of any process, whatever its direction: a
    // TX-only port (which needs no program) is refused too, and told that
    // share_rings cannot help.
    match Builder::new(&format!("afxdp:{B}/T")).build() {
        Err(e @ Error::Busy { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("AF_XDP queues") && !text.contains("share_rings"),
                "{text}"
            );
            assert!(matches!(e, Error::Busy { shareable: false, .. }));
        }
        other => panic!("a second socket on {B}'s queue: {other:?}"),
    }
    // The program goes with its process, however it ends.
    other.kill().unwrap();
    other.wait().unwrap();
    let b = open(&format!("afxdp:{B}"));
    assert!(xdp_attached(&ns, B));
    drop(b);
    assert!(!xdp_attached(&ns, B), "our program stayed after its ports closed");
}

#[test]
fn netmap_names_fall_back_to_afxdp_only_when_allowed() {
    let Some(ns) = Netns::new("netmap_names_fall_back_to_afxdp_only_when_allowed") else {
        return;
    };
    let _inside = ns.enter();
    let report = netmap_rs::probe::probe_port_with(&format!("netmap:{A}"), Fallback::Any);
    if report.device.is_available() {
        eprintln!("skipping the fallback checks: this host has netmap ({report})");
        return;
    }
    let text = report.to_string();
    assert!(text.contains("would open with AF_XDP"), "{text}");
    assert!(text.contains("an afxdp: port would run Native"), "{text}");
    // Not allowed: refused, saying what would serve it.
    let e = Builder::new(&format!("netmap:{A}")).build().unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e}");
    // AF_XDP allowed, or both (AF_XDP first): AF_XDP.
    for fb in [Fallback::AfXdp, Fallback::Any] {
        let a = Builder::new(&format!("netmap:{A}")).fallback(fb).build().unwrap();
        assert_eq!(a.backend(), BackendKind::AfXdp, "{fb:?}");
        assert!(a.is_fallback());
        assert!(a.refusals().iter().any(|r| r.backend == BackendKind::Kernel));
    }
    // Only AF_PACKET allowed: never AF_XDP.
    let p = Builder::new(&format!("netmap:{A}"))
        .fallback(Fallback::AfPacket)
        .build()
        .unwrap();
    assert_eq!(p.backend(), BackendKind::AfPacket);
    drop(p);
    // Where AF_XDP cannot (its queue is held by another port), Any goes
    // on to AF_PACKET and says why.
    let held = Builder::new(&format!("netmap:{A}"))
        .fallback(Fallback::AfXdp)
        .build()
        .unwrap();
    let both = Builder::new(&format!("netmap:{A}"))
        .fallback(Fallback::Any)
        .build()
        .unwrap();
    assert_eq!(both.backend(), BackendKind::AfPacket);
    assert!(
        both.refusals().iter().any(|r| r.backend == BackendKind::AfXdp),
        "{:?}",
        both.refusals()
    );
    drop((held, both));
    // A name forced onto AF_XDP goes nowhere else.
    let e = Builder::new(&format!("afxdp:{A}"))
        .backend(BackendKind::AfPacket)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("served only by AF_XDP"), "{e}");
    let forced = Builder::new(&format!("netmap:{A}"))
        .backend(BackendKind::AfXdp)
        .build()
        .unwrap();
    assert_eq!(forced.backend(), BackendKind::AfXdp);
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
