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
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::ffi::{self, netmap_if, netmap_ring, netmap_slot, nm_next, NETMAP_MAX_FRAGS, NS_MOREFRAG};

/// The part of a ring that both directions share: cached constants of the
/// ring, the user's copies of `head` and `tail`, and raw access to slots and
/// buffers.
#[derive(Clone)]
pub(crate) struct RingCore {
    ring: NonNull<netmap_ring>,
    slots: NonNull<netmap_slot>,
    /// Buffer [`RESERVED_BUFS`], the first one a slot may name: buffer
    /// `i` starts at `bufs + (i - RESERVED_BUFS) * buf_size`.
    bufs: NonNull<u8>,
    /// Valid buffer indices are `RESERVED_BUFS..RESERVED_BUFS + nbufs`, all
    /// inside the mapping.
    nbufs: u32,
    /// `nbufs` if the ring has no offsets, else 0: the bound
    /// [`fast_buf`](RingCore::fast_buf) checks, so that it sends every slot
    /// of a ring with offsets to the general path, [`data`](RingCore::data).
    fast_nbufs: u32,
    /// Bits of a slot's `ptr` that hold the packet's offset in its buffer
    /// (0 unless the port was opened with offsets).
    offset_mask: u64,
    num_slots: u32,
    buf_size: u32,
    /// The user's next slot; published to the kernel's `head`/`cur`.
    head: u32,
    /// The kernel's `tail` as of the last sync.
    tail: u32,
    /// What the shared `head` holds now.
    published: u32,
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
/// the slots of placeholder rings) and 1. A slot naming one is corrupt.
/// Every backend lays its buffers out this way.
pub(crate) const RESERVED_BUFS: u32 = 2;

/// What the register reply says a ring must look like.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingShape {
    /// The ring's id (its position among the rings of its direction).
    pub id: u16,
    /// `nr_tx_slots` or `nr_rx_slots` of the register reply.
    pub num_slots: u32,
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
        if !(r as usize).is_multiple_of(RING_ALIGN) {
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
        // Buffer 0 is `ring + buf_ofs`; the first a slot may name lies
        // `RESERVED_BUFS` buffers further on.
        let reserved = RESERVED_BUFS as isize * buf_size as isize;
        let bufs = r
            .cast::<u8>()
            .wrapping_offset(buf_ofs as isize)
            .wrapping_offset(reserved);
        if buf_ofs.unsigned_abs() > map_len as u64
            || (bufs as usize) < map_base as usize
            || bufs as usize > map_end
        {
            return Err(corrupt(format!(
                "buf_ofs {buf_ofs} points outside the mapped region"
            )));
        }
        let nbufs = ((map_end - bufs as usize) / buf_size as usize).min(u32::MAX as usize) as u32;
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
            nbufs,
            fast_nbufs: if offset_mask == 0 { nbufs } else { 0 },
            offset_mask,
            num_slots,
            buf_size,
            head: 0,
            tail: 0,
            published: 0,
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

    /// Sets or clears `flag` (an `NR_*` ring flag) in the ring's `flags`,
    /// which the kernel reads at each sync.
    pub(crate) fn set_ring_flag(&self, flag: u32, on: bool) {
        let flags = self.shared(RingField::Flags);
        if on {
            flags.fetch_or(flag, Ordering::Relaxed);
        } else {
            flags.fetch_and(!flag, Ordering::Relaxed);
        }
    }

    /// Whether `flag` is set in the ring's `flags`.
    pub(crate) fn ring_flag(&self, flag: u32) -> bool {
        self.shared(RingField::Flags).load(Ordering::Relaxed) & flag != 0
    }

    /// The ring's `ts`, as a time: `None` while it is zero (never stamped)
    /// or when it holds no valid time of day (negative, or microseconds
    /// past a second: written by no kernel).
    pub(crate) fn timestamp(&self) -> Option<SystemTime> {
        // SAFETY: `ring` points at a live ring header (constructor
        // contract), 8-aligned (checked at open); its `ts` is a `timeval` of
        // two i64s at an 8-aligned offset, so each word has the layout and
        // alignment of an `AtomicI64`. The kernel (or a peer) writes it, so
        // it is only read atomically.
        let (sec, usec) = unsafe {
            let ts = ptr::addr_of_mut!((*self.ring.as_ptr()).ts);
            (
                AtomicI64::from_ptr(ptr::addr_of_mut!((*ts).tv_sec)).load(Ordering::Relaxed),
                AtomicI64::from_ptr(ptr::addr_of_mut!((*ts).tv_usec)).load(Ordering::Relaxed),
            )
        };
        if (sec, usec) == (0, 0) || sec < 0 || !(0..1_000_000).contains(&usec) {
            return None;
        }
        SystemTime::UNIX_EPOCH.checked_add(Duration::new(sec as u64, usec as u32 * 1000))
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
        self.buf_below(idx, self.nbufs)
    }

    /// The fast path of [`data`](RingCore::data): where the packet of a slot
    /// holding buffer `idx` starts, if the ring has no offsets (the packet
    /// then starts at its buffer, and may fill [`slot_cap`](RingCore::slot_cap)
    /// bytes) and `idx` names a buffer inside the mapping. `None` means "ask
    /// `data`", which tells a corrupt slot from an offset. One unsigned
    /// compare: the reserved buffers wrap to the top of the range.
    #[inline]
    pub(crate) fn fast_buf(&self, idx: u32) -> Option<*mut u8> {
        self.buf_below(idx, self.fast_nbufs)
    }

    /// The receive fast path's test of slot `s`: its buffer and where its packet lies, if
    /// it is a one-slot packet (no `NS_MOREFRAG`) no longer than its buffer,
    /// in a ring without offsets, in a buffer inside the mapping. `None`
    /// sends the slot to the general path, which reads it again.
    ///
    /// # Safety
    /// `s` must be a slot of this ring that the user owns.
    #[inline]
    pub(crate) unsafe fn fast_packet(&self, s: *const netmap_slot) -> Option<(u32, *mut u8, usize)> {
        // SAFETY: the caller owns the slot.
        let idx = unsafe { ptr::addr_of!((*s).buf_idx).read() };
        // One compare for the flag and the length: with `NS_MOREFRAG` kept
        // above the length, `len_flag <= slot_cap` holds exactly when the
        // flag is clear and `len <= slot_cap`.
        // SAFETY: as above.
        let len_flag = unsafe { read_len_flags(s) } & (u32::from(u16::MAX) | u32::from(NS_MOREFRAG) << 16);
        if len_flag > self.slot_cap() as u32 {
            return None;
        }
        // The buffer holds `slot_cap` bytes from its start (no offsets on
        // this path) and `len_flag`, the flag being clear, is the length.
        Some((idx, self.fast_buf(idx)?, len_flag as usize))
    }

    /// One past the last slot.
    #[inline]
    pub(crate) fn slots_end(&self) -> *mut netmap_slot {
        self.slot(0).wrapping_add(self.num_slots as usize)
    }

    /// The index of slot `s` of this ring.
    #[inline]
    pub(crate) fn slot_index(&self, s: *const netmap_slot) -> u32 {
        ((s.addr() - self.slots.as_ptr().addr()) / std::mem::size_of::<netmap_slot>()) as u32
    }

    /// Buffer `idx`, if `idx - RESERVED_BUFS < bound`, with `bound <= nbufs`.
    #[inline]
    fn buf_below(&self, idx: u32, bound: u32) -> Option<*mut u8> {
        debug_assert!(bound <= self.nbufs);
        // In `usize`, so that the index needs no widening after the compare.
        let k = (idx as usize).wrapping_sub(RESERVED_BUFS as usize);
        if k < bound as usize {
            // SAFETY: `k < bound <= nbufs` puts the whole buffer inside the
            // mapping.
            Some(unsafe { self.bufs.as_ptr().add(k * self.buf_size as usize) })
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
            return Some((buf, self.slot_cap()));
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

    /// Whether packets start at an offset in their buffers (the port was
    /// opened with offsets).
    #[inline]
    pub(crate) fn has_offsets(&self) -> bool {
        self.offset_mask != 0
    }

    /// Bytes a slot can carry from the start of its buffer.
    #[inline]
    pub(crate) fn slot_cap(&self) -> usize {
        (self.buf_size as usize).min(SLOT_LEN_MAX)
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

/// The fixed part of a `netmap_if`, before `ring_ofs[]`.
const IF_HDR: usize = std::mem::size_of::<netmap_if>();

#[derive(Clone, Copy)]
enum RingField {
    Head,
    Cur,
    Tail,
    Flags,
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
            RingField::Flags => ptr::addr_of_mut!((*r).flags),
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

/// Empties a corrupt slot that named a buffer the user must not hand on: it
/// names reserved buffer 0 instead, so that nothing reaches the buffer it
/// named through it, with no length, flagged changed.
///
/// # Safety
/// `s` must point at a slot the user owns.
#[inline]
pub(crate) unsafe fn void_slot(s: *mut netmap_slot) {
    // SAFETY: forwarded contract.
    unsafe {
        write_slot_buf(s, 0);
        write_slot(s, 0, ffi::NS_BUF_CHANGED);
    }
}

/// Reads a slot's `len` and `flags` in one load, as `len | flags << 16`.
///
/// # Safety
/// `s` must point at a slot the user owns.
#[inline]
pub(crate) unsafe fn read_len_flags(s: *const netmap_slot) -> u32 {
    // SAFETY: the caller owns the slot; `len` and `flags` are adjacent u16s
    // at offset 4 of a slot aligned for its u64 field, so they form one
    // aligned u32.
    let v = unsafe { ptr::addr_of!((*s).len).cast::<u32>().read() };
    if cfg!(target_endian = "big") {
        v.rotate_left(16)
    } else {
        v
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

mod rx;
mod table;
mod tx;

pub(crate) use rx::Scratch;
pub use rx::{RxIter, RxRing};
pub(crate) use table::{IfTable, RingTable};
pub use tx::{TxBatch, TxRing};

#[cfg(test)]
mod tests;
