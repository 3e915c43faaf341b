//! The AF_PACKET backend: Linux `PACKET_MMAP` rings presented as a netmap
//! port, for real interfaces on hosts without netmap.
//!
//! [`AfPacket`] is a [`Kernel`] like `/dev/netmap`: a handle answers REGISTER
//! ([`Control::register`]) for an interface name, and the caller then maps a
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
//! first frame, and frame `f` counted from `base + H` is buffer `2 + f` of
//! the netmap view (netmap keeps buffers 0 and 1 out of slots): every ring's
//! `buf_ofs` points two frames before `base + H`, so `NETMAP_BUF` works.
//! Slot `k` of a ring always names frame `k` of its socket's ring.
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
//! the kernel (`tp_snaplen`). A TX packet may be as long as its frame holds
//! and the kernel hands on, the MTU with an Ethernet header and a VLAN tag
//! (1518 bytes for an MTU of 1500): the port's `max_packet`, which `send`
//! and `push` check, so a longer packet fails there (`PacketTooLarge`)
//! rather than vanish in the kernel. A VLAN tag that the kernel stripped is put back
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
//!   chain); one that does not (staged past `send`'s checks, by C code
//!   given the rings) is dropped and the sync fails with `EMSGSIZE`.
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
//! [`PortFd::poll`] (behind `Netmap::poll`) syncs the rings as netmap's
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
//! * Packets larger than a frame are truncated on RX; on TX, packets longer
//!   than the MTU with an Ethernet header and a VLAN tag are refused by
//!   `send` (`PacketTooLarge`), where a NIC port would take them up to 64
//!   buffers and leave the NIC to drop them.
//!
//! [`Mapping`]: crate::backend::Mapping
//! [`PortFd::poll`]: crate::backend::PortFd::poll

mod group;
mod iface;
mod layout;
mod register;
mod rings;
mod sync;
mod sys;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;

use crate::backend::{Control, Kernel, MemDomain};
use crate::error::{BackendKind, Error, Name, Result};
use crate::ffi::{NR_MONITOR_RX, NR_MONITOR_TX, NR_ZCOPY_MON};
use crate::spec::{PortKind, PortSpec, RingSelect};
pub(crate) use group::MemId;
pub(crate) use iface::{driver_name, if_index, interface_state, probe as if_mtu, rx_queues, IfState};
use layout::MAX_RINGS;
pub(crate) use layout::{ring_bytes, Region, RING_ALIGN};
use rings::Port;
pub(crate) use sync::poll_rings;
use sys::packet_socket;
pub(crate) use sys::{epoll_arm, epoll_create, epoll_ctl, epoll_errors};

/// Whether this process may open AF_PACKET sockets: `Ok`, or the error
/// (`EPERM` without `CAP_NET_RAW`).
pub(crate) fn socket_status() -> io::Result<()> {
    packet_socket().map(drop)
}

/// Why AF_PACKET cannot serve `spec`, or `Ok` if it can: real interfaces
/// only, all rings or one ring pair, no netmap-only options.
pub(crate) fn serves(spec: &PortSpec) -> std::result::Result<(), String> {
    match spec.kind {
        PortKind::Emu => Err("`emu:` names exist only in the embedded kernel".into()),
        PortKind::AfXdp => Err("`afxdp:` names are served only by AF_XDP".into()),
        _ => serves_interface(spec, "AF_PACKET"),
    }
}

/// Why a socket backend (`backend` names it: AF_PACKET, AF_XDP) cannot
/// serve `spec`, a name that is not `emu:`: it reaches real interfaces
/// only, all their rings or one ring pair, with no netmap-only options.
pub(crate) fn serves_interface(spec: &PortSpec, backend: &str) -> std::result::Result<(), String> {
    if matches!(spec.kind, PortKind::Vale { .. }) || spec.is_vale() {
        return Err("VALE switch ports are netmap-only".into());
    }
    if spec.is_pipe() {
        return Err("pipes (`{N`, `}N`) are netmap-only".into());
    }
    match spec.rings {
        RingSelect::AllNic | RingSelect::OneNic(_) => {}
        RingSelect::Host | RingSelect::OneHost(_) | RingSelect::NicAndHost => {
            return Err(format!(
                "host rings (`^`, `*`) are netmap-only: {backend} has no host stack rings"
            ))
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
        what: format!("opening {}", Name(&spec.text)),
        hint: format!("{why}; load the netmap kernel module for them"),
    })?;
    let ifname = &spec.ifname;
    match interface_state(ifname) {
        Ok(IfState::Up) => {}
        Ok(IfState::Missing) => {
            return Err(Error::InterfaceNotFound {
                name: spec.text.clone(),
            })
        }
        Ok(IfState::Down) => return Err(Error::InterfaceDown { name: ifname.clone() }),
        Err(e) => return Err(Error::io(format!("SIOCGIFFLAGS on {}", Name(ifname)), e)),
    }
    if let Err(e) = socket_status() {
        return Err(match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => Error::PermissionDenied {
                what: format!(
                    "opening an AF_PACKET socket for {} needs CAP_NET_RAW ({e})",
                    Name(&spec.text)
                ),
            },
            _ => Error::io(format!("socket(AF_PACKET) for {}", Name(&spec.text)), e),
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
            what: format!("{pairs} ring pairs on {}", Name(&spec.text)),
            hint: format!("ask for at most {MAX_RINGS} (one AF_PACKET socket each)"),
        });
    }
    if let RingSelect::OneNic(i) = spec.rings {
        if i >= pairs {
            return Err(Error::Unsupported {
                backend: BackendKind::AfPacket,
                what: format!("ring pair {i} of {}", Name(&spec.text)),
                hint: format!(
                    "the port has {pairs} ring pair(s), one AF_PACKET socket each; \
                     ask for more with num_rx_rings() or `@conf:rings=N`"
                ),
            });
        }
    }
    Ok(())
}

/// The AF_PACKET "netmap device".
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AfPacket {
    /// Take a promiscuous membership on the interface.
    pub promisc: bool,
}

impl Kernel for AfPacket {
    fn open(&self) -> io::Result<Box<dyn Control>> {
        Ok(Box::new(AfPacketFd {
            port: None,
            waiter: epoll_create()?,
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
