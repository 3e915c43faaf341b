//! The AF_PACKET backend: Linux `PACKET_MMAP` rings presented as a netmap
//! port, for real interfaces on hosts without netmap.
//!
//! [`AfPacket`] is a [`Kernel`] like `/dev/netmap`: a handle answers
//! `NIOCCTRL(REGISTER)` for an interface name, and the caller then maps a
//! region laid out as netmap's (a `netmap_if`, ring headers and slots) and
//! drives the rings with `head`/`cur`/`tail` and syncs, so `kernel::open` and
//! the safe ring code run unchanged.
//!
//! # Sockets
//! A port has one ring pair per AF_PACKET socket, bound to the interface with
//! `ETH_P_ALL`, `TPACKET_V2`, a memory-mapped RX ring and a memory-mapped TX
//! ring, `PACKET_QDISC_BYPASS` (TX skips the qdisc layer, as netmap does) and
//! `PACKET_IGNORE_OUTGOING` (an RX ring sees what arrives on the wire, not
//! what other sockets send, as a NIC ring does). `PACKET_LOSS` makes the kernel
//! drop a malformed TX frame instead of stalling the ring; `PACKET_VNET_HDR`
//! lets each TX frame say how much of it to copy (see below). Asking for more
//! than one ring pair (`num_rx_rings(n)`, `num_tx_rings(n)` or `@conf:rings=n`)
//! opens `n` sockets joined in one `PACKET_FANOUT_HASH` group, so the kernel
//! spreads flows over the RX rings as RSS spreads them over a NIC's. The group
//! id is allocated by the kernel (`PACKET_FANOUT_FLAG_UNIQUEID`) and shared by
//! every port of this process on that interface and network namespace, so
//! one-ring ports (`-N`, `build_per_ring`) form one group too. Promiscuous mode
//! is a `PACKET_MR_PROMISC` membership of the port's first socket, taken only
//! when asked for; the kernel drops it when the socket closes.
//!
//! `NR_TX_RINGS_ONLY` (`/T`) sockets get no RX ring and are bound with
//! protocol 0, so they receive nothing; `NR_RX_RINGS_ONLY` (`/R`) sockets get
//! no TX ring.
//!
//! # Why `TPACKET_V2`
//! V2 rings are arrays of fixed-size frames, each with its own status word,
//! handed back to the kernel one at a time, in ring order. That is a netmap
//! ring: frame `k` is the buffer of slot `k` for the life of the port, a slot
//! returns to the kernel exactly when `head` moves past it, and nothing else
//! has to be tracked. V3 packs a variable number of packets into blocks that
//! go back to the kernel only as whole blocks, and retires a block only when
//! it is full or its timer fires: slots would map to packets inside blocks,
//! a slot held by the user would pin every packet of its block, and a lone
//! packet would wait for the block timer (milliseconds), which ruins
//! ping-pong latency. V3's gain, less memory for small packets, does not pay
//! for that here. TX is V2 as well (V3's TX ring is V2's format anyway).
//!
//! # Memory
//! One address range holds everything, so one [`Mapping`] covers it and every
//! buffer index means one frame of it:
//!
//! ```text
//! base                                   base + H
//! | netmap_if | ring headers and slots | socket 0: RX frames, TX frames | socket 1: ... |
//! | anonymous memory (ours)            | PACKET_MMAP rings, MAP_FIXED over the reservation |
//! ```
//!
//! The range is reserved with one anonymous mapping; each socket's rings are
//! then mapped over its part with `MAP_FIXED`. Blocks are a multiple of the
//! frame size, so frame `k` of a ring starts `k * frame_size` after the ring's
//! first frame, and buffer `i` of the netmap view starts `i * frame_size`
//! after `base + H`: every ring's `buf_ofs` points there, so `NETMAP_BUF`
//! works. Slot `k` of a ring always names frame `k` of its socket's ring.
//! The packet does not start at the frame's start: the frame begins with a
//! `tpacket2_hdr`. Each ring sets `offset_mask` and each slot's `ptr` holds
//! the packet's offset in its buffer (netmap's slot offsets): on RX the
//! kernel's `tp_mac`, on TX `TPACKET2_HDRLEN - sizeof(sockaddr_ll)` (where a
//! V2 TX ring reads the frame from) plus the virtio header, if any (below).
//! RX frames are views into the kernel's ring and TX slots are written in
//! place: user space copies nothing.
//!
//! # What the kernel copies
//! RX: the kernel copies each packet into its frame (that is how AF_PACKET
//! receives). TX: a frame's packet can leave as page fragments of the ring
//! (zero-copy: a NIC's DMA reads the ring) or be copied into the skb. Which
//! is cheaper depends on the device, so on kernels from 5.0 on the sockets
//! get `PACKET_VNET_HDR`: each TX frame starts with a `virtio_net_hdr`
//! (no offloads) whose `hdr_len` says how many bytes to copy. On a virtual
//! interface (veth, bridge, tun: its driver reports no bus address) every
//! packet is copied, because the kernel would otherwise copy the fragments
//! anyway, with a page allocation per packet, when the packet crosses to
//! the peer (measured on veth: 1.3 times the packets per second). On a
//! physical NIC packets up to 256 bytes are copied and larger ones go out
//! zero-copy from the ring. RX frames then start with a virtio header too,
//! which `tp_mac` skips.
//!
//! The frame size is the smallest power of two from 2048 that holds the
//! interface's MTU, an Ethernet header, a VLAN tag and the kernel's header
//! (2048 for an MTU of 1500), at most 65536; larger packets are truncated by
//! the kernel (`tp_snaplen`). A VLAN tag that the kernel stripped is put back
//! in front of the payload (the header has room), so RX slots hold the frame
//! as it was on the wire, as netmap's do.
//!
//! # Syncs
//! * rxsync: the slots the user released, `[hwcur, head)`, go back to the
//!   kernel (`TP_STATUS_KERNEL`, stored with `Release`); then frames whose
//!   status has `TP_STATUS_USER` (loaded with `Acquire`) become slots from
//!   `tail` on, up to one slot before `head` (netmap keeps one slot free).
//!   No system call.
//! * txsync: each slot of `[hwcur, head)` gets `tp_len` and
//!   `TP_STATUS_SEND_REQUEST`, then `send(fd, NULL, 0, MSG_DONTWAIT)` asks
//!   the kernel to send them. `tail` follows the frames that are back to
//!   `TP_STATUS_AVAILABLE`, in order. A send the kernel cut short (socket
//!   buffer full) is resumed by the next txsync. A multi-slot packet is
//!   gathered into its first frame when it fits (AF_PACKET frames cannot
//!   chain); one that does not is dropped and the sync fails with `EMSGSIZE`.
//! * Both check `head` against the kernel's view first, as netmap's prologue
//!   does: a `head` outside `[hwcur, tail]` resets the ring and fails with
//!   `EINVAL`.
//!
//! # Buffer swaps
//! Frames cannot move: the kernel owns their positions. Every port gets a
//! memory id no other live port has, so `TxRing::forward` between two ports
//! refuses with `MemoryMismatch` (copy instead). Between an RX and a TX ring
//! of the *same* port the swap is allowed by the ring code, and this backend
//! makes it behave as netmap's: a TX slot whose buffer index or offset
//! changed is copied into its own frame at txsync, and if the RX slot that
//! traded buffers is released first, the copy is made then, before the RX
//! frame goes back to the kernel. So `forward` on one port works, with one
//! copy.
//!
//! # Readiness
//! A port of one ring pair gives its socket's descriptor to event loops: the
//! kernel wakes it (`EPOLLIN`) for each new RX frame and (`EPOLLOUT`) when
//! TX frames complete, which is what a netmap descriptor's readiness means.
//! A port of several ring pairs has several sockets and must still offer one
//! descriptor: it is an epoll set holding them all (edge-triggered, for
//! input and output). An epoll descriptor can only report itself readable,
//! so on such a port *any* ring's progress (new RX packets or freed TX room)
//! is reported as readable (a fresh port, whose TX rings have room, is
//! readable once when registered); register for `READABLE`. For exact `WRITABLE`
//! readiness per ring, open one port per ring (`build_per_ring`), which is
//! also the way to drive the rings from several threads.
//!
//! [`KernelFd::poll`] (behind `Netmap::poll`) syncs the rings as netmap's
//! `poll` does and sleeps on a private epoll set in which the sockets are
//! registered edge-triggered only while it waits, so it wakes for new
//! packets and completed frames, not for frames the user still holds, and
//! costs nothing while nobody waits.
//!
//! # Where it differs from a netmap NIC port
//! * RX sees packets as the stack does: after GRO/LRO, so a burst of TCP
//!   segments may arrive as one large packet, truncated to the frame (and,
//!   with the virtio header, a GSO packet of a kind it cannot describe is
//!   dropped). Turn them off for wire-sized frames: `ethtool -K IF gro off
//!   lro off`. Packets made by the local stack may carry unfinished
//!   checksums (the kernel's `TP_STATUS_CSUMNOTREADY`).
//! * Every port has sockets, and so rings and a mapping, of its own: two
//!   ports never alias memory, in this process or across processes. Still,
//!   a port binds its rings (each direction's ring ids, per interface and
//!   network namespace) as netmap's do: exclusively unless opened with
//!   `share_rings`, so a second port of this process that selects a ring
//!   held exclusively, or that asks exclusively for a ring held at all,
//!   gets `Busy`, the error netmap gives. Shared ports each see every
//!   packet (their own sockets; within a fanout group, the group spreads
//!   packets over all its sockets), where ports sharing a netmap ring
//!   consume one ring. Other processes' ports are not counted: there each
//!   open succeeds and sees every packet (each process has its own fanout
//!   group).
//! * No host rings, VALE, pipes or monitors; `forward` copies (see above).
//! * Packets larger than a frame are truncated on RX, and refused on TX
//!   (`EMSGSIZE` from the sync).

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::ffi::{c_char, c_int, c_ulong, c_void, CString};
use std::fmt;
use std::io;
use std::mem::{offset_of, size_of};
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use crate::backend::kring::{SharedRing, Slot, RING_HDR, SLOT_SIZE};
use crate::backend::sys::{self, cvt, Deadline};
use crate::backend::{
    errno, lock, nm_prev as prev, update_body, within, Kernel, KernelFd, Mapping, MemDomain, SyncDir,
};
use crate::error::{BackendKind, Error, Result};
use crate::ffi::nm_next as next;
use crate::ffi::{
    netmap_if, netmap_ring, nmreq_header, nmreq_register, NETMAP_API, NETMAP_MAX_FRAGS, NETMAP_REQ_REGISTER,
    NR_EXCLUSIVE, NR_MONITOR_RX, NR_MONITOR_TX, NR_NO_TX_POLL, NR_REG_ALL_NIC, NR_REG_DEFAULT,
    NR_REG_ONE_NIC, NR_RX_RINGS_ONLY, NR_TX_RINGS_ONLY, NR_ZCOPY_MON, NS_MOREFRAG,
};
use crate::spec::{PortKind, PortSpec, RingSelect};

// ---------------------------------------------------------------------------
// The parts of <linux/if_packet.h> and <linux/sockios.h> used here, declared
// by hand (as `ffi-decls` does for netmap) so that no particular `libc`
// version is needed; sizes and offsets are asserted below.

const SOL_PACKET: c_int = 263;
const PACKET_ADD_MEMBERSHIP: c_int = 1;
const PACKET_RX_RING: c_int = 5;
const PACKET_VERSION: c_int = 10;
const PACKET_TX_RING: c_int = 13;
const PACKET_LOSS: c_int = 14;
const PACKET_FANOUT: c_int = 18;
const PACKET_QDISC_BYPASS: c_int = 20;
const PACKET_VNET_HDR: c_int = 15;
const PACKET_IGNORE_OUTGOING: c_int = 23;
const PACKET_MR_PROMISC: u16 = 1;
const PACKET_FANOUT_HASH: u32 = 0;
const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;
/// `TPACKET_V2` of `enum tpacket_versions`.
const TPACKET_V2: c_int = 1;
const ETH_P_ALL: u16 = 0x0003;

const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1 << 0;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
const TP_STATUS_AVAILABLE: u32 = 0;
const TP_STATUS_SEND_REQUEST: u32 = 1 << 0;
const TP_STATUS_SENDING: u32 = 1 << 1;
const TP_STATUS_WRONG_FORMAT: u32 = 1 << 2;

const SIOCGIFFLAGS: c_ulong = 0x8913;
const SIOCGIFMTU: c_ulong = 0x8921;
const SIOCETHTOOL: c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
const IFF_UP: i16 = 0x1;
const IFNAMSIZ: usize = 16;

/// `struct tpacket2_hdr`: the header at the start of every V2 frame.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct Tpacket2Hdr {
    /// `TP_STATUS_*`: who owns the frame. Accessed atomically.
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_sec: u32,
    tp_nsec: u32,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
    tp_padding: [u8; 4],
}

/// `struct tpacket_req`: the shape of a ring, for `PACKET_RX_RING`/`PACKET_TX_RING`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct TpacketReq {
    tp_block_size: u32,
    tp_block_nr: u32,
    tp_frame_size: u32,
    tp_frame_nr: u32,
}

/// `struct packet_mreq`, for `PACKET_ADD_MEMBERSHIP`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct PacketMreq {
    mr_ifindex: c_int,
    mr_type: u16,
    mr_alen: u16,
    mr_address: [u8; 8],
}

/// `struct ifreq`: the name, then a 24-byte union of which we read
/// `ifr_flags` (a `short`) and `ifr_mtu` (an `int`), both at its start.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct IfReq {
    name: [c_char; IFNAMSIZ],
    data: [u8; 24],
}

/// `struct ethtool_drvinfo`, for `ETHTOOL_GDRVINFO`; only `bus_info` is read.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    counts: [u32; 5],
}

/// `TPACKET_ALIGN(sizeof(struct tpacket2_hdr)) + sizeof(struct sockaddr_ll)`.
const TPACKET2_HDRLEN: usize = 32 + SOCKADDR_LL;
const SOCKADDR_LL: usize = 20;
/// Where a V2 TX ring reads a frame's contents from (no `PACKET_TX_HAS_OFF`).
const TX_BASE: usize = TPACKET2_HDRLEN - SOCKADDR_LL;
/// `struct virtio_net_hdr`, which precedes each frame's packet, RX and TX,
/// on a socket with `PACKET_VNET_HDR`.
const VNET_HDR: usize = 10;
/// On a physical NIC, packets up to this size are copied into the skb (a
/// small copy costs less than mapping a page fragment for DMA); larger ones
/// leave from the ring's pages without a copy.
const PHYS_LINEAR_MAX: usize = 256;
/// Room a frame needs beyond the MTU: the kernel's header and the gap before
/// `tp_mac` (66 bytes for Ethernet), the Ethernet header, VLAN tags.
const RX_HEADROOM: usize = 128;

const _: () = assert!(size_of::<Tpacket2Hdr>() == 32);
const _: () = assert!(offset_of!(Tpacket2Hdr, tp_mac) == 12 && offset_of!(Tpacket2Hdr, tp_vlan_tci) == 24);
const _: () = assert!(size_of::<TpacketReq>() == 16 && size_of::<PacketMreq>() == 16);
const _: () = assert!(size_of::<IfReq>() == 40);
const _: () = assert!(size_of::<EthtoolDrvinfo>() == 196 && offset_of!(EthtoolDrvinfo, bus_info) == 100);
const _: () = assert!(size_of::<libc::sockaddr_ll>() == SOCKADDR_LL);
const _: () = assert!(TX_BASE == 32);

// netmap's layout, as the ring code reads it.
const IF_HDR: usize = size_of::<netmap_if>();
const RING_ALIGN: usize = 256;
const _: () = assert!(IF_HDR == 56);
const _: () = assert!(RING_HDR % RING_ALIGN == 0);

/// Smallest and largest frame (netmap buffer) size.
const MIN_FRAME: usize = 2048;
const MAX_FRAME: usize = 65536;
/// Most ring pairs (sockets) per port.
const MAX_RINGS: u32 = 64;
/// Slots per ring when the request says 0, if the frames fit in
/// [`DEFAULT_RING_BYTES`].
const DEFAULT_SLOTS: u32 = 1024;
const DEFAULT_RING_BYTES: usize = 16 << 20;
/// Most slots per ring.
const MAX_SLOTS: u32 = 32768;

fn page_size() -> usize {
    // SAFETY: sysconf has no memory preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p)
        .ok()
        .filter(|&p| p.is_power_of_two())
        .unwrap_or(4096)
}

fn setsockopt<T: Copy>(fd: BorrowedFd<'_>, level: c_int, name: c_int, value: &T) -> io::Result<()> {
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

fn getsockopt_int(fd: BorrowedFd<'_>, level: c_int, name: c_int) -> io::Result<c_int> {
    let mut v: c_int = 0;
    let mut len = size_of::<c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are live, writable, and `len` says `v`'s size.
    cvt(unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, ptr::addr_of_mut!(v).cast(), &mut len) })?;
    Ok(v)
}

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

/// Whether `name` is a physical device (its driver reports a bus address),
/// as opposed to a virtual one (veth, bridge, tun, loopback...), through
/// which the kernel copies every transmitted page anyway.
fn is_physical(fd: BorrowedFd<'_>, name: &str) -> bool {
    let Ok(mut r) = ifreq(name) else { return false };
    let mut info = EthtoolDrvinfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        counts: [0; 5],
    };
    let p = ptr::addr_of_mut!(info) as usize;
    r.data[..size_of::<usize>()].copy_from_slice(&p.to_ne_bytes());
    // SAFETY: SIOCETHTOOL takes a `struct ifreq *` whose `ifr_data` points at
    // an ethtool request; `r` is one, and `info` a live, writable
    // `ethtool_drvinfo` (196 bytes, asserted) for ETHTOOL_GDRVINFO.
    let ok = unsafe { libc::ioctl(fd.as_raw_fd(), SIOCETHTOOL as _, ptr::addr_of_mut!(r)) } == 0;
    ok && info.bus_info[0] != 0
}

/// Whether this kernel reads a `virtio_net_hdr` before each TX-ring frame
/// when `PACKET_VNET_HDR` is set (`tpacket_snd` learnt it in Linux 4.14;
/// 5.0 is asked for, to be safe). Older kernels would send the header as
/// packet bytes, so they are not given one.
fn vnet_tx_supported() -> bool {
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

/// An unprivileged socket to ask about interfaces with.
fn query_socket() -> io::Result<OwnedFd> {
    // SAFETY: `socket` has no memory preconditions; the result is checked.
    let fd = cvt(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just opened and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn if_index(name: &str) -> io::Result<c_int> {
    let c = CString::new(name).map_err(|_| errno(libc::ENODEV))?;
    // SAFETY: `c` is a NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(errno(libc::ENODEV))
    } else {
        c_int::try_from(i).map_err(|_| errno(libc::ENODEV))
    }
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

/// Opens a packet socket that receives nothing until bound.
fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: `socket` has no memory preconditions; the result is checked.
    // Protocol 0: no packet is queued before `bind` names the protocol.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    })?;
    // SAFETY: `fd` was just opened and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether this process may open AF_PACKET sockets: `Ok`, or the error
/// (`EPERM` without `CAP_NET_RAW`).
pub(crate) fn socket_status() -> io::Result<()> {
    packet_socket().map(drop)
}

/// Why AF_PACKET cannot serve `spec`, or `Ok` if it can: real interfaces
/// only, all rings or one ring pair, no netmap-only options.
pub(crate) fn serves(spec: &PortSpec) -> std::result::Result<(), String> {
    match spec.kind {
        PortKind::Emu => return Err("`emu:` names exist only in the embedded kernel".into()),
        PortKind::Vale { .. } => return Err("VALE switch ports are netmap-only".into()),
        PortKind::Netmap | PortKind::AfPacket => {}
    }
    if spec.is_vale() {
        return Err("VALE switch ports are netmap-only".into());
    }
    if spec.is_pipe() {
        return Err("pipes (`{N`, `}N`) are netmap-only".into());
    }
    match spec.rings {
        RingSelect::AllNic | RingSelect::OneNic(_) => {}
        RingSelect::Host | RingSelect::OneHost(_) | RingSelect::NicAndHost => {
            return Err("host rings (`^`, `*`) are netmap-only: AF_PACKET has no host stack rings".into())
        }
    }
    if spec.flags & (NR_MONITOR_TX | NR_MONITOR_RX | NR_ZCOPY_MON) != 0 {
        return Err("monitor ports (`/t`, `/r`, `/z`) are netmap-only".into());
    }
    if spec.offset.is_some() || spec.extmem.is_some() {
        return Err("the @offset and @extmem options are netmap-only".into());
    }
    Ok(())
}

/// Checks, before any ring is built, what a user can act on: the name suits
/// AF_PACKET, the interface exists and is up, and this process may open
/// packet sockets.
pub(crate) fn preflight(spec: &PortSpec) -> Result<()> {
    serves(spec).map_err(|why| Error::Unsupported {
        backend: BackendKind::AfPacket,
        what: format!("opening {}", spec.text),
        hint: format!("{why}; load the netmap kernel module for them"),
    })?;
    let ifname = &spec.ifname;
    match interface_state(ifname) {
        Ok(IfState::Up) => {}
        Ok(IfState::Missing) => return Err(Error::InterfaceNotFound { name: ifname.clone() }),
        Ok(IfState::Down) => return Err(Error::InterfaceDown { name: ifname.clone() }),
        Err(e) => return Err(Error::io(format!("SIOCGIFFLAGS on {ifname}"), e)),
    }
    if let Err(e) = socket_status() {
        return Err(match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => Error::PermissionDenied {
                what: format!(
                    "opening an AF_PACKET socket for {} needs CAP_NET_RAW ({e})",
                    spec.text
                ),
            },
            _ => Error::io(format!("socket(AF_PACKET) for {}", spec.text), e),
        });
    }
    let pairs = spec
        .conf
        .tx_rings
        .unwrap_or(0)
        .max(spec.conf.rx_rings.unwrap_or(0))
        .max(1);
    if u32::from(pairs) > MAX_RINGS {
        return Err(Error::Unsupported {
            backend: BackendKind::AfPacket,
            what: format!("{pairs} ring pairs on {}", spec.text),
            hint: format!("ask for at most {MAX_RINGS} (one AF_PACKET socket each)"),
        });
    }
    if let RingSelect::OneNic(i) = spec.rings {
        if i >= pairs {
            return Err(Error::Unsupported {
                backend: BackendKind::AfPacket,
                what: format!("ring pair {i} of {}", spec.text),
                hint: format!(
                    "the port has {pairs} ring pair(s), one AF_PACKET socket each; \
                     ask for more with num_rx_rings() or `@conf:rings=N`"
                ),
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The process-wide registry: memory ids, bound rings and fanout groups.

/// Identifies an interface: the network namespace (device and inode of its
/// nsfs file) and the interface index in it.
type IfKey = (u64, u64, c_int);

#[derive(Debug)]
struct Group {
    /// The kernel's fanout group id.
    id: u16,
    /// Ring pairs of every port on this interface (all must agree).
    pairs: u32,
    /// How many live ports bind each ring pair (more than one only for
    /// ports that share their rings).
    bound: Vec<u32>,
}

#[derive(Debug, Default)]
struct Registry {
    mem_ids: HashSet<u16>,
    next_mem: u16,
    rings: HashMap<RingKey, RingUse>,
    groups: HashMap<IfKey, Group>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);

/// A memory id no live AF_PACKET port has; released on drop.
#[derive(Debug)]
struct MemId(u16);

impl MemId {
    fn new() -> io::Result<MemId> {
        let mut reg = lock(&REGISTRY);
        for _ in 0..=u16::MAX as u32 {
            reg.next_mem = reg.next_mem.wrapping_add(1).max(1);
            let id = reg.next_mem;
            if reg.mem_ids.insert(id) {
                return Ok(MemId(id));
            }
        }
        Err(errno(libc::ENOMEM))
    }
}

impl Drop for MemId {
    fn drop(&mut self) {
        lock(&REGISTRY).mem_ids.remove(&self.0);
    }
}

/// One ring of an interface: its direction (`true` for TX) and ring id.
type RingKey = (IfKey, bool, u32);

/// Who binds one ring of an interface, counted as netmap counts a kring's
/// users.
#[derive(Debug, Default)]
struct RingUse {
    /// Live ports of this process that bind the ring.
    users: u32,
    /// One of them asked for `NR_EXCLUSIVE` (netmap's `NKR_EXCLUSIVE`).
    exclusive: bool,
}

/// Rings of an interface bound by one port; released on drop.
///
/// Each port has sockets and rings of its own, so two ports never alias
/// memory; the count only makes a port answer as netmap's module does
/// (`netmap_krings_get`): `EBUSY` when a ring it selects is bound
/// exclusively, or bound at all and this port asks for it exclusively.
#[derive(Debug)]
struct RingClaim {
    rings: Vec<RingKey>,
    exclusive: bool,
}

impl RingClaim {
    /// Binds the `tx` and `rx` rings of `ifindex`, or none of them.
    fn take(ifindex: c_int, tx: Range<u32>, rx: Range<u32>, exclusive: bool) -> io::Result<RingClaim> {
        let (dev, ino) = netns_id()?;
        let key = (dev, ino, ifindex);
        let rings: Vec<RingKey> = tx
            .map(|i| (key, true, i))
            .chain(rx.map(|i| (key, false, i)))
            .collect();
        let mut reg = lock(&REGISTRY);
        let taken = |r: &RingKey| {
            reg.rings
                .get(r)
                .is_some_and(|u| u.exclusive || (exclusive && u.users > 0))
        };
        if rings.iter().any(taken) {
            return Err(errno(libc::EBUSY));
        }
        for r in &rings {
            let u = reg.rings.entry(*r).or_default();
            u.users += 1;
            u.exclusive |= exclusive;
        }
        Ok(RingClaim { rings, exclusive })
    }
}

impl Drop for RingClaim {
    fn drop(&mut self) {
        let mut reg = lock(&REGISTRY);
        for r in &self.rings {
            if let Some(u) = reg.rings.get_mut(r) {
                if self.exclusive {
                    u.exclusive = false;
                }
                u.users = u.users.saturating_sub(1);
                if u.users == 0 {
                    reg.rings.remove(r);
                }
            }
        }
    }
}

/// Ring pairs of a fanout group bound by one port; released on drop.
#[derive(Debug)]
struct Membership {
    key: IfKey,
    pairs: Range<u32>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut reg = lock(&REGISTRY);
        if let Some(g) = reg.groups.get_mut(&self.key) {
            for p in self.pairs.clone() {
                if let Some(b) = g.bound.get_mut(p as usize) {
                    *b = b.saturating_sub(1);
                }
            }
            if g.bound.iter().all(|&b| b == 0) {
                reg.groups.remove(&self.key);
            }
        }
    }
}

fn netns_id() -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata("/proc/thread-self/ns/net")?;
    Ok((m.dev(), m.ino()))
}

/// The value of `PACKET_FANOUT` for `id` in hash mode.
fn fanout_arg(id: u16, flags: u32) -> c_int {
    (u32::from(id) | ((PACKET_FANOUT_HASH | flags) << 16)) as c_int
}

/// Joins `socks` (bound, RX-capable) to this process's fanout group of the
/// interface, creating it with a kernel-allocated id if there is none.
fn join_fanout(socks: &[Sock], ifindex: c_int, pairs: u32, bound: Range<u32>) -> io::Result<Membership> {
    let (dev, ino) = netns_id()?;
    let key = (dev, ino, ifindex);
    let mut reg = lock(&REGISTRY);
    let mut id = match reg.groups.get(&key) {
        Some(g) if g.pairs != pairs => return Err(errno(libc::EBUSY)),
        Some(g) => Some(g.id),
        None => None,
    };
    for s in socks {
        let fd = s.fd.as_fd();
        match id {
            Some(id) => setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &fanout_arg(id, 0))?,
            None => {
                setsockopt(
                    fd,
                    SOL_PACKET,
                    PACKET_FANOUT,
                    &fanout_arg(0, PACKET_FANOUT_FLAG_UNIQUEID),
                )?;
                let v = getsockopt_int(fd, SOL_PACKET, PACKET_FANOUT)?;
                id = Some((v as u32 & 0xffff) as u16);
            }
        }
    }
    let id = id.ok_or_else(|| errno(libc::EINVAL))?;
    let g = reg.groups.entry(key).or_insert_with(|| Group {
        id,
        pairs,
        bound: vec![0; pairs as usize],
    });
    for p in bound.clone() {
        g.bound[p as usize] += 1;
    }
    Ok(Membership { key, pairs: bound })
}

// ---------------------------------------------------------------------------
// Layout.

/// The shape of every socket's rings, and where things go in the region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    /// Frame (= netmap buffer) size, a power of two.
    frame: usize,
    /// Block size: a page multiple and a frame multiple.
    block: usize,
    rx_slots: u32,
    tx_slots: u32,
    has_rx: bool,
    has_tx: bool,
    /// The sockets have `PACKET_VNET_HDR`.
    vnet: bool,
    /// Ring pairs of the port (bound or not).
    pairs: u32,
    /// Ring pairs bound by this handle (one socket each).
    socks: u32,
    /// Bytes of the `netmap_if`.
    nif_len: usize,
    /// Bytes of anonymous memory before the first socket's frames.
    head_len: usize,
    /// Bytes of one socket's mapping (RX frames, then TX frames).
    sock_len: usize,
}

impl Layout {
    #[allow(clippy::too_many_arguments)]
    fn new(
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
        let nif_len = IF_HDR + 2 * pairs as usize * size_of::<isize>();
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

    fn total(&self) -> usize {
        self.head_len + self.socks as usize * self.sock_len
    }

    /// Where a TX slot's packet starts in its frame: after the kernel's
    /// header, and the virtio header when there is one.
    fn tx_off(&self) -> usize {
        TX_BASE + if self.vnet { VNET_HDR } else { 0 }
    }

    fn req(&self, slots: u32) -> TpacketReq {
        TpacketReq {
            tp_block_size: self.block as u32,
            tp_block_nr: (slots as usize * self.frame / self.block) as u32,
            tp_frame_size: self.frame as u32,
            tp_frame_nr: slots,
        }
    }

    /// Region offset of socket `b`'s RX ring header, then its TX ring header.
    fn ring_offsets(&self, b: u32) -> (usize, usize) {
        let rx = if self.has_rx { ring_bytes(self.rx_slots) } else { 0 };
        let tx = if self.has_tx { ring_bytes(self.tx_slots) } else { 0 };
        let start = self.nif_len.next_multiple_of(RING_ALIGN) + b as usize * (rx + tx);
        (start, start + rx)
    }

    /// Region offset of socket `b`'s mapping.
    fn sock_offset(&self, b: u32) -> usize {
        self.head_len + b as usize * self.sock_len
    }

    /// Global buffer index of frame 0 of socket `b`'s RX ring, then TX ring.
    fn first_bufs(&self, b: u32) -> (u32, u32) {
        let rx = (b as usize * self.sock_len / self.frame) as u32;
        let tx = rx + if self.has_rx { self.rx_slots } else { 0 };
        (rx, tx)
    }
}

fn ring_bytes(slots: u32) -> usize {
    (RING_HDR + slots as usize * SLOT_SIZE).next_multiple_of(RING_ALIGN)
}

/// The port's address range; unmapped (all of it, the sockets' rings
/// included) when the last owner lets go.
#[derive(Debug)]
struct Region {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: a `Region` is an address range that it alone unmaps; the memory is
// only read and written through raw pointers and atomics by the handle that
// owns the port (and the user of its rings, who follows netmap's ownership
// rules), never through references, so sending or sharing the range is sound.
unsafe impl Send for Region {}
// SAFETY: as above; `&Region` gives access to nothing but the two numbers.
unsafe impl Sync for Region {}

impl Region {
    /// Reserves `len` bytes of zeroed, private, readable and writable memory.
    fn reserve(len: usize) -> io::Result<Region> {
        // SAFETY: a fresh anonymous mapping at an address the kernel picks;
        // it aliases nothing.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(p.cast::<u8>()).ok_or_else(|| errno(libc::ENOMEM))?;
        Ok(Region { base, len })
    }

    fn at(&self, off: usize) -> *mut u8 {
        debug_assert!(off <= self.len);
        // SAFETY: callers pass offsets within the region (from `Layout`, whose
        // total is the region's length).
        unsafe { self.base.as_ptr().add(off) }
    }

    /// Maps `fd`'s PACKET_MMAP rings (`len` bytes) over `[off, off + len)`.
    fn map_socket(&self, off: usize, len: usize, fd: BorrowedFd<'_>) -> io::Result<()> {
        if off.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(errno(libc::EINVAL));
        }
        let want = self.at(off);
        // SAFETY: `[want, want + len)` lies inside this region's reservation,
        // which this region owns and nothing else uses yet; MAP_FIXED
        // replaces that part of it with the socket's ring pages.
        let p = unsafe {
            libc::mmap(
                want.cast(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        if p.cast::<u8>() != want {
            return Err(errno(libc::EINVAL));
        }
        Ok(())
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the range was mapped by `reserve` (and parts remapped by
        // `map_socket`) and is unmapped once, here; no ring pointer outlives
        // the region (the handle and the `Mapping` hold it in an `Arc`).
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

// ---------------------------------------------------------------------------
// Rings.

/// One ring's header and slots (in the anonymous part of the region) and
/// its frames (in a socket's ring).
///
/// Invariant: `ring` points at a `netmap_ring` followed by `n` slots, and
/// `frames` at `n` frames of `frame` bytes, all inside `_region`, which this
/// value keeps mapped. The shared fields are only touched atomically.
struct RingView {
    ring: NonNull<u8>,
    frames: NonNull<u8>,
    n: u32,
    frame: usize,
    /// Global buffer index of frame 0.
    first: u32,
    _region: Arc<Region>,
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
    fn shared(&self) -> SharedRing<'_> {
        // SAFETY: `ring` points at a ring header (256-aligned) and its `n`
        // slots inside `_region`, which `self` keeps mapped while borrowed
        // (type invariant); the backend keeps slot indices below `n`.
        unsafe { SharedRing::new(self.ring) }
    }

    fn frame(&self, k: u32) -> *mut u8 {
        debug_assert!(k < self.n);
        // SAFETY: `k < n` keeps the frame inside the ring's frames (type
        // invariant).
        unsafe { self.frames.as_ptr().add(k as usize * self.frame) }
    }

    /// Frame `k`'s `tp_status`, shared with the kernel.
    fn status(&self, k: u32) -> &AtomicU32 {
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
    unsafe fn hdr(&self, k: u32) -> Tpacket2Hdr {
        // SAFETY: the caller owns the frame; the header lies at its start.
        unsafe { self.frame(k).cast::<Tpacket2Hdr>().read() }
    }

    fn contains(&self, idx: u32) -> Option<u32> {
        idx.checked_sub(self.first).filter(|&k| k < self.n)
    }
}

/// Kernel-side state of an RX ring.
#[derive(Debug)]
struct RxState {
    v: RingView,
    /// First slot the user still holds (frames before it went back).
    hwcur: Cell<u32>,
    /// First frame not yet handed to the user; the user's `tail`.
    hwtail: Cell<u32>,
}

/// Kernel-side state of a TX ring.
#[derive(Debug)]
struct TxState {
    v: RingView,
    /// First slot not yet handed to the kernel.
    hwcur: Cell<u32>,
    /// First frame handed to the kernel and not yet completed; `tail` is
    /// the slot before it.
    pending: Cell<u32>,
    /// The last frame given `TP_STATUS_SEND_REQUEST`, while the kernel may
    /// not have picked it up yet.
    unsent: Cell<Option<u32>>,
}

/// One AF_PACKET socket: one ring pair of the port.
#[derive(Debug)]
struct Sock {
    fd: OwnedFd,
    rx: Option<RxState>,
    tx: Option<TxState>,
}

/// A registered handle's port.
///
/// Dropping it closes the sockets, then unmaps the region with its last
/// holder (the ring views and the user's `Mapping` hold it too), then leaves
/// the fanout group's registry entry. A socket whose rings are still mapped
/// lives on until they are unmapped (the mapping holds its file), so the
/// order of the first two does not matter to the kernel.
#[derive(Debug)]
struct Port {
    socks: Vec<Sock>,
    region: Arc<Region>,
    /// The epoll set handed to event loops when there are several sockets.
    events: Option<OwnedFd>,
    _rings: RingClaim,
    _fanout: Option<Membership>,
    _mem_id: MemId,
    /// `base + head_len`: buffer 0.
    bufs: NonNull<u8>,
    nbufs: u32,
    frame: usize,
    /// Where TX packets start in their frames.
    tx_off: usize,
    /// With a virtio header: packets up to this size are copied into the
    /// skb (`hdr_len`), larger ones leave from the ring's pages. `None`:
    /// no virtio header.
    linear_max: Option<usize>,
    txpoll: bool,
}

// ---------------------------------------------------------------------------
// The kernel.

/// The AF_PACKET "netmap device".
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AfPacket {
    /// Take a promiscuous membership on the interface.
    pub promisc: bool,
}

impl Kernel for AfPacket {
    fn open(&self) -> io::Result<Box<dyn KernelFd>> {
        // SAFETY: epoll_create1 takes no pointers; the result is checked.
        let ep = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Box::new(AfPacketFd {
            port: None,
            // SAFETY: `ep` was just opened and is owned by no one else.
            waiter: unsafe { OwnedFd::from_raw_fd(ep) },
            promisc: self.promisc,
        }))
    }

    fn domain(&self) -> MemDomain {
        MemDomain::AfPacket
    }
}

/// One handle: before REGISTER an empty shell, after it the port's sockets
/// and region.
pub(crate) struct AfPacketFd {
    port: Option<Port>,
    /// A private epoll set that `poll` sleeps on.
    waiter: OwnedFd,
    promisc: bool,
}

// SAFETY: the handle owns its sockets, region and ring state outright; the
// raw pointers in it point into the region it keeps alive. It is not `Sync`
// (the `Cell`s): the trait's `&self` calls come from the one thread that
// holds the port, which is also the only thread using its rings.
unsafe impl Send for AfPacketFd {}

impl fmt::Debug for AfPacketFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AfPacketFd")
            .field("waiter", &self.waiter)
            .field("port", &self.port)
            .finish()
    }
}

fn name_of(hdr: &nmreq_header) -> io::Result<String> {
    let bytes: Vec<u8> = hdr
        .nr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8(bytes).map_err(|_| errno(libc::EINVAL))
}

impl AfPacketFd {
    fn register(&mut self, name: &str, req: &mut nmreq_register) -> io::Result<()> {
        if self.port.is_some() {
            return Err(errno(libc::EBUSY));
        }
        if req.nr_flags & (NR_MONITOR_TX | NR_MONITOR_RX | NR_ZCOPY_MON) != 0 {
            return Err(errno(libc::EOPNOTSUPP));
        }
        let tx_only = req.nr_flags & NR_TX_RINGS_ONLY != 0;
        let rx_only = req.nr_flags & NR_RX_RINGS_ONLY != 0;
        if tx_only && rx_only {
            return Err(errno(libc::EINVAL));
        }
        let (has_rx, has_tx) = (!tx_only, !rx_only);
        let pairs = u32::from(req.nr_tx_rings.max(req.nr_rx_rings)).max(1);
        if pairs > MAX_RINGS {
            return Err(errno(libc::EINVAL));
        }
        let bound = match req.nr_mode {
            NR_REG_DEFAULT | NR_REG_ALL_NIC => 0..pairs,
            NR_REG_ONE_NIC => {
                let id = u32::from(req.nr_ringid);
                if id >= pairs {
                    return Err(errno(libc::EINVAL));
                }
                id..id + 1
            }
            // Host rings, pipes, the NULL mode: netmap only.
            _ => return Err(errno(libc::EOPNOTSUPP)),
        };
        let ifindex = if_index(name)?;
        let claim = RingClaim::take(
            ifindex,
            if has_tx { bound.clone() } else { 0..0 },
            if has_rx { bound.clone() } else { 0..0 },
            req.nr_flags & NR_EXCLUSIVE != 0,
        )?;
        let mtu_sock = query_socket()?;
        let mtu = ifioctl(mtu_sock.as_fd(), SIOCGIFMTU, name)?;
        let mtu = i32::from_ne_bytes([mtu.data[0], mtu.data[1], mtu.data[2], mtu.data[3]]);
        let physical = is_physical(mtu_sock.as_fd(), name);
        drop(mtu_sock);
        let vnet = has_tx && vnet_tx_supported();
        let layout = Layout::new(
            u32::try_from(mtu).unwrap_or(1500),
            page_size(),
            req,
            has_rx,
            has_tx,
            vnet,
            pairs,
            bound.len() as u32,
        );
        let region = Arc::new(Region::reserve(layout.total())?);
        let mem_id = MemId::new()?;

        let mut socks = Vec::with_capacity(bound.len());
        for (b, pair) in bound.clone().enumerate() {
            let fd = open_socket(&layout)?;
            region.map_socket(layout.sock_offset(b as u32), layout.sock_len, fd.as_fd())?;
            let (rx_first, tx_first) = layout.first_bufs(b as u32);
            let (rx_off, tx_off) = layout.ring_offsets(b as u32);
            let sock_base = region.at(layout.sock_offset(b as u32));
            let view = |ring_off: usize, frames: *mut u8, n: u32, first: u32| RingView {
                ring: NonNull::new(region.at(ring_off)).unwrap_or(region.base),
                frames: NonNull::new(frames).unwrap_or(region.base),
                n,
                frame: layout.frame,
                first,
                _region: Arc::clone(&region),
            };
            let rx = has_rx.then(|| RxState {
                v: view(rx_off, sock_base, layout.rx_slots, rx_first),
                hwcur: Cell::new(0),
                hwtail: Cell::new(0),
            });
            let tx_frames = if has_rx {
                // SAFETY: the TX frames follow the RX frames inside the
                // socket's part of the region (`sock_len` covers both).
                unsafe { sock_base.add(layout.rx_slots as usize * layout.frame) }
            } else {
                sock_base
            };
            let tx = has_tx.then(|| TxState {
                v: view(tx_off, tx_frames, layout.tx_slots, tx_first),
                hwcur: Cell::new(0),
                pending: Cell::new(0),
                unsent: Cell::new(None),
            });
            let sock = Sock { fd, rx, tx };
            init_rings(&sock, &layout, &region, pair as u16);
            bind(sock.fd.as_fd(), ifindex, if has_rx { ETH_P_ALL } else { 0 })?;
            socks.push(sock);
        }
        write_if(&region, &layout, name, &socks, bound.clone());

        let fanout = if has_rx && pairs > 1 {
            Some(join_fanout(&socks, ifindex, pairs, bound.clone())?)
        } else {
            None
        };
        if self.promisc {
            let mreq = PacketMreq {
                mr_ifindex: ifindex,
                mr_type: PACKET_MR_PROMISC,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            setsockopt(socks[0].fd.as_fd(), SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq)?;
        }
        let events = if socks.len() > 1 {
            // SAFETY: epoll_create1 takes no pointers; the result is checked.
            let ep = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
            // SAFETY: `ep` was just opened and is owned by no one else.
            let ep = unsafe { OwnedFd::from_raw_fd(ep) };
            for s in &socks {
                epoll_ctl(ep.as_fd(), libc::EPOLL_CTL_ADD, s.fd.as_fd())?;
            }
            Some(ep)
        } else {
            None
        };

        req.nr_offset = 0;
        req.nr_memsize = layout.total() as u64;
        req.nr_tx_slots = layout.tx_slots;
        req.nr_rx_slots = layout.rx_slots;
        req.nr_tx_rings = pairs as u16;
        req.nr_rx_rings = pairs as u16;
        req.nr_host_tx_rings = 0;
        req.nr_host_rx_rings = 0;
        req.nr_mem_id = mem_id.0;
        req.nr_extra_bufs = 0;
        let nbufs = (layout.socks as usize * layout.sock_len / layout.frame) as u32;
        self.port = Some(Port {
            socks,
            bufs: NonNull::new(region.at(layout.head_len)).unwrap_or(region.base),
            region,
            events,
            _rings: claim,
            _fanout: fanout,
            _mem_id: mem_id,
            nbufs,
            frame: layout.frame,
            tx_off: layout.tx_off(),
            linear_max: vnet.then_some(if physical { PHYS_LINEAR_MAX } else { usize::MAX }),
            txpoll: req.nr_flags & NR_NO_TX_POLL == 0,
        });
        Ok(())
    }

    /// Registers (or removes) every socket in the private epoll set.
    /// Adding a socket that is already in the set, or removing one that is
    /// not, is not an error: a wait cut short by an error may leave the set
    /// half armed.
    fn arm(&self, port: &Port, op: c_int) -> io::Result<()> {
        let benign = if op == libc::EPOLL_CTL_ADD {
            libc::EEXIST
        } else {
            libc::ENOENT
        };
        for s in &port.socks {
            match epoll_ctl(self.waiter.as_fd(), op, s.fd.as_fd()) {
                Err(e) if e.raw_os_error() != Some(benign) => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Sleeps on the private set until an event or `deadline` (a signal
    /// does not end the sleep: it goes on with the time left); returns
    /// whether some socket reported an error (read and cleared).
    fn wait(&self, port: &Port, deadline: Deadline) -> io::Result<bool> {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
        let n = sys::wait_until(deadline, |ms| {
            // SAFETY: `evs` is a live, writable array of 8 events and we pass 8.
            cvt(unsafe { libc::epoll_wait(self.waiter.as_raw_fd(), evs.as_mut_ptr(), 8, ms) })
        })? as usize;
        let mut failed = false;
        for ev in &evs[..n] {
            let (events, data) = (ev.events, ev.u64);
            if events & (libc::EPOLLERR as u32) != 0 {
                if let Some(s) = port.socks.iter().find(|s| s.fd.as_raw_fd() as u64 == data) {
                    failed |=
                        getsockopt_int(s.fd.as_fd(), libc::SOL_SOCKET, libc::SO_ERROR).unwrap_or(0) != 0;
                }
            }
        }
        Ok(failed)
    }
}

fn epoll_ctl(ep: BorrowedFd<'_>, op: c_int, fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLET) as u32,
        u64: fd.as_raw_fd() as u64,
    };
    // SAFETY: `ev` is a live epoll_event (ignored for EPOLL_CTL_DEL); both
    // descriptors are live.
    cvt(unsafe { libc::epoll_ctl(ep.as_raw_fd(), op, fd.as_raw_fd(), &mut ev) }).map(drop)
}

/// A socket with `TPACKET_V2` rings of `layout`'s shape, not yet bound.
fn open_socket(layout: &Layout) -> io::Result<OwnedFd> {
    let fd = packet_socket()?;
    let s = fd.as_fd();
    setsockopt(s, SOL_PACKET, PACKET_VERSION, &TPACKET_V2)?;
    if layout.has_tx {
        // Drop a malformed frame rather than stall the ring on it. Like the
        // version, it must be set before the rings exist.
        setsockopt(s, SOL_PACKET, PACKET_LOSS, &1 as &c_int)?;
    }
    if layout.vnet {
        // A virtio header before each frame's packet, RX and TX: on TX its
        // `hdr_len` says how much of the packet to copy into the skb.
        setsockopt(s, SOL_PACKET, PACKET_VNET_HDR, &1 as &c_int)?;
    }
    if layout.has_rx {
        setsockopt(s, SOL_PACKET, PACKET_RX_RING, &layout.req(layout.rx_slots))?;
        // Since Linux 4.20; older kernels deliver other sockets' outgoing
        // packets too.
        let _ = setsockopt(s, SOL_PACKET, PACKET_IGNORE_OUTGOING, &1 as &c_int);
    }
    if layout.has_tx {
        setsockopt(s, SOL_PACKET, PACKET_TX_RING, &layout.req(layout.tx_slots))?;
        // Since Linux 3.14; without it frames go through the qdisc layer.
        let _ = setsockopt(s, SOL_PACKET, PACKET_QDISC_BYPASS, &1 as &c_int);
        // Room in the socket's send budget for a whole ring in flight, so a
        // sync is not cut short; FORCE needs CAP_NET_ADMIN, the plain one is
        // capped by net.core.wmem_max.
        let want = (layout.tx_slots as usize * (layout.frame + 1024)).min(i32::MAX as usize / 2) as c_int;
        if setsockopt(s, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &want).is_err() {
            let _ = setsockopt(s, libc::SOL_SOCKET, libc::SO_SNDBUF, &want);
        }
    }
    Ok(fd)
}

fn bind(fd: BorrowedFd<'_>, ifindex: c_int, protocol: u16) -> io::Result<()> {
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

/// Fills the ring headers and slots of `sock`.
fn init_rings(sock: &Sock, layout: &Layout, region: &Region, ringid: u16) {
    let bufs = region.at(layout.head_len) as i64;
    let mask = (layout.frame - 1) as u64;
    let init = |v: &RingView, dir: u16, tail: u32, off: u64| {
        let r = v.ring.as_ptr().cast::<netmap_ring>();
        // SAFETY: the header lies in the anonymous part of the region
        // (RingView invariant); the user learns of it only when REGISTER
        // returns, so plain writes race with nothing.
        unsafe {
            ptr::addr_of_mut!((*r).buf_ofs).write(bufs - r as i64);
            ptr::addr_of_mut!((*r).num_slots).write(v.n);
            ptr::addr_of_mut!((*r).nr_buf_size).write(layout.frame as u32);
            ptr::addr_of_mut!((*r).ringid).write(ringid);
            ptr::addr_of_mut!((*r).dir).write(dir);
            ptr::addr_of_mut!((*r).offset_mask).write(mask);
        }
        v.shared().reset(0, tail);
        for k in 0..v.n {
            v.shared().store(
                k,
                Slot {
                    buf_idx: v.first + k,
                    len: 0,
                    flags: 0,
                    ptr: off,
                },
            );
        }
    };
    if let Some(tx) = &sock.tx {
        init(&tx.v, 0, tx.v.n - 1, layout.tx_off() as u64);
    }
    if let Some(rx) = &sock.rx {
        init(&rx.v, 1, 0, 0);
    }
}

/// Fills the `netmap_if` at the start of the region.
fn write_if(region: &Region, layout: &Layout, name: &str, socks: &[Sock], bound: Range<u32>) {
    let nif = region.base.as_ptr().cast::<netmap_if>();
    let nif_addr = nif as isize;
    let ofs = |p: NonNull<u8>| p.as_ptr() as isize - nif_addr;
    // SAFETY: the netmap_if (`nif_len` bytes, its ring_ofs table of
    // `2 * pairs` entries included) lies at the start of the anonymous part
    // of the region, which is zeroed; the user sees it only after REGISTER.
    unsafe {
        let nm = ptr::addr_of_mut!((*nif).ni_name).cast::<u8>();
        let len = name.len().min(IFNAMSIZ - 1);
        ptr::copy_nonoverlapping(name.as_ptr(), nm, len);
        ptr::addr_of_mut!((*nif).ni_version).write(u32::from(NETMAP_API));
        ptr::addr_of_mut!((*nif).ni_tx_rings).write(layout.pairs);
        ptr::addr_of_mut!((*nif).ni_rx_rings).write(layout.pairs);
        let table = ptr::addr_of_mut!((*nif).ring_ofs).cast::<isize>();
        for (pair, s) in bound.zip(socks) {
            if let Some(tx) = &s.tx {
                table.add(pair as usize).write(ofs(tx.v.ring));
            }
            if let Some(rx) = &s.rx {
                table.add((layout.pairs + pair) as usize).write(ofs(rx.v.ring));
            }
        }
    }
}

impl Port {
    /// Buffer `idx` and the bytes from `off` to its end, or `None` if the
    /// index or offset points outside the frames.
    fn buf(&self, idx: u32, off: usize) -> Option<(*mut u8, usize)> {
        if idx >= self.nbufs || off >= self.frame {
            return None;
        }
        // SAFETY: `idx < nbufs` puts the whole frame inside the region,
        // and `off < frame` keeps the pointer inside it.
        Some((
            unsafe { self.bufs.as_ptr().add(idx as usize * self.frame + off) },
            self.frame - off,
        ))
    }

    /// The TX ring and slot whose own frame is buffer `idx`, if any.
    fn tx_owner(&self, idx: u32) -> Option<(&TxState, u32)> {
        self.socks
            .iter()
            .filter_map(|s| s.tx.as_ref())
            .find_map(|t| t.v.contains(idx).map(|k| (t, k)))
    }

    fn rxsync(&self, rx: &RxState) -> io::Result<bool> {
        let v = &rx.v;
        let (hwcur, hwtail) = (rx.hwcur.get(), rx.hwtail.get());
        let (head, cur) = v.shared().head_cur();
        if head >= v.n || !within(head, hwcur, hwtail) || !within(cur, head, hwtail) {
            v.shared().reset(hwcur, hwtail);
            return Err(errno(libc::EINVAL));
        }
        // Give the released frames back.
        let mut j = hwcur;
        while j != head {
            let s = v.shared().load(j);
            if s.buf_idx != v.first + j || s.ptr != 0 {
                self.settle_swapped_rx(v, j, s);
            }
            // Release: the user's (and our) reads of the frame happen before
            // the kernel may reuse it.
            v.status(j).store(TP_STATUS_KERNEL, Ordering::Release);
            j = next(j, v.n);
        }
        rx.hwcur.set(head);
        // Take the frames the kernel filled, leaving one slot free.
        let mut t = hwtail;
        while next(t, v.n) != head {
            let st = v.status(t).load(Ordering::Acquire);
            if st & TP_STATUS_USER == 0 {
                break;
            }
            // SAFETY: the frame has TP_STATUS_USER: the kernel is done with it.
            let h = unsafe { v.hdr(t) };
            let (off, len) = rx_packet(v, t, st, &h);
            v.shared().store(
                t,
                Slot {
                    buf_idx: v.first + t,
                    len,
                    flags: 0,
                    ptr: off as u64,
                },
            );
            t = next(t, v.n);
        }
        rx.hwtail.set(t);
        v.shared().set_tail(t);
        Ok(cur != t)
    }

    /// RX slot `j` is being released holding another buffer (`s`): it traded
    /// buffers with a TX slot of this port (`TxRing::forward`). If that TX
    /// slot still waits for a txsync, copy the packet into its own frame now,
    /// before RX frame `j` goes back to the kernel. Then the RX slot gets its
    /// frame back.
    fn settle_swapped_rx(&self, v: &RingView, j: u32, s: Slot) {
        let mine = v.first + j;
        if let Some((tx, k)) = self.tx_owner(s.buf_idx) {
            let ts = tx.v.shared().load(k);
            let (head, _) = tx.v.shared().head_cur();
            let waiting = head < tx.v.n && within(k, tx.hwcur.get(), head) && k != head;
            if ts.buf_idx == mine && waiting {
                let off = (ts.ptr as usize) & (self.frame - 1);
                let dst = tx.v.frame(k);
                let len = ts.len as usize;
                let copied = match self.buf(mine, off) {
                    Some((src, cap)) if len <= cap && self.tx_off + len <= self.frame => {
                        // SAFETY: the source is RX frame `j` (user-owned until
                        // the status store that follows), the destination TX
                        // frame `k` (not handed to the kernel: its slot waits
                        // for a txsync); both lie inside the region and `len`
                        // fits both (checked). Distinct frames do not overlap.
                        unsafe { ptr::copy_nonoverlapping(src, dst.add(self.tx_off), len) };
                        true
                    }
                    _ => false,
                };
                tx.v.shared().store(
                    k,
                    Slot {
                        buf_idx: tx.v.first + k,
                        // A packet that cannot be copied goes out as a runt,
                        // which the kernel drops (PACKET_LOSS).
                        len: if copied { ts.len } else { 0 },
                        flags: ts.flags,
                        ptr: self.tx_off as u64,
                    },
                );
            }
        }
        v.shared().store(
            j,
            Slot {
                buf_idx: mine,
                len: 0,
                flags: 0,
                ptr: 0,
            },
        );
    }

    fn txsync(&self, fd: BorrowedFd<'_>, tx: &TxState) -> io::Result<bool> {
        let v = &tx.v;
        let hwcur = tx.hwcur.get();
        let tail = prev(tx.pending.get(), v.n);
        let (head, _) = v.shared().head_cur();
        if head >= v.n || !within(head, hwcur, tail) {
            v.shared().reset(hwcur, tail);
            return Err(errno(libc::EINVAL));
        }
        let mut failure = None;
        let mut s = hwcur;
        let mut submitted = false;
        'slots: while s != head {
            // The packet: slots s..=e (a NS_MOREFRAG chain).
            let mut e = s;
            let mut n = 1;
            while v.shared().load(e).flags & NS_MOREFRAG != 0 && n < NETMAP_MAX_FRAGS {
                let nx = next(e, v.n);
                if nx == head {
                    // Not published whole yet: send it at a later sync.
                    break 'slots;
                }
                e = nx;
                n += 1;
            }
            let first = v.shared().load(s);
            let len = if n == 1 && first.buf_idx == v.first + s && first.ptr == self.tx_off as u64 {
                Some(first.len as usize).filter(|&l| self.tx_off + l <= self.frame)
            } else {
                self.gather(v, s, e)
            };
            match len {
                Some(len) => {
                    self.frame_header(v, s, len);
                    v.status(s).store(TP_STATUS_SEND_REQUEST, Ordering::Release);
                    tx.unsent.set(Some(s));
                    submitted = true;
                }
                None => failure = Some(errno(libc::EMSGSIZE)),
            }
            s = next(e, v.n);
        }
        tx.hwcur.set(s);
        let kick = submitted
            || tx
                .unsent
                .get()
                .is_some_and(|k| v.status(k).load(Ordering::Acquire) == TP_STATUS_SEND_REQUEST);
        if kick {
            if let Err(e) = kick_tx(fd) {
                failure.get_or_insert(e);
            }
        }
        // Reclaim completed frames, in order.
        let mut p = tx.pending.get();
        while p != s {
            let st = v.status(p).load(Ordering::Acquire);
            if st & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING) != 0 {
                break;
            }
            if st & TP_STATUS_WRONG_FORMAT != 0 {
                v.status(p).store(TP_STATUS_AVAILABLE, Ordering::Relaxed);
                failure.get_or_insert(errno(libc::EINVAL));
            }
            if tx.unsent.get() == Some(p) {
                tx.unsent.set(None);
            }
            p = next(p, v.n);
        }
        tx.pending.set(p);
        let tail = prev(p, v.n);
        v.shared().set_tail(tail);
        match failure {
            Some(e) => Err(e),
            None => Ok(head != tail),
        }
    }

    /// Writes TX frame `s`'s header for a packet of `len` bytes: `tp_len`,
    /// and the virtio header if the socket has one (no offloads; `hdr_len`:
    /// the bytes to copy into the skb).
    fn frame_header(&self, v: &RingView, s: u32, len: usize) {
        let f = v.frame(s);
        // SAFETY: TX frame `s` is not handed to the kernel (its status is
        // AVAILABLE), so these writes race with nothing; they come before
        // the status store (Release) that hands the frame over. The virtio
        // header lies in `[TX_BASE, tx_off)`, inside the frame.
        unsafe {
            match self.linear_max {
                Some(max) => {
                    ptr::addr_of_mut!((*f.cast::<Tpacket2Hdr>()).tp_len).write((len + VNET_HDR) as u32);
                    let h = f.add(TX_BASE);
                    ptr::write_bytes(h, 0, VNET_HDR);
                    // Legacy virtio headers are in the host's byte order.
                    let copy = if len <= max { len as u16 } else { 0 };
                    ptr::copy_nonoverlapping(copy.to_ne_bytes().as_ptr(), h.add(2), 2);
                }
                None => ptr::addr_of_mut!((*f.cast::<Tpacket2Hdr>()).tp_len).write(len as u32),
            }
        }
    }

    /// Copies the packet of TX slots `s..=e` into frame `s` at the TX data
    /// offset and gives every slot its own frame back; returns the packet's
    /// length, or `None` if it does not fit one frame or a slot is corrupt
    /// (the packet is dropped).
    fn gather(&self, v: &RingView, s: u32, e: u32) -> Option<usize> {
        let dst = v.frame(s);
        let cap = self.frame - self.tx_off;
        let mut total = 0usize;
        let mut ok = true;
        let mut k = s;
        loop {
            let sl = v.shared().load(k);
            let off = (sl.ptr as usize) & (self.frame - 1);
            let len = sl.len as usize;
            match self.buf(sl.buf_idx, off) {
                Some((src, room)) if ok && len <= room && total + len <= cap => {
                    // SAFETY: the source is a frame of this port that user
                    // space owns (a TX frame not yet handed over, or an RX
                    // frame the user holds), `len` bytes inside it; the
                    // destination is TX frame `s` (not handed over), `total +
                    // len <= cap` bytes past tx_off. `ptr::copy` allows the
                    // ranges to overlap (a packet moving inside frame `s`).
                    unsafe { ptr::copy(src, dst.add(self.tx_off + total), len) };
                    total += len;
                }
                _ => ok = false,
            }
            v.shared().store(
                k,
                Slot {
                    buf_idx: v.first + k,
                    len: sl.len,
                    flags: 0,
                    ptr: self.tx_off as u64,
                },
            );
            if k == e {
                break;
            }
            k = next(k, v.n);
        }
        ok.then_some(total)
    }

    fn sync_all(&self, dir: SyncDir) -> io::Result<bool> {
        let mut ready = false;
        let mut failure = None;
        for s in &self.socks {
            let r = match dir {
                SyncDir::Tx => s.tx.as_ref().map(|t| self.txsync(s.fd.as_fd(), t)),
                SyncDir::Rx => s.rx.as_ref().map(|r| self.rxsync(r)),
            };
            match r {
                Some(Ok(r)) => ready |= r,
                Some(Err(e)) => {
                    failure.get_or_insert(e);
                }
                None => {}
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(ready),
        }
    }
}

/// Where RX frame `t`'s packet starts and how long it is; puts back a VLAN
/// tag the kernel stripped, so the slot holds the frame as it was on the
/// wire.
fn rx_packet(v: &RingView, t: u32, status: u32, h: &Tpacket2Hdr) -> (usize, u16) {
    let frame = v.frame;
    let mac = (h.tp_mac as usize).clamp(TPACKET2_HDRLEN, frame - 1);
    let mut len = (h.tp_snaplen as usize).min(frame - mac);
    let mut off = mac;
    if status & TP_STATUS_VLAN_VALID != 0 && len >= 12 && mac >= TPACKET2_HDRLEN + 4 {
        let tpid = if status & TP_STATUS_VLAN_TPID_VALID != 0 && h.tp_vlan_tpid != 0 {
            h.tp_vlan_tpid
        } else {
            0x8100
        };
        let p = v.frame(t);
        // SAFETY: the frame has TP_STATUS_USER (the caller checked), so the
        // kernel does not touch it; `mac - 4 >= TPACKET2_HDRLEN`, so the
        // move stays between the header and the frame's end, and `ptr::copy`
        // allows the overlap.
        unsafe {
            ptr::copy(p.add(mac), p.add(mac - 4), 12);
            ptr::copy_nonoverlapping(tpid.to_be_bytes().as_ptr(), p.add(mac + 8), 2);
            ptr::copy_nonoverlapping(h.tp_vlan_tci.to_be_bytes().as_ptr(), p.add(mac + 10), 2);
        }
        off = mac - 4;
        len = (len + 4).min(frame - off);
    }
    (off, len.min(u16::MAX as usize) as u16)
}

/// `send(fd, NULL, 0, MSG_DONTWAIT)`: the kernel sends the frames marked
/// `TP_STATUS_SEND_REQUEST`. A full socket buffer (`EAGAIN`, `ENOBUFS`) is
/// not an error: the next sync resumes.
fn kick_tx(fd: BorrowedFd<'_>) -> io::Result<()> {
    let sent = sys::retry(|| {
        // SAFETY: a zero-length send with a null buffer; the kernel reads
        // the frames from the mapped TX ring.
        let r = unsafe { libc::send(fd.as_raw_fd(), ptr::null::<c_void>(), 0, libc::MSG_DONTWAIT) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    });
    match sent {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::ENOBUFS)) => Ok(()),
        r => r,
    }
}

impl KernelFd for AfPacketFd {
    unsafe fn ctrl(&mut self, hdr: &mut nmreq_header) -> io::Result<()> {
        if hdr.nr_version != NETMAP_API {
            return Err(errno(libc::EINVAL));
        }
        if hdr.nr_reqtype != NETMAP_REQ_REGISTER {
            return Err(errno(libc::EOPNOTSUPP));
        }
        if hdr.nr_options != 0 {
            return Err(errno(libc::EOPNOTSUPP));
        }
        if hdr.nr_body == 0 {
            return Err(errno(libc::EINVAL));
        }
        let name = name_of(hdr)?;
        // SAFETY: `ctrl`'s contract: `nr_body` points at a live, writable
        // `nmreq_register`, the body of NETMAP_REQ_REGISTER.
        unsafe { update_body(hdr, |req: &mut nmreq_register| self.register(&name, req)) }
    }

    fn mmap(&mut self, len: usize) -> io::Result<Mapping> {
        let port = self.port.as_ref().ok_or_else(|| errno(libc::EINVAL))?;
        let region = &port.region;
        if len == 0 || len > region.len {
            return Err(errno(libc::EINVAL));
        }
        let owner: Arc<dyn Send + Sync> = Arc::clone(region) as _;
        // SAFETY: `[base, base + len)` lies inside the region (`len <=
        // region.len`), which stays mapped while `owner`, an `Arc` of it,
        // lives.
        Ok(unsafe { Mapping::shared(region.base, len, owner) })
    }

    fn sync(&self, dir: SyncDir) -> io::Result<()> {
        let port = self.port.as_ref().ok_or_else(|| errno(libc::ENXIO))?;
        port.sync_all(dir).map(drop)
    }

    fn poll(&self, events: i16, deadline: Deadline) -> io::Result<i16> {
        let Some(port) = self.port.as_ref() else {
            return Ok(libc::POLLERR);
        };
        let want_tx = events & (libc::POLLOUT | libc::POLLWRNORM);
        let want_rx = events & (libc::POLLIN | libc::POLLRDNORM);
        let mut armed = false;
        let result = loop {
            let mut revents = 0;
            if port.txpoll || want_tx != 0 {
                match port.sync_all(SyncDir::Tx) {
                    Ok(true) => revents |= want_tx,
                    Ok(false) => {}
                    Err(_) => revents |= libc::POLLERR,
                }
            }
            if want_rx != 0 {
                match port.sync_all(SyncDir::Rx) {
                    Ok(true) => revents |= want_rx,
                    Ok(false) => {}
                    Err(_) => revents |= libc::POLLERR,
                }
            }
            if revents != 0 {
                break Ok(revents);
            }
            if !armed {
                // From here on every new frame or completion is an event;
                // look at the rings once more, then sleep.
                armed = true;
                if let Err(e) = self.arm(port, libc::EPOLL_CTL_ADD) {
                    break Err(e);
                }
                continue;
            }
            if deadline.passed() {
                break Ok(0);
            }
            match self.wait(port, deadline) {
                Ok(true) => break Ok(libc::POLLERR),
                Ok(false) => {}
                Err(e) => break Err(e),
            }
        };
        if armed {
            let _ = self.arm(port, libc::EPOLL_CTL_DEL);
        }
        result
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.port {
            Some(Port { events: Some(ep), .. }) => ep.as_fd(),
            Some(Port { socks, .. }) if socks.len() == 1 => socks[0].fd.as_fd(),
            _ => self.waiter.as_fd(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(rx_slots: u32, tx_slots: u32) -> nmreq_register {
        nmreq_register {
            nr_rx_slots: rx_slots,
            nr_tx_slots: tx_slots,
            ..Default::default()
        }
    }

    #[test]
    fn frames_fit_the_mtu() {
        let l = Layout::new(1500, 4096, &req(0, 0), true, true, false, 1, 1);
        assert_eq!((l.frame, l.block), (2048, 4096));
        assert_eq!((l.rx_slots, l.tx_slots), (1024, 1024));
        assert!(
            l.frame - 66 >= 1500 + 14 + 4,
            "an RX frame holds an MTU-sized packet"
        );
        let l = Layout::new(9000, 4096, &req(0, 0), true, true, false, 1, 1);
        assert_eq!((l.frame, l.block), (16384, 16384));
        assert_eq!(l.rx_slots, 1024);
        let l = Layout::new(65536, 4096, &req(0, 0), true, true, false, 1, 1);
        assert_eq!(l.frame, MAX_FRAME);
        assert_eq!(l.rx_slots, 256, "the default ring stays within 16 MiB");
    }

    #[test]
    fn layout_is_page_and_frame_aligned() {
        let l = Layout::new(1500, 4096, &req(100, 7), true, true, true, 4, 4);
        assert_eq!(l.rx_slots, 100);
        assert_eq!(l.tx_slots, 8, "rounded up to whole blocks");
        assert_eq!(l.head_len % 4096, 0);
        assert_eq!(l.sock_len % l.block, 0);
        assert_eq!(l.total(), l.head_len + 4 * (108 * 2048));
        let (rx0, tx0) = l.first_bufs(0);
        let (rx1, _) = l.first_bufs(1);
        assert_eq!((rx0, tx0, rx1), (0, 100, 108));
        let (r, t) = l.ring_offsets(1);
        assert!(r >= l.nif_len && t > r && t + ring_bytes(8) <= l.head_len);
        assert_eq!(l.tx_off(), 42, "the virtio header goes before the packet");
        let tp = l.req(100);
        assert_eq!(
            tp.tp_block_nr * tp.tp_block_size,
            tp.tp_frame_nr * tp.tp_frame_size
        );
    }

    #[test]
    fn tx_only_layout_has_no_rx_frames() {
        let l = Layout::new(1500, 4096, &req(64, 64), false, true, true, 1, 1);
        assert_eq!(l.sock_len, 64 * 2048);
        assert_eq!(l.first_bufs(0), (0, 0));
    }

    #[test]
    fn netmap_only_names_are_refused() {
        let p = |s: &str| crate::spec::parse(s).unwrap();
        assert!(serves(&p("netmap:eth0")).is_ok());
        assert!(serves(&p("afpacket:eth0-1")).is_ok());
        assert!(serves(&p("netmap:eth0^")).unwrap_err().contains("host rings"));
        assert!(serves(&p("netmap:eth0*")).unwrap_err().contains("host rings"));
        assert!(serves(&p("netmap:eth0{1")).unwrap_err().contains("pipes"));
        assert!(serves(&p("vale0:p")).unwrap_err().contains("VALE"));
        assert!(serves(&p("netmap:vale0:p")).unwrap_err().contains("VALE"));
        assert!(serves(&p("emu:a{1")).is_err());
    }

    #[test]
    fn wrapping_interval() {
        assert!(within(3, 2, 5) && !within(6, 2, 5));
        assert!(within(0, 6, 1) && within(7, 6, 1) && !within(3, 6, 1));
    }
}
