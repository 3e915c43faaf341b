//! The four single-producer, single-consumer rings an AF_XDP socket shares
//! with the kernel: fill and TX, which this process produces into, and RX
//! and completion, which it consumes from.
//!
//! The kernel publishes its index with a release store and reads ours with
//! an acquire load (`smp_load_acquire`/`smp_store_release` in
//! `xsk_queue.h`); we do the same from this side. The indices are free
//! running `u32`s; entry `i` lives at `i & mask`.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use super::sys::{XdpDesc, XdpRingOffset, XDP_RING_NEED_WAKEUP};
use crate::backend::sys::OwnedMap;

/// One ring's mapping, its two indices and its descriptors.
///
/// Invariant: `map` holds the producer, consumer and flags words at the
/// offsets the kernel gave (each 4-aligned and inside the mapping, checked
/// in [`XskRing::map`]) and `size` descriptors of `E` at `desc`.
pub(super) struct XskRing<E> {
    map: OwnedMap,
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    desc: NonNull<E>,
    mask: u32,
    /// Our own index (the producer's for fill and TX, the consumer's for RX
    /// and completion), as last published.
    ours: Cell<u32>,
}

impl<E> fmt::Debug for XskRing<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XskRing")
            .field("base", &self.map.base())
            .field("size", &(self.mask + 1))
            .field("ours", &self.ours.get())
            .finish()
    }
}

// SAFETY: the ring is a mapping this value owns and unmaps; its words are
// touched only atomically, its descriptors only by the side that owns them
// (the SPSC protocol). The `Cell` makes it `!Sync`: one thread drives it.
unsafe impl<E> Send for XskRing<E> {}

impl<E: Copy> XskRing<E> {
    /// Maps the ring of `size` entries (a power of two) at page offset
    /// `pgoff` of socket `fd`, laid out as `off` says.
    pub(super) fn map(fd: BorrowedFd<'_>, off: &XdpRingOffset, size: u32, pgoff: i64) -> io::Result<Self> {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "AF_XDP ring offsets out of range");
        if !size.is_power_of_two() {
            return Err(bad());
        }
        let entry = size_of::<E>() as u64;
        let len = off.desc.checked_add(u64::from(size) * entry).ok_or_else(bad)?;
        let word_ok = |o: u64| o.is_multiple_of(4) && o + 4 <= len;
        if !word_ok(off.producer)
            || !word_ok(off.consumer)
            || !word_ok(off.flags)
            || !off.desc.is_multiple_of(align_of::<E>() as u64)
        {
            return Err(bad());
        }
        let len = usize::try_from(len).map_err(|_| bad())?;
        // A fresh socket's rings start at 0 on both sides.
        let map = OwnedMap::new_at(len, libc::MAP_SHARED | libc::MAP_POPULATE, Some(fd), pgoff)?;
        let at = |o: u64| {
            // SAFETY: `o < len` (checked above), inside the mapping.
            unsafe { map.base().add(o as usize) }
        };
        Ok(XskRing {
            producer: at(off.producer).cast(),
            consumer: at(off.consumer).cast(),
            flags: at(off.flags).cast(),
            desc: at(off.desc).cast(),
            mask: size - 1,
            ours: Cell::new(0),
            map,
        })
    }

    fn word(&self, w: NonNull<AtomicU32>) -> &AtomicU32 {
        // SAFETY: the word is 4-aligned inside the mapping, which lives as
        // long as `self` (type invariant); the kernel also accesses it only
        // atomically.
        unsafe { w.as_ref() }
    }

    pub(super) fn size(&self) -> u32 {
        self.mask + 1
    }

    /// Whether the kernel asks for a system call (`XDP_RING_NEED_WAKEUP`).
    pub(super) fn needs_wakeup(&self) -> bool {
        self.word(self.flags).load(Ordering::Relaxed) & XDP_RING_NEED_WAKEUP != 0
    }

    fn slot(&self, i: u32) -> *mut E {
        // SAFETY: `i & mask < size`, so the entry lies inside the mapping
        // (type invariant).
        unsafe { self.desc.as_ptr().add((i & self.mask) as usize) }
    }

    // --- producer side (fill, TX) ---

    /// Entries the kernel has left us room for.
    pub(super) fn free(&self) -> u32 {
        let cons = self.word(self.consumer).load(Ordering::Acquire);
        self.size()
            .wrapping_sub(self.ours.get().wrapping_sub(cons))
            .min(self.size())
    }

    /// Writes entry `n` past our index (`n < free()`, the caller's
    /// check), not yet published.
    pub(super) fn put(&self, n: u32, e: E) {
        // SAFETY: the entry is in the part of the ring between our index
        // and the kernel's consumer plus size, which the kernel does not read
        // until we publish; the pointer is in bounds (see `slot`).
        unsafe { self.slot(self.ours.get().wrapping_add(n)).write_volatile(e) }
    }

    /// Publishes `n` entries written with `put`.
    pub(super) fn submit(&self, n: u32) {
        let p = self.ours.get().wrapping_add(n);
        self.ours.set(p);
        self.word(self.producer).store(p, Ordering::Release);
    }

    /// Entries published and not yet taken by the kernel.
    pub(super) fn outstanding(&self) -> u32 {
        let cons = self.word(self.consumer).load(Ordering::Acquire);
        self.ours.get().wrapping_sub(cons).min(self.size())
    }

    // --- consumer side (RX, completion) ---

    /// Entries the kernel has published past our index.
    pub(super) fn ready(&self) -> u32 {
        let prod = self.word(self.producer).load(Ordering::Acquire);
        prod.wrapping_sub(self.ours.get()).min(self.size())
    }

    /// Entry `n` past our index (`n < ready()`, the caller's check).
    pub(super) fn get(&self, n: u32) -> E {
        // SAFETY: the kernel published the entry (its producer index, loaded
        // with Acquire in `ready`, is past it) and does not rewrite it until
        // we release it; in bounds (see `slot`).
        unsafe { self.slot(self.ours.get().wrapping_add(n)).read_volatile() }
    }

    /// Gives `n` entries read with `get` back to the kernel.
    pub(super) fn release(&self, n: u32) {
        let c = self.ours.get().wrapping_add(n);
        self.ours.set(c);
        self.word(self.consumer).store(c, Ordering::Release);
    }
}

impl<E: Copy> XskRing<E> {
    /// The entries on the ring now: for a ring we produce into, those
    /// published and not yet taken by the kernel; for one we consume from,
    /// those the kernel published and we have not read.
    pub(super) fn entries(&self, produced_by_us: bool) -> Vec<E> {
        let (from, n) = if produced_by_us {
            let cons = self.word(self.consumer).load(Ordering::Acquire);
            (cons, self.outstanding())
        } else {
            (self.ours.get(), self.ready())
        };
        (0..n)
            .map(|i| {
                // SAFETY: in bounds (see `slot`); the entry was written by
                // its producer before the index that covers it was published
                // (loaded with Acquire above).
                unsafe { self.slot(from.wrapping_add(i)).read_volatile() }
            })
            .collect()
    }
}

/// A fill or completion entry: a UMEM address.
pub(super) type Addr = u64;
/// An RX or TX entry.
pub(super) type Desc = XdpDesc;
