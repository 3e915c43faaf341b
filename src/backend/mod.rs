//! How a port is opened, synced and polled.
//!
//! [`kernel`] does the work of libnetmap's `nmport_open` in Rust over the small
//! [`Kernel`]/[`KernelFd`] traits below; [`devnetmap`] is the real kernel behind
//! `/dev/netmap`, [`emu`] the embedded user-space one and [`afpacket`] Linux
//! `PACKET_MMAP` rings laid out as a netmap port. [`libnetmap`] drives
//! `libnetmap.so` instead, when it is present.

use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::ffi::nmreq_header;
use sys::Deadline;

pub(crate) mod afpacket;
pub(crate) mod devnetmap;
pub(crate) mod emu;
pub(crate) mod fork;
pub(crate) mod kernel;
pub(crate) mod kring;
pub(crate) mod libnetmap;
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

/// Reads the request body of type `T` that `hdr.nr_body` points at, lets
/// `f` answer it, and writes the answer back, as the kernel's copy-in and
/// copy-out of a request do.
///
/// # Safety
/// `hdr.nr_body` must point at a live, writable `T` (the contract of
/// [`KernelFd::ctrl`] for the request type); it need not be aligned.
pub(crate) unsafe fn update_body<T>(
    hdr: &nmreq_header,
    f: impl FnOnce(&mut T) -> io::Result<()>,
) -> io::Result<()> {
    let body = hdr.nr_body as usize as *mut T;
    // SAFETY: the caller's contract: `body` points at a live, writable `T`.
    let mut req = unsafe { body.read_unaligned() };
    f(&mut req)?;
    // SAFETY: as above.
    unsafe { body.write_unaligned(req) };
    Ok(())
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
    /// The netmap implementation inside a libnetmap that brings its own
    /// `ioctl` (one over a user-space netmap, say): its memory is neither
    /// the kernel's nor this process's embedded kernel's. The number tells
    /// loaded libraries apart.
    Library(u32),
}

/// A netmap control device: `open("/dev/netmap")` and friends.
pub(crate) trait Kernel: Send + Sync + fmt::Debug {
    /// Opens a fresh handle, as `open("/dev/netmap", O_RDWR)` does.
    fn open(&self) -> io::Result<Box<dyn KernelFd>>;

    /// The memory domain that regions of this kernel belong to.
    fn domain(&self) -> MemDomain;
}

/// One open handle on a netmap control device.
///
/// Dropping it closes the handle, which unbinds its rings.
pub(crate) trait KernelFd: Send + fmt::Debug {
    /// `ioctl(fd, NIOCCTRL, hdr)`.
    ///
    /// # Safety
    /// `hdr.nr_body` must point to a live, writable body of the type that
    /// `hdr.nr_reqtype` names, and `hdr.nr_options` must be 0 or the head of a
    /// chain of live, writable `nmreq_option`s, each of the type its
    /// `nro_reqtype` names.
    unsafe fn ctrl(&mut self, hdr: &mut nmreq_header) -> io::Result<()>;

    /// Maps `len` bytes of the handle's memory region, as
    /// `mmap(NULL, len, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0)` does.
    fn mmap(&mut self, len: usize) -> io::Result<Mapping>;

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

impl Mapping {
    /// Takes ownership of a range returned by `mmap`; it is unmapped on drop.
    ///
    /// # Safety
    /// `base..base+len` must be a live mapping made by `mmap` that nothing
    /// else will unmap.
    pub(crate) unsafe fn from_mmap(base: NonNull<u8>, len: usize) -> Self {
        // SAFETY: the caller's contract is `from_raw`'s.
        let map = unsafe { sys::OwnedMap::from_raw(base, len) };
        Mapping {
            base,
            len,
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

    /// The first byte of the region.
    pub(crate) fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// The region's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}
