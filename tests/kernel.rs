//! The real netmap module (`/dev/netmap`): ports bind their rings
//! exclusively, in this process and across processes, while ports that
//! select disjoint rings of one port (`/T` and `/R`) coexist.
//!
//! Without the module every test prints why it skips. Processes are this
//! test binary, re-executed with [`ROLE`] set.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use netmap_rs::prelude::*;

/// Set in a re-executed child: what it does (see [`child_role`]).
const ROLE: &str = "NETMAP_RS_KERNEL_ROLE";
/// How long any wait may take.
const PATIENCE: Duration = Duration::from_secs(20);

fn skip(test: &str) -> bool {
    if std::path::Path::new("/dev/netmap").exists() {
        return false;
    }
    eprintln!("{test}: skipped: /dev/netmap does not exist (the netmap kernel module is not loaded)");
    true
}

fn open(name: &str) -> Result<Netmap, Error> {
    NetmapBuilder::new(name).backend(BackendKind::Kernel).build()
}

/// Starts this binary as `test` with role `role` on port `name`.
fn spawn(test: &str, role: &str, name: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--test-threads=1", "--nocapture"])
        .env(ROLE, format!("{role} {name}"))
        .spawn()
        .expect("re-run the test binary")
}

/// Waits for `child`; its exit code, or a failure after [`PATIENCE`].
fn finish(mut child: Child) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        if start.elapsed() > PATIENCE {
            let _ = child.kill();
            panic!("a child process hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// In a re-executed child, does its role and exits; else returns.
fn child_role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let (what, name) = role.split_once(' ').unwrap();
    let code = match what {
        // Exit 0 if the port is busy here, as it is open in the parent.
        "busy" => match open(name) {
            Err(Error::Busy { .. }) => 0,
            Err(e) => {
                eprintln!("{name}: {e}");
                2
            }
            Ok(_) => 1,
        },
        // Send 1000 packets on the TX-only port.
        "send" => {
            let port = open(name).unwrap();
            let mut tx = port.tx_ring(0).unwrap();
            let mut sent = 0u32;
            let start = Instant::now();
            while sent < 1000 && start.elapsed() < PATIENCE {
                match tx.send(&sent.to_le_bytes()) {
                    Ok(()) => sent += 1,
                    Err(Error::RingFull { .. }) => {
                        tx.sync().unwrap();
                        port.poll_writable(Some(Duration::from_millis(10))).unwrap();
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            tx.sync().unwrap();
            // Let the peer drain before the pipe end closes.
            std::thread::sleep(Duration::from_millis(500));
            0
        }
        other => panic!("unknown role {other}"),
    };
    std::process::exit(code);
}

#[test]
fn a_second_open_of_the_same_rings_is_busy() {
    child_role();
    let test = "a_second_open_of_the_same_rings_is_busy";
    if skip(test) {
        return;
    }
    let name = format!("netmap:nmrsbusy{}{{1", std::process::id());
    let first = open(&name).unwrap();
    match open(&name) {
        Err(e @ Error::Busy { .. }) => eprintln!("busy as expected: {e}"),
        other => panic!("a second open in this process: {other:?}"),
    }
    assert_eq!(
        finish(spawn(test, "busy", &name)),
        0,
        "a second open in another process"
    );
    drop(first);
    open(&name).expect("closing the first port frees its rings");
}

#[test]
fn tx_only_and_rx_only_ports_of_one_pipe_end_coexist_across_processes() {
    child_role();
    let test = "tx_only_and_rx_only_ports_of_one_pipe_end_coexist_across_processes";
    if skip(test) {
        return;
    }
    let pid = std::process::id();
    let (master, slave) = (format!("netmap:nmrstr{pid}{{1"), format!("netmap:nmrstr{pid}}}1"));
    // The slave end here; the master's RX rings here, its TX rings in a
    // child process: all exclusive, none shared.
    let slave_port = open(&slave).unwrap();
    let master_rx = open(&format!("{master}/R")).unwrap();
    let sender = spawn(test, "send", &format!("{master}/T"));
    let mut rx = slave_port.rx_ring(0).unwrap();
    let mut got = Vec::new();
    let start = Instant::now();
    while got.len() < 1000 && start.elapsed() < PATIENCE {
        slave_port.poll(Some(Duration::from_millis(50))).unwrap();
        rx.sync().unwrap();
        while let Some(f) = rx.recv() {
            got.push(f.payload().try_into().map_or(u32::MAX, u32::from_le_bytes));
        }
    }
    let want: Vec<u32> = (0..1000).collect();
    assert!(
        got == want,
        "packets from the TX-only port in the child: {} of 1000, first {:?}, ring {} slots",
        got.len(),
        &got[..got.len().min(20)],
        rx.num_slots()
    );
    assert_eq!(finish(sender), 0);
    // And back, to the RX-only port of the master end.
    let mut tx = slave_port.tx_ring(0).unwrap();
    tx.send(b"back").unwrap();
    tx.sync().unwrap();
    let mut back = master_rx.rx_ring(0).unwrap();
    let start = Instant::now();
    while back.sync().unwrap() == 0 && start.elapsed() < PATIENCE {
        master_rx.poll(Some(Duration::from_millis(50))).unwrap();
    }
    assert_eq!(back.recv().unwrap().payload(), b"back");
}

#[test]
fn port_and_pools_info_match_a_registered_port() {
    child_role();
    if skip("port_and_pools_info_match_a_registered_port") {
        return;
    }
    let pid = std::process::id();
    let (master, slave) = (
        format!("netmap:nmrsinfo{pid}{{1"),
        format!("netmap:nmrsinfo{pid}}}1"),
    );
    let port = NetmapBuilder::new(&master)
        .backend(BackendKind::Kernel)
        .num_slots(256)
        .build()
        .unwrap();
    let reg = port.port_info();
    eprintln!("registered {master}: {reg:?}");
    assert_eq!(reg.tx_slots, 256);
    for name in [&master, &slave] {
        let info = netmap_rs::info::port_info(name).unwrap();
        eprintln!("PORT_INFO_GET {name}: {info:?}");
        assert_eq!((info.tx_slots, info.rx_slots), port.num_slots(), "{name}");
        assert_eq!((info.tx_rings, info.rx_rings), (reg.tx_rings, reg.rx_rings));
        assert_eq!((info.memsize, info.mem_id), (reg.memsize, port.mem_id()));
    }
    let pools = netmap_rs::info::pools_info(&master).unwrap();
    eprintln!("POOLS_INFO_GET {master}: {pools:?}");
    // The same region, whichever backend answered (libnetmap's or the kernel's).
    let again = port.pools_info().unwrap();
    assert_eq!(
        (pools.if_pool, pools.ring_pool, pools.buf_pool),
        (again.if_pool, again.ring_pool, again.buf_pool)
    );
    assert_eq!((pools.memsize, pools.mem_id), (reg.memsize, port.mem_id()));
    let (i, r, b) = (pools.if_pool, pools.ring_pool, pools.buf_pool);
    assert_eq!(i.offset, 0);
    assert!(r.offset >= u64::from(i.count) * u64::from(i.size));
    assert!(b.offset >= r.offset + u64::from(r.count) * u64::from(r.size));
    assert!(b.offset + u64::from(b.count) * u64::from(b.size) <= pools.memsize);
    assert!(b.count > 2 && b.size >= 64, "{pools:?}");
    // Errors as at build.
    match netmap_rs::info::port_info("netmap:nmrsnone0") {
        Err(Error::InterfaceNotFound { name }) => assert_eq!(name, "netmap:nmrsnone0"),
        other => panic!("an interface that does not exist: {other:?}"),
    }
    // An interface, without binding it: the module attaches an adapter to
    // answer (the generic one, for the loopback) and lets it go.
    match netmap_rs::info::port_info("netmap:lo") {
        Ok(info) => {
            eprintln!("PORT_INFO_GET netmap:lo: {info:?}");
            assert!(info.tx_rings >= 1 && info.tx_slots >= 1, "{info:?}");
            assert!(info.host_tx_rings >= 1, "{info:?}");
        }
        Err(e @ Error::Unsupported { .. }) => eprintln!("netmap:lo: {e} (admode 1)"),
        Err(e) => panic!("netmap:lo: {e}"),
    }
    let report = netmap_rs::probe::probe_port("netmap:lo");
    eprintln!("{report}");
    let d = report.port.unwrap().driver.expect("lo exists");
    assert!(d.admode.is_some(), "the module is loaded: {d:?}");
}

#[test]
fn rx_syncs_stamp_the_ring_and_a_ring_can_ask_for_stamps() {
    if skip("rx_syncs_stamp_the_ring_and_a_ring_can_ask_for_stamps") {
        return;
    }
    let a = open("netmap:stamp{1").unwrap();
    let b = open("netmap:stamp}1").unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    // The module stamps unless its `no_timestamp` sysctl is set; a ring
    // that asks is stamped either way.
    rx.request_timestamps(true);
    assert!(rx.timestamps_requested());
    let mut tx = a.tx_ring(0).unwrap();
    tx.send(b"stamped").unwrap();
    tx.sync().unwrap();
    // The module's clock is the time of day, to the microsecond.
    let since = std::time::SystemTime::now() - Duration::from_micros(1);
    rx.sync().unwrap();
    let stamp = rx.timestamp().expect("the sync stamped the ring");
    assert!(
        stamp >= since && stamp <= std::time::SystemTime::now(),
        "{stamp:?} / {since:?}"
    );
    assert_eq!(rx.recv().unwrap().payload(), b"stamped");
}

/// The UDP port of the forwarding test's frames.
const FWD_PORT: u16 = 4790;

/// An Ethernet/IPv4/UDP frame from 10.77.0.2 to 10.77.0.1:[`FWD_PORT`]
/// (MAC `dst`), carrying `seq`.
fn udp_to(dst: [u8; 6], seq: u32) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0x0a, 0x02, 0x08, 0x00]);
    let total: u16 = 20 + 8 + 4;
    let t = total.to_be_bytes();
    f.extend_from_slice(&[
        0x45, 0, t[0], t[1], 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 77, 0, 2, 10, 77, 0, 1,
    ]);
    let sum = netmap_test_support::packets::ipv4_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&FWD_PORT.to_be_bytes());
    f.extend_from_slice(&(8u16 + 4).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&seq.to_le_bytes());
    f.resize(60, 0);
    f
}

/// The sequence number of a frame [`udp_to`] built.
fn udp_seq(p: &[u8]) -> Option<u32> {
    let ours =
        p.len() >= 46 && p[12..14] == [0x08, 0x00] && p[23] == 17 && p[36..38] == FWD_PORT.to_be_bytes();
    ours.then(|| u32::from_le_bytes(p[42..46].try_into().unwrap()))
}

/// Transparent forwarding: of the frames a NIC's RX ring receives, those
/// marked `NS_FORWARD` on a ring with `NR_FORWARD` reach the host stack
/// (a UDP socket on the interface's address gets them), the others do not.
#[test]
fn marked_frames_reach_the_host_stack_and_the_others_do_not() {
    const T: &str = "marked_frames_reach_the_host_stack_and_the_others_do_not";
    if skip(T) {
        return;
    }
    use netmap_test_support::netns::{Netns, A, B};
    let Some(ns) = Netns::new(T) else {
        return;
    };
    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x01];
    ns.ip(&["link", "set", A, "address", "02:00:00:00:0a:01"])
        .unwrap();
    ns.ip(&["addr", "add", "10.77.0.1/24", "dev", A]).unwrap();
    let _inside = ns.enter();
    let sock = std::net::UdpSocket::bind(("10.77.0.1", FWD_PORT)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300))).unwrap();

    let port = open(&format!("netmap:{A}")).unwrap();
    let mut rx = port.rx_ring(0).unwrap();
    rx.request_forward(true).unwrap();
    assert!(rx.forward_requested());
    let sender = NetmapBuilder::new(&format!("afpacket:{B}")).build().unwrap();
    let mut tx = sender.tx_ring(0).unwrap();

    const N: u32 = 200;
    let (mut sent, mut seen) = (0u32, 0u32);
    let start = Instant::now();
    while seen < N {
        assert!(start.elapsed() < PATIENCE, "{seen} of {N} frames arrived");
        while sent < N && tx.space() > 0 {
            tx.send(&udp_to(MAC, sent)).unwrap();
            sent += 1;
        }
        tx.sync().unwrap();
        rx.sync().unwrap();
        while let Some(f) = rx.recv() {
            if let Some(seq) = udp_seq(f.payload()) {
                seen += 1;
                if seq % 2 == 0 {
                    assert!(f.mark_forward());
                }
            }
        }
        port.poll(Some(Duration::from_millis(10))).unwrap();
    }
    // The next RX sync hands the slots back: the module passes the marked
    // packets up then.
    rx.sync().unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while let Ok(n) = sock.recv(&mut buf) {
        assert_eq!(n, 4);
        got.push(u32::from_le_bytes(buf[..4].try_into().unwrap()));
    }
    got.sort_unstable();
    assert_eq!(
        got,
        (0..N).step_by(2).collect::<Vec<_>>(),
        "the host stack got the marked ones only"
    );

    // Without NR_FORWARD, marks do nothing: frames stay netmap's.
    rx.request_forward(false).unwrap();
    assert!(!rx.forward_requested());
    tx.send(&udp_to(MAC, 0)).unwrap();
    tx.sync().unwrap();
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < PATIENCE, "the last frame did not arrive");
        rx.sync().unwrap();
        if let Some(f) = rx.recv() {
            assert!(f.mark_forward());
            break;
        }
        port.poll(Some(Duration::from_millis(10))).unwrap();
    }
    rx.sync().unwrap();
    assert!(
        sock.recv(&mut buf).is_err(),
        "an unforwarding ring passed a packet up"
    );
}

/// Extra buffers on the module: packets kept out of a pipe's ring survive
/// a million packets through it intact, then go out on another pipe in
/// reverse order; every buffer comes back to the port.
#[test]
fn kept_packets_survive_a_million_packets_on_the_module() {
    if skip("kept_packets_survive_a_million_packets_on_the_module") {
        return;
    }
    kept_packets_through(BackendKind::Kernel, "keep");
}

/// [`kept_packets_survive_a_million_packets_on_the_module`] through
/// libnetmap (`NETMAP_LIBRARY` or the usual sonames), where one loads.
#[test]
fn kept_packets_survive_a_million_packets_through_libnetmap() {
    const T: &str = "kept_packets_survive_a_million_packets_through_libnetmap";
    if skip(T) {
        return;
    }
    match NetmapBuilder::new("netmap:keepprobe{1")
        .backend(BackendKind::Libnetmap)
        .build()
    {
        Ok(_) => kept_packets_through(BackendKind::Libnetmap, "keepl"),
        Err(e) => netmap_test_support::skip::skip(T, &format!("no libnetmap loads here ({e})")),
    }
}

fn kept_packets_through(backend: BackendKind, parent: &str) {
    use netmap_test_support::packets::{check_frame, make_frame};
    let check = |p: &[u8]| check_frame(p).unwrap_or_else(|e| panic!("{e}"));
    const EXTRA: usize = 64;
    let port = |n: &str| NetmapBuilder::new(&format!("netmap:{parent}{n}")).backend(backend);
    let a = port("{1").build().unwrap();
    let b = port("}1").extra_buffers(EXTRA as u32).build().unwrap();
    let (c, d) = (port("{2").build().unwrap(), port("}2").build().unwrap());
    assert_eq!(b.backend(), backend);
    assert_eq!(b.extra_buffers(), EXTRA, "the module granted them all");
    let (mut tx, mut rx) = (a.tx_ring(0).unwrap(), b.rx_ring(0).unwrap());
    let (mut kept, mut buf) = (Vec::new(), Vec::new());
    let (mut sent, mut seen) = (0u64, 0u64);
    const N: u64 = 1_000_000;
    let start = Instant::now();
    while seen < N {
        assert!(start.elapsed() < 10 * PATIENCE, "{seen} of {N}");
        while sent < N && tx.space() > 0 {
            make_frame(&mut buf, sent);
            tx.send(&buf).unwrap();
            sent += 1;
        }
        tx.sync().unwrap();
        rx.sync().unwrap();
        loop {
            if seen % 15_000 == 7 && kept.len() < EXTRA {
                let Some(k) = rx.keep().unwrap() else { break };
                assert_eq!(check(k.payload()), seen);
                kept.push(k);
            } else {
                let Some(f) = rx.recv() else { break };
                assert_eq!(check(f.payload()), seen);
            }
            seen += 1;
        }
    }
    assert_eq!(kept.len(), EXTRA);
    let seqs: Vec<u64> = kept.iter().map(|k| check(k.payload())).collect();
    assert_eq!(
        seqs,
        (0..EXTRA as u64).map(|i| i * 15_000 + 7).collect::<Vec<_>>()
    );
    let mut out = c.tx_ring(0).unwrap();
    while let Some(k) = kept.pop() {
        out.send_kept(k).unwrap();
    }
    out.sync().unwrap();
    assert_eq!(b.free_extra_buffers(), EXTRA);
    let mut end = d.rx_ring(0).unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < EXTRA {
        assert!(start.elapsed() < PATIENCE);
        end.sync().unwrap();
        got.extend(end.iter().map(|f| check(f.payload())));
    }
    assert_eq!(got, seqs.iter().rev().copied().collect::<Vec<_>>());
}

/// Monitors on the module: a copy monitor of a pipe end's TX rings (`/t`)
/// and of the other end's RX rings (`/r`) each get a copy of every packet,
/// and the pipe still delivers them; a zero-copy monitor (`/z`) gets them
/// once the monitored end has consumed them.
#[test]
fn monitors_see_a_pipes_traffic() {
    if skip("monitors_see_a_pipes_traffic") {
        return;
    }
    fn drain(port: &Netmap, rx: &mut RxRing<'_>, want: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let start = Instant::now();
        while got.len() < want && start.elapsed() < PATIENCE {
            rx.sync().unwrap();
            got.extend(rx.iter().map(|f| f.payload().to_vec()));
            if got.len() < want {
                port.poll(Some(Duration::from_millis(10))).unwrap();
            }
        }
        got
    }
    let a = open("netmap:mon{1").unwrap();
    let b = open("netmap:mon}1").unwrap();
    let tmon = open("netmap:mon{1/t").unwrap();
    let rmon = open("netmap:mon}1/r").unwrap();
    let packets: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 60 + i as usize]).collect();
    let mut tx = a.tx_ring(0).unwrap();
    for p in &packets {
        tx.send(p).unwrap();
    }
    tx.sync().unwrap();
    let mut trx = tmon.rx_ring(0).unwrap();
    assert_eq!(drain(&tmon, &mut trx, 10), packets, "the TX monitor");
    let mut brx = b.rx_ring(0).unwrap();
    assert_eq!(
        drain(&b, &mut brx, 10),
        packets,
        "the pipe delivers them as before"
    );
    let mut rrx = rmon.rx_ring(0).unwrap();
    assert_eq!(drain(&rmon, &mut rrx, 10), packets, "the RX monitor");
    // Hand the slots back now: a zero-copy monitor opened later would see
    // them at the next RX sync otherwise.
    brx.sync().unwrap();
    drop((trx, rrx, brx, tx));
    drop((tmon, rmon));

    let zmon = open("netmap:mon}1/z").unwrap();
    let mut tx = a.tx_ring(0).unwrap();
    for p in &packets {
        tx.send(p).unwrap();
    }
    tx.sync().unwrap();
    let mut brx = b.rx_ring(0).unwrap();
    assert_eq!(drain(&b, &mut brx, 10), packets);
    // The zero-copy monitor sees them after the reader gave the slots back.
    brx.sync().unwrap();
    let mut zrx = zmon.rx_ring(0).unwrap();
    assert_eq!(drain(&zmon, &mut zrx, 10), packets, "the zero-copy monitor");
}
