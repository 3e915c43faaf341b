//! A hostile peer on the embedded kernel: another process (played here
//! through the port's public raw pointers) writes forged values into the
//! shared region, and safe code must answer with an error or carry on, never
//! crash, abort, hang or lie.
//!
//! Each scenario runs on a pipe of the embedded kernel (module `emu`),
//! where `/dev/netmap` exists on a pipe of the real netmap module (module
//! `kernel`; skipped with a printed reason elsewhere), and as root on two
//! AF_XDP ports over a veth pair in a network namespace of its own (module
//! `afxdp`), where the peer is unsafe code of this process (AF_XDP memory
//! is private). Each runs in a child
//! process (this test binary, re-executed for that one test), so a crash or
//! an abort fails the scenario instead of killing the run, and a hang fails
//! it after [`PATIENCE`].

use std::process::Command;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use netmap_rs::ffi::{self, netmap_ring, netmap_slot};
use netmap_rs::prelude::*;
use netmap_test_support::{fork, netns};

/// How long a scenario may run before it counts as hung.
const PATIENCE: Duration = Duration::from_secs(60);
/// Set in the child: the scenario to run.
const SCENARIO: &str = "NETMAP_RS_HOSTILE_SCENARIO";

/// Opens the two ends of a pipe named after its argument.
type Pair = fn(&str) -> (Netmap, Netmap);

mod common;

/// A pipe of the embedded kernel, named uniquely for this process (the
/// embedded kernel's names are shared by the processes of the user).
fn emu_pair(name: &str) -> (Netmap, Netmap) {
    common::pair(&format!("{name}{}", std::process::id()), 64)
}

/// A pipe of the netmap module, named uniquely for this process. (A pipe
/// without a parent interface gets a persistent VALE port of its name as
/// parent, so the name stays within `IFNAMSIZ`.)
fn kernel_pair(name: &str) -> (Netmap, Netmap) {
    let open = |end: char| {
        NetmapBuilder::new(&format!("netmap:{name}{}{end}1", std::process::id()))
            .backend(BackendKind::Kernel)
            .num_slots(64)
            .build()
            .unwrap()
    };
    (open('{'), open('}'))
}

/// Set in the child of an `afxdp` scenario: the network namespace to open
/// its ports in.
const NETNS: &str = "NETMAP_RS_HOSTILE_NETNS";

/// Two AF_XDP ports, on the two ends of the veth pair of the namespace
/// [`NETNS`] names, opened from the calling thread moved into it.
fn afxdp_pair(_name: &str) -> (Netmap, Netmap) {
    use std::os::fd::AsRawFd;
    let ns = std::env::var(NETNS).expect("the scenario's network namespace");
    // iproute2 keeps named namespaces in /run/netns (/var/run/netns where
    // /var/run is not a link to /run).
    let f = std::fs::File::open(format!("/run/netns/{ns}"))
        .or_else(|_| std::fs::File::open(format!("/var/run/netns/{ns}")))
        .expect("open the namespace");
    // SAFETY: a namespace descriptor live across the call; setns moves only
    // this thread, which opens the ports.
    assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
    let open = |dev: &str| {
        NetmapBuilder::new(&format!("afxdp:{dev}"))
            .num_slots(64)
            .build()
            .unwrap()
    };
    (open(netns::A), open(netns::B))
}

/// A pipe of the embedded kernel whose slave end has 8 extra buffers.
fn emu_pair_extra(name: &str) -> (Netmap, Netmap) {
    let open = |end: char, extra| {
        NetmapBuilder::new(&format!("emu:{name}{end}1"))
            .num_slots(64)
            .extra_buffers(extra)
            .build()
            .unwrap()
    };
    (open('{', 0), open('}', 8))
}

/// [`kernel_pair`], its slave end with 8 extra buffers.
fn kernel_pair_extra(name: &str) -> (Netmap, Netmap) {
    let open = |end: char, extra| {
        NetmapBuilder::new(&format!("netmap:{name}{}{end}1", std::process::id()))
            .backend(BackendKind::Kernel)
            .num_slots(64)
            .extra_buffers(extra)
            .build()
            .unwrap()
    };
    (open('{', 0), open('}', 8))
}

/// Whether the netmap module is absent (then says so).
fn no_kernel(test: &str) -> bool {
    let absent = !std::path::Path::new("/dev/netmap").exists();
    if absent {
        eprintln!(
            "kernel::{test}: skipped: /dev/netmap does not exist (the netmap kernel module is not loaded)"
        );
    }
    absent
}

/// One test per scenario and kernel, each run [`isolated`].
macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        mod emu {
            $(
                #[test]
                fn $name() {
                    super::isolated(concat!("emu::", stringify!($name)), || super::$name(super::emu_pair));
                }
            )*
        }
        mod kernel {
            $(
                #[test]
                fn $name() {
                    if super::no_kernel(stringify!($name)) {
                        return;
                    }
                    super::isolated(concat!("kernel::", stringify!($name)), || {
                        super::$name(super::kernel_pair)
                    });
                }
            )*
        }
    };
}

/// The scenarios, each also on AF_XDP ports in a namespace of its own.
macro_rules! afxdp_scenarios {
    ($($name:ident),* $(,)?) => {
        mod afxdp {
            $(
                #[test]
                fn $name() {
                    let test = concat!("afxdp::", stringify!($name));
                    if std::env::var(super::SCENARIO).as_deref() == Ok(test) {
                        return super::$name(super::afxdp_pair);
                    }
                    let Some(ns) = netmap_test_support::netns::Netns::new(test) else {
                        return;
                    };
                    super::isolated_with(test, &[(super::NETNS, ns.name())], || {
                        super::$name(super::afxdp_pair)
                    });
                }
            )*
        }
    };
}

afxdp_scenarios!(
    forged_netmap_if_counts_after_open_change_nothing,
    a_corrupt_buffer_index_is_skipped_and_drain_rx_returns,
    a_forged_head_is_an_error,
    a_tail_forged_while_syncing_is_refused_never_trusted,
    a_forked_child_gets_errors_and_the_parent_keeps_its_rings,
    a_forged_length_is_clamped_to_the_buffer,
    forged_tx_slots_cost_only_their_packets,
);
// Not on AF_XDP: `forged_ring_constants_after_open_change_nothing` sends a
// packet of several slots, longer than AF_XDP's one frame, and on a ring
// with slot offsets (AF_XDP's) `push_reuse` calls every buffer fresh, so
// `a_forged_buf_changed_flag_changes_only_what_push_reuse_says` has nothing
// to check.

scenarios!(
    forged_netmap_if_counts_after_open_change_nothing,
    forged_ring_constants_after_open_change_nothing,
    a_corrupt_buffer_index_is_skipped_and_drain_rx_returns,
    a_forged_length_is_clamped_to_the_buffer,
    a_forged_head_is_an_error,
    a_tail_forged_while_syncing_is_refused_never_trusted,
    a_forked_child_gets_errors_and_the_parent_keeps_its_rings,
    a_forged_buf_changed_flag_changes_only_what_push_reuse_says,
);

/// The extra-buffer scenarios, on ports that have some.
mod extra {
    #[test]
    fn emu() {
        super::isolated("extra::emu", || {
            super::forged_slots_never_alias_kept_packets(super::emu_pair_extra)
        });
    }

    #[test]
    fn kernel() {
        if super::no_kernel("forged_slots_never_alias_kept_packets") {
            return;
        }
        super::isolated("extra::kernel", || {
            super::forged_slots_never_alias_kept_packets(super::kernel_pair_extra)
        });
    }
}

/// The embedded kernel's own state, in the control part of a region's
/// file, which every process of the user can write.
mod emu_control {
    #[test]
    fn garbage_in_the_kernel_state_costs_errors_never_a_crash_or_a_hang() {
        super::isolated(
            "emu_control::garbage_in_the_kernel_state_costs_errors_never_a_crash_or_a_hang",
            super::garbage_in_the_kernel_state,
        );
    }
}

/// Another process overwrites the embedded kernel's tables and lock (the
/// first MiB of the region's file, which holds them), pattern after
/// pattern, while both ends of a pipe keep syncing, polling and sending,
/// and new ports open and close on the same parent: every call returns
/// (an error or not), and the process neither crashes nor hangs.
fn garbage_in_the_kernel_state() {
    use std::os::fd::AsRawFd;
    let name = format!("hostile_ctl{}", std::process::id());
    let (a, b) = common::pair(&name, 64);
    let path = netmap_rs::emu_dir().join(format!("netmap-rs-emu.{name}"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    const LEN: usize = 1 << 20;
    // SAFETY: a fresh shared mapping of the file's first MiB (the file is
    // far longer), at an address the kernel picks; unmapped below.
    let map = unsafe {
        libc::mmap(
            ptr::null_mut(),
            LEN,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    assert_ne!(map, libc::MAP_FAILED);
    let words = map.cast::<u32>();
    let mut seed = 0x9e37_79b9u32;
    let patterns: [&dyn Fn(usize) -> u32; 6] = [
        &|_| u32::MAX,
        &|_| 0,
        &|i| i as u32 % 64,
        &|i| (i as u32).wrapping_mul(2_654_435_761),
        &|i| if i % 2 == 0 { 1 } else { 1 << 31 },
        &|i| (i as u32 % 7) * 1000,
    ];
    let mut buf = pkt("garbage");
    for round in 0..12 {
        for i in 0..LEN / 4 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let v = if round < patterns.len() {
                patterns[round](i)
            } else {
                seed
            };
            // SAFETY: word `i` of the mapping; the embedded kernel reads
            // these words atomically, and this write is what a hostile
            // process does.
            unsafe { AtomicU32::from_ptr(words.add(i)).store(v, Ordering::Relaxed) };
        }
        for p in [&a, &b] {
            let _ = p.poll(Some(Duration::from_millis(1)));
            if let Ok(mut tx) = p.tx_ring(0) {
                buf[0] = round as u8;
                let _ = tx.send(&buf);
                let _ = tx.sync();
            }
            if let Ok(mut rx) = p.rx_ring(0) {
                let _ = rx.sync();
                let _ = rx.iter().count();
            }
        }
        for other in ["{2", "}2", "", "/rt"] {
            let _ = NetmapBuilder::new(&format!("emu:{name}{other}")).build();
        }
    }
    // SAFETY: the mapping made above, used by nothing else.
    unsafe { libc::munmap(map, LEN) };
    drop((a, b));
}

/// Runs `body` in a child process as test `name`; fails if the child fails,
/// dies of a signal or outlives [`PATIENCE`].
fn isolated(name: &str, body: fn()) {
    isolated_with(name, &[], body)
}

/// [`isolated`], with `env` set in the child's environment only (tests run
/// on parallel threads: a variable of this process would reach the
/// children of other tests too).
fn isolated_with(name: &str, env: &[(&str, &str)], body: fn()) {
    if std::env::var(SCENARIO).as_deref() == Ok(name) {
        body();
        return;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(exe)
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(SCENARIO, name)
        .envs(env.iter().copied())
        .spawn()
        .expect("re-run the test binary");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the scenario") {
            break status;
        }
        if start.elapsed() > PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name}: hung for {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        status.success(),
        "{name}: the scenario failed or crashed: {status}"
    );
}

/// The `index`th ring of `dir` (0 TX, 1 RX) of `port`, as C would find it.
fn ring_of(port: &Netmap, dir: usize, index: usize) -> *mut netmap_ring {
    let nifp = port.raw_if().as_ptr();
    // SAFETY: the port's netmap_if, with the ring counts the embedded kernel
    // wrote; `index` is a bound ring. (This is the peer's view, which reads
    // the counts; the crate reads them once at open.)
    unsafe {
        if dir == 0 {
            ffi::NETMAP_TXRING(nifp, index)
        } else {
            ffi::NETMAP_RXRING(nifp, index)
        }
    }
}

/// Slot `i` of `ring`.
fn slot(ring: *mut netmap_ring, i: u32) -> *mut netmap_slot {
    // SAFETY: the caller passes `i` below the ring's slot count; the slots
    // follow the 256-byte header.
    unsafe {
        ring.cast::<u8>()
            .add(size_of::<netmap_ring>())
            .cast::<netmap_slot>()
            .add(i as usize)
    }
}

/// A broadcast Ethernet frame of 60 bytes (the shortest a veth carries)
/// that starts its payload with `tag`: what every scenario sends.
fn pkt(tag: &str) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x88, 0xb5]);
    f.extend_from_slice(tag.as_bytes());
    f.resize(60, 0);
    f
}

/// Writes `v` into the shared region at `p`, as a peer process would.
fn poke<T>(p: *mut T, v: T) {
    // SAFETY: every caller passes an aligned field of a live port's region;
    // the crate reads such fields only through raw pointers and atomics.
    unsafe { ptr::write_volatile(p, v) }
}

fn forged_netmap_if_counts_after_open_change_nothing(pair: Pair) {
    let (a, b) = pair("hcounts");
    let nifp = b.raw_if().as_ptr();
    // SAFETY: fields of b's live netmap_if.
    unsafe {
        poke(ptr::addr_of_mut!((*nifp).ni_tx_rings), u32::MAX);
        poke(ptr::addr_of_mut!((*nifp).ni_host_tx_rings), u32::MAX);
        poke(ptr::addr_of_mut!((*nifp).ni_rx_rings), 0);
    }
    let mut tx = a.tx_ring(0).unwrap();
    tx.send(&pkt("counted once")).unwrap();
    tx.sync().unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    assert_eq!(arrived(&b, &mut rx, 1), 1);
    assert_eq!(rx.recv().unwrap().payload(), pkt("counted once"));
}

fn forged_ring_constants_after_open_change_nothing(pair: Pair) {
    let (a, b) = pair("hconsts");
    let r = ring_of(&b, 1, 0);
    // SAFETY: fields of b's live RX ring header.
    unsafe {
        poke(ptr::addr_of_mut!((*r).num_slots), u32::MAX);
        poke(ptr::addr_of_mut!((*r).nr_buf_size), u32::MAX);
        poke(ptr::addr_of_mut!((*r).buf_ofs), i64::MIN);
    }
    // A multi-slot packet, so that scratch memory would be sized from
    // the forged header if it were read again.
    let big: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    let mut tx = a.tx_ring(0).unwrap();
    tx.send(&big).unwrap();
    tx.sync().unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    assert_eq!(rx.num_slots() as u32, b.num_slots().1);
    assert_eq!(rx.sync().unwrap(), big.len().div_ceil(rx.buf_size()));
    assert_eq!(rx.recv().unwrap().payload(), &big[..]);
}

fn a_corrupt_buffer_index_is_skipped_and_drain_rx_returns(pair: Pair) {
    let (a, b) = pair("hbufidx");
    let mut tx = a.tx_ring(0).unwrap();
    for p in ["first", "second", "third"] {
        tx.send(&pkt(p)).unwrap();
    }
    tx.sync().unwrap();
    arrived(&b, &mut b.rx_ring(0).unwrap(), 3);
    // The peer points the second packet's slot outside the region.
    let r = ring_of(&b, 1, 0);
    // SAFETY: slot 1 of b's RX ring, which holds the second packet.
    unsafe { poke(ptr::addr_of_mut!((*slot(r, 1)).buf_idx), u32::MAX) };
    let mut got = Vec::new();
    let first = b.drain_rx(|f| got.push(f.to_vec()));
    assert!(matches!(first, Err(Error::RingCorrupt { .. })), "{first:?}");
    assert_eq!(got, [pkt("first"), pkt("third")]);
    // Reported once; the ring goes on.
    tx.send(&pkt("fourth")).unwrap();
    tx.sync().unwrap();
    arrived(&b, &mut b.rx_ring(0).unwrap(), 1);
    let mut more = Vec::new();
    assert_eq!(b.drain_rx(|f| more.push(f.to_vec())).unwrap(), 1);
    assert_eq!(more, [pkt("fourth")]);
}

fn a_forged_length_is_clamped_to_the_buffer(pair: Pair) {
    let (a, b) = pair("hlen");
    let mut tx = a.tx_ring(0).unwrap();
    tx.send(&pkt("short")).unwrap();
    tx.sync().unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    arrived(&b, &mut rx, 1);
    let r = ring_of(&b, 1, 0);
    // SAFETY: slot 0 of b's RX ring, which holds the packet, and the ring's
    // offset mask: the packet starts that far into its buffer.
    let offset = unsafe {
        poke(ptr::addr_of_mut!((*slot(r, 0)).len), u16::MAX);
        ((*slot(r, 0)).ptr & (*r).offset_mask) as usize
    };
    assert_eq!(rx.recv().unwrap().len(), rx.buf_size() - offset);
}

fn a_forged_head_is_an_error(pair: Pair) {
    let (a, _b) = pair("hhead");
    let r = ring_of(&a, 0, 0);
    // SAFETY: the head word of a's TX ring.
    unsafe { poke(ptr::addr_of_mut!((*r).head), 1000) };
    assert!(matches!(a.tx_ring(0), Err(Error::RingCorrupt { .. })));
    // SAFETY: as above.
    unsafe { poke(ptr::addr_of_mut!((*r).head), 0) };
    a.tx_ring(0).unwrap().send(&pkt("after")).unwrap();
}

fn a_tail_forged_while_syncing_is_refused_never_trusted(pair: Pair) {
    let (a, _b) = pair("htail");
    let mut tx = a.tx_ring(0).unwrap();
    // A peer thread stores a tail past the ring's end, over and over,
    // racing the embedded kernel, which rewrites it at every sync.
    let r = ring_of(&a, 0, 0);
    // SAFETY: `r` is a's live TX ring; this only computes a field address.
    let tail = unsafe { ptr::addr_of_mut!((*r).tail) } as usize;
    let stop = Arc::new(AtomicBool::new(false));
    let peer = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            // SAFETY: the tail word of a's TX ring, aligned, live until
            // `a` drops, after this thread is joined; stored atomically,
            // as the kernel side does.
            let tail = unsafe { AtomicU32::from_ptr(tail as *mut u32) };
            while !stop.load(Ordering::Relaxed) {
                tail.store(u32::MAX, Ordering::Relaxed);
            }
        })
    };
    let start = Instant::now();
    let mut refused = 0u32;
    while refused == 0 && start.elapsed() < Duration::from_secs(20) {
        match tx.sync() {
            Ok(()) => assert!(tx.space() < 64, "space {} of 64 slots", tx.space()),
            Err(Error::RingCorrupt { .. }) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    peer.join().unwrap();
    assert!(refused > 0, "the forged tail was never seen");
    tx.sync().unwrap();
    tx.send(&pkt("after")).unwrap();
}

fn a_forked_child_gets_errors_and_the_parent_keeps_its_rings(pair: Pair) {
    let (a, b) = pair("hfork");
    let mut tx = a.tx_ring(0).unwrap();
    tx.send(&pkt("before")).unwrap();
    // This scenario process runs one thread.
    fork::in_child(|| {
        // An inherited ring handle writes its own memory; every call that
        // would reach the rings refuses.
        // (On a shared region the child's view is private zeros, whose
        // slots the send may find unusable: it may fail either way.)
        let _ = tx.send(&pkt("from the child"));
        let ok = matches!(tx.sync(), Err(Error::Forked { .. }))
            && matches!(b.rx_ring(0), Err(Error::Forked { .. }))
            && matches!(a.poll(Some(Duration::ZERO)), Err(Error::Forked { .. }))
            && matches!(a.inject(b"x"), Err(Error::Forked { .. }));
        // Dropping inherited ports in the child releases nothing of the
        // parent's. SAFETY: the child exits right after this closure, so
        // these bitwise copies are the only ones ever dropped or used here.
        unsafe {
            drop(ptr::read(&tx));
            drop(ptr::read(&a));
            drop(ptr::read(&b));
        }
        ok
    });
    tx.send(&pkt("after")).unwrap();
    tx.sync().unwrap();
    let mut got = Vec::new();
    let start = Instant::now();
    while got.len() < 2 && start.elapsed() < PATIENCE {
        b.poll(Some(Duration::from_millis(50))).unwrap();
        b.drain_rx(|f| got.push(f.to_vec())).unwrap();
    }
    assert_eq!(got, [pkt("before"), pkt("after")]);
}

fn a_forged_buf_changed_flag_changes_only_what_push_reuse_says(pair: Pair) {
    let (a, b) = pair("hreuse");
    let mut tx = a.tx_ring(0).unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    let n = tx.num_slots() as u32;
    let r = ring_of(&a, 0, 0);
    // Two laps, so that every slot has held a packet of this handle.
    for _ in 0..2 {
        let mut batch = tx.batch();
        while let Ok((buf, _)) = batch.push_reuse(60) {
            buf.fill(0x5a);
        }
        batch.commit();
        tx.sync().unwrap();
        rx.sync().unwrap();
        rx.iter().for_each(drop);
        rx.sync().unwrap();
        tx.sync().unwrap();
    }
    // The peer sets the flag on every free slot (as if it had swapped all
    // buffers), then clears it on every other one, and points one at a
    // buffer outside the region.
    let (head, free) = (published_head(r), tx.space() as u32);
    for k in 0..free {
        let i = (head + k) % n;
        // SAFETY: slot `i` of a's TX ring.
        unsafe {
            let f = ptr::addr_of_mut!((*slot(r, i)).flags);
            poke(f, ffi::NS_BUF_CHANGED);
            if k % 2 == 1 {
                poke(f, 0);
            }
        }
    }
    // SAFETY: as above.
    unsafe { poke(ptr::addr_of_mut!((*slot(r, (head + 2) % n)).buf_idx), u32::MAX) };
    let mut batch = tx.batch();
    let mut seen = Vec::new();
    loop {
        match batch.push_reuse(60) {
            Ok((buf, fresh)) => {
                assert_eq!(buf.len(), 60);
                seen.push(fresh);
            }
            Err(Error::RingCorrupt { .. }) => seen.push(false),
            Err(Error::RingFull { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    batch.commit();
    assert_eq!(seen.len() as u32, free);
    for (k, fresh) in seen.iter().enumerate() {
        if k != 2 {
            assert_eq!(*fresh, k % 2 == 0, "slot {k} of the batch");
        }
    }
    tx.sync().unwrap();
}

/// AF_XDP: TX slots forged between `send` and the sync (a buffer outside
/// the region, a length past the buffer, an offset past it) lose their own
/// packets only, with an error for the lengths; the others arrive, and
/// every frame comes back to the ring.
fn forged_tx_slots_cost_only_their_packets(pair: Pair) {
    let (a, b) = pair("htxslots");
    let mut tx = a.tx_ring(0).unwrap();
    let room = tx.space();
    let r = ring_of(&a, 0, 0);
    let h = published_head(r);
    let n = tx.num_slots() as u32;
    for t in ["good0", "bad index", "bad length", "bad offset", "good1"] {
        tx.send(&pkt(t)).unwrap();
    }
    // SAFETY: slots of a's TX ring that the sends staged and no sync has
    // handed over yet.
    unsafe {
        poke(ptr::addr_of_mut!((*slot(r, (h + 1) % n)).buf_idx), u32::MAX);
        poke(ptr::addr_of_mut!((*slot(r, (h + 2) % n)).len), u16::MAX);
        poke(ptr::addr_of_mut!((*slot(r, (h + 3) % n)).ptr), u64::MAX);
    }
    let e = tx.sync().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EMSGSIZE), "{e}");
    let mut rx = b.rx_ring(0).unwrap();
    arrived(&b, &mut rx, 2);
    let got: Vec<Vec<u8>> = rx.iter().map(|f| f.payload().to_vec()).collect();
    assert_eq!(got, [pkt("good0"), pkt("good1")]);
    // Every frame is back: the ring fills up to its room again.
    let start = Instant::now();
    while tx.space() < room && start.elapsed() < PATIENCE / 2 {
        a.poll_writable(Some(Duration::from_millis(50))).unwrap();
        tx.sync().unwrap();
    }
    assert_eq!(tx.space(), room);
    tx.send(&pkt("after")).unwrap();
    tx.sync().unwrap();
    assert_eq!(arrived(&b, &mut rx, 1), 1);
}

/// Syncs `rx` of `port` until at least `n` packets wait in it (at once on a
/// pipe; over a veth pair, once the kernel has delivered them); returns how
/// many wait.
fn arrived(port: &Netmap, rx: &mut RxRing<'_>, n: usize) -> usize {
    let start = Instant::now();
    loop {
        let k = rx.sync().unwrap();
        if k >= n || start.elapsed() > PATIENCE / 2 {
            return k;
        }
        port.poll(Some(Duration::from_millis(50))).unwrap();
    }
}

/// The head a's TX ring publishes, read as the peer would.
fn published_head(r: *mut netmap_ring) -> u32 {
    // SAFETY: the head word of a live ring.
    unsafe { ptr::read_volatile(ptr::addr_of!((*r).head)) }
}

/// A peer that names the port's extra buffers in its slots (learnt from the
/// list the kernel left at `ni_bufs_head`) gets those slots refused and
/// emptied, so a kept packet's buffer is never also in a live slot; the
/// rings go on.
fn forged_slots_never_alias_kept_packets(pair: Pair) {
    let (a, b) = pair("hkeep");
    assert_eq!(b.extra_buffers(), 8);
    let (nif, rx_ring, tx_ring) = (b.raw_if().as_ptr(), ring_of(&b, 1, 0), ring_of(&b, 0, 0));
    // SAFETY: the port's netmap_if and one of its extra buffers, whose
    // first word links the list, as a peer reads them.
    let (first, second) = unsafe {
        let first = ptr::read_volatile(ptr::addr_of!((*nif).ni_bufs_head));
        (
            first,
            ptr::read_volatile(ffi::NETMAP_BUF(rx_ring, first).cast::<u32>()),
        )
    };
    let mut tx = a.tx_ring(0).unwrap();
    for p in ["first", "second", "third"] {
        tx.send(&pkt(p)).unwrap();
    }
    tx.sync().unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    arrived(&b, &mut rx, 3);
    // The first packet's slot names a free extra buffer.
    // SAFETY: slot 0 of b's RX ring, which holds the first packet.
    unsafe { poke(ptr::addr_of_mut!((*slot(rx_ring, 0)).buf_idx), first) };
    assert!(matches!(rx.keep(), Err(Error::RingCorrupt { .. })));
    // SAFETY: as above.
    assert_eq!(
        unsafe { ptr::read_volatile(ptr::addr_of!((*slot(rx_ring, 0)).buf_idx)) },
        0
    );
    let kept = rx.keep().unwrap().expect("the second packet");
    assert_eq!(kept.payload(), &pkt("second")[..]);
    // The TX slot the kept packet would go to names another free one.
    let mut btx = b.tx_ring(0).unwrap();
    let head = published_head(tx_ring);
    // SAFETY: the head slot of b's TX ring, free room.
    unsafe { poke(ptr::addr_of_mut!((*slot(tx_ring, head)).buf_idx), second) };
    assert!(matches!(btx.send_kept(kept), Err(Error::RingCorrupt { .. })));
    assert_eq!(b.free_extra_buffers(), 8, "the refused packet's buffer came back");
    // The rings go on: the third packet is kept and sent for real.
    let third = rx.keep().unwrap().expect("the third packet");
    btx.send_kept(third).unwrap();
    btx.sync().unwrap();
    let mut arx = a.rx_ring(0).unwrap();
    arrived(&a, &mut arx, 1);
    assert_eq!(arx.recv().unwrap().payload(), &pkt("third")[..]);
}
