//! The kernel side of a netmap ring in shared memory, for the backends that
//! play the kernel's part in user space (the embedded kernel and AF_PACKET).
//!
//! User space writes `head`, `cur` and the slots it owns; the kernel side
//! reads those and writes `tail` (and `ts`) and the slots it owns. Both sides
//! touch the shared words only atomically, and the kernel side publishes with
//! a `Release` store of `tail`, which the ring code loads with `Acquire`.

use std::marker::PhantomData;
use std::mem::{offset_of, size_of};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI64, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::time::SystemTime;

use crate::ffi::{netmap_ring, netmap_slot, timeval};

/// Size of a ring header; the slots follow it.
pub(crate) const RING_HDR: usize = size_of::<netmap_ring>();
/// Size of one slot.
pub(crate) const SLOT_SIZE: usize = size_of::<netmap_slot>();
pub(crate) const RING_HEAD: usize = offset_of!(netmap_ring, head);
pub(crate) const RING_CUR: usize = offset_of!(netmap_ring, cur);
pub(crate) const RING_TAIL: usize = offset_of!(netmap_ring, tail);
const RING_TS: usize = offset_of!(netmap_ring, ts);
const SLOT_BUF_IDX: usize = offset_of!(netmap_slot, buf_idx);
const SLOT_LEN: usize = offset_of!(netmap_slot, len);
const SLOT_FLAGS: usize = offset_of!(netmap_slot, flags);
const SLOT_PTR: usize = offset_of!(netmap_slot, ptr);

const _: () = assert!(RING_HDR == 256 && SLOT_SIZE == 16);
const _: () = assert!(RING_TS.is_multiple_of(8) && SLOT_PTR.is_multiple_of(8) && SLOT_SIZE.is_multiple_of(8));
// `stamp` writes `ts` as two 8-byte words.
const _: () = assert!(size_of::<timeval>() == 16 && offset_of!(timeval, tv_usec) == 8);

/// The values of one slot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    pub buf_idx: u32,
    pub len: u16,
    pub flags: u16,
    pub ptr: u64,
}

/// A ring in memory mapped for `'a`, seen from the kernel side.
///
/// Invariant (from [`SharedRing::new`]): `ring` points at a `netmap_ring`
/// header, at least 8-aligned, followed by its slots, all mapped for `'a`;
/// every slot index passed in is below the ring's `num_slots`.
#[derive(Clone, Copy)]
pub(crate) struct SharedRing<'a> {
    ring: NonNull<u8>,
    _mem: PhantomData<&'a ()>,
}

impl<'a> SharedRing<'a> {
    /// # Safety
    /// `ring` must point at a ring header, at least 8-aligned, followed by
    /// its slots, in memory that stays mapped for `'a`; callers of the slot
    /// methods must pass indices below the ring's `num_slots`.
    pub(crate) unsafe fn new(ring: NonNull<u8>) -> Self {
        SharedRing {
            ring,
            _mem: PhantomData,
        }
    }

    fn word(self, off: usize) -> &'a AtomicU32 {
        // SAFETY: `off` is the offset of a `u32` field of the header, so the
        // address is inside the ring and 4-aligned (type invariant); the
        // memory stays mapped for 'a. User space accesses these words
        // atomically (or ordered by them), so an atomic view is the right one.
        unsafe { AtomicU32::from_ptr(self.ring.as_ptr().add(off).cast()) }
    }

    /// `head` and `cur` as the user last stored them.
    pub(crate) fn head_cur(self) -> (u32, u32) {
        // head first: a user stores cur before head, so a head seen here
        // comes with a cur at least as new.
        let head = self.word(RING_HEAD).load(Ordering::Acquire);
        let cur = self.word(RING_CUR).load(Ordering::Acquire);
        (head, cur)
    }

    /// `tail` as the ring holds it.
    pub(crate) fn tail(self) -> u32 {
        self.word(RING_TAIL).load(Ordering::Relaxed)
    }

    /// Publishes `tail`; everything written to the ring before is visible
    /// to a user who loads `tail` with `Acquire`.
    pub(crate) fn set_tail(self, tail: u32) {
        self.word(RING_TAIL).store(tail, Ordering::Release);
    }

    /// Resets the user's view to the kernel's, as netmap does when a user
    /// leaves its ring in a state the kernel rejects.
    pub(crate) fn reset(self, hwcur: u32, hwtail: u32) {
        self.word(RING_CUR).store(hwcur, Ordering::Release);
        self.word(RING_HEAD).store(hwcur, Ordering::Release);
        self.set_tail(hwtail);
    }

    /// Stamps `ts` with the time of day, as the kernel does on RX syncs.
    pub(crate) fn stamp(self) {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let sec = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let usec = i64::from(now.subsec_micros());
        // SAFETY: `ts` is a `timeval` of two 8-byte words (asserted above),
        // 8-aligned inside the header (type invariant); the user reads it
        // after loading `tail`, which is stored after this.
        unsafe {
            let ts = self.ring.as_ptr().add(RING_TS);
            AtomicI64::from_ptr(ts.cast()).store(sec, Ordering::Relaxed);
            AtomicI64::from_ptr(ts.add(8).cast()).store(usec, Ordering::Relaxed);
        }
    }

    fn slot_at(self, k: u32, field: usize) -> *mut u8 {
        // SAFETY: callers pass `k < num_slots` (type invariant), so the slot
        // lies inside the ring.
        unsafe { self.ring.as_ptr().add(RING_HDR + k as usize * SLOT_SIZE + field) }
    }

    /// Reads slot `k`.
    pub(crate) fn load(self, k: u32) -> Slot {
        // SAFETY: the fields of slot `k` inside the ring (see `slot_at`),
        // naturally aligned (16-byte slots after an 8-aligned, 256-byte
        // header), accessed atomically; the kernel side reads only slots it
        // owns during a sync, so a correct user does not write them.
        unsafe {
            Slot {
                buf_idx: AtomicU32::from_ptr(self.slot_at(k, SLOT_BUF_IDX).cast()).load(Ordering::Relaxed),
                len: AtomicU16::from_ptr(self.slot_at(k, SLOT_LEN).cast()).load(Ordering::Relaxed),
                flags: AtomicU16::from_ptr(self.slot_at(k, SLOT_FLAGS).cast()).load(Ordering::Relaxed),
                ptr: AtomicU64::from_ptr(self.slot_at(k, SLOT_PTR).cast()).load(Ordering::Relaxed),
            }
        }
    }

    /// Writes slot `k`.
    pub(crate) fn store(self, k: u32, s: Slot) {
        // SAFETY: as in `load`.
        unsafe {
            AtomicU32::from_ptr(self.slot_at(k, SLOT_BUF_IDX).cast()).store(s.buf_idx, Ordering::Relaxed);
            AtomicU16::from_ptr(self.slot_at(k, SLOT_LEN).cast()).store(s.len, Ordering::Relaxed);
            AtomicU16::from_ptr(self.slot_at(k, SLOT_FLAGS).cast()).store(s.flags, Ordering::Relaxed);
            AtomicU64::from_ptr(self.slot_at(k, SLOT_PTR).cast()).store(s.ptr, Ordering::Relaxed);
        }
    }

    /// Writes slot `k`'s flags.
    pub(crate) fn set_flags(self, k: u32, flags: u16) {
        // SAFETY: as in `load`.
        unsafe { AtomicU16::from_ptr(self.slot_at(k, SLOT_FLAGS).cast()) }.store(flags, Ordering::Relaxed);
    }
}
