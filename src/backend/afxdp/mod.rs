//! The AF_XDP backend: Linux's own kernel bypass presented as a netmap
//! port, for real interfaces on hosts without netmap.
//!
//! [`AfXdp`] is a [`Kernel`] like `/dev/netmap` and the AF_PACKET backend: a
//! handle answers REGISTER for an interface name with a region laid out as
//! netmap's (a `netmap_if`, ring headers and slots, then the buffers), so
//! `kernel::open` and the safe ring code run unchanged.
//!
//! # Sockets, queues, the program
//! A port has one AF_XDP socket per RX queue it binds: `afxdp:eth0` binds
//! every queue of the interface (`ethtool -l`), `afxdp:eth0-2` queue 2
//! only, and ring pair `i` of the port is queue `i`. Each socket has the
//! four AF_XDP rings: fill and RX for receiving, TX and completion for
//! sending. The crate attaches its own XDP program (`prog`: six
//! instructions, loaded with `bpf(2)`) through a BPF link, which the kernel
//! removes when the last port of the process on the interface closes, or
//! when the process dies. It redirects each packet to the socket of its RX
//! queue in an `XSKMAP`, and passes packets of queues without a socket on
//! to the stack. It is attached in the driver (native XDP) where the driver
//! supports it, on the skb (generic XDP) otherwise, and never in place of a
//! program someone else attached: that is an error that says so. A port
//! that only sends (`/T`) loads no program.
//!
//! # Memory
//! One anonymous mapping, a *pool* (`pool`), holds everything: the
//! `netmap_if`s and ring headers and slots of its ports, then the frames,
//! which each port registers whole as its UMEM (its first socket registers
//! it, the others share it with `XDP_SHARED_UMEM`):
//!
//! ```text
//! base                                               base + H
//! | port 0: netmap_if, rings | port 1: ... | (free) | frames: each port's RX and TX frames, anywhere |
//! ```
//!
//! A port opened without a memory id has a pool of its own, sized for it.
//! Ports named with the same memory id (`afxdp:va@1`, `afxdp:vb@1`) share
//! one: a buffer index means the same frame in all of them, so
//! `TxRing::forward` between them is a buffer swap, as between netmap ports
//! of one allocator.
//!
//! Frame `f` (2048 bytes; 4096 for MTUs above 1774) counted from `base + H`
//! is netmap buffer `2 + f` and UMEM address `f * frame`; every ring's
//! `buf_ofs` points two frames before `base + H`, so `NETMAP_BUF` works.
//! Slots carry the packet's offset in its buffer (`offset_mask`, netmap's
//! slot offsets): the kernel puts a received packet `XDP_PACKET_HEADROOM`
//! (256) bytes into its frame. RX frames are views into the UMEM and TX
//! slots are written in place. Unlike AF_PACKET's frames, AF_XDP's move:
//! a frame goes to the kernel through the fill or TX ring and comes back
//! through the RX or completion ring, so a slot's `buf_idx` changes as
//! netmap's do, and `TxRing::forward` between two rings of one pool is a
//! buffer swap, as on netmap.
//!
//! # Syncs
//! * rxsync: the buffers of the slots the user released, `[hwcur, head)`,
//!   go to the fill ring (each checked to be a frame of the UMEM); then RX
//!   descriptors become slots from `tail` on, up to one before `head`.
//! * txsync: each packet of `[hwcur, head)` becomes a TX descriptor (a
//!   packet of several slots is first gathered into its first buffer:
//!   this backend binds no multi-buffer sockets), `sendto` kicks the kernel
//!   (repeated while copy mode's budget of frames per call cuts it short),
//!   and the completion ring's frames refill the slots from `tail` on.
//! * No system call where none is needed: `XDP_USE_NEED_WAKEUP` tells.
//!
//! # Readiness
//! As on AF_PACKET: one socket's descriptor for a port of one queue, an
//! epoll set of all its sockets otherwise (which reports any progress as
//! readable); `Netmap::poll` sleeps on a private epoll set.
//!
//! # Where it differs from a netmap NIC port
//! * A packet not steered to this port (queues it does not bind) goes on
//!   to the stack; nothing this port sends is seen by the host stack.
//! * Ports share buffers only when named with one memory id (`@N`);
//!   otherwise `forward` between two ports is `MemoryMismatch` (copy).
//! * No host rings, VALE, pipes or monitors; no packet over one frame.
//!
//! [`Kernel`]: crate::backend::Kernel

mod pool;
mod prog;
mod register;
mod sync;
mod sys;
mod xsk;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::backend::afpacket::{self, if_index, interface_state, rx_queues, IfState};
use crate::backend::kring::SharedRing;
use crate::backend::{netdev, Control, Kernel, MemDomain};
use crate::error::{BackendKind, Error, Name, Result};
use crate::spec::{PortKind, PortSpec, RingSelect};
use crate::XdpMode;
use prog::{Attach, Attachment};
use xsk::{Addr, Desc, XskRing};

pub(crate) use register::frame_size;

/// Whether this process has its XDP program attached to interface
/// `ifindex` (of the calling thread's network namespace).
pub(crate) fn ours(ifindex: u32) -> bool {
    prog::ours(ifindex).is_some()
}

/// Whether this kernel has AF_XDP and this process may open its sockets:
/// `Ok`, or the error (`EAFNOSUPPORT` without it, `EPERM` without
/// `CAP_NET_RAW`).
pub(crate) fn socket_status() -> io::Result<()> {
    sys::xdp_socket().map(drop)
}

/// The capabilities the calling thread lacks to open an AF_XDP port that
/// receives, in words (empty when it has them all): `CAP_NET_RAW` for the
/// socket; for the XDP program `CAP_BPF` (loading) and `CAP_NET_ADMIN`
/// (a networking program), either of which `CAP_SYS_ADMIN` stands in for.
/// Capabilities are per thread: this reads the caller's.
pub(crate) fn missing_caps() -> io::Result<Vec<&'static str>> {
    let status = std::fs::read_to_string("/proc/thread-self/status")?;
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no CapEff line"))?;
    // capability.h: NET_ADMIN 12, NET_RAW 13, SYS_ADMIN 21, BPF 39.
    let has = |bit: u32| caps & (1u64 << bit) != 0;
    let mut m = Vec::new();
    if !has(13) {
        m.push("CAP_NET_RAW");
    }
    if !has(12) && !has(21) {
        m.push("CAP_NET_ADMIN or CAP_SYS_ADMIN");
    }
    if !has(39) && !has(21) {
        m.push("CAP_BPF or CAP_SYS_ADMIN");
    }
    Ok(m)
}

/// Why AF_XDP cannot serve `spec`, or `Ok` if it can: the names AF_PACKET
/// serves (real interfaces, all queues or one, no netmap-only options).
pub(crate) fn serves(spec: &PortSpec) -> std::result::Result<(), String> {
    match spec.kind {
        PortKind::Emu => Err("`emu:` names exist only in the embedded kernel".into()),
        PortKind::AfPacket => Err("`afpacket:` names are served only by AF_PACKET".into()),
        _ => afpacket::serves_interface(spec, "AF_XDP"),
    }
}

/// The attach modes to try, in order, and the `bind` mode flags, for `mode`.
fn modes(mode: XdpMode) -> (&'static [Attach], u16) {
    match mode {
        XdpMode::Native => (&[Attach::Native], sys::XDP_COPY),
        XdpMode::ZeroCopy => (&[Attach::Native], sys::XDP_ZEROCOPY),
        XdpMode::Generic => (&[Attach::Generic], sys::XDP_COPY),
        // Native where the driver has it; zero-copy where it allows.
        _ => (&[Attach::Native, Attach::Generic], 0),
    }
}

/// Checks, before any socket is made, what a user can act on: the name
/// suits AF_XDP, the kernel has it and this process may use it, the
/// interface exists and is up, the queue exists, the frames hold the MTU,
/// the driver offers the mode asked, and no program of someone else's is
/// attached.
pub(crate) fn preflight(spec: &PortSpec, mode: XdpMode) -> Result<()> {
    let unsupported = |what: String, hint: String| Error::Unsupported {
        backend: BackendKind::AfXdp,
        what,
        hint,
    };
    let name = Name(&spec.text);
    serves(spec).map_err(|why| {
        unsupported(
            format!("opening {name}"),
            format!("{why}; load the netmap kernel module for them"),
        )
    })?;
    if let Err(e) = socket_status() {
        return Err(match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => Error::PermissionDenied {
                what: format!(
                    "opening an AF_XDP socket for {name} needs CAP_NET_RAW, and attaching its XDP \
                     program CAP_NET_ADMIN and CAP_BPF, or CAP_SYS_ADMIN ({e})"
                ),
            },
            Some(libc::EAFNOSUPPORT) | Some(libc::EPROTONOSUPPORT) => unsupported(
                format!("opening {name}"),
                "this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS, Linux 5.9 or later): use \
                 the AF_PACKET backend (`afpacket:` names, `Fallback::AfPacket`)"
                    .into(),
            ),
            _ => Error::io(format!("socket(AF_XDP) for {name}"), e),
        });
    }
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
    let queues =
        rx_queues(ifname).map_err(|e| Error::io(format!("ETHTOOL_GCHANNELS on {}", Name(ifname)), e))?;
    if let RingSelect::OneNic(i) = spec.rings {
        if u32::from(i) >= queues {
            return Err(unsupported(
                format!("RX queue {i} of {name}"),
                format!(
                    "the interface has {queues} RX queue(s) (`ethtool -l {}`): name one of 0..{queues}, \
                     or add queues (`ethtool -L`)",
                    Name(ifname)
                ),
            ));
        }
    }
    let (mtu, _) =
        afpacket::if_mtu(ifname).map_err(|e| Error::io(format!("SIOCGIFMTU on {}", Name(ifname)), e))?;
    if frame_size(mtu).is_none() {
        return Err(unsupported(
            format!("{name} at MTU {mtu}"),
            format!(
                "an AF_XDP frame holds a packet of at most {} bytes here: lower the MTU (`ip link set {} mtu {}`), \
                 or use the AF_PACKET backend",
                register::MAX_FRAME - sys::XDP_PACKET_HEADROOM,
                Name(ifname),
                register::max_mtu()
            ),
        ));
    }
    let ifindex = if_index(ifname).map_err(|_| Error::InterfaceNotFound {
        name: spec.text.clone(),
    })? as u32;
    let features = netdev::xdp_features(ifindex).ok().flatten();
    match (mode, features) {
        (XdpMode::Native, Some(f)) if !(f.native() && f.redirect()) => {
            return Err(unsupported(
                format!("native XDP on {name}"),
                "the interface's driver has no native XDP: ask for XdpMode::Generic or XdpMode::Auto".into(),
            ))
        }
        (XdpMode::ZeroCopy, Some(f)) if !f.zero_copy() => {
            return Err(unsupported(
                format!("zero-copy AF_XDP on {name}"),
                "the interface's driver has no AF_XDP zero-copy: ask for XdpMode::Native (copy mode) or \
                 XdpMode::Auto"
                    .into(),
            ))
        }
        _ => {}
    }
    let receives = spec.flags & crate::ffi::NR_TX_RINGS_ONLY == 0;
    if receives {
        let missing = missing_caps().unwrap_or_default();
        if !missing.is_empty() {
            return Err(Error::PermissionDenied {
                what: format!(
                    "attaching the XDP program of {name} (which receives) needs {}, which this thread lacks",
                    missing.join(" and ")
                ),
            });
        }
    }
    if receives && prog::ours(ifindex).is_none() {
        // The program of a port that just closed may linger while another
        // thread's fork holds its link until the child's exec: wait a
        // little for it to go, then name whoever's it is.
        let attached = || {
            netdev::xdp_attached(ifindex)
                .ok()
                .and_then(|v| v.into_iter().next())
        };
        let t0 = std::time::Instant::now();
        let mut found = attached();
        while found.is_some() && t0.elapsed() < std::time::Duration::from_millis(500) {
            std::thread::sleep(std::time::Duration::from_millis(10));
            found = attached();
        }
        if let Some(p) = found {
            return Err(Error::XdpProgramAttached {
                name: ifname.clone(),
                id: p.id,
                mode: match p.mode {
                    netdev::XdpMode::Native => "native",
                    netdev::XdpMode::Generic => "generic",
                    netdev::XdpMode::Offload => "offloaded",
                }
                .into(),
            });
        }
    }
    Ok(())
}

/// The AF_XDP "netmap device".
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AfXdp {
    pub(crate) mode: XdpMode,
}

impl Kernel for AfXdp {
    fn open(&self) -> io::Result<Box<dyn Control>> {
        Ok(Box::new(AfXdpFd {
            port: None,
            waiter: afpacket::epoll_create()?,
            mode: self.mode,
        }))
    }

    fn domain(&self) -> MemDomain {
        MemDomain::AfXdp
    }
}

/// One handle: before REGISTER an empty shell, after it the port's sockets
/// and region.
pub(crate) struct AfXdpFd {
    port: Option<Port>,
    /// A private epoll set that `poll` sleeps on.
    waiter: OwnedFd,
    mode: XdpMode,
}

// SAFETY: the handle owns its sockets, rings and region outright; the raw
// pointers in it point into mappings it keeps alive. It is not `Sync` (the
// `Cell`s): the trait's `&self` calls come from the one thread that holds
// the port, which is also the only thread using its rings.
unsafe impl Send for AfXdpFd {}

impl fmt::Debug for AfXdpFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AfXdpFd")
            .field("port", &self.port)
            .field("mode", &self.mode)
            .finish()
    }
}

/// A netmap ring header and its slots, in the anonymous part of the region.
///
/// Invariant: `ring` points at a `netmap_ring` followed by `n` slots inside
/// `_region`, which this value keeps mapped.
struct RingView {
    ring: NonNull<u8>,
    n: u32,
    _region: Arc<afpacket::Region>,
}

impl fmt::Debug for RingView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingView")
            .field("ring", &self.ring)
            .field("n", &self.n)
            .finish()
    }
}

impl RingView {
    fn shared(&self) -> SharedRing<'_> {
        // SAFETY: `ring` points at a ring header (256-aligned) and its `n`
        // slots inside `_region`, which `self` keeps mapped while borrowed
        // (type invariant); the backend keeps slot indices below `n`.
        unsafe { SharedRing::new(self.ring) }
    }
}

/// Kernel-side state of a netmap RX ring and the socket's fill and RX rings.
#[derive(Debug)]
struct RxState {
    v: RingView,
    fill: XskRing<Addr>,
    rx: XskRing<Desc>,
    /// First slot the user still holds.
    hwcur: Cell<u32>,
    /// First slot not yet handed to the user; the user's `tail`.
    hwtail: Cell<u32>,
    /// The buffer each slot was handed to the user with: what goes back to
    /// the fill ring if the slot comes back naming no frame of the UMEM.
    given: Box<[Cell<u32>]>,
}

/// Kernel-side state of a netmap TX ring and the socket's TX and
/// completion rings.
#[derive(Debug)]
struct TxState {
    v: RingView,
    tx: XskRing<Desc>,
    comp: XskRing<Addr>,
    /// First slot not yet handed to the kernel.
    hwcur: Cell<u32>,
    /// The user's `tail`: slots `[tail, hwcur)` are the kernel's.
    hwtail: Cell<u32>,
    /// Frames (netmap buffer indices) of this ring that are in no slot and
    /// not with the kernel: completed ones waiting for a slot, and those a
    /// gathered packet freed. At most `v.n`.
    free: RefCell<VecDeque<u32>>,
    /// The buffer each slot was handed to the user with: what the slot's
    /// frame is taken to be if it comes back naming no frame of the UMEM.
    given: Box<[Cell<u32>]>,
}

/// One AF_XDP socket: one queue of the interface, one ring pair.
#[derive(Debug)]
struct Sock {
    fd: OwnedFd,
    rx: Option<RxState>,
    tx: Option<TxState>,
}

/// A registered handle's port.
///
/// Dropping it closes its sockets (the kernel takes each out of the
/// program's map and stops using the UMEM when the last one goes; a forked
/// child closing its copies changes nothing), then unmaps the region with
/// its last holder, then lets the program go (detached with the
/// interface's last port).
struct Port {
    socks: Vec<Sock>,
    region: Arc<afpacket::Region>,
    events: Option<OwnedFd>,
    attach: Option<Arc<Attachment>>,
    /// `base + head_len`: frame 0, netmap buffer `RESERVED_BUFS`.
    bufs: NonNull<u8>,
    nbufs: u32,
    frame: usize,
    max_len: usize,
    zero_copy: bool,
    txpoll: bool,
    /// Declared last: dropped after the sockets, so a frame goes back to
    /// the pool only once the kernel is done with it.
    lease: pool::Lease,
}

impl Drop for Port {
    fn drop(&mut self) {
        let held = self.held_frames();
        // Closing the sockets ends the kernel's use of their rings and
        // frames; then the frames go back with the lease.
        self.socks.clear();
        self.events = None;
        self.lease.frames = held;
    }
}

impl fmt::Debug for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Port")
            .field("socks", &self.socks)
            .field("nbufs", &self.nbufs)
            .field("frame", &self.frame)
            .field("zero_copy", &self.zero_copy)
            .finish_non_exhaustive()
    }
}

impl Port {
    /// The frames this port holds, read off its slots and rings: what it
    /// gives back to its pool when it closes. A frame that slots or rings
    /// name twice (corrupt indices) counts once; one that the kernel took
    /// and has not completed (a TX frame in flight), or a zero-copy
    /// driver's RX frames, are not counted (the pool does without them
    /// until its last port closes).
    fn held_frames(&self) -> Vec<u32> {
        let mut held = Vec::new();
        let buf = |addr: u64| self.buf_of(addr).map(|(b, _)| b);
        let slot_buf = |v: &RingView, k: u32, given: &[Cell<u32>]| {
            let b = v.shared().load(k).buf_idx;
            if self.buf_ptr(b).is_some() {
                b
            } else {
                given[k as usize].get()
            }
        };
        for s in &self.socks {
            if let Some(rx) = &s.rx {
                let mut j = rx.hwcur.get();
                while j != rx.hwtail.get() {
                    held.push(slot_buf(&rx.v, j, &rx.given));
                    j = crate::ffi::nm_next(j, rx.v.n);
                }
                if !self.zero_copy {
                    held.extend(rx.fill.entries(true).into_iter().filter_map(buf));
                }
                held.extend(rx.rx.entries(false).into_iter().filter_map(|d| buf(d.addr)));
            }
            if let Some(tx) = &s.tx {
                let mut k = tx.hwcur.get();
                while k != tx.hwtail.get() {
                    held.push(slot_buf(&tx.v, k, &tx.given));
                    k = crate::ffi::nm_next(k, tx.v.n);
                }
                held.extend(tx.free.borrow().iter().copied());
                held.extend(tx.tx.entries(true).into_iter().filter_map(|d| buf(d.addr)));
                held.extend(tx.comp.entries(false).into_iter().filter_map(buf));
            }
        }
        held.sort_unstable();
        held.dedup();
        held
    }

    /// The UMEM address of buffer `idx` at offset `off`, if `len` bytes
    /// from there lie inside one frame of the UMEM.
    fn addr(&self, idx: u32, off: usize, len: usize) -> Option<u64> {
        let f = idx.wrapping_sub(crate::ring::RESERVED_BUFS);
        (f < self.nbufs && off < self.frame && len <= self.frame - off)
            .then(|| f as u64 * self.frame as u64 + off as u64)
    }

    /// The netmap buffer and offset of UMEM address `addr`, if it lies in
    /// the UMEM.
    fn buf_of(&self, addr: u64) -> Option<(u32, usize)> {
        let f = addr / self.frame as u64;
        (f < u64::from(self.nbufs)).then(|| {
            (
                f as u32 + crate::ring::RESERVED_BUFS,
                (addr % self.frame as u64) as usize,
            )
        })
    }

    /// Buffer `idx`'s first byte, if it is a frame of the UMEM.
    fn buf_ptr(&self, idx: u32) -> Option<*mut u8> {
        let f = idx.wrapping_sub(crate::ring::RESERVED_BUFS);
        // SAFETY: `f < nbufs` puts the frame inside the region.
        (f < self.nbufs).then(|| unsafe { self.bufs.as_ptr().add(f as usize * self.frame) })
    }
}
