//! How a port is opened, synced and polled.
//!
//! [`kernel`] does the work of libnetmap's `nmport_open` in Rust over the small
//! traits below: a [`Kernel`] opens a [`Control`] handle, which answers the
//! open-time requests (typed, one method each) and maps the region, and then
//! becomes the [`PortFd`] that syncs and polls the bound rings. [`devnetmap`]
//! is the real kernel behind `/dev/netmap` (the only one that builds an
//! `nmreq_header`), [`emu`] the embedded user-space one and [`afpacket`] Linux
//! `PACKET_MMAP` rings laid out as a netmap port; [`kregister`] holds what
//! the last two share in answering REGISTER. [`libnetmap`] drives
//! `libnetmap.so` instead, when it is present: the library opens the port,
//! so it has a [`PortFd`] only.

use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::ffi::{nmreq_pools_info, nmreq_port_info_get, nmreq_register};
use crate::spec::PortSpec;
use sys::Deadline;

pub(crate) mod adapter;
pub(crate) mod afpacket;
pub(crate) mod afxdp;
pub(crate) mod devnetmap;
pub(crate) mod emu;
pub(crate) mod fork;
pub(crate) mod kernel;
pub(crate) mod kregister;
pub(crate) mod kring;
pub(crate) mod libnetmap;
pub(crate) mod netdev;
pub(crate) mod select;
pub(crate) mod sys;

/// `i - 1`, wrapping at `n` (the kernel's `nm_prev`; `nm_next` is in `ffi`).
pub(crate) fn nm_prev(i: u32, n: u32) -> u32 {
    if i == 0 {
        n - 1
    } else {
        i - 1
    }
}

/// Whether ring index `x` lies in `[lo, hi]`, an interval that may wrap at
/// the ring's end.
pub(crate) fn within(x: u32, lo: u32, hi: u32) -> bool {
    if lo <= hi {
        lo <= x && x <= hi
    } else {
        x >= lo || x <= hi
    }
}

/// An `io::Error` for the errno `code`, as a kernel would return it.
pub(crate) fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// Locks `m`. The backends' critical sections leave their state consistent
/// at every step that could panic (none should), so a poisoned lock is
/// still usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Which rings a sync call touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyncDir {
    /// `NIOCTXSYNC`: every TX ring bound to the fd.
    Tx,
    /// `NIOCRXSYNC`: every RX ring bound to the fd.
    Rx,
}

/// Which memory a region lives in; buffer indices mean the same thing in two
/// ports only when both the domain and the `nr_mem_id` agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum MemDomain {
    /// The real netmap kernel module (through `/dev/netmap` or libnetmap).
    Kernel,
    /// The embedded kernel of this process.
    Emulated,
    /// The `PACKET_MMAP` rings of one AF_PACKET port: every such port has a
    /// memory id of its own, so buffers never move between two of them.
    AfPacket,
    /// The UMEM of one AF_XDP port: a memory id of its own, as AF_PACKET's.
    AfXdp,
    /// The netmap implementation inside a libnetmap that brings its own
    /// `ioctl` (one over a user-space netmap, say): its memory is neither
    /// the kernel's nor this process's embedded kernel's. The number tells
    /// loaded libraries apart.
    Library(u32),
}

/// A netmap control device: `open("/dev/netmap")` and friends.
pub(crate) trait Kernel: Send + Sync + fmt::Debug {
    /// Opens a fresh handle, as `open("/dev/netmap", O_RDWR)` does.
    fn open(&self) -> io::Result<Box<dyn Control>>;

    /// The memory domain that regions of this kernel belong to.
    fn domain(&self) -> MemDomain;
}

/// An open handle on a netmap control device, at open time: the
/// `NIOCCTRL` requests, typed, and the mapping of the region.
///
/// Each request is a method that takes the port as a [`PortSpec`] and the
/// request's body as the kernel's `nmreq_*` struct, which holds the reply
/// when the call returns `Ok`; an `Err` carries the errno the kernel would
/// answer. Only `/dev/netmap` flattens a request into an `nmreq_header`;
/// the user-space kernels read the typed fields. The VALE switch requests,
/// which no user-space kernel serves yet, are not here: `crate::vale`
/// issues them on `/dev/netmap` directly (`devnetmap::ValeCtl`). Requests
/// still to come that a user-space kernel can serve (port header get and
/// set) are methods of the same shape.
///
/// Dropping the handle closes it, which unbinds its rings.
pub(crate) trait Control: Send + fmt::Debug {
    /// `NIOCCTRL(NETMAP_REQ_REGISTER)` of the port `spec` names, in
    /// [`NETMAP_API`](crate::ffi::NETMAP_API): binds the rings that `req`
    /// selects (`nr_mode`, `nr_ringid`, `nr_flags`) with the shape it asks
    /// for. The name comes from `spec`, whose `nr_name` `kernel::open` has
    /// checked to fit the kernel's; its ring selection and flags are already
    /// in `req`. The spec's options (`@offset`, `@extmem`) have no field in
    /// `req`: a backend that cannot ask for them answers `EOPNOTSUPP`.
    fn register(&mut self, spec: &PortSpec, req: &mut nmreq_register) -> io::Result<()>;

    /// `NIOCCTRL(NETMAP_REQ_PORT_INFO_GET)`: the shape and memory of the
    /// port `spec` names, asked in API version `version` (the probe of
    /// `kernel::api_version` asks in others, and a kernel that speaks
    /// another answers `EINVAL`).
    fn port_info(&mut self, spec: &PortSpec, version: u16, info: &mut nmreq_port_info_get) -> io::Result<()>;

    /// `NIOCCTRL(NETMAP_REQ_POOLS_INFO_GET)` in [`NETMAP_API`](crate::ffi::NETMAP_API):
    /// the layout of the memory region of the port `spec` names (in the
    /// allocator `info.nr_mem_id` names, 0 for the port's own), its three
    /// pools' offsets, object counts and sizes.
    fn pools_info(&mut self, spec: &PortSpec, info: &mut nmreq_pools_info) -> io::Result<()>;

    /// Maps `len` bytes of the handle's memory region, as
    /// `mmap(NULL, len, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0)` does.
    fn mmap(&mut self, len: usize) -> io::Result<Mapping>;

    /// The handle, from now on used only to sync and poll its rings.
    fn into_port(self: Box<Self>) -> Box<dyn PortFd>;
}

/// An open handle at data time: the syncs and polls of the rings it bound.
///
/// Dropping it closes the handle, which unbinds its rings.
pub(crate) trait PortFd: Send + fmt::Debug {
    /// `ioctl(fd, NIOCTXSYNC)` or `ioctl(fd, NIOCRXSYNC)`.
    fn sync(&self, dir: SyncDir) -> io::Result<()>;

    /// Waits, as `poll(2)` on a netmap fd does, until a bound RX ring has
    /// packets (`POLLIN`) or a bound TX ring has room (`POLLOUT`); returns the
    /// `revents`, or 0 once `deadline` passes. Like the kernel's handler, it
    /// leaves the rings synced. A signal does not end the wait early, nor
    /// restart its timeout: the wait goes on until the same deadline.
    fn poll(&self, events: i16, deadline: Deadline) -> io::Result<i16>;

    /// The file descriptor that an event loop waits on.
    fn as_fd(&self) -> BorrowedFd<'_>;

    /// Copies one packet into a TX ring of the backend's choosing, without a
    /// sync, if the backend has its own way to (libnetmap's `nmport_inject`):
    /// `Some(true)` when queued, `Some(false)` when no ring had room. `None`
    /// (the default): the caller copies it through a ring handle.
    fn inject(&self, _packet: &[u8]) -> Option<bool> {
        None
    }

    /// The longest packet the backend can send, if it is shorter than what
    /// the rings' buffers hold (AF_PACKET's: one frame, and the interface's
    /// MTU). `None` (the default): the buffers are the limit.
    fn max_packet(&self) -> Option<usize> {
        None
    }

    /// How an AF_XDP port moves packets; `None` (the default) on every
    /// other backend.
    fn xdp_mode(&self) -> Option<crate::XdpMode> {
        None
    }
}

/// Who keeps a mapping's memory mapped.
enum MapOwner {
    /// The `Mapping` itself: unmapped when it drops.
    Owned { _map: sys::OwnedMap },
    /// A backend (the embedded kernel's region, an AF_PACKET port's, a
    /// libnetmap descriptor) that keeps the memory alive while this lives.
    Shared { _owner: Arc<dyn Send + Sync> },
}

/// The port's view of a mapped memory region: `len` bytes at `base`, owned
/// by an [`OwnedMap`](sys::OwnedMap) of its own or kept alive by a backend.
pub(crate) struct Mapping {
    base: NonNull<u8>,
    len: usize,
    _owner: MapOwner,
}

impl fmt::Debug for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapping")
            .field("base", &self.base)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

// SAFETY: a `Mapping` is a plain address range; the memory it names is shared
// with the kernel (or the embedded kernel) and is only accessed through the
// ring code's atomics and slot ownership rules, never through references
// that assume exclusivity, so moving the range to another thread is sound.
unsafe impl Send for Mapping {}
// SAFETY: `&Mapping` only gives the range's address and length (immutable
// after construction); the owner behind it is only ever dropped, with the
// last `Arc` of the mapping (extra buffers share it across threads).
unsafe impl Sync for Mapping {}

impl Mapping {
    /// The whole of `map`, which the result owns (and unmaps on drop).
    pub(crate) fn owned(map: sys::OwnedMap) -> Self {
        Mapping {
            base: map.base(),
            len: map.len(),
            _owner: MapOwner::Owned { _map: map },
        }
    }

    /// A range inside memory that `owner` keeps alive.
    ///
    /// # Safety
    /// `base..base+len` must stay valid and writable while `owner` lives.
    pub(crate) unsafe fn shared(base: NonNull<u8>, len: usize, owner: Arc<dyn Send + Sync>) -> Self {
        Mapping {
            base,
            len,
            _owner: MapOwner::Shared { _owner: owner },
        }
    }

    /// The first `len` bytes of a region of `total` bytes at `base`, as a
    /// user-space kernel's `mmap` of its handle answers: `EINVAL` for 0 or
    /// more than the region.
    ///
    /// # Safety
    /// `base..base+total` must stay valid and writable while `owner` lives.
    pub(crate) unsafe fn prefix(
        base: NonNull<u8>,
        total: usize,
        len: usize,
        owner: Arc<dyn Send + Sync>,
    ) -> io::Result<Self> {
        if len == 0 || len > total {
            return Err(errno(libc::EINVAL));
        }
        // SAFETY: `len <= total`, so the range lies inside the region the
        // caller vouches for while `owner` lives.
        Ok(unsafe { Mapping::shared(base, len, owner) })
    }

    /// The first byte of the region.
    pub(crate) fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// The region's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}
