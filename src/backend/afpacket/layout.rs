//! The region's layout: the `netmap_if` and the ring headers and slots in
//! anonymous memory, followed by each socket's `PACKET_MMAP` rings mapped
//! over the reservation with `MAP_FIXED`.

use std::io;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;

use super::sys::{TpacketReq, TX_BASE, VNET_HDR};
use crate::backend::kregister;
use crate::backend::kring::{RING_HDR, SLOT_SIZE};
use crate::backend::sys::OwnedMap;
use crate::backend::Mapping;
use crate::ffi::nmreq_register;
use std::sync::Arc;

// netmap's layout, as the ring code reads it.
pub(crate) const RING_ALIGN: usize = 256;
const _: () = assert!(RING_HDR.is_multiple_of(RING_ALIGN));

/// Smallest and largest frame (netmap buffer) size.
const MIN_FRAME: usize = 2048;
pub(super) const MAX_FRAME: usize = 65536;
/// Most ring pairs (sockets) per port.
pub(super) const MAX_RINGS: u32 = 64;
/// Slots per ring when the request says 0, if the frames fit in
/// [`DEFAULT_RING_BYTES`].
const DEFAULT_SLOTS: u32 = 1024;
const DEFAULT_RING_BYTES: usize = 16 << 20;
/// Most slots per ring.
const MAX_SLOTS: u32 = 32768;

/// Room a frame needs beyond the MTU: the kernel's header and the gap before
/// `tp_mac` (66 bytes for Ethernet), the Ethernet header, VLAN tags.
const RX_HEADROOM: usize = 128;

/// An Ethernet header, and a VLAN tag: what a frame on the wire may carry
/// beyond the MTU.
const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;

/// The shape of every socket's rings, and where things go in the region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    /// Frame (= netmap buffer) size, a power of two.
    pub(super) frame: usize,
    /// Block size: a page multiple and a frame multiple.
    pub(super) block: usize,
    pub(super) rx_slots: u32,
    pub(super) tx_slots: u32,
    pub(super) has_rx: bool,
    pub(super) has_tx: bool,
    /// The sockets have `PACKET_VNET_HDR`.
    pub(super) vnet: bool,
    /// Ring pairs of the port (bound or not).
    pub(super) pairs: u32,
    /// Ring pairs bound by this handle (one socket each).
    pub(super) socks: u32,
    /// Bytes of the `netmap_if`.
    pub(super) nif_len: usize,
    /// Bytes of anonymous memory before the first socket's frames.
    pub(super) head_len: usize,
    /// Bytes of one socket's mapping (RX frames, then TX frames).
    pub(super) sock_len: usize,
}

impl Layout {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        mtu: u32,
        page: usize,
        req: &nmreq_register,
        has_rx: bool,
        has_tx: bool,
        vnet: bool,
        pairs: u32,
        socks: u32,
    ) -> Self {
        let frame = (mtu as usize)
            .saturating_add(RX_HEADROOM)
            .next_power_of_two()
            .clamp(MIN_FRAME, MAX_FRAME);
        let block = frame.max(page);
        let per_block = (block / frame) as u32;
        let slots = |asked: u32| {
            let n = if asked == 0 {
                DEFAULT_SLOTS.min((DEFAULT_RING_BYTES / frame) as u32)
            } else {
                asked.min(MAX_SLOTS)
            };
            n.max(per_block).max(2).div_ceil(per_block) * per_block
        };
        let (rx_slots, tx_slots) = (slots(req.nr_rx_slots), slots(req.nr_tx_slots));
        let nif_len = kregister::if_len(pairs);
        let rings = (has_rx as usize * ring_bytes(rx_slots) + has_tx as usize * ring_bytes(tx_slots))
            * socks as usize;
        let head_len = (nif_len.next_multiple_of(RING_ALIGN) + rings).next_multiple_of(block);
        let sock_len = (has_rx as usize * rx_slots as usize + has_tx as usize * tx_slots as usize) * frame;
        Layout {
            frame,
            block,
            rx_slots,
            tx_slots,
            has_rx,
            has_tx,
            vnet,
            pairs,
            socks,
            nif_len,
            head_len,
            sock_len,
        }
    }

    pub(super) fn total(&self) -> usize {
        self.head_len + self.socks as usize * self.sock_len
    }

    /// Where a TX slot's packet starts in its frame: after the kernel's
    /// header, and the virtio header when there is one.
    pub(super) fn tx_off(&self) -> usize {
        TX_BASE + if self.vnet { VNET_HDR } else { 0 }
    }

    /// The longest packet a TX frame may carry to an interface of MTU
    /// `mtu`: what the frame holds past [`tx_off`](Layout::tx_off), and no
    /// more than the MTU, an Ethernet header and one VLAN tag, the most the
    /// kernel hands on (a veth drops longer frames without a word, as most
    /// NICs do).
    pub(super) fn max_tx_len(&self, mtu: u32) -> usize {
        (self.frame - self.tx_off()).min((mtu as usize).saturating_add(ETH_HLEN + VLAN_HLEN))
    }

    pub(super) fn req(&self, slots: u32) -> TpacketReq {
        TpacketReq {
            tp_block_size: self.block as u32,
            tp_block_nr: (slots as usize * self.frame / self.block) as u32,
            tp_frame_size: self.frame as u32,
            tp_frame_nr: slots,
        }
    }

    /// Region offset of socket `b`'s RX ring header, then its TX ring header.
    pub(super) fn ring_offsets(&self, b: u32) -> (usize, usize) {
        let rx = if self.has_rx { ring_bytes(self.rx_slots) } else { 0 };
        let tx = if self.has_tx { ring_bytes(self.tx_slots) } else { 0 };
        let start = self.nif_len.next_multiple_of(RING_ALIGN) + b as usize * (rx + tx);
        (start, start + rx)
    }

    /// Region offset of socket `b`'s RX frames, then its TX frames (which
    /// follow the RX frames, if any, inside the socket's mapping).
    pub(super) fn frame_offsets(&self, b: u32) -> (usize, usize) {
        let rx = self.sock_offset(b);
        let tx = rx
            + if self.has_rx {
                self.rx_slots as usize * self.frame
            } else {
                0
            };
        (rx, tx)
    }

    /// Region offset of socket `b`'s mapping.
    pub(super) fn sock_offset(&self, b: u32) -> usize {
        self.head_len + b as usize * self.sock_len
    }

    /// Global buffer index of frame 0 of socket `b`'s RX ring, then TX ring.
    pub(super) fn first_bufs(&self, b: u32) -> (u32, u32) {
        let rx = (b as usize * self.sock_len / self.frame) as u32;
        let tx = rx + if self.has_rx { self.rx_slots } else { 0 };
        (rx, tx)
    }
}

pub(crate) fn ring_bytes(slots: u32) -> usize {
    (RING_HDR + slots as usize * SLOT_SIZE).next_multiple_of(RING_ALIGN)
}

/// The port's address range; unmapped (all of it, the sockets' rings
/// included) when the last owner lets go: no ring pointer outlives the region
/// (the handle and the `Mapping` hold it in an `Arc`).
#[derive(Debug)]
pub(crate) struct Region {
    /// `map`'s first byte.
    pub(crate) base: NonNull<u8>,
    /// `map`'s length.
    pub(crate) len: usize,
    map: OwnedMap,
}

// SAFETY: a `Region` is an address range that it alone unmaps (its `map`);
// the memory is only read and written through raw pointers and atomics by
// the handle that owns the port (and the user of its rings, who follows
// netmap's ownership rules), never through references, so sending or
// sharing the range is sound.
unsafe impl Send for Region {}
// SAFETY: as above; `&Region` gives access to nothing but the two numbers
// and the mapping of socket rings into parts nothing uses yet.
unsafe impl Sync for Region {}

impl Region {
    /// Reserves `len` bytes of zeroed, private, readable and writable memory.
    pub(crate) fn reserve(len: usize) -> io::Result<Region> {
        let map = OwnedMap::new(len, libc::MAP_PRIVATE, None)?;
        Ok(Region {
            base: map.base(),
            len,
            map,
        })
    }

    pub(crate) fn at(&self, off: usize) -> *mut u8 {
        debug_assert!(off <= self.len);
        // SAFETY: callers pass offsets within the region (from `Layout`, whose
        // total is the region's length).
        unsafe { self.base.as_ptr().add(off) }
    }

    /// The address `off` bytes into the region, which is never null.
    pub(crate) fn ptr(&self, off: usize) -> NonNull<u8> {
        NonNull::new(self.at(off)).unwrap_or(self.base)
    }

    /// The first `len` bytes of `region`, as the user's `Mapping`, which
    /// keeps the region mapped (`EINVAL` for 0 or more than the region).
    pub(crate) fn mapping(region: &Arc<Region>, len: usize) -> io::Result<Mapping> {
        let owner: Arc<dyn Send + Sync> = Arc::clone(region) as _;
        // SAFETY: the region stays mapped while `owner`, an `Arc` of it,
        // lives.
        unsafe { Mapping::prefix(region.base, region.len, len, owner) }
    }

    /// Maps `fd`'s PACKET_MMAP rings (`len` bytes) over `[off, off + len)`.
    pub(super) fn map_socket(&self, off: usize, len: usize, fd: BorrowedFd<'_>) -> io::Result<()> {
        // SAFETY: a socket's part of the reservation is mapped once, by
        // `register`, before anything (ring views, the user's `Mapping`)
        // points into it.
        unsafe { self.map.map_over(off, len, fd) }
    }
}
