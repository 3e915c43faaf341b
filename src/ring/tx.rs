//! Transmit rings: send, in-place batches, zero-copy forwarding.

use std::fmt;
use std::ptr;
use std::sync::Arc;

use super::rx::RxRing;
use super::{read_slot, void_slot, write_slot, write_slot_buf, RingCore};
use crate::backend::SyncDir;
use crate::error::{Error, Result};
use crate::extra::KeptFrame;
use crate::ffi::{self, netmap_slot, NETMAP_MAX_FRAGS, NS_BUF_CHANGED, NS_MOREFRAG};
use crate::frame::{Frame, SlotRun};
use crate::port::{FrameKey, Netmap, RegionKey};

/// Moves the buffer of RX slot `rs` into TX slot `ts` and the TX slot's
/// buffer into `rs`, flagging both `NS_BUF_CHANGED`; the TX slot also gets
/// `more` (`NS_MOREFRAG` or 0), what the caller read of the RX slot's flags.
///
/// # Safety
/// Both slots must be owned by the user.
#[inline]
unsafe fn swap_slots(rs: *mut netmap_slot, ts: *mut netmap_slot, more: u16, offsets: bool) {
    // SAFETY: the caller owns both slots; they are distinct (one RX, one TX).
    unsafe {
        let (ridx, rlen, _) = read_slot(rs);
        let (tidx, _, _) = read_slot(ts);
        write_slot_buf(ts, ridx);
        write_slot(ts, rlen, NS_BUF_CHANGED | more);
        write_slot_buf(rs, tidx);
        write_slot(rs, 0, NS_BUF_CHANGED);
        if offsets {
            // The packets' offsets travel with the buffers.
            ptr::swap(ptr::addr_of_mut!((*rs).ptr), ptr::addr_of_mut!((*ts).ptr));
        }
    }
}

/// [`swap_slots`] for a one-slot frame without offsets whose buffer
/// `ridx` and length `rlen` were read and checked when it was received:
/// RX slot `rs` is not read again.
///
/// # Safety
/// Both slots must be owned by the user.
#[inline]
unsafe fn swap_received(rs: *mut netmap_slot, ridx: u32, rlen: u16, ts: *mut netmap_slot) {
    // SAFETY: the caller owns both slots; they are distinct (one RX, one TX).
    unsafe {
        let (tidx, _, _) = read_slot(ts);
        write_slot_buf(ts, ridx);
        write_slot(ts, rlen, NS_BUF_CHANGED);
        write_slot_buf(rs, tidx);
        write_slot(rs, 0, NS_BUF_CHANGED);
    }
}

/// The `NS_MOREFRAG` flag of user-owned slot `s`.
///
/// # Safety
/// `s` must point at a slot the user owns.
#[inline]
unsafe fn more_flag(s: *const netmap_slot) -> u16 {
    // SAFETY: forwarded contract.
    unsafe { read_slot(s) }.2 & NS_MOREFRAG
}

/// Swaps as many packets as fit from the user-owned RX slots of `src` to
/// the free TX slots of `dst`, advancing both heads (unpublished); returns
/// the slots moved. Multi-slot packets move whole or wait.
#[inline]
fn move_slots<const OFFSETS: bool>(src: &mut RingCore, dst: &mut RingCore) -> usize {
    let (mut ri, mut ti) = (src.head(), dst.head());
    // One window for the batch: each packet moved takes as many slots from
    // both rings, so the smaller space bounds them all.
    let mut left = src.space().min(dst.space());
    while left > 0 {
        let rs = src.slot(ri);
        // SAFETY: slot `ri` is among the user-owned RX slots (`left` is at
        // most those from `ri` to the tail).
        let (_, _, flags) = unsafe { read_slot(rs) };
        if flags & NS_MOREFRAG == 0 {
            // SAFETY: `ri` is a user-owned RX slot, `ti` a free TX slot.
            unsafe { swap_slots(rs, dst.slot(ti), 0, OFFSETS) };
            ri = src.next(ri);
            ti = dst.next(ti);
            left -= 1;
            continue;
        }
        let avail = ffi::nm_space(ri, src.tail(), src.num_slots());
        let n = match chain_len(src, ri, avail) {
            Some(n) if n <= ffi::nm_space(ti, dst.tail(), dst.num_slots()) => n,
            _ => break, // incomplete, or no room: it waits
        };
        for _ in 0..n {
            // SAFETY: the `n` slots from `ri` are user-owned RX slots (counted
            // within `avail`), the `n` from `ti` free TX slots (`n` is at
            // most the room).
            unsafe {
                let rs = src.slot(ri);
                swap_slots(rs, dst.slot(ti), more_flag(rs), OFFSETS);
            }
            ri = src.next(ri);
            ti = dst.next(ti);
        }
        left -= n;
    }
    let moved = ffi::nm_space(src.head(), ri, src.num_slots());
    src.set_head(ri);
    dst.set_head(ti);
    moved as usize
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
/// `TxRing` is neither `Send` nor `Sync`: it borrows its [`Netmap`], which is
/// not `Sync` (a sync on the port's descriptor touches every ring bound to
/// it), and it is the only live handle to its ring. Ring handles stay on the
/// thread that holds the port:
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
    /// The key of the frames [`forward`](TxRing::forward)'s fast path
    /// takes: the one-slot frames of this region without offsets, if this
    /// ring has none either ([`FrameKey::NONE`] otherwise).
    fast_key: FrameKey,
    /// The port's [`Netmap::max_packet`].
    max_packet: usize,
    /// The longest packet the fast paths of `send` and `push` take:
    /// `max_packet`, at most one slot's [`slot_cap`](RingCore::slot_cap).
    fast_max: usize,
    /// The slots that have held no packet of this handle.
    untouched: Untouched,
}

/// The slots of a TX ring that have held no packet of its handle (for
/// [`TxBatch::push_reuse`]): `count` slots from `from`, the head as of the
/// last sync (or as the handle found it). Brought up to date at each sync:
/// between two syncs the head moves by less than a ring (it stops at the
/// tail the first one gave), so the distance it has gone tells how many
/// slots it passed.
#[derive(Clone, Copy)]
struct Untouched {
    count: u32,
    from: u32,
}

impl Untouched {
    /// Whether free slot `i` of a ring of `n` slots has held no packet: it
    /// lies among the `count` slots from `from`, none of which the head had
    /// passed at the last sync, and the head has not reached it since (a
    /// free slot lies at or after the head).
    #[inline]
    fn at(self, i: u32, n: u32) -> bool {
        self.count != 0 && ffi::nm_space(self.from, i, n) < self.count
    }

    /// Counts the slots the head passed on its way to `head` as touched.
    #[inline]
    fn advance(&mut self, head: u32, n: u32) {
        if self.count != 0 {
            self.count = self.count.saturating_sub(ffi::nm_space(self.from, head, n));
            self.from = head;
        }
    }
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
        let max_packet = port.max_packet();
        let region = port.region_key();
        TxRing {
            region,
            fast_key: if core.has_offsets() {
                FrameKey::NONE
            } else {
                FrameKey::new(region, false)
            },
            max_packet,
            fast_max: max_packet.min(core.slot_cap()),
            untouched: Untouched {
                count: core.num_slots(),
                from: core.head(),
            },
            core,
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

    /// The largest packet [`send`](TxRing::send) accepts: the port's
    /// [`max_packet`](Netmap::max_packet). On netmap ports a packet spans at
    /// most `NETMAP_MAX_FRAGS` slots, each carrying at most
    /// `min(buf_size, u16::MAX)` bytes; on AF_PACKET it is one frame, at
    /// most the interface's MTU with an Ethernet header and a VLAN tag.
    #[inline]
    pub fn max_packet(&self) -> usize {
        self.max_packet
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
        let i = self.core.head();
        if i != self.core.tail() && data.len() <= self.fast_max {
            let s = self.core.slot(i);
            // SAFETY: slot `i` = head is in [head, tail), owned by the user.
            let (idx, _, _) = unsafe { read_slot(s) };
            if let Some(buf) = self.core.fast_buf(idx) {
                // SAFETY: `buf` starts the slot's buffer, in the mapping and
                // owned by the user with its slot, which holds `slot_cap >=
                // fast_max >= data.len()` bytes (`<= u16::MAX`); `data` is a
                // separate Rust slice, so the ranges do not overlap.
                unsafe {
                    ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len());
                    write_slot(s, data.len() as u16, 0);
                }
                self.core.set_head(self.core.next(i));
                self.core.publish();
                return Ok(());
            }
        }
        self.send_general(data)
    }

    /// [`send`](TxRing::send) for what its fast path does not take: a full
    /// ring, a packet longer than a slot, a ring with offsets, a corrupt
    /// slot. Reads the head slot afresh.
    #[inline(never)]
    fn send_general(&mut self, data: &[u8]) -> Result<()> {
        let (s, buf, cap) = self.head_data(data.len())?;
        let i = self.core.head();
        // A backend's own limit (AF_PACKET's MTU) may be below one slot.
        if data.len() > cap.min(self.max_packet) {
            return self.send_multi(data, (buf, cap), usize::MAX);
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

    /// Sends `data` as one packet of slots that hold at most `frag` bytes
    /// each (the last one the rest), as netmap's `pkt-gen -F` does to test
    /// multi-slot (`NS_MOREFRAG`) paths with packets that would fit one
    /// slot. `frag` is capped at a slot's capacity, and 0 counts as 1; a
    /// packet of more than 64 fragments (`NETMAP_MAX_FRAGS`) is
    /// [`PacketTooLarge`](Error::PacketTooLarge), with the longest packet
    /// of 64 such fragments as its `max`.
    ///
    /// ```
    /// # use netmap_rs::prelude::*;
    /// # fn main() -> Result<(), Error> {
    /// let (a, b) = (NetmapBuilder::new("emu:frags{1").build()?, NetmapBuilder::new("emu:frags}1").build()?);
    /// let mut tx = a.tx_ring(0)?;
    /// tx.send_fragments(&[7u8; 100], 40)?; // slots of 40, 40 and 20 bytes
    /// tx.sync()?;
    /// let mut rx = b.rx_ring(0)?;
    /// rx.sync()?;
    /// let frame = rx.recv().expect("the packet");
    /// assert_eq!((frame.len(), frame.slots()), (100, 3));
    /// # Ok(())
    /// # }
    /// ```
    pub fn send_fragments(&mut self, data: &[u8], frag: usize) -> Result<()> {
        let (_, buf, cap) = self.head_data(data.len())?;
        self.send_multi(data, (buf, cap), frag.max(1))
    }

    /// The head slot, for a packet of `len` bytes, with its buffer and the
    /// buffer's capacity, read once: the error for a full ring, or, for a
    /// corrupt slot, that of [`skip_corrupt`](TxRing::skip_corrupt).
    fn head_data(&mut self, len: usize) -> Result<(*mut netmap_slot, *mut u8, usize)> {
        if self.core.is_empty() {
            return Err(self.too_large_or_full(len));
        }
        let i = self.core.head();
        let s = self.core.slot(i);
        // SAFETY: slot `i` = head is in [head, tail), owned by the user.
        let (idx, _, _) = unsafe { read_slot(s) };
        // SAFETY: as above.
        let Some((buf, cap)) = (unsafe { self.core.data(s, idx) }) else {
            return Err(self.skip_corrupt(i, idx));
        };
        Ok((s, buf, cap))
    }

    /// The multi-slot case of [`send`](TxRing::send); `first` is the head
    /// slot's buffer and capacity, as `send` read them. Each slot holds at
    /// most `frag` bytes.
    #[cold]
    fn send_multi(&mut self, data: &[u8], first: (*mut u8, usize), frag: usize) -> Result<()> {
        if data.len() > self.max_packet() {
            return Err(self.too_large_or_full(data.len()));
        }
        // Find the slots the packet needs, reading each slot once and
        // checking each before writing any, so that an error leaves the
        // ring as it was.
        let mut parts = [(ptr::null_mut::<u8>(), 0usize); NETMAP_MAX_FRAGS as usize];
        parts[0] = (first.0, first.1.min(frag));
        let (mut n, mut room) = (1usize, parts[0].1);
        let mut i = self.core.next(self.core.head());
        while room < data.len() {
            if n == parts.len() {
                return Err(Error::PacketTooLarge {
                    len: data.len(),
                    max: self.max_packet().min(parts.len() * frag.min(self.buf_size())),
                });
            }
            if n == self.core.space() as usize {
                return Err(self.too_large_or_full(data.len()));
            }
            let s = self.core.slot(i);
            // SAFETY: the first `space` slots from head are user-owned.
            let (idx, _, _) = unsafe { read_slot(s) };
            // SAFETY: as above.
            let Some((buf, cap)) = (unsafe { self.core.data(s, idx) }) else {
                return Err(self.skip_corrupt(i, idx));
            };
            let part = (buf, cap.min(frag));
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
        TxBatch {
            local: self.core.clone(),
            fast_max: self.fast_max,
            untouched: self.untouched,
            ring: self,
            count: 0,
        }
    }

    /// Forwards a received packet without copying it: the buffers of
    /// `frame`'s slots and of the next free TX slots trade places, and both
    /// sides are marked `NS_BUF_CHANGED`.
    ///
    /// The slot goes to the kernel at the ring's next [`sync`](TxRing::sync)
    /// (or `send`, `commit`, or when the handle drops): unlike `send`, a
    /// forward does not publish the ring's head by itself, so that a loop
    /// of `recv` and `forward` keeps both rings' state in registers.
    ///
    /// Both ports must share one memory region ([`Error::MemoryMismatch`]
    /// otherwise: copy with [`send`](TxRing::send) instead). On
    /// [`Error::RingFull`] the frame is dropped like any frame read: check
    /// [`space`](TxRing::space) first to keep it.
    #[inline]
    pub fn forward(&mut self, frame: Frame<'_>) -> Result<()> {
        let i = self.core.head();
        if frame.key() == self.fast_key && i != self.core.tail() {
            // SAFETY: the frame's slot is owned by the user while the frame
            // lives (we hold it by value); slot `i` = head is in [head,
            // tail). Both buffers belong to one region, the frame is one
            // slot and neither ring has offsets (the key says so), and every
            // buffer index is range-checked again when it is used.
            unsafe {
                swap_received(
                    frame.run().slot(0),
                    frame.buf_idx(),
                    frame.len() as u16,
                    self.core.slot(i),
                )
            };
            self.core.set_head(self.core.next(i));
            return Ok(());
        }
        let run = frame.run();
        // The general path works on a copy: a pointer to this handle passed
        // out of line would let the compiler assume that slot stores may
        // change it, and reload its fields per packet in the caller's loop.
        let mut core = self.core.clone();
        let r = forward_general(
            &mut core,
            self.region,
            frame.key(),
            run.slots,
            run.first,
            run.num_slots,
            frame.nslots(),
        );
        self.core = core;
        r
    }

    /// Sends a kept packet ([`RxRing::keep`](crate::RxRing::keep)) without
    /// copying: its buffer goes into the slot at the head
    /// (`NS_BUF_CHANGED`), and the buffer the slot held joins the kept
    /// packet's port's extra buffers. Staged like [`forward`](TxRing::forward):
    /// the next sync publishes it.
    ///
    /// # Errors
    /// [`Error::RingFull`], [`Error::MemoryMismatch`] for a packet of
    /// another region, [`Error::Unsupported`] on a ring with offsets; the
    /// packet is dropped then (its buffer goes back to its port): check
    /// [`space`](TxRing::space) first to keep it. [`Error::RingCorrupt`]
    /// when the slot names no buffer of the region, or one that a port
    /// holds as an extra buffer; the slot goes to the kernel empty.
    ///
    /// ```
    /// # use netmap_rs::prelude::*;
    /// # fn main() -> Result<(), Error> {
    /// let (a, b) = (NetmapBuilder::new("emu:kept{1").build()?, NetmapBuilder::new("emu:kept}1").extra_buffers(8).build()?);
    /// let (c, d) = (NetmapBuilder::new("emu:kept{2").build()?, NetmapBuilder::new("emu:kept}2").build()?);
    /// let mut tx = a.tx_ring(0)?;
    /// tx.send(b"first")?;
    /// tx.send(b"second")?;
    /// tx.sync()?;
    /// let mut rx = b.rx_ring(0)?;
    /// rx.sync()?;
    /// let (first, second) = (rx.keep()?.unwrap(), rx.keep()?.unwrap());
    /// let mut out = c.tx_ring(0)?;
    /// out.send_kept(second)?; // in any order
    /// out.send_kept(first)?;
    /// out.sync()?;
    /// let mut end = d.rx_ring(0)?;
    /// end.sync()?;
    /// assert_eq!(end.recv().unwrap().payload(), b"second");
    /// assert_eq!(b.free_extra_buffers(), 8);
    /// # Ok(())
    /// # }
    /// ```
    pub fn send_kept(&mut self, kept: KeptFrame) -> Result<()> {
        if kept.region() != self.region {
            return Err(Error::MemoryMismatch {
                a: kept.region().to_string(),
                b: self.region.to_string(),
            });
        }
        if self.core.has_offsets() {
            return Err(Error::Unsupported {
                backend: self.port.backend(),
                what: "sending a kept packet on a ring with offsets".into(),
                hint: "copy it with send(kept.payload())".into(),
            });
        }
        let i = self.core.head();
        if i == self.core.tail() {
            return Err(Error::RingFull { ring: self.core.id() });
        }
        let s = self.core.slot(i);
        // SAFETY: slot `i` = head is in [head, tail), owned by the user.
        let (old, _, _) = unsafe { read_slot(s) };
        let pool = Arc::clone(kept.pool());
        // This port's extra buffers are no slot's either (the kept packet's
        // pool checks its own in `swap_out`).
        let held = |idx| {
            self.port
                .extra_pool()
                .is_some_and(|p| !Arc::ptr_eq(p, &pool) && p.owns(idx))
        };
        if self.core.fast_buf(old).is_none() || held(old) || !pool.swap_out(kept.buf_idx(), old) {
            // SAFETY: the slot is user-owned.
            unsafe { void_slot(s) };
            self.core.set_head(self.core.next(i));
            return Err(self.core.corrupt_slot(i, old));
        }
        let (idx, len) = kept.into_parts();
        // SAFETY: the slot is user-owned; `idx` is a buffer of the region
        // that the pool gave up, in no other slot.
        unsafe {
            write_slot_buf(s, idx);
            write_slot(s, len, NS_BUF_CHANGED);
        }
        self.core.set_head(self.core.next(i));
        Ok(())
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
        if rx.key.region() != self.region {
            return Err(Error::MemoryMismatch {
                a: rx.key.region().to_string(),
                b: self.region.to_string(),
            });
        }
        let (src, dst) = (&mut rx.core, &mut self.core);
        // Two copies of the loop, so the per-slot work has no branch on
        // whether offsets travel with the buffers.
        let moved = if rx.key.offsets() || dst.has_offsets() {
            move_slots::<true>(src, dst)
        } else {
            move_slots::<false>(src, dst)
        };
        src.publish();
        dst.publish();
        Ok(moved)
    }

    /// Hands staged packets to the kernel (`NIOCTXSYNC` on the port) and
    /// learns which slots it has freed.
    #[inline]
    pub fn sync(&mut self) -> Result<()> {
        self.core.publish();
        self.untouched.advance(self.core.head(), self.core.num_slots());
        self.port.sync(SyncDir::Tx)?;
        self.core.reload_tail()
    }
}

/// [`TxRing::forward`] for what its fast path does not take: a frame of
/// another region than `region` (the ring's), a multi-slot packet (of `n`
/// slots from `first` in the ring whose slot array `slots` has `num_slots`
/// entries), a ring with offsets, a full ring. It takes the frame's pieces
/// in registers, not the frame, which the fast path would then spill to
/// memory; the caller holds the frame, so its slots stay the user's.
#[cold]
#[inline(never)]
fn forward_general(
    core: &mut RingCore,
    region: RegionKey,
    key: FrameKey,
    slots: *mut netmap_slot,
    first: u32,
    num_slots: u32,
    n: usize,
) -> Result<()> {
    if key.region() != region {
        return Err(Error::MemoryMismatch {
            a: key.region().to_string(),
            b: region.to_string(),
        });
    }
    if (core.space() as usize) < n {
        return Err(Error::RingFull { ring: core.id() });
    }
    let offsets = key.offsets() || core.has_offsets();
    let run = SlotRun {
        slots,
        first,
        num_slots,
    };
    let mut i = core.head();
    for k in 0..n {
        // SAFETY: as in `forward`, for each slot of the packet.
        unsafe {
            let rs = run.slot(k);
            swap_slots(rs, core.slot(i), more_flag(rs), offsets);
        }
        i = core.next(i);
    }
    core.set_head(i);
    core.publish();
    Ok(())
}

impl Drop for TxRing<'_> {
    #[inline]
    fn drop(&mut self) {
        // Forwarded slots not yet published go to the next sync of the port.
        self.core.publish();
        self.port.release_ring(SyncDir::Tx, self.index);
    }
}

/// Packets built in place in a [`TxRing`]'s slot buffers, published together
/// by [`commit`](TxBatch::commit). Dropping an uncommitted batch discards it.
///
/// `TxBatch` is neither `Send` nor `Sync`: it borrows its [`TxRing`] mutably,
/// and the buffers it hands out are the ring's.
#[must_use = "a TX batch publishes nothing until commit()"]
pub struct TxBatch<'r, 'a> {
    ring: &'r mut TxRing<'a>,
    /// A copy of the ring's state the batch works on (so that its fields
    /// live in registers); its `head` is the batch's next slot, and goes
    /// back to the ring at commit.
    local: RingCore,
    /// The ring's `fast_max` and `untouched`, copied for the same reason.
    fast_max: usize,
    untouched: Untouched,
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
    /// buffer, and at most `u16::MAX` bytes) or the ring's
    /// [`max_packet`](TxRing::max_packet), [`Error::RingFull`] if no slot
    /// is free, [`Error::RingCorrupt`] if the next slot holds a buffer
    /// outside the region (it is staged empty, so the ring moves on: push
    /// again).
    #[inline]
    pub fn push(&mut self, len: usize) -> Result<&mut [u8]> {
        let (buf, _) = self.claim(len)?;
        // SAFETY: `claim` gave the start of `len` bytes of a slot buffer in
        // the mapping, owned by the user with its slot; the slice borrows
        // `self`, so no other slice of this buffer exists while it lives.
        Ok(unsafe { std::slice::from_raw_parts_mut(buf, len) })
    }

    /// [`push`](TxBatch::push) for a program that sends the same bytes over
    /// and over, like C's `pkt-gen`: claims the next free slot for a packet
    /// of `len` bytes and returns its buffer, and whether the buffer is
    /// *fresh*, so that the program writes the packet only into fresh
    /// buffers and otherwise sends what the buffer already holds.
    ///
    /// `fresh` is `false` when this [`TxRing`] handle has staged a packet in
    /// this slot before (by any method: a batch dropped uncommitted counts
    /// only for slots it reached after a later commit or sync moved past
    /// them) and the slot came back without `NS_BUF_CHANGED`, the flag by
    /// which netmap says a slot holds another buffer than before (pipes set
    /// it where the receiving side swapped buffers, VALE where it swapped
    /// them): by that convention, the buffer still holds the bytes this
    /// handle left in it, those of the last packet it sent from this slot
    /// (or [`forward`](TxRing::forward)ed into it). `fresh` is `true`
    /// otherwise: for every slot the handle has not used yet since it was
    /// opened, for a flagged slot, and always on a ring with offsets. The
    /// slot goes out with `len` bytes and its flags cleared, as with `push`.
    ///
    /// The flag is a shared value, so a peer process can lie about it: that
    /// can make the buffer hold other bytes than `fresh == false` promises,
    /// never make it unsafe to use (the buffer index is checked as in
    /// `push`).
    ///
    /// Errors: as for [`push`](TxBatch::push).
    ///
    /// ```
    /// # use netmap_rs::prelude::*;
    /// # fn main() -> Result<(), Error> {
    /// let port = NetmapBuilder::new("emu:reuse{1").build()?;
    /// let peer = NetmapBuilder::new("emu:reuse}1").build()?;
    /// let template = [0xabu8; 60];
    /// let (mut tx, mut rx) = (port.tx_ring(0)?, peer.rx_ring(0)?);
    /// let mut copies = 0;
    /// for _ in 0..3 {
    ///     let mut batch = tx.batch();
    ///     while let Ok((buf, fresh)) = batch.push_reuse(template.len()) {
    ///         if fresh {
    ///             buf.copy_from_slice(&template);
    ///             copies += 1;
    ///         }
    ///     }
    ///     batch.commit();
    ///     tx.sync()?;
    ///     rx.sync()?;
    ///     assert!(rx.iter().all(|f| f.payload() == template));
    ///     rx.sync()?; // hands the slots back to the sender
    ///     tx.sync()?;
    /// }
    /// // Each slot was written once; later rounds sent what it held.
    /// assert_eq!(copies, tx.num_slots());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn push_reuse(&mut self, len: usize) -> Result<(&mut [u8], bool)> {
        let (buf, fresh) = self.claim(len)?;
        // SAFETY: as in `push`.
        Ok((unsafe { std::slice::from_raw_parts_mut(buf, len) }, fresh))
    }

    /// Stages the next free slot with a packet of `len` bytes: returns where
    /// the packet starts (`len` bytes of a user-owned buffer in the mapping
    /// from there) and whether it is fresh (see
    /// [`push_reuse`](TxBatch::push_reuse)).
    #[inline(always)]
    fn claim(&mut self, len: usize) -> Result<(*mut u8, bool)> {
        let core = &self.local;
        let i = core.head();
        if len <= self.fast_max && i != core.tail() {
            let s = core.slot(i);
            // SAFETY: slot `i` lies in [head, tail) and is user-owned.
            let (idx, _, flags) = unsafe { read_slot(s) };
            if let Some(buf) = core.fast_buf(idx) {
                let fresh = flags & NS_BUF_CHANGED != 0 || self.untouched.at(i, core.num_slots());
                // SAFETY: as above; `len <= fast_max <= u16::MAX`.
                unsafe { write_slot(s, len as u16, 0) };
                self.local.set_head(self.local.next(i));
                self.count += 1;
                return Ok((buf, fresh));
            }
        }
        let (claimed, head) = claim_general(&self.local, self.ring.max_packet, len);
        self.local.set_head(head);
        self.count += usize::from(claimed.is_ok());
        claimed
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
        self.local.space() as usize
    }

    /// Publishes every staged packet to the next sync; returns how many.
    #[inline]
    pub fn commit(self) -> usize {
        self.ring.core.set_head(self.local.head());
        self.ring.core.publish();
        self.count
    }
}

/// [`TxBatch::claim`] for what its fast path does not take: a full ring, a
/// packet too long, a ring with offsets (always fresh), a corrupt slot (then
/// staged empty, so that the ring moves past it at commit). Reads the slot
/// afresh; returns the claim and the batch's new head. It takes the
/// batch's state by reference and returns the head, so that the batch
/// itself never leaves registers on the fast path.
#[inline(never)]
fn claim_general(core: &RingCore, max_packet: usize, len: usize) -> (Result<(*mut u8, bool)>, u32) {
    let i = core.head();
    let max = core.slot_cap().min(max_packet);
    if len > max {
        return (Err(Error::PacketTooLarge { len, max }), i);
    }
    if i == core.tail() {
        return (Err(Error::RingFull { ring: core.id() }), i);
    }
    let s = core.slot(i);
    // SAFETY: slot `i` lies in [head, tail) and is user-owned.
    let (idx, _, _) = unsafe { read_slot(s) };
    // SAFETY: as above.
    let Some((buf, cap)) = (unsafe { core.data(s, idx) }) else {
        // SAFETY: as above.
        unsafe { write_slot(s, 0, 0) };
        return (Err(core.corrupt_slot(i, idx)), core.next(i));
    };
    if len > cap {
        return (Err(Error::PacketTooLarge { len, max: cap }), i);
    }
    // SAFETY: the slot is user-owned; `len <= cap <= u16::MAX`.
    unsafe { write_slot(s, len as u16, 0) };
    // Only a ring with offsets gets this far (the fast path takes every
    // other slot that is not corrupt), and there the slot is fresh.
    debug_assert!(core.has_offsets());
    (Ok((buf, true)), core.next(i))
}
