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
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::backend::SyncDir;
use crate::error::{Error, Result};
use crate::ffi::{self, netmap_ring, netmap_slot, nm_next, NETMAP_MAX_FRAGS, NS_BUF_CHANGED, NS_MOREFRAG};
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
    /// Buffer indices below this lie inside the mapping.
    nbufs: u32,
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

impl RingCore {
    /// Reads and checks a ring's constants.
    ///
    /// # Safety
    /// `ring` must point inside the live mapping `[map_base, map_base+map_len)`
    /// and that mapping must outlive the returned value.
    pub(crate) unsafe fn new(ring: NonNull<netmap_ring>, map_base: *mut u8, map_len: usize) -> Result<Self> {
        let r = ring.as_ptr();
        let map_end = map_base as usize + map_len;
        let corrupt = |id: u16, what: String| Error::RingCorrupt { ring: id, what };
        if (r as usize) < map_base as usize || r as usize + RING_HDR > map_end {
            return Err(corrupt(0, "the ring lies outside the mapped region".into()));
        }
        // SAFETY: the header lies inside the mapping (checked above); these
        // fields are constant after registration, so plain reads do not race.
        let (buf_ofs, num_slots, buf_size, id, head, tail, offset_mask) = unsafe {
            (
                ptr::addr_of!((*r).buf_ofs).read(),
                ptr::addr_of!((*r).num_slots).read(),
                ptr::addr_of!((*r).nr_buf_size).read(),
                ptr::addr_of!((*r).ringid).read(),
                (*ring_field(r, RingField::Head)).load(Ordering::Acquire),
                (*ring_field(r, RingField::Tail)).load(Ordering::Acquire),
                ptr::addr_of!((*r).offset_mask).read(),
            )
        };
        if num_slots == 0 || buf_size == 0 {
            return Err(corrupt(
                id,
                format!("num_slots {num_slots}, nr_buf_size {buf_size}"),
            ));
        }
        let slots_end = r as usize + RING_HDR + num_slots as usize * std::mem::size_of::<netmap_slot>();
        if slots_end > map_end {
            return Err(corrupt(id, "the slot array runs past the mapped region".into()));
        }
        let bufs = (r as isize).wrapping_add(buf_ofs as isize) as usize;
        if bufs < map_base as usize || bufs > map_end {
            return Err(corrupt(
                id,
                format!("buf_ofs {buf_ofs} points outside the mapped region"),
            ));
        }
        if head >= num_slots || tail >= num_slots {
            return Err(corrupt(
                id,
                format!("head {head} / tail {tail} beyond {num_slots} slots"),
            ));
        }
        let nbufs = ((map_end - bufs) / buf_size as usize).min(u32::MAX as usize) as u32;
        // SAFETY: `bufs` lies inside the mapping (checked), so it is not null;
        // the slot array follows the header inside the mapping (checked).
        let (slots, bufs) = unsafe {
            (
                NonNull::new_unchecked(r.cast::<u8>().add(RING_HDR).cast::<netmap_slot>()),
                NonNull::new_unchecked(bufs as *mut u8),
            )
        };
        Ok(RingCore {
            ring,
            slots,
            bufs,
            nbufs,
            offset_mask,
            num_slots,
            buf_size,
            head,
            tail,
            published: head,
            id,
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

    /// The start of buffer `idx`, or `None` if the index points outside the
    /// mapping (a corrupt slot).
    #[inline]
    pub(crate) fn buf(&self, idx: u32) -> Option<*mut u8> {
        if idx < self.nbufs {
            // SAFETY: `idx < nbufs` puts the whole buffer inside the mapping.
            Some(unsafe { self.bufs.as_ptr().add(idx as usize * self.buf_size as usize) })
        } else {
            None
        }
    }

    /// Where slot `s`'s packet starts and how many bytes fit from there:
    /// its buffer, past the slot's offset when the ring has offsets. `None`
    /// if the slot is corrupt (buffer outside the mapping, offset past it).
    ///
    /// # Safety
    /// `s` must be a slot the user owns.
    #[inline]
    pub(crate) unsafe fn data(&self, s: *const netmap_slot, idx: u32) -> Option<(*mut u8, usize)> {
        let buf = self.buf(idx)?;
        let bs = self.buf_size as usize;
        if self.offset_mask == 0 {
            return Some((buf, bs));
        }
        // SAFETY: the caller owns the slot.
        let off = (unsafe { ptr::addr_of!((*s).ptr).read() } & self.offset_mask) as usize;
        if off >= bs {
            return None;
        }
        // SAFETY: `off < bs`, so the pointer stays inside the buffer.
        Some((unsafe { buf.add(off) }, bs - off))
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
            what: format!("slot {i} holds buffer index {idx}, outside the mapped region"),
        }
    }
}

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
    /// `NETMAP_MAX_FRAGS` slots.
    #[inline]
    pub fn max_packet(&self) -> usize {
        self.core.buf_size() * NETMAP_MAX_FRAGS as usize
    }

    /// Copies `data` into the next free slot (or slots: a packet larger than
    /// one buffer is written as a multi-slot packet, `NS_MOREFRAG` on all but
    /// its last slot) and makes it visible to the next sync.
    ///
    /// Errors: [`Error::RingFull`] if the free slots cannot hold it (call
    /// [`sync`](TxRing::sync) and retry), [`Error::PacketTooLarge`] if it
    /// exceeds [`max_packet`](TxRing::max_packet).
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
        let (buf, cap) = unsafe {
            let (idx, _, _) = read_slot(s);
            self.core
                .data(s, idx)
                .ok_or_else(|| self.core.corrupt_slot(i, idx))?
        };
        if data.len() > cap {
            return self.send_multi(data);
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

    #[cold]
    fn send_multi(&mut self, data: &[u8]) -> Result<()> {
        if data.len() > self.max_packet() {
            return Err(self.too_large_or_full(data.len()));
        }
        // Find the slots the packet needs, checking each before writing any,
        // so that an error leaves the ring as it was.
        let mut i = self.core.head();
        let (mut n, mut room) = (0u32, 0usize);
        while room < data.len() {
            if n == self.core.space() || n == NETMAP_MAX_FRAGS {
                return Err(self.too_large_or_full(data.len()));
            }
            let s = self.core.slot(i);
            // SAFETY: the first `space` slots from head are user-owned.
            let (_, cap) = unsafe {
                let (idx, _, _) = read_slot(s);
                self.core
                    .data(s, idx)
                    .ok_or_else(|| self.core.corrupt_slot(i, idx))?
            };
            room += cap;
            n += 1;
            i = self.core.next(i);
        }
        let mut i = self.core.head();
        let mut rest = data;
        for k in 0..n {
            let s = self.core.slot(i);
            // SAFETY: as above; every slot was checked in the first pass, and
            // each chunk is at most its slot's capacity.
            unsafe {
                let (idx, _, _) = read_slot(s);
                let (buf, cap) = self.core.data(s, idx).unwrap_or((ptr::null_mut(), 0));
                let (chunk, tail) = rest.split_at(cap.min(rest.len()));
                ptr::copy_nonoverlapping(chunk.as_ptr(), buf, chunk.len());
                let flags = if k + 1 < n { NS_MOREFRAG } else { 0 };
                write_slot(s, chunk.len() as u16, flags);
                rest = tail;
            }
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
    /// Errors: [`Error::PacketTooLarge`] if `len` exceeds one buffer,
    /// [`Error::RingFull`] if no slot is free.
    #[inline]
    pub fn push(&mut self, len: usize) -> Result<&mut [u8]> {
        let core = &self.ring.core;
        if len > core.buf_size() {
            return Err(Error::PacketTooLarge {
                len,
                max: core.buf_size(),
            });
        }
        if self.head == core.tail() {
            return Err(Error::RingFull { ring: core.id() });
        }
        let i = self.head;
        let s = core.slot(i);
        // SAFETY: slot `i` lies in [head, tail) and is user-owned.
        let (buf, cap) = unsafe {
            let (idx, _, _) = read_slot(s);
            core.data(s, idx).ok_or_else(|| core.corrupt_slot(i, idx))?
        };
        if len > cap {
            return Err(Error::PacketTooLarge { len, max: cap });
        }
        // SAFETY: the slot is user-owned, the buffer lies in the mapping and
        // holds `cap >= len` bytes from `buf`; the returned slice borrows
        // `self`, so no other slice of this buffer exists while it lives.
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
    /// Room to assemble multi-slot packets: the packet starting at slot `s`
    /// goes at `s * buf_size`, so packets of one batch never overlap.
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
            scratch: Scratch::default(),
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
    /// now hold unread data.
    #[inline]
    pub fn sync(&mut self) -> Result<usize> {
        self.core.publish();
        self.port.sync(SyncDir::Rx)?;
        self.core.reload_tail()?;
        Ok(self.core.space() as usize)
    }
}

impl Drop for RxRing<'_> {
    #[inline]
    fn drop(&mut self) {
        // Frames are gone; give their slots back at the next sync.
        self.core.publish();
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
    }
}

/// Assembly room for multi-slot packets, allocated on first use.
#[derive(Default)]
pub(crate) struct Scratch {
    mem: Vec<u8>,
}

/// Takes the next packet from `core`, advancing the user's `head` past it
/// (without publishing it).
///
/// # Safety
/// The caller must make the returned frame borrow `core` (and `scratch`)
/// for `'f`, and no frame previously handed out may overlap it: it must be
/// dropped, or cover other slots.
#[inline]
unsafe fn next_frame<'f>(core: &mut RingCore, scratch: &mut Scratch, region: RegionKey) -> Option<Frame<'f>> {
    let i = core.head();
    if i == core.tail() {
        return None;
    }
    let s = core.slot(i);
    // SAFETY: slot `i` = head is in [head, tail), owned by the user.
    let (idx, len, flags) = unsafe { read_slot(s) };
    if flags & NS_MOREFRAG == 0 {
        // SAFETY: slot `i` is user-owned.
        let (buf, cap) = unsafe { core.data(s, idx)? };
        let len = (len as usize).min(cap);
        core.set_head(core.next(i));
        // SAFETY: the buffer lies in the mapping; the slot is user-owned and
        // stays so until the shared head is published, which needs `&mut`
        // on the ring, after the frame ('f) is gone.
        let data = unsafe { std::slice::from_raw_parts(buf, len) };
        let _ = s;
        return Some(Frame::new(data, core, i, 1, region));
    }
    // The cold path works on a copy, so that `core` never escapes this
    // function and its fields can stay in registers in the receive loop.
    // SAFETY: forwarded contract.
    let (frame, head) = unsafe { next_multi(core.clone(), scratch, region, core.space())? };
    core.set_head(head);
    Some(frame)
}

/// The multi-slot case of [`next_frame`]; returns the frame and the new head.
///
/// # Safety
/// As for [`next_frame`].
#[cold]
#[inline(never)]
unsafe fn next_multi<'f>(
    core: RingCore,
    scratch: &mut Scratch,
    region: RegionKey,
    space: u32,
) -> Option<(Frame<'f>, u32)> {
    let first = core.head();
    let bs = core.buf_size();
    // Count the fragments; a chain not yet complete within [head, tail)
    // waits for the next sync.
    let mut n = 0u32;
    let mut i = first;
    loop {
        if n == space {
            return None;
        }
        let s = core.slot(i);
        // SAFETY: slot `i` is within the `space` user-owned slots from head.
        let (idx, _, flags) = unsafe { read_slot(s) };
        // SAFETY: as above.
        unsafe { core.data(s, idx)? };
        n += 1;
        i = core.next(i);
        if flags & NS_MOREFRAG == 0 || n == NETMAP_MAX_FRAGS {
            break;
        }
    }
    let need = (core.num_slots() as usize + NETMAP_MAX_FRAGS as usize) * bs;
    if scratch.mem.len() < need {
        scratch.mem = vec![0; need];
    }
    let base = scratch.mem.as_mut_ptr();
    let start = first as usize * bs;
    let mut total = 0usize;
    let mut i = first;
    for _ in 0..n {
        let s = core.slot(i);
        // SAFETY: user-owned slot; its buffer index was checked above. The
        // destination `[start, start + n*bs)` lies in the scratch (sized for
        // `num_slots + MAX_FRAGS` buffers) and belongs to this packet alone:
        // packets of one batch start at distinct slots and span no further
        // than the next packet's first slot.
        unsafe {
            let (idx, len, _) = read_slot(s);
            let (src, cap) = core.data(s, idx).unwrap_or((ptr::null_mut(), 0));
            let len = (len as usize).min(cap);
            ptr::copy_nonoverlapping(src, base.add(start + total), len);
            total += len;
        }
        i = core.next(i);
    }
    // SAFETY: the assembled bytes lie in the scratch, which the frame
    // borrows (through the ring) for 'f; no later write touches this range
    // while the frame lives (see above).
    let data = unsafe { std::slice::from_raw_parts(base.add(start), total) };
    Some((Frame::new(data, &core, first, n as u16, region), i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_without_masking() {
        assert_eq!(nm_next(4, 5), 0);
        assert_eq!(nm_next(3, 5), 4);
        assert_eq!(ffi::nm_space(3, 1, 5), 3);
        assert_eq!(ffi::nm_space(1, 3, 5), 2);
        assert_eq!(ffi::nm_space(2, 2, 5), 0);
    }
}
