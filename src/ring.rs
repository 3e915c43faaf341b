//! TX and RX rings: index arithmetic, send, receive, batches, sync.
//!
//! A netmap ring is shared with the kernel. The user owns the slots in
//! `[head, tail)`; the kernel owns the rest. `head` and `cur` are written by
//! the user and read by the kernel during a sync; `tail` is written by the
//! kernel during a sync and read by the user after it. This module never
//! builds a Rust reference over those fields: it keeps its own copies of
//! `head` and `tail`, stores `head`/`cur` with `Release` before each sync and
//! loads `tail` with `Acquire` after it. Indices wrap at `num_slots`, which
//! need not be a power of two.
//!
//! Received slots are handed back to the kernel lazily: the shared `head`
//! moves past a slot only when `recv` finds the ring drained, at the next
//! `iter` or `sync`, or when the ring handle drops. All of these take the
//! ring by `&mut` (or by value), so none can run while a [`Frame`] of that
//! slot is alive, and a poll of the port (by
//! [`Netmap::poll`](crate::Netmap::poll) or an event loop) never returns to
//! the kernel a slot that user code still reads. It also keeps the receive
//! loop free of stores to the shared ring.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::backend::{Mapping, SyncDir};
use crate::error::{Error, Result};
use crate::ffi::{
    self, netmap_if, netmap_ring, netmap_slot, nm_next, nmreq_register, NETMAP_MAX_FRAGS, NS_BUF_CHANGED,
    NS_MOREFRAG,
};
use crate::frame::Frame;
use crate::port::{Netmap, RegionKey};

/// The part of a ring that both directions share: cached constants of the
/// ring, the user's copies of `head` and `tail`, and raw access to slots and
/// buffers.
#[derive(Clone)]
pub(crate) struct RingCore {
    ring: NonNull<netmap_ring>,
    slots: NonNull<netmap_slot>,
    /// `ring + buf_ofs`: buffer `i` starts at `bufs + i * buf_size`.
    bufs: NonNull<u8>,
    /// The first buffer index a slot may hold: netmap reserves buffers 0
    /// and 1 (the kernel parks unused slots of placeholder rings on buffer
    /// 0), so a slot naming one is corrupt.
    first_buf: u32,
    /// Valid buffer indices are `first_buf..first_buf + nbufs`, all inside
    /// the mapping.
    nbufs: u32,
    /// Bits of a slot's `ptr` that hold the packet's offset in its buffer
    /// (0 unless the port was opened with offsets).
    offset_mask: u64,
    num_slots: u32,
    buf_size: u32,
    /// Bytes a slot can carry from the start of its buffer:
    /// `min(buf_size, u16::MAX)`.
    slot_cap: u32,
    /// The user's next slot; published to the kernel's `head`/`cur`.
    head: u32,
    /// The kernel's `tail` as of the last sync.
    tail: u32,
    /// What the shared `head` holds now.
    published: u32,
    /// Corrupt slots skipped since the last report (see
    /// [`take_skipped`](RingCore::take_skipped)).
    skipped: u32,
    id: u16,
}

impl fmt::Debug for RingCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("id", &self.id)
            .field("num_slots", &self.num_slots)
            .field("buf_size", &self.buf_size)
            .field("head", &self.head)
            .field("tail", &self.tail)
            .finish()
    }
}

/// Size of the ring header before the slot array.
const RING_HDR: usize = std::mem::size_of::<netmap_ring>();

/// The alignment the ring code needs of a ring header: that of its widest
/// field read (`buf_ofs`, `offset_mask`) and of the slots that follow it.
/// The kernel places rings on cache lines; this is the least that is sound.
const RING_ALIGN: usize = std::mem::align_of::<u64>();

/// The largest length a slot can carry (`netmap_slot::len` is a `u16`): a
/// buffer's usable capacity is capped here, so no length is ever truncated.
const SLOT_LEN_MAX: usize = u16::MAX as usize;

/// Buffers netmap never puts in a slot in use: 0 (where the kernel parks
/// the slots of placeholder rings) and 1.
pub(crate) const RESERVED_BUFS: u32 = 2;

/// What the register reply says a ring must look like.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingShape {
    /// The ring's id (its position among the rings of its direction).
    pub id: u16,
    /// `nr_tx_slots` or `nr_rx_slots` of the register reply.
    pub num_slots: u32,
    /// The first buffer index a slot may hold (see [`RingCore`]).
    pub first_buf: u32,
}

impl RingCore {
    /// Reads and checks a ring's constants, once: the ring lies in the
    /// mapping, aligned, with the reply's slot count, a buffer size that
    /// fits the region, and buffers inside it. Nothing checked here is read
    /// from shared memory again.
    ///
    /// # Safety
    /// `[map_base, map_base + map_len)` must be a live mapping that outlives
    /// the returned value (and every clone of it).
    pub(crate) unsafe fn new(
        ring: NonNull<netmap_ring>,
        map_base: *mut u8,
        map_len: usize,
        shape: RingShape,
    ) -> Result<Self> {
        let r = ring.as_ptr();
        let id = shape.id;
        let map_end = map_base as usize + map_len;
        let corrupt = |what: String| Error::RingCorrupt { ring: id, what };
        if (r as usize) < map_base as usize || (r as usize).checked_add(RING_HDR).is_none_or(|e| e > map_end)
        {
            return Err(corrupt("the ring lies outside the mapped region".into()));
        }
        if r as usize % RING_ALIGN != 0 {
            return Err(corrupt(format!(
                "the ring header at region offset {} is not {RING_ALIGN}-byte aligned",
                r as usize - map_base as usize
            )));
        }
        // SAFETY: the header lies inside the mapping and is aligned (checked
        // above). Another process may write these fields; each is read once,
        // here, and checked before use.
        let (buf_ofs, num_slots, buf_size, offset_mask) = unsafe {
            (
                ptr::addr_of!((*r).buf_ofs).read_volatile(),
                ptr::addr_of!((*r).num_slots).read_volatile(),
                ptr::addr_of!((*r).nr_buf_size).read_volatile(),
                ptr::addr_of!((*r).offset_mask).read_volatile(),
            )
        };
        if num_slots != shape.num_slots || num_slots < 2 {
            return Err(corrupt(format!(
                "the ring header says {num_slots} slots, the register reply {}",
                shape.num_slots
            )));
        }
        let slots_end = (num_slots as usize)
            .checked_mul(std::mem::size_of::<netmap_slot>())
            .and_then(|n| n.checked_add(r as usize + RING_HDR));
        if slots_end.is_none_or(|end| end > map_end) {
            return Err(corrupt("the slot array runs past the mapped region".into()));
        }
        // Every slot holds a buffer of its own, so the ring's buffers cannot
        // take more room than the region has.
        if buf_size == 0 || u64::from(buf_size) * u64::from(num_slots) > map_len as u64 {
            return Err(corrupt(format!(
                "nr_buf_size {buf_size} with {num_slots} slots does not fit the region of {map_len} bytes"
            )));
        }
        let bufs = r.cast::<u8>().wrapping_offset(buf_ofs as isize);
        if buf_ofs.unsigned_abs() > map_len as u64
            || (bufs as usize) < map_base as usize
            || bufs as usize > map_end
        {
            return Err(corrupt(format!(
                "buf_ofs {buf_ofs} points outside the mapped region"
            )));
        }
        let in_map = ((map_end - bufs as usize) / buf_size as usize).min(u32::MAX as usize) as u32;
        let nbufs = in_map.saturating_sub(shape.first_buf);
        // SAFETY: `bufs` lies inside the mapping (checked), so it is not null;
        // the slot array follows the header inside the mapping (checked).
        let (slots, bufs) = unsafe {
            (
                NonNull::new_unchecked(r.cast::<u8>().add(RING_HDR).cast::<netmap_slot>()),
                NonNull::new_unchecked(bufs),
            )
        };
        Ok(RingCore {
            ring,
            slots,
            bufs,
            first_buf: shape.first_buf,
            nbufs,
            offset_mask,
            num_slots,
            buf_size,
            slot_cap: (buf_size as usize).min(SLOT_LEN_MAX) as u32,
            head: 0,
            tail: 0,
            published: 0,
            skipped: 0,
            id,
        })
    }

    /// A fresh handle's view of the ring: these constants, with `head` and
    /// `tail` read from the ring now.
    pub(crate) fn attach(&self) -> Result<RingCore> {
        let head = self.shared(RingField::Head).load(Ordering::Acquire);
        let tail = self.shared(RingField::Tail).load(Ordering::Acquire);
        if head >= self.num_slots || tail >= self.num_slots {
            return Err(Error::RingCorrupt {
                ring: self.id,
                what: format!("head {head} / tail {tail} beyond {} slots", self.num_slots),
            });
        }
        Ok(RingCore {
            head,
            tail,
            published: head,
            skipped: 0,
            ..self.clone()
        })
    }

    #[inline]
    fn shared(&self, field: RingField) -> &AtomicU32 {
        // SAFETY: `ring` points at a live ring header (constructor contract);
        // `ring_field` yields an aligned u32 inside it, shared with the
        // kernel, which is accessed only atomically here.
        unsafe { &*ring_field(self.ring.as_ptr(), field) }
    }

    /// Stores the user's `head` (and `cur`) into the shared ring, handing the
    /// slots before it to the kernel at its next sync.
    #[inline]
    pub(crate) fn publish(&mut self) {
        if self.published != self.head {
            // `cur` first: the kernel reads head, then cur, and expects cur
            // to be at or past head.
            self.shared(RingField::Cur).store(self.head, Ordering::Release);
            self.shared(RingField::Head).store(self.head, Ordering::Release);
            self.published = self.head;
        }
    }

    /// Reloads `tail` after a sync. Written by the kernel.
    #[inline]
    pub(crate) fn reload_tail(&mut self) -> Result<()> {
        let tail = self.shared(RingField::Tail).load(Ordering::Acquire);
        if tail >= self.num_slots {
            return Err(Error::RingCorrupt {
                ring: self.id,
                what: format!("tail {tail} beyond {} slots", self.num_slots),
            });
        }
        self.tail = tail;
        Ok(())
    }

    /// Whether `[head, tail)` is empty.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.head == self.tail
    }

    /// Slots in `[head, tail)`.
    #[inline]
    pub(crate) fn space(&self) -> u32 {
        ffi::nm_space(self.head, self.tail, self.num_slots)
    }

    /// Slots in `[head, tail)` up to the end of the last complete packet:
    /// a trailing chain of `NS_MOREFRAG` slots shorter than
    /// `NETMAP_MAX_FRAGS` is still arriving, unless the ring is full and it
    /// never can (then `recv` skips it).
    #[inline]
    pub(crate) fn complete_space(&self) -> u32 {
        let space = self.space();
        if space == 0 {
            return 0;
        }
        let last = crate::backend::nm_prev(self.tail, self.num_slots);
        // SAFETY: `last` is the final slot of the non-empty [head, tail).
        let (_, _, flags) = unsafe { read_slot(self.slot(last)) };
        if flags & NS_MOREFRAG == 0 {
            return space;
        }
        self.complete_space_cold(space)
    }

    #[cold]
    fn complete_space_cold(&self, space: u32) -> u32 {
        let mut run = 0;
        let mut i = self.tail;
        while run < space && run < NETMAP_MAX_FRAGS {
            i = crate::backend::nm_prev(i, self.num_slots);
            // SAFETY: `i` stays within the `space` user-owned slots before tail.
            let (_, _, flags) = unsafe { read_slot(self.slot(i)) };
            if flags & NS_MOREFRAG == 0 {
                break;
            }
            run += 1;
        }
        if run == NETMAP_MAX_FRAGS || space + 1 == self.num_slots {
            space
        } else {
            space - run
        }
    }

    #[inline]
    pub(crate) fn next(&self, i: u32) -> u32 {
        nm_next(i, self.num_slots)
    }

    #[inline]
    pub(crate) fn slot(&self, i: u32) -> *mut netmap_slot {
        debug_assert!(i < self.num_slots);
        // SAFETY: every index handed here is `< num_slots` (all come from
        // `next`/`head`/`tail`, which stay below it), and the slot array
        // of `num_slots` entries lies inside the mapping.
        unsafe { self.slots.as_ptr().add(i as usize) }
    }

    /// The start of buffer `idx`, or `None` if the index is reserved or
    /// points outside the mapping (a corrupt slot).
    #[inline]
    pub(crate) fn buf(&self, idx: u32) -> Option<*mut u8> {
        if idx.wrapping_sub(self.first_buf) < self.nbufs {
            // SAFETY: `first_buf <= idx < first_buf + nbufs` puts the whole
            // buffer inside the mapping.
            Some(unsafe { self.bufs.as_ptr().add(idx as usize * self.buf_size as usize) })
        } else {
            None
        }
    }

    /// Where slot `s`'s packet starts and how many bytes it may carry from
    /// there: its buffer, past the slot's offset when the ring has offsets,
    /// at most `u16::MAX` bytes (what `len` can say). `None` if the slot is
    /// corrupt (buffer outside the mapping, offset past it).
    ///
    /// # Safety
    /// `s` must be a slot the user owns.
    #[inline]
    pub(crate) unsafe fn data(&self, s: *const netmap_slot, idx: u32) -> Option<(*mut u8, usize)> {
        let buf = self.buf(idx)?;
        if self.offset_mask == 0 {
            return Some((buf, self.slot_cap as usize));
        }
        let bs = self.buf_size as usize;
        // SAFETY: the caller owns the slot.
        let off = (unsafe { ptr::addr_of!((*s).ptr).read() } & self.offset_mask) as usize;
        if off >= bs {
            return None;
        }
        // SAFETY: `off < bs`, so the pointer stays inside the buffer.
        Some((unsafe { buf.add(off) }, (bs - off).min(SLOT_LEN_MAX)))
    }

    /// Bytes a slot can carry from the start of its buffer.
    #[inline]
    pub(crate) fn slot_cap(&self) -> usize {
        self.slot_cap as usize
    }

    /// Counts a corrupt slot that was skipped.
    #[cold]
    fn skip(&mut self) {
        self.skipped = self.skipped.saturating_add(1);
    }

    /// The error for the corrupt slots skipped since the last call, if any.
    #[cold]
    fn take_skipped(&mut self) -> Result<()> {
        match std::mem::take(&mut self.skipped) {
            0 => Ok(()),
            n => Err(Error::RingCorrupt {
                ring: self.id,
                what: format!(
                    "{n} received slot(s) held a buffer index or offset outside the mapped region \
                     and were skipped"
                ),
            }),
        }
    }

    #[inline]
    pub(crate) fn buf_size(&self) -> usize {
        self.buf_size as usize
    }

    #[inline]
    pub(crate) fn num_slots(&self) -> u32 {
        self.num_slots
    }

    #[inline]
    pub(crate) fn head(&self) -> u32 {
        self.head
    }

    #[inline]
    pub(crate) fn set_head(&mut self, head: u32) {
        debug_assert!(head < self.num_slots);
        self.head = head;
    }

    #[inline]
    pub(crate) fn tail(&self) -> u32 {
        self.tail
    }

    #[inline]
    pub(crate) fn id(&self) -> u16 {
        self.id
    }

    #[cold]
    fn corrupt_slot(&self, i: u32, idx: u32) -> Error {
        Error::RingCorrupt {
            ring: self.id,
            what: format!(
                "slot {i} holds buffer index {idx} (or an offset) outside the mapped region; \
                 it was handed back empty"
            ),
        }
    }
}

/// A port's `netmap_if` as read once at open: its ring counts and its
/// table of ring offsets, copied out of shared memory and checked.
///
/// The table has one entry per TX ring (the hardware ones, then the host
/// ones), then one per RX ring. The kernel counts at least one host ring
/// per direction in the table (a placeholder, offset 0, on ports without
/// host rings, such as pipes and VALE ports), so its length follows the
/// `netmap_if`'s counts, not the register reply's.
#[derive(Debug, Clone)]
pub(crate) struct IfTable {
    /// TX entries (hardware and host).
    ntx: usize,
    /// Every entry: `ntx` TX ones, then the RX ones.
    ofs: Box<[isize]>,
}

impl IfTable {
    /// Reads the `netmap_if` at `nifp` and its table, checking them against
    /// the mapping and the register reply `reg`.
    ///
    /// `nifp` may point anywhere: it is checked against `map`.
    pub(crate) fn read(map: &Mapping, nifp: NonNull<netmap_if>, reg: &nmreq_register) -> Result<IfTable> {
        let corrupt = |what: String| Error::RingCorrupt { ring: 0, what };
        let nif = nifp.as_ptr();
        let base = map.base().as_ptr() as usize;
        let end = base + map.len();
        if (nif as usize) < base
            || (nif as usize).checked_add(IF_HDR).is_none_or(|e| e > end)
            || nif as usize % std::mem::align_of::<netmap_if>() != 0
        {
            return Err(corrupt(
                "the netmap_if lies outside the mapped region, or misaligned".into(),
            ));
        }
        // SAFETY: the header lies inside the mapping, aligned (checked); each
        // count is read once, here.
        let counts = unsafe {
            [
                ptr::addr_of!((*nif).ni_tx_rings).read_volatile(),
                ptr::addr_of!((*nif).ni_host_tx_rings).read_volatile(),
                ptr::addr_of!((*nif).ni_rx_rings).read_volatile(),
                ptr::addr_of!((*nif).ni_host_rx_rings).read_volatile(),
            ]
        };
        let replied = [
            reg.nr_tx_rings,
            reg.nr_host_tx_rings,
            reg.nr_rx_rings,
            reg.nr_host_rx_rings,
        ]
        .map(u32::from);
        // Host counts may be the placeholder 1 where the reply says 0.
        let agrees = |i: usize| counts[i] == replied[i] || (i % 2 == 1 && replied[i] == 0 && counts[i] == 1);
        if !(0..4).all(agrees) {
            return Err(corrupt(format!(
                "the netmap_if counts rings (TX, host TX, RX, host RX) {counts:?}, the register \
                 reply {replied:?}"
            )));
        }
        let ntx = counts[0] as usize + counts[1] as usize;
        let n = ntx + counts[2] as usize + counts[3] as usize;
        // SAFETY: the header of `IF_HDR` bytes lies in the mapping (checked).
        let table = unsafe { nif.cast::<u8>().add(IF_HDR) }.cast::<isize>();
        if n * std::mem::size_of::<isize>() > end - table as usize {
            return Err(corrupt(
                "the ring offset table runs past the mapped region".into(),
            ));
        }
        // SAFETY: the `n` entries lie in the mapping (checked) and are
        // 8-aligned (the netmap_if is, and its header is 56 bytes). Each is
        // read once, here.
        let ofs = (0..n).map(|i| unsafe { table.add(i).read_volatile() }).collect();
        Ok(IfTable { ntx, ofs })
    }

    /// The table's TX entries (hardware rings, then host rings).
    pub(crate) fn tx(&self) -> &[isize] {
        &self.ofs[..self.ntx]
    }

    /// The table's RX entries (hardware rings, then host rings).
    pub(crate) fn rx(&self) -> &[isize] {
        &self.ofs[self.ntx..]
    }
}

/// The rings bound to a port, read and checked once when it opens: ring
/// pointers, ids, counts and constants are never read from shared memory
/// again.
#[derive(Debug)]
pub(crate) struct RingTable {
    /// The bound TX rings, in id order.
    pub(crate) tx: Box<[RingCore]>,
    /// The bound RX rings, in id order.
    pub(crate) rx: Box<[RingCore]>,
}

impl RingTable {
    /// The rings `tx` and `rx` (ids, host rings after the hardware ones)
    /// that `table`, the table of the `netmap_if` at `nifp`, designates,
    /// each checked against the mapping and the register reply `reg`; slots
    /// may hold buffers from `first_buf` on.
    ///
    /// # Safety
    /// `map` must outlive the table and every [`RingCore`] made from it.
    pub(crate) unsafe fn read(
        map: &Mapping,
        nifp: NonNull<netmap_if>,
        table: &IfTable,
        reg: &nmreq_register,
        tx: Range<u16>,
        rx: Range<u16>,
        first_buf: u32,
    ) -> Result<RingTable> {
        if usize::from(tx.end) > table.tx().len() || usize::from(rx.end) > table.rx().len() {
            return Err(Error::RingCorrupt {
                ring: 0,
                what: format!(
                    "bound rings TX {tx:?} / RX {rx:?} beyond the port's {} / {}",
                    table.tx().len(),
                    table.rx().len()
                ),
            });
        }
        let ring = |ofs: isize, id: u16, num_slots: u32| -> Result<RingCore> {
            let at = nifp
                .as_ptr()
                .cast::<u8>()
                .wrapping_offset(ofs)
                .cast::<netmap_ring>();
            let ptr = NonNull::new(at).ok_or_else(|| Error::RingCorrupt {
                ring: id,
                what: "a null ring".into(),
            })?;
            let shape = RingShape {
                id,
                num_slots,
                first_buf,
            };
            // SAFETY: the caller's contract on the mapping; `new` checks
            // that the ring lies inside it.
            unsafe { RingCore::new(ptr, map.base().as_ptr(), map.len(), shape) }
        };
        let tx = tx
            .map(|id| ring(table.tx()[id as usize], id, reg.nr_tx_slots))
            .collect::<Result<Box<[_]>>>()?;
        let rx = rx
            .map(|id| ring(table.rx()[id as usize], id, reg.nr_rx_slots))
            .collect::<Result<Box<[_]>>>()?;
        // One region has one buffer size.
        if let Some(first) = tx.iter().chain(rx.iter()).next() {
            if let Some(other) = tx.iter().chain(rx.iter()).find(|r| r.buf_size != first.buf_size) {
                return Err(Error::RingCorrupt {
                    ring: other.id,
                    what: format!(
                        "nr_buf_size {} differs from ring {}'s {}",
                        other.buf_size, first.id, first.buf_size
                    ),
                });
            }
        }
        Ok(RingTable { tx, rx })
    }
}

/// The fixed part of a `netmap_if`, before `ring_ofs[]`.
const IF_HDR: usize = std::mem::size_of::<netmap_if>();

#[derive(Clone, Copy)]
enum RingField {
    Head,
    Cur,
    Tail,
}

/// Raw pointer to `head`, `cur` or `tail` of `r`, as an atomic.
///
/// # Safety
/// `r` must point at a readable ring header.
#[inline]
unsafe fn ring_field(r: *mut netmap_ring, f: RingField) -> *const AtomicU32 {
    // SAFETY: the caller guarantees `r` points at a ring header; the fields
    // are u32s at 4-byte aligned offsets, the layout AtomicU32 requires.
    unsafe {
        match f {
            RingField::Head => ptr::addr_of_mut!((*r).head),
            RingField::Cur => ptr::addr_of_mut!((*r).cur),
            RingField::Tail => ptr::addr_of_mut!((*r).tail),
        }
        .cast::<AtomicU32>()
    }
}

/// Reads a slot's `buf_idx`, `len` and `flags`.
///
/// # Safety
/// `s` must point at a slot the user owns.
#[inline]
pub(crate) unsafe fn read_slot(s: *const netmap_slot) -> (u32, u16, u16) {
    // SAFETY: the caller owns the slot; nobody writes it concurrently.
    unsafe {
        (
            ptr::addr_of!((*s).buf_idx).read(),
            ptr::addr_of!((*s).len).read(),
            ptr::addr_of!((*s).flags).read(),
        )
    }
}

/// Writes a slot's `len` and `flags`.
///
/// # Safety
/// `s` must point at a slot the user owns.
#[inline]
pub(crate) unsafe fn write_slot(s: *mut netmap_slot, len: u16, flags: u16) {
    // SAFETY: the caller owns the slot; nobody reads it concurrently.
    unsafe {
        ptr::addr_of_mut!((*s).len).write(len);
        ptr::addr_of_mut!((*s).flags).write(flags);
    }
}

/// Writes a slot's `buf_idx`.
///
/// # Safety
/// `s` must point at a slot the user owns.
#[inline]
pub(crate) unsafe fn write_slot_buf(s: *mut netmap_slot, idx: u32) {
    // SAFETY: the caller owns the slot.
    unsafe { ptr::addr_of_mut!((*s).buf_idx).write(idx) }
}

/// Moves the buffer of RX slot `rs` into TX slot `ts` and the TX slot's
/// buffer into `rs`, flagging both `NS_BUF_CHANGED`.
///
/// # Safety
/// Both slots must be owned by the user.
#[inline]
unsafe fn swap_slots(rs: *mut netmap_slot, ts: *mut netmap_slot, offsets: bool) {
    // SAFETY: the caller owns both slots; they are distinct (one RX, one TX).
    unsafe {
        let (ridx, rlen, rflags) = read_slot(rs);
        let (tidx, _, _) = read_slot(ts);
        write_slot_buf(ts, ridx);
        write_slot(ts, rlen, NS_BUF_CHANGED | (rflags & NS_MOREFRAG));
        write_slot_buf(rs, tidx);
        write_slot(rs, 0, NS_BUF_CHANGED);
        if offsets {
            // The packets' offsets travel with the buffers.
            ptr::swap(ptr::addr_of_mut!((*rs).ptr), ptr::addr_of_mut!((*ts).ptr));
        }
    }
}

/// Swaps as many packets as fit from the user-owned RX slots of `src` to
/// the free TX slots of `dst`, advancing both heads (unpublished); returns
/// the slots moved. Multi-slot packets move whole or wait.
#[inline]
fn move_slots<const OFFSETS: bool>(src: &mut RingCore, dst: &mut RingCore) -> usize {
    let (mut ri, mut ti) = (src.head(), dst.head());
    let (mut avail, mut room) = (src.space(), dst.space());
    let mut moved = 0usize;
    while avail > 0 && room > 0 {
        let rs = src.slot(ri);
        // SAFETY: slot `ri` is among the `avail` user-owned RX slots.
        let (_, _, flags) = unsafe { read_slot(rs) };
        if flags & NS_MOREFRAG == 0 {
            // SAFETY: `ri` is a user-owned RX slot, `ti` a free TX slot.
            unsafe { swap_slots(rs, dst.slot(ti), OFFSETS) };
            ri = src.next(ri);
            ti = dst.next(ti);
            avail -= 1;
            room -= 1;
            moved += 1;
            continue;
        }
        let n = match chain_len(src, ri, avail) {
            Some(n) if n <= room => n,
            _ => break, // incomplete, or no room: it waits
        };
        for _ in 0..n {
            // SAFETY: the `n` slots from `ri` are user-owned RX slots (counted
            // within `avail`), the `n` from `ti` free TX slots (`n <= room`).
            unsafe { swap_slots(src.slot(ri), dst.slot(ti), OFFSETS) };
            ri = src.next(ri);
            ti = dst.next(ti);
        }
        avail -= n;
        room -= n;
        moved += n as usize;
    }
    src.set_head(ri);
    dst.set_head(ti);
    moved
}

/// The length of the multi-slot packet starting at user-owned slot `i`, or
/// `None` if it does not end within the `avail` slots from there.
#[cold]
fn chain_len(core: &RingCore, mut i: u32, avail: u32) -> Option<u32> {
    let mut n = 1;
    loop {
        // SAFETY: `i` stays among the `avail` user-owned slots.
        let (_, _, f) = unsafe { read_slot(core.slot(i)) };
        if f & NS_MOREFRAG == 0 || n == NETMAP_MAX_FRAGS {
            return Some(n);
        }
        if n == avail {
            return None;
        }
        i = core.next(i);
        n += 1;
    }
}

/// A transmit ring of an open port.
///
/// Packets are staged with [`send`](TxRing::send) (a copy into the next free
/// slot), built in place with [`batch`](TxRing::batch), or forwarded without
/// a copy with [`forward`](TxRing::forward); [`sync`](TxRing::sync) hands
/// them to the kernel and learns which slots it has freed.
///
/// A `TxRing` borrows its [`Netmap`], is not `Send`, and is the only live
/// handle to its ring. Ring handles stay on the thread that holds the port:
///
/// ```compile_fail,E0277
/// # use netmap_rs::prelude::*;
/// # fn main() -> Result<(), Error> {
/// let port = NetmapBuilder::new("emu:home{1").build()?;
/// let tx = port.tx_ring(0)?;
/// std::thread::scope(|s| {
///     s.spawn(move || drop(tx)); // error: `TxRing` cannot be sent between threads
/// });
/// # Ok(())
/// # }
/// ```
///
/// and a port cannot be shared between threads either (it is `Send`, not
/// `Sync`; open one port per ring instead):
///
/// ```compile_fail,E0277
/// fn shared<T: Sync>() {}
/// shared::<netmap_rs::Netmap>(); // error: `Netmap` is not `Sync`
/// ```
pub struct TxRing<'a> {
    core: RingCore,
    port: &'a Netmap,
    index: usize,
    region: RegionKey,
}

impl fmt::Debug for TxRing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxRing")
            .field("index", &self.index)
            .field("ring", &self.core)
            .finish()
    }
}

impl<'a> TxRing<'a> {
    #[inline]
    pub(crate) fn new(core: RingCore, port: &'a Netmap, index: usize) -> Self {
        TxRing {
            core,
            region: port.region_key(),
            port,
            index,
        }
    }

    /// Free slots: how many single-slot packets can be staged before a sync.
    #[inline]
    pub fn space(&self) -> usize {
        self.core.space() as usize
    }

    /// Total slots in the ring.
    #[inline]
    pub fn num_slots(&self) -> usize {
        self.core.num_slots() as usize
    }

    /// Bytes one slot's buffer holds.
    #[inline]
    pub fn buf_size(&self) -> usize {
        self.core.buf_size()
    }

    /// The kernel's id of this ring.
    #[inline]
    pub fn id(&self) -> u16 {
        self.core.id()
    }

    /// The largest packet [`send`](TxRing::send) accepts: it spans at most
    /// `NETMAP_MAX_FRAGS` slots, each carrying at most
    /// `min(buf_size, u16::MAX)` bytes.
    #[inline]
    pub fn max_packet(&self) -> usize {
        self.core.slot_cap() * NETMAP_MAX_FRAGS as usize
    }

    /// Copies `data` into the next free slot (or slots: a packet larger than
    /// one buffer is written as a multi-slot packet, `NS_MOREFRAG` on all but
    /// its last slot) and makes it visible to the next sync.
    ///
    /// Errors: [`Error::RingFull`] if the free slots cannot hold it (call
    /// [`sync`](TxRing::sync) and retry), [`Error::PacketTooLarge`] if it
    /// exceeds [`max_packet`](TxRing::max_packet), [`Error::RingCorrupt`] if
    /// a slot it needed holds a buffer outside the region (that slot is
    /// sent empty, so the ring moves on: retry).
    ///
    /// ```
    /// # use netmap_rs::prelude::*;
    /// # fn main() -> Result<(), Error> {
    /// let port = NetmapBuilder::new("emu:send{1").build()?;
    /// let mut tx = port.tx_ring(0)?;
    /// tx.send(&[0u8; 60])?;
    /// tx.sync()?;
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn send(&mut self, data: &[u8]) -> Result<()> {
        if self.core.is_empty() {
            return Err(self.too_large_or_full(data.len()));
        }
        let i = self.core.head();
        let s = self.core.slot(i);
        // SAFETY: slot `i` = head is in [head, tail), owned by the user.
        let (idx, _, _) = unsafe { read_slot(s) };
        // SAFETY: as above.
        let Some((buf, cap)) = (unsafe { self.core.data(s, idx) }) else {
            return Err(self.skip_corrupt(i, idx));
        };
        if data.len() > cap {
            return self.send_multi(data, (buf, cap));
        }
        // SAFETY: `buf` starts `cap >= data.len()` bytes of the slot's
        // buffer, in the mapping and owned by the user with its slot; `data`
        // is a separate Rust slice, so the ranges do not overlap.
        unsafe {
            ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len());
            write_slot(s, data.len() as u16, 0);
        }
        self.core.set_head(self.core.next(i));
        self.core.publish();
        Ok(())
    }

    /// The error for a packet of `len` bytes that does not fit now.
    #[cold]
    fn too_large_or_full(&self, len: usize) -> Error {
        if len > self.max_packet() {
            Error::PacketTooLarge {
                len,
                max: self.max_packet(),
            }
        } else {
            Error::RingFull { ring: self.core.id() }
        }
    }

    /// Hands the slots from head through corrupt slot `i` (buffer index
    /// `idx`) to the kernel empty, so that the ring moves past it, and
    /// returns the error that says so.
    #[cold]
    fn skip_corrupt(&mut self, i: u32, idx: u32) -> Error {
        let mut j = self.core.head();
        loop {
            // SAFETY: `j` runs from head to `i`, slots the caller found in
            // [head, tail), owned by the user.
            unsafe { write_slot(self.core.slot(j), 0, 0) };
            let done = j == i;
            j = self.core.next(j);
            if done {
                break;
            }
        }
        self.core.set_head(j);
        self.core.publish();
        self.core.corrupt_slot(i, idx)
    }

    /// The multi-slot case of [`send`](TxRing::send); `first` is the head
    /// slot's buffer and capacity, as `send` read them.
    #[cold]
    fn send_multi(&mut self, data: &[u8], first: (*mut u8, usize)) -> Result<()> {
        if data.len() > self.max_packet() {
            return Err(self.too_large_or_full(data.len()));
        }
        // Find the slots the packet needs, reading each slot once and
        // checking each before writing any, so that an error leaves the
        // ring as it was.
        let mut parts = [(ptr::null_mut::<u8>(), 0usize); NETMAP_MAX_FRAGS as usize];
        parts[0] = first;
        let (mut n, mut room) = (1usize, first.1);
        let mut i = self.core.next(self.core.head());
        while room < data.len() {
            if n == self.core.space() as usize || n == parts.len() {
                return Err(self.too_large_or_full(data.len()));
            }
            let s = self.core.slot(i);
            // SAFETY: the first `space` slots from head are user-owned.
            let (idx, _, _) = unsafe { read_slot(s) };
            // SAFETY: as above.
            let Some(part) = (unsafe { self.core.data(s, idx) }) else {
                return Err(self.skip_corrupt(i, idx));
            };
            parts[n] = part;
            room += part.1;
            n += 1;
            i = self.core.next(i);
        }
        let mut i = self.core.head();
        let mut rest = data;
        for (k, &(buf, cap)) in parts[..n].iter().enumerate() {
            let (chunk, tail) = rest.split_at(cap.min(rest.len()));
            let flags = if k + 1 < n { NS_MOREFRAG } else { 0 };
            // SAFETY: slot `i` is the `k`th of the `n` user-owned slots from
            // head found above; `buf` holds `cap >= chunk.len()` bytes of its
            // buffer, inside the mapping; `chunk <= cap <= u16::MAX`.
            unsafe {
                ptr::copy_nonoverlapping(chunk.as_ptr(), buf, chunk.len());
                write_slot(self.core.slot(i), chunk.len() as u16, flags);
            }
            rest = tail;
            i = self.core.next(i);
        }
        self.core.set_head(i);
        self.core.publish();
        Ok(())
    }

    /// Starts building packets in place, in the slot buffers themselves.
    /// Nothing is visible to the kernel until [`TxBatch::commit`]; dropping
    /// the batch without committing discards what it staged.
    ///
    /// ```
    /// # use netmap_rs::prelude::*;
    /// # fn main() -> Result<(), Error> {
    /// let port = NetmapBuilder::new("emu:batch{1").build()?;
    /// let mut tx = port.tx_ring(0)?;
    /// let mut batch = tx.batch();
    /// for n in 0..4u8 {
    ///     let buf = batch.push(64)?;
    ///     buf.fill(n);
    /// }
    /// assert_eq!(batch.commit(), 4);
    /// tx.sync()?;
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn batch(&mut self) -> TxBatch<'_, 'a> {
        let head = self.core.head();
        TxBatch {
            ring: self,
            head,
            count: 0,
        }
    }

    /// Forwards a received packet without copying it: the buffers of
    /// `frame`'s slots and of the next free TX slots trade places, and both
    /// sides are marked `NS_BUF_CHANGED`.
    ///
    /// Both ports must share one memory region ([`Error::MemoryMismatch`]
    /// otherwise: copy with [`send`](TxRing::send) instead). On
    /// [`Error::RingFull`] the frame is dropped like any frame read: check
    /// [`space`](TxRing::space) first to keep it.
    #[inline]
    pub fn forward(&mut self, frame: Frame<'_>) -> Result<()> {
        if frame.region() != self.region {
            return Err(self.mismatch(&frame));
        }
        if frame.nslots() == 1 {
            if self.core.is_empty() {
                return Err(Error::RingFull { ring: self.core.id() });
            }
            let i = self.core.head();
            // SAFETY: the frame's slot is owned by the user while the frame
            // lives (we hold it by value); slot `i` = head is in [head, tail).
            // Both buffers belong to one region (checked above), and every
            // buffer index is range-checked again when it is used.
            unsafe { swap_slots(frame.slot(0), self.core.slot(i), true) };
            self.core.set_head(self.core.next(i));
            self.core.publish();
            return Ok(());
        }
        self.forward_multi(frame)
    }

    /// Forwards every packet waiting in `rx` that fits in this ring,
    /// without copying: the batch form of [`forward`](TxRing::forward),
    /// which publishes both rings once. Multi-slot packets move whole or
    /// wait. Returns how many slots moved.
    ///
    /// ```
    /// # use netmap_rs::prelude::*;
    /// # fn main() -> Result<(), Error> {
    /// // Two pipes of one parent share a memory region.
    /// let (a, b) = (NetmapBuilder::new("emu:fa{1").build()?, NetmapBuilder::new("emu:fa}1").build()?);
    /// let (c, d) = (NetmapBuilder::new("emu:fa{2").build()?, NetmapBuilder::new("emu:fa}2").build()?);
    /// let mut tx = a.tx_ring(0)?;
    /// tx.send(b"through")?;
    /// tx.sync()?;
    /// let (mut rx, mut fwd) = (b.rx_ring(0)?, c.tx_ring(0)?);
    /// rx.sync()?;
    /// assert_eq!(fwd.forward_from(&mut rx)?, 1);
    /// fwd.sync()?;
    /// let mut out = d.rx_ring(0)?;
    /// out.sync()?;
    /// assert_eq!(out.recv().unwrap().payload(), b"through");
    /// # Ok(())
    /// # }
    /// ```
    pub fn forward_from(&mut self, rx: &mut RxRing<'_>) -> Result<usize> {
        if rx.region != self.region {
            return Err(Error::MemoryMismatch {
                a: rx.region.to_string(),
                b: self.region.to_string(),
            });
        }
        let (src, dst) = (&mut rx.core, &mut self.core);
        // Two copies of the loop, so the per-slot work has no branch on
        // whether offsets travel with the buffers.
        let moved = if src.offset_mask | dst.offset_mask != 0 {
            move_slots::<true>(src, dst)
        } else {
            move_slots::<false>(src, dst)
        };
        src.publish();
        dst.publish();
        Ok(moved)
    }

    #[cold]
    fn mismatch(&self, frame: &Frame<'_>) -> Error {
        Error::MemoryMismatch {
            a: frame.region().to_string(),
            b: self.region.to_string(),
        }
    }

    #[cold]
    fn forward_multi(&mut self, frame: Frame<'_>) -> Result<()> {
        let n = frame.nslots();
        if (self.core.space() as usize) < n {
            return Err(Error::RingFull { ring: self.core.id() });
        }
        let mut i = self.core.head();
        for k in 0..n {
            // SAFETY: as in `forward`, for each slot of the packet.
            unsafe { swap_slots(frame.slot(k), self.core.slot(i), true) };
            i = self.core.next(i);
        }
        self.core.set_head(i);
        self.core.publish();
        Ok(())
    }

    /// Hands staged packets to the kernel (`NIOCTXSYNC` on the port) and
    /// learns which slots it has freed.
    #[inline]
    pub fn sync(&mut self) -> Result<()> {
        self.core.publish();
        self.port.sync(SyncDir::Tx)?;
        self.core.reload_tail()
    }
}

impl Drop for TxRing<'_> {
    #[inline]
    fn drop(&mut self) {
        self.port.release_ring(SyncDir::Tx, self.index);
    }
}

/// Packets built in place in a [`TxRing`]'s slot buffers, published together
/// by [`commit`](TxBatch::commit). Dropping an uncommitted batch discards it.
#[must_use = "a TX batch publishes nothing until commit()"]
pub struct TxBatch<'r, 'a> {
    ring: &'r mut TxRing<'a>,
    head: u32,
    count: usize,
}

impl fmt::Debug for TxBatch<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxBatch").field("staged", &self.count).finish()
    }
}

impl TxBatch<'_, '_> {
    /// Claims the next free slot for a packet of `len` bytes and returns its
    /// buffer to fill.
    ///
    /// Errors: [`Error::PacketTooLarge`] if `len` exceeds one slot (its
    /// buffer, and at most `u16::MAX` bytes), [`Error::RingFull`] if no slot
    /// is free, [`Error::RingCorrupt`] if the next slot holds a buffer
    /// outside the region (it is staged empty, so the ring moves on: push
    /// again).
    #[inline]
    pub fn push(&mut self, len: usize) -> Result<&mut [u8]> {
        let core = &self.ring.core;
        if len > core.slot_cap() {
            return Err(Error::PacketTooLarge {
                len,
                max: core.slot_cap(),
            });
        }
        if self.head == core.tail() {
            return Err(Error::RingFull { ring: core.id() });
        }
        let i = self.head;
        let s = core.slot(i);
        // SAFETY: slot `i` lies in [head, tail) and is user-owned.
        let (idx, _, _) = unsafe { read_slot(s) };
        // SAFETY: as above.
        let Some((buf, cap)) = (unsafe { core.data(s, idx) }) else {
            // Staged empty, so that the ring moves past it at commit.
            // SAFETY: as above.
            unsafe { write_slot(s, 0, 0) };
            self.head = core.next(i);
            return Err(core.corrupt_slot(i, idx));
        };
        if len > cap {
            return Err(Error::PacketTooLarge { len, max: cap });
        }
        // SAFETY: the slot is user-owned, the buffer lies in the mapping and
        // holds `cap >= len` bytes from `buf` (`cap <= u16::MAX`); the
        // returned slice borrows `self`, so no other slice of this buffer
        // exists while it lives.
        let out = unsafe {
            write_slot(s, len as u16, 0);
            std::slice::from_raw_parts_mut(buf, len)
        };
        self.head = core.next(i);
        self.count += 1;
        Ok(out)
    }

    /// How many packets are staged.
    #[inline]
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether nothing is staged.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Free slots left.
    #[inline]
    pub fn space(&self) -> usize {
        ffi::nm_space(self.head, self.ring.core.tail(), self.ring.core.num_slots()) as usize
    }

    /// Publishes every staged packet to the next sync; returns how many.
    #[inline]
    pub fn commit(self) -> usize {
        self.ring.core.set_head(self.head);
        self.ring.core.publish();
        self.count
    }
}

/// A receive ring of an open port.
///
/// [`sync`](RxRing::sync) asks the kernel for new packets (and returns the
/// slots already read); [`recv`](RxRing::recv) and [`iter`](RxRing::iter)
/// hand them out as [`Frame`]s borrowed from the ring.
pub struct RxRing<'a> {
    core: RingCore,
    port: &'a Netmap,
    index: usize,
    region: RegionKey,
    /// Room to assemble multi-slot packets, lent by the port (see
    /// [`Scratch`]).
    scratch: Scratch,
}

impl fmt::Debug for RxRing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RxRing")
            .field("index", &self.index)
            .field("ring", &self.core)
            .finish()
    }
}

impl<'a> RxRing<'a> {
    #[inline]
    pub(crate) fn new(core: RingCore, port: &'a Netmap, index: usize) -> Self {
        RxRing {
            core,
            region: port.region_key(),
            port,
            index,
            scratch: port.take_scratch(index),
        }
    }

    /// Slots holding received data not yet handed out.
    #[inline]
    pub fn pending(&self) -> usize {
        self.core.space() as usize
    }

    /// Whether no received packet is waiting (as of the last sync).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.core.space() == 0
    }

    /// Total slots in the ring.
    #[inline]
    pub fn num_slots(&self) -> usize {
        self.core.num_slots() as usize
    }

    /// Bytes one slot's buffer holds.
    #[inline]
    pub fn buf_size(&self) -> usize {
        self.core.buf_size()
    }

    /// The kernel's id of this ring.
    #[inline]
    pub fn id(&self) -> u16 {
        self.core.id()
    }

    /// The next received packet, or `None` when the packets seen at the last
    /// [`sync`](RxRing::sync) are used up. The frame borrows the ring, so the
    /// ring cannot sync while it is alive; its slot returns to the kernel
    /// afterwards.
    #[inline]
    pub fn recv(&mut self) -> Option<Frame<'_>> {
        if self.core.is_empty() {
            // Every frame handed out is gone (`&mut self`): give their slots
            // back now, so that a poll of the port can reuse them.
            self.core.publish();
            return None;
        }
        let region = self.region;
        // SAFETY: `&mut self` ends every earlier frame; the frame returned
        // borrows `self`.
        unsafe { next_frame(&mut self.core, &mut self.scratch, region) }
    }

    /// Every packet received as of the last sync, as frames that may be
    /// kept side by side (for example to forward them all). The slots return
    /// to the kernel at the next `recv`, `iter` or `sync`.
    #[inline]
    pub fn iter(&mut self) -> RxIter<'_> {
        self.core.publish();
        RxIter {
            local: self.core.clone(),
            core: &mut self.core,
            scratch: &mut self.scratch,
            region: self.region,
            _frames: PhantomData,
        }
    }

    /// Returns the slots already read to the kernel (`NIOCRXSYNC` on the
    /// port) and learns of newly received packets; returns how many slots
    /// now hold unread, complete packets (the fragments of a multi-slot
    /// packet whose last slot has not arrived yet are not counted), so a
    /// loop that syncs until this is 0 always ends.
    ///
    /// Errors: [`Error::RingCorrupt`] once after `recv`/`iter` skipped
    /// slots whose buffer lay outside the region (another process wrote
    /// them); the sync itself has happened, and the ring goes on.
    #[inline]
    pub fn sync(&mut self) -> Result<usize> {
        self.core.publish();
        self.port.sync(SyncDir::Rx)?;
        self.core.reload_tail()?;
        self.core.take_skipped()?;
        Ok(self.core.complete_space() as usize)
    }
}

impl Drop for RxRing<'_> {
    #[inline]
    fn drop(&mut self) {
        // Frames are gone; give their slots back at the next sync.
        self.core.publish();
        self.port
            .put_scratch(self.index, std::mem::take(&mut self.scratch));
        self.port.release_ring(SyncDir::Rx, self.index);
    }
}

/// Frames available in an [`RxRing`], from [`RxRing::iter`]; frames it yields
/// may live side by side until the ring is used again.
pub struct RxIter<'r> {
    /// A copy the loop works on (so its fields live in registers); its
    /// `head` goes back to `core` when the iterator drops.
    local: RingCore,
    core: &'r mut RingCore,
    scratch: &'r mut Scratch,
    region: RegionKey,
    _frames: PhantomData<Frame<'r>>,
}

impl fmt::Debug for RxIter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RxIter")
            .field("pending", &self.core.space())
            .finish()
    }
}

impl<'r> Iterator for RxIter<'r> {
    type Item = Frame<'r>;

    #[inline]
    fn next(&mut self) -> Option<Frame<'r>> {
        // SAFETY: frames of one batch cover disjoint slots (head only moves
        // forward, and the shared head is not published until the ring is
        // borrowed mutably again, after every frame of 'r is gone), and
        // multi-slot frames are assembled into disjoint parts of the scratch.
        unsafe { next_frame(&mut self.local, self.scratch, self.region) }
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.local.space() as usize))
    }
}

impl Drop for RxIter<'_> {
    #[inline]
    fn drop(&mut self) {
        self.core.set_head(self.local.head());
        self.core.skipped = self.local.skipped;
    }
}

/// Assembly room for multi-slot packets: the packet starting at slot `s`
/// goes at `s * slot_cap`, so packets of one batch never overlap. It is
/// allocated when a ring first meets such a packet, without being filled
/// (only bytes copied in are ever read), and it belongs to the port, which
/// lends it to the ring's handle: `(num_slots + NETMAP_MAX_FRAGS) * slot_cap`
/// bytes at most per RX ring, with `num_slots * buf_size` bounded by the
/// region's size (checked at open).
#[derive(Default)]
pub(crate) struct Scratch {
    mem: Vec<u8>,
}

/// What [`next_multi`] found at the head of the ring.
enum Multi<'f> {
    /// A whole packet, and the head past it.
    Frame(Frame<'f>, u32),
    /// Its last fragment has not arrived: wait for the next sync.
    Incomplete,
    /// A corrupt packet, skipped: the head past it.
    Skipped(u32),
}

/// Takes the next packet from `core`, advancing the user's `head` past it
/// (without publishing it). Slots whose buffer lies outside the region are
/// skipped and counted.
///
/// # Safety
/// The caller must make the returned frame borrow `core` (and `scratch`)
/// for `'f`, and no frame previously handed out may overlap it: it must be
/// dropped, or cover other slots.
#[inline]
unsafe fn next_frame<'f>(core: &mut RingCore, scratch: &mut Scratch, region: RegionKey) -> Option<Frame<'f>> {
    loop {
        let i = core.head();
        if i == core.tail() {
            return None;
        }
        let s = core.slot(i);
        // SAFETY: slot `i` = head is in [head, tail), owned by the user.
        let (idx, len, flags) = unsafe { read_slot(s) };
        if flags & NS_MOREFRAG == 0 {
            core.set_head(core.next(i));
            // SAFETY: slot `i` is user-owned.
            let Some((buf, cap)) = (unsafe { core.data(s, idx) }) else {
                core.skip();
                continue;
            };
            let len = (len as usize).min(cap);
            // SAFETY: the buffer lies in the mapping; the slot is user-owned
            // and stays so until the shared head is published, which needs
            // `&mut` on the ring, after the frame ('f) is gone.
            let data = unsafe { std::slice::from_raw_parts(buf, len) };
            return Some(Frame::new(data, core, i, 1, region));
        }
        // The cold path works on a copy, so that `core` never escapes this
        // function and its fields can stay in registers in the receive loop.
        // SAFETY: forwarded contract.
        match unsafe { next_multi(core.clone(), scratch, region) } {
            Multi::Frame(frame, head) => {
                core.set_head(head);
                return Some(frame);
            }
            Multi::Incomplete => return None,
            Multi::Skipped(head) => {
                core.set_head(head);
                core.skip();
            }
        }
    }
}

/// The multi-slot case of [`next_frame`]. Each slot is read once.
///
/// # Safety
/// As for [`next_frame`].
#[cold]
#[inline(never)]
unsafe fn next_multi<'f>(core: RingCore, scratch: &mut Scratch, region: RegionKey) -> Multi<'f> {
    let first = core.head();
    let space = core.space();
    // Find the fragments: (start, length) of each, or `None` for a corrupt
    // one. A chain not yet complete within [head, tail) waits for the next
    // sync, unless the ring is full and it can never complete.
    let mut parts = [None::<(*mut u8, usize)>; NETMAP_MAX_FRAGS as usize];
    let mut n = 0usize;
    let mut i = first;
    loop {
        if n == space as usize {
            if space + 1 < core.num_slots() {
                return Multi::Incomplete;
            }
            return Multi::Skipped(i);
        }
        let s = core.slot(i);
        // SAFETY: slot `i` is within the `space` user-owned slots from head.
        let (idx, len, flags) = unsafe { read_slot(s) };
        // SAFETY: as above.
        parts[n] = unsafe { core.data(s, idx) }.map(|(buf, cap)| (buf, (len as usize).min(cap)));
        n += 1;
        i = core.next(i);
        if flags & NS_MOREFRAG == 0 || n == parts.len() {
            break;
        }
    }
    let parts = &parts[..n];
    if parts.iter().any(Option::is_none) {
        return Multi::Skipped(i);
    }
    let cap = core.slot_cap();
    let need = (core.num_slots() as usize + parts.len()) * cap;
    if scratch.mem.capacity() < need {
        scratch.mem = Vec::with_capacity(need);
    }
    let start = first as usize * cap;
    // SAFETY: `start <= num_slots * cap <= need`, inside the allocation.
    let base = unsafe { scratch.mem.as_mut_ptr().add(start) };
    let mut total = 0usize;
    for &(src, len) in parts.iter().flatten() {
        // SAFETY: `src` holds `len <= cap` bytes of a user-owned slot's
        // buffer, inside the mapping. The destination `[start, start + n*cap)`
        // lies in the scratch's allocation (sized for `num_slots + n` slots
        // of `cap` bytes) and belongs to this packet alone: packets of one
        // batch start at distinct slots and span no further than the next
        // packet's first slot.
        unsafe { ptr::copy_nonoverlapping(src, base.add(total), len) };
        total += len;
    }
    // SAFETY: the `total` bytes from `base` were just written; the frame
    // borrows the scratch (through the ring) for 'f, and no later write
    // touches this range while the frame lives (see above).
    let data = unsafe { std::slice::from_raw_parts(base, total) };
    Multi::Frame(Frame::new(data, &core, first, n as u16, region), i)
}

#[cfg(test)]
mod tests;
