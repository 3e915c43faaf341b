//! The real [`Kernel`]: `/dev/netmap`, driven with `libc`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use crate::backend::sys::{self, Deadline};
use crate::backend::{Kernel, KernelFd, Mapping, MemDomain, SyncDir};
use crate::ffi::{self, nmreq_header};

/// `/dev/netmap` (or another device node with the same interface).
#[derive(Debug, Clone)]
pub(crate) struct DevNetmap {
    path: CString,
}

impl DevNetmap {
    /// The system's device, `/dev/netmap`.
    pub(crate) fn system() -> Self {
        DevNetmap {
            path: CString::new(ffi::NETMAP_DEVICE_NAME).unwrap_or_default(),
        }
    }

    /// Whether this process may open the device for reading and writing,
    /// asked without opening it (an open makes the module set up a
    /// per-descriptor context).
    pub(crate) fn accessible(&self) -> io::Result<()> {
        // SAFETY: `path` is a NUL-terminated string; `access` only reads it.
        if unsafe { libc::access(self.path.as_ptr(), libc::R_OK | libc::W_OK) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

impl Kernel for DevNetmap {
    fn open(&self) -> io::Result<Box<dyn KernelFd>> {
        // SAFETY: `path` is a NUL-terminated string; `open` has no other
        // preconditions.
        let fd = unsafe { libc::open(self.path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by `open` and is owned by no one else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Box::new(DevFd { fd }))
    }

    fn domain(&self) -> MemDomain {
        MemDomain::Kernel
    }
}

/// One open `/dev/netmap` handle.
#[derive(Debug)]
struct DevFd {
    fd: OwnedFd,
}

/// `ioctl` with a request that takes no argument, retried on `EINTR` (a
/// sync has no timeout: repeating it is what the caller wants).
fn ioctl_none(fd: BorrowedFd<'_>, req: u64) -> io::Result<()> {
    sys::retry(|| {
        // SAFETY: `req` is one of netmap's `_IO` requests, which take no
        // argument; `fd` is a live descriptor.
        sys::cvt(unsafe { libc::ioctl(fd.as_raw_fd(), req as _) })
    })
    .map(drop)
}

impl KernelFd for DevFd {
    unsafe fn ctrl(&mut self, hdr: &mut nmreq_header) -> io::Result<()> {
        // SAFETY: NIOCCTRL takes a `struct nmreq_header *`; `hdr` is one,
        // and the caller guarantees its body and options are valid.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), ffi::NIOCCTRL as _, hdr as *mut nmreq_header) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn mmap(&mut self, len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh shared mapping of the netmap region at a
        // kernel-chosen address; it aliases no Rust object.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))?;
        // SAFETY: `base..base+len` was just mapped and is owned by the result.
        Ok(unsafe { Mapping::from_mmap(base, len) })
    }

    fn sync(&self, dir: SyncDir) -> io::Result<()> {
        let req = match dir {
            SyncDir::Tx => ffi::NIOCTXSYNC,
            SyncDir::Rx => ffi::NIOCRXSYNC,
        };
        ioctl_none(self.fd.as_fd(), req)
    }

    fn poll(&self, events: i16, deadline: Deadline) -> io::Result<i16> {
        sys::poll_fd(self.fd.as_fd(), events, deadline)
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
