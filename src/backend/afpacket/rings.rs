//! The port as the backend sees it: ring views (a ring's header and slots
//! with its socket's frames), each direction's kernel-side state, the
//! sockets.

use std::cell::Cell;
use std::fmt;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use super::group::{MemId, Membership, RingClaim};
use super::layout::Region;
use super::sys::Tpacket2Hdr;
use crate::backend::kring::{SharedRing, Slot};
use crate::ring::RESERVED_BUFS;

/// One ring's header and slots (in the anonymous part of the region) and
/// its frames (in a socket's ring).
///
/// Invariant: `ring` points at a `netmap_ring` followed by `n` slots, and
/// `frames` at `n` frames of `frame` bytes, all inside `_region`, which this
/// value keeps mapped. The shared fields are only touched atomically.
pub(super) struct RingView {
    pub(super) ring: NonNull<u8>,
    pub(super) frames: NonNull<u8>,
    pub(super) n: u32,
    pub(super) frame: usize,
    /// Global buffer index of frame 0.
    pub(super) first: u32,
    pub(super) _region: Arc<Region>,
}

impl fmt::Debug for RingView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingView")
            .field("ring", &self.ring)
            .field("n", &self.n)
            .field("first", &self.first)
            .finish()
    }
}

impl RingView {
    /// The ring header and slots, seen from the kernel side.
    pub(super) fn shared(&self) -> SharedRing<'_> {
        // SAFETY: `ring` points at a ring header (256-aligned) and its `n`
        // slots inside `_region`, which `self` keeps mapped while borrowed
        // (type invariant); the backend keeps slot indices below `n`.
        unsafe { SharedRing::new(self.ring) }
    }

    pub(super) fn frame(&self, k: u32) -> *mut u8 {
        debug_assert!(k < self.n);
        // SAFETY: `k < n` keeps the frame inside the ring's frames (type
        // invariant).
        unsafe { self.frames.as_ptr().add(k as usize * self.frame) }
    }

    /// Frame `k`'s `tp_status`, shared with the kernel.
    pub(super) fn status(&self, k: u32) -> &AtomicU32 {
        // SAFETY: `tp_status` is the first u32 of the frame, which is
        // 16-aligned in the mapping (frames are power-of-two sized from a
        // page boundary); the kernel accesses it with barriers, we atomically.
        unsafe { AtomicU32::from_ptr(self.frame(k).cast()) }
    }

    /// Frame `k`'s header.
    ///
    /// # Safety
    /// Frame `k` must be owned by user space (RX: `TP_STATUS_USER`; TX: not
    /// handed to the kernel), so that the kernel does not write it.
    pub(super) unsafe fn hdr(&self, k: u32) -> Tpacket2Hdr {
        // SAFETY: the caller owns the frame; the header lies at its start.
        unsafe { self.frame(k).cast::<Tpacket2Hdr>().read() }
    }

    /// Stores slot `k` holding its own buffer, frame `k`, with `len`,
    /// `flags` and the packet's offset `ptr`.
    pub(super) fn set_own(&self, k: u32, len: u16, flags: u16, ptr: u64) {
        let buf_idx = self.first + k;
        self.shared().store(
            k,
            Slot {
                buf_idx,
                len,
                flags,
                ptr,
            },
        );
    }

    fn contains(&self, idx: u32) -> Option<u32> {
        idx.checked_sub(self.first).filter(|&k| k < self.n)
    }
}

/// Kernel-side state of an RX ring.
#[derive(Debug)]
pub(super) struct RxState {
    pub(super) v: RingView,
    /// First slot the user still holds (frames before it went back).
    pub(super) hwcur: Cell<u32>,
    /// First frame not yet handed to the user; the user's `tail`.
    pub(super) hwtail: Cell<u32>,
}

/// Kernel-side state of a TX ring.
#[derive(Debug)]
pub(super) struct TxState {
    pub(super) v: RingView,
    /// First slot not yet handed to the kernel.
    pub(super) hwcur: Cell<u32>,
    /// First frame handed to the kernel and not yet completed; `tail` is
    /// the slot before it.
    pub(super) pending: Cell<u32>,
    /// The last frame given `TP_STATUS_SEND_REQUEST`, while the kernel may
    /// not have picked it up yet.
    pub(super) unsent: Cell<Option<u32>>,
}

/// One AF_PACKET socket: one ring pair of the port.
#[derive(Debug)]
pub(super) struct Sock {
    pub(super) fd: OwnedFd,
    pub(super) rx: Option<RxState>,
    pub(super) tx: Option<TxState>,
}

/// A registered handle's port.
///
/// Dropping it closes the sockets, then unmaps the region with its last
/// holder (the ring views and the user's `Mapping` hold it too), then leaves
/// the fanout group's registry entry. A socket whose rings are still mapped
/// lives on until they are unmapped (the mapping holds its file), so the
/// order of the first two does not matter to the kernel.
#[derive(Debug)]
pub(super) struct Port {
    pub(super) socks: Vec<Sock>,
    pub(super) region: Arc<Region>,
    /// The epoll set handed to event loops when there are several sockets.
    pub(super) events: Option<OwnedFd>,
    pub(super) _rings: RingClaim,
    pub(super) _fanout: Option<Membership>,
    pub(super) _mem_id: MemId,
    /// `base + head_len`: frame 0, netmap buffer `RESERVED_BUFS`.
    pub(super) bufs: NonNull<u8>,
    pub(super) nbufs: u32,
    pub(super) frame: usize,
    /// Where TX packets start in their frames.
    pub(super) tx_off: usize,
    /// The longest TX packet: what one frame holds past `tx_off`, and at
    /// most what the interface forwards (`Layout::max_tx_len`).
    pub(super) max_len: usize,
    /// With a virtio header: packets up to this size are copied into the
    /// skb (`hdr_len`), larger ones leave from the ring's pages. `None`:
    /// no virtio header.
    pub(super) linear_max: Option<usize>,
    pub(super) txpoll: bool,
}

impl Port {
    /// Buffer `idx` and the bytes from `off` to its end, or `None` if the
    /// index or offset points outside the frames.
    pub(super) fn buf(&self, idx: u32, off: usize) -> Option<(*mut u8, usize)> {
        // Buffer `RESERVED_BUFS + f` is frame `f`.
        let f = idx.wrapping_sub(RESERVED_BUFS);
        if f >= self.nbufs || off >= self.frame {
            return None;
        }
        // SAFETY: `f < nbufs` puts the whole frame inside the region,
        // and `off < frame` keeps the pointer inside it.
        Some((
            unsafe { self.bufs.as_ptr().add(f as usize * self.frame + off) },
            self.frame - off,
        ))
    }

    /// The TX ring and slot whose own frame is buffer `idx`, if any.
    pub(super) fn tx_owner(&self, idx: u32) -> Option<(&TxState, u32)> {
        self.socks
            .iter()
            .filter_map(|s| s.tx.as_ref())
            .find_map(|t| t.v.contains(idx).map(|k| (t, k)))
    }
}
