//! The ring layer on a netmap region built on the heap, with the test
//! playing the kernel (and a hostile peer) through raw pointers: small
//! enough for Miri (`cargo +nightly miri test --lib ring::`), which checks
//! every access the ring code makes to shared memory.
//!
//! The heap port has one TX ring and one RX ring of [`SLOTS`] slots, with
//! distinct buffers. Its "kernel" loops TX back to RX by buffer swap: a TX
//! sync moves every packet handed over into the RX ring's free slots (as a
//! VALE port or a pipe does), dropping what does not fit; an RX sync takes
//! back the slots the user released.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use super::*;
use crate::backend::kernel::KernelPort;
use crate::backend::kring::{SharedRing, Slot};
use crate::backend::{nm_prev, Mapping, MemDomain, PortFd, SyncDir};
use crate::error::BackendKind;
use crate::ffi::nmreq_register;
use crate::frame::Frame;
use crate::port::Netmap;
use crate::spec;

const SLOTS: u32 = 8;
const BUF: usize = 256;
const IF_OFS: usize = 0;
const TX_OFS: usize = 128;
const RING_BYTES: usize = RING_HDR + SLOTS as usize * 16;
const RX_OFS: usize = TX_OFS + RING_BYTES;
const BUFS_OFS: usize = RX_OFS + RING_BYTES;
/// Buffers 0 and 1 are reserved, as in netmap; TX has 2..10, RX 10..18,
/// and a port opened with [`heap_port_extra`] has 18..22 as extra buffers.
const NBUFS: usize = 2 + 2 * SLOTS as usize + EXTRA as usize;
/// The extra buffers of [`heap_port_extra`].
const EXTRA: u32 = 4;
const FIRST_EXTRA: u32 = 2 + 2 * SLOTS;
const LEN: usize = BUFS_OFS + NBUFS * BUF;
/// The table entry of the RX ring: after the TX ring's and the placeholder
/// host TX ring's.
const RX_ENTRY: usize = IF_OFS + IF_HDR + 2 * 8;

/// The heap region, freed when the last `Arc` (the port's mapping) drops.
#[derive(Debug)]
struct Heap {
    base: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the region is plain memory; all access goes through raw pointers
// under the ring ownership rules, as for a real mapping.
unsafe impl Send for Heap {}
// SAFETY: as above.
unsafe impl Sync for Heap {}

impl Drop for Heap {
    fn drop(&mut self) {
        // SAFETY: allocated in `heap_port_sized` with `layout`, freed once here.
        unsafe { dealloc(self.base.as_ptr(), self.layout) }
    }
}

/// The kernel's private state of the two rings.
#[derive(Debug, Default)]
struct KState {
    tx_hwcur: u32,
    rx_hwcur: u32,
    rx_hwtail: u32,
}

/// The heap port's descriptor (built as an open, registered port, so it
/// has a [`PortFd`] only): its syncs are the kernel's work.
#[derive(Debug)]
struct HeapFd {
    base: NonNull<u8>,
    state: Arc<Mutex<KState>>,
}

// SAFETY: `base` names the heap region, which the port's mapping keeps
// alive and which is only accessed under the ring rules.
unsafe impl Send for HeapFd {}

impl HeapFd {
    fn ring(&self, ofs: usize) -> SharedRing<'_> {
        // SAFETY: the rings lie at these offsets of the live region, 128-aligned,
        // with their SLOTS slots; every index used is below SLOTS.
        unsafe { SharedRing::new(self.base.add(ofs)) }
    }
}

impl PortFd for HeapFd {
    fn sync(&self, dir: SyncDir) -> io::Result<()> {
        let mut st = self.state.lock().unwrap();
        let (tx, rx) = (self.ring(TX_OFS), self.ring(RX_OFS));
        match dir {
            SyncDir::Tx => {
                let (head, _) = tx.head_cur();
                if head >= SLOTS {
                    return Err(io::Error::from_raw_os_error(libc::EINVAL));
                }
                while st.tx_hwcur != head {
                    let i = st.tx_hwcur;
                    let t = tx.load(i);
                    // Room in RX: the slots before the one the user holds first.
                    if st.rx_hwtail != nm_prev(st.rx_hwcur, SLOTS) {
                        let k = st.rx_hwtail;
                        let r = rx.load(k);
                        rx.store(
                            k,
                            Slot {
                                buf_idx: t.buf_idx,
                                ..t
                            },
                        );
                        tx.store(
                            i,
                            Slot {
                                buf_idx: r.buf_idx,
                                len: 0,
                                flags: 0,
                                ptr: 0,
                            },
                        );
                        st.rx_hwtail = nm_next(k, SLOTS);
                    }
                    st.tx_hwcur = nm_next(i, SLOTS);
                }
                // Everything handed over is sent at once.
                tx.set_tail(nm_prev(st.tx_hwcur, SLOTS));
            }
            SyncDir::Rx => {
                let (head, _) = rx.head_cur();
                if head >= SLOTS {
                    return Err(io::Error::from_raw_os_error(libc::EINVAL));
                }
                st.rx_hwcur = head;
                rx.set_tail(st.rx_hwtail);
            }
        }
        Ok(())
    }

    fn poll(&self, _events: i16, _deadline: crate::backend::sys::Deadline) -> io::Result<i16> {
        Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the test process's stdin stays open while it runs; nothing
        // here reads it (the heap port is never polled).
        unsafe { BorrowedFd::borrow_raw(0) }
    }
}

/// Writes `v` at offset `ofs` of the heap region at `base`, as a peer
/// process (or the kernel) would.
fn put<T>(base: *mut u8, ofs: usize, v: T) {
    assert!(ofs + std::mem::size_of::<T>() <= LEN && ofs.is_multiple_of(std::mem::align_of::<T>()));
    // SAFETY: `base` is a live heap region of `LEN` bytes (every caller
    // passes one), and the `T` at `ofs` lies inside it, aligned (asserted).
    unsafe { base.add(ofs).cast::<T>().write(v) }
}

/// Offset of field `field` of slot `i` of the ring at `ring`.
fn slot_at(ring: usize, i: u32, field: usize) -> usize {
    ring + RING_HDR + i as usize * std::mem::size_of::<netmap_slot>() + field
}

const BUF_IDX: usize = std::mem::offset_of!(netmap_slot, buf_idx);
const SLOT_LEN: usize = std::mem::offset_of!(netmap_slot, len);
const FLAGS: usize = std::mem::offset_of!(netmap_slot, flags);

/// A fresh heap region laid out as netmap would for a port of one TX and one
/// RX ring, with `forge` run over it before the port opens (to play a
/// hostile peer), and the port opened on it.
fn heap_port_with(forge: impl FnOnce(*mut u8)) -> Result<Netmap> {
    heap_port_sized(BUF, 0, forge)
}

/// [`heap_port_with`], granted [`EXTRA`] extra buffers, listed as the
/// kernel lists them before `forge` runs: from `ni_bufs_head`, each naming
/// the next in its first word.
fn heap_port_extra(forge: impl FnOnce(*mut u8)) -> Result<Netmap> {
    heap_port_sized(BUF, EXTRA, |b| {
        put(
            b,
            IF_OFS + std::mem::offset_of!(netmap_if, ni_bufs_head),
            FIRST_EXTRA,
        );
        for k in 0..EXTRA {
            let next = if k + 1 < EXTRA { FIRST_EXTRA + k + 1 } else { 0 };
            put(b, buf_at(FIRST_EXTRA + k), next);
        }
        forge(b)
    })
}

/// Offset of buffer `idx` in the heap region.
fn buf_at(idx: u32) -> usize {
    BUFS_OFS + idx as usize * BUF
}

/// [`heap_port_with`], with buffers of `buf` bytes.
fn heap_port_sized(buf: usize, extra: u32, forge: impl FnOnce(*mut u8)) -> Result<Netmap> {
    let len = BUFS_OFS + NBUFS * buf;
    let layout = Layout::from_size_align(len, 128).expect("a heap layout");
    // SAFETY: `layout` has a non-zero size.
    let base = NonNull::new(unsafe { alloc_zeroed(layout) }).expect("allocation");
    let heap = Arc::new(Heap { base, layout });
    let b = base.as_ptr();
    put(b, IF_OFS + std::mem::offset_of!(netmap_if, ni_tx_rings), 1u32);
    put(b, IF_OFS + std::mem::offset_of!(netmap_if, ni_rx_rings), 1u32);
    // As the kernel does for ports without host rings: one placeholder host
    // ring per direction in the table, offset 0.
    put(
        b,
        IF_OFS + std::mem::offset_of!(netmap_if, ni_host_tx_rings),
        1u32,
    );
    put(
        b,
        IF_OFS + std::mem::offset_of!(netmap_if, ni_host_rx_rings),
        1u32,
    );
    put(b, IF_OFS + IF_HDR, (TX_OFS - IF_OFS) as isize);
    put(b, RX_ENTRY, (RX_OFS - IF_OFS) as isize);
    for (k, ofs) in [TX_OFS, RX_OFS].into_iter().enumerate() {
        put(b, ofs, (BUFS_OFS - ofs) as i64);
        put(b, ofs + std::mem::offset_of!(netmap_ring, num_slots), SLOTS);
        put(
            b,
            ofs + std::mem::offset_of!(netmap_ring, nr_buf_size),
            buf as u32,
        );
        put(b, ofs + std::mem::offset_of!(netmap_ring, dir), k as u16);
        let tail = if k == 0 { SLOTS - 1 } else { 0 };
        put(b, ofs + std::mem::offset_of!(netmap_ring, tail), tail);
        for i in 0..SLOTS {
            let idx = 2 + k as u32 * SLOTS + i;
            put(b, slot_at(ofs, i, BUF_IDX), idx);
        }
    }
    forge(b);
    let reg = nmreq_register {
        nr_offset: IF_OFS as u64,
        nr_memsize: len as u64,
        nr_tx_slots: SLOTS,
        nr_rx_slots: SLOTS,
        nr_tx_rings: 1,
        nr_rx_rings: 1,
        nr_mem_id: 1,
        nr_extra_bufs: extra,
        ..Default::default()
    };
    let owner: Arc<dyn Send + Sync> = heap;
    // SAFETY: the region stays allocated while `owner` lives.
    let map = unsafe { Mapping::shared(base, len, owner) };
    let table = IfTable::read(&map, NonNull::new(b.cast()).unwrap(), &reg)?;
    let port = KernelPort {
        table,
        map: Arc::new(map),
        fd: Box::new(HeapFd {
            base,
            state: Arc::default(),
        }),
        nifp: NonNull::new(b.cast()).unwrap(),
        reg,
        tx: 0..1,
        rx: 0..1,
    };
    let spec = spec::parse("netmap:heap").expect("a valid name");
    Netmap::new(port, spec, BackendKind::Kernel, MemDomain::Kernel, Vec::new())
}

fn heap_port() -> Netmap {
    heap_port_with(|_| {}).expect("the heap port opens")
}

/// The region of `port`, to play a hostile peer on after open.
fn region(port: &Netmap) -> *mut u8 {
    port.raw_region().cast::<u8>().as_ptr()
}

fn packet(seq: u32, len: usize) -> Vec<u8> {
    (0..len).map(|k| (seq as usize * 7 + k) as u8).collect()
}

#[test]
fn wrap_without_masking() {
    assert_eq!(nm_next(4, 5), 0);
    assert_eq!(nm_next(3, 5), 4);
    assert_eq!(ffi::nm_space(3, 1, 5), 3);
    assert_eq!(ffi::nm_space(1, 3, 5), 2);
    assert_eq!(ffi::nm_space(2, 2, 5), 0);
}

#[test]
fn send_and_receive_over_many_laps() {
    let port = heap_port();
    let (mut tx, mut rx) = (port.tx_ring(0).unwrap(), port.rx_ring(0).unwrap());
    assert_eq!((tx.space(), tx.num_slots(), tx.buf_size()), (7, 8, BUF));
    let mut seq = 0u32;
    for lap in 0..20u32 {
        let n = 1 + lap % 5;
        for _ in 0..n {
            tx.send(&packet(seq, 60 + seq as usize % 100)).unwrap();
            seq += 1;
        }
        tx.sync().unwrap();
        assert_eq!(rx.sync().unwrap(), n as usize);
        let first = seq - n;
        for (k, frame) in rx.iter().enumerate() {
            let s = first + k as u32;
            assert_eq!(frame.payload(), &packet(s, 60 + s as usize % 100)[..]);
        }
        assert!(rx.recv().is_none());
        // Hand the slots back, or the loop's kernel drops what finds no room.
        assert_eq!(rx.sync().unwrap(), 0);
    }
}

#[test]
fn batches_build_in_place_and_roll_back() {
    let port = heap_port();
    let (mut tx, mut rx) = (port.tx_ring(0).unwrap(), port.rx_ring(0).unwrap());
    let mut batch = tx.batch();
    batch.push(10).unwrap().fill(1);
    drop(batch);
    assert_eq!(tx.space(), 7, "a dropped batch stages nothing");
    let mut batch = tx.batch();
    for k in 0..7u8 {
        batch.push(20 + k as usize).unwrap().fill(k);
    }
    assert!(matches!(batch.push(1), Err(Error::RingFull { .. })));
    assert_eq!(batch.commit(), 7);
    tx.sync().unwrap();
    assert_eq!(rx.sync().unwrap(), 7);
    let lens: Vec<usize> = rx.iter().map(|f| f.len()).collect();
    assert_eq!(lens, (20..27).collect::<Vec<_>>());
}

#[test]
fn multi_slot_packets_cross_whole() {
    let port = heap_port();
    let (mut tx, mut rx) = (port.tx_ring(0).unwrap(), port.rx_ring(0).unwrap());
    let big = packet(3, 3 * BUF + 5);
    tx.send(&big).unwrap();
    tx.send(b"small").unwrap();
    tx.sync().unwrap();
    assert_eq!(rx.sync().unwrap(), 5);
    {
        let frames: Vec<Frame<'_>> = rx.iter().collect();
        assert_eq!(frames.len(), 2);
        assert_eq!((frames[0].payload(), frames[0].slots()), (&big[..], 4));
        assert_eq!(frames[1].payload(), b"small");
    }
    assert!(matches!(
        tx.send(&vec![0; tx.max_packet() + 1]),
        Err(Error::PacketTooLarge { .. })
    ));
}

#[test]
fn forwarding_swaps_buffers() {
    let port = heap_port();
    let (mut tx, mut rx) = (port.tx_ring(0).unwrap(), port.rx_ring(0).unwrap());
    for k in 0..3 {
        tx.send(&packet(k, 40)).unwrap();
    }
    tx.sync().unwrap();
    rx.sync().unwrap();
    // Back around the loop, without a copy.
    assert_eq!(tx.forward_from(&mut rx).unwrap(), 3);
    tx.sync().unwrap();
    assert_eq!(rx.sync().unwrap(), 3);
    let frame = rx.recv().unwrap();
    assert_eq!(frame.payload(), &packet(0, 40)[..]);
    tx.forward(frame).unwrap();
    tx.sync().unwrap();
    rx.sync().unwrap();
    let got: Vec<Vec<u8>> = rx.iter().map(|f| f.to_vec()).collect();
    assert_eq!(got, [packet(1, 40), packet(2, 40), packet(0, 40)]);
}

/// A forward stages its slot without publishing the head; a sync, or the
/// handle's drop, hands it to the kernel.
#[test]
fn forwarded_slots_go_out_at_the_next_sync_or_drop() {
    let port = heap_port();
    let (mut tx, mut rx) = (port.tx_ring(0).unwrap(), port.rx_ring(0).unwrap());
    tx.send(&packet(7, 40)).unwrap();
    tx.sync().unwrap();
    rx.sync().unwrap();
    let frame = rx.recv().unwrap();
    tx.forward(frame).unwrap();
    // The port's own sync sees the ring as the kernel does: nothing new.
    drop(rx);
    port.txsync().unwrap();
    port.rxsync().unwrap();
    let mut rx = port.rx_ring(0).unwrap();
    assert_eq!(rx.sync().unwrap(), 0, "forwarded before the TX ring published");
    drop(tx);
    port.txsync().unwrap();
    assert_eq!(rx.sync().unwrap(), 1);
    assert_eq!(rx.recv().unwrap().payload(), &packet(7, 40)[..]);
}

#[test]
fn forged_ring_constants_refuse_the_port() {
    use std::mem::offset_of;
    type Forge = Box<dyn FnOnce(*mut u8)>;
    let cases: [(&str, Forge); 7] = [
        (
            "the register reply 8",
            Box::new(|b| put(b, RX_OFS + offset_of!(netmap_ring, num_slots), 1u32 << 30)),
        ),
        (
            "nr_buf_size",
            Box::new(|b| put(b, TX_OFS + offset_of!(netmap_ring, nr_buf_size), u32::MAX)),
        ),
        (
            "aligned",
            Box::new(|b| put(b, RX_ENTRY, (RX_OFS - IF_OFS + 4) as isize)),
        ),
        ("outside", Box::new(|b| put(b, IF_OFS + IF_HDR, isize::MAX))),
        (
            "(TX, host TX, RX, host RX)",
            Box::new(|b| put(b, IF_OFS + offset_of!(netmap_if, ni_tx_rings), 1000u32)),
        ),
        ("buf_ofs", Box::new(|b| put(b, RX_OFS, i64::MIN))),
        (
            "host RX",
            Box::new(|b| put(b, IF_OFS + offset_of!(netmap_if, ni_host_rx_rings), 2u32)),
        ),
    ];
    for (what, forge) in cases {
        match heap_port_with(forge) {
            Err(Error::RingCorrupt { what: text, .. }) => assert!(text.contains(what), "{what}: {text}"),
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn shared_memory_is_not_read_again_after_open() {
    let port = heap_port();
    let b = region(&port);
    // A peer rewrites the netmap_if counts, the ring offsets and a ring
    // header after the port opened: the port never looks at them again.
    put(b, IF_OFS + std::mem::offset_of!(netmap_if, ni_tx_rings), u32::MAX);
    put(b, RX_ENTRY, isize::MIN);
    put(b, RX_OFS + std::mem::offset_of!(netmap_ring, num_slots), u32::MAX);
    let (mut tx, mut rx) = (port.tx_ring(0).unwrap(), port.rx_ring(0).unwrap());
    tx.send(b"still fine").unwrap();
    tx.sync().unwrap();
    assert_eq!(rx.sync().unwrap(), 1);
    assert_eq!(rx.recv().unwrap().payload(), b"still fine");
}

#[test]
fn a_corrupt_rx_slot_is_skipped_reported_once_and_the_ring_moves_on() {
    let port = heap_port();
    let (mut tx, mut rx) = (port.tx_ring(0).unwrap(), port.rx_ring(0).unwrap());
    for k in 0..3 {
        tx.send(&packet(k, 30)).unwrap();
    }
    tx.sync().unwrap();
    assert_eq!(rx.sync().unwrap(), 3);
    // The peer points the middle packet's slot far outside the region.
    put(region(&port), slot_at(RX_OFS, 1, BUF_IDX), u32::MAX);
    let got: Vec<Vec<u8>> = rx.iter().map(|f| f.to_vec()).collect();
    assert_eq!(got, [packet(0, 30), packet(2, 30)]);
    assert!(matches!(rx.sync(), Err(Error::RingCorrupt { .. })));
    assert_eq!(rx.sync().unwrap(), 0, "reported once");
    // A corrupt offset-less length is clamped to the buffer, not trusted.
    tx.send(b"x").unwrap();
    tx.sync().unwrap();
    rx.sync().unwrap();
    let i = rx.core.head();
    put(region(&port), slot_at(RX_OFS, i, SLOT_LEN), u16::MAX);
    assert_eq!(rx.recv().unwrap().len(), BUF);
}

#[test]
fn a_corrupt_tx_slot_is_handed_back_empty() {
    let port = heap_port();
    let mut tx = port.tx_ring(0).unwrap();
    put(region(&port), slot_at(TX_OFS, 0, BUF_IDX), NBUFS as u32);
    assert!(matches!(tx.send(b"lost"), Err(Error::RingCorrupt { .. })));
    assert_eq!(tx.space(), 6, "the corrupt slot went to the kernel");
    tx.send(b"kept").unwrap();
    // Two slots past the head.
    put(region(&port), slot_at(TX_OFS, 3, BUF_IDX), u32::MAX);
    // A multi-slot packet that needs it skips up to it, writing nothing.
    assert!(matches!(
        tx.send(&[7; 2 * BUF + 1]),
        Err(Error::RingCorrupt { .. })
    ));
    assert_eq!(tx.space(), 3);
}

#[test]
fn an_incomplete_chain_is_not_counted_and_a_full_ring_of_one_is_skipped() {
    let port = heap_port();
    let (mut tx, mut rx) = (port.tx_ring(0).unwrap(), port.rx_ring(0).unwrap());
    tx.send(b"whole").unwrap();
    tx.send(b"half").unwrap();
    tx.sync().unwrap();
    rx.sync().unwrap();
    // The peer marks the last slot as a fragment whose rest never comes.
    put(region(&port), slot_at(RX_OFS, 1, FLAGS), NS_MOREFRAG);
    assert_eq!(rx.recv().unwrap().payload(), b"whole");
    assert!(rx.recv().is_none(), "the chain waits");
    assert_eq!(rx.sync().unwrap(), 0, "a sync loop ends");
    // With the ring full of fragments, the chain can never complete.
    for _ in 0..6 {
        tx.send(b"frag").unwrap();
    }
    tx.sync().unwrap();
    rx.sync().unwrap();
    for i in 0..SLOTS {
        put(region(&port), slot_at(RX_OFS, i, FLAGS), NS_MOREFRAG);
    }
    assert_eq!(rx.pending(), 7);
    assert!(rx.recv().is_none());
    assert!(matches!(rx.sync(), Err(Error::RingCorrupt { .. })));
}

#[test]
fn a_forged_tail_is_refused() {
    let port = heap_port();
    let mut rx = port.rx_ring(0).unwrap();
    rx.sync().unwrap();
    drop(rx);
    // A peer stores a tail past the ring's end.
    put(
        region(&port),
        RX_OFS + std::mem::offset_of!(netmap_ring, tail),
        SLOTS,
    );
    assert!(matches!(port.rx_ring(0), Err(Error::RingCorrupt { .. })));
}

#[test]
fn scratch_memory_is_lent_by_the_port_and_reused() {
    let port = heap_port();
    let (mut tx, mut rx) = (port.tx_ring(0).unwrap(), port.rx_ring(0).unwrap());
    tx.send(&packet(1, 2 * BUF)).unwrap();
    tx.sync().unwrap();
    rx.sync().unwrap();
    assert_eq!(rx.recv().unwrap().len(), 2 * BUF);
    let cap = rx.scratch.mem.capacity();
    assert!(
        cap >= (SLOTS as usize + 2) * BUF && cap <= 2 * (SLOTS as usize + NETMAP_MAX_FRAGS as usize) * BUF
    );
    drop(rx);
    let rx = port.rx_ring(0).unwrap();
    assert_eq!(rx.scratch.mem.capacity(), cap, "the port kept it");
}

#[test]
fn slots_never_carry_a_truncated_length() {
    // Buffers larger than a slot's `u16` length can say.
    let port = heap_port_sized(70_000, 0, |_| {}).unwrap();
    let (mut tx, mut rx) = (port.tx_ring(0).unwrap(), port.rx_ring(0).unwrap());
    assert_eq!(tx.buf_size(), 70_000);
    assert_eq!(tx.max_packet(), u16::MAX as usize * NETMAP_MAX_FRAGS as usize);
    let big = packet(9, 66_000);
    tx.send(&big).unwrap();
    assert!(matches!(
        tx.batch().push(66_000),
        Err(Error::PacketTooLarge { max: 65_535, .. })
    ));
    tx.sync().unwrap();
    assert_eq!(rx.sync().unwrap(), 2, "two slots, not one with a cut length");
    let frame = rx.recv().unwrap();
    assert_eq!((frame.slots(), frame.payload()), (2, &big[..]));
}

#[test]
fn slots_naming_reserved_buffers_are_corrupt() {
    // The kernel parks the slots of placeholder rings on buffer 0: a ring
    // whose slots all name it would hand every packet the same bytes.
    let port = heap_port();
    let (mut tx, mut rx) = (port.tx_ring(0).unwrap(), port.rx_ring(0).unwrap());
    put(region(&port), slot_at(TX_OFS, 0, BUF_IDX), 0u32);
    assert!(matches!(tx.send(b"zero"), Err(Error::RingCorrupt { .. })));
    tx.send(b"one").unwrap();
    tx.send(b"two").unwrap();
    tx.sync().unwrap();
    rx.sync().unwrap();
    // The emptied slot (still on buffer 0) and the two packets arrived; the
    // peer parks the second packet's slot on buffer 1. Both are skipped.
    put(region(&port), slot_at(RX_OFS, 2, BUF_IDX), 1u32);
    let got: Vec<Vec<u8>> = rx.iter().map(|f| f.to_vec()).collect();
    assert_eq!(got, [b"one".to_vec()]);
    assert!(matches!(rx.sync(), Err(Error::RingCorrupt { .. })));
}

#[test]
fn timestamps_are_read_checked_and_requested_in_the_ring_flags() {
    use std::time::{Duration, SystemTime};
    let port = heap_port();
    let mut rx = port.rx_ring(0).unwrap();
    let ts = RX_OFS + std::mem::offset_of!(netmap_ring, ts);
    assert_eq!(rx.timestamp(), None, "never stamped");
    // The kernel's stamp.
    put(
        region(&port),
        ts,
        ffi::timeval {
            tv_sec: 1_700_000_000,
            tv_usec: 250_000,
        },
    );
    assert_eq!(
        rx.timestamp(),
        Some(SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 250_000_000))
    );
    // What a hostile peer may store instead: never a panic, never a time.
    for (tv_sec, tv_usec) in [(-1, 0), (5, -1), (5, 1_000_000), (i64::MIN, i64::MIN)] {
        put(region(&port), ts, ffi::timeval { tv_sec, tv_usec });
        assert_eq!(rx.timestamp(), None, "{tv_sec}.{tv_usec}");
    }
    put(
        region(&port),
        ts,
        ffi::timeval {
            tv_sec: i64::MAX,
            tv_usec: 999_999,
        },
    );
    let _ = rx.timestamp();
    // The request is the ring's NR_TIMESTAMP flag, next to the flags the
    // ring had.
    let flags = RX_OFS + std::mem::offset_of!(netmap_ring, flags);
    put(region(&port), flags, ffi::NR_FORWARD);
    assert!(!rx.timestamps_requested());
    rx.request_timestamps(true);
    assert!(rx.timestamps_requested());
    // SAFETY: the test plays the kernel, reading a field the user wrote.
    let seen = unsafe { region(&port).add(flags).cast::<u32>().read() };
    assert_eq!(seen, ffi::NR_FORWARD | ffi::NR_TIMESTAMP);
    rx.request_timestamps(false);
    // SAFETY: as above.
    let seen = unsafe { region(&port).add(flags).cast::<u32>().read() };
    assert_eq!(seen, ffi::NR_FORWARD);
}

#[test]
fn extra_buffers_are_read_from_the_list_and_written_back_at_close() {
    let port = heap_port_extra(|_| {}).unwrap();
    assert_eq!(
        (port.extra_buffers(), port.free_extra_buffers()),
        (EXTRA as usize, EXTRA as usize)
    );
    let (mut tx, mut rx) = (port.tx_ring(0).unwrap(), port.rx_ring(0).unwrap());
    tx.send(&packet(1, 60)).unwrap();
    tx.send(&packet(2, 60)).unwrap();
    tx.sync().unwrap();
    rx.sync().unwrap();
    let kept = rx.keep().unwrap().unwrap();
    assert_eq!(kept.payload(), &packet(1, 60)[..]);
    // The slot now names an extra buffer, flagged changed.
    // SAFETY: the test reads what the user wrote, playing the kernel.
    let slot = unsafe {
        region(&port)
            .add(slot_at(RX_OFS, 0, 0))
            .cast::<netmap_slot>()
            .read()
    };
    assert!((FIRST_EXTRA..FIRST_EXTRA + EXTRA).contains(&slot.buf_idx));
    assert_ne!(slot.flags & ffi::NS_BUF_CHANGED, 0);
    // The packet goes out again in place of another slot's buffer.
    rx.recv().unwrap();
    tx.send_kept(kept).unwrap();
    assert_eq!(port.free_extra_buffers(), EXTRA as usize);
    tx.sync().unwrap();
    rx.sync().unwrap();
    assert_eq!(rx.recv().unwrap().payload(), &packet(1, 60)[..]);
    drop((tx, rx));
    let base = region(&port);
    // A kept packet outlives its port: its buffer stays out of the list.
    let mut rx = port.rx_ring(0).unwrap();
    let mut tx = port.tx_ring(0).unwrap();
    tx.send(&packet(3, 60)).unwrap();
    tx.sync().unwrap();
    rx.sync().unwrap();
    let late = rx.keep().unwrap().unwrap();
    drop((tx, rx));
    drop(port);
    assert_eq!(late.payload(), &packet(3, 60)[..]);
    // SAFETY: `late` keeps the heap mapped; the test reads the list the
    // port wrote back at close, as the kernel would.
    let listed = unsafe {
        let mut idx = base
            .add(IF_OFS + std::mem::offset_of!(netmap_if, ni_bufs_head))
            .cast::<u32>()
            .read();
        let mut n = Vec::new();
        while idx != 0 && n.len() <= NBUFS {
            n.push(idx);
            idx = base.add(buf_at(idx)).cast::<u32>().read();
        }
        n
    };
    assert_eq!(listed.len(), EXTRA as usize - 1);
    assert!(!listed.contains(&late.buf_idx()));
}

#[test]
fn forged_extra_buffer_lists_refuse_the_port() {
    let head = IF_OFS + std::mem::offset_of!(netmap_if, ni_bufs_head);
    type Forge = Box<dyn Fn(*mut u8)>;
    let cases: [(&str, Forge); 4] = [
        (
            "a cycle",
            Box::new(|b| put(b, buf_at(FIRST_EXTRA + 1), FIRST_EXTRA)),
        ),
        (
            "out of range",
            Box::new(|b| put(b, buf_at(FIRST_EXTRA), u32::MAX)),
        ),
        ("a reserved buffer", Box::new(move |b| put(b, head, 1u32))),
        ("too short", Box::new(|b| put(b, buf_at(FIRST_EXTRA + 1), 0u32))),
    ];
    for (what, forge) in cases {
        match heap_port_extra(forge) {
            Err(Error::RingCorrupt { .. }) => {}
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn slots_naming_extra_buffers_are_corrupt() {
    let port = heap_port_extra(|_| {}).unwrap();
    let (mut tx, mut rx) = (port.tx_ring(0).unwrap(), port.rx_ring(0).unwrap());
    tx.send(&packet(1, 60)).unwrap();
    tx.send(&packet(2, 60)).unwrap();
    tx.sync().unwrap();
    rx.sync().unwrap();
    // A peer names a free extra buffer in the first RX slot.
    put(region(&port), slot_at(RX_OFS, 0, BUF_IDX), FIRST_EXTRA + 2);
    assert!(matches!(rx.keep(), Err(Error::RingCorrupt { .. })));
    // SAFETY: the test reads the slot, playing the kernel.
    let slot = unsafe {
        region(&port)
            .add(slot_at(RX_OFS, 0, 0))
            .cast::<netmap_slot>()
            .read()
    };
    assert_eq!(slot.buf_idx, 0, "handed back naming no buffer");
    let kept = rx.keep().unwrap().unwrap();
    assert_eq!(kept.payload(), &packet(2, 60)[..]);
    // And in the TX slot a kept packet would go to.
    assert!(tx.space() > 0);
    let i = port_head(&port, TX_OFS);
    // (The keep above took the last listed buffer, FIRST_EXTRA + 3; the
    // first is still free.)
    put(region(&port), slot_at(TX_OFS, i, BUF_IDX), FIRST_EXTRA);
    assert!(matches!(tx.send_kept(kept), Err(Error::RingCorrupt { .. })));
    assert_eq!(
        port.free_extra_buffers(),
        EXTRA as usize,
        "the packet's buffer came back"
    );
}

/// The user's next slot of the ring at `ofs`, as staged (not published).
fn port_head(port: &Netmap, ofs: usize) -> u32 {
    // The TX ring's head is published at sync: the kernel's copy is the
    // slot after the packets sent so far.
    // SAFETY: the test reads a field the user wrote.
    unsafe {
        region(port)
            .add(ofs + std::mem::offset_of!(netmap_ring, head))
            .cast::<u32>()
            .read()
    }
}
