//! The parts of `<linux/if_packet.h>`, `<linux/sockios.h>` and
//! `<linux/ethtool.h>` used here, declared by hand (as `ffi-decls` does for
//! netmap) so that no particular `libc` version is needed; sizes and offsets
//! are asserted. Then the raw calls on packet sockets and epoll sets.

use std::ffi::{c_char, c_int, c_ulong, c_void};
use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr;

/// The page size that blocks are built on (a power of two).
pub(super) use crate::backend::sys::page_size;
use crate::backend::sys::{self, cvt};

pub(super) const SOL_PACKET: c_int = 263;
pub(super) const PACKET_ADD_MEMBERSHIP: c_int = 1;
pub(super) const PACKET_RX_RING: c_int = 5;
pub(super) const PACKET_VERSION: c_int = 10;
pub(super) const PACKET_TX_RING: c_int = 13;
pub(super) const PACKET_LOSS: c_int = 14;
pub(super) const PACKET_FANOUT: c_int = 18;
pub(super) const PACKET_QDISC_BYPASS: c_int = 20;
pub(super) const PACKET_VNET_HDR: c_int = 15;
pub(super) const PACKET_IGNORE_OUTGOING: c_int = 23;
pub(super) const PACKET_MR_PROMISC: u16 = 1;
pub(super) const PACKET_FANOUT_HASH: u32 = 0;
pub(super) const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;
/// `TPACKET_V2` of `enum tpacket_versions`.
pub(super) const TPACKET_V2: c_int = 1;
pub(super) const ETH_P_ALL: u16 = 0x0003;

pub(super) const TP_STATUS_KERNEL: u32 = 0;
pub(super) const TP_STATUS_USER: u32 = 1 << 0;
pub(super) const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
pub(super) const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
pub(super) const TP_STATUS_AVAILABLE: u32 = 0;
pub(super) const TP_STATUS_SEND_REQUEST: u32 = 1 << 0;
pub(super) const TP_STATUS_SENDING: u32 = 1 << 1;
pub(super) const TP_STATUS_WRONG_FORMAT: u32 = 1 << 2;

pub(super) const SIOCGIFFLAGS: c_ulong = 0x8913;
pub(super) const SIOCGIFMTU: c_ulong = 0x8921;
pub(super) const SIOCETHTOOL: c_ulong = 0x8946;
pub(super) const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
pub(super) const ETHTOOL_GCHANNELS: u32 = 0x0000_003c;
pub(super) const IFF_UP: i16 = 0x1;
pub(super) const IFNAMSIZ: usize = 16;

/// `struct tpacket2_hdr`: the header at the start of every V2 frame.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(super) struct Tpacket2Hdr {
    /// `TP_STATUS_*`: who owns the frame. Accessed atomically.
    tp_status: u32,
    pub(super) tp_len: u32,
    pub(super) tp_snaplen: u32,
    pub(super) tp_mac: u16,
    tp_net: u16,
    tp_sec: u32,
    tp_nsec: u32,
    pub(super) tp_vlan_tci: u16,
    pub(super) tp_vlan_tpid: u16,
    tp_padding: [u8; 4],
}

/// `struct tpacket_req`: the shape of a ring, for `PACKET_RX_RING`/`PACKET_TX_RING`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(super) struct TpacketReq {
    pub(super) tp_block_size: u32,
    pub(super) tp_block_nr: u32,
    pub(super) tp_frame_size: u32,
    pub(super) tp_frame_nr: u32,
}

/// `struct packet_mreq`, for `PACKET_ADD_MEMBERSHIP`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(super) struct PacketMreq {
    pub(super) mr_ifindex: c_int,
    pub(super) mr_type: u16,
    pub(super) mr_alen: u16,
    pub(super) mr_address: [u8; 8],
}

/// `struct ifreq`: the name, then a 24-byte union of which we read
/// `ifr_flags` (a `short`) and `ifr_mtu` (an `int`), both at its start.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(super) struct IfReq {
    pub(super) name: [c_char; IFNAMSIZ],
    pub(super) data: [u8; 24],
}

/// `struct ethtool_channels`, for `ETHTOOL_GCHANNELS`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct EthtoolChannels {
    pub(super) cmd: u32,
    pub(super) max_rx: u32,
    pub(super) max_tx: u32,
    pub(super) max_other: u32,
    pub(super) max_combined: u32,
    pub(super) rx_count: u32,
    pub(super) tx_count: u32,
    pub(super) other_count: u32,
    pub(super) combined_count: u32,
}

/// `struct ethtool_drvinfo`, for `ETHTOOL_GDRVINFO`; only `bus_info` is read.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(super) struct EthtoolDrvinfo {
    pub(super) cmd: u32,
    pub(super) driver: [u8; 32],
    pub(super) version: [u8; 32],
    pub(super) fw_version: [u8; 32],
    pub(super) bus_info: [u8; 32],
    pub(super) erom_version: [u8; 32],
    pub(super) reserved2: [u8; 12],
    pub(super) counts: [u32; 5],
}

/// `TPACKET_ALIGN(sizeof(struct tpacket2_hdr)) + sizeof(struct sockaddr_ll)`.
pub(super) const TPACKET2_HDRLEN: usize = 32 + SOCKADDR_LL;
const SOCKADDR_LL: usize = 20;
/// Where a V2 TX ring reads a frame's contents from (no `PACKET_TX_HAS_OFF`).
pub(super) const TX_BASE: usize = TPACKET2_HDRLEN - SOCKADDR_LL;
/// `struct virtio_net_hdr`, which precedes each frame's packet, RX and TX,
/// on a socket with `PACKET_VNET_HDR`.
pub(super) const VNET_HDR: usize = 10;

const _: () = assert!(size_of::<Tpacket2Hdr>() == 32);
const _: () = assert!(offset_of!(Tpacket2Hdr, tp_mac) == 12 && offset_of!(Tpacket2Hdr, tp_vlan_tci) == 24);
const _: () = assert!(size_of::<TpacketReq>() == 16 && size_of::<PacketMreq>() == 16);
const _: () = assert!(size_of::<IfReq>() == 40);
const _: () = assert!(size_of::<EthtoolChannels>() == 36);
const _: () = assert!(size_of::<EthtoolDrvinfo>() == 196 && offset_of!(EthtoolDrvinfo, bus_info) == 100);
const _: () = assert!(size_of::<libc::sockaddr_ll>() == SOCKADDR_LL);
const _: () = assert!(TX_BASE == 32);

pub(super) fn setsockopt<T: Copy>(
    fd: BorrowedFd<'_>,
    level: c_int,
    name: c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` is a live `T` of `size_of::<T>()` readable bytes, the
    // argument type the option expects (each caller passes the C type).
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            ptr::from_ref(value).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

pub(super) fn getsockopt_int(fd: BorrowedFd<'_>, level: c_int, name: c_int) -> io::Result<c_int> {
    let mut v: c_int = 0;
    let mut len = size_of::<c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are live, writable, and `len` says `v`'s size.
    cvt(unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, ptr::addr_of_mut!(v).cast(), &mut len) })?;
    Ok(v)
}

/// `socket(domain, ty, 0)`, owned.
fn socket(domain: c_int, ty: c_int) -> io::Result<OwnedFd> {
    // SAFETY: `socket` has no memory preconditions; the result is checked.
    let fd = cvt(unsafe { libc::socket(domain, ty, 0) })?;
    // SAFETY: `fd` was just opened and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An unprivileged socket to ask about interfaces with.
pub(super) fn query_socket() -> io::Result<OwnedFd> {
    socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC)
}

/// Opens a packet socket that receives nothing until bound.
pub(super) fn packet_socket() -> io::Result<OwnedFd> {
    // Protocol 0: no packet is queued before `bind` names the protocol.
    socket(
        libc::AF_PACKET,
        libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
    )
}

/// A new epoll set, owned.
pub(crate) fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: epoll_create1 takes no pointers; the result is checked.
    let ep = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    // SAFETY: `ep` was just opened and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(ep) })
}

/// Registers (`EPOLL_CTL_ADD`) or removes (`EPOLL_CTL_DEL`) every one of
/// `fds` in the epoll set `ep`. Adding one that is in the set already, or
/// removing one that is not, is not an error: a wait cut short by an error
/// may leave the set half armed.
pub(crate) fn epoll_arm<'a>(
    ep: BorrowedFd<'_>,
    op: c_int,
    fds: impl IntoIterator<Item = BorrowedFd<'a>>,
) -> io::Result<()> {
    let benign = if op == libc::EPOLL_CTL_ADD {
        libc::EEXIST
    } else {
        libc::ENOENT
    };
    for fd in fds {
        match epoll_ctl(ep, op, fd) {
            Err(e) if e.raw_os_error() != Some(benign) => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Sleeps on the epoll set `ep` until an event or `deadline` (a signal
/// does not end the sleep: it goes on with the time left); returns the
/// descriptors (as registered by [`epoll_ctl`]) that reported `EPOLLERR`.
pub(crate) fn epoll_errors(ep: BorrowedFd<'_>, deadline: sys::Deadline) -> io::Result<Vec<u64>> {
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
    let n = sys::wait_until(deadline, |ms| {
        // SAFETY: `evs` is a live, writable array of 8 events and we pass 8.
        cvt(unsafe { libc::epoll_wait(ep.as_raw_fd(), evs.as_mut_ptr(), 8, ms) })
    })? as usize;
    Ok(evs[..n]
        .iter()
        .filter(|ev| ev.events & (libc::EPOLLERR as u32) != 0)
        .map(|ev| ev.u64)
        .collect())
}

pub(crate) fn epoll_ctl(ep: BorrowedFd<'_>, op: c_int, fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLET) as u32,
        u64: fd.as_raw_fd() as u64,
    };
    // SAFETY: `ev` is a live epoll_event (ignored for EPOLL_CTL_DEL); both
    // descriptors are live.
    cvt(unsafe { libc::epoll_ctl(ep.as_raw_fd(), op, fd.as_raw_fd(), &mut ev) }).map(drop)
}

pub(super) fn bind(fd: BorrowedFd<'_>, ifindex: c_int, protocol: u16) -> io::Result<()> {
    // SAFETY: an all-zero sockaddr_ll is a valid value of the plain C struct.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = ifindex;
    // SAFETY: `sll` is a live sockaddr_ll and we pass its size.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            ptr::addr_of!(sll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// `send(fd, NULL, 0, MSG_DONTWAIT)`: the kernel sends the frames marked
/// `TP_STATUS_SEND_REQUEST`. A full socket buffer (`EAGAIN`, `ENOBUFS`) is
/// not an error: the next sync resumes.
pub(super) fn kick_tx(fd: BorrowedFd<'_>) -> io::Result<()> {
    let sent = sys::retry(|| {
        // SAFETY: a zero-length send with a null buffer; the kernel reads
        // the frames from the mapped TX ring.
        cvt(unsafe { libc::send(fd.as_raw_fd(), ptr::null::<c_void>(), 0, libc::MSG_DONTWAIT) }).map(drop)
    });
    match sent {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::ENOBUFS)) => Ok(()),
        r => r,
    }
}
