//! What the host says of an interface (index, flags, MTU, whether it is
//! physical) and of its kernel (whether TX frames may carry a virtio header).

use std::ffi::{c_char, c_int, c_ulong, CString};
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::ptr;

use super::sys::{
    query_socket, EthtoolChannels, EthtoolDrvinfo, IfReq, ETHTOOL_GCHANNELS, ETHTOOL_GDRVINFO, IFF_UP,
    IFNAMSIZ, SIOCETHTOOL, SIOCGIFFLAGS, SIOCGIFMTU,
};
use crate::backend::errno;
use crate::backend::sys::cvt;

/// An `ifreq` naming `name`, or `ENODEV` if it cannot be an interface name.
fn ifreq(name: &str) -> io::Result<IfReq> {
    let mut r = IfReq {
        name: [0; IFNAMSIZ],
        data: [0; 24],
    };
    if name.is_empty() || name.len() >= IFNAMSIZ || name.contains('\0') {
        return Err(errno(libc::ENODEV));
    }
    for (d, s) in r.name.iter_mut().zip(name.bytes()) {
        *d = s as c_char;
    }
    Ok(r)
}

fn ifioctl(fd: BorrowedFd<'_>, req: c_ulong, name: &str) -> io::Result<IfReq> {
    let mut r = ifreq(name)?;
    // SAFETY: SIOCGIFFLAGS and SIOCGIFMTU take a `struct ifreq *`; `r` is a
    // live, writable one (40 bytes, asserted).
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), req as _, ptr::addr_of_mut!(r)) })?;
    Ok(r)
}

/// The ethtool request `req` (a `repr(C)` struct whose first `u32` is the
/// command) on interface `name`, answered in place.
///
/// # Safety
/// `T` must be the request struct the kernel reads and writes for the
/// command in its first field.
unsafe fn ethtool<T: Copy>(fd: BorrowedFd<'_>, name: &str, mut req: T) -> io::Result<T> {
    let mut r = ifreq(name)?;
    let p = ptr::addr_of_mut!(req) as usize;
    r.data[..size_of::<usize>()].copy_from_slice(&p.to_ne_bytes());
    // SAFETY: SIOCETHTOOL takes a `struct ifreq *` whose `ifr_data` points at
    // an ethtool request; `r` is one, and `req` a live, writable request of
    // the type its command needs (the caller's word).
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), SIOCETHTOOL as _, ptr::addr_of_mut!(r)) })?;
    Ok(req)
}

/// `ETHTOOL_GDRVINFO` of `name`: what its driver says of itself.
fn drvinfo(fd: BorrowedFd<'_>, name: &str) -> io::Result<EthtoolDrvinfo> {
    let info = EthtoolDrvinfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        counts: [0; 5],
    };
    // SAFETY: ETHTOOL_GDRVINFO reads and writes an `ethtool_drvinfo` (196
    // bytes, asserted).
    unsafe { ethtool(fd, name, info) }
}

/// How many RX queues interface `name` has (`ethtool -l`: its combined and
/// RX-only channels), or 1 if its driver does not say.
pub(crate) fn rx_queues(name: &str) -> io::Result<u32> {
    let fd = query_socket()?;
    let req = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..EthtoolChannels::default()
    };
    // SAFETY: ETHTOOL_GCHANNELS reads and writes an `ethtool_channels` (36
    // bytes, asserted).
    match unsafe { ethtool(fd.as_fd(), name, req) } {
        Ok(ch) => Ok(ch.combined_count.saturating_add(ch.rx_count).max(1)),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(1),
        Err(e) => Err(e),
    }
}

/// Whether `name` is a physical device (its driver reports a bus address),
/// as opposed to a virtual one (veth, bridge, tun, loopback...), through
/// which the kernel copies every transmitted page anyway.
fn is_physical(fd: BorrowedFd<'_>, name: &str) -> bool {
    drvinfo(fd, name).is_ok_and(|info| info.bus_info[0] != 0)
}

/// The name the driver of interface `name` gives itself (`ethtool -i`'s
/// `driver:`), such as `veth` or `e1000e`; `EOPNOTSUPP` for a device whose
/// driver says nothing (the loopback), `ENODEV` for no such interface.
pub(crate) fn driver_name(name: &str) -> io::Result<String> {
    let fd = query_socket()?;
    let info = drvinfo(fd.as_fd(), name)?;
    let end = info
        .driver
        .iter()
        .position(|&c| c == 0)
        .unwrap_or(info.driver.len());
    Ok(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// Whether this kernel reads a `virtio_net_hdr` before each TX-ring frame
/// when `PACKET_VNET_HDR` is set (`tpacket_snd` learnt it in Linux 4.14;
/// 5.0 is asked for, to be safe). Older kernels would send the header as
/// packet bytes, so they are not given one.
pub(super) fn vnet_tx_supported() -> bool {
    // SAFETY: an all-zero utsname is a valid value of the plain C struct,
    // and uname fills the live one it is given.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::uname(&mut u) } != 0 {
        return false;
    }
    let release: String = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8 as char)
        .collect();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    matches!((parts.next(), parts.next()), (Some(major), Some(_)) if major >= 5)
}

pub(crate) fn if_index(name: &str) -> io::Result<c_int> {
    let c = CString::new(name).map_err(|_| errno(libc::ENODEV))?;
    // SAFETY: `c` is a NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(errno(libc::ENODEV))
    } else {
        c_int::try_from(i).map_err(|_| errno(libc::ENODEV))
    }
}

/// The MTU of interface `name` and whether it is a physical device.
pub(crate) fn probe(name: &str) -> io::Result<(u32, bool)> {
    let fd = query_socket()?;
    let r = ifioctl(fd.as_fd(), SIOCGIFMTU, name)?;
    let mtu = i32::from_ne_bytes([r.data[0], r.data[1], r.data[2], r.data[3]]);
    Ok((u32::try_from(mtu).unwrap_or(1500), is_physical(fd.as_fd(), name)))
}

/// What this host says of an interface, as seen from the calling thread's
/// network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IfState {
    /// It exists and is administratively up.
    Up,
    /// It exists and is down.
    Down,
    /// There is no such interface.
    Missing,
}

/// Whether `name` exists and is up. Needs no privilege.
pub(crate) fn interface_state(name: &str) -> io::Result<IfState> {
    if if_index(name).is_err() {
        return Ok(IfState::Missing);
    }
    let fd = query_socket()?;
    let r = match ifioctl(fd.as_fd(), SIOCGIFFLAGS, name) {
        Ok(r) => r,
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return Ok(IfState::Missing),
        Err(e) => return Err(e),
    };
    let flags = i16::from_ne_bytes([r.data[0], r.data[1]]);
    Ok(if flags & IFF_UP != 0 {
        IfState::Up
    } else {
        IfState::Down
    })
}
