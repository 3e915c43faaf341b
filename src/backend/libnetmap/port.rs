//! A port libnetmap opened: its descriptor, external memory and fd.

use std::ffi::c_void;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::ptr::{self, NonNull};
use std::sync::Arc;

use super::call::Call;
use super::load::IoctlReq;
use super::LibNetmap;
use crate::backend::sys::{self, Deadline};
use crate::backend::{PortFd, SyncDir};
use crate::error::{Error, Name, Result};
use crate::ffi::{self, nmctx, nmport_d};

/// A registered libnetmap port: the `nmport_d` and what must outlive it.
///
/// Shared (as an `Arc`) by the port's [`LibFd`] and its
/// [`Mapping`](crate::backend::Mapping), so the region stays mapped until
/// both are gone; then `nmport_close` runs.
pub(super) struct Descriptor {
    d: NonNull<nmport_d>,
    /// The descriptor's context, for capturing what `nmport_close` says.
    ctx: *mut nmctx,
    fd: RawFd,
    name: String,
    /// External memory this crate mapped for the port: fields drop after
    /// `drop` has run `nmport_close`, so it is unmapped after the close.
    _extmem: Option<sys::OwnedMap>,
    lib: Arc<LibNetmap>,
}

impl Descriptor {
    /// Takes charge of `d`, which `drop` closes.
    ///
    /// # Safety
    /// `d` must be a descriptor of `lib`, returned by `nmport_prepare` and
    /// opened by `nmport_open_desc`, that nothing else closes; `ctx` and `fd`
    /// are its context and fd, and `extmem` the memory it was given, if any.
    pub(super) unsafe fn new(
        d: NonNull<nmport_d>,
        ctx: *mut nmctx,
        fd: RawFd,
        name: String,
        extmem: Option<sys::OwnedMap>,
        lib: Arc<LibNetmap>,
    ) -> Descriptor {
        Descriptor {
            d,
            ctx,
            fd,
            name,
            _extmem: extmem,
            lib,
        }
    }
}

// SAFETY: the descriptor is owned by this struct alone; libnetmap state
// behind it is only touched by calls made under `LOCK` (`nmport_close`,
// `nmport_inject`), and the fields read without the lock (`fd`) are constant
// after `nmport_open_desc`. So it may move to, and be shared with, any thread.
unsafe impl Send for Descriptor {}
// SAFETY: as above: every access through `&Descriptor` that reaches libnetmap
// state takes `LOCK` first.
unsafe impl Sync for Descriptor {}

impl fmt::Debug for Descriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Descriptor")
            .field("name", &self.name)
            .field("fd", &self.fd)
            .field("library", &self.lib.path)
            .finish_non_exhaustive()
    }
}

impl Drop for Descriptor {
    fn drop(&mut self) {
        let mut call = Call::begin(&self.lib);
        // SAFETY: `ctx` came from the open descriptor and lives as long as
        // the library, which `self.lib` keeps loaded.
        unsafe { call.capture(self.ctx) };
        // SAFETY: `d` was returned by `nmport_prepare`, opened by
        // `nmport_open_desc` and is closed exactly once, here; no ring handle
        // or mapping of it is left (both hold this `Arc`).
        unsafe { (self.lib.nmport_close)(self.d.as_ptr()) };
    }
}

/// Maps all of `path`, shared and writable, as `nmport_extmem_from_file`
/// would, to be a port's external memory.
pub(super) fn map_extmem(path: &str, port: &str) -> Result<sys::OwnedMap> {
    let what = |e: io::Error| {
        Error::io(
            format!("mapping the extmem file {} for {}", Name(path), Name(port)),
            e,
        )
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(what)?;
    let len = file.metadata().map_err(what)?.len();
    let len = usize::try_from(len).ok().filter(|&l| l > 0).ok_or_else(|| {
        what(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty or oversized file",
        ))
    })?;
    sys::OwnedMap::new(len, libc::MAP_SHARED, Some(file.as_fd())).map_err(what)
}

/// The handle of a libnetmap port: syncs and polls its fd through the
/// library's `ioctl` and `poll`.
#[derive(Debug)]
pub(super) struct LibFd {
    desc: Arc<Descriptor>,
}

impl LibFd {
    /// The handle of the port `desc` holds.
    pub(super) fn new(desc: Arc<Descriptor>) -> LibFd {
        LibFd { desc }
    }

    /// `ioctl(fd, req, arg)` through the library's namespace, retried on
    /// `EINTR`.
    ///
    /// # Safety
    /// `arg` must be what request `req` expects (null for the sync
    /// requests).
    unsafe fn ioctl(&self, req: u64, arg: *mut c_void) -> io::Result<()> {
        sys::retry(|| {
            // SAFETY: `ioctl` is callable while the library is loaded (the
            // descriptor holds it); the fd is open until the descriptor
            // closes; the caller vouches for `arg`.
            sys::cvt(unsafe { (self.desc.lib.ioctl)(self.desc.fd, req as IoctlReq, arg) })
        })
        .map(drop)
    }
}

impl PortFd for LibFd {
    fn sync(&self, dir: SyncDir) -> io::Result<()> {
        let req = match dir {
            SyncDir::Tx => ffi::NIOCTXSYNC,
            SyncDir::Rx => ffi::NIOCRXSYNC,
        };
        // SAFETY: the sync requests take no argument.
        unsafe { self.ioctl(req, ptr::null_mut()) }
    }

    fn poll(&self, events: i16, deadline: Deadline) -> io::Result<i16> {
        // SAFETY: the library's `poll` is `poll(2)` or its own equivalent,
        // callable while the library is loaded (the descriptor holds it);
        // the fd is open until the descriptor closes.
        unsafe { sys::poll_with(self.desc.lib.poll, self.desc.fd, events, deadline) }
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the fd belongs to the descriptor, which `self` keeps open
        // for at least the borrow's lifetime.
        unsafe { BorrowedFd::borrow_raw(self.desc.fd) }
    }

    fn inject(&self, packet: &[u8]) -> Option<bool> {
        let desc = &*self.desc;
        let mut call = Call::begin(&desc.lib);
        // SAFETY: the context lives as long as the library.
        unsafe { call.capture(desc.ctx) };
        // SAFETY: `d` is an open descriptor; `packet` is readable for its
        // length; the library only reads it. The caller (`Netmap::inject`)
        // made sure no TX ring handle is alive, so the library's writes to
        // the TX rings race with nothing of ours.
        let n = unsafe { (desc.lib.nmport_inject)(desc.d.as_ptr(), packet.as_ptr().cast(), packet.len()) };
        Some(n > 0 || packet.is_empty())
    }
}
