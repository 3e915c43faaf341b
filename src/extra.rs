//! Extra buffers (`nr_extra_bufs`): buffers a port owns beside its rings'
//! slots, which [`RxRing::keep`](crate::RxRing::keep) swaps into RX slots so
//! that a packet outlives the sync that would give its slot back, and which
//! [`TxRing::send_kept`](crate::TxRing::send_kept) swaps back out.
//!
//! The kernel hands them over as a list through their first four bytes,
//! from `netmap_if.ni_bufs_head`, and frees the list found there when the
//! port closes. The pool reads that list once at open (checked: in the
//! region, no repeats, no longer than the kernel said) and writes the free
//! ones back before the port closes. A kept packet's buffer is in no slot
//! and in no other kept packet: the pool knows every buffer it holds, and
//! a slot that names one of them is corrupt.

use std::collections::HashSet;
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::backend::{lock, Mapping};
use crate::error::{Error, Result};
use crate::ffi::netmap_if;
use crate::port::RegionKey;
use crate::ring::{RingCore, RESERVED_BUFS};

/// A port's extra buffers.
pub(crate) struct ExtraPool {
    /// A ring of the port, for where its region's buffers lie
    /// ([`RingCore::buf`]); nothing else of it is used.
    area: RingCore,
    region: RegionKey,
    /// How many the kernel granted.
    granted: usize,
    state: Mutex<PoolState>,
    /// Keeps the buffers mapped while kept packets live, even past the
    /// port's close.
    _map: Arc<Mapping>,
}

struct PoolState {
    /// Free extra buffers.
    free: Vec<u32>,
    /// Every buffer the pool owns: the free ones and the kept packets'.
    owned: HashSet<u32>,
}

// SAFETY: `area` names buffers inside `_map`, which the pool keeps alive;
// the pool only computes buffer addresses from it, and its state is behind
// a mutex.
unsafe impl Send for ExtraPool {}
// SAFETY: as above: shared access reads only immutable fields and the
// mutex-protected state.
unsafe impl Sync for ExtraPool {}

impl fmt::Debug for ExtraPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExtraPool")
            .field("granted", &self.granted)
            .finish_non_exhaustive()
    }
}

impl ExtraPool {
    /// Reads the list of `granted` buffers the kernel left at `nifp`'s
    /// `ni_bufs_head`, in the region whose buffers `area` (a ring of the
    /// port) finds.
    ///
    /// # Safety
    /// `nifp` must point at the port's live `netmap_if` inside `map`, and
    /// `area` must be a ring of that mapping.
    pub(crate) unsafe fn read(
        map: Arc<Mapping>,
        nifp: NonNull<netmap_if>,
        area: RingCore,
        region: RegionKey,
        granted: u32,
    ) -> Result<ExtraPool> {
        let buf_size = area.buf_size();
        let first = area.buf(RESERVED_BUFS);
        if first.is_some_and(|b| !b.addr().is_multiple_of(4)) || !buf_size.is_multiple_of(4) {
            return Err(corrupt(format!(
                "buffers of {buf_size} bytes from a misaligned start cannot hold a list"
            )));
        }
        let pool = ExtraPool {
            area,
            region,
            granted: granted as usize,
            state: Mutex::new(PoolState {
                free: Vec::new(),
                owned: HashSet::new(),
            }),
            _map: map,
        };
        // SAFETY: `nifp` is the live `netmap_if` (caller); its field is an
        // aligned u32 that another process may write, so it is read
        // atomically.
        let mut idx = unsafe { head_of(nifp) }.load(Ordering::Acquire);
        let mut st = lock(&pool.state);
        while idx != 0 && st.free.len() < granted as usize {
            let Some(word) = pool.word(idx) else {
                return Err(corrupt(format!("extra buffer {idx} lies outside the region")));
            };
            if !st.owned.insert(idx) {
                return Err(corrupt(format!("extra buffer {idx} is listed twice")));
            }
            st.free.push(idx);
            idx = word.load(Ordering::Relaxed);
        }
        if st.free.len() != granted as usize {
            return Err(corrupt(format!(
                "the list holds {} extra buffers, the kernel granted {granted}",
                st.free.len()
            )));
        }
        drop(st);
        Ok(pool)
    }

    /// Buffer `idx`'s first word, if `idx` names a buffer of the region.
    fn word(&self, idx: u32) -> Option<&AtomicU32> {
        let buf = self.area.buf(idx)?;
        // SAFETY: the buffer lies inside the mapping (`RingCore::buf`),
        // which the pool keeps alive; buffers start at multiples of a size
        // that is a multiple of 4 from a 4-aligned start (checked in
        // `read`); other processes may write it, hence the atomic.
        Some(unsafe { AtomicU32::from_ptr(buf.cast()) })
    }

    /// How many extra buffers the port has.
    pub(crate) fn granted(&self) -> usize {
        self.granted
    }

    /// How many are free.
    pub(crate) fn free(&self) -> usize {
        lock(&self.state).free.len()
    }

    /// The error for a pool with no free buffer.
    pub(crate) fn exhausted(&self, port: &str) -> Error {
        Error::NoExtraBuffer {
            port: port.to_string(),
            granted: self.granted,
        }
    }

    /// Trades `incoming` (a buffer an RX slot held) for a free buffer,
    /// which leaves the pool for the slot. Every buffer the pool owns lies
    /// in its region.
    pub(crate) fn trade_in(&self, incoming: u32) -> Trade {
        let mut st = lock(&self.state);
        if self.area.buf(incoming).is_none() || st.owned.contains(&incoming) {
            return Trade::Corrupt;
        }
        let Some(out) = st.free.pop() else {
            return Trade::Exhausted;
        };
        st.owned.remove(&out);
        st.owned.insert(incoming);
        Trade::Taken(out)
    }

    /// Whether buffer `idx` is the pool's (free or kept).
    pub(crate) fn owns(&self, idx: u32) -> bool {
        lock(&self.state).owned.contains(&idx)
    }

    /// Takes `outgoing` (a kept packet's buffer) out of the pool and puts
    /// `incoming` (the buffer a TX slot held) in as free; `false`, changing
    /// nothing, if `incoming` is not in the region or the pool holds it
    /// already (a corrupt slot).
    pub(crate) fn swap_out(&self, outgoing: u32, incoming: u32) -> bool {
        let mut st = lock(&self.state);
        if self.area.buf(incoming).is_none() || st.owned.contains(&incoming) {
            return false;
        }
        st.owned.remove(&outgoing);
        st.owned.insert(incoming);
        st.free.push(incoming);
        true
    }

    /// Gives a kept packet's buffer back.
    fn release(&self, idx: u32) {
        lock(&self.state).free.push(idx);
    }

    /// Links the free buffers into the list at `nifp`'s `ni_bufs_head`, for
    /// the kernel to free at close. Buffers of packets still kept stay out
    /// of it: the kernel never hands them out again, and they stay mapped
    /// while the packets live.
    ///
    /// # Safety
    /// `nifp` must point at the port's live `netmap_if`.
    pub(crate) unsafe fn write_back(&self, nifp: NonNull<netmap_if>) {
        let st = lock(&self.state);
        let mut head = 0;
        for &idx in &st.free {
            if let Some(word) = self.word(idx) {
                word.store(head, Ordering::Relaxed);
                head = idx;
            }
        }
        // SAFETY: as in `read`.
        unsafe { head_of(nifp) }.store(head, Ordering::Release);
    }
}

/// What [`ExtraPool::trade_in`] did.
pub(crate) enum Trade {
    /// The free buffer now in the slot.
    Taken(u32),
    /// No buffer is free.
    Exhausted,
    /// The slot named a buffer the pool holds, or none of its region: a
    /// corrupt slot.
    Corrupt,
}

/// `ni_bufs_head` of `nifp`, as an atomic.
///
/// # Safety
/// `nifp` must point at a live `netmap_if`.
unsafe fn head_of<'a>(nifp: NonNull<netmap_if>) -> &'a AtomicU32 {
    // SAFETY: the field is a u32 at a 4-aligned offset of a live header.
    unsafe { AtomicU32::from_ptr(std::ptr::addr_of_mut!((*nifp.as_ptr()).ni_bufs_head)) }
}

fn corrupt(what: String) -> Error {
    Error::RingCorrupt { ring: 0, what }
}

/// A received packet kept in an extra buffer: owned, `Send`, and not a
/// borrow of its ring, so it may outlive any number of syncs, move to
/// another thread, and go out on a TX ring of its region
/// ([`TxRing::send_kept`](crate::TxRing::send_kept)) in any order.
/// Dropping it gives the buffer back to its port's extra buffers.
///
/// ```
/// # use netmap_rs::prelude::*;
/// # fn main() -> Result<(), Error> {
/// let a = NetmapBuilder::new("emu:keep{1").extra_buffers(4).build()?;
/// let b = NetmapBuilder::new("emu:keep}1").extra_buffers(4).build()?;
/// assert_eq!(b.extra_buffers(), 4);
/// let mut tx = a.tx_ring(0)?;
/// tx.send(b"later")?;
/// tx.sync()?;
/// let mut rx = b.rx_ring(0)?;
/// rx.sync()?;
/// let kept = rx.keep()?.expect("a packet");
/// rx.sync()?; // the slot went back with an extra buffer in it
/// std::thread::spawn(move || assert_eq!(kept.payload(), b"later")).join().unwrap();
/// # Ok(())
/// # }
/// ```
pub struct KeptFrame {
    pool: Arc<ExtraPool>,
    idx: u32,
    len: u16,
}

impl fmt::Debug for KeptFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeptFrame")
            .field("buf_idx", &self.idx)
            .field("len", &self.len)
            .finish()
    }
}

impl KeptFrame {
    /// Keeps packet `len` bytes long in buffer `idx`, now `pool`'s.
    pub(crate) fn new(pool: Arc<ExtraPool>, idx: u32, len: u16) -> KeptFrame {
        KeptFrame { pool, idx, len }
    }

    /// The packet's bytes.
    pub fn payload(&self) -> &[u8] {
        self.bytes(self.len as usize)
    }

    /// The packet's bytes, to edit before sending it on.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (ptr, len) = self.span(self.len as usize);
        // SAFETY: as in `bytes`, and `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(ptr, len) }
    }

    /// The packet's length in bytes.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the packet has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn region(&self) -> RegionKey {
        self.pool.region
    }

    pub(crate) fn buf_idx(&self) -> u32 {
        self.idx
    }

    pub(crate) fn pool(&self) -> &Arc<ExtraPool> {
        &self.pool
    }

    /// The buffer and length, giving up the packet without returning its
    /// buffer to the pool (it goes into a slot).
    pub(crate) fn into_parts(self) -> (u32, u16) {
        let me = std::mem::ManuallyDrop::new(self);
        // SAFETY: `me` is never used or dropped again; its `Arc` is moved
        // out once and dropped here.
        drop(unsafe { std::ptr::read(&me.pool) });
        (me.idx, me.len)
    }

    fn span(&self, len: usize) -> (*mut u8, usize) {
        let area = &self.pool.area;
        // Every buffer the pool owns, a kept one included, was checked in
        // its region when it joined the pool (`read`, `trade_in`,
        // `swap_out`).
        let buf = area.buf(self.idx).expect("a kept buffer lies in the region");
        (buf, len.min(area.buf_size()))
    }

    fn bytes(&self, len: usize) -> &[u8] {
        let (ptr, len) = self.span(len);
        // SAFETY: the buffer lies inside the region (`RingCore::buf`), the
        // pool keeps it mapped, and it
        // is in no slot and no other kept packet (the pool owns it), so
        // nothing in this process writes it while `self` is borrowed.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

impl Drop for KeptFrame {
    fn drop(&mut self) {
        self.pool.release(self.idx);
    }
}
