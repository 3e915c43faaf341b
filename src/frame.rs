//! `Frame`: a received packet, viewed in place.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicU16, Ordering};

use crate::ffi::{netmap_slot, nm_next, NS_FORWARD};
use crate::port::FrameKey;
use crate::ring::RingCore;

/// A received packet: a read-only view of its bytes in the ring's buffer.
///
/// `Frame` is neither `Send` nor `Sync`: it borrows its ring, which stays on
/// the port's thread, and its bytes are valid only until that ring syncs. To
/// hand a packet to another thread, copy it out (`frame.payload().to_vec()`).
///
/// A frame borrows its [`RxRing`](crate::RxRing), so the ring cannot be
/// synced (which would return the slot to the kernel) while the frame is
/// alive:
///
/// ```compile_fail,E0499
/// # use netmap_rs::prelude::*;
/// # fn main() -> Result<(), Error> {
/// let port = NetmapBuilder::new("emu:cf{1").build()?;
/// let mut rx = port.rx_ring(0)?;
/// let frame = rx.recv();
/// rx.sync()?; // error: `rx` is still borrowed by `frame`
/// drop(frame);
/// # Ok(())
/// # }
/// ```
///
/// A multi-slot packet (`NS_MOREFRAG`) is one frame whose payload holds all
/// its fragments in order.
pub struct Frame<'a> {
    data: &'a [u8],
    /// Where its slots lie in the ring.
    run: SlotRun,
    nslots: u16,
    /// A one-slot frame's buffer, as read and checked when it was
    /// received (0 for more slots).
    buf_idx: u32,
    /// Its region, whether its ring has offsets, whether it spans more
    /// than one slot.
    key: FrameKey,
}

impl<'a> Frame<'a> {
    /// The frame of `nslots` slots from `first` in `core`'s ring, whose
    /// one-slot frames have key `key`; a one-slot frame's buffer is
    /// `buf_idx`.
    #[inline]
    pub(crate) fn new(
        data: &'a [u8],
        core: &RingCore,
        first: u32,
        nslots: u16,
        key: FrameKey,
        buf_idx: u32,
    ) -> Self {
        Frame {
            data,
            run: SlotRun {
                slots: core.slot(0),
                first,
                num_slots: core.num_slots(),
            },
            nslots,
            buf_idx,
            key: key.spanning(nslots),
        }
    }

    /// The packet's bytes.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        self.data
    }

    /// The packet's length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the packet has no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// How many ring slots the packet spans (more than one for a multi-slot
    /// packet).
    #[inline]
    pub fn slots(&self) -> usize {
        self.nslots as usize
    }

    /// Marks the packet for netmap's transparent forwarding (`NS_FORWARD`):
    /// when its slot goes back to the kernel, on an RX ring that asks for it
    /// ([`RxRing::request_forward`](crate::RxRing::request_forward)), the
    /// module passes the packet on instead of dropping it: from a NIC's RX
    /// ring to the host stack at the next RX sync or poll, from the host RX
    /// ring (`^`) to the NIC at the next poll. Unmarked packets are
    /// consumed as usual, so a filter forwards what it lets through and
    /// keeps or drops the rest.
    ///
    /// Returns `false`, marking nothing, for a packet of more than one
    /// slot: netmap passes each slot as a packet of its own, so such a
    /// packet would arrive cut; send it through the host TX ring instead.
    /// On a ring that does not ask for forwarding the mark does nothing.
    ///
    /// ```
    /// # use netmap_rs::prelude::*;
    /// # fn main() -> Result<(), Error> {
    /// let (a, b) = (NetmapBuilder::new("emu:mark{1").build()?, NetmapBuilder::new("emu:mark}1").build()?);
    /// let mut tx = a.tx_ring(0)?;
    /// tx.send(&[0u8; 60])?;
    /// tx.sync()?;
    /// let mut rx = b.rx_ring(0)?;
    /// rx.sync()?;
    /// let frame = rx.recv().unwrap();
    /// assert!(frame.mark_forward());
    /// # Ok(())
    /// # }
    /// ```
    #[must_use = "false means the packet was not marked"]
    pub fn mark_forward(&self) -> bool {
        if self.nslots != 1 {
            return false;
        }
        let s = self.run.slot(0);
        // SAFETY: the frame's slot is the user's while the frame lives, and
        // slot flags are a `u16` at a 2-aligned offset of an 8-aligned slot;
        // the kernel reads them only once the slot is handed back, after the
        // frame is gone. The update is atomic because `&Frame` could be
        // shared, though it never crosses threads (`Frame` is not `Sync`).
        let flags = unsafe { AtomicU16::from_ptr(std::ptr::addr_of_mut!((*s).flags)) };
        flags.fetch_or(NS_FORWARD, Ordering::Relaxed);
        true
    }

    #[inline]
    pub(crate) fn nslots(&self) -> usize {
        self.nslots as usize
    }

    /// A one-slot frame's buffer, as received.
    #[inline]
    pub(crate) fn buf_idx(&self) -> u32 {
        self.buf_idx
    }

    #[inline]
    pub(crate) fn key(&self) -> FrameKey {
        self.key
    }

    /// Where the packet's slots lie in the ring.
    #[inline]
    pub(crate) fn run(&self) -> SlotRun {
        self.run
    }
}

/// Where a frame's slots lie in its ring.
#[derive(Clone, Copy)]
pub(crate) struct SlotRun {
    /// The ring's slot array.
    pub(crate) slots: *mut netmap_slot,
    /// The packet's first slot.
    pub(crate) first: u32,
    pub(crate) num_slots: u32,
}

impl SlotRun {
    /// The `k`th slot of the packet.
    #[inline]
    pub(crate) fn slot(self, k: usize) -> *mut netmap_slot {
        let mut i = self.first;
        for _ in 0..k {
            i = nm_next(i, self.num_slots);
        }
        // SAFETY: `i < num_slots` and `slots` is the ring's slot array of
        // `num_slots` entries.
        unsafe { self.slots.add(i as usize) }
    }
}

impl Deref for Frame<'_> {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        self.data
    }
}

impl AsRef<[u8]> for Frame<'_> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.data
    }
}

impl fmt::Debug for Frame<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("len", &self.data.len())
            .field("slots", &self.nslots)
            .finish()
    }
}
