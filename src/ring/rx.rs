//! Receive rings: frames in place, batches, multi-slot assembly.

use std::fmt;
use std::marker::PhantomData;
use std::ptr;
use std::sync::Arc;
use std::time::SystemTime;

use super::{read_slot, void_slot, write_slot, write_slot_buf, RingCore};
use crate::backend::SyncDir;
use crate::error::{BackendKind, Error, Result};
use crate::extra::{KeptFrame, Trade};
use crate::ffi::{self, netmap_slot, NETMAP_MAX_FRAGS, NS_BUF_CHANGED, NS_MOREFRAG};
use crate::frame::Frame;
use crate::port::{FrameKey, Netmap};

/// A receive ring of an open port.
///
/// [`sync`](RxRing::sync) asks the kernel for new packets (and returns the
/// slots already read); [`recv`](RxRing::recv) and [`iter`](RxRing::iter)
/// hand them out as [`Frame`]s borrowed from the ring.
///
/// `RxRing` is neither `Send` nor `Sync`: it borrows its [`Netmap`], which is
/// not `Sync` (a sync on the port's descriptor touches every ring bound to
/// it), so it stays on the thread that holds the port. For one thread per
/// ring, open one port per ring
/// ([`NetmapBuilder::build_per_ring`](crate::NetmapBuilder::build_per_ring)).
pub struct RxRing<'a> {
    pub(super) core: RingCore,
    port: &'a Netmap,
    index: usize,
    /// The key of its one-slot frames: the port's region, and whether the
    /// ring has offsets.
    pub(super) key: FrameKey,
    /// Room to assemble multi-slot packets, lent by the port (see
    /// [`Scratch`]).
    pub(super) scratch: Scratch,
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
            key: FrameKey::new(port.region_key(), core.has_offsets()),
            core,
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
        let key = self.key;
        // SAFETY: `&mut self` ends every earlier frame; the frame returned
        // borrows `self`.
        unsafe { next_frame(&mut self.core, &mut self.scratch, key) }
    }

    /// Every packet received as of the last sync, as frames that may be
    /// kept side by side (for example to forward them all). The slots return
    /// to the kernel at the next `recv`, `iter` or `sync`.
    #[inline]
    pub fn iter(&mut self) -> RxIter<'_> {
        self.core.publish();
        RxIter {
            local: self.core.clone(),
            cur: self.core.slot(self.core.head()),
            end: self.core.slot(self.core.tail()),
            core: &mut self.core,
            scratch: &mut self.scratch,
            key: self.key,
            _frames: PhantomData,
        }
    }

    /// When the kernel last synced this ring: netmap stamps an RX ring's
    /// `ts` with the time of day at every sync (`NIOCRXSYNC` or a poll), as
    /// every backend here does. `None` before the first stamp, or if the
    /// ring holds no valid time (a corrupt ring). Stamps have microsecond
    /// resolution and tell when a batch was taken in, not when each packet
    /// arrived.
    ///
    /// ```
    /// # use netmap_rs::prelude::*;
    /// # fn main() -> Result<(), Error> {
    /// let (a, b) = (NetmapBuilder::new("emu:stamp{1").build()?, NetmapBuilder::new("emu:stamp}1").build()?);
    /// let mut rx = b.rx_ring(0)?;
    /// let before = std::time::SystemTime::now();
    /// rx.sync()?;
    /// assert!(rx.timestamp().is_some_and(|t| t + std::time::Duration::from_millis(1) >= before));
    /// # drop(a);
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn timestamp(&self) -> Option<SystemTime> {
        self.core.timestamp()
    }

    /// Asks the kernel to stamp this ring at every sync (`NR_TIMESTAMP` in
    /// the ring's flags) or stops asking. netmap stamps RX rings by default;
    /// a host whose `dev.netmap.no_timestamp` sysctl is set stamps only the
    /// rings that ask. The embedded kernel, AF_PACKET and AF_XDP always
    /// stamp. The flag stays on the ring after the handle drops.
    pub fn request_timestamps(&mut self, on: bool) {
        self.core.set_ring_flag(ffi::NR_TIMESTAMP, on);
    }

    /// Whether this ring asks for stamps ([`request_timestamps`](RxRing::request_timestamps)).
    pub fn timestamps_requested(&self) -> bool {
        self.core.ring_flag(ffi::NR_TIMESTAMP)
    }

    /// Turns netmap's transparent forwarding on or off for this ring
    /// (`NR_FORWARD` in the ring's flags): with it on, the packets marked
    /// with [`Frame::mark_forward`] go on when their slots go back to the
    /// kernel, from a NIC's RX ring to the host stack, from the host RX
    /// ring (`^`) to the NIC. The flag stays on the ring after the handle
    /// drops, as in netmap.
    ///
    /// # Errors
    /// [`Error::Unsupported`] where there is no host stack to forward to or
    /// from: the embedded kernel, AF_PACKET and AF_XDP.
    pub fn request_forward(&mut self, on: bool) -> Result<()> {
        match self.port.backend() {
            BackendKind::Kernel | BackendKind::Libnetmap => {
                self.core.set_ring_flag(ffi::NR_FORWARD, on);
                Ok(())
            }
            backend => Err(Error::Unsupported {
                backend,
                what: "transparent forwarding (NR_FORWARD)".into(),
                hint: "it needs the netmap module's host rings; forward between ports with \
                       TxRing::forward or send instead"
                    .into(),
            }),
        }
    }

    /// Whether this ring has transparent forwarding on
    /// ([`request_forward`](RxRing::request_forward)).
    pub fn forward_requested(&self) -> bool {
        self.core.ring_flag(ffi::NR_FORWARD)
    }

    /// Takes the next packet out of the ring as a [`KeptFrame`]: its slot
    /// goes back to the kernel with a free extra buffer of the port in its
    /// place (`NS_BUF_CHANGED`), and the packet's buffer becomes the kept
    /// frame's until it is dropped or sent
    /// ([`TxRing::send_kept`](crate::TxRing::send_kept)). `Ok(None)` when
    /// no packet is waiting. See [`KeptFrame`] for an example.
    ///
    /// # Errors
    /// * [`Error::NoExtraBuffer`] when every extra buffer holds a kept
    ///   packet, or the port has none
    ///   ([`NetmapBuilder::extra_buffers`](crate::NetmapBuilder::extra_buffers));
    ///   the packet stays in the ring.
    /// * [`Error::Unsupported`] for a packet of more than one slot, or on a
    ///   ring with offsets; the packet stays in the ring for
    ///   [`recv`](RxRing::recv), which also skips a corrupt slot.
    /// * [`Error::RingCorrupt`] for a slot that names a buffer the port
    ///   holds as an extra buffer; the slot is skipped.
    pub fn keep(&mut self) -> Result<Option<KeptFrame>> {
        if self.core.is_empty() {
            self.core.publish();
            return Ok(None);
        }
        let Some(pool) = self.port.extra_pool() else {
            return Err(Error::NoExtraBuffer {
                port: self.port.name().to_string(),
                granted: 0,
            });
        };
        let i = self.core.head();
        let s = self.core.slot(i);
        // SAFETY: slot `i` = head is in [head, tail), owned by the user; no
        // frame is alive (`&mut self`).
        let Some((idx, _, len)) = (unsafe { self.core.fast_packet(s) }) else {
            return Err(Error::Unsupported {
                backend: self.port.backend(),
                what: "keeping a packet of more than one slot, or on a ring with offsets".into(),
                hint: "take it with recv() and copy what you need".into(),
            });
        };
        match pool.trade_in(idx) {
            Trade::Taken(spare) => {
                // SAFETY: the slot is user-owned; `spare` is a buffer of the
                // region that no slot and no kept packet holds.
                unsafe {
                    write_slot_buf(s, spare);
                    write_slot(s, len as u16, NS_BUF_CHANGED);
                }
                self.core.set_head(self.core.next(i));
                Ok(Some(KeptFrame::new(Arc::clone(pool), idx, len as u16)))
            }
            Trade::Exhausted => Err(pool.exhausted(self.port.name())),
            Trade::Corrupt => {
                // SAFETY: the slot is user-owned.
                unsafe { void_slot(s) };
                self.core.set_head(self.core.next(i));
                Err(Error::RingCorrupt {
                    ring: self.core.id(),
                    what: format!(
                        "slot {i} names buffer {idx}, which this port holds as an extra buffer \
                         (or which lies outside its region); it was handed back naming no buffer"
                    ),
                })
            }
        }
    }

    /// Drops up to `max` of the packets received as of the last sync
    /// without reading them, as a sink that only counts does; returns how
    /// many packets it dropped and their bytes. Their slots return to the
    /// kernel at the next sync.
    ///
    /// Only each slot's length and flags are read, never its buffer, so a
    /// slot whose buffer index is corrupt costs nothing here and is not
    /// reported; lengths are capped at the buffer size. A packet whose last
    /// fragment has not arrived waits for the next sync, as with `recv`,
    /// unless it never can (a full ring), when it counts as one packet.
    ///
    /// ```
    /// # use netmap_rs::prelude::*;
    /// # fn main() -> Result<(), Error> {
    /// let (a, b) = (NetmapBuilder::new("emu:sink{1").build()?, NetmapBuilder::new("emu:sink}1").build()?);
    /// let mut tx = a.tx_ring(0)?;
    /// for _ in 0..3 {
    ///     tx.send(&[0u8; 60])?;
    /// }
    /// tx.sync()?;
    /// let mut rx = b.rx_ring(0)?;
    /// rx.sync()?;
    /// assert_eq!(rx.discard(2), (2, 120));
    /// assert_eq!(rx.discard(usize::MAX), (1, 60));
    /// # Ok(())
    /// # }
    /// ```
    pub fn discard(&mut self, max: usize) -> (usize, usize) {
        let avail = self.core.complete_space();
        let (buf_size, mut i) = (self.core.buf_size(), self.core.head());
        let (mut packets, mut bytes, mut open) = (0usize, 0usize, false);
        for _ in 0..avail {
            if packets == max {
                break;
            }
            // SAFETY: the `avail` slots from head are in [head, tail), owned
            // by the user; no frame is alive (`&mut self`).
            let (_, len, flags) = unsafe { read_slot(self.core.slot(i)) };
            bytes += (len as usize).min(buf_size);
            open = flags & NS_MOREFRAG != 0;
            packets += usize::from(!open);
            i = self.core.next(i);
        }
        // A chain that can never complete ends the space it was counted in.
        packets += usize::from(open);
        self.core.set_head(i);
        (packets, bytes)
    }

    /// Learns of the packets a poll of the port has already brought in,
    /// without a sync of its own: netmap's `poll` syncs the rings it
    /// reports, as [`Netmap::poll`](crate::Netmap::poll) does on every
    /// backend that moves packets at poll time, so after a poll this saves
    /// the `NIOCRXSYNC` that [`sync`](RxRing::sync) would issue. Returns
    /// what `sync` returns; the slots already read go back to the kernel at
    /// its next poll or sync. Where the poll moved nothing (AF_PACKET moves
    /// packets only at sync), it finds nothing, and `sync` is the call.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use netmap_rs::prelude::*;
    /// # fn main() -> Result<(), Error> {
    /// let (a, b) = (NetmapBuilder::new("emu:refresh{1").build()?, NetmapBuilder::new("emu:refresh}1").build()?);
    /// let mut tx = a.tx_ring(0)?;
    /// tx.send(&[0u8; 60])?;
    /// tx.sync()?;
    /// b.poll(Some(Duration::from_secs(1)))?;
    /// let mut rx = b.rx_ring(0)?;
    /// assert_eq!(rx.refresh()?, 1);
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn refresh(&mut self) -> Result<usize> {
        self.core.publish();
        self.learn()
    }

    /// Returns the slots already read to the kernel (`NIOCRXSYNC` on the
    /// port) and learns of newly received packets; returns how many slots
    /// now hold unread, complete packets (the fragments of a multi-slot
    /// packet whose last slot has not arrived yet are not counted), so a
    /// loop that syncs until this is 0 always ends.
    ///
    /// Errors: [`Error::RingCorrupt`](crate::Error::RingCorrupt) once after `recv`/`iter` skipped
    /// slots whose buffer lay outside the region (another process wrote
    /// them); the sync itself has happened, and the ring goes on.
    #[inline]
    pub fn sync(&mut self) -> Result<usize> {
        self.core.publish();
        self.port.sync(SyncDir::Rx)?;
        self.learn()
    }

    /// What `sync` and `refresh` do once the kernel has moved the ring: the
    /// new tail (checked), the corrupt slots skipped since the last report,
    /// and the slots of complete packets waiting.
    #[inline]
    fn learn(&mut self) -> Result<usize> {
        self.core.reload_tail()?;
        self.scratch.take_skipped(self.core.id())?;
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
///
/// `RxIter` is neither `Send` nor `Sync`: it borrows its [`RxRing`] mutably,
/// and the frames it yields borrow the ring's buffers.
pub struct RxIter<'r> {
    /// A copy of the ring's state the loop works on (so that its fields
    /// live in registers).
    local: RingCore,
    /// The next slot, and the tail's: the loop walks slot pointers, with no
    /// index arithmetic per packet; the head goes back to `core` as an index
    /// when the iterator drops.
    cur: *mut netmap_slot,
    end: *mut netmap_slot,
    core: &'r mut RingCore,
    scratch: &'r mut Scratch,
    key: FrameKey,
    _frames: PhantomData<Frame<'r>>,
}

impl fmt::Debug for RxIter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RxIter")
            .field("pending", &self.pending())
            .finish()
    }
}

impl RxIter<'_> {
    /// Slots from the next one to the tail.
    fn pending(&self) -> u32 {
        ffi::nm_space(
            self.local.slot_index(self.cur),
            self.local.tail(),
            self.local.num_slots(),
        )
    }
}

impl<'r> Iterator for RxIter<'r> {
    type Item = Frame<'r>;

    #[inline]
    fn next(&mut self) -> Option<Frame<'r>> {
        let s = self.cur;
        if s == self.end {
            return None;
        }
        // Frames of one batch cover disjoint slots (the cursor only moves
        // forward, and the shared head is not published until the ring is
        // borrowed mutably again, after every frame of 'r is gone), and
        // multi-slot frames are assembled into disjoint parts of the scratch.
        // SAFETY: `s` is in [head, tail), owned by the user.
        if let Some((idx, buf, len)) = unsafe { self.local.fast_packet(s) } {
            let next = s.wrapping_add(1);
            self.cur = if next == self.local.slots_end() {
                self.local.slot(0)
            } else {
                next
            };
            // SAFETY: `fast_packet` found `len` bytes at `buf` inside the
            // mapping, in a slot that stays the user's for 'r (see above).
            let data = unsafe { std::slice::from_raw_parts(buf, len) };
            return Some(Frame::new(
                data,
                &self.local,
                self.local.slot_index(s),
                1,
                self.key,
                idx,
            ));
        }
        // The cold path, as in `next_frame`, on a copy.
        let mut core = self.local.clone();
        core.set_head(self.local.slot_index(s));
        // SAFETY: as above; the cold path's frames follow the same rules.
        let (packet, head) = unsafe { next_slow(core, self.scratch) };
        self.cur = self.local.slot(head);
        let packet = packet?;
        Some(Frame::new(
            packet.data,
            &self.local,
            packet.first,
            packet.nslots,
            self.key,
            packet.buf_idx,
        ))
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.pending() as usize))
    }
}

impl Drop for RxIter<'_> {
    #[inline]
    fn drop(&mut self) {
        self.core.set_head(self.local.slot_index(self.cur));
    }
}

/// The receive path's cold state, which the port keeps for each RX ring and
/// lends to its handle: the count of corrupt slots skipped and not yet
/// reported (so a count left by one handle is reported by the next), and
/// assembly room for multi-slot packets. The packet starting at slot `s`
/// goes at `s * slot_cap`, so packets of one batch never overlap. The room
/// is allocated when a ring first meets such a packet, without being filled
/// (only bytes copied in are ever read):
/// `(num_slots + NETMAP_MAX_FRAGS) * slot_cap` bytes at most, with
/// `num_slots * buf_size` bounded by the region's size (checked at open).
#[derive(Default)]
pub(crate) struct Scratch {
    pub(super) mem: Vec<u8>,
    skipped: u32,
}

impl Scratch {
    /// Counts a corrupt packet that was skipped.
    fn skip(&mut self) {
        self.skipped = self.skipped.saturating_add(1);
    }

    /// The error for the corrupt packets of ring `ring` skipped since the
    /// last call, if any.
    #[inline]
    fn take_skipped(&mut self, ring: u16) -> Result<()> {
        if self.skipped == 0 {
            return Ok(());
        }
        Err(self.report(ring))
    }

    #[cold]
    fn report(&mut self, ring: u16) -> Error {
        let n = std::mem::take(&mut self.skipped);
        Error::RingCorrupt {
            ring,
            what: format!(
                "{n} received packet(s) held a buffer index or offset outside the mapped region and \
                 were skipped"
            ),
        }
    }
}

/// A packet found off the fast path: its bytes, its first slot and how
/// many slots it spans. Small, so that [`next_frame`] builds the [`Frame`]
/// of either path from scalars in registers.
struct Packet<'f> {
    data: &'f [u8],
    first: u32,
    nslots: u16,
    /// The one slot's buffer (0 for a multi-slot packet).
    buf_idx: u32,
}

/// What [`next_multi`] found at the head of the ring.
enum Multi<'f> {
    /// A whole packet, and the head past it.
    Frame(Packet<'f>, u32),
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
unsafe fn next_frame<'f>(core: &mut RingCore, scratch: &mut Scratch, key: FrameKey) -> Option<Frame<'f>> {
    let i = core.head();
    if i == core.tail() {
        return None;
    }
    // SAFETY: slot `i` = head is in [head, tail), owned by the user.
    if let Some((idx, buf, len)) = unsafe { core.fast_packet(core.slot(i)) } {
        core.set_head(core.next(i));
        // SAFETY: `fast_packet` found `len` bytes at `buf` inside the
        // mapping; the slot is user-owned and stays so until the shared
        // head is published, which needs `&mut` on the ring, after the frame
        // ('f) is gone.
        let data = unsafe { std::slice::from_raw_parts(buf, len) };
        return Some(Frame::new(data, core, i, 1, key, idx));
    }
    // Multi-slot packets, corrupt slots (a buffer outside the region, a
    // length past the buffer, which the cold path clamps) and rings with
    // offsets take the cold path, which reads the slot again and checks
    // what it reads. It works on a copy, so that `core` never escapes this
    // function and its fields can stay in registers in the receive loop; it
    // returns the packet's pieces, so that the frame is built here, in
    // registers.
    // The scratch goes over by value too: a pointer into the caller's ring
    // handle passed out of line would let the compiler assume that slot
    // stores may change the handle, and reload its fields per packet.
    let mut lent = std::mem::take(scratch);
    // SAFETY: forwarded contract.
    let (packet, head) = unsafe { next_slow(core.clone(), &mut lent) };
    *scratch = lent;
    core.set_head(head);
    let packet = packet?;
    Some(Frame::new(
        packet.data,
        core,
        packet.first,
        packet.nslots,
        key,
        packet.buf_idx,
    ))
}

/// [`next_frame`] for a multi-slot packet or a corrupt slot at the head:
/// returns the packet, if any, and the new head; counts the corrupt packets
/// it skips in `scratch`.
///
/// # Safety
/// As for [`next_frame`].
#[cold]
#[inline(never)]
unsafe fn next_slow<'f>(mut core: RingCore, scratch: &mut Scratch) -> (Option<Packet<'f>>, u32) {
    loop {
        let i = core.head();
        if i == core.tail() {
            return (None, i);
        }
        let s = core.slot(i);
        // SAFETY: slot `i` = head is in [head, tail), owned by the user.
        let (idx, len, flags) = unsafe { read_slot(s) };
        if flags & NS_MOREFRAG == 0 {
            // SAFETY: slot `i` is user-owned.
            let Some((buf, cap)) = (unsafe { core.data(s, idx) }) else {
                scratch.skip();
                core.set_head(core.next(i));
                continue;
            };
            // SAFETY: as in `next_frame`.
            let data = unsafe { std::slice::from_raw_parts(buf, (len as usize).min(cap)) };
            let packet = Packet {
                data,
                first: i,
                nslots: 1,
                buf_idx: idx,
            };
            return (Some(packet), core.next(i));
        }
        // SAFETY: forwarded contract.
        match unsafe { next_multi(core.clone(), scratch) } {
            Multi::Frame(packet, head) => return (Some(packet), head),
            Multi::Incomplete => return (None, i),
            Multi::Skipped(head) => {
                scratch.skip();
                core.set_head(head);
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
unsafe fn next_multi<'f>(core: RingCore, scratch: &mut Scratch) -> Multi<'f> {
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
    let packet = Packet {
        data,
        first,
        nslots: n as u16,
        buf_idx: 0,
    };
    Multi::Frame(packet, i)
}
