//! The real [`Kernel`]: `/dev/netmap`, driven with `libc`. The typed
//! requests of [`Control`] become `nmreq_header`s for `NIOCCTRL` here, and
//! only here.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use crate::backend::sys::{self, Deadline, OwnedMap};
use crate::backend::{errno, kregister, Control, Kernel, Mapping, MemDomain, PortFd, SyncDir};
use crate::ffi::{
    self, nmreq_header, nmreq_pools_info, nmreq_port_hdr, nmreq_port_info_get, nmreq_register,
    nmreq_vale_attach, nmreq_vale_detach, nmreq_vale_list, nmreq_vale_newif, nmreq_vale_polling, NETMAP_API,
    NETMAP_REQ_IFNAMSIZ, NETMAP_REQ_POOLS_INFO_GET, NETMAP_REQ_PORT_HDR_GET, NETMAP_REQ_PORT_HDR_SET,
    NETMAP_REQ_PORT_INFO_GET, NETMAP_REQ_REGISTER, NETMAP_REQ_VALE_ATTACH, NETMAP_REQ_VALE_DELIF,
    NETMAP_REQ_VALE_DETACH, NETMAP_REQ_VALE_LIST, NETMAP_REQ_VALE_NEWIF, NETMAP_REQ_VALE_POLLING_DISABLE,
    NETMAP_REQ_VALE_POLLING_ENABLE,
};
use crate::spec::PortSpec;

/// `/dev/netmap` (or another device node with the same interface).
#[derive(Debug, Clone)]
pub(crate) struct DevNetmap {
    path: CString,
}

/// The major number of Linux's misc devices, which netmap registers as.
#[cfg(target_os = "linux")]
const MISC_MAJOR: libc::c_uint = 10;

impl DevNetmap {
    /// The system's device, `/dev/netmap`.
    pub(crate) fn system() -> Self {
        Self::at(ffi::NETMAP_DEVICE_NAME)
    }

    /// The device node at `path`.
    fn at(path: &str) -> Self {
        DevNetmap {
            path: CString::new(path).unwrap_or_default(),
        }
    }

    /// Whether this looks like netmap's device and this process may open it
    /// for reading and writing, asked without opening it (an open makes the
    /// module set up a per-descriptor context).
    ///
    /// The node must be a character device (any other file there, which
    /// would take every port, is refused so that a fallback can be taken);
    /// on Linux also a misc device (major 10), as netmap's always is, so
    /// that `/dev/null` (1:3) or another driver's node is refused too. A
    /// misc device that is not netmap's passes here and fails at register,
    /// where `kernel::open` says it does not answer netmap's requests.
    pub(crate) fn accessible(&self) -> io::Result<()> {
        let meta = std::fs::metadata(OsStr::from_bytes(self.path.as_bytes()))?;
        if !meta.file_type().is_char_device() {
            return Err(io::Error::other("not a character device (is it netmap's?)"));
        }
        #[cfg(target_os = "linux")]
        {
            let (major, minor) = (libc::major(meta.rdev()), libc::minor(meta.rdev()));
            if major != MISC_MAJOR {
                return Err(io::Error::other(format!(
                    "character device {major}:{minor} is not netmap's (a misc device, \
                     {MISC_MAJOR}:*, on Linux)"
                )));
            }
        }
        // SAFETY: `path` is a NUL-terminated string; `access` only reads it.
        if unsafe { libc::access(self.path.as_ptr(), libc::R_OK | libc::W_OK) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

impl DevNetmap {
    /// A fresh descriptor of the device, bound to no port.
    fn open_fd(&self) -> io::Result<DevFd> {
        // SAFETY: `path` is a NUL-terminated string; `open` has no other
        // preconditions.
        let fd = unsafe { libc::open(self.path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by `open` and is owned by no one else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(DevFd { fd })
    }
}

impl Kernel for DevNetmap {
    fn open(&self) -> io::Result<Box<dyn Control>> {
        Ok(Box::new(self.open_fd()?))
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

/// A request header of type `reqtype`, in API `version`, for the port named
/// `name`, whose body is at `body`: `EINVAL` for a name the kernel cannot be
/// given (`kernel::open` refuses those before any backend sees them).
fn header(name: &str, version: u16, reqtype: u16, body: u64) -> io::Result<nmreq_header> {
    let name = name.as_bytes();
    if name.len() >= NETMAP_REQ_IFNAMSIZ || name.contains(&0) {
        return Err(errno(libc::EINVAL));
    }
    let mut hdr = nmreq_header {
        nr_version: version,
        nr_reqtype: reqtype,
        nr_body: body,
        ..Default::default()
    };
    for (d, s) in hdr.nr_name.iter_mut().zip(name) {
        *d = *s as _;
    }
    Ok(hdr)
}

impl DevFd {
    /// `ioctl(fd, NIOCCTRL, hdr)`.
    ///
    /// # Safety
    /// `hdr.nr_body` must point to a live, writable body of the type that
    /// `hdr.nr_reqtype` names, and `hdr.nr_options` must be 0.
    unsafe fn ctrl(&self, hdr: &mut nmreq_header) -> io::Result<()> {
        // SAFETY: NIOCCTRL takes a `struct nmreq_header *`; `hdr` is one,
        // and the caller guarantees its body and that it has no options.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), ffi::NIOCCTRL as _, hdr as *mut nmreq_header) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Control for DevFd {
    fn register(&mut self, spec: &PortSpec, req: &mut nmreq_register) -> io::Result<()> {
        // No option chain is built yet: a request with options is not sent.
        kregister::refuse_options(spec)?;
        let body = std::ptr::from_mut(req) as usize as u64;
        let mut hdr = header(&spec.nr_name, NETMAP_API, NETMAP_REQ_REGISTER, body)?;
        // SAFETY: `nr_body` points at `req`, a live, writable
        // `nmreq_register` (the body of NETMAP_REQ_REGISTER); no options.
        unsafe { self.ctrl(&mut hdr) }
    }

    fn port_info(&mut self, spec: &PortSpec, version: u16, info: &mut nmreq_port_info_get) -> io::Result<()> {
        let body = std::ptr::from_mut(info) as usize as u64;
        let mut hdr = header(&spec.nr_name, version, NETMAP_REQ_PORT_INFO_GET, body)?;
        // SAFETY: `nr_body` points at `info`, a live, writable
        // `nmreq_port_info_get` (the body of PORT_INFO_GET); no options.
        unsafe { self.ctrl(&mut hdr) }
    }

    fn pools_info(&mut self, spec: &PortSpec, info: &mut nmreq_pools_info) -> io::Result<()> {
        let body = std::ptr::from_mut(info) as usize as u64;
        let mut hdr = header(&spec.nr_name, NETMAP_API, NETMAP_REQ_POOLS_INFO_GET, body)?;
        // SAFETY: `nr_body` points at `info`, a live, writable
        // `nmreq_pools_info` (the body of POOLS_INFO_GET); no options.
        unsafe { self.ctrl(&mut hdr) }
    }

    fn mmap(&mut self, len: usize) -> io::Result<Mapping> {
        let map = OwnedMap::new(len, libc::MAP_SHARED, Some(self.fd.as_fd()))?;
        Ok(Mapping::owned(map))
    }

    fn into_port(self: Box<Self>) -> Box<dyn PortFd> {
        self
    }
}

impl PortFd for DevFd {
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

// ---------------------------------------------------------------------------
// VALE switch control
// ---------------------------------------------------------------------------

/// The body of one VALE control request, typed; the kernel writes its reply
/// into it. `DelIf` has none: the kernel refuses a body for it.
#[derive(Debug)]
pub(crate) enum ValeBody<'a> {
    /// `NETMAP_REQ_VALE_ATTACH`.
    Attach(&'a mut nmreq_vale_attach),
    /// `NETMAP_REQ_VALE_DETACH`.
    Detach(&'a mut nmreq_vale_detach),
    /// `NETMAP_REQ_VALE_LIST`.
    List(&'a mut nmreq_vale_list),
    /// `NETMAP_REQ_VALE_NEWIF`.
    NewIf(&'a mut nmreq_vale_newif),
    /// `NETMAP_REQ_VALE_DELIF`.
    DelIf,
    /// `NETMAP_REQ_VALE_POLLING_ENABLE`.
    PollingEnable(&'a mut nmreq_vale_polling),
    /// `NETMAP_REQ_VALE_POLLING_DISABLE`.
    PollingDisable(&'a mut nmreq_vale_polling),
    /// `NETMAP_REQ_PORT_HDR_SET`.
    HdrSet(&'a mut nmreq_port_hdr),
    /// `NETMAP_REQ_PORT_HDR_GET`.
    HdrGet(&'a mut nmreq_port_hdr),
}

impl ValeBody<'_> {
    /// The request's `nr_reqtype` and the address of its body (0 for none).
    fn reqtype_and_body(&mut self) -> (u16, u64) {
        fn at<T>(body: &mut T) -> u64 {
            std::ptr::from_mut(body) as usize as u64
        }
        match self {
            ValeBody::Attach(b) => (NETMAP_REQ_VALE_ATTACH, at(*b)),
            ValeBody::Detach(b) => (NETMAP_REQ_VALE_DETACH, at(*b)),
            ValeBody::List(b) => (NETMAP_REQ_VALE_LIST, at(*b)),
            ValeBody::NewIf(b) => (NETMAP_REQ_VALE_NEWIF, at(*b)),
            ValeBody::DelIf => (NETMAP_REQ_VALE_DELIF, 0),
            ValeBody::PollingEnable(b) => (NETMAP_REQ_VALE_POLLING_ENABLE, at(*b)),
            ValeBody::PollingDisable(b) => (NETMAP_REQ_VALE_POLLING_DISABLE, at(*b)),
            ValeBody::HdrSet(b) => (NETMAP_REQ_PORT_HDR_SET, at(*b)),
            ValeBody::HdrGet(b) => (NETMAP_REQ_PORT_HDR_GET, at(*b)),
        }
    }
}

/// The header of the VALE request `body` for `name`, as `vale-ctl` builds
/// it: zeroed, [`NETMAP_API`], the name NUL-terminated, no options.
pub(crate) fn vale_header(name: &str, body: &mut ValeBody<'_>) -> io::Result<nmreq_header> {
    let (reqtype, addr) = body.reqtype_and_body();
    header(name, NETMAP_API, reqtype, addr)
}

/// A `/dev/netmap` descriptor, bound to no port, for VALE control requests
/// (a switch is the module's, not a descriptor's: nothing is undone when it
/// closes).
#[derive(Debug)]
pub(crate) struct ValeCtl {
    fd: DevFd,
}

impl DevNetmap {
    /// Opens a fresh descriptor for VALE control requests.
    pub(crate) fn vale_ctl(&self) -> io::Result<ValeCtl> {
        Ok(ValeCtl { fd: self.open_fd()? })
    }
}

impl ValeCtl {
    /// `NIOCCTRL` of the VALE request `body` for the port `name` (empty for
    /// a `VALE_LIST` walk). Returns the header's name after the call, where
    /// a walk's reply names the port it found.
    pub(crate) fn request(&self, name: &str, mut body: ValeBody<'_>) -> io::Result<String> {
        let mut hdr = vale_header(name, &mut body)?;
        // SAFETY: `nr_body` is the address of the live, writable body that
        // `body` borrows, of the type `nr_reqtype` names (0 for DELIF, which
        // takes none), set together by `reqtype_and_body`; no options.
        unsafe { self.fd.ctrl(&mut hdr) }?;
        let name: Vec<u8> = hdr
            .nr_name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        Ok(String::from_utf8_lossy(&name).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of a plain C struct.
    fn bytes<T>(v: &T) -> &[u8] {
        // SAFETY: `T` is one of the ABI's `repr(C)` request structs, whose
        // bytes (padding included: they are built from `Default`, all zero)
        // are initialized; the slice borrows `v`.
        unsafe { std::slice::from_raw_parts(std::ptr::from_ref(v).cast(), size_of::<T>()) }
    }

    #[test]
    fn info_requests_are_laid_out_as_the_kernel_reads_them() {
        let mut pools = nmreq_pools_info {
            nr_mem_id: 3,
            ..Default::default()
        };
        let body = std::ptr::from_mut(&mut pools) as usize as u64;
        let hdr = header("eth0-1", NETMAP_API, NETMAP_REQ_POOLS_INFO_GET, body).unwrap();
        let b = bytes(&hdr);
        assert_eq!(b.len(), 88);
        assert_eq!(&b[0..2], &NETMAP_API.to_ne_bytes());
        assert_eq!(&b[2..4], &12u16.to_ne_bytes(), "NETMAP_REQ_POOLS_INFO_GET");
        assert_eq!(&b[4..8], &[0; 4], "nr_reserved");
        assert_eq!(&b[8..15], b"eth0-1\0");
        assert!(b[15..72].iter().all(|&c| c == 0), "the name is NUL-padded");
        assert_eq!(&b[72..80], &[0; 8], "no options");
        assert_eq!(&b[80..88], &body.to_ne_bytes());
        // The body: the allocator asked for at byte 8, every output zero.
        let p = bytes(&pools);
        assert_eq!(p.len(), 64);
        assert_eq!(&p[8..10], &3u16.to_ne_bytes());
        assert!(p.iter().enumerate().all(|(i, &c)| c == 0 || (8..10).contains(&i)));

        let info = nmreq_port_info_get::default();
        let hdr = header("vale0:p", 14, NETMAP_REQ_PORT_INFO_GET, 0x1000).unwrap();
        let b = bytes(&hdr);
        assert_eq!(&b[0..2], &14u16.to_ne_bytes());
        assert_eq!(&b[2..4], &2u16.to_ne_bytes(), "NETMAP_REQ_PORT_INFO_GET");
        assert_eq!(&b[8..16], b"vale0:p\0");
        assert_eq!(&b[80..88], &0x1000u64.to_ne_bytes());
        assert_eq!(bytes(&info), &[0; 32]);
        // A name the kernel cannot take is never sent.
        let long = "e".repeat(NETMAP_REQ_IFNAMSIZ);
        assert_eq!(
            header(&long, NETMAP_API, NETMAP_REQ_POOLS_INFO_GET, body)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EINVAL)
        );
    }

    fn refusal(path: &str) -> String {
        match DevNetmap::at(path).accessible() {
            Ok(()) => panic!("{path} taken for netmap's device"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn only_a_character_device_is_taken_for_netmap() {
        let file = std::env::temp_dir().join(format!("netmap-rs-devnetmap-{}", std::process::id()));
        std::fs::write(&file, b"").unwrap();
        let path = file.to_str().unwrap().to_owned();
        let regular = refusal(&path);
        let dir = refusal(std::env::temp_dir().to_str().unwrap());
        std::fs::remove_file(&file).ok();
        assert_eq!(regular, "not a character device (is it netmap's?)");
        assert_eq!(dir, regular);
        let missing = DevNetmap::at("/nonexistent/netmap").accessible().unwrap_err();
        assert_eq!(missing.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn a_device_that_is_not_netmaps_is_named_at_register() {
        // Past the check, as another misc device would be: /dev/null knows
        // no netmap request.
        let spec = crate::spec::parse("netmap:eth0").unwrap();
        let dev = DevNetmap::at("/dev/null");
        let e = crate::backend::kernel::open(&dev, &spec, Default::default()).unwrap_err();
        assert!(
            e.to_string()
                .contains("/dev/netmap does not answer netmap's requests"),
            "{e}"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn on_linux_only_a_misc_device_is() {
        let null = refusal("/dev/null");
        assert!(null.contains("1:3 is not netmap's"), "{null}");
        // Another misc device passes the check (and would fail at register).
        let tun = "/dev/net/tun";
        let misc = std::fs::metadata(tun)
            .is_ok_and(|m| m.file_type().is_char_device() && libc::major(m.rdev()) == MISC_MAJOR);
        if misc {
            match DevNetmap::at(tun).accessible() {
                Ok(()) => {}
                Err(e) => assert!(e.raw_os_error().is_some(), "{e}"),
            }
        }
    }
}
